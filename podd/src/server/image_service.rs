//! CRI ImageService over podd's image store and registry pull engine.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use podd_proto::runtime::v1 as cri;
use podd_proto::runtime::v1::image_service_server::ImageService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::Error;
use crate::image::registry::Puller;
use crate::image::ImageStore;
use crate::runtime::Runtime;

pub struct ImageSvc {
    pub images: Arc<ImageStore>,
    pub puller: Arc<Puller>,
    pub runtime: Arc<Runtime>,
}

type Rpc<T> = Result<Response<T>, Status>;

impl ImageSvc {
    /// Runs blocking store work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ImageStore) -> T + Send + 'static,
    ) -> T {
        let images = Arc::clone(&self.images);
        tokio::task::spawn_blocking(move || f(&images))
            .await
            .expect("image store calls do not panic")
    }
}

fn image_ref(spec: Option<cri::ImageSpec>, field: &str) -> Result<String, Status> {
    spec.map(|s| s.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::invalid(field, "is required").into())
}

#[tonic::async_trait]
impl ImageService for ImageSvc {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Rpc<cri::ListImagesResponse> {
        let want = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|i| !i.is_empty());
        let images = self
            .blocking(move |store| match want {
                Some(r) => store.resolve(&r).into_iter().collect(),
                None => store.list(),
            })
            .await;
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(convert::image).collect(),
        }))
    }

    type StreamImagesStream =
        Pin<Box<dyn Stream<Item = Result<cri::StreamImagesResponse, Status>> + Send + 'static>>;

    async fn stream_images(
        &self,
        _: Request<cri::StreamImagesRequest>,
    ) -> Rpc<Self::StreamImagesStream> {
        Err(Status::unimplemented(
            "podd does not implement StreamImages yet",
        ))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Rpc<cri::ImageStatusResponse> {
        let req = req.into_inner();
        let r = image_ref(req.image, "image.image")?;
        let verbose = req.verbose;
        let (image, verbose_info) = self
            .blocking(move |store| {
                let image = store.resolve(&r);
                let info = image
                    .as_ref()
                    .filter(|_| verbose)
                    .map(|i| store.verbose_info(i));
                (image, info)
            })
            .await;
        let mut info = HashMap::new();
        if let Some(v) = verbose_info {
            info.insert("info".into(), v.to_string());
        }
        // CRI: an unknown image is not an error, just no image.
        Ok(Response::new(cri::ImageStatusResponse {
            image: image.as_ref().map(convert::image),
            info,
        }))
    }

    async fn pull_image(&self, req: Request<cri::PullImageRequest>) -> Rpc<cri::PullImageResponse> {
        let (image, _, creds) = convert::pull_request(req.into_inner(), "image.image")?;
        // Nobody listens to progress on the unary call: sends to a closed channel are no-ops.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        drop(rx);
        let pulled = self
            .puller
            .pull(&image, &creds, &tx)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: pulled.id,
        }))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Rpc<cri::RemoveImageResponse> {
        let r = image_ref(req.into_inner().image, "image.image")?;
        self.runtime.remove_image(&r).await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Rpc<cri::ImageFsInfoResponse> {
        let (root, usage) = self
            .blocking(|store| (store.root().to_path_buf(), store.usage()))
            .await;
        let fs = cri::FilesystemUsage {
            timestamp: crate::runtime::now_ns(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: root.display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value { value: usage.bytes }),
            inodes_used: Some(cri::UInt64Value {
                value: usage.inodes,
            }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![fs],
            container_filesystems: Vec::new(),
        }))
    }
}
