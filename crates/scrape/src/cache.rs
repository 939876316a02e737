//! The per-target scrape cache.
//!
//! Keyed by the exact series text of the page (`name{a="b"}` as exposed), it
//! remembers the final labels and the storage reference of every series, and
//! which series metric relabeling dropped, so that a page that repeats itself
//! costs one hash lookup per line. It also holds the series appended by the
//! current and the previous scrape (by storage reference); their difference
//! is what gets stale markers.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pharos_model::Labels;
use pharos_storage::SeriesRef;

/// Hashes a byte key with one-shot xxh3 (the std `Hash` of a slice is a
/// length then the bytes; both fold into the state), and a `u64` key with
/// the splitmix64 finaliser. Both are much cheaper per lookup than SipHash
/// or a streaming hasher, and the keys are not attacker-chosen in a way that
/// matters (a target can only slow down its own cache).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = mix64(self.0 ^ n);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A cached series: kept (with labels and reference) or dropped by metric
/// relabeling.
#[derive(Debug, Clone)]
struct CacheEntry {
    series_ref: SeriesRef,
    /// `None` for a series metric relabeling drops.
    labels: Option<Labels>,
    /// The iteration that last saw this series.
    last_iter: u64,
}

/// The report series (`up`, `scrape_duration_seconds`, ...), by index.
pub(crate) const REPORT_SERIES: usize = 8;

/// See the module docs.
#[derive(Default)]
pub(crate) struct ScrapeCache {
    /// Current iteration (scrape) number.
    iter: u64,
    /// Number of entries after the last successful scrape.
    successful_count: usize,
    series: Map<Box<[u8]>, CacheEntry>,
    /// Series appended by this scrape (without explicit timestamps).
    cur: Map<SeriesRef, Labels>,
    /// Series appended by the previous scrape.
    prev: Map<SeriesRef, Labels>,
    /// Keys added during the current iteration, forgotten on rollback.
    added_now: Vec<Box<[u8]>>,
    /// The report series' references and labels.
    pub report: [Option<(SeriesRef, Labels)>; REPORT_SERIES],
}

/// What a lookup found.
pub(crate) enum Lookup {
    /// Not cached.
    Miss,
    /// Metric relabeling drops this series.
    Dropped,
    /// Cached; `already` is true when this scrape already had the series.
    Hit {
        series_ref: SeriesRef,
        labels: Labels,
        already: bool,
    },
}

impl ScrapeCache {
    pub fn new() -> ScrapeCache {
        ScrapeCache::default()
    }

    /// The number of scrapes (successful or not) this cache has seen.
    pub fn iterations(&self) -> u64 {
        self.iter
    }

    /// Number of cached series (kept and dropped).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Looks `series` up and marks it seen in this iteration.
    pub fn get(&mut self, series: &[u8]) -> Lookup {
        match self.series.get_mut(series) {
            None => Lookup::Miss,
            Some(e) => {
                let already = e.last_iter == self.iter;
                e.last_iter = self.iter;
                match &e.labels {
                    None => Lookup::Dropped,
                    Some(l) => Lookup::Hit {
                        series_ref: e.series_ref,
                        labels: l.clone(),
                        already,
                    },
                }
            }
        }
    }

    /// Updates the storage reference of a cached series (the storage may hand
    /// out a new one, for example after the series was garbage-collected).
    pub fn update_ref(&mut self, series: &[u8], series_ref: SeriesRef) {
        if let Some(e) = self.series.get_mut(series) {
            e.series_ref = series_ref;
        }
    }

    /// Remembers that metric relabeling drops `series`.
    pub fn add_dropped(&mut self, series: &[u8]) {
        self.series.insert(
            series.into(),
            CacheEntry {
                series_ref: 0,
                labels: None,
                last_iter: self.iter,
            },
        );
    }

    /// Caches a newly appended series. A zero reference is not cached (the
    /// storage did not give one), like Prometheus.
    pub fn add(&mut self, series: &[u8], series_ref: SeriesRef, labels: Labels) -> bool {
        if series_ref == 0 {
            return false;
        }
        let key: Box<[u8]> = series.into();
        self.added_now.push(key.clone());
        self.series.insert(
            key,
            CacheEntry {
                series_ref,
                labels: Some(labels),
                last_iter: self.iter,
            },
        );
        true
    }

    /// Notes that this scrape appended the series (for staleness).
    pub fn track(&mut self, series_ref: SeriesRef, labels: &Labels) {
        if series_ref != 0 {
            self.cur.insert(series_ref, labels.clone());
        }
    }

    /// Series of the previous scrape that this one did not append.
    pub fn stale_series(&self) -> Vec<(SeriesRef, Labels)> {
        self.prev
            .iter()
            .filter(|(r, _)| !self.cur.contains_key(*r))
            .map(|(r, l)| (*r, l.clone()))
            .collect()
    }

    /// Forgets what the current (failed, rolled back) scrape added: the
    /// series it cached, whose storage references may not survive the
    /// rollback, and its staleness tracking, so that every series of the
    /// previous scrape is reported stale.
    pub fn rollback_iteration(&mut self) {
        for k in self.added_now.drain(..) {
            self.series.remove(&k);
        }
        self.cur.clear();
    }

    /// Ends an iteration: with `flush` (a successful non-empty scrape) drops
    /// entries not seen in it; without, flushes only when the cache grew
    /// past twice its last successful size plus 1000 (failing scrapes with
    /// churning series). Then the current series become the previous ones.
    /// Returns true when a flush was forced.
    pub fn iter_done(&mut self, flush: bool) -> bool {
        let count = self.len();
        let mut flush = flush;
        let mut forced = false;
        if flush {
            self.successful_count = count;
        } else if count > self.successful_count * 2 + 1000 {
            flush = true;
            forced = true;
        }
        if flush {
            let it = self.iter;
            self.series.retain(|_, e| e.last_iter == it);
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.cur.clear();
        self.added_now.clear();
        self.iter += 1;
        forced
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn l(n: &str) -> Labels {
        Labels::from_pairs(&[("__name__", n)])
    }

    #[test]
    fn staleness_between_iterations() {
        let mut c = ScrapeCache::new();
        assert!(matches!(c.get(b"a"), Lookup::Miss));
        c.add(b"a", 1, l("a"));
        c.track(1, &l("a"));
        c.add(b"b", 2, l("b"));
        c.track(2, &l("b"));
        c.iter_done(true);
        // Second scrape: only `a`.
        match c.get(b"a") {
            Lookup::Hit {
                series_ref,
                already,
                ..
            } => {
                assert_eq!(series_ref, 1);
                assert!(!already);
            }
            _ => panic!("expected hit"),
        }
        assert!(matches!(c.get(b"a"), Lookup::Hit { already: true, .. }));
        c.track(1, &l("a"));
        let stale = c.stale_series();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].0, 2);
        c.iter_done(true);
        // `b` was flushed from the cache: not seen in the last scrape.
        assert!(matches!(c.get(b"b"), Lookup::Miss));
    }

    #[test]
    fn rollback_forgets_new_entries_and_tracks_nothing() {
        let mut c = ScrapeCache::new();
        c.add(b"a", 1, l("a"));
        c.track(1, &l("a"));
        c.iter_done(true);
        let _ = c.get(b"a");
        c.track(1, &l("a"));
        c.add(b"new", 5, l("new"));
        c.track(5, &l("new"));
        c.rollback_iteration();
        assert!(matches!(c.get(b"new"), Lookup::Miss));
        assert!(matches!(c.get(b"a"), Lookup::Hit { .. }));
        assert_eq!(c.stale_series().len(), 1);
    }

    #[test]
    fn dropped_entries_and_forced_flush() {
        let mut c = ScrapeCache::new();
        c.add_dropped(b"x");
        assert!(matches!(c.get(b"x"), Lookup::Dropped));
        assert!(matches!(c.get(b"y"), Lookup::Miss));
        c.iter_done(true);
        for i in 0..1100u64 {
            c.add(format!("s{i}").as_bytes(), i + 1, l("s"));
        }
        assert!(c.iter_done(false), "growth past 2x+1000 forces a flush");
        // The flush keeps what this iteration saw and forgets the rest.
        assert_eq!(c.len(), 1100);
        assert!(matches!(c.get(b"x"), Lookup::Miss));
    }
}
