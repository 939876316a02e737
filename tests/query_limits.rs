//! End-to-end: the per-query memory budget. A query over many series fails
//! with an `execution` error while the server keeps scraping and answering
//! other queries; plus the metadata endpoints fed by real scrapes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fixture, Pharos, urlencode};

/// Series on the big target. With ~100 bytes per series read from storage,
/// one sample each is ~2 MB: twice the budget given below.
const BIG_SERIES: usize = 20_000;

fn big_page() -> String {
    let mut p = String::from("# HELP big_gauge A wide metric.\n# TYPE big_gauge gauge\n");
    for i in 0..BIG_SERIES {
        p.push_str(&format!(
            "big_gauge{{shard=\"s{}\",i=\"{i}\"}} {i}\n",
            i % 16
        ));
    }
    p
}

const SMALL_PAGE: &str =
    "# HELP small_total Small counter.\n# TYPE small_total counter\nsmall_total 3\n";

fn config(big: &str, small: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: big\n    static_configs:\n      - targets: ['{big}']\n  - job_name: small\n    static_configs:\n      - targets: ['{small}']\n"
    )
}

/// The newest `scrape_samples_scraped` timestamp of a job.
/// Timestamp of the job's latest scrape, waiting (up to 30 s) for its first
/// one: the two targets start scraping at different offsets.
fn last_scrape(p: &Pharos, job: &str) -> f64 {
    let q = format!("timestamp(scrape_samples_scraped{{job=\"{job}\"}})");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = p.query(&q);
        if let Some(v) = r[0]["value"][1].as_str() {
            return v.parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scrape of job {job} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn memory_budget_fails_one_query_and_the_server_carries_on() {
    let big = Fixture::start(&big_page());
    let small = Fixture::start(SMALL_PAGE);
    let p = Pharos::start(
        Some(&config(&big.addr, &small.addr)),
        &["--query.max-memory-bytes=1000000"],
    );
    p.wait_for(
        "scrape_samples_scraped{job=\"big\"}",
        Duration::from_secs(60),
        |r| {
            r.as_array().is_some_and(|a| a.len() == 1)
                && r[0]["value"][1] == BIG_SERIES.to_string().as_str()
        },
    );

    let heavy = format!(
        "/api/v1/query?query={}",
        urlencode("sum by (shard) (big_gauge)")
    );
    let (status, v) = p.api(&heavy);
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errorType"], "execution");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("per-query memory budget of 1000000 bytes"),
        "{v}"
    );

    // Heavy queries in a loop on two threads while we check that scraping
    // and small queries carry on.
    let before = last_scrape(&p, "small");
    let addr = p.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let (addr, heavy, stop) = (addr.clone(), heavy.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut failures = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && failures < 200 {
                    let (s, _) = common::http_get(&addr, &heavy);
                    assert_eq!(s, 422);
                    failures += 1;
                }
                failures
            })
        })
        .collect();
    // A selective query over the big metric fits the budget.
    let r = p.query("big_gauge{i=\"42\"}");
    assert_eq!(r[0]["value"][1], "42");
    assert_eq!(p.query("small_total")[0]["value"][1], "3");
    // Both targets keep being scraped.
    p.wait_for(
        "timestamp(scrape_samples_scraped{job=\"small\"})",
        Duration::from_secs(30),
        |r| r[0]["value"][1].as_str().unwrap().parse::<f64>().unwrap() > before + 1.0,
    );
    let big_before = last_scrape(&p, "big");
    p.wait_for(
        "timestamp(up{job=\"big\"} == 1)",
        Duration::from_secs(30),
        |r| {
            r.as_array().is_some_and(|a| a.len() == 1)
                && r[0]["value"][1].as_str().unwrap().parse::<f64>().unwrap() > big_before
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hammers {
        assert!(h.join().unwrap() >= 1);
    }
    assert_eq!(p.get("/-/healthy").0, 200);

    // Metadata from the scrapes.
    let (s, v) = p.api("/api/v1/metadata?metric=big_gauge");
    assert_eq!(s, 200);
    assert_eq!(
        v["data"]["big_gauge"],
        serde_json::json!([{"type": "gauge", "help": "A wide metric.", "unit": ""}])
    );
    let (_, v) = p.api(&format!(
        "/api/v1/targets/metadata?metric=small_total&match_target={}",
        urlencode("{job=\"small\"}")
    ));
    let d = v["data"].as_array().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["target"]["instance"], small.addr.as_str());
    assert_eq!(d[0]["type"], "counter");
    // The flag is listed with the others.
    let (_, v) = p.api("/api/v1/status/flags");
    assert_eq!(v["data"]["query.max-memory-bytes"], "1000000");
    assert_eq!(v["data"]["query.timeout"], "2m");
    let (_, v) = p.api("/api/v1/status/runtimeinfo");
    assert_eq!(v["data"]["reloadConfigSuccess"], true);
    assert_eq!(v["data"]["storageRetention"], "15d");
}
