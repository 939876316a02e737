//! Byte sizes as Prometheus writes them (`body_size_limit: 10MB`).
//!
//! Prometheus parses these with `units.ParseBase2Bytes`: every unit is a
//! power of 1024, spelled either `KiB`, `MiB`, ... or the older `KB`, `MB`,
//! ...; `B` is one byte; parts may be chained (`1GB512MB`) and may have a
//! fraction (`1.5MB`); a bare number other than `0` is an error (no unit).
//! The two spellings cannot be mixed in one value.

/// Units with the `iB` suffix, and the older `B` suffix, both base 1024.
const IEC: &[(&str, u32)] = &[
    ("B", 0),
    ("KiB", 1),
    ("MiB", 2),
    ("GiB", 3),
    ("TiB", 4),
    ("PiB", 5),
    ("EiB", 6),
];
const OLD: &[(&str, u32)] = &[
    ("B", 0),
    ("KB", 1),
    ("MB", 2),
    ("GB", 3),
    ("TB", 4),
    ("PB", 5),
    ("EB", 6),
];

/// Parses a byte size. The error text follows Prometheus's wording.
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    match parse_with(s, IEC) {
        Ok(v) => Ok(v),
        Err(_) => parse_with(s, OLD),
    }
}

fn parse_with(orig: &str, units: &[(&str, u32)]) -> Result<u64, String> {
    let invalid = || format!("units: invalid {orig}");
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next()
        && (c == '-' || c == '+')
    {
        neg = c == '-';
        s = &s[1..];
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut value = if int_len > 0 {
            s[..int_len].parse::<u64>().map_err(|_| invalid())? as f64
        } else {
            0.0
        };
        s = &s[int_len..];
        let mut frac_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
            if frac_len > 0 {
                let digits = &rest[..frac_len];
                let x = digits.parse::<u64>().map_err(|_| invalid())? as f64;
                value += x / 10f64.powi(frac_len as i32);
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .take_while(|&c| !(c == b'.' || c.is_ascii_digit()))
            .count();
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let Some(&(_, power)) = units.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("units: unknown unit {unit} in {orig}"));
        };
        total += value * 1024f64.powi(power as i32);
    }
    if neg && total > 0.0 {
        return Err(format!("{orig:?} is negative"));
    }
    // Go converts through int64; anything at or beyond 2^63 overflows.
    if total >= (1u64 << 63) as f64 {
        return Err("units: overflow parsing unit".to_string());
    }
    Ok(total as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1B"), Ok(1));
        assert_eq!(parse_bytes("10KB"), Ok(10 * 1024));
        assert_eq!(parse_bytes("10KiB"), Ok(10 * 1024));
        assert_eq!(parse_bytes("100MB"), Ok(100 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1GB512MB"), Ok((1 << 30) + (512 << 20)));
        assert_eq!(parse_bytes("1.5MB"), Ok(3 << 19));
        assert_eq!(parse_bytes(".5KB"), Ok(512));
        assert_eq!(parse_bytes("2TB"), Ok(2 << 40));
    }

    #[test]
    fn bad_sizes() {
        assert_eq!(
            parse_bytes("100").unwrap_err(),
            "units: unknown unit  in 100"
        );
        assert_eq!(
            parse_bytes("10mb").unwrap_err(),
            "units: unknown unit mb in 10mb"
        );
        for bad in ["", "MB", "-", ".MB", "1KiB1KB", "10EB", "-1MB", "1 MB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
