//! Turning what a person types (an id, a unique id prefix, a name, or
//! `QUALIFIER/NAME`) into a pod or container id, by listing, as crictl does.

use std::collections::HashMap;

use anyhow::{bail, Result};
use podd_proto::runtime::v1 as cri;

use crate::client::{Clients, RpcResultExt};
use crate::output::short_id;

/// Something that can be named: its id, its name, and the name that
/// qualifies it (a pod's namespace, a container's pod name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    pub qualifier: String,
}

/// Picks the one candidate `query` means. An exact id always wins; otherwise
/// `QUALIFIER/NAME` matches by both names, and anything else matches an id
/// prefix or a name. No match or more than one is an error that says so.
pub fn pick<'a>(kind: &str, query: &str, candidates: &'a [Candidate]) -> Result<&'a Candidate> {
    if query.is_empty() {
        bail!("empty {kind} id or name");
    }
    if let Some(c) = candidates.iter().find(|c| c.id == query) {
        return Ok(c);
    }
    let matches: Vec<&Candidate> = match query.split_once('/') {
        Some((q, n)) => candidates
            .iter()
            .filter(|c| c.qualifier == q && c.name == n)
            .collect(),
        None => candidates
            .iter()
            .filter(|c| c.id.starts_with(query) || c.name == query)
            .collect(),
    };
    match matches.as_slice() {
        [] => bail!("no {kind} matches {query:?} (by id, id prefix or name)"),
        [one] => Ok(one),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|c| format!("{} ({}/{})", short_id(&c.id), c.qualifier, c.name))
                .collect();
            // The qualified form helps only when it tells the matches apart.
            let qualified: std::collections::HashSet<(&str, &str)> = many
                .iter()
                .map(|c| (c.qualifier.as_str(), c.name.as_str()))
                .collect();
            let or_qualified = match (qualified.len() == many.len(), kind) {
                (false, _) => "",
                (true, "container") => " or POD/CONTAINER",
                (true, _) => " or NAMESPACE/NAME",
            };
            bail!(
                "{kind} {query:?} is ambiguous: it matches {}; give a longer id{or_qualified}",
                list.join(", "),
            )
        }
    }
}

pub async fn list_pods(clients: &Clients) -> Result<Vec<cri::PodSandbox>> {
    Ok(clients
        .runtime
        .clone()
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .rpc("list", "pods")?
        .items)
}

pub async fn list_containers(
    clients: &Clients,
    filter: Option<cri::ContainerFilter>,
) -> Result<Vec<cri::Container>> {
    Ok(clients
        .runtime
        .clone()
        .list_containers(cri::ListContainersRequest { filter })
        .await
        .rpc("list", "containers")?
        .containers)
}

pub fn pod_candidates(pods: &[cri::PodSandbox]) -> Vec<Candidate> {
    pods.iter()
        .map(|p| {
            let m = p.metadata.clone().unwrap_or_default();
            Candidate {
                id: p.id.clone(),
                name: m.name,
                qualifier: m.namespace,
            }
        })
        .collect()
}

pub fn container_candidates(
    containers: &[cri::Container],
    pods: &[cri::PodSandbox],
) -> Vec<Candidate> {
    let pod_names: HashMap<&str, &str> = pods
        .iter()
        .map(|p| {
            (
                p.id.as_str(),
                p.metadata.as_ref().map_or("", |m| m.name.as_str()),
            )
        })
        .collect();
    containers
        .iter()
        .map(|c| Candidate {
            id: c.id.clone(),
            name: c.metadata.as_ref().map_or("", |m| &m.name).to_string(),
            qualifier: pod_names
                .get(c.pod_sandbox_id.as_str())
                .copied()
                .or_else(|| c.labels.get(crate::run::LABEL_POD_NAME).map(String::as_str))
                .unwrap_or("")
                .to_string(),
        })
        .collect()
}

/// The pod `query` names.
pub async fn pod(clients: &Clients, query: &str) -> Result<cri::PodSandbox> {
    let pods = list_pods(clients).await?;
    let id = pick("pod", query, &pod_candidates(&pods))?.id.clone();
    Ok(pods
        .into_iter()
        .find(|p| p.id == id)
        .expect("picked from this list"))
}

/// The container `query` names (any state).
pub async fn container(clients: &Clients, query: &str) -> Result<cri::Container> {
    let containers = list_containers(clients, None).await?;
    let pods = if query.contains('/') {
        list_pods(clients).await?
    } else {
        Vec::new()
    };
    let id = pick(
        "container",
        query,
        &container_candidates(&containers, &pods),
    )?
    .id
    .clone();
    Ok(containers
        .into_iter()
        .find(|c| c.id == id)
        .expect("picked from this list"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, name: &str, qualifier: &str) -> Candidate {
        Candidate {
            id: id.into(),
            name: name.into(),
            qualifier: qualifier.into(),
        }
    }

    fn set() -> Vec<Candidate> {
        vec![
            c("abc123aaaa", "writer", "demo"),
            c("abc456bbbb", "reader", "demo"),
            c("def789cccc", "reader", "other"),
            c("fed000dddd", "abc", "other"),
        ]
    }

    #[test]
    fn exact_id_and_unique_prefix() {
        let s = set();
        assert_eq!(pick("container", "abc123aaaa", &s).unwrap().name, "writer");
        assert_eq!(pick("container", "abc1", &s).unwrap().name, "writer");
        assert_eq!(pick("container", "d", &s).unwrap().qualifier, "other");
    }

    #[test]
    fn by_name_and_qualified_name() {
        let s = set();
        assert_eq!(pick("container", "writer", &s).unwrap().id, "abc123aaaa");
        assert_eq!(
            pick("container", "other/reader", &s).unwrap().id,
            "def789cccc"
        );
        assert_eq!(
            pick("container", "demo/reader", &s).unwrap().id,
            "abc456bbbb"
        );
    }

    #[test]
    fn ambiguous_prefix_or_name_is_an_error() {
        let s = set();
        assert_eq!(pick("container", "abc4", &s).unwrap().id, "abc456bbbb");
        let err = pick("container", "abc", &s).unwrap_err().to_string();
        assert_eq!(
            err,
            "container \"abc\" is ambiguous: it matches abc123aaaa (demo/writer), \
             abc456bbbb (demo/reader), fed000dddd (other/abc); give a longer id or POD/CONTAINER"
        );
        let err = pick("container", "reader", &s).unwrap_err().to_string();
        assert!(
            err.contains("abc456bbbb (demo/reader), def789cccc (other/reader)"),
            "{err}"
        );
    }

    #[test]
    fn twins_are_told_apart_only_by_id() {
        let twin = |id: &str| Candidate {
            id: id.into(),
            name: "ipc-demo".into(),
            qualifier: "default".into(),
        };
        let s = [twin("aaa111"), twin("bbb222")];
        for q in ["ipc-demo", "default/ipc-demo"] {
            let err = pick("pod", q, &s).unwrap_err().to_string();
            assert!(err.ends_with("give a longer id"), "{err}");
        }
    }

    #[test]
    fn no_match() {
        let err = pick("pod", "zzz", &set()).unwrap_err().to_string();
        assert_eq!(err, "no pod matches \"zzz\" (by id, id prefix or name)");
        assert!(pick("pod", "", &set()).is_err());
        assert!(pick("pod", "demo/nope", &set()).is_err());
    }

    #[test]
    fn container_qualifier_is_its_pod_name() {
        let pods = vec![cri::PodSandbox {
            id: "p1".into(),
            metadata: Some(cri::PodSandboxMetadata {
                name: "demo".into(),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let containers = vec![
            cri::Container {
                id: "c1".into(),
                pod_sandbox_id: "p1".into(),
                metadata: Some(cri::ContainerMetadata {
                    name: "a".into(),
                    attempt: 0,
                }),
                ..Default::default()
            },
            cri::Container {
                id: "c2".into(),
                pod_sandbox_id: "gone".into(),
                labels: [("io.kubernetes.pod.name".to_string(), "old".to_string())].into(),
                ..Default::default()
            },
        ];
        let cands = container_candidates(&containers, &pods);
        assert_eq!(cands[0], c("c1", "a", "demo"));
        assert_eq!(cands[1], c("c2", "", "old"));
    }
}
