// Test data generated from the test tables in Prometheus's
// model/histogram/histogram_test.go and generic_test.go (inputs and expected values only).
#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::approx_constant, clippy::excessive_precision)]
#![cfg_attr(rustfmt, rustfmt_skip)]
use super::super::Histogram;
use super::hx;

pub(super) fn int_compact_cases() -> Vec<(&'static str, Option<Histogram>, usize, Option<Histogram>)> {
    vec![
        ("empty histogram", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[]))),
        ("nothing should happen", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 1), (2, 3)], &[1, 3, -3, 42], &[(3, 2), (3, 2)], &[5, 3, 123400, 1000], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 1), (2, 3)], &[1, 3, -3, 42], &[(3, 2), (3, 2)], &[5, 3, 123400, 1000], &[]))),
        ("eliminate zero offsets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 1), (0, 3), (0, 1)], &[1, 3, -3, 42, 3], &[(0, 2), (0, 2), (2, 1), (0, 1)], &[5, 3, 123400, 1000, 3, 4], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 5)], &[1, 3, -3, 42, 3], &[(0, 4), (2, 2)], &[5, 3, 123400, 1000, 3, 4], &[]))),
        ("eliminate zero length", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (2, 0), (3, 3)], &[1, 3, -3, 42, 3], &[(0, 2), (0, 0), (2, 0), (1, 4)], &[5, 3, 123400, 1000, 3, 4], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (5, 3)], &[1, 3, -3, 42, 3], &[(0, 2), (3, 4)], &[5, 3, 123400, 1000, 3, 4], &[]))),
        ("eliminate multiple zero length spans", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (2, 0), (2, 0), (2, 0), (3, 3)], &[1, 3, -3, 42, 3], &[], &[], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (9, 3)], &[1, 3, -3, 42, 3], &[], &[], &[]))),
        ("cut empty buckets at start or end", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 4), (5, 3)], &[0, 0, 1, 3, -3, 42, 3], &[(0, 2), (3, 5)], &[5, 3, -4, -2, 3, 4, -9], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (5, 3)], &[1, 3, -3, 42, 3], &[(0, 2), (3, 4)], &[5, 3, -4, -2, 3, 4], &[]))),
        ("cut empty buckets at start and end", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 4), (5, 6)], &[0, 0, 1, 3, -3, 42, 3, -46, 0, 0], &[(-2, 4), (3, 5)], &[0, 0, 5, 3, -4, -2, 3, 4, -9], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (5, 3)], &[1, 3, -3, 42, 3], &[(0, 2), (3, 4)], &[5, 3, -4, -2, 3, 4], &[]))),
        ("cut empty buckets at start or end of spans, even in the middle", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 6), (3, 6)], &[0, 0, 1, 3, -4, 0, 1, 42, 3, -46, 0, 0], &[(0, 2), (2, 6)], &[5, 3, -8, 4, -2, 3, 4, -9], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (5, 3)], &[1, 3, -3, 42, 3], &[(0, 2), (3, 4)], &[5, 3, -4, -2, 3, 4], &[]))),
        ("cut empty buckets at start or end but merge spans due to maxEmptyBuckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 4), (5, 3)], &[0, 0, 1, 3, -3, 42, 3], &[(0, 2), (3, 5)], &[5, 3, -4, -2, 3, 4, -9], &[])), 10, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 10)], &[1, 3, -4, 0, 0, 0, 0, 1, 42, 3], &[(0, 9)], &[5, 3, -8, 0, 0, 4, -2, 3, 4], &[]))),
        ("cut empty buckets from the middle of a span", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 6), (3, 3)], &[0, 0, 1, -1, 0, 3, -2, 42, 3], &[(0, 2), (3, 5)], &[5, 3, -4, -2, -2, 3, 4], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 1), (2, 1), (3, 3)], &[1, 2, -2, 42, 3], &[(0, 2), (3, 2), (1, 2)], &[5, 3, -4, -2, 1, 4], &[]))),
        ("cut out a span containing only empty buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 3), (2, 2), (3, 4)], &[0, 0, 1, -1, 0, 3, -2, 42, 3], &[], &[], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 1), (7, 4)], &[1, 2, -2, 42, 3], &[], &[], &[]))),
        ("cut empty buckets from the middle of a span, avoiding some due to maxEmptyBuckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 6), (3, 3)], &[0, 0, 1, -1, 0, 3, -2, 42, 3], &[(0, 2), (3, 5)], &[5, 3, -4, -2, -2, 3, 4], &[])), 1, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 1), (2, 1), (3, 3)], &[1, 2, -2, 42, 3], &[(0, 2), (3, 5)], &[5, 3, -4, -2, -2, 3, 4], &[]))),
        ("avoiding all cutting of empty buckets from the middle of a chunk due to maxEmptyBuckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 6), (3, 3)], &[0, 0, 1, -1, 0, 3, -2, 42, 3], &[(0, 2), (3, 5)], &[5, 3, -4, -2, -2, 3, 4], &[])), 2, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 4), (3, 3)], &[1, -1, 0, 3, -2, 42, 3], &[(0, 2), (3, 5)], &[5, 3, -4, -2, -2, 3, 4], &[]))),
        ("everything merged into one span due to maxEmptyBuckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 6), (3, 3)], &[0, 0, 1, -1, 0, 3, -2, 42, 3], &[(0, 2), (3, 5)], &[5, 3, -4, -2, -2, 3, 4], &[])), 3, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 10)], &[1, -1, 0, 3, -3, 0, 0, 1, 42, 3], &[(0, 10)], &[5, 3, -8, 0, 0, 4, -2, -2, 3, 4], &[]))),
        ("more than one span merged in the same pass", Some(hx(0, 0.0, 0, 30, 0.0, 'U', &[(0, 2), (2, 2), (2, 2)], &[1, 1, 1, 1, 1, 1], &[(0, 1), (1, 1), (1, 1)], &[2, 1, 1], &[])), 3, Some(hx(0, 0.0, 0, 30, 0.0, 'U', &[(0, 10)], &[1, 1, -2, 0, 3, 1, -4, 0, 5, 1], &[(0, 5)], &[2, -2, 3, -3, 4], &[]))),
        ("only empty buckets and maxEmptyBuckets greater zero", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-4, 6), (3, 3)], &[0, 0, 0, 0, 0, 0, 0, 0, 0], &[(0, 7)], &[0, 0, 0, 0, 0, 0, 0], &[])), 3, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[]))),
        ("multiple spans of only empty buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-10, 2), (2, 1), (3, 3)], &[0, 0, 0, 0, 2, 3], &[(-10, 2), (2, 1), (3, 3)], &[2, 3, -5, 0, 0, 0], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-1, 2)], &[2, 3], &[(-10, 2)], &[2, 3], &[]))),
        ("nothing should happen with custom buckets", Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-2, 1), (2, 3)], &[1, 3, -3, 42], &[], &[], &[5.0, 10.0, 15.0])), 0, Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-2, 1), (2, 3)], &[1, 3, -3, 42], &[], &[], &[5.0, 10.0, 15.0]))),
        ("eliminate zero offsets with custom buckets", Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-2, 1), (0, 3), (0, 1)], &[1, 3, -3, 42, 3], &[], &[], &[5.0, 10.0, 15.0, 20.0])), 0, Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-2, 5)], &[1, 3, -3, 42, 3], &[], &[], &[5.0, 10.0, 15.0, 20.0]))),
        ("eliminate zero length with custom buckets", Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (2, 0), (3, 3)], &[1, 3, -3, 42, 3], &[], &[], &[5.0, 10.0, 15.0, 20.0])), 0, Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (5, 3)], &[1, 3, -3, 42, 3], &[], &[], &[5.0, 10.0, 15.0, 20.0]))),
        ("all zero-length spans with non-empty buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(0, 0), (2, 0)], &[1, 3], &[(1, 0)], &[2], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[]))),
        ("more buckets than spans account for", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(0, 1), (2, 1)], &[1, 2, 3, 4], &[(0, 1)], &[5, 6], &[])), 0, Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(0, 1), (2, 1)], &[1, 2, 3, 4], &[(0, 1)], &[5, 6], &[]))),
        ("eliminate multiple zero length spans with custom buckets", Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (2, 0), (2, 0), (2, 0), (3, 3)], &[1, 3, -3, 42, 3], &[], &[], &[5.0, 10.0, 15.0, 20.0])), 0, Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (9, 3)], &[1, 3, -3, 42, 3], &[], &[], &[5.0, 10.0, 15.0, 20.0]))),
        ("cut empty buckets at start or end of spans, even in the middle, with custom buckets", Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-4, 6), (3, 6)], &[0, 0, 1, 3, -4, 0, 1, 42, 3, -46, 0, 0], &[], &[], &[5.0, 10.0, 15.0, 20.0])), 0, Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[(-2, 2), (5, 3)], &[1, 3, -3, 42, 3], &[], &[], &[5.0, 10.0, 15.0, 20.0]))),
    ]
}

pub(super) fn int_validation_cases() -> Vec<(&'static str, Option<Histogram>, &'static str, bool)> {
    vec![
        ("valid histogram", Some(hx(1, 0.001, 2, 12, 19.4, 'U', &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[])), "", false),
        ("valid histogram with NaN observations that has its Count (4) higher than the actual total of buckets (2 + 1)", Some(hx(0, 0.0, 2, 4, f64::NAN, 'U', &[(0, 1)], &[1], &[], &[], &[])), "", false),
        ("rejects histogram without NaN observations that has its Count (4) higher than the actual total of buckets (2 + 1)", Some(hx(0, 0.0, 2, 4, 333.0, 'U', &[(0, 1)], &[1], &[], &[], &[])), "3 observations found in buckets, but the Count field is 4: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)", true),
        ("rejects histogram that has too few negative buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[], &[], &[(0, 1)], &[], &[])), "negative side: spans need 1 buckets, have 0 buckets: histogram spans specify different number of buckets than provided", false),
        ("rejects histogram that has too few positive buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(0, 1)], &[], &[], &[], &[])), "positive side: spans need 1 buckets, have 0 buckets: histogram spans specify different number of buckets than provided", false),
        ("rejects histogram that has too many negative buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[], &[], &[(0, 1)], &[1, 2], &[])), "negative side: spans need 1 buckets, have 2 buckets: histogram spans specify different number of buckets than provided", false),
        ("rejects histogram that has too many positive buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(0, 1)], &[1, 2], &[], &[], &[])), "positive side: spans need 1 buckets, have 2 buckets: histogram spans specify different number of buckets than provided", false),
        ("rejects a histogram that has a negative span with a negative offset", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[], &[], &[(-1, 1), (-1, 1)], &[1, 2], &[])), "negative side: span number 2 with offset -1: histogram has a span whose offset is negative", false),
        ("rejects a histogram which has a positive span with a negative offset", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-1, 1), (-1, 1)], &[1, 2], &[], &[], &[])), "positive side: span number 2 with offset -1: histogram has a span whose offset is negative", false),
        ("rejects a histogram that has a negative bucket with a negative count", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[], &[], &[(-1, 1)], &[-1], &[])), "negative side: bucket number 1 has observation count of -1: histogram has a bucket whose observation count is negative", false),
        ("rejects a histogram that has a positive bucket with a negative count", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-1, 1)], &[-1], &[], &[], &[])), "positive side: bucket number 1 has observation count of -1: histogram has a bucket whose observation count is negative", false),
        ("rejects a histogram that has a lower count than count in buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-1, 1)], &[1], &[(-1, 1)], &[1], &[])), "2 observations found in buckets, but the Count field is 0: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)", true),
        ("rejects a histogram that doesn't count the zero bucket in its count", Some(hx(0, 0.0, 1, 2, 0.0, 'U', &[(-1, 1)], &[1], &[(-1, 1)], &[1], &[])), "3 observations found in buckets, but the Count field is 2: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)", true),
        ("rejects an exponential histogram with custom buckets schema", Some(hx(-53, 0.001, 2, 12, 19.4, 'U', &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[])), "custom buckets: only 0 custom bounds defined which is insufficient to cover total span length of 5: histogram custom bounds are too few", false),
        ("rejects a custom buckets histogram with exponential schema", Some(hx(0, 0.0, 0, 5, 19.4, 'U', &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[], &[], &[1.0, 2.0, 3.0, 4.0])), "histogram with exponential schema must not have custom bounds", true),
        ("rejects a custom buckets histogram with zero/negative buckets", Some(hx(-53, 0.001, 2, 12, 19.4, 'U', &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[1.0, 2.0, 3.0, 4.0])), "custom buckets: must have zero count of 0", true),
        ("rejects a custom buckets histogram with negative offset in first span", Some(hx(-53, 0.0, 0, 5, 19.4, 'U', &[(-1, 2), (1, 2)], &[1, 1, -1, 0], &[], &[], &[1.0, 2.0, 3.0, 4.0])), "custom buckets: span number 1 with offset -1: histogram has a span whose offset is negative", false),
        ("rejects a custom buckets histogram with negative offset in subsequent spans", Some(hx(-53, 0.0, 0, 5, 19.4, 'U', &[(0, 2), (-1, 2)], &[1, 1, -1, 0], &[], &[], &[1.0, 2.0, 3.0, 4.0])), "custom buckets: span number 2 with offset -1: histogram has a span whose offset is negative", false),
        ("rejects a custom buckets histogram with non-matching bucket counts", Some(hx(-53, 0.0, 0, 5, 19.4, 'U', &[(0, 2), (1, 2)], &[1, 1, -1], &[], &[], &[1.0, 2.0, 3.0, 4.0])), "custom buckets: spans need 4 buckets, have 3 buckets: histogram spans specify different number of buckets than provided", false),
        ("rejects a custom buckets histogram with too few bounds", Some(hx(-53, 0.0, 0, 5, 19.4, 'U', &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[], &[], &[1.0, 2.0, 3.0])), "custom buckets: only 3 custom bounds defined which is insufficient to cover total span length of 5: histogram custom bounds are too few", false),
        ("valid custom buckets histogram", Some(hx(-53, 0.0, 0, 5, 19.4, 'U', &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[], &[], &[1.0, 2.0, 3.0, 4.0])), "", false),
        ("valid custom buckets histogram with extra bounds", Some(hx(-53, 0.0, 0, 5, 19.4, 'U', &[(0, 2), (1, 2)], &[1, 1, -1, 0], &[], &[], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])), "", false),
        ("reject custom buckets histogram with non-increasing bound", Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[0.0, 0.0])), "custom buckets: previous bound is 0.000000 and current is 0.000000: histogram custom bounds must be in strictly increasing order", false),
        ("reject custom buckets histogram with explicit +Inf bound", Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[1.0, f64::INFINITY])), "custom buckets: last +Inf bound must not be explicitly defined: histogram custom bounds must be finite", false),
        ("valid custom buckets histogram with explicit -Inf bound", Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[f64::NEG_INFINITY, 1.0])), "", false),
        ("reject custom buckets histogram with NaN bound", Some(hx(-53, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[1.0, f64::NAN, 3.0])), "custom buckets: histogram custom bounds must not be NaN", false),
        ("schema too high", Some(hx(10, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[])), "histogram has an invalid schema, which must be between -4 and 8 for exponential buckets, or -53 for custom buckets, got schema 10", false),
        ("schema too low", Some(hx(-10, 0.0, 0, 0, 0.0, 'U', &[], &[], &[], &[], &[])), "histogram has an invalid schema, which must be between -4 and 8 for exponential buckets, or -53 for custom buckets, got schema -10", false),
    ]
}

pub(super) fn int_reduce_cases() -> Vec<(&'static str, Option<Histogram>, i32, Option<Histogram>, &'static str)> {
    vec![
        ("valid histogram", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 4), (0, 0), (3, 2)], &[1, 2, -2, 1, -1, 0], &[(0, 4), (0, 0), (3, 2)], &[1, 2, -2, 1, -1, 0], &[])), -1, Some(hx(-1, 0.0, 0, 0, 0.0, 'U', &[(-1, 3), (1, 1)], &[1, 3, -2, 0], &[(0, 3), (1, 1)], &[1, 3, -2, 0], &[])), ""),
        ("not enough buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 4), (0, 0), (3, 2)], &[1, 2, -2, 1, -1], &[], &[], &[])), -1, None, "have 5 buckets but spans need more: histogram spans specify different number of buckets than provided"),
        ("too many buckets", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 4), (0, 0), (3, 2)], &[1, 2, -2, 1, -1, 0, 3], &[], &[], &[])), -1, None, "spans need 6 buckets, have 7 buckets: histogram spans specify different number of buckets than provided"),
        ("negative offset", Some(hx(0, 0.0, 0, 0, 0.0, 'U', &[(-2, 4), (-1, 0), (3, 2)], &[1, 2, -2, 1, -1, 0], &[], &[], &[])), -1, None, "span number 2 with offset -1: histogram has a span whose offset is negative"),
    ]
}

pub(super) fn bound_cases() -> Vec<(i32, i32, f64)> {
    vec![
        (-1, -1, 0.25),
        (-1, 0, 1.0),
        (-1, 1, 4.0),
        (-1, 512, 1.7976931348623157e+308),
        (-1, 513, f64::INFINITY),
        (0, -1, 0.5),
        (0, 0, 1.0),
        (0, 1, 2.0),
        (0, 1024, 1.7976931348623157e+308),
        (0, 1025, f64::INFINITY),
        (2, -1, 0.8408964152537144),
        (2, 0, 1.0),
        (2, 1, 1.189207115002721),
        (2, 4096, 1.7976931348623157e+308),
        (2, 4097, f64::INFINITY),
    ]
}
