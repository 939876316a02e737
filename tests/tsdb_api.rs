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
