//! Parser throughput on a generated node_exporter-like page (~2000 samples:
//! per-CPU counters, filesystem and network families with several labels,
//! classic histograms with `le`, HELP/TYPE for every family).
//!
//! Reported in elements = samples per second. Three cases: the scrape
//! cache hit path (series text + value only), the miss path (labels
//! decoded into a reused builder for every sample), and OpenMetrics.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pharos_exposition::{Entry, Format, Parser};
use pharos_model::LabelsBuilder;

struct Page {
    text: String,
    samples: u64,
}

fn family(p: &mut Page, name: &str, kind: &str, help: &str) {
    writeln!(p.text, "# HELP {name} {help}").unwrap();
    writeln!(p.text, "# TYPE {name} {kind}").unwrap();
}

fn sample(p: &mut Page, series: &str, value: f64) {
    writeln!(p.text, "{series} {value}").unwrap();
    p.samples += 1;
}

fn node_exporter_page() -> Page {
    let mut p = Page {
        text: String::new(),
        samples: 0,
    };
    let modes = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    family(
        &mut p,
        "node_cpu_seconds_total",
        "counter",
        "Seconds the CPUs spent in each mode.",
    );
    for cpu in 0..32 {
        for (i, mode) in modes.iter().enumerate() {
            let v = 12345.67 * (cpu + 1) as f64 + i as f64 * 0.01;
            sample(
                &mut p,
                &format!("node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}}"),
                v,
            );
        }
    }
    let mounts = [
        ("/dev/sda1", "ext4", "/"),
        ("/dev/sda2", "ext4", "/home"),
        ("/dev/sdb1", "xfs", "/var/lib/docker"),
        ("tmpfs", "tmpfs", "/run"),
        ("tmpfs", "tmpfs", "/run/lock"),
        ("tmpfs", "tmpfs", "/dev/shm"),
        ("/dev/nvme0n1p1", "vfat", "/boot/efi"),
        ("/dev/nvme0n1p2", "btrfs", "/srv/data"),
        (
            "overlay",
            "overlay",
            "/var/lib/docker/overlay2/abc123/merged",
        ),
        ("nfs.example.com:/export", "nfs4", "/mnt/shared"),
        ("/dev/mapper/vg0-logs", "ext4", "/var/log"),
        ("/dev/mapper/vg0-tmp", "ext4", "/tmp"),
    ];
    for (metric, kind) in [
        ("node_filesystem_avail_bytes", "gauge"),
        ("node_filesystem_device_error", "gauge"),
        ("node_filesystem_files", "gauge"),
        ("node_filesystem_files_free", "gauge"),
        ("node_filesystem_free_bytes", "gauge"),
        ("node_filesystem_readonly", "gauge"),
        ("node_filesystem_size_bytes", "gauge"),
    ] {
        family(&mut p, metric, kind, "Filesystem statistic.");
        for (i, (dev, fs, mp)) in mounts.iter().enumerate() {
            sample(
                &mut p,
                &format!("{metric}{{device=\"{dev}\",fstype=\"{fs}\",mountpoint=\"{mp}\"}}"),
                1.073741824e+11 / (i + 1) as f64,
            );
        }
    }
    let devices = ["eth0", "eth1", "lo", "docker0", "veth1a2b3c", "wlan0"];
    for dir in ["receive", "transmit"] {
        for what in [
            "bytes",
            "packets",
            "errs",
            "drop",
            "fifo",
            "compressed",
            "multicast",
        ] {
            let metric = format!("node_network_{dir}_{what}_total");
            family(&mut p, &metric, "counter", "Network device statistic.");
            for (i, dev) in devices.iter().enumerate() {
                sample(
                    &mut p,
                    &format!("{metric}{{device=\"{dev}\"}}"),
                    (9_876_543_210u64 * (i as u64 + 1)) as f64,
                );
            }
        }
    }
    let disks = ["sda", "sdb", "nvme0n1", "dm-0", "dm-1"];
    for what in [
        "read_bytes_total",
        "written_bytes_total",
        "reads_completed_total",
        "writes_completed_total",
        "io_time_seconds_total",
        "read_time_seconds_total",
        "write_time_seconds_total",
        "io_now",
    ] {
        let metric = format!("node_disk_{what}");
        family(&mut p, &metric, "counter", "Disk statistic.");
        for (i, d) in disks.iter().enumerate() {
            sample(
                &mut p,
                &format!("{metric}{{device=\"{d}\"}}"),
                123456.0 * (i + 1) as f64,
            );
        }
    }
    // Classic histograms with `le`.
    let buckets = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    family(
        &mut p,
        "http_request_duration_seconds",
        "histogram",
        "Request latency.",
    );
    for handler in [
        "/api/v1/query",
        "/api/v1/query_range",
        "/api/v1/series",
        "/api/v1/labels",
        "/metrics",
        "/-/healthy",
    ] {
        for method in ["GET", "POST"] {
            for code in ["200", "400", "500"] {
                for (i, le) in buckets.iter().enumerate() {
                    sample(
                        &mut p,
                        &format!(
                            "http_request_duration_seconds_bucket{{handler=\"{handler}\",method=\"{method}\",code=\"{code}\",le=\"{le}\"}}"
                        ),
                        (i * 17) as f64,
                    );
                }
                let base = format!("handler=\"{handler}\",method=\"{method}\",code=\"{code}\"");
                sample(
                    &mut p,
                    &format!("http_request_duration_seconds_sum{{{base}}}"),
                    1234.5678,
                );
                sample(
                    &mut p,
                    &format!("http_request_duration_seconds_count{{{base}}}"),
                    187.0,
                );
            }
        }
    }
    // Label-less gauges and counters (memory, go runtime, misc).
    let mut i = 0;
    while p.samples < 2000 {
        let metric = format!("node_memory_Stat{i}_bytes");
        family(&mut p, &metric, "gauge", "Memory information field.");
        sample(&mut p, &metric, 8.589934592e+09 + i as f64);
        i += 1;
    }
    p
}

fn to_openmetrics(text: &str) -> String {
    let mut out = text.replace(" untyped\n", " unknown\n");
    out.push_str("# EOF\n");
    out
}

fn count_samples(input: &[u8], format: Format) -> u64 {
    let mut n = 0;
    for e in Parser::new(input, format) {
        if let Entry::Sample(_) = e.unwrap() {
            n += 1;
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let page = node_exporter_page();
    let text = page.text.as_bytes();
    let om = to_openmetrics(&page.text);
    let om = om.as_bytes();
    assert_eq!(count_samples(text, Format::PrometheusText), page.samples);
    assert_eq!(count_samples(om, Format::OpenMetrics), page.samples);
    eprintln!(
        "page: {} samples, {} bytes ({:.1} bytes/sample)",
        page.samples,
        text.len(),
        text.len() as f64 / page.samples as f64
    );

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(page.samples));
    g.bench_function("text", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let mut keys = 0usize;
            let mut p = Parser::new(black_box(text), Format::PrometheusText);
            while let Some(e) = p.next_entry() {
                if let Ok(Entry::Sample(s)) = e {
                    sum += s.value;
                    keys += s.series.len();
                }
            }
            black_box((sum, keys))
        })
    });
    g.bench_function("text_with_labels", |b| {
        let mut builder = LabelsBuilder::new();
        b.iter(|| {
            let mut n = 0usize;
            let mut p = Parser::new(black_box(text), Format::PrometheusText);
            while let Some(e) = p.next_entry() {
                if let Ok(Entry::Sample(s)) = e {
                    builder.retain(|_, _| false);
                    s.labels_into(&mut builder);
                    n += builder.pairs().count();
                }
            }
            black_box(n)
        })
    });
    g.bench_function("openmetrics", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let mut p = Parser::new(black_box(om), Format::OpenMetrics);
            while let Some(e) = p.next_entry() {
                if let Ok(Entry::Sample(s)) = e {
                    sum += s.value;
                }
            }
            black_box(sum)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
