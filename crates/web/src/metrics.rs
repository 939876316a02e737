//! The web server's own metrics: `pharos_http_requests_total{code,handler}`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State as AxState};
use axum::middleware::Next;
use axum::response::Response;
use pharos_model::labels::escape_label_value;

use crate::State;

/// Request counters keyed by (route pattern, status code).
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl HttpMetrics {
    fn inc(&self, handler: &str, code: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(&(handler.to_string(), code)) {
            Some(n) => *n += 1,
            None => {
                m.insert((handler.to_string(), code), 1);
            }
        }
    }

    /// Appends the counters in text format 0.0.4.
    pub(crate) fn write(&self, out: &mut String) {
        let m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP pharos_http_requests_total Counter of HTTP requests.\n");
        out.push_str("# TYPE pharos_http_requests_total counter\n");
        for ((handler, code), n) in m.iter() {
            out.push_str(&format!(
                "pharos_http_requests_total{{code=\"{code}\",handler=\"{}\"}} {n}\n",
                escape_label_value(handler)
            ));
        }
    }
}

/// Middleware (installed with `route_layer`, so only matched routes are
/// counted) that counts each response by route pattern and status.
pub(crate) async fn count_requests(
    AxState(state): AxState<State>,
    req: Request,
    next: Next,
) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let resp = next.run(req).await;
    state.http_metrics.inc(&handler, resp.status().as_u16());
    resp
}
