//! Native-histogram arithmetic the evaluator needs (addition with schema
//! and zero-bucket reconciliation, scaling, counter-reset detection,
//! quantiles, fractions, variance), following Prometheus's
//! `model/histogram` semantics.
//!
//! The operations expand the sparse span/bucket layout of a
//! [`FloatHistogram`] into `(index, count)` pairs, work on those, and
//! rebuild spans. That costs an allocation per operation but keeps every
//! operation short and obviously right; PromQL histograms are small (tens
//! of buckets) and the float hot path never comes here.

use pharos_model::histogram::{CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Span};

/// Whether `h` has custom (explicit) bucket bounds.
pub(crate) fn is_custom(h: &FloatHistogram) -> bool {
    h.schema == CUSTOM_BUCKETS_SCHEMA
}

/// `(index, count)` of every bucket the spans cover, in index order.
pub(crate) fn expand(spans: &[Span], counts: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(counts.len());
    let mut idx = 0i32;
    let mut k = 0usize;
    for (n, s) in spans.iter().enumerate() {
        if n == 0 {
            idx = s.offset;
        } else {
            idx = idx.wrapping_add(s.offset);
        }
        for _ in 0..s.length {
            if let Some(c) = counts.get(k) {
                out.push((idx, *c));
            }
            k += 1;
            idx = idx.wrapping_add(1);
        }
    }
    out
}

/// Rebuilds spans and counts from `(index, count)` pairs in index order,
/// dropping buckets with a count of exactly zero.
pub(crate) fn collapse(v: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::with_capacity(v.len());
    let mut next: Option<i32> = None;
    for &(idx, c) in v {
        if c == 0.0 {
            continue;
        }
        match next {
            Some(n) if n == idx => {
                if let Some(last) = spans.last_mut() {
                    last.length += 1;
                }
            }
            Some(n) => spans.push(Span {
                offset: idx.wrapping_sub(n),
                length: 1,
            }),
            None => spans.push(Span {
                offset: idx,
                length: 1,
            }),
        }
        counts.push(c);
        next = Some(idx.wrapping_add(1));
    }
    (spans, counts)
}

/// Removes empty buckets (Prometheus's `Compact(0)`).
pub(crate) fn compact(h: &mut FloatHistogram) {
    let p = expand(&h.positive_spans, &h.positive_buckets);
    (h.positive_spans, h.positive_buckets) = collapse(&p);
    let n = expand(&h.negative_spans, &h.negative_buckets);
    (h.negative_spans, h.negative_buckets) = collapse(&n);
}

/// Upper bound of bucket `idx` (positive side) of an exponential schema.
pub(crate) fn exp_bound(idx: i32, schema: i32) -> f64 {
    if !(-4..=8).contains(&schema) {
        // Not a valid exponential schema (storage validates them); compute
        // the bound directly rather than shifting out of range.
        return (f64::from(idx) * (-f64::from(schema)).exp2()).exp2();
    }
    if schema < 0 {
        let exp = i64::from(idx) << (-schema);
        if exp == 1024 {
            return f64::MAX;
        }
        return 2f64.powi(exp.clamp(-1100, 1100) as i32);
    }
    let frac_idx = idx & ((1 << schema) - 1);
    let frac = (f64::from(frac_idx) / f64::from(1 << schema)).exp2() / 2.0;
    let exp = (idx >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    frac * 2f64.powi(exp.clamp(-1100, 1100))
}

/// Upper bound of bucket `idx` for `h`'s schema (−1 and `len` are the
/// infinite ends of custom buckets).
fn bound(idx: i32, schema: i32, custom: &[f64]) -> f64 {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        if idx < 0 {
            return f64::NEG_INFINITY;
        }
        return custom.get(idx as usize).copied().unwrap_or(f64::INFINITY);
    }
    exp_bound(idx, schema)
}

/// One bucket with its bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub count: f64,
}

/// All buckets in ascending order of value, as Prometheus's
/// `AllBucketIterator`: negative buckets, the zero bucket when populated,
/// positive buckets, with bounds clipped to the zero threshold.
pub(crate) fn all_buckets(h: &FloatHistogram) -> Vec<Bucket> {
    let mut out = Vec::new();
    let zt = h.zero_threshold;
    if is_custom(h) {
        for (idx, c) in expand(&h.positive_spans, &h.positive_buckets) {
            out.push(Bucket {
                lower: bound(idx.saturating_sub(1), h.schema, &h.custom_values),
                upper: bound(idx, h.schema, &h.custom_values),
                count: c,
            });
        }
        return out;
    }
    for (idx, c) in expand(&h.negative_spans, &h.negative_buckets)
        .into_iter()
        .rev()
    {
        let mut b = Bucket {
            lower: -exp_bound(idx, h.schema),
            upper: -exp_bound(idx.saturating_sub(1), h.schema),
            count: c,
        };
        if b.upper < 0.0 && b.upper > -zt {
            b.upper = -zt;
        }
        out.push(b);
    }
    if h.zero_count > 0.0 {
        out.push(Bucket {
            lower: -zt,
            upper: zt,
            count: h.zero_count,
        });
    }
    for (idx, c) in expand(&h.positive_spans, &h.positive_buckets) {
        let mut b = Bucket {
            lower: exp_bound(idx.saturating_sub(1), h.schema),
            upper: exp_bound(idx, h.schema),
            count: c,
        };
        if b.lower > 0.0 && b.lower < zt {
            b.lower = zt;
        }
        out.push(b);
    }
    out
}

/// Bucket index in schema `to` of index `idx` in schema `from` (`to <= from`).
fn target_idx(idx: i32, from: i32, to: i32) -> i32 {
    let shift = (i64::from(from) - i64::from(to)).clamp(0, 31);
    (idx.saturating_sub(1) >> shift).saturating_add(1)
}

/// Merges buckets to a lower resolution.
fn reduce(v: &[(i32, f64)], from: i32, to: i32) -> Vec<(i32, f64)> {
    if from == to {
        return v.to_vec();
    }
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(v.len());
    for &(idx, c) in v {
        let t = target_idx(idx, from, to);
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

/// Reduces `h` to schema `to` (lower than its own; exponential only).
pub(crate) fn reduce_resolution(h: &mut FloatHistogram, to: i32) {
    if is_custom(h) || to >= h.schema {
        return;
    }
    let p = reduce(
        &expand(&h.positive_spans, &h.positive_buckets),
        h.schema,
        to,
    );
    let n = reduce(
        &expand(&h.negative_spans, &h.negative_buckets),
        h.schema,
        to,
    );
    (h.positive_spans, h.positive_buckets) = collapse(&p);
    (h.negative_spans, h.negative_buckets) = collapse(&n);
    h.schema = to;
}

/// Adds two sorted `(index, count)` lists, `b` scaled by `sign`.
fn merge(a: &[(i32, f64)], b: &[(i32, f64)], sign: f64) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + sign * y.1));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push((y.0, sign * y.1));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// The zero count `h` would have with a zero threshold of at least
/// `larger`, and the threshold actually needed (widened when `larger`
/// falls inside a populated bucket).
fn zero_count_for_larger_threshold(h: &FloatHistogram, mut larger: f64) -> (f64, f64) {
    if larger == h.zero_threshold {
        return (h.zero_count, larger);
    }
    let pos = expand(&h.positive_spans, &h.positive_buckets);
    let neg = expand(&h.negative_spans, &h.negative_buckets);
    'outer: loop {
        let mut zc = h.zero_count;
        for &(idx, c) in &pos {
            let lower = exp_bound(idx.saturating_sub(1), h.schema);
            let upper = exp_bound(idx, h.schema);
            if lower >= larger {
                break;
            }
            zc += c;
            if upper > larger {
                if c != 0.0 {
                    larger = upper;
                }
                break;
            }
        }
        for &(idx, c) in &neg {
            let upper = -exp_bound(idx.saturating_sub(1), h.schema);
            let lower = -exp_bound(idx, h.schema);
            if upper <= -larger {
                break;
            }
            zc += c;
            if lower < -larger {
                if c != 0.0 {
                    larger = -lower;
                    continue 'outer;
                }
                break;
            }
        }
        return (zc, larger);
    }
}

/// Removes the buckets that lie within the zero bucket (their counts are
/// already part of the zero count).
fn trim_buckets_in_zero_bucket(h: &mut FloatHistogram) {
    let zt = h.zero_threshold;
    let schema = h.schema;
    let p: Vec<(i32, f64)> = expand(&h.positive_spans, &h.positive_buckets)
        .into_iter()
        .filter(|(idx, _)| exp_bound(idx.saturating_sub(1), schema) >= zt)
        .collect();
    let n: Vec<(i32, f64)> = expand(&h.negative_spans, &h.negative_buckets)
        .into_iter()
        .filter(|(idx, _)| -exp_bound(idx.saturating_sub(1), schema) <= -zt)
        .collect();
    (h.positive_spans, h.positive_buckets) = collapse(&p);
    (h.negative_spans, h.negative_buckets) = collapse(&n);
}

/// Widens the zero buckets of `h` (in place) and of `other` (returned
/// zero count) to a common threshold.
fn reconcile_zero_buckets(h: &mut FloatHistogram, other: &FloatHistogram) -> f64 {
    let mut other_zc = other.zero_count;
    let mut other_zt = other.zero_threshold;
    // Each round widens a threshold to a bucket bound; a NaN threshold
    // (invalid data) would never compare equal, so bound the rounds.
    let mut rounds = 0;
    while other_zt != h.zero_threshold && rounds < 1000 {
        rounds += 1;
        if other_zt.is_nan() || h.zero_threshold.is_nan() {
            break;
        }
        if h.zero_threshold > other_zt {
            (other_zc, other_zt) = zero_count_for_larger_threshold(other, h.zero_threshold);
        }
        if other_zt > h.zero_threshold {
            let (zc, zt) = zero_count_for_larger_threshold(h, other_zt);
            h.zero_count = zc;
            h.zero_threshold = zt;
            trim_buckets_in_zero_bucket(h);
        }
    }
    other_zc
}

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistError {
    /// One has custom buckets, the other exponential ones.
    IncompatibleSchema,
}

/// Side effects of an addition the caller may report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AddInfo {
    /// One operand said "counter reset", the other "no counter reset".
    pub counter_reset_collision: bool,
    /// Custom bucket bounds differed and were intersected.
    pub nhcb_reconciled: bool,
}

fn adjust_counter_reset(h: &mut FloatHistogram, other: &FloatHistogram) -> bool {
    use CounterResetHint::*;
    let (a, b) = (h.counter_reset_hint, other.counter_reset_hint);
    if a == b || a == Gauge {
        return false;
    }
    if b == Gauge {
        h.counter_reset_hint = Gauge;
        return false;
    }
    if a == Unknown {
        return false;
    }
    h.counter_reset_hint = Unknown;
    b != Unknown
}

/// Intersection of two ascending bound lists.
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Maps custom buckets onto a coarser layout whose bounds are a subset.
fn map_custom(v: &[(i32, f64)], bounds: &[f64], target: &[f64]) -> Vec<(i32, f64)> {
    let mut dense = vec![0.0; target.len() + 1];
    for &(idx, c) in v {
        let upper = bounds.get(idx as usize).copied().unwrap_or(f64::INFINITY);
        let t = target.partition_point(|b| *b < upper);
        if let Some(slot) = dense.get_mut(t) {
            *slot += c;
        }
    }
    dense
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i as i32, c))
        .collect()
}

/// `h += sign * other`, reconciling schemas, zero buckets and custom
/// bounds as Prometheus's `Add`/`Sub`.
pub(crate) fn add_signed(
    h: &mut FloatHistogram,
    other: &FloatHistogram,
    sign: f64,
) -> Result<AddInfo, HistError> {
    if is_custom(h) != is_custom(other) {
        return Err(HistError::IncompatibleSchema);
    }
    let mut info = AddInfo {
        counter_reset_collision: adjust_counter_reset(h, other),
        nhcb_reconciled: false,
    };
    if !is_custom(h) {
        let ozc = reconcile_zero_buckets(h, other);
        h.zero_count += sign * ozc;
    }
    h.count += sign * other.count;
    h.sum += sign * other.sum;
    let hp = expand(&h.positive_spans, &h.positive_buckets);
    let op = expand(&other.positive_spans, &other.positive_buckets);
    if is_custom(h) {
        if h.custom_values == other.custom_values {
            let p = merge(&hp, &op, sign);
            (h.positive_spans, h.positive_buckets) = collapse(&p);
        } else {
            info.nhcb_reconciled = true;
            let target = intersect_bounds(&h.custom_values, &other.custom_values);
            let a = map_custom(&hp, &h.custom_values, &target);
            let b = map_custom(&op, &other.custom_values, &target);
            let p = merge(&a, &b, sign);
            (h.positive_spans, h.positive_buckets) = collapse(&p);
            h.custom_values = target;
        }
        return Ok(info);
    }
    let hn = expand(&h.negative_spans, &h.negative_buckets);
    let on = expand(&other.negative_spans, &other.negative_buckets);
    let schema = h.schema.min(other.schema);
    let hp = reduce(&hp, h.schema, schema);
    let hn = reduce(&hn, h.schema, schema);
    let op = reduce(&op, other.schema, schema);
    let on = reduce(&on, other.schema, schema);
    // Buckets of `other` inside the (possibly widened) zero bucket are
    // already counted in its reconciled zero count.
    let zt = h.zero_threshold;
    let op: Vec<(i32, f64)> = op
        .into_iter()
        .filter(|(i, _)| exp_bound(*i, schema) > zt)
        .collect();
    let on: Vec<(i32, f64)> = on
        .into_iter()
        .filter(|(i, _)| exp_bound(*i, schema) > zt)
        .collect();
    h.schema = schema;
    (h.positive_spans, h.positive_buckets) = collapse(&merge(&hp, &op, sign));
    (h.negative_spans, h.negative_buckets) = collapse(&merge(&hn, &on, sign));
    Ok(info)
}

/// `acc += other` with Kahan compensation kept in `comp` (Prometheus's
/// `KahanAdd`); finish with [`kahan_finish`]. Where zero thresholds or
/// custom bounds differ, the compensation is folded in and a plain
/// addition reconciles the layouts.
pub(crate) fn kahan_add(
    acc: &mut FloatHistogram,
    comp: &mut Option<FloatHistogram>,
    other: &FloatHistogram,
) -> Result<AddInfo, HistError> {
    if is_custom(acc) != is_custom(other) {
        return Err(HistError::IncompatibleSchema);
    }
    let same_layout = acc.zero_threshold == other.zero_threshold
        && (!is_custom(acc) || acc.custom_values == other.custom_values);
    if !same_layout {
        if let Some(c) = comp.take() {
            add_signed(acc, &c, 1.0)?;
        }
        return add_signed(acc, other, 1.0);
    }
    let info = AddInfo {
        counter_reset_collision: adjust_counter_reset(acc, other),
        nhcb_reconciled: false,
    };
    let mut c = comp.take().unwrap_or_else(|| FloatHistogram {
        schema: acc.schema,
        zero_threshold: acc.zero_threshold,
        custom_values: acc.custom_values.clone(),
        ..Default::default()
    });
    c.counter_reset_hint = acc.counter_reset_hint;
    let schema = if is_custom(acc) {
        acc.schema
    } else {
        acc.schema.min(other.schema)
    };
    reduce_resolution(acc, schema);
    reduce_resolution(&mut c, schema);
    let k = crate::value::kahan_inc;
    (acc.sum, c.sum) = k(other.sum, acc.sum, c.sum);
    (acc.count, c.count) = k(other.count, acc.count, c.count);
    (acc.zero_count, c.zero_count) = k(other.zero_count, acc.zero_count, c.zero_count);
    let side = |a: &[(i32, f64)], cc: &[(i32, f64)], o: &[(i32, f64)]| {
        let mut m: std::collections::BTreeMap<i32, (f64, f64)> = std::collections::BTreeMap::new();
        for &(i, v) in a {
            m.entry(i).or_default().0 = v;
        }
        for &(i, v) in cc {
            m.entry(i).or_default().1 = v;
        }
        for &(i, v) in o {
            let e = m.entry(i).or_default();
            *e = k(v, e.0, e.1);
        }
        let vals: Vec<(i32, f64)> = m.iter().map(|(i, e)| (*i, e.0)).collect();
        let comps: Vec<(i32, f64)> = m.iter().map(|(i, e)| (*i, e.1)).collect();
        (collapse(&vals), collapse(&comps))
    };
    let op = reduce(
        &expand(&other.positive_spans, &other.positive_buckets),
        other.schema,
        schema,
    );
    let ((ps, pb), (cps, cpb)) = side(
        &expand(&acc.positive_spans, &acc.positive_buckets),
        &expand(&c.positive_spans, &c.positive_buckets),
        &op,
    );
    (acc.positive_spans, acc.positive_buckets) = (ps, pb);
    (c.positive_spans, c.positive_buckets) = (cps, cpb);
    if !is_custom(acc) {
        let on = reduce(
            &expand(&other.negative_spans, &other.negative_buckets),
            other.schema,
            schema,
        );
        let ((ns, nb), (cns, cnb)) = side(
            &expand(&acc.negative_spans, &acc.negative_buckets),
            &expand(&c.negative_spans, &c.negative_buckets),
            &on,
        );
        (acc.negative_spans, acc.negative_buckets) = (ns, nb);
        (c.negative_spans, c.negative_buckets) = (cns, cnb);
    }
    *comp = Some(c);
    Ok(info)
}

/// Adds the Kahan compensation into the sum.
pub(crate) fn kahan_finish(acc: &mut FloatHistogram, comp: Option<FloatHistogram>) {
    if let Some(mut c) = comp {
        c.counter_reset_hint = acc.counter_reset_hint;
        let inf_sum = acc.sum.is_infinite();
        let inf_count = acc.count.is_infinite();
        let (sum, count) = (acc.sum, acc.count);
        // Compatible by construction.
        let _ = add_signed(acc, &c, 1.0);
        if inf_sum {
            acc.sum = sum;
        }
        if inf_count {
            acc.count = count;
        }
    }
}

/// Whether any count or the sum is infinite (Prometheus's `HasOverflow`).
pub(crate) fn has_overflow(h: &FloatHistogram) -> bool {
    h.count.is_infinite()
        || h.sum.is_infinite()
        || h.zero_count.is_infinite()
        || h.positive_buckets.iter().any(|b| b.is_infinite())
        || h.negative_buckets.iter().any(|b| b.is_infinite())
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
    pub(crate) fn add(&mut self, h: &FloatHistogram) -> Result<AddInfo, HistError> {
        self.count += 1.0;
        let n = self.count;
        if !self.incremental {
            let mut v = self.value.clone();
            let mut c = self.comp.clone();
            let info = kahan_add(&mut v, &mut c, h)?;
            if !has_overflow(&v) {
                self.value = v;
                self.comp = c;
                return Ok(info);
            }
            self.incremental = true;
            div(&mut self.value, n - 1.0);
            if let Some(c) = self.comp.as_mut() {
                div(c, n - 1.0);
            }
        }
        let q = (n - 1.0) / n;
        if let Some(c) = self.comp.as_mut() {
            mul(c, q);
        }
        let mut to_add = h.clone();
        div(&mut to_add, n);
        mul(&mut self.value, q);
        kahan_add(&mut self.value, &mut self.comp, &to_add)
    }

    /// The mean.
    pub(crate) fn finish(mut self) -> FloatHistogram {
        if !self.incremental {
            div(&mut self.value, self.count);
            if let Some(c) = self.comp.as_mut() {
                div(c, self.count);
            }
        }
        kahan_finish(&mut self.value, self.comp);
        self.value
    }
}

/// Scales all counts and the sum by `f` (Prometheus's `Mul`).
pub(crate) fn mul(h: &mut FloatHistogram, f: f64) {
    h.zero_count *= f;
    h.count *= f;
    h.sum *= f;
    h.positive_buckets.iter_mut().for_each(|b| *b *= f);
    h.negative_buckets.iter_mut().for_each(|b| *b *= f);
    if f < 0.0 {
        h.counter_reset_hint = CounterResetHint::Gauge;
    }
}

/// Divides all counts and the sum by `s` (Prometheus's `Div`; dividing by
/// zero removes the buckets).
pub(crate) fn div(h: &mut FloatHistogram, s: f64) {
    h.zero_count /= s;
    h.count /= s;
    h.sum /= s;
    if s == 0.0 {
        h.positive_buckets.clear();
        h.negative_buckets.clear();
        h.positive_spans.clear();
        h.negative_spans.clear();
        return;
    }
    h.positive_buckets.iter_mut().for_each(|b| *b /= s);
    h.negative_buckets.iter_mut().for_each(|b| *b /= s);
    if s < 0.0 {
        h.counter_reset_hint = CounterResetHint::Gauge;
    }
}

/// Whether `cur` follows a counter reset after `prev` (Prometheus's
/// `DetectReset`).
pub(crate) fn detect_reset(cur: &FloatHistogram, prev: &FloatHistogram) -> bool {
    match cur.counter_reset_hint {
        CounterResetHint::CounterReset => return true,
        CounterResetHint::NotCounterReset => return false,
        _ => {}
    }
    if cur.count < prev.count {
        return true;
    }
    if is_custom(cur) || is_custom(prev) {
        if !(is_custom(cur) && is_custom(prev)) {
            return true;
        }
        let target = if cur.custom_values == prev.custom_values {
            cur.custom_values.clone()
        } else {
            intersect_bounds(&cur.custom_values, &prev.custom_values)
        };
        let c = map_custom(
            &expand(&cur.positive_spans, &cur.positive_buckets),
            &cur.custom_values,
            &target,
        );
        let p = map_custom(
            &expand(&prev.positive_spans, &prev.positive_buckets),
            &prev.custom_values,
            &target,
        );
        return c.iter().zip(&p).any(|(a, b)| a.1 < b.1);
    }
    if cur.schema > prev.schema {
        return true;
    }
    if cur.zero_threshold < prev.zero_threshold {
        return true;
    }
    let (prev_zc, new_zt) = zero_count_for_larger_threshold(prev, cur.zero_threshold);
    if new_zt != cur.zero_threshold {
        return true;
    }
    if cur.zero_count < prev_zc {
        return true;
    }
    let side = |spans: &[Span], counts: &[f64], schema: i32| -> Vec<(i32, f64)> {
        reduce(&expand(spans, counts), schema, cur.schema)
            .into_iter()
            .filter(|(i, _)| exp_bound(*i, cur.schema) > cur.zero_threshold)
            .collect()
    };
    for (cs, cb, ps, pb) in [
        (
            &cur.positive_spans,
            &cur.positive_buckets,
            &prev.positive_spans,
            &prev.positive_buckets,
        ),
        (
            &cur.negative_spans,
            &cur.negative_buckets,
            &prev.negative_spans,
            &prev.negative_buckets,
        ),
    ] {
        let c = side(cs, cb, cur.schema);
        let p = side(ps, pb, prev.schema);
        for (idx, count) in p {
            if count == 0.0 {
                continue;
            }
            match c.binary_search_by_key(&idx, |x| x.0) {
                Ok(k) => {
                    if c[k].1 < count {
                        return true;
                    }
                }
                Err(_) => return true,
            }
        }
    }
    false
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

/// `histogram_quantile` of a native histogram.
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
    let mut buckets = all_buckets(h);
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
        count: 0.0,
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
    if !is_custom(h) && bucket.lower < 0.0 && bucket.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            bucket.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            bucket.upper = 0.0;
        }
    } else if is_custom(h) {
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
    if is_custom(h) || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
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

fn fraction_below(b: &Bucket, v: f64, linear: bool) -> f64 {
    if linear {
        return (v - b.lower) / (b.upper - b.lower);
    }
    let log_lower = b.lower.abs().log2();
    let log_upper = b.upper.abs().log2();
    let log_v = v.abs().log2();
    if v > 0.0 {
        return (log_v - log_lower) / (log_upper - log_lower);
    }
    1.0 - ((log_v - log_upper) / (log_lower - log_upper))
}

/// `histogram_fraction` of a native histogram; the flag says NaN
/// observations were found.
pub(crate) fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> (f64, bool) {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return (f64::NAN, false);
    }
    if lower >= upper {
        return (0.0, false);
    }
    let buckets = all_buckets(h);
    let custom = is_custom(h);
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
                rank + b.count * fraction_below(&b, v, true)
            } else {
                rank + b.count * fraction_below(&b, v, false)
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

/// Estimated variance of the observations (`histogram_stdvar`).
pub(crate) fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let mut var = 0.0;
    let mut c = 0.0;
    for b in all_buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        let val = if is_custom(h) {
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

/// Midpoint of the surviving part of a trimmed bucket.
fn trim_midpoint(lo: f64, hi: f64, positive: bool, linear: bool) -> f64 {
    if lo.is_infinite() {
        if hi.is_infinite() {
            return 0.0;
        }
        if hi > 0.0 {
            return hi / 2.0;
        }
        return hi;
    } else if hi.is_infinite() {
        return lo;
    }
    if linear {
        return (lo + hi) / 2.0;
    }
    let g = (lo * hi).abs().sqrt();
    if positive { g } else { -g }
}

/// Kept count and midpoint of a bucket with an infinite bound.
fn trim_infinite_bucket(upper_trim: bool, b: &Bucket, rhs: f64) -> (f64, f64) {
    let zero_if_inf = |x: f64| if x.is_infinite() { 0.0 } else { x };
    if b.lower == f64::NEG_INFINITY {
        if upper_trim {
            if rhs >= b.upper {
                return (b.count, 0.0);
            }
            if rhs > 0.0 && b.upper > 0.0 && b.upper.is_finite() {
                return (b.count * rhs / b.upper, rhs / 2.0);
            }
            if b.upper <= 0.0 {
                return (b.count, rhs);
            }
            return (0.0, zero_if_inf(b.upper));
        }
        if rhs <= b.lower {
            return (b.count, 0.0);
        }
        if rhs >= 0.0 && b.upper > rhs && b.upper.is_finite() {
            return (b.count * (1.0 - rhs / b.upper), (rhs + b.upper) / 2.0);
        }
        return (0.0, zero_if_inf(b.upper));
    }
    if upper_trim {
        return (0.0, zero_if_inf(b.lower));
    }
    if rhs >= b.lower {
        return (b.count, rhs);
    }
    (0.0, zero_if_inf(b.lower))
}

/// Kept count and midpoint of a bucket containing the trim point.
fn trim_bucket(b: &Bucket, rhs: f64, upper_trim: bool, positive: bool, custom: bool) -> (f64, f64) {
    if b.lower == f64::NEG_INFINITY || b.upper == f64::INFINITY {
        return trim_infinite_bucket(upper_trim, b, rhs);
    }
    let under = if rhs <= b.lower {
        0.0
    } else if rhs >= b.upper {
        b.count
    } else {
        b.count * fraction_below(b, rhs, custom)
    };
    if upper_trim {
        (under, trim_midpoint(b.lower, rhs, positive, custom))
    } else {
        (
            b.count - under,
            trim_midpoint(rhs, b.upper, positive, custom),
        )
    }
}

/// `h </ rhs` (`upper_trim`: keep observations below `rhs`) or
/// `h >/ rhs` (keep those above), as Prometheus's `TrimBuckets`: buckets
/// beyond the trim point are dropped, the one containing it is
/// interpolated, and count and sum are re-estimated from bucket midpoints
/// when anything was trimmed.
pub(crate) fn trim(h: &mut FloatHistogram, rhs: f64, upper_trim: bool) {
    let custom = is_custom(h);
    let (mut count, mut sum) = (0.0, 0.0);
    let mut trimmed = false;
    let (mut has_pos, mut has_neg) = (false, false);
    for positive in [true, false] {
        if !positive && custom {
            continue;
        }
        let (spans, counts) = if positive {
            (&h.positive_spans, &mut h.positive_buckets)
        } else {
            (&h.negative_spans, &mut h.negative_buckets)
        };
        let idxs = expand(spans, counts);
        for (k, (idx, c)) in idxs.into_iter().enumerate() {
            if c == 0.0 {
                continue;
            }
            if positive {
                has_pos = true;
            } else {
                has_neg = true;
            }
            let b = if positive {
                Bucket {
                    lower: bound(idx.saturating_sub(1), h.schema, &h.custom_values),
                    upper: bound(idx, h.schema, &h.custom_values),
                    count: c,
                }
            } else {
                Bucket {
                    lower: -exp_bound(idx, h.schema),
                    upper: -exp_bound(idx.saturating_sub(1), h.schema),
                    count: c,
                }
            };
            let (keep_all, partial) = if upper_trim {
                (b.upper <= rhs, b.lower < rhs)
            } else {
                (b.lower >= rhs, b.upper > rhs)
            };
            if keep_all {
                count += c;
                sum += trim_midpoint(b.lower, b.upper, positive, custom) * c;
            } else if partial {
                let (keep, mid) = trim_bucket(&b, rhs, upper_trim, positive, custom);
                count += keep;
                sum += mid * keep;
                if counts[k] != keep {
                    counts[k] = keep;
                    trimmed = true;
                }
            } else {
                counts[k] = 0.0;
                trimmed = true;
            }
        }
    }
    if h.zero_count > 0.0 {
        let (mut lo, mut hi) = (-h.zero_threshold, h.zero_threshold);
        if has_neg && !has_pos {
            hi = 0.0;
        }
        if has_pos && !has_neg {
            lo = 0.0;
        }
        let zc = h.zero_count;
        let (keep, mid) = if upper_trim {
            if rhs <= lo {
                (0.0, 0.0)
            } else if rhs >= hi {
                (zc, (lo + hi) / 2.0)
            } else {
                (zc * (rhs - lo) / (hi - lo), (lo + rhs) / 2.0)
            }
        } else if rhs <= lo {
            (zc, (lo + hi) / 2.0)
        } else if rhs >= hi {
            (0.0, 0.0)
        } else {
            (zc * (hi - rhs) / (hi - lo), (rhs + hi) / 2.0)
        };
        if h.zero_count != keep {
            h.zero_count = keep;
            trimmed = true;
        }
        sum += mid * keep;
        count += keep;
    }
    if trimmed {
        h.count = count;
        h.sum = sum;
        compact(h);
    }
}

/// Prometheus's `FloatHistogram.String()`:
/// `{count:N, sum:S, [lo,hi):c, ..., [-z,z]:c, (lo,hi]:c, ...}` listing
/// populated buckets only.
pub(crate) fn to_string(h: &FloatHistogram) -> String {
    use crate::value::format_g as g;
    let mut s = format!("{{count:{}, sum:{}", g(h.count), g(h.sum));
    if !is_custom(h) {
        for (idx, c) in expand(&h.negative_spans, &h.negative_buckets)
            .into_iter()
            .rev()
        {
            if c != 0.0 {
                s.push_str(&format!(
                    ", [{},{}):{}",
                    g(-exp_bound(idx, h.schema)),
                    g(-exp_bound(idx.saturating_sub(1), h.schema)),
                    g(c)
                ));
            }
        }
        if h.zero_count != 0.0 {
            s.push_str(&format!(
                ", [{},{}]:{}",
                g(-h.zero_threshold),
                g(h.zero_threshold),
                g(h.zero_count)
            ));
        }
    }
    for (idx, c) in expand(&h.positive_spans, &h.positive_buckets) {
        if c != 0.0 {
            s.push_str(&format!(
                ", ({},{}]:{}",
                g(bound(idx.saturating_sub(1), h.schema, &h.custom_values)),
                g(bound(idx, h.schema, &h.custom_values)),
                g(c)
            ));
        }
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn bounds() {
        assert_eq!(exp_bound(1, 0), 2.0);
        assert_eq!(exp_bound(0, 0), 1.0);
        assert!((exp_bound(1, 1) - std::f64::consts::SQRT_2).abs() < 1e-15);
        assert_eq!(exp_bound(1, -1), 4.0);
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
        #[test]
        fn operations_never_panic(a in arb_hist(), b in arb_hist(), x in -5.0f64..5.0) {
            let mut s = a.clone();
            let _ = add_signed(&mut s, &b, -1.0);
            let mut k = a.clone();
            let mut c = None;
            let _ = kahan_add(&mut k, &mut c, &b);
            kahan_finish(&mut k, c);
            let mut avg = HistAvg::new(&a);
            let _ = avg.add(&b);
            let _ = avg.finish();
            let _ = detect_reset(&a, &b);
            let _ = quantile(x / 5.0, &a);
            let _ = fraction(x, x + 1.0, &a);
            let _ = variance(&a);
            let _ = to_string(&a);
            let mut t = a.clone();
            trim(&mut t, x, x > 0.0);
            let mut r = a;
            reduce_resolution(&mut r, -4);
            compact(&mut r);
        }
    }

    #[test]
    fn odd_schemas_do_not_panic() {
        for schema in [-53, -20, -5, 9, 40, i32::MIN, i32::MAX] {
            let mut a = h(schema, &[(-3, 2)], &[1.0, 2.0]);
            let b = h(0, &[(0, 2)], &[1.0, 1.0]);
            let _ = exp_bound(5, schema);
            let _ = add_signed(&mut a, &b, 1.0);
            let _ = detect_reset(&a, &b);
            let _ = quantile(0.5, &a);
            let _ = fraction(0.0, 1.0, &a);
            let _ = to_string(&a);
            trim(&mut a, 1.0, true);
        }
    }

    #[test]
    fn add_reduces_schema() {
        let mut a = h(1, &[(0, 4)], &[1.0, 2.0, 3.0, 4.0]);
        let b = h(0, &[(0, 2)], &[1.0, 1.0]);
        add_signed(&mut a, &b, 1.0).unwrap();
        assert_eq!(a.schema, 0);
        assert_eq!(
            expand(&a.positive_spans, &a.positive_buckets),
            vec![(0, 2.0), (1, 6.0), (2, 4.0)]
        );
        assert_eq!(a.count, 12.0);
    }

    #[test]
    fn reset_detection() {
        let a = h(0, &[(0, 2)], &[1.0, 2.0]);
        let b = h(0, &[(0, 2)], &[2.0, 1.0]);
        assert!(detect_reset(&b, &a));
        let c = h(0, &[(0, 3)], &[1.0, 2.0, 1.0]);
        assert!(!detect_reset(&c, &a));
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
}
