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

#[cfg(test)]
mod tests {
    use podd_proto::runtime::v1 as cri;
    use tokio_stream::StreamExt;
    use tonic::Code;

    use super::*;
    use crate::image::registry::fake::{AuthMode, Compression, FakeRegistry};
    use crate::image::registry::Registries;

    fn layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(2);
        b.append_data(&mut h, "f", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn svc(root: &std::path::Path) -> PoddSvc {
        let images = Arc::new(ImageStore::open(root).unwrap());
        PoddSvc {
            puller: Arc::new(Puller::new(Arc::clone(&images), Registries::default())),
            images,
        }
    }

    fn request(image: &str, auth: Option<cri::AuthConfig>) -> Request<PullImageRequest> {
        Request::new(PullImageRequest {
            request: Some(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: None,
            }),
        })
    }

    /// Runs a streaming pull to its end: the messages, then the final status if any.
    async fn run(
        svc: &PoddSvc,
        req: Request<PullImageRequest>,
    ) -> (Vec<PullProgress>, Option<Status>) {
        let mut stream = match svc.pull_image(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => return (Vec::new(), Some(s)),
        };
        let mut msgs = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(m) => msgs.push(m),
                Err(s) => return (msgs, Some(s)),
            }
        }
        (msgs, None)
    }

    #[tokio::test]
    async fn streams_progress_then_one_done_message_with_the_image_id() {
        let reg = FakeRegistry::start(AuthMode::None).await;
        let built = reg.add_image("s/app", "v1", &[(layer(), Compression::Gzip)], false);
        let dir = tempfile::tempdir().unwrap();
        let svc = svc(&dir.path().join("images"));
        let r = format!("{}/s/app:v1", reg.host());
        let (msgs, status) = run(&svc, request(&r, None)).await;
        assert!(status.is_none(), "{status:?}");
        let last = msgs.last().unwrap();
        assert!(last.done);
        assert_eq!(last.image_ref, built.config_digest);
        assert_eq!(msgs.iter().filter(|m| m.done).count(), 1);
        assert!(msgs.iter().all(|m| m.reference == r));
        assert_eq!(msgs[0].status, "resolving");
        assert!(msgs.iter().any(|m| m.digest == built.layer_digests[0]
            && m.kind == "layer"
            && m.status == "done"));
    }

    #[tokio::test]
    async fn errors_end_the_stream_with_the_right_code() {
        let reg = FakeRegistry::start(AuthMode::Basic("u".into(), "p".into())).await;
        let built = reg.add_image("e", "1", &[(layer(), Compression::Gzip)], false);
        let dir = tempfile::tempdir().unwrap();
        let svc = svc(&dir.path().join("images"));
        let good = Some(cri::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        });
        let r = format!("{}/e:1", reg.host());

        let (_, s) = run(&svc, request("bad ref!", None)).await;
        let s = s.unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("request.image.image"), "{s:?}");

        let (_, s) = run(&svc, request(&r, None)).await;
        assert_eq!(s.unwrap().code(), Code::Unauthenticated);

        let (_, s) = run(
            &svc,
            request(&format!("{}/e:nope", reg.host()), good.clone()),
        )
        .await;
        let s = s.unwrap();
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        assert!(s.message().contains("not found on"), "{s:?}");

        reg.tamper(&built.layer_digests[0]);
        let (_, s) = run(&svc, request(&r, good.clone())).await;
        let s = s.unwrap();
        assert_eq!(s.code(), Code::DataLoss, "{s:?}");
        assert!(s.message().contains(&built.layer_digests[0]), "{s:?}");
        assert!(svc.images.list().is_empty());

        let bad_auth = Some(cri::AuthConfig {
            auth: "not base64!".into(),
            ..Default::default()
        });
        let (_, s) = run(&svc, request(&r, bad_auth)).await;
        let s = s.unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("auth.auth"), "{s:?}");
    }
}
