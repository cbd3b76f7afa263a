//! Running one CNI plugin by the specification: the `CNI_*` environment, the network
//! configuration on stdin, a result or an error as JSON on stdout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::error::{NetError, PluginFailure, Result};

/// A plugin that has not answered by then is killed; the standard plugins answer in
/// milliseconds, iptables under load in seconds.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// What every plugin of one operation on one pod is told.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    /// `CNI_CONTAINERID`: the pod id.
    pub container_id: String,
    /// `CNI_NETNS`: the pod's pinned network namespace (empty on DEL when it is gone).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`, `K=V;K=V`.
    pub args: String,
    /// `CNI_PATH`, the plugin dirs joined with ':' (plugins find their IPAM plugin there).
    pub path: String,
}

/// The CNI error object a failing plugin prints.
#[derive(Deserialize)]
struct ErrorReply {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: Option<String>,
}

/// Runs `binary` (the plugin `plugin` of `network`) with `config` on stdin. Returns the result
/// it printed (ADD), or None when it printed nothing (DEL, CHECK).
pub async fn run(
    binary: &Path,
    plugin: &str,
    network: &str,
    inv: &Invocation,
    config: &Value,
) -> Result<Option<Value>> {
    let exec_err = |reason: String| NetError::Exec {
        plugin: plugin.to_string(),
        command: inv.command.as_str(),
        pod: inv.container_id.clone(),
        reason,
    };
    let stdin = serde_json::to_vec(config).expect("JSON serializes");
    // The plugins inherit podd's environment: they need PATH to find iptables and ip.
    let mut child = tokio::process::Command::new(binary)
        .env("CNI_COMMAND", inv.command.as_str())
        .env("CNI_CONTAINERID", &inv.container_id)
        .env("CNI_NETNS", &inv.netns)
        .env("CNI_IFNAME", &inv.ifname)
        .env("CNI_ARGS", &inv.args)
        .env("CNI_PATH", &inv.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| exec_err(format!("cannot run {}: {e}", binary.display())))?;
    let mut pipe = child.stdin.take().expect("piped stdin");
    let run = async move {
        // A plugin may exit before it read everything (it failed early): its answer counts.
        let _ = pipe.write_all(&stdin).await;
        drop(pipe);
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(PLUGIN_TIMEOUT, run).await {
        Ok(r) => r.map_err(|e| exec_err(format!("waiting for {}: {e}", binary.display())))?,
        Err(_) => {
            return Err(exec_err(format!(
                "{} did not finish within {PLUGIN_TIMEOUT:?} and was killed",
                binary.display()
            )))
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if let Ok(reply) = serde_json::from_str::<ErrorReply>(stdout.trim()) {
            if !reply.msg.is_empty() || reply.code != 0 {
                return Err(NetError::Plugin(Box::new(PluginFailure {
                    network: network.to_string(),
                    plugin: plugin.to_string(),
                    command: inv.command.as_str(),
                    pod: inv.container_id.clone(),
                    code: reply.code,
                    msg: reply.msg,
                    details: reply.details,
                })));
            }
        }
        let said = [stdout.trim(), stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(exec_err(format!(
            "{} exited with {}{}",
            binary.display(),
            out.status,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        )));
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(stdout.trim())
        .map(Some)
        .map_err(|e| exec_err(format!("printed a result that is not JSON ({e}): {stdout}")))
}
