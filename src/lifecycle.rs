//! Configuration reload triggers beyond SIGHUP, and the process's extra HTTP
//! routes:
//!
//! * `POST`/`PUT /-/reload` (only with `--web.enable-lifecycle`, 403
//!   otherwise, as in Prometheus) and the `auto-reload-config` feature
//!   (`--config.auto-reload-interval`) both raise SIGHUP in this process, so
//!   every reload goes through the one SIGHUP path in `server.rs`; the HTTP
//!   handler then waits for that reload to be recorded and answers 200, or
//!   500 with the error (`file:line:col: ...`);
//! * `pharos_config_last_reload_successful` and
//!   `pharos_config_last_reload_success_timestamp_seconds` (Prometheus's
//!   names with our prefix), recorded by [`record_reload`];
//! * `/metrics/node`: the built-in host collector's page, which the
//!   built-in configuration's `node` job scrapes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

/// What the last reload did.
struct ReloadState {
    /// Incremented by every recorded reload (success or failure).
    generation: u64,
    success: bool,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
}

static STATE: Mutex<ReloadState> = Mutex::new(ReloadState {
    generation: 0,
    success: true,
    last_success: None,
    last_error: None,
});

/// Serialises HTTP reloads so each request sees its own outcome.
static HTTP_RELOADS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Counts `/-/reload` requests that timed out waiting (a bug or a hung
/// reload); exposed for tests only through behaviour.
static TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Records the outcome of a configuration load or reload.
pub fn record_reload(result: Result<(), String>) {
    let mut s = STATE.lock();
    s.generation += 1;
    match result {
        Ok(()) => {
            s.success = true;
            s.last_success = Some(SystemTime::now());
            s.last_error = None;
        }
        Err(e) => {
            s.success = false;
            s.last_error = Some(e);
        }
    }
}

/// Appends the reload metrics in text format 0.0.4.
pub fn write_metrics(out: &mut String) {
    let s = STATE.lock();
    let ts = s
        .last_success
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    out.push_str(
        "# HELP pharos_config_last_reload_successful Whether the last configuration reload attempt was successful.\n\
         # TYPE pharos_config_last_reload_successful gauge\n",
    );
    out.push_str(&format!(
        "pharos_config_last_reload_successful {}\n",
        u8::from(s.success)
    ));
    out.push_str(
        "# HELP pharos_config_last_reload_success_timestamp_seconds Timestamp of the last successful configuration reload.\n\
         # TYPE pharos_config_last_reload_success_timestamp_seconds gauge\n",
    );
    out.push_str(&format!(
        "pharos_config_last_reload_success_timestamp_seconds {}\n",
        pharos_model::format_float(ts)
    ));
}

/// Asks this process to reload by raising SIGHUP.
fn raise_sighup() -> Result<(), String> {
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP)
        .map_err(|e| format!("cannot signal the reload: {e}"))
}

/// Settings of the extra routes.
#[derive(Clone)]
pub struct Routes {
    /// `--web.enable-lifecycle`.
    pub lifecycle: bool,
    /// Whether a configuration file is in use (the built-in configuration
    /// has nothing to reload).
    pub has_config_file: bool,
    /// The host collector for `/metrics/node`.
    pub node: Arc<pharos_node::HostCollector>,
}

/// The extra routes: `/-/reload` and `/metrics/node`.
pub fn routes(r: Routes) -> axum::Router {
    let reload = {
        let r = r.clone();
        move || reload_handler(r.clone())
    };
    let node = r.node.clone();
    axum::Router::new()
        .route("/-/reload", axum::routing::post(reload.clone()).put(reload))
        .route(
            "/metrics/node",
            axum::routing::get(move || node_page(node.clone())),
        )
}

async fn reload_handler(r: Routes) -> Response {
    if !r.lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.").into_response();
    }
    if !r.has_config_file {
        return StatusCode::OK.into_response();
    }
    let _one_at_a_time = HTTP_RELOADS.lock().await;
    let before = STATE.lock().generation;
    if let Err(e) = raise_sighup() {
        return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        {
            let s = STATE.lock();
            if s.generation != before {
                return match &s.last_error {
                    None => StatusCode::OK.into_response(),
                    Some(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("failed to reload config: {e}"),
                    )
                        .into_response(),
                };
            }
        }
        if tokio::time::Instant::now() >= deadline {
            TIMEOUTS.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to reload config: no reload happened within 60s",
            )
                .into_response();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn node_page(node: Arc<pharos_node::HostCollector>) -> Response {
    let body = tokio::task::spawn_blocking(move || {
        let mut out = String::with_capacity(64 << 10);
        node.write(&mut out);
        out
    })
    .await;
    match body {
        Ok(b) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            b,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Whether the `auto-reload-config` feature is on.
pub fn auto_reload_enabled(features: &[String]) -> bool {
    features.iter().any(|f| f == "auto-reload-config")
}

/// A digest of the configuration file and the files its
/// `scrape_config_files` patterns match, to notice edits.
fn digest(path: &PathBuf) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let text = std::fs::read(path).ok()?;
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    if let Ok(cfg) = pharos_config::load_file(path) {
        for f in cfg.scrape_config_file_paths() {
            f.hash(&mut h);
            if let Ok(b) = std::fs::read(&f) {
                b.hash(&mut h);
            }
        }
    }
    Some(h.finish())
}

/// Checks the configuration every `interval` and raises SIGHUP when its
/// content changed (Prometheus's `--config.auto-reload-interval`).
pub async fn auto_reload(path: PathBuf, interval: Duration) {
    let mut last = digest(&path);
    let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = digest(&path);
        if now != last {
            last = now;
            tracing::info!(filename = %path.display(), "Configuration file changed, reloading");
            if let Err(e) = raise_sighup() {
                tracing::error!(err = %e, "Automatic reload failed");
            }
        }
    }
}
