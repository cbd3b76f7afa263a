//! Output: crictl-like tables, and JSON/YAML through small serde views of the
//! CRI messages (the prost types have no serde derives), enums by name.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use podd_proto::runtime::v1 as cri;
use serde::Serialize;

/// `-o` on list and inspect verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Prints a serializable value as JSON (pretty) or YAML.
pub fn print_structured<T: Serialize>(format: Format, value: &T) -> Result<()> {
    match format {
        Format::Yaml => print!("{}", serde_yaml::to_string(value)?),
        _ => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

/// Columns padded to their widest cell, three spaces apart (as crictl's
/// tabwriter does).
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The first 13 characters of an id (after any `sha256:`), as crictl shows them.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(13).collect()
}

/// "2 minutes ago", from a CRI timestamp in nanoseconds since the epoch.
pub fn ago(created_at_ns: i64, now: SystemTime) -> String {
    if created_at_ns <= 0 {
        return "-".to_string();
    }
    let created = UNIX_EPOCH + Duration::from_nanos(created_at_ns as u64);
    let d = now.duration_since(created).unwrap_or_default();
    format!("{} ago", human_duration(d))
}

/// Docker's `units.HumanDuration`, which crictl uses.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (minutes, hours) = (secs / 60, secs / 3600);
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// Decimal size with three significant digits ("4.5MB"), like crictl.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    let s = if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[u])
}

/// `localhost/podd/busybox:latest` -> (`localhost/podd/busybox`, `latest`).
pub fn split_repo_tag(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "<none>"),
    }
}

pub fn pod_state_name(state: i32) -> &'static str {
    cri::PodSandboxState::try_from(state).map_or("UNKNOWN", |s| s.as_str_name())
}

pub fn pod_state_short(state: i32) -> &'static str {
    match cri::PodSandboxState::try_from(state) {
        Ok(cri::PodSandboxState::SandboxReady) => "Ready",
        Ok(cri::PodSandboxState::SandboxNotready) => "NotReady",
        Err(_) => "Unknown",
    }
}

pub fn container_state_name(state: i32) -> &'static str {
    cri::ContainerState::try_from(state).map_or("UNKNOWN", |s| s.as_str_name())
}

pub fn container_state_short(state: i32) -> &'static str {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => "Created",
        Ok(cri::ContainerState::ContainerRunning) => "Running",
        Ok(cri::ContainerState::ContainerExited) => "Exited",
        Ok(cri::ContainerState::ContainerUnknown) | Err(_) => "Unknown",
    }
}

fn ns_mode_name(mode: i32) -> &'static str {
    cri::NamespaceMode::try_from(mode).map_or("UNKNOWN", |m| m.as_str_name())
}

fn sorted(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadataView {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

impl From<Option<&cri::PodSandboxMetadata>> for PodMetadataView {
    fn from(m: Option<&cri::PodSandboxMetadata>) -> Self {
        let m = m.cloned().unwrap_or_default();
        PodMetadataView {
            name: m.name,
            uid: m.uid,
            namespace: m.namespace,
            attempt: m.attempt,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerMetadataView {
    pub name: String,
    pub attempt: u32,
}

impl From<Option<&cri::ContainerMetadata>> for ContainerMetadataView {
    fn from(m: Option<&cri::ContainerMetadata>) -> Self {
        let m = m.cloned().unwrap_or_default();
        ContainerMetadataView {
            name: m.name,
            attempt: m.attempt,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    pub id: String,
    pub metadata: PodMetadataView,
    pub state: &'static str,
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub runtime_handler: String,
}

impl From<&cri::PodSandbox> for PodView {
    fn from(p: &cri::PodSandbox) -> Self {
        PodView {
            id: p.id.clone(),
            metadata: p.metadata.as_ref().into(),
            state: pod_state_name(p.state),
            created_at: p.created_at,
            labels: sorted(&p.labels),
            annotations: sorted(&p.annotations),
            runtime_handler: p.runtime_handler.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    pub id: String,
    pub pod_sandbox_id: String,
    pub metadata: ContainerMetadataView,
    pub image: String,
    pub image_ref: String,
    pub image_id: String,
    pub state: &'static str,
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl From<&cri::Container> for ContainerView {
    fn from(c: &cri::Container) -> Self {
        ContainerView {
            id: c.id.clone(),
            pod_sandbox_id: c.pod_sandbox_id.clone(),
            metadata: c.metadata.as_ref().into(),
            image: c
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_ref: c.image_ref.clone(),
            image_id: c.image_id.clone(),
            state: container_state_name(c.state),
            created_at: c.created_at,
            labels: sorted(&c.labels),
            annotations: sorted(&c.annotations),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageView {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
    pub uid: Option<i64>,
    pub username: String,
    pub pinned: bool,
}

impl From<&cri::Image> for ImageView {
    fn from(i: &cri::Image) -> Self {
        ImageView {
            id: i.id.clone(),
            repo_tags: i.repo_tags.clone(),
            repo_digests: i.repo_digests.clone(),
            size: i.size,
            uid: i.uid.map(|u| u.value),
            username: i.username.clone(),
            pinned: i.pinned,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountView {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    pub propagation: &'static str,
}

impl From<&cri::Mount> for MountView {
    fn from(m: &cri::Mount) -> Self {
        MountView {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.readonly,
            propagation: cri::MountPropagation::try_from(m.propagation)
                .map_or("UNKNOWN", |p| p.as_str_name()),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatusView {
    pub id: String,
    pub metadata: ContainerMetadataView,
    pub state: &'static str,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub image: String,
    pub image_ref: String,
    pub image_id: String,
    pub reason: String,
    pub message: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub mounts: Vec<MountView>,
    pub log_path: String,
}

impl From<&cri::ContainerStatus> for ContainerStatusView {
    fn from(s: &cri::ContainerStatus) -> Self {
        ContainerStatusView {
            id: s.id.clone(),
            metadata: s.metadata.as_ref().into(),
            state: container_state_name(s.state),
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            exit_code: s.exit_code,
            image: s
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_ref: s.image_ref.clone(),
            image_id: s.image_id.clone(),
            reason: s.reason.clone(),
            message: s.message.clone(),
            labels: sorted(&s.labels),
            annotations: sorted(&s.annotations),
            mounts: s.mounts.iter().map(MountView::from).collect(),
            log_path: s.log_path.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceOptionsView {
    pub network: &'static str,
    pub pid: &'static str,
    pub ipc: &'static str,
    pub target_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodNetworkView {
    pub ip: String,
    pub additional_ips: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusView {
    pub id: String,
    pub metadata: PodMetadataView,
    pub state: &'static str,
    pub created_at: i64,
    pub network: Option<PodNetworkView>,
    pub namespace_options: Option<NamespaceOptionsView>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub runtime_handler: String,
}

impl From<&cri::PodSandboxStatus> for PodStatusView {
    fn from(s: &cri::PodSandboxStatus) -> Self {
        PodStatusView {
            id: s.id.clone(),
            metadata: s.metadata.as_ref().into(),
            state: pod_state_name(s.state),
            created_at: s.created_at,
            network: s.network.as_ref().map(|n| PodNetworkView {
                ip: n.ip.clone(),
                additional_ips: n.additional_ips.iter().map(|i| i.ip.clone()).collect(),
            }),
            namespace_options: s
                .linux
                .as_ref()
                .and_then(|l| l.namespaces.as_ref())
                .and_then(|n| n.options.as_ref())
                .map(|o| NamespaceOptionsView {
                    network: ns_mode_name(o.network),
                    pid: ns_mode_name(o.pid),
                    ipc: ns_mode_name(o.ipc),
                    target_id: o.target_id.clone(),
                }),
            labels: sorted(&s.labels),
            annotations: sorted(&s.annotations),
            runtime_handler: s.runtime_handler.clone(),
        }
    }
}

/// Verbose `info` maps hold JSON documents as strings: embed them as JSON
/// when they parse, as strings otherwise.
pub fn info_view(info: &HashMap<String, String>) -> BTreeMap<String, serde_json::Value> {
    info.iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(v).unwrap_or_else(|_| v.clone().into());
            (k.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns() {
        let mut t = Table::new(&["A", "LONGER", "C"]);
        t.push(vec!["xxxx".into(), "y".into(), "".into()]);
        assert_eq!(t.render(), "A      LONGER   C\nxxxx   y\n");
    }

    #[test]
    fn durations_like_crictl() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(59)), "59 seconds");
        assert_eq!(human_duration(s(90)), "About a minute");
        assert_eq!(human_duration(s(150)), "2 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        let now = UNIX_EPOCH + s(1000);
        assert_eq!(ago(880_000_000_000, now), "2 minutes ago");
        assert_eq!(ago(0, now), "-");
    }

    #[test]
    fn sizes_and_ids() {
        assert_eq!(human_size(4), "4B");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789abc");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn repo_and_tag() {
        assert_eq!(
            split_repo_tag("localhost/podd/busybox:latest"),
            ("localhost/podd/busybox", "latest")
        );
        assert_eq!(
            split_repo_tag("localhost:5000/app"),
            ("localhost:5000/app", "<none>")
        );
        assert_eq!(
            split_repo_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
    }

    #[test]
    fn enums_by_name() {
        assert_eq!(container_state_name(1), "CONTAINER_RUNNING");
        assert_eq!(container_state_short(2), "Exited");
        assert_eq!(pod_state_name(1), "SANDBOX_NOTREADY");
        assert_eq!(pod_state_short(0), "Ready");
        assert_eq!(container_state_name(42), "UNKNOWN");
    }
}
