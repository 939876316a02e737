//! The PromQL-specific parts of native-histogram evaluation:
//! `histogram_quantile`, `histogram_fraction`, the variance estimate of
//! `histogram_stddev`/`histogram_stdvar`, the running mean of `avg` and
//! `avg_over_time`, and Kahan summation with an optional compensation
//! histogram (what `sum` and `sum_over_time` keep per group).
//!
//! Everything else — addition and subtraction with schema, zero-bucket and
//! custom-bound reconciliation, Kahan addition, scaling, counter-reset
//! detection, resolution changes, trimming, bucket bounds and iteration,
//! formatting — is [`pharos_model::histogram`]'s, the one implementation
//! shared with storage and the API, so that results come out bit-identical
//! to Prometheus's (bucket bounds, for instance, come from Prometheus's
//! table of mantissas rather than from `exp2`, which differs in the last
//! bits).

use pharos_model::histogram::{AddInfo, Bucket, FloatHistogram, HistogramError};

/// `acc += other` with Kahan compensation kept in `comp` (Prometheus's
/// `KahanAdd`; `None` starts a fresh compensation). Finish with
/// [`kahan_finish`].
pub(crate) fn kahan_add(
    acc: &mut FloatHistogram,
    comp: &mut Option<FloatHistogram>,
    other: &FloatHistogram,
) -> Result<AddInfo, HistogramError> {
    let c = comp.get_or_insert_with(|| acc.new_compensation());
    acc.kahan_add_with_info(other, c)
}

/// Adds the Kahan compensation into the sum, as Prometheus does at the end
/// of `sum` (an error cannot occur after successful [`kahan_add`] calls and
/// is ignored, as upstream).
pub(crate) fn kahan_finish(acc: &mut FloatHistogram, comp: Option<FloatHistogram>) {
    if let Some(c) = comp {
        let _compatible_by_construction = acc.add(&c);
    }
}

/// The running mean of histograms as Prometheus computes `avg` and
/// `avg_over_time`: a Kahan sum divided at the end, switching to an
/// incremental mean once the sum would overflow.
#[derive(Debug, Clone)]
pub(crate) struct HistAvg {
    value: FloatHistogram,
    comp: Option<FloatHistogram>,
    incremental: bool,
    count: f64,
}

impl HistAvg {
    /// Starts with one histogram.
    pub(crate) fn new(h: &FloatHistogram) -> HistAvg {
        HistAvg {
            value: h.clone(),
            comp: None,
            incremental: false,
            count: 1.0,
        }
    }

    /// Adds a histogram.
    pub(crate) fn add(&mut self, h: &FloatHistogram) -> Result<AddInfo, HistogramError> {
        self.count += 1.0;
        let n = self.count;
        if !self.incremental {
            let mut v = self.value.clone();
            let mut c = self.comp.clone();
            let info = kahan_add(&mut v, &mut c, h)?;
            if !v.has_overflow() {
                self.value = v;
                self.comp = c;
                return Ok(info);
            }
            self.incremental = true;
            self.value.div(n - 1.0);
            if let Some(c) = self.comp.as_mut() {
                c.div(n - 1.0);
            }
        }
        let q = (n - 1.0) / n;
        if let Some(c) = self.comp.as_mut() {
            c.mul(q);
        }
        let mut to_add = h.clone();
        to_add.div(n);
        self.value.mul(q);
        kahan_add(&mut self.value, &mut self.comp, &to_add)
    }

    /// The mean.
    pub(crate) fn finish(mut self) -> FloatHistogram {
        if !self.incremental {
            self.value.div(self.count);
            if let Some(c) = self.comp.as_mut() {
                c.div(self.count);
            }
        }
        kahan_finish(&mut self.value, self.comp);
        self.value
    }
}

/// What a quantile or fraction computation wants reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuantileNote {
    /// Nothing to report.
    None,
    /// The result is NaN because of NaN observations.
    NanResult,
    /// NaN observations skew the result.
    NanSkew,
}

/// `histogram_quantile` of a native histogram (Prometheus's
/// `HistogramQuantile`).
pub(crate) fn quantile(q: f64, h: &FloatHistogram) -> (f64, QuantileNote) {
    if q < 0.0 {
        return (f64::NEG_INFINITY, QuantileNote::None);
    }
    if q > 1.0 {
        return (f64::INFINITY, QuantileNote::None);
    }
    if h.count == 0.0 || q.is_nan() {
        return (f64::NAN, QuantileNote::None);
    }
    let custom = h.uses_custom_buckets();
    let mut buckets: Vec<Bucket> = h.all_buckets().collect();
    let forward = h.sum.is_nan() || q < 0.5;
    let mut rank = if forward {
        q * h.count
    } else {
        buckets.reverse();
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut bucket = Bucket {
        lower: 0.0,
        upper: 0.0,
        lower_inclusive: false,
        upper_inclusive: false,
        count: 0.0,
        index: 0,
    };
    let mut pos = 0;
    while pos < buckets.len() {
        let b = buckets[pos];
        pos += 1;
        if b.count == 0.0 {
            continue;
        }
        bucket = b;
        count += b.count;
        if count >= rank {
            break;
        }
    }
    if !custom && bucket.lower < 0.0 && bucket.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            bucket.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            bucket.upper = 0.0;
        }
    } else if custom {
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return (bucket.upper, QuantileNote::None);
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return (bucket.lower, QuantileNote::None);
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            return (f64::NAN, QuantileNote::NanResult);
        }
        return (bucket.upper, QuantileNote::None);
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    let mut note = QuantileNote::None;
    if h.sum.is_nan() {
        let rest: f64 = buckets[pos..].iter().map(|b| b.count).sum();
        if count + rest < h.count {
            note = QuantileNote::NanSkew;
        }
    }
    let fraction = rank / bucket.count;
    if custom || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return (
            bucket.lower + (bucket.upper - bucket.lower) * fraction,
            note,
        );
    }
    let log_lower = bucket.lower.abs().log2();
    let log_upper = bucket.upper.abs().log2();
    if bucket.lower > 0.0 {
        return (
            (log_lower + (log_upper - log_lower) * fraction).exp2(),
            note,
        );
    }
    (
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2(),
        note,
    )
}

/// `histogram_fraction` of a native histogram (Prometheus's
/// `HistogramFraction`); the flag says NaN observations were found.
pub(crate) fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> (f64, bool) {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return (f64::NAN, false);
    }
    if lower >= upper {
        return (0.0, false);
    }
    let buckets: Vec<Bucket> = h.all_buckets().collect();
    let custom = h.uses_custom_buckets();
    let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut pos = 0;
    while pos < buckets.len() {
        let mut b = buckets[pos];
        pos += 1;
        count += b.count;
        let mut zero_bucket = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero_bucket = true;
            if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
                b.lower = 0.0;
            } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
                b.upper = 0.0;
            }
        }
        let interp = |v: f64| -> f64 {
            if custom || zero_bucket {
                if b.lower == f64::NEG_INFINITY {
                    return b.count;
                }
                rank + b.count * b.fraction_below(v, true)
            } else {
                rank + b.count * b.fraction_below(v, false)
            }
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    let mut nans = false;
    if h.sum.is_nan() {
        count += buckets[pos..].iter().map(|b| b.count).sum::<f64>();
        if count < h.count {
            nans = true;
        }
    } else {
        count = h.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    ((upper_rank - lower_rank) / h.count, nans)
}

/// Estimated variance of the observations (`histogram_stdvar`): each
/// bucket's observations sit at its midpoint (arithmetic for custom
/// buckets, geometric for exponential ones, 0 for the zero bucket).
pub(crate) fn variance(h: &FloatHistogram) -> f64 {
    let custom = h.uses_custom_buckets();
    let mean = h.sum / h.count;
    let mut var = 0.0;
    let mut c = 0.0;
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if custom {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 { -v } else { v }
        };
        let delta = val - mean;
        (var, c) = crate::value::kahan_inc(b.count * delta * delta, var, c);
    }
    (var + c) / h.count
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharos_model::histogram::{Span, parse_test_histogram};

    fn h(schema: i32, spans: &[(i32, u32)], b: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema,
            count: b.iter().sum(),
            positive_spans: spans
                .iter()
                .map(|&(offset, length)| Span { offset, length })
                .collect(),
            positive_buckets: b.to_vec(),
            ..Default::default()
        }
    }

    fn arb_hist() -> impl proptest::strategy::Strategy<Value = FloatHistogram> {
        use proptest::prelude::*;
        (
            prop_oneof![Just(-53), -6i32..10],
            proptest::collection::vec((-5i32..5, 0u32..4), 0..4),
            proptest::collection::vec(-3.0f64..10.0, 0..12),
            proptest::collection::vec(-10.0f64..10.0, 0..4),
            prop_oneof![0.0f64..1.0, Just(f64::NAN)],
        )
            .prop_map(|(schema, spans, buckets, custom, zt)| {
                let spans: Vec<Span> = spans
                    .into_iter()
                    .map(|(offset, length)| Span { offset, length })
                    .collect();
                let mut custom = custom;
                custom.sort_by(f64::total_cmp);
                FloatHistogram {
                    schema,
                    count: buckets.iter().sum(),
                    sum: 1.0,
                    zero_threshold: zt,
                    zero_count: 1.0,
                    negative_spans: spans.clone(),
                    negative_buckets: buckets.clone(),
                    positive_spans: spans,
                    positive_buckets: buckets,
                    custom_values: custom,
                    ..Default::default()
                }
            })
    }

    proptest::proptest! {
        /// What PromQL does with histograms from storage or arithmetic
        /// never panics, even on invalid schemas, spans or thresholds.
        #[test]
        fn operations_never_panic(a in arb_hist(), b in arb_hist(), x in -5.0f64..5.0) {
            let mut s = a.clone();
            let _ = s.sub_with_info(&b);
            s.compact(0);
            let mut k = a.clone();
            let mut c = None;
            let _ = kahan_add(&mut k, &mut c, &b);
            kahan_finish(&mut k, c);
            let mut avg = HistAvg::new(&a);
            let _ = avg.add(&b);
            let _ = avg.finish();
            let _ = a.detect_reset(&b);
            let _ = quantile(x / 5.0, &a);
            let _ = fraction(x, x + 1.0, &a);
            let _ = variance(&a);
            let _ = a.to_string();
            let mut t = a.clone();
            t.trim_buckets(x, x > 0.0);
            let mut r = a;
            r.reduce_resolution(-4);
            r.compact(0);
        }
    }

    #[test]
    fn odd_schemas_do_not_panic() {
        for schema in [-53, -20, -5, 9, 40, i32::MIN, i32::MAX] {
            let mut a = h(schema, &[(-3, 2)], &[1.0, 2.0]);
            let b = h(0, &[(0, 2)], &[1.0, 1.0]);
            let _ = a.add_with_info(&b);
            let _ = a.detect_reset(&b);
            let _ = quantile(0.5, &a);
            let _ = fraction(0.0, 1.0, &a);
            let _ = a.to_string();
            a.trim_buckets(1.0, true);
        }
    }

    #[test]
    fn quantile_and_fraction() {
        let x = FloatHistogram {
            sum: 5.0,
            ..h(0, &[(0, 3)], &[1.0, 2.0, 1.0])
        };
        let (q, _) = quantile(0.5, &x);
        assert!((q - std::f64::consts::SQRT_2).abs() < 1e-12);
        assert_eq!(fraction(1.0, 2.0, &x).0, 0.5);
        assert_eq!(fraction(0.0, 8.0, &x).0, 1.0);
    }

    /// Bucket bounds come from Prometheus's table: at schema 1 the bound
    /// of bucket 0 below 1 is 0.7071067811865475 (`exp2(-0.5)` would give
    /// ...476), and a quantile at the very top of that bucket returns it.
    #[test]
    fn quantile_uses_exact_bucket_bounds() {
        let x = parse_test_histogram("{{schema:1 count:2 sum:1 buckets:[1 1]}}").unwrap();
        let x = FloatHistogram {
            positive_spans: vec![Span {
                offset: -1,
                length: 2,
            }],
            ..x
        };
        let (q, _) = quantile(0.5, &x);
        assert_eq!(q, 0.7071067811865475);
    }

    #[test]
    fn kahan_sum_and_mean() {
        let a = h(0, &[(0, 2)], &[1.0, 2.0]);
        let b = h(1, &[(0, 2)], &[1.0, 1.0]);
        let mut s = a.clone();
        let mut c = None;
        let info = kahan_add(&mut s, &mut c, &b).unwrap();
        assert!(!info.nhcb_bounds_reconciled);
        kahan_finish(&mut s, c);
        s.compact(0);
        assert_eq!(s.schema, 0);
        assert_eq!(s.count, 5.0);
        assert_eq!(s.positive_buckets, vec![2.0, 3.0]);
        let mut m = HistAvg::new(&a);
        m.add(&b).unwrap();
        let mut m = m.finish();
        m.compact(0);
        assert_eq!(m.count, 2.5);
        assert_eq!(m.positive_buckets, vec![1.0, 1.5]);
        let custom = h(-53, &[(0, 1)], &[1.0]);
        let mut s = a;
        assert_eq!(
            kahan_add(&mut s, &mut None, &custom),
            Err(HistogramError::IncompatibleSchema)
        );
    }
}
