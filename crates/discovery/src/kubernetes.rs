//! `kubernetes_sd_configs`: targets from the Kubernetes API (roles node,
//! pod, service, endpoints, endpointslice, ingress) with Prometheus's
//! `__meta_kubernetes_*` labels.
//!
//! Why plain HTTP + JSON instead of `kube`/`k8s-openapi`: discovery reads a
//! handful of fields from six object kinds through two verbs (LIST, then
//! WATCH from the list's `resourceVersion`). The typed client crates bring
//! hundreds of generated types and a long compile for that; `serde_json`
//! values and the HTTP client the scrape side already uses cover it in a few
//! hundred lines, and the same code is tested against a local server that
//! replays recorded LIST and WATCH bodies.
//!
//! How it runs: one task per (kind, namespace) LISTs, then WATCHes (a stream
//! of JSON lines: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`), and
//! on any failure or a closed stream waits a second and LISTs again. Every
//! change updates an in-memory store and re-renders the role's groups; only
//! groups that changed are sent (a vanished object sends an empty group).
//! Re-rendering everything per change is linear in the number of objects,
//! which keeps endpoints↔service↔pod joins trivially correct; it is fine for
//! thousands of objects.
//!
//! Connection: `api_server` with the job's `http_client` settings; or a
//! `kubeconfig_file` (current context: server, CA, client certificate,
//! token, `insecure-skip-tls-verify`); or in-cluster (the
//! `KUBERNETES_SERVICE_HOST`/`_PORT` environment, the service account token
//! and CA under `/var/run/secrets/kubernetes.io/serviceaccount/`).
//!
//! The endpoints and endpointslice roles, like Prometheus, also give a
//! target for each container port of a backing pod that no endpoint port
//! covers (pod and container labels only).
//!
//! `attach_metadata.namespace` also watches the cluster's namespaces and
//! adds each group's namespace labels and annotations
//! (`__meta_kubernetes_namespace_label_*`, ...) to the roles that have a
//! namespace (all but node).
//!
//! Not implemented: the newest pod owner labels (`attach_metadata`
//! `deployment`/`job`/`cronjob`: `pod_deployment_name`, `pod_job_name`,
//! `pod_cronjob_name`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use pharos_config::{HttpClientConfig, KubernetesRole, KubernetesSdConfig, TlsConfig};
use pharos_model::LabelsBuilder;
use pharos_model::labels::is_valid_label_name;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::client::HttpClient;
use crate::{ADDRESS_LABEL, BoxFuture, Discoverer, DiscoveryError, TargetGroup};

const META: &str = "__meta_kubernetes_";
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// An object kind the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Node,
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Ingress,
    Namespace,
}

impl Kind {
    fn path(self, ns: Option<&str>) -> String {
        let (prefix, plural) = match self {
            Kind::Node => ("/api/v1", "nodes"),
            Kind::Pod => ("/api/v1", "pods"),
            Kind::Service => ("/api/v1", "services"),
            Kind::Endpoints => ("/api/v1", "endpoints"),
            Kind::EndpointSlice => ("/apis/discovery.k8s.io/v1", "endpointslices"),
            Kind::Ingress => ("/apis/networking.k8s.io/v1", "ingresses"),
            Kind::Namespace => ("/api/v1", "namespaces"),
        };
        match ns {
            Some(ns) if self.namespaced() => format!("{prefix}/namespaces/{ns}/{plural}"),
            _ => format!("{prefix}/{plural}"),
        }
    }

    /// Whether objects of this kind live in a namespace (and are watched
    /// per configured namespace).
    fn namespaced(self) -> bool {
        !matches!(self, Kind::Node | Kind::Namespace)
    }

    /// The role whose selectors apply to this kind; namespaces are never
    /// filtered (as in Prometheus).
    fn role(self) -> Option<KubernetesRole> {
        match self {
            Kind::Node => Some(KubernetesRole::Node),
            Kind::Pod => Some(KubernetesRole::Pod),
            Kind::Service => Some(KubernetesRole::Service),
            Kind::Endpoints => Some(KubernetesRole::Endpoints),
            Kind::EndpointSlice => Some(KubernetesRole::EndpointSlice),
            Kind::Ingress => Some(KubernetesRole::Ingress),
            Kind::Namespace => None,
        }
    }
}

/// The kinds a role needs to watch.
fn kinds(cfg: &KubernetesSdConfig) -> Vec<Kind> {
    let mut v = match cfg.role {
        KubernetesRole::Node => vec![Kind::Node],
        KubernetesRole::Pod => vec![Kind::Pod],
        KubernetesRole::Service => vec![Kind::Service],
        KubernetesRole::Endpoints => vec![Kind::Endpoints, Kind::Service, Kind::Pod],
        KubernetesRole::EndpointSlice => vec![Kind::EndpointSlice, Kind::Service, Kind::Pod],
        KubernetesRole::Ingress => vec![Kind::Ingress],
    };
    if cfg.attach_metadata_node
        && matches!(
            cfg.role,
            KubernetesRole::Pod | KubernetesRole::Endpoints | KubernetesRole::EndpointSlice
        )
    {
        v.push(Kind::Node);
    }
    if cfg.attach_metadata_namespace && cfg.role != KubernetesRole::Node {
        v.push(Kind::Namespace);
    }
    v
}

/// Where and how to reach the API server.
#[derive(Clone)]
pub struct Connection {
    /// Base URL without a trailing slash.
    pub base: String,
    /// The client with credentials.
    pub client: HttpClient,
}

#[derive(Debug, Deserialize)]
struct KubeConfig {
    #[serde(default, rename = "current-context")]
    current_context: String,
    #[serde(default)]
    clusters: Vec<Named<KubeCluster>>,
    #[serde(default)]
    users: Vec<Named<KubeUser>>,
    #[serde(default)]
    contexts: Vec<Named<KubeContext>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    item: T,
}

#[derive(Debug, Deserialize, Default)]
struct KubeCluster {
    #[serde(default)]
    server: String,
    #[serde(default, rename = "certificate-authority")]
    ca_file: Option<String>,
    #[serde(default, rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(default, rename = "insecure-skip-tls-verify")]
    insecure: bool,
    #[serde(default, rename = "tls-server-name")]
    server_name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct KubeUser {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(default, rename = "client-certificate")]
    cert_file: Option<String>,
    #[serde(default, rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(default, rename = "client-key")]
    key_file: Option<String>,
    #[serde(default, rename = "client-key-data")]
    key_data: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct KubeContext {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: String,
}

fn decode_b64(s: &str) -> Result<String, DiscoveryError> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = T
            .iter()
            .position(|x| *x == c)
            .ok_or_else(|| DiscoveryError::Invalid("invalid base64 in kubeconfig".into()))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    String::from_utf8(out).map_err(|_| DiscoveryError::Invalid("kubeconfig data is not PEM".into()))
}

/// Builds the connection from a kubeconfig file's current context.
pub fn from_kubeconfig(path: &str, user_agent: &str) -> Result<Connection, DiscoveryError> {
    let text = std::fs::read_to_string(path).map_err(|source| DiscoveryError::Read {
        path: path.to_string(),
        source,
    })?;
    let kc: KubeConfig = serde_saphyr::from_str(&text)
        .map_err(|e| DiscoveryError::Invalid(format!("{path}: {e}")))?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == kc.current_context)
        .or(kc.contexts.first())
        .ok_or_else(|| DiscoveryError::Invalid(format!("{path}: no context")))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.item.cluster)
        .ok_or_else(|| {
            DiscoveryError::Invalid(format!("{path}: cluster {:?} not found", ctx.item.cluster))
        })?;
    let default_user = Named {
        name: String::new(),
        item: KubeUser::default(),
    };
    let user = kc
        .users
        .iter()
        .find(|u| u.name == ctx.item.user)
        .unwrap_or(&default_user);
    let dir = std::path::Path::new(path)
        .parent()
        .unwrap_or(std::path::Path::new(""));
    let rel = |f: &String| dir.join(f).display().to_string();
    let mut http = HttpClientConfig {
        tls_config: TlsConfig {
            ca_file: cluster.item.ca_file.as_ref().map(rel),
            ca: match &cluster.item.ca_data {
                Some(d) => decode_b64(d)?,
                None => String::new(),
            },
            cert_file: user.item.cert_file.as_ref().map(rel),
            cert: match &user.item.cert_data {
                Some(d) => decode_b64(d)?,
                None => String::new(),
            },
            key_file: user.item.key_file.as_ref().map(rel),
            key: match &user.item.key_data {
                Some(d) => decode_b64(d)?,
                None => String::new(),
            },
            server_name: cluster.item.server_name.clone(),
            insecure_skip_verify: cluster.item.insecure,
            min_version: None,
        },
        ..HttpClientConfig::default()
    };
    if user.item.token.is_some() || user.item.token_file.is_some() {
        http.authorization = Some(pharos_config::Authorization {
            auth_type: "Bearer".into(),
            credentials: user.item.token.clone().unwrap_or_default(),
            credentials_file: user.item.token_file.as_ref().map(rel),
        });
    } else if let Some(u) = &user.item.username {
        http.basic_auth = Some(pharos_config::BasicAuth {
            username: u.clone(),
            password: user.item.password.clone().unwrap_or_default(),
            ..Default::default()
        });
    }
    Ok(Connection {
        base: cluster.item.server.trim_end_matches('/').to_string(),
        client: HttpClient::new(user_agent, &http).map_err(DiscoveryError::Http)?,
    })
}

/// The connection for `cfg`.
pub fn connect(cfg: &KubernetesSdConfig, user_agent: &str) -> Result<Connection, DiscoveryError> {
    if let Some(api) = &cfg.api_server {
        return Ok(Connection {
            base: api.trim_end_matches('/').to_string(),
            client: HttpClient::new(user_agent, &cfg.http_client).map_err(DiscoveryError::Http)?,
        });
    }
    if let Some(k) = &cfg.kubeconfig_file {
        return from_kubeconfig(k, user_agent);
    }
    let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
        DiscoveryError::Invalid(
            "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined"
                .into(),
        )
    })?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let http = HttpClientConfig {
        authorization: Some(pharos_config::Authorization {
            auth_type: "Bearer".into(),
            credentials: String::new(),
            credentials_file: Some(format!("{SERVICE_ACCOUNT_DIR}/token")),
        }),
        tls_config: TlsConfig {
            ca_file: Some(format!("{SERVICE_ACCOUNT_DIR}/ca.crt")),
            ..TlsConfig::default()
        },
        ..HttpClientConfig::default()
    };
    Ok(Connection {
        base: format!("https://{host}:{port}"),
        client: HttpClient::new(user_agent, &http).map_err(DiscoveryError::Http)?,
    })
}

/// Discovers targets from a Kubernetes API server.
pub struct KubernetesDiscoverer {
    cfg: KubernetesSdConfig,
    user_agent: String,
    retry: Duration,
}

impl KubernetesDiscoverer {
    /// A provider for `cfg`.
    pub fn new(cfg: &KubernetesSdConfig, user_agent: &str) -> KubernetesDiscoverer {
        KubernetesDiscoverer {
            cfg: cfg.clone(),
            user_agent: user_agent.to_string(),
            retry: Duration::from_secs(1),
        }
    }

    fn namespaces(&self) -> Vec<Option<String>> {
        let mut ns: Vec<String> = self.cfg.namespaces.clone();
        if self.cfg.own_namespace
            && let Ok(own) = std::fs::read_to_string(format!("{SERVICE_ACCOUNT_DIR}/namespace"))
        {
            ns.push(own.trim().to_string());
        }
        if ns.is_empty() {
            vec![None]
        } else {
            ns.into_iter().map(Some).collect()
        }
    }

    fn selector_query(&self, kind: Kind) -> String {
        let mut q = String::new();
        if let Some(s) = self
            .cfg
            .selectors
            .iter()
            .find(|s| Some(s.role) == kind.role())
        {
            if !s.label.is_empty() {
                q.push_str(&format!("&labelSelector={}", urlencode(&s.label)));
            }
            if !s.field.is_empty() {
                q.push_str(&format!("&fieldSelector={}", urlencode(&s.field)));
            }
        }
        q
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A change seen by a watcher.
enum Event {
    /// The complete list of one (kind, namespace).
    Reset(Kind, Option<String>, Vec<Value>),
    /// An object added or modified.
    Upsert(Kind, Value),
    /// An object deleted.
    Delete(Kind, Value),
}

fn key(o: &Value) -> String {
    format!(
        "{}/{}",
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("")
    )
}

async fn get_json(conn: &Connection, path_q: &str) -> Result<Value, DiscoveryError> {
    let url = format!("{}{path_q}", conn.base);
    let req = conn
        .client
        .decorate(conn.client.http.get(&url))
        .map_err(DiscoveryError::Http)?;
    let resp = req
        .header("Accept", "application/json")
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| DiscoveryError::Http(format!("Get {url:?}: {e}")))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(DiscoveryError::Http(format!(
            "Get {url:?}: server returned HTTP status {}",
            resp.status()
        )));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| DiscoveryError::Http(format!("Get {url:?}: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| DiscoveryError::Invalid(format!("Get {url:?}: {e}")))
}

/// LIST then WATCH one (kind, namespace) forever, sending events.
async fn watch_loop(
    conn: Connection,
    kind: Kind,
    ns: Option<String>,
    selectors: String,
    retry: Duration,
    tx: mpsc::Sender<Event>,
) {
    loop {
        match list_and_watch(&conn, kind, ns.as_deref(), &selectors, &tx).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(err = %e, "Kubernetes watch failed; listing again"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(retry).await;
    }
}

async fn list_and_watch(
    conn: &Connection,
    kind: Kind,
    ns: Option<&str>,
    selectors: &str,
    tx: &mpsc::Sender<Event>,
) -> Result<(), DiscoveryError> {
    let path = kind.path(ns);
    let list = get_json(conn, &format!("{path}?limit=0{selectors}")).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let mut rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if tx
        .send(Event::Reset(kind, ns.map(str::to_string), items))
        .await
        .is_err()
    {
        return Ok(());
    }
    let url = format!(
        "{}{path}?watch=true&allowWatchBookmarks=true&resourceVersion={}{selectors}",
        conn.base,
        urlencode(&rv)
    );
    let req = conn
        .client
        .decorate(conn.client.http.get(&url))
        .map_err(DiscoveryError::Http)?;
    let mut resp = req
        .send()
        .await
        .map_err(|e| DiscoveryError::Http(format!("Get {url:?}: {e}")))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(DiscoveryError::Http(format!(
            "Get {url:?}: server returned HTTP status {}",
            resp.status()
        )));
    }
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c.map_err(|e| DiscoveryError::Http(format!("watch {url:?}: {e}")))?,
            _ = tx.closed() => return Ok(()),
        };
        let Some(chunk) = chunk else {
            return Ok(()); // the server ended the watch: list again
        };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let ev: Value = serde_json::from_slice(&line)
                .map_err(|e| DiscoveryError::Invalid(format!("watch event: {e}")))?;
            let obj = ev["object"].clone();
            if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
                rv = v.to_string();
            }
            let event = match ev["type"].as_str().unwrap_or("") {
                "ADDED" | "MODIFIED" => Event::Upsert(kind, obj),
                "DELETED" => Event::Delete(kind, obj),
                "BOOKMARK" => continue,
                _ => {
                    return Err(DiscoveryError::Http(format!(
                        "watch error (resourceVersion {rv}): {}",
                        obj["message"].as_str().unwrap_or("unknown")
                    )));
                }
            };
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// The objects known, per kind, by `namespace/name`.
#[derive(Default)]
struct Store {
    objects: HashMap<Kind, BTreeMap<String, Value>>,
}

impl Store {
    fn apply(&mut self, ev: Event) {
        match ev {
            Event::Reset(kind, ns, items) => {
                let m = self.objects.entry(kind).or_default();
                m.retain(|k, _| match &ns {
                    Some(ns) => !k.starts_with(&format!("{ns}/")),
                    None => false,
                });
                for o in items {
                    m.insert(key(&o), o);
                }
            }
            Event::Upsert(kind, o) => {
                self.objects.entry(kind).or_default().insert(key(&o), o);
            }
            Event::Delete(kind, o) => {
                if let Some(m) = self.objects.get_mut(&kind) {
                    m.remove(&key(&o));
                }
            }
        }
    }

    fn all(&self, kind: Kind) -> impl Iterator<Item = &Value> {
        self.objects.get(&kind).into_iter().flat_map(|m| m.values())
    }

    fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&kind)?.get(&format!("{ns}/{name}"))
    }
}

/// Replaces characters not allowed in label names by `_`.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if is_valid_label_name(&s) {
        s
    } else {
        format!("_{s}")
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// `<prefix>_label_*`, `_labelpresent_*`, `_annotation_*`,
/// `_annotationpresent_*` for an object's metadata.
fn meta_labels(b: &mut LabelsBuilder, prefix: &str, obj: &Value) {
    for (field, what) in [("labels", "label"), ("annotations", "annotation")] {
        if let Some(m) = obj["metadata"][field].as_object() {
            for (k, v) in m {
                let n = sanitize(k);
                b.set(
                    &format!("{META}{prefix}_{what}_{n}"),
                    v.as_str().unwrap_or(""),
                );
                b.set(&format!("{META}{prefix}_{what}present_{n}"), "true");
            }
        }
    }
}

fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn node_group(node: &Value) -> TargetGroup {
    let name = s(node, &["metadata", "name"]);
    let mut g = LabelsBuilder::new();
    g.set(&format!("{META}node_name"), name);
    g.set(
        &format!("{META}node_provider_id"),
        s(node, &["spec", "providerID"]),
    );
    meta_labels(&mut g, "node", node);
    let addrs = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut t = LabelsBuilder::new();
    let mut by_type: BTreeMap<&str, &str> = BTreeMap::new();
    for a in &addrs {
        let ty = a["type"].as_str().unwrap_or("");
        by_type
            .entry(ty)
            .or_insert(a["address"].as_str().unwrap_or(""));
    }
    for (ty, addr) in &by_type {
        t.set(&format!("{META}node_address_{}", sanitize(ty)), addr);
    }
    let preferred = [
        "InternalIP",
        "InternalDNS",
        "ExternalIP",
        "ExternalDNS",
        "LegacyHostIP",
        "Hostname",
    ]
    .iter()
    .find_map(|ty| by_type.get(ty).copied());
    let mut targets = Vec::new();
    if let Some(addr) = preferred {
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .unwrap_or(10250);
        t.set(ADDRESS_LABEL, &join_host_port(addr, &port.to_string()));
        t.set("instance", name);
        targets.push(t.build());
    }
    TargetGroup {
        source: format!("node/{name}"),
        targets,
        labels: g.build(),
    }
}

fn condition(obj: &Value, ty: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .map_or("unknown".to_string(), |c| {
            c["status"].as_str().unwrap_or("unknown").to_lowercase()
        })
}

/// The pod's own labels (shared by the pod, endpoints and endpointslice
/// roles).
fn pod_labels(b: &mut LabelsBuilder, pod: &Value, store: &Store, attach_node: bool) {
    b.set(&format!("{META}pod_name"), s(pod, &["metadata", "name"]));
    b.set(&format!("{META}pod_ip"), s(pod, &["status", "podIP"]));
    b.set(&format!("{META}pod_ready"), &condition(pod, "Ready"));
    b.set(&format!("{META}pod_phase"), s(pod, &["status", "phase"]));
    let node = s(pod, &["spec", "nodeName"]);
    b.set(&format!("{META}pod_node_name"), node);
    b.set(&format!("{META}pod_host_ip"), s(pod, &["status", "hostIP"]));
    b.set(&format!("{META}pod_uid"), s(pod, &["metadata", "uid"]));
    if let Some(owner) = pod["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|os| os.iter().find(|o| o["controller"] == true))
    {
        b.set(&format!("{META}pod_controller_kind"), s(owner, &["kind"]));
        b.set(&format!("{META}pod_controller_name"), s(owner, &["name"]));
    }
    meta_labels(b, "pod", pod);
    if attach_node && let Some(n) = store.get(Kind::Node, "", node) {
        b.set(&format!("{META}node_name"), node);
        meta_labels(b, "node", n);
    }
}

fn containers(pod: &Value) -> Vec<(&Value, bool)> {
    let mut v: Vec<(&Value, bool)> = Vec::new();
    for (field, init) in [("containers", false), ("initContainers", true)] {
        if let Some(cs) = pod["spec"][field].as_array() {
            v.extend(cs.iter().map(|c| (c, init)));
        }
    }
    v
}

fn container_id(pod: &Value, name: &str, init: bool) -> String {
    let field = if init {
        "initContainerStatuses"
    } else {
        "containerStatuses"
    };
    pod["status"][field]
        .as_array()
        .and_then(|st| st.iter().find(|c| c["name"] == name))
        .map(|c| s(c, &["containerID"]).to_string())
        .unwrap_or_default()
}

fn pod_group(pod: &Value, store: &Store, attach_node: bool) -> TargetGroup {
    let ns = s(pod, &["metadata", "namespace"]);
    let name = s(pod, &["metadata", "name"]);
    let source = format!("pod/{ns}/{name}");
    let ip = s(pod, &["status", "podIP"]);
    if ip.is_empty() {
        return TargetGroup::empty(source);
    }
    let mut g = LabelsBuilder::new();
    g.set(&format!("{META}namespace"), ns);
    pod_labels(&mut g, pod, store, attach_node);
    let mut targets = Vec::new();
    for (c, init) in containers(pod) {
        let cname = s(c, &["name"]);
        let base = |b: &mut LabelsBuilder| {
            b.set(&format!("{META}pod_container_name"), cname);
            b.set(&format!("{META}pod_container_image"), s(c, &["image"]));
            b.set(
                &format!("{META}pod_container_id"),
                &container_id(pod, cname, init),
            );
            b.set(
                &format!("{META}pod_container_init"),
                if init { "true" } else { "false" },
            );
        };
        let ports = c["ports"].as_array().cloned().unwrap_or_default();
        if ports.is_empty() {
            // Init containers without ports are not targets.
            if init {
                continue;
            }
            let mut t = LabelsBuilder::new();
            t.set(ADDRESS_LABEL, ip);
            base(&mut t);
            targets.push(t.build());
            continue;
        }
        for p in &ports {
            let num = p["containerPort"].as_u64().unwrap_or(0).to_string();
            let mut t = LabelsBuilder::new();
            t.set(ADDRESS_LABEL, &join_host_port(ip, &num));
            base(&mut t);
            t.set(&format!("{META}pod_container_port_name"), s(p, &["name"]));
            t.set(&format!("{META}pod_container_port_number"), &num);
            t.set(
                &format!("{META}pod_container_port_protocol"),
                p["protocol"].as_str().unwrap_or("TCP"),
            );
            targets.push(t.build());
        }
    }
    TargetGroup {
        source,
        targets,
        labels: g.build(),
    }
}

fn service_labels(b: &mut LabelsBuilder, svc: &Value) {
    b.set(
        &format!("{META}service_name"),
        s(svc, &["metadata", "name"]),
    );
    meta_labels(b, "service", svc);
}

fn service_group(svc: &Value) -> TargetGroup {
    let ns = s(svc, &["metadata", "namespace"]);
    let name = s(svc, &["metadata", "name"]);
    let mut g = LabelsBuilder::new();
    g.set(&format!("{META}namespace"), ns);
    service_labels(&mut g, svc);
    let ty = s(svc, &["spec", "type"]);
    g.set(&format!("{META}service_type"), ty);
    if ty == "ExternalName" {
        g.set(
            &format!("{META}service_external_name"),
            s(svc, &["spec", "externalName"]),
        );
    } else {
        g.set(
            &format!("{META}service_cluster_ip"),
            s(svc, &["spec", "clusterIP"]),
        );
    }
    let mut targets = Vec::new();
    for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
        let num = p["port"].as_u64().unwrap_or(0).to_string();
        let mut t = LabelsBuilder::new();
        t.set(
            ADDRESS_LABEL,
            &join_host_port(&format!("{name}.{ns}.svc"), &num),
        );
        t.set(&format!("{META}service_port_name"), s(p, &["name"]));
        t.set(&format!("{META}service_port_number"), &num);
        t.set(
            &format!("{META}service_port_protocol"),
            p["protocol"].as_str().unwrap_or("TCP"),
        );
        targets.push(t.build());
    }
    TargetGroup {
        source: format!("svc/{ns}/{name}"),
        targets,
        labels: g.build(),
    }
}

/// Adds the labels of the pod a target reference points at, and of the
/// container exposing `port` when one does; returns that pod.
fn target_ref_labels<'a>(
    t: &mut LabelsBuilder,
    target_ref: &Value,
    port: &str,
    store: &'a Store,
    attach_node: bool,
) -> Option<&'a Value> {
    if target_ref.is_null() {
        return None;
    }
    t.set(
        &format!("{META}endpoint_address_target_kind"),
        s(target_ref, &["kind"]),
    );
    t.set(
        &format!("{META}endpoint_address_target_name"),
        s(target_ref, &["name"]),
    );
    if target_ref["kind"] != "Pod" {
        return None;
    }
    let pod = store.get(
        Kind::Pod,
        s(target_ref, &["namespace"]),
        s(target_ref, &["name"]),
    )?;
    pod_labels(t, pod, store, attach_node);
    for (c, init) in containers(pod) {
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["containerPort"]
                .as_u64()
                .map(|n| n.to_string())
                .as_deref()
                == Some(port)
            {
                let cname = s(c, &["name"]);
                t.set(&format!("{META}pod_container_name"), cname);
                t.set(&format!("{META}pod_container_image"), s(c, &["image"]));
                t.set(&format!("{META}pod_container_port_name"), s(p, &["name"]));
                t.set(&format!("{META}pod_container_port_number"), port);
                t.set(
                    &format!("{META}pod_container_port_protocol"),
                    p["protocol"].as_str().unwrap_or("TCP"),
                );
                t.set(
                    &format!("{META}pod_container_init"),
                    if init { "true" } else { "false" },
                );
            }
        }
    }
    Some(pod)
}

/// The pods an endpoints object (or slice) points at, in first-seen order,
/// each with the endpoint port numbers that already gave it a target.
#[derive(Default)]
struct SeenPods<'a> {
    pods: Vec<(&'a Value, Vec<u64>)>,
}

impl<'a> SeenPods<'a> {
    fn note(&mut self, pod: &'a Value, port: u64) {
        let k = key(pod);
        match self.pods.iter_mut().find(|(p, _)| key(p) == k) {
            Some((_, ports)) => ports.push(port),
            None => self.pods.push((pod, vec![port])),
        }
    }

    /// Like Prometheus: one target per container port (init containers
    /// included) of a seen pod that no endpoint port covered, with the pod
    /// and container labels but no endpoint labels. Pods without an IP
    /// (starting or evicted) give none.
    fn uncovered_targets(&self, store: &Store, attach_node: bool) -> Vec<pharos_model::Labels> {
        let mut out = Vec::new();
        for (pod, covered) in &self.pods {
            let ip = s(pod, &["status", "podIP"]);
            if ip.is_empty() {
                continue;
            }
            for (c, init) in containers(pod) {
                for p in c["ports"].as_array().into_iter().flatten() {
                    let n = p["containerPort"].as_u64().unwrap_or(0);
                    if covered.contains(&n) {
                        continue;
                    }
                    let num = n.to_string();
                    let mut t = LabelsBuilder::new();
                    t.set(ADDRESS_LABEL, &join_host_port(ip, &num));
                    t.set(&format!("{META}pod_container_name"), s(c, &["name"]));
                    t.set(&format!("{META}pod_container_image"), s(c, &["image"]));
                    t.set(&format!("{META}pod_container_port_name"), s(p, &["name"]));
                    t.set(&format!("{META}pod_container_port_number"), &num);
                    t.set(
                        &format!("{META}pod_container_port_protocol"),
                        p["protocol"].as_str().unwrap_or("TCP"),
                    );
                    t.set(
                        &format!("{META}pod_container_init"),
                        if init { "true" } else { "false" },
                    );
                    pod_labels(&mut t, pod, store, attach_node);
                    out.push(t.build());
                }
            }
        }
        out
    }
}

fn endpoints_group(ep: &Value, store: &Store, attach_node: bool) -> TargetGroup {
    let ns = s(ep, &["metadata", "namespace"]);
    let name = s(ep, &["metadata", "name"]);
    let mut g = LabelsBuilder::new();
    g.set(&format!("{META}namespace"), ns);
    g.set(&format!("{META}endpoints_name"), name);
    meta_labels(&mut g, "endpoints", ep);
    if let Some(svc) = store.get(Kind::Service, ns, name) {
        service_labels(&mut g, svc);
    }
    let mut targets = Vec::new();
    let mut seen = SeenPods::default();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        for (field, ready) in [("addresses", "true"), ("notReadyAddresses", "false")] {
            for addr in subset[field].as_array().into_iter().flatten() {
                for p in subset["ports"].as_array().into_iter().flatten() {
                    let num = p["port"].as_u64().unwrap_or(0).to_string();
                    let mut t = LabelsBuilder::new();
                    t.set(ADDRESS_LABEL, &join_host_port(s(addr, &["ip"]), &num));
                    t.set(&format!("{META}endpoint_port_name"), s(p, &["name"]));
                    t.set(
                        &format!("{META}endpoint_port_protocol"),
                        p["protocol"].as_str().unwrap_or("TCP"),
                    );
                    t.set(&format!("{META}endpoint_ready"), ready);
                    if let Some(h) = addr["hostname"].as_str() {
                        t.set(&format!("{META}endpoint_hostname"), h);
                    }
                    if let Some(n) = addr["nodeName"].as_str() {
                        t.set(&format!("{META}endpoint_node_name"), n);
                    }
                    if let Some(pod) =
                        target_ref_labels(&mut t, &addr["targetRef"], &num, store, attach_node)
                    {
                        seen.note(pod, p["port"].as_u64().unwrap_or(0));
                    }
                    targets.push(t.build());
                }
            }
        }
    }
    targets.extend(seen.uncovered_targets(store, attach_node));
    TargetGroup {
        source: format!("endpoints/{ns}/{name}"),
        targets,
        labels: g.build(),
    }
}

fn endpointslice_group(es: &Value, store: &Store, attach_node: bool) -> TargetGroup {
    let ns = s(es, &["metadata", "namespace"]);
    let name = s(es, &["metadata", "name"]);
    let mut g = LabelsBuilder::new();
    g.set(&format!("{META}namespace"), ns);
    g.set(&format!("{META}endpointslice_name"), name);
    g.set(
        &format!("{META}endpointslice_address_type"),
        s(es, &["addressType"]),
    );
    meta_labels(&mut g, "endpointslice", es);
    let svc_name = s(es, &["metadata", "labels", "kubernetes.io/service-name"]);
    if let Some(svc) = store.get(Kind::Service, ns, svc_name) {
        service_labels(&mut g, svc);
    }
    let mut targets = Vec::new();
    let bool_label = |v: &Value| match v.as_bool() {
        Some(true) => "true",
        Some(false) => "false",
        None => "",
    };
    let mut seen = SeenPods::default();
    for e in es["endpoints"].as_array().into_iter().flatten() {
        let Some(addr) = e["addresses"].as_array().and_then(|a| a.first()) else {
            continue;
        };
        for p in es["ports"].as_array().into_iter().flatten() {
            let num = p["port"].as_u64().unwrap_or(0).to_string();
            let mut t = LabelsBuilder::new();
            t.set(
                ADDRESS_LABEL,
                &join_host_port(addr.as_str().unwrap_or(""), &num),
            );
            t.set(&format!("{META}endpointslice_port"), &num);
            t.set(&format!("{META}endpointslice_port_name"), s(p, &["name"]));
            t.set(
                &format!("{META}endpointslice_port_protocol"),
                p["protocol"].as_str().unwrap_or("TCP"),
            );
            if let Some(ap) = p["appProtocol"].as_str() {
                t.set(&format!("{META}endpointslice_port_app_protocol"), ap);
            }
            for c in ["ready", "serving", "terminating"] {
                let v = bool_label(&e["conditions"][c]);
                if !v.is_empty() {
                    t.set(&format!("{META}endpointslice_endpoint_conditions_{c}"), v);
                }
            }
            if let Some(h) = e["hostname"].as_str() {
                t.set(&format!("{META}endpointslice_endpoint_hostname"), h);
            }
            if let Some(n) = e["nodeName"].as_str() {
                t.set(&format!("{META}endpointslice_endpoint_node_name"), n);
            }
            if let Some(z) = e["zone"].as_str() {
                t.set(&format!("{META}endpointslice_endpoint_zone"), z);
            }
            if !e["targetRef"].is_null() {
                t.set(
                    &format!("{META}endpointslice_address_target_kind"),
                    s(&e["targetRef"], &["kind"]),
                );
                t.set(
                    &format!("{META}endpointslice_address_target_name"),
                    s(&e["targetRef"], &["name"]),
                );
                let mut r = LabelsBuilder::new();
                if let Some(pod) =
                    target_ref_labels(&mut r, &e["targetRef"], &num, store, attach_node)
                {
                    seen.note(pod, p["port"].as_u64().unwrap_or(0));
                }
                for l in r.build().iter() {
                    if !l.name.starts_with(&format!("{META}endpoint_address_")) {
                        t.set(l.name, l.value);
                    }
                }
            }
            targets.push(t.build());
        }
    }
    targets.extend(seen.uncovered_targets(store, attach_node));
    TargetGroup {
        source: format!("endpointslice/{ns}/{name}"),
        targets,
        labels: g.build(),
    }
}

fn ingress_group(ing: &Value) -> TargetGroup {
    let ns = s(ing, &["metadata", "namespace"]);
    let name = s(ing, &["metadata", "name"]);
    let mut g = LabelsBuilder::new();
    g.set(&format!("{META}namespace"), ns);
    g.set(&format!("{META}ingress_name"), name);
    meta_labels(&mut g, "ingress", ing);
    if let Some(c) = ing["spec"]["ingressClassName"].as_str() {
        g.set(&format!("{META}ingress_class_name"), c);
    }
    let tls_hosts: Vec<&str> = ing["spec"]["tls"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["hosts"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let mut targets = Vec::new();
    for rule in ing["spec"]["rules"].as_array().into_iter().flatten() {
        let host = s(rule, &["host"]);
        let scheme = if tls_hosts.iter().any(|h| matches_host(h, host)) {
            "https"
        } else {
            "http"
        };
        let paths: Vec<&str> = rule["http"]["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["path"].as_str().unwrap_or("/"))
            .collect();
        let paths = if paths.is_empty() { vec!["/"] } else { paths };
        for path in paths {
            let mut t = LabelsBuilder::new();
            t.set(ADDRESS_LABEL, host);
            t.set(&format!("{META}ingress_scheme"), scheme);
            t.set(&format!("{META}ingress_host"), host);
            t.set(
                &format!("{META}ingress_path"),
                if path.is_empty() { "/" } else { path },
            );
            targets.push(t.build());
        }
    }
    TargetGroup {
        source: format!("ingress/{ns}/{name}"),
        targets,
        labels: g.build(),
    }
}

/// A TLS host pattern (`*.example.org` matches one label) against a host.
fn matches_host(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => pattern == host,
    }
}

/// Adds `__meta_kubernetes_namespace_label_*`, `_labelpresent_*`,
/// `_annotation_*` and `_annotationpresent_*` of the group's namespace
/// (`attach_metadata.namespace`) to its labels, when the namespace is known.
fn attach_namespace(g: &mut TargetGroup, store: &Store) {
    let Some(ns) = g.labels.get(&format!("{META}namespace")) else {
        return;
    };
    let Some(obj) = store.get(Kind::Namespace, "", ns) else {
        return;
    };
    let mut b = LabelsBuilder::from(&g.labels);
    meta_labels(&mut b, "namespace", obj);
    g.labels = b.build();
}

/// Renders every group of the configured role from the store, by source.
fn render(cfg: &KubernetesSdConfig, store: &Store) -> BTreeMap<String, TargetGroup> {
    let attach_node = cfg.attach_metadata_node;
    let mut groups: Vec<TargetGroup> = match cfg.role {
        KubernetesRole::Node => store.all(Kind::Node).map(node_group).collect(),
        KubernetesRole::Pod => store
            .all(Kind::Pod)
            .map(|p| pod_group(p, store, attach_node))
            .collect(),
        KubernetesRole::Service => store.all(Kind::Service).map(service_group).collect(),
        KubernetesRole::Endpoints => store
            .all(Kind::Endpoints)
            .map(|e| endpoints_group(e, store, attach_node))
            .collect(),
        KubernetesRole::EndpointSlice => store
            .all(Kind::EndpointSlice)
            .map(|e| endpointslice_group(e, store, attach_node))
            .collect(),
        KubernetesRole::Ingress => store.all(Kind::Ingress).map(ingress_group).collect(),
    };
    if cfg.attach_metadata_namespace {
        for g in &mut groups {
            attach_namespace(g, store);
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.targets.is_empty())
        .map(|g| (g.source.clone(), g))
        .collect()
}

impl Discoverer for KubernetesDiscoverer {
    fn run(self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture {
        Box::pin(async move {
            let conn = match connect(&self.cfg, &self.user_agent) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(err = %e, "Cannot create Kubernetes discovery");
                    return;
                }
            };
            let (ev_tx, mut ev_rx) = mpsc::channel::<Event>(256);
            let kinds = kinds(&self.cfg);
            let mut watchers = Vec::new();
            let mut pending_lists = 0usize;
            for kind in &kinds {
                let nss = if kind.namespaced() {
                    self.namespaces()
                } else {
                    vec![None]
                };
                for ns in nss {
                    pending_lists += 1;
                    watchers.push(tokio::spawn(watch_loop(
                        conn.clone(),
                        *kind,
                        ns,
                        self.selector_query(*kind),
                        self.retry,
                        ev_tx.clone(),
                    )));
                }
            }
            drop(ev_tx);
            let mut store = Store::default();
            let mut sent: BTreeMap<String, TargetGroup> = BTreeMap::new();
            let mut initial_sent = false;
            while let Some(ev) = ev_rx.recv().await {
                if matches!(ev, Event::Reset(..)) {
                    pending_lists = pending_lists.saturating_sub(1);
                }
                store.apply(ev);
                // Wait for every first LIST before the first update, so joins
                // (endpoints with services and pods) are complete.
                if !initial_sent && pending_lists > 0 {
                    continue;
                }
                let now = render(&self.cfg, &store);
                let mut update: Vec<TargetGroup> = now
                    .iter()
                    .filter(|(k, g)| sent.get(*k) != Some(*g))
                    .map(|(_, g)| g.clone())
                    .collect();
                update.extend(
                    sent.keys()
                        .filter(|k| !now.contains_key(*k))
                        .map(|k| TargetGroup::empty(k.clone())),
                );
                if !update.is_empty() || !initial_sent {
                    initial_sent = true;
                    if tx.send(update).await.is_err() {
                        break;
                    }
                }
                sent = now;
            }
            for w in watchers {
                w.abort();
            }
        })
    }
}

#[cfg(test)]
mod tests;
