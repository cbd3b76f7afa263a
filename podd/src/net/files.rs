//! The content of a pod's /etc/resolv.conf, /etc/hosts and /etc/hostname, as kubelet-run
//! runtimes make them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// CRI `DNSConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl DnsConfig {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.searches.is_empty() && self.options.is_empty()
    }
}

/// The pod's resolv.conf: the DNS config given, or the host's file when there is none (as
/// containerd does; kubelet sends none for host-network pods with dnsPolicy Default).
pub fn resolv_conf(dns: &DnsConfig, host: &str) -> String {
    if dns.is_empty() {
        return host.to_string();
    }
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

/// kubelet's managed hosts file: localhost on both loopback addresses, the usual IPv6 names,
/// and the pod's hostname on its IP.
pub fn hosts(hostname: &str, ip: Option<IpAddr>) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (written by podd).\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config_or_the_host() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into(), "10.96.0.11".into()],
            searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into(), "edns0".into()],
        };
        assert_eq!(
            resolv_conf(&dns, "nameserver 1.1.1.1\n"),
            "search ns.svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\nnameserver 10.96.0.11\n\
             options ndots:5 edns0\n"
        );
        assert_eq!(
            resolv_conf(&DnsConfig::default(), "nameserver 1.1.1.1\n"),
            "nameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn hosts_names_localhost_and_the_pod() {
        let h = hosts("web-0", Some("10.209.0.7".parse().unwrap()));
        assert!(h.contains("127.0.0.1\tlocalhost\n"), "{h}");
        assert!(
            h.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"),
            "{h}"
        );
        assert!(h.ends_with("10.209.0.7\tweb-0\n"), "{h}");
        assert!(!hosts("web-0", None).contains("web-0"));
    }
}
