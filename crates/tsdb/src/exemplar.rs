//! Circular exemplar storage, the semantics of Prometheus's
//! `tsdb/exemplar.go` (2.x rules: an exemplar must be newer than the newest
//! one of its series).
//!
//! All exemplars of all series share one fixed-size ring of slots, so the
//! memory used is bounded by configuration (`storage.exemplars.max_exemplars`)
//! whatever the number of series: a new exemplar overwrites the oldest one
//! of the whole storage. Each slot links to the next newer exemplar of the
//! same series, and a per-series index entry holds its oldest and newest
//! slots, so one series' exemplars are walked without scanning the ring.
//! Because slots are reused in insertion order, the slot being overwritten
//! is always the oldest of its series: unlinking it only moves that series'
//! `oldest` forward (no back links needed).
//!
//! A size of 0 disables the storage (every append answers
//! [`AppendError::ExemplarsDisabled`]). Resizing keeps the newest exemplars
//! that fit.

use std::collections::HashMap;
use std::fmt::Write as _;

use parking_lot::RwLock;
use pharos_model::{Labels, Matcher, Timestamp, format_float};
use pharos_storage::{
    AppendError, EXEMPLAR_MAX_LABEL_SET_LENGTH, Exemplar, SeriesExemplars, StorageError,
};

use crate::head::HeadInner;
use crate::record::ExemplarRecord;

/// Prometheus's default `storage.exemplars.max_exemplars`.
pub const DEFAULT_MAX_EXEMPLARS: usize = 100_000;

const NONE: usize = usize::MAX;

#[derive(Debug, Clone)]
struct Slot {
    ex: Exemplar,
    /// Next newer slot of the same series, or `NONE`.
    next: usize,
    /// Index entry (in `series`) of the owning series.
    series: usize,
}

#[derive(Debug, Clone)]
struct SeriesEntry {
    labels: Labels,
    oldest: usize,
    newest: usize,
}

#[derive(Debug, Default)]
struct Ring {
    slots: Vec<Option<Slot>>,
    next_index: usize,
    series: Vec<Option<SeriesEntry>>,
    free_series: Vec<usize>,
    index: HashMap<Labels, usize>,
    stored: usize,
    appended: u64,
    out_of_order: u64,
}

impl Ring {
    fn with_size(n: usize) -> Ring {
        Ring {
            slots: vec![None; n],
            ..Ring::default()
        }
    }

    fn validate(&self, idx: Option<usize>, e: &Exemplar) -> Result<(), AppendError> {
        if self.slots.is_empty() {
            return Err(AppendError::ExemplarsDisabled);
        }
        let len: usize = e
            .labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if len > EXEMPLAR_MAX_LABEL_SET_LENGTH {
            return Err(AppendError::ExemplarLabelLength);
        }
        let Some(i) = idx else { return Ok(()) };
        let Some(se) = &self.series[i] else {
            panic!("BUG: exemplar index points at a free series entry");
        };
        let Some(newest) = &self.slots[se.newest] else {
            panic!("BUG: exemplar series entry points at an empty slot");
        };
        if newest.ex.same_as(e) {
            return Err(AppendError::DuplicateExemplar);
        }
        if e.ts <= newest.ex.ts {
            return Err(AppendError::OutOfOrderExemplar);
        }
        Ok(())
    }

    /// Frees slot `at` (the oldest of its series) and returns it.
    fn evict(&mut self, at: usize) {
        let Some(old) = self.slots[at].take() else {
            return;
        };
        self.stored -= 1;
        let drop_series = match &mut self.series[old.series] {
            Some(se) if old.next == NONE => {
                let _ = se;
                true
            }
            Some(se) => {
                se.oldest = old.next;
                false
            }
            None => panic!("BUG: exemplar slot of a free series entry"),
        };
        if drop_series && let Some(se) = self.series[old.series].take() {
            self.index.remove(&se.labels);
            self.free_series.push(old.series);
        }
    }

    fn add(&mut self, series: &Labels, e: Exemplar) -> Result<(), AppendError> {
        let idx = self.index.get(series).copied();
        if let Err(err) = self.validate(idx, &e) {
            if err == AppendError::OutOfOrderExemplar {
                self.out_of_order += 1;
            }
            return Err(err);
        }
        let at = self.next_index;
        self.evict(at);
        // The evicted slot may have been this series' last one.
        let idx = self.index.get(series).copied();
        let si = match idx {
            Some(i) => {
                let Some(se) = &mut self.series[i] else {
                    panic!("BUG: exemplar index points at a free series entry");
                };
                let prev = se.newest;
                se.newest = at;
                if let Some(p) = &mut self.slots[prev] {
                    p.next = at;
                }
                i
            }
            None => {
                let entry = SeriesEntry {
                    labels: series.clone(),
                    oldest: at,
                    newest: at,
                };
                let i = match self.free_series.pop() {
                    Some(i) => {
                        self.series[i] = Some(entry);
                        i
                    }
                    None => {
                        self.series.push(Some(entry));
                        self.series.len() - 1
                    }
                };
                self.index.insert(series.clone(), i);
                i
            }
        };
        self.slots[at] = Some(Slot {
            ex: e,
            next: NONE,
            series: si,
        });
        self.stored += 1;
        self.appended += 1;
        self.next_index = (at + 1) % self.slots.len();
        Ok(())
    }

    /// Every stored exemplar with its series, oldest first.
    fn drain_in_order(&mut self) -> Vec<(Labels, Exemplar)> {
        let n = self.slots.len();
        let mut out = Vec::with_capacity(self.stored);
        for k in 0..n {
            let i = (self.next_index + k) % n;
            if let Some(s) = self.slots[i].take() {
                let Some(se) = &self.series[s.series] else {
                    panic!("BUG: exemplar slot of a free series entry");
                };
                out.push((se.labels.clone(), s.ex));
            }
        }
        out
    }
}

/// Figures of an [`ExemplarStorage`], exported as Prometheus's
/// `prometheus_tsdb_exemplar_*` metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExemplarStats {
    /// Exemplars appended since start.
    pub appended: u64,
    /// Exemplars in the ring now.
    pub in_storage: u64,
    /// Series with at least one exemplar in the ring.
    pub series_in_storage: u64,
    /// Timestamp (ms) of the oldest stored exemplar, if any.
    pub oldest_ts: Option<Timestamp>,
    /// Out-of-order exemplars refused at commit.
    pub out_of_order: u64,
    /// Ring size.
    pub max_exemplars: u64,
}

/// The exemplar storage: a ring of `max_exemplars` slots shared by all
/// series. Thread-safe; cheap reads under a read lock.
#[derive(Debug, Default)]
pub struct ExemplarStorage {
    ring: RwLock<Ring>,
}

impl ExemplarStorage {
    /// A storage of `max_exemplars` slots (0: disabled).
    pub fn new(max_exemplars: usize) -> ExemplarStorage {
        ExemplarStorage {
            ring: RwLock::new(Ring::with_size(max_exemplars)),
        }
    }

    /// Ring size (0 when disabled).
    pub fn max_exemplars(&self) -> usize {
        self.ring.read().slots.len()
    }

    /// Whether exemplars are stored at all.
    pub fn enabled(&self) -> bool {
        self.max_exemplars() > 0
    }

    /// Checks `e` against the newest exemplar of `series` without storing
    /// it: [`AppendError::DuplicateExemplar`], [`AppendError::OutOfOrderExemplar`],
    /// [`AppendError::ExemplarLabelLength`] or
    /// [`AppendError::ExemplarsDisabled`].
    pub fn validate(&self, series: &Labels, e: &Exemplar) -> Result<(), AppendError> {
        let r = self.ring.read();
        r.validate(r.index.get(series).copied(), e)
    }

    /// Stores `e` for `series` (same checks as [`ExemplarStorage::validate`]),
    /// overwriting the oldest exemplar of the storage when it is full.
    pub fn add(&self, series: &Labels, e: Exemplar) -> Result<(), AppendError> {
        self.ring.write().add(series, e)
    }

    /// Changes the ring size, keeping the newest exemplars that fit (all of
    /// them when growing). Returns how many were kept. Size 0 disables.
    pub fn resize(&self, max_exemplars: usize) -> usize {
        let mut r = self.ring.write();
        if r.slots.len() == max_exemplars {
            return r.stored;
        }
        let (appended, ooo) = (r.appended, r.out_of_order);
        let all = r.drain_in_order();
        let mut fresh = Ring::with_size(max_exemplars);
        let skip = all.len().saturating_sub(max_exemplars);
        for (l, e) in all.into_iter().skip(skip) {
            // Re-adding in order cannot fail: each series' chain was valid.
            let _ = fresh.add(&l, e);
        }
        fresh.appended = appended;
        fresh.out_of_order = ooo;
        let kept = fresh.stored;
        *r = fresh;
        kept
    }

    /// Current figures.
    pub fn stats(&self) -> ExemplarStats {
        let r = self.ring.read();
        let oldest_ts = (0..r.slots.len())
            .map(|k| (r.next_index + k) % r.slots.len())
            .find_map(|i| r.slots[i].as_ref().map(|s| s.ex.ts));
        ExemplarStats {
            appended: r.appended,
            in_storage: r.stored as u64,
            series_in_storage: r.index.len() as u64,
            oldest_ts,
            out_of_order: r.out_of_order,
            max_exemplars: r.slots.len() as u64,
        }
    }

    /// Exemplars with `start <= ts <= end` of series matching any of the
    /// matcher sets, sorted by series labels, each series' oldest first.
    pub fn select(
        &self,
        start: Timestamp,
        end: Timestamp,
        matcher_sets: &[Vec<Matcher>],
    ) -> Vec<SeriesExemplars> {
        let r = self.ring.read();
        let mut out = Vec::new();
        for se in r.series.iter().flatten() {
            let matches = matcher_sets.iter().any(|ms| {
                ms.iter()
                    .all(|m| m.matches(se.labels.get(&m.name).unwrap_or("")))
            });
            if !matches {
                continue;
            }
            let mut got = Vec::new();
            let mut i = se.oldest;
            while i != NONE {
                let Some(s) = &r.slots[i] else {
                    panic!("BUG: exemplar chain reaches an empty slot");
                };
                if s.ex.ts > end {
                    break;
                }
                if s.ex.ts >= start {
                    got.push(s.ex.clone());
                }
                i = s.next;
            }
            if !got.is_empty() {
                out.push((se.labels.clone(), got));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Writes the `prometheus_tsdb_exemplar_*` metrics (text format).
    pub fn write_metrics(&self, out: &mut String) {
        let s = self.stats();
        let oldest = s.oldest_ts.map_or(0.0, |t| t as f64 / 1000.0);
        let rows: [(&str, &str, &str, f64); 6] = [
            (
                "prometheus_tsdb_exemplar_exemplars_appended_total",
                "counter",
                "Total number of appended exemplars.",
                s.appended as f64,
            ),
            (
                "prometheus_tsdb_exemplar_exemplars_in_storage",
                "gauge",
                "Number of exemplars currently in circular storage.",
                s.in_storage as f64,
            ),
            (
                "prometheus_tsdb_exemplar_series_with_exemplars_in_storage",
                "gauge",
                "Number of series with exemplars currently in circular storage.",
                s.series_in_storage as f64,
            ),
            (
                "prometheus_tsdb_exemplar_last_exemplars_timestamp_seconds",
                "gauge",
                "The timestamp of the oldest exemplar stored in circular storage.",
                oldest,
            ),
            (
                "prometheus_tsdb_exemplar_out_of_order_exemplars_total",
                "counter",
                "Total number of out of order exemplar ingestion failed attempts.",
                s.out_of_order as f64,
            ),
            (
                "prometheus_tsdb_exemplar_max_exemplars",
                "gauge",
                "Total number of exemplars the exemplar storage can store, resizeable.",
                s.max_exemplars as f64,
            ),
        ];
        for (name, typ, help, v) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {typ}");
            let _ = writeln!(out, "{name} {}", format_float(v));
        }
    }
}

/// An exemplar buffered by a head appender: its series' labels, its WAL
/// record and the exemplar itself.
pub(crate) type PendingExemplar = (Labels, ExemplarRecord, Exemplar);

/// The head appender's `append_exemplar`: checks the exemplar against the
/// storage (as Prometheus's `ValidateExemplar`) and buffers it until commit.
/// The series must exist (normally appended to just before).
pub(crate) fn append_pending(
    head: &HeadInner,
    pending: &mut Vec<PendingExemplar>,
    series_ref: u64,
    labels: &Labels,
    e: Exemplar,
) -> Result<u64, AppendError> {
    let store = head.exemplar_storage();
    if !store.enabled() {
        // Storage off: dropped, as Prometheus does without the feature.
        return Ok(series_ref);
    }
    let Some(series) = head.series_labels(series_ref) else {
        return Err(AppendError::InvalidLabels(format!(
            "unknown series reference {series_ref} for exemplar of {labels}"
        )));
    };
    match store.validate(&series, &e) {
        // Scrapes repeat the last exemplar: not an error, not stored (as
        // Prometheus's head appender).
        Err(AppendError::DuplicateExemplar) => return Ok(series_ref),
        r => r?,
    }
    pending.push((
        series,
        ExemplarRecord {
            series_ref,
            t: e.ts,
            v: e.value,
            labels: e.labels.clone(),
        },
        e,
    ));
    Ok(series_ref)
}

/// After the samples of a commit: logs its exemplars to the commit log
/// (one exemplars record) and stores them. Exemplars refused now (another
/// appender stored a newer one meanwhile) are dropped, as in Prometheus.
pub(crate) fn commit_pending(
    head: &HeadInner,
    pending: Vec<PendingExemplar>,
) -> Result<(), StorageError> {
    if pending.is_empty() {
        return Ok(());
    }
    if let Some(log) = head.commit_log() {
        let recs: Vec<ExemplarRecord> = pending.iter().map(|p| p.1.clone()).collect();
        log.log_exemplars(&recs)?;
    }
    let store = head.exemplar_storage();
    for (series, _, e) in pending {
        if let Err(err) = store.add(&series, e) {
            tracing::debug!(error = %err, series = %series, "exemplar dropped at commit");
        }
    }
    Ok(())
}

/// Replays logged exemplars into `store` (series references already mapped
/// to the head's); exemplars of unknown series or refused ones are dropped.
/// Returns how many were stored.
pub(crate) fn replay(
    head: &crate::head::Head,
    recs: Vec<ExemplarRecord>,
    alias: impl Fn(u64) -> u64,
) -> u64 {
    let store = head.exemplars();
    if !store.enabled() {
        return 0;
    }
    let mut n = 0;
    for r in recs {
        let Some(series) = head.series_labels(alias(r.series_ref)) else {
            continue;
        };
        let e = Exemplar {
            labels: r.labels,
            value: r.v,
            ts: r.t,
            has_ts: false,
        };
        if store.add(&series, e).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pharos_model::MatchOp;

    fn ls(name: &str) -> Labels {
        Labels::from_pairs(&[("__name__", name)])
    }

    fn ex(trace: &str, v: f64, ts: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs(&[("trace_id", trace)]),
            value: v,
            ts,
            has_ts: true,
        }
    }

    fn all(s: &ExemplarStorage) -> Vec<SeriesExemplars> {
        let m = Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap();
        s.select(i64::MIN, i64::MAX, &[vec![m]])
    }

    fn times(r: &[SeriesExemplars], name: &str) -> Vec<i64> {
        r.iter()
            .find(|(l, _)| l.metric_name() == Some(name))
            .map(|(_, v)| v.iter().map(|e| e.ts).collect())
            .unwrap_or_default()
    }

    #[test]
    fn disabled_at_size_zero() {
        let s = ExemplarStorage::new(0);
        assert_eq!(
            s.add(&ls("a"), ex("x", 1.0, 1)),
            Err(AppendError::ExemplarsDisabled)
        );
        assert!(all(&s).is_empty());
    }

    #[test]
    fn per_series_chains_and_wraparound() {
        let s = ExemplarStorage::new(5);
        for t in 1..=3 {
            s.add(&ls("a"), ex("x", 1.0, t)).unwrap();
            s.add(&ls("b"), ex("y", 2.0, t * 10)).unwrap();
        }
        // 6 added into 5 slots: a@1 (the oldest) is gone.
        let r = all(&s);
        assert_eq!(times(&r, "a"), vec![2, 3]);
        assert_eq!(times(&r, "b"), vec![10, 20, 30]);
        let st = s.stats();
        assert_eq!(st.in_storage, 5);
        assert_eq!(st.appended, 6);
        assert_eq!(st.series_in_storage, 2);
        assert_eq!(st.oldest_ts, Some(10));
        // Series b fills the ring: a disappears from the index entirely.
        for t in 4..=8 {
            s.add(&ls("b"), ex("y", 2.0, t * 10)).unwrap();
        }
        let r = all(&s);
        assert_eq!(times(&r, "a"), Vec::<i64>::new());
        assert_eq!(times(&r, "b"), vec![40, 50, 60, 70, 80]);
        assert_eq!(s.stats().series_in_storage, 1);
        // a comes back with a fresh chain.
        s.add(&ls("a"), ex("x", 1.0, 100)).unwrap();
        assert_eq!(times(&all(&s), "a"), vec![100]);
    }

    #[test]
    fn duplicates_out_of_order_and_label_length() {
        let s = ExemplarStorage::new(10);
        s.add(&ls("a"), ex("x", 1.0, 5)).unwrap();
        assert_eq!(
            s.add(&ls("a"), ex("x", 1.0, 5)),
            Err(AppendError::DuplicateExemplar)
        );
        assert_eq!(
            s.validate(&ls("a"), &ex("x", 1.0, 5)),
            Err(AppendError::DuplicateExemplar)
        );
        assert_eq!(
            s.add(&ls("a"), ex("z", 2.0, 4)),
            Err(AppendError::OutOfOrderExemplar)
        );
        assert_eq!(
            s.add(&ls("a"), ex("z", 2.0, 5)),
            Err(AppendError::OutOfOrderExemplar)
        );
        assert_eq!(s.stats().out_of_order, 2);
        // Another series is independent.
        s.add(&ls("b"), ex("z", 2.0, 1)).unwrap();
        let long = "é".repeat(120);
        let e = Exemplar {
            labels: Labels::from_pairs(&[("trace_id", long.as_str())]),
            value: 1.0,
            ts: 9,
            has_ts: true,
        };
        // 8 + 120 characters (not bytes) = 128: accepted.
        s.add(&ls("a"), e.clone()).unwrap();
        let e2 = Exemplar {
            ts: 10,
            labels: Labels::from_pairs(&[("trace_idx", long.as_str())]),
            ..e
        };
        assert_eq!(s.add(&ls("a"), e2), Err(AppendError::ExemplarLabelLength));
        // Without timestamps, equal labels and value are duplicates.
        let mut a = ex("q", 3.0, 20);
        a.has_ts = false;
        s.add(&ls("c"), a.clone()).unwrap();
        a.ts = 35;
        assert_eq!(s.add(&ls("c"), a), Err(AppendError::DuplicateExemplar));
    }

    #[test]
    fn select_filters_time_and_matchers() {
        let s = ExemplarStorage::new(10);
        for t in 1..=4 {
            s.add(&ls("a"), ex("x", 1.0, t)).unwrap();
            s.add(&ls("b"), ex("x", 1.0, t)).unwrap();
        }
        let r = s.select(2, 3, &[vec![Matcher::equal("__name__", "b")]]);
        assert_eq!(r.len(), 1);
        assert_eq!(times(&r, "b"), vec![2, 3]);
        let r = s.select(
            0,
            10,
            &[
                vec![Matcher::equal("__name__", "b")],
                vec![Matcher::equal("__name__", "a")],
            ],
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0.metric_name(), Some("a"));
        assert!(
            s.select(5, 10, &[vec![Matcher::equal("__name__", "a")]])
                .is_empty()
        );
    }

    #[test]
    fn head_appender_commit_wal_and_replay() {
        use crate::head::HeadOptions;
        use crate::wal::{WalOptions, open_head};
        use pharos_storage::{Appendable, ExemplarQueryable};
        let dir = tempfile::tempdir().unwrap();
        let hopts = || HeadOptions {
            max_exemplars: 16,
            ..HeadOptions::default()
        };
        let m = [vec![Matcher::equal("__name__", "a")]];
        {
            let (head, hw) = open_head(dir.path(), hopts(), WalOptions::default()).unwrap();
            let mut app = head.appender();
            let r = app.append(0, &ls("a"), 1000, 1.0).unwrap();
            app.append_exemplar(r, &ls("a"), ex("t1", 0.5, 900))
                .unwrap();
            // Not visible before commit.
            assert!(head.select_exemplars(0, 10_000, &m).unwrap().is_empty());
            app.commit().unwrap();
            let mut app = head.appender();
            app.append(r, &ls("a"), 2000, 2.0).unwrap();
            // A duplicate is dropped without an error.
            assert_eq!(app.append_exemplar(r, &ls("a"), ex("t1", 0.5, 900)), Ok(r));
            assert_eq!(
                app.append_exemplar(r, &ls("a"), ex("t0", 0.5, 800)),
                Err(AppendError::OutOfOrderExemplar)
            );
            assert!(
                app.append_exemplar(12345, &ls("zz"), ex("t", 1.0, 1))
                    .is_err()
            );
            app.append_exemplar(r, &ls("a"), ex("t2", 1.5, 1900))
                .unwrap();
            app.commit().unwrap();
            // A rolled-back exemplar is not stored.
            let mut app = head.appender();
            app.append(r, &ls("a"), 3000, 2.0).unwrap();
            app.append_exemplar(r, &ls("a"), ex("t3", 1.5, 2900))
                .unwrap();
            app.rollback();
            let got = head.select_exemplars(0, 10_000, &m).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].1.len(), 2);
            hw.close().unwrap();
        }
        let (head, _hw) = open_head(dir.path(), hopts(), WalOptions::default()).unwrap();
        let got = head.select_exemplars(0, 10_000, &m).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, ls("a"));
        let ts: Vec<i64> = got[0].1.iter().map(|e| e.ts).collect();
        assert_eq!(ts, vec![900, 1900]);
        assert_eq!(
            got[0].1[1].labels,
            Labels::from_pairs(&[("trace_id", "t2")])
        );
        assert_eq!(got[0].1[1].value, 1.5);
        // Disabled storage: appends are dropped silently, replay stores none.
        let dir2 = tempfile::tempdir().unwrap();
        let (head, _hw) =
            open_head(dir2.path(), HeadOptions::default(), WalOptions::default()).unwrap();
        let mut app = head.appender();
        let r = app.append(0, &ls("a"), 1000, 1.0).unwrap();
        assert_eq!(app.append_exemplar(r, &ls("a"), ex("t", 1.0, 1)), Ok(r));
        app.commit().unwrap();
        assert!(head.select_exemplars(0, 10_000, &m).unwrap().is_empty());
    }

    #[test]
    fn resize_keeps_newest() {
        let s = ExemplarStorage::new(4);
        for t in 1..=6 {
            let name = if t % 2 == 0 { "a" } else { "b" };
            s.add(&ls(name), ex("x", 1.0, t)).unwrap();
        }
        // Ring holds 3..=6.
        assert_eq!(s.resize(8), 4);
        assert_eq!(s.stats().max_exemplars, 8);
        let r = all(&s);
        assert_eq!(times(&r, "a"), vec![4, 6]);
        assert_eq!(times(&r, "b"), vec![3, 5]);
        for t in 7..=10 {
            s.add(&ls("a"), ex("x", 1.0, t)).unwrap();
        }
        assert_eq!(s.stats().in_storage, 8);
        assert_eq!(s.resize(3), 3);
        let r = all(&s);
        assert_eq!(times(&r, "a"), vec![8, 9, 10]);
        assert!(times(&r, "b").is_empty());
        assert_eq!(s.stats().series_in_storage, 1);
        // New appends continue correctly after a shrink.
        s.add(&ls("b"), ex("x", 1.0, 11)).unwrap();
        assert_eq!(times(&all(&s), "a"), vec![9, 10]);
        assert_eq!(s.resize(0), 0);
        assert!(!s.enabled());
        assert_eq!(s.stats().appended, 11);
    }
}
