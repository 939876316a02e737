//! Block chunk segment files (`chunks/000001`, ...): writer and reader.
//!
//! A segment starts with an 8-byte header (magic `0x85BD40DD`, version 1,
//! three zero bytes) followed by chunks, each `len <uvarint> | encoding
//! <1b> | data <len bytes> | crc32c(encoding, data) <4b>`. A chunk is
//! referenced by `segment index << 32 | byte offset`, where the index of
//! `000001` is 0. See `docs/format/chunks_segment.md`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::encoding::{Dec, crc, put_uvarint};
use super::mmap::Bytes;
use crate::TsdbError;

/// Magic number at the start of every block chunk segment.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// Segment size after which a new segment is started (512 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
const HEADER_SIZE: u64 = 8;

fn io_err(p: &Path, e: std::io::Error) -> TsdbError {
    TsdbError::BlockIo(format!("{}: {e}", p.display()))
}

/// Writes chunks into numbered segment files of one block.
pub struct ChunkWriter {
    dir: PathBuf,
    seq: u64,
    cur: Option<(BufWriter<File>, PathBuf)>,
    pos: u64,
    segment_size: u64,
    scratch: Vec<u8>,
}

impl ChunkWriter {
    /// A writer creating segments in `dir` (created if missing).
    pub fn new(dir: &Path, segment_size: u64) -> Result<ChunkWriter, TsdbError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        Ok(ChunkWriter {
            dir: dir.to_path_buf(),
            seq: 0,
            cur: None,
            pos: 0,
            segment_size: segment_size.max(HEADER_SIZE + 1),
            scratch: Vec::new(),
        })
    }

    fn cut(&mut self) -> Result<(), TsdbError> {
        self.finish_segment()?;
        self.seq += 1;
        let p = self.dir.join(format!("{:06}", self.seq));
        let f = File::create(&p).map_err(|e| io_err(&p, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut h = MAGIC_CHUNKS.to_be_bytes().to_vec();
        h.extend_from_slice(&[1, 0, 0, 0]);
        w.write_all(&h).map_err(|e| io_err(&p, e))?;
        self.cur = Some((w, p));
        self.pos = HEADER_SIZE;
        Ok(())
    }

    fn finish_segment(&mut self) -> Result<(), TsdbError> {
        if let Some((w, p)) = self.cur.take() {
            let f = w.into_inner().map_err(|e| io_err(&p, e.into_error()))?;
            f.sync_all().map_err(|e| io_err(&p, e))?;
        }
        Ok(())
    }

    /// Writes one chunk and returns its reference.
    pub fn write(&mut self, encoding: u8, data: &[u8]) -> Result<u64, TsdbError> {
        self.scratch.clear();
        put_uvarint(&mut self.scratch, data.len() as u64);
        let total = (self.scratch.len() + 1 + data.len() + 4) as u64;
        if self.cur.is_none() || (self.pos + total > self.segment_size && self.pos > HEADER_SIZE) {
            self.cut()?;
        }
        let Some((w, p)) = self.cur.as_mut() else {
            panic!("BUG: chunk segment not open after cut");
        };
        let mut crc_in = Vec::with_capacity(1 + data.len());
        crc_in.push(encoding);
        crc_in.extend_from_slice(data);
        let sum = crc(&crc_in);
        let r = ((self.seq - 1) << 32) | self.pos;
        w.write_all(&self.scratch).map_err(|e| io_err(p, e))?;
        w.write_all(&crc_in).map_err(|e| io_err(p, e))?;
        w.write_all(&sum.to_be_bytes()).map_err(|e| io_err(p, e))?;
        self.pos += total;
        Ok(r)
    }

    /// Flushes and fsyncs the last segment.
    pub fn close(mut self) -> Result<(), TsdbError> {
        self.finish_segment()
    }
}

/// Reads chunks from the segment files of one block.
#[derive(Debug, Clone)]
pub struct ChunkReader {
    segments: Arc<Vec<Bytes>>,
    /// Total bytes of all segments.
    pub size: u64,
}

/// Sorted segment file paths of a block's `chunks` directory.
pub(crate) fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, TsdbError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            v.push(e.path());
        }
    }
    v.sort();
    Ok(v)
}

impl ChunkReader {
    /// Opens every segment in `dir`, checking the headers.
    pub fn open(dir: &Path) -> Result<ChunkReader, TsdbError> {
        let mut segs = Vec::new();
        let mut size = 0;
        for p in segment_files(dir)? {
            let b = Bytes::open(&p)?;
            let mut d = Dec::new(b.as_ref(), "chunk segment header");
            if d.be32()? != MAGIC_CHUNKS {
                return Err(TsdbError::CorruptBlock(format!(
                    "{}: bad magic number",
                    p.display()
                )));
            }
            if d.byte()? != 1 {
                return Err(TsdbError::CorruptBlock(format!(
                    "{}: unsupported chunk format version",
                    p.display()
                )));
            }
            size += b.as_ref().len() as u64;
            segs.push(b);
        }
        Ok(ChunkReader::from_segments(segs, size))
    }

    /// A reader over in-memory segments (for tests and tools).
    pub(crate) fn from_segments(segs: Vec<Bytes>, size: u64) -> ChunkReader {
        ChunkReader {
            segments: Arc::new(segs),
            size,
        }
    }

    /// The encoding byte and data of the chunk at `r`, checksum verified.
    pub fn chunk(&self, r: u64) -> Result<(u8, &[u8]), TsdbError> {
        let seg = (r >> 32) as usize;
        let off = (r & 0xffff_ffff) as usize;
        let Some(b) = self.segments.get(seg) else {
            return Err(TsdbError::CorruptBlock(format!(
                "chunk reference {r:#x}: segment {seg} does not exist"
            )));
        };
        if off < HEADER_SIZE as usize {
            return Err(TsdbError::CorruptBlock(format!(
                "chunk reference {r:#x}: offset inside the header"
            )));
        }
        let mut d = Dec::new(b.as_ref().get(off..).unwrap_or_default(), "chunk");
        let len = d.uvarint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l < u32::MAX as usize)
            .ok_or_else(|| TsdbError::CorruptBlock(format!("chunk {r:#x}: bad length")))?;
        let body = d.bytes(len + 1)?;
        let want = d.be32()?;
        if crc(body) != want {
            return Err(TsdbError::CorruptBlock(format!(
                "chunk {r:#x}: checksum mismatch"
            )));
        }
        Ok((body[0], &body[1..]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(dir.path(), 64).unwrap();
        let mut refs = Vec::new();
        for i in 0..20u8 {
            refs.push(w.write(1, &vec![i; usize::from(i) + 3]).unwrap());
        }
        w.close().unwrap();
        assert!(segment_files(dir.path()).unwrap().len() > 1);
        let r = ChunkReader::open(dir.path()).unwrap();
        for (i, rf) in refs.iter().enumerate() {
            let (enc, data) = r.chunk(*rf).unwrap();
            assert_eq!(enc, 1);
            assert_eq!(data, vec![i as u8; i + 3].as_slice());
        }
        assert!(r.chunk(99 << 32).is_err());
    }

    proptest! {
        #[test]
        fn reader_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200), r in any::<u64>()) {
            let mut seg = MAGIC_CHUNKS.to_be_bytes().to_vec();
            seg.extend_from_slice(&[1, 0, 0, 0]);
            seg.extend_from_slice(&b);
            let n = seg.len() as u64;
            let rd = ChunkReader::from_segments(vec![Bytes::from_vec(seg)], n);
            let _ = rd.chunk(r & 0x1_0000_00ff);
            let _ = rd.chunk(8);
        }
    }
}
