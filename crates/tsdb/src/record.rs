//! Write-ahead-log records in Prometheus's encoding (`tsdb/record`).
//!
//! A record is the payload the WAL stores (before fragmenting and optional
//! compression); its first byte is the record type. We write series (1),
//! samples (2), tombstones (3) and native histogram samples (7: integer
//! counts, 8: float counts, 9 and 10: the same with custom buckets) records
//! and exemplars (4) and read those back; other types Prometheus writes (metadata,
//! the 3.x "V2" samples records...) are recognised and skipped by
//! [`decode`] so a Prometheus WAL replays with what we support. Prometheus
//! 2.42 writes types 1-4, 6 and 7 (8 exists there but only 2.44+ has float
//! histograms in the head); 9 and 10 come from 3.x. The byte layouts are in
//! `docs/format/wal.md`.
//!
//! Decoding never panics: every read is bounds-checked and a bad record is
//! a [`RecordError`] naming the byte position.

use pharos_model::histogram::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span,
};
use pharos_model::{Label, Labels, Timestamp};

use crate::head::{SampleRecord, SeriesRecord};

/// Record type byte: series (labels of a series reference).
pub const SERIES: u8 = 1;
/// Record type byte: float samples.
pub const SAMPLES: u8 = 2;
/// Record type byte: tombstones (deleted intervals).
pub const TOMBSTONES: u8 = 3;
/// Record type byte: exemplars.
pub const EXEMPLARS: u8 = 4;
/// Record type byte: native histogram samples with integer counts
/// (exponential schemas).
pub const HISTOGRAM_SAMPLES: u8 = 7;
/// Record type byte: native histogram samples with float counts
/// (exponential schemas).
pub const FLOAT_HISTOGRAM_SAMPLES: u8 = 8;
/// Record type byte: integer histogram samples with custom buckets
/// (schema −53).
pub const CUSTOM_BUCKETS_HISTOGRAM_SAMPLES: u8 = 9;
/// Record type byte: float histogram samples with custom buckets.
pub const CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES: u8 = 10;

/// One native histogram sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRecord {
    /// The series' reference.
    pub series_ref: u64,
    /// Timestamp, ms.
    pub t: Timestamp,
    /// The histogram (integer or float counts).
    pub h: HistogramValue,
}

/// One exemplar of a series as the WAL holds it (the WAL keeps no
/// "has timestamp" flag, as in Prometheus).
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarRecord {
    /// The series' reference.
    pub series_ref: u64,
    /// Timestamp, ms.
    pub t: Timestamp,
    /// Value.
    pub v: f64,
    /// The exemplar's labels.
    pub labels: Labels,
}

/// A deleted time interval of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TombstoneRecord {
    /// The series' reference.
    pub series_ref: u64,
    /// First deleted timestamp (inclusive).
    pub mint: Timestamp,
    /// Last deleted timestamp (inclusive).
    pub maxt: Timestamp,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Series definitions.
    Series(Vec<SeriesRecord>),
    /// Float samples.
    Samples(Vec<SampleRecord>),
    /// Deleted intervals.
    Tombstones(Vec<TombstoneRecord>),
    /// Native histogram samples, from any of the four histogram record
    /// types (integer counts from 7 and 9, float counts from 8 and 10).
    /// Samples whose schema we do not know are dropped, as Prometheus does.
    Histograms(Vec<HistogramRecord>),
    /// Exemplars (type 4).
    Exemplars(Vec<ExemplarRecord>),
    /// A record type we do not interpret (its type byte), skipped on replay.
    Other(u8),
}

/// A record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad WAL record at byte {pos}: {msg}")]
pub struct RecordError {
    /// Byte offset within the record.
    pub pos: usize,
    /// What is wrong.
    pub msg: &'static str,
}

fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn put_varint(out: &mut Vec<u8>, x: i64) {
    // Zig-zag, as Go's binary.PutVarint.
    put_uvarint(out, ((x << 1) ^ (x >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A label set as series and exemplar records hold it: the count, then
/// length-prefixed names and values.
fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(out, labels.len() as u64);
    for l in labels.iter() {
        put_str(out, l.name);
        put_str(out, l.value);
    }
}

/// Appends a series record holding `series` to `out`.
pub fn encode_series(series: &[SeriesRecord], out: &mut Vec<u8>) {
    out.push(SERIES);
    for s in series {
        out.extend_from_slice(&s.series_ref.to_be_bytes());
        put_labels(out, &s.labels);
    }
}

/// Appends an exemplars record (type 4) holding `exemplars` to `out`:
/// the first one's reference and time in full, then each (the first too)
/// as signed deltas, the value's bits and the labels (count, then
/// length-prefixed names and values), Prometheus's layout.
pub fn encode_exemplars(exemplars: &[ExemplarRecord], out: &mut Vec<u8>) {
    out.push(EXEMPLARS);
    let Some(first) = exemplars.first() else {
        return;
    };
    out.extend_from_slice(&first.series_ref.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for e in exemplars {
        put_varint(
            out,
            (e.series_ref as i64).wrapping_sub(first.series_ref as i64),
        );
        put_varint(out, e.t.wrapping_sub(first.t));
        out.extend_from_slice(&e.v.to_bits().to_be_bytes());
        put_labels(out, &e.labels);
    }
}

/// Appends a samples record holding `samples` to `out`: the first sample's
/// reference and time in full, then every sample (the first too) as signed
/// deltas to them plus the value's bits.
pub fn encode_samples(samples: &[SampleRecord], out: &mut Vec<u8>) {
    out.push(SAMPLES);
    let Some(first) = samples.first() else {
        return;
    };
    out.extend_from_slice(&first.series_ref.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for s in samples {
        put_varint(
            out,
            (s.series_ref as i64).wrapping_sub(first.series_ref as i64),
        );
        put_varint(out, s.t.wrapping_sub(first.t));
        out.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Appends a tombstones record to `out`.
pub fn encode_tombstones(tombstones: &[TombstoneRecord], out: &mut Vec<u8>) {
    out.push(TOMBSTONES);
    for t in tombstones {
        out.extend_from_slice(&t.series_ref.to_be_bytes());
        put_varint(out, t.mint);
        put_varint(out, t.maxt);
    }
}

/// The record type a histogram sample is written under: 7 or 8 by count
/// type, 9 or 10 when it uses custom buckets.
pub fn histogram_record_type(h: &HistogramValue) -> u8 {
    match h {
        HistogramValue::Int(h) if h.schema == CUSTOM_BUCKETS_SCHEMA => {
            CUSTOM_BUCKETS_HISTOGRAM_SAMPLES
        }
        HistogramValue::Int(_) => HISTOGRAM_SAMPLES,
        HistogramValue::Float(h) if h.schema == CUSTOM_BUCKETS_SCHEMA => {
            CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES
        }
        HistogramValue::Float(_) => FLOAT_HISTOGRAM_SAMPLES,
    }
}

fn put_spans(out: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(out, spans.len() as u64);
    for s in spans {
        put_varint(out, i64::from(s.offset));
        put_uvarint(out, u64::from(s.length));
    }
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

fn put_custom_values(out: &mut Vec<u8>, schema: i32, values: &[f64]) {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        put_uvarint(out, values.len() as u64);
        for &v in values {
            put_f64(out, v);
        }
    }
}

fn put_histogram(out: &mut Vec<u8>, h: &Histogram) {
    out.push(h.counter_reset_hint as u8);
    put_varint(out, i64::from(h.schema));
    put_f64(out, h.zero_threshold);
    put_uvarint(out, h.zero_count);
    put_uvarint(out, h.count);
    put_f64(out, h.sum);
    put_spans(out, &h.positive_spans);
    put_spans(out, &h.negative_spans);
    put_uvarint(out, h.positive_buckets.len() as u64);
    for &b in &h.positive_buckets {
        put_varint(out, b);
    }
    put_uvarint(out, h.negative_buckets.len() as u64);
    for &b in &h.negative_buckets {
        put_varint(out, b);
    }
    put_custom_values(out, h.schema, &h.custom_values);
}

fn put_float_histogram(out: &mut Vec<u8>, h: &FloatHistogram) {
    out.push(h.counter_reset_hint as u8);
    put_varint(out, i64::from(h.schema));
    put_f64(out, h.zero_threshold);
    put_f64(out, h.zero_count);
    put_f64(out, h.count);
    put_f64(out, h.sum);
    put_spans(out, &h.positive_spans);
    put_spans(out, &h.negative_spans);
    put_uvarint(out, h.positive_buckets.len() as u64);
    for &b in &h.positive_buckets {
        put_f64(out, b);
    }
    put_uvarint(out, h.negative_buckets.len() as u64);
    for &b in &h.negative_buckets {
        put_f64(out, b);
    }
    put_custom_values(out, h.schema, &h.custom_values);
}

/// Appends one record of type `typ` (one of the four histogram types)
/// holding those of `hs` whose [`histogram_record_type`] is `typ`, laid out
/// like a samples record: the first such sample's reference and time in
/// full, then per sample the signed deltas to them and the histogram.
/// Appends nothing when no sample has that type.
pub fn encode_histograms(hs: &[HistogramRecord], typ: u8, out: &mut Vec<u8>) {
    let mut it = hs.iter().filter(|h| histogram_record_type(&h.h) == typ);
    let Some(first) = it.next() else {
        return;
    };
    out.push(typ);
    out.extend_from_slice(&first.series_ref.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for h in std::iter::once(first).chain(it) {
        put_varint(
            out,
            (h.series_ref as i64).wrapping_sub(first.series_ref as i64),
        );
        put_varint(out, h.t.wrapping_sub(first.t));
        match &h.h {
            HistogramValue::Int(x) => put_histogram(out, x),
            HistogramValue::Float(x) => put_float_histogram(out, x),
        }
    }
}

/// Every histogram record type, in the order a commit writes them.
pub const HISTOGRAM_RECORD_TYPES: [u8; 4] = [
    HISTOGRAM_SAMPLES,
    FLOAT_HISTOGRAM_SAMPLES,
    CUSTOM_BUCKETS_HISTOGRAM_SAMPLES,
    CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES,
];

/// Whether a schema is one Prometheus knows: exponential −4..=8 or custom
/// buckets. Histograms with other schemas are dropped on decode.
fn known_schema(schema: i32) -> bool {
    (-4..=8).contains(&schema) || schema == CUSTOM_BUCKETS_SCHEMA
}

/// A bounds-checked reader over a record.
struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn err<T>(&self, msg: &'static str) -> Result<T, RecordError> {
        Err(RecordError { pos: self.pos, msg })
    }

    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn be64(&mut self) -> Result<u64, RecordError> {
        match self.b.get(self.pos..self.pos + 8) {
            Some(s) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                self.pos += 8;
                Ok(u64::from_be_bytes(a))
            }
            None => self.err("truncated 8-byte field"),
        }
    }

    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut x = 0u64;
        let mut shift = 0u32;
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return self.err("truncated varint");
            };
            self.pos += 1;
            if shift == 63 && c > 1 {
                return self.err("varint overflows 64 bits");
            }
            x |= u64::from(c & 0x7f) << shift;
            if c < 0x80 {
                return Ok(x);
            }
            shift += 7;
            if shift > 63 {
                return self.err("varint overflows 64 bits");
            }
        }
    }

    fn varint(&mut self) -> Result<i64, RecordError> {
        // One- and two-byte values (the deltas of a samples record) first.
        let u = match self.b.get(self.pos..self.pos + 2) {
            Some(&[c, _]) if c < 0x80 => {
                self.pos += 1;
                u64::from(c)
            }
            Some(&[c, d]) if d < 0x80 => {
                self.pos += 2;
                u64::from(c & 0x7f) | (u64::from(d) << 7)
            }
            _ => self.uvarint()?,
        };
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn byte(&mut self) -> Result<u8, RecordError> {
        match self.b.get(self.pos) {
            Some(&c) => {
                self.pos += 1;
                Ok(c)
            }
            None => self.err("truncated record"),
        }
    }

    fn f64(&mut self) -> Result<f64, RecordError> {
        self.be64().map(f64::from_bits)
    }

    /// A count of items each taking at least `min_bytes`, checked against
    /// the bytes left so a bad count cannot allocate without bound.
    fn count(&mut self, min_bytes: usize) -> Result<usize, RecordError> {
        let n = self.uvarint()?;
        let left = (self.b.len() - self.pos.min(self.b.len())) / min_bytes.max(1);
        match usize::try_from(n) {
            Ok(n) if n <= left => Ok(n),
            _ => self.err("item count exceeds the record"),
        }
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        let v = self.varint()?;
        match i32::try_from(v) {
            Ok(v) => Ok(v),
            Err(_) => self.err("value overflows 32 bits"),
        }
    }

    fn spans(&mut self) -> Result<Vec<Span>, RecordError> {
        let n = self.count(2)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let offset = self.i32()?;
            let length = self.uvarint()?;
            let Ok(length) = u32::try_from(length) else {
                return self.err("span length overflows 32 bits");
            };
            v.push(Span { offset, length });
        }
        Ok(v)
    }

    fn hint(&mut self) -> Result<CounterResetHint, RecordError> {
        Ok(match self.byte()? {
            1 => CounterResetHint::CounterReset,
            2 => CounterResetHint::NotCounterReset,
            3 => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        })
    }

    fn custom_values(&mut self, schema: i32) -> Result<Vec<f64>, RecordError> {
        if schema != CUSTOM_BUCKETS_SCHEMA {
            return Ok(Vec::new());
        }
        let n = self.count(8)?;
        (0..n).map(|_| self.f64()).collect()
    }

    fn histogram(&mut self) -> Result<Histogram, RecordError> {
        let counter_reset_hint = self.hint()?;
        let schema = self.i32()?;
        let zero_threshold = self.f64()?;
        let zero_count = self.uvarint()?;
        let count = self.uvarint()?;
        let sum = self.f64()?;
        let positive_spans = self.spans()?;
        let negative_spans = self.spans()?;
        let n = self.count(1)?;
        let positive_buckets = (0..n).map(|_| self.varint()).collect::<Result<_, _>>()?;
        let n = self.count(1)?;
        let negative_buckets = (0..n).map(|_| self.varint()).collect::<Result<_, _>>()?;
        let custom_values = self.custom_values(schema)?;
        Ok(Histogram {
            counter_reset_hint,
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
        })
    }

    fn float_histogram(&mut self) -> Result<FloatHistogram, RecordError> {
        let counter_reset_hint = self.hint()?;
        let schema = self.i32()?;
        let zero_threshold = self.f64()?;
        let zero_count = self.f64()?;
        let count = self.f64()?;
        let sum = self.f64()?;
        let positive_spans = self.spans()?;
        let negative_spans = self.spans()?;
        let n = self.count(8)?;
        let positive_buckets = (0..n).map(|_| self.f64()).collect::<Result<_, _>>()?;
        let n = self.count(8)?;
        let negative_buckets = (0..n).map(|_| self.f64()).collect::<Result<_, _>>()?;
        let custom_values = self.custom_values(schema)?;
        Ok(FloatHistogram {
            counter_reset_hint,
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
        })
    }

    fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = self.uvarint()?;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return self.err("string runs past the record");
        };
        let Ok(s) = std::str::from_utf8(&self.b[self.pos..end]) else {
            return self.err("string is not UTF-8");
        };
        self.pos = end;
        Ok(s)
    }
}

/// Decodes a samples record without collecting it: `f` gets each sample's
/// reference, time and value, in order, and the count is returned. The WAL
/// replay routes samples this way straight into its per-thread batches.
/// On an error `f` may have seen some of the samples; the caller drops
/// them (as [`decode`] drops the whole record). A record of another type
/// is an error.
pub fn decode_samples_with(
    rec: &[u8],
    mut f: impl FnMut(u64, Timestamp, f64),
) -> Result<usize, RecordError> {
    if rec.first() != Some(&SAMPLES) {
        return Err(RecordError {
            pos: 0,
            msg: "not a samples record",
        });
    }
    let mut d = Dec { b: rec, pos: 1 };
    if d.done() {
        return Ok(0);
    }
    let base_ref = d.be64()? as i64;
    let base_t = d.be64()? as i64;
    let mut n = 0;
    while !d.done() {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let v = f64::from_bits(d.be64()?);
        f(
            base_ref.wrapping_add(dref) as u64,
            base_t.wrapping_add(dt),
            v,
        );
        n += 1;
    }
    Ok(n)
}

/// Decodes one record.
pub fn decode(rec: &[u8]) -> Result<Record, RecordError> {
    let Some(&typ) = rec.first() else {
        return Err(RecordError {
            pos: 0,
            msg: "empty record",
        });
    };
    let mut d = Dec { b: rec, pos: 1 };
    match typ {
        SERIES => {
            let mut out = Vec::new();
            let mut pairs: Vec<Label<'_>> = Vec::new();
            while !d.done() {
                let series_ref = d.be64()?;
                let n = d.uvarint()?;
                // Each label takes at least two bytes: bounds the count.
                if n > (rec.len() - d.pos) as u64 / 2 {
                    return d.err("label count exceeds the record");
                }
                pairs.clear();
                for _ in 0..n {
                    let name = d.str()?;
                    let value = d.str()?;
                    pairs.push(Label { name, value });
                }
                let sorted = pairs.windows(2).all(|w| w[0].name < w[1].name)
                    && pairs.iter().all(|l| !l.value.is_empty());
                let labels = if sorted {
                    Labels::from_sorted(pairs.iter().copied())
                } else {
                    let p: Vec<(&str, &str)> = pairs.iter().map(|l| (l.name, l.value)).collect();
                    Labels::from_pairs(&p)
                };
                out.push(SeriesRecord { series_ref, labels });
            }
            Ok(Record::Series(out))
        }
        SAMPLES => {
            let mut out = Vec::new();
            if d.done() {
                return Ok(Record::Samples(out));
            }
            let base_ref = d.be64()?;
            let base_t = d.be64()? as i64;
            // Each sample takes at least 10 bytes.
            out.reserve((rec.len() - d.pos) / 10);
            while !d.done() {
                let dref = d.varint()?;
                let dt = d.varint()?;
                let v = f64::from_bits(d.be64()?);
                out.push(SampleRecord {
                    series_ref: (base_ref as i64).wrapping_add(dref) as u64,
                    t: base_t.wrapping_add(dt),
                    v,
                });
            }
            Ok(Record::Samples(out))
        }
        EXEMPLARS => {
            let mut out = Vec::new();
            if d.done() {
                return Ok(Record::Exemplars(out));
            }
            let base_ref = d.be64()? as i64;
            let base_t = d.be64()? as i64;
            let mut pairs: Vec<(&str, &str)> = Vec::new();
            while !d.done() {
                let dref = d.varint()?;
                let dt = d.varint()?;
                let v = f64::from_bits(d.be64()?);
                let n = d.uvarint()?;
                if n > (rec.len() - d.pos) as u64 / 2 {
                    return d.err("label count exceeds the record");
                }
                pairs.clear();
                for _ in 0..n {
                    let name = d.str()?;
                    let value = d.str()?;
                    pairs.push((name, value));
                }
                out.push(ExemplarRecord {
                    series_ref: base_ref.wrapping_add(dref) as u64,
                    t: base_t.wrapping_add(dt),
                    v,
                    labels: Labels::from_pairs(&pairs),
                });
            }
            Ok(Record::Exemplars(out))
        }
        TOMBSTONES => {
            let mut out = Vec::new();
            while !d.done() {
                let series_ref = d.be64()?;
                let mint = d.varint()?;
                let maxt = d.varint()?;
                out.push(TombstoneRecord {
                    series_ref,
                    mint,
                    maxt,
                });
            }
            Ok(Record::Tombstones(out))
        }
        HISTOGRAM_SAMPLES
        | FLOAT_HISTOGRAM_SAMPLES
        | CUSTOM_BUCKETS_HISTOGRAM_SAMPLES
        | CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES => {
            let mut out = Vec::new();
            if d.done() {
                return Ok(Record::Histograms(out));
            }
            let base_ref = d.be64()?;
            let base_t = d.be64()? as i64;
            let float =
                typ == FLOAT_HISTOGRAM_SAMPLES || typ == CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES;
            while !d.done() {
                let dref = d.varint()?;
                let dt = d.varint()?;
                let h = if float {
                    HistogramValue::Float(d.float_histogram()?)
                } else {
                    HistogramValue::Int(d.histogram()?)
                };
                let schema = match &h {
                    HistogramValue::Int(h) => h.schema,
                    HistogramValue::Float(h) => h.schema,
                };
                if !known_schema(schema) {
                    continue;
                }
                out.push(HistogramRecord {
                    series_ref: (base_ref as i64).wrapping_add(dref) as u64,
                    t: base_t.wrapping_add(dt),
                    h,
                });
            }
            Ok(Record::Histograms(out))
        }
        other => Ok(Record::Other(other)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn samples_layout_matches_prometheus() {
        // Hand-computed bytes for two samples, as record.go encodes them.
        let s = [
            SampleRecord {
                series_ref: 5,
                t: 1000,
                v: 1.0,
            },
            SampleRecord {
                series_ref: 3,
                t: 1015,
                v: 2.0,
            },
        ];
        let mut b = Vec::new();
        encode_samples(&s, &mut b);
        let mut want = vec![2u8];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[3, 30]); // zig-zag(-2) = 3, zig-zag(15) = 30
        want.extend_from_slice(&2.0f64.to_bits().to_be_bytes());
        assert_eq!(b, want);
        assert_eq!(decode(&b).unwrap(), Record::Samples(s.to_vec()));
        let mut e = Vec::new();
        encode_samples(&[], &mut e);
        assert_eq!(e, vec![2]);
        assert_eq!(decode(&e).unwrap(), Record::Samples(vec![]));
    }

    #[test]
    fn series_layout_matches_prometheus() {
        let s = [SeriesRecord {
            series_ref: 0x0102,
            labels: Labels::from_pairs(&[("__name__", "up"), ("a", "b")]),
        }];
        let mut b = Vec::new();
        encode_series(&s, &mut b);
        let mut want = vec![1u8, 0, 0, 0, 0, 0, 0, 1, 2, 2, 8];
        want.extend_from_slice(b"__name__");
        want.extend_from_slice(&[2, b'u', b'p', 1, b'a', 1, b'b']);
        assert_eq!(b, want);
        assert_eq!(decode(&b).unwrap(), Record::Series(s.to_vec()));
    }

    #[test]
    fn exemplars_round_trip() {
        let ex = vec![
            ExemplarRecord {
                series_ref: 7,
                t: 1_000,
                v: 1.5,
                labels: Labels::from_pairs(&[("trace_id", "abc")]),
            },
            ExemplarRecord {
                series_ref: 3,
                t: 900,
                v: -2.0,
                labels: Labels::from_pairs(&[("a", "1"), ("b", "é")]),
            },
        ];
        let mut b = Vec::new();
        encode_exemplars(&ex, &mut b);
        // Type, base ref, base time, then ref delta 0, time delta 0.
        assert_eq!(
            &b[..19],
            &[4, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 3, 0xe8, 0, 0]
        );
        assert_eq!(decode(&b).unwrap(), Record::Exemplars(ex));
        for cut in 1..b.len() {
            let _ = decode(&b[..cut]);
        }
        assert_eq!(decode(&[4]).unwrap(), Record::Exemplars(vec![]));
    }

    #[test]
    fn unknown_types_are_skipped_and_bad_ones_fail() {
        assert_eq!(decode(&[6, 1, 2]).unwrap(), Record::Other(6));
        assert!(decode(&[4, 1, 2]).is_err());
        assert_eq!(decode(&[11, 1, 2]).unwrap(), Record::Other(11));
        assert!(decode(&[7, 1, 2]).is_err());
        assert!(decode(&[]).is_err());
        assert!(decode(&[2, 0, 0]).is_err());
        assert!(decode(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 200]).is_err());
        assert!(decode(&[3, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]).is_err());
    }

    #[test]
    fn histogram_layout_matches_prometheus() {
        // Bytes as record.go's EncodeHistogram writes them, by hand.
        let h = Histogram {
            counter_reset_hint: CounterResetHint::NotCounterReset,
            schema: 1,
            zero_threshold: 0.001,
            zero_count: 2,
            count: 12,
            sum: 18.4,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            negative_spans: vec![Span {
                offset: -1,
                length: 1,
            }],
            positive_buckets: vec![1, -1],
            negative_buckets: vec![3],
            custom_values: vec![],
        };
        let recs = [HistogramRecord {
            series_ref: 9,
            t: 500,
            h: HistogramValue::Int(h.clone()),
        }];
        let mut b = Vec::new();
        encode_histograms(&recs, HISTOGRAM_SAMPLES, &mut b);
        let mut want = vec![7u8];
        want.extend_from_slice(&9u64.to_be_bytes());
        want.extend_from_slice(&500i64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 2, 2]); // dref, dt, hint, zig-zag(1)
        want.extend_from_slice(&0.001f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[2, 12]);
        want.extend_from_slice(&18.4f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[1, 0, 2]); // positive spans
        want.extend_from_slice(&[1, 1, 1]); // negative spans: zig-zag(-1) = 1
        want.extend_from_slice(&[2, 2, 1]); // positive deltas 1, -1
        want.extend_from_slice(&[1, 6]); // negative deltas 3
        assert_eq!(b, want);
        assert_eq!(decode(&b).unwrap(), Record::Histograms(recs.to_vec()));
        // Wrong type: nothing written.
        let mut e = Vec::new();
        encode_histograms(&recs, FLOAT_HISTOGRAM_SAMPLES, &mut e);
        assert!(e.is_empty());
        // An unknown schema is dropped, the rest of the record kept.
        let mut odd = h.clone();
        odd.schema = 20;
        let two = [
            HistogramRecord {
                series_ref: 1,
                t: 1,
                h: HistogramValue::Int(odd),
            },
            recs[0].clone(),
        ];
        let mut b = Vec::new();
        encode_histograms(&two, HISTOGRAM_SAMPLES, &mut b);
        assert_eq!(decode(&b).unwrap(), Record::Histograms(recs.to_vec()));
    }

    #[test]
    fn custom_bucket_and_float_histograms_get_their_types() {
        let fh = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count: 3.5,
            sum: 1.25,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![1.5, 2.0],
            custom_values: vec![0.5, 1.0],
            ..FloatHistogram::default()
        };
        let ih = Histogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count: 1,
            positive_spans: vec![Span {
                offset: 1,
                length: 1,
            }],
            positive_buckets: vec![1],
            custom_values: vec![2.0],
            ..Histogram::default()
        };
        let mut plain = fh.clone();
        plain.schema = 0;
        plain.custom_values.clear();
        let recs = vec![
            HistogramRecord {
                series_ref: 1,
                t: 10,
                h: HistogramValue::Float(fh),
            },
            HistogramRecord {
                series_ref: 2,
                t: 10,
                h: HistogramValue::Int(ih),
            },
            HistogramRecord {
                series_ref: 3,
                t: 10,
                h: HistogramValue::Float(plain),
            },
        ];
        let want_types = [
            CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES,
            CUSTOM_BUCKETS_HISTOGRAM_SAMPLES,
            FLOAT_HISTOGRAM_SAMPLES,
        ];
        for (r, typ) in recs.iter().zip(want_types) {
            assert_eq!(histogram_record_type(&r.h), typ);
            let mut b = Vec::new();
            encode_histograms(&recs, typ, &mut b);
            assert_eq!(b[0], typ);
            assert_eq!(decode(&b).unwrap(), Record::Histograms(vec![r.clone()]));
        }
    }

    fn arb_spans() -> impl Strategy<Value = Vec<Span>> {
        prop::collection::vec(
            (any::<i32>(), any::<u32>()).prop_map(|(offset, length)| Span { offset, length }),
            0..4,
        )
    }

    fn arb_histogram_value() -> impl Strategy<Value = HistogramValue> {
        (
            prop_oneof![-4i32..=8, Just(CUSTOM_BUCKETS_SCHEMA)],
            0u8..4,
            any::<u64>(),
            any::<u64>(),
            arb_spans(),
            arb_spans(),
            prop::collection::vec(any::<i64>(), 0..6),
            prop::collection::vec(any::<i64>(), 0..6),
            prop::collection::vec(any::<f64>(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(schema, hint, zc, c, ps, ns, pb, nb, cv, float)| {
                let hint = match hint {
                    1 => CounterResetHint::CounterReset,
                    2 => CounterResetHint::NotCounterReset,
                    3 => CounterResetHint::Gauge,
                    _ => CounterResetHint::Unknown,
                };
                let cv = if schema == CUSTOM_BUCKETS_SCHEMA {
                    cv
                } else {
                    vec![]
                };
                if float {
                    HistogramValue::Float(FloatHistogram {
                        counter_reset_hint: hint,
                        schema,
                        zero_threshold: 1e-3,
                        zero_count: zc as f64,
                        count: c as f64,
                        sum: f64::from_bits(c),
                        positive_spans: ps,
                        negative_spans: ns,
                        positive_buckets: pb.iter().map(|&x| x as f64).collect(),
                        negative_buckets: nb.iter().map(|&x| x as f64).collect(),
                        custom_values: cv,
                    })
                } else {
                    HistogramValue::Int(Histogram {
                        counter_reset_hint: hint,
                        schema,
                        zero_threshold: 1e-3,
                        zero_count: zc,
                        count: c,
                        sum: 2.5,
                        positive_spans: ps,
                        negative_spans: ns,
                        positive_buckets: pb,
                        negative_buckets: nb,
                        custom_values: cv,
                    })
                }
            })
    }

    fn arb_labels() -> impl Strategy<Value = Labels> {
        prop::collection::btree_map("[a-z_]{1,8}", "\\PC{1,12}", 1..6).prop_map(|m| {
            let p: Vec<(String, String)> = m.into_iter().collect();
            Labels::from_pairs(&p)
        })
    }

    proptest! {
        #[test]
        fn series_round_trip(v in prop::collection::vec((any::<u64>(), arb_labels()), 0..20)) {
            let recs: Vec<SeriesRecord> = v.into_iter().map(|(series_ref, labels)| SeriesRecord { series_ref, labels }).collect();
            let mut b = Vec::new();
            encode_series(&recs, &mut b);
            prop_assert_eq!(decode(&b).unwrap(), Record::Series(recs));
        }

        #[test]
        fn samples_round_trip(v in prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..50)) {
            let recs: Vec<SampleRecord> = v.into_iter().map(|(series_ref, t, bits)| SampleRecord { series_ref, t, v: f64::from_bits(bits) }).collect();
            let mut b = Vec::new();
            encode_samples(&recs, &mut b);
            let Record::Samples(got) = decode(&b).unwrap() else { panic!("wrong type") };
            prop_assert_eq!(got.len(), recs.len());
            for (g, w) in got.iter().zip(&recs) {
                prop_assert_eq!((g.series_ref, g.t, g.v.to_bits()), (w.series_ref, w.t, w.v.to_bits()));
            }
        }

        #[test]
        fn tombstones_round_trip(v in prop::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..20)) {
            let recs: Vec<TombstoneRecord> = v.into_iter().map(|(series_ref, mint, maxt)| TombstoneRecord { series_ref, mint, maxt }).collect();
            let mut b = Vec::new();
            encode_tombstones(&recs, &mut b);
            prop_assert_eq!(decode(&b).unwrap(), Record::Tombstones(recs));
        }

        #[test]
        fn histograms_round_trip(v in prop::collection::vec((any::<u64>(), any::<i64>(), arb_histogram_value()), 0..20)) {
            let recs: Vec<HistogramRecord> = v.into_iter().map(|(series_ref, t, h)| HistogramRecord { series_ref, t, h }).collect();
            let mut got = Vec::new();
            for typ in HISTOGRAM_RECORD_TYPES {
                let mut b = Vec::new();
                encode_histograms(&recs, typ, &mut b);
                if b.is_empty() {
                    continue;
                }
                let Record::Histograms(v) = decode(&b).unwrap() else { panic!("wrong type") };
                got.extend(v);
            }
            prop_assert_eq!(got.len(), recs.len());
            // Compare bit patterns (NaN sums are not equal to themselves).
            for w in &recs {
                let found = got.iter().any(|g| g.series_ref == w.series_ref && g.t == w.t && format!("{:?}", g.h) == format!("{:?}", w.h));
                prop_assert!(found, "missing {:?}", w);
            }
        }

        #[test]
        fn decode_samples_with_agrees_with_decode(
            v in prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..50),
            cut in any::<prop::sample::Index>(),
            garbage in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let recs: Vec<SampleRecord> = v.into_iter().map(|(series_ref, t, bits)| SampleRecord { series_ref, t, v: f64::from_bits(bits) }).collect();
            let mut b = Vec::new();
            encode_samples(&recs, &mut b);
            // Whole, cut short, and with garbage appended.
            let short = b[..cut.index(b.len())].to_vec();
            let mut long = b.clone();
            long.extend_from_slice(&garbage);
            for rec in [b, short, long] {
                let mut got = Vec::new();
                let r = decode_samples_with(&rec, |r, t, v| got.push((r, t, v.to_bits())));
                match decode(&rec) {
                    Ok(Record::Samples(want)) => {
                        prop_assert_eq!(r, Ok(want.len()));
                        let want: Vec<_> = want.iter().map(|s| (s.series_ref, s.t, s.v.to_bits())).collect();
                        prop_assert_eq!(got, want);
                    }
                    Ok(other) => prop_assert!(r.is_err(), "{:?}", other),
                    Err(_) => prop_assert!(r.is_err()),
                }
            }
        }

        #[test]
        fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..300), typ in 0u8..12) {
            let mut b = b;
            if let Some(x) = b.first_mut() { *x = typ; }
            let _ = decode(&b);
        }
    }
}
