//! What the two histogram chunk encodings share: the 3-byte header with the
//! counter-reset bits, the bucket layout written once at the start of a
//! chunk (zero threshold, schema, spans, custom bounds), and the span
//! algebra that decides whether a new sample fits a chunk's layout and how
//! to widen the layout when new buckets appear (Prometheus's "inserts").
//!
//! All layout fields follow Prometheus's encoding bit for bit; see
//! `crates/tsdb/docs/format/chunks.md`.

use pharos_model::histogram::{CounterResetHint, Span};

use super::bstream::BitReader;
use super::varbit::{
    ByteBitWriter, EOF, put_varbit_int, put_varbit_uint, read_varbit_int, read_varbit_uint,
};

/// Bytes of the histogram chunk header: sample count (2) and flags (1).
pub(crate) const HEADER_LEN: usize = 3;
/// Position of the flags byte.
const FLAGS_POS: usize = 2;
/// The counter-reset bits of the flags byte.
const RESET_MASK: u8 = 0b1100_0000;

/// Schema of histograms with custom bucket bounds.
pub(crate) const CUSTOM_SCHEMA: i32 = pharos_model::histogram::CUSTOM_BUCKETS_SCHEMA;

/// The two top bits of a histogram chunk's flags byte: what the writer knew
/// about a counter reset between the previous chunk of the series and this
/// one (or that the chunk holds gauge histograms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum CounterResetHeader {
    /// Not known; readers must compare with the previous chunk (`0b00`).
    #[default]
    Unknown,
    /// The chunk was cut because of a counter reset (`0b10`).
    CounterReset,
    /// The chunk was cut without a counter reset (`0b01`).
    NotCounterReset,
    /// The chunk holds gauge histograms (`0b11`).
    Gauge,
}

impl CounterResetHeader {
    /// The header bits in place in the flags byte.
    pub fn to_bits(self) -> u8 {
        match self {
            CounterResetHeader::Unknown => 0b0000_0000,
            CounterResetHeader::CounterReset => 0b1000_0000,
            CounterResetHeader::NotCounterReset => 0b0100_0000,
            CounterResetHeader::Gauge => 0b1100_0000,
        }
    }

    /// The header from a flags byte (other bits ignored).
    pub fn from_flags(flags: u8) -> CounterResetHeader {
        match flags & RESET_MASK {
            0b1000_0000 => CounterResetHeader::CounterReset,
            0b0100_0000 => CounterResetHeader::NotCounterReset,
            0b1100_0000 => CounterResetHeader::Gauge,
            _ => CounterResetHeader::Unknown,
        }
    }

    /// The header matching a sample's hint (Prometheus's
    /// `CounterResetHintToHeader`).
    pub fn from_hint(hint: CounterResetHint) -> CounterResetHeader {
        match hint {
            CounterResetHint::Unknown => CounterResetHeader::Unknown,
            CounterResetHint::CounterReset => CounterResetHeader::CounterReset,
            CounterResetHint::NotCounterReset => CounterResetHeader::NotCounterReset,
            CounterResetHint::Gauge => CounterResetHeader::Gauge,
        }
    }
}

/// Reads the counter-reset header of chunk bytes (Unknown when too short).
pub(crate) fn header_of(bytes: &[u8]) -> CounterResetHeader {
    bytes
        .get(FLAGS_POS)
        .map_or(CounterResetHeader::Unknown, |&f| {
            CounterResetHeader::from_flags(f)
        })
}

/// Sets the counter-reset bits of chunk bytes, keeping the other flag bits.
pub(crate) fn set_header(bytes: &mut [u8], h: CounterResetHeader) {
    if let Some(f) = bytes.get_mut(FLAGS_POS) {
        *f = (*f & !RESET_MASK) | h.to_bits();
    }
}

/// Reads the sample count of chunk bytes (0 when too short).
pub(crate) fn count_of(bytes: &[u8]) -> u16 {
    match bytes {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// Writes the sample count into chunk bytes.
pub(crate) fn set_count(bytes: &mut [u8], n: u16) {
    if let [a, b, ..] = bytes {
        [*a, *b] = n.to_be_bytes();
    }
}

/// The hint a decoded sample carries, from the chunk header and the
/// 1-based position of the sample: gauge chunks give Gauge, later samples
/// of counter chunks NotCounterReset, and the first sample Unknown (the
/// previous chunk may have been replaced by out-of-order or backfilled data,
/// so the header is not trusted for it), as Prometheus does.
pub(crate) fn hint_for(header: CounterResetHeader, num_read: u16) -> CounterResetHint {
    match header {
        CounterResetHeader::Gauge => CounterResetHint::Gauge,
        _ if num_read > 1 => CounterResetHint::NotCounterReset,
        _ => CounterResetHint::Unknown,
    }
}

/// Number of buckets the spans describe.
pub(crate) fn count_spans(spans: &[Span]) -> usize {
    spans.iter().map(|s| s.length as usize).sum()
}

/// The bucket layout written before the first sample of a chunk.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Layout {
    pub(crate) schema: i32,
    pub(crate) zero_threshold: f64,
    pub(crate) positive_spans: Vec<Span>,
    pub(crate) negative_spans: Vec<Span>,
    pub(crate) custom_values: Vec<f64>,
}

/// Writes a chunk layout.
pub(crate) fn write_layout(
    w: &mut ByteBitWriter,
    schema: i32,
    zero_threshold: f64,
    positive: &[Span],
    negative: &[Span],
    custom_values: &[f64],
) {
    put_zero_threshold(w, zero_threshold);
    put_varbit_int(w, i64::from(schema));
    put_spans(w, positive);
    put_spans(w, negative);
    if schema == CUSTOM_SCHEMA {
        put_varbit_uint(w, custom_values.len() as u64);
        for &b in custom_values {
            put_custom_bound(w, b);
        }
    }
}

/// Bits not yet read.
fn remaining_bits(r: &BitReader, data: &[u8]) -> u64 {
    (data.len() as u64 * 8).saturating_sub(r.bit_position() as u64)
}

/// Reads a chunk layout into `out`, reusing its vectors.
pub(crate) fn read_layout(
    r: &mut BitReader,
    data: &[u8],
    out: &mut Layout,
) -> Result<(), &'static str> {
    out.zero_threshold = read_zero_threshold(r, data)?;
    // Go truncates the varbit to int32; so do we.
    out.schema = read_varbit_int(r, data)? as i32;
    read_spans(r, data, &mut out.positive_spans)?;
    read_spans(r, data, &mut out.negative_spans)?;
    out.custom_values.clear();
    if out.schema == CUSTOM_SCHEMA {
        let n = read_varbit_uint(r, data)?;
        // Each bound takes at least one bit: a larger count is corrupt and
        // must not drive an allocation.
        if n > remaining_bits(r, data) {
            return Err("custom bound count exceeds the chunk");
        }
        for _ in 0..n {
            out.custom_values.push(read_custom_bound(r, data)?);
        }
    }
    Ok(())
}

fn put_spans(w: &mut ByteBitWriter, spans: &[Span]) {
    put_varbit_uint(w, spans.len() as u64);
    for s in spans {
        put_varbit_uint(w, u64::from(s.length));
        put_varbit_int(w, i64::from(s.offset));
    }
}

fn read_spans(r: &mut BitReader, data: &[u8], out: &mut Vec<Span>) -> Result<(), &'static str> {
    out.clear();
    let n = read_varbit_uint(r, data)?;
    // A span takes at least two bits.
    if n > remaining_bits(r, data) / 2 {
        return Err("span count exceeds the chunk");
    }
    for _ in 0..n {
        let length = read_varbit_uint(r, data)? as u32;
        let offset = read_varbit_int(r, data)? as i32;
        out.push(Span { offset, length });
    }
    Ok(())
}

/// Writes the zero threshold: one byte for 0 and for powers of two from
/// 2^-243 to 2^10, otherwise the byte 255 and the 64 float bits.
pub(crate) fn put_zero_threshold(w: &mut ByteBitWriter, t: f64) {
    if t == 0.0 {
        w.write_bits(0, 8);
        return;
    }
    match frexp_half_exponent(t) {
        Some(exp) if (-242..=11).contains(&exp) => w.write_bits((exp + 243) as u64, 8),
        _ => {
            w.write_bits(255, 8);
            w.write_bits(t.to_bits(), 64);
        }
    }
}

/// If `x = 0.5 * 2^exp` exactly (a positive power of two, normal or
/// subnormal), returns `exp` (Go's `math.Frexp` with fraction 0.5).
fn frexp_half_exponent(x: f64) -> Option<i32> {
    if !x.is_finite() || x <= 0.0 {
        return None;
    }
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let mantissa = bits & ((1u64 << 52) - 1);
    if biased == 0 {
        // Subnormal: a power of two iff exactly one mantissa bit is set.
        if mantissa.count_ones() != 1 {
            return None;
        }
        // x = 2^(tz - 1074) = 0.5 * 2^(tz - 1073).
        return Some(mantissa.trailing_zeros() as i32 - 1073);
    }
    if mantissa != 0 {
        return None;
    }
    // x = 2^(biased - 1023) = 0.5 * 2^(biased - 1022).
    Some(biased - 1022)
}

/// Reads the zero threshold.
pub(crate) fn read_zero_threshold(r: &mut BitReader, data: &[u8]) -> Result<f64, &'static str> {
    let b = r.read_bits(data, 8).ok_or(EOF)?;
    Ok(match b {
        0 => 0.0,
        255 => f64::from_bits(r.read_bits(data, 64).ok_or(EOF)?),
        // 0.5 * 2^(b - 243), exact.
        _ => pow2(b as i32 - 244),
    })
}

/// 2^e for -1074 <= e <= 1023, exact.
fn pow2(e: i32) -> f64 {
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

/// Writes a custom bucket bound: multiples of 0.001 from 0 to 33554.43 as
/// the unsigned varbit of `bound * 1000 + 1`, anything else as a 0 bit and
/// the 64 float bits.
pub(crate) fn put_custom_bound(w: &mut ByteBitWriter, f: f64) {
    let tf = f * 1000.0;
    if !(0.0..=33_554_430.0).contains(&tf) || !whole_when_multiplied(f) {
        w.write_bit(false);
        w.write_bits(f.to_bits(), 64);
        return;
    }
    put_varbit_uint(w, tf.round() as u64 + 1);
}

/// Whether `f` survives a round trip through `round(f * 1000) / 1000`
/// (Go's conversion to `uint` included; the callers only pass values that
/// are non-negative and small by then... or NaN, which fails).
fn whole_when_multiplied(f: f64) -> bool {
    let i = go_float_to_uint((f * 1000.0).round());
    (i as f64) / 1000.0 == f
}

/// Go's `uint(x)` on amd64 for the values that reach it: in-range values
/// truncate; NaN and out-of-range values give 0x8000000000000000.
fn go_float_to_uint(x: f64) -> u64 {
    if x.is_nan() || !(-9.2e18..=9.2e18).contains(&x) {
        1u64 << 63
    } else if x < 0.0 {
        (x as i64) as u64
    } else {
        x as u64
    }
}

/// Reads a custom bucket bound.
pub(crate) fn read_custom_bound(r: &mut BitReader, data: &[u8]) -> Result<f64, &'static str> {
    let v = read_varbit_uint(r, data)?;
    if v == 0 {
        return Ok(f64::from_bits(r.read_bits(data, 64).ok_or(EOF)?));
    }
    Ok((v - 1) as f64 / 1000.0)
}

/// Walks the bucket indices the spans cover.
#[derive(Debug, Clone)]
pub(crate) struct BucketIter<'a> {
    spans: &'a [Span],
    span: usize,
    /// Position inside the current span of the last bucket (-1 before).
    bucket: i64,
    /// Index of the last bucket yielded.
    idx: i64,
}

impl<'a> BucketIter<'a> {
    pub(crate) fn new(spans: &'a [Span]) -> BucketIter<'a> {
        let mut idx = -1i64;
        if let Some(s) = spans.first() {
            idx += i64::from(s.offset);
        }
        BucketIter {
            spans,
            span: 0,
            bucket: -1,
            idx,
        }
    }
}

impl Iterator for BucketIter<'_> {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        let cur = self.spans.get(self.span)?;
        if self.bucket < i64::from(cur.length) - 1 {
            self.bucket += 1;
            self.idx += 1;
            return Some(self.idx);
        }
        while self.span + 1 < self.spans.len() {
            self.span += 1;
            let s = self.spans[self.span];
            self.idx += i64::from(s.offset) + 1;
            self.bucket = 0;
            if s.length == 0 {
                self.idx -= 1;
                continue;
            }
            return Some(self.idx);
        }
        None
    }
}

/// A run of `num` new buckets to insert before the `pos`-th bucket of the
/// original list; `bucket_idx` is the index of the first inserted bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Insert {
    pub(crate) pos: usize,
    pub(crate) num: usize,
    pub(crate) bucket_idx: i64,
}

/// Appends `idx` to a span list being built bucket by bucket.
fn push_bucket(spans: &mut Vec<Span>, last: &mut i64, idx: i64) {
    let offset = idx - *last - 1;
    match spans.last_mut() {
        Some(s) if offset == 0 => s.length += 1,
        _ => {
            let offset = if spans.is_empty() { offset + 1 } else { offset };
            spans.push(Span {
                offset: offset as i32,
                length: 1,
            });
        }
    }
    *last = idx;
}

/// Compares an existing layout `a` (bucket values `a_val(i)`) with a new
/// sample's layout `b` (`b_val(i)`), for counter histograms. With
/// `deltas` the values are delta-encoded and summed up to counts, otherwise
/// they are the counts. Returns the forward inserts (new buckets of `b` to
/// add to `a`) and the backward inserts (empty buckets of `a` missing from
/// `b`), or `None` when a used bucket disappeared or a bucket count went
/// down (a counter reset).
pub(crate) fn expand_spans_and_buckets<T: BucketValue + PartialOrd>(
    a: &[Span],
    b: &[Span],
    a_val: impl Fn(usize) -> T,
    b_val: impl Fn(usize) -> T,
    deltas: bool,
) -> Option<(Vec<Insert>, Vec<Insert>)> {
    let mut ai = BucketIter::new(a);
    let mut bi = BucketIter::new(b);
    let mut a_inserts = Vec::new();
    let mut b_inserts = Vec::new();
    let mut a_inter = Insert::default();
    let mut b_inter = Insert::default();
    let mut a_next = ai.next();
    let mut b_next = bi.next();
    let (mut a_ci, mut b_ci) = (0usize, 0usize);
    let step = |acc: T, v: T| if deltas { acc.wadd(v) } else { v };
    let mut a_count = if a_next.is_some() {
        a_val(0)
    } else {
        T::default()
    };
    let mut b_count = if b_next.is_some() {
        b_val(0)
    } else {
        T::default()
    };

    fn add_insert(inserts: &mut Vec<Insert>, ins: &mut Insert, other_idx: i64) {
        if ins.num == 0 {
            ins.bucket_idx = other_idx;
        } else if ins.bucket_idx + ins.num as i64 != other_idx {
            inserts.push(*ins);
            ins.num = 0;
            ins.bucket_idx = other_idx;
        }
        ins.num += 1;
    }

    loop {
        match (a_next, b_next) {
            (Some(ax), Some(bx)) if ax == bx => {
                if a_count > b_count {
                    return None;
                }
                // Advance both.
                if a_inter.num > 0 {
                    a_inserts.push(a_inter);
                    a_inter.num = 0;
                }
                a_next = ai.next();
                a_inter.pos += 1;
                a_ci += 1;
                if a_next.is_some() {
                    a_count = step(a_count, a_val(a_ci));
                }
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                    b_inter.num = 0;
                }
                b_next = bi.next();
                b_inter.pos += 1;
                b_ci += 1;
                if b_next.is_some() {
                    b_count = step(b_count, b_val(b_ci));
                }
            }
            (Some(ax), bx) if bx.is_none_or(|bx| ax < bx) => {
                // b lacks a bucket of a: fine only if it was empty.
                if a_count != T::default() {
                    return None;
                }
                add_insert(&mut b_inserts, &mut b_inter, ax);
                if a_inter.num > 0 {
                    a_inserts.push(a_inter);
                    a_inter.num = 0;
                }
                a_next = ai.next();
                a_inter.pos += 1;
                a_ci += 1;
                if a_next.is_some() {
                    a_count = step(a_count, a_val(a_ci));
                }
            }
            (_, Some(bx)) => {
                // a lacks a bucket of b: a new bucket.
                add_insert(&mut a_inserts, &mut a_inter, bx);
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                    b_inter.num = 0;
                }
                b_next = bi.next();
                b_inter.pos += 1;
                b_ci += 1;
                if b_next.is_some() {
                    b_count = step(b_count, b_val(b_ci));
                }
            }
            (_, None) => {
                if a_inter.num > 0 {
                    a_inserts.push(a_inter);
                }
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                }
                return Some((a_inserts, b_inserts));
            }
        }
    }
}

/// For gauge histograms: the forward inserts that widen `a` to the union
/// of both layouts, the backward inserts that widen `b` to it, and the
/// union's spans. Counts are not compared.
pub(crate) fn expand_spans_both_ways(
    a: &[Span],
    b: &[Span],
) -> (Vec<Insert>, Vec<Insert>, Vec<Span>) {
    let mut ai = BucketIter::new(a);
    let mut bi = BucketIter::new(b);
    let mut f_inserts = Vec::new();
    let mut b_inserts = Vec::new();
    let mut merged = Vec::new();
    let mut last = 0i64;
    let mut f_inter = Insert::default();
    let mut b_inter = Insert::default();
    let mut a_next = ai.next();
    let mut b_next = bi.next();
    loop {
        match (a_next, b_next) {
            (Some(av), Some(bv)) if av == bv => {
                if f_inter.num > 0 {
                    f_inserts.push(f_inter);
                    f_inter.num = 0;
                }
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                    b_inter.num = 0;
                }
                push_bucket(&mut merged, &mut last, av);
                a_next = ai.next();
                b_next = bi.next();
                f_inter.pos += 1;
                b_inter.pos += 1;
            }
            (Some(av), Some(bv)) if av < bv => {
                b_inter.num += 1;
                if f_inter.num > 0 {
                    f_inserts.push(f_inter);
                    f_inter.num = 0;
                }
                push_bucket(&mut merged, &mut last, av);
                f_inter.pos += 1;
                a_next = ai.next();
            }
            (Some(_), Some(bv)) => {
                f_inter.num += 1;
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                    b_inter.num = 0;
                }
                push_bucket(&mut merged, &mut last, bv);
                b_inter.pos += 1;
                b_next = bi.next();
            }
            (Some(av), None) => {
                b_inter.num += 1;
                push_bucket(&mut merged, &mut last, av);
                a_next = ai.next();
            }
            (None, Some(bv)) => {
                f_inter.num += 1;
                push_bucket(&mut merged, &mut last, bv);
                b_next = bi.next();
            }
            (None, None) => {
                if f_inter.num > 0 {
                    f_inserts.push(f_inter);
                }
                if b_inter.num > 0 {
                    b_inserts.push(b_inter);
                }
                return (f_inserts, b_inserts, merged);
            }
        }
    }
}

/// Bucket values the insert logic works on.
/// Integers wrap (decoded data may be arbitrary; the encoder's arithmetic
/// wraps like Go's).
pub(crate) trait BucketValue: Copy + Default + PartialEq {
    /// Addition (wrapping for integers).
    fn wadd(self, o: Self) -> Self;
    /// Negation (wrapping for integers).
    fn wneg(self) -> Self;
}
impl BucketValue for i64 {
    fn wadd(self, o: i64) -> i64 {
        self.wrapping_add(o)
    }
    fn wneg(self) -> i64 {
        self.wrapping_neg()
    }
}
impl BucketValue for f64 {
    fn wadd(self, o: f64) -> f64 {
        self + o
    }
    fn wneg(self) -> f64 {
        -self
    }
}

/// Rewrites bucket values `input` for a layout widened by `inserts` into
/// `out` (cleared first). Inserted buckets are empty: with `deltas` the
/// values are delta-encoded, so the first inserted bucket undoes the
/// running value and the bucket after an insert carries it again.
pub(crate) fn insert<T: BucketValue>(
    input: &[T],
    out: &mut Vec<T>,
    inserts: &[Insert],
    deltas: bool,
) {
    out.clear();
    let mut v = T::default();
    let mut ii = 0;
    for (i, &d) in input.iter().enumerate() {
        if ii >= inserts.len() || i != inserts[ii].pos {
            out.push(d);
            v = v.wadd(d);
            continue;
        }
        let mut first = true;
        while ii < inserts.len() && inserts[ii].pos == i {
            if deltas && first {
                out.push(v.wneg());
                first = false;
            } else {
                out.push(T::default());
            }
            for _ in 1..inserts[ii].num {
                out.push(T::default());
            }
            ii += 1;
        }
        out.push(if deltas { d.wadd(v) } else { d });
        v = v.wadd(d);
    }
    // Inserts after the last bucket.
    while ii < inserts.len() {
        out.push(if deltas { v.wneg() } else { T::default() });
        for _ in 1..inserts[ii].num {
            out.push(T::default());
        }
        ii += 1;
        v = T::default();
    }
}

/// The spans `spans` widened by `inserts` (whose `bucket_idx` say where).
pub(crate) fn adjust_for_inserts(spans: &[Span], inserts: &[Insert]) -> Vec<Span> {
    if inserts.is_empty() {
        return spans.to_vec();
    }
    let mut merged = Vec::new();
    let mut last = 0i64;
    let mut i = 0usize;
    let mut ins_idx = inserts[0].bucket_idx;
    let mut ins_num = inserts[0].num;
    let consume = |i: &mut usize, ins_idx: &mut i64, ins_num: &mut usize| {
        *ins_num -= 1;
        if *ins_num == 0 {
            *i += 1;
            if let Some(n) = inserts.get(*i) {
                *ins_idx = n.bucket_idx;
                *ins_num = n.num;
            }
        } else {
            *ins_idx += 1;
        }
    };
    let mut it = BucketIter::new(spans);
    let mut bucket = it.next();
    while let Some(b) = bucket {
        if i < inserts.len() && ins_idx < b {
            push_bucket(&mut merged, &mut last, ins_idx);
            consume(&mut i, &mut ins_idx, &mut ins_num);
        } else {
            push_bucket(&mut merged, &mut last, b);
            bucket = it.next();
        }
    }
    while i < inserts.len() {
        push_bucket(&mut merged, &mut last, ins_idx);
        consume(&mut i, &mut ins_idx, &mut ins_num);
    }
    merged
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sp(v: &[(i32, u32)]) -> Vec<Span> {
        v.iter()
            .map(|&(offset, length)| Span { offset, length })
            .collect()
    }

    #[test]
    fn bucket_iterator_walks_indices() {
        let s = sp(&[(0, 2), (1, 1), (1, 0), (3, 2)]);
        let got: Vec<i64> = BucketIter::new(&s).collect();
        // 0 1 | skip 2 | 3 | empty span skips 1 | skip 3 -> 8 9
        assert_eq!(got, vec![0, 1, 3, 8, 9]);
        let s = sp(&[(-5, 1), (0, 1)]);
        assert_eq!(BucketIter::new(&s).collect::<Vec<_>>(), vec![-5, -4]);
        assert_eq!(BucketIter::new(&[]).next(), None);
    }

    #[test]
    fn zero_threshold_encoding() {
        for (t, len, first) in [
            (0.0, 1, 0u8),
            (2f64.powi(-128), 1, 116),
            (1024.0, 1, 254),
            (2f64.powi(-243), 1, 1),
            (2048.0, 9, 255),
            (1e-100, 9, 255),
            (0.001, 9, 255),
        ] {
            let mut w = ByteBitWriter::default();
            put_zero_threshold(&mut w, t);
            assert_eq!(w.bytes.len(), len, "{t}");
            assert_eq!(w.bytes[0], first, "{t}");
            let mut r = BitReader::new(0);
            assert_eq!(read_zero_threshold(&mut r, &w.bytes).unwrap(), t);
        }
    }

    #[test]
    fn custom_bound_encoding() {
        for (b, bits) in [
            (0.0, 5usize),
            (0.25, 13),
            (1.0, 17),
            (33554.43, 32),
            (33554.431, 65),
            (-1.0, 65),
            (0.0001, 65),
            (f64::INFINITY, 65),
            (f64::NAN, 65),
        ] {
            let mut w = ByteBitWriter::default();
            put_custom_bound(&mut w, b);
            let mut r = BitReader::new(0);
            let got = read_custom_bound(&mut r, &w.bytes).unwrap();
            assert_eq!(r.bit_position(), bits, "{b}");
            assert!(got == b || (got.is_nan() && b.is_nan()), "{b} -> {got}");
        }
    }

    #[test]
    fn layout_roundtrip() {
        let mut w = ByteBitWriter::default();
        let pos = sp(&[(-3, 2), (5, 1)]);
        let neg = sp(&[(1, 4)]);
        write_layout(&mut w, 3, 2f64.powi(-128), &pos, &neg, &[1.0]);
        write_layout(&mut w, CUSTOM_SCHEMA, 0.0, &pos, &[], &[0.5, 1.0, 2.5, 1e9]);
        let mut r = BitReader::new(0);
        let mut l = Layout::default();
        read_layout(&mut r, &w.bytes, &mut l).unwrap();
        assert_eq!((l.schema, l.zero_threshold), (3, 2f64.powi(-128)));
        assert_eq!(
            (l.positive_spans.clone(), l.negative_spans.clone()),
            (pos.clone(), neg)
        );
        assert!(l.custom_values.is_empty());
        read_layout(&mut r, &w.bytes, &mut l).unwrap();
        assert_eq!(l.schema, CUSTOM_SCHEMA);
        assert_eq!(l.positive_spans, pos);
        assert!(l.negative_spans.is_empty());
        assert_eq!(l.custom_values, vec![0.5, 1.0, 2.5, 1e9]);
    }

    #[test]
    fn expand_example_from_upstream_docs() {
        // Old:  [0,2] [2,1] [3,2] [3,1] [1,1]: buckets 0 1 4 8 9 13 15.
        // New:  [0,3] [1,1] [1,4] [3,3]:       buckets 0 1 2 4 6 7 8 9 13 14 15.
        let a = sp(&[(0, 2), (2, 1), (3, 2), (3, 1), (1, 1)]);
        let b = sp(&[(0, 3), (1, 1), (1, 4), (3, 3)]);
        let a_abs = [6i64, 3, 3, 2, 4, 5, 1];
        let b_abs = [6i64, 3, 0, 3, 0, 0, 2, 4, 5, 0, 1];
        let (fwd, bwd) =
            expand_spans_and_buckets(&a, &b, |i| a_abs[i], |i| b_abs[i], false).unwrap();
        assert!(bwd.is_empty());
        assert_eq!(
            fwd,
            vec![
                Insert {
                    pos: 2,
                    num: 1,
                    bucket_idx: 2
                },
                Insert {
                    pos: 3,
                    num: 2,
                    bucket_idx: 6
                },
                Insert {
                    pos: 6,
                    num: 1,
                    bucket_idx: 14
                },
            ]
        );
        // Deltas of a, widened: the documented new deltas.
        let a_deltas = [6i64, -3, 0, -1, 2, 1, -4];
        let mut out = Vec::new();
        insert(&a_deltas, &mut out, &fwd, true);
        assert_eq!(out, vec![6, -3, -3, 3, -3, 0, 2, 2, 1, -5, 1]);
        let mut outf = Vec::new();
        insert(&[6.0, 3.0, 3.0, 2.0, 4.0, 5.0, 1.0], &mut outf, &fwd, false);
        assert_eq!(
            outf,
            vec![6.0, 3.0, 0.0, 3.0, 0.0, 0.0, 2.0, 4.0, 5.0, 0.0, 1.0]
        );
        // A decreasing bucket is a reset; a vanished used bucket too.
        let b_less = [6i64, 3, 0, 2, 0, 0, 2, 4, 5, 0, 1];
        assert!(
            expand_spans_and_buckets(
                &a,
                &b,
                |i| a_deltas[i],
                |i| b_less[i] - if i > 0 { b_less[i - 1] } else { 0 },
                true
            )
            .is_none()
        );
        let c = sp(&[(0, 2)]);
        assert!(expand_spans_and_buckets(&a, &c, |i| a_abs[i], |_| 9i64, false).is_none());
    }

    #[test]
    fn empty_buckets_may_vanish_backward_inserts() {
        // a has buckets 0 1 2 with bucket 1 empty; b has 0 2 3.
        let a = sp(&[(0, 3)]);
        let b = sp(&[(0, 1), (1, 2)]);
        let a_abs = [1i64, 0, 2];
        let b_abs = [1i64, 2, 5];
        let (fwd, bwd) =
            expand_spans_and_buckets(&a, &b, |i| a_abs[i], |i| b_abs[i], false).unwrap();
        assert_eq!(
            fwd,
            vec![Insert {
                pos: 3,
                num: 1,
                bucket_idx: 3
            }]
        );
        assert_eq!(
            bwd,
            vec![Insert {
                pos: 1,
                num: 1,
                bucket_idx: 1
            }]
        );
        assert_eq!(adjust_for_inserts(&b, &bwd), sp(&[(0, 4)]));
    }

    #[test]
    fn both_ways_union() {
        let a = sp(&[(0, 2), (3, 1)]); // 0 1 5
        let b = sp(&[(1, 2), (5, 1)]); // 1 2 8
        let (f, bw, merged) = expand_spans_both_ways(&a, &b);
        assert_eq!(merged, sp(&[(0, 3), (2, 1), (2, 1)])); // 0 1 2 5 8
        assert_eq!(
            f,
            vec![
                Insert {
                    pos: 2,
                    num: 1,
                    bucket_idx: 0
                },
                Insert {
                    pos: 3,
                    num: 1,
                    bucket_idx: 0
                }
            ]
        );
        assert_eq!(
            bw,
            vec![
                Insert {
                    pos: 0,
                    num: 1,
                    bucket_idx: 0
                },
                Insert {
                    pos: 2,
                    num: 1,
                    bucket_idx: 0
                }
            ]
        );
        let mut out = Vec::new();
        insert(&[1.0, 2.0, 3.0], &mut out, &f, false);
        assert_eq!(out, vec![1.0, 2.0, 0.0, 3.0, 0.0]);
        insert(&[4.0, 5.0, 6.0], &mut out, &bw, false);
        assert_eq!(out, vec![0.0, 4.0, 5.0, 0.0, 6.0]);
    }

    /// Spans for sorted unique indices, with a few non-canonical cuts
    /// (zero-offset splits and empty spans) chosen by `cuts`.
    fn spans_with_cuts(idx: &[i64], cuts: &[bool]) -> Vec<Span> {
        let mut out: Vec<Span> = Vec::new();
        let mut last = 0i64;
        for (k, &i) in idx.iter().enumerate() {
            let cut = cuts.get(k).copied().unwrap_or(false);
            if k > 0 && i == last + 1 && !cut {
                out.last_mut().unwrap().length += 1;
            } else {
                let off = if k == 0 { i } else { i - last - 1 };
                if cut && k > 0 {
                    // An empty span carrying the gap, then a zero-offset one.
                    out.push(Span {
                        offset: off as i32,
                        length: 0,
                    });
                    out.push(Span {
                        offset: 0,
                        length: 1,
                    });
                } else {
                    out.push(Span {
                        offset: off as i32,
                        length: 1,
                    });
                }
            }
            last = i;
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn expand_matches_set_model(
            a in proptest::collection::btree_map(-20i64..20, 0u8..4, 0..12),
            b in proptest::collection::btree_map(-20i64..20, 0u8..4, 0..12),
            cuts_a in proptest::collection::vec(proptest::bool::ANY, 12),
            cuts_b in proptest::collection::vec(proptest::bool::ANY, 12),
        ) {
            let ai: Vec<i64> = a.keys().copied().collect();
            let bi: Vec<i64> = b.keys().copied().collect();
            let sa = spans_with_cuts(&ai, &cuts_a);
            let sb = spans_with_cuts(&bi, &cuts_b);
            proptest::prop_assert_eq!(BucketIter::new(&sa).collect::<Vec<_>>(), ai.clone());
            let av: Vec<f64> = a.values().map(|&v| f64::from(v)).collect();
            let bv: Vec<f64> = b.values().map(|&v| f64::from(v)).collect();
            let union: std::collections::BTreeSet<i64> = ai.iter().chain(&bi).copied().collect();
            let union: Vec<i64> = union.into_iter().collect();

            // Counter rules.
            let ok = a.iter().all(|(i, &v)| b.get(i).map_or(v == 0, |&w| v <= w));
            let got = expand_spans_and_buckets(&sa, &sb, |i| av[i], |i| bv[i], false);
            proptest::prop_assert_eq!(got.is_some(), ok);
            if let Some((fwd, bwd)) = got {
                let mut wa = Vec::new();
                insert(&av, &mut wa, &fwd, false);
                let mut wb = Vec::new();
                insert(&bv, &mut wb, &bwd, false);
                proptest::prop_assert_eq!(wa.len(), union.len());
                proptest::prop_assert_eq!(wb.len(), union.len());
                for (k, i) in union.iter().enumerate() {
                    proptest::prop_assert_eq!(wa[k], a.get(i).map_or(0.0, |&v| f64::from(v)));
                    proptest::prop_assert_eq!(wb[k], b.get(i).map_or(0.0, |&v| f64::from(v)));
                }
                let widened = adjust_for_inserts(&sb, &bwd);
                let idx: std::collections::BTreeSet<i64> = ai.iter().filter(|i| !b.contains_key(i)).chain(&bi).copied().collect();
                proptest::prop_assert_eq!(BucketIter::new(&widened).collect::<Vec<_>>(), idx.into_iter().collect::<Vec<_>>());
                // Delta-encoded values give the same verdict and widen alike.
                let deltas = |v: &[f64]| { let mut p = 0i64; v.iter().map(|&x| { let d = x as i64 - p; p = x as i64; d }).collect::<Vec<i64>>() };
                let (ad, bd) = (deltas(&av), deltas(&bv));
                let got_d = expand_spans_and_buckets(&sa, &sb, |i| ad[i], |i| bd[i], true);
                proptest::prop_assert_eq!(got_d.clone().map(|x| x.0), Some(fwd.clone()));
                let mut wad = Vec::new();
                insert(&ad, &mut wad, &fwd, true);
                let mut cum = 0i64;
                let abs: Vec<f64> = wad.iter().map(|d| { cum += d; cum as f64 }).collect();
                proptest::prop_assert_eq!(abs, wa);
            }

            // Gauge rules: always the union.
            let (f, bw, merged) = expand_spans_both_ways(&sa, &sb);
            proptest::prop_assert_eq!(BucketIter::new(&merged).collect::<Vec<_>>(), union.clone());
            let mut wa = Vec::new();
            insert(&av, &mut wa, &f, false);
            let mut wb = Vec::new();
            insert(&bv, &mut wb, &bw, false);
            for (k, i) in union.iter().enumerate() {
                proptest::prop_assert_eq!(wa[k], a.get(i).map_or(0.0, |&v| f64::from(v)));
                proptest::prop_assert_eq!(wb[k], b.get(i).map_or(0.0, |&v| f64::from(v)));
            }
        }
    }
}
