//! Tests of the image store on small OCI layouts generated here.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use serde_json::json;

use super::digest::sha256_bytes;
use super::*;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A generated OCI layout with one gzip layer.
struct TestLayout {
    dir: PathBuf,
    config_digest: String,
    manifest_digest: String,
    layer_digest: String,
    diff_id: String,
    size: u64,
}

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let d = sha256_bytes(data);
    fs::write(dir.join("blobs/sha256").join(d.hex()), data).unwrap();
    d.to_string()
}

fn layer_tar(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "bin/", &[][..]).unwrap();
    let content = format!("#!/bin/sh\necho {marker}\n");
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(content.len() as u64);
    b.append_data(&mut h, "bin/hello", content.as_bytes())
        .unwrap();
    b.into_inner().unwrap()
}

/// Writes a layout under `parent/name`. `diff_id_override` replaces the true diff_id in the
/// config; `annotations` go on the index entry.
fn make_layout(
    parent: &Path,
    name: &str,
    marker: &str,
    annotations: serde_json::Value,
    diff_id_override: Option<&str>,
) -> TestLayout {
    let dir = parent.join(name);
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();

    let tar = layer_tar(marker);
    let diff_id = sha256_bytes(&tar).to_string();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let layer_digest = put_blob(&dir, &gz);

    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh"],
            "Cmd": ["/bin/hello"],
            "Env": ["PATH=/bin"],
            "WorkingDir": "/work",
            "User": "1000:1000",
            "Labels": {"org.example": "yes"}
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id_override.unwrap_or(&diff_id)]}
    }))
    .unwrap();
    let config_digest = put_blob(&dir, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": gz.len()}]
    }))
    .unwrap();
    let manifest_digest = put_blob(&dir, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": MANIFEST, "digest": manifest_digest, "size": manifest.len(), "annotations": annotations}]
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    TestLayout {
        dir,
        config_digest,
        manifest_digest,
        layer_digest,
        diff_id,
        size: (gz.len() + config.len()) as u64,
    }
}

fn ref_name(name: &str) -> serde_json::Value {
    json!({ "org.opencontainers.image.ref.name": name })
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

#[test]
fn import_layout_then_resolve_and_layer_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let l = make_layout(
        tmp.path(),
        "layout",
        "one",
        ref_name("localhost/podd/test:1"),
        None,
    );
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    let images = store.import(&l.dir, None).unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.id, l.config_digest);
    assert_eq!(img.repo_tags, ["localhost/podd/test:1"]);
    assert_eq!(
        img.repo_digests,
        [format!("localhost/podd/test@{}", l.manifest_digest)]
    );
    assert_eq!(img.size, l.size);
    assert_eq!(img.diff_ids, std::slice::from_ref(&l.diff_id));
    assert_eq!(img.config.entrypoint, ["/bin/sh"]);
    assert_eq!(img.config.cmd, ["/bin/hello"]);
    assert_eq!(img.config.env, ["PATH=/bin"]);
    assert_eq!(img.config.working_dir, "/work");
    assert_eq!(img.config.user, "1000:1000");
    assert_eq!(
        img.config.labels.get("org.example").map(String::as_str),
        Some("yes")
    );

    let hex = l.config_digest.strip_prefix("sha256:").unwrap();
    for r in [
        "localhost/podd/test:1".to_string(),
        l.config_digest.clone(),
        hex.to_string(),
        hex[..12].to_string(),
        format!("sha256:{}", &hex[..16]),
        format!("localhost/podd/test@{}", l.manifest_digest),
    ] {
        assert_eq!(
            store.resolve(&r).as_ref().map(|i| &i.id),
            Some(&img.id),
            "resolve {r}"
        );
    }
    assert!(
        store.resolve(&hex[..11]).is_none(),
        "prefix shorter than 12 is not enough"
    );
    assert!(store.resolve("localhost/podd/test:2").is_none());
    assert!(
        store.resolve("localhost/podd/test").is_none(),
        ":latest is not :1"
    );

    let dirs = store.layer_dirs(img);
    assert_eq!(
        dirs,
        [root
            .join("layers")
            .join(l.diff_id.strip_prefix("sha256:").unwrap())]
    );
    assert_eq!(
        fs::read_to_string(dirs[0].join("bin/hello")).unwrap(),
        "#!/bin/sh\necho one\n"
    );
    let layer_blob = root
        .join("blobs/sha256")
        .join(l.layer_digest.strip_prefix("sha256:").unwrap());
    assert!(layer_blob.is_file());
    assert_eq!(count(&root.join("tmp")), 0, "staging removed");

    drop(store);
    let store = ImageStore::open(&root).unwrap();
    assert_eq!(store.list(), images, "index survives a reopen");
    assert!(
        dirs[0].join("bin/hello").is_file(),
        "reopen keeps referenced layers"
    );
}

#[test]
fn import_archive_with_name_and_bare_tag_ref_name() {
    let tmp = tempfile::tempdir().unwrap();
    // A bare-tag ref.name ("latest") is not a full reference: without a name it stays untagged.
    let l = make_layout(tmp.path(), "layout", "two", ref_name("latest"), None);
    let archive = tmp.path().join("image.tar");
    tar_dir(&l.dir, &archive);
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let untagged = store.import(&archive, None).unwrap();
    assert!(untagged[0].repo_tags.is_empty());
    let named = store.import(&archive, Some("busybox")).unwrap();
    assert_eq!(named[0].id, l.config_digest);
    assert_eq!(named[0].repo_tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(store.list().len(), 1, "same image id is merged");
    assert!(store.resolve("busybox").is_some());
    assert!(store.resolve("docker.io/library/busybox:latest").is_some());
}

#[test]
fn containerd_name_annotation_wins_and_nested_index_picks_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let l = make_layout(tmp.path(), "layout", "three", json!({}), None);
    // Wrap the manifest in a nested index with an arm64 entry (blob absent: must be skipped).
    let manifest_size = fs::metadata(
        l.dir
            .join("blobs/sha256")
            .join(l.manifest_digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap()
    .len();
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {"mediaType": MANIFEST, "digest": format!("sha256:{}", "e".repeat(64)), "size": 10,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": MANIFEST, "digest": l.manifest_digest, "size": manifest_size,
             "platform": {"architecture": layout::HOST_ARCH, "os": "linux"}}
        ]
    }))
    .unwrap();
    let nested_digest = put_blob(&l.dir, &nested);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": INDEX, "digest": nested_digest, "size": nested.len(),
            "annotations": {"io.containerd.image.name": "127.0.0.1:5000/x:1",
                            "org.opencontainers.image.ref.name": "other/name:2"}}]
    });
    fs::write(
        l.dir.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let images = store.import(&l.dir, None).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].repo_tags, ["127.0.0.1:5000/x:1"]);
}

/// Asserts an import failed and left no trace in the store.
fn assert_nothing_stored(store: &ImageStore, root: &Path) {
    assert!(store.list().is_empty());
    assert_eq!(count(&root.join("blobs/sha256")), 0, "no blob stored");
    assert_eq!(count(&root.join("layers")), 0, "no layer stored");
    assert_eq!(count(&root.join("tmp")), 0, "staging removed");
    assert!(!root.join("images.json").exists());
}

#[test]
fn blob_digest_mismatch_is_refused_and_nothing_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let l = make_layout(
        tmp.path(),
        "layout",
        "four",
        ref_name("localhost/podd/bad:1"),
        None,
    );
    let blob = l
        .dir
        .join("blobs/sha256")
        .join(l.layer_digest.strip_prefix("sha256:").unwrap());
    let mut data = fs::read(&blob).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff; // same size, different content
    fs::write(&blob, data).unwrap();
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    let err = store.import(&l.dir, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&l.layer_digest),
        "error names the digest: {err}"
    );
    assert_nothing_stored(&store, &root);
}

#[test]
fn diff_id_mismatch_is_refused_and_nothing_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let l = make_layout(
        tmp.path(),
        "layout",
        "five",
        ref_name("localhost/podd/bad:1"),
        Some(&wrong),
    );
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    let err = store.import(&l.dir, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&wrong),
        "error names the diff_id: {err}"
    );
    assert_nothing_stored(&store, &root);
}

#[test]
fn remove_by_tag_then_by_last_tag_and_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let l = make_layout(tmp.path(), "layout", "six", json!({}), None);
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    store.import(&l.dir, Some("localhost/a:1")).unwrap();
    let img = store
        .import(&l.dir, Some("localhost/b:1"))
        .unwrap()
        .remove(0);
    assert_eq!(img.repo_tags, ["localhost/a:1", "localhost/b:1"]);

    store.remove("localhost/a:1").unwrap();
    let left = store
        .resolve(&img.id)
        .expect("image stays while it has another tag");
    assert_eq!(left.repo_tags, ["localhost/b:1"]);
    assert_eq!(
        left.repo_digests,
        [format!("localhost/b@{}", l.manifest_digest)]
    );
    assert!(store.resolve("localhost/a:1").is_none());
    assert!(store.layer_dirs(&left)[0].is_dir());

    store.remove("localhost/b:1").unwrap();
    assert!(
        store.resolve(&img.id).is_none(),
        "last tag removes the image"
    );
    assert_eq!(count(&root.join("blobs/sha256")), 0, "blobs collected");
    assert_eq!(count(&root.join("layers")), 0, "layers collected");
    store.remove("localhost/b:1").unwrap();
    store.remove(&img.id).unwrap();

    // By id, an image with several tags goes at once.
    store.import(&l.dir, Some("localhost/a:1")).unwrap();
    store.import(&l.dir, Some("localhost/b:1")).unwrap();
    store.remove(&img.id[7..19]).unwrap();
    assert!(store.list().is_empty());
    drop(store);
    assert!(
        ImageStore::open(&root).unwrap().list().is_empty(),
        "removal persisted"
    );
}

#[test]
fn tag_moves_to_newly_imported_image() {
    let tmp = tempfile::tempdir().unwrap();
    let a = make_layout(tmp.path(), "a", "seven", json!({}), None);
    let b = make_layout(tmp.path(), "b", "eight", json!({}), None);
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    store.import(&a.dir, Some("localhost/x:1")).unwrap();
    store.import(&b.dir, Some("localhost/x:1")).unwrap();
    assert_eq!(store.resolve("localhost/x:1").unwrap().id, b.config_digest);
    let old = store.resolve(&a.config_digest).unwrap();
    assert!(old.repo_tags.is_empty(), "old image keeps no tag");
}

#[test]
fn open_cleans_leftovers_of_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    drop(ImageStore::open(&root).unwrap());
    fs::create_dir_all(root.join("tmp/import-x/layers/.tmp-abc/bin")).unwrap();
    fs::create_dir_all(root.join("layers").join("f".repeat(64))).unwrap();
    fs::write(root.join("blobs/sha256").join("d".repeat(64)), b"orphan").unwrap();
    fs::write(root.join(".tmp-images.json-1"), b"half").unwrap();
    let store = ImageStore::open(&root).unwrap();
    assert!(store.list().is_empty());
    assert_eq!(count(&root.join("tmp")), 0);
    assert_eq!(count(&root.join("layers")), 0);
    assert_eq!(count(&root.join("blobs/sha256")), 0);
    assert!(!root.join(".tmp-images.json-1").exists());
}

#[test]
fn import_rejects_bad_name_and_missing_path() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let l = make_layout(tmp.path(), "layout", "nine", json!({}), None);
    assert!(matches!(
        store.import(&l.dir, Some("Bad Name")),
        Err(ImageError::InvalidReference { .. })
    ));
    let err = store.import(&tmp.path().join("nope"), None).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ImageStore>();
}
