//! `pharos tsdb create-blocks-from openmetrics --convert-classic-histograms-to-nhcb`:
//! a file with a classic histogram is backfilled twice, as is and
//! converted to native histograms with custom buckets (NHCB); pharos serves
//! each directory, and `histogram_quantile` over the native series must
//! equal `histogram_quantile` over the classic `_bucket` series, instant
//! and over `rate()`. With `--keep-classic-histograms` both forms are in
//! one directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Pharos, urlencode};

/// Seconds; one day before the test runs, well inside the default
/// retention and clear of the head.
fn base_time() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now - 86_400) / 3600 * 3600
}

/// 40 scrapes, 15 s apart, of `x` for two label sets, with a counter reset
/// in the middle of `job="b"`, plus a gauge.
fn openmetrics(t0: i64) -> String {
    let les = ["0.05", "0.1", "0.5", "1", "2.5", "+Inf"];
    let mut s = String::from("# HELP x Request latency.\n# TYPE x histogram\n");
    for i in 0..40i64 {
        let t = t0 + i * 15;
        for (job, mult) in [("a", 1i64), ("b", 3)] {
            let k = if job == "b" && i >= 20 { i - 20 } else { i };
            let mut cum = 0i64;
            for (j, le) in les.iter().enumerate() {
                cum += k * mult * (j as i64 + 1) + j as i64;
                s.push_str(&format!(
                    "x_bucket{{job=\"{job}\",le=\"{le}\"}} {cum} {t}\n"
                ));
            }
            s.push_str(&format!("x_count{{job=\"{job}\"}} {cum} {t}\n"));
            s.push_str(&format!("x_sum{{job=\"{job}\"}} {} {t}\n", k as f64 * 0.75));
        }
    }
    s.push_str("# TYPE g gauge\n");
    for i in 0..40i64 {
        s.push_str(&format!("g 1 {}\n", t0 + i * 15));
    }
    s.push_str("# EOF\n");
    s
}

fn backfill(input: &Path, out: &Path, extra: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_pharos"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(input)
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `{job -> value}` of an instant query at `t` (seconds).
fn query_at(p: &Pharos, q: &str, t: i64) -> Vec<(String, f64)> {
    let (s, v) = p.api(&format!("/api/v1/query?query={}&time={t}", urlencode(q)));
    assert_eq!(s, 200, "{q}: {v}");
    let mut out: Vec<(String, f64)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let job = r["metric"]["job"].as_str().unwrap_or("").to_string();
            let val = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (job, val)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn assert_same(a: &[(String, f64)], b: &[(String, f64)], what: &str) {
    assert_eq!(a.len(), 2, "{what}: {a:?}");
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.0, y.0, "{what}");
        assert!(
            x.1 == y.1 || (x.1 - y.1).abs() <= 1e-12 * x.1.abs().max(1.0),
            "{what}: {a:?} vs {b:?}"
        );
    }
}

#[test]
fn nhcb_backfill_quantiles_match_classic() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = base_time();
    let input = dir.path().join("in.om");
    std::fs::write(&input, openmetrics(t0)).unwrap();
    let classic = dir.path().join("classic");
    let native = dir.path().join("native");
    let both = dir.path().join("both");
    backfill(&input, &classic, &[]);
    backfill(&input, &native, &["--convert-classic-histograms-to-nhcb"]);
    backfill(
        &input,
        &both,
        &[
            "--convert-classic-histograms-to-nhcb",
            "--keep-classic-histograms",
        ],
    );
    let at = [t0 + 5 * 15, t0 + 25 * 15, t0 + 39 * 15];

    let pc = Pharos::start_at(Some(&classic), None, &[]);
    let mut classic_q = Vec::new();
    for &t in &at {
        classic_q.push((
            query_at(&pc, "histogram_quantile(0.9, x_bucket)", t),
            query_at(&pc, "histogram_quantile(0.9, rate(x_bucket[2m]))", t),
        ));
    }
    assert!(query_at(&pc, "x", at[0]).is_empty());
    drop(pc);

    let pn = Pharos::start_at(Some(&native), None, &[]);
    for (&t, (inst, rate)) in at.iter().zip(&classic_q) {
        assert_same(
            &query_at(&pn, "histogram_quantile(0.9, x)", t),
            inst,
            "instant",
        );
        assert_same(
            &query_at(&pn, "histogram_quantile(0.9, rate(x[2m]))", t),
            rate,
            "rate",
        );
    }
    // The classic series are gone; the count and sum are readable from the
    // native histogram; other families are untouched.
    assert!(query_at(&pn, "x_bucket", at[0]).is_empty());
    assert!(query_at(&pn, "x_count", at[0]).is_empty());
    let counts = query_at(&pn, "histogram_count(x)", at[0]);
    assert_eq!(counts[0].1, (5 * 21 + 15) as f64, "{counts:?}");
    assert_eq!(query_at(&pn, "g", at[0]).len(), 1);
    let (_, v) = pn.api(&format!("/api/v1/query?query=x&time={}", at[0]));
    let h = &v["data"]["result"][0]["histogram"][1];
    assert!(h["buckets"].is_array(), "{v}");
    drop(pn);

    let pb = Pharos::start_at(Some(&both), None, &[]);
    for (&t, (inst, _)) in at.iter().zip(&classic_q) {
        assert_same(
            &query_at(&pb, "histogram_quantile(0.9, x)", t),
            inst,
            "instant (kept)",
        );
        assert_same(
            &query_at(&pb, "histogram_quantile(0.9, x_bucket)", t),
            inst,
            "classic (kept)",
        );
    }
}
