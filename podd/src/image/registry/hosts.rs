//! Per-registry-host configuration (`[registries."HOST"]` in podd.toml) and the endpoints
//! a pull tries for a host: its mirrors in order, then the host itself, as containerd's
//! hosts.toml does it.
use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::image::reference::{valid_domain, DEFAULT_DOMAIN};

/// docker.io is served from this host (what docker and containerd talk to).
pub(crate) const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// The `[registries]` table: host (as in image references, `host[:port]`) -> settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Registries(BTreeMap<Host, HostConfig>);

/// A registry host key, checked when the config is read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct Host(String);

impl TryFrom<String> for Host {
    type Error = String;
    fn try_from(s: String) -> Result<Host, String> {
        if valid_domain(&s) {
            Ok(Host(s))
        } else {
            Err(format!(
                "registry host {s:?} is not a host[:port] as in image references (e.g. \"registry.k8s.io\" or \"127.0.0.1:5000\")"
            ))
        }
    }
}

/// Settings of one registry host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Tried in order before the host itself.
    #[serde(default)]
    mirrors: Vec<Mirror>,
    /// Talk plain HTTP to the host itself. Unset: HTTPS, and for a loopback host plain
    /// HTTP when the HTTPS connection cannot be made.
    #[serde(default)]
    plain_http: Option<bool>,
    /// Accept any TLS certificate from the host and its https mirrors.
    #[serde(default)]
    skip_verify: bool,
}

/// A mirror endpoint: `http://host[:port]` or `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
struct Mirror {
    plain_http: bool,
    host: String,
}

impl TryFrom<String> for Mirror {
    type Error = String;
    fn try_from(s: String) -> Result<Mirror, String> {
        let (plain_http, rest) = if let Some(r) = s.strip_prefix("http://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (false, r)
        } else {
            return Err(format!(
                "mirror {s:?} must start with http:// or https:// (e.g. \"http://127.0.0.1:5000\")"
            ));
        };
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if !valid_domain(host) {
            return Err(format!(
                "mirror {s:?} must be scheme://host[:port] with no path (e.g. \"http://127.0.0.1:5000\")"
            ));
        }
        Ok(Mirror {
            plain_http,
            host: host.to_string(),
        })
    }
}

/// One place a pull may fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to send requests to.
    pub host: String,
    pub plain_http: bool,
    pub skip_verify: bool,
    /// A mirror (a failure falls through to the next endpoint) rather than the host itself.
    pub mirror: bool,
    /// HTTPS, but plain HTTP when the TLS connection cannot be made: a loopback host with no
    /// `plain_http` configured (what docker and containerd do for local registries).
    pub http_fallback: bool,
}

impl Endpoint {
    /// `scheme://host[:port]`, for messages and logs.
    pub fn url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.host)
    }

    /// The same endpoint over plain HTTP, without a further fallback.
    pub fn over_plain_http(&self) -> Endpoint {
        Endpoint {
            plain_http: true,
            skip_verify: false,
            http_fallback: false,
            ..self.clone()
        }
    }
}

impl Registries {
    /// The endpoints to try for images of `domain` (the reference's registry host).
    pub fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let host_cfg = self.0.get(&Host(domain.to_string()));
        let skip_verify = host_cfg.is_some_and(|c| c.skip_verify);
        let mut out: Vec<Endpoint> = host_cfg
            .map(|c| {
                c.mirrors
                    .iter()
                    .map(|m| Endpoint {
                        host: m.host.clone(),
                        plain_http: m.plain_http,
                        skip_verify: skip_verify && !m.plain_http,
                        mirror: true,
                        http_fallback: false,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let configured = host_cfg.and_then(|c| c.plain_http);
        out.push(Endpoint {
            host: if domain == DEFAULT_DOMAIN {
                DOCKER_HUB_HOST.to_string()
            } else {
                domain.to_string()
            },
            plain_http: configured.unwrap_or(false),
            skip_verify,
            mirror: false,
            http_fallback: configured.is_none() && is_loopback(domain),
        });
        out
    }
}

/// `localhost`, `127.0.0.0/8` and `[::1]`, with or without a port. Without configuration
/// these are tried over HTTPS first and over plain HTTP when the TLS connection cannot be
/// made, as docker and containerd do: a local registry usually speaks plain HTTP, but one
/// set up with TLS is used with it.
pub fn is_loopback(domain: &str) -> bool {
    let host = if let Some(rest) = domain.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        domain.rsplit_once(':').map_or(domain, |(h, _)| h)
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Registries, toml::de::Error> {
        #[derive(Deserialize)]
        struct Wrap {
            registries: Registries,
        }
        toml::from_str::<Wrap>(text).map(|w| w.registries)
    }

    #[test]
    fn mirrors_come_first_then_the_host() {
        let r = parse(
            r#"
            [registries."registry.k8s.io"]
            mirrors = ["http://127.0.0.1:5000", "https://mirror.example:8443/"]
            skip_verify = true
            "#,
        )
        .unwrap();
        let eps = r.endpoints("registry.k8s.io");
        let urls: Vec<String> = eps.iter().map(Endpoint::url).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:5000",
                "https://mirror.example:8443",
                "https://registry.k8s.io"
            ]
        );
        assert_eq!(
            eps.iter().map(|e| e.skip_verify).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert_eq!(
            eps.iter().map(|e| e.mirror).collect::<Vec<_>>(),
            [true, true, false]
        );
    }

    #[test]
    fn loopback_hosts_fall_back_to_plain_http_unless_configured() {
        let r = parse(
            r#"
            [registries."localhost:5001"]
            plain_http = false
            [registries."reg.example"]
            plain_http = true
            "#,
        )
        .unwrap();
        let how = |host: &str| {
            let ep = &r.endpoints(host)[0];
            (ep.plain_http, ep.http_fallback)
        };
        // HTTPS first, plain HTTP when that cannot connect.
        assert_eq!(how("127.0.0.1:5000"), (false, true));
        assert_eq!(how("localhost"), (false, true));
        assert_eq!(how("[::1]:5000"), (false, true));
        assert_eq!(how("127.1.2.3"), (false, true));
        // Configured either way: exactly that.
        assert_eq!(how("localhost:5001"), (false, false));
        assert_eq!(how("reg.example"), (true, false));
        // Not loopback: HTTPS only.
        assert_eq!(how("quay.io"), (false, false));
        assert_eq!(how("127.0.0.1.example"), (false, false));
        let plain = r.endpoints("127.0.0.1:5000")[0].over_plain_http();
        assert_eq!(plain.url(), "http://127.0.0.1:5000");
        assert!(!plain.http_fallback);
        assert_eq!(r.endpoints("docker.io")[0].host, "registry-1.docker.io");
    }

    #[test]
    fn bad_mirrors_hosts_and_keys_are_refused() {
        for (text, needle) in [
            (
                "[registries.\"a.io\"]\nmirrors = [\"ftp://x\"]\n",
                "http:// or https://",
            ),
            (
                "[registries.\"a.io\"]\nmirrors = [\"http://x/path\"]\n",
                "no path",
            ),
            (
                "[registries.\"a.io\"]\nmirror = []\n",
                "unknown field `mirror`",
            ),
            ("[registries.\"bad host\"]\n", "not a host[:port]"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.contains("line"), "{text}: {err}");
        }
    }
}
