//! `e2e-reaper PODD [ARGS...]`: runs podd under a child subreaper for the e2e tests.
//!
//! This machine's PID 1 does not reap orphans. podd is itself a subreaper while it runs, but a
//! test that `kill -9`s podd re-parents podd's infra and monitor processes to the next subreaper
//! up: this process. So it
//! - sets `PR_SET_CHILD_SUBREAPER` (and `PR_SET_PDEATHSIG` = SIGTERM, so it follows its test),
//! - spawns `PODD ARGS...` (podd's stdout goes to this process's stderr),
//! - prints podd's pid on stdout, one line,
//! - reaps every child until told to stop,
//! - on SIGTERM forwards SIGTERM to podd (if it is still running) and keeps reaping until it has
//!   no child left, then exits 0.
//!
//! The harness kills whatever descendants remain if it does not exit in time.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(podd) = args.next() else {
        eprintln!("usage: e2e-reaper PODD [ARGS...]");
        std::process::exit(2);
    };

    // SAFETY: plain prctl calls with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            die("prctl(PR_SET_CHILD_SUBREAPER)", Errno::last());
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
            die("prctl(PR_SET_PDEATHSIG)", Errno::last());
        }
    }
    if nix::unistd::getppid() == Pid::from_raw(1) {
        // The test that started us is already gone.
        std::process::exit(1);
    }

    // Block SIGTERM and SIGCHLD before spawning so neither is lost; podd must not inherit the
    // mask, so it is cleared in the child before exec.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGCHLD);
    if let Err(e) = mask.thread_block() {
        die("sigprocmask", e);
    }

    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .unwrap_or_else(|e| die("dup stderr", Errno::from_raw(e.raw_os_error().unwrap_or(0))));
    let mut cmd = Command::new(&podd);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr));
    // SAFETY: only async-signal-safe calls (sigprocmask) between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("e2e-reaper: cannot start {}: {e}", podd.to_string_lossy());
            std::process::exit(1);
        }
    };
    let podd_pid = Pid::from_raw(child.id() as i32);
    drop(child); // never waited through std: the loop below reaps it.
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{podd_pid}");
        let _ = out.flush();
    }

    let mut podd_alive = true;
    let mut stopping = false;
    loop {
        // Reap everything that has exited.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => {
                    if status.pid() == Some(podd_pid) {
                        podd_alive = false;
                        eprintln!("e2e-reaper: podd (pid {podd_pid}) ended: {status:?}");
                    }
                }
                Err(Errno::ECHILD) => {
                    if stopping {
                        std::process::exit(0);
                    }
                    break;
                }
                Err(Errno::EINTR) => {}
                Err(e) => die("waitpid", e),
            }
        }
        // Wait for the next SIGCHLD or SIGTERM (the timeout is only a safety net).
        let ts = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // SAFETY: mask is a valid sigset_t; info may be null.
        let sig = unsafe { libc::sigtimedwait(mask.as_ref(), std::ptr::null_mut(), &ts) };
        if sig == libc::SIGTERM && !stopping {
            stopping = true;
            if podd_alive {
                let _ = kill(podd_pid, Signal::SIGTERM);
            }
        }
    }
}

fn die(what: &str, e: Errno) -> ! {
    eprintln!("e2e-reaper: {what}: {e}");
    std::process::exit(1);
}
