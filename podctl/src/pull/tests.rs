use std::io::Write;
use std::sync::{Arc, Mutex};

use clap::Parser;
use indicatif::ProgressDrawTarget;
use podd_proto::podd::v1::PullProgress;

use super::progress::{Bars, Plain};
use super::*;
use crate::testing::{image, FakeServer, PullMode};
use crate::{Cli, Command, ImageCommand};

/// A writer the test can read back after the renderer wrote to it.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const MANIFEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const CONFIG: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const LAYER_A: &str = "sha256:aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000";
const LAYER_B: &str = "sha256:bbbbbbbbbbbb0000000000000000000000000000000000000000000000000000";
const IMAGE_ID: &str = "sha256:9999999999999999999999999999999999999999999999999999999999999999";
const REF: &str = "127.0.0.1:5000/t/busybox:1";

fn msg(digest: &str, kind: &str, total: u64, current: u64, status: &str) -> PullProgress {
    PullProgress {
        digest: digest.into(),
        kind: kind.into(),
        total,
        current,
        status: status.into(),
        reference: REF.into(),
        ..Default::default()
    }
}

fn done() -> PullProgress {
    PullProgress {
        done: true,
        image_ref: IMAGE_ID.into(),
        reference: REF.into(),
        ..Default::default()
    }
}

/// A pull as podd streams it: resolving, a manifest, a config already
/// stored, one layer fetched by another pull, one downloaded in steps.
fn script() -> Vec<PullProgress> {
    vec![
        msg("", "", 0, 0, "resolving"),
        msg(MANIFEST, "manifest", 527, 0, "downloading"),
        msg(MANIFEST, "manifest", 527, 527, "done"),
        msg(CONFIG, "config", 1_480, 1_480, "exists"),
        msg(LAYER_A, "layer", 2_500_000, 0, "waiting"),
        msg(LAYER_B, "layer", 750_000, 0, "downloading"),
        msg(LAYER_B, "layer", 750_000, 250_000, "downloading"),
        msg(LAYER_B, "layer", 750_000, 750_000, "downloading"),
        msg(LAYER_A, "layer", 2_500_000, 2_500_000, "done"),
        msg(LAYER_B, "layer", 750_000, 750_000, "verifying"),
        msg(LAYER_B, "layer", 750_000, 750_000, "unpacking"),
        msg(LAYER_B, "layer", 750_000, 750_000, "done"),
    ]
}

const SCRIPT_LINES: &str = "\
127.0.0.1:5000/t/busybox:1: resolving
manifest 111111111111: downloading (527B)
manifest 111111111111: done (527B)
config 222222222222: exists (1.48kB)
layer aaaaaaaaaaaa: waiting (2.5MB)
layer bbbbbbbbbbbb: downloading (750kB)
layer aaaaaaaaaaaa: done (2.5MB)
layer bbbbbbbbbbbb: verifying (750kB)
layer bbbbbbbbbbbb: unpacking (750kB)
layer bbbbbbbbbbbb: done (750kB)
";

#[test]
fn plain_output_is_one_line_per_status_change() {
    let buf = Buf::default();
    let mut p = Progress::Plain(Plain::new(REF, Box::new(buf.clone())));
    for m in script() {
        p.update(&m);
    }
    p.update(&done());
    p.finish();
    let text = buf.text();
    assert_eq!(text, SCRIPT_LINES);
    assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
}

#[test]
fn plain_output_names_the_requested_reference_when_podd_gives_none() {
    let buf = Buf::default();
    let mut p = Progress::Plain(Plain::new("busybox", Box::new(buf.clone())));
    p.update(&PullProgress {
        status: "resolving".into(),
        ..Default::default()
    });
    p.update(&PullProgress {
        digest: LAYER_A.into(),
        status: "downloading".into(),
        ..Default::default()
    });
    assert_eq!(
        buf.text(),
        "busybox: resolving\nblob aaaaaaaaaaaa: downloading\n"
    );
}

#[test]
fn bars_follow_each_blob() {
    let mut bars = Bars::new(REF, ProgressDrawTarget::hidden());
    let all = script();
    // Up to the layer B half-way point.
    for m in &all[..7] {
        bars.update(m);
    }
    // manifest done, config exists; layer A waits, layer B downloads.
    assert_eq!(
        bars.header().message(),
        format!("{REF}: pulling, 2 of 4 blobs done")
    );
    let b = bars.blob(LAYER_B).unwrap();
    assert_eq!(b.prefix(), "layer bbbbbbbbbbbb");
    assert_eq!((b.position(), b.length()), (250_000, Some(750_000)));
    assert_eq!(b.message(), "downloading");
    assert!(!b.is_finished());
    let a = bars.blob(LAYER_A).unwrap();
    assert_eq!((a.position(), a.message()), (0, "waiting".to_string()));
    let c = bars.blob(CONFIG).unwrap();
    assert!(c.is_finished());
    assert_eq!((c.position(), c.message()), (1_480, "exists".to_string()));

    for m in &all[7..] {
        bars.update(m);
    }
    for d in [MANIFEST, LAYER_A, LAYER_B] {
        let bar = bars.blob(d).unwrap();
        assert!(bar.is_finished(), "{d}");
        assert_eq!(bar.message(), "done");
        assert_eq!(Some(bar.position()), bar.length());
    }
    assert_eq!(
        bars.header().message(),
        format!("{REF}: pulling, 4 of 4 blobs done")
    );
    let mut p = Progress::Bars(bars);
    p.finish();
    let Progress::Bars(bars) = p else {
        unreachable!()
    };
    assert!(bars.header().is_finished());
}

#[test]
fn a_failed_pull_leaves_blob_bars_where_they_were() {
    let mut bars = Bars::new(REF, ProgressDrawTarget::hidden());
    for m in &script()[..7] {
        bars.update(m);
    }
    let mut p = Progress::Bars(bars);
    p.abandon();
    let Progress::Bars(bars) = p else {
        unreachable!()
    };
    let b = bars.blob(LAYER_B).unwrap();
    assert!(b.is_finished());
    assert_eq!((b.position(), b.message()), (250_000, "downloading".into()));
    assert_eq!(bars.blob(LAYER_A).unwrap().message(), "waiting");
    assert!(bars.header().is_finished());
}

#[tokio::test]
async fn streamed_pull_shows_progress_and_returns_the_id() {
    let mut items: Vec<_> = script().into_iter().map(Ok).collect();
    items.push(Ok(done()));
    let fake = FakeServer::start(PullMode::Script(items), vec![]).await;
    let buf = Buf::default();
    let mut progress = Progress::Plain(Plain::new(REF, Box::new(buf.clone())));
    let auth = Some(cri::AuthConfig {
        username: "u".into(),
        password: "p:w".into(),
        ..Default::default()
    });
    let pulled = pull(&fake.clients, REF, auth.clone(), &mut progress)
        .await
        .unwrap();
    assert_eq!(
        pulled,
        Pulled {
            image_ref: IMAGE_ID.into(),
            streamed: true
        }
    );
    assert_eq!(buf.text(), SCRIPT_LINES);
    let st = fake.state();
    assert_eq!(st.streamed_pulls.len(), 1);
    let req = &st.streamed_pulls[0];
    assert_eq!(req.image.as_ref().unwrap().image, REF);
    assert_eq!(req.auth, auth);
    assert!(st.unary_pulls.is_empty());
}

#[tokio::test]
async fn unimplemented_falls_back_to_the_cri_pull() {
    let fake = FakeServer::start(PullMode::Unimplemented, vec![]).await;
    fake.state()
        .registry
        .push((REF.into(), image(&"9".repeat(64), &[REF])));
    let buf = Buf::default();
    let mut progress = Progress::Plain(Plain::new(REF, Box::new(buf.clone())));
    let auth = Some(cri::AuthConfig {
        username: "u".into(),
        password: "secret".into(),
        ..Default::default()
    });
    let pulled = pull(&fake.clients, REF, auth.clone(), &mut progress)
        .await
        .unwrap();
    assert_eq!(
        pulled,
        Pulled {
            image_ref: IMAGE_ID.into(),
            streamed: false
        }
    );
    assert_eq!(buf.text(), "", "no progress without a stream");
    {
        let st = fake.state();
        assert_eq!(st.unary_pulls.len(), 1);
        assert_eq!(st.unary_pulls[0].auth, auth);
        assert_eq!(st.unary_pulls[0].image.as_ref().unwrap().image, REF);
    }

    // A failing fallback reports the CRI pull's error.
    let err = pull(&fake.clients, "nope:1", None, &mut progress)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pull image nope:1: nope:1: manifest unknown (NotFound)"
    );
}

#[tokio::test]
async fn an_error_mid_stream_fails_the_pull_without_fallback() {
    let items = vec![
        Ok(msg("", "", 0, 0, "resolving")),
        Ok(msg(LAYER_A, "layer", 10, 0, "downloading")),
        Err(tonic::Status::unauthenticated(
            "127.0.0.1:5000 refused the credentials",
        )),
    ];
    let fake = FakeServer::start(PullMode::Script(items), vec![]).await;
    let buf = Buf::default();
    let mut progress = Progress::Plain(Plain::new(REF, Box::new(buf.clone())));
    let err = pull(&fake.clients, REF, None, &mut progress)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pull image {REF}: 127.0.0.1:5000 refused the credentials (Unauthenticated)")
    );
    assert_eq!(
        crate::client::rpc_code(&err),
        Some(tonic::Code::Unauthenticated)
    );
    assert!(fake.state().unary_pulls.is_empty());
}

#[tokio::test]
async fn unimplemented_mid_stream_is_an_error_not_a_fallback() {
    let items = vec![
        Ok(msg(LAYER_A, "layer", 10, 0, "downloading")),
        Err(tonic::Status::unimplemented(
            "zstd layers are not supported",
        )),
    ];
    let fake = FakeServer::start(PullMode::Script(items), vec![]).await;
    let mut progress = Progress::Plain(Plain::new(REF, Box::new(Buf::default())));
    let err = pull(&fake.clients, REF, None, &mut progress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("zstd layers"), "{err}");
    assert!(fake.state().unary_pulls.is_empty());
}

#[tokio::test]
async fn a_stream_that_ends_without_done_is_an_error() {
    let items = vec![Ok(msg(LAYER_A, "layer", 10, 0, "downloading"))];
    let fake = FakeServer::start(PullMode::Script(items), vec![]).await;
    let mut progress = Progress::Plain(Plain::new(REF, Box::new(Buf::default())));
    let err = pull(&fake.clients, REF, None, &mut progress)
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "pull image {REF}: podd ended the progress stream before the pull was done"
        )),
        "{err}"
    );
}

#[test]
fn credentials_from_creds_or_stdin() {
    let none = &mut std::io::empty();
    let a = auth_config(Some("alice:pa:ss"), None, false, none)
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.username.as_str(), a.password.as_str()),
        ("alice", "pa:ss")
    );
    assert_eq!(auth_config(None, None, false, none).unwrap(), None);

    let a = auth_config(None, Some("bob"), true, &mut &b"s3cret\n"[..])
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.username.as_str(), a.password.as_str()),
        ("bob", "s3cret")
    );
    let a = auth_config(None, Some("bob"), true, &mut &b"s3cret\r\n"[..])
        .unwrap()
        .unwrap();
    assert_eq!(a.password, "s3cret");
    // Only one line end is trimmed; spaces are the password's.
    let a = auth_config(None, Some("bob"), true, &mut &b" x \n\n"[..])
        .unwrap()
        .unwrap();
    assert_eq!(a.password, " x \n");
}

#[test]
fn bad_credentials_are_refused_without_echoing_the_password() {
    let none = &mut std::io::empty();
    let err = |r: Result<Option<cri::AuthConfig>>| r.unwrap_err().to_string();
    let e = err(auth_config(Some("hunter2"), None, false, none));
    assert!(e.starts_with("--creds needs USER:PASS"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    assert_eq!(
        err(auth_config(Some(":hunter2"), None, false, none)),
        "the registry user name is empty; give --creds USER:PASS or --username USER"
    );
    assert_eq!(
        err(auth_config(Some("alice:"), None, false, none)),
        "the registry password for user alice is empty"
    );
    assert_eq!(
        err(auth_config(None, Some("bob"), true, &mut &b"\n"[..])),
        "the registry password for user bob is empty"
    );
    assert_eq!(
        err(auth_config(None, Some("bob"), false, none)),
        "--username needs --password-stdin (the password is read from stdin)"
    );
    assert_eq!(
        err(auth_config(None, None, true, none)),
        "--password-stdin needs --username USER"
    );
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("podctl").chain(args.iter().copied()))
}

#[test]
fn pull_arguments() {
    let Command::Pull { opts } = parse(&["pull", "busybox", "--creds", "u:p"])
        .unwrap()
        .command
    else {
        panic!("not pull")
    };
    assert_eq!(opts.image, "busybox");
    assert_eq!(opts.creds.as_deref(), Some("u:p"));
    assert_eq!(opts.output, None);

    let Command::Image {
        command: ImageCommand::Pull { opts },
    } = parse(&[
        "image",
        "pull",
        "-o",
        "json",
        "--username",
        "u",
        "--password-stdin",
        "x:1",
    ])
    .unwrap()
    .command
    else {
        panic!("not image pull")
    };
    assert_eq!(opts.image, "x:1");
    assert_eq!(opts.username.as_deref(), Some("u"));
    assert!(opts.password_stdin);
    assert_eq!(opts.output, Some(crate::output::Format::Json));

    for bad in [
        &["pull"][..],
        &[
            "pull",
            "x",
            "--creds",
            "u:p",
            "--username",
            "u",
            "--password-stdin",
        ],
        &["pull", "x", "--username", "u"],
        &["pull", "x", "--password-stdin"],
        &["pull", "x", "-o", "xml"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn image_verb_arguments() {
    let Command::Rmi { all, images } = parse(&["rmi", "a", "b:1"]).unwrap().command else {
        panic!("not rmi")
    };
    assert_eq!(
        (all, images),
        (false, vec!["a".to_string(), "b:1".to_string()])
    );
    let Command::Rmi { all, images } = parse(&["rmi", "--all"]).unwrap().command else {
        panic!("not rmi")
    };
    assert!(all && images.is_empty());
    assert!(parse(&["rmi"]).is_err());
    assert!(parse(&["rmi", "--all", "a"]).is_err());

    let Command::Images { list, filter } = parse(&["images", "-q", "busybox"]).unwrap().command
    else {
        panic!("not images")
    };
    assert!(list.quiet);
    assert_eq!(filter.as_deref(), Some("busybox"));

    let Command::Image {
        command: ImageCommand::Inspect { opts, image },
    } = parse(&["image", "inspect", "-o", "yaml", "abc"])
        .unwrap()
        .command
    else {
        panic!("not image inspect")
    };
    assert_eq!(
        (opts.output, image.as_str()),
        (crate::output::Format::Yaml, "abc")
    );
}

fn pod(containers: &str) -> crate::manifest::Pod {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n{containers}"
    );
    crate::manifest::load("pod.yaml", &text).unwrap()
}

#[test]
fn manifest_pull_policy_is_checked() {
    let p = pod("    - {name: a, image: 'x:1', imagePullPolicy: Never}\n");
    assert_eq!(
        p.spec.containers[0].image_pull_policy,
        Some(PullPolicy::Never)
    );
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: a\n      image: x\n      imagePullPolicy: Sometimes\n";
    let err = crate::manifest::load("pod.yaml", text)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "pod.yaml:8:24: spec.containers[0].imagePullPolicy: unknown variant `Sometimes`"
        ),
        "{err}"
    );
}

#[test]
fn each_image_once_with_the_most_eager_policy() {
    let p = pod("    - {name: a, image: 'x:1'}
    - {name: b, image: 'y', imagePullPolicy: IfNotPresent}
    - {name: c, image: 'x:1', imagePullPolicy: Always}
    - {name: d, image: 'z:2', imagePullPolicy: Never}
    - {name: e, image: 'y', imagePullPolicy: Never}
");
    let uses = image_uses(&p);
    let got: Vec<(&str, Vec<&str>, PullPolicy)> = uses
        .iter()
        .map(|u| {
            (
                u.image.as_str(),
                u.containers.iter().map(String::as_str).collect(),
                u.policy,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("x:1", vec!["a", "c"], PullPolicy::Always),
            ("y", vec!["b", "e"], PullPolicy::IfNotPresent),
            ("z:2", vec!["d"], PullPolicy::Never),
        ]
    );
}

fn quiet(_: &str) -> Progress {
    Progress::Plain(Plain::new("", Box::new(Buf::default())))
}

#[tokio::test]
async fn run_pulls_what_its_policy_asks() {
    let present = image(&"1".repeat(64), &["have:1", "latest-here:latest"]);
    let fake = FakeServer::start(PullMode::Unimplemented, vec![present]).await;
    for (name, id) in [("want:1", "2"), ("latest-here:latest", "1")] {
        fake.state()
            .registry
            .push((name.into(), image(&id.repeat(64), &[name])));
    }
    let p = pod("    - {name: a, image: 'have:1'}
    - {name: b, image: 'want:1'}
    - {name: c, image: 'latest-here:latest'}
    - {name: d, image: 'have:1', imagePullPolicy: Never}
");
    ensure_images(&fake.clients, &p, quiet).await.unwrap();
    let st = fake.state();
    let pulled: Vec<&str> = st
        .unary_pulls
        .iter()
        .map(|r| r.image.as_ref().unwrap().image.as_str())
        .collect();
    // have:1 is IfNotPresent and present; want:1 is missing; :latest is Always.
    assert_eq!(pulled, ["want:1", "latest-here:latest"]);
}

#[tokio::test]
async fn a_failed_always_pull_of_an_image_podd_holds_says_why_it_pulled() {
    let present = image(&"1".repeat(64), &["localhost/podd/busybox:latest"]);
    let fake = FakeServer::start(PullMode::Unimplemented, vec![present]).await;
    // No registry serves it: the pull fails although podd has the image.
    let p = pod("    - {name: a, image: 'localhost/podd/busybox:latest'}\n");
    let err = format!(
        "{:#}",
        ensure_images(&fake.clients, &p, quiet).await.unwrap_err()
    );
    assert!(
        err.starts_with(
            "localhost/podd/busybox:latest is in podd already, but its imagePullPolicy is Always"
        ) && err.contains("IfNotPresent")
            && err.contains("manifest unknown"),
        "{err}"
    );
    // A missing image gets no such advice.
    let p = pod("    - {name: a, image: 'nowhere:latest'}\n");
    let err = format!(
        "{:#}",
        ensure_images(&fake.clients, &p, quiet).await.unwrap_err()
    );
    assert!(!err.contains("in podd already"), "{err}");
}

#[tokio::test]
async fn run_refuses_a_missing_never_image_before_making_anything() {
    let fake = FakeServer::start(PullMode::Unimplemented, vec![]).await;
    fake.state()
        .registry
        .push(("other:1".into(), image(&"3".repeat(64), &["other:1"])));
    let p = pod("    - {name: a, image: 'other:1'}
    - {name: b, image: 'gone:1', imagePullPolicy: Never}
");
    // The fake serves no RuntimeService: a RunPodSandbox would fail differently.
    let volumes = tempfile::tempdir().unwrap();
    let err = crate::run::run(&fake.clients, &p, volumes.path())
        .await
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "run pod default/p: image gone:1 (container b) is not in podd and its imagePullPolicy \
         is Never; pull it with `podctl pull gone:1` or import it with `podctl image import`"
    );
    assert!(fake.state().unary_pulls.is_empty(), "nothing pulled");
    assert_eq!(std::fs::read_dir(volumes.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn bad_credentials_fail_before_podd_is_contacted() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("absent.sock");
    let sock = sock.to_str().unwrap();
    let cli = parse(&["--socket", sock, "pull", "x:1", "--creds", "nopass"]).unwrap();
    let err = crate::commands::dispatch(cli).await.unwrap_err();
    assert!(
        err.to_string().starts_with("--creds needs USER:PASS"),
        "{err}"
    );
    // With good credentials the same command does reach for the socket.
    let cli = parse(&["--socket", sock, "pull", "x:1", "--creds", "u:p"]).unwrap();
    let err = format!("{:#}", crate::commands::dispatch(cli).await.unwrap_err());
    assert!(err.starts_with("cannot connect to podd at"), "{err}");
}
