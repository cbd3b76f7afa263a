//! The last steps before `execve`, shared by a container's workload and `exec`: drop to the
//! user, reset signal state, resolve argv[0] through `PATH`, execute.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;

use nix::errno::Errno;
use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
use nix::unistd::{Gid, Uid};

use super::error::{Ctx, Fail, Res};
use super::syscall::close_fds_except;

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

/// Enter the working directory safely (youki's answer to CVE-2024-21626): close every fd
/// above 2 but `keep` first, so that no inherited handle on a host directory can become the
/// cwd (`/proc/self/fd/N`), then check that the cwd is inside the current root. Only for the
/// last steps of a freshly forked process: the `OwnedFd`s of its callers' frames must never be
/// used or dropped again.
pub fn enter_cwd(cwd: &str, keep: &[RawFd]) -> Res<()> {
    close_fds_except(keep).ctx(|| "close inherited fds")?;
    nix::unistd::chdir(cwd).ctx(|| format!("chdir to working directory {cwd}"))?;
    check_cwd_inside_root(nix::unistd::getcwd(), cwd)
}

/// `getcwd` fails (ENOENT) or names an "(unreachable)" path when the cwd is outside the
/// process's root.
fn check_cwd_inside_root(got: nix::Result<std::path::PathBuf>, cwd: &str) -> Res<()> {
    match got {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(p) => Err(Fail(format!(
            "working directory {cwd} is outside the container's root ({})",
            p.display()
        ))),
        Err(e) => Err(Fail(format!(
            "working directory {cwd} is outside the container's root (getcwd: {e:?})"
        ))),
    }
}

/// What to do about a command that could not be executed, appended to the error.
fn exec_hint(not_found: bool, err: Option<Errno>) -> &'static str {
    match err {
        _ if not_found => "the command is not in the image: check command/args and PATH",
        Some(Errno::ENOENT) => {
            "the command (or the interpreter on its #! line) is not in the image: check \
             command/args and PATH"
        }
        Some(Errno::EACCES) | Some(Errno::EPERM) => {
            "it is not executable by the container's user: check the file's mode and owner \
             (and that it is not a directory)"
        }
        Some(Errno::ENOEXEC) => "it is not a binary for this machine nor a script starting with #!",
        _ => "check command/args",
    }
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

/// Resolve `args[0]` and `execve` with exactly `env`, loading `filter` (if any) right before.
/// Returns only on failure.
pub fn exec_args(
    args: &[String],
    env: &[String],
    filter: Option<super::seccomp::Pending>,
) -> ExecFailure {
    let Some(arg0) = args.first() else {
        return ExecFailure {
            message: Fail("exec: no command given (args is empty)".into()),
            code: 127,
        };
    };
    let program = match resolve(arg0, env) {
        Ok(p) => p,
        Err(message) => {
            return ExecFailure {
                message: Fail(format!("{message}; {}", exec_hint(true, None))),
                code: 127,
            }
        }
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
    if let Some(filter) = filter {
        if let Err(message) = filter.load() {
            return ExecFailure { message, code: 126 };
        }
    }
    let err = match nix::unistd::execve(&path, &argv, &envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = if err == Errno::ENOENT { 127 } else { 126 };
    ExecFailure {
        message: Fail(format!(
            "exec {program:?}: {err:?} ({}); {}",
            err.desc(),
            exec_hint(false, Some(err))
        )),
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
    fn exec_failures_say_what_to_do() {
        let f = exec_args(
            &["nosuch-cmd".to_string()],
            &["PATH=/nonexistent".to_string()],
            None,
        );
        assert_eq!(f.code, 127);
        assert_eq!(
            f.message.0,
            "exec \"nosuch-cmd\": not found in PATH=/nonexistent; the command is not in the \
             image: check command/args and PATH"
        );
        let f = exec_args(&["/nonexistent".to_string()], &[], None);
        assert_eq!(f.code, 127);
        assert!(
            f.message.0.starts_with("exec \"/nonexistent\": ENOENT")
                && f.message.0.contains("check command/args and PATH"),
            "{}",
            f.message.0
        );
    }

    #[test]
    fn a_cwd_outside_the_root_is_refused() {
        assert!(check_cwd_inside_root(Ok("/work".into()), "/work").is_ok());
        let err = check_cwd_inside_root(Ok("(unreachable)/sys/fs".into()), "/x").unwrap_err();
        assert!(err.0.contains("outside the container's root"), "{}", err.0);
        let err = check_cwd_inside_root(Err(Errno::ENOENT), "/x").unwrap_err();
        assert!(err.0.contains("ENOENT"), "{}", err.0);
    }

    #[test]
    fn default_path_when_env_has_none() {
        let err = resolve("nosuch-cmd", &[]).unwrap_err();
        assert!(err.0.ends_with(DEFAULT_PATH), "{}", err.0);
    }
}
