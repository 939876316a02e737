//! The building blocks of the histogram chunk encodings: a bit writer that
//! keeps its bytes materialized, Prometheus's "varbit" integers, and the
//! Gorilla XOR float encoding shared with the XOR chunk.
//!
//! Histogram chunks are rewritten (recoded) in place and must hand out
//! their bytes at any time through `&self`, so unlike the XOR chunk's
//! register-buffered writer, [`ByteBitWriter`] stores every bit directly in
//! its vector. Histogram samples are tens to hundreds of bits each, so the
//! per-bit cost matters much less than for float samples.
//!
//! The formats are described in `crates/tsdb/docs/format/chunks.md`.

use super::bstream::{BitReader, low_mask};

/// A most-significant-bit-first bit writer over a byte vector whose bytes
/// are always complete (the last one zero-padded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ByteBitWriter {
    pub(crate) bytes: Vec<u8>,
    /// Unused low bits of the last byte (0..=7; 0 also when empty).
    free: u8,
}

impl ByteBitWriter {
    /// A writer continuing `bytes`, whose last byte has `free` unused low
    /// bits. Those bits are cleared.
    pub(crate) fn from_parts(mut bytes: Vec<u8>, free: u8) -> ByteBitWriter {
        let free = if bytes.is_empty() { 0 } else { free.min(7) };
        if free > 0
            && let Some(last) = bytes.last_mut()
        {
            *last &= !((1u8 << free) - 1);
        }
        ByteBitWriter { bytes, free }
    }

    /// Writes one bit.
    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes the `nbits` (0..=64) low bits of `u`, most significant first.
    pub(crate) fn write_bits(&mut self, u: u64, nbits: u32) {
        let mut n = nbits.min(64);
        let u = u & low_mask(n);
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let k = n.min(u32::from(self.free));
            let chunk = ((u >> (n - k)) & low_mask(k)) as u8;
            let shift = u32::from(self.free) - k;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << shift;
            }
            self.free -= k as u8;
            n -= k;
        }
    }
}

/// True when `x` lies in `-(2^(nbits-1) - 1) ..= 2^(nbits-1)`.
#[inline]
fn fits(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// The value widths of the varbit buckets after prefixes `10`, `110`, ...
/// `11111110`; prefix `11111111` is followed by 64 bits.
const WIDTHS: [u32; 7] = [3, 6, 9, 12, 18, 25, 56];

/// Writes a signed varbit integer.
pub(crate) fn put_varbit_int(w: &mut ByteBitWriter, v: i64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (i, &width) in WIDTHS.iter().enumerate() {
        if fits(v, width) {
            // i+1 one bits and a zero: 0b10, 0b110, ...
            let plen = i as u32 + 2;
            w.write_bits(low_mask(plen) - 1, plen);
            w.write_bits(v as u64, width);
            return;
        }
    }
    w.write_bits(0xff, 8);
    w.write_bits(v as u64, 64);
}

/// Writes an unsigned varbit integer (same buckets, no sign).
pub(crate) fn put_varbit_uint(w: &mut ByteBitWriter, v: u64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (i, &width) in WIDTHS.iter().enumerate() {
        if v <= low_mask(width) {
            let plen = i as u32 + 2;
            w.write_bits(low_mask(plen) - 1, plen);
            w.write_bits(v, width);
            return;
        }
    }
    w.write_bits(0xff, 8);
    w.write_bits(v, 64);
}

/// Decoding error message for a stream that ends too early.
pub(crate) const EOF: &str = "unexpected end of data";

/// Reads the varbit prefix and returns the value width (0 for the value 0).
fn read_width(r: &mut BitReader, data: &[u8]) -> Result<u32, &'static str> {
    for i in 0..8 {
        if !r.read_bit(data).ok_or(EOF)? {
            return Ok(if i == 0 { 0 } else { WIDTHS[i - 1] });
        }
    }
    Ok(64)
}

/// Reads a signed varbit integer.
pub(crate) fn read_varbit_int(r: &mut BitReader, data: &[u8]) -> Result<i64, &'static str> {
    let width = read_width(r, data)?;
    match width {
        0 => Ok(0),
        64 => Ok(r.read_bits(data, 64).ok_or(EOF)? as i64),
        w => {
            let mut bits = r.read_bits(data, w).ok_or(EOF)?;
            if bits > 1u64 << (w - 1) {
                bits = bits.wrapping_sub(1u64 << w);
            }
            Ok(bits as i64)
        }
    }
}

/// Reads an unsigned varbit integer.
pub(crate) fn read_varbit_uint(r: &mut BitReader, data: &[u8]) -> Result<u64, &'static str> {
    match read_width(r, data)? {
        0 => Ok(0),
        w => r.read_bits(data, w).ok_or(EOF),
    }
}

/// "No window yet" marker of a fresh XOR encoder.
pub(crate) const NO_WINDOW: u8 = 0xff;

/// XOR-encodes `new` against `cur` with the window (`leading`,
/// `trailing`), updating the window; identical to the XOR chunk's value
/// encoding.
pub(crate) fn xor_write(
    w: &mut ByteBitWriter,
    new: f64,
    cur: f64,
    leading: &mut u8,
    trailing: &mut u8,
) {
    let delta = new.to_bits() ^ cur.to_bits();
    if delta == 0 {
        w.write_bit(false);
        return;
    }
    w.write_bit(true);
    let lz = (delta.leading_zeros() as u8).min(31);
    let tz = delta.trailing_zeros() as u8;
    if *leading != NO_WINDOW && lz >= *leading && tz >= *trailing {
        w.write_bit(false);
        let sig = 64 - u32::from(*leading) - u32::from(*trailing);
        w.write_bits(delta >> *trailing, sig);
        return;
    }
    *leading = lz;
    *trailing = tz;
    w.write_bit(true);
    w.write_bits(u64::from(lz), 5);
    let sig = 64 - u32::from(lz) - u32::from(tz);
    // 64 is written as 0 (0 significant bits cannot occur).
    w.write_bits(u64::from(sig), 6);
    w.write_bits(delta >> tz, sig);
}

/// Reads an XOR-encoded value into `value`, updating the window.
pub(crate) fn xor_read(
    r: &mut BitReader,
    data: &[u8],
    value: &mut f64,
    leading: &mut u8,
    trailing: &mut u8,
) -> Result<(), &'static str> {
    if !r.read_bit(data).ok_or(EOF)? {
        return Ok(());
    }
    if r.read_bit(data).ok_or(EOF)? {
        let lz = r.read_bits(data, 5).ok_or(EOF)? as u32;
        let mut sig = r.read_bits(data, 6).ok_or(EOF)? as u32;
        if sig == 0 {
            sig = 64;
        }
        if lz + sig > 64 {
            return Err("leading zeros plus significant bits exceed 64");
        }
        *leading = lz as u8;
        *trailing = (64 - lz - sig) as u8;
    }
    let used = u32::from(*leading) + u32::from(*trailing);
    if used >= 64 {
        return Err("value window is empty");
    }
    let bits = r.read_bits(data, 64 - used).ok_or(EOF)?;
    *value = f64::from_bits(value.to_bits() ^ (bits << *trailing));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varbit_bucket_edges() {
        // (value, encoded bit length) at every bucket boundary.
        let cases: [(i64, usize); 13] = [
            (0, 1),
            (1, 5),
            (4, 5),
            (-3, 5),
            (5, 9),
            (-4, 9),
            (32, 9),
            (33, 13),
            (2048, 17),
            (131072, 24),
            (16777216, 32),
            (1 << 55, 64),
            (i64::MIN, 72),
        ];
        for (v, len) in cases {
            let mut w = ByteBitWriter::default();
            put_varbit_int(&mut w, v);
            w.write_bits(0b1, 1);
            assert_eq!(w.bytes.len(), (len + 1).div_ceil(8), "value {v}");
            let mut r = BitReader::new(0);
            assert_eq!(read_varbit_int(&mut r, &w.bytes), Ok(v));
            assert_eq!(r.bit_position(), len, "value {v}");
            assert_eq!(r.read_bit(&w.bytes), Some(true));
        }
        // The byte patterns: 4 -> 10 100, -3 -> 10 101.
        let mut w = ByteBitWriter::default();
        put_varbit_int(&mut w, 4);
        put_varbit_int(&mut w, -3);
        assert_eq!(w.bytes, vec![0b1010_0101, 0b0100_0000]);
        let mut w = ByteBitWriter::default();
        put_varbit_uint(&mut w, 7);
        put_varbit_uint(&mut w, 8);
        assert_eq!(w.bytes, vec![0b1011_1110, 0b0010_0000]);
    }

    proptest! {
        #[test]
        fn varbit_roundtrip(ints in proptest::collection::vec(any::<i64>(), 0..50),
                            uints in proptest::collection::vec(any::<u64>(), 0..50),
                            small in proptest::collection::vec(-300i64..300, 0..50)) {
            let mut w = ByteBitWriter::default();
            for &v in ints.iter().chain(&small) { put_varbit_int(&mut w, v); }
            for &v in &uints { put_varbit_uint(&mut w, v); }
            let mut r = BitReader::new(0);
            for &v in ints.iter().chain(&small) { prop_assert_eq!(read_varbit_int(&mut r, &w.bytes), Ok(v)); }
            for &v in &uints { prop_assert_eq!(read_varbit_uint(&mut r, &w.bytes), Ok(v)); }
        }

        #[test]
        fn writer_continues_from_parts(items in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..40), split in 0usize..40) {
            let mut w = ByteBitWriter::default();
            let split = split.min(items.len());
            for &(v, n) in &items[..split] { w.write_bits(v, n); }
            let total: u32 = items[..split].iter().map(|x| x.1).sum();
            let mut bytes = w.bytes.clone();
            if let Some(l) = bytes.last_mut() { *l |= (1u8 << ((8 - total % 8) % 8)).wrapping_sub(1); }
            let mut w2 = ByteBitWriter::from_parts(bytes, ((8 - total % 8) % 8) as u8);
            for &(v, n) in &items[split..] { w.write_bits(v, n); w2.write_bits(v, n); }
            prop_assert_eq!(&w.bytes, &w2.bytes);
            let mut r = BitReader::new(0);
            for &(v, n) in &items { if n > 0 { prop_assert_eq!(r.read_bits(&w.bytes, n), Some(v & low_mask(n))); } }
        }
    }
}
