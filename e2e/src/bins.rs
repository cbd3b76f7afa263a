//! Where the binaries under test are: podd, podd-shim, podctl.
//!
//! Integration tests cannot use `CARGO_BIN_EXE_*` of another package, so the binaries are found
//! next to the test executable (`target/<profile>/`), after `cargo build -p podd -p podctl` has
//! been run once per test process to make them current. `PODD_BIN`, `PODD_SHIM_BIN` and
//! `PODCTL_BIN` override the paths (and skip the build).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e crate has a parent directory")
        .to_path_buf()
}

/// `target/<profile>`: the directory holding this test executable's `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// `target/`: shared scratch (the test image) goes under `target/e2e/`.
pub fn target_dir() -> PathBuf {
    let p = profile_dir();
    p.parent().map(Path::to_path_buf).unwrap_or(p)
}

/// The `e2e-reaper` binary of this crate (cargo builds it next to the test executables;
/// `CARGO_BIN_EXE_e2e-reaper` when cargo sets it at run time).
pub fn reaper() -> PathBuf {
    std::env::var_os("CARGO_BIN_EXE_e2e-reaper")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("e2e-reaper"))
}

pub fn podd() -> Result<PathBuf> {
    locate("PODD_BIN", "podd")
}

pub fn podd_shim() -> Result<PathBuf> {
    locate("PODD_SHIM_BIN", "podd-shim")
}

pub fn podctl() -> Result<PathBuf> {
    locate("PODCTL_BIN", "podctl")
}

fn locate(var: &str, name: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{var}={} is not a file", p.display());
        }
        return Ok(p);
    }
    let build = build_once();
    let p = profile_dir().join(name);
    if p.is_file() {
        if let Err(e) = build {
            eprintln!("e2e: warning: {e}; using the existing {}", p.display());
        }
        return Ok(p);
    }
    match build {
        Ok(()) => bail!(
            "{} is missing although `cargo build -p podd -p podctl` succeeded; set {var}",
            p.display()
        ),
        Err(e) => bail!(
            "{} is missing and building it failed: {e}\n\
             build it first (`cargo build -p podd -p podctl`) or set {var}",
            p.display()
        ),
    }
}

/// Runs `cargo build -p podd -p podctl` (same profile as the tests) once per test process.
fn build_once() -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
}

fn build() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "-p", "podd", "-p", "podctl"]);
    if profile_dir().file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // Same target dir as the tests, wherever that is.
    cmd.env("CARGO_TARGET_DIR", target_dir());
    let out = cmd
        .output()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "`cargo build -p podd -p podctl` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
