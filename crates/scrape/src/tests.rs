//! End-to-end tests of the scrape subsystem against a real local HTTP
//! server, plus direct tests of the append stage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Response};

use parking_lot::Mutex;
use pharos_model::{Labels, is_stale_nan};
use pharos_storage::{AppendError, Appendable, Appender, SeriesRef, StorageError};

use crate::append::{AppendCtx, process_scrape};
use crate::cache::ScrapeCache;
use crate::fetch::Fetched;
use crate::metrics::Metrics;
use crate::target::Target;
use crate::{Health, ScrapeError, ScrapeManager, ScrapeOptions};

// ---------------------------------------------------------------------------
// A recording storage: committed samples in order, Prometheus-like
// out-of-order and duplicate rules, and a check that cached references are
// the ones it handed out.

#[derive(Default)]
struct RecInner {
    refs: HashMap<Labels, u64>,
    last: HashMap<u64, (i64, u64)>,
    samples: Vec<(Labels, i64, f64)>,
    /// The reference passed with each append call.
    passed_refs: Vec<u64>,
    commits: usize,
    rollbacks: usize,
}

#[derive(Clone, Default)]
struct RecStorage(Arc<Mutex<RecInner>>);

struct RecAppender<'a> {
    s: &'a RecStorage,
    pending: Vec<(u64, Labels, i64, f64)>,
}

impl Appendable for RecStorage {
    fn appender(&self) -> Box<dyn Appender + Send + '_> {
        Box::new(RecAppender {
            s: self,
            pending: Vec::new(),
        })
    }
}

impl Appender for RecAppender<'_> {
    fn append(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        let mut g = self.s.0.lock();
        g.passed_refs.push(series_ref);
        let next = g.refs.len() as u64 + 1;
        let id = *g.refs.entry(labels.clone()).or_insert(next);
        assert!(
            series_ref == 0 || series_ref == id,
            "stale reference {series_ref} for {labels} (is {id})"
        );
        let last = self
            .pending
            .iter()
            .rev()
            .find(|p| p.0 == id)
            .map(|p| (p.2, p.3.to_bits()))
            .or_else(|| g.last.get(&id).copied());
        if let Some((lt, lv)) = last {
            if t < lt {
                return Err(AppendError::OutOfOrder);
            }
            if t == lt {
                return if lv == v.to_bits() {
                    Ok(id)
                } else {
                    Err(AppendError::Duplicate)
                };
            }
        }
        self.pending.push((id, labels.clone(), t, v));
        Ok(id)
    }

    fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let mut g = self.s.0.lock();
        g.commits += 1;
        for (id, l, t, v) in self.pending {
            g.last.insert(id, (t, v.to_bits()));
            g.samples.push((l, t, v));
        }
        Ok(())
    }

    fn rollback(self: Box<Self>) {
        self.s.0.lock().rollbacks += 1;
    }
}

impl RecStorage {
    /// Committed samples of metric `name`, in append order.
    fn series(&self, name: &str) -> Vec<(Labels, i64, f64)> {
        self.0
            .lock()
            .samples
            .iter()
            .filter(|s| s.0.metric_name() == Some(name))
            .cloned()
            .collect()
    }
    fn values(&self, name: &str) -> Vec<f64> {
        self.series(name).into_iter().map(|s| s.2).collect()
    }
    fn last_value(&self, name: &str) -> Option<f64> {
        self.values(name).last().copied()
    }
    fn count(&self) -> usize {
        self.0.lock().samples.len()
    }
}

// ---------------------------------------------------------------------------
// A fixture HTTP server whose page the test changes on the fly.

#[derive(Clone)]
struct Page {
    status: u16,
    body: Vec<u8>,
    content_type: Option<String>,
    gzip: bool,
    delay: Duration,
}

impl Page {
    fn text(body: &str) -> Page {
        Page {
            status: 200,
            body: body.as_bytes().to_vec(),
            content_type: Some("text/plain; version=0.0.4; charset=utf-8".to_string()),
            gzip: false,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Clone)]
struct Fixture {
    page: Arc<Mutex<Page>>,
    headers: Arc<Mutex<Option<HeaderMap>>>,
    /// The `Connection` header of every request, in order.
    connection: Arc<Mutex<Vec<Option<String>>>>,
    hits: Arc<AtomicUsize>,
    addr: SocketAddr,
}

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn handler(State(f): State<Fixture>, headers: HeaderMap) -> Response<Body> {
    f.connection.lock().push(
        headers
            .get("connection")
            .map(|v| v.to_str().unwrap_or("?").to_string()),
    );
    *f.headers.lock() = Some(headers);
    f.hits.fetch_add(1, Ordering::SeqCst);
    let p = f.page.lock().clone();
    if !p.delay.is_zero() {
        tokio::time::sleep(p.delay).await;
    }
    let mut r = Response::builder().status(p.status);
    if let Some(ct) = &p.content_type {
        r = r.header("content-type", ct.as_str());
    }
    let body = if p.gzip {
        r = r.header("content-encoding", "gzip");
        gz(&p.body)
    } else {
        p.body
    };
    r.body(Body::from(body)).unwrap()
}

async fn serve(page: Page) -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = Fixture {
        page: Arc::new(Mutex::new(page)),
        headers: Arc::new(Mutex::new(None)),
        connection: Arc::new(Mutex::new(Vec::new())),
        hits: Arc::new(AtomicUsize::new(0)),
        addr,
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(handler))
        .with_state(f.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    f
}

impl Fixture {
    fn set(&self, p: Page) {
        *self.page.lock() = p;
    }
}

fn config(yaml: &str) -> pharos_config::Config {
    pharos_config::load_str(yaml, "test.yml").unwrap()
}

/// A one-job config scraping `addrs` every 100ms; `extra` is appended to the
/// job (indented by the caller's text).
fn job(name: &str, addrs: &[SocketAddr], extra: &str) -> String {
    let targets: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
    format!(
        "  - job_name: {name}\n    scrape_interval: 100ms\n    scrape_timeout: 80ms\n{extra}    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

fn manager(storage: &RecStorage) -> ScrapeManager {
    ScrapeManager::new(
        Arc::new(storage.clone()),
        ScrapeOptions {
            skip_offset: true,
            ..ScrapeOptions::default()
        },
    )
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn get<'a>(l: &'a Labels, n: &str) -> &'a str {
    l.get(n).unwrap_or("")
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn up_synthetic_series_and_headers() {
    let f = serve(Page::text("a 1\nb{x=\"y\"} 2\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], "")
    )));
    wait_for("two scrapes", || st.values("up").len() >= 2).await;

    let inst = f.addr.to_string();
    let a = st.series("a");
    assert_eq!(get(&a[0].0, "job"), "j");
    assert_eq!(get(&a[0].0, "instance"), inst);
    assert_eq!(a[0].0.len(), 3, "only __name__, instance, job: {}", a[0].0);
    assert_eq!(a[0].2, 1.0);
    assert_eq!(get(&st.series("b")[0].0, "x"), "y");
    let up = st.series("up");
    assert_eq!(up[0].2, 1.0);
    assert_eq!(get(&up[0].0, "job"), "j");
    assert_eq!(get(&up[0].0, "instance"), inst);
    // The report series share the scrape timestamp with the samples.
    assert_eq!(up[0].1, a[0].1);
    assert_eq!(st.values("scrape_samples_scraped")[0], 2.0);
    assert_eq!(st.values("scrape_samples_post_metric_relabeling")[0], 2.0);
    let added = st.values("scrape_series_added");
    assert_eq!(
        &added[..2],
        &[2.0, 0.0],
        "new series only on the first scrape"
    );
    let d = st.values("scrape_duration_seconds")[0];
    assert!(d > 0.0 && d < 1.0, "{d}");
    // Scrapes are an interval apart (a loaded machine may skip a tick).
    let dt = up[1].1 - up[0].1;
    assert!((90..=1000).contains(&dt), "{dt}");

    let h = f.headers.lock().clone().unwrap();
    assert_eq!(
        h.get("accept").unwrap().to_str().unwrap(),
        pharos_exposition::SCRAPE_ACCEPT_HEADER
    );
    assert_eq!(h.get("accept-encoding").unwrap(), "gzip");
    assert_eq!(
        h.get("x-prometheus-scrape-timeout-seconds").unwrap(),
        "0.08"
    );
    assert!(
        h.get("user-agent")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("pharos/")
    );

    let ts = m.targets();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].health, Health::Up);
    assert_eq!(ts[0].last_error, "");
    assert_eq!(ts[0].scrape_url, format!("http://{inst}/metrics"));
    assert_eq!(ts[0].scrape_pool, "j");
    assert!(ts[0].last_scrape.is_some());
    assert_eq!(ts[0].scrape_interval, pharos_model::Duration(100));
    assert_eq!(get(&ts[0].labels, "instance"), inst);
    assert!(!ts[0].labels.has("__address__"));
    assert_eq!(get(&ts[0].discovered_labels, "__address__"), inst);
    m.stop().await;
}

#[tokio::test]
async fn large_pages_do_not_keep_the_connection() {
    let f = serve(Page::text("a 1\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], "")
    )));
    let since = |f: &Fixture, n: usize| f.connection.lock()[n..].to_vec();
    let close = Some("close".to_string());
    wait_for("three scrapes", || f.hits.load(Ordering::SeqCst) >= 3).await;
    // The first request does not know the page's size yet and closes; a
    // small page keeps the connection afterwards.
    let seen = since(&f, 0);
    assert_eq!(seen[0], close);
    assert_eq!(seen[1..], [None, None]);
    // A page past the keep-alive size: the scrapes after the first one
    // that received it ask to close.
    let big: String = (0..2000).map(|i| format!("big_{i} {i}\n")).collect();
    assert!(big.len() > crate::fetch::KEEP_ALIVE_MAX_BODY);
    f.set(Page::text(&big));
    wait_for("big page stored", || !st.values("big_1999").is_empty()).await;
    let n = f.hits.load(Ordering::SeqCst);
    wait_for("two more scrapes", || {
        f.hits.load(Ordering::SeqCst) >= n + 2
    })
    .await;
    assert_eq!(since(&f, n)[..2], [close.clone(), close.clone()]);
    assert_eq!(st.last_value("up"), Some(1.0));
    // Back to a small page: connections are kept again.
    f.set(Page::text("a 1\n"));
    wait_for("small page stored", || {
        st.series("big_1999")
            .last()
            .is_some_and(|s| pharos_model::is_stale_nan(s.2))
    })
    .await;
    let n = f.hits.load(Ordering::SeqCst);
    wait_for("two more scrapes", || {
        f.hits.load(Ordering::SeqCst) >= n + 2
    })
    .await;
    assert_eq!(since(&f, n)[..2], [None, None]);
    m.stop().await;
}

#[tokio::test]
async fn failures_set_up_zero_and_last_error() {
    // 404.
    let mut p = Page::text("a 1\n");
    p.status = 404;
    let f404 = serve(p).await;
    // Slower than the timeout.
    let mut p = Page::text("a 1\n");
    p.delay = Duration::from_millis(500);
    let fslow = serve(p).await;
    // Nobody listening.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}{}{}",
        job("nf", &[f404.addr], ""),
        job("slow", &[fslow.addr], ""),
        job("refused", &[refused], "")
    )));
    wait_for("all targets scraped", || {
        m.targets().iter().all(|t| t.health == Health::Down)
    })
    .await;
    let by_job: HashMap<String, String> = m
        .targets()
        .into_iter()
        .map(|t| (t.scrape_pool, t.last_error))
        .collect();
    assert_eq!(by_job["nf"], "server returned HTTP status 404 Not Found");
    assert!(
        by_job["slow"].ends_with("context deadline exceeded"),
        "{}",
        by_job["slow"]
    );
    assert!(by_job["slow"].starts_with(&format!("Get \"http://{}/metrics\"", fslow.addr)));
    assert!(
        by_job["refused"].contains("connection refused"),
        "{}",
        by_job["refused"]
    );
    for s in st.series("up") {
        assert_eq!(s.2, 0.0, "{}", s.0);
    }
    assert!(st.series("a").is_empty());
    assert_eq!(st.values("scrape_samples_scraped")[0], 0.0);
    // The slow scrape's duration reflects the timeout.
    let slow_dur = st
        .series("scrape_duration_seconds")
        .into_iter()
        .find(|s| get(&s.0, "job") == "slow")
        .unwrap()
        .2;
    assert!((0.07..2.0).contains(&slow_dur), "{slow_dur}");
    m.stop().await;
}

#[tokio::test]
async fn honor_labels_both_ways() {
    let page = "m{job=\"other\",instance=\"i2\",exported_job=\"z\",k=\"v\"} 1\n";
    let f = serve(Page::text(page)).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}{}",
        job("plain", &[f.addr], ""),
        job("honor", &[f.addr], "    honor_labels: true\n")
    )));
    wait_for("both jobs", || st.values("up").len() >= 2).await;
    let ms = st.series("m");
    let plain = ms.iter().find(|s| get(&s.0, "job") == "plain").unwrap();
    assert_eq!(get(&plain.0, "instance"), f.addr.to_string());
    assert_eq!(get(&plain.0, "exported_instance"), "i2");
    // `exported_job` was taken by the page, so the clash moves one further.
    assert_eq!(get(&plain.0, "exported_job"), "z");
    assert_eq!(get(&plain.0, "exported_exported_job"), "other");
    assert_eq!(get(&plain.0, "k"), "v");
    let honor = ms.iter().find(|s| get(&s.0, "job") == "other").unwrap();
    assert_eq!(get(&honor.0, "instance"), "i2");
    assert!(!honor.0.has("exported_instance"));
    m.stop().await;
}

#[tokio::test]
async fn metric_relabel_drop() {
    let f = serve(Page::text("drop_me 1\nkeep_me 2\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    let extra = "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: drop_.*\n        action: drop\n";
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], extra)
    )));
    wait_for("two scrapes", || st.values("up").len() >= 2).await;
    assert!(st.series("drop_me").is_empty());
    assert_eq!(st.values("keep_me")[0], 2.0);
    assert_eq!(st.values("scrape_samples_scraped")[..2], [2.0, 2.0]);
    assert_eq!(
        st.values("scrape_samples_post_metric_relabeling")[..2],
        [1.0, 1.0]
    );
    assert_eq!(st.values("up")[..2], [1.0, 1.0]);
    m.stop().await;
}

#[tokio::test]
async fn sample_limit_rolls_back_and_marks_stale() {
    let f = serve(Page::text("a 1\nb 2\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], "    sample_limit: 2\n")
    )));
    wait_for("a good scrape", || st.last_value("up") == Some(1.0)).await;
    f.set(Page::text("a 1\nb 2\nc 3\n"));
    wait_for("a limited scrape", || st.last_value("up") == Some(0.0)).await;
    let t = &m.targets()[0];
    assert_eq!(t.health, Health::Down);
    assert_eq!(t.last_error, "sample limit exceeded");
    // Nothing of the limited page was kept; what it replaced went stale.
    assert!(st.series("c").is_empty());
    assert!(st.values("a").iter().any(|v| is_stale_nan(*v)));
    assert!(st.values("b").iter().any(|v| is_stale_nan(*v)));
    assert_eq!(st.last_value("scrape_samples_scraped"), Some(3.0));
    let mut out = String::new();
    m.write_metrics(&mut out);
    assert!(
        out.lines().any(
            |l| l.starts_with("pharos_target_scrapes_exceeded_sample_limit_total ")
                && !l.ends_with(" 0")
        ),
        "{out}"
    );
    // Back under the limit: up again, `a` and `b` come back.
    f.set(Page::text("a 5\nb 6\n"));
    wait_for("recovery", || st.last_value("a") == Some(5.0)).await;
    m.stop().await;
}

#[tokio::test]
async fn staleness_when_a_series_leaves_and_when_the_target_fails() {
    let f = serve(Page::text("a 1\nb 2\nc 3 1700000000000\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], "")
    )));
    wait_for("b scraped", || !st.series("b").is_empty()).await;
    f.set(Page::text("a 1\n"));
    wait_for("b stale", || st.last_value("b").is_some_and(is_stale_nan)).await;
    // The marker carries the timestamp of the scrape that missed `b`.
    let b_stale = st.series("b").last().unwrap().1;
    let ups = st.series("up");
    assert!(ups.iter().any(|u| u.1 == b_stale && u.2 == 1.0));
    assert!(!st.values("a").iter().any(|v| is_stale_nan(*v)));
    // `c` carried its own timestamp: never marked stale.
    assert!(!st.values("c").iter().any(|v| is_stale_nan(*v)));
    assert_eq!(st.series("c")[0].1, 1_700_000_000_000);

    let mut p = Page::text("");
    p.status = 500;
    f.set(p);
    wait_for("a stale", || st.last_value("a").is_some_and(is_stale_nan)).await;
    assert_eq!(st.last_value("up"), Some(0.0));
    assert_eq!(
        m.targets()[0].last_error,
        "server returned HTTP status 500 Internal Server Error"
    );
    // Only one stale marker per series.
    let n = st.values("a").iter().filter(|v| is_stale_nan(**v)).count();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        st.values("a").iter().filter(|v| is_stale_nan(**v)).count(),
        n
    );
    m.stop().await;
}

#[tokio::test]
async fn gzip_body() {
    let mut p = Page::text("zipped{a=\"b\"} 42\n");
    p.gzip = true;
    let f = serve(p).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], "")
    )));
    wait_for("scrape", || !st.values("up").is_empty()).await;
    assert_eq!(st.values("zipped"), vec![42.0]);
    assert_eq!(st.values("up")[0], 1.0);
    m.stop().await;
}

#[tokio::test]
async fn body_size_limit() {
    let page = "some_metric_with_a_long_name 1\n".repeat(10);
    let plain = serve(Page::text(&page)).await;
    let mut p = Page::text(&page);
    p.gzip = true;
    let zipped = serve(p).await;
    let small = serve(Page::text("x 1\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    let lim = "    body_size_limit: 100B\n";
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}{}{}",
        job("plain", &[plain.addr], lim),
        job("zipped", &[zipped.addr], lim),
        job("small", &[small.addr], lim)
    )));
    wait_for("three scrapes", || {
        m.targets().iter().all(|t| t.health != Health::Unknown)
    })
    .await;
    for t in m.targets() {
        match t.scrape_pool.as_str() {
            "small" => assert_eq!(t.health, Health::Up),
            _ => {
                assert_eq!(t.health, Health::Down, "{}", t.scrape_pool);
                assert_eq!(t.last_error, "body size limit exceeded");
            }
        }
    }
    assert!(st.series("some_metric_with_a_long_name").is_empty());
    assert_eq!(st.values("x"), vec![1.0]);
    m.stop().await;
}

#[tokio::test]
async fn openmetrics_content_type() {
    // Float-second timestamps only parse as OpenMetrics.
    let mut p = Page::text("# TYPE om counter\nom_total 7 1700000000.5\n# EOF\n");
    p.content_type = Some("application/openmetrics-text; version=1.0.0; charset=utf-8".into());
    let f = serve(p).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], "")
    )));
    wait_for("scrape", || !st.values("up").is_empty()).await;
    assert_eq!(m.targets()[0].last_error, "");
    let om = st.series("om_total");
    assert_eq!(om[0].2, 7.0);
    assert_eq!(om[0].1, 1_700_000_000_500);
    m.stop().await;
}

#[tokio::test]
async fn content_type_rules_of_prometheus_3() {
    // Blank Content-Type: the scrape fails, as in Prometheus 3.
    let mut blank = Page::text("a 1\n");
    blank.content_type = None;
    let f_blank = serve(blank).await;
    // Unsupported Content-Type without a fallback: fails, naming the type.
    let mut json = Page::text("b 1\n");
    json.content_type = Some("application/json".into());
    let f_json = serve(json).await;
    // The same with `fallback_scrape_protocol`: parsed as text.
    let mut json_fb = Page::text("c 1\n");
    json_fb.content_type = Some("application/json".into());
    let f_fb = serve(json_fb).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}{}{}",
        job("blank", &[f_blank.addr], ""),
        job("json", &[f_json.addr], ""),
        job(
            "fb",
            &[f_fb.addr],
            "    fallback_scrape_protocol: PrometheusText0.0.4\n"
        ),
    )));
    wait_for("three scrapes", || st.values("up").len() >= 3).await;
    let by_pool = |p: &str| {
        m.targets()
            .into_iter()
            .find(|t| t.scrape_pool == p)
            .map(|t| t.last_error)
            .unwrap_or_default()
    };
    assert_eq!(
        by_pool("blank"),
        "non-compliant scrape target sending blank Content-Type and no fallback_scrape_protocol specified for target"
    );
    assert_eq!(
        by_pool("json"),
        "received unsupported Content-Type \"application/json\" and no fallback_scrape_protocol specified for target"
    );
    assert_eq!(by_pool("fb"), "");
    assert!(st.series("a").is_empty() && st.series("b").is_empty());
    let c = st.values("c");
    assert!(!c.is_empty() && c.iter().all(|v| *v == 1.0), "{c:?}");
    m.stop().await;
}

#[tokio::test]
async fn honor_timestamps_false_uses_scrape_time() {
    let f = serve(Page::text("old 1 1000\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], "    honor_timestamps: false\n")
    )));
    wait_for("scrape", || !st.values("up").is_empty()).await;
    let old = st.series("old");
    assert_eq!(old[0].1, st.series("up")[0].1);
    m.stop().await;
}

#[tokio::test]
async fn target_labels_params_and_dropped_targets() {
    let f = serve(Page::text("a 1\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    let yaml = format!(
        "scrape_configs:
  - job_name: j
    scrape_interval: 100ms
    scrape_timeout: 80ms
    params:
      module: [m1]
    relabel_configs:
      - source_labels: [__address__]
        regex: 'drop.*'
        action: drop
      - source_labels: [__param_module]
        target_label: module
    static_configs:
      - targets: ['{}', 'drop.example:9']
        labels:
          team: t1
",
        f.addr
    );
    m.apply_config(&config(&yaml));
    wait_for("scrape", || !st.values("up").is_empty()).await;
    let ts = m.targets();
    assert_eq!(ts.len(), 1);
    assert_eq!(
        ts[0].scrape_url,
        format!("http://{}/metrics?module=m1", f.addr)
    );
    assert_eq!(get(&ts[0].labels, "team"), "t1");
    assert_eq!(get(&ts[0].labels, "module"), "m1");
    let a = &st.series("a")[0].0;
    assert_eq!(get(a, "team"), "t1");
    assert_eq!(get(a, "module"), "m1");
    let d = m.dropped_targets();
    assert_eq!(d.len(), 1);
    assert_eq!(
        get(&d[0].discovered_labels, "__address__"),
        "drop.example:9"
    );
    assert_eq!(get(&d[0].discovered_labels, "__scrape_interval__"), "100ms");
    assert_eq!(get(&d[0].discovered_labels, "__param_module"), "m1");
    assert_eq!(get(&d[0].discovered_labels, "job"), "j");
    assert!(d[0].labels.is_empty());
    let q = f.headers.lock().clone();
    assert!(q.is_some());
    m.stop().await;
}

#[tokio::test]
async fn reload_keeps_unchanged_pools_and_stales_removed_targets() {
    let f1 = serve(Page::text("one 1\n")).await;
    let f2 = serve(Page::text("two 2\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    let both = config(&format!(
        "scrape_configs:\n{}{}",
        job("a", &[f1.addr], ""),
        job("b", &[f2.addr], "")
    ));
    m.apply_config(&both);
    wait_for("both", || {
        !st.series("one").is_empty() && !st.series("two").is_empty()
    })
    .await;
    // Same config again: nothing restarts.
    m.apply_config(&both);
    let mut out = String::new();
    m.write_metrics(&mut out);
    assert!(
        out.contains("pharos_target_scrape_pools_total 2\n"),
        "{out}"
    );
    assert!(
        out.contains("pharos_target_scrape_pool_reloads_total 0\n"),
        "{out}"
    );
    // Drop job b: its series go stale about two intervals later.
    let only_a = config(&format!("scrape_configs:\n{}", job("a", &[f1.addr], "")));
    m.apply_config(&only_a);
    assert_eq!(m.targets().len(), 1);
    wait_for("two stale", || {
        st.last_value("two").is_some_and(is_stale_nan)
    })
    .await;
    assert!(st.last_value("up").is_some());
    let b_up: Vec<f64> = st
        .series("up")
        .into_iter()
        .filter(|s| get(&s.0, "job") == "b")
        .map(|s| s.2)
        .collect();
    assert!(b_up.last().is_some_and(|v| is_stale_nan(*v)), "{b_up:?}");
    assert!(!st.values("one").iter().any(|v| is_stale_nan(*v)));
    // Changing only the sample limit of `a` restarts its loop but hands the
    // cache over: no stale marker for `one`, scraping goes on.
    let a_limited = config(&format!(
        "scrape_configs:\n{}",
        job("a", &[f1.addr], "    sample_limit: 100\n")
    ));
    m.apply_config(&a_limited);
    let mut out = String::new();
    m.write_metrics(&mut out);
    assert!(
        out.contains("pharos_target_scrape_pool_reloads_total 1\n"),
        "{out}"
    );
    let n = st.values("one").len();
    wait_for("more scrapes", || st.values("one").len() >= n + 2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!st.values("one").iter().any(|v| is_stale_nan(*v)));
    m.stop().await;
    // Stopping writes stale markers for everything left.
    assert!(st.last_value("one").is_some_and(is_stale_nan));
}

#[tokio::test]
async fn stop_writes_stale_markers_and_is_prompt() {
    let f = serve(Page::text("a 1\n")).await;
    // A target that hangs (well within its long timeout).
    let mut p = Page::text("h 1\n");
    p.delay = Duration::from_secs(5);
    let hanging = serve(p).await;
    let st = RecStorage::default();
    let m = manager(&st);
    let slow_job = job("hang", &[hanging.addr], "")
        .replace("100ms", "10s")
        .replace("80ms", "10s");
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}{}",
        job("j", &[f.addr], ""),
        slow_job
    )));
    wait_for("scrape", || !st.values("up").is_empty()).await;
    wait_for("hanging request", || {
        hanging.hits.load(Ordering::SeqCst) > 0
    })
    .await;
    let t0 = Instant::now();
    m.stop().await;
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(st.last_value("a").is_some_and(is_stale_nan));
    assert!(st.last_value("up").is_some_and(is_stale_nan));
    assert!(
        st.last_value("scrape_duration_seconds")
            .is_some_and(is_stale_nan)
    );
    assert!(st.series("h").is_empty());
    assert!(m.targets().is_empty());
}

#[tokio::test]
async fn stop_is_prompt_while_a_reload_waits_for_a_hanging_loop() {
    let mut p = Page::text("h 1\n");
    p.delay = Duration::from_secs(5);
    let hanging = serve(p).await;
    let st = RecStorage::default();
    let m = manager(&st);
    let slow = |extra: &str| {
        config(&format!(
            "scrape_configs:\n{}",
            job("hang", &[hanging.addr], extra)
                .replace("100ms", "10s")
                .replace("80ms", "10s")
        ))
    };
    m.apply_config(&slow(""));
    wait_for("hanging request", || {
        hanging.hits.load(Ordering::SeqCst) > 0
    })
    .await;
    // A cache-compatible change: the new loop waits for the old one, which
    // is stuck in its request.
    m.apply_config(&slow("    sample_limit: 5\n"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    m.stop().await;
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn own_metrics_parse_as_text_format() {
    let f = serve(Page::text("a 1\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], "")
    )));
    wait_for("two scrapes", || st.values("up").len() >= 2).await;
    let mut out = String::new();
    m.write_metrics(&mut out);
    let mut p =
        pharos_exposition::Parser::new(out.as_bytes(), pharos_exposition::Format::PrometheusText);
    let mut names = Vec::new();
    while let Some(e) = p.next_entry() {
        if let pharos_exposition::Entry::Sample(s) = e.unwrap() {
            names.push((s.metric_name().to_string(), s.labels(), s.value));
        }
    }
    let find = |n: &str| names.iter().find(|x| x.0 == n).cloned();
    assert_eq!(find("pharos_target_scrape_pools_total").unwrap().2, 1.0);
    let t = find("pharos_target_scrape_pool_targets").unwrap();
    assert_eq!(get(&t.1, "scrape_job"), "j");
    assert_eq!(t.2, 1.0);
    assert!(find("pharos_target_scrapes_sample_out_of_order_total").is_some());
    assert!(find("pharos_target_scrapes_exceeded_sample_limit_total").is_some());
    assert_eq!(
        find("pharos_target_sync_length_seconds_count").unwrap().2,
        1.0
    );
    let il = find("pharos_target_interval_length_seconds_count").unwrap();
    assert_eq!(get(&il.1, "interval"), "100ms");
    assert!(il.2 >= 1.0);
    m.stop().await;
}

// ---------------------------------------------------------------------------
// The append stage on its own.

fn test_target(pairs: &[(&str, &str)]) -> Target {
    let mut all = vec![
        ("__address__", "h:1"),
        ("__scheme__", "http"),
        ("__metrics_path__", "/metrics"),
        ("__scrape_interval__", "1s"),
        ("__scrape_timeout__", "1s"),
        ("job", "j"),
        ("instance", "h:1"),
    ];
    all.extend_from_slice(pairs);
    let l = Labels::from_pairs(&all);
    Target::new("j", l.clone(), l, &Default::default()).unwrap()
}

fn settings() -> crate::append::PoolSettings {
    crate::append::PoolSettings {
        honor_labels: false,
        honor_timestamps: true,
        sample_limit: 0,
        label_limit: 0,
        label_name_length_limit: 0,
        label_value_length_limit: 0,
        body_size_limit: 0,
        metric_relabel_configs: Vec::new(),
        extra_metrics: false,
        accept_header: String::new(),
        accept_encoding: "gzip",
        fallback_format: None,
        convert_classic_histograms_to_nhcb: false,
        always_scrape_classic_histograms: false,
        native_histograms: true,
        native_histogram_bucket_limit: 0,
        native_histogram_max_schema: 8,
    }
}

fn page(body: &str) -> Result<Fetched, ScrapeError> {
    Ok(Fetched {
        body: body.as_bytes().to_vec(),
        gzip: false,
        content_type: Some("text/plain; version=0.0.4".to_string()),
    })
}

#[test]
fn steady_state_scrapes_append_by_reference() {
    let st = RecStorage::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let s = settings();
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    let body = "a 1\nb{x=\"1\"} 2\nc 3\n";
    let r = process_scrape(&st, &mut cache, &ctx, page(body), 1000, Instant::now());
    assert!(r.err.is_none());
    assert_eq!(r.counts.series_added, 3);
    st.0.lock().passed_refs.clear();
    let r = process_scrape(&st, &mut cache, &ctx, page(body), 2000, Instant::now());
    assert!(r.err.is_none());
    assert_eq!(r.counts.series_added, 0);
    // Every append of the second scrape (samples and report) used a cached
    // reference: no label set was looked up or rebuilt.
    let refs = st.0.lock().passed_refs.clone();
    assert_eq!(refs.len(), 3 + 5);
    assert!(refs.iter().all(|r| *r != 0), "{refs:?}");
}

#[test]
fn duplicates_within_a_page_are_counted_not_fatal() {
    let st = RecStorage::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let s = settings();
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    let r = process_scrape(
        &st,
        &mut cache,
        &ctx,
        page("a 1\na 2\n"),
        1000,
        Instant::now(),
    );
    assert!(r.err.is_none());
    process_scrape(
        &st,
        &mut cache,
        &ctx,
        page("a 1\na 2\n"),
        2000,
        Instant::now(),
    );
    assert!(metrics.sample_duplicate.load(Ordering::Relaxed) >= 1);
    assert_eq!(st.values("a"), vec![1.0, 1.0]);
    // An older explicit timestamp is out of order: counted, scrape fine.
    let r = process_scrape(
        &st,
        &mut cache,
        &ctx,
        page("a 1\nz 1 1\nz 1 0\n"),
        3000,
        Instant::now(),
    );
    assert!(r.err.is_none(), "{:?}", r.err);
    assert_eq!(metrics.sample_out_of_order.load(Ordering::Relaxed), 1);
}

#[test]
fn label_limits_fail_the_scrape() {
    let st = RecStorage::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let metrics = Metrics::default();
    let mut s = settings();
    s.label_limit = 4;
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    // __name__, instance, job + 2 = 5 labels.
    let r = process_scrape(
        &st,
        &mut cache,
        &ctx,
        page("ok 1\nm{a=\"1\",b=\"2\"} 1\n"),
        1000,
        Instant::now(),
    );
    assert_eq!(
        r.err.map(|e| e.to_string()),
        Some("label_limit exceeded (metric: m, number of labels: 5, limit: 4)".to_string())
    );
    assert!(st.series("ok").is_empty(), "rolled back");
    assert_eq!(st.values("up"), vec![0.0]);

    let mut s = settings();
    s.label_value_length_limit = 3;
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    let r = process_scrape(
        &st,
        &mut cache,
        &ctx,
        page("m{a=\"long\"} 1\n"),
        2000,
        Instant::now(),
    );
    assert!(
        r.err
            .unwrap()
            .to_string()
            .starts_with("label_value_length_limit exceeded (metric: m, label name: a")
    );
    assert_eq!(metrics.exceeded_label_limits.load(Ordering::Relaxed), 2);
}

#[test]
fn parse_errors_fail_the_scrape_and_stale_the_previous_series() {
    let st = RecStorage::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let s = settings();
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    process_scrape(&st, &mut cache, &ctx, page("a 1\n"), 1000, Instant::now());
    let r = process_scrape(
        &st,
        &mut cache,
        &ctx,
        page("a 2\nb{ 1\n"),
        2000,
        Instant::now(),
    );
    assert!(matches!(r.err, Some(ScrapeError::Parse(_))), "{:?}", r.err);
    // `a 2` was rolled back; `a` is stale at the failed scrape's time.
    let a = st.series("a");
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].1, 2000);
    assert!(is_stale_nan(a[1].2));
    assert_eq!(st.values("up"), vec![1.0, 0.0]);
}

#[test]
fn empty_page_is_up_but_stales_everything() {
    let st = RecStorage::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let s = settings();
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    process_scrape(&st, &mut cache, &ctx, page("a 1\n"), 1000, Instant::now());
    let r = process_scrape(&st, &mut cache, &ctx, page(""), 2000, Instant::now());
    assert!(r.err.is_none());
    assert!(is_stale_nan(st.last_value("a").unwrap()));
    assert_eq!(st.values("up"), vec![1.0, 1.0]);
    assert!(st.count() > 0);
}

#[test]
fn extra_metrics_are_reported() {
    let st = RecStorage::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let mut s = settings();
    s.extra_metrics = true;
    s.sample_limit = 10;
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    process_scrape(&st, &mut cache, &ctx, page("a 1\n"), 1000, Instant::now());
    assert_eq!(st.values("scrape_timeout_seconds"), vec![1.0]);
    assert_eq!(st.values("scrape_sample_limit"), vec![10.0]);
    assert_eq!(st.values("scrape_body_size_bytes"), vec![4.0]);
    process_scrape(
        &st,
        &mut cache,
        &ctx,
        Err(ScrapeError::BodySizeLimit),
        2000,
        Instant::now(),
    );
    assert_eq!(st.last_value("scrape_body_size_bytes"), Some(-1.0));
}

// ---------------------------------------------------------------------------
// The real head as storage.

fn head_samples(h: &pharos_tsdb::Head, name: &str) -> Vec<(Labels, Vec<pharos_model::Sample>)> {
    use pharos_storage::Queryable;
    let q = h.querier(i64::MIN, i64::MAX).unwrap();
    let mut set = q.select(
        true,
        None,
        &[pharos_model::Matcher::equal("__name__", name)],
    );
    let mut out = Vec::new();
    while let Some(mut s) = set.next() {
        let mut v = Vec::new();
        while let Some(x) = s.samples.next() {
            v.push(x);
        }
        out.push((s.labels, v));
    }
    out
}

#[tokio::test]
async fn scrape_into_head_with_staleness() {
    let f = serve(Page::text("a 1\nb{x=\"y\"} 2\n")).await;
    let head = pharos_tsdb::Head::default();
    let m = ScrapeManager::new(
        Arc::new(head.clone()),
        ScrapeOptions {
            skip_offset: true,
            ..ScrapeOptions::default()
        },
    );
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f.addr], "")
    )));
    wait_for("two scrapes in the head", || {
        head_samples(&head, "up")
            .first()
            .is_some_and(|s| s.1.len() >= 2)
    })
    .await;
    let up = head_samples(&head, "up");
    assert_eq!(up.len(), 1);
    assert_eq!(get(&up[0].0, "instance"), f.addr.to_string());
    assert!(up[0].1.iter().all(|s| s.v == 1.0));
    let b = head_samples(&head, "b");
    assert_eq!(get(&b[0].0, "x"), "y");
    assert_eq!(get(&b[0].0, "job"), "j");

    f.set(Page::text("a 1\n"));
    wait_for("b stale in the head", || {
        head_samples(&head, "b")
            .first()
            .and_then(|s| s.1.last().copied())
            .is_some_and(|s| is_stale_nan(s.v))
    })
    .await;
    m.stop().await;
    let a = head_samples(&head, "a");
    assert!(is_stale_nan(a[0].1.last().unwrap().v));
    let up = head_samples(&head, "up");
    assert!(is_stale_nan(up[0].1.last().unwrap().v));
}

// ---------------------------------------------------------------------------
// Throughput of the append stage (run in release:
// `cargo test --release -p pharos-scrape -- --ignored --nocapture throughput`).

/// Accepts everything, hands out references, keeps nothing.
struct NopStorage(std::sync::atomic::AtomicU64);

struct NopAppender<'a>(&'a NopStorage);

impl Appendable for NopStorage {
    fn appender(&self) -> Box<dyn Appender + Send + '_> {
        Box::new(NopAppender(self))
    }
}

impl Appender for NopAppender<'_> {
    fn append(
        &mut self,
        r: SeriesRef,
        _: &Labels,
        _: i64,
        _: f64,
    ) -> Result<SeriesRef, AppendError> {
        if r != 0 {
            return Ok(r);
        }
        Ok(self.0.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn commit(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
    fn rollback(self: Box<Self>) {}
}

fn node_like_page(n: usize) -> String {
    let mut s = String::new();
    s.push_str("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n");
    s.push_str("# TYPE node_cpu_seconds_total counter\n");
    for i in 0..n {
        s.push_str(&format!(
            "node_cpu_seconds_total{{cpu=\"{}\",mode=\"{}\"}} {}.{}\n",
            i / 8,
            [
                "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"
            ][i % 8],
            1000 + i * 7,
            i % 100
        ));
    }
    s
}

fn throughput(storage: &dyn Appendable, label: &str) {
    let body = node_like_page(2000);
    let target = test_target(&[]);
    let s = settings();
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    let mut cache = ScrapeCache::new();
    let mut t = 1_000_000;
    // First scrape builds the cache.
    process_scrape(storage, &mut cache, &ctx, page(&body), t, Instant::now());
    let iters = 500;
    let start = Instant::now();
    for _ in 0..iters {
        t += 15_000;
        let r = process_scrape(storage, &mut cache, &ctx, page(&body), t, Instant::now());
        assert!(r.err.is_none());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label}: {:.2} M samples/s steady state ({} samples x {iters} scrapes in {secs:.3}s)",
        2000.0 * iters as f64 / secs / 1e6,
        2000
    );
}

#[test]
#[ignore]
fn throughput_steady_state() {
    throughput(
        &NopStorage(std::sync::atomic::AtomicU64::new(0)),
        "nop storage",
    );
    throughput(&pharos_tsdb::Head::default(), "tsdb head");
}

// ---------------------------------------------------------------------------
// Label merging properties.

proptest::proptest! {
    /// Without `honor_labels` the target's labels always win, and no scraped
    /// value is lost: a clashing one lands under `exported_`…`<name>`.
    #[test]
    fn merge_keeps_every_value(
        scraped in proptest::collection::btree_map("[a-c]{1,2}|exported_[a-c]|job|instance", "[xy]{1,2}", 0..6),
        target_extra in proptest::collection::btree_map("[a-c]{1,2}", "[tu]{1,2}", 0..4),
    ) {
        let extra: Vec<(&str, &str)> = target_extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let target = test_target(&extra);
        let mut b = pharos_model::LabelsBuilder::new();
        b.set("__name__", "m");
        for (k, v) in &scraped {
            b.set(k, v);
        }
        proptest::prop_assert!(crate::append::mutate_sample_labels(&mut b, &target, false, &[]));
        let out = b.build();
        for l in target.public.iter() {
            proptest::prop_assert_eq!(out.get(l.name), Some(l.value));
        }
        let mut conflicts = 0;
        for (k, v) in &scraped {
            if target.public.has(k) {
                conflicts += 1;
                let mut name = k.clone();
                let mut found = false;
                for _ in 0..8 {
                    name = format!("exported_{name}");
                    if out.get(&name) == Some(v.as_str()) {
                        found = true;
                        break;
                    }
                }
                proptest::prop_assert!(found, "{} lost in {}", k, out);
            } else {
                proptest::prop_assert_eq!(out.get(k), Some(v.as_str()));
            }
        }
        let names: std::collections::BTreeSet<&str> = scraped
            .keys()
            .map(String::as_str)
            .chain(target.public.iter().map(|l| l.name))
            .chain(["__name__"])
            .collect();
        proptest::prop_assert_eq!(out.len(), names.len() + conflicts);
    }

    /// With `honor_labels` the scraped values win and target labels only
    /// fill gaps.
    #[test]
    fn honor_keeps_scraped_values(
        scraped in proptest::collection::btree_map("[a-c]{1,2}|job|instance", "[xy]{1,2}", 0..6),
    ) {
        let target = test_target(&[("a", "t")]);
        let mut b = pharos_model::LabelsBuilder::new();
        b.set("__name__", "m");
        for (k, v) in &scraped {
            b.set(k, v);
        }
        crate::append::mutate_sample_labels(&mut b, &target, true, &[]);
        let out = b.build();
        for (k, v) in &scraped {
            proptest::prop_assert_eq!(out.get(k), Some(v.as_str()));
        }
        for l in target.public.iter() {
            proptest::prop_assert!(out.has(l.name));
        }
    }
}

// ---------------------------------------------------------------------------
// Discovery, target_limit, keep_dropped_targets.

fn fast_discovery_manager(storage: &RecStorage) -> ScrapeManager {
    ScrapeManager::new(
        Arc::new(storage.clone()),
        ScrapeOptions {
            skip_offset: true,
            discovery: pharos_discovery::DiscoveryOptions {
                update_interval: Duration::from_millis(20),
                file_poll_interval: Duration::from_millis(20),
                ..pharos_discovery::DiscoveryOptions::default()
            },
            ..ScrapeOptions::default()
        },
    )
}

#[tokio::test]
async fn file_sd_targets_follow_the_file() {
    let f1 = serve(Page::text("a 1\n")).await;
    let f2 = serve(Page::text("a 2\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    std::fs::write(
        &file,
        format!(
            r#"[{{"targets":["{}"],"labels":{{"env":"prod"}}}}]"#,
            f1.addr
        ),
    )
    .unwrap();
    let st = RecStorage::default();
    let m = fast_discovery_manager(&st);
    let yaml = format!(
        "scrape_configs:
  - job_name: j
    scrape_interval: 100ms
    scrape_timeout: 80ms
    file_sd_configs:
      - files: ['{}']
    relabel_configs:
      - source_labels: [__meta_filepath]
        target_label: from_file
",
        dir.path().join("*.json").display()
    );
    m.apply_config(&config(&yaml));
    wait_for("the file's target", || m.targets().len() == 1).await;
    let t = &m.targets()[0];
    assert_eq!(get(&t.labels, "env"), "prod");
    assert_eq!(get(&t.labels, "from_file"), file.display().to_string());
    assert_eq!(
        get(&t.discovered_labels, "__meta_filepath"),
        file.display().to_string()
    );
    wait_for("a scrape of target 1", || {
        f1.hits.load(Ordering::SeqCst) > 0
    })
    .await;
    let first_hits = f1.hits.load(Ordering::SeqCst);

    // A second target appears; the first keeps its loop (keeps scraping).
    std::fs::write(
        &file,
        format!(
            r#"[{{"targets":["{}","{}"],"labels":{{"env":"prod"}}}}]"#,
            f1.addr, f2.addr
        ),
    )
    .unwrap();
    wait_for("two targets", || m.targets().len() == 2).await;
    // The staying target kept its state (a new loop would start unknown).
    let t1 = m
        .targets()
        .into_iter()
        .find(|t| t.scrape_url.contains(&f1.addr.to_string()))
        .unwrap();
    assert_eq!(t1.health, Health::Up);
    wait_for("a scrape of target 2", || {
        f2.hits.load(Ordering::SeqCst) > 0
    })
    .await;
    wait_for("target 1 keeps scraping", || {
        f1.hits.load(Ordering::SeqCst) > first_hits
    })
    .await;

    // The file goes: no targets; their series go stale later.
    std::fs::remove_file(&file).unwrap();
    wait_for("no targets", || m.targets().is_empty()).await;
    wait_for("stale markers for up", || {
        st.series("up")
            .iter()
            .any(|s| pharos_model::is_stale_nan(s.2))
    })
    .await;
    m.stop().await;
}

#[tokio::test]
async fn target_limit_fails_every_target() {
    let f1 = serve(Page::text("a 1\n")).await;
    let f2 = serve(Page::text("a 2\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f1.addr, f2.addr], "    target_limit: 1\n")
    )));
    wait_for("both targets failed", || {
        let ts = m.targets();
        ts.len() == 2 && ts.iter().all(|t| t.health == Health::Down)
    })
    .await;
    for t in m.targets() {
        assert_eq!(
            t.last_error,
            "target_limit exceeded (number of targets: 2, limit: 1)"
        );
    }
    assert_eq!(st.last_value("up"), Some(0.0));
    assert_eq!(f1.hits.load(Ordering::SeqCst), 0);

    // Raising the limit lets them scrape.
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}",
        job("j", &[f1.addr, f2.addr], "    target_limit: 2\n")
    )));
    wait_for("both targets up", || {
        let ts = m.targets();
        ts.len() == 2 && ts.iter().all(|t| t.health == Health::Up)
    })
    .await;
    m.stop().await;
}

#[tokio::test]
async fn keep_dropped_targets_bounds_the_dropped_list() {
    let st = RecStorage::default();
    let m = manager(&st);
    let yaml = "scrape_configs:
  - job_name: j
    keep_dropped_targets: 2
    relabel_configs:
      - action: drop
        source_labels: [__address__]
        regex: 'x.*'
    static_configs:
      - targets: ['x1:1', 'x2:1', 'x3:1', 'x4:1']
";
    m.apply_config(&config(yaml));
    assert_eq!(m.dropped_targets().len(), 2);
    assert_eq!(m.dropped_target_counts().get("j"), Some(&4));
    m.stop().await;
}

#[test]
fn metadata_of_the_last_successful_scrape() {
    let st = RecStorage::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let s = settings();
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    let body = "# HELP b_total Bees.\n# TYPE b_total counter\nb_total 1\n# TYPE a gauge\na 1\n# HELP c Only help \\\\ here.\nc 2\n";
    let r = process_scrape(&st, &mut cache, &ctx, page(body), 1000, Instant::now());
    assert!(r.err.is_none());
    let md = target.metadata();
    let got: Vec<(&str, &str, &str)> = md
        .iter()
        .map(|m| (m.metric.as_str(), m.kind.as_str(), m.help.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", "gauge", ""),
            ("b_total", "counter", "Bees."),
            ("c", "unknown", "Only help \\ here.")
        ]
    );
    // An unchanged page keeps the same allocation.
    process_scrape(&st, &mut cache, &ctx, page(body), 2000, Instant::now());
    assert!(Arc::ptr_eq(&md, &target.metadata()));
    assert!(Arc::ptr_eq(&md, &target.status().metadata));
    // A failed scrape keeps the last good metadata; a changed page replaces it.
    process_scrape(&st, &mut cache, &ctx, page("a{ 1\n"), 3000, Instant::now());
    assert_eq!(target.metadata().len(), 3);
    process_scrape(
        &st,
        &mut cache,
        &ctx,
        page("# TYPE a counter\na 1\n"),
        4000,
        Instant::now(),
    );
    assert_eq!(target.metadata()[0].kind, "counter");
    assert_eq!(target.metadata().len(), 1);
}

#[test]
fn identical_metadata_is_shared_between_targets() {
    let st = RecStorage::default();
    let s = settings();
    let metrics = Metrics::default();
    let body = "# HELP shared_md_total Same everywhere.\n# TYPE shared_md_total counter\nshared_md_total 1\n# HELP own_md Own text.\nown_md 1\n";
    let other = "# HELP shared_md_total Same everywhere.\n# TYPE shared_md_total counter\nshared_md_total 1\n# HELP own_md Other text.\nown_md 1\n";
    let targets: Vec<_> = (0..3)
        .map(|i| test_target(&[("instance", &format!("h{i}:9100"))]))
        .collect();
    for (i, target) in targets.iter().enumerate() {
        let ctx = AppendCtx {
            settings: &s,
            target,
            metrics: &metrics,
        };
        let mut cache = ScrapeCache::new();
        let b = if i == 2 { other } else { body };
        let r = process_scrape(&st, &mut cache, &ctx, page(b), 1000, Instant::now());
        assert!(r.err.is_none());
    }
    let md: Vec<_> = targets.iter().map(|t| t.metadata()).collect();
    assert_eq!(md[0].len(), 2);
    assert_eq!(md[0][0].metric, "own_md");
    assert_eq!(md[2][0].help, "Other text.");
    // Same content, same allocation; different help, different entry.
    assert!(Arc::ptr_eq(&md[0][1], &md[1][1]));
    assert!(Arc::ptr_eq(&md[0][1], &md[2][1]));
    assert!(Arc::ptr_eq(&md[0][0], &md[1][0]));
    assert!(!Arc::ptr_eq(&md[0][0], &md[2][0]));
}

#[tokio::test]
async fn reloading_a_discovered_job_keeps_its_targets() {
    let f = serve(Page::text("a 1\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    std::fs::write(&file, format!(r#"[{{"targets":["{}"]}}]"#, f.addr)).unwrap();
    let st = RecStorage::default();
    let m = fast_discovery_manager(&st);
    let yaml = |interval: &str| {
        format!(
            "scrape_configs:\n  - job_name: j\n    scrape_interval: {interval}\n    scrape_timeout: 80ms\n    file_sd_configs:\n      - files: ['{}']\n",
            file.display()
        )
    };
    m.apply_config(&config(&yaml("100ms")));
    wait_for("the file's target", || m.targets().len() == 1).await;
    // A changed job restarts its pool and discovery; the target it knew is
    // kept from the first moment.
    m.apply_config(&config(&yaml("150ms")));
    assert_eq!(m.targets().len(), 1);
    assert_eq!(m.targets()[0].scrape_interval, pharos_model::Duration(150));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(m.targets().len(), 1);
    // Removing the file from the config drops the target once the new
    // providers reported.
    m.apply_config(&config(
        "scrape_configs:\n  - job_name: j\n    scrape_interval: 150ms\n    scrape_timeout: 80ms\n    file_sd_configs:\n      - files: ['/nonexistent/x.json']\n",
    ));
    wait_for("no targets", || m.targets().is_empty()).await;
    m.stop().await;
}

#[tokio::test]
async fn enable_compression_false_asks_for_identity() {
    let f = serve(Page::text("a 1\n")).await;
    let st = RecStorage::default();
    let m = manager(&st);
    m.apply_config(&config(&format!(
        "scrape_configs:\n{}{}",
        job("plain", &[f.addr], "    enable_compression: false\n"),
        ""
    )));
    wait_for("a scrape", || f.headers.lock().is_some()).await;
    let h = f.headers.lock().clone().unwrap();
    assert_eq!(h.get("accept-encoding").unwrap(), "identity");
    m.stop().await;
}

// ---------------------------------------------------------------------------
// Classic histograms converted to native histograms with custom buckets
// (`convert_classic_histograms_to_nhcb`).

type HistSamples = Vec<(i64, f64, Option<pharos_model::FloatHistogram>)>;

/// Every sample of the series named `name` in the head, with histograms.
fn head_series(h: &pharos_tsdb::Head, name: &str) -> Vec<(Labels, HistSamples)> {
    use pharos_storage::Queryable;
    let q = h.querier(i64::MIN, i64::MAX).unwrap();
    let mut set = q.select(
        true,
        None,
        &[pharos_model::Matcher::equal("__name__", name)],
    );
    let mut out = Vec::new();
    while let Some(mut s) = set.next() {
        let mut v = Vec::new();
        while let Some(x) = s.samples.next() {
            v.push((x.t, x.v, s.samples.histogram().cloned()));
        }
        out.push((s.labels, v));
    }
    out
}

const CLASSIC_PAGE: &str = "# HELP x Latency.\n# TYPE x histogram\n\
x_bucket{a=\"1\",le=\"0.5\"} 1\nx_bucket{a=\"1\",le=\"1\"} 3\nx_bucket{a=\"1\",le=\"+Inf\"} 4\n\
x_count{a=\"1\"} 4\nx_sum{a=\"1\"} 2.5\n\
x_bucket{a=\"2\",le=\"0.5\"} 0\nx_bucket{a=\"2\",le=\"1\"} 2\nx_bucket{a=\"2\",le=\"+Inf\"} 2\n\
x_count{a=\"2\"} 2\nx_sum{a=\"2\"} 1\n\
# TYPE y gauge\ny 7\n";

fn nhcb_settings(keep: bool) -> crate::append::PoolSettings {
    crate::append::PoolSettings {
        convert_classic_histograms_to_nhcb: true,
        always_scrape_classic_histograms: keep,
        ..settings()
    }
}

#[test]
fn classic_histograms_become_nhcb_and_go_stale() {
    let head = pharos_tsdb::Head::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let s = nhcb_settings(false);
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    let r = process_scrape(
        &head,
        &mut cache,
        &ctx,
        page(CLASSIC_PAGE),
        1000,
        Instant::now(),
    );
    assert!(r.err.is_none(), "{:?}", r.err);
    // Two histograms and y.
    assert_eq!(r.counts.total, 3);
    assert_eq!(r.counts.series_added, 3);
    for name in ["x_bucket", "x_count", "x_sum"] {
        assert!(head_series(&head, name).is_empty(), "{name}");
    }
    assert_eq!(head_series(&head, "y").len(), 1);
    let x = head_series(&head, "x");
    assert_eq!(x.len(), 2);
    assert_eq!(get(&x[0].0, "a"), "1");
    assert_eq!(get(&x[0].0, "job"), "j");
    assert!(!x[0].0.has("le"));
    let h = x[0].1[0].2.as_ref().expect("a histogram sample");
    assert_eq!(h.schema, pharos_model::CUSTOM_BUCKETS_SCHEMA);
    assert_eq!(h.custom_values, vec![0.5, 1.0]);
    assert_eq!(h.positive_buckets, vec![1.0, 2.0, 1.0]);
    assert_eq!((h.count, h.sum), (4.0, 2.5));
    let h = x[1].1[0].2.as_ref().unwrap();
    // The empty first bucket is compacted away.
    assert_eq!(h.positive_buckets, vec![2.0]);
    assert_eq!(h.positive_spans[0].offset, 1);

    // Second scrape: same page, by reference, nothing new.
    let r = process_scrape(
        &head,
        &mut cache,
        &ctx,
        page(CLASSIC_PAGE),
        2000,
        Instant::now(),
    );
    assert!(r.err.is_none());
    assert_eq!(r.counts.series_added, 0);

    // Third scrape: a="2" is gone and gets a stale marker; a="1" goes on.
    let gone = CLASSIC_PAGE.replace(
        "x_bucket{a=\"2\",le=\"0.5\"} 0\nx_bucket{a=\"2\",le=\"1\"} 2\nx_bucket{a=\"2\",le=\"+Inf\"} 2\n\
x_count{a=\"2\"} 2\nx_sum{a=\"2\"} 1\n",
        "",
    );
    assert!(!gone.contains("a=\"2\""));
    let r = process_scrape(&head, &mut cache, &ctx, page(&gone), 3000, Instant::now());
    assert!(r.err.is_none());
    let x = head_series(&head, "x");
    assert_eq!(x.len(), 2);
    let a1: Vec<i64> = x[0].1.iter().map(|s| s.0).collect();
    assert_eq!(a1, vec![1000, 2000, 3000]);
    assert!(x[0].1.iter().all(|s| s.2.is_some() && !is_stale_nan(s.1)));
    let last = x[1].1.last().unwrap();
    assert_eq!(last.0, 3000);
    assert!(is_stale_nan(last.1), "{:?}", x[1].1);
    assert_eq!(x[1].1.len(), 3);
}

#[test]
fn nhcb_keeps_classic_series_when_asked_and_on_failure() {
    let head = pharos_tsdb::Head::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let s = nhcb_settings(true);
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    let r = process_scrape(
        &head,
        &mut cache,
        &ctx,
        page(CLASSIC_PAGE),
        1000,
        Instant::now(),
    );
    assert!(r.err.is_none(), "{:?}", r.err);
    // 10 classic samples, two histograms, y.
    assert_eq!(r.counts.total, 13);
    assert_eq!(head_series(&head, "x").len(), 2);
    assert_eq!(head_series(&head, "x_bucket").len(), 6);
    assert_eq!(head_series(&head, "x_sum").len(), 2);

    // Without keeping: a histogram whose buckets are not cumulative stays
    // classic.
    let head = pharos_tsdb::Head::default();
    let mut cache = ScrapeCache::new();
    let s = nhcb_settings(false);
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    let bad = CLASSIC_PAGE.replace(
        "x_bucket{a=\"2\",le=\"1\"} 2",
        "x_bucket{a=\"2\",le=\"1\"} 5",
    );
    let r = process_scrape(&head, &mut cache, &ctx, page(&bad), 1000, Instant::now());
    assert!(r.err.is_none(), "{:?}", r.err);
    let x = head_series(&head, "x");
    assert_eq!(x.len(), 1);
    assert_eq!(get(&x[0].0, "a"), "1");
    let b = head_series(&head, "x_bucket");
    assert_eq!(b.len(), 3);
    assert!(
        b.iter()
            .all(|s| get(&s.0, "a") == "2" && s.1[0].2.is_none())
    );
}

#[tokio::test]
async fn nhcb_from_the_scrape_config() {
    let f = serve(Page::text(CLASSIC_PAGE)).await;
    let head = pharos_tsdb::Head::default();
    let m = ScrapeManager::new(
        Arc::new(head.clone()),
        ScrapeOptions {
            skip_offset: true,
            ..ScrapeOptions::default()
        },
    );
    m.apply_config(&config(&format!(
        "global:\n  convert_classic_histograms_to_nhcb: true\nscrape_configs:\n{}",
        job("j", &[f.addr], "")
    )));
    wait_for("native histograms in the head", || {
        head_series(&head, "x")
            .first()
            .is_some_and(|s| s.1.len() >= 2)
    })
    .await;
    assert!(head_series(&head, "x_bucket").is_empty());
    let x = head_series(&head, "x");
    assert_eq!(x.len(), 2);
    assert!(x[0].1[0].2.as_ref().unwrap().custom_values == vec![0.5, 1.0]);

    // The histogram family leaves the page: stale markers.
    f.set(Page::text("y 1\n"));
    wait_for("x stale in the head", || {
        head_series(&head, "x")
            .iter()
            .all(|s| s.1.last().is_some_and(|l| is_stale_nan(l.1)))
    })
    .await;
    m.stop().await;
}

// ---------------------------------------------------------------------------
// Native histograms from the protobuf exposition format.

mod proto_fixtures {
    use pharos_exposition::protobuf::{
        Bucket, Histogram, LabelPair, Metric, MetricFamily, ProtoType, encode_delimited,
    };
    use pharos_model::Span;

    /// A page with a native histogram `rpc_seconds{svc="a"}` (schema 0,
    /// buckets 1, 2, 4 at indices 0, 1, 3, zero bucket 1, one classic
    /// bucket) and a counter `reqs_total`.
    pub fn page(count_scale: u64, with_histogram: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if with_histogram {
            let h = MetricFamily {
                name: "rpc_seconds".into(),
                help: "RPC latency.".into(),
                kind: ProtoType::Histogram,
                metric: vec![Metric {
                    label: vec![LabelPair {
                        name: "svc".into(),
                        value: "a".into(),
                    }],
                    histogram: Some(Histogram {
                        sample_count: 8 * count_scale,
                        sample_sum: 12.5 * count_scale as f64,
                        schema: 0,
                        zero_threshold: 1e-128,
                        zero_count: count_scale,
                        positive_span: vec![
                            Span {
                                offset: 0,
                                length: 2,
                            },
                            Span {
                                offset: 1,
                                length: 1,
                            },
                        ],
                        positive_delta: vec![
                            count_scale as i64,
                            count_scale as i64,
                            2 * count_scale as i64,
                        ],
                        bucket: vec![Bucket {
                            cumulative_count: 2 * count_scale,
                            upper_bound: 1.0,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            };
            encode_delimited(&h, &mut out);
        }
        let c = MetricFamily {
            name: "reqs_total".into(),
            kind: ProtoType::Counter,
            metric: vec![Metric {
                counter: Some(3.0),
                ..Default::default()
            }],
            ..Default::default()
        };
        encode_delimited(&c, &mut out);
        out
    }
}

fn proto_page(body: Vec<u8>) -> Result<Fetched, ScrapeError> {
    Ok(Fetched {
        body,
        gzip: false,
        content_type: Some(pharos_exposition::protobuf::PROTOBUF_CONTENT_TYPE.to_string()),
    })
}

#[test]
fn protobuf_native_histograms_reach_the_head_and_go_stale() {
    let head = pharos_tsdb::Head::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let s = settings();
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    for (i, t) in [1000, 2000].into_iter().enumerate() {
        let body = proto_fixtures::page(i as u64 + 1, true);
        let r = process_scrape(&head, &mut cache, &ctx, proto_page(body), t, Instant::now());
        assert!(r.err.is_none(), "{:?}", r.err);
        assert_eq!(r.counts.total, 2);
        assert_eq!(r.counts.series_added, if i == 0 { 2 } else { 0 });
    }
    // The classic bucket is not stored (always_scrape_classic_histograms off).
    assert!(head_series(&head, "rpc_seconds_bucket").is_empty());
    assert_eq!(head_series(&head, "reqs_total").len(), 1);
    let x = head_series(&head, "rpc_seconds");
    assert_eq!(x.len(), 1);
    assert_eq!(get(&x[0].0, "svc"), "a");
    assert_eq!(get(&x[0].0, "job"), "j");
    let samples = &x[0].1;
    assert_eq!(samples.len(), 2);
    let h = samples[1].2.as_ref().expect("a histogram sample");
    assert_eq!(h.schema, 0);
    assert_eq!((h.count, h.sum, h.zero_count), (16.0, 25.0, 2.0));
    assert_eq!(h.zero_threshold, 1e-128);
    assert_eq!(h.positive_buckets, vec![2.0, 4.0, 8.0]);
    assert_eq!(
        h.positive_spans,
        vec![
            pharos_model::Span {
                offset: 0,
                length: 2
            },
            pharos_model::Span {
                offset: 1,
                length: 1
            }
        ]
    );
    // Metadata from the page.
    let md = target.metadata();
    let rpc = md.iter().find(|m| m.metric == "rpc_seconds").unwrap();
    assert_eq!(
        (rpc.kind.as_ref(), rpc.help.as_ref()),
        ("histogram", "RPC latency.")
    );

    // The histogram leaves the page: a stale marker.
    let r = process_scrape(
        &head,
        &mut cache,
        &ctx,
        proto_page(proto_fixtures::page(1, false)),
        3000,
        Instant::now(),
    );
    assert!(r.err.is_none(), "{:?}", r.err);
    let x = head_series(&head, "rpc_seconds");
    let last = x[0].1.last().unwrap();
    assert_eq!(last.0, 3000);
    assert!(is_stale_nan(last.1), "{:?}", x[0].1);
}

#[test]
fn protobuf_classic_kept_native_off_and_bucket_limit() {
    let target = test_target(&[]);
    let metrics = Metrics::default();
    let run = |s: &crate::append::PoolSettings| {
        let head = pharos_tsdb::Head::default();
        let mut cache = ScrapeCache::new();
        let ctx = AppendCtx {
            settings: s,
            target: &target,
            metrics: &metrics,
        };
        let r = process_scrape(
            &head,
            &mut cache,
            &ctx,
            proto_page(proto_fixtures::page(1, true)),
            1000,
            Instant::now(),
        );
        (head, r)
    };
    // Classic buckets kept alongside the native histogram.
    let s = crate::append::PoolSettings {
        always_scrape_classic_histograms: true,
        ..settings()
    };
    let (head, r) = run(&s);
    assert!(r.err.is_none(), "{:?}", r.err);
    assert_eq!(head_series(&head, "rpc_seconds").len(), 1);
    let b = head_series(&head, "rpc_seconds_bucket");
    let les: Vec<&str> = b.iter().map(|s| get(&s.0, "le")).collect();
    assert_eq!(les, ["+Inf", "1.0"]);
    assert_eq!(head_series(&head, "rpc_seconds_count")[0].1[0].1, 8.0);

    // Native histograms off: classic series only.
    let s = crate::append::PoolSettings {
        native_histograms: false,
        ..settings()
    };
    let (head, r) = run(&s);
    assert!(r.err.is_none(), "{:?}", r.err);
    assert!(head_series(&head, "rpc_seconds").is_empty());
    assert_eq!(head_series(&head, "rpc_seconds_bucket").len(), 2);

    // Bucket limit 2: the resolution goes down until it fits.
    let s = crate::append::PoolSettings {
        native_histogram_bucket_limit: 2,
        ..settings()
    };
    let (head, r) = run(&s);
    assert!(r.err.is_none(), "{:?}", r.err);
    let x = head_series(&head, "rpc_seconds");
    let h = x[0].1[0].2.as_ref().unwrap();
    assert!(h.schema < 0, "{h:?}");
    assert!(h.positive_buckets.len() <= 2);
    assert_eq!(h.count, 8.0);
    // min_bucket_factor's schema cap.
    let s = crate::append::PoolSettings {
        native_histogram_max_schema: -1,
        ..settings()
    };
    let (head, _) = run(&s);
    let x = head_series(&head, "rpc_seconds");
    assert_eq!(x[0].1[0].2.as_ref().unwrap().schema, -1);

    // A limit no schema can meet fails the scrape: bucket index 0 ends at
    // 1 in every schema, so at schema −4 two buckets remain.
    let s = crate::append::PoolSettings {
        native_histogram_bucket_limit: 1,
        ..settings()
    };
    let (head, r) = run(&s);
    assert_eq!(r.err, Some(ScrapeError::BucketLimit));
    assert_eq!(
        r.err.unwrap().to_string(),
        "histogram bucket limit exceeded"
    );
    assert!(head_series(&head, "rpc_seconds").is_empty());
    assert!(head_series(&head, "reqs_total").is_empty());
    assert_eq!(
        metrics
            .exceeded_bucket_limit
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn protobuf_bad_page_fails_the_scrape_with_an_offset() {
    let head = pharos_tsdb::Head::default();
    let mut cache = ScrapeCache::new();
    let target = test_target(&[]);
    let s = settings();
    let metrics = Metrics::default();
    let ctx = AppendCtx {
        settings: &s,
        target: &target,
        metrics: &metrics,
    };
    let mut body = proto_fixtures::page(1, true);
    body.truncate(body.len() - 2);
    let r = process_scrape(
        &head,
        &mut cache,
        &ctx,
        proto_page(body),
        1000,
        Instant::now(),
    );
    let e = r.err.expect("a parse error").to_string();
    assert!(e.starts_with("byte "), "{e}");
    assert!(head_series(&head, "rpc_seconds").is_empty());
}

#[tokio::test]
async fn protobuf_scrape_with_native_histograms_from_config() {
    let f = serve(Page {
        status: 200,
        body: proto_fixtures::page(1, true),
        content_type: Some(pharos_exposition::protobuf::PROTOBUF_CONTENT_TYPE.to_string()),
        gzip: false,
        delay: Duration::ZERO,
    })
    .await;
    let head = pharos_tsdb::Head::default();
    let m = ScrapeManager::new(
        Arc::new(head.clone()),
        ScrapeOptions {
            skip_offset: true,
            ..ScrapeOptions::default()
        },
    );
    m.apply_config(&config(&format!(
        "global:\n  scrape_native_histograms: true\nscrape_configs:\n{}",
        job("j", &[f.addr], "")
    )));
    wait_for("a native histogram in the head", || {
        head_series(&head, "rpc_seconds")
            .first()
            .is_some_and(|s| s.1.first().is_some_and(|x| x.2.is_some()))
    })
    .await;
    let accept = f.headers.lock().clone().unwrap()["accept"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        accept,
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,\
application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
application/openmetrics-text;version=0.0.1;q=0.4,\
text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
    );
    assert_eq!(head_series(&head, "reqs_total").len(), 1);
    m.stop().await;
}
