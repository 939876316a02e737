//! Targets: from a `static_configs` entry to final labels, URL and schedule.
//!
//! Label building follows Prometheus's `PopulateDiscoveredLabels` and
//! `PopulateLabels`: the discovered set gets the job's defaults
//! (`job`, `__scrape_interval__`, `__scrape_timeout__`, `__metrics_path__`,
//! `__scheme__`, `__param_<name>`) where absent, `relabel_configs` run over
//! it, `__meta_*` labels go, and `instance` defaults to `__address__`. The
//! remaining `__`-prefixed labels stay on the target (they build the URL and
//! the schedule) but are not attached to samples.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use parking_lot::Mutex;
use pharos_config::ScrapeConfig;
use pharos_model::{Duration, Labels, LabelsBuilder};

use crate::ScrapeError;

pub(crate) const ADDRESS_LABEL: &str = "__address__";
pub(crate) const SCHEME_LABEL: &str = "__scheme__";
pub(crate) const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub(crate) const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub(crate) const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub(crate) const PARAM_LABEL_PREFIX: &str = "__param_";
pub(crate) const META_LABEL_PREFIX: &str = "__meta_";
pub(crate) const RESERVED_LABEL_PREFIX: &str = "__";
pub(crate) const JOB_LABEL: &str = "job";
pub(crate) const INSTANCE_LABEL: &str = "instance";

/// The health of a target, from its last scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The last scrape succeeded.
    Up,
    /// The last scrape failed.
    Down,
    /// Not scraped yet.
    Unknown,
}

impl Health {
    /// `"up"`, `"down"` or `"unknown"`, as in Prometheus's API.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

/// A snapshot of one target for the API (`/api/v1/targets`).
#[derive(Debug, Clone)]
pub struct TargetStatus {
    /// The job (scrape pool) name.
    pub scrape_pool: String,
    /// The URL scraped.
    pub scrape_url: String,
    /// The labels attached to the target's samples (no `__` labels). Empty
    /// for a dropped target.
    pub labels: Labels,
    /// The labels before relabeling.
    pub discovered_labels: Labels,
    /// Health from the last scrape.
    pub health: Health,
    /// The last scrape's error, empty when it succeeded.
    pub last_error: String,
    /// When the last scrape happened (its sample timestamp).
    pub last_scrape: Option<SystemTime>,
    /// How long the last scrape took, appending included.
    pub last_scrape_duration: std::time::Duration,
    /// The target's scrape interval.
    pub scrape_interval: Duration,
    /// The target's scrape timeout.
    pub scrape_timeout: Duration,
    /// Metric metadata from the target's last successful scrape, sorted by
    /// family name (shared, cheap to clone). Empty for a dropped target.
    /// Each family's entry is shared by every target that exposes the same
    /// family with the same type, help and unit.
    pub metadata: Arc<Vec<Arc<MetricMetadata>>>,
}

/// Metadata of one metric family as a target exposes it (`# TYPE`,
/// `# HELP`, `# UNIT`), for `/api/v1/metadata` and
/// `/api/v1/targets/metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricMetadata {
    /// The metric family name.
    pub metric: String,
    /// The type as Prometheus spells it (`counter`, `gauge`, `histogram`,
    /// `gaugehistogram`, `summary`, `info`, `stateset`, `unknown`).
    pub kind: String,
    /// The help text, empty when none.
    pub help: String,
    /// The unit, empty when none.
    pub unit: String,
}

/// One family's metadata as parsed from a page, borrowed from the body.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PageMetadata<'a> {
    pub kind: Option<&'static str>,
    pub help: Option<std::borrow::Cow<'a, str>>,
    pub unit: Option<&'a str>,
}

/// The process-wide store of metric metadata entries, keyed by content.
///
/// Targets of one job usually run the same exporter and expose the same
/// families with the same help text: 1000 node_exporters would otherwise keep
/// 1000 copies of the same few hundred help strings (about as much memory as
/// the scrape cache). Each target holds only pointers to shared entries. An
/// entry lives while some target holds it; the store drops the ones nobody
/// holds when it has doubled since its last pruning.
pub(crate) struct MetadataInterner {
    /// Entries by a hash of their four fields (collisions share a bucket).
    entries: HashMap<u64, Vec<Arc<MetricMetadata>>>,
    /// Number of entries.
    len: usize,
    /// Prune when `len` reaches this.
    prune_at: usize,
}

static METADATA: LazyLock<Mutex<MetadataInterner>> = LazyLock::new(|| {
    Mutex::new(MetadataInterner {
        entries: HashMap::new(),
        len: 0,
        prune_at: 1024,
    })
});

impl MetadataInterner {
    /// The shared entry with these fields, created when absent.
    fn intern(&mut self, metric: &str, kind: &str, help: &str, unit: &str) -> Arc<MetricMetadata> {
        let mut h = crate::cache::FastHasher::default();
        (metric, kind, help, unit).hash(&mut h);
        let bucket = self.entries.entry(h.finish()).or_default();
        if let Some(m) = bucket
            .iter()
            .find(|m| m.metric == metric && m.kind == kind && m.help == help && m.unit == unit)
        {
            return m.clone();
        }
        let m = Arc::new(MetricMetadata {
            metric: metric.to_string(),
            kind: kind.to_string(),
            help: help.to_string(),
            unit: unit.to_string(),
        });
        bucket.push(m.clone());
        self.len += 1;
        m
    }

    /// Drops the entries no target holds, once the store has doubled.
    /// Entries are only cloned under the store's lock, so one seen unheld
    /// here cannot be picked up meanwhile.
    fn prune(&mut self) {
        if self.len < self.prune_at {
            return;
        }
        self.entries.retain(|_, b| {
            b.retain(|m| Arc::strong_count(m) > 1);
            !b.is_empty()
        });
        self.len = self.entries.values().map(Vec::len).sum();
        self.prune_at = (self.len * 2).max(1024);
    }
}

/// Mutable per-target state the loop reports into.
#[derive(Debug, Clone)]
struct Status {
    health: Health,
    last_error: String,
    last_scrape: Option<SystemTime>,
    last_scrape_duration: std::time::Duration,
}

/// An active target of a pool.
#[derive(Debug)]
pub(crate) struct Target {
    /// The pool (job) name.
    pub pool: String,
    /// The labels attached to samples: `labels` without `__` ones.
    pub public: Labels,
    /// The labels before relabeling.
    pub discovered: Labels,
    /// The scrape URL.
    pub url: String,
    /// Identity within the pool (labels and URL).
    pub hash: u64,
    /// From `__scrape_interval__`.
    pub interval: Duration,
    /// From `__scrape_timeout__`.
    pub timeout: Duration,
    status: Mutex<Status>,
    /// An error every scrape fails with while set, instead of fetching
    /// (`target_limit` exceeded), as Prometheus's `setForcedError`.
    forced_error: Mutex<Option<ScrapeError>>,
    /// Metric metadata of the last successful scrape, sorted by family;
    /// entries come from the process-wide [`MetadataInterner`].
    metadata: Mutex<Arc<Vec<Arc<MetricMetadata>>>>,
}

impl Target {
    /// A target from final (relabeled) labels.
    pub fn new(
        pool: &str,
        labels: Labels,
        discovered: Labels,
        params: &BTreeMap<String, Vec<String>>,
    ) -> Result<Target, String> {
        let interval = parse_duration_label(&labels, SCRAPE_INTERVAL_LABEL, "scrape interval")?;
        let timeout = parse_duration_label(&labels, SCRAPE_TIMEOUT_LABEL, "scrape timeout")?;
        let url = target_url(&labels, params);
        let public = Labels::from_sorted(
            labels
                .iter()
                .filter(|l| !l.name.starts_with(RESERVED_LABEL_PREFIX)),
        );
        let hash = target_hash(&labels, &url);
        Ok(Target {
            pool: pool.to_string(),
            public,
            discovered,
            url,
            hash,
            interval,
            timeout,
            status: Mutex::new(Status {
                health: Health::Unknown,
                last_error: String::new(),
                last_scrape: None,
                last_scrape_duration: std::time::Duration::ZERO,
            }),
            forced_error: Mutex::new(None),
            metadata: Mutex::new(Arc::new(Vec::new())),
        })
    }

    /// The metric metadata of the last successful scrape.
    pub fn metadata(&self) -> Arc<Vec<Arc<MetricMetadata>>> {
        self.metadata.lock().clone()
    }

    /// Replaces the metadata with a page's, allocating only when it changed
    /// (the usual case is an identical page every scrape), and then sharing
    /// the entries other targets already have.
    pub(crate) fn set_metadata(&self, page: &BTreeMap<&str, PageMetadata<'_>>) {
        let same = |cur: &[Arc<MetricMetadata>]| {
            cur.len() == page.len()
                && cur.iter().zip(page).all(|(c, (name, m))| {
                    c.metric == *name
                        && c.kind == m.kind.unwrap_or("unknown")
                        && c.help == m.help.as_deref().unwrap_or("")
                        && c.unit == m.unit.unwrap_or("")
                })
        };
        if same(&self.metadata.lock()) {
            return;
        }
        let fresh: Vec<Arc<MetricMetadata>> = {
            let mut interner = METADATA.lock();
            interner.prune();
            page.iter()
                .map(|(name, m)| {
                    interner.intern(
                        name,
                        m.kind.unwrap_or("unknown"),
                        m.help.as_deref().unwrap_or(""),
                        m.unit.unwrap_or(""),
                    )
                })
                .collect()
        };
        *self.metadata.lock() = Arc::new(fresh);
    }

    /// Sets or clears the error every scrape fails with.
    pub fn set_forced_error(&self, e: Option<ScrapeError>) {
        *self.forced_error.lock() = e;
    }

    /// The forced error, if set.
    pub fn forced_error(&self) -> Option<ScrapeError> {
        self.forced_error.lock().clone()
    }

    /// Records the outcome of a scrape.
    pub fn report(&self, at: SystemTime, duration: std::time::Duration, err: Option<&ScrapeError>) {
        let mut s = self.status.lock();
        s.health = if err.is_none() {
            Health::Up
        } else {
            Health::Down
        };
        s.last_error = err.map(|e| e.to_string()).unwrap_or_default();
        s.last_scrape = Some(at);
        s.last_scrape_duration = duration;
    }

    /// A snapshot for the API.
    pub fn status(&self) -> TargetStatus {
        let s = self.status.lock().clone();
        TargetStatus {
            scrape_pool: self.pool.clone(),
            scrape_url: self.url.clone(),
            labels: self.public.clone(),
            discovered_labels: self.discovered.clone(),
            health: s.health,
            last_error: s.last_error,
            last_scrape: s.last_scrape,
            last_scrape_duration: s.last_scrape_duration,
            scrape_interval: self.interval,
            scrape_timeout: self.timeout,
            metadata: self.metadata(),
        }
    }

    /// How long to wait before the first scrape so that the target's scrapes
    /// fall at a fixed phase of the interval: `(hash ^ seed) mod interval`
    /// past a multiple of the interval in wall-clock time, as Prometheus's
    /// `Target.offset`. `now_nanos` is the current Unix time in nanoseconds.
    pub fn offset(
        &self,
        interval: std::time::Duration,
        seed: u64,
        now_nanos: u128,
    ) -> std::time::Duration {
        offset_for(self.hash, interval, seed, now_nanos)
    }
}

pub(crate) fn offset_for(
    hash: u64,
    interval: std::time::Duration,
    seed: u64,
    now_nanos: u128,
) -> std::time::Duration {
    let iv = interval.as_nanos().max(1);
    let base = iv - now_nanos % iv;
    let off = u128::from(hash ^ seed) % iv;
    let mut next = base + off;
    if next > iv {
        next -= iv;
    }
    std::time::Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX))
}

/// A target that `relabel_configs` dropped, kept for the API.
#[derive(Debug, Clone)]
pub(crate) struct DroppedTarget {
    pub discovered: Labels,
    pub url: String,
}

impl DroppedTarget {
    pub fn status(&self, pool: &str, cfg: &ScrapeConfig) -> TargetStatus {
        TargetStatus {
            scrape_pool: pool.to_string(),
            scrape_url: self.url.clone(),
            labels: Labels::empty(),
            discovered_labels: self.discovered.clone(),
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape: None,
            last_scrape_duration: std::time::Duration::ZERO,
            scrape_interval: cfg.scrape_interval,
            scrape_timeout: cfg.scrape_timeout,
            metadata: Arc::new(Vec::new()),
        }
    }
}

fn parse_duration_label(labels: &Labels, name: &str, what: &str) -> Result<Duration, String> {
    let v = labels.get(name).unwrap_or("");
    let d = Duration::parse(v).map_err(|e| format!("error parsing {what}: {e}"))?;
    if d.millis() == 0 {
        return Err(format!("{what} cannot be 0"));
    }
    Ok(d)
}

/// The labels of a static target before relabeling: its `__address__`, the
/// group's labels, then the job's defaults where absent.
/// The labels of a discovered target before relabeling: the group's labels,
/// overridden by the target's own, then the job's defaults where absent.
pub(crate) fn discovered_from(cfg: &ScrapeConfig, target: &Labels, group: &Labels) -> Labels {
    let mut b = LabelsBuilder::from(group);
    for l in target.iter() {
        b.set(l.name, l.value);
    }
    let interval = cfg.scrape_interval.to_string();
    let timeout = cfg.scrape_timeout.to_string();
    let defaults = [
        (JOB_LABEL, cfg.job_name.as_str()),
        (SCRAPE_INTERVAL_LABEL, interval.as_str()),
        (SCRAPE_TIMEOUT_LABEL, timeout.as_str()),
        (METRICS_PATH_LABEL, cfg.metrics_path.as_str()),
        (SCHEME_LABEL, cfg.scheme.as_str()),
    ];
    for (n, v) in defaults {
        if b.get(n).is_none() {
            b.set(n, v);
        }
    }
    for (k, v) in &cfg.params {
        let name = format!("{PARAM_LABEL_PREFIX}{k}");
        if let Some(first) = v.first()
            && b.get(&name).is_none()
        {
            b.set(&name, first);
        }
    }
    b.build()
}

/// Applies `relabel_configs` and the post-relabel rules. `Ok(None)` means the
/// target was dropped; `Err` is a target that cannot be scraped.
pub(crate) fn populate_labels(
    discovered: &Labels,
    cfg: &ScrapeConfig,
) -> Result<Option<Labels>, String> {
    let mut b = LabelsBuilder::from(discovered);
    if !pharos_model::relabel::process_builder(&mut b, &cfg.relabel_configs) {
        return Ok(None);
    }
    let addr = match b.get(ADDRESS_LABEL) {
        Some(a) if !a.is_empty() => a.to_string(),
        _ => return Err("no address".to_string()),
    };
    if addr.contains('/') {
        return Err(format!("{addr:?} is not a valid hostname"));
    }
    let interval = b.get(SCRAPE_INTERVAL_LABEL).unwrap_or("").to_string();
    let timeout = b.get(SCRAPE_TIMEOUT_LABEL).unwrap_or("").to_string();
    let iv =
        Duration::parse(&interval).map_err(|e| format!("error parsing scrape interval: {e}"))?;
    if iv.millis() == 0 {
        return Err("scrape interval cannot be 0".to_string());
    }
    let to = Duration::parse(&timeout).map_err(|e| format!("error parsing scrape timeout: {e}"))?;
    if to.millis() == 0 {
        return Err("scrape timeout cannot be 0".to_string());
    }
    if to > iv {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})"
        ));
    }
    b.retain(|n, _| !n.starts_with(META_LABEL_PREFIX));
    if b.get(INSTANCE_LABEL).is_none() {
        b.set(INSTANCE_LABEL, &addr);
    }
    Ok(Some(b.build()))
}

/// The scrape URL from `__scheme__`, `__address__`, `__metrics_path__` and
/// the query parameters (the job's `params`, whose first values
/// `__param_<name>` labels override).
pub(crate) fn target_url(labels: &Labels, params: &BTreeMap<String, Vec<String>>) -> String {
    let mut q: BTreeMap<String, Vec<String>> = params.clone();
    for l in labels.iter() {
        if let Some(k) = l.name.strip_prefix(PARAM_LABEL_PREFIX) {
            let vals = q.entry(k.to_string()).or_default();
            match vals.first_mut() {
                Some(first) => *first = l.value.to_string(),
                None => vals.push(l.value.to_string()),
            }
        }
    }
    let scheme = labels.get(SCHEME_LABEL).unwrap_or("");
    let host = labels.get(ADDRESS_LABEL).unwrap_or("");
    let path = labels.get(METRICS_PATH_LABEL).unwrap_or("");
    let mut url = String::with_capacity(scheme.len() + host.len() + path.len() + 8);
    if !scheme.is_empty() {
        url.push_str(scheme);
        url.push(':');
    }
    if !scheme.is_empty() || !host.is_empty() {
        url.push_str("//");
        url.push_str(host);
    }
    if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
        url.push('/');
    }
    escape_path(path, &mut url);
    let mut first = true;
    for (k, vs) in &q {
        for v in vs {
            url.push(if first { '?' } else { '&' });
            first = false;
            query_escape(k, &mut url);
            url.push('=');
            query_escape(v, &mut url);
        }
    }
    url
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_pct(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => push_pct(out, b),
        }
    }
}

/// Go's path escaping (`url.URL.EscapedPath` for a plain path).
fn escape_path(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b'&'
            | b'+'
            | b','
            | b'/'
            | b':'
            | b';'
            | b'='
            | b'@' => out.push(char::from(b)),
            _ => push_pct(out, b),
        }
    }
}

/// Identity of a target within its pool: its labels and URL.
pub(crate) fn target_hash(labels: &Labels, url: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(labels.as_bytes());
    h.update(&[0xff]);
    h.update(url.as_bytes());
    h.digest()
}

/// FNV-1a, 64 bit (the offset seed, as Prometheus computes it).
pub(crate) fn fnv64a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn url_building() {
        let l = Labels::from_pairs(&[
            ("__scheme__", "http"),
            ("__address__", "h:9100"),
            ("__metrics_path__", "/probe"),
            ("__param_target", "a b&c"),
        ]);
        let mut p = BTreeMap::new();
        p.insert("module".to_string(), vec!["x".to_string(), "y".to_string()]);
        p.insert("target".to_string(), vec!["old".to_string()]);
        assert_eq!(
            target_url(&l, &p),
            "http://h:9100/probe?module=x&module=y&target=a+b%26c"
        );
        let l = Labels::from_pairs(&[
            ("__scheme__", "https"),
            ("__address__", "h"),
            ("__metrics_path__", "metrics"),
        ]);
        assert_eq!(target_url(&l, &BTreeMap::new()), "https://h/metrics");
    }

    #[test]
    fn offsets_spread_and_stay_in_interval() {
        let iv = std::time::Duration::from_secs(10);
        let now: u128 = 1_700_000_000_123_456_789;
        for h in [0u64, 1, 42, u64::MAX, 0xdead_beef] {
            let o = offset_for(h, iv, 7, now);
            assert!(o <= iv, "{o:?}");
            // The scrape lands at a fixed phase: (now + o) mod iv is the
            // target's phase (hash ^ seed) mod iv.
            let phase = (now + o.as_nanos()) % iv.as_nanos();
            assert_eq!(phase, u128::from(h ^ 7) % iv.as_nanos());
        }
        assert_ne!(
            offset_for(1, iv, 7, now),
            offset_for(2, iv, 7, now),
            "different targets get different phases"
        );
    }

    #[test]
    fn fnv_matches_reference() {
        // Reference values of FNV-1a 64.
        assert_eq!(fnv64a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv64a(b"a"), 0xaf63dc4c8601ec8c);
    }
}
