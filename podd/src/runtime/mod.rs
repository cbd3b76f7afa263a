//! The runtime: pods and containers, their records, and the steps that change them. The server
//! calls into it with validated requests; it calls `isolate` for everything that touches the
//! kernel and `image` for images. Records change only through `update_pod`/`update_container`,
//! which persist the new record before anyone can read it.

mod containers;
mod images;
mod network;
mod pods;
mod recover;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::container::ContainerRecord;
use crate::error::{Error, Result};
use crate::image::ImageStore;
use crate::isolate::Shim;
use crate::net::Cni;
use crate::pod::PodRecord;
use crate::store::RecordStore;

pub use containers::{ContainerFilter, ExecResult};
pub use pods::PodFilter;

/// Where podd keeps things.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Persistent state: records, images, container layers.
    pub root: PathBuf,
    /// Runtime state that dies with a reboot: namespace pins, shm mounts.
    pub run: PathBuf,
}

impl Dirs {
    fn pod_run_dir(&self, id: &str) -> PathBuf {
        self.run.join("pods").join(id)
    }
    /// What the infra launcher wrote before it reported success (see `InfraSpec`).
    fn pod_launched_file(&self, id: &str) -> PathBuf {
        self.pod_run_dir(id).join("infra.json")
    }
    fn pod_dir(&self, id: &str) -> PathBuf {
        self.root.join("pods").join(id)
    }
    /// The pod's CNI attachment ([`crate::net::Attachment`]): saved before ADD and again after
    /// it, removed once DEL succeeded.
    fn pod_network_file(&self, id: &str) -> PathBuf {
        self.pod_dir(id).join("network.json")
    }
    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
}

#[derive(Default)]
struct State {
    pods: HashMap<String, PodRecord>,
    containers: HashMap<String, ContainerRecord>,
    /// Reserved pod and container names -> id.
    names: HashMap<String, String>,
}

pub struct Runtime {
    dirs: Dirs,
    shim: Shim,
    cni: Cni,
    images: Arc<ImageStore>,
    pod_store: RecordStore<PodRecord>,
    container_store: RecordStore<ContainerRecord>,
    state: Mutex<State>,
    /// Serialises lifecycle operations on one object (start vs stop vs remove).
    op_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub(crate) use crate::isolate::now_ns;

fn new_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// `None` for an object that is gone: stopping or removing it again succeeds (kubelet relies
/// on it).
fn unless_gone<T>(found: Result<T>) -> Result<Option<T>> {
    match found {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes a directory tree; what is already gone is fine (removal is idempotent in CRI).
fn remove_tree(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("remove {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Finds the one key equal to `id`, or else the one starting with it.
fn resolve_id<'a, V>(
    map: &'a HashMap<String, V>,
    id: &str,
    kind: &'static str,
) -> Result<&'a String> {
    if let Some((k, _)) = map.get_key_value(id) {
        return Ok(k);
    }
    let not_found = || Error::NotFound {
        kind,
        id: id.to_string(),
    };
    if id.is_empty() {
        return Err(not_found());
    }
    let mut hits = map.keys().filter(|k| k.starts_with(id));
    match (hits.next(), hits.next()) {
        (Some(k), None) => Ok(k),
        (Some(_), Some(_)) => Err(Error::invalid(
            format!("{kind}_id"),
            format!("{id:?} matches more than one {kind}; give more of the id"),
        )),
        _ => Err(not_found()),
    }
}

impl Runtime {
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    fn op_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.op_locks
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    fn drop_op_lock(&self, id: &str) {
        self.op_locks.lock().unwrap().remove(id);
    }

    fn pod(&self, id: &str) -> Result<PodRecord> {
        let st = self.state.lock().unwrap();
        let key = resolve_id(&st.pods, id, "pod sandbox")?;
        Ok(st.pods[key].clone())
    }

    fn container(&self, id: &str) -> Result<ContainerRecord> {
        let st = self.state.lock().unwrap();
        let key = resolve_id(&st.containers, id, "container")?;
        Ok(st.containers[key].clone())
    }

    /// Applies `f` to a copy of the record, persists it, then publishes it.
    fn update_pod(&self, id: &str, f: impl FnOnce(&mut PodRecord)) -> Result<PodRecord> {
        let mut st = self.state.lock().unwrap();
        let Some(current) = st.pods.get(id) else {
            return Err(Error::NotFound {
                kind: "pod sandbox",
                id: id.to_string(),
            });
        };
        let mut next = current.clone();
        f(&mut next);
        self.pod_store.save(id, &next)?;
        st.pods.insert(id.to_string(), next.clone());
        Ok(next)
    }

    fn update_container(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord> {
        let mut st = self.state.lock().unwrap();
        let Some(current) = st.containers.get(id) else {
            return Err(Error::NotFound {
                kind: "container",
                id: id.to_string(),
            });
        };
        let mut next = current.clone();
        f(&mut next);
        self.container_store.save(id, &next)?;
        st.containers.insert(id.to_string(), next.clone());
        Ok(next)
    }

    /// Reserves `name` for `id`, or says who holds it.
    fn reserve_name(&self, kind: &'static str, name: &str, id: &str) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        if let Some(holder) = st.names.get(name) {
            return Err(Error::AlreadyExists {
                kind,
                name: name.to_string(),
                id: holder.clone(),
            });
        }
        st.names.insert(name.to_string(), id.to_string());
        Ok(())
    }

    fn release_name(&self, name: &str) {
        self.state.lock().unwrap().names.remove(name);
    }
}
