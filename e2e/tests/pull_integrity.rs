//! Every blob is checked against its digest: a registry serving tampered bytes (same size) for
//! the config or a layer gets DATA_LOSS or FAILED_PRECONDITION, and nothing is stored; once the
//! registry serves the right bytes again the pull succeeds.

use anyhow::{bail, ensure, Result};
use e2e::oci::{hex_of, Entry, Layer, Layout, RunConfig};
use e2e::registry::{unique_repo, Registry};
use e2e::Podd;
use tonic::Code;

/// Pushes an image whose config and top layer only this test has (tampering with them
/// touches no other test); returns its layout, that layer and its reference.
fn push_unique(reg: &Registry, hint: &str) -> Result<(Layout, Layer, String)> {
    let name = unique_repo(hint);
    let mut data = Vec::new();
    for i in 0..4096u32 {
        data.extend_from_slice(format!("line {i} of {name}\n").as_bytes());
    }
    let unique = Layer::from_entries(&[Entry::file("payload", data)])?;
    let (layout, pushed) = reg.push_new(
        hint,
        &[Layer::busybox()?, unique.clone()],
        &RunConfig::shell(),
        &["v1"],
    )?;
    Ok((layout, unique, pushed[0].reference.clone()))
}

#[tokio::test]
async fn tampered_blob_is_refused_and_nothing_is_stored() -> Result<()> {
    let reg = Registry::plain()?;
    let podd = Podd::start().await?;
    // One image per case: blobs verified during a refused pull may be kept, and would then not
    // be fetched (nor checked) again.
    let (config_layout, _, config_image) = push_unique(&reg, "tamper-config")?;
    let (layer_layout, layer, layer_image) = push_unique(&reg, "tamper-layer")?;
    let cases = [
        ("config", &config_image, &config_layout.config_digest),
        ("layer", &layer_image, &layer.digest),
    ];

    for (what, image, digest) in cases {
        let tampered = reg.tamper_blob(digest)?;
        match podd.pull(image, None).await {
            Ok(id) => bail!(
                "PullImage {image} succeeded ({id}) although its {what} {digest} was tampered with"
            ),
            Err(s) => {
                ensure!(
                    matches!(s.code(), Code::DataLoss | Code::FailedPrecondition),
                    "PullImage {image} with a tampered {what}: {:?} {:?}, want DATA_LOSS or FAILED_PRECONDITION",
                    s.code(),
                    s.message()
                );
                ensure!(
                    s.message().contains(hex_of(digest)) || s.message().contains(image.as_str()),
                    "the error does not name the blob {digest} nor the image {image}: {:?}",
                    s.message()
                );
            }
        }
        ensure!(
            podd.image_status(image).await?.is_none(),
            "ImageStatus {image} finds an image after a pull with a tampered {what}"
        );
        let listed = podd.list_images().await?;
        ensure!(
            listed.is_empty(),
            "a refused pull left images listed: {listed:?}"
        );
        let stored = podd.state_paths_mentioning(hex_of(digest));
        ensure!(
            stored.is_empty(),
            "the tampered {what} {digest} is stored: {stored:?}"
        );
        tampered.restore()?;
    }

    // The registry serves the right bytes again: nothing half-stored gets in the way.
    for (layout, image) in [
        (&config_layout, &config_image),
        (&layer_layout, &layer_image),
    ] {
        let id = podd.pull_ok(image).await?;
        ensure!(
            id == layout.config_digest,
            "pulled {image} as {id}, want {}",
            layout.config_digest
        );
    }
    Ok(())
}
