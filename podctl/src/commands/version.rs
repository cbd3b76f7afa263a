//! `podctl version`

use anyhow::Result;
use podd_proto::runtime::v1 as cri;

use crate::client::{Clients, RpcResultExt};

pub async fn version(clients: &Clients) -> Result<u8> {
    let v = clients
        .runtime
        .clone()
        .version(cri::VersionRequest {
            version: podd_proto::CRI_VERSION.to_string(),
        })
        .await
        .rpc("get version of", "podd")?;
    println!("Version:  {}", v.version);
    println!("RuntimeName:  {}", v.runtime_name);
    println!("RuntimeVersion:  {}", v.runtime_version);
    println!("RuntimeApiVersion:  {}", v.runtime_api_version);
    println!("PodctlVersion:  {}", env!("CARGO_PKG_VERSION"));
    Ok(0)
}
