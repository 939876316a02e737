//! The integer native-histogram chunk, bit-compatible with Prometheus's
//! `HistogramChunk` (encoding byte 2).
//!
//! A chunk fixes one bucket layout (schema, zero threshold, spans, custom
//! bounds) in front of its first sample; every sample then stores only
//! numbers: the timestamp, count and zero count as delta-of-deltas, the sum
//! XOR'd against the previous sum, and each bucket's (delta-encoded) value
//! as a delta-of-delta. A sample whose layout gains buckets makes the chunk
//! be rewritten with the wider layout ("recoding"); a sample that cannot be
//! stored (a counter reset, a schema change...) tells the caller to cut a
//! new chunk, with the counter-reset header that chunk must carry.
//!
//! The appender state lives inside [`HistogramChunk`] next to the bytes,
//! which are always complete, so the chunk can be read while it grows and
//! the decision rules (mirroring Prometheus's `appendable`) see the last
//! sample. The byte layout is described in
//! `crates/tsdb/docs/format/chunks.md`.

use pharos_model::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use pharos_model::{Timestamp, is_stale_nan};

use super::bstream::BitReader;
use super::histogram_meta::{
    CUSTOM_SCHEMA, CounterResetHeader, HEADER_LEN, Insert, Layout, adjust_for_inserts, count_of,
    count_spans, expand_spans_and_buckets, expand_spans_both_ways, header_of, hint_for, insert,
    read_layout, set_count, set_header, write_layout,
};
use super::varbit::{
    ByteBitWriter, EOF, NO_WINDOW, put_varbit_int, put_varbit_uint, read_varbit_int,
    read_varbit_uint, xor_read, xor_write,
};
use crate::TsdbError;

/// Initial buffer capacity of a new histogram chunk.
const INITIAL_CAPACITY: usize = 128;

/// What [`HistogramChunk::append`] (and the float variant) did with a
/// sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramAppendOutcome {
    /// Stored in this chunk (possibly after recoding it in place to a wider
    /// bucket layout).
    Appended,
    /// Does not fit: the caller must cut a new chunk created with
    /// `new_with_header(header)` and append the sample there. The header
    /// says why: `CounterReset` for a detected counter reset, `Gauge` for
    /// gauge histograms, `Unknown`/`NotCounterReset` otherwise, exactly as
    /// Prometheus sets it.
    NewChunk(CounterResetHeader),
}

/// Why a histogram cannot be stored at all.
pub(crate) fn check_shape(
    schema: i32,
    pos_spans: &[Span],
    pos_len: usize,
    neg_spans: &[Span],
    neg_len: usize,
) -> Result<(), TsdbError> {
    if schema != CUSTOM_SCHEMA && !(-4..=8).contains(&schema) {
        return Err(TsdbError::InvalidHistogram(format!(
            "schema {schema} is neither -4..=8 nor {CUSTOM_SCHEMA}"
        )));
    }
    let (p, n) = (count_spans(pos_spans), count_spans(neg_spans));
    if p != pos_len || n != neg_len {
        return Err(TsdbError::InvalidHistogram(format!(
            "spans cover {p} positive and {n} negative buckets, got {pos_len} and {neg_len} counts"
        )));
    }
    Ok(())
}

/// Encoder/decoder state after a sample: the same fields serve the
/// appender and the iterator, so an appender can be recovered by decoding.
#[derive(Debug, Clone)]
struct IntState {
    layout: Layout,
    t: i64,
    cnt: u64,
    zcnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    zcnt_delta: i64,
    /// Delta-encoded bucket values of the last sample.
    p: Vec<i64>,
    n: Vec<i64>,
    /// Per-bucket change of those values at the last sample.
    p_delta: Vec<i64>,
    n_delta: Vec<i64>,
    sum: f64,
    leading: u8,
    trailing: u8,
}

impl Default for IntState {
    fn default() -> Self {
        IntState {
            layout: Layout::default(),
            t: i64::MIN,
            cnt: 0,
            zcnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            zcnt_delta: 0,
            p: Vec::new(),
            n: Vec::new(),
            p_delta: Vec::new(),
            n_delta: Vec::new(),
            sum: 0.0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }
}

/// The result of the counter-histogram append check.
#[derive(Debug, Default)]
struct Appendable {
    fwd_p: Vec<Insert>,
    fwd_n: Vec<Insert>,
    bwd_p: Vec<Insert>,
    bwd_n: Vec<Insert>,
    ok: bool,
    header: Option<CounterResetHeader>,
}

/// A chunk of integer native histograms (Prometheus encoding 2): a 2-byte
/// big-endian sample count, a flags byte whose two top bits are the
/// [`CounterResetHeader`], then a bit stream.
#[derive(Debug, Clone)]
pub struct HistogramChunk {
    w: ByteBitWriter,
    /// Appender state; `None` until recovered from bytes given to
    /// [`HistogramChunk::from_bytes`].
    st: Option<Box<IntState>>,
    /// Whether the first sample's hint may set the header (not when the
    /// caller gave the header with `new_with_header`).
    hint_sets_header: bool,
}

impl PartialEq for HistogramChunk {
    fn eq(&self, other: &Self) -> bool {
        self.w.bytes == other.w.bytes
    }
}

impl Default for HistogramChunk {
    fn default() -> Self {
        HistogramChunk::new()
    }
}

impl HistogramChunk {
    /// An empty chunk with an `Unknown` counter-reset header.
    pub fn new() -> HistogramChunk {
        let mut bytes = Vec::with_capacity(INITIAL_CAPACITY);
        bytes.extend_from_slice(&[0; HEADER_LEN]);
        HistogramChunk {
            w: ByteBitWriter::from_parts(bytes, 0),
            st: Some(Box::default()),
            hint_sets_header: true,
        }
    }

    /// An empty chunk with the given counter-reset header (as returned in
    /// [`HistogramAppendOutcome::NewChunk`] or by
    /// [`HistogramChunk::next_chunk_header`]). The header is kept whatever
    /// the first sample's hint says; a chunk from [`HistogramChunk::new`]
    /// instead takes `Gauge` or `CounterReset` from its first sample's hint.
    pub fn new_with_header(h: CounterResetHeader) -> HistogramChunk {
        let mut c = HistogramChunk::new();
        set_header(&mut c.w.bytes, h);
        c.hint_sets_header = false;
        c
    }

    /// Wraps encoded bytes (for example read from a block). They are not
    /// checked here: iteration reports malformed data, and the first append
    /// decodes the chunk to continue it (failing on malformed data).
    pub fn from_bytes(bytes: Vec<u8>) -> HistogramChunk {
        HistogramChunk {
            w: ByteBitWriter::from_parts(bytes, 0),
            st: None,
            hint_sets_header: true,
        }
    }

    /// The encoded bytes: header and bit stream, zero-padded to a byte.
    pub fn bytes(&self) -> &[u8] {
        &self.w.bytes
    }

    /// Gives up the encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.w.bytes
    }

    /// Number of samples, from the header.
    pub fn num_samples(&self) -> u16 {
        count_of(&self.w.bytes)
    }

    /// The counter-reset header of the chunk (the two top bits of the byte
    /// after the sample count).
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        header_of(&self.w.bytes)
    }

    /// An iterator over the samples.
    pub fn iter(&self) -> HistogramIterator<'_> {
        HistogramIterator::new(&self.w.bytes)
    }

    /// Recovers the appender state by decoding the whole chunk, once.
    fn state(&mut self) -> Result<&mut IntState, TsdbError> {
        if self.st.is_none() {
            let bytes = std::mem::take(&mut self.w.bytes);
            if bytes.len() < HEADER_LEN {
                let e = TsdbError::CorruptChunk(format!(
                    "{} bytes is shorter than the histogram chunk header",
                    bytes.len()
                ));
                self.w.bytes = bytes;
                return Err(e);
            }
            let decoded = {
                let mut it = HistogramIterator::new(&bytes);
                while it.advance() {}
                match it.err {
                    Some(e) => Err(e),
                    None if it.num_read == 0 => Ok((IntState::default(), HEADER_LEN * 8)),
                    None => Ok((it.st, it.r.bit_position())),
                }
            };
            let (st, end_bits) = match decoded {
                Ok(x) => x,
                Err(e) => {
                    self.w.bytes = bytes;
                    return Err(e);
                }
            };
            let used = end_bits.div_ceil(8);
            let mut bytes = bytes;
            bytes.truncate(used);
            self.w = ByteBitWriter::from_parts(bytes, (used * 8 - end_bits) as u8);
            self.st = Some(Box::new(st));
        }
        match self.st.as_deref_mut() {
            Some(st) => Ok(st),
            None => panic!("BUG: histogram appender state missing after recovery"),
        }
    }

    /// The counter-reset header a new chunk cut after this one (for
    /// example because this one is full) must get when its first sample is
    /// `h`, as Prometheus computes it from the previous chunk's appender.
    /// `Unknown` when this chunk's bytes do not decode.
    pub fn next_chunk_header(&mut self, h: &Histogram) -> CounterResetHeader {
        match h.counter_reset_hint {
            CounterResetHint::Gauge => return CounterResetHeader::Gauge,
            CounterResetHint::CounterReset => return CounterResetHeader::CounterReset,
            _ => {}
        }
        if self.state().is_err() {
            return CounterResetHeader::Unknown;
        }
        self.appendable(h)
            .header
            .unwrap_or(CounterResetHeader::NotCounterReset)
    }

    /// Appends a sample with timestamp `t` (which should be greater than
    /// the last one; the chunk does not check).
    ///
    /// New buckets are handled by recoding the chunk to the wider layout;
    /// a counter reset, a schema or zero-threshold change, a custom-bounds
    /// change, a switch between gauge and counter histograms, or a sample
    /// after a stale marker yield [`HistogramAppendOutcome::NewChunk`].
    /// Stale markers (sum = the stale NaN) always fit. Fails when the chunk
    /// is full (65535 samples), its bytes do not decode, or the histogram
    /// is malformed (bucket counts not matching spans, unsupported schema).
    pub fn append(
        &mut self,
        t: Timestamp,
        h: &Histogram,
    ) -> Result<HistogramAppendOutcome, TsdbError> {
        self.state()?;
        let num = self.num_samples();
        if num == u16::MAX {
            return Err(TsdbError::ChunkFull(num));
        }
        if !is_stale_nan(h.sum) {
            check_shape(
                h.schema,
                &h.positive_spans,
                h.positive_buckets.len(),
                &h.negative_spans,
                h.negative_buckets.len(),
            )?;
        }
        if num == 0 {
            self.append_raw(t, h);
            if !self.hint_sets_header {
                return Ok(HistogramAppendOutcome::Appended);
            }
            match h.counter_reset_hint {
                CounterResetHint::Gauge => set_header(&mut self.w.bytes, CounterResetHeader::Gauge),
                CounterResetHint::CounterReset => {
                    set_header(&mut self.w.bytes, CounterResetHeader::CounterReset)
                }
                _ => {}
            }
            return Ok(HistogramAppendOutcome::Appended);
        }

        let owned: Histogram;
        let mut h = h;
        if h.counter_reset_hint != CounterResetHint::Gauge {
            let ap = self.appendable(h);
            if !ap.ok || ap.header.is_some() {
                return Ok(HistogramAppendOutcome::NewChunk(
                    ap.header.unwrap_or(CounterResetHeader::NotCounterReset),
                ));
            }
            let fwd = !ap.fwd_p.is_empty() || !ap.fwd_n.is_empty();
            if !ap.bwd_p.is_empty() || !ap.bwd_n.is_empty() {
                // The sample lacks empty buckets of the chunk: widen it.
                let mut o = h.clone();
                if !fwd {
                    let st = self.state()?;
                    o.positive_spans.clone_from(&st.layout.positive_spans);
                    o.negative_spans.clone_from(&st.layout.negative_spans);
                } else {
                    o.positive_spans = adjust_for_inserts(&h.positive_spans, &ap.bwd_p);
                    o.negative_spans = adjust_for_inserts(&h.negative_spans, &ap.bwd_n);
                }
                widen_sample(&mut o, &ap.bwd_p, &ap.bwd_n);
                owned = o;
                h = &owned;
            }
            if fwd {
                self.recode(&ap.fwd_p, &ap.fwd_n, &h.positive_spans, &h.negative_spans)?;
            }
            self.append_raw(t, h);
            return Ok(HistogramAppendOutcome::Appended);
        }

        // A gauge histogram.
        let Some((fwd_p, fwd_n, bwd_p, bwd_n, merged_p, merged_n)) = self.appendable_gauge(h)
        else {
            return Ok(HistogramAppendOutcome::NewChunk(CounterResetHeader::Gauge));
        };
        if !bwd_p.is_empty() || !bwd_n.is_empty() {
            let mut o = h.clone();
            o.positive_spans = merged_p;
            o.negative_spans = merged_n;
            widen_sample(&mut o, &bwd_p, &bwd_n);
            owned = o;
            h = &owned;
        }
        if !fwd_p.is_empty() || !fwd_n.is_empty() {
            self.recode(&fwd_p, &fwd_n, &h.positive_spans, &h.negative_spans)?;
        }
        self.append_raw(t, h);
        Ok(HistogramAppendOutcome::Appended)
    }

    /// Prometheus's `appendable` for counter histograms: `header` is `None`
    /// for "no counter reset" (NotCounterReset), otherwise the header a new
    /// chunk gets.
    fn appendable(&self, h: &Histogram) -> Appendable {
        let mut out = Appendable::default();
        let Some(st) = self.st.as_deref() else {
            out.header = Some(CounterResetHeader::Unknown);
            return out;
        };
        if self.num_samples() > 0 && self.counter_reset_header() == CounterResetHeader::Gauge {
            return out;
        }
        if h.counter_reset_hint == CounterResetHint::CounterReset {
            out.header = Some(CounterResetHeader::CounterReset);
            return out;
        }
        if is_stale_nan(h.sum) {
            out.ok = true;
            return out;
        }
        if is_stale_nan(st.sum) {
            out.header = Some(CounterResetHeader::Unknown);
            return out;
        }
        if h.count < st.cnt {
            out.header = Some(CounterResetHeader::CounterReset);
            return out;
        }
        if h.schema != st.layout.schema || h.zero_threshold != st.layout.zero_threshold {
            out.header = Some(CounterResetHeader::Unknown);
            return out;
        }
        if h.schema == CUSTOM_SCHEMA && !bounds_match(&h.custom_values, &st.layout.custom_values) {
            out.header = Some(CounterResetHeader::CounterReset);
            return out;
        }
        if h.zero_count < st.zcnt {
            out.header = Some(CounterResetHeader::CounterReset);
            return out;
        }
        let at = |v: &[i64], i: usize| v.get(i).copied().unwrap_or_default();
        let Some((fwd_p, bwd_p)) = expand_spans_and_buckets(
            &st.layout.positive_spans,
            &h.positive_spans,
            |i| at(&st.p, i),
            |i| at(&h.positive_buckets, i),
            true,
        ) else {
            out.header = Some(CounterResetHeader::CounterReset);
            return out;
        };
        let Some((fwd_n, bwd_n)) = expand_spans_and_buckets(
            &st.layout.negative_spans,
            &h.negative_spans,
            |i| at(&st.n, i),
            |i| at(&h.negative_buckets, i),
            true,
        ) else {
            out.header = Some(CounterResetHeader::CounterReset);
            return out;
        };
        out.fwd_p = fwd_p;
        out.fwd_n = fwd_n;
        out.bwd_p = bwd_p;
        out.bwd_n = bwd_n;
        out.ok = true;
        out
    }

    /// Prometheus's `appendableGauge`: `None` when a new chunk is needed,
    /// otherwise forward and backward inserts and the union spans.
    #[allow(clippy::type_complexity)]
    fn appendable_gauge(
        &self,
        h: &Histogram,
    ) -> Option<(
        Vec<Insert>,
        Vec<Insert>,
        Vec<Insert>,
        Vec<Insert>,
        Vec<Span>,
        Vec<Span>,
    )> {
        let st = self.st.as_deref()?;
        if self.num_samples() > 0 && self.counter_reset_header() != CounterResetHeader::Gauge {
            return None;
        }
        if is_stale_nan(h.sum) {
            return Some(Default::default());
        }
        if is_stale_nan(st.sum) {
            return None;
        }
        if h.schema != st.layout.schema || h.zero_threshold != st.layout.zero_threshold {
            return None;
        }
        if h.schema == CUSTOM_SCHEMA && !bounds_match(&h.custom_values, &st.layout.custom_values) {
            return None;
        }
        let (fp, bp, mp) = expand_spans_both_ways(&st.layout.positive_spans, &h.positive_spans);
        let (fne, bne, mn) = expand_spans_both_ways(&st.layout.negative_spans, &h.negative_spans);
        Some((fp, fne, bp, bne, mp, mn))
    }

    /// Prometheus's `appendHistogram`: encodes a sample whose layout
    /// matches the chunk's (or defines it, for the first sample).
    fn append_raw(&mut self, t: i64, h: &Histogram) {
        let stale_h;
        let h = if is_stale_nan(h.sum) {
            // A stale marker carries no buckets, and an empty layout when
            // it starts the chunk.
            stale_h = Histogram {
                sum: h.sum,
                ..Histogram::default()
            };
            &stale_h
        } else {
            h
        };
        let num = count_of(&self.w.bytes);
        let Some(st) = self.st.as_deref_mut() else {
            panic!("BUG: append_raw without appender state");
        };
        let w = &mut self.w;
        let (mut t_delta, mut cnt_delta, mut zcnt_delta) = (0, 0, 0);
        if num == 0 {
            write_layout(
                w,
                h.schema,
                h.zero_threshold,
                &h.positive_spans,
                &h.negative_spans,
                &h.custom_values,
            );
            st.layout.schema = h.schema;
            st.layout.zero_threshold = h.zero_threshold;
            st.layout.positive_spans.clone_from(&h.positive_spans);
            st.layout.negative_spans.clone_from(&h.negative_spans);
            st.layout.custom_values.clear();
            if h.schema == CUSTOM_SCHEMA {
                st.layout.custom_values.extend_from_slice(&h.custom_values);
            }
            let (np, nn) = (h.positive_buckets.len(), h.negative_buckets.len());
            st.p.clear();
            st.p.resize(np, 0);
            st.p_delta.clear();
            st.p_delta.resize(np, 0);
            st.n.clear();
            st.n.resize(nn, 0);
            st.n_delta.clear();
            st.n_delta.resize(nn, 0);
            put_varbit_int(w, t);
            put_varbit_uint(w, h.count);
            put_varbit_uint(w, h.zero_count);
            w.write_bits(h.sum.to_bits(), 64);
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                put_varbit_int(w, b);
            }
        } else {
            t_delta = t.wrapping_sub(st.t);
            cnt_delta = (h.count as i64).wrapping_sub(st.cnt as i64);
            zcnt_delta = (h.zero_count as i64).wrapping_sub(st.zcnt as i64);
            let t_dod = t_delta.wrapping_sub(st.t_delta);
            let (mut cnt_dod, mut zcnt_dod) = (
                cnt_delta.wrapping_sub(st.cnt_delta),
                zcnt_delta.wrapping_sub(st.zcnt_delta),
            );
            if is_stale_nan(h.sum) {
                cnt_dod = 0;
                zcnt_dod = 0;
            }
            put_varbit_int(w, t_dod);
            put_varbit_int(w, cnt_dod);
            put_varbit_int(w, zcnt_dod);
            xor_write(w, h.sum, st.sum, &mut st.leading, &mut st.trailing);
            for ((&b, &old), d) in h.positive_buckets.iter().zip(&st.p).zip(&mut st.p_delta) {
                let delta = b.wrapping_sub(old);
                put_varbit_int(w, delta.wrapping_sub(*d));
                *d = delta;
            }
            for ((&b, &old), d) in h.negative_buckets.iter().zip(&st.n).zip(&mut st.n_delta) {
                let delta = b.wrapping_sub(old);
                put_varbit_int(w, delta.wrapping_sub(*d));
                *d = delta;
            }
        }
        st.t = t;
        st.cnt = h.count;
        st.zcnt = h.zero_count;
        st.t_delta = t_delta;
        st.cnt_delta = cnt_delta;
        st.zcnt_delta = zcnt_delta;
        for (d, &s) in st.p.iter_mut().zip(&h.positive_buckets) {
            *d = s;
        }
        for (d, &s) in st.n.iter_mut().zip(&h.negative_buckets) {
            *d = s;
        }
        st.sum = h.sum;
        set_count(&mut self.w.bytes, num.wrapping_add(1));
    }

    /// Rewrites the chunk with every sample widened by the forward inserts
    /// to the layout `pos`/`neg` (Prometheus's `recode`).
    fn recode(
        &mut self,
        fwd_p: &[Insert],
        fwd_n: &[Insert],
        pos: &[Span],
        neg: &[Span],
    ) -> Result<(), TsdbError> {
        let mut fresh = HistogramChunk::new();
        {
            let mut it = HistogramIterator::new(&self.w.bytes);
            let mut old = Histogram::default();
            let mut buf = Vec::new();
            let (np, nn) = (count_spans(pos), count_spans(neg));
            while let Some(t) = it.next_into(&mut old) {
                old.positive_spans.clear();
                old.positive_spans.extend_from_slice(pos);
                old.negative_spans.clear();
                old.negative_spans.extend_from_slice(neg);
                if !fwd_p.is_empty() {
                    insert(&old.positive_buckets, &mut buf, fwd_p, true);
                    buf.resize(np, 0);
                    std::mem::swap(&mut buf, &mut old.positive_buckets);
                }
                if !fwd_n.is_empty() {
                    insert(&old.negative_buckets, &mut buf, fwd_n, true);
                    buf.resize(nn, 0);
                    std::mem::swap(&mut buf, &mut old.negative_buckets);
                }
                fresh.append_raw(t, &old);
            }
            if let Some(e) = it.err() {
                return Err(e.clone());
            }
        }
        set_header(&mut fresh.w.bytes, self.counter_reset_header());
        *self = fresh;
        Ok(())
    }
}

/// Widens a sample by backward inserts (its spans already widened).
fn widen_sample(h: &mut Histogram, bwd_p: &[Insert], bwd_n: &[Insert]) {
    let mut buf = Vec::new();
    if !bwd_p.is_empty() {
        insert(&h.positive_buckets, &mut buf, bwd_p, true);
        buf.resize(count_spans(&h.positive_spans), 0);
        std::mem::swap(&mut buf, &mut h.positive_buckets);
    }
    if !bwd_n.is_empty() {
        insert(&h.negative_buckets, &mut buf, bwd_n, true);
        buf.resize(count_spans(&h.negative_spans), 0);
        std::mem::swap(&mut buf, &mut h.negative_buckets);
    }
}

/// Custom bounds equal value by value (NaN never matches).
pub(crate) fn bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Number of buckets the decoder may allocate: each bucket takes at least
/// one bit of the first sample, so more than the remaining bits is corrupt.
pub(crate) fn bucket_budget(
    r: &BitReader,
    data: &[u8],
    pos: &[Span],
    neg: &[Span],
) -> Result<(usize, usize), &'static str> {
    let p: u64 = pos.iter().map(|s| u64::from(s.length)).sum();
    let n: u64 = neg.iter().map(|s| u64::from(s.length)).sum();
    let left = (data.len() as u64 * 8).saturating_sub(r.bit_position() as u64);
    if p.saturating_add(n) > left {
        return Err("bucket count exceeds the chunk");
    }
    Ok((p as usize, n as usize))
}

/// Checks a decoded schema as Prometheus does: custom buckets and the
/// exponential schemas -9..=52 it reserves are readable (schemas above 8
/// are reduced to 8 when a sample is read out).
pub(crate) fn check_decoded_schema(schema: i32) -> Result<(), &'static str> {
    if schema == CUSTOM_SCHEMA || (-9..=52).contains(&schema) {
        Ok(())
    } else {
        Err("unknown histogram schema")
    }
}

/// Highest schema handed out by the iterators.
pub(crate) const MAX_SCHEMA: i32 = 8;

/// Decodes an integer histogram chunk.
///
/// Never panics, whatever the bytes: a malformed chunk ends iteration and
/// [`HistogramIterator::err`] tells why.
#[derive(Debug, Clone)]
pub struct HistogramIterator<'a> {
    data: &'a [u8],
    r: BitReader,
    num_total: u16,
    num_read: u16,
    header: CounterResetHeader,
    st: IntState,
    err: Option<TsdbError>,
}

impl<'a> HistogramIterator<'a> {
    /// An iterator over chunk bytes (header included).
    pub fn new(data: &'a [u8]) -> HistogramIterator<'a> {
        let err = (data.len() < HEADER_LEN).then(|| {
            TsdbError::CorruptChunk(format!(
                "{} bytes is shorter than the histogram chunk header",
                data.len()
            ))
        });
        HistogramIterator {
            data,
            r: BitReader::new(HEADER_LEN),
            num_total: if err.is_some() { 0 } else { count_of(data) },
            num_read: 0,
            header: header_of(data),
            st: IntState {
                leading: 0,
                ..IntState::default()
            },
            err,
        }
    }

    /// The error that ended iteration early, if any.
    pub fn err(&self) -> Option<&TsdbError> {
        self.err.as_ref()
    }

    /// The number of samples the header announces.
    pub fn num_samples(&self) -> u16 {
        self.num_total
    }

    /// The chunk's counter-reset header.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        self.header
    }

    /// Decodes the next sample into the state; false at the end or on error.
    fn advance(&mut self) -> bool {
        if self.err.is_some() || self.num_read >= self.num_total {
            return false;
        }
        match self.decode() {
            Ok(()) => {
                self.num_read += 1;
                true
            }
            Err(what) => {
                self.err = Some(TsdbError::CorruptChunk(format!(
                    "histogram chunk: {what} (sample {} of {})",
                    self.num_read + 1,
                    self.num_total
                )));
                false
            }
        }
    }

    fn decode(&mut self) -> Result<(), &'static str> {
        let data = self.data;
        let r = &mut self.r;
        let st = &mut self.st;
        if self.num_read == 0 {
            read_layout(r, data, &mut st.layout)?;
            check_decoded_schema(st.layout.schema)?;
            let (np, nn) = bucket_budget(
                r,
                data,
                &st.layout.positive_spans,
                &st.layout.negative_spans,
            )?;
            st.t = read_varbit_int(r, data)?;
            st.cnt = read_varbit_uint(r, data)?;
            st.zcnt = read_varbit_uint(r, data)?;
            st.sum = f64::from_bits(r.read_bits(data, 64).ok_or(EOF)?);
            st.p.clear();
            st.n.clear();
            for _ in 0..np {
                st.p.push(read_varbit_int(r, data)?);
            }
            for _ in 0..nn {
                st.n.push(read_varbit_int(r, data)?);
            }
            st.p_delta.clear();
            st.p_delta.resize(np, 0);
            st.n_delta.clear();
            st.n_delta.resize(nn, 0);
            return Ok(());
        }
        let t_dod = read_varbit_int(r, data)?;
        st.t_delta = st.t_delta.wrapping_add(t_dod);
        st.t = st.t.wrapping_add(st.t_delta);
        let cnt_dod = read_varbit_int(r, data)?;
        st.cnt_delta = st.cnt_delta.wrapping_add(cnt_dod);
        st.cnt = (st.cnt as i64).wrapping_add(st.cnt_delta) as u64;
        let zcnt_dod = read_varbit_int(r, data)?;
        st.zcnt_delta = st.zcnt_delta.wrapping_add(zcnt_dod);
        st.zcnt = (st.zcnt as i64).wrapping_add(st.zcnt_delta) as u64;
        xor_read(r, data, &mut st.sum, &mut st.leading, &mut st.trailing)?;
        if is_stale_nan(st.sum) {
            return Ok(());
        }
        for (v, d) in st.p.iter_mut().zip(st.p_delta.iter_mut()) {
            *d = d.wrapping_add(read_varbit_int(r, data)?);
            *v = v.wrapping_add(*d);
        }
        for (v, d) in st.n.iter_mut().zip(st.n_delta.iter_mut()) {
            *d = d.wrapping_add(read_varbit_int(r, data)?);
            *v = v.wrapping_add(*d);
        }
        Ok(())
    }

    /// Decodes the next sample without handing it out and returns its
    /// timestamp (use [`HistogramIterator::at_into`] to read it); `None` at
    /// the end or on corrupt data (see [`HistogramIterator::err`]).
    pub fn next_t(&mut self) -> Option<i64> {
        self.advance().then_some(self.st.t)
    }

    /// The timestamp of the current sample, once one was decoded.
    pub fn at_t(&self) -> Option<i64> {
        (self.num_read > 0 && self.err.is_none()).then_some(self.st.t)
    }

    /// Moves to the first sample with `t >= ts` (staying on the current one
    /// if it qualifies; never moving back) and returns its timestamp.
    pub fn seek(&mut self, ts: i64) -> Option<i64> {
        if self.err.is_some() {
            return None;
        }
        while self.num_read == 0 || self.st.t < ts {
            self.next_t()?;
        }
        self.at_t()
    }

    /// Decodes the next sample into `h`, reusing its vectors, and returns
    /// its timestamp; `None` at the end or on corrupt data (see
    /// [`HistogramIterator::err`]).
    ///
    /// The sample's hint follows Prometheus: `Gauge` in gauge chunks,
    /// `NotCounterReset` after the first sample, and `Unknown` for the first
    /// one (whatever the chunk header says; callers that trust the chunk
    /// order may use [`HistogramIterator::counter_reset_header`]). A stale
    /// marker decodes as an empty histogram whose sum is the stale NaN.
    /// Schemas above 8 (written by newer versions) are reduced to 8.
    pub fn next_into(&mut self, h: &mut Histogram) -> Option<i64> {
        self.next_t()?;
        self.at_into(h)
    }

    /// Like [`HistogramIterator::next_into`], converted to float counts
    /// (absolute bucket counts).
    pub fn next_float_into(&mut self, fh: &mut FloatHistogram) -> Option<i64> {
        self.next_t()?;
        self.at_float_into(fh)
    }

    fn fail_reduce(&mut self) -> Option<i64> {
        self.err = Some(TsdbError::CorruptChunk(format!(
            "histogram chunk: spans of schema {} cannot be reduced (sample {} of {})",
            self.st.layout.schema, self.num_read, self.num_total
        )));
        None
    }

    /// Writes the current sample into `h` (see
    /// [`HistogramIterator::next_into`]) and returns its timestamp; `None`
    /// before the first sample or after an error.
    pub fn at_into(&mut self, h: &mut Histogram) -> Option<i64> {
        let t = self.at_t()?;
        let st = &self.st;
        if is_stale_nan(st.sum) {
            clear_int(h);
            h.sum = st.sum;
            return Some(t);
        }
        h.counter_reset_hint = hint_for(self.header, self.num_read);
        h.schema = st.layout.schema;
        h.zero_threshold = st.layout.zero_threshold;
        h.zero_count = st.zcnt;
        h.count = st.cnt;
        h.sum = st.sum;
        copy_into(&mut h.positive_spans, &st.layout.positive_spans);
        copy_into(&mut h.negative_spans, &st.layout.negative_spans);
        copy_into(&mut h.positive_buckets, &st.p);
        copy_into(&mut h.negative_buckets, &st.n);
        copy_into(&mut h.custom_values, &st.layout.custom_values);
        if h.schema > MAX_SCHEMA && h.reduce_resolution(MAX_SCHEMA).is_err() {
            return self.fail_reduce();
        }
        Some(t)
    }

    /// Writes the current sample into `fh` as float counts; see
    /// [`HistogramIterator::at_into`].
    pub fn at_float_into(&mut self, fh: &mut FloatHistogram) -> Option<i64> {
        let t = self.at_t()?;
        let st = &self.st;
        if is_stale_nan(st.sum) {
            clear_float(fh);
            fh.sum = st.sum;
            return Some(t);
        }
        fh.counter_reset_hint = hint_for(self.header, self.num_read);
        fh.schema = st.layout.schema;
        fh.zero_threshold = st.layout.zero_threshold;
        fh.zero_count = st.zcnt as f64;
        fh.count = st.cnt as f64;
        fh.sum = st.sum;
        copy_into(&mut fh.positive_spans, &st.layout.positive_spans);
        copy_into(&mut fh.negative_spans, &st.layout.negative_spans);
        cumulate_into(&mut fh.positive_buckets, &st.p);
        cumulate_into(&mut fh.negative_buckets, &st.n);
        copy_into(&mut fh.custom_values, &st.layout.custom_values);
        if fh.schema > MAX_SCHEMA && fh.try_reduce_resolution(MAX_SCHEMA).is_err() {
            return self.fail_reduce();
        }
        Some(t)
    }
}

/// Replaces `dst`'s contents with `src`, keeping `dst`'s allocation.
pub(crate) fn copy_into<T: Copy>(dst: &mut Vec<T>, src: &[T]) {
    dst.clear();
    dst.extend_from_slice(src);
}

/// Absolute float counts from delta-encoded integer buckets.
fn cumulate_into(dst: &mut Vec<f64>, deltas: &[i64]) {
    dst.clear();
    let mut cur = 0i64;
    dst.extend(deltas.iter().map(|&d| {
        cur = cur.wrapping_add(d);
        cur as f64
    }));
}

/// Resets a histogram to the empty value, keeping its allocations.
pub(crate) fn clear_int(h: &mut Histogram) {
    h.counter_reset_hint = CounterResetHint::Unknown;
    h.schema = 0;
    h.zero_threshold = 0.0;
    h.zero_count = 0;
    h.count = 0;
    h.sum = 0.0;
    h.positive_spans.clear();
    h.negative_spans.clear();
    h.positive_buckets.clear();
    h.negative_buckets.clear();
    h.custom_values.clear();
}

/// Resets a float histogram to the empty value, keeping its allocations.
pub(crate) fn clear_float(h: &mut FloatHistogram) {
    h.counter_reset_hint = CounterResetHint::Unknown;
    h.schema = 0;
    h.zero_threshold = 0.0;
    h.zero_count = 0.0;
    h.count = 0.0;
    h.sum = 0.0;
    h.positive_spans.clear();
    h.negative_spans.clear();
    h.positive_buckets.clear();
    h.negative_buckets.clear();
    h.custom_values.clear();
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use pharos_model::stale_nan;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    pub(crate) fn sp(v: &[(i32, u32)]) -> Vec<Span> {
        v.iter()
            .map(|&(offset, length)| Span { offset, length })
            .collect()
    }

    /// Spans and bucket indices for a sorted set of indices.
    pub(crate) fn spans_for(idx: &[i64]) -> Vec<Span> {
        let mut out: Vec<Span> = Vec::new();
        let mut last = 0i64;
        for (k, &i) in idx.iter().enumerate() {
            if k > 0 && i == last + 1 {
                out.last_mut().unwrap().length += 1;
            } else {
                let off = if k == 0 { i } else { i - last - 1 };
                out.push(Span {
                    offset: off as i32,
                    length: 1,
                });
            }
            last = i;
        }
        out
    }

    /// Builds an integer histogram from absolute bucket maps.
    pub(crate) fn int_hist(
        schema: i32,
        pos: &BTreeMap<i64, u64>,
        neg: &BTreeMap<i64, u64>,
        zc: u64,
        sum: f64,
    ) -> Histogram {
        let deltas = |m: &BTreeMap<i64, u64>| {
            let mut prev = 0i64;
            m.values()
                .map(|&v| {
                    let d = v as i64 - prev;
                    prev = v as i64;
                    d
                })
                .collect::<Vec<_>>()
        };
        let count = pos.values().sum::<u64>() + neg.values().sum::<u64>() + zc;
        Histogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema,
            zero_threshold: if schema == CUSTOM_SCHEMA {
                0.0
            } else {
                2f64.powi(-128)
            },
            zero_count: zc,
            count,
            sum,
            positive_spans: spans_for(&pos.keys().copied().collect::<Vec<_>>()),
            negative_spans: spans_for(&neg.keys().copied().collect::<Vec<_>>()),
            positive_buckets: deltas(pos),
            negative_buckets: deltas(neg),
            custom_values: if schema == CUSTOM_SCHEMA {
                vec![0.1, 0.5, 1.0, 2.5, 10.0, 1e9]
            } else {
                vec![]
            },
        }
    }

    /// Non-zero absolute bucket counts by index.
    pub(crate) fn abs_map(spans: &[Span], vals: &[f64]) -> BTreeMap<i64, u64> {
        super::super::histogram_meta::BucketIter::new(spans)
            .zip(vals)
            .filter(|(_, v)| **v != 0.0)
            .map(|(i, v)| (i, v.to_bits()))
            .collect()
    }

    fn int_abs(spans: &[Span], deltas: &[i64]) -> BTreeMap<i64, u64> {
        let mut cur = 0i64;
        let v: Vec<f64> = deltas
            .iter()
            .map(|d| {
                cur += d;
                cur as f64
            })
            .collect();
        abs_map(spans, &v)
    }

    /// The meaning of a histogram, independent of how its spans are cut.
    fn int_sem(h: &Histogram) -> (i32, u64, u64, u64, u64, Vec<u64>, String) {
        if is_stale_nan(h.sum) {
            return (0, 0, 0, h.sum.to_bits(), 0, vec![], String::new());
        }
        (
            h.schema,
            h.zero_threshold.to_bits(),
            h.count * 1000 + h.zero_count,
            h.sum.to_bits(),
            0,
            h.custom_values.iter().map(|v| v.to_bits()).collect(),
            format!(
                "{:?}/{:?}",
                int_abs(&h.positive_spans, &h.positive_buckets),
                int_abs(&h.negative_spans, &h.negative_buckets)
            ),
        )
    }

    fn decode_all(c: &HistogramChunk) -> Vec<(i64, Histogram)> {
        let mut it = c.iter();
        let mut out = Vec::new();
        let mut h = Histogram::default();
        while let Some(t) = it.next_into(&mut h) {
            out.push((t, h.clone()));
        }
        assert!(it.err().is_none(), "{:?}", it.err());
        out
    }

    fn h1() -> Histogram {
        Histogram {
            schema: 0,
            zero_threshold: 2f64.powi(-128),
            zero_count: 1,
            count: 5,
            sum: 10.0,
            positive_spans: sp(&[(0, 2)]),
            positive_buckets: vec![2, 0],
            ..Histogram::default()
        }
    }

    #[test]
    fn golden_bytes() {
        // Derived by hand from the format description in chunks.md.
        let mut c = HistogramChunk::new();
        assert_eq!(c.bytes(), &[0, 0, 0]);
        assert_eq!(
            c.append(1000, &h1()).unwrap(),
            HistogramAppendOutcome::Appended
        );
        let h2 = Histogram {
            zero_count: 2,
            count: 8,
            sum: 12.0,
            positive_buckets: vec![3, 0],
            ..h1()
        };
        assert_eq!(
            c.append(2000, &h2).unwrap(),
            HistogramAppendOutcome::Appended
        );
        let want: &[u8] = &[
            0x00, 0x02, 0x00, // count 2, header Unknown
            0x74, 0x46, 0x47, 0x8f, 0xa2, 0xb1, 0x40, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x93, 0xc7, 0xd1, 0x38, 0xec, 0x0b, 0x88,
        ];
        assert_eq!(c.bytes(), want);
        assert_eq!(c.num_samples(), 2);
        let got = decode_all(&c);
        assert_eq!(got[0].0, 1000);
        assert_eq!(got[0].1, h1());
        assert_eq!(got[1].0, 2000);
        assert_eq!(
            got[1].1,
            Histogram {
                counter_reset_hint: CounterResetHint::NotCounterReset,
                ..h2
            }
        );
        // Float view.
        let mut it = c.iter();
        let mut fh = FloatHistogram::default();
        assert_eq!(it.next_float_into(&mut fh), Some(1000));
        assert_eq!(fh.positive_buckets, vec![2.0, 2.0]);
        assert_eq!((fh.count, fh.zero_count, fh.sum), (5.0, 1.0, 10.0));
        assert_eq!(it.next_float_into(&mut fh), Some(2000));
        assert_eq!(fh.positive_buckets, vec![3.0, 3.0]);
        assert_eq!(fh.counter_reset_hint, CounterResetHint::NotCounterReset);
        assert_eq!(it.next_float_into(&mut fh), None);
        assert!(it.err().is_none());
    }

    #[test]
    fn new_buckets_recode_the_chunk() {
        let mut c = HistogramChunk::new();
        c.append(1000, &h1()).unwrap();
        // Bucket 3 appears (and bucket -2 on the negative side).
        let h2 = Histogram {
            count: 9,
            sum: 11.0,
            positive_spans: sp(&[(0, 2), (1, 1)]),
            positive_buckets: vec![2, 1, -2],
            negative_spans: sp(&[(-2, 1)]),
            negative_buckets: vec![1],
            ..h1()
        };
        assert_eq!(
            c.append(2000, &h2).unwrap(),
            HistogramAppendOutcome::Appended
        );
        let got = decode_all(&c);
        assert_eq!(got.len(), 2);
        // The first sample now has the wide layout with empty new buckets.
        assert_eq!(got[0].1.positive_spans, h2.positive_spans);
        assert_eq!(got[0].1.positive_buckets, vec![2, 0, -2]);
        assert_eq!(got[0].1.negative_buckets, vec![0]);
        assert_eq!(int_sem(&got[0].1), int_sem(&h1()));
        assert_eq!(got[1].1.positive_buckets, h2.positive_buckets);
        // Same bytes as a chunk written with the wide layout from the start.
        let mut direct = HistogramChunk::new();
        direct.append(1000, &got[0].1).unwrap();
        direct.append(2000, &h2).unwrap();
        assert_eq!(direct.bytes(), c.bytes());

        // A sample lacking the (empty) new buckets still fits: it is
        // widened backwards.
        let h3 = Histogram {
            count: 12,
            sum: 12.0,
            positive_spans: sp(&[(0, 3)]),
            positive_buckets: vec![3, 0, 0],
            negative_spans: sp(&[(-2, 1)]),
            negative_buckets: vec![1],
            ..h1()
        };
        // Bucket 3 had 1 in h2: it vanishing is a reset.
        assert_eq!(
            c.append(3000, &h3).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::CounterReset)
        );
    }

    #[test]
    fn empty_bucket_may_be_missing() {
        let mut c = HistogramChunk::new();
        let a = Histogram {
            positive_spans: sp(&[(0, 3)]),
            positive_buckets: vec![2, -2, 2], // 2 0 2
            count: 5,
            ..h1()
        };
        c.append(1, &a).unwrap();
        // Bucket 1 (empty) missing, bucket 5 new.
        let b = Histogram {
            positive_spans: sp(&[(0, 1), (1, 1), (2, 1)]),
            positive_buckets: vec![3, 0, -1], // 3 3 2
            count: 9,
            ..h1()
        };
        assert_eq!(c.append(2, &b).unwrap(), HistogramAppendOutcome::Appended);
        let got = decode_all(&c);
        assert_eq!(got[1].1.positive_spans, sp(&[(0, 3), (2, 1)]));
        assert_eq!(int_sem(&got[1].1), int_sem(&b));
        assert_eq!(int_sem(&got[0].1), int_sem(&a));
    }

    #[test]
    fn counter_resets_cut_chunks() {
        let mut c = HistogramChunk::new();
        c.append(1, &h1()).unwrap();
        let reset = HistogramAppendOutcome::NewChunk(CounterResetHeader::CounterReset);
        let unknown = HistogramAppendOutcome::NewChunk(CounterResetHeader::Unknown);
        // Count goes down.
        let mut h = h1();
        h.count = 4;
        assert_eq!(c.append(2, &h).unwrap(), reset);
        // A bucket goes down.
        let mut h = h1();
        h.positive_buckets = vec![1, 1];
        assert_eq!(c.append(2, &h).unwrap(), reset);
        // Zero count goes down.
        let mut h = h1();
        h.zero_count = 0;
        assert_eq!(c.append(2, &h).unwrap(), reset);
        // A used bucket disappears.
        let mut h = h1();
        h.positive_spans = sp(&[(0, 1)]);
        h.positive_buckets = vec![2];
        assert_eq!(c.append(2, &h).unwrap(), reset);
        // Explicit hint.
        let mut h = h1();
        h.counter_reset_hint = CounterResetHint::CounterReset;
        assert_eq!(c.append(2, &h).unwrap(), reset);
        // Schema or zero threshold change: unknown.
        let mut h = h1();
        h.schema = 1;
        assert_eq!(c.append(2, &h).unwrap(), unknown);
        let mut h = h1();
        h.zero_threshold = 0.5;
        assert_eq!(c.append(2, &h).unwrap(), unknown);
        assert_eq!(c.num_samples(), 1);
        // The same values are fine.
        assert_eq!(
            c.append(2, &h1()).unwrap(),
            HistogramAppendOutcome::Appended
        );
        // next_chunk_header mirrors the decision.
        let mut h = h1();
        h.count = 1;
        assert_eq!(c.next_chunk_header(&h), CounterResetHeader::CounterReset);
        assert_eq!(
            c.next_chunk_header(&h1()),
            CounterResetHeader::NotCounterReset
        );
        // The caller cuts a chunk with the header; its first sample keeps it.
        let mut n = HistogramChunk::new_with_header(CounterResetHeader::CounterReset);
        n.append(3, &h).unwrap();
        assert_eq!(n.counter_reset_header(), CounterResetHeader::CounterReset);
        assert_eq!(n.bytes()[2], 0b1000_0000);
        // First sample's hint is Unknown even so (as Prometheus).
        assert_eq!(
            decode_all(&n)[0].1.counter_reset_hint,
            CounterResetHint::Unknown
        );
    }

    #[test]
    fn given_header_wins_over_hint() {
        // A counter sample hinted CounterReset after a gauge chunk: the new
        // chunk gets NotCounterReset, as Prometheus writes it.
        let mut g = HistogramChunk::new();
        let mut gh = h1();
        gh.counter_reset_hint = CounterResetHint::Gauge;
        g.append(1, &gh).unwrap();
        let mut h = h1();
        h.counter_reset_hint = CounterResetHint::CounterReset;
        let HistogramAppendOutcome::NewChunk(hdr) = g.append(2, &h).unwrap() else {
            panic!("expected a new chunk");
        };
        assert_eq!(hdr, CounterResetHeader::NotCounterReset);
        let mut n = HistogramChunk::new_with_header(hdr);
        n.append(2, &h).unwrap();
        assert_eq!(
            n.counter_reset_header(),
            CounterResetHeader::NotCounterReset
        );
        // Without a given header the hint decides.
        let mut f = HistogramChunk::new();
        f.append(2, &h).unwrap();
        assert_eq!(f.counter_reset_header(), CounterResetHeader::CounterReset);
    }

    #[test]
    fn gauge_rules() {
        let g = |count: u64, spans: &[(i32, u32)], b: Vec<i64>| Histogram {
            counter_reset_hint: CounterResetHint::Gauge,
            count,
            positive_spans: sp(spans),
            positive_buckets: b,
            ..h1()
        };
        let mut c = HistogramChunk::new();
        c.append(1, &g(5, &[(0, 2)], vec![2, 0])).unwrap();
        assert_eq!(c.counter_reset_header(), CounterResetHeader::Gauge);
        // Counts go down and a used bucket disappears, another appears.
        assert_eq!(
            c.append(2, &g(3, &[(1, 2)], vec![1, 0])).unwrap(),
            HistogramAppendOutcome::Appended
        );
        let got = decode_all(&c);
        assert_eq!(got[0].1.positive_spans, sp(&[(0, 3)]));
        assert_eq!(got[1].1.positive_spans, sp(&[(0, 3)]));
        assert_eq!(got[0].1.positive_buckets, vec![2, 0, -2]);
        assert_eq!(got[1].1.positive_buckets, vec![0, 1, 0]);
        assert!(
            got.iter()
                .all(|(_, h)| h.counter_reset_hint == CounterResetHint::Gauge)
        );
        // Schema change: new gauge chunk.
        let mut h = g(3, &[(1, 2)], vec![1, 0]);
        h.schema = 2;
        assert_eq!(
            c.append(3, &h).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::Gauge)
        );
        // A counter histogram after gauges: new chunk, NotCounterReset (as
        // Prometheus's integer appender).
        assert_eq!(
            c.append(3, &h1()).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::NotCounterReset)
        );
        // A gauge after counters: new gauge chunk.
        let mut k = HistogramChunk::new();
        k.append(1, &h1()).unwrap();
        assert_eq!(
            k.append(2, &g(5, &[(0, 2)], vec![2, 0])).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::Gauge)
        );
    }

    #[test]
    fn custom_buckets_store_bounds() {
        let mut pos = BTreeMap::new();
        pos.insert(0, 3);
        pos.insert(2, 1);
        let h = int_hist(CUSTOM_SCHEMA, &pos, &BTreeMap::new(), 0, 4.5);
        let mut c = HistogramChunk::new();
        c.append(10, &h).unwrap();
        pos.insert(2, 4);
        let h2 = int_hist(CUSTOM_SCHEMA, &pos, &BTreeMap::new(), 0, 9.0);
        assert_eq!(c.append(20, &h2).unwrap(), HistogramAppendOutcome::Appended);
        let got = decode_all(&c);
        assert_eq!(got[0].1, h);
        assert_eq!(got[1].1.custom_values, h.custom_values);
        // Other bounds: a reset.
        let mut h3 = h2.clone();
        h3.custom_values[0] = 0.2;
        assert_eq!(
            c.append(30, &h3).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::CounterReset)
        );
        // Float view keeps the bounds.
        let mut fh = FloatHistogram::default();
        let mut it = c.iter();
        it.next_float_into(&mut fh).unwrap();
        assert_eq!(fh.custom_values, h.custom_values);
        assert_eq!(fh.schema, CUSTOM_SCHEMA);
    }

    #[test]
    fn stale_markers() {
        let stale = Histogram {
            sum: stale_nan(),
            ..Histogram::default()
        };
        let mut c = HistogramChunk::new();
        c.append(1, &h1()).unwrap();
        assert_eq!(
            c.append(2, &stale).unwrap(),
            HistogramAppendOutcome::Appended
        );
        assert_eq!(
            c.append(3, &stale).unwrap(),
            HistogramAppendOutcome::Appended
        );
        // After a stale marker only stale markers fit.
        assert_eq!(
            c.append(4, &h1()).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::Unknown)
        );
        let got = decode_all(&c);
        assert_eq!(got.len(), 3);
        assert!(is_stale_nan(got[1].1.sum));
        assert!(got[1].1.positive_buckets.is_empty() && got[1].1.count == 0);
        assert_eq!(got[2].0, 3);
        // A chunk may start with a stale marker.
        let mut s = HistogramChunk::new();
        s.append(5, &stale).unwrap();
        assert!(is_stale_nan(decode_all(&s)[0].1.sum));
    }

    #[test]
    fn rejects_malformed_histograms() {
        let mut c = HistogramChunk::new();
        let mut h = h1();
        h.positive_buckets.push(1);
        assert!(matches!(
            c.append(1, &h),
            Err(TsdbError::InvalidHistogram(_))
        ));
        let mut h = h1();
        h.schema = 9;
        assert!(matches!(
            c.append(1, &h),
            Err(TsdbError::InvalidHistogram(_))
        ));
        assert_eq!(c.num_samples(), 0);
        let mut bad = HistogramChunk::from_bytes(vec![0, 1]);
        assert!(bad.append(1, &h1()).is_err());
    }

    #[test]
    fn seek_and_at() {
        let mut c = HistogramChunk::new();
        let mut h = h1();
        for i in 0..10 {
            h.count += 1;
            c.append(i * 100, &h).unwrap();
        }
        let mut it = c.iter();
        let mut out = Histogram::default();
        assert_eq!(it.at_t(), None);
        assert_eq!(it.at_into(&mut out), None);
        assert_eq!(it.seek(250), Some(300));
        assert_eq!(it.seek(250), Some(300));
        assert_eq!(it.at_into(&mut out), Some(300));
        assert_eq!(out.count, 5 + 4);
        assert_eq!(it.next_t(), Some(400));
        assert_eq!(it.next_into(&mut out), Some(500));
        assert_eq!(out.count, 5 + 6);
        assert_eq!(it.seek(10_000), None);
        assert!(it.err().is_none());
    }

    #[test]
    fn schemas_above_8_are_reduced_on_read() {
        // Prometheus reads schemas up to 52 (from newer writers) and
        // reduces them to 8; our encoder refuses them, so write raw.
        let h = Histogram {
            schema: 10,
            count: 36,
            sum: 1.0,
            positive_spans: sp(&[(1, 8)]),
            positive_buckets: vec![1, 1, 1, 1, 1, 1, 1, 1], // 1..=8
            ..Histogram::default()
        };
        let mut c = HistogramChunk::new();
        c.append_raw(7, &h);
        let mut out = Histogram::default();
        let mut it = c.iter();
        assert_eq!(it.next_into(&mut out), Some(7));
        assert_eq!(out.schema, 8);
        // Indices 1..=4 merge into 1, 5..=8 into 2: 10 and 26.
        assert_eq!(out.positive_spans, sp(&[(1, 2)]));
        assert_eq!(out.positive_buckets, vec![10, 16]);
        let mut it = c.iter();
        let mut f = FloatHistogram::default();
        it.next_float_into(&mut f).unwrap();
        assert_eq!(
            (f.schema, f.positive_buckets.clone()),
            (8, vec![10.0, 26.0])
        );
        // Schema 53 is unknown.
        let mut bad = HistogramChunk::new();
        bad.append_raw(7, &Histogram { schema: 53, ..h });
        let mut it = bad.iter();
        assert_eq!(it.next_into(&mut out), None);
        assert!(it.err().is_some());
    }

    #[test]
    fn continues_from_bytes() {
        let mut c = HistogramChunk::new();
        let mut hs = Vec::new();
        let mut h = h1();
        for i in 0..5u64 {
            h.count += i;
            h.zero_count += i / 2;
            h.sum += 1.5;
            hs.push(h.clone());
            c.append(i as i64 * 1000, &h).unwrap();
        }
        let mut d = HistogramChunk::from_bytes(c.bytes().to_vec());
        for (k, h) in hs.iter_mut().enumerate().skip(2) {
            h.count += 100;
            h.sum += 0.25;
            let t = 10_000 + k as i64;
            c.append(t, h).unwrap();
            d.append(t, h).unwrap();
        }
        assert_eq!(c.bytes(), d.bytes());
    }

    /// A generated step: kind, bucket increments, zero-count increment,
    /// time step, sum.
    pub(crate) type StepTuple = (u8, Vec<(i8, u8)>, u8, u16, i16);

    #[derive(Debug, Clone)]
    struct Step {
        kind: u8,
        adds: Vec<(i8, u8)>,
        zc: u8,
        dt: u16,
        sum: i16,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            any::<u8>(),
            proptest::collection::vec((-6i8..6, 0u8..4), 0..4),
            0u8..3,
            1u16..2000,
            any::<i16>(),
        )
            .prop_map(|(kind, adds, zc, dt, sum)| Step {
                kind,
                adds,
                zc,
                dt,
                sum,
            })
    }

    /// A series of integer histograms from steps: counters mostly grow,
    /// buckets appear; some steps reset, go stale, or change schema.
    pub(crate) fn build_series(
        steps: &[StepTuple],
        gauge: bool,
        custom: bool,
    ) -> Vec<(i64, Histogram)> {
        let mut out = Vec::new();
        let mut pos: BTreeMap<i64, u64> = BTreeMap::new();
        let mut neg: BTreeMap<i64, u64> = BTreeMap::new();
        let mut zc = 0u64;
        let mut schema = if custom { CUSTOM_SCHEMA } else { 0 };
        let mut t = 1_000_000i64;
        for (kind, adds, z, dt, sum) in steps {
            t += i64::from(*dt);
            match kind % 16 {
                0 => {
                    pos.clear();
                    neg.clear();
                    zc = 0;
                }
                1 => {
                    out.push((
                        t,
                        Histogram {
                            sum: pharos_model::stale_nan(),
                            ..Histogram::default()
                        },
                    ));
                    continue;
                }
                2 if !custom => schema = (schema + 1) % 4,
                3 if gauge => {
                    // Gauges shrink and lose buckets.
                    let first = pos.keys().next().copied();
                    if let Some(k) = first {
                        pos.remove(&k);
                    }
                    zc /= 2;
                }
                _ => {}
            }
            for &(i, inc) in adds {
                let i = i64::from(i);
                if custom || i >= 0 {
                    *pos.entry(if custom { i.abs() } else { i }).or_default() += u64::from(inc);
                } else {
                    *neg.entry(-i).or_default() += u64::from(inc);
                }
            }
            zc += if custom { 0 } else { u64::from(*z) };
            let mut h = int_hist(schema, &pos, &neg, zc, f64::from(*sum) / 4.0);
            if gauge {
                h.counter_reset_hint = CounterResetHint::Gauge;
            }
            out.push((t, h));
        }
        out
    }

    fn store(series: &[(i64, Histogram)]) -> Vec<HistogramChunk> {
        let mut chunks = vec![HistogramChunk::new()];
        for (t, h) in series {
            let c = chunks.last_mut().unwrap();
            match c.append(*t, h).unwrap() {
                HistogramAppendOutcome::Appended => {}
                HistogramAppendOutcome::NewChunk(hdr) => {
                    let mut n = HistogramChunk::new_with_header(hdr);
                    assert_eq!(n.append(*t, h).unwrap(), HistogramAppendOutcome::Appended);
                    chunks.push(n);
                }
            }
        }
        chunks
    }

    proptest! {
        #[test]
        fn roundtrip(steps in proptest::collection::vec(step(), 1..60), gauge: bool, custom: bool) {
            let steps: Vec<_> = steps.into_iter().map(|s| (s.kind, s.adds, s.zc, s.dt, s.sum)).collect();
            let series = build_series(&steps, gauge, custom);
            let chunks = store(&series);
            let decoded: Vec<(i64, Histogram)> = chunks.iter().flat_map(decode_all).collect();
            prop_assert_eq!(decoded.len(), series.len());
            for ((t1, a), (t2, b)) in series.iter().zip(&decoded) {
                prop_assert_eq!(t1, t2);
                prop_assert_eq!(int_sem(a), int_sem(b));
            }
            for c in &chunks {
                // Re-reading the bytes gives the same samples, and the float
                // view agrees.
                let again = HistogramChunk::from_bytes(c.bytes().to_vec());
                let key = |v: Vec<(i64, Histogram)>| v.into_iter().map(|(t, h)| format!("{t} {:?} {}", h, h.sum.to_bits())).collect::<Vec<_>>();
                prop_assert_eq!(key(decode_all(&again)), key(decode_all(c)));
                let mut it = c.iter();
                let mut fh = FloatHistogram::default();
                let ints = decode_all(c);
                let mut k = 0;
                while let Some(t) = it.next_float_into(&mut fh) {
                    prop_assert_eq!(t, ints[k].0);
                    prop_assert_eq!(fh.count, ints[k].1.count as f64);
                    k += 1;
                }
                prop_assert_eq!(k, ints.len());
            }
        }

        #[test]
        fn iterator_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let c = HistogramChunk::from_bytes(bytes.clone());
            let mut it = c.iter();
            let mut h = Histogram::default();
            let mut n = 0;
            while it.next_into(&mut h).is_some() { n += 1; }
            prop_assert!(n <= usize::from(c.num_samples()));
            let mut it = c.iter();
            let mut fh = FloatHistogram::default();
            while it.next_float_into(&mut fh).is_some() {}
            let mut c = c;
            let _ = c.append(i64::MAX, &h1());
        }

        #[test]
        fn mutated_chunks_never_panic(steps in proptest::collection::vec(step(), 1..20), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
            let steps: Vec<_> = steps.into_iter().map(|s| (s.kind, s.adds, s.zc, s.dt, s.sum)).collect();
            let series = build_series(&steps, false, false);
            let chunks = store(&series);
            let mut bytes = chunks[0].bytes().to_vec();
            for (at, x) in flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let mut c = HistogramChunk::from_bytes(bytes);
            let mut it = c.iter();
            let mut h = Histogram::default();
            while it.next_into(&mut h).is_some() {}
            let _ = c.append(i64::MAX, &h1());
        }
    }
}

/// A check against chunks written by a real Prometheus: set
/// `PHAROS_HIST_CHUNKS` to a file of lines `encoding series mint maxt hex`
/// (one m-mapped head chunk each, in file order) and run the ignored test.
/// Every integer/float histogram chunk must decode, re-encode to the same
/// bytes, and each series' samples, fed through our append rules, must cut
/// the same chunks with the same headers and bytes.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod interop {
    use super::*;
    use crate::chunkenc::FloatHistogramChunk;
    use std::collections::BTreeMap;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// Drops zero-count buckets of an integer histogram (undoing recoding).
    pub(crate) fn strip_int(h: &Histogram) -> Histogram {
        let mut out = h.clone();
        for (spans, buckets, ospans, obuckets) in [
            (
                &h.positive_spans,
                &h.positive_buckets,
                &mut out.positive_spans,
                &mut out.positive_buckets,
            ),
            (
                &h.negative_spans,
                &h.negative_buckets,
                &mut out.negative_spans,
                &mut out.negative_buckets,
            ),
        ] {
            let mut cur = 0i64;
            let mut idx = Vec::new();
            let mut abs = Vec::new();
            for (i, d) in super::super::histogram_meta::BucketIter::new(spans).zip(buckets) {
                cur += d;
                if cur != 0 {
                    idx.push(i);
                    abs.push(cur);
                }
            }
            *ospans = tests::spans_for(&idx);
            let mut prev = 0;
            *obuckets = abs
                .iter()
                .map(|&a| {
                    let d = a - prev;
                    prev = a;
                    d
                })
                .collect();
        }
        out
    }

    pub(crate) fn strip_float(h: &FloatHistogram) -> FloatHistogram {
        let mut out = h.clone();
        for (spans, buckets, ospans, obuckets) in [
            (
                &h.positive_spans,
                &h.positive_buckets,
                &mut out.positive_spans,
                &mut out.positive_buckets,
            ),
            (
                &h.negative_spans,
                &h.negative_buckets,
                &mut out.negative_spans,
                &mut out.negative_buckets,
            ),
        ] {
            let mut idx = Vec::new();
            let mut vals = Vec::new();
            for (i, &v) in super::super::histogram_meta::BucketIter::new(spans).zip(buckets) {
                if v != 0.0 {
                    idx.push(i);
                    vals.push(v);
                }
            }
            *ospans = tests::spans_for(&idx);
            *obuckets = vals;
        }
        out
    }

    /// Our bytes must equal theirs, except that Prometheus sometimes leaves
    /// one more all-zero byte at the end (counted).
    fn check_same(ours: &[u8], theirs: &[u8], what: &str, padded: &mut usize) {
        if ours.len() + 1 == theirs.len()
            && theirs.last() == Some(&0)
            && ours == &theirs[..ours.len()]
        {
            *padded += 1;
            return;
        }
        assert_eq!(ours, theirs, "{what}");
    }

    #[test]
    #[ignore = "needs PHAROS_HIST_CHUNKS, a dump of Prometheus-written chunks"]
    fn prometheus_written_chunks() {
        let path = std::env::var("PHAROS_HIST_CHUNKS").expect("PHAROS_HIST_CHUNKS");
        let text = std::fs::read_to_string(path).unwrap();
        let mut by_series: BTreeMap<(u8, u64), Vec<Vec<u8>>> = BTreeMap::new();
        let (mut n_int, mut n_float, mut n_samples) = (0, 0, 0);
        let mut padded = 0;
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let enc: u8 = f[0].parse().unwrap();
            let series: u64 = f[1].parse().unwrap();
            let data = hex(f[4]);
            match enc {
                2 => {
                    n_int += 1;
                    let c = HistogramChunk::from_bytes(data.clone());
                    let mut again = HistogramChunk::new_with_header(c.counter_reset_header());
                    let mut it = c.iter();
                    let mut h = Histogram::default();
                    while let Some(t) = it.next_into(&mut h) {
                        n_samples += 1;
                        assert_eq!(
                            again.append(t, &h).unwrap(),
                            HistogramAppendOutcome::Appended
                        );
                    }
                    assert!(it.err().is_none(), "{line}: {:?}", it.err());
                    check_same(again.bytes(), &data, line, &mut padded);
                }
                3 => {
                    n_float += 1;
                    let c = FloatHistogramChunk::from_bytes(data.clone());
                    let mut again = FloatHistogramChunk::new_with_header(c.counter_reset_header());
                    let mut it = c.iter();
                    let mut h = FloatHistogram::default();
                    while let Some(t) = it.next_into(&mut h) {
                        n_samples += 1;
                        assert_eq!(
                            again.append(t, &h).unwrap(),
                            HistogramAppendOutcome::Appended
                        );
                    }
                    assert!(it.err().is_none(), "{line}: {:?}", it.err());
                    check_same(again.bytes(), &data, line, &mut padded);
                }
                _ => continue,
            }
            by_series.entry((enc, series)).or_default().push(data);
        }
        eprintln!(
            "{n_int} integer and {n_float} float histogram chunks, {n_samples} samples \
             re-encoded, {padded} with one trailing zero byte more"
        );

        // Replay each series through the append rules.
        let (mut cut_same, mut cut_other) = (0, 0);
        for ((enc, series), chunks) in &by_series {
            if *enc == 2 {
                let mut mine: Vec<HistogramChunk> = Vec::new();
                for (k, data) in chunks.iter().enumerate() {
                    let theirs = HistogramChunk::from_bytes(data.clone());
                    let gauge = theirs.counter_reset_header() == CounterResetHeader::Gauge;
                    let mut it = theirs.iter();
                    let mut h = Histogram::default();
                    let mut first = true;
                    while let Some(t) = it.next_into(&mut h) {
                        let s = if gauge { h.clone() } else { strip_int(&h) };
                        if first && k > 0 {
                            let cur = mine.last_mut().unwrap();
                            let hdr = match cur.clone().append(t, &s).unwrap() {
                                HistogramAppendOutcome::NewChunk(hdr) => {
                                    cut_same += 1;
                                    hdr
                                }
                                HistogramAppendOutcome::Appended => {
                                    cut_other += 1;
                                    cur.next_chunk_header(&s)
                                }
                            };
                            mine.push(HistogramChunk::new_with_header(hdr));
                        } else if first {
                            mine.push(HistogramChunk::new());
                        }
                        first = false;
                        let out = mine.last_mut().unwrap().append(t, &s).unwrap();
                        assert_eq!(
                            out,
                            HistogramAppendOutcome::Appended,
                            "series {series} chunk {k} t {t}"
                        );
                    }
                    let what = format!(
                        "series {series} chunk {k}: header {:?} vs {:?}",
                        mine.last().unwrap().counter_reset_header(),
                        theirs.counter_reset_header()
                    );
                    check_same(mine.last().unwrap().bytes(), data, &what, &mut padded);
                }
            } else {
                let mut mine: Vec<FloatHistogramChunk> = Vec::new();
                for (k, data) in chunks.iter().enumerate() {
                    let theirs = FloatHistogramChunk::from_bytes(data.clone());
                    let gauge = theirs.counter_reset_header() == CounterResetHeader::Gauge;
                    let mut it = theirs.iter();
                    let mut h = FloatHistogram::default();
                    let mut first = true;
                    while let Some(t) = it.next_into(&mut h) {
                        let s = if gauge { h.clone() } else { strip_float(&h) };
                        if first && k > 0 {
                            let cur = mine.last_mut().unwrap();
                            let hdr = match cur.clone().append(t, &s).unwrap() {
                                HistogramAppendOutcome::NewChunk(hdr) => {
                                    cut_same += 1;
                                    hdr
                                }
                                HistogramAppendOutcome::Appended => {
                                    cut_other += 1;
                                    cur.next_chunk_header(&s)
                                }
                            };
                            mine.push(FloatHistogramChunk::new_with_header(hdr));
                        } else if first {
                            mine.push(FloatHistogramChunk::new());
                        }
                        first = false;
                        let out = mine.last_mut().unwrap().append(t, &s).unwrap();
                        assert_eq!(
                            out,
                            HistogramAppendOutcome::Appended,
                            "float series {series} chunk {k} t {t}"
                        );
                    }
                    let what = format!(
                        "float series {series} chunk {k}: header {:?} vs {:?}",
                        mine.last().unwrap().counter_reset_header(),
                        theirs.counter_reset_header()
                    );
                    check_same(mine.last().unwrap().bytes(), data, &what, &mut padded);
                }
            }
        }
        eprintln!(
            "replayed: {cut_same} cuts decided by the append rules, {cut_other} by size/time"
        );
    }
}

/// Chunks written by Prometheus 2.42.0 (scraping native histograms over
/// protobuf, m-mapped into `chunks_head`), kept as test vectors.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod prometheus_vectors {
    use super::interop::{hex, strip_int};
    use super::*;

    /// A counter chunk cut by a counter reset (header `10`), 21 samples,
    /// buckets appearing along the way (so Prometheus recoded it).
    const COUNTER_RESET_21: &str = "001580744e2946328c65fc000344002cf53122000e87a16292d3c46f1bb8658596ad21358b7dee34be75095e3eb6bfb3dc8332752c9f85d3341e1072d20b214d3e80b35d532d208f6f224e7e32d6f18dcb5f6e7da61aeb54e324bc494b4edf90ac5c4902f597913bedce58575f28d2a1ceb1b91becd362561080ec4ac9589465e48960b81c35acd19b791d7afc8b749549614cacec95a090c5eba109274eb3de5d5942ff2281081f5db4ab32768c3410aaf0381b2bc6c250f458a032e9e4ed4a8bda0cf79ae97e48a2f2164f17c261e6c2e05a318a71871da4e07d8845795e4bdaf03059a107356e5156f862383be61bf48bf4ab7944";
    /// A counter chunk with an `Unknown` header (cut by a schema change).
    const UNKNOWN_16: &str = "001000744e36946328c69fc000344002b0d4b78a00d04c8d51ee73fa6ab86748edcee3960fe61606a31b2326adb1b09cd769d0454576f30b19b9d6a19f8d7df5af8c4b7578c04ca74b05dee4ebb824855ebe21c2bf595a5295f797816b96e52cdfce16bca51d39fc860a1d6f8955e325cdb9c641ba525a699255ba91d99683fa0ded7ab695ee1bb2f00d81f8f919e2b5e2b35ebbfbcedefb78c596f13b8815424354a50536923156d069e646ee88576ea6f2f7a21856d18e562a8c65bb9c6578c07ff05ca1d1f7bde950";
    /// A gauge chunk (header `11`), zero threshold 0 (the byte `00`).
    const GAUGE_17: &str = "0011c0008c71167f0000d1000b48d26467807c659331292fcc30d2dc1c32dcdf4effda7481c81feec4b6d88186be00201f65519bb4c45846e71fbcb598d9c00f64d9bcbecad0830f1da4e2db2807c3abb637dafc5235dd530f52b403d37436a9147dba73ddee325aac5b5128000408be24317e49badbe2f15accaee5c2d95000297250c11327cc561b61879ed8eed5a000013903c178c3d6cad93dd570c65d000016dfec77a23553157da6cf1f535880138980eb593ea4771baa6231db6b18ebc0092ffe534b578554c5edb79b9950c94e007df1fdd94c5b5e6c331b89ce566a377400f974433cedd6e311a9c8e1f69b5c437948018b72d980d11638c46df5f94c2ecd8cb40008a718ba617910c36ea38fd2e1f14d84a0003ab6ce7ec52ca6d31185d8e5b775";
    /// 30 samples of a series that then disappeared: the 31st is the
    /// stale marker.
    const STALE_31: &str = "001f00eab4a28ca318ff0000d1000ac352c400000000000000011bb867858e22bff8c6313097ffc6f0d80c48d61606d062e6c0b12245cd42781b8181b42c0903607c088b9312222e6b13c0de0c5cdc162448b9b43e0440981103609e04204604204e042062f7fcd0000000000020";

    fn decode(bytes: &[u8]) -> Vec<(i64, Histogram)> {
        let c = HistogramChunk::from_bytes(bytes.to_vec());
        let mut it = c.iter();
        let mut h = Histogram::default();
        let mut out = Vec::new();
        while let Some(t) = it.next_into(&mut h) {
            out.push((t, h.clone()));
        }
        assert!(it.err().is_none(), "{:?}", it.err());
        assert_eq!(out.len(), usize::from(c.num_samples()));
        out
    }

    #[test]
    fn reencode_and_replay() {
        for (name, hx, header) in [
            ("reset", COUNTER_RESET_21, CounterResetHeader::CounterReset),
            ("unknown", UNKNOWN_16, CounterResetHeader::Unknown),
            ("gauge", GAUGE_17, CounterResetHeader::Gauge),
            ("stale", STALE_31, CounterResetHeader::Unknown),
        ] {
            let bytes = hex(hx);
            let samples = decode(&bytes);
            assert_eq!(
                HistogramChunk::from_bytes(bytes.clone()).counter_reset_header(),
                header
            );
            // Re-encoding the decoded samples gives Prometheus's bytes.
            let mut c = HistogramChunk::new_with_header(header);
            for (t, h) in &samples {
                assert_eq!(
                    c.append(*t, h).unwrap(),
                    HistogramAppendOutcome::Appended,
                    "{name}"
                );
            }
            assert_eq!(c.bytes(), &bytes[..], "{name}");
            // Counter samples with the buckets recoding added removed again:
            // our rules recode the same way.
            if header != CounterResetHeader::Gauge {
                let mut c = HistogramChunk::new_with_header(header);
                for (t, h) in &samples {
                    let out = c.append(*t, &strip_int(h)).unwrap();
                    assert_eq!(out, HistogramAppendOutcome::Appended, "{name}");
                }
                assert_eq!(c.bytes(), &bytes[..], "{name} replay");
            }
        }
        let stale = decode(&hex(STALE_31));
        assert!(is_stale_nan(stale[30].1.sum));
        assert!(!is_stale_nan(stale[29].1.sum));
        let gauge = decode(&hex(GAUGE_17));
        assert_eq!(gauge[0].1.zero_threshold, 0.0);
        assert_eq!(gauge[0].1.schema, 1);
        assert!(
            gauge
                .iter()
                .all(|(_, h)| h.counter_reset_hint == CounterResetHint::Gauge)
        );
        // Recoding happened: the first sample carries empty buckets.
        let reset = decode(&hex(COUNTER_RESET_21));
        let first = &reset[0].1;
        assert!(strip_int(first).positive_buckets.len() < first.positive_buckets.len());
    }
}
