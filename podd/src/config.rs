//! The podd config file (TOML, `--config`, default /etc/podd/podd.toml). One field per
//! section; each section's type lives in the module that uses it.
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole config file. Unknown sections and keys are errors, so a typo is not ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[registries."HOST"]`: mirrors, plain HTTP and TLS verification per registry host.
    #[serde(default)]
    pub registries: crate::image::registry::Registries,
    /// `[cni]`: plugin and configuration directories, the default network.
    #[serde(default)]
    pub cni: crate::net::CniConfig,
}

/// The default config path; a missing file there means "all defaults".
pub const DEFAULT_PATH: &str = "/etc/podd/podd.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source} (create it, or pass an existing file with --config)", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {}: at key {key}: {message} (fix the file and start podd again)", path.display())]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads `path`. When `explicit` is false (the default path), a missing file gives the
    /// default config; an explicit path that is missing is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses config text; errors name `path`, the line and column, and the key.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            key: "(syntax)".into(),
            message: e.to_string().trim_end().to_string(),
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Parse {
                path: path.to_path_buf(),
                key: if key.is_empty() || key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: e.into_inner().to_string().trim_end().to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_default_file_is_the_default_config_but_an_explicit_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("podd.toml");
        assert!(Config::load(&missing, false).is_ok());
        let err = Config::load(&missing, true).unwrap_err().to_string();
        assert!(err.contains("podd.toml"), "{err}");
    }

    #[test]
    fn registries_section_parses() {
        let c = Config::parse(
            r#"
[registries."registry.k8s.io"]
mirrors = ["http://127.0.0.1:5000"]
plain_http = false
skip_verify = false
"#,
            Path::new("/etc/podd/podd.toml"),
        )
        .unwrap();
        let eps = c.registries.endpoints("registry.k8s.io");
        assert_eq!(eps[0].url(), "http://127.0.0.1:5000");
        assert_eq!(eps[1].url(), "https://registry.k8s.io");
    }

    #[test]
    fn cni_section_overrides_defaults_and_typos_are_refused() {
        let p = Path::new("/etc/podd/config.toml");
        let c = Config::parse(
            "[cni]\nbin_dirs = [\"/x\"]\nsubnet = \"10.210.0.0/16\"\ndefault_network = false\n",
            p,
        )
        .unwrap();
        assert_eq!(c.cni.bin_dirs, vec![PathBuf::from("/x")]);
        assert_eq!(c.cni.conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(c.cni.subnet.to_string(), "10.210.0.0/16");
        assert!(!c.cni.default_network);
        assert_eq!(
            Config::parse("", p).unwrap().cni,
            crate::net::CniConfig::default()
        );
        let err = Config::parse("[cni]\nconfdir = \"/x\"\n", p).unwrap_err();
        assert!(err.to_string().contains("cni.confdir"), "{err}");
        let err = Config::parse("[cni]\nsubnet = \"10.1.2.3\"\n", p).unwrap_err();
        assert!(err.to_string().contains("/etc/podd/config.toml"), "{err}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let path = Path::new("/tmp/x/podd.toml");
        for (text, key, line) in [
            ("[registrys]\n", "registrys", "line 1"),
            (
                "\n[registries.\"a.io\"]\nmirrors = [\"ftp://m\"]\n",
                "registries.a.io.mirrors",
                "line 3",
            ),
            (
                "[registries.\"a.io\"]\nplain_http = \"yes\"\n",
                "registries.a.io.plain_http",
                "line 2",
            ),
            ("[registries\n", "(syntax)", "line 1"),
        ] {
            let err = Config::parse(text, path).unwrap_err().to_string();
            assert!(err.contains("/tmp/x/podd.toml"), "{err}");
            assert!(err.contains(key), "{key}: {err}");
            assert!(err.contains(line), "{line}: {err}");
        }
    }
}
