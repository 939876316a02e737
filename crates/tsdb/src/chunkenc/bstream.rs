//! Bit streams: the most-significant-bit-first writer and reader under the
//! XOR chunk encoding.
//!
//! Bits are packed from the high bit of each byte down to the low bit, bytes
//! in order, exactly like Prometheus's `bstream`; the last byte is padded
//! with zero bits. The writer ORs new bits into the last byte, so a stream
//! can be continued from any bit position as long as the padding is zero.

/// An append-only bit stream over an owned byte vector.
///
/// Bits accumulate in a 64-bit register and reach the vector eight bytes at
/// a time. The register lives with the encoder state, so an append touches
/// the buffer only on every few samples, and then only to store: in a head
/// with many series, reading the tail byte of each series' buffer would be a
/// cache miss per sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BitWriter {
    /// Whole bytes written out.
    bytes: Vec<u8>,
    /// Pending bits, left-aligned: the most significant bit is the oldest.
    acc: u64,
    /// Number of pending bits (0..64).
    nacc: u8,
}

impl BitWriter {
    /// A writer continuing after `bytes`, whose last byte has `free` unused
    /// low bits (0..=7).
    pub(crate) fn from_parts(mut bytes: Vec<u8>, free: u8) -> BitWriter {
        let free = free.min(7);
        let mut w = BitWriter {
            bytes: Vec::new(),
            acc: 0,
            nacc: 0,
        };
        if free > 0
            && let Some(last) = bytes.pop()
        {
            w.acc = u64::from(last & !((1u8 << free) - 1)) << 56;
            w.nacc = 8 - free;
        }
        w.bytes = bytes;
        w
    }

    /// The bytes already written out (pending bits excluded).
    pub(crate) fn flushed(&self) -> &[u8] {
        &self.bytes
    }

    /// The pending bits as bytes (the last one zero-padded) and how many of
    /// those bytes are meaningful.
    pub(crate) fn pending(&self) -> ([u8; 8], usize) {
        (self.acc.to_be_bytes(), usize::from(self.nacc).div_ceil(8))
    }

    /// Length in bytes of the whole stream, padding included.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len() + usize::from(self.nacc).div_ceil(8)
    }

    /// Gives up the whole stream, padding included.
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        let (tail, n) = self.pending();
        self.bytes.extend_from_slice(&tail[..n]);
        self.bytes
    }

    /// Heap bytes reserved by the buffer.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Gives back the buffer's unused reserve.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }

    /// Writes one bit.
    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes one whole byte (not necessarily byte-aligned).
    #[inline]
    pub(crate) fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }

    #[inline]
    fn flush_word(&mut self, word: u64) {
        if self.bytes.capacity() - self.bytes.len() < 8 {
            // Grow in small steps: most chunks stay far below the doubling
            // sizes a Vec would jump to.
            let extra = (self.bytes.len() / 2).clamp(16, 128);
            self.bytes.reserve_exact(extra);
        }
        self.bytes.extend_from_slice(&word.to_be_bytes());
    }

    /// Writes the `nbits` (0..=64) low bits of `u`, most significant first.
    #[inline]
    pub(crate) fn write_bits(&mut self, u: u64, nbits: u32) {
        let n = nbits.min(64);
        if n == 0 {
            return;
        }
        let u = u & low_mask(n);
        let space = 64 - u32::from(self.nacc);
        if n < space {
            self.acc |= u << (space - n);
            self.nacc += n as u8;
        } else {
            // Fill the register, write it out, keep the rest (fewer than 64
            // bits, since space >= 1).
            let rest = n - space;
            let word = self.acc | (u >> rest);
            self.flush_word(word);
            self.acc = if rest == 0 { 0 } else { u << (64 - rest) };
            self.nacc = rest as u8;
        }
    }
}

/// A mask of the `n` low bits (`n` in 0..=64).
#[inline]
pub(crate) fn low_mask(n: u32) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// Reads bits back from a byte slice given on every call, so the reader can
/// live next to the buffer it reads without borrowing it.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitReader {
    /// Next byte of the slice to load into `buf`.
    pos: usize,
    /// Loaded bits; the `valid` low bits are still unread.
    buf: u64,
    valid: u32,
}

impl BitReader {
    /// A reader starting at byte `start`.
    pub(crate) fn new(start: usize) -> BitReader {
        BitReader {
            pos: start,
            buf: 0,
            valid: 0,
        }
    }

    /// Bits consumed since byte 0 of the slice.
    pub(crate) fn bit_position(&self) -> usize {
        self.pos * 8 - self.valid as usize
    }

    fn refill(&mut self, data: &[u8]) -> bool {
        let Some(rest) = data.get(self.pos..) else {
            return false;
        };
        if rest.is_empty() {
            return false;
        }
        if let Some(eight) = rest.get(..8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(eight);
            self.buf = u64::from_be_bytes(a);
            self.pos += 8;
            self.valid = 64;
        } else {
            self.buf = rest.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            self.valid = rest.len() as u32 * 8;
            self.pos += rest.len();
        }
        true
    }

    /// Reads `n` (1..=64) bits as the low bits of the result; `None` at the
    /// end of the data.
    #[inline]
    pub(crate) fn read_bits(&mut self, data: &[u8], n: u32) -> Option<u64> {
        if n <= self.valid {
            self.valid -= n;
            return Some((self.buf >> self.valid) & low_mask(n));
        }
        let have = self.valid;
        let hi = self.buf & low_mask(have);
        let rem = n - have;
        self.valid = 0;
        if !self.refill(data) || rem > self.valid {
            return None;
        }
        self.valid -= rem;
        let lo = (self.buf >> self.valid) & low_mask(rem);
        Some(if have == 0 { lo } else { (hi << rem) | lo })
    }

    /// Reads one bit.
    #[inline]
    pub(crate) fn read_bit(&mut self, data: &[u8]) -> Option<bool> {
        self.read_bits(data, 1).map(|b| b == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_msb_first() {
        let mut w = BitWriter::default();
        w.write_bit(true);
        w.write_bits(0b01, 2);
        w.write_byte(0xff);
        w.write_bits(0, 0);
        w.write_bits(0x1234_5678_9abc_def0, 64);
        assert_eq!(w.len(), 10);
        let d = w.clone().into_bytes();
        // 1 01 11111 | 111 + 64 bits...
        assert_eq!(d[0], 0b1011_1111);
        let mut r = BitReader::new(0);
        assert_eq!(r.read_bit(&d), Some(true));
        assert_eq!(r.read_bits(&d, 2), Some(1));
        assert_eq!(r.read_bits(&d, 8), Some(0xff));
        assert_eq!(r.read_bits(&d, 64), Some(0x1234_5678_9abc_def0));
        assert_eq!(r.bit_position(), 75);
        // Five padding bits remain, then the end.
        assert_eq!(r.read_bits(&d, 5), Some(0));
        assert_eq!(r.read_bit(&d), None);
    }

    proptest::proptest! {
        #[test]
        fn write_read_roundtrip(items in proptest::collection::vec((proptest::num::u64::ANY, 0u32..=64), 0..200)) {
            let mut w = BitWriter::default();
            for &(v, n) in &items {
                w.write_bits(v, n);
            }
            let total: u32 = items.iter().map(|x| x.1).sum();
            proptest::prop_assert_eq!(w.len(), total.div_ceil(8) as usize);
            // Continuing from the bytes gives the same stream.
            let d = w.into_bytes();
            let mut w2 = BitWriter::from_parts(d.clone(), ((8 - total % 8) % 8) as u8);
            w2.write_bits(0b101, 3);
            let d2 = w2.into_bytes();
            let mut r2 = BitReader::new(0);
            for &(v, n) in &items {
                if n == 0 { continue; }
                proptest::prop_assert_eq!(r2.read_bits(&d2, n), Some(v & low_mask(n)));
            }
            proptest::prop_assert_eq!(r2.read_bits(&d2, 3), Some(0b101));
            let mut r = BitReader::new(0);
            for &(v, n) in &items {
                if n == 0 { continue; }
                proptest::prop_assert_eq!(r.read_bits(&d, n), Some(v & low_mask(n)));
            }
        }
    }
}
