//! The `alerting` section (Alertmanagers to notify, alert relabeling) and
//! the resolution of `rule_files` paths.
//!
//! A child of the loader so it shares its positioned-error context and its
//! static-config, relabel and discovery converters.

use std::collections::BTreeMap;
use std::path::Path;

use pharos_model::Duration;
use pharos_model::relabel::RelabelConfig;
use serde::Deserialize;
use serde_saphyr::Location;

use super::{Cx, Result};
use crate::raw::{Opt, RawRelabelConfig, RawStaticConfig, Sp, Unsupported};
use crate::{
    Config, DnsSdConfig, FileSdConfig, HttpClientConfig, HttpSdConfig, StaticConfig, http, sd,
};

/// The `alerting` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertingConfig {
    /// Relabeling applied to every alert before it is queued.
    pub alert_relabel_configs: Vec<RelabelConfig>,
    /// The Alertmanager sets alerts are sent to.
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// One entry of `alerting.alertmanagers`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerConfig {
    /// `http` (default) or `https`.
    pub scheme: String,
    /// Prefix of the API path (`/am` → `/am/api/v2/alerts`). Default empty.
    pub path_prefix: String,
    /// Timeout of one POST. Default 10s.
    pub timeout: Duration,
    /// The API version; only `v2` exists in Prometheus 3.
    pub api_version: String,
    /// Statically configured Alertmanagers (`host:port`).
    pub static_configs: Vec<StaticConfig>,
    /// File discovery of Alertmanagers.
    pub file_sd_configs: Vec<FileSdConfig>,
    /// HTTP discovery of Alertmanagers.
    pub http_sd_configs: Vec<HttpSdConfig>,
    /// DNS discovery of Alertmanagers.
    pub dns_sd_configs: Vec<DnsSdConfig>,
    /// Relabeling of discovered Alertmanagers (on `__address__`, ...).
    pub relabel_configs: Vec<RelabelConfig>,
    /// Relabeling of alerts sent to this set only.
    pub alert_relabel_configs: Vec<RelabelConfig>,
    /// `http_config` settings: auth, TLS, proxy, redirects, headers.
    pub http_client: HttpClientConfig,
}

impl Default for AlertmanagerConfig {
    /// Prometheus's defaults: `http`, no prefix, 10s, `v2`.
    fn default() -> Self {
        AlertmanagerConfig {
            scheme: "http".to_string(),
            path_prefix: String::new(),
            timeout: Duration(10_000),
            api_version: "v2".to_string(),
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            http_sd_configs: Vec::new(),
            dns_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            alert_relabel_configs: Vec::new(),
            http_client: HttpClientConfig::default(),
        }
    }
}

/// `alerting` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlerting {
    #[serde(default)]
    alert_relabel_configs: Option<Vec<Sp<Option<RawRelabelConfig>>>>,
    #[serde(default)]
    alertmanagers: Option<Vec<Sp<Option<RawAlertmanager>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default)]
    scheme: Opt<String>,
    #[serde(default)]
    path_prefix: Opt<String>,
    #[serde(default)]
    timeout: Opt<String>,
    #[serde(default)]
    api_version: Opt<String>,
    #[serde(default)]
    static_configs: Option<Vec<Sp<Option<RawStaticConfig>>>>,
    #[serde(default)]
    file_sd_configs: sd::RawList<sd::RawFileSd>,
    #[serde(default)]
    http_sd_configs: sd::RawList<sd::RawHttpSd>,
    #[serde(default)]
    dns_sd_configs: sd::RawList<sd::RawDnsSd>,
    #[serde(default)]
    relabel_configs: Option<Vec<Sp<Option<RawRelabelConfig>>>>,
    #[serde(default)]
    alert_relabel_configs: Option<Vec<Sp<Option<RawRelabelConfig>>>>,
    #[serde(default)]
    basic_auth: Opt<http::RawBasicAuth>,
    #[serde(default)]
    authorization: Opt<http::RawAuthorization>,
    #[serde(default)]
    bearer_token: Opt<String>,
    #[serde(default)]
    bearer_token_file: Opt<String>,
    #[serde(default)]
    tls_config: Opt<http::RawTls>,
    #[serde(default)]
    follow_redirects: Opt<bool>,
    #[serde(default)]
    enable_http2: Opt<bool>,
    #[serde(default)]
    proxy_url: Opt<String>,
    #[serde(default)]
    no_proxy: Opt<String>,
    #[serde(default)]
    proxy_from_environment: Opt<bool>,
    #[serde(default)]
    proxy_connect_header: Unsupported,
    #[serde(default)]
    http_headers: Opt<BTreeMap<String, http::RawHeader>>,
    #[serde(default)]
    oauth2: Unsupported,
    #[serde(default)]
    sigv4: Unsupported,
    #[serde(default)]
    kubernetes_sd_configs: Unsupported,
    #[serde(default)]
    consul_sd_configs: Unsupported,
    #[serde(default)]
    ec2_sd_configs: Unsupported,
}

impl Cx<'_> {
    pub(super) fn alerting(&self, raw: Option<&Sp<RawAlerting>>) -> Result<AlertingConfig> {
        let Some(raw) = raw else {
            return Ok(AlertingConfig::default());
        };
        let raw = &raw.value;
        let mut out = AlertingConfig {
            alert_relabel_configs: self.relabel_list(
                raw.alert_relabel_configs.as_deref(),
                "empty or null alert relabeling rule",
            )?,
            alertmanagers: Vec::new(),
        };
        for entry in raw.alertmanagers.iter().flatten() {
            let Some(am) = &entry.value else {
                return Err(self.err(&entry.referenced, "empty or null alertmanager config"));
            };
            out.alertmanagers
                .push(self.alertmanager(am, &entry.referenced)?);
        }
        Ok(out)
    }

    fn alertmanager(&self, r: &RawAlertmanager, at: &Location) -> Result<AlertmanagerConfig> {
        for (key, v) in [
            ("sigv4", &r.sigv4),
            ("kubernetes_sd_configs", &r.kubernetes_sd_configs),
            ("consul_sd_configs", &r.consul_sd_configs),
            ("ec2_sd_configs", &r.ec2_sd_configs),
        ] {
            self.unsupported(key, v)?;
        }
        let mut out = AlertmanagerConfig::default();
        if let Some(s) = &r.scheme {
            if s.value != "http" && s.value != "https" {
                return Err(self.err(
                    &s.referenced,
                    format!("unknown scheme {:?}, must be http or https", s.value),
                ));
            }
            out.scheme = s.value.clone();
        }
        if let Some(p) = &r.path_prefix {
            out.path_prefix = p.value.clone();
        }
        if let Some(d) = self.duration(&r.timeout)? {
            out.timeout = d;
        }
        if let Some(v) = &r.api_version {
            if v.value != "v2" {
                return Err(self.err(
                    &v.referenced,
                    format!(
                        "expected Alertmanager api version to be one of [v2] but got {}",
                        v.value
                    ),
                ));
            }
            out.api_version = v.value.clone();
        }
        out.relabel_configs = self.relabel_list(
            r.relabel_configs.as_deref(),
            "empty or null Alertmanager target relabeling rule",
        )?;
        out.alert_relabel_configs = self.relabel_list(
            r.alert_relabel_configs.as_deref(),
            "empty or null alert relabeling rule",
        )?;
        for entry in r.static_configs.iter().flatten() {
            let Some(sc) = &entry.value else {
                return Err(self.err(&entry.referenced, "empty or null section in static_configs"));
            };
            out.static_configs
                .push(self.static_config(sc, out.relabel_configs.is_empty())?);
        }
        let positioned = |(loc, msg): (Location, String)| self.err(&loc, msg);
        out.file_sd_configs = sd::list(
            &r.file_sd_configs,
            "empty or null section in file_sd_configs",
            sd::file_sd,
        )
        .map_err(positioned)?;
        out.http_sd_configs = sd::list(
            &r.http_sd_configs,
            "empty or null section in http_sd_configs",
            sd::http_sd,
        )
        .map_err(positioned)?;
        out.dns_sd_configs = sd::list(
            &r.dns_sd_configs,
            "empty or null section in dns_sd_configs",
            sd::dns_sd,
        )
        .map_err(positioned)?;
        out.http_client = http::http_client(
            &http::RawHttpClientRef {
                basic_auth: &r.basic_auth,
                authorization: &r.authorization,
                bearer_token: &r.bearer_token,
                bearer_token_file: &r.bearer_token_file,
                tls_config: &r.tls_config,
                follow_redirects: &r.follow_redirects,
                enable_http2: &r.enable_http2,
                proxy_url: &r.proxy_url,
                no_proxy: &r.no_proxy,
                proxy_from_environment: &r.proxy_from_environment,
                proxy_connect_header: &r.proxy_connect_header,
                http_headers: &r.http_headers,
                oauth2: &r.oauth2,
            },
            at,
        )
        .map_err(positioned)?;
        Ok(out)
    }
}

/// Makes relative `rule_files` patterns and Alertmanager `file_sd_configs`
/// paths relative to `dir` (the configuration file's directory), as
/// Prometheus does when it loads a configuration file.
pub fn resolve_rule_and_alerting_paths(config: &mut Config, dir: &Path) {
    let join = |p: &mut String| {
        if !p.is_empty() && !Path::new(p.as_str()).is_absolute() {
            *p = dir.join(&*p).to_string_lossy().into_owned();
        }
    };
    for p in &mut config.rule_files {
        join(p);
    }
    for am in &mut config.alerting.alertmanagers {
        for f in &mut am.file_sd_configs {
            for p in &mut f.files {
                join(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::load_str;

    #[test]
    fn parses_alertmanagers() {
        let c = load_str(
            "alerting:\n  alert_relabel_configs:\n    - action: labeldrop\n      regex: replica\n  alertmanagers:\n    - static_configs:\n        - targets: ['am1:9093', 'am2:9093']\n      path_prefix: /am\n      timeout: 5s\n      api_version: v2\n      basic_auth:\n        username: u\n        password: p\n    - scheme: https\n      file_sd_configs:\n        - files: [am.json]\nrule_files: [rules/*.yml, /abs/r.yml]\n",
            "p.yml",
        )
        .unwrap();
        let a = &c.alerting;
        assert_eq!(a.alert_relabel_configs.len(), 1);
        assert_eq!(a.alertmanagers.len(), 2);
        let am = &a.alertmanagers[0];
        assert_eq!(am.static_configs[0].targets, vec!["am1:9093", "am2:9093"]);
        assert_eq!(am.path_prefix, "/am");
        assert_eq!(am.timeout, Duration(5000));
        let ba = am.http_client.basic_auth.as_ref().unwrap();
        assert_eq!((ba.username.as_str(), ba.password.as_str()), ("u", "p"));
        assert_eq!(a.alertmanagers[1].scheme, "https");
        let c2 = load_str(
            "alerting:\n  alertmanagers:\n    - scheme: https\n      tls_config:\n        insecure_skip_verify: true\n      authorization:\n        credentials: secret\n      http_headers:\n        X-Team:\n          values: [a]\n      follow_redirects: false\n      static_configs: [{targets: ['am:9093']}]\n",
            "p.yml",
        )
        .unwrap();
        let h = &c2.alerting.alertmanagers[0].http_client;
        assert!(h.tls_config.insecure_skip_verify);
        assert!(!h.follow_redirects);
        assert_eq!(h.authorization.as_ref().unwrap().credentials, "secret");
        assert!(h.http_headers.contains_key("X-Team"));
        assert_eq!(a.alertmanagers[1].timeout, Duration(10_000));
        let mut c = c;
        resolve_rule_and_alerting_paths(&mut c, Path::new("/etc/prom"));
        assert_eq!(c.rule_files, vec!["/etc/prom/rules/*.yml", "/abs/r.yml"]);
        assert_eq!(
            c.alerting.alertmanagers[1].file_sd_configs[0].files,
            vec!["/etc/prom/am.json"]
        );
    }

    #[test]
    fn positioned_errors() {
        let e = load_str(
            "alerting:\n  alertmanagers:\n    - api_version: v1\n",
            "p.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("p.yml:3:20:"), "{e}");
        assert!(e.contains("api version"), "{e}");
        let e = load_str("alerting:\n  alertmanagers:\n    - sigv4: {}\n", "p.yml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sigv4 is not supported yet"), "{e}");
        let e = load_str(
            "alerting:\n  alertmanagers:\n    - basic_auth: {username: u}\n      bearer_token: t\n",
            "p.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at most one of basic_auth"), "{e}");
        let e = load_str("alerting:\n  alertmanagers:\n    - scheme: ftp\n", "p.yml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.yml:3:15:"), "{e}");
        let e = load_str("alerting:\n  bogus: 1\n", "p.yml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.yml:2:"), "{e}");
    }
}
