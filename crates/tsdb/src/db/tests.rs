#![allow(clippy::unwrap_used, clippy::expect_used)]

use pharos_model::{Labels, Matcher};
use pharos_storage::{Appendable, Queryable};

use super::*;
use crate::block::tests::collect;

const H: i64 = 3600 * 1000;

fn opts() -> DbOptions {
    DbOptions {
        min_block_duration: H,
        max_block_duration: 9 * H,
        retention_time: 0,
        ..DbOptions::default()
    }
}

fn append_range(db: &Db, from: i64, to: i64, step: i64) {
    let mut app = db.appender();
    for s in 0..5 {
        let ls = Labels::from_pairs(&[("__name__", "m"), ("i", &s.to_string())]);
        let mut t = from;
        while t < to {
            app.append(0, &ls, t, t as f64).unwrap();
            t += step;
        }
    }
    app.commit().unwrap();
}

#[test]
fn head_is_cut_into_blocks_and_queries_merge() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    append_range(&db, 0, 5 * H, 60_000);
    let before = collect(&*db.querier(0, 10 * H).unwrap(), &[]);
    db.compact().unwrap();
    assert!(!db.blocks().is_empty());
    let after = collect(&*db.querier(0, 10 * H).unwrap(), &[]);
    assert_eq!(before, after);
    assert_eq!(after[0].1.len(), 300);
    // A second process cannot open the directory.
    match Db::open(dir.path(), opts()) {
        Err(TsdbError::DirLocked(_)) => {}
        other => panic!("expected DirLocked, got {other:?}"),
    }
    db.close().unwrap();
    drop(db);
    // Reopen: the blocks are served and the head comes back from the WAL.
    let db = Db::open(dir.path(), opts()).unwrap();
    let got = collect(&*db.querier(0, 10 * H).unwrap(), &[]);
    assert_eq!(got, after);
}

#[test]
fn level_compaction_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.retention_time = 20 * H;
    let db = Db::open(dir.path(), o).unwrap();
    for h in 0..30 {
        append_range(&db, h * H, (h + 1) * H, 60_000);
        db.compact().unwrap();
    }
    let blocks = db.blocks();
    assert!(
        blocks.iter().any(|b| b.meta().compaction.level >= 2),
        "{:?}",
        blocks.iter().map(|b| b.meta()).collect::<Vec<_>>()
    );
    // Retention dropped the oldest data.
    let newest = blocks.iter().map(|b| b.meta().max_time).max().unwrap();
    assert!(blocks.iter().all(|b| newest - b.meta().max_time < 20 * H));
    assert!(blocks.first().unwrap().meta().min_time > 0);
    // Data between blocks is continuous.
    let got = collect(&*db.querier(10 * H, 20 * H - 1).unwrap(), &[]);
    assert_eq!(got[0].1.len(), 600);
    // Only block directories that are served remain.
    let dirs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
        .count();
    assert_eq!(dirs, blocks.len());
}

#[test]
fn corrupted_block_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        append_range(&db, 0, 6 * H, 60_000);
        db.compact().unwrap();
        assert!(db.blocks().len() >= 2);
        let victim = db.blocks()[0].dir().join("index");
        let mut b = std::fs::read(&victim).unwrap();
        let n = b.len();
        b[n - 20] ^= 0x55;
        std::fs::write(&victim, b).unwrap();
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), opts()).unwrap();
    let mut m = String::new();
    db.write_metrics(&mut m);
    assert!(m.contains("pharos_tsdb_corrupt_blocks 1"), "{m}");
    assert!(!collect(&*db.querier(0, 10 * H).unwrap(), &[]).is_empty());
}

#[test]
fn planner_follows_prometheus() {
    let meta = |id: &str, a: i64, b: i64| BlockMeta {
        ulid: id.into(),
        min_time: a,
        max_time: b,
        stats: Default::default(),
        compaction: Default::default(),
        version: 1,
    };
    let r = block_ranges(2 * H, 54 * H);
    assert_eq!(r, vec![2 * H, 6 * H, 18 * H, 54 * H]);
    // Three 2h blocks fill 6h, but the newest block is excluded.
    let ms = vec![
        meta("a", 0, 2 * H),
        meta("b", 2 * H, 4 * H),
        meta("c", 4 * H, 6 * H),
    ];
    assert_eq!(plan_compaction(&ms, &r), vec!["a", "b"]);
    let ms = vec![meta("a", 0, 2 * H), meta("b", 2 * H, 4 * H)];
    assert!(plan_compaction(&ms, &r).is_empty());
    let mut ms = vec![
        meta("a", 0, 2 * H),
        meta("b", 2 * H, 4 * H),
        meta("c", 4 * H, 6 * H),
    ];
    ms.push(meta("d", 6 * H, 8 * H));
    assert_eq!(plan_compaction(&ms, &r), vec!["a", "b", "c"]);
}

#[test]
fn snapshot_delete_and_clean_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("data"), opts()).unwrap();
    append_range(&db, 0, 4 * H, 60_000);
    db.compact().unwrap();
    let card = db.head_cardinality(10).unwrap();
    assert_eq!(card.num_series, 5);
    assert_eq!(card.series_by_metric_name, vec![("m".to_string(), 5)]);
    assert_eq!(card.series_by_label_pair[0], ("__name__=m".to_string(), 5));

    let snap = dir.path().join("snap");
    db.snapshot(&snap, true).unwrap();
    let (blocks, bad) = open_blocks(&snap).unwrap();
    assert!(bad.is_empty());
    assert_eq!(blocks.len(), db.blocks().len() + 1);
    let total: u64 = blocks.iter().map(|b| b.meta().stats.num_samples).sum();
    assert_eq!(total, 5 * 240);

    let m = Matcher::equal("i", "3");
    db.delete_series(0, H - 1, std::slice::from_ref(&m))
        .unwrap();
    let got = collect(&*db.querier(0, 10 * H).unwrap(), std::slice::from_ref(&m));
    assert_eq!(got[0].1.first().unwrap().t, H);
    assert_eq!(db.clean_tombstones().unwrap(), 1);
    assert!(db.blocks().iter().all(|b| b.tombstones().total() == 0));
    let again = collect(&*db.querier(0, 10 * H).unwrap(), std::slice::from_ref(&m));
    assert_eq!(again, got);
}

#[test]
fn deleting_head_data_survives_head_cutting() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    append_range(&db, 0, H, 60_000);
    let m = Matcher::equal("i", "2");
    db.delete_series(0, H / 2 - 1, std::slice::from_ref(&m))
        .unwrap();
    let all = Matcher::new(pharos_model::MatchOp::Regex, "i", "2|3").unwrap();
    let got = collect(&*db.querier(0, 10 * H).unwrap(), std::slice::from_ref(&all));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1.len(), 30);
    assert_eq!(got[0].1[0].t, H / 2);
    assert_eq!(got[1].1.len(), 60);
    // Seeking into the deleted range lands after it.
    let mut ss = db
        .querier(0, 10 * H)
        .unwrap()
        .select(true, None, std::slice::from_ref(&m));
    let mut it = ss.next().unwrap().samples;
    assert_eq!(it.seek(60_000).unwrap().t, H / 2);
    assert_eq!(it.next().unwrap().t, H / 2 + 60_000);
    // An open series set holds back head truncation (see
    // head_truncation_waits_for_older_queries): release it.
    drop((it, ss));
    // A series wholly deleted disappears.
    db.delete_series(0, 10 * H, &[Matcher::equal("i", "4")])
        .unwrap();
    assert!(
        collect(
            &*db.querier(0, 10 * H).unwrap(),
            &[Matcher::equal("i", "4")]
        )
        .is_empty()
    );
    // Cut the head: the block does not hold the deleted samples.
    append_range(&db, H, 3 * H, 60_000);
    db.compact().unwrap();
    let b = &db.blocks()[0];
    assert_eq!(b.meta().stats.num_series, 4);
    assert_eq!(b.meta().stats.num_samples, 3 * 60 + 30);
}

#[test]
fn size_retention_keeps_newest_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.max_block_duration = H;
    let db = Db::open(dir.path(), o.clone()).unwrap();
    append_range(&db, 0, 8 * H, 60_000);
    db.compact().unwrap();
    let blocks = db.blocks();
    assert!(blocks.len() >= 4, "{}", blocks.len());
    let n = blocks.len();
    let newest_two: u64 = blocks.iter().rev().take(2).map(|b| b.size()).sum();
    drop(blocks);
    db.close().unwrap();
    drop(db);
    // The WAL and head chunks count first, as in Prometheus.
    let head_bytes = dir_size(&dir.path().join("wal")) + dir_size(&dir.path().join("chunks_head"));
    o.retention_size = newest_two + head_bytes;
    let db = Db::open(dir.path(), o).unwrap();
    assert_eq!(db.apply_retention().unwrap(), n - 2);
    assert_eq!(db.blocks().len(), 2);
    let mut m = String::new();
    db.write_metrics(&mut m);
    let want = format!("prometheus_tsdb_size_retentions_total {}", n - 2);
    assert!(m.contains(&want), "{m}");
}

#[test]
fn head_truncation_waits_for_older_queries() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    append_range(&db, 0, 3 * H, 60_000);
    // A query started before the head is cut...
    let q = db.querier(0, 10 * H).unwrap();
    let mut ss = q.select(true, None, &[Matcher::equal("i", "1")]);
    drop(q);
    let d2 = db.clone();
    let compaction = std::thread::spawn(move || d2.compact().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    // ...still reads every head sample while compaction waits for it.
    assert!(!compaction.is_finished());
    let s = ss.next().unwrap();
    let mut it = s.samples;
    let mut n = 0;
    while it.next().is_some() {
        n += 1;
    }
    assert_eq!(n, 180);
    drop(ss);
    compaction.join().unwrap();
    assert!(!db.blocks().is_empty());
    let got = collect(
        &*db.querier(0, 10 * H).unwrap(),
        &[Matcher::equal("i", "1")],
    );
    assert_eq!(got[0].1.len(), 180);
}

#[test]
fn head_deletions_survive_restart_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    append_range(&db, 0, 3 * H, 60_000);
    db.delete_series(0, H / 2 - 1, &[Matcher::equal("i", "2")])
        .unwrap();
    db.delete_series(0, 10 * H, &[Matcher::equal("i", "4")])
        .unwrap();
    // A deletion matching nothing in the head logs nothing.
    db.delete_series(0, 10 * H, &[Matcher::equal("i", "9")])
        .unwrap();
    // Samples appended after a deletion, past the series' time range then,
    // are not deleted (Prometheus's semantics).
    append_range(&db, 3 * H, 3 * H + 600_000, 60_000);
    let want = collect(&*db.querier(0, 10 * H).unwrap(), &[]);
    let count = |v: &[(Labels, Vec<Sample>)], i: &str| {
        v.iter()
            .find(|(l, _)| l.get("i") == Some(i))
            .map_or(0, |(_, s)| s.len())
    };
    assert_eq!(count(&want, "1"), 190);
    assert_eq!(count(&want, "2"), 160);
    assert_eq!(count(&want, "4"), 10);
    // Three checkpoints cut three segments; the third rewrites segments
    // 0..=1 (holding the samples and the tombstones) into a checkpoint.
    let mut st = Default::default();
    for _ in 0..3 {
        st = db.wal().checkpoint_stats(db.head(), 0).unwrap();
    }
    assert!(st.dir.ends_with("checkpoint.00000001"), "{st:?}");
    assert!(st.segments_deleted >= 1, "{st:?}");
    db.close().unwrap();
    drop(db);

    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.wal().replay_stats().tombstones, 2);
    assert_eq!(collect(&*db.querier(0, 10 * H).unwrap(), &[]), want);
    // Blocks cut from the replayed head do not hold the deleted samples.
    db.compact().unwrap();
    let b = &db.blocks()[0];
    assert_eq!((b.meta().min_time, b.meta().max_time), (0, H));
    assert_eq!(b.meta().stats.num_series, 4);
    assert_eq!(b.meta().stats.num_samples, 3 * 60 + 30);
    assert_eq!(collect(&*db.querier(0, 10 * H).unwrap(), &[]), want);
    db.close().unwrap();
    drop(db);
    // And once more after the head was cut and checkpointed.
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(collect(&*db.querier(0, 10 * H).unwrap(), &[]), want);
}

#[test]
fn chunks_closed_by_replay_reach_chunks_head() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    // Chunks are cut at hour boundaries: two closed chunks per series.
    append_range(&db, 0, 2 * H + 600_000, 60_000);
    let want = collect(&*db.querier(0, 10 * H).unwrap(), &[]);
    // Gone without a clean close: the closed chunks were never written.
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.wal().replay_stats().mmapped_chunks, 0);
    assert_eq!(collect(&*db.querier(0, 10 * H).unwrap(), &[]), want);
    // The replay wrote the chunks it closed: even after another crash...
    drop(db);
    // ...the next start loads them instead of replaying their samples.
    let db = Db::open(dir.path(), opts()).unwrap();
    let rs = db.wal().replay_stats();
    assert_eq!(rs.mmapped_chunks, 10);
    assert_eq!(rs.samples_in_mmapped_chunks, 5 * 120);
    assert_eq!(collect(&*db.querier(0, 10 * H).unwrap(), &[]), want);
}
