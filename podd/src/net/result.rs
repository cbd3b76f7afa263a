//! A CNI result (spec 0.1.0 to 1.0.0), kept as the JSON the last plugin printed (it is passed on
//! as `prevResult` verbatim), and the pod IPs read from it.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Default)]
struct Interface {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sandbox: String,
}

#[derive(Deserialize)]
struct IpConfig {
    address: String,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct Legacy {
    ip: String,
}

#[derive(Deserialize, Default)]
struct Shape {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    ip4: Option<Legacy>,
    ip6: Option<Legacy>,
}

/// `10.0.0.2/24` -> 10.0.0.2.
fn address(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

/// The pod's IPs in a result: those on the container interface `ifname` (as containerd picks
/// them), else every address that is not loopback (a plugin that names no interface); IPv4
/// first, as kubelet expects the primary IP.
pub fn pod_ips(result: &Value, ifname: &str) -> Vec<IpAddr> {
    let shape: Shape = serde_json::from_value(result.clone()).unwrap_or_default();
    let on_ifname = |ip: &IpConfig| {
        ip.interface
            .and_then(|i| shape.interfaces.get(i))
            .is_some_and(|i| i.name == ifname && !i.sandbox.is_empty())
    };
    let mut ips: Vec<IpAddr> = shape
        .ips
        .iter()
        .filter(|ip| on_ifname(ip))
        .filter_map(|ip| address(&ip.address))
        .collect();
    if ips.is_empty() {
        ips = shape
            .ips
            .iter()
            .map(|ip| ip.address.as_str())
            .chain(shape.ip4.iter().map(|l| l.ip.as_str()))
            .chain(shape.ip6.iter().map(|l| l.ip.as_str()))
            .filter_map(address)
            .filter(|a| !a.is_loopback())
            .collect();
    }
    ips.sort_by_key(|a| a.is_ipv6());
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bridge_result_gives_the_eth0_address() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "podd0", "mac": "aa"},
                {"name": "veth1", "mac": "bb"},
                {"name": "eth0", "mac": "cc", "sandbox": "/run/podd/pods/x/ns/net"}
            ],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.209.0.5/16", "gateway": "10.209.0.1", "interface": 2}
            ]
        });
        let ips = pod_ips(&r, "eth0");
        assert_eq!(
            ips,
            vec![
                "10.209.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn loopback_only_result_has_no_pod_ip() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/x"}],
            "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}]
        });
        assert!(pod_ips(&r, "eth0").is_empty());
    }

    #[test]
    fn legacy_and_interfaceless_results() {
        let r = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.2.3/24"}});
        assert_eq!(
            pod_ips(&r, "eth0"),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        let r = json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.9.9.9/24"}]});
        assert_eq!(
            pod_ips(&r, "eth0"),
            vec!["10.9.9.9".parse::<IpAddr>().unwrap()]
        );
        assert!(pod_ips(&json!({"junk": 1}), "eth0").is_empty());
    }
}
