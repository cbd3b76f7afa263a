//! Pod sysctls: namespaced ones (IPC, mqueue, net, also per-interface after CNI ADD) are set
//! in the pod and seen by its containers, while the host and other pods keep their values;
//! node-wide ones, and ones for a namespace the pod shares with the host, are refused before
//! anything is made; one the kernel refuses rolls the pod back.

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use e2e::cri::set_pod_network_mode;
use e2e::{api as cri, Network, Podd};

/// (sysctl, value for the pod, its /proc/sys path). Every value differs from what a new
/// namespace starts with, so a pod without them shows something else.
fn to_set() -> Result<Vec<(String, String, String)>> {
    let fixed = [
        ("kernel.shm_rmid_forced", "1", "kernel/shm_rmid_forced"),
        ("fs.mqueue.msg_max", "100", "fs/mqueue/msg_max"),
        (
            "net.ipv4.ip_local_port_range",
            "20000\t30000",
            "net/ipv4/ip_local_port_range",
        ),
    ];
    let mut set: Vec<(String, String, String)> = fixed
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    // Slash form, and eth0 exists only after CNI ADD. A new netns copies the host's IPv4
    // defaults, so the value must differ from the host's default.
    let rp = (host_value("net/ipv4/conf/default/rp_filter")?
        .trim()
        .parse::<u8>()?
        + 1)
        % 3;
    set.push((
        "net/ipv4/conf/eth0/rp_filter".into(),
        rp.to_string(),
        "net/ipv4/conf/eth0/rp_filter".into(),
    ));
    Ok(set)
}

fn with_sysctls(mut cfg: cri::PodSandboxConfig, sysctls: &[(&str, &str)]) -> cri::PodSandboxConfig {
    let linux = cfg.linux.get_or_insert_with(Default::default);
    linux.sysctls = sysctls
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<HashMap<_, _>>();
    cfg
}

fn host_value(path: &str) -> Result<String> {
    let p = format!("/proc/sys/{path}");
    std::fs::read_to_string(&p).with_context(|| format!("reading {p} on the host"))
}

async fn pod_values(
    podd: &Podd,
    container: &str,
    set: &[(String, String, String)],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (_, _, path) in set {
        let v = podd
            .exec_ok(container, &["cat", &format!("/proc/sys/{path}")])
            .await?;
        out.push(v.trim().to_string());
    }
    Ok(out)
}

#[tokio::test]
async fn namespaced_sysctls_reach_the_pod_and_nothing_else() -> Result<()> {
    let podd = Podd::start_with(Network::Bridge).await?;
    podd.import_test_image().await?;
    let set = to_set()?;
    let host_before: Vec<String> = set
        .iter()
        .filter(|(_, _, p)| !p.contains("eth0"))
        .map(|(_, _, p)| host_value(p))
        .collect::<Result<_>>()?;

    let pairs: Vec<(&str, &str)> = set
        .iter()
        .map(|(k, v, _)| (k.as_str(), v.as_str()))
        .collect();
    let pod = podd
        .run_pod(with_sysctls(podd.pod_config("sysctl", ""), &pairs))
        .await?;
    let c = podd.run_container(&pod, "c", &["sleep", "3600"]).await?;
    let got = pod_values(&podd, &c, &set).await?;
    for ((name, want, _), got) in set.iter().zip(&got) {
        // The kernel prints ip_local_port_range with a tab, whatever separator was written.
        ensure!(
            got.split_whitespace().eq(want.split_whitespace()),
            "{name} in the pod is {got:?}, want {want:?}"
        );
    }

    let other = podd.run_default_pod("sysctl-other").await?;
    let d = podd.run_container(&other, "d", &["sleep", "3600"]).await?;
    let theirs = pod_values(&podd, &d, &set).await?;
    for ((name, want, _), got) in set.iter().zip(&theirs) {
        ensure!(
            !got.split_whitespace().eq(want.split_whitespace()),
            "a pod without sysctls has pod one's {name}={got:?}"
        );
    }

    let host_after: Vec<String> = set
        .iter()
        .filter(|(_, _, p)| !p.contains("eth0"))
        .map(|(_, _, p)| host_value(p))
        .collect::<Result<_>>()?;
    ensure!(
        host_before == host_after,
        "the host's sysctls changed: {host_before:?} -> {host_after:?}"
    );
    Ok(())
}

/// Refused as the request's fault, before or after the infra and CNI ADD, leaving nothing.
async fn refused(podd: &Podd, cfg: cri::PodSandboxConfig, words: &[&str]) -> Result<()> {
    podd.run_pod_fails(cfg, tonic::Code::InvalidArgument, words)
        .await?;
    podd.ensure_nothing_left("after a refused RunPodSandbox")
        .await
}

#[tokio::test]
async fn sysctls_a_pod_may_not_set_are_refused_and_leave_nothing() -> Result<()> {
    let podd = Podd::start_with(Network::Bridge).await?;
    let panic_before = host_value("kernel/panic")?;

    let cfg = with_sysctls(podd.pod_config("node-wide", ""), &[("kernel.panic", "7")]);
    refused(&podd, cfg, &["kernel.panic", "not a namespaced sysctl"]).await?;

    let mut cfg = with_sysctls(
        podd.pod_config("hostnet", ""),
        &[("net.ipv4.ip_local_port_range", "20000 30000")],
    );
    set_pod_network_mode(&mut cfg, cri::NamespaceMode::Node);
    refused(&podd, cfg, &["host's network"]).await?;

    // Accepted by name, refused by the kernel after the infra and CNI ADD: rolled back.
    let cfg = with_sysctls(
        podd.pod_config("unknown", ""),
        &[("net.ipv4.no_such_sysctl", "1")],
    );
    refused(&podd, cfg, &["net.ipv4.no_such_sysctl", "no such sysctl"]).await?;
    let cfg = with_sysctls(podd.pod_config("badvalue", ""), &[("kernel.sem", "x")]);
    refused(&podd, cfg, &["kernel.sem", "refused the value"]).await?;

    ensure!(
        host_value("kernel/panic")? == panic_before,
        "the host's kernel.panic changed"
    );
    Ok(())
}
