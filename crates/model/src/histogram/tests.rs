//! Unit tests of the histogram math, mostly mirroring Prometheus's test
//! tables (inputs and expected values are Prometheus's; the code is ours).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::approx_constant)]

use super::*;

/// Builds a float histogram from compact tuples.
#[allow(clippy::too_many_arguments)]
pub(super) fn fh(
    schema: i32,
    zero_threshold: f64,
    zero_count: f64,
    count: f64,
    sum: f64,
    pos_spans: &[(i32, u32)],
    pos: &[f64],
    neg_spans: &[(i32, u32)],
    neg: &[f64],
) -> FloatHistogram {
    let spans = |s: &[(i32, u32)]| {
        s.iter()
            .map(|&(offset, length)| Span { offset, length })
            .collect::<Vec<_>>()
    };
    FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema,
        zero_threshold,
        zero_count,
        count,
        sum,
        positive_spans: spans(pos_spans),
        negative_spans: spans(neg_spans),
        positive_buckets: pos.to_vec(),
        negative_buckets: neg.to_vec(),
        custom_values: Vec::new(),
    }
}

fn assert_same(mut got: FloatHistogram, mut want: FloatHistogram) {
    got.compact(0);
    want.compact(0);
    assert!(got.equals(&want), "got  {got:?}\nwant {want:?}");
}

#[test]
fn add_same_layout() {
    let mut a = fh(
        0,
        0.01,
        11.0,
        30.0,
        2.345,
        &[(-2, 2), (1, 3)],
        &[1.0, 0.0, 3.0, 4.0, 7.0],
        &[(3, 2), (3, 2)],
        &[3.0, 1.0, 5.0, 6.0],
    );
    let b = fh(
        0,
        0.01,
        8.0,
        21.0,
        1.234,
        &[(-2, 2), (1, 3)],
        &[0.0, 0.0, 2.0, 3.0, 6.0],
        &[(3, 2), (3, 2)],
        &[1.0, 1.0, 4.0, 4.0],
    );
    a.add(&b).unwrap();
    let want = fh(
        0,
        0.01,
        19.0,
        51.0,
        2.345 + 1.234,
        &[(-2, 2), (1, 3)],
        &[1.0, 0.0, 5.0, 7.0, 13.0],
        &[(3, 2), (3, 2)],
        &[4.0, 2.0, 9.0, 10.0],
    );
    assert_same(a, want);
}

#[test]
fn display_like_prometheus() {
    let h = fh(
        1,
        0.01,
        5.5,
        3493.3,
        2349209.324,
        &[(-2, 1), (2, 3)],
        &[1.0, 3.3, 4.2, 0.1],
        &[(3, 2), (3, 2)],
        &[3.1, 3.0, 1.234e5, 1000.0],
    );
    h.validate().unwrap();
    assert_eq!(
        h.to_string(),
        "{count:3493.3, sum:2.349209324e+06, [-22.62741699796952,-16):1000, [-16,-11.31370849898476):123400, [-4,-2.82842712474619):3, [-2.82842712474619,-2):3.1, [-0.01,0.01]:5.5, (0.35355339059327373,0.5]:1, (1,1.414213562373095]:3.3, (1.414213562373095,2]:4.2, (2,2.82842712474619]:0.1}"
    );
    let mut c = fh(
        CUSTOM_BUCKETS_SCHEMA,
        0.0,
        0.0,
        3493.3,
        2349209.324,
        &[(0, 1), (2, 4)],
        &[1.0, 3.3, 4.2, 0.1, 5.0],
        &[],
        &[],
    );
    c.custom_values = vec![1.0, 2.0, 5.0, 10.0, 15.0, 20.0];
    c.validate().unwrap();
    assert_eq!(
        c.to_string(),
        "{count:3493.3, sum:2.349209324e+06, [-Inf,1]:1, (5,10]:3.3, (10,15]:4.2, (15,20]:0.1, (20,+Inf]:5}"
    );
}

#[test]
fn notation_round_trip() {
    let h = parse_test_histogram("{{schema:1 sum:5 count:4 z_bucket:1 z_bucket_w:0.001 offset:1 buckets:[1 2 1] n_offset:-2 n_buckets:[1] counter_reset_hint:gauge}}").unwrap();
    assert_eq!(h.schema, 1);
    assert_eq!(
        h.positive_spans,
        vec![Span {
            offset: 1,
            length: 3
        }]
    );
    assert_eq!(
        h.negative_spans,
        vec![Span {
            offset: -2,
            length: 1
        }]
    );
    assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
    assert_eq!(
        format_test_histogram(&h),
        "{{schema:1 count:4 sum:5 z_bucket:1 z_bucket_w:0.001 counter_reset_hint:gauge offset:1 buckets:[1 2 1] n_offset:-2 n_buckets:[1]}}"
    );
    let back = parse_test_histogram(&format_test_histogram(&h)).unwrap();
    assert!(back.equals(&h));
}

#[test]
fn upper_bounds() {
    assert_eq!(bucket_upper_bound(0, 0), 1.0);
    assert_eq!(bucket_upper_bound(0, 1), 2.0);
    assert_eq!(bucket_upper_bound(0, -1), 0.5);
    assert_eq!(bucket_upper_bound(1, 1), 1.414213562373095);
    assert_eq!(bucket_upper_bound(-1, 1), 4.0);
    assert_eq!(bucket_upper_bound(0, 1024), f64::MAX);
    assert_eq!(bucket_upper_bound(0, 1025), f64::INFINITY);
    assert_eq!(bucket_upper_bound(8, 1024 * 256), f64::MAX);
    assert_eq!(bucket_upper_bound(-4, 64), f64::MAX);
}
