//! The propagation of the host mount a path is on (from /proc/self/mountinfo), checked before a
//! container asks for CRI mount propagation, as containerd's `ensureShared` and
//! `ensureSharedOrSlave` do: an rslave bind of a source on a private mount would silently
//! receive nothing.

use std::path::{Path, PathBuf};

use super::error::IsolateError;

/// The mount a host path is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    pub mount_point: PathBuf,
    /// In a peer group (`shared:N`): mounts propagate to and from its peers.
    pub shared: bool,
    /// A slave (`master:N`): mounts propagate to it from its master.
    pub slave: bool,
}

/// The mount `path` (symlinks resolved) is on, in podd's own mount namespace.
pub fn host_mount_of(path: &Path) -> Result<HostMount, IsolateError> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| IsolateError::sys(format!("resolve {}", path.display()), e))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| IsolateError::sys("read /proc/self/mountinfo", e))?;
    mount_of(&info, &real).ok_or_else(|| {
        IsolateError::sys(
            format!("find the mount of {}", real.display()),
            std::io::Error::other("no mount in /proc/self/mountinfo contains it"),
        )
    })
}

/// Undo mountinfo's octal escapes (`\040` for a space and so on).
fn unescape(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The longest mount point containing `path` (the last one of equals: it is on top).
fn mount_of(mountinfo: &str, path: &Path) -> Option<HostMount> {
    let mut best: Option<HostMount> = None;
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(mp) = f.get(4).map(|m| unescape(m)) else {
            continue;
        };
        if !path.starts_with(&mp) {
            continue;
        }
        if best
            .as_ref()
            .is_some_and(|b| b.mount_point.as_os_str().len() > mp.as_os_str().len())
        {
            continue;
        }
        let optional = f.iter().skip(6).take_while(|o| **o != "-");
        let (mut shared, mut slave) = (false, false);
        for o in optional {
            shared |= o.starts_with("shared:");
            slave |= o.starts_with("master:");
        }
        best = Some(HostMount {
            mount_point: mp,
            shared,
            slave,
        });
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:26 / /tmp rw,nosuid - tmpfs tmpfs rw
31 30 254:1 /srv/a /tmp/a\\040b rw,relatime master:1 - ext4 /dev/vda1 rw
32 30 254:1 /srv/c /tmp/c rw shared:7 master:1 - ext4 /dev/vda1 rw
33 32 0:40 / /tmp/c rw - tmpfs tmpfs rw
";

    fn at(path: &str) -> HostMount {
        mount_of(INFO, Path::new(path)).unwrap()
    }

    #[test]
    fn the_longest_containing_mount_point_and_its_propagation() {
        let m = at("/var/lib/x");
        assert_eq!(
            (m.mount_point, m.shared, m.slave),
            ("/".into(), true, false)
        );
        let m = at("/tmp/x");
        assert_eq!(
            (m.mount_point, m.shared, m.slave),
            ("/tmp".into(), false, false)
        );
        let m = at("/tmp/a b/sub");
        assert_eq!(
            (m.mount_point, m.shared, m.slave),
            ("/tmp/a b".into(), false, true)
        );
        // /tmp/ab is not under /tmp/a.
        assert_eq!(at("/tmp/a bc").mount_point, PathBuf::from("/tmp"));
        // Stacked: the one on top counts.
        let m = at("/tmp/c/d");
        assert_eq!(
            (m.mount_point, m.shared, m.slave),
            ("/tmp/c".into(), false, false)
        );
    }
}
