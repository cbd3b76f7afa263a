//! What a registry pull can fail with. Cloneable (plain strings), because one download's
//! result is handed to every pull waiting on it.

/// A registry pull failure; `reference` is the normalised reference, `registry` the endpoint
/// (scheme://host[:port]) that answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered 401 or its token service refused the credentials given.
    #[error("registry {registry} refused credentials for {reference}: {detail} (check the username and password, or token, passed with the pull)")]
    CredentialsRefused {
        registry: String,
        reference: String,
        detail: String,
    },

    /// The registry answered 401 to an anonymous request.
    #[error("registry {registry} requires credentials for {reference}: {detail} (pass credentials with the pull: `podctl pull --creds USER:PASS`, `crictl pull --creds USER:PASS`, or the CRI AuthConfig)")]
    CredentialsRequired {
        registry: String,
        reference: String,
        detail: String,
    },

    /// The registry answered 403: the credentials are valid but not for this repository.
    #[error("registry {registry} denied access to {reference}: {detail} (the account lacks pull permission on this repository)")]
    Denied {
        registry: String,
        reference: String,
        detail: String,
    },

    /// The manifest (tag or digest) or a blob is not on the registry.
    #[error("{what} for {reference} not found on {registry}: {detail} (check the repository name and tag or digest)")]
    NotFound {
        what: &'static str,
        reference: String,
        registry: String,
        detail: String,
    },

    /// The registry could not be reached or answered with a server error.
    #[error("registry {registry} is unavailable for {reference}: {detail} (check that it is running and reachable, or configure a mirror in the podd config)")]
    Unavailable {
        registry: String,
        reference: String,
        detail: String,
    },

    /// No connection (TCP, or the TLS handshake) could be made to the registry.
    #[error(
        "cannot connect to registry {registry} for {reference}: {detail} ({})",
        connect_hint(registry)
    )]
    Connect {
        registry: String,
        reference: String,
        detail: String,
    },

    /// Content from the registry does not hash to the digest that names it.
    #[error("{what} {digest} from {registry} does not match its digest: {detail} (the registry or something between served corrupt or tampered content; nothing was stored)")]
    Tampered {
        what: &'static str,
        digest: String,
        registry: String,
        detail: String,
    },

    /// The registry answered something the distribution protocol does not allow, or an
    /// image this runtime cannot use (no linux/<arch> entry, unknown media type).
    #[error("cannot pull {reference} from {registry}: {detail} (check the registry host or mirror URL: is it an OCI distribution registry? and check that the image has a linux/{} manifest)", crate::image::layout::HOST_ARCH)]
    Protocol {
        registry: String,
        reference: String,
        detail: String,
    },

    /// Writing a download to the store's disk failed.
    #[error("storing a download of {digest} for {reference} failed: {detail} (check free disk space in the podd root)")]
    Local {
        reference: String,
        digest: String,
        detail: String,
    },

    /// Every endpoint (mirrors, then the host) failed; `last` is the host's own answer and
    /// decides the gRPC code.
    #[error("{last}; endpoints tried, in order: {tried}")]
    Endpoints {
        last: Box<RegistryError>,
        tried: String,
    },

    /// A task of the pull panicked or was cancelled (a podd bug).
    #[error("pull of {reference} failed inside podd: {detail} (this is a bug in podd: pull again, and report it with the podd log if it recurs)")]
    Task { reference: String, detail: String },

    /// The pull was cancelled (the download task went away).
    #[error("download of {digest} for {reference} was interrupted: {detail} (pull again)")]
    Interrupted {
        reference: String,
        digest: String,
        detail: String,
    },
}

/// How a registry error is reported to clients; `server::status` maps it to a gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unauthenticated,
    PermissionDenied,
    NotFound,
    Unavailable,
    DataLoss,
    Failed,
    Internal,
}

impl RegistryError {
    pub fn kind(&self) -> Kind {
        match self {
            RegistryError::CredentialsRefused { .. }
            | RegistryError::CredentialsRequired { .. } => Kind::Unauthenticated,
            RegistryError::Denied { .. } => Kind::PermissionDenied,
            RegistryError::NotFound { .. } => Kind::NotFound,
            RegistryError::Unavailable { .. }
            | RegistryError::Connect { .. }
            | RegistryError::Interrupted { .. } => Kind::Unavailable,
            RegistryError::Tampered { .. } => Kind::DataLoss,
            RegistryError::Protocol { .. } => Kind::Failed,
            RegistryError::Local { .. } | RegistryError::Task { .. } => Kind::Internal,
            RegistryError::Endpoints { last, .. } => last.kind(),
        }
    }
}

/// What to check when no connection could be made: TLS advice only for an https endpoint.
fn connect_hint(registry: &str) -> &'static str {
    if registry.starts_with("https://") {
        "check that it is running and reachable, and that it speaks TLS with a certificate podd \
         trusts, or set plain_http or skip_verify for it in the podd config"
    } else {
        "check that it is running and reachable"
    }
}

impl RegistryError {
    /// One line for the list of endpoints a pull tried: the failure without the advice, which
    /// the final error gives once.
    pub fn brief(&self) -> String {
        match self {
            RegistryError::Connect { detail, .. } => format!("cannot connect: {detail}"),
            other => other.to_string(),
        }
    }
}
