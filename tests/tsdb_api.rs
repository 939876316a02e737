//! End-to-end tests of the TSDB status and admin endpoints on the real
//! binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Pharos, http_request};

#[test]
fn admin_api_is_off_by_default() {
    let p = Pharos::start(None, &[]);
    let (s, b) = http_request(&p.addr, "POST", "/api/v1/admin/tsdb/snapshot", None, "");
    assert_eq!(s, 503, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["errorType"], "unavailable");
    assert_eq!(v["error"], "admin APIs disabled");
    let (s, v) = p.api("/api/v1/status/walreplay");
    assert_eq!(s, 200);
    assert!(v["data"]["current"].is_u64(), "{v}");
}

#[test]
fn status_tsdb_snapshot_delete_and_clean() {
    let p = Pharos::start(None, &["--web.enable-admin-api"]);
    // The built-in configuration scrapes pharos itself.
    p.wait_for("up", Duration::from_secs(60), |r| {
        r.as_array().is_some_and(|a| !a.is_empty())
    });
    let (s, v) = p.api("/api/v1/status/tsdb");
    assert_eq!(s, 200, "{v}");
    let d = &v["data"];
    assert!(d["headStats"]["numSeries"].as_u64().unwrap() > 0, "{v}");
    assert!(d["headStats"]["numLabelPairs"].as_u64().unwrap() > 0, "{v}");
    let names = d["seriesCountByMetricName"].as_array().unwrap();
    assert!(!names.is_empty() && names.len() <= 10, "{v}");
    assert!(
        d["seriesCountByLabelValuePair"][0]["value"]
            .as_u64()
            .unwrap()
            > 0
    );
    let (s, v) = p.api("/api/v1/status/tsdb?limit=2");
    assert_eq!(s, 200);
    assert_eq!(
        v["data"]["labelValueCountByLabelName"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let (s, b) = http_request(&p.addr, "POST", "/api/v1/admin/tsdb/snapshot", None, "");
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let name = v["data"]["name"].as_str().unwrap().to_string();
    let snap = p.data_dir().join("snapshots").join(&name);
    let blocks: Vec<_> = std::fs::read_dir(&snap)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("meta.json").exists())
        .collect();
    assert_eq!(blocks.len(), 1, "the head is written as a block");

    let (s, b) = http_request(
        &p.addr,
        "POST",
        "/api/v1/admin/tsdb/delete_series?match[]=up&end=1",
        None,
        "",
    );
    assert_eq!(s, 204, "{b}");
    let (s, b) = http_request(
        &p.addr,
        "POST",
        "/api/v1/admin/tsdb/delete_series",
        None,
        "",
    );
    assert_eq!(s, 400, "{b}");
    let (s, b) = http_request(
        &p.addr,
        "PUT",
        "/api/v1/admin/tsdb/clean_tombstones",
        None,
        "",
    );
    assert_eq!(s, 204, "{b}");
}

/// A data dir with one damaged block: pharos starts, counts the block as
/// corrupt, and serves the others.
#[test]
fn corrupted_block_is_set_aside_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut om = String::from("# TYPE m gauge\n");
    for i in 0..(3 * 480) {
        om.push_str(&format!("m{{k=\"v\"}} {i} {}\n", 1_700_000_000 + i * 15));
    }
    om.push_str("# EOF\n");
    std::fs::write(dir.path().join("in.om"), om).unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pharos"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(dir.path().join("in.om"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut blocks: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    blocks.sort();
    assert!(blocks.len() >= 3, "{blocks:?}");
    // Damage the chunks of the first block: its index still opens, the
    // segment header does not.
    std::fs::write(blocks[0].join("chunks/000001"), b"garbage").unwrap();

    let addr = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pharos"))
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(&addr).is_err()
        || common::http_get(&addr, "/-/ready").0 != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pharos never became ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = common::http_get(&addr, "/metrics");
    assert!(
        metrics.contains("pharos_tsdb_corrupt_blocks 1"),
        "{metrics}"
    );
    // (The healthy blocks may already have been merged by compaction.)
    assert!(
        !metrics.contains("prometheus_tsdb_blocks_loaded 0"),
        "{metrics}"
    );
    let q = common::urlencode("count_over_time(m[1d])");
    let (s, b) = common::http_get(&addr, &format!("/api/v1/query?query={q}&time=1700100000"));
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let n: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Every sample but those of the damaged block.
    assert!(n > 0.0 && n < (3 * 480) as f64, "{b}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Deleting head data through the admin API is logged to the WAL: after a
/// restart the deleted samples stay deleted (Prometheus's behaviour).
#[test]
fn head_deletion_survives_restart() {
    let data = tempfile::tempdir().unwrap();
    let args = ["--web.enable-admin-api"];
    let mut p = Pharos::start_at(Some(data.path()), None, &args);
    // The built-in configuration scrapes pharos itself (job pharos) and the
    // host collector (job node), at different offsets: take `t` from a
    // successful scrape of the pharos job, so `pharos_tsdb_head_series` has
    // a sample at `t` for the final check.
    let r = p.wait_for(
        "timestamp(pharos_tsdb_head_series)",
        Duration::from_secs(60),
        |r| r.as_array().is_some_and(|a| !a.is_empty()),
    );
    let t = r[0]["value"][1].as_str().unwrap().to_string();
    let q = format!(
        "/api/v1/query?query={}&time={t}",
        common::urlencode("count_over_time(up[10m])")
    );
    let (s, v) = p.api(&q);
    assert_eq!(s, 200, "{v}");
    // One `up` per job of the built-in configuration (pharos, node) that
    // has scraped by then.
    assert!(!v["data"]["result"].as_array().unwrap().is_empty(), "{v}");
    let (s, b) = http_request(
        &p.addr,
        "POST",
        "/api/v1/admin/tsdb/delete_series?match[]=up",
        None,
        "",
    );
    assert_eq!(s, 204, "{b}");
    let (_, v) = p.api(&q);
    assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");
    assert_eq!(p.terminate(), Some(0));

    let p = Pharos::start_at(Some(data.path()), None, &args);
    let (s, v) = p.api("/api/v1/status/walreplay");
    assert_eq!(s, 200, "{v}");
    let (s, v) = p.api(&q);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([]),
        "deleted samples came back after a restart: {v}"
    );
    // Other series of that time are still there.
    let (_, v) = p.api(&format!(
        "/api/v1/query?query={}&time={t}",
        common::urlencode("count_over_time(pharos_tsdb_head_series[10m])")
    ));
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1, "{v}");
}
