//! Native histograms: the sample values Prometheus calls `Histogram`
//! (integer counts, what a scrape produces) and `FloatHistogram` (float
//! counts, what PromQL computes with and what rules record).
//!
//! A native histogram has sparse buckets on an exponential grid: with
//! schema `s` (−4..=8) bucket `i` of the positive side covers
//! `(base^(i-1), base^i]` where `base = 2^(2^-s)`; the negative side mirrors
//! it, and a zero bucket holds observations with `|x| <= zero_threshold`.
//! Schema −53 ([`CUSTOM_BUCKETS_SCHEMA`]) is the exception: the positive
//! buckets are the classic explicit boundaries listed in `custom_values`
//! (bucket `i` covers `(custom_values[i-1], custom_values[i]]`, the last one
//! reaching +Inf), with no zero bucket and no negative side.
//!
//! Only populated buckets are stored: `spans` say which bucket indices are
//! present (each span skips `offset` indices after the previous one, then
//! covers `length` consecutive ones; the first span's offset is the first
//! index itself), and the bucket vectors hold the counts of exactly those
//! buckets in order. In [`Histogram`] the counts are delta-encoded (each
//! value is the difference to the previous bucket's count, the first is
//! absolute), as in Prometheus's protobuf and chunks; in [`FloatHistogram`]
//! they are absolute.
//!
//! The layout mirrors Prometheus's `model/histogram` field by field so that
//! the WAL, chunk and API encodings map one to one, and the arithmetic
//! (in the submodules) follows Prometheus's `histogram.go`,
//! `float_histogram.go` and `generic.go` (main, 3.x) in behaviour: PromQL
//! results must come out bit-identical, bucket for bucket, so the same
//! floating-point operations happen in the same order (bucket bounds even
//! come from Prometheus's table of mantissas). One deliberate difference:
//! where Prometheus edits spans in place and may leave adjacent spans
//! (offset 0) behind, we always produce canonical spans; counts and the
//! set of stored buckets are the same, and after `compact` (which PromQL
//! always applies) so are the spans.
//!
//! Submodules: `float` (add/sub/mul/div, Kahan summation, reset
//! detection, resolution changes, validation), `int` (the integer
//! histogram), `layout` (span/bucket manipulation shared by both),
//! `buckets` (bucket bounds and iterators), `math` (bucket boundary
//! arithmetic), `trim` (PromQL's `</` and `>/`), `notation` (the
//! `{{schema:1 buckets:[1 2]}}` test notation).

mod buckets;
mod error;
mod float;
mod fractions;
mod int;
mod layout;
mod math;
mod notation;
mod trim;

pub use buckets::{Bucket, BucketIter};
pub use error::HistogramError;
pub use float::AddInfo;
pub use math::bucket_upper_bound;
pub use notation::{format_test_histogram, parse_test_histogram, parse_test_histogram_with_hint};

/// Lowest valid exponential schema.
pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
/// Highest valid exponential schema.
pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;
/// Lowest schema Prometheus accepts on ingestion (reduced to −4).
pub const EXPONENTIAL_SCHEMA_MIN_RESERVED: i32 = -9;
/// Highest schema Prometheus accepts on ingestion (reduced to 8).
pub const EXPONENTIAL_SCHEMA_MAX_RESERVED: i32 = 52;

/// Whether `schema` is a valid exponential schema (−4..=8).
pub fn is_exponential_schema(schema: i32) -> bool {
    (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&schema)
}

/// Whether `schema` is valid: exponential or custom buckets.
pub fn is_valid_schema(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA || is_exponential_schema(schema)
}

/// Whether `schema` can be ingested (possibly after reducing the
/// resolution to the nearest valid schema): custom buckets or −9..=52.
pub fn is_known_schema(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
        || (EXPONENTIAL_SCHEMA_MIN_RESERVED..=EXPONENTIAL_SCHEMA_MAX_RESERVED).contains(&schema)
}

/// The schema number of histograms with custom (explicit) bucket bounds.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// One run of populated buckets: skip `offset` bucket indices after the end
/// of the previous span (or start at index `offset` for the first span),
/// then `length` consecutive buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Gap to the previous span (index of the first bucket for span 0).
    pub offset: i32,
    /// Number of consecutive buckets.
    pub length: u32,
}

/// What the producer knows about counter resets at this sample, as stored
/// in chunk headers and returned by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    /// Nothing known; the reader must compare with the previous sample.
    #[default]
    Unknown = 0,
    /// A counter reset happened right before this sample.
    CounterReset = 1,
    /// Definitely no counter reset since the previous sample.
    NotCounterReset = 2,
    /// The histogram is a gauge: counts go up and down, resets mean nothing.
    Gauge = 3,
}

/// A native histogram with integer counts (delta-encoded buckets).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Counter-reset knowledge for this sample.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution: −4..=8 exponential, or [`CUSTOM_BUCKETS_SCHEMA`].
    pub schema: i32,
    /// Width of the zero bucket (observations with `|x| <= zero_threshold`).
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// Total number of observations.
    pub count: u64,
    /// Sum of all observations (the stale marker NaN marks a stale sample).
    pub sum: f64,
    /// Populated positive buckets.
    pub positive_spans: Vec<Span>,
    /// Populated negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, delta-encoded.
    pub positive_buckets: Vec<i64>,
    /// Negative bucket counts, delta-encoded.
    pub negative_buckets: Vec<i64>,
    /// Upper bounds of the custom buckets (schema −53 only), ascending.
    pub custom_values: Vec<f64>,
}

/// A native histogram with float counts (absolute buckets): what PromQL
/// computes with, and what recording rules and `rate()` produce.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    /// Counter-reset knowledge for this sample.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution: −4..=8 exponential, or [`CUSTOM_BUCKETS_SCHEMA`].
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Total number of observations.
    pub count: f64,
    /// Sum of all observations (the stale marker NaN marks a stale sample).
    pub sum: f64,
    /// Populated positive buckets.
    pub positive_spans: Vec<Span>,
    /// Populated negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, absolute.
    pub positive_buckets: Vec<f64>,
    /// Negative bucket counts, absolute.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema −53 only), ascending.
    pub custom_values: Vec<f64>,
}

/// A histogram sample value as appended to storage: integer counts (from a
/// scrape or a WAL written by Prometheus) or float counts (from rules, test
/// scripts, or float-histogram chunks).
#[derive(Debug, Clone, PartialEq)]
pub enum HistogramValue {
    /// Integer counts.
    Int(Histogram),
    /// Float counts.
    Float(FloatHistogram),
}

impl HistogramValue {
    /// The float-count form (a clone for [`HistogramValue::Float`]).
    pub fn to_float(&self) -> FloatHistogram {
        match self {
            HistogramValue::Int(h) => h.to_float(),
            HistogramValue::Float(h) => h.clone(),
        }
    }

    /// Validates the histogram (see [`Histogram::validate`] and
    /// [`FloatHistogram::validate`]).
    pub fn validate(&self) -> Result<(), HistogramError> {
        match self {
            HistogramValue::Int(h) => h.validate(),
            HistogramValue::Float(h) => h.validate(),
        }
    }

    /// The schema of either form.
    pub fn schema(&self) -> i32 {
        match self {
            HistogramValue::Int(h) => h.schema,
            HistogramValue::Float(h) => h.schema,
        }
    }

    /// The counter-reset hint of either form.
    pub fn counter_reset_hint(&self) -> CounterResetHint {
        match self {
            HistogramValue::Int(h) => h.counter_reset_hint,
            HistogramValue::Float(h) => h.counter_reset_hint,
        }
    }

    /// The sum of observations of either form (NaN marks a stale sample).
    pub fn sum(&self) -> f64 {
        match self {
            HistogramValue::Int(h) => h.sum,
            HistogramValue::Float(h) => h.sum,
        }
    }
}

impl std::fmt::Display for Histogram {
    /// Prometheus's `Histogram.String()`: like the float form, with the
    /// counts as integers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fh = self.to_float();
        write!(f, "{{count:{}, sum:{}", self.count, math::go_g(self.sum))?;
        let int_bucket = |b: &Bucket| {
            let mut text = b.to_string();
            if let Some(colon) = text.rfind(':') {
                text.truncate(colon + 1);
                text.push_str(&(b.count as u64).to_string());
            }
            text
        };
        let negative: Vec<Bucket> = fh
            .negative_buckets_iter()
            .filter(|b| b.count != 0.0)
            .collect();
        for b in negative.iter().rev() {
            write!(f, ", {}", int_bucket(b))?;
        }
        if self.zero_count != 0 {
            write!(f, ", {}", int_bucket(&fh.zero_bucket()))?;
        }
        for b in fh.positive_buckets_iter().filter(|b| b.count != 0.0) {
            write!(f, ", {}", int_bucket(&b))?;
        }
        f.write_str("}")
    }
}

impl std::fmt::Display for FloatHistogram {
    /// Prometheus's `String()`: `{count:5, sum:11, [-1,-0.5):1,
    /// [-0.001,0.001]:2, (0.5,1]:2}` — populated buckets only, ascending,
    /// numbers in Go's `%g` format.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{count:{}, sum:{}",
            math::go_g(self.count),
            math::go_g(self.sum)
        )?;
        let negative: Vec<Bucket> = self
            .negative_buckets_iter()
            .filter(|b| b.count != 0.0)
            .collect();
        for b in negative.iter().rev() {
            write!(f, ", {b}")?;
        }
        if self.zero_count != 0.0 {
            write!(f, ", {}", self.zero_bucket())?;
        }
        for b in self.positive_buckets_iter().filter(|b| b.count != 0.0) {
            write!(f, ", {b}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests;
