//! Alerts delivered to a real Alertmanager 0.25 (Debian package
//! `prometheus-alertmanager`), read back with `amtool`. pharos evaluates the
//! seed alerts against synthetic targets; when a real Prometheus is
//! installed it runs the same rules into the same Alertmanager, and both
//! must deliver the same labels and annotations, which must also be the
//! strings written below (what Prometheus renders).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Fixture, Pharos, have, http_get, in_ci};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_ready(addr: &str, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() || http_get(addr, "/-/ready").0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} on {addr} never became ready"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

const RULES: &str = r#"
groups:
  - name: seeds
    interval: 1s
    rules:
      - record: job:http_errors:ratio
        expr: sum by (job) (http_errors) / sum by (job) (http_requests)
      - alert: HighErrorRate
        expr: job:http_errors:ratio > 0.05
        labels:
          severity: page
        annotations:
          summary: "High error rate on {{ $labels.job }}"
          description: "{{ $labels.job }} answers {{ $value | humanizePercentage }} of requests with 5xx ({{ $externalLabels.cluster }})."
      - alert: DatabasePoolExhausted
        expr: db_pool_in_use / db_pool_max >= 0.9
        labels:
          severity: page
          team: "{{ if eq $labels.job \"billing\" }}payments{{ else }}platform{{ end }}"
        annotations:
          summary: "{{ $labels.instance | stripPort }} pool at {{ $value | humanizePercentage }}; {{ 1234567 | humanize }} {{ 1048576 | humanize1024 }} {{ 90061 | humanizeDuration }} {{ \"pool exhausted\" | title }}"
      - alert: BackupTooOld
        expr: time() - last_success_timestamp_seconds > 86400
        labels:
          severity: ticket
        annotations:
          summary: "Last backup of {{ $labels.instance }} finished at {{ with query \"last_success_timestamp_seconds\" }}{{ . | first | value | humanizeTimestamp }}{{ end }}"
      - alert: TargetDown
        expr: up{job="dead"} == 0
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.job }}/{{ $labels.instance }} is down ({{ $value }}, {{ reReplaceAll \":[0-9]+\" \"\" $labels.instance }})"
"#;

fn config(sender: &str, fixture: &str, dead: &str, am: &str, rules: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    cluster: eu\n    sender: {sender}\n\
         rule_files: ['{rules}']\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n\
         scrape_configs:\n  - job_name: billing\n    static_configs:\n      - targets: ['{fixture}']\n  - job_name: dead\n    static_configs:\n      - targets: ['{dead}']\n"
    )
}

/// `amtool alert query sender=<sender> -o json`, as (alertname → (labels, annotations)).
type Alerts = BTreeMap<String, (BTreeMap<String, String>, BTreeMap<String, String>)>;

fn amtool_alerts(am: &str, sender: &str) -> Alerts {
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url=http://{am}"))
        .args(["alert", "query", &format!("sender={sender}"), "-o", "json"])
        .output()
        .expect("run amtool");
    assert!(
        out.status.success(),
        "amtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut res = Alerts::new();
    for a in v.as_array().cloned().unwrap_or_default() {
        let map = |o: &serde_json::Value| -> BTreeMap<String, String> {
            o.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let labels = map(&a["labels"]);
        let name = labels.get("alertname").cloned().unwrap_or_default();
        res.insert(name, (labels, map(&a["annotations"])));
    }
    res
}

fn wait_alerts(am: &str, sender: &str, n: usize) -> Alerts {
    let start = Instant::now();
    loop {
        let a = amtool_alerts(am, sender);
        if a.len() >= n {
            return a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "Alertmanager holds only {a:?} from {sender}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

fn am_binary() -> Option<&'static str> {
    ["alertmanager", "prometheus-alertmanager"]
        .into_iter()
        .find(|b| have(b))
}

#[test]
fn seed_alerts_reach_a_real_alertmanager() {
    let Some(am_bin) = am_binary().filter(|_| have("amtool")) else {
        assert!(
            !in_ci(),
            "alertmanager and amtool must be installed in CI (.ci/run installs prometheus-alertmanager)"
        );
        eprintln!("skipping: alertmanager/amtool not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("am.yml"),
        "route:\n  receiver: 'null'\n  group_wait: 1s\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    let am_port = free_port();
    let am = format!("127.0.0.1:{am_port}");
    let _am = Killed(
        Command::new(am_bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address={am}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager"),
    );
    wait_ready(&am, "alertmanager");

    let rules = dir.path().join("seeds.rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let fixture = Fixture::start(
        "# TYPE db_pool_in_use gauge\ndb_pool_in_use 19\n# TYPE db_pool_max gauge\ndb_pool_max 20\n\
         # TYPE http_errors gauge\nhttp_errors 523\n# TYPE http_requests gauge\nhttp_requests 10000\n\
         # TYPE last_success_timestamp_seconds gauge\nlast_success_timestamp_seconds 1435065584.128\n",
    );
    let dead = format!("127.0.0.1:{}", free_port());
    let rules_path = rules.display().to_string();

    let pharos = Pharos::start(
        Some(&config("pharos", &fixture.addr, &dead, &am, &rules_path)),
        &["--rules.alert.resend-delay=1s"],
    );
    let prom = if have("prometheus") {
        let p = free_port();
        let pdir = tempfile::tempdir().unwrap();
        std::fs::write(
            pdir.path().join("prometheus.yml"),
            config("prometheus", &fixture.addr, &dead, &am, &rules_path),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                pdir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                pdir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{p}"))
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Some((Killed(child), pdir))
    } else {
        assert!(!in_ci(), "prometheus must be installed in CI");
        eprintln!("prometheus not installed: checking pharos against the expected strings only");
        None
    };

    let ours = wait_alerts(&am, "pharos", 4);
    let host = fixture.addr.split(':').next().unwrap().to_string();
    let own = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    type Pairs = Vec<(String, String)>;
    let expected: Vec<(&str, Pairs, Pairs)> = vec![
        (
            "HighErrorRate",
            own(&[("job", "billing"), ("severity", "page")]),
            own(&[
                ("summary", "High error rate on billing"),
                (
                    "description",
                    "billing answers 5.23% of requests with 5xx (eu).",
                ),
            ]),
        ),
        (
            "DatabasePoolExhausted",
            own(&[
                ("job", "billing"),
                ("severity", "page"),
                ("team", "payments"),
            ]),
            vec![(
                "summary".into(),
                format!("{host} pool at 95%; 1.235M 1Mi 1d 1h 1m 1s Pool Exhausted"),
            )],
        ),
        (
            "BackupTooOld",
            own(&[("job", "billing"), ("severity", "ticket")]),
            vec![(
                "summary".into(),
                format!(
                    "Last backup of {} finished at 2015-06-23 13:19:44.128 +0000 UTC",
                    fixture.addr
                ),
            )],
        ),
        (
            "TargetDown",
            own(&[("job", "dead"), ("severity", "warning")]),
            vec![(
                "summary".into(),
                format!("dead/{dead} is down (0, 127.0.0.1)"),
            )],
        ),
    ];
    for (name, labels, anns) in expected {
        let (l, a) = ours
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from Alertmanager: {ours:?}"));
        for (k, v) in &labels {
            assert_eq!(l.get(k), Some(v), "{name} label {k}: {l:?}");
        }
        assert_eq!(
            l.get("cluster").map(String::as_str),
            Some("eu"),
            "external labels attached"
        );
        let want: BTreeMap<String, String> = anns.into_iter().collect();
        assert_eq!(a, &want, "{name} annotations");
    }

    // pharos's own view of the same alerts and of the Alertmanager.
    let (s, v) = pharos.api("/api/v1/alerts");
    assert_eq!(s, 200);
    assert!(v["data"]["alerts"].as_array().unwrap().len() >= 4, "{v}");
    let (_, v) = pharos.api("/api/v1/alertmanagers");
    assert_eq!(
        v["data"]["activeAlertmanagers"][0]["url"],
        format!("http://{am}/api/v2/alerts")
    );
    let (_, v) = pharos.api("/api/v1/rules?type=alert");
    assert_eq!(v["data"]["groups"][0]["rules"].as_array().unwrap().len(), 4);

    if let Some(_prom) = &prom {
        let theirs = wait_alerts(&am, "prometheus", 4);
        for (name, (l, a)) in &ours {
            let (tl, ta) = theirs
                .get(name)
                .unwrap_or_else(|| panic!("prometheus did not send {name}: {theirs:?}"));
            let strip = |m: &BTreeMap<String, String>| {
                let mut m = m.clone();
                m.remove("sender");
                m
            };
            assert_eq!(
                strip(l),
                strip(tl),
                "{name}: labels differ from Prometheus's"
            );
            assert_eq!(a, ta, "{name}: annotations differ from Prometheus's");
        }
    }
}
