//! `prometheus.yml`: the configuration types pharos runs on, Prometheus's
//! defaults, and validation whose every error says `FILE:LINE:COL: problem`.
//!
//! Why it is built this way:
//!
//! - **Two layers.** The YAML is first read into private serde structs whose
//!   leaves are `serde_saphyr::Spanned` (value plus position), then checked
//!   and turned into the public types ([`Config`], [`ScrapeConfig`], ...),
//!   which hold plain, fully defaulted values. Checks that need more than one
//!   key (a timeout above its interval, duplicate job names, relabel rules)
//!   happen after parsing and still point at the offending value.
//! - **Strict.** Unknown keys and duplicate keys are errors, as with
//!   Prometheus's strict YAML decoding. Keys Prometheus knows but pharos does
//!   not implement yet (service discovery other than `static_configs`,
//!   `file_sd_configs`, `http_sd_configs`, `dns_sd_configs` and
//!   `kubernetes_sd_configs`, HTTP client
//!   settings, `remote_write`, ...) are errors saying so,
//!   never silently ignored: a config that loads runs the way it reads.
//!   Switches whose value matches what pharos always does (for example
//!   `enable_compression: true`) are accepted.
//! - **Prometheus's semantics.** Defaults (`scrape_interval` 1m,
//!   `scrape_timeout` 10s, `evaluation_interval` 1m, `/metrics`, `http`,
//!   `honor_timestamps: true`), inheritance from `global`, byte sizes in
//!   base 2 (`10MB` = 10 MiB), environment expansion in `external_labels`,
//!   and the relabel rule checks follow Prometheus's `config` package.
//!   Label names are checked with the classic rule
//!   `[a-zA-Z_][a-zA-Z0-9_]*` (Prometheus's `legacy` validation scheme).

mod expand;
mod http;
mod load;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod load_tests;
mod raw;
mod sd;
mod units;

use std::collections::BTreeMap;
use std::fmt;

use pharos_model::relabel::RelabelConfig;
use pharos_model::{Duration, Labels};

pub use http::{Authorization, BasicAuth, HeaderValues, HttpClientConfig, TlsConfig, TlsVersion};
pub use load::alerting::{AlertingConfig, AlertmanagerConfig, resolve_rule_and_alerting_paths};
pub use load::{load_file, load_str, resolve_sd_paths};
pub use sd::{
    DnsRecordType, DnsSdConfig, FileSdConfig, HttpSdConfig, KubernetesRole, KubernetesSdConfig,
    KubernetesSelector,
};

/// Scrape protocols Prometheus can negotiate, as named in the config.
pub const SCRAPE_PROTOCOLS: [&str; 5] = [
    "PrometheusProto",
    "PrometheusText0.0.4",
    "PrometheusText1.0.0",
    "OpenMetricsText0.0.1",
    "OpenMetricsText1.0.0",
];

/// The protocols offered when a scrape config does not choose, most
/// preferred first (Prometheus's default without native histograms).
pub const DEFAULT_SCRAPE_PROTOCOLS: [&str; 4] = [
    "OpenMetricsText1.0.0",
    "OpenMetricsText0.0.1",
    "PrometheusText1.0.0",
    "PrometheusText0.0.4",
];

/// The protocols offered when a scrape config scrapes native histograms
/// (`scrape_native_histograms: true`) and chooses no protocols: the
/// protobuf format first, since only it carries native histograms
/// (Prometheus's `DefaultProtoFirstScrapeProtocols`).
pub const DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS: [&str; 5] = [
    "PrometheusProto",
    "OpenMetricsText1.0.0",
    "OpenMetricsText0.0.1",
    "PrometheusText1.0.0",
    "PrometheusText0.0.4",
];

/// A loaded, validated configuration with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The `global` section.
    pub global: GlobalConfig,
    /// The scrape jobs, in file order; job names are unique.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Rule file paths or globs, as written (relative paths are relative to
    /// the configuration file's directory; they are not resolved here).
    pub rule_files: Vec<String>,
    /// The `alerting` section (Alertmanagers, alert relabeling).
    pub alerting: AlertingConfig,
    /// `scrape_config_files` patterns (made relative to the configuration
    /// file's directory by [`load_file`], which also loads the jobs of the
    /// files they match into `scrape_configs`).
    pub scrape_config_files: Vec<String>,
    /// The `storage` section (TSDB retention).
    pub storage: StorageConfig,
    /// The file's text as loaded, for `/api/v1/status/config`.
    pub original: String,
}

/// The `storage` section: `storage.tsdb.retention`, which, when set, takes
/// precedence over the `--storage.tsdb.retention.*` flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageConfig {
    /// `storage.tsdb.retention.time`: how long to keep samples.
    pub retention_time: Option<Duration>,
    /// `storage.tsdb.retention.size`: most bytes the blocks may take.
    pub retention_size: Option<u64>,
    /// `storage.exemplars.max_exemplars`: size of the exemplar ring when
    /// exemplar storage is enabled (`None`: Prometheus's default, 100000;
    /// 0 or less disables it).
    pub max_exemplars: Option<i64>,
}

impl Config {
    /// The files `scrape_config_files` matches now, sorted (a pattern that
    /// does not parse matches nothing).
    pub fn scrape_config_file_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for pat in &self.scrape_config_files {
            if let Ok(paths) = glob::glob(pat) {
                out.extend(paths.flatten().map(|p| p.display().to_string()));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl Default for Config {
    /// What an empty file loads to: Prometheus's global defaults, no jobs,
    /// no rule files.
    fn default() -> Self {
        Config {
            global: GlobalConfig::default(),
            scrape_configs: Vec::new(),
            rule_files: Vec::new(),
            alerting: AlertingConfig::default(),
            scrape_config_files: Vec::new(),
            storage: StorageConfig::default(),
            original: String::new(),
        }
    }
}

/// The `global` section.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    /// Default scrape interval. Default 1m.
    pub scrape_interval: Duration,
    /// Default scrape timeout. Default 10s, or the interval when shorter.
    pub scrape_timeout: Duration,
    /// Rule evaluation interval. Default 1m.
    pub evaluation_interval: Duration,
    /// Labels added to series and alerts leaving this server; environment
    /// references in values already expanded.
    pub external_labels: Labels,
    /// Protocols offered to targets, if set globally (empty: not set).
    pub scrape_protocols: Vec<String>,
    /// Default for [`ScrapeConfig::body_size_limit`]; 0 = none.
    pub body_size_limit: u64,
    /// Default for [`ScrapeConfig::sample_limit`]; 0 = none.
    pub sample_limit: u64,
    /// Default for [`ScrapeConfig::label_limit`]; 0 = none.
    pub label_limit: u64,
    /// Default for [`ScrapeConfig::label_name_length_limit`]; 0 = none.
    pub label_name_length_limit: u64,
    /// Default for [`ScrapeConfig::label_value_length_limit`]; 0 = none.
    pub label_value_length_limit: u64,
    /// Default for [`ScrapeConfig::target_limit`]; 0 = none.
    pub target_limit: u64,
    /// Default for [`ScrapeConfig::keep_dropped_targets`]; 0 = all.
    pub keep_dropped_targets: u64,
    /// `rule_query_offset`: how far back rule groups without their own
    /// `query_offset` evaluate (Prometheus 3). Default 0.
    pub rule_query_offset: Duration,
    /// Default for [`ScrapeConfig::convert_classic_histograms_to_nhcb`].
    pub convert_classic_histograms_to_nhcb: bool,
    /// Default for [`ScrapeConfig::always_scrape_classic_histograms`].
    pub always_scrape_classic_histograms: bool,
    /// Default for [`ScrapeConfig::scrape_native_histograms`].
    pub scrape_native_histograms: bool,
}

impl Default for GlobalConfig {
    /// Prometheus's defaults.
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration(60_000),
            scrape_timeout: Duration(10_000),
            evaluation_interval: Duration(60_000),
            external_labels: Labels::empty(),
            scrape_protocols: Vec::new(),
            body_size_limit: 0,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            target_limit: 0,
            keep_dropped_targets: 0,
            rule_query_offset: Duration(0),
            convert_classic_histograms_to_nhcb: false,
            always_scrape_classic_histograms: false,
            scrape_native_histograms: false,
        }
    }
}

/// One scrape job.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeConfig {
    /// The job name, also the default `job` label. Unique in a config.
    pub job_name: String,
    /// How often to scrape; from `global` when not set.
    pub scrape_interval: Duration,
    /// Per-scrape timeout, never above the interval; from `global` (capped at
    /// the interval) when not set.
    pub scrape_timeout: Duration,
    /// HTTP path to scrape. Default `/metrics`.
    pub metrics_path: String,
    /// `http` or `https`. Default `http`.
    pub scheme: String,
    /// URL query parameters sent with every scrape.
    pub params: BTreeMap<String, Vec<String>>,
    /// Keep the target's labels when they clash with ours. Default false.
    pub honor_labels: bool,
    /// Keep timestamps the target sends. Default true.
    pub honor_timestamps: bool,
    /// Protocols offered in the `Accept` header, most preferred first.
    pub scrape_protocols: Vec<String>,
    /// Protocol assumed when the response's content type is missing or
    /// unknown.
    pub fallback_scrape_protocol: Option<String>,
    /// Targets listed in the file.
    pub static_configs: Vec<StaticConfig>,
    /// Targets from files (`file_sd_configs`).
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Targets from HTTP endpoints (`http_sd_configs`).
    pub http_sd_configs: Vec<HttpSdConfig>,
    /// Targets from DNS records (`dns_sd_configs`).
    pub dns_sd_configs: Vec<DnsSdConfig>,
    /// Targets from a Kubernetes API server (`kubernetes_sd_configs`).
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    /// Maximum number of active targets after relabeling; above it every
    /// target of the job fails. 0 = none.
    pub target_limit: u64,
    /// Maximum number of dropped targets kept for the API; 0 = all.
    pub keep_dropped_targets: u64,
    /// How targets are reached: auth, TLS, redirects, HTTP/2, proxy,
    /// extra headers.
    pub http_client: HttpClientConfig,
    /// Ask targets for gzip-compressed pages. Default true.
    pub enable_compression: bool,
    /// Rules applied to each target's labels before scraping.
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to each scraped series before storing.
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Maximum samples per scrape after relabeling; 0 = none.
    pub sample_limit: u64,
    /// Maximum labels per series; 0 = none.
    pub label_limit: u64,
    /// Maximum label name length; 0 = none.
    pub label_name_length_limit: u64,
    /// Maximum label value length; 0 = none.
    pub label_value_length_limit: u64,
    /// Maximum uncompressed response size in bytes; 0 = none.
    pub body_size_limit: u64,
    /// Store classic histograms (`_bucket`/`_count`/`_sum` of a
    /// `histogram` family) as native histograms with custom buckets
    /// (NHCB). From `global` when not set; default false.
    pub convert_classic_histograms_to_nhcb: bool,
    /// With NHCB conversion, store the classic series as well. From
    /// `global` when not set; default false.
    pub always_scrape_classic_histograms: bool,
    /// Ingest native histograms from protobuf scrapes (and, when no
    /// `scrape_protocols` are set here or globally, offer the protobuf
    /// format first). From `global` when not set; default false.
    pub scrape_native_histograms: bool,
    /// At most this many buckets per native histogram: more and the
    /// resolution is reduced until it fits, or the scrape fails. 0 = none.
    pub native_histogram_bucket_limit: u64,
    /// Reduce the resolution of native histograms whose bucket growth
    /// factor is below this (e.g. 1.1). 0 = none.
    pub native_histogram_min_bucket_factor: f64,
}

impl ScrapeConfig {
    /// A job with Prometheus's defaults under `global` and no targets.
    pub fn new(job_name: &str, global: &GlobalConfig) -> ScrapeConfig {
        ScrapeConfig {
            job_name: job_name.to_string(),
            scrape_interval: global.scrape_interval,
            scrape_timeout: global.scrape_timeout.min(global.scrape_interval),
            metrics_path: "/metrics".to_string(),
            scheme: "http".to_string(),
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            scrape_protocols: if global.scrape_protocols.is_empty() {
                DEFAULT_SCRAPE_PROTOCOLS.map(String::from).to_vec()
            } else {
                global.scrape_protocols.clone()
            },
            fallback_scrape_protocol: None,
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            http_sd_configs: Vec::new(),
            dns_sd_configs: Vec::new(),
            kubernetes_sd_configs: Vec::new(),
            target_limit: global.target_limit,
            keep_dropped_targets: global.keep_dropped_targets,
            http_client: HttpClientConfig::default(),
            enable_compression: true,
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
            sample_limit: global.sample_limit,
            label_limit: global.label_limit,
            label_name_length_limit: global.label_name_length_limit,
            label_value_length_limit: global.label_value_length_limit,
            body_size_limit: global.body_size_limit,
            convert_classic_histograms_to_nhcb: global.convert_classic_histograms_to_nhcb,
            always_scrape_classic_histograms: global.always_scrape_classic_histograms,
            scrape_native_histograms: global.scrape_native_histograms,
            native_histogram_bucket_limit: 0,
            native_histogram_min_bucket_factor: 0.0,
        }
    }
}

/// One entry of `static_configs`: targets and the labels they share.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StaticConfig {
    /// `host:port` addresses (each becomes a target's `__address__`).
    pub targets: Vec<String>,
    /// Labels added to every target of this group.
    pub labels: Labels,
}

/// A line and column in the configuration file, both starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// `:LINE:COL` when known, nothing otherwise.
struct PosSuffix(Option<Position>);

impl fmt::Display for PosSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid configuration. Displays as
    /// `FILE:LINE:COL: message` (or `FILE: message` without a position).
    #[error("{file}{}: {message}", PosSuffix(*position))]
    Invalid {
        /// The file name given to the loader.
        file: String,
        /// Where the problem is, when known.
        position: Option<Position>,
        /// What is wrong, in one line.
        message: String,
    },
}

impl ConfigError {
    /// The position of the problem, when known.
    pub fn position(&self) -> Option<Position> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { position, .. } => *position,
        }
    }

    /// The problem without the file and position prefix.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Read { source, .. } => source.to_string(),
            ConfigError::Invalid { message, .. } => message.clone(),
        }
    }
}

/// The built-in configuration used when pharos runs without
/// `--config.file`: two jobs scraping `listen_address` every 15s (global
/// scrape and evaluation intervals 15s, timeout 10s): `pharos` (its own
/// `/metrics`) and `node` (the built-in host collector at `/metrics/node`).
///
/// A listen address without a usable host (`:9090`, `0.0.0.0:9090`,
/// `[::]:9090`) is scraped as `localhost:PORT`. `original` holds YAML that
/// loads to the same configuration.
pub fn default_self_scrape(listen_address: &str) -> Config {
    let target = scrape_target_for_listen_address(listen_address);
    let global = GlobalConfig {
        scrape_interval: Duration(15_000),
        evaluation_interval: Duration(15_000),
        ..GlobalConfig::default()
    };
    let mut job = ScrapeConfig::new("pharos", &global);
    job.static_configs.push(StaticConfig {
        targets: vec![target.clone()],
        labels: Labels::empty(),
    });
    // The built-in host collector, served by pharos itself.
    let mut node = ScrapeConfig::new("node", &global);
    node.metrics_path = "/metrics/node".to_string();
    node.static_configs.push(StaticConfig {
        targets: vec![target.clone()],
        labels: Labels::empty(),
    });
    let original = format!(
        "# Built-in configuration: pharos scrapes itself and the host it runs on.\n\
         global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n\
         scrape_configs:\n  - job_name: pharos\n    static_configs:\n      - targets: [{t}]\n\
         \x20 - job_name: node\n    metrics_path: /metrics/node\n    static_configs:\n      - targets: [{t}]\n",
        t = yaml_single_quoted(&target)
    );
    Config {
        global,
        scrape_configs: vec![job, node],
        rule_files: Vec::new(),
        alerting: AlertingConfig::default(),
        scrape_config_files: Vec::new(),
        storage: StorageConfig::default(),
        original,
    }
}

fn scrape_target_for_listen_address(addr: &str) -> String {
    let Some(idx) = addr.rfind(':') else {
        return addr.to_string();
    };
    let (host, port) = (&addr[..idx], &addr[idx + 1..]);
    match host {
        "" | "0.0.0.0" | "[::]" | "::" => format!("localhost:{port}"),
        _ => addr.to_string(),
    }
}

fn yaml_single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn self_scrape_defaults() {
        let c = default_self_scrape(":9090");
        assert_eq!(c.global.scrape_interval, Duration(15_000));
        assert_eq!(c.global.evaluation_interval, Duration(15_000));
        assert_eq!(c.global.scrape_timeout, Duration(10_000));
        assert_eq!(c.scrape_configs.len(), 2);
        assert_eq!(c.scrape_configs[1].job_name, "node");
        assert_eq!(c.scrape_configs[1].metrics_path, "/metrics/node");
        assert_eq!(
            c.scrape_configs[1].static_configs[0].targets,
            vec!["localhost:9090"]
        );
        let j = &c.scrape_configs[0];
        assert_eq!(j.job_name, "pharos");
        assert_eq!(j.scrape_interval, Duration(15_000));
        assert_eq!(j.scrape_timeout, Duration(10_000));
        assert_eq!(j.metrics_path, "/metrics");
        assert_eq!(j.scheme, "http");
        assert!(j.honor_timestamps && !j.honor_labels);
        assert_eq!(j.static_configs[0].targets, vec!["localhost:9090"]);
        assert!(c.rule_files.is_empty());
    }

    #[test]
    fn self_scrape_original_loads_to_the_same_config() {
        for addr in [
            ":9090",
            "127.0.0.1:9091",
            "0.0.0.0:80",
            "[::]:9090",
            "[::1]:9090",
            "weird'host:1",
        ] {
            let c = default_self_scrape(addr);
            let loaded = load_str(&c.original, "<builtin>").unwrap();
            assert_eq!(loaded, c, "{addr}");
        }
        assert_eq!(
            default_self_scrape("[::1]:9090").scrape_configs[0].static_configs[0].targets,
            vec!["[::1]:9090"]
        );
    }

    #[test]
    fn error_display() {
        let e = ConfigError::Invalid {
            file: "p.yml".into(),
            position: Some(Position { line: 3, column: 7 }),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "p.yml:3:7: bad");
        assert_eq!(e.position(), Some(Position { line: 3, column: 7 }));
        let e = ConfigError::Invalid {
            file: "p.yml".into(),
            position: None,
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "p.yml: bad");
    }
}
