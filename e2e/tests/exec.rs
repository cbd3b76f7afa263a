//! ExecSync: exit codes and streams pass through; a timeout is DEADLINE_EXCEEDED and leaves no
//! process behind.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use e2e::{eventually, host, Podd};
use tonic::Code;

#[tokio::test]
async fn exec_sync_passes_exit_codes_streams_and_timeouts() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("exec").await?;
    let id = podd.run_container(&pod, "a", &["sleep", "3600"]).await?;

    let r = podd.try_exec(&id, &["sh", "-c", "exit 5"], 10).await?;
    ensure!(r.exit_code == 5, "`exit 5`: exit code {}", r.exit_code);

    let r = podd
        .try_exec(&id, &["sh", "-c", "echo to-out; echo to-err >&2"], 10)
        .await?;
    ensure!(r.exit_code == 0, "exit code {}", r.exit_code);
    ensure!(
        r.stdout == b"to-out\n",
        "stdout {:?}",
        String::from_utf8_lossy(&r.stdout)
    );
    ensure!(
        r.stderr == b"to-err\n",
        "stderr {:?}",
        String::from_utf8_lossy(&r.stderr)
    );

    let t0 = Instant::now();
    let res = podd.try_exec(&id, &["sleep", "10"], 1).await;
    let took = t0.elapsed();
    match res {
        Err(s) => ensure!(
            s.code() == Code::DeadlineExceeded,
            "ExecSync `sleep 10` with timeout 1: {:?} {:?}, want DEADLINE_EXCEEDED",
            s.code(),
            s.message()
        ),
        Ok(r) => anyhow::bail!(
            "ExecSync `sleep 10` with timeout 1 returned exit code {} after {took:?}, want DEADLINE_EXCEEDED",
            r.exit_code
        ),
    }
    ensure!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "the 1 s timeout fired after {took:?}"
    );

    // The timed-out command is gone, inside the container and on the host.
    let gone = eventually(
        "`sleep 10` to be killed",
        Duration::from_secs(3),
        || async {
            let inside = podd.exec_ok(&id, &["ps", "-o", "args"]).await.ok()?;
            let on_host = host::descendants(podd.reaper_pid())
                .into_iter()
                .any(|p| p.cmdline == "sleep 10");
            (!inside.lines().any(|l| l.trim() == "sleep 10") && !on_host).then_some(())
        },
    )
    .await;
    ensure!(
        gone.is_ok(),
        "`sleep 10` still runs after its ExecSync timed out: {:?}",
        host::descendants(podd.reaper_pid())
            .into_iter()
            .filter(|p| p.cmdline.contains("sleep"))
            .map(|p| format!("[{}] {}", p.pid, p.cmdline))
            .collect::<Vec<_>>()
    );

    // The container itself is unaffected.
    let st = podd.container_status(&id).await?;
    ensure!(
        st.state == e2e::api::ContainerState::ContainerRunning as i32,
        "the container is no longer running after the exec timeout"
    );
    Ok(())
}
