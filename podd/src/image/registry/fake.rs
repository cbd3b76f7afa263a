//! An in-process OCI registry for tests (axum on 127.0.0.1:0): manifests, indexes and blobs
//! by repository, Basic or Bearer-challenge auth, tampered and broken blobs, slow blobs,
//! and request counts.
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use serde_json::json;

use crate::image::digest::sha256_bytes;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const TOKEN: &str = "fake-token-123";

#[derive(Clone, Debug, PartialEq)]
pub enum AuthMode {
    None,
    Basic(String, String),
    /// 401 with a Bearer challenge; /token hands out a token for these Basic credentials.
    Bearer(String, String),
}

#[derive(Default)]
struct Inner {
    /// (repo, tag) -> manifest digest
    tags: HashMap<(String, String), String>,
    /// digest -> (content, media type)
    content: HashMap<String, (Vec<u8>, String)>,
    tampered: HashSet<String>,
    /// Blobs whose body breaks off half way.
    broken: HashSet<String>,
    /// Blobs served slowly (in pieces, with pauses).
    slow: HashSet<String>,
    /// Blobs whose body sends half, then breaks off once the test releases it.
    held: HashMap<String, Arc<tokio::sync::Notify>>,
    /// request path -> count
    hits: HashMap<String, usize>,
    /// Every request answers this status (a failing mirror).
    fail_all: Option<StatusCode>,
    /// Requests that carried an Authorization header.
    authorizations: usize,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    auth: Arc<Mutex<AuthMode>>,
    addr: SocketAddr,
}

pub struct FakeRegistry {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A layer to build: tar bytes and how to compress them.
#[derive(Clone, Copy, PartialEq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// What `add_image` made.
pub struct Built {
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

impl FakeRegistry {
    pub async fn start(auth: AuthMode) -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            inner: Arc::default(),
            auth: Arc::new(Mutex::new(auth)),
            addr,
        };
        let app = Router::new()
            .route("/token", get(token))
            .fallback(serve)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeRegistry { addr, shared, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    pub fn put(&self, data: Vec<u8>, media_type: &str) -> String {
        let d = sha256_bytes(&data).to_string();
        self.inner()
            .content
            .insert(d.clone(), (data, media_type.to_string()));
        d
    }

    pub fn tag(&self, repo: &str, tag: &str, digest: &str) {
        self.inner()
            .tags
            .insert((repo.to_string(), tag.to_string()), digest.to_string());
    }

    /// Builds an image of the given layer tars; `docker` picks Docker schema-2 media types.
    pub fn add_image(
        &self,
        repo: &str,
        tag: &str,
        layers: &[(Vec<u8>, Compression)],
        docker: bool,
    ) -> Built {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut layer_digests = Vec::new();
        for (tar, comp) in layers {
            diff_ids.push(sha256_bytes(tar).to_string());
            let (blob, media) = match comp {
                Compression::Gzip => {
                    let mut gz =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(tar).unwrap();
                    let media = if docker {
                        "application/vnd.docker.image.rootfs.diff.tar.gzip"
                    } else {
                        "application/vnd.oci.image.layer.v1.tar+gzip"
                    };
                    (gz.finish().unwrap(), media)
                }
                Compression::Zstd => (
                    zstd::encode_all(&tar[..], 3).unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                ),
                Compression::None => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            };
            let size = blob.len();
            let d = self.put(blob, "application/octet-stream");
            layer_digests.push(d.clone());
            descs.push(json!({"mediaType": media, "digest": d, "size": size}));
        }
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "true"], "Env": ["A=1"],
                       "WorkingDir": "/w", "User": "1000:1000"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        }))
        .unwrap();
        let config_size = config.len();
        let config_digest = self.put(config, "application/octet-stream");
        let (mt, cmt) = if docker {
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
            )
        } else {
            (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json")
        };
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": cmt, "digest": config_digest, "size": config_size},
            "layers": descs,
        }))
        .unwrap();
        let manifest_size = manifest.len() as u64;
        let manifest_digest = self.put(manifest, mt);
        self.tag(repo, tag, &manifest_digest);
        Built {
            manifest_digest,
            manifest_size,
            config_digest,
            layer_digests,
        }
    }

    /// An index of `(os, arch, manifest digest, size)` tagged `tag`; returns its digest.
    pub fn add_index(
        &self,
        repo: &str,
        tag: &str,
        entries: &[(&str, &str, &str, u64)],
        docker: bool,
    ) -> String {
        let (mt, entry_mt) = if docker {
            (DOCKER_LIST, DOCKER_MANIFEST)
        } else {
            (OCI_INDEX, OCI_MANIFEST)
        };
        let manifests: Vec<_> = entries
            .iter()
            .map(|(os, arch, d, size)| {
                json!({"mediaType": entry_mt, "digest": d, "size": size,
                       "platform": {"os": os, "architecture": arch}})
            })
            .collect();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": mt, "manifests": manifests
        }))
        .unwrap();
        let d = self.put(index, mt);
        self.tag(repo, tag, &d);
        d
    }

    pub fn tamper(&self, digest: &str) {
        self.inner().tampered.insert(digest.to_string());
    }

    pub fn break_blob(&self, digest: &str, broken: bool) {
        let mut i = self.inner();
        if broken {
            i.broken.insert(digest.to_string());
        } else {
            i.broken.remove(digest);
        }
    }

    /// Blob `digest` sends half its body, then breaks off when the returned Notify is
    /// notified.
    pub fn hold_then_break(&self, digest: &str) -> Arc<tokio::sync::Notify> {
        let n = Arc::new(tokio::sync::Notify::new());
        self.inner().held.insert(digest.to_string(), Arc::clone(&n));
        n
    }

    pub fn slow(&self, digest: &str) {
        self.inner().slow.insert(digest.to_string());
    }

    pub fn fail_all(&self, status: Option<StatusCode>) {
        self.inner().fail_all = status;
    }

    /// Requests so far that carried an Authorization header (token requests included).
    pub fn authorizations(&self) -> usize {
        self.inner().authorizations
    }

    /// GET requests of blob `digest` so far.
    pub fn blob_hits(&self, digest: &str) -> usize {
        let i = self.inner();
        i.hits
            .iter()
            .filter(|(p, _)| p.ends_with(&format!("/blobs/{digest}")))
            .map(|(_, n)| *n)
            .sum()
    }
}

fn basic_ok(headers: &HeaderMap, user: &str, pass: &str) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == want.as_bytes())
}

fn unauthorized(challenge: String) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        axum::Json(
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
        ),
    )
        .into_response()
}

async fn token(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let auth = s.auth.lock().unwrap().clone();
    if headers.contains_key(header::AUTHORIZATION) {
        s.inner.lock().unwrap().authorizations += 1;
    }
    match auth {
        AuthMode::Bearer(u, p) if basic_ok(&headers, &u, &p) => {
            axum::Json(json!({"token": TOKEN})).into_response()
        }
        _ => (StatusCode::UNAUTHORIZED, "invalid username or password").into_response(),
    }
}

fn not_found(code: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"errors": [{"code": code, "message": "unknown"}]})),
    )
        .into_response()
}

async fn serve(State(s): State<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let auth = s.auth.lock().unwrap().clone();
    let repo_scope = path
        .strip_prefix("/v2/")
        .and_then(|r| r.rsplit_once("/manifests/").or(r.rsplit_once("/blobs/")))
        .map(|(repo, _)| repo.to_string())
        .unwrap_or_default();
    let authorized = match &auth {
        AuthMode::None => true,
        AuthMode::Basic(u, p) => basic_ok(&headers, u, p),
        AuthMode::Bearer(..) => headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes()),
    };
    let challenge = match &auth {
        AuthMode::Bearer(..) => format!(
            "Bearer realm=\"http://{}/token\",service=\"fake\",scope=\"repository:{repo_scope}:pull\"",
            s.addr
        ),
        _ => "Basic realm=\"fake\"".to_string(),
    };
    let fail = {
        let mut i = s.inner.lock().unwrap();
        *i.hits.entry(path.clone()).or_default() += 1;
        if headers.contains_key(header::AUTHORIZATION) {
            i.authorizations += 1;
        }
        i.fail_all
    };
    if let Some(status) = fail {
        return (status, "failing on purpose").into_response();
    }
    if path == "/v2/" || path == "/v2" {
        return if authorized {
            StatusCode::OK.into_response()
        } else {
            unauthorized(challenge)
        };
    }
    if !authorized {
        return unauthorized(challenge);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some((repo, r)) = rest.rsplit_once("/manifests/") {
        let i = s.inner.lock().unwrap();
        let digest = if r.starts_with("sha256:") {
            r.to_string()
        } else {
            match i.tags.get(&(repo.to_string(), r.to_string())) {
                Some(d) => d.clone(),
                None => return not_found("MANIFEST_UNKNOWN"),
            }
        };
        let Some((data, mt)) = i.content.get(&digest) else {
            return not_found("MANIFEST_UNKNOWN");
        };
        let mut data = data.clone();
        if i.tampered.contains(&digest) {
            data.push(b' ');
        }
        return (
            [
                (header::CONTENT_TYPE, mt.clone()),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    digest,
                ),
            ],
            data,
        )
            .into_response();
    }
    if let Some((_, d)) = rest.rsplit_once("/blobs/") {
        let (data, tampered, broken, slow, held) = {
            let i = s.inner.lock().unwrap();
            let Some((data, _)) = i.content.get(d) else {
                return not_found("BLOB_UNKNOWN");
            };
            (
                data.clone(),
                i.tampered.contains(d),
                i.broken.contains(d),
                i.slow.contains(d),
                i.held.get(d).cloned(),
            )
        };
        let mut data = data;
        if tampered {
            let last = data.len() - 1;
            data[last] ^= 0xff;
        }
        let len = data.len();
        let half = len / 2;
        let stream = async_stream(data, broken, slow, held, half);
        return Response::builder()
            .header(header::CONTENT_LENGTH, len)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    StatusCode::NOT_FOUND.into_response()
}

/// The blob body: whole, in slow pieces, or breaking off after `half` bytes.
fn async_stream(
    data: Vec<u8>,
    broken: bool,
    slow: bool,
    held: Option<Arc<tokio::sync::Notify>>,
    half: usize,
) -> impl tokio_stream::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        if let Some(release) = held {
            let _ = tx.send(Ok(bytes::Bytes::from(data[..half].to_vec()))).await;
            release.notified().await;
            let _ = tx
                .send(Err(std::io::Error::other("broken on purpose")))
                .await;
            return;
        }
        if broken {
            let _ = tx.send(Ok(bytes::Bytes::from(data[..half].to_vec()))).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx
                .send(Err(std::io::Error::other("broken on purpose")))
                .await;
            return;
        }
        if slow {
            for piece in data.chunks(data.len().div_ceil(8).max(1)) {
                if tx
                    .send(Ok(bytes::Bytes::from(piece.to_vec())))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return;
        }
        let _ = tx.send(Ok(bytes::Bytes::from(data))).await;
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

impl FakeRegistry {
    pub fn inner_clear_tamper(&self, digest: &str) {
        self.inner().tampered.remove(digest);
    }

    pub fn size_of(&self, digest: &str) -> usize {
        self.inner().content[digest].0.len()
    }
}
