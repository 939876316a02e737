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

#[test]
fn notation_samples_from_promql_tests() {
    // A sample of the notations used in Prometheus's promqltest files;
    // all 413 distinct ones in ../shared/promqltest parsed and round-tripped
    // when this was written.
    let samples = [
        "{{count:13.666666666666668 sum:11.333333333333334 counter_reset_hint:gauge buckets:[4.666666666666667 5 4]}}",
        "{{schema:-53 sum:2.5 count:1 custom_values:[5] buckets:[1 0]}}",
        "{{count:7.25 sum:-12.03019028017131 z_bucket:1.25 z_bucket_w:0.01 n_buckets:[1 2 3]}}",
        "{{schema:0 count:0.4 sum:0.02 z_bucket:0.4 z_bucket_w:0.5}}",
        "{{schema:-53 count:2 sum:-30 custom_values:[-10 5 10 15 20] buckets:[2]}}",
        "{{schema:-53 count:27 sum:91.5 custom_values:[1 2 4 8] counter_reset_hint:gauge buckets:[13.5 0 4.5 9]}}",
        "{{}}",
        "{{ }}",
        "{{sum:Inf count:NaN buckets:[-Inf 1e3 2.5E-1 1_000]}}",
        "{{schema:1 offset:-3 buckets:[1 2] n_offset:2 n_buckets:[3]  }}",
    ];
    for s in samples {
        let h = parse_test_histogram(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let text = format_test_histogram(&h);
        let back = parse_test_histogram(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let (mut a, mut b) = (h.clone(), back);
        a.compact(0);
        b.compact(0);
        assert!(identical(&a, &b), "{s} -> {text}");
    }
    let h = parse_test_histogram(samples[8]).unwrap();
    assert_eq!(h.sum, f64::INFINITY);
    assert!(h.count.is_nan());
    assert_eq!(
        h.positive_buckets,
        vec![f64::NEG_INFINITY, 1000.0, 0.25, 1000.0]
    );
    let h = parse_test_histogram(samples[9]).unwrap();
    assert_eq!(
        h.positive_spans,
        vec![Span {
            offset: -3,
            length: 2
        }]
    );
    assert_eq!(
        h.negative_spans,
        vec![Span {
            offset: 2,
            length: 1
        }]
    );
    // Count and sum are not derived from the buckets.
    let h = parse_test_histogram("{{buckets:[1 2 3]}}").unwrap();
    assert_eq!((h.count, h.sum), (0.0, 0.0));
    // Go's integer parsing: a leading 0 means octal.
    let h = parse_test_histogram("{{count:010 sum:0.5}}").unwrap();
    assert_eq!((h.count, h.sum), (8.0, 0.5));
    let (_, hint) = parse_test_histogram_with_hint("{{counter_reset_hint:unknown}}").unwrap();
    assert!(hint);
    let (_, hint) = parse_test_histogram_with_hint("{{count:1}}").unwrap();
    assert!(!hint);
}

#[test]
fn notation_errors() {
    let cases = [
        ("{{schema:1", "missing \"}}\""),
        ("{{foo:1}}", "bad histogram descriptor found: \"foo\""),
        ("{{sum 1}}", "missing `:`"),
        ("{{sum:1 sum:2}}", "duplicate key \"sum\""),
        ("{{schema:1.5}}", "expected an integer"),
        ("{{z_bucket_w:-1}}", "must not be negative"),
        ("{{buckets:[1 x]}}", "expected a number"),
        (
            "{{buckets:[1,2]}}",
            "invalid character in buckets description",
        ),
        ("{{counter_reset_hint:maybe}}", "bad counter_reset_hint"),
        ("schema:1}}", "must start with"),
        ("{{count:1}} x", "after the histogram description"),
        ("{{count:1sum:2}}", "unexpected 's'"),
    ];
    for (input, want) in cases {
        let err = parse_test_histogram(input).unwrap_err().to_string();
        assert!(
            err.contains(want),
            "{input}: got {err:?}, want it to contain {want:?}"
        );
        assert!(err.starts_with("histogram notation: at position "), "{err}");
    }
    match parse_test_histogram("{{sum:1 foo:2}}") {
        Err(HistogramError::Parse { pos, .. }) => assert_eq!(pos, 8),
        other => panic!("{other:?}"),
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// An exponential float histogram with integral bucket counts (so sums
    /// are exact), random spans, schema and zero bucket.
    fn arb_histogram(schema: impl Strategy<Value = i32>) -> impl Strategy<Value = FloatHistogram> {
        let side =
            proptest::collection::vec((0i32..4, proptest::collection::vec(0u32..20, 1..5)), 0..4);
        (
            schema,
            -10i32..10,
            side.clone(),
            -10i32..10,
            side,
            0u32..5,
            prop_oneof![Just(0.0), Just(1e-3), Just(0.5)],
        )
            .prop_map(
                |(schema, pstart, pos, nstart, neg, zc, zt): (i32, i32, _, i32, _, u32, f64)| {
                    let build = |start: i32, runs: Vec<(i32, Vec<u32>)>| {
                        let mut spans = Vec::new();
                        let mut buckets = Vec::new();
                        for (i, (gap, vals)) in runs.into_iter().enumerate() {
                            let offset = if i == 0 { start } else { gap };
                            spans.push(Span {
                                offset,
                                length: vals.len() as u32,
                            });
                            buckets.extend(vals.into_iter().map(f64::from));
                        }
                        (spans, buckets)
                    };
                    let (positive_spans, positive_buckets) = build(pstart, pos);
                    let (negative_spans, negative_buckets) = build(nstart, neg);
                    // Keep the zero bucket below every bucket (a bucket inside the
                    // zero bucket is legal but makes addition order-dependent,
                    // in Prometheus as here).
                    let lowest = |spans: &[Span]| {
                        spans
                            .first()
                            .map_or(f64::INFINITY, |s| bucket_upper_bound(schema, s.offset - 1))
                    };
                    let zt = zt.min(lowest(&positive_spans)).min(lowest(&negative_spans));
                    let zero_count = if zt == 0.0 { 0.0 } else { f64::from(zc) };
                    let count = zero_count
                        + positive_buckets.iter().sum::<f64>()
                        + negative_buckets.iter().sum::<f64>();
                    FloatHistogram {
                        schema,
                        zero_threshold: zt,
                        zero_count,
                        count,
                        sum: count * 1.5,
                        positive_spans,
                        positive_buckets,
                        negative_spans,
                        negative_buckets,
                        ..FloatHistogram::default()
                    }
                },
            )
    }

    fn total(h: &FloatHistogram) -> f64 {
        h.zero_count
            + h.positive_buckets.iter().sum::<f64>()
            + h.negative_buckets.iter().sum::<f64>()
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            let _ = parse_test_histogram(&s);
        }

        #[test]
        fn parse_never_panics_on_near_misses(
            body in proptest::collection::vec(prop_oneof![
                Just("schema:".to_string()), Just("buckets:[".to_string()), Just("]".to_string()),
                Just(" ".to_string()), Just("-".to_string()), Just("1".to_string()), Just("e".to_string()),
                Just(".".to_string()), Just("Inf".to_string()), Just("counter_reset_hint:".to_string()),
                Just("gauge".to_string()), Just("}".to_string()), Just("_".to_string()),
                Just("99999999999999999999".to_string()), Just("offset:".to_string()),
            ], 0..12)
        ) {
            let s = format!("{{{{{}}}}}", body.concat());
            if let Ok(h) = parse_test_histogram(&s) {
                let text = format_test_histogram(&h);
                prop_assert!(parse_test_histogram(&text).is_ok(), "{} -> {}", s, text);
            }
        }

        #[test]
        fn add_then_sub_restores(a in arb_histogram(-2i32..3), b_raw in arb_histogram(-2i32..3)) {
            // Same schema and zero threshold, so no information is lost.
            let mut b = b_raw;
            b.schema = a.schema;
            b.zero_threshold = a.zero_threshold;
            if b.zero_threshold == 0.0 { b.zero_count = 0.0; }
            let mut sum = a.clone();
            sum.add(&b).unwrap();
            sum.sub(&b).unwrap();
            sum.compact(0);
            let mut want = a.clone();
            want.compact(0);
            prop_assert!(sum.equals(&want), "got {:?}\nwant {:?}", sum, want);
        }

        #[test]
        fn add_is_commutative_in_counts(a in arb_histogram(-4i32..9), b in arb_histogram(-4i32..9)) {
            // With different zero thresholds Prometheus's addition is
            // order-dependent when the wider threshold is not a bucket
            // boundary of the lower schema, so use one common threshold.
            let (mut a, mut b) = (a, b);
            let zt = a.zero_threshold.min(b.zero_threshold);
            for h in [&mut a, &mut b] {
                h.zero_threshold = zt;
                if zt == 0.0 {
                    h.count -= h.zero_count;
                    h.zero_count = 0.0;
                }
            }
            let mut ab = a.clone();
            ab.add(&b).unwrap();
            let mut ba = b.clone();
            ba.add(&a).unwrap();
            ab.compact(0);
            ba.compact(0);
            prop_assert!(ab.equals(&ba), "{:?}\n{:?}", ab, ba);
            prop_assert_eq!(total(&ab), total(&a) + total(&b));
            prop_assert_eq!(ab.schema, a.schema.min(b.schema));
        }

        #[test]
        fn reduce_resolution_keeps_totals(h in arb_histogram(-3i32..9), down in 1i32..8) {
            let target = (h.schema - down).max(-4);
            prop_assume!(target < h.schema);
            let mut r = h.clone();
            r.try_reduce_resolution(target).unwrap();
            r.validate().unwrap();
            prop_assert_eq!(r.count, h.count);
            prop_assert_eq!(r.sum, h.sum);
            prop_assert_eq!(r.zero_count, h.zero_count);
            prop_assert_eq!(r.positive_buckets.iter().sum::<f64>(), h.positive_buckets.iter().sum::<f64>());
            prop_assert_eq!(r.negative_buckets.iter().sum::<f64>(), h.negative_buckets.iter().sum::<f64>());
            // Same as going through copy_to_schema, and every original
            // bucket lies inside the reduced bucket it was merged into.
            prop_assert!(r.equals(&h.copy_to_schema(target)));
            for b in h.positive_buckets_iter() {
                let t = r.positive_buckets_iter().find(|x| x.lower <= b.lower && b.upper <= x.upper);
                prop_assert!(t.is_some(), "bucket {:?} not covered", b);
            }
        }

        #[test]
        fn compact_keeps_counts_and_is_idempotent(h in arb_histogram(-4i32..9), max_empty in 0usize..4) {
            let mut c = h.clone();
            c.compact(max_empty);
            c.validate().unwrap();
            prop_assert_eq!(total(&c), total(&h));
            let before: Vec<(i32, f64)> = h.positive_buckets_iter().filter(|b| b.count != 0.0).map(|b| (b.index, b.count)).collect();
            let after: Vec<(i32, f64)> = c.positive_buckets_iter().filter(|b| b.count != 0.0).map(|b| (b.index, b.count)).collect();
            prop_assert_eq!(before, after);
            let mut again = c.clone();
            again.compact(max_empty);
            prop_assert_eq!(again, c);
        }

        #[test]
        fn kahan_add_matches_add_on_integers(a in arb_histogram(-4i32..9), b in arb_histogram(-4i32..9)) {
            let mut plain = a.clone();
            plain.add(&b).unwrap();
            let mut k = a.clone();
            let mut comp = FloatHistogram::default();
            k.kahan_add(&b, &mut comp).unwrap();
            k.add(&comp).unwrap();
            plain.compact(0);
            k.compact(0);
            prop_assert!(plain.equals(&k), "{:?}\n{:?}", plain, k);
        }

        #[test]
        fn no_reset_against_itself_or_after_add(a in arb_histogram(-4i32..9), b in arb_histogram(-4i32..9)) {
            prop_assert!(!a.detect_reset(&a));
            // a + b (b at a's schema and threshold, so nothing merges)
            // only grows.
            let mut b = b;
            b.schema = a.schema;
            b.zero_threshold = a.zero_threshold;
            if b.zero_threshold == 0.0 { b.zero_count = 0.0; }
            let mut grown = a.clone();
            grown.add(&b).unwrap();
            prop_assert!(!grown.detect_reset(&a));
            if total(&b) > 0.0 {
                prop_assert!(a.detect_reset(&grown));
            }
        }

        #[test]
        fn int_and_float_compact_agree(h in arb_histogram(-4i32..9), max_empty in 0usize..3) {
            // Integer form of the random histogram.
            let deltas = |v: &[f64]| {
                let mut prev = 0i64;
                v.iter().map(|x| { let a = *x as i64; let d = a - prev; prev = a; d }).collect::<Vec<_>>()
            };
            let mut ih = Histogram {
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count: h.zero_count as u64,
                count: h.count as u64,
                sum: h.sum,
                positive_spans: h.positive_spans.clone(),
                negative_spans: h.negative_spans.clone(),
                positive_buckets: deltas(&h.positive_buckets),
                negative_buckets: deltas(&h.negative_buckets),
                ..Histogram::default()
            };
            ih.validate().unwrap();
            prop_assert!(ih.to_float().equals(&h));
            let mut f = h.clone();
            ih.compact(max_empty);
            f.compact(max_empty);
            prop_assert!(ih.to_float().equals(&f));
        }
    }
}

fn bk(lower: f64, upper: f64, li: bool, ui: bool, count: f64, index: i32) -> Bucket {
    Bucket {
        lower,
        upper,
        lower_inclusive: li,
        upper_inclusive: ui,
        count,
        index,
    }
}

#[test]
fn custom_bucket_iterators() {
    // Prometheus's TestFloatCustomBucketsIterators.
    for (bounds, want) in [
        (
            vec![10.0, 25.0, 50.0, 100.0, 500.0],
            vec![
                bk(f64::NEG_INFINITY, 10.0, true, true, 100.0, 0),
                bk(10.0, 25.0, false, true, 344.0, 1),
                bk(50.0, 100.0, false, true, 123.0, 3),
                bk(500.0, f64::INFINITY, false, true, 55.0, 5),
            ],
        ),
        (
            vec![-10.0, -5.0, 0.0, 10.0, 25.0],
            vec![
                bk(f64::NEG_INFINITY, -10.0, true, true, 100.0, 0),
                bk(-10.0, -5.0, false, true, 344.0, 1),
                bk(0.0, 10.0, false, true, 123.0, 3),
                bk(25.0, f64::INFINITY, false, true, 55.0, 5),
            ],
        ),
    ] {
        let mut h = fh(
            CUSTOM_BUCKETS_SCHEMA,
            0.0,
            0.0,
            622.0,
            10008.4,
            &[(0, 2), (1, 1), (1, 1)],
            &[100.0, 344.0, 123.0, 55.0],
            &[],
            &[],
        );
        h.custom_values = bounds;
        h.validate().unwrap();
        assert_eq!(h.all_buckets().collect::<Vec<_>>(), want);
        assert_eq!(h.positive_buckets_iter().collect::<Vec<_>>(), want);
        let mut rev = want.clone();
        rev.reverse();
        assert_eq!(h.all_reverse_buckets().collect::<Vec<_>>(), rev);
        assert_eq!(h.positive_reverse_buckets_iter().collect::<Vec<_>>(), rev);
        assert_eq!(h.negative_buckets_iter().count(), 0);
        assert_eq!(h.negative_reverse_buckets_iter().count(), 0);
    }
}

#[test]
fn exponential_bucket_iterators() {
    // Schema 1 with a zero-length span in between (as Prometheus's
    // iterator tests): positive indices -1, 0, 3; negative 0, 3. The zero
    // threshold 0.5 is the lower bound of the first positive bucket.
    let h = fh(
        1,
        0.5,
        3.0,
        20.0,
        1.0,
        &[(-1, 2), (1, 0), (1, 1)],
        &[1.0, 2.0, 3.0],
        &[(0, 1), (2, 1)],
        &[4.0, 5.0],
    );
    let s2 = 1.414213562373095; // Prometheus's table value, not SQRT_2
    let pos: Vec<Bucket> = h.positive_buckets_iter().collect();
    assert_eq!(
        pos,
        vec![
            bk(0.5, s2 / 2.0, false, true, 1.0, -1).with_lower(0.5),
            bk(bucket_upper_bound(1, -1), 1.0, false, true, 2.0, 0),
            bk(2.0, bucket_upper_bound(1, 3), false, true, 3.0, 3),
        ]
    );
    let neg: Vec<Bucket> = h.negative_buckets_iter().collect();
    assert_eq!(
        neg,
        vec![
            bk(-1.0, -bucket_upper_bound(1, -1), true, false, 4.0, 0),
            bk(-bucket_upper_bound(1, 3), -2.0, true, false, 5.0, 3),
        ]
    );
    // Ascending over everything; the buckets next to the zero bucket get
    // their inner bound clamped to the threshold only if it lies inside.
    let all: Vec<Bucket> = h.all_buckets().collect();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0], neg[1]);
    assert_eq!(all[1], neg[0]);
    assert_eq!(all[2], bk(-0.5, 0.5, true, true, 3.0, 0));
    assert_eq!(all[3], pos[0]);
    let mut rev: Vec<Bucket> = h.all_reverse_buckets().collect();
    rev.reverse();
    assert_eq!(rev, all);
    // A threshold inside the first buckets clamps them.
    let mut wide = h.clone();
    wide.zero_threshold = 0.9;
    let all: Vec<Bucket> = wide.all_buckets().collect();
    assert_eq!(all[1].upper, -0.9);
    assert_eq!(all[3].lower, 0.9);
    // An empty zero bucket is skipped even with a threshold.
    let mut empty_zero = h.clone();
    empty_zero.zero_count = 0.0;
    assert_eq!(empty_zero.all_buckets().count(), 5);
    assert_eq!(h.zero_bucket(), bk(-0.5, 0.5, true, true, 3.0, 0));
}

impl Bucket {
    fn with_lower(mut self, lower: f64) -> Bucket {
        self.lower = lower;
        self
    }
}

#[test]
fn equals_rules() {
    let base = fh(
        0,
        0.01,
        1.0,
        10.0,
        3.5,
        &[(0, 2), (2, 1)],
        &[1.0, 2.0, 6.0],
        &[(1, 1)],
        &[0.0],
    );
    assert!(base.equals(&base.clone()));
    // Zero-length spans do not change the layout.
    let mut z = base.clone();
    z.positive_spans = vec![
        Span {
            offset: 0,
            length: 2,
        },
        Span {
            offset: 1,
            length: 0,
        },
        Span {
            offset: 1,
            length: 1,
        },
        Span {
            offset: 0,
            length: 0,
        },
    ];
    assert!(base.equals(&z));
    // But an empty bucket counts as present, and adjacent spans are not
    // merged.
    let mut c = base.clone();
    c.compact(0);
    assert!(!base.equals(&c));
    let mut split = base.clone();
    split.positive_spans = vec![
        Span {
            offset: 0,
            length: 1,
        },
        Span {
            offset: 0,
            length: 1,
        },
        Span {
            offset: 2,
            length: 1,
        },
    ];
    assert!(!base.equals(&split));
    // NaN equals NaN bit-wise; different NaN payloads do not.
    let mut n1 = base.clone();
    n1.sum = f64::NAN;
    let n2 = n1.clone();
    assert!(n1.equals(&n2));
    let mut stale = n1.clone();
    stale.sum = crate::stale_nan();
    assert!(!n1.equals(&stale));
    // The hint is not part of equality; custom bounds are.
    let mut g = base.clone();
    g.counter_reset_hint = CounterResetHint::Gauge;
    assert!(base.equals(&g));
    let mut cb = fh(
        CUSTOM_BUCKETS_SCHEMA,
        0.0,
        0.0,
        1.0,
        1.0,
        &[(0, 1)],
        &[1.0],
        &[],
        &[],
    );
    cb.custom_values = vec![1.0, 2.0];
    let mut cb2 = cb.clone();
    cb2.custom_values = vec![1.0, 3.0];
    assert!(!cb.equals(&cb2));
    let mut ints = Histogram {
        schema: 0,
        count: 3,
        sum: 2.0,
        positive_spans: vec![Span {
            offset: 0,
            length: 2,
        }],
        positive_buckets: vec![1, 1],
        ..Histogram::default()
    };
    assert!(ints.equals(&ints.clone()));
    let other = ints.clone();
    ints.positive_buckets = vec![2, -1];
    assert!(!ints.equals(&other));
}

#[test]
fn size_and_overflow() {
    let h = fh(
        0,
        0.01,
        1.0,
        10.0,
        3.5,
        &[(0, 2), (2, 1)],
        &[1.0, 2.0, 6.0],
        &[(1, 1)],
        &[0.0],
    );
    // 168 + 8 * (2 + 1 + 3 + 1 + 0 custom values), as Prometheus's Size.
    assert_eq!(h.size_bytes(), 168 + 8 * 7);
    assert!(!h.has_overflow());
    let mut o = h.clone();
    o.positive_buckets[1] = f64::INFINITY;
    assert!(o.has_overflow());
}

#[test]
fn to_float_and_validate_int() {
    let h = Histogram {
        schema: 1,
        zero_threshold: 0.001,
        zero_count: 2,
        count: 12,
        sum: 19.4,
        positive_spans: vec![
            Span {
                offset: 0,
                length: 2,
            },
            Span {
                offset: 1,
                length: 2,
            },
        ],
        positive_buckets: vec![1, 1, -1, 0],
        negative_spans: vec![
            Span {
                offset: 0,
                length: 2,
            },
            Span {
                offset: 1,
                length: 2,
            },
        ],
        negative_buckets: vec![1, 1, -1, 0],
        ..Histogram::default()
    };
    h.validate().unwrap();
    let f = h.to_float();
    assert_eq!(f.positive_buckets, vec![1.0, 2.0, 1.0, 1.0]);
    assert_eq!(f.count, 12.0);
    assert_eq!(f.zero_count, 2.0);
    let mut custom = h.clone();
    custom.schema = CUSTOM_BUCKETS_SCHEMA;
    custom.custom_values = vec![1.0, 2.0, 3.0, 4.0];
    let cf = custom.to_float();
    assert!(cf.negative_buckets.is_empty() && cf.zero_count == 0.0 && cf.zero_threshold == 0.0);
    assert_eq!(cf.custom_values, vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(
        custom.validate().unwrap_err(),
        HistogramError::CustomBucketsZeroCount
    );
}

mod trim_data;

fn close(a: f64, b: f64) -> bool {
    feq(a, b) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn trim_cases_from_promql_tests() {
    assert!(trim_data::TRIM_CASES.len() >= 80);
    let mut failures = Vec::new();
    for (input, cut, upper, want) in trim_data::TRIM_CASES {
        let mut h = parse_test_histogram(input).unwrap();
        let rhs: f64 = match *cut {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            c => c.parse().unwrap(),
        };
        h.trim_buckets(rhs, *upper);
        let mut want_h = parse_test_histogram(want).unwrap();
        h.compact(0);
        want_h.compact(0);
        let ok = h.schema == want_h.schema
            && close(h.count, want_h.count)
            && close(h.sum, want_h.sum)
            && close(h.zero_count, want_h.zero_count)
            && h.zero_threshold == want_h.zero_threshold
            && h.positive_spans == want_h.positive_spans
            && h.negative_spans == want_h.negative_spans
            && h.positive_buckets.len() == want_h.positive_buckets.len()
            && h.negative_buckets.len() == want_h.negative_buckets.len()
            && h.positive_buckets
                .iter()
                .zip(&want_h.positive_buckets)
                .all(|(a, b)| close(*a, *b))
            && h.negative_buckets
                .iter()
                .zip(&want_h.negative_buckets)
                .all(|(a, b)| close(*a, *b));
        if !ok {
            failures.push(format!(
                "{input} {} {cut}\n  got  {}\n  want {}",
                if *upper { "</" } else { ">/" },
                format_test_histogram(&h),
                format_test_histogram(&want_h)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn int_display_like_prometheus() {
    // Cases of Prometheus's TestHistogramString.
    let sp = |v: &[(i32, u32)]| {
        v.iter()
            .map(|&(offset, length)| Span { offset, length })
            .collect::<Vec<_>>()
    };
    assert_eq!(Histogram::default().to_string(), "{count:0, sum:0}");
    let h = Histogram {
        count: 9,
        sum: -3.1415,
        zero_count: 12,
        zero_threshold: 0.001,
        negative_spans: sp(&[(0, 5), (1, 1)]),
        negative_buckets: vec![1, 2, -2, 1, -1, 0],
        ..Histogram::default()
    };
    assert_eq!(
        h.to_string(),
        "{count:9, sum:-3.1415, [-64,-32):1, [-16,-8):1, [-8,-4):2, [-4,-2):1, [-2,-1):3, [-1,-0.5):1, [-0.001,0.001]:12}"
    );
    let h = Histogram {
        count: 19,
        sum: 2.7,
        positive_spans: sp(&[(0, 4), (0, 0), (0, 3)]),
        positive_buckets: vec![1, 2, -2, 1, -1, 0, 0],
        negative_spans: sp(&[(0, 5), (1, 0), (0, 1)]),
        negative_buckets: vec![1, 2, -2, 1, -1, 0],
        ..Histogram::default()
    };
    assert_eq!(
        h.to_string(),
        "{count:19, sum:2.7, [-64,-32):1, [-16,-8):1, [-8,-4):2, [-4,-2):1, [-2,-1):3, [-1,-0.5):1, (0.5,1]:1, (1,2]:3, (2,4]:1, (4,8]:2, (8,16]:1, (16,32]:1, (32,64]:1}"
    );
    let h = Histogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: 19,
        sum: 2.7,
        positive_spans: sp(&[(0, 4), (0, 0), (0, 3)]),
        positive_buckets: vec![1, 2, -2, 1, -1, 0, 0],
        custom_values: vec![1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 50.0],
        ..Histogram::default()
    };
    assert_eq!(
        h.to_string(),
        "{count:19, sum:2.7, [-Inf,1]:1, (1,2]:3, (2,5]:1, (5,10]:2, (10,15]:1, (15,20]:1, (20,25]:1}"
    );
    // Float and integer forms print the same for integral counts.
    assert_eq!(h.to_float().to_string(), h.to_string());
    let v = HistogramValue::Int(h.clone());
    assert_eq!(v.schema(), CUSTOM_BUCKETS_SCHEMA);
    assert!(v.to_float().equals(&h.to_float()));
    // (Prometheus's string test data is not self-consistent.)
    assert_eq!(
        v.validate().unwrap_err().to_string(),
        "10 observations found in buckets, but the Count field is 19: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"
    );
}

/// Arithmetic on histograms with schemas anywhere in `i32` (invalid data
/// that PromQL may still be handed) must not panic; the schema difference
/// used to overflow in the index mapping.
#[test]
fn extreme_schemas_do_not_panic() {
    for schema in [i32::MIN, -20, 9, 40, i32::MAX] {
        let mut a = fh(
            schema,
            0.0,
            0.0,
            3.0,
            1.0,
            &[(-3, 2)],
            &[1.0, 2.0],
            &[],
            &[],
        );
        let b = fh(0, 0.0, 0.0, 2.0, 1.0, &[(0, 2)], &[1.0, 1.0], &[], &[]);
        let _ = a.detect_reset(&b);
        let _ = b.detect_reset(&a);
        let _ = a.copy_to_schema(-4);
        let mut c = b.clone();
        let _ = c.add(&a);
        let mut comp = c.new_compensation();
        let _ = c.kahan_add(&a, &mut comp);
        let _ = a.sub(&b);
        a.compact(0);
    }
}
