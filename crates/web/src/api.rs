//! `/api/v1/*`, `/-/healthy`, `/-/ready` and `/metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Request, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pharos_model::sample::now_millis;
use pharos_model::{Labels, Matcher};
use pharos_promql::{QueryOptions, QueryResult, QueryStats, Value};
use pharos_storage::{Querier, SelectHints};
use serde_json::json;

use crate::params::{
    MAX_TIME, MIN_TIME, Params, invalid_param, parse_duration, parse_time, time_param,
};
use crate::{ApiError, State, TargetInfo, json as pj};

/// The most points a range query may return per series.
const MAX_POINTS_PER_SERIES: i128 = 11_000;

pub(crate) fn routes() -> Router<State> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(label_names).post(label_names))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/scrape_pools", get(scrape_pools))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/config", get(status_config))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/metrics", get(metrics))
}

/// A JSON body with Prometheus's content type.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// What an API handler produces: serialised `data` plus annotations.
pub(crate) struct ApiOk {
    pub(crate) data: String,
    pub(crate) warnings: Vec<String>,
    pub(crate) infos: Vec<String>,
}

impl ApiOk {
    pub(crate) fn data(data: String) -> ApiOk {
        ApiOk {
            data,
            warnings: Vec::new(),
            infos: Vec::new(),
        }
    }
    pub(crate) fn serialize(v: &impl serde::Serialize) -> Result<ApiOk, ApiError> {
        serde_json::to_string(v)
            .map(ApiOk::data)
            .map_err(|e| ApiError::Internal(format!("error marshaling response: {e}")))
    }
}

pub(crate) fn respond(r: Result<ApiOk, ApiError>) -> Response {
    match r {
        Ok(ok) => json_response(
            StatusCode::OK,
            pj::success_envelope(&ok.data, &ok.warnings, &ok.infos),
        ),
        Err(e) => json_response(
            e.status(),
            pj::error_envelope(e.error_type(), &e.to_string()),
        ),
    }
}

/// Prometheus's readiness gate around API handlers.
pub(crate) fn not_ready(state: &State) -> Option<Response> {
    if state.ctx.ready.load(Ordering::Acquire) {
        return None;
    }
    Some((StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response())
}

/// Runs a synchronous API body on the blocking pool.
pub(crate) async fn blocking<F>(f: F) -> Result<ApiOk, ApiError>
where
    F: FnOnce() -> Result<ApiOk, ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::Internal(format!("query task failed: {e}"))),
    }
}

/// The effective timeout: the engine's, lowered by a `timeout` parameter.
fn timeout_param(state: &State, p: &Params) -> Result<std::time::Duration, ApiError> {
    let engine_timeout = state.ctx.engine.options().timeout;
    let v = p.get("timeout");
    if v.is_empty() {
        return Ok(engine_timeout);
    }
    let ns = parse_duration(v).map_err(|e| invalid_param(&e, "timeout"))?;
    let asked = std::time::Duration::from_nanos(ns.max(0) as u64);
    Ok(asked.min(engine_timeout))
}

/// The query parameters shared by `query` and `query_range` besides the
/// times: `limit`, `lookback_delta`, `stats` and `timeout`.
pub(crate) struct QueryParams {
    /// Maximum series returned (0: all).
    limit: usize,
    /// Lookback delta override in ms.
    lookback_delta: Option<i64>,
    /// The `stats` parameter as given ("" for none).
    stats: String,
    /// The effective timeout.
    timeout: std::time::Duration,
}

fn query_params(state: &State, p: &Params) -> Result<QueryParams, ApiError> {
    let limit = limit_param(p)?;
    let timeout = timeout_param(state, p)?;
    let lookback_delta = match p.get("lookback_delta") {
        "" => None,
        v => {
            let ns = parse_duration(v).map_err(|e| {
                ApiError::BadData(format!("error parsing lookback delta duration: {e}"))
            })?;
            Some(ns / 1_000_000)
        }
    };
    Ok(QueryParams {
        limit,
        lookback_delta,
        stats: p.get("stats").to_string(),
        timeout,
    })
}

/// Sets the query's cancel flag when dropped before [`CancelOnDrop::done`]:
/// the request future is dropped when the client goes away or the API
/// timeout fires, and the engine then stops at its next check.
struct CancelOnDrop(Option<Arc<AtomicBool>>);

impl CancelOnDrop {
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs an engine call on the blocking pool once a query slot is free,
/// bounded by the timeout (waiting for the slot included). The engine gets
/// the request's deadline and a cancel flag, so it stops when the client
/// gives up or the timeout passes.
async fn run_query<F>(
    state: &State,
    qp: QueryParams,
    eval: F,
    parse_error_prefix: bool,
) -> Result<ApiOk, ApiError>
where
    F: FnOnce(&QueryOptions) -> Result<QueryResult, pharos_promql::QueryError> + Send + 'static,
{
    let began = Instant::now();
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = QueryOptions {
        lookback_delta: qp.lookback_delta,
        deadline: Some(began + qp.timeout),
        cancel: Some(cancel.clone()),
    };
    let guard = CancelOnDrop(Some(cancel));
    let time_left = qp.timeout;
    let slots = state.query_slots.clone();
    let task = async move {
        // The permit moves into the blocking task, so a query whose client
        // timed out holds its slot until the engine notices the cancel.
        let permit = match slots {
            Some(s) => Some(
                s.acquire_owned()
                    .await
                    .map_err(|_| ApiError::Unavailable("query slots closed".to_string()))?,
            ),
            None => None,
        };
        let queued = began.elapsed();
        blocking(move || {
            let _permit = permit;
            let res = eval(&opts);
            evaluate(res, parse_error_prefix, &qp, queued, began)
        })
        .await
    };
    let r = match tokio::time::timeout(time_left, task).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::Timeout(
            "query timed out in expression evaluation".to_string(),
        )),
    };
    guard.done();
    r
}

/// Serialises an evaluation (large matrices are CPU work too), cut to the
/// `limit` and with `stats` when asked for.
fn evaluate(
    res: Result<QueryResult, pharos_promql::QueryError>,
    parse_error_prefix: bool,
    qp: &QueryParams,
    queued: std::time::Duration,
    began: Instant,
) -> Result<ApiOk, ApiError> {
    match res {
        Ok(mut res) => {
            let mut warnings = std::mem::take(&mut res.warnings);
            if qp.limit > 0 {
                let cut = match &mut res.value {
                    Value::Vector(v) if v.len() > qp.limit => {
                        v.truncate(qp.limit);
                        true
                    }
                    Value::Matrix(m) if m.len() > qp.limit => {
                        m.truncate(qp.limit);
                        true
                    }
                    _ => false,
                };
                if cut {
                    warnings.push("results truncated due to limit".to_string());
                }
            }
            if !matches!(qp.stats.as_str(), "" | "true" | "all") {
                warnings.push(format!(
                    "value {:?} for parameter \"stats\" is deprecated and will be rejected in the next major release, use \"true\" or \"all\"",
                    qp.stats
                ));
            }
            let mut data = String::new();
            pj::write_query_data(&mut data, &res.value);
            if !qp.stats.is_empty() && data.ends_with('}') {
                data.pop();
                data.push_str(",\"stats\":");
                write_stats(&mut data, &res.stats, queued, began.elapsed());
                data.push('}');
            }
            Ok(ApiOk {
                data,
                warnings,
                infos: res.infos,
            })
        }
        Err(e) => {
            let api = ApiError::from_query_error(&e);
            match (&api, parse_error_prefix) {
                (ApiError::BadData(msg), true) => Err(invalid_param(msg, "query")),
                _ => Err(api),
            }
        }
    }
}

/// Prometheus's `stats` object: timings in seconds and sample counts.
fn write_stats(
    out: &mut String,
    st: &QueryStats,
    queued: std::time::Duration,
    total: std::time::Duration,
) {
    let v = json!({
        "timings": {
            "evalTotalTime": st.eval_total_secs,
            "resultSortTime": st.result_sort_secs,
            "queryPreparationTime": st.prepare_secs,
            "innerEvalTime": st.inner_eval_secs,
            "execQueueTime": queued.as_secs_f64(),
            "execTotalTime": total.as_secs_f64(),
        },
        "samples": {
            "totalQueryableSamples": st.total_queryable_samples,
            "samplesRead": st.total_queryable_samples,
            "peakSamples": st.peak_samples,
        },
    });
    out.push_str(&v.to_string());
}

async fn query(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    respond(query_inner(state, req).await)
}

async fn query_inner(state: State, req: Request) -> Result<ApiOk, ApiError> {
    let p = Params::from_request(req).await?;
    let ts = time_param(&p, "time", now_millis())?;
    let qp = query_params(&state, &p)?;
    let q = p.get("query").to_string();
    let ctx = state.ctx.clone();
    run_query(
        &state,
        qp,
        move |o| {
            ctx.engine
                .instant_query_with(ctx.queryable.as_ref(), &q, ts, o)
        },
        true,
    )
    .await
}

async fn query_range(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    respond(query_range_inner(state, req).await)
}

/// Validated range parameters: start, end (ms) and step (ns as given).
fn range_params(p: &Params) -> Result<(i64, i64, i64), ApiError> {
    let start = parse_time(p.get("start")).map_err(|e| invalid_param(&e, "start"))?;
    let end = parse_time(p.get("end")).map_err(|e| invalid_param(&e, "end"))?;
    if end < start {
        return Err(invalid_param(
            "end timestamp must not be before start time",
            "end",
        ));
    }
    let step = parse_duration(p.get("step")).map_err(|e| invalid_param(&e, "step"))?;
    if step <= 0 {
        return Err(invalid_param(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
            "step",
        ));
    }
    // For safety, limit the number of returned points per series (enough
    // for a week at 60s or a year at 1h), as Prometheus does.
    let span_ns = (end as i128 - start as i128) * 1_000_000;
    if span_ns / step as i128 > MAX_POINTS_PER_SERIES {
        return Err(ApiError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .to_string(),
        ));
    }
    Ok((start, end, step))
}

async fn query_range_inner(state: State, req: Request) -> Result<ApiOk, ApiError> {
    let p = Params::from_request(req).await?;
    let (start, end, step_ns) = range_params(&p)?;
    let qp = query_params(&state, &p)?;
    // The engine works in whole milliseconds; sub-millisecond steps are
    // rounded up to 1ms rather than rejected.
    let step_ms = (step_ns / 1_000_000).max(1);
    let q = p.get("query").to_string();
    let ctx = state.ctx.clone();
    run_query(
        &state,
        qp,
        move |o| {
            ctx.engine
                .range_query_with(ctx.queryable.as_ref(), &q, start, end, step_ms, o)
        },
        false,
    )
    .await
}

/// Parses `match[]` selectors; each must have a matcher that rejects the
/// empty string, so a selector cannot select every series.
fn parse_match_params(values: &[&str]) -> Result<Vec<Vec<Matcher>>, String> {
    let mut sets = Vec::with_capacity(values.len());
    for v in values {
        const EMPTY: &str = "match[] must contain at least one non-empty matcher";
        let ms = pharos_promql::parse_selector(v).map_err(|e| {
            // The selector parser may refuse an all-empty selector itself,
            // in its own words; answer with Prometheus's.
            let e = e.to_string();
            if e.ends_with("must contain at least one non-empty matcher") {
                EMPTY.to_string()
            } else {
                e
            }
        })?;
        if !ms.iter().any(|m| !m.matches_empty()) {
            return Err(EMPTY.to_string());
        }
        sets.push(ms);
    }
    Ok(sets)
}

fn open_querier(state: &State, start: i64, end: i64) -> Result<Box<dyn Querier>, ApiError> {
    state
        .ctx
        .queryable
        .querier(start, end)
        .map_err(|e| ApiError::Execution(e.to_string()))
}

async fn series(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let r = async {
        let p = Params::from_request(req).await?;
        let matches = p.all("match[]");
        if matches.is_empty() {
            return Err(ApiError::BadData("no match[] parameter provided".into()));
        }
        let limit = limit_param(&p)?;
        let start = time_param(&p, "start", MIN_TIME)?;
        let end = time_param(&p, "end", MAX_TIME)?;
        let sets = parse_match_params(&matches).map_err(|e| invalid_param(&e, "match[]"))?;
        blocking(move || series_blocking(&state, start, end, &sets, limit)).await
    }
    .await;
    respond(r)
}

fn series_blocking(
    state: &State,
    start: i64,
    end: i64,
    sets: &[Vec<Matcher>],
    limit: usize,
) -> Result<ApiOk, ApiError> {
    let q = open_querier(state, start, end)?;
    let hints = SelectHints {
        start,
        end,
        func: Some("series".to_string()),
        ..SelectHints::default()
    };
    // Reads one selector's series, stopping once `max` are held.
    let collect =
        |ms: &[Matcher], sorted: bool, max: usize, out: &mut dyn FnMut(Labels) -> usize| {
            let mut set = q.select(sorted, Some(&hints), ms);
            while let Some(s) = set.next() {
                if out(s.labels) > max {
                    return Ok(());
                }
            }
            match set.err() {
                Some(e) => Err(ApiError::Execution(e.to_string())),
                None => Ok(()),
            }
        };
    // One more than the limit tells whether anything was cut.
    let max = if limit > 0 { limit } else { usize::MAX - 1 };
    let mut all: Vec<Labels> = Vec::new();
    if let [only] = sets {
        collect(only, false, max, &mut |l| {
            all.push(l);
            all.len()
        })?;
    } else {
        // Several selectors: merge and de-duplicate, in label order.
        let mut merged = BTreeSet::new();
        for ms in sets {
            collect(ms, true, usize::MAX - 1, &mut |l| {
                merged.insert(l);
                merged.len()
            })?;
        }
        all = merged.into_iter().collect();
    }
    let mut ok = ApiOk::data(String::new());
    if all.len() > max {
        all.truncate(max);
        ok.warnings
            .push("results truncated due to limit".to_string());
    }
    ok.data.push('[');
    for (i, l) in all.iter().enumerate() {
        if i > 0 {
            ok.data.push(',');
        }
        pj::write_labels(&mut ok.data, l);
    }
    ok.data.push(']');
    Ok(ok)
}

/// Reads the `limit` parameter: 0 (absent) means no limit.
pub(crate) fn limit_param(p: &Params) -> Result<usize, ApiError> {
    let v = p.get("limit");
    if v.is_empty() {
        return Ok(0);
    }
    let n: i64 = v.parse().map_err(|_| {
        invalid_param(
            &format!("strconv.Atoi: parsing {v:?}: invalid syntax"),
            "limit",
        )
    })?;
    if n < 0 {
        return Err(invalid_param("limit must be non-negative", "limit"));
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Shared parameter handling of the two label endpoints.
async fn label_params(req: Request) -> Result<(i64, i64, Vec<Vec<Matcher>>, usize), ApiError> {
    let p = Params::from_request(req).await?;
    let limit = limit_param(&p)?;
    let start = time_param(&p, "start", MIN_TIME)?;
    let end = time_param(&p, "end", MAX_TIME)?;
    let sets = parse_match_params(&p.all("match[]")).map_err(ApiError::BadData)?;
    Ok((start, end, sets, limit))
}

/// Serialises a sorted name or value list, cut to `limit` (0: no limit)
/// with Prometheus's warning.
fn string_list(mut v: Vec<String>, limit: usize) -> Result<ApiOk, ApiError> {
    let cut = limit > 0 && v.len() > limit;
    v.truncate(if cut { limit } else { v.len() });
    let mut ok = ApiOk::serialize(&v)?;
    if cut {
        ok.warnings
            .push("results truncated due to limit".to_string());
    }
    Ok(ok)
}

/// Runs `f` once without matchers, or once per selector and unions the
/// results; returns them sorted.
fn union_per_selector(
    sets: &[Vec<Matcher>],
    mut f: impl FnMut(&[Matcher]) -> Result<Vec<String>, ApiError>,
) -> Result<Vec<String>, ApiError> {
    match sets {
        [] => f(&[]),
        [only] => f(only),
        _ => {
            let mut all = BTreeSet::new();
            for ms in sets {
                all.extend(f(ms)?);
            }
            Ok(all.into_iter().collect())
        }
    }
}

async fn label_names(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let r = async {
        let (start, end, sets, limit) = label_params(req).await?;
        blocking(move || {
            let q = open_querier(&state, start, end)?;
            let names = union_per_selector(&sets, |ms| {
                q.label_names(ms)
                    .map_err(|e| ApiError::Execution(e.to_string()))
            })?;
            string_list(names, limit)
        })
        .await
    }
    .await;
    respond(r)
}

/// Undoes Prometheus's `U__` name escaping (`U__a_2e_b` is `a.b`, `__` is
/// `_`), used by clients to put UTF-8 label names in a URL path.
fn unescape_label_name(name: &str) -> Option<String> {
    let Some(rest) = name.strip_prefix("U__") else {
        return Some(name.to_string());
    };
    let mut out = String::new();
    let mut it = rest.chars().peekable();
    while let Some(c) = it.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if it.peek() == Some(&'_') {
            it.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match it.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                _ => return None,
            }
        }
        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
    }
    Some(out)
}

async fn label_values(
    AxState(state): AxState<State>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let r = async {
        let name = unescape_label_name(&name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::BadData(format!("invalid label name: {name:?}")))?;
        let (start, end, sets, limit) = label_params(req).await?;
        blocking(move || {
            let q = open_querier(&state, start, end)?;
            let values = union_per_selector(&sets, |ms| {
                q.label_values(&name, ms)
                    .map_err(|e| ApiError::Execution(e.to_string()))
            })?;
            string_list(values, limit)
        })
        .await
    }
    .await;
    respond(r)
}

async fn targets(AxState(state): AxState<State>, req: Request) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    // Prometheus reads these from the URL only.
    let p = Params::from_pairs(
        axum::extract::Query::try_from_uri(req.uri())
            .map(|axum::extract::Query(q)| q)
            .unwrap_or_default(),
    );
    drop(req);
    let r = async {
        let state_filter = p.get("state").to_ascii_lowercase();
        let pool = p.get("scrapePool").to_string();
        let show_active = matches!(state_filter.as_str(), "" | "any" | "active");
        let show_dropped = matches!(state_filter.as_str(), "" | "any" | "dropped");
        blocking(move || {
            let own_port = state.listen_port.map(|p| p.to_string());
            let external = state.ctx.external_url.as_str();
            let by_pool = |mut ts: Vec<TargetInfo>| {
                ts.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
                ts.retain(|t| pool.is_empty() || t.scrape_pool == pool);
                ts
            };
            let active: Vec<serde_json::Value> = if show_active {
                by_pool(state.ctx.targets.active())
                    .iter()
                    .map(|t| active_target_json(t, own_port.as_deref(), external))
                    .collect()
            } else {
                Vec::new()
            };
            let mut data = json!({ "activeTargets": active });
            if show_dropped {
                let dropped_all = state.ctx.targets.dropped();
                let counts: BTreeMap<String, usize> = state.ctx.targets.dropped_counts();
                let dropped: Vec<serde_json::Value> = by_pool(dropped_all)
                    .iter()
                    .map(|t| {
                        json!({
                            "discoveredLabels": labels_json(&t.discovered_labels),
                            "scrapePool": t.scrape_pool,
                        })
                    })
                    .collect();
                data["droppedTargets"] = json!(dropped);
                data["droppedTargetCounts"] = json!(counts);
            } else {
                data["droppedTargets"] = json!([]);
                data["droppedTargetCounts"] = serde_json::Value::Null;
            }
            ApiOk::serialize(&data)
        })
        .await
    }
    .await;
    respond(r)
}

/// `/api/v1/scrape_pools`: `{"scrapePools": [...]}`.
async fn scrape_pools(AxState(state): AxState<State>) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let r = blocking(move || {
        ApiOk::serialize(&json!({ "scrapePools": state.ctx.targets.scrape_pools() }))
    })
    .await;
    respond(r)
}

pub(crate) fn labels_json(l: &Labels) -> serde_json::Value {
    serde_json::Value::Object(
        l.iter()
            .map(|l| (l.name.to_string(), serde_json::Value::from(l.value)))
            .collect(),
    )
}

/// Go's zero `time.Time` in RFC 3339, what Prometheus shows for "never".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(crate) fn rfc3339(t: Option<std::time::SystemTime>) -> String {
    match t {
        Some(t) => chrono::DateTime::<chrono::Utc>::from(t)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => ZERO_TIME.to_string(),
    }
}

fn active_target_json(t: &TargetInfo, own_port: Option<&str>, external: &str) -> serde_json::Value {
    json!({
        "discoveredLabels": labels_json(&t.discovered_labels),
        "labels": labels_json(&t.labels),
        "scrapePool": t.scrape_pool,
        "scrapeUrl": t.scrape_url,
        "globalUrl": global_url(&t.scrape_url, own_port, external),
        "lastError": t.last_error,
        "lastScrape": rfc3339(t.last_scrape),
        "lastScrapeDuration": t.last_scrape_duration.as_secs_f64(),
        "health": t.health.as_str(),
        "scrapeInterval": t.scrape_interval.to_string(),
        "scrapeTimeout": t.scrape_timeout.to_string(),
    })
}

/// Splits `scheme://host[:port]/rest` into (scheme, host, port, rest).
fn split_url(u: &str) -> Option<(&str, &str, &str, &str)> {
    let (scheme, rest) = u.split_once("://")?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':').unwrap_or(""))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (authority, ""),
        }
    };
    Some((scheme, host, port, path))
}

fn join_host_port(host: &str, port: &str) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port.is_empty() {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// The target URL as seen from outside: a localhost target takes the
/// external URL's host; when it is this server itself (same port as the
/// server listens on, or as the external URL when that is unknown) it takes
/// the external scheme and port too.
fn global_url(scrape_url: &str, own_port: Option<&str>, external: &str) -> String {
    let Some((scheme, host, port, path)) = split_url(scrape_url) else {
        return scrape_url.to_string();
    };
    if !matches!(host, "127.0.0.1" | "localhost" | "::1") {
        return scrape_url.to_string();
    }
    let Some((ext_scheme, ext_host, ext_port, _)) = split_url(external) else {
        return scrape_url.to_string();
    };
    if !port.is_empty() && port == own_port.unwrap_or(ext_port) {
        format!(
            "{ext_scheme}://{}{path}",
            join_host_port(ext_host, ext_port)
        )
    } else {
        format!("{scheme}://{}{path}", join_host_port(ext_host, port))
    }
}

async fn buildinfo(AxState(state): AxState<State>) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    respond(ApiOk::serialize(&state.build_info))
}

async fn status_config(AxState(state): AxState<State>) -> Response {
    if let Some(r) = not_ready(&state) {
        return r;
    }
    let r = blocking(move || {
        let yaml = (state.ctx.config_yaml)();
        ApiOk::serialize(&json!({ "yaml": yaml }))
    })
    .await;
    respond(r)
}

async fn healthy() -> Response {
    (StatusCode::OK, "pharos Server is Healthy.\n").into_response()
}

async fn ready(AxState(state): AxState<State>) -> Response {
    match not_ready(&state) {
        Some(r) => r,
        None => (StatusCode::OK, "pharos Server is Ready.\n").into_response(),
    }
}

async fn metrics(AxState(state): AxState<State>) -> Response {
    let body = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        (state.ctx.metrics)(&mut out);
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        state.http_metrics.write(&mut out);
        out
    })
    .await;
    match body {
        Ok(body) => {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error gathering metrics: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod unit_tests {
    use super::*;

    #[test]
    fn unescape() {
        assert_eq!(unescape_label_name("job").as_deref(), Some("job"));
        assert_eq!(unescape_label_name("U__a_2e_b").as_deref(), Some("a.b"));
        assert_eq!(unescape_label_name("U__a__b").as_deref(), Some("a_b"));
        assert_eq!(unescape_label_name("U__a_zz_b"), None);
        assert_eq!(unescape_label_name("U__a_2e"), None);
    }

    #[test]
    fn global_urls() {
        let ext = "http://prom.example.com:9090/";
        assert_eq!(
            global_url("http://localhost:9090/metrics", Some("9090"), ext),
            "http://prom.example.com:9090/metrics"
        );
        assert_eq!(
            global_url(
                "http://localhost:9091/metrics",
                Some("9091"),
                "https://p.example/"
            ),
            "https://p.example/metrics"
        );
        assert_eq!(
            global_url("http://localhost:9090/metrics", None, ext),
            "http://prom.example.com:9090/metrics"
        );
        assert_eq!(
            global_url("http://127.0.0.1:9100/metrics?x=1", Some("9090"), ext),
            "http://prom.example.com:9100/metrics?x=1"
        );
        assert_eq!(
            global_url("http://[::1]:9100/metrics", Some("9090"), ext),
            "http://prom.example.com:9100/metrics"
        );
        assert_eq!(
            global_url("https://node1:9100/metrics", Some("9090"), ext),
            "https://node1:9100/metrics"
        );
    }

    #[test]
    fn range_param_errors() {
        let p = |pairs: &[(&str, &str)]| {
            Params::from_pairs(
                pairs
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            )
        };
        let ok = range_params(&p(&[("start", "0"), ("end", "110000"), ("step", "10")]));
        assert_eq!(ok, Ok((0, 110_000_000, 10_000_000_000)));
        let ok = range_params(&p(&[("start", "0"), ("end", "110009.999"), ("step", "10")]));
        assert!(ok.is_ok());
        let e = range_params(&p(&[("start", "0"), ("end", "110010"), ("step", "10")]));
        assert!(
            matches!(e, Err(ApiError::BadData(m)) if m.starts_with("exceeded maximum resolution of 11,000"))
        );
        let e = range_params(&p(&[("start", "x"), ("end", "1"), ("step", "1")]));
        assert_eq!(
            e,
            Err(ApiError::BadData(
                "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp".into()
            ))
        );
        let e = range_params(&p(&[("start", "2"), ("end", "1"), ("step", "1")]));
        assert_eq!(
            e,
            Err(ApiError::BadData(
                "invalid parameter \"end\": end timestamp must not be before start time".into()
            ))
        );
        let e = range_params(&p(&[("start", "1"), ("end", "2"), ("step", "0")]));
        assert_eq!(
            e,
            Err(ApiError::BadData(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into()
            ))
        );
        let e = range_params(&p(&[("start", "1"), ("end", "2")]));
        assert_eq!(
            e,
            Err(ApiError::BadData(
                "invalid parameter \"step\": cannot parse \"\" to a valid duration".into()
            ))
        );
    }
}
