//! Unit tests of the engine over a tiny in-memory storage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use pharos_model::Labels;
use pharos_storage::{
    Querier, Queryable, SelectHints, Series as StSeries, SeriesSet, VecSampleIter, VecSeriesSet,
};

struct Mem(Vec<(Labels, Vec<Sample>)>);

struct MemQ(Vec<(Labels, Vec<Sample>)>);

impl Queryable for Mem {
    fn querier(&self, _mint: i64, _maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        Ok(Box::new(MemQ(self.0.clone())))
    }
}

impl Querier for MemQ {
    fn select(
        &self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet> {
        let mut v: Vec<StSeries> = self
            .0
            .iter()
            .filter(|(l, _)| {
                matchers
                    .iter()
                    .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
            })
            .map(|(l, s)| StSeries {
                labels: l.clone(),
                samples: Box::new(VecSampleIter::new(s.clone())),
            })
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        Box::new(VecSeriesSet::new(v))
    }
    fn label_values(&self, _: &str, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(vec![])
    }
    fn label_names(&self, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(vec![])
    }
}

fn storage() -> Mem {
    let mk = |pairs: &[(&str, &str)], f: &dyn Fn(i64) -> f64| {
        let samples = (0..=10)
            .map(|i| Sample {
                t: i * 60_000,
                v: f(i),
            })
            .collect();
        (Labels::from_pairs(pairs), samples)
    };
    Mem(vec![
        mk(&[("__name__", "http_total"), ("job", "a")], &|i| {
            i as f64 * 60.0
        }),
        mk(&[("__name__", "http_total"), ("job", "b")], &|i| {
            i as f64 * 120.0
        }),
        mk(&[("__name__", "up"), ("job", "a")], &|_| 1.0),
    ])
}

fn vector(r: QueryResult) -> Vec<(String, f64)> {
    match r.value {
        Value::Vector(v) => {
            let mut out: Vec<(String, f64)> =
                v.into_iter().map(|s| (s.metric.to_string(), s.v)).collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("not a vector: {other:?}"),
    }
}

#[test]
fn selector_and_rate() {
    let e = Engine::new(EngineOptions::default());
    let s = storage();
    let r = e.instant_query(&s, "http_total", 600_000).unwrap();
    assert_eq!(
        vector(r),
        vec![
            ("{__name__=\"http_total\", job=\"a\"}".to_string(), 600.0),
            ("{__name__=\"http_total\", job=\"b\"}".to_string(), 1200.0)
        ]
    );
    let r = e
        .instant_query(&s, "sum by (job) (rate(http_total[5m]))", 600_000)
        .unwrap();
    assert_eq!(
        vector(r),
        vec![
            ("{job=\"a\"}".to_string(), 1.0),
            ("{job=\"b\"}".to_string(), 2.0)
        ]
    );
}

#[test]
fn range_query_matrix() {
    let e = Engine::new(EngineOptions::default());
    let s = storage();
    let r = e.range_query(&s, "up * 2", 0, 120_000, 60_000).unwrap();
    match r.value {
        Value::Matrix(m) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].metric.to_string(), "{job=\"a\"}");
            assert_eq!(m[0].samples.len(), 3);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn scalars_and_strings() {
    let e = Engine::new(EngineOptions::default());
    let s = storage();
    assert_eq!(
        e.instant_query(&s, "1 + 2 * 3", 0).unwrap().value,
        Value::Scalar { t: 0, v: 7.0 }
    );
    assert_eq!(
        e.instant_query(&s, "\"x\"", 5).unwrap().value,
        Value::String {
            t: 5,
            v: "x".into()
        }
    );
}

#[test]
fn errors() {
    let e = Engine::new(EngineOptions::default());
    let s = storage();
    let err = e.instant_query(&s, "sum(", 0).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let err = e.range_query(&s, "up[5m]", 0, 10, 1).unwrap_err();
    assert!(err.to_string().contains("invalid expression type"));
    let err = e
        .instant_query(&s, "sort_by_label(up, \"job\")", 0)
        .unwrap_err();
    assert!(err.to_string().contains("not enabled"), "{err}");
    let opts = EngineOptions {
        max_samples: 5,
        ..Default::default()
    };
    let err = Engine::new(opts)
        .range_query(&s, "http_total", 0, 600_000, 60_000)
        .unwrap_err();
    assert_eq!(err, QueryError::TooManySamples);
    let opts = EngineOptions {
        timeout: std::time::Duration::ZERO,
        ..Default::default()
    };
    let err = Engine::new(opts).instant_query(&s, "up", 0).unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)));
}

#[test]
fn selector_parsing() {
    let m = parse_selector("up{job=~\"a|b\"}").unwrap();
    assert_eq!(m.len(), 2);
    assert!(parse_selector("sum(up)").is_err());
    assert!(parse_selector("up{").is_err());
}

proptest::proptest! {
    #[test]
    fn never_panics(q in "\\PC{0,40}") {
        let e = Engine::new(EngineOptions::default());
        let s = storage();
        let _ = e.instant_query(&s, &q, 60_000);
        let _ = parse_selector(&q);
    }
}

#[test]
fn loaded_samples_count_against_the_limit() {
    let s = storage();
    let opts = EngineOptions {
        max_samples: 10,
        ..Default::default()
    };
    let err = Engine::new(opts)
        .instant_query(&s, "count_over_time(http_total[1h])", 600_000)
        .unwrap_err();
    assert_eq!(err, QueryError::TooManySamples);
    assert_eq!(err.error_type(), "execution");
}

#[test]
fn annotations_carry_positions() {
    let e = Engine::new(EngineOptions::default());
    let s = storage();
    let r = e.instant_query(&s, "sum(rate(up[5m]))", 600_000).unwrap();
    assert_eq!(
        r.infos,
        vec![
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\" (1:10)"
                .to_string()
        ]
    );
    let r = e
        .instant_query(&s, "quantile(1.5, http_total)", 600_000)
        .unwrap();
    assert_eq!(
        r.warnings,
        vec![
            "PromQL warning: quantile value should be between 0 and 1, got 1.5 (1:10)".to_string()
        ]
    );
}

#[test]
fn subquery_and_at_modifier() {
    let e = Engine::new(EngineOptions::default());
    let s = storage();
    // Subquery steps at 5m..10m (aligned), values 300..600 for job a.
    let r = e
        .instant_query(&s, "max_over_time(http_total{job=\"a\"}[5m:1m])", 600_000)
        .unwrap();
    assert_eq!(vector(r), vec![("{job=\"a\"}".to_string(), 600.0)]);
    let r = e
        .range_query(&s, "http_total{job=\"a\"} @ 120", 0, 120_000, 60_000)
        .unwrap();
    match r.value {
        Value::Matrix(m) => {
            assert_eq!(m.len(), 1);
            assert!(m[0].samples.iter().all(|p| p.v == 120.0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn raw_strings_are_raw() {
    let m = parse_selector(r"up{job=~`a\d+`}").unwrap();
    assert!(m[1].matches("a12"));
}

/// A storage of `n` series with 11 samples each, for the memory budget.
fn many(n: usize) -> Mem {
    Mem((0..n)
        .map(|i| {
            let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
            let s = (0..=10)
                .map(|k| Sample {
                    t: k * 60_000,
                    v: k as f64,
                })
                .collect();
            (l, s)
        })
        .collect())
}

#[test]
fn memory_budget_fails_big_queries_only() {
    let s = many(1000);
    // 1000 series * (11 samples * 16 B + 64 B overhead + labels) > 100 kB.
    let small = Engine::new(EngineOptions {
        max_memory_bytes: 100_000,
        ..Default::default()
    });
    let err = small.instant_query(&s, "sum(m)", 600_000).unwrap_err();
    assert_eq!(err, QueryError::MemoryLimit { limit: 100_000 });
    assert_eq!(err.error_type(), "execution");
    assert!(err.to_string().contains("memory budget of 100000 bytes"));
    // A query over a few series fits.
    let r = small.instant_query(&s, "m{i=\"7\"}", 600_000).unwrap();
    assert_eq!(vector(r).len(), 1);
    // Intermediate samples of a long range query count too.
    let err = Engine::new(EngineOptions {
        max_memory_bytes: 20_000,
        ..Default::default()
    })
    .range_query(&many(1), "m + 1", 0, 6_000_000, 1_000)
    .unwrap_err();
    assert!(matches!(err, QueryError::MemoryLimit { .. }), "{err}");
    // Unlimited by default.
    let r = Engine::default()
        .instant_query(&s, "sum(m)", 600_000)
        .unwrap();
    assert_eq!(vector(r), vec![("{}".to_string(), 10_000.0)]);
}

#[test]
fn cancel_flag_and_deadline_stop_the_query() {
    let s = storage();
    let e = Engine::default();
    let cancel = Arc::new(AtomicBool::new(true));
    let opts = QueryOptions {
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    let err = e.instant_query_with(&s, "up", 0, &opts).unwrap_err();
    assert_eq!(err, QueryError::Canceled);
    assert_eq!(err.error_type(), "canceled");
    cancel.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(e.instant_query_with(&s, "up", 0, &opts).is_ok());
    let opts = QueryOptions {
        deadline: Some(Instant::now()),
        ..Default::default()
    };
    let err = e
        .range_query_with(&s, "up", 0, 600_000, 1000, &opts)
        .unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
}

#[test]
fn per_query_lookback_delta() {
    let s = storage();
    let e = Engine::default();
    // Last sample at 600s; at 700s a 1m lookback finds nothing.
    let short = QueryOptions {
        lookback_delta: Some(60_000),
        ..Default::default()
    };
    let r = e.instant_query_with(&s, "up", 700_000, &short).unwrap();
    assert!(vector(r).is_empty());
    let r = e
        .instant_query_with(&s, "up", 700_000, &QueryOptions::default())
        .unwrap();
    assert_eq!(vector(r).len(), 1);
}

#[test]
fn stats_count_samples() {
    let s = storage();
    let r = Engine::default()
        .instant_query(&s, "sum(count_over_time(http_total[5m]))", 600_000)
        .unwrap();
    // Two series, samples in (300s, 600s]: 5 each.
    assert_eq!(r.stats.total_queryable_samples, 10);
    assert!(r.stats.peak_samples >= 10, "{:?}", r.stats);
    assert!(r.stats.eval_total_secs >= r.stats.inner_eval_secs);
}

#[test]
fn formats_queries() {
    assert_eq!(
        format_query("sum  by(job)(rate(x[5m]))").unwrap(),
        "sum by (job) (rate(x[5m]))"
    );
    assert_eq!(format_query("sum(").unwrap_err().error_type(), "bad_data");
    assert!(parse("up").is_ok());
}

#[test]
fn parse_errors_like_prometheus() {
    // Each message as Prometheus 2.42/3.x answers it.
    for (q, want) in [
        ("sum(", "1:5: parse error: unclosed left parenthesis"),
        ("sum(x", "1:6: parse error: unclosed left parenthesis"),
        ("rate(x[5m]", "1:11: parse error: unclosed left parenthesis"),
        (
            "foo{",
            "1:5: parse error: unexpected end of input inside braces",
        ),
        ("x[5m", "1:5: parse error: unclosed left bracket"),
        ("1 +", "1:4: parse error: unexpected end of input"),
        (
            "x offset",
            "1:9: parse error: unexpected end of input in offset, expected number, duration, step(), or range()",
        ),
        (
            "1 +\n  )",
            "2:4: parse error: unexpected right parenthesis ')'",
        ),
        (
            "rate(x)",
            "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector",
        ),
        (
            "unknown_fn(x)",
            "1:1: parse error: unknown function with name \"unknown_fn\"",
        ),
        (
            "abs(x, y)",
            "1:1: parse error: expected 1 argument(s) in call to \"abs\", got 2",
        ),
        (
            "histogram_quantile(0.9)",
            "1:1: parse error: expected 2 argument(s) in call to \"histogram_quantile\", got 1",
        ),
        (
            "1 and 2",
            "1:1: parse error: set operator \"and\" not allowed in binary scalar expression",
        ),
        (
            "topk(x, y)",
            "1:6: parse error: expected type scalar in aggregation parameter, got instant vector",
        ),
    ] {
        assert_eq!(parse(q).unwrap_err().to_string(), want, "{q:?}");
    }
    // Nested calls point at the call, strings do not confuse the search.
    assert_eq!(
        parse("sum(\"rate(\", rate(x))").unwrap_err().error_type(),
        "bad_data"
    );
    assert!(
        parse("sum(rate(x))")
            .unwrap_err()
            .to_string()
            .starts_with("1:10: parse error: expected type range vector")
    );
}

// ---------------------------------------------------------------------------
// Native histograms through the public API, over an in-memory storage whose
// iterator hands out histograms as `SampleIter::histogram()` promises.

use pharos_model::histogram::{CounterResetHint, FloatHistogram, Span};
use pharos_storage::SampleIter;

/// A sample of the histogram storage: a float or a histogram.
#[derive(Clone)]
enum HS {
    F(f64),
    H(FloatHistogram),
}

struct HistIter {
    pts: Vec<(i64, HS)>,
    pos: usize,
    started: bool,
}

impl HistIter {
    fn cur(&self) -> Option<Sample> {
        self.pts.get(self.pos).map(|(t, p)| Sample {
            t: *t,
            v: match p {
                HS::F(v) => *v,
                HS::H(h) => h.sum,
            },
        })
    }
}

impl SampleIter for HistIter {
    fn next(&mut self) -> Option<Sample> {
        if self.started {
            self.pos += 1;
        }
        self.started = true;
        self.cur()
    }
    fn seek(&mut self, ts: i64) -> Option<Sample> {
        self.started = true;
        while self.pos < self.pts.len() && self.pts[self.pos].0 < ts {
            self.pos += 1;
        }
        self.cur()
    }
    fn histogram(&self) -> Option<&FloatHistogram> {
        match self.pts.get(self.pos) {
            Some((_, HS::H(h))) => Some(h),
            _ => None,
        }
    }
}

#[derive(Clone)]
struct HMem(Vec<(Labels, Vec<(i64, HS)>)>);

impl Queryable for HMem {
    fn querier(&self, _mint: i64, _maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        Ok(Box::new(self.clone()))
    }
}

impl Querier for HMem {
    fn select(
        &self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet> {
        let v: Vec<StSeries> = self
            .0
            .iter()
            .filter(|(l, _)| {
                matchers
                    .iter()
                    .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
            })
            .map(|(l, s)| StSeries {
                labels: l.clone(),
                samples: Box::new(HistIter {
                    pts: s.clone(),
                    pos: 0,
                    started: false,
                }),
            })
            .collect();
        Box::new(VecSeriesSet::new(v))
    }
    fn label_values(&self, _: &str, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(vec![])
    }
    fn label_names(&self, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(vec![])
    }
}

/// A schema-0 histogram with `n` observations in each of the buckets
/// (0.5,1], (1,2], (2,4].
fn hist(n: f64) -> FloatHistogram {
    FloatHistogram {
        schema: 0,
        count: 3.0 * n,
        sum: 5.0 * n,
        positive_spans: vec![Span {
            offset: 0,
            length: 3,
        }],
        positive_buckets: vec![n, n, n],
        ..Default::default()
    }
}

fn hist_storage() -> HMem {
    // A counter histogram growing by 6 observations a minute, with a reset
    // at 6m; and a gauge-ish float series.
    let pts = (0..=10)
        .map(|i| {
            let n = if i < 6 {
                2.0 * i as f64
            } else {
                2.0 * (i - 6) as f64
            };
            (i * 60_000, HS::H(hist(n)))
        })
        .collect();
    HMem(vec![
        (Labels::from_pairs(&[("__name__", "req_seconds")]), pts),
        (
            Labels::from_pairs(&[("__name__", "up")]),
            vec![(600_000, HS::F(1.0))],
        ),
    ])
}

#[test]
fn histogram_selector_and_functions() {
    let e = Engine::new(EngineOptions::default());
    let s = hist_storage();
    let r = e.instant_query(&s, "req_seconds", 300_000).unwrap();
    let Value::Vector(v) = r.value else {
        panic!("not a vector")
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].h.as_deref(), Some(&hist(10.0)));
    // Functions of the histogram.
    let r = e
        .instant_query(&s, "histogram_count(req_seconds)", 300_000)
        .unwrap();
    assert_eq!(vector(r), vec![("{}".to_string(), 30.0)]);
    let r = e
        .instant_query(&s, "histogram_quantile(0.5, req_seconds)", 300_000)
        .unwrap();
    assert_eq!(vector(r), vec![("{}".to_string(), 2f64.sqrt() * 1.0)]);
    let r = e
        .instant_query(&s, "histogram_fraction(0, 2, req_seconds)", 300_000)
        .unwrap();
    let got = vector(r)[0].1;
    assert!((got - 2.0 / 3.0).abs() < 1e-12, "{got}");
    // Floats are ignored by the histogram functions.
    let r = e.instant_query(&s, "histogram_count(up)", 600_000).unwrap();
    assert_eq!(vector(r), vec![]);
}

#[test]
fn histogram_rate_handles_the_reset() {
    let e = Engine::new(EngineOptions::default());
    let s = hist_storage();
    // increase over (4m, 8m]: counts 30 (5m), 0 (6m, reset), 6 (7m), 12
    // (8m): 12 - 30 + 30 = 12, extrapolated from 3m of samples to 4m.
    let r = e
        .instant_query(&s, "histogram_count(increase(req_seconds[4m]))", 480_000)
        .unwrap();
    let got = vector(r)[0].1;
    assert!((got - 16.0).abs() < 1e-9, "{got}");
    let r = e
        .instant_query(&s, "rate(req_seconds[4m])", 480_000)
        .unwrap();
    let Value::Vector(v) = r.value else {
        panic!("not a vector")
    };
    let h = v[0].h.as_deref().unwrap();
    assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
    assert!((h.count - 16.0 / 240.0).abs() < 1e-9);
    assert_eq!(h.positive_buckets.len(), 3);
}

#[test]
fn histogram_range_query_and_annotations() {
    let e = Engine::new(EngineOptions::default());
    let s = hist_storage();
    let r = e
        .range_query(&s, "req_seconds * 2", 0, 120_000, 60_000)
        .unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("not a matrix")
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].samples.is_empty());
    let counts: Vec<(i64, f64)> = m[0].histograms.iter().map(|(t, h)| (*t, h.count)).collect();
    assert_eq!(counts, vec![(0, 0.0), (60_000, 12.0), (120_000, 24.0)]);
    // Histogram plus float: no result, an info annotation.
    let r = e.instant_query(&s, "req_seconds + 1", 300_000).unwrap();
    assert_eq!(vector(r), vec![]);
    let r = e.instant_query(&s, "req_seconds + 1", 300_000).unwrap();
    assert_eq!(
        r.infos,
        vec![
            "PromQL info: incompatible sample types encountered for binary operator \"+\": histogram + float (1:1)"
                .to_string()
        ]
    );
    // max() ignores histograms with an info.
    let r = e.instant_query(&s, "max(req_seconds)", 300_000).unwrap();
    assert_eq!(
        r.infos,
        vec!["PromQL info: ignored histogram in max aggregation (1:5)".to_string()]
    );
}

#[test]
fn trim_operators_are_formatted_back() {
    assert_eq!(
        format_query("h   </ 2 < bool 3 >/ 1").unwrap(),
        "h </ 2 < bool 3 >/ 1"
    );
    assert_eq!(
        format_query(r#"f{l="</"} > 1"#).unwrap(),
        r#"f{l="</"} > 1"#
    );
}
