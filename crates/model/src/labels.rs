//! Label sets.
//!
//! A [`Labels`] is one immutable, reference-counted byte buffer holding the
//! sorted `name, value` pairs, each string prefixed by its LEB128 length. This
//! is the same idea as Prometheus's `stringlabels` build: one allocation per
//! label set instead of one per string, cheap clones (an `Arc` bump), hashing
//! and equality over a single contiguous slice, and no per-label pointers.
//! Reading a pair back costs a varint decode, which is far cheaper than the
//! cache misses of a pointer-per-string layout.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label: a borrowed name and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label<'a> {
    /// Label name.
    pub name: &'a str,
    /// Label value.
    pub value: &'a str,
}

/// An immutable, sorted set of labels with unique names.
///
/// Invariants: names are strictly ascending and no value is empty (an empty
/// value means "label absent" in Prometheus, so builders drop such labels).
#[derive(Clone)]
pub struct Labels {
    data: Arc<str>,
}

fn put_len(out: &mut String, mut n: usize) {
    // Lengths are base-64 digits, least significant first, each written as
    // one ASCII char: a final digit d as char(d), a non-final one as
    // char(0x40 | d). Keeping every byte ASCII keeps the buffer valid UTF-8,
    // so reading strings back needs no unsafe code and no re-validation.
    loop {
        let d = (n & 0x3f) as u8;
        n >>= 6;
        if n == 0 {
            out.push(char::from(d));
            return;
        }
        out.push(char::from(0x40 | d));
    }
}

fn get_len(b: &[u8], pos: &mut usize) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    while let Some(&c) = b.get(*pos) {
        *pos += 1;
        n |= ((c & 0x3f) as usize) << shift;
        if c & 0x40 == 0 {
            break;
        }
        shift += 6;
    }
    n
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Labels {
        Labels {
            data: Arc::from(""),
        }
    }

    /// Builds a label set from pairs in any order. Later duplicates of a name
    /// win; pairs with an empty value are dropped.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Labels {
        let mut b = LabelsBuilder::new();
        for (n, v) in pairs {
            b.set(n.as_ref(), v.as_ref());
        }
        b.build()
    }

    /// Builds a label set from pairs that are already sorted by name with
    /// unique names and non-empty values. Use when the caller guarantees the
    /// order (for example a parser that has just sorted its labels).
    pub fn from_sorted<'a, I: IntoIterator<Item = Label<'a>>>(it: I) -> Labels {
        let mut s = String::new();
        for l in it {
            put_len(&mut s, l.name.len());
            s.push_str(l.name);
            put_len(&mut s, l.value.len());
            s.push_str(l.value);
        }
        Labels { data: Arc::from(s) }
    }

    /// Iterates the labels in name order.
    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter {
            s: &self.data,
            pos: 0,
        }
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        for l in self.iter() {
            match l.name.cmp(name) {
                Ordering::Less => continue,
                Ordering::Equal => return Some(l.value),
                Ordering::Greater => return None,
            }
        }
        None
    }

    /// True when label `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// A 64-bit hash of the label set, stable within one process. Not stored
    /// on disk.
    pub fn hash64(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.data.as_bytes())
    }

    /// The encoded bytes, for hashing or as a map key.
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_bytes()
    }

    /// Size in bytes of the encoded buffer (excluding the `Arc` header).
    pub fn encoded_len(&self) -> usize {
        self.data.len()
    }

    /// A copy without the metric name.
    pub fn without_metric_name(&self) -> Labels {
        if !self.has(METRIC_NAME) {
            return self.clone();
        }
        Labels::from_sorted(self.iter().filter(|l| l.name != METRIC_NAME))
    }

    /// A builder starting from this label set.
    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder::from(self)
    }

    /// Hash of only the named labels (`on`) or of all but the named labels
    /// (`!on`, i.e. `ignoring`/`without`), used for vector matching and
    /// grouping. `names` need not be sorted.
    pub fn hash_for(&self, names: &[String], on: bool) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for l in self.iter() {
            if names.iter().any(|n| n == l.name) == on {
                h.update(l.name.as_bytes());
                h.update(&[0xff]);
                h.update(l.value.as_bytes());
                h.update(&[0xff]);
            }
        }
        h.digest()
    }

    /// Only the named labels (`on`), or all but the named labels (`!on`).
    pub fn filtered(&self, names: &[String], on: bool) -> Labels {
        Labels::from_sorted(
            self.iter()
                .filter(|l| names.iter().any(|n| n == l.name) == on),
        )
    }
}

impl Default for Labels {
    fn default() -> Self {
        Labels::empty()
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}
impl Eq for Labels {}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.data.hash(state)
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Orders like Prometheus's `labels.Compare`: pair by pair, names first, then
/// values; a prefix sorts first.
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> Ordering {
        let mut a = self.iter();
        let mut b = other.iter();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(x), Some(y)) => {
                    let o = x.name.cmp(y.name).then_with(|| x.value.cmp(y.value));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
            }
        }
    }
}

/// Formats as Prometheus does: `{__name__="up", job="x"}`, values escaped.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=\"{}\"", l.name, escape_label_value(l.value))?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Escapes `\`, `"` and newline as in the exposition and PromQL formats.
pub fn escape_label_value(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.bytes().any(|c| c == b'\\' || c == b'"' || c == b'\n') {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut s = String::with_capacity(v.len() + 2);
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    std::borrow::Cow::Owned(s)
}

/// Iterator over the labels of a [`Labels`].
pub struct LabelsIter<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = Label<'a>;
    fn next(&mut self) -> Option<Label<'a>> {
        let b = self.s.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        let n = get_len(b, &mut self.pos);
        let name = self.s.get(self.pos..self.pos + n)?;
        self.pos += n;
        let n = get_len(b, &mut self.pos);
        let value = self.s.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(Label { name, value })
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = Label<'a>;
    type IntoIter = LabelsIter<'a>;
    fn into_iter(self) -> LabelsIter<'a> {
        self.iter()
    }
}

/// Mutable label set used to derive new [`Labels`]: set, delete, keep.
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    pairs: Vec<(String, String)>,
}

impl LabelsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        match self.pairs.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => {
                if value.is_empty() {
                    self.pairs.remove(i);
                } else {
                    self.pairs[i].1.clear();
                    self.pairs[i].1.push_str(value);
                }
            }
            Err(i) => {
                if !value.is_empty() {
                    self.pairs.insert(i, (name.to_string(), value.to_string()));
                }
            }
        }
        self
    }

    /// Deletes `name` if present.
    pub fn del(&mut self, name: &str) -> &mut Self {
        self.pairs.retain(|(n, _)| n != name);
        self
    }

    /// Keeps only the labels whose name satisfies `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) -> &mut Self {
        self.pairs.retain(|(n, v)| keep(n, v));
        self
    }

    /// The current value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.pairs[i].1.as_str())
    }

    /// Current pairs in name order.
    pub fn pairs(&self) -> impl Iterator<Item = Label<'_>> {
        self.pairs.iter().map(|(n, v)| Label { name: n, value: v })
    }

    /// Freezes the builder into [`Labels`].
    pub fn build(&self) -> Labels {
        Labels::from_sorted(self.pairs())
    }
}

impl From<&Labels> for LabelsBuilder {
    fn from(l: &Labels) -> Self {
        LabelsBuilder {
            pairs: l
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
        }
    }
}

/// True for a valid legacy metric name `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut it = s.bytes();
    match it.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {}
        _ => return false,
    }
    it.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// True for a valid legacy label name `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut it = s.bytes();
    match it.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
        _ => return false,
    }
    it.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_order() {
        let l = Labels::from_pairs(&[
            ("job", "api"),
            ("__name__", "up"),
            ("a", ""),
            ("x", "é\"\n"),
        ]);
        let v: Vec<_> = l.iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(v, vec![("__name__", "up"), ("job", "api"), ("x", "é\"\n")]);
        assert_eq!(l.get("job"), Some("api"));
        assert_eq!(l.get("a"), None);
        assert_eq!(l.metric_name(), Some("up"));
        assert_eq!(l.len(), 3);
        assert_eq!(l.to_string(), r#"{__name__="up", job="api", x="é\"\n"}"#);
        assert_eq!(l.without_metric_name().len(), 2);
    }

    #[test]
    fn long_strings() {
        let long = "v".repeat(100_000);
        let l = Labels::from_pairs(&[("a", long.as_str()), ("b", "c")]);
        assert_eq!(l.get("a").map(str::len), Some(100_000));
        assert_eq!(l.get("b"), Some("c"));
    }

    #[test]
    fn compare_like_prometheus() {
        let a = Labels::from_pairs(&[("a", "1")]);
        let b = Labels::from_pairs(&[("a", "1"), ("b", "1")]);
        let c = Labels::from_pairs(&[("a", "2")]);
        assert!(a < b && b < c);
    }

    proptest::proptest! {
        #[test]
        fn any_pairs_roundtrip(pairs in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{1,20}", 0..10)) {
            let v: Vec<(String, String)> = pairs.clone().into_iter().collect();
            let l = Labels::from_pairs(&v);
            let back: Vec<(String, String)> = l.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect();
            proptest::prop_assert_eq!(back, v);
        }
    }
}
