//! Handler tests: the whole router over a tiny in-memory storage, driven
//! with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use pharos_model::{Duration, Labels, Matcher, Sample, Timestamp};
use pharos_promql::{Engine, EngineOptions};
use pharos_storage::{
    Querier, Queryable, SelectHints, Series, SeriesSet, StorageError, VecSampleIter, VecSeriesSet,
};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{
    ApiContext, MetadataRetriever, MetricMetadata, RuntimeInfo, TargetHealth, TargetInfo,
    TargetMetadata, TargetRetriever, router,
};

/// Series held in memory; a querier sees the samples inside its range and
/// only the series that have at least one of them.
#[derive(Clone, Default)]
struct MemStorage {
    series: Arc<Vec<(Labels, Vec<Sample>)>>,
}

impl MemStorage {
    fn new(series: Vec<(Labels, Vec<Sample>)>) -> Self {
        MemStorage {
            series: Arc::new(series),
        }
    }
}

struct MemQuerier {
    series: Vec<(Labels, Vec<Sample>)>,
}

impl Queryable for MemStorage {
    fn querier(&self, mint: Timestamp, maxt: Timestamp) -> Result<Box<dyn Querier>, StorageError> {
        let series = self
            .series
            .iter()
            .map(|(l, s)| {
                let in_range: Vec<Sample> = s
                    .iter()
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .copied()
                    .collect();
                (l.clone(), in_range)
            })
            .filter(|(_, s)| !s.is_empty())
            .collect();
        Ok(Box::new(MemQuerier { series }))
    }
}

impl MemQuerier {
    fn matching<'a>(
        &'a self,
        ms: &'a [Matcher],
    ) -> impl Iterator<Item = &'a (Labels, Vec<Sample>)> {
        self.series
            .iter()
            .filter(move |(l, _)| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
    }
}

impl Querier for MemQuerier {
    fn select(&self, sorted: bool, _: Option<&SelectHints>, ms: &[Matcher]) -> Box<dyn SeriesSet> {
        let mut out: Vec<(Labels, Vec<Sample>)> = self.matching(ms).cloned().collect();
        if sorted {
            out.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Box::new(VecSeriesSet::new(
            out.into_iter()
                .map(|(labels, s)| Series {
                    labels,
                    samples: Box::new(VecSampleIter::new(s)),
                })
                .collect(),
        ))
    }

    fn label_values(&self, name: &str, ms: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut v: Vec<String> = self
            .matching(ms)
            .filter_map(|(l, _)| l.get(name).map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn label_names(&self, ms: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut v: Vec<String> = self
            .matching(ms)
            .flat_map(|(l, _)| l.iter().map(|l| l.name.to_string()).collect::<Vec<_>>())
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
}

/// Always fails, to check error mapping.
struct BrokenStorage;

impl Queryable for BrokenStorage {
    fn querier(&self, _: Timestamp, _: Timestamp) -> Result<Box<dyn Querier>, StorageError> {
        Err(StorageError::Io("disk on fire".into()))
    }
}

struct FixedTargets;

impl MetadataRetriever for FixedTargets {
    fn targets_metadata(&self) -> Vec<TargetMetadata> {
        let md = |metric: &str, kind: &str, help: &str| MetricMetadata {
            metric: metric.into(),
            kind: kind.into(),
            help: help.into(),
            unit: String::new(),
        };
        vec![
            TargetMetadata {
                labels: Labels::from_pairs(&[("instance", "n1:9100"), ("job", "node")]),
                metadata: vec![
                    md("go_goroutines", "gauge", "Number of goroutines."),
                    md("up_total", "counter", "Ups."),
                ],
            },
            TargetMetadata {
                labels: Labels::from_pairs(&[("instance", "n2:9100"), ("job", "node")]),
                metadata: vec![md("go_goroutines", "gauge", "Goroutines, other text.")],
            },
        ]
    }
}

impl TargetRetriever for FixedTargets {
    fn active(&self) -> Vec<TargetInfo> {
        vec![
            TargetInfo {
                scrape_pool: "node".into(),
                scrape_url: "http://n1:9100/metrics".into(),
                labels: Labels::from_pairs(&[("instance", "n1:9100"), ("job", "node")]),
                discovered_labels: Labels::from_pairs(&[
                    ("__address__", "n1:9100"),
                    ("job", "node"),
                ]),
                health: TargetHealth::Down,
                last_error: "connection refused".into(),
                last_scrape: Some(UNIX_EPOCH + StdDuration::from_millis(1_435_781_451_781)),
                last_scrape_duration: StdDuration::from_millis(1500),
                scrape_interval: Duration(15_000),
                scrape_timeout: Duration(10_000),
            },
            TargetInfo {
                scrape_pool: "self".into(),
                scrape_url: "http://localhost:9090/metrics".into(),
                labels: Labels::from_pairs(&[("instance", "localhost:9090"), ("job", "self")]),
                discovered_labels: Labels::from_pairs(&[("__address__", "localhost:9090")]),
                health: TargetHealth::Up,
                last_scrape: None,
                scrape_interval: Duration(60_000),
                scrape_timeout: Duration(10_000),
                ..TargetInfo::default()
            },
        ]
    }
    fn dropped(&self) -> Vec<TargetInfo> {
        vec![TargetInfo {
            scrape_pool: "node".into(),
            discovered_labels: Labels::from_pairs(&[("__address__", "n2:9100")]),
            ..TargetInfo::default()
        }]
    }
}

const T0: i64 = 1_435_781_430_781;

fn sample_storage() -> MemStorage {
    let ramp = |start: f64| -> Vec<Sample> {
        (0..5)
            .map(|i| Sample {
                t: T0 + i * 15_000,
                v: start + i as f64,
            })
            .collect()
    };
    MemStorage::new(vec![
        (
            Labels::from_pairs(&[
                ("__name__", "up"),
                ("job", "prometheus"),
                ("instance", "localhost:9090"),
            ]),
            vec![
                Sample { t: T0, v: 1.0 },
                Sample {
                    t: T0 + 15_000,
                    v: 1.0,
                },
            ],
        ),
        (
            Labels::from_pairs(&[
                ("__name__", "up"),
                ("job", "node"),
                ("instance", "localhost:9100"),
            ]),
            vec![
                Sample { t: T0, v: 0.0 },
                Sample {
                    t: T0 + 15_000,
                    v: 1.0,
                },
            ],
        ),
        (
            Labels::from_pairs(&[("__name__", "tiny"), ("job", "node")]),
            vec![Sample { t: T0, v: 1.5e-7 }],
        ),
        (
            Labels::from_pairs(&[("__name__", "ramp"), ("job", "node"), ("a.b", "dotted")]),
            ramp(10.0),
        ),
        (
            Labels::from_pairs(&[("__name__", "old"), ("job", "archive")]),
            vec![Sample { t: 1000, v: 3.0 }],
        ),
    ])
}

struct Harness {
    app: Router,
    ready: Arc<AtomicBool>,
}

fn harness_with(queryable: Arc<dyn Queryable>, max_concurrency: usize) -> Harness {
    harness_full(queryable, max_concurrency, None)
}

fn harness_full(
    queryable: Arc<dyn Queryable>,
    max_concurrency: usize,
    exemplars: Option<Arc<dyn pharos_storage::ExemplarQueryable>>,
) -> Harness {
    let ready = Arc::new(AtomicBool::new(true));
    let ctx = ApiContext {
        engine: Arc::new(Engine::new(EngineOptions::default())),
        queryable,
        targets: Arc::new(FixedTargets),
        config_yaml: Arc::new(|| "global:\n  scrape_interval: 15s\n".to_string()),
        metrics: Arc::new(|out: &mut String| {
            out.push_str("# TYPE pharos_test_metric gauge\npharos_test_metric 42\n");
        }),
        ready: ready.clone(),
        external_url: "http://prom.example.com:9090/".into(),
        max_concurrency,
        metadata: Arc::new(FixedTargets),
        flags: Arc::new(
            [("query.timeout", "2m"), ("web.enable-lifecycle", "false")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        runtime_info: Arc::new(|| RuntimeInfo {
            start_time: UNIX_EPOCH + StdDuration::from_secs(1_700_000_000),
            cwd: "/data".into(),
            reload_config_success: true,
            last_config_time: Some(UNIX_EPOCH + StdDuration::from_secs(1_700_000_001)),
            corruption_count: 0,
            storage_retention: "15d".into(),
        }),
        exemplars,
    };
    Harness {
        app: router(ctx),
        ready,
    }
}

fn harness() -> Harness {
    harness_with(Arc::new(sample_storage()), 4)
}

struct Resp {
    status: StatusCode,
    content_type: String,
    location: String,
    headers: axum::http::HeaderMap,
    raw: Vec<u8>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let h = |n: header::HeaderName| {
            resp.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let content_type = h(header::CONTENT_TYPE);
        let location = h(header::LOCATION);
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Resp {
            status,
            content_type,
            location,
            headers,
            raw: bytes.to_vec(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str) -> Resp {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post_form(&self, uri: &str, body: &str) -> Resp {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// GET expecting a success envelope; returns `data`.
    async fn data(&self, uri: &str) -> Value {
        let r = self.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        assert_eq!(r.content_type, "application/json");
        let v = r.json();
        assert_eq!(v["status"], "success");
        v["data"].clone()
    }

    /// Expects an error envelope with this status, type and message.
    async fn expect_error(&self, r: Resp, status: StatusCode, typ: &str, msg: &str) {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.content_type, "application/json");
        let v = r.json();
        assert_eq!(v["status"], "error", "{}", r.body);
        assert_eq!(v["errorType"], typ, "{}", r.body);
        assert_eq!(v["error"], msg, "{}", r.body);
        assert!(v.get("data").is_none(), "{}", r.body);
    }
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- probes, readiness, metrics, UI ----

#[tokio::test]
async fn healthy_and_ready() {
    let h = harness();
    let r = h.get("/-/healthy").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "pharos Server is Healthy.\n")
    );
    let r = h.get("/-/ready").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "pharos Server is Ready.\n")
    );

    h.ready.store(false, Ordering::SeqCst);
    let r = h.get("/-/ready").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    );
    // The API is gated too; health and metrics are not.
    assert_eq!(
        h.get("/api/v1/labels").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        h.get("/api/v1/query?query=1").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(h.get("/-/healthy").await.status, StatusCode::OK);
    assert_eq!(h.get("/metrics").await.status, StatusCode::OK);
    let r = h
        .send(Request::head("/-/healthy").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_include_process_and_http_counters() {
    let h = harness();
    h.get("/-/healthy").await;
    h.get("/-/healthy").await;
    h.get("/api/v1/query_range?query=up").await; // 400
    h.get("/api/v1/label/job/values").await;
    let r = h.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        r.body
            .starts_with("# TYPE pharos_test_metric gauge\npharos_test_metric 42\n"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("# TYPE pharos_http_requests_total counter\n"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("pharos_http_requests_total{code=\"200\",handler=\"/-/healthy\"} 2\n"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(
            "pharos_http_requests_total{code=\"400\",handler=\"/api/v1/query_range\"} 1\n"
        ),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(
            "pharos_http_requests_total{code=\"200\",handler=\"/api/v1/label/{name}/values\"} 1\n"
        ),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn ui_routes() {
    let h = harness();
    let r = h.get("/").await;
    assert!(r.status.is_redirection());
    assert_eq!(r.location, "/query");
    let r = h.get("/graph?g0.expr=up&g0.tab=0").await;
    assert!(r.status.is_redirection());
    assert_eq!(r.location, "/query?g0.expr=up&g0.tab=0");
    let r = h.get("/graph").await;
    assert_eq!(r.location, "/query");

    let r = h.get("/query?g0.expr=up").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, "text/html; charset=utf-8");
    assert!(r.body.contains("<textarea id=\"expr\""));
    assert!(r.body.contains("assets/query.js"));
    let r = h.get("/targets").await;
    assert!(r.body.contains("assets/targets.js"));

    for (f, ct) in [
        ("query.js", "text/javascript; charset=utf-8"),
        ("chart.js", "text/javascript; charset=utf-8"),
        ("common.js", "text/javascript; charset=utf-8"),
        ("targets.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        let r = h.get(&format!("/assets/{f}")).await;
        assert_eq!(
            (r.status, r.content_type.as_str()),
            (StatusCode::OK, ct),
            "{f}"
        );
        assert!(!r.body.is_empty());
    }
    let chart = h.get("/assets/chart.js").await.body;
    assert!(chart.contains("'series-line'") && chart.contains("'data-series-count'"));
    assert_eq!(h.get("/assets/nope.js").await.status, StatusCode::NOT_FOUND);
    let r = h.get("/nope").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::NOT_FOUND, "404 page not found\n")
    );
}

#[tokio::test]
async fn cors_and_gzip() {
    let h = harness();
    let r = h
        .send(
            Request::builder()
                .method("OPTIONS")
                .uri("/api/v1/query_range")
                .header(header::ORIGIN, "http://grafana.local")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://grafana.local"
    );
    assert_eq!(
        r.headers[header::ACCESS_CONTROL_ALLOW_METHODS],
        "GET, POST, OPTIONS"
    );
    let r = h
        .send(
            Request::get("/api/v1/labels")
                .header(header::ORIGIN, "http://grafana.local")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://grafana.local"
    );
    // No Origin, no CORS headers.
    assert!(
        !h.get("/api/v1/labels")
            .await
            .headers
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );

    let plain = h.get("/assets/chart.js").await;
    assert!(plain.raw.len() > 1024 && !plain.headers.contains_key(header::CONTENT_ENCODING));
    let gz = h
        .send(
            Request::get("/assets/chart.js")
                .header(header::ACCEPT_ENCODING, "gzip, deflate")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(gz.headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gz.content_type, plain.content_type);
    assert!(gz.raw.len() < plain.raw.len());
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gz.raw[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, plain.raw);
    // Small bodies stay as they are.
    let small = h
        .send(
            Request::get("/api/v1/status/config")
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(!small.headers.contains_key(header::CONTENT_ENCODING));
    assert_eq!(small.json()["status"], "success");
}

// ---- status endpoints ----

#[tokio::test]
async fn buildinfo_and_config() {
    let h = harness();
    let d = h.data("/api/v1/status/buildinfo").await;
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    for k in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(d[k].is_string(), "{k}");
    }
    let d = h.data("/api/v1/status/config").await;
    assert_eq!(d, json!({"yaml": "global:\n  scrape_interval: 15s\n"}));
}

#[tokio::test]
async fn targets_endpoint() {
    let h = harness();
    let d = h.data("/api/v1/targets").await;
    assert_eq!(
        d["activeTargets"][0],
        json!({
            "discoveredLabels": {"__address__": "n1:9100", "job": "node"},
            "labels": {"instance": "n1:9100", "job": "node"},
            "scrapePool": "node",
            "scrapeUrl": "http://n1:9100/metrics",
            "globalUrl": "http://n1:9100/metrics",
            "lastError": "connection refused",
            "lastScrape": "2015-07-01T20:10:51.781Z",
            "lastScrapeDuration": 1.5,
            "health": "down",
            "scrapeInterval": "15s",
            "scrapeTimeout": "10s",
        })
    );
    let own = &d["activeTargets"][1];
    assert_eq!(own["health"], "up");
    assert_eq!(own["lastScrape"], "0001-01-01T00:00:00Z");
    assert_eq!(own["scrapeInterval"], "1m");
    assert_eq!(own["globalUrl"], "http://prom.example.com:9090/metrics");
    assert_eq!(
        d["droppedTargets"],
        json!([{"discoveredLabels": {"__address__": "n2:9100"}, "scrapePool": "node"}])
    );
    assert_eq!(d["droppedTargetCounts"], json!({"node": 1}));

    let d = h.data("/api/v1/targets?state=active").await;
    assert_eq!(d["activeTargets"].as_array().unwrap().len(), 2);
    assert_eq!(d["droppedTargets"], json!([]));
    let d = h.data("/api/v1/targets?state=Dropped").await;
    assert_eq!(d["activeTargets"], json!([]));
    assert_eq!(d["droppedTargets"].as_array().unwrap().len(), 1);
    let d = h.data("/api/v1/targets?scrapePool=self").await;
    assert_eq!(d["activeTargets"].as_array().unwrap().len(), 1);
    assert_eq!(d["droppedTargets"], json!([]));
}

#[tokio::test]
async fn scrape_pools_endpoint() {
    let h = harness();
    let d = h.data("/api/v1/scrape_pools").await;
    assert_eq!(d, json!({"scrapePools": ["node", "self"]}));
}

// ---- metadata endpoints ----

#[tokio::test]
async fn labels_endpoints() {
    let h = harness();
    let d = h.data("/api/v1/labels").await;
    assert_eq!(d, json!(["__name__", "a.b", "instance", "job"]));
    // A time range that only holds the "old" series.
    let d = h.data("/api/v1/labels?start=0&end=2").await;
    assert_eq!(d, json!(["__name__", "job"]));
    let d = h.data("/api/v1/label/job/values").await;
    assert_eq!(d, json!(["archive", "node", "prometheus"]));
    let d = h
        .data(&format!("/api/v1/label/job/values?match[]={}", enc("up")))
        .await;
    assert_eq!(d, json!(["node", "prometheus"]));
    let d = h
        .data(&format!(
            "/api/v1/label/__name__/values?match[]={}&match[]={}",
            enc("tiny"),
            enc("{job=\"archive\"}")
        ))
        .await;
    assert_eq!(d, json!(["old", "tiny"]));
    let d = h
        .data(&format!("/api/v1/labels?match[]={}", enc("tiny")))
        .await;
    assert_eq!(d, json!(["__name__", "job"]));
    // Escaped UTF-8 names.
    let d = h.data("/api/v1/label/U__a_2e_b/values").await;
    assert_eq!(d, json!(["dotted"]));
    let d = h.data("/api/v1/label/nosuch/values").await;
    assert_eq!(d, json!([]));
    // POST form for label names.
    let r = h
        .post_form("/api/v1/labels", &format!("match[]={}", enc("old")))
        .await;
    assert_eq!(r.json()["data"], json!(["__name__", "job"]));

    h.expect_error(
        h.get("/api/v1/labels?start=yesterday").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"start\": invalid time value for 'start': cannot parse \"yesterday\" to a valid timestamp",
    )
    .await;
    h.expect_error(
        h.get(&format!("/api/v1/labels?match[]={}", enc("{job=~\".*\"}")))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "match[] must contain at least one non-empty matcher",
    )
    .await;
    h.expect_error(
        h.get("/api/v1/label/U__a_zz/values").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid label name: \"U__a_zz\"",
    )
    .await;
}

#[tokio::test]
async fn series_endpoint() {
    let h = harness();
    let d = h
        .data(&format!("/api/v1/series?match[]={}", enc("up")))
        .await;
    let arr = d.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert!(
        arr.contains(&json!({"__name__": "up", "instance": "localhost:9090", "job": "prometheus"}))
    );
    // Several selectors: union, de-duplicated, sorted.
    let d = h
        .data(&format!(
            "/api/v1/series?match[]={}&match[]={}&match[]={}",
            enc("tiny"),
            enc("up{job=\"node\"}"),
            enc("{job=\"node\",__name__=\"tiny\"}")
        ))
        .await;
    assert_eq!(
        d,
        json!([
            {"__name__": "tiny", "job": "node"},
            {"__name__": "up", "instance": "localhost:9100", "job": "node"},
        ])
    );
    // Time range.
    let d = h
        .data(&format!(
            "/api/v1/series?match[]={}&start=0&end=1",
            enc("{job=~\".+\"}")
        ))
        .await;
    assert_eq!(d, json!([{"__name__": "old", "job": "archive"}]));
    let d = h
        .data(&format!("/api/v1/series?match[]={}", enc("nothing_here")))
        .await;
    assert_eq!(d, json!([]));
    // Form POST.
    let r = h
        .post_form("/api/v1/series", &format!("match[]={}&end=1", enc("old")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["data"],
        json!([{"__name__": "old", "job": "archive"}])
    );

    h.expect_error(
        h.get("/api/v1/series").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "no match[] parameter provided",
    )
    .await;
    h.expect_error(
        h.get(&format!("/api/v1/series?match[]={}", enc("{a=\"\"}")))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"match[]\": match[] must contain at least one non-empty matcher",
    )
    .await;
    let r = h
        .get(&format!("/api/v1/series?match[]={}", enc("up{")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"match[]\": "),
        "{}",
        r.body
    );
    h.expect_error(
        h.get(&format!("/api/v1/series?match[]=up&end={}", enc("2015-13-01T00:00:00Z"))).await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"end\": invalid time value for 'end': cannot parse \"2015-13-01T00:00:00Z\" to a valid timestamp",
    )
    .await;
}

#[tokio::test]
async fn storage_errors_are_execution_errors() {
    let h = harness_with(Arc::new(BrokenStorage), 0);
    h.expect_error(
        h.get("/api/v1/labels").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "execution",
        "i/o error: disk on fire",
    )
    .await;
    h.expect_error(
        h.get("/api/v1/series?match[]=up").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "execution",
        "i/o error: disk on fire",
    )
    .await;
}

// ---- query parameter handling (before the engine runs) ----

#[tokio::test]
async fn query_parameter_errors() {
    let h = harness();
    h.expect_error(
        h.get("/api/v1/query?query=up&time=abc").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"time\": invalid time value for 'time': cannot parse \"abc\" to a valid timestamp",
    )
    .await;
    h.expect_error(
        h.get("/api/v1/query?query=up&timeout=soon").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration",
    )
    .await;
    h.expect_error(
        h.get("/api/v1/query_range?query=up&end=10&step=1").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"start\": cannot parse \"\" to a valid timestamp",
    )
    .await;
    h.expect_error(
        h.get("/api/v1/query_range?query=up&start=2015-07-01T20:11:00Z&end=2015-07-01T20:10:00Z&step=15s").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"end\": end timestamp must not be before start time",
    )
    .await;
    for step in ["0", "-15", "0s"] {
        h.expect_error(
            h.get(&format!("/api/v1/query_range?query=up&start=0&end=10&step={step}")).await,
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        )
        .await;
    }
    h.expect_error(
        h.get("/api/v1/query_range?query=up&start=0&end=10&step=1x")
            .await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"step\": cannot parse \"1x\" to a valid duration",
    )
    .await;
    // 11,000 points per series is the limit: one week at 55s is fine, at
    // 54s it is not.
    let week = 7 * 86_400;
    h.expect_error(
        h.get(&format!("/api/v1/query_range?query=up&start=0&end={week}&step=54")).await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
    )
    .await;
    let r = h
        .get(&format!(
            "/api/v1/query_range?query=up&start=0&end={week}&step=55"
        ))
        .await;
    assert!(
        !r.body.contains("exceeded maximum resolution"),
        "{}",
        r.body
    );
    // Body parameters are read for form POSTs, and win over the URL.
    h.expect_error(
        h.post_form(
            "/api/v1/query_range?start=1",
            "query=up&start=abc&end=10&step=1",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"start\": cannot parse \"abc\" to a valid timestamp",
    )
    .await;
    h.expect_error(
        h.post_form("/api/v1/query_range", "query=up&start=5&end=1&step=1")
            .await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"end\": end timestamp must not be before start time",
    )
    .await;
}

// ---- queries through the engine ----

#[tokio::test]
async fn instant_query_vector() {
    let h = harness();
    let d = h
        .data(&format!(
            "/api/v1/query?query=up&time={}",
            enc("2015-07-01T20:10:51.781Z")
        ))
        .await;
    assert_eq!(d["resultType"], "vector");
    let r = d["result"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert!(r.contains(&json!({
        "metric": {"__name__": "up", "instance": "localhost:9100", "job": "node"},
        "value": [1435781451.781, "1"],
    })));
    // The raw text keeps Prometheus's timestamp spelling.
    let raw = h
        .get("/api/v1/query?query=up&time=1435781451.78")
        .await
        .body;
    assert!(raw.contains("\"value\":[1435781451.780,\"1\"]"), "{raw}");
    // Unix seconds and RFC 3339 with offset name the same instant.
    let a = h.data("/api/v1/query?query=up&time=1435781451.781").await;
    let b = h
        .data(&format!(
            "/api/v1/query?query=up&time={}",
            enc("2015-07-01T22:10:51.781+02:00")
        ))
        .await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn instant_query_scalar_string_and_formats() {
    let h = harness();
    let d = h.data("/api/v1/query?query=1%2B1&time=100").await;
    assert_eq!(d, json!({"resultType": "scalar", "result": [100, "2"]}));
    let d = h.data("/api/v1/query?query=%22hi%22&time=1.5").await;
    assert_eq!(d, json!({"resultType": "string", "result": [1.5, "hi"]}));
    let raw = h.get("/api/v1/query?query=%22hi%22&time=1.5").await.body;
    assert!(raw.contains("[1.5,\"hi\"]"), "{raw}");
    let raw = h.get("/api/v1/query?query=1e-7&time=1.01").await.body;
    assert!(raw.contains("[1.01,\"0.0000001\"]"), "{raw}");
    // Vector values: Go's exponent form below 1e-6; special values.
    let d = h
        .data(&format!(
            "/api/v1/query?query=tiny&time={}",
            T0 as f64 / 1000.0
        ))
        .await;
    assert_eq!(d["result"][0]["value"][1], "1.5e-07");
    let d = h.data("/api/v1/query?query=1%2F0&time=0").await;
    assert_eq!(d["result"][1], "+Inf");
    let d = h.data("/api/v1/query?query=-1%2F0&time=0").await;
    assert_eq!(d["result"][1], "-Inf");
    let d = h.data("/api/v1/query?query=0%2F0&time=0").await;
    assert_eq!(d["result"][1], "NaN");
}

#[tokio::test]
async fn instant_query_default_time_is_now() {
    let h = harness();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let d = h.data("/api/v1/query?query=time()").await;
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let t = d["result"][0].as_f64().unwrap();
    assert!(
        t >= before - 0.001 && t <= after + 0.001,
        "{t} not in [{before}, {after}]"
    );
}

#[tokio::test]
async fn range_query_matrix() {
    let h = harness();
    let start = T0 as f64 / 1000.0;
    let d = h
        .data(&format!(
            "/api/v1/query_range?query=ramp&start={start}&end={}&step=15s",
            start + 60.0
        ))
        .await;
    assert_eq!(
        d,
        json!({
            "resultType": "matrix",
            "result": [{
                "metric": {"__name__": "ramp", "a.b": "dotted", "job": "node"},
                "values": [
                    [1435781430.781, "10"], [1435781445.781, "11"], [1435781460.781, "12"],
                    [1435781475.781, "13"], [1435781490.781, "14"],
                ],
            }],
        })
    );
    // Float step and form POST give the same answer.
    let r = h
        .post_form(
            "/api/v1/query_range",
            &format!(
                "query=ramp&start={}&end={}&step=15.0",
                enc("2015-07-01T20:10:30.781Z"),
                start + 60.0
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["data"], d);
}

#[tokio::test]
async fn query_errors_from_the_engine() {
    let h = harness();
    let r = h.get("/api/v1/query?query=sum(").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": "),
        "{}",
        r.body
    );
    // Range queries report parse errors without the parameter prefix.
    let r = h
        .get("/api/v1/query_range?query=sum(&start=0&end=10&step=1")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        !v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter"),
        "{}",
        r.body
    );
    let r = h.get("/api/v1/query?query=").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[tokio::test]
async fn limit_parameter() {
    let h = harness();
    let r = h.get("/api/v1/label/job/values?limit=2").await;
    let v = r.json();
    assert_eq!(v["data"], json!(["archive", "node"]));
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    let v = h.get("/api/v1/labels?limit=4").await.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 4);
    assert!(v.get("warnings").is_none(), "{v}");
    let v = h
        .get(&format!(
            "/api/v1/series?match[]={}&limit=1",
            enc("{job=\"node\"}")
        ))
        .await
        .json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    let v = h
        .get(&format!(
            "/api/v1/series?match[]={}&match[]={}&limit=2",
            enc("up"),
            enc("tiny")
        ))
        .await
        .json();
    assert_eq!(
        v["data"],
        json!([
            {"__name__": "tiny", "job": "node"},
            {"__name__": "up", "instance": "localhost:9090", "job": "prometheus"},
        ])
    );
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    h.expect_error(
        h.get("/api/v1/labels?limit=-1").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"limit\": limit must be non-negative",
    )
    .await;
    h.expect_error(
        h.get("/api/v1/series?match[]=up&limit=x").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"limit\": strconv.Atoi: parsing \"x\": invalid syntax",
    )
    .await;
}

/// Sleeps in every `querier` call and records how many ran at once.
struct SlowStorage {
    inner: MemStorage,
    delay: StdDuration,
    running: std::sync::atomic::AtomicUsize,
    max_running: std::sync::atomic::AtomicUsize,
}

impl Queryable for SlowStorage {
    fn querier(&self, mint: Timestamp, maxt: Timestamp) -> Result<Box<dyn Querier>, StorageError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.inner.querier(mint, maxt)
    }
}

fn slow(delay_ms: u64) -> Arc<SlowStorage> {
    Arc::new(SlowStorage {
        inner: sample_storage(),
        delay: StdDuration::from_millis(delay_ms),
        running: Default::default(),
        max_running: Default::default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_parameter() {
    let h = harness_with(slow(400), 0);
    h.expect_error(
        h.get("/api/v1/query?query=up&time=1435781451&timeout=0.05")
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "query timed out in expression evaluation",
    )
    .await;
    h.expect_error(
        h.get("/api/v1/query_range?query=up&start=0&end=60&step=15&timeout=50ms")
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "query timed out in expression evaluation",
    )
    .await;
    // A generous timeout lets the same query finish.
    let d = h
        .data("/api/v1/query?query=up&time=1435781451&timeout=30s")
        .await;
    assert_eq!(d["result"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_serialises_queries() {
    for (limit, want_serial) in [(1, true), (0, false)] {
        let storage = slow(100);
        let h = harness_with(storage.clone(), limit);
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let app = h.app.clone();
                tokio::spawn(async move {
                    let req = Request::get("/api/v1/query?query=up&time=1435781451")
                        .body(Body::empty())
                        .unwrap();
                    app.oneshot(req).await.unwrap().status()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::OK);
        }
        let max = storage.max_running.load(Ordering::SeqCst);
        assert_eq!(max == 1, want_serial, "limit {limit}: {max} ran at once");
    }
}

// ---- format_query, parse_query, exemplars, metadata, status ----

#[tokio::test]
async fn format_and_parse_query() {
    let h = harness();
    let d = h
        .data(&format!(
            "/api/v1/format_query?query={}",
            enc("sum  by(job)(rate(x[5m]))")
        ))
        .await;
    assert_eq!(d, json!("sum by (job) (rate(x[5m]))"));
    let d = h
        .data(&format!(
            "/api/v1/parse_query?query={}",
            enc("up{job=\"a\"} offset 5m")
        ))
        .await;
    assert_eq!(
        d,
        json!({
            "type": "vectorSelector",
            "name": "up",
            "offset": 300000,
            "offsetExpr": null,
            "matchers": [
                {"name": "job", "value": "a", "type": "="},
                {"name": "__name__", "value": "up", "type": "="}
            ],
            "timestamp": null,
            "startOrEnd": null,
            "anchored": false,
            "smoothed": false
        })
    );
    for ep in ["format_query", "parse_query"] {
        let r = h.get(&format!("/api/v1/{ep}?query={}", enc("sum("))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let v = r.json();
        assert_eq!(v["errorType"], "bad_data");
        assert!(
            v["error"].as_str().unwrap().starts_with(
                "invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"
            ),
            "{v}"
        );
    }
}

#[tokio::test]
async fn exemplars_are_empty() {
    let h = harness();
    let d = h
        .data(&format!(
            "/api/v1/query_exemplars?query={}",
            enc("rate(x[5m])")
        ))
        .await;
    assert_eq!(d, json!([]));
    // No selectors: 204 No Content, as Prometheus.
    let r = h.get("/api/v1/query_exemplars?query=1%2B1").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.body, "");
    h.expect_error(
        h.get("/api/v1/query_exemplars?query=up&start=10&end=5")
            .await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "end timestamp must not be before start timestamp",
    )
    .await;
    let r = h.get("/api/v1/query_exemplars?query=sum(").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// An exemplar store answering one series and recording what it was asked.
#[derive(Default)]
struct FixedExemplars {
    asked: std::sync::Mutex<Vec<(i64, i64, String)>>,
}

impl pharos_storage::ExemplarQueryable for FixedExemplars {
    fn select_exemplars(
        &self,
        start: i64,
        end: i64,
        matcher_sets: &[Vec<pharos_model::Matcher>],
    ) -> Result<Vec<pharos_storage::SeriesExemplars>, pharos_storage::StorageError> {
        let sets: Vec<String> = matcher_sets
            .iter()
            .map(|s| {
                s.iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        self.asked
            .lock()
            .unwrap()
            .push((start, end, sets.join(" | ")));
        let e = pharos_storage::Exemplar {
            labels: Labels::from_pairs(&[("trace_id", "EpTxMJ40fUus7aGY")]),
            value: 6.0,
            ts: 1_600_096_945_479,
            has_ts: true,
        };
        Ok(vec![(
            Labels::from_pairs(&[
                ("__name__", "test_exemplar_metric_total"),
                ("job", "prometheus"),
            ]),
            vec![e],
        )])
    }
}

#[tokio::test]
async fn exemplars_from_the_store() {
    let store = Arc::new(FixedExemplars::default());
    let h = harness_full(Arc::new(sample_storage()), 4, Some(store.clone()));
    let d = h
        .data(&format!(
            "/api/v1/query_exemplars?query={}&start=1600096945&end=1600096946.5",
            enc("rate(test_exemplar_metric_total{job=~\"p.*\"}[5m]) + up")
        ))
        .await;
    assert_eq!(
        d,
        json!([{
            "seriesLabels": {"__name__": "test_exemplar_metric_total", "job": "prometheus"},
            "exemplars": [{"labels": {"trace_id": "EpTxMJ40fUus7aGY"}, "value": "6", "timestamp": 1600096945.479}]
        }])
    );
    assert_eq!(
        store.asked.lock().unwrap().as_slice(),
        &[(
            1_600_096_945_000,
            1_600_096_946_500,
            "__name__=\"test_exemplar_metric_total\",job=~\"p.*\" | __name__=\"up\"".to_string()
        )]
    );
    // No selectors: the store is not asked and there is no data.
    let r = h.get("/api/v1/query_exemplars?query=1%2B1").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(store.asked.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn metadata_endpoints() {
    let h = harness();
    let d = h.data("/api/v1/metadata").await;
    assert_eq!(
        d,
        json!({
            "go_goroutines": [
                {"type": "gauge", "help": "Goroutines, other text.", "unit": ""},
                {"type": "gauge", "help": "Number of goroutines.", "unit": ""}
            ],
            "up_total": [{"type": "counter", "help": "Ups.", "unit": ""}]
        })
    );
    let d = h.data("/api/v1/metadata?limit=1&limit_per_metric=1").await;
    assert_eq!(d.as_object().unwrap().len(), 1);
    assert_eq!(d["go_goroutines"].as_array().unwrap().len(), 1);
    let d = h.data("/api/v1/metadata?metric=up_total").await;
    assert_eq!(d.as_object().unwrap().len(), 1);
    h.expect_error(
        h.get("/api/v1/metadata?limit=x").await,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "limit must be a number",
    )
    .await;

    let d = h.data("/api/v1/targets/metadata").await;
    assert_eq!(d.as_array().unwrap().len(), 3);
    assert_eq!(
        d[0],
        json!({
            "target": {"instance": "n1:9100", "job": "node"},
            "metric": "go_goroutines",
            "type": "gauge",
            "help": "Number of goroutines.",
            "unit": ""
        })
    );
    let d = h
        .data(&format!(
            "/api/v1/targets/metadata?metric=go_goroutines&match_target={}",
            enc("{instance=\"n2:9100\"}")
        ))
        .await;
    assert_eq!(
        d,
        json!([{
            "target": {"instance": "n2:9100", "job": "node"},
            "type": "gauge",
            "help": "Goroutines, other text.",
            "unit": ""
        }])
    );
    let d = h.data("/api/v1/targets/metadata?limit=1").await;
    assert_eq!(
        d.as_array().unwrap().len(),
        2,
        "limit is checked per target"
    );
    let r = h.get("/api/v1/targets/metadata?match_target=%7B").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn flags_and_runtime_info() {
    let h = harness();
    let d = h.data("/api/v1/status/flags").await;
    assert_eq!(
        d,
        json!({"query.timeout": "2m", "web.enable-lifecycle": "false"})
    );
    let d = h.data("/api/v1/status/runtimeinfo").await;
    assert_eq!(d["startTime"], "2023-11-14T22:13:20Z");
    assert_eq!(d["CWD"], "/data");
    assert_eq!(d["reloadConfigSuccess"], true);
    assert_eq!(d["lastConfigTime"], "2023-11-14T22:13:21Z");
    assert_eq!(d["storageRetention"], "15d");
    assert!(d["GOMAXPROCS"].as_u64().unwrap() >= 1);
    assert!(d["goroutineCount"].as_u64().unwrap() >= 1);
    assert!(d["hostname"].is_string());
}

#[tokio::test]
async fn query_limit_lookback_and_stats() {
    let h = harness();
    let v = h
        .get("/api/v1/query?query=up&time=1435781451&limit=1")
        .await
        .json();
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    let v = h
        .get("/api/v1/query_range?query=up&start=1435781400&end=1435781460&step=15&limit=1")
        .await
        .json();
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    // A one-second lookback finds nothing 30s after the last sample.
    let d = h
        .data("/api/v1/query?query=tiny&time=1435781481&lookback_delta=1s")
        .await;
    assert_eq!(d["result"], json!([]));
    let r = h
        .get("/api/v1/query?query=tiny&time=1435781451&lookback_delta=x")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("error parsing lookback delta duration")
    );
    // Stats: timings and samples; absent without the parameter.
    let d = h
        .data("/api/v1/query?query=sum(ramp)&time=1435781451&stats=all")
        .await;
    let st = &d["stats"];
    for k in [
        "evalTotalTime",
        "resultSortTime",
        "queryPreparationTime",
        "innerEvalTime",
        "execQueueTime",
        "execTotalTime",
    ] {
        assert!(st["timings"][k].is_f64(), "{k}: {st}");
    }
    assert!(st["samples"]["totalQueryableSamples"].as_u64().unwrap() > 0);
    assert!(st["samples"]["peakSamples"].as_u64().unwrap() > 0);
    let d = h
        .data("/api/v1/query?query=sum(ramp)&time=1435781451")
        .await;
    assert!(d.get("stats").is_none());
    let v = h
        .get("/api/v1/query?query=sum(ramp)&time=1435781451&stats=yes")
        .await
        .json();
    assert!(v["warnings"][0].as_str().unwrap().contains("deprecated"));
}

/// Yields `n` series, sleeping a little per series, and counts how many
/// were pulled: a canceled query stops pulling.
struct DripStorage {
    n: usize,
    pulled: Arc<std::sync::atomic::AtomicUsize>,
}

struct DripQuerier(usize, Arc<std::sync::atomic::AtomicUsize>);

struct DripSet {
    left: usize,
    pulled: Arc<std::sync::atomic::AtomicUsize>,
}

impl Queryable for DripStorage {
    fn querier(&self, _: Timestamp, _: Timestamp) -> Result<Box<dyn Querier>, StorageError> {
        Ok(Box::new(DripQuerier(self.n, self.pulled.clone())))
    }
}

impl Querier for DripQuerier {
    fn select(
        &self,
        _: bool,
        _: Option<&pharos_storage::SelectHints>,
        _: &[Matcher],
    ) -> Box<dyn pharos_storage::SeriesSet> {
        Box::new(DripSet {
            left: self.0,
            pulled: self.1.clone(),
        })
    }
    fn label_values(&self, _: &str, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn label_names(&self, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

impl pharos_storage::SeriesSet for DripSet {
    fn next(&mut self) -> Option<pharos_storage::Series> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        std::thread::sleep(StdDuration::from_micros(200));
        let i = self.pulled.fetch_add(1, Ordering::SeqCst);
        Some(pharos_storage::Series {
            labels: Labels::from_pairs(&[("__name__", "d"), ("i", &i.to_string())]),
            samples: Box::new(pharos_storage::VecSampleIter::new(vec![Sample {
                t: 0,
                v: 1.0,
            }])),
        })
    }
    fn err(&self) -> Option<StorageError> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_and_timed_out_queries_stop_evaluating() {
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Unbounded, the query would pull for about 200s.
    let storage = Arc::new(DripStorage {
        n: 1_000_000,
        pulled: pulled.clone(),
    });
    let h = harness_with(storage, 1);
    let stops = || async {
        // The count stops growing once the engine saw the cancel flag.
        let mut last = pulled.load(Ordering::SeqCst);
        for _ in 0..100 {
            tokio::time::sleep(StdDuration::from_millis(300)).await;
            let now = pulled.load(Ordering::SeqCst);
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the query kept evaluating");
    };
    // 1. The timeout parameter.
    h.expect_error(
        h.get("/api/v1/query?query=count(d)&time=0&timeout=100ms")
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "query timed out in expression evaluation",
    )
    .await;
    let n = stops().await;
    assert!(n < 1_000_000, "{n}");
    // 2. A client that goes away.
    let app = h.app.clone();
    let req = tokio::spawn(async move {
        let req = Request::get("/api/v1/query?query=count(d)&time=0")
            .body(Body::empty())
            .unwrap();
        app.oneshot(req).await
    });
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    req.abort();
    let m = stops().await;
    assert!(m > n && m < 1_000_000, "{n} {m}");
    // The single query slot is free again.
    let d = h.data("/api/v1/query?query=1&time=0").await;
    assert_eq!(d["result"][1], "1");
}

#[test]
fn api_error_statuses_are_prometheus_3s() {
    use crate::ApiError;
    let cases = [
        (ApiError::BadData(String::new()), 400, "bad_data"),
        (ApiError::Execution(String::new()), 422, "execution"),
        (ApiError::Timeout(String::new()), 503, "timeout"),
        (ApiError::Canceled(String::new()), 499, "canceled"),
        (ApiError::Internal(String::new()), 500, "internal"),
        (ApiError::NotFound(String::new()), 404, "not_found"),
        (ApiError::Unavailable(String::new()), 503, "unavailable"),
    ];
    for (e, code, typ) in cases {
        assert_eq!(e.status().as_u16(), code, "{typ}");
        assert_eq!(e.error_type(), typ);
    }
}
