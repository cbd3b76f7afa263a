//! CRI messages to podd's validated configs, and podd's records back to CRI messages.
//! Validation names the CRI field that is wrong.

use std::collections::{BTreeMap, HashMap};

use podd_proto::runtime::v1 as cri;

use crate::container::seccomp::Policy as SeccompPolicy;
use crate::container::{ContainerConfig, ContainerRecord, ContainerState, MountConfig};
use crate::error::{Error, Result};
use crate::image::registry::{Credentials, CriAuth, Progress, PullAuth};
use crate::image::{normalize_reference, Image};
use crate::isolate::capabilities;
use crate::isolate::spec::Propagation;
use crate::net::files::DnsConfig;
use crate::net::PortMapping;
use crate::pod::{sysctl, NsMode, PodConfig, PodRecord, PodState};
use podd_proto::podd::v1::PullProgress;

fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn unsorted(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn ns_mode(value: i32, field: &str, allow_container: bool) -> Result<NsMode> {
    match cri::NamespaceMode::try_from(value) {
        Ok(cri::NamespaceMode::Pod) => Ok(NsMode::Pod),
        Ok(cri::NamespaceMode::Node) => Ok(NsMode::Node),
        Ok(cri::NamespaceMode::Container) if allow_container => Ok(NsMode::Container),
        Ok(other) => Err(Error::invalid(
            field,
            format!("{} is not supported here", other.as_str_name()),
        )),
        Err(_) => Err(Error::invalid(field, format!("unknown mode {value}"))),
    }
}

fn ns_mode_out(mode: NsMode) -> i32 {
    match mode {
        NsMode::Pod => cri::NamespaceMode::Pod as i32,
        NsMode::Container => cri::NamespaceMode::Container as i32,
        NsMode::Node => cri::NamespaceMode::Node as i32,
    }
}

/// A DNS-1123 label, as Kubernetes requires of hostnames.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !h.starts_with('-')
        && !h.ends_with('-')
}

fn no_nul(value: &str, field: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::invalid(field, "contains a NUL byte"));
    }
    Ok(())
}

pub fn pod_config(config: Option<cri::PodSandboxConfig>, handler: String) -> Result<PodConfig> {
    let config = config.ok_or_else(|| Error::invalid("config", "is required"))?;
    let meta = config
        .metadata
        .ok_or_else(|| Error::invalid("config.metadata", "is required (name, uid, namespace)"))?;
    if meta.name.is_empty() {
        return Err(Error::invalid("config.metadata.name", "is required"));
    }
    for (v, f) in [
        (&meta.name, "config.metadata.name"),
        (&meta.uid, "config.metadata.uid"),
        (&meta.namespace, "config.metadata.namespace"),
        (&config.log_directory, "config.log_directory"),
    ] {
        no_nul(v, f)?;
    }
    if !config.hostname.is_empty() && !valid_hostname(&config.hostname) {
        return Err(Error::invalid(
            "config.hostname",
            format!("{:?} is not a valid DNS-1123 hostname", config.hostname),
        ));
    }
    if !config.log_directory.is_empty() && !config.log_directory.starts_with('/') {
        return Err(Error::invalid(
            "config.log_directory",
            format!("{:?} must be an absolute path", config.log_directory),
        ));
    }
    let pod_sec = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let privileged = pod_sec.is_some_and(|s| s.privileged);
    let ns = pod_sec
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    const NS: &str = "config.linux.security_context.namespace_options";
    let network = ns_mode(ns.network, &format!("{NS}.network"), false)?;
    let dns = dns_config(config.dns_config.unwrap_or_default())?;
    let port_mappings = port_mappings(&config.port_mappings, network == NsMode::Node)?;
    let sysctls = config
        .linux
        .as_ref()
        .map(|l| sorted(&l.sysctls))
        .unwrap_or_default();
    let pod = PodConfig {
        // Empty: the pod's new UTS namespace keeps the node's hostname, as containerd does
        // (kubelet always sends the pod's hostname).
        hostname: config.hostname.clone(),
        name: meta.name,
        uid: meta.uid,
        namespace: meta.namespace,
        attempt: meta.attempt,
        log_directory: config.log_directory,
        labels: sorted(&config.labels),
        annotations: sorted(&config.annotations),
        network,
        ipc: ns_mode(ns.ipc, &format!("{NS}.ipc"), false)?,
        pid: ns_mode(ns.pid, &format!("{NS}.pid"), true)?,
        runtime_handler: handler,
        privileged,
        dns,
        port_mappings,
        sysctls,
    };
    sysctl::check_all(&pod.sysctls, &pod.new_namespaces())
        .map_err(|(name, why)| Error::invalid(format!("config.linux.sysctls[{name:?}]"), why))?;
    Ok(pod)
}

/// Each entry one resolv.conf word: no whitespace, no NUL (a newline would inject lines).
fn dns_config(dns: cri::DnsConfig) -> Result<DnsConfig> {
    for (list, items) in [
        ("servers", &dns.servers),
        ("searches", &dns.searches),
        ("options", &dns.options),
    ] {
        for (i, v) in items.iter().enumerate() {
            if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '\0') {
                return Err(Error::invalid(
                    format!("config.dns_config.{list}[{i}]"),
                    format!("{v:?} must be one non-empty word without whitespace"),
                ));
            }
        }
    }
    for (i, s) in dns.servers.iter().enumerate() {
        if s.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::invalid(
                format!("config.dns_config.servers[{i}]"),
                format!("{s:?} is not an IP address"),
            ));
        }
    }
    Ok(DnsConfig {
        servers: dns.servers,
        searches: dns.searches,
        options: dns.options,
    })
}

/// Port mappings with a host port (0 means none, as in kubelet), validated. A host-network
/// pod's container ports are the host's already: nothing to map.
fn port_mappings(ports: &[cri::PortMapping], host_network: bool) -> Result<Vec<PortMapping>> {
    let mut out = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let field = |f: &str| format!("config.port_mappings[{i}].{f}");
        let port = |v: i32, f: &str, zero_ok: bool| -> Result<u16> {
            match u16::try_from(v) {
                Ok(0) if zero_ok => Ok(0),
                Ok(p) if p > 0 => Ok(p),
                _ => Err(Error::invalid(
                    field(f),
                    format!("{v} is not a port (1-65535)"),
                )),
            }
        };
        let host_port = port(p.host_port, "host_port", true)?;
        let container_port = port(p.container_port, "container_port", host_port == 0)?;
        let protocol = match cri::Protocol::try_from(p.protocol) {
            Ok(cri::Protocol::Tcp) => "tcp",
            Ok(cri::Protocol::Udp) => "udp",
            Ok(cri::Protocol::Sctp) => "sctp",
            Err(_) => {
                return Err(Error::invalid(
                    field("protocol"),
                    format!("unknown protocol {}", p.protocol),
                ))
            }
        };
        if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::invalid(
                field("host_ip"),
                format!("{:?} is not an IP address", p.host_ip),
            ));
        }
        if host_port == 0 || host_network {
            continue;
        }
        out.push(PortMapping {
            host_port,
            container_port,
            protocol: protocol.to_string(),
            host_ip: p.host_ip.clone(),
        });
    }
    Ok(out)
}

const SEC: &str = "config.linux.security_context";

/// Canonical capability names (`CAP_*`, or "ALL" where `all_ok`), refusing unknown ones.
fn capability_names(names: &[String], list: &str, all_ok: bool) -> Result<Vec<String>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let field = || format!("{SEC}.capabilities.{list}[{i}]");
            match capabilities::canonical(name) {
                Some(c) if c == capabilities::ALL && !all_ok => {
                    Err(Error::invalid(field(), "\"ALL\" is not allowed here"))
                }
                Some(c) => Ok(c),
                None => Err(Error::invalid(
                    field(),
                    format!("unknown capability {name:?}"),
                )),
            }
        })
        .collect()
}

/// Absolute container paths without NUL bytes.
fn container_paths(paths: &[String], list: &str) -> Result<Vec<String>> {
    for (i, p) in paths.iter().enumerate() {
        let field = format!("{SEC}.{list}[{i}]");
        no_nul(p, &field)?;
        if !p.starts_with('/') {
            return Err(Error::invalid(field, format!("{p:?} must be absolute")));
        }
    }
    Ok(paths.to_vec())
}

/// CRI `seccomp` (or, from older clients, `seccomp_profile_path`): which filter to load.
/// Privileged containers get none whatever they ask, as in every runtime; the infra's own
/// profile (the sandbox's) is not applied: it only waits for signals.
#[allow(deprecated)] // seccomp_profile_path: older clients (critest's docker/default) send it
fn seccomp_policy(sec: &cri::LinuxContainerSecurityContext) -> Result<SeccompPolicy> {
    use cri::security_profile::ProfileType;
    if let Some(p) = &sec.seccomp {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::Unconfined) => Ok(SeccompPolicy::Unconfined),
            Ok(ProfileType::RuntimeDefault) => Ok(SeccompPolicy::RuntimeDefault),
            Ok(ProfileType::Localhost) => {
                localhost_profile(&p.localhost_ref, "seccomp.localhost_ref")
            }
            Err(_) => Err(Error::invalid(
                format!("{SEC}.seccomp.profile_type"),
                format!("unknown profile type {}", p.profile_type),
            )),
        };
    }
    match sec.seccomp_profile_path.as_str() {
        "" | "unconfined" => Ok(SeccompPolicy::Unconfined),
        "runtime/default" | "docker/default" => Ok(SeccompPolicy::RuntimeDefault),
        other => match other.strip_prefix("localhost/") {
            Some(path) => localhost_profile(path, "seccomp_profile_path"),
            None => Err(Error::invalid(
                format!("{SEC}.seccomp_profile_path"),
                format!(
                    "{other:?} is not a profile: use \"unconfined\", \"runtime/default\" or \
                     \"localhost/<absolute path>\""
                ),
            )),
        },
    }
}

fn localhost_profile(path: &str, field: &str) -> Result<SeccompPolicy> {
    if !path.starts_with('/') {
        return Err(Error::invalid(
            format!("{SEC}.{field}"),
            format!("{path:?} must be an absolute path to a profile on the node"),
        ));
    }
    no_nul(path, &format!("{SEC}.{field}"))?;
    Ok(SeccompPolicy::Localhost(path.into()))
}

pub fn container_config(config: Option<cri::ContainerConfig>) -> Result<ContainerConfig> {
    let config = config.ok_or_else(|| Error::invalid("config", "is required"))?;
    let meta = config
        .metadata
        .ok_or_else(|| Error::invalid("config.metadata", "is required (name)"))?;
    if meta.name.is_empty() {
        return Err(Error::invalid("config.metadata.name", "is required"));
    }
    no_nul(&meta.name, "config.metadata.name")?;
    if meta.name.contains('/') {
        return Err(Error::invalid(
            "config.metadata.name",
            "must not contain '/'",
        ));
    }
    let image = config
        .image
        .map(|i| i.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::invalid("config.image.image", "is required"))?;
    for (i, a) in config.command.iter().chain(&config.args).enumerate() {
        no_nul(a, &format!("config.command/args[{i}]"))?;
    }
    let mut envs = Vec::new();
    for (i, kv) in config.envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains('=') {
            return Err(Error::invalid(
                format!("config.envs[{i}].key"),
                format!("{:?} must be non-empty and without '='", kv.key),
            ));
        }
        let value = String::from_utf8(kv.value.clone())
            .map_err(|_| Error::invalid(format!("config.envs[{i}].value"), "is not valid UTF-8"))?;
        no_nul(&value, &format!("config.envs[{i}].value"))?;
        envs.push((kv.key.clone(), value));
    }
    if config.tty || config.stdin {
        return Err(Error::invalid(
            "config.tty/stdin",
            "interactive containers (tty, stdin) are not supported yet",
        ));
    }
    let sec = config
        .linux
        .and_then(|l| l.security_context)
        .unwrap_or_default();
    // Without namespace options the container follows its pod.
    let pid = match sec.namespace_options.as_ref() {
        Some(ns) => Some(ns_mode(
            ns.pid,
            "config.linux.security_context.namespace_options.pid",
            true,
        )?),
        None => None,
    };
    if sec.run_as_group.is_some() && sec.run_as_user.is_none() && sec.run_as_username.is_empty() {
        return Err(Error::invalid(
            format!("{SEC}.run_as_group"),
            "is set without run_as_user or run_as_username: a group needs a user to go with it",
        ));
    }
    let seccomp = seccomp_policy(&sec)?;
    let caps = sec.capabilities.clone().unwrap_or_default();
    let add_capabilities = capability_names(&caps.add_capabilities, "add_capabilities", true)?;
    let drop_capabilities = capability_names(&caps.drop_capabilities, "drop_capabilities", true)?;
    let add_ambient_capabilities = capability_names(
        &caps.add_ambient_capabilities,
        "add_ambient_capabilities",
        false,
    )?;
    let masked_paths = container_paths(&sec.masked_paths, "masked_paths")?;
    let readonly_paths = container_paths(&sec.readonly_paths, "readonly_paths")?;
    let supplemental_groups = sec
        .supplemental_groups
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            u32::try_from(g).map_err(|_| {
                Error::invalid(
                    format!("{SEC}.supplemental_groups[{i}]"),
                    format!("{g} is not a valid gid"),
                )
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    let supplemental_groups_strict =
        sec.supplemental_groups_policy == cri::SupplementalGroupsPolicy::Strict as i32;
    let mut mounts = Vec::with_capacity(config.mounts.len());
    for (i, m) in config.mounts.iter().enumerate() {
        let propagation = match cri::MountPropagation::try_from(m.propagation) {
            Ok(cri::MountPropagation::PropagationPrivate) => Propagation::Private,
            Ok(cri::MountPropagation::PropagationHostToContainer) => Propagation::Slave,
            Ok(cri::MountPropagation::PropagationBidirectional) => Propagation::Shared,
            Err(_) => {
                return Err(Error::invalid(
                    format!("config.mounts[{i}].propagation"),
                    format!("unknown mount propagation {}", m.propagation),
                ))
            }
        };
        mounts.push(MountConfig {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.readonly,
            propagation,
        });
    }
    Ok(ContainerConfig {
        name: meta.name,
        attempt: meta.attempt,
        image,
        command: config.command,
        args: config.args,
        working_dir: config.working_dir,
        envs,
        mounts,
        labels: sorted(&config.labels),
        annotations: sorted(&config.annotations),
        log_path: config.log_path,
        run_as_user: sec.run_as_user.map(|v| v.value),
        run_as_group: sec.run_as_group.map(|v| v.value),
        run_as_username: sec.run_as_username,
        pid,
        readonly_rootfs: sec.readonly_rootfs,
        add_capabilities,
        drop_capabilities,
        add_ambient_capabilities,
        privileged: sec.privileged,
        no_new_privs: sec.no_new_privs,
        masked_paths,
        readonly_paths,
        supplemental_groups,
        supplemental_groups_strict,
        seccomp,
    })
}

pub fn pod_state(state: PodState) -> i32 {
    match state {
        PodState::Ready => cri::PodSandboxState::SandboxReady as i32,
        PodState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

pub fn pod_state_in(value: i32) -> PodState {
    if value == cri::PodSandboxState::SandboxReady as i32 {
        PodState::Ready
    } else {
        PodState::NotReady
    }
}

pub fn container_state(state: ContainerState) -> i32 {
    (match state {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
    }) as i32
}

pub fn container_state_in(value: i32) -> Option<ContainerState> {
    match cri::ContainerState::try_from(value).ok()? {
        cri::ContainerState::ContainerCreated => Some(ContainerState::Created),
        cri::ContainerState::ContainerRunning => Some(ContainerState::Running),
        cri::ContainerState::ContainerExited => Some(ContainerState::Exited),
        cri::ContainerState::ContainerUnknown => None,
    }
}

fn pod_metadata(p: &PodRecord) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: p.config.name.clone(),
        uid: p.config.uid.clone(),
        namespace: p.config.namespace.clone(),
        attempt: p.config.attempt,
    }
}

pub fn pod_sandbox(p: &PodRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: p.id.clone(),
        metadata: Some(pod_metadata(p)),
        state: pod_state(p.state),
        created_at: p.created_at,
        labels: unsorted(&p.config.labels),
        annotations: unsorted(&p.config.annotations),
        runtime_handler: p.config.runtime_handler.clone(),
    }
}

pub fn pod_status(p: &PodRecord) -> cri::PodSandboxStatus {
    cri::PodSandboxStatus {
        id: p.id.clone(),
        metadata: Some(pod_metadata(p)),
        state: pod_state(p.state),
        created_at: p.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: p.ips.first().map(|ip| ip.to_string()).unwrap_or_default(),
            additional_ips: p
                .ips
                .iter()
                .skip(1)
                .map(|ip| cri::PodIp { ip: ip.to_string() })
                .collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: ns_mode_out(p.config.network),
                    pid: ns_mode_out(p.config.pid),
                    ipc: ns_mode_out(p.config.ipc),
                    ..Default::default()
                }),
            }),
        }),
        labels: unsorted(&p.config.labels),
        annotations: unsorted(&p.config.annotations),
        runtime_handler: p.config.runtime_handler.clone(),
    }
}

fn container_metadata(c: &ContainerRecord) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: c.config.name.clone(),
        attempt: c.config.attempt,
    }
}

fn image_spec(c: &ContainerRecord) -> cri::ImageSpec {
    cri::ImageSpec {
        image: c.image_ref.clone(),
        user_specified_image: c.config.image.clone(),
        ..Default::default()
    }
}

pub fn container(c: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.pod_id.clone(),
        metadata: Some(container_metadata(c)),
        image: Some(image_spec(c)),
        image_ref: c.image_id.clone(),
        state: container_state(c.state),
        created_at: c.created_at,
        labels: unsorted(&c.config.labels),
        annotations: unsorted(&c.config.annotations),
        image_id: c.image_id.clone(),
    }
}

pub fn container_status(c: &ContainerRecord) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: Some(container_metadata(c)),
        state: container_state(c.state),
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: Some(image_spec(c)),
        image_ref: c.image_id.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: unsorted(&c.config.labels),
        annotations: unsorted(&c.config.annotations),
        mounts: c
            .config
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: match m.propagation {
                    Propagation::Private => cri::MountPropagation::PropagationPrivate,
                    Propagation::Slave => cri::MountPropagation::PropagationHostToContainer,
                    Propagation::Shared => cri::MountPropagation::PropagationBidirectional,
                } as i32,
                ..Default::default()
            })
            .collect(),
        log_path: c.log_path.display().to_string(),
        image_id: c.image_id.clone(),
        ..Default::default()
    }
}

/// The credentials a CRI PullImage request carries and the registry host they are for
/// (`server_address`); a malformed field is INVALID_ARGUMENT naming it.
pub fn credentials(auth: Option<&cri::AuthConfig>) -> Result<PullAuth, Error> {
    let Some(a) = auth else {
        return Ok(Credentials::Anonymous.into());
    };
    Credentials::from_cri(CriAuth {
        username: &a.username,
        password: &a.password,
        auth: &a.auth,
        identity_token: &a.identity_token,
        registry_token: &a.registry_token,
    })
    .and_then(|creds| PullAuth::new(creds, &a.server_address))
    .map_err(|(field, reason)| Error::invalid(field, reason))
}

/// A checked PullImage request: the image reference (INVALID_ARGUMENT naming `field` when
/// it is missing or malformed) and its credentials.
pub fn pull_request(
    req: cri::PullImageRequest,
    field: &str,
) -> Result<(String, String, PullAuth), Error> {
    let image = req
        .image
        .map(|s| s.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::invalid(field, "is required"))?;
    let normalized =
        normalize_reference(&image).map_err(|e| Error::invalid(field, e.to_string()))?;
    let creds = credentials(req.auth.as_ref())?;
    Ok((image, normalized, creds))
}

/// One pull progress event for podd.v1 PullImage.
pub fn progress(p: Progress, reference: &str) -> PullProgress {
    PullProgress {
        digest: p.digest,
        kind: p.kind.to_string(),
        total: p.total,
        current: p.current,
        status: p.status.to_string(),
        done: false,
        image_ref: String::new(),
        reference: reference.to_string(),
    }
}

/// The last message of a podd.v1 PullImage stream.
pub fn progress_done(image: &Image, reference: &str) -> PullProgress {
    PullProgress {
        status: "done".into(),
        done: true,
        image_ref: image.id.clone(),
        reference: reference.to_string(),
        ..Default::default()
    }
}

pub fn image(i: &Image) -> cri::Image {
    let uid = i
        .config
        .user
        .split(':')
        .next()
        .and_then(|u| u.parse::<i64>().ok());
    cri::Image {
        id: i.id.clone(),
        repo_tags: i.repo_tags.clone(),
        repo_digests: i.repo_digests.clone(),
        size: i.size,
        uid: uid.map(|value| cri::Int64Value { value }),
        username: if uid.is_none() {
            i.config.user.split(':').next().unwrap_or("").to_string()
        } else {
            String::new()
        },
        spec: Some(cri::ImageSpec {
            image: i.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busybox(sec: cri::LinuxContainerSecurityContext) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "a".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(sec),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn security_context_is_carried_with_canonical_names() {
        let c = container_config(Some(busybox(cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: strings(&["net_admin", "CAP_SYS_TIME", "all"]),
                drop_capabilities: strings(&["MKNOD"]),
                add_ambient_capabilities: strings(&["NET_ADMIN"]),
            }),
            privileged: true,
            no_new_privs: true,
            masked_paths: strings(&["/proc/version"]),
            readonly_paths: strings(&["/etc"]),
            ..Default::default()
        })))
        .unwrap();
        assert_eq!(
            c.add_capabilities,
            strings(&["CAP_NET_ADMIN", "CAP_SYS_TIME", "ALL"])
        );
        assert_eq!(c.drop_capabilities, strings(&["CAP_MKNOD"]));
        assert_eq!(c.add_ambient_capabilities, strings(&["CAP_NET_ADMIN"]));
        assert!(c.privileged && c.no_new_privs);
        assert_eq!(c.masked_paths, strings(&["/proc/version"]));
        assert_eq!(c.readonly_paths, strings(&["/etc"]));
        let plain = container_config(Some(busybox(Default::default()))).unwrap();
        assert!(!plain.privileged && !plain.no_new_privs);
        assert!(plain.add_capabilities.is_empty() && plain.masked_paths.is_empty());
    }

    #[test]
    #[allow(deprecated)]
    fn seccomp_profiles_map_to_policies() {
        use crate::container::seccomp::Policy;
        use cri::security_profile::ProfileType;
        let profile = |t: ProfileType, r: &str| cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            }),
            ..Default::default()
        };
        let path = |p: &str| cri::LinuxContainerSecurityContext {
            seccomp_profile_path: p.into(),
            ..Default::default()
        };
        for (sec, want) in [
            (Default::default(), Policy::Unconfined),
            (profile(ProfileType::Unconfined, ""), Policy::Unconfined),
            (
                profile(ProfileType::RuntimeDefault, ""),
                Policy::RuntimeDefault,
            ),
            (
                profile(ProfileType::Localhost, "/p.json"),
                Policy::Localhost("/p.json".into()),
            ),
            (path("unconfined"), Policy::Unconfined),
            (path("docker/default"), Policy::RuntimeDefault),
            (path("runtime/default"), Policy::RuntimeDefault),
            (
                path("localhost//p.json"),
                Policy::Localhost("/p.json".into()),
            ),
        ] {
            let got = container_config(Some(busybox(sec.clone())))
                .unwrap()
                .seccomp;
            assert_eq!(got, want, "{sec:?}");
        }
        for (sec, field) in [
            (
                profile(ProfileType::Localhost, "p.json"),
                "seccomp.localhost_ref",
            ),
            (path("/p.json"), "seccomp_profile_path"),
            (path("localhost/p.json"), "seccomp_profile_path"),
        ] {
            let err = container_config(Some(busybox(sec)))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn run_as_group_needs_a_user() {
        let group = Some(cri::Int64Value { value: 7 });
        let err = container_config(Some(busybox(cri::LinuxContainerSecurityContext {
            run_as_group: group,
            ..Default::default()
        })))
        .unwrap_err();
        assert!(err.to_string().contains("run_as_group"), "{err}");
        for sec in [
            cri::LinuxContainerSecurityContext {
                run_as_group: group,
                run_as_user: Some(cri::Int64Value { value: 0 }),
                ..Default::default()
            },
            cri::LinuxContainerSecurityContext {
                run_as_group: group,
                run_as_username: "nobody".into(),
                ..Default::default()
            },
        ] {
            container_config(Some(busybox(sec))).unwrap();
        }
    }

    #[test]
    fn bad_security_context_names_the_field() {
        let cases = [
            (
                cri::LinuxContainerSecurityContext {
                    capabilities: Some(cri::Capability {
                        add_capabilities: strings(&["KILL", "CAP_FLY"]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "config.linux.security_context.capabilities.add_capabilities[1]",
            ),
            (
                cri::LinuxContainerSecurityContext {
                    capabilities: Some(cri::Capability {
                        drop_capabilities: strings(&["nope"]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "config.linux.security_context.capabilities.drop_capabilities[0]",
            ),
            (
                cri::LinuxContainerSecurityContext {
                    capabilities: Some(cri::Capability {
                        add_ambient_capabilities: strings(&["ALL"]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "config.linux.security_context.capabilities.add_ambient_capabilities[0]",
            ),
            (
                cri::LinuxContainerSecurityContext {
                    masked_paths: strings(&["proc/kcore"]),
                    ..Default::default()
                },
                "config.linux.security_context.masked_paths[0]",
            ),
            (
                cri::LinuxContainerSecurityContext {
                    readonly_paths: strings(&["/ok", "/a\0b"]),
                    ..Default::default()
                },
                "config.linux.security_context.readonly_paths[1]",
            ),
        ];
        for (sec, field) in cases {
            let err = container_config(Some(busybox(sec))).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument { field: f, .. } if f == field),
                "want {field}: {err}"
            );
        }
    }

    #[test]
    fn pod_privileged_flag() {
        let mut cfg = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            !pod_config(Some(cfg.clone()), String::new())
                .unwrap()
                .privileged
        );
        cfg.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(pod_config(Some(cfg), String::new()).unwrap().privileged);
    }

    #[test]
    fn pod_without_metadata_names_the_field() {
        let err = pod_config(Some(cri::PodSandboxConfig::default()), String::new()).unwrap_err();
        assert!(err.to_string().contains("config.metadata"), "{err}");
    }

    #[test]
    fn pod_keeps_empty_hostname_and_defaults_modes() {
        let cfg = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            ..Default::default()
        };
        let p = pod_config(Some(cfg), String::new()).unwrap();
        assert_eq!(p.hostname, "");
        assert_eq!(
            (p.network, p.ipc, p.pid),
            (NsMode::Pod, NsMode::Pod, NsMode::Pod)
        );
    }

    #[test]
    fn bad_hostname_and_env_are_refused() {
        let cfg = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                ..Default::default()
            }),
            hostname: "Not_Valid".into(),
            ..Default::default()
        };
        assert!(pod_config(Some(cfg), String::new())
            .unwrap_err()
            .to_string()
            .contains("config.hostname"));
        let c = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "a".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            envs: vec![cri::KeyValue {
                key: "A=B".into(),
                value: b"x".to_vec(),
            }],
            ..Default::default()
        };
        assert!(container_config(Some(c))
            .unwrap_err()
            .to_string()
            .contains("config.envs[0].key"));
    }

    fn named(cfg: cri::PodSandboxConfig) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                ..Default::default()
            }),
            ..cfg
        }
    }

    #[test]
    fn port_mappings_keep_host_ports_only_and_name_bad_fields() {
        let pm = |protocol: i32, container_port, host_port, host_ip: &str| cri::PortMapping {
            protocol,
            container_port,
            host_port,
            host_ip: host_ip.into(),
        };
        let cfg = named(cri::PodSandboxConfig {
            port_mappings: vec![
                pm(cri::Protocol::Tcp as i32, 80, 8080, "127.0.0.1"),
                pm(cri::Protocol::Udp as i32, 53, 0, ""),
                pm(cri::Protocol::Sctp as i32, 9, 9, ""),
            ],
            ..Default::default()
        });
        let p = pod_config(Some(cfg), String::new()).unwrap();
        let got: Vec<(u16, u16, &str, &str)> = p
            .port_mappings
            .iter()
            .map(|m| {
                (
                    m.host_port,
                    m.container_port,
                    m.protocol.as_str(),
                    m.host_ip.as_str(),
                )
            })
            .collect();
        assert_eq!(got, [(8080, 80, "tcp", "127.0.0.1"), (9, 9, "sctp", "")]);
        for (bad, field) in [
            (pm(0, 0, 80, ""), "config.port_mappings[0].container_port"),
            (pm(0, 80, 70000, ""), "config.port_mappings[0].host_port"),
            (pm(7, 80, 80, ""), "config.port_mappings[0].protocol"),
            (
                pm(0, 80, 80, "localhost"),
                "config.port_mappings[0].host_ip",
            ),
        ] {
            let cfg = named(cri::PodSandboxConfig {
                port_mappings: vec![bad],
                ..Default::default()
            });
            let err = pod_config(Some(cfg), String::new()).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument { field: f, .. } if f == field),
                "want {field}: {err}"
            );
        }
    }

    #[test]
    fn dns_config_entries_are_single_words_and_servers_ips() {
        let dns = |servers: &[&str], searches: &[&str]| {
            named(cri::PodSandboxConfig {
                dns_config: Some(cri::DnsConfig {
                    servers: strings(servers),
                    searches: strings(searches),
                    options: strings(&["ndots:5"]),
                }),
                ..Default::default()
            })
        };
        let p = pod_config(Some(dns(&["10.0.0.10"], &["a.example"])), String::new()).unwrap();
        assert_eq!(p.dns.servers, ["10.0.0.10"]);
        assert_eq!(p.dns.options, ["ndots:5"]);
        for (cfg, field) in [
            (dns(&["dns.example"], &[]), "config.dns_config.servers[0]"),
            (
                dns(&["10.0.0.10"], &["a\nnameserver 6.6.6.6"]),
                "config.dns_config.searches[0]",
            ),
        ] {
            let err = pod_config(Some(cfg), String::new()).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument { field: f, .. } if f == field),
                "want {field}: {err}"
            );
        }
    }
}
