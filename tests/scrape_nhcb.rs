//! The scrape option `convert_classic_histograms_to_nhcb` end to end: pharos
//! scrapes a target exposing a classic histogram with the option and
//! `always_scrape_classic_histograms`, so that both forms are stored; the
//! API returns the native histogram with custom buckets, and
//! `histogram_quantile` over it equals `histogram_quantile` over the
//! classic `_bucket` series.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fixture, Pharos};

const PAGE: &str = "# HELP rpc_seconds RPC latency.\n# TYPE rpc_seconds histogram\n\
rpc_seconds_bucket{svc=\"a\",le=\"0.01\"} 3\nrpc_seconds_bucket{svc=\"a\",le=\"0.1\"} 17\n\
rpc_seconds_bucket{svc=\"a\",le=\"1\"} 40\nrpc_seconds_bucket{svc=\"a\",le=\"+Inf\"} 42\n\
rpc_seconds_count{svc=\"a\"} 42\nrpc_seconds_sum{svc=\"a\"} 9.5\n\
rpc_seconds_bucket{svc=\"b\",le=\"0.01\"} 0\nrpc_seconds_bucket{svc=\"b\",le=\"0.1\"} 1.5\n\
rpc_seconds_bucket{svc=\"b\",le=\"1\"} 2.5\nrpc_seconds_bucket{svc=\"b\",le=\"+Inf\"} 2.5\n\
rpc_seconds_count{svc=\"b\"} 2.5\nrpc_seconds_sum{svc=\"b\"} 0.75\n";

fn by_svc(r: &serde_json::Value) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["metric"]["svc"].as_str().unwrap().to_string(),
                x["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn scraped_classic_histograms_are_stored_as_nhcb() {
    let f = Fixture::start(PAGE);
    let cfg = format!(
        "global:\n  scrape_interval: 100ms\n  scrape_timeout: 80ms\n\
         scrape_configs:\n  - job_name: t\n    convert_classic_histograms_to_nhcb: true\n\
         \x20   always_scrape_classic_histograms: true\n    static_configs:\n      - targets: ['{}']\n",
        f.addr
    );
    let p = Pharos::start(Some(&cfg), &[]);
    let r = p.wait_for("rpc_seconds", Duration::from_secs(30), |r| {
        r.as_array().is_some_and(|a| a.len() == 2)
    });
    let a = r
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["metric"]["svc"] == "a")
        .unwrap();
    let h = &a["histogram"][1];
    assert_eq!(h["count"], "42", "{a}");
    assert_eq!(h["sum"], "9.5", "{a}");
    // Buckets as the API writes them: [boundary rule, lower, upper, count].
    let buckets: Vec<(String, String, String)> = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b[1].as_str().unwrap().to_string(),
                b[2].as_str().unwrap().to_string(),
                b[3].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        buckets,
        vec![
            ("-Inf".into(), "0.01".into(), "3".into()),
            ("0.01".into(), "0.1".into(), "14".into()),
            ("0.1".into(), "1".into(), "23".into()),
            ("1".into(), "+Inf".into(), "2".into()),
        ],
        "{a}"
    );
    let native = by_svc(&p.query("histogram_quantile(0.9, rpc_seconds)"));
    let classic = by_svc(&p.query("histogram_quantile(0.9, rpc_seconds_bucket)"));
    assert_eq!(native.len(), 2);
    assert_eq!(classic.len(), 2);
    // The two quantile algorithms (classic and native, as in Prometheus)
    // order their floating-point operations differently (the native one
    // walks the buckets from the top for q >= 0.5): equal up to the last
    // bits. Prometheus's formulas give exactly these values for svc="a".
    assert_eq!(
        native[0].1,
        0.1 + 0.9 * ((2.0 + 23.0 - (1.0 - 0.9) * 42.0) / 23.0)
    );
    assert_eq!(classic[0].1, 0.1 + 0.9 * ((0.9 * 42.0 - 17.0) / 23.0));
    for (n, c) in native.iter().zip(&classic) {
        assert_eq!(n.0, c.0);
        assert!(
            (n.1 - c.1).abs() <= 1e-12 * c.1.abs(),
            "{native:?} vs {classic:?}"
        );
    }
}
