//! Pulling images through podd: the streaming `podd.v1 Podd/PullImage` with
//! progress, falling back to the CRI's unary PullImage when podd is older
//! and does not serve it; credentials; and `podctl run`'s pull policy.

mod policy;
mod progress;

use std::io::Read;

use anyhow::{bail, Context, Result};
use podd_proto::podd::v1 as podd;
use podd_proto::runtime::v1 as cri;

use crate::client::{Clients, RpcError, RpcResultExt};
use crate::manifest::Pod;

pub use policy::PullPolicy;
pub use progress::Progress;

/// Registry credentials for the CRI AuthConfig, from `--creds USER:PASS`
/// or `--username USER` with the password read from `stdin`. The password
/// is never printed, not even in errors.
pub fn auth_config(
    creds: Option<&str>,
    username: Option<&str>,
    password_stdin: bool,
    stdin: &mut dyn Read,
) -> Result<Option<cri::AuthConfig>> {
    let (username, password) = match (creds, username) {
        (Some(_), Some(_)) => bail!("give either --creds or --username, not both"),
        (Some(creds), None) => match creds.split_once(':') {
            Some((user, pass)) => (user.to_string(), pass.to_string()),
            None => bail!(
                "--creds needs USER:PASS; to keep the password off the command line, \
                 use --username USER --password-stdin"
            ),
        },
        (None, Some(user)) => {
            if !password_stdin {
                bail!("--username needs --password-stdin (the password is read from stdin)");
            }
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("read the registry password from stdin")?;
            // One trailing newline is the line end of `echo` or a file, not
            // part of the password (as `docker login --password-stdin`).
            let pass = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            (user.to_string(), pass.to_string())
        }
        (None, None) => {
            if password_stdin {
                bail!("--password-stdin needs --username USER");
            }
            return Ok(None);
        }
    };
    if username.is_empty() {
        bail!("the registry user name is empty; give --creds USER:PASS or --username USER");
    }
    if password.is_empty() {
        bail!("the registry password for user {username} is empty");
    }
    Ok(Some(cri::AuthConfig {
        username,
        password,
        ..Default::default()
    }))
}

/// What a pull returned.
#[derive(Debug, PartialEq, Eq)]
pub struct Pulled {
    /// The image id, as CRI `PullImageResponse.image_ref`.
    pub image_ref: String,
    /// False when podd did not stream progress (an older podd, through the
    /// CRI PullImage).
    pub streamed: bool,
}

/// Pulls `reference` through podd, showing progress on `progress`.
pub async fn pull(
    clients: &Clients,
    reference: &str,
    auth: Option<cri::AuthConfig>,
    progress: &mut Progress,
) -> Result<Pulled> {
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: reference.to_string(),
            ..Default::default()
        }),
        auth,
        sandbox_config: None,
    };
    let failed = |status| -> anyhow::Error {
        RpcError {
            step: "pull image".into(),
            object: reference.to_string(),
            status,
        }
        .into()
    };
    let mut stream = match clients
        .podd
        .clone()
        .pull_image(podd::PullImageRequest {
            request: Some(request.clone()),
        })
        .await
    {
        Ok(resp) => resp.into_inner(),
        Err(s) if s.code() == tonic::Code::Unimplemented => {
            return unary_pull(clients, reference, request, progress).await;
        }
        Err(s) => {
            progress.abandon();
            return Err(failed(s));
        }
    };
    let mut seen_any = false;
    loop {
        match stream.message().await {
            Ok(Some(msg)) if msg.done => {
                progress.finish();
                if msg.image_ref.is_empty() {
                    bail!("pull image {reference}: podd said the pull was done but named no image id; look at podd's log");
                }
                return Ok(Pulled {
                    image_ref: msg.image_ref,
                    streamed: true,
                });
            }
            Ok(Some(msg)) => {
                seen_any = true;
                progress.update(&msg);
            }
            Ok(None) => {
                progress.abandon();
                bail!("pull image {reference}: podd ended the progress stream before the pull was done; try again, and look at podd's log if it recurs");
            }
            // Some servers answer an unknown method only once the stream is read.
            Err(s) if s.code() == tonic::Code::Unimplemented && !seen_any => {
                return unary_pull(clients, reference, request, progress).await;
            }
            Err(s) => {
                progress.abandon();
                return Err(failed(s));
            }
        }
    }
}

/// The CRI PullImage: no progress, one answer when the pull is over (a
/// terminal shows the spinner until then, and nothing after).
async fn unary_pull(
    clients: &Clients,
    reference: &str,
    request: cri::PullImageRequest,
    progress: &mut Progress,
) -> Result<Pulled> {
    let resp = clients.image.clone().pull_image(request).await;
    progress.finish();
    let resp = resp.rpc("pull image", reference)?;
    Ok(Pulled {
        image_ref: resp.image_ref,
        streamed: false,
    })
}

/// Is `image` in podd? (ImageStatus answers no image rather than an error.)
pub async fn image_present(clients: &Clients, image: &str) -> Result<bool> {
    let status = clients
        .image
        .clone()
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .rpc("look up image", image)?;
    Ok(status.image.is_some())
}

/// One image a pod uses, the containers that use it, and the policy that
/// decides: the most eager of theirs (a kubelet pulling for one container
/// makes the image there for the others).
#[derive(Debug, PartialEq, Eq)]
pub struct ImageUse {
    pub image: String,
    pub containers: Vec<String>,
    pub policy: PullPolicy,
}

/// The images of `pod`, in container order, each once.
pub fn image_uses(pod: &Pod) -> Vec<ImageUse> {
    let mut uses: Vec<ImageUse> = Vec::new();
    for c in &pod.spec.containers {
        let image = c.image.clone().unwrap_or_default();
        let policy = PullPolicy::effective(c.image_pull_policy, &image);
        match uses.iter_mut().find(|u| u.image == image) {
            Some(u) => {
                u.containers.push(c.name.clone());
                u.policy = eager(u.policy, policy);
            }
            None => uses.push(ImageUse {
                image,
                containers: vec![c.name.clone()],
                policy,
            }),
        }
    }
    uses
}

fn eager(a: PullPolicy, b: PullPolicy) -> PullPolicy {
    use PullPolicy::*;
    match (a, b) {
        (Always, _) | (_, Always) => Always,
        (IfNotPresent, _) | (_, IfNotPresent) => IfNotPresent,
        (Never, Never) => Never,
    }
}

/// Before `podctl run` creates anything: every image the pod needs is in
/// podd, pulled as its pull policy says, with progress shown on what
/// `progress` makes for each reference. A missing image whose policy is
/// Never fails before any pull.
pub async fn ensure_images(
    clients: &Clients,
    pod: &Pod,
    progress: impl Fn(&str) -> Progress,
) -> Result<()> {
    let mut to_pull = Vec::new();
    let mut missing = Vec::new();
    for u in image_uses(pod) {
        let needed = match u.policy {
            PullPolicy::Always => true,
            PullPolicy::IfNotPresent | PullPolicy::Never => {
                !image_present(clients, &u.image).await?
            }
        };
        match (needed, u.policy) {
            (false, _) => {}
            (true, PullPolicy::Never) => missing.push(u),
            (true, _) => to_pull.push(u),
        }
    }
    if !missing.is_empty() {
        let lines: Vec<String> = missing
            .iter()
            .map(|u| {
                format!(
                    "image {} (container {}) is not in podd and its imagePullPolicy is Never; \
                     pull it with `podctl pull {}` or import it with `podctl image import`",
                    u.image,
                    u.containers.join(", "),
                    u.image
                )
            })
            .collect();
        bail!("{}", lines.join("\n"));
    }
    for u in to_pull {
        let pulled = match pull(clients, &u.image, None, &mut progress(&u.image)).await {
            Ok(p) => p,
            Err(e) => {
                let e = e.context(format!("container {}", u.containers.join(", ")));
                // Always (said, or the default for :latest) pulls even what podd holds, which
                // surprises someone who has just imported the image.
                if u.policy == PullPolicy::Always && image_present(clients, &u.image).await? {
                    return Err(e.context(format!(
                        "{} is in podd already, but its imagePullPolicy is Always (the \
                         default for a :latest or untagged image) so it is pulled again; set \
                         imagePullPolicy: IfNotPresent to use the copy podd has",
                        u.image
                    )));
                }
                return Err(e);
            }
        };
        eprintln!("Pulled {} -> {}", u.image, pulled.image_ref);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
