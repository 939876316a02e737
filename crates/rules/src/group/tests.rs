#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::file::parse_rule_file;
use crate::rule::AlertState;
use pharos_promql::{Engine, Value};
use pharos_template::QuerySample;
use pharos_tsdb::{Head, HeadOptions};

struct EngineQuery(Arc<Head>, Engine);

impl QueryFunc for EngineQuery {
    fn query(&self, q: &str, ts: i64) -> Result<Vec<QuerySample>, String> {
        match self.1.instant_query(&*self.0, q, ts) {
            Ok(r) => match r.value {
                Value::Vector(v) => Ok(v
                    .into_iter()
                    .map(|s| QuerySample {
                        labels: s.metric,
                        value: if s.h.is_some() { 0.0 } else { s.v },
                        histogram: s.h,
                    })
                    .collect()),
                Value::Scalar { v, .. } => Ok(vec![QuerySample {
                    labels: Labels::empty(),
                    value: v,
                    histogram: None,
                }]),
                _ => Err("rule result is not a vector or scalar".into()),
            },
            Err(e) => Err(e.to_string()),
        }
    }
}

#[derive(Default)]
struct Sent(parking_lot::Mutex<Vec<(String, Alert)>>);

impl NotifyFunc for Sent {
    fn notify(&self, expr: &str, alerts: Vec<Alert>) {
        let mut s = self.0.lock();
        for a in alerts {
            s.push((expr.to_string(), a));
        }
    }
}

fn setup() -> (Arc<Head>, Arc<Sent>, GroupOptions) {
    let head = Arc::new(Head::new(HeadOptions::default()));
    let sent = Arc::new(Sent::default());
    let opts = GroupOptions {
        query: Arc::new(EngineQuery(head.clone(), Engine::default())),
        notify: sent.clone(),
        appendable: head.clone(),
        queryable: head.clone(),
        external_labels: Labels::from_pairs(&[("cluster", "eu")]),
        external_url: "http://pharos:9090".into(),
        resend_delay: 60_000,
        outage_tolerance: 3_600_000,
        for_grace_period: 600_000,
        default_interval: 60_000,
        default_query_offset: 0,
    };
    (head, sent, opts)
}

fn add(head: &Head, pairs: &[(&str, &str)], t: i64, v: f64) {
    let mut app = head.appender();
    app.append(0, &Labels::from_pairs(pairs), t, v).unwrap();
    app.commit().unwrap();
}

fn query(head: &Arc<Head>, q: &str, ts: i64) -> Vec<QuerySample> {
    EngineQuery(head.clone(), Engine::default())
        .query(q, ts)
        .unwrap()
}

const RULES: &str = r#"
groups:
  - name: g
    interval: 1m
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: TargetDown
        expr: up == 0
        for: 2m
        labels:
          severity: "{{ if eq $labels.job \"db\" }}page{{ else }}ticket{{ end }}"
        annotations:
          summary: "{{ $labels.instance }} of {{ $labels.job }} down ({{ $value }}) in {{ $externalLabels.cluster }}"
"#;

#[test]
fn recording_and_alert_lifecycle() {
    let (head, sent, opts) = setup();
    let def = &parse_rule_file(RULES, "r.yml").unwrap().groups[0];
    let mut g = Group::new(def, &opts, false);
    let inst = [("__name__", "up"), ("job", "db"), ("instance", "h:1")];
    for m in 0..10 {
        let v = if (2..6).contains(&m) { 0.0 } else { 1.0 };
        add(&head, &inst, m * 60_000, v);
    }
    // t=1m: up=1, no alert.
    g.eval(60_000, &opts);
    assert_eq!(query(&head, "job:up:sum", 60_000)[0].value, 1.0);
    assert!(g.rules[1].active.is_empty());
    // t=2m: up=0 → pending.
    g.eval(120_000, &opts);
    let a = g.rules[1].active.values().next().unwrap().clone();
    assert_eq!(a.state, AlertState::Pending);
    assert_eq!(a.labels.get("severity"), Some("page"));
    assert_eq!(
        a.annotations,
        vec![("summary".into(), "h:1 of db down (0) in eu".into())]
    );
    let alerts = query(&head, "ALERTS", 120_000);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].labels.get("alertstate"), Some("pending"));
    assert_eq!(query(&head, "ALERTS_FOR_STATE", 120_000)[0].value, 120.0);
    assert!(sent.0.lock().is_empty(), "pending alerts are not sent");
    // t=3m: still pending (for 2m); t=4m: firing.
    g.eval(180_000, &opts);
    assert_eq!(
        g.rules[1].active.values().next().unwrap().state,
        AlertState::Pending
    );
    g.eval(240_000, &opts);
    let a = g.rules[1].active.values().next().unwrap().clone();
    assert_eq!(a.state, AlertState::Firing);
    assert_eq!(a.fired_at, 240_000);
    assert_eq!(sent.0.lock().len(), 1);
    let (expr, s) = sent.0.lock()[0].clone();
    assert_eq!(expr, "up == 0");
    assert_eq!(s.valid_until, 240_000 + 4 * 60_000);
    // t=5m: still firing, resend delay 1m not yet passed (strictly after).
    g.eval(300_000, &opts);
    assert_eq!(sent.0.lock().len(), 1);
    // t=6m: up=1 → resolved and sent with resolved_at.
    g.eval(360_000, &opts);
    let a = g.rules[1].active.values().next().unwrap().clone();
    assert_eq!(a.state, AlertState::Inactive);
    assert_eq!(a.resolved_at, 360_000);
    assert_eq!(sent.0.lock().len(), 2);
    assert_eq!(sent.0.lock()[1].1.resolved_at, 360_000);
    // The ALERTS series went stale at 6m.
    assert!(query(&head, "ALERTS", 360_000).is_empty());
    assert_eq!(
        query(&head, "ALERTS", 300_000)[0].labels.get("alertstate"),
        Some("firing")
    );
}

#[test]
fn recorded_series_gets_stale_marker() {
    let (head, _sent, opts) = setup();
    let def = &parse_rule_file(
        "groups:\n  - name: g\n    rules:\n      - record: x:sum\n        expr: sum by (job) (m)\n",
        "r.yml",
    )
    .unwrap()
    .groups[0];
    let mut g = Group::new(def, &opts, false);
    add(&head, &[("__name__", "m"), ("job", "a")], 0, 1.0);
    add(&head, &[("__name__", "m"), ("job", "b")], 0, 2.0);
    add(&head, &[("__name__", "m"), ("job", "a")], 360_000, 1.0);
    g.eval(30_000, &opts);
    assert_eq!(query(&head, "x:sum", 30_000).len(), 2);
    // At 6m `job="b"` is beyond the lookback; its recorded series goes stale
    // right away instead of lingering for 5 minutes.
    g.eval(400_000, &opts);
    let r = query(&head, "x:sum", 400_000);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].labels.get("job"), Some("a"));
    assert!(query(&head, "x:sum{job=\"b\"}", 410_000).is_empty());
    assert_eq!(
        query(&head, "count_over_time(x:sum{job=\"b\"}[1h])", 410_000)[0].value,
        1.0
    );
}

#[test]
fn keep_firing_for_and_limit() {
    let (head, _sent, opts) = setup();
    let def = &parse_rule_file(
        "groups:\n  - name: g\n    limit: 1\n    rules:\n      - alert: A\n        expr: m > 0\n        keep_firing_for: 2m\n",
        "r.yml",
    )
    .unwrap()
    .groups[0];
    let mut g = Group::new(def, &opts, false);
    add(&head, &[("__name__", "m"), ("i", "1")], 0, 1.0);
    add(&head, &[("__name__", "m"), ("i", "1")], 60_000, 0.0);
    g.eval(0, &opts);
    assert_eq!(
        g.rules[0].active.values().next().unwrap().state,
        AlertState::Firing
    );
    g.eval(60_000, &opts);
    g.eval(120_000, &opts);
    let a = g.rules[0].active.values().next().unwrap();
    assert_eq!(a.state, AlertState::Firing, "kept firing for 2m");
    assert_eq!(a.keep_firing_since, 60_000);
    g.eval(180_000, &opts);
    assert_eq!(
        g.rules[0].active.values().next().unwrap().state,
        AlertState::Inactive
    );
    // Limit: two series > limit 1.
    add(&head, &[("__name__", "m"), ("i", "1")], 240_000, 1.0);
    add(&head, &[("__name__", "m"), ("i", "2")], 240_000, 1.0);
    g.eval(240_000, &opts);
    assert_eq!(g.rules[0].health, crate::rule::RuleHealth::Bad);
    assert_eq!((g.rule_evaluations, g.rule_failures), (5, 1));
    assert_eq!(
        g.rules[0].last_error.as_deref(),
        Some("exceeded limit of 1 with 2 alerts")
    );
    assert!(g.rules[0].active.is_empty());
}

#[test]
fn default_query_offset_applies_to_groups_without_their_own() {
    let (head, _s, mut opts) = setup();
    opts.default_query_offset = 30_000;
    let file = parse_rule_file(
        "groups:\n  - name: inherit\n    rules:\n      - record: a\n        expr: x\n\
         \x20 - name: own\n    query_offset: 0s\n    rules:\n      - record: b\n        expr: x\n",
        "r.yml",
    )
    .unwrap();
    let mut inherit = Group::new(&file.groups[0], &opts, false);
    let mut own = Group::new(&file.groups[1], &opts, false);
    assert_eq!(inherit.query_offset, 30_000);
    assert_eq!(own.query_offset, 0);
    // x is 1 at 60s and 2 from 90s on; evaluating at 100s with a 30s
    // offset reads x at 70s (1) and records the result at 70s.
    add(&head, &[("__name__", "x")], 60_000, 1.0);
    add(&head, &[("__name__", "x")], 90_000, 2.0);
    inherit.eval(100_000, &opts);
    own.eval(100_000, &opts);
    let a = query(&head, "a", 70_000);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].value, 1.0);
    assert!(
        query(&head, "a", 69_999).is_empty(),
        "recorded at t - offset"
    );
    assert_eq!(query(&head, "b", 100_000)[0].value, 2.0);
    assert!(query(&head, "b", 99_999).is_empty(), "recorded at t");
}

#[test]
fn eval_timestamps_are_slotted() {
    let (_h, _s, opts) = setup();
    let def = &parse_rule_file(
        "groups:\n  - name: g\n    interval: 15s\n    rules: []\n",
        "r.yml",
    )
    .unwrap()
    .groups[0];
    let g = Group::new(def, &opts, false);
    let a = g.eval_timestamp(1_000_000_000);
    assert!(a <= 1_000_000_000 && a > 1_000_000_000 - 15_000);
    assert_eq!(g.eval_timestamp(a), a);
    assert_eq!(g.eval_timestamp(a + 14_999), a);
    assert_eq!(g.eval_timestamp(a + 15_000), a + 15_000);
    // The offset is the group hash modulo the interval (in ns).
    assert_eq!((a % 15_000) as u64, (g.hash() % 15_000_000_000) / 1_000_000);
}

#[test]
fn for_state_restored_after_restart() {
    let (head, _sent, opts) = setup();
    let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: m > 0\n        for: 30m\n";
    let def = &parse_rule_file(text, "r.yml").unwrap().groups[0];
    for m in 0..=60 {
        add(&head, &[("__name__", "m")], m * 60_000, 1.0);
    }
    let mut g = Group::new(def, &opts, false);
    // Active since 0, evaluated until 10m, then "down" until 20m.
    for m in 0..=10 {
        g.eval(m * 60_000, &opts);
    }
    assert_eq!(
        g.rules[0].active.values().next().unwrap().state,
        AlertState::Pending
    );
    // Restart: a new group that must restore.
    let mut g2 = Group::new(def, &opts, true);
    g2.eval(20 * 60_000, &opts);
    assert!(!g2.rules[0].restored, "no ALERTS series before the restore");
    g2.restore_for_state(20 * 60_000, &opts);
    let a = g2.rules[0].active.values().next().unwrap();
    // Spent 10m pending before going down; 20m remain; down for 10m, so
    // active_at moves from 0 to 10m.
    assert_eq!(a.active_at, 10 * 60_000);
    g2.eval(39 * 60_000, &opts);
    assert_eq!(
        g2.rules[0].active.values().next().unwrap().state,
        AlertState::Pending
    );
    g2.eval(40 * 60_000, &opts);
    assert_eq!(
        g2.rules[0].active.values().next().unwrap().state,
        AlertState::Firing
    );
}

#[test]
fn copy_state_keeps_alerts_across_reload() {
    let (head, _sent, opts) = setup();
    let def = &parse_rule_file(RULES, "r.yml").unwrap().groups[0];
    add(&head, &[("__name__", "up"), ("job", "x")], 0, 0.0);
    let mut g = Group::new(def, &opts, false);
    g.eval(0, &opts);
    let mut g2 = Group::new(def, &opts, false);
    g2.copy_state(&g);
    assert_eq!(g2.rules[1].active.len(), 1);
    assert_eq!(g2.last_evaluation, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_runs_groups_and_swaps_them() {
    let (head, sent, opts) = setup();
    let now = pharos_model::sample::now_millis();
    // A series that stays fresh for the whole test.
    for i in 0..40 {
        add(
            &head,
            &[("__name__", "m"), ("job", "x")],
            now - 5_000 + i * 500,
            1.0,
        );
    }
    let defs = parse_rule_file(
        "groups:\n  - name: a\n    interval: 100ms\n    rules:\n      - record: x:sum\n        expr: sum(m)\n      - alert: Always\n        expr: m > 0\n",
        "r.yml",
    )
    .unwrap()
    .groups;
    let m = crate::Manager::new();
    m.update(opts.clone(), defs).await;
    let start = std::time::Instant::now();
    loop {
        let g = m.groups();
        if g.len() == 1 && g[0].last_evaluation > 0 && g[0].rules[1].active.len() == 1 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "no evaluation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let g = &m.groups()[0];
    // Slotted: the evaluation time is the group's offset modulo the interval.
    assert_eq!(
        (g.last_evaluation % 100) as u64,
        (g.hash() % 100_000_000) / 1_000_000
    );
    assert!(
        !sent.0.lock().is_empty(),
        "firing alert sent to the notifier"
    );
    let t = g.last_evaluation;
    assert_eq!(query(&head, "x:sum", t)[0].value, 1.0);

    // Swap in a different group: the old one stops and its series go stale.
    let defs2 = parse_rule_file(
        "groups:\n  - name: b\n    interval: 100ms\n    rules:\n      - record: y:sum\n        expr: sum(m)\n",
        "r.yml",
    )
    .unwrap()
    .groups;
    m.update(opts.clone(), defs2).await;
    let names: Vec<String> = m.groups().iter().map(|g| g.name.clone()).collect();
    assert_eq!(names, vec!["b"]);
    let after = pharos_model::sample::now_millis() + 1;
    assert!(
        query(&head, "x:sum", after).is_empty(),
        "stale marker after removal"
    );
    m.stop().await;
    assert!(m.groups().is_empty());
}

/// A recording rule whose result is a native histogram records the
/// histogram (not its sum as a float), and an alert on histograms has the
/// value 0 with `$value` printing the histogram, as in Prometheus.
#[test]
fn rules_over_native_histograms() {
    use pharos_model::histogram::{HistogramValue, parse_test_histogram};
    let (head, sent, opts) = setup();
    let def = &parse_rule_file(
        r#"
groups:
  - name: g
    rules:
      - record: h:sum
        expr: sum(h)
      - alert: HistogramSeen
        expr: sum(h)
        annotations:
          value: "{{ $value }}"
"#,
        "r.yml",
    )
    .unwrap()
    .groups[0];
    let mut g = Group::new(def, &opts, false);
    let mut app = head.appender();
    for (i, text) in [
        "{{schema:0 count:2 sum:3 buckets:[1 1]}}",
        "{{schema:0 count:1 sum:1 buckets:[1]}}",
    ]
    .into_iter()
    .enumerate()
    {
        let lset = Labels::from_pairs(&[("__name__", "h"), ("i", &i.to_string())]);
        let h = parse_test_histogram(text).unwrap();
        app.append_histogram(0, &lset, 0, HistogramValue::Float(h))
            .unwrap();
    }
    app.commit().unwrap();
    g.eval(30_000, &opts);
    assert!(
        g.rules[0].last_error.is_none(),
        "{:?}",
        g.rules[0].last_error
    );
    let r = query(&head, "h:sum", 30_000);
    assert_eq!(r.len(), 1);
    let got = r[0].histogram.as_deref().expect("a histogram was recorded");
    assert_eq!((got.count, got.sum), (3.0, 4.0));
    assert_eq!(got.positive_buckets, vec![2.0, 1.0]);
    assert_eq!(query(&head, "histogram_count(h:sum)", 30_000)[0].value, 3.0);
    let a = g.rules[1].active.values().next().unwrap().clone();
    assert_eq!(a.value, 0.0);
    assert_eq!(
        a.annotations,
        vec![(
            "value".into(),
            "{count:3, sum:4, (0.5,1]:2, (1,2]:1}".into()
        )]
    );
    assert!(sent.0.lock().is_empty() || sent.0.lock()[0].1.value == 0.0);
}
