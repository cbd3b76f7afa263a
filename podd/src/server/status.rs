//! The one place daemon errors become gRPC statuses.

use tonic::{Code, Status};

use crate::error::Error;
use crate::image::ImageError;

pub fn to_status(err: Error) -> Status {
    let code = match &err {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Image(e) => image_code(e),
        Error::Store(_) | Error::Isolate(_) | Error::Io { .. } => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %err, "request failed");
    }
    Status::new(code, err.to_string())
}

fn image_code(e: &ImageError) -> Code {
    let text = e.to_string();
    if text.contains("not found") {
        Code::NotFound
    } else if text.contains("invalid") {
        Code::InvalidArgument
    } else {
        Code::Internal
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        to_status(e)
    }
}
