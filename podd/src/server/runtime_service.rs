//! CRI RuntimeService: decode, validate, call the runtime, encode. No Linux calls here.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use podd_proto::runtime::v1 as cri;
use podd_proto::runtime::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::Error;
use crate::runtime::{ContainerFilter, PodFilter, Runtime};

pub const RUNTIME_NAME: &str = "podd";
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The CRI version string kubelet expects in VersionResponse.runtime_api_version.
pub const RUNTIME_API_VERSION: &str = "v1";

pub struct RuntimeSvc {
    pub runtime: Arc<Runtime>,
}

type Rpc<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn unimplemented<T>(rpc: &str) -> Rpc<T> {
    Err(Status::unimplemented(format!(
        "podd does not implement {rpc} yet"
    )))
}

/// Runs a state-changing step to its end even if the client hangs up or times out: tonic drops
/// a handler's future when the request is cancelled, which would skip the step's rollback.
async fn detached<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(fut)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(Status::from)
}

fn required_id(id: &str, field: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required").into());
    }
    Ok(())
}

#[tonic::async_trait]
impl RuntimeService for RuntimeSvc {
    async fn version(&self, _: Request<cri::VersionRequest>) -> Rpc<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: RUNTIME_VERSION.into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(&self, req: Request<cri::StatusRequest>) -> Rpc<cri::StatusResponse> {
        let runtime_ready = cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            ..Default::default()
        };
        let network_ready = match self.runtime.network_ready() {
            Ok(()) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                ..Default::default()
            },
            Err(e) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: format!("Network plugin returns error: {e}"),
            },
        };
        let mut info = HashMap::new();
        if req.get_ref().verbose {
            info.insert(
                "config".into(),
                serde_json::json!({
                    "runtime": RUNTIME_NAME,
                    "version": RUNTIME_VERSION,
                    "cni": self.runtime.cni_config(),
                })
                .to_string(),
            );
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            ..Default::default()
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Rpc<cri::RunPodSandboxResponse> {
        let req = req.into_inner();
        let config = convert::pod_config(req.config, req.runtime_handler)?;
        let rt = Arc::clone(&self.runtime);
        let pod_sandbox_id = detached(async move { rt.run_pod(config).await }).await?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Rpc<cri::StopPodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        required_id(&id, "pod_sandbox_id")?;
        let rt = Arc::clone(&self.runtime);
        detached(async move { rt.stop_pod(&id).await }).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Rpc<cri::RemovePodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        required_id(&id, "pod_sandbox_id")?;
        let rt = Arc::clone(&self.runtime);
        detached(async move { rt.remove_pod(&id).await }).await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Rpc<cri::PodSandboxStatusResponse> {
        let req = req.into_inner();
        required_id(&req.pod_sandbox_id, "pod_sandbox_id")?;
        let pod = self.runtime.pod_status(&req.pod_sandbox_id)?;
        let mut info = HashMap::new();
        if req.verbose {
            info.insert(
                "info".into(),
                serde_json::to_string(&pod).expect("records serialize"),
            );
            // CNI CHECK: is the pod's network still as ADD made it?
            let check = match self.runtime.check_network(&pod.id).await {
                Ok(Some(true)) => "ok".to_string(),
                Ok(Some(false)) => "not checked (stopped pod or CNI version before 0.4.0)".into(),
                Ok(None) => "no CNI network".into(),
                Err(e) => format!("failed: {e}"),
            };
            // crictl and kubelet parse every info value as JSON, so the verdict is a JSON string.
            info.insert(
                "networkCheck".into(),
                serde_json::Value::String(check).to_string(),
            );
        }
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(convert::pod_status(&pod)),
            info,
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Rpc<cri::ListPodSandboxResponse> {
        let filter = req
            .into_inner()
            .filter
            .map(|f| PodFilter {
                id: Some(f.id).filter(|i| !i.is_empty()),
                state: f.state.map(|s| convert::pod_state_in(s.state)),
                labels: f.label_selector.into_iter().collect(),
            })
            .unwrap_or_default();
        let items = self
            .runtime
            .list_pods(&filter)
            .iter()
            .map(convert::pod_sandbox)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Rpc<cri::CreateContainerResponse> {
        let req = req.into_inner();
        required_id(&req.pod_sandbox_id, "pod_sandbox_id")?;
        let config = convert::container_config(req.config)?;
        let rt = Arc::clone(&self.runtime);
        let pod = req.pod_sandbox_id;
        let container_id = detached(async move { rt.create_container(&pod, config).await }).await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Rpc<cri::StartContainerResponse> {
        let id = req.into_inner().container_id;
        required_id(&id, "container_id")?;
        let rt = Arc::clone(&self.runtime);
        detached(async move { rt.start_container(&id).await }).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Rpc<cri::StopContainerResponse> {
        let req = req.into_inner();
        required_id(&req.container_id, "container_id")?;
        let rt = Arc::clone(&self.runtime);
        detached(async move { rt.stop_container(&req.container_id, req.timeout).await }).await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Rpc<cri::RemoveContainerResponse> {
        let id = req.into_inner().container_id;
        required_id(&id, "container_id")?;
        let rt = Arc::clone(&self.runtime);
        detached(async move { rt.remove_container(&id).await }).await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Rpc<cri::ListContainersResponse> {
        let filter = req
            .into_inner()
            .filter
            .map(|f| ContainerFilter {
                id: Some(f.id).filter(|i| !i.is_empty()),
                pod_id: Some(f.pod_sandbox_id).filter(|i| !i.is_empty()),
                state: f.state.and_then(|s| convert::container_state_in(s.state)),
                labels: f.label_selector.into_iter().collect(),
            })
            .unwrap_or_default();
        let containers = self
            .runtime
            .list_containers(&filter)
            .iter()
            .map(convert::container)
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Rpc<cri::ContainerStatusResponse> {
        let req = req.into_inner();
        required_id(&req.container_id, "container_id")?;
        let c = self.runtime.container_status(&req.container_id)?;
        let mut info = HashMap::new();
        if req.verbose {
            info.insert(
                "info".into(),
                serde_json::to_string(&c).expect("records serialize"),
            );
        }
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(convert::container_status(&c)),
            info,
        }))
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> Rpc<cri::ExecSyncResponse> {
        let req = req.into_inner();
        required_id(&req.container_id, "container_id")?;
        if req.cmd.is_empty() {
            return Err(Error::invalid("cmd", "is required").into());
        }
        let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
        let out = self
            .runtime
            .exec_sync(&req.container_id, req.cmd, timeout)
            .await?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn update_runtime_config(
        &self,
        _: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Rpc<cri::UpdateRuntimeConfigResponse> {
        // kubelet sends the node's pod CIDR here; podd's network comes from its CNI
        // configuration (as with containerd's conf dir), so it is not used.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn update_container_resources(
        &self,
        _: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Rpc<cri::UpdateContainerResourcesResponse> {
        unimplemented("UpdateContainerResources")
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Rpc<cri::ReopenContainerLogResponse> {
        let req = req.into_inner();
        required_id(&req.container_id, "container_id")?;
        self.runtime.reopen_container_log(&req.container_id).await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec(&self, _: Request<cri::ExecRequest>) -> Rpc<cri::ExecResponse> {
        unimplemented("Exec")
    }

    async fn attach(&self, _: Request<cri::AttachRequest>) -> Rpc<cri::AttachResponse> {
        unimplemented("Attach")
    }

    async fn port_forward(
        &self,
        _: Request<cri::PortForwardRequest>,
    ) -> Rpc<cri::PortForwardResponse> {
        unimplemented("PortForward")
    }

    async fn container_stats(
        &self,
        _: Request<cri::ContainerStatsRequest>,
    ) -> Rpc<cri::ContainerStatsResponse> {
        unimplemented("ContainerStats")
    }

    async fn list_container_stats(
        &self,
        _: Request<cri::ListContainerStatsRequest>,
    ) -> Rpc<cri::ListContainerStatsResponse> {
        unimplemented("ListContainerStats")
    }

    async fn pod_sandbox_stats(
        &self,
        _: Request<cri::PodSandboxStatsRequest>,
    ) -> Rpc<cri::PodSandboxStatsResponse> {
        unimplemented("PodSandboxStats")
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Rpc<cri::ListPodSandboxStatsResponse> {
        unimplemented("ListPodSandboxStats")
    }

    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> Rpc<cri::CheckpointContainerResponse> {
        unimplemented("CheckpointContainer")
    }

    async fn checkpoint_pod(
        &self,
        _: Request<cri::CheckpointPodRequest>,
    ) -> Rpc<cri::CheckpointPodResponse> {
        unimplemented("CheckpointPod")
    }

    async fn restore_pod(
        &self,
        _: Request<cri::RestorePodRequest>,
    ) -> Rpc<cri::RestorePodResponse> {
        unimplemented("RestorePod")
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Rpc<cri::ListMetricDescriptorsResponse> {
        unimplemented("ListMetricDescriptors")
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Rpc<cri::ListPodSandboxMetricsResponse> {
        unimplemented("ListPodSandboxMetrics")
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> Rpc<cri::RuntimeConfigResponse> {
        unimplemented("RuntimeConfig")
    }

    async fn update_pod_sandbox_resources(
        &self,
        _: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Rpc<cri::UpdatePodSandboxResourcesResponse> {
        unimplemented("UpdatePodSandboxResources")
    }

    type StreamPodSandboxesStream = BoxStream<cri::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        _: Request<cri::StreamPodSandboxesRequest>,
    ) -> Rpc<Self::StreamPodSandboxesStream> {
        unimplemented("StreamPodSandboxes")
    }

    type StreamContainersStream = BoxStream<cri::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        _: Request<cri::StreamContainersRequest>,
    ) -> Rpc<Self::StreamContainersStream> {
        unimplemented("StreamContainers")
    }

    type StreamContainerStatsStream = BoxStream<cri::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        _: Request<cri::StreamContainerStatsRequest>,
    ) -> Rpc<Self::StreamContainerStatsStream> {
        unimplemented("StreamContainerStats")
    }

    type StreamPodSandboxStatsStream = BoxStream<cri::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        _: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Rpc<Self::StreamPodSandboxStatsStream> {
        unimplemented("StreamPodSandboxStats")
    }

    type GetContainerEventsStream = BoxStream<cri::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Rpc<Self::GetContainerEventsStream> {
        unimplemented("GetContainerEvents")
    }

    type StreamPodSandboxMetricsStream = BoxStream<cri::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Rpc<Self::StreamPodSandboxMetricsStream> {
        unimplemented("StreamPodSandboxMetrics")
    }
}
