//! ReopenContainerLog (kubelet's log rotation): after the log is moved away, the monitor makes a
//! new file at log_path and later output lands there; a container that is not running is
//! FAILED_PRECONDITION.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{api, eventually, logs, rpc, Podd};

#[tokio::test]
async fn reopen_container_log_starts_a_new_file() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("logrotate").await?;
    // Prints a counter every 100 ms.
    let id = podd
        .run_container(
            &pod,
            "a",
            &[
                "sh",
                "-c",
                "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done",
            ],
        )
        .await?;
    let path = podd.log_path(&id)?;
    eventually("first lines", Duration::from_secs(20), || {
        let n = podd.read_log(&id).map(|e| e.len()).unwrap_or(0);
        async move { (n >= 2).then_some(()) }
    })
    .await?;
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated)?;
    rpc(podd
        .runtime
        .clone()
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: id.clone(),
        }))
    .await
    .context("ReopenContainerLog")?;
    ensure!(
        path.exists(),
        "no new file at {} after ReopenContainerLog",
        path.display()
    );
    let new_lines = eventually("lines in the new file", Duration::from_secs(10), || {
        let lines = podd
            .read_log(&id)
            .map(|e| logs::lines(&e, logs::Stream::Stdout))
            .unwrap_or_default();
        async move { (lines.len() >= 2).then_some(lines) }
    })
    .await?;
    let old = std::fs::read_to_string(&rotated)?;
    let old_lines = logs::lines(&logs::parse(&old)?, logs::Stream::Stdout);
    let last_old = old_lines.last().context("the rotated file is empty")?;
    ensure!(
        !new_lines.contains(last_old),
        "{last_old:?} is in both files"
    );
    let n = |l: &str| l.trim_start_matches("line-").parse::<u64>().unwrap_or(0);
    ensure!(
        n(&new_lines[0]) > n(last_old),
        "new file starts at {:?}, old ends at {last_old:?}",
        new_lines[0]
    );

    rpc(podd
        .runtime
        .clone()
        .stop_container(api::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        }))
    .await?;
    let err = rpc(podd
        .runtime
        .clone()
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: id.clone(),
        }))
    .await
    .expect_err("ReopenContainerLog of a stopped container succeeded");
    ensure!(format!("{err:#}").contains("FailedPrecondition"), "{err:#}");
    podd.remove_pod(&pod.id).await?;
    Ok(())
}
