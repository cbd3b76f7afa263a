//! Which seccomp filter a container gets: none (Unconfined), podd's RuntimeDefault, or a
//! Localhost profile file in the format kubelet, docker and containerd use. Profiles are
//! resolved here for the container's capabilities and the machine's architecture, so the shim
//! loads a plain list of rules.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::isolate::capabilities;
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
    #[serde(default, deserialize_with = "null_is_default")]
    architectures: Vec<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "null_is_default")]
    syscalls: Vec<Syscall>,
}

/// Profiles written by Go programs (docker's own among them) say `null` for an empty list.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default, deserialize_with = "null_is_default")]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    #[serde(default, deserialize_with = "null_is_default")]
    names: Vec<String>,
    /// Old single-name form.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<i32>,
    #[serde(default, deserialize_with = "null_is_default")]
    args: Vec<Arg>,
    #[serde(default, deserialize_with = "null_is_default")]
    includes: Condition,
    #[serde(default, deserialize_with = "null_is_default")]
    excludes: Condition,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default, deserialize_with = "null_is_default")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    arches: Vec<String>,
    /// "5.8": the rule applies only from this kernel on (includes) or before it (excludes).
    #[serde(default)]
    min_kernel: Option<String>,
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
        "x86" => ("x86", "SCMP_ARCH_X86"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        other => (other, "SCMP_ARCH_NATIVE"),
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

/// (major, minor) of a "5.8" or "6.1.0-18-amd64" kernel version.
fn kernel_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn running_kernel() -> Option<(u32, u32)> {
    let u = nix::sys::utsname::uname().ok()?;
    kernel_version(&u.release().to_string_lossy())
}

/// Applies `includes`/`excludes` (capabilities, architectures, kernel version) and the
/// architecture map.
fn resolve(p: Profile, caps: &[String]) -> SeccompFilter {
    resolve_on(p, caps, running_kernel())
}

fn resolve_on(p: Profile, caps: &[String], kernel: Option<(u32, u32)>) -> SeccompFilter {
    let (docker_arch, scmp_arch) = native_arch();
    // A name no kernel knows is held by nobody.
    let has = |c: &String| capabilities::canonical(c).is_some_and(|c| caps.contains(&c));
    // An unreadable minKernel, or an unknown running kernel, counts as reached.
    let reached = |min: &Option<String>| match (min.as_deref().and_then(kernel_version), kernel) {
        (Some(min), Some(k)) => k >= min,
        _ => true,
    };
    let architectures = if p.arch_map.is_empty() {
        p.architectures
    } else {
        p.arch_map
            .iter()
            .filter(|m| m.architecture == scmp_arch)
            .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures))
            .cloned()
            .collect()
    };
    let rules = p
        .syscalls
        .into_iter()
        .filter(|s| s.includes.caps.iter().all(has))
        .filter(|s| {
            s.includes.arches.is_empty() || s.includes.arches.iter().any(|a| a == docker_arch)
        })
        .filter(|s| s.includes.min_kernel.is_none() || reached(&s.includes.min_kernel))
        .filter(|s| !s.excludes.caps.iter().any(has))
        .filter(|s| !s.excludes.arches.iter().any(|a| a == docker_arch))
        .filter(|s| s.excludes.min_kernel.is_none() || !reached(&s.excludes.min_kernel))
        .map(|s| SeccompRule {
            names: s.names.into_iter().chain(s.name).collect(),
            action: s.action,
            errno: s.errno_ret,
            args: s
                .args
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
        enosys: None,
    }
}

/// Syscalls RuntimeDefault refuses (EPERM) unless the container holds one of the listed
/// capabilities (none listed: always). These are the ones docker documents as blocked by its
/// default profile: they reach kernel state shared by every container (modules, kexec, clocks,
/// keys, mounts and namespaces, swap, accounting, raw I/O, NUMA placement of other processes,
/// io_uring's large attack surface) or are obsolete. The kernel checks the capability again.
const GATED: &[(&str, &[&str])] = &[
    ("acct", &["CAP_SYS_PACCT"]),
    ("add_key", &[]),
    ("bpf", &["CAP_SYS_ADMIN", "CAP_BPF"]),
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
    ("io_uring_enter", &[]),
    ("io_uring_register", &[]),
    ("io_uring_setup", &[]),
    ("ioperm", &["CAP_SYS_RAWIO"]),
    ("iopl", &["CAP_SYS_RAWIO"]),
    ("kcmp", &["CAP_SYS_PTRACE"]),
    // Not namespaced: a new kernel for the whole node, whatever capability is given.
    ("kexec_file_load", &[]),
    ("kexec_load", &[]),
    ("keyctl", &[]),
    ("lookup_dcookie", &["CAP_SYS_ADMIN"]),
    ("lsm_set_self_attr", &["CAP_MAC_ADMIN"]),
    ("mbind", &["CAP_SYS_NICE"]),
    ("migrate_pages", &[]),
    ("mount", &["CAP_SYS_ADMIN"]),
    ("mount_setattr", &["CAP_SYS_ADMIN"]),
    ("move_mount", &["CAP_SYS_ADMIN"]),
    ("move_pages", &[]),
    ("nfsservctl", &[]),
    ("open_by_handle_at", &["CAP_DAC_READ_SEARCH"]),
    ("open_tree", &["CAP_SYS_ADMIN"]),
    ("open_tree_attr", &["CAP_SYS_ADMIN"]),
    ("perf_event_open", &["CAP_SYS_ADMIN", "CAP_PERFMON"]),
    ("pidfd_getfd", &["CAP_SYS_PTRACE"]),
    ("pivot_root", &[]),
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
    // Swap is the node's, not the container's.
    ("swapoff", &[]),
    ("swapon", &[]),
    ("_sysctl", &[]),
    ("sysfs", &[]),
    ("syslog", &["CAP_SYS_ADMIN", "CAP_SYSLOG"]),
    ("umount", &["CAP_SYS_ADMIN"]),
    ("umount2", &["CAP_SYS_ADMIN"]),
    ("unshare", &["CAP_SYS_ADMIN"]),
    ("uselib", &[]),
    ("userfaultfd", &[]),
    ("ustat", &[]),
    ("vhangup", &["CAP_SYS_TTY_CONFIG"]),
    ("vm86", &[]),
    ("vm86old", &[]),
];

/// The highest syscall number whose syscall was reviewed for [`GATED`] (Linux 6.15's
/// open_tree_attr on x86_64 and the generic table). A newer libseccomp that knows later
/// syscalls does not widen RuntimeDefault: those answer ENOSYS until reviewed.
const REVIEWED_MAX_NR: i32 = 467;

/// Syscall numbers this far past the highest allowed one answer ENOSYS rather than EPERM, so
/// that libc and tools fall back from syscalls the filter does not know to older ones.
const ENOSYS_SPAN: i32 = 64;

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

/// AF_VSOCK: host-guest sockets, which docker's profile refuses.
const AF_VSOCK: u64 = 40;

/// podd's RuntimeDefault for a container holding `caps`, given the syscalls libseccomp knows
/// for this architecture (`known`, name and number): every one up to [`REVIEWED_MAX_NR`] is
/// allowed but those [`GATED`] by a capability the container lacks; clone only without
/// namespace flags, clone3 answers ENOSYS (so that libc falls back to clone, whose flags can
/// be checked), personality only for the usual values, socket for every family but AF_VSOCK.
/// Numbers just past the known ones answer ENOSYS; everything else, other architectures'
/// syscalls included, is refused.
pub fn runtime_default(caps: &[String], known: &[(String, i32)]) -> SeccompFilter {
    let holds = |any: &[&str]| any.iter().any(|c| caps.iter().any(|h| h == c));
    let admin = holds(&["CAP_SYS_ADMIN"]);
    let special = ["clone", "clone3", "personality", "socket"];
    let reviewed: Vec<&(String, i32)> = known
        .iter()
        .filter(|(_, nr)| *nr <= REVIEWED_MAX_NR)
        .collect();
    let allowed: Vec<String> = reviewed
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !special.contains(&n.as_str()))
        .filter(|n| match GATED.iter().find(|(g, _)| g == n) {
            Some((_, caps)) => holds(caps),
            None => true,
        })
        .cloned()
        .collect();
    let allow = |names: &[&str], args: Vec<SeccompArg>| SeccompRule {
        names: names.iter().map(|s| s.to_string()).collect(),
        action: "SCMP_ACT_ALLOW".into(),
        errno: None,
        args,
    };
    let arg = |index: u32, op: &str, value: u64, value_two: u64| SeccompArg {
        index,
        value,
        value_two,
        op: op.into(),
    };
    let mut rules = vec![SeccompRule {
        names: allowed,
        action: "SCMP_ACT_ALLOW".into(),
        errno: None,
        args: Vec::new(),
    }];
    if admin {
        rules.push(allow(&["clone", "clone3"], Vec::new()));
    } else {
        rules.push(allow(
            &["clone"],
            vec![arg(
                clone_flags_arg(),
                "SCMP_CMP_MASKED_EQ",
                CLONE_NEW_MASK,
                0,
            )],
        ));
        rules.push(SeccompRule {
            names: vec!["clone3".into()],
            action: "SCMP_ACT_ERRNO".into(),
            errno: Some(libc::ENOSYS),
            args: Vec::new(),
        });
    }
    for p in PERSONALITIES {
        rules.push(allow(&["personality"], vec![arg(0, "SCMP_CMP_EQ", p, 0)]));
    }
    rules.push(allow(&["socket"], vec![arg(0, "SCMP_CMP_NE", AF_VSOCK, 0)]));
    let highest = reviewed.iter().map(|(_, nr)| *nr).max().unwrap_or(0);
    SeccompFilter {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno: Some(libc::EPERM),
        architectures: Vec::new(),
        rules,
        enosys: Some((highest + 1, REVIEWED_MAX_NR.max(highest) + ENOSYS_SPAN)),
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
        let known: Vec<(String, i32)> = [
            "read",
            "write",
            "mount",
            "keyctl",
            "clone",
            "clone3",
            "personality",
            "sethostname",
            "kexec_load",
            "socket",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i as i32))
        .chain([("from_the_future".to_string(), REVIEWED_MAX_NR + 1)])
        .collect();
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
        for n in ["keyctl", "kexec_load", "from_the_future"] {
            assert!(
                !got.contains(&n.to_string()),
                "{n} is never allowed: {got:?}"
            );
        }
        assert_eq!(f.enosys, Some((10, REVIEWED_MAX_NR + ENOSYS_SPAN)));
        let socket = f.rules.iter().find(|r| r.names == ["socket"]).unwrap();
        assert_eq!(
            (socket.args[0].op.as_str(), socket.args[0].value),
            ("SCMP_CMP_NE", 40)
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
        crate::isolate::seccomp::build(&f).unwrap();
    }

    #[test]
    fn go_style_nulls_and_kernel_versions() {
        // What docker's and other Go-written profiles say for empty lists.
        let text = r#"{
          "defaultAction": "SCMP_ACT_ERRNO",
          "architectures": null,
          "archMap": [{"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}],
          "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": null,
             "includes": {"caps": null, "arches": null}, "excludes": {}},
            {"names": ["statx"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.11"}},
            {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["legacy"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.0"}}
          ]
        }"#;
        let f = resolve_on(serde_json::from_str(text).unwrap(), &[], Some((6, 1)));
        let got: Vec<&str> = f.rules.iter().map(|r| r.names[0].as_str()).collect();
        assert_eq!(got, ["read", "statx"]);
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("4.11"), Some((4, 11)));
        crate::isolate::seccomp::build(&f).unwrap();
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
