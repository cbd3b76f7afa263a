//! What can go wrong with pod networking. Each variant names the network, plugin or file and
//! says what to do; `server::status` maps them to gRPC codes.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No usable configuration: Status reports NetworkReady=false with this message.
    #[error("no usable CNI network configuration: {0}")]
    NotReady(String),
    /// A configuration file that cannot be used as it is.
    #[error("CNI configuration {path}: {reason}; fix or remove the file")]
    BadConfig { path: PathBuf, reason: String },
    #[error(
        "CNI plugin {plugin:?} of network {network:?} not found in {dirs}; install it \
         (Debian: containernetworking-plugins) or set --cni-bin-dir"
    )]
    PluginNotFound {
        network: String,
        plugin: String,
        dirs: String,
    },
    /// The plugin ran and reported an error (CNI error code, message and details).
    #[error(transparent)]
    Plugin(Box<PluginFailure>),
    /// The plugin could not be run, did not finish, or answered something that is not CNI.
    #[error("CNI plugin {plugin:?} ({command} for pod {pod}): {reason}")]
    Exec {
        plugin: String,
        command: &'static str,
        pod: String,
        reason: String,
    },
    /// A pod field that the CNI protocol cannot carry.
    #[error("pod {field} {value:?} cannot be passed to CNI plugins: {reason}")]
    Unrepresentable {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A plugin's own CNI error reply.
#[derive(Debug, thiserror::Error)]
#[error(
    "CNI plugin {plugin:?} of network {network:?} failed {command} for pod {pod}: \
     {msg}{} (CNI error code {code}); {}",
    details.as_deref().filter(|d| !d.is_empty()).map(|d| format!(": {d}")).unwrap_or_default(),
    self.what_to_do()
)]
pub struct PluginFailure {
    pub network: String,
    pub plugin: String,
    pub command: &'static str,
    pub pod: String,
    pub code: u32,
    pub msg: String,
    pub details: Option<String>,
}

impl PluginFailure {
    /// Whether the IPAM plugin ran out of addresses. host-local reports it as a plain error
    /// (code 999 or 100 depending on the version, no dedicated CNI code), so its text is what
    /// tells: "no IP addresses available in range set".
    pub fn ip_exhausted(&self) -> bool {
        const TEXT: &str = "no IP addresses available";
        self.msg.contains(TEXT) || self.details.as_deref().is_some_and(|d| d.contains(TEXT))
    }

    fn what_to_do(&self) -> &'static str {
        if self.ip_exhausted() {
            "the network's address range is used up: remove pods, or widen the range in the \
             CNI configuration (--pod-subnet for podd's default network)"
        } else {
            "fix the cause the plugin names (or the network's CNI configuration), then retry"
        }
    }
}

impl NetError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
        let what = what.into();
        move |source| NetError::Io { what, source }
    }
}

pub type Result<T, E = NetError> = std::result::Result<T, E>;
