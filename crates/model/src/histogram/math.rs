//! Numeric helpers: bucket boundaries, schema index mapping, Kahan–Neumaier
//! summation and Go-compatible `%g` float formatting.

use super::CUSTOM_BUCKETS_SCHEMA;
use super::fractions::EXPONENTIAL_FRACTIONS;

/// `x * 2^exp` with a single IEEE rounding (like C's and Go's `ldexp`): the
/// exponent is set directly in the bit pattern, and only a result in the
/// subnormal range is rounded (half to even).
pub(crate) fn ldexp(x: f64, exp: i64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let mut x = x;
    let mut exp = exp;
    let mut bits = x.to_bits();
    if (bits >> 52) & 0x7ff == 0 {
        // Subnormal input: normalise it first (exact).
        x *= f64::from_bits(((52 + 1023) as u64) << 52);
        exp -= 52;
        bits = x.to_bits();
    }
    let sign = bits & (1 << 63);
    let biased = ((bits >> 52) & 0x7ff) as i64;
    let mantissa = bits & ((1u64 << 52) - 1);
    let new_biased = biased.saturating_add(exp);
    if new_biased >= 0x7ff {
        return f64::from_bits(sign | (0x7ffu64 << 52));
    }
    if new_biased >= 1 {
        return f64::from_bits(sign | ((new_biased as u64) << 52) | mantissa);
    }
    // Subnormal (or zero) result: shift the full significand right.
    let full = mantissa | (1u64 << 52);
    let shift = 1 - new_biased; // >= 1
    if shift > 54 {
        return f64::from_bits(sign);
    }
    let shift = shift as u32;
    let q = full >> shift;
    let rem = full & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    let q = if rem > half || (rem == half && q & 1 == 1) {
        q + 1
    } else {
        q
    };
    f64::from_bits(sign | q)
}

/// Upper bound of bucket `index` of an exponential schema (−4..=8), with
/// Prometheus's exact arithmetic: `2^(index * 2^-schema)` from a table of
/// mantissas for positive schemas, and `f64::MAX` instead of +Inf for the
/// last finite bucket (the bucket above it counts ±Inf observations).
///
/// Schemas above 8 are clamped to 8 and below −4 are computed by the same
/// formula; use it with valid schemas.
pub fn bucket_upper_bound(schema: i32, index: i32) -> f64 {
    if schema < 0 {
        let shift = (-(schema as i64)).min(62) as u32;
        let exp = (index as i64).checked_shl(shift).unwrap_or(i64::MAX);
        let exp = if (index as i64).abs() > (i64::MAX >> shift) {
            if index < 0 {
                i64::MIN / 2
            } else {
                i64::MAX / 2
            }
        } else {
            exp
        };
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let schema = schema.min(8);
    let frac_idx = (index & ((1 << schema) - 1)) as usize;
    let frac = EXPONENTIAL_FRACTIONS[schema as usize][frac_idx];
    let exp = ((index >> schema) as i64) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// Upper bound of bucket `index` in `schema`; for custom buckets `index ==
/// custom_values.len()` is +Inf and `-1` is −Inf. (Prometheus panics on
/// indices beyond that, which only invalid histograms produce; we return
/// ±Inf instead.)
pub(crate) fn get_bound(index: i32, schema: i32, custom_values: &[f64]) -> f64 {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        if index < 0 {
            f64::NEG_INFINITY
        } else {
            custom_values
                .get(index as usize)
                .copied()
                .unwrap_or(f64::INFINITY)
        }
    } else {
        bucket_upper_bound(schema, index)
    }
}

/// The index in `target` schema of the bucket that contains bucket `index`
/// of the finer `origin` schema.
pub(crate) fn target_idx(index: i32, origin: i32, target: i32) -> i32 {
    // i64: schemas of invalid histograms may be anywhere in i32.
    let shift = (i64::from(origin) - i64::from(target)).clamp(0, 31) as u32;
    (((index as i64 - 1) >> shift) + 1) as i32
}

/// One step of Kahan–Neumaier summation: returns the new sum and
/// compensation after adding `inc` to `sum` (compensation `c`). An infinite
/// sum resets the compensation to zero, as Prometheus's `kahansum.Inc`.
#[inline(never)]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Formats a float like Go's `%g` / `%v`: the shortest digits that
/// round-trip, in exponent form (`1.5e+06`) when the decimal exponent is
/// below −4 or at least 6, and `+Inf`, `-Inf`, `NaN`.
pub(crate) fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` yields the shortest round-trip digits: "-1.2345e-7".
    let e = format!("{v:e}");
    let (mant, exp) = match e.split_once('e') {
        Some((m, x)) => (m, x.parse::<i32>().unwrap_or(0)),
        None => (e.as_str(), 0),
    };
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldexp_is_exact_and_rounds_subnormals_once() {
        assert_eq!(ldexp(1.0, 0), 1.0);
        assert_eq!(ldexp(0.75, 3), 6.0);
        assert_eq!(ldexp(1.0, 1023), f64::from_bits(0x7fe0_0000_0000_0000));
        assert_eq!(ldexp(1.0, 1024), f64::INFINITY);
        assert_eq!(ldexp(-1.0, 5000), f64::NEG_INFINITY);
        assert_eq!(ldexp(1.0, -1022), f64::MIN_POSITIVE);
        // Subnormals: 2^-1074 is the smallest; half of it ties to even (0),
        // three quarters rounds up.
        assert_eq!(ldexp(1.0, -1074), f64::from_bits(1));
        assert_eq!(ldexp(0.5, -1074), 0.0);
        assert_eq!(ldexp(0.75, -1074), f64::from_bits(1));
        assert_eq!(ldexp(1.5, -1074), f64::from_bits(2));
        assert_eq!(ldexp(1.0, -5000), 0.0);
        // Subnormal input.
        assert_eq!(ldexp(f64::from_bits(1), 1074), 1.0);
        assert!(ldexp(f64::NAN, 3).is_nan());
        assert_eq!(ldexp(0.0, 100), 0.0);
    }

    #[test]
    fn bounds_for_negative_and_positive_schemas() {
        assert_eq!(bucket_upper_bound(-4, 0), 1.0);
        assert_eq!(bucket_upper_bound(-4, 1), 65536.0);
        assert_eq!(bucket_upper_bound(-4, -1), 1.0 / 65536.0);
        assert_eq!(bucket_upper_bound(3, 8), 2.0);
        assert_eq!(bucket_upper_bound(3, -8), 0.5);
        // Index -1 of schema 3 is the last table entry times 2^0... i.e.
        // the bucket just below 1.
        assert!(bucket_upper_bound(3, -1) < 1.0 && bucket_upper_bound(3, -1) > 0.9);
        // Extreme indices do not panic.
        assert_eq!(bucket_upper_bound(-4, i32::MAX), f64::INFINITY);
        assert_eq!(bucket_upper_bound(-4, i32::MIN), 0.0);
        assert_eq!(bucket_upper_bound(8, i32::MIN), 0.0);
        assert_eq!(bucket_upper_bound(8, i32::MAX), f64::INFINITY);
        assert_eq!(target_idx(5, 2, 0), 2);
        assert_eq!(target_idx(-5, 2, 0), -1);
        assert_eq!(target_idx(0, 2, 0), 0);
        assert_eq!(target_idx(1, 2, 0), 1);
        assert_eq!(
            get_bound(-1, CUSTOM_BUCKETS_SCHEMA, &[1.0]),
            f64::NEG_INFINITY
        );
        assert_eq!(get_bound(0, CUSTOM_BUCKETS_SCHEMA, &[1.0]), 1.0);
        assert_eq!(get_bound(1, CUSTOM_BUCKETS_SCHEMA, &[1.0]), f64::INFINITY);
        assert_eq!(get_bound(7, CUSTOM_BUCKETS_SCHEMA, &[1.0]), f64::INFINITY);
    }

    #[test]
    fn go_g_formatting() {
        for (v, want) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-3.25, "-3.25"),
            (123400.0, "123400"),
            (1e6, "1e+06"),
            (2349209.324, "2.349209324e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e21, "1e+21"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.35355339059327373, "0.35355339059327373"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_g(v), want, "{v}");
        }
    }

    #[test]
    fn kahan_compensates() {
        let (mut s, mut c) = (0.0, 0.0);
        for v in [1e16, 1.0, 1.0, -1e16] {
            (s, c) = kahan_inc(v, s, c);
        }
        assert_eq!(s + c, 2.0);
        let (s, c) = kahan_inc(f64::INFINITY, 1.0, 0.5);
        assert_eq!((s, c), (f64::INFINITY, 0.0));
    }
}
