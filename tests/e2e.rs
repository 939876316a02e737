//! End-to-end: the real binary scrapes a fixture target, stores the
//! samples, and answers PromQL over the HTTP API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fixture, Pharos, http_request, urlencode};

const PAGE: &str = "# HELP fixture_requests_total Requests.\n# TYPE fixture_requests_total counter\nfixture_requests_total{path=\"/a\"} 5\nfixture_requests_total{path=\"/b\"} 7\n# TYPE fixture_temp gauge\nfixture_temp 21.5\n";

fn config(targets: &[&str]) -> String {
    let t: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n  - job_name: fixture\n    static_configs:\n      - targets: [{}]\n        labels:\n          team: core\n",
        t.join(", ")
    )
}

fn value(r: &serde_json::Value) -> f64 {
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn scrape_store_query_and_staleness() {
    let fx = Fixture::start(PAGE);
    let p = Pharos::start(Some(&config(&[&fx.addr])), &[]);
    let up = p.wait_for("up{job=\"fixture\"}", Duration::from_secs(30), |r| {
        r.as_array().is_some_and(|a| a.len() == 1) && value(r) == 1.0
    });
    assert_eq!(up[0]["metric"]["instance"], fx.addr.as_str());
    assert_eq!(up[0]["metric"]["team"], "core");

    let r = p.query("fixture_temp");
    assert_eq!(value(&r), 21.5);
    assert_eq!(r[0]["metric"]["job"], "fixture");
    let r = p.query("sum(fixture_requests_total)");
    assert_eq!(value(&r), 12.0);
    for m in [
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        let r = p.query(&format!("{m}{{job=\"fixture\"}}"));
        assert_eq!(r.as_array().unwrap().len(), 1, "{m}");
    }
    assert_eq!(
        value(&p.query("scrape_samples_scraped{job=\"fixture\"}")),
        3.0
    );

    // A series that leaves the page goes stale at the next scrape.
    fx.set_page("fixture_requests_total{path=\"/a\"} 6\n");
    p.wait_for("fixture_temp", Duration::from_secs(10), |r| {
        r.as_array().is_some_and(|a| a.is_empty())
    });
    assert_eq!(
        p.query("fixture_requests_total").as_array().unwrap().len(),
        1
    );

    // A target that goes away: up drops to 0 and its series go stale.
    fx.shutdown();
    p.wait_for("up{job=\"fixture\"}", Duration::from_secs(10), |r| {
        value(r) == 0.0
    });
    p.wait_for("fixture_requests_total", Duration::from_secs(10), |r| {
        r.as_array().is_some_and(|a| a.is_empty())
    });
    let (_, t) = p.api("/api/v1/targets");
    let active = &t["data"]["activeTargets"][0];
    assert_eq!(active["health"], "down");
    assert!(!active["lastError"].as_str().unwrap().is_empty());
}

#[test]
fn api_endpoints_and_errors() {
    let fx = Fixture::start(PAGE);
    let p = Pharos::start(Some(&config(&[&fx.addr])), &[]);
    p.wait_for("fixture_temp", Duration::from_secs(30), |r| {
        r.as_array().is_some_and(|a| a.len() == 1)
    });

    let (s, body) = p.get("/-/healthy");
    assert_eq!(s, 200, "{body}");
    assert_eq!(p.get("/-/ready").0, 200);

    // Range query over the last minute.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let (s, v) = p.api(&format!(
        "/api/v1/query_range?query=fixture_temp&start={}&end={now}&step=1",
        now - 60.0
    ));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    assert!(
        !v["data"]["result"][0]["values"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Form POST.
    let (s, b) = http_request(
        &p.addr,
        "POST",
        "/api/v1/query",
        Some("application/x-www-form-urlencoded"),
        "query=fixture_temp%20*%202",
    );
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "43");

    // Series, labels, label values.
    let (s, v) = p.api(&format!(
        "/api/v1/series?match[]={}",
        urlencode("{job=\"fixture\"}")
    ));
    assert_eq!(s, 200, "{v}");
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["__name__"] == "fixture_temp")
    );
    let (_, v) = p.api("/api/v1/labels");
    assert!(v["data"].as_array().unwrap().iter().any(|l| l == "path"));
    let (_, v) = p.api("/api/v1/label/path/values");
    assert_eq!(v["data"], serde_json::json!(["/a", "/b"]));

    // Errors use Prometheus's envelope.
    let (s, v) = p.api("/api/v1/query?query=sum(");
    assert_eq!(s, 400);
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    let (s, v) = p.api(&format!(
        "/api/v1/query_range?query=up&start={now}&end={}&step=1",
        now - 10.0
    ));
    assert_eq!((s, v["errorType"].as_str()), (400, Some("bad_data")));

    let (s, v) = p.api("/api/v1/status/buildinfo");
    assert_eq!(s, 200);
    assert!(v["data"]["version"].is_string());
    let (_, v) = p.api("/api/v1/status/config");
    assert!(v["data"]["yaml"].as_str().unwrap().contains("fixture"));

    // pharos's own metrics.
    let (s, m) = p.get("/metrics");
    assert_eq!(s, 200);
    assert!(m.contains("pharos_tsdb_head_series"), "{m}");
}

#[test]
fn built_in_config_scrapes_itself() {
    let mut p = Pharos::start(None, &[]);
    let r = p.wait_for("up{job=\"pharos\"}", Duration::from_secs(40), |r| {
        r.as_array().is_some_and(|a| a.len() == 1)
    });
    assert_eq!(value(&r), 1.0);
    assert!(p.data_dir().is_dir());
    assert_eq!(
        p.terminate(),
        Some(0),
        "log:\n{}",
        p.log.lock().unwrap().join("\n")
    );
}

#[test]
fn bad_config_fails_start_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yml");
    std::fs::write(&f, "global:\n  scrape_interval: 1x\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pharos"))
        .arg(format!("--config.file={}", f.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("d").display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yml:2:"), "{err}");
}

#[test]
fn check_config_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(&good, config(&["localhost:9100"])).unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n    static_configs: [{targets: ['x:1']}]\n").unwrap();
    let run = |f: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pharos"))
            .args(["check", "config"])
            .arg(f)
            .output()
            .unwrap()
    };
    let o = run(&good);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("SUCCESS"));
    let o = run(&bad);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.yml:4:21:")
            && err.contains("scrape timeout greater than scrape interval"),
        "{err}"
    );
}
