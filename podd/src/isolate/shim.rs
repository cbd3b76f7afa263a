//! The daemon's side of `podd-shim`: spawn it (fork straight into exec via
//! `tokio::process::Command`) as `podd-shim <verb> <id>`, write the spec on its stdin, read its
//! verdict.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::error::IsolateError;
use super::exec::{FAILURE_PREFIX, SHIM_FAILED};
use super::process::exit_code;
use super::spec::{ContainerSpec, ExecSpec, InfraSpec, Launched};

/// How long ExecSync keeps reading output after the shim exited (a background process the
/// command started may hold the pipes open forever).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// ExecSync keeps this much of each of stdout and stderr and drops the rest (reading on, so
/// that the command never blocks on a full pipe), as containerd and CRI-O do.
pub const EXEC_OUTPUT_MAX: usize = 16 << 20;

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

    /// Start a pod's infra process; its namespaces are pinned and its shm mounted on success.
    pub async fn start_infra(&self, spec: &InfraSpec) -> Result<Launched, IsolateError> {
        self.launch("infra", &spec.pod_id, spec).await
    }

    /// Start a member container under its own monitor.
    pub async fn start_container(&self, spec: &ContainerSpec) -> Result<Launched, IsolateError> {
        self.launch("monitor", &spec.container_id, spec).await
    }

    /// Spawn `podd-shim <op> <id>` and write `spec` (JSON) on its stdin, then close it. The
    /// shim reads its stdin to EOF before it writes anything, so writing first cannot block
    /// on the shim's full stdout. A shim that died early makes the write fail: its exit
    /// status and stderr tell why.
    async fn spawn<T: Serialize>(
        &self,
        op: &'static str,
        id: &str,
        spec: &T,
        kill_on_drop: bool,
    ) -> Result<Child, IsolateError> {
        let json = serde_json::to_vec(spec).map_err(|e| IsolateError::Encode(e, op))?;
        let mut child = Command::new(&self.path)
            .arg(op)
            .arg(id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(kill_on_drop)
            .spawn()
            .map_err(|source| IsolateError::Spawn {
                path: self.path.clone(),
                op,
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&json).await;
        }
        Ok(child)
    }

    async fn launch<T: Serialize>(
        &self,
        op: &'static str,
        id: &str,
        spec: &T,
    ) -> Result<Launched, IsolateError> {
        // Not killed when the caller gives up: a launch runs to its end, so that it either
        // rolls itself back or leaves its launched file for podd to find.
        let child = self.spawn(op, id, spec, false).await?;
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| IsolateError::sys(format!("wait for podd-shim {op}"), e))?;
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
        let mut child = self.spawn("exec", &spec.container_id, spec, true).await?;
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
        let ((status, timed_out), (stdout, stdout_len), (mut stderr, stderr_len)) =
            tokio::join!(wait, stdout, stderr);
        let status = status.map_err(|e| IsolateError::sys("wait for podd-shim exec", e))?;
        let exit_code = status_code(status);
        if exit_code == SHIM_FAILED && stderr.starts_with(FAILURE_PREFIX.as_bytes()) {
            return Err(IsolateError::Shim {
                op: "exec",
                id: format!("container {}", spec.container_id),
                message: failure_message(&stderr[FAILURE_PREFIX.len()..], status),
            });
        }
        for (name, len) in [("stdout", stdout_len), ("stderr", stderr_len)] {
            if len > EXEC_OUTPUT_MAX as u64 {
                stderr.extend_from_slice(truncation_note(name, len).as_bytes());
            }
        }
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
            timed_out,
        })
    }
}

fn truncation_note(stream: &str, len: u64) -> String {
    format!(
        "\npodd: {stream} truncated: the command wrote {len} bytes, only the first {} MiB are \
         kept\n",
        EXEC_OUTPUT_MAX >> 20
    )
}

/// Read to EOF, or until the grace deadline sent on `exited` passes, keeping the first
/// [`EXEC_OUTPUT_MAX`] bytes. Returns them and how many bytes were read in all.
async fn read_until_grace(
    reader: Option<impl AsyncRead + Unpin>,
    exited: watch::Receiver<Option<Instant>>,
) -> (Vec<u8>, u64) {
    read_capped(reader, exited, EXEC_OUTPUT_MAX).await
}

async fn read_capped(
    reader: Option<impl AsyncRead + Unpin>,
    mut exited: watch::Receiver<Option<Instant>>,
    cap: usize,
) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let mut total = 0u64;
    let Some(mut reader) = reader else {
        return (out, total);
    };
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
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        tokio::select! {
            n = reader.read(&mut chunk) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n as u64;
                    let room = cap.saturating_sub(out.len()).min(n);
                    out.extend_from_slice(&chunk[..room]);
                }
            },
            _ = &mut deadline => break,
        }
    }
    (out, total)
}

/// The shell-convention code of the shim's exit status (see [`exit_code`]), -1 if none.
fn status_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    nix::sys::wait::WaitStatus::from_raw(nix::unistd::Pid::from_raw(0), status.into_raw())
        .ok()
        .and_then(exit_code)
        .map_or(-1, |(code, _)| code)
}

fn failure_message(stderr: &[u8], status: ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr).trim().to_string();
    if text.is_empty() {
        format!("podd-shim exited with {status} and printed nothing")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_past_the_cap_is_read_and_dropped() {
        let data = vec![b'x'; 100_000];
        let (_tx, rx) = watch::channel(None);
        let (kept, total) = read_capped(Some(&data[..]), rx, 30_000).await;
        assert_eq!((kept.len(), total), (30_000, 100_000));
        assert!(truncation_note("stdout", total).contains("100000 bytes"));
    }

    #[test]
    fn shim_status_codes_use_the_shell_convention() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(status_code(ExitStatus::from_raw(9)), 137);
    }
}
