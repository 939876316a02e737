//! Operations on one side of a histogram (spans plus bucket values),
//! shared by the integer and float histograms.
//!
//! Prometheus edits the span/bucket slices in place with a careful dance of
//! inserts and shifts. We instead decode a side into a flat list of
//! `(bucket index, value)` entries, work on that list, and encode it back
//! into spans. The resulting counts are identical; spans come out canonical
//! (maximal runs of consecutive indices), which is what Prometheus reaches
//! after `Compact` anyway and is what every caller does next.

use super::Span;
use super::error::HistogramError;
use super::math::{bucket_upper_bound, kahan_inc, target_idx};

/// One side with Kahan compensation: spans, bucket values and their
/// compensations (in step).
pub(crate) type KahanSide = (Vec<Span>, Vec<f64>, Vec<f64>);

/// Walks the bucket indices described by `spans`, yielding `(index,
/// position in the bucket vector)`. Stops early if the spans describe more
/// buckets than `len` (only invalid histograms do that).
#[derive(Debug, Clone)]
pub(crate) struct SpanWalk<'a> {
    spans: &'a [Span],
    span_i: usize,
    in_span: u32,
    index: i32,
    pos: usize,
    len: usize,
}

impl<'a> SpanWalk<'a> {
    pub(crate) fn new(spans: &'a [Span], len: usize) -> Self {
        let index = spans.first().map(|s| s.offset).unwrap_or(0);
        SpanWalk {
            spans,
            span_i: 0,
            in_span: 0,
            index,
            pos: 0,
            len,
        }
    }
}

impl Iterator for SpanWalk<'_> {
    type Item = (i32, usize);

    fn next(&mut self) -> Option<(i32, usize)> {
        if self.pos >= self.len {
            return None;
        }
        loop {
            let span = self.spans.get(self.span_i)?;
            if self.in_span < span.length {
                break;
            }
            // Move to the next span; its offset counts from the end of this one.
            self.span_i += 1;
            self.in_span = 0;
            let next = self.spans.get(self.span_i)?;
            self.index = self.index.wrapping_add(next.offset);
        }
        let item = (self.index, self.pos);
        self.in_span += 1;
        self.pos += 1;
        self.index = self.index.wrapping_add(1);
        Some(item)
    }
}

/// Decodes a side into `(index, value)` entries in storage order.
pub(crate) fn decode<T: Copy>(spans: &[Span], buckets: &[T]) -> Vec<(i32, T)> {
    SpanWalk::new(spans, buckets.len())
        .map(|(i, p)| (i, buckets[p]))
        .collect()
}

/// Encodes `(index, value)` entries (ascending indices) into canonical spans
/// (a new span only where the indices are not consecutive).
pub(crate) fn encode<T>(entries: impl IntoIterator<Item = (i32, T)>) -> (Vec<Span>, Vec<T>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut buckets = Vec::new();
    let mut last: i32 = 0;
    for (idx, v) in entries {
        match spans.last_mut() {
            Some(span) if idx == last.wrapping_add(1) => span.length += 1,
            Some(_) => spans.push(Span {
                offset: idx.wrapping_sub(last).wrapping_sub(1),
                length: 1,
            }),
            None => spans.push(Span {
                offset: idx,
                length: 1,
            }),
        }
        last = idx;
        buckets.push(v);
    }
    (spans, buckets)
}

/// Compacts one side (see [`super::FloatHistogram::compact`]): empty buckets
/// at the start and end of every run of consecutive buckets are dropped,
/// empty buckets inside a run only if more than `max_empty` of them follow
/// each other, and with `max_empty > 0` runs separated by at most
/// `max_empty` missing buckets are joined by inserting empty buckets.
///
/// A bucket is empty when its value is zero and, if a Kahan compensation
/// vector is given (kept in step with the buckets), its compensation too.
pub(crate) fn compact<T: Copy + PartialEq + Default>(
    spans: &mut Vec<Span>,
    buckets: &mut Vec<T>,
    mut comp: Option<&mut Vec<f64>>,
    max_empty: usize,
) {
    let zero = T::default();
    let is_empty = |p: usize, buckets: &[T], comp: &Option<&mut Vec<f64>>| {
        buckets[p] == zero
            && comp
                .as_ref()
                .is_none_or(|c| c.get(p).copied().unwrap_or(0.0) == 0.0)
    };
    // Fast path: nothing empty, nothing to join, no degenerate spans.
    let any_empty = (0..buckets.len()).any(|p| is_empty(p, buckets, &comp));
    if !any_empty
        && spans
            .iter()
            .all(|s| s.length > 0 && (s.offset < 0 || s.offset as usize > max_empty))
    {
        return;
    }
    if spans.iter().all(|s| s.length == 0) {
        // No span describes any bucket: nothing survives (as in Prometheus).
        spans.clear();
        buckets.clear();
        if let Some(c) = comp.as_mut() {
            c.clear();
        }
        return;
    }
    let walk: Vec<(i32, usize)> = SpanWalk::new(spans, buckets.len()).collect();
    let mut keep = vec![true; walk.len()];
    // Runs of consecutive indices.
    let mut start = 0;
    while start < walk.len() {
        let mut end = start + 1;
        while end < walk.len() && walk[end].0 == walk[end - 1].0.wrapping_add(1) {
            end += 1;
        }
        // Within [start, end): find runs of empty buckets.
        let mut i = start;
        while i < end {
            if !is_empty(walk[i].1, buckets, &comp) {
                i += 1;
                continue;
            }
            let mut j = i;
            while j < end && is_empty(walk[j].1, buckets, &comp) {
                j += 1;
            }
            let at_edge = i == start || j == end;
            if at_edge || j - i > max_empty {
                keep[i..j].iter_mut().for_each(|k| *k = false);
            }
            i = j;
        }
        start = end;
    }
    let mut new_spans: Vec<Span> = Vec::new();
    let mut new_buckets: Vec<T> = Vec::with_capacity(buckets.len());
    let mut new_comp: Vec<f64> = Vec::new();
    let mut last: i32 = 0;
    for (k, &(idx, pos)) in walk.iter().enumerate() {
        if !keep[k] {
            continue;
        }
        let c = comp
            .as_ref()
            .map(|c| c.get(pos).copied().unwrap_or(0.0))
            .unwrap_or(0.0);
        match new_spans.last_mut() {
            None => new_spans.push(Span {
                offset: idx,
                length: 1,
            }),
            Some(span) => {
                let gap = (idx as i64) - (last as i64) - 1;
                if gap == 0 {
                    span.length += 1;
                } else if max_empty > 0 && gap > 0 && gap as u64 <= max_empty as u64 {
                    span.length += gap as u32 + 1;
                    for _ in 0..gap {
                        new_buckets.push(zero);
                        new_comp.push(0.0);
                    }
                } else {
                    new_spans.push(Span {
                        offset: gap as i32,
                        length: 1,
                    });
                }
            }
        }
        new_buckets.push(buckets[pos]);
        new_comp.push(c);
        last = idx;
    }
    // Buckets beyond what the spans describe (invalid histograms) are kept
    // as they are, like Prometheus does.
    for (pos, b) in buckets.iter().enumerate().skip(walk.len()) {
        new_buckets.push(*b);
        new_comp.push(
            comp.as_ref()
                .and_then(|c| c.get(pos).copied())
                .unwrap_or(0.0),
        );
    }
    *spans = new_spans;
    *buckets = new_buckets;
    if let Some(c) = comp.as_mut() {
        **c = new_comp;
    }
}

/// Checks the spans of one side against the number of buckets: offsets
/// after the first span must not be negative, and the lengths must add up.
pub(crate) fn check_spans(spans: &[Span], num_buckets: usize) -> Result<(), HistogramError> {
    let mut total: u64 = 0;
    for (n, span) in spans.iter().enumerate() {
        if n > 0 && span.offset < 0 {
            return Err(HistogramError::SpanNegativeOffset(format!(
                "span number {} with offset {}",
                n + 1,
                span.offset
            )));
        }
        total += span.length as u64;
    }
    if total != num_buckets as u64 {
        return Err(HistogramError::SpansBucketsMismatch(format!(
            "spans need {total} buckets, have {num_buckets} buckets"
        )));
    }
    Ok(())
}

/// Reduces one side from `origin` to the lower `target` schema, merging
/// the values of buckets that fall into the same target bucket with
/// `merge`. Errors as Prometheus on negative offsets and on a span/bucket
/// count mismatch.
pub(crate) fn reduce<T: Copy>(
    spans: &[Span],
    buckets: &[T],
    origin: i32,
    target: i32,
    merge: impl Fn(T, T) -> T,
) -> Result<(Vec<Span>, Vec<T>), HistogramError> {
    let mut total: usize = 0;
    for (n, span) in spans.iter().enumerate() {
        if n > 0 && span.offset < 0 {
            return Err(HistogramError::SpanNegativeOffset(format!(
                "span number {} with offset {}",
                n + 1,
                span.offset
            )));
        }
        total += span.length as usize;
    }
    if total > buckets.len() {
        return Err(HistogramError::SpansBucketsMismatch(format!(
            "have {} buckets but spans need more",
            buckets.len()
        )));
    }
    if total < buckets.len() {
        return Err(HistogramError::SpansBucketsMismatch(format!(
            "spans need {total} buckets, have {} buckets",
            buckets.len()
        )));
    }
    let mut out: Vec<(i32, T)> = Vec::with_capacity(buckets.len());
    for (idx, pos) in SpanWalk::new(spans, buckets.len()) {
        let t = target_idx(idx, origin, target);
        match out.last_mut() {
            Some((last, acc)) if *last == t => *acc = merge(*acc, buckets[pos]),
            _ => out.push((t, buckets[pos])),
        }
    }
    Ok(encode(out))
}

/// Decodes side `b`, dropping its leading buckets whose upper bound is at
/// or below `threshold` (exponential schemas only): those are already
/// accounted for in the zero bucket.
fn decode_above_threshold(
    schema: i32,
    threshold: f64,
    spans: &[Span],
    buckets: &[f64],
    comp: Option<&[f64]>,
) -> Vec<(i32, f64, f64)> {
    let exponential = super::is_exponential_schema(schema);
    let mut below = true;
    SpanWalk::new(spans, buckets.len())
        .filter_map(|(idx, pos)| {
            if below && exponential && bucket_upper_bound(schema, idx) <= threshold {
                return None;
            }
            below = false;
            let c = comp.and_then(|c| c.get(pos).copied()).unwrap_or(0.0);
            Some((idx, buckets[pos], c))
        })
        .collect()
}

/// `a += b` (or `a -= b` with `negate`) for one side, both in `schema`.
/// Buckets of `b` at or below `threshold` are skipped (see
/// [`decode_above_threshold`]). Buckets only in `a` keep their value
/// (including empty ones); buckets only in `b` are inserted.
pub(crate) fn add(
    schema: i32,
    threshold: f64,
    negate: bool,
    a_spans: &[Span],
    a_buckets: &[f64],
    b_spans: &[Span],
    b_buckets: &[f64],
) -> (Vec<Span>, Vec<f64>) {
    let a = decode(a_spans, a_buckets);
    let b = decode_above_threshold(schema, threshold, b_spans, b_buckets, None);
    let sign = if negate { -1.0 } else { 1.0 };
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(&(ai, av)), Some(&(bi, bv, _))) if ai == bi => {
                out.push((ai, av + bv * sign));
                i += 1;
                j += 1;
            }
            (Some(&(ai, av)), Some(&(bi, _, _))) if ai < bi => {
                out.push((ai, av));
                i += 1;
            }
            (Some(&(ai, av)), None) => {
                out.push((ai, av));
                i += 1;
            }
            (_, Some(&(bi, bv, _))) => {
                out.push((bi, bv * sign));
                j += 1;
            }
            (None, None) => break,
        }
    }
    encode(out)
}

/// Kahan variant of [`add`]: `a` carries compensation `a_comp` (in step
/// with `a_buckets`), `b` optionally `b_comp`. Returns spans, sums and
/// compensations in step.
#[allow(clippy::too_many_arguments)]
pub(crate) fn kahan_add(
    schema: i32,
    threshold: f64,
    a_spans: &[Span],
    a_buckets: &[f64],
    a_comp: &[f64],
    b_spans: &[Span],
    b_buckets: &[f64],
    b_comp: Option<&[f64]>,
) -> KahanSide {
    let a: Vec<(i32, f64, f64)> = SpanWalk::new(a_spans, a_buckets.len())
        .map(|(i, p)| (i, a_buckets[p], a_comp.get(p).copied().unwrap_or(0.0)))
        .collect();
    let b = decode_above_threshold(schema, threshold, b_spans, b_buckets, b_comp);
    let mut out: Vec<(i32, (f64, f64))> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(&(ai, av, ac)), Some(&(bi, bv, bc))) if ai == bi => {
                let (s, c) = kahan_inc(bv, av, ac);
                let (s, c) = if bc != 0.0 {
                    kahan_inc(bc, s, c)
                } else {
                    (s, c)
                };
                out.push((ai, (s, c)));
                i += 1;
                j += 1;
            }
            (Some(&(ai, av, ac)), Some(&(bi, _, _))) if ai < bi => {
                out.push((ai, (av, ac)));
                i += 1;
            }
            (Some(&(ai, av, ac)), None) => {
                out.push((ai, (av, ac)));
                i += 1;
            }
            (_, Some(&(bi, bv, bc))) => {
                out.push((bi, (bv, bc)));
                j += 1;
            }
            (None, None) => break,
        }
    }
    let (spans, pairs) = encode(out);
    let (vals, comps) = pairs.into_iter().unzip();
    (spans, vals, comps)
}

/// The bounds present in both `a` and `b` (both ascending).
pub(crate) fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
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

/// Maps custom buckets (with bounds `bounds`) onto the coarser layout
/// `target_bounds` (a subset of `bounds`), accumulating `sign * value` into
/// `sums`/`comps` (length `target_bounds.len() + 1`, the last being +Inf)
/// with Kahan summation. With `extra_comp`, each bucket's compensation is
/// folded in after its value.
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_custom_buckets(
    spans: &[Span],
    buckets: &[f64],
    bounds: &[f64],
    target_bounds: &[f64],
    negate: bool,
    extra_comp: Option<&[f64]>,
    sums: &mut [f64],
    comps: &mut [f64],
) {
    let last = sums.len() - 1;
    let mut ti = 0;
    for (idx, pos) in SpanWalk::new(spans, buckets.len()) {
        let mut target = last;
        if idx >= 0
            && let Some(&bound) = bounds.get(idx as usize)
        {
            while ti < target_bounds.len() {
                if target_bounds[ti] >= bound {
                    target = ti;
                    break;
                }
                ti += 1;
            }
        }
        let v = if negate { -buckets[pos] } else { buckets[pos] };
        let (s, c) = kahan_inc(v, sums[target], comps[target]);
        sums[target] = s;
        comps[target] = c;
        if let Some(extra) = extra_comp
            && !negate
        {
            let e = extra.get(pos).copied().unwrap_or(0.0);
            let (s, c) = kahan_inc(e, sums[target], comps[target]);
            sums[target] = s;
            comps[target] = c;
        }
    }
}

/// Turns dense custom-bucket sums (index = position) into spans, dropping
/// buckets whose value and compensation are both zero.
pub(crate) fn encode_dense(sums: &[f64], comps: &[f64]) -> KahanSide {
    let entries = sums
        .iter()
        .zip(comps)
        .enumerate()
        .filter(|(_, (s, c))| !(**s == 0.0 && **c == 0.0))
        .map(|(i, (s, c))| (i as i32, (*s, *c)));
    let (spans, pairs) = encode(entries);
    let (vals, comps) = pairs.into_iter().unzip();
    (spans, vals, comps)
}

/// Same layout test as Prometheus's `spansMatch`: equal after folding
/// zero-length spans into the following span (trailing zero-length spans
/// are ignored).
pub(crate) fn spans_match(a: &[Span], b: &[Span]) -> bool {
    fn normalise(s: &[Span]) -> Vec<(i64, u32)> {
        let mut out = Vec::new();
        let mut pending: i64 = 0;
        for span in s {
            pending += span.offset as i64;
            if span.length == 0 {
                continue;
            }
            out.push((pending, span.length));
            pending = 0;
        }
        out
    }
    normalise(a) == normalise(b)
}
