//! `podd-shim infra`: start the pod's pause-like infra process in new namespaces, pin them,
//! mount the pod's shm, report [`Launched`].

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::{fail, Ctx, Res};
use super::launch::{
    fork_detached, pipe_cloexec, read_to_end, reap, stdio_to_devnull, write_launched,
    write_quietly, Forked,
};
use super::logwriter::now_ns;
use super::pod::{mount_shm, pin_namespace, unmount_shm, unpin};
use super::process::process_start_time;
use super::spec::{InfraSpec, Launched, NsKind};
use super::syscall::{close_fds_except, exit_now, interface_up, trim_memory};

/// The `CLONE_NEW*` flag of a namespace kind.
pub fn clone_flag(kind: NsKind) -> CloneFlags {
    match kind {
        NsKind::Net => CloneFlags::CLONE_NEWNET,
        NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
        NsKind::Uts => CloneFlags::CLONE_NEWUTS,
        NsKind::Pid => CloneFlags::CLONE_NEWPID,
    }
}

/// Entry point: print the `Launched` line and return 0, or the error on stderr and 1 (podd
/// says whose launch it was).
pub fn run(spec: InfraSpec) -> i32 {
    match launch(&spec) {
        Ok(launched) => super::entry::print_launched(&launched),
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Rollback of a half-done launch: kill and reap the infra, forget its launched file, unpin,
/// unmount shm.
struct Undo {
    infra: Option<Pid>,
    launched_file: Option<PathBuf>,
    pins: Vec<PathBuf>,
    pin_dir: Option<PathBuf>,
    shm: Option<PathBuf>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.infra {
            let _ = kill(pid, Signal::SIGKILL);
            reap(pid);
        }
        if let Some(file) = &self.launched_file {
            let _ = std::fs::remove_file(file);
        }
        for pin in &self.pins {
            unpin(pin);
        }
        if let Some(dir) = &self.pin_dir {
            let _ = std::fs::remove_dir(dir); // only if empty: never anything else's
        }
        if let Some(shm) = &self.shm {
            unmount_shm(shm);
        }
    }
}

fn launch(spec: &InfraSpec) -> Res<Launched> {
    let uts_new = spec.new_namespaces.contains(&NsKind::Uts);
    if spec.hostname.is_some() && !uts_new {
        return fail("a hostname needs a new UTS namespace (it would rename the host)");
    }
    let flags = spec
        .new_namespaces
        .iter()
        .fold(CloneFlags::empty(), |f, &k| f | clone_flag(k));
    let (ready_rd, ready_wr) = pipe_cloexec()?;
    let child = match fork_detached(|| unshare(flags).ctx(|| format!("unshare {flags:?}")))? {
        Forked::Detached => {
            drop(ready_rd);
            infra_main(spec, ready_wr)
        }
        Forked::Launcher { child } => child,
    };
    drop(ready_wr);
    let mut undo = Undo {
        infra: Some(child),
        launched_file: None,
        pins: Vec::new(),
        pin_dir: None,
        shm: None,
    };
    let ready = read_to_end(ready_rd);
    if ready != b"ok" {
        if ready.is_empty() {
            return fail(format!("infra process {child} exited during set-up"));
        }
        return fail(String::from_utf8_lossy(&ready).into_owned());
    }
    let start_time = process_start_time(child.as_raw()).ok_or_else(|| {
        super::error::Fail(format!("infra process {child} died right after start"))
    })?;
    let launched = Launched {
        pid: child.as_raw(),
        start_time,
        monitor_pid: None,
        monitor_start_time: None,
        started_at: now_ns(),
    };
    // First, so that a podd killed from here on finds the infra after its restart.
    undo.launched_file = Some(spec.launched_file.clone());
    write_launched(&spec.launched_file, &launched)?;
    undo.pin_dir = Some(spec.pin_dir.clone());
    std::fs::create_dir_all(&spec.pin_dir)
        .ctx(|| format!("create pin directory {}", spec.pin_dir.display()))?;
    for &kind in &spec.new_namespaces {
        let pin = pin_namespace(child.as_raw(), kind, &spec.pin_dir)?;
        undo.pins.push(pin);
    }
    undo.shm = Some(spec.shm_dir.clone());
    mount_shm(&spec.shm_dir, spec.shm_size_bytes)?;
    undo.infra = None;
    undo.launched_file = None;
    undo.pins.clear();
    undo.pin_dir = None;
    undo.shm = None;
    Ok(launched)
}

/// The infra process itself: set up, say "ok" (or the error) on `ready`, then pause and reap.
fn infra_main(spec: &InfraSpec, ready: OwnedFd) -> ! {
    match setup(spec, &ready) {
        Ok(signals) => {
            write_quietly(&ready, b"ok");
            drop(ready);
            trim_memory();
            pause_and_reap(&signals)
        }
        Err(e) => {
            write_quietly(&ready, e.0.as_bytes());
            exit_now(1)
        }
    }
}

fn setup(spec: &InfraSpec, ready: &OwnedFd) -> Res<SigSet> {
    nix::unistd::setsid().ctx(|| "setsid")?;
    nix::unistd::chdir("/").ctx(|| "chdir /")?;
    stdio_to_devnull()?;
    close_fds_except(&[ready.as_raw_fd()]).ctx(|| "close inherited fds")?;
    if let Some(name) = &spec.hostname {
        nix::unistd::sethostname(name).ctx(|| format!("sethostname {name:?}"))?;
    }
    if spec.new_namespaces.contains(&NsKind::Net) {
        interface_up("lo").ctx(|| "bring up lo in the pod network namespace")?;
    }
    let mut signals = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(sig);
    }
    signals.thread_block().ctx(|| "block signals")?;
    Ok(signals)
}

fn pause_and_reap(signals: &SigSet) -> ! {
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap_all(),
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => exit_now(0),
            _ => {}
        }
    }
}

/// Reap every child that has exited (orphans of the pod's PID namespace land here).
fn reap_all() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
