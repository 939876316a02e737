//! Reading WAL segments back: fragments reassembled into records, checked
//! against their CRC32C and decompressed.

use super::{FIRST, FULL, HEADER_SIZE, LAST, MIDDLE, PAGE_SIZE, SNAPPY_FLAG, TYPE_MASK, ZSTD_FLAG};

/// Why reading stopped before the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Byte offset in the segment where the first bad record starts: the
    /// segment is good up to here.
    pub good_until: usize,
    /// What is wrong.
    pub msg: String,
}

/// Reads the records of one segment held in memory.
///
/// Records are yielded in order; the first problem (torn record, bad
/// checksum, bad fragment sequence, bad padding, undecompressable payload)
/// ends the iteration and is kept in [`SegmentReader::corruption`], with
/// the offset of the end of the last good record.
pub struct SegmentReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// End of the last complete record (or padding) read.
    good: usize,
    corruption: Option<Corruption>,
    rec: Vec<u8>,
    out: Vec<u8>,
}

impl<'a> SegmentReader<'a> {
    /// A reader over one segment's bytes.
    pub fn new(data: &'a [u8]) -> SegmentReader<'a> {
        SegmentReader {
            data,
            pos: 0,
            good: 0,
            corruption: None,
            rec: Vec::new(),
            out: Vec::new(),
        }
    }

    /// The problem that ended reading, if any.
    pub fn corruption(&self) -> Option<&Corruption> {
        self.corruption.as_ref()
    }

    /// Offset just past the last good record.
    pub fn good_until(&self) -> usize {
        self.good
    }

    fn fail<T>(&mut self, msg: String) -> Option<T> {
        self.corruption = Some(Corruption {
            good_until: self.good,
            msg,
        });
        self.pos = self.data.len();
        None
    }

    /// The next record, or `None` at the end or at the first corruption.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<&[u8]> {
        match self.read_record()? {
            Kind::Plain => {
                self.good = self.pos;
                Some(&self.rec)
            }
            Kind::Zstd => {
                // Intact but unreadable here: handed out as an empty record,
                // which does not decode and is skipped (not a corruption).
                self.good = self.pos;
                self.out.clear();
                Some(&self.out)
            }
            Kind::Snappy => {
                if let Err(msg) = decompress(&self.rec, &mut self.out) {
                    return self.fail(msg);
                }
                self.good = self.pos;
                Some(&self.out)
            }
        }
    }

    /// Like [`SegmentReader::next`] but leaves snappy records compressed
    /// (the flag says so), so that callers can decompress on other threads
    /// with [`decompress`]. A zstd record is handed out empty.
    pub fn next_raw(&mut self) -> Option<(bool, &[u8])> {
        // A record in one fragment (the usual case) is handed out in place.
        if let Some(frag) = self.full_fragment() {
            return Some((frag.0, frag.1));
        }
        let kind = self.read_record()?;
        self.good = self.pos;
        match kind {
            Kind::Plain => Some((false, &self.rec)),
            Kind::Snappy => Some((true, &self.rec)),
            Kind::Zstd => {
                self.rec.clear();
                Some((false, &self.rec))
            }
        }
    }

    /// The next record when it is one intact fragment of type full, not
    /// zstd-compressed: its snappy flag and bytes, borrowed from the
    /// segment. `None` leaves everything else to [`Self::read_record`].
    fn full_fragment(&mut self) -> Option<(bool, &'a [u8])> {
        if self.corruption.is_some() {
            return None;
        }
        let h = self.data.get(self.pos..self.pos + HEADER_SIZE)?;
        if h[0] & TYPE_MASK != FULL || h[0] & ZSTD_FLAG != 0 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
        let crc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
        if len > PAGE_SIZE - HEADER_SIZE {
            return None;
        }
        let start = self.pos + HEADER_SIZE;
        let frag = self.data.get(start..start + len)?;
        if crc32c::crc32c(frag) != crc {
            return None;
        }
        self.pos = start + len;
        self.good = self.pos;
        Some((h[0] & SNAPPY_FLAG != 0, frag))
    }

    /// Reassembles the next record's fragments into `self.rec`.
    fn read_record(&mut self) -> Option<Kind> {
        if self.corruption.is_some() {
            return None;
        }
        self.rec.clear();
        let mut compressed = false;
        let mut zstd = false;
        let mut i = 0usize;
        loop {
            let Some(&hdr) = self.data.get(self.pos) else {
                if i > 0 {
                    return self.fail("last record is torn".into());
                }
                return None;
            };
            let typ = hdr & TYPE_MASK;
            if typ == 0 {
                // Page padding: zeros up to the end of the page.
                let end = ((self.pos / PAGE_SIZE) + 1) * PAGE_SIZE;
                let end = end.min(self.data.len());
                if self.data[self.pos..end].iter().any(|&b| b != 0) {
                    return self.fail(format!(
                        "unexpected non-zero byte in padded page at offset {}",
                        self.pos
                    ));
                }
                self.pos = end;
                if i == 0 {
                    self.good = end;
                }
                continue;
            }
            let Some(h) = self.data.get(self.pos..self.pos + HEADER_SIZE) else {
                return self.fail(format!("torn fragment header at offset {}", self.pos));
            };
            let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
            let crc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
            let start = self.pos + HEADER_SIZE;
            if len > PAGE_SIZE - HEADER_SIZE {
                return self.fail(format!(
                    "invalid fragment size {len} at offset {}",
                    self.pos
                ));
            }
            let Some(frag) = self.data.get(start..start + len) else {
                return self.fail(format!("torn fragment at offset {}", self.pos));
            };
            let got = crc32c::crc32c(frag);
            if got != crc {
                return self.fail(format!(
                    "checksum mismatch at offset {}: got {got:08x}, want {crc:08x}",
                    self.pos
                ));
            }
            let valid = match (i, typ) {
                (0, FULL | FIRST) => true,
                (0, _) => false,
                (_, MIDDLE | LAST) => true,
                _ => false,
            };
            if !valid {
                return self.fail(format!(
                    "fragment type {typ} out of sequence at offset {}",
                    self.pos
                ));
            }
            if typ > LAST {
                return self.fail(format!(
                    "unknown fragment type {typ} at offset {}",
                    self.pos
                ));
            }
            if i == 0 {
                compressed = hdr & SNAPPY_FLAG != 0;
                zstd = hdr & ZSTD_FLAG != 0;
            }
            self.rec.extend_from_slice(frag);
            self.pos = start + len;
            i += 1;
            if typ == FULL || typ == LAST {
                break;
            }
        }
        Some(if zstd {
            Kind::Zstd
        } else if compressed {
            Kind::Snappy
        } else {
            Kind::Plain
        })
    }
}

/// How a record's bytes are stored.
enum Kind {
    Plain,
    Snappy,
    Zstd,
}

/// Decompresses a raw snappy record into `out`.
pub fn decompress(rec: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let n = match snap::raw::decompress_len(rec) {
        Ok(n) if n <= super::MAX_RECORD => n,
        Ok(n) => return Err(format!("compressed record claims {n} bytes")),
        Err(e) => return Err(format!("bad snappy record: {e}")),
    };
    out.resize(n, 0);
    snap::raw::Decoder::new()
        .decompress(rec, out)
        .map(|_| ())
        .map_err(|e| format!("bad snappy record: {e}"))
}
