//! Pod sysctls (CRI `linux.sysctls`): which ones a pod may set, and where they live.
//!
//! Only sysctls that belong to one of the pod's own namespaces are accepted, as kubelet and
//! runc require: writing any other would change the whole node. The pod must also own that
//! namespace (a host-network pod may not set `net.*`, a host-IPC pod no `kernel.shm*`).

use std::collections::BTreeMap;

use crate::isolate::spec::NsKind;

/// The SysV IPC sysctls that are per IPC namespace (kernel's ipc/ipc_sysctl.c); plus
/// everything under `fs.mqueue.`.
const IPC_SYSCTLS: &[&str] = &[
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
];

/// One sysctl to set in a pod, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// As given (for messages).
    pub name: String,
    /// Path below `/proc/sys`, e.g. `net/ipv4/ip_local_port_range`.
    pub path: String,
    pub value: String,
    /// The pod namespace it belongs to.
    pub ns: NsKind,
}

/// Checks one sysctl of a pod that owns the namespaces `owned`; the error says why it is
/// refused and what to do instead.
pub fn check(name: &str, value: &str, owned: &[NsKind]) -> Result<Sysctl, String> {
    let (dotted, path) = normalise(name)?;
    if value.contains(['\0', '\n']) {
        return Err(format!(
            "the value {value:?} contains a NUL byte or a newline"
        ));
    }
    let ns = namespace_of(&dotted).ok_or_else(|| {
        "is not a namespaced sysctl (only net.*, fs.mqueue.*, kernel.shm*, kernel.msg*, \
         kernel.sem and kernel.domainname are): setting it would change the whole node; set it \
         on the node instead"
            .to_string()
    })?;
    if dotted == "kernel.hostname" {
        return Err("sets the hostname: use the pod's hostname instead".into());
    }
    if !owned.contains(&ns) {
        let why = match ns {
            NsKind::Net | NsKind::Uts => "the pod uses the host's network",
            NsKind::Ipc => "the pod uses the host's IPC namespace",
            NsKind::Pid => "the pod uses the host's PID namespace",
        };
        return Err(format!(
            "belongs to the {} namespace, but {why}: it would change the node",
            ns.proc_name()
        ));
    }
    Ok(Sysctl {
        name: name.to_string(),
        path,
        value: value.to_string(),
        ns,
    })
}

/// Checks every sysctl of a pod; the first refusal names the sysctl.
pub fn check_all(
    sysctls: &BTreeMap<String, String>,
    owned: &[NsKind],
) -> Result<Vec<Sysctl>, (String, String)> {
    sysctls
        .iter()
        .map(|(k, v)| check(k, v, owned).map_err(|e| (k.clone(), e)))
        .collect()
}

/// The dotted name and the `/proc/sys` path of `name`. Kubernetes accepts both spellings:
/// `net.ipv4.ip_forward`, and `net/ipv4/conf/eth0.100/rp_filter` where a dot is part of a
/// component (an interface name).
fn normalise(name: &str) -> Result<(String, String), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    let sep = if name.contains('/') { '/' } else { '.' };
    let parts: Vec<&str> = name.split(sep).collect();
    for p in &parts {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
        if p.is_empty() || *p == "." || *p == ".." || !p.chars().all(ok_char) {
            return Err(format!(
                "is not a sysctl name: {p:?} is not a component (letters, digits, '_', '-')"
            ));
        }
    }
    let path = parts.join("/");
    let dotted = if sep == '/' {
        parts.join(".")
    } else {
        name.to_string()
    };
    Ok((dotted, path))
}

fn namespace_of(dotted: &str) -> Option<NsKind> {
    if dotted.starts_with("net.") {
        Some(NsKind::Net)
    } else if dotted.starts_with("fs.mqueue.") || IPC_SYSCTLS.contains(&dotted) {
        Some(NsKind::Ipc)
    } else if dotted == "kernel.domainname" || dotted == "kernel.hostname" {
        Some(NsKind::Uts)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[NsKind] = &[NsKind::Net, NsKind::Uts, NsKind::Ipc];

    #[test]
    fn namespaced_sysctls_map_to_their_namespace_and_path() {
        let s = check("kernel.shm_rmid_forced", "1", ALL).unwrap();
        assert_eq!(
            (s.ns, s.path.as_str()),
            (NsKind::Ipc, "kernel/shm_rmid_forced")
        );
        let s = check("fs.mqueue.msg_max", "100", ALL).unwrap();
        assert_eq!((s.ns, s.path.as_str()), (NsKind::Ipc, "fs/mqueue/msg_max"));
        let s = check("net.ipv4.ip_local_port_range", "1024 65000", ALL).unwrap();
        assert_eq!(s.ns, NsKind::Net);
        assert_eq!(s.value, "1024 65000");
        let s = check("net/ipv4/conf/eth0.100/rp_filter", "2", ALL).unwrap();
        assert_eq!(s.path, "net/ipv4/conf/eth0.100/rp_filter");
        let s = check("kernel.domainname", "example", ALL).unwrap();
        assert_eq!(s.ns, NsKind::Uts);
    }

    #[test]
    fn node_wide_and_host_namespace_sysctls_are_refused() {
        for name in [
            "kernel.panic",
            "vm.overcommit_memory",
            "fs.file-max",
            "kernel.shm",
        ] {
            let e = check(name, "1", ALL).unwrap_err();
            assert!(e.contains("not a namespaced sysctl"), "{name}: {e}");
        }
        let e = check("net.core.somaxconn", "1024", &[NsKind::Ipc]).unwrap_err();
        assert!(e.contains("host's network"), "{e}");
        let e = check("kernel.sem", "1 2 3 4", &[NsKind::Net, NsKind::Uts]).unwrap_err();
        assert!(e.contains("host's IPC"), "{e}");
        assert!(check("kernel.hostname", "x", ALL)
            .unwrap_err()
            .contains("hostname"));
    }

    #[test]
    fn names_cannot_leave_proc_sys_and_values_are_one_line() {
        for name in [
            "net/../../etc/passwd",
            "net..ipv4",
            "net/./ipv4",
            "/net/ipv4/ip_forward",
            "net.ipv4.ip forward",
            "",
        ] {
            assert!(check(name, "1", ALL).is_err(), "{name:?} accepted");
        }
        assert!(check("net.ipv4.ip_forward", "1\n0", ALL).is_err());
        assert!(check("net.ipv4.ip_forward", "1\0", ALL).is_err());
    }

    #[test]
    fn check_all_names_the_refused_sysctl() {
        let map = BTreeMap::from([
            ("kernel.panic".to_string(), "1".to_string()),
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
        ]);
        let (name, _) = check_all(&map, ALL).unwrap_err();
        assert_eq!(name, "kernel.panic");
    }
}
