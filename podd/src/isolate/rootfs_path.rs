//! Open a container path inside a rootfs, following symlinks only within it: `..` never climbs
//! above the rootfs and an absolute symlink target starts again at the rootfs, as if the rootfs
//! were `/`. So an image whose `/etc` is a symlink to `/host-etc` or `../../etc` cannot make a
//! mount land on the host's files.
//!
//! Every step is done by the kernel on file descriptors (`openat2(RESOLVE_IN_ROOT)` from an fd
//! of the rootfs, `mkdirat`/`openat` in an fd of the parent) and the caller mounts onto the fd
//! it gets back, never onto a path: a container that shares a volume with this one and swaps a
//! directory for a symlink between the check and the mount (runc's CVE-2021-30465) can at most
//! move the mount elsewhere inside this rootfs.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

use super::syscall::open_in_root;

/// Most dangling symlinks followed by hand in one resolution, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

/// What to create when the path (or a directory on the way) is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing path is `Ok(None)`.
    Nothing,
    /// Directories all the way.
    Dir,
    /// Directories on the way, an empty regular file last.
    File,
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::other(format!("path {} has a NUL byte", p.display())))
}

/// An `O_PATH` fd of the container path `path` in the rootfs open at `root` (any fd of its top
/// directory), creating what is missing as `create` says. Symlinks are followed, the last
/// one too, but only inside the rootfs; what a dangling symlink points at is created (inside
/// the rootfs).
pub fn open_in_rootfs(
    root: BorrowedFd<'_>,
    path: &Path,
    create: Create,
) -> io::Result<Option<OwnedFd>> {
    let mut path = path.to_path_buf();
    let mut followed = 0;
    'restart: loop {
        let names: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                Component::ParentDir => Some(OsStr::new("..")),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            })
            .collect();
        let mut current = open_in_root(root, c".")?;
        let mut prefix = PathBuf::new();
        for (i, name) in names.iter().enumerate() {
            prefix.push(name);
            let c = cstring(&prefix)?;
            current = match open_in_root(root, &c) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create == Create::Nothing => return Ok(None),
                Err(Errno::ENOENT) => {
                    let file = create == Create::File && i + 1 == names.len();
                    make(current.as_fd(), name, file)?;
                    match open_in_root(root, &c) {
                        Ok(fd) => fd,
                        Err(Errno::ENOENT) => {
                            // `name` is a dangling symlink: create its target, inside the
                            // root, as runc's securejoin + MkdirAll do. Start again on the
                            // path with the link replaced by its target.
                            followed += 1;
                            if followed > MAX_SYMLINKS {
                                return Err(Errno::ELOOP.into());
                            }
                            let target = readlinkat(current.as_fd(), *name)?;
                            let mut next = prefix.parent().unwrap_or(Path::new("")).to_path_buf();
                            next.push(target); // an absolute target replaces the prefix
                            next.extend(&names[i + 1..]);
                            path = next;
                            continue 'restart;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            };
        }
        return Ok(Some(current));
    }
}

/// Create `name` in the directory `parent` (an empty file when `file`); one already there,
/// made by a racing creator, is fine.
fn make(parent: BorrowedFd<'_>, name: &OsStr, file: bool) -> io::Result<()> {
    let made = if file {
        openat(
            parent,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop)
    } else {
        mkdirat(parent, name, Mode::from_bits_truncate(0o755))
    };
    match made {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::symlink;

    fn rootfs() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        let fd = std::fs::File::open(dir.path()).unwrap().into();
        (dir, fd)
    }

    /// Where `path` landed on the host, as the kernel names the fd.
    fn open(root: &OwnedFd, path: &str, create: Create) -> io::Result<Option<PathBuf>> {
        let fd = open_in_rootfs(root.as_fd(), Path::new(path), create)?;
        Ok(fd.map(|fd| std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()))
    }

    #[test]
    fn plain_path_and_missing_ones() {
        let (r, fd) = rootfs();
        assert_eq!(
            open(&fd, "/etc", Create::Nothing).unwrap(),
            Some(r.path().join("etc"))
        );
        assert_eq!(open(&fd, "/etc/hosts", Create::Nothing).unwrap(), None);
        assert_eq!(open(&fd, "/nope/hosts", Create::Nothing).unwrap(), None);
        assert!(
            !r.path().join("nope").exists(),
            "Nothing created a directory"
        );
    }

    #[test]
    fn creates_directories_and_a_file() {
        let (r, fd) = rootfs();
        let got = open(&fd, "/data/a/b", Create::Dir).unwrap();
        assert_eq!(got, Some(r.path().join("data/a/b")));
        assert!(r.path().join("data/a/b").is_dir());
        let got = open(&fd, "/conf/x.conf", Create::File).unwrap();
        assert_eq!(got, Some(r.path().join("conf/x.conf")));
        assert!(r.path().join("conf/x.conf").is_file());
        assert!(r.path().join("conf").is_dir());
    }

    #[test]
    fn parent_symlink_to_slash_stays_in_root() {
        let (r, fd) = rootfs();
        symlink("/", r.path().join("up")).unwrap();
        let got = open(&fd, "/up/etc/passwd", Create::File).unwrap();
        assert_eq!(got, Some(r.path().join("etc/passwd")));
        let got = open(&fd, "/up/tmp/mnt", Create::Dir).unwrap();
        assert_eq!(got, Some(r.path().join("tmp/mnt")));
    }

    #[test]
    fn parent_dotdot_symlink_cannot_escape() {
        let (r, fd) = rootfs();
        symlink("../..", r.path().join("etc/escape")).unwrap();
        let got = open(&fd, "/etc/escape/etc/shadow", Create::File).unwrap();
        assert_eq!(got, Some(r.path().join("etc/shadow")));
        let got = open(&fd, "/etc/escape/escaped", Create::Dir).unwrap();
        assert_eq!(got, Some(r.path().join("escaped")));
        let got = open(&fd, "/../../../etc", Create::Nothing).unwrap();
        assert_eq!(got, Some(r.path().join("etc")));
        let outside = r.path().parent().unwrap();
        assert!(!outside.join("escaped").exists() && !outside.join("etc/shadow").exists());
    }

    #[test]
    fn absolute_symlink_is_relative_to_root() {
        let (r, fd) = rootfs();
        // An image's /lib -> /usr/lib, and an /etc/mtab-style link to an absolute path.
        symlink("/usr/lib", r.path().join("lib")).unwrap();
        symlink("/etc", r.path().join("usr/lib/conf")).unwrap();
        let got = open(&fd, "/lib/conf/resolv.conf", Create::File).unwrap();
        assert_eq!(got, Some(r.path().join("etc/resolv.conf")));
    }

    #[test]
    fn relative_symlink_and_missing_tail() {
        let (r, fd) = rootfs();
        symlink("usr/lib", r.path().join("lib")).unwrap();
        let got = open(&fd, "lib/new/dir", Create::Dir).unwrap();
        assert_eq!(got, Some(r.path().join("usr/lib/new/dir")));
    }

    #[test]
    fn final_symlink_is_followed_inside() {
        let (r, fd) = rootfs();
        std::fs::write(r.path().join("etc/real-hosts"), "").unwrap();
        symlink("/etc/real-hosts", r.path().join("etc/hosts")).unwrap();
        let got = open(&fd, "/etc/hosts", Create::File).unwrap();
        assert_eq!(got, Some(r.path().join("etc/real-hosts")));
    }

    #[test]
    fn dangling_symlink_out_of_the_root_is_created_inside() {
        let (r, fd) = rootfs();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("made-by-podd");
        symlink(&target, r.path().join("etc/hosts")).unwrap();
        let got = open(&fd, "/etc/hosts", Create::File).unwrap().unwrap();
        assert!(got.starts_with(r.path()), "{got:?}");
        assert!(!target.exists(), "a file was created outside the rootfs");
        symlink("../../../../gone", r.path().join("usr/lib/up")).unwrap();
        let got = open(&fd, "/usr/lib/up/deeper", Create::Dir).unwrap();
        assert_eq!(got, Some(r.path().join("gone/deeper")));
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let (r, fd) = rootfs();
        symlink("/b", r.path().join("a")).unwrap();
        symlink("/a", r.path().join("b")).unwrap();
        assert!(open(&fd, "/a/x", Create::Dir).is_err());
    }

    #[test]
    fn proc_self_root_links_resolve_inside() {
        let (r, fd) = rootfs();
        symlink("/proc/self/root", r.path().join("host")).unwrap();
        // Inside the rootfs "/proc/self/root" is an ordinary path, never the host's /.
        let got = open(&fd, "/host/x", Create::Dir).unwrap();
        assert_eq!(got, Some(r.path().join("proc/self/root/x")));
    }
}
