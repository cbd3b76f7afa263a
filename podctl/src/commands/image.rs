//! `podctl images`, `podctl image import`

use std::path::Path;

use anyhow::{Context, Result};
use podd_proto::podd::v1 as podd;
use podd_proto::runtime::v1 as cri;
use serde::Serialize;

use crate::client::{Clients, RpcResultExt};
use crate::output::{
    human_size, print_structured, short_id, split_repo_tag, Format, ImageView, Table,
};
use crate::ListOpts;

#[derive(Serialize)]
struct ImagesView {
    images: Vec<ImageView>,
}

pub async fn images(clients: &Clients, opts: &ListOpts) -> Result<u8> {
    let images = clients
        .image
        .clone()
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .rpc("list", "images")?
        .images;
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
