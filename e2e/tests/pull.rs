//! Pulls from the local plain-HTTP registry (`hack/registry start`, 127.0.0.1:5000): by tag and
//! by digest, zstd layers, the image config driving the container, whiteouts and opaque
//! directories in the rootfs, streamed progress, removal by tag and by id, a missing manifest.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::oci::{hex_of, Entry, Layer, Layout, RunConfig};
use e2e::registry::{unique_repo, Registry};
use e2e::{cri as build, eventually_ok, host, Pod, Podd};
use podd_proto::podd::v1 as poddapi;
use tonic::Code;

/// A layer only this test run has (so its blobs are this test's alone in the registry).
fn unique_layer(hint: &str) -> Result<Layer> {
    let marker = unique_repo(hint);
    Layer::from_entries(&[
        Entry::dir("e2e"),
        Entry::file("e2e/marker", format!("{marker}\n")),
    ])
}

/// Creates and starts a container of `image` in `pod` (empty `argv`: the image's own).
async fn run_image(
    podd: &Podd,
    pod: &Pod,
    name: &str,
    image: &str,
    argv: &[&str],
) -> Result<String> {
    let cfg = build::image_container_config(&pod.config, name, image, argv);
    let id = podd.create_container(pod, cfg).await?;
    podd.start_container(&id).await?;
    Ok(id)
}

#[tokio::test]
async fn pull_by_tag_and_digest_runs_the_image_config() -> Result<()> {
    let reg = Registry::plain()?;
    let podd = Podd::start().await?;
    let app = Layer::from_entries(&[
        Entry::dir("srv"),
        Entry::dir("srv/app"),
        Entry::file("srv/app/README", "pulled from a registry\n"),
    ])?;
    let run = RunConfig {
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        // No `exec`: the shell stays PID 1, so its argv shows what the runtime ran.
        cmd: vec![
            r#"trap "exit 0" TERM; echo "$GREETING from $PWD" >/tmp/started; while :; do sleep 1; done"#
                .into(),
        ],
        env: vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "GREETING=hello".into(),
        ],
        working_dir: "/srv/app".into(),
    };
    let (layout, pushed) = reg.push_new(
        "config",
        &[Layer::busybox()?, unique_layer("config")?, app],
        &run,
        &["v1"],
    )?;
    let pushed = &pushed[0];

    let id = podd.pull_ok(&pushed.reference).await?;
    ensure!(
        id == layout.config_digest,
        "PullImage {} returned {id}, want the config digest {}",
        pushed.reference,
        layout.config_digest
    );
    let st = podd
        .image_status(&pushed.reference)
        .await?
        .with_context(|| format!("ImageStatus {}: not found after the pull", pushed.reference))?;
    ensure!(st.id == id, "ImageStatus id {} != pulled id {id}", st.id);
    ensure!(
        st.repo_tags.contains(&pushed.reference),
        "ImageStatus repo_tags {:?} lack {}",
        st.repo_tags,
        pushed.reference
    );

    // By digest: the same image, and the digest reference is recorded.
    let by_digest = pushed.by_digest();
    let id2 = podd.pull_ok(&by_digest).await?;
    ensure!(
        id2 == id,
        "pull by digest {by_digest} gave {id2}, by tag {id}"
    );
    let st = podd
        .image_status(&by_digest)
        .await?
        .with_context(|| format!("ImageStatus {by_digest}: not found"))?;
    ensure!(
        st.repo_digests.contains(&by_digest),
        "ImageStatus repo_digests {:?} lack {by_digest}",
        st.repo_digests
    );
    let images: Vec<_> = podd
        .list_images()
        .await?
        .into_iter()
        .filter(|i| i.id == id)
        .collect();
    ensure!(
        images.len() == 1,
        "ListImages lists image {id} {} times",
        images.len()
    );

    // No command given: the image's Entrypoint + Cmd, Env and WorkingDir.
    let pod = podd.run_default_pod("config").await?;
    let cid = run_image(&podd, &pod, "app", &pushed.reference, &[]).await?;
    let started = eventually_ok(
        "the image's Cmd to write /tmp/started",
        Duration::from_secs(20),
        || podd.exec_ok(&cid, &["cat", "/tmp/started"]),
    )
    .await?;
    ensure!(
        started == "hello from /srv/app\n",
        "the image's Cmd wrote {started:?}, want \"hello from /srv/app\\n\" (Env GREETING, WorkingDir /srv/app)"
    );
    let argv = podd.exec_ok(&cid, &["cat", "/proc/1/cmdline"]).await?;
    let argv: Vec<&str> = argv.trim_end_matches('\0').split('\0').collect();
    ensure!(
        argv.len() == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" && argv[2] == run.cmd[0],
        "PID 1 runs {argv:?}, want Entrypoint + Cmd {:?} {:?}",
        run.entrypoint,
        run.cmd
    );
    let readme = podd.exec_ok(&cid, &["cat", "README"]).await;
    ensure!(
        readme.as_deref().ok() == Some("pulled from a registry\n"),
        "`cat README` in /srv/app: {readme:?}"
    );
    Ok(())
}

#[tokio::test]
async fn pull_zstd_layers() -> Result<()> {
    let reg = Registry::plain()?;
    let podd = Podd::start().await?;
    let tmp = tempfile::tempdir()?;
    let layout = Layout::write(
        &tmp.path().join("layout"),
        "latest",
        &[Layer::busybox()?, unique_layer("zstd")?],
        &RunConfig::shell(),
    )?;
    let pushed = reg.push(&layout, &unique_repo("zstd"), "v1", true)?;
    let source = format!("docker://{}", pushed.reference);
    let manifest = host::run(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &source],
    )?;
    ensure!(
        manifest.contains("tar+zstd"),
        "skopeo did not push zstd layers (manifest {manifest})"
    );

    let id = podd.pull_ok(&pushed.reference).await?;
    ensure!(
        id == layout.config_digest,
        "pulled {id}, want {}",
        layout.config_digest
    );
    let pod = podd.run_default_pod("zstd").await?;
    let cid = run_image(&podd, &pod, "a", &pushed.reference, &["sleep", "3600"]).await?;
    let passwd = podd.exec_ok(&cid, &["head", "-n1", "/etc/passwd"]).await?;
    ensure!(
        passwd == "root:x:0:0:root:/root:/bin/sh\n",
        "/etc/passwd starts {passwd:?}"
    );
    let marker = podd.exec_ok(&cid, &["cat", "/e2e/marker"]).await?;
    ensure!(
        marker.starts_with("e2e/zstd-"),
        "/e2e/marker holds {marker:?}"
    );
    Ok(())
}

#[tokio::test]
async fn whiteouts_and_opaque_dirs_give_the_right_rootfs() -> Result<()> {
    let reg = Registry::plain()?;
    let podd = Podd::start().await?;
    let lower = Layer::from_entries(&[
        Entry::dir("data"),
        Entry::file("data/keep", "keep\n"),
        Entry::file("data/gone", "gone\n"),
        Entry::dir("data/gonedir"),
        Entry::file("data/gonedir/x", "x\n"),
        Entry::file("data/becomesdir", "a file below\n"),
        Entry::dir("opaque"),
        Entry::file("opaque/old1", "old1\n"),
        Entry::dir("opaque/sub"),
        Entry::file("opaque/sub/old2", "old2\n"),
    ])?;
    let upper = Layer::from_entries(&[
        Entry::whiteout("data/gone"),
        Entry::whiteout("data/gonedir"),
        // A directory replaces a file below (no whiteout needed, as docker writes it).
        Entry::dir("data/becomesdir"),
        Entry::file("data/becomesdir/inner", "inner\n"),
        Entry::file("data/added", "added\n"),
        Entry::symlink("data/link", "keep"),
        Entry::hardlink("data/hard", "data/added"),
        Entry::opaque("opaque"),
        Entry::file("opaque/new", "new\n"),
        // A file of the busybox layer two layers down.
        Entry::whiteout("usr/local/bin/ipc-probe"),
    ])?;
    let (_layout, pushed) = reg.push_new(
        "whiteout",
        &[Layer::busybox()?, unique_layer("whiteout")?, lower, upper],
        &RunConfig::shell(),
        &["v1"],
    )?;
    let image = &pushed[0].reference;
    podd.pull_ok(image).await?;
    let pod = podd.run_default_pod("whiteout").await?;
    let cid = run_image(&podd, &pod, "a", image, &["sleep", "3600"]).await?;

    let checks: &[(&[&str], &str)] = &[
        (
            &["ls", "-1A", "/data"],
            "added\nbecomesdir\nhard\nkeep\nlink\n",
        ),
        (&["ls", "-1A", "/opaque"], "new\n"),
        (&["ls", "-1A", "/data/becomesdir"], "inner\n"),
        (
            &[
                "cat",
                "/data/keep",
                "/data/link",
                "/data/added",
                "/data/hard",
                "/opaque/new",
            ],
            "keep\nkeep\nadded\nadded\nnew\n",
        ),
        (&["readlink", "/data/link"], "keep\n"),
        (&["stat", "-c", "%h", "/data/hard"], "2\n"),
        // Only the whited-out file is gone; its neighbour from the same layer stays.
        (&["ls", "-1A", "/usr/local/bin"], "syscall-probe\n"),
        // No whiteout marker is visible anywhere.
        (&["find", "/data", "/opaque", "/usr", "-name", ".wh.*"], ""),
    ];
    let mut wrong = Vec::new();
    for (argv, want) in checks {
        match podd.exec_ok(&cid, argv).await {
            Ok(got) if got == *want => {}
            Ok(got) => wrong.push(format!("{argv:?}: got {got:?}, want {want:?}")),
            Err(e) => wrong.push(format!("{argv:?}: {e:#}")),
        }
    }
    ensure!(
        wrong.is_empty(),
        "rootfs of the pulled image is wrong:\n  {}",
        wrong.join("\n  ")
    );
    Ok(())
}

#[tokio::test]
async fn streamed_pull_reports_every_blob_then_the_image_id() -> Result<()> {
    let reg = Registry::plain()?;
    let podd = Podd::start().await?;
    let (layout, pushed) = reg.push_new(
        "stream",
        &[Layer::busybox()?, unique_layer("stream")?],
        &RunConfig::shell(),
        &["v1"],
    )?;
    let image = &pushed[0].reference;
    let req = poddapi::PullImageRequest {
        request: Some(e2e::api::PullImageRequest {
            image: Some(e2e::api::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let mut stream = podd
        .api
        .clone()
        .pull_image(req)
        .await
        .with_context(|| format!("podd.v1 PullImage {image}"))?
        .into_inner();
    let mut msgs = Vec::new();
    let collect = async {
        while let Some(m) = stream.message().await? {
            msgs.push(m);
        }
        Ok::<_, tonic::Status>(())
    };
    tokio::time::timeout(Duration::from_secs(120), collect)
        .await
        .context("podd.v1 PullImage stream did not end within 120 s")?
        .map_err(|s| {
            anyhow::anyhow!("podd.v1 PullImage {image}: {:?}: {}", s.code(), s.message())
        })?;

    let Some(last) = msgs.last() else {
        bail!("podd.v1 PullImage {image} streamed no message");
    };
    ensure!(last.done, "the last message is not marked done: {last:?}");
    ensure!(
        last.image_ref == layout.config_digest,
        "the last message's image_ref {:?}, want {}",
        last.image_ref,
        layout.config_digest
    );
    ensure!(
        msgs.iter().filter(|m| m.done).count() == 1,
        "more than one message marked done: {msgs:?}"
    );
    for digest in &layout.layer_digests {
        let about: Vec<_> = msgs.iter().filter(|m| &m.digest == digest).collect();
        let Some(final_msg) = about.last() else {
            bail!("no progress message about layer {digest}: {msgs:?}");
        };
        ensure!(
            about.iter().all(|m| m.kind == "layer"),
            "messages about {digest} not of kind layer: {about:?}"
        );
        ensure!(
            final_msg.total > 0 && final_msg.current == final_msg.total,
            "the last message about layer {digest} is not complete: {final_msg:?}"
        );
        let mut prev = 0;
        for m in &about {
            ensure!(
                m.current >= prev,
                "progress of {digest} went backwards: {about:?}"
            );
            prev = m.current;
        }
    }
    // The stream and the CRI call agree.
    let id = podd.pull_ok(image).await?;
    ensure!(
        id == last.image_ref,
        "CRI PullImage {id} != streamed {}",
        last.image_ref
    );
    Ok(())
}

#[tokio::test]
async fn remove_by_tag_keeps_other_tags_remove_by_id_removes_the_image() -> Result<()> {
    let reg = Registry::plain()?;
    let podd = Podd::start().await?;
    let unique = unique_layer("rmi")?;
    let (layout, pushed) = reg.push_new(
        "rmi",
        &[Layer::busybox()?, unique.clone()],
        &RunConfig::shell(),
        &["a", "b"],
    )?;
    let (a, b) = (&pushed[0].reference, &pushed[1].reference);
    let id = podd.pull_ok(a).await?;
    let id_b = podd.pull_ok(b).await?;
    ensure!(
        id == id_b,
        "tags a and b of one image pulled as {id} and {id_b}"
    );
    let st = podd
        .image_status(&id)
        .await?
        .context("ImageStatus by id: not found")?;
    ensure!(
        st.repo_tags.contains(a) && st.repo_tags.contains(b),
        "image {id} has repo_tags {:?}, want {a} and {b}",
        st.repo_tags
    );

    podd.remove_image(a).await?;
    ensure!(
        podd.image_status(a).await?.is_none(),
        "ImageStatus {a} still finds an image after RemoveImage {a}"
    );
    let st = podd
        .image_status(b)
        .await?
        .with_context(|| format!("RemoveImage {a} also removed {b}"))?;
    ensure!(st.id == id, "{b} now names {}, want {id}", st.id);
    ensure!(
        !st.repo_tags.contains(a) && st.repo_tags.contains(b),
        "after RemoveImage {a}, repo_tags {:?}",
        st.repo_tags
    );

    podd.remove_image(&id).await?;
    ensure!(
        podd.image_status(b).await?.is_none(),
        "{b} still found after RemoveImage {id}"
    );
    ensure!(
        podd.image_status(&id).await?.is_none(),
        "{id} still found after RemoveImage {id}"
    );
    let listed: Vec<_> = podd
        .list_images()
        .await?
        .into_iter()
        .filter(|i| i.id == id)
        .collect();
    ensure!(listed.is_empty(), "ListImages still lists {id}: {listed:?}");
    // Removing what is gone succeeds (kubelet relies on it).
    podd.remove_image(&id).await?;
    // Nothing of the image's own blobs stays on disk.
    for digest in [&layout.config_digest, &unique.digest, &unique.diff_id] {
        let left = podd.state_paths_mentioning(hex_of(digest));
        ensure!(
            left.is_empty(),
            "{digest} of the removed image is still stored: {left:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn missing_manifest_is_not_found() -> Result<()> {
    let reg = Registry::plain()?;
    let podd = Podd::start().await?;
    let image = format!("{}/{}:nope", reg.host, unique_repo("missing"));
    match podd.pull(&image, None).await {
        Ok(id) => bail!("PullImage {image} (never pushed) returned {id}"),
        Err(s) => {
            ensure!(
                s.code() == Code::NotFound,
                "PullImage {image} (never pushed): {:?} {:?}, want NOT_FOUND",
                s.code(),
                s.message()
            );
            ensure!(
                s.message().contains(&image) || s.message().contains(&image[..image.len() - 5]),
                "the NOT_FOUND message does not name {image}: {:?}",
                s.message()
            );
        }
    }
    ensure!(
        podd.list_images().await?.is_empty(),
        "a failed pull listed an image"
    );
    Ok(())
}
