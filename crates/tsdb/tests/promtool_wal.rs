//! Compatibility: Prometheus's own tooling reads the WAL we write.
//!
//! `promtool tsdb dump` opens a data directory read-only and replays its
//! WAL into a head, so a directory holding only our `wal/` must dump
//! exactly the samples we committed. Skipped (with a message) when
//! `promtool` is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;

use pharos_model::Labels;
use pharos_storage::Appendable;
use pharos_tsdb::{HeadOptions, WalOptions, open_head};

fn promtool() -> Option<&'static str> {
    Command::new("promtool")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "promtool")
}

fn write_and_dump(compress: bool, segment_size: usize) {
    let Some(promtool) = promtool() else {
        eprintln!("promtool not installed: skipping the WAL compatibility check");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (head, hw) = open_head(
        dir.path(),
        HeadOptions::default(),
        WalOptions {
            segment_size,
            compress,
        },
    )
    .unwrap();
    let mut want = BTreeSet::new();
    let t0 = 1_700_000_000_000i64;
    for step in 0..200i64 {
        let mut app = head.appender();
        for i in 0..30u64 {
            let l = Labels::from_pairs(&[
                ("__name__", "pharos_compat_metric"),
                ("instance", &format!("host-{i}:9100")),
                ("job", "node"),
            ]);
            let t = t0 + step * 15_000;
            let v = (i as f64) * 0.5 + step as f64;
            app.append(0, &l, t, v).unwrap();
            want.push_line(&l, v, t);
        }
        app.commit().unwrap();
    }
    hw.close().unwrap();
    drop(head);
    let out = Command::new(promtool)
        .args(["tsdb", "dump"])
        .arg(dir.path())
        .args(["--min-time", &(t0 - 1).to_string()])
        .args(["--max-time", &(t0 + 10_000_000).to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool failed: {stderr}");
    let got: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got.len(), 6000, "promtool dumped {} lines", got.len());
    assert!(got == want, "promtool's dump differs from what we wrote");
}

trait PushLine {
    fn push_line(&mut self, l: &Labels, v: f64, t: i64);
}

impl PushLine for BTreeSet<String> {
    fn push_line(&mut self, l: &Labels, v: f64, t: i64) {
        // promtool prints `labels value timestamp` with Go's %g.
        let labels: Vec<String> = l
            .iter()
            .map(|x| format!("{}=\"{}\"", x.name, x.value))
            .collect();
        self.insert(format!("{{{}}} {} {t}", labels.join(", "), go_g(v)));
    }
}

/// Go's `%g` for the values used here (integers and halves).
fn go_g(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[test]
fn promtool_dumps_our_uncompressed_wal() {
    write_and_dump(false, 128 * 1024 * 1024);
}

#[test]
fn promtool_dumps_our_snappy_wal_across_segments() {
    // 64 KiB segments: the WAL spans many segments.
    write_and_dump(true, 64 * 1024);
}
