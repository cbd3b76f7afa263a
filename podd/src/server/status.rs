//! The one place daemon errors become gRPC statuses.

use tonic::{Code, Status};

use crate::error::Error;
use crate::image::registry::Kind;
use crate::image::ImageError;
use crate::net::NetError;

pub fn to_status(err: Error) -> Status {
    let code = match &err {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Image(e) => image_code(e),
        Error::Net(e) => net_code(e),
        Error::Store(_) | Error::Isolate(_) | Error::Io { .. } => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %err, "request failed");
    }
    Status::new(code, err.to_string())
}

fn image_code(e: &ImageError) -> Code {
    match e {
        ImageError::InvalidReference { .. }
        | ImageError::InvalidDigest { .. }
        | ImageError::InvalidLayout { .. }
        | ImageError::NothingToImport { .. } => Code::InvalidArgument,
        // Bad content from the user's image: refused, nothing stored.
        ImageError::DigestMismatch { .. }
        | ImageError::SizeMismatch { .. }
        | ImageError::InvalidBlob { .. }
        | ImageError::UnsupportedLayer { .. }
        | ImageError::UnsafeLayerEntry { .. } => Code::FailedPrecondition,
        ImageError::Io { .. } | ImageError::Unpack { .. } | ImageError::CorruptIndex { .. } => {
            Code::Internal
        }
        ImageError::Registry(r) => match r.kind() {
            Kind::Unauthenticated => Code::Unauthenticated,
            Kind::PermissionDenied => Code::PermissionDenied,
            Kind::NotFound => Code::NotFound,
            Kind::Unavailable => Code::Unavailable,
            Kind::DataLoss => Code::DataLoss,
            Kind::Failed => Code::FailedPrecondition,
            Kind::Internal => Code::Internal,
        },
    }
}

fn net_code(e: &NetError) -> Code {
    match e {
        // The node is not set up for pod networking: fixable by the admin, not a podd bug.
        NetError::NotReady(_) | NetError::BadConfig { .. } | NetError::PluginNotFound { .. } => {
            Code::FailedPrecondition
        }
        NetError::Unrepresentable { .. } => Code::InvalidArgument,
        NetError::Plugin(_) | NetError::Exec { .. } | NetError::Io { .. } => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        to_status(e)
    }
}
