//! Hand-written JSON for the hot parts of API responses.
//!
//! Query results can hold millions of points; writing them straight into a
//! `String` avoids building a `serde_json::Value` tree and lets us match
//! Prometheus byte for byte (checked against a real Prometheus). Vector and
//! matrix points follow its `jsonutil`: timestamps are seconds with the
//! millisecond fraction written as exactly three digits when non-zero
//! (`1435781451.781`, `1435781451.780`, `1435781451`), and sample values
//! are quoted strings in Go's `strconv.FormatFloat(v, 'f' or 'e', -1)`
//! shortest form, switching to exponent form below `1e-6` and from `1e21`.
//! Scalar and string results use Go's plain float for the time (`1.5`) and
//! decimal form for the value. Strings are escaped like Go's
//! `encoding/json` (HTML-safe).

use std::fmt::Write as _;

use pharos_model::histogram::FloatHistogram;
use pharos_model::{Labels, format_float};
use pharos_promql::{Value, histogram_buckets};

/// Appends `s` as a JSON string literal, escaped like Go's `encoding/json`:
/// `"`, `\`, control characters, `<`, `>`, `&`, U+2028 and U+2029.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => None,
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends a millisecond timestamp as Prometheus does: seconds, then `.`
/// and exactly three fraction digits when the fraction is not zero.
pub fn write_timestamp(out: &mut String, t: i64) {
    let mut t = t as i128;
    if t < 0 {
        out.push('-');
        t = -t;
    }
    let _ = write!(out, "{}", t / 1000);
    let frac = t % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// Formats a sample value as Prometheus's API does (without quotes):
/// `+Inf`, `-Inf`, `NaN`, plain decimal for `1e-6 <= |v| < 1e21` (and 0),
/// else Go's exponent form (`1e+21`, `1.5e-07`).
pub fn format_value(v: f64) -> String {
    let abs = v.abs();
    if !v.is_finite() || abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format_float(v);
    }
    // Rust's `{:e}` is the shortest round-trip mantissa, like Go's -1
    // precision; only the exponent spelling differs (`e21` vs `e+21`,
    // `e-7` vs `e-07`).
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            if digits.len() < 2 {
                format!("{mantissa}e{sign}0{digits}")
            } else {
                format!("{mantissa}e{sign}{digits}")
            }
        }
        None => s,
    }
}

/// Appends a `[ <time>, "<value>" ]` pair.
pub fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

/// Appends a native histogram as Prometheus's `jsonutil.MarshalHistogram`:
/// `{"count":"<c>","sum":"<s>","buckets":[[<boundaries>,"<lower>","<upper>","<count>"],...]}`,
/// populated buckets only, `buckets` left out when there are none.
pub fn write_histogram(out: &mut String, h: &FloatHistogram) {
    out.push_str("{\"count\":\"");
    out.push_str(&format_value(h.count));
    out.push_str("\",\"sum\":\"");
    out.push_str(&format_value(h.sum));
    out.push('"');
    let mut first = true;
    for b in histogram_buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        out.push_str(if first { ",\"buckets\":[" } else { "," });
        first = false;
        let _ = write!(
            out,
            "[{},\"{}\",\"{}\",\"{}\"]",
            b.boundaries,
            format_value(b.lower),
            format_value(b.upper),
            format_value(b.count)
        );
    }
    if !first {
        out.push(']');
    }
    out.push('}');
}

/// Appends a `[ <time>, {histogram} ]` pair.
pub fn write_histogram_point(out: &mut String, t: i64, h: &FloatHistogram) {
    out.push('[');
    write_timestamp(out, t);
    out.push(',');
    write_histogram(out, h);
    out.push(']');
}

/// Appends a label set as a JSON object in label order.
pub fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, l.name);
        out.push(':');
        write_str(out, l.value);
    }
    out.push('}');
}

/// Appends `{"resultType":...,"result":...}` for a query result.
pub fn write_query_data(out: &mut String, value: &Value) {
    out.push_str("{\"resultType\":");
    match value {
        // Scalars and strings go through Prometheus's `MarshalJSON` of those
        // types, not the point encoder: the time is a plain float (`1.5`,
        // not `1.500`) and the value is always in decimal form.
        Value::Scalar { t, v } => {
            out.push_str("\"scalar\",\"result\":[");
            out.push_str(&format_float(*t as f64 / 1000.0));
            out.push_str(",\"");
            out.push_str(&format_float(*v));
            out.push_str("\"]");
        }
        Value::String { t, v } => {
            out.push_str("\"string\",\"result\":[");
            out.push_str(&format_float(*t as f64 / 1000.0));
            out.push(',');
            write_str(out, v);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push_str("\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(out, &s.metric);
                match &s.h {
                    None => {
                        out.push_str(",\"value\":");
                        write_point(out, s.t, s.v);
                    }
                    Some(h) => {
                        out.push_str(",\"histogram\":");
                        write_histogram_point(out, s.t, h);
                    }
                }
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(out, &s.metric);
                // As Prometheus: each key only when there are such points.
                if !s.samples.is_empty() {
                    out.push_str(",\"values\":[");
                    for (j, p) in s.samples.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_point(out, p.t, p.v);
                    }
                    out.push(']');
                }
                if !s.histograms.is_empty() {
                    out.push_str(",\"histograms\":[");
                    for (j, (t, h)) in s.histograms.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_histogram_point(out, *t, h);
                    }
                    out.push(']');
                }
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
}

/// A success envelope around already-serialised `data`:
/// `{"status":"success","data":<data>[,"warnings":[..]][,"infos":[..]]}`.
/// Empty warning and info lists are left out, as Prometheus does; so is an
/// empty `data` (Prometheus omits a nil `data`).
pub fn success_envelope(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str("{\"status\":\"success\"");
    if !data.is_empty() {
        out.push_str(",\"data\":");
        out.push_str(data);
    }
    write_string_list(&mut out, "warnings", warnings);
    write_string_list(&mut out, "infos", infos);
    out.push('}');
    out
}

/// An error envelope: `{"status":"error","errorType":..,"error":..}`.
pub fn error_envelope(error_type: &str, error: &str) -> String {
    let mut out = String::with_capacity(error.len() + 64);
    out.push_str("{\"status\":\"error\",\"errorType\":");
    write_str(&mut out, error_type);
    out.push_str(",\"error\":");
    write_str(&mut out, error);
    out.push('}');
    out
}

fn write_string_list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, s);
    }
    out.push(']');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use pharos_model::Sample;
    use pharos_promql::{RangeSeries, VectorSample};

    fn ts(t: i64) -> String {
        let mut s = String::new();
        write_timestamp(&mut s, t);
        s
    }

    #[test]
    fn timestamps_like_prometheus() {
        assert_eq!(ts(1_435_781_451_781), "1435781451.781");
        assert_eq!(ts(1_435_781_451_780), "1435781451.780");
        assert_eq!(ts(1_435_781_451_005), "1435781451.005");
        assert_eq!(ts(1_435_781_451_000), "1435781451");
        assert_eq!(ts(0), "0");
        assert_eq!(ts(-1500), "-1.500");
        assert_eq!(ts(i64::MIN), "-9223372036854775.808");
    }

    #[test]
    fn values_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(1e-6), "0.000001");
        assert_eq!(format_value(1.5e-7), "1.5e-07");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(
            format_value(123456789012345680000.0),
            "123456789012345680000"
        );
        assert_eq!(format_value(-2.5e300), "-2.5e+300");
        assert_eq!(format_value(5e-324), "5e-324");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn strings_escaped_like_go() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\nd\u{1}<>&é\u{2028}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001\u003c\u003e\u0026é\u2028""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}<>&é\u{2028}");
    }

    #[test]
    fn query_data_shapes() {
        let m = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let mut s = String::new();
        write_query_data(
            &mut s,
            &Value::Vector(vec![VectorSample {
                metric: m.clone(),
                t: 1_435_781_451_781,
                v: 1.0,
                h: None,
            }]),
        );
        assert_eq!(
            s,
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1435781451.781,"1"]}]}"#
        );
        let mut s = String::new();
        write_query_data(
            &mut s,
            &Value::Matrix(vec![RangeSeries {
                metric: m,
                samples: vec![
                    Sample { t: 1000, v: 0.5 },
                    Sample {
                        t: 16000,
                        v: f64::NAN,
                    },
                ],
                histograms: vec![],
            }]),
        );
        assert_eq!(
            s,
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1,"0.5"],[16,"NaN"]]}]}"#
        );
        let mut s = String::new();
        write_query_data(&mut s, &Value::Scalar { t: 2500, v: 3.0 });
        assert_eq!(s, r#"{"resultType":"scalar","result":[2.5,"3"]}"#);
        let mut s = String::new();
        write_query_data(&mut s, &Value::Scalar { t: -1010, v: 1e-7 });
        assert_eq!(s, r#"{"resultType":"scalar","result":[-1.01,"0.0000001"]}"#);
        let mut s = String::new();
        write_query_data(
            &mut s,
            &Value::String {
                t: 0,
                v: "x\"".into(),
            },
        );
        assert_eq!(s, r#"{"resultType":"string","result":[0,"x\""]}"#);
        let mut s = String::new();
        write_query_data(&mut s, &Value::Vector(vec![]));
        assert_eq!(s, r#"{"resultType":"vector","result":[]}"#);
    }

    #[test]
    fn histograms_like_prometheus() {
        use pharos_model::histogram::Span;
        // {{schema:0 sum:5 count:4 z_bucket:1 z_bucket_w:0.001 buckets:[1 0 1] n_buckets:[1]}}
        let h = FloatHistogram {
            schema: 0,
            sum: 5.0,
            count: 4.0,
            zero_count: 1.0,
            zero_threshold: 0.001,
            positive_spans: vec![Span {
                offset: 0,
                length: 3,
            }],
            positive_buckets: vec![1.0, 0.0, 1.0],
            negative_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            negative_buckets: vec![1.0],
            ..Default::default()
        };
        let m = Labels::from_pairs(&[("__name__", "h")]);
        let mut s = String::new();
        write_query_data(
            &mut s,
            &Value::Vector(vec![VectorSample {
                metric: m.clone(),
                t: 1000,
                v: 5.0,
                h: Some(Box::new(h.clone())),
            }]),
        );
        assert_eq!(
            s,
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"h"},"histogram":[1,{"count":"4","sum":"5","buckets":[[1,"-1","-0.5","1"],[3,"-0.001","0.001","1"],[0,"0.5","1","1"],[0,"2","4","1"]]}]}]}"#
        );
        let mut s = String::new();
        write_query_data(
            &mut s,
            &Value::Matrix(vec![RangeSeries {
                metric: m,
                samples: vec![],
                histograms: vec![
                    (1000, h),
                    (
                        2000,
                        FloatHistogram {
                            schema: pharos_model::histogram::CUSTOM_BUCKETS_SCHEMA,
                            count: 2.0,
                            sum: 3.0,
                            custom_values: vec![1.0],
                            positive_spans: vec![Span {
                                offset: 0,
                                length: 2,
                            }],
                            positive_buckets: vec![1.0, 1.0],
                            ..Default::default()
                        },
                    ),
                ],
            }]),
        );
        assert!(s.starts_with(r#"{"resultType":"matrix","result":[{"metric":{"__name__":"h"},"histograms":[[1,{"count":"4""#));
        // The first custom bucket includes its lower bound (-Inf): closed,
        // as Prometheus's bucket iterator marks it.
        assert!(s.ends_with(r#"[2,{"count":"2","sum":"3","buckets":[[3,"-Inf","1","1"],[0,"1","+Inf","1"]]}]]}]}"#), "{s}");
        // An empty histogram has no buckets key.
        let mut s = String::new();
        write_histogram(&mut s, &FloatHistogram::default());
        assert_eq!(s, r#"{"count":"0","sum":"0"}"#);
    }

    #[test]
    fn envelopes() {
        assert_eq!(
            success_envelope("[]", &[], &[]),
            r#"{"status":"success","data":[]}"#
        );
        assert_eq!(
            success_envelope("1", &["w".into()], &["i".into()]),
            r#"{"status":"success","data":1,"warnings":["w"],"infos":["i"]}"#
        );
        assert_eq!(
            error_envelope("bad_data", "x"),
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn any_string_roundtrips(s in "\\PC*|[\\x00-\\x1f<>&\"\\\\]*") {
            let mut out = String::new();
            write_str(&mut out, &s);
            let back: String = serde_json::from_str(&out).unwrap();
            proptest::prop_assert_eq!(back, s);
        }

        #[test]
        fn any_value_parses_back(v in proptest::num::f64::ANY) {
            let s = format_value(v);
            // Go's ParseFloat accepts all of these spellings; so does Rust
            // for the numeric ones.
            if v.is_finite() {
                let back: f64 = s.parse().unwrap();
                proptest::prop_assert_eq!(back.to_bits(), v.to_bits());
            }
        }
    }
}
