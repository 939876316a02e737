//! Native histograms written by pharos, read by a real Prometheus 2.42
//! (Debian package, `--enable-feature=native-histograms`): a data directory
//! filled through `pharos_tsdb::Db` (integer- and float-count histograms,
//! part compacted into blocks, the rest in the WAL and `chunks_head/`) is
//! opened by Prometheus, which must return every sample with the counts
//! and sums pharos stored, from blocks and from its WAL replay alike.
//!
//!
//! And the other way: Prometheus 2.42 scrapes native histograms (protobuf
//! exposition served by the test) into its WAL, head chunk files and 10 s
//! blocks; pharos opens that directory and returns every histogram as
//! served.
//!
//! (`promtool tsdb dump` of 2.42 stops at the first histogram sample of a
//! series, printing nothing for it, so it cannot check the chunks; the
//! query API can.)
//!
//! Skipped outside CI when Prometheus is absent; failing under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{have, http_get, in_ci, urlencode};
use pharos_model::{FloatHistogram, Histogram, HistogramValue, Labels, Span};
use pharos_storage::{Appendable, Queryable};
use pharos_tsdb::{Db, DbOptions};

const H: i64 = 3600 * 1000;
const STEP: i64 = 60_000;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn int_hist(i: u64) -> Histogram {
    let b = [i + 1, 2 * i + 1, i];
    Histogram {
        schema: 1,
        zero_threshold: 0.001,
        zero_count: i,
        count: b.iter().sum::<u64>() + i + 3 * i,
        sum: 1.5 * i as f64,
        positive_spans: vec![Span {
            offset: 0,
            length: 3,
        }],
        negative_spans: vec![Span {
            offset: 2,
            length: 1,
        }],
        positive_buckets: vec![
            b[0] as i64,
            b[1] as i64 - b[0] as i64,
            b[2] as i64 - b[1] as i64,
        ],
        negative_buckets: vec![3 * i as i64],
        ..Histogram::default()
    }
}

fn float_hist(i: u64) -> FloatHistogram {
    let x = i as f64;
    FloatHistogram {
        schema: 0,
        zero_threshold: 0.001,
        zero_count: 0.5,
        count: 0.5 + 2.0 * x + 0.25,
        sum: 0.75 * x,
        positive_spans: vec![Span {
            offset: 1,
            length: 2,
        }],
        positive_buckets: vec![x, x + 0.25],
        ..FloatHistogram::default()
    }
}

/// (count, sum, sum of the bucket counts) of every histogram point of
/// `query_range` for `q`, keyed by time in ms.
fn range_histograms(addr: &str, q: &str, start: i64, end: i64) -> Vec<(i64, f64, f64, f64)> {
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        urlencode(q),
        start as f64 / 1000.0,
        end as f64 / 1000.0
    );
    let (code, body) = http_get(addr, &path);
    assert_eq!(code, 200, "{q}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{q}: {body}");
    let num = |x: &serde_json::Value| x.as_str().unwrap().parse::<f64>().unwrap();
    result[0]["histograms"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|p| {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            let h = &p[1];
            let buckets: f64 = h["buckets"]
                .as_array()
                .map(|b| b.iter().map(|b| num(&b[3])).sum())
                .unwrap_or(0.0);
            (t, num(&h["count"]), num(&h["sum"]), buckets)
        })
        .collect()
}

#[test]
fn prometheus_reads_pharos_histograms_from_blocks_wal_and_head_chunks() {
    if !(have("prometheus")) {
        assert!(!in_ci(), "prometheus must be installed in CI");
        eprintln!("skipping: prometheus not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Five hours ending an hour ago, aligned to the hour: compaction cuts
    // the first two-hour blocks, the rest stays in the head.
    let base = (now - 6 * H).div_euclid(2 * H) * (2 * H);
    let end = base + 5 * H;
    {
        let db = Db::open(&data, DbOptions::with_retention(100 * 365 * 24 * H)).unwrap();
        let (ih, fh) = (
            Labels::from_pairs(&[("__name__", "nh_int")]),
            Labels::from_pairs(&[("__name__", "nh_float")]),
        );
        let mut t = base;
        while t < end {
            let i = ((t - base) / STEP) as u64;
            let mut app = db.appender();
            app.append_histogram(0, &ih, t, HistogramValue::Int(int_hist(i)))
                .unwrap();
            app.append_histogram(0, &fh, t, HistogramValue::Float(float_hist(i)))
                .unwrap();
            app.commit().unwrap();
            t += STEP;
        }
        db.compact().unwrap();
        assert!(!db.blocks().is_empty(), "no block was cut");
        db.close().unwrap();
    }

    let cfg = dir.path().join("empty.yml");
    std::fs::write(&cfg, "global: {}\n").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg("--enable-feature=native-histograms")
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let _k = Killed(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() || http_get(&addr, "/-/ready").0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "prometheus never became ready: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let plog = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    let got = range_histograms(&addr, "nh_int", base, end - STEP);
    assert_eq!(got.len(), 300, "nh_int points; prometheus log:\n{}", plog());
    for (k, (t, count, sum, buckets)) in got.iter().enumerate() {
        let h = int_hist(k as u64);
        assert_eq!(*t, base + k as i64 * STEP);
        assert_eq!((*count, *sum), (h.count as f64, h.sum), "nh_int at {t}");
        assert_eq!(*buckets, h.count as f64, "nh_int buckets at {t}");
    }
    let got = range_histograms(&addr, "nh_float", base, end - STEP);
    assert_eq!(
        got.len(),
        300,
        "nh_float points; prometheus log:\n{}",
        plog()
    );
    for (k, (t, count, sum, buckets)) in got.iter().enumerate() {
        let h = float_hist(k as u64);
        assert_eq!((*count, *sum), (h.count, h.sum), "nh_float at {t}");
        assert_eq!(*buckets, h.count, "nh_float buckets at {t}");
    }
}

fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_double(out: &mut Vec<u8>, field: u64, v: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// `io.prometheus.client.Histogram` for `h` (integer counts).
fn proto_histogram(h: &Histogram) -> Vec<u8> {
    let mut b = Vec::new();
    put_key(&mut b, 1, 0);
    put_varint(&mut b, h.count);
    put_double(&mut b, 2, h.sum);
    put_key(&mut b, 5, 0);
    put_varint(&mut b, zigzag(i64::from(h.schema)));
    put_double(&mut b, 6, h.zero_threshold);
    put_key(&mut b, 7, 0);
    put_varint(&mut b, h.zero_count);
    let spans = |b: &mut Vec<u8>, field: u64, spans: &[Span]| {
        for s in spans {
            let mut m = Vec::new();
            put_key(&mut m, 1, 0);
            put_varint(&mut m, zigzag(i64::from(s.offset)));
            put_key(&mut m, 2, 0);
            put_varint(&mut m, u64::from(s.length));
            put_bytes(b, field, &m);
        }
    };
    let deltas = |b: &mut Vec<u8>, field: u64, d: &[i64]| {
        let mut m = Vec::new();
        for &x in d {
            put_varint(&mut m, zigzag(x));
        }
        put_bytes(b, field, &m);
    };
    spans(&mut b, 9, &h.negative_spans);
    deltas(&mut b, 10, &h.negative_buckets);
    spans(&mut b, 12, &h.positive_spans);
    deltas(&mut b, 13, &h.positive_buckets);
    b
}

/// A length-delimited `MetricFamily` `nh_scraped` of type HISTOGRAM.
fn proto_family(h: &Histogram) -> Vec<u8> {
    let mut metric = Vec::new();
    put_bytes(&mut metric, 7, &proto_histogram(h));
    let mut fam = Vec::new();
    put_bytes(&mut fam, 1, b"nh_scraped");
    put_bytes(&mut fam, 2, b"A native histogram.");
    put_key(&mut fam, 3, 0);
    put_varint(&mut fam, 4);
    put_bytes(&mut fam, 4, &metric);
    let mut out = Vec::new();
    put_varint(&mut out, fam.len() as u64);
    out.extend_from_slice(&fam);
    out
}

/// Serves `int_hist(n)` for the n-th scrape (n from 1) until `stop`.
fn serve_histograms(l: TcpListener, served: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    l.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut c, _)) = l.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        c.set_nonblocking(false).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
        let body = proto_family(&int_hist(n));
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = c.write_all(head.as_bytes());
        let _ = c.write_all(&body);
    }
}

#[test]
fn pharos_reads_histograms_prometheus_scraped() {
    if !(have("prometheus")) {
        assert!(!in_ci(), "prometheus must be installed in CI");
        eprintln!("skipping: prometheus not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (served, stop) = (served.clone(), stop.clone());
        std::thread::spawn(move || serve_histograms(target, served, stop))
    };
    let cfg = dir.path().join("scrape.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: nh\n    static_configs:\n      - targets: ['{target_addr}']\n"
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log_path = dir.path().join("prometheus.log");
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.min-block-duration=10s")
        .arg("--storage.tsdb.max-block-duration=10s")
        .arg("--enable-feature=native-histograms")
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start prometheus");
    let plog = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Long enough for head compactions into 10 s blocks.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(35) {
        std::thread::sleep(Duration::from_millis(250));
    }
    // SIGTERM: a clean shutdown (WAL and head chunk files stay for replay).
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let n = served.load(Ordering::SeqCst);
    assert!(n >= 25, "only {n} scrapes; prometheus log:\n{}", plog());
    let blocks = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("meta.json").exists())
        .count();
    assert!(blocks > 0, "prometheus cut no block; log:\n{}", plog());

    let db = Db::open(&data, DbOptions::with_retention(100 * 365 * 24 * H)).unwrap();
    assert!(!db.blocks().is_empty());
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    let m =
        pharos_model::Matcher::new(pharos_model::MatchOp::Equal, "__name__", "nh_scraped").unwrap();
    let mut set = q.select(true, None, &[m]);
    let mut s = set.next().expect("nh_scraped not found");
    let mut last_i = 0u64;
    let mut seen = 0u64;
    while let Some(x) = s.samples.next() {
        let h = s.samples.histogram().expect("a histogram sample").clone();
        // int_hist(i) has count 8i + 2.
        let i = (h.count as u64 - 2) / 8;
        assert!(i > last_i, "histograms out of order: {i} after {last_i}");
        last_i = i;
        let want = int_hist(i);
        assert_eq!(x.v, want.sum);
        assert_eq!(
            (h.count, h.zero_count, h.sum),
            (want.count as f64, want.zero_count as f64, want.sum)
        );
        assert_eq!(h.schema, want.schema);
        assert_eq!(h.positive_spans, want.positive_spans);
        assert_eq!(h.negative_spans, want.negative_spans);
        let abs = |d: &[i64]| {
            let mut acc = 0;
            d.iter()
                .map(|x| {
                    acc += x;
                    acc as f64
                })
                .collect::<Vec<f64>>()
        };
        assert_eq!(h.positive_buckets, abs(&want.positive_buckets));
        assert_eq!(h.negative_buckets, abs(&want.negative_buckets));
        seen += 1;
    }
    assert!(s.samples.err().is_none(), "{:?}", s.samples.err());
    assert!(set.next().is_none());
    // Every scrape Prometheus stored (the last one may be cut by the
    // shutdown) came back.
    assert!(
        seen + 2 >= n && seen <= n,
        "{seen} histograms read, {n} served"
    );
    db.close().unwrap();
}
