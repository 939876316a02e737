//! Rules in the running server: recording rules write series, alerting
//! rules show up in `/api/v1/rules` and `/api/v1/alerts` and write `ALERTS`,
//! the UI pages are served, and a reload with a broken rule file fails
//! (500 from `/-/reload`) while the running rules keep evaluating; a good
//! file then replaces them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, Pharos, http_request};

const GOOD: &str = "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - record: job:pool:ratio\n        expr: sum by (job) (db_pool_in_use) / sum by (job) (db_pool_max)\n      - alert: PoolHigh\n        expr: job:pool:ratio > 0.9\n        labels:\n          severity: page\n        annotations:\n          summary: \"{{ $labels.job }} at {{ $value | humanizePercentage }}\"\n";

const NEWER: &str = "groups:\n  - name: g2\n    interval: 1s\n    rules:\n      - record: job:pool:in_use\n        expr: sum by (job) (db_pool_in_use)\n";

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rules_evaluate_and_reload() {
    let fixture = Fixture::start(
        "# TYPE db_pool_in_use gauge\ndb_pool_in_use 19\n# TYPE db_pool_max gauge\ndb_pool_max 20\n",
    );
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("r.yml");
    std::fs::write(&rules, GOOD).unwrap();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: db\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        fixture.addr
    );
    let p = Pharos::start(Some(&cfg), &["--web.enable-lifecycle"]);

    p.wait_for("job:pool:ratio", Duration::from_secs(30), |r| {
        r.as_array().is_some_and(|a| a.len() == 1)
    });
    let alerts = p.wait_for(
        "ALERTS{alertstate=\"firing\"}",
        Duration::from_secs(30),
        |r| r.as_array().is_some_and(|a| a.len() == 1),
    );
    assert_eq!(alerts[0]["metric"]["alertname"], "PoolHigh");
    assert_eq!(alerts[0]["metric"]["job"], "db");

    let (s, v) = p.api("/api/v1/alerts");
    assert_eq!(s, 200);
    let a = &v["data"]["alerts"][0];
    assert_eq!(a["annotations"]["summary"], "db at 95%");
    assert_eq!(a["state"], "firing");
    assert_eq!(a["value"], "9.5e-01");
    let (_, v) = p.api("/api/v1/rules");
    let g = &v["data"]["groups"][0];
    assert_eq!(g["name"], "g");
    assert_eq!(g["file"], rules.display().to_string());
    assert_eq!(g["interval"], 1.0);
    assert_eq!(g["rules"][0]["health"], "ok");
    assert_eq!(g["rules"][1]["alerts"][0]["labels"]["severity"], "page");
    for page in [
        "/alerts",
        "/rules",
        "/rules-ui/alerts.js",
        "/rules-ui/rules.js",
    ] {
        assert_eq!(p.get(page).0, 200, "{page}");
    }

    // A broken rule file: the reload fails, the old rules keep running.
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: sum(\n",
    )
    .unwrap();
    let (s, body) = http_request(&p.addr, "POST", "/-/reload", None, "");
    assert_eq!(s, 500, "{body}");
    assert!(body.contains("r.yml:5:15"), "positioned error in {body}");
    let (_, v) = p.api("/api/v1/rules");
    assert_eq!(v["data"]["groups"][0]["name"], "g");
    let before = p.query("timestamp(job:pool:ratio)")[0]["value"][1]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    wait(
        "evaluation after a failed reload",
        Duration::from_secs(10),
        || {
            p.query("timestamp(job:pool:ratio)")
                .get(0)
                .and_then(|r| r["value"][1].as_str())
                .and_then(|s| s.parse::<f64>().ok())
                .is_some_and(|t| t > before)
        },
    );

    // A good file replaces the groups; the old recorded series goes stale.
    std::fs::write(&rules, NEWER).unwrap();
    let (s, body) = http_request(&p.addr, "POST", "/-/reload", None, "");
    assert_eq!(s, 200, "{body}");
    let (_, v) = p.api("/api/v1/rules");
    assert_eq!(v["data"]["groups"][0]["name"], "g2");
    assert_eq!(v["data"]["groups"].as_array().unwrap().len(), 1);
    p.wait_for("job:pool:in_use", Duration::from_secs(30), |r| {
        r.as_array().is_some_and(|a| a.len() == 1)
    });
    p.wait_for("job:pool:ratio", Duration::from_secs(30), |r| {
        r.as_array().is_some_and(|a| a.is_empty())
    });
}
