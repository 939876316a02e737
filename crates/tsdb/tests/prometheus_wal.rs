//! Compatibility: we replay the WAL and head chunks Prometheus writes.
//!
//! Prometheus 2.x scrapes itself for a few seconds and is killed (kill -9,
//! so its WAL ends wherever it was). `promtool tsdb dump` tells what
//! Prometheus itself reads back from that directory; `open_head` on the same
//! directory must hold exactly the same samples. Skipped (with a message)
//! when `prometheus` or `promtool` is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pharos_model::{MatchOp, Matcher};
use pharos_storage::Queryable;
use pharos_tsdb::{HeadOptions, WalOptions, open_head};

fn installed(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Prometheus's own count of appended samples, asked over plain HTTP (0
/// while it is not answering yet).
fn head_samples(port: u16) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let req = "GET /api/v1/query?query=sum(prometheus_tsdb_head_samples_appended_total) HTTP/1.0\r\nHost: x\r\n\r\n";
    if c.write_all(req.as_bytes()).is_err() {
        return 0.0;
    }
    let mut body = String::new();
    let _ = c.read_to_string(&mut body);
    // ..."value":[1700000000.123,"1234"]...
    body.rsplit_once(",\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

type Dump = BTreeMap<(String, i64), u64>;

fn canonical_bits(v: f64) -> u64 {
    // promtool prints every NaN (stale markers included) as "NaN".
    if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

#[test]
fn we_replay_what_prometheus_wrote() {
    compare("1s", 6, true);
}

/// Fast scrapes and a clean shutdown: Prometheus cuts chunks and writes
/// them to its `chunks_head/`, which we load (and skip the WAL samples they
/// hold) as Prometheus does.
#[test]
fn we_load_prometheus_head_chunks() {
    compare("50ms", 20, false);
}

fn compare(interval: &str, secs: u64, kill: bool) {
    if !installed("prometheus") || !installed("promtool") {
        eprintln!("prometheus/promtool not installed: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it scrape for `secs`, and on, under load, until its head holds a
    // few hundred samples (a slow start must not leave too little to compare).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs)
        || (head_samples(port) < 2_000.0 && start.elapsed() < Duration::from_secs(120))
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    if kill {
        child.kill().unwrap();
    } else {
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
    }
    child.wait().unwrap();

    let out = Command::new("promtool")
        .args(["tsdb", "dump"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut theirs: Dump = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut it = line.rsplitn(3, ' ');
        let t: i64 = it.next().unwrap().parse().unwrap();
        let v: f64 = match it.next().unwrap() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse().unwrap(),
        };
        theirs.insert((it.next().unwrap().to_string(), t), canonical_bits(v));
    }
    assert!(
        theirs.len() > 100,
        "Prometheus wrote only {} samples",
        theirs.len()
    );

    let (head, hw) = open_head(&data, HeadOptions::default(), WalOptions::default()).unwrap();
    let rs = hw.replay_stats();
    eprintln!("replay of Prometheus's data: {rs:?}");
    if !kill {
        assert!(
            rs.mmapped_chunks > 0,
            "no head chunk of Prometheus's was loaded"
        );
    }
    let q = head.querier(i64::MIN, i64::MAX).unwrap();
    let m = Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap();
    let mut set = q.select(true, None, &[m]);
    let mut ours: Dump = BTreeMap::new();
    while let Some(mut s) = set.next() {
        let l = format!("{:?}", s.labels);
        while let Some(x) = s.samples.next() {
            ours.insert((l.clone(), x.t), canonical_bits(x.v));
        }
    }
    assert_eq!(
        ours.len(),
        theirs.len(),
        "sample counts differ; replay stats {rs:?}"
    );
    let diff: Vec<_> = theirs
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(*v))
        .take(5)
        .collect();
    assert!(diff.is_empty(), "samples differ, e.g. {diff:?}");
}
