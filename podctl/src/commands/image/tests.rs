use super::*;
use crate::testing::{image, FakeServer, PullMode};

const A: &str = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111";
const A2: &str = "aaaaaaaaaaaa2222222222222222222222222222222222222222222222222222";
const B: &str = "bbbbbbbbbbbb1111111111111111111111111111111111111111111111111111";

async fn fake() -> FakeServer {
    FakeServer::start(
        PullMode::Unimplemented,
        vec![
            image(A, &["r/a:1", "r/a:2"]),
            image(A2, &[]),
            image(B, &["r/b:1"]),
        ],
    )
    .await
}

fn ids(fake: &FakeServer) -> Vec<String> {
    fake.state().images.iter().map(|i| i.id.clone()).collect()
}

#[tokio::test]
async fn find_by_reference_id_or_prefix() {
    let f = fake().await;
    let (img, target) = find_image(&f.clients, "r/b:1").await.unwrap();
    assert_eq!(
        (img.id.as_str(), target.as_str()),
        (&*format!("sha256:{B}"), "r/b:1")
    );
    // A short prefix podd does not resolve is found by listing, and removed by id.
    let (img, target) = find_image(&f.clients, "bbb").await.unwrap();
    assert_eq!(img.id, format!("sha256:{B}"));
    assert_eq!(target, format!("sha256:{B}"));
    let (img, _) = find_image(&f.clients, "sha256:aaaaaaaaaaaa2")
        .await
        .unwrap();
    assert_eq!(img.id, format!("sha256:{A2}"));

    let err = find_image(&f.clients, "aaaa")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "image id prefix aaaa matches 2 images (aaaaaaaaaaaa1, aaaaaaaaaaaa2); give more of the id"
    );
    let err = find_image(&f.clients, "r/none:1")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "no such image r/none:1; `podctl images` lists them");
    let err = find_image(&f.clients, "ccc").await.unwrap_err().to_string();
    assert_eq!(err, "no such image ccc; `podctl images` lists them");
}

#[tokio::test]
async fn rmi_untags_removes_and_reports_each_failure() {
    let f = fake().await;
    // A tag of an image with two only untags it.
    rmi(&f.clients, &["r/a:1".into()], false).await.unwrap();
    assert_eq!(ids(&f).len(), 3);
    assert_eq!(f.state().images[0].repo_tags, ["r/a:2"]);

    // Several at once; the unknown one fails, the others are still removed.
    let err = rmi(
        &f.clients,
        &["r/a:2".into(), "nope:1".into(), "bbbb".into()],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "1 of 3 failed");
    assert_eq!(ids(&f), [format!("sha256:{A2}")]);
    assert_eq!(
        f.state().removed,
        ["r/a:1", "r/a:2", &format!("sha256:{B}")]
    );
}

#[tokio::test]
async fn rmi_all_removes_every_image() {
    let f = fake().await;
    assert_eq!(rmi(&f.clients, &[], true).await.unwrap(), 0);
    assert!(ids(&f).is_empty());
    // Nothing left: still a success.
    assert_eq!(rmi(&f.clients, &[], true).await.unwrap(), 0);
}

#[test]
fn removal_reports_like_docker() {
    let before = image(A, &["r/a:1", "r/a:2"]);
    let after = image(A, &["r/a:2"]);
    assert_eq!(
        removal_report("r/a:1", &before, Some(&after)).unwrap(),
        "Untagged: r/a:1"
    );
    assert_eq!(
        removal_report("aaaa", &before, None).unwrap(),
        format!("Untagged: r/a:1\nUntagged: r/a:2\nDeleted: sha256:{A}")
    );
    let err = removal_report("r/a:1", &before, Some(&before)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("remove image r/a:1: podd still has image sha256:{A} with all its tags; look at podd's log")
    );
}

#[tokio::test]
async fn inspect_asks_for_verbose_status() {
    let f = fake().await;
    let view = inspect_view(&f.clients, "bbbb").await.unwrap();
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["status"]["id"], format!("sha256:{B}"));
    assert_eq!(json["status"]["repoTags"][0], "r/b:1");
    // The info map's JSON string is embedded as JSON.
    assert_eq!(json["info"]["info"]["layers"], 2);
    assert!(f
        .state()
        .status_calls
        .contains(&(format!("sha256:{B}"), true)));
    let err = inspect_view(&f.clients, "r/none:1").await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "no such image r/none:1; `podctl images` lists them"
    );
}

#[tokio::test]
async fn images_filter() {
    let f = fake().await;
    let listed = list_images(&f.clients, Some("r/b:1")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, format!("sha256:{B}"));
    assert!(list_images(&f.clients, Some("r/none:1"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(list_images(&f.clients, None).await.unwrap().len(), 3);
}
