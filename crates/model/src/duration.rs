//! Prometheus durations: `1y2w3d4h5m6s7ms`.
//!
//! Units are y (365 d), w, d, h, m, s, ms, each at most once and in
//! descending order, as Prometheus's `model.ParseDuration` requires. Not
//! `humantime`, whose year and spacing rules differ.

use std::fmt;

/// A duration in milliseconds, non-negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub i64);

/// Error parsing a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid duration string: {0:?}")]
pub struct DurationError(pub String);

const UNITS: &[(&str, i64)] = &[
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

impl Duration {
    /// Milliseconds.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Seconds as a float.
    pub fn seconds_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// As a `std::time::Duration`.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }

    /// Parses a Prometheus duration string. `0` alone is accepted.
    pub fn parse(s: &str) -> Result<Duration, DurationError> {
        let err = || DurationError(s.to_string());
        if s == "0" {
            return Ok(Duration(0));
        }
        if s.is_empty() {
            return Err(err());
        }
        let b = s.as_bytes();
        let mut i = 0;
        let mut total: i64 = 0;
        let mut last_unit = usize::MAX; // index into UNITS of the previous unit
        while i < b.len() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(err());
            }
            let n: i64 = s[start..i].parse().map_err(|_| err())?;
            let ustart = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &s[ustart..i];
            let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(err)?;
            if last_unit != usize::MAX && idx <= last_unit {
                return Err(err());
            }
            last_unit = idx;
            total = n
                .checked_mul(UNITS[idx].1)
                .and_then(|x| total.checked_add(x))
                .ok_or_else(err)?;
        }
        Ok(Duration(total))
    }
}

/// Formats like Prometheus: largest units first, zero parts omitted, `0s`
/// for zero.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        if ms < 0 {
            f.write_str("-")?;
            ms = -ms;
        }
        for (u, n) in UNITS {
            // Prometheus prints years and weeks only when the value is whole.
            if (*u == "w" || *u == "y") && ms % n != 0 {
                continue;
            }
            if ms >= *n {
                write!(f, "{}{}", ms / n, u)?;
                ms %= n;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        assert_eq!(Duration::parse("1m30s").unwrap().0, 90_000);
        assert_eq!(Duration::parse("1y").unwrap().0, 365 * 86_400_000);
        assert_eq!(Duration::parse("250ms").unwrap().0, 250);
        assert_eq!(Duration::parse("0").unwrap().0, 0);
        for bad in ["", "1", "1x", "30s1m", "1m1m", "-1s", "1.5s", "h"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Duration(90_000).to_string(), "1m30s");
        assert_eq!(Duration(14 * 86_400_000).to_string(), "2w");
        assert_eq!(Duration(15 * 86_400_000).to_string(), "15d");
        assert_eq!(Duration(0).to_string(), "0s");
        assert_eq!(Duration(3_600_000).to_string(), "1h");
    }
}
