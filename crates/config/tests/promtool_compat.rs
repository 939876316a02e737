//! Agreement with the real `promtool check config` (Debian package
//! `prometheus`) on which files are valid, for files that use only what
//! pharos implements. Every case is also checked against pharos's own
//! expectation, so the test fails if either side changes its mind.
//!
//! When `promtool` is not installed the promtool half is skipped with a
//! notice; the pharos half always runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `(name, yaml, valid)`.
const CASES: &[(&str, &str, bool)] = &[
    ("empty", "", true),
    (
        "static_targets_and_labels",
        "scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['a:9100', 'b:9100']\n        labels: {env: prod, rack: '7'}\n",
        true,
    ),
    (
        "global_settings",
        "global:\n  scrape_interval: 15s\n  scrape_timeout: 5s\n  evaluation_interval: 30s\n  external_labels:\n    cluster: eu1\nrule_files: ['rules/*.yml']\nscrape_configs:\n  - job_name: a\n    metrics_path: /m\n    scheme: https\n    params: {x: ['1']}\n    honor_labels: true\n    honor_timestamps: false\n    sample_limit: 10\n    body_size_limit: 10MB\n",
        true,
    ),
    (
        "job_interval_below_global_timeout",
        "global:\n  scrape_interval: 15s\n  scrape_timeout: 15s\nscrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n",
        true,
    ),
    (
        "global_timeout_equals_interval",
        "global:\n  scrape_timeout: 1h\n  scrape_interval: 1h\n",
        true,
    ),
    (
        "relabel_rules",
        "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [__address__]\n        regex: '(.+):\\d+'\n        target_label: host\n      - {action: hashmod, source_labels: [host], modulus: 3, target_label: __tmp_h}\n      - {action: keep, source_labels: [__tmp_h], regex: '0'}\n      - {action: labelmap, regex: '__meta_(.+)', replacement: 'm_${1}'}\n      - {action: labeldrop, regex: '__tmp_.*'}\n      - {action: keepequal, source_labels: [a], target_label: b}\n      - {action: lowercase, source_labels: [a], target_label: a_low}\n      - {target_label: '${1}_x', source_labels: [a]}\n      - {regex: , replacement: static, target_label: abc}\n    metric_relabel_configs:\n      - {action: drop, source_labels: [__name__], regex: 'go_.*'}\n",
        true,
    ),
    (
        "url_target_with_relabeling",
        "scrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['http://x/y']}]\n    relabel_configs: [{target_label: __address__, replacement: 'x:1'}]\n",
        true,
    ),
    (
        "duplicate_job",
        "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
        false,
    ),
    (
        "empty_job_name",
        "scrape_configs:\n  - job_name: ''\n",
        false,
    ),
    (
        "job_timeout_above_interval",
        "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 6s\n",
        false,
    ),
    (
        "global_timeout_above_interval",
        "global:\n  scrape_interval: 5s\n  scrape_timeout: 6s\n",
        false,
    ),
    (
        "bad_external_label_name",
        "global:\n  external_labels:\n    not$allowed: v\n",
        false,
    ),
    (
        "bad_static_label_name",
        "scrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['x:1'], labels: {a-b: c}}]\n",
        false,
    ),
    ("bad_duration", "global:\n  scrape_interval: 1x\n", false),
    (
        "bad_regex",
        "scrape_configs:\n  - job_name: a\n    relabel_configs: [{source_labels: [a], regex: 'a(b', target_label: c}]\n",
        false,
    ),
    (
        "hashmod_without_modulus",
        "scrape_configs:\n  - job_name: a\n    relabel_configs: [{action: hashmod, source_labels: [a], target_label: c}]\n",
        false,
    ),
    (
        "replace_without_target",
        "scrape_configs:\n  - job_name: a\n    relabel_configs: [{source_labels: [a]}]\n",
        false,
    ),
    (
        "labelkeep_with_modulus",
        "scrape_configs:\n  - job_name: a\n    relabel_configs: [{action: labelkeep, modulus: 8}]\n",
        false,
    ),
    (
        "dropequal_with_regex",
        "scrape_configs:\n  - job_name: a\n    relabel_configs: [{action: dropequal, source_labels: [a], target_label: b, regex: foo}]\n",
        false,
    ),
    (
        "labelmap_bad_replacement",
        "scrape_configs:\n  - job_name: a\n    relabel_configs: [{action: labelmap, regex: '(.*)', replacement: 'l-$1'}]\n",
        false,
    ),
    (
        "url_in_target",
        "scrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['http://bad']}]\n",
        false,
    ),
    (
        "null_static_config",
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      -\n",
        false,
    ),
    ("null_scrape_config", "scrape_configs:\n  -\n", false),
    ("bad_rule_path", "rule_files: ['a/*/b']\n", false),
    ("unknown_field", "scrape_configz: []\n", false),
    (
        "duplicate_key",
        "global:\n  scrape_interval: 1m\n  scrape_interval: 2m\n",
        false,
    ),
    (
        "body_size_without_unit",
        "scrape_configs:\n  - job_name: a\n    body_size_limit: 100\n",
        false,
    ),
];

fn find_promtool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
}

fn promtool_accepts(promtool: &Path, file: &Path) -> (bool, String) {
    let out = Command::new(promtool)
        .arg("check")
        .arg("config")
        .arg(file)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn pharos_and_promtool_agree_on_validity() {
    let dir = tempfile::tempdir().unwrap();
    let promtool = find_promtool();
    if promtool.is_none() {
        eprintln!("promtool not found on PATH: checking pharos's side only");
    }
    for (name, yaml, valid) in CASES {
        let file = dir.path().join(format!("{name}.yml"));
        std::fs::write(&file, yaml).unwrap();
        let ours = pharos_config::load_file(&file);
        assert_eq!(ours.is_ok(), *valid, "pharos on {name}: {ours:?}");
        if let Err(e) = &ours {
            assert!(
                e.position().is_some(),
                "pharos error without position on {name}: {e}"
            );
        }
        if let Some(p) = &promtool {
            let (ok, text) = promtool_accepts(p, &file);
            assert_eq!(ok, *valid, "promtool on {name}:\n{text}");
        }
    }
}
