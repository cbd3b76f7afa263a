//! `podctl run`: a validated [`Pod`] becomes the CRI calls a kubelet makes,
//! RunPodSandbox, then CreateContainer and StartContainer for each container,
//! and what was made is removed again when a step fails.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use podd_proto::runtime::v1 as cri;

use crate::client::{Clients, RpcResultExt};
use crate::manifest::{Container, Pod};

pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";

/// Where emptyDir volumes of the pod with `uid` live.
pub fn pod_volumes_dir(root: &Path, uid: &str) -> PathBuf {
    root.join(uid)
}

/// The pod's uid: `metadata.uid`, or a new UUID.
pub fn pod_uid(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// The host path behind each volume: emptyDir under `root/<uid>/<name>`,
/// hostPath as given.
pub fn volume_paths(pod: &Pod, uid: &str, root: &Path) -> HashMap<String, PathBuf> {
    pod.spec
        .volumes
        .iter()
        .map(|v| {
            let path = match &v.host_path {
                Some(h) => PathBuf::from(&h.path),
                None => pod_volumes_dir(root, uid).join(&v.name),
            };
            (v.name.clone(), path)
        })
        .collect()
}

/// Network, IPC and PID modes as kubelet derives them from the pod spec.
pub fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let s = &pod.spec;
    let mode = |host: bool| {
        if host {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        }
    };
    let pid = if s.host_pid {
        cri::NamespaceMode::Node
    } else if s.share_process_namespace {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: mode(s.host_network) as i32,
        ipc: mode(s.host_ipc) as i32,
        pid: pid as i32,
        ..Default::default()
    }
}

fn pod_labels(pod: &Pod, uid: &str) -> HashMap<String, String> {
    [
        (LABEL_POD_NAME, pod.name()),
        (LABEL_POD_NAMESPACE, pod.namespace()),
        (LABEL_POD_UID, uid),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Reads `nameserver`, `search` and `options` lines of a resolv.conf.
fn parse_resolv_conf(text: &str) -> cri::DnsConfig {
    let mut dns = cri::DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            // The last `search` line wins, as in the resolver.
            Some("search") | Some("domain") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// The pod's DNS config as kubelet makes it, with no cluster DNS (podctl has none): every
/// policy but `None` is the node's resolv.conf (`ClusterFirst` without a cluster DNS falls back
/// to it, as kubelet does), to which `dnsConfig` adds its nameservers, searches and options;
/// `None` is `dnsConfig` alone. None (podd then copies the node's resolv.conf) when there is
/// nothing to add.
pub fn dns_config(pod: &Pod, host_resolv_conf: &str) -> Option<cri::DnsConfig> {
    let policy = pod.spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let extra = pod.spec.dns_config.as_ref();
    if policy != "None" && extra.is_none() {
        return None;
    }
    let mut dns = if policy == "None" {
        cri::DnsConfig::default()
    } else {
        parse_resolv_conf(host_resolv_conf)
    };
    if let Some(extra) = extra {
        dns.servers.extend(extra.nameservers.iter().cloned());
        for s in &extra.searches {
            if !dns.searches.contains(s) {
                dns.searches.push(s.clone());
            }
        }
        for o in &extra.options {
            let opt = match &o.value {
                Some(v) => format!("{}:{v}", o.name),
                None => o.name.clone(),
            };
            // A dnsConfig option replaces the node's option of the same name.
            dns.options
                .retain(|x| x.split(':').next() != Some(o.name.as_str()));
            dns.options.push(opt);
        }
    }
    Some(dns)
}

/// Every container port, as kubelet passes them (podd maps those with a host port).
pub fn port_mappings(pod: &Pod) -> Vec<cri::PortMapping> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .map(|p| cri::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp,
                Some("SCTP") => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            } as i32,
            container_port: p.container_port as i32,
            host_port: p.host_port.unwrap_or(0) as i32,
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect()
}

pub fn sandbox_config(pod: &Pod, uid: &str) -> cri::PodSandboxConfig {
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(pod_labels(pod, uid));
    let psc = pod.spec.security_context.as_ref();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.name().to_string(),
            uid: uid.to_string(),
            namespace: pod.namespace().to_string(),
            attempt: 0,
        }),
        // A host-network pod keeps the node's hostname, as with kubelet.
        hostname: if pod.spec.host_network {
            String::new()
        } else {
            pod.spec
                .hostname
                .clone()
                .unwrap_or_else(|| pod.name().to_string())
        },
        // Empty: podd chooses where logs go.
        log_directory: String::new(),
        dns_config: dns_config(
            pod,
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
        port_mappings: port_mappings(pod),
        labels,
        annotations: pod
            .metadata
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc
                    .and_then(|s| s.run_as_user)
                    .map(|value| cri::Int64Value { value }),
                run_as_group: psc
                    .and_then(|s| s.run_as_group)
                    .map(|value| cri::Int64Value { value }),
                ..Default::default()
            }),
            sysctls: psc
                .map(|s| {
                    s.sysctls
                        .iter()
                        .map(|s| (s.name.clone(), s.value.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_config(
    pod: &Pod,
    uid: &str,
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> cri::ContainerConfig {
    let mut labels = pod_labels(pod, uid);
    labels.insert(LABEL_CONTAINER_NAME.to_string(), c.name.clone());
    let csc = c.security_context.as_ref();
    let psc = pod.spec.security_context.as_ref();
    let run_as_user = csc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user));
    let run_as_group = csc
        .and_then(|s| s.run_as_group)
        .or(psc.and_then(|s| s.run_as_group));
    let mounts = c
        .volume_mounts
        .iter()
        .map(|m| {
            let mut host = volumes.get(&m.name).cloned().unwrap_or_default();
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                host = host.join(sub);
            }
            cri::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.to_string_lossy().into_owned(),
                readonly: m.read_only,
                propagation: cri::MountPropagation::PropagationPrivate as i32,
                ..Default::default()
            }
        })
        .collect();
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: c
            .env
            .iter()
            .map(|e| cri::KeyValue {
                key: e.name.clone(),
                value: e.value.clone().unwrap_or_default().into_bytes(),
            })
            .collect(),
        mounts,
        labels,
        log_path: format!("{}_0.log", c.name),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: run_as_group.map(|value| cri::Int64Value { value }),
                readonly_rootfs: csc.and_then(|s| s.read_only_root_filesystem) == Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Makes the volumes' host side ready as kubelet would: emptyDir directories
/// (world-writable, like kubelet's), hostPath type checks and creation, and
/// subPath directories.
pub fn prepare_volumes(pod: &Pod, volumes: &HashMap<String, PathBuf>) -> Result<()> {
    for v in &pod.spec.volumes {
        let path = &volumes[&v.name];
        if v.empty_dir.is_some() {
            make_dir(path, 0o777).with_context(|| format!("create emptyDir volume {}", v.name))?;
        } else if let Some(h) = &v.host_path {
            check_host_path(path, h.type_.as_deref().unwrap_or(""))
                .with_context(|| format!("hostPath volume {} ({})", v.name, h.path))?;
        }
    }
    for c in &pod.spec.containers {
        for m in &c.volume_mounts {
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                let path = volumes[&m.name].join(sub);
                if !path.exists() {
                    make_dir(&path, 0o755).with_context(|| {
                        format!(
                            "create subPath {sub} of volume {} for container {}",
                            m.name, c.name
                        )
                    })?;
                }
            }
        }
    }
    Ok(())
}

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("mkdir {}", path.display()))?;
    // The umask trimmed the mode; kubelet's emptyDir is 0777 all the same.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn check_host_path(path: &Path, type_: &str) -> Result<()> {
    let meta = fs::metadata(path);
    let kind = |ok: fn(&fs::Metadata) -> bool, what: &str| -> Result<()> {
        match &meta {
            Ok(m) if ok(m) => Ok(()),
            Ok(_) => bail!("{} is not a {what}", path.display()),
            Err(e) => bail!("{}: {e}", path.display()),
        }
    };
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_err() => make_dir(path, 0o755),
        "DirectoryOrCreate" | "Directory" => kind(|m| m.is_dir(), "directory"),
        "FileOrCreate" if meta.is_err() => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("create {}", path.display()))?;
            Ok(())
        }
        "FileOrCreate" | "File" => kind(|m| m.is_file(), "file"),
        "Socket" => kind(|m| m.file_type().is_socket(), "socket"),
        "CharDevice" => kind(|m| m.file_type().is_char_device(), "character device"),
        "BlockDevice" => kind(|m| m.file_type().is_block_device(), "block device"),
        other => bail!("unknown hostPath type {other:?}"),
    }
}

/// Runs `pod` and returns the pod sandbox id.
pub async fn run(clients: &Clients, pod: &Pod, volumes_root: &Path) -> Result<String> {
    let uid = pod_uid(pod);
    let what = format!("run pod {}/{}", pod.namespace(), pod.name());
    // Images first: a missing one fails before anything is made.
    crate::pull::ensure_images(clients, pod, crate::pull::Progress::stderr)
        .await
        .context(what.clone())?;
    // As `kubectl apply` of a new pod would: one pod per namespace/name, else every later
    // `podctl exec NAME` is ambiguous.
    let pods = crate::resolve::list_pods(clients)
        .await
        .context(what.clone())?;
    if let Some(p) = same_name(&pods, pod.namespace(), pod.name()) {
        bail!(
            "{what}: pod {}/{} already exists ({}, {}); remove it first (podctl rmp -f {}) or \
             give this one another metadata.name",
            pod.namespace(),
            pod.name(),
            crate::output::short_id(&p.id),
            if p.state == cri::PodSandboxState::SandboxReady as i32 {
                "ready"
            } else {
                "not ready"
            },
            crate::output::short_id(&p.id),
        );
    }

    let volumes = volume_paths(pod, &uid, volumes_root);
    let pod_dir = pod_volumes_dir(volumes_root, &uid);
    let has_empty_dir = pod.spec.volumes.iter().any(|v| v.empty_dir.is_some());
    if let Err(e) = prepare_volumes(pod, &volumes) {
        if has_empty_dir {
            remove_volumes(&pod_dir);
        }
        return Err(e.context(what));
    }

    let sandbox = sandbox_config(pod, &uid);
    let pod_id = match clients
        .runtime
        .clone()
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: String::new(),
        })
        .await
        .rpc("create pod", pod.name())
    {
        Ok(r) => r.pod_sandbox_id,
        Err(e) => {
            if has_empty_dir {
                remove_volumes(&pod_dir);
            }
            return Err(e.context(what));
        }
    };

    for c in &pod.spec.containers {
        if let Err(e) = start_container(clients, &pod_id, &sandbox, pod, &uid, c, &volumes).await {
            rollback(clients, &pod_id, has_empty_dir.then_some(pod_dir.as_path())).await;
            return Err(e.context(what));
        }
    }
    Ok(pod_id)
}

/// The pod already using `namespace/name`, if any.
fn same_name<'a>(
    pods: &'a [cri::PodSandbox],
    namespace: &str,
    name: &str,
) -> Option<&'a cri::PodSandbox> {
    pods.iter().find(|p| {
        p.metadata
            .as_ref()
            .is_some_and(|m| m.namespace == namespace && m.name == name)
    })
}

async fn start_container(
    clients: &Clients,
    pod_id: &str,
    sandbox: &cri::PodSandboxConfig,
    pod: &Pod,
    uid: &str,
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<()> {
    let mut rt = clients.runtime.clone();
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(container_config(pod, uid, c, volumes)),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .rpc("create container", &c.name)?
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .rpc("start container", format!("{} ({id})", c.name))?;
    Ok(())
}

/// Undoes a half-made pod; says on stderr what it did or could not do.
async fn rollback(clients: &Clients, pod_id: &str, volumes: Option<&Path>) {
    let mut rt = clients.runtime.clone();
    let stopped = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.to_string(),
        })
        .await
        .rpc("stop pod", pod_id);
    let removed = rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.to_string(),
        })
        .await
        .rpc("remove pod", pod_id);
    match (stopped, removed) {
        (_, Ok(_)) => eprintln!("podctl: rolled back: removed pod {pod_id}"),
        (stop, Err(e)) => {
            if let Err(s) = stop {
                eprintln!("podctl: rollback: {s:#}");
            }
            eprintln!("podctl: rollback: {e:#}; remove it with `podctl rmp -f {pod_id}`");
        }
    }
    if let Some(dir) = volumes {
        remove_volumes(dir);
    }
}

/// Removes a pod's emptyDir directory; a failure is reported, not fatal.
pub fn remove_volumes(dir: &Path) {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("podctl: remove volumes {}: {e}", dir.display());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
