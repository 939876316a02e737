//! Request parameters, parsed as Prometheus parses them.
//!
//! Parameters come from the URL query and, for `POST` with
//! `Content-Type: application/x-www-form-urlencoded`, from the body; like Go's
//! `Request.FormValue`, a body value wins over a URL value of the same name.
//! Timestamps are RFC 3339 or Unix seconds with decimals; durations are
//! float seconds or Prometheus duration strings. Error messages are
//! Prometheus's, so clients that match on them keep working.

use axum::extract::{FromRequest, Query, Request};
use axum::http::{Method, header};

use crate::ApiError;

/// Earliest timestamp the API accepts or defaults to, in ms: Prometheus's
/// `MinTime` (the earliest time Go's `time.Time` can format in RFC 3339).
pub const MIN_TIME: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Latest timestamp the API accepts or defaults to, in ms: Prometheus's
/// `MaxTime`.
pub const MAX_TIME: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;

/// How Prometheus formats [`MIN_TIME`]; clients send it back literally.
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
/// How Prometheus formats [`MAX_TIME`].
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

/// The form values of one request, in Go's precedence order.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Params from explicit pairs (earlier pairs win in [`Params::get`]).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params { pairs }
    }

    /// Reads the URL query and, for a form-encoded `POST`, the body.
    pub async fn from_request(req: Request) -> Result<Params, ApiError> {
        let bad = |e: &dyn std::fmt::Display| {
            ApiError::BadData(format!("error parsing form values: {e}"))
        };
        let url: Vec<(String, String)> = Query::try_from_uri(req.uri())
            .map(|Query(q)| q)
            .map_err(|e| bad(&e))?;
        let is_form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("application/x-www-form-urlencoded")
                });
        let mut pairs = Vec::new();
        if is_form {
            let axum::Form(body): axum::Form<Vec<(String, String)>> =
                axum::Form::from_request(req, &())
                    .await
                    .map_err(|e| bad(&e))?;
            pairs = body;
        }
        pairs.extend(url);
        Ok(Params { pairs })
    }

    /// The first value of `name`, or `""` when absent (Go's `FormValue`).
    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `name`, body values first.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses a timestamp (RFC 3339, or Unix seconds with optional decimals,
/// rounded to the millisecond) into milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let err = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(f) = s.parse::<f64>() {
        // Whole seconds plus the fraction rounded to milliseconds, like
        // Prometheus (which rounds the fraction, not the whole value).
        if !f.is_finite() || f.abs() >= 9.2e15 {
            return Err(err());
        }
        let secs = f.trunc();
        let ms = ((f - secs) * 1000.0).round();
        return Ok(secs as i64 * 1000 + ms as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match s {
        MIN_TIME_FORMATTED => Ok(MIN_TIME),
        MAX_TIME_FORMATTED => Ok(MAX_TIME),
        _ => Err(err()),
    }
}

/// Reads an optional time parameter: `default` when absent or empty.
pub fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    let v = p.get(name);
    if v.is_empty() {
        return Ok(default);
    }
    parse_time(v).map_err(|e| invalid_param(&format!("invalid time value for '{name}': {e}"), name))
}

/// Parses a duration (float seconds, or a Prometheus duration string) into
/// nanoseconds, like Go's `time.Duration`. May be zero or negative.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ns = f * 1e9;
        if !ns.is_finite() || ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i64);
    }
    if let Ok(d) = pharos_model::Duration::parse(s)
        && let Some(ns) = d.millis().checked_mul(1_000_000)
    {
        return Ok(ns);
    }
    Err(format!("cannot parse {s:?} to a valid duration"))
}

/// Prometheus's `invalid parameter "name": message` (bad_data).
pub fn invalid_param(msg: &str, name: &str) -> ApiError {
    ApiError::BadData(format!("invalid parameter {name:?}: {msg}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Ok(1_435_781_451_000));
        // Like Go: the fraction is rounded on its own (0.0005 is 0.000499...).
        assert_eq!(parse_time("1.0005"), Ok(1000));
        assert_eq!(parse_time("1.0006"), Ok(1001));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51+02:00"),
            Ok(1_435_781_451_000)
        );
        assert_eq!(
            parse_time("2015-07-01T20:10:51.7819Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(parse_time(MIN_TIME_FORMATTED), Ok(MIN_TIME));
        assert_eq!(parse_time(MAX_TIME_FORMATTED), Ok(MAX_TIME));
        assert_eq!(
            parse_time("foo").unwrap_err(),
            "cannot parse \"foo\" to a valid timestamp"
        );
        for bad in [
            "",
            "NaN",
            "Inf",
            "1e300",
            "2015-07-01",
            "2015-07-01 20:10:51",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_match_prometheus() {
        // time.Unix(math.MinInt64/1000+62135596801, 0) and the max twin.
        assert_eq!(MIN_TIME, -9_223_309_901_257_974_000);
        assert_eq!(MAX_TIME, 9_223_309_901_257_974_999);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15"), Ok(15_000_000_000));
        assert_eq!(parse_duration("0.5"), Ok(500_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("-1"), Ok(-1_000_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(
            parse_duration("1e20").unwrap_err(),
            "cannot parse \"1e20\" to a valid duration. It overflows int64"
        );
        assert_eq!(
            parse_duration("x").unwrap_err(),
            "cannot parse \"x\" to a valid duration"
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn params_precedence() {
        let p = Params::from_pairs(vec![
            ("a".into(), "body".into()),
            ("m".into(), "1".into()),
            ("a".into(), "url".into()),
            ("m".into(), "2".into()),
        ]);
        assert_eq!(p.get("a"), "body");
        assert_eq!(p.get("zz"), "");
        assert_eq!(p.all("m"), vec!["1", "2"]);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_time(&s);
            let _ = parse_duration(&s);
        }

        #[test]
        fn float_seconds_roundtrip(ms in -100_000_000_000_000i64..100_000_000_000_000) {
            let mut s = String::new();
            crate::json::write_timestamp(&mut s, ms);
            proptest::prop_assert_eq!(parse_time(&s), Ok(ms));
        }
    }
}
