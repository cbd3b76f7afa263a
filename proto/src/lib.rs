//! Generated gRPC types for podd: the Kubernetes CRI `runtime.v1` API
//! (RuntimeService, ImageService) and podd's own `podd.v1` API (Podd).
//!
//! Both are compiled by `build.rs` with protox (no system protoc) and
//! tonic-prost-build, with clients and servers.

/// The CRI API version this crate implements (as reported in `VersionResponse`).
pub const CRI_VERSION: &str = "v1";

/// Encoded `google.protobuf.FileDescriptorSet` of `api.proto` and `podd.proto`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/podd_descriptor.bin"));

/// Kubernetes CRI, package `runtime`.
pub mod runtime {
    /// Kubernetes CRI, package `runtime.v1`.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
        tonic::include_proto!("runtime.v1");
    }
}

/// podd's own API, package `podd`.
pub mod podd {
    /// podd's own API, package `podd.v1`.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
        tonic::include_proto!("podd.v1");
    }
}

/// A gRPC channel to a CRI server on a unix socket (podd's, or any other runtime's).
///
/// Every connection goes to `socket`; the HTTP authority sent is `localhost`, as kubelet sends
/// it, so strict HTTP/2 servers accept it.
pub async fn connect_unix(
    socket: impl AsRef<std::path::Path>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = socket.as_ref().to_path_buf();
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

#[cfg(test)]
mod tests;
