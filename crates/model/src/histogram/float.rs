//! Arithmetic, validation, compaction and counter-reset detection on
//! [`FloatHistogram`], following Prometheus's `float_histogram.go`.

use super::error::HistogramError;
use super::layout::{self, SpanWalk};
use super::math::{bucket_upper_bound, go_g, kahan_inc, target_idx};
use super::{CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Span, is_exponential_schema};

/// One side of the other operand in `kahan_add`: spans, buckets, and the
/// compensation its resolution reduction produced.
type OtherSide = (Vec<Span>, Vec<f64>, Option<Vec<f64>>);

/// Side information from [`FloatHistogram::add_with_info`] and friends,
/// which PromQL turns into annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddInfo {
    /// One operand said `CounterReset` and the other `NotCounterReset`; the
    /// result's hint was set to `Unknown`.
    pub counter_reset_collision: bool,
    /// Both were custom-bucket histograms with different bounds; the result
    /// uses the bounds common to both (buckets merged accordingly).
    pub nhcb_bounds_reconciled: bool,
}

/// Checks custom bounds (no NaN, strictly increasing, no explicit +Inf) and
/// the spans against them.
pub(crate) fn check_custom_bounds(
    bounds: &[f64],
    spans: &[Span],
    num_buckets: usize,
) -> Result<(), HistogramError> {
    fn f6(v: f64) -> String {
        if v.is_infinite() {
            if v > 0.0 {
                "+Inf".into()
            } else {
                "-Inf".into()
            }
        } else if v.is_nan() {
            "NaN".into()
        } else {
            format!("{v:.6}")
        }
    }
    let mut prev = f64::NEG_INFINITY;
    for (i, &curr) in bounds.iter().enumerate() {
        if curr.is_nan() {
            return Err(HistogramError::CustomBucketsNaN(String::new()));
        }
        if i > 0 && curr <= prev {
            return Err(HistogramError::CustomBucketsInvalid(format!(
                "previous bound is {} and current is {}",
                f6(prev),
                f6(curr)
            )));
        }
        prev = curr;
    }
    if prev == f64::INFINITY {
        return Err(HistogramError::CustomBucketsInfinite(
            "last +Inf bound must not be explicitly defined".into(),
        ));
    }
    let mut span_buckets: u64 = 0;
    let mut total_len: i64 = 0;
    for (n, span) in spans.iter().enumerate() {
        if span.offset < 0 {
            return Err(HistogramError::SpanNegativeOffset(format!(
                "span number {} with offset {}",
                n + 1,
                span.offset
            )));
        }
        span_buckets += span.length as u64;
        total_len += span.length as i64 + span.offset as i64;
    }
    if span_buckets != num_buckets as u64 {
        return Err(HistogramError::SpansBucketsMismatch(format!(
            "spans need {span_buckets} buckets, have {num_buckets} buckets"
        )));
    }
    if (bounds.len() as i64 + 1) < total_len {
        return Err(HistogramError::CustomBucketsMismatch(format!(
            "only {} custom bounds defined which is insufficient to cover total span length of {}",
            bounds.len(),
            total_len
        )));
    }
    Ok(())
}

fn check_float_buckets(buckets: &[f64]) -> Result<(), HistogramError> {
    for (i, &c) in buckets.iter().enumerate() {
        if c < 0.0 {
            return Err(HistogramError::NegativeBucketCount(format!(
                "bucket number {} has observation count of {}",
                i + 1,
                go_g(c)
            )));
        }
    }
    Ok(())
}

fn bits_eq(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl FloatHistogram {
    /// Whether the schema is the custom-buckets schema (−53).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Checks the histogram's consistency as Prometheus's `Validate`: valid
    /// schema, spans matching the buckets, no negative bucket/zero/total
    /// counts, and for custom buckets valid bounds and no zero bucket or
    /// negative side. (Like Prometheus, the total count is not compared
    /// with the bucket sum for float histograms.)
    pub fn validate(&self) -> Result<(), HistogramError> {
        if self.uses_custom_buckets() {
            check_custom_bounds(
                &self.custom_values,
                &self.positive_spans,
                self.positive_buckets.len(),
            )
            .map_err(|e| e.with_prefix("custom buckets"))?;
            if self.zero_count != 0.0 {
                return Err(HistogramError::CustomBucketsZeroCount);
            }
            if self.zero_threshold != 0.0 {
                return Err(HistogramError::CustomBucketsZeroThresh);
            }
            if !self.negative_spans.is_empty() {
                return Err(HistogramError::CustomBucketsNegSpans);
            }
            if !self.negative_buckets.is_empty() {
                return Err(HistogramError::CustomBucketsNegBuckets);
            }
        } else if is_exponential_schema(self.schema) {
            layout::check_spans(&self.positive_spans, self.positive_buckets.len())
                .map_err(|e| e.with_prefix("positive side"))?;
            layout::check_spans(&self.negative_spans, self.negative_buckets.len())
                .map_err(|e| e.with_prefix("negative side"))?;
            check_float_buckets(&self.negative_buckets)
                .map_err(|e| e.with_prefix("negative side"))?;
            if self.zero_count < 0.0 {
                return Err(HistogramError::NegativeBucketCount(format!(
                    "zero bucket has observation count of {}",
                    go_g(self.zero_count)
                )));
            }
            if !self.custom_values.is_empty() {
                return Err(HistogramError::ExpSchemaCustomBounds);
            }
        } else {
            return Err(HistogramError::InvalidSchema(self.schema));
        }
        if self.count < 0.0 {
            return Err(HistogramError::NegativeCount(format!(
                "observation count is  {}",
                go_g(self.count)
            )));
        }
        check_float_buckets(&self.positive_buckets).map_err(|e| e.with_prefix("positive side"))
    }

    /// Scales the histogram by `factor`: zero count, count, sum and every
    /// bucket. A negative factor turns it into a gauge histogram.
    pub fn mul(&mut self, factor: f64) {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        self.positive_buckets.iter_mut().for_each(|b| *b *= factor);
        self.negative_buckets.iter_mut().for_each(|b| *b *= factor);
        if factor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Divides the histogram by `scalar` like [`FloatHistogram::mul`].
    /// Division by zero divides zero count, count and sum (giving ±Inf or
    /// NaN) and removes all buckets, as Prometheus does (the hint is then
    /// left alone). A negative scalar turns it into a gauge histogram.
    pub fn div(&mut self, scalar: f64) {
        self.zero_count /= scalar;
        self.count /= scalar;
        self.sum /= scalar;
        if scalar == 0.0 {
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            self.positive_spans.clear();
            self.negative_spans.clear();
            return;
        }
        self.positive_buckets.iter_mut().for_each(|b| *b /= scalar);
        self.negative_buckets.iter_mut().for_each(|b| *b /= scalar);
        if scalar < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// `self += other` (Prometheus's `Add`): counts, sum, zero bucket and
    /// buckets are added. The result takes the lower of both schemas
    /// (buckets merged), and a zero bucket wide enough for both (buckets
    /// that fall into it are moved there). Custom-bucket histograms can only
    /// be added to each other; with different bounds, both are mapped onto
    /// the bounds they have in common. Spans of the result may contain empty
    /// buckets: call [`FloatHistogram::compact`] afterwards.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<(), HistogramError> {
        self.add_with_info(other).map(|_| ())
    }

    /// [`FloatHistogram::add`] also reporting counter-reset-hint collisions
    /// and custom-bounds reconciliation.
    pub fn add_with_info(&mut self, other: &FloatHistogram) -> Result<AddInfo, HistogramError> {
        self.add_or_sub(other, false)
    }

    /// `self -= other`, as [`FloatHistogram::add`] (the counter-reset hint
    /// is combined the same way; PromQL's `-` sets it to gauge afterwards).
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<(), HistogramError> {
        self.sub_with_info(other).map(|_| ())
    }

    /// [`FloatHistogram::sub`] with the [`AddInfo`].
    pub fn sub_with_info(&mut self, other: &FloatHistogram) -> Result<AddInfo, HistogramError> {
        self.add_or_sub(other, true)
    }

    fn add_or_sub(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Result<AddInfo, HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::IncompatibleSchema);
        }
        let mut info = AddInfo {
            counter_reset_collision: self.adjust_counter_reset(other),
            nhcb_bounds_reconciled: false,
        };
        if !self.uses_custom_buckets() {
            let (other_zero, _) = self.reconcile_zero_buckets(other, None);
            if negate {
                self.zero_count -= other_zero;
            } else {
                self.zero_count += other_zero;
            }
        }
        if negate {
            self.count -= other.count;
            self.sum -= other.sum;
        } else {
            self.count += other.count;
            self.sum += other.sum;
        }

        if self.uses_custom_buckets() {
            if self.custom_values == other.custom_values {
                let (s, b) = layout::add(
                    self.schema,
                    self.zero_threshold,
                    negate,
                    &self.positive_spans,
                    &self.positive_buckets,
                    &other.positive_spans,
                    &other.positive_buckets,
                );
                self.positive_spans = s;
                self.positive_buckets = b;
            } else {
                info.nhcb_bounds_reconciled = true;
                let bounds = layout::intersect_bounds(&self.custom_values, &other.custom_values);
                let mut sums = vec![0.0; bounds.len() + 1];
                let mut comps = vec![0.0; bounds.len() + 1];
                layout::map_custom_buckets(
                    &self.positive_spans,
                    &self.positive_buckets,
                    &self.custom_values,
                    &bounds,
                    false,
                    None,
                    &mut sums,
                    &mut comps,
                );
                layout::map_custom_buckets(
                    &other.positive_spans,
                    &other.positive_buckets,
                    &other.custom_values,
                    &bounds,
                    negate,
                    None,
                    &mut sums,
                    &mut comps,
                );
                let (s, b, _) = layout::encode_dense(&sums, &comps);
                self.positive_spans = s;
                self.positive_buckets = b;
                self.custom_values = bounds;
            }
            return Ok(info);
        }

        let other_pos: (Vec<Span>, Vec<f64>);
        let other_neg: (Vec<Span>, Vec<f64>);
        let (op_spans, op_buckets, on_spans, on_buckets): (&[Span], &[f64], &[Span], &[f64]) =
            if other.schema < self.schema {
                self.reduce_lenient(other.schema);
                (
                    &other.positive_spans,
                    &other.positive_buckets,
                    &other.negative_spans,
                    &other.negative_buckets,
                )
            } else if other.schema > self.schema {
                other_pos = reduce_side_lenient(
                    &other.positive_spans,
                    &other.positive_buckets,
                    other.schema,
                    self.schema,
                );
                other_neg = reduce_side_lenient(
                    &other.negative_spans,
                    &other.negative_buckets,
                    other.schema,
                    self.schema,
                );
                (&other_pos.0, &other_pos.1, &other_neg.0, &other_neg.1)
            } else {
                (
                    &other.positive_spans,
                    &other.positive_buckets,
                    &other.negative_spans,
                    &other.negative_buckets,
                )
            };
        let (ps, pb) = layout::add(
            self.schema,
            self.zero_threshold,
            negate,
            &self.positive_spans,
            &self.positive_buckets,
            op_spans,
            op_buckets,
        );
        let (ns, nb) = layout::add(
            self.schema,
            self.zero_threshold,
            negate,
            &self.negative_spans,
            &self.negative_buckets,
            on_spans,
            on_buckets,
        );
        self.positive_spans = ps;
        self.positive_buckets = pb;
        self.negative_spans = ns;
        self.negative_buckets = nb;
        Ok(info)
    }

    /// A compensation histogram for [`FloatHistogram::kahan_add`] matching
    /// this histogram's layout, with all values zero.
    pub fn new_compensation(&self) -> FloatHistogram {
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            custom_values: self.custom_values.clone(),
            positive_spans: self.positive_spans.clone(),
            positive_buckets: vec![0.0; self.positive_buckets.len()],
            negative_spans: self.negative_spans.clone(),
            negative_buckets: if self.uses_custom_buckets() {
                Vec::new()
            } else {
                vec![0.0; self.negative_buckets.len()]
            },
            ..FloatHistogram::default()
        }
    }

    /// `self += other` with Kahan–Neumaier compensation kept in `comp`
    /// (Prometheus's `KahanAdd`, used by `sum`/`avg` aggregation and
    /// `sum_over_time`). `comp` must have come from
    /// [`FloatHistogram::new_compensation`] or a previous `kahan_add` on
    /// this histogram; if its schema, spans or bucket vectors do not match
    /// this histogram's (e.g. a fresh `FloatHistogram::default()`), it is
    /// (re)initialised to zero.
    /// The final value is `self` plus `comp` (add them with
    /// [`FloatHistogram::add`], then compact).
    pub fn kahan_add(
        &mut self,
        other: &FloatHistogram,
        comp: &mut FloatHistogram,
    ) -> Result<(), HistogramError> {
        self.kahan_add_with_info(other, comp).map(|_| ())
    }

    /// [`FloatHistogram::kahan_add`] with the [`AddInfo`].
    pub fn kahan_add_with_info(
        &mut self,
        other: &FloatHistogram,
        comp: &mut FloatHistogram,
    ) -> Result<AddInfo, HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::IncompatibleSchema);
        }
        let mut info = AddInfo {
            counter_reset_collision: self.adjust_counter_reset(other),
            nhcb_bounds_reconciled: false,
        };
        if comp.schema != self.schema
            || comp.positive_spans != self.positive_spans
            || comp.negative_spans != self.negative_spans
            || comp.positive_buckets.len() != self.positive_buckets.len()
            || comp.negative_buckets.len() != self.negative_buckets.len()
        {
            *comp = self.new_compensation();
        }
        if !self.uses_custom_buckets() {
            let (oz, ocz) = self.reconcile_zero_buckets(other, Some(comp));
            let (z, cz) = kahan_inc(oz, self.zero_count, comp.zero_count);
            let (z, cz) = kahan_inc(ocz, z, cz);
            self.zero_count = z;
            comp.zero_count = cz;
        }
        (self.count, comp.count) = kahan_inc(other.count, self.count, comp.count);
        (self.sum, comp.sum) = kahan_inc(other.sum, self.sum, comp.sum);

        if self.uses_custom_buckets() {
            if self.custom_values == other.custom_values {
                let (s, b, c) = layout::kahan_add(
                    self.schema,
                    self.zero_threshold,
                    &self.positive_spans,
                    &self.positive_buckets,
                    &comp.positive_buckets,
                    &other.positive_spans,
                    &other.positive_buckets,
                    None,
                );
                self.positive_spans = s;
                self.positive_buckets = b;
                comp.positive_buckets = c;
            } else {
                info.nhcb_bounds_reconciled = true;
                let bounds = layout::intersect_bounds(&self.custom_values, &other.custom_values);
                let mut sums = vec![0.0; bounds.len() + 1];
                let mut comps = vec![0.0; bounds.len() + 1];
                layout::map_custom_buckets(
                    &self.positive_spans,
                    &self.positive_buckets,
                    &self.custom_values,
                    &bounds,
                    false,
                    Some(&comp.positive_buckets),
                    &mut sums,
                    &mut comps,
                );
                layout::map_custom_buckets(
                    &other.positive_spans,
                    &other.positive_buckets,
                    &other.custom_values,
                    &bounds,
                    false,
                    None,
                    &mut sums,
                    &mut comps,
                );
                let (s, b, c) = layout::encode_dense(&sums, &comps);
                self.positive_spans = s;
                self.positive_buckets = b;
                comp.positive_buckets = c;
                self.custom_values = bounds.clone();
                comp.custom_values = bounds;
            }
            comp.positive_spans = self.positive_spans.clone();
            return Ok(info);
        }

        // Bring both to the lower schema; `other`'s reduced buckets get
        // their own compensation from the merge.
        let mut other_sides: [OtherSide; 2] = [
            (
                other.positive_spans.clone(),
                other.positive_buckets.clone(),
                None,
            ),
            (
                other.negative_spans.clone(),
                other.negative_buckets.clone(),
                None,
            ),
        ];
        if other.schema < self.schema {
            let (ps, pb, pc) = reduce_side_kahan(
                &self.positive_spans,
                &self.positive_buckets,
                &comp.positive_buckets,
                self.schema,
                other.schema,
            );
            let (ns, nb, nc) = reduce_side_kahan(
                &self.negative_spans,
                &self.negative_buckets,
                &comp.negative_buckets,
                self.schema,
                other.schema,
            );
            self.positive_spans = ps;
            self.positive_buckets = pb;
            comp.positive_buckets = pc;
            self.negative_spans = ns;
            self.negative_buckets = nb;
            comp.negative_buckets = nc;
            self.schema = other.schema;
        } else if other.schema > self.schema {
            for side in other_sides.iter_mut() {
                if side.1.is_empty() {
                    continue;
                }
                let zeros = vec![0.0; side.1.len()];
                let (s, b, c) =
                    reduce_side_kahan(&side.0, &side.1, &zeros, other.schema, self.schema);
                *side = (s, b, Some(c));
            }
        }
        let [(ops, opb, opc), (ons, onb, onc)] = other_sides;
        let (ps, pb, pc) = layout::kahan_add(
            self.schema,
            self.zero_threshold,
            &self.positive_spans,
            &self.positive_buckets,
            &comp.positive_buckets,
            &ops,
            &opb,
            opc.as_deref(),
        );
        let (ns, nb, nc) = layout::kahan_add(
            self.schema,
            self.zero_threshold,
            &self.negative_spans,
            &self.negative_buckets,
            &comp.negative_buckets,
            &ons,
            &onb,
            onc.as_deref(),
        );
        self.positive_spans = ps;
        self.positive_buckets = pb;
        self.negative_spans = ns;
        self.negative_buckets = nb;
        comp.positive_buckets = pc;
        comp.negative_buckets = nc;
        comp.schema = self.schema;
        comp.zero_threshold = self.zero_threshold;
        comp.positive_spans = self.positive_spans.clone();
        comp.negative_spans = self.negative_spans.clone();
        Ok(info)
    }

    /// Combines the counter-reset hints of two operands of `+`/`-` as
    /// Prometheus: equal hints stay; gauge wins; unknown wins over the
    /// rest; `CounterReset` against `NotCounterReset` is a collision
    /// (result unknown, returns true).
    fn adjust_counter_reset(&mut self, other: &FloatHistogram) -> bool {
        use CounterResetHint as H;
        let (a, b) = (self.counter_reset_hint, other.counter_reset_hint);
        if a == b || a == H::Gauge {
            return false;
        }
        if b == H::Gauge {
            self.counter_reset_hint = H::Gauge;
            return false;
        }
        if a == H::Unknown {
            return false;
        }
        self.counter_reset_hint = H::Unknown;
        b != H::Unknown
    }

    /// What the zero count would be with the (larger or equal) threshold
    /// `larger`: buckets below it are added in. If `larger` falls inside a
    /// populated bucket, the threshold moves up to that bucket's upper
    /// bound (absolute value). Returns (zero count, threshold, Kahan
    /// compensation of the zero count), folding in `comp`'s buckets if
    /// given (which must match this histogram's layout).
    fn zero_count_for_larger_threshold(
        &self,
        larger: f64,
        comp: Option<&FloatHistogram>,
    ) -> (f64, f64, f64) {
        let c_start = comp.map_or(0.0, |c| c.zero_count);
        if larger == self.zero_threshold {
            return (self.zero_count, larger, c_start);
        }
        let mut larger = larger;
        'outer: loop {
            let mut zc = self.zero_count;
            let mut cz = c_start;
            for (i, b) in self.positive_buckets_iter().enumerate() {
                if b.lower >= larger {
                    break;
                }
                (zc, cz) = kahan_inc(b.count, zc, cz);
                if let Some(c) = comp {
                    let cv = c.positive_buckets.get(i).copied().unwrap_or(0.0);
                    (zc, cz) = kahan_inc(cv, zc, cz);
                }
                if b.upper > larger {
                    if b.count != 0.0 {
                        larger = b.upper;
                    }
                    break;
                }
            }
            for (i, b) in self.negative_buckets_iter().enumerate() {
                if b.upper <= -larger {
                    break;
                }
                (zc, cz) = kahan_inc(b.count, zc, cz);
                if let Some(c) = comp {
                    let cv = c.negative_buckets.get(i).copied().unwrap_or(0.0);
                    (zc, cz) = kahan_inc(cv, zc, cz);
                }
                if b.lower < -larger {
                    if b.count != 0.0 {
                        larger = -b.lower;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zc, larger, cz);
        }
    }

    /// Zeroes the buckets now covered by the zero bucket (their counts are
    /// already in the zero count) and compacts.
    fn trim_buckets_in_zero_bucket(&mut self, mut comp: Option<&mut FloatHistogram>) {
        let zt = self.zero_threshold;
        let pos: Vec<usize> = self
            .positive_buckets_iter()
            .take_while(|b| b.lower < zt)
            .enumerate()
            .map(|(i, _)| i)
            .collect();
        for i in pos {
            self.positive_buckets[i] = 0.0;
            if let Some(c) = comp.as_deref_mut()
                && let Some(v) = c.positive_buckets.get_mut(i)
            {
                *v = 0.0;
            }
        }
        let neg: Vec<usize> = self
            .negative_buckets_iter()
            .take_while(|b| b.upper > -zt)
            .enumerate()
            .map(|(i, _)| i)
            .collect();
        for i in neg {
            self.negative_buckets[i] = 0.0;
            if let Some(c) = comp.as_deref_mut()
                && let Some(v) = c.negative_buckets.get_mut(i)
            {
                *v = 0.0;
            }
        }
        match comp {
            Some(c) => {
                layout::compact(
                    &mut self.positive_spans,
                    &mut self.positive_buckets,
                    Some(&mut c.positive_buckets),
                    0,
                );
                layout::compact(
                    &mut self.negative_spans,
                    &mut self.negative_buckets,
                    Some(&mut c.negative_buckets),
                    0,
                );
            }
            None => self.compact(0),
        }
    }

    /// Widens the zero buckets of `self` and (virtually) `other` until both
    /// have the same threshold not inside a populated bucket of either.
    /// Modifies `self` (and `comp`); returns `other`'s zero count (and its
    /// Kahan compensation) at the common threshold.
    fn reconcile_zero_buckets(
        &mut self,
        other: &FloatHistogram,
        mut comp: Option<&mut FloatHistogram>,
    ) -> (f64, f64) {
        let mut other_zc = other.zero_count;
        let mut other_zt = other.zero_threshold;
        let mut other_czc = 0.0;
        // NaN thresholds would never converge (Prometheus loops forever).
        while other_zt != self.zero_threshold && !other_zt.is_nan() && !self.zero_threshold.is_nan()
        {
            if self.zero_threshold > other_zt {
                (other_zc, other_zt, other_czc) =
                    other.zero_count_for_larger_threshold(self.zero_threshold, None);
            }
            if other_zt > self.zero_threshold {
                let (zc, zt, czc) = self.zero_count_for_larger_threshold(other_zt, comp.as_deref());
                self.zero_count = zc;
                self.zero_threshold = zt;
                if let Some(c) = comp.as_deref_mut() {
                    c.zero_count = czc;
                }
                self.trim_buckets_in_zero_bucket(comp.as_deref_mut());
            }
        }
        (other_zc, other_czc)
    }

    /// Reduces resolution, ignoring span/bucket inconsistencies (used where
    /// Prometheus would panic on an invalid histogram).
    fn reduce_lenient(&mut self, target: i32) {
        let (ps, pb) = reduce_side_lenient(
            &self.positive_spans,
            &self.positive_buckets,
            self.schema,
            target,
        );
        let (ns, nb) = reduce_side_lenient(
            &self.negative_spans,
            &self.negative_buckets,
            self.schema,
            target,
        );
        self.positive_spans = ps;
        self.positive_buckets = pb;
        self.negative_spans = ns;
        self.negative_buckets = nb;
        self.schema = target;
    }

    /// Prometheus's `Equals`: same schema, bit-identical count, sum, zero
    /// count and bucket values (so NaN equals NaN), equal zero threshold and
    /// custom bounds, and the same bucket layout (zero-length spans are
    /// disregarded, but adjacent spans are not merged, and empty buckets
    /// count as present).
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        if self.schema != other.schema
            || self.count.to_bits() != other.count.to_bits()
            || self.sum.to_bits() != other.sum.to_bits()
        {
            return false;
        }
        if self.uses_custom_buckets() && self.custom_values != other.custom_values {
            return false;
        }
        self.zero_threshold == other.zero_threshold
            && self.zero_count.to_bits() == other.zero_count.to_bits()
            && layout::spans_match(&self.negative_spans, &other.negative_spans)
            && bits_eq(&self.negative_buckets, &other.negative_buckets)
            && layout::spans_match(&self.positive_spans, &other.positive_spans)
            && bits_eq(&self.positive_buckets, &other.positive_buckets)
    }

    /// Removes empty buckets at the start and end of spans, splits spans at
    /// runs of more than `max_empty_buckets` empty buckets, and joins spans
    /// at most `max_empty_buckets` apart (filling the gap with empty
    /// buckets). `compact(0)` gives the canonical layout.
    pub fn compact(&mut self, max_empty_buckets: usize) {
        layout::compact(
            &mut self.positive_spans,
            &mut self.positive_buckets,
            None,
            max_empty_buckets,
        );
        layout::compact(
            &mut self.negative_spans,
            &mut self.negative_buckets,
            None,
            max_empty_buckets,
        );
    }

    /// Whether a counter reset happened between `previous` and this
    /// histogram (Prometheus's `DetectReset`). A `CounterReset` hint says
    /// yes and `NotCounterReset` says no without looking; otherwise (also
    /// for gauges) the counts are compared: a lower count, zero count or
    /// bucket count, a populated bucket gone, a higher schema, a lower or
    /// bucket-splitting zero threshold, or a change between exponential and
    /// custom buckets are resets. Custom buckets with different bounds are
    /// compared on the bounds they share.
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !previous.uses_custom_buckets() {
                return true;
            }
            if self.custom_values != previous.custom_values {
                return self.detect_reset_mismatched_bounds(previous);
            }
        }
        if self.schema > previous.schema {
            return true;
        }
        if self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (prev_zero, new_threshold, _) =
            previous.zero_count_for_larger_threshold(self.zero_threshold, None);
        if new_threshold != self.zero_threshold {
            return true;
        }
        if self.zero_count < prev_zero {
            return true;
        }
        let zt = self.zero_threshold;
        let curr = merged_side(self, true, zt, self.schema);
        let prev = merged_side(previous, true, zt, self.schema);
        if side_has_reset(&curr, &prev) {
            return true;
        }
        let curr = merged_side(self, false, zt, self.schema);
        let prev = merged_side(previous, false, zt, self.schema);
        side_has_reset(&curr, &prev)
    }

    fn detect_reset_mismatched_bounds(&self, previous: &FloatHistogram) -> bool {
        let bounds = layout::intersect_bounds(&self.custom_values, &previous.custom_values);
        let n = bounds.len() + 1;
        let (mut curr, mut prev) = (vec![0.0; n], vec![0.0; n]);
        let (mut cc, mut pc) = (vec![0.0; n], vec![0.0; n]);
        layout::map_custom_buckets(
            &self.positive_spans,
            &self.positive_buckets,
            &self.custom_values,
            &bounds,
            false,
            None,
            &mut curr,
            &mut cc,
        );
        layout::map_custom_buckets(
            &previous.positive_spans,
            &previous.positive_buckets,
            &previous.custom_values,
            &bounds,
            false,
            None,
            &mut prev,
            &mut pc,
        );
        curr.iter().zip(&prev).any(|(c, p)| c < p)
    }

    /// Reduces the resolution to `target_schema` in place, merging buckets.
    /// Does nothing if the target is not lower than the current schema or
    /// custom buckets are involved, or if the spans are inconsistent with
    /// the buckets (see [`FloatHistogram::try_reduce_resolution`] for the
    /// error-returning form).
    pub fn reduce_resolution(&mut self, target_schema: i32) {
        let _ignored = self.try_reduce_resolution(target_schema);
    }

    /// Prometheus's `ReduceResolution`: errors if custom buckets are
    /// involved, if `target_schema` is not lower than the schema, or if the
    /// spans are inconsistent with the buckets (then nothing is changed).
    pub fn try_reduce_resolution(&mut self, target_schema: i32) -> Result<(), HistogramError> {
        check_reduction(self.schema, target_schema)?;
        let add = |a: f64, b: f64| a + b;
        let (ps, pb) = layout::reduce(
            &self.positive_spans,
            &self.positive_buckets,
            self.schema,
            target_schema,
            add,
        )?;
        let (ns, nb) = layout::reduce(
            &self.negative_spans,
            &self.negative_buckets,
            self.schema,
            target_schema,
            add,
        )?;
        self.positive_spans = ps;
        self.positive_buckets = pb;
        self.negative_spans = ns;
        self.negative_buckets = nb;
        self.schema = target_schema;
        Ok(())
    }

    /// A copy in the lower `target_schema` (Prometheus's `CopyToSchema`,
    /// which like here drops the counter-reset hint). Prometheus panics if
    /// the target is higher or custom buckets are involved; this returns a
    /// plain clone in those cases.
    pub fn copy_to_schema(&self, target_schema: i32) -> FloatHistogram {
        if target_schema == self.schema || check_reduction(self.schema, target_schema).is_err() {
            return self.clone();
        }
        let (ps, pb) = reduce_side_lenient(
            &self.positive_spans,
            &self.positive_buckets,
            self.schema,
            target_schema,
        );
        let (ns, nb) = reduce_side_lenient(
            &self.negative_spans,
            &self.negative_buckets,
            self.schema,
            target_schema,
        );
        FloatHistogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema: target_schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: self.sum,
            positive_spans: ps,
            negative_spans: ns,
            positive_buckets: pb,
            negative_buckets: nb,
            custom_values: Vec::new(),
        }
    }

    /// Whether any count, the sum or a custom bound is infinite (an
    /// aggregation overflowed).
    pub fn has_overflow(&self) -> bool {
        self.zero_count.is_infinite()
            || self.count.is_infinite()
            || self.sum.is_infinite()
            || self.positive_buckets.iter().any(|v| v.is_infinite())
            || self.negative_buckets.iter().any(|v| v.is_infinite())
            || self.custom_values.iter().any(|v| v.is_infinite())
    }

    /// Size in bytes as Prometheus's `Size` reckons it (a 168-byte Go
    /// struct plus 8 bytes per span, bucket and custom bound), so that
    /// query sample limits (`Size()/16` samples per histogram) match.
    pub fn size_bytes(&self) -> usize {
        168 + 8
            * (self.positive_spans.len()
                + self.negative_spans.len()
                + self.positive_buckets.len()
                + self.negative_buckets.len()
                + self.custom_values.len())
    }
}

pub(crate) fn check_reduction(schema: i32, target: i32) -> Result<(), HistogramError> {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        return Err(HistogramError::InvalidResolutionChange(
            "cannot reduce resolution when there are custom buckets".into(),
        ));
    }
    if target == CUSTOM_BUCKETS_SCHEMA {
        return Err(HistogramError::InvalidResolutionChange(
            "cannot reduce resolution to custom buckets schema".into(),
        ));
    }
    if target >= schema {
        return Err(HistogramError::InvalidResolutionChange(format!(
            "cannot reduce resolution from schema {schema} to {target}"
        )));
    }
    Ok(())
}

/// Reduces one side, walking only as far as spans and buckets agree.
fn reduce_side_lenient(
    spans: &[Span],
    buckets: &[f64],
    origin: i32,
    target: i32,
) -> (Vec<Span>, Vec<f64>) {
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(buckets.len());
    for (idx, pos) in SpanWalk::new(spans, buckets.len()) {
        let t = target_idx(idx, origin, target);
        match out.last_mut() {
            Some((last, sum)) if *last == t => *sum += buckets[pos],
            _ => out.push((t, buckets[pos])),
        }
    }
    layout::encode(out)
}

/// Reduces one side together with its Kahan compensation.
fn reduce_side_kahan(
    spans: &[Span],
    buckets: &[f64],
    comp: &[f64],
    origin: i32,
    target: i32,
) -> layout::KahanSide {
    let mut out: Vec<(i32, (f64, f64))> = Vec::with_capacity(buckets.len());
    for (idx, pos) in SpanWalk::new(spans, buckets.len()) {
        let t = target_idx(idx, origin, target);
        let v = buckets[pos];
        let c = comp.get(pos).copied().unwrap_or(0.0);
        match out.last_mut() {
            Some((last, (s, cs))) if *last == t => {
                let (s1, c1) = kahan_inc(v, *s, *cs);
                (*s, *cs) = kahan_inc(c, s1, c1);
            }
            _ => out.push((t, (v, c))),
        }
    }
    let (spans, pairs) = layout::encode(out);
    let (vals, comps) = pairs.into_iter().unzip();
    (spans, vals, comps)
}

/// One side of `h` as `(index, count)` in `target` schema (merging
/// buckets), skipping leading buckets whose upper bound is at or below
/// `abs_start` (exponential schemas, `abs_start > 0` only).
fn merged_side(h: &FloatHistogram, positive: bool, abs_start: f64, target: i32) -> Vec<(i32, f64)> {
    let (spans, buckets) = if positive {
        (&h.positive_spans, &h.positive_buckets)
    } else {
        (&h.negative_spans, &h.negative_buckets)
    };
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(buckets.len());
    for (idx, pos) in SpanWalk::new(spans, buckets.len()) {
        let t = if h.schema == target {
            idx
        } else {
            target_idx(idx, h.schema, target)
        };
        match out.last_mut() {
            Some((last, sum)) if *last == t && h.schema != target => *sum += buckets[pos],
            _ => out.push((t, buckets[pos])),
        }
    }
    if abs_start != 0.0 && is_exponential_schema(target) {
        let skip = out
            .iter()
            .take_while(|(i, _)| bucket_upper_bound(target, *i) <= abs_start)
            .count();
        out.drain(..skip);
    }
    out
}

/// Prometheus's bucket-wise reset test: walking the previous histogram's
/// buckets, a populated one missing in the current histogram, or one with a
/// higher count than its current counterpart, is a reset.
fn side_has_reset(curr: &[(i32, f64)], prev: &[(i32, f64)]) -> bool {
    let mut ci = 0;
    for &(pidx, pcount) in prev {
        while ci < curr.len() && curr[ci].0 < pidx {
            ci += 1;
        }
        match curr.get(ci) {
            None => {
                if pcount != 0.0 {
                    return true;
                }
            }
            Some(&(cidx, ccount)) => {
                if cidx > pidx {
                    if pcount != 0.0 {
                        return true;
                    }
                } else if ccount < pcount {
                    return true;
                }
            }
        }
    }
    false
}
