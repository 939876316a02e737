//! The per-target scrape cache.
//!
//! Keyed by the exact series text of the page (`name{a="b"}` as exposed), it
//! remembers the final labels and the storage reference of every series, and
//! which series metric relabeling dropped, so that a page that repeats itself
//! costs one hash lookup per line. The entries sit in a vector, indexed by
//! a hash table of 4-byte positions.
//!
//! It also knows which series the current and the previous scrape appended
//! (their difference is what gets stale markers), without a second
//! structure: each entry carries the number of the last scrape that appended
//! it (`tracked`). After scrape N, the series of N-1 that N did not append
//! are exactly the entries whose `tracked` is N-1. So the cache costs per
//! series one entry (56 bytes), its key, and one to two 5-byte table slots;
//! the labels are an `Arc` shared with the storage's copy. (Whole entries in
//! the table's slots, plus separate seen-sets of the current and previous
//! scrape, used to cost about 250 bytes per series.)
//!
//! Scrape numbers in entries are 32 bits, compared for equality only; they
//! wrap after 2^32 scrapes (136 years at a one-second interval), and an entry
//! would have to sit untouched for exactly that many scrapes to be misread.

use std::hash::Hasher;

use hashbrown::HashTable;

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

/// The entry was added by the scrape numbered `last_iter` (forgotten if that
/// scrape is rolled back).
const ADDED: u8 = 1;
/// `tracked` was the previous scrape's number before the current scrape set
/// it (so a rollback can restore it).
const IN_PREV: u8 = 2;

/// A cached series: kept (with labels and reference) or dropped by metric
/// relabeling. 56 bytes.
#[derive(Debug, Clone)]
struct CacheEntry {
    /// The series text as exposed: the lookup key.
    key: Box<[u8]>,
    series_ref: SeriesRef,
    /// `None` for a series metric relabeling drops.
    labels: Option<Labels>,
    /// The scrape that last saw this series.
    last_iter: u32,
    /// The scrape that last appended this series without an explicit
    /// timestamp (for staleness).
    tracked: u32,
    /// [`ADDED`], [`IN_PREV`].
    flags: u8,
}

/// The report series (`up`, `scrape_duration_seconds`, ...), by index.
pub(crate) const REPORT_SERIES: usize = 8;

fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// See the module docs.
///
/// Entries live in a vector and the hash table holds only their 4-byte
/// indices: a table runs between 7/16 and 7/8 full, and with whole entries
/// in its slots that slack cost more than the entries themselves.
#[derive(Default)]
pub(crate) struct ScrapeCache {
    /// Current iteration (scrape) number.
    iter: u64,
    /// Number of entries after the last successful scrape.
    successful_count: usize,
    /// Indices into `entries`, hashed by the entry's key.
    index: HashTable<u32>,
    entries: Vec<CacheEntry>,
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

    /// The current scrape number as entries store it (see the module docs).
    fn it(&self) -> u32 {
        self.iter as u32
    }

    /// Number of cached series (kept and dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `series`, if cached.
    fn find_mut(&mut self, series: &[u8]) -> Option<&mut CacheEntry> {
        let entries = &self.entries;
        let i = *self.index.find(key_hash(series), |&i| {
            entries.get(i as usize).is_some_and(|e| &*e.key == series)
        })?;
        self.entries.get_mut(i as usize)
    }

    /// Adds an entry for a key that is not cached.
    fn insert(&mut self, e: CacheEntry) {
        let Ok(i) = u32::try_from(self.entries.len()) else {
            // Four billion series on one page: not cached.
            return;
        };
        let h = key_hash(&e.key);
        self.entries.push(e);
        let entries = &self.entries;
        self.index.insert_unique(h, i, |&j| {
            entries.get(j as usize).map_or(0, |e| key_hash(&e.key))
        });
    }

    /// Keeps the entries `keep` accepts (it may update them) and re-indexes
    /// when some went.
    fn retain(&mut self, keep: impl FnMut(&mut CacheEntry) -> bool) {
        let before = self.entries.len();
        self.entries.retain_mut(keep);
        if self.entries.len() == before {
            return;
        }
        // A vector and table sized for a much bigger page give memory back.
        if self.entries.capacity() > 2 * self.entries.len() + 64 {
            self.entries.shrink_to_fit();
            self.index = HashTable::with_capacity(self.entries.len());
        } else {
            self.index.clear();
        }
        let entries = &self.entries;
        for (i, e) in entries.iter().enumerate() {
            // `i` fits: there were at least as many entries before.
            self.index.insert_unique(key_hash(&e.key), i as u32, |&j| {
                entries.get(j as usize).map_or(0, |e| key_hash(&e.key))
            });
        }
    }

    /// Looks `series` up and marks it seen in this iteration. With `track`
    /// (the sample has no explicit timestamp) a hit the first time in this
    /// scrape is also counted as appended for staleness, ahead of the
    /// append: the caller undoes that with [`ScrapeCache::untrack`] if the
    /// append does not happen. Doing it here saves a second lookup per
    /// sample on the hot path.
    pub fn get(&mut self, series: &[u8], track: bool) -> Lookup {
        let it = self.it();
        match self.find_mut(series) {
            None => Lookup::Miss,
            Some(e) => {
                let already = e.last_iter == it;
                if !already {
                    e.last_iter = it;
                    e.flags &= !ADDED;
                }
                let Some(labels) = e.labels.clone() else {
                    return Lookup::Dropped;
                };
                if track && !already {
                    mark_tracked(e, it);
                }
                Lookup::Hit {
                    series_ref: e.series_ref,
                    labels,
                    already,
                }
            }
        }
    }

    /// Undoes the staleness tracking of a [`ScrapeCache::get`] hit whose
    /// sample was not appended after all (out of order, out of bounds, ...).
    pub fn untrack(&mut self, series: &[u8]) {
        let it = self.it();
        if let Some(e) = self.find_mut(series)
            && e.tracked == it
        {
            restore_tracked(e, it);
        }
    }

    /// Updates the storage reference of a cached series (the storage may hand
    /// out a new one, for example after the series was garbage-collected).
    pub fn update_ref(&mut self, series: &[u8], series_ref: SeriesRef) {
        if let Some(e) = self.find_mut(series) {
            e.series_ref = series_ref;
        }
    }

    /// Remembers that metric relabeling drops `series` (not cached yet).
    pub fn add_dropped(&mut self, series: &[u8]) {
        let it = self.it();
        self.insert(CacheEntry {
            key: series.into(),
            series_ref: 0,
            labels: None,
            last_iter: it,
            tracked: it.wrapping_sub(2),
            flags: 0,
        });
    }

    /// Caches a newly appended series (not cached yet), tracked for
    /// staleness with `track` (no explicit timestamp). A zero reference is
    /// not cached (the storage did not give one), like Prometheus.
    pub fn add(&mut self, series: &[u8], series_ref: SeriesRef, labels: Labels, track: bool) {
        if series_ref == 0 {
            return;
        }
        let it = self.it();
        self.insert(CacheEntry {
            key: series.into(),
            series_ref,
            labels: Some(labels),
            last_iter: it,
            tracked: if track { it } else { it.wrapping_sub(2) },
            flags: ADDED,
        });
    }

    /// Series of the previous scrape that this one did not append.
    pub fn stale_series(&self) -> Vec<(SeriesRef, Labels)> {
        let prev = self.it().wrapping_sub(1);
        self.entries
            .iter()
            .filter(|e| e.tracked == prev)
            .filter_map(|e| e.labels.as_ref().map(|l| (e.series_ref, l.clone())))
            .collect()
    }

    /// Forgets what the current (failed, rolled back) scrape added: the
    /// series it cached, whose storage references may not survive the
    /// rollback, and its staleness tracking, so that every series of the
    /// previous scrape is reported stale.
    pub fn rollback_iteration(&mut self) {
        let it = self.it();
        self.retain(|e| {
            if e.last_iter == it && e.flags & ADDED != 0 {
                return false;
            }
            if e.tracked == it {
                restore_tracked(e, it);
            }
            true
        });
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
            let it = self.it();
            self.retain(|e| e.last_iter == it);
        }
        self.iter += 1;
        forced
    }
}

/// Marks an entry appended in scrape `it`, remembering whether the previous
/// scrape had appended it too.
fn mark_tracked(e: &mut CacheEntry, it: u32) {
    if e.tracked == it.wrapping_sub(1) {
        e.flags |= IN_PREV;
    } else {
        e.flags &= !IN_PREV;
    }
    e.tracked = it;
}

/// Undoes [`mark_tracked`] for scrape `it`.
fn restore_tracked(e: &mut CacheEntry, it: u32) {
    e.tracked = if e.flags & IN_PREV != 0 {
        it.wrapping_sub(1)
    } else {
        it.wrapping_sub(2)
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn l(n: &str) -> Labels {
        Labels::from_pairs(&[("__name__", n)])
    }

    fn stale_refs(c: &ScrapeCache) -> Vec<SeriesRef> {
        let mut v: Vec<SeriesRef> = c.stale_series().into_iter().map(|(r, _)| r).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn staleness_between_iterations() {
        let mut c = ScrapeCache::new();
        assert!(matches!(c.get(b"a", true), Lookup::Miss));
        c.add(b"a", 1, l("a"), true);
        c.add(b"b", 2, l("b"), true);
        assert!(stale_refs(&c).is_empty());
        c.iter_done(true);
        // Second scrape: only `a`.
        match c.get(b"a", true) {
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
        assert!(matches!(
            c.get(b"a", true),
            Lookup::Hit { already: true, .. }
        ));
        let stale = c.stale_series();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].0, 2);
        assert_eq!(stale[0].1, l("b"));
        c.iter_done(true);
        // `b` was flushed from the cache: not seen in the last scrape.
        assert!(matches!(c.get(b"b", true), Lookup::Miss));
        // Third scrape: `a` again, nothing stale; fourth: `a` gone.
        let _ = c.get(b"a", true);
        assert!(stale_refs(&c).is_empty());
        c.iter_done(true);
        assert_eq!(stale_refs(&c), vec![1]);
    }

    #[test]
    fn untracked_hits_and_explicit_timestamps_are_not_stale() {
        let mut c = ScrapeCache::new();
        c.add(b"a", 1, l("a"), true);
        // A series with its own timestamp is never tracked.
        c.add(b"t", 2, l("t"), false);
        c.iter_done(true);
        assert!(matches!(c.get(b"a", true), Lookup::Hit { .. }));
        // The append of `a` failed (out of order): it is not appended in
        // this scrape, so it is stale.
        c.untrack(b"a");
        assert!(matches!(c.get(b"t", false), Lookup::Hit { .. }));
        assert_eq!(stale_refs(&c), vec![1]);
        c.iter_done(true);
        // `a` was not appended by the last scrape: not stale again.
        assert!(matches!(c.get(b"a", true), Lookup::Hit { .. }));
        assert!(matches!(c.get(b"t", false), Lookup::Hit { .. }));
        assert!(stale_refs(&c).is_empty());
        c.iter_done(true);
        assert_eq!(stale_refs(&c), vec![1]);
    }

    #[test]
    fn rollback_forgets_new_entries_and_tracks_nothing() {
        let mut c = ScrapeCache::new();
        c.add(b"a", 1, l("a"), true);
        c.add(b"c", 3, l("c"), true);
        c.add(b"old", 4, l("old"), true);
        c.iter_done(true);
        let _ = c.get(b"a", true);
        let _ = c.get(b"c", true);
        c.add(b"new", 5, l("new"), true);
        c.rollback_iteration();
        assert!(matches!(c.get(b"new", true), Lookup::Miss));
        // `a` and `c` keep their entries; all three of the previous scrape
        // are stale after the rollback.
        assert_eq!(stale_refs(&c), vec![1, 3, 4]);
        c.iter_done(false);
        // The next scrape appends `a` only: the rolled-back scrape appended
        // nothing, so nothing is stale again.
        assert!(matches!(c.get(b"a", true), Lookup::Hit { .. }));
        assert!(stale_refs(&c).is_empty());
        c.iter_done(true);
        assert_eq!(stale_refs(&c), vec![1]);
    }

    #[test]
    fn rollback_keeps_entries_seen_before() {
        let mut c = ScrapeCache::new();
        c.add(b"a", 1, l("a"), true);
        c.iter_done(true);
        // Seen but not appended in the previous scrape (failed scrape), then
        // a rollback: the entry stays, its tracking is restored.
        c.iter_done(false);
        let _ = c.get(b"a", true);
        c.rollback_iteration();
        assert!(matches!(
            c.get(b"a", true),
            Lookup::Hit { already: true, .. }
        ));
        assert!(stale_refs(&c).is_empty());
    }

    #[test]
    fn dropped_entries_and_forced_flush() {
        let mut c = ScrapeCache::new();
        c.add_dropped(b"x");
        assert!(matches!(c.get(b"x", true), Lookup::Dropped));
        assert!(matches!(c.get(b"y", true), Lookup::Miss));
        c.iter_done(true);
        for i in 0..1100u64 {
            c.add(format!("s{i}").as_bytes(), i + 1, l("s"), true);
        }
        assert!(c.iter_done(false), "growth past 2x+1000 forces a flush");
        // The flush keeps what this iteration saw and forgets the rest.
        assert_eq!(c.len(), 1100);
        assert!(matches!(c.get(b"x", true), Lookup::Miss));
        // A much smaller page later gives the table's memory back.
        c.iter_done(true);
        assert!(c.len() == 0 && c.entries.capacity() < 100);
        assert!(c.index.capacity() < 100);
    }

    #[test]
    fn lookups_after_removals_find_the_right_entries() {
        let mut c = ScrapeCache::new();
        for i in 0..300u64 {
            c.add(format!("s{i}").as_bytes(), i + 1, l(&format!("s{i}")), true);
        }
        c.iter_done(true);
        for i in (1..300u64).step_by(2) {
            assert!(matches!(
                c.get(format!("s{i}").as_bytes(), true),
                Lookup::Hit { .. }
            ));
        }
        c.iter_done(true);
        assert_eq!(c.len(), 150);
        for i in 0..300u64 {
            match c.get(format!("s{i}").as_bytes(), true) {
                Lookup::Hit {
                    series_ref, labels, ..
                } => {
                    assert_eq!(i % 2, 1);
                    assert_eq!(series_ref, i + 1);
                    assert_eq!(labels, l(&format!("s{i}")));
                }
                Lookup::Miss => assert_eq!(i % 2, 0),
                Lookup::Dropped => panic!("nothing dropped"),
            }
        }
        // New entries after the re-indexing are found too.
        c.add(b"new", 1000, l("new"), true);
        assert!(matches!(
            c.get(b"new", true),
            Lookup::Hit {
                series_ref: 1000,
                ..
            }
        ));
        assert!(matches!(
            c.get(b"s299", true),
            Lookup::Hit {
                series_ref: 300,
                ..
            }
        ));
    }

    #[test]
    fn entries_stay_small() {
        assert!(std::mem::size_of::<CacheEntry>() <= 56);
    }
}
