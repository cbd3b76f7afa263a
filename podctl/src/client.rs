//! Finding podd's socket, connecting to it, and reporting gRPC failures.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use podd_proto::podd::v1::podd_client::PoddClient;
use podd_proto::runtime::v1::image_service_client::ImageServiceClient;
use podd_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

pub const DEFAULT_SOCKET: &str = "/run/podd/podd.sock";

/// The socket to use: `--socket`, then `PODD_SOCKET`, then
/// `CONTAINER_RUNTIME_ENDPOINT` (`unix:///path` or a plain path), then the
/// default. Empty values count as unset.
pub fn resolve_socket(
    flag: Option<&str>,
    podd_socket: Option<&str>,
    cri_endpoint: Option<&str>,
) -> Result<PathBuf> {
    fn nonempty(v: Option<&str>) -> Option<&str> {
        v.filter(|s| !s.is_empty())
    }
    let (source, value) = if let Some(v) = nonempty(flag) {
        ("--socket", v)
    } else if let Some(v) = nonempty(podd_socket) {
        ("PODD_SOCKET", v)
    } else if let Some(v) = nonempty(cri_endpoint) {
        ("CONTAINER_RUNTIME_ENDPOINT", v)
    } else {
        return Ok(PathBuf::from(DEFAULT_SOCKET));
    };
    let path = if let Some(p) = value.strip_prefix("unix://") {
        p
    } else if let Some((scheme, _)) = value.split_once("://") {
        bail!("{source}={value}: only unix sockets are supported, not {scheme}://");
    } else {
        value
    };
    if path.is_empty() {
        bail!("{source}={value}: no socket path");
    }
    Ok(PathBuf::from(path))
}

/// Clients of the three services podd serves on one socket.
#[derive(Clone)]
pub struct Clients {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    pub podd: PoddClient<Channel>,
}

pub async fn connect(socket: &Path) -> Result<Clients> {
    let channel = podd_proto::connect_unix(socket)
        .await
        .map_err(|e| anyhow::anyhow!(root_cause(&e)))
        .with_context(|| {
            format!(
                "cannot connect to podd at {}; is podd running? Start it (e.g. `podd`), \
                 or point podctl at its socket with --socket or PODD_SOCKET",
                socket.display()
            )
        })?;
    Ok(Clients {
        runtime: RuntimeServiceClient::new(channel.clone()),
        image: ImageServiceClient::new(channel.clone()),
        podd: PoddClient::new(channel),
    })
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A failed RPC: which step, on which object, and what podd answered.
/// Displays as `<step> <object>: <status message> (<code>)`.
#[derive(Debug)]
pub struct RpcError {
    pub step: String,
    pub object: String,
    pub status: tonic::Status,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = self.status.message();
        let msg = if msg.is_empty() {
            self.status.code().description()
        } else {
            msg
        };
        write!(
            f,
            "{} {}: {} ({:?})",
            self.step,
            self.object,
            msg,
            self.status.code()
        )
    }
}

impl std::error::Error for RpcError {}

/// `.rpc("stop", "container abc")` on a tonic call result.
pub trait RpcResultExt<T> {
    fn rpc(self, step: &str, object: impl fmt::Display) -> Result<T>;
}

impl<T> RpcResultExt<T> for std::result::Result<tonic::Response<T>, tonic::Status> {
    fn rpc(self, step: &str, object: impl fmt::Display) -> Result<T> {
        self.map(tonic::Response::into_inner).map_err(|status| {
            RpcError {
                step: step.to_string(),
                object: object.to_string(),
                status,
            }
            .into()
        })
    }
}

/// The gRPC code of an error made by [`RpcResultExt::rpc`], if it is one.
pub fn rpc_code(err: &anyhow::Error) -> Option<tonic::Code> {
    err.downcast_ref::<RpcError>().map(|e| e.status.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_precedence() {
        let r = |f, p, c| resolve_socket(f, p, c).unwrap();
        assert_eq!(r(None, None, None), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(r(Some("/a"), Some("/b"), Some("/c")), PathBuf::from("/a"));
        assert_eq!(r(None, Some("/b"), Some("/c")), PathBuf::from("/b"));
        assert_eq!(
            r(None, Some(""), Some("unix:///c.sock")),
            PathBuf::from("/c.sock")
        );
        assert_eq!(
            r(None, None, Some("/plain.sock")),
            PathBuf::from("/plain.sock")
        );
    }

    #[test]
    fn socket_rejects_other_schemes() {
        let err = resolve_socket(None, None, Some("tcp://127.0.0.1:1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CONTAINER_RUNTIME_ENDPOINT=tcp://127.0.0.1:1: only unix sockets are supported, not tcp://"
        );
    }

    #[test]
    fn rpc_error_format() {
        let r: std::result::Result<tonic::Response<()>, _> =
            Err(tonic::Status::not_found("no such container"));
        let err = r.rpc("stop", "container abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "stop container abc: no such container (NotFound)"
        );
        assert_eq!(rpc_code(&err), Some(tonic::Code::NotFound));
    }

    /// A fake podd on a temporary unix socket answers through `connect`:
    /// the socket connector works end to end.
    #[tokio::test]
    async fn connects_over_a_unix_socket() {
        use podd_proto::podd::v1::podd_server::{Podd, PoddServer};
        use podd_proto::podd::v1::{ImportImageRequest, ImportImageResponse};
        use podd_proto::runtime::v1::Image;

        struct Fake;
        type NoStream = std::pin::Pin<
            Box<
                dyn tokio_stream::Stream<
                        Item = Result<podd_proto::podd::v1::PullProgress, tonic::Status>,
                    > + Send,
            >,
        >;
        #[tonic::async_trait]
        impl Podd for Fake {
            type PullImageStream = NoStream;

            async fn pull_image(
                &self,
                _: tonic::Request<podd_proto::podd::v1::PullImageRequest>,
            ) -> std::result::Result<tonic::Response<NoStream>, tonic::Status> {
                Err(tonic::Status::unimplemented("not in this fake"))
            }

            async fn import_image(
                &self,
                req: tonic::Request<ImportImageRequest>,
            ) -> std::result::Result<tonic::Response<ImportImageResponse>, tonic::Status>
            {
                let req = req.into_inner();
                if req.path.is_empty() {
                    return Err(tonic::Status::invalid_argument("path is empty"));
                }
                Ok(tonic::Response::new(ImportImageResponse {
                    images: vec![Image {
                        id: format!("sha256:{}", req.path),
                        repo_tags: vec![req.name],
                        ..Default::default()
                    }],
                }))
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("podd.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(PoddServer::new(Fake))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );

        let clients = connect(&sock).await.unwrap();
        let resp = clients
            .podd
            .clone()
            .import_image(ImportImageRequest {
                path: "abc".into(),
                name: "localhost/x:1".into(),
            })
            .await
            .rpc("import image", "abc")
            .unwrap();
        assert_eq!(resp.images[0].id, "sha256:abc");
        assert_eq!(resp.images[0].repo_tags, ["localhost/x:1"]);

        let err = clients
            .podd
            .clone()
            .import_image(ImportImageRequest::default())
            .await
            .rpc("import image", "''")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "import image '': path is empty (InvalidArgument)"
        );
    }

    #[tokio::test]
    async fn connection_failure_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("absent.sock");
        let err = format!("{:#}", connect(&sock).await.err().unwrap());
        assert!(
            err.starts_with(&format!(
                "cannot connect to podd at {}; is podd running?",
                sock.display()
            )),
            "{err}"
        );
        assert!(
            err.ends_with("No such file or directory (os error 2)"),
            "{err}"
        );
    }
}
