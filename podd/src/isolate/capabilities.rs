//! Linux capabilities. Daemon side (pure): CRI capability names to the set a container keeps,
//! as containerd computes it. Shim side: give the workload exactly that set before exec.

use std::collections::BTreeSet;

use caps::{CapSet, Capability, CapsHashSet};

use super::cmd::drop_privileges;
use super::error::{Ctx, Fail, Res};
use super::spec::{Identity, DEFAULT_CAPABILITIES};

/// The CRI word for "every capability" in `add_capabilities` / `drop_capabilities`.
pub const ALL: &str = "ALL";

/// The `CAP_`-prefixed upper-case name of a capability given with or without the prefix, in
/// any case ("net_admin", "CAP_NET_ADMIN"), or [`ALL`]; None for a name no kernel knows.
pub fn canonical(name: &str) -> Option<String> {
    if name.eq_ignore_ascii_case(ALL) {
        return Some(ALL.to_string());
    }
    caps::to_canonical(name)
        .parse::<Capability>()
        .ok()
        .map(|c| c.to_string())
}

/// Every capability podd knows (what a privileged container gets, as far as the shim has it).
pub fn all_names() -> Vec<String> {
    sorted(caps::all())
}

/// Every capability in podd's bounding set: what `add_capabilities: [ALL]` gives, as
/// containerd's "all current capabilities" does. A root podd-shim holds exactly these, so a
/// host (or an outer container) that withholds one still runs such containers.
pub fn held_names() -> Vec<String> {
    match caps::read(None, CapSet::Bounding) {
        Ok(held) => sorted(held.intersection(&caps::all()).copied().collect()),
        Err(_) => all_names(),
    }
}

fn sorted(set: CapsHashSet) -> Vec<String> {
    let mut v: Vec<Capability> = set.into_iter().collect();
    v.sort_by_key(|c| c.index());
    v.into_iter().map(|c| c.to_string()).collect()
}

/// Which list of a CRI `Capability` an unknown name was in, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{list}[{index}]: unknown capability {name:?}")]
pub struct UnknownCapability {
    /// "add_capabilities" or "drop_capabilities".
    pub list: &'static str,
    pub index: usize,
    pub name: String,
}

/// The set of a non-privileged container, in containerd's order: the defaults; all that podd
/// holds if `add` has "ALL"; none if `drop` has "ALL"; then each named addition; then each named drop
/// (so `drop: [ALL], add: [NET_BIND_SERVICE]` keeps only that one). Sorted by number.
pub fn resolve(add: &[String], drop: &[String]) -> Result<Vec<String>, UnknownCapability> {
    let parse = |list: &'static str, names: &[String]| {
        names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                canonical(name).ok_or_else(|| UnknownCapability {
                    list,
                    index,
                    name: name.clone(),
                })
            })
            .collect::<Result<Vec<String>, _>>()
    };
    let add = parse("add_capabilities", add)?;
    let drop = parse("drop_capabilities", drop)?;
    let mut set: BTreeSet<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    if add.iter().any(|c| c == ALL) {
        set.extend(held_names());
    }
    if drop.iter().any(|c| c == ALL) {
        set.clear();
    }
    set.extend(add.into_iter().filter(|c| c != ALL));
    for c in drop.iter().filter(|c| *c != ALL) {
        set.remove(c);
    }
    let set: CapsHashSet = set.iter().filter_map(|c| c.parse().ok()).collect();
    Ok(sorted(set))
}

fn parse_set(names: &[String], what: &str) -> Res<CapsHashSet> {
    names
        .iter()
        .map(|n| {
            n.parse::<Capability>()
                .map_err(|_| Fail(format!("{what}: unknown capability {n:?}")))
        })
        .collect()
}

fn caps_ctx<T>(r: Result<T, caps::errors::CapsError>, what: impl FnOnce() -> String) -> Res<T> {
    r.map_err(|e| Fail(format!("{}: {e}", what())))
}

/// The last privileged steps before exec, in runc's order: no_new_privs, shrink the bounding
/// set, change uid/gid keeping the permitted set across setuid, then set permitted, effective,
/// inheritable (= ambient) and ambient. Runs as root with every capability the shim has.
///
/// Seccomp, as runc: without no_new_privs only a process holding CAP_SYS_ADMIN may load a
/// filter, so it is loaded here, first, and must allow the steps that follow; with
/// no_new_privs it is returned built, for the caller to load right before execve, so that a
/// profile need allow nothing of podd's own.
pub fn drop_to(p: &Identity) -> Res<Option<super::seccomp::Pending>> {
    let wanted = parse_set(&p.capabilities, "capabilities")?;
    let ambient = parse_set(&p.ambient_capabilities, "ambient capabilities")?;
    let held = caps_ctx(caps::read(None, CapSet::Permitted), || {
        "read the permitted capabilities".into()
    })?;
    let missing: Vec<String> = sorted(wanted.difference(&held).copied().collect());
    if !missing.is_empty() && !p.privileged {
        return Err(Fail(format!(
            "capabilities {missing:?} were asked for but podd-shim does not hold them"
        )));
    }
    let keep: CapsHashSet = wanted.intersection(&held).copied().collect();
    if let (Some(f), false) = (&p.seccomp, p.no_new_privs) {
        super::seccomp::Pending::build(f)?.load()?;
    }
    if let Some(c) = ambient.iter().find(|c| !keep.contains(c)) {
        return Err(Fail(format!(
            "ambient capability {c} is not in the container's capability set"
        )));
    }
    if p.no_new_privs {
        nix::sys::prctl::set_no_new_privs().ctx(|| "set no_new_privs")?;
    }
    for c in caps::all().into_iter().filter(|c| !keep.contains(c)) {
        // An error here means the kernel does not know the capability: nothing to drop.
        if caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
            caps_ctx(caps::drop(None, CapSet::Bounding, c), || {
                format!("drop {c} from the bounding set")
            })?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).ctx(|| "set keepcaps")?;
    drop_privileges(p.uid, p.gid, &p.additional_gids)?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "clear keepcaps")?;
    // Effective first: it must stay within permitted at every step.
    for (set, value, name) in [
        (CapSet::Effective, &keep, "effective"),
        (CapSet::Permitted, &keep, "permitted"),
        (CapSet::Inheritable, &ambient, "inheritable"),
    ] {
        caps_ctx(caps::set(None, set, value), || {
            format!("set the {name} capabilities")
        })?;
    }
    if !ambient.is_empty() {
        caps_ctx(caps::clear(None, CapSet::Ambient), || {
            "clear the ambient capabilities".into()
        })?;
        for &c in &ambient {
            caps_ctx(caps::raise(None, CapSet::Ambient, c), || {
                format!("raise ambient capability {c}")
            })?;
        }
    }
    match (&p.seccomp, p.no_new_privs) {
        (Some(f), true) => Ok(Some(super::seccomp::Pending::build(f)?)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The bitmask /proc/PID/status would show for a set.
    fn mask(set: &[String]) -> u64 {
        set.iter()
            .map(|c| c.parse::<Capability>().unwrap().bitmask())
            .fold(0, |a, b| a | b)
    }

    #[test]
    fn defaults_are_containerds() {
        let set = resolve(&[], &[]).unwrap();
        assert_eq!(set.len(), 14);
        assert_eq!(mask(&set), 0xa80425fb);
    }

    #[test]
    fn names_with_or_without_prefix_in_any_case() {
        assert_eq!(canonical("net_admin").as_deref(), Some("CAP_NET_ADMIN"));
        assert_eq!(canonical("CAP_SYS_ADMIN").as_deref(), Some("CAP_SYS_ADMIN"));
        assert_eq!(canonical("all").as_deref(), Some(ALL));
        assert_eq!(canonical("CAP_ALL"), None);
        assert_eq!(canonical("FLY"), None);
    }

    #[test]
    fn add_and_drop_by_name() {
        let set = resolve(
            &names(&["NET_ADMIN", "cap_sys_time"]),
            &names(&["CAP_MKNOD"]),
        )
        .unwrap();
        assert!(set.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(set.contains(&"CAP_SYS_TIME".to_string()));
        assert!(!set.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(set.len(), 15);
        // A name both added and dropped is dropped (drops come last).
        let set = resolve(&names(&["SYS_ADMIN"]), &names(&["SYS_ADMIN"])).unwrap();
        assert_eq!(mask(&set), 0xa80425fb);
    }

    #[test]
    fn all_in_add_and_drop() {
        let all = resolve(&names(&["ALL"]), &names(&["CHOWN"])).unwrap();
        let held = held_names();
        assert!(held.contains(&"CAP_CHOWN".to_string()));
        // The defaults are added whether held or not (the shim then says which it lacks).
        let mut want: BTreeSet<String> = held.into_iter().collect();
        want.extend(DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()));
        assert_eq!(all.len(), want.len() - 1);
        assert!(!all.contains(&"CAP_CHOWN".to_string()));
        let only = resolve(&names(&["NET_BIND_SERVICE"]), &names(&["all"])).unwrap();
        assert_eq!(only, names(&["CAP_NET_BIND_SERVICE"]));
        assert!(resolve(&[], &names(&["ALL"])).unwrap().is_empty());
        // ALL in both: drop wins, then named additions come back.
        let set = resolve(&names(&["ALL", "KILL"]), &names(&["ALL"])).unwrap();
        assert_eq!(set, names(&["CAP_KILL"]));
    }

    #[test]
    fn unknown_names_say_where() {
        let err = resolve(&names(&["KILL", "CAP_FLY"]), &[]).unwrap_err();
        assert_eq!(
            err,
            UnknownCapability {
                list: "add_capabilities",
                index: 1,
                name: "CAP_FLY".into()
            }
        );
        let err = resolve(&[], &names(&["nope"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "drop_capabilities[0]: unknown capability \"nope\""
        );
    }
}
