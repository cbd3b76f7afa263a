//! The one place daemon errors become gRPC statuses.

use tonic::{Code, Status};

use crate::error::Error;
use crate::image::registry::Kind;
use crate::image::ImageError;
use crate::net::NetError;

pub fn to_status(err: Error) -> Status {
    let code = match &err {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::NotFound { .. } | Error::ImageNotFound(_) => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Image(e) => image_code(e),
        Error::Net(e) => net_code(e),
        Error::Store(_) | Error::Isolate(_) | Error::Io { .. } => Code::Internal,
    };
    match code {
        Code::Internal => tracing::error!(error = %err, "request failed"),
        Code::Unavailable | Code::ResourceExhausted => {
            tracing::warn!(error = %err, "request failed")
        }
        _ => {}
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
        NetError::Plugin(f) if f.ip_exhausted() => Code::ResourceExhausted,
        // A plugin failed or misbehaved: the node's networking, not podd, and often passing.
        NetError::Plugin(_) | NetError::Exec { .. } => Code::Unavailable,
        // podd's own file and process handling.
        NetError::Io { .. } => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        to_status(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::error::PluginFailure;

    fn failure(msg: &str, details: Option<&str>) -> Error {
        Error::Net(NetError::Plugin(Box::new(PluginFailure {
            network: "n".into(),
            plugin: "bridge".into(),
            command: "ADD",
            pod: "p".into(),
            code: 999,
            msg: msg.into(),
            details: details.map(str::to_string),
        })))
    }

    #[test]
    fn plugin_failures_are_unavailable_and_ipam_exhaustion_resource_exhausted() {
        let s = to_status(failure("failed to set sysctl", None));
        assert_eq!(s.code(), Code::Unavailable);
        assert!(
            s.message().contains("\"bridge\"")
                && s.message().contains("ADD")
                && s.message().contains("\"n\"")
                && s.message().contains("retry"),
            "{}",
            s.message()
        );
        for (msg, details) in [
            (
                "failed to allocate for range 0: no IP addresses available in range set: \
                 10.0.0.7-10.0.0.7",
                None,
            ),
            (
                "failed to allocate for range 0",
                Some("no IP addresses available in range set: 10.0.0.7-10.0.0.7"),
            ),
        ] {
            let s = to_status(failure(msg, details));
            assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
            assert!(s.message().contains("widen the range"), "{}", s.message());
        }
        let exec = Error::Net(NetError::Exec {
            plugin: "bridge".into(),
            command: "ADD",
            pod: "p".into(),
            reason: "killed by signal 9".into(),
        });
        assert_eq!(to_status(exec).code(), Code::Unavailable);
        let io = Error::Net(NetError::Io {
            what: "writing /run/x".into(),
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(to_status(io).code(), Code::Internal);
    }
}
