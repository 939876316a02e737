//! Block compaction through the Db: the planner's overlap-first rule
//! (vertical compaction) and queries unchanged by merges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pharos_model::{Labels, Sample};
use pharos_storage::{Appendable, Queryable};

use super::*;
use crate::block::tests::collect;
use crate::{Head, HeadOptions};

const H: i64 = 3600 * 1000;

fn opts() -> DbOptions {
    DbOptions {
        min_block_duration: 2 * H,
        max_block_duration: 18 * H,
        retention_time: 0,
        ..DbOptions::default()
    }
}

fn meta(id: &str, a: i64, b: i64) -> BlockMeta {
    BlockMeta {
        ulid: id.into(),
        min_time: a,
        max_time: b,
        stats: Default::default(),
        compaction: Default::default(),
        version: 1,
    }
}

#[test]
fn planner_merges_overlapping_blocks_first() {
    let r = block_ranges(2 * H, 54 * H);
    // b overlaps a, c overlaps b only through a's end: one run.
    let ms = vec![
        meta("c", 3 * H, 5 * H),
        meta("a", 0, 4 * H),
        meta("b", H, 2 * H),
        meta("d", 6 * H, 8 * H),
        meta("e", 7 * H, 9 * H),
    ];
    assert_eq!(plan_compaction(&ms, &r), vec!["a", "b", "c"]);
    // The next run once the first is merged (even with the newest block).
    let ms = vec![
        meta("abc", 0, 5 * H),
        meta("d", 6 * H, 8 * H),
        meta("e", 7 * H, 9 * H),
    ];
    assert_eq!(plan_compaction(&ms, &r), vec!["d", "e"]);
    // Touching is not overlapping: the leveled rules apply.
    let ms = vec![meta("a", 0, 2 * H), meta("b", 2 * H, 4 * H)];
    assert!(plan_compaction(&ms, &r).is_empty());
}

/// Writes a block over `[mint, maxt)` with series `m{i="1"}` (values
/// `sign * t` every `step`) and `m{i=<extra>}` (value 1).
fn write_block_of(dir: &Path, mint: i64, maxt: i64, step: i64, sign: f64, extra: &str) {
    let head = Head::new(HeadOptions::default());
    let s1 = Labels::from_pairs(&[("__name__", "m"), ("i", "1")]);
    let s2 = Labels::from_pairs(&[("__name__", "m"), ("i", extra)]);
    let mut app = head.appender();
    for t in (mint..maxt).step_by(step as usize) {
        app.append(0, &s1, t, sign * t as f64).unwrap();
        app.append(0, &s2, t, 1.0).unwrap();
    }
    app.commit().unwrap();
    let q = head.querier(mint, maxt - 1).unwrap();
    block::write_block(dir, &*q, mint, maxt, BlockCompaction::default())
        .unwrap()
        .unwrap();
}

#[test]
fn overlapping_blocks_are_compacted_vertically() {
    let dir = tempfile::tempdir().unwrap();
    // An existing 2h block and a backfilled one overlapping its second
    // hour, written before the Db opens the directory.
    write_block_of(dir.path(), 0, 2 * H, 15_000, 1.0, "a");
    write_block_of(dir.path(), H, 3 * H, 10_000, -1.0, "b");
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.blocks().len(), 2);
    let before = collect(&*db.querier(0, 10 * H).unwrap(), &[]);
    assert_eq!(before.len(), 3);
    db.compact().unwrap();
    let blocks = db.blocks();
    assert_eq!(blocks.len(), 1);
    let m = blocks[0].meta();
    assert_eq!((m.min_time, m.max_time), (0, 3 * H));
    assert_eq!(m.compaction.level, 2);
    assert_eq!(m.compaction.parents.len(), 2);
    assert_eq!(m.compaction.sources.len(), 2);
    let after = collect(&*db.querier(0, 10 * H).unwrap(), &[]);
    assert_eq!(after, before);
    // The union of samples, one per timestamp.
    let s1 = &after[0].1;
    assert!(s1.windows(2).all(|w| w[0].t < w[1].t));
    let want = {
        let mut ts: Vec<i64> = (0..2 * H).step_by(15_000).collect();
        ts.extend((H..3 * H).step_by(10_000));
        ts.sort_unstable();
        ts.dedup();
        ts.len()
    };
    assert_eq!(s1.len(), want);
    // Equal timestamps keep the earlier block's sample (as queries did).
    assert!(s1.contains(&Sample { t: H, v: H as f64 }));
    assert!(s1.contains(&Sample {
        t: H + 10_000,
        v: -((H + 10_000) as f64)
    }));
    assert_eq!(m.stats.num_samples, (want + 480 + 720) as u64);
    let mut out = String::new();
    db.write_metrics(&mut out);
    assert!(
        out.contains("prometheus_tsdb_vertical_compactions_total 1\n"),
        "{out}"
    );
    assert!(
        out.contains("prometheus_tsdb_compactions_total 1\n"),
        "{out}"
    );
    // A restart sees the merged block only.
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.blocks().len(), 1);
    assert_eq!(collect(&*db.querier(0, 10 * H).unwrap(), &[]), before);
}

#[test]
fn leveled_compaction_copies_and_keeps_queries() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let mut app = db.appender();
    for t in (0..9 * H).step_by(30_000) {
        for i in 0..4 {
            let ls = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
            app.append(0, &ls, t, (t * i) as f64).unwrap();
        }
    }
    app.commit().unwrap();
    let before = collect(&*db.querier(0, 10 * H).unwrap(), &[]);
    db.compact().unwrap();
    let blocks = db.blocks();
    assert!(blocks.iter().any(|b| b.meta().compaction.level > 1));
    assert_eq!(collect(&*db.querier(0, 10 * H).unwrap(), &[]), before);
    let mut out = String::new();
    db.write_metrics(&mut out);
    assert!(
        out.contains("prometheus_tsdb_vertical_compactions_total 0\n"),
        "{out}"
    );
}

#[test]
fn retention_changes_without_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.retention(), (0, 0));
    let mut app = db.appender();
    let ls = Labels::from_pairs(&[("__name__", "m")]);
    for t in (0..13 * H).step_by(60_000) {
        app.append(0, &ls, t, 1.0).unwrap();
    }
    app.commit().unwrap();
    db.compact().unwrap();
    let n = db.blocks().len();
    assert!(n >= 2, "{n}");
    let newest_end = db.blocks().iter().map(|b| b.meta().max_time).max().unwrap();
    db.set_retention(2 * H, 0);
    assert_eq!(db.retention(), (2 * H, 0));
    let mut out = String::new();
    db.write_metrics(&mut out);
    assert!(
        out.contains("prometheus_tsdb_retention_limit_seconds 7200\n"),
        "{out}"
    );
    let deleted = db.apply_retention().unwrap();
    assert!(deleted > 0);
    assert!(
        db.blocks()
            .iter()
            .all(|b| newest_end - b.meta().max_time < 2 * H)
    );
    // Back to no limit: nothing more goes.
    db.set_retention(0, 0);
    assert_eq!(db.apply_retention().unwrap(), 0);
}
