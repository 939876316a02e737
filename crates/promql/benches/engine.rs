//! Engine benchmarks over a generated head of 100,000 series, one sample
//! every 15 s for 2 h (48 M samples): 70,000 counter series `x` (10 jobs x
//! 7,000 instances), 10,000 classic-histogram bucket series `b_bucket`
//! (1,000 instances x 10 buckets) and 20,000 gauges `g` (10 jobs). The
//! queries are the ones dashboards run, plus a subquery and a binary
//! operation between two aggregations; instant queries at the end of the
//! data, range queries over its last hour at a 1 m step.
//!
//! Set `PHAROS_BENCH_SERIES_SCALE` (default 1.0) to shrink the head on a
//! small machine, e.g. `0.1` for 10,000 series.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use pharos_model::Labels;
use pharos_promql::{Engine, EngineOptions};
use pharos_storage::Appendable;
use pharos_tsdb::Head;

const INTERVAL: i64 = 15_000;
const POINTS: i64 = 480; // 2 h
const END: i64 = INTERVAL * (POINTS - 1);

fn scale() -> f64 {
    std::env::var("PHAROS_BENCH_SERIES_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0)
}

fn build_head() -> Head {
    let head = Head::default();
    let n = |base: usize| ((base as f64 * scale()) as usize).max(1);
    let mut series: Vec<(Labels, f64)> = Vec::new();
    for job in 0..10 {
        for inst in 0..n(7000) {
            let l = Labels::from_pairs(&[
                ("__name__", "x".to_string()),
                ("job", format!("job-{job}")),
                ("instance", format!("host-{inst}:9100")),
            ]);
            series.push((l, (job * 7 + inst % 13) as f64 + 1.0));
        }
    }
    let les = [
        "0.005", "0.01", "0.05", "0.1", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    for inst in 0..n(1000) {
        for (i, le) in les.iter().enumerate() {
            let l = Labels::from_pairs(&[
                ("__name__", "b_bucket".to_string()),
                ("instance", format!("host-{inst}:9100")),
                ("le", le.to_string()),
            ]);
            series.push((l, (i + 1) as f64 * 3.0));
        }
    }
    for inst in 0..n(20_000) {
        let l = Labels::from_pairs(&[
            ("__name__", "g".to_string()),
            ("job", format!("job-{}", inst % 10)),
            ("instance", format!("host-{inst}:9100")),
        ]);
        series.push((l, -1.0));
    }
    for step in 0..POINTS {
        let t = step * INTERVAL;
        let mut app = head.appender();
        for (i, (l, rate)) in series.iter().enumerate() {
            let v = if *rate < 0.0 {
                ((step + i as i64) % 50) as f64
            } else {
                step as f64 * rate
            };
            app.append(0, l, t, v).unwrap();
        }
        app.commit().unwrap();
    }
    head
}

fn bench(c: &mut Criterion) {
    let began = std::time::Instant::now();
    let head = build_head();
    eprintln!(
        "generated head: {} series x {POINTS} samples in {:.1?}",
        head.stats().num_series,
        began.elapsed()
    );
    let engine = Engine::new(EngineOptions::default());
    let queries = [
        ("sum_rate", "sum by (job) (rate(x[5m]))"),
        (
            "histogram_quantile",
            "histogram_quantile(0.95, sum by (le) (rate(b_bucket[5m])))",
        ),
        ("topk", "topk(10, rate(x[5m]))"),
        ("avg_over_time", "avg_over_time(g[1h])"),
        (
            "subquery",
            "max_over_time(sum by (job) (rate(x[5m]))[30m:1m])",
        ),
        (
            "binary_of_aggregations",
            "sum by (job) (rate(x[5m])) / on (job) sum by (job) (avg_over_time(g[5m]))",
        ),
    ];
    let mut group = c.benchmark_group("instant");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    for (name, q) in queries {
        group.bench_function(name, |b| {
            b.iter(|| engine.instant_query(&head, q, END).unwrap())
        });
    }
    group.finish();
    let mut group = c.benchmark_group("range_1h_step_1m");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    for (name, q) in queries {
        group.bench_function(name, |b| {
            b.iter(|| {
                engine
                    .range_query(&head, q, END - 3_600_000, END, 60_000)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
