//! Pod-ready latency and per-pod memory overhead of podd, beside containerd (the reference)
//! driven through the same CRI client in the same run. Run it through `hack/bench`.
//!
//! Latency: RunPodSandbox + CreateContainer + StartContainer of a host-network pod with one
//! busybox `sleep` container, kubelet's namespace options otherwise; median and p95 over N pods.
//! Memory: with all N pods running, the PSS of what the runtime adds per pod besides the
//! workload: podd's infra and monitor; containerd's shim and pause process.
//! Networking: the same with pods in their own network namespace on a CNI bridge network
//! (bridge + host-local + portmap, the chain podd writes by default), each runtime on its own
//! bridge and /24 subnet ([`e2e::net::TestNet`]); RunPodSandbox (which includes CNI ADD)
//! median and p95 over N pods.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::api::runtime_service_client::RuntimeServiceClient;
use e2e::net::TestNet;
use e2e::{api as cri, cri as build, rpc, Network, Podd};
use tonic::transport::Channel;

struct Figures {
    latencies: Vec<Duration>,
    /// Per pod: RunPodSandbox, CreateContainer, StartContainer.
    phases: Vec<[Duration; 3]>,
    pss_kib: Vec<u64>,
}

fn usage() -> ! {
    eprintln!("usage: podd-bench [--pods N] [--containerd unix:///path/containerd.sock]");
    std::process::exit(2);
}

fn pss_kib(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no Pss line in {path}"))
}

fn ppid(pid: i32) -> Result<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    Ok(after
        .split_whitespace()
        .nth(1)
        .context("no ppid")?
        .parse()?)
}

/// A pid from a verbose status `info` JSON, at `path` (e.g. ["infra", "pid"]).
fn info_pid(info: &HashMap<String, String>, path: &[&str]) -> Result<i32> {
    let raw = info.get("info").context("verbose status has no info")?;
    let mut v: serde_json::Value = serde_json::from_str(raw)?;
    for key in path {
        v = v
            .get(*key)
            .cloned()
            .with_context(|| format!("info has no {path:?}"))?;
    }
    Ok(v.as_i64().context("pid is not a number")? as i32)
}

#[derive(Clone, Copy, PartialEq)]
enum Runtime {
    Podd,
    Containerd,
}

/// The pod's IP (PodSandboxStatus).
async fn pod_ip(client: &mut RuntimeServiceClient<Channel>, id: &str) -> Result<String> {
    let st = rpc(client.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: id.to_string(),
        verbose: false,
    }))
    .await?;
    Ok(st
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default())
}

async fn measure(
    runtime: Runtime,
    mut client: RuntimeServiceClient<Channel>,
    pods: usize,
    logs: &Path,
    // Some(subnet prefix): pods on the CNI network, whose IPs must be in it.
    network: Option<&str>,
) -> Result<Figures> {
    let mut ids = Vec::new();
    let mut latencies = Vec::new();
    let mut phases = Vec::new();
    let tag = std::process::id();
    // One warm-up pod, not counted: first-use costs (page cache, lazy init) are not per pod.
    for i in 0..=pods {
        let mut pod = build::pod_config(&format!("bench-{tag}-{i}"), "", logs);
        if network.is_none() {
            build::set_pod_network_mode(&mut pod, cri::NamespaceMode::Node);
        }
        let container = build::container_config(&pod, "c", &["sleep", "3600"]);
        let t0 = Instant::now();
        let id = rpc(client.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        }))
        .await?
        .pod_sandbox_id;
        let t1 = Instant::now();
        if let Some(prefix) = network {
            let ip = pod_ip(&mut client, &id).await?;
            if !ip.starts_with(prefix) {
                bail!("pod {id} got IP {ip:?}, not one of the bench network {prefix}0/24");
            }
        }
        let cid = rpc(client.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: id.clone(),
            config: Some(container),
            sandbox_config: Some(pod),
        }))
        .await?
        .container_id;
        let t2 = Instant::now();
        rpc(client.start_container(cri::StartContainerRequest {
            container_id: cid.clone(),
        }))
        .await?;
        if i > 0 {
            let t3 = Instant::now();
            latencies.push(t3 - t0);
            phases.push([t1 - t0, t2 - t1, t3 - t2]);
        }
        ids.push((id, cid));
    }
    let mut pss = Vec::new();
    for (id, cid) in &ids[1..] {
        let pod = rpc(client.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: true,
        }))
        .await?;
        let ctr = rpc(client.container_status(cri::ContainerStatusRequest {
            container_id: cid.clone(),
            verbose: true,
        }))
        .await?;
        let pids = match runtime {
            Runtime::Podd => vec![
                info_pid(&pod.info, &["infra", "pid"])?,
                info_pid(&ctr.info, &["monitor", "pid"])?,
            ],
            Runtime::Containerd => {
                let pause = info_pid(&pod.info, &["pid"])?;
                vec![pause, ppid(pause)?]
            }
        };
        let mut sum = 0;
        for pid in pids {
            sum += pss_kib(pid)?;
        }
        pss.push(sum);
    }
    for (id, _) in &ids {
        rpc(client.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        }))
        .await?;
        rpc(client.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        }))
        .await?;
    }
    Ok(Figures {
        latencies,
        phases,
        pss_kib: pss,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Summary {
    /// Medians of RunPodSandbox, CreateContainer, StartContainer.
    phase_ms: [f64; 3],
    runp_p95_ms: f64,
    median_ms: f64,
    p95_ms: f64,
    pss_kib: f64,
}

fn summarize(f: &Figures) -> Summary {
    let mut ms: Vec<f64> = f.latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let mut kib: Vec<f64> = f.pss_kib.iter().map(|&k| k as f64).collect();
    kib.sort_by(f64::total_cmp);
    let phase = |k: usize, p: f64| {
        let mut v: Vec<f64> = f.phases.iter().map(|p| p[k].as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, p)
    };
    Summary {
        phase_ms: [phase(0, 50.0), phase(1, 50.0), phase(2, 50.0)],
        runp_p95_ms: phase(0, 95.0),
        median_ms: percentile(&ms, 50.0),
        p95_ms: percentile(&ms, 95.0),
        pss_kib: percentile(&kib, 50.0),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut pods = 50usize;
    let mut containerd: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pods" => {
                pods = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--containerd" => containerd = Some(args.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    if pods == 0 {
        bail!("--pods must be at least 1");
    }
    let podd = Podd::start_with(Network::Bridge).await?;
    podd.import_test_image().await?;
    let logs = podd.tmp_dir().join("logs");
    let podd_prefix = podd.net()?.addr_prefix();
    let ours = summarize(&measure(Runtime::Podd, podd.runtime.clone(), pods, &logs, None).await?);
    let ours_net = summarize(
        &measure(
            Runtime::Podd,
            podd.runtime.clone(),
            pods,
            &logs,
            Some(&podd_prefix),
        )
        .await
        .context("measuring podd with networking")?,
    );

    let reference = match &containerd {
        Some(endpoint) => {
            let socket = PathBuf::from(endpoint.trim_start_matches("unix://"));
            let channel = e2e::cri::connect(&socket).await?;
            let ref_logs = tempfile::tempdir()?;
            let f = measure(
                Runtime::Containerd,
                RuntimeServiceClient::new(channel.clone()),
                pods,
                ref_logs.path(),
                None,
            )
            .await
            .context("measuring containerd")?;
            // containerd's own bridge network, in the conf dir hack/containerd-ref made
            // (sorting before its loopback conflist; containerd reloads the dir on change).
            let conf_dir = socket
                .parent()
                .context("containerd socket has no directory")?
                .join("cni/net.d");
            let net_tmp = tempfile::tempdir()?;
            let net = TestNet::reserve(net_tmp.path())?;
            let conf = conf_dir.join("05-bench.conflist");
            std::fs::write(&conf, serde_json::to_vec_pretty(&net.conflist(None))?)
                .with_context(|| format!("writing {}", conf.display()))?;
            let prefix = net.addr_prefix();
            let mut client = RuntimeServiceClient::new(channel);
            wait_for_network(&mut client, ref_logs.path(), &prefix).await?;
            let f_net = measure(
                Runtime::Containerd,
                client,
                pods,
                ref_logs.path(),
                Some(&prefix),
            )
            .await
            .context("measuring containerd with networking");
            let _ = std::fs::remove_file(&conf);
            let left = net.leftovers();
            if !left.is_empty() {
                eprintln!("containerd's bench network left: {left:?}");
            }
            Some((summarize(&f), summarize(&f_net?)))
        }
        None => None,
    };

    println!("pod-ready latency (RunPodSandbox + CreateContainer + StartContainer, host network), {pods} pods");
    println!("and runtime memory per pod (PSS, median over the {pods} pods running together)");
    println!();
    println!(
        "{:<12} {:>12} {:>12} {:>14}   median ms of runp / create / start",
        "runtime", "median ms", "p95 ms", "PSS KiB/pod"
    );
    let row = |name: &str, s: &Summary| {
        println!(
            "{:<12} {:>12.2} {:>12.2} {:>14.0}   {:.2} / {:.2} / {:.2}",
            name, s.median_ms, s.p95_ms, s.pss_kib, s.phase_ms[0], s.phase_ms[1], s.phase_ms[2]
        )
    };
    row("podd", &ours);
    if let Some((r, _)) = &reference {
        row("containerd", r);
        println!();
        println!(
            "podd / containerd: latency median {:.3}x, p95 {:.3}x, memory {:.3}x",
            ours.median_ms / r.median_ms,
            ours.p95_ms / r.p95_ms,
            ours.pss_kib / r.pss_kib
        );
    } else {
        println!("(no containerd reference: pass --containerd ENDPOINT, as hack/bench does)");
    }
    println!();
    println!("RunPodSandbox latency with CNI networking (own netns, bridge + host-local + portmap), {pods} pods");
    println!();
    println!(
        "{:<12} {:>12} {:>12}   pod-ready median / p95 ms",
        "runtime", "median ms", "p95 ms"
    );
    let net_row = |name: &str, s: &Summary| {
        println!(
            "{:<12} {:>12.2} {:>12.2}   {:.2} / {:.2}",
            name, s.phase_ms[0], s.runp_p95_ms, s.median_ms, s.p95_ms
        )
    };
    net_row("podd", &ours_net);
    if let Some((_, r)) = &reference {
        net_row("containerd", r);
        println!();
        println!(
            "podd / containerd with networking: RunPodSandbox median {:.3}x, p95 {:.3}x",
            ours_net.phase_ms[0] / r.phase_ms[0],
            ours_net.runp_p95_ms / r.runp_p95_ms
        );
    }
    Ok(())
}

/// Waits until containerd runs pods on the bench network (it reloads its conf dir
/// asynchronously): a probe pod's IP is in `prefix`. Probe pods are removed.
async fn wait_for_network(
    client: &mut RuntimeServiceClient<Channel>,
    logs: &Path,
    prefix: &str,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        let pod = build::pod_config(&format!("bench-probe-{}-{i}", std::process::id()), "", logs);
        let id = rpc(client.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod),
            runtime_handler: String::new(),
        }))
        .await?
        .pod_sandbox_id;
        let ip = pod_ip(client, &id).await?;
        rpc(client.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        }))
        .await?;
        rpc(client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })).await?;
        if ip.starts_with(prefix) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("containerd did not pick up the bench network {prefix}0/24 within 30 s (probe IP {ip:?})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    unreachable!()
}
