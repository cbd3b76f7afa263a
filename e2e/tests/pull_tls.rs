//! TLS registries and `skip_verify`: the local HTTPS registry (`hack/registry start`,
//! 127.0.0.1:5002, self-signed certificate) is refused while certificates are verified, and
//! pulled from, directly or as a mirror, once podd's `--config` says `skip_verify` for it.

use anyhow::{bail, ensure, Context, Result};
use e2e::registry::{dead_host, Registry};
use e2e::Podd;

#[tokio::test]
async fn self_signed_registry_needs_skip_verify() -> Result<()> {
    let reg = Registry::tls()?;
    let (layout, pushed) = reg.push_marked("tls")?;
    let image = &pushed.reference;

    // Certificates verified (the default): the self-signed one is refused, clearly.
    {
        let config = format!("[registries.\"{}\"]\nplain_http = false\n", reg.host);
        let podd = Podd::start_with_config(&config).await?;
        match podd.pull(image, None).await {
            Ok(id) => bail!("PullImage {image} from a self-signed registry succeeded ({id}) without skip_verify"),
            Err(s) => ensure!(
                s.message().contains(&reg.host),
                "PullImage {image} without skip_verify: {:?} {:?} does not name the registry {}",
                s.code(),
                s.message(),
                reg.host
            ),
        }
        ensure!(
            podd.list_images().await?.is_empty(),
            "a refused pull listed an image"
        );
    }

    // skip_verify: direct, and as the https mirror of another (unreachable) host.
    let upstream = dead_host()?;
    let config = format!(
        "[registries.\"{tls}\"]\nplain_http = false\nskip_verify = true\n\n\
         [registries.\"{upstream}\"]\nmirrors = [\"https://{tls}\"]\nskip_verify = true\n",
        tls = reg.host
    );
    let podd = Podd::start_with_config(&config).await?;
    let id = podd.pull_ok(image).await?;
    ensure!(
        id == layout.config_digest,
        "pulled {id}, want {}",
        layout.config_digest
    );
    let path = image
        .strip_prefix(&format!("{}/", reg.host))
        .context("pushed reference has no host")?;
    let via_mirror = format!("{upstream}/{path}");
    let id2 = podd.pull_ok(&via_mirror).await?;
    ensure!(id2 == id, "pulled {via_mirror} as {id2}, want {id}");
    Ok(())
}

/// A loopback registry with no `plain_http` set is tried over HTTPS first, as docker and
/// containerd do: the TLS registry is pulled from with only `skip_verify` configured, and
/// without that (certificate refused, then plain HTTP refused) the error lists both tries.
#[tokio::test]
async fn loopback_registry_is_tried_over_https_first() -> Result<()> {
    let reg = Registry::tls()?;
    let (layout, pushed) = reg.push_marked("tls-first")?;
    let image = &pushed.reference;
    {
        let podd = Podd::start().await?;
        match podd.pull(image, None).await {
            Ok(id) => bail!("PullImage {image} from a self-signed registry succeeded ({id}) without skip_verify"),
            Err(s) => {
                for tried in [format!("https://{}", reg.host), format!("http://{}", reg.host)] {
                    ensure!(
                        s.message().contains(&tried),
                        "PullImage {image} without config: {:?} {:?} does not list {tried}",
                        s.code(),
                        s.message()
                    );
                }
            }
        }
    }
    let config = format!("[registries.\"{}\"]\nskip_verify = true\n", reg.host);
    let podd = Podd::start_with_config(&config).await?;
    let id = podd.pull_ok(image).await?;
    ensure!(
        id == layout.config_digest,
        "pulled {id}, want {}",
        layout.config_digest
    );
    Ok(())
}
