//! Checkpoints: the live part of a range of segments, rewritten into a
//! `checkpoint.NNNNNNNN` directory so the segments can be deleted.
//!
//! As in Prometheus, a checkpoint up to segment `N` reads the previous
//! checkpoint and segments `first..=N`, keeps the series records of series
//! the head still holds, their samples (float and native histogram) at or
//! after `mint`, and their tombstones reaching `mint`, and writes them as an ordinary WAL in
//! `checkpoint.N.tmp`, which is fsynced and renamed into place. Only then
//! are segments `<= N` and older checkpoints deleted, so a crash at any
//! point leaves a replayable directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{PAGE_SIZE, SegmentReader, Wal, WalOptions, list_segments, sync_dir};
use crate::head::{SampleRecord, SeriesRecord};
use crate::record::{self, HistogramRecord, Record, TombstoneRecord};

/// What a checkpoint kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The checkpoint directory written (empty when none was needed).
    pub dir: PathBuf,
    /// Series records kept.
    pub series_kept: u64,
    /// Series records dropped (series no longer in the head).
    pub series_dropped: u64,
    /// Samples kept.
    pub samples_kept: u64,
    /// Samples dropped (older than the truncation time or of dropped
    /// series).
    pub samples_dropped: u64,
    /// Segments deleted after the checkpoint.
    pub segments_deleted: u64,
}

/// Name of the checkpoint holding segments up to `index`.
pub fn checkpoint_dir_name(index: u32) -> String {
    format!("checkpoint.{index:08}")
}

fn parse_checkpoint(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("checkpoint.")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn checkpoints(wal_dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(wal_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        if let Some(i) = e.file_name().to_str().and_then(parse_checkpoint) {
            out.push((i, e.path()));
        }
    }
    out.sort_by_key(|c| c.0);
    Ok(out)
}

/// The newest complete checkpoint of a WAL directory: its index and path.
pub fn last_checkpoint(wal_dir: &Path) -> io::Result<Option<(u32, PathBuf)>> {
    Ok(checkpoints(wal_dir)?.pop())
}

/// Calls `f` on every record of the segments in `paths`, in order; an
/// unreadable or corrupt segment is an error.
pub(crate) fn for_each_record(
    paths: &[PathBuf],
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    for p in paths {
        let data = fs::read(p)?;
        let mut r = SegmentReader::new(&data);
        while let Some(rec) = r.next() {
            f(rec)?;
        }
        if let Some(c) = r.corruption() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {} (good until byte {})",
                    p.display(),
                    c.msg,
                    c.good_until
                ),
            ));
        }
    }
    Ok(())
}

/// Flush batched records when they reach this size.
const BATCH_BYTES: usize = 1 << 20;

/// Writes `checkpoint.<to>` from the previous checkpoint and segments
/// `..=to` of `wal_dir`, keeping series for which `keep` holds and samples
/// at or after `mint`; then deletes segments `<= to` and older
/// checkpoints.
pub(crate) fn write_checkpoint(
    wal_dir: &Path,
    opts: WalOptions,
    to: u32,
    keep: impl Fn(u64) -> bool,
    mint: i64,
) -> io::Result<CheckpointStats> {
    let mut inputs: Vec<PathBuf> = Vec::new();
    if let Some((idx, dir)) = last_checkpoint(wal_dir)? {
        if idx >= to {
            return Ok(CheckpointStats::default());
        }
        inputs.extend(list_segments(&dir)?.into_iter().map(|s| s.1));
    }
    let segs: Vec<(u32, PathBuf)> = list_segments(wal_dir)?
        .into_iter()
        .filter(|s| s.0 <= to)
        .collect();
    inputs.extend(segs.iter().map(|s| s.1.clone()));

    let final_dir = wal_dir.join(checkpoint_dir_name(to));
    let tmp_dir = wal_dir.join(format!("{}.tmp", checkpoint_dir_name(to)));
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir)?;
    }
    let copts = WalOptions {
        segment_size: opts.segment_size.max(PAGE_SIZE),
        compress: opts.compress,
    };
    let out = Wal::create(&tmp_dir, copts, 0)?;
    let mut stats = CheckpointStats::default();
    let mut series_buf: Vec<SeriesRecord> = Vec::new();
    let mut samples_buf: Vec<SampleRecord> = Vec::new();
    let mut tomb_buf: Vec<TombstoneRecord> = Vec::new();
    let mut hist_buf: Vec<HistogramRecord> = Vec::new();
    let mut enc: Vec<u8> = Vec::new();
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut pending_bytes = 0usize;
    let flush = |pending: &mut Vec<Vec<u8>>, pending_bytes: &mut usize, force: bool| {
        if pending.is_empty() || (!force && *pending_bytes < BATCH_BYTES) {
            return Ok(());
        }
        let refs: Vec<&[u8]> = pending.iter().map(Vec::as_slice).collect();
        out.log(&refs)?;
        pending.clear();
        *pending_bytes = 0;
        Ok::<(), io::Error>(())
    };
    for_each_record(&inputs, |rec| {
        let decoded = record::decode(rec)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        enc.clear();
        match decoded {
            Record::Series(v) => {
                series_buf.clear();
                for s in v {
                    if keep(s.series_ref) {
                        stats.series_kept += 1;
                        series_buf.push(s);
                    } else {
                        stats.series_dropped += 1;
                    }
                }
                if !series_buf.is_empty() {
                    record::encode_series(&series_buf, &mut enc);
                }
            }
            Record::Samples(v) => {
                samples_buf.clear();
                for s in v {
                    if s.t >= mint && keep(s.series_ref) {
                        stats.samples_kept += 1;
                        samples_buf.push(s);
                    } else {
                        stats.samples_dropped += 1;
                    }
                }
                if !samples_buf.is_empty() {
                    record::encode_samples(&samples_buf, &mut enc);
                }
            }
            Record::Tombstones(v) => {
                tomb_buf.clear();
                tomb_buf.extend(
                    v.into_iter()
                        .filter(|t| t.maxt >= mint && keep(t.series_ref)),
                );
                if !tomb_buf.is_empty() {
                    record::encode_tombstones(&tomb_buf, &mut enc);
                }
            }
            Record::Histograms(v) => {
                hist_buf.clear();
                for h in v {
                    if h.t >= mint && keep(h.series_ref) {
                        stats.samples_kept += 1;
                        hist_buf.push(h);
                    } else {
                        stats.samples_dropped += 1;
                    }
                }
                // One record per histogram type (a record holds one type).
                for typ in record::HISTOGRAM_RECORD_TYPES {
                    let mut b = Vec::new();
                    record::encode_histograms(&hist_buf, typ, &mut b);
                    if !b.is_empty() {
                        pending_bytes += b.len();
                        pending.push(b);
                    }
                }
            }
            Record::Exemplars(v) => {
                let keep_ex: Vec<record::ExemplarRecord> = v
                    .into_iter()
                    .filter(|e| e.t >= mint && keep(e.series_ref))
                    .collect();
                if !keep_ex.is_empty() {
                    record::encode_exemplars(&keep_ex, &mut enc);
                }
            }
            Record::Other(_) => {}
        }
        if !enc.is_empty() {
            pending_bytes += enc.len();
            pending.push(enc.clone());
        }
        flush(&mut pending, &mut pending_bytes, false)
    })?;
    flush(&mut pending, &mut pending_bytes, true)?;
    out.close()?;
    drop(out);
    sync_dir(&tmp_dir)?;
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)?;
    }
    fs::rename(&tmp_dir, &final_dir)?;
    sync_dir(wal_dir)?;
    stats.dir = final_dir;

    // The checkpoint is durable: drop what it replaces.
    for (_, p) in &segs {
        fs::remove_file(p)?;
        stats.segments_deleted += 1;
    }
    for (i, p) in checkpoints(wal_dir)? {
        if i < to {
            fs::remove_dir_all(p)?;
        }
    }
    sync_dir(wal_dir)?;
    Ok(stats)
}
