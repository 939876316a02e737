//! Bucket trimming for PromQL's `</` and `>/` operators (histogram trimmed
//! to observations below / above a value), following Prometheus's
//! `TrimBuckets`: buckets entirely on the wrong side are emptied, a bucket
//! containing the cut is scaled by the interpolated fraction that survives
//! (linear for custom buckets and the zero bucket, logarithmic for
//! exponential ones), and count and sum are recomputed from the surviving
//! buckets (the sum estimated from bucket midpoints).

use super::{Bucket, FloatHistogram};

/// Midpoint of the surviving part of a bucket: arithmetic for linear
/// buckets, geometric for exponential ones (negated on the negative side);
/// with an infinite bound, the finite one (or half of it).
fn midpoint(lower: f64, upper: f64, positive: bool, linear: bool) -> f64 {
    if lower.is_infinite() {
        if upper.is_infinite() {
            return 0.0;
        }
        if upper > 0.0 {
            return upper / 2.0;
        }
        return upper;
    }
    if upper.is_infinite() {
        return lower;
    }
    if linear {
        return (lower + upper) / 2.0;
    }
    let geo = (lower * upper).abs().sqrt();
    if positive { geo } else { -geo }
}

fn zero_if_inf(x: f64) -> f64 {
    if x.is_infinite() { 0.0 } else { x }
}

/// Surviving count and midpoint of a bucket with an infinite bound.
fn infinite_bucket_trim(upper_trim: bool, b: &Bucket, rhs: f64) -> (f64, f64) {
    if b.lower == f64::NEG_INFINITY {
        if upper_trim {
            if rhs >= b.upper {
                return (b.count, 0.0);
            }
            if rhs > 0.0 && b.upper > 0.0 && b.upper.is_finite() {
                // Only custom buckets get here: treat the lower bound as 0.
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
    // Upper bound +Inf.
    if upper_trim {
        return (0.0, zero_if_inf(b.lower));
    }
    if rhs >= b.lower {
        return (b.count, rhs);
    }
    (0.0, zero_if_inf(b.lower))
}

/// The part of a bucket's count at or below `rhs`.
fn split(b: &Bucket, rhs: f64, linear: bool) -> f64 {
    if rhs <= b.lower {
        return 0.0;
    }
    if rhs >= b.upper {
        return b.count;
    }
    b.count * b.fraction_below(rhs, linear)
}

/// Surviving count and midpoint of a bucket containing the cut.
fn bucket_trim(b: &Bucket, rhs: f64, upper_trim: bool, positive: bool, custom: bool) -> (f64, f64) {
    if b.lower == f64::NEG_INFINITY || b.upper == f64::INFINITY {
        return infinite_bucket_trim(upper_trim, b, rhs);
    }
    let under = split(b, rhs, custom);
    if upper_trim {
        (under, midpoint(b.lower, rhs, positive, custom))
    } else {
        (b.count - under, midpoint(rhs, b.upper, positive, custom))
    }
}

/// Surviving count and midpoint of the zero bucket; it is taken to extend
/// only to the side(s) that have populated buckets.
fn zero_trim(
    zero: &Bucket,
    rhs: f64,
    has_negative: bool,
    has_positive: bool,
    upper_trim: bool,
) -> (f64, f64) {
    let (mut lower, mut upper) = (zero.lower, zero.upper);
    if has_negative && !has_positive {
        upper = 0.0;
    }
    if has_positive && !has_negative {
        lower = 0.0;
    }
    if upper_trim {
        if rhs <= lower {
            return (0.0, 0.0);
        }
        if rhs >= upper {
            return (zero.count, (lower + upper) / 2.0);
        }
        (
            zero.count * (rhs - lower) / (upper - lower),
            (lower + rhs) / 2.0,
        )
    } else {
        if rhs <= lower {
            return (zero.count, (lower + upper) / 2.0);
        }
        if rhs >= upper {
            return (0.0, 0.0);
        }
        (
            zero.count * (upper - rhs) / (upper - lower),
            (rhs + upper) / 2.0,
        )
    }
}

impl FloatHistogram {
    /// Keeps only the observations below `rhs` (`upper_trim`, PromQL's
    /// `h </ rhs`) or above it (`h >/ rhs`), in place. If any bucket
    /// changed, count and sum are recomputed from the surviving buckets
    /// and the histogram is compacted; otherwise it is left untouched.
    pub fn trim_buckets(&mut self, rhs: f64, upper_trim: bool) {
        let custom = self.uses_custom_buckets();
        let mut count = 0.0;
        let mut sum = 0.0;
        let mut trimmed = false;
        let (mut has_positive, mut has_negative) = (false, false);
        for positive in [true, false] {
            let buckets: Vec<Bucket> = if positive {
                self.positive_buckets_iter().collect()
            } else {
                self.negative_buckets_iter().collect()
            };
            for (i, b) in buckets.iter().enumerate() {
                if b.count == 0.0 {
                    continue;
                }
                if positive {
                    has_positive = true;
                } else {
                    has_negative = true;
                }
                let (keep_all, partial) = if upper_trim {
                    (b.upper <= rhs, b.lower < rhs)
                } else {
                    (b.lower >= rhs, b.upper > rhs)
                };
                let slot = if positive {
                    &mut self.positive_buckets[i]
                } else {
                    &mut self.negative_buckets[i]
                };
                if keep_all {
                    count += b.count;
                    sum += midpoint(b.lower, b.upper, positive, custom) * b.count;
                } else if partial {
                    let (keep, mid) = bucket_trim(b, rhs, upper_trim, positive, custom);
                    count += keep;
                    sum += mid * keep;
                    if *slot != keep {
                        *slot = keep;
                        trimmed = true;
                    }
                } else {
                    *slot = 0.0;
                    trimmed = true;
                }
            }
        }
        if self.zero_count > 0.0 {
            let (keep, mid) = zero_trim(
                &self.zero_bucket(),
                rhs,
                has_negative,
                has_positive,
                upper_trim,
            );
            if self.zero_count != keep {
                self.zero_count = keep;
                trimmed = true;
            }
            sum += mid * keep;
            count += keep;
        }
        if trimmed {
            self.count = count;
            self.sum = sum;
            self.compact(0);
        }
    }
}
