//! Guards against transcription mistakes in `api.proto`: field numbers are
//! checked both through a hand-computed byte encoding and through the
//! compiled descriptor.

use crate::runtime::v1 as cri;
use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

fn sample_request() -> cri::RunPodSandboxRequest {
    cri::RunPodSandboxRequest {
        config: Some(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "a".into(),
                uid: "b".into(),
                namespace: "c".into(),
                attempt: 4,
            }),
            hostname: "h".into(),
            ..Default::default()
        }),
        runtime_handler: "rh".into(),
    }
}

/// Hand-computed wire bytes. Tags: (field_number << 3) | wire_type.
const SAMPLE_BYTES: &[u8] = &[
    0x0a, 16, // RunPodSandboxRequest.config = 1, length-delimited, 16 bytes
    0x0a, 11, // PodSandboxConfig.metadata = 1, 11 bytes
    0x0a, 1, b'a', // PodSandboxMetadata.name = 1
    0x12, 1, b'b', // PodSandboxMetadata.uid = 2
    0x1a, 1, b'c', // PodSandboxMetadata.namespace = 3
    0x20, 4, // PodSandboxMetadata.attempt = 4, varint
    0x12, 1, b'h', // PodSandboxConfig.hostname = 2
    0x12, 2, b'r', b'h', // RunPodSandboxRequest.runtime_handler = 2
];

#[test]
fn run_pod_sandbox_request_known_encoding() {
    let req = sample_request();
    assert_eq!(req.encode_to_vec(), SAMPLE_BYTES);
    let decoded = cri::RunPodSandboxRequest::decode(SAMPLE_BYTES).unwrap();
    assert_eq!(decoded, req);
    let md = decoded.config.unwrap().metadata.unwrap();
    assert_eq!(
        (
            md.name.as_str(),
            md.uid.as_str(),
            md.namespace.as_str(),
            md.attempt
        ),
        ("a", "b", "c", 4)
    );
}

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap()
}

fn file<'a>(fds: &'a FileDescriptorSet, package: &str) -> &'a FileDescriptorProto {
    fds.file
        .iter()
        .find(|f| f.package() == package)
        .unwrap_or_else(|| panic!("no file for package {package}"))
}

fn field_numbers(f: &FileDescriptorProto, message: &str) -> Vec<(String, i32)> {
    let m = f
        .message_type
        .iter()
        .find(|m| m.name() == message)
        .unwrap_or_else(|| panic!("no message {message}"));
    m.field
        .iter()
        .map(|fd| (fd.name().to_string(), fd.number()))
        .collect()
}

fn assert_fields(f: &FileDescriptorProto, message: &str, expected: &[(&str, i32)]) {
    let actual = field_numbers(f, message);
    for (name, number) in expected {
        assert!(
            actual.iter().any(|(n, k)| n == name && k == number),
            "{message}.{name} should be field {number}; have {actual:?}"
        );
    }
}

#[test]
fn cri_field_numbers_match_upstream() {
    let fds = descriptor_set();
    let api = file(&fds, "runtime.v1");
    assert_fields(
        api,
        "PodSandboxMetadata",
        &[("name", 1), ("uid", 2), ("namespace", 3), ("attempt", 4)],
    );
    assert_fields(
        api,
        "RunPodSandboxRequest",
        &[("config", 1), ("runtime_handler", 2)],
    );
    assert_fields(
        api,
        "PodSandboxConfig",
        &[
            ("metadata", 1),
            ("hostname", 2),
            ("log_directory", 3),
            ("dns_config", 4),
            ("port_mappings", 5),
            ("labels", 6),
            ("annotations", 7),
            ("linux", 8),
        ],
    );
    assert_fields(
        api,
        "ContainerConfig",
        &[
            ("metadata", 1),
            ("image", 2),
            ("command", 3),
            ("args", 4),
            ("working_dir", 5),
            ("envs", 6),
            ("mounts", 7),
            ("devices", 8),
            ("labels", 9),
            ("annotations", 10),
            ("log_path", 11),
            ("stdin", 12),
            ("stdin_once", 13),
            ("tty", 14),
            ("linux", 15),
        ],
    );
    assert_fields(
        api,
        "VersionResponse",
        &[
            ("version", 1),
            ("runtime_name", 2),
            ("runtime_version", 3),
            ("runtime_api_version", 4),
        ],
    );
    assert_fields(
        api,
        "Image",
        &[
            ("id", 1),
            ("repo_tags", 2),
            ("repo_digests", 3),
            ("size", 4),
            ("uid", 5),
            ("username", 6),
            ("spec", 7),
            ("pinned", 8),
        ],
    );
}

#[test]
fn services_declare_every_rpc() {
    let fds = descriptor_set();
    let api = file(&fds, "runtime.v1");
    let methods = |svc: &str| -> Vec<String> {
        api.service
            .iter()
            .find(|s| s.name() == svc)
            .unwrap_or_else(|| panic!("no service {svc}"))
            .method
            .iter()
            .map(|m| m.name().to_string())
            .collect()
    };
    let runtime = methods("RuntimeService");
    for rpc in [
        "Version",
        "RunPodSandbox",
        "StopPodSandbox",
        "RemovePodSandbox",
        "PodSandboxStatus",
        "ListPodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "ListContainers",
        "ContainerStatus",
        "UpdateContainerResources",
        "ReopenContainerLog",
        "ExecSync",
        "Exec",
        "Attach",
        "PortForward",
        "ContainerStats",
        "ListContainerStats",
        "PodSandboxStats",
        "ListPodSandboxStats",
        "UpdateRuntimeConfig",
        "Status",
        "CheckpointContainer",
        "GetContainerEvents",
        "ListMetricDescriptors",
        "ListPodSandboxMetrics",
        "RuntimeConfig",
    ] {
        assert!(
            runtime.iter().any(|m| m == rpc),
            "RuntimeService.{rpc} missing"
        );
    }
    let image = methods("ImageService");
    for rpc in [
        "ListImages",
        "ImageStatus",
        "PullImage",
        "RemoveImage",
        "ImageFsInfo",
    ] {
        assert!(image.iter().any(|m| m == rpc), "ImageService.{rpc} missing");
    }
}

#[test]
fn podd_api_shape() {
    let fds = descriptor_set();
    let podd = file(&fds, "podd.v1");
    assert_fields(podd, "ImportImageRequest", &[("path", 1), ("name", 2)]);
    assert_fields(podd, "ImportImageResponse", &[("images", 1)]);
    let req = crate::podd::v1::ImportImageRequest {
        path: "/x".into(),
        name: "n".into(),
    };
    assert_eq!(req.encode_to_vec(), [0x0a, 2, b'/', b'x', 0x12, 1, b'n']);
    let resp = crate::podd::v1::ImportImageResponse {
        images: vec![cri::Image {
            id: "sha256:0".into(),
            ..Default::default()
        }],
    };
    let back = crate::podd::v1::ImportImageResponse::decode(&resp.encode_to_vec()[..]).unwrap();
    assert_eq!(back, resp);
}

#[test]
fn cri_version() {
    assert_eq!(crate::CRI_VERSION, "v1");
}
