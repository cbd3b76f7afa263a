//! podd's own API (not CRI): loading images from an OCI layout or archive on this host, and
//! a registry pull that streams its progress.

use std::path::PathBuf;
use std::sync::Arc;

use podd_proto::podd::v1::podd_server::Podd;
use podd_proto::podd::v1::{
    ImportImageRequest, ImportImageResponse, PullImageRequest, PullProgress,
};
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::Error;
use crate::image::registry::Puller;
use crate::image::ImageStore;

pub struct PoddSvc {
    pub images: Arc<ImageStore>,
    pub puller: Arc<Puller>,
}

/// Progress messages buffered for a slow client before the pull waits for it.
const PROGRESS_BUFFER: usize = 64;

type PullStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<PullProgress, Status>> + Send>>;

#[tonic::async_trait]
impl Podd for PoddSvc {
    type PullImageStream = PullStream;

    async fn pull_image(
        &self,
        req: Request<PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        let inner = req
            .into_inner()
            .request
            .ok_or_else(|| Error::invalid("request", "is required"))?;
        let (image, normalized, creds) = convert::pull_request(inner, "request.image.image")?;
        let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
        let (out, stream) = tokio::sync::mpsc::channel(PROGRESS_BUFFER);
        let puller = Arc::clone(&self.puller);
        tokio::spawn(async move {
            let result = {
                let pull = puller.pull(&image, &creds, &tx);
                tokio::pin!(pull);
                loop {
                    tokio::select! {
                        biased;
                        Some(p) = progress.recv() => {
                            if out.send(Ok(convert::progress(p, &normalized))).await.is_err() {
                                // The client went away; downloads other pulls share go on in
                                // their own tasks, nothing half-done is recorded.
                                return;
                            }
                        }
                        result = &mut pull => break result,
                    }
                }
            };
            drop(tx);
            while let Some(p) = progress.recv().await {
                if out
                    .send(Ok(convert::progress(p, &normalized)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let last = match result {
                Ok(img) => Ok(convert::progress_done(&img, &normalized)),
                Err(e) => Err(Status::from(Error::from(e))),
            };
            let _ = out.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(stream),
        )))
    }

    async fn import_image(
        &self,
        req: Request<ImportImageRequest>,
    ) -> Result<Response<ImportImageResponse>, Status> {
        let req = req.into_inner();
        if req.path.is_empty() {
            return Err(Error::invalid("path", "is required").into());
        }
        let path = PathBuf::from(&req.path);
        if !path.is_absolute() {
            return Err(Error::invalid(
                "path",
                format!(
                    "{:?} must be absolute: podd resolves it, not the client",
                    req.path
                ),
            )
            .into());
        }
        let name = Some(req.name).filter(|n| !n.is_empty());
        let images = Arc::clone(&self.images);
        let imported = tokio::task::spawn_blocking(move || images.import(&path, name.as_deref()))
            .await
            .expect("image import does not panic")
            .map_err(Error::from)?;
        tracing::info!(path = %req.path, images = imported.len(), "imported images");
        Ok(Response::new(ImportImageResponse {
            images: imported.iter().map(convert::image).collect(),
        }))
    }
}
