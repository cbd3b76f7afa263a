//! Persisted records: one JSON file per object, replaced atomically (write a temp file, fsync
//! it, rename), so a crash of podd or of the machine leaves either the old or the new record,
//! never a torn one. Temp files a crash left behind are removed when the store is opened.
//!
//! The directory is not fsynced after the rename: that would only make the *new* record
//! survive a power loss, and after one no pod process survives either, so the old record is
//! as good (recovery settles it). It saves a disk flush on every pod and container step.

use std::fs::{self, File};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store: record {path} is corrupt ({source}); move it away to let podd start")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// How much of a machine crash an atomic write must survive. Every level survives a crash of
/// the writing process with the old or the new content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Facts about processes, which a reboot ends anyway (launched files): no flush.
    UntilReboot,
    /// Records: after a power loss the old or the new content (file fsync before the rename).
    OldOrNew,
    /// Content users rely on after a reboot (the image index): the new content, also the
    /// rename made durable (directory fsync).
    New,
}

/// Writes `data` to `path` atomically: readers and crash recovery see the old or the new bytes.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    write_atomic_with(path, data, Durability::OldOrNew)
}

/// [`write_atomic`] with the durability the caller needs.
pub fn write_atomic_with(
    path: &Path,
    data: &[u8],
    durability: Durability,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("record");
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(data).map_err(io("write", &tmp))?;
        if durability != Durability::UntilReboot {
            f.sync_all().map_err(io("fsync", &tmp))?;
        }
    }
    fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    if durability == Durability::New {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory", dir))?;
    }
    Ok(())
}

/// A directory of `<id>.json` records of one kind.
pub struct RecordStore<T> {
    dir: PathBuf,
    _kind: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> RecordStore<T> {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        for entry in fs::read_dir(&dir).map_err(io("read directory", &dir))? {
            let path = entry.map_err(io("read directory", &dir))?.path();
            if is_temp(&path) {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(Self {
            dir,
            _kind: PhantomData,
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn save(&self, id: &str, record: &T) -> Result<(), StoreError> {
        let data = serde_json::to_vec_pretty(record).expect("records always serialize");
        write_atomic(&self.path(id), &data)
    }

    /// Removing a record that is gone succeeds.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    pub fn load_all(&self) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io("read directory", &self.dir))? {
            let path = entry.map_err(io("read directory", &self.dir))?.path();
            if path.extension().is_some_and(|e| e == "json") && !is_temp(&path) {
                let data = fs::read(&path).map_err(io("read", &path))?;
                let record =
                    serde_json::from_slice(&data).map_err(|source| StoreError::Corrupt {
                        path: path.clone(),
                        source,
                    })?;
                out.push(record);
            }
        }
        Ok(out)
    }
}

fn is_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        n: u32,
    }

    #[test]
    fn save_load_replace_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::<Rec>::open(dir.path()).unwrap();
        store.save("a", &Rec { n: 1 }).unwrap();
        store.save("a", &Rec { n: 2 }).unwrap();
        store.save("b", &Rec { n: 3 }).unwrap();
        let mut all = store.load_all().unwrap();
        all.sort_by_key(|r| r.n);
        assert_eq!(all, vec![Rec { n: 2 }, Rec { n: 3 }]);
        store.remove("a").unwrap();
        store.remove("a").unwrap();
        assert_eq!(store.load_all().unwrap(), vec![Rec { n: 3 }]);
    }

    #[test]
    fn leftover_temp_files_are_ignored_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".a.json.tmp"), b"{\"n\":").unwrap();
        let store = RecordStore::<Rec>::open(dir.path()).unwrap();
        assert!(store.load_all().unwrap().is_empty());
        assert!(!dir.path().join(".a.json.tmp").exists());
    }

    #[test]
    fn corrupt_record_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x.json"), b"{").unwrap();
        let store = RecordStore::<Rec>::open(dir.path()).unwrap();
        let err = store.load_all().unwrap_err().to_string();
        assert!(err.contains("x.json"), "{err}");
    }
}
