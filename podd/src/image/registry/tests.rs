//! Pull engine tests against the in-process fake registry: formats, auth, tampering,
//! mirrors, concurrency and interrupted pulls. No root and no real registry needed.
use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::mpsc;

use super::fake::{AuthMode, Compression, FakeRegistry};
use super::*;
use crate::image::{ImageError, ImageStore};

fn tar_with(path: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, path, content).unwrap();
    b.into_inner().unwrap()
}

struct Env {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    puller: Puller,
}

fn env_with(registries: Registries) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let store = Arc::new(ImageStore::open(&root).unwrap());
    Env {
        puller: Puller::new(store, registries),
        root,
        _dir: dir,
    }
}

fn env() -> Env {
    env_with(Registries::default())
}

fn registries(toml_text: &str) -> Registries {
    crate::config::Config::parse(toml_text, Path::new("test.toml"))
        .unwrap()
        .registries
}

async fn pull(env: &Env, r: &str, creds: &Credentials) -> Result<crate::image::Image, ImageError> {
    let (tx, _rx) = mpsc::unbounded_channel();
    env.puller.pull(r, &creds.clone().into(), &tx).await
}

/// Pulls, collecting every progress event.
async fn pull_events(
    env: &Env,
    r: &str,
) -> (Result<crate::image::Image, ImageError>, Vec<Progress>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let res = env.puller.pull(r, &PullAuth::default(), &tx).await;
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    (res, events)
}

fn registry_err(e: ImageError) -> RegistryError {
    match e {
        ImageError::Registry(r) => r,
        other => panic!("expected a registry error, got {other}"),
    }
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Nothing that looks like an image: no index entry, no blob, no layer.
fn assert_nothing_stored(env: &Env) {
    assert!(env.puller.store().list().is_empty());
    assert_eq!(count(&env.root.join("blobs/sha256")), 0);
    assert_eq!(count(&env.root.join("layers")), 0);
}

fn basic(u: &str, p: &str) -> Credentials {
    Credentials::Basic {
        username: u.into(),
        password: p.into(),
    }
}

#[tokio::test]
async fn pull_by_tag_stores_config_layers_and_tags() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let built = reg.add_image(
        "app/web",
        "1.0",
        &[
            (tar_with("a.txt", b"layer one"), Compression::Gzip),
            (tar_with("b.txt", b"layer two"), Compression::None),
        ],
        false,
    );
    let env = env();
    let r = format!("{}/app/web:1.0", reg.host());
    let (img, events) = pull_events(&env, &r).await;
    let img = img.unwrap();
    assert_eq!(img.id, built.config_digest);
    assert_eq!(img.repo_tags, std::slice::from_ref(&r));
    assert_eq!(
        img.repo_digests,
        [format!("{}/app/web@{}", reg.host(), built.manifest_digest)]
    );
    assert_eq!(img.config.entrypoint, ["/bin/sh"]);
    assert_eq!(img.config.user, "1000:1000");
    assert_eq!(img.layers.len(), 2);
    let dirs = env.puller.store().layer_dirs(&img);
    assert_eq!(std::fs::read(dirs[1].join("a.txt")).unwrap(), b"layer one");
    assert_eq!(std::fs::read(dirs[0].join("b.txt")).unwrap(), b"layer two");
    assert_eq!(events[0].status, "resolving");
    for d in &built.layer_digests {
        assert!(events
            .iter()
            .any(|e| &e.digest == d && e.status == "unpacking" && e.kind == "layer"));
        assert!(events.iter().any(|e| &e.digest == d && e.status == "done"));
    }
    // Verbose ImageStatus info: the stored config, the manifest's layers, size and user.
    let info = env.puller.store().verbose_info(&img);
    assert_eq!(info["imageSpec"]["config"]["User"], "1000:1000");
    assert_eq!(info["user"], "1000:1000");
    assert_eq!(info["layers"][0]["digest"], built.layer_digests[0].as_str());
    assert_eq!(
        info["layers"][0]["media_type"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(info["size"], img.size);
    // The download area is left empty: everything moved into the store.
    assert_eq!(count(&env.root.join("tmp/pull")), 0);

    // Pulling by digest finds the same image; the tag pull again downloads nothing.
    let by_digest = format!("{}/app/web@{}", reg.host(), built.manifest_digest);
    assert_eq!(
        pull(&env, &by_digest, &Credentials::Anonymous)
            .await
            .unwrap()
            .id,
        img.id
    );
    let (again, events) = pull_events(&env, &r).await;
    assert_eq!(again.unwrap().id, img.id);
    for d in &built.layer_digests {
        assert_eq!(reg.blob_hits(d), 1, "layer {d} fetched again");
        assert!(events
            .iter()
            .any(|e| &e.digest == d && e.status == "exists"));
    }
}

#[tokio::test]
async fn pull_by_digest_of_a_fresh_store() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let built = reg.add_image("x", "t", &[(tar_with("f", b"1"), Compression::Gzip)], false);
    let env = env();
    let r = format!("{}/x@{}", reg.host(), built.manifest_digest);
    let img = pull(&env, &r, &Credentials::Anonymous).await.unwrap();
    assert!(img.repo_tags.is_empty());
    assert_eq!(img.repo_digests, std::slice::from_ref(&r));
    assert_eq!(env.puller.store().resolve(&r).unwrap().id, img.id);
    // Removing by the repo digest removes the image; removing it again succeeds.
    env.puller.store().remove(&r).unwrap();
    assert_nothing_stored(&env);
    env.puller.store().remove(&r).unwrap();
}

#[tokio::test]
async fn docker_manifest_list_and_oci_index_pick_linux_amd64_with_zstd_layers() {
    for docker in [true, false] {
        let reg = FakeRegistry::start(AuthMode::None).await;
        let arm = reg.add_image(
            "m",
            "arm",
            &[(tar_with("arch", b"arm64"), Compression::Gzip)],
            docker,
        );
        let amd = reg.add_image(
            "m",
            "amd",
            &[
                (tar_with("arch", b"amd64"), Compression::Zstd),
                (tar_with("more", b"z"), Compression::Gzip),
            ],
            docker,
        );
        let index = reg.add_index(
            "m",
            "multi",
            &[
                ("linux", "arm64", &arm.manifest_digest, arm.manifest_size),
                ("windows", "amd64", &arm.manifest_digest, arm.manifest_size),
                ("linux", "amd64", &amd.manifest_digest, amd.manifest_size),
            ],
            docker,
        );
        let env = env();
        let r = format!("{}/m:multi", reg.host());
        let img = pull(&env, &r, &Credentials::Anonymous).await.unwrap();
        assert_eq!(img.id, amd.config_digest, "docker={docker}");
        assert_eq!(img.manifest_digest, amd.manifest_digest);
        // The repo digest is the index's, as docker and containerd report it.
        assert_eq!(img.repo_digests, [format!("{}/m@{index}", reg.host())]);
        let dirs = env.puller.store().layer_dirs(&img);
        assert_eq!(std::fs::read(dirs[1].join("arch")).unwrap(), b"amd64");
        assert_eq!(reg.blob_hits(&arm.layer_digests[0]), 0);
        let by_index = format!("{}/m@{index}", reg.host());
        assert_eq!(env.puller.store().resolve(&by_index).unwrap().id, img.id);
    }
}

#[tokio::test]
async fn index_without_this_platform_is_a_clear_error() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let arm = reg.add_image(
        "m",
        "arm",
        &[(tar_with("a", b"a"), Compression::Gzip)],
        false,
    );
    reg.add_index(
        "m",
        "multi",
        &[("linux", "arm64", &arm.manifest_digest, arm.manifest_size)],
        false,
    );
    let env = env();
    let err = pull(
        &env,
        &format!("{}/m:multi", reg.host()),
        &Credentials::Anonymous,
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no linux/amd64") && msg.contains("linux/arm64"),
        "{msg}"
    );
    assert_nothing_stored(&env);
}

#[tokio::test]
async fn a_server_that_is_not_a_registry_gets_a_hint() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    reg.fail_all(Some(StatusCode::IM_A_TEAPOT));
    let env = env();
    let e = registry_err(
        pull(
            &env,
            &format!("{}/x:1", reg.host()),
            &Credentials::Anonymous,
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.kind(), Kind::Failed, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("HTTP 418"), "{msg}");
    assert!(
        msg.contains("check the registry host or mirror URL: is it an OCI distribution registry?"),
        "{msg}"
    );
    assert_nothing_stored(&env);
}

#[tokio::test]
async fn basic_auth_good_missing_and_wrong_credentials() {
    let reg = FakeRegistry::start(AuthMode::Basic("alice".into(), "s3cret".into())).await;
    reg.add_image("p", "1", &[(tar_with("f", b"x"), Compression::Gzip)], false);
    let env = env();
    let r = format!("{}/p:1", reg.host());
    let e = registry_err(pull(&env, &r, &Credentials::Anonymous).await.unwrap_err());
    assert!(
        matches!(e, RegistryError::CredentialsRequired { .. }),
        "{e}"
    );
    assert_eq!(e.kind(), Kind::Unauthenticated);
    let e = registry_err(pull(&env, &r, &basic("alice", "nope")).await.unwrap_err());
    assert!(
        e.to_string().contains(&format!(
            "registry http://{} refused credentials for {r}",
            reg.host()
        )),
        "{e}"
    );
    assert_nothing_stored(&env);
    pull(&env, &r, &basic("alice", "s3cret")).await.unwrap();
}

#[tokio::test]
async fn bearer_challenge_gets_a_token_with_basic_credentials() {
    let reg = FakeRegistry::start(AuthMode::Bearer("bob".into(), "pw".into())).await;
    reg.add_image(
        "lib/q",
        "1",
        &[(tar_with("f", b"x"), Compression::Gzip)],
        false,
    );
    let env = env();
    let r = format!("{}/lib/q:1", reg.host());
    let e = registry_err(pull(&env, &r, &basic("bob", "bad")).await.unwrap_err());
    assert!(matches!(e, RegistryError::CredentialsRefused { .. }), "{e}");
    let e = registry_err(pull(&env, &r, &Credentials::Anonymous).await.unwrap_err());
    assert_eq!(e.kind(), Kind::Unauthenticated, "{e}");
    pull(&env, &r, &basic("bob", "pw")).await.unwrap();
    // A registry token is sent as it is.
    let env2 = super::tests::env();
    pull(&env2, &r, &Credentials::Bearer("fake-token-123".into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn tampered_blobs_and_manifests_are_refused_and_nothing_is_stored() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let built = reg.add_image(
        "t",
        "1",
        &[(tar_with("f", b"evil"), Compression::Gzip)],
        false,
    );
    let r = format!("{}/t:1", reg.host());
    for digest in [
        &built.layer_digests[0],
        &built.config_digest,
        &built.manifest_digest,
    ] {
        reg.tamper(digest);
        let env = env();
        let e = registry_err(pull(&env, &r, &Credentials::Anonymous).await.unwrap_err());
        assert!(matches!(e, RegistryError::Tampered { .. }), "{e}");
        assert_eq!(e.kind(), Kind::DataLoss);
        assert!(e.to_string().contains(&reg.host()), "{e}");
        assert_nothing_stored(&env);
        reg.inner_clear_tamper(digest);
    }
    // By digest the manifest is checked against the digest asked for.
    reg.tamper(&built.manifest_digest);
    let env = env();
    let e = pull(
        &env,
        &format!("{}/t@{}", reg.host(), built.manifest_digest),
        &Credentials::Anonymous,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains(&built.manifest_digest), "{e}");
    assert_nothing_stored(&env);
}

#[tokio::test]
async fn a_tampered_blob_of_the_right_length_is_refused_by_its_digest() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let built = reg.add_image(
        "t",
        "1",
        &[(tar_with("f", &[7u8; 4096]), Compression::None)],
        false,
    );
    let layer = &built.layer_digests[0];
    // The fake flips the blob's last byte: its length matches the descriptor, so only the
    // digest check can refuse it, and only once the last of several pieces has arrived.
    reg.tamper(layer);
    reg.slow(layer);
    let env = env();
    let r = format!("{}/t:1", reg.host());
    let e = registry_err(pull(&env, &r, &Credentials::Anonymous).await.unwrap_err());
    let RegistryError::Tampered { digest, detail, .. } = &e else {
        panic!("expected Tampered, got {e}");
    };
    assert_eq!(digest, layer);
    assert!(!detail.contains("bytes"), "refused by its size: {e}");
    assert_eq!(e.kind(), Kind::DataLoss);
    assert_nothing_stored(&env);
    // Neither the download nor its partial file is left for a later pull to pick up.
    let hex = layer.strip_prefix("sha256:").unwrap();
    let left: Vec<_> = std::fs::read_dir(env.root.join("tmp/pull"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(hex))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn wrong_diff_id_in_config_stores_nothing() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    // A config whose diff_id does not match the layer it names.
    let tar = tar_with("f", b"one");
    let other = tar_with("f", b"two");
    let built = reg.add_image("d", "real", &[(tar, Compression::Gzip)], false);
    let decoy = reg.add_image("d", "decoy", &[(other, Compression::Gzip)], false);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": fake::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": decoy.config_digest, "size": reg.size_of(&decoy.config_digest)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": built.layer_digests[0], "size": reg.size_of(&built.layer_digests[0])}],
    });
    let d = reg.put(serde_json::to_vec(&manifest).unwrap(), fake::OCI_MANIFEST);
    reg.tag("d", "mixed", &d);
    let env = env();
    let e = pull(
        &env,
        &format!("{}/d:mixed", reg.host()),
        &Credentials::Anonymous,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(env.puller.store().list().is_empty());
    assert_eq!(count(&env.root.join("layers")), 0);
}

#[tokio::test]
async fn not_found_and_unreachable_name_the_registry() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let env = env();
    let r = format!("{}/nothing:here", reg.host());
    let e = registry_err(pull(&env, &r, &Credentials::Anonymous).await.unwrap_err());
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(
        e.to_string().contains(&format!(
            "manifest for {r} not found on http://{}",
            reg.host()
        )),
        "{e}"
    );

    let closed = closed_port().await;
    let r = format!("127.0.0.1:{closed}/x:1");
    let e = registry_err(pull(&env, &r, &Credentials::Anonymous).await.unwrap_err());
    assert_eq!(e.kind(), Kind::Unavailable);
    // A loopback registry without configuration: HTTPS first, then plain HTTP; the error
    // lists both attempts.
    let msg = e.to_string();
    for tried in [
        format!("https://127.0.0.1:{closed} (host): cannot connect"),
        format!("http://127.0.0.1:{closed} (host): cannot connect"),
    ] {
        assert!(msg.contains(&tried), "{msg}");
    }
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn mirrors_are_tried_in_order_and_fall_through_to_the_host() {
    let host = FakeRegistry::start(AuthMode::None).await;
    let built = host.add_image(
        "k8s/pause",
        "3.9",
        &[(tar_with("p", b"pause"), Compression::Gzip)],
        false,
    );
    let empty_mirror = FakeRegistry::start(AuthMode::None).await; // 404s
    let failing_mirror = FakeRegistry::start(AuthMode::None).await;
    failing_mirror.fail_all(Some(StatusCode::INTERNAL_SERVER_ERROR));
    let closed = closed_port().await;
    let cfg = format!(
        "[registries.\"{}\"]\nmirrors = [\"http://127.0.0.1:{closed}\", \"http://{}\", \"http://{}\"]\n",
        host.host(),
        empty_mirror.host(),
        failing_mirror.host()
    );
    let env = env_with(registries(&cfg));
    let r = format!("{}/k8s/pause:3.9", host.host());
    let img = pull(&env, &r, &Credentials::Anonymous).await.unwrap();
    assert_eq!(img.id, built.config_digest);

    // A mirror that has the image serves it; the host is not asked.
    let good_mirror = FakeRegistry::start(AuthMode::None).await;
    let m = good_mirror.add_image(
        "k8s/pause",
        "3.9",
        &[(tar_with("p", b"pause"), Compression::Gzip)],
        false,
    );
    let cfg = format!(
        "[registries.\"{}\"]\nmirrors = [\"http://{}\"]\n",
        host.host(),
        good_mirror.host()
    );
    let env2 = env_with(registries(&cfg));
    host.fail_all(Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        pull(&env2, &r, &Credentials::Anonymous).await.unwrap().id,
        m.config_digest
    );

    // Everything fails: the host's answer decides, every endpoint is listed.
    let env3 = env_with(registries(&cfg));
    good_mirror.fail_all(Some(StatusCode::NOT_FOUND));
    let e = registry_err(pull(&env3, &r, &Credentials::Anonymous).await.unwrap_err());
    assert_eq!(e.kind(), Kind::Unavailable, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("http://{} (mirror)", good_mirror.host())),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("http://{} (host)", host.host())),
        "{msg}"
    );
    assert_nothing_stored(&env3);
}

async fn pull_with(env: &Env, r: &str, auth: &PullAuth) -> Result<crate::image::Image, ImageError> {
    let (tx, _rx) = mpsc::unbounded_channel();
    env.puller.pull(r, auth, &tx).await
}

#[tokio::test]
async fn credentials_never_reach_a_mirror_they_were_not_given_for() {
    // Both ask for the same Basic login: oci-client only sends credentials when challenged,
    // so a mirror that challenges is what would see them.
    let host = FakeRegistry::start(AuthMode::Basic("u".into(), "p".into())).await;
    let layers = [(tar_with("m", b"mirrored"), Compression::Gzip)];
    let built = host.add_image("lib/app", "1", &layers, false);
    let mirror = FakeRegistry::start(AuthMode::Basic("u".into(), "p".into())).await;
    mirror.add_image("lib/app", "1", &layers, false);
    let cfg = format!(
        "[registries.\"{}\"]\nmirrors = [\"http://{}\"]\n",
        host.host(),
        mirror.host()
    );
    let r = format!("{}/lib/app:1", host.host());
    let creds = basic("u", "p");

    // No server_address: the credentials are the reference's registry's only; the mirror
    // answers the anonymous pull 401 and the host serves it.
    let env1 = env_with(registries(&cfg));
    let img = pull_with(&env1, &r, &PullAuth::new(creds.clone(), "").unwrap())
        .await
        .unwrap();
    assert_eq!(img.id, built.config_digest);
    assert_eq!(
        mirror.authorizations(),
        0,
        "the mirror was sent credentials"
    );
    assert!(host.authorizations() > 0);
    // server_address naming the registry, as a URL.
    let env2 = env_with(registries(&cfg));
    let for_host = PullAuth::new(creds.clone(), &format!("http://{}/v1/", host.host())).unwrap();
    pull_with(&env2, &r, &for_host).await.unwrap();
    assert_eq!(
        mirror.authorizations(),
        0,
        "the mirror was sent credentials"
    );

    // server_address naming another registry: nobody gets them, the host asks for some.
    let env3 = env_with(registries(&cfg));
    let other = PullAuth::new(creds.clone(), "other.example").unwrap();
    let e = registry_err(pull_with(&env3, &r, &other).await.unwrap_err());
    assert_eq!(e.kind(), Kind::Unauthenticated, "{e}");
    assert!(e.to_string().contains("requires credentials"), "{e}");
    assert_eq!(
        mirror.authorizations(),
        0,
        "the mirror was sent credentials"
    );

    // server_address naming the mirror: the mirror gets them (and only then).
    let env4 = env_with(registries(&cfg));
    let for_mirror = PullAuth::new(creds, &mirror.host()).unwrap();
    pull_with(&env4, &r, &for_mirror).await.unwrap();
    assert!(mirror.authorizations() > 0);
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_download_each_blob_once() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let built = reg.add_image(
        "c",
        "1",
        &[
            (tar_with("big", &big), Compression::Gzip),
            (tar_with("s", b"s"), Compression::Gzip),
        ],
        false,
    );
    reg.slow(&built.layer_digests[0]);
    let env = env();
    let r = format!("{}/c:1", reg.host());
    let (a, b) = tokio::join!(pull_events(&env, &r), pull_events(&env, &r));
    assert_eq!(a.0.unwrap().id, b.0.unwrap().id);
    for d in built.layer_digests.iter().chain([&built.config_digest]) {
        assert_eq!(reg.blob_hits(d), 1, "blob {d}");
    }
    let waited =
        a.1.iter()
            .chain(&b.1)
            .any(|e| e.status == "waiting" && e.digest == built.layer_digests[0]);
    assert!(
        waited,
        "one pull should have waited for the other's download"
    );
    assert_eq!(env.puller.store().list().len(), 1);
}

#[tokio::test]
async fn a_pull_waiting_on_a_failed_download_downloads_it_from_its_own_endpoint() {
    let big: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let layers = [(tar_with("big", &big), Compression::Gzip)];
    let broken = FakeRegistry::start(AuthMode::None).await;
    let built = broken.add_image("w", "1", &layers, false);
    let good = FakeRegistry::start(AuthMode::Basic("u".into(), "p".into())).await;
    good.add_image("w", "1", &layers, false);
    let layer = built.layer_digests[0].clone();
    let release = broken.hold_then_break(&layer);
    let env = env();
    let (tx_a, mut rx_a) = mpsc::unbounded_channel();
    let (tx_b, mut rx_b) = mpsc::unbounded_channel();
    let auth_a = PullAuth::default();
    let auth_b = PullAuth::from(basic("u", "p"));
    let ref_a = format!("{}/w:1", broken.host());
    let ref_b = format!("{}/w:1", good.host());
    // Pull A leads the layer's download from the broken registry; pull B (another
    // registry, with credentials) waits for it; then A's download breaks off.
    let a = env.puller.pull(&ref_a, &auth_a, &tx_a);
    let b = async {
        while let Some(p) = rx_a.recv().await {
            if p.digest == layer && p.status == "downloading" && p.current > 0 {
                break;
            }
        }
        let pull_b = env.puller.pull(&ref_b, &auth_b, &tx_b);
        let watch_b = async {
            while let Some(p) = rx_b.recv().await {
                if p.digest == layer && p.status == "waiting" {
                    release.notify_one();
                    break;
                }
            }
        };
        tokio::join!(pull_b, watch_b).0
    };
    let (a, b) = tokio::join!(a, b);
    let e = registry_err(a.unwrap_err());
    assert_eq!(e.kind(), Kind::Unavailable, "{e}");
    assert_eq!(b.unwrap().id, built.config_digest);
    assert_eq!(broken.blob_hits(&layer), 1);
    assert_eq!(good.blob_hits(&layer), 1);
}

#[tokio::test]
async fn an_interrupted_pull_leaves_no_image_and_the_next_one_completes() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let built = reg.add_image(
        "i",
        "1",
        &[
            (tar_with("a", b"first"), Compression::Gzip),
            (tar_with("b", &[7u8; 100_000]), Compression::Gzip),
        ],
        false,
    );
    let r = format!("{}/i:1", reg.host());
    let env = env();
    // The connection breaks half way through a layer.
    reg.break_blob(&built.layer_digests[1], true);
    let e = registry_err(pull(&env, &r, &Credentials::Anonymous).await.unwrap_err());
    assert_eq!(e.kind(), Kind::Unavailable, "{e}");
    assert!(env.puller.store().list().is_empty());
    assert_eq!(count(&env.root.join("layers")), 0);
    reg.break_blob(&built.layer_digests[1], false);

    // The pull is dropped mid-download (a client that went away).
    reg.slow(&built.layer_digests[1]);
    let env2 = super::tests::env();
    {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let auth = PullAuth::default();
        let fut = env2.puller.pull(&r, &auth, &tx);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                _ = &mut fut => panic!("the slow pull finished before it was dropped"),
                Some(p) = rx.recv() => if p.status == "downloading" && p.current > 0 { break },
            }
        }
    }
    assert!(env2.puller.store().list().is_empty());
    // A restart cleans the partial downloads.
    let reopened = ImageStore::open(&env2.root).unwrap();
    assert!(reopened.list().is_empty());
    assert_eq!(count(&env2.root.join("tmp")), 0);
    assert_eq!(count(&env2.root.join("layers")), 0);
    // And the next pull completes.
    let env3 = Env {
        puller: Puller::new(Arc::new(reopened), Registries::default()),
        root: env2.root.clone(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let img = pull(&env3, &r, &Credentials::Anonymous).await.unwrap();
    assert_eq!(img.id, built.config_digest);
    assert_eq!(env3.puller.store().layer_dirs(&img).len(), 2);
}

#[tokio::test]
async fn shared_layers_are_stored_once_and_not_downloaded_again() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let base = tar_with("base", b"shared base");
    let one = reg.add_image(
        "s",
        "1",
        &[
            (base.clone(), Compression::Gzip),
            (tar_with("x", b"1"), Compression::Gzip),
        ],
        false,
    );
    let two = reg.add_image(
        "s",
        "2",
        &[
            (base, Compression::Gzip),
            (tar_with("x", b"2"), Compression::Gzip),
        ],
        false,
    );
    assert_eq!(one.layer_digests[0], two.layer_digests[0]);
    let env = env();
    pull(
        &env,
        &format!("{}/s:1", reg.host()),
        &Credentials::Anonymous,
    )
    .await
    .unwrap();
    let (res, events) = pull_events(&env, &format!("{}/s:2", reg.host())).await;
    res.unwrap();
    assert!(events
        .iter()
        .any(|e| e.digest == one.layer_digests[0] && e.status == "exists"));
    assert_eq!(reg.blob_hits(&one.layer_digests[0]), 1);
    assert_eq!(count(&env.root.join("layers")), 3);
    // Removing one image keeps the shared layer for the other.
    env.puller
        .store()
        .remove(&format!("{}/s:1", reg.host()))
        .unwrap();
    assert_eq!(count(&env.root.join("layers")), 2);
}

#[tokio::test]
async fn a_remove_between_download_and_ingest_does_not_break_the_pull() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let base = tar_with("base", b"shared base");
    let one = reg.add_image("g", "1", &[(base.clone(), Compression::Gzip)], false);
    let two = reg.add_image(
        "g",
        "2",
        &[
            (base, Compression::Gzip),
            (tar_with("x", b"2"), Compression::Gzip),
        ],
        false,
    );
    let env = env();
    let first = format!("{}/g:1", reg.host());
    pull(&env, &first, &Credentials::Anonymous).await.unwrap();
    // The second pull finds the base layer stored and downloads nothing for it; the first
    // image is then removed, which garbage-collects that blob, before the pull ingests.
    let store = Arc::clone(env.puller.store());
    *env.puller.before_ingest.lock().unwrap() = Some(Box::new(move || {
        store.remove(&first).unwrap();
        assert_eq!(store.list().len(), 0);
    }));
    let (res, events) = pull_events(&env, &format!("{}/g:2", reg.host())).await;
    let img = res.unwrap();
    assert!(events
        .iter()
        .any(|e| e.digest == one.layer_digests[0] && e.status == "exists"));
    assert_eq!(reg.blob_hits(&one.layer_digests[0]), 1);
    assert_eq!(img.id, two.config_digest);
    assert_eq!(env.puller.store().layer_dirs(&img).len(), 2);
    for d in &two.layer_digests {
        assert!(env.root.join("blobs/sha256").join(&d[7..]).is_file(), "{d}");
    }
    // Nothing of the pull is left in the download directory.
    assert_eq!(count(&env.root.join("tmp/pull")), 0);
}

#[tokio::test]
async fn a_panic_while_storing_fails_that_pull_only() {
    let reg = FakeRegistry::start(AuthMode::None).await;
    let built = reg.add_image("p", "1", &[(tar_with("a", b"a"), Compression::Gzip)], false);
    let env = env();
    let r = format!("{}/p:1", reg.host());
    *env.puller.before_ingest.lock().unwrap() = Some(Box::new(|| panic!("injected")));
    let e = registry_err(pull(&env, &r, &Credentials::Anonymous).await.unwrap_err());
    assert_eq!(e.kind(), Kind::Internal, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("storing the image panicked: injected"),
        "{msg}"
    );
    assert!(msg.contains(&r), "{msg}");
    assert!(env.puller.store().list().is_empty());
    // The puller goes on working.
    let img = pull(&env, &r, &Credentials::Anonymous).await.unwrap();
    assert_eq!(img.id, built.config_digest);
}

#[tokio::test]
async fn bad_references_are_refused_before_any_request() {
    let env = env();
    let e = pull(&env, "busybox:bad tag!", &Credentials::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::InvalidReference { .. }), "{e}");
}
