//! The Gorilla-style XOR chunk, bit-compatible with Prometheus's `XORChunk`.
//!
//! The byte layout is specified in our own words in
//! `crates/tsdb/docs/format/chunks.md`; this file follows that text.

use pharos_model::{Sample, Timestamp};

use super::bstream::{BitReader, BitWriter};
use crate::TsdbError;

/// Bytes of the big-endian sample-count header.
const HEADER_LEN: usize = 2;
/// Initial buffer capacity of a new chunk: header plus the first sample
/// (at most 10 + 8 bytes) plus a few more.
const INITIAL_CAPACITY: usize = 32;
/// "No leading/trailing window chosen yet" marker of the appender.
const NO_WINDOW: u8 = 0xff;
/// Longest (u)varint encoding of a 64-bit integer.
const MAX_VARINT_LEN: usize = 10;

/// An XOR-encoded chunk of float samples: a 2-byte sample count followed by
/// a bit stream.
///
/// A chunk holds at most `u16::MAX` samples. It is only a container of
/// finished bytes; use [`XorAppender`] to add samples and [`XorIterator`] to
/// read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorChunk {
    bytes: Vec<u8>,
}

impl Default for XorChunk {
    fn default() -> Self {
        XorChunk::new()
    }
}

impl XorChunk {
    /// An empty chunk (count 0).
    pub fn new() -> XorChunk {
        XorChunk { bytes: vec![0, 0] }
    }

    /// Wraps encoded bytes (for example read back from disk). They are not
    /// checked here; iteration reports malformed data.
    pub fn from_bytes(bytes: Vec<u8>) -> XorChunk {
        XorChunk { bytes }
    }

    /// The encoded bytes: header, samples and zero padding to a whole byte.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives up the encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Number of samples, read from the header.
    pub fn num_samples(&self) -> u16 {
        num_samples(&self.bytes)
    }

    /// An iterator over the samples.
    pub fn iter(&self) -> XorIterator<&[u8]> {
        XorIterator::new(&self.bytes)
    }

    /// Turns the chunk into an appender that continues it. The whole chunk
    /// is decoded once to recover the encoder state; fails if the bytes are
    /// not a valid chunk.
    pub fn into_appender(self) -> Result<XorAppender, TsdbError> {
        let bytes = self.bytes;
        if bytes.len() < HEADER_LEN {
            return Err(TsdbError::CorruptChunk(format!(
                "{} bytes is shorter than the chunk header",
                bytes.len()
            )));
        }
        let mut it = XorIterator::new(bytes.as_slice());
        for _ in it.by_ref() {}
        if let Some(e) = it.err() {
            return Err(e.clone());
        }
        let st = it.state;
        let end_bits = it.reader.bit_position();
        let used = end_bits.div_ceil(8);
        let free = (used * 8 - end_bits) as u8;
        let mut bytes = bytes;
        bytes.truncate(used);
        let n = num_samples(&bytes);
        Ok(XorAppender {
            // The writer drops the padding bits of the last byte itself.
            stream: BitWriter::from_parts(bytes, free),
            num: n,
            t: st.t,
            v: st.v,
            t_delta: st.t_delta,
            leading: if n == 0 { NO_WINDOW } else { st.leading },
            trailing: st.trailing,
        })
    }
}

fn num_samples(b: &[u8]) -> u16 {
    match b {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => 0,
    }
}

/// Builds an XOR chunk sample by sample, keeping the encoder state
/// (previous timestamp, delta, value and XOR window) between calls.
///
/// The last few bytes of the stream and the sample count live in the
/// appender until read out ([`XorAppender::to_bytes`],
/// [`XorAppender::into_chunk`]): appending touches the buffer only to store
/// whole words, which matters when a head appends to 100 k chunks in turn.
///
/// Timestamps should ascend; the encoding itself works with wrapping
/// arithmetic and round-trips any sequence, but time-based readers (seek)
/// assume ascending order.
#[derive(Debug, Clone)]
pub struct XorAppender {
    /// Header placeholder and samples; the header is filled in on read-out.
    stream: BitWriter,
    num: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        XorAppender::new()
    }
}

impl XorAppender {
    /// An appender over a new, empty chunk.
    pub fn new() -> XorAppender {
        XorAppender::with_capacity(INITIAL_CAPACITY)
    }

    /// An appender over a new, empty chunk with `capacity` bytes (header
    /// included) reserved.
    pub fn with_capacity(capacity: usize) -> XorAppender {
        let mut bytes = Vec::with_capacity(capacity.max(HEADER_LEN));
        bytes.extend_from_slice(&[0, 0]);
        XorAppender {
            stream: BitWriter::from_parts(bytes, 0),
            num: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// The chunk's bytes so far, as an iterator of known length (collects
    /// into `Vec<u8>` or `Arc<[u8]>` with a single allocation).
    pub fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let body = self.stream.flushed().get(HEADER_LEN..).unwrap_or(&[]);
        let (tail, n) = self.stream.pending();
        self.num
            .to_be_bytes()
            .into_iter()
            .chain(body.iter().copied())
            .chain(tail.into_iter().take(n))
    }

    /// A copy of the chunk's bytes so far.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes().collect()
    }

    /// Length in bytes of the chunk so far.
    pub fn len_bytes(&self) -> usize {
        self.stream.len()
    }

    /// Heap bytes reserved by the buffer.
    pub fn capacity(&self) -> usize {
        self.stream.capacity()
    }

    /// Gives back the buffer's unused reserve (for an appender sized
    /// generously up front, once no more samples are expected soon).
    pub fn shrink_to_fit(&mut self) {
        self.stream.shrink_to_fit();
    }

    /// Finishes the chunk.
    pub fn into_chunk(self) -> XorChunk {
        let num = self.num.to_be_bytes();
        let mut bytes = self.stream.into_bytes();
        if let [a, b, ..] = bytes.as_mut_slice() {
            *a = num[0];
            *b = num[1];
        }
        XorChunk { bytes }
    }

    /// Number of samples appended (including any the chunk held before).
    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// Timestamp of the last sample (meaningless while empty).
    pub fn last_t(&self) -> Timestamp {
        self.t
    }

    /// Value of the last sample (meaningless while empty).
    pub fn last_v(&self) -> f64 {
        f64::from_bits(self.v)
    }

    /// Appends one sample. Fails only when the chunk already holds
    /// `u16::MAX` samples.
    pub fn append(&mut self, t: Timestamp, v: f64) -> Result<(), TsdbError> {
        let num = self.num;
        if num == u16::MAX {
            return Err(TsdbError::ChunkFull(num));
        }
        let vbits = v.to_bits();
        let mut t_delta = 0;
        match num {
            0 => {
                self.put_uvarint(zigzag(t));
                self.stream.write_bits(vbits, 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                self.put_uvarint(t_delta);
                self.write_value(vbits);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                let w = &mut self.stream;
                if dod == 0 {
                    w.write_bit(false);
                } else if fits(dod, 14) {
                    w.write_bits(0b10, 2);
                    w.write_bits(dod as u64, 14);
                } else if fits(dod, 17) {
                    w.write_bits(0b110, 3);
                    w.write_bits(dod as u64, 17);
                } else if fits(dod, 20) {
                    w.write_bits(0b1110, 4);
                    w.write_bits(dod as u64, 20);
                } else {
                    w.write_bits(0b1111, 4);
                    w.write_bits(dod as u64, 64);
                }
                self.write_value(vbits);
            }
        }
        self.t = t;
        self.v = vbits;
        self.t_delta = t_delta;
        self.num = num + 1;
        Ok(())
    }

    fn put_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.stream.write_byte((x as u8) | 0x80);
            x >>= 7;
        }
        self.stream.write_byte(x as u8);
    }

    fn write_value(&mut self, vbits: u64) {
        let delta = vbits ^ self.v;
        let w = &mut self.stream;
        if delta == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        // At most 31 leading zeros fit the 5-bit field.
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            w.write_bit(false);
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            w.write_bits(delta >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            w.write_bit(true);
            w.write_bits(u64::from(leading), 5);
            let sig = 64 - u32::from(leading) - u32::from(trailing);
            // 64 significant bits do not fit 6 bits; 0 stands for 64 (0 itself
            // never occurs: it would mean delta == 0).
            w.write_bits(u64::from(sig), 6);
            w.write_bits(delta >> trailing, sig);
        }
    }
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// True when `x` lies in the range of an `nbits`-bit bucket:
/// `-(2^(nbits-1) - 1) ..= 2^(nbits-1)`.
#[inline]
fn fits(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Decoder state, shared with the appender reconstruction.
#[derive(Debug, Clone, Copy, Default)]
struct DecodeState {
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

/// Decodes an XOR chunk held in any byte container (`&[u8]`, `Arc<[u8]>`,
/// `Vec<u8>`).
///
/// Never panics, whatever the bytes: a malformed chunk ends iteration and
/// [`XorIterator::err`] tells why.
#[derive(Debug, Clone)]
pub struct XorIterator<B> {
    data: B,
    reader: BitReader,
    num_total: u16,
    num_read: u16,
    state: DecodeState,
    err: Option<TsdbError>,
}

impl<B: AsRef<[u8]>> XorIterator<B> {
    /// An iterator over the chunk `data` (header included).
    pub fn new(data: B) -> XorIterator<B> {
        let bytes = data.as_ref();
        let (num_total, err) = if bytes.len() < HEADER_LEN {
            (
                0,
                Some(TsdbError::CorruptChunk(format!(
                    "{} bytes is shorter than the chunk header",
                    bytes.len()
                ))),
            )
        } else {
            (num_samples(bytes), None)
        };
        XorIterator {
            data,
            reader: BitReader::new(HEADER_LEN),
            num_total,
            num_read: 0,
            state: DecodeState::default(),
            err,
        }
    }

    /// The error that ended iteration early, if any.
    pub fn err(&self) -> Option<&TsdbError> {
        self.err.as_ref()
    }

    /// The number of samples the header announces.
    pub fn num_samples(&self) -> u16 {
        self.num_total
    }

    /// The current sample, once [`Iterator::next`] or
    /// [`XorIterator::seek`] has returned one.
    pub fn at(&self) -> Option<Sample> {
        (self.num_read > 0 && self.err.is_none()).then_some(Sample {
            t: self.state.t,
            v: f64::from_bits(self.state.v),
        })
    }

    /// Advances to the first sample with `t >= ts` and returns it; returns
    /// the current sample again if it already qualifies. Never moves back.
    pub fn seek(&mut self, ts: Timestamp) -> Option<Sample> {
        if self.err.is_some() {
            return None;
        }
        while self.num_read == 0 || self.state.t < ts {
            self.next()?;
        }
        self.at()
    }

    fn fail(&mut self, what: &str) -> Option<Sample> {
        self.err = Some(TsdbError::CorruptChunk(format!(
            "{what} (sample {} of {})",
            self.num_read + 1,
            self.num_total
        )));
        None
    }

    fn read_uvarint(&mut self) -> Result<u64, &'static str> {
        let data = self.data.as_ref();
        let mut x = 0u64;
        let mut shift = 0u32;
        for i in 0..MAX_VARINT_LEN {
            let Some(b) = self.reader.read_bits(data, 8) else {
                return Err("unexpected end of data in varint");
            };
            if b < 0x80 {
                if i == MAX_VARINT_LEN - 1 && b > 1 {
                    return Err("varint overflows 64 bits");
                }
                return Ok(x | (b << shift));
            }
            x |= (b & 0x7f) << shift;
            shift += 7;
        }
        Err("varint overflows 64 bits")
    }

    fn read_value(&mut self) -> Result<(), &'static str> {
        const EOF: &str = "unexpected end of data in value";
        let data = self.data.as_ref();
        let r = &mut self.reader;
        if !r.read_bit(data).ok_or(EOF)? {
            return Ok(());
        }
        let st = &mut self.state;
        if r.read_bit(data).ok_or(EOF)? {
            let leading = r.read_bits(data, 5).ok_or(EOF)? as u32;
            let mut sig = r.read_bits(data, 6).ok_or(EOF)? as u32;
            if sig == 0 {
                sig = 64;
            }
            if leading + sig > 64 {
                return Err("leading zeros plus significant bits exceed 64");
            }
            st.leading = leading as u8;
            st.trailing = (64 - leading - sig) as u8;
        }
        let sig = 64 - u32::from(st.leading) - u32::from(st.trailing);
        if sig == 0 || sig > 64 {
            return Err("value window is empty");
        }
        let bits = r.read_bits(data, sig).ok_or(EOF)?;
        st.v ^= bits << st.trailing;
        Ok(())
    }

    fn decode_next(&mut self) -> Result<(), &'static str> {
        const EOF: &str = "unexpected end of data in timestamp";
        match self.num_read {
            0 => {
                let ux = self.read_uvarint()?;
                let t = ((ux >> 1) as i64) ^ -((ux & 1) as i64);
                let v = self
                    .reader
                    .read_bits(self.data.as_ref(), 64)
                    .ok_or("unexpected end of data in first value")?;
                self.state.t = t;
                self.state.v = v;
                return Ok(());
            }
            1 => {
                let d = self.read_uvarint()?;
                self.state.t_delta = d;
                self.state.t = self.state.t.wrapping_add(d as i64);
            }
            _ => {
                let data = self.data.as_ref();
                let r = &mut self.reader;
                let mut prefix = 0u8;
                for _ in 0..4 {
                    prefix <<= 1;
                    if !r.read_bit(data).ok_or(EOF)? {
                        break;
                    }
                    prefix |= 1;
                }
                let sz = match prefix {
                    0b0 => 0,
                    0b10 => 14,
                    0b110 => 17,
                    0b1110 => 20,
                    _ => 64,
                };
                let dod = match sz {
                    0 => 0i64,
                    64 => r.read_bits(data, 64).ok_or(EOF)? as i64,
                    _ => {
                        let bits = r.read_bits(data, sz).ok_or(EOF)?;
                        // Values above 2^(sz-1) are negative numbers.
                        if bits > (1u64 << (sz - 1)) {
                            bits as i64 - (1i64 << sz)
                        } else {
                            bits as i64
                        }
                    }
                };
                self.state.t_delta = (self.state.t_delta as i64).wrapping_add(dod) as u64;
                self.state.t = self.state.t.wrapping_add(self.state.t_delta as i64);
            }
        }
        self.read_value()
    }
}

impl<B: AsRef<[u8]>> Iterator for XorIterator<B> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        if self.err.is_some() || self.num_read >= self.num_total {
            return None;
        }
        if let Err(what) = self.decode_next() {
            return self.fail(what);
        }
        self.num_read += 1;
        Some(Sample {
            t: self.state.t,
            v: f64::from_bits(self.state.v),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(samples: &[(i64, f64)]) -> XorChunk {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, v).unwrap();
        }
        // The live view and the finished chunk agree.
        let live = a.to_bytes();
        assert_eq!(live.len(), a.len_bytes());
        let c = a.into_chunk();
        assert_eq!(live, c.bytes());
        c
    }

    fn same(a: &[Sample], b: &[(i64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.t == y.0 && x.v.to_bits() == y.1.to_bits())
    }

    /// Bytes derived by hand from docs/format/chunks.md for six samples:
    ///
    /// ```text
    /// header            00 06                  6 samples
    /// s0 t=1000         D0 0F                  varint: zigzag(1000)=2000 = 0x0F<<7 | 0x50
    /// s0 v=1.0          3F F0 00 00 00 00 00 00
    /// s1 t=2000         E8 07                  uvarint(1000) = 0x07<<7 | 0x68
    /// --- bit stream from here (byte-aligned so far) ---
    /// s1 v=1.0          0                      xor 0
    /// s2 t=3000         0                      dod 0
    /// s2 v=2.0          1 1 00001 001011 11111111111
    ///                   xor 0x7FF0.. : new window, leading 1, 11 significant bits
    /// s3 t=4500         10 00000111110100      dod 500 in the 14-bit bucket
    /// s3 v=3.0          1 1 01100 000001 1     xor 1<<51: leading 12, trailing 51 (52 before: new window)
    /// s4 t=6000         0                      dod 0
    /// s4 v=2.0          1 0 1                  same xor: window reused, 1 bit
    /// s5 t=107500       1110 00011000011010100000   dod 100000 in the 20-bit bucket
    /// s5 v=2.0          0
    /// padding           000                    85 bits -> 11 bytes
    /// ```
    ///
    /// The 85 bits, grouped in bytes:
    /// `00110000 10010111 11111111 11100000 01111101 00110110 00000011
    ///  01011110 00011000 01101010 00000[000]`
    const GOLDEN: &[u8] = &[
        0x00, 0x06, 0xD0, 0x0F, 0x3F, 0xF0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xE8, 0x07, 0x30,
        0x97, 0xFF, 0xE0, 0x7D, 0x36, 0x03, 0x5E, 0x18, 0x6A, 0x00,
    ];
    const GOLDEN_SAMPLES: &[(i64, f64)] = &[
        (1000, 1.0),
        (2000, 1.0),
        (3000, 2.0),
        (4500, 3.0),
        (6000, 2.0),
        (107_500, 2.0),
    ];

    #[test]
    fn golden_bytes() {
        let c = encode(GOLDEN_SAMPLES);
        assert_eq!(c.bytes(), GOLDEN, "{:02X?}", c.bytes());
        let back: Vec<Sample> = XorIterator::new(GOLDEN).collect();
        assert!(same(&back, GOLDEN_SAMPLES), "{back:?}");
    }

    #[test]
    fn bucket_edges_roundtrip() {
        // Exercise every bucket boundary of the delta-of-delta encoding.
        let mut ts = vec![0i64, 1000];
        let mut delta = 1000i64;
        for dod in [
            0i64,
            8192,
            -8191,
            8193,
            -8192,
            65536,
            -65535,
            65537,
            -65536,
            524_288,
            -524_287,
            524_289,
            -524_288,
            1 << 40,
            -(1 << 40),
        ] {
            delta += dod;
            let last = *ts.last().unwrap();
            ts.push(last + delta);
        }
        let s: Vec<(i64, f64)> = ts.iter().map(|&t| (t, t as f64)).collect();
        let c = encode(&s);
        let back: Vec<Sample> = c.iter().collect();
        assert!(same(&back, &s));
    }

    #[test]
    fn special_values_and_extremes() {
        let s = vec![
            (i64::MIN, f64::NAN),
            (-5, pharos_model::stale_nan()),
            (0, f64::INFINITY),
            (1, f64::NEG_INFINITY),
            (2, -0.0),
            (3, 0.0),
            (4, f64::MIN_POSITIVE),
            (i64::MAX, f64::MAX),
        ];
        let back: Vec<Sample> = encode(&s).iter().collect();
        assert!(same(&back, &s));
        assert!(pharos_model::is_stale_nan(back[1].v));
    }

    #[test]
    fn seek_and_at() {
        let s: Vec<(i64, f64)> = (0..50).map(|i| (i * 10, i as f64)).collect();
        let c = encode(&s);
        let mut it = c.iter();
        assert_eq!(it.at(), None);
        assert_eq!(it.seek(-100).map(|x| x.t), Some(0));
        assert_eq!(it.seek(15).map(|x| x.t), Some(20));
        assert_eq!(it.seek(15).map(|x| x.t), Some(20));
        assert_eq!(it.next().map(|x| x.t), Some(30));
        assert_eq!(it.at().map(|x| x.t), Some(30));
        assert_eq!(it.seek(490).map(|x| x.t), Some(490));
        assert_eq!(it.seek(491), None);
        assert!(it.err().is_none());
    }

    #[test]
    fn empty_and_short() {
        let c = XorChunk::new();
        assert_eq!(c.bytes(), &[0, 0]);
        assert_eq!(XorAppender::new().to_bytes(), vec![0, 0]);
        assert_eq!(c.iter().count(), 0);
        let mut it = XorIterator::new(&[0u8][..]);
        assert_eq!(it.next(), None);
        assert!(it.err().is_some());
        // Count says 3 but data holds one sample.
        let mut b = encode(&[(5, 1.0)]).into_bytes();
        b[1] = 3;
        let mut it = XorIterator::new(b);
        assert_eq!(it.next().map(|s| s.t), Some(5));
        assert_eq!(it.next(), None);
        assert!(matches!(it.err(), Some(TsdbError::CorruptChunk(_))));
    }

    #[test]
    fn continue_from_bytes() {
        let s: Vec<(i64, f64)> = (0..30)
            .map(|i| (i * 15_000 + i % 3, (i * i) as f64 / 7.0))
            .collect();
        let (a, b) = s.split_at(13);
        let first = encode(a);
        let mut app = first.into_appender().unwrap();
        for &(t, v) in b {
            app.append(t, v).unwrap();
        }
        assert_eq!(app.len_bytes(), encode(&s).bytes().len());
        assert_eq!(app.to_bytes(), encode(&s).bytes());
        let arc: std::sync::Arc<[u8]> = app.bytes().collect();
        assert_eq!(&arc[..], encode(&s).bytes());
        assert_eq!(app.into_chunk().bytes(), encode(&s).bytes());
        let mut empty = XorChunk::new().into_appender().unwrap();
        empty.append(1, 2.0).unwrap();
        assert_eq!(empty.to_bytes(), encode(&[(1, 2.0)]).bytes());
        assert!(XorChunk::from_bytes(vec![0, 9, 1]).into_appender().is_err());
    }

    #[test]
    fn full_chunk_refuses() {
        let mut a = XorAppender::new();
        for i in 0..u16::MAX {
            a.append(i64::from(i), 1.0).unwrap();
        }
        assert_eq!(a.append(1 << 20, 1.0), Err(TsdbError::ChunkFull(u16::MAX)));
        assert_eq!(a.into_chunk().iter().count(), usize::from(u16::MAX));
    }

    fn any_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => proptest::num::f64::ANY,
            1 => Just(f64::NAN),
            1 => Just(pharos_model::stale_nan()),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            2 => (0u32..1000).prop_map(f64::from),
            1 => proptest::num::u64::ANY.prop_map(f64::from_bits),
        ]
    }

    fn any_deltas() -> impl Strategy<Value = Vec<i64>> {
        proptest::collection::vec(
            prop_oneof![
                Just(15_000i64),
                14_990i64..15_010,
                0i64..100,
                0i64..2_000_000,
                0i64..(1 << 40),
            ],
            0..300,
        )
    }

    proptest! {
        #[test]
        fn roundtrip(start in -(1i64 << 50)..(1i64 << 50), deltas in any_deltas(),
                     values in proptest::collection::vec(any_value(), 300)) {
            let mut t = start;
            let mut s = Vec::new();
            for (i, d) in deltas.iter().enumerate() {
                t += d;
                s.push((t, values[i]));
            }
            let c = encode(&s);
            let back: Vec<Sample> = c.iter().collect();
            prop_assert!(same(&back, &s));
            prop_assert_eq!(usize::from(c.num_samples()), s.len());
            // Seeking to each timestamp lands on its first occurrence.
            if let Some(&(mid, _)) = s.get(s.len() / 2) {
                let first = s.iter().position(|x| x.0 >= mid).unwrap();
                let got = c.iter().seek(mid).unwrap();
                prop_assert_eq!(got.t, s[first].0);
            }
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200), seek in any::<i64>()) {
            let mut it = XorIterator::new(bytes.as_slice());
            let n = it.by_ref().take(70_000).count();
            prop_assert!(n <= usize::from(it.num_samples()));
            let _ = XorIterator::new(bytes.as_slice()).seek(seek);
            let _ = XorChunk::from_bytes(bytes).into_appender();
        }
    }
}
