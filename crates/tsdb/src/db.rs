//! The database: a data directory of persistent blocks plus the in-memory
//! head, served as one merged view.
//!
//! [`Db`] owns the directory (an `flock` on its `lock` file keeps a second
//! pharos off it; Prometheus's source takes the same `flock` on Linux, but
//! the Debian 2.42 build we test against was observed to hold no lock, so a
//! Prometheus started on a directory pharos is using is not stopped), opens every block found there (including blocks written by
//! Prometheus), cuts the head into a block once it spans more than 1.5
//! block ranges, merges blocks level by level with Prometheus's planner
//! (2h, 6h, 18h... up to the maximum block duration) and applies retention
//! by time and by size. Blocks overlapping in time (a backfill, or a
//! directory Prometheus left so) are merged first, samples deduplicated
//! (vertical compaction); merges copy chunks nothing overlaps
//! ([`block::compact_blocks`]). Queries hold `Arc`s of the blocks they read, so a
//! block retired meanwhile is only removed from disk when the last query
//! using it finishes.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use pharos_model::{FloatHistogram, Labels, Matcher, Sample, Timestamp};
use pharos_storage::{
    Appendable, Appender, Querier, Queryable, SampleIter, SelectHints, Series, SeriesSet,
    StorageError,
};

use crate::block::{self, Block, BlockCompaction, BlockDesc, BlockMeta};
use crate::record::TombstoneRecord;
use crate::{Head, HeadOptions, HeadWal, TsdbError, WalOptions, open_head};

/// Two hours in milliseconds, the default (minimum) block range.
pub const DEFAULT_BLOCK_DURATION: i64 = 2 * 3600 * 1000;

/// Database configuration.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Range of blocks cut from the head (ms). Default 2h.
    pub min_block_duration: i64,
    /// Largest range a compacted block may cover (ms). Default: 10 % of the
    /// retention time, at most 31 days.
    pub max_block_duration: i64,
    /// Blocks whose end lies this far behind the newest block's end are
    /// deleted (ms; 0 disables). Default 15d.
    pub retention_time: i64,
    /// Oldest blocks are deleted while the blocks take more bytes than
    /// this (0 disables).
    pub retention_size: u64,
    /// Head options; its `chunk_range` is set to `min_block_duration`.
    pub head: HeadOptions,
    /// Write-ahead log options.
    pub wal: WalOptions,
}

impl DbOptions {
    /// Options for a retention time, with Prometheus's derived maximum
    /// block duration.
    pub fn with_retention(retention_time: i64) -> DbOptions {
        DbOptions {
            retention_time,
            max_block_duration: default_max_block_duration(retention_time),
            ..DbOptions::default()
        }
    }
}

/// Prometheus's default maximum block duration: 10 % of retention, at
/// most 31 days, at least the minimum block duration.
pub fn default_max_block_duration(retention_time: i64) -> i64 {
    let r = if retention_time > 0 {
        retention_time / 10
    } else {
        31 * 24 * 3600 * 1000
    };
    r.clamp(DEFAULT_BLOCK_DURATION, 31 * 24 * 3600 * 1000)
}

impl Default for DbOptions {
    fn default() -> Self {
        let retention = 15 * 24 * 3600 * 1000;
        DbOptions {
            min_block_duration: DEFAULT_BLOCK_DURATION,
            max_block_duration: default_max_block_duration(retention),
            retention_time: retention,
            retention_size: 0,
            head: HeadOptions::default(),
            wal: WalOptions::default(),
        }
    }
}

#[derive(Default)]
struct Counters {
    compactions: AtomicU64,
    compactions_failed: AtomicU64,
    vertical_compactions: AtomicU64,
    head_compactions: AtomicU64,
    corrupt_blocks: AtomicU64,
    time_retentions: AtomicU64,
    size_retentions: AtomicU64,
}

struct DbInner {
    dir: PathBuf,
    opts: DbOptions,
    /// Retention in force (ms, bytes): `opts`' values at open, then what
    /// [`Db::set_retention`] sets (a configuration reload).
    retention_time: AtomicI64,
    retention_size: AtomicU64,
    head: Head,
    wal: Arc<HeadWal>,
    blocks: RwLock<Vec<Arc<Block>>>,
    lock: File,
    compact_mtx: Mutex<()>,
    head_min_valid: AtomicI64,
    counters: Counters,
    /// Deletions of head data (the head has no tombstones of its own),
    /// logged to the WAL as tombstones records and read back on open:
    /// applied to every head query and to blocks cut from the head.
    head_deletes: RwLock<Arc<HeadDeletes>>,
    /// Open queriers and their time ranges: the head is not truncated
    /// under a query that started before the block holding the truncated
    /// data was added (Prometheus's "wait for pending readers").
    readers: Mutex<std::collections::BTreeMap<u64, (i64, i64)>>,
    readers_done: parking_lot::Condvar,
    next_reader: AtomicU64,
}

/// Registration of an open querier; unregisters on drop.
struct ReaderGuard {
    db: Arc<DbInner>,
    id: u64,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.db.readers.lock().remove(&self.id);
        self.db.readers_done.notify_all();
    }
}

/// How long a head truncation waits for older queries before going ahead.
const READER_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Deleted intervals (inclusive) of head series, by the series' labels
/// (what a head querier hands out). As in Prometheus, a deletion covers the
/// series that existed when it was made, within their time range then.
type HeadDeletes = HashMap<Labels, Vec<(i64, i64)>>;

/// Adds the tombstones `stones` (of head series) to `into`; tombstones of
/// series no longer in the head are ignored.
fn add_head_tombstones(head: &Head, into: &mut HeadDeletes, stones: &[TombstoneRecord]) {
    for t in stones {
        if t.mint > t.maxt {
            continue;
        }
        if let Some(ls) = head.series_labels(t.series_ref) {
            let ivs = into.entry(ls).or_default();
            if !ivs.contains(&(t.mint, t.maxt)) {
                ivs.push((t.mint, t.maxt));
            }
        }
    }
}

/// The database: blocks on disk plus the head. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.inner.dir)
            .field("blocks", &self.inner.blocks.read().len())
            .finish()
    }
}

fn io_err(p: &Path, e: std::io::Error) -> TsdbError {
    TsdbError::BlockIo(format!("{}: {e}", p.display()))
}

/// Blocks that opened (oldest first) and block directories that did not,
/// with the reason.
pub type OpenedBlocks = (Vec<Arc<Block>>, Vec<(PathBuf, TsdbError)>);

/// Opens every block directory in `dir`. Blocks that fail to open are
/// logged and returned separately; they stay on disk untouched.
pub fn open_blocks(dir: &Path) -> Result<OpenedBlocks, TsdbError> {
    let mut blocks = Vec::new();
    let mut bad = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let p = e.path();
        if name.ends_with(".tmp-for-creation") || name.ends_with(".tmp-for-deletion") {
            tracing::info!(dir = %p.display(), "removing leftover temporary block directory");
            let _ = std::fs::remove_dir_all(&p);
            continue;
        }
        if !block::is_block_dir_name(name) || !p.is_dir() {
            continue;
        }
        match Block::open(&p) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(err) => {
                tracing::error!(block = %p.display(), err = %err, "block is corrupted; setting it aside and serving the rest");
                bad.push((p, err));
            }
        }
    }
    blocks.sort_by_key(|b| b.meta().min_time);
    Ok((blocks, bad))
}

impl Db {
    /// Opens (creating if needed) the data directory `dir`.
    pub fn open(dir: &Path, mut opts: DbOptions) -> Result<Db, TsdbError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        // `flock`, as Prometheus's own lock on this file is on Linux.
        if let Err(e) = lock.try_lock() {
            return Err(TsdbError::DirLocked(format!(
                "{} is in use by another process (pharos or Prometheus): {e}",
                lock_path.display()
            )));
        }
        if opts.min_block_duration <= 0 {
            opts.min_block_duration = DEFAULT_BLOCK_DURATION;
        }
        opts.max_block_duration = opts.max_block_duration.max(opts.min_block_duration);
        let (mut blocks, bad) = open_blocks(dir)?;
        // Blocks merged into a newer block are left over from a crash
        // between writing the new block and deleting its parents.
        let parents: BTreeSet<String> = blocks
            .iter()
            .flat_map(|b| b.meta().compaction.parents.iter().map(|p| p.ulid.clone()))
            .collect();
        blocks.retain(|b| {
            if parents.contains(&b.meta().ulid) {
                tracing::info!(block = %b.meta().ulid, "deleting block already compacted into another");
                b.mark_deleted();
                false
            } else {
                true
            }
        });
        let mut head_opts = opts.head.clone();
        head_opts.chunk_range = opts.min_block_duration;
        // The head comes back from the write-ahead log and chunks_head/.
        let (head, wal) = open_head(dir, head_opts, opts.wal)?;
        let min_valid = blocks
            .iter()
            .map(|b| b.meta().max_time)
            .max()
            .unwrap_or(i64::MIN);
        if min_valid > i64::MIN {
            head.truncate(min_valid);
        }
        // Deletions of head data logged before the restart.
        let mut head_deletes = HeadDeletes::new();
        let stones: Vec<TombstoneRecord> = wal
            .replayed_tombstones()
            .into_iter()
            .filter(|t| t.maxt >= min_valid)
            .collect();
        add_head_tombstones(&head, &mut head_deletes, &stones);
        tracing::info!(dir = %dir.display(), blocks = blocks.len(), corrupt = bad.len(), "TSDB opened");
        let counters = Counters::default();
        counters
            .corrupt_blocks
            .store(bad.len() as u64, Ordering::Relaxed);
        Ok(Db {
            inner: Arc::new(DbInner {
                dir: dir.to_path_buf(),
                retention_time: AtomicI64::new(opts.retention_time),
                retention_size: AtomicU64::new(opts.retention_size),
                opts,
                head,
                wal,
                blocks: RwLock::new(blocks),
                lock,
                compact_mtx: Mutex::new(()),
                head_min_valid: AtomicI64::new(min_valid),
                counters,
                head_deletes: RwLock::new(Arc::new(head_deletes)),
                readers: Mutex::new(std::collections::BTreeMap::new()),
                readers_done: parking_lot::Condvar::new(),
                next_reader: AtomicU64::new(0),
            }),
        })
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.inner.head
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the database was opened with (the retention in force
    /// may have changed since: see [`Db::retention`]).
    pub fn options(&self) -> &DbOptions {
        &self.inner.opts
    }

    /// The blocks currently served, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.inner.blocks.read().clone()
    }

    /// The write-ahead log of the head.
    pub fn wal(&self) -> &Arc<HeadWal> {
        &self.inner.wal
    }

    /// Writes the head's closed chunks to `chunks_head/` (so a restart
    /// replays less of the WAL), closes the write-ahead log and releases the
    /// directory lock. The `Db` must not be used afterwards.
    pub fn close(&self) -> Result<(), TsdbError> {
        self.inner.head.write_closed_chunks();
        let r = self.inner.wal.close();
        self.inner
            .lock
            .unlock()
            .map_err(|e| io_err(&self.inner.dir.join("lock"), e))?;
        r
    }

    /// Runs one round of maintenance: cuts the head into blocks while it
    /// spans more than 1.5 block ranges, merges blocks per the planner, and
    /// applies retention. Called periodically by the server.
    pub fn compact(&self) -> Result<(), TsdbError> {
        let _g = self.inner.compact_mtx.lock();
        let r = self.compact_head().and_then(|()| self.compact_blocks());
        if r.is_err() {
            self.inner
                .counters
                .compactions_failed
                .fetch_add(1, Ordering::Relaxed);
        }
        self.apply_retention()?;
        r
    }

    fn compact_head(&self) -> Result<(), TsdbError> {
        let range = self.inner.opts.min_block_duration;
        loop {
            let head = &self.inner.head;
            let (Some(hmin), Some(hmax)) = (head.min_time(), head.max_time()) else {
                return Ok(());
            };
            let hmin = hmin.max(self.inner.head_min_valid.load(Ordering::SeqCst));
            if hmax.saturating_sub(hmin) <= range / 2 * 3 {
                return Ok(());
            }
            let mint = hmin.div_euclid(range) * range;
            let maxt = mint + range;
            let q = self
                .head_querier(mint, maxt - 1)
                .map_err(|e| TsdbError::BlockIo(e.to_string()))?;
            let meta =
                block::write_block(&self.inner.dir, &*q, mint, maxt, BlockCompaction::default())?;
            if let Some(meta) = meta {
                let b = Block::open(&self.inner.dir.join(&meta.ulid))?;
                tracing::info!(ulid = %meta.ulid, mint, maxt, series = meta.stats.num_series, samples = meta.stats.num_samples, "wrote block from the head");
                self.add_block(Arc::new(b));
                self.inner
                    .counters
                    .head_compactions
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.inner.head_min_valid.fetch_max(maxt, Ordering::SeqCst);
            self.wait_for_readers_before(maxt);
            head.truncate(maxt);
            // The WAL keeps only what the head still holds.
            self.inner.wal.checkpoint(head, maxt)?;
            let mut d = self.inner.head_deletes.write();
            if d.values().flatten().any(|x| x.1 < maxt) {
                let mut kept = (**d).clone();
                for ivs in kept.values_mut() {
                    ivs.retain(|x| x.1 >= maxt);
                }
                kept.retain(|_, ivs| !ivs.is_empty());
                *d = Arc::new(kept);
            }
        }
    }

    fn add_block(&self, b: Arc<Block>) {
        let mut g = self.inner.blocks.write();
        g.push(b);
        g.sort_by_key(|b| b.meta().min_time);
    }

    /// Block ranges of the levels: min, 3*min, 9*min... up to the maximum.
    pub fn ranges(&self) -> Vec<i64> {
        block_ranges(
            self.inner.opts.min_block_duration,
            self.inner.opts.max_block_duration,
        )
    }

    fn compact_blocks(&self) -> Result<(), TsdbError> {
        loop {
            let blocks = self.blocks();
            let metas: Vec<BlockMeta> = blocks.iter().map(|b| b.meta().clone()).collect();
            let plan = plan_compaction(&metas, &self.ranges());
            if plan.is_empty() {
                return Ok(());
            }
            let parents: Vec<Arc<Block>> = blocks
                .iter()
                .filter(|b| plan.contains(&b.meta().ulid))
                .cloned()
                .collect();
            let mint = parents.iter().map(|b| b.meta().min_time).min().unwrap_or(0);
            let maxt = parents.iter().map(|b| b.meta().max_time).max().unwrap_or(0);
            let mut sources: BTreeSet<String> = BTreeSet::new();
            for p in &parents {
                sources.extend(p.meta().compaction.sources.iter().cloned());
            }
            let compaction = BlockCompaction {
                level: parents
                    .iter()
                    .map(|b| b.meta().compaction.level)
                    .max()
                    .unwrap_or(1)
                    + 1,
                sources: sources.into_iter().collect(),
                parents: parents
                    .iter()
                    .map(|b| BlockDesc {
                        ulid: b.meta().ulid.clone(),
                        min_time: b.meta().min_time,
                        max_time: b.meta().max_time,
                    })
                    .collect(),
                ..BlockCompaction::default()
            };
            let vertical = any_overlap(&parents.iter().map(|b| b.meta()).collect::<Vec<_>>());
            let out = block::compact_blocks(&self.inner.dir, &parents, mint, maxt, compaction)?;
            let mut g = self.inner.blocks.write();
            g.retain(|b| !plan.contains(&b.meta().ulid));
            if let Some((meta, st)) = &out {
                let b = Block::open(&self.inner.dir.join(&meta.ulid))?;
                tracing::info!(
                    ulid = %meta.ulid,
                    mint,
                    maxt,
                    parents = parents.len(),
                    copied_chunks = st.copied_chunks,
                    reencoded_chunks = st.reencoded_chunks,
                    vertical,
                    "compacted blocks"
                );
                g.push(Arc::new(b));
                g.sort_by_key(|b| b.meta().min_time);
            }
            drop(g);
            for p in &parents {
                p.mark_deleted();
            }
            self.inner
                .counters
                .compactions
                .fetch_add(1, Ordering::Relaxed);
            if vertical {
                self.inner
                    .counters
                    .vertical_compactions
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Changes the retention time (ms; 0 disables) and size (bytes; 0
    /// disables), as a configuration reload does; the next maintenance
    /// round (or [`Db::apply_retention`]) deletes blocks by the new limits.
    /// The maximum block duration stays what it was at open.
    pub fn set_retention(&self, retention_time: i64, retention_size: u64) {
        let old = self.retention();
        self.inner
            .retention_time
            .store(retention_time.max(0), Ordering::SeqCst);
        self.inner
            .retention_size
            .store(retention_size, Ordering::SeqCst);
        if old != (retention_time.max(0), retention_size) {
            tracing::info!(
                retention_time_ms = retention_time,
                retention_size_bytes = retention_size,
                "storage retention changed"
            );
        }
    }

    /// The retention in force: time (ms) and size (bytes), 0 = disabled.
    pub fn retention(&self) -> (i64, u64) {
        (
            self.inner.retention_time.load(Ordering::SeqCst),
            self.inner.retention_size.load(Ordering::SeqCst),
        )
    }

    /// Deletes blocks beyond the retention time or size. Returns how many.
    pub fn apply_retention(&self) -> Result<usize, TsdbError> {
        let (retention_time, retention_size) = self.retention();
        let mut g = self.inner.blocks.write();
        let mut newest_first: Vec<Arc<Block>> = g.clone();
        newest_first.sort_by_key(|b| std::cmp::Reverse(b.meta().max_time));
        let mut doomed: BTreeSet<String> = BTreeSet::new();
        if retention_time > 0
            && let Some(newest) = newest_first.first()
        {
            let top = newest.meta().max_time;
            for b in newest_first.iter().skip(1) {
                if top - b.meta().max_time >= retention_time {
                    doomed.insert(b.meta().ulid.clone());
                    self.inner
                        .counters
                        .time_retentions
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if retention_size > 0 {
            // As Prometheus: the WAL and head chunk files count first.
            let mut total = dir_size(&self.inner.dir.join("wal"))
                + dir_size(&self.inner.dir.join("chunks_head"));
            for b in &newest_first {
                total += b.size();
                if total > retention_size && doomed.insert(b.meta().ulid.clone()) {
                    self.inner
                        .counters
                        .size_retentions
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        g.retain(|b| {
            if doomed.contains(&b.meta().ulid) {
                tracing::info!(block = %b.meta().ulid, "deleting block beyond retention");
                b.mark_deleted();
                false
            } else {
                true
            }
        });
        Ok(doomed.len())
    }

    /// Waits until every querier registered now whose range starts before
    /// `t` is dropped (at most [`READER_WAIT`]). Queriers registered later
    /// see the block just added, so they need no waiting.
    fn wait_for_readers_before(&self, t: i64) {
        let deadline = std::time::Instant::now() + READER_WAIT;
        let mut g = self.inner.readers.lock();
        let pending: Vec<u64> = g
            .iter()
            .filter(|(_, (mint, _))| *mint < t)
            .map(|(id, _)| *id)
            .collect();
        while pending.iter().any(|id| g.contains_key(id)) {
            if self
                .inner
                .readers_done
                .wait_until(&mut g, deadline)
                .timed_out()
            {
                tracing::warn!(
                    queries = pending.iter().filter(|id| g.contains_key(id)).count(),
                    "truncating the head while older queries still run"
                );
                return;
            }
        }
    }

    /// A querier over the head with deletions applied.
    fn head_querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn Querier>, StorageError> {
        let q = self.inner.head.querier(mint, maxt)?;
        let deletes = self.inner.head_deletes.read().clone();
        if deletes.is_empty() {
            return Ok(q);
        }
        Ok(Box::new(DeletingQuerier { inner: q, deletes }))
    }

    /// Bytes used by the blocks.
    pub fn blocks_size(&self) -> u64 {
        self.inner.blocks.read().iter().map(|b| b.size()).sum()
    }

    /// Adds tombstones for series matching `matchers` in `[mint, maxt]` in
    /// every block, and hides them in the head (so blocks later cut from the
    /// head do not hold them). Returns the number of block series affected.
    ///
    /// Head deletions are Prometheus's: each head series matching now gets
    /// a tombstone for `[mint, maxt]` clipped to its current time range,
    /// logged to the WAL (a tombstones record) before it takes effect, so
    /// it survives a restart and is kept by checkpoints while the head
    /// holds the series. Samples appended later past that range, and
    /// series created later, are not deleted.
    pub fn delete_series(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<usize, TsdbError> {
        let mut n = 0;
        for b in self.blocks() {
            if b.overlaps(mint, maxt) {
                n += b.delete(mint, maxt, matchers)?;
            }
        }
        let head = &self.inner.head;
        let stones: Vec<TombstoneRecord> = head
            .series_refs(matchers)
            .into_iter()
            .filter_map(|r| {
                let (smin, smax) = head.series_time_range(r)?;
                let (a, b) = (mint.max(smin), maxt.min(smax));
                (a <= b).then_some(TombstoneRecord {
                    series_ref: r,
                    mint: a,
                    maxt: b,
                })
            })
            .collect();
        if !stones.is_empty() {
            // One writer at a time, so the WAL order is the order applied.
            let mut d = self.inner.head_deletes.write();
            self.inner.wal.log_tombstones(&stones)?;
            let mut v = (**d).clone();
            add_head_tombstones(head, &mut v, &stones);
            *d = Arc::new(v);
        }
        Ok(n)
    }

    /// Head cardinality: counts and the top `limit` entries of each list,
    /// as `/api/v1/status/tsdb` reports them.
    pub fn head_cardinality(&self, limit: usize) -> Result<HeadCardinality, TsdbError> {
        use std::collections::HashMap;
        let head = &self.inner.head;
        let st = head.stats();
        let q = head
            .querier(i64::MIN, i64::MAX)
            .map_err(|e| TsdbError::BlockIo(e.to_string()))?;
        let mut by_metric: HashMap<String, u64> = HashMap::new();
        let mut by_pair: HashMap<(String, String), u64> = HashMap::new();
        let mut ss = q.select(false, None, &[]);
        while let Some(s) = ss.next() {
            if let Some(n) = s.labels.metric_name() {
                *by_metric.entry(n.to_string()).or_default() += 1;
            }
            for l in s.labels.iter() {
                *by_pair
                    .entry((l.name.to_string(), l.value.to_string()))
                    .or_default() += 1;
            }
        }
        let mut values: HashMap<&str, u64> = HashMap::new();
        let mut bytes: HashMap<&str, u64> = HashMap::new();
        for (n, v) in by_pair.keys() {
            *values.entry(n).or_default() += 1;
            *bytes.entry(n).or_default() += v.len() as u64;
        }
        fn top(v: Vec<(String, u64)>, limit: usize) -> Vec<(String, u64)> {
            let mut v = v;
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(limit);
            v
        }
        Ok(HeadCardinality {
            num_series: st.num_series,
            num_label_pairs: by_pair.len() as u64,
            chunk_count: st.chunks,
            min_time: st.min_time.unwrap_or(0),
            max_time: st.max_time.unwrap_or(0),
            series_by_metric_name: top(by_metric.into_iter().collect(), limit),
            label_value_count_by_name: top(
                values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                limit,
            ),
            bytes_by_label_name: top(
                bytes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                limit,
            ),
            series_by_label_pair: top(
                by_pair
                    .iter()
                    .map(|((n, v), c)| (format!("{n}={v}"), *c))
                    .collect(),
                limit,
            ),
        })
    }

    /// Writes a snapshot of the database into `dir`: every block hard-linked
    /// (copied where links fail), plus, with `with_head`, the head's data
    /// as one more block.
    pub fn snapshot(&self, dir: &Path, with_head: bool) -> Result<(), TsdbError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        for b in self.blocks() {
            let dst = dir.join(&b.meta().ulid);
            link_tree(b.dir(), &dst)?;
        }
        if with_head {
            let head = &self.inner.head;
            if let (Some(mint), Some(maxt)) = (head.min_time(), head.max_time()) {
                let q = self
                    .head_querier(mint, maxt)
                    .map_err(|e| TsdbError::BlockIo(e.to_string()))?;
                block::write_block(dir, &*q, mint, maxt + 1, BlockCompaction::default())?;
            }
        }
        block::sync_dir(dir)
    }

    /// Rewrites every block that has tombstones without the deleted data
    /// (same time range, level and sources). Returns how many blocks.
    pub fn clean_tombstones(&self) -> Result<usize, TsdbError> {
        let _g = self.inner.compact_mtx.lock();
        let mut n = 0;
        for b in self.blocks() {
            if b.tombstones().total() == 0 {
                continue;
            }
            let m = b.meta().clone();
            let compaction = BlockCompaction {
                level: m.compaction.level,
                sources: m.compaction.sources.clone(),
                parents: vec![BlockDesc {
                    ulid: m.ulid.clone(),
                    min_time: m.min_time,
                    max_time: m.max_time,
                }],
                ..BlockCompaction::default()
            };
            // Chunks the tombstones do not touch are copied as they are.
            let out = block::compact_blocks(
                &self.inner.dir,
                std::slice::from_ref(&b),
                m.min_time,
                m.max_time,
                compaction,
            )?;
            let mut g = self.inner.blocks.write();
            g.retain(|x| x.meta().ulid != m.ulid);
            if let Some((meta, _)) = out {
                g.push(Arc::new(Block::open(&self.inner.dir.join(&meta.ulid))?));
                g.sort_by_key(|b| b.meta().min_time);
            }
            drop(g);
            b.mark_deleted();
            n += 1;
        }
        Ok(n)
    }

    /// Appends the database's metrics in the Prometheus text format.
    pub fn write_metrics(&self, out: &mut String) {
        self.inner.head.write_metrics(out);
        self.inner.head.exemplars().write_metrics(out);
        self.inner.wal.write_metrics(out);
        let c = &self.inner.counters;
        let blocks = self.blocks();
        let lowest = blocks
            .first()
            .map(|b| b.meta().min_time)
            .or(self.inner.head.min_time())
            .unwrap_or(0);
        let (retention_time, retention_size) = self.retention();
        let rows: [(&str, &str, &str, f64); 12] = [
            (
                "prometheus_tsdb_blocks_loaded",
                "gauge",
                "Number of currently loaded data blocks",
                blocks.len() as f64,
            ),
            (
                "prometheus_tsdb_compactions_total",
                "counter",
                "Total number of compactions that were executed for the partition.",
                c.compactions.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_tsdb_compactions_failed_total",
                "counter",
                "Total number of compactions that failed for the partition.",
                c.compactions_failed.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_tsdb_vertical_compactions_total",
                "counter",
                "Total number of compactions done on overlapping blocks.",
                c.vertical_compactions.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_tsdb_head_truncations_total",
                "counter",
                "Total number of head truncations attempted.",
                c.head_compactions.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_tsdb_time_retentions_total",
                "counter",
                "The number of times that blocks were deleted because the maximum time limit was exceeded.",
                c.time_retentions.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_tsdb_size_retentions_total",
                "counter",
                "The number of times that blocks were deleted because the maximum number of bytes was exceeded.",
                c.size_retentions.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_tsdb_retention_limit_seconds",
                "gauge",
                "How long to retain samples in storage.",
                retention_time as f64 / 1000.0,
            ),
            (
                "prometheus_tsdb_retention_limit_bytes",
                "gauge",
                "Max number of bytes to be retained in the tsdb blocks, configured 0 means disabled",
                retention_size as f64,
            ),
            (
                "prometheus_tsdb_storage_blocks_bytes",
                "gauge",
                "The number of bytes that are currently used for local storage by all blocks.",
                blocks.iter().map(|b| b.size()).sum::<u64>() as f64,
            ),
            (
                "prometheus_tsdb_lowest_timestamp",
                "gauge",
                "Lowest timestamp value stored in the database.",
                lowest as f64,
            ),
            (
                "pharos_tsdb_corrupt_blocks",
                "gauge",
                "Blocks set aside at start-up because they failed to open.",
                c.corrupt_blocks.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", pharos_model::format_float(v));
        }
    }
}

/// Cardinality of the head (see [`Db::head_cardinality`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadCardinality {
    /// Series in the head.
    pub num_series: u64,
    /// Distinct label pairs.
    pub num_label_pairs: u64,
    /// Chunks in the head.
    pub chunk_count: u64,
    /// Oldest sample time (ms), 0 when empty.
    pub min_time: i64,
    /// Newest sample time (ms), 0 when empty.
    pub max_time: i64,
    /// Top series counts by metric name.
    pub series_by_metric_name: Vec<(String, u64)>,
    /// Top label names by distinct values.
    pub label_value_count_by_name: Vec<(String, u64)>,
    /// Top label names by bytes of distinct values.
    pub bytes_by_label_name: Vec<(String, u64)>,
    /// Top label pairs by series count.
    pub series_by_label_pair: Vec<(String, u64)>,
}

/// Total bytes of the files under `p` (0 when missing).
fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Hard-links (or copies) the files under `src` into `dst`.
fn link_tree(src: &Path, dst: &Path) -> Result<(), TsdbError> {
    std::fs::create_dir_all(dst).map_err(|e| io_err(dst, e))?;
    for e in std::fs::read_dir(src).map_err(|e| io_err(src, e))? {
        let e = e.map_err(|e| io_err(src, e))?;
        let from = e.path();
        let to = dst.join(e.file_name());
        if from.is_dir() {
            link_tree(&from, &to)?;
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| io_err(&to, e))?;
        }
    }
    Ok(())
}

/// Prometheus's exponential block ranges: `min * 3^i`, at most 10 levels,
/// none above `max`.
pub fn block_ranges(min: i64, max: i64) -> Vec<i64> {
    let mut v = Vec::new();
    let mut r = min.max(1);
    for _ in 0..10 {
        if r > max && !v.is_empty() {
            break;
        }
        v.push(r);
        r = r.saturating_mul(3);
    }
    v
}

/// Prometheus's leveled planner. Blocks overlapping in time come first:
/// the first run of blocks (by start time) overlapping each other,
/// transitively, is merged on its own (vertical compaction). Otherwise,
/// ignoring the newest block, the first group of at least two blocks that
/// fits in one aligned window of a level's range, and either spans the
/// whole window or ends before the newest block starts. Returns ULIDs.
pub fn plan_compaction(metas: &[BlockMeta], ranges: &[i64]) -> Vec<String> {
    let mut ms: Vec<&BlockMeta> = metas.iter().collect();
    ms.sort_by_key(|m| m.min_time);
    let overlapping = overlapping_run(&ms);
    if !overlapping.is_empty() {
        return overlapping;
    }
    if ms.len() < 2 || ranges.len() < 2 {
        return Vec::new();
    }
    let high = ms[ms.len() - 1].min_time;
    let ms = &ms[..ms.len() - 1];
    for &iv in &ranges[1..] {
        for part in split_by_range(ms, iv) {
            if part.iter().any(|m| m.compaction.failed) {
                continue;
            }
            let mint = part[0].min_time;
            let maxt = part[part.len() - 1].max_time;
            if (maxt - mint == iv || maxt <= high) && part.len() > 1 {
                return part.iter().map(|m| m.ulid.clone()).collect();
            }
        }
    }
    Vec::new()
}

/// The first run of blocks (sorted by start time) that overlap each other,
/// as Prometheus's `selectOverlappingDirs`: a block starting before the
/// latest end seen so far joins the run.
fn overlapping_run(ms: &[&BlockMeta]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Some(first) = ms.first() else {
        return out;
    };
    let mut max_t = first.max_time;
    for w in ms.windows(2) {
        let (prev, m) = (w[0], w[1]);
        if m.min_time < max_t {
            if out.is_empty() {
                out.push(prev.ulid.clone());
            }
            out.push(m.ulid.clone());
        } else if !out.is_empty() {
            break;
        }
        max_t = max_t.max(m.max_time);
    }
    out
}

/// True when some of `metas` overlap in time.
fn any_overlap(metas: &[&BlockMeta]) -> bool {
    let mut ms = metas.to_vec();
    ms.sort_by_key(|m| m.min_time);
    !overlapping_run(&ms).is_empty()
}

fn split_by_range<'a>(ms: &[&'a BlockMeta], tr: i64) -> Vec<Vec<&'a BlockMeta>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ms.len() {
        let m = ms[i];
        let t0 = m.min_time.div_euclid(tr) * tr;
        if m.max_time > t0 + tr {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while i < ms.len() {
            if ms[i].min_time < t0 || ms[i].max_time > t0 + tr {
                break;
            }
            group.push(ms[i]);
            i += 1;
        }
        if !group.is_empty() {
            out.push(group);
        }
    }
    out
}

impl Appendable for Db {
    fn appender(&self) -> Box<dyn Appender + Send + '_> {
        self.inner.head.appender()
    }
}

/// Exemplars live in the head's ring only (Prometheus keeps none in
/// blocks either).
impl pharos_storage::ExemplarQueryable for Db {
    fn select_exemplars(
        &self,
        start: Timestamp,
        end: Timestamp,
        matcher_sets: &[Vec<Matcher>],
    ) -> Result<Vec<pharos_storage::SeriesExemplars>, StorageError> {
        pharos_storage::ExemplarQueryable::select_exemplars(
            &self.inner.head,
            start,
            end,
            matcher_sets,
        )
    }
}

impl Queryable for Db {
    fn querier(&self, mint: Timestamp, maxt: Timestamp) -> Result<Box<dyn Querier>, StorageError> {
        // Register first: a head compaction adds its block, then waits for
        // queriers registered before that moment before truncating the
        // head, so this querier either sees the new block or keeps the
        // head's data until it is dropped.
        let id = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        self.inner.readers.lock().insert(id, (mint, maxt));
        let guard = Arc::new(ReaderGuard {
            db: self.inner.clone(),
            id,
        });
        let hq = self.head_querier(mint, maxt)?;
        let mut qs: Vec<Box<dyn Querier>> = self
            .inner
            .blocks
            .read()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .map(|b| Box::new(b.querier(mint, maxt)) as Box<dyn Querier>)
            .collect();
        qs.push(hq);
        let inner: Box<dyn Querier> = if qs.len() == 1 {
            qs.remove(0)
        } else {
            Box::new(MergeQuerier::new(qs))
        };
        Ok(Box::new(GuardedQuerier { inner, guard }))
    }
}

/// A querier (and the series sets it returns) holding a reader
/// registration.
struct GuardedQuerier {
    inner: Box<dyn Querier>,
    guard: Arc<ReaderGuard>,
}

impl Querier for GuardedQuerier {
    fn select(
        &self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet> {
        Box::new(GuardedSeriesSet {
            inner: self.inner.select(sorted, hints, matchers),
            _guard: self.guard.clone(),
        })
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.inner.label_values(name, matchers)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.inner.label_names(matchers)
    }
}

struct GuardedSeriesSet {
    inner: Box<dyn SeriesSet>,
    _guard: Arc<ReaderGuard>,
}

impl SeriesSet for GuardedSeriesSet {
    fn next(&mut self) -> Option<Series> {
        self.inner.next()
    }

    fn err(&self) -> Option<StorageError> {
        self.inner.err()
    }
}

/// Hides deleted head samples.
struct DeletingQuerier {
    inner: Box<dyn Querier>,
    deletes: Arc<HeadDeletes>,
}

impl Querier for DeletingQuerier {
    fn select(
        &self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet> {
        Box::new(DeletingSeriesSet {
            inner: self.inner.select(sorted, hints, matchers),
            deletes: self.deletes.clone(),
        })
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.inner.label_values(name, matchers)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.inner.label_names(matchers)
    }
}

struct DeletingSeriesSet {
    inner: Box<dyn SeriesSet>,
    deletes: Arc<HeadDeletes>,
}

impl SeriesSet for DeletingSeriesSet {
    fn next(&mut self) -> Option<Series> {
        loop {
            let s = self.inner.next()?;
            let Some(ivs) = self.deletes.get(&s.labels) else {
                return Some(s);
            };
            let ivs = ivs.clone();
            let mut it = DeletingSampleIter {
                inner: s.samples,
                ivs,
                cur: None,
                pending: false,
            };
            // Series whose every sample is deleted are not returned.
            if it.next().is_none() {
                continue;
            }
            it.pending = true;
            return Some(Series {
                labels: s.labels,
                samples: Box::new(it),
            });
        }
    }

    fn err(&self) -> Option<StorageError> {
        self.inner.err()
    }
}

struct DeletingSampleIter {
    inner: Box<dyn SampleIter>,
    ivs: Vec<(i64, i64)>,
    cur: Option<Sample>,
    /// `cur` was read ahead and not handed out by `next` yet.
    pending: bool,
}

impl DeletingSampleIter {
    fn deleted(&self, t: i64) -> bool {
        self.ivs.iter().any(|&(a, b)| a <= t && t <= b)
    }
}

impl SampleIter for DeletingSampleIter {
    fn next(&mut self) -> Option<Sample> {
        if std::mem::take(&mut self.pending) {
            return self.cur;
        }
        loop {
            let s = self.inner.next()?;
            if !self.deleted(s.t) {
                self.cur = Some(s);
                return Some(s);
            }
        }
    }

    fn seek(&mut self, ts: Timestamp) -> Option<Sample> {
        self.pending = false;
        if let Some(c) = self.cur
            && c.t >= ts
        {
            return Some(c);
        }
        let mut s = self.inner.seek(ts)?;
        loop {
            if !self.deleted(s.t) {
                self.cur = Some(s);
                return Some(s);
            }
            s = self.inner.next()?;
        }
    }

    fn histogram(&self) -> Option<&FloatHistogram> {
        // `cur` is always the inner iterator's current sample.
        self.inner.histogram()
    }

    fn err(&self) -> Option<StorageError> {
        self.inner.err()
    }
}

/// A querier merging several queriers: series with equal labels are
/// combined and their samples deduplicated by timestamp (the first
/// querier's sample wins).
pub struct MergeQuerier {
    qs: Vec<Box<dyn Querier>>,
}

impl MergeQuerier {
    /// Merges `qs`.
    pub fn new(qs: Vec<Box<dyn Querier>>) -> MergeQuerier {
        MergeQuerier { qs }
    }
}

impl Querier for MergeQuerier {
    fn select(
        &self,
        _sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet> {
        let sets = self
            .qs
            .iter()
            .map(|q| (q.select(true, hints, matchers), None))
            .collect();
        Box::new(MergeSeriesSet {
            sets,
            primed: false,
        })
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut out = BTreeSet::new();
        for q in &self.qs {
            out.extend(q.label_values(name, matchers)?);
        }
        Ok(out.into_iter().collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut out = BTreeSet::new();
        for q in &self.qs {
            out.extend(q.label_names(matchers)?);
        }
        Ok(out.into_iter().collect())
    }
}

struct MergeSeriesSet {
    sets: Vec<(Box<dyn SeriesSet>, Option<Series>)>,
    primed: bool,
}

impl SeriesSet for MergeSeriesSet {
    fn next(&mut self) -> Option<Series> {
        if !self.primed {
            for (s, peek) in &mut self.sets {
                *peek = s.next();
            }
            self.primed = true;
        }
        let min: Labels = self
            .sets
            .iter()
            .filter_map(|(_, p)| p.as_ref().map(|s| &s.labels))
            .min()?
            .clone();
        let mut parts: Vec<Box<dyn SampleIter>> = Vec::new();
        for (s, peek) in &mut self.sets {
            if peek.as_ref().is_some_and(|p| p.labels == min) {
                if let Some(p) = peek.take() {
                    parts.push(p.samples);
                }
                *peek = s.next();
            }
        }
        let samples: Box<dyn SampleIter> = if parts.len() == 1 {
            parts.remove(0)
        } else {
            let n = parts.len();
            Box::new(MergeSampleIter {
                iters: parts,
                heads: vec![None; n],
                init: false,
                cur: None,
                cur_idx: 0,
            })
        };
        Some(Series {
            labels: min,
            samples,
        })
    }

    fn err(&self) -> Option<StorageError> {
        self.sets.iter().find_map(|(s, _)| s.err())
    }
}

struct MergeSampleIter {
    iters: Vec<Box<dyn SampleIter>>,
    heads: Vec<Option<Sample>>,
    init: bool,
    cur: Option<Sample>,
    /// Which iterator `cur` came from (its histogram is that one's).
    cur_idx: usize,
}

impl MergeSampleIter {
    fn pick(&mut self) -> Option<Sample> {
        let mut best: Option<Sample> = None;
        for (i, s) in self.heads.iter().enumerate() {
            if let Some(s) = s
                && best.is_none_or(|b| s.t < b.t)
            {
                best = Some(*s);
                self.cur_idx = i;
            }
        }
        self.cur = best;
        best
    }
}

impl SampleIter for MergeSampleIter {
    fn next(&mut self) -> Option<Sample> {
        if !self.init {
            self.init = true;
            for (i, it) in self.iters.iter_mut().enumerate() {
                self.heads[i] = it.next();
            }
            return self.pick();
        }
        let t = self.cur?.t;
        for (i, it) in self.iters.iter_mut().enumerate() {
            if self.heads[i].is_some_and(|s| s.t <= t) {
                self.heads[i] = it.next();
            }
        }
        self.pick()
    }

    fn seek(&mut self, ts: Timestamp) -> Option<Sample> {
        if self.init
            && let Some(c) = self.cur
            && c.t >= ts
        {
            return Some(c);
        }
        let first = !self.init;
        self.init = true;
        for (i, it) in self.iters.iter_mut().enumerate() {
            if first || self.heads[i].is_some_and(|s| s.t < ts) {
                self.heads[i] = it.seek(ts);
            }
        }
        self.pick()
    }

    fn histogram(&self) -> Option<&FloatHistogram> {
        self.cur?;
        self.iters.get(self.cur_idx)?.histogram()
    }

    fn err(&self) -> Option<StorageError> {
        self.iters.iter().find_map(|i| i.err())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hist_tests;

#[cfg(test)]
mod compact_tests;
