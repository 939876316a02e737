//! The pharos time-series database.
//!
//! A data directory in Prometheus's own format, so one directory moves
//! between Prometheus and pharos in both directions: the in-memory [`Head`]
//! (made durable by the write-ahead log in [`wal`] and the head chunk files
//! in `chunks_head/`), persistent [`block`]s (`meta.json`, `index` v2,
//! `chunks/`, `tombstones`), and the [`Db`] that ties them together: it
//! serves the head and every overlapping block as one merged
//! [`pharos_storage::Queryable`], cuts the head into blocks, compacts blocks
//! level by level and applies retention, as Prometheus does. Every on-disk
//! format is specified in our own words under `docs/format/`; Prometheus's
//! XOR chunk encoding lives in [`chunkenc`].
//!
//! **Why Prometheus's formats and not our own.** The compatibility contract
//! is the data directory itself: a team switches by pointing pharos at what
//! Prometheus wrote (and back). Block files are immutable once written, so
//! readers memory-map them and decode lazily with bounds-checked decoders
//! that report corruption instead of panicking; a block that fails to open
//! is logged, counted and skipped while the rest is served. Queries hold
//! `Arc`s of the blocks they read, so compaction and retention never delete
//! files under a running query.
//!
//! # Design
//!
//! **Series and references.** Every series gets a stable `u64` reference
//! from a counter (Prometheus's `HeadSeriesRef`), never reused, so a stale
//! reference cached by a scrape loop can never hit another series: lookup
//! fails and the appender falls back to the labels. The series live in two
//! striped maps (64 stripes by default, each behind its own `RwLock`
//! padded to a cache line): by reference, the append hot path, and by label
//! hash (with a side table for hash collisions), for creation. Each series
//! has its own `parking_lot` mutex around its chunks; there is no global
//! lock on the append path.
//!
//! **Labels.** A series holds the caller's [`pharos_model::Labels`] itself:
//! one immutable reference-counted buffer with the pairs length-prefixed.
//! We chose sharing this buffer over interning strings into a symbol table:
//! the scrape loop already keeps the same `Labels` in its cache, so the head
//! costs an `Arc` bump rather than a second copy; queries hand the same
//! buffer back without rebuilding label sets from symbols; and there is no
//! global symbol table to lock on series creation or to garbage-collect.
//! Repeated strings *are* stored once where it matters for memory, in the
//! postings index (each distinct name and value is one key). Measured by
//! `examples/heap_per_series.rs` on 100 k node_exporter-like series: about
//! 370 bytes per series of structure (label buffer, series, maps, postings)
//! plus the chunk data (about 1.5 bytes per sample), so under 600 bytes per
//! series holding a full 120-sample chunk.
//!
//! **Append path.** Scrape loops pass back the reference they got, so the
//! hot path is: reference -> series (a directly indexed, segmented table per
//! stripe, walked nearly sequentially because references are handed out in
//! scrape order), series mutex, compare with the newest sample, buffer.
//! The XOR encoder keeps its last partial word in the series, so a commit
//! touches a chunk buffer only to store whole words. Measured at about
//! 10 M samples per CPU-second on one core (`benches/head.rs`).
//!
//! **Chunks.** A series appends to one open XOR chunk and keeps a list of
//! closed ones (each with its min/max time; bytes shared with queriers
//! without copying). A chunk is cut at 120 samples, as in Prometheus, and
//! also when a sample crosses a chunk-range boundary (2h aligned), so chunks
//! never straddle future block boundaries. With a data directory, closed
//! chunks are written in batches to `chunks_head/` (Prometheus's head chunk
//! format) and replaced by views into a read-only memory map of the file, so
//! the heap holds only each series' open chunk (`docs/format/head_chunks.md`).
//!
//! **Native histograms.** A series' open chunk is either XOR or a
//! histogram chunk (integer or float counts, Prometheus's encodings 2 and
//! 3); the histogram state is boxed inside the open-chunk enum, where it
//! fits the XOR appender's niche, so float series pay nothing for it. A
//! series may switch between floats and histograms: a new chunk is cut on
//! every change of kind, as in Prometheus, and histogram chunks are also cut
//! at about 1 KiB (from 10 samples on) and when the encoder asks (counter
//! reset, schema change, after a stale marker). Closed chunks carry their
//! encoding byte in the padding of their bytes handle, into `chunks_head/`
//! and blocks. Histograms are logged to the WAL as Prometheus's records 7-10
//! and replayed in log order with the float samples. Readers return float
//! histograms (integer counts converted) through
//! [`pharos_storage::SampleIter::histogram`].
//!
//! **Write-ahead log.** [`open_head`] builds a head from `wal/` (checkpoint,
//! then segments) and `chunks_head/`, repairing a torn or corrupt tail by
//! truncating at the last good record, and attaches a [`CommitLog`] that
//! writes every commit to the WAL, in Prometheus's format, before it becomes
//! visible: a sample a query saw survives kill -9. Replay decodes records on
//! every core and applies samples sharded by series, so each series sees its
//! samples in log order (`docs/format/wal.md`).
//!
//! **Appending.** An appender validates each sample against the series'
//! newest committed sample (and its own earlier sample of that series):
//! older is [`pharos_storage::AppendError::OutOfOrder`], same time with
//! other value bits is `Duplicate`, same time and bits is accepted as a
//! no-op. Samples older than half a chunk range behind the head's newest
//! sample are `OutOfBounds`, Prometheus's rule. Accepted samples are
//! buffered; `commit` groups them by series, records them in the optional
//! [`CommitLog`] (the write-ahead-log seam: called before anything becomes
//! visible, a failure aborts the commit), then locks each series once and
//! appends all its samples, so a series' batch becomes visible atomically.
//! Samples made invalid by a concurrent commit are dropped and counted.
//!
//! **Visibility and garbage.** Series are created when first appended to
//! (so concurrent appenders agree on one reference) but enter the postings
//! index only when their first sample is committed. Queries go through the
//! index, so a series created by an appender that rolls back is never seen;
//! the rollback removes it at once unless another open appender still
//! holds samples for it, and [`Head::gc`] sweeps any that remain.
//! [`Head::truncate`] drops chunks older than a time and series left empty:
//! the entry point for retention and block cutting.
//!
//! **Postings.** Label name -> value -> sorted `Vec<u64>` of references plus
//! a list of all series. Matchers resolve with Prometheus's semantics: a
//! matcher that accepts the empty string also selects series without the
//! label, implemented by subtracting the series whose value it rejects.
//!
//! **Queries.** A querier is owned (`'static`): it holds an `Arc` of the
//! head, resolves postings to `Arc`s of series, and snapshots a series'
//! chunks only when the caller reaches that series (sharing closed chunks,
//! copying the small open one). Samples are decoded lazily, restricted to
//! the query range, with `seek` skipping whole chunks by their time bounds.

pub mod block;
mod chunk_samples;
pub mod chunkenc;
pub mod db;
pub mod exemplar;
mod head;
mod head_chunks;
mod postings;
pub mod record;
pub mod wal;

pub use db::{Db, DbOptions};
pub use head::{
    CommitBatch, CommitLog, DEFAULT_CHUNK_RANGE, DEFAULT_MAX_SAMPLES_PER_CHUNK, Head, HeadOptions,
    HeadStats, SampleRecord, SeriesRecord, TruncateStats,
};
pub use wal::{HeadWal, ReplayStats, WalOptions, open_head};

/// Errors of the TSDB crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TsdbError {
    /// A chunk cannot take more samples.
    #[error("chunk is full ({0} samples)")]
    ChunkFull(u16),
    /// Chunk bytes do not decode.
    #[error("corrupt chunk: {0}")]
    CorruptChunk(String),
    /// A histogram sample cannot be stored (schema out of range, bucket
    /// counts not matching the spans).
    #[error("invalid histogram: {0}")]
    InvalidHistogram(String),
    /// Reading, writing or repairing the write-ahead log failed.
    #[error("WAL: {0}")]
    Wal(String),
    /// Reading or writing a block (or the data directory) failed.
    #[error("block I/O: {0}")]
    BlockIo(String),
    /// A block file does not decode (bad magic, checksum, bounds...).
    #[error("corrupt block: {0}")]
    CorruptBlock(String),
    /// Another process holds the data directory lock.
    #[error("data directory is locked: {0}")]
    DirLocked(String),
}
