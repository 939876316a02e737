//! Samples, timestamps and the staleness marker.

/// A timestamp in milliseconds since the Unix epoch, as everywhere in
/// Prometheus.
pub type Timestamp = i64;

/// The bit pattern Prometheus writes as a staleness marker: a NaN that no
/// arithmetic produces, so it can be told apart from a scraped `NaN`.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness-marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True when `v` is exactly the staleness marker (not any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Timestamp in milliseconds.
    pub t: Timestamp,
    /// Value.
    pub v: f64,
}

/// Current wall-clock time in milliseconds.
pub fn now_millis() -> Timestamp {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Formats a float the way Prometheus's API and exposition do
/// (Go's `strconv.FormatFloat(v, 'f', -1, 64)` plus `+Inf`/`-Inf`/`NaN`).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's shortest round-trip Display never uses exponents, like 'f'.
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1e-7), "0.0000001");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert!(is_stale_nan(stale_nan()) && !is_stale_nan(f64::NAN));
    }
}
