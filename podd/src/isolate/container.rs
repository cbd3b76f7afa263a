//! `podd-shim monitor`: start a member container's workload and hand its monitor over to podd.
//!
//! launcher ─fork─> intermediate ─fork─> monitor ─fork─> workload (new mnt [+pid] ns) ─exec
//! The launcher waits for the monitor's verdict (a `Launched` JSON or an error text) on a pipe,
//! prints it and exits; the monitor then copies the workload's output into the CRI log and
//! writes the exit file (see `monitor.rs`).

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

use super::capabilities::{drop_to, Privileges};
use super::cmd::{exec_args, reset_signals};
use super::error::{fail, Ctx, Fail, Res};
use super::infra::clone_flag;
use super::launch::{
    fork_detached, pipe_cloexec, read_to_end, stdio_to_devnull, write_quietly, Forked,
};
use super::monitor::{supervise, Workload};
use super::mounts::{pivot_into, prepare_rootfs, remount_root_readonly, restrict_paths};
use super::process::process_start_time;
use super::spec::{ContainerSpec, Launched, NsKind};
use super::syscall::{cloexec_from, close_fds_except, exit_now, fork, pidfd_open, trim_memory};

/// Entry point: print the `Launched` line and return 0, or the error on stderr and 1.
pub fn run(spec: ContainerSpec) -> i32 {
    match launch(&spec) {
        Ok(launched) => super::entry::print_launched(&launched),
        Err(e) => {
            eprintln!("podd-shim monitor for container {}: {e}", spec.container_id);
            1
        }
    }
}

fn launch(spec: &ContainerSpec) -> Res<Launched> {
    let (verdict_rd, verdict_wr) = pipe_cloexec()?;
    match fork_detached(|| Ok(()))? {
        Forked::Detached => {
            drop(verdict_rd);
            monitor_main(spec, verdict_wr)
        }
        Forked::Launcher { .. } => {}
    }
    drop(verdict_wr);
    let verdict = read_to_end(verdict_rd);
    if verdict.is_empty() {
        return fail("the monitor exited before reporting");
    }
    serde_json::from_slice::<Launched>(&verdict)
        .map_err(|_| Fail(String::from_utf8_lossy(&verdict).into_owned()))
}

/// The monitor: start the workload, report, supervise, exit.
fn monitor_main(spec: &ContainerSpec, verdict: OwnedFd) -> ! {
    match start_workload(spec, &verdict) {
        Err(e) => {
            write_quietly(&verdict, e.0.as_bytes());
            exit_now(1)
        }
        Ok(workload) => {
            let launched = Launched {
                pid: workload.pid.as_raw(),
                start_time: workload.start_time,
                monitor_pid: Some(nix::unistd::getpid().as_raw()),
            };
            let json = serde_json::to_vec(&launched).unwrap_or_default();
            write_quietly(&verdict, &json);
            drop(verdict);
            trim_memory();
            supervise(spec, workload)
        }
    }
}

fn open_log(path: &Path) -> Res<File> {
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
            let Err(e) = workload(spec, &joins, out_wr, err_wr);
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
    Ok(Workload {
        pid: child,
        start_time,
        pidfd,
        stdout: out_rd,
        stderr: err_rd,
        log,
    })
}

/// The workload child, from fork to execve. Returns only the reason it could not exec.
fn workload(
    spec: &ContainerSpec,
    joins: &[(NsKind, OwnedFd)],
    out: OwnedFd,
    err: OwnedFd,
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
    drop_to(&Privileges {
        uid: spec.uid,
        gid: spec.gid,
        groups: &spec.additional_gids,
        capabilities: &spec.capabilities,
        ambient: &spec.ambient_capabilities,
        no_new_privs: spec.no_new_privs,
        privileged: spec.privileged,
    })?;
    nix::unistd::chdir(cwd).ctx(|| format!("chdir to working directory {}", spec.cwd))?;
    cloexec_from(3).ctx(|| "mark fds close-on-exec")?;
    Err(exec_args(&spec.args, &spec.env).message)
}
