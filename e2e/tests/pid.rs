//! PID: each container sees only its own processes, its workload as PID 1; with
//! shareProcessNamespace (pid POD) the containers see each other.

use anyhow::{ensure, Result};
use e2e::api::NamespaceMode;
use e2e::{cri, Podd};

/// `ps -o pid,args` in a container: (pid, args) of every process it sees.
async fn ps(podd: &Podd, id: &str) -> Result<Vec<(u32, String)>> {
    let out = podd.exec_ok(id, &["ps", "-o", "pid,args"]).await?;
    let mut v = Vec::new();
    for line in out.lines().skip(1) {
        let line = line.trim();
        let (pid, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        v.push((pid.parse()?, args.trim().to_string()));
    }
    Ok(v)
}

#[tokio::test]
async fn containers_have_their_own_pid_namespace() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;

    let pod = podd.run_default_pod("pid").await?;
    let a = podd.run_container(&pod, "a", &["sleep", "3600"]).await?;
    let b = podd.run_container(&pod, "b", &["sleep", "3601"]).await?;

    for (id, mine, theirs) in [
        (&a, "sleep 3600", "sleep 3601"),
        (&b, "sleep 3601", "sleep 3600"),
    ] {
        let procs = ps(&podd, id).await?;
        ensure!(
            procs.iter().any(|(pid, args)| *pid == 1 && args == mine),
            "{mine:?} is not PID 1 of its container: {procs:?}"
        );
        ensure!(
            !procs.iter().any(|(_, args)| args == theirs),
            "the container of {mine:?} sees the other container's {theirs:?}: {procs:?}"
        );
        // Nothing but its workload and the ps itself (no infra, no other workload, no host).
        let strangers: Vec<_> = procs
            .iter()
            .filter(|(_, args)| args != mine && args != "ps -o pid,args")
            .collect();
        ensure!(
            strangers.is_empty(),
            "the container of {mine:?} sees processes not its own: {strangers:?}"
        );
        let cmdline = podd.exec_ok(id, &["cat", "/proc/1/cmdline"]).await?;
        ensure!(
            cmdline == format!("{}\0", mine.replace(' ', "\0")),
            "/proc/1/cmdline is {cmdline:?}, want the workload {mine:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn share_process_namespace_shows_each_other() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;

    let mut cfg = podd.pod_config("pid-shared", "");
    cri::set_pod_pid_mode(&mut cfg, NamespaceMode::Pod);
    let pod = podd.run_pod(cfg).await?;
    let a = podd.run_container(&pod, "a", &["sleep", "3600"]).await?;
    let b = podd.run_container(&pod, "b", &["sleep", "3601"]).await?;

    for id in [&a, &b] {
        let procs = ps(&podd, id).await?;
        for want in ["sleep 3600", "sleep 3601"] {
            ensure!(
                procs.iter().any(|(_, args)| args == want),
                "with a shared PID namespace, {want:?} is not visible: {procs:?}"
            );
        }
    }
    let pa = podd.exec_ok(&a, &["readlink", "/proc/self/ns/pid"]).await?;
    let pb = podd.exec_ok(&b, &["readlink", "/proc/self/ns/pid"]).await?;
    ensure!(
        pa == pb,
        "a and b are in different PID namespaces: {pa:?} vs {pb:?}"
    );
    Ok(())
}
