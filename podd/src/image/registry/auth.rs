//! Credentials for a pull, from the fields of a CRI AuthConfig.
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

use super::hosts::{Endpoint, DOCKER_HUB_HOST};
use crate::image::reference::{valid_domain, DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN};

/// How a pull authenticates. oci-client sends Basic credentials as they are to a registry
/// that asks for Basic, and uses them to fetch a token when the registry answers with a
/// `WWW-Authenticate: Bearer realm=...,service=...` challenge.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A registry token, sent as `Authorization: Bearer`.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Credentials::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// The CRI AuthConfig fields, borrowed.
#[derive(Debug, Default, Clone, Copy)]
pub struct CriAuth<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub auth: &'a str,
    pub identity_token: &'a str,
    pub registry_token: &'a str,
}

impl Credentials {
    /// Picks the credentials a CRI AuthConfig carries, as containerd's CRI plugin does:
    /// a registry token wins; then username/password (or `auth`, base64 of `user:pass`);
    /// an identity token is a long-lived secret docker stores for `<token>`-style logins
    /// and is sent as the password of a Basic login (with the username given, else
    /// `<token>`), which is what token-accepting registries take. Errors name the field.
    pub fn from_cri(a: CriAuth<'_>) -> Result<Credentials, (&'static str, String)> {
        if !a.registry_token.is_empty() {
            return Ok(Credentials::Bearer(a.registry_token.to_string()));
        }
        if !a.identity_token.is_empty() {
            let username = if a.username.is_empty() {
                "<token>"
            } else {
                a.username
            };
            return Ok(Credentials::Basic {
                username: username.to_string(),
                password: a.identity_token.to_string(),
            });
        }
        if !a.username.is_empty() || !a.password.is_empty() {
            if a.username.is_empty() {
                return Err(("auth.username", "is required with a password".into()));
            }
            return Ok(Credentials::Basic {
                username: a.username.to_string(),
                password: a.password.to_string(),
            });
        }
        if !a.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(a.auth.trim())
                .map_err(|e| ("auth.auth", format!("is not base64: {e}")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| ("auth.auth", "does not decode to UTF-8 text".to_string()))?;
            let Some((user, pass)) = text.split_once(':').filter(|(u, _)| !u.is_empty()) else {
                return Err((
                    "auth.auth",
                    "must be base64 of \"username:password\"".to_string(),
                ));
            };
            return Ok(Credentials::Basic {
                username: user.to_string(),
                password: pass.to_string(),
            });
        }
        Ok(Credentials::Anonymous)
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credentials::Anonymous)
    }

    pub(crate) fn to_oci(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        }
    }
}

/// The credentials of a pull and the registry host they were given for. As containerd's
/// CRI plugin does, they go only to that host: CRI's `server_address` when the client set
/// it, else the registry the image reference names. Mirrors (unless `server_address`
/// names one) are spoken to anonymously, so a mirror never sees another registry's secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullAuth {
    creds: Credentials,
    /// The normalised `server_address`; `None`: the reference's own registry.
    server: Option<String>,
}

impl From<Credentials> for PullAuth {
    fn from(creds: Credentials) -> PullAuth {
        PullAuth {
            creds,
            server: None,
        }
    }
}

impl PullAuth {
    /// `server_address` as CRI clients send it: `host[:port]`, a URL
    /// (`https://index.docker.io/v1/`), or empty. Errors name the field.
    pub fn new(
        creds: Credentials,
        server_address: &str,
    ) -> Result<PullAuth, (&'static str, String)> {
        let server_address = server_address.trim();
        if server_address.is_empty() {
            return Ok(creds.into());
        }
        let host = normalize_host(server_address);
        if !valid_domain(&host) {
            return Err((
                "auth.server_address",
                format!("{server_address:?} is not a registry host[:port] or URL (e.g. \"registry.example:5000\" or \"https://index.docker.io/v1/\")"),
            ));
        }
        Ok(PullAuth {
            creds,
            server: Some(host),
        })
    }

    /// The credentials to send to `endpoint`: the pull's own when the endpoint is the host
    /// they were given for, none otherwise.
    pub(crate) fn for_endpoint(&self, endpoint: &Endpoint) -> Credentials {
        let matches = match &self.server {
            Some(server) => normalize_host(&endpoint.host) == *server,
            None => !endpoint.mirror,
        };
        if matches {
            self.creds.clone()
        } else {
            Credentials::Anonymous
        }
    }
}

/// `host[:port]` of a server address or endpoint host, lower case, with docker.io's
/// aliases (index.docker.io, registry-1.docker.io) folded into docker.io.
fn normalize_host(address: &str) -> String {
    let rest = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    let host = rest
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        LEGACY_DEFAULT_DOMAIN | DOCKER_HUB_HOST => DEFAULT_DOMAIN.to_string(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_auth_fields_pick_credentials() {
        let basic = |u: &str, p: &str| Credentials::Basic {
            username: u.into(),
            password: p.into(),
        };
        assert_eq!(
            Credentials::from_cri(CriAuth::default()).unwrap(),
            Credentials::Anonymous
        );
        assert_eq!(
            Credentials::from_cri(CriAuth {
                username: "u",
                password: "p",
                ..Default::default()
            })
            .unwrap(),
            basic("u", "p")
        );
        assert_eq!(
            Credentials::from_cri(CriAuth {
                auth: "dTpwOnE=",
                ..Default::default()
            })
            .unwrap(),
            basic("u", "p:q")
        );
        assert_eq!(
            Credentials::from_cri(CriAuth {
                username: "u",
                registry_token: "tok",
                ..Default::default()
            })
            .unwrap(),
            Credentials::Bearer("tok".into())
        );
        assert_eq!(
            Credentials::from_cri(CriAuth {
                identity_token: "id",
                ..Default::default()
            })
            .unwrap(),
            basic("<token>", "id")
        );
        let (field, _) = Credentials::from_cri(CriAuth {
            auth: "!!",
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(field, "auth.auth");
        let (field, _) = Credentials::from_cri(CriAuth {
            password: "p",
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(field, "auth.username");
    }

    #[test]
    fn credentials_go_only_to_the_host_they_were_given_for() {
        let creds = Credentials::Bearer("t".into());
        let ep = |host: &str, mirror: bool| Endpoint {
            host: host.into(),
            plain_http: false,
            skip_verify: false,
            mirror,
            http_fallback: false,
        };
        let no_server = PullAuth::new(creds.clone(), "").unwrap();
        assert_eq!(no_server.for_endpoint(&ep("reg.example", false)), creds);
        assert!(no_server
            .for_endpoint(&ep("mirror.example", true))
            .is_anonymous());
        let hub = PullAuth::new(creds.clone(), "https://index.docker.io/v1/").unwrap();
        assert_eq!(hub.for_endpoint(&ep("registry-1.docker.io", false)), creds);
        assert!(hub.for_endpoint(&ep("mirror.example", true)).is_anonymous());
        let mirror = PullAuth::new(creds.clone(), "Mirror.example:5000").unwrap();
        assert_eq!(mirror.for_endpoint(&ep("mirror.example:5000", true)), creds);
        assert!(mirror
            .for_endpoint(&ep("registry-1.docker.io", false))
            .is_anonymous());
        let (field, _) = PullAuth::new(creds, "https://").unwrap_err();
        assert_eq!(field, "auth.server_address");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
        assert!(!format!("{:?}", Credentials::Bearer("secret".into())).contains("secret"));
    }
}
