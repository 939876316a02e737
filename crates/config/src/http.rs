//! HTTP client settings of a scrape job or an HTTP discovery endpoint:
//! `basic_auth`, `authorization` (and the older `bearer_token`),
//! `tls_config`, `follow_redirects`, `enable_http2`, `proxy_url`,
//! `http_headers`, with the checks of Prometheus's common `HTTPClientConfig`.
//!
//! Secrets given by file (`password_file`, `credentials_file`, header
//! `files`) are kept as paths: they are read at each request, so a rotated
//! token is picked up without a reload, as in Prometheus.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Location;

use crate::raw::{Opt, Unsupported};

/// `basic_auth`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// A file holding the user name (instead of `username`).
    pub username_file: Option<String>,
    /// The password.
    pub password: String,
    /// A file holding the password (instead of `password`).
    pub password_file: Option<String>,
}

/// `authorization`: an `Authorization: <type> <credentials>` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The scheme. Default `Bearer`.
    pub auth_type: String,
    /// The credentials.
    pub credentials: String,
    /// A file holding the credentials (instead of `credentials`).
    pub credentials_file: Option<String>,
}

/// The oldest TLS version a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.0.
    Tls10,
    /// TLS 1.1.
    Tls11,
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// `tls_config`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// PEM CA certificates, inline.
    pub ca: String,
    /// A PEM file of CA certificates to verify the server with (instead of
    /// the system's).
    pub ca_file: Option<String>,
    /// PEM client certificate, inline.
    pub cert: String,
    /// A PEM client certificate file.
    pub cert_file: Option<String>,
    /// PEM client key, inline.
    pub key: String,
    /// A PEM client key file.
    pub key_file: Option<String>,
    /// The name the server certificate must be valid for (SNI and
    /// verification), instead of the URL's host.
    pub server_name: Option<String>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
    /// The oldest protocol version accepted; `None` is the library default
    /// (TLS 1.2).
    pub min_version: Option<TlsVersion>,
}

/// One entry of `http_headers`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderValues {
    /// Plain values.
    pub values: Vec<String>,
    /// Secret values (same effect, hidden in output).
    pub secrets: Vec<String>,
    /// Files whose contents are values, read at each request.
    pub files: Vec<String>,
}

/// The HTTP client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// `basic_auth`.
    pub basic_auth: Option<BasicAuth>,
    /// `authorization` (also set from `bearer_token`/`bearer_token_file`).
    pub authorization: Option<Authorization>,
    /// `tls_config`.
    pub tls_config: TlsConfig,
    /// Follow HTTP redirects. Default true.
    pub follow_redirects: bool,
    /// Allow HTTP/2. Default true.
    pub enable_http2: bool,
    /// Proxy for every request.
    pub proxy_url: Option<String>,
    /// Extra request headers.
    pub http_headers: BTreeMap<String, HeaderValues>,
}

impl Default for HttpClientConfig {
    /// Prometheus's defaults: no auth, system roots, redirects and HTTP/2
    /// on, no proxy, no extra headers.
    fn default() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
            proxy_url: None,
            http_headers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasicAuth {
    #[serde(default)]
    pub username: Opt<String>,
    #[serde(default)]
    pub username_file: Opt<String>,
    #[serde(default)]
    pub password: Opt<String>,
    #[serde(default)]
    pub password_file: Opt<String>,
    #[serde(default)]
    pub username_ref: Unsupported,
    #[serde(default)]
    pub password_ref: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthorization {
    #[serde(default, rename = "type")]
    pub auth_type: Opt<String>,
    #[serde(default)]
    pub credentials: Opt<String>,
    #[serde(default)]
    pub credentials_file: Opt<String>,
    #[serde(default)]
    pub credentials_ref: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default)]
    pub ca: Opt<String>,
    #[serde(default)]
    pub ca_file: Opt<String>,
    #[serde(default)]
    pub cert: Opt<String>,
    #[serde(default)]
    pub cert_file: Opt<String>,
    #[serde(default)]
    pub key: Opt<String>,
    #[serde(default)]
    pub key_file: Opt<String>,
    #[serde(default)]
    pub server_name: Opt<String>,
    #[serde(default)]
    pub insecure_skip_verify: Opt<bool>,
    #[serde(default)]
    pub min_version: Opt<String>,
    #[serde(default)]
    pub max_version: Unsupported,
    #[serde(default)]
    pub ca_ref: Unsupported,
    #[serde(default)]
    pub cert_ref: Unsupported,
    #[serde(default)]
    pub key_ref: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeader {
    #[serde(default)]
    pub values: Option<Vec<String>>,
    #[serde(default)]
    pub secrets: Option<Vec<String>>,
    #[serde(default)]
    pub files: Option<Vec<String>>,
}

/// The HTTP client keys of one section, borrowed from its raw struct.
pub(crate) struct RawHttpClientRef<'a> {
    pub basic_auth: &'a Opt<RawBasicAuth>,
    pub authorization: &'a Opt<RawAuthorization>,
    pub bearer_token: &'a Opt<String>,
    pub bearer_token_file: &'a Opt<String>,
    pub tls_config: &'a Opt<RawTls>,
    pub follow_redirects: &'a Opt<bool>,
    pub enable_http2: &'a Opt<bool>,
    pub proxy_url: &'a Opt<String>,
    pub no_proxy: &'a Opt<String>,
    pub proxy_from_environment: &'a Opt<bool>,
    pub proxy_connect_header: &'a Unsupported,
    pub http_headers: &'a Opt<BTreeMap<String, RawHeader>>,
    pub oauth2: &'a Unsupported,
}

type Check<T> = Result<T, (Location, String)>;

fn set(v: &Opt<String>) -> bool {
    v.as_ref().is_some_and(|s| !s.value.is_empty())
}

fn val(v: &Opt<String>) -> String {
    v.as_ref().map(|s| s.value.clone()).unwrap_or_default()
}

fn file(v: &Opt<String>) -> Option<String> {
    v.as_ref()
        .filter(|s| !s.value.is_empty())
        .map(|s| s.value.clone())
}

fn loc<T>(v: &Opt<T>, at: &Location) -> Location {
    v.as_ref().map_or(*at, |s| s.referenced)
}

/// Headers a config may not set (Prometheus's reserved list).
const RESERVED_HEADERS: [&str; 18] = [
    "Authorization",
    "Host",
    "Content-Encoding",
    "Content-Length",
    "Content-Type",
    "User-Agent",
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Www-Authenticate",
    "Accept-Encoding",
    "X-Prometheus-Remote-Write-Version",
    "X-Prometheus-Remote-Read-Version",
    "X-Prometheus-Scrape-Timeout-Seconds",
    "X-Amz-Date",
    "X-Amz-Security-Token",
    "X-Amz-Content-Sha256",
];

/// Go's `http.CanonicalHeaderKey` for ASCII names.
fn canonical_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// Checks and converts the HTTP client keys of a section starting at `at`,
/// in the order Prometheus checks them.
pub(crate) fn http_client(r: &RawHttpClientRef<'_>, at: &Location) -> Check<HttpClientConfig> {
    if let Some(o) = r.oauth2 {
        return Err((o.referenced, "oauth2 is not supported yet".to_string()));
    }
    if let Some(h) = r.proxy_connect_header {
        return Err((
            h.referenced,
            "proxy_connect_header is not supported yet".to_string(),
        ));
    }
    let bearer = set(r.bearer_token);
    let bearer_file = set(r.bearer_token_file);
    if bearer && bearer_file {
        return Err((
            loc(r.bearer_token_file, at),
            "at most one of bearer_token & bearer_token_file must be configured".to_string(),
        ));
    }
    if r.basic_auth.is_some() && (bearer || bearer_file) {
        return Err((
            loc(r.basic_auth, at),
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"
                .to_string(),
        ));
    }
    let mut out = HttpClientConfig::default();
    if let Some(b) = r.basic_auth {
        let b_at = b.referenced;
        let b = &b.value;
        if let Some(x) = b.username_ref.as_ref().or(b.password_ref.as_ref()) {
            return Err((
                x.referenced,
                "username_ref and password_ref are not supported".to_string(),
            ));
        }
        if set(&b.username) && set(&b.username_file) {
            return Err((
                loc(&b.username_file, &b_at),
                "at most one of basic_auth username, username_file & username_ref must be configured"
                    .to_string(),
            ));
        }
        if set(&b.password) && set(&b.password_file) {
            return Err((
                loc(&b.password_file, &b_at),
                "at most one of basic_auth password, password_file & password_ref must be configured"
                    .to_string(),
            ));
        }
        out.basic_auth = Some(BasicAuth {
            username: val(&b.username),
            username_file: file(&b.username_file),
            password: val(&b.password),
            password_file: file(&b.password_file),
        });
    }
    if let Some(a) = r.authorization {
        let a_at = a.referenced;
        let a = &a.value;
        if let Some(x) = &a.credentials_ref {
            return Err((x.referenced, "credentials_ref is not supported".to_string()));
        }
        if bearer || bearer_file {
            return Err((
                a_at,
                "authorization is not compatible with bearer_token & bearer_token_file".to_string(),
            ));
        }
        if set(&a.credentials) && set(&a.credentials_file) {
            return Err((
                loc(&a.credentials_file, &a_at),
                "at most one of authorization credentials & credentials_file must be configured"
                    .to_string(),
            ));
        }
        let mut t = val(&a.auth_type).trim().to_string();
        if t.is_empty() {
            t = "Bearer".to_string();
        }
        if t.eq_ignore_ascii_case("basic") {
            return Err((
                loc(&a.auth_type, &a_at),
                "authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                    .to_string(),
            ));
        }
        if r.basic_auth.is_some() {
            return Err((
                a_at,
                "at most one of basic_auth, oauth2 & authorization must be configured".to_string(),
            ));
        }
        out.authorization = Some(Authorization {
            auth_type: t,
            credentials: val(&a.credentials),
            credentials_file: file(&a.credentials_file),
        });
    } else if bearer || bearer_file {
        out.authorization = Some(Authorization {
            auth_type: "Bearer".to_string(),
            credentials: val(r.bearer_token),
            credentials_file: file(r.bearer_token_file),
        });
    }
    if let Some(t) = r.tls_config {
        out.tls_config = tls(&t.value, &t.referenced)?;
    }
    out.follow_redirects = r.follow_redirects.as_ref().is_none_or(|b| b.value);
    out.enable_http2 = r.enable_http2.as_ref().is_none_or(|b| b.value);

    let from_env = r.proxy_from_environment.as_ref().is_some_and(|b| b.value);
    if from_env {
        if set(r.proxy_url) {
            return Err((
                loc(r.proxy_url, at),
                "if proxy_from_environment is configured, proxy_url must not be configured"
                    .to_string(),
            ));
        }
        return Err((
            loc(r.proxy_from_environment, at),
            "proxy_from_environment is not supported yet".to_string(),
        ));
    }
    if set(r.no_proxy) {
        if !set(r.proxy_url) {
            return Err((
                loc(r.no_proxy, at),
                "if no_proxy is configured, proxy_url must also be configured".to_string(),
            ));
        }
        return Err((
            loc(r.no_proxy, at),
            "no_proxy is not supported yet".to_string(),
        ));
    }
    if let Some(p) = r.proxy_url.as_ref().filter(|p| !p.value.is_empty()) {
        let ok = p
            .value
            .split_once("://")
            .is_some_and(|(s, rest)| !s.is_empty() && !rest.is_empty());
        if !ok {
            return Err((
                p.referenced,
                format!(
                    "invalid proxy URL {:?}: expected scheme://host[:port]",
                    p.value
                ),
            ));
        }
        out.proxy_url = Some(p.value.clone());
    }
    if let Some(h) = r.http_headers {
        for (name, v) in &h.value {
            let canon = canonical_header(name);
            if RESERVED_HEADERS.contains(&canon.as_str()) {
                return Err((
                    h.referenced,
                    format!("setting header {canon:?} is not allowed"),
                ));
            }
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err((h.referenced, format!("invalid header name {name:?}")));
            }
            out.http_headers.insert(
                name.clone(),
                HeaderValues {
                    values: v.values.clone().unwrap_or_default(),
                    secrets: v.secrets.clone().unwrap_or_default(),
                    files: v.files.clone().unwrap_or_default(),
                },
            );
        }
    }
    Ok(out)
}

fn tls(t: &RawTls, at: &Location) -> Check<TlsConfig> {
    if let Some(x) = [&t.max_version, &t.ca_ref, &t.cert_ref, &t.key_ref]
        .into_iter()
        .flatten()
        .next()
    {
        return Err((
            x.referenced,
            "max_version, ca_ref, cert_ref and key_ref are not supported yet".to_string(),
        ));
    }
    if set(&t.ca) && set(&t.ca_file) {
        return Err((
            loc(&t.ca_file, at),
            "at most one of ca, ca_file & ca_ref must be configured".to_string(),
        ));
    }
    if set(&t.cert) && set(&t.cert_file) {
        return Err((
            loc(&t.cert_file, at),
            "at most one of cert, cert_file & cert_ref must be configured".to_string(),
        ));
    }
    if set(&t.key) && set(&t.key_file) {
        return Err((
            loc(&t.key_file, at),
            "at most one of key and key_file must be configured".to_string(),
        ));
    }
    let cert = set(&t.cert) || set(&t.cert_file);
    let key = set(&t.key) || set(&t.key_file);
    if cert && !key {
        return Err((
            *at,
            "exactly one of key or key_file must be configured when a client certificate is configured"
                .to_string(),
        ));
    }
    if key && !cert {
        return Err((
            *at,
            "exactly one of cert or cert_file must be configured when a client key is configured"
                .to_string(),
        ));
    }
    let min_version = match &t.min_version {
        None => None,
        Some(v) => Some(match v.value.as_str() {
            "TLS10" => TlsVersion::Tls10,
            "TLS11" => TlsVersion::Tls11,
            "TLS12" => TlsVersion::Tls12,
            "TLS13" => TlsVersion::Tls13,
            other => {
                return Err((v.referenced, format!("unknown TLS version: {other}")));
            }
        }),
    };
    Ok(TlsConfig {
        ca: val(&t.ca),
        ca_file: file(&t.ca_file),
        cert: val(&t.cert),
        cert_file: file(&t.cert_file),
        key: val(&t.key),
        key_file: file(&t.key_file),
        server_name: file(&t.server_name),
        insecure_skip_verify: t.insecure_skip_verify.as_ref().is_some_and(|b| b.value),
        min_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_header_names() {
        assert_eq!(canonical_header("x-foo-bar"), "X-Foo-Bar");
        assert_eq!(canonical_header("AUTHORIZATION"), "Authorization");
        assert_eq!(canonical_header("www-authenticate"), "Www-Authenticate");
    }
}
