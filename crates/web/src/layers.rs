//! Cross-cutting HTTP behaviour: CORS on the API and gzip compression.

use std::io::Write as _;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Responses smaller than this are not worth compressing.
const MIN_GZIP_SIZE: usize = 1024;

/// CORS for `/api/v1/*`, like Prometheus with its default
/// `--web.cors.origin=.*`: any `Origin` is echoed back, and `OPTIONS`
/// pre-flight requests are answered with 204 before routing.
pub(crate) async fn cors(req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = if req.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Accept, Authorization, Content-Type, Origin"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Date"),
        );
    }
    resp
}

fn accepts_gzip(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|part| {
                let mut it = part.split(';');
                let coding = it.next().unwrap_or("").trim();
                // `gzip;q=0` means "not gzip".
                let refused = it.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
                });
                (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
            })
        })
    })
}

/// Gzips API and `/metrics` responses for clients that accept it. These
/// bodies are already fully in memory, so compressing them whole costs no
/// extra buffering.
pub(crate) async fn gzip(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let wanted =
        (path.starts_with("/api/v1/") || path == "/metrics" || path.starts_with("/assets/"))
            && accepts_gzip(req.headers());
    let resp = next.run(req).await;
    if !wanted || resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("error reading response body: {e}"),
            )
                .into_response();
        }
    };
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if bytes.len() < MIN_GZIP_SIZE {
        return Response::from_parts(parts, Body::from(bytes));
    }
    // Compression is CPU work: keep it off the async workers.
    let input = bytes.clone();
    let compressed = tokio::task::spawn_blocking(move || {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(input.len() / 4),
            flate2::Compression::fast(),
        );
        enc.write_all(&input).and_then(|()| enc.finish())
    })
    .await;
    match compressed {
        Ok(Ok(gz)) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            Response::from_parts(parts, Body::from(gz))
        }
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip"));
        assert!(h("deflate, gzip;q=1.0, *;q=0.5"));
        assert!(h("GZIP"));
        assert!(h("*"));
        assert!(!h("gzip;q=0"));
        assert!(!h("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
