//! The HTTP side of a scrape: request headers, timeout, status check, body
//! size limit and gzip decoding.
//!
//! Reading is async and bounded; gzip decoding is CPU work and happens with
//! the parse in the blocking stage ([`decode_body`]), where the size limit is
//! enforced on the decoded bytes as Prometheus does. While receiving a gzip
//! body only a loose guard on the compressed size applies.
//!
//! Connections are kept alive only for small pages. The HTTP client keeps a
//! read buffer per connection that grows (doubling) to about the size of the
//! largest response and stays allocated while the connection idles in the
//! pool, that is for the whole scrape interval: for a 136 KB page, 256 KiB
//! per target, a quarter of what the storage needs for the target's 1000
//! series. So while a target's page size is unknown (its first scrape, or
//! after failures) or larger than [`KEEP_ALIVE_MAX_BODY`], its requests say
//! `Connection: close` and the buffer is freed with the connection after the
//! scrape. The price is one TCP (and TLS) handshake per scrape of a target
//! with a large page, small next to receiving and parsing a page of that
//! size, and one for the first scrape of the others.

use std::io::Read;
use std::time::Duration;

use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONNECTION, CONTENT_ENCODING, CONTENT_TYPE};

use crate::ScrapeError;
use pharos_discovery::client::HttpClient as ScrapeClient;

/// The largest response body (as received, still compressed when gzip) for
/// which the connection is kept alive for the next scrape: about where the
/// client's per-connection read buffer outgrows its initial size.
pub(crate) const KEEP_ALIVE_MAX_BODY: usize = 16 * 1024;

/// A response body as received.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The body bytes, still compressed when `gzip`.
    pub body: Vec<u8>,
    /// `Content-Encoding: gzip`.
    pub gzip: bool,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
}

/// One GET of `url` within `timeout`. `size_hint` is the size of the
/// previous body as received (0 when unknown): it sizes the body buffer when
/// the response has no `Content-Length`, and when it is unknown or past
/// [`KEEP_ALIVE_MAX_BODY`] the connection is closed after the response (see
/// the module docs).
pub(crate) async fn fetch(
    client: &ScrapeClient,
    url: &str,
    accept: &str,
    accept_encoding: &str,
    timeout: Duration,
    body_size_limit: u64,
    size_hint: usize,
) -> Result<Fetched, ScrapeError> {
    match tokio::time::timeout(
        timeout,
        fetch_inner(
            client,
            url,
            accept,
            accept_encoding,
            timeout,
            body_size_limit,
            size_hint,
        ),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(ScrapeError::Http {
            url: url.to_string(),
            message: "context deadline exceeded".to_string(),
        }),
    }
}

async fn fetch_inner(
    client: &ScrapeClient,
    url: &str,
    accept: &str,
    accept_encoding: &str,
    timeout: Duration,
    body_size_limit: u64,
    size_hint: usize,
) -> Result<Fetched, ScrapeError> {
    let http_err = |e: reqwest::Error| ScrapeError::Http {
        url: url.to_string(),
        message: describe(&e, url),
    };
    let request = client.http.get(url);
    let request = client
        .decorate(request)
        .map_err(|message| ScrapeError::Http {
            url: url.to_string(),
            message,
        })?;
    let request = if size_hint == 0 || size_hint > KEEP_ALIVE_MAX_BODY {
        request.header(CONNECTION, "close")
    } else {
        request
    };
    let mut resp = request
        .header(ACCEPT, accept)
        .header(ACCEPT_ENCODING, accept_encoding)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            pharos_model::format_float(timeout.as_secs_f64()),
        )
        .timeout(timeout)
        .send()
        .await
        .map_err(http_err)?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        let text = match status.canonical_reason() {
            Some(r) => format!("{} {}", status.as_u16(), r),
            None => status.as_u16().to_string(),
        };
        return Err(ScrapeError::Status(text));
    }
    let gzip = resp
        .headers()
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limit = if body_size_limit == 0 {
        u64::MAX
    } else {
        body_size_limit
    };
    // Compressed data can be slightly larger than what it decodes to, never
    // by much; past this guard the decoded size is over the limit anyway.
    let raw_limit = if gzip {
        limit.saturating_add(limit / 64 + 1024)
    } else {
        limit
    };
    let hint = resp
        .content_length()
        .map_or(size_hint, |n| usize::try_from(n).unwrap_or(size_hint))
        .min(usize::try_from(raw_limit).unwrap_or(usize::MAX))
        .min(64 << 20);
    let mut body = Vec::with_capacity(hint);
    while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 >= raw_limit {
            return Err(ScrapeError::BodySizeLimit);
        }
    }
    Ok(Fetched {
        body,
        gzip,
        content_type,
    })
}

/// The body to parse: decompressed when needed, with the size limit applied
/// to the decoded bytes (reaching the limit is an error, as in Prometheus).
pub(crate) fn decode_body(f: Fetched, body_size_limit: u64) -> Result<Vec<u8>, ScrapeError> {
    if !f.gzip {
        return Ok(f.body);
    }
    let limit = if body_size_limit == 0 {
        u64::MAX
    } else {
        body_size_limit
    };
    let mut out = Vec::with_capacity(f.body.len().saturating_mul(4).min(64 << 20));
    let dec = flate2::read::MultiGzDecoder::new(f.body.as_slice());
    let n = dec
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| ScrapeError::Gzip(e.to_string()))?;
    if n as u64 >= limit {
        return Err(ScrapeError::BodySizeLimit);
    }
    Ok(out)
}

/// Words a client error the way Go's HTTP client would where the cases
/// match, else the error chain.
fn describe(e: &reqwest::Error, url: &str) -> String {
    if e.is_timeout() {
        return "context deadline exceeded".to_string();
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut parts: Vec<String> = Vec::new();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return format!("dial tcp {}: connect: connection refused", host_port(url));
                }
                std::io::ErrorKind::TimedOut => return "context deadline exceeded".to_string(),
                _ => {}
            }
        }
        let text = s.to_string();
        if parts.last().is_none_or(|p| !p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
}

fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_decoding_and_limit() {
        let page = b"a 1\nb 2\n".repeat(100);
        let f = Fetched {
            body: gz(&page),
            gzip: true,
            content_type: None,
        };
        assert_eq!(decode_body(f, 0).unwrap(), page);
        let f = Fetched {
            body: gz(&page),
            gzip: true,
            content_type: None,
        };
        assert_eq!(decode_body(f, 800), Err(ScrapeError::BodySizeLimit));
        let f = Fetched {
            body: gz(&page),
            gzip: true,
            content_type: None,
        };
        assert_eq!(decode_body(f, 801).unwrap().len(), 800);
        let f = Fetched {
            body: b"not gzip".to_vec(),
            gzip: true,
            content_type: None,
        };
        assert!(matches!(decode_body(f, 0), Err(ScrapeError::Gzip(_))));
    }

    #[test]
    fn host_port_of_url() {
        assert_eq!(host_port("http://127.0.0.1:9/metrics?x=1"), "127.0.0.1:9");
        assert_eq!(host_port("http://h"), "h");
    }
}
