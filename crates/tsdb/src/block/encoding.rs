//! Byte encoding helpers shared by the block files: an append-only encoder
//! and a bounds-checked decoder that reports errors instead of panicking.

use crate::TsdbError;

/// Appends integers and strings in the encodings the block files use.
#[derive(Debug, Default, Clone)]
pub(crate) struct Enc {
    pub(crate) b: Vec<u8>,
}

impl Enc {
    pub(crate) fn be32(&mut self, v: u32) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn be64(&mut self, v: u64) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn byte(&mut self, v: u8) {
        self.b.push(v);
    }
    pub(crate) fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.b.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.b.push(v as u8);
    }
    pub(crate) fn varint(&mut self, v: i64) {
        self.uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
    pub(crate) fn uvarint_str(&mut self, s: &str) {
        self.uvarint(s.len() as u64);
        self.b.extend_from_slice(s.as_bytes());
    }
    pub(crate) fn len(&self) -> usize {
        self.b.len()
    }
}

/// Appends the uvarint encoding of `v` to `out`.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, v: u64) {
    let mut e = Enc {
        b: std::mem::take(out),
    };
    e.uvarint(v);
    *out = e.b;
}

/// CRC32 with the Castagnoli polynomial, as every Prometheus file uses.
pub(crate) fn crc(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

/// Reads from a byte slice; every read checks bounds and returns an error.
#[derive(Debug, Clone)]
pub(crate) struct Dec<'a> {
    pub(crate) b: &'a [u8],
    what: &'static str,
}

fn corrupt(what: &str, msg: &str) -> TsdbError {
    TsdbError::CorruptBlock(format!("{what}: {msg}"))
}

impl<'a> Dec<'a> {
    pub(crate) fn new(b: &'a [u8], what: &'static str) -> Dec<'a> {
        Dec { b, what }
    }
    fn err(&self, msg: &str) -> TsdbError {
        corrupt(self.what, msg)
    }
    pub(crate) fn remaining(&self) -> usize {
        self.b.len()
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], TsdbError> {
        if n > self.b.len() {
            return Err(self.err("unexpected end of data"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(crate) fn byte(&mut self) -> Result<u8, TsdbError> {
        Ok(self.bytes(1)?[0])
    }
    pub(crate) fn be32(&mut self) -> Result<u32, TsdbError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn be64(&mut self) -> Result<u64, TsdbError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn uvarint(&mut self) -> Result<u64, TsdbError> {
        let mut x: u64 = 0;
        let mut s = 0u32;
        for i in 0..10 {
            let Some(&c) = self.b.get(i) else {
                return Err(self.err("truncated varint"));
            };
            if c < 0x80 {
                if i == 9 && c > 1 {
                    return Err(self.err("varint overflows 64 bits"));
                }
                self.b = &self.b[i + 1..];
                return Ok(x | (u64::from(c) << s));
            }
            x |= u64::from(c & 0x7f) << s;
            s += 7;
        }
        Err(self.err("varint overflows 64 bits"))
    }
    pub(crate) fn uvarint32(&mut self) -> Result<u32, TsdbError> {
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| self.err("value exceeds 32 bits"))
    }
    pub(crate) fn varint(&mut self) -> Result<i64, TsdbError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    pub(crate) fn uvarint_str(&mut self) -> Result<&'a str, TsdbError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| self.err("string length too large"))?;
        let b = self.bytes(n)?;
        std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))
    }
}

/// The section `[len <4b> | body <len bytes> | crc32 <4b>]` at `off` of
/// `file`, its checksum verified; returns the body.
pub(crate) fn section<'a>(
    file: &'a [u8],
    off: usize,
    what: &'static str,
) -> Result<&'a [u8], TsdbError> {
    let mut d = Dec::new(file.get(off..).unwrap_or_default(), what);
    let len = d.be32()? as usize;
    let body = d.bytes(len)?;
    let want = d.be32()?;
    if crc(body) != want {
        return Err(corrupt(what, "checksum mismatch"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut e = Enc::default();
            e.uvarint(u);
            e.varint(i);
            let mut d = Dec::new(&e.b, "t");
            prop_assert_eq!(d.uvarint().ok(), Some(u));
            prop_assert_eq!(d.varint().ok(), Some(i));
            prop_assert_eq!(d.remaining(), 0);
        }

        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Dec::new(&b, "t");
            let _ = d.uvarint();
            let _ = d.uvarint_str();
            let _ = d.be64();
            let _ = section(&b, 3, "t");
        }
    }
}
