//! The float native-histogram chunk, bit-compatible with Prometheus's
//! `FloatHistogramChunk` (encoding byte 3).
//!
//! Same header and layout as the integer chunk ([`super::HistogramChunk`]);
//! the samples differ: after the first one, which stores every float in
//! full, the count, zero count, sum and each (absolute) bucket count are
//! XOR-encoded against their previous value, each with its own
//! leading/trailing-zero window. The append rules (recoding for new
//! buckets, new chunks on counter resets, gauge rules, stale markers)
//! mirror the integer chunk and Prometheus's `FloatHistogramAppender`.

use pharos_model::histogram::{CounterResetHint, FloatHistogram, Span};
use pharos_model::{Timestamp, is_stale_nan};

use super::bstream::BitReader;
use super::histogram::{
    HistogramAppendOutcome, MAX_SCHEMA, bounds_match, bucket_budget, check_decoded_schema,
    check_shape, clear_float, copy_into,
};
use super::histogram_meta::{
    CUSTOM_SCHEMA, CounterResetHeader, HEADER_LEN, Insert, Layout, adjust_for_inserts, count_of,
    count_spans, expand_spans_and_buckets, expand_spans_both_ways, header_of, hint_for, insert,
    read_layout, set_count, set_header, write_layout,
};
use super::varbit::{
    ByteBitWriter, EOF, NO_WINDOW, put_varbit_int, read_varbit_int, xor_read, xor_write,
};
use crate::TsdbError;

/// Initial buffer capacity of a new float histogram chunk.
const INITIAL_CAPACITY: usize = 128;

/// One XOR-encoded float and its window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct XorVal {
    value: f64,
    leading: u8,
    trailing: u8,
}

impl XorVal {
    /// A value with no window yet (fresh encoder).
    fn fresh(value: f64) -> XorVal {
        XorVal {
            value,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// A value with the zero window a decoder starts with.
    fn decoded(value: f64) -> XorVal {
        XorVal {
            value,
            leading: 0,
            trailing: 0,
        }
    }
}

/// Encoder/decoder state after a sample.
#[derive(Debug, Clone)]
struct FloatState {
    layout: Layout,
    t: i64,
    t_delta: i64,
    sum: XorVal,
    cnt: XorVal,
    zcnt: XorVal,
    p: Vec<XorVal>,
    n: Vec<XorVal>,
}

impl FloatState {
    fn fresh() -> FloatState {
        FloatState {
            layout: Layout::default(),
            t: i64::MIN,
            t_delta: 0,
            sum: XorVal::fresh(0.0),
            cnt: XorVal::fresh(0.0),
            zcnt: XorVal::fresh(0.0),
            p: Vec::new(),
            n: Vec::new(),
        }
    }

    fn decoder() -> FloatState {
        FloatState {
            sum: XorVal::decoded(0.0),
            cnt: XorVal::decoded(0.0),
            zcnt: XorVal::decoded(0.0),
            ..FloatState::fresh()
        }
    }
}

/// Result of the counter-histogram append check.
#[derive(Debug, Default)]
struct Appendable {
    fwd_p: Vec<Insert>,
    fwd_n: Vec<Insert>,
    bwd_p: Vec<Insert>,
    bwd_n: Vec<Insert>,
    ok: bool,
    counter_reset: bool,
}

/// A chunk of float native histograms (Prometheus encoding 3): the same
/// 3-byte header as [`super::HistogramChunk`], then a bit stream.
#[derive(Debug, Clone)]
pub struct FloatHistogramChunk {
    w: ByteBitWriter,
    st: Option<Box<FloatState>>,
    /// Whether the first sample's hint may set the header.
    hint_sets_header: bool,
}

impl PartialEq for FloatHistogramChunk {
    fn eq(&self, other: &Self) -> bool {
        self.w.bytes == other.w.bytes
    }
}

impl Default for FloatHistogramChunk {
    fn default() -> Self {
        FloatHistogramChunk::new()
    }
}

impl FloatHistogramChunk {
    /// An empty chunk with an `Unknown` counter-reset header.
    pub fn new() -> FloatHistogramChunk {
        let mut bytes = Vec::with_capacity(INITIAL_CAPACITY);
        bytes.extend_from_slice(&[0; HEADER_LEN]);
        FloatHistogramChunk {
            w: ByteBitWriter::from_parts(bytes, 0),
            st: Some(Box::new(FloatState::fresh())),
            hint_sets_header: true,
        }
    }

    /// An empty chunk with the given counter-reset header.
    pub fn new_with_header(h: CounterResetHeader) -> FloatHistogramChunk {
        let mut c = FloatHistogramChunk::new();
        set_header(&mut c.w.bytes, h);
        c.hint_sets_header = false;
        c
    }

    /// Wraps encoded bytes; see [`super::HistogramChunk::from_bytes`].
    pub fn from_bytes(bytes: Vec<u8>) -> FloatHistogramChunk {
        FloatHistogramChunk {
            w: ByteBitWriter::from_parts(bytes, 0),
            st: None,
            hint_sets_header: true,
        }
    }

    /// The encoded bytes.
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

    /// The counter-reset header of the chunk.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        header_of(&self.w.bytes)
    }

    /// An iterator over the samples.
    pub fn iter(&self) -> FloatHistogramIterator<'_> {
        FloatHistogramIterator::new(&self.w.bytes)
    }

    fn state(&mut self) -> Result<&mut FloatState, TsdbError> {
        if self.st.is_none() {
            let bytes = std::mem::take(&mut self.w.bytes);
            let decoded = if bytes.len() < HEADER_LEN {
                Err(TsdbError::CorruptChunk(format!(
                    "{} bytes is shorter than the histogram chunk header",
                    bytes.len()
                )))
            } else {
                let mut it = FloatHistogramIterator::new(&bytes);
                while it.advance() {}
                match it.err {
                    Some(e) => Err(e),
                    None if it.num_read == 0 => Ok((FloatState::fresh(), HEADER_LEN * 8)),
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
            None => panic!("BUG: float histogram appender state missing after recovery"),
        }
    }

    /// The counter-reset header a new chunk cut after this one must get
    /// when its first sample is `h` (Prometheus: `CounterReset` if a reset
    /// is detected against this chunk, else `NotCounterReset`; `Gauge` for
    /// gauge samples). `Unknown` when this chunk's bytes do not decode.
    pub fn next_chunk_header(&mut self, h: &FloatHistogram) -> CounterResetHeader {
        match h.counter_reset_hint {
            CounterResetHint::Gauge => return CounterResetHeader::Gauge,
            CounterResetHint::CounterReset => return CounterResetHeader::CounterReset,
            _ => {}
        }
        if self.state().is_err() {
            return CounterResetHeader::Unknown;
        }
        if self.appendable(h).counter_reset {
            CounterResetHeader::CounterReset
        } else {
            CounterResetHeader::NotCounterReset
        }
    }

    /// Appends a sample; the same contract as
    /// [`super::HistogramChunk::append`]. A new chunk needed for a counter
    /// reset gets `CounterReset`, for other layout changes `Unknown`, for
    /// gauges `Gauge` (as Prometheus's float appender does).
    pub fn append(
        &mut self,
        t: Timestamp,
        h: &FloatHistogram,
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

        let owned: FloatHistogram;
        let mut h = h;
        if h.counter_reset_hint != CounterResetHint::Gauge {
            let ap = self.appendable(h);
            if !ap.ok || ap.counter_reset {
                return Ok(HistogramAppendOutcome::NewChunk(if ap.counter_reset {
                    CounterResetHeader::CounterReset
                } else {
                    CounterResetHeader::Unknown
                }));
            }
            let fwd = !ap.fwd_p.is_empty() || !ap.fwd_n.is_empty();
            if !ap.bwd_p.is_empty() || !ap.bwd_n.is_empty() {
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

    /// Prometheus's float `appendable`.
    fn appendable(&self, h: &FloatHistogram) -> Appendable {
        let mut out = Appendable::default();
        let Some(st) = self.st.as_deref() else {
            return out;
        };
        if self.num_samples() > 0 && self.counter_reset_header() == CounterResetHeader::Gauge {
            return out;
        }
        if h.counter_reset_hint == CounterResetHint::CounterReset {
            out.counter_reset = true;
            return out;
        }
        if is_stale_nan(h.sum) {
            out.ok = true;
            return out;
        }
        if is_stale_nan(st.sum.value) {
            return out;
        }
        if h.count < st.cnt.value {
            out.counter_reset = true;
            return out;
        }
        if h.schema != st.layout.schema || h.zero_threshold != st.layout.zero_threshold {
            return out;
        }
        if h.schema == CUSTOM_SCHEMA && !bounds_match(&h.custom_values, &st.layout.custom_values) {
            out.counter_reset = true;
            return out;
        }
        if h.zero_count < st.zcnt.value {
            out.counter_reset = true;
            return out;
        }
        let at = |v: &[XorVal], i: usize| v.get(i).map_or(0.0, |x| x.value);
        let atf = |v: &[f64], i: usize| v.get(i).copied().unwrap_or_default();
        let Some((fwd_p, bwd_p)) = expand_spans_and_buckets(
            &st.layout.positive_spans,
            &h.positive_spans,
            |i| at(&st.p, i),
            |i| atf(&h.positive_buckets, i),
            false,
        ) else {
            out.counter_reset = true;
            return out;
        };
        let Some((fwd_n, bwd_n)) = expand_spans_and_buckets(
            &st.layout.negative_spans,
            &h.negative_spans,
            |i| at(&st.n, i),
            |i| atf(&h.negative_buckets, i),
            false,
        ) else {
            out.counter_reset = true;
            return out;
        };
        out.fwd_p = fwd_p;
        out.fwd_n = fwd_n;
        out.bwd_p = bwd_p;
        out.bwd_n = bwd_n;
        out.ok = true;
        out
    }

    /// Prometheus's float `appendableGauge`.
    #[allow(clippy::type_complexity)]
    fn appendable_gauge(
        &self,
        h: &FloatHistogram,
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
        if is_stale_nan(st.sum.value) {
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

    /// Prometheus's `appendFloatHistogram`.
    fn append_raw(&mut self, t: i64, h: &FloatHistogram) {
        let stale_h;
        let h = if is_stale_nan(h.sum) {
            stale_h = FloatHistogram {
                sum: h.sum,
                ..FloatHistogram::default()
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
        let mut t_delta = 0;
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
            st.p.clear();
            st.p.extend(h.positive_buckets.iter().map(|&v| XorVal::fresh(v)));
            st.n.clear();
            st.n.extend(h.negative_buckets.iter().map(|&v| XorVal::fresh(v)));
            put_varbit_int(w, t);
            w.write_bits(h.count.to_bits(), 64);
            w.write_bits(h.zero_count.to_bits(), 64);
            w.write_bits(h.sum.to_bits(), 64);
            st.cnt.value = h.count;
            st.zcnt.value = h.zero_count;
            st.sum.value = h.sum;
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                w.write_bits(b.to_bits(), 64);
            }
        } else {
            t_delta = t.wrapping_sub(st.t);
            put_varbit_int(w, t_delta.wrapping_sub(st.t_delta));
            write_xor(w, &mut st.cnt, h.count);
            write_xor(w, &mut st.zcnt, h.zero_count);
            write_xor(w, &mut st.sum, h.sum);
            for (x, &b) in st.p.iter_mut().zip(&h.positive_buckets) {
                write_xor(w, x, b);
            }
            for (x, &b) in st.n.iter_mut().zip(&h.negative_buckets) {
                write_xor(w, x, b);
            }
        }
        st.t = t;
        st.t_delta = t_delta;
        set_count(&mut self.w.bytes, num.wrapping_add(1));
    }

    /// Rewrites the chunk with every sample widened to `pos`/`neg`.
    fn recode(
        &mut self,
        fwd_p: &[Insert],
        fwd_n: &[Insert],
        pos: &[Span],
        neg: &[Span],
    ) -> Result<(), TsdbError> {
        let mut fresh = FloatHistogramChunk::new();
        {
            let mut it = FloatHistogramIterator::new(&self.w.bytes);
            let mut old = FloatHistogram::default();
            let mut buf = Vec::new();
            let (np, nn) = (count_spans(pos), count_spans(neg));
            while let Some(t) = it.next_into(&mut old) {
                copy_into(&mut old.positive_spans, pos);
                copy_into(&mut old.negative_spans, neg);
                if !fwd_p.is_empty() {
                    insert(&old.positive_buckets, &mut buf, fwd_p, false);
                    buf.resize(np, 0.0);
                    std::mem::swap(&mut buf, &mut old.positive_buckets);
                }
                if !fwd_n.is_empty() {
                    insert(&old.negative_buckets, &mut buf, fwd_n, false);
                    buf.resize(nn, 0.0);
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

fn write_xor(w: &mut ByteBitWriter, x: &mut XorVal, v: f64) {
    xor_write(w, v, x.value, &mut x.leading, &mut x.trailing);
    x.value = v;
}

/// Widens a sample by backward inserts (its spans already widened).
fn widen_sample(h: &mut FloatHistogram, bwd_p: &[Insert], bwd_n: &[Insert]) {
    let mut buf = Vec::new();
    if !bwd_p.is_empty() {
        insert(&h.positive_buckets, &mut buf, bwd_p, false);
        buf.resize(count_spans(&h.positive_spans), 0.0);
        std::mem::swap(&mut buf, &mut h.positive_buckets);
    }
    if !bwd_n.is_empty() {
        insert(&h.negative_buckets, &mut buf, bwd_n, false);
        buf.resize(count_spans(&h.negative_spans), 0.0);
        std::mem::swap(&mut buf, &mut h.negative_buckets);
    }
}

/// Decodes a float histogram chunk. Never panics, whatever the bytes.
#[derive(Debug, Clone)]
pub struct FloatHistogramIterator<'a> {
    data: &'a [u8],
    r: BitReader,
    num_total: u16,
    num_read: u16,
    header: CounterResetHeader,
    st: FloatState,
    err: Option<TsdbError>,
}

impl<'a> FloatHistogramIterator<'a> {
    /// An iterator over chunk bytes (header included).
    pub fn new(data: &'a [u8]) -> FloatHistogramIterator<'a> {
        let err = (data.len() < HEADER_LEN).then(|| {
            TsdbError::CorruptChunk(format!(
                "{} bytes is shorter than the histogram chunk header",
                data.len()
            ))
        });
        FloatHistogramIterator {
            data,
            r: BitReader::new(HEADER_LEN),
            num_total: if err.is_some() { 0 } else { count_of(data) },
            num_read: 0,
            header: header_of(data),
            st: FloatState::decoder(),
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
                    "float histogram chunk: {what} (sample {} of {})",
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
            st.cnt.value = f64::from_bits(r.read_bits(data, 64).ok_or(EOF)?);
            st.zcnt.value = f64::from_bits(r.read_bits(data, 64).ok_or(EOF)?);
            st.sum.value = f64::from_bits(r.read_bits(data, 64).ok_or(EOF)?);
            st.p.clear();
            st.n.clear();
            for _ in 0..np {
                let v = f64::from_bits(r.read_bits(data, 64).ok_or(EOF)?);
                st.p.push(XorVal::decoded(v));
            }
            for _ in 0..nn {
                let v = f64::from_bits(r.read_bits(data, 64).ok_or(EOF)?);
                st.n.push(XorVal::decoded(v));
            }
            return Ok(());
        }
        let t_dod = read_varbit_int(r, data)?;
        st.t_delta = st.t_delta.wrapping_add(t_dod);
        st.t = st.t.wrapping_add(st.t_delta);
        for x in [&mut st.cnt, &mut st.zcnt, &mut st.sum] {
            xor_read(r, data, &mut x.value, &mut x.leading, &mut x.trailing)?;
        }
        if is_stale_nan(st.sum.value) {
            return Ok(());
        }
        for x in st.p.iter_mut().chain(st.n.iter_mut()) {
            xor_read(r, data, &mut x.value, &mut x.leading, &mut x.trailing)?;
        }
        Ok(())
    }

    /// Decodes the next sample without handing it out and returns its
    /// timestamp; `None` at the end or on corrupt data.
    pub fn next_t(&mut self) -> Option<i64> {
        self.advance().then_some(self.st.t)
    }

    /// The timestamp of the current sample, once one was decoded.
    pub fn at_t(&self) -> Option<i64> {
        (self.num_read > 0 && self.err.is_none()).then_some(self.st.t)
    }

    /// Moves to the first sample with `t >= ts` (never back) and returns
    /// its timestamp.
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
    /// its timestamp; `None` at the end or on corrupt data. Hints, stale
    /// markers and schemas above 8 as in
    /// [`super::HistogramIterator::next_into`].
    pub fn next_into(&mut self, h: &mut FloatHistogram) -> Option<i64> {
        self.next_t()?;
        self.at_into(h)
    }

    /// Writes the current sample into `h` and returns its timestamp; `None`
    /// before the first sample or after an error.
    pub fn at_into(&mut self, h: &mut FloatHistogram) -> Option<i64> {
        let t = self.at_t()?;
        let st = &self.st;
        if is_stale_nan(st.sum.value) {
            clear_float(h);
            h.sum = st.sum.value;
            return Some(t);
        }
        h.counter_reset_hint = hint_for(self.header, self.num_read);
        h.schema = st.layout.schema;
        h.zero_threshold = st.layout.zero_threshold;
        h.zero_count = st.zcnt.value;
        h.count = st.cnt.value;
        h.sum = st.sum.value;
        copy_into(&mut h.positive_spans, &st.layout.positive_spans);
        copy_into(&mut h.negative_spans, &st.layout.negative_spans);
        h.positive_buckets.clear();
        h.positive_buckets.extend(st.p.iter().map(|x| x.value));
        h.negative_buckets.clear();
        h.negative_buckets.extend(st.n.iter().map(|x| x.value));
        copy_into(&mut h.custom_values, &st.layout.custom_values);
        if h.schema > MAX_SCHEMA && h.try_reduce_resolution(MAX_SCHEMA).is_err() {
            self.err = Some(TsdbError::CorruptChunk(format!(
                "float histogram chunk: spans of schema {} cannot be reduced (sample {} of {})",
                h.schema, self.num_read, self.num_total
            )));
            return None;
        }
        Some(t)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::chunkenc::histogram::tests::{abs_map, build_series, sp};
    use pharos_model::histogram::Histogram;
    use pharos_model::stale_nan;
    use proptest::prelude::*;

    fn to_float(h: &Histogram) -> FloatHistogram {
        let cum = |d: &[i64]| {
            let mut c = 0i64;
            d.iter()
                .map(|x| {
                    c += x;
                    c as f64
                })
                .collect::<Vec<_>>()
        };
        FloatHistogram {
            counter_reset_hint: h.counter_reset_hint,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count as f64,
            count: h.count as f64,
            sum: h.sum,
            positive_spans: h.positive_spans.clone(),
            negative_spans: h.negative_spans.clone(),
            positive_buckets: cum(&h.positive_buckets),
            negative_buckets: cum(&h.negative_buckets),
            custom_values: h.custom_values.clone(),
        }
    }

    fn sem(h: &FloatHistogram) -> String {
        if is_stale_nan(h.sum) {
            return format!("stale {}", h.sum.to_bits());
        }
        format!(
            "{} {} {} {} {} {:?} {:?} {:?}",
            h.schema,
            h.zero_threshold,
            h.count,
            h.zero_count,
            h.sum.to_bits(),
            h.custom_values,
            abs_map(&h.positive_spans, &h.positive_buckets),
            abs_map(&h.negative_spans, &h.negative_buckets)
        )
    }

    fn decode_all(c: &FloatHistogramChunk) -> Vec<(i64, FloatHistogram)> {
        let mut it = c.iter();
        let mut out = Vec::new();
        let mut h = FloatHistogram::default();
        while let Some(t) = it.next_into(&mut h) {
            out.push((t, h.clone()));
        }
        assert!(it.err().is_none(), "{:?}", it.err());
        out
    }

    fn f1() -> FloatHistogram {
        FloatHistogram {
            schema: 0,
            zero_threshold: 2f64.powi(-128),
            zero_count: 1.0,
            count: 5.0,
            sum: 10.0,
            positive_spans: sp(&[(0, 2)]),
            positive_buckets: vec![2.0, 2.0],
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn golden_bytes() {
        // Derived by hand from the format description in chunks.md.
        let mut c = FloatHistogramChunk::new();
        c.append(1000, &f1()).unwrap();
        let f2 = FloatHistogram {
            zero_count: 2.0,
            count: 8.0,
            sum: 12.0,
            positive_buckets: vec![3.0, 3.0],
            ..f1()
        };
        assert_eq!(
            c.append(2000, &f2).unwrap(),
            HistogramAppendOutcome::Appended
        );
        let want: &[u8] = &[
            0x00, 0x02, 0x00, 0x74, 0x46, 0x47, 0x8f, 0xa1, 0x00, 0x50, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xff, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x90, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xc7, 0xd1, 0xa8, 0x4d, 0xc2, 0x5f, 0xff, 0xd8,
            0x17, 0xb0, 0x1e, 0xc0, 0x60,
        ];
        assert_eq!(c.bytes(), want);
        let got = decode_all(&c);
        assert_eq!(got[0], (1000, f1()));
        assert_eq!(
            got[1],
            (
                2000,
                FloatHistogram {
                    counter_reset_hint: CounterResetHint::NotCounterReset,
                    ..f2
                }
            )
        );
    }

    #[test]
    fn rules() {
        let mut c = FloatHistogramChunk::new();
        c.append(1, &f1()).unwrap();
        // New bucket: recoded in place.
        let mut h = f1();
        h.positive_spans = sp(&[(0, 3)]);
        h.positive_buckets = vec![2.0, 2.5, 0.5];
        h.count = 6.0;
        assert_eq!(c.append(2, &h).unwrap(), HistogramAppendOutcome::Appended);
        let got = decode_all(&c);
        assert_eq!(got[0].1.positive_buckets, vec![2.0, 2.0, 0.0]);
        assert_eq!(got[1].1.positive_buckets, h.positive_buckets);
        let mut direct = FloatHistogramChunk::new();
        direct.append(1, &got[0].1).unwrap();
        direct.append(2, &h).unwrap();
        assert_eq!(direct.bytes(), c.bytes());
        // Resets and layout changes.
        let mut r = h.clone();
        r.positive_buckets[1] = 1.0;
        assert_eq!(
            c.append(3, &r).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::CounterReset)
        );
        let mut s = h.clone();
        s.schema = 3;
        assert_eq!(
            c.append(3, &s).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::Unknown)
        );
        assert_eq!(c.next_chunk_header(&s), CounterResetHeader::NotCounterReset);
        assert_eq!(c.next_chunk_header(&r), CounterResetHeader::CounterReset);
        // Stale markers fit, then only stale markers.
        let stale = FloatHistogram {
            sum: stale_nan(),
            ..FloatHistogram::default()
        };
        assert_eq!(
            c.append(4, &stale).unwrap(),
            HistogramAppendOutcome::Appended
        );
        assert_eq!(
            c.append(5, &h).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::Unknown)
        );
        // Gauges.
        let mut g = FloatHistogramChunk::new();
        let mut gh = f1();
        gh.counter_reset_hint = CounterResetHint::Gauge;
        g.append(1, &gh).unwrap();
        gh.count = 1.0;
        gh.positive_spans = sp(&[(1, 1)]);
        gh.positive_buckets = vec![0.5];
        assert_eq!(g.append(2, &gh).unwrap(), HistogramAppendOutcome::Appended);
        assert_eq!(g.counter_reset_header(), CounterResetHeader::Gauge);
        let got = decode_all(&g);
        assert_eq!(got[1].1.positive_buckets, vec![0.0, 0.5]);
        assert_eq!(got[1].1.counter_reset_hint, CounterResetHint::Gauge);
        assert_eq!(
            g.append(3, &f1()).unwrap(),
            HistogramAppendOutcome::NewChunk(CounterResetHeader::Unknown)
        );
    }

    proptest! {
        #[test]
        fn roundtrip(steps in proptest::collection::vec((any::<u8>(), proptest::collection::vec((-6i8..6, 0u8..4), 0..4), 0u8..3, 1u16..2000, any::<i16>()), 1..60),
                     gauge: bool, custom: bool, scale in prop_oneof![Just(1.0f64), Just(0.1), Just(1e-300)]) {
            let series: Vec<(i64, FloatHistogram)> = build_series(&steps, gauge, custom)
                .iter()
                .map(|(t, h)| {
                    let mut f = to_float(h);
                    if !is_stale_nan(f.sum) {
                        f.count *= scale;
                        f.zero_count *= scale;
                        for b in f.positive_buckets.iter_mut().chain(f.negative_buckets.iter_mut()) { *b *= scale; }
                    }
                    (*t, f)
                })
                .collect();
            let mut chunks = vec![FloatHistogramChunk::new()];
            for (t, h) in &series {
                let c = chunks.last_mut().unwrap();
                if let HistogramAppendOutcome::NewChunk(hdr) = c.append(*t, h).unwrap() {
                    let mut n = FloatHistogramChunk::new_with_header(hdr);
                    prop_assert_eq!(n.append(*t, h).unwrap(), HistogramAppendOutcome::Appended);
                    chunks.push(n);
                }
            }
            let decoded: Vec<_> = chunks.iter().flat_map(decode_all).collect();
            prop_assert_eq!(decoded.len(), series.len());
            for ((t1, a), (t2, b)) in series.iter().zip(&decoded) {
                prop_assert_eq!(t1, t2);
                prop_assert_eq!(sem(a), sem(b));
            }
            // Continuing a chunk from its bytes gives the same bytes once
            // two samples are in.
            if let Some(c) = chunks.iter().find(|c| c.num_samples() >= 2) {
                let mut d = FloatHistogramChunk::from_bytes(c.bytes().to_vec());
                let mut c = c.clone();
                let (t, last) = decode_all(&c).pop().unwrap();
                let a = c.append(t + 1, &last).unwrap();
                let b = d.append(t + 1, &last).unwrap();
                prop_assert_eq!(a, b);
                prop_assert_eq!(c.bytes(), d.bytes());
            }
        }

        #[test]
        fn iterator_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut c = FloatHistogramChunk::from_bytes(bytes);
            let mut it = c.iter();
            let mut h = FloatHistogram::default();
            while it.next_into(&mut h).is_some() {}
            let _ = c.append(i64::MAX, &f1());
        }

        #[test]
        fn mutated_chunks_never_panic(n in 1usize..20, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
            let mut c = FloatHistogramChunk::new();
            let mut h = f1();
            for i in 0..n {
                h.count += 1.0;
                h.positive_buckets[i % 2] += 0.5;
                h.sum *= 1.1;
                c.append(i as i64 * 15, &h).unwrap();
            }
            let mut bytes = c.into_bytes();
            for (at, x) in flips {
                let len = bytes.len();
                bytes[at % len] ^= x;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let mut c = FloatHistogramChunk::from_bytes(bytes);
            let mut it = c.iter();
            while it.next_into(&mut h).is_some() {}
            let _ = c.append(i64::MAX, &f1());
        }
    }

    #[test]
    fn schemas_above_8_are_reduced_on_read() {
        // Written raw: the encoder refuses schemas above 8, Prometheus
        // reads up to 52 and reduces them to 8 (the model's reduction).
        let h = FloatHistogram {
            schema: 10,
            count: 36.0,
            sum: 1.0,
            positive_spans: sp(&[(1, 8)]),
            positive_buckets: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            negative_spans: sp(&[(-3, 4)]),
            negative_buckets: vec![1.0, 1.0, 1.0, 1.0],
            ..FloatHistogram::default()
        };
        let mut c = FloatHistogramChunk::new();
        c.append_raw(7, &h);
        let got = decode_all(&c);
        assert_eq!(got.len(), 1);
        let f = &got[0].1;
        assert_eq!(f.schema, 8);
        // Indices 1..=4 merge into 1, 5..=8 into 2; -3..=0 into 0.
        assert_eq!(f.positive_spans, sp(&[(1, 2)]));
        assert_eq!(f.positive_buckets, vec![10.0, 26.0]);
        assert_eq!(f.negative_spans, sp(&[(0, 1)]));
        assert_eq!(f.negative_buckets, vec![4.0]);
    }
}

/// Float histogram chunks written by Prometheus 2.42.0, kept as test
/// vectors: a scraped float counter histogram and a recording rule's gauge
/// output.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod prometheus_vectors {
    use super::*;
    use crate::chunkenc::histogram::interop::{hex, strip_float};

    const COUNTER_RESET_5: &str = "0005807494627f0000d1000b098a1ff4e08bf0c17ab99fe0000000000000203ad502d160fe5a9ff2e08bf0c17ab9f0cb5eb0067b9df06481d60fad5860b9c6206ebd600cf73be0c9028809a5eafe72c5b01f3b74583e70610308134bd5fce58987cfffb90148e090c9d41f9b2d22bb762f3f535c547fd485b728941920823b5f683e3779c834e7ea071a50648208ed74";
    const RULE_GAUGE_12: &str = "000cc0008c71167f0000d1000b1d56201b800000000000200000000000000060238b59c10db86d0000000000000000200c000000000000200a0000000000001ff80000000000002011000000000000000000000000000000000000000000000000000000000000719350dbe12fffe0fe01d9b52d7946614b09900784d802b09d0088512800c30d184b5843e9ffa801612bff0434ffe800c2a5d110d788b84c801bffe003612e0082b2801000429d727e4b4c8a006801a008188affd50a01f7e766a62d4fa0c264018bff54500200405885058d8994a00540182e68014019cf98d9425d045002c26c01e801309b00510a80063315e9738db40800f0011000709900646ec070034dcf3363a64e71001e0076001500654a8076c51e203dbdc22803dff4d00615784cfffa00759656f190bd90c2740237fd0c274022";

    #[test]
    fn reencode_and_replay() {
        for (name, hx, header) in [
            ("counter", COUNTER_RESET_5, CounterResetHeader::CounterReset),
            ("rule", RULE_GAUGE_12, CounterResetHeader::Gauge),
        ] {
            let bytes = hex(hx);
            let c = FloatHistogramChunk::from_bytes(bytes.clone());
            assert_eq!(c.counter_reset_header(), header);
            let mut it = c.iter();
            let mut h = FloatHistogram::default();
            let mut samples = Vec::new();
            while let Some(t) = it.next_into(&mut h) {
                samples.push((t, h.clone()));
            }
            assert!(it.err().is_none());
            assert_eq!(samples.len(), usize::from(c.num_samples()));
            let mut again = FloatHistogramChunk::new_with_header(header);
            for (t, h) in &samples {
                assert_eq!(
                    again.append(*t, h).unwrap(),
                    HistogramAppendOutcome::Appended
                );
            }
            assert_eq!(again.bytes(), &bytes[..], "{name}");
            if header != CounterResetHeader::Gauge {
                let mut again = FloatHistogramChunk::new_with_header(header);
                for (t, h) in &samples {
                    let out = again.append(*t, &strip_float(h)).unwrap();
                    assert_eq!(out, HistogramAppendOutcome::Appended);
                }
                assert_eq!(again.bytes(), &bytes[..], "{name} replay");
            }
        }
    }
}
