//! The embedded UI: two HTML pages, their ES modules and one stylesheet,
//! compiled into the binary. Pages load everything with relative URLs
//! (`assets/...`, `api/v1/...`), so they work behind a reverse proxy that
//! strips a path prefix.

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::State;

/// (file name, content type, content) of every asset under `/assets/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../ui/app.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/common.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/chart.js"),
    ),
    (
        "query.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/query.js"),
    ),
    (
        "targets.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/targets.js"),
    ),
];

const QUERY_HTML: &str = include_str!("../ui/query.html");
const TARGETS_HTML: &str = include_str!("../ui/targets.html");

pub(crate) fn routes() -> Router<State> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/query") }))
        .route("/graph", get(graph_redirect))
        .route("/query", get(|| async { html(QUERY_HTML) }))
        .route("/targets", get(|| async { html(TARGETS_HTML) }))
        .route("/assets/{file}", get(asset))
        .fallback(not_found)
}

/// What Go's `http.NotFound` answers, for paths nothing serves.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

fn html(body: &'static str) -> Response {
    with_type(body, "text/html; charset=utf-8")
}

fn with_type(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The old UI's `/graph?g0.expr=...` links land on `/query` with the same
/// parameters.
async fn graph_redirect(RawQuery(q): RawQuery) -> Redirect {
    match q {
        Some(q) if !q.is_empty() => Redirect::to(&format!("/query?{q}")),
        _ => Redirect::to("/query"),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ct, body)) => with_type(body, ct),
        None => not_found().await,
    }
}
