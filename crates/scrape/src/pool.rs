//! A scrape pool: one job's targets and their loops.

use std::collections::HashSet;
use std::sync::Arc;

use pharos_config::ScrapeConfig;
use pharos_discovery::TargetGroup;

use pharos_exposition::Format;

use crate::ScrapeError;
use crate::append::PoolSettings;
use crate::metrics::Metrics;
use crate::scrape_loop::LoopHandle;
use crate::target::{
    DroppedTarget, Target, TargetStatus, discovered_from, populate_labels, target_url,
};

/// An active target and its running loop.
pub(crate) struct ActiveTarget {
    pub target: Arc<Target>,
    pub handle: LoopHandle,
}

/// One job.
pub(crate) struct ScrapePool {
    /// The job's configuration; an equal one on reload keeps the pool
    /// running untouched.
    pub config: Arc<ScrapeConfig>,
    pub active: Vec<ActiveTarget>,
    /// Dropped targets kept for the API (at most `keep_dropped_targets`).
    pub dropped: Vec<DroppedTarget>,
    /// All dropped targets, also those not kept.
    pub dropped_count: usize,
    /// The HTTP client of the pool's loops.
    pub client: pharos_discovery::client::HttpClient,
    /// The loop settings of the job.
    pub settings: Arc<PoolSettings>,
    /// Distinguishes this pool from an earlier one of the same job, so a
    /// discovery update of a replaced pool is ignored.
    pub generation: u64,
    /// The running discovery of the job; dropping it stops the providers.
    pub discovery: Option<pharos_discovery::Discovery>,
    /// The task applying discovery updates; aborted with the pool.
    pub sync_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ScrapePool {
    fn drop(&mut self) {
        if let Some(t) = &self.sync_task {
            t.abort();
        }
    }
}

impl ScrapePool {
    /// Applies `target_limit` (every target fails while the job has more
    /// active targets than the limit) and `keep_dropped_targets`.
    pub fn apply_limits(&mut self) {
        let limit = self.config.target_limit;
        let over = limit > 0 && self.active.len() as u64 > limit;
        let err = over.then_some(ScrapeError::TargetLimit {
            targets: self.active.len(),
            limit,
        });
        if over {
            tracing::error!(scrape_pool = %self.config.job_name, targets = self.active.len(), limit, "Target limit exceeded");
        }
        for a in &self.active {
            a.target.set_forced_error(err.clone());
        }
        let keep = self.config.keep_dropped_targets;
        if keep > 0 {
            self.dropped
                .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
    }

    pub fn targets(&self) -> impl Iterator<Item = TargetStatus> + '_ {
        self.active.iter().map(|a| a.target.status())
    }

    pub fn dropped_targets(&self) -> impl Iterator<Item = TargetStatus> + '_ {
        self.dropped
            .iter()
            .map(|d| d.status(&self.config.job_name, &self.config))
    }
}

/// The loop settings of a job.
pub(crate) fn settings(cfg: &ScrapeConfig, extra_metrics: bool) -> PoolSettings {
    let us = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    PoolSettings {
        honor_labels: cfg.honor_labels,
        honor_timestamps: cfg.honor_timestamps,
        sample_limit: us(cfg.sample_limit),
        label_limit: us(cfg.label_limit),
        label_name_length_limit: us(cfg.label_name_length_limit),
        label_value_length_limit: us(cfg.label_value_length_limit),
        body_size_limit: cfg.body_size_limit,
        metric_relabel_configs: cfg.metric_relabel_configs.clone(),
        extra_metrics,
        accept_header: accept_header(&cfg.scrape_protocols),
        accept_encoding: if cfg.enable_compression {
            "gzip"
        } else {
            "identity"
        },
        fallback_format: cfg
            .fallback_scrape_protocol
            .as_deref()
            .and_then(protocol_format),
        convert_classic_histograms_to_nhcb: cfg.convert_classic_histograms_to_nhcb,
        always_scrape_classic_histograms: cfg.always_scrape_classic_histograms,
        native_histograms: cfg.scrape_native_histograms,
        native_histogram_bucket_limit: us(cfg.native_histogram_bucket_limit),
        native_histogram_max_schema: pick_schema(cfg.native_histogram_min_bucket_factor),
    }
}

/// The highest schema whose bucket growth factor is at least `factor`
/// (Prometheus's `pickSchema`): 0 or anything up to 1 means the finest
/// schema, 8.
pub(crate) fn pick_schema(factor: f64) -> i32 {
    use pharos_model::histogram::{EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN};
    let factor = if factor <= 1.0 { 1.00271 } else { factor };
    let floor = (-factor.log2().log2()).floor();
    if floor >= f64::from(EXPONENTIAL_SCHEMA_MAX) {
        EXPONENTIAL_SCHEMA_MAX
    } else if floor <= f64::from(EXPONENTIAL_SCHEMA_MIN) {
        EXPONENTIAL_SCHEMA_MIN
    } else {
        floor as i32
    }
}

/// The exposition format of a `scrape_protocols` name.
fn protocol_format(p: &str) -> Option<Format> {
    match p {
        "OpenMetricsText1.0.0" | "OpenMetricsText0.0.1" => Some(Format::OpenMetrics),
        "PrometheusText1.0.0" | "PrometheusText0.0.4" => Some(Format::PrometheusText),
        "PrometheusProto" => Some(Format::Protobuf),
        _ => None,
    }
}

/// The `Accept` header for the job's `scrape_protocols`, weighted in order
/// as Prometheus's `acceptHeader` does (the default list gives
/// [`pharos_exposition::SCRAPE_ACCEPT_HEADER`]). Weights start at `q=0.6`
/// whatever the list, like Prometheus (one step per known protocol).
pub(crate) fn accept_header(protocols: &[String]) -> String {
    let mut vals: Vec<String> = Vec::new();
    let mut weight = 6;
    for p in protocols {
        let media = match p.as_str() {
            "PrometheusProto" => {
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            }
            "OpenMetricsText1.0.0" => {
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8"
            }
            "OpenMetricsText0.0.1" => "application/openmetrics-text;version=0.0.1",
            "PrometheusText1.0.0" => "text/plain;version=1.0.0;escaping=allow-utf-8",
            "PrometheusText0.0.4" => "text/plain;version=0.0.4",
            _ => continue,
        };
        vals.push(format!("{media};q=0.{weight}"));
        weight -= 1;
    }
    vals.push(format!("*/*;q=0.{weight}"));
    vals.join(",")
}

/// Builds the targets of a job from its target groups: active targets
/// (deduplicated by labels and URL, first wins) and dropped ones. Targets
/// that cannot be built are logged and counted.
pub(crate) fn build_targets(
    cfg: &ScrapeConfig,
    groups: &[TargetGroup],
    metrics: &Metrics,
) -> (Vec<Target>, Vec<DroppedTarget>) {
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    let mut seen = HashSet::new();
    let mut failures = 0u64;
    for group in groups {
        for (i, tl) in group.targets.iter().enumerate() {
            let discovered = discovered_from(cfg, tl, &group.labels);
            let built = populate_labels(&discovered, cfg).and_then(|l| match l {
                None => Ok(None),
                Some(l) => Target::new(&cfg.job_name, l, discovered.clone(), &cfg.params).map(Some),
            });
            match built {
                Ok(Some(t)) => {
                    if seen.insert(t.hash) {
                        active.push(t);
                    }
                }
                Ok(None) => dropped.push(DroppedTarget {
                    url: target_url(&discovered, &cfg.params),
                    discovered,
                }),
                Err(e) => {
                    failures += 1;
                    tracing::error!(
                        scrape_pool = %cfg.job_name,
                        err = %format!("instance {i} in group {}: {e}", group.source),
                        "Creating target failed"
                    );
                }
            }
        }
    }
    if failures > 0 {
        *metrics
            .sync_failed
            .lock()
            .entry(cfg.job_name.clone())
            .or_default() += failures;
    }
    (active, dropped)
}

/// What a job makes of one discovered target (for `pharos check
/// service-discovery`): the discovered labels with the job's defaults, and
/// the labels after `relabel_configs` (`Ok(None)` when dropped, `Err` when
/// the target cannot be scraped, saying why).
pub fn relabel_target(
    cfg: &ScrapeConfig,
    target: &pharos_model::Labels,
    group: &pharos_model::Labels,
) -> (
    pharos_model::Labels,
    Result<Option<pharos_model::Labels>, String>,
) {
    let discovered = discovered_from(cfg, target, group);
    let relabeled = populate_labels(&discovered, cfg);
    (discovered, relabeled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn default_protocols_give_the_standard_accept_header() {
        let d: Vec<String> = pharos_config::DEFAULT_SCRAPE_PROTOCOLS
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(accept_header(&d), pharos_exposition::SCRAPE_ACCEPT_HEADER);
        assert_eq!(
            accept_header(&["PrometheusText0.0.4".to_string()]),
            "text/plain;version=0.0.4;q=0.6,*/*;q=0.5"
        );
    }
}
