//! Number parsing with the grammar Prometheus accepts.
//!
//! Prometheus parses sample values with Go's `strconv.ParseFloat` after
//! rejecting `p`, `P` and `_` (so no hex floats, no digit separators). That
//! grammar is: an optional sign and decimal digits with an optional point
//! and exponent (`1`, `-0`, `.5`, `5.`, `1e3`, `1E-3`), or case-insensitive
//! `inf`/`infinity` with an optional sign, or `nan` without a sign. Values
//! that overflow are errors, not infinities.
//!
//! Most exposed values are short integers or short decimals, so a fast path
//! handles up to 15 significant digits without an exponent exactly (the
//! mantissa and the power of ten are both exact doubles, so one division is
//! correctly rounded); everything else goes through the standard library's
//! correctly-rounded parser.

/// The NaN bit pattern Go's `ParseFloat("NaN")` returns, which is what
/// Prometheus stores for a scraped `NaN`. Using it keeps our chunks
/// bit-identical, and it is never the staleness marker.
pub(crate) const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Parses a sample value. The error is a short description without the
/// token (the caller adds position and text).
pub(crate) fn parse_float(s: &[u8]) -> Result<f64, &'static str> {
    if let Some(v) = fast_decimal(s) {
        return Ok(v);
    }
    slow_float(s)
}

/// `[+-]?digits[.digits]` or `[+-]?.digits` with at most 15 digits.
#[inline]
fn fast_decimal(s: &[u8]) -> Option<f64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let mut m: u64 = 0;
    let mut nd = 0usize;
    let mut frac = 0usize;
    let mut dot = false;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                if nd == 15 {
                    return None;
                }
                m = m * 10 + u64::from(c - b'0');
                nd += 1;
                frac += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
    }
    if nd == 0 {
        return None;
    }
    let v = m as f64 / *POW10.get(frac)?;
    Some(if neg { -v } else { v })
}

#[cold]
fn slow_float(s: &[u8]) -> Result<f64, &'static str> {
    if s.is_empty() {
        return Err("empty value");
    }
    let (sign, body) = match s.first() {
        Some(b'-') => (Some(-1.0), s.get(1..).unwrap_or_default()),
        Some(b'+') => (Some(1.0), s.get(1..).unwrap_or_default()),
        _ => (None, s),
    };
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Ok(sign.unwrap_or(1.0) * f64::INFINITY);
    }
    if body.eq_ignore_ascii_case(b"nan") {
        if sign.is_some() {
            return Err("invalid float (signed NaN)");
        }
        return Ok(f64::from_bits(NORMAL_NAN_BITS));
    }
    if !s
        .iter()
        .all(|&c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err("invalid float");
    }
    let text = std::str::from_utf8(s).map_err(|_| "invalid float")?;
    match text.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err("float out of range"),
        Ok(v) => Ok(v),
        Err(_) => Err("invalid float"),
    }
}

/// Parses a text-format timestamp: `-?[0-9]+` milliseconds.
pub(crate) fn parse_int_ms(s: &[u8]) -> Result<i64, &'static str> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, s.get(1..).unwrap_or_default()),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err("invalid timestamp");
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err("invalid timestamp");
        }
        let d = i64::from(c - b'0');
        v = v
            .checked_mul(10)
            .and_then(|v| {
                if neg {
                    v.checked_sub(d)
                } else {
                    v.checked_add(d)
                }
            })
            .ok_or("timestamp out of range")?;
    }
    Ok(v)
}

/// Parses an OpenMetrics timestamp (float seconds) into milliseconds,
/// truncating toward zero like Prometheus. Plain decimals are converted
/// exactly (`1.001` is 1001 ms, where `1.001 * 1000.0` in floating point
/// would truncate to 1000); other forms go through `f64`.
pub(crate) fn parse_seconds_to_ms(s: &[u8]) -> Result<i64, &'static str> {
    if let Some(ms) = exact_decimal_ms(s) {
        return Ok(ms);
    }
    let v = parse_float(s)?;
    if !v.is_finite() {
        return Err("invalid timestamp (NaN or Inf)");
    }
    let ms = v * 1000.0;
    if ms >= 9.2e18 || ms <= -9.2e18 {
        return Err("timestamp out of range");
    }
    Ok(ms as i64)
}

fn exact_decimal_ms(s: &[u8]) -> Option<i64> {
    let (neg, rest) = match s.first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let (int, frac) = match rest.iter().position(|&c| c == b'.') {
        Some(i) => (rest.get(..i)?, rest.get(i + 1..)?),
        None => (rest, &[][..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i64 = 0;
    for &c in int {
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    let mut ms: i64 = 0;
    for i in 0..3 {
        let d = frac.get(i).map_or(0, |&c| i64::from(c - b'0'));
        ms = ms * 10 + d;
    }
    let total = v.checked_mul(1000)?.checked_add(ms)?;
    Some(if neg { -total } else { total })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn f(s: &str) -> Result<f64, &'static str> {
        parse_float(s.as_bytes())
    }

    #[test]
    fn go_floats() {
        assert_eq!(f("1"), Ok(1.0));
        assert_eq!(f("1e3"), Ok(1000.0));
        assert_eq!(f("1E-3"), Ok(0.001));
        assert_eq!(f(".5"), Ok(0.5));
        assert_eq!(f("5."), Ok(5.0));
        assert_eq!(f("+2.5"), Ok(2.5));
        assert_eq!(f("0.1"), Ok(0.1));
        assert_eq!(f("123456.789"), Ok(123456.789));
        assert_eq!(f("1234567890123456789"), Ok(1234567890123456789.0));
        assert_eq!(f("0.30000000000000004"), Ok(0.30000000000000004));
        let z = f("-0").unwrap();
        assert!(z == 0.0 && z.is_sign_negative());
        assert_eq!(f("+Inf"), Ok(f64::INFINITY));
        assert_eq!(f("-Inf"), Ok(f64::NEG_INFINITY));
        assert_eq!(f("Inf"), Ok(f64::INFINITY));
        assert_eq!(f("inf"), Ok(f64::INFINITY));
        assert_eq!(f("-infinity"), Ok(f64::NEG_INFINITY));
        assert_eq!(f("NaN").unwrap().to_bits(), NORMAL_NAN_BITS);
        assert_eq!(f("nan").unwrap().to_bits(), NORMAL_NAN_BITS);
        assert_eq!(f("1.7976931348623157e308"), Ok(f64::MAX));
    }

    #[test]
    fn fast_path_agrees_with_std() {
        for s in [
            "0",
            "1",
            "42",
            "0.5",
            "3.14159",
            "-17.25",
            "999999999999999",
            "0.000001",
            "123.456",
            "1.1",
            "2.2",
            "33.33",
            "0.1234567890123",
        ] {
            let want: f64 = s.parse().unwrap();
            assert_eq!(f(s).unwrap().to_bits(), want.to_bits(), "{s}");
        }
    }

    #[test]
    fn rejected_floats() {
        for s in [
            "", "-", "+", ".", "1e", "e3", "0x10", "0x1p3", "1_000", "1p3", "abc", "+NaN", "-nan",
            "1.2.3", "--1", "1e400", "-1e400", "infx", "١",
        ] {
            assert!(f(s).is_err(), "{s:?} should fail");
        }
    }

    #[test]
    fn int_timestamps() {
        assert_eq!(parse_int_ms(b"1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_int_ms(b"-5"), Ok(-5));
        assert_eq!(parse_int_ms(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_int_ms(b"-9223372036854775808"), Ok(i64::MIN));
        assert!(parse_int_ms(b"9223372036854775808").is_err());
        assert!(parse_int_ms(b"1.5").is_err());
        assert!(parse_int_ms(b"-").is_err());
        assert!(parse_int_ms(b"").is_err());
    }

    #[test]
    fn second_timestamps() {
        assert_eq!(parse_seconds_to_ms(b"1"), Ok(1000));
        assert_eq!(parse_seconds_to_ms(b"1.001"), Ok(1001));
        assert_eq!(parse_seconds_to_ms(b"1.0019"), Ok(1001));
        assert_eq!(parse_seconds_to_ms(b"-1.5"), Ok(-1500));
        assert_eq!(parse_seconds_to_ms(b".25"), Ok(250));
        assert_eq!(
            parse_seconds_to_ms(b"1700000000.123"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(parse_seconds_to_ms(b"1.5e3"), Ok(1_500_000));
        assert!(parse_seconds_to_ms(b"NaN").is_err());
        assert!(parse_seconds_to_ms(b"+Inf").is_err());
        assert!(parse_seconds_to_ms(b"1e300").is_err());
        assert!(parse_seconds_to_ms(b"x").is_err());
        assert!(parse_seconds_to_ms(b".").is_err());
    }
}
