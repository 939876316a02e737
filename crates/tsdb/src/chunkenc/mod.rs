//! Chunk encodings.
//!
//! Only Prometheus's float encoding exists so far: [`XorChunk`], the
//! Gorilla scheme (delta-of-delta timestamps, XOR'd values) with
//! Prometheus's millisecond buckets. The bytes are identical to what
//! Prometheus writes, so blocks can later be exchanged with it; the format
//! is described in `crates/tsdb/docs/format/chunks.md`.

mod bstream;
mod xor;

pub use xor::{XorAppender, XorChunk, XorIterator};

/// The encoding byte Prometheus stores in front of an XOR chunk in its
/// chunk files.
pub const ENCODING_XOR: u8 = 1;
