//! Crash windows and process hygiene: a podd killed between launching a process and recording
//! it leaves nothing untracked; stopping a container kills what it started even in a shared
//! PID namespace; the spec (the container's environment) never shows in a command line;
//! ExecSync output is capped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::api::{ContainerState, NamespaceMode};
use e2e::{api, bins, cri, eventually, host, rpc, Podd};

/// (pid, start time) of what a launched file names (`pid`, or `monitor_pid`).
fn launched(path: &Path, key: &str, start_key: &str) -> Option<(i32, u64)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((v[key].as_i64()? as i32, v[start_key].as_u64()?))
}

/// True while `pid` is alive and still the process started at `start_time`.
fn alive_as(pid: i32, start_time: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let after: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    after[0] != "Z" && after[19].parse::<u64>().ok() == Some(start_time)
}

/// Processes whose command line is exactly `cmdline`.
fn running(cmdline: &str) -> Vec<host::Process> {
    host::processes()
        .into_iter()
        .filter(|p| p.cmdline == cmdline)
        .collect()
}

#[tokio::test]
async fn stopping_a_container_in_a_shared_pid_pod_kills_its_children() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let mut cfg = podd.pod_config("sharedpid", "");
    cri::set_pod_pid_mode(&mut cfg, NamespaceMode::Pod);
    let pod = podd.run_pod(cfg).await?;
    let c = podd
        .run_container(&pod, "bg", &["sh", "-c", "sleep 7771 & sleep 7772"])
        .await?;
    eventually("both sleeps to run", Duration::from_secs(10), || async {
        (!running("sleep 7771").is_empty() && !running("sleep 7772").is_empty()).then_some(())
    })
    .await?;

    rpc(podd
        .runtime
        .clone()
        .stop_container(api::StopContainerRequest {
            container_id: c.clone(),
            timeout: 2,
        }))
    .await
    .context("StopContainer")?;
    let st = podd.container_status(&c).await?;
    ensure!(
        st.state == ContainerState::ContainerExited as i32,
        "after StopContainer the container is {:?}",
        ContainerState::try_from(st.state)
    );
    // The background child was re-parented to the pod's infra (PID 1 of the shared
    // namespace), not killed with the workload: StopContainer must kill it too.
    let left: Vec<_> = [running("sleep 7771"), running("sleep 7772")].concat();
    ensure!(
        left.is_empty(),
        "processes of the stopped container still run: {left:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_large_environment_is_passed_on_stdin_not_on_any_command_line() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("bigenv").await?;
    // 200 KiB of environment: four 50 KiB values (one value may not exceed the kernel's
    // MAX_ARG_STRLEN, 128 KiB, in any runtime). The spec is then well over 128 KiB, which
    // failed with E2BIG while it was passed as one argv string.
    let marker = format!("podd-secret-{}", std::process::id());
    let value = |i: usize| format!("{marker}-{i}-{}", "x".repeat(50 * 1024));
    let mut cfg = podd.container_config(&pod, "big", &["sh", "-c", "sleep 3600"]);
    cfg.envs = (0..4)
        .map(|i| api::KeyValue {
            key: format!("BIG{i}"),
            value: value(i).into(),
        })
        .collect();
    let c = podd.create_container(&pod, cfg).await?;
    podd.start_container(&c).await?;
    let len = podd.exec_ok(&c, &["sh", "-c", "echo ${#BIG3}"]).await?;
    ensure!(
        len.trim() == value(3).len().to_string(),
        "BIG3 in the container has length {len:?}, want {}",
        value(3).len()
    );
    let leaks: Vec<_> = host::processes()
        .into_iter()
        .filter(|p| p.cmdline.contains(&marker))
        .map(|p| format!("[{}] {:.80}", p.pid, p.cmdline))
        .collect();
    ensure!(
        leaks.is_empty(),
        "the container's environment is readable in command lines: {leaks:?}"
    );
    Ok(())
}

#[tokio::test]
async fn exec_output_is_capped_at_16_mib_per_stream() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("execcap").await?;
    let c = podd.run_container(&pod, "c", &["sleep", "3600"]).await?;
    // The harness's clients take the default 4 MiB; this one takes what podd may send.
    let mut client = podd.runtime.clone().max_decoding_message_size(64 << 20);
    let r = rpc(client.exec_sync(api::ExecSyncRequest {
        container_id: c.clone(),
        cmd: ["sh", "-c", "head -c 20000000 /dev/zero; echo done >&2"]
            .map(String::from)
            .to_vec(),
        timeout: 60,
    }))
    .await
    .context("ExecSync of 20 MB of output")?;
    ensure!(r.exit_code == 0, "exit code {}", r.exit_code);
    ensure!(
        r.stdout.len() == 16 << 20,
        "stdout has {} bytes, want 16 MiB exactly",
        r.stdout.len()
    );
    let stderr = String::from_utf8_lossy(&r.stderr);
    ensure!(
        stderr.starts_with("done\n")
            && stderr.contains("stdout truncated: the command wrote 20000000 bytes"),
        "stderr {stderr:?} does not say that stdout was truncated"
    );
    // podd still answers and the container runs.
    ensure!(podd.exec_ok(&c, &["echo", "ok"]).await? == "ok\n");
    Ok(())
}

/// A `--shim` that runs the real podd-shim, then sleeps before it exits: podd does not record
/// what was launched until then.
fn slow_shim(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("slow-shim");
    let real = bins::podd_shim()?;
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n{} \"$@\"\nrc=$?\nsleep 3\nexit $rc\n",
            real.display()
        ),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

#[tokio::test]
async fn kill9_between_launch_and_record_leaves_nothing_untracked() -> Result<()> {
    let mut podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("crash").await?;
    let cfg = podd.container_config(&pod, "c", &["sleep", "7773"]);
    let c = podd.create_container(&pod, cfg).await?;

    podd.kill9().await?;
    podd.use_shim(Some(slow_shim(podd.tmp_dir())?));
    podd.restart().await?;
    // StartContainer and RunPodSandbox in flight: their processes run, podd has not yet
    // recorded them (the shim has not exited).
    let mut rt = podd.runtime.clone();
    let id = c.clone();
    let start = tokio::spawn(async move {
        rt.start_container(api::StartContainerRequest { container_id: id })
            .await
    });
    let mut rt = podd.runtime.clone();
    let cfg = podd.pod_config("crash-new", "");
    let runp = tokio::spawn(async move {
        rt.run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: String::new(),
        })
        .await
    });
    let container_file = podd
        .root_dir()
        .join("containers")
        .join(&c)
        .join("launched.json");
    let (workload, monitor) = eventually(
        "the monitor's launched file",
        Duration::from_secs(20),
        || async {
            let w = launched(&container_file, "pid", "start_time")?;
            let m = launched(&container_file, "monitor_pid", "monitor_start_time")?;
            Some((w, m))
        },
    )
    .await?;
    let run_dir = podd.run_dir().to_path_buf();
    let old_pod = pod.id.clone();
    let (new_pod_dir, infra) = eventually(
        "the new pod's launched file",
        Duration::from_secs(20),
        || async {
            std::fs::read_dir(run_dir.join("pods"))
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| !p.ends_with(&old_pod))
                .find_map(|p| {
                    Some((
                        p.clone(),
                        launched(&p.join("infra.json"), "pid", "start_time")?,
                    ))
                })
        },
    )
    .await?;
    ensure!(alive_as(workload.0, workload.1) && alive_as(infra.0, infra.1));
    podd.kill9().await?;
    let _ = start.await;
    let _ = runp.await;
    // Let the slow shims finish their sleep (the harness counts them as leftovers).
    tokio::time::sleep(Duration::from_secs(4)).await;

    podd.use_shim(None);
    podd.restart().await?;
    // The start was adopted: the container is running, under its monitor.
    let st = podd.container_status(&c).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "after the restart the started container is {:?}, want RUNNING",
        ContainerState::try_from(st.state)
    );
    ensure!(podd.exec_ok(&c, &["echo", "adopted"]).await? == "adopted\n");
    // The pod without a record was cleaned up: its infra killed, its dirs gone.
    let pods = podd.list_pods().await?;
    ensure!(pods.len() == 1, "pods after the restart: {pods:?}");
    ensure!(
        !alive_as(infra.0, infra.1),
        "the infra of the unrecorded pod (pid {}) still runs",
        infra.0
    );
    ensure!(!new_pod_dir.exists(), "{} is left", new_pod_dir.display());

    podd.remove_pod(&pod.id).await?;
    for (what, (pid, start)) in [("workload", workload), ("monitor", monitor)] {
        if alive_as(pid, start) {
            bail!("the {what} (pid {pid}) still runs after RemovePodSandbox");
        }
    }
    // A SIGKILLed process can stay visible for a moment under load; a leaked one stays.
    let gone = eventually(
        "the container's sleep to be gone after RemovePodSandbox",
        Duration::from_secs(3),
        || async { running("sleep 7773").is_empty().then_some(()) },
    )
    .await;
    ensure!(
        gone.is_ok(),
        "the container's sleep outlived RemovePodSandbox: {:?}",
        running("sleep 7773")
            .iter()
            .map(|p| p.pid)
            .collect::<Vec<_>>()
    );
    Ok(())
}
