//! CRI mount propagation: HOST_TO_CONTAINER (rslave) shows mounts made on the host under the
//! source after the container started, PRIVATE does not; a source on a private mount and
//! BIDIRECTIONAL in an unprivileged pod are refused at CreateContainer, naming the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{api, eventually_ok, Pod, Podd};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

const NONE: Option<&str> = None;

/// Host mounts the test makes, unmounted (top first) however the test ends.
struct HostMounts(Vec<PathBuf>);

impl HostMounts {
    fn push(&mut self, p: &Path) {
        self.0.push(p.to_path_buf());
    }
}

impl Drop for HostMounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = umount2(p, MntFlags::MNT_DETACH);
        }
    }
}

fn with_mount(
    podd: &Podd,
    pod: &Pod,
    name: &str,
    host: &Path,
    propagation: api::MountPropagation,
) -> api::ContainerConfig {
    let mut cfg = podd.container_config(pod, name, &["sleep", "3600"]);
    cfg.mounts.push(api::Mount {
        container_path: "/mnt/prop".into(),
        host_path: host.display().to_string(),
        propagation: propagation as i32,
        ..Default::default()
    });
    cfg
}

#[tokio::test]
async fn host_to_container_mounts_propagate_in() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("prop").await?;
    let src = podd.tmp_dir().join("prop-src");
    std::fs::create_dir_all(&src)?;

    // This machine's / is private: a source there is refused for rslave, clearly.
    let err = podd
        .create_container(
            &pod,
            with_mount(
                &podd,
                &pod,
                "refused",
                &src,
                api::MountPropagation::PropagationHostToContainer,
            ),
        )
        .await
        .expect_err("rslave of a source on a private mount was accepted");
    let msg = format!("{err:#}");
    ensure!(
        msg.contains("FailedPrecondition") && msg.contains("config.mounts[0].propagation"),
        "{msg}"
    );
    let err = podd
        .create_container(
            &pod,
            with_mount(
                &podd,
                &pod,
                "bidi",
                &src,
                api::MountPropagation::PropagationBidirectional,
            ),
        )
        .await
        .expect_err("rshared in an unprivileged pod was accepted");
    let msg = format!("{err:#}");
    ensure!(
        msg.contains("InvalidArgument") && msg.contains("config.mounts[0].propagation"),
        "{msg}"
    );

    // As kubelet does for its own directories: the source a shared mount of its own.
    let mut mounts = HostMounts(Vec::new());
    mount(Some(&src), &src, NONE, MsFlags::MS_BIND, NONE).context("bind the source")?;
    mounts.push(&src);
    mount(NONE, &src, NONE, MsFlags::MS_SHARED, NONE).context("make the source shared")?;

    let slave_cfg = with_mount(
        &podd,
        &pod,
        "slave",
        &src,
        api::MountPropagation::PropagationHostToContainer,
    );
    let slave = podd.create_container(&pod, slave_cfg).await?;
    podd.start_container(&slave).await?;
    let private_cfg = with_mount(
        &podd,
        &pod,
        "private",
        &src,
        api::MountPropagation::PropagationPrivate,
    );
    let private = podd.create_container(&pod, private_cfg).await?;
    podd.start_container(&private).await?;
    podd.exec_ok(&slave, &["ls", "/mnt/prop"]).await?;

    // After both started: a tmpfs under the source, on the host.
    let sub = src.join("sub");
    std::fs::create_dir_all(&sub)?;
    mount(Some("tmpfs"), &sub, Some("tmpfs"), MsFlags::empty(), NONE).context("mount tmpfs")?;
    mounts.push(&sub);
    std::fs::write(sub.join("hello"), "from the host\n")?;

    let got = eventually_ok(
        "the host's mount in the rslave container",
        Duration::from_secs(10),
        || async { podd.exec_ok(&slave, &["cat", "/mnt/prop/sub/hello"]).await },
    )
    .await?;
    ensure!(got == "from the host\n", "read {got:?}");
    let r = podd
        .try_exec(&private, &["cat", "/mnt/prop/sub/hello"], 10)
        .await?;
    ensure!(
        r.exit_code != 0,
        "the rprivate container sees the host's later mount: {:?}",
        String::from_utf8_lossy(&r.stdout)
    );
    let info = podd
        .exec_ok(&slave, &["cat", "/proc/self/mountinfo"])
        .await?;
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/mnt/prop"))
        .context("no /mnt/prop in the container's mountinfo")?;
    ensure!(line.contains("master:"), "/mnt/prop is not a slave: {line}");

    podd.remove_pod(&pod.id).await?;
    drop(mounts);
    Ok(())
}
