//! Seccomp: RuntimeDefault confines a container (namespaces and other node-wide syscalls are
//! refused) while ordinary work, pod IPC included, still runs, in the workload and in exec'd
//! commands; a Localhost profile is applied as written, ignored for a privileged container,
//! and refused at CreateContainer when it cannot be used.

use anyhow::{ensure, Result};
use e2e::{api as cri, Pod, Podd};

fn with_seccomp(
    mut cfg: cri::ContainerConfig,
    profile: cri::SecurityProfile,
) -> cri::ContainerConfig {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .seccomp = Some(profile);
    cfg
}

fn runtime_default() -> cri::SecurityProfile {
    cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    }
}

fn localhost(path: &std::path::Path) -> cri::SecurityProfile {
    cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Localhost as i32,
        localhost_ref: path.display().to_string(),
    }
}

/// Exit code, stdout and stderr of `sh -c script` in the container.
async fn sh(podd: &Podd, id: &str, script: &str) -> Result<(i32, String, String)> {
    let r = podd
        .try_exec(id, &["sh", "-c", script], 10)
        .await
        .map_err(|s| anyhow::anyhow!("ExecSync {script:?}: {:?} {}", s.code(), s.message()))?;
    Ok((
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    ))
}

async fn seccomp_mode(podd: &Podd, id: &str) -> Result<String> {
    let (_, out, _) = sh(
        podd,
        id,
        "grep '^Seccomp:' /proc/self/status; grep '^Seccomp:' /proc/1/status",
    )
    .await?;
    Ok(out)
}

#[tokio::test]
async fn runtime_default_refuses_node_wide_syscalls_and_runs_ordinary_work() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("seccomp").await?;

    let plain = podd
        .run_container(&pod, "plain", &["sleep", "3600"])
        .await?;
    let cfg = with_seccomp(
        podd.container_config(
            &pod,
            "confined",
            &[
                "sh",
                "-c",
                "ipc-probe write seccomp-e2e hello && exec sleep 3600",
            ],
        ),
        runtime_default(),
    );
    let confined = podd.create_container(&pod, cfg).await?;
    podd.start_container(&confined).await?;

    // Filter mode 2 for the workload (PID 1) and for an exec'd command alike.
    let mode = seccomp_mode(&podd, &confined).await?;
    ensure!(
        mode.lines().filter(|l| l.ends_with("\t2")).count() == 2,
        "a RuntimeDefault container's workload and exec must both be filtered: {mode:?}"
    );
    let mode = seccomp_mode(&podd, &plain).await?;
    ensure!(
        mode.lines().all(|l| l.ends_with("\t0")),
        "a container without a profile is filtered: {mode:?}"
    );

    // A user namespace needs CAP_SYS_ADMIN under RuntimeDefault; unconfined it needs nothing.
    let (code, _, err) = sh(&podd, &confined, "unshare -U true").await?;
    ensure!(
        code != 0 && err.contains("Operation not permitted"),
        "unshare -U under RuntimeDefault: exit {code}, stderr {err:?}"
    );
    let (code, _, err) = sh(&podd, &plain, "unshare -U true").await?;
    ensure!(
        code == 0,
        "unshare -U unconfined: exit {code}, stderr {err:?}"
    );

    // Ordinary work: files, processes, pipes, the pod's IPC (written by the confined workload).
    let (code, out, err) = sh(
        &podd,
        &confined,
        "mkdir -p /tmp/d && echo hi > /tmp/d/f && cat /tmp/d/f | wc -c && ps | wc -l >/dev/null && ipc-probe read seccomp-e2e",
    )
    .await?;
    ensure!(
        code == 0
            && out.contains("sysv: hello")
            && out.contains("mqueue: hello")
            && out.contains("shm: hello"),
        "ordinary work under RuntimeDefault: exit {code}, stdout {out:?}, stderr {err:?}"
    );
    let (code, out, _) = sh(&podd, &plain, "ipc-probe read seccomp-e2e").await?;
    ensure!(
        code == 0 && out.contains("shm: hello"),
        "the unconfined member of the pod should read the confined one's IPC: {out:?}"
    );
    Ok(())
}

const BLOCK_CHMOD: &str = r#"{
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": ["chmod", "fchmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"}
    ]
}"#;

async fn privileged_pod(podd: &Podd) -> Result<Pod> {
    let mut cfg = podd.pod_config("seccomp-priv", "");
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .privileged = true;
    podd.run_pod(cfg).await
}

#[tokio::test]
async fn a_localhost_profile_applies_as_written_and_not_to_privileged_containers() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let profile = podd.tmp_dir().join("block-chmod.json");
    std::fs::write(&profile, BLOCK_CHMOD)?;

    let pod = podd.run_default_pod("seccomp-local").await?;
    let cfg = with_seccomp(
        podd.container_config(&pod, "blocked", &["sleep", "3600"]),
        localhost(&profile),
    );
    let blocked = podd.create_container(&pod, cfg).await?;
    podd.start_container(&blocked).await?;
    let (code, _, err) = sh(&podd, &blocked, "touch /tmp/f && chmod 600 /tmp/f").await?;
    ensure!(
        code != 0 && err.contains("Operation not permitted"),
        "chmod under a profile that blocks it: exit {code}, stderr {err:?}"
    );
    let (code, _, err) = sh(&podd, &blocked, "touch /tmp/g && ls /tmp/g").await?;
    ensure!(
        code == 0,
        "the profile allows everything else: exit {code}, {err:?}"
    );

    // The file is read when the container is created: changing it later changes nothing.
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)?;
    let (code, _, _) = sh(&podd, &blocked, "chmod 600 /tmp/f").await?;
    ensure!(
        code != 0,
        "a running container's filter changed with its profile file"
    );
    std::fs::write(&profile, BLOCK_CHMOD)?;

    let ppod = privileged_pod(&podd).await?;
    let mut cfg = with_seccomp(
        podd.container_config(&ppod, "priv", &["sleep", "3600"]),
        localhost(&profile),
    );
    cfg.linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .expect("set above")
        .privileged = true;
    let privileged = podd.create_container(&ppod, cfg).await?;
    podd.start_container(&privileged).await?;
    let (code, _, err) = sh(&podd, &privileged, "touch /tmp/f && chmod 600 /tmp/f").await?;
    ensure!(
        code == 0,
        "a privileged container ignores seccomp profiles: exit {code}, stderr {err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn unusable_localhost_profiles_are_refused_at_create() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("seccomp-bad").await?;
    let dir = podd.tmp_dir();
    let not_json = dir.join("not-json.json");
    std::fs::write(&not_json, "defaultAction: SCMP_ACT_ALLOW")?;
    let bad_action = dir.join("bad-action.json");
    std::fs::write(&bad_action, r#"{"defaultAction": "SCMP_ACT_PERHAPS"}"#)?;
    let cases = [
        (dir.join("missing.json"), "cannot read"),
        (not_json, "not a seccomp profile"),
        (bad_action, "SCMP_ACT_PERHAPS"),
        ("relative.json".into(), "absolute"),
    ];
    for (i, (path, words)) in cases.into_iter().enumerate() {
        let cfg = with_seccomp(
            podd.container_config(&pod, &format!("bad{i}"), &["true"]),
            localhost(&path),
        );
        let res = podd
            .runtime
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(cfg),
                sandbox_config: Some(pod.config.clone()),
            })
            .await;
        let status = match res {
            Ok(r) => anyhow::bail!("CreateContainer with profile {path:?} succeeded: {r:?}"),
            Err(s) => s,
        };
        ensure!(
            status.code() == tonic::Code::InvalidArgument
                && status.message().contains("seccomp")
                && status.message().contains(words),
            "profile {path:?}: {:?} {}; want INVALID_ARGUMENT naming seccomp and {words:?}",
            status.code(),
            status.message()
        );
    }
    let listed = podd.list_containers().await?;
    ensure!(
        listed.is_empty(),
        "refused containers are listed: {listed:?}"
    );
    Ok(())
}
