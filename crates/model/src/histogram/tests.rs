//! Unit tests of the histogram math, mostly mirroring Prometheus's test
//! tables (inputs and expected values are Prometheus's; the code is ours).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::approx_constant,
    clippy::excessive_precision
)]

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

mod upstream_data;

/// Builds a float histogram for the generated upstream tables; `hint` is
/// `U`, `R`, `N` or `G`.
#[allow(clippy::too_many_arguments)]
pub(super) fn fhx(
    schema: i32,
    zero_threshold: f64,
    zero_count: f64,
    count: f64,
    sum: f64,
    hint: char,
    pos_spans: &[(i32, u32)],
    pos: &[f64],
    neg_spans: &[(i32, u32)],
    neg: &[f64],
    custom: &[f64],
) -> FloatHistogram {
    let mut h = fh(
        schema,
        zero_threshold,
        zero_count,
        count,
        sum,
        pos_spans,
        pos,
        neg_spans,
        neg,
    );
    h.counter_reset_hint = match hint {
        'R' => CounterResetHint::CounterReset,
        'N' => CounterResetHint::NotCounterReset,
        'G' => CounterResetHint::Gauge,
        _ => CounterResetHint::Unknown,
    };
    h.custom_values = custom.to_vec();
    h
}

fn feq(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits() || a == b
}

fn veq(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| feq(*x, *y))
}

/// Field-by-field equality (NaN equal to NaN, exact spans), like
/// testify's `require.Equal` on the Go structs.
fn identical(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    a.counter_reset_hint == b.counter_reset_hint
        && a.schema == b.schema
        && feq(a.zero_threshold, b.zero_threshold)
        && feq(a.zero_count, b.zero_count)
        && feq(a.count, b.count)
        && feq(a.sum, b.sum)
        && a.positive_spans == b.positive_spans
        && a.negative_spans == b.negative_spans
        && veq(&a.positive_buckets, &b.positive_buckets)
        && veq(&a.negative_buckets, &b.negative_buckets)
        && veq(&a.custom_values, &b.custom_values)
}

fn check_add(
    name: &str,
    a: &FloatHistogram,
    b: &FloatHistogram,
    want: Option<&FloatHistogram>,
    err: &str,
    collision: bool,
    reconciled: bool,
) {
    a.validate()
        .unwrap_or_else(|e| panic!("{name}: a invalid: {e}"));
    b.validate()
        .unwrap_or_else(|e| panic!("{name}: b invalid: {e}"));
    // Plain add.
    let mut got = a.clone();
    let res = got.add_with_info(b);
    if !err.is_empty() {
        assert_eq!(res.unwrap_err().to_string(), err, "{name}");
    } else {
        let info = res.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(info.counter_reset_collision, collision, "{name}: collision");
        assert_eq!(
            info.nhcb_bounds_reconciled, reconciled,
            "{name}: reconciled"
        );
    }
    if let Some(want) = want {
        let mut want = want.clone();
        want.compact(0);
        got.compact(0);
        assert!(
            identical(&got, &want),
            "{name}: add\n got  {got:?}\n want {want:?}"
        );
    }
    // Kahan add, then fold the compensation in.
    let mut got = a.clone();
    let mut comp = FloatHistogram::default();
    let res = got.kahan_add_with_info(b, &mut comp);
    if !err.is_empty() {
        assert_eq!(res.unwrap_err().to_string(), err, "{name}");
        return;
    }
    let info = res.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        info.counter_reset_collision, collision,
        "{name}: kahan collision"
    );
    assert_eq!(
        info.nhcb_bounds_reconciled, reconciled,
        "{name}: kahan reconciled"
    );
    assert_eq!(got.schema, comp.schema, "{name}");
    assert_eq!(got.positive_spans, comp.positive_spans, "{name}");
    assert_eq!(got.negative_spans, comp.negative_spans, "{name}");
    assert_eq!(
        got.positive_buckets.len(),
        comp.positive_buckets.len(),
        "{name}"
    );
    assert_eq!(
        got.negative_buckets.len(),
        comp.negative_buckets.len(),
        "{name}"
    );
    got.add(&comp).unwrap();
    if let Some(want) = want {
        let mut want = want.clone();
        want.compact(0);
        got.compact(0);
        assert!(
            identical(&got, &want),
            "{name}: kahan add\n got  {got:?}\n want {want:?}"
        );
    }
}

#[test]
fn upstream_add() {
    let cases = upstream_data::add_cases();
    assert!(cases.len() >= 20);
    for (name, in1, in2, want, err, collision, reconciled) in cases {
        let (in1, in2) = (in1.unwrap(), in2.unwrap());
        check_add(name, &in1, &in2, want.as_ref(), err, collision, reconciled);
        check_add(name, &in2, &in1, want.as_ref(), err, collision, reconciled);
    }
}

#[test]
fn upstream_sub() {
    let cases = upstream_data::sub_cases();
    assert!(!cases.is_empty());
    for (name, in1, in2, want, err, collision, reconciled) in cases {
        let (in1, in2) = (in1.unwrap(), in2.unwrap());
        let negated = want.as_ref().map(|w| {
            let mut n = w.clone();
            n.mul(-1.0);
            n.counter_reset_hint = w.counter_reset_hint;
            n
        });
        for (a, b, want) in [(&in1, &in2, want.as_ref()), (&in2, &in1, negated.as_ref())] {
            let mut got = a.clone();
            let res = got.sub_with_info(b);
            if !err.is_empty() {
                assert_eq!(res.unwrap_err().to_string(), err, "{name}");
                continue;
            }
            let info = res.unwrap();
            if let Some(want) = want {
                let mut want = want.clone();
                want.compact(0);
                got.compact(0);
                assert!(
                    identical(&got, &want),
                    "{name}: sub\n got  {got:?}\n want {want:?}"
                );
                assert_eq!(info.counter_reset_collision, collision, "{name}");
                assert_eq!(info.nhcb_bounds_reconciled, reconciled, "{name}");
            }
        }
    }
}

#[test]
fn upstream_kahan_add_with_compensation() {
    let cases = upstream_data::kahan_cases();
    assert!(!cases.is_empty());
    for (name, in1, comp, in2, want, err, collision, reconciled) in cases {
        let (mut got, in2) = (in1.unwrap(), in2.unwrap());
        let mut comp = comp.unwrap_or_default();
        let res = got.kahan_add_with_info(&in2, &mut comp);
        if !err.is_empty() {
            assert_eq!(res.unwrap_err().to_string(), err, "{name}");
            continue;
        }
        let info = res.unwrap();
        assert_eq!(info.counter_reset_collision, collision, "{name}");
        assert_eq!(info.nhcb_bounds_reconciled, reconciled, "{name}");
        got.add(&comp).unwrap();
        if let Some(mut want) = want {
            want.compact(0);
            got.compact(0);
            assert!(
                identical(&got, &want),
                "{name}: kahan\n got  {got:?}\n want {want:?}"
            );
        }
    }
}

#[test]
fn upstream_detect_reset() {
    let cases = upstream_data::detect_reset_cases();
    assert!(cases.len() >= 40);
    for (name, previous, current, want) in cases {
        let (previous, current) = (previous.unwrap(), current.unwrap());
        assert_eq!(current.detect_reset(&previous), want, "{name}");
    }
}

#[test]
fn upstream_compact() {
    let cases = upstream_data::compact_cases();
    assert!(cases.len() >= 20);
    for (name, input, max_empty, want) in cases {
        let mut h = input.unwrap();
        let was_valid = h.validate().is_ok();
        h.compact(max_empty);
        let want = want.unwrap();
        assert!(
            identical(&h, &want),
            "{name}: compact\n got  {h:?}\n want {want:?}"
        );
        if was_valid {
            h.validate()
                .unwrap_or_else(|e| panic!("{name}: compact made it invalid: {e}"));
        }
    }
}

#[test]
fn upstream_reduce_resolution() {
    let cases = upstream_data::reduce_cases();
    assert!(!cases.is_empty());
    for (name, origin, target_schema, want, err) in cases {
        let mut h = origin.unwrap();
        let res = h.try_reduce_resolution(target_schema);
        if !err.is_empty() {
            assert_eq!(res.unwrap_err().to_string(), err, "{name}");
            continue;
        }
        res.unwrap();
        let want = want.unwrap();
        assert!(identical(&h, &want), "{name}\n got  {h:?}\n want {want:?}");
    }
}

#[test]
fn upstream_mul_div() {
    for (name, input, factor, want) in upstream_data::mul_cases() {
        let mut h = input.unwrap();
        h.mul(factor);
        let want = want.unwrap();
        assert!(
            identical(&h, &want),
            "{name}: mul\n got  {h:?}\n want {want:?}"
        );
    }
    for (name, input, scalar, want) in upstream_data::div_cases() {
        let mut h = input.unwrap();
        h.div(scalar);
        let want = want.unwrap();
        assert!(
            identical(&h, &want),
            "{name}: div\n got  {h:?}\n want {want:?}"
        );
    }
}

#[test]
fn upstream_copy_to_schema() {
    for (name, input, target, want) in upstream_data::copy_to_schema_cases() {
        let h = input.unwrap();
        let before = h.clone();
        let got = h.copy_to_schema(target);
        let want = want.unwrap();
        assert!(
            identical(&got, &want),
            "{name}\n got  {got:?}\n want {want:?}"
        );
        assert!(identical(&h, &before));
    }
}

mod upstream_int_data;

/// Builds an integer histogram for the generated upstream tables.
#[allow(clippy::too_many_arguments)]
pub(super) fn hx(
    schema: i32,
    zero_threshold: f64,
    zero_count: u64,
    count: u64,
    sum: f64,
    hint: char,
    pos_spans: &[(i32, u32)],
    pos: &[i64],
    neg_spans: &[(i32, u32)],
    neg: &[i64],
    custom: &[f64],
) -> Histogram {
    let spans = |s: &[(i32, u32)]| {
        s.iter()
            .map(|&(offset, length)| Span { offset, length })
            .collect::<Vec<_>>()
    };
    Histogram {
        counter_reset_hint: match hint {
            'R' => CounterResetHint::CounterReset,
            'N' => CounterResetHint::NotCounterReset,
            'G' => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        },
        schema,
        zero_threshold,
        zero_count,
        count,
        sum,
        positive_spans: spans(pos_spans),
        negative_spans: spans(neg_spans),
        positive_buckets: pos.to_vec(),
        negative_buckets: neg.to_vec(),
        custom_values: custom.to_vec(),
    }
}

fn int_identical(a: &Histogram, b: &Histogram) -> bool {
    a.counter_reset_hint == b.counter_reset_hint
        && a.schema == b.schema
        && feq(a.zero_threshold, b.zero_threshold)
        && a.zero_count == b.zero_count
        && a.count == b.count
        && feq(a.sum, b.sum)
        && a.positive_spans == b.positive_spans
        && a.negative_spans == b.negative_spans
        && a.positive_buckets == b.positive_buckets
        && a.negative_buckets == b.negative_buckets
        && veq(&a.custom_values, &b.custom_values)
}

#[test]
fn upstream_int_compact() {
    let cases = upstream_int_data::int_compact_cases();
    assert!(cases.len() >= 20);
    for (name, input, max_empty, want) in cases {
        let mut h = input.unwrap();
        let was_valid = h.validate().is_ok();
        // The float form must compact to the same layout and counts.
        let mut f = h.to_float();
        h.compact(max_empty);
        f.compact(max_empty);
        let want = want.unwrap();
        assert!(
            int_identical(&h, &want),
            "{name}\n got  {h:?}\n want {want:?}"
        );
        assert!(identical(&f, &want.to_float()), "{name}: float form");
        if was_valid {
            h.validate()
                .unwrap_or_else(|e| panic!("{name}: compact made it invalid: {e}"));
        }
    }
}

#[test]
fn upstream_int_validation() {
    let cases = upstream_int_data::int_validation_cases();
    assert!(cases.len() >= 10);
    for (name, h, err, skip_float) in cases {
        let h = h.unwrap();
        match h.validate() {
            Ok(()) => assert!(err.is_empty(), "{name}: expected {err}"),
            Err(e) => assert_eq!(e.to_string(), err, "{name}"),
        }
        if skip_float {
            continue;
        }
        match h.to_float().validate() {
            Ok(()) => assert!(err.is_empty(), "{name}: float expected {err}"),
            Err(e) => assert_eq!(e.to_string(), err, "{name}: float"),
        }
    }
}

#[test]
fn upstream_int_reduce_resolution() {
    let cases = upstream_int_data::int_reduce_cases();
    assert!(!cases.is_empty());
    for (name, origin, target_schema, want, err) in cases {
        let mut h = origin.unwrap();
        let res = h.reduce_resolution(target_schema);
        if !err.is_empty() {
            assert_eq!(res.unwrap_err().to_string(), err, "{name}");
            continue;
        }
        res.unwrap();
        let want = want.unwrap();
        assert!(
            int_identical(&h, &want),
            "{name}\n got  {h:?}\n want {want:?}"
        );
    }
}

#[test]
fn upstream_bounds() {
    let cases = upstream_int_data::bound_cases();
    assert!(cases.len() >= 10);
    for (schema, index, want) in cases {
        assert_eq!(
            bucket_upper_bound(schema, index),
            want,
            "schema {schema} index {index}"
        );
    }
}

#[test]
fn fraction_below() {
    // Cases from Prometheus's TestBucketFractionBelow.
    let b = |lower: f64, upper: f64| Bucket {
        lower,
        upper,
        lower_inclusive: false,
        upper_inclusive: true,
        count: 100.0,
        index: 0,
    };
    assert!((b(0.0, 10.0).fraction_below(5.0, true) - 0.5).abs() < 1e-12);
    assert!((b(1.0, 4.0).fraction_below(2.0, false) - 0.5).abs() < 1e-12);
    assert!((b(-4.0, -2.0).fraction_below(-3.0, false) - 0.41503749927884383).abs() < 1e-12);
}
