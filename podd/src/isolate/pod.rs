//! Pod-level mounts on the host: namespace pins and the pod's /dev/shm tmpfs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::error::{Ctx, IsolateError, Res};
use super::spec::NsKind;

/// Bind-mount `/proc/PID/ns/<kind>` onto `pin_dir/<kind>` (created empty) and return that
/// path; the caller undoes it with [`unpin`] on a later failure.
pub fn pin_namespace(pid: i32, kind: NsKind, pin_dir: &Path) -> Res<PathBuf> {
    let target = pin_dir.join(kind.proc_name());
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&target)
        .ctx(|| format!("create pin file {}", target.display()))?;
    let source = format!("/proc/{pid}/ns/{}", kind.proc_name());
    mount(
        Some(source.as_str()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| format!("bind-mount {source} on {}", target.display()))?;
    Ok(target)
}

/// Mount the pod's shm tmpfs (mode 1777, nosuid, nodev, noexec) at `dir`, creating it.
pub fn mount_shm(dir: &Path, size_bytes: u64) -> Res<()> {
    fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let data = format!("mode=1777,size={size_bytes}");
    mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .ctx(|| format!("mount tmpfs ({data}) on {}", dir.display()))
}

/// Detach every mount stacked on `path`. Missing path or no mount = done.
fn unmount_all(path: &Path) -> Result<(), Errno> {
    loop {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Undo a pin: unmount and delete the file. Best effort (used on rollback).
pub fn unpin(path: &Path) {
    let _ = unmount_all(path);
    let _ = fs::remove_file(path);
}

/// Undo the shm mount and remove its directory. Best effort (used on rollback).
pub fn unmount_shm(dir: &Path) {
    let _ = release_shm(dir);
}

fn remove_missing_ok(res: io::Result<()>, what: &Path) -> Result<(), IsolateError> {
    match res {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(IsolateError::sys(format!("remove {}", what.display()), e))
        }
        _ => Ok(()),
    }
}

/// Unpin every namespace of a pod and unmount its shm tmpfs, removing the pin files, the pin
/// directory and the shm directory. Idempotent: what is already gone is fine.
pub fn release_pod(pin_dir: &Path, shm_dir: &Path) -> Result<(), IsolateError> {
    match fs::read_dir(pin_dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                unmount_all(&path)
                    .map_err(|e| IsolateError::sys(format!("unmount pin {}", path.display()), e))?;
                remove_missing_ok(fs::remove_file(&path), &path)?;
            }
            remove_missing_ok(fs::remove_dir(pin_dir), pin_dir)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(IsolateError::sys(
                format!("list pin directory {}", pin_dir.display()),
                e,
            ))
        }
    }
    release_shm(shm_dir)
}

/// Unmount a pod's shm tmpfs and remove its directory; idempotent. Done when the pod stops,
/// so a stopped pod that kubelet keeps around holds no tmpfs memory.
pub fn release_shm(shm_dir: &Path) -> Result<(), IsolateError> {
    unmount_all(shm_dir)
        .map_err(|e| IsolateError::sys(format!("unmount shm {}", shm_dir.display()), e))?;
    remove_missing_ok(fs::remove_dir(shm_dir), shm_dir)
}
