//! Pod-ready latency and per-pod memory overhead of podd, beside containerd (the reference)
//! driven through the same CRI client in the same run. Run it through `hack/bench`.
//!
//! Latency: RunPodSandbox + CreateContainer + StartContainer of a host-network pod with one
//! busybox `sleep` container, kubelet's namespace options otherwise; median and p95 over N pods.
//! Memory: with all N pods running, the PSS of what the runtime adds per pod besides the
//! workload: podd's infra and monitor; containerd's shim and pause process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::api::runtime_service_client::RuntimeServiceClient;
use e2e::{api as cri, cri as build, rpc, Podd};
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

async fn measure(
    runtime: Runtime,
    mut client: RuntimeServiceClient<Channel>,
    pods: usize,
    logs: &Path,
) -> Result<Figures> {
    let mut ids = Vec::new();
    let mut latencies = Vec::new();
    let mut phases = Vec::new();
    let tag = std::process::id();
    // One warm-up pod, not counted: first-use costs (page cache, lazy init) are not per pod.
    for i in 0..=pods {
        let mut pod = build::pod_config(&format!("bench-{tag}-{i}"), "", logs);
        let ns = pod
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
            .context("pod config without namespace options")?;
        ns.network = cri::NamespaceMode::Node as i32;
        let container = build::container_config(&pod, "c", &["sleep", "3600"]);
        let t0 = Instant::now();
        let id = rpc(client.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        }))
        .await?
        .pod_sandbox_id;
        let t1 = Instant::now();
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
    median_ms: f64,
    p95_ms: f64,
    pss_kib: f64,
}

fn summarize(f: &Figures) -> Summary {
    let mut ms: Vec<f64> = f.latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let mut kib: Vec<f64> = f.pss_kib.iter().map(|&k| k as f64).collect();
    kib.sort_by(f64::total_cmp);
    let phase = |k: usize| {
        let mut v: Vec<f64> = f.phases.iter().map(|p| p[k].as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, 50.0)
    };
    Summary {
        phase_ms: [phase(0), phase(1), phase(2)],
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
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let logs = podd.tmp_dir().join("logs");
    let ours = summarize(&measure(Runtime::Podd, podd.runtime.clone(), pods, &logs).await?);

    let reference = match &containerd {
        Some(endpoint) => {
            let socket = PathBuf::from(endpoint.trim_start_matches("unix://"));
            let channel = e2e::cri::connect(&socket).await?;
            let ref_logs = tempfile::tempdir()?;
            let f = measure(
                Runtime::Containerd,
                RuntimeServiceClient::new(channel),
                pods,
                ref_logs.path(),
            )
            .await
            .context("measuring containerd")?;
            Some(summarize(&f))
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
    if let Some(r) = &reference {
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
    Ok(())
}
