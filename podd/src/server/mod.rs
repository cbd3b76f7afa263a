//! The gRPC edge: CRI RuntimeService and ImageService, plus podd's own service, on one unix
//! socket. Decodes, validates and maps errors (`status`); the work is done by `runtime`.

mod authority;
mod convert;
mod image_service;
mod podd_service;
mod runtime_service;
mod status;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use podd_proto::podd::v1::podd_server::PoddServer;
use podd_proto::runtime::v1::image_service_server::ImageServiceServer;
use podd_proto::runtime::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;
use tracing::info;

use crate::runtime::Runtime;

pub use runtime_service::{RUNTIME_API_VERSION, RUNTIME_NAME, RUNTIME_VERSION};

/// kubelet sends and accepts messages far above tonic's 4 MiB default (e.g. ExecSync output).
const MAX_MESSAGE: usize = 16 << 20;
/// An ExecSync answer holds up to 16 MiB of stdout and of stderr (the cap, as containerd's).
const MAX_RESPONSE: usize = 2 * crate::isolate::EXEC_OUTPUT_MAX + (1 << 20);
/// How long in-flight requests get to finish after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating socket directory {}", dir.display()))?;
    }
    if socket.exists() {
        // A live podd answers on it; a dead one left a stale file.
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            anyhow::bail!(
                "another podd is serving {}; stop it or choose another --socket",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", socket.display()))?;
    Ok(listener)
}

/// Serves until SIGINT or SIGTERM. Pods and containers keep running after podd exits.
/// `registries` configures the endpoints registry pulls use.
pub async fn serve(
    socket: &Path,
    runtime: Arc<Runtime>,
    registries: crate::image::registry::Registries,
) -> anyhow::Result<()> {
    let listener = bind(socket)?;
    let images = Arc::clone(runtime.images());
    let puller = Arc::new(crate::image::registry::Puller::new(
        Arc::clone(&images),
        registries,
    ));
    let runtime_svc = RuntimeServiceServer::new(runtime_service::RuntimeSvc {
        runtime: Arc::clone(&runtime),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_RESPONSE);
    let image_svc = ImageServiceServer::new(image_service::ImageSvc {
        images: Arc::clone(&images),
        puller: Arc::clone(&puller),
        runtime: Arc::clone(&runtime),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let podd_svc = PoddServer::new(podd_service::PoddSvc { images, puller });
    info!(socket = %socket.display(), "serving CRI");
    // Older grpc-go clients (crictl 1.26, critest) send the socket path as `:authority`,
    // which h2 rejects; see `authority`.
    let incoming =
        UnixListenerStream::new(listener).map(|conn| conn.map(authority::AuthorityFix::new));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(runtime_svc)
        .add_service(image_svc)
        .add_service(podd_svc)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    tokio::select! {
        res = &mut server => res.context("serving gRPC")?,
        _ = async { tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} } } => {
            let ready = runtime
                .list_pods(&Default::default())
                .iter()
                .filter(|p| p.state == crate::pod::PodState::Ready)
                .count();
            if ready > 0 {
                info!(ready_pods = ready, "shutting down; the pods keep running");
            } else {
                info!("shutting down");
            }
            let _ = stop_tx.send(());
            // Clients may hold idle connections open; don't wait on them for long.
            if let Ok(res) = tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                res.context("serving gRPC")?;
            }
        }
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}
