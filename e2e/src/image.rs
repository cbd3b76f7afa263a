//! The busybox + ipc-probe test image, built once per test run by `hack/build-test-image` into
//! `target/e2e/busybox-oci` (guarded by a file lock, so concurrent test processes share it).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::bins;

/// The reference the layout's index names, and the name the harness imports it under.
pub const TEST_IMAGE: &str = "localhost/podd/busybox:latest";

/// Path of the OCI layout directory of the test image, building it if it is missing or older
/// than its sources.
pub fn test_image_layout() -> Result<PathBuf> {
    static LAYOUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> Result<PathBuf> {
    let dir = bins::target_dir().join("e2e");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join("image.lock");
    let lock_file =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {}", lock_path.display()))?;

    let out = dir.join("busybox-oci");
    let hack = bins::workspace_root().join("hack");
    let script = hack.join("build-test-image");
    let sources = [
        script.clone(),
        hack.join("ipc-probe/ipc-probe.c"),
        hack.join("syscall-probe/syscall-probe.c"),
    ];
    let index = out.join("index.json");
    if let Some(built) = mtime(&index) {
        if sources.iter().all(|s| mtime(s).is_some_and(|m| m <= built)) {
            return Ok(out);
        }
    }
    let res = Command::new(&script)
        .arg(&out)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !res.status.success() {
        bail!(
            "{} {} failed ({}):\n{}",
            script.display(),
            out.display(),
            res.status,
            String::from_utf8_lossy(&res.stderr)
        );
    }
    if !index.is_file() {
        bail!("{} made no {}", script.display(), index.display());
    }
    Ok(out)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}
