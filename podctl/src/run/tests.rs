use super::*;
use crate::manifest;

fn pod(spec: &str) -> Pod {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: demo\n  uid: u-1\n  labels: {{app: demo}}\n  annotations: {{a: b}}\nspec:\n{spec}"
    );
    manifest::load("pod.yaml", &text).unwrap()
}

const ONE: &str = "  containers:\n    - name: c\n      image: img:1\n";

fn modes(o: &cri::NamespaceOption) -> (cri::NamespaceMode, cri::NamespaceMode, cri::NamespaceMode) {
    (
        o.network.try_into().unwrap(),
        o.ipc.try_into().unwrap(),
        o.pid.try_into().unwrap(),
    )
}

#[test]
fn namespace_modes() {
    use cri::NamespaceMode::{Container, Node, Pod as PodMode};
    assert_eq!(
        modes(&namespace_options(&pod(ONE))),
        (PodMode, PodMode, Container)
    );
    let shared = pod(&format!("  shareProcessNamespace: true\n{ONE}"));
    assert_eq!(
        modes(&namespace_options(&shared)),
        (PodMode, PodMode, PodMode)
    );
    let host = pod(&format!(
        "  hostNetwork: true\n  hostIPC: true\n  hostPID: true\n  shareProcessNamespace: true\n{ONE}"
    ));
    assert_eq!(modes(&namespace_options(&host)), (Node, Node, Node));
}

#[test]
fn sandbox_config_like_kubelet() {
    let p = pod(&format!("  securityContext: {{runAsUser: 7}}\n{ONE}"));
    let cfg = sandbox_config(&p, "u-1");
    let m = cfg.metadata.as_ref().unwrap();
    assert_eq!(
        (
            m.name.as_str(),
            m.uid.as_str(),
            m.namespace.as_str(),
            m.attempt
        ),
        ("demo", "u-1", "default", 0)
    );
    assert_eq!(cfg.hostname, "demo");
    assert_eq!(cfg.log_directory, "");
    assert_eq!(cfg.labels["app"], "demo");
    assert_eq!(cfg.labels[LABEL_POD_NAME], "demo");
    assert_eq!(cfg.labels[LABEL_POD_NAMESPACE], "default");
    assert_eq!(cfg.labels[LABEL_POD_UID], "u-1");
    assert_eq!(cfg.annotations["a"], "b");
    let sc = cfg.linux.unwrap().security_context.unwrap();
    assert_eq!(sc.run_as_user, Some(cri::Int64Value { value: 7 }));
    assert_eq!(sc.namespace_options, Some(namespace_options(&p)));

    let named = pod(&format!("  hostname: other\n{ONE}"));
    assert_eq!(sandbox_config(&named, "u").hostname, "other");
    let host_net = pod(&format!("  hostNetwork: true\n  hostname: other\n{ONE}"));
    assert_eq!(sandbox_config(&host_net, "u").hostname, "");
}

#[test]
fn container_config_env_mounts_and_security() {
    let p = pod("  securityContext: {runAsUser: 7, runAsGroup: 8}
  shareProcessNamespace: true
  containers:
    - name: app
      image: img:1
      command: [sh, -c]
      args: [echo hi]
      workingDir: /w
      env:
        - {name: A, value: x}
        - {name: EMPTY}
      volumeMounts:
        - {name: scratch, mountPath: /scratch}
        - {name: host, mountPath: /h, readOnly: true, subPath: sub/dir}
      securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true}
  volumes:
    - {name: scratch, emptyDir: {}}
    - {name: host, hostPath: {path: /srv/data}}
");
    let vols = volume_paths(&p, "u-1", Path::new("/var/lib/podctl/volumes"));
    assert_eq!(
        vols["scratch"],
        PathBuf::from("/var/lib/podctl/volumes/u-1/scratch")
    );
    assert_eq!(vols["host"], PathBuf::from("/srv/data"));

    let cfg = container_config(&p, "u-1", &p.spec.containers[0], &vols);
    assert_eq!(
        cfg.metadata,
        Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0
        })
    );
    assert_eq!(cfg.image.as_ref().unwrap().image, "img:1");
    assert_eq!(cfg.command, ["sh", "-c"]);
    assert_eq!(cfg.args, ["echo hi"]);
    assert_eq!(cfg.working_dir, "/w");
    let envs: Vec<(&str, &[u8])> = cfg
        .envs
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_slice()))
        .collect();
    assert_eq!(envs, [("A", &b"x"[..]), ("EMPTY", &b""[..])]);
    let mounts: Vec<(&str, &str, bool)> = cfg
        .mounts
        .iter()
        .map(|m| (m.container_path.as_str(), m.host_path.as_str(), m.readonly))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/scratch", "/var/lib/podctl/volumes/u-1/scratch", false),
            ("/h", "/srv/data/sub/dir", true)
        ]
    );
    assert_eq!(cfg.labels[LABEL_CONTAINER_NAME], "app");
    assert_eq!(cfg.labels[LABEL_POD_UID], "u-1");
    assert_eq!(cfg.log_path, "app_0.log");
    let sc = cfg.linux.unwrap().security_context.unwrap();
    // The container's runAsUser wins; the pod's runAsGroup is the default.
    assert_eq!(sc.run_as_user, Some(cri::Int64Value { value: 1000 }));
    assert_eq!(sc.run_as_group, Some(cri::Int64Value { value: 8 }));
    assert!(sc.readonly_rootfs);
    let pid: cri::NamespaceMode = sc.namespace_options.unwrap().pid.try_into().unwrap();
    assert_eq!(pid, cri::NamespaceMode::Pod);
}

#[test]
fn uid_is_kept_or_generated() {
    assert_eq!(pod_uid(&pod(ONE)), "u-1");
    let mut p = pod(ONE);
    p.metadata.uid = None;
    let (a, b) = (pod_uid(&p), pod_uid(&p));
    assert_eq!(a.len(), 36);
    assert_ne!(a, b);
}

#[test]
fn volumes_are_prepared_on_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    let p = pod(&format!(
        "  containers:
    - name: c
      image: i
      volumeMounts:
        - {{name: e, mountPath: /e, subPath: s}}
  volumes:
    - {{name: e, emptyDir: {{}}}}
    - {{name: h, hostPath: {{path: {}, type: DirectoryOrCreate}}}}
    - {{name: f, hostPath: {{path: {}/file, type: FileOrCreate}}}}
",
        host.display(),
        host.display()
    ));
    let vols = volume_paths(&p, "u-1", &tmp.path().join("volumes"));
    prepare_volumes(&p, &vols).unwrap();
    let e = tmp.path().join("volumes/u-1/e");
    assert_eq!(
        fs::metadata(&e).unwrap().permissions().mode() & 0o777,
        0o777
    );
    assert!(e.join("s").is_dir());
    assert!(host.is_dir());
    assert!(host.join("file").is_file());

    let missing = pod(&format!(
        "  containers: [{{name: c, image: i}}]\n  volumes:\n    - {{name: h, hostPath: {{path: {}/nope, type: Directory}}}}\n",
        tmp.path().display()
    ));
    let vols = volume_paths(&missing, "u-2", tmp.path());
    let err = format!("{:#}", prepare_volumes(&missing, &vols).unwrap_err());
    assert!(err.starts_with("hostPath volume h ("), "{err}");
    assert!(
        err.ends_with("No such file or directory (os error 2)"),
        "{err}"
    );

    remove_volumes(&tmp.path().join("volumes/u-1"));
    assert!(!tmp.path().join("volumes/u-1").exists());
}

const HOST_RESOLV: &str =
    "# generated\nnameserver 192.0.2.53\nsearch corp.example\noptions ndots:2 rotate\n";

#[test]
fn dns_policy_and_config_map_like_kubelet_without_cluster_dns() {
    // No dnsConfig: podd copies the node's resolv.conf.
    assert_eq!(dns_config(&pod(ONE), HOST_RESOLV), None);
    let p = pod(&format!("  dnsPolicy: Default\n{ONE}"));
    assert_eq!(dns_config(&p, HOST_RESOLV), None);
    // ClusterFirst + dnsConfig: the node's settings plus the pod's, its options replacing.
    let p = pod(&format!(
        "  dnsConfig:\n    nameservers: [10.0.0.10]\n    searches: [a.example]\n    options:\n      - {{name: ndots, value: \"5\"}}\n      - {{name: edns0}}\n{ONE}"
    ));
    let d = dns_config(&p, HOST_RESOLV).unwrap();
    assert_eq!(d.servers, ["192.0.2.53", "10.0.0.10"]);
    assert_eq!(d.searches, ["corp.example", "a.example"]);
    assert_eq!(d.options, ["rotate", "ndots:5", "edns0"]);
    // None: the pod's dnsConfig alone.
    let p = pod(&format!(
        "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [10.0.0.10]\n    searches: [b.example]\n{ONE}"
    ));
    let d = dns_config(&p, HOST_RESOLV).unwrap();
    assert_eq!(
        (d.servers, d.searches, d.options),
        (
            vec!["10.0.0.10".to_string()],
            vec!["b.example".to_string()],
            vec![]
        )
    );
    let cfg = sandbox_config(&p, "u-1");
    assert_eq!(cfg.dns_config.unwrap().servers, ["10.0.0.10"]);
}

#[test]
fn container_ports_become_port_mappings() {
    let p = pod(
        "  containers:\n    - name: a\n      image: img:1\n      ports:\n        - {containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}\n        - {containerPort: 53, protocol: UDP}\n    - name: b\n      image: img:1\n      ports:\n        - {containerPort: 9000, hostPort: 9000, protocol: SCTP}\n",
    );
    let ports = sandbox_config(&p, "u-1").port_mappings;
    let got: Vec<(i32, i32, i32, &str)> = ports
        .iter()
        .map(|m| {
            (
                m.protocol,
                m.container_port,
                m.host_port,
                m.host_ip.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (cri::Protocol::Tcp as i32, 80, 8080, "127.0.0.1"),
            (cri::Protocol::Udp as i32, 53, 0, ""),
            (cri::Protocol::Sctp as i32, 9000, 9000, ""),
        ]
    );
}

#[test]
fn host_network_keeps_the_node_hostname_and_namespace() {
    let p = pod(&format!("  hostNetwork: true\n  hostname: x\n{ONE}"));
    let cfg = sandbox_config(&p, "u-1");
    assert_eq!(cfg.hostname, "");
    let ns = cfg
        .linux
        .unwrap()
        .security_context
        .unwrap()
        .namespace_options
        .unwrap();
    assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
}

#[test]
fn pod_sysctls_go_to_the_sandbox_and_duplicates_are_refused() {
    let p = pod(&format!(
        "  securityContext:\n    sysctls:\n      - {{name: kernel.shm_rmid_forced, value: \"1\"}}\n      - {{name: net.ipv4.ip_local_port_range, value: \"20000 30000\"}}\n{ONE}"
    ));
    let sysctls = sandbox_config(&p, "u-1").linux.unwrap().sysctls;
    assert_eq!(sysctls.len(), 2);
    assert_eq!(sysctls["kernel.shm_rmid_forced"], "1");
    assert_eq!(sysctls["net.ipv4.ip_local_port_range"], "20000 30000");

    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: demo\nspec:\n  securityContext:\n    sysctls:\n      - {{name: kernel.sem, value: \"1\"}}\n      - {{name: kernel.sem, value: \"2\"}}\n{ONE}"
    );
    let err = manifest::load("pod.yaml", &text).unwrap_err().to_string();
    assert!(
        err.contains("spec.securityContext.sysctls[1].name") && err.contains("twice"),
        "{err}"
    );
}

#[test]
fn a_pod_name_is_taken_per_namespace() {
    let pod = |id: &str, ns: &str, name: &str| cri::PodSandbox {
        id: id.into(),
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pods = [pod("a", "default", "web"), pod("b", "other", "db")];
    assert_eq!(same_name(&pods, "default", "web").unwrap().id, "a");
    assert!(same_name(&pods, "other", "web").is_none());
    assert!(same_name(&pods, "default", "db").is_none());
}
