//! The text format 0.0.4 encoder.
//!
//! Appends to a caller-owned `String`, so a handler can reuse one buffer
//! for a whole page. Names that are valid legacy names are written bare;
//! other (UTF-8) names are written in the quoted Prometheus 3 form
//! (`# HELP "my.metric" ...`, `{"my.metric","a.b"="c"}`), which the
//! parsers of this crate read back.

use std::fmt::Write as _;

use pharos_model::labels::{escape_label_value, is_valid_label_name, is_valid_metric_name};
use pharos_model::{Labels, METRIC_NAME, format_float};

use crate::MetricType;

/// Appends `# HELP name text\n`, escaping `\` and newline in the text.
/// (Parsers drop leading blanks of HELP text, so those do not round-trip.)
pub fn write_help(out: &mut String, name: &str, help: &str) {
    out.push_str("# HELP ");
    push_metric_name(out, name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\n');
}

/// Appends `# TYPE name kind\n` with the text-format type name
/// ([`MetricType::text_name`]: OpenMetrics-only types become `untyped`).
pub fn write_type(out: &mut String, name: &str, kind: MetricType) {
    out.push_str("# TYPE ");
    push_metric_name(out, name);
    out.push(' ');
    out.push_str(kind.text_name());
    out.push('\n');
}

/// Appends one sample line: `name{a="b",...} value[ timestamp]\n`. The
/// name comes from `__name__`; label values are escaped; the value is
/// written like Prometheus (`+Inf`, `-Inf`, `NaN`, shortest round-trip
/// decimal). Labels without `__name__` are written as a bare label set,
/// which parsers reject; callers should always provide a name.
pub fn write_sample(out: &mut String, labels: &Labels, value: f64, timestamp: Option<i64>) {
    let name = labels.metric_name();
    let mut first = true;
    match name {
        Some(n) if is_valid_metric_name(n) => out.push_str(n),
        Some(n) => {
            out.push('{');
            push_quoted(out, n);
            first = false;
        }
        None => {}
    }
    for l in labels.iter().filter(|l| l.name != METRIC_NAME) {
        if first {
            out.push('{');
            first = false;
        } else {
            out.push(',');
        }
        if is_valid_label_name(l.name) {
            out.push_str(l.name);
        } else {
            push_quoted(out, l.name);
        }
        out.push_str("=\"");
        out.push_str(&escape_label_value(l.value));
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_float(value));
    if let Some(ts) = timestamp {
        // Writing to a String cannot fail.
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
}

fn push_metric_name(out: &mut String, name: &str) {
    if is_valid_metric_name(name) {
        out.push_str(name);
    } else {
        push_quoted(out, name);
    }
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(&escape_label_value(s));
    out.push('"');
}

/// A text format 0.0.4 encoder that owns its buffer; a thin convenience
/// over [`write_help`], [`write_type`] and [`write_sample`].
#[derive(Debug, Clone, Default)]
pub struct TextEncoder {
    out: String,
}

impl TextEncoder {
    /// An empty encoder.
    pub fn new() -> TextEncoder {
        TextEncoder::default()
    }

    /// Appends a `# HELP` line.
    pub fn help(&mut self, name: &str, help: &str) -> &mut Self {
        write_help(&mut self.out, name, help);
        self
    }

    /// Appends a `# TYPE` line.
    pub fn metric_type(&mut self, name: &str, kind: MetricType) -> &mut Self {
        write_type(&mut self.out, name, kind);
        self
    }

    /// Appends a sample line.
    pub fn sample(&mut self, labels: &Labels, value: f64, timestamp: Option<i64>) -> &mut Self {
        write_sample(&mut self.out, labels, value, timestamp);
        self
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// Empties the buffer, keeping its capacity.
    pub fn clear(&mut self) {
        self.out.clear();
    }

    /// The text written, consuming the encoder.
    pub fn into_string(self) -> String {
        self.out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{Entry, Format, Parser};

    #[test]
    fn exact_output() {
        let mut out = String::new();
        write_help(
            &mut out,
            "http_requests_total",
            "Total \\ requests.\nSecond line \"q\"",
        );
        write_type(&mut out, "http_requests_total", MetricType::Counter);
        write_sample(
            &mut out,
            &Labels::from_pairs(&[
                ("__name__", "http_requests_total"),
                ("method", "post"),
                ("path", "/a\"b\\c\nd"),
            ]),
            1027.0,
            Some(1395066363000),
        );
        write_sample(
            &mut out,
            &Labels::from_pairs(&[("__name__", "up")]),
            1.0,
            None,
        );
        write_sample(
            &mut out,
            &Labels::from_pairs(&[("__name__", "x"), ("le", "+Inf")]),
            f64::NAN,
            None,
        );
        write_sample(
            &mut out,
            &Labels::from_pairs(&[("__name__", "y")]),
            f64::NEG_INFINITY,
            Some(-5),
        );
        write_sample(
            &mut out,
            &Labels::from_pairs(&[("__name__", "z")]),
            0.1,
            None,
        );
        assert_eq!(
            out,
            "# HELP http_requests_total Total \\\\ requests.\\nSecond line \"q\"\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{method=\"post\",path=\"/a\\\"b\\\\c\\nd\"} 1027 1395066363000\n\
             up 1\n\
             x{le=\"+Inf\"} NaN\n\
             y -Inf -5\n\
             z 0.1\n"
        );
    }

    #[test]
    fn utf8_names_are_quoted() {
        let mut out = String::new();
        write_help(&mut out, "my.metric", "h");
        write_type(&mut out, "my.metric", MetricType::Info);
        write_sample(
            &mut out,
            &Labels::from_pairs(&[("__name__", "my.metric"), ("a.b", "c"), ("d", "e")]),
            2.0,
            None,
        );
        write_sample(
            &mut out,
            &Labels::from_pairs(&[("__name__", "ok"), ("ü", "v")]),
            2.0,
            None,
        );
        assert_eq!(
            out,
            "# HELP \"my.metric\" h\n\
             # TYPE \"my.metric\" untyped\n\
             {\"my.metric\",\"a.b\"=\"c\",d=\"e\"} 2\n\
             ok{\"ü\"=\"v\"} 2\n"
        );
    }

    #[test]
    fn encoder_struct() {
        let mut e = TextEncoder::new();
        e.help("a", "b").metric_type("a", MetricType::Gauge).sample(
            &Labels::from_pairs(&[("__name__", "a")]),
            3.5,
            None,
        );
        assert_eq!(e.as_str(), "# HELP a b\n# TYPE a gauge\na 3.5\n");
        e.clear();
        assert_eq!(e.as_str(), "");
        assert_eq!(e.into_string(), "");
    }

    type Series = (Labels, f64, Option<i64>);

    fn round_trip(series: &[Series], help: &str) {
        let mut out = String::new();
        write_help(&mut out, "fam", help);
        write_type(&mut out, "fam", MetricType::Gauge);
        for (l, v, t) in series {
            write_sample(&mut out, l, *v, *t);
        }
        let mut p = Parser::new(out.as_bytes(), Format::PrometheusText);
        match p.next_entry() {
            Some(Ok(Entry::Help { metric, text })) => {
                assert_eq!(metric, "fam");
                // The format cannot carry leading blanks in HELP text.
                assert_eq!(text, help.trim_start_matches([' ', '\t']));
            }
            other => panic!("expected HELP, got {other:?}"),
        }
        assert!(matches!(
            p.next_entry(),
            Some(Ok(Entry::Type {
                metric: "fam",
                kind: MetricType::Gauge
            }))
        ));
        for (l, v, t) in series {
            let Some(Ok(Entry::Sample(s))) = p.next_entry() else {
                panic!("expected a sample in {out:?}")
            };
            assert_eq!(&s.labels(), l, "in {out:?}");
            if v.is_nan() {
                assert!(s.value.is_nan());
            } else {
                assert_eq!(s.value.to_bits(), v.to_bits(), "in {out:?}");
            }
            assert_eq!(s.timestamp, *t);
        }
        assert!(p.next_entry().is_none());
    }

    #[test]
    fn round_trip_fixed() {
        round_trip(
            &[
                (
                    Labels::from_pairs(&[("__name__", "a"), ("x", "\\\"\n\t é")]),
                    -0.0,
                    Some(0),
                ),
                (
                    Labels::from_pairs(&[("__name__", "b.c"), ("d-e", "1"), ("f", "2")]),
                    f64::INFINITY,
                    None,
                ),
                (Labels::from_pairs(&[("__name__", "n")]), f64::NAN, None),
                (
                    Labels::from_pairs(&[("__name__", "big")]),
                    1e300,
                    Some(i64::MAX),
                ),
                (
                    Labels::from_pairs(&[("__name__", "tiny")]),
                    5e-324,
                    Some(i64::MIN),
                ),
            ],
            "help \\ with \n escapes \"q\" \\n",
        );
    }

    fn labels_strategy() -> impl proptest::strategy::Strategy<Value = Labels> {
        use proptest::prelude::*;
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}|\\PC{1,8}",
            proptest::collection::btree_map(
                "[a-zA-Z_][a-zA-Z0-9_]{0,6}|\\PC{1,6}",
                "\\PC{0,12}|[\\\\\"\n]{1,4}",
                0..5,
            ),
        )
            .prop_map(|(name, rest)| {
                let mut pairs: Vec<(String, String)> =
                    rest.into_iter().filter(|(n, _)| n != "__name__").collect();
                pairs.push(("__name__".into(), name));
                Labels::from_pairs(&pairs)
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        #[test]
        fn round_trip_any(
            series in proptest::collection::vec(
                (labels_strategy(), proptest::prelude::any::<f64>(), proptest::option::of(proptest::prelude::any::<i64>())),
                0..6,
            ),
            help in "\\PC{0,30}",
        ) {
            round_trip(&series, &help);
        }
    }
}
