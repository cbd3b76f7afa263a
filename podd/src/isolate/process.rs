//! Processes podd adopts (infra, monitors, workloads): subreaper, start times, pidfd handles,
//! and killing everything that lives in a container's mount namespace.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::error::IsolateError;
use super::syscall::{pidfd_open, pidfd_send_signal};

/// Make this process a child subreaper, so that the infra and monitor processes (double-forked
/// away from their launchers) are reparented to it rather than to PID 1.
pub fn become_subreaper() -> Result<(), IsolateError> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| IsolateError::sys("prctl(PR_SET_CHILD_SUBREAPER)", e))
}

/// Field 22 (starttime, clock ticks since boot) of `/proc/PID/stat`, or None if the process is
/// gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Parse field 22 of a stat line. The command name (field 2) may hold spaces and ')', so
/// fields are counted after the last ')'.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After ')' come fields 3.. ; starttime is field 22, i.e. the 20th of these.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Exit code in the shell convention: the code, or 128 + signal (with the signal). The one
/// mapping of podd: a `std::process::ExitStatus` goes through `WaitStatus::from_raw`.
pub fn exit_code(status: WaitStatus) -> Option<(i32, Option<i32>)> {
    match status {
        WaitStatus::Exited(_, code) => Some((code, None)),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32, Some(sig as i32))),
        _ => None,
    }
}

/// Inode of the mount namespace of `pid` (the number in `mnt:[N]`), None if it is gone.
pub fn mount_namespace_of(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

/// A container's mount namespace, held open. Namespace inode numbers are handed out lowest
/// free first, so the number of a namespace that was let go names the next one made, very
/// likely another container's: the open fd keeps the namespace, and so its number, alive for
/// as long as processes are matched against it.
pub struct MountNs {
    _fd: OwnedFd,
    ino: u64,
}

impl MountNs {
    /// The mount namespace `pid` is in now; None if the process is gone. The caller checks
    /// afterwards that `pid` still is the process it means (not a reuse of the number).
    pub fn of(pid: i32) -> Option<MountNs> {
        let f = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
        let ino = f.metadata().ok()?.ino();
        Some(MountNs {
            _fd: OwnedFd::from(f),
            ino,
        })
    }
}

/// SIGKILL every process in the mount namespace `ns` (a container's: its workload, what the
/// workload started, ExecSync commands), again until none is left or ~2 s have passed; this
/// is what kills a container's background processes when its PID namespace is the pod's or
/// the host's. Returns the number of processes signalled. Never signals the caller's own
/// namespace.
pub fn kill_mount_namespace(ns: &MountNs) -> usize {
    let ns = ns.ino;
    if mount_namespace_of(std::process::id() as i32) == Some(ns) {
        return 0;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut signalled = std::collections::HashSet::new();
    loop {
        let mut found = 0;
        for pid in all_pids() {
            if mount_namespace_of(pid) != Some(ns) {
                continue;
            }
            let Ok(fd) = pidfd_open(pid) else { continue };
            // The pidfd pins the process; check again that it is the one we looked at.
            if mount_namespace_of(pid) != Some(ns) {
                continue;
            }
            let _ = pidfd_send_signal(fd.as_fd(), Signal::SIGKILL);
            signalled.insert(pid);
            found += 1;
        }
        // A killed process keeps its namespaces until it is fully gone: scan until none left.
        if found == 0 || Instant::now() > deadline {
            return signalled.len();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL a container's workload and everything in its mount namespace, if the workload is
/// still the process (pid, start time). Blocking, up to ~2 s.
pub fn kill_container_processes(pid: i32, start_time: u64) {
    let Some(handle) = ProcessHandle::open(pid, start_time) else {
        return;
    };
    let ns = handle.mount_namespace();
    let _ = handle.signal(Signal::SIGKILL);
    if let Some(ns) = ns {
        kill_mount_namespace(&ns);
    }
}

/// True when `pid` blocks `sig` (`SigBlk` of /proc/PID/status): a monitor that does reads it
/// from a signalfd, one from an older podd-shim would die of it.
pub fn blocks_signal(pid: i32, sig: Signal) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig as i32 - 1)) != 0)
}

/// A pidfd on a process identified by pid and start time, immune to pid reuse.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: i32,
    fd: OwnedFd,
}

impl ProcessHandle {
    /// Open a handle, or None if the process is gone or the pid now names another process.
    pub fn open(pid: i32, start_time: u64) -> Option<ProcessHandle> {
        // Open first, then check: if the start time matches after the pidfd exists, the pidfd
        // refers to the process we mean.
        let fd = pidfd_open(pid).ok()?;
        if process_start_time(pid)? != start_time {
            return None;
        }
        Some(ProcessHandle { pid, fd })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Send `sig`. A process that has already exited is not an error.
    pub fn signal(&self, sig: Signal) -> Result<(), IsolateError> {
        match pidfd_send_signal(self.fd.as_fd(), sig) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(IsolateError::sys(
                format!("send {sig} to process {}", self.pid),
                e,
            )),
        }
    }

    /// True until the process has exited (a zombie counts as exited).
    pub fn is_alive(&self) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// The process's mount namespace, held open, taken while it is verified to be this
    /// process (alive after the open: its pid was not reused in between).
    pub fn mount_namespace(&self) -> Option<MountNs> {
        let ns = MountNs::of(self.pid)?;
        self.is_alive().then_some(ns)
    }

    /// SIGKILL, then wait (blocking, at most `timeout`) until the process has exited and reap
    /// it if it is our child. True once it is gone. For start-up and rollback paths outside
    /// the async runtime's hot path.
    pub fn kill_blocking(&self, timeout: Duration) -> bool {
        let _ = self.signal(Signal::SIGKILL);
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::ZERO),
        );
        let gone = !self.is_alive();
        if gone {
            let _ = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG));
        }
        gone
    }

    /// SIGKILL, then wait up to `timeout` for the exit; true once the process is gone.
    pub async fn kill(&self, timeout: Duration) -> bool {
        let _ = self.signal(Signal::SIGKILL);
        tokio::time::timeout(timeout, self.exited()).await.is_ok()
    }

    /// Resolve once the process has exited, then reap it if it is our (adopted) child.
    pub async fn exited(&self) {
        self.wait_readable().await;
        match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(_) | Err(_) => {} // ECHILD: not ours, someone else reaps it.
        }
    }

    async fn wait_readable(&self) {
        // Register a duplicate so that concurrent waits on one handle do not clash in epoll.
        let async_fd = self.fd.try_clone().and_then(|dup| {
            // SAFETY: the OwnedFd moved into the AsyncFd keeps its fd open and unchanged until
            // the AsyncFd is dropped, and OwnedFd::as_raw_fd always returns that same fd.
            unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }
                .map_err(std::io::Error::from)
        });
        match async_fd {
            Ok(afd) => {
                let _ = afd.readable().await.map(|mut g| g.retain_ready());
            }
            Err(_) => {
                // Fallback without a reactor registration: poll every 100 ms.
                while self.is_alive() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl AsRawFd for ProcessHandle {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_after_last_paren() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
    }

    #[test]
    fn start_time_of_self() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        let h = ProcessHandle::open(me, process_start_time(me).unwrap()).unwrap();
        assert!(h.is_alive());
        assert!(ProcessHandle::open(me, 1).is_none());
        assert_eq!(h.mount_namespace().map(|ns| ns.ino), mount_namespace_of(me));
    }

    #[test]
    fn blocked_signals_are_read_from_status() {
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(Signal::SIGUSR2);
        // /proc/TID/status is this test's thread, whose mask is the one changed here.
        let tid = nix::unistd::gettid().as_raw();
        set.thread_block().unwrap();
        let blocked = blocks_signal(tid, Signal::SIGUSR2);
        set.thread_unblock().unwrap();
        assert!(blocked);
        assert!(!blocks_signal(tid, Signal::SIGUSR2));
        assert!(!blocks_signal(-1, Signal::SIGUSR2));
    }

    #[test]
    fn the_callers_own_mount_namespace_is_never_killed() {
        let me = std::process::id() as i32;
        let ns = MountNs::of(me).unwrap();
        assert_eq!(kill_mount_namespace(&ns), 0);
    }

    /// A `sleep` in a mount namespace of its own, killed when dropped.
    struct Unshared(std::process::Child);

    impl Unshared {
        fn start() -> Unshared {
            let child = std::process::Command::new("unshare")
                .args(["-m", "sleep", "60"])
                .spawn()
                .expect("run unshare -m sleep 60 (util-linux)");
            let u = Unshared(child);
            let mine = mount_namespace_of(std::process::id() as i32);
            let deadline = Instant::now() + Duration::from_secs(10);
            while mount_namespace_of(u.pid()) == mine {
                assert!(Instant::now() < deadline, "unshare -m did not unshare");
                std::thread::sleep(Duration::from_millis(5));
            }
            u
        }

        fn pid(&self) -> i32 {
            self.0.id() as i32
        }
    }

    impl Drop for Unshared {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// StopContainer kills by mount namespace after the workload is gone; had the namespace
    /// been let go, the next one made gets its number (lowest free first) and a container
    /// starting meanwhile, in any pod, was killed with it.
    #[test]
    fn a_held_mount_namespace_is_not_the_next_containers() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: unshare -m needs root");
            return;
        }
        let first = Unshared::start();
        let h = ProcessHandle::open(first.pid(), process_start_time(first.pid()).unwrap()).unwrap();
        let ns = h.mount_namespace().unwrap();
        drop(first);
        let second = Unshared::start();
        assert_ne!(mount_namespace_of(second.pid()), Some(ns.ino));
        assert_eq!(kill_mount_namespace(&ns), 0);
        assert!(
            mount_namespace_of(second.pid()).is_some(),
            "the next namespace's process was killed"
        );
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        use std::os::unix::process::ExitStatusExt;
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some((3, None)));
        let killed = std::process::ExitStatus::from_raw(9); // raw wait status: signal 9
        let status = WaitStatus::from_raw(pid, killed.into_raw()).unwrap();
        assert_eq!(exit_code(status), Some((137, Some(9))));
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
