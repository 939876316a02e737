//! TSDB status and administration endpoints: `/api/v1/status/tsdb`,
//! `/api/v1/status/walreplay`, and, behind `--web.enable-admin-api`,
//! `/api/v1/admin/tsdb/{snapshot,delete_series,clean_tombstones}`.
//!
//! The web crate does not know the TSDB's types: the binary implements the
//! narrow [`TsdbAdmin`] trait over its database, and merges
//! [`tsdb_router`] into the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pharos_model::Matcher;
use serde::Serialize;

use crate::ApiError;
use crate::api::{ApiOk, respond};
use crate::params::{MAX_TIME, MIN_TIME, Params, time_param};

/// Head statistics of `/api/v1/status/tsdb`, under Prometheus's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadStatsInfo {
    /// Series in the head.
    pub num_series: u64,
    /// Distinct label pairs in the head.
    pub num_label_pairs: u64,
    /// Chunks in the head.
    pub chunk_count: u64,
    /// Oldest sample time in the head (ms).
    pub min_time: i64,
    /// Newest sample time in the head (ms).
    pub max_time: i64,
}

/// One `{name, value}` entry of a top-N list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameCount {
    /// The metric name, label name or `name=value` pair.
    pub name: String,
    /// The count (or bytes).
    pub value: u64,
}

/// The body of `/api/v1/status/tsdb`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TsdbStatus {
    /// Head statistics.
    pub head_stats: HeadStatsInfo,
    /// Top series counts by metric name.
    pub series_count_by_metric_name: Vec<NameCount>,
    /// Top label names by number of distinct values.
    pub label_value_count_by_label_name: Vec<NameCount>,
    /// Top label names by bytes of their values.
    pub memory_in_bytes_by_label_name: Vec<NameCount>,
    /// Top label pairs by series count.
    pub series_count_by_label_value_pair: Vec<NameCount>,
}

/// The body of `/api/v1/status/walreplay` (WAL segments).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WalReplayStatus {
    /// First segment replayed.
    pub min: u64,
    /// Last segment to replay.
    pub max: u64,
    /// Segment being replayed (equal to `max` when done).
    pub current: u64,
}

/// What the TSDB endpoints need from the database. Calls may block (they
/// run on a blocking thread); errors are messages for the API envelope.
pub trait TsdbAdmin: Send + Sync {
    /// Head statistics and top-`limit` cardinality lists.
    fn status(&self, limit: usize) -> Result<TsdbStatus, String>;
    /// Progress of the WAL replay at start-up.
    fn wal_replay(&self) -> WalReplayStatus;
    /// Writes a snapshot under `<data dir>/snapshots/` and returns its name.
    fn snapshot(&self, skip_head: bool) -> Result<String, String>;
    /// Deletes the samples in `[start, end]` of series matching any set.
    fn delete_series(&self, sets: &[Vec<Matcher>], start: i64, end: i64) -> Result<(), String>;
    /// Rewrites blocks with tombstones without the deleted data.
    fn clean_tombstones(&self) -> Result<(), String>;
}

#[derive(Clone)]
struct TsdbState {
    db: Arc<dyn TsdbAdmin>,
    ready: Arc<AtomicBool>,
    admin: bool,
}

/// The routes of this module. `ready` gates them like the main router;
/// without `enable_admin` the admin endpoints answer 503 `unavailable`
/// ("admin APIs disabled"), as Prometheus does.
pub fn tsdb_router(db: Arc<dyn TsdbAdmin>, ready: Arc<AtomicBool>, enable_admin: bool) -> Router {
    Router::new()
        .route("/api/v1/status/tsdb", get(status))
        .route("/api/v1/status/walreplay", get(walreplay))
        .route("/api/v1/admin/tsdb/snapshot", post(snapshot).put(snapshot))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(delete_series).put(delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(clean_tombstones).put(clean_tombstones),
        )
        .with_state(TsdbState {
            db,
            ready,
            admin: enable_admin,
        })
}

fn not_ready(s: &TsdbState) -> Option<Response> {
    if s.ready.load(Ordering::Acquire) {
        return None;
    }
    Some((StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response())
}

fn admin_gate(s: &TsdbState) -> Option<Response> {
    if let Some(r) = not_ready(s) {
        return Some(r);
    }
    if !s.admin {
        return Some(respond(Err(ApiError::Unavailable(
            "admin APIs disabled".into(),
        ))));
    }
    None
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::Internal(format!("task failed: {e}"))),
    }
}

async fn status(AxState(s): AxState<TsdbState>, req: Request) -> Response {
    if let Some(r) = not_ready(&s) {
        return r;
    }
    let r = async {
        let p = Params::from_request(req).await?;
        let limit = match p.get("limit") {
            "" => 10,
            v => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::BadData("limit must be a positive number".into()))?,
        };
        let db = s.db.clone();
        let st = run_blocking(move || db.status(limit).map_err(ApiError::Internal)).await?;
        ApiOk::serialize(&st)
    }
    .await;
    respond(r)
}

async fn walreplay(AxState(s): AxState<TsdbState>) -> Response {
    if let Some(r) = not_ready(&s) {
        return r;
    }
    respond(ApiOk::serialize(&s.db.wal_replay()))
}

async fn snapshot(AxState(s): AxState<TsdbState>, req: Request) -> Response {
    if let Some(r) = admin_gate(&s) {
        return r;
    }
    let r = async {
        let p = Params::from_request(req).await?;
        let skip_head = match p.get("skip_head") {
            "" => false,
            v => v.parse::<bool>().map_err(|_| {
                ApiError::BadData(format!(
                    "unable to parse boolean 'skip_head' argument: {v:?}"
                ))
            })?,
        };
        let db = s.db.clone();
        let name = run_blocking(move || db.snapshot(skip_head).map_err(ApiError::Internal)).await?;
        ApiOk::serialize(&serde_json::json!({ "name": name }))
    }
    .await;
    respond(r)
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_series(AxState(s): AxState<TsdbState>, req: Request) -> Response {
    if let Some(r) = admin_gate(&s) {
        return r;
    }
    let r = async {
        let p = Params::from_request(req).await?;
        let matches = p.all("match[]");
        if matches.is_empty() {
            return Err(ApiError::BadData("no match[] parameter provided".into()));
        }
        let mut sets = Vec::new();
        for m in matches {
            let ms = pharos_promql::parse_selector(m)
                .map_err(|e| ApiError::BadData(format!("invalid parameter \"match[]\": {e}")))?;
            sets.push(ms);
        }
        let start = time_param(&p, "start", MIN_TIME)?;
        let end = time_param(&p, "end", MAX_TIME)?;
        let db = s.db.clone();
        run_blocking(move || {
            db.delete_series(&sets, start, end)
                .map_err(ApiError::Internal)
        })
        .await
    }
    .await;
    match r {
        Ok(()) => no_content(),
        Err(e) => respond(Err(e)),
    }
}

async fn clean_tombstones(AxState(s): AxState<TsdbState>) -> Response {
    if let Some(r) = admin_gate(&s) {
        return r;
    }
    let db = s.db.clone();
    match run_blocking(move || db.clean_tombstones().map_err(ApiError::Internal)).await {
        Ok(()) => no_content(),
        Err(e) => respond(Err(e)),
    }
}
