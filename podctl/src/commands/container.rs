//! `podctl ps`, `logs`, `exec`, `stop`, `rm`, `inspect`

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use podd_proto::runtime::v1 as cri;
use serde::Serialize;

use super::each;
use crate::client::{rpc_code, Clients, RpcResultExt};
use crate::logs::{read_all, write_lines};
use crate::output::{
    ago, container_state_short, info_view, print_structured, short_id, ContainerStatusView,
    ContainerView, Format, Table,
};
use crate::{resolve, InspectOpts, ListOpts};

/// How often `logs -f` looks for new lines and at the container's state.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

#[derive(Serialize)]
struct ContainersView {
    containers: Vec<ContainerView>,
}

pub async fn ps(clients: &Clients, all: bool, pod: Option<&str>, opts: &ListOpts) -> Result<u8> {
    let pod_id = match pod {
        Some(q) => resolve::pod(clients, q).await?.id,
        None => String::new(),
    };
    let filter = cri::ContainerFilter {
        pod_sandbox_id: pod_id,
        state: (!all).then_some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    let mut containers = resolve::list_containers(clients, Some(filter)).await?;
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if opts.quiet {
        for c in &containers {
            println!("{}", c.id);
        }
        return Ok(0);
    }
    if opts.output != Format::Table {
        let view = ContainersView {
            containers: containers.iter().map(ContainerView::from).collect(),
        };
        print_structured(opts.output, &view)?;
        return Ok(0);
    }
    let now = SystemTime::now();
    let mut t = Table::new(&[
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD ID",
    ]);
    for c in &containers {
        let m = c.metadata.clone().unwrap_or_default();
        let image = c.image.as_ref().map_or("", |i| i.image.as_str());
        let image = if image.starts_with("sha256:") {
            short_id(image)
        } else {
            image.to_string()
        };
        t.push(vec![
            short_id(&c.id),
            image,
            ago(c.created_at, now),
            container_state_short(c.state).into(),
            m.name,
            m.attempt.to_string(),
            short_id(&c.pod_sandbox_id),
        ]);
    }
    print!("{}", t.render());
    Ok(0)
}

async fn status(
    clients: &Clients,
    id: &str,
    verbose: bool,
) -> Result<cri::ContainerStatusResponse> {
    clients
        .runtime
        .clone()
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        })
        .await
        .rpc("get status of container", id)
}

/// Has the container exited (or gone)? Used to end `logs -f`.
async fn finished(clients: &Clients, id: &str) -> Result<bool> {
    match status(clients, id, false).await {
        Ok(r) => Ok(r.status.is_none_or(|s| {
            s.state == cri::ContainerState::ContainerExited as i32
                || s.state == cri::ContainerState::ContainerUnknown as i32
        })),
        Err(e) if rpc_code(&e) == Some(tonic::Code::NotFound) => Ok(true),
        Err(e) => Err(e),
    }
}

pub async fn logs(clients: &Clients, query: &str, follow: bool, tail: Option<usize>) -> Result<u8> {
    let c = resolve::container(clients, query).await?;
    let name = c
        .metadata
        .as_ref()
        .map_or("", |m| m.name.as_str())
        .to_string();
    let what = format!("logs of container {name} ({})", short_id(&c.id));
    let log_path = status(clients, &c.id, false)
        .await?
        .status
        .map(|s| s.log_path)
        .unwrap_or_default();
    if log_path.is_empty() {
        bail!("{what}: podd reports no log path");
    }
    let path = Path::new(&log_path);
    if !path.is_absolute() {
        bail!("{what}: podd reports a relative log path {log_path:?}; podctl cannot find it");
    }
    let mut file = loop {
        match File::open(path) {
            Ok(f) => break f,
            // A container that has not started yet may have no log yet.
            Err(e) if follow && e.kind() == io::ErrorKind::NotFound => {
                if finished(clients, &c.id).await? {
                    return Err(e).with_context(|| format!("{what}: open {log_path}"));
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            Err(e) => return Err(e).with_context(|| format!("{what}: open {log_path}")),
        }
    };
    let (mut stdout, mut stderr) = (io::stdout().lock(), io::stderr().lock());
    let (mut reader, lines) =
        read_all(&mut file, tail, !follow).with_context(|| format!("{what}: read {log_path}"))?;
    write_lines(&lines, &mut stdout, &mut stderr)?;
    if !follow {
        return Ok(0);
    }
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    loop {
        // Look at the state before reading, so that everything written
        // before the container exited is read after it is seen exited.
        let done = finished(clients, &c.id).await?;
        buf.clear();
        file.read_to_end(&mut buf)
            .with_context(|| format!("{what}: read {log_path}"))?;
        reader.feed(&buf, &mut lines);
        if done {
            reader.finish(&mut lines);
        }
        write_lines(&lines, &mut stdout, &mut stderr)?;
        lines.clear();
        if done {
            return Ok(0);
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// The process exit code for a command's exit code.
fn exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(255)
}

pub async fn exec(clients: &Clients, query: &str, cmd: &[String], timeout: i64) -> Result<u8> {
    let c = resolve::container(clients, query).await?;
    let resp = clients
        .runtime
        .clone()
        .exec_sync(cri::ExecSyncRequest {
            container_id: c.id.clone(),
            cmd: cmd.to_vec(),
            timeout,
        })
        .await
        .rpc("exec in container", &c.id)?;
    let mut out = io::stdout().lock();
    out.write_all(&resp.stdout)?;
    out.flush()?;
    let mut err = io::stderr().lock();
    err.write_all(&resp.stderr)?;
    err.flush()?;
    Ok(exit_code(resp.exit_code))
}

async fn stop_container(clients: &Clients, id: &str, timeout: i64) -> Result<()> {
    clients
        .runtime
        .clone()
        .stop_container(cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout,
        })
        .await
        .rpc("stop container", id)?;
    Ok(())
}

pub async fn stop(clients: &Clients, containers: &[String], timeout: i64) -> Result<u8> {
    each(containers, |q| async move {
        let c = resolve::container(clients, &q).await?;
        stop_container(clients, &c.id, timeout).await?;
        Ok(c.id)
    })
    .await
}

pub async fn rm(clients: &Clients, containers: &[String], force: bool) -> Result<u8> {
    each(containers, |q| async move {
        let c = resolve::container(clients, &q).await?;
        if c.state == cri::ContainerState::ContainerRunning as i32 {
            if !force {
                let name = c.metadata.as_ref().map_or("", |m| m.name.as_str());
                bail!(
                    "remove container {name} ({}): it is running; stop it first or use -f",
                    short_id(&c.id)
                );
            }
            stop_container(clients, &c.id, 0).await?;
        }
        clients
            .runtime
            .clone()
            .remove_container(cri::RemoveContainerRequest {
                container_id: c.id.clone(),
            })
            .await
            .rpc("remove container", &c.id)?;
        Ok(c.id)
    })
    .await
}

#[derive(Serialize)]
struct ContainerInspectView {
    status: Option<ContainerStatusView>,
    info: BTreeMap<String, serde_json::Value>,
}

pub async fn inspect(clients: &Clients, query: &str, opts: &InspectOpts) -> Result<u8> {
    let c = resolve::container(clients, query).await?;
    let resp = status(clients, &c.id, true).await?;
    let view = ContainerInspectView {
        status: resp.status.as_ref().map(ContainerStatusView::from),
        info: info_view(&resp.info),
    };
    print_structured(opts.output, &view)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_codes() {
        assert_eq!(super::exit_code(0), 0);
        assert_eq!(super::exit_code(137), 137);
        assert_eq!(super::exit_code(-1), 255);
        assert_eq!(super::exit_code(300), 255);
    }
}
