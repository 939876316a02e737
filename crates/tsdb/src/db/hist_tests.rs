//! Native histograms through the Db: head to block, block merges, restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pharos_model::{HistogramValue, Labels, MatchOp, Matcher};
use pharos_storage::Appendable;

use super::*;
use crate::chunkenc::{ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, ENCODING_XOR};
use crate::head::hist_tests::{float_hist, int_hist, read_all};

const H: i64 = 3600 * 1000;

fn opts() -> DbOptions {
    DbOptions {
        min_block_duration: H,
        max_block_duration: 9 * H,
        retention_time: 0,
        ..DbOptions::default()
    }
}

fn lbl(name: &str) -> Labels {
    Labels::from_pairs(&[("__name__", name)])
}

/// One sample per minute over `[from, to)` for: an integer histogram
/// series, a float histogram series, and one that alternates every hour
/// between floats and integer histograms.
fn append(db: &Db, from: i64, to: i64) {
    let mut app = db.appender();
    let mut t = from;
    while t < to {
        let i = (t / 60_000) as u64;
        app.append_histogram(0, &lbl("ih"), t, HistogramValue::Int(int_hist(i)))
            .unwrap();
        app.append_histogram(0, &lbl("fh"), t, HistogramValue::Float(float_hist(i)))
            .unwrap();
        if (t / H) % 2 == 0 {
            app.append(0, &lbl("mixed"), t, t as f64).unwrap();
        } else {
            app.append_histogram(0, &lbl("mixed"), t, HistogramValue::Int(int_hist(i)))
                .unwrap();
        }
        t += 60_000;
    }
    app.commit().unwrap();
}

/// Encodings of the chunks of series `name` in every block of `db`.
fn block_encodings(db: &Db, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for b in db.blocks() {
        let m = Matcher::new(MatchOp::Equal, "__name__", name).unwrap();
        for r in b.index().postings_for_matchers(&[m]).unwrap() {
            let (_, chunks) = b.index().series(r).unwrap();
            for c in chunks {
                out.push(b.chunks().chunk(c.r).unwrap().0);
            }
        }
    }
    out
}

#[test]
fn histograms_are_compacted_into_blocks_and_merged() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    append(&db, 0, 5 * H);
    let before = read_all(&db, 0, 10 * H);
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|s| s.1.len() == 300));
    db.compact().unwrap();
    assert!(!db.blocks().is_empty());
    assert_eq!(read_all(&db, 0, 10 * H), before);
    // Integer counts stay integer chunks, float counts float chunks.
    let ih = block_encodings(&db, "ih");
    assert!(
        !ih.is_empty() && ih.iter().all(|&e| e == ENCODING_HISTOGRAM),
        "{ih:?}"
    );
    let fh = block_encodings(&db, "fh");
    assert!(
        !fh.is_empty() && fh.iter().all(|&e| e == ENCODING_FLOAT_HISTOGRAM),
        "{fh:?}"
    );
    let mixed = block_encodings(&db, "mixed");
    assert!(mixed.contains(&ENCODING_XOR) && mixed.contains(&ENCODING_HISTOGRAM));

    // More data, more blocks, a level compaction merging them.
    append(&db, 5 * H, 12 * H);
    let before = read_all(&db, 0, 20 * H);
    db.compact().unwrap();
    assert!(
        db.blocks().iter().any(|b| b.meta().compaction.level > 1),
        "no merged block"
    );
    assert_eq!(read_all(&db, 0, 20 * H), before);
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(read_all(&db, 0, 20 * H), before);
}
