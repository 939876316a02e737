#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use pharos_model::{Labels, Matcher, Sample};
use pharos_storage::{Appendable, Queryable};

use super::*;
use crate::{Head, HeadOptions};

pub(crate) fn fill_head(head: &Head, series: usize, samples: i64, step: i64) {
    let mut app = head.appender();
    for s in 0..series {
        let ls = Labels::from_pairs(&[
            (
                "__name__",
                if s % 2 == 0 {
                    "up"
                } else {
                    "http_requests_total"
                },
            ),
            ("instance", &format!("host-{s}")),
            ("job", "node"),
        ]);
        for i in 0..samples {
            app.append(0, &ls, i * step, (i * (s as i64 + 1)) as f64)
                .unwrap();
        }
    }
    app.commit().unwrap();
}

pub(crate) fn collect(
    q: &dyn pharos_storage::Querier,
    ms: &[Matcher],
) -> Vec<(Labels, Vec<Sample>)> {
    let mut ss = q.select(true, None, ms);
    let mut out = Vec::new();
    while let Some(s) = ss.next() {
        let mut it = s.samples;
        let mut v = Vec::new();
        while let Some(x) = it.next() {
            v.push(x);
        }
        assert!(it.err().is_none(), "{:?}", it.err());
        out.push((s.labels, v));
    }
    assert!(ss.err().is_none());
    out
}

#[test]
fn head_to_block_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let head = Head::new(HeadOptions::default());
    fill_head(&head, 20, 500, 15_000);
    let hq = head.querier(0, 7_200_000 - 1).unwrap();
    let meta = write_block_with(
        dir.path(),
        &*hq,
        0,
        7_200_000,
        BlockCompaction::default(),
        4096,
    )
    .unwrap()
    .unwrap();
    assert_eq!(meta.stats.num_series, 20);
    assert_eq!(meta.stats.num_samples, 20 * 480);
    assert!(dir.path().join(&meta.ulid).join("chunks/000002").exists());
    let b = Arc::new(Block::open(&dir.path().join(&meta.ulid)).unwrap());
    let bq = b.querier(0, 7_200_000);
    let want = collect(&*head.querier(0, 7_200_000 - 1).unwrap(), &[]);
    let got = collect(&bq, &[]);
    assert_eq!(got, want);
    let up = collect(&bq, &[Matcher::equal("__name__", "up")]);
    assert_eq!(up.len(), 10);
    // Seeking inside the block.
    let mut ss = bq.select(true, None, &[Matcher::equal("instance", "host-3")]);
    let mut it = ss.next().unwrap().samples;
    assert_eq!(it.seek(3_600_000).unwrap().t, 3_600_000);
    assert_eq!(it.next().unwrap().t, 3_615_000);
    // Deletion through tombstones survives a reopen.
    assert_eq!(
        b.delete(0, 3_600_000, &[Matcher::equal("instance", "host-3")])
            .unwrap(),
        1
    );
    let b2 = Arc::new(Block::open(b.dir()).unwrap());
    let got = collect(
        &b2.querier(0, i64::MAX),
        &[Matcher::equal("instance", "host-3")],
    );
    assert_eq!(got[0].1.first().unwrap().t, 3_615_000);
    // A deleted block disappears when the last reference drops.
    let path = b.dir().to_path_buf();
    b.mark_deleted();
    drop((bq, ss, it));
    assert!(path.exists());
    drop(b);
    assert!(!path.exists());
}

#[test]
fn empty_head_writes_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let head = Head::new(HeadOptions::default());
    let hq = head.querier(0, 100).unwrap();
    assert!(
        write_block(dir.path(), &*hq, 0, 101, BlockCompaction::default())
            .unwrap()
            .is_none()
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// promtool (Debian `prometheus` package) reads and analyzes a block we
/// wrote. Skipped when promtool is absent, except under CI.
#[test]
fn promtool_reads_our_block() {
    let have = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool missing under CI"
        );
        eprintln!("skipping: promtool not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let head = Head::new(HeadOptions::default());
    fill_head(&head, 30, 600, 15_000);
    let hq = head.querier(0, 7_200_000 - 1).unwrap();
    let meta = write_block(dir.path(), &*hq, 0, 7_200_000, BlockCompaction::default())
        .unwrap()
        .unwrap();
    let out = std::process::Command::new("promtool")
        .args(["tsdb", "list", "-r"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&meta.ulid), "{stdout}");
    assert!(stdout.contains("14400"), "{stdout}");
    let out = std::process::Command::new("promtool")
        .args(["tsdb", "analyze"])
        .arg(dir.path())
        .arg(&meta.ulid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Series: 30"), "{stdout}");
    assert!(stdout.contains("instance"), "{stdout}");
    // `promtool tsdb dump` opens the directory as a database: it wants a WAL.
    std::fs::create_dir(dir.path().join("wal")).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["tsdb", "dump", "--match", "{instance=\"host-7\"}"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains("host-7")).count(),
        480,
        "{stdout}"
    );
    assert!(stdout.contains("7185000"), "{stdout}");
}
