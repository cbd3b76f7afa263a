//! CRI request builders shaped like what a kubelet sends, and a unix-socket gRPC connector.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use podd_proto::runtime::v1 as cri;
use tonic::transport::Channel;

use crate::image::TEST_IMAGE;

/// The harness's own runtime: every channel's connection runs here, so it keeps being driven
/// (and answers podd's GOAWAY when podd shuts down) even while a test's thread is blocked in
/// `Drop`.
pub fn background() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("e2e-grpc")
            .enable_all()
            .build()
            .expect("building the harness's tokio runtime")
    })
}

/// A tonic channel to a unix socket, its connection driven by [`background`].
pub async fn connect(socket: &Path) -> Result<Channel> {
    let socket = socket.to_path_buf();
    background()
        .spawn(async move { connect_here(&socket).await })
        .await
        .context("the connect task failed")?
}

async fn connect_here(socket: &Path) -> Result<Channel> {
    podd_proto::connect_unix(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))
}

/// Namespace options as a kubelet sends them for an ordinary pod: network POD, ipc POD,
/// pid CONTAINER (POD with `shareProcessNamespace`).
pub fn kubelet_namespaces(share_pid: bool) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        pid: if share_pid {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        },
        ..Default::default()
    }
}

/// A pod config: metadata (name, namespace `e2e`, a fresh uid, attempt 0), hostname, a log
/// directory, and kubelet's namespace options.
pub fn pod_config(name: &str, hostname: &str, log_directory: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: uuid::Uuid::new_v4().to_string(),
            namespace: "e2e".to_string(),
            attempt: 0,
        }),
        hostname: hostname.to_string(),
        log_directory: log_directory.to_string_lossy().into_owned(),
        labels: [("e2e.podd/test".to_string(), name.to_string())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(kubelet_namespaces(false)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Namespace options of a pod config (kubelet's defaults if it has none).
pub fn pod_namespaces(pod: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    pod.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_else(|| kubelet_namespaces(false))
}

/// A pod config's Linux security context, added (empty) if it has none.
pub fn pod_security_context(
    pod: &mut cri::PodSandboxConfig,
) -> &mut cri::LinuxSandboxSecurityContext {
    pod.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// A container config's Linux security context, added (empty) if it has none.
pub fn container_security_context(
    cfg: &mut cri::ContainerConfig,
) -> &mut cri::LinuxContainerSecurityContext {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// A pod config's namespace options, kubelet's defaults if it has none.
fn pod_namespaces_mut(pod: &mut cri::PodSandboxConfig) -> &mut cri::NamespaceOption {
    pod_security_context(pod)
        .namespace_options
        .get_or_insert_with(|| kubelet_namespaces(false))
}

/// Sets a pod config's PID namespace mode (POD = `shareProcessNamespace: true`).
pub fn set_pod_pid_mode(pod: &mut cri::PodSandboxConfig, mode: cri::NamespaceMode) {
    pod_namespaces_mut(pod).pid = mode as i32;
}

/// Sets a pod config's network namespace mode (NODE = `hostNetwork: true`).
pub fn set_pod_network_mode(pod: &mut cri::PodSandboxConfig, mode: cri::NamespaceMode) {
    pod_namespaces_mut(pod).network = mode as i32;
}

/// A container config for the test image running `argv` (as `command`), logging to
/// `<name>/0.log` under the pod's log directory (kubelet's layout), with the pod's namespace
/// options repeated in its security context as kubelet does.
pub fn container_config(
    pod: &cri::PodSandboxConfig,
    name: &str,
    argv: &[&str],
) -> cri::ContainerConfig {
    image_container_config(pod, name, TEST_IMAGE, argv)
}

/// [`container_config`] for another image; an empty `argv` runs the image's Entrypoint/Cmd.
pub fn image_container_config(
    pod: &cri::PodSandboxConfig,
    name: &str,
    image: &str,
    argv: &[&str],
) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            user_specified_image: image.to_string(),
            ..Default::default()
        }),
        command: argv.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: [("e2e.podd/container".to_string(), name.to_string())].into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(pod_namespaces(pod)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
