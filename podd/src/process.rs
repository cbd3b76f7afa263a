//! A recorded process: pid plus its start time, so a reused pid is never mistaken for ours.

use serde::{Deserialize, Serialize};

use crate::isolate::ProcessHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcRef {
    /// A handle on the process if it is still the one we started.
    pub fn handle(&self) -> Option<ProcessHandle> {
        ProcessHandle::open(self.pid, self.start_time)
    }
}
