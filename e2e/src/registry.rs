//! The local registries `hack/registry start` runs (Debian's docker-registry on 127.0.0.1):
//! plain HTTP on :5000 and htpasswd auth on :5001. Tests push their own images there under
//! unique repository names with `skopeo copy`, and may edit the registry's storage (a
//! tampered blob) under those names only. Only 127.0.0.1 is ever contacted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::oci::{hex_of, Entry, Layer, Layout, RunConfig};

/// What a test says when a registry does not answer.
pub const START_HINT: &str = "start the registries with hack/registry start";

/// The user `hack/registry` puts in the htpasswd file (its password is in the state dir).
pub const AUTH_USER: &str = "podd-e2e";

/// One running local registry.
#[derive(Debug, Clone)]
pub struct Registry {
    /// `127.0.0.1:PORT`, the host part of references to it.
    pub host: String,
    /// Its storage root (distribution's filesystem driver `rootdirectory`).
    pub storage: PathBuf,
    /// Basic-auth credentials (the authenticated registry only).
    pub creds: Option<(String, String)>,
}

/// An image a test pushed: its references in the registry.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `127.0.0.1:PORT/repo:tag`.
    pub reference: String,
    /// `127.0.0.1:PORT/repo`.
    pub repo: String,
    /// Manifest digest as the registry serves it.
    pub digest: String,
}

impl Pushed {
    /// `127.0.0.1:PORT/repo@sha256:...`.
    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repo, self.digest)
    }
}

fn state_dir() -> PathBuf {
    std::env::var_os("PODD_REGISTRY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/podd-registry"))
}

impl Registry {
    /// The plain-HTTP registry on 127.0.0.1:5000; fails with [`START_HINT`] when it does not
    /// answer.
    pub fn plain() -> Result<Registry> {
        let r = Registry {
            host: "127.0.0.1:5000".into(),
            storage: state_dir().join("plain/data"),
            creds: None,
        };
        r.check(&[200])?;
        Ok(r)
    }

    /// The htpasswd registry on 127.0.0.1:5001, with the credentials `hack/registry` made.
    pub fn authenticated() -> Result<Registry> {
        let pw_file = state_dir().join("auth/password");
        let password = std::fs::read_to_string(&pw_file)
            .with_context(|| format!("reading {} ({START_HINT})", pw_file.display()))?
            .trim()
            .to_string();
        let r = Registry {
            host: "127.0.0.1:5001".into(),
            storage: state_dir().join("auth/data"),
            creds: Some((AUTH_USER.into(), password)),
        };
        r.check(&[401])?;
        Ok(r)
    }

    /// The HTTPS registry on 127.0.0.1:5002 with a self-signed certificate (for skip_verify).
    /// Only a TCP connect is checked (the harness has no TLS client); a push says more.
    pub fn tls() -> Result<Registry> {
        let cert = state_dir().join("tls/cert.pem");
        if !cert.is_file() {
            bail!("{} is missing: {START_HINT}", cert.display());
        }
        let host = "127.0.0.1:5002";
        let addr: SocketAddr = host.parse()?;
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).with_context(|| {
            format!("the local TLS registry https://{host}/v2/ is not reachable: {START_HINT}")
        })?;
        Ok(Registry {
            host: host.into(),
            storage: state_dir().join("tls/data"),
            creds: None,
        })
    }

    /// GET /v2/ must answer one of `want` (200 open, 401 behind auth).
    fn check(&self, want: &[u16]) -> Result<()> {
        let status = http_status(&self.host, "/v2/").with_context(|| {
            format!(
                "the local registry http://{}/v2/ is not reachable: {START_HINT}",
                self.host
            )
        })?;
        if !want.contains(&status) {
            bail!(
                "http://{}/v2/ answered {status}, want {want:?}: is it the registry \
                 hack/registry runs? ({START_HINT})",
                self.host
            );
        }
        Ok(())
    }

    /// Pushes `layout` as `repo:tag` (`repo` made unique by [`unique_repo`]), optionally
    /// recompressing the layers with zstd.
    pub fn push(&self, layout: &Layout, repo: &str, tag: &str, zstd: bool) -> Result<Pushed> {
        let repo = format!("{}/{repo}", self.host);
        let reference = format!("{repo}:{tag}");
        let digest_file = tempfile::NamedTempFile::new()?;
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"])
            .arg(digest_file.path());
        if let Some((u, p)) = &self.creds {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        if zstd {
            cmd.args(["--dest-compress-format", "zstd"]);
        }
        cmd.arg(format!("oci:{}:{}", layout.dir.display(), layout.tag))
            .arg(format!("docker://{reference}"));
        let out = cmd
            .output()
            .context("running skopeo (apt-get install skopeo, or run hack/install-deps)")?;
        if !out.status.success() {
            bail!(
                "skopeo copy {} -> {reference} failed ({}): {}",
                layout.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let digest = std::fs::read_to_string(digest_file.path())?
            .trim()
            .to_string();
        if !digest.starts_with("sha256:") {
            bail!("skopeo wrote no manifest digest for {reference} (got {digest:?})");
        }
        Ok(Pushed {
            reference,
            repo,
            digest,
        })
    }

    /// Writes an image of `layers` and `run` as a layout in a temp dir and pushes it as
    /// `<unique repo named after hint>:<tag>` for each of `tags`.
    pub fn push_new(
        &self,
        hint: &str,
        layers: &[Layer],
        run: &RunConfig,
        tags: &[&str],
    ) -> Result<(Layout, Vec<Pushed>)> {
        let tmp = tempfile::Builder::new()
            .prefix("podd-e2e-image-")
            .tempdir()?;
        let layout = Layout::write(&tmp.path().join("layout"), "latest", layers, run)?;
        let repo = unique_repo(hint);
        let pushed = tags
            .iter()
            .map(|t| self.push(&layout, &repo, t, false))
            .collect::<Result<Vec<_>>>()?;
        Ok((layout, pushed))
    }

    /// Pushes busybox with a shell as `<unique repo named after hint>:v1`, over a layer whose
    /// one file `marker` holds another unique repo name, so that no other test or run pushes
    /// the same blobs.
    pub fn push_marked(&self, hint: &str) -> Result<(Layout, Pushed)> {
        let marker = Layer::from_entries(&[Entry::file("marker", unique_repo(hint))])?;
        let (layout, mut pushed) = self.push_new(
            hint,
            &[Layer::busybox()?, marker],
            &RunConfig::shell(),
            &["v1"],
        )?;
        Ok((layout, pushed.remove(0)))
    }

    /// The file in the registry's storage holding blob `digest`.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = hex_of(digest);
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// Flips bytes in the middle of blob `digest` in the registry's storage (same size, so
    /// only the digest check can notice) until the returned guard is dropped or restored.
    pub fn tamper_blob(&self, digest: &str) -> Result<Tampered> {
        let path = self.blob_file(digest);
        let original =
            std::fs::read(&path).with_context(|| format!("reading the blob {}", path.display()))?;
        if original.len() < 16 {
            bail!(
                "blob {digest} is too small ({} bytes) to tamper with",
                original.len()
            );
        }
        let mut bytes = original.clone();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 8] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(Tampered {
            path,
            original: Some(original),
        })
    }
}

/// A tampered registry blob; dropping it puts the original bytes back.
pub struct Tampered {
    path: PathBuf,
    original: Option<Vec<u8>>,
}

impl Tampered {
    pub fn restore(mut self) -> Result<()> {
        self.put_back()
    }
    fn put_back(&mut self) -> Result<()> {
        if let Some(bytes) = self.original.take() {
            std::fs::write(&self.path, bytes)
                .with_context(|| format!("restoring {}", self.path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Tampered {
    fn drop(&mut self) {
        if let Err(e) = self.put_back() {
            eprintln!("e2e: {e:#}");
        }
    }
}

/// A repository name no other test (or earlier run) uses: `e2e/<hint>-<pid>-<n>-<time>`.
pub fn unique_repo(hint: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("e2e/{hint}-{}-{n}-{t}", std::process::id())
}

/// The HTTP status of `GET path` on `host` (`127.0.0.1:PORT`), HTTP/1.0 over a plain socket.
fn http_status(host: &str, path: &str) -> Result<u16> {
    let addr: SocketAddr = host
        .parse()
        .with_context(|| format!("{host} is not IP:PORT"))?;
    let timeout = Duration::from_secs(3);
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))
}

/// A loopback port with a listener that never accepts: stands for an upstream registry that
/// must not be contacted. [`Unreachable::contacted`] says whether anyone connected.
pub struct Unreachable {
    listener: std::net::TcpListener,
}

impl Unreachable {
    pub fn new() -> Result<Unreachable> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        Ok(Unreachable { listener })
    }
    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }
    /// True when a connection is waiting in the backlog (someone contacted the port).
    pub fn contacted(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

/// A loopback `IP:PORT` nothing listens on (bound, then closed: connections are refused).
pub fn dead_host() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}
