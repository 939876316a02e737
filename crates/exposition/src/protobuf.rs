//! The Prometheus protobuf exposition format: a stream of
//! varint-length-delimited `io.prometheus.client.MetricFamily` messages
//! (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited`), the only format that carries native histograms.
//!
//! # Why a hand-written decoder
//!
//! The schema is eight small messages, and decoding it is on the scrape
//! path of every target that offers it. A code generator (prost + protoc)
//! would bring a build-time tool, a second copy of the schema and generic
//! decoding code whose failure modes we do not control. The decoder here is
//! about two hundred lines over the four wire types, bounds-checks every
//! read (`get`, checked arithmetic), never recurses deeper than the schema
//! (so hostile nesting cannot blow the stack), and reports errors with the
//! byte offset in the body. Unknown fields are skipped, as protobuf requires.
//!
//! # What comes out
//!
//! [`ProtoParser`] decodes one family at a time into the owned
//! [`MetricFamily`] model (also what [`encode_delimited`] writes, for tests
//! and fixtures), and hands out [`ProtoEntry`]s the way Prometheus's
//! `ProtobufParser` does: per family `Help`, `Unit` (when set), `Type`, then
//! the series in order.
//!
//! * counters, gauges and untyped metrics: one float sample each;
//! * summaries: `_count`, `_sum`, then one `quantile` series per quantile;
//! * histograms with native data (any span, a zero threshold or a zero
//!   count; see [`Histogram::is_native`]) become one native histogram,
//!   integer ([`pharos_model::Histogram`]) unless a float count or float zero
//!   count is set ([`pharos_model::FloatHistogram`]), compacted like
//!   Prometheus does; gauge histograms get the gauge counter-reset hint.
//!   With [`ProtoOptions::keep_classic`] their classic buckets (if any) are
//!   also given as `_count`, `_sum` and `_bucket{le}` series;
//! * histograms without native data, or all histograms when
//!   [`ProtoOptions::native_histograms`] is off: classic series only, with an
//!   `le="+Inf"` bucket added when the message has none.
//!
//! Metric timestamps of 0 mean "no timestamp" (proto3 cannot tell unset
//! from zero; Prometheus reads it the same way). Exemplars, created
//! timestamps (`start_timestamp`) are decoded past and not reported.

use std::collections::VecDeque;

use pharos_model::{
    CounterResetHint, FloatHistogram, Histogram as IntHistogram, HistogramValue, Labels,
    LabelsBuilder, METRIC_NAME, Span,
};

use crate::MetricType;

/// The `Content-Type` a target sends with this format (and the media type
/// of its `Accept` entry).
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Messages longer than this are refused (the body-size limit of the
/// scraper normally bounds them first).
const MAX_MESSAGE: u64 = 1 << 30;

/// A decoding error: the byte offset in the body where it was found, and
/// what is wrong. Displays as `byte N: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {message}")]
pub struct ProtoError {
    /// Offset in the input, in bytes.
    pub offset: usize,
    /// What is wrong, in words.
    pub message: String,
}

/// A `LabelPair`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelPair {
    /// Label name.
    pub name: String,
    /// Label value.
    pub value: String,
}

/// A `Quantile` of a summary.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quantile {
    /// The quantile (0..1).
    pub quantile: f64,
    /// Its value.
    pub value: f64,
}

/// A `Summary`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Observation count.
    pub sample_count: u64,
    /// Observation sum.
    pub sample_sum: f64,
    /// The quantiles, in order.
    pub quantile: Vec<Quantile>,
}

/// A classic `Bucket` of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bucket {
    /// Cumulative count.
    pub cumulative_count: u64,
    /// Cumulative count as a float; overrides `cumulative_count` if non-zero.
    pub cumulative_count_float: f64,
    /// Inclusive upper bound.
    pub upper_bound: f64,
}

/// A `Histogram`: classic buckets and/or native data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Observation count.
    pub sample_count: u64,
    /// Observation count as a float; makes the histogram a float one if > 0.
    pub sample_count_float: f64,
    /// Observation sum.
    pub sample_sum: f64,
    /// Classic buckets, by increasing upper bound.
    pub bucket: Vec<Bucket>,
    /// Native schema.
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Zero bucket count.
    pub zero_count: u64,
    /// Zero bucket count as a float; makes the histogram a float one if > 0.
    pub zero_count_float: f64,
    /// Negative spans.
    pub negative_span: Vec<Span>,
    /// Negative bucket deltas (integer histograms).
    pub negative_delta: Vec<i64>,
    /// Negative bucket counts (float histograms).
    pub negative_count: Vec<f64>,
    /// Positive spans.
    pub positive_span: Vec<Span>,
    /// Positive bucket deltas (integer histograms).
    pub positive_delta: Vec<i64>,
    /// Positive bucket counts (float histograms).
    pub positive_count: Vec<f64>,
}

impl Histogram {
    /// Prometheus's rule: a histogram carries native data iff it has a span
    /// on either side, a positive zero threshold or a zero count. (An empty
    /// native histogram is marked with a no-op span by client libraries.)
    pub fn is_native(&self) -> bool {
        !self.positive_span.is_empty()
            || !self.negative_span.is_empty()
            || self.zero_threshold > 0.0
            || self.zero_count > 0
    }

    /// Whether the native data is float (a float count or float zero count
    /// is set).
    pub fn is_float(&self) -> bool {
        self.sample_count_float > 0.0 || self.zero_count_float > 0.0
    }

    fn count_f64(&self) -> f64 {
        if self.sample_count_float != 0.0 {
            self.sample_count_float
        } else {
            self.sample_count as f64
        }
    }
}

/// A `Metric`: labels, one value message per type, a timestamp.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metric {
    /// Labels (without the metric name).
    pub label: Vec<LabelPair>,
    /// `gauge.value`.
    pub gauge: Option<f64>,
    /// `counter.value`.
    pub counter: Option<f64>,
    /// `summary`.
    pub summary: Option<Summary>,
    /// `untyped.value`.
    pub untyped: Option<f64>,
    /// `histogram`.
    pub histogram: Option<Histogram>,
    /// Milliseconds since the epoch; 0 is "none".
    pub timestamp_ms: i64,
}

/// The `MetricType` enum of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtoType {
    /// `COUNTER = 0`.
    #[default]
    Counter,
    /// `GAUGE = 1`.
    Gauge,
    /// `SUMMARY = 2`.
    Summary,
    /// `UNTYPED = 3`.
    Untyped,
    /// `HISTOGRAM = 4`.
    Histogram,
    /// `GAUGE_HISTOGRAM = 5`.
    GaugeHistogram,
}

impl ProtoType {
    fn from_wire(v: u64) -> Option<ProtoType> {
        Some(match v {
            0 => ProtoType::Counter,
            1 => ProtoType::Gauge,
            2 => ProtoType::Summary,
            3 => ProtoType::Untyped,
            4 => ProtoType::Histogram,
            5 => ProtoType::GaugeHistogram,
            _ => return None,
        })
    }

    fn to_wire(self) -> u64 {
        match self {
            ProtoType::Counter => 0,
            ProtoType::Gauge => 1,
            ProtoType::Summary => 2,
            ProtoType::Untyped => 3,
            ProtoType::Histogram => 4,
            ProtoType::GaugeHistogram => 5,
        }
    }

    /// The metadata type it stands for.
    pub fn metric_type(self) -> MetricType {
        match self {
            ProtoType::Counter => MetricType::Counter,
            ProtoType::Gauge => MetricType::Gauge,
            ProtoType::Summary => MetricType::Summary,
            ProtoType::Untyped => MetricType::Unknown,
            ProtoType::Histogram => MetricType::Histogram,
            ProtoType::GaugeHistogram => MetricType::GaugeHistogram,
        }
    }
}

/// A `MetricFamily`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricFamily {
    /// Family name (the metric name of its series, before suffixes).
    pub name: String,
    /// Help text.
    pub help: String,
    /// Type.
    pub kind: ProtoType,
    /// The metrics.
    pub metric: Vec<Metric>,
    /// Unit, possibly empty.
    pub unit: String,
}

// ---------------------------------------------------------------------
// Wire reading.

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// A bounds-checked cursor over one message; `base` is the offset of its
/// first byte in the whole body, for error positions.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, message: impl Into<String>) -> ProtoError {
        ProtoError {
            offset: self.base + self.pos,
            message: message.into(),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let Some(&b) = self.buf.get(self.pos) else {
                self.pos = start;
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                self.pos = start;
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.pos = start;
        Err(self.err("varint overflows 64 bits"))
    }

    fn fixed64(&mut self) -> Result<u64, ProtoError> {
        let Some(b) = self.buf.get(self.pos..self.pos.saturating_add(8)) else {
            return Err(self.err("truncated 64-bit field"));
        };
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        self.pos += 8;
        Ok(u64::from_le_bytes(a))
    }

    fn fixed32(&mut self) -> Result<u32, ProtoError> {
        let Some(b) = self.buf.get(self.pos..self.pos.saturating_add(4)) else {
            return Err(self.err("truncated 32-bit field"));
        };
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        self.pos += 4;
        Ok(u32::from_le_bytes(a))
    }

    /// A length-delimited payload as a sub-reader.
    fn sub(&mut self) -> Result<Reader<'a>, ProtoError> {
        let at = self.pos;
        let n = self.varint()?;
        let start = self.pos;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            self.pos = at;
            return Err(self.err(format!("length {n} runs past the end of the message")));
        };
        self.pos = end;
        Ok(Reader {
            buf: self.buf.get(start..end).unwrap_or_default(),
            pos: 0,
            base: self.base + start,
        })
    }

    /// The next field's number and wire type.
    fn key(&mut self) -> Result<(u64, u8), ProtoError> {
        let at = self.pos;
        let k = self.varint()?;
        let field = k >> 3;
        let wire = (k & 7) as u8;
        if field == 0 {
            self.pos = at;
            return Err(self.err("field number 0"));
        }
        if !matches!(wire, VARINT | I64 | LEN | I32) {
            self.pos = at;
            return Err(self.err(format!("unsupported wire type {wire}")));
        }
        Ok((field, wire))
    }

    fn skip(&mut self, wire: u8) -> Result<(), ProtoError> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.fixed64().map(drop),
            I32 => self.fixed32().map(drop),
            _ => self.sub().map(drop),
        }
    }

    /// Checks the wire type of a known field.
    fn expect(&self, wire: u8, want: u8, field_at: usize) -> Result<(), ProtoError> {
        if wire == want {
            Ok(())
        } else {
            Err(ProtoError {
                offset: self.base + field_at,
                message: format!("wire type {wire} where {want} was expected"),
            })
        }
    }

    fn double(&mut self, wire: u8, at: usize) -> Result<f64, ProtoError> {
        self.expect(wire, I64, at)?;
        Ok(f64::from_bits(self.fixed64()?))
    }

    fn uint(&mut self, wire: u8, at: usize) -> Result<u64, ProtoError> {
        self.expect(wire, VARINT, at)?;
        self.varint()
    }

    fn string(&mut self, wire: u8, at: usize) -> Result<String, ProtoError> {
        self.expect(wire, LEN, at)?;
        let r = self.sub()?;
        match std::str::from_utf8(r.buf) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(r.err("string is not valid UTF-8")),
        }
    }

    /// A repeated scalar: packed (one length-delimited run) or one element.
    fn repeated<T>(
        &mut self,
        wire: u8,
        elem_wire: u8,
        at: usize,
        out: &mut Vec<T>,
        mut one: impl FnMut(&mut Reader<'a>) -> Result<T, ProtoError>,
    ) -> Result<(), ProtoError> {
        if wire == LEN {
            let mut r = self.sub()?;
            while !r.at_end() {
                out.push(one(&mut r)?);
            }
            Ok(())
        } else {
            self.expect(wire, elem_wire, at)?;
            out.push(one(self)?);
            Ok(())
        }
    }
}

fn zigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn zigzag32(v: u64) -> i32 {
    // A sint32 is a 32-bit zigzag value; wider varints are truncated as
    // protobuf decoders do.
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn read_f64(r: &mut Reader<'_>) -> Result<f64, ProtoError> {
    Ok(f64::from_bits(r.fixed64()?))
}

fn decode_label(mut r: Reader<'_>) -> Result<LabelPair, ProtoError> {
    let mut l = LabelPair::default();
    while !r.at_end() {
        let at = r.pos;
        match r.key()? {
            (1, w) => l.name = r.string(w, at)?,
            (2, w) => l.value = r.string(w, at)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(l)
}

/// `Gauge`, `Counter` and `Untyped`: the value is field 1.
fn decode_value(mut r: Reader<'_>) -> Result<f64, ProtoError> {
    let mut v = 0.0;
    while !r.at_end() {
        let at = r.pos;
        match r.key()? {
            (1, w) => v = r.double(w, at)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(v)
}

fn decode_summary(mut r: Reader<'_>) -> Result<Summary, ProtoError> {
    let mut s = Summary::default();
    while !r.at_end() {
        let at = r.pos;
        match r.key()? {
            (1, w) => s.sample_count = r.uint(w, at)?,
            (2, w) => s.sample_sum = r.double(w, at)?,
            (3, w) => {
                r.expect(w, LEN, at)?;
                let mut q = r.sub()?;
                let mut out = Quantile::default();
                while !q.at_end() {
                    let at = q.pos;
                    match q.key()? {
                        (1, w) => out.quantile = q.double(w, at)?,
                        (2, w) => out.value = q.double(w, at)?,
                        (_, w) => q.skip(w)?,
                    }
                }
                s.quantile.push(out);
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(s)
}

fn decode_bucket(mut r: Reader<'_>) -> Result<Bucket, ProtoError> {
    let mut b = Bucket::default();
    while !r.at_end() {
        let at = r.pos;
        match r.key()? {
            (1, w) => b.cumulative_count = r.uint(w, at)?,
            (2, w) => b.upper_bound = r.double(w, at)?,
            (4, w) => b.cumulative_count_float = r.double(w, at)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(b)
}

fn decode_span(mut r: Reader<'_>) -> Result<Span, ProtoError> {
    let mut s = Span::default();
    while !r.at_end() {
        let at = r.pos;
        match r.key()? {
            (1, w) => s.offset = zigzag32(r.uint(w, at)?),
            (2, w) => s.length = r.uint(w, at)? as u32,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(s)
}

fn decode_histogram(mut r: Reader<'_>) -> Result<Histogram, ProtoError> {
    let mut h = Histogram::default();
    while !r.at_end() {
        let at = r.pos;
        let (field, w) = r.key()?;
        match field {
            1 => h.sample_count = r.uint(w, at)?,
            2 => h.sample_sum = r.double(w, at)?,
            3 => {
                r.expect(w, LEN, at)?;
                let b = decode_bucket(r.sub()?)?;
                h.bucket.push(b);
            }
            4 => h.sample_count_float = r.double(w, at)?,
            5 => h.schema = zigzag32(r.uint(w, at)?),
            6 => h.zero_threshold = r.double(w, at)?,
            7 => h.zero_count = r.uint(w, at)?,
            8 => h.zero_count_float = r.double(w, at)?,
            9 | 12 => {
                r.expect(w, LEN, at)?;
                let s = decode_span(r.sub()?)?;
                if field == 9 {
                    h.negative_span.push(s);
                } else {
                    h.positive_span.push(s);
                }
            }
            10 => r.repeated(w, VARINT, at, &mut h.negative_delta, |r| {
                r.varint().map(zigzag64)
            })?,
            13 => r.repeated(w, VARINT, at, &mut h.positive_delta, |r| {
                r.varint().map(zigzag64)
            })?,
            11 => r.repeated(w, I64, at, &mut h.negative_count, read_f64)?,
            14 => r.repeated(w, I64, at, &mut h.positive_count, read_f64)?,
            _ => r.skip(w)?,
        }
    }
    Ok(h)
}

fn decode_metric(mut r: Reader<'_>) -> Result<Metric, ProtoError> {
    let mut m = Metric::default();
    while !r.at_end() {
        let at = r.pos;
        let (field, w) = r.key()?;
        if field == 6 {
            m.timestamp_ms = r.uint(w, at)? as i64;
            continue;
        }
        if !matches!(field, 1..=5 | 7) {
            r.skip(w)?;
            continue;
        }
        r.expect(w, LEN, at)?;
        let sub = r.sub()?;
        match field {
            1 => m.label.push(decode_label(sub)?),
            2 => m.gauge = Some(decode_value(sub)?),
            3 => m.counter = Some(decode_value(sub)?),
            4 => m.summary = Some(decode_summary(sub)?),
            5 => m.untyped = Some(decode_value(sub)?),
            _ => m.histogram = Some(decode_histogram(sub)?),
        }
    }
    Ok(m)
}

fn decode_family(mut r: Reader<'_>) -> Result<MetricFamily, ProtoError> {
    let mut f = MetricFamily::default();
    while !r.at_end() {
        let at = r.pos;
        match r.key()? {
            (1, w) => f.name = r.string(w, at)?,
            (2, w) => f.help = r.string(w, at)?,
            (3, w) => {
                let v = r.uint(w, at)?;
                f.kind = ProtoType::from_wire(v).ok_or_else(|| ProtoError {
                    offset: r.base + at,
                    message: format!("unknown metric type {v}"),
                })?;
            }
            (4, w) => {
                r.expect(w, LEN, at)?;
                let m = decode_metric(r.sub()?)?;
                f.metric.push(m);
            }
            (5, w) => f.unit = r.string(w, at)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(f)
}

// ---------------------------------------------------------------------
// Entries.

/// Parser switches, from the scrape configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtoOptions {
    /// Decode native histograms (`scrape_native_histograms`). Off, every
    /// histogram is read as its classic buckets.
    pub native_histograms: bool,
    /// Also give the classic buckets of native histograms
    /// (`always_scrape_classic_histograms`).
    pub keep_classic: bool,
}

impl Default for ProtoOptions {
    fn default() -> Self {
        ProtoOptions {
            native_histograms: true,
            keep_classic: false,
        }
    }
}

/// One entry of a protobuf page. Series carry their full label set
/// (`__name__` included, sorted; labels with empty values dropped).
#[derive(Debug, Clone, PartialEq)]
pub enum ProtoEntry {
    /// The family's help text (given for every family, possibly empty).
    Help {
        /// Family name.
        metric: String,
        /// Help text.
        text: String,
    },
    /// The family's unit, when it has one.
    Unit {
        /// Family name.
        metric: String,
        /// Unit.
        unit: String,
    },
    /// The family's type.
    Type {
        /// Family name.
        metric: String,
        /// Its type.
        kind: MetricType,
    },
    /// A float sample.
    Sample {
        /// Series labels.
        labels: Labels,
        /// Value.
        value: f64,
        /// Milliseconds, if the metric has a timestamp.
        timestamp: Option<i64>,
    },
    /// A native histogram sample.
    Histogram {
        /// Series labels.
        labels: Labels,
        /// The histogram (integer or float), compacted.
        value: HistogramValue,
        /// Milliseconds, if the metric has a timestamp.
        timestamp: Option<i64>,
    },
}

/// A pull parser over a delimited protobuf body: call
/// [`ProtoParser::next_entry`] until `None`. After an error it is finished.
#[derive(Debug)]
pub struct ProtoParser<'a> {
    input: &'a [u8],
    pos: usize,
    opts: ProtoOptions,
    pending: VecDeque<ProtoEntry>,
    done: bool,
}

impl<'a> ProtoParser<'a> {
    /// A parser over `input` with the given options.
    pub fn new(input: &'a [u8], opts: ProtoOptions) -> Self {
        ProtoParser {
            input,
            pos: 0,
            opts,
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// The next decoded family of the body, or `None` at its end.
    pub fn next_family(&mut self) -> Option<Result<MetricFamily, ProtoError>> {
        if self.done || self.pos >= self.input.len() {
            self.done = true;
            return None;
        }
        let mut r = Reader {
            buf: self.input,
            pos: self.pos,
            base: 0,
        };
        let res = r.varint().and_then(|n| {
            if n > MAX_MESSAGE {
                return Err(ProtoError {
                    offset: self.pos,
                    message: format!("message length {n} is too large"),
                });
            }
            r.pos = self.pos;
            r.sub()
        });
        let res = res.and_then(|sub| {
            self.pos = r.pos;
            decode_family(sub)
        });
        if res.is_err() {
            self.done = true;
        }
        Some(res)
    }

    /// The next entry, or `None` at the end (or after an error).
    pub fn next_entry(&mut self) -> Option<Result<ProtoEntry, ProtoError>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            let start = self.pos;
            let fam = match self.next_family()? {
                Ok(f) => f,
                Err(e) => return Some(Err(e)),
            };
            if let Err(message) = expand(&fam, self.opts, &mut self.pending) {
                self.done = true;
                self.pending.clear();
                return Some(Err(ProtoError {
                    offset: start,
                    message,
                }));
            }
        }
    }
}

impl Iterator for ProtoParser<'_> {
    type Item = Result<ProtoEntry, ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry()
    }
}

/// Formats a float as Prometheus's `FormatOpenMetricsFloat` (the `le` and
/// `quantile` label values): Go's shortest `%g` (exponent form below 1e-4
/// and from 1e6), with `.0` added to integral values.
pub fn format_om_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0.0".into();
    }
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.unsigned_abs());
    }
    let mut s = format!("{v}");
    if !s.contains('.') {
        s.push_str(".0");
    }
    s
}

/// The label set of one series of `fam`'s metric `m`.
fn series_labels(name: &str, m: &Metric, extra: Option<(&str, String)>) -> Result<Labels, String> {
    let mut b = LabelsBuilder::new();
    b.set(METRIC_NAME, name);
    let mut seen: Vec<&str> = Vec::with_capacity(m.label.len());
    for l in &m.label {
        if l.name == METRIC_NAME || seen.contains(&l.name.as_str()) {
            return Err(format!(
                "label name {:?} is not unique in metric {name:?}",
                l.name
            ));
        }
        if l.name.is_empty() {
            return Err(format!("empty label name in metric {name:?}"));
        }
        seen.push(&l.name);
        b.set(&l.name, &l.value);
    }
    if let Some((n, v)) = extra {
        b.set(n, &v);
    }
    Ok(b.build())
}

fn spans_match(side: &str, spans: &[Span], n: usize) -> Result<(), String> {
    let total: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    if total != n as u64 {
        return Err(format!(
            "{side} side: spans require {total} buckets, have {n}"
        ));
    }
    Ok(())
}

/// The native histogram of a message (which [`Histogram::is_native`]).
pub fn native_histogram(h: &Histogram, gauge: bool) -> Result<HistogramValue, String> {
    let hint = if gauge {
        CounterResetHint::Gauge
    } else {
        CounterResetHint::Unknown
    };
    if h.is_float() {
        spans_match("positive", &h.positive_span, h.positive_count.len())?;
        spans_match("negative", &h.negative_span, h.negative_count.len())?;
        let mut fh = FloatHistogram {
            counter_reset_hint: hint,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count_float,
            count: h.sample_count_float,
            sum: h.sample_sum,
            positive_spans: h.positive_span.clone(),
            negative_spans: h.negative_span.clone(),
            positive_buckets: h.positive_count.clone(),
            negative_buckets: h.negative_count.clone(),
            custom_values: Vec::new(),
        };
        fh.compact(0);
        Ok(HistogramValue::Float(fh))
    } else {
        spans_match("positive", &h.positive_span, h.positive_delta.len())?;
        spans_match("negative", &h.negative_span, h.negative_delta.len())?;
        let mut ih = IntHistogram {
            counter_reset_hint: hint,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count,
            count: h.sample_count,
            sum: h.sample_sum,
            positive_spans: h.positive_span.clone(),
            negative_spans: h.negative_span.clone(),
            positive_buckets: h.positive_delta.clone(),
            negative_buckets: h.negative_delta.clone(),
            custom_values: Vec::new(),
        };
        ih.compact(0);
        Ok(HistogramValue::Int(ih))
    }
}

/// Turns one family into its entries, in Prometheus's order.
fn expand(
    fam: &MetricFamily,
    opts: ProtoOptions,
    out: &mut VecDeque<ProtoEntry>,
) -> Result<(), String> {
    if fam.metric.is_empty() {
        // Prometheus skips families without metrics entirely.
        return Ok(());
    }
    let name = fam.name.as_str();
    if name.is_empty() {
        return Err("invalid metric name: empty".into());
    }
    out.push_back(ProtoEntry::Help {
        metric: name.to_string(),
        text: fam.help.clone(),
    });
    if !fam.unit.is_empty() {
        out.push_back(ProtoEntry::Unit {
            metric: name.to_string(),
            unit: fam.unit.clone(),
        });
    }
    out.push_back(ProtoEntry::Type {
        metric: name.to_string(),
        kind: fam.kind.metric_type(),
    });
    let suffixed = |s: &str| format!("{name}{s}");
    for m in &fam.metric {
        let timestamp = (m.timestamp_ms != 0).then_some(m.timestamp_ms);
        let sample = |labels: Labels, value: f64| ProtoEntry::Sample {
            labels,
            value,
            timestamp,
        };
        match fam.kind {
            ProtoType::Counter | ProtoType::Gauge | ProtoType::Untyped => {
                let v = match fam.kind {
                    ProtoType::Counter => m.counter,
                    ProtoType::Gauge => m.gauge,
                    _ => m.untyped,
                }
                .unwrap_or(0.0);
                out.push_back(sample(series_labels(name, m, None)?, v));
            }
            ProtoType::Summary => {
                let s = m.summary.clone().unwrap_or_default();
                out.push_back(sample(
                    series_labels(&suffixed("_count"), m, None)?,
                    s.sample_count as f64,
                ));
                out.push_back(sample(
                    series_labels(&suffixed("_sum"), m, None)?,
                    s.sample_sum,
                ));
                for q in &s.quantile {
                    let l =
                        series_labels(name, m, Some(("quantile", format_om_float(q.quantile))))?;
                    out.push_back(sample(l, q.value));
                }
            }
            ProtoType::Histogram | ProtoType::GaugeHistogram => {
                let h = m.histogram.clone().unwrap_or_default();
                let native = opts.native_histograms && h.is_native();
                if native {
                    let value = native_histogram(&h, fam.kind == ProtoType::GaugeHistogram)
                        .map_err(|e| format!("histogram {name:?}: {e}"))?;
                    out.push_back(ProtoEntry::Histogram {
                        labels: series_labels(name, m, None)?,
                        value,
                        timestamp,
                    });
                    if !opts.keep_classic || h.bucket.is_empty() {
                        continue;
                    }
                }
                let count = h.count_f64();
                out.push_back(sample(series_labels(&suffixed("_count"), m, None)?, count));
                out.push_back(sample(
                    series_labels(&suffixed("_sum"), m, None)?,
                    h.sample_sum,
                ));
                let bucket_name = suffixed("_bucket");
                let mut saw_inf = false;
                for b in &h.bucket {
                    let v = if b.cumulative_count_float != 0.0 {
                        b.cumulative_count_float
                    } else {
                        b.cumulative_count as f64
                    };
                    let l = series_labels(
                        &bucket_name,
                        m,
                        Some(("le", format_om_float(b.upper_bound))),
                    )?;
                    out.push_back(sample(l, v));
                    if b.upper_bound == f64::INFINITY {
                        saw_inf = true;
                        break;
                    }
                }
                if !saw_inf {
                    let l = series_labels(&bucket_name, m, Some(("le", "+Inf".to_string())))?;
                    out.push_back(sample(l, count));
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Encoding.

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u8) {
    put_varint(out, (field << 3) | u64::from(wire));
}

fn put_uint(out: &mut Vec<u8>, field: u64, v: u64) {
    if v != 0 {
        put_key(out, field, VARINT);
        put_varint(out, v);
    }
}

fn put_double(out: &mut Vec<u8>, field: u64, v: f64) {
    if v.to_bits() != 0 {
        put_key(out, field, I64);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, field: u64, s: &str) {
    if !s.is_empty() {
        put_bytes(out, field, s.as_bytes());
    }
}

fn zz64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn zz32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

fn encode_value(out: &mut Vec<u8>, field: u64, v: Option<f64>) {
    if let Some(v) = v {
        let mut b = Vec::new();
        put_double(&mut b, 1, v);
        put_bytes(out, field, &b);
    }
}

fn encode_histogram(h: &Histogram) -> Vec<u8> {
    let mut o = Vec::new();
    put_uint(&mut o, 1, h.sample_count);
    put_double(&mut o, 2, h.sample_sum);
    for b in &h.bucket {
        let mut e = Vec::new();
        put_uint(&mut e, 1, b.cumulative_count);
        put_double(&mut e, 2, b.upper_bound);
        put_double(&mut e, 4, b.cumulative_count_float);
        put_bytes(&mut o, 3, &e);
    }
    put_double(&mut o, 4, h.sample_count_float);
    put_uint(&mut o, 5, zz32(h.schema));
    put_double(&mut o, 6, h.zero_threshold);
    put_uint(&mut o, 7, h.zero_count);
    put_double(&mut o, 8, h.zero_count_float);
    let spans = |o: &mut Vec<u8>, field: u64, spans: &[Span]| {
        for s in spans {
            let mut e = Vec::new();
            put_uint(&mut e, 1, zz32(s.offset));
            put_uint(&mut e, 2, u64::from(s.length));
            put_bytes(o, field, &e);
        }
    };
    let deltas = |o: &mut Vec<u8>, field: u64, d: &[i64]| {
        if !d.is_empty() {
            let mut e = Vec::new();
            for v in d {
                put_varint(&mut e, zz64(*v));
            }
            put_bytes(o, field, &e);
        }
    };
    let counts = |o: &mut Vec<u8>, field: u64, c: &[f64]| {
        if !c.is_empty() {
            let mut e = Vec::new();
            for v in c {
                e.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            put_bytes(o, field, &e);
        }
    };
    spans(&mut o, 9, &h.negative_span);
    deltas(&mut o, 10, &h.negative_delta);
    counts(&mut o, 11, &h.negative_count);
    spans(&mut o, 12, &h.positive_span);
    deltas(&mut o, 13, &h.positive_delta);
    counts(&mut o, 14, &h.positive_count);
    o
}

fn encode_metric(m: &Metric) -> Vec<u8> {
    let mut o = Vec::new();
    for l in &m.label {
        let mut e = Vec::new();
        put_str(&mut e, 1, &l.name);
        put_str(&mut e, 2, &l.value);
        put_bytes(&mut o, 1, &e);
    }
    encode_value(&mut o, 2, m.gauge);
    encode_value(&mut o, 3, m.counter);
    if let Some(s) = &m.summary {
        let mut e = Vec::new();
        put_uint(&mut e, 1, s.sample_count);
        put_double(&mut e, 2, s.sample_sum);
        for q in &s.quantile {
            let mut qe = Vec::new();
            put_double(&mut qe, 1, q.quantile);
            put_double(&mut qe, 2, q.value);
            put_bytes(&mut e, 3, &qe);
        }
        put_bytes(&mut o, 4, &e);
    }
    encode_value(&mut o, 5, m.untyped);
    put_uint(&mut o, 6, m.timestamp_ms as u64);
    if let Some(h) = &m.histogram {
        put_bytes(&mut o, 7, &encode_histogram(h));
    }
    o
}

/// Appends `fam` to `out` as one length-delimited `MetricFamily` (the
/// body of a protobuf scrape is a sequence of these). Repeated scalars are
/// written packed.
pub fn encode_delimited(fam: &MetricFamily, out: &mut Vec<u8>) {
    let mut o = Vec::new();
    put_str(&mut o, 1, &fam.name);
    put_str(&mut o, 2, &fam.help);
    put_uint(&mut o, 3, fam.kind.to_wire());
    for m in &fam.metric {
        put_bytes(&mut o, 4, &encode_metric(m));
    }
    put_str(&mut o, 5, &fam.unit);
    put_varint(out, o.len() as u64);
    out.extend_from_slice(&o);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
