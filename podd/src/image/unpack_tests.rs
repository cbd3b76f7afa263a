//! Tests of the layer unpacker: hostile archives are refused with the host unchanged, the
//! ordinary entry kinds keep their metadata, whiteouts become overlay whiteouts.
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A header with raw name/link bytes, bypassing the tar crate's own path checks so hostile
/// archives can be built.
fn header(kind: EntryType, path: &str, link: Option<&str>, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h.set_uid(nix::unistd::geteuid().as_raw().into());
    h.set_gid(nix::unistd::getegid().as_raw().into());
    let old = h.as_old_mut();
    old.name.fill(0);
    old.name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(link) = link {
        old.linkname.fill(0);
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    h
}

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
}

fn build(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p, m) => b.append(&header(EntryType::Directory, p, None, 0, *m), &[][..]),
            E::File(p, data, m) => b.append(
                &header(EntryType::Regular, p, None, data.len() as u64, *m),
                *data,
            ),
            E::Symlink(p, t) => {
                b.append(&header(EntryType::Symlink, p, Some(t), 0, 0o777), &[][..])
            }
            E::Hardlink(p, t) => b.append(&header(EntryType::Link, p, Some(t), 0, 0o644), &[][..]),
            E::Fifo(p) => b.append(&header(EntryType::Fifo, p, None, 0, 0o640), &[][..]),
        }
        .unwrap();
    }
    b.into_inner().unwrap()
}

/// A scratch area: `layer/` (the unpack target) beside `outside/passwd` (stands for the host).
struct Scratch {
    _dir: tempfile::TempDir,
    layer: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    let outside = dir.path().join("outside");
    fs::create_dir(&layer).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("passwd"), b"root:x:0:0\n").unwrap();
    Scratch {
        _dir: dir,
        layer,
        outside,
    }
}

fn unpack(data: &[u8], target: &Path) -> Result<(), ImageError> {
    unpack_tar(data, target, "test-layer").map(|_| ())
}

/// Asserts the archive is refused as unsafe and nothing outside the layer changed.
fn assert_refused(s: &Scratch, data: &[u8]) {
    let err = unpack(data, &s.layer).expect_err("hostile layer must be refused");
    assert!(
        matches!(err, ImageError::UnsafeLayerEntry { .. }),
        "unexpected error: {err}"
    );
    assert_eq!(fs::read(s.outside.join("passwd")).unwrap(), b"root:x:0:0\n");
    let names: Vec<_> = fs::read_dir(&s.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["passwd"], "nothing may appear outside the layer");
    assert_eq!(fs::metadata(s.outside.join("passwd")).unwrap().nlink(), 1);
    let parent: Vec<_> = fs::read_dir(s.layer.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        parent.len(),
        2,
        "nothing may appear beside the layer: {parent:?}"
    );
}

#[test]
fn components_refuse_absolute_and_dotdot() {
    assert_eq!(
        components(b"./a//b/").unwrap(),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    assert!(components(b"./").unwrap().is_empty());
    assert!(components(b"/etc/passwd").is_err());
    assert!(components(b"a/../../x").is_err());
    assert!(components(b"..").is_err());
}

#[test]
fn refuses_parent_dir_entry() {
    let s = scratch();
    assert_refused(&s, &build(&[E::File("../outside/pwned", b"x", 0o644)]));
    assert_refused(&s, &build(&[E::File("a/../../outside/pwned", b"x", 0o644)]));
}

#[test]
fn refuses_absolute_entry() {
    let s = scratch();
    let abs = format!("{}/pwned", s.outside.display());
    assert_refused(&s, &build(&[E::File(&abs, b"x", 0o644)]));
}

#[test]
fn refuses_write_through_symlink() {
    let s = scratch();
    let outside = s.outside.display().to_string();
    assert_refused(
        &s,
        &build(&[
            E::Symlink("a", &outside),
            E::File("a/passwd", b"pwned", 0o644),
        ]),
    );
    let s = scratch();
    assert_refused(
        &s,
        &build(&[
            E::Symlink("a", "../outside"),
            E::File("a/passwd", b"pwned", 0o644),
        ]),
    );
    let s = scratch();
    assert_refused(
        &s,
        &build(&[
            E::Symlink("etc", "/etc"),
            E::File("etc/passwd", b"pwned", 0o644),
        ]),
    );
    let s = scratch();
    assert_refused(
        &s,
        &build(&[E::Symlink("a", &outside), E::Dir("a/sub", 0o755)]),
    );
}

#[test]
fn refuses_symlink_chain_escape() {
    let s = scratch();
    let data = build(&[
        E::Symlink("a", "."),
        E::Symlink("b", "a/../.."),
        E::Symlink("c", "b/outside"),
        E::File("c/passwd", b"pwned", 0o644),
    ]);
    assert_refused(&s, &data);
}

#[test]
fn refuses_hardlink_outside() {
    let s = scratch();
    assert_refused(&s, &build(&[E::Hardlink("h", "/etc/passwd")]));
    let s = scratch();
    assert_refused(&s, &build(&[E::Hardlink("h", "../outside/passwd")]));
    let s = scratch();
    let outside = s.outside.display().to_string();
    assert_refused(
        &s,
        &build(&[E::Symlink("s", &outside), E::Hardlink("h", "s/passwd")]),
    );
    // A hard link to a symlink that points out is refused too (not a regular file).
    let s = scratch();
    let target = format!("{outside}/passwd");
    assert_refused(
        &s,
        &build(&[E::Symlink("l", &target), E::Hardlink("h", "l")]),
    );
    // A target not in the layer is refused.
    let s = scratch();
    assert_refused(&s, &build(&[E::Hardlink("h", "etc/passwd")]));
}

#[test]
fn entry_replacing_symlink_does_not_follow_it() {
    let s = scratch();
    let target = format!("{}/passwd", s.outside.display());
    unpack(
        &build(&[E::Symlink("p", &target), E::File("p", b"inside", 0o644)]),
        &s.layer,
    )
    .unwrap();
    assert_eq!(fs::read(s.layer.join("p")).unwrap(), b"inside");
    assert!(!fs::symlink_metadata(s.layer.join("p"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(s.outside.join("passwd")).unwrap(), b"root:x:0:0\n");
}

#[test]
fn unpacks_ordinary_entries_with_metadata() {
    let s = scratch();
    let data = build(&[
        E::Dir("./", 0o755),
        E::Dir("bin/", 0o755),
        E::File("bin/tool", b"#!/bin/sh\n", 0o4755),
        E::Hardlink("bin/tool2", "bin/tool"),
        E::Symlink("bin/sh", "/bin/tool"),
        E::File("deep/implicit/file", b"x", 0o600),
        E::Dir("ro/", 0o555),
        E::File("ro/inside", b"y", 0o444),
        E::Fifo("fifo"),
    ]);
    unpack(&data, &s.layer).unwrap();
    let tool = fs::metadata(s.layer.join("bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(tool.mtime(), 1_600_000_000);
    assert_eq!(tool.nlink(), 2);
    assert_eq!(
        fs::metadata(s.layer.join("bin/tool2")).unwrap().ino(),
        tool.ino()
    );
    assert_eq!(
        fs::read_link(s.layer.join("bin/sh")).unwrap(),
        Path::new("/bin/tool")
    );
    assert_eq!(fs::read(s.layer.join("deep/implicit/file")).unwrap(), b"x");
    assert_eq!(
        fs::metadata(s.layer.join("deep"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    let ro = fs::metadata(s.layer.join("ro")).unwrap();
    assert_eq!(ro.permissions().mode() & 0o7777, 0o555);
    assert_eq!(
        ro.mtime(),
        1_600_000_000,
        "dir mtime set after its children"
    );
    assert!(fs::metadata(s.layer.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn keeps_ownership_devices_and_xattrs_as_root() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = scratch();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Regular, "owned", None, 1, 0o644);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_cksum();
    b.append(&h, &b"z"[..]).unwrap();
    let mut h = header(EntryType::Char, "null", None, 0, 0o666);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    b.append_pax_extensions([("SCHILY.xattr.user.test", &b"v"[..])])
        .unwrap();
    b.append(
        &header(EntryType::Regular, "withx", None, 0, 0o644),
        &[][..],
    )
    .unwrap();
    b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.redirect", &b"/x"[..])])
        .unwrap();
    b.append(
        &header(EntryType::Regular, "noredirect", None, 0, 0o644),
        &[][..],
    )
    .unwrap();
    unpack(&b.into_inner().unwrap(), &s.layer).unwrap();

    let owned = fs::metadata(s.layer.join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
    let null = fs::metadata(s.layer.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), makedev(1, 3));
    assert_eq!(null.permissions().mode() & 0o777, 0o666);
    // user.* xattrs need a file system that supports them (tmpfs before 6.6 does not).
    if let Ok(v) = xattr::get(s.layer.join("withx"), "user.test") {
        assert!(v.is_none() || v.as_deref() == Some(&b"v"[..]));
    }
    assert_eq!(
        xattr::get(s.layer.join("noredirect"), "trusted.overlay.redirect").unwrap(),
        None
    );
}

#[test]
fn converts_whiteouts_and_opaque_dirs() {
    if !is_root() {
        eprintln!("skipped: needs root (mknod of whiteouts, trusted.* xattrs)");
        return;
    }
    let s = scratch();
    let data = build(&[
        E::Dir("etc/", 0o755),
        E::File("etc/.wh.hosts", b"", 0o644),
        E::Dir("var/cache/", 0o755),
        E::File("var/cache/.wh..wh..opq", b"", 0o644),
        E::File(".wh.gone", b"", 0o644),
    ]);
    unpack(&data, &s.layer).unwrap();
    for w in ["etc/hosts", "gone"] {
        let m = fs::symlink_metadata(s.layer.join(w)).unwrap();
        assert!(m.file_type().is_char_device(), "{w} is a whiteout");
        assert_eq!(m.rdev(), 0, "{w} is 0:0");
    }
    assert!(!s.layer.join("etc/.wh.hosts").exists());
    assert!(!s.layer.join("var/cache/.wh..wh..opq").exists());
    assert_eq!(
        xattr::get(s.layer.join("var/cache"), OPAQUE_XATTR)
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn refuses_whiteout_of_dotdot() {
    let s = scratch();
    assert_refused(&s, &build(&[E::File(".wh...", b"", 0o644)]));
}

#[test]
fn hard_link_keeps_its_content_when_the_target_is_replaced_later() {
    let s = scratch();
    unpack(
        &build(&[
            E::File("a", b"old", 0o644),
            E::Hardlink("b", "a"),
            E::File("a", b"new", 0o644),
        ]),
        &s.layer,
    )
    .unwrap();
    // As tar (and docker) extract it: the link shares the first file, the later entry
    // replaces the name only.
    assert_eq!(fs::read(s.layer.join("b")).unwrap(), b"old");
    assert_eq!(fs::read(s.layer.join("a")).unwrap(), b"new");
    assert_eq!(fs::metadata(s.layer.join("b")).unwrap().nlink(), 1);
}

#[test]
fn hard_link_through_a_dotdot_or_absolute_target_is_refused() {
    let s = scratch();
    assert_refused(
        &s,
        &build(&[
            E::Dir("d", 0o755),
            E::Hardlink("d/h", "d/../../outside/passwd"),
        ]),
    );
    let s = scratch();
    assert_refused(&s, &build(&[E::File("./../x", b"x", 0o644)]));
    let s = scratch();
    assert_refused(&s, &build(&[E::Dir("/abs", 0o755)]));
}
