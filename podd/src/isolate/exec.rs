//! `podd-shim exec`: run a command inside a running container (ExecSync). The shim joins the
//! target's namespaces, forks the command (which inherits the shim's stdio), waits, and exits
//! with the command's code. A SIGTERM to the shim kills the command: no orphan is left.

use std::fs::File;
use std::os::fd::OwnedFd;

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, killpg, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::capabilities::drop_to;
use super::cmd::{enter_cwd, exec_args, reset_signals};
use super::error::{Ctx, Fail, Res};
use super::process::{exit_code, process_start_time};
use super::spec::ExecSpec;
use super::syscall::{exit_now, fork};

/// Exit code of the shim when it failed itself (before the command ran); its stderr then
/// starts with [`FAILURE_PREFIX`].
pub const SHIM_FAILED: i32 = 125;
pub const FAILURE_PREFIX: &str = "podd-shim exec: ";

/// Entry point: the command's exit code, or [`SHIM_FAILED`].
pub fn run(spec: ExecSpec) -> i32 {
    match exec(&spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{FAILURE_PREFIX}{e}");
            SHIM_FAILED
        }
    }
}

/// Namespaces joined, in order: mnt last, because joining it changes root and cwd to the
/// container's (and /proc with them).
const NAMESPACES: [(&str, CloneFlags); 5] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn exec(spec: &ExecSpec) -> Res<i32> {
    let pid = spec.pid;
    let mut files: Vec<(&str, CloneFlags, OwnedFd)> = Vec::with_capacity(NAMESPACES.len());
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{pid}/ns/{name}");
        let f = File::open(&path).ctx(|| format!("open {path} (is the container running?)"))?;
        files.push((name, flag, f.into()));
    }
    // The files were opened while `pid` was the workload only if it still is now: a pid is
    // not reused while its process exists, and the start time tells a new process apart.
    if process_start_time(pid) != Some(spec.start_time) {
        return Err(Fail(format!(
            "process {pid} is no longer the container's workload (it exited); is the \
             container running?"
        )));
    }
    for (name, flag, fd) in &files {
        setns(fd, *flag).ctx(|| format!("join the {name} namespace of process {pid}"))?;
    }
    drop(files);
    let mut signals = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(sig);
    }
    signals.thread_block().ctx(|| "block signals")?;
    let parent = nix::unistd::getpid();
    match fork().ctx(|| format!("fork into the PID namespace of process {pid}"))? {
        ForkResult::Child => command(spec, parent),
        ForkResult::Parent { child } => Ok(wait_or_kill(child, &signals)),
    }
}

fn command(spec: &ExecSpec, parent: Pid) -> ! {
    let prepared = (|| -> Res<Option<super::seccomp::Pending>> {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).ctx(|| "set the parent-death signal")?;
        // Own process group, so that a kill reaches what the command started too.
        nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).ctx(|| "setpgid")?;
        // The shim is outside the target PID namespace, so getppid() is 0 while it lives; once
        // it died we were reparented to the namespace's init (or to the shim's own reaper
        // when the namespace is the shim's).
        let ppid = nix::unistd::getppid();
        if ppid.as_raw() != 0 && ppid != parent {
            return Err(super::error::Fail(
                "the shim exited before the command started".into(),
            ));
        }
        reset_signals()?;
        let filter = drop_to(&spec.identity)?;
        enter_cwd(&spec.cwd, &[])?;
        Ok(filter)
    })();
    let filter = match prepared {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            exit_now(126)
        }
    };
    let failure = exec_args(&spec.args, &spec.env, filter);
    eprintln!("{}", failure.message);
    exit_now(failure.code)
}

/// Wait for the command; on SIGTERM/SIGINT kill its process group first. Returns the code to
/// exit with.
fn wait_or_kill(child: Pid, signals: &SigSet) -> i32 {
    loop {
        match signals.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                let _ = killpg(child, Signal::SIGKILL);
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return 137;
            }
            Ok(_) => match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    if let Some((code, _)) = exit_code(status) {
                        return code;
                    }
                }
                Err(_) => return SHIM_FAILED,
            },
            Err(_) => {}
        }
    }
}
