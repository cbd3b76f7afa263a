//! The pull engine shared by CRI PullImage and podd.v1 PullImage: resolve the reference on
//! the first endpoint that answers, download missing blobs (each once, however many pulls
//! want it), then hand the verified blobs to the store's ingestion path.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::StreamExt;
use tracing::{debug, info, warn};

use super::auth::PullAuth;
use super::client::{error_chain, EndpointClient, Resolved};
use super::error::RegistryError;
use super::hosts::Registries;
use crate::image::digest::Digest;
use crate::image::index;
use crate::image::reference::{normalize_reference, Reference};
use crate::image::{Image, ImageError, ImageStore};
use crate::store::Durability;

/// Downloads running at once, over all pulls.
const MAX_DOWNLOADS: usize = 4;
/// A pull whose shared download failed downloads it itself at most this many times.
const MAX_WAITER_RETRIES: usize = 3;
/// Progress is reported about every this many bytes.
const REPORT_EVERY: u64 = 256 << 10;

/// One progress event of a pull (podd.v1 PullProgress without the final message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Empty for events about the whole pull (resolving).
    pub digest: String,
    /// "manifest", "index", "config" or "layer".
    pub kind: &'static str,
    pub total: u64,
    pub current: u64,
    /// "resolving", "waiting", "downloading", "exists", "verifying", "unpacking", "done".
    pub status: &'static str,
}

/// Where progress goes; a closed receiver is fine (the CRI call does not stream).
pub type ProgressTx = mpsc::UnboundedSender<Progress>;

/// The state of one blob download, shared with every pull waiting for it.
#[derive(Debug, Clone)]
enum Download {
    Running(u64),
    Done(Result<(), RegistryError>),
}

type InFlight = Arc<Mutex<HashMap<Digest, watch::Receiver<Download>>>>;

/// Pulls images into one store. `Send + Sync`; share it behind an `Arc`.
pub struct Puller {
    store: Arc<ImageStore>,
    registries: Registries,
    inflight: InFlight,
    slots: Arc<Semaphore>,
    /// Runs once between the downloads and the ingestion of the next pull.
    #[cfg(test)]
    pub(crate) before_ingest: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// One pull's own directory of hard links to every blob it needs (under the shared
/// download directory), removed when the pull ends. A link keeps the content alive
/// whatever happens to the file it was made from: a RemoveImage that garbage-collects a
/// stored blob, or another pull that cleans up a shared download after ingesting it.
struct PullDir(PathBuf);

impl Drop for PullDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            warn!(path = %self.0.display(), error = %e, "cannot remove a pull's directory; it is removed at the next start");
        }
    }
}

/// A blob the pull needs.
struct Need {
    digest: Digest,
    size: u64,
    kind: &'static str,
}

impl Puller {
    pub fn new(store: Arc<ImageStore>, registries: Registries) -> Puller {
        Puller {
            store,
            registries,
            inflight: Arc::default(),
            slots: Arc::new(Semaphore::new(MAX_DOWNLOADS)),
            #[cfg(test)]
            before_ingest: Mutex::new(None),
        }
    }

    pub fn store(&self) -> &Arc<ImageStore> {
        &self.store
    }

    /// Pulls `reference` (normalised as docker does) and returns the stored image.
    pub async fn pull(
        &self,
        reference: &str,
        auth: &PullAuth,
        progress: &ProgressTx,
    ) -> Result<Image, ImageError> {
        let result = self.pull_inner(reference, auth, progress).await;
        if let Err(e) = &result {
            warn!(reference, error = %e, "pull failed");
        }
        result
    }

    async fn pull_inner(
        &self,
        reference: &str,
        auth: &PullAuth,
        progress: &ProgressTx,
    ) -> Result<Image, ImageError> {
        let started = Instant::now();
        let normalized = normalize_reference(reference)?;
        let r = Reference::parse(&normalized)?;
        let wanted_digest = r.digest.as_deref().map(Digest::parse).transpose()?;
        if wanted_digest.is_some() {
            // Content-addressed: what the store has under this digest is what was asked for.
            let store = Arc::clone(&self.store);
            let n = normalized.clone();
            if let Some(image) = blocking(&normalized, move || store.resolve(&n)).await? {
                debug!(reference = %normalized, id = %image.id, "pull by digest: already stored");
                return Ok(image);
            }
        }
        let _ = progress.send(Progress {
            digest: String::new(),
            kind: "manifest",
            total: 0,
            current: 0,
            status: "resolving",
        });
        let (client, resolved) = self.resolve(&r, auth, wanted_digest.as_ref()).await?;
        let client = Arc::new(client);
        let shared = self.store.download_dir();
        let own = PullDir(shared.join(format!("pull-{}", uuid::Uuid::new_v4())));
        tokio::fs::create_dir_all(&own.0)
            .await
            .map_err(|e| ImageError::io("create directory", &own.0, e))?;

        let manifest_size = resolved.manifest_bytes.len() as u64;
        let path = own.0.join(resolved.manifest_digest.hex());
        let bytes = resolved.manifest_bytes.clone();
        // Content flushed: the store's commit links this very file into its blobs.
        blocking(&normalized, move || {
            index::write_atomic(&path, &bytes, Durability::OldOrNew)
        })
        .await??;
        if let Some(index) = &resolved.index_digest {
            let _ = progress.send(done(index, "index", 0));
        }
        let _ = progress.send(done(&resolved.manifest_digest, "manifest", manifest_size));

        let needs = needs(&resolved)?;
        let mut tasks = tokio::task::JoinSet::new();
        for need in needs.iter() {
            let fetch = self.fetch(
                Arc::clone(&client),
                own.0.clone(),
                need.digest.clone(),
                need.size,
                need.kind,
                progress.clone(),
            );
            tasks.spawn(fetch);
        }
        let mut downloaded = 0u64;
        let mut first_err = None;
        while let Some(res) = tasks.join_next().await {
            let res = res.map_err(|e| joined(&normalized, "a blob download", e));
            match res.and_then(|r| r) {
                Ok(bytes) => downloaded += bytes,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e.into());
        }

        let downloaded_at = started.elapsed();
        #[cfg(test)]
        let hook = self.before_ingest.lock().unwrap().take();
        let store = Arc::clone(&self.store);
        let dir = own.0.clone();
        let tag = normalized.clone();
        let manifest_digest = resolved.manifest_digest.clone();
        let index_digest = resolved.index_digest.clone();
        let sizes: HashMap<Digest, u64> =
            needs.iter().map(|n| (n.digest.clone(), n.size)).collect();
        let tx = progress.clone();
        let image = blocking(&normalized, move || {
            #[cfg(test)]
            if let Some(hook) = hook {
                hook();
            }
            store.ingest_pulled(
                &dir,
                &manifest_digest,
                manifest_size,
                &tag,
                index_digest,
                &mut |blob, _diff_id| {
                    let total = sizes.get(blob).copied().unwrap_or(0);
                    let _ = tx.send(Progress {
                        digest: blob.to_string(),
                        kind: "layer",
                        total,
                        current: total,
                        status: "unpacking",
                    });
                },
            )
        })
        .await??;
        drop(own);
        for need in &needs {
            // The store has it now; a pull still wanting the download has its own link.
            if self.store.blob_path(&need.digest).is_file() {
                let _ = tokio::fs::remove_file(shared.join(need.digest.hex())).await;
            }
            let _ = progress.send(done(&need.digest, need.kind, need.size));
        }
        info!(
            reference = %normalized,
            endpoint = %client.endpoint().url(),
            id = %image.id,
            bytes = downloaded,
            ms = started.elapsed().as_millis() as u64,
            download_ms = downloaded_at.as_millis() as u64,
            "pulled image"
        );
        Ok(image)
    }

    /// Resolves the reference on the first endpoint that answers: mirrors in order, then the
    /// host. When all fail, the error is the host's, listing what every endpoint answered.
    async fn resolve(
        &self,
        r: &Reference,
        auth: &PullAuth,
        digest: Option<&Digest>,
    ) -> Result<(EndpointClient, Resolved), RegistryError> {
        let endpoints = self.registries.endpoints(&r.domain);
        let mut tried = Vec::new();
        let mut last = None;
        for first in &endpoints {
            let mut ep = first.clone();
            let mut fell_back = false;
            loop {
                let attempt = async {
                    let client = EndpointClient::new(&ep, r, auth.for_endpoint(&ep))?;
                    let resolved = client.resolve(r.tag.as_deref(), digest).await?;
                    Ok::<_, RegistryError>((client, resolved))
                }
                .await;
                let e = match attempt {
                    Ok(found) => return Ok(found),
                    Err(e) => e,
                };
                if ep.mirror {
                    warn!(reference = %r, mirror = %ep.url(), error = %e, "mirror failed; trying the next endpoint");
                }
                let role = if ep.mirror { "mirror" } else { "host" };
                let connect = matches!(e, RegistryError::Connect { .. });
                let answered = matches!(
                    e,
                    RegistryError::CredentialsRefused { .. }
                        | RegistryError::CredentialsRequired { .. }
                        | RegistryError::Denied { .. }
                        | RegistryError::NotFound { .. }
                        | RegistryError::Tampered { .. }
                );
                if fell_back && answered {
                    // A registry answered over plain HTTP: its answer is the error; the TLS
                    // failure before it only said that it speaks plain HTTP. Anything else
                    // (an HTTPS-only server refusing plain HTTP, say) keeps both.
                    tried.pop();
                }
                tried.push(format!("{} ({role}): {}", ep.url(), e.brief()));
                let fallback = ep.http_fallback && connect;
                last = Some(e);
                if !fallback {
                    break;
                }
                debug!(reference = %r, registry = %ep.url(), "no TLS connection to this loopback registry; trying plain HTTP");
                ep = ep.over_plain_http();
                fell_back = true;
            }
        }
        let last = last.expect("at least the host itself is tried");
        if tried.len() == 1 {
            return Err(last);
        }
        Err(RegistryError::Endpoints {
            last: Box::new(last),
            tried: tried.join("; "),
        })
    }

    /// Links the verified blob into the pull's own directory `own`, from the store or the
    /// shared download directory, downloading it first unless another pull already is
    /// (then it waits for that one). Returns the bytes this call downloaded itself.
    fn fetch(
        &self,
        client: Arc<EndpointClient>,
        own: PathBuf,
        digest: Digest,
        size: u64,
        kind: &'static str,
        progress: ProgressTx,
    ) -> impl std::future::Future<Output = Result<u64, RegistryError>> + Send + 'static {
        let store = Arc::clone(&self.store);
        let job = Job {
            client,
            digest,
            size,
            kind,
            dir: self.store.download_dir(),
            inflight: Arc::clone(&self.inflight),
            slots: Arc::clone(&self.slots),
        };
        async move {
            let report = |status: &'static str, current: u64| {
                let _ = progress.send(Progress {
                    digest: job.digest.to_string(),
                    kind: job.kind,
                    total: job.size,
                    current,
                    status,
                });
            };
            let shared = job.dir.join(job.digest.hex());
            let mine = own.join(job.digest.hex());
            let link = |from: &Path| -> Result<bool, RegistryError> {
                match std::fs::hard_link(from, &mine) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(true),
                    // Gone since (garbage-collected, or cleaned up after an ingest).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(RegistryError::Local {
                        reference: job.client.reference().to_string(),
                        digest: job.digest.to_string(),
                        detail: format!("link {} to {}: {e}", from.display(), mine.display()),
                    }),
                }
            };
            let mut downloaded = 0;
            // Content can vanish between a download and the link to it; each round trips
            // over that at most once more, so a few rounds settle it.
            for _ in 0..3 {
                if link(&store.blob_path(&job.digest))? || link(&shared)? {
                    if downloaded == 0 {
                        report("exists", job.size);
                    }
                    return Ok(downloaded);
                }
                downloaded += job.download_shared(&report).await?;
            }
            Err(RegistryError::Local {
                reference: job.client.reference().to_string(),
                digest: job.digest.to_string(),
                detail: "the downloaded blob was removed before it could be linked for this pull, three times; pull again".into(),
            })
        }
    }
}

/// One blob download, reporting to every pull that waits for it.
#[derive(Clone)]
struct Job {
    client: Arc<EndpointClient>,
    digest: Digest,
    size: u64,
    kind: &'static str,
    dir: PathBuf,
    inflight: InFlight,
    slots: Arc<Semaphore>,
}

impl Job {
    /// Downloads the blob into the shared download directory, or waits for the pull that
    /// already is. Returns the bytes this call downloaded itself.
    async fn download_shared(
        &self,
        report: &(dyn Fn(&'static str, u64) + Send + Sync),
    ) -> Result<u64, RegistryError> {
        let mut retries = 0;
        loop {
            let (result, leader) = self.download_or_wait(report).await;
            match result {
                // Another pull's download ran with its endpoint and credentials: its failure
                // says little about this pull's, which now tries with its own (as the leader,
                // unless yet another pull got there first). Corrupt content is not retried:
                // the digest names the same bytes everywhere.
                Err(e)
                    if !leader
                        && !matches!(e, RegistryError::Tampered { .. })
                        && retries < MAX_WAITER_RETRIES =>
                {
                    retries += 1;
                    warn!(blob = %self.digest, error = %e, endpoint = %self.client.endpoint().url(), "a download this pull waited for failed; downloading it from this pull's endpoint");
                }
                other => return other,
            }
        }
    }

    /// One round of [`Self::download_shared`]: leads a new download or waits for the one
    /// running. Returns the result and whether this call led.
    async fn download_or_wait(
        &self,
        report: &(dyn Fn(&'static str, u64) + Send + Sync),
    ) -> (Result<u64, RegistryError>, bool) {
        let (mut rx, leader) = {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&self.digest) {
                Some(rx) => (rx.clone(), false),
                None => {
                    let (tx, rx) = watch::channel(Download::Running(0));
                    map.insert(self.digest.clone(), rx.clone());
                    // A task of its own: a pull whose client goes away does not cancel
                    // a download other pulls may be waiting for.
                    tokio::spawn(self.clone().run(tx));
                    (rx, true)
                }
            }
        };
        let status = if leader { "downloading" } else { "waiting" };
        let bytes = if leader { self.size } else { 0 };
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                Download::Done(Ok(())) => {
                    report("verifying", self.size);
                    return (Ok(bytes), leader);
                }
                Download::Done(Err(e)) => return (Err(e), leader),
                Download::Running(n) => report(status, n),
            }
            if rx.changed().await.is_err() {
                if let Download::Done(r) = rx.borrow().clone() {
                    return (r.map(|()| bytes), leader);
                }
                let e = RegistryError::Interrupted {
                    reference: self.client.reference().to_string(),
                    digest: self.digest.to_string(),
                    detail: "the download task ended without a result".into(),
                };
                return (Err(e), leader);
            }
        }
    }

    async fn run(self, tx: watch::Sender<Download>) {
        let result = match self.slots.clone().acquire_owned().await {
            Ok(_permit) => self.download(&tx).await,
            Err(_) => Err(RegistryError::Interrupted {
                reference: self.client.reference().to_string(),
                digest: self.digest.to_string(),
                detail: "the download queue was closed".into(),
            }),
        };
        if let Err(e) = &result {
            warn!(blob = %self.digest, kind = self.kind, error = %e, "blob download failed");
        }
        // Out of the map first: a pull arriving now finds the file (or starts afresh).
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.digest);
        tx.send_replace(Download::Done(result));
    }

    /// Streams the blob to `<hex>.partial-<uuid>`, counting as it goes, and renames it to
    /// `<hex>` only once size and digest match.
    async fn download(&self, tx: &watch::Sender<Download>) -> Result<(), RegistryError> {
        let tmp = self.dir.join(format!(
            "{}.partial-{}",
            self.digest.hex(),
            uuid::Uuid::new_v4()
        ));
        let result = self.download_to(&tmp, tx).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn download_to(
        &self,
        tmp: &Path,
        tx: &watch::Sender<Download>,
    ) -> Result<(), RegistryError> {
        let registry = self.client.endpoint().url();
        let local = |what: &str, e: std::io::Error| RegistryError::Local {
            reference: self.client.reference().to_string(),
            digest: self.digest.to_string(),
            detail: format!("{what} {}: {e}", tmp.display()),
        };
        let tampered = |detail: String| RegistryError::Tampered {
            what: self.kind,
            digest: self.digest.to_string(),
            registry: registry.clone(),
            detail,
        };
        let mut stream = self
            .client
            .blob_stream(&self.digest, self.size)
            .await
            .map_err(|e| match e {
                RegistryError::Tampered { detail, .. } => tampered(detail),
                other => other,
            })?;
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| local("create", e))?;
        let (mut n, mut reported) = (0u64, 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                // oci-client hashes the stream itself: content that does not match the
                // digest ends it with an error carrying a DigestError instead of its end.
                Err(e) => {
                    let is_digest = e
                        .get_ref()
                        .is_some_and(|i| i.is::<oci_client::errors::DigestError>());
                    return Err(if is_digest {
                        tampered(e.to_string())
                    } else {
                        RegistryError::Unavailable {
                            registry: registry.clone(),
                            reference: self.client.reference().to_string(),
                            detail: format!(
                                "download of {} broke off after {n} bytes: {}",
                                self.digest,
                                error_chain(&e)
                            ),
                        }
                    });
                }
            };
            n += chunk.len() as u64;
            if n > self.size {
                return Err(tampered(format!(
                    "it is longer than the {} bytes its descriptor gives",
                    self.size
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| local("write", e))?;
            if reported == 0 || n - reported >= REPORT_EVERY {
                tx.send_replace(Download::Running(n));
                reported = n;
            }
        }
        if n != self.size {
            return Err(tampered(format!(
                "it has {n} bytes, its descriptor gives {}",
                self.size
            )));
        }
        // Only the content needs flushing: the store's commit links this file in and fsyncs
        // its blobs directory, and names under tmp/ do not outlive a restart anyway
        // (ImageStore::open empties it).
        file.sync_all().await.map_err(|e| local("fsync", e))?;
        drop(file);
        let dest = self.dir.join(self.digest.hex());
        tokio::fs::rename(tmp, &dest)
            .await
            .map_err(|e| local("rename", e))?;
        tx.send_replace(Download::Running(n));
        Ok(())
    }
}

/// The config and layer blobs of a manifest, each once, checked for media types podd can
/// unpack.
fn needs(resolved: &Resolved) -> Result<Vec<Need>, ImageError> {
    let m = &resolved.manifest;
    let mut out = vec![Need {
        digest: Digest::parse(m.config().digest().as_ref())?,
        size: m.config().size(),
        kind: "config",
    }];
    for layer in m.layers() {
        let media = layer.media_type().to_string();
        let digest = Digest::parse(layer.digest().as_ref())?;
        if !(media.starts_with("application/vnd.oci.image.layer.")
            || media.starts_with("application/vnd.docker.image.rootfs."))
        {
            return Err(ImageError::UnsupportedLayer {
                digest: digest.to_string(),
                reason: format!(
                    "media type {media} is not an image layer (manifest {})",
                    resolved.manifest_digest
                ),
            });
        }
        if out.iter().all(|n| n.digest != digest) {
            out.push(Need {
                digest,
                size: layer.size(),
                kind: "layer",
            });
        }
    }
    Ok(out)
}

fn done(digest: &Digest, kind: &'static str, size: u64) -> Progress {
    Progress {
        digest: digest.to_string(),
        kind,
        total: size,
        current: size,
        status: "done",
    }
}

/// Runs blocking store work of the pull of `reference` off the async workers.
async fn blocking<T: Send + 'static>(
    reference: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| joined(reference, "storing the image", e))
}

/// A task of the pull that panicked or was cancelled, as an error for this pull only: the
/// request handler, and other pulls, go on.
fn joined(reference: &str, task: &str, e: tokio::task::JoinError) -> RegistryError {
    let detail = if e.is_panic() {
        let payload = e.into_panic();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        format!("{task} panicked: {msg}")
    } else {
        format!("{task} was cancelled")
    };
    RegistryError::Task {
        reference: reference.to_string(),
        detail,
    }
}
