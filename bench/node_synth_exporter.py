#!/usr/bin/env python3
"""node_exporter-like synthetic targets, many per process, cheap to serve.

Serves --targets targets on consecutive ports of --host starting at
--base-port, each exposing --series series in the Prometheus text format with
the label shapes node_exporter produces (the same shapes as
crates/tsdb/benches/common/mod.rs): node_cpu_seconds_total{cpu,mode},
node_network_*{device}, node_disk_*{device}, node_filesystem_*{device,fstype,
mountpoint}, then plain node_<subsystem>_<word>_<n>_bytes gauges up to the
series count. The scrape adds job and instance, so every target's series are
distinct.

Values move on every scrape of a target and depend only on (target, series,
scrape count): counters grow at per-series rates with two decimals, gauges
take a few distinct values. Label text is rendered once and shared by all
targets, so a process can serve ~1 M series every 15 s on one core.

Python 3 standard library only.

usage: node_synth_exporter.py --base-port 19100 --targets 100 --series 1000
           [--target-offset 0]
"""
import argparse
import asyncio

MODES = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"]
NET_DEVICES = ["eth0", "eth1", "lo", "docker0"]
NET_METRICS = [
    "receive_bytes_total", "receive_packets_total", "receive_errs_total", "receive_drop_total",
    "receive_fifo_total", "receive_frame_total", "receive_compressed_total",
    "receive_multicast_total", "transmit_bytes_total", "transmit_packets_total",
    "transmit_errs_total", "transmit_drop_total", "transmit_fifo_total", "transmit_colls_total",
    "transmit_carrier_total", "transmit_compressed_total",
]
DISKS = ["sda", "sdb", "nvme0n1", "dm-0"]
DISK_METRICS = [
    "reads_completed_total", "reads_merged_total", "read_bytes_total", "read_time_seconds_total",
    "writes_completed_total", "writes_merged_total", "written_bytes_total",
    "write_time_seconds_total", "io_now", "io_time_seconds_total",
    "io_time_weighted_seconds_total", "discards_completed_total", "discards_merged_total",
    "discarded_sectors_total", "discard_time_seconds_total", "flush_requests_total",
    "flush_requests_time_seconds_total",
]
MOUNTS = [
    ("/dev/sda1", "ext4", "/"), ("/dev/sda2", "ext4", "/boot"),
    ("/dev/sdb1", "xfs", "/var/lib/docker"), ("/dev/nvme0n1p1", "xfs", "/data"),
    ("tmpfs", "tmpfs", "/run"), ("tmpfs", "tmpfs", "/run/lock"),
    ("tmpfs", "tmpfs", "/run/user/1000"), ("/dev/mapper/vg-home", "ext4", "/home"),
]
FS_METRICS = ["avail_bytes", "device_error", "files", "files_free", "free_bytes", "readonly",
              "size_bytes"]
SUBSYSTEMS = ["memory", "vmstat", "netstat", "sockstat", "schedstat", "pressure", "timex",
              "nf_conntrack"]
WORDS = ["Active", "Inactive", "Dirty", "Writeback", "Mapped", "Shmem", "Slab", "PageTables",
         "Committed_AS", "HugePages_Free", "SwapCached", "KernelStack"]


def series_lines(n):
    """[(family, type, 'name{labels} ')] for the first n series of one host."""
    out = []

    def push(name, typ, labels=()):
        if len(out) < n:
            body = ",".join(f'{k}="{v}"' for k, v in labels)
            out.append((name, typ, f"{name}{{{body}}} " if body else f"{name} "))

    for cpu in range(8):
        for mode in MODES:
            push("node_cpu_seconds_total", "counter", [("cpu", cpu), ("mode", mode)])
    for m in NET_METRICS:
        for d in NET_DEVICES:
            push(f"node_network_{m}", "counter", [("device", d)])
    for m in DISK_METRICS:
        typ = "gauge" if m == "io_now" else "counter"
        for d in DISKS:
            push(f"node_disk_{m}", typ, [("device", d)])
    for m in FS_METRICS:
        for dev, fs, mp in MOUNTS:
            push(f"node_filesystem_{m}", "gauge",
                 [("device", dev), ("fstype", fs), ("mountpoint", mp)])
    i = 0
    while len(out) < n:
        sub = SUBSYSTEMS[i % len(SUBSYSTEMS)]
        word = WORDS[(i // len(SUBSYSTEMS)) % len(WORDS)]
        k = i // (len(SUBSYSTEMS) * len(WORDS))
        push(f"node_{sub}_{word}_{k}_bytes", "gauge")
        i += 1
    return out


class Host:
    """The exposition of one host: label text, per-series rates and a scrape count."""

    def __init__(self, target, lines):
        self.k = 0
        self.parts = []  # (prefix with any '# TYPE' header, is_counter, base, rate)
        last = None
        for j, (fam, typ, prefix) in enumerate(lines):
            head = ""
            if fam != last:
                head = f"# HELP {fam} Synthetic node_exporter-like {typ}.\n# TYPE {fam} {typ}\n"
                last = fam
            seed = (target * 7919 + j * 104729) % 100003
            self.parts.append((head + prefix, typ == "counter", float(seed * 10),
                               (seed % 17) * 0.25 + 0.01 * (seed % 7)))

    def render(self):
        self.k += 1
        k = self.k
        out = []
        for prefix, counter, base, rate in self.parts:
            if counter:
                out.append(f"{prefix}{base + k * rate:.2f}\n")
            else:
                out.append(f"{prefix}{(int(base) * 7 + k // 4) % 13 * 1024}\n")
        return "".join(out).encode()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-port", type=int, default=19100)
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--series", type=int, default=1000, help="series per target (default 1000)")
    ap.add_argument("--target-offset", type=int, default=0,
                    help="index of the first target, for values when several processes split the targets")
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    lines = series_lines(a.series)

    def handler_for(host):
        async def handle(reader, writer):
            try:
                while True:
                    req = await reader.readuntil(b"\r\n\r\n")
                    if not req:
                        break
                    body = host.render()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                    await writer.drain()
            except Exception:
                pass
            finally:
                writer.close()
        return handle

    servers = []
    for t in range(a.targets):
        host = Host(a.target_offset + t, lines)
        servers.append(await asyncio.start_server(handler_for(host), a.host, a.base_port + t,
                                                  backlog=64))
    print(f"serving {a.targets} targets x {len(lines)} series on "
          f"{a.host}:{a.base_port}..{a.base_port + a.targets - 1}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
