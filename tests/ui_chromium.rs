//! The expression browser in a real headless Chromium: the graph tab must
//! draw the scraped series as SVG lines.
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
fn graph_tab_draws_lines() {
    if !have("chromium") {
        assert!(
            !in_ci(),
            "chromium must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipping: chromium not installed");
        return;
    }
    let fx = Fixture::start("ui_fixture_a 1\nui_fixture_b 2\n");
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n  - job_name: ui\n    static_configs:\n      - targets: ['{}']\n",
        fx.addr
    );
    let p = Pharos::start(Some(&cfg), &[]);
    p.wait_for(
        "count_over_time(ui_fixture_a[1m])",
        Duration::from_secs(30),
        |r| {
            r[0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                >= 3.0
        },
    );

    // Prometheus's legacy /graph URL redirects to /query and keeps the query.
    let (s, _) = p.get("/graph?g0.expr=up&g0.tab=0");
    assert!(
        s == 301 || s == 302 || s == 303 || s == 307 || s == 308,
        "status {s}"
    );

    let url = format!(
        "http://{}/query?g0.expr={}&g0.tab=graph&g0.range_input=5m",
        p.addr,
        common::urlencode("{__name__=~\"ui_fixture_.*\"}")
    );
    let dom = chromium_dump_dom(&url);
    let lines: Vec<&str> = dom
        .split("<path")
        .skip(1)
        .filter(|p| p.contains("series-line"))
        .collect();
    assert_eq!(lines.len(), 2, "expected two series lines in:\n{dom}");
    for l in lines {
        let d = l.split("d=\"").nth(1).unwrap_or("");
        assert!(d.starts_with('M') && d.contains('L'), "empty path: {l}");
    }
    assert!(
        dom.contains("ui_fixture_a") && dom.contains("ui_fixture_b"),
        "legend missing"
    );

    // The table tab lists the instant values.
    let url = format!("http://{}/query?g0.expr=ui_fixture_b&g0.tab=table", p.addr);
    let dom = chromium_dump_dom(&url);
    assert!(
        dom.contains("ui_fixture_b") && dom.contains(">2<"),
        "table missing value:\n{dom}"
    );

    // The targets page shows the target as up.
    let dom = chromium_dump_dom(&format!("http://{}/targets", p.addr));
    assert!(
        dom.contains(&fx.addr) && dom.to_lowercase().contains("up"),
        "targets page:\n{dom}"
    );
}
