//! Pulls from the htpasswd registry (`hack/registry start`, 127.0.0.1:5001): the CRI
//! AuthConfig's basic credentials are used; missing or wrong ones fail with an auth code and a
//! message naming the registry, and store nothing.

use anyhow::{bail, ensure, Result};
use e2e::registry::Registry;
use e2e::Podd;
use tonic::Code;

#[tokio::test]
async fn credentials_good_missing_and_wrong() -> Result<()> {
    let reg = Registry::authenticated()?;
    let podd = Podd::start().await?;
    let (layout, pushed) = reg.push_marked("auth")?;
    let image = &pushed.reference;
    let (user, password) = reg
        .creds
        .clone()
        .expect("the auth registry has credentials");
    let wrong_password = format!("{password}-wrong");

    let refused: [(&str, Option<(&str, &str)>); 3] = [
        ("no credentials", None),
        ("a wrong password", Some((&user, &wrong_password))),
        ("an unknown user", Some(("nobody-e2e", &password))),
    ];
    for (what, creds) in refused {
        match podd.pull(image, creds).await {
            Ok(id) => bail!("PullImage {image} with {what} succeeded ({id})"),
            Err(s) => {
                ensure!(
                    matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied),
                    "PullImage {image} with {what}: {:?} {:?}, want UNAUTHENTICATED or PERMISSION_DENIED",
                    s.code(),
                    s.message()
                );
                ensure!(
                    s.message().contains(&reg.host),
                    "PullImage {image} with {what}: the message does not name the registry {}: {:?}",
                    reg.host,
                    s.message()
                );
                ensure!(
                    !s.message().contains(&password),
                    "the error message shows the password: {:?}",
                    s.message()
                );
            }
        }
        ensure!(
            podd.list_images().await?.is_empty(),
            "PullImage with {what} failed but ListImages lists an image"
        );
    }

    let id = podd
        .pull(image, Some((&user, &password)))
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "PullImage {image} with good credentials: {:?}: {}",
                s.code(),
                s.message()
            )
        })?;
    ensure!(
        id == layout.config_digest,
        "pulled {id}, want {}",
        layout.config_digest
    );
    ensure!(
        podd.image_status(image).await?.is_some_and(|i| i.id == id),
        "ImageStatus {image} does not find {id} after the pull"
    );
    Ok(())
}
