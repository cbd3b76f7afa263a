//! [`Podd`]: one podd daemon per test, on its own socket, root dir and run dir, torn down and
//! checked for leftovers when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use podd_proto::podd::v1::podd_client::PoddClient;
use podd_proto::podd::v1::ImportImageRequest;
use podd_proto::runtime::v1 as cri;
use podd_proto::runtime::v1::image_service_client::ImageServiceClient;
use podd_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::logs::{self, LogEntry};
use crate::net::{loopback_conflist, TestNet};
use crate::{bins, cri as build, host, image};

/// The message a test run by a non-root user fails with (tests never skip).
pub const NEED_ROOT: &str = "e2e tests need root (they create namespaces and mounts)";

/// How long podd gets to answer Version after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on any single CRI call the harness makes (ExecSync adds its own timeout).
const RPC_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a PullImage the harness makes (the benchmark image is 100 MB).
const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// A podd under an `e2e-reaper`, with CRI clients. See the crate docs.
pub struct Podd {
    name: String,
    tmp: PathBuf,
    socket: PathBuf,
    root: PathBuf,
    run_dir: PathBuf,
    log_root: PathBuf,
    /// Every reaper started (a `kill -9`ed podd's reaper stays: it reaps what podd left).
    reapers: Vec<Reaper>,
    /// Number of podd starts, names the podd log files.
    starts: u32,
    /// CRI RuntimeService client.
    pub runtime: RuntimeServiceClient<Channel>,
    /// CRI ImageService client.
    pub images: ImageServiceClient<Channel>,
    /// podd's own API.
    pub api: PoddClient<Channel>,
    counter: AtomicU32,
    /// container id -> host path of its CRI log, as the harness asked for it.
    log_paths: Mutex<HashMap<String, PathBuf>>,
    /// `--shim` for the next start instead of the podd-shim under test (see [`Podd::use_shim`]).
    shim: Option<PathBuf>,
    /// `--config` file podd is started with (see [`Podd::start_with_config`]).
    config: Option<PathBuf>,
    /// podd's `--cni-conf-dir`, the test's own.
    cni_conf_dir: PathBuf,
    /// First of podd's `--cni-bin-dir` (then /usr/lib/cni): a test's own plugins.
    cni_bin_dir: PathBuf,
    /// The test's own bridge network, with [`Network::Bridge`].
    net: Option<TestNet>,
}

/// The CNI network a test's podd gets (podd never writes its default network in tests: that
/// would be one bridge and subnet shared by concurrent tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// A loopback-only network: pods have `lo` only, nothing is made on the host.
    #[default]
    Loopback,
    /// The test's own bridge, subnet and IPAM dir ([`TestNet`]), checked for leftovers
    /// (allocated IPs, veths, iptables rules) when the podd is dropped.
    Bridge,
    /// No configuration at all: NetworkReady is false, only host-network pods run.
    None,
}

struct Reaper {
    child: Child,
    podd_pid: i32,
}

/// A pod the harness ran: its id and the config it was run with (CreateContainer needs it).
#[derive(Debug, Clone)]
pub struct Pod {
    pub id: String,
    pub config: cri::PodSandboxConfig,
}

impl Pod {
    pub fn name(&self) -> &str {
        self.config
            .metadata
            .as_ref()
            .map(|m| m.name.as_str())
            .unwrap_or("")
    }
}

impl Podd {
    /// Starts a podd with a fresh temp dir (`/tmp/podd-e2e-<test>-XXXXXX`) holding its socket,
    /// `root/`, `run/` and the pods' CRI logs (`logs/`), and waits until it answers Version.
    ///
    /// Must be called from the test's own thread (plain `#[tokio::test]`, current-thread
    /// flavour): the reaper dies with the thread that started it.
    pub async fn start() -> Result<Podd> {
        Podd::start_inner(Network::Loopback, None).await
    }

    /// Like [`Podd::start`], with `config` (TOML) written to `<temp dir>/podd.toml` and passed
    /// as `--config` (on restarts too).
    pub async fn start_with_config(config: &str) -> Result<Podd> {
        Podd::start_inner(Network::Loopback, Some(config)).await
    }

    /// [`Podd::start`] with the given CNI network.
    pub async fn start_with(network: Network) -> Result<Podd> {
        Podd::start_inner(network, None).await
    }

    async fn start_inner(network: Network, config: Option<&str>) -> Result<Podd> {
        if !nix::unistd::geteuid().is_root() {
            bail!(NEED_ROOT);
        }
        let name = test_name();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("podd-e2e-{name}-"))
            .tempdir_in("/tmp")
            .context("creating the test's temp dir")?
            .keep();
        let mut podd = Podd {
            socket: tmp.join("podd.sock"),
            root: tmp.join("root"),
            run_dir: tmp.join("run"),
            log_root: tmp.join("logs"),
            cni_conf_dir: tmp.join("cni-conf"),
            cni_bin_dir: tmp.join("cni-bin"),
            tmp,
            name,
            reapers: Vec::new(),
            starts: 0,
            // Placeholders until the daemon is up; replaced by start_daemon.
            runtime: RuntimeServiceClient::new(lazy_channel()),
            images: ImageServiceClient::new(lazy_channel()),
            api: PoddClient::new(lazy_channel()),
            counter: AtomicU32::new(0),
            log_paths: Mutex::new(HashMap::new()),
            shim: None,
            config: None,
            net: None,
        };
        std::fs::create_dir_all(&podd.log_root)?;
        std::fs::create_dir_all(&podd.cni_conf_dir)?;
        std::fs::create_dir_all(&podd.cni_bin_dir)?;
        let conflist = match network {
            Network::Loopback => Some(loopback_conflist(&format!("lo-{}", podd.name))),
            Network::Bridge => {
                let net = TestNet::reserve(&podd.tmp)?;
                let c = net.conflist(None);
                podd.net = Some(net);
                Some(c)
            }
            Network::None => None,
        };
        if let Some(c) = conflist {
            podd.write_cni_config(&c)?;
        }
        if let Some(text) = config {
            let path = podd.tmp.join("podd.toml");
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            podd.config = Some(path);
        }
        podd.start_daemon().await?;
        Ok(podd)
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }
    /// podd's CNI conf dir (podd reads it on every RunPodSandbox).
    pub fn cni_conf_dir(&self) -> &Path {
        &self.cni_conf_dir
    }
    /// A plugin directory podd searches before /usr/lib/cni (for a test's own plugins).
    pub fn cni_bin_dir(&self) -> &Path {
        &self.cni_bin_dir
    }
    /// The test's bridge network ([`Network::Bridge`]).
    pub fn net(&self) -> Result<&TestNet> {
        self.net
            .as_ref()
            .ok_or_else(|| anyhow!("this podd was started without Network::Bridge"))
    }
    /// Replaces the network configuration in the conf dir with `conflist`
    /// (`10-test.conflist`, written atomically).
    pub fn write_cni_config(&self, conflist: &serde_json::Value) -> Result<()> {
        let path = self.cni_conf_dir.join("10-test.conflist");
        let tmp = self.cni_conf_dir.join(".10-test.conflist.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(conflist)?)?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }
    pub fn socket(&self) -> &Path {
        &self.socket
    }
    pub fn root_dir(&self) -> &Path {
        &self.root
    }
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }
    /// pid of the current podd's reaper (podd's parent).
    pub fn reaper_pid(&self) -> i32 {
        self.reapers
            .last()
            .map(|r| r.child.id() as i32)
            .unwrap_or(0)
    }
    /// pid of the current podd.
    pub fn pid(&self) -> i32 {
        self.reapers.last().map(|r| r.podd_pid).unwrap_or(0)
    }

    async fn start_daemon(&mut self) -> Result<()> {
        self.starts += 1;
        let podd_bin = bins::podd()?;
        let shim = match &self.shim {
            Some(path) => path.clone(),
            None => bins::podd_shim()?,
        };
        let log_path = self.podd_log_path(self.starts);
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        // podd at debug, its libraries (h2 frames...) at info.
        let level =
            std::env::var("PODD_E2E_LOG_LEVEL").unwrap_or_else(|_| "info,podd=debug".into());
        let mut cmd = Command::new(bins::reaper());
        cmd.arg(&podd_bin);
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        let mut child = cmd
            .arg("--socket")
            .arg(&self.socket)
            .arg("--root")
            .arg(&self.root)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--shim")
            .arg(&shim)
            .arg("--log-level")
            .arg(&level)
            .arg("--cni-conf-dir")
            .arg(&self.cni_conf_dir)
            .arg("--cni-bin-dir")
            .arg(format!("{}:/usr/lib/cni", self.cni_bin_dir.display()))
            .arg("--cni-default-network")
            .arg("false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", bins::reaper().display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut line)?;
        let Ok(podd_pid) = line.trim().parse::<i32>() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "e2e-reaper did not start podd ({}):\n{}",
                podd_bin.display(),
                self.podd_log_tail(self.starts)
            );
        };
        self.reapers.push(Reaper { child, podd_pid });

        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_err = anyhow!("socket {} never appeared", self.socket.display());
        loop {
            if !host::alive(podd_pid) {
                bail!(
                    "podd (pid {podd_pid}) exited before serving {}:\n{}",
                    self.socket.display(),
                    self.podd_log_tail(self.starts)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "podd did not answer Version on {} within {START_TIMEOUT:?}: {last_err:#}\n{}",
                    self.socket.display(),
                    self.podd_log_tail(self.starts)
                );
            }
            if self.socket.exists() {
                match self.try_connect().await {
                    Ok(()) => return Ok(()),
                    Err(e) => last_err = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_connect(&mut self) -> Result<()> {
        let ch = build::connect(&self.socket).await?;
        let mut rt = RuntimeServiceClient::new(ch.clone());
        let v = tokio::time::timeout(
            Duration::from_secs(5),
            rt.version(cri::VersionRequest {
                version: "v1".into(),
            }),
        )
        .await
        .context("Version timed out")??
        .into_inner();
        if v.runtime_api_version != "v1" {
            bail!(
                "Version: runtime_api_version {:?}, want v1",
                v.runtime_api_version
            );
        }
        self.runtime = rt;
        self.images = ImageServiceClient::new(ch.clone());
        self.api = PoddClient::new(ch);
        Ok(())
    }

    fn podd_log_path(&self, start: u32) -> PathBuf {
        self.tmp.join(format!("podd-{start}.log"))
    }

    /// The last lines of podd's log (stderr of the reaper and podd) of the given start.
    pub fn podd_log_tail(&self, start: u32) -> String {
        let text = std::fs::read_to_string(self.podd_log_path(start)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- {} (last {} lines) ---\n{}\n---",
            self.podd_log_path(start).display(),
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// `kill -9` podd (its pods, infra and monitor processes stay, re-parented to the reaper).
    pub async fn kill9(&mut self) -> Result<()> {
        let pid = self.pid();
        kill(Pid::from_raw(pid), Signal::SIGKILL).with_context(|| format!("kill -9 {pid}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while host::alive(pid) {
            if Instant::now() > deadline {
                bail!("podd (pid {pid}) still alive 10 s after SIGKILL");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The `--shim` the next [`Podd::restart`] passes (e.g. a wrapper around
    /// [`bins::podd_shim`] that stretches a crash window); None: the podd-shim under test.
    pub fn use_shim(&mut self, shim: Option<PathBuf>) {
        self.shim = shim;
    }

    /// Starts a new podd (under a new reaper) on the same socket, root dir and run dir.
    pub async fn restart(&mut self) -> Result<()> {
        if host::alive(self.pid()) {
            bail!("restart: podd (pid {}) is still running", self.pid());
        }
        self.start_daemon().await
    }

    /// Imports the test image (built once per test run) through podd's ImportImage and returns
    /// its reference.
    pub async fn import_test_image(&self) -> Result<String> {
        let layout = image::test_image_layout()?;
        let resp = rpc(self.api.clone().import_image(ImportImageRequest {
            path: layout.to_string_lossy().into_owned(),
            name: image::TEST_IMAGE.to_string(),
        }))
        .await
        .with_context(|| format!("ImportImage {}", layout.display()))?;
        if resp.images.is_empty() {
            bail!("ImportImage {} reported no images", layout.display());
        }
        Ok(image::TEST_IMAGE.to_string())
    }

    /// CRI PullImage of `image` with optional basic credentials; the image id, or the gRPC
    /// status as is.
    pub async fn pull(
        &self,
        image: &str,
        creds: Option<(&str, &str)>,
    ) -> std::result::Result<String, tonic::Status> {
        let auth = creds.map(|(u, p)| cri::AuthConfig {
            username: u.to_string(),
            password: p.to_string(),
            ..Default::default()
        });
        let mut client = self.images.clone();
        let call = client.pull_image(cri::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config: None,
        });
        match tokio::time::timeout(PULL_TIMEOUT, call).await {
            Ok(r) => r.map(|r| r.into_inner().image_ref),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "e2e harness: PullImage {image} did not return within {PULL_TIMEOUT:?}"
            ))),
        }
    }

    /// CRI PullImage that must succeed; returns the image id.
    pub async fn pull_ok(&self, image: &str) -> Result<String> {
        self.pull(image, None)
            .await
            .map_err(|s| anyhow!("PullImage {image}: {:?}: {}", s.code(), s.message()))
    }

    /// ImageStatus of `image` (None: podd does not have it).
    pub async fn image_status(&self, image: &str) -> Result<Option<cri::Image>> {
        Ok(
            rpc(self.images.clone().image_status(cri::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            }))
            .await
            .with_context(|| format!("ImageStatus {image}"))?
            .image,
        )
    }

    /// ListImages without a filter.
    pub async fn list_images(&self) -> Result<Vec<cri::Image>> {
        Ok(rpc(self
            .images
            .clone()
            .list_images(cri::ListImagesRequest { filter: None }))
        .await
        .context("ListImages")?
        .images)
    }

    /// RemoveImage by reference, id or digest reference.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        rpc(self.images.clone().remove_image(cri::RemoveImageRequest {
            image: Some(image_spec(image)),
        }))
        .await
        .with_context(|| format!("RemoveImage {image}"))?;
        Ok(())
    }

    /// A unique pod name for this test: `<hint>-<test>-<n>`.
    pub fn unique_name(&self, hint: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{hint}-{}-{n}", self.name)
    }

    /// A pod config as kubelet would send it (see [`build::pod_config`]) with a unique name,
    /// the given hostname (empty: none) and a log directory the harness created.
    pub fn pod_config(&self, hint: &str, hostname: &str) -> cri::PodSandboxConfig {
        let name = self.unique_name(hint);
        let log_dir = self.log_root.join(&name);
        std::fs::create_dir_all(&log_dir).expect("create pod log dir");
        build::pod_config(&name, hostname, &log_dir)
    }

    /// RunPodSandbox.
    pub async fn run_pod(&self, config: cri::PodSandboxConfig) -> Result<Pod> {
        let name = config.metadata.as_ref().map(|m| m.name.clone());
        let resp = rpc(self
            .runtime
            .clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            }))
        .await
        .with_context(|| format!("RunPodSandbox {name:?}"))?;
        if resp.pod_sandbox_id.is_empty() {
            bail!("RunPodSandbox {name:?} returned an empty id");
        }
        Ok(Pod {
            id: resp.pod_sandbox_id,
            config,
        })
    }

    /// RunPodSandbox must fail with `code` and a message holding every one of `words`.
    pub async fn run_pod_fails(
        &self,
        config: cri::PodSandboxConfig,
        code: tonic::Code,
        words: &[&str],
    ) -> Result<()> {
        let name = config.metadata.as_ref().map(|m| m.name.clone());
        let res = self
            .runtime
            .clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await;
        let status = match res {
            Ok(r) => bail!(
                "RunPodSandbox {name:?} succeeded: {:?}; want {code:?} naming {words:?}",
                r.into_inner()
            ),
            Err(s) => s,
        };
        ensure!(
            status.code() == code && words.iter().all(|w| status.message().contains(w)),
            "RunPodSandbox {name:?}: {:?} {:?}; want {code:?} naming {words:?}",
            status.code(),
            status.message()
        );
        Ok(())
    }

    /// Runs a default pod (kubelet namespaces) named after `hint`.
    pub async fn run_default_pod(&self, hint: &str) -> Result<Pod> {
        let cfg = self.pod_config(hint, "");
        self.run_pod(cfg).await
    }

    /// A container config for the test image (see [`build::container_config`]).
    pub fn container_config(&self, pod: &Pod, name: &str, argv: &[&str]) -> cri::ContainerConfig {
        build::container_config(&pod.config, name, argv)
    }

    /// CreateContainer (creating the container's log directory first, as kubelet does).
    pub async fn create_container(
        &self,
        pod: &Pod,
        config: cri::ContainerConfig,
    ) -> Result<String> {
        let log_path = Path::new(&pod.config.log_directory).join(&config.log_path);
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let name = config.metadata.as_ref().map(|m| m.name.clone());
        let resp = rpc(self
            .runtime
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            }))
        .await
        .with_context(|| format!("CreateContainer {name:?} in pod {}", pod.id))?;
        if resp.container_id.is_empty() {
            bail!("CreateContainer {name:?} returned an empty id");
        }
        self.log_paths
            .lock()
            .unwrap()
            .insert(resp.container_id.clone(), log_path);
        Ok(resp.container_id)
    }

    /// StartContainer.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        rpc(self
            .runtime
            .clone()
            .start_container(cri::StartContainerRequest {
                container_id: id.to_string(),
            }))
        .await
        .with_context(|| format!("StartContainer {id}"))?;
        Ok(())
    }

    /// CreateContainer + StartContainer of the test image running `argv`.
    pub async fn run_container(&self, pod: &Pod, name: &str, argv: &[&str]) -> Result<String> {
        let cfg = self.container_config(pod, name, argv);
        let id = self.create_container(pod, cfg).await?;
        self.start_container(&id).await?;
        Ok(id)
    }

    /// ContainerStatus.
    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let resp = rpc(self
            .runtime
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            }))
        .await
        .with_context(|| format!("ContainerStatus {id}"))?;
        resp.status
            .ok_or_else(|| anyhow!("ContainerStatus {id}: response has no status"))
    }

    /// PodSandboxStatus; `verbose` adds podd's `info` map.
    pub async fn pod_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::PodSandboxStatusResponse> {
        rpc(self
            .runtime
            .clone()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose,
            }))
        .await
        .with_context(|| format!("PodSandboxStatus {id}"))
    }

    /// Polls ContainerStatus until the container is EXITED.
    pub async fn wait_exited(&self, id: &str, timeout: Duration) -> Result<cri::ContainerStatus> {
        self.wait_state(id, cri::ContainerState::ContainerExited, timeout)
            .await
    }

    /// Polls ContainerStatus until the container is in `state`.
    pub async fn wait_state(
        &self,
        id: &str,
        state: cri::ContainerState,
        timeout: Duration,
    ) -> Result<cri::ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.container_status(id).await?;
            if st.state == state as i32 {
                return Ok(st);
            }
            // An exited container does not come back: say how it ended now, not at the deadline.
            let exited = st.state == cri::ContainerState::ContainerExited as i32;
            if exited || Instant::now() > deadline {
                let log = self
                    .log_path(id)
                    .and_then(|p| Ok(std::fs::read_to_string(p)?))
                    .unwrap_or_default();
                bail!(
                    "container {id} not {state:?} after {timeout:?}: state {:?}, exit code {}, \
                     reason {:?}, message {:?}, log {:?}",
                    cri::ContainerState::try_from(st.state),
                    st.exit_code,
                    st.reason,
                    st.message,
                    log.lines().rev().take(5).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// ExecSync with a timeout in seconds (0: none); the gRPC status is returned as is.
    pub async fn try_exec(
        &self,
        id: &str,
        argv: &[&str],
        timeout_s: i64,
    ) -> std::result::Result<cri::ExecSyncResponse, tonic::Status> {
        let bound = RPC_TIMEOUT + Duration::from_secs(timeout_s.max(0) as u64);
        let mut client = self.runtime.clone();
        let call = client.exec_sync(cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: argv.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_s,
        });
        match tokio::time::timeout(bound, call).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "e2e harness: ExecSync {argv:?} did not return within {bound:?}"
            ))),
        }
    }

    /// ExecSync (10 s timeout) that must succeed with exit code 0; returns its stdout.
    pub async fn exec_ok(&self, id: &str, argv: &[&str]) -> Result<String> {
        let r = self
            .try_exec(id, argv, 10)
            .await
            .map_err(|s| anyhow!("ExecSync {argv:?} in {id}: {s}"))?;
        if r.exit_code != 0 {
            bail!(
                "ExecSync {argv:?} in {id}: exit code {}, stdout {:?}, stderr {:?}",
                r.exit_code,
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&r.stdout).into_owned())
    }

    /// ExecSync (10 s timeout) of `sh -c script`, whatever its exit code: the exit code, stdout
    /// and stderr.
    pub async fn sh(&self, id: &str, script: &str) -> Result<(i32, String, String)> {
        let r = self
            .try_exec(id, &["sh", "-c", script], 10)
            .await
            .map_err(|s| {
                anyhow!(
                    "ExecSync {script:?} in {id}: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?;
        Ok((
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        ))
    }

    /// Host path of a container's CRI log, as the harness asked for it
    /// (`log_directory` of the pod joined with the container's `log_path`).
    pub fn log_path(&self, id: &str) -> Result<PathBuf> {
        self.log_paths
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| anyhow!("container {id} was not created through the harness"))
    }

    /// The container's CRI log file, parsed strictly.
    pub fn read_log(&self, id: &str) -> Result<Vec<LogEntry>> {
        let path = self.log_path(id)?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the CRI log {}", path.display()))?;
        logs::parse(&text).with_context(|| format!("parsing the CRI log {}", path.display()))
    }

    /// StopPodSandbox then RemovePodSandbox.
    pub async fn remove_pod(&self, pod_id: &str) -> Result<()> {
        rpc(self
            .runtime
            .clone()
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            }))
        .await
        .with_context(|| format!("StopPodSandbox {pod_id}"))?;
        rpc(self
            .runtime
            .clone()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            }))
        .await
        .with_context(|| format!("RemovePodSandbox {pod_id}"))?;
        Ok(())
    }

    /// ListPodSandbox without a filter.
    pub async fn list_pods(&self) -> Result<Vec<cri::PodSandbox>> {
        Ok(rpc(self
            .runtime
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }))
        .await
        .context("ListPodSandbox")?
        .items)
    }

    /// ListContainers without a filter.
    pub async fn list_containers(&self) -> Result<Vec<cri::Container>> {
        Ok(rpc(self
            .runtime
            .clone()
            .list_containers(cri::ListContainersRequest { filter: None }))
        .await
        .context("ListContainers")?
        .containers)
    }

    /// Paths under podd's root dir and run dir whose file name contains `needle` (e.g. a pod or
    /// container id): what a removed pod must not leave behind.
    pub fn state_paths_mentioning(&self, needle: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in [&self.root, &self.run_dir] {
            walk(dir, &mut |p| {
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(needle))
                {
                    out.push(p.to_path_buf());
                }
            });
        }
        out
    }

    /// What a pod that failed or was removed must leave: no listed pod, no namespace pins, and
    /// (with a test network) no IP allocation, veth or iptables rule. `after` says when, for
    /// the message.
    pub async fn ensure_nothing_left(&self, after: &str) -> Result<()> {
        let pods = self.list_pods().await?;
        ensure!(pods.is_empty(), "{after}: pods still listed: {pods:?}");
        let pins = self.run_dir_pods();
        ensure!(pins.is_empty(), "{after}: namespace pins left: {pins:?}");
        if let Some(net) = &self.net {
            let left = net.leftovers();
            ensure!(left.is_empty(), "{after}: left on the host: {left:?}");
        }
        Ok(())
    }

    /// Entries of `<run dir>/pods/` (none when it does not exist).
    pub fn run_dir_pods(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.run_dir.join("pods"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Tears everything down and returns the problems found (leftovers are bugs).
    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let alive = host::alive(self.pid());
        if alive {
            let socket = self.socket.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            build::background().spawn(async move {
                let _ = tx.send(remove_everything(&socket).await);
            });
            match rx.recv_timeout(Duration::from_secs(300)) {
                Ok(p) => problems.extend(p),
                Err(e) => problems.push(format!("removing the pods did not finish: {e}")),
            }
        }

        if alive {
            if let Some(net) = &self.net {
                problems.extend(net.leftovers());
            }
        }

        // Stop the reapers: SIGTERM goes on to podd, and each reaper exits once it has no child.
        for r in &self.reapers {
            let _ = kill(Pid::from_raw(r.child.id() as i32), Signal::SIGTERM);
        }
        for r in &mut self.reapers {
            let rpid = r.child.id() as i32;
            if !wait_child(&mut r.child, Duration::from_secs(20)) {
                let left = host::descendants(rpid);
                let (podds, others): (Vec<_>, Vec<_>) =
                    left.iter().cloned().partition(|p| p.pid == r.podd_pid);
                if !podds.is_empty() {
                    problems.push(format!(
                        "podd (pid {}) did not exit within 20 s of SIGTERM",
                        r.podd_pid
                    ));
                }
                if !others.is_empty() {
                    problems.push(format!(
                        "processes left after all pods were removed and podd was stopped: {}",
                        describe(&others)
                    ));
                }
                for p in &left {
                    let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
                }
                if !wait_child(&mut r.child, Duration::from_secs(5)) {
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                }
            }
        }

        let tmp = self.tmp.to_string_lossy().into_owned();
        let left = host::processes_mentioning(&tmp);
        if !left.is_empty() {
            problems.push(format!(
                "processes mentioning {tmp} left: {}",
                describe(&left)
            ));
            for p in &left {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
        }

        let mut mounts = host::mounts_under(&self.tmp);
        if !mounts.is_empty() {
            problems.push(format!(
                "mounts left under {tmp}: {}",
                mounts
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            // Deepest first.
            mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
            for m in &mounts {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
        }

        if std::env::var_os("PODD_E2E_KEEP").is_some() {
            eprintln!("e2e: PODD_E2E_KEEP set, keeping {tmp}");
        } else if let Err(e) = std::fs::remove_dir_all(&self.tmp) {
            problems.push(format!("removing {tmp}: {e}"));
        }
        problems
    }
}

impl Drop for Podd {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        // Read podd's logs before teardown removes them.
        let tails: Vec<String> = (1..=self.starts).map(|n| self.podd_log_tail(n)).collect();
        if panicking {
            for t in &tails {
                eprintln!("{t}");
            }
        }
        let problems = self.teardown();
        if problems.is_empty() {
            return;
        }
        let msg = format!(
            "e2e cleanup of {} found leftovers (each one is a bug):\n  - {}",
            self.tmp.display(),
            problems.join("\n  - ")
        );
        if panicking {
            eprintln!("{msg}");
        } else {
            for t in &tails {
                eprintln!("{t}");
            }
            panic!("{msg}");
        }
    }
}

/// Stops and removes every pod, then any container left, through a fresh connection.
async fn remove_everything(socket: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let ch = match build::connect(socket).await {
        Ok(c) => c,
        Err(e) => return vec![format!("cleanup cannot connect to podd: {e:#}")],
    };
    let mut rt = RuntimeServiceClient::new(ch);
    let pods = match rpc(rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })).await {
        Ok(r) => r.items,
        Err(e) => return vec![format!("cleanup: ListPodSandbox: {e:#}")],
    };
    for p in pods {
        if let Err(e) = rpc(rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        }))
        .await
        {
            problems.push(format!("cleanup: StopPodSandbox {}: {e:#}", p.id));
        }
        if let Err(e) = rpc(rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        }))
        .await
        {
            problems.push(format!("cleanup: RemovePodSandbox {}: {e:#}", p.id));
        }
    }
    match rpc(rt.list_containers(cri::ListContainersRequest { filter: None })).await {
        Ok(r) if !r.containers.is_empty() => {
            problems.push(format!(
                "containers still listed after all pods were removed: {:?}",
                r.containers.iter().map(|c| &c.id).collect::<Vec<_>>()
            ));
            for c in r.containers {
                let _ =
                    rpc(rt.remove_container(cri::RemoveContainerRequest { container_id: c.id }))
                        .await;
            }
        }
        Ok(_) => {}
        Err(e) => problems.push(format!("cleanup: ListContainers: {e:#}")),
    }
    match rpc(rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })).await {
        Ok(r) if !r.items.is_empty() => problems.push(format!(
            "pods still listed after RemovePodSandbox: {:?}",
            r.items.iter().map(|p| &p.id).collect::<Vec<_>>()
        )),
        _ => {}
    }
    problems
}

/// Awaits a unary CRI call with the harness's bound, flattening the gRPC status into anyhow.
pub async fn rpc<T>(
    call: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(anyhow!("{:?}: {}", s.code(), s.message())),
        Err(_) => Err(anyhow!("no answer within {RPC_TIMEOUT:?}")),
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() > deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn describe(ps: &[host::Process]) -> String {
    ps.iter()
        .map(|p| format!("[{}] {}", p.pid, p.cmdline))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Walks `dir` without following symlinks.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        f(&p);
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, f);
        }
    }
}

/// The current test's name (libtest names each test's thread after it), shortened for paths.
fn test_name() -> String {
    let t = std::thread::current();
    let full = t.name().unwrap_or("test");
    let last = full.rsplit("::").next().unwrap_or(full);
    let mut s: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(24);
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "test".into()
    } else {
        s
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        user_specified_image: image.to_string(),
        ..Default::default()
    }
}

/// A channel that never connects (placeholder before the daemon is up).
fn lazy_channel() -> Channel {
    tonic::transport::Endpoint::from_static("http://podd.invalid").connect_lazy()
}
