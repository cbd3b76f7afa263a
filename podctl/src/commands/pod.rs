//! `podctl pods`, `stopp`, `rmp`, `inspectp`

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{bail, Result};
use podd_proto::runtime::v1 as cri;
use serde::Serialize;

use super::each;
use crate::client::{Clients, RpcResultExt};
use crate::output::{
    ago, info_view, pod_state_short, print_structured, short_id, ContainerStatusView, Format,
    PodStatusView, PodView, Table,
};
use crate::run::{pod_volumes_dir, remove_volumes};
use crate::{resolve, InspectOpts, ListOpts};

#[derive(Serialize)]
struct PodsView {
    items: Vec<PodView>,
}

pub async fn pods(clients: &Clients, opts: &ListOpts) -> Result<u8> {
    let mut pods = resolve::list_pods(clients).await?;
    pods.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    if opts.quiet {
        for p in &pods {
            println!("{}", p.id);
        }
        return Ok(0);
    }
    if opts.output != Format::Table {
        let view = PodsView {
            items: pods.iter().map(PodView::from).collect(),
        };
        print_structured(opts.output, &view)?;
        return Ok(0);
    }
    let now = SystemTime::now();
    let mut t = Table::new(&[
        "POD ID",
        "CREATED",
        "STATE",
        "NAME",
        "NAMESPACE",
        "ATTEMPT",
        "IP",
    ]);
    for p in &pods {
        let m = p.metadata.clone().unwrap_or_default();
        t.push(vec![
            short_id(&p.id),
            ago(p.created_at, now),
            pod_state_short(p.state).into(),
            m.name,
            m.namespace,
            m.attempt.to_string(),
            pod_ips(clients, &p.id).await,
        ]);
    }
    print!("{}", t.render());
    Ok(0)
}

/// The pod's IPs, comma-separated ("" for none, or when the pod went away meanwhile).
async fn pod_ips(clients: &Clients, id: &str) -> String {
    let status = clients
        .runtime
        .clone()
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: false,
        })
        .await;
    let Some(net) = status.ok().and_then(|r| r.into_inner().status?.network) else {
        return String::new();
    };
    std::iter::once(net.ip)
        .chain(net.additional_ips.into_iter().map(|i| i.ip))
        .filter(|ip| !ip.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

async fn stop_pod(clients: &Clients, id: &str) -> Result<()> {
    clients
        .runtime
        .clone()
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .rpc("stop pod", id)?;
    Ok(())
}

pub async fn stopp(clients: &Clients, pods: &[String]) -> Result<u8> {
    each(pods, |q| async move {
        let pod = resolve::pod(clients, &q).await?;
        stop_pod(clients, &pod.id).await?;
        Ok(pod.id)
    })
    .await
}

/// Is `uid` safe to use as one directory name under the volumes root?
fn safe_component(uid: &str) -> bool {
    !uid.is_empty() && uid != "." && uid != ".." && !uid.contains('/')
}

pub async fn rmp(
    clients: &Clients,
    pods: &[String],
    force: bool,
    volumes_root: &Path,
) -> Result<u8> {
    each(pods, |q| async move {
        let pod = resolve::pod(clients, &q).await?;
        let name = pod.metadata.as_ref().map_or("", |m| m.name.as_str());
        if pod.state == cri::PodSandboxState::SandboxReady as i32 {
            if !force {
                bail!(
                    "remove pod {name} ({}): it is ready; stop it first (`podctl stopp {}`) or use -f",
                    short_id(&pod.id),
                    short_id(&pod.id)
                );
            }
            stop_pod(clients, &pod.id).await?;
        }
        clients
            .runtime
            .clone()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await
            .rpc("remove pod", &pod.id)?;
        if let Some(uid) = pod.metadata.as_ref().map(|m| m.uid.as_str()) {
            if safe_component(uid) {
                remove_volumes(&pod_volumes_dir(volumes_root, uid));
            }
        }
        Ok(pod.id)
    })
    .await
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodInspectView {
    status: Option<PodStatusView>,
    info: BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    containers_statuses: Vec<ContainerStatusView>,
}

pub async fn inspectp(clients: &Clients, query: &str, opts: &InspectOpts) -> Result<u8> {
    let pod = resolve::pod(clients, query).await?;
    let resp = clients
        .runtime
        .clone()
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: true,
        })
        .await
        .rpc("get status of pod", &pod.id)?;
    let view = PodInspectView {
        status: resp.status.as_ref().map(PodStatusView::from),
        info: info_view(&resp.info),
        containers_statuses: resp
            .containers_statuses
            .iter()
            .map(ContainerStatusView::from)
            .collect(),
    };
    print_structured(opts.output, &view)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn volume_dir_names_are_single_components() {
        assert!(super::safe_component("0b1c-uuid"));
        for bad in ["", ".", "..", "a/b", "/abs"] {
            assert!(!super::safe_component(bad), "{bad}");
        }
    }
}
