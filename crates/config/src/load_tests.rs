//! Loader tests: defaults, inheritance, and the exact position of every
//! kind of error. Several cases mirror situations covered by Prometheus's
//! `config/testdata` (in our own YAML), so both loaders agree on what is
//! valid.

use pharos_model::relabel::{Action, RelabelConfig};
use pharos_model::{Duration, Labels};

use crate::load::load_with_env;
use crate::*;

fn env(name: &str) -> Option<String> {
    match name {
        "REGION" => Some("eu-west".to_string()),
        _ => None,
    }
}

fn load(text: &str) -> Config {
    match load_with_env(text, "prometheus.yml", &env) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}\n--- input ---\n{text}"),
    }
}

/// Loads `text`, expecting an error at `line:col` whose message contains
/// `needle`; returns the full error text.
#[track_caller]
fn bad(text: &str, line: u32, col: u32, needle: &str) -> String {
    let e = match load_with_env(text, "p.yml", &env) {
        Ok(_) => panic!("expected an error containing {needle:?}\n--- input ---\n{text}"),
        Err(e) => e,
    };
    let s = e.to_string();
    let prefix = format!("p.yml:{line}:{col}: ");
    assert!(
        s.starts_with(&prefix) && s.contains(needle),
        "wanted {prefix}...{needle}..., got: {s}\n--- input ---\n{text}"
    );
    assert!(!s.contains('\n'), "multi-line error: {s:?}");
    s
}

const S: fn(i64) -> Duration = |secs| Duration(secs * 1000);

#[test]
fn empty_file_gives_prometheus_defaults() {
    for text in ["", "\n", "# just a comment\n", "global:\n", "global: {}\n"] {
        let c = load(text);
        assert_eq!(c.global, GlobalConfig::default(), "{text:?}");
        assert_eq!(
            c,
            Config {
                original: text.to_string(),
                ..Config::default()
            }
        );
        assert_eq!(c.global.scrape_interval, S(60));
        assert_eq!(c.global.scrape_timeout, S(10));
        assert_eq!(c.global.evaluation_interval, S(60));
        assert!(c.global.external_labels.is_empty());
        assert!(c.scrape_configs.is_empty() && c.rule_files.is_empty());
        assert_eq!(c.original, text);
    }
}

#[test]
fn minimal_job_gets_every_default() {
    let c = load("scrape_configs:\n  - job_name: node\n");
    let j = &c.scrape_configs[0];
    assert_eq!(j.job_name, "node");
    assert_eq!(j.scrape_interval, S(60));
    assert_eq!(j.scrape_timeout, S(10));
    assert_eq!(j.metrics_path, "/metrics");
    assert_eq!(j.scheme, "http");
    assert!(j.params.is_empty());
    assert!(!j.honor_labels);
    assert!(j.honor_timestamps);
    assert_eq!(j.scrape_protocols, DEFAULT_SCRAPE_PROTOCOLS.to_vec());
    assert_eq!(j.fallback_scrape_protocol, None);
    assert!(j.static_configs.is_empty());
    assert!(j.relabel_configs.is_empty() && j.metric_relabel_configs.is_empty());
    assert_eq!(
        (
            j.sample_limit,
            j.label_limit,
            j.label_name_length_limit,
            j.label_value_length_limit,
            j.body_size_limit
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(*j, ScrapeConfig::new("node", &GlobalConfig::default()));
}

const FULL: &str = r#"# A file using every supported key.
global:
  scrape_interval: 30s
  scrape_timeout: 20s
  evaluation_interval: 45s
  external_labels:
    region: ${REGION}
    replica: "a$$b"
    unset: "x${NOPE}"
  body_size_limit: 1MB
  sample_limit: 1000
  label_limit: 30
  label_name_length_limit: 200
  label_value_length_limit: 2000
  scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0]

rule_files:
  - rules/*.yml
  - /etc/alerts.yml

scrape_configs:
  - job_name: api
    scrape_interval: 10s
    scrape_timeout: 4s
    metrics_path: /admin/metrics
    scheme: https
    honor_labels: true
    honor_timestamps: false
    params:
      module: [http_2xx, tcp]
      debug: ["1"]
    scrape_protocols: [OpenMetricsText1.0.0]
    fallback_scrape_protocol: PrometheusText0.0.4
    body_size_limit: 10KiB
    sample_limit: 50
    label_limit: 0
    static_configs:
      - targets: ['api-1:8080', "api-2:8080"]
        labels:
          env: prod
          tier: 1
      - targets:
    relabel_configs:
      - source_labels: [__address__]
        regex: '([^:]+):\d+'
        target_label: host
      - action: hashmod
        source_labels: [host]
        modulus: 4
        target_label: __tmp_shard
      - action: Keep
        source_labels: [__tmp_shard]
        regex: "0"
      - action: labelmap
        regex: __meta_(.+)
        replacement: meta_$1
      - action: labeldrop
        regex: __tmp_.*
      - action: keepequal
        source_labels: [a]
        target_label: b
      - action: lowercase
        source_labels: [env]
        target_label: env_lower
      - regex:
        replacement: static
        target_label: abc
    metric_relabel_configs:
      - source_labels: [__name__, le]
        separator: '|'
        regex: 'go_.*\|.*'
        action: drop
  - job_name: defaults
"#;

#[test]
fn full_file_loads_every_value() {
    let c = load(FULL);
    let g = &c.global;
    assert_eq!(g.scrape_interval, S(30));
    assert_eq!(g.scrape_timeout, S(20));
    assert_eq!(g.evaluation_interval, S(45));
    assert_eq!(
        g.external_labels,
        Labels::from_pairs(&[("region", "eu-west"), ("replica", "a$b"), ("unset", "x")])
    );
    assert_eq!(g.body_size_limit, 1 << 20);
    assert_eq!(g.sample_limit, 1000);
    assert_eq!(g.label_limit, 30);
    assert_eq!(g.label_name_length_limit, 200);
    assert_eq!(g.label_value_length_limit, 2000);
    assert_eq!(
        g.scrape_protocols,
        ["PrometheusText0.0.4", "OpenMetricsText1.0.0"]
    );
    assert_eq!(c.rule_files, ["rules/*.yml", "/etc/alerts.yml"]);
    assert_eq!(c.original, FULL);

    let j = &c.scrape_configs[0];
    assert_eq!(j.job_name, "api");
    assert_eq!(j.scrape_interval, S(10));
    assert_eq!(j.scrape_timeout, S(4));
    assert_eq!(j.metrics_path, "/admin/metrics");
    assert_eq!(j.scheme, "https");
    assert!(j.honor_labels && !j.honor_timestamps);
    assert_eq!(j.params["module"], ["http_2xx", "tcp"]);
    assert_eq!(j.params["debug"], ["1"]);
    assert_eq!(j.scrape_protocols, ["OpenMetricsText1.0.0"]);
    assert_eq!(
        j.fallback_scrape_protocol.as_deref(),
        Some("PrometheusText0.0.4")
    );
    assert_eq!(j.body_size_limit, 10 * 1024);
    assert_eq!(j.sample_limit, 50);
    // 0 means "inherit" for limits, as in Prometheus.
    assert_eq!(j.label_limit, 30);
    assert_eq!(j.label_name_length_limit, 200);
    assert_eq!(j.label_value_length_limit, 2000);
    assert_eq!(j.static_configs.len(), 2);
    assert_eq!(j.static_configs[0].targets, ["api-1:8080", "api-2:8080"]);
    assert_eq!(
        j.static_configs[0].labels,
        Labels::from_pairs(&[("env", "prod"), ("tier", "1")])
    );
    assert!(j.static_configs[1].targets.is_empty());

    let r = &j.relabel_configs;
    assert_eq!(r.len(), 8);
    assert_eq!(r[0].source_labels, ["__address__"]);
    assert_eq!(r[0].regex_pattern(), r"([^:]+):\d+");
    assert_eq!(
        (r[0].action, r[0].replacement.as_str()),
        (Action::Replace, "$1")
    );
    assert_eq!(r[0].separator, ";");
    assert_eq!((r[1].action, r[1].modulus), (Action::HashMod, 4));
    assert_eq!(r[2].action, Action::Keep);
    assert_eq!(r[3].action, Action::LabelMap);
    assert_eq!(r[3].replacement, "meta_$1");
    assert_eq!(r[4].action, Action::LabelDrop);
    assert_eq!(r[5].action, Action::KeepEqual);
    assert_eq!(r[6].action, Action::Lowercase);
    // `regex:` with no value is the empty regex, as in Prometheus.
    assert_eq!(r[7].regex_pattern(), "");
    let m = &j.metric_relabel_configs[0];
    assert_eq!((m.action, m.separator.as_str()), (Action::Drop, "|"));

    // The second job inherits from global.
    let d = &c.scrape_configs[1];
    assert_eq!(d.scrape_interval, S(30));
    assert_eq!(d.scrape_timeout, S(20));
    assert_eq!(d.scrape_protocols, g.scrape_protocols);
    assert_eq!(d.body_size_limit, 1 << 20);
    assert_eq!(d.sample_limit, 1000);

    // The rules behave as written.
    let target = Labels::from_pairs(&[("__address__", "api-1:8080"), ("env", "prod")]);
    let out = pharos_model::relabel::process(&target, &r[..1]).unwrap();
    assert_eq!(out.get("host"), Some("api-1"));
    let out = pharos_model::relabel::process(&target, &r[7..]).unwrap();
    assert_eq!(out.get("abc"), Some("static"));
}

#[test]
fn timeout_defaults_follow_the_interval() {
    // Global interval below the default timeout: timeout becomes the interval.
    let c = load("global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: a\n");
    assert_eq!(c.global.scrape_timeout, S(5));
    assert_eq!(c.scrape_configs[0].scrape_timeout, S(5));
    // A job interval below the global timeout caps the job's timeout.
    let c = load(
        "global:\n  scrape_interval: 15s\n  scrape_timeout: 15s\nscrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n",
    );
    let j = &c.scrape_configs[0];
    assert_eq!((j.scrape_interval, j.scrape_timeout), (S(5), S(5)));
    // Equal timeout and interval is fine (global_timeout.good.yml).
    let c = load("global:\n  scrape_timeout: 1h\n  scrape_interval: 1h\n");
    assert_eq!(c.global.scrape_timeout, S(3600));
    // A job interval above the global timeout keeps the global timeout.
    let c = load("scrape_configs:\n  - job_name: a\n    scrape_interval: 2m\n");
    assert_eq!(c.scrape_configs[0].scrape_timeout, S(10));
    // 0s means "not set".
    let c = load(
        "global:\n  scrape_interval: 0s\nscrape_configs:\n  - job_name: a\n    scrape_timeout: 0s\n",
    );
    assert_eq!(c.global.scrape_interval, S(60));
    assert_eq!(c.scrape_configs[0].scrape_timeout, S(10));
}

#[test]
fn accepted_default_valued_switches() {
    let c = load(
        "global:\n  target_limit: 0\n  scrape_native_histograms: false\n  metric_name_validation_scheme: legacy\n  rule_query_offset: 0s\n\
         scrape_configs:\n  - job_name: a\n    enable_compression: true\n    follow_redirects: true\n    enable_http2: true\n    track_timestamps_staleness: false\n    keep_dropped_targets: 0\n",
    );
    assert_eq!(c.scrape_configs.len(), 1);
    assert_eq!(c.global.rule_query_offset, Duration(0));
}

#[test]
fn global_rule_query_offset() {
    let c = load("global:\n  rule_query_offset: 1m30s\n");
    assert_eq!(c.global.rule_query_offset, Duration(90_000));
    assert_eq!(load("global: {}\n").global.rule_query_offset, Duration(0));
    bad("global:\n  rule_query_offset: soon\n", 2, 22, "");
}

#[test]
fn yaml_level_errors() {
    bad("global:\n  scrape_interval: [1m\n", 2, 20, "");
    bad(
        "scrape_configs:\n  - job_name: a\n    scrape_intervall: 1m\n",
        3,
        5,
        "unknown field \"scrape_intervall\" (did you mean \"scrape_interval\"?)",
    );
    bad(
        "nonexistent_field: 1\n",
        1,
        1,
        "unknown field \"nonexistent_field\"",
    );
    bad(
        "global:\n  labels:\n    a: b\n",
        2,
        3,
        "unknown field \"labels\"",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    consult_sd_configs: []\n",
        3,
        5,
        "unknown field \"consult_sd_configs\"",
    );
    // section_key_dup.bad.yml
    bad(
        "scrape_configs:\n  - job_name: 'prometheus_system'\n\nscrape_configs:\n  - job_name: 'foo_system'\n",
        4,
        1,
        "duplicate key \"scrape_configs\"",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    job_name: b\n",
        3,
        5,
        "duplicate key \"job_name\"",
    );
    bad(
        "global:\n  external_labels:\n    a: x\n    a: y\n",
        4,
        5,
        "duplicate key \"a\"",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    sample_limit: -1\n",
        3,
        19,
        "non-negative integer",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    honor_labels: maybe\n",
        3,
        19,
        "",
    );
    bad("scrape_configs: {a: 1}\n", 1, 17, "expected a list");
    bad("- a\n", 1, 1, "expected a mapping");
    bad(
        "global: {}\n---\nglobal: {}\n",
        3,
        1,
        "multiple YAML documents",
    );
    bad("global:\n\tscrape_interval: 1m\n", 2, 2, "tabs");
}

#[test]
fn global_errors() {
    bad(
        "global:\n  scrape_interval: 1x\n",
        2,
        20,
        "not a valid duration string: \"1x\"",
    );
    bad(
        "global:\n  evaluation_interval: 5\n",
        2,
        24,
        "not a valid duration string: \"5\"",
    );
    bad(
        "global:\n  scrape_interval: 10s\n  scrape_timeout: 11s\n",
        3,
        19,
        "global scrape timeout greater than scrape interval",
    );
    // The default interval (1m) applies when only the timeout is given.
    bad(
        "global:\n  scrape_timeout: 2m\n",
        2,
        19,
        "global scrape timeout greater than scrape interval",
    );
    // labelname.bad.yml (in the legacy naming scheme).
    bad(
        "global:\n  external_labels:\n    not$allowed: value\n",
        3,
        5,
        "\"not$allowed\" is not a valid label name",
    );
    bad(
        "global:\n  external_labels:\n    ok: v\n    1abc: v\n",
        4,
        5,
        "\"1abc\" is not a valid label name",
    );
    bad(
        "global:\n  body_size_limit: 100\n",
        2,
        20,
        "units: unknown unit  in 100",
    );
    bad(
        "global:\n  scrape_protocols: []\n",
        2,
        21,
        "scrape_protocols cannot be empty",
    );
    bad(
        "global:\n  query_log_file: q.log\n",
        2,
        19,
        "query_log_file is not supported yet",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    native_histogram_min_bucket_factor: -1\n",
        3,
        41,
        "native_histogram_min_bucket_factor must be a finite number >= 0",
    );
    bad(
        "global:\n  metric_name_validation_scheme: utf8\n",
        2,
        34,
        "metric_name_validation_scheme: \"utf8\" is not supported yet",
    );
}

#[test]
fn top_level_errors() {
    // rules.bad.yml
    bad(
        "rule_files:\n  - 'my_rule' # fine\n  - 'my/*/rule' # bad\n",
        3,
        5,
        "invalid rule file path \"my/*/rule\"",
    );
    bad(
        "alerting:\n  alertmanagers:\n    - api_version: v1\n",
        3,
        20,
        "expected Alertmanager api version to be one of [v2] but got v1",
    );
    bad(
        "remote_write:\n  - url: http://x/api/v1/write\n",
        2,
        3,
        "remote_write is not supported yet",
    );
    bad(
        "remote_read: []\n",
        1,
        14,
        "remote_read is not supported yet",
    );
    bad(
        "storage:\n  tsdb:\n    out_of_order_time_window: 1h\n",
        3,
        31,
        "out_of_order_time_window is not supported yet",
    );
    // empty_scrape_config.bad.yml
    bad(
        "scrape_configs:\n  -\n",
        2,
        4,
        "empty or null scrape config section",
    );
}

#[test]
fn scrape_config_errors() {
    // jobname.bad.yml
    bad(
        "scrape_configs:\n  - job_name:\n",
        2,
        13,
        "job_name is empty",
    );
    bad(
        "scrape_configs:\n  - job_name: ''\n",
        2,
        15,
        "job_name is empty",
    );
    bad(
        "scrape_configs:\n  - scrape_interval: 1m\n",
        2,
        5,
        "job_name is empty",
    );
    // jobname_dup.bad.yml
    bad(
        "scrape_configs:\n  - job_name: prometheus\n  - job_name: node\n  - job_name: prometheus\n",
        4,
        15,
        "found multiple scrape configs with job name \"prometheus\"",
    );
    // scrape_interval.bad.yml
    bad(
        "scrape_configs:\n  - job_name: prometheus\n    scrape_interval: 5s\n    scrape_timeout:  6s\n",
        4,
        22,
        "scrape timeout greater than scrape interval for scrape config with job name \"prometheus\"",
    );
    // Against the inherited interval.
    bad(
        "global:\n  scrape_interval: 10s\nscrape_configs:\n  - job_name: a\n    scrape_timeout: 11s\n",
        5,
        21,
        "scrape timeout greater than scrape interval",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    scrape_interval: 1m1m\n",
        3,
        22,
        "not a valid duration string",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    scheme: ftp\n",
        3,
        13,
        "invalid scheme \"ftp\"",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    scheme: HTTP\n",
        3,
        13,
        "invalid scheme \"HTTP\"",
    );
    // scrape_body_size_limit.bad.yml
    bad(
        "scrape_configs:\n- job_name: prometheus\n  body_size_limit: 100\n",
        3,
        20,
        "units: unknown unit  in 100",
    );
    // url_in_targetgroup.bad.yml
    bad(
        "scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets:\n          - http://bad\n",
        5,
        13,
        "\"http://bad\" is not a valid hostname",
    );
    // empty_static_config.bad.yml
    bad(
        "scrape_configs:\n  - job_name: \"test\"\n    static_configs:\n      -\n",
        4,
        8,
        "empty or null section in static_configs",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [x:1]\n        labels:\n          bad-name: v\n",
        6,
        11,
        "\"bad-name\" is not a valid label name",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      - target: [x:1]\n",
        4,
        9,
        "unknown field \"target\" (did you mean \"targets\"?)",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    scrape_protocols: [OpenMetricsText1.0.0, prometheusproto]\n",
        3,
        46,
        "unknown scrape protocol \"prometheusproto\", supported: [OpenMetricsText0.0.1 OpenMetricsText1.0.0 PrometheusProto PrometheusText0.0.4 PrometheusText1.0.0]",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    scrape_protocols: [OpenMetricsText1.0.0, PrometheusProto, OpenMetricsText1.0.0]\n",
        3,
        63,
        "duplicated protocol in scrape_protocols, got [OpenMetricsText1.0.0 PrometheusProto OpenMetricsText1.0.0]",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    fallback_scrape_protocol: prometheusproto\n",
        3,
        31,
        "unknown scrape protocol",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      -\n",
        4,
        8,
        "empty or null target relabeling rule in scrape config",
    );
    bad(
        "scrape_configs:\n  - job_name: a\n    metric_relabel_configs:\n      - ~\n",
        4,
        9,
        "empty or null metric relabeling rule in scrape config",
    );
}

#[test]
fn a_url_target_is_fine_when_relabeling_may_fix_it() {
    let c = load(
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [http://x/y]\n    relabel_configs:\n      - target_label: __address__\n        replacement: x:80\n",
    );
    assert_eq!(
        c.scrape_configs[0].static_configs[0].targets,
        ["http://x/y"]
    );
}

#[test]
fn unsupported_scrape_keys_are_reported() {
    let job = |body: &str| format!("scrape_configs:\n  - job_name: a\n{body}");
    bad(
        &job("    track_timestamps_staleness: true\n"),
        3,
        33,
        "track_timestamps_staleness: true is not supported yet",
    );
}

/// A job with one relabel rule written at a known place: the rule's keys
/// start at line 4, column 9.
fn rule(body: &str) -> String {
    let mut s = String::from("scrape_configs:\n  - job_name: a\n    relabel_configs:\n");
    for (i, line) in body.lines().enumerate() {
        s.push_str(if i == 0 { "      - " } else { "        " });
        s.push_str(line);
        s.push('\n');
    }
    s
}

#[test]
fn relabel_rule_errors() {
    // regex.bad.yml
    let e = bad(
        &rule("source_labels: [a]\nregex: abc(def\ntarget_label: b"),
        5,
        16,
        "error parsing regexp \"abc(def\"",
    );
    assert!(e.ends_with("unclosed group"), "{e}");
    bad(
        &rule("source_labels: [a-b]\ntarget_label: b"),
        4,
        25,
        "\"a-b\" is not a valid label name",
    );
    bad(
        &rule("action: replace_all\ntarget_label: b"),
        4,
        17,
        "unknown relabel action \"replace_all\"",
    );
    // empty_scrape_config_action.bad.yml
    bad(
        &rule("action:\ntarget_label: b"),
        4,
        15,
        "relabel action cannot be empty",
    );
    // modulus_missing.bad.yml
    bad(
        &rule("action: hashmod\nsource_labels: [a]\ntarget_label: b"),
        4,
        9,
        "relabel configuration for hashmod requires non-zero modulus",
    );
    bad(
        &rule("action: hashmod\nmodulus: 0\ntarget_label: b"),
        5,
        18,
        "requires non-zero modulus",
    );
    // target_label_missing.bad.yml / target_label_hashmod_missing.bad.yml
    bad(
        &rule("source_labels: [a]\nregex: (.*)"),
        4,
        9,
        "relabel configuration for replace action requires 'target_label' value",
    );
    bad(
        &rule("action: hashmod\nmodulus: 8\nsource_labels: [a]"),
        4,
        9,
        "relabel configuration for hashmod action requires 'target_label' value",
    );
    bad(
        &rule("action: replace\ntarget_label: ''"),
        5,
        23,
        "requires 'target_label' value",
    );
    bad(
        &rule("target_label: l-$1"),
        4,
        23,
        "\"l-$1\" is invalid 'target_label' for replace action",
    );
    bad(
        &rule("target_label: 1abc"),
        4,
        23,
        "\"1abc\" is invalid 'target_label' for replace action",
    );
    bad(
        &rule("target_label: ${}"),
        4,
        23,
        "invalid 'target_label' for replace action",
    );
    bad(
        &rule("action: hashmod\nmodulus: 2\ntarget_label: ${1}"),
        6,
        23,
        "\"${1}\" is invalid 'target_label' for hashmod action",
    );
    // lowercase.bad.yml / uppercase.bad.yml and their replacement variants
    bad(
        &rule("action: lowercase\nsource_labels: [a]"),
        4,
        9,
        "relabel configuration for lowercase action requires 'target_label' value",
    );
    bad(
        &rule("action: uppercase\nsource_labels: [a]"),
        4,
        9,
        "relabel configuration for uppercase action requires 'target_label' value",
    );
    bad(
        &rule("action: lowercase\ntarget_label: ${3}"),
        5,
        23,
        "\"${3}\" is invalid 'target_label' for lowercase action",
    );
    bad(
        &rule("action: lowercase\ntarget_label: b\nreplacement: x"),
        6,
        22,
        "'replacement' can not be set for lowercase action",
    );
    bad(
        &rule("action: uppercase\ntarget_label: b\nreplacement: x"),
        6,
        22,
        "'replacement' can not be set for uppercase action",
    );
    // labelmap.bad.yml (older form)
    bad(
        &rule("action: labelmap\nregex: (.*)\nreplacement: l-$1"),
        6,
        22,
        "\"l-$1\" is invalid 'replacement' for labelmap action",
    );
    // keepequal.bad.yml / dropequal.bad.yml
    bad(
        &rule("action: keepequal\nsource_labels: [a]"),
        4,
        9,
        "relabel configuration for keepequal action requires 'target_label' value",
    );
    bad(
        &rule("action: dropequal\nsource_labels: [a]"),
        4,
        9,
        "relabel configuration for dropequal action requires 'target_label' value",
    );
    // keepequal1.bad.yml / dropequal1.bad.yml: any regex, even the default.
    bad(
        &rule("source_labels: [abcdef]\naction: dropequal\nregex: foo\ntarget_label: bar"),
        6,
        16,
        "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
    );
    bad(
        &rule("action: keepequal\ntarget_label: b\nregex: (.*)"),
        6,
        16,
        "keepequal action requires only",
    );
    bad(
        &rule("action: keepequal\ntarget_label: b\nseparator: ','"),
        6,
        20,
        "keepequal action requires only",
    );
    bad(
        &rule("action: keepequal\ntarget_label: b\nmodulus: 3"),
        6,
        18,
        "keepequal action requires only",
    );
    // labelkeep*.bad.yml / labeldrop*.bad.yml: one case per offending field.
    bad(
        &rule("source_labels: [a]\naction: labelkeep"),
        4,
        24,
        "labelkeep action requires only 'regex', and no other fields",
    );
    bad(
        &rule("modulus: 8\naction: labelkeep"),
        4,
        18,
        "labelkeep action requires only 'regex', and no other fields",
    );
    bad(
        &rule("target_label: x\naction: labelkeep"),
        4,
        23,
        "labelkeep action requires only",
    );
    bad(
        &rule("separator: ','\naction: labeldrop"),
        4,
        20,
        "labeldrop action requires only 'regex', and no other fields",
    );
    bad(
        &rule("replacement: yolo-$1\naction: labeldrop"),
        4,
        22,
        "labeldrop action requires only",
    );
    bad(
        &rule("source_labels: []\naction: labeldrop"),
        4,
        24,
        "labeldrop action requires only",
    );
    bad(
        &rule("action: drop\nbogus: 1"),
        5,
        9,
        "unknown field \"bogus\"",
    );
    bad(
        &rule("modulus: many\naction: hashmod"),
        4,
        18,
        "non-negative integer",
    );
}

#[test]
fn relabel_rules_that_prometheus_accepts() {
    let ok = [
        // A labelkeep with the default separator and replacement spelled out.
        "action: labelkeep\nregex: a|b\nseparator: ';'\nreplacement: $1",
        "action: labeldrop\nsource_labels:\nregex: x",
        "action: keepequal\nsource_labels: [a]\ntarget_label: b\nseparator: ';'",
        "action: uppercase\nsource_labels: [a]\ntarget_label: b\nreplacement: $1",
        "action: labelmap\nregex: __meta_kubernetes_pod_label_(strimzi_io_.+)\nreplacement: $1",
        "target_label: ${1}\nsource_labels: [a]\nregex: some-([^-]+)-([^,]+)",
        "target_label: x_${1}_y\nsource_labels: [a]",
        "action: DROP\nsource_labels: [a]",
        "action: hashmod\nmodulus: 1\ntarget_label: __tmp",
    ];
    for body in ok {
        let c = load(&rule(body));
        assert_eq!(c.scrape_configs[0].relabel_configs.len(), 1, "{body}");
    }
    // A regex of exactly the default is the default rule.
    let c = load(&rule("target_label: t\nregex: (.*)"));
    let expected = RelabelConfig {
        target_label: "t".into(),
        ..RelabelConfig::default()
    };
    assert_eq!(c.scrape_configs[0].relabel_configs[0], expected);
}

#[test]
fn positions_count_characters_not_bytes() {
    bad(
        "# é€ comment\nscrape_configs:\n  - job_name: \"é\"\n    scheme: ftp\n",
        4,
        13,
        "invalid scheme",
    );
    bad(
        "global:\n  external_labels: {u: 1, é-x: 2}\n",
        2,
        27,
        "\"é-x\" is not a valid label name",
    );
}

#[test]
fn read_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yml");
    let e = load_file(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().starts_with(&missing.display().to_string()),
        "{e}"
    );

    let p = dir.path().join("prometheus.yml");
    std::fs::write(&p, "scrape_configs:\n  - job_name: a\n    scheme: gopher\n").unwrap();
    let e = load_file(&p).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3:13: invalid scheme \"gopher\": must be \"http\" or \"https\"",
            p.display()
        )
    );
    std::fs::write(&p, "scrape_configs:\n  - job_name: a\n").unwrap();
    let c = load_file(&p).unwrap();
    assert_eq!(c.scrape_configs[0].job_name, "a");
}

#[test]
fn environment_is_read_by_load_str() {
    // PATH is set in any test environment; an unset variable expands to "".
    let c = load_str(
        "global:\n  external_labels:\n    p: ${PATH}\n    u: \"[${PHAROS_SURELY_UNSET_VAR}]\"\n",
        "x.yml",
    )
    .unwrap();
    assert_eq!(
        c.global.external_labels.get("p"),
        std::env::var("PATH").ok().as_deref()
    );
    assert_eq!(c.global.external_labels.get("u"), Some("[]"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = load_str(&s, "fuzz.yml");
    }

    #[test]
    fn yaml_shaped_text_never_panics(
        lines in proptest::collection::vec(
            proptest::sample::select(vec![
                "global:", "  scrape_interval: 1m", "  scrape_timeout: 2m", "  external_labels:",
                "    a: b", "    a-b: c", "scrape_configs:", "  - job_name: x", "  - job_name: x",
                "    static_configs:", "      - targets: [a:1, 'http://b']", "    relabel_configs:",
                "      - action: hashmod", "        modulus: 0", "        regex: ((", "      -",
                "        target_label: $1", "  -", "rule_files: ['*/x']", "    scheme: ftp", "- a",
                "  ? complex", "&a x: *a", "<<: {a: 1}", "'", "{", "[", "\t", "---",
            ]),
            0..14,
        )
    ) {
        let text = lines.join("\n");
        if let Err(e) = load_str(&text, "fuzz.yml") {
            let msg = e.to_string();
            proptest::prop_assert!(msg.starts_with("fuzz.yml"));
            proptest::prop_assert!(!msg.contains('\n'));
        }
    }
}

#[test]
fn alias_bombs_are_rejected_quickly() {
    // Inside a key whose value is skipped whole, so the parser itself must
    // refuse to replay 10^12 aliased nodes.
    let mut s = String::from("remote_write:\n  - &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        s.push_str(&format!(
            "  - &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let started = std::time::Instant::now();
    let e = load_with_env(&s, "p.yml", &env).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{e}");
    assert!(e.to_string().contains("YAML too large"), "{e}");
}

#[test]
fn discovery_configs_load_with_defaults() {
    let c = load(
        "global:\n  target_limit: 7\nscrape_configs:\n  - job_name: a\n    keep_dropped_targets: 3\n    file_sd_configs:\n      - files: [t/*.json, x.yml]\n      - files: [y.yaml]\n        refresh_interval: 10s\n    http_sd_configs:\n      - url: http://localhost:8080/sd\n    dns_sd_configs:\n      - names: [_x._tcp.example.org]\n      - names: [db.example.org]\n        type: A\n        port: 9100\n        refresh_interval: 5s\n",
    );
    let j = &c.scrape_configs[0];
    assert_eq!(j.target_limit, 7);
    assert_eq!(j.keep_dropped_targets, 3);
    assert_eq!(
        j.file_sd_configs,
        vec![
            FileSdConfig {
                files: vec!["t/*.json".into(), "x.yml".into()],
                refresh_interval: S(300),
            },
            FileSdConfig {
                files: vec!["y.yaml".into()],
                refresh_interval: S(10),
            },
        ]
    );
    assert_eq!(
        j.http_sd_configs,
        vec![HttpSdConfig {
            url: "http://localhost:8080/sd".into(),
            refresh_interval: S(60),
            http_client: HttpClientConfig::default(),
        }]
    );
    assert_eq!(
        j.dns_sd_configs,
        vec![
            DnsSdConfig {
                names: vec!["_x._tcp.example.org".into()],
                record_type: DnsRecordType::Srv,
                port: 0,
                refresh_interval: S(30),
            },
            DnsSdConfig {
                names: vec!["db.example.org".into()],
                record_type: DnsRecordType::A,
                port: 9100,
                refresh_interval: S(5),
            },
        ]
    );
}

#[test]
fn discovery_config_errors_are_positioned() {
    let job = |body: &str| format!("scrape_configs:\n  - job_name: a\n{body}");
    bad(
        &job("    file_sd_configs:\n      - files: [a.txt]\n"),
        4,
        17,
        "path name \"a.txt\" is not valid for file discovery",
    );
    bad(
        &job("    file_sd_configs:\n      - refresh_interval: 1m\n"),
        4,
        9,
        "file service discovery config must contain at least one path name",
    );
    bad(
        &job("    file_sd_configs:\n      - ~\n"),
        4,
        9,
        "empty or null section in file_sd_configs",
    );
    bad(
        &job("    http_sd_configs:\n      - refresh_interval: 1m\n"),
        4,
        9,
        "URL is missing",
    );
    bad(
        &job("    http_sd_configs:\n      - url: ftp://x/y\n"),
        4,
        14,
        "URL scheme must be 'http' or 'https'",
    );
    bad(
        &job("    http_sd_configs:\n      - url: http:///y\n"),
        4,
        14,
        "host is missing in URL",
    );
    bad(
        &job("    dns_sd_configs:\n      - names: [a]\n        type: TXT\n"),
        5,
        15,
        "invalid DNS-SD records type TXT",
    );
    bad(
        &job("    dns_sd_configs:\n      - names: [a]\n        type: A\n"),
        4,
        9,
        "a port is required in DNS-SD configs for all record types except SRV",
    );
    bad(
        &job("    dns_sd_configs:\n      - type: A\n"),
        4,
        9,
        "DNS-SD config must contain at least one SRV record name",
    );
}

#[test]
fn file_sd_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("prometheus.yml");
    std::fs::write(
        &p,
        "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: [t/*.json, /abs/x.yml]\n",
    )
    .unwrap();
    let c = load_file(&p).unwrap();
    assert_eq!(
        c.scrape_configs[0].file_sd_configs[0].files,
        vec![
            dir.path().join("t/*.json").display().to_string(),
            "/abs/x.yml".to_string()
        ]
    );
}

#[test]
fn http_client_settings_load() {
    let c = load(
        "scrape_configs:
  - job_name: a
    scheme: https
    follow_redirects: false
    enable_http2: false
    proxy_url: http://proxy:3128
    basic_auth:
      username: u
      password_file: /run/secret
    tls_config:
      ca_file: /ca.pem
      cert_file: /c.pem
      key_file: /k.pem
      server_name: node.example
      insecure_skip_verify: true
      min_version: TLS13
    http_headers:
      X-Team:
        values: [a, b]
        files: [/h]
  - job_name: b
    bearer_token: tok
  - job_name: c
    authorization:
      type: Token
      credentials_file: /t
    http_sd_configs:
      - url: https://sd.example/targets
        basic_auth: {username: x, password: y}
",
    );
    let a = &c.scrape_configs[0].http_client;
    assert!(!a.follow_redirects && !a.enable_http2);
    assert_eq!(a.proxy_url.as_deref(), Some("http://proxy:3128"));
    assert_eq!(
        a.basic_auth,
        Some(BasicAuth {
            username: "u".into(),
            password_file: Some("/run/secret".into()),
            ..BasicAuth::default()
        })
    );
    assert_eq!(
        a.tls_config,
        TlsConfig {
            ca_file: Some("/ca.pem".into()),
            cert_file: Some("/c.pem".into()),
            key_file: Some("/k.pem".into()),
            server_name: Some("node.example".into()),
            insecure_skip_verify: true,
            min_version: Some(TlsVersion::Tls13),
            ..TlsConfig::default()
        }
    );
    assert_eq!(a.http_headers["X-Team"].values, vec!["a", "b"]);
    assert_eq!(a.http_headers["X-Team"].files, vec!["/h"]);
    let b = &c.scrape_configs[1].http_client;
    assert_eq!(
        b.authorization,
        Some(Authorization {
            auth_type: "Bearer".into(),
            credentials: "tok".into(),
            credentials_file: None
        })
    );
    assert!(b.follow_redirects && b.enable_http2);
    let cc = &c.scrape_configs[2];
    assert_eq!(
        cc.http_client.authorization.as_ref().unwrap().auth_type,
        "Token"
    );
    assert_eq!(
        cc.http_sd_configs[0]
            .http_client
            .basic_auth
            .as_ref()
            .unwrap()
            .password,
        "y"
    );
}

#[test]
fn http_client_errors_match_prometheus() {
    let job = |body: &str| format!("scrape_configs:\n  - job_name: a\n{body}");
    bad(
        &job("    bearer_token: 1234\n    bearer_token_file: somefile\n"),
        4,
        24,
        "at most one of bearer_token & bearer_token_file must be configured",
    );
    bad(
        &job("    bearer_token: 1234\n    basic_auth:\n      username: u\n"),
        5,
        7,
        "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
    );
    bad(
        &job("    basic_auth:\n      username: u\n      password: p\n      password_file: f\n"),
        6,
        22,
        "at most one of basic_auth password, password_file & password_ref must be configured",
    );
    bad(
        &job("    authorization:\n      type: Basic\n"),
        4,
        13,
        "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
    );
    bad(
        &job("    authorization:\n      credentials: c\n      credentials_file: f\n"),
        5,
        25,
        "at most one of authorization credentials & credentials_file must be configured",
    );
    bad(
        &job("    basic_auth:\n      username: u\n    authorization:\n      credentials: c\n"),
        6,
        7,
        "at most one of basic_auth, oauth2 & authorization must be configured",
    );
    bad(
        &job("    tls_config:\n      cert_file: c\n"),
        4,
        7,
        "exactly one of key or key_file must be configured when a client certificate is configured",
    );
    bad(
        &job("    tls_config:\n      key_file: k\n"),
        4,
        7,
        "exactly one of cert or cert_file must be configured when a client key is configured",
    );
    bad(
        &job("    tls_config:\n      min_version: TLS14\n"),
        4,
        20,
        "unknown TLS version: TLS14",
    );
    bad(
        &job("    http_headers:\n      authorization:\n        values: [x]\n"),
        4,
        7,
        "setting header \"Authorization\" is not allowed",
    );
    bad(
        &job("    no_proxy: example.org\n"),
        3,
        15,
        "if no_proxy is configured, proxy_url must also be configured",
    );
    bad(
        &job("    oauth2:\n      client_id: x\n"),
        4,
        7,
        "oauth2 is not supported yet",
    );
    bad(
        &job(
            "    http_sd_configs:\n      - url: http://foo\n        bearer_token: foo\n        bearer_token_file: foo\n",
        ),
        6,
        28,
        "at most one of bearer_token & bearer_token_file must be configured",
    );
}

#[test]
fn scrape_config_files_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("prometheus.yml");
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    std::fs::write(
        &main,
        "global:\n  scrape_interval: 7s\nscrape_config_files: ['jobs/*.yml']\nscrape_configs:\n  - job_name: main\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("jobs/a.yml"),
        "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: [t.json]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("jobs/b.yml"),
        "scrape_configs:\n  - job_name: b\n    scrape_interval: 3s\n",
    )
    .unwrap();
    let c = load_file(&main).unwrap();
    let names: Vec<&str> = c
        .scrape_configs
        .iter()
        .map(|j| j.job_name.as_str())
        .collect();
    assert_eq!(names, ["main", "a", "b"]);
    assert_eq!(c.scrape_configs[1].scrape_interval, S(7));
    assert_eq!(c.scrape_configs[2].scrape_interval, S(3));
    assert_eq!(
        c.scrape_configs[1].file_sd_configs[0].files,
        vec![dir.path().join("jobs/t.json").display().to_string()]
    );
    assert_eq!(c.scrape_config_file_paths().len(), 2);

    // A duplicate job names both places; a bad job is positioned in its file.
    std::fs::write(
        dir.path().join("jobs/c.yml"),
        "scrape_configs:\n  - job_name: main\n",
    )
    .unwrap();
    let e = load_file(&main).unwrap_err().to_string();
    let c_file = dir.path().join("jobs/c.yml").display().to_string();
    assert_eq!(
        e,
        format!(
            "{c_file}:2:15: found multiple scrape configs with job name \"main\", first found in main config file"
        )
    );
    std::fs::write(
        dir.path().join("jobs/c.yml"),
        "scrape_configs:\n  - job_name: c\n    scrape_timeout: 1h\n",
    )
    .unwrap();
    let e = load_file(&main).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{c_file}:3:21: scrape timeout greater than scrape interval"
        )),
        "{e}"
    );
    std::fs::write(dir.path().join("jobs/c.yml"), "global: {}\n").unwrap();
    let e = load_file(&main).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{c_file}:1:1: unknown field \"global\"")),
        "{e}"
    );
}

#[test]
fn scrape_config_file_patterns_are_checked() {
    bad(
        "scrape_config_files: ['a/*/b.yml']\n",
        1,
        23,
        "invalid scrape config file path \"a/*/b.yml\"",
    );
}

#[test]
fn kubernetes_sd_configs_load() {
    let c = load(
        "scrape_configs:
  - job_name: k
    kubernetes_sd_configs:
      - role: endpoints
        api_server: https://10.0.0.1:6443
        namespaces:
          names: [default, kube-system]
        selectors:
          - role: pod
            label: app=web
          - role: service
            field: metadata.name=api
        bearer_token_file: /var/run/token
        tls_config:
          ca_file: /ca.crt
      - role: pod
        kubeconfig_file: /home/k/.kube/config
        attach_metadata: {node: true}
      - role: node
        attach_metadata: {namespace: true}
",
    );
    let k = &c.scrape_configs[0].kubernetes_sd_configs;
    assert_eq!(k.len(), 3);
    assert_eq!(k[0].role, KubernetesRole::Endpoints);
    assert_eq!(k[0].api_server.as_deref(), Some("https://10.0.0.1:6443"));
    assert_eq!(k[0].namespaces, vec!["default", "kube-system"]);
    assert_eq!(
        k[0].selectors,
        vec![
            KubernetesSelector {
                role: KubernetesRole::Pod,
                label: "app=web".into(),
                field: String::new()
            },
            KubernetesSelector {
                role: KubernetesRole::Service,
                label: String::new(),
                field: "metadata.name=api".into()
            },
        ]
    );
    assert_eq!(
        k[0].http_client
            .authorization
            .as_ref()
            .unwrap()
            .credentials_file
            .as_deref(),
        Some("/var/run/token")
    );
    assert_eq!(
        k[1].kubeconfig_file.as_deref(),
        Some("/home/k/.kube/config")
    );
    assert!(k[1].attach_metadata_node);
    assert!(!k[1].attach_metadata_namespace);
    assert!(k[2].attach_metadata_namespace && !k[2].attach_metadata_node);
    assert_eq!(k[2].role, KubernetesRole::Node);
    assert!(k[2].api_server.is_none() && k[2].kubeconfig_file.is_none());
}

#[test]
fn kubernetes_sd_config_errors_match_prometheus() {
    let job = |body: &str| {
        format!("scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs:\n{body}")
    };
    bad(
        &job("      - api_server: http://x\n"),
        4,
        9,
        "role missing (one of: pod, service, endpoints, endpointslice, node, ingress)",
    );
    bad(
        &job("      - role: deployment\n"),
        4,
        15,
        "unknown Kubernetes SD role \"deployment\"",
    );
    bad(
        &job("      - role: pod\n        api_server: http://x\n        kubeconfig_file: /k\n"),
        6,
        26,
        "cannot use 'kubeconfig_file' and 'api_server' simultaneously",
    );
    bad(
        &job("      - role: pod\n        kubeconfig_file: /k\n        basic_auth: {username: u}\n"),
        5,
        26,
        "cannot use a custom HTTP client configuration together with 'kubeconfig_file'",
    );
    bad(
        &job("      - role: pod\n        bearer_token: t\n"),
        4,
        9,
        "to use custom HTTP client configuration please provide the 'api_server' URL explicitly",
    );
    bad(
        &job(
            "      - role: pod\n        api_server: http://x\n        namespaces: {own_namespace: true}\n",
        ),
        6,
        21,
        "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously",
    );
    bad(
        &job("      - role: node\n        selectors:\n          - role: pod\n"),
        6,
        19,
        "node role supports only node selectors",
    );
    bad(
        &job(
            "      - role: endpoints\n        selectors:\n          - role: pod\n          - role: pod\n",
        ),
        7,
        19,
        "duplicated selector role: pod",
    );
    bad(
        &job(
            "      - role: pod\n        api_server: http://x\n        authorization: {credentials: a}\n        basic_auth: {username: u}\n",
        ),
        6,
        24,
        "at most one of basic_auth, oauth2 & authorization must be configured",
    );
}

#[test]
fn storage_tsdb_retention() {
    let c = load_with_env(
        "storage:\n  tsdb:\n    retention:\n      time: 30d\n      size: 512MB\n",
        "p.yml",
        &env,
    )
    .unwrap();
    assert_eq!(
        c.storage.retention_time.map(|d| d.millis()),
        Some(30 * 86_400_000)
    );
    assert_eq!(c.storage.retention_size, Some(512 << 20));
    let c = load_with_env("storage:\n  tsdb: {}\n", "p.yml", &env).unwrap();
    assert_eq!(c.storage, crate::StorageConfig::default());
    bad(
        "storage:\n  tsdb:\n    retention:\n      time: forever\n",
        4,
        13,
        "",
    );
    bad(
        "storage:\n  tsdb:\n    retention:\n      size: 12XB\n",
        4,
        13,
        "",
    );
    bad("storage:\n  exemplars:\n    max_size: 10\n", 3, 5, "");
}

#[test]
fn exemplar_storage_size() {
    assert_eq!(load("").storage.max_exemplars, None);
    assert_eq!(
        load("storage:\n  exemplars: {}\n").storage.max_exemplars,
        None
    );
    let c = load("storage:\n  exemplars:\n    max_exemplars: 10\n");
    assert_eq!(c.storage.max_exemplars, Some(10));
    let c = load("storage:\n  exemplars:\n    max_exemplars: -1\n");
    assert_eq!(c.storage.max_exemplars, Some(-1));
}

#[test]
fn enable_compression_can_be_turned_off() {
    let c =
        load("scrape_configs:\n  - job_name: a\n    enable_compression: false\n  - job_name: b\n");
    assert!(!c.scrape_configs[0].enable_compression);
    assert!(c.scrape_configs[1].enable_compression);
}

#[test]
fn classic_histogram_conversion_switches() {
    let c = load("scrape_configs:\n  - job_name: a\n");
    let j = &c.scrape_configs[0];
    assert!(!c.global.convert_classic_histograms_to_nhcb);
    assert!(!c.global.always_scrape_classic_histograms);
    assert!(!j.convert_classic_histograms_to_nhcb && !j.always_scrape_classic_histograms);

    // Jobs inherit the globals unless they set their own.
    let c = load(
        "global:\n  convert_classic_histograms_to_nhcb: true\n  always_scrape_classic_histograms: true\n\
         scrape_configs:\n  - job_name: a\n  - job_name: b\n    convert_classic_histograms_to_nhcb: false\n\
         \x20 - job_name: c\n    always_scrape_classic_histograms: false\n",
    );
    assert!(c.global.convert_classic_histograms_to_nhcb);
    assert!(c.global.always_scrape_classic_histograms);
    let s: Vec<(bool, bool)> = c
        .scrape_configs
        .iter()
        .map(|j| {
            (
                j.convert_classic_histograms_to_nhcb,
                j.always_scrape_classic_histograms,
            )
        })
        .collect();
    assert_eq!(s, vec![(true, true), (false, true), (true, false)]);

    let c =
        load("scrape_configs:\n  - job_name: a\n    convert_classic_histograms_to_nhcb: true\n");
    assert!(c.scrape_configs[0].convert_classic_histograms_to_nhcb);
    assert!(!c.scrape_configs[0].always_scrape_classic_histograms);

    bad(
        "scrape_configs:\n  - job_name: a\n    convert_classic_histograms_to_nhcb: maybe\n",
        3,
        41,
        "",
    );
    bad(
        "global:\n  always_scrape_classic_histograms: 3\n",
        2,
        37,
        "",
    );
}

#[test]
fn native_histogram_scraping_settings() {
    // The job's flag (or the global one) makes the default protocols
    // proto-first; explicit lists, job or global, win.
    let c = load(concat!(
        "global:\n  scrape_native_histograms: true\n",
        "scrape_configs:\n",
        "  - job_name: a\n",
        "    native_histogram_bucket_limit: 160\n",
        "    native_histogram_min_bucket_factor: 1.1\n",
        "  - job_name: b\n",
        "    scrape_native_histograms: false\n",
        "  - job_name: c\n",
        "    scrape_protocols: [PrometheusText0.0.4]\n",
    ));
    let a = &c.scrape_configs[0];
    assert!(a.scrape_native_histograms);
    assert_eq!(a.native_histogram_bucket_limit, 160);
    assert_eq!(a.native_histogram_min_bucket_factor, 1.1);
    assert_eq!(
        a.scrape_protocols,
        DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS.to_vec()
    );
    let b = &c.scrape_configs[1];
    assert!(!b.scrape_native_histograms);
    assert_eq!(b.scrape_protocols, DEFAULT_SCRAPE_PROTOCOLS.to_vec());
    assert_eq!(b.native_histogram_bucket_limit, 0);
    assert_eq!(
        c.scrape_configs[2].scrape_protocols,
        ["PrometheusText0.0.4"]
    );

    let c = load(concat!(
        "global:\n  scrape_protocols: [OpenMetricsText1.0.0]\n",
        "scrape_configs:\n  - job_name: a\n    scrape_native_histograms: true\n",
    ));
    assert_eq!(
        c.scrape_configs[0].scrape_protocols,
        ["OpenMetricsText1.0.0"]
    );
    let c = load("scrape_configs:\n  - job_name: a\n");
    assert!(!c.scrape_configs[0].scrape_native_histograms);
}
