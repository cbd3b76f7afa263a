//! Safe unpacking of one layer tar into its own directory, ready to be an overlayfs lower
//! layer.
//!
//! Every path is created by walking from a descriptor of the target directory one component
//! at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`, so a symlink already in the layer is
//! never followed; entries with absolute paths or `..` are refused, and hard links must name a
//! regular file already unpacked in this layer. Whiteouts `.wh.NAME` become overlay whiteouts
//! (a 0:0 character device `NAME`) and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
//! directory.
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;
use tracing::{debug, warn};

use super::error::ImageError;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Unpacks the tar stream `reader` into the existing, empty directory `target`.
/// `layer` names the layer in error messages. Returns the reader, positioned after the
/// tar's last entry, so the caller can hash the rest of the stream.
pub(crate) fn unpack_tar<R: Read>(reader: R, target: &Path, layer: &str) -> Result<R, ImageError> {
    let root = openat(
        nix::fcntl::AT_FDCWD,
        target,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::io("open layer directory", target, e.into()))?;
    let mut unpacker = Unpacker {
        root,
        layer,
        is_root: nix::unistd::geteuid().is_root(),
        dirs: Vec::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| unpacker.err("", "read tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpacker.err("", "read tar entry", e))?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish_dirs()?;
    Ok(archive.into_inner())
}

/// Splits a tar path into its components, refusing absolute paths and `..`.
/// `./a//b/` gives `[a, b]`; `./` gives `[]` (the layer root).
fn components(path: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if path.first() == Some(&b'/') {
        return Err("has an absolute path".into());
    }
    let mut out = Vec::new();
    for comp in path.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("has a \"..\" path component".into()),
            c if c.contains(&0) => return Err("has a NUL byte in its path".into()),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// A directory whose mode and mtime are set after all entries are written, so that
/// read-only directories can still be filled and mtimes are not changed by later entries.
struct DirMeta {
    components: Vec<Vec<u8>>,
    mode: u32,
    mtime: i64,
}

/// Entry metadata read from the tar header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker<'a> {
    root: OwnedFd,
    layer: &'a str,
    is_root: bool,
    dirs: Vec<DirMeta>,
}

impl Unpacker<'_> {
    fn err(&self, entry: &str, op: &'static str, source: io::Error) -> ImageError {
        ImageError::Unpack {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            op,
            source,
        }
    }

    fn sys(&self, entry: &str, op: &'static str) -> impl Fn(Errno) -> ImageError + '_ {
        let entry = entry.to_string();
        move |e| self.err(&entry, op, e.into())
    }

    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeLayerEntry {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let comps = components(&raw_path).map_err(|r| self.refuse(&shown, r))?;
        let meta = self.meta(entry, &shown)?;

        let Some((name, parents)) = comps.split_last() else {
            if kind == EntryType::Directory {
                // "./": metadata of the layer root itself.
                let root = self
                    .root
                    .try_clone()
                    .map_err(|e| self.err(&shown, "dup", e))?;
                self.chown_fd(&root, &meta, &shown)?;
                self.dirs.push(DirMeta {
                    components: Vec::new(),
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
                return Ok(());
            }
            return Err(self.refuse(&shown, "has an empty path but is not a directory"));
        };

        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(parents, name, target, &shown);
        }

        let parent = self.open_dir(parents, true, &shown)?;
        match kind {
            EntryType::Directory => self.directory(&parent, comps.clone(), meta, &shown),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(&parent, name, entry, meta, &shown)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&shown, "is a symlink without a target"))?
                    .into_owned();
                self.symlink(&parent, name, &target, meta, &shown)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&shown, "is a hard link without a target"))?
                    .into_owned();
                self.hardlink(&parent, name, &target, &shown)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (major, minor) = (
                    entry.header().device_major().ok().flatten().unwrap_or(0),
                    entry.header().device_minor().ok().flatten().unwrap_or(0),
                );
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                self.node(
                    &parent,
                    name,
                    sflag,
                    makedev(major.into(), minor.into()),
                    meta,
                    &shown,
                )
            }
            other => {
                warn!(layer = self.layer, entry = %shown, kind = ?other, "skipping tar entry of unsupported type");
                Ok(())
            }
        }
    }

    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<Meta, ImageError> {
        let header = entry.header();
        let bad = |e: io::Error| self.err(shown, "read tar header", e);
        let old = header.as_old();
        let mode = numeric(&old.mode, header.mode().map(u64::from)).map_err(bad)? as u32 & 0o7777;
        let uid = numeric(&old.uid, header.uid()).map_err(bad)?;
        let gid = numeric(&old.gid, header.gid()).map_err(bad)?;
        let mtime = numeric(&old.mtime, header.mtime()).map_err(bad)?;
        let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
            (Ok(u), Ok(g)) => (u, g),
            _ => return Err(self.refuse(shown, format!("has uid/gid {uid}/{gid} out of range"))),
        };
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(bad)? {
            for ext in exts {
                let ext = ext.map_err(bad)?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    if name.starts_with("trusted.overlay.") {
                        // Only podd's own whiteout conversion may set overlay metadata.
                        warn!(layer = self.layer, entry = %shown, xattr = name, "dropping overlay xattr from layer");
                        continue;
                    }
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime: i64::try_from(mtime).unwrap_or(i64::MAX),
            xattrs,
        })
    }

    /// Opens the directory at `comps` below the root without following any symlink,
    /// creating missing directories (mode 0755) when `create` is set.
    fn open_dir(
        &self,
        comps: &[Vec<u8>],
        create: bool,
        shown: &str,
    ) -> Result<OwnedFd, ImageError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut fd = self
            .root
            .try_clone()
            .map_err(|e| self.err(shown, "dup", e))?;
        for comp in comps {
            let c = os(comp);
            let next = match openat(&fd, c, flags, Mode::empty()) {
                Err(Errno::ENOENT) if create => {
                    match mkdirat(&fd, c, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.err(shown, "mkdir parent", e.into())),
                    }
                    let next = openat(&fd, c, flags, Mode::empty())
                        .map_err(self.sys(shown, "open parent"))?;
                    fchmod(&next, Mode::from_bits_truncate(0o755))
                        .map_err(self.sys(shown, "chmod parent"))?;
                    next
                }
                Err(Errno::ENOENT) => {
                    return Err(self.refuse(
                        shown,
                        format!("names {:?}, which does not exist in this layer", os(comp)),
                    ))
                }
                Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                    return Err(self.refuse(
                        shown,
                        format!(
                            "passes through {:?}, which is a symlink or not a directory",
                            os(comp)
                        ),
                    ))
                }
                Err(e) => return Err(self.err(shown, "open parent", e.into())),
                Ok(next) => next,
            };
            fd = next;
        }
        Ok(fd)
    }

    /// Makes room for a new entry `name` in `parent`. An existing directory is kept when
    /// `keep_dir` is set (returns true); anything else already there is removed.
    fn clear(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        keep_dir: bool,
        shown: &str,
    ) -> Result<bool, ImageError> {
        let st = match fstatat(parent, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(self.err(shown, "stat existing", e.into())),
            Ok(st) => st,
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            if keep_dir {
                return Ok(true);
            }
            // Through our own descriptor of the parent; remove_dir_all does not follow
            // symlinks below it.
            let path = proc_path(parent, name);
            std::fs::remove_dir_all(&path)
                .map_err(|e| self.err(shown, "remove existing directory", e))?;
        } else {
            unlinkat(parent, os(name), UnlinkatFlags::NoRemoveDir)
                .map_err(self.sys(shown, "remove existing entry"))?;
        }
        Ok(false)
    }

    fn whiteout(
        &self,
        parents: &[Vec<u8>],
        name: &[u8],
        target: &[u8],
        shown: &str,
    ) -> Result<(), ImageError> {
        let parent = self.open_dir(parents, true, shown)?;
        if name == OPAQUE_MARKER {
            let dir = File::from(parent);
            xattr::FileExt::set_xattr(&dir, OPAQUE_XATTR, b"y")
                .map_err(|e| self.err(shown, "set trusted.overlay.opaque (needs root)", e))?;
            return Ok(());
        }
        if name.starts_with(WHITEOUT_META_PREFIX) {
            debug!(layer = self.layer, entry = %shown, "ignoring whiteout metadata entry");
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(self.refuse(shown, "is a whiteout without a valid name"));
        }
        self.clear(&parent, target, false, shown)?;
        mknodat(
            &parent,
            os(target),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(self.sys(shown, "create whiteout device (needs CAP_MKNOD)"))
    }

    fn directory(
        &mut self,
        parent: &OwnedFd,
        comps: Vec<Vec<u8>>,
        meta: Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        let name = comps.last().expect("non-empty");
        if !self.clear(parent, name, true, shown)? {
            mkdirat(parent, os(name), Mode::from_bits_truncate(0o700))
                .map_err(self.sys(shown, "mkdir"))?;
        }
        let fd = openat(
            parent,
            os(name),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.sys(shown, "open directory"))?;
        // Owner write access until finish_dirs sets the real mode.
        fchmod(&fd, Mode::from_bits_truncate(0o700)).map_err(self.sys(shown, "chmod"))?;
        self.chown_fd(&fd, &meta, shown)?;
        self.set_xattrs_fd(File::from(fd), &meta, shown);
        self.dirs.push(DirMeta {
            components: comps,
            mode: meta.mode,
            mtime: meta.mtime,
        });
        Ok(())
    }

    fn regular<R: Read>(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        entry: &mut tar::Entry<'_, R>,
        meta: Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        self.clear(parent, name, false, shown)?;
        let fd = openat(
            parent,
            os(name),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(self.sys(shown, "create file"))?;
        let mut file = File::from(fd);
        io::copy(entry, &mut file).map_err(|e| self.err(shown, "write file", e))?;
        // chown before chmod: chown clears setuid/setgid bits.
        self.chown_fd(&file, &meta, shown)?;
        fchmod(&file, Mode::from_bits_truncate(meta.mode)).map_err(self.sys(shown, "chmod"))?;
        let t = TimeSpec::new(meta.mtime, 0);
        futimens(&file, &t, &t).map_err(self.sys(shown, "set mtime"))?;
        // xattrs last: chown clears security.capability.
        self.set_xattrs_fd(file, &meta, shown);
        Ok(())
    }

    fn symlink(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        target: &[u8],
        meta: Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        if target.contains(&0) {
            return Err(self.refuse(shown, "has a NUL byte in its symlink target"));
        }
        self.clear(parent, name, false, shown)?;
        symlinkat(os(target), parent, os(name)).map_err(self.sys(shown, "symlink"))?;
        self.chown_at(parent, name, &meta, shown)?;
        self.set_xattrs_at(parent, name, &meta, shown);
        let t = TimeSpec::new(meta.mtime, 0);
        utimensat(parent, os(name), &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(self.sys(shown, "set symlink mtime"))
    }

    fn hardlink(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        target: &[u8],
        shown: &str,
    ) -> Result<(), ImageError> {
        let tcomps = components(target)
            .map_err(|r| self.refuse(shown, format!("is a hard link whose target {r}")))?;
        let Some((tname, tparents)) = tcomps.split_last() else {
            return Err(self.refuse(shown, "is a hard link to the layer root"));
        };
        let tparent = self.open_dir(tparents, false, shown)?;
        let st = match fstatat(&tparent, os(tname), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                return Err(self.refuse(shown, "is a hard link to a file not (yet) in this layer"))
            }
            Err(e) => return Err(self.err(shown, "stat hard link target", e.into())),
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(self.refuse(
                shown,
                "is a hard link to something other than a regular file",
            ));
        }
        if let Ok(existing) = fstatat(parent, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            if existing.st_ino == st.st_ino && existing.st_dev == st.st_dev {
                return Ok(());
            }
        }
        self.clear(parent, name, false, shown)?;
        // Flags empty: linkat does not follow a symlink at the old path.
        linkat(&tparent, os(tname), parent, os(name), AtFlags::empty())
            .map_err(self.sys(shown, "hard link"))
    }

    fn node(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        kind: SFlag,
        dev: libc::dev_t,
        meta: Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        self.clear(parent, name, false, shown)?;
        mknodat(parent, os(name), kind, Mode::from_bits_truncate(0o600), dev)
            .map_err(self.sys(shown, "mknod (devices need CAP_MKNOD)"))?;
        self.chown_at(parent, name, &meta, shown)?;
        // The node was just created by us and is not a symlink, so following is harmless.
        fchmodat(
            parent,
            os(name),
            Mode::from_bits_truncate(meta.mode),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(self.sys(shown, "chmod"))?;
        self.set_xattrs_at(parent, name, &meta, shown);
        let t = TimeSpec::new(meta.mtime, 0);
        utimensat(parent, os(name), &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(self.sys(shown, "set mtime"))
    }

    fn chown_fd(&self, fd: impl AsFd, meta: &Meta, shown: &str) -> Result<(), ImageError> {
        if !self.is_root {
            return Ok(()); // an unprivileged unpack keeps the caller's ownership
        }
        fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(self.sys(shown, "chown"))
    }

    fn chown_at(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        if !self.is_root {
            return Ok(());
        }
        fchownat(
            parent,
            os(name),
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(self.sys(shown, "chown"))
    }

    fn set_xattrs_fd(&self, file: File, meta: &Meta, shown: &str) {
        for (name, value) in &meta.xattrs {
            if let Err(e) = xattr::FileExt::set_xattr(&file, name, value) {
                warn!(layer = self.layer, entry = %shown, xattr = %name, error = %e, "cannot set xattr; continuing without it");
            }
        }
    }

    fn set_xattrs_at(&self, parent: &OwnedFd, name: &[u8], meta: &Meta, shown: &str) {
        if meta.xattrs.is_empty() {
            return;
        }
        let path = proc_path(parent, name);
        for (xname, value) in &meta.xattrs {
            // xattr::set uses lsetxattr: the final component is not followed.
            if let Err(e) = xattr::set(&path, xname, value) {
                warn!(layer = self.layer, entry = %shown, xattr = %xname, error = %e, "cannot set xattr; continuing without it");
            }
        }
    }

    /// Applies deferred directory modes and mtimes, deepest first.
    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components.len()));
        for d in dirs {
            let shown = String::from_utf8_lossy(&d.components.join(&b'/')).into_owned();
            // A later entry may have replaced the directory with something else.
            let fd = match self.open_dir(&d.components, false, &shown) {
                Ok(fd) => fd,
                Err(ImageError::UnsafeLayerEntry { .. }) => continue,
                Err(e) => return Err(e),
            };
            fchmod(&fd, Mode::from_bits_truncate(d.mode))
                .map_err(self.sys(&shown, "chmod directory"))?;
            let t = TimeSpec::new(d.mtime, 0);
            futimens(&fd, &t, &t).map_err(self.sys(&shown, "set directory mtime"))?;
        }
        Ok(())
    }
}

/// A numeric header field: an empty field (all NUL or spaces) is 0, as Go's archive/tar
/// (which writes most image layers) reads it; anything else unparseable is an error.
fn numeric(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

/// `/proc/self/fd/<parent>/<name>`: a path to `name` resolved through our own descriptor of
/// its parent, for calls that have no `*at` form.
fn proc_path(parent: &OwnedFd, name: &[u8]) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd()));
    p.push(os(name));
    p
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
