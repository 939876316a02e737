//! Data-directory compatibility with a real Prometheus 2.42 (Debian
//! package `prometheus`, with `promtool`), in both directions:
//! - a data dir backfilled by `promtool tsdb create-blocks-from openmetrics`
//!   is opened by pharos, which answers range queries exactly as Prometheus
//!   does on a copy of the same directory, and Prometheus answers the same
//!   on the blocks `pharos tsdb create-blocks-from openmetrics` wrote from
//!   the same file;
//! - blocks pharos cut from its head are accepted by `promtool tsdb list`
//!   and `analyze`, and Prometheus started on a copy of pharos's data dir
//!   (blocks, WAL, chunks_head) answers the same range queries as pharos,
//!   over the blocks and the head replayed from the WAL.
//!
//! Skipped outside CI when the binaries are absent; failing under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{have, http_get, in_ci, urlencode};

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

fn skip() -> bool {
    if have("prometheus") && have("promtool") {
        return false;
    }
    assert!(!in_ci(), "prometheus and promtool must be installed in CI");
    eprintln!("skipping: prometheus/promtool not installed");
    true
}

fn wait_ready(addr: &str, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() || http_get(addr, "/-/ready").0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} never became ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_prometheus(data: &Path, cfg_dir: &Path) -> (Killed, String) {
    std::fs::write(cfg_dir.join("empty.yml"), "global: {}\n").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let c = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            cfg_dir.join("empty.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let k = Killed(c);
    wait_ready(&addr, "prometheus");
    (k, addr)
}

fn start_pharos(data: &Path, cfg: Option<&Path>, extra: &[&str]) -> (Killed, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pharos"));
    cmd.arg(format!("--web.listen-address={addr}"))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .args(extra);
    if let Some(c) = cfg {
        cmd.arg(format!("--config.file={}", c.display()));
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if l.contains("level=ERROR") || l.contains("level=WARN") || l.contains("block") {
                eprintln!("pharos: {l}");
            }
        }
    });
    let k = Killed(child);
    wait_ready(&addr, "pharos");
    (k, addr)
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `query_range` results as a sorted list of (labels, [(t, value)]).
fn range(addr: &str, q: &str, start: f64, end: f64, step: f64) -> Vec<(String, Vec<(f64, f64)>)> {
    let path = format!(
        "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
        urlencode(q)
    );
    let (s, b) = http_get(addr, &path);
    assert_eq!(s, 200, "{addr}{path}: {b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let mut out: Vec<(String, Vec<(f64, f64)>)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let pts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap(),
                        p[1].as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect();
            (s["metric"].to_string(), pts)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn same(a: &[(String, Vec<(f64, f64)>)], b: &[(String, Vec<(f64, f64)>)], q: &str) {
    assert_eq!(a.len(), b.len(), "{q}: series counts differ");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.0, y.0, "{q}: labels differ");
        assert_eq!(x.1.len(), y.1.len(), "{q} {}: point counts differ", x.0);
        for (p, r) in x.1.iter().zip(&y.1) {
            assert_eq!(p.0, r.0, "{q} {}", x.0);
            let tol = 1e-9 * p.1.abs().max(1.0);
            assert!(
                (p.1 - r.1).abs() <= tol || (p.1.is_nan() && r.1.is_nan()),
                "{q} {} at {}: {} vs {}",
                x.0,
                p.0,
                p.1,
                r.1
            );
        }
    }
}

#[test]
fn pharos_serves_a_prometheus_backfilled_dir() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Three hours of 40 series every 15 s, ending a day ago.
    let end = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
        - 24)
        * 3600;
    let start = end - 3 * 3600;
    let mut om = String::from("# HELP demo_requests Requests.\n# TYPE demo_requests counter\n");
    for s in 0..20 {
        let mut t = start;
        while t < end {
            let v = ((t - start) / 15) * (s + 1);
            om.push_str(&format!(
                "demo_requests_total{{code=\"{}\",handler=\"/h{s}\"}} {v} {t}\n",
                200 + (s % 3) * 100
            ));
            t += 15;
        }
    }
    om.push_str("# HELP demo_temp Gauge.\n# TYPE demo_temp gauge\n");
    for s in 0..20 {
        let mut t = start;
        while t < end {
            let v = ((t as f64) / 600.0 + s as f64).sin() * 10.0;
            om.push_str(&format!("demo_temp{{sensor=\"s{s}\"}} {v} {t}\n"));
            t += 15;
        }
    }
    om.push_str("# EOF\n");
    std::fs::write(dir.path().join("data.om"), om).unwrap();
    let data = dir.path().join("prom");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(dir.path().join("data.om"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = dir.path().join("ours");
    copy_dir(&data, &ours);
    // The same file backfilled by pharos's own tool, served by Prometheus.
    let backfilled = dir.path().join("pharos-backfill");
    let out = Command::new(env!("CARGO_BIN_EXE_pharos"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(dir.path().join("data.om"))
        .arg(&backfilled)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = Command::new("promtool")
        .args(["tsdb", "list"])
        .arg(&backfilled)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("NUM SAMPLES"));

    let (_p, prom) = start_prometheus(&data, dir.path());
    let (_x, pharos) = start_pharos(&ours, None, &[]);
    let (_q, prom_on_ours) = start_prometheus(&backfilled, dir.path());
    // Evaluation times off the 15 s sample grid: Prometheus 2.42's range
    // windows include their left edge, 3.x's (and pharos's) do not.
    let (s, e) = (start as f64 + 7.0, end as f64 - 1.0);
    for q in [
        "demo_requests_total",
        "demo_temp",
        "rate(demo_requests_total[5m])",
        "sum by (code) (demo_requests_total)",
        "max_over_time(demo_temp[10m])",
        "count({__name__=~\"demo_.*\"})",
    ] {
        let a = range(&prom, q, s, e, 60.0);
        let b = range(&pharos, q, s, e, 60.0);
        assert!(!a.is_empty(), "{q}: prometheus returned nothing");
        same(&a, &b, q);
        let c = range(&prom_on_ours, q, s, e, 60.0);
        same(&a, &c, q);
    }
}

#[test]
fn prometheus_serves_a_pharos_dir() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("p.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pharos"))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--config.file={}", cfg.display()))
            .arg("--storage.tsdb.min-block-duration=10s")
            .arg("--storage.tsdb.max-block-duration=30s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        // Wait for at least three blocks cut from the head.
        loop {
            let n = std::fs::read_dir(&data)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.path().join("meta.json").exists())
                        .count()
                })
                .unwrap_or(0);
            if n >= 3 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "pharos cut no blocks"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let _ = c.wait();
    }
    let stopped = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let list = Command::new("promtool")
        .args(["tsdb", "list"])
        .arg(&data)
        .output()
        .unwrap();
    let list_out = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        list.status.success(),
        "{list_out} {}",
        String::from_utf8_lossy(&list.stderr)
    );
    let analyze = Command::new("promtool")
        .args(["tsdb", "analyze"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        analyze.status.success(),
        "{}",
        String::from_utf8_lossy(&analyze.stderr)
    );
    assert!(String::from_utf8_lossy(&analyze.stdout).contains("Highest cardinality"));

    // The served range: from the oldest block's start to the newest's end.
    let mut mint = i64::MAX;
    let mut maxt = i64::MIN;
    for e in std::fs::read_dir(&data).unwrap().filter_map(Result::ok) {
        if let Ok(b) = std::fs::read(e.path().join("meta.json")) {
            let m: serde_json::Value = serde_json::from_slice(&b).unwrap();
            mint = mint.min(m["minTime"].as_i64().unwrap());
            maxt = maxt.max(m["maxTime"].as_i64().unwrap());
        }
    }
    let theirs = dir.path().join("copy");
    copy_dir(&data, &theirs);
    let (_p, prom) = start_prometheus(&theirs, dir.path());
    let (_x, pharos) = start_pharos(&data, None, &[]);
    // Blocks and the head (replayed from pharos's WAL by both servers).
    assert!(stopped > maxt);
    let (s, e) = (mint as f64 / 1000.0, stopped as f64 / 1000.0);
    for q in [
        "up",
        "scrape_samples_scraped",
        "{__name__=~\"scrape_.*\"}",
        "count_over_time(up[5s])",
        "sum(scrape_duration_seconds)",
    ] {
        let a = range(&prom, q, s, e, 1.0);
        let b = range(&pharos, q, s, e, 1.0);
        assert!(
            !a.is_empty(),
            "{q}: prometheus returned nothing ({list_out})"
        );
        same(&a, &b, q);
    }
}
