//! Head chunks on disk (`chunks_head/`), in Prometheus's head-chunk file
//! format, memory-mapped so the head keeps only open chunks on its heap.
//!
//! When a series cuts a chunk, the closed chunk first stays on the heap;
//! closed chunks are then written in batches to the newest file of
//! `chunks_head/` (one positioned write per batch) and the series' copy is
//! swapped for a view into that file's read-only memory map. The page cache
//! holds the bytes, so the kernel can drop them under memory pressure and
//! the process's anonymous memory holds only the open chunk of each series.
//!
//! On open, every file is read and checked (magic, version, per-chunk
//! CRC32C); a torn or corrupt tail is cut off at the last good chunk (files
//! after it are deleted), logged and counted, and the surviving chunks are
//! handed to the WAL replay, which attaches them to their series before
//! re-applying the WAL samples newer than them. Layout: `docs/format/head_chunks.md`.
//!
//! Why mmap rather than `pread`: queries read closed chunks at memory
//! speed without a system call per chunk, and without copying them. The
//! one `unsafe` call lives in the `mmap` submodule, with the argument
//! that makes it sound (files are append-only and never truncated while
//! mapped).

mod mmap;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};

use memmap2::Mmap;
use parking_lot::{Mutex, RwLock};

/// Magic number opening a head chunk file.
pub const MAGIC: u32 = 0x0130_BC91;
/// Format version.
pub const VERSION: u8 = 1;
/// File header: magic, version, three bytes of padding.
pub const FILE_HEADER_SIZE: usize = 8;
/// Largest head chunk file.
pub const MAX_FILE_SIZE: usize = 128 * 1024 * 1024;

/// Fixed part before a chunk's length: series ref, mint, maxt, encoding.
const CHUNK_META: usize = 8 + 8 + 8 + 1;

/// One mapped head chunk file.
pub(crate) struct MappedFile {
    seq: u32,
    map: Mmap,
    /// Newest sample time of any chunk in the file.
    maxt: AtomicI64,
}

impl MappedFile {
    fn bytes(&self, start: u32, len: u32) -> &[u8] {
        let s = start as usize;
        self.map.get(s..s + len as usize).unwrap_or(&[])
    }
}

/// A closed chunk's bytes and encoding byte (`chunkenc::ENCODING_*`): on
/// the heap until written, then in a mapped file. The encoding rides in the
/// enum's padding, so it costs no memory per chunk.
#[derive(Clone)]
pub(crate) enum ChunkBytes {
    /// Not written to `chunks_head/` (yet, or there is no such directory).
    Heap(Arc<[u8]>, u8),
    /// Written; a view into the file's mapping (start, length).
    Mapped(Arc<MappedFile>, u32, u32, u8),
}

impl AsRef<[u8]> for ChunkBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            ChunkBytes::Heap(b, _) => b,
            ChunkBytes::Mapped(f, s, l, _) => f.bytes(*s, *l),
        }
    }
}

impl ChunkBytes {
    /// Bytes of chunk data.
    pub(crate) fn len(&self) -> usize {
        match self {
            ChunkBytes::Heap(b, _) => b.len(),
            ChunkBytes::Mapped(_, _, l, _) => *l as usize,
        }
    }

    /// The chunk's encoding byte.
    pub(crate) fn encoding(&self) -> u8 {
        match self {
            ChunkBytes::Heap(_, e) | ChunkBytes::Mapped(_, _, _, e) => *e,
        }
    }

    /// Whether the bytes are on the heap.
    pub(crate) fn is_heap(&self) -> bool {
        matches!(self, ChunkBytes::Heap(..))
    }
}

/// A chunk found on disk at open.
pub(crate) struct LoadedChunk {
    pub(crate) series_ref: u64,
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
    pub(crate) bytes: ChunkBytes,
}

/// A chunk to write.
pub(crate) struct ChunkToWrite<'a> {
    pub(crate) series_ref: u64,
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
    pub(crate) encoding: u8,
    pub(crate) data: &'a [u8],
}

struct Writer {
    file: File,
    mapped: Arc<MappedFile>,
    off: usize,
    buf: Vec<u8>,
}

/// Writes and maps the files of `chunks_head/`.
pub(crate) struct ChunkDiskMapper {
    dir: PathBuf,
    writer: Mutex<Option<Writer>>,
    files: RwLock<BTreeMap<u32, Arc<MappedFile>>>,
    pub(crate) chunks_written: AtomicU64,
    pub(crate) write_failures: AtomicU64,
    pub(crate) corruptions: AtomicU64,
}

fn file_name(seq: u32) -> String {
    format!("{seq:06}")
}

fn list_files(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(i) = n.parse::<u32>() {
            out.push((i, e.path()));
        }
    }
    out.sort_by_key(|f| f.0);
    Ok(out)
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &c) in b.iter().enumerate().take(10) {
        x |= u64::from(c & 0x7f) << (7 * i);
        if c < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// Parses the chunks of one file; returns them (offsets of their data)
/// and the end of the last good chunk, plus an error text when reading
/// stopped before the end for another reason than zero padding.
#[allow(clippy::type_complexity)]
fn scan(data: &[u8]) -> (Vec<(u64, i64, i64, u8, u32, u32)>, usize, Option<String>) {
    let mut out = Vec::new();
    if data.len() < FILE_HEADER_SIZE {
        return (out, 0, Some("file shorter than its header".into()));
    }
    if data[..4] != MAGIC.to_be_bytes() {
        return (out, 0, Some("bad magic number".into()));
    }
    if data[4] != VERSION {
        return (out, 0, Some(format!("unsupported version {}", data[4])));
    }
    let mut pos = FILE_HEADER_SIZE;
    loop {
        if pos == data.len() {
            return (out, pos, None);
        }
        let rest = &data[pos..];
        // Preallocated files (Prometheus) end in zeros.
        if rest.len() < CHUNK_META || rest[..CHUNK_META].iter().all(|&b| b == 0) {
            if rest.iter().all(|&b| b == 0) {
                return (out, pos, None);
            }
            return (out, pos, Some(format!("torn chunk header at offset {pos}")));
        }
        let be = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&rest[o..o + 8]);
            u64::from_be_bytes(a)
        };
        let sref = be(0);
        let mint = be(8) as i64;
        let maxt = be(16) as i64;
        let enc = rest[24];
        let Some((len, n)) = uvarint(&rest[CHUNK_META..]) else {
            return (out, pos, Some(format!("bad chunk length at offset {pos}")));
        };
        let start = CHUNK_META + n;
        let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
            return (out, pos, Some(format!("bad chunk length at offset {pos}")));
        };
        if end + 4 > rest.len() {
            return (out, pos, Some(format!("torn chunk at offset {pos}")));
        }
        let crc = u32::from_be_bytes([rest[end], rest[end + 1], rest[end + 2], rest[end + 3]]);
        if crc32c::crc32c(&rest[..end]) != crc {
            return (
                out,
                pos,
                Some(format!("chunk checksum mismatch at offset {pos}")),
            );
        }
        out.push((sref, mint, maxt, enc, (pos + start) as u32, len as u32));
        pos += end + 4;
    }
}

impl ChunkDiskMapper {
    /// Opens `dir` (created if absent): checks and repairs its files, maps
    /// them, and returns the chunks they hold. Writing starts in a new file.
    pub(crate) fn open(dir: &Path) -> io::Result<(ChunkDiskMapper, Vec<LoadedChunk>)> {
        fs::create_dir_all(dir)?;
        let mapper = ChunkDiskMapper {
            dir: dir.to_path_buf(),
            writer: Mutex::new(None),
            files: RwLock::new(BTreeMap::new()),
            chunks_written: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
            corruptions: AtomicU64::new(0),
        };
        let mut loaded = Vec::new();
        let files = list_files(dir)?;
        let mut damaged_at: Option<usize> = None;
        for (i, (seq, path)) in files.iter().enumerate() {
            // Scanned in place through the mapping kept for reads: no copy
            // of the file onto the heap.
            let file = File::open(path)?;
            let size = file.metadata()?.len() as usize;
            let whole = if size > 0 {
                Some(mmap::map(&file, size)?)
            } else {
                None
            };
            let data: &[u8] = whole.as_deref().unwrap_or(&[]);
            let (chunks, good, err) = scan(data);
            let keep = if let Some(msg) = err {
                mapper.corruptions.fetch_add(1, Relaxed);
                let later: u64 = files[i + 1..]
                    .iter()
                    .map(|f| fs::metadata(&f.1).map(|m| m.len()).unwrap_or(0))
                    .sum();
                tracing::warn!(
                    file = %path.display(),
                    offset = good,
                    bytes_dropped = (data.len() - good) as u64 + later,
                    files_removed = files.len() - i - 1,
                    error = %msg,
                    "head chunk file damaged: truncated at the last good chunk, dropped what followed (the WAL still holds those samples)"
                );
                // Unmapped before the file is cut or removed.
                drop(whole);
                if good < FILE_HEADER_SIZE {
                    fs::remove_file(path)?;
                    damaged_at = Some(i);
                    break;
                }
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(good as u64)?;
                f.sync_all()?;
                damaged_at = Some(i + 1);
                None
            } else {
                whole
            };
            let map = match keep {
                Some(m) => m,
                None => mmap::map(&file, good.max(1))?,
            };
            let mf = Arc::new(MappedFile {
                seq: *seq,
                map,
                maxt: AtomicI64::new(chunks.iter().map(|c| c.2).max().unwrap_or(i64::MIN)),
            });
            for (sref, mint, maxt, enc, start, len) in chunks {
                loaded.push(LoadedChunk {
                    series_ref: sref,
                    mint,
                    maxt,
                    bytes: ChunkBytes::Mapped(mf.clone(), start, len, enc),
                });
            }
            mapper.files.write().insert(*seq, mf);
            if damaged_at.is_some() {
                break;
            }
        }
        if let Some(from) = damaged_at {
            for (_, p) in &files[from..] {
                fs::remove_file(p)?;
            }
        }
        Ok((mapper, loaded))
    }

    fn cut(&self, w: &mut Option<Writer>) -> io::Result<()> {
        if let Some(old) = w.take() {
            old.file.sync_all()?;
        }
        let next = self
            .files
            .read()
            .keys()
            .next_back()
            .map_or(1, |s| s.saturating_add(1));
        let path = self.dir.join(file_name(next));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let mut header = [0u8; FILE_HEADER_SIZE];
        header[..4].copy_from_slice(&MAGIC.to_be_bytes());
        header[4] = VERSION;
        file.write_all_at(&header, 0)?;
        crate::wal::sync_dir(&self.dir)?;
        let map = mmap::map(&file, MAX_FILE_SIZE)?;
        let mapped = Arc::new(MappedFile {
            seq: next,
            map,
            maxt: AtomicI64::new(i64::MIN),
        });
        self.files.write().insert(next, mapped.clone());
        *w = Some(Writer {
            file,
            mapped,
            off: FILE_HEADER_SIZE,
            buf: Vec::new(),
        });
        Ok(())
    }

    /// Writes `chunks` (one write per file touched) and returns where each
    /// one's data now lives, in order.
    pub(crate) fn write(&self, chunks: &[ChunkToWrite<'_>]) -> io::Result<Vec<ChunkBytes>> {
        let mut guard = self.writer.lock();
        let mut out = Vec::with_capacity(chunks.len());
        let r = self.write_locked(&mut guard, chunks, &mut out);
        if r.is_err() {
            self.write_failures.fetch_add(1, Relaxed);
            // Start over in a fresh file: the current one's tail is unknown.
            if let Some(w) = guard.as_mut() {
                w.buf.clear();
            }
            *guard = None;
        }
        r.map(|()| out)
    }

    fn write_locked(
        &self,
        guard: &mut Option<Writer>,
        chunks: &[ChunkToWrite<'_>],
        out: &mut Vec<ChunkBytes>,
    ) -> io::Result<()> {
        if guard.is_none() {
            self.cut(guard)?;
        }
        for c in chunks {
            let need = CHUNK_META + 10 + c.data.len() + 4;
            let full = guard
                .as_ref()
                .is_some_and(|w| w.off + w.buf.len() + need > MAX_FILE_SIZE);
            if full {
                self.flush(guard)?;
                self.cut(guard)?;
            }
            let Some(w) = guard.as_mut() else {
                panic!("BUG: head chunk writer missing after cut");
            };
            let rec_start = w.buf.len();
            w.buf.extend_from_slice(&c.series_ref.to_be_bytes());
            w.buf.extend_from_slice(&c.mint.to_be_bytes());
            w.buf.extend_from_slice(&c.maxt.to_be_bytes());
            w.buf.push(c.encoding);
            let mut l = c.data.len() as u64;
            while l >= 0x80 {
                w.buf.push((l as u8) | 0x80);
                l >>= 7;
            }
            w.buf.push(l as u8);
            let data_start = w.off + w.buf.len();
            w.buf.extend_from_slice(c.data);
            let crc = crc32c::crc32c(&w.buf[rec_start..]);
            w.buf.extend_from_slice(&crc.to_be_bytes());
            w.mapped.maxt.fetch_max(c.maxt, Relaxed);
            out.push(ChunkBytes::Mapped(
                w.mapped.clone(),
                data_start as u32,
                c.data.len() as u32,
                c.encoding,
            ));
        }
        self.flush(guard)?;
        self.chunks_written.fetch_add(chunks.len() as u64, Relaxed);
        Ok(())
    }

    fn flush(&self, guard: &mut Option<Writer>) -> io::Result<()> {
        if let Some(w) = guard.as_mut()
            && !w.buf.is_empty()
        {
            w.file.write_all_at(&w.buf, w.off as u64)?;
            w.off += w.buf.len();
            w.buf.clear();
        }
        Ok(())
    }

    /// Deletes the oldest files all of whose chunks end before `mint`,
    /// stopping at the first file that must stay (and never the one being
    /// written), so the numbering keeps no gap. Mappings held by running
    /// queries stay valid.
    pub(crate) fn truncate(&self, mint: i64) -> io::Result<u64> {
        let current = self.writer.lock().as_ref().map(|w| w.mapped.seq);
        let mut files = self.files.write();
        // Only a prefix of the sequence: Prometheus refuses a directory
        // with gaps in the file numbers.
        let old: Vec<u32> = files
            .iter()
            .take_while(|(s, f)| Some(**s) != current && f.maxt.load(Relaxed) < mint)
            .map(|(s, _)| *s)
            .collect();
        for s in &old {
            files.remove(s);
            fs::remove_file(self.dir.join(file_name(*s)))?;
        }
        Ok(old.len() as u64)
    }

    /// Fsyncs the file being written.
    pub(crate) fn sync(&self) -> io::Result<()> {
        match self.writer.lock().as_ref() {
            Some(w) => w.file.sync_all(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn write_reopen_and_repair() {
        let dir = tempfile::tempdir().unwrap();
        let (m, loaded) = ChunkDiskMapper::open(dir.path()).unwrap();
        assert!(loaded.is_empty());
        let datas: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 50 + i as usize]).collect();
        let chunks: Vec<ChunkToWrite<'_>> = datas
            .iter()
            .enumerate()
            .map(|(i, d)| ChunkToWrite {
                series_ref: i as u64 + 1,
                mint: i as i64 * 10,
                maxt: i as i64 * 10 + 9,
                encoding: 1 + (i % 3) as u8,
                data: d,
            })
            .collect();
        let got = m.write(&chunks).unwrap();
        for (g, d) in got.iter().zip(&datas) {
            assert_eq!(g.as_ref(), d.as_slice());
        }
        drop(got);
        drop(m);
        let path = dir.path().join("000001");
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], &MAGIC.to_be_bytes());
        assert_eq!(bytes[4], 1);
        // Reopen: all chunks come back.
        let (m, loaded) = ChunkDiskMapper::open(dir.path()).unwrap();
        assert_eq!(loaded.len(), 10);
        for (i, (l, d)) in loaded.iter().zip(&datas).enumerate() {
            assert_eq!(l.bytes.as_ref(), d.as_slice());
            assert_eq!(l.bytes.encoding(), 1 + (i % 3) as u8);
        }
        drop(loaded);
        drop(m);
        // Flip a byte in chunk 6: chunks 0..6 survive, the file is cut.
        let mut off = FILE_HEADER_SIZE;
        for d in &datas[..6] {
            off += CHUNK_META + 1 + d.len() + 4;
        }
        let mut bad = bytes.clone();
        bad[off + 30] ^= 1;
        fs::write(&path, &bad).unwrap();
        let (m, loaded) = ChunkDiskMapper::open(dir.path()).unwrap();
        assert_eq!(loaded.len(), 6);
        assert_eq!(m.corruptions.load(Relaxed), 1);
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, off);
        drop(loaded);
        // New writes go to a new file; truncation deletes the old one.
        m.write(&chunks[..1]).unwrap();
        assert!(dir.path().join("000002").exists());
        assert_eq!(m.truncate(1000).unwrap(), 1);
        assert!(!path.exists());
    }

    proptest! {
        #[test]
        fn scan_never_panics(data in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut d = MAGIC.to_be_bytes().to_vec();
            d.extend_from_slice(&[1, 0, 0, 0]);
            d.extend_from_slice(&data);
            let _ = scan(&d);
            let _ = scan(&data);
        }
    }
}
