//! The contract between the daemon and `podd-shim`, the single-threaded helper binary that does
//! every namespace, mount and process-creation step. podd runs `podd-shim <verb> <id>` and writes
//! one of these as JSON on the shim's stdin (never on argv: /proc/PID/cmdline is world-readable
//! and holds the environment's secrets; the shim reads to EOF before anything else), then reads
//! a [`Launched`] line back on the shim's stdout. Keeping it plain data means the shim links none
//! of tokio/tonic and stays small in memory (its PSS is per pod).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Kind of namespace a member container joins from the pod's pinned files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsKind {
    Net,
    Ipc,
    Uts,
    Pid,
}

impl NsKind {
    /// Name of the file under `/proc/PID/ns/` and under a pod's pin directory.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::Pid => "pid",
        }
    }
}

/// `podd-shim infra POD-ID`: start the pod's pause-like infra process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InfraSpec {
    pub pod_id: String,
    /// Namespaces the infra creates (the others are the host's). Each created one is pinned by a
    /// bind mount of `/proc/INFRA/ns/<kind>` onto `pin_dir/<kind>`.
    pub new_namespaces: Vec<NsKind>,
    pub pin_dir: PathBuf,
    /// Set only when UTS is a new namespace.
    pub hostname: Option<String>,
    /// tmpfs mounted here (host mount namespace) and bind-mounted as every member's `/dev/shm`.
    pub shm_dir: PathBuf,
    pub shm_size_bytes: u64,
    /// Written (a [`Launched`], atomically) as soon as the infra runs and before the shim
    /// reports success, removed again by the shim's own rollback: whoever finds it after a
    /// crash of podd knows which process to adopt or kill.
    pub launched_file: PathBuf,
}

/// Mount propagation of a bind mount (CRI `MountPropagation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// rprivate: nothing propagates (CRI PROPAGATION_PRIVATE, the default).
    #[default]
    Private,
    /// rslave: mounts made on the host under the source show in the container (CRI
    /// PROPAGATION_HOST_TO_CONTAINER). The source must be on a shared or slave mount.
    Slave,
    /// rshared: both ways (CRI PROPAGATION_BIDIRECTIONAL, privileged pods only). The source
    /// must be on a shared mount.
    Shared,
}

/// One bind mount into a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container; resolved inside the rootfs, never following a
    /// symlink out of it.
    pub destination: PathBuf,
    pub readonly: bool,
    #[serde(default)]
    pub propagation: Propagation,
}

/// The overlay that becomes the container's `/`. It is mounted inside the container's own mount
/// namespace, so it disappears with the container and never shows on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsSpec {
    /// Image layer directories, topmost first (overlayfs `lowerdir` order).
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Empty directory used as the mount point.
    pub merged: PathBuf,
    pub readonly: bool,
}

/// `podd-shim monitor CONTAINER-ID`: start a member container and monitor it until it exits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub container_id: String,
    pub rootfs: RootfsSpec,
    /// Pinned pod namespaces to `setns` into. `Pid` here means the pod shares one PID namespace
    /// (POD mode); without it the container gets a new PID namespace with its workload as PID 1.
    pub join: Vec<(NsKind, PathBuf)>,
    /// Full argv; argv[0] is resolved through `PATH` in `env` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries, exactly the container's environment.
    pub env: Vec<String>,
    /// Absolute working directory inside the container (created if missing).
    pub cwd: String,
    /// Who the workload runs as and what it may do (flattened: the JSON keeps its fields).
    #[serde(flatten)]
    pub identity: Identity,
    /// The pod's shm directory, bind-mounted at `/dev/shm`.
    pub shm_dir: Option<PathBuf>,
    pub mounts: Vec<BindMount>,
    /// CRI log file (created/appended); the monitor writes the CRI log format into it.
    pub log_path: PathBuf,
    /// Written atomically by the monitor when the container has exited: an [`ExitRecord`].
    pub exit_file: PathBuf,
    /// Written atomically by the monitor once the workload runs and before the shim reports
    /// success: a [`Launched`]. Empty in records from before it existed (podd fills it in).
    #[serde(default)]
    pub launched_file: PathBuf,
    /// Container paths hidden before exec: /dev/null bound over a file, an empty read-only
    /// tmpfs over a directory; missing ones are skipped. Empty for a privileged container.
    #[serde(default = "default_masked_paths")]
    pub masked_paths: Vec<String>,
    /// Container paths bound read-only onto themselves before exec; missing ones are skipped.
    #[serde(default = "default_readonly_paths")]
    pub readonly_paths: Vec<String>,
}

/// Who a container's processes run as and what they may do: the same for the workload and for
/// every ExecSync command, so that an exec'd command has exactly the workload's privileges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// The group list set with setgroups(2) (the primary gid, the image's /etc/group entries
    /// naming the user, CRI `supplemental_groups`). Empty in records from before it.
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    /// Capabilities (`CAP_*` names) kept in the bounding, permitted and effective sets; every
    /// other one is dropped from the bounding set before exec. Inheritable holds only the
    /// ambient ones (containerd's fix for CVE-2022-24769). After exec, execve's rules apply as
    /// under runc: root gets them all, a non-root uid only its ambient ones. Records written
    /// before this field get [`DEFAULT_CAPABILITIES`].
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<String>,
    /// Raised in the inheritable and ambient sets; each is also in `capabilities`.
    #[serde(default)]
    pub ambient_capabilities: Vec<String>,
    /// `PR_SET_NO_NEW_PRIVS` before exec (CRI `no_new_privs`).
    #[serde(default)]
    pub no_new_privs: bool,
    /// Keep whichever of `capabilities` (every one podd knows) the shim holds instead of
    /// requiring all of them, and mount /sys read-write.
    #[serde(default)]
    pub privileged: bool,
    /// The seccomp filter loaded right before exec; None: unconfined.
    #[serde(default)]
    pub seccomp: Option<SeccompFilter>,
}

/// A seccomp filter, resolved for this container (capabilities and architecture already
/// applied): what libseccomp is told, in its own words (`SCMP_ACT_*`, `SCMP_ARCH_*`,
/// `SCMP_CMP_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompFilter {
    pub default_action: String,
    /// The errno of a default `SCMP_ACT_ERRNO` (EPERM when absent, as runc).
    #[serde(default)]
    pub default_errno: Option<i32>,
    /// Besides the native one.
    #[serde(default)]
    pub architectures: Vec<String>,
    pub rules: Vec<SeccompRule>,
    /// Syscall numbers (inclusive range) that answer ENOSYS: ones past those the filter knows,
    /// so that programs fall back to older syscalls instead of failing on EPERM.
    #[serde(default)]
    pub enosys: Option<(i32, i32)>,
}

/// One action for some syscalls, optionally only when their arguments match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompRule {
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno: Option<i32>,
    #[serde(default)]
    pub args: Vec<SeccompArg>,
}

/// `args[index] <op> value` (`value_two` is the mask's comparand for `SCMP_CMP_MASKED_EQ`:
/// `args[index] & value == value_two`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompArg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// The capabilities containerd and CRI-O give a non-privileged container.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// containerd's default masked paths.
pub const DEFAULT_MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn default_capabilities() -> Vec<String> {
    strings(&DEFAULT_CAPABILITIES)
}

pub fn default_masked_paths() -> Vec<String> {
    strings(&DEFAULT_MASKED_PATHS)
}

pub fn default_readonly_paths() -> Vec<String> {
    strings(&DEFAULT_READONLY_PATHS)
}

/// `podd-shim exec CONTAINER-ID`: run a command inside a running container and pass its stdio
/// and exit code through (ExecSync).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecSpec {
    /// For messages and `ps` only.
    #[serde(default)]
    pub container_id: String,
    /// Host PID of the container's workload; its `/proc/PID/ns/*` are joined.
    pub pid: i32,
    /// The workload's start time: the shim refuses a pid that now names another process.
    pub start_time: u64,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// The container's identity, exactly (flattened: the JSON keeps its fields).
    #[serde(flatten)]
    pub identity: Identity,
}

/// What `infra` and `monitor` print on stdout, one JSON line, once the process is running; the
/// same JSON is in the spec's `launched_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launched {
    /// The infra process, or the container's workload.
    pub pid: i32,
    /// `/proc/PID/stat` start time (clock ticks since boot), guards against PID reuse.
    pub start_time: u64,
    /// The monitor process (for `monitor`), which outlives podd and writes the exit file.
    pub monitor_pid: Option<i32>,
    /// The monitor's own start time, as it read it.
    #[serde(default)]
    pub monitor_start_time: Option<u64>,
    /// When the process was started, nanoseconds since the Unix epoch.
    #[serde(default)]
    pub started_at: i64,
}

impl Launched {
    /// The launched file at `path`, or None when it is missing or unreadable (a torn file
    /// cannot exist: it is written atomically).
    pub fn read(path: &Path) -> Option<Launched> {
        if path.as_os_str().is_empty() {
            return None;
        }
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// Written by the monitor to `exit_file` after the workload exited and its output was drained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub exit_code: i32,
    /// Set when the workload was killed by a signal (exit_code is then 128 + signal).
    pub signal: Option<i32>,
    /// Nanoseconds since the Unix epoch.
    pub finished_at: i64,
    /// CRI reason: "Completed" (code 0), "Error", or "OOMKilled".
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_from_before_confinement_get_the_defaults() {
        let old = r#"{"container_id":"c","rootfs":{"lower":[],"upper":"/u","work":"/w",
            "merged":"/m","readonly":false},"join":[],"args":["sh"],"env":[],"cwd":"/",
            "uid":0,"gid":0,"additional_gids":[],"shm_dir":null,"mounts":[],
            "log_path":"/l","exit_file":"/e"}"#;
        let spec: ContainerSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.identity.capabilities, default_capabilities());
        assert_eq!(spec.masked_paths, default_masked_paths());
        assert_eq!(spec.readonly_paths, default_readonly_paths());
        assert!(spec.identity.ambient_capabilities.is_empty());
        assert!(!spec.identity.no_new_privs && !spec.identity.privileged);
        assert_eq!(spec.launched_file, PathBuf::new());
    }

    #[test]
    fn identity_stays_flat_in_the_json() {
        let old = r#"{"pid":1,"start_time":2,"args":["id"],"env":[],"cwd":"/",
            "uid":7,"gid":8,"additional_gids":[9],"capabilities":["CAP_KILL"],
            "ambient_capabilities":[],"no_new_privs":true,"privileged":true}"#;
        let spec: ExecSpec = serde_json::from_str(old).unwrap();
        assert_eq!(
            spec.identity,
            Identity {
                uid: 7,
                gid: 8,
                additional_gids: vec![9],
                capabilities: vec!["CAP_KILL".into()],
                ambient_capabilities: vec![],
                no_new_privs: true,
                privileged: true,
                seccomp: None,
            }
        );
        let json: serde_json::Value = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["privileged"], true);
        assert_eq!(json["uid"], 7);
        assert!(json.get("identity").is_none());
    }

    #[test]
    fn launched_files_round_trip_and_old_lines_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launched.json");
        assert_eq!(Launched::read(&path), None);
        assert_eq!(Launched::read(Path::new("")), None);
        let l = Launched {
            pid: 7,
            start_time: 8,
            monitor_pid: Some(9),
            monitor_start_time: Some(10),
            started_at: 11,
        };
        std::fs::write(&path, serde_json::to_vec(&l).unwrap()).unwrap();
        assert_eq!(Launched::read(&path), Some(l));
        let old: Launched =
            serde_json::from_str(r#"{"pid":1,"start_time":2,"monitor_pid":null}"#).unwrap();
        assert_eq!((old.monitor_start_time, old.started_at), (None, 0));
    }
}
