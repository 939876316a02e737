//! Buckets with their boundaries, and the iterators over them.

use super::layout::SpanWalk;
use super::math::{get_bound, go_g};
use super::{CUSTOM_BUCKETS_SCHEMA, FloatHistogram, Span};

/// One bucket with its boundaries: what the bucket iterators yield.
///
/// Exponential buckets are `(lower, upper]` on the positive side and
/// `[lower, upper)` on the negative side; the zero bucket is
/// `[-threshold, threshold]`; custom buckets are `(lower, upper]` except the
/// first, which is `[-Inf, upper]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Lower boundary.
    pub lower: f64,
    /// Upper boundary.
    pub upper: f64,
    /// Whether `lower` itself belongs to the bucket.
    pub lower_inclusive: bool,
    /// Whether `upper` itself belongs to the bucket.
    pub upper_inclusive: bool,
    /// Observations in the bucket (absolute, not cumulative).
    pub count: f64,
    /// Bucket index within its schema and side (meaningless for the zero
    /// bucket, where it is 0).
    pub index: i32,
}

impl Bucket {
    /// Builds the bucket `index` of one side of a histogram.
    pub(crate) fn new(
        schema: i32,
        custom_values: &[f64],
        positive: bool,
        index: i32,
        count: f64,
    ) -> Bucket {
        let (lower, upper) = if positive {
            (
                get_bound(index.wrapping_sub(1), schema, custom_values),
                get_bound(index, schema, custom_values),
            )
        } else {
            (
                -get_bound(index, schema, custom_values),
                -get_bound(index.wrapping_sub(1), schema, custom_values),
            )
        };
        let (lower_inclusive, upper_inclusive) = if schema == CUSTOM_BUCKETS_SCHEMA {
            (index == 0, true)
        } else {
            (lower < 0.0, upper > 0.0)
        };
        Bucket {
            lower,
            upper,
            lower_inclusive,
            upper_inclusive,
            count,
            index,
        }
    }

    /// The fraction (0..=1) of this bucket's width at or below `v`, for `v`
    /// strictly between finite bounds: linear interpolation when `linear`
    /// (custom and zero buckets), otherwise on a logarithmic scale
    /// (exponential buckets; negative buckets mirrored).
    pub fn fraction_below(&self, v: f64, linear: bool) -> f64 {
        if linear {
            return (v - self.lower) / (self.upper - self.lower);
        }
        let log_lower = self.lower.abs().log2();
        let log_upper = self.upper.abs().log2();
        let log_v = v.abs().log2();
        if v > 0.0 {
            (log_v - log_lower) / (log_upper - log_lower)
        } else {
            1.0 - ((log_v - log_upper) / (log_lower - log_upper))
        }
    }
}

impl std::fmt::Display for Bucket {
    /// `(lower,upper]:count` in Go's `%g` number format, as Prometheus.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{},{}{}:{}",
            if self.lower_inclusive { '[' } else { '(' },
            go_g(self.lower),
            go_g(self.upper),
            if self.upper_inclusive { ']' } else { ')' },
            go_g(self.count)
        )
    }
}

/// Iterator over one side of a float histogram in ascending index order.
#[derive(Debug, Clone)]
pub struct BucketIter<'a> {
    walk: SpanWalk<'a>,
    buckets: &'a [f64],
    schema: i32,
    custom_values: &'a [f64],
    positive: bool,
}

impl Iterator for BucketIter<'_> {
    type Item = Bucket;

    fn next(&mut self) -> Option<Bucket> {
        let (idx, pos) = self.walk.next()?;
        Some(Bucket::new(
            self.schema,
            self.custom_values,
            self.positive,
            idx,
            self.buckets[pos],
        ))
    }
}

pub(crate) fn side_iter<'a>(
    schema: i32,
    custom_values: &'a [f64],
    positive: bool,
    spans: &'a [Span],
    buckets: &'a [f64],
) -> BucketIter<'a> {
    BucketIter {
        walk: SpanWalk::new(spans, buckets.len()),
        buckets,
        schema,
        custom_values,
        positive,
    }
}

impl FloatHistogram {
    /// The zero bucket `[-zero_threshold, zero_threshold]` with
    /// `zero_count`. (Prometheus panics for custom-bucket histograms; those
    /// have threshold and count 0, so this returns an empty `[-0,0]`
    /// bucket for them.)
    pub fn zero_bucket(&self) -> Bucket {
        Bucket {
            lower: -self.zero_threshold,
            upper: self.zero_threshold,
            lower_inclusive: true,
            upper_inclusive: true,
            count: self.zero_count,
            index: 0,
        }
    }

    /// Positive buckets in ascending order (from the zero bucket upwards).
    /// For custom-bucket histograms these are all the buckets.
    pub fn positive_buckets_iter(&self) -> BucketIter<'_> {
        side_iter(
            self.schema,
            &self.custom_values,
            true,
            &self.positive_spans,
            &self.positive_buckets,
        )
    }

    /// Negative buckets in ascending index order, i.e. from the zero bucket
    /// downwards (ascending `|x|`), as Prometheus's `NegativeBucketIterator`.
    pub fn negative_buckets_iter(&self) -> BucketIter<'_> {
        side_iter(
            self.schema,
            &[],
            false,
            &self.negative_spans,
            &self.negative_buckets,
        )
    }

    /// Positive buckets from the highest down to the zero bucket.
    pub fn positive_reverse_buckets_iter(&self) -> impl Iterator<Item = Bucket> + '_ {
        let v: Vec<Bucket> = self.positive_buckets_iter().collect();
        v.into_iter().rev()
    }

    /// Negative buckets from the lowest (most negative) up to the zero
    /// bucket.
    pub fn negative_reverse_buckets_iter(&self) -> impl Iterator<Item = Bucket> + '_ {
        let v: Vec<Bucket> = self.negative_buckets_iter().collect();
        v.into_iter().rev()
    }

    /// All buckets in ascending order of their bounds: negative buckets
    /// (most negative first), the zero bucket if its count is > 0 (exactly
    /// Prometheus's `AllBucketIterator`; an empty zero bucket is skipped even
    /// with a threshold > 0), then the positive buckets. A bucket
    /// overlapping the zero bucket has its inner bound clamped to
    /// ±`zero_threshold`.
    pub fn all_buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        let zt = self.zero_threshold;
        let clamp = move |mut b: Bucket| {
            if b.upper < 0.0 && b.upper > -zt {
                b.upper = -zt;
            }
            if b.lower > 0.0 && b.lower < zt {
                b.lower = zt;
            }
            b
        };
        let zero = (self.zero_count > 0.0).then(|| self.zero_bucket());
        self.negative_reverse_buckets_iter()
            .map(clamp)
            .chain(zero)
            .chain(self.positive_buckets_iter().map(clamp))
    }

    /// All buckets in descending order of their bounds (the reverse of
    /// [`FloatHistogram::all_buckets`]).
    pub fn all_reverse_buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        let v: Vec<Bucket> = self.all_buckets().collect();
        v.into_iter().rev()
    }
}
