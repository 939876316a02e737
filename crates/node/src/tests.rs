#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// A fake `/proc` with one of each file; `mount_dir` is a real directory
/// listed in the mounts table so `statvfs` works on it.
fn fixture(dir: &Path, mount_dir: &Path) {
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "stat",
        "cpu  300 20 100 5000 40 0 6 7 0 0\n\
         cpu0 150 10 50 2500 20 0 3 4 8 9\n\
         cpu1 150 10 50 2500 20 0 3 3 0 0\n\
         intr 12345 1 2 3\n\
         ctxt 999\n\
         btime 1700000000\n\
         processes 4242\n\
         procs_running 3\n\
         procs_blocked 1\n",
    );
    w(
        "meminfo",
        "MemTotal:       16000000 kB\nMemFree:         1000 kB\nActive(anon):      20 kB\nHugePages_Total:       0\nbogus line\n",
    );
    w("loadavg", "0.50 0.25 0.10 2/300 12345\n");
    w(
        "diskstats",
        "   7       0 loop0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n\
         254       0 vda 100 5 2000 300 50 6 4000 700 2 900 1000 7 1 80 20 11 40\n\
         254       1 vda1 1 1 1 1 1 1 1 1 1 1 1\n\
         8       0 sdb 1 2 3 4 5 6 7 8 9 10 11\n",
    );
    w(
        "net/dev",
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
         lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  \
         eth0: 5000 50 1 2 3 4 5 6 7000 70 7 8 9 10 11 12\n",
    );
    w(
        "mounts",
        &format!(
            "proc /proc proc rw 0 0\n/dev/vda {} ext4 ro,relatime 0 0\nsysfs /sys sysfs rw 0 0\n/dev/gone /definitely/not/here ext4 rw 0 0\n",
            mount_dir.display().to_string().replace(' ', "\\040")
        ),
    );
    w(
        "42/stat",
        "42 (pha ros) S 1 42 42 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 9 0 500 123456789 2000 18446744073709551615\n",
    );
    w("42/status", "Name:\tpharos\nVmRSS:\t    2048 kB\n");
    w(
        "42/limits",
        "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\nMax address space         unlimited            unlimited            bytes\n",
    );
    std::fs::create_dir_all(dir.join("42/fd")).unwrap();
    for i in 0..3 {
        std::fs::write(dir.join(format!("42/fd/{i}")), "").unwrap();
    }
}

/// Parses text output into `series text -> value`, checking that it is a
/// valid text-format page.
fn parse(out: &str) -> BTreeMap<String, f64> {
    use pharos_exposition::{Entry, Format, Parser};
    let mut p = Parser::new(out.as_bytes(), Format::PrometheusText);
    let mut m = BTreeMap::new();
    while let Some(e) = p.next_entry() {
        if let Entry::Sample(s) = e.unwrap_or_else(|e| panic!("{e}\n{out}")) {
            let line = out
                .lines()
                .find(|l| l.starts_with(std::str::from_utf8(s.series).unwrap()))
                .unwrap();
            let (series, _) = line.rsplit_once(' ').unwrap();
            m.insert(series.to_string(), s.value);
        }
    }
    m
}

#[test]
fn node_exporter_names_labels_and_values() {
    let proc_dir = tempfile::tempdir().unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let mount_dir = mnt.path().join("with space");
    std::fs::create_dir_all(&mount_dir).unwrap();
    fixture(proc_dir.path(), &mount_dir);
    let mut out = String::new();
    HostCollector::with_proc_root(proc_dir.path()).write(&mut out);
    let m = parse(&out);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("missing {k}\n{out}"));

    assert_eq!(get(r#"node_cpu_seconds_total{cpu="0",mode="user"}"#), 1.5);
    assert_eq!(get(r#"node_cpu_seconds_total{cpu="1",mode="idle"}"#), 25.0);
    assert_eq!(get(r#"node_cpu_seconds_total{cpu="0",mode="steal"}"#), 0.04);
    assert_eq!(
        get(r#"node_cpu_guest_seconds_total{cpu="0",mode="user"}"#),
        0.08
    );
    assert_eq!(
        get(r#"node_cpu_guest_seconds_total{cpu="0",mode="nice"}"#),
        0.09
    );
    assert!(!m.keys().any(|k| k.contains("cpu=\"\"")));
    assert_eq!(get("node_boot_time_seconds"), 1.7e9);
    assert_eq!(get("node_context_switches_total"), 999.0);
    assert_eq!(get("node_forks_total"), 4242.0);
    assert_eq!(get("node_intr_total"), 12345.0);
    assert_eq!(get("node_procs_running"), 3.0);
    assert_eq!(get("node_procs_blocked"), 1.0);

    assert_eq!(get("node_memory_MemTotal_bytes"), 16_000_000.0 * 1024.0);
    assert_eq!(get("node_memory_Active_anon_bytes"), 20.0 * 1024.0);
    assert_eq!(get("node_memory_HugePages_Total"), 0.0);
    assert!(out.contains("# HELP node_memory_MemFree_bytes Memory information field MemFree_bytes.\n# TYPE node_memory_MemFree_bytes gauge\n"));

    assert_eq!(get("node_load1"), 0.5);
    assert_eq!(get("node_load5"), 0.25);
    assert_eq!(get("node_load15"), 0.1);

    assert_eq!(
        get(r#"node_disk_reads_completed_total{device="vda"}"#),
        100.0
    );
    assert_eq!(
        get(r#"node_disk_read_bytes_total{device="vda"}"#),
        2000.0 * 512.0
    );
    assert_eq!(
        get(r#"node_disk_write_time_seconds_total{device="vda"}"#),
        // Scaled as node_exporter does (ms * 0.001), rounding included.
        700.0 * 0.001
    );
    assert_eq!(get(r#"node_disk_io_now{device="vda"}"#), 2.0);
    assert_eq!(
        get(r#"node_disk_io_time_weighted_seconds_total{device="vda"}"#),
        1.0
    );
    assert_eq!(get(r#"node_disk_flush_requests_total{device="vda"}"#), 11.0);
    assert_eq!(
        get(r#"node_disk_flush_requests_time_seconds_total{device="vda"}"#),
        0.04
    );
    // Old kernels: 11 fields, no discard/flush series.
    assert_eq!(
        get(r#"node_disk_io_time_seconds_total{device="sdb"}"#),
        0.01
    );
    assert!(!m.contains_key(r#"node_disk_discards_completed_total{device="sdb"}"#));
    // Excluded by node_exporter's default pattern.
    assert!(!out.contains("loop0") && !out.contains("vda1"));

    assert_eq!(
        get(r#"node_network_receive_bytes_total{device="eth0"}"#),
        5000.0
    );
    assert_eq!(
        get(r#"node_network_receive_multicast_total{device="eth0"}"#),
        6.0
    );
    assert_eq!(
        get(r#"node_network_transmit_colls_total{device="eth0"}"#),
        10.0
    );
    assert_eq!(
        get(r#"node_network_transmit_compressed_total{device="eth0"}"#),
        12.0
    );
    assert_eq!(
        get(r#"node_network_receive_packets_total{device="lo"}"#),
        10.0
    );

    let fs = format!(
        r#"{{device="/dev/vda",fstype="ext4",mountpoint="{}"}}"#,
        mount_dir.display()
    );
    assert!(get(&format!("node_filesystem_size_bytes{fs}")) > 0.0);
    assert!(get(&format!("node_filesystem_files{fs}")) > 0.0);
    assert_eq!(get(&format!("node_filesystem_readonly{fs}")), 1.0);
    assert_eq!(get(&format!("node_filesystem_device_error{fs}")), 0.0);
    let gone = r#"{device="/dev/gone",fstype="ext4",mountpoint="/definitely/not/here"}"#;
    assert_eq!(get(&format!("node_filesystem_device_error{gone}")), 1.0);
    assert!(!m.contains_key(&format!("node_filesystem_size_bytes{gone}")));
    assert!(!out.contains("mountpoint=\"/proc\"") && !out.contains("sysfs"));

    assert!(get("node_time_seconds") > 1.7e9);
    for c in [
        "cpu",
        "diskstats",
        "filesystem",
        "loadavg",
        "meminfo",
        "netdev",
        "stat",
        "time",
    ] {
        assert_eq!(
            get(&format!(
                r#"node_scrape_collector_success{{collector="{c}"}}"#
            )),
            1.0,
            "{c}"
        );
    }
}

#[test]
fn missing_files_fail_their_collector_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("loadavg"), "1 2 3 1/1 1\n").unwrap();
    let mut out = String::new();
    HostCollector::with_proc_root(dir.path()).write(&mut out);
    let m = parse(&out);
    assert_eq!(m["node_load1"], 1.0);
    assert_eq!(
        m[r#"node_scrape_collector_success{collector="loadavg"}"#],
        1.0
    );
    assert_eq!(
        m[r#"node_scrape_collector_success{collector="meminfo"}"#],
        0.0
    );
    assert_eq!(m[r#"node_scrape_collector_success{collector="cpu"}"#], 0.0);
}

#[test]
fn process_metrics() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), dir.path());
    let mut out = String::new();
    write_process_metrics_from(dir.path(), "42", &mut out);
    let m = parse(&out);
    assert_eq!(m["process_cpu_seconds_total"], 4.0);
    assert_eq!(m["process_virtual_memory_bytes"], 123_456_789.0);
    assert_eq!(m["process_start_time_seconds"], 1.7e9 + 5.0);
    assert_eq!(m["process_resident_memory_bytes"], 2048.0 * 1024.0);
    assert_eq!(m["process_open_fds"], 3.0);
    assert_eq!(m["process_max_fds"], 1024.0);
    assert_eq!(m["process_virtual_memory_max_bytes"], -1.0);
}

#[test]
fn this_machine_renders_a_valid_page() {
    let mut out = String::new();
    HostCollector::new().write(&mut out);
    write_process_metrics(&mut out);
    let m = parse(&out);
    if Path::new("/proc/stat").exists() {
        assert!(m.keys().any(|k| k.starts_with("node_cpu_seconds_total{")));
        assert!(m.contains_key("node_memory_MemTotal_bytes"));
        assert!(m["process_resident_memory_bytes"] > 0.0);
    }
}

#[test]
fn octal_escapes_in_mounts() {
    assert_eq!(unescape_octal(r"/mnt/a\040b"), "/mnt/a b");
    assert_eq!(unescape_octal(r"/x\134y"), r"/x\y");
    assert_eq!(unescape_octal(r"\04"), r"\04");
    assert_eq!(unescape_octal(r"\777"), r"\777");
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic(s in "(?s).{0,300}") {
        let mut out = String::new();
        let re = Regex::new(DISK_EXCLUDE).unwrap();
        write_cpu(&s, &mut out);
        write_stat(&s, &mut out);
        write_meminfo(&s, &mut out);
        write_loadavg(&s, &mut out);
        write_diskstats(&s, &re, &mut out);
        write_netdev(&s, &mut out);
        let _ = parse_mounts(&s);
        let _ = unescape_octal(&s);
    }
}
