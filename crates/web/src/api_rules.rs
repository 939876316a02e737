//! `/api/v1/rules`, `/api/v1/alerts`, `/api/v1/alertmanagers` and the
//! Alerts and Rules pages.
//!
//! Reached through [`RulesRetriever`], which the binary implements over the
//! rule manager and the notifier, so this crate stays free of both. The
//! routes come as a router of their own ([`rules_router`]) that the binary
//! merges into the main one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pharos_model::Labels;
use serde_json::{Value, json};

/// One alert as the API shows it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertInfo {
    /// Identifying labels.
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: Vec<(String, String)>,
    /// `pending` or `firing` (`inactive` alerts are not listed).
    pub state: String,
    /// When it became active.
    pub active_at: i64,
    /// Since when it keeps firing without its condition (0: not).
    pub keep_firing_since: i64,
    /// The expression's value at the last evaluation.
    pub value: f64,
}

/// What kind of rule, with the alerting-only fields.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleInfoKind {
    /// A recording rule.
    Recording,
    /// An alerting rule.
    Alerting {
        /// `for`, in seconds.
        duration: f64,
        /// `keep_firing_for`, in seconds.
        keep_firing_for: f64,
        /// Annotation templates.
        annotations: Vec<(String, String)>,
        /// Its pending and firing alerts.
        alerts: Vec<AlertInfo>,
        /// `inactive`, `pending` or `firing` (the most severe of its alerts).
        state: String,
    },
}

/// One rule as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    /// Record or alert name.
    pub name: String,
    /// The expression as Prometheus prints it.
    pub query: String,
    /// Labels (templates for alerting rules).
    pub labels: Vec<(String, String)>,
    /// `ok`, `err` or `unknown`.
    pub health: String,
    /// The last evaluation's error, empty if none.
    pub last_error: String,
    /// Seconds the last evaluation took.
    pub evaluation_time: f64,
    /// When it was last evaluated (ms; 0 = never).
    pub last_evaluation: i64,
    /// The kind and its fields.
    pub kind: RuleInfoKind,
}

/// One rule group as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroupInfo {
    /// The group name.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// Evaluation interval in seconds.
    pub interval: f64,
    /// Series/alert limit per rule (0: none).
    pub limit: usize,
    /// Seconds the last evaluation took.
    pub evaluation_time: f64,
    /// When it was last evaluated (ms; 0 = never).
    pub last_evaluation: i64,
    /// Its rules in order.
    pub rules: Vec<RuleInfo>,
}

/// Where the rule and Alertmanager endpoints get their data. The binary
/// implements it; calls may take locks but must not block for long.
pub trait RulesRetriever: Send + Sync {
    /// Every rule group, sorted by file then name.
    fn rule_groups(&self) -> Vec<RuleGroupInfo>;
    /// Alertmanager URLs: (active, dropped).
    fn alertmanagers(&self) -> (Vec<String>, Vec<String>);
}

/// A [`RulesRetriever`] with no rules and no Alertmanagers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRules;

impl RulesRetriever for NoRules {
    fn rule_groups(&self) -> Vec<RuleGroupInfo> {
        Vec::new()
    }
    fn alertmanagers(&self) -> (Vec<String>, Vec<String>) {
        (Vec::new(), Vec::new())
    }
}

#[derive(Clone)]
struct RulesState {
    src: Arc<dyn RulesRetriever>,
    ready: Arc<AtomicBool>,
}

/// The routes of this module; `ready` gates the API like the main router
/// (503 until the process is ready).
pub fn rules_router(src: Arc<dyn RulesRetriever>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alertmanagers", get(alertmanagers))
        .route("/alerts", get(|| async { html(ALERTS_HTML) }))
        .route("/rules", get(|| async { html(RULES_HTML) }))
        .route("/rules-ui/alerts.js", get(|| async { js(ALERTS_JS) }))
        .route("/rules-ui/rules.js", get(|| async { js(RULES_JS) }))
        .with_state(RulesState { src, ready })
}

const ALERTS_HTML: &str = include_str!("../ui/alerts.html");
const RULES_HTML: &str = include_str!("../ui/rules.html");
const ALERTS_JS: &str = include_str!("../ui/alerts.js");
const RULES_JS: &str = include_str!("../ui/rules.js");

fn html(body: &'static str) -> Response {
    with_type(body, "text/html; charset=utf-8")
}

fn js(body: &'static str) -> Response {
    with_type(body, "text/javascript; charset=utf-8")
}

fn with_type(body: &'static str, ct: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

fn envelope(status: StatusCode, v: Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn success(data: Value) -> Response {
    envelope(StatusCode::OK, json!({"status": "success", "data": data}))
}

fn bad_data(msg: &str) -> Response {
    envelope(
        StatusCode::BAD_REQUEST,
        json!({"status": "error", "errorType": "bad_data", "error": msg}),
    )
}

fn not_ready(s: &RulesState) -> Option<Response> {
    (!s.ready.load(Ordering::Acquire))
        .then(|| (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response())
}

fn pairs_json(p: &[(String, String)]) -> Value {
    Value::Object(
        p.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|l| (l.name.to_string(), Value::from(l.value)))
            .collect(),
    )
}

/// RFC 3339 with nanosecond precision as Go prints `time.Time` in JSON
/// (trailing zeros of the fraction dropped); Go's zero time for 0.
fn time_json(ms: i64) -> String {
    if ms == 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, how the API prints alert
/// values (`1e+00`, `4.5e-01`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let e: i32 = e.parse().unwrap_or(0);
            format!(
                "{m}e{}{:02}",
                if e < 0 { '-' } else { '+' },
                e.unsigned_abs()
            )
        }
        None => s,
    }
}

fn alert_json(a: &AlertInfo) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("labels".into(), labels_json(&a.labels));
    m.insert("annotations".into(), pairs_json(&a.annotations));
    m.insert("state".into(), a.state.clone().into());
    m.insert("activeAt".into(), time_json(a.active_at).into());
    if a.keep_firing_since != 0 {
        m.insert(
            "keepFiringSince".into(),
            time_json(a.keep_firing_since).into(),
        );
    }
    m.insert("value".into(), format_value(a.value).into());
    Value::Object(m)
}

fn rule_json(r: &RuleInfo, exclude_alerts: bool) -> Value {
    let mut m = serde_json::Map::new();
    match &r.kind {
        RuleInfoKind::Alerting {
            duration,
            keep_firing_for,
            annotations,
            alerts,
            state,
        } => {
            m.insert("state".into(), state.clone().into());
            m.insert("name".into(), r.name.clone().into());
            m.insert("query".into(), r.query.clone().into());
            m.insert("duration".into(), json!(duration));
            m.insert("keepFiringFor".into(), json!(keep_firing_for));
            m.insert("labels".into(), pairs_json(&r.labels));
            m.insert("annotations".into(), pairs_json(annotations));
            if !exclude_alerts {
                m.insert(
                    "alerts".into(),
                    Value::Array(alerts.iter().map(alert_json).collect()),
                );
            }
            m.insert("type".into(), "alerting".into());
        }
        RuleInfoKind::Recording => {
            m.insert("name".into(), r.name.clone().into());
            m.insert("query".into(), r.query.clone().into());
            m.insert("labels".into(), pairs_json(&r.labels));
            m.insert("type".into(), "recording".into());
        }
    }
    m.insert("health".into(), r.health.clone().into());
    if !r.last_error.is_empty() {
        m.insert("lastError".into(), r.last_error.clone().into());
    }
    m.insert("evaluationTime".into(), json!(r.evaluation_time));
    m.insert("lastEvaluation".into(), time_json(r.last_evaluation).into());
    Value::Object(m)
}

async fn rules(State(s): State<RulesState>, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(r) = not_ready(&s) {
        return r;
    }
    let get_all = |k: &str| -> Vec<&str> {
        q.iter()
            .filter(|(n, _)| n == k || n == &format!("{k}[]"))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let kind = match get_all("type").last().copied() {
        None | Some("") => None,
        Some("alert") => Some(true),
        Some("record") => Some(false),
        Some(other) => return bad_data(&format!("unsupported type {other:?}")),
    };
    let exclude_alerts = match get_all("exclude_alerts").last().copied() {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return bad_data(&format!(
                "parsing exclude_alerts: strconv.ParseBool: parsing {other:?}: invalid syntax"
            ));
        }
    };
    let mut matcher_sets = Vec::new();
    for m in get_all("match") {
        match pharos_promql::parse_selector(m) {
            Ok(set) => matcher_sets.push(set),
            Err(e) => return bad_data(&format!("invalid parameter \"match[]\": {e}")),
        }
    }
    let names = get_all("rule_name");
    let groups_f = get_all("rule_group");
    let files_f = get_all("file");
    let src = s.src.clone();
    let groups = match tokio::task::spawn_blocking(move || src.rule_groups()).await {
        Ok(g) => g,
        Err(e) => {
            return envelope(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"status": "error", "errorType": "internal", "error": e.to_string()}),
            );
        }
    };
    let mut out = Vec::new();
    for g in &groups {
        if !groups_f.is_empty() && !groups_f.contains(&g.name.as_str()) {
            continue;
        }
        if !files_f.is_empty() && !files_f.contains(&g.file.as_str()) {
            continue;
        }
        let rules: Vec<Value> = g
            .rules
            .iter()
            .filter(|r| match kind {
                Some(true) => matches!(r.kind, RuleInfoKind::Alerting { .. }),
                Some(false) => matches!(r.kind, RuleInfoKind::Recording),
                None => true,
            })
            .filter(|r| names.is_empty() || names.contains(&r.name.as_str()))
            .filter(|r| {
                matcher_sets.is_empty()
                    || matcher_sets.iter().any(|set| {
                        set.iter().all(|m| {
                            let v = r
                                .labels
                                .iter()
                                .find(|(k, _)| *k == m.name)
                                .map_or("", |(_, v)| v.as_str());
                            m.matches(v)
                        })
                    })
            })
            .map(|r| rule_json(r, exclude_alerts))
            .collect();
        // Prometheus drops groups left empty by a filter.
        if rules.is_empty() && (kind.is_some() || !names.is_empty() || !matcher_sets.is_empty()) {
            continue;
        }
        out.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": g.interval,
            "limit": g.limit,
            "evaluationTime": g.evaluation_time,
            "lastEvaluation": time_json(g.last_evaluation),
        }));
    }
    success(json!({ "groups": out }))
}

async fn alerts(State(s): State<RulesState>) -> Response {
    if let Some(r) = not_ready(&s) {
        return r;
    }
    let src = s.src.clone();
    let groups = tokio::task::spawn_blocking(move || src.rule_groups())
        .await
        .unwrap_or_default();
    let mut list = Vec::new();
    for g in &groups {
        for r in &g.rules {
            if let RuleInfoKind::Alerting { alerts, .. } = &r.kind {
                list.extend(alerts.iter().map(alert_json));
            }
        }
    }
    success(json!({ "alerts": list }))
}

async fn alertmanagers(State(s): State<RulesState>) -> Response {
    if let Some(r) = not_ready(&s) {
        return r;
    }
    let (active, dropped) = s.src.alertmanagers();
    let urls =
        |v: Vec<String>| -> Vec<Value> { v.into_iter().map(|u| json!({"url": u})).collect() };
    success(json!({
        "activeAlertmanagers": urls(active),
        "droppedAlertmanagers": urls(dropped),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tower::ServiceExt;

    struct Fixed;

    impl RulesRetriever for Fixed {
        fn rule_groups(&self) -> Vec<RuleGroupInfo> {
            vec![RuleGroupInfo {
                name: "api".into(),
                file: "/etc/r.yml".into(),
                interval: 60.0,
                limit: 0,
                evaluation_time: 0.001,
                last_evaluation: 1_700_000_000_000,
                rules: vec![
                    RuleInfo {
                        name: "job:x:sum".into(),
                        query: "sum by (job) (x)".into(),
                        labels: vec![],
                        health: "ok".into(),
                        last_error: String::new(),
                        evaluation_time: 0.0005,
                        last_evaluation: 1_700_000_000_000,
                        kind: RuleInfoKind::Recording,
                    },
                    RuleInfo {
                        name: "Down".into(),
                        query: "up == 0".into(),
                        labels: vec![("severity".into(), "page".into())],
                        health: "err".into(),
                        last_error: "boom".into(),
                        evaluation_time: 0.0005,
                        last_evaluation: 1_700_000_000_000,
                        kind: RuleInfoKind::Alerting {
                            duration: 300.0,
                            keep_firing_for: 0.0,
                            annotations: vec![(
                                "summary".into(),
                                "{{ $labels.instance }} down".into(),
                            )],
                            alerts: vec![AlertInfo {
                                labels: Labels::from_pairs(&[
                                    ("alertname", "Down"),
                                    ("instance", "a"),
                                ]),
                                annotations: vec![("summary".into(), "a down".into())],
                                state: "firing".into(),
                                active_at: 1_699_999_000_000,
                                keep_firing_since: 0,
                                value: 0.0,
                            }],
                            state: "firing".into(),
                        },
                    },
                ],
            }]
        }
        fn alertmanagers(&self) -> (Vec<String>, Vec<String>) {
            (vec!["http://am:9093/api/v2/alerts".into()], vec![])
        }
    }

    async fn get_json(path: &str) -> (StatusCode, Value) {
        let app = rules_router(Arc::new(Fixed), Arc::new(AtomicBool::new(true)));
        let resp = app
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn rules_endpoint_and_filters() {
        let (s, v) = get_json("/api/v1/rules").await;
        assert_eq!(s, StatusCode::OK);
        let g = &v["data"]["groups"][0];
        assert_eq!(g["name"], "api");
        assert_eq!(g["interval"], 60.0);
        assert_eq!(g["lastEvaluation"], "2023-11-14T22:13:20Z");
        assert_eq!(g["rules"][0]["type"], "recording");
        assert!(g["rules"][0].get("lastError").is_none());
        let a = &g["rules"][1];
        assert_eq!(a["type"], "alerting");
        assert_eq!(a["state"], "firing");
        assert_eq!(a["duration"], 300.0);
        assert_eq!(a["lastError"], "boom");
        assert_eq!(a["alerts"][0]["value"], "0e+00");
        assert_eq!(a["alerts"][0]["activeAt"], "2023-11-14T21:56:40Z");
        let (_, v) = get_json("/api/v1/rules?type=record").await;
        assert_eq!(v["data"]["groups"][0]["rules"].as_array().unwrap().len(), 1);
        let (_, v) = get_json("/api/v1/rules?type=alert&exclude_alerts=true").await;
        assert!(v["data"]["groups"][0]["rules"][0].get("alerts").is_none());
        let (_, v) = get_json("/api/v1/rules?match[]=%7Bseverity%3D%22page%22%7D").await;
        let rules = v["data"]["groups"][0]["rules"].as_array().unwrap().clone();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0]["name"], "Down");
        let (s, _) = get_json("/api/v1/rules?match[]=%7B").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (_, v) = get_json("/api/v1/rules?rule_name[]=nope").await;
        assert_eq!(v["data"]["groups"].as_array().unwrap().len(), 0);
        let (_, v) = get_json("/api/v1/rules?rule_group[]=api&file[]=/etc/r.yml").await;
        assert_eq!(v["data"]["groups"].as_array().unwrap().len(), 1);
        let (s, v) = get_json("/api/v1/rules?type=bogus").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["errorType"], "bad_data");
    }

    #[tokio::test]
    async fn alerts_and_alertmanagers() {
        let (_, v) = get_json("/api/v1/alerts").await;
        assert_eq!(v["data"]["alerts"][0]["labels"]["instance"], "a");
        let (_, v) = get_json("/api/v1/alertmanagers").await;
        assert_eq!(
            v["data"]["activeAlertmanagers"][0]["url"],
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(v["data"]["droppedAlertmanagers"], json!([]));
    }

    #[test]
    fn values_print_like_go() {
        assert_eq!(format_value(1.0), "1e+00");
        assert_eq!(format_value(0.45), "4.5e-01");
        assert_eq!(format_value(123456.0), "1.23456e+05");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }
}
