//! The block `tombstones` file: deleted time ranges per series.
//!
//! Layout: magic `0x0130BA30` (4 bytes), format version 1 (1 byte), then
//! entries `series ref <uvarint> | mint <varint> | maxt <varint>`, then a
//! CRC32C over the entries (not the version byte). See
//! `docs/format/tombstones.md`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::encoding::{Dec, Enc, crc};
use crate::TsdbError;

/// Magic number of the tombstones file.
pub const MAGIC_TOMBSTONES: u32 = 0x0130_BA30;

/// Deleted intervals (inclusive, sorted, non-overlapping) per series ref.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    /// Series reference -> intervals.
    pub by_ref: BTreeMap<u64, Vec<(i64, i64)>>,
}

impl Tombstones {
    /// Adds `[mint, maxt]` to series `r`, merging touching intervals.
    pub fn add(&mut self, r: u64, mint: i64, maxt: i64) {
        let v = self.by_ref.entry(r).or_default();
        v.push((mint, maxt));
        v.sort_unstable();
        let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
        for &(a, b) in v.iter() {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        *v = out;
    }

    /// True when sample time `t` of series `r` is deleted.
    pub fn is_deleted(&self, r: u64, t: i64) -> bool {
        self.by_ref
            .get(&r)
            .is_some_and(|v| v.iter().any(|&(a, b)| a <= t && t <= b))
    }

    /// Intervals of series `r`.
    pub fn get(&self, r: u64) -> &[(i64, i64)] {
        self.by_ref.get(&r).map_or(&[], |v| v.as_slice())
    }

    /// The number of intervals.
    pub fn total(&self) -> usize {
        self.by_ref.values().map(Vec::len).sum()
    }

    /// The file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.be32(MAGIC_TOMBSTONES);
        e.byte(1);
        let start = e.len();
        for (r, ivs) in &self.by_ref {
            for &(a, b) in ivs {
                e.uvarint(*r);
                e.varint(a);
                e.varint(b);
            }
        }
        let sum = crc(&e.b[start..]);
        e.be32(sum);
        e.b
    }

    /// Decodes file bytes.
    pub fn decode(b: &[u8]) -> Result<Tombstones, TsdbError> {
        let err = |m: &str| TsdbError::CorruptBlock(format!("tombstones: {m}"));
        if b.len() < 9 {
            return Err(err("file too short"));
        }
        let (body, sum) = b.split_at(b.len() - 4);
        let mut d = Dec::new(body, "tombstones");
        if d.be32()? != MAGIC_TOMBSTONES {
            return Err(err("bad magic number"));
        }
        if d.byte()? != 1 {
            return Err(err("unsupported format version"));
        }
        if crc(d.b) != u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]) {
            return Err(err("checksum mismatch"));
        }
        let mut t = Tombstones::default();
        while d.remaining() > 0 {
            let r = d.uvarint()?;
            let a = d.varint()?;
            let b = d.varint()?;
            t.add(r, a, b);
        }
        Ok(t)
    }

    /// Reads `dir/tombstones`; a missing file means no tombstones.
    pub fn read(dir: &Path) -> Result<Tombstones, TsdbError> {
        let p = dir.join("tombstones");
        match std::fs::read(&p) {
            Ok(b) => Tombstones::decode(&b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Tombstones::default()),
            Err(e) => Err(TsdbError::BlockIo(format!("{}: {e}", p.display()))),
        }
    }

    /// Writes `dir/tombstones` atomically (temporary file, fsync, rename).
    pub fn write(&self, dir: &Path) -> Result<u64, TsdbError> {
        let p = dir.join("tombstones");
        let tmp = dir.join("tombstones.tmp");
        let io = |e: std::io::Error| TsdbError::BlockIo(format!("{}: {e}", p.display()));
        let b = self.encode();
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&b).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &p).map_err(io)?;
        Ok(b.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_merge() {
        let mut t = Tombstones::default();
        t.add(3, 10, 20);
        t.add(3, 21, 30);
        t.add(3, 50, 60);
        t.add(7, i64::MIN, i64::MAX);
        assert_eq!(t.get(3), &[(10, 30), (50, 60)]);
        let d = Tombstones::decode(&t.encode()).unwrap();
        assert_eq!(d, t);
        assert!(d.is_deleted(3, 25) && !d.is_deleted(3, 40) && d.is_deleted(7, 0));
        assert_eq!(
            Tombstones::decode(&Tombstones::default().encode())
                .unwrap()
                .total(),
            0
        );
    }

    proptest! {
        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut f = MAGIC_TOMBSTONES.to_be_bytes().to_vec();
            f.push(1);
            f.extend_from_slice(&b);
            let _ = Tombstones::decode(&f);
            let _ = Tombstones::decode(&b);
        }
    }
}
