//! Where CNI things are (the `[cni]` section of podd's config file, overridden by flags), the
//! network configuration list podd uses (the first file of the conf dir in lexical order, as
//! kubelet-run runtimes pick it), and the default one podd writes when there is none.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::{NetError, Result};

/// The default pod subnet. Chosen off every runtime's and CNI's default so that podd can run
/// beside them: podman, containerd and nerdctl use 10.88/16 and 10.4/16, CRI-O 10.85/16,
/// flannel and kind 10.244/16, k3s 10.42-10.43, weave 10.32/12, kubeadm's services 10.96/12,
/// microk8s 10.1/16, docker 172.17-172.31, calico 192.168/16.
pub const DEFAULT_SUBNET: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 209, 0, 0), 16) {
    Ok(n) => n,
    Err(_) => panic!("valid prefix length"),
};
/// The bridge of the default network.
pub const DEFAULT_BRIDGE: &str = "podd0";
pub const DEFAULT_NETWORK_NAME: &str = "podd";
/// File name of the default configuration: sorts before most hand-written ones' "99-".
pub const DEFAULT_FILE: &str = "10-podd.conflist";
/// The CNI version of the default configuration: the newest the Debian plugins speak.
pub const DEFAULT_CNI_VERSION: &str = "1.0.0";

/// The `[cni]` section of podd's config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Where plugin binaries are looked up, in order (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// Network configuration files (`*.conflist`, `*.conf`, `*.json`).
    pub conf_dir: PathBuf,
    /// Subnet of the default network podd writes when `conf_dir` has no configuration.
    pub subnet: Ipv4Net,
    /// Write the default network when `conf_dir` has no configuration.
    pub default_network: bool,
    /// Bridge of the default network (at most 15 bytes): two podds on one host need two.
    pub bridge: String,
    /// Name of the default network (also host-local's data dir name under /var/lib/cni/networks).
    pub network_name: String,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            bin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            subnet: DEFAULT_SUBNET,
            default_network: true,
            bridge: DEFAULT_BRIDGE.to_string(),
            network_name: DEFAULT_NETWORK_NAME.to_string(),
        }
    }
}

/// A network configuration list, normalised (a single-plugin `.conf` becomes a list of one).
/// Its JSON form is what a pod's attachment records, so that DEL uses exactly the
/// configuration ADD used, even after the file changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfList {
    pub name: String,
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub plugins: Vec<Map<String, Value>>,
    /// The file it was read from (for messages).
    #[serde(default)]
    pub source: PathBuf,
}

impl NetConfList {
    /// The `type` of each plugin, in order (validated to be present).
    pub fn plugin_type(plugin: &Map<String, Value>) -> &str {
        plugin.get("type").and_then(Value::as_str).unwrap_or("")
    }

    /// The IPAM plugin a plugin delegates to (`ipam.type`), when it has an `ipam` section.
    pub fn ipam_type(plugin: &Map<String, Value>) -> Option<&str> {
        plugin
            .get("ipam")
            .map(|i| i.get("type").and_then(Value::as_str).unwrap_or(""))
    }
}

fn is_config_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("conflist" | "conf" | "json")
    )
}

/// Configuration files in `dir`, lexical order.
fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetError::io(format!("list CNI conf dir {}", dir.display()))(e)),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_config_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// "1.0.0" -> (1, 0, 0); None for anything else.
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let out = (it.next()??, it.next()??, it.next().unwrap_or(Some(0))?);
    it.next().is_none().then_some(out)
}

/// Parses and validates one file's content.
pub fn parse(path: &Path, data: &[u8]) -> Result<NetConfList> {
    let bad = |reason: String| NetError::BadConfig {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value =
        serde_json::from_slice(data).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    let Value::Object(mut top) = value else {
        return Err(bad("is not a JSON object".into()));
    };
    let string = |top: &Map<String, Value>, key: &str| -> Result<String> {
        match top.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad(format!("{key:?} must be a non-empty string"))),
        }
    };
    let name = string(&top, "name")?;
    let cni_version = string(&top, "cniVersion")?;
    if parse_version(&cni_version).is_none() {
        return Err(bad(format!("cniVersion {cni_version:?} is not a version")));
    }
    let is_list = path.extension().and_then(|e| e.to_str()) == Some("conflist")
        || top.contains_key("plugins");
    let plugins = if is_list {
        match top.remove("plugins") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Value::Object(m) => Ok(m),
                    _ => Err(bad(format!("plugins[{i}] is not an object"))),
                })
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(bad("\"plugins\" must be a non-empty list".into())),
        }
    } else {
        vec![top]
    };
    for (i, p) in plugins.iter().enumerate() {
        let ty = NetConfList::plugin_type(p);
        if ty.is_empty() || ty.contains('/') || ty.starts_with('.') {
            return Err(bad(format!(
                "plugins[{i}].type must name a plugin binary (got {:?})",
                p.get("type")
            )));
        }
        if let Some(ipam) = NetConfList::ipam_type(p) {
            if ipam.is_empty() || ipam.contains('/') || ipam.starts_with('.') {
                return Err(bad(format!(
                    "plugins[{i}].ipam.type must name an IPAM plugin binary (got {:?})",
                    p.get("ipam").and_then(|i| i.get("type"))
                )));
            }
        }
    }
    Ok(NetConfList {
        name,
        cni_version,
        plugins,
        source: path.to_path_buf(),
    })
}

/// The network podd uses: the first configuration file of `dir` in lexical order.
pub fn load(dir: &Path) -> Result<NetConfList> {
    let Some(first) = config_files(dir)?.into_iter().next() else {
        return Err(NetError::NotReady(format!(
            "no *.conflist, *.conf or *.json file in {}; add one, or let podd write its \
             default network (cni.default_network = true)",
            dir.display()
        )));
    };
    let data = std::fs::read(&first).map_err(NetError::io(format!("read {}", first.display())))?;
    parse(&first, &data)
}

/// The default network: bridge `cfg.bridge` (the gateway, masquerading traffic that leaves the
/// subnet, hairpin so a pod reaches itself through its own host port) with host-local IPAM on
/// `cfg.subnet`, then portmap for host ports (SNAT so that 127.0.0.1:PORT works). Loopback
/// needs no plugin: the infra brings `lo` up itself.
pub fn default_conflist(cfg: &CniConfig) -> Value {
    let subnet = cfg.subnet;
    json!({
        "cniVersion": DEFAULT_CNI_VERSION,
        "name": cfg.network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": cfg.bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet.trunc().to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {
                "type": "portmap",
                "snat": true,
                "capabilities": {"portMappings": true}
            }
        ]
    })
}

/// Writes the default network into `cfg.conf_dir` when it holds no configuration; returns the
/// file written, or None when there was one already.
pub fn write_default(cfg: &CniConfig) -> Result<Option<PathBuf>> {
    let dir = &cfg.conf_dir;
    if cfg.bridge.is_empty() || cfg.bridge.len() > 15 || cfg.bridge.contains(['/', ' ']) {
        return Err(NetError::NotReady(format!(
            "the default network's bridge name {:?} is not a valid interface name (1 to 15 bytes, no '/' or space); fix [cni] bridge or --cni-bridge",
            cfg.bridge
        )));
    }
    if !config_files(dir)?.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(dir).map_err(NetError::io(format!(
        "create CNI conf dir {}",
        dir.display()
    )))?;
    let path = dir.join(DEFAULT_FILE);
    let data = serde_json::to_vec_pretty(&default_conflist(cfg)).expect("JSON serializes");
    crate::store::write_atomic(&path, &data).map_err(|e| NetError::Io {
        what: format!("write the default CNI network {}", path.display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(Some(path))
}

/// When the conf dir's first file is the default network podd wrote earlier but podd's
/// settings (subnet, bridge, name) now say otherwise: what differs. podd never rewrites it (pods
/// on the old network would lose their bridge address), so the operator is told instead.
pub fn stale_default(cfg: &CniConfig) -> Option<String> {
    let first = config_files(&cfg.conf_dir).ok()?.into_iter().next()?;
    if first.file_name()? != DEFAULT_FILE {
        return None;
    }
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&first).ok()?).ok()?;
    let wanted = default_conflist(cfg);
    (on_disk != wanted).then(|| {
        format!(
            "{} was written for other settings than podd's current ones (subnet {}, bridge {}, network {}); it is used as it is: remove it (after removing the pods on it) to have podd write it anew",
            first.display(),
            cfg.subnet,
            cfg.bridge,
            cfg.network_name
        )
    })
}

/// The plugin binary `name` in the first of `dirs` that has it.
pub fn find_plugin(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_network_is_bridge_then_portmap_on_the_subnet() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = CniConfig {
            conf_dir: dir.path().to_path_buf(),
            subnet: "10.209.7.9/24".parse().unwrap(),
            ..CniConfig::default()
        };
        let written = write_default(&cfg).unwrap().unwrap();
        assert_eq!(written, dir.path().join(DEFAULT_FILE));
        assert_eq!(stale_default(&cfg), None);
        let list = load(dir.path()).unwrap();
        assert_eq!(list.name, "podd");
        assert_eq!(list.plugins[0]["bridge"], "podd0");
        let types: Vec<&str> = list.plugins.iter().map(NetConfList::plugin_type).collect();
        assert_eq!(types, ["bridge", "portmap"]);
        assert_eq!(
            list.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.209.7.0/24"
        );
        assert_eq!(list.plugins[1]["capabilities"]["portMappings"], true);
        // Never twice, never over someone's file.
        assert_eq!(write_default(&cfg).unwrap(), None);
        // Other settings later: the file stays as it is and the operator is told what differs.
        cfg.subnet = "10.212.0.0/16".parse().unwrap();
        let stale = stale_default(&cfg).expect("a changed subnet is noticed");
        assert!(
            stale.contains("10.212.0.0/16") && stale.contains(DEFAULT_FILE),
            "{stale}"
        );
        assert_eq!(write_default(&cfg).unwrap(), None);
    }

    #[test]
    fn bridge_and_network_name_are_settings_and_bad_bridge_names_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = CniConfig {
            conf_dir: dir.path().to_path_buf(),
            bridge: "podd-b".into(),
            network_name: "podd-b".into(),
            ..CniConfig::default()
        };
        write_default(&cfg).unwrap().unwrap();
        let list = load(dir.path()).unwrap();
        assert_eq!(
            (list.name.as_str(), &list.plugins[0]["bridge"]),
            ("podd-b", &json!("podd-b"))
        );
        cfg.bridge = "a-bridge-name-too-long".into();
        let err = write_default(&cfg).unwrap_err().to_string();
        assert!(err.contains("--cni-bridge"), "{err}");
    }

    #[test]
    fn first_file_in_lexical_order_wins_and_conf_becomes_a_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"loopback"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("05-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"a","type":"bridge","bridge":"x"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("01-notes.txt"), "ignored").unwrap();
        let list = load(dir.path()).unwrap();
        assert_eq!(list.name, "a");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0]["bridge"], "x");
    }

    #[test]
    fn missing_and_broken_configs_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&dir.path().join("none")).unwrap_err();
        assert!(matches!(err, NetError::NotReady(_)), "{err}");
        for (body, want) in [
            ("{", "not valid JSON"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "\"name\"",
            ),
            (
                r#"{"name":"n","cniVersion":"one","plugins":[{"type":"x"}]}"#,
                "cniVersion",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#,
                "non-empty list",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../x"}]}"#,
                "plugins[0].type",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"x","ipam":{}}]}"#,
                "plugins[0].ipam.type",
            ),
        ] {
            let err = parse(Path::new("/c/x.conflist"), body.as_bytes()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(want) && msg.contains("/c/x.conflist"),
                "{body}: {msg}"
            );
        }
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("1.0.0"), Some((1, 0, 0)));
        assert_eq!(parse_version("0.4"), Some((0, 4, 0)));
        assert_eq!(parse_version("v1"), None);
        assert_eq!(parse_version("1.0.0.0"), None);
    }
}
