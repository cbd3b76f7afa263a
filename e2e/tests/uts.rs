//! UTS: the containers of a pod report the pod's hostname; the host's is unchanged.

use anyhow::{ensure, Result};
use e2e::{host, Podd};

#[tokio::test]
async fn containers_share_the_pod_hostname() -> Result<()> {
    let before = host::hostname();
    let podd = Podd::start().await?;
    podd.import_test_image().await?;

    let cfg = podd.pod_config("uts", "e2e-host-xyz");
    let pod = podd.run_pod(cfg).await?;
    let a = podd.run_container(&pod, "a", &["sleep", "3600"]).await?;
    let b = podd.run_container(&pod, "b", &["sleep", "3600"]).await?;

    for (name, id) in [("a", &a), ("b", &b)] {
        let h = podd.exec_ok(id, &["hostname"]).await?;
        ensure!(h == "e2e-host-xyz\n", "`hostname` in {name}: {h:?}");
        let h = podd.exec_ok(id, &["ipc-probe", "hostname"]).await?;
        ensure!(h == "e2e-host-xyz\n", "gethostname() in {name}: {h:?}");
    }
    let ua = podd.exec_ok(&a, &["readlink", "/proc/self/ns/uts"]).await?;
    let ub = podd.exec_ok(&b, &["readlink", "/proc/self/ns/uts"]).await?;
    let uh = std::fs::read_link("/proc/self/ns/uts")?;
    ensure!(
        ua == ub,
        "a and b are in different UTS namespaces: {ua:?} vs {ub:?}"
    );
    ensure!(
        ua.trim() != uh.to_string_lossy(),
        "the pod is in the host's UTS namespace ({ua:?})"
    );

    let after = host::hostname();
    ensure!(
        after == before,
        "the host's hostname changed from {before:?} to {after:?}"
    );
    Ok(())
}
