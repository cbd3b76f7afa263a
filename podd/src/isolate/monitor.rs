//! The monitor's life after launch: copy the workload's stdout/stderr into the CRI log until
//! it exits, drain, write the exit file. Depends on nothing but the kernel, so podd may die.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::logwriter::{now, now_ns, rfc3339_nano, LineSplitter, LogWriter};
use super::process::{exit_code, kill_mount_namespace, MountNs};
use super::spec::{ContainerSpec, ExitRecord};
use super::syscall::{exit_now, replace_fd, trim_memory};

/// After the workload exited: stop draining after this long without data...
const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// ...or after this long in all (a grandchild may keep writing forever).
const DRAIN_MAX: Duration = Duration::from_secs(5);
/// Trim the monitor's memory after this long without output (see `trim_memory`).
const IDLE_TRIM: Duration = Duration::from_secs(2);
/// Bytes read per read(2).
const READ_CHUNK: usize = 8192;

/// A started workload as the monitor holds it.
pub struct Workload {
    pub pid: Pid,
    pub start_time: u64,
    pub pidfd: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub log: File,
    /// The workload's mount namespace, held open. What still runs in it when the workload has
    /// exited (its background children, in a PID namespace it shares) is killed, as
    /// containerd's shim does for a container without its own PID namespace.
    pub mnt_ns: Option<MountNs>,
}

struct Stream<'a> {
    fd: Option<OwnedFd>,
    splitter: LineSplitter,
    writer: LogWriter<'a>,
}

impl Stream<'_> {
    /// Read once; false at EOF or error (the stream is then finished and closed).
    fn pump(&mut self, buf: &mut [u8], record: &mut Vec<u8>) -> bool {
        let Some(fd) = &self.fd else { return false };
        let n = loop {
            match nix::unistd::read(fd.as_fd(), buf) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return true,
                other => break other.unwrap_or(0),
            }
        };
        let (secs, nanos) = now();
        let ts = rfc3339_nano(secs, nanos);
        let writer = &self.writer;
        let mut emit = |text: &[u8], partial: bool| writer.record(&ts, text, partial, record);
        if n == 0 {
            self.splitter.finish(&mut emit);
            self.fd = None;
            return false;
        }
        self.splitter.push(&buf[..n], &mut emit);
        true
    }
}

/// The signal that asks a monitor to reopen its container's log file (kubelet rotated it).
pub const REOPEN_LOG: Signal = Signal::SIGUSR1;

pub fn reopen_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(REOPEN_LOG);
    set
}

/// Reopen the log at its path (made anew if it was moved away) on the same fd number.
fn reopen_log(spec: &ContainerSpec, log: &File) {
    if let Ok(new) = super::container::open_log(&spec.log_path) {
        let _ = replace_fd(new.as_fd(), log.as_fd());
    }
}

/// Supervise until the workload exited and its output is drained, then write the exit file
/// and exit the process.
pub fn supervise(spec: &ContainerSpec, w: Workload) -> ! {
    let mut streams = [
        Stream {
            fd: Some(w.stdout),
            splitter: LineSplitter::new(),
            writer: LogWriter {
                file: &w.log,
                stream: "stdout",
            },
        },
        Stream {
            fd: Some(w.stderr),
            splitter: LineSplitter::new(),
            writer: LogWriter {
                file: &w.log,
                stream: "stderr",
            },
        },
    ];
    // Without it the log is never reopened, but the container runs as ever.
    let reopen = SignalFd::with_flags(
        &reopen_signals(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .ok();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut record = Vec::new();
    let mut status = None;
    let mut exited_at: Option<Instant> = None;
    let mut finished_at = 0i64;
    let mut active_since_trim = false;
    loop {
        let open: Vec<usize> = (0..2).filter(|&i| streams[i].fd.is_some()).collect();
        if open.is_empty() && status.is_some() {
            break;
        }
        if exited_at.is_some_and(|t| t.elapsed() > DRAIN_MAX) {
            break;
        }
        let mut fds: Vec<PollFd> = open
            .iter()
            .filter_map(|&i| streams[i].fd.as_ref())
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        if status.is_none() {
            fds.push(PollFd::new(w.pidfd.as_fd(), PollFlags::POLLIN));
        }
        let reopen_slot = fds.len();
        if let Some(sfd) = &reopen {
            fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
        }
        let timeout = if status.is_some() {
            PollTimeout::try_from(DRAIN_IDLE).unwrap_or(PollTimeout::ZERO)
        } else if active_since_trim {
            PollTimeout::try_from(IDLE_TRIM).unwrap_or(PollTimeout::ZERO)
        } else {
            PollTimeout::NONE
        };
        let ready = match poll(&mut fds, timeout) {
            Ok(0) if status.is_none() => {
                drop(fds);
                trim_memory();
                active_since_trim = false;
                continue;
            }
            Ok(0) => break, // drained: nothing for DRAIN_IDLE after exit
            Ok(_) => fds
                .iter()
                .map(|f| f.any().unwrap_or(false))
                .collect::<Vec<_>>(),
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        drop(fds);
        active_since_trim = true;
        if let (Some(sfd), Some(true)) = (&reopen, ready.get(reopen_slot)) {
            while let Ok(Some(_)) = sfd.read_signal() {}
            reopen_log(spec, &w.log);
        }
        for (slot, &i) in open.iter().enumerate() {
            if ready[slot] {
                streams[i].pump(&mut buf, &mut record);
            }
        }
        if status.is_none() && ready.get(open.len()).copied().unwrap_or(false) {
            status = waitpid(w.pid, None).ok().and_then(exit_code);
            if status.is_none() {
                status = Some((255, None)); // could not be reaped: report a failure
            }
            if let Some(ns) = &w.mnt_ns {
                kill_mount_namespace(ns);
            }
            exited_at = Some(Instant::now());
            finished_at = now_ns();
        }
    }
    for s in &mut streams {
        let writer = &s.writer;
        let (secs, nanos) = now();
        let ts = rfc3339_nano(secs, nanos);
        s.splitter
            .finish(&mut |text, partial| writer.record(&ts, text, partial, &mut record));
    }
    let (code, signal) = status.unwrap_or((255, None));
    let exit = ExitRecord {
        exit_code: code,
        signal,
        finished_at,
        reason: if code == 0 { "Completed" } else { "Error" }.to_string(),
    };
    let json = serde_json::to_vec(&exit).unwrap_or_default();
    drop(w.mnt_ns);
    let ok = crate::store::write_atomic(&spec.exit_file, &json).is_ok();
    exit_now(if ok { 0 } else { 1 })
}
