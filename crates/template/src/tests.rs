//! Golden tests: expected strings are what Prometheus's `template.Expander`
//! prints for the same template and data (derived from the semantics of
//! Prometheus's template.go and Go's fmt/strconv; edge values worked out by
//! hand from those rules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use pharos_model::Labels;
use std::sync::Arc;

struct FixedQuery(Vec<QuerySample>);

impl QueryFunc for FixedQuery {
    fn query(&self, _q: &str, _ts: i64) -> Result<Vec<QuerySample>, String> {
        Ok(self.0.clone())
    }
}

fn exp(samples: Vec<QuerySample>) -> Expander {
    Expander::new(
        Arc::new(FixedQuery(samples)),
        "http://testhost:9090/path/prefix",
    )
}

fn run(text: &str, data: Value) -> Result<String, TemplateError> {
    exp(vec![]).expand("test", text, &data, 0)
}

fn ok(text: &str, data: Value) -> String {
    run(text, data).unwrap()
}

fn floats(v: &[f64]) -> Value {
    Value::from(v.iter().map(|f| Value::Float(*f)).collect::<Vec<_>>())
}

fn strs(v: &[&str]) -> Value {
    Value::from(v.iter().map(|s| Value::from(*s)).collect::<Vec<_>>())
}

fn ints(v: &[i64]) -> Value {
    Value::from(v.iter().map(|i| Value::Int(*i)).collect::<Vec<_>>())
}

fn sample(pairs: &[(&str, &str)], v: f64) -> QuerySample {
    QuerySample {
        labels: Labels::from_pairs(pairs),
        value: v,
        histogram: None,
    }
}

#[test]
fn plain_and_args() {
    assert_eq!(ok("plain text", Value::Nil), "plain text");
    assert_eq!(ok("{{ 1 }}", Value::Nil), "1");
    assert_eq!(ok("{{ \"<b>\" }}", Value::Nil), "<b>");
    assert_eq!(ok("{{ \"<b>\" | safeHtml }}", Value::Nil), "<b>");
    assert_eq!(
        ok(
            "{{define \"x\"}}{{.arg0}} {{.arg1}}{{end}}{{template \"x\" (args 1 \"2\")}}",
            Value::Nil
        ),
        "1 2"
    );
    assert_eq!(ok("{{ .Foo }}", Value::Nil), "<no value>");
}

#[test]
fn queries() {
    let e = exp(vec![sample(
        &[("__name__", "metric"), ("instance", "a")],
        11.0,
    )]);
    let r = |t: &str| e.expand("test", t, &Value::Nil, 0).unwrap();
    assert_eq!(
        r("{{ query \"metric{instance='a'}\" | first | value }}"),
        "11"
    );
    assert_eq!(
        r("{{ query \"metric{instance='a'}\" | first | label \"instance\" }}"),
        "a"
    );
    assert_eq!(r("{{ query \"m\" | first | label \"foo\" }}"), "");
    assert_eq!(
        r("{{ $x := query \"metric\" | first }}{{ $x.Labels.foo }}"),
        ""
    );
    let e = exp(vec![
        sample(&[("__name__", "metric"), ("instance", "b")], 21.0),
        sample(&[("__name__", "metric"), ("instance", "a")], 11.0),
    ]);
    assert_eq!(
        e.expand(
            "test",
            "{{ range query \"metric\" | sortByLabel \"instance\" }}{{.Labels.instance}}:{{.Value}}: {{end}}",
            &Value::Nil,
            0
        )
        .unwrap(),
        "a:11: b:21: "
    );
    let e = exp(vec![sample(&[("__value__", "a")], 11.0)]);
    assert_eq!(
        e.expand(
            "test",
            "{{ query \"x\" | first | strvalue }}",
            &Value::Nil,
            0
        )
        .unwrap(),
        "a"
    );
    let e = exp(vec![]);
    let err = e
        .expand("test", "{{ query \"missing\" | first }}", &Value::Nil, 0)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("first() called on vector with no elements"),
        "{err}"
    );
    let err = Expander::new(Arc::new(NoQueries), "")
        .expand("t", "{{ query \"up\" }}", &Value::Nil, 0)
        .unwrap_err();
    assert!(matches!(err, TemplateError::Execute { .. }));
}

#[test]
fn host_functions() {
    let cases = [
        ("foo.example.com", "stripPort", "foo.example.com"),
        ("foo.example.com:12345", "stripPort", "foo.example.com"),
        ("192.0.2.1", "stripPort", "192.0.2.1"),
        ("192.0.2.1:12345", "stripPort", "192.0.2.1"),
        ("2001:0DB8::1", "stripPort", "2001:0DB8::1"),
        ("[2001:0DB8::1]:12345", "stripPort", "2001:0DB8::1"),
        (
            "[2001:0DB8::1]::12345",
            "stripPort",
            "[2001:0DB8::1]::12345",
        ),
        ("foo.example.com", "stripDomain", "foo"),
        ("foo.example.com:12345", "stripDomain", "foo:12345"),
        ("192.0.2.1", "stripDomain", "192.0.2.1"),
        ("192.0.2.1:12345", "stripDomain", "192.0.2.1:12345"),
        ("2001:0DB8::1", "stripDomain", "2001:0DB8::1"),
        (
            "[2001:0DB8::1]:12345",
            "stripDomain",
            "[2001:0DB8::1]:12345",
        ),
        (
            "[2001:0DB8::1]::12345",
            "stripDomain",
            "[2001:0DB8::1]::12345",
        ),
    ];
    for (input, f, want) in cases {
        assert_eq!(
            ok(&format!("{{{{ \"{input}\" | {f} }}}}"), Value::Nil),
            want,
            "{f} {input}"
        );
    }
}

#[test]
fn humanize_family() {
    let r = "{{ range . }}{{ humanize . }}:{{ end }}";
    assert_eq!(
        ok(r, floats(&[0.0, 1.0, 1234567.0, 0.12])),
        "0:1:1.235M:120m:"
    );
    assert_eq!(
        ok(r, strs(&["0.0", "1.0", "1234567.0", ".12"])),
        "0:1:1.235M:120m:"
    );
    assert_eq!(
        ok(r, ints(&[0, -1, 1, 1234567, i64::MAX])),
        "0:-1:1:1.235M:9.223E:"
    );
    assert_eq!(
        ok(r, floats(&[-1234567.0, 1e-30, 1e30, -0.000_001_5, 1e300])),
        "-1.235M:1e-06y:1e+06Y:-1.5u:1e+276Y:"
    );
    let err = run("{{ humanize \"one\" }}", Value::Nil).unwrap_err();
    assert!(
        err.to_string()
            .contains("strconv.ParseFloat: parsing \"one\": invalid syntax"),
        "{err}"
    );

    let r = "{{ range . }}{{ humanize1024 . }}:{{ end }}";
    assert_eq!(ok(r, floats(&[0.0, 1.0, 1048576.0, 0.12])), "0:1:1Mi:0.12:");
    assert_eq!(
        ok(r, ints(&[0, -1, 1, 1234567, i64::MAX])),
        "0:-1:1:1.177Mi:8Ei:"
    );
    assert_eq!(ok(r, floats(&[-2048.0, 1e30])), "-2ki:8.272e+05Yi:");

    let r = "{{ range . }}{{ humanizeDuration . }}:{{ end }}";
    assert_eq!(
        ok(
            r,
            floats(&[
                0.0,
                1.0,
                60.0,
                3600.0,
                86400.0,
                86400.0 + 3600.0,
                -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0),
                899.99
            ])
        ),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"
    );
    assert_eq!(
        ok(
            r,
            floats(&[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345])
        ),
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"
    );
    assert_eq!(
        ok(r, ints(&[0, -1, 1, 1234567])),
        "0s:-1s:1s:14d 6h 56m 7s:"
    );
    assert_eq!(ok(r, floats(&[-0.5])), "-500ms:");
    // Go's out-of-range float→int64 conversion on amd64 gives i64::MIN.
    assert_eq!(ok(r, floats(&[1e30])), "-106751991167300d -15h -30m -8s:");

    let r = "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}";
    let want = "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:";
    assert_eq!(
        ok(r, floats(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN])),
        want
    );
    assert_eq!(ok(r, strs(&["+Inf", "-Inf", "NaN"])), want);
}

#[test]
fn percentages_and_timestamps() {
    assert_eq!(
        ok(
            "{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}",
            Value::Nil
        ),
        "-22.22%:0%:12.35%:123.5%"
    );
    assert_eq!(
        ok(
            "{{ range . }}{{ humanizePercentage . }}:{{ end }}",
            ints(&[0, -1, 1, 1234567, i64::MAX])
        ),
        "0%:-100%:100%:1.235e+08%:9.223e+20%:"
    );
    assert_eq!(
        ok(
            "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
            ints(&[0, -1, 1, 1234567, 9223372036])
        ),
        "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:"
    );
    assert_eq!(
        ok("{{ 1435065584.128 | humanizeTimestamp }}", Value::Nil),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    assert_eq!(
        ok("{{ \"1435065584.128\" | humanizeTimestamp }}", Value::Nil),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    let err = run(
        "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
        ints(&[i64::MIN]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "-9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it overflows int64"
        ),
        "{err}"
    );
}

#[test]
fn string_functions() {
    assert_eq!(ok("{{ \"aa bb CC\" | title }}", Value::Nil), "Aa Bb CC");
    assert_eq!(ok("{{ \"aa bb CC\" | toUpper }}", Value::Nil), "AA BB CC");
    assert_eq!(ok("{{ \"aA bB CC\" | toLower }}", Value::Nil), "aa bb cc");
    assert_eq!(
        ok(
            "{{ match \"a+\" \"aa\" }} {{ match \"a+\" \"b\" }}",
            Value::Nil
        ),
        "true false"
    );
    assert_eq!(
        ok("{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}", Value::Nil),
        "xa"
    );
    assert_eq!(
        ok(
            "{{ reReplaceAll \"(?P<h>[^:]+):.*\" \"${h}\" \"node1:9100\" }}",
            Value::Nil
        ),
        "node1"
    );
    assert!(run("{{ reReplaceAll \"(\" \"\" \"ab\" }}", Value::Nil).is_err());
    assert_eq!(
        ok("{{ graphLink \"up\" }}", Value::Nil),
        "/graph?g0.expr=up&g0.tab=0"
    );
    assert_eq!(
        ok("{{ tableLink \"rate(x[5m]) > 1\" }}", Value::Nil),
        "/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+1&g0.tab=1"
    );
    assert_eq!(ok("{{ pathPrefix }}", Value::Nil), "/path/prefix");
    assert_eq!(
        ok("{{ externalURL }}", Value::Nil),
        "http://testhost:9090/path/prefix"
    );
    assert_eq!(
        ok(
            "{{ printf \"%0.2f\" (parseDuration \"1h2m10ms\") }}",
            Value::Nil
        ),
        "3720.01"
    );
    assert!(run("{{ parseDuration \"1x\" }}", Value::Nil).is_err());
}

#[test]
fn language_features() {
    let data = alert_data(
        "",
        &Labels::from_pairs(&[("instance", "db1:5432"), ("job", "db")]),
        &Labels::from_pairs(&[("cluster", "eu")]),
        "http://h:9090",
        0.97,
    );
    let cases = [
        ("{{ if gt .Value 0.9 }}high{{ else }}low{{ end }}", "high"),
        (
            "{{ if lt .Value 0.5 }}a{{ else if lt .Value 0.99 }}b{{ end }}",
            "b",
        ),
        (
            "{{ range $k, $v := .Labels }}{{$k}}={{$v}};{{ end }}",
            "instance=db1:5432;job=db;",
        ),
        ("{{ with .Labels.job }}job {{ . }}{{ end }}", "job db"),
        ("{{ printf \"%.1f\" .Value }}", "1.0"),
        ("{{ .Value }}", "0.97"),
        (
            "{{ 1000000.0 }} {{ 1e-05 }} {{ 123456.0 }}",
            "1e+06 1e-05 123456",
        ),
        (
            "{{ if true }}{{ 2.5e7 }}{{ end }}{{ range $i, $x := .Labels }}{{ $i }}{{ end }}",
            "2.5e+07instancejob",
        ),
        (
            "{{ define \"v\" }}{{ . }}{{ end }}{{ template \"v\" 1e9 }}",
            "1e+09",
        ),
        ("{{ len .Labels }}", "2"),
        ("{{ index .Labels \"job\" }}", "db"),
        ("[{{ index .Labels \"nope\" }}]", "[]"),
        ("{{ (index (args 1.5 \"x\") \"arg0\") | humanize }}", "1.5"),
        ("[{{ index (args 1) \"nope\" }}]", "[<no value>]"),
        (
            "{{ .ExternalLabels.cluster }} {{ .ExternalURL }}",
            "eu http://h:9090",
        ),
        (
            "{{ if and (eq .Labels.job \"db\") (ne .Labels.instance \"x\") }}y{{ end }}",
            "y",
        ),
        ("{{- \"a\" -}}  {{- \"b\" -}}", "ab"),
        ("{{/* comment */}}x", "x"),
    ];
    for (t, want) in cases {
        assert_eq!(ok(t, data.clone()), want, "template {t}");
    }
}

#[test]
fn alert_expansion() {
    let e = exp(vec![]);
    let labels = Labels::from_pairs(&[("instance", "api-1:8080"), ("job", "api")]);
    let ext = Labels::from_pairs(&[("region", "eu-west")]);
    let got = e.expand_alert(
        "HighErrorRate",
        "{{ $labels.instance }} error rate {{ $value | humanizePercentage }} in {{ $externalLabels.region }} ({{ $labels.missing }})",
        &labels,
        &ext,
        0.0523,
        0,
    );
    assert_eq!(got, "api-1:8080 error rate 5.23% in eu-west ()");
    let got = e.expand_alert("X", "{{ $value | humanize }}", &labels, &ext, 1.0e9, 0);
    assert_eq!(got, "1G");
    let got = e.expand_alert("X", "{{ .Nope | humanize }}", &labels, &ext, 1.0, 0);
    assert!(got.starts_with("<error expanding template: "), "{got}");
    let bad = e.expand_alert("X", "{{ $value ", &labels, &ext, 1.0, 0);
    assert!(
        bad.starts_with("<error expanding template: error parsing template __alert_X"),
        "{bad}"
    );
    assert!(e.parse_check("t", "{{ if }}").is_err());
    assert!(e.parse_check("t", "{{ $labels.x }}").is_err());
    assert!(
        e.parse_check("t", "{{ if true }}{{ $a := 1 }}{{ end }}{{ $a }}")
            .is_err()
    );
    assert!(
        e.parse_check("t", "{{ range $i, $v := .X }}{{ $i }}{{ $v }}{{ end }}")
            .is_ok()
    );
    assert_eq!(
        e.parse_check("t", "x\n{{ nosuchfunc 1 }}")
            .unwrap_err()
            .to_string(),
        "error parsing template t: template: t:2: function \"nosuchfunc\" not defined"
    );
    assert!(
        e.parse_check("t", &format!("{ALERT_TEMPLATE_HEADER}{{{{ $labels.x }}}}"))
            .is_ok()
    );
    assert!(e.parse_check("t", "{{ nosuchfunc 1 }}").is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let e = Expander::new(Arc::new(NoQueries), "");
            let _ = e.parse_check("p", &s);
            let _ = e.expand("p", &s, &Value::Nil, 0);
        }

        #[test]
        fn humanizers_never_panic(v in proptest::num::f64::ANY) {
            let _ = humanize(v);
            let _ = humanize1024(v);
            let _ = humanize_duration(v);
            let _ = humanize_percentage(v);
            let _ = humanize_timestamp(v);
        }
    }
}

#[test]
fn printf_prints_non_finite_like_go() {
    let data = floats(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 2.5]);
    assert_eq!(
        ok(
            "{{ printf \"%.2f|%6.1f|%v|%.1f|%d%%\" (index . 0) (index . 1) (index . 2) (index . 3) 7 }}",
            data
        ),
        "+Inf|  -Inf|NaN|2.5|7%"
    );
}

/// Native histograms reach templates as Prometheus's `*FloatHistogram`
/// does: printed with its `String()`, both as an alert's `$value` and as
/// `.Value` of a `query` result.
#[test]
fn histogram_values_print_like_prometheus() {
    let h =
        pharos_model::histogram::parse_test_histogram("{{schema:0 count:3 sum:5 buckets:[1 2]}}")
            .unwrap();
    let want = "{count:3, sum:5, (0.5,1]:1, (1,2]:2}";
    let e = exp(vec![QuerySample {
        labels: Labels::from_pairs(&[("__name__", "h")]),
        value: 0.0,
        histogram: Some(Box::new(h.clone())),
    }]);
    let none = Labels::empty();
    let got = e.expand_alert_sample(
        "X",
        "{{ $value }}",
        &none,
        &none,
        SampleValue::Histogram(&h),
        0,
    );
    assert_eq!(got, want);
    let got = e.expand_alert("X", "{{ $value }}", &none, &none, 2.5, 0);
    assert_eq!(got, "2.5");
    let got = e.expand_alert_sample(
        "X",
        r#"{{ with query "h" }}{{ . | first | value }}{{ end }}"#,
        &none,
        &none,
        SampleValue::Float(0.0),
        0,
    );
    assert_eq!(got, want);
}
