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

/// Bytes `decompress` may write past the end of the output before
/// trimming it: short literals and copies move 16 bytes at a time.
const SNAPPY_SLACK: usize = 16;

/// Decompresses a raw snappy record into `out` (its contents are replaced).
///
/// Our own decoder rather than `snap`'s: WAL sample records are runs of
/// ~10-byte samples, so most copies reach back less than 16 bytes, and
/// `snap` moves such copies as two 8-byte halves whose second load reads
/// bytes the first store just wrote (a store-forwarding stall on every
/// copy). Here a copy that does not overlap its own output is moved with
/// one 16-byte load and store, into slack past the end that is trimmed
/// at the end: about a quarter faster on replay. Safe code; malformed
/// input is an error, never a panic (tests check it against `snap`).
pub fn decompress(rec: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let bad = |what: &str| Err(format!("bad snappy record: {what}"));
    // Uncompressed length: a varint of at most five bytes.
    let mut n = 0usize;
    let mut s = 0usize;
    let mut shift = 0;
    loop {
        let Some(&b) = rec.get(s) else {
            return bad("truncated length");
        };
        s += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return bad("length varint too long");
        }
    }
    if n > super::MAX_RECORD {
        return Err(format!("compressed record claims {n} bytes"));
    }
    // Only growth is zeroed: the buffer is reused record after record.
    out.resize(n + SNAPPY_SLACK, 0);
    let dst = &mut out[..];
    let mut d = 0usize;
    while let Some(&tag) = rec.get(s) {
        if tag & 3 == 0 {
            // Literal: length - 1 in the tag, or in 1 to 4 bytes after it.
            let mut len = usize::from(tag >> 2);
            s += 1;
            if len >= 60 {
                let nb = len - 59;
                let Some(b) = rec.get(s..s + nb) else {
                    return bad("truncated literal length");
                };
                len = b
                    .iter()
                    .enumerate()
                    .fold(0, |acc, (i, &x)| acc | usize::from(x) << (8 * i));
                s += nb;
            }
            len += 1;
            if len > n - d {
                return bad("literal past the stated length");
            }
            if len <= 16 && s + 16 <= rec.len() {
                // d + 16 <= n + SNAPPY_SLACK as d < n.
                dst[d..d + 16].copy_from_slice(&rec[s..s + 16]);
            } else {
                let Some(b) = rec.get(s..s + len) else {
                    return bad("truncated literal");
                };
                dst[d..d + len].copy_from_slice(b);
            }
            s += len;
            d += len;
        } else {
            let (len, off, nb) = match tag & 3 {
                1 => {
                    let Some(&b) = rec.get(s + 1) else {
                        return bad("truncated copy");
                    };
                    let off = (usize::from(tag >> 5) << 8) | usize::from(b);
                    (4 + usize::from((tag >> 2) & 7), off, 2)
                }
                2 => {
                    let Some(b) = rec.get(s + 1..s + 3) else {
                        return bad("truncated copy");
                    };
                    let off = usize::from(u16::from_le_bytes([b[0], b[1]]));
                    (1 + usize::from(tag >> 2), off, 3)
                }
                _ => {
                    let Some(b) = rec.get(s + 1..s + 5) else {
                        return bad("truncated copy");
                    };
                    let off = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                    (1 + usize::from(tag >> 2), off, 5)
                }
            };
            s += nb;
            if off == 0 || off > d {
                return bad("copy offset out of range");
            }
            if len > n - d {
                return bad("copy past the stated length");
            }
            let from = d - off;
            if off >= len && len <= 16 {
                // The source lies wholly before `d`; bytes loaded past it
                // land past this copy's end (slack or later output).
                let mut t = [0u8; 16];
                t.copy_from_slice(&dst[from..from + 16]);
                dst[d..d + 16].copy_from_slice(&t);
            } else if off >= len {
                dst.copy_within(from..from + len, d);
            } else {
                // Overlapping: a repeating pattern, byte by byte.
                for i in d..d + len {
                    dst[i] = dst[i - off];
                }
            }
            d += len;
        }
    }
    if d != n {
        return bad("shorter than its stated length");
    }
    out.truncate(n);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod snappy_tests {
    use proptest::prelude::*;

    use super::decompress;

    fn with_snap(rec: &[u8]) -> Result<Vec<u8>, ()> {
        let n = snap::raw::decompress_len(rec).map_err(|_| ())?;
        let mut out = vec![0; n];
        snap::raw::Decoder::new()
            .decompress(rec, &mut out)
            .map_err(|_| ())?;
        Ok(out)
    }

    proptest! {
        /// Round trip of `snap`'s encoding, on data with the short-range
        /// repeats of WAL samples as well as long runs and noise.
        #[test]
        fn decodes_what_snap_encodes(
            parts in prop::collection::vec((any::<u8>(), 0usize..4, 1usize..80), 0..200),
            noise in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut data = Vec::new();
            for (b, kind, len) in parts {
                match kind {
                    0 => data.extend(std::iter::repeat_n(b, len)),
                    1 => data.extend((0..len).map(|i| b.wrapping_add((i % 10) as u8))),
                    2 => data.extend_from_slice(&noise[..len.min(noise.len())]),
                    _ => {
                        let back = data.len().saturating_sub(len * 3);
                        let copy = data[back..].to_vec();
                        data.extend(copy);
                    }
                }
            }
            let rec = snap::raw::Encoder::new().compress_vec(&data).unwrap();
            // A reused, dirty buffer must not matter.
            let mut out = vec![7u8; 3];
            decompress(&rec, &mut out).unwrap();
            prop_assert_eq!(&out, &data);
            decompress(&rec, &mut out).unwrap();
            prop_assert_eq!(&out, &data);
        }

        /// On any input: no panic, and the same verdict and bytes as `snap`.
        #[test]
        fn agrees_with_snap_on_any_input(
            rec in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut out = Vec::new();
            let got = decompress(&rec, &mut out).map(|()| out);
            prop_assert_eq!(got.ok(), with_snap(&rec).ok());
        }

        /// Mutated valid records: no panic, same verdict and bytes as `snap`.
        #[test]
        fn agrees_with_snap_on_damaged_records(
            data in prop::collection::vec(0u8..4, 0..400),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut rec = snap::raw::Encoder::new().compress_vec(&data).unwrap();
            for (i, b) in flips {
                let i = i.index(rec.len());
                rec[i] = b;
            }
            let mut out = Vec::new();
            let got = decompress(&rec, &mut out).map(|()| out);
            prop_assert_eq!(got.ok(), with_snap(&rec).ok());
        }
    }
}
