//! One registry endpoint spoken to through oci-client: authentication (Basic, or the Bearer
//! challenge and token flow), manifest resolution down to the linux/<arch> image manifest,
//! blob streams, and oci-client's errors turned into [`RegistryError`]s that say who
//! answered what.
use std::sync::Once;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, Reference as OciReference, RegistryOperation};
use oci_spec::image::{ImageIndex, ImageManifest};
use serde::Deserialize;

use super::auth::Credentials;
use super::error::RegistryError;
use super::hosts::Endpoint;
use crate::image::digest::{sha256_bytes, Digest};
use crate::image::layout::{
    HOST_ARCH, MAX_JSON_BLOB, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
};
use crate::image::reference::Reference;

const ACCEPT: &[&str] = &[
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_LIST,
];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A stalled download fails instead of hanging the pull for ever.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Nested indexes followed at most this deep.
const MAX_INDEX_DEPTH: usize = 4;

/// A client for one endpoint and one repository.
pub(crate) struct EndpointClient {
    client: Client,
    endpoint: Endpoint,
    /// The repository on this endpoint, for oci-client calls.
    repo: OciReference,
    /// The normalised reference being pulled, for messages.
    reference: String,
    /// What this endpoint is sent: the pull's credentials, or none (see `PullAuth`).
    creds: Credentials,
}

/// What a reference resolved to on an endpoint.
pub(crate) struct Resolved {
    pub manifest: ImageManifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: Digest,
    /// The index (or manifest list) digest when the reference named one.
    pub index_digest: Option<Digest>,
}

/// Just enough of a manifest to tell an index from an image manifest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    // reqwest is built without a default provider (ring instead of aws-lc, which needs a
    // C toolchain with cmake); install ring once, whoever asks first.
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl EndpointClient {
    pub fn new(
        endpoint: &Endpoint,
        reference: &Reference,
        creds: Credentials,
    ) -> Result<Self, RegistryError> {
        install_crypto_provider();
        let config = ClientConfig {
            protocol: if endpoint.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: endpoint.skip_verify,
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("podd/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| RegistryError::Protocol {
            registry: endpoint.url(),
            reference: reference.to_string(),
            detail: format!("cannot set up an HTTP client: {e}"),
        })?;
        let repo = OciReference::with_tag(
            endpoint.host.clone(),
            reference.path.clone(),
            "latest".to_string(),
        );
        Ok(EndpointClient {
            client,
            endpoint: endpoint.clone(),
            repo,
            reference: reference.to_string(),
            creds,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The normalised reference being pulled.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Authenticates (fetching a token when the registry challenges for one), then fetches
    /// the manifest `tag_or_digest` names, following an index to its linux/HOST_ARCH entry.
    /// Every manifest fetched by digest is checked against that digest.
    pub async fn resolve(
        &self,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Resolved, RegistryError> {
        let auth = self.creds.to_oci();
        self.client
            .auth(&self.repo, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.classify(e, "manifest"))?;
        let first = match digest {
            Some(d) => self.repo.clone_with_digest(d.to_string()),
            None => OciReference::with_tag(
                self.repo.registry().to_string(),
                self.repo.repository().to_string(),
                tag.unwrap_or("latest").to_string(),
            ),
        };
        let (mut bytes, mut current) = self.fetch_manifest(&first, digest).await?;
        let mut index_digest = None;
        for _ in 0..=MAX_INDEX_DEPTH {
            let probe: Probe = serde_json::from_slice(&bytes)
                .map_err(|e| self.protocol(format!("manifest {current} is not JSON: {e}")))?;
            let is_index = match probe.media_type.as_deref() {
                Some(MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST) => true,
                Some(MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST) => false,
                Some(other) => {
                    return Err(self.protocol(format!(
                        "manifest {current} has media type {other}, which is not an image manifest or index"
                    )))
                }
                None => probe.manifests.is_some(),
            };
            if !is_index {
                let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
                    self.protocol(format!("cannot parse image manifest {current}: {e}"))
                })?;
                return Ok(Resolved {
                    manifest,
                    manifest_bytes: bytes,
                    manifest_digest: current,
                    index_digest,
                });
            }
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| self.protocol(format!("cannot parse image index {current}: {e}")))?;
            let entry = pick_platform(&index).ok_or_else(|| {
                let platforms: Vec<String> = index
                    .manifests()
                    .iter()
                    .filter_map(|m| m.platform().as_ref())
                    .map(|p| format!("{}/{}", p.os(), p.architecture()))
                    .collect();
                self.protocol(format!(
                    "image index {current} has no linux/{HOST_ARCH} entry (it has: {})",
                    if platforms.is_empty() {
                        "none with a platform".to_string()
                    } else {
                        platforms.join(", ")
                    }
                ))
            })?;
            let child = Digest::parse(entry.as_ref()).map_err(|e| self.protocol(e.to_string()))?;
            index_digest.get_or_insert(current.clone());
            let (b, d) = self
                .fetch_manifest(
                    &self.repo.clone_with_digest(child.to_string()),
                    Some(&child),
                )
                .await?;
            bytes = b;
            current = d;
        }
        Err(self.protocol(format!(
            "image indexes nested more than {MAX_INDEX_DEPTH} deep"
        )))
    }

    /// Fetches one manifest; checks its size bound and, when `expected` is given, its
    /// digest. Returns the bytes and their digest.
    async fn fetch_manifest(
        &self,
        r: &OciReference,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest), RegistryError> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(r, &self.creds.to_oci(), ACCEPT)
            .await
            .map_err(|e| self.classify(e, "manifest"))?;
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(self.protocol(format!(
                "manifest is {} bytes, above the {MAX_JSON_BLOB} byte limit",
                bytes.len()
            )));
        }
        let actual = sha256_bytes(&bytes);
        if let Some(expected) = expected {
            if &actual != expected {
                return Err(RegistryError::Tampered {
                    what: "manifest",
                    digest: expected.to_string(),
                    registry: self.endpoint.url(),
                    detail: format!("content hashes to {actual}"),
                });
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    /// Opens a blob download. The stream checks the content against `digest`: when it does
    /// not match, its last item is an error carrying an oci-client `DigestError`.
    pub async fn blob_stream(
        &self,
        digest: &Digest,
        size: u64,
    ) -> Result<oci_client::client::SizedStream, RegistryError> {
        let desc = OciDescriptor {
            digest: digest.to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        self.client
            .pull_blob_stream(&self.repo, &desc)
            .await
            .map_err(|e| self.classify(e, "blob"))
    }

    pub fn protocol(&self, detail: String) -> RegistryError {
        RegistryError::Protocol {
            registry: self.endpoint.url(),
            reference: self.reference.clone(),
            detail,
        }
    }

    /// Turns an oci-client error into what it means for the user.
    pub fn classify(&self, e: OciDistributionError, what: &'static str) -> RegistryError {
        let registry = self.endpoint.url();
        let reference = self.reference.clone();
        let unauthorized = |detail: String| {
            if self.creds.is_anonymous() {
                RegistryError::CredentialsRequired {
                    registry: registry.clone(),
                    reference: reference.clone(),
                    detail,
                }
            } else {
                RegistryError::CredentialsRefused {
                    registry: registry.clone(),
                    reference: reference.clone(),
                    detail,
                }
            }
        };
        let not_found = |detail: String| RegistryError::NotFound {
            what,
            reference: reference.clone(),
            registry: registry.clone(),
            detail,
        };
        let unavailable = |detail: String| RegistryError::Unavailable {
            registry: registry.clone(),
            reference: reference.clone(),
            detail,
        };
        match e {
            OciDistributionError::AuthenticationFailure(reason) => {
                unauthorized(format!("the token service answered: {}", reason.trim()))
            }
            OciDistributionError::UnauthorizedError { url } => {
                unauthorized(format!("HTTP 401 from {url}"))
            }
            OciDistributionError::RegistryError { envelope, url } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let detail = format!("{envelope} (from {url})");
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized))
                {
                    unauthorized(detail)
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Denied)) {
                    RegistryError::Denied {
                        registry,
                        reference,
                        detail,
                    }
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    not_found(detail)
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
                {
                    unavailable(detail)
                } else {
                    self.protocol(detail)
                }
            }
            OciDistributionError::ServerError { code, url, message } => {
                let detail = format!("HTTP {code} from {url}: {}", message.trim());
                match code {
                    401 => unauthorized(detail),
                    403 => RegistryError::Denied {
                        registry,
                        reference,
                        detail,
                    },
                    404 => not_found(detail),
                    429 | 500..=599 => unavailable(detail),
                    _ => self.protocol(detail),
                }
            }
            OciDistributionError::RequestError(err) if err.is_connect() => RegistryError::Connect {
                registry,
                reference,
                detail: error_chain(&err),
            },
            OciDistributionError::RequestError(err) => unavailable(error_chain(&err)),
            OciDistributionError::DigestError(err) => RegistryError::Tampered {
                what,
                digest: reference.clone(),
                registry,
                detail: err.to_string(),
            },
            OciDistributionError::ImageManifestNotFoundError(detail) => not_found(detail),
            other => self.protocol(error_chain(&other)),
        }
    }
}

/// The linux/HOST_ARCH entry of an index (the first, as docker and containerd pick it).
fn pick_platform(index: &ImageIndex) -> Option<&oci_spec::image::Digest> {
    index
        .manifests()
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == HOST_ARCH
            })
        })
        .map(|m| m.digest())
}

/// An error and its sources, one line ("connection refused" is usually in a source).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
