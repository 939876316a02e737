//! Durability under kill -9: pharos ingests from a fixture target at a high
//! scrape rate and is killed with SIGKILL at random moments, several times,
//! on the same data directory. Every sample a query saw before a kill must
//! be there after the restart, and pharos must come back every time (WAL and
//! head chunk repair).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Fixture, http_get, urlencode};

fn page(n: usize) -> String {
    let mut s = String::from("# TYPE kill_metric gauge\n");
    for i in 0..n {
        s.push_str(&format!("kill_metric{{i=\"{i}\"}} {i}\n"));
    }
    s
}

struct Proc {
    child: Child,
    addr: String,
}

fn start(data: &Path, cfg: &Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pharos"))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--config.file={}", cfg.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("address=") {
                let a: String = line[i + 8..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let _ = tx.send(a);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("pharos did not start after a kill -9");
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_get(&addr, "/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "pharos never became ready");
        thread::sleep(Duration::from_millis(20));
    }
    Proc { child, addr }
}

/// Every (series, timestamp) the server returns for `{job="kill"}` over
/// the last hour.
fn samples(addr: &str) -> BTreeMap<String, BTreeSet<i64>> {
    let q = urlencode("{job=\"kill\"}[1h]");
    let (code, body) = http_get(addr, &format!("/api/v1/query?query={q}"));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let key = s["metric"].to_string();
        let ts: BTreeSet<i64> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
            .collect();
        out.insert(key, ts);
    }
    out
}

#[test]
fn acknowledged_samples_survive_kill_9() {
    let fixture = Fixture::start(&page(300));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 50ms\n  scrape_timeout: 50ms\nscrape_configs:\n  - job_name: kill\n    static_configs:\n      - targets: ['{}']\n",
            fixture.addr
        ),
    )
    .unwrap();
    // A cheap deterministic pseudo-random sequence of kill points.
    let mut x: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rnd = move |lo: u64, hi: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lo + x % (hi - lo)
    };
    let mut seen: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for round in 0..5 {
        let mut p = start(&data, &cfg);
        // Everything acknowledged before the previous kill is still here.
        let now = samples(&p.addr);
        let mut lost = 0usize;
        for (series, ts) in &seen {
            let have = now.get(series);
            lost += ts
                .iter()
                .filter(|t| !have.is_some_and(|h| h.contains(t)))
                .count();
        }
        assert_eq!(lost, 0, "round {round}: {lost} acknowledged samples lost");
        // Ingest for a random while, then kill -9 right after a query saw
        // the data.
        thread::sleep(Duration::from_millis(rnd(500, 3000)));
        seen = samples(&p.addr);
        let n: usize = seen.values().map(BTreeSet::len).sum();
        p.child.kill().unwrap();
        p.child.wait().unwrap();
        eprintln!("round {round}: killed with {n} samples acknowledged");
        assert!(round == 0 || n > 0);
    }
    // Enough was ingested (over 120 scrapes) for chunks to be cut and
    // written to chunks_head/, so restarts also went through head chunks.
    let chunk_bytes: u64 = std::fs::read_dir(data.join("chunks_head"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let per_series = seen.values().map(BTreeSet::len).max().unwrap_or(0);
    eprintln!("chunks_head bytes: {chunk_bytes}, samples per series: {per_series}");
    if per_series > 130 {
        assert!(
            chunk_bytes > 8,
            "chunks were cut but none reached chunks_head/"
        );
    }
    let p = start(&data, &cfg);
    let now = samples(&p.addr);
    for (series, ts) in &seen {
        let have = now.get(series).cloned().unwrap_or_default();
        assert!(
            ts.is_subset(&have),
            "{series}: samples lost after the last kill"
        );
    }
    drop(p);
    fixture.shutdown();
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
