//! Registry mirrors from podd's `--config`: an upstream host is served from the local registry
//! (127.0.0.1:5000) and never contacted; a mirror that is down is skipped for the next one.

use anyhow::{ensure, Context, Result};
use e2e::registry::{dead_host, Registry, Unreachable};
use e2e::Podd;

#[tokio::test]
async fn mirror_serves_the_upstream_which_is_never_contacted() -> Result<()> {
    let reg = Registry::plain()?;
    // The upstream: a loopback port that would notice a connection (no DNS, no outside host).
    let upstream = Unreachable::new()?;
    let down = dead_host()?;
    let config = format!(
        "[registries.\"{up}\"]\nmirrors = [\"http://{down}\", \"http://{mirror}\"]\n",
        up = upstream.host(),
        mirror = reg.host,
    );
    let podd = Podd::start_with_config(&config).await?;
    let (layout, pushed) = reg.push_marked("mirror")?;
    // Same repository path, upstream host.
    let path = pushed
        .reference
        .strip_prefix(&format!("{}/", reg.host))
        .context("pushed reference has no host")?;
    let image = format!("{}/{path}", upstream.host());

    let pulled = podd.pull_ok(&image).await;
    ensure!(
        !upstream.contacted(),
        "podd contacted the upstream {} although a mirror serves it (pull: {pulled:?})",
        upstream.host()
    );
    let id = pulled?;
    ensure!(
        id == layout.config_digest,
        "pulled {id}, want {}",
        layout.config_digest
    );
    let st = podd
        .image_status(&image)
        .await?
        .with_context(|| format!("ImageStatus {image}: not found after the pull"))?;
    ensure!(
        st.repo_tags.contains(&image),
        "the image is tagged {:?}, want the upstream name {image}",
        st.repo_tags
    );
    Ok(())
}
