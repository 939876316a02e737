//! A synthetic node_exporter-like workload shared by the head benchmark and
//! the heap-per-series example: `TARGETS` hosts of `SERIES_PER_TARGET`
//! series each, with the label shapes node_exporter produces (cpu/mode,
//! device, filesystem mountpoints, plain gauges).

#![allow(dead_code)]

use pharos_model::{Labels, LabelsBuilder};

/// Hosts scraped.
pub const TARGETS: usize = 100;
/// Series per host.
pub const SERIES_PER_TARGET: usize = 1000;
/// Scrape interval, ms.
pub const INTERVAL: i64 = 15_000;

const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const NET_DEVICES: [&str; 4] = ["eth0", "eth1", "lo", "docker0"];
const NET_METRICS: [&str; 16] = [
    "receive_bytes_total",
    "receive_packets_total",
    "receive_errs_total",
    "receive_drop_total",
    "receive_fifo_total",
    "receive_frame_total",
    "receive_compressed_total",
    "receive_multicast_total",
    "transmit_bytes_total",
    "transmit_packets_total",
    "transmit_errs_total",
    "transmit_drop_total",
    "transmit_fifo_total",
    "transmit_colls_total",
    "transmit_carrier_total",
    "transmit_compressed_total",
];
const DISKS: [&str; 4] = ["sda", "sdb", "nvme0n1", "dm-0"];
const DISK_METRICS: [&str; 17] = [
    "reads_completed_total",
    "reads_merged_total",
    "read_bytes_total",
    "read_time_seconds_total",
    "writes_completed_total",
    "writes_merged_total",
    "written_bytes_total",
    "write_time_seconds_total",
    "io_now",
    "io_time_seconds_total",
    "io_time_weighted_seconds_total",
    "discards_completed_total",
    "discards_merged_total",
    "discarded_sectors_total",
    "discard_time_seconds_total",
    "flush_requests_total",
    "flush_requests_time_seconds_total",
];
const MOUNTS: [(&str, &str, &str); 8] = [
    ("/dev/sda1", "ext4", "/"),
    ("/dev/sda2", "ext4", "/boot"),
    ("/dev/sdb1", "xfs", "/var/lib/docker"),
    ("/dev/nvme0n1p1", "xfs", "/data"),
    ("tmpfs", "tmpfs", "/run"),
    ("tmpfs", "tmpfs", "/run/lock"),
    ("tmpfs", "tmpfs", "/run/user/1000"),
    ("/dev/mapper/vg-home", "ext4", "/home"),
];
const FS_METRICS: [&str; 7] = [
    "avail_bytes",
    "device_error",
    "files",
    "files_free",
    "free_bytes",
    "readonly",
    "size_bytes",
];
const SUBSYSTEMS: [&str; 8] = [
    "memory",
    "vmstat",
    "netstat",
    "sockstat",
    "schedstat",
    "pressure",
    "timex",
    "nf_conntrack",
];
const WORDS: [&str; 12] = [
    "Active",
    "Inactive",
    "Dirty",
    "Writeback",
    "Mapped",
    "Shmem",
    "Slab",
    "PageTables",
    "Committed_AS",
    "HugePages_Free",
    "SwapCached",
    "KernelStack",
];

/// The `SERIES_PER_TARGET` label sets of host `target`.
pub fn target_series(target: usize) -> Vec<Labels> {
    let instance = format!("10.0.{}.{}:9100", target / 256, target % 256);
    let mut out = Vec::with_capacity(SERIES_PER_TARGET);
    let mut b = LabelsBuilder::new();
    let mut push = |name: &str, extra: &[(&str, &str)], out: &mut Vec<Labels>| {
        if out.len() >= SERIES_PER_TARGET {
            return;
        }
        b.retain(|_, _| false);
        b.set("__name__", name)
            .set("instance", &instance)
            .set("job", "node");
        for (k, v) in extra {
            b.set(k, v);
        }
        out.push(b.build());
    };
    for cpu in 0..8 {
        let c = cpu.to_string();
        for mode in MODES {
            push(
                "node_cpu_seconds_total",
                &[("cpu", &c), ("mode", mode)],
                &mut out,
            );
        }
    }
    for m in NET_METRICS {
        for d in NET_DEVICES {
            push(&format!("node_network_{m}"), &[("device", d)], &mut out);
        }
    }
    for m in DISK_METRICS {
        for d in DISKS {
            push(&format!("node_disk_{m}"), &[("device", d)], &mut out);
        }
    }
    for m in FS_METRICS {
        for (dev, fs, mp) in MOUNTS {
            push(
                &format!("node_filesystem_{m}"),
                &[("device", dev), ("fstype", fs), ("mountpoint", mp)],
                &mut out,
            );
        }
    }
    let mut i = 0;
    while out.len() < SERIES_PER_TARGET {
        let sub = SUBSYSTEMS[i % SUBSYSTEMS.len()];
        let word = WORDS[(i / SUBSYSTEMS.len()) % WORDS.len()];
        let n = i / (SUBSYSTEMS.len() * WORDS.len());
        push(&format!("node_{sub}_{word}_{n}_bytes"), &[], &mut out);
        i += 1;
    }
    out
}

/// A plausible value for series `i` at scrape `k`: counters grow at
/// per-series rates, gauges wander; what XOR compression sees in practice.
pub fn value(i: usize, k: i64) -> f64 {
    if i.is_multiple_of(3) {
        // Gauge-ish: a few distinct values.
        ((i as i64 * 7 + k / 4) % 13) as f64 * 1024.0
    } else {
        // Counter with a per-series rate and fractional increments.
        (i as f64) * 1000.0 + (k as f64) * ((i % 17) as f64 * 0.25 + 1.0)
    }
}
