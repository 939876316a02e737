//! Kubernetes discovery against a local API server that replays recorded
//! LIST and WATCH bodies (`fixtures` below, in the API's JSON shapes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use parking_lot::Mutex;
use serde_json::json;

use pharos_model::Labels;

use super::*;

/// Per path: LIST bodies in order (the last repeats) and WATCH bodies in
/// order (afterwards an empty, closed watch).
#[derive(Default)]
struct Script {
    lists: Vec<Value>,
    watches: Vec<String>,
    list_calls: usize,
    watch_calls: usize,
}

#[derive(Clone, Default)]
struct Api {
    scripts: Arc<Mutex<HashMap<String, Script>>>,
    /// Every request as `path?query` with its Authorization header.
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Api {
    fn list(&self, path: &str, items: Vec<Value>, rv: &str) {
        let body = json!({"kind": "List", "metadata": {"resourceVersion": rv}, "items": items});
        self.scripts
            .lock()
            .entry(path.to_string())
            .or_default()
            .lists
            .push(body);
    }
    fn watch(&self, path: &str, events: &[(&str, Value)]) {
        let body: String = events
            .iter()
            .map(|(t, o)| format!("{}\n", json!({"type": t, "object": o})))
            .collect();
        self.scripts
            .lock()
            .entry(path.to_string())
            .or_default()
            .watches
            .push(body);
    }
}

async fn handler(State(api): State<Api>, req: Request) -> (StatusCode, String) {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let auth = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    api.seen.lock().push((format!("{path}?{query}"), auth));
    let mut scripts = api.scripts.lock();
    let Some(s) = scripts.get_mut(&path) else {
        return (StatusCode::NOT_FOUND, "{}".into());
    };
    if query.contains("watch=true") {
        let body = s.watches.get(s.watch_calls).cloned().unwrap_or_default();
        s.watch_calls += 1;
        (StatusCode::OK, body)
    } else {
        let i = s.list_calls.min(s.lists.len() - 1);
        s.list_calls += 1;
        (StatusCode::OK, s.lists[i].to_string())
    }
}

async fn serve(api: &Api) -> String {
    let app = axum::Router::new()
        .fallback(handler)
        .with_state(api.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

fn sd(yaml_role_body: &str) -> KubernetesSdConfig {
    let c = pharos_config::load_str(
        &format!("scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs:\n{yaml_role_body}"),
        "t.yml",
    )
    .unwrap();
    c.scrape_configs[0].kubernetes_sd_configs[0].clone()
}

fn start(cfg: &KubernetesSdConfig) -> mpsc::Receiver<Vec<TargetGroup>> {
    let mut d = KubernetesDiscoverer::new(cfg, "test");
    d.retry = Duration::from_millis(30);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(Box::new(d).run(tx));
    rx
}

/// Applies updates until `pred` holds on the merged groups.
async fn until(
    rx: &mut mpsc::Receiver<Vec<TargetGroup>>,
    state: &mut BTreeMap<String, TargetGroup>,
    pred: impl Fn(&BTreeMap<String, TargetGroup>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !pred(state) {
        let u = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("condition not reached within 5s")
            .unwrap();
        for g in u {
            if g.targets.is_empty() {
                state.remove(&g.source);
            } else {
                state.insert(g.source.clone(), g);
            }
        }
    }
}

fn pod(name: &str, ip: &str, app: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "labels": {"app": app, "pod-template-hash": "abc"},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "controller": true}]},
        "spec": {"nodeName": "node-1",
            "containers": [
                {"name": "app", "image": "web:1", "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9090}]},
                {"name": "sidecar", "image": "proxy:2"}],
            "initContainers": [{"name": "init", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "containerID": "containerd://aaa"}]}
    })
}

fn get<'a>(l: &'a Labels, n: &str) -> &'a str {
    l.get(n).unwrap_or("<absent>")
}

#[tokio::test]
async fn pod_role_lists_watches_and_relists() {
    let api = Api::default();
    let path = "/api/v1/namespaces/default/pods";
    let mut p2 = pod("web-2", "10.1.0.6", "web");
    api.list(
        path,
        vec![pod("web-1", "10.1.0.5", "web"), p2.clone()],
        "100",
    );
    p2["metadata"]["labels"]["app"] = json!("web-v2");
    api.watch(
        path,
        &[
            ("BOOKMARK", json!({"metadata": {"resourceVersion": "101"}})),
            ("MODIFIED", p2.clone()),
            ("DELETED", pod("web-1", "10.1.0.5", "web")),
            ("ADDED", pod("pending", "", "web")),
        ],
    );
    api.list(path, vec![p2.clone(), pod("pending", "", "web")], "105");
    let base = serve(&api).await;
    let cfg = sd(&format!(
        "      - role: pod\n        api_server: {base}\n        namespaces: {{names: [default]}}\n        selectors:\n          - role: pod\n            label: app in (web,web-v2)\n            field: status.phase=Running\n        bearer_token: secret\n"
    ));
    let mut rx = start(&cfg);
    let mut st = BTreeMap::new();
    until(&mut rx, &mut st, |s| s.len() == 2).await;
    let g = &st["pod/default/web-1"];
    assert_eq!(get(&g.labels, "__meta_kubernetes_namespace"), "default");
    assert_eq!(get(&g.labels, "__meta_kubernetes_pod_name"), "web-1");
    assert_eq!(get(&g.labels, "__meta_kubernetes_pod_ip"), "10.1.0.5");
    assert_eq!(get(&g.labels, "__meta_kubernetes_pod_ready"), "true");
    assert_eq!(get(&g.labels, "__meta_kubernetes_pod_phase"), "Running");
    assert_eq!(get(&g.labels, "__meta_kubernetes_pod_node_name"), "node-1");
    assert_eq!(get(&g.labels, "__meta_kubernetes_pod_host_ip"), "10.0.0.1");
    assert_eq!(get(&g.labels, "__meta_kubernetes_pod_uid"), "uid-web-1");
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_pod_controller_kind"),
        "ReplicaSet"
    );
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_pod_controller_name"),
        "web-abc"
    );
    assert_eq!(get(&g.labels, "__meta_kubernetes_pod_label_app"), "web");
    assert_eq!(
        get(
            &g.labels,
            "__meta_kubernetes_pod_labelpresent_pod_template_hash"
        ),
        "true"
    );
    assert_eq!(
        get(
            &g.labels,
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape"
        ),
        "true"
    );
    // Two ports of "app", the port-less "sidecar"; the init container
    // without ports is not a target.
    assert_eq!(g.targets.len(), 3);
    let t = &g.targets[0];
    assert_eq!(get(t, "__address__"), "10.1.0.5:8080");
    assert_eq!(get(t, "__meta_kubernetes_pod_container_name"), "app");
    assert_eq!(get(t, "__meta_kubernetes_pod_container_image"), "web:1");
    assert_eq!(
        get(t, "__meta_kubernetes_pod_container_id"),
        "containerd://aaa"
    );
    assert_eq!(get(t, "__meta_kubernetes_pod_container_port_name"), "http");
    assert_eq!(
        get(t, "__meta_kubernetes_pod_container_port_number"),
        "8080"
    );
    assert_eq!(
        get(t, "__meta_kubernetes_pod_container_port_protocol"),
        "TCP"
    );
    assert_eq!(get(t, "__meta_kubernetes_pod_container_init"), "false");
    assert_eq!(get(&g.targets[2], "__address__"), "10.1.0.5");
    assert_eq!(
        get(&g.targets[2], "__meta_kubernetes_pod_container_port_number"),
        "<absent>"
    );

    // After the watch: web-1 deleted, web-2 relabelled, the pending pod
    // (no IP yet) has no targets.
    until(&mut rx, &mut st, |s| {
        s.len() == 1
            && s.get("pod/default/web-2")
                .is_some_and(|g| g.labels.get("__meta_kubernetes_pod_label_app") == Some("web-v2"))
    })
    .await;

    // The watch ended: the watcher lists again, and nothing changes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while api
        .seen
        .lock()
        .iter()
        .filter(|s| !s.0.contains("watch=true"))
        .count()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline, "no relist");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(u) = rx.try_recv() {
        assert!(
            u.is_empty() || u.iter().all(|g| st.get(&g.source) == Some(g)),
            "{u:?}"
        );
    }
    let seen = api.seen.lock().clone();
    let list = &seen[0];
    assert!(list.0.starts_with(&format!("{path}?")), "{list:?}");
    assert!(
        list.0
            .contains("labelSelector=app%20in%20%28web%2Cweb-v2%29"),
        "{list:?}"
    );
    assert!(
        list.0.contains("fieldSelector=status.phase%3DRunning"),
        "{list:?}"
    );
    assert_eq!(list.1, "Bearer secret");
    let watch = seen.iter().find(|s| s.0.contains("watch=true")).unwrap();
    assert!(watch.0.contains("resourceVersion=100"), "{watch:?}");
    assert!(
        seen.iter().filter(|s| !s.0.contains("watch=true")).count() >= 2,
        "no relist"
    );
}

#[tokio::test]
async fn endpoints_role_joins_services_and_pods() {
    let api = Api::default();
    api.list(
        "/api/v1/endpoints",
        vec![json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}},
            "subsets": [{
                "addresses": [{"ip": "10.1.0.5", "nodeName": "node-1",
                    "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"}}],
                "notReadyAddresses": [{"ip": "10.1.0.9", "hostname": "web-9"}],
                "ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"}]
            }]
        })],
        "7",
    );
    api.list(
        "/api/v1/services",
        vec![json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                "ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"}]}
        })],
        "8",
    );
    api.list("/api/v1/pods", vec![pod("web-1", "10.1.0.5", "web")], "9");
    let base = serve(&api).await;
    let mut rx = start(&sd(&format!(
        "      - role: endpoints\n        api_server: {base}\n"
    )));
    let mut st = BTreeMap::new();
    until(&mut rx, &mut st, |s| s.len() == 1).await;
    let g = &st["endpoints/default/web"];
    assert_eq!(get(&g.labels, "__meta_kubernetes_endpoints_name"), "web");
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_endpoints_label_team"),
        "a"
    );
    assert_eq!(get(&g.labels, "__meta_kubernetes_service_name"), "web");
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_service_label_tier"),
        "front"
    );
    assert_eq!(g.targets.len(), 3);
    let t = &g.targets[0];
    assert_eq!(get(t, "__address__"), "10.1.0.5:9090");
    assert_eq!(get(t, "__meta_kubernetes_endpoint_ready"), "true");
    assert_eq!(get(t, "__meta_kubernetes_endpoint_port_name"), "metrics");
    assert_eq!(get(t, "__meta_kubernetes_endpoint_node_name"), "node-1");
    assert_eq!(
        get(t, "__meta_kubernetes_endpoint_address_target_kind"),
        "Pod"
    );
    assert_eq!(
        get(t, "__meta_kubernetes_endpoint_address_target_name"),
        "web-1"
    );
    assert_eq!(get(t, "__meta_kubernetes_pod_name"), "web-1");
    assert_eq!(get(t, "__meta_kubernetes_pod_label_app"), "web");
    assert_eq!(get(t, "__meta_kubernetes_pod_container_name"), "app");
    assert_eq!(
        get(t, "__meta_kubernetes_pod_container_port_name"),
        "metrics"
    );
    let t = &g.targets[1];
    assert_eq!(get(t, "__address__"), "10.1.0.9:9090");
    assert_eq!(get(t, "__meta_kubernetes_endpoint_ready"), "false");
    assert_eq!(get(t, "__meta_kubernetes_endpoint_hostname"), "web-9");
    // web-1's container port 8080 is behind no endpoint port: Prometheus
    // adds it as a target with the pod and container labels only.
    let t = &g.targets[2];
    assert_eq!(get(t, "__address__"), "10.1.0.5:8080");
    assert_eq!(get(t, "__meta_kubernetes_pod_name"), "web-1");
    assert_eq!(get(t, "__meta_kubernetes_pod_label_app"), "web");
    assert_eq!(get(t, "__meta_kubernetes_pod_container_name"), "app");
    assert_eq!(get(t, "__meta_kubernetes_pod_container_image"), "web:1");
    assert_eq!(get(t, "__meta_kubernetes_pod_container_port_name"), "http");
    assert_eq!(
        get(t, "__meta_kubernetes_pod_container_port_number"),
        "8080"
    );
    assert_eq!(
        get(t, "__meta_kubernetes_pod_container_port_protocol"),
        "TCP"
    );
    assert_eq!(get(t, "__meta_kubernetes_pod_container_init"), "false");
    for absent in [
        "__meta_kubernetes_endpoint_port_name",
        "__meta_kubernetes_endpoint_ready",
        "__meta_kubernetes_endpoint_address_target_kind",
        "__meta_kubernetes_endpoint_node_name",
    ] {
        assert_eq!(get(t, absent), "<absent>", "{absent}");
    }
}

#[tokio::test]
async fn node_service_ingress_and_endpointslice_roles() {
    let api = Api::default();
    api.list(
        "/api/v1/nodes",
        vec![json!({
            "metadata": {"name": "node-1", "labels": {"kubernetes.io/arch": "amd64"}},
            "spec": {"providerID": "aws:///i-1"},
            "status": {"addresses": [
                {"type": "Hostname", "address": "node-1"},
                {"type": "InternalIP", "address": "10.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
        })],
        "1",
    );
    api.list(
        "/api/v1/services",
        vec![
            json!({"metadata": {"name": "db", "namespace": "prod"},
                "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.5",
                    "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}}),
            json!({"metadata": {"name": "ext", "namespace": "prod"},
                "spec": {"type": "ExternalName", "externalName": "db.example.org",
                    "ports": [{"port": 443}]}}),
        ],
        "2",
    );
    api.list(
        "/apis/networking.k8s.io/v1/ingresses",
        vec![json!({
            "metadata": {"name": "site", "namespace": "prod"},
            "spec": {"ingressClassName": "nginx",
                "tls": [{"hosts": ["*.example.org"]}],
                "rules": [
                    {"host": "www.example.org", "http": {"paths": [{"path": "/"}, {"path": "/api"}]}},
                    {"host": "plain.test", "http": {"paths": [{"path": ""}]}}]}
        })],
        "3",
    );
    api.list(
        "/apis/discovery.k8s.io/v1/endpointslices",
        vec![json!({
            "metadata": {"name": "db-abc", "namespace": "prod",
                "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.2.0.7"], "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "node-1", "zone": "z1",
                "targetRef": {"kind": "Pod", "name": "db-0", "namespace": "prod"}}],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP", "appProtocol": "postgresql"}]
        })],
        "4",
    );
    api.list(
        "/api/v1/pods",
        vec![json!({
            "metadata": {"name": "db-0", "namespace": "prod"},
            "spec": {"containers": [
                {"name": "pg", "image": "postgres:16", "ports": [{"name": "pg", "containerPort": 5432}]},
                {"name": "exporter", "image": "pg-exporter:1",
                    "ports": [{"name": "metrics", "containerPort": 9187, "protocol": "TCP"}]}],
                "initContainers": [{"name": "setup", "image": "busybox",
                    "ports": [{"name": "debug", "containerPort": 7000, "protocol": "UDP"}]}]},
            "status": {"podIP": "10.2.0.7"}
        })],
        "5",
    );
    let base = serve(&api).await;

    let mut st = BTreeMap::new();
    let mut rx = start(&sd(&format!(
        "      - role: node\n        api_server: {base}\n"
    )));
    until(&mut rx, &mut st, |s| s.len() == 1).await;
    let g = &st["node/node-1"];
    assert_eq!(get(&g.labels, "__meta_kubernetes_node_name"), "node-1");
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_node_provider_id"),
        "aws:///i-1"
    );
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_node_label_kubernetes_io_arch"),
        "amd64"
    );
    let t = &g.targets[0];
    assert_eq!(get(t, "__address__"), "10.0.0.1:10250");
    assert_eq!(get(t, "instance"), "node-1");
    assert_eq!(
        get(t, "__meta_kubernetes_node_address_InternalIP"),
        "10.0.0.1"
    );
    assert_eq!(get(t, "__meta_kubernetes_node_address_Hostname"), "node-1");

    let mut st = BTreeMap::new();
    let mut rx = start(&sd(&format!(
        "      - role: service\n        api_server: {base}\n"
    )));
    until(&mut rx, &mut st, |s| s.len() == 2).await;
    let g = &st["svc/prod/db"];
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_service_type"),
        "ClusterIP"
    );
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_service_cluster_ip"),
        "10.96.0.5"
    );
    assert_eq!(get(&g.targets[0], "__address__"), "db.prod.svc:5432");
    assert_eq!(
        get(&g.targets[0], "__meta_kubernetes_service_port_name"),
        "pg"
    );
    assert_eq!(
        get(&g.targets[0], "__meta_kubernetes_service_port_number"),
        "5432"
    );
    let g = &st["svc/prod/ext"];
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_service_external_name"),
        "db.example.org"
    );
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_service_cluster_ip"),
        "<absent>"
    );

    let mut st = BTreeMap::new();
    let mut rx = start(&sd(&format!(
        "      - role: ingress\n        api_server: {base}\n"
    )));
    until(&mut rx, &mut st, |s| s.len() == 1).await;
    let g = &st["ingress/prod/site"];
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_ingress_class_name"),
        "nginx"
    );
    assert_eq!(g.targets.len(), 3);
    assert_eq!(get(&g.targets[1], "__address__"), "www.example.org");
    assert_eq!(
        get(&g.targets[1], "__meta_kubernetes_ingress_scheme"),
        "https"
    );
    assert_eq!(get(&g.targets[1], "__meta_kubernetes_ingress_path"), "/api");
    assert_eq!(
        get(&g.targets[2], "__meta_kubernetes_ingress_scheme"),
        "http"
    );
    assert_eq!(get(&g.targets[2], "__meta_kubernetes_ingress_path"), "/");

    let mut st = BTreeMap::new();
    let mut rx = start(&sd(&format!(
        "      - role: endpointslice\n        api_server: {base}\n"
    )));
    until(&mut rx, &mut st, |s| s.len() == 1).await;
    let g = &st["endpointslice/prod/db-abc"];
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_endpointslice_address_type"),
        "IPv4"
    );
    assert_eq!(get(&g.labels, "__meta_kubernetes_service_name"), "db");
    let t = &g.targets[0];
    assert_eq!(get(t, "__address__"), "10.2.0.7:5432");
    assert_eq!(get(t, "__meta_kubernetes_endpointslice_port"), "5432");
    assert_eq!(
        get(t, "__meta_kubernetes_endpointslice_port_app_protocol"),
        "postgresql"
    );
    assert_eq!(
        get(
            t,
            "__meta_kubernetes_endpointslice_endpoint_conditions_ready"
        ),
        "true"
    );
    assert_eq!(
        get(
            t,
            "__meta_kubernetes_endpointslice_endpoint_conditions_terminating"
        ),
        "false"
    );
    assert_eq!(
        get(t, "__meta_kubernetes_endpointslice_endpoint_zone"),
        "z1"
    );
    assert_eq!(get(t, "__meta_kubernetes_pod_name"), "db-0");
    assert_eq!(get(t, "__meta_kubernetes_pod_container_name"), "pg");
    // The exporter's port and the init container's port are behind no
    // slice port: extra targets without endpointslice labels.
    assert_eq!(g.targets.len(), 3, "{:?}", g.targets);
    let t = &g.targets[1];
    assert_eq!(get(t, "__address__"), "10.2.0.7:9187");
    assert_eq!(get(t, "__meta_kubernetes_pod_container_name"), "exporter");
    assert_eq!(
        get(t, "__meta_kubernetes_pod_container_port_name"),
        "metrics"
    );
    assert_eq!(get(t, "__meta_kubernetes_pod_container_init"), "false");
    assert_eq!(get(t, "__meta_kubernetes_endpointslice_port"), "<absent>");
    assert_eq!(
        get(t, "__meta_kubernetes_endpointslice_address_target_kind"),
        "<absent>"
    );
    let t = &g.targets[2];
    assert_eq!(get(t, "__address__"), "10.2.0.7:7000");
    assert_eq!(get(t, "__meta_kubernetes_pod_container_init"), "true");
    assert_eq!(
        get(t, "__meta_kubernetes_pod_container_port_protocol"),
        "UDP"
    );
}

#[tokio::test]
async fn attach_metadata_namespace_adds_namespace_labels() {
    let api = Api::default();
    let ns = |team: &str| {
        json!({"metadata": {"name": "default",
            "labels": {"team": team, "kubernetes.io/metadata.name": "default"},
            "annotations": {"owner": "ops@example.org"}}})
    };
    api.list(
        "/api/v1/namespaces",
        vec![ns("a"), json!({"metadata": {"name": "other"}})],
        "1",
    );
    api.watch("/api/v1/namespaces", &[("MODIFIED", ns("b"))]);
    api.list("/api/v1/namespaces", vec![ns("b")], "2");
    api.list("/api/v1/pods", vec![pod("web-1", "10.1.0.5", "web")], "3");
    api.list(
        "/api/v1/services",
        vec![json!({"metadata": {"name": "db", "namespace": "prod"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.5", "ports": [{"port": 5432}]}})],
        "4",
    );
    let base = serve(&api).await;
    let mut rx = start(&sd(&format!(
        "      - role: pod\n        api_server: {base}\n        attach_metadata: {{namespace: true}}\n        selectors: [{{role: pod, label: app=web}}]\n"
    )));
    let mut st = BTreeMap::new();
    until(&mut rx, &mut st, |s| s.len() == 1).await;
    let g = &st["pod/default/web-1"];
    assert_eq!(get(&g.labels, "__meta_kubernetes_namespace"), "default");
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_namespace_label_team"),
        "a"
    );
    assert_eq!(
        get(
            &g.labels,
            "__meta_kubernetes_namespace_labelpresent_kubernetes_io_metadata_name"
        ),
        "true"
    );
    assert_eq!(
        get(&g.labels, "__meta_kubernetes_namespace_annotation_owner"),
        "ops@example.org"
    );
    assert_eq!(
        get(
            &g.labels,
            "__meta_kubernetes_namespace_annotationpresent_owner"
        ),
        "true"
    );
    // A changed namespace re-labels the pod's group.
    until(&mut rx, &mut st, |s| {
        s.get("pod/default/web-1")
            .is_some_and(|g| g.labels.get("__meta_kubernetes_namespace_label_team") == Some("b"))
    })
    .await;
    // Namespaces are listed unfiltered, pods with their selector.
    let seen = api.seen.lock().clone();
    let ns_list = seen
        .iter()
        .find(|s| s.0.starts_with("/api/v1/namespaces?"))
        .unwrap();
    assert!(!ns_list.0.contains("Selector"), "{ns_list:?}");
    assert!(
        seen.iter()
            .any(|s| s.0.starts_with("/api/v1/pods?") && s.0.contains("labelSelector=app%3Dweb")),
        "{seen:?}"
    );

    // Service role: a namespace that is not known adds nothing.
    let mut rx = start(&sd(&format!(
        "      - role: service\n        api_server: {base}\n        attach_metadata: {{namespace: true}}\n"
    )));
    let mut st = BTreeMap::new();
    until(&mut rx, &mut st, |s| s.len() == 1).await;
    let g = &st["svc/prod/db"];
    assert_eq!(get(&g.labels, "__meta_kubernetes_namespace"), "prod");
    assert!(
        !g.labels
            .iter()
            .any(|l| l.name.starts_with("__meta_kubernetes_namespace_")),
        "{:?}",
        g.labels
    );

    // Without attach_metadata.namespace, no namespace watch and no labels
    // (a fresh server, as the discoverers above keep watching this one).
    let api2 = Api::default();
    for path in ["/api/v1/namespaces", "/api/v1/pods"] {
        let items = api.scripts.lock()[path].lists.clone();
        api2.list(path, items[0]["items"].as_array().unwrap().clone(), "1");
    }
    let base2 = serve(&api2).await;
    let mut rx = start(&sd(&format!(
        "      - role: pod\n        api_server: {base2}\n"
    )));
    let mut st = BTreeMap::new();
    until(&mut rx, &mut st, |s| s.len() == 1).await;
    assert_eq!(
        get(
            &st["pod/default/web-1"].labels,
            "__meta_kubernetes_namespace_label_team"
        ),
        "<absent>"
    );
    let seen = api2.seen.lock().clone();
    assert!(seen.iter().any(|s| s.0.starts_with("/api/v1/pods")));
    assert!(
        seen.iter().all(|s| !s.0.starts_with("/api/v1/namespaces")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn kubeconfig_file_gives_server_and_token() {
    let api = Api::default();
    api.list("/api/v1/nodes", vec![], "1");
    let base = serve(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("config");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\nclusters:\n- name: c1\n  cluster:\n    server: {base}/\ncontexts:\n- name: other\n  context: {{cluster: nope, user: nobody}}\n- name: dev\n  context:\n    cluster: c1\n    user: u1\nusers:\n- name: u1\n  user:\n    token: tok-123\n"
        ),
    )
    .unwrap();
    let conn = from_kubeconfig(kc.to_str().unwrap(), "t").unwrap();
    assert_eq!(conn.base, base);
    let mut rx = start(&sd(&format!(
        "      - role: node\n        kubeconfig_file: {}\n",
        kc.display()
    )));
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_empty());
    assert_eq!(api.seen.lock()[0].1, "Bearer tok-123");
}

#[test]
fn helpers() {
    assert_eq!(sanitize("kubernetes.io/arch"), "kubernetes_io_arch");
    assert_eq!(sanitize("9lives"), "_lives");
    assert!(matches_host("*.example.org", "www.example.org"));
    assert!(!matches_host("*.example.org", "example.org"));
    assert!(!matches_host("*.example.org", "a.b.example.org"));
    assert_eq!(decode_b64("aGVsbG8=").unwrap(), "hello");
    assert_eq!(join_host_port("fe80::1", "80"), "[fe80::1]:80");
    assert!(in_cluster_error_names_the_variables());
}

fn in_cluster_error_names_the_variables() -> bool {
    if std::env::var("KUBERNETES_SERVICE_HOST").is_ok() {
        return true;
    }
    let cfg = sd("      - role: pod\n");
    match connect(&cfg, "t") {
        Err(e) => e.to_string().contains("KUBERNETES_SERVICE_HOST"),
        Ok(_) => false,
    }
}
