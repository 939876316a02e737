//! The scrape subsystem's own metrics (`pharos_target_*`), Prometheus's
//! `prometheus_target_*` under our prefix. Plain atomics and a few small
//! maps: they are written on every scrape and read only by `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use pharos_model::format_float;
use pharos_model::labels::escape_label_value;

/// A summary without quantiles: sum and count.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SumCount {
    pub sum: f64,
    pub count: u64,
}

/// Counters shared by the manager, its pools and loops.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub pools_total: AtomicU64,
    pub pools_failed: AtomicU64,
    pub pool_reloads: AtomicU64,
    pub pool_reloads_failed: AtomicU64,
    pub sample_out_of_order: AtomicU64,
    pub sample_duplicate: AtomicU64,
    pub sample_out_of_bounds: AtomicU64,
    pub exemplar_out_of_order: AtomicU64,
    pub exceeded_sample_limit: AtomicU64,
    pub exceeded_body_size_limit: AtomicU64,
    pub exceeded_label_limits: AtomicU64,
    pub exceeded_bucket_limit: AtomicU64,
    pub cache_flush_forced: AtomicU64,
    /// Time between consecutive scrapes of a target, by configured interval.
    pub interval_length: Mutex<BTreeMap<String, SumCount>>,
    /// Time to build a pool's targets, by job.
    pub sync_length: Mutex<BTreeMap<String, SumCount>>,
    /// Targets that could not be built, by job.
    pub sync_failed: Mutex<BTreeMap<String, u64>>,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, v: &AtomicU64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
}

fn summaries(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    m: &BTreeMap<String, SumCount>,
) {
    header(out, name, "summary", help);
    for (k, s) in m {
        let k = escape_label_value(k);
        let _ = writeln!(out, "{name}_sum{{{label}=\"{k}\"}} {}", format_float(s.sum));
        let _ = writeln!(out, "{name}_count{{{label}=\"{k}\"}} {}", s.count);
    }
}

impl Metrics {
    /// Writes everything in text format 0.0.4. `targets` is the number of
    /// active targets per job (the manager knows it).
    pub fn write(&self, out: &mut String, targets: &BTreeMap<String, usize>) {
        counter(
            out,
            "pharos_target_scrape_pools_total",
            "Total number of scrape pool creation attempts.",
            &self.pools_total,
        );
        counter(
            out,
            "pharos_target_scrape_pools_failed_total",
            "Total number of scrape pool creations that failed.",
            &self.pools_failed,
        );
        counter(
            out,
            "pharos_target_scrape_pool_reloads_total",
            "Total number of scrape pool reloads.",
            &self.pool_reloads,
        );
        counter(
            out,
            "pharos_target_scrape_pool_reloads_failed_total",
            "Total number of failed scrape pool reloads.",
            &self.pool_reloads_failed,
        );
        header(
            out,
            "pharos_target_scrape_pool_targets",
            "gauge",
            "Current number of targets in this scrape pool.",
        );
        for (job, n) in targets {
            let _ = writeln!(
                out,
                "pharos_target_scrape_pool_targets{{scrape_job=\"{}\"}} {n}",
                escape_label_value(job)
            );
        }
        counter(
            out,
            "pharos_target_scrapes_sample_out_of_order_total",
            "Total number of samples rejected due to not being out of the expected order.",
            &self.sample_out_of_order,
        );
        counter(
            out,
            "pharos_target_scrapes_exemplar_out_of_order_total",
            "Total number of exemplar rejected due to not being out of the expected order.",
            &self.exemplar_out_of_order,
        );
        counter(
            out,
            "pharos_target_scrapes_sample_duplicate_timestamp_total",
            "Total number of samples rejected due to duplicate timestamps but different values.",
            &self.sample_duplicate,
        );
        counter(
            out,
            "pharos_target_scrapes_sample_out_of_bounds_total",
            "Total number of samples rejected due to timestamp falling outside of the time bounds.",
            &self.sample_out_of_bounds,
        );
        counter(
            out,
            "pharos_target_scrapes_exceeded_sample_limit_total",
            "Total number of scrapes that hit the sample limit and were rejected.",
            &self.exceeded_sample_limit,
        );
        counter(
            out,
            "pharos_target_scrapes_exceeded_body_size_limit_total",
            "Total number of scrapes that hit the body size limit.",
            &self.exceeded_body_size_limit,
        );
        counter(
            out,
            "pharos_target_scrapes_exceeded_native_histogram_bucket_limit_total",
            "Total number of scrapes that hit the native histogram bucket limit and were rejected.",
            &self.exceeded_bucket_limit,
        );
        counter(
            out,
            "pharos_target_scrape_pool_exceeded_label_limits_total",
            "Total number of times scrape pools hit the label limits, during sync or scrape.",
            &self.exceeded_label_limits,
        );
        counter(
            out,
            "pharos_target_scrapes_cache_flush_forced_total",
            "How many times a scrape cache was flushed due to getting big while scrapes are failing.",
            &self.cache_flush_forced,
        );
        summaries(
            out,
            "pharos_target_interval_length_seconds",
            "Actual intervals between scrapes.",
            "interval",
            &self.interval_length.lock(),
        );
        summaries(
            out,
            "pharos_target_sync_length_seconds",
            "Actual interval to sync the scrape pool.",
            "scrape_job",
            &self.sync_length.lock(),
        );
        header(
            out,
            "pharos_target_sync_failed_total",
            "counter",
            "Total number of target sync failures.",
        );
        for (job, n) in self.sync_failed.lock().iter() {
            let _ = writeln!(
                out,
                "pharos_target_sync_failed_total{{scrape_job=\"{}\"}} {n}",
                escape_label_value(job)
            );
        }
    }

    /// Records the time between two scrapes of a target.
    pub fn observe_interval(&self, interval: &str, secs: f64) {
        let mut m = self.interval_length.lock();
        match m.get_mut(interval) {
            Some(e) => {
                e.sum += secs;
                e.count += 1;
            }
            None => {
                m.insert(
                    interval.to_string(),
                    SumCount {
                        sum: secs,
                        count: 1,
                    },
                );
            }
        }
    }
}
