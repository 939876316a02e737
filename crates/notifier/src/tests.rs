#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use pharos_config::{StaticConfig, load_str};

fn alert(name: &str) -> Alert {
    Alert {
        labels: Labels::from_pairs(&[("alertname", name), ("instance", "h:1")]),
        annotations: vec![("summary".into(), "down".into())],
        starts_at: 1_700_000_000_123,
        ends_at: 1_700_000_240_000,
        generator_url: "http://p:9090/graph?g0.expr=up&g0.tab=1".into(),
    }
}

#[test]
fn payload_is_postable_alerts() {
    let body = v2_payload(&[alert("A")]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "annotations": {"summary": "down"},
            "endsAt": "2023-11-14T22:17:20.000Z",
            "startsAt": "2023-11-14T22:13:20.123Z",
            "generatorURL": "http://p:9090/graph?g0.expr=up&g0.tab=1",
            "labels": {"alertname": "A", "instance": "h:1"}
        }])
    );
    assert_eq!(rfc3339_millis(0), "0001-01-01T00:00:00.000Z");
}

#[test]
fn external_labels_and_relabeling() {
    let cfg = load_str(
        "global:\n  external_labels: {cluster: eu, instance: ext}\nalerting:\n  alert_relabel_configs:\n    - source_labels: [alertname]\n      regex: Drop.*\n      action: drop\n",
        "p.yml",
    )
    .unwrap();
    let out = relabel_alerts(
        &cfg.alerting.alert_relabel_configs,
        &cfg.global.external_labels,
        vec![alert("A"), alert("DropMe")],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].labels.get("cluster"), Some("eu"));
    // An alert's own label wins over the external one.
    assert_eq!(out[0].labels.get("instance"), Some("h:1"));
}

#[test]
fn alertmanager_urls_from_targets() {
    let cfg = load_str(
        "alerting:\n  alertmanagers:\n    - path_prefix: /am/\n      static_configs:\n        - targets: ['a:9093', 'b:9093']\n      relabel_configs:\n        - source_labels: [__address__]\n          regex: b:.*\n          action: drop\n",
        "p.yml",
    )
    .unwrap();
    let n = Notifier::new(10);
    n.apply_config(Labels::empty(), &cfg.alerting);
    let sets = n.alertmanagers();
    assert_eq!(sets.len(), 1);
    assert_eq!(
        sets[0]
            .active
            .iter()
            .map(|a| a.url.as_str())
            .collect::<Vec<_>>(),
        vec!["http://a:9093/am/api/v2/alerts"]
    );
    assert_eq!(sets[0].dropped.len(), 1);
    assert_eq!(alerts_path(""), "/api/v2/alerts");
    assert_eq!(alerts_path("/x/y"), "/x/y/api/v2/alerts");
    n.set_groups(
        0,
        &[(
            vec![Labels::from_pairs(&[("__address__", "c:1")])],
            Labels::empty(),
        )],
    );
    assert_eq!(
        n.alertmanagers()[0].active[0].url,
        "http://c:1/am/api/v2/alerts"
    );
    let _ = StaticConfig::default();
}

#[test]
fn full_queue_drops_oldest() {
    let n = Notifier::new(3);
    n.send(vec![alert("1"), alert("2")]);
    n.send(vec![alert("3"), alert("4")]);
    assert_eq!(n.stats().dropped, 1);
    let q: Vec<String> = n
        .next_batch()
        .iter()
        .map(|a| a.labels.get("alertname").unwrap().to_string())
        .collect();
    assert_eq!(q, vec!["2", "3", "4"]);
    n.send((0..5).map(|i| alert(&i.to_string())).collect());
    assert_eq!(n.stats().dropped, 3);
    assert_eq!(n.stats().queue_length, 3);
}

#[tokio::test]
async fn delivers_batches_and_counts_errors() {
    use axum::Router;
    use axum::routing::post;
    let received = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let r2 = received.clone();
    let app = Router::new()
        .route(
            "/api/v2/alerts",
            post(move |body: String| {
                let r = r2.clone();
                async move {
                    r.lock().push(serde_json::from_str(&body).unwrap());
                    "ok"
                }
            }),
        )
        .route(
            "/bad/api/v2/alerts",
            post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cfg = load_str(
        &format!(
            "alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['{addr}']}}]\n    - path_prefix: /bad\n      static_configs: [{{targets: ['{addr}']}}]\n"
        ),
        "p.yml",
    )
    .unwrap();
    let n = Arc::new(Notifier::new(1000));
    n.apply_config(Labels::from_pairs(&[("cluster", "eu")]), &cfg.alerting);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(n.clone().run(rx));
    n.send((0..70).map(|i| alert(&format!("A{i}"))).collect());
    for _ in 0..100 {
        if received.lock().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tx.send(true).unwrap();
    task.await.unwrap();
    let got = received.lock().clone();
    assert_eq!(got.len(), 2, "70 alerts in batches of 64");
    assert_eq!(got[0].as_array().unwrap().len(), 64);
    assert_eq!(got[1].as_array().unwrap().len(), 6);
    assert_eq!(got[0][0]["labels"]["cluster"], "eu");
    let s = n.stats();
    assert_eq!(s.alertmanagers_discovered, 2);
    let bad = s
        .per_alertmanager
        .iter()
        .find(|(u, _, _)| u.contains("/bad/"))
        .unwrap();
    assert_eq!((bad.1, bad.2), (70, 70));
    assert_eq!(s.dropped, 0, "one Alertmanager took every batch");
    let mut m = String::new();
    n.write_metrics(&mut m);
    assert!(m.contains("prometheus_notifications_queue_capacity 1000"));
    assert!(m.contains(&format!(
        "prometheus_notifications_errors_total{{alertmanager=\"http://{addr}/bad/api/v2/alerts\"}} 70"
    )));
}

#[tokio::test]
async fn http_config_auth_and_headers_are_sent() {
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::post;
    let seen = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let s2 = seen.clone();
    let app = Router::new().route(
        "/api/v2/alerts",
        post(move |h: HeaderMap| {
            let s = s2.clone();
            async move {
                let get = |k: &str| {
                    h.get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                s.lock().push((get("authorization"), get("x-team")));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cfg = load_str(
        &format!(
            "alerting:\n  alertmanagers:\n    - basic_auth: {{username: u, password: p}}\n      http_headers:\n        X-Team:\n          values: [sre]\n      static_configs: [{{targets: ['{addr}']}}]\n"
        ),
        "p.yml",
    )
    .unwrap();
    let n = Notifier::new(10);
    n.apply_config(Labels::empty(), &cfg.alerting);
    assert!(n.send_all(&[alert("A")]).await);
    let got = seen.lock().clone();
    // base64("u:p") = "dTpw"
    assert_eq!(got, vec![("Basic dTpw".to_string(), "sre".to_string())]);
}
