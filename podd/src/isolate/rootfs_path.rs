//! Resolve a container path inside a rootfs on the host, following symlinks only within it:
//! `..` never climbs above the rootfs and an absolute symlink target starts again at the
//! rootfs, as if the rootfs were `/`. So an image whose `/etc` is a symlink to `/host-etc` or
//! `../../etc` cannot make a bind mount land on the host's files.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed in one resolution, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

enum Part {
    Up,
    Name(OsString),
}

fn parts(path: &Path) -> impl Iterator<Item = Part> + '_ {
    path.components().filter_map(|c| match c {
        Component::ParentDir => Some(Part::Up),
        Component::Normal(n) => Some(Part::Name(n.to_owned())),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Host path of the container path `path` in the rootfs at `root`. Components that do not
/// exist yet are appended as they are (the caller creates them).
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut pending: VecDeque<Part> = parts(path).collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut followed = 0;
    while let Some(part) = pending.pop_front() {
        let name = match part {
            Part::Up => {
                resolved.pop();
                continue;
            }
            Part::Name(name) => name,
        };
        let mut candidate: PathBuf = root
            .iter()
            .chain(resolved.iter().map(|s| s.as_os_str()))
            .collect();
        candidate.push(&name);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links at {}",
                        candidate.display()
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.has_root() {
                    resolved.clear();
                }
                for p in parts(&target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(p);
                }
            }
            Ok(_) => resolved.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved.push(name),
            Err(e) => return Err(e),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(resolved);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        dir
    }

    #[test]
    fn plain_path() {
        let r = rootfs();
        let got = resolve_in_root(r.path(), Path::new("/etc/hosts")).unwrap();
        assert_eq!(got, r.path().join("etc/hosts"));
    }

    #[test]
    fn symlink_to_slash_stays_in_root() {
        let r = rootfs();
        symlink("/", r.path().join("up")).unwrap();
        let got = resolve_in_root(r.path(), Path::new("/up/etc/passwd")).unwrap();
        assert_eq!(got, r.path().join("etc/passwd"));
    }

    #[test]
    fn dotdot_symlink_cannot_escape() {
        let r = rootfs();
        symlink("../..", r.path().join("etc/escape")).unwrap();
        let got = resolve_in_root(r.path(), Path::new("/etc/escape/etc/shadow")).unwrap();
        assert_eq!(got, r.path().join("etc/shadow"));
        let got = resolve_in_root(r.path(), Path::new("/../../../etc")).unwrap();
        assert_eq!(got, r.path().join("etc"));
    }

    #[test]
    fn absolute_symlink_is_relative_to_root() {
        let r = rootfs();
        // An image's /lib -> /usr/lib, and an /etc/mtab-style link to an absolute file.
        symlink("/usr/lib", r.path().join("lib")).unwrap();
        symlink("/etc", r.path().join("usr/lib/conf")).unwrap();
        let got = resolve_in_root(r.path(), Path::new("/lib/conf/resolv.conf")).unwrap();
        assert_eq!(got, r.path().join("etc/resolv.conf"));
    }

    #[test]
    fn relative_symlink_and_missing_tail() {
        let r = rootfs();
        symlink("usr/lib", r.path().join("lib")).unwrap();
        let got = resolve_in_root(r.path(), Path::new("lib/new/dir")).unwrap();
        assert_eq!(got, r.path().join("usr/lib/new/dir"));
    }

    #[test]
    fn final_symlink_is_followed() {
        let r = rootfs();
        symlink("/etc/real-hosts", r.path().join("etc/hosts")).unwrap();
        let got = resolve_in_root(r.path(), Path::new("/etc/hosts")).unwrap();
        assert_eq!(got, r.path().join("etc/real-hosts"));
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let r = rootfs();
        symlink("/b", r.path().join("a")).unwrap();
        symlink("/a", r.path().join("b")).unwrap();
        assert!(resolve_in_root(r.path(), Path::new("/a/x")).is_err());
    }
}
