//! The pharos time-series database.
//!
//! So far: Prometheus's XOR chunk encoding ([`chunkenc`]). The in-memory
//! head follows.

pub mod chunkenc;

/// Errors of the TSDB crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TsdbError {
    /// A chunk cannot take more samples.
    #[error("chunk is full ({0} samples)")]
    ChunkFull(u16),
    /// Chunk bytes do not decode.
    #[error("corrupt chunk: {0}")]
    CorruptChunk(String),
}
