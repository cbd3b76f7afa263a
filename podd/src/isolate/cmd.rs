//! The last steps before `execve`, shared by a container's workload and `exec`: drop to the
//! user, reset signal state, resolve argv[0] through `PATH`, execute.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;

use nix::errno::Errno;
use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
use nix::unistd::{Gid, Uid};

use super::error::{Ctx, Fail, Res};

/// `PATH` used when the environment has none (as runc and Docker do).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Supplementary groups, then gid, then uid (setuid last: it drops the right to do the rest).
pub fn drop_privileges(uid: u32, gid: u32, groups: &[u32]) -> Res<()> {
    let groups: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
    nix::unistd::setgroups(&groups).ctx(|| format!("setgroups {groups:?}"))?;
    nix::unistd::setgid(Gid::from_raw(gid)).ctx(|| format!("setgid {gid}"))?;
    nix::unistd::setuid(Uid::from_raw(uid)).ctx(|| format!("setuid {uid}"))
}

/// Undo what the shim's runtime set and exec would pass on: Rust ignores SIGPIPE, and the
/// shim blocks signals it waits for.
pub fn reset_signals() -> Res<()> {
    // SAFETY: installing SIG_DFL runs no handler code; the process is single-threaded.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.ctx(|| "reset SIGPIPE")?;
    SigSet::all().thread_unblock().ctx(|| "unblock signals")
}

/// Resolve `arg0` like execvp: as given when it has a '/', else the first executable regular
/// file in the `PATH` of `env`.
pub fn resolve(arg0: &str, env: &[String]) -> Res<String> {
    if arg0.is_empty() {
        return Err(Fail("exec: empty command (args[0] is \"\")".into()));
    }
    if arg0.contains('/') {
        return Ok(arg0.to_string());
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{dir}/{arg0}");
        let is_exec_file = std::fs::metadata(&candidate)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        if is_exec_file {
            return Ok(candidate);
        }
    }
    Err(Fail(format!("exec {arg0:?}: not found in PATH={path}")))
}

/// Why `exec_args` came back, and the exit code to report: 127 not found, 126 not runnable.
pub struct ExecFailure {
    pub message: Fail,
    pub code: i32,
}

fn cstrings(items: &[String], what: &str) -> Result<Vec<CString>, ExecFailure> {
    items
        .iter()
        .map(|s| CString::new(s.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| ExecFailure {
            message: Fail(format!("exec: {what} contains a NUL byte")),
            code: 126,
        })
}

/// Resolve `args[0]` and `execve` with exactly `env`. Returns only on failure.
pub fn exec_args(args: &[String], env: &[String]) -> ExecFailure {
    let Some(arg0) = args.first() else {
        return ExecFailure {
            message: Fail("exec: no command given (args is empty)".into()),
            code: 127,
        };
    };
    let program = match resolve(arg0, env) {
        Ok(p) => p,
        Err(message) => return ExecFailure { message, code: 127 },
    };
    let prepared = CString::new(program.as_str())
        .map_err(|_| ExecFailure {
            message: Fail("exec: program path contains a NUL byte".into()),
            code: 126,
        })
        .and_then(|p| Ok((p, cstrings(args, "args")?, cstrings(env, "env")?)));
    let (path, argv, envp) = match prepared {
        Ok(t) => t,
        Err(f) => return f,
    };
    let err = match nix::unistd::execve(&path, &argv, &envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = if err == Errno::ENOENT { 127 } else { 126 };
    ExecFailure {
        message: Fail(format!("exec {program:?}: {err:?} ({})", err.desc())),
        code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_through_env_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let got = resolve("sh", &env).unwrap();
        assert!(got.ends_with("/sh"), "{got}");
        assert_eq!(resolve("./x", &env).unwrap(), "./x");
        let err = resolve("nosuch-cmd", &env).unwrap_err();
        assert_eq!(
            err.0,
            "exec \"nosuch-cmd\": not found in PATH=/nonexistent:/bin:/usr/bin"
        );
    }

    #[test]
    fn default_path_when_env_has_none() {
        let err = resolve("nosuch-cmd", &[]).unwrap_err();
        assert!(err.0.ends_with(DEFAULT_PATH), "{}", err.0);
    }
}
