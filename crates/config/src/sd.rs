//! Service discovery configuration: `file_sd_configs`, `http_sd_configs`
//! and `dns_sd_configs`, their raw YAML shapes, Prometheus's defaults and
//! checks.
//!
//! The types only describe what to discover; the `pharos-discovery` crate
//! runs them. They live here so that a whole `scrape_config` is one plain
//! value that can be compared on reload (a changed discovery config restarts
//! the pool, an unchanged one keeps it).

use pharos_model::Duration;
use serde::Deserialize;
use serde_saphyr::Location;

use crate::raw::{Opt, Sp};

/// One entry of `file_sd_configs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSdConfig {
    /// File paths or globs (`*` only in the last path element). Relative
    /// paths are resolved against the configuration file's directory by
    /// [`crate::load_file`].
    pub files: Vec<String>,
    /// How often every file is re-read even without a change. Default 5m.
    pub refresh_interval: Duration,
}

/// One entry of `http_sd_configs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSdConfig {
    /// The `http` or `https` URL returning target groups as JSON.
    pub url: String,
    /// How often the URL is fetched. Default 1m.
    pub refresh_interval: Duration,
    /// How to reach the URL (auth, TLS, proxy, headers).
    pub http_client: crate::HttpClientConfig,
}

/// The DNS record type a `dns_sd_configs` entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRecordType {
    /// `SRV`: targets from the records' host and port.
    Srv,
    /// `A`: IPv4 addresses with the configured port.
    A,
    /// `AAAA`: IPv6 addresses with the configured port.
    Aaaa,
    /// `MX`: mail exchanger hosts with the configured port.
    Mx,
    /// `NS`: name server hosts with the configured port.
    Ns,
}

impl DnsRecordType {
    /// The name as written in the config (`SRV`, `A`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecordType::Srv => "SRV",
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
            DnsRecordType::Mx => "MX",
            DnsRecordType::Ns => "NS",
        }
    }
}

/// One entry of `dns_sd_configs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSdConfig {
    /// The names to query.
    pub names: Vec<String>,
    /// The record type. Default `SRV`.
    pub record_type: DnsRecordType,
    /// The port of targets from A, AAAA, MX and NS records (SRV records
    /// carry their own).
    pub port: u16,
    /// How often the names are resolved again. Default 30s.
    pub refresh_interval: Duration,
}

/// The Kubernetes object kind a `kubernetes_sd_configs` entry discovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubernetesRole {
    /// One target per node (the kubelet).
    Node,
    /// One target per pod container port.
    Pod,
    /// One target per service port.
    Service,
    /// One target per endpoint address and port.
    Endpoints,
    /// One target per endpoint of an EndpointSlice and port.
    EndpointSlice,
    /// One target per ingress rule path.
    Ingress,
}

impl KubernetesRole {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            KubernetesRole::Node => "node",
            KubernetesRole::Pod => "pod",
            KubernetesRole::Service => "service",
            KubernetesRole::Endpoints => "endpoints",
            KubernetesRole::EndpointSlice => "endpointslice",
            KubernetesRole::Ingress => "ingress",
        }
    }

    fn parse(s: &str) -> Option<KubernetesRole> {
        Some(match s {
            "node" => KubernetesRole::Node,
            "pod" => KubernetesRole::Pod,
            "service" => KubernetesRole::Service,
            "endpoints" => KubernetesRole::Endpoints,
            "endpointslice" => KubernetesRole::EndpointSlice,
            "ingress" => KubernetesRole::Ingress,
            _ => return None,
        })
    }
}

/// One `selectors` entry: label and field selectors for one role's LIST
/// and WATCH requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSelector {
    /// The role whose objects this selects.
    pub role: KubernetesRole,
    /// A label selector (`app=web,tier!=db`), empty for none.
    pub label: String,
    /// A field selector (`spec.nodeName=n1`), empty for none.
    pub field: String,
}

/// One entry of `kubernetes_sd_configs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSdConfig {
    /// What to discover.
    pub role: KubernetesRole,
    /// The API server URL; `None` with no `kubeconfig_file` means
    /// in-cluster configuration.
    pub api_server: Option<String>,
    /// A kubeconfig file to take the server and credentials from.
    pub kubeconfig_file: Option<String>,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Also watch the namespace pharos runs in (in-cluster only).
    pub own_namespace: bool,
    /// Label and field selectors per role.
    pub selectors: Vec<KubernetesSelector>,
    /// Add the node's labels to pod targets (`attach_metadata.node`).
    pub attach_metadata_node: bool,
    /// Add the namespace's labels and annotations to the groups of the
    /// namespaced roles (`attach_metadata.namespace`).
    pub attach_metadata_namespace: bool,
    /// How to reach the API server when `api_server` is given.
    pub http_client: crate::HttpClientConfig,
}

/// `kubernetes_sd_configs` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKubernetesSd {
    #[serde(default)]
    pub role: Opt<String>,
    #[serde(default)]
    pub api_server: Opt<String>,
    #[serde(default)]
    pub kubeconfig_file: Opt<String>,
    #[serde(default)]
    pub namespaces: Opt<RawNamespaces>,
    #[serde(default)]
    pub selectors: Option<Vec<Sp<RawSelector>>>,
    #[serde(default)]
    pub attach_metadata: Opt<RawAttachMetadata>,
    #[serde(default)]
    pub follow_redirects: Opt<bool>,
    #[serde(default)]
    pub enable_http2: Opt<bool>,
    #[serde(default)]
    pub basic_auth: Opt<crate::http::RawBasicAuth>,
    #[serde(default)]
    pub authorization: Opt<crate::http::RawAuthorization>,
    #[serde(default)]
    pub oauth2: crate::raw::Unsupported,
    #[serde(default)]
    pub bearer_token: Opt<String>,
    #[serde(default)]
    pub bearer_token_file: Opt<String>,
    #[serde(default)]
    pub tls_config: Opt<crate::http::RawTls>,
    #[serde(default)]
    pub proxy_url: Opt<String>,
    #[serde(default)]
    pub no_proxy: Opt<String>,
    #[serde(default)]
    pub proxy_from_environment: Opt<bool>,
    #[serde(default)]
    pub proxy_connect_header: crate::raw::Unsupported,
    #[serde(default)]
    pub http_headers: Opt<std::collections::BTreeMap<String, crate::http::RawHeader>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNamespaces {
    #[serde(default)]
    pub own_namespace: Option<bool>,
    #[serde(default)]
    pub names: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSelector {
    #[serde(default)]
    pub role: Opt<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttachMetadata {
    #[serde(default)]
    pub node: Option<bool>,
    #[serde(default)]
    pub namespace: Option<bool>,
}

fn k8s_role(v: &Sp<String>) -> Check<KubernetesRole> {
    KubernetesRole::parse(&v.value).ok_or_else(|| {
        (
            v.referenced,
            format!("unknown Kubernetes SD role {:?}", v.value),
        )
    })
}

pub(crate) fn kubernetes_sd(r: &RawKubernetesSd, at: &Location) -> Check<KubernetesSdConfig> {
    let role = match r.role.as_ref().filter(|x| !x.value.is_empty()) {
        Some(x) => k8s_role(x)?,
        None => {
            return Err((
                *at,
                "role missing (one of: pod, service, endpoints, endpointslice, node, ingress)"
                    .to_string(),
            ));
        }
    };
    let http_client = crate::http::http_client(&crate::raw::http_client_ref!(r), at)?;
    let api_server = r.api_server.as_ref().filter(|x| !x.value.is_empty());
    let kubeconfig = r.kubeconfig_file.as_ref().filter(|x| !x.value.is_empty());
    let custom_http = http_client != crate::HttpClientConfig::default();
    if let (Some(_), Some(k)) = (api_server, kubeconfig) {
        return Err((
            k.referenced,
            "cannot use 'kubeconfig_file' and 'api_server' simultaneously".to_string(),
        ));
    }
    if let Some(k) = kubeconfig
        && custom_http
    {
        return Err((
            k.referenced,
            "cannot use a custom HTTP client configuration together with 'kubeconfig_file'"
                .to_string(),
        ));
    }
    if api_server.is_none() && custom_http {
        return Err((
            *at,
            "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"
                .to_string(),
        ));
    }
    if let Some(a) = api_server {
        let ok = a
            .value
            .split_once("://")
            .is_some_and(|(s, h)| (s == "http" || s == "https") && !h.is_empty());
        if !ok {
            return Err((
                a.referenced,
                format!("invalid api_server URL {:?}", a.value),
            ));
        }
    }
    let own_namespace = r
        .namespaces
        .as_ref()
        .and_then(|n| n.value.own_namespace)
        .unwrap_or(false);
    if own_namespace {
        let loc = r.namespaces.as_ref().map_or(*at, |n| n.referenced);
        if api_server.is_some() {
            return Err((
                loc,
                "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously".to_string(),
            ));
        }
        if kubeconfig.is_some() {
            return Err((
                loc,
                "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously"
                    .to_string(),
            ));
        }
    }
    let allowed: &[KubernetesRole] = match role {
        KubernetesRole::Pod => &[KubernetesRole::Pod, KubernetesRole::Node],
        KubernetesRole::Service => &[KubernetesRole::Service],
        KubernetesRole::EndpointSlice => &[
            KubernetesRole::Pod,
            KubernetesRole::Service,
            KubernetesRole::EndpointSlice,
        ],
        KubernetesRole::Endpoints => &[
            KubernetesRole::Pod,
            KubernetesRole::Service,
            KubernetesRole::Endpoints,
        ],
        KubernetesRole::Node => &[KubernetesRole::Node],
        KubernetesRole::Ingress => &[KubernetesRole::Ingress],
    };
    let mut selectors: Vec<KubernetesSelector> = Vec::new();
    for sel in r.selectors.iter().flatten() {
        let Some(sr) = sel.value.role.as_ref() else {
            return Err((sel.referenced, "selector role missing".to_string()));
        };
        let srole = k8s_role(sr)?;
        if selectors.iter().any(|x| x.role == srole) {
            return Err((
                sr.referenced,
                format!("duplicated selector role: {}", srole.as_str()),
            ));
        }
        if !allowed.contains(&srole) {
            let names: Vec<&str> = allowed.iter().map(|x| x.as_str()).collect();
            return Err((
                sr.referenced,
                format!(
                    "{} role supports only {} selectors",
                    role.as_str(),
                    names.join(", ")
                ),
            ));
        }
        let label = sel.value.label.clone().unwrap_or_default();
        let field = sel.value.field.clone().unwrap_or_default();
        if let Some(bad) = field
            .split(',')
            .map(str::trim)
            .find(|p| !p.is_empty() && !p.contains('='))
        {
            return Err((sel.referenced, format!("invalid field selector: {bad:?}")));
        }
        selectors.push(KubernetesSelector {
            role: srole,
            label,
            field,
        });
    }
    Ok(KubernetesSdConfig {
        role,
        api_server: api_server.map(|a| a.value.clone()),
        kubeconfig_file: kubeconfig.map(|k| k.value.clone()),
        namespaces: r
            .namespaces
            .as_ref()
            .and_then(|n| n.value.names.clone())
            .unwrap_or_default(),
        own_namespace,
        selectors,
        attach_metadata_node: r
            .attach_metadata
            .as_ref()
            .and_then(|a| a.value.node)
            .unwrap_or(false),
        attach_metadata_namespace: r
            .attach_metadata
            .as_ref()
            .and_then(|a| a.value.namespace)
            .unwrap_or(false),
        http_client,
    })
}

/// `file_sd_configs` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFileSd {
    #[serde(default)]
    pub files: Option<Vec<Sp<String>>>,
    #[serde(default)]
    pub refresh_interval: Opt<String>,
}

/// `http_sd_configs` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpSd {
    #[serde(default)]
    pub url: Opt<String>,
    #[serde(default)]
    pub refresh_interval: Opt<String>,
    #[serde(default)]
    pub follow_redirects: Opt<bool>,
    #[serde(default)]
    pub enable_http2: Opt<bool>,
    #[serde(default)]
    pub basic_auth: Opt<crate::http::RawBasicAuth>,
    #[serde(default)]
    pub authorization: Opt<crate::http::RawAuthorization>,
    #[serde(default)]
    pub oauth2: crate::raw::Unsupported,
    #[serde(default)]
    pub bearer_token: Opt<String>,
    #[serde(default)]
    pub bearer_token_file: Opt<String>,
    #[serde(default)]
    pub tls_config: Opt<crate::http::RawTls>,
    #[serde(default)]
    pub proxy_url: Opt<String>,
    #[serde(default)]
    pub no_proxy: Opt<String>,
    #[serde(default)]
    pub proxy_from_environment: Opt<bool>,
    #[serde(default)]
    pub proxy_connect_header: crate::raw::Unsupported,
    #[serde(default)]
    pub http_headers: Opt<std::collections::BTreeMap<String, crate::http::RawHeader>>,
}

/// `dns_sd_configs` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDnsSd {
    #[serde(default)]
    pub names: Option<Vec<Sp<String>>>,
    #[serde(default, rename = "type")]
    pub record_type: Opt<String>,
    #[serde(default)]
    pub port: Opt<u16>,
    #[serde(default)]
    pub refresh_interval: Opt<String>,
}

/// A raw list of discovery entries (`null` entries are errors).
pub(crate) type RawList<T> = Option<Vec<Sp<Option<T>>>>;

type Check<T> = Result<T, (Location, String)>;

fn refresh(v: &Opt<String>, default_ms: i64) -> Check<Duration> {
    match v {
        None => Ok(Duration(default_ms)),
        Some(s) => Duration::parse(&s.value).map_err(|e| (s.referenced, e.to_string())),
    }
}

/// Whether `p` is a path file discovery accepts: Prometheus's
/// `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`.
pub(crate) fn is_valid_file_sd_path(p: &str) -> bool {
    let ext_ok = ["json", "yml", "yaml", "JSON", "YML", "YAML"]
        .iter()
        .any(|e| p.len() > e.len() && p.ends_with(e) && p[..p.len() - e.len()].ends_with('.'));
    if !ext_ok {
        return false;
    }
    match p.find('*') {
        None => true,
        Some(i) => !p[i + 1..].contains('/'),
    }
}

pub(crate) fn file_sd(r: &RawFileSd, at: &Location) -> Check<FileSdConfig> {
    let files: Vec<&Sp<String>> = r.files.iter().flatten().collect();
    if files.is_empty() {
        return Err((
            *at,
            "file service discovery config must contain at least one path name".to_string(),
        ));
    }
    for f in &files {
        if !is_valid_file_sd_path(&f.value) {
            return Err((
                f.referenced,
                format!("path name {:?} is not valid for file discovery", f.value),
            ));
        }
    }
    Ok(FileSdConfig {
        files: files.iter().map(|f| f.value.clone()).collect(),
        refresh_interval: refresh(&r.refresh_interval, 300_000)?,
    })
}

pub(crate) fn http_sd(r: &RawHttpSd, at: &Location) -> Check<HttpSdConfig> {
    let Some(url) = r.url.as_ref().filter(|u| !u.value.is_empty()) else {
        return Err((*at, "URL is missing".to_string()));
    };
    let (scheme, rest) = url.value.split_once("://").unwrap_or(("", ""));
    if scheme != "http" && scheme != "https" {
        return Err((
            url.referenced,
            "URL scheme must be 'http' or 'https'".to_string(),
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() {
        return Err((url.referenced, "host is missing in URL".to_string()));
    }
    let refresh_interval = refresh(&r.refresh_interval, 60_000)?;
    let http_client = crate::http::http_client(&crate::raw::http_client_ref!(r), at)?;
    Ok(HttpSdConfig {
        url: url.value.clone(),
        refresh_interval,
        http_client,
    })
}

pub(crate) fn dns_sd(r: &RawDnsSd, at: &Location) -> Check<DnsSdConfig> {
    let names: Vec<&Sp<String>> = r.names.iter().flatten().collect();
    if names.is_empty() {
        return Err((
            *at,
            "DNS-SD config must contain at least one SRV record name".to_string(),
        ));
    }
    let record_type = match &r.record_type {
        None => DnsRecordType::Srv,
        Some(t) => match t.value.to_uppercase().as_str() {
            "" | "SRV" => DnsRecordType::Srv,
            "A" => DnsRecordType::A,
            "AAAA" => DnsRecordType::Aaaa,
            "MX" => DnsRecordType::Mx,
            "NS" => DnsRecordType::Ns,
            _ => {
                return Err((
                    t.referenced,
                    format!("invalid DNS-SD records type {}", t.value),
                ));
            }
        },
    };
    let port = r.port.as_ref().map_or(0, |p| p.value);
    if record_type != DnsRecordType::Srv && port == 0 {
        let loc = r.port.as_ref().map_or(*at, |p| p.referenced);
        return Err((
            loc,
            "a port is required in DNS-SD configs for all record types except SRV".to_string(),
        ));
    }
    Ok(DnsSdConfig {
        names: names.iter().map(|n| n.value.clone()).collect(),
        record_type,
        port,
        refresh_interval: refresh(&r.refresh_interval, 30_000)?,
    })
}

/// Converts a raw list with `conv`, turning null entries into `null_msg`.
pub(crate) fn list<R, T>(
    raw: &RawList<R>,
    null_msg: &str,
    conv: impl Fn(&R, &Location) -> Check<T>,
) -> Check<Vec<T>> {
    let mut out = Vec::new();
    for e in raw.iter().flatten() {
        match &e.value {
            None => return Err((e.referenced, null_msg.to_string())),
            Some(r) => out.push(conv(r, &e.referenced)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sd_path_rule() {
        for ok in [
            "a.json",
            "dir/*.yml",
            "/x/y/t*.yaml",
            "a.JSON",
            "x/a*b.json",
            ".json",
            "a**.json",
        ] {
            assert!(is_valid_file_sd_path(ok), "{ok}");
        }
        for bad in ["a.txt", "*/a.json", "a", "json", "x*/y.yml"] {
            assert!(!is_valid_file_sd_path(bad), "{bad}");
        }
    }
}
