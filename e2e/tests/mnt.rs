//! MNT: a container's rootfs is its own; removing the pod leaves no mounts, pinned namespaces,
//! processes or directories on the host.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use e2e::{eventually_ok, host, Podd};

/// Host mounts as a multiset, leaving out other concurrently running tests' temp dirs.
fn host_mounts(own_tmp: &Path) -> BTreeMap<host::MountEntry, usize> {
    let mut m = BTreeMap::new();
    for e in host::mounts() {
        let s = e.mount_point.to_string_lossy();
        if s.starts_with("/tmp/podd-e2e-") && !e.mount_point.starts_with(own_tmp) {
            continue;
        }
        *m.entry(e).or_insert(0) += 1;
    }
    m
}

fn new_mounts(
    before: &BTreeMap<host::MountEntry, usize>,
    after: &BTreeMap<host::MountEntry, usize>,
) -> Vec<host::MountEntry> {
    after
        .iter()
        .filter(|(e, n)| before.get(*e).copied().unwrap_or(0) < **n)
        .map(|(e, _)| e.clone())
        .collect()
}

#[tokio::test]
async fn rootfs_is_private_and_removal_leaves_nothing() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let before = host_mounts(podd.tmp_dir());

    let pod = podd.run_default_pod("mnt").await?;
    let a = podd
        .run_container(
            &pod,
            "a",
            &["sh", "-c", "echo a-was-here > /tmp/only-a; exec sleep 3600"],
        )
        .await?;
    let b = podd.run_container(&pod, "b", &["sleep", "3600"]).await?;

    let got = eventually_ok("A's /tmp/only-a", Duration::from_secs(20), || async {
        podd.exec_ok(&a, &["cat", "/tmp/only-a"]).await
    })
    .await?;
    ensure!(got == "a-was-here\n", "A reads back {got:?}");
    let r = podd.try_exec(&b, &["cat", "/tmp/only-a"], 10).await?;
    ensure!(
        r.exit_code != 0,
        "B sees A's /tmp/only-a: {:?}",
        String::from_utf8_lossy(&r.stdout)
    );
    ensure!(
        !Path::new("/tmp/only-a").exists(),
        "A's /tmp/only-a landed on the host's /tmp"
    );
    let ma = podd.exec_ok(&a, &["readlink", "/proc/self/ns/mnt"]).await?;
    let mb = podd.exec_ok(&b, &["readlink", "/proc/self/ns/mnt"]).await?;
    let mh = std::fs::read_link("/proc/self/ns/mnt")?;
    ensure!(ma != mb, "A and B share mount namespace {ma:?}");
    ensure!(
        ma.trim() != mh.to_string_lossy() && mb.trim() != mh.to_string_lossy(),
        "a container is in the host's mount namespace"
    );
    ensure!(
        !podd.state_paths_mentioning(&pod.id).is_empty()
            || !podd.state_paths_mentioning(&a).is_empty(),
        "podd keeps no directory named after the pod or container id; the leftover check below \
         would prove nothing"
    );

    podd.remove_pod(&pod.id).await?;

    // Processes: nothing under podd's reaper but podd itself (killed ones may take a moment to
    // be reaped).
    let podd_pid = podd.pid();
    let left = e2e::eventually(
        "the pod's processes to be gone",
        Duration::from_secs(10),
        || async {
            let left: Vec<_> = host::descendants(podd.reaper_pid())
                .into_iter()
                .filter(|p| p.pid != podd_pid)
                .collect();
            left.is_empty().then_some(())
        },
    )
    .await;
    ensure!(
        left.is_ok(),
        "processes left after RemovePodSandbox: {:?}",
        host::descendants(podd.reaper_pid())
            .into_iter()
            .filter(|p| p.pid != podd_pid)
            .map(|p| format!("[{}] {}", p.pid, p.cmdline))
            .collect::<Vec<_>>()
    );

    let after = host_mounts(podd.tmp_dir());
    let added = new_mounts(&before, &after);
    ensure!(
        added.is_empty(),
        "mounts left on the host after RemovePodSandbox: {added:#?}"
    );
    let nsfs: Vec<_> = host::mounts()
        .into_iter()
        .filter(|m| m.fs_type == "nsfs" && m.mount_point.starts_with(podd.tmp_dir()))
        .collect();
    ensure!(nsfs.is_empty(), "pinned namespaces left: {nsfs:#?}");

    for id in [&pod.id, &a, &b] {
        let paths = podd.state_paths_mentioning(id);
        ensure!(
            paths.is_empty(),
            "paths named after {id} left under the root/run dirs: {paths:#?}"
        );
    }
    ensure!(
        podd.list_pods().await?.is_empty(),
        "ListPodSandbox not empty after removal"
    );
    ensure!(
        podd.list_containers().await?.is_empty(),
        "ListContainers not empty after removal"
    );
    Ok(())
}
