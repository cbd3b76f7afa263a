//! Pod (CRI sandbox) records and their state machine: Ready while the infra runs, NotReady
//! after it was stopped or died. Removal is a separate step.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::isolate::spec::NsKind;
use crate::net::files::DnsConfig;
use crate::net::PortMapping;
use crate::process::ProcRef;

pub mod sysctl;

/// How a pod-level namespace is provided (CRI NamespaceMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NsMode {
    /// One namespace for the whole pod, owned by the infra.
    #[default]
    Pod,
    /// Each container its own (PID only).
    Container,
    /// The host's namespace.
    Node,
}

/// The validated subset of a CRI PodSandboxConfig that podd acts on.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PodConfig {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    pub hostname: String,
    pub log_directory: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub network: NsMode,
    pub ipc: NsMode,
    pub pid: NsMode,
    pub runtime_handler: String,
    /// CRI `linux.security_context.privileged`: only such a pod may hold privileged containers.
    #[serde(default)]
    pub privileged: bool,
    /// CRI `dns_config`: the pod's resolv.conf (the host's when empty).
    #[serde(default)]
    pub dns: DnsConfig,
    /// CRI `port_mappings` with a host port, passed to the portmap plugin.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// CRI `linux.sysctls`, each one of the pod's own namespaces (see [`sysctl::check`]).
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
}

impl PodConfig {
    /// The name a pod reserves: unique per (name, namespace, uid, attempt), as kubelet expects.
    pub fn reserved_name(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }

    /// Namespaces the infra creates; the rest are the host's.
    pub fn new_namespaces(&self) -> Vec<NsKind> {
        let mut ns = Vec::new();
        if self.network != NsMode::Node {
            // A host-network pod also keeps the host's hostname, as kubelet-run runtimes do.
            ns.push(NsKind::Net);
            ns.push(NsKind::Uts);
        }
        if self.ipc != NsMode::Node {
            ns.push(NsKind::Ipc);
        }
        if self.pid == NsMode::Pod {
            ns.push(NsKind::Pid);
        }
        ns
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub config: PodConfig,
    pub state: PodState,
    /// Nanoseconds since the Unix epoch.
    pub created_at: i64,
    pub infra: Option<ProcRef>,
    /// Namespaces the infra created and that are pinned under `pin_dir`.
    pub namespaces: Vec<NsKind>,
    pub pin_dir: PathBuf,
    pub shm_dir: PathBuf,
    /// Where containers without a CRI log directory write their logs.
    pub default_log_dir: PathBuf,
    /// The pod's IPs from CNI ADD, primary first; none for a host-network pod.
    #[serde(default)]
    pub ips: Vec<std::net::IpAddr>,
}

impl PodRecord {
    pub fn pin(&self, kind: NsKind) -> Option<PathBuf> {
        self.namespaces
            .contains(&kind)
            .then(|| self.pin_dir.join(kind.proc_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_network_keeps_host_uts_and_net() {
        let cfg = PodConfig {
            network: NsMode::Node,
            pid: NsMode::Container,
            ..Default::default()
        };
        assert_eq!(cfg.new_namespaces(), vec![NsKind::Ipc]);
        let cfg = PodConfig {
            pid: NsMode::Pod,
            ..Default::default()
        };
        assert_eq!(
            cfg.new_namespaces(),
            vec![NsKind::Net, NsKind::Uts, NsKind::Ipc, NsKind::Pid]
        );
    }
}
