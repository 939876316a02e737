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
