//! Engine benchmarks over a generated head: 10,000 counter series `x`
//! (10 jobs x 1,000 instances), 1,000 classic-histogram bucket series
//! `b_bucket` (100 instances x 10 buckets) and 1,000 gauges `g`, one sample
//! every 15 s for 1 h.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use pharos_model::Labels;
use pharos_promql::{Engine, EngineOptions};
use pharos_storage::Appendable;
use pharos_tsdb::Head;

const INTERVAL: i64 = 15_000;
const POINTS: i64 = 240; // 1 h
const END: i64 = INTERVAL * (POINTS - 1);

fn build_head() -> Head {
    let head = Head::default();
    let mut series: Vec<(Labels, f64)> = Vec::new();
    for job in 0..10 {
        for inst in 0..1000 {
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
    for inst in 0..100 {
        for (i, le) in les.iter().enumerate() {
            let l = Labels::from_pairs(&[
                ("__name__", "b_bucket".to_string()),
                ("instance", format!("host-{inst}:9100")),
                ("le", le.to_string()),
            ]);
            series.push((l, (i + 1) as f64 * 3.0));
        }
    }
    for inst in 0..1000 {
        let l = Labels::from_pairs(&[
            ("__name__", "g".to_string()),
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
    let head = build_head();
    let engine = Engine::new(EngineOptions::default());
    let queries = [
        ("sum_rate", "sum by (job) (rate(x[5m]))"),
        (
            "histogram_quantile",
            "histogram_quantile(0.95, sum by (le) (rate(b_bucket[5m])))",
        ),
        ("topk", "topk(10, rate(x[5m]))"),
        ("avg_over_time", "avg_over_time(g[1h])"),
    ];
    let mut group = c.benchmark_group("instant");
    group.sample_size(10);
    for (name, q) in queries {
        group.bench_function(name, |b| {
            b.iter(|| engine.instant_query(&head, q, END).unwrap())
        });
    }
    group.finish();
    let mut group = c.benchmark_group("range_1h_step_1m");
    group.sample_size(10);
    for (name, q) in queries {
        group.bench_function(name, |b| {
            b.iter(|| engine.range_query(&head, q, 0, END, 60_000).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
