//! The daemon's side of `podd-shim`: spawn it (fork straight into exec via
//! `tokio::process::Command`), hand it a spec, read its verdict.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::watch;

use super::error::IsolateError;
use super::exec::{FAILURE_PREFIX, SHIM_FAILED};
use super::spec::{ContainerSpec, ExecSpec, InfraSpec, Launched};

/// How long ExecSync keeps reading output after the shim exited (a background process the
/// command started may hold the pipes open forever).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Output and status of an ExecSync command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The command's exit code, 128 + signal when it was killed.
    pub exit_code: i32,
    /// The timeout expired and the command was killed.
    pub timed_out: bool,
}

/// Handle on the `podd-shim` binary.
#[derive(Debug, Clone)]
pub struct Shim {
    path: PathBuf,
}

impl Shim {
    pub fn new(path: PathBuf) -> Shim {
        Shim { path }
    }

    /// `podd-shim` next to the running executable (or one level up, cargo's `deps/` layout),
    /// else the first one in `$PATH`.
    pub fn locate() -> Result<Shim, IsolateError> {
        let exe = std::env::current_exe().unwrap_or_default();
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
            if dir.ends_with("deps") {
                dirs.extend(dir.parent().map(Path::to_path_buf));
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        match dirs
            .iter()
            .map(|d| d.join("podd-shim"))
            .find(|p| p.is_file())
        {
            Some(path) => Ok(Shim::new(path)),
            None => Err(IsolateError::ShimNotFound { exe }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Start a pod's infra process; its namespaces are pinned and its shm mounted on success.
    pub async fn start_infra(&self, spec: &InfraSpec) -> Result<Launched, IsolateError> {
        self.launch("infra", &spec.pod_id, spec).await
    }

    /// Start a member container under its own monitor.
    pub async fn start_container(&self, spec: &ContainerSpec) -> Result<Launched, IsolateError> {
        self.launch("monitor", &spec.container_id, spec).await
    }

    fn command(&self, op: &'static str, json: String) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg(op)
            .arg(json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn launch<T: Serialize>(
        &self,
        op: &'static str,
        id: &str,
        spec: &T,
    ) -> Result<Launched, IsolateError> {
        let json = serde_json::to_string(spec).map_err(|e| IsolateError::Encode(e, op))?;
        let out = self
            .command(op, json)
            .output()
            .await
            .map_err(|source| IsolateError::Spawn {
                path: self.path.clone(),
                op,
                source,
            })?;
        if !out.status.success() {
            return Err(IsolateError::Shim {
                op,
                id: id.to_string(),
                message: failure_message(&out.stderr, out.status),
            });
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        serde_json::from_str(line).map_err(|e| IsolateError::BadOutput {
            op,
            id: id.to_string(),
            output: stdout.to_string(),
            reason: e.to_string(),
        })
    }

    /// Run a command in a running container and collect its output. On timeout the shim gets
    /// SIGTERM (it kills the command) and what was produced so far is returned.
    pub async fn exec_sync(
        &self,
        spec: &ExecSpec,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, IsolateError> {
        let json = serde_json::to_string(spec).map_err(|e| IsolateError::Encode(e, "exec"))?;
        let mut child =
            self.command("exec", json)
                .spawn()
                .map_err(|source| IsolateError::Spawn {
                    path: self.path.clone(),
                    op: "exec",
                    source,
                })?;
        let (exited_tx, exited_rx) = watch::channel(None);
        let stdout = read_until_grace(child.stdout.take(), exited_rx.clone());
        let stderr = read_until_grace(child.stderr.take(), exited_rx);
        let wait = async {
            let mut timed_out = false;
            let status = match timeout {
                None => child.wait().await,
                Some(t) => match tokio::time::timeout(t, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        timed_out = true;
                        if let Some(pid) = child.id() {
                            let pid = nix::unistd::Pid::from_raw(pid as i32);
                            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
                        }
                        child.wait().await
                    }
                },
            };
            let _ = exited_tx.send(Some(Instant::now() + OUTPUT_GRACE));
            (status, timed_out)
        };
        let ((status, timed_out), stdout, stderr) = tokio::join!(wait, stdout, stderr);
        let status = status.map_err(|e| IsolateError::sys("wait for podd-shim exec", e))?;
        let exit_code = status_code(status);
        if exit_code == SHIM_FAILED && stderr.starts_with(FAILURE_PREFIX.as_bytes()) {
            return Err(IsolateError::Shim {
                op: "exec",
                id: format!("process {}", spec.pid),
                message: failure_message(&stderr[FAILURE_PREFIX.len()..], status),
            });
        }
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
            timed_out,
        })
    }
}

/// Read to EOF, or until the grace deadline sent on `exited` passes.
async fn read_until_grace(
    reader: Option<impl AsyncRead + Unpin>,
    mut exited: watch::Receiver<Option<Instant>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(mut reader) = reader else { return out };
    let deadline = async {
        // Copy the deadline out so no watch guard is held across an await (keeps this Send).
        let deadline = exited.wait_for(Option::is_some).await.ok().map(|d| *d);
        let deadline = match deadline {
            Some(d) => d.unwrap_or_else(Instant::now),
            None => std::future::pending().await,
        };
        tokio::time::sleep_until(deadline.into()).await;
    };
    tokio::pin!(deadline);
    let mut chunk = [0u8; 8192];
    loop {
        tokio::select! {
            n = reader.read(&mut chunk) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            },
            _ = &mut deadline => break,
        }
    }
    out
}

fn status_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

fn failure_message(stderr: &[u8], status: ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr).trim().to_string();
    if text.is_empty() {
        format!("podd-shim exited with {status} and printed nothing")
    } else {
        text
    }
}
