//! Test images built byte by byte: tar layers whose entries are written exactly as given (so a
//! test can make hostile ones: `../` names, absolute paths, links out of the rootfs), gzipped,
//! on top of the busybox test image's layer when a test needs a runnable image, written as an
//! OCI image layout that `skopeo copy` pushes to the local registry.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::image;

const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Fixed mtime of every entry: the same entries give the same digests.
const MTIME: u64 = 1_700_000_000;

/// One tar entry. Names and link targets are written into the header as they are, unchecked.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
}

impl Entry {
    pub fn dir(path: &str) -> Entry {
        Entry::Dir {
            path: path.into(),
            mode: 0o755,
        }
    }
    pub fn file(path: &str, data: impl Into<Vec<u8>>) -> Entry {
        Entry::File {
            path: path.into(),
            mode: 0o644,
            data: data.into(),
        }
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::Hardlink {
            path: path.into(),
            target: target.into(),
        }
    }
    /// An OCI whiteout: `dir/.wh.name` deletes `dir/name` of the layers below.
    pub fn whiteout(path: &str) -> Entry {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        Entry::file(&format!("{dir}.wh.{name}"), Vec::new())
    }
    /// An OCI opaque whiteout: hides everything the layers below have in `dir`.
    pub fn opaque(dir: &str) -> Entry {
        Entry::file(&format!("{dir}/.wh..wh..opq"), Vec::new())
    }
}

/// A layer blob: gzipped tar bytes with their digests.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    /// `sha256:` of `blob`.
    pub digest: String,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

impl Layer {
    /// A gzipped tar of `entries`, in the order given.
    pub fn from_entries(entries: &[Entry]) -> Result<Layer> {
        let tar = tar_bytes(entries)?;
        let diff_id = sha256(&tar);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar)?;
        let blob = gz.finish()?;
        Ok(Layer {
            digest: sha256(&blob),
            blob,
            diff_id,
        })
    }

    /// The busybox test image's only layer (busybox, its applets, /etc/passwd, /tmp...).
    pub fn busybox() -> Result<Layer> {
        let layout = image::test_image_layout()?;
        let manifest = read_manifest(&layout)?;
        let config: Value = read_json(&blob_path(
            &layout,
            json_str(&manifest["config"]["digest"])?,
        ))?;
        let digest = json_str(&manifest["layers"][0]["digest"])?.to_string();
        let diff_id = json_str(&config["rootfs"]["diff_ids"][0])?.to_string();
        let blob = std::fs::read(blob_path(&layout, &digest))?;
        Ok(Layer {
            blob,
            digest,
            diff_id,
        })
    }
}

/// The runtime part of an image config.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
}

impl RunConfig {
    /// The busybox test image's: `sh`, a PATH, `/`.
    pub fn shell() -> RunConfig {
        RunConfig {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            working_dir: "/".into(),
            ..Default::default()
        }
    }
}

/// An OCI image layout on disk holding one image under one tag.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub tag: String,
    pub manifest_digest: String,
    /// `sha256:` of the config: the image id podd reports.
    pub config_digest: String,
    pub layer_digests: Vec<String>,
    pub diff_ids: Vec<String>,
}

impl Layout {
    /// Writes an image of `layers` (bottom first) and `run` as an OCI layout in `dir` (made
    /// if missing; an existing layout there is replaced), tagged `tag`.
    pub fn write(dir: &Path, tag: &str, layers: &[Layer], run: &RunConfig) -> Result<Layout> {
        if dir.exists() {
            if !dir.join("oci-layout").is_file() {
                bail!(
                    "{} exists and is not an OCI layout; not touching it",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        let put = |bytes: &[u8]| -> Result<String> {
            let digest = sha256(bytes);
            let path = blob_path(dir, &digest);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            Ok(digest)
        };

        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": {
                "Entrypoint": run.entrypoint,
                "Cmd": run.cmd,
                "Env": run.env,
                "WorkingDir": run.working_dir,
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
        });
        let config_bytes = serde_json::to_vec(&config)?;
        let config_digest = put(&config_bytes)?;
        let mut layer_descs = Vec::new();
        for l in layers {
            put(&l.blob)?;
            layer_descs.push(json!({
                "mediaType": MT_LAYER_GZIP,
                "digest": l.digest,
                "size": l.blob.len(),
            }));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": { "mediaType": MT_CONFIG, "digest": config_digest, "size": config_bytes.len() },
            "layers": layer_descs,
        });
        let manifest_bytes = serde_json::to_vec(&manifest)?;
        let manifest_digest = put(&manifest_bytes)?;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [{
                "mediaType": MT_MANIFEST,
                "digest": manifest_digest,
                "size": manifest_bytes.len(),
                "annotations": { "org.opencontainers.image.ref.name": tag },
            }],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(Layout {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            manifest_digest,
            config_digest,
            layer_digests: layers.iter().map(|l| l.digest.clone()).collect(),
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
        })
    }

    /// The busybox test image's own layout (tag `latest`), as `hack/build-test-image` made it.
    pub fn busybox() -> Result<Layout> {
        let dir = image::test_image_layout()?;
        let manifest = read_manifest(&dir)?;
        let index: Value = read_json(&dir.join("index.json"))?;
        let config_digest = json_str(&manifest["config"]["digest"])?.to_string();
        let config: Value = read_json(&blob_path(&dir, &config_digest))?;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Layout {
            tag: "latest".into(),
            manifest_digest: json_str(&index["manifests"][0]["digest"])?.to_string(),
            config_digest,
            layer_digests: manifest["layers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l["digest"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            diff_ids: strings(&config["rootfs"]["diff_ids"]),
            dir,
        })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(hex_of(digest))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

fn json_str(v: &Value) -> Result<&str> {
    v.as_str()
        .with_context(|| format!("expected a string, found {v}"))
}

fn read_manifest(layout: &Path) -> Result<Value> {
    let index = read_json(&layout.join("index.json"))?;
    let digest = json_str(&index["manifests"][0]["digest"])
        .with_context(|| format!("{}/index.json names no manifest", layout.display()))?;
    read_json(&blob_path(layout, digest))
}

/// A tar of `entries`, names and link names copied into GNU headers byte for byte.
fn tar_bytes(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&str, &[u8]) = match e {
            Entry::Dir { path, mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                (path, &[])
            }
            Entry::File { path, mode, data } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (path, data)
            }
            Entry::Symlink { path, target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                raw_field(&mut h.as_gnu_mut().expect("gnu header").linkname, target)?;
                (path, &[])
            }
            Entry::Hardlink { path, target } => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                raw_field(&mut h.as_gnu_mut().expect("gnu header").linkname, target)?;
                (path, &[])
            }
        };
        h.set_size(data.len() as u64);
        raw_field(&mut h.as_gnu_mut().expect("gnu header").name, path)?;
        h.set_cksum();
        b.append(&h, data)
            .with_context(|| format!("adding {path:?} to a tar"))?;
    }
    Ok(b.into_inner()?)
}

/// Copies `value` into a NUL-padded header field as is (the tar crate's setters refuse `..`).
fn raw_field(field: &mut [u8], value: &str) -> Result<()> {
    if value.len() >= field.len() {
        bail!(
            "tar name {value:?} is longer than {} bytes",
            field.len() - 1
        );
    }
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_written_as_given() {
        let tar = tar_bytes(&[
            Entry::file("../../etc/evil", "x"),
            Entry::hardlink("/abs/link", "/etc/passwd"),
            Entry::whiteout("a/b"),
            Entry::opaque("d"),
        ])
        .unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let got: Vec<(String, Option<String>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap());
                (name, link)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("../../etc/evil".to_string(), None),
                ("/abs/link".to_string(), Some("/etc/passwd".to_string())),
                ("a/.wh.b".to_string(), None),
                ("d/.wh..wh..opq".to_string(), None),
            ]
        );
    }

    #[test]
    fn same_entries_same_digests() {
        let a = Layer::from_entries(&[Entry::file("f", "1")]).unwrap();
        let b = Layer::from_entries(&[Entry::file("f", "1")]).unwrap();
        let c = Layer::from_entries(&[Entry::file("f", "2")]).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        assert_ne!(a.diff_id, c.diff_id);
        assert_eq!(a.digest, sha256(&a.blob));
    }
}
