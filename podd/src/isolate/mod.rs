//! The only module that touches namespaces, mounts, pivot_root and process creation.
//!
//! Daemon side (tokio): [`Shim`] spawns `podd-shim`, [`ProcessHandle`] watches the processes
//! it leaves behind, [`release_pod`] undoes a pod's host mounts, [`apply_sysctls`] sets a
//! pod's sysctls from a thread of its own. Shim side (single-threaded, no tokio): [`shim_main`] and the modules it dispatches to.
pub mod capabilities;
pub mod spec;

mod cmd;
mod container;
mod entry;
mod error;
mod exec;
mod infra;
mod launch;
mod logwriter;
mod monitor;
mod mounts;
mod pod;
mod process;
mod propagation;
mod rootfs_path;
pub mod seccomp;
mod shim;
mod syscall;
mod sysctl;

pub use entry::shim_main;
pub use error::IsolateError;
pub use logwriter::now_ns;
pub use monitor::REOPEN_LOG;
pub use pod::{release_pod, release_shm};
pub use process::{
    become_subreaper, blocks_signal, kill_container_processes, kill_mount_namespace,
    process_start_time, MountNs, ProcessHandle,
};
pub use propagation::{host_mount_of, HostMount};
pub use shim::{ExecOutput, Shim, EXEC_OUTPUT_MAX};
pub use sysctl::apply as apply_sysctls;
