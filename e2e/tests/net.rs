//! NET: containers of a pod share localhost; a second pod cannot reach it.
//! (busybox 1.35 wget segfaults with -T, so time-outs come from `timeout`.)

use std::time::Duration;

use anyhow::{ensure, Result};
use e2e::{eventually_ok, Podd};

const URL: &str = "http://127.0.0.1:8080/";

#[tokio::test]
async fn pod_localhost_is_shared_and_private() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;

    let pod = podd.run_default_pod("net").await?;
    let _a = podd
        .run_container(
            &pod,
            "a",
            &[
                "sh",
                "-c",
                "mkdir -p /www && echo hello-from-a > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www",
            ],
        )
        .await?;
    let b = podd.run_container(&pod, "b", &["sleep", "3600"]).await?;

    let got = eventually_ok(
        "B to fetch A's page over 127.0.0.1",
        Duration::from_secs(20),
        || async {
            podd.exec_ok(&b, &["timeout", "5", "wget", "-q", "-O", "-", URL])
                .await
        },
    )
    .await?;
    ensure!(got == "hello-from-a\n", "B fetched {got:?}");

    let na = podd.exec_ok(&b, &["readlink", "/proc/self/ns/net"]).await?;
    let host_ns = std::fs::read_link("/proc/self/ns/net")?;
    ensure!(
        na.trim() != host_ns.to_string_lossy(),
        "the pod uses the host's network namespace ({na:?})"
    );

    let other = podd.run_default_pod("net-other").await?;
    let c = podd.run_container(&other, "c", &["sleep", "3600"]).await?;
    let nc = podd.exec_ok(&c, &["readlink", "/proc/self/ns/net"]).await?;
    ensure!(nc != na, "both pods are in network namespace {nc:?}");
    let r = podd
        .try_exec(&c, &["timeout", "5", "wget", "-q", "-O", "-", URL], 10)
        .await?;
    let stdout = String::from_utf8_lossy(&r.stdout);
    ensure!(
        r.exit_code != 0 && !stdout.contains("hello-from-a"),
        "the second pod reached pod one's server: exit code {}, stdout {stdout:?}",
        r.exit_code
    );
    // The second pod has its own port space and a working lo: its own server on the same port
    // answers it.
    let own = podd
        .exec_ok(
            &c,
            &[
                "sh",
                "-c",
                "mkdir -p /w && echo own-server > /w/index.html && httpd -p 127.0.0.1:8080 -h /w && timeout 5 wget -q -O - http://127.0.0.1:8080/",
            ],
        )
        .await?;
    ensure!(
        own == "own-server\n",
        "the second pod's own server answered {own:?}"
    );
    Ok(())
}
