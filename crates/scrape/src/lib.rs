//! Scrape pools and loops: fetch targets over HTTP, parse, relabel, append
//! to storage, and mark staleness — with Prometheus's semantics.
//!
//! The shape is Prometheus's `scrape` package, because its observable
//! behaviour (which labels a series gets, when a stale marker is written,
//! what `up` says after a failure) is what users and dashboards depend on:
//!
//! * a [`ScrapeManager`] holds one *scrape pool* per `scrape_config` (job);
//!   reloading keeps pools whose configuration did not change untouched, so a
//!   reload never causes gaps;
//! * a pool takes its targets from service discovery (`pharos-discovery`:
//!   `static_configs` at once, file/HTTP/DNS providers as they publish
//!   updates; each update re-syncs the pool, keeping the loops of targets
//!   that stay) and turns them into targets (discovered labels →
//!   `relabel_configs` → final target labels, or a *dropped* target) and runs
//!   one tokio task — a *scrape loop* — per target;
//! * a loop waits a deterministic offset inside the interval (hash of the
//!   target and a per-process seed, so many targets spread their load and a
//!   restart scrapes at the same phase), then ticks every interval, scraping
//!   with a timeout and appending everything through one storage transaction
//!   per scrape.
//!
//! The network part is async; parsing and appending are synchronous and
//! CPU-bound (the storage traits say so), so each scrape's body is handed to
//! `spawn_blocking` together with the loop's *scrape cache*. The cache maps
//! the exact series text of the page (`name{a="b"}`) to the storage reference
//! and final labels, so a steady-state scrape neither builds label sets nor
//! runs relabeling: it looks bytes up and appends by reference. The cache also
//! holds the previous scrape's series, from which stale markers are derived.
//!
//! Error messages and metric names follow Prometheus (`server returned HTTP
//! status 404 Not Found`, `sample limit exceeded`, with `pharos_` in place of
//! `prometheus_` in the process's own metrics).
//!
//! Where pharos deliberately differs from Prometheus:
//!
//! * [`ScrapeManager::stop`] and the removal of a whole job write stale
//!   markers (Prometheus writes none on shutdown or pool removal), so a
//!   stopped pharos leaves no series looking alive for five minutes;
//! * a scrape that fails after appending part of its page (sample limit,
//!   label limit, parse error) marks *every* series of the previous scrape
//!   stale, and forgets the cache entries it created, whose references the
//!   rollback may have invalidated;
//! * native histograms come from protobuf pages (`PrometheusProto` in
//!   `scrape_protocols`, first by default with `scrape_native_histograms:
//!   true`; `native_histogram_bucket_limit` and
//!   `native_histogram_min_bucket_factor` lower their resolution as in
//!   Prometheus) and from classic ones converted with
//!   `convert_classic_histograms_to_nhcb` (per job or global; Prometheus's
//!   per-target override labels `__scrape_native_histograms__`,
//!   `__convert_classic_histograms_to_nhcb__` and
//!   `__always_scrape_classic_histograms__` are not implemented);
//!   OpenMetrics exemplars go to `Appender::append_exemplar` after their
//!   sample (errors never fail the scrape), those of protobuf pages are
//!   skipped (metric metadata
//!   from `# TYPE`/`# HELP`/`# UNIT` is kept per target, from its last
//!   successful scrape); HTTP client settings differ from Go's in the
//!   details listed in the `pharos_discovery::client` module (no TLS
//!   1.0/1.1, SNI stays the URL host).

mod append;
mod cache;
mod fetch;
mod manager;
mod metrics;
mod pool;
mod scrape_loop;
mod target;

pub use manager::ScrapeManager;
pub use pool::relabel_target;
pub use target::{Health, MetricMetadata, TargetStatus};

/// Why a scrape failed (the text becomes the target's `lastError`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScrapeError {
    /// The HTTP request failed (connect, timeout, protocol). `message` says
    /// why, as Go's client words it where a match exists (`context deadline
    /// exceeded`, `connect: connection refused`).
    #[error("Get \"{url}\": {message}")]
    Http {
        /// The scrape URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The target answered with a status other than 200.
    #[error("server returned HTTP status {0}")]
    Status(String),
    /// The (decompressed) body reached `body_size_limit`.
    #[error("body size limit exceeded")]
    BodySizeLimit,
    /// The body claimed gzip encoding but did not decode.
    #[error("gzip: {0}")]
    Gzip(String),
    /// The page did not parse.
    #[error("{0}")]
    Parse(String),
    /// More samples than `sample_limit` survived metric relabeling.
    #[error("sample limit exceeded")]
    SampleLimit,
    /// A native histogram kept more buckets than
    /// `native_histogram_bucket_limit` even at the lowest resolution.
    #[error("histogram bucket limit exceeded")]
    BucketLimit,
    /// `label_limit`, `label_name_length_limit` or `label_value_length_limit`
    /// was exceeded; the text names the limit and the offending metric.
    #[error("{0}")]
    LabelLimit(String),
    /// The job has more active targets than `target_limit`; every target
    /// of the job fails until the count is back under the limit.
    #[error("target_limit exceeded (number of targets: {targets}, limit: {limit})")]
    TargetLimit {
        /// Active targets after relabeling.
        targets: usize,
        /// The configured limit.
        limit: u64,
    },
    /// Relabeling left a series without `__name__`.
    #[error("missing metric name (__name__ label)")]
    MissingMetricName,
    /// The storage refused the scrape for a reason other than a per-sample
    /// out-of-order/duplicate/out-of-bounds outcome (those are counted).
    #[error("{0}")]
    Storage(String),
    /// The scrape's processing task died (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Process-wide scrape options (not per job).
#[derive(Debug, Clone)]
pub struct ScrapeOptions {
    /// The `User-Agent` header sent to targets.
    pub user_agent: String,
    /// Mixed with the external labels into the seed that spreads scrape
    /// offsets (Prometheus uses the host's FQDN), so that HA replicas scrape
    /// at different phases while one replica keeps its phase across restarts.
    pub hostname: String,
    /// Also report `scrape_timeout_seconds`, `scrape_sample_limit` and
    /// `scrape_body_size_bytes` (Prometheus's `extra-scrape-metrics`).
    pub extra_metrics: bool,
    /// Scrape immediately instead of waiting for the target's offset (tests).
    pub skip_offset: bool,
    /// Service discovery settings (update throttle, file poll interval,
    /// DNS servers).
    pub discovery: pharos_discovery::DiscoveryOptions,
}

impl Default for ScrapeOptions {
    fn default() -> Self {
        ScrapeOptions {
            user_agent: format!("pharos/{}", env!("CARGO_PKG_VERSION")),
            hostname: default_hostname(),
            extra_metrics: false,
            skip_offset: false,
            discovery: pharos_discovery::DiscoveryOptions::default(),
        }
    }
}

/// The host name from the kernel, the environment, or `localhost`.
fn default_hostname() -> String {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let s = s.trim();
        if !s.is_empty() {
            return s.to_string();
        }
    }
    match std::env::var("HOSTNAME") {
        Ok(s) if !s.is_empty() => s,
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests;
