//! Users and groups: a container's process (and an ExecSync command) holds the groups the
//! image's /etc/group gives its user plus the CRI supplemental_groups, as under containerd.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use e2e::cri::container_security_context;
use e2e::{eventually, logs, Podd};

fn gids(text: &str) -> BTreeSet<String> {
    text.split_whitespace().map(str::to_string).collect()
}

#[tokio::test]
async fn image_groups_and_supplemental_groups_are_held() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("groups").await?;
    // The test image's /etc/group has `podd-members:x:4321:nobody`.
    let mut cfg = podd.container_config(&pod, "a", &["sh", "-c", "id -G; exec sleep 3600"]);
    let sec = container_security_context(&mut cfg);
    sec.run_as_username = "nobody".into();
    sec.supplemental_groups = vec![1234];
    let id = podd.create_container(&pod, cfg).await?;
    podd.start_container(&id).await?;

    let want = gids("65534 4321 1234");
    let from_workload = eventually("the workload's `id -G`", Duration::from_secs(20), || {
        let line = podd
            .read_log(&id)
            .ok()
            .and_then(|e| logs::lines(&e, logs::Stream::Stdout).into_iter().next());
        async move { line }
    })
    .await?;
    ensure!(
        gids(&from_workload) == want,
        "workload's groups {from_workload:?}, want {want:?}"
    );
    let from_exec = podd.exec_ok(&id, &["id", "-G"]).await?;
    ensure!(
        gids(&from_exec) == want,
        "ExecSync's groups {from_exec:?}, want {want:?}"
    );
    let uid = podd.exec_ok(&id, &["id", "-u"]).await?;
    ensure!(uid.trim() == "65534", "uid {uid:?}");
    podd.remove_pod(&pod.id).await?;
    Ok(())
}
