//! The write-ahead log, in Prometheus's on-disk format (`tsdb/wlog`).
//!
//! A WAL directory holds numbered segment files (`00000000`, `00000001`,
//! ...) of at most [`WalOptions::segment_size`] bytes (128 MiB by default),
//! written in 32 KiB pages. A record (see [`crate::record`]) is optionally
//! snappy-compressed, then cut into fragments that never cross a page: each
//! fragment has a 7-byte header (type with compression flag, length,
//! CRC32C of the fragment). A record never crosses a segment. Checkpoints
//! (`checkpoint.NNNNNNNN`, a WAL directory of their own) summarise the
//! segments up to `NNNNNNNN` once the head has been truncated. The full
//! layout, in our words, is `docs/format/wal.md`.
//!
//! **Durability.** [`Wal::log`] hands every batch to the operating system
//! with one `pwrite` before returning, and the head's commit log hook runs
//! before a batch becomes visible, so a sample a query could see survives a
//! crash of the process (kill -9): the bytes are in the page cache. Like
//! Prometheus we `fsync` a segment when it is completed (cut or closed) and
//! not on every commit, so a power loss can lose the tail of the open
//! segment; fsyncing every scrape commit would cost a disk flush per target
//! per scrape interval. [`Wal::sync`] forces it when a caller needs it.

mod checkpoint;
mod head_wal;
mod reader;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use parking_lot::Mutex;

pub use checkpoint::{CheckpointStats, checkpoint_dir_name, last_checkpoint};
pub use head_wal::{HeadWal, ReplayStats, open_head};
pub use reader::{Corruption, SegmentReader, decompress};

/// Page size: fragments never cross a page boundary.
pub const PAGE_SIZE: usize = 32 * 1024;
/// Default segment size, 128 MiB.
pub const DEFAULT_SEGMENT_SIZE: usize = 128 * 1024 * 1024;
/// Fragment header: type (1), length (2, big endian), CRC32C (4, big endian).
pub const HEADER_SIZE: usize = 7;
/// Largest decompressed record we accept when reading.
pub(crate) const MAX_RECORD: usize = 1 << 30;

/// Fragment type: the rest of the page is zero padding.
pub const PAGE_TERM: u8 = 0;
/// Fragment type: a whole record.
pub const FULL: u8 = 1;
/// Fragment type: first fragment of a record.
pub const FIRST: u8 = 2;
/// Fragment type: middle fragment of a record.
pub const MIDDLE: u8 = 3;
/// Fragment type: last fragment of a record.
pub const LAST: u8 = 4;
/// Flag bit in the type byte: the record is snappy-compressed.
pub const SNAPPY_FLAG: u8 = 1 << 3;
/// Flag bit in the type byte: the record is zstd-compressed (Prometheus
/// 3.x; we read it as unsupported).
pub const ZSTD_FLAG: u8 = 1 << 4;
/// Mask of the fragment type in the type byte.
pub const TYPE_MASK: u8 = SNAPPY_FLAG - 1;

/// WAL configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Segment size in bytes, a multiple of the 32 KiB page size. Default
    /// 128 MiB.
    pub segment_size: usize,
    /// Snappy-compress records (only those that shrink), as Prometheus's
    /// `--storage.tsdb.wal-compression`. Default true, Prometheus's default.
    pub compress: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            compress: true,
        }
    }
}

/// Name of segment `index`.
pub fn segment_name(index: u32) -> String {
    format!("{index:08}")
}

/// The segments of a WAL directory, sorted by index.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(i) = name.parse::<u32>() {
            out.push((i, e.path()));
        }
    }
    out.sort_by_key(|s| s.0);
    Ok(out)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct Writer {
    file: File,
    index: u32,
    /// Bytes of the segment written so far.
    off: usize,
    /// Bytes built for the current batch, written at `off` in one call.
    buf: Vec<u8>,
    snappy: snap::raw::Encoder,
    cbuf: Vec<u8>,
    closed: bool,
}

/// A WAL writer: appends records to the newest segment, cutting a new one
/// when a record does not fit. Thread-safe (one internal mutex).
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    w: Mutex<Writer>,
    /// Bytes written (after compression, with headers).
    pub(crate) bytes_written: AtomicU64,
    /// Records written.
    pub(crate) records_written: AtomicU64,
    /// Failed writes (disk full, I/O errors).
    pub(crate) writes_failed: AtomicU64,
    /// Segments completed.
    pub(crate) segments_cut: AtomicU64,
}

fn create_segment(dir: &Path, index: u32) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join(segment_name(index)))?;
    sync_dir(dir)?;
    Ok(f)
}

impl Wal {
    /// Opens a writer on a new, empty segment `index` in `dir` (created if
    /// absent). Existing segments are left alone: a writer never appends to
    /// a segment written by an earlier process, as in Prometheus.
    pub fn create(dir: &Path, opts: WalOptions, index: u32) -> io::Result<Wal> {
        if opts.segment_size < PAGE_SIZE || !opts.segment_size.is_multiple_of(PAGE_SIZE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "WAL segment size {} is not a positive multiple of {PAGE_SIZE}",
                    opts.segment_size
                ),
            ));
        }
        fs::create_dir_all(dir)?;
        let file = create_segment(dir, index)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            w: Mutex::new(Writer {
                file,
                index,
                off: 0,
                buf: Vec::with_capacity(PAGE_SIZE),
                snappy: snap::raw::Encoder::new(),
                cbuf: Vec::new(),
                closed: false,
            }),
            bytes_written: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            writes_failed: AtomicU64::new(0),
            segments_cut: AtomicU64::new(0),
        })
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index of the segment being written.
    pub fn current_segment(&self) -> u32 {
        self.w.lock().index
    }

    /// Largest record payload one segment can take.
    fn max_payload(&self) -> usize {
        (PAGE_SIZE - HEADER_SIZE) * (self.opts.segment_size / PAGE_SIZE)
    }

    /// Writes `recs` (each a complete record) and hands them to the OS in
    /// one write. On error nothing of the batch counts as written: the
    /// next batch overwrites whatever part reached the file.
    pub fn log(&self, recs: &[&[u8]]) -> io::Result<()> {
        let mut w = self.w.lock();
        if w.closed {
            return Err(io::Error::other("WAL is closed"));
        }
        let start_index = w.index;
        let start_off = w.off;
        let r = self.log_locked(&mut w, recs);
        match r {
            Ok(()) => {
                self.records_written.fetch_add(recs.len() as u64, Relaxed);
                Ok(())
            }
            Err(e) => {
                self.writes_failed.fetch_add(1, Relaxed);
                if w.index == start_index {
                    w.off = start_off;
                }
                w.buf.clear();
                Err(e)
            }
        }
    }

    fn log_locked(&self, w: &mut Writer, recs: &[&[u8]]) -> io::Result<()> {
        let pages = self.opts.segment_size / PAGE_SIZE;
        w.buf.clear();
        // Position of the batch's bytes: w.off + w.buf.len().
        for rec in recs {
            let mut flag = 0u8;
            let mut enc: &[u8] = rec;
            let mut cbuf = std::mem::take(&mut w.cbuf);
            if self.opts.compress && !rec.is_empty() {
                cbuf.resize(snap::raw::max_compress_len(rec.len()), 0);
                if let Ok(n) = w.snappy.compress(rec, &mut cbuf)
                    && n < rec.len()
                {
                    cbuf.truncate(n);
                    enc = &cbuf;
                    flag = SNAPPY_FLAG;
                }
            }
            if enc.len() > self.max_payload() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "WAL record of {} bytes does not fit a segment of {} bytes",
                        enc.len(),
                        self.opts.segment_size
                    ),
                ));
            }
            // Pad a page with less room than a header.
            let pos = w.off + w.buf.len();
            let room = PAGE_SIZE - pos % PAGE_SIZE;
            if room < HEADER_SIZE {
                w.buf.resize(w.buf.len() + room, 0);
            }
            let pos = w.off + w.buf.len();
            let page = pos / PAGE_SIZE;
            let left = (PAGE_SIZE - pos % PAGE_SIZE - HEADER_SIZE)
                + (PAGE_SIZE - HEADER_SIZE) * pages.saturating_sub(page + 1);
            if pos >= self.opts.segment_size || enc.len() > left {
                self.cut_locked(w)?;
            }
            let mut first = true;
            let mut rest = enc;
            loop {
                let pos = w.off + w.buf.len();
                let room = PAGE_SIZE - pos % PAGE_SIZE;
                if room < HEADER_SIZE {
                    w.buf.resize(w.buf.len() + room, 0);
                    continue;
                }
                let n = rest.len().min(room - HEADER_SIZE);
                let (part, tail) = rest.split_at(n);
                let typ = match (first, tail.is_empty()) {
                    (true, true) => FULL,
                    (true, false) => FIRST,
                    (false, false) => MIDDLE,
                    (false, true) => LAST,
                };
                w.buf.push(typ | flag);
                w.buf.extend_from_slice(&(n as u16).to_be_bytes());
                w.buf.extend_from_slice(&crc32c::crc32c(part).to_be_bytes());
                w.buf.extend_from_slice(part);
                rest = tail;
                first = false;
                if rest.is_empty() {
                    break;
                }
            }
            w.cbuf = cbuf;
        }
        self.flush_locked(w)
    }

    fn flush_locked(&self, w: &mut Writer) -> io::Result<()> {
        if w.buf.is_empty() {
            return Ok(());
        }
        w.file.write_all_at(&w.buf, w.off as u64)?;
        w.off += w.buf.len();
        self.bytes_written.fetch_add(w.buf.len() as u64, Relaxed);
        w.buf.clear();
        Ok(())
    }

    /// Completes the current segment (pads its last page, writes what is
    /// buffered, fsyncs) and starts the next one.
    fn cut_locked(&self, w: &mut Writer) -> io::Result<()> {
        let pos = w.off + w.buf.len();
        if !pos.is_multiple_of(PAGE_SIZE) {
            w.buf.resize(w.buf.len() + PAGE_SIZE - pos % PAGE_SIZE, 0);
        }
        self.flush_locked(w)?;
        w.file.sync_all()?;
        let next = w
            .index
            .checked_add(1)
            .ok_or_else(|| io::Error::other("WAL segment index overflow"))?;
        w.file = create_segment(&self.dir, next)?;
        w.index = next;
        w.off = 0;
        self.segments_cut.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Completes the current segment and starts a new one; returns the new
    /// segment's index. Used before a checkpoint, so that every older
    /// segment is closed.
    pub fn next_segment(&self) -> io::Result<u32> {
        let mut w = self.w.lock();
        if w.closed {
            return Err(io::Error::other("WAL is closed"));
        }
        w.buf.clear();
        self.cut_locked(&mut w)?;
        Ok(w.index)
    }

    /// Fsyncs the current segment.
    pub fn sync(&self) -> io::Result<()> {
        self.w.lock().file.sync_all()
    }

    /// Pads and fsyncs the current segment; later writes fail.
    pub fn close(&self) -> io::Result<()> {
        let mut w = self.w.lock();
        if w.closed {
            return Ok(());
        }
        w.closed = true;
        w.buf.clear();
        let pos = w.off;
        if !pos.is_multiple_of(PAGE_SIZE) {
            w.buf.resize(PAGE_SIZE - pos % PAGE_SIZE, 0);
        }
        self.flush_locked(&mut w)?;
        w.file.sync_all()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
