//! Pod networking through CNI plugins: `config` finds the network configuration (and writes
//! the default one), `plugin` runs one plugin by the CNI protocol, `network` runs a whole list
//! for a pod (ADD, DEL, CHECK) and is the record DEL needs, `result` reads pod IPs, `files`
//! renders a pod's /etc/resolv.conf, /etc/hosts and /etc/hostname.

pub mod config;
pub mod error;
pub mod files;
pub mod network;
pub mod plugin;
pub mod result;

use std::path::PathBuf;

pub use config::CniConfig;
pub use error::NetError;
pub use network::{Attachment, PodIdentity, PortMapping};

/// podd's CNI settings in use.
#[derive(Debug, Clone)]
pub struct Cni {
    config: CniConfig,
}

impl Cni {
    pub fn new(config: CniConfig) -> Cni {
        Cni { config }
    }

    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    /// Start-up: write the default network where there is no configuration (when allowed).
    /// A failure is logged; Status then says why the network is not ready.
    pub fn prepare(&self) {
        if !self.config.default_network {
            return;
        }
        match config::write_default(&self.config) {
            Ok(Some(path)) => tracing::info!(
                file = %path.display(),
                subnet = %self.config.subnet,
                "wrote the default CNI network (bridge {}, host-local, portmap)",
                self.config.bridge
            ),
            Ok(None) => {
                if let Some(stale) = config::stale_default(&self.config) {
                    tracing::warn!("{stale}");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot write the default CNI network"),
        }
    }

    /// Whether pods can be networked now: a configuration that parses and whose plugins are
    /// all installed. The error is Status's NetworkReady message.
    pub fn ready(&self) -> Result<(), NetError> {
        let list = config::load(&self.config.conf_dir)?;
        network::check_plugins(&list, &self.config.bin_dirs)
    }

    /// A new attachment of the pod to the current network, checked to be runnable (every
    /// plugin installed) before anything is made.
    pub fn attachment(
        &self,
        pod: &PodIdentity<'_>,
        netns: PathBuf,
        port_mappings: Vec<PortMapping>,
        dns: files::DnsConfig,
    ) -> Result<Attachment, NetError> {
        let list = config::load(&self.config.conf_dir)?;
        let mut att = Attachment::new(pod, list, netns, &self.config.bin_dirs, port_mappings)?;
        att.dns = dns;
        att.check_plugins()?;
        Ok(att)
    }
}
