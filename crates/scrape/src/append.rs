//! The synchronous half of a scrape: parse the page, give each sample its
//! final labels, append everything in one transaction, write stale markers
//! and the report series (`up`, `scrape_duration_seconds`, ...).
//!
//! It runs on a blocking thread with the loop's [`ScrapeCache`] moved in.
//! The rules are Prometheus's `scrapeLoop.append` and `report`:
//!
//! * per sample: scrape-cache lookup by the exact series text; on a miss the
//!   target labels are merged (`honor_labels`, `exported_` renaming) and
//!   `metric_relabel_configs` run, a dropped series is remembered as dropped;
//! * limits: `sample_limit` counts samples that survived relabeling, and like
//!   `label_limit` and the label length limits it fails the whole scrape
//!   (everything appended is rolled back, `up` is 0);
//! * per-sample storage outcomes (out of order, duplicate, out of bounds) are
//!   counted and the scrape goes on;
//! * after a successful scrape, series of the previous scrape that are gone
//!   get a stale marker; after a failed one, all of them do. Series exposed
//!   with their own timestamp are not tracked for staleness.
//! * with `convert_classic_histograms_to_nhcb`, classic histograms are
//!   appended as native histograms with custom buckets (see
//!   [`append_body`]); when such a series disappears it gets a float stale
//!   marker, as Prometheus's scrape loop writes (Prometheus's head turns it
//!   into a histogram stale marker; ours stores the float marker, which
//!   PromQL reads as the end of the series all the same).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pharos_exposition::nhcb::{Converted, NhcbConverter, split_classic_suffix};
use pharos_exposition::{Entry, Format, MetricType, Parser, SampleEntry, format_for_content_type};
use pharos_model::relabel::RelabelConfig;
use pharos_model::{
    HistogramValue, Labels, LabelsBuilder, METRIC_NAME, Timestamp, is_stale_nan, stale_nan,
};
use pharos_storage::{AppendError, Appendable, Appender, Exemplar, SeriesRef};

use crate::ScrapeError;
use crate::cache::{Lookup, REPORT_SERIES, ScrapeCache};
use crate::fetch::{Fetched, decode_body};
use crate::metrics::{Metrics, inc};
use crate::target::{PageMetadata, Target};

mod proto;

/// Samples may be at most this far in the future (Prometheus's
/// `maxAheadTime`).
const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// The job-level settings a loop applies to every scrape.
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: usize,
    pub label_limit: usize,
    pub label_name_length_limit: usize,
    pub label_value_length_limit: usize,
    pub body_size_limit: u64,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    pub extra_metrics: bool,
    /// The `Accept` header of the job's scrape requests.
    pub accept_header: String,
    /// The `Accept-Encoding` header: `gzip`, or `identity` when the job
    /// sets `enable_compression: false`.
    pub accept_encoding: &'static str,
    /// The format assumed when the content type is missing or unknown
    /// (`fallback_scrape_protocol`); without one, the text format.
    pub fallback_format: Option<Format>,
    /// Store classic histograms as native histograms with custom buckets
    /// (`convert_classic_histograms_to_nhcb`).
    pub convert_classic_histograms_to_nhcb: bool,
    /// With the conversion, store the classic series too
    /// (`always_scrape_classic_histograms`).
    pub always_scrape_classic_histograms: bool,
    /// Ingest the native histograms of protobuf pages
    /// (`scrape_native_histograms`); off, they are read as classic ones.
    pub native_histograms: bool,
    /// `native_histogram_bucket_limit` (0 = none).
    pub native_histogram_bucket_limit: usize,
    /// The highest schema kept, from `native_histogram_min_bucket_factor`
    /// (8, the finest, when unset).
    pub native_histogram_max_schema: i32,
}

/// The parser for a response's content type, with Prometheus 3's rule: a
/// blank or unsupported `Content-Type` fails the scrape unless the job sets
/// `fallback_scrape_protocol`. An empty body never fails (there is nothing
/// to misparse, and staleness handling still has to run).
pub(crate) fn pick_format(
    content_type: Option<&str>,
    fallback: Option<Format>,
    body_is_empty: bool,
) -> Result<Format, ScrapeError> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if media.eq_ignore_ascii_case("application/openmetrics-text")
        || media.eq_ignore_ascii_case("text/plain")
        || media.eq_ignore_ascii_case("application/vnd.google.protobuf")
    {
        return Ok(format_for_content_type(content_type));
    }
    if let Some(f) = fallback {
        return Ok(f);
    }
    if body_is_empty {
        return Ok(Format::PrometheusText);
    }
    Err(ScrapeError::Parse(match content_type.map(str::trim) {
        None | Some("") => "non-compliant scrape target sending blank Content-Type and no fallback_scrape_protocol specified for target".to_string(),
        Some(ct) => format!(
            "received unsupported Content-Type {ct:?} and no fallback_scrape_protocol specified for target"
        ),
    }))
}

/// Everything a scrape's processing reads besides the cache.
pub(crate) struct AppendCtx<'a> {
    pub settings: &'a PoolSettings,
    pub target: &'a Target,
    pub metrics: &'a Metrics,
}

/// Sample counts of one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Samples on the page (`scrape_samples_scraped`).
    pub total: usize,
    /// Samples after metric relabeling (`scrape_samples_post_metric_relabeling`).
    pub added: usize,
    /// Series new to the cache (`scrape_series_added`).
    pub series_added: usize,
}

/// The outcome of one scrape.
#[derive(Debug)]
pub(crate) struct ScrapeResult {
    /// Why the scrape failed (also reported to the target).
    #[cfg_attr(not(test), allow(dead_code))]
    pub err: Option<ScrapeError>,
    /// The sample counts (also in the report series).
    #[cfg_attr(not(test), allow(dead_code))]
    pub counts: Counts,
}

const REPORT_NAMES: [&str; REPORT_SERIES] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "scrape_timeout_seconds",
    "scrape_sample_limit",
    "scrape_body_size_bytes",
];

fn to_system_time(t: Timestamp) -> SystemTime {
    if t >= 0 {
        UNIX_EPOCH + std::time::Duration::from_millis(t.unsigned_abs())
    } else {
        UNIX_EPOCH - std::time::Duration::from_millis(t.unsigned_abs())
    }
}

/// Processes one scrape (its fetch result) completely: appends samples or
/// stale markers, the report series, commits, and reports to the target.
pub(crate) fn process_scrape(
    storage: &dyn Appendable,
    cache: &mut ScrapeCache,
    ctx: &AppendCtx<'_>,
    fetched: Result<Fetched, ScrapeError>,
    app_time: Timestamp,
    started: Instant,
) -> ScrapeResult {
    let mut app = storage.appender();
    let mut counts = Counts::default();
    let mut body_bytes: f64 = 0.0;
    let decoded = fetched.and_then(|mut f| {
        let ct = f.content_type.take();
        decode_body(f, ctx.settings.body_size_limit).map(|b| (b, ct))
    });
    let scrape_err = match decoded {
        Ok((body, content_type)) => {
            body_bytes = body.len() as f64;
            let res = if body.is_empty() {
                // An empty page is an empty scrape: everything goes stale.
                append_empty(&mut *app, cache, ctx.metrics, app_time)
            } else {
                let (c, r) = append_body(
                    &mut *app,
                    cache,
                    ctx,
                    &body,
                    content_type.as_deref(),
                    app_time,
                );
                counts = c;
                r
            };
            match res {
                Ok(()) => None,
                Err(e) => {
                    app.rollback();
                    app = storage.appender();
                    cache.rollback_iteration();
                    if let Err(e2) = append_empty(&mut *app, cache, ctx.metrics, app_time) {
                        tracing::warn!(target_url = %ctx.target.url, err = %e2, "Append of stale markers failed");
                        app.rollback();
                        app = storage.appender();
                    }
                    Some(e)
                }
            }
        }
        Err(e) => {
            if e == ScrapeError::BodySizeLimit {
                body_bytes = -1.0;
                inc(&ctx.metrics.exceeded_body_size_limit);
            }
            if let Err(e2) = append_empty(&mut *app, cache, ctx.metrics, app_time) {
                tracing::warn!(target_url = %ctx.target.url, err = %e2, "Append of stale markers failed");
                app.rollback();
                app = storage.appender();
            }
            Some(e)
        }
    };
    if let Some(e) = &scrape_err {
        tracing::debug!(target_url = %ctx.target.url, err = %e, "Scrape failed");
    }
    let duration = started.elapsed();
    ctx.target
        .report(to_system_time(app_time), duration, scrape_err.as_ref());
    let values = [
        if scrape_err.is_none() { 1.0 } else { 0.0 },
        duration.as_secs_f64(),
        counts.total as f64,
        counts.added as f64,
        counts.series_added as f64,
        ctx.target.timeout.seconds_f64(),
        ctx.settings.sample_limit as f64,
        body_bytes,
    ];
    let n = if ctx.settings.extra_metrics {
        REPORT_SERIES
    } else {
        5
    };
    match report(&mut *app, cache, ctx.target, &values[..n], app_time) {
        Ok(()) => {
            if let Err(e) = app.commit() {
                tracing::error!(target_url = %ctx.target.url, err = %e, "Scrape commit failed");
            }
        }
        Err(e) => {
            tracing::warn!(target_url = %ctx.target.url, err = %e, "Appending scrape report failed");
            app.rollback();
        }
    }
    ScrapeResult {
        err: scrape_err,
        counts,
    }
}

/// Writes the stale markers of a loop that ends: every series of its last
/// scrape and its report series, at `t`.
pub(crate) fn end_of_run_staleness(
    storage: &dyn Appendable,
    cache: &mut ScrapeCache,
    ctx: &AppendCtx<'_>,
    t: Timestamp,
) {
    let mut app = storage.appender();
    if let Err(e) = append_empty(&mut *app, cache, ctx.metrics, t) {
        tracing::warn!(target_url = %ctx.target.url, err = %e, "Stale append failed");
        app.rollback();
        app = storage.appender();
    }
    for (r, l) in cache.report.iter().flatten() {
        match app.append(*r, l, t, stale_nan()) {
            Ok(_)
            | Err(AppendError::OutOfOrder)
            | Err(AppendError::Duplicate)
            | Err(AppendError::OutOfBounds) => {}
            Err(e) => {
                tracing::warn!(target_url = %ctx.target.url, err = %e, "Stale report failed");
            }
        }
    }
    if let Err(e) = app.commit() {
        tracing::warn!(target_url = %ctx.target.url, err = %e, "Stale commit failed");
    }
}

/// An empty scrape: stale markers for everything of the previous scrape,
/// and the cache moves on (without flushing).
fn append_empty(
    app: &mut (dyn Appender + Send + '_),
    cache: &mut ScrapeCache,
    metrics: &Metrics,
    t: Timestamp,
) -> Result<(), ScrapeError> {
    let r = update_stale_markers(app, cache, t);
    if cache.iter_done(false) {
        inc(&metrics.cache_flush_forced);
    }
    r
}

fn update_stale_markers(
    app: &mut (dyn Appender + Send + '_),
    cache: &ScrapeCache,
    t: Timestamp,
) -> Result<(), ScrapeError> {
    for (r, l) in cache.stale_series() {
        match app.append(r, &l, t, stale_nan()) {
            // Expected when a target went away and came back with a new loop
            // that already wrote newer samples.
            Ok(_)
            | Err(AppendError::OutOfOrder)
            | Err(AppendError::Duplicate)
            | Err(AppendError::OutOfBounds) => {}
            Err(e) => return Err(ScrapeError::Storage(e.to_string())),
        }
    }
    Ok(())
}

fn report(
    app: &mut (dyn Appender + Send + '_),
    cache: &mut ScrapeCache,
    target: &Target,
    values: &[f64],
    t: Timestamp,
) -> Result<(), ScrapeError> {
    for (i, &v) in values.iter().enumerate() {
        let (r, l) = match &cache.report[i] {
            Some((r, l)) => (*r, l.clone()),
            None => (0, report_labels(REPORT_NAMES[i], target)),
        };
        match app.append(r, &l, t, v) {
            Ok(nr) => cache.report[i] = Some((nr, l)),
            Err(AppendError::OutOfOrder) | Err(AppendError::Duplicate) => {}
            Err(e) => return Err(ScrapeError::Storage(e.to_string())),
        }
    }
    Ok(())
}

/// A report series' labels: the target's labels and `__name__`.
fn report_labels(name: &str, target: &Target) -> Labels {
    let mut b = LabelsBuilder::from(&target.public);
    b.set(METRIC_NAME, name);
    b.build()
}

/// Appends the samples of a non-empty page, parsed per its content type.
/// Returns the counts and, when the scrape must fail (and be rolled back),
/// why.
///
/// With `convert_classic_histograms_to_nhcb`, the series of `histogram`
/// families go through [`NhcbConverter`] (their labels are built for every
/// sample, the cache key is derived from them) and come out as native
/// histograms with custom buckets (plus the classic series with
/// `always_scrape_classic_histograms`, or instead of the histogram when it
/// cannot be converted); every other series takes the usual cached path.
pub(crate) fn append_body(
    app: &mut (dyn Appender + Send + '_),
    cache: &mut ScrapeCache,
    ctx: &AppendCtx<'_>,
    body: &[u8],
    content_type: Option<&str>,
    app_time: Timestamp,
) -> (Counts, Result<(), ScrapeError>) {
    let s = ctx.settings;
    let format = match pick_format(content_type, s.fallback_format, body.is_empty()) {
        Ok(f) => f,
        Err(e) => return (Counts::default(), Err(e)),
    };
    if format == Format::Protobuf {
        return proto::append_proto_body(app, cache, ctx, body, app_time);
    }
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
    let mut err: Option<ScrapeError> = None;
    let mut parser = Parser::new(body, format);
    // `# TYPE`/`# HELP`/`# UNIT` of the page, kept if the scrape succeeds.
    let mut meta: std::collections::BTreeMap<&str, PageMetadata<'_>> =
        std::collections::BTreeMap::new();
    let mut nhcb = s
        .convert_classic_histograms_to_nhcb
        .then(|| NhcbConverter::new(s.always_scrape_classic_histograms));
    let mut converted: Vec<Converted> = Vec::new();
    // The family whose series the converter takes, while its `# TYPE` says
    // `histogram`.
    let mut histogram_family: Option<&str> = None;

    while let Some(next) = parser.next_entry() {
        let sample = match next {
            Ok(Entry::Sample(x)) => x,
            Ok(other) => {
                match other {
                    Entry::Type { metric, kind } => {
                        meta.entry(metric).or_default().kind = Some(kind.as_str());
                        if let Some(c) = nhcb.as_mut() {
                            c.on_type(metric, kind, &mut converted);
                            histogram_family = (kind == MetricType::Histogram).then_some(metric);
                        }
                    }
                    Entry::Help { metric, text } => {
                        meta.entry(metric).or_default().help = Some(text);
                        if let Some(c) = nhcb.as_mut() {
                            c.on_other(&mut converted);
                        }
                    }
                    Entry::Unit { metric, unit } => {
                        meta.entry(metric).or_default().unit = Some(unit);
                        if let Some(c) = nhcb.as_mut() {
                            c.on_other(&mut converted);
                        }
                    }
                    Entry::Sample(_) => {}
                }
                if let Err(e) = st.drain(&mut converted) {
                    err = Some(e);
                    break;
                }
                continue;
            }
            Err(e) => {
                err = Some(ScrapeError::Parse(e.to_string()));
                break;
            }
        };
        if let Some(c) = nhcb.as_mut() {
            let classic = histogram_family.is_some_and(|f| {
                split_classic_suffix(&sample.metric_name()).is_some_and(|(base, _)| base == f)
            });
            if classic {
                if let Some(dup) = sample.duplicate_label_name() {
                    err = Some(duplicate_label_error(&dup));
                    break;
                }
                c.push_sample(
                    sample.labels(),
                    sample.timestamp,
                    sample.value,
                    &mut converted,
                );
            } else {
                c.on_other(&mut converted);
            }
            if let Err(e) = st.drain(&mut converted) {
                err = Some(e);
                break;
            }
            if classic {
                continue;
            }
        }
        if let Err(e) = st.one(
            sample.series,
            sample.timestamp,
            Source::Parsed(&sample),
            Value::Float(sample.value),
        ) {
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
        ctx.target.set_metadata(&meta);
    }
    (counts, res)
}

/// What the storage would say about a label name given twice; the scrape
/// fails.
fn duplicate_label_error(name: &str) -> ScrapeError {
    ScrapeError::Storage(format!("label name {name:?} is not unique: invalid sample"))
}

/// Where a series' labels come from on a cache miss.
enum Source<'s, 'b> {
    /// A sample of the page: decoded from the text.
    Parsed(&'s SampleEntry<'b>),
    /// An output of the NHCB converter: already built.
    Built(Labels),
}

/// The value to append.
enum Value {
    Float(f64),
    Histogram(HistogramValue),
}

/// The cache key of a series produced by the NHCB converter: a first byte
/// no series text of a page starts with (0 for floats, 1 for histograms),
/// then the label set's encoding.
fn built_key(kind: u8, labels: &Labels) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + labels.as_bytes().len());
    k.push(kind);
    k.extend_from_slice(labels.as_bytes());
    k
}

/// The state of one page's appends.
struct BodyAppender<'x, 'a> {
    app: &'x mut (dyn Appender + Send + 'a),
    cache: &'x mut ScrapeCache,
    ctx: &'x AppendCtx<'x>,
    app_time: Timestamp,
    max_time: Timestamp,
    counts: Counts,
    sample_limit_hit: bool,
    /// A native histogram had more buckets than the bucket limit allows,
    /// even at the lowest resolution: the scrape fails.
    bucket_limit_hit: bool,
    limited: usize,
    b: LabelsBuilder,
}

impl BodyAppender<'_, '_> {
    /// Ends a page: turns a hit limit into the scrape's error (the sample
    /// limit first, as Prometheus), writes stale markers when all went
    /// well and moves the cache on.
    fn finish(self, mut err: Option<ScrapeError>) -> Result<(), ScrapeError> {
        let ctx = self.ctx;
        if self.sample_limit_hit {
            if err.is_none() {
                err = Some(ScrapeError::SampleLimit);
            }
            inc(&ctx.metrics.exceeded_sample_limit);
        }
        if self.bucket_limit_hit {
            if err.is_none() {
                err = Some(ScrapeError::BucketLimit);
            }
            inc(&ctx.metrics.exceeded_bucket_limit);
        }
        if err.is_none()
            && let Err(e) = update_stale_markers(self.app, self.cache, self.app_time)
        {
            err = Some(e);
        }
        match err {
            Some(e) => Err(e),
            None => {
                if self.cache.iter_done(true) {
                    inc(&ctx.metrics.cache_flush_forced);
                }
                Ok(())
            }
        }
    }

    /// Appends what the NHCB converter produced so far.
    fn drain(&mut self, out: &mut Vec<Converted>) -> Result<(), ScrapeError> {
        for c in out.drain(..) {
            match c {
                Converted::Float { labels, t, v } => {
                    let key = built_key(0, &labels);
                    self.one(&key, t, Source::Built(labels), Value::Float(v))?;
                }
                Converted::Histogram { labels, t, h } => {
                    let key = built_key(1, &labels);
                    self.one(&key, t, Source::Built(labels), Value::Histogram(h))?;
                }
            }
        }
        Ok(())
    }

    /// Appends one value of series `series` (the cache key), exposed with
    /// timestamp `raw_ts`. An error fails the scrape.
    fn one(
        &mut self,
        series: &[u8],
        raw_ts: Option<Timestamp>,
        src: Source<'_, '_>,
        value: Value,
    ) -> Result<(), ScrapeError> {
        let ctx = self.ctx;
        let s = ctx.settings;
        self.counts.total += 1;
        let ts = if s.honor_timestamps { raw_ts } else { None };
        let t = ts.unwrap_or(self.app_time);
        let v = match &value {
            Value::Float(v) => *v,
            Value::Histogram(h) => h.sum(),
        };
        // An OpenMetrics exemplar goes to the storage after its sample; a
        // storage without exemplar support drops it.
        let exemplar = match &src {
            Source::Parsed(sample) => sample.exemplar.as_ref().map(|e| Exemplar {
                labels: e.labels(),
                value: e.value,
                ts: e.timestamp.unwrap_or(t),
                has_ts: e.timestamp.is_some(),
            }),
            Source::Built(_) => None,
        };

        // Tracked for staleness in the lookup when cached (undone below if
        // the sample is not appended), to save a second lookup per sample.
        let (series_ref, labels, cached, already) = match self.cache.get(series, ts.is_none()) {
            Lookup::Dropped => return Ok(()),
            Lookup::Hit {
                series_ref,
                labels,
                already,
            } => (series_ref, labels, true, already),
            Lookup::Miss => {
                let b = &mut self.b;
                b.retain(|_, _| false);
                match src {
                    Source::Parsed(sample) => {
                        if let Some(dup) = sample.duplicate_label_name() {
                            return Err(duplicate_label_error(&dup));
                        }
                        sample.labels_into(b);
                    }
                    Source::Built(l) => {
                        for x in l.iter() {
                            b.set(x.name, x.value);
                        }
                    }
                }
                if !mutate_sample_labels(b, ctx.target, s.honor_labels, &s.metric_relabel_configs) {
                    self.cache.add_dropped(series);
                    return Ok(());
                }
                let labels = b.build();
                if labels.is_empty() {
                    self.cache.add_dropped(series);
                    return Ok(());
                }
                if !labels.has(METRIC_NAME) {
                    return Err(ScrapeError::MissingMetricName);
                }
                if let Err(e) = verify_label_limits(&labels, s) {
                    inc(&ctx.metrics.exceeded_label_limits);
                    return Err(e);
                }
                (0, labels, false, false)
            }
        };

        // Prometheus's appender chain: duplicate check, then the sample
        // limit, then the time bound, then the storage.
        let outcome: Result<Option<SeriesRef>, AppendError> = if already && ts.is_none() {
            Err(AppendError::Duplicate)
        } else {
            let mut over_limit = false;
            if s.sample_limit > 0 && (series_ref == 0 || !is_stale_nan(v)) {
                self.limited += 1;
                over_limit = self.limited > s.sample_limit;
            }
            if over_limit {
                self.sample_limit_hit = true;
                Ok(None)
            } else if t > self.max_time {
                Err(AppendError::OutOfBounds)
            } else {
                match value {
                    Value::Float(v) => self.app.append(series_ref, &labels, t, v).map(Some),
                    Value::Histogram(mut h) => {
                        if proto::limit_histogram(
                            &mut h,
                            s.native_histogram_bucket_limit,
                            s.native_histogram_max_schema,
                        ) {
                            self.app
                                .append_histogram(series_ref, &labels, t, h)
                                .map(Some)
                        } else {
                            self.bucket_limit_hit = true;
                            Ok(None)
                        }
                    }
                }
            }
        };
        let appended_ref = match outcome {
            Ok(Some(r)) => Some(r),
            Ok(None) => None,
            Err(AppendError::OutOfOrder) => {
                inc(&ctx.metrics.sample_out_of_order);
                None
            }
            Err(AppendError::Duplicate) => {
                inc(&ctx.metrics.sample_duplicate);
                None
            }
            Err(AppendError::OutOfBounds) => {
                inc(&ctx.metrics.sample_out_of_bounds);
                None
            }
            Err(e) => return Err(ScrapeError::Storage(e.to_string())),
        };
        if let (Some(r), Some(e)) = (appended_ref, exemplar) {
            // Exemplar errors never fail the scrape (as in Prometheus).
            match self.app.append_exemplar(r, &labels, e) {
                Ok(_) | Err(AppendError::DuplicateExemplar) => {}
                Err(AppendError::OutOfOrderExemplar) => {
                    inc(&ctx.metrics.exemplar_out_of_order);
                }
                Err(err) => {
                    tracing::debug!(target_url = %ctx.target.url, %err, "exemplar not stored");
                }
            }
        }
        match appended_ref {
            Some(r) => {
                if cached {
                    if r != series_ref && r != 0 {
                        self.cache.update_ref(series, r);
                    }
                } else {
                    self.cache.add(series, r, labels, ts.is_none());
                    if !self.sample_limit_hit {
                        self.counts.series_added += 1;
                    }
                }
            }
            None => {
                if cached && !already && ts.is_none() {
                    self.cache.untrack(series);
                }
            }
        }
        self.counts.added += 1;
        Ok(())
    }
}

/// Merges the target's labels into a scraped series and applies metric
/// relabeling; false when the series is dropped.
///
/// With `honor_labels`, scraped values win. Without, the target's value is
/// set and a clashing scraped value moves to `exported_<name>` (more
/// `exported_` prefixes while that name is taken, shortest names first).
pub(crate) fn mutate_sample_labels(
    b: &mut LabelsBuilder,
    target: &Target,
    honor_labels: bool,
    mrc: &[RelabelConfig],
) -> bool {
    if honor_labels {
        for l in target.public.iter() {
            if b.get(l.name).is_none() {
                b.set(l.name, l.value);
            }
        }
    } else {
        let mut conflicts: Vec<(String, String)> = Vec::new();
        for l in target.public.iter() {
            if let Some(v) = b.get(l.name) {
                conflicts.push((l.name.to_string(), v.to_string()));
            }
            b.set(l.name, l.value);
        }
        conflicts.sort_by_key(|(n, _)| n.len());
        for (name, value) in conflicts {
            let mut new_name = name;
            loop {
                new_name = format!("exported_{new_name}");
                if b.get(&new_name).is_none() {
                    b.set(&new_name, &value);
                    break;
                }
            }
        }
    }
    if mrc.is_empty() {
        return true;
    }
    pharos_model::relabel::process_builder(b, mrc)
}

fn trunc(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn verify_label_limits(l: &Labels, s: &PoolSettings) -> Result<(), ScrapeError> {
    let met = trunc(l.metric_name().unwrap_or(""), 50);
    if s.label_limit > 0 {
        let n = l.len();
        if n > s.label_limit {
            return Err(ScrapeError::LabelLimit(format!(
                "label_limit exceeded (metric: {met}, number of labels: {n}, limit: {})",
                s.label_limit
            )));
        }
    }
    if s.label_name_length_limit == 0 && s.label_value_length_limit == 0 {
        return Ok(());
    }
    for lbl in l.iter() {
        if s.label_name_length_limit > 0 && lbl.name.len() > s.label_name_length_limit {
            return Err(ScrapeError::LabelLimit(format!(
                "label_name_length_limit exceeded (metric: {met}, label name: {}, length: {}, limit: {})",
                trunc(lbl.name, 50),
                lbl.name.len(),
                s.label_name_length_limit
            )));
        }
        if s.label_value_length_limit > 0 && lbl.value.len() > s.label_value_length_limit {
            return Err(ScrapeError::LabelLimit(format!(
                "label_value_length_limit exceeded (metric: {met}, label name: {}, value: {:?}, length: {}, limit: {})",
                trunc(lbl.name, 50),
                trunc(lbl.value, 50),
                lbl.value.len(),
                s.label_value_length_limit
            )));
        }
    }
    Ok(())
}
