//! Kubernetes `v1/Pod` manifests: the subset podctl runs, and validation that
//! names the file, line and field of every problem.
//!
//! Parsing goes through `serde_yaml` wrapped in `serde_path_to_error`, so a type
//! error reads `pod.yaml:12:9: spec.containers[1].image: invalid type: ...`.
//! Semantic checks run on the parsed [`Pod`] and report field paths in the same
//! notation; [`Positions`] (one pass of a position-tracking YAML parser) maps
//! those paths back to lines and columns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use yaml_rust2::parser::{Event, Parser};

/// A Kubernetes `v1/Pod`, as much of it as podctl understands. Fields it does
/// not know are ignored, as a kubelet ignores fields it has no use for, but
/// listed in `ignored` so that podctl can warn: a misspelt `comand:` would
/// otherwise silently run the image's default command.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    /// The fields of the manifest podctl does not use, with their positions.
    #[serde(skip)]
    pub ignored: Vec<Problem>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub hostname: Option<String>,
    #[serde(default)]
    pub share_process_namespace: bool,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default, rename = "hostIPC")]
    pub host_ipc: bool,
    #[serde(default, rename = "hostPID")]
    pub host_pid: bool,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Only pod-level `runAsUser`/`runAsGroup`, the defaults for containers.
    pub security_context: Option<PodSecurityContext>,
    /// Refused with a clear error rather than silently skipped.
    pub init_containers: Option<serde_yaml::Value>,
    /// `ClusterFirst` (the default), `ClusterFirstWithHostNet`, `Default` or `None`.
    pub dns_policy: Option<String>,
    pub dns_config: Option<PodDnsConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodDnsConfig {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub searches: Vec<String>,
    #[serde(default)]
    pub options: Vec<PodDnsConfigOption>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodDnsConfigOption {
    #[serde(default)]
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default)]
    pub container_port: i64,
    pub host_port: Option<i64>,
    pub protocol: Option<String>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// The DNS policies Kubernetes defines.
pub const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// Namespaced sysctls for the pod; podd checks which ones a pod may set.
    #[serde(default)]
    pub sysctls: Vec<Sysctl>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Sysctl {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    pub image: Option<String>,
    pub image_pull_policy: Option<crate::pull::PullPolicy>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Refused: dropping it silently would start the container without its
    /// environment.
    pub env_from: Option<serde_yaml::Value>,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    pub security_context: Option<SecurityContext>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    #[serde(default)]
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    pub sub_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub read_only_root_filesystem: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    pub empty_dir: Option<EmptyDir>,
    pub host_path: Option<HostPathSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDir {
    /// Only the default (disk) medium is supported. `sizeLimit` is accepted
    /// and not enforced.
    pub medium: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPathSource {
    #[serde(default)]
    pub path: String,
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

/// The `hostPath.type` values Kubernetes defines ("" means no check).
pub const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

impl Pod {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        match self.metadata.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => "default",
        }
    }
}

/// One problem in a manifest: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `(line, column)`, both 1-based, when known.
    pub position: Option<(usize, usize)>,
    /// Field path such as `spec.containers[1].image`; `.` for the document.
    pub field: String,
    pub message: String,
}

/// A manifest podctl refuses, with every problem found.
#[derive(Debug)]
pub struct ManifestError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl Problem {
    /// `file:line:col: field: message` (without `:line:col` when the position is unknown).
    pub fn in_file(&self, file: &str) -> String {
        match self.position {
            Some((line, col)) => format!("{file}:{line}:{col}: {}: {}", self.field, self.message),
            None => format!("{file}: {}: {}", self.field, self.message),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&p.in_file(&self.file))?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

/// Parses and validates a manifest. `file` is used in messages only.
pub fn load(file: &str, text: &str) -> Result<Pod, ManifestError> {
    let refuse = |problems| ManifestError {
        file: file.to_string(),
        problems,
    };
    let (mut pod, ignored) = parse(text).map_err(|p| refuse(vec![p]))?;
    let problems = validate(&pod);
    if problems.is_empty() && ignored.is_empty() {
        return Ok(pod);
    }
    let positions = Positions::of(text);
    pod.ignored = ignored
        .into_iter()
        .map(|field| Problem {
            position: positions.locate(&field),
            field,
            message: "podctl does not use this field and ignores it (misspelt?)".into(),
        })
        .collect();
    if problems.is_empty() {
        return Ok(pod);
    }
    Err(refuse(
        problems
            .into_iter()
            .map(|(field, message)| Problem {
                position: positions.locate(&field),
                field,
                message,
            })
            .collect(),
    ))
}

/// The pod, and the paths of the fields in `text` it has no place for.
fn parse(text: &str) -> Result<(Pod, Vec<String>), Problem> {
    let mut ignored = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| ignored.push(field_path(&path));
    let de = serde_ignored::Deserializer::new(serde_yaml::Deserializer::from_str(text), &mut note);
    let pod = serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.inner();
        let position = inner.location().map(|l| (l.line(), l.column()));
        let mut message = inner.to_string();
        // serde_yaml puts the position at the end and its own copy of the
        // path in front; we print both in the `file:line:col: field:` prefix.
        if let Some((line, col)) = position {
            if let Some(m) = message.strip_suffix(&format!(" at line {line} column {col}")) {
                message = m.to_string();
            }
        }
        if let Some(m) = message.strip_prefix(&format!("{field}: ")) {
            message = m.to_string();
        }
        Problem {
            position,
            field,
            message,
        }
    })?;
    Ok((pod, ignored))
}

/// `spec.containers[0].comand`: the notation of [`Problem::field`] and [`Positions`].
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => join(&field_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Is `s` a DNS-1123 label (what Kubernetes requires of pod and container names)?
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

const DNS1123_HELP: &str =
    "must be a DNS-1123 label: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit";

/// Semantic checks, run before any CRI call. Returns `(field, message)` pairs.
pub fn validate(pod: &Pod) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut bad = |field: String, msg: String| out.push((field, msg));

    match pod.api_version.as_deref() {
        Some("v1") => {}
        Some(other) => bad(
            "apiVersion".into(),
            format!("must be \"v1\", not {other:?}"),
        ),
        None => bad("apiVersion".into(), "required (\"v1\")".into()),
    }
    match pod.kind.as_deref() {
        Some("Pod") => {}
        Some(other) => bad("kind".into(), format!("must be \"Pod\", not {other:?}")),
        None => bad("kind".into(), "required (\"Pod\")".into()),
    }
    match pod.metadata.name.as_deref() {
        None | Some("") => bad("metadata.name".into(), "required".into()),
        Some(n) if !is_dns1123_label(n) => {
            bad("metadata.name".into(), format!("{n:?} {DNS1123_HELP}"))
        }
        Some(_) => {}
    }
    if let Some(ns) = pod.metadata.namespace.as_deref() {
        if !ns.is_empty() && !is_dns1123_label(ns) {
            bad(
                "metadata.namespace".into(),
                format!("{ns:?} {DNS1123_HELP}"),
            );
        }
    }
    if let Some(uid) = pod.metadata.uid.as_deref() {
        // The uid names a directory under the volumes root.
        if uid.is_empty()
            || uid == "."
            || uid == ".."
            || !uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bad(
                "metadata.uid".into(),
                format!("{uid:?} must be letters, digits, '-', '_' or '.' (a UUID)"),
            );
        }
    }
    if let Some(h) = pod.spec.hostname.as_deref() {
        if !is_dns1123_label(h) {
            bad("spec.hostname".into(), format!("{h:?} {DNS1123_HELP}"));
        }
    }
    if pod.spec.init_containers.is_some() {
        bad(
            "spec.initContainers".into(),
            "init containers are not supported by podctl".into(),
        );
    }

    let mut volumes = HashSet::new();
    for (i, v) in pod.spec.volumes.iter().enumerate() {
        let at = format!("spec.volumes[{i}]");
        if !is_dns1123_label(&v.name) {
            bad(format!("{at}.name"), format!("{:?} {DNS1123_HELP}", v.name));
        } else if !volumes.insert(v.name.as_str()) {
            bad(
                format!("{at}.name"),
                format!("duplicate volume {:?}", v.name),
            );
        }
        match (&v.empty_dir, &v.host_path) {
            (Some(_), Some(_)) => bad(
                at.clone(),
                "a volume has exactly one source: emptyDir or hostPath".into(),
            ),
            (None, None) => bad(
                at.clone(),
                "no supported volume source: podctl supports emptyDir and hostPath".into(),
            ),
            (Some(e), None) => {
                if let Some(m) = e.medium.as_deref() {
                    if !m.is_empty() {
                        bad(
                            format!("{at}.emptyDir.medium"),
                            format!("medium {m:?} is not supported (only the default disk medium)"),
                        );
                    }
                }
            }
            (None, Some(h)) => {
                if !h.path.starts_with('/') {
                    bad(
                        format!("{at}.hostPath.path"),
                        format!("{:?} must be an absolute path", h.path),
                    );
                }
                if let Some(t) = h.type_.as_deref() {
                    if !HOST_PATH_TYPES.contains(&t) {
                        bad(
                            format!("{at}.hostPath.type"),
                            format!(
                                "unknown type {t:?} (one of {})",
                                HOST_PATH_TYPES[1..].join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }

    validate_dns(pod, &mut bad);
    validate_sysctls(pod, &mut bad);

    if pod.spec.containers.is_empty() {
        bad(
            "spec.containers".into(),
            "a pod needs at least one container".into(),
        );
    }
    let mut names = HashSet::new();
    let mut host_ports = HashSet::new();
    for (i, c) in pod.spec.containers.iter().enumerate() {
        let at = format!("spec.containers[{i}]");
        if c.name.is_empty() {
            bad(format!("{at}.name"), "required".into());
        } else if !is_dns1123_label(&c.name) {
            bad(format!("{at}.name"), format!("{:?} {DNS1123_HELP}", c.name));
        } else if !names.insert(c.name.as_str()) {
            bad(
                format!("{at}.name"),
                format!("duplicate container name {:?}", c.name),
            );
        }
        match c.image.as_deref() {
            None | Some("") => bad(format!("{at}.image"), "required".into()),
            Some(_) => {}
        }
        if c.env_from.is_some() {
            bad(
                format!("{at}.envFrom"),
                "envFrom is not supported by podctl (use env with name/value)".into(),
            );
        }
        for (j, e) in c.env.iter().enumerate() {
            if e.name.is_empty() {
                bad(format!("{at}.env[{j}].name"), "required".into());
            }
            if e.value_from.is_some() {
                bad(
                    format!("{at}.env[{j}].valueFrom"),
                    "valueFrom is not supported by podctl (use value)".into(),
                );
            }
        }
        if let Some(w) = c.working_dir.as_deref() {
            if !w.is_empty() && !w.starts_with('/') {
                bad(
                    format!("{at}.workingDir"),
                    format!("{w:?} must be an absolute path"),
                );
            }
        }
        for (j, p) in c.ports.iter().enumerate() {
            let pat = format!("{at}.ports[{j}]");
            if !(1..=65535).contains(&p.container_port) {
                bad(
                    format!("{pat}.containerPort"),
                    format!("{} must be a port number (1-65535)", p.container_port),
                );
            }
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                bad(
                    format!("{pat}.protocol"),
                    format!("{proto:?} must be TCP, UDP or SCTP"),
                );
            }
            if let Some(hp) = p.host_port.filter(|&hp| hp != 0) {
                if !(1..=65535).contains(&hp) {
                    bad(
                        format!("{pat}.hostPort"),
                        format!("{hp} must be a port number (1-65535)"),
                    );
                } else {
                    let ip = p.host_ip.clone().unwrap_or_default();
                    if !host_ports.insert((hp, proto.to_string(), ip)) {
                        bad(
                            format!("{pat}.hostPort"),
                            format!("host port {hp}/{proto} is used twice in this pod"),
                        );
                    }
                }
            }
            if let Some(ip) = p.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                if ip.parse::<std::net::IpAddr>().is_err() {
                    bad(
                        format!("{pat}.hostIP"),
                        format!("{ip:?} is not an IP address"),
                    );
                }
            }
        }
        let mut paths = HashSet::new();
        for (j, m) in c.volume_mounts.iter().enumerate() {
            let mat = format!("{at}.volumeMounts[{j}]");
            if m.name.is_empty() {
                bad(format!("{mat}.name"), "required".into());
            } else if !volumes.contains(m.name.as_str()) {
                bad(
                    format!("{mat}.name"),
                    format!("no volume named {:?} in spec.volumes", m.name),
                );
            }
            if !m.mount_path.starts_with('/') {
                bad(
                    format!("{mat}.mountPath"),
                    format!("{:?} must be an absolute path", m.mount_path),
                );
            } else if !paths.insert(m.mount_path.trim_end_matches('/')) {
                bad(
                    format!("{mat}.mountPath"),
                    format!("{:?} is mounted twice", m.mount_path),
                );
            }
            if let Some(sp) = m.sub_path.as_deref() {
                if sp.starts_with('/') || sp.split('/').any(|p| p == "..") {
                    bad(
                        format!("{mat}.subPath"),
                        format!("{sp:?} must be a relative path without '..'"),
                    );
                }
            }
        }
    }
    out
}

/// `dnsPolicy` and `dnsConfig` as Kubernetes validates them.
/// Names present and unique; which sysctls a pod may set is podd's to say.
fn validate_sysctls(pod: &Pod, bad: &mut impl FnMut(String, String)) {
    let Some(sc) = &pod.spec.security_context else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for (i, s) in sc.sysctls.iter().enumerate() {
        let field = format!("spec.securityContext.sysctls[{i}].name");
        if s.name.is_empty() {
            bad(field, "required".into());
        } else if !seen.insert(s.name.as_str()) {
            bad(field, format!("{:?} is given twice", s.name));
        }
    }
}

fn validate_dns(pod: &Pod, bad: &mut impl FnMut(String, String)) {
    let policy = pod.spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    if !DNS_POLICIES.contains(&policy) {
        bad(
            "spec.dnsPolicy".into(),
            format!("{policy:?} must be one of {}", DNS_POLICIES.join(", ")),
        );
    }
    let Some(dns) = &pod.spec.dns_config else {
        if policy == "None" {
            bad(
                "spec.dnsConfig".into(),
                "required when dnsPolicy is None".into(),
            );
        }
        return;
    };
    if policy == "None" && dns.nameservers.is_empty() {
        bad(
            "spec.dnsConfig.nameservers".into(),
            "at least one nameserver is required when dnsPolicy is None".into(),
        );
    }
    if dns.nameservers.len() > 3 {
        bad(
            "spec.dnsConfig.nameservers".into(),
            format!("{} nameservers; at most 3", dns.nameservers.len()),
        );
    }
    for (i, n) in dns.nameservers.iter().enumerate() {
        if n.parse::<std::net::IpAddr>().is_err() {
            bad(
                format!("spec.dnsConfig.nameservers[{i}]"),
                format!("{n:?} is not an IP address"),
            );
        }
    }
    let word = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    for (i, s) in dns.searches.iter().enumerate() {
        if !word(s) {
            bad(
                format!("spec.dnsConfig.searches[{i}]"),
                format!("{s:?} must be a domain name"),
            );
        }
    }
    for (i, o) in dns.options.iter().enumerate() {
        if !word(&o.name) || o.value.as_deref().is_some_and(|v| !word(v)) {
            bad(
                format!("spec.dnsConfig.options[{i}]"),
                "name (and value, if any) must be single words".into(),
            );
        }
    }
}

/// Where each field of a YAML document starts, by field path
/// (`spec.containers[1].name`). For a mapping entry that is the key's position.
#[derive(Debug, Default)]
pub struct Positions {
    map: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl Positions {
    /// One pass over the YAML events. A document that does not parse yields
    /// what was found before the error (the serde pass reports the error).
    pub fn of(text: &str) -> Positions {
        let mut map = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        let mut docs = 0;
        while let Ok((event, mark)) = parser.next_token() {
            // yaml-rust2 lines are 1-based, columns 0-based.
            let pos = (mark.line(), mark.col() + 1);
            let node_start = matches!(
                event,
                Event::Scalar(..)
                    | Event::Alias(_)
                    | Event::MappingStart(..)
                    | Event::SequenceStart(..)
            );
            // For a node: its path, or None when it is a mapping key.
            let mut path = None;
            if node_start {
                match stack.last_mut() {
                    None => path = Some(String::new()),
                    Some(Frame::Seq { path: p, next }) => {
                        path = Some(format!("{p}[{next}]"));
                        *next += 1;
                    }
                    Some(Frame::Map { path: p, key }) => match key.take() {
                        Some(k) => path = Some(join(p, &k)),
                        None => {
                            let k = match &event {
                                Event::Scalar(s, ..) => s.clone(),
                                _ => "?".to_string(),
                            };
                            // A block mapping's own start mark is unreliable
                            // in yaml-rust2: a mapping is where its first key is.
                            map.entry(p.clone()).or_insert(pos);
                            map.entry(join(p, &k)).or_insert(pos);
                            *key = Some(k);
                            if matches!(event, Event::Scalar(..) | Event::Alias(_)) {
                                continue;
                            }
                            // A complex key: track it under a path nobody asks for.
                            path = Some(format!("{}?key", join(p, "?")));
                        }
                    },
                }
            }
            match event {
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = path.unwrap_or_default();
                    if matches!(event, Event::SequenceStart(..)) {
                        map.entry(path.clone()).or_insert(pos);
                    }
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::Scalar(..) | Event::Alias(_) => {
                    map.entry(path.unwrap_or_default()).or_insert(pos);
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::DocumentStart => {
                    docs += 1;
                    if docs > 1 {
                        break;
                    }
                }
                Event::StreamEnd => break,
                _ => {}
            }
        }
        Positions { map }
    }

    /// The position of `field`, or of its nearest ancestor that is present
    /// (a missing field is reported at its parent).
    pub fn locate(&self, field: &str) -> Option<(usize, usize)> {
        let mut f = field;
        loop {
            if let Some(p) = self.map.get(f) {
                return Some(*p);
            }
            if f.is_empty() {
                return None;
            }
            f = parent(f);
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn parent(path: &str) -> &str {
    if let Some(stripped) = path.strip_suffix(']') {
        if let Some(i) = stripped.rfind('[') {
            return &path[..i];
        }
    }
    match path.rfind('.') {
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests;
