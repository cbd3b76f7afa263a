//! CNI pod networking: pods on the test's own bridge get IPs and talk to each other, a host port
//! on 127.0.0.1 reaches a container, containers see the pod's resolv.conf, hosts and hostname,
//! and neither many pods nor a failed ADD nor a podd restart leave anything on the host.
//! Traffic goes only to 127.0.0.1 and to the test's own pod IPs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use e2e::cri::set_pod_network_mode;
use e2e::{api as cri, eventually_ok, rpc, Network, Pod, Podd};

const HTTPD: &str = "mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && exec httpd -f -p 8080 -h /www";

async fn pod_ip(podd: &Podd, pod: &Pod) -> Result<(String, Vec<String>)> {
    let st = podd.pod_status(&pod.id, true).await?;
    // crictl inspectp and kubelet parse every verbose info value as JSON.
    for (k, v) in &st.info {
        serde_json::from_str::<serde_json::Value>(v)
            .with_context(|| format!("verbose info {k:?} of pod {} is not JSON: {v}", pod.id))?;
    }
    ensure!(
        st.info.contains_key("networkCheck"),
        "verbose PodSandboxStatus of {} has no networkCheck: {:?}",
        pod.id,
        st.info.keys()
    );
    let net = st
        .status
        .and_then(|s| s.network)
        .ok_or_else(|| anyhow!("PodSandboxStatus of {} has no network", pod.id))?;
    Ok((
        net.ip,
        net.additional_ips.into_iter().map(|i| i.ip).collect(),
    ))
}

/// A port on 127.0.0.1 that nothing listens on now.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// GET / over a plain TCP connection to 127.0.0.1:port; the response body.
fn http_get_localhost(port: u16) -> Result<String> {
    let mut s =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .ok_or_else(|| anyhow!("not an HTTP response: {out:?}"))?;
    Ok(body)
}

#[tokio::test]
async fn pods_talk_over_pod_ips_and_a_host_port_reaches_a_container() -> Result<()> {
    let podd = Podd::start_with(Network::Bridge).await?;
    podd.import_test_image().await?;
    let prefix = podd.net()?.addr_prefix();
    let host_port = free_port()?;

    let mut cfg = podd.pod_config("web", "web-a");
    cfg.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: "127.0.0.1".into(),
    }];
    let web = podd.run_pod(cfg).await?;
    let (web_ip, extra) = pod_ip(&podd, &web).await?;
    ensure!(
        web_ip.starts_with(&prefix) && extra.is_empty(),
        "pod IP {web_ip:?} (additional {extra:?}) is not in the test subnet {prefix}0/24"
    );
    let server = podd
        .run_container(&web, "server", &["sh", "-c", HTTPD])
        .await?;

    let mut cfg = podd.pod_config("client", "client-b");
    cfg.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.209.254.10".into(), "fd00::10".into()],
        searches: vec!["e2e.svc.cluster.local".into(), "cluster.local".into()],
        options: vec!["ndots:5".into(), "edns0".into()],
    });
    let client = podd.run_pod(cfg).await?;
    let (client_ip, _) = pod_ip(&podd, &client).await?;
    ensure!(
        client_ip.starts_with(&prefix) && client_ip != web_ip,
        "client IP {client_ip:?}, web IP {web_ip:?}"
    );
    let c = podd.run_container(&client, "c", &["sleep", "3600"]).await?;

    let url = format!("http://{web_ip}:8080/");
    let got = eventually_ok(
        "the client pod to fetch the web pod's page",
        Duration::from_secs(20),
        || async {
            podd.exec_ok(&c, &["timeout", "5", "wget", "-q", "-O", "-", &url])
                .await
        },
    )
    .await?;
    ensure!(got == "hello from web-a\n", "client fetched {got:?}");

    let body = eventually_ok(
        "127.0.0.1 host port to reach the web container",
        Duration::from_secs(20),
        || async { http_get_localhost(host_port) },
    )
    .await?;
    ensure!(
        body == "hello from web-a\n",
        "host port {host_port} answered {body:?}"
    );

    // The pod's own files, as a kubelet-run runtime writes them.
    let resolv = podd.exec_ok(&c, &["cat", "/etc/resolv.conf"]).await?;
    ensure!(
        resolv
            == "search e2e.svc.cluster.local cluster.local\n\
                nameserver 10.209.254.10\nnameserver fd00::10\noptions ndots:5 edns0\n",
        "resolv.conf is {resolv:?}"
    );
    let hosts = podd.exec_ok(&server, &["cat", "/etc/hosts"]).await?;
    ensure!(
        hosts.contains("127.0.0.1\tlocalhost\n")
            && hosts.contains("::1\tlocalhost ip6-localhost ip6-loopback\n")
            && hosts.contains(&format!("{web_ip}\tweb-a\n")),
        "/etc/hosts is {hosts:?}"
    );
    ensure!(
        podd.exec_ok(&server, &["cat", "/etc/hostname"]).await? == "web-a\n",
        "/etc/hostname is not web-a"
    );
    // The web pod had no DNS config: the host's resolv.conf.
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let web_resolv = podd.exec_ok(&server, &["cat", "/etc/resolv.conf"]).await?;
    ensure!(
        web_resolv == host_resolv,
        "web pod resolv.conf {web_resolv:?}"
    );

    // A container that mounts its own /etc/hosts (as kubelet does) keeps it.
    let own = podd.tmp_dir().join("own-hosts");
    std::fs::write(&own, "10.0.0.1 mine\n")?;
    let mut cfg = podd.container_config(&client, "own", &["sleep", "3600"]);
    cfg.mounts = vec![cri::Mount {
        container_path: "/etc/hosts".into(),
        host_path: own.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    let own_c = podd.create_container(&client, cfg).await?;
    podd.start_container(&own_c).await?;
    let h = podd.exec_ok(&own_c, &["cat", "/etc/hosts"]).await?;
    ensure!(
        h == "10.0.0.1 mine\n",
        "the CRI mount of /etc/hosts was replaced: {h:?}"
    );

    // Removing the web pod frees its host port and its IP.
    podd.remove_pod(&web.id).await?;
    ensure!(
        http_get_localhost(host_port).is_err(),
        "host port {host_port} still answers after the pod was removed"
    );
    let left = podd.net()?.allocated_ips();
    ensure!(
        left == vec![client_ip.clone()],
        "allocated after removing the web pod: {left:?} (want only {client_ip})"
    );
    Ok(())
}

#[tokio::test]
async fn fifty_pods_leave_no_ip_veth_pin_or_iptables_rule() -> Result<()> {
    let podd = Podd::start_with(Network::Bridge).await?;
    let net = podd.net()?;
    let rules_before = net.iptables_rules()?;
    ensure!(rules_before.is_empty(), "rules before: {rules_before:?}");
    let mut pods = Vec::new();
    for i in 0..50 {
        let mut cfg = podd.pod_config("many", "");
        // Every fifth pod with a host port: portmap's rules must go too.
        if i % 5 == 0 {
            cfg.port_mappings = vec![cri::PortMapping {
                protocol: cri::Protocol::Tcp as i32,
                container_port: 80,
                host_port: free_port()? as i32,
                host_ip: "127.0.0.1".into(),
            }];
        }
        pods.push(podd.run_pod(cfg).await?);
    }
    let mut ips: Vec<String> = Vec::new();
    for p in &pods {
        ips.push(pod_ip(&podd, p).await?.0);
    }
    ips.sort();
    ips.dedup();
    ensure!(ips.len() == 50, "50 pods got {} distinct IPs", ips.len());
    ensure!(
        net.allocated_ips().len() == 50,
        "host-local has {:?}",
        net.allocated_ips()
    );
    ensure!(
        net.veths().len() == 50,
        "bridge has {} veths",
        net.veths().len()
    );
    ensure!(
        !net.iptables_rules()?.is_empty(),
        "no masquerade/portmap rules were made"
    );
    for p in &pods {
        podd.remove_pod(&p.id).await?;
    }
    podd.ensure_nothing_left("after removing 50 pods").await?;
    Ok(())
}

/// RunPodSandbox fails with `code` and a message holding every one of `words`, and leaves no
/// pod, pin, IP, veth or rule behind.
async fn fails_cleanly(podd: &Podd, hint: &str, code: tonic::Code, words: &[&str]) -> Result<()> {
    let pods_before = podd.list_pods().await?.len();
    podd.run_pod_fails(podd.pod_config(hint, ""), code, words)
        .await?;
    ensure!(
        podd.list_pods().await?.len() == pods_before,
        "a failed pod is listed"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_add_leaves_nothing_behind_and_says_why() -> Result<()> {
    let podd = Podd::start_with(Network::Bridge).await?;
    let net = podd.net()?;

    // A plugin that is not installed: refused before anything is made.
    let mut conf = net.conflist(None);
    conf["plugins"][1]["type"] = "no-such-plugin".into();
    podd.write_cni_config(&conf)?;
    fails_cleanly(
        &podd,
        "missing",
        tonic::Code::FailedPrecondition,
        &["\"no-such-plugin\"", "not found"],
    )
    .await?;

    // The second plugin fails after the bridge made a veth and took an IP: DEL undoes both.
    let mut conf = net.conflist(None);
    conf["plugins"][1] =
        serde_json::json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}});
    podd.write_cni_config(&conf)?;
    fails_cleanly(
        &podd,
        "tuning",
        tonic::Code::Unavailable,
        &["\"tuning\"", "ADD", &net.name],
    )
    .await?;
    podd.ensure_nothing_left("after a failed tuning ADD")
        .await?;

    // An exhausted range: one address, taken by the first pod.
    let only = net.addr(7);
    podd.write_cni_config(&net.conflist(Some((&only, &only))))?;
    let first = podd.run_default_pod("first").await?;
    ensure!(
        pod_ip(&podd, &first).await?.0 == only,
        "first pod did not get {only}"
    );
    fails_cleanly(
        &podd,
        "exhausted",
        tonic::Code::ResourceExhausted,
        &["\"bridge\"", "no IP addresses available"],
    )
    .await?;
    ensure!(
        net.allocated_ips() == vec![only.clone()],
        "allocated: {:?}",
        net.allocated_ips()
    );
    ensure!(net.veths().len() == 1, "veths: {:?}", net.veths());
    ensure!(
        podd.run_dir_pods().len() == 1,
        "pins: {:?}",
        podd.run_dir_pods()
    );
    podd.remove_pod(&first.id).await?;
    podd.ensure_nothing_left("after removing the pod that held the only address")
        .await?;
    Ok(())
}

#[tokio::test]
async fn kill_9_keeps_the_pod_ip_and_a_later_remove_tears_it_down() -> Result<()> {
    let mut podd = Podd::start_with(Network::Bridge).await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("survivor").await?;
    let (ip, _) = pod_ip(&podd, &pod).await?;
    let c = podd.run_container(&pod, "c", &["sleep", "3600"]).await?;
    podd.kill9().await?;
    // The configuration changes while podd is down: DEL must use what ADD used.
    let mut conf = podd.net()?.conflist(None);
    conf["plugins"][1]["type"] = "no-such-plugin".into();
    podd.write_cni_config(&conf)?;
    podd.restart().await?;
    let (after, _) = pod_ip(&podd, &pod).await?;
    ensure!(
        after == ip,
        "pod IP {ip} became {after:?} across the restart"
    );
    let addr = podd
        .exec_ok(&c, &["ip", "-4", "-o", "addr", "show", "eth0"])
        .await?;
    ensure!(
        addr.contains(&format!("{ip}/")),
        "eth0 in the pod: {addr:?}"
    );
    podd.remove_pod(&pod.id).await?;
    podd.ensure_nothing_left("after removing the pod that survived kill -9")
        .await?;
    Ok(())
}

#[tokio::test]
async fn without_a_cni_config_network_is_not_ready_and_only_host_network_pods_run() -> Result<()> {
    let podd = Podd::start_with(Network::None).await?;
    podd.import_test_image().await?;
    let st = rpc(podd
        .runtime
        .clone()
        .status(cri::StatusRequest { verbose: false }))
    .await?;
    let conds = st.status.map(|s| s.conditions).unwrap_or_default();
    let net = conds
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .context("no NetworkReady condition")?;
    ensure!(
        !net.status
            && net.reason == "NetworkPluginNotReady"
            && net
                .message
                .contains(&podd.cni_conf_dir().display().to_string()),
        "NetworkReady: {net:?}"
    );
    ensure!(
        conds.iter().any(|c| c.r#type == "RuntimeReady" && c.status),
        "RuntimeReady: {conds:?}"
    );
    fails_cleanly(
        &podd,
        "nonet",
        tonic::Code::FailedPrecondition,
        &["no usable CNI network configuration"],
    )
    .await?;

    let mut cfg = podd.pod_config("hostnet", "");
    set_pod_network_mode(&mut cfg, cri::NamespaceMode::Node);
    let pod = podd.run_pod(cfg).await?;
    ensure!(
        pod_ip(&podd, &pod).await?.0.is_empty(),
        "a host-network pod got a pod IP"
    );
    let c = podd.run_container(&pod, "c", &["sleep", "3600"]).await?;
    for file in ["/etc/resolv.conf", "/etc/hosts"] {
        let inside = podd.exec_ok(&c, &["cat", file]).await?;
        let host = std::fs::read_to_string(file).unwrap_or_default();
        ensure!(
            inside == host,
            "{file} of a host-network pod: {inside:?}, host's {host:?}"
        );
    }
    let hn = podd.exec_ok(&c, &["cat", "/etc/hostname"]).await?;
    ensure!(hn.trim() == e2e::host::hostname(), "/etc/hostname {hn:?}");
    Ok(())
}

#[tokio::test]
async fn kill_9_during_add_is_torn_down_at_restart() -> Result<()> {
    let mut podd = Podd::start_with(Network::Bridge).await?;
    // The real bridge plugin, which then holds its answer back until the test killed podd.
    let marker = podd.tmp_dir().join("bridge-added");
    let wrapper = podd.cni_bin_dir().join("held-bridge");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nout=$(/usr/lib/cni/bridge); rc=$?\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then touch {}; sleep 5; fi\n\
             printf '%s' \"$out\"; exit $rc\n",
            marker.display()
        ),
    )?;
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let mut conf = podd.net()?.conflist(None);
    conf["plugins"][0]["type"] = "held-bridge".into();
    podd.write_cni_config(&conf)?;

    let mut client = podd.runtime.clone();
    let cfg = podd.pod_config("held", "");
    let call = tokio::spawn(async move {
        client
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: String::new(),
            })
            .await
    });
    e2e::eventually(
        "the bridge plugin to finish its ADD",
        Duration::from_secs(30),
        || async { marker.exists().then_some(()) },
    )
    .await?;
    let net = podd.net()?;
    ensure!(
        net.allocated_ips().len() == 1 && net.veths().len() == 1,
        "ADD made no IP/veth"
    );
    podd.kill9().await?;
    let _ = call.await;
    podd.restart().await?;
    podd.ensure_nothing_left("after a restart that cut RunPodSandbox short during ADD")
        .await?;
    // The held plugin finishes on its own (its answer goes nowhere).
    let w = wrapper.display().to_string();
    e2e::eventually(
        "the held plugin to exit",
        Duration::from_secs(20),
        || async { e2e::host::processes_mentioning(&w).is_empty().then_some(()) },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn stop_and_remove_after_the_infra_died_tear_the_network_down_twice_over() -> Result<()> {
    let podd = Podd::start_with(Network::Bridge).await?;
    let net = podd.net()?;
    let pod = podd.run_default_pod("orphan").await?;
    let (ip, _) = pod_ip(&podd, &pod).await?;
    ensure!(
        net.allocated_ips() == vec![ip.clone()] && net.veths().len() == 1,
        "before: IPs {:?}, veths {:?}",
        net.allocated_ips(),
        net.veths()
    );
    let st = podd.pod_status(&pod.id, true).await?;
    let record: serde_json::Value = serde_json::from_str(
        st.info
            .get("info")
            .context("no verbose \"info\" (the pod record)")?,
    )?;
    let pid = record["infra"]["pid"]
        .as_i64()
        .with_context(|| format!("no infra pid in the pod record {record}"))? as i32;
    let pin_dir = std::path::PathBuf::from(
        record["pin_dir"]
            .as_str()
            .with_context(|| format!("no pin_dir in the pod record {record}"))?,
    );
    ensure!(pin_dir.exists(), "pin dir {} missing", pin_dir.display());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .with_context(|| format!("kill -9 the infra {pid}"))?;
    e2e::eventually("the infra to die", Duration::from_secs(10), || async {
        (!e2e::host::alive(pid)).then_some(())
    })
    .await?;

    // With the infra gone the netns lives on in its pin: DEL must still reach it, and a
    // repeated Stop or Remove (kubelet retries) must succeed and find nothing to do.
    for round in 1..=2 {
        rpc(podd
            .runtime
            .clone()
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }))
        .await
        .with_context(|| format!("StopPodSandbox #{round} after the infra died"))?;
        let left = net.leftovers();
        ensure!(left.is_empty(), "after StopPodSandbox #{round}: {left:?}");
    }
    for round in 1..=2 {
        rpc(podd
            .runtime
            .clone()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }))
        .await
        .with_context(|| format!("RemovePodSandbox #{round} after the infra died"))?;
    }
    podd.ensure_nothing_left("after RemovePodSandbox").await?;
    ensure!(
        !pin_dir.exists(),
        "netns pin dir {} left",
        pin_dir.display()
    );
    Ok(())
}
