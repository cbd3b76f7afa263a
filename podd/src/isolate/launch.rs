//! Process plumbing shared by the shim's subcommands: CLOEXEC pipes, whole-pipe reads, stdio
//! to /dev/null, the double fork that hands a process over to podd, and launched files.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use super::error::{Ctx, Fail, Res};
use super::spec::Launched;
use super::syscall::{exit_now, fork};

/// A pipe whose both ends are close-on-exec.
pub fn pipe_cloexec() -> Res<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "create a pipe")
}

/// Read until EOF (every writer closed its end).
pub fn read_to_end(fd: OwnedFd) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = File::from(fd).read_to_end(&mut buf);
    buf
}

/// Write all of `data`; errors are ignored (the reader is gone, nothing else to tell).
pub fn write_quietly(fd: impl AsFd, data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        match nix::unistd::write(fd.as_fd(), rest) {
            Ok(0) => return,
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn open_devnull() -> Res<OwnedFd> {
    nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open /dev/null")
}

/// Point stdin at /dev/null (after the spec was read from it).
pub fn stdin_to_devnull() -> Res<()> {
    nix::unistd::dup2_stdin(open_devnull()?).ctx(|| "dup2 /dev/null to stdin")
}

/// Point stdin, stdout and stderr at /dev/null, so that nothing keeps the launcher's pipes to
/// podd open once the launcher has exited.
pub fn stdio_to_devnull() -> Res<()> {
    let null = open_devnull()?;
    nix::unistd::dup2_stdin(&null).ctx(|| "dup2 /dev/null to stdin")?;
    nix::unistd::dup2_stdout(&null).ctx(|| "dup2 /dev/null to stdout")?;
    nix::unistd::dup2_stderr(&null).ctx(|| "dup2 /dev/null to stderr")?;
    Ok(())
}

/// Which side of [`fork_detached`] we are on.
pub enum Forked {
    /// The caller, after the intermediate process has exited; `child` is the grandchild's pid
    /// as seen from the caller's PID namespace.
    Launcher { child: Pid },
    /// The grandchild. Its parent has exited, so it was reparented to the launcher (a child
    /// subreaper); once the launcher exits it moves on to the next subreaper up, podd.
    Detached,
}

/// Double fork. `in_middle` runs in the intermediate process before the second fork (e.g.
/// `unshare(CLONE_NEWPID)`, so that the grandchild is PID 1 of the new namespace while the
/// launcher stays where it is).
///
/// The launcher makes itself a child subreaper first: the grandchild stays its child, so a
/// launcher that fails reaps what it made ([`reap`]) and nothing unwatched is ever handed to
/// podd, which only reaps the processes it watches.
pub fn fork_detached(in_middle: impl FnOnce() -> Res<()>) -> Res<Forked> {
    nix::sys::prctl::set_child_subreaper(true).ctx(|| "prctl(PR_SET_CHILD_SUBREAPER)")?;
    let (rd, wr) = pipe_cloexec()?;
    match fork().ctx(|| "fork")? {
        ForkResult::Parent { child } => {
            drop(wr);
            let _ = waitpid(child, None);
            let msg = read_to_end(rd);
            let msg = String::from_utf8_lossy(&msg);
            if let Some(pid) = msg.strip_prefix('P').and_then(|p| p.parse::<i32>().ok()) {
                Ok(Forked::Launcher {
                    child: Pid::from_raw(pid),
                })
            } else if let Some(err) = msg.strip_prefix('E') {
                Err(Fail(err.to_string()))
            } else {
                Err(Fail("the intermediate process died before forking".into()))
            }
        }
        ForkResult::Child => {
            drop(rd);
            let res = in_middle().and_then(|()| fork().ctx(|| "fork"));
            match res {
                Ok(ForkResult::Child) => {
                    drop(wr);
                    Ok(Forked::Detached)
                }
                Ok(ForkResult::Parent { child }) => {
                    write_quietly(&wr, format!("P{child}").as_bytes());
                    exit_now(0)
                }
                Err(e) => {
                    write_quietly(&wr, format!("E{e}").as_bytes());
                    exit_now(1)
                }
            }
        }
    }
}

/// Wait for a child of the launcher (one it killed, or one that failed) so that it does not
/// outlive the launcher as a zombie.
pub fn reap(pid: Pid) {
    loop {
        match waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// Write `launched` to `path` atomically (creating its directory), before success is reported.
/// An empty path (a record from before launched files) writes nothing.
pub fn write_launched(path: &Path, launched: &Launched) -> Res<()> {
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    }
    let json = serde_json::to_vec(launched).unwrap_or_default();
    // Only this boot's processes are named in it: no disk flush on the start path.
    crate::store::write_atomic_with(path, &json, crate::store::Durability::UntilReboot)
        .map_err(|e| Fail(e.to_string()))
}
