//! Merging blocks into one by copying chunks.
//!
//! Compaction reads the parents' indexes side by side (each index lists its
//! series sorted by labels, so a k-way merge on labels pairs up the same
//! series across blocks) and writes each series' chunks to the new block.
//! A chunk is copied byte for byte when nothing else touches its time
//! range: it overlaps no other chunk of the series (in any parent), no
//! tombstone interval of its block cuts into it, and it lies inside the new
//! block's range. Copying skips decoding and re-encoding, which is most of
//! the cost of compaction, and keeps what a re-encode would lose, such as
//! the counter-reset header of a histogram chunk.
//!
//! Chunks that overlap (blocks overlapping in time: a backfilled block, or
//! a directory Prometheus left with overlapping blocks) are merged as one
//! group: their samples are decoded, deleted samples dropped, and samples
//! with the same timestamp deduplicated — the parent that comes first in
//! the list wins, as in the database's merged queries — then re-encoded. A
//! chunk cut by a tombstone is re-encoded without the deleted samples; a
//! chunk a tombstone covers entirely is dropped. This is what Prometheus's
//! compactor does when it populates a block.

use std::path::Path;
use std::sync::Arc;

use pharos_model::{FloatHistogram, Labels, Timestamp};

use super::{
    Block, BlockCompaction, BlockMeta, BlockStats, ChunkMeta, ChunkWriter, SeriesChunker,
    Tombstones, chunks, create_block, finish_block, io_err,
};
use crate::TsdbError;
use crate::chunk_samples::ChunkSamples;

/// What a block compaction did with the parents' chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Chunks copied as they were.
    pub copied_chunks: u64,
    /// Parent chunks decoded and re-encoded (overlapping, cut by a
    /// tombstone, or reaching outside the new block's range).
    pub reencoded_chunks: u64,
    /// Parent chunks dropped whole (deleted or outside the range).
    pub dropped_chunks: u64,
    /// Series with chunks overlapping in time (merged and deduplicated).
    pub overlapping_series: u64,
}

/// Writes one block into `parent` covering `[mint, maxt)` with every
/// series of `blocks` (merged by labels), copying chunks where it can (see
/// the module docs). On equal timestamps in overlapping blocks the sample
/// of the block earlier in `blocks` is kept. Returns `None` (and writes
/// nothing) when no samples remain.
pub fn compact_blocks(
    parent: &Path,
    blocks: &[Arc<Block>],
    mint: i64,
    maxt: i64,
    compaction: BlockCompaction,
) -> Result<Option<(BlockMeta, CompactStats)>, TsdbError> {
    compact_blocks_with(
        parent,
        blocks,
        mint,
        maxt,
        compaction,
        chunks::DEFAULT_SEGMENT_SIZE,
    )
}

pub(crate) fn compact_blocks_with(
    parent: &Path,
    blocks: &[Arc<Block>],
    mint: i64,
    maxt: i64,
    mut compaction: BlockCompaction,
    segment_size: u64,
) -> Result<Option<(BlockMeta, CompactStats)>, TsdbError> {
    let mut cstats = CompactStats::default();
    let meta = create_block(parent, |tmp, id| {
        std::fs::create_dir_all(tmp).map_err(|e| io_err(tmp, e))?;
        let mut cw = ChunkWriter::new(&tmp.join("chunks"), segment_size)?;
        let (series, stats) = merge_series(blocks, mint, maxt, &mut cw, &mut cstats)?;
        cw.close()?;
        finish_block(tmp, id, &series, stats, mint, maxt, &mut compaction)
    })?;
    Ok(meta.map(|m| (m, cstats)))
}

/// A series of the new block: labels and chunks.
type BlockSeries = (Labels, Vec<ChunkMeta>);

/// One parent's position in its sorted series.
struct Cursor<'a> {
    block: &'a Block,
    tombstones: Arc<Tombstones>,
    refs: std::vec::IntoIter<u64>,
    cur: Option<(u64, Labels, Vec<ChunkMeta>)>,
}

impl Cursor<'_> {
    fn advance(&mut self) -> Result<(), TsdbError> {
        let next = match self.refs.next() {
            Some(r) => {
                let (labels, chunks) = self.block.index().series(r)?;
                if let Some((_, prev, _)) = &self.cur
                    && *prev >= labels
                {
                    return Err(TsdbError::CorruptBlock(format!(
                        "block {}: series out of order in the index at {labels:?}",
                        self.block.meta().ulid
                    )));
                }
                Some((r, labels, chunks))
            }
            None => None,
        };
        self.cur = next;
        Ok(())
    }
}

/// A parent chunk of the series being written.
#[derive(Clone, Copy)]
struct SrcChunk {
    /// Index of the parent in the list (lower wins on equal timestamps).
    src: usize,
    /// The series' reference in that parent (for its tombstones).
    series: u64,
    meta: ChunkMeta,
    /// Whether a tombstone interval of its series cuts into it.
    cut: bool,
}

fn merge_series(
    blocks: &[Arc<Block>],
    mint: i64,
    maxt: i64,
    cw: &mut ChunkWriter,
    cstats: &mut CompactStats,
) -> Result<(Vec<BlockSeries>, BlockStats), TsdbError> {
    let mut cursors = Vec::with_capacity(blocks.len());
    for b in blocks {
        let mut c = Cursor {
            block: b,
            tombstones: b.tombstones(),
            refs: b.index().all_postings()?.into_iter(),
            cur: None,
        };
        c.advance()?;
        cursors.push(c);
    }
    let tombs: Vec<Arc<Tombstones>> = cursors.iter().map(|c| c.tombstones.clone()).collect();
    let mut out = Vec::new();
    let mut stats = BlockStats::default();
    let mut parts: Vec<SrcChunk> = Vec::new();
    while let Some(labels) = cursors
        .iter()
        .filter_map(|c| c.cur.as_ref().map(|x| &x.1))
        .min()
        .cloned()
    {
        parts.clear();
        for (src, c) in cursors.iter_mut().enumerate() {
            if c.cur.as_ref().is_none_or(|x| x.1 != labels) {
                continue;
            }
            if let Some((r, _, metas)) = c.cur.take() {
                let deleted = c.tombstones.get(r);
                for m in metas {
                    if m.max_t < mint
                        || m.min_t >= maxt
                        || deleted.iter().any(|&(a, b)| a <= m.min_t && m.max_t <= b)
                    {
                        cstats.dropped_chunks += 1;
                        continue;
                    }
                    let cut = deleted.iter().any(|&(a, b)| a <= m.max_t && m.min_t <= b);
                    parts.push(SrcChunk {
                        src,
                        series: r,
                        meta: m,
                        cut,
                    });
                }
            }
            c.advance()?;
        }
        parts.sort_by_key(|p| (p.meta.min_t, p.src));
        let metas = write_series(blocks, &tombs, &parts, mint, maxt, cw, &mut stats, cstats)
            .map_err(|e| TsdbError::BlockIo(format!("compacting series {labels:?}: {e}")))?;
        if metas.is_empty() {
            continue;
        }
        stats.num_chunks += metas.len() as u64;
        stats.num_series += 1;
        out.push((labels, metas));
    }
    Ok((out, stats))
}

/// Writes one series from its parent chunks (sorted by start time).
#[allow(clippy::too_many_arguments)]
fn write_series(
    blocks: &[Arc<Block>],
    tombs: &[Arc<Tombstones>],
    parts: &[SrcChunk],
    mint: i64,
    maxt: i64,
    cw: &mut ChunkWriter,
    stats: &mut BlockStats,
    cstats: &mut CompactStats,
) -> Result<Vec<ChunkMeta>, TsdbError> {
    let mut ch = SeriesChunker::default();
    let mut overlapped = false;
    let mut i = 0;
    while i < parts.len() {
        // The group of chunks overlapping each other, transitively.
        let mut end = i + 1;
        let mut group_max = parts[i].meta.max_t;
        while end < parts.len() && parts[end].meta.min_t <= group_max {
            group_max = group_max.max(parts[end].meta.max_t);
            end += 1;
        }
        let group = &parts[i..end];
        i = end;
        overlapped |= group.len() > 1;
        if let [one] = group
            && !one.cut
            && one.meta.min_t >= mint
            && one.meta.max_t < maxt
        {
            let (enc, data) = blocks[one.src].chunks().chunk(one.meta.r)?;
            let n = data
                .get(..2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            ch.flush(cw)?;
            let r = cw.write(enc, data)?;
            ch.metas.push(ChunkMeta { r, ..one.meta });
            stats.num_samples += u64::from(n);
            cstats.copied_chunks += 1;
            continue;
        }
        let samples = merged_samples(blocks, tombs, group, mint, maxt)?;
        cstats.reencoded_chunks += group.len() as u64;
        for (t, v, h) in &samples {
            match h {
                Some(fh) => ch.push_histogram(*t, fh, cw)?,
                None => ch.push_float(*t, *v, cw)?,
            }
        }
        stats.num_samples += samples.len() as u64;
        ch.flush(cw)?;
    }
    ch.flush(cw)?;
    if overlapped {
        cstats.overlapping_series += 1;
    }
    Ok(ch.metas)
}

type OwnedSample = (Timestamp, f64, Option<FloatHistogram>);

/// The samples of a group of chunks within `[mint, maxt)`, without deleted
/// ones, sorted by time, one per timestamp (the lowest `src` wins).
fn merged_samples(
    blocks: &[Arc<Block>],
    tombs: &[Arc<Tombstones>],
    group: &[SrcChunk],
    mint: i64,
    maxt: i64,
) -> Result<Vec<OwnedSample>, TsdbError> {
    let mut all: Vec<(usize, OwnedSample)> = Vec::new();
    for p in group {
        let b = &blocks[p.src];
        let (enc, data) = b.chunks().chunk(p.meta.r)?;
        let deleted: &[(i64, i64)] = if p.cut {
            tombs[p.src].get(p.series)
        } else {
            &[]
        };
        let mut it = ChunkSamples::open(enc, data)?;
        let mut ts = mint;
        while let Some(s) = it.seek(ts) {
            if s.t >= maxt {
                break;
            }
            if !deleted.iter().any(|&(a, b)| a <= s.t && s.t <= b) {
                all.push((p.src, (s.t, s.v, it.histogram().cloned())));
            }
            match s.t.checked_add(1) {
                Some(n) => ts = n,
                None => break,
            }
        }
        if let Some(e) = it.err() {
            return Err(TsdbError::CorruptChunk(format!(
                "block {}: {e}",
                b.meta().ulid
            )));
        }
    }
    // Stable: equal (t, src) keep chunk order.
    all.sort_by_key(|(src, s)| (s.0, *src));
    all.dedup_by_key(|(_, s)| s.0);
    Ok(all.into_iter().map(|(_, s)| s).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;

    use pharos_model::{HistogramValue, Labels, Matcher, Sample};
    use pharos_storage::{Appendable, Queryable};

    use super::*;
    use crate::block::tests::{collect, fill_head};
    use crate::block::write_block_with;
    use crate::head::hist_tests::int_hist;
    use crate::{Head, HeadOptions};

    const H2: i64 = 7_200_000;

    /// A block of `head` over `[mint, maxt)`.
    fn block_of(dir: &Path, head: &Head, mint: i64, maxt: i64) -> Arc<Block> {
        let q = head.querier(mint, maxt - 1).unwrap();
        let m = write_block_with(dir, &*q, mint, maxt, BlockCompaction::default(), 4096)
            .unwrap()
            .unwrap();
        Arc::new(Block::open(&dir.join(&m.ulid)).unwrap())
    }

    /// Every chunk (encoding and bytes) of a block.
    fn chunk_bytes(b: &Block) -> BTreeSet<(u8, Vec<u8>)> {
        let mut out = BTreeSet::new();
        for r in b.index().all_postings().unwrap() {
            for c in b.index().series(r).unwrap().1 {
                let (e, d) = b.chunks().chunk(c.r).unwrap();
                out.insert((e, d.to_vec()));
            }
        }
        out
    }

    /// A head with float series and an integer histogram series with a
    /// counter reset every 50 samples, over `[0, 4h)`.
    fn mixed_head() -> Head {
        let head = Head::new(HeadOptions::default());
        let mut app = head.appender();
        let ls = Labels::from_pairs(&[("__name__", "hist")]);
        for i in 0..960u64 {
            let t = i as i64 * 15_000;
            app.append_histogram(0, &ls, t, HistogramValue::Int(int_hist(i % 50)))
                .unwrap();
            for s in 0..10 {
                let ls = Labels::from_pairs(&[("__name__", "up"), ("instance", &format!("h{s}"))]);
                app.append(0, &ls, t, (i * s) as f64).unwrap();
            }
        }
        app.commit().unwrap();
        head
    }

    #[test]
    fn adjacent_blocks_are_copied_chunk_for_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let head = mixed_head();
        let a = block_of(dir.path(), &head, 0, H2);
        let b = block_of(dir.path(), &head, H2, 2 * H2);
        let want = collect(&*head.querier(0, 2 * H2 - 1).unwrap(), &[]);
        let (meta, st) = compact_blocks_with(
            dir.path(),
            &[a.clone(), b.clone()],
            0,
            2 * H2,
            BlockCompaction::default(),
            4096,
        )
        .unwrap()
        .unwrap();
        let total = a.meta().stats.num_chunks + b.meta().stats.num_chunks;
        assert_eq!(st.copied_chunks, total);
        assert_eq!(st.reencoded_chunks, 0);
        assert_eq!(st.overlapping_series, 0);
        assert_eq!(meta.stats.num_chunks, total);
        assert_eq!(
            meta.stats.num_samples,
            a.meta().stats.num_samples + b.meta().stats.num_samples
        );
        assert_eq!(meta.stats.num_series, 11);
        let c = Arc::new(Block::open(&dir.path().join(&meta.ulid)).unwrap());
        // Byte for byte: the histogram chunks keep their counter-reset
        // headers.
        let mut src = chunk_bytes(&a);
        src.extend(chunk_bytes(&b));
        assert_eq!(chunk_bytes(&c), src);
        assert!(
            src.iter()
                .any(|(e, d)| *e == crate::chunkenc::ENCODING_HISTOGRAM && d[2] >> 6 == 0b10),
            "no chunk with a counter-reset header"
        );
        assert_eq!(collect(&c.querier(0, 2 * H2), &[]), want);
    }

    #[test]
    fn tombstones_cut_and_drop_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let head = Head::new(HeadOptions::default());
        fill_head(&head, 4, 480, 15_000);
        let a = block_of(dir.path(), &head, 0, H2);
        // host-1: deletes samples in the middle of its second chunk;
        // host-2: deletes its whole first chunk (120 samples).
        a.delete(
            1_900_000,
            2_000_000,
            &[Matcher::equal("instance", "host-1")],
        )
        .unwrap();
        a.delete(0, 119 * 15_000, &[Matcher::equal("instance", "host-2")])
            .unwrap();
        let want = collect(&a.querier(0, H2), &[]);
        let (meta, st) = compact_blocks_with(
            dir.path(),
            std::slice::from_ref(&a),
            0,
            H2,
            BlockCompaction::default(),
            4096,
        )
        .unwrap()
        .unwrap();
        assert_eq!(st.dropped_chunks, 1);
        assert_eq!(st.reencoded_chunks, 1);
        assert_eq!(st.copied_chunks, a.meta().stats.num_chunks - 2);
        let c = Arc::new(Block::open(&dir.path().join(&meta.ulid)).unwrap());
        assert_eq!(collect(&c.querier(0, H2), &[]), want);
        let n: usize = want.iter().map(|s| s.1.len()).sum();
        assert_eq!(meta.stats.num_samples, n as u64);
        assert_eq!(n, 4 * 480 - 120 - 7);
    }

    #[test]
    fn overlapping_blocks_merge_and_deduplicate() {
        let dir = tempfile::tempdir().unwrap();
        // Block a: [0, 2h) every 15 s, values t. Block b: [1h, 3h) every
        // 10 s, values -t, plus a series only b has.
        let ha = Head::new(HeadOptions::default());
        let hb = Head::new(HeadOptions::default());
        let s1 = Labels::from_pairs(&[("__name__", "m"), ("i", "1")]);
        let s2 = Labels::from_pairs(&[("__name__", "m"), ("i", "2")]);
        let mut app = ha.appender();
        for t in (0..H2).step_by(15_000) {
            app.append(0, &s1, t, t as f64).unwrap();
        }
        app.commit().unwrap();
        let mut app = hb.appender();
        for t in (H2 / 2..H2 / 2 * 3).step_by(10_000) {
            app.append(0, &s1, t, -(t as f64)).unwrap();
            app.append(0, &s2, t, 1.0).unwrap();
        }
        app.commit().unwrap();
        let a = block_of(dir.path(), &ha, 0, H2);
        let b = block_of(dir.path(), &hb, H2 / 2, H2 / 2 * 3);
        let (meta, st) = compact_blocks_with(
            dir.path(),
            &[a.clone(), b.clone()],
            0,
            H2 / 2 * 3,
            BlockCompaction::default(),
            4096,
        )
        .unwrap()
        .unwrap();
        assert_eq!(st.overlapping_series, 1);
        assert!(st.copied_chunks > 0 && st.reencoded_chunks > 0, "{st:?}");
        let c = Arc::new(Block::open(&dir.path().join(&meta.ulid)).unwrap());
        let got = collect(&c.querier(0, i64::MAX), &[]);
        assert_eq!(got.len(), 2);
        let mut want: Vec<Sample> = (0..H2)
            .step_by(15_000)
            .map(|t| Sample { t, v: t as f64 })
            .collect();
        for t in (H2 / 2..H2 / 2 * 3).step_by(10_000) {
            // Equal timestamps: block a (first in the list) wins.
            if t >= H2 || t % 15_000 != 0 {
                want.push(Sample { t, v: -(t as f64) });
            }
        }
        want.sort_by_key(|s| s.t);
        assert_eq!(got[0].0, s1);
        assert_eq!(got[0].1, want);
        assert_eq!(got[1].1.len(), 720);
        assert_eq!(meta.stats.num_samples, (want.len() + 720) as u64);
        // Chunks of the written block are in order and do not overlap.
        for r in c.index().all_postings().unwrap() {
            let (_, ch) = c.index().series(r).unwrap();
            assert!(ch.windows(2).all(|w| w[0].max_t < w[1].min_t), "{ch:?}");
        }
    }

    /// promtool (Debian's `prometheus` package) dumps a block merged from
    /// copied and re-encoded chunks, histograms included. Skipped when
    /// promtool is absent, except under CI.
    #[test]
    fn promtool_reads_a_compacted_block() {
        if std::process::Command::new("promtool")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool missing under CI"
            );
            eprintln!("skipping: promtool not installed");
            return;
        }
        let src = tempfile::tempdir().unwrap();
        let head = mixed_head();
        let a = block_of(src.path(), &head, 0, H2);
        let b = block_of(src.path(), &head, H2, 2 * H2);
        // Overlapping a's second hour: re-encoded together with it.
        let c = block_of(src.path(), &head, H2 / 2, H2 / 2 * 3);
        let dir = tempfile::tempdir().unwrap();
        let (meta, st) = compact_blocks_with(
            dir.path(),
            &[a, c, b],
            0,
            2 * H2,
            BlockCompaction::default(),
            4096,
        )
        .unwrap()
        .unwrap();
        assert!(st.copied_chunks > 0 && st.reencoded_chunks > 0, "{st:?}");
        std::fs::create_dir(dir.path().join("wal")).unwrap();
        let out = std::process::Command::new("promtool")
            .args(["tsdb", "dump"])
            .arg(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Floats: 10 series of 960 samples; promtool 2.42 dumps float
        // samples only.
        let floats = stdout
            .lines()
            .filter(|l| l.starts_with("{__name__=\"up\""))
            .count();
        assert_eq!(floats, 10 * 960, "{}", meta.ulid);
    }
}
