//! Chunk encodings.
//!
//! Prometheus's float encoding [`XorChunk`] (the Gorilla scheme:
//! delta-of-delta timestamps, XOR'd values, with Prometheus's millisecond
//! buckets) and its two native-histogram encodings, [`HistogramChunk`]
//! (integer counts) and [`FloatHistogramChunk`] (float counts). The bytes
//! are identical to what Prometheus writes, so chunks can be exchanged with
//! its blocks; the formats are described in
//! `crates/tsdb/docs/format/chunks.md`.

mod bstream;
mod float_histogram;
mod histogram;
mod histogram_meta;
mod varbit;
mod xor;

pub use float_histogram::{FloatHistogramChunk, FloatHistogramIterator};
pub use histogram::{HistogramAppendOutcome, HistogramChunk, HistogramIterator};
pub use histogram_meta::CounterResetHeader;
pub use xor::{XorAppender, XorChunk, XorIterator};

/// The encoding byte Prometheus stores in front of an XOR chunk in its
/// chunk files.
pub const ENCODING_XOR: u8 = 1;
/// The encoding byte of an integer histogram chunk ([`HistogramChunk`]).
pub const ENCODING_HISTOGRAM: u8 = 2;
/// The encoding byte of a float histogram chunk ([`FloatHistogramChunk`]).
pub const ENCODING_FLOAT_HISTOGRAM: u8 = 3;

/// Prometheus's size target for histogram chunks in the head, in bytes
/// (`TargetBytesPerHistogramChunk`); see the cutting policy in
/// `crates/tsdb/docs/format/chunks.md`.
pub const TARGET_HISTOGRAM_CHUNK_BYTES: usize = 1024;
/// Prometheus's minimum sample count before a histogram chunk is cut for
/// size (`MinSamplesPerHistogramChunk`).
pub const MIN_SAMPLES_PER_HISTOGRAM_CHUNK: u16 = 10;
