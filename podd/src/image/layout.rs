//! Reading an OCI image layout: a directory (oci-layout, index.json, blobs/) or a tar
//! archive of one, and finding the image manifests to import in its index.
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use oci_spec::image::{Descriptor, ImageIndex};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::digest::{sha256_bytes, Digest};
use super::error::ImageError;
use super::reference::{normalize_reference, Reference};

/// The architecture whose manifests are picked from multi-platform indexes.
#[cfg(target_arch = "x86_64")]
pub(crate) const HOST_ARCH: &str = "amd64";
#[cfg(target_arch = "aarch64")]
pub(crate) const HOST_ARCH: &str = "arm64";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) const HOST_ARCH: &str = std::env::consts::ARCH;

pub(crate) const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

pub(crate) const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_DOCKER_MANIFEST: &str =
    "application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest, index or config read into memory.
pub(crate) const MAX_JSON_BLOB: u64 = 16 << 20;
/// Nested image indexes followed at most this deep.
const MAX_INDEX_DEPTH: usize = 8;

/// An image manifest found in the layout's index, with the reference to tag it with.
#[derive(Debug, Clone)]
pub(crate) struct ManifestRef {
    pub digest: Digest,
    pub size: u64,
    /// Normalised reference from the descriptor annotations, if any.
    pub name: Option<String>,
}

/// An OCI image layout directory.
pub(crate) struct Layout {
    dir: PathBuf,
    /// Where blobs are, by digest hex (`dir/blobs/sha256` in a layout).
    blobs: PathBuf,
    /// What the user gave (the archive for an extracted archive), for messages.
    source: PathBuf,
    /// Every blob was verified against its digest when it was written (a registry pull's
    /// download directory), so staging may link instead of copying.
    verified: bool,
}

impl Layout {
    /// Opens a layout directory, checking `oci-layout` and `index.json` are present.
    pub fn open_dir(dir: &Path) -> Result<Layout, ImageError> {
        Self::open_inner(dir, dir)
    }

    fn open_inner(dir: &Path, source: &Path) -> Result<Layout, ImageError> {
        let invalid = |reason: String| ImageError::InvalidLayout {
            path: source.to_path_buf(),
            reason,
        };
        let marker = dir.join("oci-layout");
        let data =
            std::fs::read(&marker).map_err(|e| invalid(format!("cannot read oci-layout: {e}")))?;
        let header: serde_json::Value = serde_json::from_slice(&data)
            .map_err(|e| invalid(format!("oci-layout is not JSON: {e}")))?;
        match header.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some("1.0.0") => {}
            Some(other) => {
                warn!(layout = %source.display(), version = other, "unknown OCI layout version; trying anyway")
            }
            None => return Err(invalid("oci-layout has no imageLayoutVersion".into())),
        }
        if !dir.join("index.json").is_file() {
            return Err(invalid("index.json is missing".into()));
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
            blobs: dir.join("blobs").join("sha256"),
            source: source.to_path_buf(),
            verified: false,
        })
    }

    /// A bare directory of blobs named by digest hex, each verified when it was written.
    /// It has no index: callers name the manifest themselves.
    pub fn verified_blobs(blobs: &Path) -> Layout {
        Layout {
            dir: blobs.to_path_buf(),
            blobs: blobs.to_path_buf(),
            source: blobs.to_path_buf(),
            verified: true,
        }
    }

    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// Extracts the layout files of the tar archive `archive` (optionally gzip-compressed)
    /// into the new directory `staging` and opens it. Only `oci-layout`, `index.json` and
    /// `blobs/sha256/<hex>` regular files are taken; everything else is ignored.
    pub fn extract_archive(archive: &Path, staging: &Path) -> Result<Layout, ImageError> {
        let invalid = |reason: String| ImageError::InvalidLayout {
            path: archive.to_path_buf(),
            reason,
        };
        let blobs = staging.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| ImageError::io("create directory", &blobs, e))?;
        let file = File::open(archive).map_err(|e| ImageError::io("open archive", archive, e))?;
        let mut buffered = BufReader::new(file);
        let head = buffered
            .fill_buf()
            .map_err(|e| ImageError::io("read archive", archive, e))?;
        let stream: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        let mut tar = tar::Archive::new(stream);
        let entries = tar
            .entries()
            .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid(format!("bad tar entry: {e}")))?;
            if !matches!(
                entry.header().entry_type(),
                tar::EntryType::Regular | tar::EntryType::Continuous
            ) {
                continue;
            }
            let raw = entry.path_bytes().into_owned();
            let path = String::from_utf8_lossy(&raw);
            let parts: Vec<&str> = path
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            // Names are checked to be one of these exact shapes, so joining them onto
            // `staging` cannot leave it.
            let dest = match parts.as_slice() {
                ["oci-layout"] => staging.join("oci-layout"),
                ["index.json"] => staging.join("index.json"),
                ["blobs", "sha256", hex] if Digest::from_hex(hex).is_some() => blobs.join(hex),
                _ => {
                    debug!(archive = %archive.display(), entry = %path, "ignoring archive entry");
                    continue;
                }
            };
            let mut out = File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&dest)
                .map_err(|e| ImageError::io("create", &dest, e))?;
            std::io::copy(&mut entry, &mut out)
                .map_err(|e| invalid(format!("reading entry {path}: {e}")))?;
        }
        Self::open_inner(staging, archive)
    }

    /// Where the blob `digest` lives in this layout.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Reads a small JSON blob, checks its size and digest, and parses it.
    pub fn read_json<T: DeserializeOwned>(
        &self,
        digest: &Digest,
        size: u64,
        what: &'static str,
    ) -> Result<(T, Vec<u8>), ImageError> {
        if size > MAX_JSON_BLOB {
            return Err(ImageError::InvalidBlob {
                what,
                digest: digest.to_string(),
                reason: format!(
                    "descriptor size {size} is larger than the {MAX_JSON_BLOB} byte limit"
                ),
            });
        }
        let path = self.blob_path(digest);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(MAX_JSON_BLOB + 1).read_to_end(&mut data))
            .map_err(|e| ImageError::io("read blob", &path, e))?;
        if data.len() as u64 != size {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected: size,
                actual: data.len() as u64,
            });
        }
        let actual = sha256_bytes(&data);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let value = serde_json::from_slice(&data).map_err(|e| ImageError::InvalidBlob {
            what,
            digest: digest.to_string(),
            reason: e.to_string(),
        })?;
        Ok((value, data))
    }

    /// Every image manifest reachable from index.json, following nested indexes and
    /// picking the linux/HOST_ARCH entry where platforms are given.
    pub fn manifests(&self) -> Result<Vec<ManifestRef>, ImageError> {
        let path = self.dir.join("index.json");
        let data = std::fs::read(&path).map_err(|e| ImageError::io("read", &path, e))?;
        let index: ImageIndex =
            serde_json::from_slice(&data).map_err(|e| ImageError::InvalidLayout {
                path: self.source.clone(),
                reason: format!("index.json is not an OCI image index: {e}"),
            })?;
        let mut out = Vec::new();
        self.walk(index.manifests(), None, 0, &mut out)?;
        Ok(out)
    }

    fn walk(
        &self,
        descs: &[Descriptor],
        inherited: Option<&str>,
        depth: usize,
        out: &mut Vec<ManifestRef>,
    ) -> Result<(), ImageError> {
        let mut platform_picked = false;
        for desc in descs {
            let digest = Digest::parse(desc.digest().as_ref())?;
            if let Some(p) = desc.platform() {
                let (os, arch) = (p.os().to_string(), p.architecture().to_string());
                if os != "linux" || arch != HOST_ARCH || platform_picked {
                    debug!(%digest, %os, %arch, "skipping manifest for another platform");
                    continue;
                }
            }
            let name = descriptor_name(desc).or_else(|| inherited.map(str::to_string));
            let size = desc.size();
            match desc.media_type().to_string().as_str() {
                MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => {
                    if depth >= MAX_INDEX_DEPTH {
                        return Err(ImageError::InvalidBlob {
                            what: "image index",
                            digest: digest.to_string(),
                            reason: format!(
                                "image indexes nested more than {MAX_INDEX_DEPTH} deep"
                            ),
                        });
                    }
                    let (child, _): (ImageIndex, _) =
                        self.read_json(&digest, size, "image index")?;
                    self.walk(child.manifests(), name.as_deref(), depth + 1, out)?;
                }
                MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => {
                    platform_picked |= desc.platform().is_some();
                    out.push(ManifestRef { digest, size, name });
                }
                other => {
                    debug!(%digest, media_type = other, "skipping descriptor that is not an image")
                }
            }
        }
        Ok(())
    }
}

/// The reference a descriptor names: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name` when it is a full reference (not a bare tag).
fn descriptor_name(desc: &Descriptor) -> Option<String> {
    let annotations = desc.annotations().as_ref()?;
    if let Some(name) = annotations.get(ANNOTATION_CONTAINERD_NAME) {
        match normalize_reference(name) {
            Ok(n) => return Some(n),
            Err(e) => warn!(error = %e, "ignoring invalid {ANNOTATION_CONTAINERD_NAME} annotation"),
        }
    }
    let name = annotations.get(ANNOTATION_REF_NAME)?;
    if is_full_reference(name) {
        normalize_reference(name).ok()
    } else {
        debug!(ref_name = %name, "ref.name is only a tag; leaving the image untagged");
        None
    }
}

/// True for `repo:tag`, `host/repo`, `repo@digest`; false for a bare tag like `latest` or `1.0`.
fn is_full_reference(name: &str) -> bool {
    name.contains(['/', ':', '@']) && Reference::parse(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_reference_detection() {
        assert!(is_full_reference("busybox:1.36"));
        assert!(is_full_reference("localhost/podd/busybox"));
        assert!(is_full_reference("127.0.0.1:5000/x:1"));
        assert!(!is_full_reference("latest"));
        assert!(!is_full_reference("1.0"));
        assert!(!is_full_reference("busybox"));
        assert!(!is_full_reference("Bad:Ref:x"));
    }
}
