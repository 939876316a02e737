#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use pharos_model::{MatchOp, Matcher, Sample, is_stale_nan, stale_nan};

use super::*;

fn lbl(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
    Matcher::new(op, n, v).unwrap()
}

/// All series and samples selected by `ms` over `[mint, maxt]`.
fn query(h: &Head, mint: i64, maxt: i64, ms: &[Matcher]) -> Vec<(Labels, Vec<Sample>)> {
    let q = h.querier(mint, maxt).unwrap();
    let mut set = q.select(true, None, ms);
    let mut out = Vec::new();
    while let Some(mut s) = set.next() {
        let mut v = Vec::new();
        while let Some(x) = s.samples.next() {
            v.push(x);
        }
        assert!(s.samples.err().is_none());
        out.push((s.labels, v));
    }
    assert!(set.err().is_none());
    out
}

fn ts(samples: &[Sample]) -> Vec<i64> {
    samples.iter().map(|s| s.t).collect()
}

#[test]
fn append_commit_query() {
    let h = Head::default();
    let a = lbl(&[("__name__", "up"), ("job", "a")]);
    let b = lbl(&[("__name__", "up"), ("job", "b")]);
    let mut app = h.appender();
    let ra = app.append(0, &a, 1000, 1.0).unwrap();
    let rb = app.append(0, &b, 1000, 0.0).unwrap();
    assert_ne!(ra, rb);
    // Not visible before commit.
    assert!(
        query(
            &h,
            i64::MIN,
            i64::MAX,
            &[m(MatchOp::Equal, "__name__", "up")]
        )
        .is_empty()
    );
    app.commit().unwrap();
    let mut app = h.appender();
    // A cached reference skips the label lookup and lands on the same series.
    assert_eq!(app.append(ra, &a, 2000, 2.0).unwrap(), ra);
    assert_eq!(app.append(0, &b, 2000, 1.0).unwrap(), rb);
    app.commit().unwrap();

    let got = query(&h, 0, 10_000, &[m(MatchOp::Equal, "__name__", "up")]);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, a);
    assert_eq!(
        got[0].1,
        vec![Sample { t: 1000, v: 1.0 }, Sample { t: 2000, v: 2.0 }]
    );
    assert_eq!(got[1].0, b);
    // Range restriction.
    let got = query(&h, 1500, 10_000, &[m(MatchOp::Equal, "job", "a")]);
    assert_eq!(ts(&got[0].1), vec![2000]);
    assert!(query(&h, 2001, 10_000, &[m(MatchOp::Equal, "job", "a")]).is_empty());

    let s = h.stats();
    assert_eq!(s.num_series, 2);
    assert_eq!(s.samples_appended, 4);
    assert_eq!(s.chunks, 2);
    assert_eq!((s.min_time, s.max_time), (Some(1000), Some(2000)));
    assert_eq!(s.active_appenders, 0);
}

#[test]
fn out_of_order_duplicate_and_noop() {
    let h = Head::default();
    let a = lbl(&[("__name__", "x")]);
    let mut app = h.appender();
    let r = app.append(0, &a, 100, 1.0).unwrap();
    app.commit().unwrap();

    let mut app = h.appender();
    assert_eq!(app.append(r, &a, 99, 1.0), Err(AppendError::OutOfOrder));
    assert_eq!(app.append(r, &a, 100, 2.0), Err(AppendError::Duplicate));
    assert_eq!(app.append(r, &a, 100, 1.0), Ok(r)); // silently accepted
    assert_eq!(app.append(r, &a, 200, 1.0), Ok(r));
    // Checked against this transaction's own pending sample too.
    assert_eq!(app.append(r, &a, 150, 1.0), Err(AppendError::OutOfOrder));
    assert_eq!(app.append(r, &a, 200, 3.0), Err(AppendError::Duplicate));
    assert_eq!(app.append(r, &a, 200, 1.0), Ok(r));
    app.commit().unwrap();
    let got = query(&h, 0, 1000, &[m(MatchOp::Equal, "__name__", "x")]);
    assert_eq!(
        got[0].1,
        vec![Sample { t: 100, v: 1.0 }, Sample { t: 200, v: 1.0 }]
    );
    let s = h.stats();
    assert_eq!(s.out_of_order_samples, 2);
    assert_eq!(s.duplicate_samples, 2);
    assert_eq!(s.samples_appended, 2);

    // Two appenders race: the later commit's older sample is dropped and
    // counted.
    let mut a1 = h.appender();
    let mut a2 = h.appender();
    a1.append(r, &a, 400, 4.0).unwrap();
    a2.append(r, &a, 300, 3.0).unwrap();
    a1.commit().unwrap();
    a2.commit().unwrap();
    let got = query(&h, 0, 1000, &[m(MatchOp::Equal, "__name__", "x")]);
    assert_eq!(ts(&got[0].1), vec![100, 200, 400]);
    assert_eq!(h.stats().out_of_order_samples, 3);
}

#[test]
fn nan_and_staleness_are_values() {
    let h = Head::default();
    let a = lbl(&[("__name__", "x")]);
    let mut app = h.appender();
    app.append(0, &a, 1, f64::NAN).unwrap();
    app.append(0, &a, 2, stale_nan()).unwrap();
    app.append(0, &a, 3, 5.0).unwrap();
    app.commit().unwrap();
    let mut app = h.appender();
    // Same timestamp, same NaN bits: a no-op, not a duplicate.
    app.append(0, &a, 3, 5.0).unwrap();
    app.append(0, &a, 4, stale_nan()).unwrap();
    app.append(0, &a, 4, stale_nan()).unwrap();
    app.commit().unwrap();
    let got = query(&h, 0, 10, &[m(MatchOp::Equal, "__name__", "x")]);
    let v = &got[0].1;
    assert_eq!(ts(v), vec![1, 2, 3, 4]);
    assert!(v[0].v.is_nan() && !is_stale_nan(v[0].v));
    assert!(is_stale_nan(v[1].v) && is_stale_nan(v[3].v));
}

#[test]
fn rollback_and_drop_leave_nothing_visible() {
    let h = Head::default();
    let a = lbl(&[("__name__", "x"), ("i", "1")]);
    let b = lbl(&[("__name__", "x"), ("i", "2")]);
    let mut app = h.appender();
    app.append(0, &a, 1, 1.0).unwrap();
    app.append(0, &b, 1, 1.0).unwrap();
    assert_eq!(h.stats().num_series, 2);
    app.rollback();
    {
        let mut app = h.appender();
        app.append(0, &a, 1, 1.0).unwrap();
        // dropped without commit
    }
    let st = h.stats();
    assert_eq!(st.num_series, 0, "{st:?}");
    assert_eq!(st.samples_appended, 0);
    assert_eq!(h.num_indexed_series(), 0);
    let q = h.querier(i64::MIN, i64::MAX).unwrap();
    assert!(q.label_values("i", &[]).unwrap().is_empty());
    assert!(q.label_names(&[]).unwrap().is_empty());
    assert!(query(&h, i64::MIN, i64::MAX, &[m(MatchOp::Regex, "i", ".+")]).is_empty());

    // A committed series survives another appender's rollback; a series kept
    // alive by a second appender survives the first one's rollback.
    let mut app = h.appender();
    app.append(0, &a, 5, 1.0).unwrap();
    app.commit().unwrap();
    let mut a1 = h.appender();
    let mut a2 = h.appender();
    a1.append(0, &a, 6, 1.0).unwrap();
    a1.append(0, &b, 6, 1.0).unwrap();
    a2.append(0, &b, 7, 1.0).unwrap();
    a1.rollback();
    assert_eq!(h.stats().num_series, 2);
    a2.commit().unwrap();
    let got = query(&h, 0, 100, &[m(MatchOp::Equal, "__name__", "x")]);
    assert_eq!(got.len(), 2);
    assert_eq!(ts(&got[0].1), vec![5]);
    assert_eq!(ts(&got[1].1), vec![7]);
}

#[test]
fn stale_reference_after_gc_falls_back_to_labels() {
    let h = Head::default();
    let a = lbl(&[("__name__", "x")]);
    let mut app = h.appender();
    let r1 = app.append(0, &a, 1000, 1.0).unwrap();
    app.commit().unwrap();
    let t = h.truncate(2000);
    assert_eq!(t.series_removed, 1);
    assert_eq!(t.chunks_removed, 1);
    let mut app = h.appender();
    assert_eq!(app.append(r1, &a, 1500, 1.0), Err(AppendError::OutOfBounds));
    let r2 = app.append(r1, &a, 3000, 1.0).unwrap();
    assert_ne!(r1, r2, "references are never reused");
    app.commit().unwrap();
    let got = query(&h, 0, 10_000, &[m(MatchOp::Equal, "__name__", "x")]);
    assert_eq!(ts(&got[0].1), vec![3000]);
    assert_eq!(h.stats().out_of_bound_samples, 1);
}

#[test]
fn out_of_bounds_half_a_chunk_range_back() {
    let h = Head::new(HeadOptions {
        chunk_range: 1000,
        ..Default::default()
    });
    let a = lbl(&[("__name__", "x")]);
    let b = lbl(&[("__name__", "y")]);
    let mut app = h.appender();
    app.append(0, &a, 10_000, 1.0).unwrap();
    app.commit().unwrap();
    let mut app = h.appender();
    assert_eq!(app.append(0, &b, 9_499, 1.0), Err(AppendError::OutOfBounds));
    assert!(app.append(0, &b, 9_500, 1.0).is_ok());
    app.commit().unwrap();
}

#[test]
fn empty_labels_rejected() {
    let h = Head::default();
    let mut app = h.appender();
    assert!(matches!(
        app.append(0, &Labels::empty(), 1, 1.0),
        Err(AppendError::InvalidLabels(_))
    ));
}

#[test]
fn chunks_cut_at_120_and_iterate_with_seek() {
    let h = Head::default();
    let a = lbl(&[("__name__", "x")]);
    let mut r = 0;
    for i in 0..1000i64 {
        let mut app = h.appender();
        r = app.append(r, &a, i * 15_000, i as f64).unwrap();
        app.commit().unwrap();
    }
    let s = h.stats();
    // 1000 samples at 15s: 120 per chunk and 2h windows (480 samples) =>
    // windows [0,480) [480,960) [960,1000) cut into 120-sample chunks:
    // 4 + 4 + 1 chunks.
    assert_eq!(s.chunks, 9);
    assert_eq!(s.chunks_created, 9);
    let q = h.querier(100_000, 10_000_000).unwrap();
    let mut set = q.select(false, None, &[m(MatchOp::Equal, "__name__", "x")]);
    let mut it = set.next().unwrap().samples;
    assert_eq!(it.seek(0).map(|s| s.t), Some(105_000));
    assert_eq!(it.seek(105_000).map(|s| s.t), Some(105_000));
    assert_eq!(it.next().map(|s| s.t), Some(120_000));
    assert_eq!(it.seek(5_000_001).map(|s| s.t), Some(5_010_000));
    assert_eq!(it.seek(5_010_000).map(|s| s.t), Some(5_010_000));
    assert_eq!(it.next().map(|s| s.v), Some(335.0));
    assert_eq!(it.seek(9_990_000).map(|s| s.t), Some(9_990_000));
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
    assert_eq!(it.seek(0), None);
    assert!(set.next().is_none());

    // Every sample once, in order, across chunk boundaries.
    let got = query(
        &h,
        i64::MIN,
        i64::MAX,
        &[m(MatchOp::Equal, "__name__", "x")],
    );
    assert_eq!(
        ts(&got[0].1),
        (0..1000).map(|i| i * 15_000).collect::<Vec<_>>()
    );

    // Truncation drops whole chunks only.
    let t = h.truncate(120 * 15_000 + 1);
    assert_eq!(t.chunks_removed, 1);
    assert_eq!(h.stats().chunks, 8);
    assert_eq!(h.min_time(), Some(120 * 15_000));
}

#[test]
fn matchers_select_without_label() {
    let h = Head::default();
    let series = [
        lbl(&[("__name__", "up"), ("job", "a"), ("env", "prod")]),
        lbl(&[("__name__", "up"), ("job", "b")]),
        lbl(&[("__name__", "up")]),
        lbl(&[("__name__", "down"), ("job", "a")]),
    ];
    let mut app = h.appender();
    for s in &series {
        app.append(0, s, 10, 1.0).unwrap();
    }
    app.commit().unwrap();
    let names = |ms: &[Matcher]| -> Vec<Labels> {
        query(&h, 0, 100, ms).into_iter().map(|x| x.0).collect()
    };
    let up = m(MatchOp::Equal, "__name__", "up");
    assert_eq!(
        names(&[up.clone(), m(MatchOp::Equal, "job", "")]),
        vec![series[2].clone()]
    );
    assert_eq!(
        names(&[up.clone(), m(MatchOp::NotEqual, "job", "a")]),
        vec![series[2].clone(), series[1].clone()]
    );
    assert_eq!(
        names(&[up.clone(), m(MatchOp::NotRegex, "env", "p.*")]).len(),
        2
    );
    assert_eq!(
        names(&[up.clone(), m(MatchOp::Regex, "job", "a|")]).len(),
        2
    );
    assert_eq!(names(&[m(MatchOp::Regex, "job", ".+")]).len(), 3);
    // Sorted by labels.
    assert_eq!(names(&[m(MatchOp::Regex, "__name__", ".+")]), {
        let mut v = series.to_vec();
        v.sort();
        v
    });

    let q = h.querier(0, 100).unwrap();
    assert_eq!(q.label_names(&[]).unwrap(), vec!["__name__", "env", "job"]);
    assert_eq!(q.label_values("job", &[]).unwrap(), vec!["a", "b"]);
    assert_eq!(
        q.label_values("job", std::slice::from_ref(&up)).unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(
        q.label_values("__name__", &[m(MatchOp::Equal, "job", "a")])
            .unwrap(),
        vec!["down", "up"]
    );
    assert_eq!(
        q.label_names(&[m(MatchOp::Equal, "__name__", "down")])
            .unwrap(),
        vec!["__name__", "job"]
    );
    // Outside the head's time range.
    let q = h.querier(200, 300).unwrap();
    assert!(q.label_names(&[]).unwrap().is_empty());
    assert!(q.label_values("job", &[up]).unwrap().is_empty());
}

#[test]
fn hints_narrow_the_range() {
    let h = Head::default();
    let a = lbl(&[("__name__", "x")]);
    let mut app = h.appender();
    for t in [10, 20, 30, 40] {
        app.append(0, &a, t, 1.0).unwrap();
    }
    app.commit().unwrap();
    let q = h.querier(0, 100).unwrap();
    let hints = SelectHints {
        start: 15,
        end: 35,
        ..Default::default()
    };
    let mut set = q.select(false, Some(&hints), &[m(MatchOp::Equal, "__name__", "x")]);
    let mut it = set.next().unwrap().samples;
    assert_eq!(it.next().map(|s| s.t), Some(20));
    assert_eq!(it.next().map(|s| s.t), Some(30));
    assert_eq!(it.next(), None);
    let mut set = q.select(
        false,
        Some(&SelectHints::default()),
        &[m(MatchOp::Equal, "__name__", "x")],
    );
    let mut it = set.next().unwrap().samples;
    assert_eq!(it.next().map(|s| s.t), Some(10));
}

#[test]
fn querier_outlives_appends_and_head_handle() {
    let h = Head::default();
    let a = lbl(&[("__name__", "x")]);
    let mut app = h.appender();
    app.append(0, &a, 1, 1.0).unwrap();
    app.commit().unwrap();
    let q = h.querier(0, 1000).unwrap();
    let mut set = q.select(false, None, &[m(MatchOp::Equal, "__name__", "x")]);
    let mut s = set.next().unwrap();
    // Appends after the snapshot do not disturb the iterator.
    let mut app = h.appender();
    app.append(0, &a, 2, 2.0).unwrap();
    app.commit().unwrap();
    drop(h);
    assert_eq!(s.samples.next(), Some(Sample { t: 1, v: 1.0 }));
    assert_eq!(s.samples.next(), None);
}

#[derive(Default)]
struct RecordingLog {
    series: Mutex<Vec<SeriesRecord>>,
    samples: Mutex<Vec<SampleRecord>>,
    fail: AtomicBool,
}

impl CommitLog for RecordingLog {
    fn log(&self, series: &[SeriesRecord], samples: &[SampleRecord]) -> Result<(), StorageError> {
        if self.fail.load(Relaxed) {
            return Err(StorageError::Io("disk full".into()));
        }
        self.series.lock().extend_from_slice(series);
        self.samples.lock().extend_from_slice(samples);
        Ok(())
    }
}

#[test]
fn commit_log_sees_batches_and_failure_aborts() {
    let log = Arc::new(RecordingLog::default());
    let h = Head::new(HeadOptions {
        commit_log: Some(log.clone()),
        ..Default::default()
    });
    let a = lbl(&[("__name__", "x")]);
    let b = lbl(&[("__name__", "y")]);
    let mut app = h.appender();
    let ra = app.append(0, &a, 1, 1.0).unwrap();
    app.append(0, &a, 2, 2.0).unwrap();
    app.commit().unwrap();
    let mut app = h.appender();
    app.append(ra, &a, 3, 3.0).unwrap();
    let rb = app.append(0, &b, 3, 3.0).unwrap();
    app.commit().unwrap();
    assert_eq!(
        *log.series.lock(),
        vec![
            SeriesRecord {
                series_ref: ra,
                labels: a.clone()
            },
            SeriesRecord {
                series_ref: rb,
                labels: b.clone()
            }
        ]
    );
    assert_eq!(log.samples.lock().len(), 4);

    log.fail.store(true, Relaxed);
    let c = lbl(&[("__name__", "z")]);
    let mut app = h.appender();
    app.append(ra, &a, 4, 4.0).unwrap();
    app.append(0, &c, 4, 4.0).unwrap();
    assert_eq!(app.commit(), Err(StorageError::Io("disk full".into())));
    let got = query(&h, 0, 100, &[m(MatchOp::Regex, "__name__", ".+")]);
    assert_eq!(got.len(), 2);
    assert_eq!(ts(&got[0].1), vec![1, 2, 3]);
    assert_eq!(
        h.stats().num_series,
        2,
        "the failed batch's new series is gone"
    );
    assert_eq!(h.stats().samples_appended, 4);
}

#[test]
fn gc_removes_empty_series_and_truncate_updates_index() {
    let h = Head::default();
    let old = lbl(&[("__name__", "old"), ("k", "v1")]);
    let new = lbl(&[("__name__", "new"), ("k", "v2")]);
    let mut app = h.appender();
    app.append(0, &old, 1000, 1.0).unwrap();
    app.append(0, &new, 5000, 1.0).unwrap();
    app.commit().unwrap();
    // A pending sample protects its series from truncation.
    let mut pending = h.appender();
    pending.append(0, &old, 6000, 1.0).unwrap();
    assert_eq!(h.truncate(2000).series_removed, 0);
    pending.commit().unwrap();
    let t = h.truncate(2000);
    assert_eq!(t.series_removed, 0, "old now has a sample at 6000");
    let t = h.truncate(5500);
    assert_eq!(t.series_removed, 1);
    let q = h.querier(i64::MIN, i64::MAX).unwrap();
    assert_eq!(q.label_values("k", &[]).unwrap(), vec!["v1"]);
    assert_eq!(q.label_values("__name__", &[]).unwrap(), vec!["old"]);
    assert_eq!(h.min_time(), Some(1000));
    assert_eq!(h.gc(), TruncateStats::default());
    assert_eq!(h.stats().truncations, 4);
}

#[test]
fn metrics_text() {
    let h = Head::default();
    let mut out = String::new();
    h.write_metrics(&mut out);
    assert!(out.contains("# TYPE pharos_tsdb_head_series gauge\npharos_tsdb_head_series 0\n"));
    // An empty head reports (MaxInt64, MinInt64), as Prometheus does.
    let value = |name: &str, out: &str| -> f64 {
        let prefix = format!("{name} ");
        let line = out.lines().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].parse().unwrap()
    };
    assert_eq!(value("pharos_tsdb_head_min_time", &out), i64::MAX as f64);
    assert_eq!(value("pharos_tsdb_head_max_time", &out), i64::MIN as f64);
    let a = lbl(&[("__name__", "x")]);
    let mut app = h.appender();
    app.append(0, &a, 1500, 1.0).unwrap();
    app.append(0, &a, 1400, 1.0).unwrap_err();
    app.commit().unwrap();
    let mut out = String::new();
    h.write_metrics(&mut out);
    for want in [
        "# HELP pharos_tsdb_head_series ",
        "pharos_tsdb_head_series 1\n",
        "# TYPE pharos_tsdb_head_samples_appended_total counter\n",
        "pharos_tsdb_head_samples_appended_total{type=\"float\"} 1\n",
        "pharos_tsdb_out_of_order_samples_total{type=\"float\"} 1\n",
        "pharos_tsdb_head_chunks 1\n",
        "pharos_tsdb_head_series_created_total 1\n",
        "pharos_tsdb_head_min_time 1500\n",
        "pharos_tsdb_head_max_time 1500\n",
        "pharos_tsdb_head_max_time_seconds 1.5\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert!(out.contains("pharos_tsdb_head_samples_appended_total{type=\"histogram\"} 0\n"));
    // Every sample line is preceded by its HELP and TYPE (the histogram
    // line follows the float one of the same family).
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains("type=\"histogram\""))
        .collect();
    assert_eq!(lines.len() % 3, 0);
    for c in lines.chunks(3) {
        assert!(c[0].starts_with("# HELP ") && c[1].starts_with("# TYPE "));
    }
}

#[test]
fn concurrent_appenders_and_queries() {
    let h = Head::new(HeadOptions {
        stripes: 4,
        ..Default::default()
    });
    const THREADS: usize = 4;
    const SERIES: usize = 200;
    const ROUNDS: i64 = 50;
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|sc| {
        for w in 0..THREADS {
            let h = h.clone();
            sc.spawn(move || {
                let labels: Vec<Labels> = (0..SERIES)
                    .map(|i| {
                        lbl(&[
                            ("__name__", "m"),
                            ("w", &w.to_string()),
                            ("i", &i.to_string()),
                        ])
                    })
                    .collect();
                // Every writer also writes a shared series; each writer's
                // samples there interleave, so some are out of order.
                let shared = lbl(&[("__name__", "shared")]);
                let mut refs = vec![0u64; SERIES];
                for r in 0..ROUNDS {
                    let mut app = h.appender();
                    for (i, l) in labels.iter().enumerate() {
                        refs[i] = app.append(refs[i], l, r * 1000, r as f64).unwrap();
                    }
                    let _ = app.append(0, &shared, r * 1000 + w as i64, 1.0);
                    if r % 7 == 3 {
                        app.rollback();
                    } else {
                        app.commit().unwrap();
                    }
                }
            });
        }
        let h2 = h.clone();
        let stop2 = stop.clone();
        sc.spawn(move || {
            while !stop2.load(Relaxed) {
                for (_, samples) in query(
                    &h2,
                    i64::MIN,
                    i64::MAX,
                    &[m(MatchOp::Equal, "__name__", "m")],
                ) {
                    // Whole transactions only: a series' samples are a prefix
                    // of the committed rounds, in order, without gaps other
                    // than rolled-back rounds.
                    assert!(samples.windows(2).all(|w| w[0].t < w[1].t));
                    assert!(samples.iter().all(|s| (s.t / 1000) % 7 != 3));
                }
            }
        });
        // Let writers finish, then stop the reader.
        std::thread::sleep(std::time::Duration::from_millis(10));
        while h.stats().active_appenders > 0 || h.stats().samples_appended < 10 {
            std::thread::yield_now();
        }
        let committed_rounds = (0..ROUNDS).filter(|r| r % 7 != 3).count();
        while query(
            &h,
            i64::MIN,
            i64::MAX,
            &[m(MatchOp::Equal, "__name__", "m")],
        )
        .iter()
        .map(|x| x.1.len())
        .sum::<usize>()
            < THREADS * SERIES * committed_rounds
        {
            std::thread::yield_now();
        }
        stop.store(true, Relaxed);
    });
    let committed_rounds = (0..ROUNDS).filter(|r| r % 7 != 3).count();
    let got = query(
        &h,
        i64::MIN,
        i64::MAX,
        &[m(MatchOp::Equal, "__name__", "m")],
    );
    assert_eq!(got.len(), THREADS * SERIES);
    assert!(got.iter().all(|x| x.1.len() == committed_rounds));
    let s = h.stats();
    assert_eq!(s.num_series, (THREADS * SERIES + 1) as u64);
    let shared = query(
        &h,
        i64::MIN,
        i64::MAX,
        &[m(MatchOp::Equal, "__name__", "shared")],
    );
    assert!(shared[0].1.windows(2).all(|w| w[0].t < w[1].t));
    assert_eq!(
        s.samples_appended,
        (THREADS * SERIES * committed_rounds + shared[0].1.len()) as u64
    );
}

proptest::proptest! {
    /// Random transactions against a model: what the head returns is what
    /// the model says, and the rejection counts match.
    #[test]
    fn head_matches_model(
        txns in proptest::collection::vec(
            (proptest::collection::vec((0usize..4, 0i64..60, proptest::prop_oneof![Just(1.0f64), Just(2.0), Just(f64::NAN)]), 0..20),
             proptest::bool::ANY),
            0..30),
        max_per_chunk in 1u16..10,
        qmin in 0i64..30, qlen in 0i64..40,
    ) {
        let h = Head::new(HeadOptions { max_samples_per_chunk: max_per_chunk, chunk_range: 20, stripes: 2, ..Default::default() });
        let names = ["a", "b", "c", "d"];
        let mut model: BTreeMap<usize, Vec<(i64, u64)>> = BTreeMap::new();
        let mut rejected = 0u64;
        let mut oob = 0u64;
        for (samples, commit) in txns {
            let mut app = h.appender();
            // Prometheus's bound: half a chunk range behind the newest sample.
            let min_valid = model.values().flatten().map(|x| x.0).max().map_or(i64::MIN, |m| m - 10);
            let mut pending: BTreeMap<usize, Vec<(i64, u64)>> = BTreeMap::new();
            for (s, t, v) in samples {
                let l = lbl(&[("__name__", names[s])]);
                let last = pending.get(&s).and_then(|p| p.last()).or_else(|| model.get(&s).and_then(|p| p.last())).copied();
                let res = app.append(0, &l, t, v);
                if t < min_valid {
                    proptest::prop_assert_eq!(res, Err(AppendError::OutOfBounds));
                    oob += 1;
                    continue;
                }
                match last {
                    Some((lt, _)) if t < lt => { proptest::prop_assert_eq!(res, Err(AppendError::OutOfOrder)); rejected += 1; }
                    Some((lt, lv)) if t == lt && lv != v.to_bits() => { proptest::prop_assert_eq!(res, Err(AppendError::Duplicate)); rejected += 1; }
                    Some((lt, _)) if t == lt => { proptest::prop_assert!(res.is_ok()); }
                    _ => { proptest::prop_assert!(res.is_ok()); pending.entry(s).or_default().push((t, v.to_bits())); }
                }
            }
            if commit {
                app.commit().unwrap();
                for (s, v) in pending { model.entry(s).or_default().extend(v); }
            } else {
                app.rollback();
            }
        }
        let st = h.stats();
        proptest::prop_assert_eq!(st.num_series, model.len() as u64);
        proptest::prop_assert_eq!(st.out_of_order_samples + st.duplicate_samples, rejected);
        proptest::prop_assert_eq!(st.out_of_bound_samples, oob);
        let (qmax, sel) = (qmin + qlen, [m(MatchOp::Regex, "__name__", ".+")]);
        let got = query(&h, qmin, qmax, &sel);
        let want: Vec<(Labels, Vec<(i64, u64)>)> = model.iter()
            .map(|(s, v)| (lbl(&[("__name__", names[*s])]), v.iter().copied().filter(|x| x.0 >= qmin && x.0 <= qmax).collect::<Vec<_>>()))
            .filter(|x| !x.1.is_empty())
            .collect();
        let got: Vec<(Labels, Vec<(i64, u64)>)> = got.into_iter().map(|(l, v)| (l, v.iter().map(|s| (s.t, s.v.to_bits())).collect())).collect();
        proptest::prop_assert_eq!(&got, &want);
        // Seeking into the middle of the range lands where the model says.
        let target = qmin + qlen / 2;
        let q = h.querier(qmin, qmax).unwrap();
        let mut set = q.select(true, None, &sel);
        for (_, samples) in &want {
            let mut s = set.next().unwrap();
            let expect = samples.iter().find(|x| x.0 >= target).map(|x| x.0);
            proptest::prop_assert_eq!(s.samples.seek(target).map(|x| x.t), expect);
            let after = samples.iter().find(|x| Some(x.0) > expect).map(|x| x.0);
            proptest::prop_assert_eq!(s.samples.next().map(|x| x.t), if expect.is_some() { after } else { None });
        }
    }
}

use pharos_storage::SelectHints;
use proptest::prelude::Just;

/// A float stale marker on a series whose newest sample is a native
/// histogram is stored as a histogram stale marker of the same kind (sum =
/// the stale NaN, in the histogram chunk, no chunk cut), at commit, in the
/// same commit as the histograms, and when a WAL holding the float record
/// is replayed; a float series keeps float stale markers.
#[test]
fn float_stale_marker_on_histogram_series_becomes_histogram_stale_marker() {
    use super::hist_tests::{float_hist, int_hist, read_all, to_float};
    use pharos_model::HistogramValue;
    let dir = tempfile::tempdir().unwrap();
    let (ih, fh, mixed, fl) = (
        lbl(&[("__name__", "ih")]),
        lbl(&[("__name__", "fh")]),
        lbl(&[("__name__", "mixed")]),
        lbl(&[("__name__", "f")]),
    );
    let check = |h: &Head| {
        let got = read_all(h, i64::MIN, i64::MAX);
        assert_eq!(got.len(), 4);
        for (l, v) in &got {
            assert_eq!(v.len(), 4, "{l:?}");
            let last = &v[3];
            assert_eq!(last.0, 3);
            assert!(is_stale_nan(last.1), "{l:?}");
            if *l == fl {
                assert!(last.2.is_none(), "float series keeps a float marker");
                continue;
            }
            let hist = last.2.as_ref().expect("a histogram stale marker");
            assert!(is_stale_nan(hist.sum));
            assert_eq!(hist.count, 0.0);
            assert!(hist.positive_buckets.is_empty());
            assert_eq!(
                v[2].2,
                Some(if *l == fh {
                    float_hist(2)
                } else {
                    to_float(&int_hist(2))
                })
            );
        }
        // One chunk per series: the markers went into the histogram chunks
        // (and count as histogram samples).
        assert_eq!(h.stats().chunks, 4);
        assert_eq!(h.stats().histogram_samples_appended, 12);
    };
    {
        let (h, wal) = crate::open_head(
            dir.path(),
            HeadOptions::default(),
            crate::WalOptions::default(),
        )
        .unwrap();
        for t in 0..3i64 {
            let mut app = h.appender();
            app.append_histogram(0, &ih, t, HistogramValue::Int(int_hist(t as u64)))
                .unwrap();
            app.append_histogram(0, &fh, t, HistogramValue::Float(float_hist(t as u64)))
                .unwrap();
            app.append_histogram(0, &mixed, t, HistogramValue::Int(int_hist(t as u64)))
                .unwrap();
            app.append(0, &fl, t, t as f64).unwrap();
            if t < 2 {
                app.commit().unwrap();
            } else {
                // `mixed` gets its stale marker in the same commit as its
                // last histogram.
                app.append(0, &mixed, 3, stale_nan()).unwrap();
                app.commit().unwrap();
            }
        }
        let mut app = h.appender();
        app.append(0, &ih, 3, stale_nan()).unwrap();
        app.append(0, &fh, 3, stale_nan()).unwrap();
        app.append(0, &fl, 3, stale_nan()).unwrap();
        app.commit().unwrap();
        check(&h);
        wal.close().unwrap();
    }
    // The WAL holds the markers as float samples (as Prometheus writes
    // them); the replay converts them the same way.
    let (h, _wal) = crate::open_head(
        dir.path(),
        HeadOptions::default(),
        crate::WalOptions::default(),
    )
    .unwrap();
    check(&h);
}
