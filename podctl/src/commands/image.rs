//! `podctl images`, `pull`, `rmi`, `image import`, `image inspect`

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use podd_proto::podd::v1 as podd;
use podd_proto::runtime::v1 as cri;
use serde::Serialize;

use super::each;
use crate::client::{Clients, RpcResultExt};
use crate::output::{
    human_size, info_view, print_structured, short_id, split_repo_tag, Format, ImageView, Table,
};
use crate::pull::{self, Progress};
use crate::{InspectOpts, ListOpts, PullOpts};

#[derive(Serialize)]
struct ImagesView {
    images: Vec<ImageView>,
}

pub async fn images(clients: &Clients, opts: &ListOpts, filter: Option<&str>) -> Result<u8> {
    let mut images = list_images(clients, filter).await?;
    images.sort_by(|a, b| a.repo_tags.cmp(&b.repo_tags).then(a.id.cmp(&b.id)));
    print_images(&images, opts.output, opts.quiet)?;
    Ok(0)
}

fn print_images(images: &[cri::Image], format: Format, quiet: bool) -> Result<()> {
    if quiet {
        for i in images {
            println!("{}", i.id);
        }
        return Ok(());
    }
    if format != Format::Table {
        let view = ImagesView {
            images: images.iter().map(ImageView::from).collect(),
        };
        return print_structured(format, &view);
    }
    let mut t = Table::new(&["IMAGE", "TAG", "IMAGE ID", "SIZE"]);
    for i in images {
        let size = human_size(i.size);
        if i.repo_tags.is_empty() {
            let repo = i
                .repo_digests
                .first()
                .map_or("<none>", |d| d.split('@').next().unwrap_or(d));
            t.push(vec![
                repo.into(),
                "<none>".into(),
                short_id(&i.id),
                size.clone(),
            ]);
        }
        for tag in &i.repo_tags {
            let (repo, tag) = split_repo_tag(tag);
            t.push(vec![repo.into(), tag.into(), short_id(&i.id), size.clone()]);
        }
    }
    print!("{}", t.render());
    Ok(())
}

pub async fn import(clients: &Clients, path: &Path, name: Option<&str>) -> Result<u8> {
    // podd resolves the path on its own host, from its own working directory.
    let abs =
        std::fs::canonicalize(path).with_context(|| format!("import image {}", path.display()))?;
    let resp = clients
        .podd
        .clone()
        .import_image(podd::ImportImageRequest {
            path: abs.to_string_lossy().into_owned(),
            name: name.unwrap_or_default().to_string(),
        })
        .await
        .rpc("import image", abs.display())?;
    if resp.images.is_empty() {
        eprintln!("podctl: podd imported no image from {}", abs.display());
    }
    print_images(&resp.images, Format::Table, false)?;
    Ok(0)
}

/// Every image, or those `filter` (a reference or id) names.
async fn list_images(clients: &Clients, filter: Option<&str>) -> Result<Vec<cri::Image>> {
    let resp = clients
        .image
        .clone()
        .list_images(cri::ListImagesRequest {
            filter: filter.map(|f| cri::ImageFilter {
                image: Some(cri::ImageSpec {
                    image: f.to_string(),
                    ..Default::default()
                }),
            }),
        })
        .await;
    Ok(match filter {
        Some(f) => resp.rpc("list images", f)?.images,
        None => resp.rpc("list", "images")?.images,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PulledView<'a> {
    reference: &'a str,
    image_ref: &'a str,
}

/// The registry credentials `podctl pull` was given, if any.
pub fn pull_auth(opts: &PullOpts) -> Result<Option<cri::AuthConfig>> {
    pull::auth_config(
        opts.creds.as_deref(),
        opts.username.as_deref(),
        opts.password_stdin,
        &mut std::io::stdin().lock(),
    )
}

/// `podctl pull REF`: progress on stderr, the result on stdout.
pub async fn pull(clients: &Clients, opts: &PullOpts, auth: Option<cri::AuthConfig>) -> Result<u8> {
    let mut progress = Progress::stderr(&opts.image);
    let pulled = pull::pull(clients, &opts.image, auth, &mut progress).await?;
    match opts.output {
        Some(f @ (Format::Json | Format::Yaml)) => print_structured(
            f,
            &PulledView {
                reference: &opts.image,
                image_ref: &pulled.image_ref,
            },
        )?,
        Some(Format::Table) | None => println!("Pulled {} -> {}", opts.image, pulled.image_ref),
    }
    Ok(0)
}

/// The image `query` names: whatever podd resolves (id, tag, digest
/// reference, id prefix of 12 or more), else a unique id prefix of any
/// length (with or without `sha256:`), as `podctl images` shows ids.
/// Returns the image and the reference to give RemoveImage.
async fn find_image(clients: &Clients, query: &str) -> Result<(cri::Image, String)> {
    let status = clients
        .image
        .clone()
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: query.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .rpc("look up image", query)?;
    if let Some(image) = status.image {
        return Ok((image, query.to_string()));
    }
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    if !hex.is_empty() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        let matches: Vec<cri::Image> = list_images(clients, None)
            .await?
            .into_iter()
            .filter(|i| {
                i.id.strip_prefix("sha256:")
                    .unwrap_or(&i.id)
                    .starts_with(hex)
            })
            .collect();
        match matches.len() {
            0 => {}
            1 => {
                let image = matches.into_iter().next().expect("one match");
                let id = image.id.clone();
                return Ok((image, id));
            }
            n => {
                let ids: Vec<String> = matches.iter().map(|i| short_id(&i.id)).collect();
                bail!(
                    "image id prefix {query} matches {n} images ({}); give more of the id",
                    ids.join(", ")
                );
            }
        }
    }
    bail!("no such image {query}; `podctl images` lists them")
}

/// `podctl rmi REF...`: removes each (a tag only untags an image that has
/// others, as podd's RemoveImage does) and says what happened, like docker:
/// `Untagged: REF`, `Deleted: ID`.
pub async fn rmi(clients: &Clients, refs: &[String], all: bool) -> Result<u8> {
    let refs: Vec<String> = if all {
        let ids: Vec<String> = list_images(clients, None)
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        ids
    } else {
        refs.to_vec()
    };
    each(&refs, |query| async move {
        let (before, target) = find_image(clients, &query).await?;
        clients
            .image
            .clone()
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: target,
                    ..Default::default()
                }),
            })
            .await
            .rpc("remove image", &query)?;
        let after = clients
            .image
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: before.id.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .rpc("look up image", &before.id)?
            .image;
        removal_report(&query, &before, after.as_ref())
    })
    .await
}

/// What a removal did, from the image before and after it.
fn removal_report(query: &str, before: &cri::Image, after: Option<&cri::Image>) -> Result<String> {
    let remaining = after.map_or(&[][..], |a| a.repo_tags.as_slice());
    let mut lines: Vec<String> = before
        .repo_tags
        .iter()
        .filter(|t| !remaining.contains(t))
        .map(|t| format!("Untagged: {t}"))
        .collect();
    if after.is_none() {
        lines.push(format!("Deleted: {}", before.id));
    }
    if lines.is_empty() {
        bail!(
            "remove image {query}: podd still has image {} with all its tags; look at podd's log",
            before.id
        );
    }
    Ok(lines.join("\n"))
}

#[derive(Serialize)]
struct InspectView {
    status: ImageView,
    info: BTreeMap<String, serde_json::Value>,
}

/// `podctl image inspect REF`: ImageStatus with verbose info, as crictl's
/// `inspecti` shows it.
pub async fn inspect(clients: &Clients, query: &str, opts: &InspectOpts) -> Result<u8> {
    print_structured(opts.output, &inspect_view(clients, query).await?)?;
    Ok(0)
}

async fn inspect_view(clients: &Clients, query: &str) -> Result<InspectView> {
    let (image, _) = find_image(clients, query).await?;
    let resp = clients
        .image
        .clone()
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.id.clone(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .rpc("inspect image", query)?;
    let Some(status) = resp.image else {
        bail!("no such image {query} (it was removed meanwhile); `podctl images` lists them");
    };
    Ok(InspectView {
        status: ImageView::from(&status),
        info: info_view(&resp.info),
    })
}

#[cfg(test)]
mod tests;
