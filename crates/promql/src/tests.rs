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
    assert_eq!(rewrite_raw_strings(r"x{a=~`a\d`}"), r#"x{a=~"a\\d"}"#);
    assert_eq!(
        rewrite_raw_strings(r#"f(`"q"`, "`")"#),
        r#"f("\"q\"", "`")"#
    );
    assert_eq!(rewrite_raw_strings("`unterminated"), "`unterminated");
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
            "1:9: parse error: unexpected end of input in offset, expected duration",
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
            "parse error: set operator \"and\" not allowed in binary scalar expression",
        ),
        (
            "topk(x, y)",
            "parse error: expected type scalar in aggregation parameter, got instant vector",
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
