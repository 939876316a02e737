//! Internal value types of the evaluator and small numeric helpers.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use std::rc::Rc;

use pharos_model::histogram::FloatHistogram;
use pharos_model::{Labels, LabelsBuilder, Sample};

/// A shared native histogram value (cloned per step without copying
/// buckets).
pub(crate) type H = Rc<FloatHistogram>;

/// A native-histogram point.
#[derive(Debug, Clone)]
pub(crate) struct HPoint {
    pub t: i64,
    pub h: H,
}

/// A fast non-cryptographic hasher (the multiply-rotate scheme of rustc's
/// `FxHasher`) for the evaluator's internal maps keyed by label sets and
/// ordinals, which are hashed once per series and step.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `HashMap` with [`FxHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
/// `HashSet` with [`FxHasher`].
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// One series of an intermediate result: its labels, its points (one per
/// evaluation step for instant-vector expressions, raw samples for range
/// selectors) and whether its metric name is to be dropped once evaluation
/// ends (Prometheus's delayed `__name__` removal).
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub metric: Labels,
    pub points: Vec<Sample>,
    /// Native-histogram points, in time order, never at a time `points`
    /// also has (Prometheus's `Series.Histograms`).
    pub hists: Vec<HPoint>,
    pub drop_name: bool,
}

impl Series {
    /// A float-only series.
    pub(crate) fn floats(metric: Labels, points: Vec<Sample>, drop_name: bool) -> Series {
        Series {
            metric,
            points,
            hists: Vec::new(),
            drop_name,
        }
    }

    /// Number of points, floats and histograms.
    pub(crate) fn len(&self) -> usize {
        self.points.len() + self.hists.len()
    }
}

/// An intermediate result. Scalars are a matrix with one label-less series.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Matrix(Vec<Series>),
    Str(String),
}

/// One element of an instant vector during a step of a range evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Elem {
    pub metric: Labels,
    /// Timestamp of the underlying sample (only differs from the step time
    /// for `timestamp()` over a selector).
    pub t: i64,
    pub v: f64,
    /// The histogram value, when the element is a histogram (`v` is then
    /// meaningless).
    pub h: Option<H>,
    pub drop_name: bool,
}

impl Elem {
    /// A float element.
    pub(crate) fn float(metric: Labels, t: i64, v: f64, drop_name: bool) -> Elem {
        Elem {
            metric,
            t,
            v,
            h: None,
            drop_name,
        }
    }
}

/// The labels Prometheus treats as metric metadata (`schema.IsMetadataLabel`):
/// they go together with the name.
pub(crate) fn is_metadata_label(name: &str) -> bool {
    name == "__name__" || name == "__type__" || name == "__unit__"
}

/// Drops `__name__`, `__type__` and `__unit__`.
pub(crate) fn drop_metadata(l: &Labels) -> Labels {
    if !l.iter().any(|x| is_metadata_label(x.name)) {
        return l.clone();
    }
    Labels::from_sorted(l.iter().filter(|x| !is_metadata_label(x.name)))
}

/// Keeps only the labels named in `names`.
pub(crate) fn keep_labels(l: &Labels, names: &[String]) -> Labels {
    Labels::from_sorted(l.iter().filter(|x| names.iter().any(|n| n == x.name)))
}

/// Drops the labels named in `names`.
pub(crate) fn del_labels(l: &Labels, names: &[String]) -> Labels {
    if !l.iter().any(|x| names.iter().any(|n| n == x.name)) {
        return l.clone();
    }
    Labels::from_sorted(l.iter().filter(|x| !names.iter().any(|n| n == x.name)))
}

/// Sets one label.
pub(crate) fn set_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut b = LabelsBuilder::from(l);
    b.set(name, value);
    b.build()
}

/// Neumaier-improved Kahan summation step, as Prometheus's `kahansum.Inc`.
#[inline]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Formats like Go's `strconv.FormatFloat(f, 'g', -1, 64)` (`%g`), used in
/// messages that quote numbers.
pub(crate) fn format_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Shortest round-trip digits via Rust's exponent formatting.
    let e = format!("{f:e}");
    let (mant, exp) = match e.split_once('e') {
        Some((m, x)) => (m.to_string(), x.parse::<i32>().unwrap_or(0)),
        None => (e.clone(), 0),
    };
    if !(-4..6).contains(&exp) {
        let (sign, m) = match mant.strip_prefix('-') {
            Some(m) => ("-", m.to_string()),
            None => ("", mant.clone()),
        };
        let es = if exp < 0 { "-" } else { "+" };
        let ea = exp.abs();
        if ea < 10 {
            format!("{sign}{m}e{es}0{ea}")
        } else {
            format!("{sign}{m}e{es}{ea}")
        }
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_g_like_go() {
        assert_eq!(format_g(1.1), "1.1");
        assert_eq!(format_g(-1.1), "-1.1");
        assert_eq!(format_g(2.0), "2");
        assert_eq!(format_g(f64::NAN), "NaN");
        assert_eq!(format_g(1e21), "1e+21");
        assert_eq!(format_g(1e-5), "1e-05");
        assert_eq!(format_g(0.0001), "0.0001");
        assert_eq!(format_g(123456.0), "123456");
        assert_eq!(format_g(1234567.0), "1.234567e+06");
    }

    #[test]
    fn kahan() {
        let mut s = 0.0;
        let mut c = 0.0;
        for x in [1e100, 1.0, -1e100] {
            (s, c) = kahan_inc(x, s, c);
        }
        assert_eq!(s + c, 1.0);
    }
}
