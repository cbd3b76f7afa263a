//! Disk used by the image store, for CRI ImageFsInfo.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes (allocated blocks) and inodes used under a directory tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// Walks `dir` without following symlinks; hard links are counted once per link, as `du`
/// does with `--count-links`, because layers rarely share inodes.
pub fn measure(dir: &Path) -> Usage {
    let mut usage = Usage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        usage.bytes += meta.blocks() * 512;
        usage.inodes += 1;
        if !meta.is_dir() {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => {
                    if let Ok(m) = entry.metadata() {
                        usage.bytes += m.blocks() * 512;
                        usage.inodes += 1;
                    }
                }
                Err(_) => {}
            }
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_and_dirs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/f"), vec![1u8; 10_000]).unwrap();
        let u = measure(d.path());
        assert_eq!(u.inodes, 3);
        assert!(u.bytes >= 10_000, "{u:?}");
    }
}
