//! Quantiles over classic histogram buckets (`histogram_quantile`).

/// One classic histogram bucket: its upper bound (`le`) and cumulative count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// The q-quantile of cumulative `buckets` (sorted here), interpolating
/// linearly within the bucket the rank falls into, as Prometheus's
/// `bucketQuantile`. Also reports whether the counts had to be forced to be
/// monotonic.
///
/// Special cases: NaN for q=NaN, fewer than two buckets, no `+Inf` bucket or
/// no observations; -Inf/+Inf for q<0 / q>1; if the rank falls into the
/// `+Inf` bucket, the upper bound of the second-highest bucket; if it falls
/// into a lowest bucket with a non-positive bound, that bound.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return (f64::NAN, false),
    }
    coalesce(buckets);
    correct_precision_errors(buckets, 1e-12);
    let forced = ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return (f64::NAN, false);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, false);
    }
    let mut rank = q * observations;
    let n = buckets.len() - 1;
    let b = buckets[..n].partition_point(|x| x.count < rank);
    if b == n {
        return (buckets[n - 1].upper, forced);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, forced);
    }
    let mut start = 0.0;
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

fn coalesce(buckets: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(*b),
        }
    }
    *buckets = out;
}

fn correct_precision_errors(buckets: &mut [Bucket], tolerance: f64) {
    let Some(first) = buckets.first() else {
        return;
    };
    let mut prev = first.count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        let delta = (curr - prev).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / curr <= tolerance {
            b.count = prev;
        } else {
            prev = curr;
        }
    }
}

fn ensure_monotonic(buckets: &mut [Bucket]) -> bool {
    let Some(first) = buckets.first() else {
        return false;
    };
    let mut forced = false;
    let mut max = first.count;
    for b in buckets.iter_mut().skip(1) {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
            forced = true;
        }
    }
    forced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(upper: f64, count: f64) -> Bucket {
        Bucket { upper, count }
    }

    #[test]
    fn interpolates() {
        let mut v = vec![b(f64::INFINITY, 10.0), b(1.0, 5.0), b(2.0, 10.0)];
        assert_eq!(bucket_quantile(0.5, &mut v).0, 1.0);
        let mut v = vec![b(1.0, 0.0), b(2.0, 10.0), b(f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.5, &mut v).0, 1.5);
    }

    #[test]
    fn special_cases() {
        let mut v = vec![b(1.0, 5.0)];
        assert!(bucket_quantile(0.5, &mut v).0.is_nan());
        let mut v = vec![b(1.0, 5.0), b(f64::INFINITY, 5.0)];
        assert_eq!(bucket_quantile(-1.0, &mut v).0, f64::NEG_INFINITY);
        let mut v = vec![b(1.0, 5.0), b(2.0, 3.0), b(f64::INFINITY, 6.0)];
        let (_, forced) = bucket_quantile(0.5, &mut v);
        assert!(forced);
    }
}
