//! The file as written: serde structs whose leaves carry their source
//! position ([`Spanned`]), so checks made after parsing can still point at
//! the offending value.
//!
//! Every struct denies unknown fields. Keys that Prometheus knows but pharos
//! does not implement are declared too, so the loader can say "not supported
//! yet" instead of "unknown field"; the keys that merely switch a behaviour
//! pharos always has are declared with their type so the default value can
//! be accepted.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// A value with its position.
pub(crate) type Sp<T> = Spanned<T>;
/// An optional key: `None` when absent or null.
pub(crate) type Opt<T> = Option<Spanned<T>>;
/// A key Prometheus knows and pharos does not implement: any value.
pub(crate) type Unsupported = Option<Spanned<IgnoredAny>>;

/// Deserializes a present key as `Some`, even when its value is null, so
/// `Option<Spanned<Option<T>>>` tells "absent" from "null".
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A YAML mapping of strings kept as ordered pairs, each side with its
/// position (a `BTreeMap` would lose the key positions).
#[derive(Debug, Default)]
pub(crate) struct Pairs(pub Vec<(Sp<String>, Sp<String>)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of label names to values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Pairs, E> {
                Ok(Pairs::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key::<Sp<String>>()? {
                    let val = m.next_value::<Sp<String>>()?;
                    v.push((k, val));
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

/// The top level of `prometheus.yml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub global: Opt<RawGlobal>,
    #[serde(default)]
    pub rule_files: Option<Vec<Sp<String>>>,
    #[serde(default)]
    pub scrape_configs: Option<Vec<Sp<Option<RawScrapeConfig>>>>,

    #[serde(default)]
    pub alerting: Opt<crate::load::alerting::RawAlerting>,
    #[serde(default)]
    pub remote_write: Unsupported,
    #[serde(default)]
    pub remote_read: Unsupported,
    #[serde(default)]
    pub storage: Opt<RawStorage>,
    #[serde(default)]
    pub tracing: Unsupported,
    #[serde(default)]
    pub runtime: Unsupported,
    #[serde(default)]
    pub otlp: Unsupported,
    #[serde(default)]
    pub scrape_config_files: Option<Vec<Sp<String>>>,
}

/// The `storage` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStorage {
    #[serde(default)]
    pub tsdb: Opt<RawStorageTsdb>,
    #[serde(default)]
    pub exemplars: Opt<RawExemplars>,
}

/// `storage.exemplars`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExemplars {
    #[serde(default)]
    pub max_exemplars: Opt<i64>,
}

/// `storage.tsdb`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStorageTsdb {
    #[serde(default)]
    pub out_of_order_time_window: Unsupported,
    #[serde(default)]
    pub retention: Opt<RawRetention>,
}

/// `storage.tsdb.retention`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    #[serde(default)]
    pub time: Opt<String>,
    #[serde(default)]
    pub size: Opt<String>,
}

/// The `global` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    #[serde(default)]
    pub scrape_interval: Opt<String>,
    #[serde(default)]
    pub scrape_timeout: Opt<String>,
    #[serde(default)]
    pub evaluation_interval: Opt<String>,
    #[serde(default)]
    pub external_labels: Opt<Pairs>,
    #[serde(default)]
    pub scrape_protocols: Opt<Vec<Sp<String>>>,
    #[serde(default)]
    pub body_size_limit: Opt<String>,
    #[serde(default)]
    pub sample_limit: Opt<u64>,
    #[serde(default)]
    pub label_limit: Opt<u64>,
    #[serde(default)]
    pub label_name_length_limit: Opt<u64>,
    #[serde(default)]
    pub label_value_length_limit: Opt<u64>,

    #[serde(default)]
    pub rule_query_offset: Opt<String>,
    // Accepted only at the value pharos always behaves as.
    #[serde(default)]
    pub target_limit: Opt<u64>,
    #[serde(default)]
    pub keep_dropped_targets: Opt<u64>,
    #[serde(default)]
    pub scrape_native_histograms: Opt<bool>,
    #[serde(default)]
    pub always_scrape_classic_histograms: Opt<bool>,
    #[serde(default)]
    pub convert_classic_histograms_to_nhcb: Opt<bool>,
    #[serde(default)]
    pub extra_scrape_metrics: Opt<bool>,
    #[serde(default)]
    pub metric_name_validation_scheme: Opt<String>,

    #[serde(default)]
    pub query_log_file: Unsupported,
    #[serde(default)]
    pub scrape_failure_log_file: Unsupported,
    #[serde(default)]
    pub metric_name_escaping_scheme: Unsupported,
}

/// One entry of `scrape_configs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScrapeConfig {
    #[serde(default, deserialize_with = "present")]
    pub job_name: Option<Sp<Option<String>>>,
    #[serde(default)]
    pub honor_labels: Opt<bool>,
    #[serde(default)]
    pub honor_timestamps: Opt<bool>,
    #[serde(default)]
    pub params: Opt<std::collections::BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub scrape_interval: Opt<String>,
    #[serde(default)]
    pub scrape_timeout: Opt<String>,
    #[serde(default)]
    pub scrape_protocols: Opt<Vec<Sp<String>>>,
    #[serde(default)]
    pub fallback_scrape_protocol: Opt<String>,
    #[serde(default)]
    pub metrics_path: Opt<String>,
    #[serde(default)]
    pub scheme: Opt<String>,
    #[serde(default)]
    pub body_size_limit: Opt<String>,
    #[serde(default)]
    pub sample_limit: Opt<u64>,
    #[serde(default)]
    pub label_limit: Opt<u64>,
    #[serde(default)]
    pub label_name_length_limit: Opt<u64>,
    #[serde(default)]
    pub label_value_length_limit: Opt<u64>,
    #[serde(default)]
    pub static_configs: Option<Vec<Sp<Option<RawStaticConfig>>>>,
    #[serde(default)]
    pub relabel_configs: Option<Vec<Sp<Option<RawRelabelConfig>>>>,
    #[serde(default)]
    pub metric_relabel_configs: Option<Vec<Sp<Option<RawRelabelConfig>>>>,

    // Accepted only at the value pharos always behaves as.
    #[serde(default)]
    pub enable_compression: Opt<bool>,
    #[serde(default)]
    pub track_timestamps_staleness: Opt<bool>,
    #[serde(default)]
    pub scrape_native_histograms: Opt<bool>,
    #[serde(default)]
    pub always_scrape_classic_histograms: Opt<bool>,
    #[serde(default)]
    pub convert_classic_histograms_to_nhcb: Opt<bool>,
    #[serde(default)]
    pub extra_scrape_metrics: Opt<bool>,
    #[serde(default)]
    pub target_limit: Opt<u64>,
    #[serde(default)]
    pub keep_dropped_targets: Opt<u64>,
    #[serde(default)]
    pub native_histogram_bucket_limit: Opt<u64>,
    #[serde(default)]
    pub metric_name_validation_scheme: Opt<String>,

    // HTTP client settings.
    #[serde(default)]
    pub follow_redirects: Opt<bool>,
    #[serde(default)]
    pub enable_http2: Opt<bool>,
    #[serde(default)]
    pub basic_auth: Opt<crate::http::RawBasicAuth>,
    #[serde(default)]
    pub authorization: Opt<crate::http::RawAuthorization>,
    #[serde(default)]
    pub oauth2: Unsupported,
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
    pub proxy_connect_header: Unsupported,
    #[serde(default)]
    pub http_headers: Opt<std::collections::BTreeMap<String, crate::http::RawHeader>>,

    // Other scrape settings.
    #[serde(default)]
    pub native_histogram_min_bucket_factor: Opt<f64>,
    #[serde(default)]
    pub scrape_failure_log_file: Unsupported,
    #[serde(default)]
    pub metric_name_escaping_scheme: Unsupported,

    // Service discovery.
    #[serde(default)]
    pub azure_sd_configs: Unsupported,
    #[serde(default)]
    pub consul_sd_configs: Unsupported,
    #[serde(default)]
    pub digitalocean_sd_configs: Unsupported,
    #[serde(default)]
    pub docker_sd_configs: Unsupported,
    #[serde(default)]
    pub dockerswarm_sd_configs: Unsupported,
    #[serde(default)]
    pub dns_sd_configs: crate::sd::RawList<crate::sd::RawDnsSd>,
    #[serde(default)]
    pub ec2_sd_configs: Unsupported,
    #[serde(default)]
    pub eureka_sd_configs: Unsupported,
    #[serde(default)]
    pub file_sd_configs: crate::sd::RawList<crate::sd::RawFileSd>,
    #[serde(default)]
    pub gce_sd_configs: Unsupported,
    #[serde(default)]
    pub hetzner_sd_configs: Unsupported,
    #[serde(default)]
    pub http_sd_configs: crate::sd::RawList<crate::sd::RawHttpSd>,
    #[serde(default)]
    pub ionos_sd_configs: Unsupported,
    #[serde(default)]
    pub kubernetes_sd_configs: crate::sd::RawList<crate::sd::RawKubernetesSd>,
    #[serde(default)]
    pub kuma_sd_configs: Unsupported,
    #[serde(default)]
    pub lightsail_sd_configs: Unsupported,
    #[serde(default)]
    pub linode_sd_configs: Unsupported,
    #[serde(default)]
    pub marathon_sd_configs: Unsupported,
    #[serde(default)]
    pub nerve_sd_configs: Unsupported,
    #[serde(default)]
    pub nomad_sd_configs: Unsupported,
    #[serde(default)]
    pub openstack_sd_configs: Unsupported,
    #[serde(default)]
    pub ovhcloud_sd_configs: Unsupported,
    #[serde(default)]
    pub puppetdb_sd_configs: Unsupported,
    #[serde(default)]
    pub scaleway_sd_configs: Unsupported,
    #[serde(default)]
    pub serverset_sd_configs: Unsupported,
    #[serde(default)]
    pub stackit_sd_configs: Unsupported,
    #[serde(default)]
    pub triton_sd_configs: Unsupported,
    #[serde(default)]
    pub uyuni_sd_configs: Unsupported,
    #[serde(default)]
    pub vultr_sd_configs: Unsupported,
}

/// One entry of `static_configs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStaticConfig {
    #[serde(default)]
    pub targets: Option<Vec<Sp<String>>>,
    #[serde(default)]
    pub labels: Opt<Pairs>,
}

/// One relabeling rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelabelConfig {
    #[serde(default, deserialize_with = "present")]
    pub source_labels: Option<Sp<Option<Vec<Sp<String>>>>>,
    #[serde(default)]
    pub separator: Opt<String>,
    #[serde(default, deserialize_with = "present")]
    pub regex: Option<Sp<Option<String>>>,
    #[serde(default)]
    pub modulus: Opt<u64>,
    #[serde(default)]
    pub target_label: Opt<String>,
    #[serde(default)]
    pub replacement: Opt<String>,
    #[serde(default, deserialize_with = "present")]
    pub action: Option<Sp<Option<String>>>,
}

/// Borrows the HTTP client keys of a section (a scrape config or an HTTP
/// discovery entry), which both embed Prometheus's `HTTPClientConfig`.
macro_rules! http_client_ref {
    ($r:expr) => {
        crate::http::RawHttpClientRef {
            basic_auth: &$r.basic_auth,
            authorization: &$r.authorization,
            bearer_token: &$r.bearer_token,
            bearer_token_file: &$r.bearer_token_file,
            tls_config: &$r.tls_config,
            follow_redirects: &$r.follow_redirects,
            enable_http2: &$r.enable_http2,
            proxy_url: &$r.proxy_url,
            no_proxy: &$r.no_proxy,
            proxy_from_environment: &$r.proxy_from_environment,
            proxy_connect_header: &$r.proxy_connect_header,
            http_headers: &$r.http_headers,
            oauth2: &$r.oauth2,
        }
    };
}
pub(crate) use http_client_ref;

/// A file listed by `scrape_config_files`: only scrape configs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScrapeConfigsFile {
    #[serde(default)]
    pub scrape_configs: Option<Vec<Sp<Option<RawScrapeConfig>>>>,
}
