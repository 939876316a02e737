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

/// The fraction of observations between `lower` and `upper` estimated from
/// cumulative `buckets` (sorted here), interpolating linearly inside finite
/// buckets. Buckets of infinite width are never interpolated: they count
/// fully when the range reaches the infinity, not at all otherwise. The
/// lowest bucket starts at 0 when its bound is positive.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if lower.is_nan() || upper.is_nan() || buckets.is_empty() {
        return f64::NAN;
    }
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce(buckets);
    ensure_monotonic(buckets);
    let total = buckets[buckets.len() - 1].count;
    if total == 0.0 {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let rank = |x: f64| -> f64 {
        if x == f64::NEG_INFINITY {
            return 0.0;
        }
        if x == f64::INFINITY {
            return total;
        }
        let mut prev_cum = 0.0;
        for (i, b) in buckets.iter().enumerate() {
            let lo = if i == 0 {
                if b.upper > 0.0 {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            } else {
                buckets[i - 1].upper
            };
            if x <= lo {
                return prev_cum;
            }
            if x <= b.upper {
                if lo.is_infinite() {
                    return b.count;
                }
                if b.upper.is_infinite() {
                    return prev_cum;
                }
                return prev_cum + (b.count - prev_cum) * (x - lo) / (b.upper - lo);
            }
            prev_cum = b.count;
        }
        total
    };
    (rank(upper) - rank(lower)) / total
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
    fn fraction() {
        let mut v = vec![
            b(1.0, 1.0),
            b(2.0, 3.0),
            b(3.0, 6.0),
            b(f64::INFINITY, 100.0),
        ];
        assert!((bucket_fraction(0.0, 1.5, &mut v) - 0.02).abs() < 1e-12);
        assert!((bucket_fraction(400.0, f64::INFINITY, &mut v) - 0.94).abs() < 1e-12);
        assert_eq!(bucket_fraction(4.0, 5.0, &mut v), 0.0);
        let mut v = vec![
            b(-3.0, 10.0),
            b(-2.0, 12.0),
            b(-1.0, 15.0),
            b(f64::INFINITY, 100.0),
        ];
        assert!((bucket_fraction(-4.0, -2.0, &mut v) - 0.02).abs() < 1e-12);
        assert!((bucket_fraction(f64::NEG_INFINITY, -1.5, &mut v) - 0.135).abs() < 1e-12);
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
