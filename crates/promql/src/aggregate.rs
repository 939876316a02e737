//! Aggregation operators (`sum`, `avg`, `topk`, ...), evaluated step by step
//! over an input matrix as Prometheus's `rangeEvalAgg`.

use pharos_model::histogram::{CounterResetHint, FloatHistogram};
use pharos_model::{Labels, Sample};

use crate::QueryError;
use crate::eval::{Evaluator, R, grouping_labels};
use crate::hist;
use crate::plan::AggOp;
use crate::value::{FastMap, H, HPoint, Series, kahan_inc};

#[derive(Clone, Default)]
struct Group {
    seen: bool,
    value: f64,
    mean: f64,
    kahan_c: f64,
    count: f64,
    incremental_mean: bool,
    drop_name: bool,
    values: Vec<f64>,
    /// For the k-aggregations: (value, input series index) in heap order.
    heap: Vec<(f64, usize)>,
    complete: bool,
    /// Native-histogram state of sum/avg.
    hist: Option<FloatHistogram>,
    hist_comp: Option<FloatHistogram>,
    hist_avg: Option<hist::HistAvg>,
    has_float: bool,
    has_hist: bool,
    incompatible: bool,
    reset_seen: bool,
    not_reset_seen: bool,
}

/// Go's `container/heap` over a slice with a custom "less", so that ties
/// come out exactly as upstream.
fn heap_up<T>(h: &mut [T], mut j: usize, less: &impl Fn(&T, &T) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down<T>(h: &mut [T], i0: usize, less: &impl Fn(&T, &T) -> bool) -> bool {
    let n = h.len();
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(&h[j2], &h[j1]) {
            j = j2;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    i > i0
}

fn heap_push<T>(h: &mut Vec<T>, x: T, less: &impl Fn(&T, &T) -> bool) {
    h.push(x);
    let j = h.len() - 1;
    heap_up(h, j, less);
}

fn heap_fix0<T>(h: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    if !heap_down(h, 0, less) {
        heap_up(h, 0, less);
    }
}

/// Go's `sort.Sort` for short slices is an insertion sort (stable); larger
/// slices use a stable sort with the same comparator.
pub(crate) fn go_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    if v.len() <= 12 {
        for i in 1..v.len() {
            let mut j = i;
            while j > 0 && less(&v[j], &v[j - 1]) {
                v.swap(j, j - 1);
                j -= 1;
            }
        }
    } else {
        v.sort_by(|a, b| {
            if less(a, b) {
                std::cmp::Ordering::Less
            } else if less(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
    }
}

/// `vectorByValueHeap.Less`: NaN sorts first, then ascending.
fn by_value_less(a: f64, b: f64) -> bool {
    if a.is_nan() {
        return true;
    }
    a < b
}

/// `vectorByReverseValueHeap.Less`: NaN sorts first, then descending.
fn by_reverse_value_less(a: f64, b: f64) -> bool {
    if a.is_nan() {
        return true;
    }
    a > b
}

/// The q-quantile of `values` (which get sorted), as Prometheus's
/// `quantile`.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| {
        if by_value_less(*a, *b) {
            std::cmp::Ordering::Less
        } else if by_value_less(*b, *a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Deterministic sampling offset in [0, 1) for `limit_ratio`: Prometheus's
/// `labels.Hash()` (xxHash64 of its default "stringlabels" encoding: each
/// name and value preceded by its length, one byte below 255, else 255 and
/// three little-endian bytes) over the largest `u64`, so that the same
/// series are sampled as by Prometheus.
fn ratio_offset(l: &Labels) -> f64 {
    let mut buf: Vec<u8> = Vec::with_capacity(l.encoded_len() + 16);
    for x in l.iter() {
        for s in [x.name, x.value] {
            let n = s.len();
            if n < 255 {
                buf.push(n as u8);
            } else {
                buf.extend_from_slice(&[255, n as u8, (n >> 8) as u8, (n >> 16) as u8]);
            }
            buf.extend_from_slice(s.as_bytes());
        }
    }
    xxhash_rust::xxh64::xxh64(&buf, 0) as f64 / u64::MAX as f64
}

fn add_ratio_sample(ratio: f64, l: &Labels) -> bool {
    let off = ratio_offset(l);
    (ratio >= 0.0 && off < ratio) || (ratio < 0.0 && off >= 1.0 + ratio)
}

pub(crate) fn aggregate(
    ev: &mut Evaluator<'_, '_>,
    op: AggOp,
    input: &[Series],
    grouping: &[String],
    without: bool,
    params: Option<&[f64]>,
    (expr_pos, agg_pos): (usize, usize),
) -> R<Vec<Series>> {
    let sh = ev.sh;
    let ignored = |what: &str, pos: usize| {
        sh.info(&format!("ignored histogram in {what} aggregation"), pos);
    };
    let mut hcursors = vec![0usize; input.len()];
    let mut step_hist: Vec<Option<H>> = vec![None; input.len()];
    let is_k = matches!(
        op,
        AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio
    );
    // Map input series to groups.
    let mut group_index: FastMap<Labels, usize> = FastMap::default();
    let mut series_group = Vec::with_capacity(input.len());
    let mut result: Vec<Series> = Vec::new();
    for s in input {
        let key = grouping_labels(&s.metric, grouping, without);
        let next = group_index.len();
        let idx = *group_index.entry(key.clone()).or_insert_with(|| {
            if !is_k {
                result.push(Series {
                    metric: key,
                    points: Vec::new(),
                    hists: Vec::new(),
                    drop_name: false,
                });
            }
            next
        });
        series_group.push(idx);
    }
    let ngroups = group_index.len();
    let mut groups: Vec<Group> = vec![Group::default(); ngroups];
    let mut cursors = vec![0usize; input.len()];
    let n = ev.steps();
    let instant = ev.start == ev.end;
    let mut kseries: Vec<Series> = Vec::new();
    let mut kindex: FastMap<Labels, usize> = FastMap::default();
    let temp = ev.cur;
    for step in 0..n {
        ev.check_time()?;
        ev.cur = temp;
        let ts = ev.ts_at(step);
        let param = params
            .and_then(|p| p.get(step).copied())
            .unwrap_or(f64::NAN);
        for g in groups.iter_mut() {
            g.seen = false;
        }
        // Gather the values of this step.
        let mut vals: Vec<(usize, f64)> = Vec::with_capacity(input.len());
        let mut any_hist = false;
        for (si, s) in input.iter().enumerate() {
            let c = &mut cursors[si];
            while *c < s.points.len() && s.points[*c].t < ts {
                *c += 1;
            }
            if *c < s.points.len() && s.points[*c].t == ts {
                vals.push((si, s.points[*c].v));
                *c += 1;
                continue;
            }
            if s.hists.is_empty() {
                continue;
            }
            let c = &mut hcursors[si];
            while *c < s.hists.len() && s.hists[*c].t < ts {
                *c += 1;
            }
            if *c < s.hists.len() && s.hists[*c].t == ts {
                vals.push((si, s.hists[*c].h.sum));
                step_hist[si] = Some(s.hists[*c].h.clone());
                any_hist = true;
                *c += 1;
            }
        }
        ev.add_samples(vals.len())?;
        let is_hist = |si: usize| any_hist && step_hist[si].is_some();
        if is_k {
            if any_hist && matches!(op, AggOp::Topk | AggOp::Bottomk) {
                let before = vals.len();
                vals.retain(|v| !is_hist(v.0));
                if vals.len() != before {
                    ignored(op.name(), agg_pos);
                }
            }
            let out = aggregate_k(op, param, input, &series_group, &mut groups, &vals);
            match out {
                None => continue,
                Some(list) => {
                    for (si, v) in list {
                        let s = &input[si];
                        let (points, hists) = match step_hist[si].as_ref().filter(|_| any_hist) {
                            Some(h) => (
                                Vec::new(),
                                vec![HPoint {
                                    t: ts,
                                    h: h.clone(),
                                }],
                            ),
                            None => (vec![Sample { t: ts, v }], Vec::new()),
                        };
                        let i = if instant {
                            None
                        } else {
                            kindex.get(&s.metric).copied()
                        };
                        match i {
                            Some(i) => {
                                kseries[i].points.extend(points);
                                kseries[i].hists.extend(hists);
                            }
                            None => {
                                if !instant {
                                    kindex.insert(s.metric.clone(), kseries.len());
                                }
                                kseries.push(Series {
                                    metric: s.metric.clone(),
                                    points,
                                    hists,
                                    drop_name: s.drop_name,
                                });
                            }
                        }
                    }
                }
            }
            if any_hist {
                step_hist.iter_mut().for_each(|h| *h = None);
            }
            continue;
        }
        for &(si, f) in &vals {
            let g = &mut groups[series_group[si]];
            if is_hist(si) {
                let h = step_hist[si].as_deref();
                if let Some(h) = h {
                    aggregate_hist(
                        op,
                        g,
                        h,
                        &input[si],
                        &|w| ignored(w, expr_pos),
                        &|m| sh.warn(&m, expr_pos),
                        &|m| sh.info(&m, expr_pos),
                    );
                }
                continue;
            }
            if !g.seen {
                *g = Group {
                    seen: true,
                    value: f,
                    mean: f,
                    kahan_c: 0.0,
                    count: 1.0,
                    incremental_mean: false,
                    drop_name: input[si].drop_name,
                    values: std::mem::take(&mut g.values),
                    heap: Vec::new(),
                    complete: false,
                    hist: None,
                    hist_comp: None,
                    hist_avg: None,
                    has_float: true,
                    has_hist: false,
                    incompatible: false,
                    reset_seen: false,
                    not_reset_seen: false,
                };
                match op {
                    AggOp::Stdvar | AggOp::Stddev => {
                        g.value = if f.is_nan() || f.is_infinite() {
                            f64::NAN
                        } else {
                            0.0
                        };
                    }
                    AggOp::Quantile => {
                        g.values.clear();
                        g.values.push(f);
                    }
                    AggOp::Group => g.value = 1.0,
                    _ => {}
                }
                continue;
            }
            if input[si].drop_name {
                g.drop_name = true;
            }
            g.has_float = true;
            match op {
                AggOp::Sum => {
                    (g.value, g.kahan_c) = kahan_inc(f, g.value, g.kahan_c);
                }
                AggOp::Avg => {
                    g.count += 1.0;
                    if !g.incremental_mean {
                        let (nv, nc) = kahan_inc(f, g.value, g.kahan_c);
                        if !nv.is_infinite() {
                            g.value = nv;
                            g.kahan_c = nc;
                            continue;
                        }
                        g.incremental_mean = true;
                        g.mean = g.value / (g.count - 1.0);
                        g.kahan_c /= g.count - 1.0;
                    }
                    let q = (g.count - 1.0) / g.count;
                    (g.mean, g.kahan_c) = kahan_inc(f / g.count, q * g.mean, q * g.kahan_c);
                }
                AggOp::Group => {}
                AggOp::Max => {
                    if g.value < f || g.value.is_nan() {
                        g.value = f;
                    }
                }
                AggOp::Min => {
                    if g.value > f || g.value.is_nan() {
                        g.value = f;
                    }
                }
                AggOp::Count => g.count += 1.0,
                AggOp::Stdvar | AggOp::Stddev => {
                    g.count += 1.0;
                    let delta = f - g.mean;
                    g.mean += delta / g.count;
                    g.value += delta * (f - g.mean);
                }
                AggOp::Quantile => g.values.push(f),
                _ => {
                    return Err(QueryError::Execution(format!(
                        "unexpected aggregation {}",
                        op.name()
                    )));
                }
            }
        }
        if any_hist {
            step_hist.iter_mut().for_each(|h| *h = None);
        }
        let mut added = 0;
        for (ri, g) in groups.iter_mut().enumerate() {
            if !g.seen {
                continue;
            }
            if matches!(op, AggOp::Sum | AggOp::Avg) && g.has_hist {
                if g.reset_seen && g.not_reset_seen {
                    sh.warn(
                        "conflicting counter resets during histogram aggregation",
                        expr_pos,
                    );
                }
                if g.has_float {
                    sh.warn(
                        "encountered a mix of histograms and floats for aggregation",
                        expr_pos,
                    );
                    continue;
                }
                if g.incompatible {
                    continue;
                }
                let h = match g.hist_avg.take() {
                    Some(a) => Some(a.finish()),
                    None => g.hist.take().map(|mut h| {
                        hist::kahan_finish(&mut h, g.hist_comp.take());
                        h
                    }),
                };
                if let Some(mut h) = h {
                    h.compact(0);
                    let s = &mut result[ri];
                    s.hists.push(HPoint {
                        t: ts,
                        h: H::new(h),
                    });
                    s.drop_name = g.drop_name;
                    added += 1;
                }
                continue;
            }
            let v = match op {
                AggOp::Avg => {
                    if g.incremental_mean {
                        g.mean + g.kahan_c
                    } else {
                        g.value / g.count + g.kahan_c / g.count
                    }
                }
                AggOp::Count => g.count,
                AggOp::Stdvar => g.value / g.count,
                AggOp::Stddev => (g.value / g.count).sqrt(),
                AggOp::Quantile => quantile(param, &mut g.values),
                AggOp::Sum => g.value + g.kahan_c,
                _ => g.value,
            };
            let s = &mut result[ri];
            s.points.push(Sample { t: ts, v });
            s.drop_name = g.drop_name;
            added += 1;
        }
        ev.add_samples(added)?;
    }
    if is_k {
        return Ok(kseries);
    }
    result.retain(|s| !s.points.is_empty() || !s.hists.is_empty());
    Ok(result)
}

/// Adds a histogram sample to a group of a non-k aggregation, as
/// Prometheus's `aggregation`: sum and avg add histograms; count and group
/// count them; the others ignore them with an info annotation.
fn aggregate_hist(
    op: AggOp,
    g: &mut Group,
    h: &FloatHistogram,
    series: &Series,
    ignored: &dyn Fn(&str),
    warn: &dyn Fn(String),
    info: &dyn Fn(String),
) {
    let drop_name = series.drop_name;
    let first = !g.seen;
    if first {
        *g = Group {
            seen: true,
            value: h.sum,
            mean: h.sum,
            count: 1.0,
            drop_name,
            values: std::mem::take(&mut g.values),
            ..Group::default()
        };
    } else if g.incompatible {
        return;
    } else if drop_name {
        g.drop_name = true;
    }
    let track = |g: &mut Group| match h.counter_reset_hint {
        CounterResetHint::CounterReset => g.reset_seen = true,
        CounterResetHint::NotCounterReset => g.not_reset_seen = true,
        _ => {}
    };
    match op {
        AggOp::Sum | AggOp::Avg => {
            g.has_hist = true;
            if !first && op == AggOp::Avg {
                g.count += 1.0;
            }
            if first {
                if op == AggOp::Avg {
                    g.hist_avg = Some(hist::HistAvg::new(h));
                } else {
                    g.hist = Some(h.clone());
                }
                g.has_float = false;
                track(g);
                return;
            }
            let r = match (g.hist.as_mut(), g.hist_avg.as_mut()) {
                (Some(acc), _) => Some(hist::kahan_add(acc, &mut g.hist_comp, h)),
                (None, Some(avg)) => Some(avg.add(h)),
                (None, None) => None,
            };
            match r {
                None => {}
                Some(r) => {
                    track(g);
                    match r {
                        Err(_) => {
                            warn(format!(
                                "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
                                series.metric.metric_name().unwrap_or("")
                            ));
                            g.incompatible = true;
                        }
                        Ok(i) if i.nhcb_bounds_reconciled => info(
                            "mismatched custom buckets were reconciled during aggregation".into(),
                        ),
                        Ok(_) => {}
                    }
                }
            }
        }
        AggOp::Count if !first => g.count += 1.0,
        AggOp::Group => g.value = 1.0,
        AggOp::Min | AggOp::Max | AggOp::Stddev | AggOp::Stdvar | AggOp::Quantile => {
            if first {
                g.seen = false;
            }
            ignored(op.name());
        }
        _ => {}
    }
}

/// One step of topk/bottomk/limitk/limit_ratio. Returns the selected
/// (series, value) pairs in output order, or `None` when nothing is
/// selected at this step.
fn aggregate_k(
    op: AggOp,
    param: f64,
    input: &[Series],
    series_group: &[usize],
    groups: &mut [Group],
    vals: &[(usize, f64)],
) -> Option<Vec<(usize, f64)>> {
    let topk_less = |a: &(f64, usize), b: &(f64, usize)| by_value_less(a.0, b.0);
    let bottomk_less = |a: &(f64, usize), b: &(f64, usize)| by_reverse_value_less(a.0, b.0);
    let mut remaining = groups.len();
    let k: i64 = (param as i64).min(input.len() as i64);
    let ratio = param.clamp(-1.0, 1.0);
    for &(si, f) in vals {
        match op {
            AggOp::Topk | AggOp::Bottomk | AggOp::Limitk => {
                if k < 1 {
                    return None;
                }
            }
            _ => {
                if param == 0.0 {
                    return None;
                }
            }
        }
        let g = &mut groups[series_group[si]];
        if !g.seen {
            g.seen = true;
            g.complete = false;
            g.heap.clear();
            match op {
                AggOp::LimitRatio => {
                    if add_ratio_sample(ratio, &input[si].metric) {
                        heap_push(&mut g.heap, (f, si), &topk_less);
                    }
                }
                _ => g.heap.push((f, si)),
            }
            if op == AggOp::Limitk && g.heap.len() as i64 == k {
                g.complete = true;
                remaining -= 1;
                if remaining == 0 {
                    break;
                }
            }
            continue;
        }
        match op {
            AggOp::Topk => {
                if (g.heap.len() as i64) < k {
                    heap_push(&mut g.heap, (f, si), &topk_less);
                } else if g.heap[0].0 < f || (g.heap[0].0.is_nan() && !f.is_nan()) {
                    g.heap[0] = (f, si);
                    if k > 1 {
                        heap_fix0(&mut g.heap, &topk_less);
                    }
                }
            }
            AggOp::Bottomk => {
                if (g.heap.len() as i64) < k {
                    heap_push(&mut g.heap, (f, si), &bottomk_less);
                } else if g.heap[0].0 > f || (g.heap[0].0.is_nan() && !f.is_nan()) {
                    g.heap[0] = (f, si);
                    if k > 1 {
                        heap_fix0(&mut g.heap, &bottomk_less);
                    }
                }
            }
            AggOp::Limitk => {
                if (g.heap.len() as i64) < k {
                    heap_push(&mut g.heap, (f, si), &topk_less);
                }
                if !g.complete && g.heap.len() as i64 == k {
                    g.complete = true;
                    remaining -= 1;
                    if remaining == 0 {
                        break;
                    }
                }
            }
            AggOp::LimitRatio if add_ratio_sample(ratio, &input[si].metric) => {
                heap_push(&mut g.heap, (f, si), &topk_less);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for g in groups.iter_mut() {
        if !g.seen {
            continue;
        }
        match op {
            AggOp::Topk if g.heap.len() > 1 => {
                go_sort(&mut g.heap, |a, b| topk_less(b, a));
            }
            AggOp::Bottomk if g.heap.len() > 1 => {
                go_sort(&mut g.heap, |a, b| bottomk_less(b, a));
            }
            _ => {}
        }
        for &(v, si) in &g.heap {
            out.push((si, v));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(0.0, &mut v), 1.0);
        assert_eq!(quantile(1.0, &mut v), 4.0);
        assert!(quantile(f64::NAN, &mut v).is_nan());
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
    }

    #[test]
    fn heap_keeps_smallest_on_top() {
        let less = |a: &f64, b: &f64| a < b;
        let mut h = Vec::new();
        for x in [5.0, 3.0, 8.0, 1.0] {
            heap_push(&mut h, x, &less);
        }
        assert_eq!(h[0], 1.0);
        h[0] = 9.0;
        heap_fix0(&mut h, &less);
        assert_eq!(h[0], 3.0);
    }
}
