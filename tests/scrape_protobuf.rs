//! Native histograms scraped from the protobuf exposition format, end to
//! end: the real binary scrapes a page served by this test (integer and
//! float native histograms, a counter, a summary) with
//! `scrape_native_histograms: true`, and the query API returns the
//! histograms (`histogram_count`, the `histogram` field of instant
//! queries).
//!
//! Compatibility: when Debian's Prometheus 2.42 is installed, it scrapes
//! the same page (`--enable-feature=native-histograms`) and both servers
//! must return the same JSON for the same instant queries. Skipped outside
//! CI when Prometheus is absent; failing under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Pharos, have, http_get, in_ci, urlencode};
use pharos_exposition::protobuf::{
    Bucket, Histogram, LabelPair, Metric, MetricFamily, PROTOBUF_CONTENT_TYPE, ProtoType, Quantile,
    Summary, encode_delimited,
};
use pharos_model::Span;

fn lp(n: &str, v: &str) -> LabelPair {
    LabelPair {
        name: n.into(),
        value: v.into(),
    }
}

/// The integer native histogram of `rpc_seconds{svc}`: schema 1, a zero
/// bucket, positive and negative buckets, and two classic buckets.
fn int_histogram(scale: u64) -> Histogram {
    Histogram {
        sample_count: 15 * scale,
        sample_sum: 21.25 * scale as f64,
        schema: 1,
        zero_threshold: 0.001,
        zero_count: scale,
        positive_span: vec![
            Span {
                offset: -1,
                length: 2,
            },
            Span {
                offset: 2,
                length: 2,
            },
        ],
        positive_delta: vec![
            2 * scale as i64,
            scale as i64,
            -(scale as i64),
            4 * scale as i64,
        ],
        negative_span: vec![Span {
            offset: 0,
            length: 1,
        }],
        negative_delta: vec![scale as i64],
        bucket: vec![
            Bucket {
                cumulative_count: 4 * scale,
                upper_bound: 1.0,
                ..Default::default()
            },
            Bucket {
                cumulative_count: 10 * scale,
                upper_bound: 5.0,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// The page: `rpc_seconds` (two integer histograms), `reqs_total`,
/// `rt_seconds` (a summary) and, with `float`, `load` (a float-count
/// native histogram).
fn page(float: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let fams = [
        MetricFamily {
            name: "rpc_seconds".into(),
            help: "RPC latency.".into(),
            kind: ProtoType::Histogram,
            metric: vec![
                Metric {
                    label: vec![lp("svc", "a")],
                    histogram: Some(int_histogram(1)),
                    ..Default::default()
                },
                Metric {
                    label: vec![lp("svc", "b")],
                    histogram: Some(int_histogram(3)),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
        MetricFamily {
            name: "reqs_total".into(),
            help: "Requests.".into(),
            kind: ProtoType::Counter,
            metric: vec![Metric {
                label: vec![lp("code", "200")],
                counter: Some(42.0),
                ..Default::default()
            }],
            ..Default::default()
        },
        MetricFamily {
            name: "rt_seconds".into(),
            kind: ProtoType::Summary,
            metric: vec![Metric {
                summary: Some(Summary {
                    sample_count: 9,
                    sample_sum: 4.5,
                    quantile: vec![
                        Quantile {
                            quantile: 0.5,
                            value: 0.25,
                        },
                        Quantile {
                            quantile: 0.99,
                            value: 2.0,
                        },
                    ],
                }),
                ..Default::default()
            }],
            ..Default::default()
        },
    ];
    for f in &fams {
        encode_delimited(f, &mut out);
    }
    if float {
        let f = MetricFamily {
            name: "load".into(),
            kind: ProtoType::Histogram,
            metric: vec![Metric {
                histogram: Some(Histogram {
                    sample_count_float: 7.5,
                    sample_sum: 30.0,
                    schema: 0,
                    zero_count_float: 0.5,
                    positive_span: vec![Span {
                        offset: 1,
                        length: 2,
                    }],
                    positive_count: vec![3.0, 4.0],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        encode_delimited(&f, &mut out);
    }
    out
}

struct Served {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves `body` as a protobuf page to every request.
fn serve(body: Vec<u8>) -> Served {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 2048];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {PROTOBUF_CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(&body);
        }
    });
    Served { addr, stop }
}

fn config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n  scrape_native_histograms: true\n\
         scrape_configs:\n  - job_name: nh\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

#[test]
fn pharos_scrapes_native_histograms_from_protobuf() {
    let target = serve(page(true));
    let p = Pharos::start(Some(&config(&target.addr)), &[]);
    let r = p.wait_for(
        "histogram_count(rpc_seconds)",
        Duration::from_secs(30),
        |r| r.as_array().is_some_and(|a| a.len() == 2),
    );
    let mut counts: Vec<(String, String)> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["metric"]["svc"].as_str().unwrap().to_string(),
                x["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("a".to_string(), "15".to_string()),
            ("b".into(), "45".into())
        ]
    );

    let r = p.query("rpc_seconds{svc=\"a\"}");
    let h = &r[0]["histogram"][1];
    assert_eq!(h["count"], "15", "{r}");
    assert_eq!(h["sum"], "21.25", "{r}");
    // Schema 1: bucket i covers (2^((i-1)/2), 2^(i/2)]; the spans give
    // indices -1, 0, 3, 4 and the negative side index 0.
    let buckets: Vec<String> = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{} {} {} {}",
                b[0],
                b[1].as_str().unwrap(),
                b[2].as_str().unwrap(),
                b[3].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        buckets,
        [
            "1 -1 -0.7071067811865475 1",
            "3 -0.001 0.001 1",
            "0 0.5 0.7071067811865475 2",
            "0 0.7071067811865475 1 3",
            "0 2 2.82842712474619 2",
            "0 2.82842712474619 4 6",
        ],
        "{r}"
    );
    // No classic series (always_scrape_classic_histograms is off).
    assert_eq!(p.query("rpc_seconds_bucket").as_array().unwrap().len(), 0);
    // The float histogram, the counter and the summary.
    let r = p.query("histogram_sum(load)");
    assert_eq!(r[0]["value"][1], "30", "{r}");
    let r = p.query("histogram_count(load)");
    assert_eq!(r[0]["value"][1], "7.5", "{r}");
    let r = p.query("reqs_total");
    assert_eq!(r[0]["value"][1], "42", "{r}");
    let r = p.query("rt_seconds{quantile=\"0.99\"}");
    assert_eq!(r[0]["value"][1], "2", "{r}");
    let r = p.query("rt_seconds_count");
    assert_eq!(r[0]["value"][1], "9", "{r}");
    // Metadata from the protobuf page.
    let (_, md) = p.api("/api/v1/metadata?metric=rpc_seconds");
    assert_eq!(md["data"]["rpc_seconds"][0]["type"], "histogram", "{md}");
    assert_eq!(md["data"]["rpc_seconds"][0]["help"], "RPC latency.", "{md}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn query_at(addr: &str, q: &str, t: f64) -> serde_json::Value {
    let (s, b) = http_get(
        addr,
        &format!("/api/v1/query?query={}&time={t}", urlencode(q)),
    );
    assert_eq!(s, 200, "{addr} {q}: {b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let mut r = v["data"]["result"].as_array().cloned().unwrap_or_default();
    r.sort_by_key(|x| x["metric"].to_string());
    serde_json::Value::Array(r)
}

#[test]
fn same_histograms_as_prometheus() {
    if !have("prometheus") {
        assert!(!in_ci(), "prometheus must be installed in CI");
        eprintln!("skipping: prometheus not installed");
        return;
    }
    // Integer histograms only: 2.42 does not store float histograms.
    let target = serve(page(false));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        config(&target.addr).replace("  scrape_native_histograms: true\n", ""),
    )
    .unwrap();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let log_path = dir.path().join("prometheus.log");
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--enable-feature=native-histograms")
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start prometheus"),
    );
    let p = Pharos::start(Some(&config(&target.addr)), &[]);
    p.wait_for(
        "histogram_count(rpc_seconds)",
        Duration::from_secs(30),
        |r| r.as_array().is_some_and(|a| a.len() == 2),
    );
    let start = Instant::now();
    loop {
        let (s, b) = http_get(
            &prom_addr,
            &format!(
                "/api/v1/query?query={}",
                urlencode("histogram_count(rpc_seconds)")
            ),
        );
        if s == 200 && b.contains("\"svc\":\"b\"") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "prometheus scraped nothing; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // An evaluation time (whole seconds) after both servers' first
    // samples: the page never changes, so both must answer alike.
    std::thread::sleep(Duration::from_millis(1200));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor();
    for q in [
        "rpc_seconds",
        "histogram_count(rpc_seconds)",
        "histogram_sum(rpc_seconds)",
        // (Not histogram_quantile: 2.42 interpolates linearly inside
        // exponential buckets, Prometheus 3 and pharos exponentially.)
        "reqs_total",
        "rt_seconds",
        "rt_seconds_sum",
    ] {
        let ours = query_at(&p.addr, q, now);
        let theirs = query_at(&prom_addr, q, now);
        assert!(ours.as_array().is_some_and(|a| !a.is_empty()), "{q}: empty");
        assert_eq!(ours, theirs, "{q}");
    }
}
