//! Fakes for unit tests: a podd on a temporary unix socket serving the
//! `podd.v1` Podd service (streaming PullImage scripted, or UNIMPLEMENTED as
//! an older podd answers) and a CRI ImageService over an in-memory list.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use podd_proto::podd::v1 as podd;
use podd_proto::podd::v1::podd_server::{Podd, PoddServer};
use podd_proto::runtime::v1 as cri;
use podd_proto::runtime::v1::image_service_server::{ImageService, ImageServiceServer};
use tonic::{Request, Response, Status};

use crate::client::{self, Clients};

/// How the fake answers `podd.v1 Podd/PullImage`.
#[derive(Clone)]
pub enum PullMode {
    /// As a podd that predates the streaming pull.
    Unimplemented,
    /// Streams these, in order.
    Script(Vec<Result<podd::PullProgress, Status>>),
}

/// What the fake holds and what it was asked.
pub struct State {
    pub mode: PullMode,
    pub images: Vec<cri::Image>,
    /// Images the fake CRI PullImage can fetch.
    pub registry: Vec<(String, cri::Image)>,
    pub streamed_pulls: Vec<cri::PullImageRequest>,
    pub unary_pulls: Vec<cri::PullImageRequest>,
    pub removed: Vec<String>,
    pub status_calls: Vec<(String, bool)>,
}

pub type Shared = Arc<Mutex<State>>;

pub fn image(id_hex: &str, tags: &[&str]) -> cri::Image {
    cri::Image {
        id: format!("sha256:{id_hex}"),
        repo_tags: tags.iter().map(|t| t.to_string()).collect(),
        size: 4_500_000,
        ..Default::default()
    }
}

/// Finds an image as podd does: id with or without `sha256:`, tag, or an id
/// prefix of 12 or more characters. Returns its index and the tag matched.
fn find(images: &[cri::Image], r: &str) -> Option<(usize, Option<String>)> {
    let hex = r.strip_prefix("sha256:").unwrap_or(r);
    images.iter().enumerate().find_map(|(i, img)| {
        let id = img.id.strip_prefix("sha256:").unwrap_or(&img.id);
        if img.repo_tags.iter().any(|t| t == r) {
            Some((i, Some(r.to_string())))
        } else if id == hex || (hex.len() >= 12 && id.starts_with(hex)) {
            Some((i, None))
        } else {
            None
        }
    })
}

struct FakePodd(Shared);

type ProgressStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<podd::PullProgress, Status>> + Send>>;

#[tonic::async_trait]
impl Podd for FakePodd {
    type PullImageStream = ProgressStream;

    async fn pull_image(
        &self,
        req: Request<podd::PullImageRequest>,
    ) -> Result<Response<ProgressStream>, Status> {
        let mut st = self.0.lock().unwrap();
        match st.mode.clone() {
            PullMode::Unimplemented => Err(Status::unimplemented(
                "podd cannot pull from registries yet",
            )),
            PullMode::Script(items) => {
                st.streamed_pulls
                    .push(req.into_inner().request.unwrap_or_default());
                Ok(Response::new(Box::pin(tokio_stream::iter(items))))
            }
        }
    }

    async fn import_image(
        &self,
        _: Request<podd::ImportImageRequest>,
    ) -> Result<Response<podd::ImportImageResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

struct FakeImages(Shared);

fn spec_image(spec: Option<cri::ImageSpec>) -> String {
    spec.map(|s| s.image).unwrap_or_default()
}

#[tonic::async_trait]
impl ImageService for FakeImages {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let st = self.0.lock().unwrap();
        let filter = req
            .into_inner()
            .filter
            .map(|f| spec_image(f.image))
            .filter(|f| !f.is_empty());
        let images = match filter {
            Some(f) => find(&st.images, &f)
                .map(|(i, _)| st.images[i].clone())
                .into_iter()
                .collect(),
            None => st.images.clone(),
        };
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    type StreamImagesStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<cri::StreamImagesResponse, Status>> + Send>>;

    async fn stream_images(
        &self,
        _: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let r = spec_image(req.image);
        let mut st = self.0.lock().unwrap();
        st.status_calls.push((r.clone(), req.verbose));
        let image = find(&st.images, &r).map(|(i, _)| st.images[i].clone());
        let mut info = std::collections::HashMap::new();
        if let (true, Some(i)) = (req.verbose, &image) {
            info.insert(
                "info".to_string(),
                format!(r#"{{"id":"{}","layers":2}}"#, i.id),
            );
        }
        Ok(Response::new(cri::ImageStatusResponse { image, info }))
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = req.into_inner();
        let mut st = self.0.lock().unwrap();
        st.unary_pulls.push(req.clone());
        let r = spec_image(req.image);
        let Some(img) = st
            .registry
            .iter()
            .find(|(name, _)| *name == r)
            .map(|(_, i)| i.clone())
        else {
            return Err(Status::not_found(format!("{r}: manifest unknown")));
        };
        let id = img.id.clone();
        st.images.push(img);
        Ok(Response::new(cri::PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let r = spec_image(req.into_inner().image);
        let mut st = self.0.lock().unwrap();
        st.removed.push(r.clone());
        match find(&st.images, &r) {
            Some((i, Some(tag))) if st.images[i].repo_tags.len() > 1 => {
                st.images[i].repo_tags.retain(|t| *t != tag);
            }
            Some((i, _)) => {
                st.images.remove(i);
            }
            None => {}
        }
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// A fake podd serving until the returned tempdir is dropped.
pub struct FakeServer {
    pub clients: Clients,
    pub state: Shared,
    _dir: tempfile::TempDir,
}

impl FakeServer {
    pub async fn start(mode: PullMode, images: Vec<cri::Image>) -> FakeServer {
        let state = Arc::new(Mutex::new(State {
            mode,
            images,
            registry: Vec::new(),
            streamed_pulls: Vec::new(),
            unary_pulls: Vec::new(),
            removed: Vec::new(),
            status_calls: Vec::new(),
        }));
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("podd.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(PoddServer::new(FakePodd(Arc::clone(&state))))
                .add_service(ImageServiceServer::new(FakeImages(Arc::clone(&state))))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        FakeServer {
            clients: client::connect(&sock).await.unwrap(),
            state,
            _dir: dir,
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}
