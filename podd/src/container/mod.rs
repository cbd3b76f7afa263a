//! Container records and their state machine: Created -> Running -> Exited (or Created ->
//! Exited when the start failed). Only `Runtime` changes them, through one update function.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::isolate::spec::{ContainerSpec, Propagation};
use crate::pod::NsMode;
use crate::process::ProcRef;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountConfig {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    #[serde(default)]
    pub propagation: Propagation,
}

/// The validated subset of a CRI ContainerConfig that podd acts on.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ContainerConfig {
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<MountConfig>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub log_path: String,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: String,
    /// None: the pod's PID mode.
    pub pid: Option<NsMode>,
    pub readonly_rootfs: bool,
    /// CRI `capabilities`, each name canonical (`CAP_*`) or "ALL".
    #[serde(default)]
    pub add_capabilities: Vec<String>,
    #[serde(default)]
    pub drop_capabilities: Vec<String>,
    #[serde(default)]
    pub add_ambient_capabilities: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub no_new_privs: bool,
    /// Empty: the defaults (see `isolate::spec::DEFAULT_MASKED_PATHS`).
    #[serde(default)]
    pub masked_paths: Vec<String>,
    /// Empty: the defaults (see `isolate::spec::DEFAULT_READONLY_PATHS`).
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// CRI `supplemental_groups`, added to the groups the image's /etc/group gives the user.
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// CRI SupplementalGroupsPolicy Strict: the image's /etc/group is not consulted.
    #[serde(default)]
    pub supplemental_groups_strict: bool,
    /// Ignored for a privileged container.
    #[serde(default)]
    pub seccomp: seccomp::Policy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub config: ContainerConfig,
    /// The image as the user named it, and the image id it resolved to.
    pub image_ref: String,
    pub image_id: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// Host path of the CRI log file.
    pub log_path: PathBuf,
    /// The container's own directory (upper, work, merged, exit file).
    pub dir: PathBuf,
    pub process: Option<ProcRef>,
    pub monitor: Option<ProcRef>,
    /// What the monitor is started with; fixed at creation.
    pub spec: ContainerSpec,
}

impl ContainerRecord {
    pub fn reserved_name(pod_id: &str, config: &ContainerConfig) -> String {
        format!("{}_{}_{}", pod_id, config.name, config.attempt)
    }

    pub fn exit_file(&self) -> PathBuf {
        self.spec.exit_file.clone()
    }
}
pub mod seccomp;
pub mod user;
