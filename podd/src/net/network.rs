//! ADD, DEL and CHECK of a whole network configuration list for one pod: plugins in order with
//! each one's result passed on as the next one's `prevResult` (ADD), or in reverse order (DEL).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::{find_plugin, parse_version, NetConfList};
use super::error::{NetError, Result};
use super::files::DnsConfig;
use super::plugin::{self, Command, Invocation};
use super::result::pod_ips;

/// One host port, in the shape of CNI's `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// Empty: every host address.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// Who the pod is, for `CNI_ARGS` (the keys kubelet-run runtimes pass).
#[derive(Debug, Clone)]
pub struct PodIdentity<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
}

/// A pod's attachment to a network: everything DEL needs, whatever happened to the
/// configuration files or to podd since ADD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub pod_id: String,
    /// The configuration ADD used, exactly.
    pub network: NetConfList,
    pub ifname: String,
    /// The pod's pinned network namespace.
    pub netns: PathBuf,
    pub cni_args: String,
    pub cni_path: String,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// The pod's DNS config, for plugins with the `dns` capability.
    #[serde(default)]
    pub dns: DnsConfig,
    /// The final result of ADD; None while ADD runs (an attachment saved before ADD is the
    /// intent, so that a podd killed during ADD still DELs).
    #[serde(default)]
    pub result: Option<Value>,
}

/// The plugin binary `plugin_type` of `network` in `dirs`.
fn binary(network: &NetConfList, plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    find_plugin(dirs, plugin_type).ok_or_else(|| NetError::PluginNotFound {
        network: network.name.clone(),
        plugin: plugin_type.to_string(),
        dirs: if dirs.is_empty() {
            "(no plugin directory)".into()
        } else {
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        },
    })
}

/// Every plugin binary of `network` exists in `dirs`, and every IPAM plugin they delegate to
/// (checked before ADD, so that a missing one fails before anything was made: bridge would
/// otherwise make its bridge and veth before host-local turned out to be missing).
pub fn check_plugins(network: &NetConfList, dirs: &[PathBuf]) -> Result<()> {
    for p in &network.plugins {
        binary(network, NetConfList::plugin_type(p), dirs)?;
        if let Some(ipam) = NetConfList::ipam_type(p) {
            binary(network, ipam, dirs)?;
        }
    }
    Ok(())
}

/// The interface the pod gets, as in every kubelet-run runtime.
pub const IFNAME: &str = "eth0";

/// `IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..`
pub fn cni_args(pod: &PodIdentity<'_>) -> Result<String> {
    let mut out = String::from("IgnoreUnknown=1");
    for (key, field, value) in [
        ("K8S_POD_NAMESPACE", "namespace", pod.namespace),
        ("K8S_POD_NAME", "name", pod.name),
        ("K8S_POD_INFRA_CONTAINER_ID", "id", pod.id),
        ("K8S_POD_UID", "uid", pod.uid),
    ] {
        if value.contains([';', '=']) {
            return Err(NetError::Unrepresentable {
                field,
                value: value.to_string(),
                reason: "CNI_ARGS cannot carry ';' or '='",
            });
        }
        out.push_str(&format!(";{key}={value}"));
    }
    Ok(out)
}

impl Attachment {
    pub fn new(
        pod: &PodIdentity<'_>,
        network: NetConfList,
        netns: PathBuf,
        bin_dirs: &[PathBuf],
        port_mappings: Vec<PortMapping>,
    ) -> Result<Attachment> {
        let cni_path = bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        Ok(Attachment {
            pod_id: pod.id.to_string(),
            cni_args: cni_args(pod)?,
            network,
            ifname: IFNAME.to_string(),
            netns,
            cni_path,
            port_mappings,
            dns: DnsConfig::default(),
            result: None,
        })
    }

    fn bin_dirs(&self) -> Vec<PathBuf> {
        self.cni_path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    fn invocation(&self, command: Command) -> Invocation {
        // DEL must work after the pod's namespace is gone: plugins then skip what was in it.
        let netns = if command == Command::Del && !self.netns.exists() {
            String::new()
        } else {
            self.netns.display().to_string()
        };
        Invocation {
            command,
            container_id: self.pod_id.clone(),
            netns,
            ifname: self.ifname.clone(),
            args: self.cni_args.clone(),
            path: self.cni_path.clone(),
        }
    }

    /// `prevResult` on DEL and CHECK exists from CNI 0.4.0 on.
    fn passes_prev_result_on_del(&self) -> bool {
        parse_version(&self.network.cni_version).is_some_and(|v| v >= (0, 4, 0))
    }

    /// The stdin of one plugin: its own configuration with the list's name and version, the
    /// previous result, and the runtime config of the capabilities it declares.
    fn plugin_config(&self, plugin: &Map<String, Value>, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf.insert("name".into(), Value::String(self.network.name.clone()));
        conf.insert(
            "cniVersion".into(),
            Value::String(self.network.cni_version.clone()),
        );
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        let declares = |cap: &str| {
            plugin
                .get("capabilities")
                .and_then(|c| c.get(cap))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let mut rc = Map::new();
        if declares("portMappings") && !self.port_mappings.is_empty() {
            rc.insert(
                "portMappings".into(),
                serde_json::to_value(&self.port_mappings).expect("JSON serializes"),
            );
        }
        if declares("dns") && !self.dns.is_empty() {
            rc.insert(
                "dns".into(),
                serde_json::to_value(&self.dns).expect("JSON serializes"),
            );
        }
        if !rc.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(rc));
        }
        Value::Object(conf)
    }

    /// [`check_plugins`] for this attachment's network and plugin directories.
    pub fn check_plugins(&self) -> Result<()> {
        check_plugins(&self.network, &self.bin_dirs())
    }

    /// ADD through every plugin; on success `result` is set and the pod's IPs are returned. On
    /// failure the caller DELs (plugins that did part of their work undo it on DEL).
    pub async fn add(&mut self) -> Result<Vec<IpAddr>> {
        let dirs = self.bin_dirs();
        let inv = self.invocation(Command::Add);
        let mut prev: Option<Value> = None;
        for p in &self.network.plugins {
            let ty = NetConfList::plugin_type(p);
            let bin = binary(&self.network, ty, &dirs)?;
            let conf = self.plugin_config(p, prev.as_ref());
            match plugin::run(&bin, ty, &self.network.name, &inv, &conf).await? {
                Some(r) => prev = Some(r),
                None => {
                    return Err(NetError::Exec {
                        plugin: ty.to_string(),
                        command: "ADD",
                        pod: self.pod_id.clone(),
                        reason: "exited 0 without printing a result".into(),
                    })
                }
            }
        }
        let result = prev.unwrap_or(Value::Null);
        let ips = pod_ips(&result, &self.ifname);
        self.result = Some(result);
        Ok(ips)
    }

    /// DEL through every plugin in reverse order. Every plugin is asked even when one fails
    /// (to release as much as possible); the first failure is returned. DEL of what is already
    /// gone succeeds with the standard plugins, so this may be repeated.
    pub async fn del(&self) -> Result<()> {
        let dirs = self.bin_dirs();
        let inv = self.invocation(Command::Del);
        let prev = self
            .result
            .as_ref()
            .filter(|_| self.passes_prev_result_on_del());
        let mut first_err = None;
        for p in self.network.plugins.iter().rev() {
            let ty = NetConfList::plugin_type(p);
            let outcome = match binary(&self.network, ty, &dirs) {
                Ok(bin) => {
                    let conf = self.plugin_config(p, prev);
                    plugin::run(&bin, ty, &self.network.name, &inv, &conf)
                        .await
                        .map(|_| ())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                tracing::warn!(pod = %self.pod_id, plugin = ty, error = %e, "CNI DEL failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// CHECK through every plugin (CNI 0.4.0 and later, after a successful ADD): is the pod's
    /// network still as ADD made it? Ok(false) when the version has no CHECK.
    pub async fn check(&self) -> Result<bool> {
        let Some(result) = self.result.as_ref() else {
            return Ok(false);
        };
        if !self.passes_prev_result_on_del() || !Path::new(&self.netns).exists() {
            return Ok(false);
        }
        let dirs = self.bin_dirs();
        let inv = self.invocation(Command::Check);
        for p in &self.network.plugins {
            let ty = NetConfList::plugin_type(p);
            let bin = binary(&self.network, ty, &dirs)?;
            let conf = self.plugin_config(p, Some(result));
            plugin::run(&bin, ty, &self.network.name, &inv, &conf).await?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> NetConfList {
        super::super::config::parse(
            Path::new("/c/10-t.conflist"),
            br#"{"cniVersion":"1.0.0","name":"t","plugins":[
                {"type":"bridge","bridge":"b0"},
                {"type":"portmap","capabilities":{"portMappings":true,"dns":true}}]}"#,
        )
        .unwrap()
    }

    fn pod() -> PodIdentity<'static> {
        PodIdentity {
            id: "abc",
            name: "web",
            namespace: "default",
            uid: "u-1",
        }
    }

    #[test]
    fn cni_args_carry_the_kubernetes_keys() {
        assert_eq!(
            cni_args(&pod()).unwrap(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
        let bad = PodIdentity {
            name: "a;b=c",
            ..pod()
        };
        let err = cni_args(&bad).unwrap_err().to_string();
        assert!(err.contains("name") && err.contains("a;b=c"), "{err}");
    }

    #[test]
    fn plugin_config_gets_name_version_prev_result_and_declared_capabilities() {
        let ports = vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "127.0.0.1".into(),
        }];
        let att = Attachment::new(
            &pod(),
            list(),
            "/run/x/net".into(),
            &["/usr/lib/cni".into()],
            ports,
        )
        .unwrap();
        let mut att = att;
        att.dns = DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["svc.local".into()],
            options: vec!["ndots:5".into()],
        };
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let bridge = att.plugin_config(&att.network.plugins[0], None);
        assert_eq!(bridge["name"], "t");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("prevResult").is_none());
        assert!(
            bridge.get("runtimeConfig").is_none(),
            "bridge declared no capability"
        );
        let portmap = att.plugin_config(&att.network.plugins[1], Some(&prev));
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
        );
        assert_eq!(
            portmap["runtimeConfig"]["dns"],
            json!({"servers": ["10.0.0.10"], "searches": ["svc.local"], "options": ["ndots:5"]})
        );
    }

    #[test]
    fn attachment_round_trips_as_json() {
        let mut att = Attachment::new(
            &pod(),
            list(),
            "/n".into(),
            &["/a".into(), "/b".into()],
            vec![],
        )
        .unwrap();
        att.result = Some(json!({"ips": []}));
        let back: Attachment = serde_json::from_slice(&serde_json::to_vec(&att).unwrap()).unwrap();
        assert_eq!(back, att);
        assert_eq!(
            back.bin_dirs(),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }

    #[test]
    fn a_missing_plugin_is_named_with_the_dirs_searched() {
        let dir = tempfile::tempdir().unwrap();
        let att =
            Attachment::new(&pod(), list(), "/n".into(), &[dir.path().into()], vec![]).unwrap();
        let err = att.check_plugins().unwrap_err().to_string();
        assert!(
            err.contains("\"bridge\"") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_missing_ipam_plugin_is_found_before_add() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for bin in ["bridge", "portmap"] {
            let p = dir.path().join(bin);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let with_ipam = super::super::config::parse(
            Path::new("/c/10-t.conflist"),
            br#"{"cniVersion":"1.0.0","name":"t","plugins":[
                {"type":"bridge","bridge":"b0","ipam":{"type":"host-local"}},
                {"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        let att =
            Attachment::new(&pod(), list(), "/n".into(), &[dir.path().into()], vec![]).unwrap();
        att.check_plugins().unwrap();
        let att =
            Attachment::new(&pod(), with_ipam, "/n".into(), &[dir.path().into()], vec![]).unwrap();
        let err = att.check_plugins().unwrap_err().to_string();
        assert!(
            err.contains("\"host-local\"") && err.contains("\"t\""),
            "{err}"
        );
    }
}
