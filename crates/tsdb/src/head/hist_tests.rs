//! Native histograms in the head: append, query, duplicates, staleness,
//! and (with a data directory) WAL replay, head chunk files and
//! checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pharos_model::{
    CounterResetHint, FloatHistogram, Histogram, HistogramValue, MatchOp, Matcher, Span,
    is_stale_nan, stale_nan,
};
use pharos_storage::AppendError;

use super::*;

pub(crate) fn int_hist(i: u64) -> Histogram {
    // Three positive buckets (indices 0..2) and one negative, growing with i.
    let b = [i + 1, 2 * i + 1, i];
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 1,
        zero_threshold: 0.001,
        zero_count: i,
        count: b.iter().sum::<u64>() + i + 3 * i,
        sum: 1.5 * i as f64,
        positive_spans: vec![Span {
            offset: 0,
            length: 3,
        }],
        negative_spans: vec![Span {
            offset: 2,
            length: 1,
        }],
        positive_buckets: vec![
            b[0] as i64,
            b[1] as i64 - b[0] as i64,
            b[2] as i64 - b[1] as i64,
        ],
        negative_buckets: vec![3 * i as i64],
        custom_values: vec![],
    }
}

/// The float form of an integer histogram (absolute counts), ignoring the
/// counter-reset hint.
pub(crate) fn to_float(h: &Histogram) -> FloatHistogram {
    let abs = |d: &[i64]| {
        let mut acc = 0i64;
        d.iter()
            .map(|x| {
                acc += x;
                acc as f64
            })
            .collect::<Vec<f64>>()
    };
    FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count as f64,
        count: h.count as f64,
        sum: h.sum,
        positive_spans: h.positive_spans.clone(),
        negative_spans: h.negative_spans.clone(),
        positive_buckets: abs(&h.positive_buckets),
        negative_buckets: abs(&h.negative_buckets),
        custom_values: h.custom_values.clone(),
    }
}

pub(crate) fn float_hist(i: u64) -> FloatHistogram {
    let mut f = to_float(&int_hist(i));
    f.sum += 0.25;
    f.count += 0.5;
    f.zero_count += 0.5;
    f
}

/// What a query returns per sample: time, value, histogram (hint cleared).
pub(crate) type Got = (i64, f64, Option<FloatHistogram>);

pub(crate) fn read_all(q: &dyn Queryable, mint: i64, maxt: i64) -> Vec<(Labels, Vec<Got>)> {
    let q = q.querier(mint, maxt).unwrap();
    let mut set = q.select(true, None, &[]);
    let mut out = Vec::new();
    while let Some(mut s) = set.next() {
        let mut v = Vec::new();
        while let Some(x) = s.samples.next() {
            let h = s.samples.histogram().cloned().map(|mut h| {
                h.counter_reset_hint = CounterResetHint::Unknown;
                h
            });
            v.push((x.t, x.v, h));
        }
        assert!(s.samples.err().is_none(), "{:?}", s.samples.err());
        out.push((s.labels, v));
    }
    assert!(set.err().is_none());
    out
}

fn lbl(name: &str) -> Labels {
    Labels::from_pairs(&[("__name__", name)])
}

fn same(got: &Got, t: i64, want: &FloatHistogram) {
    assert_eq!(got.0, t);
    assert_eq!(got.1.to_bits(), want.sum.to_bits(), "v is the sum at {t}");
    assert_eq!(got.2.as_ref(), Some(want), "histogram at {t}");
}

#[test]
fn int_and_float_histograms_round_trip_through_chunks() {
    let h = Head::default();
    let (a, b) = (lbl("ih"), lbl("fh"));
    let mut app = h.appender();
    let (mut ra, mut rb) = (0, 0);
    for i in 0..300u64 {
        let t = i as i64 * 1000;
        ra = app
            .append_histogram(ra, &a, t, HistogramValue::Int(int_hist(i)))
            .unwrap();
        rb = app
            .append_histogram(rb, &b, t, HistogramValue::Float(float_hist(i)))
            .unwrap();
    }
    app.commit().unwrap();
    assert_eq!(h.stats().samples_appended, 600);
    assert_eq!(h.stats().histogram_samples_appended, 600);
    // Several chunks each (cut at 120 samples or 1 KiB).
    assert!(h.stats().chunks >= 6, "{:?}", h.stats());
    let got = read_all(&h, i64::MIN, i64::MAX);
    assert_eq!(got.len(), 2);
    let (fh, ih) = (&got[0], &got[1]);
    assert_eq!((fh.0.clone(), ih.0.clone()), (b.clone(), a.clone()));
    assert_eq!(ih.1.len(), 300);
    assert_eq!(fh.1.len(), 300);
    for i in 0..300u64 {
        same(&ih.1[i as usize], i as i64 * 1000, &to_float(&int_hist(i)));
        same(&fh.1[i as usize], i as i64 * 1000, &float_hist(i));
    }
    // Seek into the middle, then next.
    let q = h.querier(0, i64::MAX).unwrap();
    let mut set = q.select(
        true,
        None,
        &[Matcher::new(MatchOp::Equal, "__name__", "ih").unwrap()],
    );
    let mut s = set.next().unwrap();
    let x = s.samples.seek(150_500).unwrap();
    assert_eq!(x.t, 151_000);
    let want = to_float(&int_hist(151));
    let mut got = s.samples.histogram().unwrap().clone();
    got.counter_reset_hint = CounterResetHint::Unknown;
    assert_eq!(got, want);
    assert_eq!(s.samples.next().unwrap().t, 152_000);
}

#[test]
fn a_series_switches_between_floats_and_histograms() {
    let h = Head::default();
    let a = lbl("mixed");
    let mut app = h.appender();
    let mut r = 0;
    for t in 0..10 {
        r = app.append(r, &a, t, t as f64).unwrap();
    }
    for t in 10..20 {
        r = app
            .append_histogram(r, &a, t, HistogramValue::Int(int_hist(t as u64)))
            .unwrap();
    }
    for t in 20..25 {
        r = app
            .append_histogram(r, &a, t, HistogramValue::Float(float_hist(t as u64)))
            .unwrap();
    }
    app.commit().unwrap();
    // A second commit goes back to floats.
    let mut app = h.appender();
    for t in 25..30 {
        app.append(r, &a, t, t as f64).unwrap();
    }
    app.commit().unwrap();
    let got = read_all(&h, i64::MIN, i64::MAX);
    let v = &got[0].1;
    assert_eq!(v.len(), 30);
    for (t, x) in v.iter().enumerate() {
        let t = t as i64;
        match t {
            10..20 => same(x, t, &to_float(&int_hist(t as u64))),
            20..25 => same(x, t, &float_hist(t as u64)),
            _ => assert_eq!((x.0, x.1, x.2.is_none()), (t, t as f64, true)),
        }
    }
    // float, int histogram, float histogram, float: four chunks.
    assert_eq!(h.stats().chunks, 4);
}

#[test]
fn histogram_duplicates_out_of_order_and_invalid() {
    let h = Head::default();
    let a = lbl("h");
    let mut app = h.appender();
    let r = app
        .append_histogram(0, &a, 100, HistogramValue::Int(int_hist(1)))
        .unwrap();
    // Same transaction: the same histogram again is a no-op, another one
    // or a float at that time a duplicate, older out of order.
    assert_eq!(
        app.append_histogram(r, &a, 100, HistogramValue::Int(int_hist(1))),
        Ok(r)
    );
    assert_eq!(
        app.append_histogram(r, &a, 100, HistogramValue::Int(int_hist(2))),
        Err(AppendError::Duplicate)
    );
    assert_eq!(app.append(r, &a, 100, 1.0), Err(AppendError::Duplicate));
    assert_eq!(
        app.append_histogram(r, &a, 99, HistogramValue::Int(int_hist(1))),
        Err(AppendError::OutOfOrder)
    );
    app.commit().unwrap();
    // Against the committed sample.
    let mut app = h.appender();
    assert_eq!(
        app.append_histogram(r, &a, 100, HistogramValue::Int(int_hist(1))),
        Ok(r)
    );
    assert_eq!(
        app.append_histogram(r, &a, 100, HistogramValue::Float(to_float(&int_hist(1)))),
        Err(AppendError::Duplicate)
    );
    assert_eq!(app.append(r, &a, 100, 1.0), Err(AppendError::Duplicate));
    assert_eq!(
        app.append_histogram(r, &a, 50, HistogramValue::Int(int_hist(1))),
        Err(AppendError::OutOfOrder)
    );
    // Malformed: spans cover 3 buckets, 2 counts given.
    let mut bad = int_hist(3);
    bad.positive_buckets.pop();
    assert!(matches!(
        app.append_histogram(r, &a, 200, HistogramValue::Int(bad)),
        Err(AppendError::Storage(_))
    ));
    let mut bad = int_hist(3);
    bad.schema = 42;
    assert!(
        app.append_histogram(r, &a, 200, HistogramValue::Int(bad))
            .is_err()
    );
    app.commit().unwrap();
    let got = read_all(&h, i64::MIN, i64::MAX);
    assert_eq!(got[0].1.len(), 1);
    // A float series refuses a histogram at its newest timestamp.
    let f = lbl("f");
    let mut app = h.appender();
    let rf = app.append(0, &f, 100, 1.0).unwrap();
    app.commit().unwrap();
    let mut app = h.appender();
    assert_eq!(
        app.append_histogram(rf, &f, 100, HistogramValue::Int(int_hist(1))),
        Err(AppendError::Duplicate)
    );
}

#[test]
fn stale_histograms_and_counter_resets() {
    let h = Head::default();
    let a = lbl("h");
    let mut app = h.appender();
    let mut r = 0;
    for i in 0..5u64 {
        r = app
            .append_histogram(r, &a, i as i64, HistogramValue::Int(int_hist(10 - i)))
            .unwrap();
    }
    let stale = Histogram {
        sum: stale_nan(),
        ..Histogram::default()
    };
    app.append_histogram(r, &a, 5, HistogramValue::Int(stale))
        .unwrap();
    app.append_histogram(r, &a, 6, HistogramValue::Int(int_hist(1)))
        .unwrap();
    app.commit().unwrap();
    let got = read_all(&h, i64::MIN, i64::MAX);
    let v = &got[0].1;
    assert_eq!(v.len(), 7);
    for i in 0..5u64 {
        same(&v[i as usize], i as i64, &to_float(&int_hist(10 - i)));
    }
    assert!(is_stale_nan(v[5].1));
    assert!(is_stale_nan(v[5].2.as_ref().unwrap().sum));
    same(&v[6], 6, &to_float(&int_hist(1)));
    // Every decrease is a counter reset and cuts a chunk (5 samples, 5
    // chunks); the stale marker fits the last, the sample after it starts
    // another, as in Prometheus.
    assert_eq!(h.stats().chunks, 6);
}

#[test]
fn histograms_survive_restart_mmapped_chunks_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || HeadOptions {
        chunk_range: 1_000_000,
        ..HeadOptions::default()
    };
    let a = lbl("ih");
    let b = lbl("fh");
    let c = lbl("f");
    let want;
    {
        let (h, wal) = crate::open_head(dir.path(), opts(), crate::WalOptions::default()).unwrap();
        for i in 0..400u64 {
            let mut app = h.appender();
            let t = i as i64 * 100;
            app.append_histogram(0, &a, t, HistogramValue::Int(int_hist(i)))
                .unwrap();
            app.append_histogram(0, &b, t, HistogramValue::Float(float_hist(i)))
                .unwrap();
            app.append(0, &c, t, i as f64).unwrap();
            app.commit().unwrap();
        }
        h.write_closed_chunks();
        want = read_all(&h, i64::MIN, i64::MAX);
        wal.close().unwrap();
    }
    assert!(
        std::fs::read_dir(dir.path().join("chunks_head"))
            .unwrap()
            .count()
            > 0
    );
    {
        let (h, wal) = crate::open_head(dir.path(), opts(), crate::WalOptions::default()).unwrap();
        let st = wal.replay_stats();
        assert!(st.mmapped_chunks > 0, "{st:?}");
        assert!(h.stats().histogram_samples_appended > 0);
        assert_eq!(read_all(&h, i64::MIN, i64::MAX), want);
        // Keep appending after the replay, then truncate and checkpoint.
        let mut app = h.appender();
        app.append_histogram(0, &a, 40_000, HistogramValue::Int(int_hist(400)))
            .unwrap();
        app.commit().unwrap();
        h.truncate(20_000);
        wal.checkpoint(&h, 20_000).unwrap();
        wal.close().unwrap();
    }
    // Without the head chunk files: everything from the WAL (checkpoint
    // plus segments).
    std::fs::remove_dir_all(dir.path().join("chunks_head")).unwrap();
    let (h, _wal) = crate::open_head(dir.path(), opts(), crate::WalOptions::default()).unwrap();
    let got = read_all(&h, 20_000, i64::MAX);
    let ih = got.iter().find(|s| s.0 == a).unwrap();
    assert_eq!(ih.1.len(), 201);
    for (k, x) in ih.1.iter().enumerate() {
        let i = 200 + k as u64;
        same(x, i as i64 * 100, &to_float(&int_hist(i)));
    }
    let fh = got.iter().find(|s| s.0 == b).unwrap();
    assert_eq!(fh.1.len(), 200);
    same(&fh.1[0], 20_000, &float_hist(200));
}

#[test]
fn checkpoint_keeps_live_histograms_and_drops_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wopts = crate::WalOptions {
        segment_size: 32 * 1024,
        compress: false,
    };
    let a = lbl("ih");
    let b = lbl("fh");
    let (h, wal) = crate::open_head(dir.path(), HeadOptions::default(), wopts).unwrap();
    for i in 0..2000u64 {
        let mut app = h.appender();
        let t = i as i64 * 1000;
        app.append_histogram(0, &a, t, HistogramValue::Int(int_hist(i)))
            .unwrap();
        app.append_histogram(0, &b, t, HistogramValue::Float(float_hist(i)))
            .unwrap();
        app.commit().unwrap();
    }
    let want = read_all(&h, 1_000_000, i64::MAX);
    h.truncate(1_000_000);
    let st = wal.checkpoint_stats(&h, 1_000_000).unwrap();
    assert!(st.segments_deleted > 0, "{st:?}");
    assert!(st.samples_kept > 0 && st.samples_dropped > 0, "{st:?}");
    wal.close().unwrap();
    drop(h);
    let (h, wal) = crate::open_head(dir.path(), HeadOptions::default(), wopts).unwrap();
    assert_eq!(wal.replay_stats().checkpoint, Some(st_index(&st)));
    assert_eq!(read_all(&h, 1_000_000, i64::MAX), want);
    // The checkpoint dropped the old samples of the segments it replaced
    // (segments after it may still hold some; replay keeps those, as
    // Prometheus does).
    let got = read_all(&h, i64::MIN, i64::MAX);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|s| s.1.len() < 2000), "nothing was dropped");
}

fn st_index(st: &crate::wal::CheckpointStats) -> u32 {
    st.dir
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("checkpoint.")
        .parse()
        .unwrap()
}

fn nhcb(i: u64) -> Histogram {
    Histogram {
        schema: pharos_model::CUSTOM_BUCKETS_SCHEMA,
        count: 5 * i + 1,
        sum: 0.5 * i as f64,
        positive_spans: vec![Span {
            offset: 0,
            length: 3,
        }],
        positive_buckets: vec![i as i64, i as i64 + 1, -1],
        custom_values: vec![0.1, 1.0],
        ..Histogram::default()
    }
}

#[test]
fn custom_buckets_and_gauge_histograms_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, g) = (lbl("nhcb"), lbl("gauge_h"));
    let gauge = |i: u64| FloatHistogram {
        counter_reset_hint: CounterResetHint::Gauge,
        ..float_hist(10 - i)
    };
    {
        let (h, wal) = crate::open_head(
            dir.path(),
            HeadOptions::default(),
            crate::WalOptions::default(),
        )
        .unwrap();
        let mut app = h.appender();
        for i in 0..10u64 {
            app.append_histogram(0, &a, i as i64, HistogramValue::Int(nhcb(i)))
                .unwrap();
            app.append_histogram(0, &g, i as i64, HistogramValue::Float(gauge(i)))
                .unwrap();
        }
        app.commit().unwrap();
        wal.close().unwrap();
    }
    let (h, _wal) = crate::open_head(
        dir.path(),
        HeadOptions::default(),
        crate::WalOptions::default(),
    )
    .unwrap();
    let q = h.querier(i64::MIN, i64::MAX).unwrap();
    let mut set = q.select(true, None, &[]);
    let mut s = set.next().unwrap();
    assert_eq!(s.labels, g);
    for i in 0..10u64 {
        assert_eq!(s.samples.next().unwrap().t, i as i64);
        let got = s.samples.histogram().unwrap();
        // Decreasing counts in a gauge histogram are no counter reset: one
        // chunk, every sample marked as a gauge.
        assert_eq!(got, &gauge(i));
    }
    let mut s = set.next().unwrap();
    assert_eq!(s.labels, a);
    for i in 0..10u64 {
        assert_eq!(s.samples.next().unwrap().t, i as i64);
        let mut got = s.samples.histogram().unwrap().clone();
        got.counter_reset_hint = CounterResetHint::Unknown;
        assert_eq!(got, to_float(&nhcb(i)));
    }
    assert_eq!(h.stats().chunks, 2);
}

mod model {
    //! Random mixes of floats, integer and float histograms (with counter
    //! resets and stale markers) on one series, against a model of what
    //! the head keeps; then the same through a block.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Float(f64),
        Int(u64),
        FloatH(u64),
        Stale,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..10).prop_map(|x| Op::Float(f64::from(x))),
            (0u64..30).prop_map(Op::Int),
            (0u64..30).prop_map(Op::FloatH),
            Just(Op::Stale),
        ]
    }

    // Ok: a float sample, Err: a histogram one (test code, size is moot).
    #[allow(clippy::result_large_err)]
    fn value(o: &Op) -> Result<f64, HistogramValue> {
        match o {
            Op::Float(v) => Ok(*v),
            Op::Int(i) => Err(HistogramValue::Int(int_hist(*i))),
            Op::FloatH(i) => Err(HistogramValue::Float(float_hist(*i))),
            Op::Stale => Err(HistogramValue::Int(Histogram {
                sum: stale_nan(),
                ..Histogram::default()
            })),
        }
    }

    fn expect(o: &Op) -> (u64, Option<FloatHistogram>) {
        match value(o) {
            Ok(v) => (v.to_bits(), None),
            Err(HistogramValue::Int(h)) => (h.sum.to_bits(), Some(to_float(&h))),
            Err(HistogramValue::Float(h)) => (h.sum.to_bits(), Some(h)),
        }
    }

    fn clean(v: Vec<Got>) -> Vec<(i64, u64, Option<FloatHistogram>)> {
        v.into_iter()
            .map(|(t, x, h)| {
                // Stale markers decode as empty histograms with the marker
                // as sum (NaN, unequal to itself; `x` holds its bits).
                let h = h.map(|h| {
                    if is_stale_nan(h.sum) {
                        FloatHistogram::default()
                    } else {
                        h
                    }
                });
                (t, x.to_bits(), h)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn head_and_block_keep_what_the_model_keeps(
            ops in prop::collection::vec((0i64..3, op(), any::<bool>()), 1..250),
        ) {
            let h = Head::new(HeadOptions { chunk_range: 100, ..HeadOptions::default() });
            let a = lbl("s");
            let mut want: Vec<(i64, u64, Option<FloatHistogram>)> = Vec::new();
            let mut t = 0i64;
            let mut app = h.appender();
            for (dt, o, commit) in &ops {
                t += dt;
                let r = match value(o) {
                    Ok(v) => app.append(0, &a, t, v),
                    Err(hv) => app.append_histogram(0, &a, t, hv),
                };
                let (bits, hist) = expect(o);
                let hist = hist.map(|h| if is_stale_nan(h.sum) {
                    FloatHistogram::default()
                } else { h });
                match want.last() {
                    Some(l) if l.0 == t => {
                        // Same time: only an identical sample is accepted (as a
                        // no-op); histogram equality ignores the hint.
                        let same = l.1 == bits && l.2.as_ref().map(|x| x.count) == hist.as_ref().map(|x| x.count)
                            && l.2.is_some() == hist.is_some();
                        prop_assert_eq!(r.is_ok(), same, "at {} {:?}", t, o);
                    }
                    _ => {
                        prop_assert!(r.is_ok(), "at {} {:?}: {:?}", t, o, r);
                        want.push((t, bits, hist));
                    }
                }
                if *commit {
                    app.commit().unwrap();
                    app = h.appender();
                }
            }
            app.commit().unwrap();
            let got = read_all(&h, i64::MIN, i64::MAX);
            prop_assert_eq!(got.len(), 1);
            let got = clean(got.into_iter().next().unwrap().1);
            prop_assert_eq!(&got, &want);

            // Through a block.
            let dir = tempfile::tempdir().unwrap();
            let q = h.querier(i64::MIN, i64::MAX).unwrap();
            let meta = crate::block::write_block(dir.path(), &*q, 0, t + 1, Default::default())
                .unwrap()
                .unwrap();
            let b = std::sync::Arc::new(crate::block::Block::open(&dir.path().join(&meta.ulid)).unwrap());
            let bq = b.querier(i64::MIN, i64::MAX);
            let mut set = bq.select(true, None, &[]);
            let mut s = set.next().unwrap();
            let mut v = Vec::new();
            while let Some(x) = s.samples.next() {
                let hh = s.samples.histogram().cloned().map(|mut h| {
                    h.counter_reset_hint = CounterResetHint::Unknown;
                    h
                });
                v.push((x.t, x.v, hh));
            }
            prop_assert!(s.samples.err().is_none(), "{:?}", s.samples.err());
            prop_assert_eq!(&clean(v), &want);
        }
    }
}

#[test]
fn kind_switches_within_one_commit_replay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (lbl("x"), lbl("y"));
    let want;
    {
        let (h, wal) = crate::open_head(
            dir.path(),
            HeadOptions::default(),
            crate::WalOptions::default(),
        )
        .unwrap();
        let mut app = h.appender();
        for t in 0..12i64 {
            // x alternates floats and histograms; y stays a histogram.
            if t % 4 < 2 {
                app.append(0, &x, t, t as f64).unwrap();
            } else {
                app.append_histogram(0, &x, t, HistogramValue::Int(int_hist(t as u64)))
                    .unwrap();
            }
            app.append_histogram(0, &y, t, HistogramValue::Float(float_hist(t as u64)))
                .unwrap();
        }
        app.commit().unwrap();
        want = read_all(&h, i64::MIN, i64::MAX);
        assert_eq!(want[0].1.len(), 12);
        wal.close().unwrap();
    }
    let (h, wal) = crate::open_head(
        dir.path(),
        HeadOptions::default(),
        crate::WalOptions::default(),
    )
    .unwrap();
    assert_eq!(wal.replay_stats().samples_rejected, 0);
    assert_eq!(read_all(&h, i64::MIN, i64::MAX), want);
}
