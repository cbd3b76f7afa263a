//! Which seccomp filter a container gets: none (Unconfined), podd's RuntimeDefault, or a
//! Localhost profile file in the format kubelet, docker and containerd use. Profiles are
//! resolved here for the container's capabilities and the machine's architecture, so the shim
//! loads a plain list of rules.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::isolate::spec::{SeccompArg, SeccompFilter, SeccompRule};

/// CRI `security_context.seccomp` (or the deprecated `seccomp_profile_path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Policy {
    #[default]
    Unconfined,
    RuntimeDefault,
    /// An absolute path on the host.
    Localhost(PathBuf),
}

/// A profile file: the format of docker's and containerd's profiles (a superset of the OCI
/// runtime spec's `linux.seccomp`). Unknown fields are ignored, as they are there.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<i32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<Syscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    #[serde(default)]
    names: Vec<String>,
    /// Old single-name form.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<i32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// The native architecture as docker profiles name it in `includes.arches`, and as libseccomp
/// names it in `architectures`.
fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        other => (other, "SCMP_ARCH_NATIVE"),
    }
}

fn canonical_cap(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// Reads a Localhost profile and resolves it for a container holding `caps`; the error says
/// what is wrong with the file.
pub fn localhost(path: &Path, caps: &[String]) -> Result<SeccompFilter, String> {
    if !path.is_absolute() {
        return Err(format!(
            "localhost profile {} is not an absolute path",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read localhost profile {}: {e}", path.display()))?;
    let profile: Profile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "localhost profile {} is not a seccomp profile: {e}",
            path.display()
        )
    })?;
    Ok(resolve(profile, caps))
}

/// Applies `includes`/`excludes` (capabilities, architectures) and the architecture map.
fn resolve(p: Profile, caps: &[String]) -> SeccompFilter {
    let (docker_arch, scmp_arch) = native_arch();
    let has = |c: &String| caps.contains(&canonical_cap(c));
    let architectures = match &p.arch_map {
        Some(map) if !map.is_empty() => map
            .iter()
            .filter(|m| m.architecture == scmp_arch)
            .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures))
            .cloned()
            .collect(),
        _ => p.architectures,
    };
    let rules = p
        .syscalls
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.includes.caps.iter().all(has))
        .filter(|s| {
            s.includes.arches.is_empty() || s.includes.arches.iter().any(|a| a == docker_arch)
        })
        .filter(|s| !s.excludes.caps.iter().any(has))
        .filter(|s| !s.excludes.arches.iter().any(|a| a == docker_arch))
        .map(|s| SeccompRule {
            names: s.names.into_iter().chain(s.name).collect(),
            action: s.action,
            errno: s.errno_ret,
            args: s
                .args
                .unwrap_or_default()
                .into_iter()
                .map(|a| SeccompArg {
                    index: a.index,
                    value: a.value,
                    value_two: a.value_two,
                    op: a.op,
                })
                .collect(),
        })
        .collect();
    SeccompFilter {
        default_action: p.default_action,
        default_errno: p.default_errno_ret,
        architectures,
        rules,
    }
}

/// Syscalls RuntimeDefault refuses (EPERM) unless the container holds one of the listed
/// capabilities (none listed: always). These are the ones docker documents as blocked by its
/// default profile: they reach kernel state shared by every container (modules, clocks, keys,
/// mounts and namespaces, accounting, swap, raw I/O, other processes' memory) or are obsolete.
const GATED: &[(&str, &[&str])] = &[
    ("acct", &["CAP_SYS_PACCT"]),
    ("add_key", &[]),
    ("bpf", &["CAP_SYS_ADMIN", "CAP_BPF"]),
    ("clock_adjtime", &["CAP_SYS_TIME"]),
    ("clock_adjtime64", &["CAP_SYS_TIME"]),
    ("clock_settime", &["CAP_SYS_TIME"]),
    ("clock_settime64", &["CAP_SYS_TIME"]),
    ("create_module", &[]),
    ("delete_module", &["CAP_SYS_MODULE"]),
    ("fanotify_init", &["CAP_SYS_ADMIN"]),
    ("finit_module", &["CAP_SYS_MODULE"]),
    ("fsconfig", &["CAP_SYS_ADMIN"]),
    ("fsmount", &["CAP_SYS_ADMIN"]),
    ("fsopen", &["CAP_SYS_ADMIN"]),
    ("fspick", &["CAP_SYS_ADMIN"]),
    ("get_kernel_syms", &[]),
    ("get_mempolicy", &["CAP_SYS_NICE"]),
    ("init_module", &["CAP_SYS_MODULE"]),
    ("ioperm", &["CAP_SYS_RAWIO"]),
    ("iopl", &["CAP_SYS_RAWIO"]),
    ("kcmp", &["CAP_SYS_PTRACE"]),
    ("kexec_file_load", &["CAP_SYS_BOOT"]),
    ("kexec_load", &["CAP_SYS_BOOT"]),
    ("keyctl", &[]),
    ("lookup_dcookie", &["CAP_SYS_ADMIN"]),
    ("mbind", &["CAP_SYS_NICE"]),
    ("mount", &["CAP_SYS_ADMIN"]),
    ("mount_setattr", &["CAP_SYS_ADMIN"]),
    ("move_mount", &["CAP_SYS_ADMIN"]),
    ("move_pages", &["CAP_SYS_NICE"]),
    ("name_to_handle_at", &["CAP_SYS_ADMIN"]),
    ("nfsservctl", &[]),
    ("open_by_handle_at", &["CAP_DAC_READ_SEARCH"]),
    ("open_tree", &["CAP_SYS_ADMIN"]),
    ("perf_event_open", &["CAP_SYS_ADMIN", "CAP_PERFMON"]),
    ("pidfd_getfd", &["CAP_SYS_PTRACE"]),
    ("pivot_root", &["CAP_SYS_ADMIN"]),
    ("process_vm_readv", &["CAP_SYS_PTRACE"]),
    ("process_vm_writev", &["CAP_SYS_PTRACE"]),
    ("query_module", &[]),
    ("quotactl", &["CAP_SYS_ADMIN"]),
    ("quotactl_fd", &["CAP_SYS_ADMIN"]),
    ("reboot", &["CAP_SYS_BOOT"]),
    ("request_key", &[]),
    ("set_mempolicy", &["CAP_SYS_NICE"]),
    ("set_mempolicy_home_node", &["CAP_SYS_NICE"]),
    ("setdomainname", &["CAP_SYS_ADMIN"]),
    ("sethostname", &["CAP_SYS_ADMIN"]),
    ("setns", &["CAP_SYS_ADMIN"]),
    ("settimeofday", &["CAP_SYS_TIME"]),
    ("stime", &["CAP_SYS_TIME"]),
    ("swapoff", &["CAP_SYS_ADMIN"]),
    ("swapon", &["CAP_SYS_ADMIN"]),
    ("_sysctl", &[]),
    ("sysfs", &[]),
    ("syslog", &["CAP_SYS_ADMIN", "CAP_SYSLOG"]),
    ("umount", &["CAP_SYS_ADMIN"]),
    ("umount2", &["CAP_SYS_ADMIN"]),
    ("unshare", &["CAP_SYS_ADMIN"]),
    ("uselib", &[]),
    ("userfaultfd", &["CAP_SYS_PTRACE"]),
    ("ustat", &[]),
    ("vhangup", &["CAP_SYS_TTY_CONFIG"]),
    ("vm86", &[]),
    ("vm86old", &[]),
];

/// Namespace flags of clone(2) that only CAP_SYS_ADMIN may use under RuntimeDefault.
const CLONE_NEW_MASK: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// personality(2) values a program may set: Linux, with uname26, with addr-no-randomize and
/// both, and the query 0xffffffff.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// podd's RuntimeDefault for a container holding `caps`, given the syscalls libseccomp knows
/// (`known`): every one of them is allowed but those [`GATED`] by a capability the container
/// lacks; clone only without namespace flags, clone3 answers ENOSYS (so that libc falls back
/// to clone, whose flags can be checked), personality only for the usual values. Syscalls
/// newer than this libseccomp, and other architectures' syscalls, are refused.
pub fn runtime_default(caps: &[String], known: &[String]) -> SeccompFilter {
    let holds = |any: &[&str]| any.iter().any(|c| caps.iter().any(|h| h == c));
    let admin = holds(&["CAP_SYS_ADMIN"]);
    let special = ["clone", "clone3", "personality"];
    let allowed: Vec<String> = known
        .iter()
        .filter(|n| !special.contains(&n.as_str()))
        .filter(|n| match GATED.iter().find(|(g, _)| g == n) {
            Some((_, caps)) => holds(caps),
            None => true,
        })
        .cloned()
        .collect();
    let allow = |names: Vec<String>, args: Vec<SeccompArg>| SeccompRule {
        names,
        action: "SCMP_ACT_ALLOW".into(),
        errno: None,
        args,
    };
    let mut rules = vec![allow(allowed, Vec::new())];
    if admin {
        rules.push(allow(vec!["clone".into(), "clone3".into()], Vec::new()));
    } else {
        rules.push(allow(
            vec!["clone".into()],
            vec![SeccompArg {
                index: clone_flags_arg(),
                value: CLONE_NEW_MASK,
                value_two: 0,
                op: "SCMP_CMP_MASKED_EQ".into(),
            }],
        ));
        rules.push(SeccompRule {
            names: vec!["clone3".into()],
            action: "SCMP_ACT_ERRNO".into(),
            errno: Some(libc::ENOSYS),
            args: Vec::new(),
        });
    }
    for p in PERSONALITIES {
        rules.push(allow(
            vec!["personality".into()],
            vec![SeccompArg {
                index: 0,
                value: p,
                value_two: 0,
                op: "SCMP_CMP_EQ".into(),
            }],
        ));
    }
    SeccompFilter {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno: Some(libc::EPERM),
        architectures: Vec::new(),
        rules,
    }
}

/// clone(2)'s flags are its first argument, except on s390 where they are the second.
fn clone_flags_arg() -> u32 {
    if cfg!(target_arch = "s390x") {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn allowed(f: &SeccompFilter) -> Vec<String> {
        f.rules
            .iter()
            .filter(|r| r.action == "SCMP_ACT_ALLOW" && r.args.is_empty())
            .flat_map(|r| r.names.clone())
            .collect()
    }

    #[test]
    fn runtime_default_gates_by_capability() {
        let known = names(&[
            "read",
            "write",
            "mount",
            "keyctl",
            "clone",
            "clone3",
            "personality",
            "sethostname",
        ]);
        let f = runtime_default(&names(&["CAP_CHOWN"]), &known);
        assert_eq!(f.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(allowed(&f), names(&["read", "write"]));
        let clone = f.rules.iter().find(|r| r.names == ["clone"]).unwrap();
        assert_eq!(clone.args[0].op, "SCMP_CMP_MASKED_EQ");
        let clone3 = f.rules.iter().find(|r| r.names == ["clone3"]).unwrap();
        assert_eq!(clone3.errno, Some(libc::ENOSYS));

        let f = runtime_default(&names(&["CAP_SYS_ADMIN"]), &known);
        let got = allowed(&f);
        for n in ["mount", "sethostname", "clone", "clone3"] {
            assert!(
                got.contains(&n.to_string()),
                "{n} with CAP_SYS_ADMIN: {got:?}"
            );
        }
        assert!(
            !got.contains(&"keyctl".to_string()),
            "keyctl is never allowed"
        );
    }

    #[test]
    fn profiles_apply_includes_excludes_and_the_arch_map() {
        let (docker_arch, scmp_arch) = native_arch();
        let text = format!(
            r#"{{
              "defaultAction": "SCMP_ACT_ERRNO",
              "defaultErrnoRet": 1,
              "archMap": [
                {{"architecture": "{scmp_arch}", "subArchitectures": ["SCMP_ARCH_X86"]}},
                {{"architecture": "SCMP_ARCH_MIPS", "subArchitectures": []}}
              ],
              "syscalls": [
                {{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": null}},
                {{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {{"caps": ["CAP_SYS_ADMIN"]}}}},
                {{"name": "chown", "action": "SCMP_ACT_ALLOW", "excludes": {{"caps": ["CHOWN"]}}}},
                {{"names": ["iopl"], "action": "SCMP_ACT_ALLOW", "includes": {{"arches": ["{docker_arch}"]}}}},
                {{"names": ["vm86"], "action": "SCMP_ACT_ALLOW", "includes": {{"arches": ["mips"]}}}},
                {{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                  "args": [{{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}}]}}
              ],
              "comment": "ignored"
            }}"#
        );
        let p: Profile = serde_json::from_str(&text).unwrap();
        let f = resolve(p, &names(&["CAP_CHOWN"]));
        assert_eq!(f.default_errno, Some(1));
        assert_eq!(f.architectures, names(&[scmp_arch, "SCMP_ARCH_X86"]));
        let got: Vec<&str> = f
            .rules
            .iter()
            .flat_map(|r| r.names.iter().map(String::as_str))
            .collect();
        assert_eq!(got, ["read", "iopl", "socket"]);
        assert_eq!(f.rules[2].errno, Some(22));
        assert_eq!(f.rules[2].args[0].value, 40);
    }

    #[test]
    fn localhost_profiles_must_be_absolute_readable_json() {
        let dir = tempfile::tempdir().unwrap();
        assert!(localhost(Path::new("rel.json"), &[])
            .unwrap_err()
            .contains("absolute"));
        let missing = dir.path().join("missing.json");
        assert!(localhost(&missing, &[])
            .unwrap_err()
            .contains("cannot read"));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"syscalls\": []}").unwrap();
        let e = localhost(&bad, &[]).unwrap_err();
        assert!(
            e.contains("not a seccomp profile") && e.contains("defaultAction"),
            "{e}"
        );
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}"#).unwrap();
        let f = localhost(&good, &[]).unwrap();
        assert_eq!(f.rules[0].names, ["sethostname"]);
    }
}
