//! podd's config file (TOML, `--config`): one section per subsystem, each section's type in the
//! module that uses it. Unknown keys are refused, so a typo is an error rather than ignored.
//! Command-line flags override what the file says.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::net::CniConfig;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[cni]`: plugin and configuration directories, the default network.
    pub cni: CniConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_section_overrides_defaults_and_typos_are_refused() {
        let p = Path::new("/etc/podd/config.toml");
        let c = Config::parse(
            p,
            "[cni]\nbin_dirs = [\"/x\"]\nsubnet = \"10.210.0.0/16\"\ndefault_network = false\n",
        )
        .unwrap();
        assert_eq!(c.cni.bin_dirs, vec![PathBuf::from("/x")]);
        assert_eq!(c.cni.conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(c.cni.subnet.to_string(), "10.210.0.0/16");
        assert!(!c.cni.default_network);
        assert_eq!(Config::parse(p, "").unwrap(), Config::default());
        let err = Config::parse(p, "[cni]\nconfdir = \"/x\"\n").unwrap_err();
        assert!(err.to_string().contains("confdir"), "{err}");
        let err = Config::parse(p, "[cni]\nsubnet = \"10.1.2.3\"\n").unwrap_err();
        assert!(err.to_string().contains("/etc/podd/config.toml"), "{err}");
    }
}
