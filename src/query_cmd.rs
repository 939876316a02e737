//! `pharos query instant|range|series|labels SERVER ...`: promtool's query
//! subcommands against any Prometheus-compatible HTTP API.
//!
//! Output follows promtool: the default `promql` format prints values as
//! Prometheus's Go client library renders them (`metric{a="b"} => 1 @[t]`),
//! and `-o json` prints the API's result as JSON. API errors print
//! `query error: <type>: <message>` on stderr and exit with status 1.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::{QueryCommand, QueryFormat};

/// Runs a `pharos query` subcommand.
pub fn run(cmd: QueryCommand) -> ExitCode {
    match run_inner(cmd) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("query error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(cmd: QueryCommand) -> anyhow::Result<String> {
    let (server, path, params, format, kind) = request(cmd)?;
    let data = fetch(&server, &path, &params)?;
    Ok(render(kind, format, &data))
}

/// What the response holds, for rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Query,
    Series,
    Labels,
}

type Request = (String, String, Vec<(String, String)>, QueryFormat, Kind);

/// The API call a subcommand makes: server, path, parameters.
fn request(cmd: QueryCommand) -> anyhow::Result<Request> {
    let now = now_secs();
    Ok(match cmd {
        QueryCommand::Instant {
            format,
            time,
            server,
            expr,
        } => {
            let mut p = vec![("query".to_string(), expr)];
            p.push(("time".into(), time.unwrap_or_else(|| fmt_secs(now))));
            (server, "/api/v1/query".into(), p, format, Kind::Query)
        }
        QueryCommand::Range {
            format,
            start,
            end,
            step,
            server,
            expr,
        } => {
            let end_s = match &end {
                Some(e) => parse_time(e).context("invalid end time")?,
                None => now,
            };
            let start_s = match &start {
                Some(s) => parse_time(s).context("invalid start time")?,
                None => end_s - 300.0,
            };
            if end_s < start_s {
                bail!("end time is before start time");
            }
            // promtool's default: about 250 points, at least one second.
            let step = step.unwrap_or_else(|| {
                format!("{}s", ((end_s - start_s) / 250.0).floor().max(1.0) as i64)
            });
            let p = vec![
                ("query".to_string(), expr),
                ("start".into(), start.unwrap_or_else(|| fmt_secs(start_s))),
                ("end".into(), end.unwrap_or_else(|| fmt_secs(end_s))),
                ("step".into(), step),
            ];
            (server, "/api/v1/query_range".into(), p, format, Kind::Query)
        }
        QueryCommand::Series {
            format,
            matches,
            start,
            end,
            server,
        } => {
            let mut p: Vec<(String, String)> =
                matches.into_iter().map(|m| ("match[]".into(), m)).collect();
            p.extend(start.map(|s| ("start".into(), s)));
            p.extend(end.map(|e| ("end".into(), e)));
            (server, "/api/v1/series".into(), p, format, Kind::Series)
        }
        QueryCommand::Labels {
            format,
            matches,
            start,
            end,
            server,
            name,
        } => {
            let mut p: Vec<(String, String)> =
                matches.into_iter().map(|m| ("match[]".into(), m)).collect();
            p.extend(start.map(|s| ("start".into(), s)));
            p.extend(end.map(|e| ("end".into(), e)));
            let path = format!("/api/v1/label/{}/values", escape_path(&name));
            (server, path, p, format, Kind::Labels)
        }
    })
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn fmt_secs(s: f64) -> String {
    format!("{:.3}", s)
}

/// A time as the API accepts it: Unix seconds or RFC 3339.
fn parse_time(s: &str) -> anyhow::Result<f64> {
    if let Ok(v) = s.parse::<f64>() {
        return Ok(v);
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).with_context(|| format!("{s:?}"))?;
    Ok(t.timestamp_millis() as f64 / 1000.0)
}

/// Percent-encodes a query parameter or path segment.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A label name as a path segment: plain names as they are, others in
/// Prometheus's `U__` escaping.
fn escape_path(name: &str) -> String {
    let legacy = name
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if legacy && !name.is_empty() {
        return name.to_string();
    }
    let mut out = String::from("U__");
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if c == '_' {
            out.push_str("__");
        } else {
            out.push_str(&format!("_{:x}_", c as u32));
        }
    }
    out
}

/// GETs `path` on `server` and returns the envelope's `data`, or the
/// API's error as `<errorType>: <error>`.
fn fetch(server: &str, path: &str, params: &[(String, String)]) -> anyhow::Result<Value> {
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        bail!("invalid server URL {server:?}: must start with http:// or https://");
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect();
    let url = format!(
        "{}{}?{}",
        server.trim_end_matches('/'),
        path,
        query.join("&")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // reqwest is built without a default TLS crypto provider; https
    // servers need one (ring, as the scrape and notifier clients use).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (status, body) = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        let resp = client
            .get(&url)
            .send()
            .await
            .context("sending the request")?;
        let status = resp.status();
        let body = resp.text().await.context("reading the response")?;
        anyhow::Ok((status, body))
    })?;
    let v: Value = serde_json::from_str(&body).with_context(|| {
        format!(
            "server returned HTTP status {status} and a body that is not JSON: {}",
            body.chars().take(200).collect::<String>()
        )
    })?;
    if v["status"] == "success" {
        return Ok(v["data"].clone());
    }
    let et = v["errorType"].as_str().unwrap_or("unknown");
    let msg = v["error"].as_str().unwrap_or("no error message");
    bail!("{et}: {msg}")
}

/// Renders the API's `data` as promtool prints it.
fn render(kind: Kind, format: QueryFormat, data: &Value) -> String {
    if format == QueryFormat::Json {
        let v = match kind {
            Kind::Query => &data["result"],
            _ => data,
        };
        return format!("{v}\n");
    }
    let mut out = String::new();
    match kind {
        Kind::Labels => {
            for v in data.as_array().into_iter().flatten() {
                out.push_str(v.as_str().unwrap_or(""));
                out.push('\n');
            }
        }
        Kind::Series => {
            for l in data.as_array().into_iter().flatten() {
                out.push_str(&label_set(l));
                out.push('\n');
            }
        }
        Kind::Query => {
            let r = &data["result"];
            let text = match data["resultType"].as_str() {
                Some("vector") => r
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| format!("{} => {}", metric(&s["metric"]), point(&s["value"])))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Some("matrix") => r
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        let pts: Vec<String> = s["values"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(point)
                            .collect();
                        format!("{} =>\n{}", metric(&s["metric"]), pts.join("\n"))
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                Some("scalar") => format!("scalar: {}", point(r)),
                Some("string") => r[1].as_str().unwrap_or("").to_string(),
                _ => r.to_string(),
            };
            out.push_str(&text);
            out.push('\n');
        }
    }
    out
}

/// `value @[timestamp]`, as Go's `model.SamplePair` prints.
fn point(p: &Value) -> String {
    let ts = match &p[0] {
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    format!("{} @[{}]", p[1].as_str().unwrap_or(""), ts)
}

/// `{a="b", c="d"}`, as Go's `model.LabelSet` prints (sorted names).
fn label_set(l: &Value) -> String {
    let mut pairs: Vec<(&String, &str)> = l
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// `name{a="b"}`, as Go's `model.Metric` prints (the name outside).
fn metric(m: &Value) -> String {
    let name = m["__name__"].as_str().unwrap_or("").to_string();
    let mut rest = m.clone();
    if let Some(o) = rest.as_object_mut() {
        o.remove("__name__");
    }
    let ls = label_set(&rest);
    if name.is_empty() {
        ls
    } else if ls == "{}" {
        name
    } else {
        format!("{name}{ls}")
    }
}

/// Go's `%q` for the strings label values hold.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn promql_rendering_like_promtool() {
        let d = json!({"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "a", "instance": "x:1"}, "value": [1700000000.5, "1"]},
            {"metric": {}, "value": [1700000000, "NaN"]}
        ]});
        assert_eq!(
            render(Kind::Query, QueryFormat::Promql, &d),
            "up{instance=\"x:1\", job=\"a\"} => 1 @[1700000000.5]\n{} => NaN @[1700000000]\n"
        );
        let d = json!({"resultType": "matrix", "result": [
            {"metric": {"__name__": "up"}, "values": [[1, "1"], [2, "0"]]}
        ]});
        assert_eq!(
            render(Kind::Query, QueryFormat::Promql, &d),
            "up =>\n1 @[1]\n0 @[2]\n"
        );
        let d = json!({"resultType": "scalar", "result": [1.5, "2"]});
        assert_eq!(
            render(Kind::Query, QueryFormat::Promql, &d),
            "scalar: 2 @[1.5]\n"
        );
        let d = json!({"resultType": "scalar", "result": [1.5, "2"]});
        assert_eq!(render(Kind::Query, QueryFormat::Json, &d), "[1.5,\"2\"]\n");
        let d = json!([{"job": "a\"b", "__name__": "up"}]);
        assert_eq!(
            render(Kind::Series, QueryFormat::Promql, &d),
            "{__name__=\"up\", job=\"a\\\"b\"}\n"
        );
        let d = json!(["a", "b"]);
        assert_eq!(render(Kind::Labels, QueryFormat::Promql, &d), "a\nb\n");
        assert_eq!(
            render(Kind::Labels, QueryFormat::Json, &d),
            "[\"a\",\"b\"]\n"
        );
    }

    #[test]
    fn range_defaults() {
        let (_, path, p, _, _) = request(QueryCommand::Range {
            format: QueryFormat::Promql,
            start: Some("1000".into()),
            end: Some("3500".into()),
            step: None,
            server: "http://x".into(),
            expr: "up".into(),
        })
        .unwrap();
        assert_eq!(path, "/api/v1/query_range");
        assert_eq!(p[3], ("step".to_string(), "10s".to_string()));
        assert!(
            request(QueryCommand::Range {
                format: QueryFormat::Promql,
                start: Some("2".into()),
                end: Some("1".into()),
                step: None,
                server: "http://x".into(),
                expr: "up".into(),
            })
            .is_err()
        );
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1435781451.781
        );
    }

    #[test]
    fn path_escaping() {
        assert_eq!(escape_path("job"), "job");
        assert_eq!(escape_path("a.b"), "U__a_2e_b");
        assert_eq!(escape("a b&c"), "a%20b%26c");
    }
}
