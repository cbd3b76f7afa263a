//! `podctl run POD.yaml`

use std::path::Path;

use anyhow::{Context, Result};

use crate::client::Clients;
use crate::manifest::{self, Pod};

/// Reads and validates the manifest; the errors name file, line and field.
pub fn load(path: &Path) -> Result<Pod> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let file = path.display().to_string();
    let pod = manifest::load(&file, &text)?;
    for p in &pod.ignored {
        eprintln!("podctl: warning: {}", p.in_file(&file));
    }
    Ok(pod)
}

pub async fn run(clients: &Clients, pod: &Pod, volumes_root: &Path) -> Result<u8> {
    let id = crate::run::run(clients, pod, volumes_root).await?;
    println!("{id}");
    Ok(0)
}
