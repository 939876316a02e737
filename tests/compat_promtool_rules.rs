//! `pharos check rules` / `pharos test rules` against the real `promtool`
//! (Debian package `prometheus`) on the same files in
//! `tests/testdata/rules`: every file must get the same verdict from both,
//! and the verdict must be the one the file name announces (`pass_*` /
//! `fail_*` unit tests; rule files named `bad_*`/`broken*` must fail).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{have, in_ci};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/rules")
}

fn files(suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn run(bin: &str, args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new(bin).args(args).arg(file).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn promtool_present() -> bool {
    if have("promtool") {
        return true;
    }
    assert!(
        !in_ci(),
        "promtool must be installed in CI (.ci/run installs the prometheus package)"
    );
    eprintln!("skipping: promtool not installed");
    false
}

#[test]
fn test_rules_verdicts_match_promtool() {
    let pharos = env!("CARGO_BIN_EXE_pharos");
    let tests = files(".test.yml");
    assert!(tests.len() >= 6, "test files missing: {tests:?}");
    let with_promtool = promtool_present();
    for f in &tests {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let expect_pass = name.starts_with("pass_");
        assert!(
            expect_pass || name.starts_with("fail_"),
            "{name}: pass_/fail_ prefix"
        );
        let (ours, our_text) = run(pharos, &["test", "rules"], f);
        assert_eq!(ours, expect_pass, "pharos test rules {name}:\n{our_text}");
        if !expect_pass {
            assert!(our_text.contains("FAILED"), "{name}: {our_text}");
        }
        if with_promtool {
            let (theirs, their_text) = run("promtool", &["test", "rules"], f);
            assert_eq!(
                ours, theirs,
                "{name}: pharos and promtool disagree\npharos:\n{our_text}\npromtool:\n{their_text}"
            );
        }
    }
}

#[test]
fn failures_are_printed_like_promtool() {
    let pharos = env!("CARGO_BIN_EXE_pharos");
    let f = testdata().join("fail_promql_value.test.yml");
    let (_, text) = run(pharos, &["test", "rules"], &f);
    assert!(
        text.contains(
            "    expr: \"job:http_requests:rate5m\", time: 10m,\n        exp: {__name__=\"job:http_requests:rate5m\", job=\"api\"} 1.6E+00\n        got: {__name__=\"job:http_requests:rate5m\", job=\"api\"} 1.6666666666666667E+00"
        ),
        "{text}"
    );
    if promtool_present() {
        let (_, theirs) = run("promtool", &["test", "rules"], &f);
        assert!(theirs.contains("1.6666666666666667E+00"), "{theirs}");
    }
    let f = testdata().join("fail_annotation.test.yml");
    let (_, text) = run(pharos, &["test", "rules"], &f);
    assert!(text.contains("    alertname: HighErrorRate, time: 10m, \n        exp:[\n            0:\n              Labels:{alertname=\"HighErrorRate\", job=\"api\", severity=\"page\"}"), "{text}");
    assert!(
        text.contains("description=\"api answers 10% of requests with 5xx.\""),
        "{text}"
    );
}

#[test]
fn check_rules_verdicts_match_promtool() {
    let pharos = env!("CARGO_BIN_EXE_pharos");
    let with_promtool = promtool_present();
    for f in files(".rules.yml") {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let expect_ok = !(name.starts_with("bad_") || name.starts_with("broken"));
        let (ours, our_text) = run(pharos, &["check", "rules"], &f);
        assert_eq!(ours, expect_ok, "pharos check rules {name}:\n{our_text}");
        if !expect_ok {
            // Positioned errors: file:line:col.
            let needle = format!("{}:", f.display());
            assert!(
                our_text.lines().any(|l| l.starts_with(&needle)
                    && l[needle.len()..]
                        .split(':')
                        .next()
                        .is_some_and(|n| n.parse::<u32>().is_ok())),
                "{name}: no file:line:col error in\n{our_text}"
            );
        }
        if with_promtool {
            let (theirs, their_text) = run("promtool", &["check", "rules"], &f);
            assert_eq!(
                ours, theirs,
                "{name}: pharos and promtool disagree\npharos:\n{our_text}\npromtool:\n{their_text}"
            );
        }
    }
    let (_, text) = run(
        pharos,
        &["check", "rules"],
        &testdata().join("dup_check.rules.yml"),
    );
    assert!(text.contains("1 duplicate rule(s) found."), "{text}");
    let (_, text) = run(
        pharos,
        &["check", "rules"],
        &testdata().join("bad_check.rules.yml"),
    );
    assert!(
        text.contains("invalid recording rule name: not a metric name"),
        "{text}"
    );
    assert!(text.contains("annotation \"summary\""), "{text}");
}
