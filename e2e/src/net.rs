//! A test's own CNI network: a bridge, network name and /24 subnet (10.211.N.0/24) that no
//! other concurrently running test uses, with host-local's data dir inside the test's temp
//! dir; and the host-side observations that prove a network left nothing behind.
//!
//! N is reserved with a lock file `/run/podd-e2e-nets/N` (holding the test process's pid;
//! one left by a dead process is taken over) and only when no address or route of the host
//! overlaps the subnet and no link has the bridge's name.
//!
//! 10.211.0.0/16 is the tests' own: it overlaps neither podd's default pod subnet
//! (10.209.0.0/16, which a podd on the host, e.g. hack/demo's bridge podd0, may use) nor the
//! defaults of other runtimes (containerd/podman 10.88/16, CRI-O 10.85/16, flannel 10.244/16,
//! Kubernetes services 10.96/12, docker 172.17/16).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::host;

const LOCK_DIR: &str = "/run/podd-e2e-nets";

/// The tests' range; N is the third octet.
const TEST_RANGE: [u8; 2] = [10, 211];

fn test_subnet(n: u8) -> Ipv4Net {
    Ipv4Net::new([TEST_RANGE[0], TEST_RANGE[1], n, 0].into(), 24).expect("24 is a valid prefix")
}

/// A reserved test network; dropping it deletes the bridge and frees the subnet.
pub struct TestNet {
    pub n: u8,
    /// CNI network name, unique: `podd-e2e-N`.
    pub name: String,
    /// The bridge (<= 15 characters): `pe2e-N`.
    pub bridge: String,
    /// `10.211.N.0/24`.
    pub subnet: String,
    /// host-local's `dataDir` (inside the test's temp dir).
    pub ipam_dir: PathBuf,
    lock: PathBuf,
}

/// The IPv4 prefixes the host uses: its addresses' networks and its routes' destinations
/// (every table; the default route is left out, as it overlaps everything).
fn host_prefixes() -> Result<Vec<Ipv4Net>> {
    let mut nets = Vec::new();
    let addrs: Value = serde_json::from_str(&host::run("ip", &["-j", "-4", "addr", "show"])?)
        .context("parsing `ip -j addr` output")?;
    for a in addrs.as_array().into_iter().flatten() {
        for info in a["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(len)) = (info["local"].as_str(), info["prefixlen"].as_u64())
            else {
                continue;
            };
            if let Ok(net) = format!("{local}/{len}").parse::<Ipv4Net>() {
                nets.push(net.trunc());
            }
        }
    }
    let routes: Value = serde_json::from_str(&host::run(
        "ip",
        &["-j", "-4", "route", "show", "table", "all"],
    )?)
    .context("parsing `ip -j route` output")?;
    for r in routes.as_array().into_iter().flatten() {
        let dst = r["dst"].as_str().unwrap_or("default");
        if dst == "default" {
            continue;
        }
        let net = if dst.contains('/') {
            dst.parse::<Ipv4Net>()
        } else {
            format!("{dst}/32").parse::<Ipv4Net>()
        };
        match net {
            Ok(net) => nets.push(net.trunc()),
            Err(_) => bail!("unexpected route destination {dst:?} in `ip -j route`"),
        }
    }
    Ok(nets)
}

/// Whether two prefixes share an address (one contains the other's network address).
fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Whether the host uses anything overlapping `subnet` or has a link named `bridge`.
fn in_use(subnet: &Ipv4Net, bridge: &str) -> Result<bool> {
    let link = Command::new("ip")
        .args(["link", "show", "dev", bridge])
        .output()
        .context("running ip link show")?;
    Ok(link.status.success() || host_prefixes()?.iter().any(|p| overlaps(p, subnet)))
}

impl TestNet {
    /// Reserves a free N and makes the test's IPAM dir under `tmp`.
    pub fn reserve(tmp: &Path) -> Result<TestNet> {
        std::fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
        let me = std::process::id();
        let start = (me % 200) as u16;
        for i in 0..254u16 {
            let n = ((start + i) % 254 + 1) as u8;
            let lock = Path::new(LOCK_DIR).join(n.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(mut f) => {
                    writeln!(f, "{me}")?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&lock).unwrap_or_default();
                    let alive = holder
                        .trim()
                        .parse::<i32>()
                        .is_ok_and(|pid| pid as u32 != me && host::alive(pid));
                    // A lock of a dead process (or an unreadable one) is stale; one of this
                    // process is another test's, still running.
                    if alive || holder.trim() == me.to_string() || holder.trim().is_empty() {
                        continue;
                    }
                    let _ = std::fs::remove_file(&lock);
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", lock.display())),
            }
            let bridge = format!("pe2e-{n}");
            if in_use(&test_subnet(n), &bridge)? {
                let _ = std::fs::remove_file(&lock);
                continue;
            }
            let ipam_dir = tmp.join("cni-ipam");
            std::fs::create_dir_all(&ipam_dir)?;
            return Ok(TestNet {
                n,
                name: format!("podd-e2e-{n}"),
                bridge,
                subnet: test_subnet(n).to_string(),
                ipam_dir,
                lock,
            });
        }
        bail!(
            "no free test subnet {}.{}.N.0/24 (locks in {LOCK_DIR}; or the host routes them); \
             are 254 tests running?",
            TEST_RANGE[0],
            TEST_RANGE[1]
        )
    }

    /// The text every address of this network starts with (`10.211.N.`).
    pub fn addr_prefix(&self) -> String {
        format!("{}.{}.{}.", TEST_RANGE[0], TEST_RANGE[1], self.n)
    }

    /// The address `10.211.N.last` of this network.
    pub fn addr(&self, last: u8) -> String {
        format!("{}{last}", self.addr_prefix())
    }

    /// The default network podd would write (bridge + host-local + portmap with SNAT), on
    /// this test's bridge, subnet and IPAM dir; `ipam_range` narrows the range (e.g. to one
    /// address) when given.
    pub fn conflist(&self, ipam_range: Option<(&str, &str)>) -> Value {
        let mut range = json!({"subnet": self.subnet});
        if let Some((start, end)) = ipam_range {
            range["rangeStart"] = json!(start);
            range["rangeEnd"] = json!(end);
        }
        json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[range]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.ipam_dir
                    }
                },
                {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
            ]
        })
    }

    /// IPs host-local has allocated in this network (its files other than its lock and
    /// last-reserved markers).
    pub fn allocated_ips(&self) -> Vec<String> {
        let dir = self.ipam_dir.join(&self.name);
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Interfaces enslaved to the bridge (the pods' veths).
    pub fn veths(&self) -> Vec<String> {
        host::run("ip", &["-o", "link", "show", "master", &self.bridge])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }

    /// `iptables-save` lines of this network: those naming it (the bridge's masquerade and
    /// portmap rules carry `name: "<network>"` comments), its subnet, or its bridge.
    pub fn iptables_rules(&self) -> Result<Vec<String>> {
        let prefix = self.addr_prefix();
        let quoted = self.comment_needle();
        Ok(host::run("iptables-save", &[])?
            .lines()
            .filter(|l| l.contains(&quoted) || l.contains(&prefix) || l.contains(&self.bridge))
            .map(str::to_string)
            .collect())
    }

    /// What identifies this network in an iptables-save comment: its name in the plugins'
    /// `name: "<network>"`, which iptables-save prints escaped as `\"<network>\"` (so the
    /// closing quote tells podd-e2e-5 from podd-e2e-50).
    fn comment_needle(&self) -> String {
        comment_needle(&self.name)
    }

    /// What the network left on the host after every pod was removed.
    pub fn leftovers(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let ips = self.allocated_ips();
        if !ips.is_empty() {
            problems.push(format!("IPs still allocated in {}: {ips:?}", self.name));
        }
        let veths = self.veths();
        if !veths.is_empty() {
            problems.push(format!("veths left on bridge {}: {veths:?}", self.bridge));
        }
        match self.iptables_rules() {
            Ok(r) if !r.is_empty() => {
                problems.push(format!("iptables rules of {} left: {r:?}", self.name))
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("iptables-save: {e:#}")),
        }
        problems
    }
}

impl TestNet {
    /// Deletes the iptables rules that name this network (what a failed test's pods left; a
    /// passing test has none), then the CNI chains they were in, once empty. The rules go
    /// back to iptables as iptables-save printed them, as `-D` lines of an
    /// `iptables-restore --noflush` script: no shell re-parses their quoting.
    fn remove_rules(&self) {
        let Ok(saved) = host::run("iptables-save", &[]) else {
            return;
        };
        let (script, chains) = delete_script(&saved, &self.comment_needle());
        if script.is_empty() {
            return;
        }
        let restore = Command::new("iptables-restore")
            .arg("--noflush")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Ok(mut child) = restore {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(script.as_bytes());
            }
            let _ = child.wait();
        }
        for (table, chain) in chains {
            let _ = host::run("iptables", &["-w", "-t", &table, "-F", &chain]);
            let _ = host::run("iptables", &["-w", "-t", &table, "-X", &chain]);
        }
    }
}

fn comment_needle(network: &str) -> String {
    format!("\"{network}\\\"")
}

/// From `iptables-save` output, an `iptables-restore` script deleting every rule containing
/// `needle`, and the CNI chains (table, chain) those rules were in.
fn delete_script(saved: &str, needle: &str) -> (String, Vec<(String, String)>) {
    let mut script = String::new();
    let mut chains = Vec::new();
    let mut table: Option<&str> = None;
    let mut opened = false;
    for line in saved.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = Some(t);
            opened = false;
            continue;
        }
        if line == "COMMIT" && opened {
            script.push_str("COMMIT\n");
            opened = false;
            continue;
        }
        let (Some(t), Some(rule)) = (table, line.strip_prefix("-A ")) else {
            continue;
        };
        if !rule.contains(needle) {
            continue;
        }
        if !opened {
            script.push_str(&format!("*{t}\n"));
            opened = true;
        }
        script.push_str(&format!("-D {rule}\n"));
        let chain = rule.split(' ').next().unwrap_or("");
        if chain.starts_with("CNI-") && !chains.iter().any(|(tt, c)| tt == t && c == chain) {
            chains.push((t.to_string(), chain.to_string()));
        }
    }
    (script, chains)
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.remove_rules();
        let _ = Command::new("ip")
            .args(["link", "del", "dev", &self.bridge])
            .output();
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// The loopback-only network podd gets by default in tests: the pod has `lo` and nothing else,
/// nothing is made on the host.
pub fn loopback_conflist(name: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "loopback"}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn the_test_range_overlaps_no_default_pod_subnet() {
        for other in [
            "10.209.0.0/16",
            "10.88.0.0/16",
            "10.85.0.0/16",
            "10.244.0.0/16",
            "10.96.0.0/12",
            "172.17.0.0/16",
        ] {
            for n in [1, 128, 254] {
                assert!(!overlaps(&test_subnet(n), &net(other)), "{n} vs {other}");
            }
        }
    }

    #[test]
    fn the_delete_script_holds_only_the_networks_rules_per_table() {
        let saved = "# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n\
            -A FORWARD -j ACCEPT\nCOMMIT\n*nat\n:CNI-abc - [0:0]\n\
            -A POSTROUTING -s 10.211.5.2/32 -m comment --comment \"name: \\\"podd-e2e-5\\\" id: \\\"x\\\"\" -j CNI-abc\n\
            -A CNI-abc -d 10.211.5.0/24 -m comment --comment \"name: \\\"podd-e2e-5\\\" id: \\\"x\\\"\" -j ACCEPT\n\
            -A POSTROUTING -m comment --comment \"name: \\\"podd-e2e-50\\\"\" -j MASQUERADE\nCOMMIT\n";
        let (script, chains) = delete_script(saved, &comment_needle("podd-e2e-5"));
        assert_eq!(
            script,
            "*nat\n\
             -D POSTROUTING -s 10.211.5.2/32 -m comment --comment \"name: \\\"podd-e2e-5\\\" id: \\\"x\\\"\" -j CNI-abc\n\
             -D CNI-abc -d 10.211.5.0/24 -m comment --comment \"name: \\\"podd-e2e-5\\\" id: \\\"x\\\"\" -j ACCEPT\n\
             COMMIT\n"
        );
        assert_eq!(chains, vec![("nat".to_string(), "CNI-abc".to_string())]);
    }

    #[test]
    fn overlap_compares_prefixes_not_text() {
        let s = test_subnet(5);
        assert!(overlaps(&s, &net("10.211.5.7/32")));
        assert!(overlaps(&s, &net("10.211.0.0/16")));
        assert!(overlaps(&s, &net("10.0.0.0/8")));
        assert!(!overlaps(&s, &net("10.211.50.0/24")));
        assert!(!overlaps(&s, &net("110.211.5.0/24")));
    }
}
