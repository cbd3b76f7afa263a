//! podd-shim end to end, as root: a busybox rootfs, pods with and without a shared PID
//! namespace, member containers, ExecSync, and teardown that leaves no mount and no process.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use podd::isolate::spec::{
    default_capabilities, default_masked_paths, default_readonly_paths, BindMount, ContainerSpec,
    ExecSpec, ExitRecord, Identity, InfraSpec, Launched, NsKind, RootfsSpec,
};
use podd::isolate::{become_subreaper, release_pod, ProcessHandle, Shim};

const BUSYBOX: &str = "/bin/busybox";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/shim.rs needs root (namespaces, mounts, pivot_root): run `sudo cargo test -p podd --test shim`"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: run `apt-get install -y busybox-static`"
    );
}

fn shim() -> Shim {
    Shim::new(PathBuf::from(env!("CARGO_BIN_EXE_podd-shim")))
}

/// Everything a test started, undone on drop even when an assertion failed.
struct Pod {
    dir: tempfile::TempDir,
    pids: Vec<i32>,
}

impl Pod {
    fn new() -> Pod {
        require_root();
        become_subreaper().expect("become subreaper");
        let dir = tempfile::Builder::new()
            .prefix("podd-shim-test")
            .tempdir()
            .unwrap();
        let lower = dir.path().join("lower");
        fs::create_dir_all(lower.join("bin")).unwrap();
        fs::copy(BUSYBOX, lower.join("bin/busybox")).unwrap();
        let list = std::process::Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                symlink("busybox", lower.join("bin").join(applet)).unwrap();
            }
        }
        // An image symlink pointing at the host's /etc: a mount through it must stay inside.
        symlink("/etc", lower.join("hostetc")).unwrap();
        Pod {
            dir,
            pids: Vec::new(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn infra_spec(&self, kinds: &[NsKind]) -> InfraSpec {
        InfraSpec {
            pod_id: "pod1".into(),
            new_namespaces: kinds.to_vec(),
            pin_dir: self.path("pins"),
            hostname: Some("podhost".into()),
            shm_dir: self.path("shm"),
            shm_size_bytes: 1 << 20,
            launched_file: self.path("run/infra.json"),
        }
    }

    fn container_spec(&self, name: &str, share_pid: bool, script: &str) -> ContainerSpec {
        let base = self.path(name);
        for d in ["upper", "work", "merged"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        let mut kinds = vec![NsKind::Net, NsKind::Ipc, NsKind::Uts];
        if share_pid {
            kinds.push(NsKind::Pid);
        }
        ContainerSpec {
            container_id: name.into(),
            rootfs: RootfsSpec {
                lower: vec![self.path("lower")],
                upper: base.join("upper"),
                work: base.join("work"),
                merged: base.join("merged"),
                readonly: false,
            },
            join: kinds
                .into_iter()
                .map(|k| (k, self.path("pins").join(k.proc_name())))
                .collect(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/bin".into(), "GREETING=hello".into()],
            cwd: "/work/dir".into(),
            identity: Identity {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                capabilities: default_capabilities(),
                ambient_capabilities: vec![],
                no_new_privs: false,
                privileged: false,
                seccomp: None,
            },
            shm_dir: Some(self.path("shm")),
            mounts: vec![],
            log_path: base.join("log"),
            exit_file: base.join("exit"),
            launched_file: base.join("launched.json"),
            masked_paths: default_masked_paths(),
            readonly_paths: default_readonly_paths(),
        }
    }

    fn track(&mut self, l: &Launched) {
        self.pids.push(l.pid);
        self.pids.extend(l.monitor_pid);
    }

    fn mount_lines(&self) -> Vec<String> {
        let me = self.dir.path().to_string_lossy().to_string();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&me))
            .map(str::to_owned)
            .collect()
    }

    fn release(&self) {
        release_pod(&self.path("pins"), &self.path("shm")).expect("release_pod");
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for &pid in &self.pids {
            while Instant::now() < deadline {
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
        let _ = release_pod(&self.path("pins"), &self.path("shm"));
    }
}

fn ns_inode(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{kind}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Wait until the workload and its monitor exited (reaping the monitor), return the record.
async fn wait_exit(l: &Launched, spec: &ContainerSpec) -> ExitRecord {
    if let Some(h) = ProcessHandle::open(l.pid, l.start_time) {
        tokio::time::timeout(Duration::from_secs(10), h.exited())
            .await
            .expect("the workload exits");
    }
    let monitor = l.monitor_pid.expect("a monitor pid");
    let start = podd::isolate::process_start_time(monitor);
    if let Some(h) = start.and_then(|s| ProcessHandle::open(monitor, s)) {
        tokio::time::timeout(Duration::from_secs(10), h.exited())
            .await
            .expect("the monitor exits");
    }
    let json = fs::read(&spec.exit_file).expect("the monitor wrote the exit file");
    serde_json::from_slice(&json).expect("exit file is an ExitRecord")
}

/// `<RFC3339Nano> <stream> <F|P> <text>` records of a CRI log.
fn log_records(path: &Path) -> Vec<(String, String, String)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut it = line.splitn(4, ' ');
            let ts = it.next().unwrap();
            assert!(
                ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "bad timestamp in {line:?}"
            );
            let stream = it.next().unwrap().to_string();
            let tag = it.next().unwrap().to_string();
            (stream, tag, it.next().unwrap_or("").to_string())
        })
        .collect()
}

fn assert_gone(pid: i32) {
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists"
    );
}

#[tokio::test]
async fn pod_with_two_containers_exec_and_release() {
    let mut pod = Pod::new();
    let shim = shim();
    let infra = shim
        .start_infra(&pod.infra_spec(&[NsKind::Net, NsKind::Ipc, NsKind::Uts]))
        .await
        .expect("start_infra");
    pod.track(&infra);
    let written = Launched::read(&pod.path("run/infra.json")).expect("infra launched file");
    assert_eq!(
        (written.pid, written.start_time),
        (infra.pid, infra.start_time)
    );
    for kind in ["net", "ipc", "uts"] {
        assert!(pod.path("pins").join(kind).exists());
    }
    assert!(!pod.path("pins/pid").exists());
    let infra_handle = ProcessHandle::open(infra.pid, infra.start_time).expect("infra alive");

    // Container A reports, then waits for a file in the pod's shared /dev/shm.
    let mut a = pod.container_spec(
        "a",
        false,
        "hostname; cat /proc/1/cmdline; echo; ls /; echo $GREETING from $(pwd) >&2; \
         printf 'no newline'; while [ ! -e /dev/shm/go ]; do sleep 0.05; done; exit 3",
    );
    a.mounts.push(BindMount {
        source: pod.path("lower/bin"),
        destination: "/hostetc/podd-test-bin".into(),
        readonly: true,
        propagation: Default::default(),
    });
    let la = shim.start_container(&a).await.expect("start container a");
    pod.track(&la);
    let b = pod.container_spec("b", false, "sleep 300");
    let lb = shim.start_container(&b).await.expect("start container b");
    pod.track(&lb);
    // The monitor wrote what it started before reporting, with its own start time.
    assert_eq!(Launched::read(&b.launched_file).as_ref(), Some(&lb));
    let monitor = lb.monitor_pid.unwrap();
    assert_eq!(
        lb.monitor_start_time,
        podd::isolate::process_start_time(monitor)
    );
    // The spec came on stdin: the monitor's command line names only the verb and the id.
    let cmdline = fs::read(format!("/proc/{monitor}/cmdline")).unwrap();
    let argv: Vec<&[u8]> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(
        &argv[1..],
        [&b"monitor"[..], b"b"],
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    assert!(
        !Path::new("/etc/podd-test-bin").exists(),
        "a mount through an image symlink to /etc landed on the host"
    );

    assert_eq!(ns_inode(la.pid, "net"), ns_inode(infra.pid, "net"));
    assert_eq!(ns_inode(la.pid, "net"), ns_inode(lb.pid, "net"));
    assert_eq!(ns_inode(la.pid, "uts"), ns_inode(lb.pid, "uts"));
    assert_eq!(ns_inode(la.pid, "ipc"), ns_inode(lb.pid, "ipc"));
    assert_ne!(ns_inode(la.pid, "pid"), ns_inode(lb.pid, "pid"));
    assert_ne!(ns_inode(la.pid, "mnt"), ns_inode(lb.pid, "mnt"));
    assert_ne!(
        ns_inode(la.pid, "mnt"),
        ns_inode(std::process::id() as i32, "mnt")
    );
    // The container's mounts are in its own namespace: nothing of it on the host.
    assert!(
        !pod.mount_lines().iter().any(|l| l.contains("/a/merged")),
        "overlay visible on the host"
    );

    // ExecSync in container b.
    let exec = |args: &[&str]| ExecSpec {
        container_id: "b".into(),
        pid: lb.pid,
        start_time: lb.start_time,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        identity: b.identity.clone(),
    };
    let out = shim.exec_sync(&exec(&["echo", "hi"]), None).await.unwrap();
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"hi\n"[..], 0));
    let out = shim
        .exec_sync(
            &exec(&["sh", "-c", "hostname; echo oops >&2; exit 7"]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, b"podhost\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!((out.exit_code, out.timed_out), (7, false));
    // A start time that is not the workload's (a reused pid) is refused.
    let mut stale = exec(&["echo", "hi"]);
    stale.start_time += 1;
    let err = shim.exec_sync(&stale, None).await.unwrap_err().to_string();
    assert!(
        err.contains("is no longer the container's workload"),
        "{err}"
    );
    let out = shim.exec_sync(&exec(&["nosuch"]), None).await.unwrap();
    assert_eq!(out.exit_code, 127);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found in PATH=/bin"),
        "{out:?}"
    );
    let started = Instant::now();
    let out = shim
        .exec_sync(
            &exec(&["sh", "-c", "echo before; sleep 31; echo after"]),
            Some(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    assert!(out.timed_out && started.elapsed() < Duration::from_secs(5));
    assert_eq!(out.stdout, b"before\n");
    let leftover = std::process::Command::new("pgrep")
        .args(["-x", "-f", "sleep 31"])
        .output()
        .unwrap();
    assert!(leftover.stdout.is_empty(), "exec left its command running");

    // Let container A finish through the shared /dev/shm.
    fs::write(pod.path("shm/go"), b"").unwrap();
    let exit = wait_exit(&la, &a).await;
    assert_eq!((exit.exit_code, exit.signal), (3, None));
    assert_eq!(exit.reason, "Error");
    let records = log_records(&a.log_path);
    let stdout: Vec<&str> = records
        .iter()
        .filter(|r| r.0 == "stdout")
        .map(|r| r.2.as_str())
        .collect();
    assert_eq!(stdout[0], "podhost");
    assert!(stdout[1].starts_with("sh\0-c\0hostname"), "{:?}", stdout[1]);
    for entry in ["bin", "dev", "proc", "sys", "work"] {
        assert!(stdout.contains(&entry), "ls / lacks {entry}: {stdout:?}");
    }
    assert_eq!(stdout.last(), Some(&"no newline"));
    assert!(records.iter().all(|r| r.1 == "F"));
    assert!(records.contains(&(
        "stderr".to_string(),
        "F".to_string(),
        "hello from /work/dir".to_string()
    )));

    // Stop b by signal: 128 + 9.
    let hb = ProcessHandle::open(lb.pid, lb.start_time).unwrap();
    hb.signal(Signal::SIGKILL).unwrap();
    let exit = wait_exit(&lb, &b).await;
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
    hb.signal(Signal::SIGKILL).unwrap(); // already gone: still Ok

    // Stop the pod and release it.
    infra_handle.signal(Signal::SIGTERM).unwrap();
    tokio::time::timeout(Duration::from_secs(5), infra_handle.exited())
        .await
        .expect("infra exits on SIGTERM");
    assert!(!infra_handle.is_alive());
    pod.release();
    pod.release(); // idempotent
    assert_eq!(pod.mount_lines(), Vec::<String>::new());
    assert!(!pod.path("pins").exists() && !pod.path("shm").exists());
    for &pid in &pod.pids {
        assert_gone(pid);
    }
}

#[tokio::test]
async fn pod_sharing_one_pid_namespace() {
    let mut pod = Pod::new();
    let shim = shim();
    let kinds = [NsKind::Net, NsKind::Ipc, NsKind::Uts, NsKind::Pid];
    let infra = shim.start_infra(&pod.infra_spec(&kinds)).await.unwrap();
    pod.track(&infra);
    assert!(pod.path("pins/pid").exists());
    let spec = pod.container_spec(
        "c",
        true,
        "cat /proc/1/cmdline; echo; echo $$; sleep 3011 & sleep 0.2; exit 0",
    );
    let launched = shim.start_container(&spec).await.unwrap();
    pod.track(&launched);
    assert_eq!(ns_inode(launched.pid, "pid"), ns_inode(infra.pid, "pid"));
    assert_ne!(ns_inode(launched.pid, "mnt"), ns_inode(infra.pid, "mnt"));
    let exit = wait_exit(&launched, &spec).await;
    assert_eq!((exit.exit_code, exit.reason.as_str()), (0, "Completed"));
    let records = log_records(&spec.log_path);
    assert!(
        records[0].2.contains("podd-shim"),
        "PID 1 of the pod is the infra: {records:?}"
    );
    assert_ne!(
        records[1].2, "1",
        "the workload is not PID 1 in a shared namespace"
    );
    // The monitor killed what was left in the container's mount namespace when the workload
    // exited (the kernel does not: the pod's PID 1 is the infra).
    let leftover = std::process::Command::new("pgrep")
        .args(["-x", "-f", "sleep 3011"])
        .output()
        .unwrap();
    assert!(
        leftover.stdout.is_empty(),
        "the workload's background child outlived it"
    );

    // Killing the infra (PID 1 of the pod) ends the pod.
    let h = ProcessHandle::open(infra.pid, infra.start_time).unwrap();
    h.signal(Signal::SIGTERM).unwrap();
    tokio::time::timeout(Duration::from_secs(5), h.exited())
        .await
        .unwrap();
    pod.release();
    assert_eq!(pod.mount_lines(), Vec::<String>::new());
    for &pid in &pod.pids {
        assert_gone(pid);
    }
}

#[tokio::test]
async fn launch_failures_are_reported_and_leave_nothing() {
    let mut pod = Pod::new();
    let shim = shim();
    let infra = shim
        .start_infra(&pod.infra_spec(&[NsKind::Net, NsKind::Ipc, NsKind::Uts]))
        .await
        .unwrap();
    pod.track(&infra);

    let mut spec = pod.container_spec("x", false, "true");
    spec.args = vec!["nosuch".into()];
    let err = shim.start_container(&spec).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "starting container x failed: exec \"nosuch\": not found in PATH=/bin; the command is \
         not in the image: check command/args and PATH"
    );
    assert!(
        !spec.launched_file.exists(),
        "a failed start wrote its launched file"
    );

    let mut spec = pod.container_spec("y", false, "true");
    spec.rootfs.lower = vec![pod.path("no-such-layer")];
    let err = shim.start_container(&spec).await.unwrap_err().to_string();
    assert!(err.contains("mount overlay on"), "{err}");

    // A hostname without a new UTS namespace would rename the host: refused.
    let mut bad = pod.infra_spec(&[NsKind::Net]);
    bad.pin_dir = pod.path("pins2");
    let err = shim.start_infra(&bad).await.unwrap_err().to_string();
    assert!(err.contains("UTS"), "{err}");

    // A failure after the infra was forked: the launcher kills it, reaps it, and removes the
    // launched file it had written.
    fs::write(pod.path("afile"), b"").unwrap();
    let mut bad = pod.infra_spec(&[NsKind::Net, NsKind::Uts]);
    bad.pin_dir = pod.path("afile/pins");
    bad.shm_dir = pod.path("shm3");
    bad.launched_file = pod.path("run3/infra.json");
    let err = shim.start_infra(&bad).await.unwrap_err().to_string();
    assert!(
        err.starts_with("starting the infra process of pod pod1 failed: create pin directory"),
        "{err}"
    );
    assert!(
        !bad.launched_file.exists(),
        "the rollback left the launched file"
    );

    // The failed launches left no mount and no zombie: the failed monitors and the killed
    // infra were reaped by their launchers, not handed to the test process (their subreaper,
    // as podd is), which would never wait for them.
    assert_no_zombie_children().await;
    let h = ProcessHandle::open(infra.pid, infra.start_time).unwrap();
    h.signal(Signal::SIGTERM).unwrap();
    h.exited().await;
    pod.release();
    assert_eq!(pod.mount_lines(), Vec::<String>::new());
}

/// Zombie children of this process. Other tests' launchers (reaped by tokio) are zombies
/// for a moment, so wait for an instant without any.
async fn assert_no_zombie_children() {
    let me = std::process::id().to_string();
    let zombies = || -> Vec<String> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                let after: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
                after[0] == "Z" && after[1] == me
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let z = zombies();
        if z.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "zombie children left: {z:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
