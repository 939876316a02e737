//! Native histograms written by pharos, read by a real Prometheus 2.42
//! (Debian package, `--enable-feature=native-histograms`): a data directory
//! filled through `pharos_tsdb::Db` (integer- and float-count histograms,
//! part compacted into blocks, the rest in the WAL and `chunks_head/`) is
//! opened by Prometheus, which must return every sample with the counts
//! and sums pharos stored, from blocks and from its WAL replay alike.
//!
//! (`promtool tsdb dump` of 2.42 stops at the first histogram sample of a
//! series, printing nothing for it, so it cannot check the chunks; the
//! query API can.)
//!
//! Skipped outside CI when Prometheus is absent; failing under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{have, http_get, in_ci, urlencode};
use pharos_model::{FloatHistogram, Histogram, HistogramValue, Labels, Span};
use pharos_storage::Appendable;
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
