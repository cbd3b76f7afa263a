//! The image store: a content store of verified blobs (`root/blobs/sha256/<hex>`), one
//! unpacked directory per layer (`root/layers/<diff_id hex>/`) for overlayfs, and an index
//! of images (`root/images.json`).
//!
//! All calls block; the daemon runs them through `spawn_blocking`. Mutations (import,
//! remove) are serialised by one lock; readers see the index through a read lock and never
//! a half-done import: an import stages everything under `root/tmp/` and makes it visible
//! only after every digest checked out.
mod digest;
mod error;
mod index;
mod layer;
mod layout;
mod reference;
pub mod registry;
mod unpack;
pub mod usage;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use digest::{copy_verified, Digest};
use index::{fsync_dir, Record};
use layout::{Layout, ManifestRef};
use reference::Reference;

pub use error::ImageError;
pub use reference::normalize_reference;

const INDEX_FILE: &str = "images.json";
const TMP_PREFIX: &str = ".tmp-";

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<config digest hex>`.
    pub id: String,
    /// Normalised references, e.g. `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// `repo@sha256:<manifest digest hex>` for every repository the image is tagged in.
    pub repo_digests: Vec<String>,
    /// Sum of the compressed layer sizes and the config size, in bytes.
    pub size: u64,
    pub config: ImageConfig,
    /// Uncompressed layer digests, bottom layer first (as in the image config).
    pub diff_ids: Vec<String>,
    /// Digest of the image manifest (empty in indexes written before it was recorded).
    #[serde(default)]
    pub manifest_digest: String,
    /// The manifest's layer descriptors, bottom layer first.
    #[serde(default)]
    pub layers: Vec<LayerInfo>,
}

/// A layer as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// The parts of the image config a runtime needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
}

/// The image store under one root directory. `Send + Sync`; share it behind an `Arc`.
pub struct ImageStore {
    root: PathBuf,
    images: RwLock<Vec<Record>>,
    /// Held by import and remove for their whole run.
    mutate: Mutex<()>,
}

/// How a reference matched an image.
#[derive(Debug, PartialEq)]
enum Match {
    /// By a repo tag (the normalised tag).
    Tag(String),
    /// By id, id prefix or repo digest.
    Id,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, loads the index, removes what a
    /// crashed import left in `root/tmp`, and removes blobs and layers no image references.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        let store = ImageStore {
            root: root.to_path_buf(),
            images: RwLock::new(Vec::new()),
            mutate: Mutex::new(()),
        };
        for dir in [store.blobs_dir(), store.layers_dir(), store.tmp_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ImageError::io("create directory", &dir, e))?;
        }
        let tmp = store.tmp_dir();
        for entry in read_dir(&tmp)? {
            // The pull engine's download dir stays behind, empty, after every good pull: only
            // content is worth a log line.
            let empty_dir = std::fs::read_dir(&entry).is_ok_and(|mut d| d.next().is_none());
            if !empty_dir {
                info!(path = %entry.display(), "removing leftover of an interrupted import or pull");
            }
            remove_any(&entry)?;
        }
        for entry in read_dir(root)? {
            if file_name(&entry).starts_with(TMP_PREFIX) {
                remove_any(&entry)?;
            }
        }
        let records = index::load(&root.join(INDEX_FILE))?;
        for r in &records {
            for dir in store.layer_dirs(&r.image) {
                if !dir.is_dir() {
                    warn!(image = %r.image.id, layer = %dir.display(), "layer directory is missing; re-import the image");
                }
            }
        }
        store.collect_garbage(&records);
        *store.images.write().unwrap_or_else(|e| e.into_inner()) = records;
        Ok(store)
    }

    /// Imports every image of the OCI layout directory or OCI archive at `path`, tagging it
    /// with `name` (normalised) if given, else with the reference its index annotations name.
    /// Either every image of the layout is stored, or (on error) nothing is.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<Image>, ImageError> {
        let name = name.map(normalize_reference).transpose()?;
        let _guard = self.mutate.lock().unwrap_or_else(|e| e.into_inner());
        let staging = Staging::new(&self.tmp_dir())?;
        let layout = if path.is_dir() {
            Layout::open_dir(path)?
        } else if path.is_file() {
            Layout::extract_archive(path, &staging.dir.join("src"))?
        } else {
            return Err(ImageError::InvalidLayout {
                path: path.to_path_buf(),
                reason: "no such file or directory".into(),
            });
        };
        let manifests = layout.manifests()?;
        if manifests.is_empty() {
            return Err(ImageError::NothingToImport {
                path: path.to_path_buf(),
                reason: "index.json lists no image manifest for this platform".into(),
            });
        }
        if name.is_some() && manifests.len() > 1 {
            warn!(layout = %path.display(), count = manifests.len(), "several images share the given name; the last one keeps the tag");
        }
        let items: Vec<Ingest> = manifests
            .iter()
            .map(|m| Ingest {
                manifest: m.clone(),
                tag: name.clone().or_else(|| m.name.clone()),
                repo_digest: None,
            })
            .collect();
        self.ingest(&layout, &staging, &items, &mut |_, _| {})
    }

    /// The one ingestion path of OCI-layout import and registry pull: stage (verify blobs,
    /// unpack new layers and check their diff_ids), move into the store, then record the
    /// images in the index, last, so a crash never leaves an image that looks complete.
    /// The caller holds `mutate`.
    fn ingest(
        &self,
        layout: &Layout,
        staging: &Staging,
        items: &[Ingest],
        on_unpack: &mut dyn FnMut(&Digest, &Digest),
    ) -> Result<Vec<Image>, ImageError> {
        let mut imported = Vec::new();
        for item in items {
            imported.push(self.stage_image(layout, staging, item, on_unpack)?);
        }
        self.commit(staging)?;

        let mut images = self.images.write().unwrap_or_else(|e| e.into_inner());
        let mut next = images.clone();
        for rec in &imported {
            merge(&mut next, rec.clone());
        }
        index::save(&self.index_path(), &next)?;
        *images = next;
        let ids: BTreeSet<&str> = imported.iter().map(|r| r.image.id.as_str()).collect();
        let out: Vec<Image> = images
            .iter()
            .filter(|r| ids.contains(r.image.id.as_str()))
            .map(|r| r.image.clone())
            .collect();
        for img in &out {
            info!(id = %img.id, tags = ?img.repo_tags, "stored image");
        }
        Ok(out)
    }

    /// Stores the image whose manifest and blobs a registry pull has put, verified, into
    /// `blobs` (files named by digest hex; every one, those it found stored linked in too,
    /// so that a RemoveImage meanwhile cannot take them). `tag` is the normalised reference pulled;
    /// `repo_digest` the digest it resolved to when that was an index (else the manifest's).
    /// `on_unpack(blob, diff_id)` is called before each layer not yet in the store is
    /// unpacked.
    pub(crate) fn ingest_pulled(
        &self,
        blobs: &Path,
        manifest: &Digest,
        manifest_size: u64,
        tag: &str,
        repo_digest: Option<Digest>,
        on_unpack: &mut dyn FnMut(&Digest, &Digest),
    ) -> Result<Image, ImageError> {
        let _guard = self.mutate.lock().unwrap_or_else(|e| e.into_inner());
        let staging = Staging::new(&self.tmp_dir())?;
        let layout = Layout::verified_blobs(blobs);
        let item = Ingest {
            manifest: ManifestRef {
                digest: manifest.clone(),
                size: manifest_size,
                name: None,
            },
            tag: Some(tag.to_string()),
            repo_digest,
        };
        Ok(self
            .ingest(&layout, &staging, std::slice::from_ref(&item), on_unpack)?
            .pop()
            .expect("one image ingested"))
    }

    /// Where the store keeps the verified blob `digest` (whether it holds it or not).
    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Where registry pulls download blobs before ingesting them (under `tmp`, so what an
    /// interrupted pull left is removed by the next `open`).
    pub(crate) fn download_dir(&self) -> PathBuf {
        self.tmp_dir().join("pull")
    }

    /// The verbose ImageStatus info: the image config as stored, the manifest's layers,
    /// size and user, as containerd's verbose `info` has them.
    pub fn verbose_info(&self, image: &Image) -> serde_json::Value {
        let config = Digest::parse(&image.id)
            .ok()
            .and_then(|d| std::fs::read(self.blob_path(&d)).ok())
            .and_then(|data| serde_json::from_slice::<serde_json::Value>(&data).ok());
        serde_json::json!({
            "id": image.id,
            "repoTags": image.repo_tags,
            "repoDigests": image.repo_digests,
            "manifestDigest": image.manifest_digest,
            "size": image.size,
            "user": image.config.user,
            "layers": image.layers,
            "diffIds": image.diff_ids,
            "imageSpec": config,
            "config": image.config,
        })
    }

    /// The directory everything of the store lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Disk used by blobs, layers and the index (walks the tree: call it off the async workers).
    pub fn usage(&self) -> usage::Usage {
        usage::measure(&self.root)
    }

    /// Every image in the store.
    pub fn list(&self) -> Vec<Image> {
        let images = self.images.read().unwrap_or_else(|e| e.into_inner());
        images.iter().map(|r| r.image.clone()).collect()
    }

    /// Finds an image by id (`sha256:<hex>` or bare hex), repo tag or repo digest (both
    /// normalised), or a unique id prefix of at least 12 hex characters.
    pub fn resolve(&self, reference: &str) -> Option<Image> {
        let images = self.images.read().unwrap_or_else(|e| e.into_inner());
        find(&images, reference).map(|(i, _)| images[i].image.clone())
    }

    /// The unpacked layer directories of `image`, topmost first (overlayfs lowerdir order).
    pub fn layer_dirs(&self, image: &Image) -> Vec<PathBuf> {
        image
            .diff_ids
            .iter()
            .rev()
            .map(|d| {
                self.layers_dir()
                    .join(d.strip_prefix("sha256:").unwrap_or(d))
            })
            .collect()
    }

    /// Removes a tag (when `reference` is a tag and the image has others) or the whole image
    /// (by id, digest, or its last tag), then deletes blobs and layers nothing uses any more.
    /// An unknown reference is not an error.
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let _guard = self.mutate.lock().unwrap_or_else(|e| e.into_inner());
        let mut images = self.images.write().unwrap_or_else(|e| e.into_inner());
        let Some((i, how)) = find(&images, reference) else {
            debug!(reference, "remove: no such image");
            return Ok(());
        };
        let mut next = images.clone();
        match how {
            Match::Tag(tag) if next[i].image.repo_tags.len() > 1 => {
                let img = &mut next[i].image;
                img.repo_tags.retain(|t| *t != tag);
                let repo = repo_of(&tag);
                if !img.repo_tags.iter().any(|t| repo_of(t) == repo) {
                    img.repo_digests.retain(|d| repo_of(d) != repo);
                }
                info!(id = %img.id, %tag, "untagged image");
            }
            _ => {
                let rec = next.remove(i);
                info!(id = %rec.image.id, tags = ?rec.image.repo_tags, "removed image");
            }
        }
        index::save(&self.index_path(), &next)?;
        *images = next;
        let snapshot = images.clone();
        drop(images);
        self.collect_garbage(&snapshot);
        Ok(())
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// Verifies and stages one image's blobs and new layers; returns its record.
    fn stage_image(
        &self,
        layout: &Layout,
        staging: &Staging,
        item: &Ingest,
        on_unpack: &mut dyn FnMut(&Digest, &Digest),
    ) -> Result<Record, ImageError> {
        let m = &item.manifest;
        let tag = item.tag.clone();
        let (manifest, _): (ImageManifest, _) =
            layout.read_json(&m.digest, m.size, "image manifest")?;
        self.stage_blob(layout, staging, &m.digest, m.size)?;

        let config_desc = manifest.config();
        let config_digest = Digest::parse(config_desc.digest().as_ref())?;
        let config_size = config_desc.size();
        let (config, _): (ImageConfiguration, _) =
            layout.read_json(&config_digest, config_size, "image config")?;
        self.stage_blob(layout, staging, &config_digest, config_size)?;

        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::InvalidBlob {
                what: "image config",
                digest: config_digest.to_string(),
                reason: format!(
                    "it lists {} diff_ids but manifest {} has {} layers",
                    diff_ids.len(),
                    m.digest,
                    manifest.layers().len()
                ),
            });
        }
        let mut blobs = BTreeSet::from([m.digest.to_string(), config_digest.to_string()]);
        let mut size = config_size;
        let mut diff_id_strings = Vec::new();
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let blob_digest = Digest::parse(layer.digest().as_ref())?;
            let diff_id = Digest::parse(diff_id)?;
            let blob = self.stage_blob(layout, staging, &blob_digest, layer.size())?;
            let dest = self.layers_dir().join(diff_id.hex());
            let staged = staging.layers.join(diff_id.hex());
            if !dest.exists() && !staged.exists() {
                debug!(layer = %blob_digest, %diff_id, "unpacking layer");
                on_unpack(&blob_digest, &diff_id);
                let work = staging
                    .layers
                    .join(format!("{TMP_PREFIX}{}", diff_id.hex()));
                std::fs::create_dir(&work)
                    .map_err(|e| ImageError::io("create directory", &work, e))?;
                set_mode(&work, 0o755)?;
                layer::unpack_layer_blob(&blob, &blob_digest, &diff_id, &work)?;
                std::fs::rename(&work, &staged).map_err(|e| ImageError::io("rename", &work, e))?;
            }
            size += layer.size();
            layers.push(LayerInfo {
                digest: blob_digest.to_string(),
                size: layer.size(),
                media_type: layer.media_type().to_string(),
            });
            blobs.insert(blob_digest.to_string());
            diff_id_strings.push(diff_id.to_string());
        }

        let image_config = config
            .config()
            .as_ref()
            .map(|c| ImageConfig {
                entrypoint: c.entrypoint().clone().unwrap_or_default(),
                cmd: c.cmd().clone().unwrap_or_default(),
                env: c.env().clone().unwrap_or_default(),
                working_dir: c.working_dir().clone().unwrap_or_default(),
                user: c.user().clone().unwrap_or_default(),
                labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
            })
            .unwrap_or_default();
        let (repo_tags, repo_digests) = match tag {
            Some(tag) => {
                let reference = Reference::parse(&tag)?;
                let top = item.repo_digest.as_ref().unwrap_or(&m.digest);
                let digest = format!("{}@{top}", reference.name());
                let tags = if reference.digest.is_none() {
                    vec![tag]
                } else {
                    vec![]
                };
                (tags, vec![digest])
            }
            None => (vec![], vec![]),
        };
        Ok(Record {
            image: Image {
                id: config_digest.to_string(),
                repo_tags,
                repo_digests,
                size,
                config: image_config,
                diff_ids: diff_id_strings,
                manifest_digest: m.digest.to_string(),
                layers,
            },
            blobs,
        })
    }

    /// Copies a blob from the layout into staging, verifying it, unless the store already
    /// has it. Returns where the verified blob now is.
    fn stage_blob(
        &self,
        layout: &Layout,
        staging: &Staging,
        digest: &Digest,
        size: u64,
    ) -> Result<PathBuf, ImageError> {
        let stored = self.blob_path(digest);
        if stored.is_file() {
            return Ok(stored);
        }
        let staged = staging.blobs.join(digest.hex());
        if staged.exists() {
            return Ok(staged);
        }
        let src = layout.blob_path(digest);
        if layout.is_verified() {
            // Verified as it was downloaded and named by its digest only after that: a link
            // (same file system, under root/tmp) costs nothing, a copy would double the I/O.
            std::fs::hard_link(&src, &staged)
                .map_err(|e| ImageError::io("link downloaded blob", &src, e))?;
        } else {
            copy_verified(&src, &staged, digest, Some(size))?;
        }
        Ok(staged)
    }

    /// Moves staged blobs and layers into the store. A crash part way leaves only
    /// unreferenced content, which the next `open` removes.
    fn commit(&self, staging: &Staging) -> Result<(), ImageError> {
        for (from_dir, to_dir) in [
            (&staging.blobs, self.blobs_dir()),
            (&staging.layers, self.layers_dir()),
        ] {
            for from in read_dir(from_dir)? {
                let to = to_dir.join(file_name(&from));
                if to.exists() {
                    continue; // identical content, already present
                }
                std::fs::rename(&from, &to)
                    .map_err(|e| ImageError::io("move into store", &from, e))?;
            }
            fsync_dir(&to_dir)?;
        }
        Ok(())
    }

    /// Deletes blobs and layer directories that no record references.
    fn collect_garbage(&self, records: &[Record]) {
        let blobs: BTreeSet<&str> = records
            .iter()
            .flat_map(|r| r.blobs.iter())
            .map(|b| b.strip_prefix("sha256:").unwrap_or(b))
            .collect();
        let layers: BTreeSet<&str> = records
            .iter()
            .flat_map(|r| r.image.diff_ids.iter())
            .map(|d| d.strip_prefix("sha256:").unwrap_or(d))
            .collect();
        for (dir, keep) in [(self.blobs_dir(), &blobs), (self.layers_dir(), &layers)] {
            let entries = match read_dir(&dir) {
                Ok(e) => e,
                Err(e) => {
                    warn!(error = %e, "cannot list store directory for clean-up");
                    continue;
                }
            };
            for path in entries {
                if keep.contains(file_name(&path).as_str()) {
                    continue;
                }
                debug!(path = %path.display(), "removing unreferenced content");
                if let Err(e) = remove_any(&path) {
                    warn!(error = %e, "cannot remove unreferenced content");
                }
            }
        }
    }
}

/// One image to ingest: its manifest, the reference to tag it with, and the digest its
/// repo digest names when that is not the manifest's (an index pulled by tag).
struct Ingest {
    manifest: ManifestRef,
    tag: Option<String>,
    repo_digest: Option<Digest>,
}

/// A per-import staging directory under `root/tmp`, removed when dropped.
struct Staging {
    dir: PathBuf,
    blobs: PathBuf,
    layers: PathBuf,
}

impl Staging {
    fn new(tmp: &Path) -> Result<Staging, ImageError> {
        let dir = tmp.join(format!("import-{}", uuid::Uuid::new_v4()));
        let staging = Staging {
            blobs: dir.join("blobs"),
            layers: dir.join("layers"),
            dir,
        };
        for d in [&staging.blobs, &staging.layers] {
            std::fs::create_dir_all(d).map_err(|e| ImageError::io("create directory", d, e))?;
        }
        Ok(staging)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            warn!(path = %self.dir.display(), error = %e, "cannot remove import staging directory; it is removed at the next start");
        }
    }
}

/// Adds an imported image to the records: its tags move to it from any other image, and an
/// image already present (same id) gains the new tags and digests.
fn merge(records: &mut Vec<Record>, new: Record) {
    for tag in &new.image.repo_tags {
        for r in records.iter_mut().filter(|r| r.image.id != new.image.id) {
            r.image.repo_tags.retain(|t| t != tag);
        }
    }
    match records.iter_mut().find(|r| r.image.id == new.image.id) {
        Some(existing) => {
            for t in new.image.repo_tags {
                if !existing.image.repo_tags.contains(&t) {
                    existing.image.repo_tags.push(t);
                }
            }
            for d in new.image.repo_digests {
                if !existing.image.repo_digests.contains(&d) {
                    existing.image.repo_digests.push(d);
                }
            }
            existing.blobs.extend(new.blobs);
        }
        None => records.push(new),
    }
}

/// Finds the record `reference` names; see [`ImageStore::resolve`].
fn find(records: &[Record], reference: &str) -> Option<(usize, Match)> {
    let bare = reference.strip_prefix("sha256:").unwrap_or(reference);
    if digest::is_lower_hex(bare, 64) {
        let id = format!("sha256:{bare}");
        return records
            .iter()
            .position(|r| r.image.id == id)
            .map(|i| (i, Match::Id));
    }
    if let Ok(r) = Reference::parse(reference) {
        if let Some(d) = &r.digest {
            let wanted = format!("{}@{d}", r.name());
            if let Some(i) = records
                .iter()
                .position(|x| x.image.repo_digests.contains(&wanted))
            {
                return Some((i, Match::Id));
            }
        } else {
            let tag = format!("{}:{}", r.name(), r.tag.as_deref().unwrap_or("latest"));
            if let Some(i) = records
                .iter()
                .position(|x| x.image.repo_tags.contains(&tag))
            {
                return Some((i, Match::Tag(tag)));
            }
        }
    }
    if bare.len() >= 12 && digest::is_lower_hex(bare, bare.len()) {
        let mut hits = records.iter().enumerate().filter(|(_, r)| {
            r.image
                .id
                .strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(bare))
        });
        if let (Some((i, _)), None) = (hits.next(), hits.next()) {
            return Some((i, Match::Id));
        }
    }
    None
}

/// `repo` of `repo:tag` or `repo@digest`.
fn repo_of(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => &reference[..slash + i],
        None => reference,
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ImageError::io("list directory", dir, e))?;
    entries
        .map(|e| {
            e.map(|e| e.path())
                .map_err(|err| ImageError::io("list directory", dir, err))
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Removes a file or a whole directory tree (without following symlinks).
fn remove_any(path: &Path) -> Result<(), ImageError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| ImageError::io("stat", path, e))?;
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.map_err(|e| ImageError::io("remove", path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ImageError::io("chmod", path, e))
}

#[cfg(test)]
mod tests;
