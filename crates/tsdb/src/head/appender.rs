//! The head's append transaction.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use pharos_model::{Labels, Timestamp};
use pharos_storage::{AppendError, Appender, SeriesRef, StorageError};

use super::series::{Check, MemSeries};
use super::{HeadInner, SampleRecord, SeriesRecord};

/// A sample buffered by an appender.
pub(crate) struct PendingSample {
    /// Copy of `series.sref`, so sorting does not touch the series.
    sref: u64,
    series: Arc<MemSeries>,
    t: Timestamp,
    v: f64,
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
            finished: false,
        }
    }

    /// Undoes the pending counts of `samples` and drops series that only
    /// this batch kept alive.
    fn release(&self, samples: &[PendingSample]) {
        let mut empty: Vec<&Arc<MemSeries>> = Vec::new();
        for group in samples.chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series)) {
            let s = &group[0].series;
            let mut st = s.state.lock();
            st.pending_samples = st.pending_samples.saturating_sub(group.len() as u32);
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
        self.release(&samples);
        self.head.return_buffer(samples);
    }

    fn commit_inner(&mut self) -> Result<(), StorageError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let mut samples = std::mem::take(&mut self.samples);
        if samples.is_empty() {
            self.head.return_buffer(samples);
            return Ok(());
        }
        // Group each series' samples (stable, so their order is kept): a
        // series is then locked once and its samples become visible together.
        if !samples.is_sorted_by_key(|s| s.sref) {
            samples.sort_by_key(|s| s.sref);
        }

        // The write-ahead log goes here: everything is logged before any
        // sample becomes visible, and a failed write aborts the commit.
        if let Some(log) = &self.head.opts.commit_log {
            let mut series = Vec::new();
            let mut recs = Vec::with_capacity(samples.len());
            for group in samples.chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series)) {
                let s = &group[0].series;
                if !s.state.lock().indexed {
                    series.push(SeriesRecord {
                        series_ref: s.sref,
                        labels: s.labels.clone(),
                    });
                }
                recs.extend(group.iter().map(|p| SampleRecord {
                    series_ref: s.sref,
                    t: p.t,
                    v: p.v,
                }));
            }
            if let Err(e) = log.log(&series, &recs) {
                self.release(&samples);
                self.head.return_buffer(samples);
                return Err(e);
            }
        }

        let head = self.head;
        let opts = &head.opts;
        let _no_gc = head.gc_lock.read();
        let (mut appended, mut ooo, mut dup, mut chunks) = (0u64, 0u64, 0u64, 0u64);
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        let mut new_series: Vec<&Arc<MemSeries>> = Vec::new();
        let mut cut_series: Vec<Arc<MemSeries>> = Vec::new();
        for group in samples.chunk_by(|a, b| Arc::ptr_eq(&a.series, &b.series)) {
            let s = &group[0].series;
            let mut st = s.state.lock();
            st.pending_samples = st.pending_samples.saturating_sub(group.len() as u32);
            let closed_before = st.closed.len();
            for p in group {
                match st.append(p.t, p.v, opts.max_samples_per_chunk, opts.chunk_range) {
                    Ok(cut) => {
                        appended += 1;
                        chunks += u64::from(cut);
                        mint = mint.min(p.t);
                        maxt = maxt.max(p.t);
                    }
                    Err(Check::OutOfOrder) => ooo += 1,
                    Err(Check::Duplicate) => dup += 1,
                    Err(Check::NoOp | Check::Ok) => {}
                }
            }
            if st.closed.len() > closed_before {
                cut_series.push(s.clone());
            }
            if st.head.is_some() && !st.indexed {
                st.indexed = true;
                new_series.push(s);
            }
            drop(st);
        }
        if !new_series.is_empty() {
            let mut p = head.postings.write();
            for s in new_series {
                p.add(s.sref, &s.labels);
            }
        }
        if appended > 0 {
            head.min_time.fetch_min(mint, Relaxed);
            head.max_time.fetch_max(maxt, Relaxed);
        }
        drop(_no_gc);
        let c = &head.counters;
        c.samples_appended.fetch_add(appended, Relaxed);
        if ooo > 0 {
            c.out_of_order.fetch_add(ooo, Relaxed);
        }
        if dup > 0 {
            c.duplicate.fetch_add(dup, Relaxed);
        }
        if chunks > 0 {
            c.chunks_created.fetch_add(chunks, Relaxed);
        }
        head.return_buffer(samples);
        if !cut_series.is_empty() {
            head.queue_mmap(cut_series);
        }
        Ok(())
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
                Check::Duplicate => {
                    c.duplicate.fetch_add(1, Relaxed);
                    return Err(AppendError::Duplicate);
                }
            }
            st.pending_samples = st.pending_samples.saturating_add(1);
            st.pending_txn = self.txn;
            st.pending_t = t;
            st.pending_v = vbits;
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

    fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        self.commit_inner()
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
