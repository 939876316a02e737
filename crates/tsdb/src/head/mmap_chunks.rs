//! Moving closed chunks from the heap to memory-mapped head chunk files.

use std::sync::Arc;

use super::series::MemSeries;
use super::{Head, HeadInner};
use crate::head_chunks::{ChunkBytes, ChunkDiskMapper, ChunkToWrite, LoadedChunk};

/// Series with freshly closed chunks gathered before one batch write.
const MMAP_BATCH: usize = 128;

impl HeadInner {
    /// Notes series that closed chunks; writes them out once enough are
    /// queued.
    pub(crate) fn queue_mmap(&self, series: Vec<Arc<MemSeries>>) {
        let Some(m) = self.mapper.get() else {
            return;
        };
        let batch = {
            let mut q = self.mmap_queue.lock();
            q.extend(series);
            if q.len() < MMAP_BATCH {
                return;
            }
            std::mem::take(&mut *q)
        };
        self.write_chunks(m, batch);
    }

    /// Writes the heap-held closed chunks of `batch` to the mapper and
    /// swaps each for its mapped copy.
    fn write_chunks(&self, m: &ChunkDiskMapper, mut batch: Vec<Arc<MemSeries>>) {
        batch.sort_by_key(|s| s.sref);
        batch.dedup_by_key(|s| s.sref);
        let mut items: Vec<(usize, i64, i64, ChunkBytes)> = Vec::new();
        for (i, s) in batch.iter().enumerate() {
            let st = s.state.lock();
            for c in &st.closed {
                if c.data.is_heap() {
                    items.push((i, c.min_t, c.max_t, c.data.clone()));
                }
            }
        }
        if items.is_empty() {
            return;
        }
        let to_write: Vec<ChunkToWrite<'_>> = items
            .iter()
            .map(|(i, mint, maxt, b)| ChunkToWrite {
                series_ref: batch[*i].sref,
                mint: *mint,
                maxt: *maxt,
                encoding: b.encoding(),
                data: b.as_ref(),
            })
            .collect();
        let locs = match m.write(&to_write) {
            Ok(l) => l,
            Err(e) => {
                // The chunks stay on the heap (and in the WAL); retried with
                // the next batch of the same series.
                tracing::warn!(error = %e, chunks = items.len(), "writing head chunks failed");
                return;
            }
        };
        drop(to_write);
        for ((i, mint, _, _), loc) in items.into_iter().zip(locs) {
            let mut st = batch[i].state.lock();
            if let Some(c) = st
                .closed
                .iter_mut()
                .find(|c| c.min_t == mint && c.data.is_heap())
            {
                c.data = loc;
            }
        }
    }
}

impl Head {
    /// Gives the head a place to write and map its closed chunks.
    pub(crate) fn set_chunk_mapper(&self, m: Arc<ChunkDiskMapper>) {
        let _ = self.inner.mapper.set(m);
    }

    /// Writes closed chunks still on the heap to `chunks_head/` now (they
    /// are otherwise written in batches as series close them). Call before
    /// shutdown so a restart loads them from disk instead of rebuilding
    /// them from the WAL. A no-op for a head without a data directory.
    pub fn write_closed_chunks(&self) {
        let Some(m) = self.inner.mapper.get() else {
            return;
        };
        let batch = std::mem::take(&mut *self.inner.mmap_queue.lock());
        if !batch.is_empty() {
            self.inner.write_chunks(m, batch);
        }
    }

    /// Attaches chunks loaded from `chunks_head/` to the (just replayed)
    /// series `sref`, if it holds none yet. Returns how many. Prometheus's
    /// out-of-order chunks (encoding bit 7) are left out; a chunk of an
    /// encoding we cannot read ends the run (the WAL rebuilds what follows).
    pub(crate) fn attach_mmapped(&self, sref: u64, mut chunks: Vec<LoadedChunk>) -> u64 {
        use crate::chunkenc::{ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, ENCODING_XOR};
        chunks.retain(|c| c.bytes.encoding() & 0x80 == 0);
        if let Some(bad) = chunks.iter().position(|c| {
            !matches!(
                c.bytes.encoding(),
                ENCODING_XOR | ENCODING_HISTOGRAM | ENCODING_FLOAT_HISTOGRAM
            )
        }) {
            chunks.truncate(bad);
        }
        let Some(s) = self.inner.series.get_by_ref(sref) else {
            return 0;
        };
        let mut st = s.state.lock();
        if !st.closed.is_empty() || st.head.is_some() {
            return 0;
        }
        let n = chunks.len() as u64;
        st.closed = chunks
            .into_iter()
            .map(|c| super::series::ClosedChunk {
                min_t: c.mint,
                max_t: c.maxt,
                data: c.bytes,
            })
            .collect();
        n
    }
}
