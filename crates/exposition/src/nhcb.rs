//! NHCB: converting classic histograms (`x_bucket{le=...}`, `x_count`,
//! `x_sum`) into native histograms with custom buckets (schema −53).
//!
//! Text expositions have no syntax for native histograms; Prometheus 3
//! gets native histograms out of text by collating the series of one
//! classic histogram into a single native histogram whose custom bounds
//! are the finite `le` values (`convert_classic_histograms_to_nhcb`). This
//! module is that conversion, kept free of I/O and of any storage so that
//! both the backfill (`tsdb create-blocks-from openmetrics`) and the
//! scraper can drive it:
//!
//! - [`ClassicHistogram`] accumulates one histogram (one label set, one
//!   timestamp) sample by sample and [`ClassicHistogram::convert`]s it:
//!   cumulative `le` counts become per-bucket counts, the `+Inf` bucket
//!   gives the count, `_sum` the sum. Integer counts give a
//!   [`Histogram`], anything else a [`FloatHistogram`], as Prometheus does.
//! - [`NhcbConverter`] is the streaming part: it is fed the entries of an
//!   exposition in order and groups the series of a `histogram`-typed
//!   family by label set without `le` (and, unlike Prometheus, by
//!   timestamp too, so that a backfill file listing the same histogram at
//!   many timestamps converts each timestamp separately).
//!
//! Rules, following Prometheus's `convertnhcb` semantically:
//! - `le` values may come in any order; a repeated `le` keeps the first
//!   count; a missing `+Inf` bucket is supplied with the count (or, without
//!   `_count`, with the highest bucket's count); a missing `_count` is the
//!   highest bucket's count.
//! - Errors (negative counts, counts that are not cumulative, `_count`
//!   different from the `+Inf` bucket, a histogram that fails validation)
//!   make the group unconvertible.
//!
//! One deliberate difference: when a group cannot be converted, Prometheus's
//! NHCB parser drops the classic series anyway (unless they are kept); here
//! the classic series of that group are passed through unchanged, so no
//! data is lost. Only `histogram` families are converted (not
//! `gaugehistogram`), and only series whose name is the family name plus
//! `_bucket`, `_count` or `_sum`; a `_bucket` series without a parsable,
//! non-NaN `le` stays a float series.

use pharos_model::{
    CUSTOM_BUCKETS_SCHEMA, FloatHistogram, Histogram, HistogramError, HistogramValue, Labels, Span,
    Timestamp,
};

use crate::MetricType;
use crate::float::parse_float;

/// Why a classic histogram could not be converted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NhcbError {
    /// An `le` bound is NaN.
    #[error("bucket boundary must not be NaN")]
    NanBound,
    /// A bucket count is negative.
    #[error("bucket count must be non-negative: le={le}, count={count}")]
    NegativeBucketCount {
        /// The bucket's bound.
        le: f64,
        /// Its count.
        count: f64,
    },
    /// `_count` is negative.
    #[error("count must be non-negative: count={0}")]
    NegativeCount(f64),
    /// A bucket's cumulative count is below the one of a lower bucket (or
    /// above the one of a higher bucket).
    #[error("count is not cumulative: le={le}, count={count}")]
    NotCumulative {
        /// The offending bucket's bound.
        le: f64,
        /// Its count.
        count: f64,
    },
    /// `_count` differs from the `+Inf` bucket.
    #[error("count mismatch: count={count} != le=+Inf count={inf}")]
    CountMismatch {
        /// The `_count` value.
        count: f64,
        /// The `+Inf` bucket's count.
        inf: f64,
    },
    /// The built histogram is not a valid native histogram.
    #[error("invalid histogram: {0}")]
    Invalid(#[from] HistogramError),
}

/// One classic histogram being collected (one label set at one timestamp).
#[derive(Debug, Clone, Default)]
pub struct ClassicHistogram {
    /// `(le, cumulative count)`, ascending by `le`, no duplicates.
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
    err: Option<NhcbError>,
}

impl ClassicHistogram {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything collected, keeping the allocation.
    pub fn reset(&mut self) {
        self.buckets.clear();
        self.count = None;
        self.sum = 0.0;
        self.err = None;
    }

    /// The first error met while collecting, if any (later calls are then
    /// ignored).
    pub fn err(&self) -> Option<&NhcbError> {
        self.err.as_ref()
    }

    /// Records bucket `le` with cumulative count `count`. Buckets may come
    /// in any order; a repeated `le` is ignored.
    pub fn set_bucket_count(&mut self, le: f64, count: f64) {
        if self.err.is_some() {
            return;
        }
        if le.is_nan() {
            self.err = Some(NhcbError::NanBound);
            return;
        }
        // A NaN count could never be cumulative.
        if count.is_nan() || count < 0.0 {
            self.err = Some(NhcbError::NegativeBucketCount { le, count });
            return;
        }
        let i = self.buckets.partition_point(|b| b.0 < le);
        if self.buckets.get(i).is_some_and(|b| b.0 == le) {
            return;
        }
        let below = i.checked_sub(1).and_then(|j| self.buckets.get(j));
        let above = self.buckets.get(i);
        if below.is_some_and(|b| count < b.1) || above.is_some_and(|b| count > b.1) {
            self.err = Some(NhcbError::NotCumulative { le, count });
            return;
        }
        self.buckets.insert(i, (le, count));
    }

    /// Records the `_count` sample.
    pub fn set_count(&mut self, count: f64) {
        if self.err.is_some() {
            return;
        }
        if count.is_nan() || count < 0.0 {
            self.err = Some(NhcbError::NegativeCount(count));
            return;
        }
        self.count = Some(count);
    }

    /// Records the `_sum` sample.
    pub fn set_sum(&mut self, sum: f64) {
        if self.err.is_none() {
            self.sum = sum;
        }
    }

    /// Builds the native histogram: an integer [`Histogram`] when every
    /// count is a whole number, else a [`FloatHistogram`]; compacted (empty
    /// buckets dropped from the spans, the custom bounds kept whole) and
    /// validated.
    pub fn convert(&self) -> Result<HistogramValue, NhcbError> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        let mut buckets = self.buckets.clone();
        let count = match (self.count, buckets.last()) {
            (Some(c), _) => c,
            (None, Some(b)) => b.1,
            (None, None) => 0.0,
        };
        if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
            buckets.push((f64::INFINITY, count));
        }
        let inf = buckets.last().map_or(count, |b| b.1);
        if count != inf {
            return Err(NhcbError::CountMismatch { count, inf });
        }
        let custom_values: Vec<f64> = buckets
            .iter()
            .take(buckets.len().saturating_sub(1))
            .map(|b| b.0)
            .collect();
        let spans = vec![Span {
            offset: 0,
            length: u32::try_from(buckets.len()).unwrap_or(u32::MAX),
        }];
        let whole = |v: f64| v.round() == v && v < 9.2e18;
        if whole(count) && buckets.iter().all(|b| whole(b.1)) {
            let mut deltas = Vec::with_capacity(buckets.len());
            let (mut prev_cum, mut prev_abs) = (0i64, 0i64);
            for b in &buckets {
                let cum = b.1 as i64;
                if cum < prev_cum {
                    return Err(NhcbError::NotCumulative {
                        le: b.0,
                        count: b.1,
                    });
                }
                let abs = cum - prev_cum;
                deltas.push(abs - prev_abs);
                prev_cum = cum;
                prev_abs = abs;
            }
            let mut h = Histogram {
                schema: CUSTOM_BUCKETS_SCHEMA,
                count: count as u64,
                sum: self.sum,
                positive_spans: spans,
                positive_buckets: deltas,
                custom_values,
                ..Histogram::default()
            };
            h.compact(2);
            h.validate()?;
            Ok(HistogramValue::Int(h))
        } else {
            if let Some(w) = buckets.windows(2).find(|w| w[1].1 < w[0].1) {
                return Err(NhcbError::NotCumulative {
                    le: w[1].0,
                    count: w[1].1,
                });
            }
            let mut prev = 0.0;
            let abs = buckets
                .iter()
                .map(|b| {
                    let d = b.1 - prev;
                    prev = b.1;
                    d
                })
                .collect();
            let mut h = FloatHistogram {
                schema: CUSTOM_BUCKETS_SCHEMA,
                count,
                sum: self.sum,
                positive_spans: spans,
                positive_buckets: abs,
                custom_values,
                ..FloatHistogram::default()
            };
            h.compact(0);
            h.validate()?;
            Ok(HistogramValue::Float(h))
        }
    }
}

/// Which part of a classic histogram a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicSuffix {
    /// `_bucket`.
    Bucket,
    /// `_count`.
    Count,
    /// `_sum`.
    Sum,
}

/// Splits `name` into its base name and classic-histogram suffix
/// (`_bucket`, `_sum`, `_count`); `None` for other names.
pub fn split_classic_suffix(name: &str) -> Option<(&str, ClassicSuffix)> {
    if let Some(b) = name.strip_suffix("_bucket") {
        Some((b, ClassicSuffix::Bucket))
    } else if let Some(b) = name.strip_suffix("_sum") {
        Some((b, ClassicSuffix::Sum))
    } else {
        name.strip_suffix("_count")
            .map(|b| (b, ClassicSuffix::Count))
    }
}

/// Parses an `le` label value as the exposition parsers parse sample
/// values (`+Inf`, exponents...; no surrounding spaces); `None` when it is
/// not a number or NaN.
pub fn parse_le(s: &str) -> Option<f64> {
    parse_float(s.as_bytes()).ok().filter(|v| !v.is_nan())
}

/// One output of [`NhcbConverter`].
#[derive(Debug, Clone, PartialEq)]
pub enum Converted {
    /// A float sample, passed through (not part of a converted histogram,
    /// a kept classic series, or a classic series of a group that could
    /// not be converted).
    Float {
        /// Series labels.
        labels: Labels,
        /// Timestamp as in the input.
        t: Option<Timestamp>,
        /// Value.
        v: f64,
    },
    /// A native histogram with custom buckets built from a classic one.
    /// Its labels are the classic labels without `le`, named after the
    /// family.
    Histogram {
        /// Series labels.
        labels: Labels,
        /// Timestamp as in the input.
        t: Option<Timestamp>,
        /// The histogram.
        h: HistogramValue,
    },
}

/// The group being collected.
#[derive(Debug)]
struct Group {
    labels: Labels,
    t: Option<Timestamp>,
    hist: ClassicHistogram,
    /// Classic samples held back (when they are not kept) to be passed
    /// through if the conversion fails.
    held: Vec<(Labels, f64)>,
}

/// Streams an exposition's entries and converts classic histograms to NHCB
/// (see the module docs). Feed it [`NhcbConverter::on_type`] for every
/// `# TYPE` line, [`NhcbConverter::on_other`] for any other non-sample
/// entry, [`NhcbConverter::push_sample`] for samples, and call
/// [`NhcbConverter::finish`] at the end; outputs are appended to `out` in
/// exposition order (a converted histogram comes right after its last
/// classic series).
#[derive(Debug)]
pub struct NhcbConverter {
    keep_classic: bool,
    family: Option<(String, MetricType)>,
    group: Option<Group>,
}

impl NhcbConverter {
    /// A converter; with `keep_classic` the classic series are passed
    /// through as well as converted (Prometheus's
    /// `always_scrape_classic_histograms`).
    pub fn new(keep_classic: bool) -> Self {
        NhcbConverter {
            keep_classic,
            family: None,
            group: None,
        }
    }

    /// A `# TYPE metric kind` line: ends the current group.
    pub fn on_type(&mut self, metric: &str, kind: MetricType, out: &mut Vec<Converted>) {
        self.flush(out);
        self.family = Some((metric.to_string(), kind));
    }

    /// Any other non-sample entry (`# HELP`, `# UNIT`): ends the current
    /// group.
    pub fn on_other(&mut self, out: &mut Vec<Converted>) {
        self.flush(out);
    }

    /// The end of the exposition: converts the last group.
    pub fn finish(&mut self, out: &mut Vec<Converted>) {
        self.flush(out);
    }

    /// One sample with its parsed labels.
    pub fn push_sample(
        &mut self,
        labels: Labels,
        t: Option<Timestamp>,
        v: f64,
        out: &mut Vec<Converted>,
    ) {
        let Some((base, part, le)) = self.classify(&labels) else {
            self.flush(out);
            out.push(Converted::Float { labels, t, v });
            return;
        };
        let mut b = labels.builder();
        b.set(pharos_model::METRIC_NAME, &base).del("le");
        let key = b.build();
        if self
            .group
            .as_ref()
            .is_some_and(|g| g.labels != key || g.t != t)
        {
            self.flush(out);
        }
        let g = self.group.get_or_insert_with(|| Group {
            labels: key,
            t,
            hist: ClassicHistogram::new(),
            held: Vec::new(),
        });
        match part {
            ClassicSuffix::Bucket => g.hist.set_bucket_count(le, v),
            ClassicSuffix::Count => g.hist.set_count(v),
            ClassicSuffix::Sum => g.hist.set_sum(v),
        }
        if self.keep_classic {
            out.push(Converted::Float { labels, t, v });
        } else {
            g.held.push((labels, v));
        }
    }

    /// `(base name, part, le)` when `labels` is a series of the current
    /// `histogram` family (`le` is 0 for `_count`/`_sum`).
    fn classify(&self, labels: &Labels) -> Option<(String, ClassicSuffix, f64)> {
        let (family, kind) = self.family.as_ref()?;
        if *kind != MetricType::Histogram {
            return None;
        }
        let (base, part) = split_classic_suffix(labels.metric_name()?)?;
        if base != family {
            return None;
        }
        let le = match part {
            ClassicSuffix::Bucket => parse_le(labels.get("le")?)?,
            _ => 0.0,
        };
        Some((base.to_string(), part, le))
    }

    fn flush(&mut self, out: &mut Vec<Converted>) {
        let Some(g) = self.group.take() else {
            return;
        };
        match g.hist.convert() {
            Ok(h) => out.push(Converted::Histogram {
                labels: g.labels,
                t: g.t,
                h,
            }),
            Err(_) => out.extend(g.held.into_iter().map(|(labels, v)| Converted::Float {
                labels,
                t: g.t,
                v,
            })),
        }
    }
}

/// Converts a whole exposition (`input` in `format`): the parsed samples
/// with classic histograms replaced (or, with `keep_classic`, accompanied)
/// by NHCB histograms. Stops at the first parse error.
pub fn convert_exposition(
    input: &[u8],
    format: crate::Format,
    keep_classic: bool,
) -> Result<Vec<Converted>, crate::ParseError> {
    let mut p = crate::Parser::new(input, format);
    let mut c = NhcbConverter::new(keep_classic);
    let mut out = Vec::new();
    while let Some(e) = p.next_entry() {
        match e? {
            crate::Entry::Type { metric, kind } => c.on_type(metric, kind, &mut out),
            crate::Entry::Sample(s) => c.push_sample(s.labels(), s.timestamp, s.value, &mut out),
            _ => c.on_other(&mut out),
        }
    }
    c.finish(&mut out);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::Format;
    use proptest::prelude::*;

    fn build(buckets: &[(f64, f64)], count: Option<f64>, sum: f64) -> ClassicHistogram {
        let mut h = ClassicHistogram::new();
        for &(le, c) in buckets {
            h.set_bucket_count(le, c);
        }
        if let Some(c) = count {
            h.set_count(c);
        }
        h.set_sum(sum);
        h
    }

    /// Cumulative counts at each custom bound and at +Inf, read back
    /// through `all_buckets`.
    fn cumulative(fh: &FloatHistogram, les: &[f64]) -> Vec<f64> {
        les.iter()
            .map(|&le| {
                fh.all_buckets()
                    .filter(|b| b.upper <= le)
                    .map(|b| b.count)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn integer_histogram() {
        let h = build(
            &[(0.5, 1.0), (1.0, 3.0), (2.0, 3.0), (f64::INFINITY, 6.0)],
            Some(6.0),
            10.5,
        );
        let HistogramValue::Int(h) = h.convert().unwrap() else {
            panic!("expected an integer histogram");
        };
        assert_eq!(h.schema, CUSTOM_BUCKETS_SCHEMA);
        assert_eq!(h.count, 6);
        assert_eq!(h.sum, 10.5);
        assert_eq!(h.custom_values, vec![0.5, 1.0, 2.0]);
        // absolute buckets 1, 2, 0, 3 -> deltas 1, 1, -2, 3 (the empty
        // bucket stays inside the span: compact(2)).
        assert_eq!(h.positive_buckets, vec![1, 1, -2, 3]);
        assert_eq!(
            h.positive_spans,
            vec![Span {
                offset: 0,
                length: 4
            }]
        );
    }

    #[test]
    fn float_histogram_and_compaction() {
        let h = build(&[(1.0, 0.0), (2.0, 0.5), (f64::INFINITY, 0.5)], None, 1.0);
        let HistogramValue::Float(h) = h.convert().unwrap() else {
            panic!("expected a float histogram");
        };
        assert_eq!(h.count, 0.5);
        assert_eq!(h.custom_values, vec![1.0, 2.0]);
        assert_eq!(h.positive_buckets, vec![0.5]);
        assert_eq!(
            h.positive_spans,
            vec![Span {
                offset: 1,
                length: 1
            }]
        );
    }

    #[test]
    fn missing_inf_and_count_and_unsorted_and_duplicates() {
        // No +Inf: supplied from _count.
        let h = build(&[(2.0, 3.0), (1.0, 1.0)], Some(5.0), 0.0);
        let fh = h.convert().unwrap().to_float();
        assert_eq!(fh.custom_values, vec![1.0, 2.0]);
        assert_eq!(
            cumulative(&fh, &[1.0, 2.0, f64::INFINITY]),
            vec![1.0, 3.0, 5.0]
        );
        // No _count and no +Inf: the highest bucket.
        let h = build(&[(1.0, 1.0), (2.0, 3.0), (1.0, 2.0)], None, 0.0);
        let fh = h.convert().unwrap().to_float();
        assert_eq!(fh.count, 3.0);
        assert_eq!(
            cumulative(&fh, &[1.0, 2.0, f64::INFINITY]),
            vec![1.0, 3.0, 3.0]
        );
        // Only a sum.
        let fh = build(&[], None, 4.0).convert().unwrap().to_float();
        assert_eq!((fh.count, fh.sum), (0.0, 4.0));
    }

    #[test]
    fn errors() {
        let e = |b: &[(f64, f64)], c| build(b, c, 0.0).convert().unwrap_err();
        assert!(matches!(
            e(&[(1.0, 2.0), (2.0, 1.0)], None),
            NhcbError::NotCumulative { .. }
        ));
        assert!(matches!(
            e(&[(2.0, 1.0), (1.0, 2.0)], None),
            NhcbError::NotCumulative { .. }
        ));
        assert!(matches!(
            e(&[(1.0, 1.0), (f64::INFINITY, 2.0)], Some(3.0)),
            NhcbError::CountMismatch { .. }
        ));
        assert!(matches!(
            e(&[(1.0, -1.0)], None),
            NhcbError::NegativeBucketCount { .. }
        ));
        assert!(matches!(e(&[], Some(-1.0)), NhcbError::NegativeCount(_)));
        assert!(matches!(e(&[(f64::NAN, 1.0)], None), NhcbError::NanBound));
    }

    const PAGE: &str = "# TYPE x histogram
x_bucket{a=\"1\",le=\"0.1\"} 1 10
x_bucket{a=\"1\",le=\"1\"} 2 10
x_bucket{a=\"1\",le=\"+Inf\"} 3 10
x_count{a=\"1\"} 3 10
x_sum{a=\"1\"} 1.5 10
x_bucket{a=\"1\",le=\"0.1\"} 2 20
x_bucket{a=\"1\",le=\"1\"} 3 20
x_bucket{a=\"1\",le=\"+Inf\"} 5 20
x_count{a=\"1\"} 5 20
x_sum{a=\"1\"} 2.5 20
x_bucket{a=\"2\",le=\"1\"} 2 10
x_bucket{a=\"2\",le=\"+Inf\"} 1 10
x_count{a=\"2\"} 1 10
x_sum{a=\"2\"} 1 10
# TYPE y gauge
y 1 10
# EOF
";

    #[test]
    fn exposition_groups_by_labels_and_timestamp() {
        let out = convert_exposition(PAGE.as_bytes(), Format::OpenMetrics, false).unwrap();
        let kinds: Vec<String> = out
            .iter()
            .map(|c| match c {
                Converted::Float { labels, t, .. } => {
                    format!("F {} {:?}", labels.metric_name().unwrap(), t)
                }
                Converted::Histogram { labels, t, h } => {
                    format!("H {labels:?} {t:?} {}", h.to_float().count)
                }
            })
            .collect();
        // a="2" is not cumulative (2 then 1): its classic series pass through.
        assert_eq!(kinds.len(), 7, "{kinds:#?}");
        assert!(kinds[0].starts_with("H ") && kinds[0].contains("Some(10000)"));
        assert!(kinds[0].ends_with(" 3"), "{kinds:?}");
        assert!(kinds[1].starts_with("H ") && kinds[1].ends_with(" 5"));
        assert_eq!(kinds[2], "F x_bucket Some(10000)");
        assert_eq!(kinds[5], "F x_sum Some(10000)");
        assert_eq!(kinds[6], "F y Some(10000)");
        let Converted::Histogram { labels, .. } = &out[0] else {
            panic!()
        };
        assert_eq!(
            labels,
            &Labels::from_pairs(&[("__name__", "x"), ("a", "1")])
        );

        let kept = convert_exposition(PAGE.as_bytes(), Format::OpenMetrics, true).unwrap();
        // 14 classic floats + 2 histograms + y.
        assert_eq!(kept.len(), 17);
        assert!(matches!(kept[5], Converted::Histogram { .. }));
        assert!(matches!(kept[11], Converted::Histogram { .. }));
    }

    #[test]
    fn only_histogram_families_and_matching_names() {
        let page = "# TYPE x gaugehistogram\nx_bucket{le=\"1\"} 1\nx_bucket{le=\"+Inf\"} 1\n\
                    # TYPE z histogram\nw_bucket{le=\"1\"} 1\nz_bucket{le=\"nope\"} 1\nz_bucket 1\n# EOF\n";
        let out = convert_exposition(page.as_bytes(), Format::OpenMetrics, false).unwrap();
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|c| matches!(c, Converted::Float { .. })));
    }

    proptest! {
        #[test]
        fn convert_never_panics(
            ops in proptest::collection::vec((0u8..3, proptest::num::f64::ANY, proptest::num::f64::ANY), 0..20)
        ) {
            let mut h = ClassicHistogram::new();
            for (k, a, b) in ops {
                match k {
                    0 => h.set_bucket_count(a, b),
                    1 => h.set_count(b),
                    _ => h.set_sum(b),
                }
            }
            if let Ok(v) = h.convert() {
                prop_assert!(v.validate().is_ok());
            }
        }

        #[test]
        fn roundtrip_integer_counts(
            steps in proptest::collection::vec((1u32..1000, 0u64..1000), 1..15),
            with_inf in any::<bool>(),
            with_count in any::<bool>(),
            seed in any::<u64>(),
        ) {
            // Strictly increasing bounds, non-decreasing counts.
            let mut le = -5.0;
            let mut cum = 0u64;
            let mut buckets = Vec::new();
            for (dl, dc) in steps {
                le += f64::from(dl) / 8.0;
                cum += dc;
                buckets.push((le, cum as f64));
            }
            let total = cum + 3;
            if with_inf {
                buckets.push((f64::INFINITY, total as f64));
            }
            let mut order = buckets.clone();
            // A deterministic shuffle plus a duplicate of the first bucket.
            let n = order.len();
            order.rotate_left((seed as usize) % n);
            if seed % 2 == 0 { order.reverse(); }
            order.push(buckets[0]);
            let count = (with_inf || with_count).then_some(total as f64);
            let h = build(&order, count, 1.0);
            let v = h.convert().unwrap();
            prop_assert!(matches!(v, HistogramValue::Int(_)));
            let fh = v.to_float();
            let les: Vec<f64> = buckets.iter().map(|b| b.0).collect();
            let want: Vec<f64> = buckets.iter().map(|b| b.1).collect();
            prop_assert_eq!(cumulative(&fh, &les), want);
            let expect_count = if with_inf || with_count { total } else { cum };
            prop_assert_eq!(fh.count, expect_count as f64);
            prop_assert_eq!(cumulative(&fh, &[f64::INFINITY]), vec![expect_count as f64]);
        }

        #[test]
        fn roundtrip_float_counts(
            steps in proptest::collection::vec((1u32..1000, 0.0f64..100.0), 1..15),
        ) {
            let mut le = 0.0;
            let mut cum = 0.25;
            let mut buckets = Vec::new();
            for (dl, dc) in steps {
                le += f64::from(dl);
                cum += dc;
                buckets.push((le, cum));
            }
            let h = build(&buckets, None, 1.0);
            let fh = h.convert().unwrap().to_float();
            let les: Vec<f64> = buckets.iter().map(|b| b.0).collect();
            for (got, want) in cumulative(&fh, &les).iter().zip(buckets.iter().map(|b| b.1)) {
                prop_assert!((got - want).abs() <= 1e-9 * want.max(1.0), "{} vs {}", got, want);
            }
        }

        #[test]
        fn exposition_never_panics(s in "[a-z_{}=\"+. 0-9\\n#A-Z]{0,300}") {
            let _ = convert_exposition(s.as_bytes(), Format::PrometheusText, false);
            let _ = convert_exposition(s.as_bytes(), Format::OpenMetrics, true);
        }
    }
}
