//! Opening the runtime: load records, learn the true state of every infra and container that
//! ran while podd was down, and clean what a half-done operation left behind.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use super::{Dirs, Runtime, State};
use crate::container::{ContainerRecord, ContainerState};
use crate::error::{Error, Result};
use crate::image::ImageStore;
use crate::isolate::{self, Shim};
use crate::pod::{PodRecord, PodState};
use crate::store::RecordStore;

impl Runtime {
    pub fn open(dirs: Dirs, shim: Shim) -> Result<Arc<Runtime>> {
        for d in [&dirs.root, &dirs.run] {
            std::fs::create_dir_all(d)
                .map_err(Error::io(format!("create state directory {}", d.display())))?;
            // Container upper dirs and image layers hold setuid files and device nodes that
            // the container's root made: no other host user may reach them.
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(Error::io(format!("set mode 0700 on {}", d.display())))?;
        }
        let images = Arc::new(ImageStore::open(&dirs.root.join("images"))?);
        let pod_store = RecordStore::<PodRecord>::open(dirs.root.join("state/pods"))?;
        let container_store =
            RecordStore::<ContainerRecord>::open(dirs.root.join("state/containers"))?;
        let mut state = State::default();
        for p in pod_store.load_all()? {
            state.names.insert(p.config.reserved_name(), p.id.clone());
            state.pods.insert(p.id.clone(), p);
        }
        for c in container_store.load_all()? {
            state.names.insert(
                ContainerRecord::reserved_name(&c.pod_id, &c.config),
                c.id.clone(),
            );
            state.containers.insert(c.id.clone(), c);
        }
        let rt = Arc::new(Runtime {
            dirs,
            shim,
            images,
            pod_store,
            container_store,
            state: Mutex::new(state),
            op_locks: Mutex::default(),
        });
        rt.clean_orphan_dirs();
        rt.reattach();
        Ok(rt)
    }

    /// Re-watches every live infra and monitor; records what ended while podd was away.
    fn reattach(self: &Arc<Self>) {
        let (pods, containers): (Vec<PodRecord>, Vec<ContainerRecord>) = {
            let st = self.state.lock().unwrap();
            (
                st.pods.values().cloned().collect(),
                st.containers.values().cloned().collect(),
            )
        };
        for p in pods {
            if p.state != PodState::Ready {
                continue;
            }
            match p.infra {
                Some(infra) => self.watch_infra(p.id.clone(), infra),
                None => {
                    let _ = self.update_pod(&p.id, |r| r.state = PodState::NotReady);
                }
            }
        }
        for c in containers {
            if c.state != ContainerState::Running {
                continue;
            }
            let after = self.settle_exit(&c.id);
            if after.as_ref().map(|r| r.state) == Some(ContainerState::Running) {
                self.watch_container(c.id.clone(), c.monitor);
            } else if let Some(r) = after {
                info!(container = %r.id, exit_code = r.exit_code, "container exited while podd was down");
            }
        }
    }

    /// Directories without a record are what a crash in the middle of a create or remove left.
    fn clean_orphan_dirs(&self) {
        let (pods, containers): (HashSet<String>, HashSet<String>) = {
            let st = self.state.lock().unwrap();
            (
                st.pods.keys().cloned().collect(),
                st.containers.keys().cloned().collect(),
            )
        };
        let entries = |dir: std::path::PathBuf| -> Vec<(String, std::path::PathBuf)> {
            std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .collect()
        };
        for (id, path) in entries(self.dirs.run.join("pods")) {
            if !pods.contains(&id) {
                warn!(pod = %id, "removing leftovers of a pod without a record");
                if let Err(e) = isolate::release_pod(&path.join("ns"), &path.join("shm")) {
                    warn!(pod = %id, error = %e, "could not release leftover pod mounts");
                    continue;
                }
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        for (id, path) in entries(self.dirs.root.join("pods")) {
            if !pods.contains(&id) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        for (id, path) in entries(self.dirs.root.join("containers")) {
            if !containers.contains(&id) {
                warn!(container = %id, "removing leftovers of a container without a record");
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}
