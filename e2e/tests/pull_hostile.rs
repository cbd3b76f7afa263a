//! Hostile layers: entries named `../...` or `/...`, a symlink to a host directory followed by a
//! file written through it (in the same layer and in the next), a hard link to a host file and a
//! write through it. podd may refuse the image or contain the entries in the rootfs; either way
//! the host directory they aim at is unchanged.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use e2e::oci::{Entry, Layer, RunConfig};
use e2e::registry::Registry;
use e2e::Podd;

/// A host directory the hostile entries aim at: `victim` (a file) and `dir/` (empty).
struct Target {
    dir: tempfile::TempDir,
}

impl Target {
    fn new() -> Result<Target> {
        // Short, so that `../` chains plus the path fit in a tar header's 100 bytes.
        let dir = tempfile::Builder::new().prefix("pdh-").tempdir_in("/tmp")?;
        std::fs::write(dir.path().join("victim"), "original\n")?;
        std::fs::create_dir(dir.path().join("dir"))?;
        Ok(Target { dir })
    }
    /// Absolute host path of `name` in the target dir.
    fn abs(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
    /// The same path as a relative name that climbs to `/` from any depth.
    fn climbing(&self, name: &str) -> String {
        format!(
            "{}{}",
            "../".repeat(16),
            self.abs(name).trim_start_matches('/')
        )
    }
    /// Every path under the target with its kind, mode, link count and content.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        snap(self.dir.path(), &mut out);
        out
    }
}

fn snap(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let what = if md.file_type().is_symlink() {
            format!("symlink to {:?}", std::fs::read_link(&p).ok())
        } else if md.is_dir() {
            snap(&p, out);
            "dir".to_string()
        } else {
            format!(
                "{:?}",
                String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default())
            )
        };
        out.insert(
            p,
            format!(
                "{what}, mode {:o}, {} links, uid {}",
                md.mode(),
                md.nlink(),
                md.uid()
            ),
        );
    }
}

/// Pushes one image per case (layers, bottom first), pulls each with one podd, and checks after
/// each pull that the target is unchanged, whether podd contained the entries or refused the
/// image. One image per case, so that a refused first entry does not hide the others.
async fn pull_hostile(hint: &str, target: &Target, cases: Vec<(&str, Vec<Layer>)>) -> Result<()> {
    let reg = Registry::plain()?;
    let podd = Podd::start().await?;
    for (case, layers) in cases {
        let before = target.snapshot();
        let (_layout, pushed) = reg.push_new(hint, &layers, &RunConfig::shell(), &["v1"])?;
        let image = &pushed[0].reference;
        let outcome = podd.pull(image, None).await;
        let after = target.snapshot();
        ensure!(
            before == after,
            "{hint}/{case}: pulling {image} ({}) changed the host directory {}:\nbefore {before:#?}\nafter {after:#?}",
            match &outcome {
                Ok(id) => format!("accepted as {id}"),
                Err(s) => format!("refused: {:?} {}", s.code(), s.message()),
            },
            target.dir.path().display()
        );
        match outcome {
            Ok(_) => eprintln!("{hint}/{case}: podd contained the entries"),
            Err(s) => {
                eprintln!(
                    "{hint}/{case}: podd refused the image: {:?} {}",
                    s.code(),
                    s.message()
                );
                // A refusal is a clear error, never a crash, an internal error or "cannot pull".
                use tonic::Code;
                ensure!(
                    !matches!(
                        s.code(),
                        Code::Unknown | Code::Internal | Code::Unimplemented
                    ),
                    "{hint}/{case}: {image} refused with {:?}: {:?}; want a clear error code",
                    s.code(),
                    s.message()
                );
                ensure!(
                    podd.image_status(image).await?.is_none(),
                    "{hint}/{case}: the refused image {image} is listed"
                );
            }
        }
    }
    Ok(())
}

fn layer(entries: &[Entry]) -> Layer {
    Layer::from_entries(entries).expect("building a test layer")
}

#[tokio::test]
async fn dotdot_entries_stay_inside() -> Result<()> {
    let t = Target::new()?;
    let cases = vec![
        (
            "file",
            vec![layer(&[Entry::file(&t.climbing("dotdot"), "escaped\n")])],
        ),
        (
            "file-below-a-dir",
            vec![layer(&[
                Entry::dir("a"),
                Entry::file(&format!("a/{}", t.climbing("dotdot-from-a")), "escaped\n"),
            ])],
        ),
        (
            "overwrite",
            vec![layer(&[Entry::file(&t.climbing("victim"), "pwned\n")])],
        ),
        ("dir", vec![layer(&[Entry::dir(&t.climbing("dotdot-dir"))])]),
    ];
    pull_hostile("dotdot", &t, cases).await
}

#[tokio::test]
async fn absolute_entries_stay_inside() -> Result<()> {
    let t = Target::new()?;
    let cases = vec![
        (
            "file",
            vec![layer(&[Entry::file(&t.abs("absolute"), "escaped\n")])],
        ),
        (
            "overwrite",
            vec![layer(&[Entry::file(&t.abs("victim"), "pwned\n")])],
        ),
        ("dir", vec![layer(&[Entry::dir(&t.abs("absolute-dir"))])]),
        (
            "symlink",
            vec![layer(&[Entry::symlink(
                &t.abs("absolute-link"),
                "/etc/passwd",
            )])],
        ),
    ];
    pull_hostile("absolute", &t, cases).await
}

#[tokio::test]
async fn writes_through_symlinks_to_host_dirs_stay_inside() -> Result<()> {
    let t = Target::new()?;
    // Symlinks out of the rootfs are legitimate in an image (resolved inside the container);
    // following them while unpacking is the bug.
    let links = || {
        layer(&[
            Entry::symlink("evil", &t.abs("dir")),
            Entry::symlink("rel", &t.climbing("dir")),
            Entry::symlink("victimlink", &t.abs("victim")),
            Entry::symlink("parent", &t.abs("")),
        ])
    };
    let cases = vec![
        (
            "same-layer",
            vec![layer(&[
                Entry::symlink("evil", &t.abs("dir")),
                Entry::file("evil/same-layer", "escaped\n"),
            ])],
        ),
        (
            "same-layer-relative",
            vec![layer(&[
                Entry::symlink("rel", &t.climbing("dir")),
                Entry::file("rel/same-layer-rel", "escaped\n"),
            ])],
        ),
        // A file entry over a symlink replaces the link; it never writes where the link points.
        (
            "file-over-symlink",
            vec![layer(&[
                Entry::symlink("victimlink", &t.abs("victim")),
                Entry::file("victimlink", "pwned\n"),
            ])],
        ),
        (
            "next-layer",
            vec![
                links(),
                layer(&[Entry::file("evil/next-layer", "escaped\n")]),
            ],
        ),
        (
            "next-layer-relative",
            vec![
                links(),
                layer(&[Entry::file("rel/next-layer-rel", "escaped\n")]),
            ],
        ),
        (
            "next-layer-dir",
            vec![links(), layer(&[Entry::dir("evil/next-layer-dir")])],
        ),
        (
            "next-layer-overwrite",
            vec![links(), layer(&[Entry::file("parent/victim", "pwned\n")])],
        ),
        (
            "next-layer-file-over-symlink",
            vec![links(), layer(&[Entry::file("victimlink", "pwned\n")])],
        ),
        (
            "next-layer-symlink",
            vec![
                links(),
                layer(&[Entry::symlink("evil/planted-link", "/etc/shadow")]),
            ],
        ),
        (
            "next-layer-whiteout",
            vec![links(), layer(&[Entry::whiteout("parent/victim")])],
        ),
        (
            "next-layer-opaque",
            vec![links(), layer(&[Entry::opaque("evil")])],
        ),
    ];
    pull_hostile("symlink", &t, cases).await
}

#[tokio::test]
async fn hard_links_to_host_files_stay_inside() -> Result<()> {
    let t = Target::new()?;
    let cases = vec![
        (
            "absolute",
            vec![layer(&[
                Entry::hardlink("hl", &t.abs("victim")),
                Entry::file("hl", "pwned\n"),
            ])],
        ),
        (
            "relative",
            vec![layer(&[
                Entry::hardlink("hl-rel", &t.climbing("victim")),
                Entry::file("hl-rel", "pwned\n"),
            ])],
        ),
        // A hard link to a symlink that points at a host file must not link the host file.
        (
            "via-symlink",
            vec![
                layer(&[Entry::symlink("victimlink", &t.abs("victim"))]),
                layer(&[
                    Entry::hardlink("hl", "victimlink"),
                    Entry::file("hl", "pwned\n"),
                ]),
            ],
        ),
        (
            "via-symlinked-dir",
            vec![
                layer(&[Entry::symlink("parent", &t.abs(""))]),
                layer(&[Entry::hardlink("hl", "parent/victim")]),
            ],
        ),
    ];
    pull_hostile("hardlink", &t, cases).await
}
