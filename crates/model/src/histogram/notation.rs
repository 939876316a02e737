//! The histogram notation of Prometheus's PromQL test scripts and rule
//! unit tests: `{{schema:1 sum:5 count:4 z_bucket:1 z_bucket_w:0.001
//! offset:1 buckets:[1 2 1] n_offset:0 n_buckets:[1]
//! counter_reset_hint:gauge custom_values:[1 2 5]}}`.
//!
//! Semantics follow Prometheus's series-description parser: every key is
//! optional and at most once; absent keys are zero (count and sum are
//! *not* derived from the buckets); `buckets`/`n_buckets` become one span
//! starting at `offset`/`n_offset`. We are a little more lenient about
//! whitespace than Prometheus's lexer (any amount between items), and
//! accept `+` signs. Series expansion (`{{...}}+{{...}}x3`) is left to the
//! test runner.

use super::error::HistogramError;
use super::math::go_g;
use super::{CounterResetHint, FloatHistogram, Span};

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, HistogramError> {
        self.err_at(self.pos, msg)
    }

    fn err_at<T>(&self, pos: usize, msg: impl Into<String>) -> Result<T, HistogramError> {
        Err(HistogramError::Parse {
            pos,
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_whitespace()) {
            self.bump();
        }
        self.pos > start
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.rest().starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            self.bump();
        }
        &self.s[start..self.pos]
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            Some(c) => format!("{c:?}"),
            None => "end of input".to_string(),
        }
    }

    /// A float: optional sign (only if `signed`), then `Inf`/`NaN` or
    /// digits with optional fraction, exponent and `_` separators.
    fn number(&mut self, signed: bool) -> Result<f64, HistogramError> {
        let start = self.pos;
        let mut negative = false;
        match self.peek() {
            Some('-') | Some('+') if signed => {
                negative = self.bump() == Some('-');
            }
            Some('-') => return self.err("unexpected \"-\": this value must not be negative"),
            _ => {}
        }
        let v = if self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            let w = self.word();
            match w.to_ascii_lowercase().as_str() {
                "inf" => f64::INFINITY,
                "nan" => f64::NAN,
                _ => return self.err_at(start, format!("expected a number, found {w:?}")),
            }
        } else {
            let num_start = self.pos;
            let mut prev = ' ';
            while let Some(c) = self.peek() {
                let ok = c.is_ascii_digit()
                    || c == '.'
                    || c == '_'
                    || c == 'e'
                    || c == 'E'
                    || ((c == '+' || c == '-') && (prev == 'e' || prev == 'E'));
                if !ok {
                    break;
                }
                prev = c;
                self.bump();
            }
            let text = &self.s[num_start..self.pos];
            if text.is_empty() {
                return self.err(format!("expected a number, found {}", self.describe_next()));
            }
            match parse_go_number(text) {
                Some(v) => v,
                None => return self.err_at(start, format!("bad number syntax: {text:?}")),
            }
        };
        Ok(if negative { -v } else { v })
    }

    /// An integer (optionally negative if `signed`).
    fn integer(&mut self, signed: bool) -> Result<i64, HistogramError> {
        let start = self.pos;
        let negative = signed && self.eat("-");
        let digits_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let digits = &self.s[digits_start..self.pos];
        if digits.is_empty() || self.peek().is_some_and(|c| c == '.' || c.is_alphanumeric()) {
            return self.err_at(start, "expected an integer");
        }
        let v: i64 = digits
            .parse()
            .or_else(|_| self.err_at(start, format!("integer out of range: {digits}")))?;
        Ok(if negative { -v } else { v })
    }

    /// `[n n n]` with any whitespace inside.
    fn bucket_set(&mut self) -> Result<Vec<f64>, HistogramError> {
        if !self.eat("[") {
            return self.err(format!("expected \"[\", found {}", self.describe_next()));
        }
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.eat("]") {
                return Ok(out);
            }
            if !out.is_empty() && !self.s[..self.pos].ends_with(|c: char| c.is_whitespace()) {
                return self.err(format!(
                    "invalid character in buckets description: {}",
                    self.describe_next()
                ));
            }
            out.push(self.number(true)?);
        }
    }
}

/// Parses Go-syntax numbers as Prometheus's test parser does: an integer
/// literal first (where a leading `0` means octal, as Go's
/// `strconv.ParseInt(s, 0, 64)`), otherwise a decimal float.
fn parse_go_number(text: &str) -> Option<f64> {
    let clean = |s: &str| -> Option<String> {
        // Underscores only between digits.
        let b = s.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c == b'_'
                && (i == 0
                    || i + 1 == b.len()
                    || !b[i - 1].is_ascii_digit()
                    || !b[i + 1].is_ascii_digit())
            {
                return None;
            }
        }
        Some(s.replace('_', ""))
    };
    let s = clean(text)?;
    if s.bytes().all(|c| c.is_ascii_digit()) {
        if s.len() > 1 && s.starts_with('0') {
            if let Ok(v) = i64::from_str_radix(&s[1..], 8) {
                return Some(v as f64);
            }
        } else if let Ok(v) = s.parse::<i64>() {
            return Some(v as f64);
        }
    }
    // Rust's float parser accepts exactly the decimal forms left here
    // ("1.", ".5", "1e5", "1.5E-3").
    if s.contains(|c: char| c.is_ascii_digit()) {
        s.parse::<f64>().ok()
    } else {
        None
    }
}

const KEYS: [&str; 11] = [
    "schema",
    "sum",
    "count",
    "z_bucket",
    "z_bucket_w",
    "custom_values",
    "buckets",
    "offset",
    "n_buckets",
    "n_offset",
    "counter_reset_hint",
];

/// Parses one histogram in test notation; `s` includes the `{{ }}`.
/// Errors carry the byte offset of the problem.
pub fn parse_test_histogram(s: &str) -> Result<FloatHistogram, HistogramError> {
    parse_test_histogram_with_hint(s).map(|(h, _)| h)
}

/// Like [`parse_test_histogram`], also telling whether
/// `counter_reset_hint` was given explicitly (Prometheus's test runner
/// treats series of histograms differently when it was).
pub fn parse_test_histogram_with_hint(s: &str) -> Result<(FloatHistogram, bool), HistogramError> {
    let mut c = Cursor { s, pos: 0 };
    c.skip_ws();
    if !c.eat("{{") {
        return c.err("histogram description must start with \"{{\"");
    }
    let mut h = FloatHistogram::default();
    let mut seen = [false; KEYS.len()];
    let mut hint_set = false;
    let (mut buckets, mut offset, mut n_buckets, mut n_offset) = (None, 0i64, None, 0i64);
    let mut first = true;
    loop {
        let had_ws = c.skip_ws();
        if c.eat("}}") {
            break;
        }
        if c.peek().is_none() {
            return c.err("histogram description incomplete: missing \"}}\"");
        }
        if !first && !had_ws {
            return c.err(format!(
                "unexpected {} in histogram description",
                c.describe_next()
            ));
        }
        first = false;
        let key_pos = c.pos;
        let word = c.word();
        if word.is_empty() {
            return c.err(format!(
                "unexpected {} in histogram description, expected a key such as buckets:[5 10 7]",
                c.describe_next()
            ));
        }
        let lower = word.to_ascii_lowercase();
        let Some(k) = KEYS.iter().position(|k| *k == lower) else {
            return c.err_at(key_pos, format!("bad histogram descriptor found: {word:?}"));
        };
        if !c.eat(":") {
            return c.err("missing `:` for histogram descriptor");
        }
        if seen[k] {
            return c.err_at(key_pos, format!("duplicate key \"{lower}\" in histogram"));
        }
        seen[k] = true;
        match KEYS[k] {
            "schema" => {
                let pos = c.pos;
                let v = c.integer(true)?;
                h.schema = i32::try_from(v).or_else(|_| c.err_at(pos, "schema out of range"))?;
            }
            "sum" => h.sum = c.number(true)?,
            "count" => h.count = c.number(true)?,
            "z_bucket" => h.zero_count = c.number(true)?,
            "z_bucket_w" => h.zero_threshold = c.number(false)?,
            "custom_values" => h.custom_values = c.bucket_set()?,
            "buckets" => buckets = Some(c.bucket_set()?),
            "n_buckets" => n_buckets = Some(c.bucket_set()?),
            "offset" => offset = c.integer(true)?,
            "n_offset" => n_offset = c.integer(true)?,
            _ => {
                let pos = c.pos;
                let w = c.word().to_ascii_lowercase();
                h.counter_reset_hint = match w.as_str() {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => {
                        return c.err_at(
                            pos,
                            format!(
                                "bad counter_reset_hint {w:?} (want unknown, reset, not_reset or gauge)"
                            ),
                        );
                    }
                };
                hint_set = true;
            }
        }
    }
    c.skip_ws();
    if c.peek().is_some() {
        return c.err(format!(
            "unexpected {} after the histogram description",
            c.describe_next()
        ));
    }
    let side = |vals: Option<Vec<f64>>, off: i64| -> (Vec<Span>, Vec<f64>) {
        match vals {
            Some(v) if !v.is_empty() => (
                vec![Span {
                    offset: off as i32,
                    length: v.len() as u32,
                }],
                v,
            ),
            _ => (Vec::new(), Vec::new()),
        }
    };
    (h.positive_spans, h.positive_buckets) = side(buckets, offset);
    (h.negative_spans, h.negative_buckets) = side(n_buckets, n_offset);
    Ok((h, hint_set))
}

/// Formats a histogram in test notation with the canonical key order of
/// Prometheus's `TestExpression` (zero-valued keys left out; the buckets
/// of each side are first joined into one span, with empty buckets filling
/// gaps). A side whose single span would be wider than a million buckets
/// cannot be written this way; then the `Display` form is returned.
pub fn format_test_histogram(h: &FloatHistogram) -> String {
    let mut m = h.clone();
    m.compact(0);
    let too_wide = [&m.positive_spans, &m.negative_spans].iter().any(|spans| {
        let width: i64 = spans
            .iter()
            .skip(1)
            .map(|s| s.offset as i64 + s.length as i64)
            .sum::<i64>()
            + spans.first().map_or(0, |s| s.length as i64);
        width > 1_000_000
    });
    if too_wide {
        return m.to_string();
    }
    m.compact(usize::MAX);
    let mut parts: Vec<String> = Vec::new();
    if m.schema != 0 {
        parts.push(format!("schema:{}", m.schema));
    }
    if m.count != 0.0 {
        parts.push(format!("count:{}", go_g(m.count)));
    }
    if m.sum != 0.0 {
        parts.push(format!("sum:{}", go_g(m.sum)));
    }
    if m.zero_count != 0.0 {
        parts.push(format!("z_bucket:{}", go_g(m.zero_count)));
    }
    if m.zero_threshold != 0.0 {
        parts.push(format!("z_bucket_w:{}", go_g(m.zero_threshold)));
    }
    let list = |v: &[f64]| v.iter().map(|x| go_g(*x)).collect::<Vec<_>>().join(" ");
    if m.uses_custom_buckets() {
        parts.push(format!("custom_values:[{}]", list(&m.custom_values)));
    }
    match m.counter_reset_hint {
        CounterResetHint::Unknown => {}
        CounterResetHint::CounterReset => parts.push("counter_reset_hint:reset".into()),
        CounterResetHint::NotCounterReset => parts.push("counter_reset_hint:not_reset".into()),
        CounterResetHint::Gauge => parts.push("counter_reset_hint:gauge".into()),
    }
    for (spans, buckets, offset_key, buckets_key) in [
        (&m.positive_spans, &m.positive_buckets, "offset", "buckets"),
        (
            &m.negative_spans,
            &m.negative_buckets,
            "n_offset",
            "n_buckets",
        ),
    ] {
        if let Some(span) = spans.first()
            && span.offset != 0
        {
            parts.push(format!("{offset_key}:{}", span.offset));
        }
        if !buckets.is_empty() {
            parts.push(format!("{buckets_key}:[{}]", list(buckets)));
        }
    }
    format!("{{{{{}}}}}", parts.join(" "))
}
