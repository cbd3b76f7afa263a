//! podd: serves the Kubernetes CRI on a unix socket.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(version, about = "podd: a Kubernetes CRI pod runtime")]
struct Args {
    /// Unix socket to serve the CRI on (created with mode 0600).
    #[arg(long, default_value = "/run/podd/podd.sock")]
    socket: PathBuf,
    /// Persistent state: records, images, container layers.
    #[arg(long, default_value = "/var/lib/podd")]
    root: PathBuf,
    /// Runtime state: namespace pins and pod shm mounts.
    #[arg(long = "run-dir", default_value = "/run/podd")]
    run_dir: PathBuf,
    /// The podd-shim binary (default: next to podd, then $PATH).
    #[arg(long)]
    shim: Option<PathBuf>,
    /// Config file (TOML: registries, cni; see the README) [default: /etc/podd/podd.toml, may be absent].
    /// Flags override what it says.
    #[arg(long)]
    config: Option<PathBuf>,
    /// CNI plugin directories, ':'-separated [default: /usr/lib/cni:/opt/cni/bin].
    #[arg(long = "cni-bin-dir")]
    cni_bin_dir: Option<String>,
    /// CNI network configuration directory; the first file in lexical order is used
    /// [default: /etc/cni/net.d].
    #[arg(long = "cni-conf-dir")]
    cni_conf_dir: Option<PathBuf>,
    /// Subnet of the default network podd writes when the conf dir has none [default:
    /// 10.209.0.0/16].
    #[arg(long = "pod-subnet")]
    pod_subnet: Option<ipnet::Ipv4Net>,
    /// Bridge of the default network podd writes [default: podd0]; two podds on one host
    /// need different bridges (and `[cni] network_name`s).
    #[arg(long = "cni-bridge")]
    cni_bridge: Option<String>,
    /// Write the default network when the conf dir has none [default: true].
    #[arg(long = "cni-default-network")]
    cni_default_network: Option<bool>,
    /// Log filter, e.g. `info` or `podd=debug` (RUST_LOG wins when set).
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .context("--log-level is not a valid filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, never in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("podd must run as root: it creates namespaces and mounts");
    }
    let mut config = match &args.config {
        Some(path) => podd::config::Config::load(path, true),
        None => podd::config::Config::load(std::path::Path::new(podd::config::DEFAULT_PATH), false),
    }?;
    podd::isolate::become_subreaper().context("becoming the child subreaper")?;
    let shim = match args.shim {
        Some(p) => podd::isolate::Shim::new(p),
        None => podd::isolate::Shim::locate().context("finding podd-shim")?,
    };
    let dirs = podd::runtime::Dirs {
        root: args.root,
        run: args.run_dir,
    };
    let cni = &mut config.cni;
    if let Some(dirs) = &args.cni_bin_dir {
        cni.bin_dirs = std::env::split_paths(dirs).collect();
    }
    if let Some(dir) = args.cni_conf_dir {
        cni.conf_dir = dir;
    }
    if let Some(subnet) = args.pod_subnet {
        cni.subnet = subnet;
    }
    if let Some(bridge) = args.cni_bridge {
        cni.bridge = bridge;
    }
    if let Some(on) = args.cni_default_network {
        cni.default_network = on;
    }
    let cni = podd::net::Cni::new(config.cni);
    let runtime = podd::runtime::Runtime::open(dirs, shim, cni).context("opening podd state")?;
    podd::server::serve(&args.socket, runtime, config.registries).await
}
