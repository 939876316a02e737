//! The in-memory head: the series being written, their chunks, and the
//! postings index over them.

mod appender;
mod mmap_chunks;
mod querier;
mod replay;
mod series;

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};

use parking_lot::{Mutex, RwLock};
use pharos_model::{Labels, Timestamp, format_float};
use pharos_storage::{AppendError, Appendable, Appender, Querier, Queryable, StorageError};

use crate::postings::MemPostings;
use crate::record::HistogramRecord;
use appender::{HeadAppender, PendingSample};
use series::{MemSeries, StripeSeries};

pub(crate) use replay::ApplyStats;

/// Two hours in milliseconds: Prometheus's default block (chunk) range.
pub const DEFAULT_CHUNK_RANGE: i64 = 2 * 60 * 60 * 1000;

/// Samples per chunk before a new one is cut, as in Prometheus.
pub const DEFAULT_MAX_SAMPLES_PER_CHUNK: u16 = 120;

/// How many appender sample buffers the head keeps for reuse.
const BUFFER_POOL: usize = 64;
/// Buffers larger than this are not kept.
const BUFFER_KEEP_MAX: usize = 1 << 16;

/// A series the commit log must know before samples refer to it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRecord {
    /// The series' stable reference.
    pub series_ref: u64,
    /// Its labels.
    pub labels: Labels,
}

/// One sample as the commit log sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRecord {
    /// Reference of the sample's series.
    pub series_ref: u64,
    /// Timestamp, ms.
    pub t: Timestamp,
    /// Value.
    pub v: f64,
}

/// Where committed batches are recorded before they become visible: the
/// seam the write-ahead log plugs into.
///
/// `log` is called once per non-empty commit, before any of its samples is
/// applied, with the series first committed by this batch (those not yet
/// logged by an earlier commit; under concurrency a series may be reported
/// twice) and every sample in the batch. Samples that the head then rejects
/// (out of order because another appender committed first) are still in the
/// record, so a replay must apply the same checks. An error aborts the
/// commit: nothing of the batch is applied and `commit` returns the error.
pub trait CommitLog: Send + Sync {
    /// Records one batch durably (as far as the implementation offers).
    fn log(&self, series: &[SeriesRecord], samples: &[SampleRecord]) -> Result<(), StorageError>;

    /// Records one commit that holds native histogram samples too (called
    /// instead of [`CommitLog::log`] when there are histograms; the series
    /// list covers the histograms' series as well). The commit comes in
    /// `batches`, to be recorded in order: within a batch each series has
    /// samples of one kind only, so a log that writes a batch's floats
    /// before its histograms (as Prometheus's WAL records do) still keeps
    /// every series' samples in order. A new batch starts where a series
    /// switches kind within the commit. The default refuses histograms, so
    /// a log that cannot record them fails the commit rather than losing
    /// them.
    fn log_with_histograms(
        &self,
        series: &[SeriesRecord],
        batches: &[CommitBatch],
    ) -> Result<(), StorageError> {
        if batches.iter().all(|b| b.histograms.is_empty()) {
            let samples: Vec<SampleRecord> = batches
                .iter()
                .flat_map(|b| b.samples.iter().copied())
                .collect();
            return self.log(series, &samples);
        }
        Err(StorageError::Unsupported(
            "this commit log cannot record native histograms".into(),
        ))
    }

    /// Records the exemplars of one commit, after its samples were logged
    /// and applied (the series they refer to are already logged). The
    /// default drops them: a log that cannot record exemplars loses them
    /// on restart, as the in-memory exemplar storage does.
    fn log_exemplars(&self, exemplars: &ExemplarBatch) -> Result<(), StorageError> {
        let _ = exemplars;
        Ok(())
    }
}

/// What [`CommitLog::log_exemplars`] gets: the exemplars of one commit.
pub type ExemplarBatch = [crate::record::ExemplarRecord];

/// Part of a commit handed to [`CommitLog::log_with_histograms`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitBatch {
    /// Float samples.
    pub samples: Vec<SampleRecord>,
    /// Native histogram samples.
    pub histograms: Vec<HistogramRecord>,
}

/// Head configuration.
#[derive(Clone)]
pub struct HeadOptions {
    /// Width of the time windows (ms) chunks are aligned to; a chunk never
    /// spans two windows, so blocks of this range can be cut from the head
    /// later without splitting chunks. Also: samples older than the head's
    /// newest sample minus half of this are rejected as out of bounds, as in
    /// Prometheus. Default 2h.
    pub chunk_range: i64,
    /// Samples per chunk before a new one is cut. Default 120.
    pub max_samples_per_chunk: u16,
    /// Number of lock stripes of the series maps (rounded up to a power of
    /// two). Default 64.
    pub stripes: usize,
    /// Optional commit log (write-ahead log). Default none.
    pub commit_log: Option<Arc<dyn CommitLog>>,
    /// Size of the exemplar ring (`storage.exemplars.max_exemplars` when
    /// exemplar storage is enabled). Default 0: exemplars are dropped.
    pub max_exemplars: usize,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            chunk_range: DEFAULT_CHUNK_RANGE,
            max_samples_per_chunk: DEFAULT_MAX_SAMPLES_PER_CHUNK,
            stripes: 64,
            commit_log: None,
            max_exemplars: 0,
        }
    }
}

impl fmt::Debug for HeadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadOptions")
            .field("chunk_range", &self.chunk_range)
            .field("max_samples_per_chunk", &self.max_samples_per_chunk)
            .field("stripes", &self.stripes)
            .field("commit_log", &self.commit_log.is_some())
            .finish()
    }
}

/// A snapshot of the head's counters and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadStats {
    /// Series currently in the head (including ones created by open
    /// appenders and not yet committed).
    pub num_series: u64,
    /// Series created since start.
    pub series_created: u64,
    /// Series removed (garbage-collected, truncated or rolled back).
    pub series_removed: u64,
    /// Samples committed (float and native histogram).
    pub samples_appended: u64,
    /// Of those, native histogram samples.
    pub histogram_samples_appended: u64,
    /// Samples rejected as out of order (at append or at commit).
    pub out_of_order_samples: u64,
    /// Samples rejected as older than the head accepts.
    pub out_of_bound_samples: u64,
    /// Samples rejected as duplicates (same timestamp, other value).
    pub duplicate_samples: u64,
    /// Chunks currently held (closed and open).
    pub chunks: u64,
    /// Chunks created since start.
    pub chunks_created: u64,
    /// Chunks removed since start.
    pub chunks_removed: u64,
    /// Oldest sample time, if any sample is held.
    pub min_time: Option<Timestamp>,
    /// Newest sample time, if any sample is held.
    pub max_time: Option<Timestamp>,
    /// Appenders currently open.
    pub active_appenders: u64,
    /// Calls to [`Head::truncate`] and [`Head::gc`].
    pub truncations: u64,
}

/// What one truncation removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TruncateStats {
    /// Series removed entirely.
    pub series_removed: u64,
    /// Chunks dropped (including those of removed series).
    pub chunks_removed: u64,
}

#[derive(Default)]
struct Counters {
    series_created: AtomicU64,
    series_removed: AtomicU64,
    samples_appended: AtomicU64,
    histogram_samples_appended: AtomicU64,
    out_of_order: AtomicU64,
    out_of_bound: AtomicU64,
    duplicate: AtomicU64,
    chunks_created: AtomicU64,
    chunks_removed: AtomicU64,
    active_appenders: AtomicU64,
    truncations: AtomicU64,
}

/// Shared state behind a [`Head`] handle.
pub(crate) struct HeadInner {
    opts: HeadOptions,
    series: StripeSeries,
    postings: RwLock<MemPostings>,
    next_ref: AtomicU64,
    next_txn: AtomicU64,
    /// Oldest and newest committed sample times (`i64::MAX`/`i64::MIN` when
    /// empty).
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Samples older than this are out of bounds (raised by truncation).
    min_valid_time: AtomicI64,
    /// Commits hold it shared, truncation exclusively, so a truncation never
    /// sees a batch half-applied.
    gc_lock: RwLock<()>,
    counters: Counters,
    buffers: Mutex<Vec<Vec<PendingSample>>>,
    /// Where closed chunks are written and memory-mapped (`chunks_head/`),
    /// when the head has a data directory.
    mapper: std::sync::OnceLock<Arc<crate::head_chunks::ChunkDiskMapper>>,
    /// Series that closed a chunk not yet written to the mapper.
    mmap_queue: Mutex<Vec<Arc<MemSeries>>>,
    /// Exemplars of the head's series (size 0, disabled, until resized).
    exemplars: Arc<crate::exemplar::ExemplarStorage>,
}

impl HeadInner {
    /// The labels of the series `sref`, if it exists.
    pub(crate) fn series_labels(&self, sref: u64) -> Option<Labels> {
        self.series.get_by_ref(sref).map(|s| s.labels.clone())
    }

    /// The exemplar storage.
    pub(crate) fn exemplar_storage(&self) -> &crate::exemplar::ExemplarStorage {
        &self.exemplars
    }

    /// The commit log, if any.
    pub(crate) fn commit_log(&self) -> Option<&Arc<dyn CommitLog>> {
        self.opts.commit_log.as_ref()
    }

    fn time_range(&self) -> Option<(Timestamp, Timestamp)> {
        let lo = self.min_time.load(Relaxed);
        let hi = self.max_time.load(Relaxed);
        (lo <= hi).then_some((lo, hi))
    }

    /// The oldest timestamp a new appender accepts: Prometheus's rule of
    /// half a chunk range behind the newest sample.
    fn appendable_min_valid_time(&self) -> Timestamp {
        let floor = self.min_valid_time.load(Relaxed);
        let maxt = self.max_time.load(Relaxed);
        if maxt == i64::MIN {
            return floor;
        }
        floor.max(maxt.saturating_sub(self.opts.chunk_range / 2))
    }

    fn get_or_create(&self, labels: &Labels) -> Result<Arc<MemSeries>, AppendError> {
        if labels.is_empty() {
            return Err(AppendError::InvalidLabels("empty label set".into()));
        }
        let (s, created) = self.series.get_or_create(labels.hash64(), labels, || {
            self.next_ref.fetch_add(1, Relaxed)
        });
        if created {
            self.counters.series_created.fetch_add(1, Relaxed);
        }
        Ok(s)
    }

    fn take_buffer(&self) -> Vec<PendingSample> {
        self.buffers.lock().pop().unwrap_or_default()
    }

    fn return_buffer(&self, mut b: Vec<PendingSample>) {
        b.clear();
        if b.capacity() == 0 || b.capacity() > BUFFER_KEEP_MAX {
            return;
        }
        let mut pool = self.buffers.lock();
        if pool.len() < BUFFER_POOL {
            pool.push(b);
        }
    }

    /// Drops chunks entirely older than `mint` and series left without
    /// samples (and without pending ones).
    fn collect(&self, mint: Timestamp) -> TruncateStats {
        let _exclusive = self.gc_lock.write();
        let mut chunks_removed = 0u64;
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let mut indexed: Vec<(u64, Labels)> = Vec::new();
        let removed = self.series.gc(|s, st| {
            let n = st.closed.partition_point(|c| c.max_t < mint);
            if n > 0 {
                st.closed.drain(..n);
                chunks_removed += n as u64;
            }
            let stale = st.head.as_ref().is_none_or(|h| h.max_t() < mint);
            if stale && st.pending_samples == 0 {
                chunks_removed += st.num_chunks() as u64;
                st.closed = Vec::new();
                st.head = None;
                if st.indexed {
                    indexed.push((s.sref, s.labels.clone()));
                }
                return true;
            }
            if let Some((a, b)) = st.time_range() {
                lo = lo.min(a);
                hi = hi.max(b);
            }
            false
        });
        self.postings.write().remove(&indexed);
        if mint > i64::MIN
            && let Some(m) = self.mapper.get()
            && let Err(e) = m.truncate(mint)
        {
            tracing::warn!(error = %e, "deleting old head chunk files failed");
        }
        self.min_time.store(lo, Relaxed);
        self.max_time.store(hi, Relaxed);
        let c = &self.counters;
        c.series_removed.fetch_add(removed.len() as u64, Relaxed);
        c.chunks_removed.fetch_add(chunks_removed, Relaxed);
        c.truncations.fetch_add(1, Relaxed);
        TruncateStats {
            series_removed: removed.len() as u64,
            chunks_removed,
        }
    }
}

/// The in-memory head block: a cheap-to-clone handle (an `Arc` inside)
/// implementing [`Appendable`] and [`Queryable`].
#[derive(Clone)]
pub struct Head {
    inner: Arc<HeadInner>,
}

impl fmt::Debug for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Head")
            .field("opts", &self.inner.opts)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for Head {
    fn default() -> Self {
        Head::new(HeadOptions::default())
    }
}

impl Head {
    /// An empty head.
    pub fn new(opts: HeadOptions) -> Head {
        let series = StripeSeries::new(opts.stripes);
        let max_exemplars = opts.max_exemplars;
        Head {
            inner: Arc::new(HeadInner {
                opts,
                series,
                postings: RwLock::new(MemPostings::default()),
                next_ref: AtomicU64::new(1),
                next_txn: AtomicU64::new(1),
                min_time: AtomicI64::new(i64::MAX),
                max_time: AtomicI64::new(i64::MIN),
                min_valid_time: AtomicI64::new(i64::MIN),
                gc_lock: RwLock::new(()),
                counters: Counters::default(),
                buffers: Mutex::new(Vec::new()),
                mapper: std::sync::OnceLock::new(),
                mmap_queue: Mutex::new(Vec::new()),
                exemplars: Arc::new(crate::exemplar::ExemplarStorage::new(max_exemplars)),
            }),
        }
    }

    /// The head's exemplar storage (disabled, size 0, until
    /// [`crate::exemplar::ExemplarStorage::resize`]d).
    pub fn exemplars(&self) -> &Arc<crate::exemplar::ExemplarStorage> {
        &self.inner.exemplars
    }

    /// The options the head was built with.
    pub fn options(&self) -> &HeadOptions {
        &self.inner.opts
    }

    /// Oldest committed sample time, if any.
    pub fn min_time(&self) -> Option<Timestamp> {
        self.inner.time_range().map(|r| r.0)
    }

    /// Newest committed sample time, if any.
    pub fn max_time(&self) -> Option<Timestamp> {
        self.inner.time_range().map(|r| r.1)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> HeadStats {
        let c = &self.inner.counters;
        let created = c.series_created.load(Relaxed);
        let removed = c.series_removed.load(Relaxed);
        let chunks_created = c.chunks_created.load(Relaxed);
        let chunks_removed = c.chunks_removed.load(Relaxed);
        let range = self.inner.time_range();
        HeadStats {
            num_series: created.saturating_sub(removed),
            series_created: created,
            series_removed: removed,
            samples_appended: c.samples_appended.load(Relaxed),
            histogram_samples_appended: c.histogram_samples_appended.load(Relaxed),
            out_of_order_samples: c.out_of_order.load(Relaxed),
            out_of_bound_samples: c.out_of_bound.load(Relaxed),
            duplicate_samples: c.duplicate.load(Relaxed),
            chunks: chunks_created.saturating_sub(chunks_removed),
            chunks_created,
            chunks_removed,
            min_time: range.map(|r| r.0),
            max_time: range.map(|r| r.1),
            active_appenders: c.active_appenders.load(Relaxed),
            truncations: c.truncations.load(Relaxed),
        }
    }

    /// Appends the head's metrics in the Prometheus text format, named like
    /// Prometheus's `prometheus_tsdb_*` with a `pharos_` prefix.
    pub fn write_metrics(&self, out: &mut String) {
        let s = self.stats();
        let f = |v: u64| v as f64;
        // Prometheus reports an empty head as (MaxInt64, MinInt64).
        let min_t = s.min_time.unwrap_or(i64::MAX);
        let max_t = s.max_time.unwrap_or(i64::MIN);
        let float = r#"{type="float"}"#;
        let rows: [(&str, &str, &str, &str, f64); 16] = [
            (
                "pharos_tsdb_head_series",
                "gauge",
                "",
                "Number of series in the head.",
                f(s.num_series),
            ),
            (
                "pharos_tsdb_head_series_created_total",
                "counter",
                "",
                "Series created in the head.",
                f(s.series_created),
            ),
            (
                "pharos_tsdb_head_series_removed_total",
                "counter",
                "",
                "Series removed from the head.",
                f(s.series_removed),
            ),
            (
                "pharos_tsdb_head_samples_appended_total",
                "counter",
                float,
                "Samples appended to the head.",
                f(s.samples_appended
                    .saturating_sub(s.histogram_samples_appended)),
            ),
            (
                "pharos_tsdb_out_of_order_samples_total",
                "counter",
                float,
                "Samples rejected for being older than their series' newest sample.",
                f(s.out_of_order_samples),
            ),
            (
                "pharos_tsdb_out_of_bound_samples_total",
                "counter",
                float,
                "Samples rejected for being older than the head accepts.",
                f(s.out_of_bound_samples),
            ),
            (
                "pharos_tsdb_duplicate_samples_total",
                "counter",
                float,
                "Samples rejected for repeating a timestamp with another value.",
                f(s.duplicate_samples),
            ),
            (
                "pharos_tsdb_head_chunks",
                "gauge",
                "",
                "Chunks held in the head.",
                f(s.chunks),
            ),
            (
                "pharos_tsdb_head_chunks_created_total",
                "counter",
                "",
                "Chunks created in the head.",
                f(s.chunks_created),
            ),
            (
                "pharos_tsdb_head_chunks_removed_total",
                "counter",
                "",
                "Chunks removed from the head.",
                f(s.chunks_removed),
            ),
            (
                "pharos_tsdb_head_min_time",
                "gauge",
                "",
                "Oldest sample time in the head, in milliseconds.",
                min_t as f64,
            ),
            (
                "pharos_tsdb_head_max_time",
                "gauge",
                "",
                "Newest sample time in the head, in milliseconds.",
                max_t as f64,
            ),
            (
                "pharos_tsdb_head_min_time_seconds",
                "gauge",
                "",
                "Oldest sample time in the head, in seconds.",
                min_t as f64 / 1000.0,
            ),
            (
                "pharos_tsdb_head_max_time_seconds",
                "gauge",
                "",
                "Newest sample time in the head, in seconds.",
                max_t as f64 / 1000.0,
            ),
            (
                "pharos_tsdb_head_active_appenders",
                "gauge",
                "",
                "Append transactions currently open.",
                f(s.active_appenders),
            ),
            (
                "pharos_tsdb_head_truncations_total",
                "counter",
                "",
                "Head truncations and garbage collections run.",
                f(s.truncations),
            ),
        ];
        for (name, kind, labels, help, v) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{labels} {}", format_float(v));
            if name == "pharos_tsdb_head_samples_appended_total" {
                let _ = writeln!(
                    out,
                    "{name}{{type=\"histogram\"}} {}",
                    format_float(f(s.histogram_samples_appended))
                );
            }
        }
    }

    /// Drops every chunk whose samples are all older than `mint`, removes
    /// series left empty, and from now on rejects samples older than `mint`
    /// as out of bounds. The entry point for retention and block cutting.
    /// Series with samples pending in an open appender are kept.
    pub fn truncate(&self, mint: Timestamp) -> TruncateStats {
        self.inner.min_valid_time.fetch_max(mint, Relaxed);
        self.inner.collect(mint)
    }

    /// Removes series that hold no sample (for example created by an
    /// appender that was then rolled back while another kept it alive).
    pub fn gc(&self) -> TruncateStats {
        self.inner.collect(i64::MIN)
    }

    /// Number of series in the postings index (those with committed
    /// samples).
    pub fn num_indexed_series(&self) -> usize {
        self.inner.postings.read().len()
    }

    /// Heap bytes held in chunk buffers (open and closed chunks not
    /// memory-mapped), for memory accounting.
    pub fn chunk_bytes(&self) -> usize {
        let mut total = 0;
        self.inner.series.for_each(|s| {
            let st = s.state.lock();
            total += st
                .closed
                .iter()
                .filter(|c| c.data.is_heap())
                .map(|c| c.data.len())
                .sum::<usize>();
            total += st.head.as_ref().map_or(0, |h| h.app.capacity());
        });
        total
    }
}

impl Appendable for Head {
    fn appender(&self) -> Box<dyn Appender + Send + '_> {
        Box::new(HeadAppender::new(&self.inner))
    }
}

impl pharos_storage::ExemplarQueryable for Head {
    fn select_exemplars(
        &self,
        start: Timestamp,
        end: Timestamp,
        matcher_sets: &[Vec<pharos_model::Matcher>],
    ) -> Result<Vec<pharos_storage::SeriesExemplars>, StorageError> {
        Ok(self.inner.exemplars.select(start, end, matcher_sets))
    }
}

impl Queryable for Head {
    fn querier(&self, mint: Timestamp, maxt: Timestamp) -> Result<Box<dyn Querier>, StorageError> {
        Ok(Box::new(querier::HeadQuerier {
            head: self.inner.clone(),
            mint,
            maxt,
        }))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod hist_tests;
