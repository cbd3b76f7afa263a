//! IPC: the containers of a pod share SysV shm, POSIX message queues and /dev/shm; a second pod
//! sees none of them.

use std::time::Duration;

use anyhow::{ensure, Result};
use e2e::{eventually_ok, Podd};

#[tokio::test]
async fn ipc_is_shared_in_a_pod_and_private_to_it() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;

    let pod = podd.run_default_pod("ipc").await?;
    let a = podd
        .run_container(
            &pod,
            "a",
            &[
                "sh",
                "-c",
                "ipc-probe write podd-e2e hello && touch /tmp/written; exec sleep 3600",
            ],
        )
        .await?;
    let b = podd.run_container(&pod, "b", &["sleep", "3600"]).await?;

    eventually_ok(
        "A to have written the IPC objects",
        Duration::from_secs(20),
        || async { podd.exec_ok(&a, &["test", "-e", "/tmp/written"]).await },
    )
    .await?;

    let out = podd.exec_ok(&b, &["ipc-probe", "read", "podd-e2e"]).await?;
    for line in ["sysv: hello", "mqueue: hello", "shm: hello"] {
        ensure!(
            out.lines().any(|l| l == line),
            "B's `ipc-probe read` lacks {line:?}; it printed {out:?}"
        );
    }

    // A second pod has its own IPC namespace and /dev/shm.
    let other = podd.run_default_pod("ipc-other").await?;
    let c = podd.run_container(&other, "c", &["sleep", "3600"]).await?;
    let r = podd
        .try_exec(&c, &["ipc-probe", "read", "podd-e2e"], 10)
        .await?;
    let stdout = String::from_utf8_lossy(&r.stdout);
    let stderr = String::from_utf8_lossy(&r.stderr);
    ensure!(
        r.exit_code == 1,
        "`ipc-probe read` in the second pod: exit code {}, want 1 (nothing found); stdout {stdout:?}, stderr {stderr:?}",
        r.exit_code
    );
    ensure!(
        !stdout.contains("hello"),
        "the second pod read pod one's messages: {stdout:?}"
    );
    ensure!(
        stderr.contains("sysv missing, mqueue missing, shm missing"),
        "the second pod must find none of the three objects; stderr {stderr:?}"
    );

    // Nor does the host (pod one's /dev/shm is not the host's).
    ensure!(
        !std::path::Path::new("/dev/shm/podd-e2e").exists(),
        "/dev/shm/podd-e2e exists on the host: the pod wrote to the host's /dev/shm"
    );
    Ok(())
}
