//! Errors: [`IsolateError`] for the daemon-side API, [`Fail`] for the shim's own steps.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What went wrong in an isolate operation, worded for the person reading podd's logs.
#[derive(Debug, thiserror::Error)]
pub enum IsolateError {
    /// The `podd-shim` binary was not found.
    #[error("podd-shim not found next to {exe} nor in $PATH; install it beside podd")]
    ShimNotFound { exe: PathBuf },
    /// The shim could not be started at all.
    #[error("cannot run {path} {op}: {source}; check that the binary exists and is executable")]
    Spawn {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The shim ran and reported a failure (its stderr, which carries no prefix of its own).
    #[error("{} {id} failed: {message}", action(op))]
    Shim {
        op: &'static str,
        id: String,
        message: String,
    },
    /// The shim said it succeeded but its stdout was not a `Launched` line.
    #[error("podd-shim {op} for {id} printed an unreadable result {output:?}: {reason}")]
    BadOutput {
        op: &'static str,
        id: String,
        output: String,
        reason: String,
    },
    /// A spec could not be serialized (a bug in the caller).
    #[error("cannot encode the {op} spec: {0}", op = .1)]
    Encode(#[source] serde_json::Error, &'static str),
    /// The kernel refused a sysctl of the request (no such sysctl, or a bad value).
    #[error("sysctl {name}: {message}")]
    SysctlRefused { name: String, message: String },
    /// A system call made by podd itself failed.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// What a shim verb does, for messages: "starting container <id> failed: ...".
fn action(op: &str) -> &str {
    match op {
        "infra" => "starting the infra process of pod",
        "monitor" => "starting container",
        "exec" => "exec in",
        other => other,
    }
}

impl IsolateError {
    pub(crate) fn sys(what: impl Into<String>, source: impl Into<io::Error>) -> IsolateError {
        IsolateError::Sys {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// A failed step inside the shim: "what failed, on what: errno". Shown to the user verbatim.
#[derive(Debug)]
pub struct Fail(pub String);

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shim-side result.
pub type Res<T> = Result<T, Fail>;

/// Attach "what we were doing" to an error, giving `"<what>: <error>"`.
pub trait Ctx<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Res<T>;
}

impl<T> Ctx<T> for nix::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Res<T> {
        // Errno's Debug is the bare name (EINVAL), Display adds the description.
        self.map_err(|e| Fail(format!("{}: {:?} ({})", what().into(), e, e.desc())))
    }
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Res<T> {
        self.map_err(|e| Fail(format!("{}: {}", what().into(), e)))
    }
}

/// Shorthand for an error with a literal message.
pub fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail(msg.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_has_one_prefix() {
        let e = IsolateError::Shim {
            op: "monitor",
            id: "c1".into(),
            message: "exec \"/x\": ENOENT (No such file or directory); the command is not in \
                      the image: check command/args and PATH"
                .into(),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("starting container c1 failed: exec \"/x\""),
            "{text}"
        );
        assert_eq!(text.matches("c1").count(), 1, "{text}");
    }
}
