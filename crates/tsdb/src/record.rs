//! Write-ahead-log records in Prometheus's encoding (`tsdb/record`).
//!
//! A record is the payload the WAL stores (before fragmenting and optional
//! compression); its first byte is the record type. We write series (1),
//! samples (2) and tombstones (3) records and read those back; other types
//! Prometheus writes (exemplars, histograms, metadata, ...) are recognised
//! and skipped by [`decode`] so a Prometheus WAL replays with what we
//! support. The byte layouts are in `docs/format/wal.md`.
//!
//! Decoding never panics: every read is bounds-checked and a bad record is
//! a [`RecordError`] naming the byte position.

use pharos_model::{Label, Labels, Timestamp};

use crate::head::{SampleRecord, SeriesRecord};

/// Record type byte: series (labels of a series reference).
pub const SERIES: u8 = 1;
/// Record type byte: float samples.
pub const SAMPLES: u8 = 2;
/// Record type byte: tombstones (deleted intervals).
pub const TOMBSTONES: u8 = 3;

/// A deleted time interval of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TombstoneRecord {
    /// The series' reference.
    pub series_ref: u64,
    /// First deleted timestamp (inclusive).
    pub mint: Timestamp,
    /// Last deleted timestamp (inclusive).
    pub maxt: Timestamp,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Series definitions.
    Series(Vec<SeriesRecord>),
    /// Float samples.
    Samples(Vec<SampleRecord>),
    /// Deleted intervals.
    Tombstones(Vec<TombstoneRecord>),
    /// A record type we do not interpret (its type byte), skipped on replay.
    Other(u8),
}

/// A record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad WAL record at byte {pos}: {msg}")]
pub struct RecordError {
    /// Byte offset within the record.
    pub pos: usize,
    /// What is wrong.
    pub msg: &'static str,
}

fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn put_varint(out: &mut Vec<u8>, x: i64) {
    // Zig-zag, as Go's binary.PutVarint.
    put_uvarint(out, ((x << 1) ^ (x >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a series record holding `series` to `out`.
pub fn encode_series(series: &[SeriesRecord], out: &mut Vec<u8>) {
    out.push(SERIES);
    for s in series {
        out.extend_from_slice(&s.series_ref.to_be_bytes());
        put_uvarint(out, s.labels.len() as u64);
        for l in s.labels.iter() {
            put_str(out, l.name);
            put_str(out, l.value);
        }
    }
}

/// Appends a samples record holding `samples` to `out`: the first sample's
/// reference and time in full, then every sample (the first too) as signed
/// deltas to them plus the value's bits.
pub fn encode_samples(samples: &[SampleRecord], out: &mut Vec<u8>) {
    out.push(SAMPLES);
    let Some(first) = samples.first() else {
        return;
    };
    out.extend_from_slice(&first.series_ref.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for s in samples {
        put_varint(
            out,
            (s.series_ref as i64).wrapping_sub(first.series_ref as i64),
        );
        put_varint(out, s.t.wrapping_sub(first.t));
        out.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Appends a tombstones record to `out`.
pub fn encode_tombstones(tombstones: &[TombstoneRecord], out: &mut Vec<u8>) {
    out.push(TOMBSTONES);
    for t in tombstones {
        out.extend_from_slice(&t.series_ref.to_be_bytes());
        put_varint(out, t.mint);
        put_varint(out, t.maxt);
    }
}

/// A bounds-checked reader over a record.
struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn err<T>(&self, msg: &'static str) -> Result<T, RecordError> {
        Err(RecordError { pos: self.pos, msg })
    }

    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn be64(&mut self) -> Result<u64, RecordError> {
        match self.b.get(self.pos..self.pos + 8) {
            Some(s) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                self.pos += 8;
                Ok(u64::from_be_bytes(a))
            }
            None => self.err("truncated 8-byte field"),
        }
    }

    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut x = 0u64;
        let mut shift = 0u32;
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return self.err("truncated varint");
            };
            self.pos += 1;
            if shift == 63 && c > 1 {
                return self.err("varint overflows 64 bits");
            }
            x |= u64::from(c & 0x7f) << shift;
            if c < 0x80 {
                return Ok(x);
            }
            shift += 7;
            if shift > 63 {
                return self.err("varint overflows 64 bits");
            }
        }
    }

    fn varint(&mut self) -> Result<i64, RecordError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = self.uvarint()?;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return self.err("string runs past the record");
        };
        let Ok(s) = std::str::from_utf8(&self.b[self.pos..end]) else {
            return self.err("string is not UTF-8");
        };
        self.pos = end;
        Ok(s)
    }
}

/// Decodes one record.
pub fn decode(rec: &[u8]) -> Result<Record, RecordError> {
    let Some(&typ) = rec.first() else {
        return Err(RecordError {
            pos: 0,
            msg: "empty record",
        });
    };
    let mut d = Dec { b: rec, pos: 1 };
    match typ {
        SERIES => {
            let mut out = Vec::new();
            let mut pairs: Vec<Label<'_>> = Vec::new();
            while !d.done() {
                let series_ref = d.be64()?;
                let n = d.uvarint()?;
                // Each label takes at least two bytes: bounds the count.
                if n > (rec.len() - d.pos) as u64 / 2 {
                    return d.err("label count exceeds the record");
                }
                pairs.clear();
                for _ in 0..n {
                    let name = d.str()?;
                    let value = d.str()?;
                    pairs.push(Label { name, value });
                }
                let sorted = pairs.windows(2).all(|w| w[0].name < w[1].name)
                    && pairs.iter().all(|l| !l.value.is_empty());
                let labels = if sorted {
                    Labels::from_sorted(pairs.iter().copied())
                } else {
                    let p: Vec<(&str, &str)> = pairs.iter().map(|l| (l.name, l.value)).collect();
                    Labels::from_pairs(&p)
                };
                out.push(SeriesRecord { series_ref, labels });
            }
            Ok(Record::Series(out))
        }
        SAMPLES => {
            let mut out = Vec::new();
            if d.done() {
                return Ok(Record::Samples(out));
            }
            let base_ref = d.be64()?;
            let base_t = d.be64()? as i64;
            // Each sample takes at least 10 bytes.
            out.reserve((rec.len() - d.pos) / 10);
            while !d.done() {
                let dref = d.varint()?;
                let dt = d.varint()?;
                let v = f64::from_bits(d.be64()?);
                out.push(SampleRecord {
                    series_ref: (base_ref as i64).wrapping_add(dref) as u64,
                    t: base_t.wrapping_add(dt),
                    v,
                });
            }
            Ok(Record::Samples(out))
        }
        TOMBSTONES => {
            let mut out = Vec::new();
            while !d.done() {
                let series_ref = d.be64()?;
                let mint = d.varint()?;
                let maxt = d.varint()?;
                out.push(TombstoneRecord {
                    series_ref,
                    mint,
                    maxt,
                });
            }
            Ok(Record::Tombstones(out))
        }
        other => Ok(Record::Other(other)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn samples_layout_matches_prometheus() {
        // Hand-computed bytes for two samples, as record.go encodes them.
        let s = [
            SampleRecord {
                series_ref: 5,
                t: 1000,
                v: 1.0,
            },
            SampleRecord {
                series_ref: 3,
                t: 1015,
                v: 2.0,
            },
        ];
        let mut b = Vec::new();
        encode_samples(&s, &mut b);
        let mut want = vec![2u8];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[3, 30]); // zig-zag(-2) = 3, zig-zag(15) = 30
        want.extend_from_slice(&2.0f64.to_bits().to_be_bytes());
        assert_eq!(b, want);
        assert_eq!(decode(&b).unwrap(), Record::Samples(s.to_vec()));
        let mut e = Vec::new();
        encode_samples(&[], &mut e);
        assert_eq!(e, vec![2]);
        assert_eq!(decode(&e).unwrap(), Record::Samples(vec![]));
    }

    #[test]
    fn series_layout_matches_prometheus() {
        let s = [SeriesRecord {
            series_ref: 0x0102,
            labels: Labels::from_pairs(&[("__name__", "up"), ("a", "b")]),
        }];
        let mut b = Vec::new();
        encode_series(&s, &mut b);
        let mut want = vec![1u8, 0, 0, 0, 0, 0, 0, 1, 2, 2, 8];
        want.extend_from_slice(b"__name__");
        want.extend_from_slice(&[2, b'u', b'p', 1, b'a', 1, b'b']);
        assert_eq!(b, want);
        assert_eq!(decode(&b).unwrap(), Record::Series(s.to_vec()));
    }

    #[test]
    fn unknown_types_are_skipped_and_bad_ones_fail() {
        assert_eq!(decode(&[7, 1, 2]).unwrap(), Record::Other(7));
        assert!(decode(&[]).is_err());
        assert!(decode(&[2, 0, 0]).is_err());
        assert!(decode(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 200]).is_err());
        assert!(decode(&[3, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]).is_err());
    }

    fn arb_labels() -> impl Strategy<Value = Labels> {
        prop::collection::btree_map("[a-z_]{1,8}", "\\PC{1,12}", 1..6).prop_map(|m| {
            let p: Vec<(String, String)> = m.into_iter().collect();
            Labels::from_pairs(&p)
        })
    }

    proptest! {
        #[test]
        fn series_round_trip(v in prop::collection::vec((any::<u64>(), arb_labels()), 0..20)) {
            let recs: Vec<SeriesRecord> = v.into_iter().map(|(series_ref, labels)| SeriesRecord { series_ref, labels }).collect();
            let mut b = Vec::new();
            encode_series(&recs, &mut b);
            prop_assert_eq!(decode(&b).unwrap(), Record::Series(recs));
        }

        #[test]
        fn samples_round_trip(v in prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..50)) {
            let recs: Vec<SampleRecord> = v.into_iter().map(|(series_ref, t, bits)| SampleRecord { series_ref, t, v: f64::from_bits(bits) }).collect();
            let mut b = Vec::new();
            encode_samples(&recs, &mut b);
            let Record::Samples(got) = decode(&b).unwrap() else { panic!("wrong type") };
            prop_assert_eq!(got.len(), recs.len());
            for (g, w) in got.iter().zip(&recs) {
                prop_assert_eq!((g.series_ref, g.t, g.v.to_bits()), (w.series_ref, w.t, w.v.to_bits()));
            }
        }

        #[test]
        fn tombstones_round_trip(v in prop::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..20)) {
            let recs: Vec<TombstoneRecord> = v.into_iter().map(|(series_ref, mint, maxt)| TombstoneRecord { series_ref, mint, maxt }).collect();
            let mut b = Vec::new();
            encode_tombstones(&recs, &mut b);
            prop_assert_eq!(decode(&b).unwrap(), Record::Tombstones(recs));
        }

        #[test]
        fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..300), typ in 0u8..5) {
            let mut b = b;
            if let Some(x) = b.first_mut() { *x = typ; }
            let _ = decode(&b);
        }
    }
}
