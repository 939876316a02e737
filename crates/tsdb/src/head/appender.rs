//! The head's append transaction.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use pharos_model::{HistogramValue, Labels, Timestamp};
use pharos_storage::{AppendError, Appender, Exemplar, SeriesRef, StorageError};

use super::series::{Check, MemSeries, SeriesState, histogram_digest};
use super::{CommitBatch, HeadInner, SampleRecord, SeriesRecord};
use crate::record::HistogramRecord;

/// A sample buffered by an appender.
pub(crate) struct PendingSample {
    /// Copy of `series.sref`, so sorting does not touch the series.
    sref: u64,
    series: Arc<MemSeries>,
    t: Timestamp,
    v: f64,
}

/// A histogram sample buffered by an appender.
pub(crate) struct PendingHistogram {
    sref: u64,
    series: Arc<MemSeries>,
    t: Timestamp,
    h: HistogramValue,
    /// Float samples the transaction had buffered before this one: its
    /// place in append order.
    floats_before: usize,
}

/// Splits a transaction's samples, in append order, into log batches
/// within which every series has samples of one kind (see
/// [`super::CommitLog::log_with_histograms`]). `samples` and `hists` are
/// in append order (not yet grouped by series).
fn split_batches(samples: &[PendingSample], hists: &[PendingHistogram]) -> Vec<CommitBatch> {
    let mut out = Vec::new();
    let mut cur = CommitBatch::default();
    // Kind (true: histogram) of each series in the current batch.
    let mut kinds: std::collections::HashMap<u64, bool> = std::collections::HashMap::new();
    let mut add = |cur: &mut CommitBatch, sref: u64, hist: bool| {
        if kinds.insert(sref, hist).is_some_and(|k| k != hist) {
            out.push(std::mem::take(cur));
            kinds.clear();
            kinds.insert(sref, hist);
        }
    };
    let mut j = 0;
    for i in 0..=samples.len() {
        while let Some(h) = hists.get(j).filter(|h| h.floats_before <= i) {
            add(&mut cur, h.sref, true);
            cur.histograms.push(HistogramRecord {
                series_ref: h.sref,
                t: h.t,
                h: h.h.clone(),
            });
            j += 1;
        }
        if let Some(p) = samples.get(i) {
            add(&mut cur, p.sref, false);
            cur.samples.push(SampleRecord {
                series_ref: p.sref,
                t: p.t,
                v: p.v,
            });
        }
    }
    out.push(cur);
    out
}

/// Why a histogram cannot be stored, checked before it is buffered so the
/// chunk encoder never sees a malformed one.
pub(crate) fn validate_histogram(h: &HistogramValue) -> Result<(), String> {
    use pharos_model::CUSTOM_BUCKETS_SCHEMA;
    use pharos_model::Span;
    fn side(what: &str, spans: &[Span], buckets: usize) -> Result<(), String> {
        let n: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
        if n != buckets as u64 {
            return Err(format!(
                "{what} spans cover {n} buckets but {buckets} counts are given"
            ));
        }
        Ok(())
    }
    let (schema, ps, pb, ns, nb, cv) = match h {
        HistogramValue::Int(h) => (
            h.schema,
            &h.positive_spans,
            h.positive_buckets.len(),
            &h.negative_spans,
            h.negative_buckets.len(),
            &h.custom_values,
        ),
        HistogramValue::Float(h) => (
            h.schema,
            &h.positive_spans,
            h.positive_buckets.len(),
            &h.negative_spans,
            h.negative_buckets.len(),
            &h.custom_values,
        ),
    };
    if !((-4..=8).contains(&schema) || schema == CUSTOM_BUCKETS_SCHEMA) {
        return Err(format!("unknown schema {schema}"));
    }
    side("positive", ps, pb)?;
    side("negative", ns, nb)?;
    if schema == CUSTOM_BUCKETS_SCHEMA {
        if nb > 0 || !ns.is_empty() {
            return Err("custom buckets cannot have negative buckets".into());
        }
        if !cv.windows(2).all(|w| w[0] < w[1]) {
            return Err("custom bucket bounds are not increasing".into());
        }
    } else if !cv.is_empty() {
        return Err("custom bucket bounds given for an exponential schema".into());
    }
    Ok(())
}

/// Applies one series' committed samples, floats and histograms merged by
/// timestamp (each run is in append order, and an appender only buffers
/// samples newer than the series' previous one, so that is time order).
/// Adds what happened to `c`.
fn apply_mixed(
    st: &mut SeriesState,
    floats: &[PendingSample],
    hists: &[PendingHistogram],
    max_samples: u16,
    chunk_range: i64,
    c: &mut ApplyCounts,
) {
    let (mut i, mut j) = (0, 0);
    while i < floats.len() || j < hists.len() {
        let take_float = match (floats.get(i), hists.get(j)) {
            (Some(f), Some(h)) => f.t <= h.t,
            (Some(_), None) => true,
            _ => false,
        };
        let (t, r) = if take_float {
            let p = &floats[i];
            i += 1;
            // A stale marker stored as a histogram counts as one.
            let as_hist = st.stale_histogram_for(p.v).is_some();
            let r = st.append(p.t, p.v, max_samples, chunk_range);
            c.hist_appended += u64::from(as_hist && r.is_ok());
            (p.t, r)
        } else {
            let p = &hists[j];
            j += 1;
            let r = st.append_histogram(p.t, &p.h, max_samples, chunk_range);
            c.hist_appended += u64::from(r.is_ok());
            (p.t, r)
        };
        c.record(t, r);
    }
}

/// What applying committed samples did.
pub(crate) struct ApplyCounts {
    pub(crate) appended: u64,
    pub(crate) ooo: u64,
    pub(crate) dup: u64,
    pub(crate) invalid: u64,
    pub(crate) hist_appended: u64,
    pub(crate) chunks: u64,
    pub(crate) mint: Timestamp,
    pub(crate) maxt: Timestamp,
}

impl ApplyCounts {
    fn new() -> ApplyCounts {
        ApplyCounts {
            appended: 0,
            ooo: 0,
            dup: 0,
            invalid: 0,
            hist_appended: 0,
            chunks: 0,
            mint: i64::MAX,
            maxt: i64::MIN,
        }
    }

    fn record(&mut self, t: Timestamp, r: Result<bool, Check>) {
        match r {
            Ok(cut) => {
                self.appended += 1;
                self.chunks += u64::from(cut);
                self.mint = self.mint.min(t);
                self.maxt = self.maxt.max(t);
            }
            Err(Check::OutOfOrder) => self.ooo += 1,
            Err(Check::Duplicate) => self.dup += 1,
            Err(Check::Invalid) => self.invalid += 1,
            Err(Check::NoOp | Check::Ok) => {}
        }
    }
}

/// One append transaction on the head. See [`pharos_storage::Appender`].
///
/// `append` validates against the series' newest committed sample (and the
/// transaction's own previous sample of that series) and buffers; `commit`
/// logs the batch to the commit log, if any, then applies it series by
/// series.
pub(crate) struct HeadAppender<'a> {
    head: &'a HeadInner,
    txn: u64,
    min_valid: Timestamp,
    samples: Vec<PendingSample>,
    /// Histogram samples, kept apart so float samples stay small.
    histograms: Vec<PendingHistogram>,
    /// Exemplars, stored (and logged) after the samples are committed.
    exemplars: Vec<(Labels, crate::record::ExemplarRecord, Exemplar)>,
    finished: bool,
}

impl<'a> HeadAppender<'a> {
    pub(crate) fn new(head: &'a HeadInner) -> HeadAppender<'a> {
        head.counters.active_appenders.fetch_add(1, Relaxed);
        let txn = head.next_txn.fetch_add(1, Relaxed);
        HeadAppender {
            head,
            txn,
            min_valid: head.appendable_min_valid_time(),
            samples: head.take_buffer(),
            histograms: Vec::new(),
            exemplars: Vec::new(),
            finished: false,
        }
    }

    /// Undoes the pending counts of `samples` (and `hists`) and drops
    /// series that only this batch kept alive.
    fn release(&self, samples: &[PendingSample], hists: &[PendingHistogram]) {
        let mut empty: Vec<&Arc<MemSeries>> = Vec::new();
        let groups = samples
            .chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series))
            .map(|g| (&g[0].series, g.len()))
            .chain(
                hists
                    .chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series))
                    .map(|g| (&g[0].series, g.len())),
            );
        for (s, n) in groups {
            let mut st = s.state.lock();
            st.pending_samples = st.pending_samples.saturating_sub(n as u32);
            if st.pending_samples == 0 && st.head.is_none() && !st.removed {
                empty.push(s);
            }
        }
        for s in empty {
            if self.head.series.remove_if_empty(s) {
                self.head.counters.series_removed.fetch_add(1, Relaxed);
            }
        }
    }

    fn rollback_inner(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let samples = std::mem::take(&mut self.samples);
        let hists = std::mem::take(&mut self.histograms);
        self.release(&samples, &hists);
        self.head.return_buffer(samples);
    }

    fn commit_inner(&mut self) -> Result<(), StorageError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let mut samples = std::mem::take(&mut self.samples);
        let mut hists = std::mem::take(&mut self.histograms);
        if samples.is_empty() && hists.is_empty() {
            self.head.return_buffer(samples);
            return Ok(());
        }
        // A series switching between floats and histograms in this
        // transaction: the log gets the samples in append order, in batches
        // (computed before the grouping below reorders them).
        let mixed_batches = if hists.is_empty() || self.head.opts.commit_log.is_none() {
            None
        } else {
            let hs: std::collections::HashSet<u64> = hists.iter().map(|h| h.sref).collect();
            samples
                .iter()
                .any(|p| hs.contains(&p.sref))
                .then(|| split_batches(&samples, &hists))
        };
        // Group each series' samples (stable, so their order is kept): a
        // series is then locked once and its samples become visible together.
        if !samples.is_sorted_by_key(|s| s.sref) {
            samples.sort_by_key(|s| s.sref);
        }
        if !hists.is_sorted_by_key(|s| s.sref) {
            hists.sort_by_key(|s| s.sref);
        }

        // The write-ahead log goes here: everything is logged before any
        // sample becomes visible, and a failed write aborts the commit.
        if let Some(log) = &self.head.opts.commit_log {
            let mut series = Vec::new();
            let mut recs = Vec::with_capacity(samples.len());
            let mut logged_new = |s: &Arc<MemSeries>| {
                if !s.state.lock().indexed {
                    series.push(SeriesRecord {
                        series_ref: s.sref,
                        labels: s.labels.clone(),
                    });
                }
            };
            for group in samples.chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series)) {
                let s = &group[0].series;
                logged_new(s);
                recs.extend(group.iter().map(|p| SampleRecord {
                    series_ref: s.sref,
                    t: p.t,
                    v: p.v,
                }));
            }
            let res = if hists.is_empty() {
                log.log(&series, &recs)
            } else {
                let mut hrecs = Vec::with_capacity(hists.len());
                for group in hists.chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series)) {
                    let s = &group[0].series;
                    if samples.binary_search_by_key(&s.sref, |p| p.sref).is_err() {
                        logged_new(s);
                    }
                    hrecs.extend(group.iter().map(|p| HistogramRecord {
                        series_ref: s.sref,
                        t: p.t,
                        h: p.h.clone(),
                    }));
                }
                match mixed_batches {
                    Some(batches) => log.log_with_histograms(&series, &batches),
                    None => log.log_with_histograms(
                        &series,
                        &[CommitBatch {
                            samples: recs,
                            histograms: hrecs,
                        }],
                    ),
                }
            };
            if let Err(e) = res {
                self.release(&samples, &hists);
                self.head.return_buffer(samples);
                return Err(e);
            }
        }

        let head = self.head;
        let opts = &head.opts;
        let _no_gc = head.gc_lock.read();
        let mut c = ApplyCounts::new();
        let mut new_series: Vec<&Arc<MemSeries>> = Vec::new();
        let mut cut_series: Vec<Arc<MemSeries>> = Vec::new();
        let mut finish = |s: &Arc<MemSeries>, st: &mut SeriesState, closed_before: usize| {
            if st.closed.len() > closed_before {
                cut_series.push(s.clone());
            }
            if st.head.is_some() && !st.indexed {
                st.indexed = true;
                true
            } else {
                false
            }
        };
        if hists.is_empty() {
            for group in samples.chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series)) {
                let s = &group[0].series;
                let mut st = s.state.lock();
                st.pending_samples = st.pending_samples.saturating_sub(group.len() as u32);
                let closed_before = st.closed.len();
                for p in group {
                    // A stale marker stored as a histogram counts as one.
                    let as_hist = st.stale_histogram_for(p.v).is_some();
                    let r = st.append(p.t, p.v, opts.max_samples_per_chunk, opts.chunk_range);
                    c.hist_appended += u64::from(as_hist && r.is_ok());
                    c.record(p.t, r);
                }
                if finish(s, &mut st, closed_before) {
                    new_series.push(s);
                }
                drop(st);
            }
        } else {
            // Walk both sorted lists series by series.
            let fgroups: Vec<&[PendingSample]> = samples
                .chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series))
                .collect();
            let hgroups: Vec<&[PendingHistogram]> = hists
                .chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series))
                .collect();
            let (mut i, mut j) = (0, 0);
            while i < fgroups.len() || j < hgroups.len() {
                let fr = fgroups.get(i).map(|g| g[0].sref);
                let hr = hgroups.get(j).map(|g| g[0].sref);
                let (f, h): (&[PendingSample], &[PendingHistogram]) = match (fr, hr) {
                    (Some(a), Some(b)) if a == b => {
                        i += 1;
                        j += 1;
                        (fgroups[i - 1], hgroups[j - 1])
                    }
                    (Some(a), Some(b)) if a < b => {
                        i += 1;
                        (fgroups[i - 1], &[])
                    }
                    (Some(_), None) => {
                        i += 1;
                        (fgroups[i - 1], &[])
                    }
                    _ => {
                        j += 1;
                        (&[], hgroups[j - 1])
                    }
                };
                let s = match (f.first(), h.first()) {
                    (Some(p), _) => &p.series,
                    (None, Some(p)) => &p.series,
                    (None, None) => continue,
                };
                let mut st = s.state.lock();
                st.pending_samples = st
                    .pending_samples
                    .saturating_sub((f.len() + h.len()) as u32);
                let closed_before = st.closed.len();
                apply_mixed(
                    &mut st,
                    f,
                    h,
                    opts.max_samples_per_chunk,
                    opts.chunk_range,
                    &mut c,
                );
                if finish(s, &mut st, closed_before) {
                    new_series.push(s);
                }
                drop(st);
            }
        }
        if !new_series.is_empty() {
            let mut p = head.postings.write();
            for s in new_series {
                p.add(s.sref, &s.labels);
            }
        }
        if c.appended > 0 {
            head.min_time.fetch_min(c.mint, Relaxed);
            head.max_time.fetch_max(c.maxt, Relaxed);
        }
        drop(_no_gc);
        let k = &head.counters;
        k.samples_appended.fetch_add(c.appended, Relaxed);
        if c.hist_appended > 0 {
            k.histogram_samples_appended
                .fetch_add(c.hist_appended, Relaxed);
        }
        if c.ooo > 0 {
            k.out_of_order.fetch_add(c.ooo, Relaxed);
        }
        if c.dup > 0 {
            k.duplicate.fetch_add(c.dup, Relaxed);
        }
        if c.invalid > 0 {
            tracing::warn!(
                samples = c.invalid,
                "native histograms refused by the chunk encoder were dropped"
            );
        }
        if c.chunks > 0 {
            k.chunks_created.fetch_add(c.chunks, Relaxed);
        }
        head.return_buffer(samples);
        if !cut_series.is_empty() {
            head.queue_mmap(cut_series);
        }
        Ok(())
    }

    /// Looks up or creates the series and runs `check` under its lock;
    /// on `Ok` marks a sample pending and returns the series.
    fn admit(
        &self,
        series_ref: SeriesRef,
        labels: &Labels,
        check: impl Fn(&SeriesState) -> Check,
        mark: impl FnOnce(&mut SeriesState),
    ) -> Result<Result<Arc<MemSeries>, SeriesRef>, AppendError> {
        let c = &self.head.counters;
        let mut found = if series_ref != 0 {
            self.head.series.get_by_ref(series_ref)
        } else {
            None
        };
        loop {
            let s = match found.take() {
                Some(s) => s,
                None => self.head.get_or_create(labels)?,
            };
            let mut st = s.state.lock();
            if st.removed {
                continue;
            }
            match check(&st) {
                Check::Ok => {}
                Check::NoOp => return Ok(Err(s.sref)),
                Check::OutOfOrder => {
                    c.out_of_order.fetch_add(1, Relaxed);
                    return Err(AppendError::OutOfOrder);
                }
                Check::Duplicate | Check::Invalid => {
                    c.duplicate.fetch_add(1, Relaxed);
                    return Err(AppendError::Duplicate);
                }
            }
            st.pending_samples = st.pending_samples.saturating_add(1);
            st.pending_txn = self.txn;
            mark(&mut st);
            drop(st);
            return Ok(Ok(s));
        }
    }
}

impl Appender for HeadAppender<'_> {
    fn append(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        let c = &self.head.counters;
        if t < self.min_valid {
            c.out_of_bound.fetch_add(1, Relaxed);
            return Err(AppendError::OutOfBounds);
        }
        let vbits = v.to_bits();
        let mut found = if series_ref != 0 {
            self.head.series.get_by_ref(series_ref)
        } else {
            None
        };
        loop {
            let s = match found.take() {
                Some(s) => s,
                None => self.head.get_or_create(labels)?,
            };
            let mut st = s.state.lock();
            if st.removed {
                // Garbage-collected between lookup and lock: look up again.
                continue;
            }
            match st.check(self.txn, t, vbits) {
                Check::Ok => {}
                Check::NoOp => return Ok(s.sref),
                Check::OutOfOrder => {
                    c.out_of_order.fetch_add(1, Relaxed);
                    return Err(AppendError::OutOfOrder);
                }
                Check::Duplicate | Check::Invalid => {
                    c.duplicate.fetch_add(1, Relaxed);
                    return Err(AppendError::Duplicate);
                }
            }
            st.pending_samples = st.pending_samples.saturating_add(1);
            st.pending_txn = self.txn;
            st.pending_t = t;
            st.pending_v = vbits;
            st.pending_hist = false;
            drop(st);
            let sref = s.sref;
            self.samples.push(PendingSample {
                sref,
                series: s,
                t,
                v,
            });
            return Ok(sref);
        }
    }

    fn append_histogram(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        t: Timestamp,
        h: HistogramValue,
    ) -> Result<SeriesRef, AppendError> {
        if t < self.min_valid {
            self.head.counters.out_of_bound.fetch_add(1, Relaxed);
            return Err(AppendError::OutOfBounds);
        }
        if let Err(why) = validate_histogram(&h) {
            return Err(AppendError::Storage(StorageError::Unsupported(format!(
                "invalid native histogram: {why}"
            ))));
        }
        let digest = histogram_digest(&h);
        let txn = self.txn;
        let admitted = self.admit(
            series_ref,
            labels,
            |st| st.check_histogram(txn, t, &h, digest),
            |st| {
                st.pending_t = t;
                st.pending_v = digest;
                st.pending_hist = true;
            },
        )?;
        match admitted {
            Err(sref) => Ok(sref),
            Ok(series) => {
                let sref = series.sref;
                let floats_before = self.samples.len();
                self.histograms.push(PendingHistogram {
                    sref,
                    series,
                    t,
                    h,
                    floats_before,
                });
                Ok(sref)
            }
        }
    }

    fn append_exemplar(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        e: Exemplar,
    ) -> Result<SeriesRef, AppendError> {
        crate::exemplar::append_pending(self.head, &mut self.exemplars, series_ref, labels, e)
    }

    fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        let exemplars = std::mem::take(&mut self.exemplars);
        self.commit_inner()?;
        crate::exemplar::commit_pending(self.head, exemplars)
    }

    fn rollback(mut self: Box<Self>) {
        self.rollback_inner();
    }
}

impl Drop for HeadAppender<'_> {
    fn drop(&mut self) {
        self.rollback_inner();
        self.head.counters.active_appenders.fetch_sub(1, Relaxed);
    }
}
