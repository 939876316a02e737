//! Head benchmarks: append throughput as a scrape loop drives it (100 k
//! node_exporter-like series, references cached after the first scrape, one
//! appender per target per scrape), and a selection over that head.
//!
//! Run: `cargo bench -p pharos-tsdb --bench head`. Throughput is reported in
//! elements/s, one element being one sample.
//!
//! The `_cpu_time` variant reports the same work against the thread's CPU
//! time instead of wall time (from `/proc/thread-self/stat`, 10 ms ticks),
//! which is the per-core figure on a machine shared with other work.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::hint::black_box;

use common::{INTERVAL, SERIES_PER_TARGET, TARGETS, target_series, value};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pharos_model::{Labels, Matcher};
use pharos_storage::{Appendable, Queryable};
use pharos_tsdb::{Head, HeadOptions};

struct Target {
    labels: Vec<Labels>,
    refs: Vec<u64>,
}

fn setup() -> (Head, Vec<Target>) {
    let head = Head::new(HeadOptions::default());
    let targets: Vec<Target> = (0..TARGETS)
        .map(|t| Target {
            labels: target_series(t),
            refs: vec![0; SERIES_PER_TARGET],
        })
        .collect();
    (head, targets)
}

/// One scrape of every series of `targets` at scrape number `k`.
fn scrape(head: &Head, targets: &mut [Target], k: i64) {
    let t = k * INTERVAL;
    for tg in targets.iter_mut() {
        let mut app = head.appender();
        for (i, (l, r)) in tg.labels.iter().zip(tg.refs.iter_mut()).enumerate() {
            *r = app.append(*r, l, t, value(i, k)).unwrap();
        }
        app.commit().unwrap();
    }
}

/// CPU time (user + system) consumed by the calling thread so far.
fn thread_cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the parenthesised command: state is field 3, utime 14,
    // stime 15 (in USER_HZ ticks, 100 per second on Linux).
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    std::time::Duration::from_millis(ticks * 10)
}

fn bench_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_append");
    g.throughput(Throughput::Elements((TARGETS * SERIES_PER_TARGET) as u64));
    g.sample_size(30);
    g.measurement_time(std::time::Duration::from_secs(8));

    // Steady state: series exist, references cached.
    let (head, mut targets) = setup();
    scrape(&head, &mut targets, 0);
    let mut k = 0;
    g.bench_function("100k_series_cached_refs_1_thread", |b| {
        b.iter(|| {
            k += 1;
            scrape(&head, &mut targets, k);
        })
    });
    // Per core: the same loop timed by this thread's CPU time.
    g.bench_function("100k_series_cached_refs_1_thread_cpu_time", |b| {
        b.iter_custom(|iters| {
            let c0 = thread_cpu_time();
            for _ in 0..iters {
                k += 1;
                scrape(&head, &mut targets, k);
            }
            thread_cpu_time().saturating_sub(c0)
        })
    });
    drop(head);

    // The same, two scrape threads each owning half of the targets.
    let (head, targets) = setup();
    let mut halves: Vec<Vec<Target>> = {
        let mut it = targets.into_iter();
        let a: Vec<Target> = it.by_ref().take(TARGETS / 2).collect();
        vec![a, it.collect()]
    };
    for h in halves.iter_mut() {
        scrape(&head, h, 0);
    }
    let mut k = 0;
    g.bench_function("100k_series_cached_refs_2_threads", |b| {
        b.iter(|| {
            k += 1;
            std::thread::scope(|s| {
                for h in halves.iter_mut() {
                    let head = &head;
                    s.spawn(move || scrape(head, h, k));
                }
            });
        })
    });
    g.finish();
}

fn bench_first_scrape(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_create");
    g.throughput(Throughput::Elements((TARGETS * SERIES_PER_TARGET) as u64));
    g.sample_size(10);
    g.bench_function("100k_new_series", |b| {
        b.iter_batched(
            setup,
            |(head, mut targets)| {
                scrape(&head, &mut targets, 0);
                head
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_select(c: &mut Criterion) {
    let (head, mut targets) = setup();
    for k in 0..240 {
        scrape(&head, &mut targets, k);
    }
    let mut g = c.benchmark_group("head_select");
    g.sample_size(20);
    let ms = [
        Matcher::equal("__name__", "node_cpu_seconds_total"),
        Matcher::equal("mode", "idle"),
    ];
    // 800 series x 240 samples.
    g.throughput(Throughput::Elements(800 * 240));
    g.bench_function("cpu_idle_all_samples", |b| {
        b.iter(|| {
            let q = head.querier(i64::MIN, i64::MAX).unwrap();
            let mut set = q.select(true, None, &ms);
            let mut n = 0u64;
            while let Some(mut s) = set.next() {
                while let Some(x) = s.samples.next() {
                    n += 1;
                    black_box(x);
                }
            }
            assert_eq!(n, 800 * 240);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_append, bench_first_scrape, bench_select);
criterion_main!(benches);
