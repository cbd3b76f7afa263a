//! Harness for podd's root-only end-to-end tests.
//!
//! Every test starts its own daemon with [`Podd::start`]: a temp dir
//! `/tmp/podd-e2e-<test>-XXXXXX/` holds its socket (`podd.sock`), root dir (`root/`), run dir
//! (`run/`), the pods' CRI logs (`logs/<pod>/<container>/0.log`, made by the harness as a
//! kubelet would) and podd's own log (`podd-<n>.log`, printed when a test fails). podd runs
//! under `e2e-reaper` (this crate's binary) so that what a `kill -9`ed podd leaves behind is
//! still reaped; [`Podd::kill9`] and [`Podd::restart`] use that.
//!
//! Dropping a [`Podd`] (also on panic) stops and removes every pod through the CRI, stops podd,
//! then checks that no process and no mount is left under the temp dir, cleans up whatever is
//! (kill -9, umount -l) and fails the test if anything was: leftovers are bugs. Set
//! `PODD_E2E_KEEP=1` to keep the temp dir, `PODD_E2E_LOG_LEVEL` for podd's `--log-level`
//! (default `info,podd=debug`), `PODD_BIN`/`PODD_SHIM_BIN`/`PODCTL_BIN` to test other binaries.
//!
//! CNI: every podd gets its own conf dir and never writes podd's default network. By default
//! ([`Podd::start`]) it holds a loopback-only network (pods have `lo`, nothing is made on the
//! host); [`Podd::start_with`]`(`[`Network::Bridge`]`)` gives the test its own bridge, network
//! name, /24 subnet and IPAM dir ([`net::TestNet`]), checked for leftover IPs, veths and
//! iptables rules when the podd is dropped; [`Network::None`] has no configuration at all.
//!
//! Not root: every test fails with [`NEED_ROOT`]; none skips.
//!
//! Run: `cargo test -p e2e --no-fail-fast -- --test-threads=2` (as root). Tests are independent
//! (each has its own podd and temp dir) and may run two at a time; the first test of a run
//! builds podd/podctl (`cargo build -p podd -p podctl`) and the test image
//! (`target/e2e/busybox-oci`, shared, file-locked).

pub mod bins;
pub mod cri;
pub mod host;
pub mod image;
pub mod logs;
pub mod net;
pub mod oci;
mod podd;
pub mod registry;

pub use podd::{rpc, Network, Pod, Podd, NEED_ROOT};
pub use podd_proto::runtime::v1 as api;

use std::time::Duration;

/// Polls `f` every 100 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Retries `f` every 100 ms until it succeeds; after `timeout` fails with `what` and the last
/// error.
pub async fn eventually_ok<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if std::time::Instant::now() > deadline => {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
