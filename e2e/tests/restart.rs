//! Restart: containers outlive `kill -9 podd`; a container exiting while podd is down is
//! reported with its code, and no log line is lost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use e2e::api::{ContainerState, PodSandboxState};
use e2e::logs::Stream;
use e2e::Podd;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[tokio::test]
async fn kill9_podd_keeps_containers_state_and_logs() -> Result<()> {
    let mut podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("restart").await?;
    let a = podd
        .run_container(
            &pod,
            "a",
            &[
                "sh",
                "-c",
                "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.2; done",
            ],
        )
        .await?;
    let b = podd
        .run_container(&pod, "b", &["sh", "-c", "sleep 2; echo bye; exit 7"])
        .await?;
    podd.wait_state(
        &b,
        ContainerState::ContainerRunning,
        Duration::from_secs(10),
    )
    .await?;

    let killed_at = now_ns();
    podd.kill9().await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarted_at = now_ns();
    podd.restart().await?;

    let pods = podd.list_pods().await?;
    ensure!(
        pods.iter()
            .any(|p| p.id == pod.id && p.state == PodSandboxState::SandboxReady as i32),
        "after the restart the pod is not listed as ready: {pods:?}"
    );
    let status = podd.pod_status(&pod.id, false).await?;
    ensure!(
        status.status.as_ref().map(|s| s.state) == Some(PodSandboxState::SandboxReady as i32),
        "PodSandboxStatus after restart: {:?}",
        status.status
    );

    let sa = podd.container_status(&a).await?;
    ensure!(
        sa.state == ContainerState::ContainerRunning as i32,
        "A after restart: state {:?}, reason {:?}, want RUNNING",
        ContainerState::try_from(sa.state),
        sa.reason
    );
    let sb = podd.container_status(&b).await?;
    ensure!(
        sb.state == ContainerState::ContainerExited as i32 && sb.exit_code == 7,
        "B after restart: state {:?}, exit code {}, want EXITED with 7",
        ContainerState::try_from(sb.state),
        sb.exit_code
    );
    ensure!(
        sb.reason == "Error",
        "B's reason {:?}, want Error",
        sb.reason
    );
    ensure!(
        sb.finished_at > killed_at && sb.finished_at < restarted_at,
        "B's finished_at {} is not while podd was down ({killed_at}..{restarted_at}): the exit \
         time must be the true one",
        sb.finished_at
    );
    let listed = podd.list_containers().await?;
    ensure!(
        listed.len() == 2,
        "ListContainers after restart: {listed:?}"
    );

    // podd still drives the running container.
    let echo = podd.exec_ok(&a, &["echo", "still-here"]).await?;
    ensure!(echo == "still-here\n", "exec after restart: {echo:?}");

    let b_out: Vec<String> = podd
        .read_log(&b)?
        .into_iter()
        .filter(|e| e.stream == Stream::Stdout)
        .map(|e| e.text)
        .collect();
    ensure!(b_out == ["bye"], "B's log: {b_out:?}, want [\"bye\"]");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let a_log = podd.read_log(&a)?;
    let a_lines: Vec<_> = a_log
        .iter()
        .filter(|e| e.stream == Stream::Stdout)
        .collect();
    ensure!(
        a_lines.len() >= 15,
        "A's log has {} lines after ~7 s at 5 lines/s",
        a_lines.len()
    );
    for (i, e) in a_lines.iter().enumerate() {
        ensure!(
            !e.partial && e.text == format!("line-{}", i + 1),
            "A's log entry {} is {:?} {:?}, want `F line-{}`: a line was lost or garbled",
            i + 1,
            if e.partial { "P" } else { "F" },
            e.text,
            i + 1
        );
    }
    let mut worst = Duration::ZERO;
    for w in a_lines.windows(2) {
        let gap = (w[1].time - w[0].time)
            .to_std()
            .context("A's log timestamps go backwards")?;
        worst = worst.max(gap);
    }
    ensure!(
        worst < Duration::from_secs(2),
        "A's log has a {worst:?} gap between lines written every 0.2 s (podd was down 4 s)"
    );
    let down_from = chrono::DateTime::from_timestamp_nanos(killed_at);
    let down_to = chrono::DateTime::from_timestamp_nanos(restarted_at);
    ensure!(
        a_lines
            .iter()
            .any(|e| e.time > down_from && e.time < down_to),
        "no line of A was logged while podd was down"
    );
    Ok(())
}
