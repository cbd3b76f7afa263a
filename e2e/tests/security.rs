//! Confinement: a default container has containerd's capabilities, masked and read-only /proc
//! paths and a read-only /sys, seen from its workload and from ExecSync; the CRI security
//! context adds or drops capabilities, sets no_new_privs, and privileged lifts it all.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use e2e::cri::{container_security_context, pod_security_context};
use e2e::{api, Pod, Podd};

/// containerd's and CRI-O's default set, as /proc/PID/status shows it.
const DEFAULT_CAPS: &str = "00000000a80425fb";

/// The `Cap*:` lines of a /proc/PID/status text: name -> hex mask.
fn caps_of(status: &str) -> BTreeMap<String, String> {
    status
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

async fn caps_in(podd: &Podd, id: &str, path: &str) -> Result<BTreeMap<String, String>> {
    let out = podd.exec_ok(id, &["cat", path]).await?;
    Ok(caps_of(&out))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Exit code of `sh -c script` in the container, with its output for messages.
async fn sh(podd: &Podd, id: &str, script: &str) -> Result<(i32, String)> {
    let (code, out, err) = podd.sh(id, script).await?;
    Ok((code, out + &err))
}

/// The mount options of `target` in the container's /proc/self/mounts (last mount wins).
async fn mount_options(podd: &Podd, id: &str, target: &str) -> Result<String> {
    let mounts = podd.exec_ok(id, &["cat", "/proc/self/mounts"]).await?;
    mounts
        .lines()
        .rev()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&target)).then(|| f.get(3).unwrap_or(&"").to_string())
        })
        .next()
        .with_context(|| format!("{target} is not a mount point in the container: {mounts}"))
}

#[tokio::test]
async fn default_container_has_containerds_confinement() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("sec").await?;
    let id = podd.run_container(&pod, "app", &["sleep", "3600"]).await?;
    podd.wait_state(
        &id,
        api::ContainerState::ContainerRunning,
        std::time::Duration::from_secs(20),
    )
    .await?;

    // The workload is PID 1 of its own PID namespace; exec gets the same sets.
    for (who, path) in [
        ("workload", "/proc/1/status"),
        ("exec", "/proc/self/status"),
    ] {
        let caps = caps_in(&podd, &id, path).await?;
        println!("{who}: {caps:?}");
        for set in ["CapBnd", "CapPrm", "CapEff"] {
            ensure!(
                caps.get(set).map(String::as_str) == Some(DEFAULT_CAPS),
                "{who} {set} is {:?}, want {DEFAULT_CAPS}: {caps:?}",
                caps.get(set)
            );
        }
        for set in ["CapInh", "CapAmb"] {
            ensure!(
                caps.get(set).map(String::as_str) == Some("0000000000000000"),
                "{who} {set} is {:?}, want none: {caps:?}",
                caps.get(set)
            );
        }
    }
    let nnp = podd
        .exec_ok(&id, &["grep", "NoNewPrivs", "/proc/1/status"])
        .await?;
    ensure!(
        nnp.contains('0'),
        "no_new_privs is off by default (CRI): {nnp:?}"
    );

    let (code, out) = sh(&podd, &id, "mkdir -p /mnt && mount -t tmpfs x /mnt").await?;
    ensure!(code != 0, "mount succeeded without CAP_SYS_ADMIN: {out}");
    // (Some kernels have no /proc/kcore at all; either way nothing can be read.)
    let (_, out) = sh(
        &podd,
        &id,
        "cat /proc/kcore 2>/dev/null | head -c 16 | wc -c",
    )
    .await?;
    ensure!(out.trim() == "0", "/proc/kcore is readable: {out}");
    if std::path::Path::new("/proc/kcore").exists() {
        mount_options(&podd, &id, "/proc/kcore")
            .await
            .context("/proc/kcore is not masked")?;
    }
    for file in ["/proc/keys", "/proc/timer_list", "/proc/interrupts"] {
        let got = podd.exec_ok(&id, &["cat", file]).await?;
        ensure!(got.is_empty(), "{file} is not masked: {got:?}");
    }
    let (code, out) = sh(&podd, &id, "ls -A /sys/firmware | wc -l").await?;
    ensure!(
        code == 0 && out.trim() == "0",
        "/sys/firmware is not masked: {out}"
    );
    let (code, out) = sh(&podd, &id, "echo x > /proc/sys/kernel/hostname").await?;
    ensure!(code != 0, "/proc/sys is writable: {out}");
    ensure!(
        podd.exec_ok(&id, &["hostname"]).await? != "x\n",
        "the hostname changed through /proc/sys"
    );
    for (target, what) in [("/proc/sys", "read-only"), ("/sys", "read-only")] {
        let opts = mount_options(&podd, &id, target).await?;
        ensure!(opts.starts_with("ro"), "{target} is not {what}: {opts}");
    }
    let (code, out) = sh(&podd, &id, "echo 1 > /proc/sysrq-trigger").await?;
    ensure!(code != 0, "/proc/sysrq-trigger is writable: {out}");
    Ok(())
}

#[tokio::test]
async fn privileged_container_gets_everything() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;

    // A privileged container in a pod that is not privileged is refused, as containerd does.
    let plain = podd.run_default_pod("plain").await?;
    let mut cfg = podd.container_config(&plain, "priv", &["sleep", "3600"]);
    container_security_context(&mut cfg).privileged = true;
    let err = podd.create_container(&plain, cfg).await.unwrap_err();
    let msg = format!("{err:#}");
    ensure!(
        msg.contains("InvalidArgument") && msg.contains("security_context.privileged"),
        "{msg}"
    );

    let mut pod_cfg = podd.pod_config("priv", "");
    pod_security_context(&mut pod_cfg).privileged = true;
    let pod: Pod = podd.run_pod(pod_cfg).await?;
    let mut cfg = podd.container_config(&pod, "priv", &["sleep", "3600"]);
    container_security_context(&mut cfg).privileged = true;
    let id = podd.create_container(&pod, cfg).await?;
    podd.start_container(&id).await?;

    // Every capability the runtime itself has (this test's bounding set is podd's).
    let host = caps_of(&std::fs::read_to_string("/proc/self/status")?);
    let caps = caps_in(&podd, &id, "/proc/1/status").await?;
    println!("privileged: {caps:?}");
    for set in ["CapBnd", "CapEff"] {
        ensure!(
            caps.get(set) == host.get("CapBnd"),
            "privileged {set} {:?} differs from the host's bounding set {:?}",
            caps.get(set),
            host.get("CapBnd")
        );
    }
    let exec_caps = caps_in(&podd, &id, "/proc/self/status").await?;
    ensure!(
        exec_caps.get("CapEff") == host.get("CapBnd"),
        "exec in a privileged container: {exec_caps:?}"
    );
    let (code, out) = sh(
        &podd,
        &id,
        "mkdir -p /mnt && mount -t tmpfs x /mnt && umount /mnt",
    )
    .await?;
    ensure!(code == 0, "mount fails in a privileged container: {out}");
    let timer = podd
        .exec_ok(&id, &["head", "-c", "1", "/proc/timer_list"])
        .await?;
    ensure!(!timer.is_empty(), "/proc/timer_list is masked");
    let sys = mount_options(&podd, &id, "/proc/sys").await;
    ensure!(sys.is_err(), "/proc/sys is read-only: {sys:?}");
    let opts = mount_options(&podd, &id, "/sys").await?;
    ensure!(opts.starts_with("rw"), "/sys is not read-write: {opts}");
    Ok(())
}

#[tokio::test]
async fn security_context_adjusts_capabilities() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("caps").await?;

    // drop ALL then add one (the restricted Pod Security Standard's shape), and no_new_privs.
    let mut cfg = podd.container_config(&pod, "one", &["sleep", "3600"]);
    let sc = container_security_context(&mut cfg);
    sc.capabilities = Some(api::Capability {
        add_capabilities: strings(&["NET_BIND_SERVICE"]),
        drop_capabilities: strings(&["ALL"]),
        ..Default::default()
    });
    sc.no_new_privs = true;
    let id = podd.create_container(&pod, cfg).await?;
    podd.start_container(&id).await?;
    for path in ["/proc/1/status", "/proc/self/status"] {
        let caps = caps_in(&podd, &id, path).await?;
        ensure!(
            caps.get("CapBnd").map(String::as_str) == Some("0000000000000400"),
            "{path}: {caps:?}"
        );
        let nnp = podd.exec_ok(&id, &["grep", "NoNewPrivs", path]).await?;
        ensure!(nnp.contains('1'), "{path}: no_new_privs not set: {nnp:?}");
    }

    // Add one (with the CAP_ prefix), drop one: mknod is refused, SYS_ADMIN allows mount.
    let mut cfg = podd.container_config(&pod, "adj", &["sleep", "3600"]);
    container_security_context(&mut cfg).capabilities = Some(api::Capability {
        add_capabilities: strings(&["CAP_SYS_ADMIN"]),
        drop_capabilities: strings(&["mknod"]),
        ..Default::default()
    });
    let id = podd.create_container(&pod, cfg).await?;
    podd.start_container(&id).await?;
    let caps = caps_in(&podd, &id, "/proc/1/status").await?;
    // + SYS_ADMIN (bit 21), - MKNOD (bit 27).
    ensure!(
        caps.get("CapEff").map(String::as_str) == Some("00000000a02425fb"),
        "{caps:?}"
    );
    let (code, out) = sh(&podd, &id, "mknod /tmp/null c 1 3").await?;
    ensure!(code != 0, "mknod works without CAP_MKNOD: {out}");
    let (code, out) = sh(
        &podd,
        &id,
        "mkdir -p /mnt && mount -t tmpfs x /mnt && umount /mnt",
    )
    .await?;
    ensure!(code == 0, "mount fails with CAP_SYS_ADMIN: {out}");

    // A non-root user: nothing effective after exec unless ambient.
    let mut cfg = podd.container_config(&pod, "user", &["sleep", "3600"]);
    let sc = container_security_context(&mut cfg);
    sc.run_as_user = Some(api::Int64Value { value: 1000 });
    sc.capabilities = Some(api::Capability {
        add_ambient_capabilities: strings(&["NET_BIND_SERVICE"]),
        ..Default::default()
    });
    let id = podd.create_container(&pod, cfg).await?;
    podd.start_container(&id).await?;
    for path in ["/proc/1/status", "/proc/self/status"] {
        let caps = caps_in(&podd, &id, path).await?;
        let want = [
            ("CapBnd", DEFAULT_CAPS),
            ("CapEff", "0000000000000400"),
            ("CapPrm", "0000000000000400"),
            ("CapAmb", "0000000000000400"),
        ];
        for (set, v) in want {
            ensure!(
                caps.get(set).map(String::as_str) == Some(v),
                "uid 1000 {path} {set}: {caps:?}"
            );
        }
    }

    // Unknown names are refused, naming the field.
    for (caps, field) in [
        (
            api::Capability {
                add_capabilities: strings(&["KILL", "CAP_FLY"]),
                ..Default::default()
            },
            "capabilities.add_capabilities[1]",
        ),
        (
            api::Capability {
                drop_capabilities: strings(&["nope"]),
                ..Default::default()
            },
            "capabilities.drop_capabilities[0]",
        ),
        (
            api::Capability {
                add_ambient_capabilities: strings(&["SYS_TIME"]),
                ..Default::default()
            },
            "capabilities.add_ambient_capabilities[0]",
        ),
    ] {
        let mut cfg = podd.container_config(&pod, "bad", &["true"]);
        container_security_context(&mut cfg).capabilities = Some(caps);
        let err = podd.create_container(&pod, cfg).await.unwrap_err();
        let msg = format!("{err:#}");
        ensure!(
            msg.contains("InvalidArgument") && msg.contains(field),
            "want InvalidArgument naming {field}: {msg}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn cri_path_lists_replace_the_defaults() -> Result<()> {
    let podd = Podd::start().await?;
    podd.import_test_image().await?;
    let pod = podd.run_default_pod("paths").await?;
    let mut cfg = podd.container_config(&pod, "paths", &["sleep", "3600"]);
    let sc = container_security_context(&mut cfg);
    sc.masked_paths = strings(&["/proc/version", "/etc"]);
    sc.readonly_paths = strings(&["/tmp"]);
    let id = podd.create_container(&pod, cfg).await?;
    podd.start_container(&id).await?;
    let version = podd.exec_ok(&id, &["cat", "/proc/version"]).await?;
    ensure!(version.is_empty(), "/proc/version not masked: {version:?}");
    let (code, out) = sh(&podd, &id, "ls -A /etc | wc -l").await?;
    ensure!(code == 0 && out.trim() == "0", "/etc not masked: {out}");
    let (code, out) = sh(&podd, &id, "touch /tmp/x").await?;
    ensure!(code != 0, "/tmp is writable: {out}");
    // The defaults are replaced, not added to.
    let timer = podd
        .exec_ok(&id, &["head", "-c", "1", "/proc/timer_list"])
        .await?;
    ensure!(!timer.is_empty(), "/proc/timer_list is still masked");
    let opts = mount_options(&podd, &id, "/proc/sys").await;
    ensure!(opts.is_err(), "/proc/sys is still read-only: {opts:?}");
    Ok(())
}
