//! The rest of Prometheus's query and status API: `format_query`,
//! `parse_query`, `query_exemplars`, `metadata`, `targets/metadata`,
//! `status/flags` and `status/runtimeinfo`.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::extract::{Request, State as AxState};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
};
use serde_json::{Value as J, json};

use crate::api::{ApiOk, blocking, labels_json, not_ready, respond, rfc3339};
use crate::params::{MAX_TIME, MIN_TIME, Params, invalid_param, time_param};
use crate::{ApiError, MetricMetadata, State};

pub(crate) fn routes() -> Router<State> {
    Router::new()
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/parse_query", get(parse_query).post(parse_query))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/targets/metadata", get(targets_metadata))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/runtimeinfo", get(runtime_info))
}

async fn format_query(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let r = async {
        let p = Params::from_request(req).await?;
        let q = p.get("query");
        let f =
            pharos_promql::format_query(q).map_err(|e| invalid_param(&e.to_string(), "query"))?;
        ApiOk::serialize(&f)
    }
    .await;
    respond(r)
}

async fn parse_query(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let r = async {
        let p = Params::from_request(req).await?;
        let e = pharos_promql::parse(p.get("query"))
            .map_err(|e| invalid_param(&e.to_string(), "query"))?;
        ApiOk::serialize(&translate(&e))
    }
    .await;
    respond(r)
}

/// Prometheus's JSON tree of a parsed query (its `translateAST`), for the
/// UI's tree view and tools.
pub(crate) fn translate(e: &Expr) -> J {
    match e {
        Expr::Aggregate(a) => {
            let (grouping, without) = match &a.modifier {
                Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
                Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
                None => (Vec::new(), false),
            };
            json!({
                "type": "aggregation",
                "op": a.op.to_string(),
                "expr": translate(&a.expr),
                "param": a.param.as_deref().map(translate),
                "grouping": grouping,
                "without": without,
            })
        }
        Expr::Binary(b) => {
            let both_vectors =
                b.lhs.value_type() == ValueType::Vector && b.rhs.value_type() == ValueType::Vector;
            let matching = match &b.modifier {
                Some(m) if both_vectors => {
                    let (card, include) = match &m.card {
                        VectorMatchCardinality::OneToOne => ("one-to-one", Vec::new()),
                        VectorMatchCardinality::ManyToOne(l) => ("many-to-one", l.labels.clone()),
                        VectorMatchCardinality::OneToMany(l) => ("one-to-many", l.labels.clone()),
                        VectorMatchCardinality::ManyToMany => ("many-to-many", Vec::new()),
                    };
                    let (labels, on) = match &m.matching {
                        Some(LabelModifier::Include(l)) => (l.labels.clone(), true),
                        Some(LabelModifier::Exclude(l)) => (l.labels.clone(), false),
                        None => (Vec::new(), false),
                    };
                    json!({
                        "card": card,
                        "labels": labels,
                        "on": on,
                        "include": include,
                        "fillValues": {"lhs": m.fill_values.lhs, "rhs": m.fill_values.rhs},
                    })
                }
                None if both_vectors => {
                    let set_op = matches!(b.op.to_string().as_str(), "and" | "or" | "unless");
                    json!({
                        "card": if set_op { "many-to-many" } else { "one-to-one" },
                        "labels": [],
                        "on": false,
                        "include": [],
                        "fillValues": {"lhs": null, "rhs": null},
                    })
                }
                _ => J::Null,
            };
            json!({
                "type": "binaryExpr",
                "op": b.op.to_string(),
                "lhs": translate(&b.lhs),
                "rhs": translate(&b.rhs),
                "matching": matching,
                "bool": b.modifier.as_ref().is_some_and(|m| m.return_bool),
            })
        }
        Expr::Call(c) => json!({
            "type": "call",
            "func": {
                "name": c.func.name,
                "argTypes": c.func.arg_types.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "variadic": c.func.variadic,
                "returnType": c.func.return_type.to_string(),
            },
            "args": c.args.args.iter().map(|a| translate(a)).collect::<Vec<_>>(),
        }),
        Expr::MatrixSelector(m) => {
            let mut v = selector_json(&m.vs, "matrixSelector");
            v["range"] = json!(m.range.as_millis() as i64);
            v["rangeExpr"] = J::Null;
            v
        }
        Expr::Subquery(s) => {
            let (timestamp, start_or_end) = at_json(s.at.as_ref());
            json!({
                "type": "subquery",
                "expr": translate(&s.expr),
                "range": s.range.as_millis() as i64,
                "rangeExpr": null,
                "offset": offset_ms(s.offset.as_ref()),
                "offsetExpr": null,
                "step": s.step.map(|d| d.as_millis() as i64).unwrap_or(0),
                "stepExpr": null,
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::NumberLiteral(n) => json!({
            "type": "numberLiteral",
            "val": go_float_f(n.val),
        }),
        Expr::Paren(p) => json!({"type": "parenExpr", "expr": translate(&p.expr)}),
        Expr::StringLiteral(s) => json!({"type": "stringLiteral", "val": s.val}),
        Expr::Unary(u) => json!({"type": "unaryExpr", "op": "-", "expr": translate(&u.expr)}),
        Expr::VectorSelector(vs) => selector_json(vs, "vectorSelector"),
        Expr::Extension(_) => J::Null,
    }
}

fn offset_ms(o: Option<&Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

/// `timestamp` (ms, or null) and `startOrEnd` (`start`, `end` or null).
fn at_json(at: Option<&AtModifier>) -> (J, J) {
    match at {
        None => (J::Null, J::Null),
        Some(AtModifier::Start) => (J::Null, json!("start")),
        Some(AtModifier::End) => (J::Null, json!("end")),
        Some(AtModifier::At(t)) => {
            let ms = match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            };
            (json!(ms), J::Null)
        }
    }
}

fn matchers_json(name: Option<&str>, ms: &Matchers) -> J {
    let one = |name: &str, value: &str, op: &MatchOp| json!({"name": name, "value": value, "type": op.to_string()});
    let mut out: Vec<J> = ms
        .matchers
        .iter()
        .map(|m| one(&m.name, &m.value, &m.op))
        .collect();
    // Prometheus appends the metric name's matcher after the braces' ones.
    if let Some(n) = name
        && !ms.matchers.iter().any(|m| m.name == "__name__")
    {
        out.push(one("__name__", n, &MatchOp::Equal));
    }
    J::Array(out)
}

fn selector_json(vs: &VectorSelector, kind: &str) -> J {
    let (timestamp, start_or_end) = at_json(vs.at.as_ref());
    json!({
        "type": kind,
        "name": vs.name.as_deref().unwrap_or(""),
        "offset": offset_ms(vs.offset.as_ref()),
        "offsetExpr": null,
        "matchers": matchers_json(vs.name.as_deref(), &vs.matchers),
        "timestamp": timestamp,
        "startOrEnd": start_or_end,
        "anchored": false,
        "smoothed": false,
    })
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits that round
/// trip, never an exponent.
fn go_float_f(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Rust's Display is shortest-round-trip and never uses an exponent.
    format!("{v}")
}

async fn query_exemplars(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let r = async {
        let p = Params::from_request(req).await?;
        let start = time_param(&p, "start", MIN_TIME)?;
        let end = time_param(&p, "end", MAX_TIME)?;
        if end < start {
            return Err(ApiError::BadData(
                "end timestamp must not be before start timestamp".into(),
            ));
        }
        let e =
            pharos_promql::parse(p.get("query")).map_err(|e| ApiError::BadData(e.to_string()))?;
        // A query without selectors has no result at all: Prometheus
        // answers 204 No Content.
        let mut sets = Vec::new();
        selector_matchers(&e, &mut sets)?;
        if sets.is_empty() {
            return Ok(None);
        }
        // Without exemplar storage nothing matches: an empty list.
        let Some(store) = state.ctx.exemplars.clone() else {
            return Ok(Some(ApiOk::data("[]".into())));
        };
        blocking(move || {
            let got = store
                .select_exemplars(start, end, &sets)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(ApiOk::data(exemplars_json(&got)))
        })
        .await
        .map(Some)
    }
    .await;
    match r {
        Ok(None) => axum::http::StatusCode::NO_CONTENT.into_response(),
        Ok(Some(ok)) => respond(Ok(ok)),
        Err(e) => respond(Err(e)),
    }
}

/// Prometheus's exemplar query result: `[{"seriesLabels":{..},
/// "exemplars":[{"labels":{..},"value":"1.5","timestamp":1600096945.479}]}]`.
fn exemplars_json(got: &[pharos_storage::SeriesExemplars]) -> String {
    use crate::json::{format_value, write_labels, write_str, write_timestamp};
    let mut out = String::from("[");
    for (i, (series, exs)) in got.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"seriesLabels\":");
        write_labels(&mut out, series);
        out.push_str(",\"exemplars\":[");
        for (j, e) in exs.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"labels\":");
            write_labels(&mut out, &e.labels);
            out.push_str(",\"value\":");
            write_str(&mut out, &format_value(e.value));
            out.push_str(",\"timestamp\":");
            write_timestamp(&mut out, e.ts);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

/// The matcher sets of every selector of `e` (Prometheus's
/// `parser.ExtractSelectors`; a selector with `or` groups gives one set
/// per group), `__name__` included.
fn selector_matchers(e: &Expr, out: &mut Vec<Vec<pharos_model::Matcher>>) -> Result<(), ApiError> {
    let vs = match e {
        Expr::VectorSelector(v) => v,
        Expr::MatrixSelector(m) => &m.vs,
        Expr::Aggregate(a) => {
            selector_matchers(&a.expr, out)?;
            if let Some(p) = a.param.as_deref() {
                selector_matchers(p, out)?;
            }
            return Ok(());
        }
        Expr::Binary(b) => {
            selector_matchers(&b.lhs, out)?;
            return selector_matchers(&b.rhs, out);
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                selector_matchers(a, out)?;
            }
            return Ok(());
        }
        Expr::Subquery(s) => return selector_matchers(&s.expr, out),
        Expr::Paren(p) => return selector_matchers(&p.expr, out),
        Expr::Unary(u) => return selector_matchers(&u.expr, out),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => return Ok(()),
    };
    let conv = |m: &promql_parser::label::Matcher| {
        let op = match m.op {
            MatchOp::Equal => pharos_model::MatchOp::Equal,
            MatchOp::NotEqual => pharos_model::MatchOp::NotEqual,
            MatchOp::Re(_) => pharos_model::MatchOp::Regex,
            MatchOp::NotRe(_) => pharos_model::MatchOp::NotRegex,
        };
        pharos_model::Matcher::new(op, &m.name, &m.value)
            .map_err(|e| ApiError::BadData(e.to_string()))
    };
    let ms = &vs.matchers;
    let mut groups: Vec<Vec<&promql_parser::label::Matcher>> = Vec::new();
    if ms.or_matchers.is_empty() {
        groups.push(ms.matchers.iter().collect());
    } else {
        groups.extend(ms.or_matchers.iter().map(|g| g.iter().collect()));
        if !ms.matchers.is_empty() {
            groups.push(ms.matchers.iter().collect());
        }
    }
    for g in groups {
        let mut set = Vec::with_capacity(g.len() + 1);
        if let Some(n) = &vs.name
            && !g.iter().any(|m| m.name == pharos_model::METRIC_NAME)
        {
            set.push(pharos_model::Matcher::equal(pharos_model::METRIC_NAME, n));
        }
        for m in g {
            set.push(conv(m)?);
        }
        out.push(set);
    }
    Ok(())
}

/// Prometheus's metadata `limit` parsing: absent is -1 (no limit).
fn number_param(p: &Params, name: &str) -> Result<i64, ApiError> {
    match p.get(name) {
        "" => Ok(-1),
        v => v
            .parse::<i64>()
            .map_err(|_| ApiError::BadData(format!("{name} must be a number"))),
    }
}

fn url_params(req: &Request) -> Params {
    Params::from_pairs(
        axum::extract::Query::try_from_uri(req.uri())
            .map(|axum::extract::Query(q)| q)
            .unwrap_or_default(),
    )
}

async fn metadata(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let p = url_params(&req);
    drop(req);
    let r = async {
        let limit = number_param(&p, "limit")?;
        let per_metric = number_param(&p, "limit_per_metric")?;
        let metric = p.get("metric").to_string();
        blocking(move || {
            let mut by_family: BTreeMap<String, BTreeSet<(String, String, String)>> =
                BTreeMap::new();
            for t in state.ctx.metadata.targets_metadata() {
                for m in t.metadata {
                    if !metric.is_empty() && m.metric != metric {
                        continue;
                    }
                    let set = by_family.entry(m.metric).or_default();
                    if per_metric > 0 && set.len() as i64 >= per_metric {
                        continue;
                    }
                    set.insert((m.kind, m.help, m.unit));
                }
            }
            let mut out = serde_json::Map::new();
            for (name, set) in by_family {
                if limit >= 0 && out.len() as i64 >= limit {
                    break;
                }
                let list: Vec<J> = set
                    .into_iter()
                    .map(|(kind, help, unit)| json!({"type": kind, "help": help, "unit": unit}))
                    .collect();
                out.insert(name, J::Array(list));
            }
            ApiOk::serialize(&J::Object(out))
        })
        .await
    }
    .await;
    respond(r)
}

async fn targets_metadata(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let p = url_params(&req);
    drop(req);
    let r = async {
        let limit = number_param(&p, "limit")?;
        let match_target = p.get("match_target");
        let matchers = if match_target.is_empty() {
            None
        } else {
            Some(
                pharos_promql::parse_selector(match_target)
                    .map_err(|e| invalid_param(&e.to_string(), "match_target"))?,
            )
        };
        let metric = p.get("metric").to_string();
        blocking(move || {
            let mut res: Vec<J> = Vec::new();
            for t in state.ctx.metadata.targets_metadata() {
                if limit >= 0 && res.len() as i64 >= limit {
                    break;
                }
                if let Some(ms) = &matchers
                    && !ms
                        .iter()
                        .all(|m| m.matches(t.labels.get(&m.name).unwrap_or("")))
                {
                    continue;
                }
                let target = labels_json(&t.labels);
                for m in &t.metadata {
                    if metric.is_empty() {
                        res.push(metadata_json(&target, Some(m), m));
                    } else if m.metric == metric {
                        res.push(metadata_json(&target, None, m));
                    }
                }
            }
            ApiOk::serialize(&res)
        })
        .await
    }
    .await;
    respond(r)
}

/// One `targets/metadata` entry; `metric` is left out when the request
/// named one, as Prometheus does.
fn metadata_json(target: &J, with_metric: Option<&MetricMetadata>, m: &MetricMetadata) -> J {
    let mut v = json!({"target": target});
    if let Some(w) = with_metric {
        v["metric"] = json!(w.metric);
    }
    v["type"] = json!(m.kind);
    v["help"] = json!(m.help);
    v["unit"] = json!(m.unit);
    v
}

async fn flags(AxState(state): AxState<State>) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    respond(ApiOk::serialize(state.ctx.flags.as_ref()))
}

async fn runtime_info(AxState(state): AxState<State>) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let r = blocking(move || {
        let info = (state.ctx.runtime_info)();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .map_err(|e| ApiError::Internal(format!("error getting hostname: {e}")))?;
        let threads = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        let procs = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        ApiOk::serialize(&json!({
            "startTime": rfc3339(Some(info.start_time)),
            "CWD": info.cwd,
            "hostname": hostname,
            "serverTime": rfc3339(Some(std::time::SystemTime::now())),
            "reloadConfigSuccess": info.reload_config_success,
            "lastConfigTime": rfc3339(info.last_config_time),
            "corruptionCount": info.corruption_count,
            // pharos has no goroutines: the process's OS threads.
            "goroutineCount": threads,
            "GOMAXPROCS": procs,
            // Go's "no limit" value; pharos has no runtime memory limit.
            "GOMEMLIMIT": i64::MAX,
            "GOGC": "",
            "GODEBUG": "",
            "storageRetention": info.storage_retention,
        }))
    })
    .await;
    respond(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ast(q: &str) -> J {
        translate(&pharos_promql::parse(q).unwrap())
    }

    #[test]
    fn translates_like_prometheus() {
        let v = ast("sum by (job) (rate(http_total{code=~\"5..\"}[5m] offset 1m))");
        assert_eq!(v["type"], "aggregation");
        assert_eq!(v["op"], "sum");
        assert_eq!(v["grouping"], json!(["job"]));
        assert_eq!(v["without"], false);
        assert_eq!(v["param"], J::Null);
        let call = &v["expr"];
        assert_eq!(call["func"]["name"], "rate");
        assert_eq!(call["func"]["argTypes"], json!(["matrix"]));
        assert_eq!(call["func"]["returnType"], "vector");
        let m = &call["args"][0];
        assert_eq!(m["type"], "matrixSelector");
        assert_eq!(m["range"], 300_000);
        assert_eq!(m["offset"], 60_000);
        assert_eq!(
            m["matchers"],
            json!([
                {"name": "code", "value": "5..", "type": "=~"},
                {"name": "__name__", "value": "http_total", "type": "="}
            ])
        );
        let b = ast("a / on (x) group_left (y) b");
        assert_eq!(b["matching"]["card"], "many-to-one");
        assert_eq!(b["matching"]["labels"], json!(["x"]));
        assert_eq!(b["matching"]["on"], true);
        assert_eq!(b["matching"]["include"], json!(["y"]));
        assert_eq!(ast("a + 1")["matching"], J::Null);
        assert_eq!(ast("a and b")["matching"]["card"], "many-to-many");
        assert_eq!(ast("1 > bool 2")["bool"], true);
        let s = ast("max_over_time(x[1h:5m] @ end())");
        assert_eq!(s["args"][0]["type"], "subquery");
        assert_eq!(s["args"][0]["step"], 300_000);
        assert_eq!(s["args"][0]["startOrEnd"], "end");
        assert_eq!(ast("x @ 100")["timestamp"], 100_000);
        assert_eq!(ast("-x")["type"], "unaryExpr");
        assert_eq!(ast("1.5")["val"], "1.5");
        assert_eq!(ast("1e21")["val"], "1000000000000000000000");
        assert_eq!(ast("\"s\"")["val"], "s");
        assert_eq!(ast("(x)")["type"], "parenExpr");
    }

    #[test]
    fn selectors_found() {
        let sets = |q: &str| {
            let mut v = Vec::new();
            selector_matchers(&pharos_promql::parse(q).unwrap(), &mut v).unwrap();
            v.iter()
                .map(|s| {
                    s.iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sets("sum(rate(x{a=~\"b\"}[5m])) / y"),
            vec!["__name__=\"x\",a=~\"b\"", "__name__=\"y\""]
        );
        assert!(sets("1 + 2").is_empty());
    }

    #[test]
    fn exemplars_like_prometheus() {
        let ex = pharos_storage::Exemplar {
            labels: pharos_model::Labels::from_pairs(&[("trace_id", "abc")]),
            value: 6.0,
            ts: 1_600_096_945_479,
            has_ts: true,
        };
        let got = vec![(
            pharos_model::Labels::from_pairs(&[("__name__", "m"), ("job", "j")]),
            vec![
                ex.clone(),
                pharos_storage::Exemplar {
                    value: 0.25,
                    ts: 1_600_096_946_000,
                    ..ex
                },
            ],
        )];
        assert_eq!(
            exemplars_json(&got),
            r#"[{"seriesLabels":{"__name__":"m","job":"j"},"exemplars":[{"labels":{"trace_id":"abc"},"value":"6","timestamp":1600096945.479},{"labels":{"trace_id":"abc"},"value":"0.25","timestamp":1600096946}]}]"#
        );
        assert_eq!(exemplars_json(&[]), "[]");
    }
}
