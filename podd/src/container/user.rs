//! Resolves the user a container runs as: CRI `run_as_user`/`run_as_group`/`run_as_username`,
//! else the image's `User` (`name`, `uid`, `name:group`, `uid:gid`), looking names up in the
//! image's own /etc/passwd and /etc/group (never the host's).

use std::fs;
use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// The topmost copy of `rel` (e.g. "etc/passwd") among image layers given topmost first.
fn image_file(layers: &[PathBuf], rel: &str) -> Option<String> {
    layers.iter().find_map(|l| {
        // Never follow a symlink: a layer's `etc -> /etc` would read the host's files.
        let mut p = l.clone();
        let (dirs, file) = rel.rsplit_once('/').unwrap_or(("", rel));
        for d in dirs.split('/').filter(|d| !d.is_empty()) {
            p.push(d);
            if !fs::symlink_metadata(&p).ok()?.file_type().is_dir() {
                return None;
            }
        }
        p.push(file);
        // Only regular files count: a whiteout (char device) means deleted in that layer.
        let meta = fs::symlink_metadata(&p).ok()?;
        if meta.file_type().is_file() {
            fs::read_to_string(&p).ok()
        } else if meta.file_type().is_symlink() {
            None
        } else {
            Some(String::new())
        }
    })
}

/// (name, id, primary gid) entries of a passwd- or group-format file.
fn entries(text: &str) -> impl Iterator<Item = (&str, u32, Option<u32>)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let id = f.get(2)?.parse().ok()?;
        Some((f[0], id, f.get(3).and_then(|g| g.parse().ok())))
    })
}

fn lookup_user(layers: &[PathBuf], spec: &str) -> Option<(u32, Option<u32>)> {
    let passwd = image_file(layers, "etc/passwd").unwrap_or_default();
    match spec.parse::<u32>() {
        Ok(uid) => Some((uid, entries(&passwd).find(|e| e.1 == uid).and_then(|e| e.2))),
        Err(_) => entries(&passwd).find(|e| e.0 == spec).map(|e| (e.1, e.2)),
    }
}

fn lookup_group(layers: &[PathBuf], spec: &str) -> Option<u32> {
    spec.parse().ok().or_else(|| {
        let group = image_file(layers, "etc/group").unwrap_or_default();
        let gid = entries(&group).find(|e| e.0 == spec).map(|e| e.1);
        gid
    })
}

/// The name of the user `user` (a name, or a uid looked up in the image's /etc/passwd).
fn user_name(layers: &[PathBuf], user: &str) -> Option<String> {
    match user.parse::<u32>() {
        Ok(uid) => {
            let passwd = image_file(layers, "etc/passwd")?;
            let name = entries(&passwd)
                .find(|e| e.1 == uid)
                .map(|e| e.0.to_string());
            name
        }
        Err(_) => Some(user.to_string()),
    }
}

/// The process's group list, as containerd makes it: the primary gid, then the gids of the
/// image's /etc/group entries that list the user's name as a member (unless `strict`, CRI's
/// SupplementalGroupsPolicy Strict), then the CRI `supplemental_groups`; each once.
pub fn additional_gids(
    req: &UserRequest,
    layers: &[PathBuf],
    ids: Ids,
    supplemental: &[u32],
    strict: bool,
) -> Vec<u32> {
    let mut gids = vec![ids.gid];
    let user = if !req.run_as_username.is_empty() {
        req.run_as_username.to_string()
    } else if let Some(uid) = req.run_as_user {
        uid.to_string()
    } else {
        let image_user = req.image_user.split(':').next().unwrap_or("");
        if image_user.is_empty() {
            "0"
        } else {
            image_user
        }
        .to_string()
    };
    if !strict {
        if let Some(name) = user_name(layers, &user) {
            let group = image_file(layers, "etc/group").unwrap_or_default();
            for line in group.lines() {
                let f: Vec<&str> = line.split(':').collect();
                let (Some(gid), Some(members)) =
                    (f.get(2).and_then(|g| g.parse::<u32>().ok()), f.get(3))
                else {
                    continue;
                };
                // Only supplementary groups: not the user's own group of the same name.
                if f[0] != name && members.split(',').any(|m| m.trim() == name) {
                    gids.push(gid);
                }
            }
        }
    }
    gids.extend_from_slice(supplemental);
    let mut seen = std::collections::HashSet::new();
    gids.retain(|g| seen.insert(*g));
    gids
}

pub struct UserRequest<'a> {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: &'a str,
    pub image_user: &'a str,
}

pub fn resolve(req: &UserRequest, layers: &[PathBuf]) -> Result<Ids> {
    let id = |v: i64, field: &str| {
        u32::try_from(v).map_err(|_| Error::invalid(field, format!("{v} is not a valid id")))
    };
    let (user, group): (String, Option<String>) = if let Some(uid) = req.run_as_user {
        (
            id(uid, "linux.security_context.run_as_user")?.to_string(),
            None,
        )
    } else if !req.run_as_username.is_empty() {
        (req.run_as_username.to_string(), None)
    } else if let Some((u, g)) = req.image_user.split_once(':') {
        (u.to_string(), Some(g.to_string()))
    } else {
        (req.image_user.to_string(), None)
    };
    if user.is_empty() {
        return Ok(Ids { uid: 0, gid: 0 });
    }
    let (uid, primary) = lookup_user(layers, &user).ok_or_else(|| {
        Error::invalid(
            "user",
            format!("user {user:?} is not in the image's /etc/passwd; use a numeric uid"),
        )
    })?;
    let gid = if let Some(g) = req.run_as_group {
        id(g, "linux.security_context.run_as_group")?
    } else if let Some(g) = group {
        lookup_group(layers, &g).ok_or_else(|| {
            Error::invalid(
                "user",
                format!("group {g:?} is not in the image's /etc/group; use a numeric gid"),
            )
        })?
    } else {
        primary.unwrap_or(0)
    };
    Ok(Ids { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        d
    }

    fn req<'a>(image_user: &'a str, username: &'a str) -> UserRequest<'a> {
        UserRequest {
            run_as_user: None,
            run_as_group: None,
            run_as_username: username,
            image_user,
        }
    }

    #[test]
    fn groups_listing_the_user_then_the_supplemental_ones() {
        let l = layer();
        fs::write(
            l.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:nobody,other\nnobody:x:65533:nobody\nwheel:x:10:root\n\
             bad:x:zz:nobody\n",
        )
        .unwrap();
        let layers = vec![l.path().to_path_buf()];
        let gids = |r: &UserRequest, strict| {
            let ids = resolve(r, &layers).unwrap();
            additional_gids(r, &layers, ids, &[1234, 50], strict)
        };
        assert_eq!(gids(&req("nobody", ""), false), vec![65534, 50, 1234]);
        assert_eq!(gids(&req("65534:7", ""), false), vec![7, 50, 1234]);
        assert_eq!(gids(&req("", "nobody"), false), vec![65534, 50, 1234]);
        assert_eq!(gids(&req("", ""), false), vec![0, 10, 1234, 50]);
        assert_eq!(gids(&req("nobody", ""), true), vec![65534, 1234, 50]);
        let by_uid = UserRequest {
            run_as_user: Some(65534),
            ..req("root", "")
        };
        assert_eq!(gids(&by_uid, false), vec![65534, 50, 1234]);
        // A uid without a passwd entry has no name, so no image groups.
        assert_eq!(gids(&req("4242", ""), false), vec![0, 1234, 50]);
    }

    #[test]
    fn groups_are_never_read_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("group"), "wheel:x:10:root\n").unwrap();
        std::os::unix::fs::symlink(host.path().join("group"), d.path().join("etc/group")).unwrap();
        let layers = vec![d.path().to_path_buf()];
        let r = req("", "");
        let ids = resolve(&r, &layers).unwrap();
        assert_eq!(additional_gids(&r, &layers, ids, &[], false), vec![0]);
    }

    #[test]
    fn never_reads_through_a_symlinked_directory() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("etc")).unwrap();
        let layers = vec![d.path().to_path_buf()];
        // The host's /etc/passwd has root; through the symlink "root" would resolve.
        let err = resolve(&req("root", ""), &layers).unwrap_err().to_string();
        assert!(err.contains("not in the image"), "{err}");
    }

    #[test]
    fn resolves_names_and_numbers_from_the_image() {
        let l = layer();
        let layers = vec![l.path().to_path_buf()];
        let r = |u, n| resolve(&req(u, n), &layers).map_err(|e| e.to_string());
        assert_eq!(r("", ""), Ok(Ids { uid: 0, gid: 0 }));
        assert_eq!(
            r("nobody", ""),
            Ok(Ids {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(r("1000", ""), Ok(Ids { uid: 1000, gid: 0 }));
        assert_eq!(
            r("nobody:staff", ""),
            Ok(Ids {
                uid: 65534,
                gid: 50
            })
        );
        assert_eq!(r("1:2", ""), Ok(Ids { uid: 1, gid: 2 }));
        assert_eq!(
            r("", "nobody"),
            Ok(Ids {
                uid: 65534,
                gid: 65534
            })
        );
        assert!(r("ghost", "").unwrap_err().contains("ghost"));
        let explicit = UserRequest {
            run_as_user: Some(7),
            run_as_group: Some(8),
            ..req("nobody", "")
        };
        assert_eq!(resolve(&explicit, &layers).unwrap(), Ids { uid: 7, gid: 8 });
    }
}
