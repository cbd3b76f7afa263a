//! Opening the runtime: load records, learn the true state of every infra and container that
//! ran while podd was down, and clean what a half-done operation left behind.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use super::containers::{launched_refs, started_at};
use super::{Dirs, Runtime, State};
use crate::container::{ContainerRecord, ContainerState};
use crate::error::{Error, Result};
use crate::image::ImageStore;
use crate::isolate::spec::Launched;
use crate::isolate::{self, ProcessHandle, Shim};
use crate::net::Cni;
use crate::pod::{PodRecord, PodState};
use crate::process::ProcRef;
use crate::store::RecordStore;

/// How long start-up waits for a leftover process it killed.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Kill what a launched file names, if it is still that process; the workload of a container
/// with everything in its mount namespace, then its monitor (so it writes nothing more).
fn kill_launched(l: &Launched) {
    isolate::kill_container_processes(l.pid, l.start_time);
    if let Some(h) = ProcessHandle::open(l.pid, l.start_time) {
        h.kill_blocking(KILL_WAIT);
    }
    let monitor = l.monitor_pid.zip(l.monitor_start_time);
    if let Some(h) = monitor.and_then(|(pid, start)| ProcessHandle::open(pid, start)) {
        h.kill_blocking(KILL_WAIT);
    }
}

impl Runtime {
    pub fn open(dirs: Dirs, shim: Shim, cni: Cni) -> Result<Arc<Runtime>> {
        for d in [&dirs.root, &dirs.run] {
            std::fs::create_dir_all(d)
                .map_err(Error::io(format!("create state directory {}", d.display())))?;
            // Container upper dirs and image layers hold setuid files and device nodes that
            // the container's root made: no other host user may reach them.
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(Error::io(format!("set mode 0700 on {}", d.display())))?;
        }
        cni.prepare();
        let images = Arc::new(ImageStore::open(&dirs.root.join("images"))?);
        let pod_store = RecordStore::<PodRecord>::open(dirs.root.join("state/pods"))?;
        let container_store =
            RecordStore::<ContainerRecord>::open(dirs.root.join("state/containers"))?;
        let mut state = State::default();
        for p in pod_store.load_all()? {
            state.names.insert(p.config.reserved_name(), p.id.clone());
            state.pods.insert(p.id.clone(), p);
        }
        for mut c in container_store.load_all()? {
            if c.spec.launched_file.as_os_str().is_empty() {
                // Created before launched files: start it with one too.
                c.spec.launched_file = c.dir.join("launched.json");
            }
            state.names.insert(
                ContainerRecord::reserved_name(&c.pod_id, &c.config),
                c.id.clone(),
            );
            state.containers.insert(c.id.clone(), c);
        }
        let rt = Arc::new(Runtime {
            dirs,
            shim,
            cni,
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
            // An infra launched for a record that does not name it: a rollback that failed
            // half-way, or a podd older than one-write RunPodSandbox killed in between.
            let launched = p
                .infra
                .is_none()
                .then(|| Launched::read(&self.dirs.pod_launched_file(&p.id)))
                .flatten()
                .and_then(|l| {
                    ProcessHandle::open(l.pid, l.start_time).map(|h| {
                        let infra = ProcRef {
                            pid: l.pid,
                            start_time: l.start_time,
                        };
                        (h, infra)
                    })
                });
            if let Some((handle, infra)) = launched {
                if p.state == PodState::Ready {
                    info!(pod = %p.id, infra = infra.pid, "adopting the infra named by the launched file");
                    if self.update_pod(&p.id, |r| r.infra = Some(infra)).is_ok() {
                        self.watch_infra(p.id.clone(), infra);
                        continue;
                    }
                }
                warn!(pod = %p.id, infra = infra.pid, "killing the infra of a pod that is not ready");
                handle.kill_blocking(KILL_WAIT);
            }
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
            let c = match c.state {
                ContainerState::Created => match self.adopt_launched(&c.id) {
                    Some(c) => c,
                    None => continue,
                },
                _ => c,
            };
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
        // Orphans whose network DEL failed in the first loop: it would fail again in the
        // second (each try runs every plugin twice), and their dirs are kept either way.
        let mut failed = HashSet::new();
        for (id, path) in entries(self.dirs.run.join("pods")) {
            if !pods.contains(&id) {
                warn!(pod = %id, "removing leftovers of a pod without a record");
                if let Some(l) = Launched::read(&self.dirs.pod_launched_file(&id)) {
                    if let Some(h) = ProcessHandle::open(l.pid, l.start_time) {
                        warn!(pod = %id, infra = l.pid, "killing the infra of a pod without a record");
                        h.kill_blocking(KILL_WAIT);
                    }
                }
                // DEL while the pin still holds the namespace: plugins given none skip what
                // needs it (the bridge plugin then leaves its masquerade rules).
                if !super::network::teardown_orphan(&self.dirs.pod_dir(&id)) {
                    failed.insert(id);
                    continue;
                }
                if let Err(e) = isolate::release_pod(&path.join("ns"), &path.join("shm")) {
                    warn!(pod = %id, error = %e, "could not release leftover pod mounts");
                    continue;
                }
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        for (id, path) in entries(self.dirs.root.join("pods")) {
            if !pods.contains(&id)
                && !failed.contains(&id)
                && super::network::teardown_orphan(&path)
            {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        for (id, path) in entries(self.dirs.root.join("containers")) {
            if !containers.contains(&id) {
                warn!(container = %id, "removing leftovers of a container without a record");
                if let Some(l) = Launched::read(&path.join("launched.json")) {
                    kill_launched(&l);
                }
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }

    /// A Created container whose monitor wrote its launched file was started by a podd that
    /// died (or a StartContainer that was dropped) before it recorded the start: record it
    /// Running now, with the start time the monitor wrote; `settle_exit` then sees an exit
    /// that already happened. Returns the record as it now is.
    pub(super) fn adopt_launched(&self, id: &str) -> Option<ContainerRecord> {
        let c = self.container(id).ok()?;
        if c.state != ContainerState::Created {
            return Some(c);
        }
        let Some(l) = read_container_launched(&c) else {
            return Some(c);
        };
        let (process, monitor) = launched_refs(&l);
        info!(container = %c.id, pid = l.pid, "adopting a start that was not recorded");
        self.update_container(id, |r| {
            r.state = ContainerState::Running;
            r.started_at = started_at(&l);
            r.process = Some(process);
            r.monitor = monitor;
        })
        .ok()
    }
}

fn read_container_launched(c: &ContainerRecord) -> Option<Launched> {
    let file = &c.spec.launched_file;
    if file.as_os_str().is_empty() {
        return Launched::read(&Path::new(&c.dir).join("launched.json"));
    }
    Launched::read(file)
}
