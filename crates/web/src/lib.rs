//! The HTTP face of pharos: Prometheus's `/api/v1` query and metadata API,
//! the `/-/healthy` and `/-/ready` probes, `/metrics`, and a small embedded
//! expression browser and targets page.
//!
//! Why it is built this way:
//!
//! * **Wire compatibility over novelty.** Grafana, promtool, client
//!   libraries and scripts talk to Prometheus's API; every envelope, error
//!   type, status code, parameter format and error message here follows
//!   Prometheus 3 so those clients work unchanged. Sample values and
//!   timestamps are written by hand ([`json`]) exactly as Prometheus's
//!   `jsonutil` writes them, which also keeps large matrix responses cheap.
//! * **The rest of the process is reached through [`ApiContext`] only.**
//!   The crate names no TSDB, scrape manager or config type: it gets a
//!   [`pharos_storage::Queryable`], the PromQL [`Engine`], a
//!   [`TargetRetriever`] and a few closures. The binary is the one place
//!   where the concrete types meet, and tests build a context from tiny
//!   in-memory fakes.
//! * **Queries never run on the async runtime.** Evaluation and storage
//!   reads are synchronous and CPU-bound, so handlers move them to
//!   `tokio::task::spawn_blocking`, bounded by the query timeout.
//! * **The UI is plain files compiled into the binary** (`include_str!` of
//!   `ui/*`): ES modules and CSS, no Node, no bundler, no third-party code.
//!   The chart is our own SVG renderer, with stable element ids and classes
//!   so an end-to-end test can inspect what was drawn.
//!
//! Known gaps and deliberate differences:
//!
//! * `/api/v1/rules`, `/api/v1/alerts` and `/api/v1/alertmanagers` (with
//!   the Alerts and Rules pages) come as a router of their own,
//!   [`rules_router`], over a [`RulesRetriever`] the binary implements.
//! * Not served yet: `/status/tsdb`, admin and remote read/write endpoints. Routes live at `/` (no
//!   `--web.route-prefix`).
//! * `/api/v1/query_exemplars` reads [`ApiContext::exemplars`] (the TSDB's
//!   exemplar ring when exemplar storage is on); without it, queries with
//!   selectors answer the empty list Prometheus gives when none match.
//! * A query whose `timeout` expires, or whose client goes away, sets the
//!   query's cancel flag; the engine polls it (and its deadline) while
//!   evaluating, so the blocking thread and concurrency slot are freed
//!   promptly rather than when the evaluation would have ended.
//! * `stats` reports `totalQueryableSamples` as the samples read from
//!   storage (Prometheus counts samples per step considered); per-step
//!   statistics are not produced.
//! * `canceled` errors answer 503, as Prometheus 2 did (Prometheus 3 uses
//!   499). The probes say `pharos Server is Healthy.` / `... Ready.`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use axum::http::StatusCode;
use pharos_model::{Duration, Labels};
use pharos_promql::Engine;
use pharos_storage::Queryable;

mod api;
mod api_rules;
mod api_status;
mod api_tsdb;
pub mod json;
mod layers;
mod metrics;
pub mod params;
mod ui;

#[cfg(test)]
mod tests;

pub use api_rules::{
    AlertInfo, NoRules, RuleGroupInfo, RuleInfo, RuleInfoKind, RulesRetriever, format_value,
    rules_router,
};
pub use api_tsdb::{HeadStatsInfo, NameCount, TsdbAdmin, TsdbStatus, WalReplayStatus, tsdb_router};

/// Build information served at `/api/v1/status/buildinfo`, under
/// Prometheus's JSON keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildInfo {
    /// Release version (`0.1.0`).
    pub version: String,
    /// Source revision (git commit), or `unknown`.
    pub revision: String,
    /// Source branch, or `unknown`.
    pub branch: String,
    /// Who built the binary, or `unknown`.
    #[serde(rename = "buildUser")]
    pub build_user: String,
    /// When the binary was built, or `unknown`.
    #[serde(rename = "buildDate")]
    pub build_date: String,
    /// The compiler that built the binary. Served under Prometheus's key
    /// `goVersion` so that clients expecting it find a string there.
    #[serde(rename = "goVersion")]
    pub go_version: String,
}

impl BuildInfo {
    /// This build's information: the crate version, and the rest from the
    /// compile-time environment variables `PHAROS_BUILD_REVISION`,
    /// `PHAROS_BUILD_BRANCH`, `PHAROS_BUILD_USER`, `PHAROS_BUILD_DATE` and
    /// `PHAROS_BUILD_RUSTC` (each `unknown` when unset), so release scripts
    /// can stamp them without code changes.
    pub fn current() -> BuildInfo {
        let or_unknown = |v: Option<&str>| v.unwrap_or("unknown").to_string();
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: or_unknown(option_env!("PHAROS_BUILD_REVISION")),
            branch: or_unknown(option_env!("PHAROS_BUILD_BRANCH")),
            build_user: or_unknown(option_env!("PHAROS_BUILD_USER")),
            build_date: or_unknown(option_env!("PHAROS_BUILD_DATE")),
            go_version: or_unknown(option_env!("PHAROS_BUILD_RUSTC")),
        }
    }
}

/// Scrape health of a target, as `/api/v1/targets` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetHealth {
    /// The last scrape succeeded.
    Up,
    /// The last scrape failed.
    Down,
    /// Not scraped yet.
    #[default]
    Unknown,
}

impl TargetHealth {
    /// Prometheus's spelling: `up`, `down`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetHealth::Up => "up",
            TargetHealth::Down => "down",
            TargetHealth::Unknown => "unknown",
        }
    }
}

/// One scrape target as the API shows it. Web's own type (mirroring the
/// scrape crate's `TargetStatus`), so this crate does not depend on scrape.
#[derive(Debug, Clone, Default)]
pub struct TargetInfo {
    /// The scrape pool (job name) the target belongs to.
    pub scrape_pool: String,
    /// The full URL scraped, with scheme, path and params.
    pub scrape_url: String,
    /// Labels after relabeling (attached to every scraped series). Empty
    /// for dropped targets.
    pub labels: Labels,
    /// Labels as discovered, before relabeling (`__address__`, ...).
    pub discovered_labels: Labels,
    /// Health after the last scrape.
    pub health: TargetHealth,
    /// The last scrape's error, empty when it succeeded.
    pub last_error: String,
    /// When the last scrape started; `None` before the first one.
    pub last_scrape: Option<SystemTime>,
    /// How long the last scrape took.
    pub last_scrape_duration: std::time::Duration,
    /// The target's scrape interval.
    pub scrape_interval: Duration,
    /// The target's scrape timeout.
    pub scrape_timeout: Duration,
}

/// Where `/api/v1/targets` gets its targets from. The binary implements it
/// over the scrape manager. Called on a blocking thread; may take locks.
pub trait TargetRetriever: Send + Sync {
    /// Targets being scraped, in any order (the API groups them by pool).
    fn active(&self) -> Vec<TargetInfo>;
    /// Targets that relabeling dropped (only `scrape_pool` and
    /// `discovered_labels` are used).
    fn dropped(&self) -> Vec<TargetInfo>;
    /// How many targets each pool dropped, also those not kept because of
    /// `keep_dropped_targets` (`droppedTargetCounts`). By default, counted
    /// from [`TargetRetriever::dropped`].
    fn dropped_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for t in self.dropped() {
            *counts.entry(t.scrape_pool).or_default() += 1;
        }
        counts
    }
    /// The names of the scrape pools, sorted (`/api/v1/scrape_pools`). By
    /// default, the pools having active or dropped targets.
    fn scrape_pools(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .active()
            .into_iter()
            .chain(self.dropped())
            .map(|t| t.scrape_pool)
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Metadata of one metric family of a target (`# TYPE`, `# HELP`,
/// `# UNIT`), as `/api/v1/metadata` and `/api/v1/targets/metadata` show it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MetricMetadata {
    /// The metric family name.
    pub metric: String,
    /// The type (`counter`, `gauge`, ..., `unknown`).
    pub kind: String,
    /// The help text.
    pub help: String,
    /// The unit.
    pub unit: String,
}

/// The metadata a target exposed, for the metadata endpoints.
#[derive(Debug, Clone, Default)]
pub struct TargetMetadata {
    /// The target's labels (as on `/api/v1/targets`).
    pub labels: Labels,
    /// Its metric families' metadata, sorted by family name.
    pub metadata: Vec<MetricMetadata>,
}

/// Where the metadata endpoints get per-target metric metadata from. The
/// binary implements it over the scrape manager. Called on a blocking
/// thread.
pub trait MetadataRetriever: Send + Sync {
    /// Metadata of every active target, in a stable order (by pool, then
    /// as the pool lists its targets).
    fn targets_metadata(&self) -> Vec<TargetMetadata>;
}

impl MetadataRetriever for NoTargets {
    fn targets_metadata(&self) -> Vec<TargetMetadata> {
        Vec::new()
    }
}

/// Process facts for `/api/v1/status/runtimeinfo` that only the binary
/// knows; the web crate adds the host name, server time, thread count and
/// parallelism itself.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    /// When the process started.
    pub start_time: SystemTime,
    /// The working directory.
    pub cwd: String,
    /// Whether the last configuration (re)load succeeded.
    pub reload_config_success: bool,
    /// When the configuration was last loaded successfully.
    pub last_config_time: Option<SystemTime>,
    /// WAL/block corruptions found at start-up.
    pub corruption_count: i64,
    /// The retention setting as Prometheus shows it (`15d`, `15d or 1GiB`).
    pub storage_retention: String,
}

/// A [`TargetRetriever`] with no targets, for processes that do not scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTargets;

impl TargetRetriever for NoTargets {
    fn active(&self) -> Vec<TargetInfo> {
        Vec::new()
    }
    fn dropped(&self) -> Vec<TargetInfo> {
        Vec::new()
    }
}

/// Everything the HTTP server needs from the rest of the process.
///
/// The binary fills every field; cloning is cheap (all `Arc`s).
#[derive(Clone)]
pub struct ApiContext {
    /// The PromQL engine for `/api/v1/query` and `/api/v1/query_range`. Its
    /// `options().timeout` is also the default and the cap of the `timeout`
    /// request parameter.
    pub engine: Arc<Engine>,
    /// The storage queried by the engine and by the metadata endpoints
    /// (`series`, `labels`, `label/<name>/values`).
    pub queryable: Arc<dyn Queryable>,
    /// Source of `/api/v1/targets`.
    pub targets: Arc<dyn TargetRetriever>,
    /// The configuration as YAML text, for `/api/v1/status/config`. Called
    /// per request, so it may return the config loaded last.
    pub config_yaml: Arc<dyn Fn() -> String + Send + Sync>,
    /// Appends the process's metrics in text format 0.0.4 for `/metrics`
    /// (TSDB, scrape, process metrics...). The web server appends its own
    /// `pharos_http_requests_total` after it. Called on a blocking thread.
    pub metrics: Arc<dyn Fn(&mut String) + Send + Sync>,
    /// Readiness: `/-/ready` answers 503 and every `/api/v1` endpoint
    /// answers 503 `Service Unavailable` until the binary stores `true`
    /// (after storage and config are up). Store `false` again on shutdown.
    pub ready: Arc<AtomicBool>,
    /// The URL under which pharos is reachable from outside
    /// (`http://host:9090/`), used for the targets' `globalUrl`. Path
    /// prefixes are not supported yet: routes are always served from `/`.
    pub external_url: String,
    /// How many queries (`query`, `query_range`) may evaluate at once, like
    /// Prometheus's `--query.max-concurrency`; further queries wait for a
    /// slot (their wait counts against their timeout). 0 means no limit.
    pub max_concurrency: usize,
    /// Source of `/api/v1/metadata` and `/api/v1/targets/metadata`.
    pub metadata: Arc<dyn MetadataRetriever>,
    /// Command-line flags by name (without dashes) and value as given or
    /// defaulted, for `/api/v1/status/flags`.
    pub flags: Arc<std::collections::BTreeMap<String, String>>,
    /// Process facts for `/api/v1/status/runtimeinfo`, called per request.
    pub runtime_info: Arc<dyn Fn() -> RuntimeInfo + Send + Sync>,
    /// The exemplar storage for `/api/v1/query_exemplars` (`None`: exemplar
    /// storage off; queries with selectors answer an empty list).
    pub exemplars: Option<Arc<dyn pharos_storage::ExemplarQueryable>>,
}

/// An API failure: Prometheus's `errorType` with its message. Each kind
/// maps to one HTTP status (see [`ApiError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Bad request parameters or query text (400).
    #[error("{0}")]
    BadData(String),
    /// The query could not be executed (422).
    #[error("{0}")]
    Execution(String),
    /// The query ran out of time (503).
    #[error("{0}")]
    Timeout(String),
    /// The query was canceled (499, as Prometheus 3 answers: the client
    /// went away or the query was stopped).
    #[error("{0}")]
    Canceled(String),
    /// A failure of the server itself (500).
    #[error("{0}")]
    Internal(String),
    /// The thing asked for does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The server is not able to answer now (503).
    #[error("{0}")]
    Unavailable(String),
}

/// The status Prometheus 3 answers a canceled query with (nginx's "client
/// closed request"; not in the HTTP registry).
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
};

impl ApiError {
    /// Prometheus's `errorType` string.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::BadData(_) => "bad_data",
            ApiError::Execution(_) => "execution",
            ApiError::Timeout(_) => "timeout",
            ApiError::Canceled(_) => "canceled",
            ApiError::Internal(_) => "internal",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status Prometheus answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadData(_) => StatusCode::BAD_REQUEST,
            ApiError::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Timeout(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // Prometheus 3's statusClientClosedConnection (nginx's 499).
            ApiError::Canceled(_) => CLIENT_CLOSED_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// Maps a PromQL error by its `error_type()`.
    pub fn from_query_error(e: &pharos_promql::QueryError) -> ApiError {
        let msg = e.to_string();
        match e.error_type() {
            "bad_data" => ApiError::BadData(msg),
            "timeout" => ApiError::Timeout(msg),
            "canceled" => ApiError::Canceled(msg),
            "execution" => ApiError::Execution(msg),
            _ => ApiError::Internal(msg),
        }
    }
}

/// Builds the whole HTTP application: `/api/v1/*`, probes, `/metrics` and
/// the UI. Every matched route counts its responses in
/// `pharos_http_requests_total{handler,code}`.
pub fn router(ctx: ApiContext) -> axum::Router {
    build_router(ctx, None)
}

fn build_router(ctx: ApiContext, listen_port: Option<u16>) -> axum::Router {
    let query_slots = match ctx.max_concurrency {
        0 => None,
        n => Some(Arc::new(tokio::sync::Semaphore::new(n))),
    };
    let state = Arc::new(AppState {
        ctx,
        http_metrics: metrics::HttpMetrics::default(),
        query_slots,
        listen_port,
        build_info: BuildInfo::current(),
    });
    api::routes()
        .merge(api_status::routes())
        .merge(ui::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .layer(axum::middleware::from_fn(layers::gzip))
        .layer(axum::middleware::from_fn(layers::cors))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then stops
/// accepting and waits for in-flight requests to finish. The listener's
/// port tells the targets API which localhost targets are pharos itself.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: ApiContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr().ok().map(|a| a.port());
    axum::serve(listener, build_router(ctx, port))
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`serve`] with `extra` routes merged in (the binary's own endpoints,
/// such as `/-/reload` or the host collector's page). They bypass the
/// request counter and the readiness gate; their handlers decide.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    ctx: ApiContext,
    extra: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr().ok().map(|a| a.port());
    axum::serve(listener, build_router(ctx, port).merge(extra))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Shared state of every handler.
pub(crate) struct AppState {
    pub(crate) ctx: ApiContext,
    pub(crate) http_metrics: metrics::HttpMetrics,
    /// Limits concurrent query evaluations (`None`: unlimited).
    pub(crate) query_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// The port `serve` listens on, when known.
    pub(crate) listen_port: Option<u16>,
    pub(crate) build_info: BuildInfo,
}

pub(crate) type State = Arc<AppState>;
