//! Crate-internal entry points the WAL replay uses to rebuild a head:
//! series created under their logged references and samples applied
//! without an appender (and without logging them again).

use std::sync::atomic::Ordering::Relaxed;

use pharos_model::{Labels, Timestamp};

use super::Head;
use super::series::{Check, replay_chunk_capacity};

/// What applying one shard of replayed samples did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApplyStats {
    pub(crate) appended: u64,
    pub(crate) chunks: u64,
    pub(crate) out_of_order: u64,
    pub(crate) unknown_series: u64,
    /// Samples already held by a chunk loaded from `chunks_head/`.
    pub(crate) in_mmapped: u64,
    pub(crate) mint: Timestamp,
    pub(crate) maxt: Timestamp,
}

impl Default for ApplyStats {
    fn default() -> Self {
        ApplyStats {
            appended: 0,
            chunks: 0,
            out_of_order: 0,
            unknown_series: 0,
            in_mmapped: 0,
            mint: i64::MAX,
            maxt: i64::MIN,
        }
    }
}

impl ApplyStats {
    pub(crate) fn merge(&mut self, o: &ApplyStats) {
        self.appended += o.appended;
        self.chunks += o.chunks;
        self.out_of_order += o.out_of_order;
        self.unknown_series += o.unknown_series;
        self.in_mmapped += o.in_mmapped;
        self.mint = self.mint.min(o.mint);
        self.maxt = self.maxt.max(o.maxt);
    }
}

impl Head {
    /// Creates (or finds) the series `labels` for a logged reference
    /// `sref`. Returns the reference the head keeps it under: `sref`, or
    /// that of an existing series with the same labels (a series logged
    /// twice under two references), or a fresh one when `sref` is taken by
    /// other labels (a damaged log). The reference counter moves past
    /// `sref` so new series never reuse it.
    pub(crate) fn replay_series(&self, sref: u64, labels: &Labels) -> Option<u64> {
        let inner = &self.inner;
        if labels.is_empty() {
            return None;
        }
        inner.next_ref.fetch_max(sref.saturating_add(1), Relaxed);
        let taken = inner
            .series
            .get_by_ref(sref)
            .is_some_and(|s| s.labels != *labels);
        let want = if taken || sref == 0 {
            inner.next_ref.fetch_add(1, Relaxed)
        } else {
            sref
        };
        let (s, created) = inner.series.get_or_create(labels.hash64(), labels, || want);
        if created {
            inner.counters.series_created.fetch_add(1, Relaxed);
        }
        Some(s.sref)
    }

    /// References of the indexed series matching every matcher (for
    /// example, to log deletions as WAL tombstones).
    pub fn series_refs(&self, matchers: &[pharos_model::Matcher]) -> Vec<u64> {
        self.inner.postings.read().postings_for_matchers(matchers)
    }

    /// The labels of the series with reference `sref`, if it is in the head.
    pub fn series_labels(&self, sref: u64) -> Option<Labels> {
        self.inner.series.get_by_ref(sref).map(|s| s.labels.clone())
    }

    /// The time range of the committed samples of the series `sref`.
    pub(crate) fn series_time_range(&self, sref: u64) -> Option<(Timestamp, Timestamp)> {
        self.inner
            .series
            .get_by_ref(sref)?
            .state
            .lock()
            .time_range()
    }

    /// Whether a series with this reference is in the head.
    pub(crate) fn has_series(&self, sref: u64) -> bool {
        self.inner.series.get_by_ref(sref).is_some()
    }

    /// Applies replayed samples of series already created, each series'
    /// samples in log order (the caller shards by series so this holds).
    /// Samples failing the head's checks are dropped, as at commit time.
    pub(crate) fn replay_samples(&self, samples: &[(u64, Timestamp, f64)], st: &mut ApplyStats) {
        let min_valid = self.inner.min_valid_time.load(Relaxed);
        for run in samples.chunk_by(|a, b| a.0 == b.0) {
            self.replay_run(
                run[0].0,
                run.len(),
                run.iter().map(|&(_, t, v)| (t, v)),
                min_valid,
                st,
            );
        }
    }

    /// Applies replayed samples `(t, v)` of the one series `sref`, in log
    /// order, with the rules of [`Head::replay_samples`].
    pub(crate) fn replay_series_samples(
        &self,
        sref: u64,
        samples: &[(Timestamp, f64)],
        st: &mut ApplyStats,
    ) {
        let min_valid = self.inner.min_valid_time.load(Relaxed);
        self.replay_run(sref, samples.len(), samples.iter().copied(), min_valid, st);
    }

    /// One series' run of samples: one lookup, one lock.
    #[inline]
    fn replay_run(
        &self,
        sref: u64,
        len: usize,
        samples: impl Iterator<Item = (Timestamp, f64)>,
        min_valid: Timestamp,
        st: &mut ApplyStats,
    ) {
        let opts = &self.inner.opts;
        let Some(s) = self.inner.series.get_by_ref(sref) else {
            st.unknown_series += len as u64;
            return;
        };
        let first_capacity = replay_chunk_capacity(opts.max_samples_per_chunk);
        let mut state = s.state.lock();
        let mut as_hist = 0;
        for (t, v) in samples {
            if state.head.is_none() && state.closed.last().is_some_and(|c| t <= c.max_t) {
                st.in_mmapped += 1;
                continue;
            }
            if t < min_valid {
                st.out_of_order += 1;
                continue;
            }
            let stale_hist = state.stale_histogram_for(v).is_some();
            match state.append_sized(
                t,
                v,
                opts.max_samples_per_chunk,
                opts.chunk_range,
                first_capacity,
            ) {
                Ok(cut) => {
                    // A stale marker stored as a histogram counts as one.
                    as_hist += u64::from(stale_hist);
                    st.appended += 1;
                    st.chunks += u64::from(cut);
                    st.mint = st.mint.min(t);
                    st.maxt = st.maxt.max(t);
                }
                Err(Check::OutOfOrder | Check::Duplicate) => st.out_of_order += 1,
                Err(Check::NoOp | Check::Ok | Check::Invalid) => {}
            }
        }
        if as_hist > 0 {
            self.inner
                .counters
                .histogram_samples_appended
                .fetch_add(as_hist, Relaxed);
        }
    }

    /// Applies replayed native histogram samples, with the same rules as
    /// [`Head::replay_samples`] (each series' samples in log order).
    pub(crate) fn replay_histograms(
        &self,
        samples: &[(u64, Timestamp, pharos_model::HistogramValue)],
        st: &mut ApplyStats,
    ) {
        let inner = &self.inner;
        let opts = &inner.opts;
        let min_valid = inner.min_valid_time.load(Relaxed);
        for run in samples.chunk_by(|a, b| a.0 == b.0) {
            let Some(s) = inner.series.get_by_ref(run[0].0) else {
                st.unknown_series += run.len() as u64;
                continue;
            };
            let mut state = s.state.lock();
            let before = st.appended;
            for (_, t, h) in run {
                let t = *t;
                if state.head.is_none() && state.closed.last().is_some_and(|c| t <= c.max_t) {
                    st.in_mmapped += 1;
                    continue;
                }
                if t < min_valid {
                    st.out_of_order += 1;
                    continue;
                }
                match state.append_histogram(t, h, opts.max_samples_per_chunk, opts.chunk_range) {
                    Ok(cut) => {
                        st.appended += 1;
                        st.chunks += u64::from(cut);
                        st.mint = st.mint.min(t);
                        st.maxt = st.maxt.max(t);
                    }
                    Err(Check::OutOfOrder | Check::Duplicate | Check::Invalid) => {
                        st.out_of_order += 1
                    }
                    Err(Check::NoOp | Check::Ok) => {}
                }
            }
            inner
                .counters
                .histogram_samples_appended
                .fetch_add(st.appended - before, Relaxed);
        }
    }

    /// Adds replayed series to the postings index ahead of their samples,
    /// so the index is built while samples are still being applied; the
    /// gc of [`Head::finish_replay`] drops (and unindexes) those that get
    /// none.
    pub(crate) fn index_replayed(&self, refs: &[u64]) {
        let inner = &self.inner;
        let mut new = Vec::with_capacity(refs.len());
        for &r in refs {
            if let Some(s) = inner.series.get_by_ref(r) {
                let mut state = s.state.lock();
                if !state.indexed {
                    state.indexed = true;
                    drop(state);
                    new.push(s);
                }
            }
        }
        if new.is_empty() {
            return;
        }
        let mut p = inner.postings.write();
        for s in &new {
            p.add(s.sref, &s.labels);
        }
    }

    /// Ends a replay: indexes every series that got samples, folds the
    /// counters in and drops series left without samples.
    pub(crate) fn finish_replay(&self, st: &ApplyStats) {
        let inner = &self.inner;
        let mut new = Vec::new();
        let mut to_mmap = Vec::new();
        inner.series.for_each(|s| {
            let mut state = s.state.lock();
            // The replay sized first chunks for a full chunk's samples.
            state.shrink_open_chunk();
            if state.head.is_some() && !state.indexed {
                state.indexed = true;
                new.push(s.clone());
            }
            if state.closed.iter().any(|c| c.data.is_heap()) {
                to_mmap.push(s.clone());
            }
        });
        // Chunks the replay closed are in memory only: queue them for
        // `chunks_head/` like chunks closed by commits (the replay writes
        // the queue once the head has its chunk mapper), so the next start
        // loads them instead of replaying their samples again.
        inner.mmap_queue.lock().extend(to_mmap);
        // Ascending references append at the end of every postings list
        // instead of inserting in the middle.
        new.sort_unstable_by_key(|s| s.sref);
        {
            let mut p = inner.postings.write();
            for s in &new {
                p.add(s.sref, &s.labels);
            }
        }
        if st.appended > 0 {
            inner.min_time.fetch_min(st.mint, Relaxed);
            inner.max_time.fetch_max(st.maxt, Relaxed);
        }
        let c = &inner.counters;
        c.samples_appended.fetch_add(st.appended, Relaxed);
        c.chunks_created.fetch_add(st.chunks, Relaxed);
        c.out_of_order.fetch_add(st.out_of_order, Relaxed);
        self.gc();
    }
}
