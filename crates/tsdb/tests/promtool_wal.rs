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

/// Our `chunks_head/` files are read by Prometheus: the WAL handed to
/// promtool holds only the series and the samples of the open chunks, so
/// every older sample it dumps must come from our chunk files.
#[test]
fn promtool_reads_our_head_chunks() {
    use pharos_tsdb::record::{self, Record};
    use pharos_tsdb::wal::{SegmentReader, Wal, list_segments};

    let Some(promtool) = promtool() else {
        eprintln!("promtool not installed: skipping the head chunks compatibility check");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 1 << 20,
        compress: false,
    };
    let (head, hw) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    let t0 = 1_700_000_000_000i64;
    // Aligned to the 2h chunk range so chunks are cut only by count.
    let t0 = t0 - t0.rem_euclid(2 * 3600 * 1000);
    let mut want = BTreeSet::new();
    for step in 0..400i64 {
        let mut app = head.appender();
        for i in 0..10u64 {
            let l = Labels::from_pairs(&[("__name__", "hc_metric"), ("i", &i.to_string())]);
            let t = t0 + step * 15_000;
            let v = (step * 3 + i as i64) as f64;
            app.append(0, &l, t, v).unwrap();
            want.push_line(&l, v, t);
        }
        app.commit().unwrap();
    }
    head.write_closed_chunks();
    hw.close().unwrap();
    drop(head);
    // Rewrite the WAL keeping series and only samples of the open chunks
    // (the last 40 of 400: three chunks of 120 are closed).
    let wal_dir = dir.path().join("wal");
    let mut recs: Vec<Vec<u8>> = Vec::new();
    let mut kept_samples = 0;
    for (_, p) in list_segments(&wal_dir).unwrap() {
        let data = std::fs::read(&p).unwrap();
        let mut r = SegmentReader::new(&data);
        while let Some(rec) = r.next() {
            match record::decode(rec).unwrap() {
                Record::Series(_) => recs.push(rec.to_vec()),
                Record::Samples(v) => {
                    let v: Vec<_> = v.into_iter().filter(|s| s.t >= t0 + 360 * 15_000).collect();
                    kept_samples += v.len();
                    if !v.is_empty() {
                        let mut b = Vec::new();
                        record::encode_samples(&v, &mut b);
                        recs.push(b);
                    }
                }
                _ => {}
            }
        }
    }
    assert_eq!(kept_samples, 400);
    std::fs::remove_dir_all(&wal_dir).unwrap();
    let w = Wal::create(&wal_dir, opts, 0).unwrap();
    let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
    w.log(&refs).unwrap();
    w.close().unwrap();

    let out = Command::new(promtool)
        .args(["tsdb", "dump"])
        .arg(dir.path())
        .args(["--min-time", &(t0 - 1).to_string()])
        .args(["--max-time", &(t0 + 100_000_000).to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool failed: {stderr}");
    let got: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        got.len(),
        4000,
        "promtool dumped {} lines; {stderr}",
        got.len()
    );
    assert!(got == want, "promtool's dump differs from what we wrote");
}
