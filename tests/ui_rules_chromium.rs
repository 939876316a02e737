//! The Alerts and Rules pages in a real headless Chromium: alerting rules
//! with their firing alerts, recording rules with health, and expressions
//! linking to the expression browser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Fixture, Pharos, have, in_ci};

fn chromium_dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn alerts_and_rules_pages_render() {
    if !have("chromium") {
        assert!(
            !in_ci(),
            "chromium must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipping: chromium not installed");
        return;
    }
    let fx = Fixture::start("# TYPE pool gauge\npool 0.97\n");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: ui-group\n    interval: 1s\n    rules:\n      - record: job:pool:max\n        expr: max by (job) (pool)\n      - alert: PoolNearlyFull\n        expr: pool > 0.9\n        labels:\n          severity: page\n        annotations:\n          summary: \"pool at {{ $value | humanizePercentage }}\"\n",
    )
    .unwrap();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: ui\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        fx.addr
    );
    let p = Pharos::start(Some(&cfg), &[]);
    p.wait_for(
        "ALERTS{alertstate=\"firing\"}",
        Duration::from_secs(30),
        |r| r.as_array().is_some_and(|a| !a.is_empty()),
    );

    let dom = chromium_dump_dom(&format!("http://{}/alerts", p.addr));
    assert!(dom.contains("data-alertname=\"PoolNearlyFull\""), "{dom}");
    assert!(dom.contains("FIRING"), "{dom}");
    assert!(dom.contains("pool at 97%"), "{dom}");
    assert!(
        dom.contains("href=\"query?g0.expr=pool%20%3E%200.9\""),
        "expression links to the browser: {dom}"
    );
    assert!(dom.contains("1 firing, 0 pending, 0 inactive"), "{dom}");

    let dom = chromium_dump_dom(&format!("http://{}/rules", p.addr));
    assert!(dom.contains("data-group=\"ui-group\""), "{dom}");
    assert!(dom.contains("data-rule=\"job:pool:max\""), "{dom}");
    assert!(dom.contains("record: job:pool:max"), "{dom}");
    assert!(
        dom.contains("href=\"query?g0.expr=max%20by%20(job)%20(pool)\""),
        "{dom}"
    );
    assert!(dom.contains("1 groups, 2 rules, 0 failing"), "{dom}");
}
