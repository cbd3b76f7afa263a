//! Processes podd adopts (infra, monitors, workloads): subreaper, start times, pidfd handles.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

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

/// Exit code in the shell convention: the code, or 128 + signal.
pub fn exit_code(status: WaitStatus) -> Option<(i32, Option<i32>)> {
    match status {
        WaitStatus::Exited(_, code) => Some((code, None)),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32, Some(sig as i32))),
        _ => None,
    }
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
    }
}
