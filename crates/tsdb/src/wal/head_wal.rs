//! The head's WAL: replay on open (with repair), logging of every commit,
//! checkpoints after truncation.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pharos_model::{HistogramValue, format_float};
use pharos_storage::StorageError;

use super::checkpoint::{CheckpointStats, last_checkpoint, write_checkpoint};
use super::{SegmentReader, Wal, WalOptions, list_segments};
use crate::TsdbError;
use crate::head::{
    ApplyStats, CommitBatch, CommitLog, Head, HeadOptions, SampleRecord, SeriesRecord,
};
use crate::head_chunks::{ChunkDiskMapper, LoadedChunk};
use crate::record::{self, Record, TombstoneRecord};

/// Samples per samples record written: keeps records well under a page
/// multiple and bounded in size for huge commits.
const SAMPLES_PER_RECORD: usize = 10_000;
/// Samples per batch handed to an applier thread: each series' samples in
/// a batch share one lookup and one lock, and the batch's first touch of
/// the series' memory.
const SHARD_BATCH: usize = 1 << 19;
/// Raw record bytes per batch handed to a decoder thread.
const DECODE_BATCH_BYTES: usize = 1 << 20;

/// Figures of the last WAL replay (for `/api/v1/status/walreplay` and logs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayStats {
    /// Segments in the WAL when replay started (checkpoint excluded).
    pub segments_total: u64,
    /// Segments replayed so far.
    pub segments_read: u64,
    /// Index of the checkpoint replayed first, if any.
    pub checkpoint: Option<u32>,
    /// Whether replay has finished.
    pub done: bool,
    /// Records read.
    pub records: u64,
    /// Series records read.
    pub series: u64,
    /// Samples read.
    pub samples: u64,
    /// Samples applied to the head.
    pub samples_applied: u64,
    /// Samples dropped as out of order, duplicate or out of bounds.
    pub samples_rejected: u64,
    /// Samples of series without a series record.
    pub samples_unknown_series: u64,
    /// Chunks loaded from `chunks_head/` and attached to their series.
    pub mmapped_chunks: u64,
    /// WAL samples skipped because a loaded chunk already holds them.
    pub samples_in_mmapped_chunks: u64,
    /// Tombstones read (handed out by [`HeadWal::replayed_tombstones`]:
    /// the head itself keeps no deletions).
    pub tombstones: u64,
    /// Records that did not decode, or of types we skip.
    pub records_skipped: u64,
    /// Of those, records that did not decode (including zstd-compressed
    /// records of Prometheus 3.x, which we do not read).
    pub records_undecodable: u64,
    /// Corruptions repaired (truncated) during this open.
    pub corruptions: u64,
    /// Bytes dropped by repair.
    pub bytes_dropped: u64,
    /// Wall time of the replay.
    pub duration: Duration,
    /// Threads that decoded records.
    pub decode_threads: usize,
}

impl ReplayStats {
    /// Samples read per second of replay.
    pub fn samples_per_second(&self) -> f64 {
        let s = self.duration.as_secs_f64();
        if s > 0.0 {
            self.samples as f64 / s
        } else {
            0.0
        }
    }
}

/// The WAL attached to a head: logs every commit before it becomes visible
/// (as the head's [`CommitLog`]) and writes checkpoints after truncation.
pub struct HeadWal {
    dir: PathBuf,
    opts: WalOptions,
    wal: OnceLock<Wal>,
    chunks: OnceLock<Arc<ChunkDiskMapper>>,
    replay: Mutex<ReplayStats>,
    tombstones: Mutex<Vec<TombstoneRecord>>,
    corruptions: AtomicU64,
    checkpoints: AtomicU64,
    checkpoints_failed: AtomicU64,
    truncations: AtomicU64,
    checkpoint_lock: Mutex<()>,
    closed: AtomicBool,
}

impl std::fmt::Debug for HeadWal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadWal")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish()
    }
}

fn io_err(what: &str, path: &Path, e: io::Error) -> TsdbError {
    TsdbError::Wal(format!("{what} {}: {e}", path.display()))
}

impl CommitLog for HeadWal {
    fn log_with_histograms(
        &self,
        series: &[SeriesRecord],
        batches: &[CommitBatch],
    ) -> Result<(), StorageError> {
        let Some(wal) = self.wal.get() else {
            return Err(StorageError::Closed);
        };
        let mut bufs: Vec<Vec<u8>> = Vec::new();
        if !series.is_empty() {
            let mut b = Vec::with_capacity(series.len() * 64);
            record::encode_series(series, &mut b);
            bufs.push(b);
        }
        for batch in batches {
            for chunk in batch.samples.chunks(SAMPLES_PER_RECORD) {
                let mut b = Vec::with_capacity(17 + chunk.len() * 12);
                record::encode_samples(chunk, &mut b);
                bufs.push(b);
            }
            // Histograms are large: a tenth as many per record as floats.
            for chunk in batch.histograms.chunks(SAMPLES_PER_RECORD / 10) {
                for typ in record::HISTOGRAM_RECORD_TYPES {
                    let mut b = Vec::new();
                    record::encode_histograms(chunk, typ, &mut b);
                    if !b.is_empty() {
                        bufs.push(b);
                    }
                }
            }
        }
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        wal.log(&refs)
            .map_err(|e| StorageError::Io(format!("WAL write failed: {e}")))
    }

    fn log_exemplars(&self, exemplars: &[record::ExemplarRecord]) -> Result<(), StorageError> {
        self.write_exemplars(exemplars)
    }

    fn log(&self, series: &[SeriesRecord], samples: &[SampleRecord]) -> Result<(), StorageError> {
        let Some(wal) = self.wal.get() else {
            return Err(StorageError::Closed);
        };
        let mut bufs: Vec<Vec<u8>> = Vec::with_capacity(1 + samples.len() / SAMPLES_PER_RECORD + 1);
        if !series.is_empty() {
            let mut b = Vec::with_capacity(series.len() * 64);
            record::encode_series(series, &mut b);
            bufs.push(b);
        }
        for chunk in samples.chunks(SAMPLES_PER_RECORD) {
            let mut b = Vec::with_capacity(17 + chunk.len() * 12);
            record::encode_samples(chunk, &mut b);
            bufs.push(b);
        }
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        wal.log(&refs)
            .map_err(|e| StorageError::Io(format!("WAL write failed: {e}")))
    }
}

impl HeadWal {
    fn write_exemplars(&self, exemplars: &[record::ExemplarRecord]) -> Result<(), StorageError> {
        let Some(wal) = self.wal.get() else {
            return Err(StorageError::Closed);
        };
        let mut bufs: Vec<Vec<u8>> = Vec::new();
        for chunk in exemplars.chunks(SAMPLES_PER_RECORD) {
            let mut b = Vec::with_capacity(17 + chunk.len() * 48);
            record::encode_exemplars(chunk, &mut b);
            bufs.push(b);
        }
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        wal.log(&refs)
            .map_err(|e| StorageError::Io(format!("WAL write failed: {e}")))
    }

    /// The WAL writer (`None` only while the head is being opened).
    pub fn wal(&self) -> Option<&Wal> {
        self.wal.get()
    }

    /// Logs deleted intervals (a tombstones record), so that a deletion in
    /// the head survives a restart; see [`HeadWal::replayed_tombstones`].
    pub fn log_tombstones(&self, tombstones: &[TombstoneRecord]) -> Result<(), TsdbError> {
        if tombstones.is_empty() {
            return Ok(());
        }
        let Some(wal) = self.wal.get() else {
            return Err(TsdbError::Wal("WAL is not open".into()));
        };
        let mut b = Vec::with_capacity(1 + tombstones.len() * 16);
        record::encode_tombstones(tombstones, &mut b);
        wal.log(&[&b])
            .map_err(|e| io_err("writing tombstones to", &self.dir, e))
    }

    /// The tombstones read by the replay (series references as the head
    /// now knows them), for the owner of the head to re-apply: the head
    /// itself keeps no deletions.
    pub fn replayed_tombstones(&self) -> Vec<TombstoneRecord> {
        self.tombstones.lock().clone()
    }

    /// Figures of the replay done when the head was opened.
    pub fn replay_stats(&self) -> ReplayStats {
        self.replay.lock().clone()
    }

    /// After `head.truncate(mint)`: cuts a new segment, checkpoints the
    /// older two thirds of the segments (Prometheus's rule: the newest
    /// segments still hold mostly live data), keeping series the head still
    /// has and samples at or after `mint`, then deletes those segments and
    /// older checkpoints.
    pub fn checkpoint(&self, head: &Head, mint: i64) -> Result<(), TsdbError> {
        self.checkpoint_stats(head, mint).map(|_| ())
    }

    /// [`HeadWal::checkpoint`], returning what it did.
    pub fn checkpoint_stats(&self, head: &Head, mint: i64) -> Result<CheckpointStats, TsdbError> {
        let _one = self.checkpoint_lock.lock();
        let Some(wal) = self.wal.get() else {
            return Err(TsdbError::Wal("WAL is not open".into()));
        };
        self.truncations.fetch_add(1, Relaxed);
        let segs = list_segments(&self.dir).map_err(|e| io_err("listing", &self.dir, e))?;
        let Some(first) = segs.first().map(|s| s.0) else {
            return Ok(CheckpointStats::default());
        };
        let current = wal
            .next_segment()
            .map_err(|e| io_err("cutting a segment in", &self.dir, e))?;
        // Never the segment being written; the older two thirds only.
        let Some(last) = current.checked_sub(1) else {
            return Ok(CheckpointStats::default());
        };
        let last = first + (last.saturating_sub(first)) * 2 / 3;
        if last <= first {
            return Ok(CheckpointStats::default());
        }
        let started = Instant::now();
        match write_checkpoint(&self.dir, self.opts, last, |r| head.has_series(r), mint) {
            Ok(st) => {
                self.checkpoints.fetch_add(1, Relaxed);
                tracing::info!(
                    checkpoint = %st.dir.display(),
                    series_kept = st.series_kept,
                    samples_kept = st.samples_kept,
                    samples_dropped = st.samples_dropped,
                    segments_deleted = st.segments_deleted,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "WAL checkpoint written"
                );
                Ok(st)
            }
            Err(e) => {
                self.checkpoints_failed.fetch_add(1, Relaxed);
                Err(io_err("writing a checkpoint in", &self.dir, e))
            }
        }
    }

    /// Pads and fsyncs the open segment; later commits fail.
    pub fn close(&self) -> Result<(), TsdbError> {
        self.closed.store(true, Relaxed);
        if let Some(c) = self.chunks.get() {
            c.sync()
                .map_err(|e| io_err("syncing head chunks of", &self.dir, e))?;
        }
        match self.wal.get() {
            Some(w) => w.close().map_err(|e| io_err("closing WAL", &self.dir, e)),
            None => Ok(()),
        }
    }

    /// Appends the WAL's metrics in the Prometheus text format.
    pub fn write_metrics(&self, out: &mut String) {
        let (bytes, records, failed, cut) = match self.wal.get() {
            Some(w) => (
                w.bytes_written.load(Relaxed),
                w.records_written.load(Relaxed),
                w.writes_failed.load(Relaxed),
                w.segments_cut.load(Relaxed),
            ),
            None => (0, 0, 0, 0),
        };
        let current = self.wal.get().map_or(0, Wal::current_segment);
        let rs = self.replay_stats();
        let (mmapped, mmap_failed) = self.chunks.get().map_or((0, 0), |c| {
            (
                c.chunks_written.load(Relaxed),
                c.write_failures.load(Relaxed),
            )
        });
        let rows: [(&str, &str, &str, f64); 11] = [
            (
                "pharos_tsdb_mmap_chunks_written_total",
                "counter",
                "Closed head chunks written to chunks_head/ and memory-mapped.",
                mmapped as f64,
            ),
            (
                "pharos_tsdb_mmap_chunk_write_failures_total",
                "counter",
                "Failed writes of head chunks (the chunks stay in memory).",
                mmap_failed as f64,
            ),
            (
                "pharos_tsdb_wal_corruptions_total",
                "counter",
                "WAL and head chunk corruptions found (and repaired by truncation) at open.",
                self.corruptions.load(Relaxed) as f64,
            ),
            (
                "pharos_tsdb_wal_writes_failed_total",
                "counter",
                "WAL writes that failed (the commit was refused).",
                failed as f64,
            ),
            (
                "pharos_tsdb_wal_bytes_written_total",
                "counter",
                "Bytes written to WAL segments.",
                bytes as f64,
            ),
            (
                "pharos_tsdb_wal_records_written_total",
                "counter",
                "Records written to the WAL.",
                records as f64,
            ),
            (
                "pharos_tsdb_wal_segments_cut_total",
                "counter",
                "WAL segments completed.",
                cut as f64,
            ),
            (
                "pharos_tsdb_wal_segment_current",
                "gauge",
                "Index of the WAL segment being written.",
                f64::from(current),
            ),
            (
                "pharos_tsdb_checkpoint_creations_total",
                "counter",
                "WAL checkpoints written.",
                self.checkpoints.load(Relaxed) as f64,
            ),
            (
                "pharos_tsdb_checkpoint_creations_failed_total",
                "counter",
                "WAL checkpoints that failed.",
                self.checkpoints_failed.load(Relaxed) as f64,
            ),
            (
                "pharos_tsdb_wal_replay_duration_seconds",
                "gauge",
                "Duration of the WAL replay at open.",
                rs.duration.as_secs_f64(),
            ),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", format_float(v));
        }
    }
}

/// A batch of raw records read from one segment.
struct RawBatch {
    seq: u64,
    data: Vec<u8>,
    ends: Vec<usize>,
    /// Per record: still snappy-compressed (decompressed by the decoders,
    /// in parallel).
    snappy: Vec<bool>,
}

struct DecodedBatch {
    seq: u64,
    records: Vec<Decoded>,
}

/// What an applier thread receives: float samples, or (in their own
/// batches, so each series still sees its samples in log order) native
/// histogram samples.
enum ShardBatch {
    /// Float samples as the decoders split them (parts in log order).
    Floats(FloatBatch),
    Histograms(Vec<(u64, i64, HistogramValue)>),
}

/// A decoded record; samples come already split by applier shard (done by
/// the parallel decoders, so the ordered dispatch only hands parts on).
enum Decoded {
    Record(Result<Record, record::RecordError>),
    Samples {
        /// Samples per shard, `(ref, t, v)`, in log order.
        parts: Vec<Vec<(u64, i64, f64)>>,
        /// Per shard, the smallest and largest reference of its part.
        bounds: Vec<(u64, u64)>,
        /// Number of samples.
        total: usize,
        /// Of those, samples dropped because a chunk loaded from
        /// `chunks_head/` holds them.
        in_mmapped: usize,
    },
    /// A series record whose series the decoder already created (series
    /// creation runs on every decoder, not in the ordered dispatch): per
    /// series, its logged reference and the one the head keeps it under
    /// (see [`Head::replay_series`]).
    Series(Vec<(u64, Option<u64>)>),
}

/// A map keyed by series reference, with a cheap hash (the keys are
/// counters, not attacker-chosen; SipHash would be needless work on the
/// replay's serial dispatch).
type ByRef<V> = HashMap<u64, V, RefHash>;

/// The [`std::hash::BuildHasher`] of [`ByRef`]: a multiplicative fold.
#[derive(Clone, Copy, Default)]
struct RefHash;

/// The hasher of [`RefHash`].
struct RefHasher(u64);

impl std::hash::Hasher for RefHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }

    fn finish(&self) -> u64 {
        let m = u128::from(self.0) * 0x9E37_79B9_7F4A_7C15u128;
        (m as u64) ^ ((m >> 64) as u64)
    }
}

impl std::hash::BuildHasher for RefHash {
    type Hasher = RefHasher;

    fn build_hasher(&self) -> RefHasher {
        RefHasher(0)
    }
}

/// The newest time held by the chunks loaded from `chunks_head/`, by the
/// series reference they were written under (the WAL's): decoders drop
/// the samples those chunks already hold before they are routed, grouped
/// and looked up (the appliers check again, per series).
struct MmapFloor {
    /// Indexed by reference; `i64::MIN` for series without loaded chunks.
    /// Empty (no early dropping) when references are too sparse to index.
    dense: Vec<i64>,
}

impl MmapFloor {
    fn new(mmapped: &ByRef<Vec<LoadedChunk>>) -> MmapFloor {
        let max = mmapped.keys().max().copied().unwrap_or(0);
        let limit = (mmapped.len() as u64)
            .saturating_mul(4)
            .saturating_add(1 << 20);
        let mut dense = Vec::new();
        if !mmapped.is_empty() && max < limit {
            dense = vec![i64::MIN; max as usize + 1];
            for (&r, v) in mmapped {
                if let Some(c) = v.last() {
                    dense[r as usize] = c.maxt;
                }
            }
        }
        MmapFloor { dense }
    }

    /// Whether a loaded chunk of series `r` holds time `t`.
    fn covers(&self, r: u64, t: i64) -> bool {
        usize::try_from(r)
            .ok()
            .and_then(|i| self.dense.get(i))
            .is_some_and(|&m| t <= m)
    }
}

/// Scratch space of [`group_by_series`], kept by each applier.
#[derive(Default)]
struct GroupScratch {
    counts: Vec<u32>,
    tv: Vec<(i64, f64)>,
    out: Vec<(u64, i64, f64)>,
}

/// A shard's batch grouped by series.
enum Grouped<'a> {
    /// Series `lo + k` has the samples `tv[ends[k - 1]..ends[k]]` (from 0
    /// for `k = 0`).
    Dense {
        lo: u64,
        ends: &'a [u32],
        tv: &'a [(i64, f64)],
    },
    /// `(ref, t, v)` sorted by reference.
    Sorted(&'a [(u64, i64, f64)]),
}

/// Groups a shard's samples (the decoders' parts, in log order) by series
/// reference, each series' samples kept in log order: one lookup and one
/// lock per series per batch then. References come from a counter, so
/// they are dense: a stable counting sort places every sample's time and
/// value (the reference is implied by the place) with one counting pass
/// and one copy, no concatenation and no merge passes. Sparse references
/// fall back to concatenating and one stable sort.
fn group_by_series(batch: FloatBatch, g: &mut GroupScratch) -> Grouped<'_> {
    let FloatBatch { parts, lo, hi } = batch;
    let n: usize = parts.iter().map(Vec::len).sum();
    let keys = hi.saturating_sub(lo);
    if n == 0 || keys > (n as u64).saturating_mul(4) + 4096 || n >= u32::MAX as usize {
        g.out.clear();
        for p in &parts {
            g.out.extend_from_slice(p);
        }
        g.out.sort_by_key(|s| s.0);
        return Grouped::Sorted(&g.out);
    }
    let keys = keys as usize + 1;
    g.counts.clear();
    g.counts.resize(keys + 1, 0);
    for s in parts.iter().flatten() {
        g.counts[(s.0 - lo) as usize + 1] += 1;
    }
    for i in 1..g.counts.len() {
        g.counts[i] += g.counts[i - 1];
    }
    // Every slot is written below; the old contents do not matter.
    g.tv.resize(n, (0, 0.0));
    for &(r, t, v) in parts.iter().flatten() {
        let k = (r - lo) as usize;
        g.tv[g.counts[k] as usize] = (t, v);
        g.counts[k] += 1;
    }
    // Each key's counter now stands at the end of its samples.
    Grouped::Dense {
        lo,
        ends: &g.counts[..keys],
        tv: &g.tv,
    }
}

/// Float samples waiting for one applier, as the decoders split them.
struct Pending {
    parts: Vec<Vec<(u64, i64, f64)>>,
    len: usize,
    lo: u64,
    hi: u64,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            parts: Vec::new(),
            len: 0,
            lo: u64::MAX,
            hi: 0,
        }
    }
}

/// A shard's float samples handed to its applier: the decoders' parts in
/// log order and the range of their references (known from decoding, so
/// grouping need not scan for it).
struct FloatBatch {
    parts: Vec<Vec<(u64, i64, f64)>>,
    lo: u64,
    hi: u64,
}

impl Pending {
    /// Adds a part whose references lie in `bounds` (inclusive).
    fn push(&mut self, p: Vec<(u64, i64, f64)>, bounds: (u64, u64)) {
        if !p.is_empty() {
            self.len += p.len();
            self.lo = self.lo.min(bounds.0);
            self.hi = self.hi.max(bounds.1);
            self.parts.push(p);
        }
    }

    fn take(&mut self) -> FloatBatch {
        let b = FloatBatch {
            parts: std::mem::take(&mut self.parts),
            lo: self.lo,
            hi: self.hi,
        };
        *self = Pending::default();
        b
    }
}

/// The smallest and largest reference of `p`.
fn ref_bounds(p: &[(u64, i64, f64)]) -> (u64, u64) {
    p.iter()
        .fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s.0), hi.max(s.0)))
}

/// Where reading a segment stopped early.
struct Damage {
    segment: u32,
    path: PathBuf,
    good_until: usize,
    len: usize,
    msg: String,
}

/// Reads segments in order and sends their records in batches; returns the
/// first damage met (reading stops there).
fn read_segments(
    segs: &[(u32, PathBuf)],
    tx: &SyncSender<RawBatch>,
    segments_read: &AtomicU64,
) -> Result<Option<Damage>, io::Error> {
    let mut seq = 0u64;
    let mut batch = RawBatch {
        seq,
        data: Vec::with_capacity(DECODE_BATCH_BYTES),
        ends: Vec::new(),
        snappy: Vec::new(),
    };
    for (idx, path) in segs {
        // Mapped, not read: no copy into a fresh buffer (nothing writes a
        // segment while the head is being replayed from it).
        let data =
            crate::block::mmap::Bytes::open(path).map_err(|e| io::Error::other(e.to_string()))?;
        let data = data.as_ref();
        let mut r = SegmentReader::new(data);
        while let Some((snappy, rec)) = r.next_raw() {
            // Hand the batch over before a record would outgrow its buffer
            // (growing it would copy the whole batch).
            if !batch.ends.is_empty() && batch.data.len() + rec.len() > DECODE_BATCH_BYTES {
                seq += 1;
                let full = std::mem::replace(
                    &mut batch,
                    RawBatch {
                        seq,
                        data: Vec::with_capacity(DECODE_BATCH_BYTES),
                        ends: Vec::new(),
                        snappy: Vec::new(),
                    },
                );
                if tx.send(full).is_err() {
                    return Ok(None);
                }
            }
            batch.data.extend_from_slice(rec);
            batch.ends.push(batch.data.len());
            batch.snappy.push(snappy);
        }
        segments_read.fetch_add(1, Relaxed);
        if let Some(c) = r.corruption() {
            let _ = tx.send(batch);
            return Ok(Some(Damage {
                segment: *idx,
                path: path.clone(),
                good_until: c.good_until,
                len: data.len(),
                msg: c.msg.clone(),
            }));
        }
    }
    let _ = tx.send(batch);
    Ok(None)
}

/// Replays `segs` into `head` using every core: one thread reads and
/// checks fragments, `n` decode records, this thread creates series in log
/// order and routes samples by series to `n` appliers (so each series sees
/// its samples in order).
fn replay_segments(
    head: &Head,
    segs: &[(u32, PathBuf)],
    stats: &Mutex<ReplayStats>,
    mmapped: &mut ByRef<Vec<LoadedChunk>>,
    floor: &MmapFloor,
    tombstones: &Mutex<Vec<TombstoneRecord>>,
) -> Result<(Option<Damage>, ApplyStats), io::Error> {
    let n = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1);
    stats.lock().decode_threads = n;
    let segments_read = AtomicU64::new(0);
    let (raw_tx, raw_rx) = sync_channel::<RawBatch>(n * 2);
    let raw_rx = Mutex::new(raw_rx);
    let (dec_tx, dec_rx) = sync_channel::<DecodedBatch>(n * 2);
    let mut apply_txs: Vec<SyncSender<ShardBatch>> = Vec::with_capacity(n);
    let mut apply_rxs: Vec<Receiver<ShardBatch>> = Vec::with_capacity(n);
    for _ in 0..n {
        let (t, r) = sync_channel(1);
        apply_txs.push(t);
        apply_rxs.push(r);
    }
    let mut total = ApplyStats::default();
    let mut damage = None;
    let mut read_err = None;
    std::thread::scope(|sc| {
        let segments_read = &segments_read;
        let reader = sc.spawn(move || read_segments(segs, &raw_tx, segments_read));
        // Series enter the postings index as they are created, on their own
        // thread, instead of all at the end (the final gc drops those that
        // got no samples).
        let (index_tx, index_rx) = std::sync::mpsc::channel::<Vec<u64>>();
        let indexer = sc.spawn(move || {
            for refs in index_rx {
                head.index_replayed(&refs);
            }
        });
        for _ in 0..n {
            let dec_tx = dec_tx.clone();
            let raw_rx = &raw_rx;
            sc.spawn(move || {
                // Decompression buffer, reused (only growth is zeroed).
                let mut buf = Vec::new();
                loop {
                    let job = raw_rx.lock().recv();
                    let Ok(b) = job else { break };
                    let mut start = 0;
                    let mut records = Vec::with_capacity(b.ends.len());
                    for (k, &end) in b.ends.iter().enumerate() {
                        let raw = &b.data[start..end];
                        let rec: Result<&[u8], String> = if b.snappy.get(k) == Some(&true) {
                            super::reader::decompress(raw, &mut buf).map(|()| buf.as_slice())
                        } else {
                            Ok(raw)
                        };
                        let d = match rec {
                            // Samples go straight into per-shard parts.
                            Ok(r) if r.first() == Some(&record::SAMPLES) => {
                                // At least 10 bytes a sample.
                                let cap = r.len() / 10 / n + 16;
                                let mut parts: Vec<Vec<(u64, i64, f64)>> =
                                    (0..n).map(|_| Vec::with_capacity(cap)).collect();
                                let mut bounds = vec![(u64::MAX, 0u64); n];
                                let mut in_mmapped = 0usize;
                                let got = record::decode_samples_with(r, |sref, t, v| {
                                    if floor.covers(sref, t) {
                                        in_mmapped += 1;
                                    } else {
                                        let i = (sref % n as u64) as usize;
                                        parts[i].push((sref, t, v));
                                        let b = &mut bounds[i];
                                        *b = (b.0.min(sref), b.1.max(sref));
                                    }
                                });
                                match got {
                                    Ok(total) => Decoded::Samples {
                                        parts,
                                        bounds,
                                        total,
                                        in_mmapped,
                                    },
                                    Err(e) => Decoded::Record(Err(e)),
                                }
                            }
                            // A batch reaches the ordered dispatch only once
                            // decoded, so its series exist before any later
                            // record's samples are applied.
                            Ok(r) if r.first() == Some(&record::SERIES) => {
                                match record::decode(r) {
                                    Ok(Record::Series(v)) => Decoded::Series(
                                        v.into_iter()
                                            .map(|s| {
                                                let got =
                                                    head.replay_series(s.series_ref, &s.labels);
                                                (s.series_ref, got)
                                            })
                                            .collect(),
                                    ),
                                    other => Decoded::Record(other),
                                }
                            }
                            Ok(r) => Decoded::Record(record::decode(r)),
                            Err(_) => Decoded::Record(Err(record::RecordError {
                                pos: 0,
                                msg: "snappy payload does not decompress",
                            })),
                        };
                        records.push(d);
                        start = end;
                    }
                    if dec_tx
                        .send(DecodedBatch {
                            seq: b.seq,
                            records,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        drop(dec_tx);
        let mut appliers = Vec::with_capacity(n);
        for rx in apply_rxs {
            appliers.push(sc.spawn(move || {
                let mut st = ApplyStats::default();
                let mut scratch = GroupScratch::default();
                for batch in rx {
                    // Group each series' samples, keeping their order: one
                    // lookup and one lock per series per batch.
                    match batch {
                        ShardBatch::Floats(parts) => match group_by_series(parts, &mut scratch) {
                            Grouped::Sorted(b) => head.replay_samples(b, &mut st),
                            Grouped::Dense { lo, ends, tv } => {
                                let mut start = 0usize;
                                for (k, &end) in ends.iter().enumerate() {
                                    let end = end as usize;
                                    if end > start {
                                        head.replay_series_samples(
                                            lo + k as u64,
                                            &tv[start..end],
                                            &mut st,
                                        );
                                    }
                                    start = end;
                                }
                            }
                        },
                        ShardBatch::Histograms(mut batch) => {
                            batch.sort_by_key(|s| s.0);
                            head.replay_histograms(&batch, &mut st);
                        }
                    }
                }
                st
            }));
        }

        // Dispatch in log order.
        let mut aliases: ByRef<u64> = ByRef::default();
        let mut waiting: BTreeMap<u64, DecodedBatch> = BTreeMap::new();
        let mut next = 0u64;
        let mut shards: Vec<Pending> = (0..n).map(|_| Pending::default()).collect();
        let mut local = ReplayStats::default();
        let mut skipped_in_mmapped = 0u64;
        let base = stats.lock().clone();
        for b in dec_rx.iter() {
            waiting.insert(b.seq, b);
            while let Some(b) = waiting.remove(&next) {
                next += 1;
                for r in b.records {
                    local.records += 1;
                    let r = match r {
                        Decoded::Samples {
                            parts,
                            bounds,
                            total,
                            in_mmapped,
                        } => {
                            local.samples += total as u64;
                            skipped_in_mmapped += in_mmapped as u64;
                            if aliases.is_empty() {
                                for (i, (p, b)) in parts.into_iter().zip(bounds).enumerate() {
                                    shards[i].push(p, b);
                                }
                            } else {
                                let mut moved: Vec<Vec<(u64, i64, f64)>> =
                                    (0..n).map(|_| Vec::new()).collect();
                                for (r, t, v) in parts.into_iter().flatten() {
                                    let r = aliases.get(&r).copied().unwrap_or(r);
                                    moved[(r % n as u64) as usize].push((r, t, v));
                                }
                                for (i, p) in moved.into_iter().enumerate() {
                                    let b = ref_bounds(&p);
                                    shards[i].push(p, b);
                                }
                            }
                            continue;
                        }
                        Decoded::Series(v) => {
                            local.series += v.len() as u64;
                            let mut refs = Vec::with_capacity(v.len());
                            for (wal_ref, got) in v {
                                refs.extend(got);
                                if !mmapped.is_empty()
                                    && let (Some(r), Some(chunks)) = (got, mmapped.remove(&wal_ref))
                                {
                                    local.mmapped_chunks += head.attach_mmapped(r, chunks);
                                }
                                match got {
                                    Some(r) if r != wal_ref => {
                                        aliases.insert(wal_ref, r);
                                    }
                                    Some(_) if !aliases.is_empty() => {
                                        aliases.remove(&wal_ref);
                                    }
                                    _ => {}
                                }
                            }
                            let _ = index_tx.send(refs);
                            continue;
                        }
                        Decoded::Record(r) => r,
                    };
                    match r {
                        Ok(Record::Series(v)) => {
                            local.series += v.len() as u64;
                            let mut refs = Vec::with_capacity(v.len());
                            for s in v {
                                let got = head.replay_series(s.series_ref, &s.labels);
                                refs.extend(got);
                                if let (Some(r), Some(chunks)) =
                                    (got, mmapped.remove(&s.series_ref))
                                {
                                    local.mmapped_chunks += head.attach_mmapped(r, chunks);
                                }
                                match got {
                                    Some(r) if r != s.series_ref => {
                                        aliases.insert(s.series_ref, r);
                                    }
                                    Some(_) => {
                                        aliases.remove(&s.series_ref);
                                    }
                                    None => {}
                                }
                            }
                            let _ = index_tx.send(refs);
                        }
                        Ok(Record::Samples(_)) => {
                            panic!("BUG: samples records are split by the decoders")
                        }
                        Ok(Record::Tombstones(v)) => {
                            local.tombstones += v.len() as u64;
                            let mut t = tombstones.lock();
                            for mut x in v {
                                x.series_ref =
                                    aliases.get(&x.series_ref).copied().unwrap_or(x.series_ref);
                                t.push(x);
                            }
                        }
                        Ok(Record::Histograms(v)) => {
                            local.samples += v.len() as u64;
                            let mut parts: Vec<Vec<(u64, i64, HistogramValue)>> =
                                (0..n).map(|_| Vec::new()).collect();
                            for x in v {
                                let r = aliases.get(&x.series_ref).copied().unwrap_or(x.series_ref);
                                parts[(r % n as u64) as usize].push((r, x.t, x.h));
                            }
                            for (i, p) in parts.into_iter().enumerate() {
                                if p.is_empty() {
                                    continue;
                                }
                                // Floats logged before these go first.
                                if shards[i].len > 0 {
                                    let f = shards[i].take();
                                    let _ = apply_txs[i].send(ShardBatch::Floats(f));
                                }
                                let _ = apply_txs[i].send(ShardBatch::Histograms(p));
                            }
                        }
                        Ok(Record::Exemplars(v)) => {
                            crate::exemplar::replay(head, v, |r| {
                                aliases.get(&r).copied().unwrap_or(r)
                            });
                        }
                        Ok(Record::Other(_)) => local.records_skipped += 1,
                        Err(e) => {
                            // Warn once per replay, count every one.
                            if local.records_undecodable == 0 {
                                tracing::warn!(error = %e, "skipping a WAL record that does not decode (further ones are only counted)");
                            }
                            local.records_undecodable += 1;
                            local.records_skipped += 1;
                        }
                    }
                }
                for (i, sh) in shards.iter_mut().enumerate() {
                    if sh.len >= SHARD_BATCH {
                        let _ = apply_txs[i].send(ShardBatch::Floats(sh.take()));
                    }
                }
                // Counts add to those of an earlier call (the checkpoint's).
                let mut g = stats.lock();
                g.records = base.records + local.records;
                g.series = base.series + local.series;
                g.samples = base.samples + local.samples;
                g.tombstones = base.tombstones + local.tombstones;
                g.records_skipped = base.records_skipped + local.records_skipped;
                g.records_undecodable = base.records_undecodable + local.records_undecodable;
                g.mmapped_chunks = base.mmapped_chunks + local.mmapped_chunks;
                g.segments_read = segments_read.load(Relaxed);
            }
        }
        for (i, mut sh) in shards.into_iter().enumerate() {
            if sh.len > 0 {
                let _ = apply_txs[i].send(ShardBatch::Floats(sh.take()));
            }
        }
        drop(apply_txs);
        for a in appliers {
            match a.join() {
                Ok(st) => total.merge(&st),
                Err(_) => panic!("BUG: WAL replay applier panicked"),
            }
        }
        total.in_mmapped += skipped_in_mmapped;
        drop(index_tx);
        if indexer.join().is_err() {
            panic!("BUG: WAL replay indexer panicked");
        }
        match reader.join() {
            Ok(Ok(d)) => damage = d,
            Ok(Err(e)) => read_err = Some(e),
            Err(_) => panic!("BUG: WAL segment reader panicked"),
        }
    });
    if let Some(e) = read_err {
        return Err(e);
    }
    stats.lock().segments_read = segments_read.load(Relaxed);
    Ok((damage, total))
}

/// Truncates the damaged segment at its last good record and removes the
/// segments after it. Returns the bytes dropped.
fn repair(d: &Damage, later: &[(u32, PathBuf)]) -> io::Result<u64> {
    let mut dropped = (d.len - d.good_until) as u64;
    let f = fs::OpenOptions::new().write(true).open(&d.path)?;
    f.set_len(d.good_until as u64)?;
    f.sync_all()?;
    for (_, p) in later {
        dropped += fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(p)?;
    }
    Ok(dropped)
}

/// Opens (and repairs) `dir/wal`, replays its checkpoint and segments into a
/// new head (decoding on all cores), and attaches a [`CommitLog`] that
/// writes every commit to the WAL before it becomes visible. Any commit log
/// in `head_opts` is replaced.
///
/// Memory-mapped head chunks (`chunks_head/`) are not written yet: the
/// whole head is rebuilt from the WAL.
pub fn open_head(
    dir: &Path,
    head_opts: HeadOptions,
    wal_opts: WalOptions,
) -> Result<(Head, Arc<HeadWal>), TsdbError> {
    let wal_dir = dir.join("wal");
    fs::create_dir_all(&wal_dir).map_err(|e| io_err("creating", &wal_dir, e))?;
    let hw = Arc::new(HeadWal {
        dir: wal_dir.clone(),
        opts: wal_opts,
        wal: OnceLock::new(),
        chunks: OnceLock::new(),
        replay: Mutex::new(ReplayStats::default()),
        tombstones: Mutex::new(Vec::new()),
        corruptions: AtomicU64::new(0),
        checkpoints: AtomicU64::new(0),
        checkpoints_failed: AtomicU64::new(0),
        truncations: AtomicU64::new(0),
        checkpoint_lock: Mutex::new(()),
        closed: AtomicBool::new(false),
    });
    let mut opts = head_opts;
    opts.commit_log = Some(hw.clone());
    let head = Head::new(opts);
    let started = Instant::now();

    // Leftovers of an interrupted checkpoint.
    if let Ok(rd) = fs::read_dir(&wal_dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("checkpoint.") && name.ends_with(".tmp") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    let chunks_dir = dir.join("chunks_head");
    let (mapper, loaded) =
        ChunkDiskMapper::open(&chunks_dir).map_err(|e| io_err("opening", &chunks_dir, e))?;
    let mapper = Arc::new(mapper);
    hw.corruptions
        .fetch_add(mapper.corruptions.load(Relaxed), Relaxed);
    hw.replay.lock().corruptions += mapper.corruptions.load(Relaxed);
    // One (stable: the older of two equal chunks wins) sort, then each
    // series' run is moved out whole into an exact-sized vector of a map
    // sized once: cheaper than growing a vector per series.
    let mut loaded = loaded;
    loaded.sort_by_key(|c| (c.series_ref, c.mint));
    let runs: Vec<usize> = loaded
        .chunk_by(|a, b| a.series_ref == b.series_ref)
        .map(<[LoadedChunk]>::len)
        .collect();
    let mut mmapped: ByRef<Vec<LoadedChunk>> = ByRef::default();
    mmapped.reserve(runs.len());
    let mut it = loaded.into_iter();
    for len in runs {
        let mut v = Vec::with_capacity(len);
        // Keep a strictly increasing, non-overlapping run.
        let mut last = i64::MIN;
        let mut sref = None;
        for c in it.by_ref().take(len) {
            sref = Some(c.series_ref);
            if c.mint > last && c.mint <= c.maxt {
                last = c.maxt;
                v.push(c);
            }
        }
        if let Some(r) = sref {
            mmapped.insert(r, v);
        }
    }

    let floor = MmapFloor::new(&mmapped);
    let mut total = ApplyStats::default();
    let mut start_from = 0u32;
    if let Some((idx, cdir)) =
        last_checkpoint(&wal_dir).map_err(|e| io_err("listing", &wal_dir, e))?
    {
        hw.replay.lock().checkpoint = Some(idx);
        start_from = idx.saturating_add(1);
        let csegs = list_segments(&cdir).map_err(|e| io_err("listing", &cdir, e))?;
        let (damage, st) = replay_segments(
            &head,
            &csegs,
            &hw.replay,
            &mut mmapped,
            &floor,
            &hw.tombstones,
        )
        .map_err(|e| io_err("reading", &cdir, e))?;
        total.merge(&st);
        if let Some(d) = damage {
            // A checkpoint is written whole before it replaces anything, so
            // damage here is disk trouble: keep what was read, say so.
            hw.corruptions.fetch_add(1, Relaxed);
            hw.replay.lock().corruptions += 1;
            tracing::error!(
                segment = %d.path.display(),
                offset = d.good_until,
                error = %d.msg,
                "WAL checkpoint is damaged; replayed it up to the damage"
            );
        }
    }
    let all = list_segments(&wal_dir).map_err(|e| io_err("listing", &wal_dir, e))?;
    let segs: Vec<(u32, PathBuf)> = all.into_iter().filter(|s| s.0 >= start_from).collect();
    for w in segs.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            tracing::warn!(
                after = w[0].0,
                next = w[1].0,
                "WAL segments are not contiguous"
            );
        }
    }
    hw.replay.lock().segments_total = segs.len() as u64;
    let (damage, st) = replay_segments(
        &head,
        &segs,
        &hw.replay,
        &mut mmapped,
        &floor,
        &hw.tombstones,
    )
    .map_err(|e| io_err("reading", &wal_dir, e))?;
    total.merge(&st);
    let mut next_index = segs.last().map_or(start_from, |s| s.0.saturating_add(1));
    if let Some(d) = damage {
        let later: Vec<(u32, PathBuf)> = segs.iter().filter(|s| s.0 > d.segment).cloned().collect();
        let dropped = repair(&d, &later).map_err(|e| io_err("repairing", &d.path, e))?;
        hw.corruptions.fetch_add(1, Relaxed);
        {
            let mut g = hw.replay.lock();
            g.corruptions += 1;
            g.bytes_dropped += dropped;
        }
        tracing::warn!(
            segment = %d.path.display(),
            offset = d.good_until,
            bytes_dropped = dropped,
            segments_removed = later.len(),
            error = %d.msg,
            "WAL corruption repaired: truncated at the last good record, dropped what followed"
        );
        next_index = d.segment.saturating_add(1);
    }
    let unattached: usize = mmapped.values().map(Vec::len).sum();
    if unattached > 0 {
        tracing::info!(
            chunks = unattached,
            "head chunks of series absent from the WAL were dropped"
        );
    }
    drop(mmapped);
    head.finish_replay(&total);
    head.set_chunk_mapper(mapper.clone());
    // Chunks the replay closed go to chunks_head/ now (Prometheus writes
    // them while replaying), so the next start loads them.
    head.write_closed_chunks();
    let _ = hw.chunks.set(mapper);
    {
        let mut g = hw.replay.lock();
        g.samples_applied = total.appended;
        g.samples_rejected = total.out_of_order;
        g.samples_unknown_series = total.unknown_series;
        g.samples_in_mmapped_chunks = total.in_mmapped;
        g.duration = started.elapsed();
        g.done = true;
        tracing::info!(
            segments = g.segments_read,
            checkpoint = ?g.checkpoint,
            series = g.series,
            samples = g.samples,
            applied = g.samples_applied,
            duration_ms = g.duration.as_millis() as u64,
            samples_per_second = g.samples_per_second() as u64,
            threads = g.decode_threads,
            "WAL replay completed"
        );
    }
    let wal = Wal::create(&wal_dir, wal_opts, next_index)
        .map_err(|e| io_err("creating a segment in", &wal_dir, e))?;
    if hw.wal.set(wal).is_err() {
        panic!("BUG: WAL writer set twice");
    }
    Ok((head, hw))
}

#[cfg(test)]
mod group_tests {
    use proptest::prelude::*;

    use super::{FloatBatch, GroupScratch, Grouped, group_by_series};

    proptest! {
        /// Grouping equals a stable sort by reference, for dense runs,
        /// sparse references and unsorted input alike.
        #[test]
        fn grouping_is_a_stable_sort(
            runs in prop::collection::vec(prop::collection::vec(0u64..3000, 0..400), 0..40),
            sparse in any::<bool>(),
            shuffled in any::<bool>(),
        ) {
            let mut parts = Vec::new();
            for (i, mut r) in runs.into_iter().enumerate() {
                if !shuffled {
                    r.sort_unstable();
                }
                let p: Vec<(u64, i64, f64)> = r
                    .into_iter()
                    .enumerate()
                    .map(|(j, x)| {
                        let x = if sparse { x * 1_000_003 } else { x };
                        (x, (i * 1000 + j) as i64, j as f64)
                    })
                    .collect();
                parts.push(p);
            }
            let mut want: Vec<(u64, i64, f64)> = parts.iter().flatten().copied().collect();
            want.sort_by_key(|s| s.0);
            let mut g = GroupScratch::default();
            // Twice, to reuse the scratch space.
            for _ in 0..2 {
                let (lo, hi) = super::ref_bounds(&want);
                let batch = FloatBatch { parts: parts.clone(), lo, hi };
                let got: Vec<(u64, i64, f64)> = match group_by_series(batch, &mut g) {
                    Grouped::Sorted(b) => b.to_vec(),
                    Grouped::Dense { lo, ends, tv } => {
                        let mut out = Vec::new();
                        let mut start = 0usize;
                        for (k, &end) in ends.iter().enumerate() {
                            for &(t, v) in &tv[start..end as usize] {
                                out.push((lo + k as u64, t, v));
                            }
                            start = end as usize;
                        }
                        out
                    }
                };
                prop_assert_eq!(&got, &want);
            }
        }
    }
}
