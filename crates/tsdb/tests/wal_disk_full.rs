//! Disk full: a WAL write that fails with ENOSPC fails the commit with a
//! clear error and a counter, nothing of it becomes visible, queries go on,
//! and commits succeed again once space returns, with every acknowledged
//! sample replayed after a restart. Needs root to mount a small tmpfs;
//! skipped (with a message) otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use pharos_model::{Labels, MatchOp, Matcher};
use pharos_storage::{Appendable, Queryable};
use pharos_tsdb::{Head, HeadOptions, WalOptions, open_head};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn count(head: &Head) -> usize {
    let q = head.querier(i64::MIN, i64::MAX).unwrap();
    let m = Matcher::new(MatchOp::Equal, "__name__", "df").unwrap();
    let mut set = q.select(false, None, &[m]);
    let mut n = 0;
    while let Some(mut s) = set.next() {
        while s.samples.next().is_some() {
            n += 1;
        }
    }
    n
}

#[test]
fn disk_full_fails_commits_cleanly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("cannot mount a tmpfs (not root?): skipping the disk-full test");
        return;
    }
    let _m = Mount(mnt.clone());
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 1536 * 1024]).unwrap();
    let opts = WalOptions {
        segment_size: 1 << 20,
        compress: false,
    };
    let data = mnt.join("data");
    let (head, hw) = open_head(&data, HeadOptions::default(), opts).unwrap();
    let mut acked = 0usize;
    let mut failed = None;
    for step in 0..10_000i64 {
        let mut app = head.appender();
        for i in 0..100 {
            let l = Labels::from_pairs(&[("__name__", "df"), ("i", &i.to_string())]);
            app.append(0, &l, step * 1000, step as f64).unwrap();
        }
        match app.commit() {
            Ok(()) => acked += 100,
            Err(e) => {
                failed = Some((step, e.to_string()));
                break;
            }
        }
    }
    let (step, err) = failed.expect("the disk never filled up");
    assert!(err.contains("WAL write failed"), "{err}");
    assert_eq!(count(&head), acked, "a failed commit left samples visible");
    let mut m = String::new();
    hw.write_metrics(&mut m);
    assert!(!m.contains("pharos_tsdb_wal_writes_failed_total 0"), "{m}");

    // Space returns: commits succeed again.
    std::fs::remove_file(&filler).unwrap();
    for s in step..step + 20 {
        let mut app = head.appender();
        for i in 0..100 {
            let l = Labels::from_pairs(&[("__name__", "df"), ("i", &i.to_string())]);
            app.append(0, &l, s * 1000, s as f64).unwrap();
        }
        app.commit().unwrap();
        acked += 100;
    }
    assert_eq!(count(&head), acked);
    hw.close().unwrap();
    drop(head);
    let (head2, _hw2) = open_head(&data, HeadOptions::default(), opts).unwrap();
    assert_eq!(
        count(&head2),
        acked,
        "acknowledged samples lost after restart"
    );
}
