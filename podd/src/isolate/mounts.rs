//! A container's mount namespace: overlay rootfs, /proc, /dev, /dev/shm, /dev/mqueue, /sys,
//! bind mounts, then pivot_root. Runs in the workload child after `unshare(CLONE_NEWNS)`.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, mkdirat, mknodat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, TMPFS_MAGIC};
use nix::unistd::symlinkat;

use super::error::{Ctx, Fail, Res};
use super::rootfs_path::{open_in_rootfs, Create};
use super::spec::{BindMount, ContainerSpec, Propagation, RootfsSpec};
use super::syscall::{clone_tree, move_mount_onto, set_tree_attributes};

const NONE: Option<&str> = None;

fn cpath(p: &Path) -> Res<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Fail(format!("path {} has a NUL byte", p.display())))
}

/// The path that names exactly the inode `fd` refers to, for mount(2)'s target.
fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Mount a new `fstype` on the inode `target` is an fd of (`shown` names it in errors).
fn mount_fs(
    fstype: &str,
    target: BorrowedFd<'_>,
    shown: &Path,
    flags: MsFlags,
    data: Option<&str>,
) -> Res<()> {
    mount(
        Some(fstype),
        fd_path(target).as_str(),
        Some(fstype),
        flags,
        data,
    )
    .ctx(|| {
        let opts = data.map(|d| format!(" ({d})")).unwrap_or_default();
        format!("mount {fstype}{opts} on {}", shown.display())
    })
}

/// Recursively bind the host path `source` onto `target` (an fd), read-only from the start
/// when `readonly`: the copy is made detached, adjusted, then attached (new mount API).
/// `propagation` (an `MS_*` type, 0 for none) is set on every mount of the copy.
fn bind_onto(
    source: &Path,
    target: BorrowedFd<'_>,
    shown: &Path,
    readonly: bool,
    propagation: u64,
) -> Res<()> {
    let what = || format!("bind-mount {} on {}", source.display(), shown.display());
    let tree = clone_tree(None, &cpath(source)?).ctx(what)?;
    if readonly || propagation != 0 {
        set_tree_attributes(tree.as_fd(), readonly, propagation)
            .ctx(|| format!("{}: set read-only/propagation", what()))?;
    }
    move_mount_onto(tree.as_fd(), target).ctx(what)
}

fn propagation_flag(p: Propagation) -> MsFlags {
    match p {
        Propagation::Private => MsFlags::MS_PRIVATE,
        Propagation::Slave => MsFlags::MS_SLAVE,
        Propagation::Shared => MsFlags::MS_SHARED,
    }
}

/// Make the mount `dir` is on private (runc's rootfsParentMountPrivate), so that the rootfs
/// mounted there never propagates to the host while the rest of `/` stays rslave/rshared.
fn make_parent_mount_private(dir: &Path) -> Res<()> {
    let mut p = Some(dir);
    while let Some(d) = p {
        match mount(NONE, d, NONE, MsFlags::MS_PRIVATE, NONE) {
            Ok(()) => return Ok(()),
            // Not a mount point: try its parent.
            Err(Errno::EINVAL) => p = d.parent(),
            Err(e) => return Err(e).ctx(|| format!("make the mount of {} private", d.display())),
        }
    }
    Err(Fail(format!("no mount found above {}", dir.display())))
}

/// A mounted rootfs: an fd of its top directory, every container path resolved from it.
struct Rootfs {
    fd: OwnedFd,
    path: PathBuf,
}

impl Rootfs {
    fn open(path: &Path) -> Res<Rootfs> {
        let fd = open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open rootfs {}", path.display()))?;
        Ok(Rootfs {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// An fd of the container path `dest`, created (a directory, or an empty file unless
    /// `dir`) when missing.
    fn mount_point(&self, dest: &Path, dir: bool) -> Res<OwnedFd> {
        let create = if dir { Create::Dir } else { Create::File };
        open_in_rootfs(self.fd.as_fd(), dest, create)
            .ctx(|| {
                format!(
                    "mount point {} in rootfs {}",
                    dest.display(),
                    self.path.display()
                )
            })?
            .ok_or_else(|| Fail(format!("mount point {} was not created", dest.display())))
    }
}

/// Mount everything under `rootfs.merged`; the caller then calls [`pivot_into`].
pub fn prepare_rootfs(spec: &ContainerSpec) -> Res<()> {
    // As runc: / is rprivate unless a bind needs propagation (rslave when one is
    // host-to-container, rshared when one is bidirectional); the rootfs is then made on a
    // private mount all the same.
    let root_propagation = spec
        .mounts
        .iter()
        .map(|m| m.propagation)
        .max()
        .unwrap_or_default();
    mount(
        NONE,
        "/",
        NONE,
        MsFlags::MS_REC | propagation_flag(root_propagation),
        NONE,
    )
    .ctx(|| format!("make / r{root_propagation:?} in the container mount namespace"))?;
    if root_propagation != Propagation::Private {
        make_parent_mount_private(&spec.rootfs.merged)?;
    }
    mount_overlay(&spec.rootfs)?;
    let root = Rootfs::open(&spec.rootfs.merged)?;
    let common = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = Path::new("/proc");
    let proc = root.mount_point(proc_dir, true)?;
    mount_fs("proc", proc.as_fd(), proc_dir, common, None)?;
    mount_dev(&root, spec.shm_dir.as_deref())?;
    let sys_dir = Path::new("/sys");
    let sys = root.mount_point(sys_dir, true)?;
    let sys_flags = if spec.identity.privileged {
        common
    } else {
        common | MsFlags::MS_RDONLY
    };
    mount_fs("sysfs", sys.as_fd(), sys_dir, sys_flags, None)?;
    for m in &spec.mounts {
        bind_mount(&root, m)?;
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

/// An `O_PATH` fd of `name` in the directory `dir`, not following a symlink.
fn child(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Res<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {}/{name}", shown.display()))
}

fn mount_dev(root: &Rootfs, shm_dir: Option<&Path>) -> Res<()> {
    let shown = Path::new("/dev");
    let under = root.mount_point(shown, true)?;
    mount_fs(
        "tmpfs",
        under.as_fd(),
        shown,
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    drop(under);
    // The fd above is the directory under the new tmpfs: open the tmpfs itself, and make sure.
    let dev = root.mount_point(shown, true)?;
    match fstatfs(&dev) {
        Ok(st) if st.filesystem_type() == TMPFS_MAGIC => {}
        _ => {
            return Err(Fail(
                "the container's /dev is not the tmpfs just mounted".into(),
            ))
        }
    }
    let dev = dev.as_fd();
    for (name, major, minor) in DEVICES {
        let made = mknodat(
            dev,
            name,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            libc::makedev(major as u32, minor as u32),
        );
        if made == Err(Errno::EPERM) {
            // No CAP_MKNOD (e.g. in a user namespace): bind the host's node instead.
            openat(
                dev,
                name,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o666),
            )
            .ctx(|| format!("create /dev/{name}"))?;
            let node = child(dev, name, shown)?;
            let host = Path::new("/dev").join(name);
            bind_onto(&host, node.as_fd(), &host, false, 0)?;
        } else {
            made.ctx(|| format!("mknod /dev/{name}"))?;
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        symlinkat(target, dev, name).ctx(|| format!("symlink /dev/{name}"))?;
    }
    let mkdir = |name: &str| -> Res<OwnedFd> {
        mkdirat(dev, name, Mode::from_bits_truncate(0o755))
            .ctx(|| format!("create /dev/{name}"))?;
        child(dev, name, shown)
    };
    let pts = mkdir("pts")?;
    mount_fs(
        "devpts",
        pts.as_fd(),
        Path::new("/dev/pts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = mkdir("shm")?;
    let shm_shown = Path::new("/dev/shm");
    let common = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match shm_dir {
        Some(pod_shm) => bind_onto(pod_shm, shm.as_fd(), shm_shown, false, 0)?,
        None => mount(
            Some("shm"),
            fd_path(shm.as_fd()).as_str(),
            Some("tmpfs"),
            common,
            Some("mode=1777,size=65536k"),
        )
        .ctx(|| "mount tmpfs on /dev/shm")?,
    }
    // mqueue shows the IPC namespace of the mounter: the pod's, joined before.
    let mqueue = mkdir("mqueue")?;
    mount_fs(
        "mqueue",
        mqueue.as_fd(),
        Path::new("/dev/mqueue"),
        common,
        None,
    )
}

fn bind_mount(root: &Rootfs, m: &BindMount) -> Res<()> {
    let meta =
        fs::metadata(&m.source).ctx(|| format!("bind mount source {}", m.source.display()))?;
    let target = root.mount_point(&m.destination, meta.is_dir())?;
    let propagation = propagation_flag(m.propagation).bits();
    bind_onto(
        &m.source,
        target.as_fd(),
        &m.destination,
        m.readonly,
        propagation,
    )
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
/// resolve inside the new root, from an fd, and the mounts go onto the fds they resolved to;
/// missing ones are skipped.
pub fn restrict_paths(masked: &[String], readonly_paths: &[String]) -> Res<()> {
    let root = Rootfs::open(Path::new("/"))?;
    let existing = |p: &str| -> Res<Option<OwnedFd>> {
        open_in_rootfs(root.fd.as_fd(), Path::new(p), Create::Nothing).ctx(|| format!("open {p}"))
    };
    for p in readonly_paths {
        let Some(fd) = existing(p)? else { continue };
        let tree = clone_tree(Some(fd.as_fd()), c"").ctx(|| format!("bind-mount {p} on itself"))?;
        set_tree_attributes(tree.as_fd(), true, 0).ctx(|| format!("make {p} read-only"))?;
        move_mount_onto(tree.as_fd(), fd.as_fd()).ctx(|| format!("bind-mount {p} read-only"))?;
    }
    for p in masked {
        let Some(fd) = existing(p)? else { continue };
        let is_dir = fstat(&fd)
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
            .ctx(|| format!("stat {p}"))?;
        if is_dir {
            mount(
                Some("tmpfs"),
                fd_path(fd.as_fd()).as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                NONE,
            )
            .ctx(|| format!("mask {p} with a read-only tmpfs"))?
        } else {
            bind_onto(Path::new("/dev/null"), fd.as_fd(), Path::new(p), false, 0)?
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
