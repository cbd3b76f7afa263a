//! The daemon's error type. Everything below the server edge returns it; `server::status`
//! maps it to a gRPC status once.

use crate::image::ImageError;
use crate::isolate::IsolateError;
use crate::net::NetError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed; `field` is the CRI field path.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// CreateContainer names an image the store does not hold.
    #[error("image {0:?} not found: pull it first (`podctl pull`, `crictl pull`) or import it (`podctl image import`)")]
    ImageNotFound(String),
    #[error("{kind} name {name:?} is already reserved by {id}; remove it first or use another name or attempt")]
    AlreadyExists {
        kind: &'static str,
        name: String,
        id: String,
    },
    /// The object exists but is in the wrong state for the request.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Isolate(#[from] IsolateError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
