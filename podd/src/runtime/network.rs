//! A pod's network: its CNI attachment saved beside the pod record (before ADD as the intent,
//! after ADD with the result), DEL from that record, and the pod's resolv.conf, hosts and
//! hostname files that every member container gets.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::Runtime;
use crate::error::{Error, Result};
use crate::isolate::spec::NsKind;
use crate::net::files;
use crate::net::{Attachment, NetError, PodIdentity};
use crate::pod::PodRecord;
use crate::store::{write_atomic, write_atomic_with, Durability};

/// The pod files, by container path: (file name in the pod dir, container path).
pub(super) const POD_FILES: [(&str, &str); 3] = [
    ("resolv.conf", "/etc/resolv.conf"),
    ("hosts", "/etc/hosts"),
    ("hostname", "/etc/hostname"),
];

fn read_attachment(path: &Path) -> Result<Option<Attachment>> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| {
            Error::FailedPrecondition(format!(
                "CNI attachment record {} is corrupt ({e}); the pod's network cannot be torn \
                 down from it: remove its interfaces and IP allocation by hand, then the file",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()))(e)),
    }
}

fn save_attachment(path: &Path, att: &Attachment) -> Result<()> {
    let data = serde_json::to_vec_pretty(att).expect("JSON serializes");
    Ok(write_atomic(path, &data)?)
}

/// DEL of the attachment saved at `path`, then its removal; nothing saved = nothing to do.
async fn teardown_at(path: &Path) -> Result<()> {
    let Some(att) = read_attachment(path)? else {
        return Ok(());
    };
    // DEL is idempotent by the CNI spec, and a second DEL sees what the first removed: the
    // bridge plugin (containernetworking-plugins 1.1) fails the DEL of an ADD it failed half-way
    // (it deletes the veth, then its masquerade chain, which ADD never made); a retry succeeds.
    if let Err(first) = att.del().await {
        warn!(pod = %att.pod_id, network = %att.network.name, error = %first, "CNI DEL failed; trying once more");
        att.del().await?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("remove {}", path.display()))(e))
        }
        _ => {
            info!(pod = %att.pod_id, network = %att.network.name, "pod network torn down");
            Ok(())
        }
    }
}

/// Runs `fut` to its end on a thread of its own (for start-up code that is not async).
fn block_on_own_thread<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds")
            .block_on(fut)
    })
    .join()
    .expect("network teardown does not panic")
}

/// Start-up: DEL the attachment in the dir of a pod that has no record (a RunPodSandbox that
/// podd did not live to finish). False when it could not be torn down: keep the dir then.
pub(super) fn teardown_orphan(pod_dir: &Path) -> bool {
    let path = pod_dir.join("network.json");
    if !path.exists() {
        return true;
    }
    match block_on_own_thread(async move { teardown_at(&path).await }) {
        Ok(()) => true,
        Err(e) => {
            warn!(dir = %pod_dir.display(), error = %e, "cannot tear down the network of a pod without a record");
            false
        }
    }
}

impl Runtime {
    /// The attachment a new pod will get, checked (configuration present, plugins installed)
    /// before anything is made; None for a pod in the host's network.
    pub(super) fn plan_network(&self, record: &PodRecord) -> Result<Option<Attachment>> {
        if !record.namespaces.contains(&NsKind::Net) {
            return Ok(None);
        }
        let c = &record.config;
        let pod = PodIdentity {
            id: &record.id,
            name: &c.name,
            namespace: &c.namespace,
            uid: &c.uid,
        };
        let netns = record.pin_dir.join(NsKind::Net.proc_name());
        Ok(Some(self.cni.attachment(
            &pod,
            netns,
            c.port_mappings.clone(),
            c.dns.clone(),
        )?))
    }

    /// ADD, with the attachment saved first (the intent) and again with the result; returns
    /// the pod's IPs.
    pub(super) async fn attach_network(&self, mut att: Attachment) -> Result<Vec<IpAddr>> {
        let path = self.dirs.pod_network_file(&att.pod_id);
        save_attachment(&path, &att)?;
        let ips = att.add().await?;
        save_attachment(&path, &att)?;
        info!(pod = %att.pod_id, network = %att.network.name, ips = ?ips, "pod network added");
        Ok(ips)
    }

    /// DEL of whatever the pod is attached to; idempotent (DEL of a pod already torn down, or
    /// never attached, succeeds). Works after the infra died: the pin keeps the namespace.
    pub(super) async fn teardown_network(&self, pod_id: &str) -> Result<()> {
        teardown_at(&self.dirs.pod_network_file(pod_id)).await
    }

    /// CHECK of the pod's attachment: Ok(None) when there is nothing to check.
    pub async fn check_network(&self, pod_id: &str) -> Result<Option<bool>> {
        let pod = self.pod(pod_id)?;
        match read_attachment(&self.dirs.pod_network_file(&pod.id))? {
            Some(att) => Ok(Some(att.check().await?)),
            None => Ok(None),
        }
    }

    /// The CNI settings in use (Status verbose).
    pub fn cni_config(&self) -> &crate::net::CniConfig {
        self.cni.config()
    }

    /// Whether non-host-network pods can be run now (Status's NetworkReady).
    pub fn network_ready(&self) -> Result<(), NetError> {
        self.cni.ready()
    }

    /// Writes the pod's resolv.conf, hosts and hostname (0644) into its dir, once; members
    /// bind-mount them.
    pub(super) fn write_pod_files(&self, record: &PodRecord) -> Result<()> {
        let dir = self.dirs.pod_dir(&record.id);
        let host_network = !record.namespaces.contains(&NsKind::Net);
        let read_host = |p: &str| -> Result<String> {
            match std::fs::read_to_string(p) {
                Ok(s) => Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(Error::io(format!("read the host's {p}"))(e)),
            }
        };
        let hostname = if record.config.hostname.is_empty() || host_network {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            record.config.hostname.clone()
        };
        let resolv = files::resolv_conf(&record.config.dns, &read_host("/etc/resolv.conf")?);
        let hosts = if host_network {
            read_host("/etc/hosts")?
        } else {
            files::hosts(&hostname, record.ips.first().copied())
        };
        for (name, content) in [
            ("resolv.conf", resolv),
            ("hosts", hosts),
            ("hostname", format!("{hostname}\n")),
        ] {
            let path = dir.join(name);
            // Only a running pod uses them and a reboot ends it (containers are refused in a
            // NotReady pod), so no fsync on the RunPodSandbox path.
            write_atomic_with(&path, content.as_bytes(), Durability::UntilReboot)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .map_err(Error::io(format!("chmod 0644 {}", path.display())))?;
        }
        Ok(())
    }

    /// The pod files a container gets: (host file, container path) for each one that exists.
    pub(super) fn pod_files(&self, pod_id: &str) -> Vec<(PathBuf, &'static str)> {
        let dir = self.dirs.pod_dir(pod_id);
        POD_FILES
            .iter()
            .map(|(name, dest)| (dir.join(name), *dest))
            .filter(|(p, _)| p.is_file())
            .collect()
    }
}
