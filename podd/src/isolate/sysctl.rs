//! Daemon side: write a pod's sysctls inside its pinned namespaces.
//!
//! A fresh OS thread joins the pod's net, IPC and UTS namespaces and writes below `/proc/sys`,
//! then exits, so no thread of podd's pools ever runs in a pod's namespaces. This works in a
//! multi-threaded process because `setns` into those three kinds is per thread, and the
//! kernel resolves `/proc/sys/{net,kernel,fs/mqueue}` through the namespaces of the thread that
//! opens the file. It runs after CNI ADD so that per-interface sysctls find `eth0`.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

use super::error::IsolateError;
use super::infra::clone_flag;
use crate::pod::sysctl::Sysctl;

/// Sets `sysctls` in the namespaces pinned under `pin_dir`; the first failure names the sysctl.
pub fn apply(pin_dir: &Path, sysctls: &[Sysctl]) -> Result<(), IsolateError> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let pin_dir = pin_dir.to_path_buf();
    let sysctls = sysctls.to_vec();
    std::thread::Builder::new()
        .name("podd-sysctl".into())
        .spawn(move || apply_here(&pin_dir, &sysctls))
        .map_err(|e| IsolateError::sys("start a thread to set the pod's sysctls", e))?
        .join()
        .unwrap_or_else(|_| {
            Err(IsolateError::sys(
                "set the pod's sysctls",
                std::io::Error::other("the thread panicked"),
            ))
        })
}

/// Runs on a thread of its own that is never reused: it leaves that thread in the pod's
/// namespaces.
fn apply_here(pin_dir: &Path, sysctls: &[Sysctl]) -> Result<(), IsolateError> {
    let mut kinds: Vec<_> = sysctls.iter().map(|s| s.ns).collect();
    kinds.sort_by_key(|k| k.proc_name());
    kinds.dedup();
    for kind in kinds {
        let pin: PathBuf = pin_dir.join(kind.proc_name());
        let fd = File::open(&pin).map_err(|e| {
            IsolateError::sys(
                format!(
                    "open the pod's {} namespace pin {}",
                    kind.proc_name(),
                    pin.display()
                ),
                e,
            )
        })?;
        let flag: CloneFlags = clone_flag(kind);
        setns(&fd, flag).map_err(|e| {
            IsolateError::sys(
                format!(
                    "join the pod's {} namespace ({})",
                    kind.proc_name(),
                    pin.display()
                ),
                e,
            )
        })?;
    }
    for s in sysctls {
        write_one(s)?;
    }
    Ok(())
}

fn write_one(s: &Sysctl) -> Result<(), IsolateError> {
    let file = Path::new("/proc/sys").join(&s.path);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|mut f| f.write_all(s.value.as_bytes()));
    let Err(e) = written else { return Ok(()) };
    // The kernel's answer to the request itself: no such sysctl here, or a bad value.
    let refused = match (e.kind(), e.raw_os_error()) {
        (ErrorKind::NotFound, _) => Some(
            "this kernel has no such sysctl in a pod's namespace (check the name, and that an \
             interface it names exists in the pod)",
        ),
        (_, Some(libc::EINVAL | libc::ERANGE)) => {
            Some("the kernel refused the value (check its format and range)")
        }
        _ => None,
    };
    match refused {
        Some(hint) => Err(IsolateError::SysctlRefused {
            name: s.name.clone(),
            message: format!("writing {:?} to {}: {e}; {hint}", s.value, file.display()),
        }),
        None => Err(IsolateError::sys(
            format!("set sysctl {}={:?} ({})", s.name, s.value, file.display()),
            e,
        )),
    }
}
