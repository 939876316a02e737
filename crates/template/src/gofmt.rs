//! Go `fmt`/`strconv`/`net` behaviours that Prometheus's template functions
//! rely on, reimplemented so our output is byte-identical to theirs.

/// Formats `v` as Go's `fmt.Sprintf("%.<prec>g", v)` does.
///
/// Go picks `%e` when the decimal exponent is below -4 or at least the
/// precision, otherwise `%f`; in both cases trailing zeros (and a trailing
/// decimal point) are removed, and the exponent has at least two digits with
/// an explicit sign (`1e+06`). Infinities print as `+Inf`/`-Inf`, NaN as `NaN`.
pub fn fmt_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let prec = prec.max(1);
    // Round to `prec` significant digits first: Rust's `{:e}` rounds half to
    // even on the exact binary value, as Go's strconv does.
    let e = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = match e.split_once('e') {
        Some((m, x)) => (m.to_string(), x.parse::<i32>().unwrap_or(0)),
        None => panic!("BUG: Rust exponent formatting without 'e': {e}"),
    };
    let neg = mant.starts_with('-');
    if v == 0.0 {
        return if neg { "-0" } else { "0" }.to_string();
    }
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    layout(neg, &digits, exp, prec as i32)
}

/// Formats `v` as Go's `fmt.Sprint(v)` (`%v`) does for a float64: the
/// shortest representation that round-trips, in `%e` form when the decimal
/// exponent is below -4 or at least 6 (`1e+06`, `123456`, `1.234567e+06`,
/// `1e-05`, `0.0001`).
pub fn fmt_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` prints the shortest round-tripping digits, as Go does.
    let e = format!("{v:e}");
    let (mant, exp) = match e.split_once('e') {
        Some((m, x)) => (m.to_string(), x.parse::<i32>().unwrap_or(0)),
        None => panic!("BUG: Rust exponent formatting without 'e': {e}"),
    };
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    layout(neg, &digits, exp, 6)
}

/// Places significant `digits` (no trailing zeros) with decimal exponent
/// `exp` in Go's `%g` layout for the exponent threshold `eprec`.
fn layout(neg: bool, digits: &str, exp: i32, eprec: i32) -> String {
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if neg { "-" } else { "" };
    if exp < -4 || exp >= eprec {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.unsigned_abs())
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        }
    } else {
        let zeros = (-exp - 1) as usize;
        format!("{sign}0.{}{digits}", "0".repeat(zeros))
    }
}

/// Go's `net.SplitHostPort`: `host:port`, `[v6]:port`; `None` when the
/// input has no port or too many colons.
pub fn split_host_port(s: &str) -> Option<(String, String)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':')?;
        if port.contains(':') || port.contains('[') || port.contains(']') {
            return None;
        }
        return Some((host.to_string(), port.to_string()));
    }
    let i = s.rfind(':')?;
    let host = &s[..i];
    if host.contains(':') || host.contains('[') || host.contains(']') {
        return None;
    }
    let port = &s[i + 1..];
    if port.contains('[') || port.contains(']') {
        return None;
    }
    Some((host.to_string(), port.to_string()))
}

/// Go's `net.JoinHostPort`: brackets a host that contains a colon.
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's `net.ParseIP(s) != nil` (IPv4 dotted quad or IPv6, no zone).
pub fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// Go's `url.QueryEscape`: space becomes `+`, everything but
/// `A-Z a-z 0-9 - _ . ~` is percent-encoded in upper-case hex.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `strconv.ParseFloat(s, 64)` for the inputs templates see: decimal and
/// exponent notation, `Inf`/`Infinity`/`NaN` in any case with an optional sign,
/// `_` separators are rejected (Go only allows them with a base prefix).
pub fn parse_float(s: &str) -> Result<f64, String> {
    let err = || {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            go_quote(s)
        )
    };
    if s.contains('_') || s.trim() != s || s.is_empty() {
        return Err(err());
    }
    let body = s.trim_start_matches(['+', '-']);
    let lower = body.to_ascii_lowercase();
    if (s.len() - body.len()) > 1 {
        return Err(err());
    }
    if lower.starts_with("0x") {
        return parse_hex_float(s).ok_or_else(err);
    }
    s.parse::<f64>().map_err(|_| err())
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let body = body.get(2..)?;
    let (mant, exp) = match body.find(['p', 'P']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    let v = v * 2f64.powi(exp);
    Some(if neg { -v } else { v })
}

/// Go's `%q` for a string (enough for error messages: ASCII escapes).
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `strings.Title` as Prometheus uses it (through `cases.Title` with
/// `NoLower`): the first letter of each word is upper-cased, the rest is left
/// alone. A word starts after whitespace or ASCII punctuation other than `_`
/// and `'`.
pub fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = is_separator(c);
    }
    out
}

fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_' || c == '\'');
    }
    if c.is_alphanumeric() {
        return false;
    }
    c.is_whitespace()
}

/// Go's `time.Time.String()` for a UTC instant given in milliseconds:
/// `2006-01-02 15:04:05.999999999 +0000 UTC` (fraction without trailing zeros).
pub fn go_time_string(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => {
            let base = t.format("%Y-%m-%d %H:%M:%S").to_string();
            let frac = if nanos == 0 {
                String::new()
            } else {
                let f = format!(".{nanos:09}");
                f.trim_end_matches('0').to_string()
            };
            format!("{base}{frac} +0000 UTC")
        }
        // Outside chrono's range (about ±262000 years): Go prints such years
        // too, but nobody renders them in an alert; say what it is instead.
        None => format!("{ms}ms since epoch (out of range)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_g_matches_go() {
        // Expected strings are what Go's fmt.Sprintf("%.4g", v) prints.
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (1234.0, "1234"),
            (12345.0, "1.234e+04"),
            (12355.0, "1.236e+04"),
            (100000.0, "1e+05"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e100, "1e+100"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (999.96, "1000"),
            (9999.6, "1e+04"),
            (123.456, "123.5"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt_g(*v, 4), *want, "value {v}");
        }
    }

    #[test]
    fn fmt_v_matches_go() {
        // Expected strings are what Go's fmt.Sprint(float64) prints.
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.0, "1"),
            (0.97, "0.97"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-9.223372036854776e18, "-9.223372036854776e+18"),
            (1.8446744073709552e19, "1.8446744073709552e+19"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
            (-2.5, "-2.5"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt_v(*v), *want, "value {v}");
        }
    }

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("foo.example.com:9090"),
            Some(("foo.example.com".into(), "9090".into()))
        );
        assert_eq!(
            split_host_port("[::1]:80"),
            Some(("::1".into(), "80".into()))
        );
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("foo"), None);
        assert_eq!(join_host_port("::1", "80"), "[::1]:80");
    }

    #[test]
    fn escapes_and_titles() {
        assert_eq!(query_escape("up == 0"), "up+%3D%3D+0");
        assert_eq!(query_escape("a{b=\"c\"}"), "a%7Bb%3D%22c%22%7D");
        assert_eq!(title("aa bb CC"), "Aa Bb CC");
        assert_eq!(title("hello-world foo_bar"), "Hello-World Foo_bar");
    }

    #[test]
    fn floats_parse_like_strconv() {
        assert_eq!(parse_float("1e3"), Ok(1000.0));
        assert_eq!(parse_float("-Inf"), Ok(f64::NEG_INFINITY));
        assert!(parse_float("NaN").is_ok_and(f64::is_nan));
        assert_eq!(parse_float("0x10"), Ok(16.0));
        assert_eq!(
            parse_float("abc"),
            Err("strconv.ParseFloat: parsing \"abc\": invalid syntax".to_string())
        );
        assert!(parse_float("1_0").is_err());
        assert!(parse_float("--1").is_err());
    }

    #[test]
    fn time_strings() {
        assert_eq!(
            go_time_string(1_435_065_584_128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(go_time_string(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time_string(-1), "1969-12-31 23:59:59.999 +0000 UTC");
    }
}
