//! A container's mount namespace: overlay rootfs, /proc, /dev, /dev/shm, /dev/mqueue, /sys,
//! bind mounts, then pivot_root. Runs in the workload child after `unshare(CLONE_NEWNS)`.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};

use super::error::{Ctx, Fail, Res};
use super::rootfs_path::resolve_in_root;
use super::spec::{BindMount, ContainerSpec, RootfsSpec};
use super::syscall::make_readonly_recursive;

const NONE: Option<&str> = None;

fn mount_fs(fstype: &str, target: &Path, flags: MsFlags, data: Option<&str>) -> Res<()> {
    mount(Some(fstype), target, Some(fstype), flags, data).ctx(|| {
        let opts = data.map(|d| format!(" ({d})")).unwrap_or_default();
        format!("mount {fstype}{opts} on {}", target.display())
    })
}

fn bind(source: &Path, target: &Path, flags: MsFlags) -> Res<()> {
    mount(Some(source), target, NONE, MsFlags::MS_BIND | flags, NONE)
        .ctx(|| format!("bind-mount {} on {}", source.display(), target.display()))
}

/// Where `dest` (a container path) is on the host, created as a directory or an empty file.
fn mount_point(root: &Path, dest: &Path, dir: bool) -> Res<PathBuf> {
    let path = resolve_in_root(root, dest)
        .ctx(|| format!("resolve {} in rootfs {}", dest.display(), root.display()))?;
    if path.symlink_metadata().is_ok() {
        return Ok(path);
    }
    let parent = path.parent().unwrap_or(root);
    fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
    let made = if dir {
        fs::create_dir(&path)
    } else {
        fs::File::create(&path).map(drop)
    };
    made.ctx(|| format!("create mount point {}", path.display()))?;
    Ok(path)
}

/// Mount everything under `rootfs.merged`; the caller then calls [`pivot_into`].
pub fn prepare_rootfs(spec: &ContainerSpec) -> Res<()> {
    mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE)
        .ctx(|| "make / rprivate in the container mount namespace")?;
    mount_overlay(&spec.rootfs)?;
    let root = spec.rootfs.merged.as_path();
    let common = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs(
        "proc",
        &mount_point(root, Path::new("/proc"), true)?,
        common,
        None,
    )?;
    let dev = mount_point(root, Path::new("/dev"), true)?;
    mount_dev(&dev, spec.shm_dir.as_deref())?;
    let sys = mount_point(root, Path::new("/sys"), true)?;
    let sys_flags = if spec.privileged {
        common
    } else {
        common | MsFlags::MS_RDONLY
    };
    mount_fs("sysfs", &sys, sys_flags, None)?;
    for m in &spec.mounts {
        bind_mount(root, m)?;
    }
    Ok(())
}

fn mount_overlay(rootfs: &RootfsSpec) -> Res<()> {
    let lower: Vec<String> = rootfs
        .lower
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        rootfs.upper.display(),
        rootfs.work.display()
    );
    mount(
        Some("overlay"),
        &rootfs.merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .ctx(|| format!("mount overlay on {} ({data})", rootfs.merged.display()))
}

/// Character devices every container gets: (name, major, minor).
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn mount_dev(dev: &Path, shm_dir: Option<&Path>) -> Res<()> {
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .ctx(|| format!("mount tmpfs on {}", dev.display()))?;
    for (name, major, minor) in DEVICES {
        let node = dev.join(name);
        let made = mknod(
            &node,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            libc::makedev(major as u32, minor as u32),
        );
        if made == Err(Errno::EPERM) {
            // No CAP_MKNOD (e.g. in a user namespace): bind the host's node instead.
            fs::File::create(&node).ctx(|| format!("create {}", node.display()))?;
            bind(&Path::new("/dev").join(name), &node, MsFlags::empty())?;
        } else {
            made.ctx(|| format!("mknod {}", node.display()))?;
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        symlink(target, dev.join(name)).ctx(|| format!("symlink {}/{name}", dev.display()))?;
    }
    let mkdir = |name: &str| -> Res<PathBuf> {
        let p = dev.join(name);
        fs::create_dir(&p).ctx(|| format!("create {}", p.display()))?;
        Ok(p)
    };
    let pts = mkdir("pts")?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .ctx(|| format!("mount devpts on {}", pts.display()))?;
    let shm = mkdir("shm")?;
    let common = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match shm_dir {
        Some(pod_shm) => bind(pod_shm, &shm, MsFlags::empty())?,
        None => mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            common,
            Some("mode=1777,size=65536k"),
        )
        .ctx(|| format!("mount tmpfs on {}", shm.display()))?,
    }
    // mqueue shows the IPC namespace of the mounter: the pod's, joined before.
    mount_fs("mqueue", &mkdir("mqueue")?, common, None)
}

fn bind_mount(root: &Path, m: &BindMount) -> Res<()> {
    let meta =
        fs::metadata(&m.source).ctx(|| format!("bind mount source {}", m.source.display()))?;
    let target = mount_point(root, &m.destination, meta.is_dir())?;
    bind(&m.source, &target, MsFlags::MS_REC)?;
    if m.readonly {
        readonly(&target)?;
    }
    Ok(())
}

fn readonly(target: &Path) -> Res<()> {
    let c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| Fail(format!("path {} has a NUL byte", target.display())))?;
    match make_readonly_recursive(&c) {
        Err(Errno::ENOSYS) => mount(
            NONE,
            target,
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            NONE,
        ),
        other => other,
    }
    .ctx(|| format!("make {} read-only", target.display()))
}

/// Make `merged` the root: `pivot_root(".", ".")` then detach the old root stacked under it
/// (runc's trick; no put_old directory needed and no host mount stays reachable).
pub fn pivot_into(merged: &Path) -> Res<()> {
    nix::unistd::chdir(merged).ctx(|| format!("chdir {}", merged.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root into {}", merged.display()))?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach the old root")?;
    nix::unistd::chdir("/").ctx(|| "chdir / in the new root")
}

/// After pivot_root, as runc does: bind each of `readonly` read-only onto itself, then hide
/// each of `masked` (/dev/null over a file, an empty read-only tmpfs over a directory). Paths
/// resolve inside the new root; missing ones are skipped.
pub fn restrict_paths(masked: &[String], readonly_paths: &[String]) -> Res<()> {
    for p in readonly_paths {
        let path = Path::new(p);
        if path.symlink_metadata().is_err() {
            continue;
        }
        bind(path, path, MsFlags::MS_REC)?;
        readonly(path)?;
    }
    for p in masked {
        let path = Path::new(p);
        match fs::metadata(path) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => {
                mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)
                    .ctx(|| format!("mask {p} with a read-only tmpfs"))?
            }
            Ok(_) => bind(Path::new("/dev/null"), path, MsFlags::empty())?,
        }
    }
    Ok(())
}

/// After pivot_root: make the root mount (only it, not /dev/shm etc.) read-only.
pub fn remount_root_readonly() -> Res<()> {
    mount(
        NONE,
        "/",
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        NONE,
    )
    .ctx(|| "remount the rootfs read-only")
}
