//! Lifecycle: exit codes and reasons, the CRI log format (long and unterminated lines
//! included), and StopContainer's SIGTERM-then-SIGKILL after the timeout.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use e2e::api::{self, ContainerState};
use e2e::logs::{self, Stream};
use e2e::{eventually, rpc, Podd};

#[tokio::test]
async fn exit_code_reason_and_cri_logs() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("life").await?;

    let id = podd
        .run_container(
            &pod,
            "fails",
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
        )
        .await?;
    let st = podd.wait_exited(&id, Duration::from_secs(20)).await?;
    ensure!(st.exit_code == 3, "exit code {}, want 3", st.exit_code);
    ensure!(
        st.reason == "Error",
        "reason {:?}, want \"Error\"",
        st.reason
    );
    ensure!(
        st.created_at > 0 && st.started_at >= st.created_at && st.finished_at >= st.started_at,
        "times out of order or unset: created {} started {} finished {}",
        st.created_at,
        st.started_at,
        st.finished_at
    );
    let log_path = podd.log_path(&id)?;
    ensure!(
        st.log_path == log_path.to_string_lossy(),
        "ContainerStatus.log_path {:?}, want {}",
        st.log_path,
        log_path.display()
    );
    let raw = std::fs::read_to_string(&log_path)?;
    let entries = podd.read_log(&id)?;
    let out: Vec<_> = entries
        .iter()
        .filter(|e| e.stream == Stream::Stdout)
        .collect();
    let err: Vec<_> = entries
        .iter()
        .filter(|e| e.stream == Stream::Stderr)
        .collect();
    ensure!(
        out.len() == 1 && !out[0].partial && out[0].text == "out",
        "stdout entries {out:?}, want one `stdout F out`; log:\n{raw}"
    );
    ensure!(
        err.len() == 1 && !err[0].partial && err[0].text == "err",
        "stderr entries {err:?}, want one `stderr F err`; log:\n{raw}"
    );
    for line in raw.lines() {
        // <RFC3339Nano> with a 'Z' or numeric offset, then exactly one space.
        let ts = line.split(' ').next().unwrap_or("");
        ensure!(
            ts.len() >= 20 && ts.as_bytes()[10] == b'T',
            "not an RFC3339Nano timestamp: {line:?}"
        );
    }

    let ok = podd
        .run_container(&pod, "succeeds", &["sh", "-c", "exit 0"])
        .await?;
    let st = podd.wait_exited(&ok, Duration::from_secs(20)).await?;
    ensure!(
        st.exit_code == 0 && st.reason == "Completed",
        "exit 0: exit code {}, reason {:?}, want 0 and \"Completed\"",
        st.exit_code,
        st.reason
    );
    Ok(())
}

#[tokio::test]
async fn long_and_unterminated_lines_come_back_whole() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("longline").await?;
    let script = "head -c 40000 /dev/zero | tr '\\0' x; echo; \
                  echo short; \
                  head -c 40000 /dev/zero | tr '\\0' y";
    let id = podd
        .run_container(&pod, "long", &["sh", "-c", script])
        .await?;
    let st = podd.wait_exited(&id, Duration::from_secs(20)).await?;
    ensure!(st.exit_code == 0, "exit code {}", st.exit_code);
    let entries = podd.read_log(&id)?;
    let lines = logs::lines(&entries, Stream::Stdout);
    let summary: Vec<String> = lines
        .iter()
        .map(|l| format!("{} bytes starting {:?}", l.len(), &l[..l.len().min(8)]))
        .collect();
    ensure!(lines.len() == 3, "want 3 stdout lines, got {summary:?}");
    ensure!(lines[0] == "x".repeat(40000), "line 1: {}", summary[0]);
    ensure!(lines[1] == "short", "line 2: {}", summary[1]);
    ensure!(
        lines[2] == "y".repeat(40000),
        "line 3 (unterminated): {}",
        summary[2]
    );
    Ok(())
}

#[tokio::test]
async fn stop_kills_a_workload_ignoring_sigterm_after_the_timeout() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("stop").await?;
    let id = podd
        .run_container(
            &pod,
            "stubborn",
            &[
                "sh",
                "-c",
                "trap '' TERM; echo ready; while true; do sleep 1; done",
            ],
        )
        .await?;
    eventually(
        "the workload to print ready",
        Duration::from_secs(20),
        || async {
            let entries = podd.read_log(&id).ok()?;
            entries.iter().any(|e| e.text == "ready").then_some(())
        },
    )
    .await?;

    let t0 = Instant::now();
    rpc(podd
        .runtime
        .clone()
        .stop_container(api::StopContainerRequest {
            container_id: id.clone(),
            timeout: 2,
        }))
    .await?;
    let st = podd
        .wait_state(
            &id,
            ContainerState::ContainerExited,
            Duration::from_secs(20),
        )
        .await?;
    let took = t0.elapsed();
    ensure!(
        took >= Duration::from_secs(2),
        "stopped after {took:?}: SIGKILL came before the 2 s timeout (or SIGTERM was not ignored)"
    );
    ensure!(took <= Duration::from_secs(20), "stop took {took:?}");
    ensure!(
        st.exit_code == 137,
        "exit code {} after SIGKILL, want 137 (128 + 9)",
        st.exit_code
    );
    ensure!(st.finished_at > 0, "finished_at unset");
    Ok(())
}
