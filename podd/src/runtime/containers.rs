//! CreateContainer, StartContainer, StopContainer, RemoveContainer, status, listing, ExecSync.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tracing::{info, warn};

use super::{new_id, now_ns, remove_tree, resolve_id, unless_gone, Runtime};
use crate::container::seccomp;
use crate::container::user::{self, UserRequest};
use crate::container::{ContainerConfig, ContainerRecord, ContainerState, MountConfig};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::isolate::spec::{
    default_masked_paths, default_readonly_paths, BindMount, ContainerSpec, ExecSpec, ExitRecord,
    Identity, Launched, NsKind, Propagation, RootfsSpec, SeccompFilter,
};
use crate::isolate::{self, capabilities};
use crate::pod::{NsMode, PodRecord, PodState};
use crate::process::ProcRef;

/// How long ReopenContainerLog waits for the monitor to make the new log file.
const LOG_REOPEN_WAIT: Duration = Duration::from_secs(2);
/// How long a monitor may take to record the exit after its workload died.
const MONITOR_WAIT: Duration = Duration::from_secs(10);
const EXIT_CODE_UNKNOWN: i32 = 255;

#[derive(Debug, Default, Clone)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub pod_id: Option<String>,
    pub state: Option<ContainerState>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// `KEY=VALUE` list with later keys replacing earlier ones in place.
fn merge_env(image: &[String], overrides: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<(String, String)> = image
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    for (k, v) in overrides {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// CRI semantics (as containerd): `command` replaces the image Entrypoint and then the image
/// Cmd is dropped; `args` replaces Cmd.
fn process_args(config: &ContainerConfig, image: &Image) -> Vec<String> {
    let mut argv = Vec::new();
    if config.command.is_empty() {
        argv.extend(image.config.entrypoint.iter().cloned());
        if config.args.is_empty() {
            argv.extend(image.config.cmd.iter().cloned());
        }
    } else {
        argv.extend(config.command.iter().cloned());
    }
    argv.extend(config.args.iter().cloned());
    argv
}

/// A CRI log path must stay inside the pod's log directory.
fn relative_inside(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// What a container may do, resolved from its security context as containerd does.
#[derive(Debug, PartialEq, Eq)]
struct Confinement {
    capabilities: Vec<String>,
    ambient: Vec<String>,
    masked_paths: Vec<String>,
    readonly_paths: Vec<String>,
    seccomp: Option<SeccompFilter>,
}

const SEC: &str = "config.linux.security_context";

/// Privileged: every capability, nothing masked or read-only (add/drop are ignored, as in
/// containerd). Otherwise the default capabilities adjusted by add/drop, and the CRI path lists
/// when given, else the defaults.
fn confinement(
    config: &ContainerConfig,
    pod_id: &str,
    pod_privileged: bool,
) -> Result<Confinement> {
    if config.privileged && !pod_privileged {
        return Err(Error::invalid(
            format!("{SEC}.privileged"),
            format!(
                "pod sandbox {} is not privileged; a privileged container needs a pod with \
                 linux.security_context.privileged set",
                pod_id
            ),
        ));
    }
    let (capabilities, masked_paths, readonly_paths) = if config.privileged {
        (capabilities::all_names(), Vec::new(), Vec::new())
    } else {
        let caps = capabilities::resolve(&config.add_capabilities, &config.drop_capabilities)
            .map_err(|e| {
                Error::invalid(
                    format!("{SEC}.capabilities.{}[{}]", e.list, e.index),
                    format!("unknown capability {:?}", e.name),
                )
            })?;
        let or_default = |given: &[String], default: fn() -> Vec<String>| {
            if given.is_empty() {
                default()
            } else {
                given.to_vec()
            }
        };
        (
            caps,
            or_default(&config.masked_paths, default_masked_paths),
            or_default(&config.readonly_paths, default_readonly_paths),
        )
    };
    for (i, c) in config.add_ambient_capabilities.iter().enumerate() {
        if !capabilities.contains(c) {
            return Err(Error::invalid(
                format!("{SEC}.capabilities.add_ambient_capabilities[{i}]"),
                format!(
                    "{c} is not in the container's capability set; add it with add_capabilities"
                ),
            ));
        }
    }
    let seccomp = if config.privileged {
        None
    } else {
        seccomp_filter(&config.seccomp, &capabilities)?
    };
    Ok(Confinement {
        capabilities,
        ambient: config.add_ambient_capabilities.clone(),
        masked_paths,
        readonly_paths,
        seccomp,
    })
}

/// The filter of a non-privileged container. A Localhost profile is checked by building it as
/// the shim will: one libseccomp cannot take is the request's fault, found before anything is
/// made. RuntimeDefault is podd's own (its unit tests build it), so it is not built twice.
fn seccomp_filter(policy: &seccomp::Policy, caps: &[String]) -> Result<Option<SeccompFilter>> {
    let filter = match policy {
        seccomp::Policy::Unconfined => return Ok(None),
        seccomp::Policy::RuntimeDefault => {
            seccomp::runtime_default(caps, isolate::seccomp::native_syscalls())
        }
        seccomp::Policy::Localhost(path) => {
            let field = format!("{SEC}.seccomp");
            let filter = seccomp::localhost(path, caps).map_err(|e| Error::invalid(&field, e))?;
            isolate::seccomp::build(&filter)
                .map_err(|e| Error::invalid(&field, format!("{e} (in {policy:?})")))?;
            filter
        }
    };
    Ok(Some(filter))
}

/// As containerd: bidirectional propagation only in a privileged pod, and only from a source on
/// a shared mount; host-to-container only from a source on a shared or slave mount.
fn check_propagation(m: &MountConfig, field: &str, pod: &PodRecord) -> Result<()> {
    let field = format!("{field}.propagation");
    let needs = match m.propagation {
        Propagation::Private => return Ok(()),
        Propagation::Slave => "a shared or slave mount (mount --make-shared or --make-slave)",
        Propagation::Shared => {
            if !pod.config.privileged {
                return Err(Error::invalid(
                    field,
                    format!(
                        "PROPAGATION_BIDIRECTIONAL needs a privileged pod; pod sandbox {} is \
                         not privileged",
                        pod.id
                    ),
                ));
            }
            "a shared mount (mount --make-shared)"
        }
    };
    let host = isolate::host_mount_of(Path::new(&m.host_path))?;
    let ok = match m.propagation {
        Propagation::Shared => host.shared,
        _ => host.shared || host.slave,
    };
    if ok {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "{field}: host path {} is on mount {}, which is not {needs}",
        m.host_path,
        host.mount_point.display()
    )))
}

impl Runtime {
    pub async fn create_container(
        self: &Arc<Self>,
        pod_id: &str,
        config: ContainerConfig,
    ) -> Result<String> {
        // Under the pod's lock, so that a concurrent Stop/RemovePodSandbox can't leave a
        // container behind in a pod that is going away.
        let pod_lock = self.op_lock(&self.pod(pod_id)?.id);
        let _pod_guard = pod_lock.lock().await;
        let pod = self.pod(pod_id)?;
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready; create containers in a running pod",
                pod.id
            )));
        }
        let image = {
            let images = Arc::clone(&self.images);
            let name = config.image.clone();
            tokio::task::spawn_blocking(move || images.resolve(&name))
                .await
                .expect("image lookup does not panic")
        }
        .ok_or_else(|| Error::ImageNotFound(config.image.clone()))?;

        let id = new_id();
        let name = ContainerRecord::reserved_name(&pod.id, &config);
        self.reserve_name("container", &name, &id)?;
        match self.create_reserved(&id, &pod, config, &image) {
            Ok(()) => Ok(id),
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.dirs.container_dir(&id));
                self.release_name(&name);
                Err(e)
            }
        }
    }

    fn create_reserved(
        &self,
        id: &str,
        pod: &PodRecord,
        config: ContainerConfig,
        image: &Image,
    ) -> Result<()> {
        let dir = self.dirs.container_dir(id);
        let layers = self.images.layer_dirs(image);
        let user_req = UserRequest {
            run_as_user: config.run_as_user,
            run_as_group: config.run_as_group,
            run_as_username: &config.run_as_username,
            image_user: &image.config.user,
        };
        let ids = user::resolve(&user_req, &layers)?;
        let additional_gids = user::additional_gids(
            &user_req,
            &layers,
            ids,
            &config.supplemental_groups,
            config.supplemental_groups_strict,
        );
        let args = process_args(&config, image);
        if args.is_empty() {
            return Err(Error::invalid(
                "config.command",
                format!(
                    "no command given and image {} has no Entrypoint or Cmd",
                    config.image
                ),
            ));
        }
        let log_path = if pod.config.log_directory.is_empty() {
            pod.default_log_dir
                .join(format!("{}_{}.log", config.name, config.attempt))
        } else {
            let rel = if config.log_path.is_empty() {
                format!("{}_{}.log", config.name, config.attempt)
            } else {
                config.log_path.clone()
            };
            if !relative_inside(&rel) {
                return Err(Error::invalid(
                    "config.log_path",
                    format!("{rel:?} must be a relative path without '..'"),
                ));
            }
            Path::new(&pod.config.log_directory).join(rel)
        };
        let mut join = Vec::new();
        for kind in [NsKind::Net, NsKind::Ipc, NsKind::Uts] {
            if let Some(pin) = pod.pin(kind) {
                join.push((kind, pin));
            }
        }
        match config.pid.unwrap_or(pod.config.pid) {
            NsMode::Pod => {
                match pod.pin(NsKind::Pid) {
                    Some(pin) => join.push((NsKind::Pid, pin)),
                    None => return Err(Error::invalid(
                        "config.linux.security_context.namespace_options.pid",
                        "POD pid mode needs a pod created with a shared PID namespace (pid: POD)",
                    )),
                }
            }
            NsMode::Node => join.push((NsKind::Pid, PathBuf::from("/proc/1/ns/pid"))),
            NsMode::Container => {}
        }
        let mut mounts = Vec::new();
        for (i, m) in config.mounts.iter().enumerate() {
            let field = || format!("config.mounts[{i}]");
            if !Path::new(&m.container_path).is_absolute() {
                return Err(Error::invalid(
                    format!("{}.container_path", field()),
                    format!("{:?} must be absolute", m.container_path),
                ));
            }
            if !Path::new(&m.host_path).is_absolute() {
                return Err(Error::invalid(
                    format!("{}.host_path", field()),
                    format!("{:?} must be absolute", m.host_path),
                ));
            }
            if !Path::new(&m.host_path).exists() {
                // As containerd does: a missing host path becomes a directory.
                std::fs::create_dir_all(&m.host_path)
                    .map_err(Error::io(format!("create host path {}", m.host_path)))?;
            }
            check_propagation(m, &field(), pod)?;
            mounts.push(BindMount {
                source: PathBuf::from(&m.host_path),
                destination: PathBuf::from(&m.container_path),
                readonly: m.readonly,
                propagation: m.propagation,
            });
        }
        // The pod's resolv.conf, hosts and hostname, unless the client mounts its own there
        // (kubelet mounts its managed /etc/hosts); read-only with a read-only rootfs, as in
        // containerd.
        for (source, dest) in self.pod_files(&pod.id) {
            if mounts.iter().any(|m| m.destination == Path::new(dest)) {
                continue;
            }
            mounts.push(BindMount {
                source,
                destination: PathBuf::from(dest),
                readonly: config.readonly_rootfs,
                propagation: Propagation::Private,
            });
        }
        let cwd = [
            config.working_dir.as_str(),
            image.config.working_dir.as_str(),
        ]
        .into_iter()
        .find(|d| !d.is_empty())
        .unwrap_or("/")
        .to_string();
        if !cwd.starts_with('/') {
            return Err(Error::invalid(
                "config.working_dir",
                format!("{cwd:?} must be absolute"),
            ));
        }
        let confinement = confinement(&config, &pod.id, pod.config.privileged)?;
        let spec = ContainerSpec {
            container_id: id.to_string(),
            rootfs: RootfsSpec {
                lower: layers,
                upper: dir.join("upper"),
                work: dir.join("work"),
                merged: dir.join("rootfs"),
                readonly: config.readonly_rootfs,
            },
            join,
            args,
            env: merge_env(&image.config.env, &config.envs),
            cwd,
            identity: Identity {
                uid: ids.uid,
                gid: ids.gid,
                additional_gids,
                capabilities: confinement.capabilities,
                ambient_capabilities: confinement.ambient,
                no_new_privs: config.no_new_privs,
                privileged: config.privileged,
                seccomp: confinement.seccomp,
            },
            shm_dir: Some(pod.shm_dir.clone()),
            mounts,
            log_path: log_path.clone(),
            exit_file: dir.join("exit.json"),
            launched_file: dir.join("launched.json"),
            masked_paths: confinement.masked_paths,
            readonly_paths: confinement.readonly_paths,
        };
        for d in [&spec.rootfs.upper, &spec.rootfs.work, &spec.rootfs.merged] {
            std::fs::create_dir_all(d).map_err(Error::io(format!(
                "create container directory {}",
                d.display()
            )))?;
        }
        let record = ContainerRecord {
            id: id.to_string(),
            pod_id: pod.id.clone(),
            image_ref: config.image.clone(),
            image_id: image.id.clone(),
            state: ContainerState::Created,
            created_at: now_ns(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            log_path,
            dir,
            process: None,
            monitor: None,
            spec,
            config,
        };
        self.container_store.save(id, &record)?;
        self.state
            .lock()
            .unwrap()
            .containers
            .insert(id.to_string(), record);
        Ok(())
    }

    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let c = self.container(id)?;
        // Lock order everywhere: pod, then container.
        let pod_lock = self.op_lock(&c.pod_id);
        let _pod_guard = pod_lock.lock().await;
        let lock = self.op_lock(&c.id);
        let _guard = lock.lock().await;
        // A start that was not recorded (its request dropped) is not started twice.
        let c = self.adopt_launched(&c.id).unwrap_or(c);
        if c.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}, only a created container can be started",
                c.id, c.state
            )));
        }
        let pod = self.pod(&c.pod_id)?;
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready; its containers cannot start",
                pod.id
            )));
        }
        if let Some(parent) = c.log_path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(format!(
                "create log directory {}",
                parent.display()
            )))?;
        }
        match self.shim.start_container(&c.spec).await {
            Ok(launched) => {
                let (process, monitor) = launched_refs(&launched);
                self.update_container(&c.id, |r| {
                    r.state = ContainerState::Running;
                    r.started_at = started_at(&launched);
                    r.process = Some(process);
                    r.monitor = monitor;
                })?;
                self.watch_container(c.id.clone(), monitor);
                info!(container = %c.id, pid = process.pid, "container started");
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                self.update_container(&c.id, |r| {
                    r.state = ContainerState::Exited;
                    r.finished_at = now_ns();
                    r.exit_code = 128;
                    r.reason = "StartError".into();
                    r.message = message;
                })?;
                Err(e.into())
            }
        }
    }

    /// Waits for the monitor to finish, then records the exit it wrote.
    pub(super) fn watch_container(self: &Arc<Self>, id: String, monitor: Option<ProcRef>) {
        let rt = Arc::clone(self);
        tokio::spawn(async move {
            if let Some(handle) = monitor.and_then(|m| m.handle()) {
                handle.exited().await;
            }
            rt.settle_exit(&id);
        });
    }

    /// Moves a Running container whose monitor is gone to Exited, with the recorded exit when
    /// there is one. A monitor gone without an exit leaves a workload nobody watches: it is
    /// killed first, with everything in its mount namespace. Returns the record as it now is.
    pub(super) fn settle_exit(&self, id: &str) -> Option<ContainerRecord> {
        let c = self.container(id).ok()?;
        if c.state != ContainerState::Running {
            return Some(c);
        }
        let exit = read_exit(&c.exit_file());
        let monitor_alive = c.monitor.and_then(|m| m.handle()).is_some();
        if exit.is_none() && monitor_alive {
            return Some(c);
        }
        // The monitor may have written the exit just before it exited.
        let exit = exit.or_else(|| read_exit(&c.exit_file()));
        if exit.is_none() {
            if let Some(p) = c.process {
                isolate::kill_container_processes(p.pid, p.start_time);
            }
        }
        self.update_container(id, |r| match exit {
            Some(e) => {
                r.exit_code = e.exit_code;
                r.finished_at = e.finished_at;
                r.reason = e.reason;
                r.message.clear();
                r.state = ContainerState::Exited;
            }
            None => {
                warn!(container = %id, "monitor is gone without recording an exit");
                r.exit_code = EXIT_CODE_UNKNOWN;
                r.finished_at = now_ns();
                r.reason = "Unknown".into();
                r.message =
                    "the container's monitor exited without recording the exit status".into();
                r.state = ContainerState::Exited;
            }
        })
        .ok()
    }

    /// SIGTERM, then SIGKILL after `timeout` seconds; returns once the exit is recorded.
    pub async fn stop_container(self: &Arc<Self>, id: &str, timeout: i64) -> Result<()> {
        let Some(c) = unless_gone(self.container(id))? else {
            return Ok(());
        };
        let lock = self.op_lock(&c.id);
        let _guard = lock.lock().await;
        // A start whose podd died before recording it is found through its launched file.
        self.adopt_launched(&c.id);
        let Some(c) = self.settle_exit(&c.id) else {
            return Ok(());
        };
        if c.state != ContainerState::Running {
            return Ok(());
        }
        if let Some(handle) = c.process.and_then(|p| p.handle()) {
            // Taken (held open) before any signal: once the workload is gone its namespace
            // can't be named, and one let go may be the next container's.
            let mnt_ns = handle.mount_namespace();
            let grace = Duration::from_secs(timeout.max(0) as u64);
            if timeout > 0 {
                handle.signal(Signal::SIGTERM)?;
            }
            if timeout <= 0 || tokio::time::timeout(grace, handle.exited()).await.is_err() {
                info!(container = %c.id, "sending SIGKILL");
                handle.signal(Signal::SIGKILL)?;
                handle.exited().await;
            }
            // What the workload started lives on when the container shares the pod's (or the
            // host's) PID namespace, and keeps the container's mounts alive: kill it all.
            if let Some(ns) = mnt_ns {
                let killed =
                    tokio::task::spawn_blocking(move || isolate::kill_mount_namespace(&ns))
                        .await
                        .unwrap_or(0);
                if killed > 0 {
                    info!(container = %c.id, killed, "killed the container's remaining processes");
                }
            }
        }
        if let Some(monitor) = c.monitor.and_then(|m| m.handle()) {
            if tokio::time::timeout(MONITOR_WAIT, monitor.exited())
                .await
                .is_err()
            {
                warn!(container = %c.id, "monitor did not finish after the workload exited");
            }
        }
        self.settle_exit(&c.id);
        info!(container = %c.id, "container stopped");
        Ok(())
    }

    pub async fn remove_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let Some(c) = unless_gone(self.container(id))? else {
            return Ok(());
        };
        // CRI: a running container is removed by force.
        self.stop_container(&c.id, 0).await?;
        let lock = self.op_lock(&c.id);
        let _guard = lock.lock().await;
        // The upper dir can be large: delete it off the async workers.
        let dir = c.dir.clone();
        tokio::task::spawn_blocking(move || remove_tree(&dir))
            .await
            .expect("removing a directory does not panic")?;
        {
            // Map entry and file go under one lock: a watcher's update can't re-save it after.
            let mut st = self.state.lock().unwrap();
            st.containers.remove(&c.id);
            st.names
                .remove(&ContainerRecord::reserved_name(&c.pod_id, &c.config));
            self.container_store.remove(&c.id)?;
        }
        self.drop_op_lock(&c.id);
        info!(container = %c.id, "container removed");
        Ok(())
    }

    pub fn container_status(&self, id: &str) -> Result<ContainerRecord> {
        let c = self.container(id)?;
        Ok(self.settle_exit(&c.id).unwrap_or(c))
    }

    /// The records as they are: each monitor's watcher settles a container's exit as it
    /// happens, so listing (kubelet polls it every second) reads no files and opens no pidfds.
    pub fn list_containers(&self, filter: &ContainerFilter) -> Vec<ContainerRecord> {
        let mut out: Vec<ContainerRecord> = {
            let st = self.state.lock().unwrap();
            let id = filter
                .id
                .as_deref()
                .map(|id| resolve_id(&st.containers, id, "container").ok().cloned());
            let pod = filter
                .pod_id
                .as_deref()
                .map(|id| resolve_id(&st.pods, id, "pod sandbox").ok().cloned());
            st.containers
                .values()
                .filter(|c| match &id {
                    Some(want) => want.as_ref() == Some(&c.id),
                    None => true,
                })
                .filter(|c| match &pod {
                    // A pod that is already gone may still have containers on record.
                    Some(Some(want)) => &c.pod_id == want,
                    Some(None) => filter.pod_id.as_deref() == Some(c.pod_id.as_str()),
                    None => true,
                })
                .filter(|c| {
                    filter
                        .labels
                        .iter()
                        .all(|(k, v)| c.config.labels.get(k) == Some(v))
                })
                .filter(|c| filter.state.is_none_or(|s| s == c.state))
                .cloned()
                .collect()
        };
        out.sort_by_key(|c| c.created_at);
        out
    }

    /// ReopenContainerLog: the monitor reopens `log_path` (kubelet moved the old file away);
    /// returns once the file exists again.
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        let c = self.settle_exit(&c.id).unwrap_or(c);
        let monitor = match c.state {
            ContainerState::Running => c.monitor.and_then(|m| m.handle()),
            _ => None,
        };
        let Some(monitor) = monitor else {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running; only a running container's log can be reopened",
                c.id
            )));
        };
        if !isolate::blocks_signal(monitor.pid(), isolate::REOPEN_LOG) {
            return Err(Error::FailedPrecondition(format!(
                "the monitor of container {} comes from a podd-shim that cannot reopen logs; \
                 restart the container",
                c.id
            )));
        }
        monitor.signal(isolate::REOPEN_LOG)?;
        let deadline = tokio::time::Instant::now() + LOG_REOPEN_WAIT;
        while !c.log_path.exists() {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::FailedPrecondition(format!(
                    "the monitor of container {} did not reopen {} within {:?}",
                    c.id,
                    c.log_path.display(),
                    LOG_REOPEN_WAIT
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<ExecResult> {
        let c = self.container(id)?;
        let c = self.settle_exit(&c.id).unwrap_or(c);
        let process = match (c.state, c.process) {
            (ContainerState::Running, Some(p)) => p,
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is not running; exec needs a running container",
                    c.id
                )))
            }
        };
        let spec = ExecSpec {
            container_id: c.id.clone(),
            pid: process.pid,
            start_time: process.start_time,
            args: cmd,
            env: c.spec.env.clone(),
            cwd: c.spec.cwd.clone(),
            identity: c.spec.identity.clone(),
        };
        let out = self.shim.exec_sync(&spec, timeout).await?;
        if out.timed_out {
            return Err(Error::DeadlineExceeded(format!(
                "command {:?} in container {} timed out after {}s",
                spec.args,
                c.id,
                timeout.map(|t| t.as_secs()).unwrap_or(0)
            )));
        }
        Ok(ExecResult {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        })
    }
}

/// The workload and monitor a launch reported (the monitor with the start time it read itself;
/// a shim from before that field is asked about afterwards).
pub(super) fn launched_refs(l: &Launched) -> (ProcRef, Option<ProcRef>) {
    let process = ProcRef {
        pid: l.pid,
        start_time: l.start_time,
    };
    let monitor = l.monitor_pid.and_then(|pid| {
        l.monitor_start_time
            .or_else(|| isolate::process_start_time(pid))
            .map(|start_time| ProcRef { pid, start_time })
    });
    (process, monitor)
}

/// When the monitor saw the workload start (before its exit, on the same clock), else now.
pub(super) fn started_at(l: &Launched) -> i64 {
    if l.started_at > 0 {
        l.started_at
    } else {
        now_ns()
    }
}

fn read_exit(path: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolate::spec::default_capabilities;

    #[test]
    fn env_overrides_keep_image_order() {
        let env = merge_env(
            &["PATH=/bin".into(), "A=1".into()],
            &[("A".into(), "2".into()), ("B".into(), "3".into())],
        );
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_confinement_is_containerds() {
        let c = confinement(&ContainerConfig::default(), "p", false).unwrap();
        let mut want = default_capabilities();
        want.sort();
        let mut got = c.capabilities.clone();
        got.sort();
        assert_eq!(got, want);
        assert!(c.ambient.is_empty());
        assert_eq!(c.masked_paths, default_masked_paths());
        assert_eq!(c.readonly_paths, default_readonly_paths());
    }

    #[test]
    fn cri_lists_replace_defaults_and_add_drop_apply() {
        let config = ContainerConfig {
            add_capabilities: names(&["ALL"]),
            drop_capabilities: names(&["CAP_SYS_ADMIN"]),
            add_ambient_capabilities: names(&["CAP_NET_ADMIN"]),
            masked_paths: names(&["/proc/version"]),
            readonly_paths: names(&["/etc"]),
            ..Default::default()
        };
        let c = confinement(&config, "p", false).unwrap();
        // ALL is what podd holds (plus the defaults, which are always asked for).
        let mut want: std::collections::BTreeSet<String> =
            capabilities::held_names().into_iter().collect();
        want.extend(
            crate::isolate::spec::DEFAULT_CAPABILITIES
                .iter()
                .map(|s| s.to_string()),
        );
        want.remove("CAP_SYS_ADMIN");
        let got: std::collections::BTreeSet<String> = c.capabilities.iter().cloned().collect();
        assert_eq!(got, want);
        assert_eq!(c.ambient, names(&["CAP_NET_ADMIN"]));
        assert_eq!(c.masked_paths, names(&["/proc/version"]));
        assert_eq!(c.readonly_paths, names(&["/etc"]));
    }

    #[test]
    fn privileged_lifts_everything_but_needs_a_privileged_pod() {
        let config = ContainerConfig {
            privileged: true,
            drop_capabilities: names(&["ALL"]),
            masked_paths: names(&["/proc/version"]),
            ..Default::default()
        };
        let c = confinement(&config, "p", true).unwrap();
        assert_eq!(c.capabilities, capabilities::all_names());
        assert!(c.masked_paths.is_empty() && c.readonly_paths.is_empty());
        let err = confinement(&config, "p", false).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, .. }
                if field == "config.linux.security_context.privileged"),
            "{err}"
        );
    }

    #[test]
    fn ambient_outside_the_set_is_refused() {
        let config = ContainerConfig {
            add_ambient_capabilities: names(&["CAP_SYS_TIME"]),
            ..Default::default()
        };
        let err = confinement(&config, "p", false).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, .. }
                if field == "config.linux.security_context.capabilities.add_ambient_capabilities[0]"),
            "{err}"
        );
    }

    #[test]
    fn log_paths_stay_inside() {
        assert!(relative_inside("c/0.log"));
        assert!(!relative_inside("../x.log"));
        assert!(!relative_inside("/x.log"));
        assert!(!relative_inside(""));
    }
}
