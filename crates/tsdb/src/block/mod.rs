//! Persistent blocks in Prometheus's on-disk format.
//!
//! A block is a directory named by a ULID holding `meta.json`, `index`,
//! `chunks/000001...` and `tombstones`, covering the half-open time range
//! `[minTime, maxTime)`. Blocks are immutable once renamed into place, so
//! their files are memory-mapped and read without locks; only tombstones
//! change (rewritten atomically). A block is written into
//! `<ulid>.tmp-for-creation`, every file fsynced, then renamed: a crash
//! leaves either no block or a complete one.
//!
//! Readers hold an `Arc<Block>`; a block that compaction or retention
//! retires is only marked, and its directory is removed when the last
//! reference (a running query) drops.

pub mod chunks;
mod compact;
mod encoding;
pub mod index;
pub mod meta;
pub(crate) mod mmap;
pub mod tombstones;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use pharos_model::{FloatHistogram, Histogram, Labels, Matcher, Sample, Timestamp};
use pharos_storage::{
    Querier, SampleIter, SelectHints, Series, SeriesSet, StorageError, VecSeriesSet,
};

use crate::TsdbError;
use crate::chunk_samples::ChunkSamples;
use crate::chunkenc::{
    ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, ENCODING_XOR, FloatHistogramChunk,
    HistogramAppendOutcome, HistogramChunk, MIN_SAMPLES_PER_HISTOGRAM_CHUNK,
    TARGET_HISTOGRAM_CHUNK_BYTES, XorAppender,
};
pub use chunks::{ChunkReader, ChunkWriter};
pub use compact::{CompactStats, compact_blocks};
pub use index::{ChunkMeta, IndexReader};
pub use meta::{BlockCompaction, BlockDesc, BlockMeta, BlockStats};
pub use mmap::Bytes;
pub use tombstones::Tombstones;

/// Samples per chunk when writing blocks (as Prometheus).
pub const SAMPLES_PER_CHUNK: u16 = 120;

fn io_err(p: &Path, e: std::io::Error) -> TsdbError {
    TsdbError::BlockIo(format!("{}: {e}", p.display()))
}

/// True when `name` is a block directory name (a ULID).
pub fn is_block_dir_name(name: &str) -> bool {
    ulid::Ulid::from_string(name).is_ok()
}

/// An open, immutable block.
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: RwLock<Arc<Tombstones>>,
    delete_on_drop: AtomicBool,
}

impl Block {
    /// Opens the block in `dir`, validating headers, table of contents and
    /// checksums of the index tables.
    pub fn open(dir: &Path) -> Result<Block, TsdbError> {
        let meta = BlockMeta::read(dir)?;
        let index = IndexReader::open(&dir.join("index"))?;
        let chunks = ChunkReader::open(&dir.join("chunks"))?;
        let tombstones = Tombstones::read(dir)?;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
            tombstones: RwLock::new(Arc::new(tombstones)),
            delete_on_drop: AtomicBool::new(false),
        })
    }

    /// The block's metadata.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index reader.
    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    /// The chunk reader.
    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    /// The current tombstones.
    pub fn tombstones(&self) -> Arc<Tombstones> {
        self.tombstones.read().clone()
    }

    /// Bytes on disk: index, chunks, tombstones and meta.
    pub fn size(&self) -> u64 {
        let small = ["tombstones", "meta.json"]
            .iter()
            .filter_map(|f| std::fs::metadata(self.dir.join(f)).ok())
            .map(|m| m.len())
            .sum::<u64>();
        self.index.size() + self.chunks.size + small
    }

    /// True when `[mint, maxt]` (inclusive) overlaps the block.
    pub fn overlaps(&self, mint: Timestamp, maxt: Timestamp) -> bool {
        mint < self.meta.max_time && self.meta.min_time <= maxt
    }

    /// Marks the block for deletion: its directory is removed when the
    /// last reference drops.
    pub fn mark_deleted(&self) {
        self.delete_on_drop.store(true, Ordering::SeqCst);
    }

    /// Adds deletion intervals for series matching `matchers` within
    /// `[mint, maxt]` and rewrites the tombstones file. Returns the number
    /// of series affected.
    pub fn delete(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Result<usize, TsdbError> {
        let refs = self.index.postings_for_matchers(matchers)?;
        let mut guard = self.tombstones.write();
        let mut t = (**guard).clone();
        let mut n = 0;
        for r in refs {
            let (_, chunks) = self.index.series(r)?;
            if chunks.iter().any(|c| c.min_t <= maxt && mint <= c.max_t) {
                t.add(r, mint, maxt);
                n += 1;
            }
        }
        if n > 0 {
            t.write(&self.dir)?;
            *guard = Arc::new(t);
        }
        Ok(n)
    }

    /// A querier over `[mint, maxt]` holding a reference to the block.
    pub fn querier(self: &Arc<Self>, mint: Timestamp, maxt: Timestamp) -> BlockQuerier {
        BlockQuerier {
            block: self.clone(),
            mint,
            maxt,
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if self.delete_on_drop.load(Ordering::SeqCst) {
            // Rename first so a crash mid-removal never leaves a half block
            // that looks valid.
            let tmp = self.dir.with_extension("tmp-for-deletion");
            let target = match std::fs::rename(&self.dir, &tmp) {
                Ok(()) => tmp,
                Err(_) => self.dir.clone(),
            };
            if let Err(e) = std::fs::remove_dir_all(&target) {
                tracing::warn!(dir = %target.display(), err = %e, "removing deleted block failed");
            }
        }
    }
}

/// A querier over one block.
pub struct BlockQuerier {
    block: Arc<Block>,
    mint: Timestamp,
    maxt: Timestamp,
}

fn storage_err(e: TsdbError) -> StorageError {
    StorageError::Corruption(e.to_string())
}

impl Querier for BlockQuerier {
    fn select(
        &self,
        _sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet> {
        let (mut mint, mut maxt) = (self.mint, self.maxt);
        if let Some(h) = hints
            && h.start <= h.end
            && (h.start, h.end) != (0, 0)
        {
            mint = mint.max(h.start);
            maxt = maxt.min(h.end);
        }
        if !self.block.overlaps(mint, maxt) {
            return Box::new(VecSeriesSet::new(Vec::new()));
        }
        match self.block.index.postings_for_matchers(matchers) {
            Ok(refs) => Box::new(BlockSeriesSet {
                block: self.block.clone(),
                tombstones: self.block.tombstones(),
                refs: refs.into_iter(),
                mint,
                maxt,
                err: None,
            }),
            Err(e) => Box::new(VecSeriesSet::failed(storage_err(e))),
        }
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if matchers.is_empty() {
            return Ok(self.block.index.label_values(name));
        }
        let mut out = std::collections::BTreeSet::new();
        let mut ss = self.select(false, None, matchers);
        while let Some(s) = ss.next() {
            if let Some(v) = s.labels.get(name) {
                out.insert(v.to_string());
            }
        }
        if let Some(e) = ss.err() {
            return Err(e);
        }
        Ok(out.into_iter().collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if matchers.is_empty() {
            return Ok(self.block.index.label_names());
        }
        let mut out = std::collections::BTreeSet::new();
        let mut ss = self.select(false, None, matchers);
        while let Some(s) = ss.next() {
            for l in s.labels.iter() {
                out.insert(l.name.to_string());
            }
        }
        if let Some(e) = ss.err() {
            return Err(e);
        }
        Ok(out.into_iter().collect())
    }
}

struct BlockSeriesSet {
    block: Arc<Block>,
    tombstones: Arc<Tombstones>,
    refs: std::vec::IntoIter<u64>,
    mint: Timestamp,
    maxt: Timestamp,
    err: Option<StorageError>,
}

impl SeriesSet for BlockSeriesSet {
    fn next(&mut self) -> Option<Series> {
        if self.err.is_some() {
            return None;
        }
        for r in self.refs.by_ref() {
            let (labels, mut chunks) = match self.block.index.series(r) {
                Ok(v) => v,
                Err(e) => {
                    self.err = Some(storage_err(e));
                    return None;
                }
            };
            chunks.retain(|c| c.min_t <= self.maxt && self.mint <= c.max_t);
            let deleted = self.tombstones.get(r).to_vec();
            chunks.retain(|c| !deleted.iter().any(|&(a, b)| a <= c.min_t && c.max_t <= b));
            if chunks.is_empty() {
                continue;
            }
            return Some(Series {
                labels,
                samples: Box::new(ChunkSampleIter {
                    block: self.block.clone(),
                    chunks,
                    next_chunk: 0,
                    deleted,
                    it: None,
                    cur: None,
                    mint: self.mint,
                    maxt: self.maxt,
                    done: false,
                    err: None,
                }),
            });
        }
        None
    }

    fn err(&self) -> Option<StorageError> {
        self.err.clone()
    }
}

/// Decodes a block series' chunks lazily within `[mint, maxt]`, skipping
/// deleted intervals.
struct ChunkSampleIter {
    block: Arc<Block>,
    chunks: Vec<ChunkMeta>,
    next_chunk: usize,
    deleted: Vec<(i64, i64)>,
    it: Option<ChunkSamples<Vec<u8>>>,
    cur: Option<Sample>,
    mint: Timestamp,
    maxt: Timestamp,
    done: bool,
    err: Option<StorageError>,
}

impl ChunkSampleIter {
    fn finish(&mut self) -> Option<Sample> {
        self.done = true;
        self.it = None;
        self.cur = None;
        None
    }

    fn advance(&mut self, ts: Timestamp) -> Option<Sample> {
        let mut ts = ts.max(self.mint);
        loop {
            if self.it.is_none() {
                while self
                    .chunks
                    .get(self.next_chunk)
                    .is_some_and(|c| c.max_t < ts)
                {
                    self.next_chunk += 1;
                }
                let Some(c) = self.chunks.get(self.next_chunk).copied() else {
                    return self.finish();
                };
                if c.min_t > self.maxt {
                    return self.finish();
                }
                self.next_chunk += 1;
                let opened = self
                    .block
                    .chunks
                    .chunk(c.r)
                    .and_then(|(enc, data)| ChunkSamples::open_with(enc, data, <[u8]>::to_vec));
                match opened {
                    Ok(it) => self.it = Some(it),
                    Err(TsdbError::CorruptChunk(msg)) => {
                        self.err = Some(StorageError::Corruption(format!(
                            "block {}: {msg}",
                            self.block.meta.ulid
                        )));
                        return self.finish();
                    }
                    Err(e) => {
                        self.err = Some(storage_err(e));
                        return self.finish();
                    }
                }
            }
            let Some(it) = self.it.as_mut() else {
                continue;
            };
            match it.seek(ts) {
                Some(s) if s.t > self.maxt => return self.finish(),
                Some(s) if self.deleted.iter().any(|&(a, b)| a <= s.t && s.t <= b) => {
                    match s.t.checked_add(1) {
                        Some(n) => ts = n,
                        None => return self.finish(),
                    }
                }
                Some(s) => {
                    self.cur = Some(s);
                    return Some(s);
                }
                None => {
                    if let Some(e) = it.err() {
                        self.err = Some(StorageError::Corruption(e.to_string()));
                        return self.finish();
                    }
                    self.it = None;
                }
            }
        }
    }
}

impl SampleIter for ChunkSampleIter {
    fn next(&mut self) -> Option<Sample> {
        if self.done {
            return None;
        }
        let ts = match self.cur {
            Some(c) if c.t == Timestamp::MAX => return self.finish(),
            Some(c) => c.t + 1,
            None => self.mint,
        };
        self.advance(ts)
    }

    fn seek(&mut self, ts: Timestamp) -> Option<Sample> {
        if self.done {
            return None;
        }
        if let Some(c) = self.cur
            && c.t >= ts
        {
            return Some(c);
        }
        self.advance(ts)
    }

    fn histogram(&self) -> Option<&FloatHistogram> {
        if self.done {
            return None;
        }
        self.it.as_ref()?.histogram()
    }

    fn err(&self) -> Option<StorageError> {
        self.err.clone()
    }
}

/// The chunk a [`SeriesChunker`] is filling.
#[derive(Default)]
enum OpenChunk {
    #[default]
    None,
    Xor(XorAppender),
    Int(HistogramChunk),
    Float(FloatHistogramChunk),
}

/// Re-encodes one series' samples into chunks while a block is written:
/// XOR chunks of up to 120 floats; histogram chunks cut at 120 samples or,
/// from 10 samples on, at 1 KiB (Prometheus's targets), and whenever the
/// histogram encoder asks (counter reset, schema change...) or the sample
/// kind changes.
///
/// Readers hand histograms out as float histograms, so the integer/float
/// distinction of the source chunk is gone by the time samples reach here;
/// a histogram whose counts are all whole numbers is written to an integer
/// chunk (`ENCODING_HISTOGRAM`, the kind scrapes produce and Prometheus
/// 2.42 reads), other ones to float chunks. A float chunk is not left for
/// an integer one until it is cut, so a float series does not flap.
#[derive(Default)]
struct SeriesChunker {
    open: OpenChunk,
    first_t: Timestamp,
    last_t: Timestamp,
    metas: Vec<ChunkMeta>,
}

/// `fh` as an integer histogram, when every count is a whole number that
/// an integer histogram holds exactly.
fn as_integer(fh: &FloatHistogram) -> Option<Histogram> {
    fn whole(x: f64) -> Option<u64> {
        (x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= 9_007_199_254_740_992.0)
            .then_some(x as u64)
    }
    fn deltas(v: &[f64]) -> Option<Vec<i64>> {
        let mut prev = 0i64;
        v.iter()
            .map(|&x| {
                let c = whole(x)? as i64;
                let d = c - prev;
                prev = c;
                Some(d)
            })
            .collect()
    }
    if pharos_model::is_stale_nan(fh.sum) {
        return Some(Histogram {
            counter_reset_hint: fh.counter_reset_hint,
            sum: fh.sum,
            ..Histogram::default()
        });
    }
    Some(Histogram {
        counter_reset_hint: fh.counter_reset_hint,
        schema: fh.schema,
        zero_threshold: fh.zero_threshold,
        zero_count: whole(fh.zero_count)?,
        count: whole(fh.count)?,
        sum: fh.sum,
        positive_spans: fh.positive_spans.clone(),
        negative_spans: fh.negative_spans.clone(),
        positive_buckets: deltas(&fh.positive_buckets)?,
        negative_buckets: deltas(&fh.negative_buckets)?,
        custom_values: fh.custom_values.clone(),
    })
}

fn histogram_chunk_full(n: u16, bytes: usize) -> bool {
    n >= SAMPLES_PER_CHUNK
        || (n >= MIN_SAMPLES_PER_HISTOGRAM_CHUNK && bytes >= TARGET_HISTOGRAM_CHUNK_BYTES)
}

impl SeriesChunker {
    /// Writes the open chunk, if any.
    fn flush(&mut self, cw: &mut ChunkWriter) -> Result<(), TsdbError> {
        let (enc, bytes): (u8, Vec<u8>) = match std::mem::take(&mut self.open) {
            OpenChunk::None => return Ok(()),
            OpenChunk::Xor(app) => (ENCODING_XOR, app.to_bytes()),
            OpenChunk::Int(c) => (ENCODING_HISTOGRAM, c.into_bytes()),
            OpenChunk::Float(c) => (ENCODING_FLOAT_HISTOGRAM, c.into_bytes()),
        };
        let r = cw.write(enc, &bytes)?;
        self.metas.push(ChunkMeta {
            min_t: self.first_t,
            max_t: self.last_t,
            r,
        });
        Ok(())
    }

    fn push_float(&mut self, t: Timestamp, v: f64, cw: &mut ChunkWriter) -> Result<(), TsdbError> {
        let fits = matches!(&self.open, OpenChunk::Xor(a) if a.num_samples() < SAMPLES_PER_CHUNK);
        if !fits {
            self.flush(cw)?;
            self.open = OpenChunk::Xor(XorAppender::new());
            self.first_t = t;
        }
        if let OpenChunk::Xor(app) = &mut self.open {
            app.append(t, v)?;
        }
        self.last_t = t;
        Ok(())
    }

    fn push_histogram(
        &mut self,
        t: Timestamp,
        fh: &FloatHistogram,
        cw: &mut ChunkWriter,
    ) -> Result<(), TsdbError> {
        let int = match &self.open {
            OpenChunk::Float(c) if !histogram_chunk_full(c.num_samples(), c.bytes().len()) => None,
            _ => as_integer(fh),
        };
        // Try the open chunk of the same kind first.
        let outcome = match (&mut self.open, &int) {
            (OpenChunk::Int(c), Some(h))
                if !histogram_chunk_full(c.num_samples(), c.bytes().len()) =>
            {
                Some(c.append(t, h)?)
            }
            (OpenChunk::Float(c), None)
                if !histogram_chunk_full(c.num_samples(), c.bytes().len()) =>
            {
                Some(c.append(t, fh)?)
            }
            _ => None,
        };
        let header = match outcome {
            Some(HistogramAppendOutcome::Appended) => {
                self.last_t = t;
                return Ok(());
            }
            Some(HistogramAppendOutcome::NewChunk(header)) => Some(header),
            // Full, or another kind: the old chunk knows the new header
            // when it is of the same kind.
            None => match (&mut self.open, &int) {
                (OpenChunk::Int(c), Some(h)) => Some(c.next_chunk_header(h)),
                (OpenChunk::Float(c), None) => Some(c.next_chunk_header(fh)),
                _ => None,
            },
        };
        self.flush(cw)?;
        self.first_t = t;
        self.last_t = t;
        let outcome = match int {
            Some(h) => {
                let mut c = match header {
                    Some(hd) => HistogramChunk::new_with_header(hd),
                    None => HistogramChunk::new(),
                };
                let o = c.append(t, &h)?;
                self.open = OpenChunk::Int(c);
                o
            }
            None => {
                let mut c = match header {
                    Some(hd) => FloatHistogramChunk::new_with_header(hd),
                    None => FloatHistogramChunk::new(),
                };
                let o = c.append(t, fh)?;
                self.open = OpenChunk::Float(c);
                o
            }
        };
        match outcome {
            HistogramAppendOutcome::Appended => Ok(()),
            HistogramAppendOutcome::NewChunk(_) => Err(TsdbError::CorruptChunk(format!(
                "histogram at {t} refused by an empty chunk"
            ))),
        }
    }
}

/// Fsyncs a directory so renames and creations inside it are durable.
pub(crate) fn sync_dir(p: &Path) -> Result<(), TsdbError> {
    std::fs::File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(p, e))
}

/// Writes a new block into `parent` from every series `querier` returns
/// (its range should be `[mint, maxt - 1]`), re-encoding float samples
/// into XOR chunks of up to 120 samples and native histograms into
/// histogram chunks (see `SeriesChunker`). The block becomes visible only
/// when complete. Returns `None` (and writes nothing) when there are no samples.
pub fn write_block(
    parent: &Path,
    querier: &dyn Querier,
    mint: i64,
    maxt: i64,
    compaction: BlockCompaction,
) -> Result<Option<BlockMeta>, TsdbError> {
    write_block_with(
        parent,
        querier,
        mint,
        maxt,
        compaction,
        chunks::DEFAULT_SEGMENT_SIZE,
    )
}

pub(crate) fn write_block_with(
    parent: &Path,
    querier: &dyn Querier,
    mint: i64,
    maxt: i64,
    mut compaction: BlockCompaction,
    segment_size: u64,
) -> Result<Option<BlockMeta>, TsdbError> {
    create_block(parent, |tmp, id| {
        write_block_inner(tmp, id, querier, mint, maxt, &mut compaction, segment_size)
    })
}

/// Runs `fill` on a fresh `<ulid>.tmp-for-creation` directory under
/// `parent` and renames it to `<ulid>` when `fill` returns a block; removes
/// it otherwise.
pub(crate) fn create_block(
    parent: &Path,
    fill: impl FnOnce(&Path, &str) -> Result<Option<BlockMeta>, TsdbError>,
) -> Result<Option<BlockMeta>, TsdbError> {
    let id = ulid::Ulid::from_datetime(std::time::SystemTime::now()).to_string();
    let tmp = parent.join(format!("{id}.tmp-for-creation"));
    match fill(&tmp, &id) {
        Ok(Some(meta)) => {
            let dst = parent.join(&id);
            std::fs::rename(&tmp, &dst).map_err(|e| io_err(&dst, e))?;
            sync_dir(parent)?;
            Ok(Some(meta))
        }
        Ok(None) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(None)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Writes the index, an empty tombstones file and `meta.json` of a block
/// whose chunks are written and closed, and fsyncs the directory.
/// Returns `None` when there are no series.
pub(crate) fn finish_block(
    tmp: &Path,
    id: &str,
    series: &[(Labels, Vec<ChunkMeta>)],
    stats: BlockStats,
    mint: i64,
    maxt: i64,
    compaction: &mut BlockCompaction,
) -> Result<Option<BlockMeta>, TsdbError> {
    if series.is_empty() {
        return Ok(None);
    }
    index::write_index(&tmp.join("index"), series)?;
    Tombstones::default().write(tmp)?;
    if compaction.sources.is_empty() {
        compaction.sources = vec![id.to_string()];
    }
    compaction.level = compaction.level.max(1);
    let meta = BlockMeta {
        ulid: id.to_string(),
        min_time: mint,
        max_time: maxt,
        stats,
        compaction: compaction.clone(),
        version: 1,
    };
    meta.write(tmp)?;
    sync_dir(&tmp.join("chunks"))?;
    sync_dir(tmp)?;
    Ok(Some(meta))
}

fn write_block_inner(
    tmp: &Path,
    id: &str,
    querier: &dyn Querier,
    mint: i64,
    maxt: i64,
    compaction: &mut BlockCompaction,
    segment_size: u64,
) -> Result<Option<BlockMeta>, TsdbError> {
    std::fs::create_dir_all(tmp).map_err(|e| io_err(tmp, e))?;
    let mut cw = ChunkWriter::new(&tmp.join("chunks"), segment_size)?;
    let mut series: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
    let mut stats = BlockStats::default();
    let mut ss = querier.select(true, None, &[]);
    let mut prev: Option<Labels> = None;
    while let Some(s) = ss.next() {
        if prev.as_ref().is_some_and(|p| *p >= s.labels) {
            return Err(TsdbError::BlockIo(format!(
                "series out of order while writing block: {:?}",
                s.labels
            )));
        }
        prev = Some(s.labels.clone());
        let mut it = s.samples;
        let mut ch = SeriesChunker::default();
        while let Some(smp) = it.next() {
            if smp.t < mint || smp.t >= maxt {
                continue;
            }
            match it.histogram() {
                Some(fh) => ch.push_histogram(smp.t, fh, &mut cw)?,
                None => ch.push_float(smp.t, smp.v, &mut cw)?,
            }
            stats.num_samples += 1;
        }
        if let Some(e) = it.err() {
            return Err(TsdbError::BlockIo(format!(
                "reading series {:?}: {e}",
                s.labels
            )));
        }
        ch.flush(&mut cw)?;
        let metas = ch.metas;
        if metas.is_empty() {
            continue;
        }
        stats.num_chunks += metas.len() as u64;
        stats.num_series += 1;
        series.push((s.labels, metas));
    }
    if let Some(e) = ss.err() {
        return Err(TsdbError::BlockIo(format!(
            "reading series for a block: {e}"
        )));
    }
    cw.close()?;
    finish_block(tmp, id, &series, stats, mint, maxt, compaction)
}

#[cfg(test)]
pub(crate) mod tests;
