//! The error type of histogram validation and arithmetic.
//!
//! Prometheus wraps a small set of sentinel errors with context ("positive
//! side: bucket number 3 has observation count of -1: ..."). We keep one
//! variant per sentinel, each carrying that context as a string (empty when
//! there is none), so callers can match on the kind while the message reads
//! exactly like Prometheus's.

use super::{CUSTOM_BUCKETS_SCHEMA, EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN};

/// What went wrong with a histogram. The `String` in each variant is the
/// context Prometheus prepends (may be empty); `Display` renders
/// `"<context>: <sentinel message>"` or just the sentinel message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramError {
    /// Integer histogram whose `count` is below the sum of its buckets
    /// (allowed to exceed it only when `sum` is NaN).
    #[error("{}", msg(.0, "histogram's observation count should be at least the number of observations found in the buckets"))]
    CountNotBigEnough(String),
    /// Integer histogram whose `count` differs from the sum of its buckets.
    #[error("{}", msg(.0, "histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"))]
    CountMismatch(String),
    /// Negative total count.
    #[error("{}", msg(.0, "histogram's observation count is negative"))]
    NegativeCount(String),
    /// A bucket (or the zero bucket) with a negative count.
    #[error("{}", msg(.0, "histogram has a bucket whose observation count is negative"))]
    NegativeBucketCount(String),
    /// A span after the first with a negative offset.
    #[error("{}", msg(.0, "histogram has a span whose offset is negative"))]
    SpanNegativeOffset(String),
    /// The spans describe a different number of buckets than stored.
    #[error("{}", msg(.0, "histogram spans specify different number of buckets than provided"))]
    SpansBucketsMismatch(String),
    /// Fewer custom bounds than the spans need.
    #[error("{}", msg(.0, "histogram custom bounds are too few"))]
    CustomBucketsMismatch(String),
    /// Custom bounds not strictly increasing.
    #[error("{}", msg(.0, "histogram custom bounds must be in strictly increasing order"))]
    CustomBucketsInvalid(String),
    /// A custom bound of +Inf (the +Inf bucket is implicit).
    #[error("{}", msg(.0, "histogram custom bounds must be finite"))]
    CustomBucketsInfinite(String),
    /// A NaN custom bound.
    #[error("{}", msg(.0, "histogram custom bounds must not be NaN"))]
    CustomBucketsNaN(String),
    /// An operation mixing an exponential and a custom-buckets histogram.
    #[error(
        "cannot apply this operation on histograms with a mix of exponential and custom bucket schemas"
    )]
    IncompatibleSchema,
    /// Custom-buckets histogram with a zero count.
    #[error("custom buckets: must have zero count of 0")]
    CustomBucketsZeroCount,
    /// Custom-buckets histogram with a zero threshold.
    #[error("custom buckets: must have zero threshold of 0")]
    CustomBucketsZeroThresh,
    /// Custom-buckets histogram with negative spans.
    #[error("custom buckets: must not have negative spans")]
    CustomBucketsNegSpans,
    /// Custom-buckets histogram with negative buckets.
    #[error("custom buckets: must not have negative buckets")]
    CustomBucketsNegBuckets,
    /// Exponential histogram that carries custom bounds.
    #[error("histogram with exponential schema must not have custom bounds")]
    ExpSchemaCustomBounds,
    /// A schema outside −4..=8 and not −53.
    #[error(
        "histogram has an invalid schema, which must be between {EXPONENTIAL_SCHEMA_MIN} and {EXPONENTIAL_SCHEMA_MAX} for exponential buckets, or {CUSTOM_BUCKETS_SCHEMA} for custom buckets, got schema {0}"
    )]
    InvalidSchema(i32),
    /// A resolution change that cannot be done (custom buckets involved, or
    /// the target schema is not lower). Prometheus treats these as
    /// programming errors and returns plain errors with these messages.
    #[error("{0}")]
    InvalidResolutionChange(String),
    /// The test notation (`{{schema:1 buckets:[1 2]}}`) could not be parsed.
    /// `pos` is the byte offset in the parsed string.
    #[error("histogram notation: at position {pos}: {msg}")]
    Parse {
        /// Byte offset of the problem within the input.
        pos: usize,
        /// What was wrong.
        msg: String,
    },
}

fn msg(context: &str, sentinel: &str) -> String {
    if context.is_empty() {
        sentinel.to_string()
    } else {
        format!("{context}: {sentinel}")
    }
}

impl HistogramError {
    /// Prepends `prefix` to the context, as Prometheus does with
    /// `fmt.Errorf("positive side: %w", err)`. Variants without a context
    /// string are returned unchanged.
    pub fn with_prefix(self, prefix: &str) -> Self {
        use HistogramError as E;
        let pre = |c: String| {
            if c.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}: {c}")
            }
        };
        match self {
            E::CountNotBigEnough(c) => E::CountNotBigEnough(pre(c)),
            E::CountMismatch(c) => E::CountMismatch(pre(c)),
            E::NegativeCount(c) => E::NegativeCount(pre(c)),
            E::NegativeBucketCount(c) => E::NegativeBucketCount(pre(c)),
            E::SpanNegativeOffset(c) => E::SpanNegativeOffset(pre(c)),
            E::SpansBucketsMismatch(c) => E::SpansBucketsMismatch(pre(c)),
            E::CustomBucketsMismatch(c) => E::CustomBucketsMismatch(pre(c)),
            E::CustomBucketsInvalid(c) => E::CustomBucketsInvalid(pre(c)),
            E::CustomBucketsInfinite(c) => E::CustomBucketsInfinite(pre(c)),
            E::CustomBucketsNaN(c) => E::CustomBucketsNaN(pre(c)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_prometheus() {
        let e = HistogramError::NegativeBucketCount(
            "bucket number 2 has observation count of -1".into(),
        )
        .with_prefix("positive side");
        assert_eq!(
            e.to_string(),
            "positive side: bucket number 2 has observation count of -1: histogram has a bucket whose observation count is negative"
        );
        assert_eq!(
            HistogramError::InvalidSchema(9).to_string(),
            "histogram has an invalid schema, which must be between -4 and 8 for exponential buckets, or -53 for custom buckets, got schema 9"
        );
        assert_eq!(
            HistogramError::CustomBucketsNaN(String::new()).to_string(),
            "histogram custom bounds must not be NaN"
        );
    }
}
