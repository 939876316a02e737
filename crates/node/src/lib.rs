//! The built-in host collector: the useful core of node_exporter (CPU,
//! memory, filesystems, disk I/O, network, load, boot time and clock) and the
//! process metrics of pharos itself, under exactly the metric names, labels
//! and help texts node_exporter 1.5 and the Go client use, so that the
//! dashboards and alerts written for them work on a first run.
//!
//! Why it is built this way:
//!
//! * **Plain files, parsed by hand.** Everything comes from `/proc` text
//!   files (and one `statvfs` per mounted filesystem through `rustix`, the
//!   only call that is not a file read). The parsers are small, never panic
//!   on odd input (a line that does not parse is skipped), and are tested
//!   against fixture directories, so the collector is checked without
//!   depending on the machine it runs on.
//! * **Render on demand.** [`HostCollector::write`] reads and renders in one
//!   pass when scraped; nothing runs in the background and nothing is cached.
//!   A collector that fails (a missing file) reports
//!   `node_scrape_collector_success{collector="..."} 0` and the others still
//!   render, as node_exporter does.
//! * **Linux only.** On other systems the files are missing and every
//!   collector reports failure; the rest of pharos is unaffected.
//!
//! Deliberate differences from node_exporter 1.5: `node_disk_info`, the
//! `netlink`-only `node_network_receive_nohandler_total`, the uname, time
//! zone and clocksource metrics and `node_scrape_collector_duration_seconds`
//! are not produced; network counters come from `/proc/net/dev` (as
//! node_exporter does with `--no-collector.netdev.netlink`).

mod text;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use regex::Regex;

use crate::text::Family;

/// Kernel clock ticks per second (`USER_HZ`), fixed at 100 on Linux for
/// `/proc/stat` and `/proc/<pid>/stat`.
const USER_HZ: f64 = 100.0;
/// `/proc/diskstats` counts 512-byte sectors whatever the device's size.
const SECTOR_BYTES: f64 = 512.0;

/// node_exporter 1.5's default `--collector.diskstats.device-exclude`.
const DISK_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";
/// node_exporter's default `--collector.filesystem.mount-points-exclude`.
const MOUNT_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter's default `--collector.filesystem.fs-types-exclude`.
const FSTYPE_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";

/// Reads host metrics from a `/proc` tree.
#[derive(Debug, Clone)]
pub struct HostCollector {
    proc_root: PathBuf,
    disk_exclude: Regex,
    mount_exclude: Regex,
    fstype_exclude: Regex,
}

impl Default for HostCollector {
    fn default() -> Self {
        HostCollector::new()
    }
}

fn compile(re: &str) -> Regex {
    match Regex::new(re) {
        Ok(r) => r,
        Err(e) => panic!("BUG: built-in regex {re:?} does not compile: {e}"),
    }
}

impl HostCollector {
    /// A collector for this machine (`/proc`).
    pub fn new() -> HostCollector {
        HostCollector::with_proc_root(Path::new("/proc"))
    }

    /// A collector reading `proc_root` instead of `/proc` (tests, or a host
    /// `/proc` mounted into a container).
    pub fn with_proc_root(proc_root: &Path) -> HostCollector {
        HostCollector {
            proc_root: proc_root.to_path_buf(),
            disk_exclude: compile(DISK_EXCLUDE),
            mount_exclude: compile(MOUNT_EXCLUDE),
            fstype_exclude: compile(FSTYPE_EXCLUDE),
        }
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.proc_root.join(rel)).ok()
    }

    /// Appends every `node_*` metric in the Prometheus text format 0.0.4.
    pub fn write(&self, out: &mut String) {
        let mut success = Vec::new();
        let stat = self.read("stat");
        success.push(("cpu", stat.as_deref().is_some_and(|s| write_cpu(s, out))));
        success.push(("stat", stat.as_deref().is_some_and(|s| write_stat(s, out))));
        success.push((
            "meminfo",
            self.read("meminfo").is_some_and(|s| write_meminfo(&s, out)),
        ));
        success.push((
            "loadavg",
            self.read("loadavg").is_some_and(|s| write_loadavg(&s, out)),
        ));
        success.push((
            "diskstats",
            self.read("diskstats")
                .is_some_and(|s| write_diskstats(&s, &self.disk_exclude, out)),
        ));
        success.push((
            "netdev",
            self.read("net/dev").is_some_and(|s| write_netdev(&s, out)),
        ));
        let mounts = self.read("1/mounts").or_else(|| self.read("mounts"));
        success.push((
            "filesystem",
            mounts.is_some_and(|m| self.write_filesystems(&m, out)),
        ));
        success.push(("time", write_time(out)));

        let mut f = Family::new(
            "node_scrape_collector_success",
            "node_exporter: Whether a collector succeeded.",
            "gauge",
        );
        success.sort_by_key(|(n, _)| *n);
        for (name, ok) in success {
            f.sample(&[("collector", name)], if ok { 1.0 } else { 0.0 });
        }
        f.write(out);
    }

    fn write_filesystems(&self, mounts: &str, out: &mut String) -> bool {
        let mut size = fam("node_filesystem_size_bytes", "Filesystem size in bytes.");
        let mut free = fam(
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
        );
        let mut avail = fam(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
        );
        let mut files = fam("node_filesystem_files", "Filesystem total file nodes.");
        let mut files_free = fam(
            "node_filesystem_files_free",
            "Filesystem total free file nodes.",
        );
        let mut ro = fam("node_filesystem_readonly", "Filesystem read-only status.");
        let mut dev_err = fam(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
        );
        let mut seen = std::collections::HashSet::new();
        for m in parse_mounts(mounts) {
            if self.mount_exclude.is_match(&m.mount_point)
                || self.fstype_exclude.is_match(&m.fstype)
                || !seen.insert((m.device.clone(), m.mount_point.clone()))
            {
                continue;
            }
            let labels = [
                ("device", m.device.as_str()),
                ("fstype", m.fstype.as_str()),
                ("mountpoint", m.mount_point.as_str()),
            ];
            let readonly = m.options.split(',').any(|o| o == "ro");
            match rustix::fs::statvfs(m.mount_point.as_str()) {
                Ok(st) => {
                    let bs = st.f_bsize as f64;
                    size.sample(&labels, st.f_blocks as f64 * bs);
                    free.sample(&labels, st.f_bfree as f64 * bs);
                    avail.sample(&labels, st.f_bavail as f64 * bs);
                    files.sample(&labels, st.f_files as f64);
                    files_free.sample(&labels, st.f_ffree as f64);
                    ro.sample(&labels, f64::from(u8::from(readonly)));
                    dev_err.sample(&labels, 0.0);
                }
                Err(_) => {
                    ro.sample(&labels, f64::from(u8::from(readonly)));
                    dev_err.sample(&labels, 1.0);
                }
            }
        }
        for f in [avail, dev_err, files, files_free, free, ro, size] {
            f.write(out);
        }
        true
    }
}

fn fam(name: &str, help: &str) -> Family {
    Family::new(name, help, "gauge")
}

fn counter(name: &str, help: &str) -> Family {
    Family::new(name, help, "counter")
}

fn num(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// `node_cpu_seconds_total` and `node_cpu_guest_seconds_total` from
/// `/proc/stat`.
fn write_cpu(stat: &str, out: &mut String) -> bool {
    const MODES: [&str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    let mut secs = counter(
        "node_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
    );
    let mut guest = counter(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
    );
    let mut any = false;
    for line in stat.lines() {
        let mut it = line.split_whitespace();
        let Some(cpu) = it.next().and_then(|n| n.strip_prefix("cpu")) else {
            continue;
        };
        if cpu.is_empty() || !cpu.bytes().all(|b| b.is_ascii_digit()) {
            continue; // the "cpu" total line
        }
        let v: Vec<f64> = it.filter_map(num).map(|x| x / USER_HZ).collect();
        if v.len() < 8 {
            continue;
        }
        any = true;
        // Sorted by mode, as node_exporter's output is.
        let mut modes: Vec<(&str, f64)> = MODES.iter().copied().zip(v.iter().copied()).collect();
        modes.sort_by(|a, b| a.0.cmp(b.0));
        for (mode, x) in modes {
            secs.sample(&[("cpu", cpu), ("mode", mode)], x);
        }
        if v.len() >= 10 {
            guest.sample(&[("cpu", cpu), ("mode", "nice")], v[9]);
            guest.sample(&[("cpu", cpu), ("mode", "user")], v[8]);
        }
    }
    guest.write(out);
    secs.write(out);
    any
}

/// Boot time, context switches, forks, interrupts and process counts from
/// `/proc/stat`.
fn write_stat(stat: &str, out: &mut String) -> bool {
    let mut any = false;
    for line in stat.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(v)) = (it.next(), it.next().and_then(num)) else {
            continue;
        };
        let (name, help, typ) = match key {
            "btime" => (
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                "gauge",
            ),
            "ctxt" => (
                "node_context_switches_total",
                "Total number of context switches.",
                "counter",
            ),
            "processes" => ("node_forks_total", "Total number of forks.", "counter"),
            "intr" => (
                "node_intr_total",
                "Total number of interrupts serviced.",
                "counter",
            ),
            "procs_running" => (
                "node_procs_running",
                "Number of processes in runnable state.",
                "gauge",
            ),
            "procs_blocked" => (
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                "gauge",
            ),
            _ => continue,
        };
        any = true;
        let mut f = Family::new(name, help, typ);
        f.sample(&[], v);
        f.write(out);
    }
    any
}

/// Every `/proc/meminfo` field as `node_memory_<Field>[_bytes]`.
fn write_meminfo(meminfo: &str, out: &mut String) -> bool {
    let mut fields: Vec<(String, f64)> = Vec::new();
    for line in meminfo.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(v) = parts.next().and_then(num) else {
            continue;
        };
        let name = key.trim().replace('(', "_").replace(')', "");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        match parts.next() {
            Some("kB") => fields.push((format!("{name}_bytes"), v * 1024.0)),
            _ => fields.push((name, v)),
        }
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, v) in &fields {
        let mut f = fam(
            &format!("node_memory_{name}"),
            &format!("Memory information field {name}."),
        );
        f.sample(&[], *v);
        f.write(out);
    }
    !fields.is_empty()
}

/// `node_load1`, `node_load5`, `node_load15`.
fn write_loadavg(loadavg: &str, out: &mut String) -> bool {
    let v: Vec<f64> = loadavg.split_whitespace().take(3).filter_map(num).collect();
    if v.len() != 3 {
        return false;
    }
    for (name, help, x) in [
        ("node_load1", "1m load average.", v[0]),
        ("node_load15", "15m load average.", v[2]),
        ("node_load5", "5m load average.", v[1]),
    ] {
        let mut f = fam(name, help);
        f.sample(&[], x);
        f.write(out);
    }
    true
}

/// The `node_disk_*` counters from `/proc/diskstats`.
fn write_diskstats(diskstats: &str, exclude: &Regex, out: &mut String) -> bool {
    // (field index after the device name, name, help, type, scale)
    const FIELDS: [(usize, &str, &str, &str, f64); 16] = [
        (
            0,
            "node_disk_reads_completed_total",
            "The total number of reads completed successfully.",
            "counter",
            1.0,
        ),
        (
            1,
            "node_disk_reads_merged_total",
            "The total number of reads merged.",
            "counter",
            1.0,
        ),
        (
            2,
            "node_disk_read_bytes_total",
            "The total number of bytes read successfully.",
            "counter",
            SECTOR_BYTES,
        ),
        (
            3,
            "node_disk_read_time_seconds_total",
            "The total number of seconds spent by all reads.",
            "counter",
            0.001,
        ),
        (
            4,
            "node_disk_writes_completed_total",
            "The total number of writes completed successfully.",
            "counter",
            1.0,
        ),
        (
            5,
            "node_disk_writes_merged_total",
            "The number of writes merged.",
            "counter",
            1.0,
        ),
        (
            6,
            "node_disk_written_bytes_total",
            "The total number of bytes written successfully.",
            "counter",
            SECTOR_BYTES,
        ),
        (
            7,
            "node_disk_write_time_seconds_total",
            "This is the total number of seconds spent by all writes.",
            "counter",
            0.001,
        ),
        (
            8,
            "node_disk_io_now",
            "The number of I/Os currently in progress.",
            "gauge",
            1.0,
        ),
        (
            9,
            "node_disk_io_time_seconds_total",
            "Total seconds spent doing I/Os.",
            "counter",
            0.001,
        ),
        (
            10,
            "node_disk_io_time_weighted_seconds_total",
            "The weighted # of seconds spent doing I/Os.",
            "counter",
            0.001,
        ),
        (
            11,
            "node_disk_discards_completed_total",
            "The total number of discards completed successfully.",
            "counter",
            1.0,
        ),
        (
            12,
            "node_disk_discards_merged_total",
            "The total number of discards merged.",
            "counter",
            1.0,
        ),
        (
            13,
            "node_disk_discarded_sectors_total",
            "The total number of sectors discarded successfully.",
            "counter",
            1.0,
        ),
        (
            14,
            "node_disk_discard_time_seconds_total",
            "This is the total number of seconds spent by all discards.",
            "counter",
            0.001,
        ),
        (
            15,
            "node_disk_flush_requests_total",
            "The total number of flush requests completed successfully",
            "counter",
            1.0,
        ),
    ];
    let mut fams: Vec<Family> = FIELDS
        .iter()
        .map(|(_, n, h, t, _)| Family::new(n, h, t))
        .collect();
    let mut flush_time = counter(
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
    );
    let mut any = false;
    for line in diskstats.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 14 {
            continue;
        }
        let dev = parts[2];
        if exclude.is_match(dev) {
            continue;
        }
        let vals: Vec<f64> = parts[3..].iter().map(|s| num(s).unwrap_or(0.0)).collect();
        any = true;
        for (i, (idx, _, _, _, scale)) in FIELDS.iter().enumerate() {
            if let Some(v) = vals.get(*idx) {
                fams[i].sample(&[("device", dev)], v * scale);
            }
        }
        if let Some(v) = vals.get(16) {
            flush_time.sample(&[("device", dev)], v * 0.001);
        }
    }
    fams.push(flush_time);
    fams.sort_by(|a, b| a.name().cmp(b.name()));
    for f in fams {
        f.write(out);
    }
    any || diskstats.trim().is_empty()
}

/// The `node_network_*_total` counters from `/proc/net/dev`.
fn write_netdev(netdev: &str, out: &mut String) -> bool {
    const NAMES: [&str; 16] = [
        "receive_bytes",
        "receive_packets",
        "receive_errs",
        "receive_drop",
        "receive_fifo",
        "receive_frame",
        "receive_compressed",
        "receive_multicast",
        "transmit_bytes",
        "transmit_packets",
        "transmit_errs",
        "transmit_drop",
        "transmit_fifo",
        "transmit_colls",
        "transmit_carrier",
        "transmit_compressed",
    ];
    let mut fams: Vec<Family> = NAMES
        .iter()
        .map(|n| {
            counter(
                &format!("node_network_{n}_total"),
                &format!("Network device statistic {n}."),
            )
        })
        .collect();
    let mut any = false;
    for line in netdev.lines().skip(2) {
        let Some((dev, rest)) = line.split_once(':') else {
            continue;
        };
        let dev = dev.trim();
        let vals: Vec<f64> = rest.split_whitespace().filter_map(num).collect();
        if dev.is_empty() || vals.len() < 16 {
            continue;
        }
        any = true;
        for (f, v) in fams.iter_mut().zip(vals) {
            f.sample(&[("device", dev)], v);
        }
    }
    fams.sort_by(|a, b| a.name().cmp(b.name()));
    for f in fams {
        f.write(out);
    }
    any
}

fn write_time(out: &mut String) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut f = fam(
        "node_time_seconds",
        "System time in seconds since epoch (1970).",
    );
    f.sample(&[], now);
    f.write(out);
    true
}

/// One line of a mounts table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    device: String,
    mount_point: String,
    fstype: String,
    options: String,
}

/// Parses `/proc/mounts` lines, decoding the octal escapes (`\040`) the
/// kernel writes for spaces and other special characters.
fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some(Mount {
                device: unescape_octal(p.next()?),
                mount_point: unescape_octal(p.next()?),
                fstype: p.next()?.to_string(),
                options: p.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends the Go client's process metrics for the current process
/// (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_start_time_seconds`,
/// `process_open_fds`, `process_max_fds`,
/// `process_virtual_memory_max_bytes`), read from `/proc/self`.
pub fn write_process_metrics(out: &mut String) {
    write_process_metrics_from(Path::new("/proc"), "self", out);
}

/// [`write_process_metrics`] for process `pid` under `proc_root`.
pub fn write_process_metrics_from(proc_root: &Path, pid: &str, out: &mut String) {
    let dir = proc_root.join(pid);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let boot = std::fs::read_to_string(proc_root.join("stat"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ").and_then(|v| num(v.trim())))
        });
    if let Some(stat) = read("stat") {
        // Fields after the parenthesised command name, which may hold spaces.
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // f[0] is field 3 (state): utime is field 14, stime 15,
            // starttime 22, vsize 23.
            let field = |n: usize| f.get(n - 3).and_then(|s| num(s));
            if let (Some(u), Some(s)) = (field(14), field(15)) {
                let mut c = counter(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                );
                c.sample(&[], (u + s) / USER_HZ);
                c.write(out);
            }
            if let Some(v) = field(23) {
                let mut g = fam(
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                );
                g.sample(&[], v);
                g.write(out);
            }
            if let (Some(st), Some(b)) = (field(22), boot) {
                let mut g = fam(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                );
                g.sample(&[], b + st / USER_HZ);
                g.write(out);
            }
        }
    }
    if let Some(status) = read("status")
        && let Some(kb) = status.lines().find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.split_whitespace().next())
                .and_then(num)
        })
    {
        let mut g = fam(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        g.sample(&[], kb * 1024.0);
        g.write(out);
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("fd")) {
        let mut g = fam("process_open_fds", "Number of open file descriptors.");
        g.sample(&[], rd.count() as f64);
        g.write(out);
    }
    if let Some(limits) = read("limits") {
        let soft = |prefix: &str| -> Option<f64> {
            let line = limits.lines().find(|l| l.starts_with(prefix))?;
            let v = line[prefix.len()..].split_whitespace().next()?;
            Some(if v == "unlimited" { -1.0 } else { num(v)? })
        };
        if let Some(v) = soft("Max open files") {
            let mut g = fam(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            );
            g.sample(&[], v);
            g.write(out);
        }
        if let Some(v) = soft("Max address space") {
            let mut g = fam(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
            );
            g.sample(&[], v);
            g.write(out);
        }
    }
}

#[cfg(test)]
mod tests;
