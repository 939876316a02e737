//! End-to-end tests of issue 5's binary parts: file discovery through the
//! running server, `POST /-/reload` behind `--web.enable-lifecycle`, the
//! reload metrics, `auto-reload-config`, `/api/v1/scrape_pools`, the host
//! collector at `/metrics/node` scraped by the built-in configuration, and
//! `pharos check service-discovery`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixture, Pharos, http_request};

fn metric(p: &Pharos, name: &str) -> Option<f64> {
    let (_, body) = p.get("/metrics");
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config_with(job: &str, body: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n{body}"
    )
}

#[test]
fn reload_endpoint_metrics_and_file_discovery() {
    let fx = Fixture::start("fixture_up 1\n");
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.json");
    std::fs::write(
        &targets,
        format!(
            r#"[{{"targets":["{}"],"labels":{{"env":"e2e"}}}}]"#,
            fx.addr
        ),
    )
    .unwrap();
    let cfg = config_with(
        "fs",
        &format!(
            "    file_sd_configs:\n      - files: ['{}']\n",
            targets.display()
        ),
    );
    let mut p = Pharos::start(Some(&cfg), &["--web.enable-lifecycle"]);
    p.wait_for(
        "fixture_up{env=\"e2e\",job=\"fs\"}",
        Duration::from_secs(30),
        |r| r.as_array().is_some_and(|a| a.len() == 1),
    );
    assert_eq!(
        metric(&p, "pharos_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(metric(&p, "pharos_config_last_reload_success_timestamp_seconds").unwrap() > 1e9);
    assert!(metric(&p, "process_resident_memory_bytes").unwrap() > 0.0);
    let (_, pools) = p.api("/api/v1/scrape_pools");
    assert_eq!(pools["data"]["scrapePools"], serde_json::json!(["fs"]));

    // A good reload adds a job.
    let cfg_path = p.dir.path().join("prometheus.yml");
    let two = format!(
        "{cfg}  - job_name: second\n    static_configs:\n      - targets: ['{}']\n",
        fx.addr
    );
    std::fs::write(&cfg_path, &two).unwrap();
    let (s, body) = http_request(&p.addr, "POST", "/-/reload", None, "");
    assert_eq!(s, 200, "{body}");
    let (_, pools) = p.api("/api/v1/scrape_pools");
    assert_eq!(
        pools["data"]["scrapePools"],
        serde_json::json!(["fs", "second"])
    );

    // A broken file keeps the running configuration; the answer and the
    // metric say so, naming file:line:col.
    std::fs::write(&cfg_path, format!("{two}    scrape_timeout: 1h\n")).unwrap();
    let (s, body) = http_request(&p.addr, "PUT", "/-/reload", None, "");
    assert_eq!(s, 500);
    assert!(
        body.starts_with(&format!("failed to reload config: {}:", cfg_path.display()))
            && body.contains("scrape timeout greater than scrape interval"),
        "{body}"
    );
    assert_eq!(
        metric(&p, "pharos_config_last_reload_successful"),
        Some(0.0)
    );
    let (_, pools) = p.api("/api/v1/scrape_pools");
    assert_eq!(
        pools["data"]["scrapePools"],
        serde_json::json!(["fs", "second"])
    );
    assert!(
        p.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("Error reloading config") && l.contains(":12:21:")),
        "no positioned log line"
    );

    // The file changes: the new target shows up with its labels.
    std::fs::write(
        &targets,
        format!(
            r#"[{{"targets":["{}"],"labels":{{"env":"moved"}}}}]"#,
            fx.addr
        ),
    )
    .unwrap();
    p.wait_for(
        "fixture_up{env=\"moved\",job=\"fs\"}",
        Duration::from_secs(30),
        |r| r.as_array().is_some_and(|a| a.len() == 1),
    );
    let (_, t) = p.api("/api/v1/targets?state=active&scrapePool=fs");
    let t = &t["data"]["activeTargets"][0];
    assert_eq!(t["labels"]["env"], "moved");
    assert_eq!(
        t["discoveredLabels"]["__meta_filepath"],
        targets.display().to_string()
    );
    p.terminate();
}

#[test]
fn lifecycle_api_is_off_by_default() {
    let p = Pharos::start(Some("scrape_configs: []\n"), &[]);
    let (s, body) = http_request(&p.addr, "POST", "/-/reload", None, "");
    assert_eq!(s, 403);
    assert_eq!(body, "Lifecycle API is not enabled.");
}

#[test]
fn auto_reload_picks_up_edits() {
    let p = Pharos::start(
        Some("scrape_configs: []\n"),
        &[
            "--enable-feature=auto-reload-config",
            "--config.auto-reload-interval=1s",
        ],
    );
    std::fs::write(
        p.dir.path().join("prometheus.yml"),
        "scrape_configs:\n  - job_name: late\n    static_configs:\n      - targets: ['127.0.0.1:1']\n",
    )
    .unwrap();
    wait("the edited config to load", Duration::from_secs(20), || {
        let (_, pools) = p.api("/api/v1/scrape_pools");
        pools["data"]["scrapePools"] == serde_json::json!(["late"])
    });
}

#[test]
fn config_auto_reload_flag_picks_up_edits() {
    let p = Pharos::start(
        Some("scrape_configs: []\n"),
        &["--config.auto-reload", "--config.auto-reload-interval=1s"],
    );
    std::fs::write(
        p.dir.path().join("prometheus.yml"),
        "scrape_configs:\n  - job_name: edited\n    static_configs:\n      - targets: ['127.0.0.1:1']\n",
    )
    .unwrap();
    wait("the edited config to load", Duration::from_secs(20), || {
        let (_, pools) = p.api("/api/v1/scrape_pools");
        pools["data"]["scrapePools"] == serde_json::json!(["edited"])
    });
}

#[test]
fn builtin_config_scrapes_the_host_collector() {
    let p = Pharos::start(None, &[]);
    let (s, page) = p.get("/metrics/node");
    assert_eq!(s, 200);
    if std::path::Path::new("/proc/stat").exists() {
        assert!(page.contains("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}"));
        assert!(page.contains("# TYPE node_memory_MemTotal_bytes gauge"));
    }
    let (_, pools) = p.api("/api/v1/scrape_pools");
    assert_eq!(
        pools["data"]["scrapePools"],
        serde_json::json!(["node", "pharos"])
    );
    p.wait_for("up{job=\"node\"}", Duration::from_secs(40), |r| {
        r.as_array()
            .and_then(|a| a.first())
            .is_some_and(|s| s["value"][1] == "1")
    });
}

#[test]
fn check_service_discovery_prints_discovered_and_relabeled_labels() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.yml"),
        "- targets: ['a:9100', 'drop:1']\n  labels:\n    team: x\n",
    )
    .unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        "scrape_configs:\n  - job_name: node\n    file_sd_configs:\n      - files: ['t.yml']\n    relabel_configs:\n      - {source_labels: [__address__], regex: 'drop:.*', action: drop}\n      - {source_labels: [__meta_filepath], target_label: src}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pharos"))
        .args(["check", "service-discovery"])
        .arg(&cfg)
        .arg("node")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 2);
    let file = dir.path().join("t.yml").display().to_string();
    assert_eq!(a[0]["discoveredLabels"]["__address__"], "a:9100");
    assert_eq!(a[0]["discoveredLabels"]["__meta_filepath"], file);
    assert_eq!(a[0]["discoveredLabels"]["job"], "node");
    assert_eq!(a[0]["discoveredLabels"]["__scrape_interval__"], "1m");
    assert_eq!(a[0]["labels"]["instance"], "a:9100");
    assert_eq!(a[0]["labels"]["src"], file);
    assert_eq!(a[0]["labels"]["team"], "x");
    assert!(a[0]["labels"].get("__meta_filepath").is_none());
    assert_eq!(a[1]["discoveredLabels"]["__address__"], "drop:1");
    assert_eq!(a[1]["labels"], serde_json::json!({}));

    let out = Command::new(env!("CARGO_BIN_EXE_pharos"))
        .args(["check", "service-discovery"])
        .arg(&cfg)
        .arg("nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Job nope not found. Select one of:\n\tnode\n"
    );
}
