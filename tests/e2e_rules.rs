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

/// (path, body) of every POST a fake Alertmanager received.
type Posts = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A stand-in Alertmanager recording every POST body.
fn fake_alertmanager() -> (String, Posts) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (head, body) = loop {
                let n = c.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((h, b)) = text.split_once("\r\n\r\n") {
                    let len = h
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if b.len() >= len {
                        break (h.to_string(), b.to_string());
                    }
                }
            };
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            g.lock().unwrap().push((path, body));
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, got)
}

#[test]
fn alerts_resent_and_resolved_to_discovered_alertmanager() {
    let fixture = Fixture::start("# TYPE flag gauge\nflag 1\n");
    let (am, posts) = fake_alertmanager();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Flag\n        expr: flag == 1\n        annotations:\n          summary: \"flag is {{ $value }}\"\n",
    )
    .unwrap();
    let sd = dir.path().join("am.json");
    std::fs::write(&sd, format!("[{{\"targets\": [\"{am}\"]}}]")).unwrap();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    replica: a\nrule_files: ['{}']\nalerting:\n  alertmanagers:\n    - path_prefix: /am\n      file_sd_configs:\n        - files: ['{}']\nscrape_configs:\n  - job_name: f\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        sd.display(),
        fixture.addr
    );
    let p = Pharos::start(Some(&cfg), &["--rules.alert.resend-delay=1s"]);
    wait("alertmanager discovered", Duration::from_secs(30), || {
        p.api("/api/v1/alertmanagers").1["data"]["activeAlertmanagers"][0]["url"]
            == format!("http://{am}/am/api/v2/alerts")
    });
    // Firing: sent, then re-sent every resend delay.
    wait("two sends", Duration::from_secs(30), || {
        posts.lock().unwrap().len() >= 2
    });
    let (path, body) = posts.lock().unwrap()[0].clone();
    assert_eq!(path, "/am/api/v2/alerts");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let a = &v[0];
    assert_eq!(a["labels"]["alertname"], "Flag");
    assert_eq!(a["labels"]["replica"], "a", "external labels attached");
    assert_eq!(a["annotations"]["summary"], "flag is 1");
    assert!(
        a["generatorURL"]
            .as_str()
            .unwrap()
            .contains("/graph?g0.expr=flag+%3D%3D+1&g0.tab=1")
    );
    let starts = chrono_ms(a["startsAt"].as_str().unwrap());
    let ends = chrono_ms(a["endsAt"].as_str().unwrap());
    assert!(
        ends > starts + 3_000,
        "endsAt is four resend periods ahead: {a}"
    );
    // Resolve: the next send carries an endsAt in the past.
    fixture.set_page("# TYPE flag gauge\nflag 0\n");
    wait("resolved send", Duration::from_secs(30), || {
        posts.lock().unwrap().iter().any(|(_, b)| {
            let v: serde_json::Value = serde_json::from_str(b).unwrap_or_default();
            v.as_array().into_iter().flatten().any(|a| {
                let e = chrono_ms(a["endsAt"].as_str().unwrap_or(""));
                e > 0 && e <= now_ms() && e > starts
            })
        })
    });
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Milliseconds of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn chrono_ms(s: &str) -> i64 {
    let p = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i64>().ok()).unwrap_or(0);
    let (y, mo, d, h, mi, se, ms) = (
        p(0, 4),
        p(5, 7),
        p(8, 10),
        p(11, 13),
        p(14, 16),
        p(17, 19),
        p(20, 23),
    );
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms
}
