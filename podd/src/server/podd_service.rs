//! podd's own API (not CRI): loading images from an OCI layout or archive on this host.

use std::path::PathBuf;
use std::sync::Arc;

use podd_proto::podd::v1::podd_server::Podd;
use podd_proto::podd::v1::{
    ImportImageRequest, ImportImageResponse, PullImageRequest, PullProgress,
};
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::Error;
use crate::image::ImageStore;

pub struct PoddSvc {
    pub images: Arc<ImageStore>,
}

type PullStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<PullProgress, Status>> + Send>>;

#[tonic::async_trait]
impl Podd for PoddSvc {
    type PullImageStream = PullStream;

    async fn pull_image(
        &self,
        _: Request<PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        Err(Status::unimplemented(
            "podd cannot pull from registries yet; use `podctl image import`",
        ))
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
