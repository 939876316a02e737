//! Methods of the integer [`Histogram`] (delta-encoded buckets), following
//! Prometheus's `histogram.go`.

use super::error::HistogramError;
use super::float::{check_custom_bounds, check_reduction};
use super::layout;
use super::{CUSTOM_BUCKETS_SCHEMA, FloatHistogram, Histogram, is_exponential_schema};

/// Absolute counts from delta-encoded ones (wrapping on overflow, which
/// only corrupt data produces).
pub(crate) fn deltas_to_absolute(deltas: &[i64]) -> Vec<i64> {
    let mut acc: i64 = 0;
    deltas
        .iter()
        .map(|d| {
            acc = acc.wrapping_add(*d);
            acc
        })
        .collect()
}

/// Delta-encodes absolute counts.
pub(crate) fn absolute_to_deltas(abs: &[i64]) -> Vec<i64> {
    let mut prev: i64 = 0;
    abs.iter()
        .map(|a| {
            let d = a.wrapping_sub(prev);
            prev = *a;
            d
        })
        .collect()
}

/// Validates delta-encoded buckets and returns the sum of their absolute
/// counts.
fn check_delta_buckets(deltas: &[i64]) -> Result<u64, HistogramError> {
    let mut acc: i64 = 0;
    let mut total: u64 = 0;
    for (i, d) in deltas.iter().enumerate() {
        acc = acc.wrapping_add(*d);
        if acc < 0 {
            return Err(HistogramError::NegativeBucketCount(format!(
                "bucket number {} has observation count of {}",
                i + 1,
                acc
            )));
        }
        total = total.wrapping_add(acc as u64);
    }
    Ok(total)
}

impl Histogram {
    /// Whether the schema is the custom-buckets schema (−53).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// The float-count equivalent (absolute buckets). For custom buckets the
    /// zero bucket and negative side are dropped; for exponential schemas
    /// the custom bounds are.
    pub fn to_float(&self) -> FloatHistogram {
        let to_f = |d: &[i64]| {
            let mut acc = 0.0f64;
            d.iter()
                .map(|v| {
                    acc += *v as f64;
                    acc
                })
                .collect::<Vec<f64>>()
        };
        let custom = self.uses_custom_buckets();
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: if custom { 0.0 } else { self.zero_threshold },
            zero_count: if custom { 0.0 } else { self.zero_count as f64 },
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: if custom {
                Vec::new()
            } else {
                self.negative_spans.clone()
            },
            positive_buckets: to_f(&self.positive_buckets),
            negative_buckets: if custom {
                Vec::new()
            } else {
                to_f(&self.negative_buckets)
            },
            custom_values: if custom {
                self.custom_values.clone()
            } else {
                Vec::new()
            },
        }
    }

    /// Prometheus's `Validate` for integer histograms: as the float one,
    /// plus the count must equal the sum of all buckets (or be at least
    /// that if `sum` is NaN, since NaN observations are counted in no
    /// bucket).
    pub fn validate(&self) -> Result<(), HistogramError> {
        let mut n_count: u64 = 0;
        if self.uses_custom_buckets() {
            check_custom_bounds(
                &self.custom_values,
                &self.positive_spans,
                self.positive_buckets.len(),
            )
            .map_err(|e| e.with_prefix("custom buckets"))?;
            if self.zero_count != 0 {
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
            n_count = check_delta_buckets(&self.negative_buckets)
                .map_err(|e| e.with_prefix("negative side"))?;
            if !self.custom_values.is_empty() {
                return Err(HistogramError::ExpSchemaCustomBounds);
            }
        } else {
            return Err(HistogramError::InvalidSchema(self.schema));
        }
        let p_count = check_delta_buckets(&self.positive_buckets)
            .map_err(|e| e.with_prefix("positive side"))?;
        let in_buckets = n_count.wrapping_add(p_count).wrapping_add(self.zero_count);
        let detail = format!(
            "{in_buckets} observations found in buckets, but the Count field is {}",
            self.count
        );
        if self.sum.is_nan() {
            if in_buckets > self.count {
                return Err(HistogramError::CountNotBigEnough(detail));
            }
        } else if in_buckets != self.count {
            return Err(HistogramError::CountMismatch(detail));
        }
        Ok(())
    }

    /// Compacts the layout exactly like [`FloatHistogram::compact`] (the
    /// delta encoding is preserved).
    pub fn compact(&mut self, max_empty_buckets: usize) {
        for (spans, buckets) in [
            (&mut self.positive_spans, &mut self.positive_buckets),
            (&mut self.negative_spans, &mut self.negative_buckets),
        ] {
            let mut abs = deltas_to_absolute(buckets);
            layout::compact(spans, &mut abs, None, max_empty_buckets);
            *buckets = absolute_to_deltas(&abs);
        }
    }

    /// Prometheus's `Equals` for integer histograms (sum compared
    /// bit-wise, layouts as in [`FloatHistogram::equals`]).
    pub fn equals(&self, other: &Histogram) -> bool {
        if self.schema != other.schema
            || self.count != other.count
            || self.sum.to_bits() != other.sum.to_bits()
        {
            return false;
        }
        if self.uses_custom_buckets() && self.custom_values != other.custom_values {
            return false;
        }
        self.zero_threshold == other.zero_threshold
            && self.zero_count == other.zero_count
            && layout::spans_match(&self.negative_spans, &other.negative_spans)
            && self.negative_buckets == other.negative_buckets
            && layout::spans_match(&self.positive_spans, &other.positive_spans)
            && self.positive_buckets == other.positive_buckets
    }

    /// Prometheus's `ReduceResolution` for integer histograms (used when
    /// ingesting schemas above 8): merges buckets into the lower
    /// `target_schema`. Errors (and changes nothing) if custom buckets are
    /// involved, the target is not lower, or spans and buckets disagree.
    pub fn reduce_resolution(&mut self, target_schema: i32) -> Result<(), HistogramError> {
        check_reduction(self.schema, target_schema)?;
        // Merge on absolute counts (exact in i64), then delta-encode again.
        let mut sides = Vec::with_capacity(2);
        for (spans, buckets) in [
            (&self.positive_spans, &self.positive_buckets),
            (&self.negative_spans, &self.negative_buckets),
        ] {
            let abs = deltas_to_absolute(buckets);
            let (new_spans, merged) =
                layout::reduce(spans, &abs, self.schema, target_schema, i64::wrapping_add)?;
            sides.push((new_spans, absolute_to_deltas(&merged)));
        }
        let (ns, nb) = sides.pop().unwrap_or_default();
        let (ps, pb) = sides.pop().unwrap_or_default();
        self.positive_spans = ps;
        self.positive_buckets = pb;
        self.negative_spans = ns;
        self.negative_buckets = nb;
        self.schema = target_schema;
        Ok(())
    }
}
