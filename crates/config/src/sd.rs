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
