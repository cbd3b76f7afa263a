//! Every blob is checked against its digest: a registry serving tampered bytes (same size) for
//! the config or a layer gets DATA_LOSS or FAILED_PRECONDITION, and nothing is stored; once the
//! registry serves the right bytes again the pull succeeds.

use anyhow::{bail, ensure, Result};
use e2e::oci::{hex_of, Entry, Layer, RunConfig};
use e2e::registry::{unique_repo, Registry};
use e2e::Podd;
use tonic::Code;

#[tokio::test]
async fn tampered_blob_is_refused_and_nothing_is_stored() -> Result<()> {
    let reg = Registry::plain()?;
    let podd = Podd::start().await?;
    // A layer (and so a config) only this test has: tampering with it touches no other test.
    let name = unique_repo("tamper");
    let mut data = Vec::new();
    for i in 0..4096u32 {
        data.extend_from_slice(format!("line {i} of {name}\n").as_bytes());
    }
    let unique = Layer::from_entries(&[Entry::file("payload", data)])?;
    let (layout, pushed) = reg.push_new(
        "tamper",
        &[Layer::busybox()?, unique.clone()],
        &RunConfig::shell(),
        &["v1"],
    )?;
    let image = &pushed[0].reference;

    for (what, digest) in [("config", &layout.config_digest), ("layer", &unique.digest)] {
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
    let id = podd.pull_ok(image).await?;
    ensure!(
        id == layout.config_digest,
        "pulled {id}, want {}",
        layout.config_digest
    );
    Ok(())
}
