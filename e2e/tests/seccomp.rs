//! Seccomp: RuntimeDefault confines a container (namespaces and other node-wide syscalls are
//! refused) while ordinary work, pod IPC included, still runs, in the workload and in exec'd
//! commands; a Localhost profile is applied as written, ignored for a privileged container,
//! and refused at CreateContainer when it cannot be used.

use anyhow::{ensure, Result};
use e2e::cri::{container_security_context, pod_security_context};
use e2e::{api as cri, Pod, Podd};

fn with_seccomp(
    mut cfg: cri::ContainerConfig,
    profile: cri::SecurityProfile,
) -> cri::ContainerConfig {
    container_security_context(&mut cfg).seccomp = Some(profile);
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

/// The `Seccomp:` mode of an exec'd command and of the workload (PID 1): "0" none, "2" filter.
async fn seccomp_modes(podd: &Podd, id: &str) -> Result<(String, String)> {
    let (code, out, err) = podd
        .sh(
            id,
            "grep '^Seccomp:' /proc/self/status; grep '^Seccomp:' /proc/1/status",
        )
        .await?;
    let modes: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim)
        .collect();
    match (code, modes.as_slice()) {
        (0, [exec, workload]) => Ok((exec.to_string(), workload.to_string())),
        _ => anyhow::bail!("reading Seccomp: from /proc in {id}: exit {code}, {out:?} {err:?}"),
    }
}

/// `syscall-probe all` (hack/syscall-probe): what each probed syscall answered.
async fn probe(podd: &Podd, id: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let out = podd.exec_ok(id, &["syscall-probe", "all"]).await?;
    let got: std::collections::BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ensure!(got.len() == 10, "syscall-probe printed {out:?}");
    Ok(got)
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
    let modes = seccomp_modes(&podd, &confined).await?;
    ensure!(
        modes == ("2".into(), "2".into()),
        "a RuntimeDefault container's exec and workload must both be filtered: {modes:?}"
    );
    let modes = seccomp_modes(&podd, &plain).await?;
    ensure!(
        modes == ("0".into(), "0".into()),
        "a container without a profile is filtered: {modes:?}"
    );

    // What the filter decides, beside the same calls unconfined.
    let confined_says = probe(&podd, &confined).await?;
    let plain_says = probe(&podd, &plain).await?;
    println!("RuntimeDefault: {confined_says:?}\nunconfined: {plain_says:?}");
    for (call, want) in [
        ("clone", "ok"),
        ("clone_newuser", "EPERM"),
        // ENOSYS, so that libc falls back to clone, whose flags the filter can see.
        ("clone3", "ENOSYS"),
        ("personality_linux", "ok"),
        ("personality_odd", "EPERM"),
        ("socket_inet", "ok"),
        ("socket_vsock", "EPERM"),
        ("io_uring_setup", "EPERM"),
        ("keyctl", "EPERM"),
        // Past every known syscall: ENOSYS, not EPERM, as for a kernel that lacks it.
        ("syscall_500", "ENOSYS"),
    ] {
        ensure!(
            confined_says.get(call).map(String::as_str) == Some(want),
            "{call} under RuntimeDefault answered {:?}, want {want}",
            confined_says.get(call)
        );
    }
    // The same calls unconfined succeed: it is the filter that refuses them.
    for call in ["clone_newuser", "clone3", "personality_odd", "keyctl"] {
        ensure!(
            plain_says.get(call).map(String::as_str) == Some("ok"),
            "{call} unconfined answered {:?}",
            plain_says.get(call)
        );
    }

    // A user namespace needs CAP_SYS_ADMIN under RuntimeDefault; unconfined it needs nothing.
    let (code, _, err) = podd.sh(&confined, "unshare -U true").await?;
    ensure!(
        code != 0 && err.contains("Operation not permitted"),
        "unshare -U under RuntimeDefault: exit {code}, stderr {err:?}"
    );
    let (code, _, err) = podd.sh(&plain, "unshare -U true").await?;
    ensure!(
        code == 0,
        "unshare -U unconfined: exit {code}, stderr {err:?}"
    );

    // Ordinary work: files, processes, pipes, the pod's IPC (written by the confined workload).
    let (code, out, err) = podd
        .sh(
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
    let (code, out, _) = podd.sh(&plain, "ipc-probe read seccomp-e2e").await?;
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
    pod_security_context(&mut cfg).privileged = true;
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
    let modes = seccomp_modes(&podd, &blocked).await?;
    ensure!(
        modes == ("2".into(), "2".into()),
        "a Localhost profile must filter exec and workload: {modes:?}"
    );
    let (code, _, err) = podd
        .sh(&blocked, "touch /tmp/f && chmod 600 /tmp/f")
        .await?;
    ensure!(
        code != 0 && err.contains("Operation not permitted"),
        "chmod under a profile that blocks it: exit {code}, stderr {err:?}"
    );
    let (code, _, err) = podd.sh(&blocked, "touch /tmp/g && ls /tmp/g").await?;
    ensure!(
        code == 0,
        "the profile allows everything else: exit {code}, {err:?}"
    );

    // The file is read when the container is created: changing it later changes nothing.
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)?;
    let (code, _, _) = podd.sh(&blocked, "chmod 600 /tmp/f").await?;
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
    container_security_context(&mut cfg).privileged = true;
    let privileged = podd.create_container(&ppod, cfg).await?;
    podd.start_container(&privileged).await?;
    let (code, _, err) = podd
        .sh(&privileged, "touch /tmp/f && chmod 600 /tmp/f")
        .await?;
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

/// The filter is loaded last with no_new_privs (right before execve) and first without it
/// (before the privilege drop): both paths start the workload filtered, as root and not.
#[tokio::test]
async fn runtime_default_loads_with_and_without_no_new_privs_as_root_and_not() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("seccomp-paths").await?;
    for (name, nnp, uid) in [
        ("nnp-root", true, 0),
        ("nnp-nobody", true, 65534),
        ("nobody", false, 65534),
    ] {
        let mut cfg = with_seccomp(
            podd.container_config(&pod, name, &["sleep", "3600"]),
            runtime_default(),
        );
        let sc = container_security_context(&mut cfg);
        sc.no_new_privs = nnp;
        sc.run_as_user = Some(cri::Int64Value { value: uid });
        let id = podd.create_container(&pod, cfg).await?;
        podd.start_container(&id).await?;
        let modes = seccomp_modes(&podd, &id).await?;
        ensure!(
            modes == ("2".into(), "2".into()),
            "{name}: exec and workload must be filtered: {modes:?}"
        );
        let (code, out, err) = podd
            .sh(&id, "grep '^NoNewPrivs:' /proc/1/status; id -u")
            .await?;
        let want_nnp = if nnp { "1" } else { "0" };
        ensure!(
            code == 0
                && out.contains(&format!("NoNewPrivs:\t{want_nnp}"))
                && out.lines().last() == Some(uid.to_string().as_str()),
            "{name}: want NoNewPrivs {want_nnp} and uid {uid}: {out:?} {err:?}"
        );
        let says = probe(&podd, &id).await?;
        ensure!(
            says.get("keyctl").map(String::as_str) == Some("EPERM"),
            "{name}: keyctl answered {:?}",
            says.get("keyctl")
        );
    }
    Ok(())
}
