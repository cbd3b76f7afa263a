//! The persisted image index `images.json`, written atomically.
use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::Image;
use crate::store::Durability;

const INDEX_VERSION: u32 = 1;

/// One stored image and every blob digest it keeps alive in the content store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub image: Image,
    pub blobs: BTreeSet<String>,
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<Record>,
}

/// Loads the index; a missing file is an empty index.
pub(crate) fn load(path: &Path) -> Result<Vec<Record>, ImageError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImageError::io("read image index", path, e)),
    };
    let index: IndexFile = serde_json::from_slice(&data).map_err(|e| ImageError::CorruptIndex {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if index.version != INDEX_VERSION {
        return Err(ImageError::CorruptIndex {
            path: path.to_path_buf(),
            reason: format!(
                "version {} is not the supported version {INDEX_VERSION}",
                index.version
            ),
        });
    }
    Ok(index.images)
}

/// Replaces the index with `records` atomically.
pub(crate) fn save(path: &Path, records: &[Record]) -> Result<(), ImageError> {
    let data = serde_json::to_vec_pretty(&IndexFile {
        version: INDEX_VERSION,
        images: records.to_vec(),
    })
    .map_err(|e| ImageError::io("encode image index", path, std::io::Error::other(e)))?;
    write_atomic(path, &data, Durability::New)
}

/// [`crate::store::write_atomic_with`] with the store's errors as image errors.
pub(crate) fn write_atomic(
    path: &Path,
    data: &[u8],
    durability: Durability,
) -> Result<(), ImageError> {
    use crate::store::{write_atomic_with, StoreError};
    write_atomic_with(path, data, durability).map_err(|e| match e {
        StoreError::Io { op, path, source } => ImageError::io(op, path, source),
        other => ImageError::io("write", path, std::io::Error::other(other.to_string())),
    })
}

/// fsyncs a directory so renames in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_index_is_empty_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.json");
        assert!(load(&path).unwrap().is_empty());
        let rec = Record {
            image: Image {
                id: format!("sha256:{}", "a".repeat(64)),
                repo_tags: vec!["docker.io/library/x:latest".into()],
                repo_digests: vec![],
                size: 3,
                config: Default::default(),
                diff_ids: vec![],
                manifest_digest: String::new(),
                layers: vec![],
            },
            blobs: BTreeSet::from(["sha256:b".to_string()]),
        };
        save(&path, &[rec]).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].image.repo_tags, ["docker.io/library/x:latest"]);
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_index_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.to_string().contains("images.json"), "{err}");
    }
}
