//! Bad input: each gets its clear error and leaves nothing behind.

use std::process::Command;

use anyhow::{ensure, Result};
use e2e::{api, bins, Podd};
use tonic::Code;

/// Nothing listed, nothing under `<run dir>/pods/`.
async fn assert_nothing_left(podd: &Podd, after: &str) -> Result<()> {
    let pods = podd.list_pods().await?;
    ensure!(
        pods.is_empty(),
        "after {after}: ListPodSandbox lists {pods:?}"
    );
    let ctrs = podd.list_containers().await?;
    ensure!(
        ctrs.is_empty(),
        "after {after}: ListContainers lists {ctrs:?}"
    );
    let dirs = podd.run_dir_pods();
    ensure!(
        dirs.is_empty(),
        "after {after}: entries under the run dir's pods/: {dirs:?}"
    );
    Ok(())
}

/// Does `msg` point at line `n` (`line 7`, `:7:`, `line: 7` ...)?
fn names_line(msg: &str, n: usize) -> bool {
    [
        format!("line {n}"),
        format!("line: {n}"),
        format!(":{n}:"),
        format!("line {n},"),
    ]
    .iter()
    .any(|p| msg.contains(p.as_str()))
}

#[tokio::test]
async fn malformed_pod_yaml_is_refused_with_file_and_line() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let podctl = bins::podctl()?;

    // (file name, content, line the error is on)
    let cases = [
        (
            "bad-syntax.yaml",
            "apiVersion: v1\n\
             kind: Pod\n\
             metadata:\n  \
               name: bad-syntax\n\
             spec:\n  \
               containers:\n  \
               - name: a: b\n    \
                 image: localhost/podd/busybox:latest\n",
            7,
        ),
        (
            "bad-type.yaml",
            "apiVersion: v1\n\
             kind: Pod\n\
             metadata:\n  \
               name: bad-type\n\
             spec:\n  \
               containers:\n  \
               - name: a\n    \
                 image: localhost/podd/busybox:latest\n    \
                 command: 5\n",
            9,
        ),
    ];
    for (file, content, line) in cases {
        let path = podd.tmp_dir().join(file);
        std::fs::write(&path, content)?;
        let out = Command::new(&podctl)
            .arg("run")
            .arg(&path)
            .env("PODD_SOCKET", podd.socket())
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            !out.status.success(),
            "podctl run {file} succeeded: stdout {stdout:?}"
        );
        ensure!(!stderr.contains("panicked"), "podctl panicked: {stderr}");
        ensure!(
            stderr.contains(file),
            "podctl's error does not name the file {file}: {stderr:?}"
        );
        ensure!(
            names_line(&stderr, line),
            "podctl's error for {file} does not name line {line}: {stderr:?}"
        );
        assert_nothing_left(&podd, &format!("podctl run {file}")).await?;
    }
    Ok(())
}

#[tokio::test]
async fn create_container_in_unknown_pod_is_not_found() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod_cfg = podd.pod_config("ghost", "");
    let unknown = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let err = podd
        .runtime
        .clone()
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: unknown.to_string(),
            config: Some(e2e::cri::container_config(&pod_cfg, "a", &["sleep", "1"])),
            sandbox_config: Some(pod_cfg),
        })
        .await
        .err();
    let Some(status) = err else {
        anyhow::bail!("CreateContainer in an unknown pod succeeded");
    };
    ensure!(
        status.code() == Code::NotFound,
        "CreateContainer in an unknown pod: {:?} {:?}, want NOT_FOUND",
        status.code(),
        status.message()
    );
    ensure!(
        status.message().contains(unknown),
        "the NOT_FOUND message does not name the pod id: {:?}",
        status.message()
    );
    assert_nothing_left(&podd, "CreateContainer in an unknown pod").await
}

#[tokio::test]
async fn run_pod_sandbox_without_metadata_is_invalid_argument() -> Result<()> {
    let podd = Podd::start().await?;
    let mut cfg = podd.pod_config("nometa", "");
    cfg.metadata = None;
    let err = podd
        .runtime
        .clone()
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: String::new(),
        })
        .await
        .err();
    let Some(status) = err else {
        anyhow::bail!("RunPodSandbox without metadata succeeded");
    };
    ensure!(
        status.code() == Code::InvalidArgument,
        "RunPodSandbox without metadata: {:?} {:?}, want INVALID_ARGUMENT",
        status.code(),
        status.message()
    );
    ensure!(
        status.message().contains("metadata"),
        "the INVALID_ARGUMENT message does not name the field metadata: {:?}",
        status.message()
    );
    assert_nothing_left(&podd, "RunPodSandbox without metadata").await
}
