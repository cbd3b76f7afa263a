//! Credentials for a pull, from the fields of a CRI AuthConfig.
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

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
    fn debug_never_shows_secrets() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
        assert!(!format!("{:?}", Credentials::Bearer("secret".into())).contains("secret"));
    }
}
