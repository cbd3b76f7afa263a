//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, status and listing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::{new_id, now_ns, remove_tree, resolve_id, unless_gone, Runtime};
use crate::container::ContainerState;
use crate::error::{Error, Result};
use crate::isolate::spec::{InfraSpec, Launched};
use crate::isolate::{self};
use crate::pod::{PodConfig, PodRecord, PodState};
use crate::process::ProcRef;

/// Default size of a pod's /dev/shm, as docker and containerd use.
const SHM_SIZE: u64 = 64 << 20;
/// How long to wait for a killed infra to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone)]
pub struct PodFilter {
    pub id: Option<String>,
    pub state: Option<PodState>,
    pub labels: BTreeMap<String, String>,
}

impl Runtime {
    pub async fn run_pod(self: &Arc<Self>, config: PodConfig) -> Result<String> {
        let id = new_id();
        self.reserve_name("pod sandbox", &config.reserved_name(), &id)?;
        // The server runs this in a task of its own, so a client that gives up cannot stop
        // the steps half-way, between a launched infra and its record.
        self.run_pod_reserved(&id, config).await?;
        Ok(id)
    }

    /// Runs the steps after the name is reserved. Nothing is saved before the infra runs: its
    /// run dir and the launched file the shim writes there are the intent (start-up clean-up
    /// kills what a launched file without a record names), and so is the CNI attachment saved
    /// before ADD; the record is written once, Ready, after the network is up. A clean failure
    /// (everything undone) frees the name; an incomplete rollback saves the record, NotReady,
    /// and keeps its name, so that StopPodSandbox and RemovePodSandbox can finish the job.
    async fn run_pod_reserved(self: &Arc<Self>, id: &str, config: PodConfig) -> Result<()> {
        let run_dir = self.dirs.pod_run_dir(id);
        let pod_dir = self.dirs.pod_dir(id);
        let mut record = PodRecord {
            id: id.to_string(),
            namespaces: config.new_namespaces(),
            state: PodState::NotReady,
            created_at: now_ns(),
            infra: None,
            pin_dir: run_dir.join("ns"),
            shm_dir: run_dir.join("shm"),
            default_log_dir: pod_dir.join("logs"),
            ips: Vec::new(),
            config,
        };
        let name = record.config.reserved_name();
        // A pod that cannot be networked fails before anything is made.
        let network = match self.plan_network(&record) {
            Ok(n) => n,
            Err(e) => {
                self.release_name(&name);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::create_dir_all(&pod_dir) {
            self.release_name(&name);
            return Err(Error::io(format!(
                "create pod directory {}",
                pod_dir.display()
            ))(e));
        }
        let spec = InfraSpec {
            pod_id: id.to_string(),
            new_namespaces: record.namespaces.clone(),
            pin_dir: record.pin_dir.clone(),
            hostname: record
                .namespaces
                .contains(&isolate::spec::NsKind::Uts)
                .then(|| record.config.hostname.clone())
                .filter(|h| !h.is_empty()),
            shm_dir: record.shm_dir.clone(),
            shm_size_bytes: SHM_SIZE,
            launched_file: self.dirs.pod_launched_file(id),
        };
        let outcome = match self.shim.start_infra(&spec).await {
            Ok(launched) => self.finish_pod(&mut record, &launched, network).await,
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(infra) => {
                self.watch_infra(id.to_string(), infra);
                info!(pod = %id, name = %record.config.name, infra = infra.pid, ips = ?record.ips, "pod ready");
                Ok(())
            }
            Err(e) => {
                warn!(pod = %id, error = %e, "pod failed to start; rolling back");
                record.state = PodState::NotReady;
                let undone = match self.teardown_network(id).await {
                    Ok(()) => self.forget_pod(&record),
                    Err(del) => Err(del),
                };
                match undone {
                    Ok(()) => self.release_name(&name),
                    Err(cleanup) => {
                        warn!(pod = %id, error = %cleanup, "rollback incomplete; pod stays NotReady");
                        let mut st = self.state.lock().unwrap();
                        if let Err(save) = self.pod_store.save(id, &record) {
                            warn!(pod = %id, error = %save, "cannot save the NotReady pod");
                        }
                        st.pods.insert(id.to_string(), record);
                    }
                }
                Err(e)
            }
        }
    }

    /// The steps after the infra runs: CNI ADD, the pod files, then the record, Ready.
    async fn finish_pod(
        &self,
        record: &mut PodRecord,
        launched: &Launched,
        network: Option<crate::net::Attachment>,
    ) -> Result<ProcRef> {
        let infra = ProcRef {
            pid: launched.pid,
            start_time: launched.start_time,
        };
        record.infra = Some(infra);
        if let Some(att) = network {
            record.ips = self.attach_network(att).await?;
        }
        apply_sysctls(record).await?;
        self.write_pod_files(record)?;
        record.state = PodState::Ready;
        let mut st = self.state.lock().unwrap();
        self.pod_store.save(&record.id, record)?;
        st.pods.insert(record.id.clone(), record.clone());
        Ok(infra)
    }

    /// The pod's infra: the recorded one, else the one its launched file names (a RunPodSandbox
    /// that podd did not live to record, or whose rollback failed).
    fn pod_infra(&self, pod: &PodRecord) -> Option<ProcRef> {
        pod.infra.or_else(|| {
            Launched::read(&self.dirs.pod_launched_file(&pod.id)).map(|l| ProcRef {
                pid: l.pid,
                start_time: l.start_time,
            })
        })
    }

    /// Marks the pod NotReady when its infra dies, whoever killed it.
    pub(super) fn watch_infra(self: &Arc<Self>, id: String, infra: ProcRef) {
        let Some(handle) = infra.handle() else {
            let _ = self.update_pod(&id, |p| p.state = PodState::NotReady);
            return;
        };
        let rt = Arc::clone(self);
        tokio::spawn(async move {
            handle.exited().await;
            let _ = rt.update_pod(&id, |p| {
                if p.infra == Some(infra) {
                    p.state = PodState::NotReady;
                }
            });
        });
    }

    pub async fn stop_pod(self: &Arc<Self>, id: &str) -> Result<()> {
        let Some(pod) = unless_gone(self.pod(id))? else {
            return Ok(());
        };
        let lock = self.op_lock(&pod.id);
        let _guard = lock.lock().await;
        for c in self.pod_containers(&pod.id) {
            if c.state == ContainerState::Running {
                self.stop_container(&c.id, 0).await?;
            }
        }
        self.teardown_network(&pod.id).await?;
        if let Some(handle) = self.pod_infra(&pod).and_then(|i| i.handle()) {
            if !handle.kill(KILL_WAIT).await {
                return Err(Error::DeadlineExceeded(format!(
                    "infra process {} of pod {} did not exit after SIGKILL",
                    handle.pid(),
                    pod.id
                )));
            }
        }
        isolate::release_shm(&pod.shm_dir)?;
        self.update_pod(&pod.id, |p| p.state = PodState::NotReady)?;
        // Stop is repeated by design (kubelet retries, RemovePodSandbox stops first): one line
        // at info for the stop that ended a running pod.
        if pod.state == PodState::Ready {
            info!(pod = %pod.id, "pod stopped");
        } else {
            debug!(pod = %pod.id, "pod stopped again (it was not ready)");
        }
        Ok(())
    }

    pub async fn remove_pod(self: &Arc<Self>, id: &str) -> Result<()> {
        let Some(pod) = unless_gone(self.pod(id))? else {
            return Ok(());
        };
        self.stop_pod(&pod.id).await?;
        let lock = self.op_lock(&pod.id);
        let _guard = lock.lock().await;
        for c in self.pod_containers(&pod.id) {
            self.remove_container(&c.id).await?;
        }
        self.teardown_network(&pod.id).await?;
        self.forget_pod(&pod)?;
        self.release_name(&pod.config.reserved_name());
        self.drop_op_lock(&pod.id);
        info!(pod = %pod.id, "pod removed");
        Ok(())
    }

    /// Undoes everything a pod made on the host (killing an infra still alive), then drops its
    /// record.
    pub(super) fn forget_pod(&self, pod: &PodRecord) -> Result<()> {
        if let Some(handle) = self.pod_infra(pod).and_then(|i| i.handle()) {
            if !handle.kill_blocking(KILL_WAIT) {
                return Err(Error::DeadlineExceeded(format!(
                    "infra process {} of pod {} did not exit after SIGKILL",
                    handle.pid(),
                    pod.id
                )));
            }
        }
        isolate::release_pod(&pod.pin_dir, &pod.shm_dir)?;
        for dir in [self.dirs.pod_run_dir(&pod.id), self.dirs.pod_dir(&pod.id)] {
            remove_tree(&dir)?;
        }
        // Map entry and file go under one lock: a watcher's update_pod can't re-save it after.
        let mut st = self.state.lock().unwrap();
        st.pods.remove(&pod.id);
        self.pod_store.remove(&pod.id)?;
        Ok(())
    }

    pub fn pod_status(&self, id: &str) -> Result<PodRecord> {
        self.pod(id)
    }

    pub fn list_pods(&self, filter: &PodFilter) -> Vec<PodRecord> {
        let st = self.state.lock().unwrap();
        let id = filter
            .id
            .as_deref()
            .map(|id| resolve_id(&st.pods, id, "pod sandbox").ok().cloned());
        let mut pods: Vec<PodRecord> = st
            .pods
            .values()
            .filter(|p| match &id {
                Some(Some(want)) => &p.id == want,
                Some(None) => false,
                None => true,
            })
            .filter(|p| filter.state.is_none_or(|s| s == p.state))
            .filter(|p| {
                filter
                    .labels
                    .iter()
                    .all(|(k, v)| p.config.labels.get(k) == Some(v))
            })
            .cloned()
            .collect();
        pods.sort_by_key(|p| p.created_at);
        pods
    }

    fn pod_containers(&self, pod_id: &str) -> Vec<crate::container::ContainerRecord> {
        let st = self.state.lock().unwrap();
        st.containers
            .values()
            .filter(|c| c.pod_id == pod_id)
            .cloned()
            .collect()
    }
}

/// The pod's sysctls, set after CNI ADD so that per-interface ones find the pod's interfaces.
/// A sysctl the kernel refuses is the request's fault (INVALID_ARGUMENT), named by its field.
async fn apply_sysctls(record: &PodRecord) -> Result<()> {
    if record.config.sysctls.is_empty() {
        return Ok(());
    }
    let sysctls = crate::pod::sysctl::check_all(&record.config.sysctls, &record.namespaces)
        .map_err(|(name, why)| Error::invalid(format!("config.linux.sysctls[{name:?}]"), why))?;
    let pin_dir = record.pin_dir.clone();
    let applied = tokio::task::spawn_blocking(move || isolate::apply_sysctls(&pin_dir, &sysctls))
        .await
        .map_err(|e| Error::io("set the pod's sysctls")(std::io::Error::other(e)))?;
    match applied {
        Err(isolate::IsolateError::SysctlRefused { name, message }) => Err(Error::invalid(
            format!("config.linux.sysctls[{name:?}]"),
            message,
        )),
        other => Ok(other?),
    }
}
