//! `podd-shim monitor`: start a member container's workload and hand its monitor over to podd.
//!
//! launcher ─fork─> intermediate ─fork─> monitor ─fork─> workload (new mnt [+pid] ns) ─exec
//! The launcher waits for the monitor's verdict (a `Launched` JSON or an error text) on a pipe,
//! prints it and exits; the monitor then copies the workload's output into the CRI log and
//! writes the exit file (see `monitor.rs`). The monitor writes the launched file before its
//! verdict, so a podd killed before it recorded the start still finds both processes.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

use super::capabilities::drop_to;
use super::cmd::{enter_cwd, exec_args, reset_signals};
use super::error::{fail, Ctx, Fail, Res};
use super::infra::clone_flag;
use super::launch::{
    fork_detached, pipe_cloexec, read_to_end, reap, stdio_to_devnull, write_launched,
    write_quietly, Forked,
};
use super::logwriter::now_ns;
use super::monitor::{supervise, Workload};
use super::mounts::{pivot_into, prepare_rootfs, remount_root_readonly, restrict_paths};
use super::process::{process_start_time, MountNs};
use super::spec::{ContainerSpec, Launched, NsKind};
use super::syscall::{close_fds_except, exit_now, fork, pidfd_open, trim_memory};

/// Entry point: print the `Launched` line and return 0, or the error on stderr and 1 (podd
/// says whose start it was).
pub fn run(spec: ContainerSpec) -> i32 {
    match launch(&spec) {
        Ok(launched) => super::entry::print_launched(&launched),
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn launch(spec: &ContainerSpec) -> Res<Launched> {
    let (verdict_rd, verdict_wr) = pipe_cloexec()?;
    let monitor = match fork_detached(|| Ok(()))? {
        Forked::Detached => {
            drop(verdict_rd);
            monitor_main(spec, verdict_wr)
        }
        Forked::Launcher { child } => child,
    };
    drop(verdict_wr);
    let verdict = read_to_end(verdict_rd);
    match serde_json::from_slice::<Launched>(&verdict) {
        Ok(launched) => Ok(launched),
        Err(_) => {
            // The monitor failed and is exiting: it is our child (we are a subreaper), reap it.
            reap(monitor);
            if verdict.is_empty() {
                return fail("the monitor exited before reporting");
            }
            Err(Fail(String::from_utf8_lossy(&verdict).into_owned()))
        }
    }
}

/// The monitor: start the workload, write the launched file, report, supervise, exit.
fn monitor_main(spec: &ContainerSpec, verdict: OwnedFd) -> ! {
    // SIGUSR1 asks to reopen the log (ReopenContainerLog); read from a signalfd, never
    // delivered (the workload unblocks every signal before exec).
    if let Err(e) = super::monitor::reopen_signals().thread_block() {
        write_quietly(
            &verdict,
            format!("block SIGUSR1 in the monitor: {e}").as_bytes(),
        );
        exit_now(1)
    }
    let started = start_workload(spec, &verdict).and_then(|workload| {
        let me = nix::unistd::getpid().as_raw();
        let launched = Launched {
            pid: workload.pid.as_raw(),
            start_time: workload.start_time,
            monitor_pid: Some(me),
            monitor_start_time: process_start_time(me),
            started_at: now_ns(),
        };
        match write_launched(&spec.launched_file, &launched) {
            Ok(()) => Ok((workload, launched)),
            Err(e) => {
                let _ = kill(workload.pid, Signal::SIGKILL);
                reap(workload.pid);
                Err(e)
            }
        }
    });
    match started {
        Err(e) => {
            write_quietly(&verdict, e.0.as_bytes());
            exit_now(1)
        }
        Ok((workload, launched)) => {
            let json = serde_json::to_vec(&launched).unwrap_or_default();
            write_quietly(&verdict, &json);
            drop(verdict);
            trim_memory();
            supervise(spec, workload)
        }
    }
}

pub(super) fn open_log(path: &Path) -> Res<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .ctx(|| format!("open log file {}", path.display()))
}

fn start_workload(spec: &ContainerSpec, verdict: &OwnedFd) -> Res<Workload> {
    nix::unistd::setsid().ctx(|| "setsid")?;
    stdio_to_devnull()?;
    close_fds_except(&[verdict.as_raw_fd()]).ctx(|| "close inherited fds")?;
    let log = open_log(&spec.log_path)?;
    let mut joins = Vec::with_capacity(spec.join.len());
    for (kind, path) in &spec.join {
        let fd = File::open(path).ctx(|| format!("open namespace file {}", path.display()))?;
        joins.push((*kind, OwnedFd::from(fd)));
    }
    match joins.iter().find(|(k, _)| *k == NsKind::Pid) {
        Some((_, fd)) => {
            setns(fd, CloneFlags::CLONE_NEWPID).ctx(|| "join the pod PID namespace")?
        }
        None => unshare(CloneFlags::CLONE_NEWPID).ctx(|| "unshare a new PID namespace")?,
    }
    let (out_rd, out_wr) = pipe_cloexec()?;
    let (err_rd, err_wr) = pipe_cloexec()?;
    let (fail_rd, fail_wr) = pipe_cloexec()?;
    let child = match fork()
        .ctx(|| "fork the workload (into the pod PID namespace: is its infra alive?)")?
    {
        ForkResult::Child => {
            drop((out_rd, err_rd, fail_rd));
            let Err(e) = workload(spec, &joins, out_wr, err_wr, fail_wr.as_raw_fd());
            write_quietly(&fail_wr, e.0.as_bytes());
            exit_now(127)
        }
        ForkResult::Parent { child } => child,
    };
    drop((out_wr, err_wr, fail_wr, joins));
    let failure = read_to_end(fail_rd);
    if !failure.is_empty() {
        let _ = waitpid(child, None);
        return Err(Fail(String::from_utf8_lossy(&failure).into_owned()));
    }
    let pidfd = pidfd_open(child.as_raw()).ctx(|| format!("pidfd_open {child}"))?;
    let start_time = process_start_time(child.as_raw()).unwrap_or(0);
    // The workload has exec'd (the failure pipe closed on exec): it is in its own mount
    // namespace now. Hold that namespace open, then check the pid was still ours.
    let mnt_ns = MountNs::of(child.as_raw())
        .filter(|_| process_start_time(child.as_raw()) == Some(start_time));
    Ok(Workload {
        pid: child,
        start_time,
        pidfd,
        stdout: out_rd,
        stderr: err_rd,
        log,
        mnt_ns,
    })
}

/// The workload child, from fork to execve. Returns only the reason it could not exec.
/// `failure` is the close-on-exec pipe the reason goes to; it is the only fd above 2 left open
/// when the working directory is entered.
fn workload(
    spec: &ContainerSpec,
    joins: &[(NsKind, OwnedFd)],
    out: OwnedFd,
    err: OwnedFd,
    failure: RawFd,
) -> Result<Infallible, Fail> {
    nix::unistd::dup2_stdout(&out).ctx(|| "dup2 stdout")?;
    nix::unistd::dup2_stderr(&err).ctx(|| "dup2 stderr")?;
    drop((out, err));
    reset_signals()?;
    umask(Mode::empty());
    for (kind, fd) in joins.iter().filter(|(k, _)| *k != NsKind::Pid) {
        setns(fd.as_fd(), clone_flag(*kind))
            .ctx(|| format!("join the pod {} namespace", kind.proc_name()))?;
    }
    unshare(CloneFlags::CLONE_NEWNS).ctx(|| "unshare a mount namespace")?;
    prepare_rootfs(spec)?;
    pivot_into(&spec.rootfs.merged)?;
    let cwd = Path::new(&spec.cwd);
    if !cwd.is_absolute() {
        return Err(Fail(format!(
            "working directory {:?} is not absolute",
            spec.cwd
        )));
    }
    std::fs::create_dir_all(cwd).ctx(|| format!("create working directory {}", spec.cwd))?;
    if spec.rootfs.readonly {
        remount_root_readonly()?;
    }
    restrict_paths(&spec.masked_paths, &spec.readonly_paths)?;
    umask(Mode::from_bits_truncate(0o022));
    let filter = drop_to(&spec.identity)?;
    // Nothing of the host may be reachable from the cwd (CVE-2024-21626): the fds of this
    // frame's callers (namespace files, log, pipes) are never used again in this process.
    enter_cwd(&spec.cwd, &[failure])?;
    Err(exec_args(&spec.args, &spec.env, filter).message)
}
