//! Differential test against a real Prometheus 2.42 (Debian package
//! `prometheus`): both scrape the same synthetic targets and must hold the
//! same series; when a target vanishes, its series go stale in both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Pharos, have, http_get, in_ci, shared_dir, urlencode};

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

fn synth(port: u16) -> Killed {
    let script = shared_dir().join("bench/synth_exporter.py");
    let c = Command::new("python3")
        .arg(script)
        .args(["--targets", "1", "--series", "60", "--base-port"])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("start synth_exporter.py");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "synth exporter did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Killed(c)
}

fn api(addr: &str, path: &str) -> serde_json::Value {
    let (s, b) = http_get(addr, path);
    assert_eq!(s, 200, "{addr}{path}: {b}");
    serde_json::from_str(&b).unwrap()
}

fn query(addr: &str, q: &str) -> serde_json::Value {
    api(addr, &format!("/api/v1/query?query={}", urlencode(q)))["data"]["result"].clone()
}

/// The query result, or `None` while the server is not ready (Prometheus
/// answers 503 until its storage has started).
fn try_query(addr: &str, q: &str) -> Option<serde_json::Value> {
    let (s, b) = http_get(addr, &format!("/api/v1/query?query={}", urlencode(q)));
    if s != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&b).ok()?;
    Some(v["data"]["result"].clone())
}

fn series_set(addr: &str, sel: &str) -> BTreeSet<String> {
    let v = api(addr, &format!("/api/v1/series?match[]={}", urlencode(sel)));
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.to_string())
        .collect()
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn scalar(r: &serde_json::Value) -> Option<f64> {
    r.get(0)?["value"][1].as_str()?.parse().ok()
}

#[test]
fn same_series_and_staleness_as_prometheus() {
    if !have("prometheus") {
        assert!(
            !in_ci(),
            "prometheus must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipping: prometheus not installed");
        return;
    }
    let (pa, pb) = (free_port(), free_port());
    let a = synth(pa);
    let b = synth(pb);
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: synth\n    static_configs:\n      - targets: ['127.0.0.1:{pa}', '127.0.0.1:{pb}']\n"
    );

    let prom_dir = tempfile::tempdir().unwrap();
    std::fs::write(prom_dir.path().join("p.yml"), &cfg).unwrap();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                prom_dir.path().join("p.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let pharos = Pharos::start(Some(&cfg), &[]);

    for addr in [prom_addr.as_str(), pharos.addr.as_str()] {
        wait("both targets up", Duration::from_secs(60), || {
            std::net::TcpStream::connect(addr).is_ok()
                && try_query(addr, "sum(up{job=\"synth\"})")
                    .is_some_and(|r| scalar(&r) == Some(2.0))
                && scalar(&query(addr, "sum(up{job=\"synth\"})")) == Some(2.0)
        });
    }
    std::thread::sleep(Duration::from_secs(2));

    let sel = "{job=\"synth\"}";
    let ours = series_set(&pharos.addr, sel);
    let theirs = series_set(&prom_addr, sel);
    assert!(
        theirs.len() > 100,
        "prometheus has only {} series",
        theirs.len()
    );
    assert_eq!(ours, theirs, "series differ between pharos and prometheus");

    let count_q = "count({job=\"synth\", __name__!~\"up|scrape_.*\"})";
    let before = scalar(&query(&prom_addr, count_q)).unwrap();
    assert_eq!(scalar(&query(&pharos.addr, count_q)), Some(before));

    // Target b vanishes: both mark its series stale; only a's remain.
    drop(b);
    for addr in [prom_addr.as_str(), pharos.addr.as_str()] {
        wait("target b stale", Duration::from_secs(20), || {
            scalar(&query(addr, count_q)).is_some_and(|n| n < before)
                && scalar(&query(addr, "sum(up{job=\"synth\"})")) == Some(1.0)
        });
    }
    let after_prom = scalar(&query(&prom_addr, count_q));
    let after_ours = scalar(&query(&pharos.addr, count_q));
    assert_eq!(after_ours, after_prom);
    assert_eq!(after_ours, Some(before / 2.0));
    drop(a);
}
