//! The block `index` file, format version 2: writer and reader.
//!
//! Layout (see `docs/format/index.md`): header (magic `0xBAAAD700`,
//! version 2), symbol table, series (16-byte aligned, referenced by
//! offset / 16), label indices, postings (4-byte aligned), label offset
//! table, postings offset table, and a 52-byte table of contents at the
//! end. Every section carries a CRC32C. The reader keeps the symbols and
//! the postings offset table in memory and decodes series and postings
//! lists from the file bytes on demand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use pharos_model::{Label, Labels, MatchOp, Matcher};

use super::encoding::{Dec, Enc, crc, section};
use super::mmap::Bytes;
use crate::TsdbError;

/// Magic number at the start of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
const TOC_LEN: usize = 6 * 8 + 4;

/// Where one chunk of a series lives and which times it covers (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Time of the first sample.
    pub min_t: i64,
    /// Time of the last sample.
    pub max_t: i64,
    /// Chunk reference: segment index << 32 | offset.
    pub r: u64,
}

fn corrupt(msg: impl Into<String>) -> TsdbError {
    TsdbError::CorruptBlock(format!("index: {}", msg.into()))
}

fn pad(e: &mut Enc, align: usize) {
    while !e.len().is_multiple_of(align) {
        e.byte(0);
    }
}

fn put_section(e: &mut Enc, body: &[u8]) -> Result<(), TsdbError> {
    let len = u32::try_from(body.len()).map_err(|_| corrupt("section exceeds 4 GiB"))?;
    e.be32(len);
    e.b.extend_from_slice(body);
    e.be32(crc(body));
    Ok(())
}

/// Encodes an index of `series` (sorted by labels, unique). Returns the
/// file bytes.
pub fn encode_index(series: &[(Labels, Vec<ChunkMeta>)]) -> Result<Vec<u8>, TsdbError> {
    let mut e = Enc::default();
    e.be32(MAGIC_INDEX);
    e.byte(2);

    // Symbols.
    let mut syms: BTreeSet<&str> = BTreeSet::new();
    for (ls, _) in series {
        for l in ls.iter() {
            syms.insert(l.name);
            syms.insert(l.value);
        }
    }
    let sym_idx: HashMap<&str, u32> = syms
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect();
    let toc_symbols = e.len() as u64;
    let mut body = Enc::default();
    body.be32(u32::try_from(syms.len()).map_err(|_| corrupt("too many symbols"))?);
    for s in &syms {
        body.uvarint_str(s);
    }
    put_section(&mut e, &body.b)?;

    // Series.
    let toc_series = e.len() as u64;
    let mut postings: BTreeMap<&str, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
    let mut all: Vec<u32> = Vec::with_capacity(series.len());
    for (ls, chunks) in series {
        pad(&mut e, 16);
        let r = u32::try_from(e.len() / 16).map_err(|_| corrupt("series section too large"))?;
        let mut b = Enc::default();
        b.uvarint(ls.len() as u64);
        for l in ls.iter() {
            b.uvarint(u64::from(sym_idx[l.name]));
            b.uvarint(u64::from(sym_idx[l.value]));
            postings
                .entry(l.name)
                .or_default()
                .entry(l.value)
                .or_default()
                .push(r);
        }
        b.uvarint(chunks.len() as u64);
        let mut prev: Option<ChunkMeta> = None;
        for c in chunks {
            match prev {
                None => {
                    b.varint(c.min_t);
                    b.uvarint(c.max_t.wrapping_sub(c.min_t) as u64);
                    b.uvarint(c.r);
                }
                Some(p) => {
                    b.uvarint(c.min_t.wrapping_sub(p.max_t) as u64);
                    b.uvarint(c.max_t.wrapping_sub(c.min_t) as u64);
                    b.varint(c.r.wrapping_sub(p.r) as i64);
                }
            }
            prev = Some(*c);
        }
        e.uvarint(b.len() as u64);
        e.b.extend_from_slice(&b.b);
        e.be32(crc(&b.b));
        all.push(r);
    }

    // Label indices (kept for older readers).
    pad(&mut e, 4);
    let toc_label_indices = e.len() as u64;
    let mut label_offsets: Vec<(&str, u64)> = Vec::new();
    for (name, values) in &postings {
        pad(&mut e, 4);
        label_offsets.push((name, e.len() as u64));
        let mut b = Enc::default();
        b.be32(1);
        b.be32(values.len() as u32);
        for v in values.keys() {
            b.be32(sym_idx[v]);
        }
        put_section(&mut e, &b.b)?;
    }

    // Postings: all series first under the empty pair, then each pair.
    pad(&mut e, 4);
    let toc_postings = e.len() as u64;
    let mut postings_offsets: Vec<(&str, &str, u64)> = Vec::new();
    let write_list = |e: &mut Enc, name: &'_ str, value: &'_ str, refs: &[u32]| {
        pad(e, 4);
        let off = e.len() as u64;
        let mut b = Enc::default();
        b.be32(refs.len() as u32);
        for r in refs {
            b.be32(*r);
        }
        put_section(e, &b.b).map(|()| (name.len(), value.len(), off))
    };
    let (_, _, off) = write_list(&mut e, "", "", &all)?;
    postings_offsets.push(("", "", off));
    for (name, values) in &postings {
        for (value, refs) in values {
            let (_, _, off) = write_list(&mut e, name, value, refs)?;
            postings_offsets.push((name, value, off));
        }
    }

    // Label offset table.
    let toc_label_table = e.len() as u64;
    let mut b = Enc::default();
    b.be32(label_offsets.len() as u32);
    for (name, off) in &label_offsets {
        b.uvarint(1);
        b.uvarint_str(name);
        b.uvarint(*off);
    }
    put_section(&mut e, &b.b)?;

    // Postings offset table.
    let toc_postings_table = e.len() as u64;
    let mut b = Enc::default();
    b.be32(postings_offsets.len() as u32);
    for (name, value, off) in &postings_offsets {
        b.uvarint(2);
        b.uvarint_str(name);
        b.uvarint_str(value);
        b.uvarint(*off);
    }
    put_section(&mut e, &b.b)?;

    // TOC.
    let start = e.len();
    for v in [
        toc_symbols,
        toc_series,
        toc_label_indices,
        toc_label_table,
        toc_postings,
        toc_postings_table,
    ] {
        e.be64(v);
    }
    let sum = crc(&e.b[start..]);
    e.be32(sum);
    Ok(e.b)
}

/// Writes the index of `series` to `path` and fsyncs it; returns its size.
pub fn write_index(path: &Path, series: &[(Labels, Vec<ChunkMeta>)]) -> Result<u64, TsdbError> {
    let b = encode_index(series)?;
    let io = |e: std::io::Error| TsdbError::BlockIo(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(&b).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(b.len() as u64)
}

/// Reads an index file.
#[derive(Debug, Clone)]
pub struct IndexReader {
    b: Bytes,
    symbols: Vec<Box<str>>,
    /// Label name -> sorted (value, postings list offset).
    postings: BTreeMap<Box<str>, Vec<(Box<str>, u64)>>,
    all_postings: Option<u64>,
}

impl IndexReader {
    /// Opens the index at `path`.
    pub fn open(path: &Path) -> Result<IndexReader, TsdbError> {
        IndexReader::new(Bytes::open(path)?)
    }

    /// Parses the table of contents, symbols and postings offset table.
    pub fn new(b: Bytes) -> Result<IndexReader, TsdbError> {
        let file = b.as_ref();
        let mut d = Dec::new(file, "index header");
        if d.be32()? != MAGIC_INDEX {
            return Err(corrupt("bad magic number"));
        }
        let version = d.byte()?;
        if version != 2 {
            return Err(corrupt(format!(
                "unsupported index version {version} (only v2 is read)"
            )));
        }
        if file.len() < 5 + TOC_LEN {
            return Err(corrupt("file too short for a table of contents"));
        }
        let toc_bytes = &file[file.len() - TOC_LEN..];
        if crc(&toc_bytes[..48])
            != u32::from_be_bytes([toc_bytes[48], toc_bytes[49], toc_bytes[50], toc_bytes[51]])
        {
            return Err(corrupt("table of contents checksum mismatch"));
        }
        let mut t = Dec::new(toc_bytes, "index toc");
        let toc_symbols = t.be64()?;
        let _series = t.be64()?;
        let _label_indices = t.be64()?;
        let _label_table = t.be64()?;
        let _postings = t.be64()?;
        let toc_postings_table = t.be64()?;
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| corrupt("offset out of range"));

        let mut symbols = Vec::new();
        if toc_symbols != 0 {
            let body = section(file, to_usize(toc_symbols)?, "index symbols")?;
            let mut d = Dec::new(body, "index symbols");
            let n = d.be32()?;
            for _ in 0..n {
                symbols.push(Box::<str>::from(d.uvarint_str()?));
            }
        }

        let mut postings: BTreeMap<Box<str>, Vec<(Box<str>, u64)>> = BTreeMap::new();
        let mut all_postings = None;
        if toc_postings_table != 0 {
            let body = section(file, to_usize(toc_postings_table)?, "index postings table")?;
            let mut d = Dec::new(body, "index postings table");
            let n = d.be32()?;
            for _ in 0..n {
                if d.uvarint()? != 2 {
                    return Err(corrupt("postings table entry without two strings"));
                }
                let name = d.uvarint_str()?;
                let value = d.uvarint_str()?;
                let off = d.uvarint()?;
                if name.is_empty() && value.is_empty() {
                    all_postings = Some(off);
                } else {
                    postings
                        .entry(name.into())
                        .or_default()
                        .push((value.into(), off));
                }
            }
            for v in postings.values_mut() {
                v.sort();
            }
        }
        Ok(IndexReader {
            b,
            symbols,
            postings,
            all_postings,
        })
    }

    /// Size of the index file in bytes.
    pub fn size(&self) -> u64 {
        self.b.as_ref().len() as u64
    }

    /// The number of symbols.
    pub fn num_symbols(&self) -> usize {
        self.symbols.len()
    }

    fn symbol(&self, i: u32) -> Result<&str, TsdbError> {
        self.symbols
            .get(i as usize)
            .map(|s| &**s)
            .ok_or_else(|| corrupt(format!("symbol reference {i} out of range")))
    }

    /// The labels and chunk metas of the series at reference `r`.
    pub fn series(&self, r: u64) -> Result<(Labels, Vec<ChunkMeta>), TsdbError> {
        let off = usize::try_from(r.saturating_mul(16)).map_err(|_| corrupt("series ref"))?;
        let file = self.b.as_ref();
        let mut d = Dec::new(file.get(off..).unwrap_or_default(), "index series");
        let len = usize::try_from(d.uvarint()?).map_err(|_| corrupt("series length"))?;
        let body = d.bytes(len)?;
        if crc(body) != d.be32()? {
            return Err(corrupt(format!("series {r}: checksum mismatch")));
        }
        let mut d = Dec::new(body, "index series");
        let nl = d.uvarint()?;
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity((nl as usize).min(64));
        for _ in 0..nl {
            let n = self.symbol(d.uvarint32()?)?;
            let v = self.symbol(d.uvarint32()?)?;
            pairs.push((n, v));
        }
        let sorted = pairs.windows(2).all(|w| w[0].0 < w[1].0);
        let labels = if sorted {
            Labels::from_sorted(pairs.iter().map(|(n, v)| Label { name: n, value: v }))
        } else {
            Labels::from_pairs(&pairs)
        };
        let nc = d.uvarint()?;
        let mut chunks = Vec::with_capacity((nc as usize).min(1024));
        let mut prev: Option<ChunkMeta> = None;
        for _ in 0..nc {
            let c = match prev {
                None => {
                    let min_t = d.varint()?;
                    let max_t = min_t.wrapping_add(d.uvarint()? as i64);
                    ChunkMeta {
                        min_t,
                        max_t,
                        r: d.uvarint()?,
                    }
                }
                Some(p) => {
                    let min_t = p.max_t.wrapping_add(d.uvarint()? as i64);
                    let max_t = min_t.wrapping_add(d.uvarint()? as i64);
                    let r = p.r.wrapping_add(d.varint()? as u64);
                    ChunkMeta { min_t, max_t, r }
                }
            };
            chunks.push(c);
            prev = Some(c);
        }
        Ok((labels, chunks))
    }

    fn postings_at(&self, off: u64) -> Result<Vec<u64>, TsdbError> {
        let off = usize::try_from(off).map_err(|_| corrupt("postings offset"))?;
        let body = section(self.b.as_ref(), off, "index postings")?;
        let mut d = Dec::new(body, "index postings");
        let n = d.be32()? as usize;
        if n.saturating_mul(4) > d.remaining() {
            return Err(corrupt("postings list longer than its section"));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(u64::from(d.be32()?));
        }
        Ok(v)
    }

    /// References of every series, sorted.
    pub fn all_postings(&self) -> Result<Vec<u64>, TsdbError> {
        match self.all_postings {
            Some(off) => self.postings_at(off),
            None => Ok(Vec::new()),
        }
    }

    /// Series references with label `name="value"`, sorted.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>, TsdbError> {
        let Some(vals) = self.postings.get(name) else {
            return Ok(Vec::new());
        };
        match vals.binary_search_by(|(v, _)| (**v).cmp(value)) {
            Ok(i) => self.postings_at(vals[i].1),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.postings.keys().map(|k| k.to_string()).collect()
    }

    /// Every value of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings
            .get(name)
            .map(|v| v.iter().map(|(s, _)| s.to_string()).collect())
            .unwrap_or_default()
    }

    /// The number of postings lists per label name (for analysis tools).
    pub fn label_value_counts(&self) -> Vec<(String, usize)> {
        self.postings
            .iter()
            .map(|(k, v)| (k.to_string(), v.len()))
            .collect()
    }

    fn union_where(&self, name: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<u64>, TsdbError> {
        let mut out: Vec<u64> = Vec::new();
        if let Some(vals) = self.postings.get(name) {
            for (v, off) in vals {
                if keep(v) {
                    out.extend(self.postings_at(*off)?);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Sorted series references selected by `matchers`, with Prometheus's
    /// semantics (a matcher accepting "" also selects series without the
    /// label).
    pub fn postings_for_matchers(&self, matchers: &[Matcher]) -> Result<Vec<u64>, TsdbError> {
        let mut out: Option<Vec<u64>> = None;
        let mut remove: Vec<Vec<u64>> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                if m.op == MatchOp::Regex && m.value == ".*" {
                    continue;
                }
                remove.push(self.union_where(&m.name, |v| !m.matches(v))?);
            } else {
                let keep = if m.op == MatchOp::Equal {
                    self.postings(&m.name, &m.value)?
                } else {
                    self.union_where(&m.name, |v| m.matches(v))?
                };
                out = Some(match out {
                    None => keep,
                    Some(prev) => intersect(&prev, &keep),
                });
            }
        }
        let mut out = match out {
            Some(v) => v,
            None => self.all_postings()?,
        };
        for r in &remove {
            out = subtract(&out, r);
        }
        Ok(out)
    }
}

fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn sample_series() -> Vec<(Labels, Vec<ChunkMeta>)> {
        let mut v: Vec<(Labels, Vec<ChunkMeta>)> = (0..50)
            .map(|i| {
                let ls = Labels::from_pairs(&[
                    ("__name__", if i % 2 == 0 { "up" } else { "requests_total" }),
                    ("instance", &format!("host-{i}")),
                    ("job", "node"),
                ]);
                let chunks = (0..3)
                    .map(|c| ChunkMeta {
                        min_t: 1000 * c + i,
                        max_t: 1000 * c + 900,
                        r: (8 + 100 * c + i) as u64,
                    })
                    .collect();
                (ls, chunks)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn round_trip() {
        let series = sample_series();
        let b = encode_index(&series).unwrap();
        let r = IndexReader::new(Bytes::from_vec(b)).unwrap();
        let all = r.all_postings().unwrap();
        assert_eq!(all.len(), 50);
        for (i, rf) in all.iter().enumerate() {
            assert_eq!(r.series(*rf).unwrap(), series[i]);
        }
        assert_eq!(r.label_names(), vec!["__name__", "instance", "job"]);
        assert_eq!(r.label_values("__name__"), vec!["requests_total", "up"]);
        let up = r
            .postings_for_matchers(&[Matcher::equal("__name__", "up")])
            .unwrap();
        assert_eq!(up.len(), 25);
        let m = Matcher::new(MatchOp::NotRegex, "instance", "host-1.*").unwrap();
        let got = r.postings_for_matchers(&[m]).unwrap();
        assert_eq!(got.len(), 50 - 11);
        let none = r
            .postings_for_matchers(&[Matcher::equal("job", "nope")])
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn empty_index() {
        let b = encode_index(&[]).unwrap();
        let r = IndexReader::new(Bytes::from_vec(b)).unwrap();
        assert!(r.all_postings().unwrap().is_empty());
    }

    #[test]
    fn corrupted_toc_is_an_error() {
        let mut b = encode_index(&sample_series()).unwrap();
        let n = b.len();
        b[n - 10] ^= 0xff;
        assert!(IndexReader::new(Bytes::from_vec(b)).is_err());
    }

    proptest! {
        #[test]
        fn reader_never_panics_on_corruption(pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
            let mut b = encode_index(&sample_series()).unwrap();
            let p = pos % b.len();
            b[p] = val;
            let c = cut % (b.len() + 1);
            if cut % 3 == 0 { b.truncate(c); }
            if let Ok(r) = IndexReader::new(Bytes::from_vec(b)) {
                if let Ok(all) = r.all_postings() {
                    for rf in all { let _ = r.series(rf); }
                }
                let _ = r.postings_for_matchers(&[Matcher::equal("job", "node")]);
                for i in 0..40u64 { let _ = r.series(i); }
            }
        }

        #[test]
        fn reader_never_panics_on_garbage(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = IndexReader::new(Bytes::from_vec(b)) {
                let _ = r.all_postings();
                let _ = r.series(0);
            }
        }
    }
}
