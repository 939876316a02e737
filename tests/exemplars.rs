//! Exemplar storage end to end: pharos with `--enable-feature=exemplar-storage`
//! scrapes an OpenMetrics page whose samples carry exemplars, and
//! `/api/v1/query_exemplars` returns them (repeated scrapes do not repeat
//! them); after a restart they come back from the WAL. Without the feature
//! the answer is an empty list. When Prometheus 2.42 is installed, its
//! answer for the same page (exemplars with timestamps) must be identical.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Pharos, have, http_get, in_ci, urlencode};

const PAGE: &str = "# TYPE rpc_seconds histogram\n\
rpc_seconds_bucket{le=\"0.1\"} 3 # {trace_id=\"abc\"} 0.05 1600000000.123\n\
rpc_seconds_bucket{le=\"+Inf\"} 5 # {trace_id=\"def\",span_id=\"x\"} 2.5 1600000001\n\
rpc_seconds_count 5\n\
rpc_seconds_sum 3.1\n\
# TYPE req counter\n\
req_total 7 # {trace_id=\"ghi\"} 1\n\
# EOF\n";

/// Serves `page` as OpenMetrics on a free port; returns its address.
fn openmetrics_target(page: &'static str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = c.write_all(resp.as_bytes());
        }
    });
    addr
}

fn config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
         scrape_configs:\n  - job_name: t\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

fn exemplars(addr: &str, q: &str) -> serde_json::Value {
    let (s, b) = http_get(
        addr,
        &format!("/api/v1/query_exemplars?query={}", urlencode(q)),
    );
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

fn wait_exemplars(addr: &str, q: &str, n: usize) -> serde_json::Value {
    let start = Instant::now();
    loop {
        // Prometheus answers 503 until its TSDB is ready: wait through it.
        let (s, b) = http_get(
            addr,
            &format!("/api/v1/query_exemplars?query={}", urlencode(q)),
        );
        let d = if s == 503 {
            serde_json::Value::Null
        } else {
            assert_eq!(s, 200, "{b}");
            let v: serde_json::Value = serde_json::from_str(&b).unwrap();
            assert_eq!(v["status"], "success", "{v}");
            v["data"].clone()
        };
        if d.as_array().is_some_and(|a| a.len() == n) {
            return d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waiting for {n} series of exemplars of {q}: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The rpc_seconds_bucket answer: every field compared (their exemplars
/// carry timestamps).
fn expected_buckets(target: &str) -> serde_json::Value {
    serde_json::json!([
        {
            "seriesLabels": {"__name__": "rpc_seconds_bucket", "instance": target, "job": "t", "le": "+Inf"},
            "exemplars": [{"labels": {"span_id": "x", "trace_id": "def"}, "value": "2.5", "timestamp": 1600000001}]
        },
        {
            "seriesLabels": {"__name__": "rpc_seconds_bucket", "instance": target, "job": "t", "le": "0.1"},
            "exemplars": [{"labels": {"trace_id": "abc"}, "value": "0.05", "timestamp": 1600000000.123}]
        }
    ])
}

#[test]
fn scraped_exemplars_are_queryable_and_survive_a_restart() {
    let target = openmetrics_target(PAGE);
    let data = tempfile::tempdir().unwrap();
    let cfg = config(&target);
    let mut p = Pharos::start_at(
        Some(data.path()),
        Some(&cfg),
        &["--enable-feature=exemplar-storage"],
    );
    let d = wait_exemplars(&p.addr, "rpc_seconds_bucket", 2);
    assert_eq!(d, expected_buckets(&target));
    // Several scrapes later there is still one exemplar per series: the
    // page repeats them and duplicates are not stored (the one without a
    // timestamp included).
    p.wait_for(
        "count_over_time(req_total[1m])",
        Duration::from_secs(30),
        |r| {
            r[0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                >= Some(4.0)
        },
    );
    let d = exemplars(&p.addr, "req_total or rpc_seconds_bucket");
    let arr = d.as_array().unwrap();
    assert_eq!(arr.len(), 3, "{d}");
    for s in arr {
        assert_eq!(s["exemplars"].as_array().unwrap().len(), 1, "{d}");
    }
    let req = arr
        .iter()
        .find(|s| s["seriesLabels"]["__name__"] == "req_total")
        .unwrap();
    assert_eq!(req["exemplars"][0]["labels"]["trace_id"], "ghi");
    assert_eq!(req["exemplars"][0]["value"], "1");
    // Its timestamp is the scrape's: recent.
    let ts = req["exemplars"][0]["timestamp"].as_f64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - ts).abs() < 120.0, "{ts} vs {now}");
    // A time range excludes what is outside it.
    let (s, b) = http_get(
        &p.addr,
        "/api/v1/query_exemplars?query=rpc_seconds_bucket&start=1600000000.5&end=1600000002",
    );
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["data"][0]["seriesLabels"]["le"], "+Inf");
    // The metrics of the ring.
    let (_, m) = p.get("/metrics");
    assert!(
        m.contains("prometheus_tsdb_exemplar_max_exemplars 100000"),
        "{m}"
    );
    assert!(m.contains("prometheus_tsdb_exemplar_series_with_exemplars_in_storage 3"));

    // Restart on the same data without a target: exemplars come back from
    // the WAL.
    p.terminate();
    drop(p);
    let p = Pharos::start_at(
        Some(data.path()),
        Some("global:\n  scrape_interval: 1h\n"),
        &["--enable-feature=exemplar-storage"],
    );
    let d = wait_exemplars(&p.addr, "rpc_seconds_bucket", 2);
    assert_eq!(d, expected_buckets(&target));
}

#[test]
fn without_the_feature_exemplars_are_dropped() {
    let target = openmetrics_target(PAGE);
    let p = Pharos::start(Some(&config(&target)), &[]);
    p.wait_for("req_total", Duration::from_secs(30), |r| {
        r.as_array().is_some_and(|a| a.len() == 1)
    });
    assert_eq!(
        exemplars(&p.addr, "rpc_seconds_bucket"),
        serde_json::json!([])
    );
}

fn metric(p: &Pharos, name: &str) -> Option<f64> {
    let (_, m) = p.get("/metrics");
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn max_exemplars_from_the_config_and_reload() {
    let target = openmetrics_target(PAGE);
    let cfg = |n: usize| {
        format!(
            "{}storage:\n  exemplars:\n    max_exemplars: {n}\n",
            config(&target)
        )
    };
    let p = Pharos::start(Some(&cfg(1)), &["--enable-feature=exemplar-storage"]);
    assert_eq!(
        metric(&p, "prometheus_tsdb_exemplar_max_exemplars"),
        Some(1.0)
    );
    p.wait_for(
        "count_over_time(req_total[1m])",
        Duration::from_secs(30),
        |r| {
            r[0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                >= Some(3.0)
        },
    );
    let d = exemplars(&p.addr, "{job=\"t\"}");
    let total: usize = d
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["exemplars"].as_array().unwrap().len())
        .sum();
    assert_eq!(total, 1, "{d}");
    // A reload resizes the ring.
    std::fs::write(p.dir.path().join("prometheus.yml"), cfg(5)).unwrap();
    let _ = Command::new("kill")
        .arg("-HUP")
        .arg(p.child.id().to_string())
        .status();
    let start = Instant::now();
    while metric(&p, "prometheus_tsdb_exemplar_max_exemplars") != Some(5.0) {
        assert!(start.elapsed() < Duration::from_secs(30), "no resize");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_exemplars(&p.addr, "{job=\"t\"}", 3);
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn same_exemplars_as_prometheus() {
    if !have("prometheus") {
        assert!(
            !in_ci(),
            "prometheus must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipping: prometheus not installed");
        return;
    }
    let target = openmetrics_target(PAGE);
    let cfg = config(&target);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yml"), &cfg).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prom = format!("127.0.0.1:{port}");
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("p.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .arg("--enable-feature=exemplar-storage")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let p = Pharos::start(Some(&cfg), &["--enable-feature=exemplar-storage"]);
    let start = Instant::now();
    while std::net::TcpStream::connect(&prom).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "prometheus did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let theirs = wait_exemplars(&prom, "rpc_seconds_bucket", 2);
    let ours = wait_exemplars(&p.addr, "rpc_seconds_bucket", 2);
    assert_eq!(ours, theirs);
    // Same shape for the exemplar without a timestamp (the times differ).
    let strip = |mut v: serde_json::Value| {
        for s in v.as_array_mut().unwrap() {
            for e in s["exemplars"].as_array_mut().unwrap() {
                e["timestamp"] = serde_json::Value::Null;
            }
        }
        v
    };
    let theirs = strip(wait_exemplars(&prom, "req_total", 1));
    let ours = strip(wait_exemplars(&p.addr, "req_total", 1));
    assert_eq!(ours, theirs);
    // A query without selectors: 204 without a body in both.
    let a = http_get(&prom, "/api/v1/query_exemplars?query=1%2B1");
    let b = http_get(&p.addr, "/api/v1/query_exemplars?query=1%2B1");
    assert_eq!(a, (204, String::new()));
    assert_eq!(b, a);
}
