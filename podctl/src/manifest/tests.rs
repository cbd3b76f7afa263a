use super::*;

const EXAMPLE: &str = include_str!("../../../examples/pod.yaml");

/// Loads `text` and returns the refusal, one problem per line.
fn refused(text: &str) -> String {
    match load("pod.yaml", text) {
        Ok(pod) => panic!("accepted: {pod:?}"),
        Err(e) => e.to_string(),
    }
}

const GOOD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
  annotations:
    note: hi
spec:
  shareProcessNamespace: true
  hostIPC: true
  containers:
    - name: app
      image: localhost/app:1
      command: [/bin/app]
      args: [--port, \"80\"]
      env:
        - name: A
          value: b
        - name: EMPTY
      workingDir: /srv
      volumeMounts:
        - name: data
          mountPath: /data
          readOnly: true
          subPath: sub
      securityContext:
        runAsUser: 1000
        runAsGroup: 100
        readOnlyRootFilesystem: true
      ports:
        - containerPort: 80
    - name: side
      image: localhost/side:1
  volumes:
    - name: data
      emptyDir: {}
    - name: host
      hostPath:
        path: /tmp
        type: Directory
";

#[test]
fn good_pod_parses_with_defaults() {
    let pod = load("pod.yaml", GOOD).unwrap();
    assert_eq!(pod.name(), "web");
    assert_eq!(pod.namespace(), "default");
    assert_eq!(pod.metadata.uid, None);
    assert_eq!(pod.metadata.labels["app"], "web");
    assert!(pod.spec.share_process_namespace && pod.spec.host_ipc);
    assert!(!pod.spec.host_network && !pod.spec.host_pid);
    let app = &pod.spec.containers[0];
    assert_eq!(app.args, ["--port", "80"]);
    assert_eq!(app.env[1].value, None);
    assert_eq!(app.volume_mounts[0].sub_path.as_deref(), Some("sub"));
    let sc = app.security_context.as_ref().unwrap();
    assert_eq!(
        (
            sc.run_as_user,
            sc.run_as_group,
            sc.read_only_root_filesystem
        ),
        (Some(1000), Some(100), Some(true))
    );
    assert_eq!(pod.spec.containers[1].name, "side");
    assert!(pod.spec.volumes[0].empty_dir.is_some());
    assert_eq!(pod.spec.volumes[1].host_path.as_ref().unwrap().path, "/tmp");
}

#[test]
fn example_pod_is_valid() {
    let pod = load("examples/pod.yaml", EXAMPLE).unwrap();
    assert_eq!(pod.spec.containers.len(), 2);
    for c in &pod.spec.containers {
        assert_eq!(c.image.as_deref(), Some("localhost/podd/busybox:latest"));
    }
}

#[test]
fn type_error_names_file_line_and_field() {
    let text = GOOD.replace("image: localhost/side:1", "image: [a, b]");
    assert_eq!(
        refused(&text),
        "pod.yaml:34:14: spec.containers[1].image: invalid type: sequence, expected a string"
    );
}

#[test]
fn type_error_in_nested_field() {
    let text = GOOD.replace("runAsUser: 1000", "runAsUser: root");
    assert_eq!(
        refused(&text),
        "pod.yaml:28:20: spec.containers[0].securityContext.runAsUser: \
         invalid type: string \"root\", expected i64"
    );
}

#[test]
fn syntax_error_has_a_line() {
    let err = refused("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n");
    assert!(err.starts_with("pod.yaml:"), "{err}");
    assert!(err.contains(":5:") || err.contains(":4:"), "{err}");
}

#[test]
fn wrong_api_version_and_kind() {
    let text = GOOD
        .replace("apiVersion: v1", "apiVersion: apps/v1")
        .replace("kind: Pod", "kind: Deployment");
    assert_eq!(
        refused(&text),
        "pod.yaml:1:1: apiVersion: must be \"v1\", not \"apps/v1\"\n\
         pod.yaml:2:1: kind: must be \"Pod\", not \"Deployment\""
    );
}

#[test]
fn missing_name_is_reported_at_metadata() {
    let text = GOOD.replace("  name: web\n", "");
    assert_eq!(refused(&text), "pod.yaml:3:1: metadata.name: required");
}

#[test]
fn pod_name_must_be_dns_label() {
    let text = GOOD.replace("name: web", "name: Web_1");
    assert!(
        refused(&text)
            .starts_with("pod.yaml:4:3: metadata.name: \"Web_1\" must be a DNS-1123 label"),
        "{}",
        refused(&text)
    );
}

#[test]
fn container_name_must_be_dns_label() {
    let text = GOOD.replace("- name: side", "- name: -side");
    assert!(refused(&text).starts_with("pod.yaml:33:7: spec.containers[1].name: \"-side\" must be"));
}

#[test]
fn duplicate_container_names() {
    let text = GOOD.replace("- name: side", "- name: app");
    assert_eq!(
        refused(&text),
        "pod.yaml:33:7: spec.containers[1].name: duplicate container name \"app\""
    );
}

#[test]
fn at_least_one_container() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: []\n";
    assert_eq!(
        refused(text),
        "pod.yaml:6:3: spec.containers: a pod needs at least one container"
    );
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n";
    assert_eq!(
        refused(text),
        "pod.yaml:1:1: spec.containers: a pod needs at least one container"
    );
}

#[test]
fn mount_of_undeclared_volume() {
    let text = GOOD.replace(
        "- name: data\n          mountPath",
        "- name: cache\n          mountPath",
    );
    assert_eq!(
        refused(&text),
        "pod.yaml:23:11: spec.containers[0].volumeMounts[0].name: no volume named \"cache\" in spec.volumes"
    );
}

#[test]
fn relative_mount_path() {
    let text = GOOD.replace("mountPath: /data", "mountPath: data");
    assert_eq!(
        refused(&text),
        "pod.yaml:24:11: spec.containers[0].volumeMounts[0].mountPath: \"data\" must be an absolute path"
    );
}

#[test]
fn value_from_is_not_supported() {
    let text = GOOD.replace(
        "        - name: EMPTY\n",
        "        - name: EMPTY\n          valueFrom:\n            fieldRef: {fieldPath: metadata.name}\n",
    );
    assert_eq!(
        refused(&text),
        "pod.yaml:21:11: spec.containers[0].env[1].valueFrom: valueFrom is not supported by podctl (use value)"
    );
}

#[test]
fn init_containers_are_not_supported() {
    let text = GOOD.replace(
        "  volumes:\n",
        "  initContainers:\n    - name: init\n      image: x\n  volumes:\n",
    );
    assert_eq!(
        refused(&text),
        "pod.yaml:35:3: spec.initContainers: init containers are not supported by podctl"
    );
}

#[test]
fn unsupported_volume_source() {
    let text = GOOD.replace("emptyDir: {}", "configMap: {name: x}");
    assert_eq!(
        refused(&text),
        "pod.yaml:36:7: spec.volumes[0]: no supported volume source: podctl supports emptyDir and hostPath"
    );
}

#[test]
fn unknown_host_path_type() {
    let text = GOOD.replace("type: Directory", "type: Dir");
    assert!(refused(&text)
        .starts_with("pod.yaml:41:9: spec.volumes[1].hostPath.type: unknown type \"Dir\""));
}

#[test]
fn every_problem_is_reported() {
    let text = GOOD
        .replace("      image: localhost/side:1\n", "")
        .replace("mountPath: /data", "mountPath: data");
    assert_eq!(refused(&text).lines().count(), 2, "{}", refused(&text));
}

#[test]
fn dns1123() {
    for ok in ["a", "a-b", "0", "abc123", &"a".repeat(63)] {
        assert!(is_dns1123_label(ok), "{ok}");
    }
    for bad in ["", "A", "a_b", "-a", "a-", "a.b", &"a".repeat(64)] {
        assert!(!is_dns1123_label(bad), "{bad}");
    }
}

#[test]
fn positions_of_flow_and_block_nodes() {
    let p = Positions::of("a:\n  b: [1, {c: 2}]\n  d:\n    - e\n    - f: g\n");
    assert_eq!(p.locate("a"), Some((1, 1)));
    assert_eq!(p.locate("a.b"), Some((2, 3)));
    assert_eq!(p.locate("a.b[1].c"), Some((2, 11)));
    assert_eq!(p.locate("a.d[0]"), Some((4, 7)));
    assert_eq!(p.locate("a.d[1].f"), Some((5, 7)));
    // Missing fields fall back to the nearest ancestor.
    assert_eq!(p.locate("a.d[1].x.y"), Some((5, 7)));
    assert_eq!(p.locate("z"), Some((1, 1)));
}

#[test]
fn bad_ports_and_dns_are_refused_with_their_fields() {
    let msg = refused(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  dnsPolicy: None\n  containers:\n    - name: a\n      image: i\n      ports:\n        - {containerPort: 0}\n        - {containerPort: 80, hostPort: 70000}\n        - {containerPort: 81, protocol: ICMP, hostIP: nowhere}\n        - {containerPort: 82, hostPort: 8080}\n        - {containerPort: 83, hostPort: 8080}\n",
    );
    for want in [
        "spec.containers[0].ports[0].containerPort: 0 must be a port number",
        "spec.containers[0].ports[1].hostPort: 70000",
        "spec.containers[0].ports[2].protocol: \"ICMP\"",
        "spec.containers[0].ports[2].hostIP: \"nowhere\"",
        "spec.containers[0].ports[4].hostPort: host port 8080/TCP is used twice",
        "spec.dnsConfig: required when dnsPolicy is None",
    ] {
        assert!(msg.contains(want), "missing {want:?} in:\n{msg}");
    }
    let msg = refused(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  dnsPolicy: Cluster\n  dnsConfig:\n    nameservers: [a.b.c.d]\n    searches: [\"two words\"]\n  containers:\n    - {name: a, image: i}\n",
    );
    for want in [
        "spec.dnsPolicy: \"Cluster\" must be one of",
        "spec.dnsConfig.nameservers[0]: \"a.b.c.d\" is not an IP address",
        "spec.dnsConfig.searches[0]",
    ] {
        assert!(msg.contains(want), "missing {want:?} in:\n{msg}");
    }
}

#[test]
fn fields_podctl_does_not_use_are_listed_with_their_positions() {
    let pod = load("pod.yaml", EXAMPLE).unwrap();
    assert!(pod.ignored.is_empty(), "{:?}", pod.ignored);
    let typo = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeSelector:
    disk: ssd
  containers:
    - name: app
      image: localhost/app:1
      comand: [/bin/app]
";
    let pod = load("pod.yaml", typo).unwrap();
    let got: Vec<(&str, Option<(usize, usize)>)> = pod
        .ignored
        .iter()
        .map(|p| (p.field.as_str(), p.position))
        .collect();
    assert_eq!(
        got,
        [
            ("spec.nodeSelector", Some((6, 3))),
            ("spec.containers[0].comand", Some((11, 7)))
        ]
    );
    assert!(pod.spec.containers[0].command.is_empty());
}
