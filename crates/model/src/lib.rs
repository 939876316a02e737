//! The shared vocabulary of pharos: labels, matchers, samples, time and
//! durations, relabeling, and native histograms with their arithmetic.
//!
//! Everything above this crate speaks these types, so they are built for the
//! hot paths: a [`Labels`] is a single reference-counted buffer (cheap to
//! clone, hash and compare), timestamps are plain `i64` milliseconds, and
//! matchers carry their compiled, anchored regex. The crate has no I/O and
//! no async; it depends only on `regex`, `thiserror` and a hash function.

pub mod duration;
pub mod histogram;
pub mod labels;
pub mod matcher;
pub mod relabel;
pub mod sample;

pub use duration::Duration;
pub use histogram::{
    AddInfo, Bucket, CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram,
    HistogramError, HistogramValue, Span, bucket_upper_bound, format_test_histogram,
    parse_test_histogram, parse_test_histogram_with_hint,
};
pub use labels::{Label, Labels, LabelsBuilder, METRIC_NAME};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use sample::{Sample, Timestamp, format_float, is_stale_nan, stale_nan};
