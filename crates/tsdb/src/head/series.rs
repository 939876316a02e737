//! Series of the head and the striped maps that find them.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use pharos_model::{
    FloatHistogram, Histogram, HistogramValue, Labels, Span, Timestamp, is_stale_nan,
};

use crate::chunkenc::{
    ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, ENCODING_XOR, FloatHistogramChunk,
    HistogramAppendOutcome, HistogramChunk, MIN_SAMPLES_PER_HISTOGRAM_CHUNK,
    TARGET_HISTOGRAM_CHUNK_BYTES, XorAppender,
};
use crate::head_chunks::ChunkBytes;

/// Buffer size of a series' first chunk.
const INITIAL_CHUNK_CAPACITY: usize = 32;
/// Room added to the previous chunk's size when sizing the next one.
const CHUNK_SLACK: usize = 16;
/// Largest buffer reserved up front.
const MAX_CHUNK_CAPACITY: usize = 1024;

/// Buffer size of a series' first chunk during WAL replay, where a series
/// usually goes on to fill its chunk: room for `max_samples` samples at
/// about 1.4 bytes each (a typical 120-sample chunk is 140-170 bytes), so
/// the buffer is not regrown in small steps. The replay gives the unused
/// rest back at its end ([`SeriesState::shrink_open_chunk`]).
pub(crate) fn replay_chunk_capacity(max_samples: u16) -> usize {
    (usize::from(max_samples) * 11 / 8 + CHUNK_SLACK)
        .clamp(INITIAL_CHUNK_CAPACITY, MAX_CHUNK_CAPACITY)
}

/// A closed, immutable chunk: shared with queriers without copying.
#[derive(Clone)]
pub(crate) struct ClosedChunk {
    pub(crate) min_t: Timestamp,
    pub(crate) max_t: Timestamp,
    pub(crate) data: ChunkBytes,
}

/// An open histogram chunk: integer or float counts.
pub(crate) enum HistChunk {
    /// Integer counts (`ENCODING_HISTOGRAM`).
    Int(HistogramChunk),
    /// Float counts (`ENCODING_FLOAT_HISTOGRAM`).
    Float(FloatHistogramChunk),
}

/// The open chunk of a series whose newest samples are histograms, with the
/// newest sample kept for duplicate checks. Boxed: float series never pay
/// for it.
pub(crate) struct HistHead {
    pub(crate) chunk: HistChunk,
    pub(crate) last_t: Timestamp,
    pub(crate) last: HistogramValue,
}

impl HistHead {
    fn num_samples(&self) -> u16 {
        match &self.chunk {
            HistChunk::Int(c) => c.num_samples(),
            HistChunk::Float(c) => c.num_samples(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.chunk {
            HistChunk::Int(c) => c.bytes(),
            HistChunk::Float(c) => c.bytes(),
        }
    }

    fn encoding(&self) -> u8 {
        match &self.chunk {
            HistChunk::Int(_) => ENCODING_HISTOGRAM,
            HistChunk::Float(_) => ENCODING_FLOAT_HISTOGRAM,
        }
    }
}

/// The appender of the open chunk. The histogram variant fits in the XOR
/// appender's niche, so the enum costs float series no memory.
pub(crate) enum ChunkApp {
    /// Float samples, XOR-encoded.
    Xor(XorAppender),
    /// Native histograms.
    Hist(Box<HistHead>),
}

impl ChunkApp {
    /// Timestamp of the newest sample.
    pub(crate) fn last_t(&self) -> Timestamp {
        match self {
            ChunkApp::Xor(a) => a.last_t(),
            ChunkApp::Hist(h) => h.last_t,
        }
    }

    /// The chunk encoding byte.
    pub(crate) fn encoding(&self) -> u8 {
        match self {
            ChunkApp::Xor(_) => ENCODING_XOR,
            ChunkApp::Hist(h) => h.encoding(),
        }
    }

    /// A copy of the chunk bytes as they are now.
    pub(crate) fn to_bytes(&self) -> Arc<[u8]> {
        match self {
            ChunkApp::Xor(a) => a.bytes().collect(),
            ChunkApp::Hist(h) => Arc::from(h.bytes()),
        }
    }

    /// Heap bytes reserved by the chunk buffer.
    pub(crate) fn capacity(&self) -> usize {
        match self {
            ChunkApp::Xor(a) => a.capacity(),
            ChunkApp::Hist(h) => h.bytes().len(),
        }
    }
}

/// The chunk samples are appended to.
pub(crate) struct HeadChunk {
    pub(crate) min_t: Timestamp,
    /// First timestamp that no longer belongs in this chunk: the end of the
    /// chunk-range window holding `min_t`, so chunks never straddle the
    /// boundaries blocks will later be cut at.
    pub(crate) end: Timestamp,
    pub(crate) app: ChunkApp,
}

fn range_end(t: Timestamp, chunk_range: i64) -> Timestamp {
    if chunk_range > 0 {
        t.div_euclid(chunk_range)
            .checked_add(1)
            .and_then(|k| k.checked_mul(chunk_range))
            .unwrap_or(i64::MAX)
    } else {
        i64::MAX
    }
}

impl HeadChunk {
    fn new(t: Timestamp, chunk_range: i64, capacity: usize) -> HeadChunk {
        HeadChunk {
            min_t: t,
            end: range_end(t, chunk_range),
            app: ChunkApp::Xor(XorAppender::with_capacity(capacity)),
        }
    }

    pub(crate) fn max_t(&self) -> Timestamp {
        self.app.last_t()
    }

    fn close(self) -> ClosedChunk {
        let max_t = self.app.last_t();
        let enc = self.app.encoding();
        ClosedChunk {
            min_t: self.min_t,
            max_t,
            data: ChunkBytes::Heap(self.app.to_bytes(), enc),
        }
    }
}

/// Histogram equality for duplicate detection, as Prometheus's `Equals`:
/// same kind, every field equal, floats compared by their bits (so a stale
/// marker equals itself).
pub(crate) fn histograms_equal(a: &HistogramValue, b: &HistogramValue) -> bool {
    fn spans_eq(a: &[Span], b: &[Span]) -> bool {
        a == b
    }
    fn f64s_eq(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }
    match (a, b) {
        (HistogramValue::Int(a), HistogramValue::Int(b)) => {
            let Histogram {
                counter_reset_hint: _,
                schema,
                zero_threshold,
                zero_count,
                count,
                sum,
                positive_spans,
                negative_spans,
                positive_buckets,
                negative_buckets,
                custom_values,
            } = a;
            *schema == b.schema
                && zero_threshold.to_bits() == b.zero_threshold.to_bits()
                && *zero_count == b.zero_count
                && *count == b.count
                && sum.to_bits() == b.sum.to_bits()
                && spans_eq(positive_spans, &b.positive_spans)
                && spans_eq(negative_spans, &b.negative_spans)
                && *positive_buckets == b.positive_buckets
                && *negative_buckets == b.negative_buckets
                && f64s_eq(custom_values, &b.custom_values)
        }
        (HistogramValue::Float(a), HistogramValue::Float(b)) => {
            let FloatHistogram {
                counter_reset_hint: _,
                schema,
                zero_threshold,
                zero_count,
                count,
                sum,
                positive_spans,
                negative_spans,
                positive_buckets,
                negative_buckets,
                custom_values,
            } = a;
            *schema == b.schema
                && zero_threshold.to_bits() == b.zero_threshold.to_bits()
                && zero_count.to_bits() == b.zero_count.to_bits()
                && count.to_bits() == b.count.to_bits()
                && sum.to_bits() == b.sum.to_bits()
                && spans_eq(positive_spans, &b.positive_spans)
                && spans_eq(negative_spans, &b.negative_spans)
                && f64s_eq(positive_buckets, &b.positive_buckets)
                && f64s_eq(negative_buckets, &b.negative_buckets)
                && f64s_eq(custom_values, &b.custom_values)
        }
        _ => false,
    }
}

/// A 64-bit digest of a histogram, consistent with [`histograms_equal`]:
/// what an appender remembers of the histogram it buffered last.
pub(crate) fn histogram_digest(h: &HistogramValue) -> u64 {
    use std::hash::Hash;
    let mut s = std::collections::hash_map::DefaultHasher::new();
    let spans = |s: &mut std::collections::hash_map::DefaultHasher, v: &[Span]| {
        for x in v {
            (x.offset, x.length).hash(s);
        }
        v.len().hash(s);
    };
    match h {
        HistogramValue::Int(h) => {
            0u8.hash(&mut s);
            (h.schema, h.zero_threshold.to_bits(), h.zero_count, h.count).hash(&mut s);
            h.sum.to_bits().hash(&mut s);
            spans(&mut s, &h.positive_spans);
            spans(&mut s, &h.negative_spans);
            h.positive_buckets.hash(&mut s);
            h.negative_buckets.hash(&mut s);
            for v in &h.custom_values {
                v.to_bits().hash(&mut s);
            }
        }
        HistogramValue::Float(h) => {
            1u8.hash(&mut s);
            (h.schema, h.zero_threshold.to_bits()).hash(&mut s);
            (h.zero_count.to_bits(), h.count.to_bits(), h.sum.to_bits()).hash(&mut s);
            spans(&mut s, &h.positive_spans);
            spans(&mut s, &h.negative_spans);
            for v in h.positive_buckets.iter().chain(&h.negative_buckets) {
                v.to_bits().hash(&mut s);
            }
            h.positive_buckets.len().hash(&mut s);
            for v in &h.custom_values {
                v.to_bits().hash(&mut s);
            }
        }
    }
    std::hash::Hasher::finish(&s)
}

/// How a sample relates to a series' newest sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Newer: append it.
    Ok,
    /// Same timestamp and identical value bits: nothing to do.
    NoOp,
    /// Older than the newest sample.
    OutOfOrder,
    /// Same timestamp, different value.
    Duplicate,
    /// A histogram the chunk encoder refused (malformed).
    Invalid,
}

fn combine(committed: Check, pending: Check) -> Check {
    use Check::*;
    match (committed, pending) {
        (Invalid, _) | (_, Invalid) => Invalid,
        (OutOfOrder, _) | (_, OutOfOrder) => OutOfOrder,
        (Duplicate, _) | (_, Duplicate) => Duplicate,
        (NoOp, _) | (_, NoOp) => NoOp,
        (Ok, Ok) => Ok,
    }
}

fn check_against(last_t: Timestamp, last_v: u64, t: Timestamp, v: u64) -> Check {
    if t > last_t {
        Check::Ok
    } else if t < last_t {
        Check::OutOfOrder
    } else if v == last_v {
        Check::NoOp
    } else {
        Check::Duplicate
    }
}

/// Mutable part of a series, behind its mutex.
pub(crate) struct SeriesState {
    /// Closed chunks, oldest first; all older than `head`.
    pub(crate) closed: Vec<ClosedChunk>,
    /// The open chunk; `None` until the first sample is committed (and then
    /// never again while the series lives).
    pub(crate) head: Option<HeadChunk>,
    /// Samples buffered by open appenders; a series with pending samples is
    /// never garbage-collected.
    pub(crate) pending_samples: u32,
    /// The appender transaction that last buffered a sample here, and that
    /// sample, so one transaction's samples are validated against each other.
    pub(crate) pending_txn: u64,
    pub(crate) pending_t: Timestamp,
    /// The float's bits, or a histogram's [`histogram_digest`].
    pub(crate) pending_v: u64,
    /// Whether the pending sample is a histogram.
    pub(crate) pending_hist: bool,
    /// Set (under the stripe and series locks) when the series has been
    /// taken out of the maps; appenders holding it must look again.
    pub(crate) removed: bool,
    /// Whether the series is in the postings index (set by the first commit
    /// that gives it a sample).
    pub(crate) indexed: bool,
}

impl SeriesState {
    /// Checks a sample against the committed newest sample and, when the
    /// same transaction buffered one, against that too.
    pub(crate) fn check(&self, txn: u64, t: Timestamp, v: u64) -> Check {
        let committed = match &self.head {
            Some(h) => match &h.app {
                ChunkApp::Xor(a) => check_against(a.last_t(), a.last_v().to_bits(), t, v),
                // A float at a histogram's timestamp is never the same sample.
                ChunkApp::Hist(x) => check_against(x.last_t, 0, t, 1),
            },
            None => Check::Ok,
        };
        let pending = if txn != 0 && self.pending_txn == txn {
            if self.pending_hist {
                check_against(self.pending_t, 0, t, 1)
            } else {
                check_against(self.pending_t, self.pending_v, t, v)
            }
        } else {
            Check::Ok
        };
        combine(committed, pending)
    }

    /// [`SeriesState::check`] for a histogram sample (`digest` is its
    /// [`histogram_digest`]).
    pub(crate) fn check_histogram(
        &self,
        txn: u64,
        t: Timestamp,
        h: &HistogramValue,
        digest: u64,
    ) -> Check {
        let committed = match &self.head {
            Some(hc) => match &hc.app {
                ChunkApp::Xor(a) => check_against(a.last_t(), 0, t, 1),
                ChunkApp::Hist(x) => {
                    let same = histograms_equal(&x.last, h);
                    check_against(x.last_t, 0, t, u64::from(!same))
                }
            },
            None => Check::Ok,
        };
        let pending = if txn != 0 && self.pending_txn == txn {
            let same = self.pending_hist && self.pending_v == digest;
            check_against(self.pending_t, 0, t, u64::from(!same))
        } else {
            Check::Ok
        };
        combine(committed, pending)
    }

    /// Appends a committed histogram sample, cutting a new chunk when the
    /// open one holds floats or the other kind of histogram, is large
    /// enough, is full, crosses the chunk-range boundary, or the chunk
    /// encoder asks for one (counter reset, schema change...). Returns
    /// whether a chunk was created, or `Err` when the sample was not
    /// appended.
    pub(crate) fn append_histogram(
        &mut self,
        t: Timestamp,
        h: &HistogramValue,
        max_samples: u16,
        chunk_range: i64,
    ) -> Result<bool, Check> {
        match self.check_histogram(0, t, h, 0) {
            Check::Ok => {}
            other => return Err(other),
        }
        let float = matches!(h, HistogramValue::Float(_));
        let cut = match &self.head {
            None => true,
            Some(hc) => match &hc.app {
                ChunkApp::Xor(_) => true,
                ChunkApp::Hist(x) => {
                    let n = x.num_samples();
                    matches!(x.chunk, HistChunk::Float(_)) != float
                        || t >= hc.end
                        || n >= max_samples.max(1)
                        || (n >= MIN_SAMPLES_PER_HISTOGRAM_CHUNK
                            && x.bytes().len() >= TARGET_HISTOGRAM_CHUNK_BYTES)
                }
            },
        };
        let header = if cut {
            // Cut for size or time: the previous chunk of the same kind
            // tells the new one's counter-reset header, as in Prometheus.
            match self.head.as_mut().map(|hc| &mut hc.app) {
                Some(ChunkApp::Hist(x)) => match (&mut x.chunk, h) {
                    (HistChunk::Int(c), HistogramValue::Int(v)) => Some(c.next_chunk_header(v)),
                    (HistChunk::Float(c), HistogramValue::Float(v)) => Some(c.next_chunk_header(v)),
                    _ => None,
                },
                _ => None,
            }
        } else {
            let Some(ChunkApp::Hist(x)) = self.head.as_mut().map(|hc| &mut hc.app) else {
                panic!("BUG: histogram head chunk missing after the cut check");
            };
            let outcome = match (&mut x.chunk, h) {
                (HistChunk::Int(c), HistogramValue::Int(v)) => c.append(t, v),
                (HistChunk::Float(c), HistogramValue::Float(v)) => c.append(t, v),
                _ => panic!("BUG: histogram kind changed without a cut"),
            };
            match outcome {
                Ok(HistogramAppendOutcome::Appended) => {
                    x.last_t = t;
                    x.last = h.clone();
                    return Ok(false);
                }
                Ok(HistogramAppendOutcome::NewChunk(header)) => Some(header),
                Err(_) => return Err(Check::Invalid),
            }
        };
        // Fill the new chunk before closing the old one, so a histogram the
        // encoder refuses leaves the series as it was.
        let mut chunk = match (h, header) {
            (HistogramValue::Int(_), None) => HistChunk::Int(HistogramChunk::new()),
            (HistogramValue::Int(_), Some(hd)) => {
                HistChunk::Int(HistogramChunk::new_with_header(hd))
            }
            (HistogramValue::Float(_), None) => HistChunk::Float(FloatHistogramChunk::new()),
            (HistogramValue::Float(_), Some(hd)) => {
                HistChunk::Float(FloatHistogramChunk::new_with_header(hd))
            }
        };
        let outcome = match (&mut chunk, h) {
            (HistChunk::Int(c), HistogramValue::Int(v)) => c.append(t, v),
            (HistChunk::Float(c), HistogramValue::Float(v)) => c.append(t, v),
            _ => panic!("BUG: new histogram chunk of the wrong kind"),
        };
        if !matches!(outcome, Ok(HistogramAppendOutcome::Appended)) {
            return Err(Check::Invalid);
        }
        if let Some(old) = self.head.take() {
            if self.closed.len() == self.closed.capacity() {
                self.closed.reserve_exact((self.closed.len() / 2).max(1));
            }
            self.closed.push(old.close());
        }
        self.head = Some(HeadChunk {
            min_t: t,
            end: range_end(t, chunk_range),
            app: ChunkApp::Hist(Box::new(HistHead {
                chunk,
                last_t: t,
                last: h.clone(),
            })),
        });
        Ok(true)
    }

    /// The stale marker to store instead of the float stale marker `v`
    /// when the series' newest sample is a native histogram: a histogram
    /// of the same kind whose sum is the stale NaN, as Prometheus does (at
    /// commit and at WAL replay), so a histogram series' staleness does not
    /// cut a float chunk. `None` for any other value or series.
    #[inline]
    pub(crate) fn stale_histogram_for(&self, v: f64) -> Option<HistogramValue> {
        if !is_stale_nan(v) {
            return None;
        }
        let encoding = match &self.head {
            Some(h) => h.app.encoding(),
            None => self.closed.last()?.data.encoding(),
        };
        match encoding {
            ENCODING_HISTOGRAM => Some(HistogramValue::Int(Histogram {
                sum: v,
                ..Histogram::default()
            })),
            ENCODING_FLOAT_HISTOGRAM => Some(HistogramValue::Float(FloatHistogram {
                sum: v,
                ..FloatHistogram::default()
            })),
            _ => None,
        }
    }

    /// Appends a committed sample, cutting a new chunk when the open one is
    /// full or the sample crosses the chunk-range boundary. Returns whether
    /// a chunk was created, or `None` when the sample was not appended.
    /// A stale marker on a histogram series is stored as a histogram stale
    /// marker ([`SeriesState::stale_histogram_for`]).
    pub(crate) fn append(
        &mut self,
        t: Timestamp,
        v: f64,
        max_samples: u16,
        chunk_range: i64,
    ) -> Result<bool, Check> {
        self.append_sized(t, v, max_samples, chunk_range, INITIAL_CHUNK_CAPACITY)
    }

    /// [`SeriesState::append`], reserving `first_capacity` bytes when the
    /// series' first chunk is created (later chunks are sized like their
    /// predecessor).
    pub(crate) fn append_sized(
        &mut self,
        t: Timestamp,
        v: f64,
        max_samples: u16,
        chunk_range: i64,
        first_capacity: usize,
    ) -> Result<bool, Check> {
        if let Some(h) = self.stale_histogram_for(v) {
            return self.append_histogram(t, &h, max_samples, chunk_range);
        }
        match self.check(0, t, v.to_bits()) {
            Check::Ok => {}
            other => return Err(other),
        }
        let cut = match &self.head {
            None => true,
            Some(h) => match &h.app {
                ChunkApp::Xor(a) => a.num_samples() >= max_samples.max(1) || t >= h.end,
                ChunkApp::Hist(_) => true,
            },
        };
        if cut {
            if let Some(old) = self.head.take() {
                // Grow by half rather than doubling from 4: a series closes
                // one chunk every half hour or so, and most hold few.
                if self.closed.len() == self.closed.capacity() {
                    self.closed.reserve_exact((self.closed.len() / 2).max(1));
                }
                self.closed.push(old.close());
            }
            // Size the new chunk like the last full one: one allocation
            // instead of a series of reallocations for steady series.
            let capacity = self
                .closed
                .last()
                .filter(|c| c.data.encoding() == ENCODING_XOR)
                .map_or(first_capacity, |c| c.data.len() + CHUNK_SLACK)
                .min(MAX_CHUNK_CAPACITY);
            self.head = Some(HeadChunk::new(t, chunk_range, capacity));
        }
        let Some(ChunkApp::Xor(app)) = self.head.as_mut().map(|h| &mut h.app) else {
            panic!("BUG: XOR head chunk missing right after it was ensured");
        };
        if let Err(e) = app.append(t, v) {
            panic!("BUG: head chunk refused a sample below its cut size: {e}");
        }
        Ok(cut)
    }

    /// Gives back the unused reserve of the open float chunk's buffer when
    /// it is more than the usual growth step (after a replay sized it with
    /// [`replay_chunk_capacity`]).
    pub(crate) fn shrink_open_chunk(&mut self) {
        if let Some(HeadChunk {
            app: ChunkApp::Xor(a),
            ..
        }) = self.head.as_mut()
            && a.capacity() > a.len_bytes() + CHUNK_SLACK
        {
            a.shrink_to_fit();
        }
    }

    /// Time range of the committed samples.
    pub(crate) fn time_range(&self) -> Option<(Timestamp, Timestamp)> {
        let h = self.head.as_ref()?;
        let min = self.closed.first().map_or(h.min_t, |c| c.min_t);
        Some((min, h.max_t()))
    }

    /// Number of chunks held (closed plus open).
    pub(crate) fn num_chunks(&self) -> usize {
        self.closed.len() + usize::from(self.head.is_some())
    }
}

/// One series of the head.
pub(crate) struct MemSeries {
    /// Stable reference, never reused while the process lives.
    pub(crate) sref: u64,
    /// The label set, sharing the caller's buffer.
    pub(crate) labels: Labels,
    pub(crate) state: Mutex<SeriesState>,
}

impl MemSeries {
    fn new(sref: u64, labels: Labels) -> MemSeries {
        MemSeries {
            sref,
            labels,
            state: Mutex::new(SeriesState {
                closed: Vec::new(),
                head: None,
                pending_samples: 0,
                pending_txn: 0,
                pending_t: 0,
                pending_v: 0,
                pending_hist: false,
                removed: false,
                indexed: false,
            }),
        }
    }
}

/// Hasher for keys that are already integers: a folded multiply, which mixes
/// both the low bits (hash-table buckets) and the high bits (hashbrown's
/// tags). Keys within one stripe share their low bits, so identity hashing
/// would be a disaster.
#[derive(Default, Clone, Copy)]
pub(crate) struct U64Hash;

/// The hasher built by [`U64Hash`].
#[derive(Default)]
pub(crate) struct U64Hasher(u64);

impl Hasher for U64Hasher {
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

impl BuildHasher for U64Hash {
    type Hasher = U64Hasher;
    fn build_hasher(&self) -> U64Hasher {
        U64Hasher(0)
    }
}

/// Slots per segment of a [`RefIndex`].
const SEGMENT: u64 = 64;

struct Segment {
    live: u32,
    slots: [Option<Arc<MemSeries>>; SEGMENT as usize],
}

/// One stripe's series by reference: a directory of fixed-size segments
/// indexed directly by `ref >> stripe_bits`.
///
/// References are handed out in increasing order and scrape loops append in
/// roughly that order, so lookups walk memory sequentially, where a hash
/// table would take a cache miss per sample (measured: 38% of append time).
/// A segment is freed when its last series goes, and empty segments at
/// either end of the directory are dropped, so churn costs at most one
/// 8-byte directory entry per 64 references of a stripe.
#[derive(Default)]
struct RefIndex {
    /// Segment number of `dir[0]`.
    base: u64,
    dir: VecDeque<Option<Box<Segment>>>,
}

impl RefIndex {
    fn locate(&self, idx: u64) -> Option<(usize, usize)> {
        let seg = idx / SEGMENT;
        let d = seg.checked_sub(self.base)?;
        Some((usize::try_from(d).ok()?, (idx % SEGMENT) as usize))
    }

    fn get(&self, idx: u64) -> Option<&Arc<MemSeries>> {
        let (d, slot) = self.locate(idx)?;
        self.dir.get(d)?.as_ref()?.slots.get(slot)?.as_ref()
    }

    fn insert(&mut self, idx: u64, s: Arc<MemSeries>) {
        let seg = idx / SEGMENT;
        if self.dir.is_empty() {
            self.base = seg;
        }
        while seg < self.base {
            self.dir.push_front(None);
            self.base -= 1;
        }
        let d = (seg - self.base) as usize;
        while self.dir.len() <= d {
            self.dir.push_back(None);
        }
        if let Some(entry) = self.dir.get_mut(d) {
            let segment = entry.get_or_insert_with(|| {
                Box::new(Segment {
                    live: 0,
                    slots: std::array::from_fn(|_| None),
                })
            });
            if let Some(slot) = segment.slots.get_mut((idx % SEGMENT) as usize)
                && slot.replace(s).is_none()
            {
                segment.live += 1;
            }
        }
    }

    fn remove(&mut self, idx: u64) {
        let Some((d, slot)) = self.locate(idx) else {
            return;
        };
        if let Some(entry) = self.dir.get_mut(d)
            && let Some(segment) = entry
            && segment.slots.get_mut(slot).and_then(Option::take).is_some()
        {
            segment.live -= 1;
            if segment.live == 0 {
                *entry = None;
            }
        }
        while matches!(self.dir.front(), Some(None)) {
            self.dir.pop_front();
            self.base += 1;
        }
        while matches!(self.dir.back(), Some(None)) {
            self.dir.pop_back();
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.dir
            .iter()
            .flatten()
            .flat_map(|seg| seg.slots.iter().flatten())
    }
}

#[derive(Default)]
struct HashMaps {
    /// Label hash -> series; the common, collision-free case.
    unique: HashMap<u64, Arc<MemSeries>, U64Hash>,
    /// Further series whose labels hash like the one in `unique`.
    conflicts: HashMap<u64, Vec<Arc<MemSeries>>, U64Hash>,
}

impl HashMaps {
    fn get(&self, hash: u64, labels: &Labels) -> Option<&Arc<MemSeries>> {
        let first = self.unique.get(&hash)?;
        if first.labels == *labels {
            return Some(first);
        }
        self.conflicts
            .get(&hash)?
            .iter()
            .find(|s| s.labels == *labels)
    }

    fn insert(&mut self, hash: u64, s: Arc<MemSeries>) {
        match self.unique.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.conflicts.entry(hash).or_default().push(s);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(s);
            }
        }
    }

    fn remove(&mut self, hash: u64, s: &Arc<MemSeries>) {
        let is_unique = self.unique.get(&hash).is_some_and(|u| Arc::ptr_eq(u, s));
        if is_unique {
            self.unique.remove(&hash);
            if let Some(c) = self.conflicts.get_mut(&hash) {
                if let Some(next) = c.pop() {
                    self.unique.insert(hash, next);
                }
                if c.is_empty() {
                    self.conflicts.remove(&hash);
                }
            }
        } else if let Some(c) = self.conflicts.get_mut(&hash) {
            c.retain(|x| !Arc::ptr_eq(x, s));
            if c.is_empty() {
                self.conflicts.remove(&hash);
            }
        }
    }
}

/// Padding to a cache line so neighbouring stripes' locks do not share one.
#[repr(align(64))]
struct Padded<T>(T);

/// The series maps, striped so appenders on different series rarely meet on
/// a lock: one set of stripes by reference (the append hot path), one by
/// label hash (series creation and lookup by labels). Lock order: hash
/// stripe, then series mutex, then ref stripe.
pub(crate) struct StripeSeries {
    by_ref: Box<[Padded<RwLock<RefIndex>>]>,
    by_hash: Box<[Padded<RwLock<HashMaps>>]>,
    mask: u64,
    /// log2 of the stripe count.
    shift: u32,
}

impl StripeSeries {
    /// `stripes` is rounded up to a power of two.
    pub(crate) fn new(stripes: usize) -> StripeSeries {
        let n = stripes.clamp(1, 1 << 16).next_power_of_two();
        StripeSeries {
            by_ref: (0..n)
                .map(|_| Padded(RwLock::new(RefIndex::default())))
                .collect(),
            by_hash: (0..n)
                .map(|_| Padded(RwLock::new(HashMaps::default())))
                .collect(),
            mask: n as u64 - 1,
            shift: n.trailing_zeros(),
        }
    }

    fn ref_stripe(&self, r: u64) -> &RwLock<RefIndex> {
        &self.by_ref[(r & self.mask) as usize].0
    }

    /// Position of reference `r` inside its stripe's index.
    fn ref_slot(&self, r: u64) -> u64 {
        r >> self.shift
    }

    fn hash_stripe(&self, h: u64) -> &RwLock<HashMaps> {
        &self.by_hash[(h & self.mask) as usize].0
    }

    /// The series with reference `r`.
    pub(crate) fn get_by_ref(&self, r: u64) -> Option<Arc<MemSeries>> {
        self.ref_stripe(r).read().get(self.ref_slot(r)).cloned()
    }

    /// The series with `labels` (whose `hash64()` is `hash`), creating it
    /// with a reference from `new_ref` if absent. The flag tells whether it
    /// was created.
    pub(crate) fn get_or_create(
        &self,
        hash: u64,
        labels: &Labels,
        new_ref: impl FnOnce() -> u64,
    ) -> (Arc<MemSeries>, bool) {
        let stripe = self.hash_stripe(hash);
        if let Some(s) = stripe.read().get(hash, labels) {
            return (s.clone(), false);
        }
        let mut maps = stripe.write();
        if let Some(s) = maps.get(hash, labels) {
            return (s.clone(), false);
        }
        let sref = new_ref();
        let s = Arc::new(MemSeries::new(sref, labels.clone()));
        maps.insert(hash, s.clone());
        self.ref_stripe(sref)
            .write()
            .insert(self.ref_slot(sref), s.clone());
        (s, true)
    }

    /// Removes `s` if it holds no sample and none is pending. Returns
    /// whether it was removed.
    pub(crate) fn remove_if_empty(&self, s: &Arc<MemSeries>) -> bool {
        let hash = s.labels.hash64();
        let mut maps = self.hash_stripe(hash).write();
        {
            let mut st = s.state.lock();
            if st.removed || st.pending_samples > 0 || st.head.is_some() {
                return false;
            }
            st.removed = true;
        }
        maps.remove(hash, s);
        self.ref_stripe(s.sref)
            .write()
            .remove(self.ref_slot(s.sref));
        true
    }

    /// Visits every series with its state locked; those for which `f`
    /// returns true are marked removed and taken out of the maps. Returns
    /// them.
    pub(crate) fn gc(
        &self,
        mut f: impl FnMut(&MemSeries, &mut SeriesState) -> bool,
    ) -> Vec<Arc<MemSeries>> {
        let mut removed = Vec::new();
        for stripe in self.by_hash.iter() {
            let mut maps = stripe.0.write();
            let mut gone = Vec::new();
            for s in maps
                .unique
                .values()
                .chain(maps.conflicts.values().flatten())
            {
                let mut st = s.state.lock();
                if !st.removed && f(s, &mut st) {
                    st.removed = true;
                    gone.push(s.clone());
                }
            }
            for s in &gone {
                maps.remove(s.labels.hash64(), s);
                self.ref_stripe(s.sref)
                    .write()
                    .remove(self.ref_slot(s.sref));
            }
            removed.extend(gone);
        }
        removed
    }

    /// Calls `f` on every series (no lock held on the series).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<MemSeries>)) {
        for stripe in self.by_ref.iter() {
            for s in stripe.0.read().iter() {
                f(s);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_collisions_are_kept_apart() {
        let st = StripeSeries::new(4);
        let a = Labels::from_pairs(&[("a", "1")]);
        let b = Labels::from_pairs(&[("a", "2")]);
        let c = Labels::from_pairs(&[("a", "3")]);
        let mut next = 0;
        // Force one hash for all three.
        let (sa, ca) = st.get_or_create(7, &a, || {
            next += 1;
            next
        });
        let (sb, cb) = st.get_or_create(7, &b, || {
            next += 1;
            next
        });
        let (sc, _) = st.get_or_create(7, &c, || {
            next += 1;
            next
        });
        assert!(ca && cb);
        let (sa2, ca2) = st.get_or_create(7, &a, || 99);
        assert!(!ca2 && Arc::ptr_eq(&sa, &sa2));
        assert_eq!(st.get_by_ref(sb.sref).unwrap().labels, b);
        // Remove the unique entry: a conflict takes its place.
        let mut maps = st.hash_stripe(7).write();
        maps.remove(7, &sa);
        assert!(maps.get(7, &a).is_none());
        assert!(Arc::ptr_eq(maps.get(7, &b).unwrap(), &sb));
        assert!(Arc::ptr_eq(maps.get(7, &c).unwrap(), &sc));
        maps.remove(7, &sc);
        maps.remove(7, &sb);
        assert!(maps.unique.is_empty() && maps.conflicts.is_empty());
    }

    #[test]
    fn cuts_on_count_and_range() {
        let s = MemSeries::new(1, Labels::from_pairs(&[("a", "1")]));
        let mut st = s.state.lock();
        let mut cuts = 0;
        for i in 0..250 {
            if st.append(i * 10, 1.0, 40, 1000).unwrap() {
                cuts += 1;
            }
        }
        // Windows of 1000 ms hold 100, 100 and 50 samples, cut every 40:
        // 3 + 3 + 2 chunks.
        assert_eq!(cuts, 8);
        assert!(st.closed.iter().all(|c| c.min_t / 1000 == c.max_t / 1000));
        assert_eq!(st.append(0, 1.0, 40, 1000), Err(Check::OutOfOrder));
        assert_eq!(st.append(2490, 1.0, 40, 1000), Err(Check::NoOp));
        assert_eq!(st.append(2490, 2.0, 40, 1000), Err(Check::Duplicate));
        drop(st);
        let s = MemSeries::new(2, Labels::from_pairs(&[("a", "1")]));
        let mut st = s.state.lock();
        for i in 0..250 {
            st.append(i, 1.0, 120, 0).unwrap();
        }
        assert_eq!(st.closed.len(), 2);
        assert_eq!(st.num_chunks(), 3);
        assert_eq!(st.time_range(), Some((0, 249)));
    }

    #[test]
    fn ref_index_segments_come_and_go() {
        let mk = |r| Arc::new(MemSeries::new(r, Labels::from_pairs(&[("a", "1")])));
        let mut ix = RefIndex::default();
        ix.insert(200, mk(200));
        ix.insert(5, mk(5)); // below the first segment: directory grows forward
        ix.insert(70, mk(70));
        assert_eq!(ix.get(5).unwrap().sref, 5);
        assert_eq!(ix.get(70).unwrap().sref, 70);
        assert_eq!(ix.get(200).unwrap().sref, 200);
        assert!(ix.get(6).is_none() && ix.get(1 << 40).is_none());
        assert_eq!(ix.iter().count(), 3);
        ix.remove(5);
        assert_eq!((ix.base, ix.dir.len()), (1, 3));
        ix.remove(200);
        assert_eq!((ix.base, ix.dir.len()), (1, 1));
        ix.remove(70);
        ix.remove(70);
        assert!(ix.dir.is_empty());
        assert!(ix.get(70).is_none());
    }

    #[test]
    fn series_stays_small() {
        // Memory per series is a budget (< 1 KiB with labels, maps, postings
        // and samples): keep the struct from creeping.
        assert!(std::mem::size_of::<MemSeries>() <= 176);
        // 40: the bytes are on the heap or in a memory-mapped file.
        assert!(std::mem::size_of::<ClosedChunk>() <= 40);
    }
}
