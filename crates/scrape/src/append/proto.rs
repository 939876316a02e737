//! The protobuf half of a scrape's append: the page is read with
//! [`ProtoParser`] (which already gives full label sets, so every series
//! goes through the cache with a key derived from its labels, like the
//! NHCB converter's outputs), native histograms are appended with
//! `append_histogram`, and the histogram limits of the job
//! (`native_histogram_bucket_limit`, `native_histogram_min_bucket_factor`)
//! are applied by [`limit_histogram`] on every histogram append, whatever
//! the format it came from.
//!
//! With `convert_classic_histograms_to_nhcb`, classic histograms of the
//! page go through the same converter as text pages. A family in which a
//! native histogram was seen is not converted (its classic buckets, kept
//! with `always_scrape_classic_histograms`, stay classic series), as in
//! Prometheus where only histograms without native data are converted.

use std::borrow::Cow;
use std::collections::BTreeMap;

use pharos_exposition::protobuf::{ProtoEntry, ProtoOptions, ProtoParser};
use pharos_model::HistogramValue;
use pharos_model::histogram::{
    EXPONENTIAL_SCHEMA_MAX_RESERVED, EXPONENTIAL_SCHEMA_MIN, EXPONENTIAL_SCHEMA_MIN_RESERVED,
    is_exponential_schema,
};

use super::{
    AppendCtx, BodyAppender, Converted, Counts, LabelsBuilder, MAX_AHEAD_MS, MetricType,
    NhcbConverter, PageMetadata, ScrapeCache, ScrapeError, Source, Timestamp, Value, built_key,
    split_classic_suffix,
};
use pharos_storage::Appender;

/// Applies the job's native histogram limits to `h` in place: first the
/// schema cap (from `native_histogram_min_bucket_factor`), then the bucket
/// limit, lowering the resolution one schema at a time. False when the
/// histogram cannot be brought under the limit (custom buckets, or schema
/// −4 reached): the sample is not appended and the scrape fails with
/// [`ScrapeError::BucketLimit`], as in Prometheus.
pub(super) fn limit_histogram(h: &mut HistogramValue, limit: usize, max_schema: i32) -> bool {
    fn schema(h: &HistogramValue) -> i32 {
        h.schema()
    }
    fn buckets(h: &HistogramValue) -> usize {
        match h {
            HistogramValue::Int(x) => x.positive_buckets.len() + x.negative_buckets.len(),
            HistogramValue::Float(x) => x.positive_buckets.len() + x.negative_buckets.len(),
        }
    }
    fn reduce(h: &mut HistogramValue, to: i32) -> bool {
        match h {
            HistogramValue::Int(x) => x.reduce_resolution(to).is_ok(),
            HistogramValue::Float(x) => x.try_reduce_resolution(to).is_ok(),
        }
    }
    let s = schema(h);
    if (EXPONENTIAL_SCHEMA_MIN_RESERVED..=EXPONENTIAL_SCHEMA_MAX_RESERVED).contains(&s)
        && s > max_schema
        && !reduce(h, max_schema)
    {
        return false;
    }
    if limit == 0 || buckets(h) <= limit {
        return true;
    }
    if !is_exponential_schema(schema(h)) {
        return false;
    }
    while buckets(h) > limit {
        let s = schema(h);
        if s <= EXPONENTIAL_SCHEMA_MIN || !reduce(h, s - 1) {
            return false;
        }
    }
    true
}

/// One family's metadata from a protobuf page (owned: the parser's entries
/// are).
#[derive(Default)]
struct OwnedMeta {
    kind: Option<&'static str>,
    help: Option<String>,
    unit: Option<String>,
}

/// Appends a protobuf page; the counterpart of `append_body` for text.
pub(super) fn append_proto_body(
    app: &mut (dyn Appender + Send + '_),
    cache: &mut ScrapeCache,
    ctx: &AppendCtx<'_>,
    body: &[u8],
    app_time: Timestamp,
) -> (Counts, Result<(), ScrapeError>) {
    let s = ctx.settings;
    let mut st = BodyAppender {
        app,
        cache,
        ctx,
        app_time,
        max_time: pharos_model::sample::now_millis() + MAX_AHEAD_MS,
        counts: Counts::default(),
        sample_limit_hit: false,
        bucket_limit_hit: false,
        limited: 0,
        b: LabelsBuilder::new(),
    };
    let opts = ProtoOptions {
        native_histograms: s.native_histograms,
        keep_classic: s.always_scrape_classic_histograms,
    };
    let mut meta: BTreeMap<String, OwnedMeta> = BTreeMap::new();
    let mut nhcb = s
        .convert_classic_histograms_to_nhcb
        .then(|| NhcbConverter::new(s.always_scrape_classic_histograms));
    let mut converted: Vec<Converted> = Vec::new();
    // The current family, if it is a histogram family whose classic series
    // the converter takes (until a native histogram shows up in it).
    let mut histogram_family: Option<String> = None;
    let mut err: Option<ScrapeError> = None;

    for next in ProtoParser::new(body, opts) {
        let entry = match next {
            Ok(e) => e,
            Err(e) => {
                err = Some(ScrapeError::Parse(e.to_string()));
                break;
            }
        };
        let res = match entry {
            ProtoEntry::Help { metric, text } => {
                if let Some(c) = nhcb.as_mut() {
                    c.on_other(&mut converted);
                }
                meta.entry(metric).or_default().help = Some(text);
                st.drain(&mut converted)
            }
            ProtoEntry::Unit { metric, unit } => {
                if let Some(c) = nhcb.as_mut() {
                    c.on_other(&mut converted);
                }
                meta.entry(metric).or_default().unit = Some(unit);
                st.drain(&mut converted)
            }
            ProtoEntry::Type { metric, kind } => {
                if let Some(c) = nhcb.as_mut() {
                    c.on_type(&metric, kind, &mut converted);
                    histogram_family = (kind == MetricType::Histogram).then(|| metric.clone());
                }
                meta.entry(metric).or_default().kind = Some(kind.as_str());
                st.drain(&mut converted)
            }
            ProtoEntry::Histogram {
                labels,
                value,
                timestamp,
            } => {
                if let Some(c) = nhcb.as_mut() {
                    c.on_other(&mut converted);
                    histogram_family = None;
                }
                st.drain(&mut converted).and_then(|()| {
                    let key = built_key(1, &labels);
                    st.one(
                        &key,
                        timestamp,
                        Source::Built(labels),
                        Value::Histogram(value),
                    )
                })
            }
            ProtoEntry::Sample {
                labels,
                value,
                timestamp,
            } => {
                let mut rest = Some(labels);
                if let Some(c) = nhcb.as_mut() {
                    let classic = rest.as_ref().is_some_and(|l| {
                        histogram_family.as_deref().is_some_and(|f| {
                            split_classic_suffix(l.metric_name().unwrap_or(""))
                                .is_some_and(|(base, _)| base == f)
                        })
                    });
                    if classic {
                        if let Some(l) = rest.take() {
                            c.push_sample(l, timestamp, value, &mut converted);
                        }
                    } else {
                        c.on_other(&mut converted);
                    }
                }
                st.drain(&mut converted).and_then(|()| match rest {
                    Some(labels) => {
                        let key = built_key(0, &labels);
                        st.one(&key, timestamp, Source::Built(labels), Value::Float(value))
                    }
                    None => Ok(()),
                })
            }
        };
        if let Err(e) = res {
            err = Some(e);
            break;
        }
    }
    if err.is_none()
        && let Some(c) = nhcb.as_mut()
    {
        c.finish(&mut converted);
        if let Err(e) = st.drain(&mut converted) {
            err = Some(e);
        }
    }
    let counts = st.counts;
    let res = st.finish(err);
    if res.is_ok() {
        let page: BTreeMap<&str, PageMetadata<'_>> = meta
            .iter()
            .map(|(name, m)| {
                (
                    name.as_str(),
                    PageMetadata {
                        kind: m.kind,
                        help: m.help.as_deref().map(Cow::Borrowed),
                        unit: m.unit.as_deref(),
                    },
                )
            })
            .collect();
        ctx.target.set_metadata(&page);
    }
    (counts, res)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use pharos_model::{FloatHistogram, Histogram, Span};

    fn wide(schema: i32, n: u32) -> Histogram {
        Histogram {
            schema,
            count: u64::from(n),
            positive_spans: vec![Span {
                offset: 0,
                length: n,
            }],
            positive_buckets: (0..n).map(|i| i64::from(i == 0)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn bucket_limit_reduces_resolution() {
        let mut h = HistogramValue::Int(wide(3, 20));
        assert!(limit_histogram(&mut h, 4, 8));
        let HistogramValue::Int(x) = &h else { panic!() };
        assert!(x.schema < 3);
        assert!(x.positive_buckets.len() <= 4);
        assert_eq!(x.count, 20);
        x.validate().unwrap();
        // No limit, no cap: untouched.
        let mut h = HistogramValue::Int(wide(3, 20));
        assert!(limit_histogram(&mut h, 0, 8));
        assert_eq!(h, HistogramValue::Int(wide(3, 20)));
        // Schema −4 and still too many buckets: refused.
        let mut h = HistogramValue::Int(wide(-4, 5));
        assert!(!limit_histogram(&mut h, 2, 8));
        // Custom buckets cannot be reduced.
        let mut f = FloatHistogram {
            schema: pharos_model::CUSTOM_BUCKETS_SCHEMA,
            count: 3.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 3,
            }],
            positive_buckets: vec![1.0, 1.0, 1.0],
            custom_values: vec![1.0, 2.0],
            ..Default::default()
        };
        assert!(limit_histogram(&mut HistogramValue::Float(f.clone()), 3, 8));
        f.count = 3.0;
        assert!(!limit_histogram(&mut HistogramValue::Float(f), 2, 8));
    }

    #[test]
    fn schema_cap_from_min_bucket_factor() {
        let mut h = HistogramValue::Int(wide(5, 8));
        assert!(limit_histogram(&mut h, 0, 2));
        assert_eq!(h.schema(), 2);
        // Below the cap: unchanged.
        let mut h = HistogramValue::Int(wide(1, 8));
        assert!(limit_histogram(&mut h, 0, 2));
        assert_eq!(h.schema(), 1);
        assert_eq!(crate::pool::pick_schema(0.0), 8);
        assert_eq!(crate::pool::pick_schema(1.1), 2);
        assert_eq!(crate::pool::pick_schema(2.0), 0);
        assert_eq!(crate::pool::pick_schema(1e9), -4);
    }
}
