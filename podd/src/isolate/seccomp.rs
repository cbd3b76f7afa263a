//! Seccomp filters through libseccomp: built from a [`SeccompFilter`] by podd to check it at
//! CreateContainer, and built again and loaded by the shim right before exec.

use std::str::FromStr;
use std::sync::OnceLock;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

use super::error::{Fail, Res};
use super::spec::SeccompFilter;

/// Highest syscall number looked up when listing the native architecture's syscalls; x86_64
/// and aarch64 are below 470 today, so this leaves room for years of new ones.
const MAX_SYSCALL_NR: i32 = 1024;

/// Every syscall libseccomp knows for the native architecture: name and number. Looked up
/// once per process (1024 libseccomp calls), not on every CreateContainer.
pub fn native_syscalls() -> &'static [(String, i32)] {
    static KNOWN: OnceLock<Vec<(String, i32)>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        (0..MAX_SYSCALL_NR)
            .filter_map(|nr| ScmpSyscall::from(nr).get_name().ok().map(|n| (n, nr)))
            .collect()
    })
}

fn action(name: &str, errno: Option<i32>) -> Result<ScmpAction, String> {
    match name {
        // SCMP_ACT_ERRNO without a number is EPERM, as in runc and containerd.
        "SCMP_ACT_ERRNO" => Ok(ScmpAction::Errno(errno.unwrap_or(libc::EPERM))),
        "SCMP_ACT_TRACE" => ScmpAction::from_str(name, Some(errno.unwrap_or(libc::EPERM)))
            .map_err(|e| format!("action {name}: {e}")),
        // A notification needs an agent listening on a socket; podd has none.
        "SCMP_ACT_NOTIFY" => Err(
            "action SCMP_ACT_NOTIFY needs a seccomp agent, which podd does \
                                  not run"
                .into(),
        ),
        _ => ScmpAction::from_str(name, None).map_err(|_| {
            format!(
                "unknown action {name:?} (SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, \
                 SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_TRACE, \
                 SCMP_ACT_LOG)"
            )
        }),
    }
}

fn compare(index: u32, op: &str, value: u64, value_two: u64) -> Result<ScmpArgCompare, String> {
    if index > 5 {
        return Err(format!("argument index {index} is not 0 to 5"));
    }
    let op = match ScmpCompareOp::from_str(op) {
        Ok(ScmpCompareOp::MaskedEqual(_)) => {
            return Ok(ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(value),
                value_two,
            ));
        }
        Ok(op) => op,
        Err(_) => return Err(format!("unknown argument comparison {op:?}")),
    };
    Ok(ScmpArgCompare::new(index, op, value))
}

/// Builds (but does not load) the filter; the error names the rule at fault. Syscall names
/// this libseccomp does not know are skipped, as runc and containerd do, so that one profile
/// serves older and newer kernels.
pub fn build(f: &SeccompFilter) -> Result<ScmpFilterContext, String> {
    let default =
        action(&f.default_action, f.default_errno).map_err(|e| format!("defaultAction: {e}"))?;
    let mut ctx =
        ScmpFilterContext::new_filter(default).map_err(|e| format!("create a filter: {e}"))?;
    // The caller sets no_new_privs itself when asked to (it must not be forced on: setuid
    // binaries would stop working in a container that did not ask for it).
    ctx.set_ctl_nnp(false)
        .map_err(|e| format!("clear the filter's no_new_privs attribute: {e}"))?;
    // A binary tree of syscall numbers instead of a linear chain: RuntimeDefault has hundreds
    // of rules, and every syscall walks the filter (runc does the same for large profiles).
    ctx.set_ctl_optimize(2)
        .map_err(|e| format!("set the filter's optimisation level: {e}"))?;
    for a in &f.architectures {
        let arch = ScmpArch::from_str(a).map_err(|_| format!("unknown architecture {a:?}"))?;
        ctx.add_arch(arch)
            .map_err(|e| format!("add architecture {a}: {e}"))?;
    }
    for (i, r) in f.rules.iter().enumerate() {
        let act = action(&r.action, r.errno).map_err(|e| format!("syscalls[{i}]: {e}"))?;
        if act == default {
            // libseccomp refuses a rule that repeats the default action; it changes nothing.
            continue;
        }
        let args = r
            .args
            .iter()
            .map(|a| compare(a.index, &a.op, a.value, a.value_two))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("syscalls[{i}]: {e}"))?;
        // Comparisons on distinct arguments all have to hold (one rule); libseccomp refuses two
        // on the same argument in one rule, so then each is a rule of its own (any may hold),
        // which is what runc makes of such a profile.
        let mut indexes: Vec<u32> = r.args.iter().map(|a| a.index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let groups: Vec<Vec<ScmpArgCompare>> = if indexes.len() == args.len() {
            vec![args]
        } else {
            args.into_iter().map(|a| vec![a]).collect()
        };
        for name in &r.names {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            for group in &groups {
                let added = if group.is_empty() {
                    ctx.add_rule(act, nr)
                } else {
                    ctx.add_rule_conditional(act, nr, group)
                };
                added.map_err(|e| format!("syscalls[{i}] ({name}, {}): {e}", r.action))?;
            }
        }
    }
    if let Some((from, to)) = f.enosys {
        for nr in from..=to {
            ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), ScmpSyscall::from(nr))
                .map_err(|e| format!("answer ENOSYS for syscall {nr}: {e}"))?;
        }
    }
    Ok(ctx)
}

/// A filter built in the shim and not yet loaded.
pub struct Pending(ScmpFilterContext);

impl Pending {
    pub fn build(f: &SeccompFilter) -> Res<Pending> {
        build(f)
            .map(Pending)
            .map_err(|e| Fail(format!("seccomp profile: {e}")))
    }

    /// Loads the filter into this process (inherited by what it execs).
    pub fn load(self) -> Res<()> {
        self.0
            .load()
            .map_err(|e| Fail(format!("load the seccomp filter: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolate::spec::{SeccompArg, SeccompRule};

    fn rule(names: &[&str], action: &str) -> SeccompRule {
        SeccompRule {
            names: names.iter().map(|s| s.to_string()).collect(),
            action: action.into(),
            errno: None,
            args: Vec::new(),
        }
    }

    #[test]
    fn the_runtime_default_builds_and_knows_the_common_syscalls() {
        let known = native_syscalls();
        for n in ["read", "write", "execve", "clone", "mount", "sethostname"] {
            assert!(
                known.iter().any(|(k, _)| k == n),
                "{n} not in {} names",
                known.len()
            );
        }
        // CreateContainer does not build RuntimeDefault, so every variant of it is built here:
        // the default capabilities, CAP_SYS_ADMIN (which opens the namespace syscalls) and
        // every capability.
        let default: Vec<String> = crate::isolate::spec::DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut admin = default.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let all = crate::isolate::capabilities::all_names();
        for caps in [&default, &admin, &all] {
            let f = crate::container::seccomp::runtime_default(caps, known);
            build(&f).unwrap_or_else(|e| panic!("RuntimeDefault for {caps:?}: {e}"));
        }
    }

    #[test]
    fn several_comparisons_of_one_argument_become_alternatives() {
        let arg = |index, value, op: &str| SeccompArg {
            index,
            value,
            value_two: 0,
            op: op.into(),
        };
        let mut r = rule(&["personality"], "SCMP_ACT_ALLOW");
        r.args = vec![arg(0, 0, "SCMP_CMP_EQ"), arg(0, 8, "SCMP_CMP_EQ")];
        let mut s = rule(&["socket"], "SCMP_ACT_ALLOW");
        s.args = vec![arg(0, 2, "SCMP_CMP_EQ"), arg(1, 1, "SCMP_CMP_EQ")];
        let f = SeccompFilter {
            default_action: "SCMP_ACT_ERRNO".into(),
            default_errno: None,
            architectures: Vec::new(),
            rules: vec![r, s],
            enosys: Some((500, 510)),
        };
        build(&f).unwrap();
    }

    #[test]
    fn bad_profiles_name_what_is_wrong() {
        let base = SeccompFilter {
            default_action: "SCMP_ACT_ALLOW".into(),
            default_errno: None,
            architectures: Vec::new(),
            rules: vec![rule(&["no_such_syscall", "sethostname"], "SCMP_ACT_ERRNO")],
            enosys: None,
        };
        // Unknown names are skipped; the rest is kept.
        build(&base).unwrap();
        let mut f = base.clone();
        f.default_action = "SCMP_ACT_MAYBE".into();
        assert!(build(&f).unwrap_err().contains("defaultAction"));
        let mut f = base.clone();
        f.architectures = vec!["SCMP_ARCH_Z80".into()];
        assert!(build(&f).unwrap_err().contains("SCMP_ARCH_Z80"));
        let mut f = base.clone();
        f.rules[0].action = "SCMP_ACT_NOTIFY".into();
        assert!(build(&f).unwrap_err().contains("syscalls[0]"));
        let mut f = base;
        f.rules[0].args = vec![SeccompArg {
            index: 9,
            value: 0,
            value_two: 0,
            op: "SCMP_CMP_EQ".into(),
        }];
        assert!(build(&f).unwrap_err().contains("index 9"));
    }
}
