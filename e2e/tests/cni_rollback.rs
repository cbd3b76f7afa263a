//! A CNI ADD that fails inside a plugin, after that plugin made the veth and took an IP, is
//! rolled back completely: the bridge plugin (containernetworking-plugins 1.1) fails its first
//! DEL of such a half-made attachment, so podd must not stop at that first DEL.

use anyhow::{bail, ensure, Context, Result};
use e2e::{api as cri, host, Network, Podd};

#[tokio::test]
async fn an_add_failing_inside_the_bridge_plugin_is_rolled_back() -> Result<()> {
    let podd = Podd::start_with(Network::Bridge).await?;
    let net = podd.net()?;
    // The test's bridge, made beforehand with an address other than the gateway its config
    // asks for: the bridge plugin makes the veth, takes an IP, then fails to set the gateway
    // ("already has an IP address different from ...").
    let base = net
        .subnet
        .strip_suffix("0/24")
        .with_context(|| format!("test subnet {} is not a /24", net.subnet))?;
    let stray = format!("{base}250/24");
    host::run("ip", &["link", "add", &net.bridge, "type", "bridge"])?;
    host::run("ip", &["addr", "add", &stray, "dev", &net.bridge])?;
    host::run("ip", &["link", "set", &net.bridge, "up"])?;

    let res = podd
        .runtime
        .clone()
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(podd.pod_config("stray", "")),
            runtime_handler: String::new(),
        })
        .await;
    let status = match res {
        Ok(r) => bail!("RunPodSandbox succeeded on a bridge with a stray address: {r:?}"),
        Err(s) => s,
    };
    ensure!(
        status.message().contains("\"bridge\"") && status.message().contains("ADD"),
        "the error should name the bridge plugin's ADD: {:?} {}",
        status.code(),
        status.message()
    );
    podd.ensure_nothing_left("after an ADD failing inside the bridge plugin")
        .await?;
    Ok(())
}
