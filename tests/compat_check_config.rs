//! `pharos check config` against Prometheus's verdicts on the cases of its
//! own `config/testdata` directory that use only what pharos implements
//! (static, file, HTTP and DNS discovery, HTTP client settings, relabeling,
//! limits, `scrape_config_files`). The files here are our own, written to
//! cover the same situations (names and values differ).
//!
//! Each case says whether Prometheus accepts it (the testdata's `.good` /
//! `.bad`) and from which Prometheus version the feature exists. pharos must
//! give that verdict, and a rejection must name the problem (`needle`).
//! When the installed `promtool` (Debian's, 2.42 at the time of writing) is
//! at least that version, `promtool check config --syntax-only` must agree
//! too; older promtools are not asked about features they predate.
//!
//! The test prints the agreement counts; `promtool` missing skips only the
//! promtool half.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

struct Case {
    /// The testdata file this mirrors.
    name: &'static str,
    /// `prometheus.yml`.
    main: &'static str,
    /// Other files (relative path, content).
    aux: &'static [(&'static str, &'static str)],
    /// Prometheus's verdict.
    valid: bool,
    /// Text pharos's error must contain when invalid.
    needle: &'static str,
    /// The first Prometheus version (major, minor) with the feature.
    since: (u32, u32),
}

const JOB_A: &str = "scrape_configs:\n  - job_name: alpha\n    static_configs:\n      - targets: ['127.0.0.1:9999']\n";
const JOB_B: &str = "scrape_configs:\n  - job_name: beta\n    static_configs:\n      - targets: ['127.0.0.1:9998']\n";

const CASES: &[Case] = &[
    Case {
        name: "bearertoken.bad",
        main: "scrape_configs:\n  - job_name: web\n    bearer_token: abc\n    bearer_token_file: /tmp/tok\n",
        aux: &[],
        valid: false,
        needle: "at most one of bearer_token & bearer_token_file must be configured",
        since: (2, 0),
    },
    Case {
        name: "bearertoken_basicauth.bad",
        main: "scrape_configs:\n  - job_name: web\n    bearer_token: abc\n    basic_auth:\n      username: u\n      password: p\n",
        aux: &[],
        valid: false,
        needle: "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
        since: (2, 0),
    },
    Case {
        name: "http_token_file.bad",
        main: "scrape_configs:\n  - job_name: sd\n    http_sd_configs:\n      - url: http://sd.local/targets\n        bearer_token: t\n        bearer_token_file: /tmp/t\n",
        aux: &[],
        valid: false,
        needle: "at most one of bearer_token & bearer_token_file must be configured",
        // http_sd_configs' HTTP client settings are validated since 2.48.
        since: (2, 48),
    },
    Case {
        name: "http_url_bad_scheme.bad",
        main: "scrape_configs:\n  - job_name: sd\n    http_sd_configs:\n      - url: gopher://sd.local/x\n",
        aux: &[],
        valid: false,
        needle: "URL scheme must be 'http' or 'https'",
        since: (2, 28),
    },
    Case {
        name: "http_url_no_host.bad",
        main: "scrape_configs:\n  - job_name: sd\n    http_sd_configs:\n      - url: https://\n",
        aux: &[],
        valid: false,
        needle: "host is missing in URL",
        since: (2, 28),
    },
    Case {
        name: "http_url_no_scheme.bad",
        main: "scrape_configs:\n  - job_name: sd\n    http_sd_configs:\n      - url: sd.local\n",
        aux: &[],
        valid: false,
        needle: "URL scheme must be 'http' or 'https'",
        since: (2, 28),
    },
    Case {
        name: "dropequal.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - source_labels: [x]\n        action: dropequal\n",
        aux: &[],
        valid: false,
        needle: "requires 'target_label' value",
        since: (2, 41),
    },
    Case {
        name: "dropequal1.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - source_labels: [x]\n        action: dropequal\n        regex: y\n        target_label: z\n",
        aux: &[],
        valid: false,
        needle: "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
        since: (2, 41),
    },
    Case {
        name: "keepequal.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - source_labels: [x]\n        action: keepequal\n",
        aux: &[],
        valid: false,
        needle: "requires 'target_label' value",
        since: (2, 41),
    },
    Case {
        name: "empty_metric_relabel_config.bad",
        main: "scrape_configs:\n  - job_name: r\n    metric_relabel_configs:\n      -\n",
        aux: &[],
        valid: false,
        needle: "empty or null metric relabeling rule in scrape config",
        since: (2, 0),
    },
    Case {
        name: "empty_target_relabel_config.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - ~\n",
        aux: &[],
        valid: false,
        needle: "empty or null target relabeling rule in scrape config",
        since: (2, 0),
    },
    Case {
        name: "empty_scrape_config.bad",
        main: "scrape_configs:\n  - ~\n",
        aux: &[],
        valid: false,
        needle: "empty or null scrape config section",
        since: (2, 0),
    },
    Case {
        name: "empty_scrape_config_action.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - action: ~\n",
        aux: &[],
        valid: false,
        needle: "relabel action cannot be empty",
        since: (2, 0),
    },
    Case {
        name: "empty_static_config.bad",
        main: "scrape_configs:\n  - job_name: s\n    static_configs:\n      - ~\n",
        aux: &[],
        valid: false,
        needle: "empty or null section in static_configs",
        since: (2, 0),
    },
    Case {
        name: "external_labels.good",
        main: "global:\n  external_labels:\n    site: a\n    env: ${PHAROS_UNSET_VAR}\n    mix: x${PHAROS_UNSET_VAR}y\n    lit: z$${PHAROS_UNSET_VAR}\n    dollar: a$$b\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 27),
    },
    Case {
        name: "global_timeout.good",
        main: "global:\n  scrape_timeout: 2h\n  scrape_interval: 2h\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 0),
    },
    Case {
        name: "jobname.bad",
        main: "scrape_configs:\n  - job_name:\n",
        aux: &[],
        valid: false,
        needle: "job_name is empty",
        since: (2, 0),
    },
    Case {
        name: "jobname_dup.bad",
        main: "scrape_configs:\n  - job_name: twice\n  - job_name: twice\n",
        aux: &[],
        valid: false,
        needle: "found multiple scrape configs with job name \"twice\"",
        since: (2, 0),
    },
    Case {
        name: "labeldrop.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - source_labels: [x]\n        action: labeldrop\n",
        aux: &[],
        valid: false,
        needle: "labeldrop action requires only 'regex', and no other fields",
        since: (2, 0),
    },
    Case {
        name: "labeldrop2.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - modulus: 3\n        action: labeldrop\n",
        aux: &[],
        valid: false,
        needle: "labeldrop action requires only 'regex', and no other fields",
        since: (2, 0),
    },
    Case {
        name: "labeldrop3.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - separator: '|'\n        action: labeldrop\n",
        aux: &[],
        valid: false,
        needle: "labeldrop action requires only 'regex', and no other fields",
        since: (2, 0),
    },
    Case {
        name: "labeldrop4.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - replacement: x-$1\n        action: labeldrop\n",
        aux: &[],
        valid: false,
        needle: "labeldrop action requires only 'regex', and no other fields",
        since: (2, 0),
    },
    Case {
        name: "labeldrop5.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - target_label: t\n        action: labeldrop\n",
        aux: &[],
        valid: false,
        needle: "labeldrop action requires only 'regex', and no other fields",
        since: (2, 0),
    },
    Case {
        name: "labelkeep5.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - target_label: t\n        action: labelkeep\n",
        aux: &[],
        valid: false,
        needle: "labelkeep action requires only 'regex', and no other fields",
        since: (2, 0),
    },
    Case {
        name: "labelmap.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - action: labelmap\n        replacement: 'l-$1'\n",
        aux: &[],
        valid: false,
        needle: "is invalid 'replacement' for labelmap action",
        since: (2, 0),
    },
    Case {
        name: "labelname.bad",
        main: "global:\n  external_labels:\n    'not-a-name': v\n",
        aux: &[],
        valid: false,
        needle: "is not a valid label name",
        since: (2, 0),
    },
    Case {
        name: "lowercase3.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - action: lowercase\n        source_labels: [a]\n        target_label: a\n        replacement: b\n",
        aux: &[],
        valid: false,
        needle: "'replacement' can not be set for lowercase action",
        since: (2, 36),
    },
    Case {
        name: "uppercase3.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - action: uppercase\n        source_labels: [a]\n        target_label: a\n        replacement: b\n",
        aux: &[],
        valid: false,
        needle: "'replacement' can not be set for uppercase action",
        since: (2, 36),
    },
    Case {
        name: "modulus_missing.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - regex: x\n        action: hashmod\n",
        aux: &[],
        valid: false,
        needle: "relabel configuration for hashmod requires non-zero modulus",
        since: (2, 0),
    },
    Case {
        name: "regex.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - regex: 'a(b'\n",
        aux: &[],
        valid: false,
        needle: "error parsing regexp",
        since: (2, 0),
    },
    Case {
        name: "rules.bad",
        main: "rule_files:\n  - 'ok.yml'\n  - 'dir/*/bad.yml'\n",
        aux: &[],
        valid: false,
        needle: "invalid rule file path",
        since: (2, 0),
    },
    Case {
        name: "scrape_body_size_limit.bad",
        main: "scrape_configs:\n  - job_name: b\n    body_size_limit: 250\n",
        aux: &[],
        valid: false,
        needle: "unit",
        since: (2, 28),
    },
    Case {
        name: "scrape_interval.bad",
        main: "scrape_configs:\n  - job_name: i\n    scrape_interval: 10s\n    scrape_timeout: 11s\n",
        aux: &[],
        valid: false,
        needle: "scrape timeout greater than scrape interval",
        since: (2, 0),
    },
    Case {
        name: "scrape_interval_larger.good",
        main: "global:\n  scrape_interval: 20s\n  scrape_timeout: 20s\nscrape_configs:\n  - job_name: d\n    scrape_interval: 4s\n    dns_sd_configs:\n      - refresh_interval: 20s\n        names: [one.example.org, two.example.org]\n      - names: [one.example.org]\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 0),
    },
    Case {
        name: "section_key_dup.bad",
        main: "scrape_configs:\n  - job_name: a\nscrape_configs:\n  - job_name: b\n",
        aux: &[],
        valid: false,
        needle: "duplicate key",
        since: (2, 0),
    },
    Case {
        name: "target_label_hashmod_missing.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - source_labels: [a]\n        modulus: 4\n        action: hashmod\n",
        aux: &[],
        valid: false,
        needle: "relabel configuration for hashmod action requires 'target_label' value",
        since: (2, 0),
    },
    Case {
        name: "target_label_missing.bad",
        main: "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - regex: x\n",
        aux: &[],
        valid: false,
        needle: "relabel configuration for replace action requires 'target_label' value",
        since: (2, 0),
    },
    Case {
        name: "unknown_attr.bad",
        main: "scrape_configs:\n  - job_name: u\n    consult_sd_configs:\n      - server: 'localhost:1'\n",
        aux: &[],
        valid: false,
        needle: "unknown field \"consult_sd_configs\"",
        since: (2, 0),
    },
    Case {
        name: "unknown_global_attr.bad",
        main: "global:\n  no_such_field: 1\n",
        aux: &[],
        valid: false,
        needle: "unknown field \"no_such_field\"",
        since: (2, 0),
    },
    Case {
        name: "url_in_targetgroup.bad",
        main: "scrape_configs:\n  - job_name: u\n    static_configs:\n      - targets: ['https://host.example']\n",
        aux: &[],
        valid: false,
        needle: "is not a valid hostname",
        since: (2, 0),
    },
    Case {
        name: "empty global (otlp_empty)",
        main: "global:\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 0),
    },
    Case {
        name: "scrape_config_default_validation_mode",
        main: "scrape_configs:\n  - job_name: plain\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 0),
    },
    Case {
        name: "agent_mode.with_rule_files",
        main: "rule_files:\n  - 'a.rules'\n  - 'dir/*.rules'\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 0),
    },
    Case {
        name: "file_sd (conf.good.yml's file_sd_configs)",
        main: "scrape_configs:\n  - job_name: f\n    file_sd_configs:\n      - files: ['targets/*.json', 'more.yml']\n        refresh_interval: 10m\n      - files: ['x.yaml']\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 0),
    },
    Case {
        name: "file_sd bad extension",
        main: "scrape_configs:\n  - job_name: f\n    file_sd_configs:\n      - files: ['targets.txt']\n",
        aux: &[],
        valid: false,
        needle: "is not valid for file discovery",
        since: (2, 0),
    },
    Case {
        name: "dns_sd A without port",
        main: "scrape_configs:\n  - job_name: d\n    dns_sd_configs:\n      - names: [a.example.org]\n        type: A\n",
        aux: &[],
        valid: false,
        needle: "a port is required in DNS-SD configs for all record types except SRV",
        since: (2, 0),
    },
    Case {
        name: "http client settings (conf.good.yml's)",
        main: "scrape_configs:\n  - job_name: h\n    scheme: https\n    basic_auth:\n      username: u\n      password_file: pw\n    tls_config:\n      ca_file: ca.pem\n      cert_file: c.pem\n      key_file: k.pem\n      server_name: n.example\n      insecure_skip_verify: false\n    proxy_url: http://proxy.local:3128\n    follow_redirects: false\n    enable_http2: false\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 0),
    },
    Case {
        name: "authorization type basic",
        main: "scrape_configs:\n  - job_name: h\n    authorization:\n      type: Basic\n      credentials: x\n",
        aux: &[],
        valid: false,
        needle: "authorization type cannot be set to \"basic\"",
        since: (2, 26),
    },
    Case {
        name: "tls cert without key",
        main: "scrape_configs:\n  - job_name: h\n    tls_config:\n      cert_file: c.pem\n",
        aux: &[],
        valid: false,
        needle: "exactly one of key or key_file must be configured when a client certificate is configured",
        since: (2, 0),
    },
    Case {
        name: "target_limit and keep_dropped_targets",
        main: "global:\n  keep_dropped_targets: 5\nscrape_configs:\n  - job_name: l\n    target_limit: 10\n    sample_limit: 100\n    label_limit: 30\n    label_name_length_limit: 200\n    label_value_length_limit: 200\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 45),
    },
    Case {
        name: "scrape_config_disable_compression.good",
        main: "scrape_configs:\n  - job_name: plain\n    enable_compression: false\n    static_configs:\n      - targets: ['127.0.0.1:9997']\n",
        aux: &[],
        valid: true,
        needle: "",
        since: (2, 49),
    },
    Case {
        name: "scrape_config_files_combined.good",
        main: "scrape_config_files:\n  - one.yml\n  - two.yml\nscrape_configs:\n  - job_name: main\n",
        aux: &[("one.yml", JOB_A), ("two.yml", JOB_B)],
        valid: true,
        needle: "",
        since: (2, 43),
    },
    Case {
        name: "scrape_config_files_only.good",
        main: "scrape_config_files:\n  - one.yml\n",
        aux: &[("one.yml", JOB_A)],
        valid: true,
        needle: "",
        since: (2, 43),
    },
    Case {
        name: "scrape_config_files_glob.good",
        main: "scrape_config_files:\n  - jobs/*.yml\n",
        aux: &[("jobs/a.yml", JOB_A), ("jobs/b.yml", JOB_B)],
        valid: true,
        needle: "",
        since: (2, 43),
    },
    Case {
        name: "scrape_config_files_glob.bad",
        main: "scrape_config_files:\n  - jobs/*/*\n",
        aux: &[],
        valid: false,
        needle: "invalid scrape config file path",
        since: (2, 43),
    },
    Case {
        name: "scrape_config_files_double_import.bad",
        main: "scrape_config_files:\n  - one.yml\n  - one.yml\n",
        aux: &[("one.yml", JOB_A)],
        valid: false,
        needle: "found multiple scrape configs with job name \"alpha\"",
        since: (2, 43),
    },
    Case {
        name: "scrape_config_files_duplicate.bad",
        main: "scrape_config_files:\n  - one.yml\nscrape_configs:\n  - job_name: alpha\n",
        aux: &[("one.yml", JOB_A)],
        valid: false,
        needle: "found multiple scrape configs with job name \"alpha\"",
        since: (2, 43),
    },
    Case {
        name: "scrape_config_files_global.bad",
        main: "scrape_config_files:\n  - bad.yml\n",
        aux: &[(
            "bad.yml",
            "scrape_configs:\n  - job_name: t\n    scrape_interval: 5s\n    scrape_timeout: 9s\n",
        )],
        valid: false,
        needle: "scrape timeout greater than scrape interval",
        since: (2, 43),
    },
    Case {
        name: "scrape_config_files_scrape_protocols.bad",
        main: "scrape_configs:\n  - job_name: p\n    scrape_protocols: ['prometheustext0.0.4']\n",
        aux: &[],
        valid: false,
        needle: "unknown scrape protocol",
        since: (2, 49),
    },
    Case {
        name: "scrape_config_files_scrape_protocols2.bad",
        main: "scrape_configs:\n  - job_name: p\n    scrape_protocols: ['PrometheusText0.0.4', 'OpenMetricsText1.0.0', 'PrometheusText0.0.4']\n",
        aux: &[],
        valid: false,
        needle: "duplicated protocol in scrape_protocols",
        since: (2, 49),
    },
    Case {
        name: "scrape_config_files_fallback_scrape_protocol1.bad",
        main: "scrape_configs:\n  - job_name: p\n    fallback_scrape_protocol: 'openmetricstext1.0.0'\n",
        aux: &[],
        valid: false,
        needle: "unknown scrape protocol",
        since: (3, 0),
    },
];

/// `(major, minor)` of the installed promtool, if any.
fn promtool_version() -> Option<(u32, u32)> {
    let out = Command::new("promtool").arg("--version").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let v = text.split("version ").nth(1)?;
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn write_case(dir: &Path, c: &Case) -> std::path::PathBuf {
    for (p, text) in c.aux {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let main = dir.join("prometheus.yml");
    std::fs::write(&main, c.main).unwrap();
    main
}

#[test]
fn check_config_agrees_with_prometheus() {
    let promtool = promtool_version();
    let mut pharos_agree = 0;
    let mut promtool_agree = 0;
    let mut promtool_asked = 0;
    let mut failures = Vec::new();
    for c in CASES {
        let dir = tempfile::tempdir().unwrap();
        let main = write_case(dir.path(), c);
        let out = Command::new(env!("CARGO_BIN_EXE_pharos"))
            .args(["check", "config"])
            .arg(&main)
            .env_remove("PHAROS_UNSET_VAR")
            .output()
            .unwrap();
        let ok = out.status.success();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if ok != c.valid {
            failures.push(format!(
                "{}: pharos says valid={ok}, Prometheus valid={}: {text}",
                c.name, c.valid
            ));
        } else if !c.valid && !text.contains(c.needle) {
            failures.push(format!(
                "{}: pharos's error does not contain {:?}: {text}",
                c.name, c.needle
            ));
        } else {
            pharos_agree += 1;
        }
        if let Some(v) = promtool
            && v >= c.since
        {
            promtool_asked += 1;
            let p = Command::new("promtool")
                .args(["check", "config", "--syntax-only"])
                .arg(&main)
                .current_dir(dir.path())
                .output()
                .unwrap();
            if p.status.success() == ok {
                promtool_agree += 1;
            } else {
                failures.push(format!(
                    "{}: promtool valid={} but pharos valid={ok}: {}{}",
                    c.name,
                    p.status.success(),
                    String::from_utf8_lossy(&p.stdout),
                    String::from_utf8_lossy(&p.stderr)
                ));
            }
        }
    }
    eprintln!(
        "check config: pharos matches Prometheus's verdict on {pharos_agree}/{} cases; \
         promtool {promtool:?} agrees with pharos on {promtool_agree}/{promtool_asked} cases it supports",
        CASES.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
