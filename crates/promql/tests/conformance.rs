//! PromQL conformance: runs Prometheus's promqltest scripts (and our own in
//! `testdata/`) against the engine over a `pharos_tsdb::Head`.
//!
//! The scripts are read from `$PROMQLTEST_DIR` or `../shared/promqltest`
//! next to the repository; they are never copied into the repository. The
//! script language is described in that directory's `FORMAT.md`.
//!
//! Every failing case must be listed in `tests/known_failures.txt`
//! (`file:line  reason`); the test fails on a failure that is not listed and
//! on a listed case that now passes, so the list only shrinks. Native
//! histograms (`{{...}}` literals, `load_with_nhcb`) are loaded and
//! compared like Prometheus's promqltest does; while the head does not take
//! histograms they are served from memory beside it. Set
//! `PHAROS_WRITE_KNOWN_FAILURES=1` to print the current failures in the
//! list's format.
//!
//! Every file runs with experimental features enabled, as promqltest's
//! `TestParserOpts` does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use pharos_model::histogram::{
    CUSTOM_BUCKETS_SCHEMA, FloatHistogram, HistogramValue, Span, parse_test_histogram_with_hint,
};
use pharos_model::{Duration, Labels, Matcher, Sample, stale_nan};
use pharos_promql::{Engine, EngineOptions, QueryError, QueryResult, Value};
use pharos_storage::{
    Appendable, Querier, Queryable, SampleIter, SelectHints, SeriesSet, StorageError, VecSeriesSet,
};
use pharos_tsdb::Head;
use regex::Regex;

// ---------------------------------------------------------------------------
// Script parsing.

/// One value of a series description.
#[derive(Debug, Clone)]
enum SeqVal {
    Omitted,
    Float(f64),
    /// A histogram, and whether its counter reset hint was given (and so
    /// is to be checked).
    Histogram(Box<FloatHistogram>, bool),
}

#[derive(Debug, Clone)]
struct SeriesDesc {
    labels: Labels,
    values: Vec<SeqVal>,
}

#[derive(Debug, Default, Clone)]
struct Expect {
    kind: String,
    /// Exact message, or regex.
    msg: Option<String>,
    regex: Option<Regex>,
}

impl Expect {
    fn matches(&self, s: &str) -> bool {
        match (&self.msg, &self.regex) {
            (Some(m), _) => m == s,
            (None, Some(r)) => r.is_match(s),
            (None, None) => true,
        }
    }
}

#[derive(Debug)]
struct EvalCmd {
    line: usize,
    expr: String,
    is_range: bool,
    start: i64,
    end: i64,
    step: i64,
    expects: Vec<Expect>,
    fail: bool,
    warn: bool,
    info: bool,
    ordered: bool,
    expected_fail_message: Option<String>,
    expected_fail_regexp: Option<Regex>,
    expect_scalar: Option<f64>,
    expected: Vec<(usize, SeriesDesc)>,
    expected_string: Option<String>,
    /// Range-vector expectations of an instant query.
    range_vector: Option<(i64, i64, i64)>,
    exclude_from_range: bool,
    mentions_histogram: bool,
}

#[derive(Debug)]
enum Cmd {
    Load {
        interval: i64,
        series: Vec<SeriesDesc>,
        with_nhcb: bool,
        line: usize,
    },
    Clear,
    Eval(Box<EvalCmd>),
}

fn parse_duration_ms(s: &str) -> Result<i64, String> {
    Duration::parse(s.trim())
        .map(|d| d.millis())
        .map_err(|e| e.to_string())
}

/// Go's `strconv.Unquote` for "…", '…' and `…`.
fn unquote(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.len() < 2 {
        return Err(format!("invalid quoted string {s:?}"));
    }
    let q = s.as_bytes()[0];
    if s.as_bytes()[s.len() - 1] != q {
        return Err(format!("invalid quoted string {s:?}"));
    }
    let inner = &s[1..s.len() - 1];
    if q == b'`' {
        return Ok(inner.to_string());
    }
    if q != b'"' && q != b'\'' {
        return Err(format!("invalid quoted string {s:?}"));
    }
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            Some('x') => {
                let h: String = chars.by_ref().take(2).collect();
                let v = u8::from_str_radix(&h, 16).map_err(|e| e.to_string())?;
                out.push(v as char);
            }
            Some('u') => {
                let h: String = chars.by_ref().take(4).collect();
                let v = u32::from_str_radix(&h, 16).map_err(|e| e.to_string())?;
                out.push(char::from_u32(v).ok_or("bad \\u escape")?);
            }
            Some('U') => {
                let h: String = chars.by_ref().take(8).collect();
                let v = u32::from_str_radix(&h, 16).map_err(|e| e.to_string())?;
                out.push(char::from_u32(v).ok_or("bad \\U escape")?);
            }
            other => return Err(format!("invalid escape {other:?}")),
        }
    }
    Ok(out)
}

/// Splits `metric{labels} values` into labels and the value text.
fn parse_series_desc(line: &str) -> Result<SeriesDesc, String> {
    let line = line.trim();
    let b = line.as_bytes();
    let mut i = 0;
    let mut pairs: Vec<(String, String)> = Vec::new();
    // Metric name.
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    if i > 0 {
        pairs.push(("__name__".into(), line[..i].to_string()));
    }
    if i < b.len() && b[i] == b'{' {
        i += 1;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b',') {
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated label set".into());
            }
            if b[i] == b'}' {
                i += 1;
                break;
            }
            // Label name: identifier or quoted.
            let name;
            if b[i] == b'"' || b[i] == b'\'' {
                let end = find_string_end(line, i)?;
                name = unquote(&line[i..end])?;
                i = end;
            } else {
                let st = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                name = line[st..i].to_string();
            }
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i < b.len() && (b[i] == b',' || b[i] == b'}') {
                // A bare quoted name is the metric name.
                pairs.push(("__name__".into(), name));
                continue;
            }
            if i >= b.len() || b[i] != b'=' {
                return Err(format!("expected '=' in {line:?}"));
            }
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let end = find_string_end(line, i)?;
            let value = unquote(&line[i..end])?;
            i = end;
            pairs.push((name, value));
        }
    }
    let rest = &line[i..];
    let values = parse_values(rest)?;
    Ok(SeriesDesc {
        labels: Labels::from_pairs(&pairs),
        values,
    })
}

fn find_string_end(s: &str, start: usize) -> Result<usize, String> {
    let b = s.as_bytes();
    let q = *b.get(start).ok_or("expected string")?;
    if q != b'"' && q != b'\'' && q != b'`' {
        return Err(format!("expected quoted string at {start} in {s:?}"));
    }
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            return Ok(i + 1);
        }
        i += 1;
    }
    Err(format!("unterminated string in {s:?}"))
}

/// Parses the expanding value notation: `1 2+3x4 _ _x2 stale NaN -Inf
/// {{...}}`.
fn parse_values(s: &str) -> Result<Vec<SeqVal>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Token until whitespace, but histogram literals may contain spaces.
        let st = i;
        let mut depth = 0;
        while i < b.len() {
            if b[i] == b'{' {
                depth += 1;
            } else if b[i] == b'}' {
                depth -= 1;
            } else if b[i].is_ascii_whitespace() && depth == 0 {
                break;
            }
            i += 1;
        }
        let tok = &s[st..i];
        if tok.contains("{{") {
            out.extend(parse_histogram_item(tok)?);
            continue;
        }
        out.extend(parse_value_token(tok)?);
    }
    Ok(out)
}

fn parse_number_prefix(s: &str) -> Option<(f64, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let st = i;
    if i < b.len() && b[i].is_ascii_alphabetic() {
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let word = s[st..i].to_ascii_lowercase();
        let neg = s.starts_with('-');
        let v = match word.as_str() {
            "inf" | "infinity" => f64::INFINITY,
            "nan" => f64::NAN,
            _ => return None,
        };
        return Some((if neg { -v } else { v }, i));
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || c == b'.' {
            i += 1;
        } else if (c == b'e' || c == b'E')
            && i + 1 < b.len()
            && (b[i + 1].is_ascii_digit()
                || ((b[i + 1] == b'+' || b[i + 1] == b'-')
                    && i + 2 < b.len()
                    && b[i + 2].is_ascii_digit()))
        {
            i += 2;
        } else {
            break;
        }
    }
    if i == st {
        return None;
    }
    s[..i].parse::<f64>().ok().map(|v| (v, i))
}

fn parse_value_token(tok: &str) -> Result<Vec<SeqVal>, String> {
    if tok == "_" {
        return Ok(vec![SeqVal::Omitted]);
    }
    if let Some(n) = tok.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| format!("bad value {tok:?}"))?;
        return Ok(vec![SeqVal::Omitted; n]);
    }
    if tok == "stale" {
        return Ok(vec![SeqVal::Float(stale_nan())]);
    }
    let (first, used) = parse_number_prefix(tok).ok_or_else(|| format!("bad value {tok:?}"))?;
    let rest = &tok[used..];
    if rest.is_empty() {
        return Ok(vec![SeqVal::Float(first)]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n: usize = n.parse().map_err(|_| format!("bad value {tok:?}"))?;
        return Ok(vec![SeqVal::Float(first); n + 1]);
    }
    let (inc, used2) = parse_number_prefix(rest).ok_or_else(|| format!("bad value {tok:?}"))?;
    let rest2 = &rest[used2..];
    let n: usize = rest2
        .strip_prefix('x')
        .ok_or_else(|| format!("bad value {tok:?}"))?
        .parse()
        .map_err(|_| format!("bad value {tok:?}"))?;
    let mut out = Vec::with_capacity(n + 1);
    let mut v = first;
    out.push(SeqVal::Float(v));
    for _ in 0..n {
        v += inc;
        out.push(SeqVal::Float(v));
    }
    Ok(out)
}

fn parse_number_line(s: &str) -> Option<f64> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x") {
        return i64::from_str_radix(h, 16).ok().map(|v| v as f64);
    }
    match t.to_ascii_lowercase().as_str() {
        "nan" => return Some(f64::NAN),
        "inf" | "+inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    if t.chars()
        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    t.parse::<f64>().ok()
}

struct Script {
    cmds: Vec<Cmd>,
}

fn parse_script(text: &str) -> Result<Script, String> {
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let pat_load = Regex::new(r"^load(?:_(with_nhcb))?\s+(.+?)$").unwrap();
    let pat_instant =
        Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
            .unwrap();
    let pat_range = Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap();
    let pat_expect =
        Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
            .unwrap();
    let pat_range_vec =
        Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$").unwrap();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if word == "clear" {
            cmds.push(Cmd::Clear);
            i += 1;
        } else if word.starts_with("load") {
            let caps = pat_load
                .captures(l)
                .ok_or_else(|| format!("line {}: invalid load command", i + 1))?;
            let with_nhcb = caps.get(1).is_some();
            let interval = parse_duration_ms(&caps[2])?;
            let line = i + 1;
            let mut series = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                let first = lines[i].split_whitespace().next().unwrap_or("");
                if first.ends_with("@st") {
                    // Start-timestamp lines (experimental): not supported.
                    i += 1;
                    continue;
                }
                let d = parse_series_desc(&lines[i]).map_err(|e| format!("line {}: {e}", i + 1))?;
                // A later line for the same series replaces an earlier one.
                series.retain(|x: &SeriesDesc| x.labels != d.labels);
                series.push(d);
                i += 1;
            }
            cmds.push(Cmd::Load {
                interval,
                series,
                with_nhcb,
                line,
            });
        } else if word.starts_with("eval") {
            let line = i + 1;
            let mut cmd = if let Some(c) = pat_instant.captures(l) {
                let at = c.get(2).map(|m| m.as_str()).unwrap_or("0");
                let t = parse_duration_ms(at).map_err(|e| format!("line {line}: {e}"))?;
                let mut e = new_eval(line, c[3].to_string(), false, t, t, 0);
                match c.get(1).map(|m| m.as_str()) {
                    Some("fail") => e.fail = true,
                    Some("warn") => e.warn = true,
                    Some("ordered") => e.ordered = true,
                    Some("info") => e.info = true,
                    _ => {}
                }
                e
            } else if let Some(c) = pat_range.captures(l) {
                let s = parse_duration_ms(&c[2]).map_err(|e| format!("line {line}: {e}"))?;
                let en = parse_duration_ms(&c[3]).map_err(|e| format!("line {line}: {e}"))?;
                let st = parse_duration_ms(&c[4]).map_err(|e| format!("line {line}: {e}"))?;
                let mut e = new_eval(line, c[5].to_string(), true, s, en, st);
                match c.get(1).map(|m| m.as_str()) {
                    Some("fail") => e.fail = true,
                    Some("warn") => e.warn = true,
                    Some("info") => e.info = true,
                    _ => {}
                }
                e
            } else {
                return Err(format!("line {line}: invalid eval command"));
            };
            i += 1;
            let mut pos = 1;
            while i < lines.len() && !lines[i].is_empty() {
                let d = lines[i].clone();
                i += 1;
                if cmd.fail && d.starts_with("expected_fail_message") {
                    cmd.expected_fail_message =
                        Some(d["expected_fail_message".len()..].trim().to_string());
                    break;
                }
                if cmd.fail && d.starts_with("expected_fail_regexp") {
                    let p = d["expected_fail_regexp".len()..].trim();
                    cmd.expected_fail_regexp = Some(Regex::new(p).map_err(|e| e.to_string())?);
                    break;
                }
                if let Some(c) = pat_range_vec.captures(&d) {
                    cmd.range_vector = Some((
                        parse_duration_ms(&c[1])?,
                        parse_duration_ms(&c[2])?,
                        parse_duration_ms(&c[3])?,
                    ));
                    cmd.exclude_from_range = true;
                    continue;
                }
                if let Some(rest) = d.strip_prefix("expect string") {
                    cmd.expected_string = Some(unquote(rest.trim())?);
                    cmd.exclude_from_range = true;
                    continue;
                }
                if d.split(' ').next() == Some("expect") {
                    let c = pat_expect
                        .captures(d.trim())
                        .ok_or_else(|| format!("line {}: invalid expect", i))?;
                    let mut e = Expect {
                        kind: c[1].to_string(),
                        ..Default::default()
                    };
                    match c.get(2).map(|m| m.as_str()) {
                        Some("msg") => e.msg = Some(c[3].trim().to_string()),
                        Some("regex") => {
                            e.regex = Some(Regex::new(c[3].trim()).map_err(|e| e.to_string())?)
                        }
                        _ => {}
                    }
                    cmd.expects.push(e);
                    continue;
                }
                if let Some(f) = parse_number_line(&d) {
                    cmd.expect_scalar = Some(f);
                    break;
                }
                let desc = parse_series_desc(&d).map_err(|e| format!("line {}: {e}", i))?;
                if desc
                    .values
                    .iter()
                    .any(|v| matches!(v, SeqVal::Histogram(..)))
                {
                    cmd.mentions_histogram = true;
                }
                cmd.expected.push((pos, desc));
                pos += 1;
            }
            cmds.push(Cmd::Eval(Box::new(cmd)));
        } else {
            return Err(format!("line {}: invalid command {l:?}", i + 1));
        }
    }
    Ok(Script { cmds })
}

fn new_eval(line: usize, expr: String, is_range: bool, start: i64, end: i64, step: i64) -> EvalCmd {
    EvalCmd {
        line,
        expr,
        is_range,
        start,
        end,
        step,
        expects: Vec::new(),
        fail: false,
        warn: false,
        info: false,
        ordered: false,
        expected_fail_message: None,
        expected_fail_regexp: None,
        expect_scalar: None,
        expected: Vec::new(),
        expected_string: None,
        range_vector: None,
        exclude_from_range: false,
        mentions_histogram: false,
    }
}

// ---------------------------------------------------------------------------
// Checking results.

fn almost_equal(a: f64, b: f64) -> bool {
    let eps = 0.000001;
    let min_normal = f64::from_bits(0x0010000000000000);
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < eps * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

impl EvalCmd {
    fn is_fail(&self) -> bool {
        self.fail || self.expects.iter().any(|e| e.kind == "fail")
    }
    fn is_ordered(&self) -> bool {
        self.ordered || self.expects.iter().any(|e| e.kind == "ordered")
    }

    fn check_failure(&self, err: &QueryError) -> Result<(), String> {
        let msg = err.to_string();
        if let Some(m) = &self.expected_fail_message
            && m != &msg
        {
            return Err(format!("expected error {m:?}, got {msg:?}"));
        }
        if let Some(r) = &self.expected_fail_regexp
            && !r.is_match(&msg)
        {
            return Err(format!("expected error matching {r}, got {msg:?}"));
        }
        if let Some(e) = self.expects.iter().find(|e| e.kind == "fail")
            && !e.matches(&msg)
        {
            return Err(format!(
                "expected error matching {:?}/{:?}, got {msg:?}",
                e.msg,
                e.regex.as_ref().map(|r| r.as_str())
            ));
        }
        Ok(())
    }

    fn check_annotations(&self, r: &QueryResult) -> Result<(), String> {
        if self.warn && r.warnings.is_empty() {
            return Err("expected warnings but got none".into());
        }
        if self.info && r.infos.is_empty() {
            return Err("expected info annotations but got none".into());
        }
        for (kind, actual) in [("warn", &r.warnings), ("info", &r.infos)] {
            let exp: Vec<&Expect> = self.expects.iter().filter(|e| e.kind == kind).collect();
            if !exp.is_empty() {
                if actual.is_empty() {
                    return Err(format!("expected {kind} annotations but none were found"));
                }
                for e in &exp {
                    if !actual.iter().any(|a| e.matches(a)) {
                        return Err(format!(
                            "expected {kind} annotation {:?}/{:?} not found, got {actual:?}",
                            e.msg,
                            e.regex.as_ref().map(|r| r.as_str())
                        ));
                    }
                }
                for a in actual.iter() {
                    if !exp.iter().any(|e| e.matches(a)) {
                        return Err(format!("unexpected {kind} annotation {a:?}"));
                    }
                }
            }
            let no = format!("no_{kind}");
            if self.expects.iter().any(|e| e.kind == no) && !actual.is_empty() {
                return Err(format!("unexpected {kind} annotations: {actual:?}"));
            }
        }
        Ok(())
    }

    fn expected_map(&self) -> HashMap<Labels, (usize, &SeriesDesc)> {
        self.expected
            .iter()
            .map(|(p, d)| (d.labels.clone(), (*p, d)))
            .collect()
    }

    fn compare_matrix(
        &self,
        m: &[pharos_promql::RangeSeries],
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<(), String> {
        if self.is_ordered() {
            return Err("expected ordered result, but query returned a matrix".into());
        }
        if self.expect_scalar.is_some() {
            return Err("expected scalar result, but got matrix".into());
        }
        for w in m.windows(2) {
            if w[0].metric > w[1].metric {
                return Err("matrix results should always be sorted by labels".into());
            }
        }
        let exp = self.expected_map();
        let mut seen = HashSet::new();
        for s in m {
            let Some((_, d)) = exp.get(&s.metric) else {
                return Err(format!(
                    "unexpected metric {} in result, has {:?}",
                    s.metric, s.samples
                ));
            };
            seen.insert(s.metric.clone());
            let mut want = Vec::new();
            let mut want_h = Vec::new();
            for (i, v) in d.values.iter().enumerate() {
                let t = start + i as i64 * step;
                if t > end {
                    return Err(format!(
                        "expected {} points for {}, but query time range cannot return this many points",
                        d.values.len(),
                        s.metric
                    ));
                }
                match v {
                    SeqVal::Float(f) => want.push((t, *f)),
                    SeqVal::Omitted => {}
                    SeqVal::Histogram(h, hint) => want_h.push((t, h, *hint)),
                }
            }
            if want_h.len() != s.histograms.len() {
                return Err(format!(
                    "expected {} histogram points for {}, but got {}",
                    want_h.len(),
                    s.metric,
                    s.histograms.len()
                ));
            }
            for ((t, h, hint), (gt, gh)) in want_h.iter().zip(&s.histograms) {
                if t != gt {
                    return Err(format!(
                        "expected histogram timestamp {t} for {}, got {gt}",
                        s.metric
                    ));
                }
                if !histograms_match(h, gh, *hint) {
                    return Err(format!(
                        "expected histogram {h:?} at t={t} for {}, got {gh:?}",
                        s.metric
                    ));
                }
            }
            if want.len() != s.samples.len() {
                return Err(format!(
                    "expected {} float points for {}, but got {:?}",
                    want.len(),
                    s.metric,
                    s.samples
                ));
            }
            for ((t, f), got) in want.iter().zip(&s.samples) {
                if *t != got.t {
                    return Err(format!(
                        "expected timestamp {t} for {}, got {} ({:?})",
                        s.metric, got.t, s.samples
                    ));
                }
                if !almost_equal(got.v, *f) {
                    return Err(format!(
                        "expected value {f} at t={t} for {}, got {} ({:?})",
                        s.metric, got.v, s.samples
                    ));
                }
            }
        }
        for (l, _) in exp.iter() {
            if !seen.contains(l) {
                return Err(format!("expected metric {l} not found"));
            }
        }
        Ok(())
    }

    fn compare_vector(&self, v: &[(Labels, f64, Option<&FloatHistogram>)]) -> Result<(), String> {
        if self.expect_scalar.is_some() {
            return Err(format!("expected scalar result, but got vector {v:?}"));
        }
        let exp = self.expected_map();
        let mut seen = HashSet::new();
        for (pos, (l, f, gh)) in v.iter().enumerate() {
            let Some((p, d)) = exp.get(l) else {
                return Err(format!("unexpected metric {l} in result, has value {f}"));
            };
            if self.is_ordered() && *p != pos + 1 {
                return Err(format!(
                    "expected metric {l} at position {p} but was at {}",
                    pos + 1
                ));
            }
            match (d.values.first(), gh) {
                (Some(SeqVal::Float(e)), None) => {
                    if !almost_equal(*e, *f) {
                        return Err(format!("expected {e} for {l} but got {f}"));
                    }
                }
                (Some(SeqVal::Float(e)), Some(h)) => {
                    return Err(format!(
                        "expected float {e} for {l} but got histogram {h:?}"
                    ));
                }
                (Some(SeqVal::Histogram(e, hint)), Some(h)) => {
                    if !histograms_match(e, h, *hint) {
                        return Err(format!("expected histogram {e:?} for {l} but got {h:?}"));
                    }
                }
                (Some(SeqVal::Histogram(..)), None) => {
                    return Err(format!("expected histogram for {l} but got float {f}"));
                }
                _ => return Err(format!("no expected value for {l}")),
            }
            seen.insert(l.clone());
        }
        for (l, _) in exp.iter() {
            if !seen.contains(l) {
                return Err(format!("expected metric {l} not found"));
            }
        }
        Ok(())
    }

    fn compare(&self, r: &QueryResult) -> Result<(), String> {
        match &r.value {
            Value::Matrix(m) => {
                if self.is_range {
                    self.compare_matrix(m, self.start, self.end, self.step)
                } else if let Some((s, e, st)) = self.range_vector {
                    self.compare_matrix(m, s, e, st)
                } else {
                    self.compare_matrix(m, self.start, self.end, 1)
                }
            }
            Value::Vector(v) => {
                let v: Vec<(Labels, f64, Option<&FloatHistogram>)> = v
                    .iter()
                    .map(|s| (s.metric.clone(), s.v, s.h.as_deref()))
                    .collect();
                self.compare_vector(&v)
            }
            Value::Scalar { v, .. } => match self.expect_scalar {
                Some(e) if almost_equal(e, *v) => Ok(()),
                Some(e) => Err(format!("expected scalar {e} but got {v}")),
                None => Err(format!(
                    "expected vector or matrix result, but got scalar {v}"
                )),
            },
            Value::String { v, .. } => match &self.expected_string {
                Some(e) if e == v => Ok(()),
                e => Err(format!("expected string {e:?} but got {v:?}")),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Running.

#[derive(Default)]
struct FileStats {
    passed: usize,
    failed: usize,
}

struct Runner {
    engine: Engine,
    head: Head,
    /// Series with native histograms, served beside the head while the
    /// head does not take histograms.
    side: std::sync::Arc<Vec<SideSeries>>,
    /// Whether the head took a histogram (None: not tried yet).
    head_takes_histograms: Option<bool>,
}

/// A point of a series served beside the head.
#[derive(Debug, Clone)]
enum SidePoint {
    Float(f64),
    Hist(FloatHistogram),
}

type SideSeries = (Labels, Vec<(i64, SidePoint)>);

/// The head plus the side series.
struct Combined<'a> {
    head: &'a Head,
    side: std::sync::Arc<Vec<SideSeries>>,
}

impl Queryable for Combined<'_> {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        Ok(Box::new(CombinedQuerier {
            head: self.head.querier(mint, maxt)?,
            side: self.side.clone(),
        }))
    }
}

struct CombinedQuerier {
    head: Box<dyn Querier>,
    side: std::sync::Arc<Vec<SideSeries>>,
}

impl Querier for CombinedQuerier {
    fn select(
        &self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet> {
        let mut ss = self.head.select(sorted, hints, matchers);
        let mut all: Vec<(Labels, Vec<(i64, SidePoint)>)> = Vec::new();
        while let Some(s) = ss.next() {
            let mut it = s.samples;
            let mut pts = Vec::new();
            while let Some(smp) = it.next() {
                match it.histogram() {
                    Some(h) => pts.push((smp.t, SidePoint::Hist(h.clone()))),
                    None => pts.push((smp.t, SidePoint::Float(smp.v))),
                }
            }
            all.push((s.labels, pts));
        }
        if let Some(e) = ss.err() {
            return Box::new(VecSeriesSet::failed(e));
        }
        for (l, pts) in self.side.iter() {
            if matchers
                .iter()
                .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
            {
                match all.iter_mut().find(|x| &x.0 == l) {
                    Some(x) => {
                        x.1.extend(pts.iter().cloned());
                        x.1.sort_by_key(|p| p.0);
                    }
                    None => all.push((l.clone(), pts.clone())),
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Box::new(VecSeriesSet::new(
            all.into_iter()
                .map(|(labels, pts)| pharos_storage::Series {
                    labels,
                    samples: Box::new(PointsIter {
                        pts,
                        pos: 0,
                        started: false,
                    }),
                })
                .collect(),
        ))
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.head.label_values(name, matchers)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.head.label_names(matchers)
    }
}

struct PointsIter {
    pts: Vec<(i64, SidePoint)>,
    pos: usize,
    started: bool,
}

impl PointsIter {
    fn cur(&self) -> Option<Sample> {
        self.pts.get(self.pos).map(|(t, p)| Sample {
            t: *t,
            v: match p {
                SidePoint::Float(v) => *v,
                SidePoint::Hist(h) => h.sum,
            },
        })
    }
}

impl SampleIter for PointsIter {
    fn next(&mut self) -> Option<Sample> {
        if self.started {
            self.pos += 1;
        }
        self.started = true;
        self.cur()
    }
    fn seek(&mut self, ts: i64) -> Option<Sample> {
        self.started = true;
        while self.pos < self.pts.len() && self.pts[self.pos].0 < ts {
            self.pos += 1;
        }
        self.cur()
    }
    fn histogram(&self) -> Option<&FloatHistogram> {
        match self.pts.get(self.pos) {
            Some((_, SidePoint::Hist(h))) => Some(h),
            _ => None,
        }
    }
}

/// A head that accepts samples of any age (scripts load from t=0 after
/// later samples).
fn new_head() -> Head {
    Head::new(pharos_tsdb::HeadOptions {
        chunk_range: 1 << 50,
        ..Default::default()
    })
}

/// Functions whose result depends on the evaluation time even with step
/// invariant arguments (Prometheus's `AtModifierUnsafeFunctions`).
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
    // Query-context functions (newer upstream lists them too).
    "start",
    "end",
    "range",
    "step",
];

/// Sets `@ ts` on every selector and subquery that has none (not below a
/// subquery that has one). Returns false when an @-unsafe function occurs.
fn set_at(e: &mut promql_parser::parser::Expr, at: std::time::SystemTime) -> bool {
    use promql_parser::parser::{AtModifier, Expr};
    match e {
        Expr::VectorSelector(vs) => {
            if vs.at.is_none() {
                vs.at = Some(AtModifier::At(at));
            }
            true
        }
        Expr::MatrixSelector(ms) => {
            if ms.vs.at.is_none() {
                ms.vs.at = Some(AtModifier::At(at));
            }
            true
        }
        Expr::Subquery(sq) => {
            if sq.at.is_none() {
                sq.at = Some(AtModifier::At(at));
            }
            !contains_unsafe(&sq.expr)
        }
        Expr::Aggregate(a) => {
            let mut ok = set_at(&mut a.expr, at);
            if let Some(p) = &mut a.param {
                ok &= set_at(p, at);
            }
            ok
        }
        Expr::Unary(u) => set_at(&mut u.expr, at),
        Expr::Binary(b) => set_at(&mut b.lhs, at) & set_at(&mut b.rhs, at),
        Expr::Paren(p) => set_at(&mut p.expr, at),
        Expr::Call(c) => {
            let mut ok = !AT_UNSAFE.contains(&c.func.name);
            for a in c.args.args.iter_mut() {
                ok &= set_at(a, at);
            }
            ok
        }
        _ => true,
    }
}

fn contains_unsafe(e: &promql_parser::parser::Expr) -> bool {
    let mut x = e.clone();
    !set_at(&mut x, std::time::UNIX_EPOCH)
}

/// The @-modifier variants promqltest runs for an instant query at `ts`.
fn at_modifier_cases(expr: &str, ts: i64) -> Option<Vec<(String, i64)>> {
    // The variants run where promql-parser (whose printer writes them)
    // reads the query too; the tree is the engine's parser's, which keeps
    // string bytes such as "\xff" as written.
    promql_parser::parser::parse(expr).ok()?;
    let mut e = pharos_promql::parse(expr).ok()?;
    let at = if ts >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_millis(ts.unsigned_abs())
    };
    if !set_at(&mut e, at) {
        return None;
    }
    // promql-parser prints the literal +Inf as `Inf`; Prometheus (whose
    // printer promqltest uses) writes `+Inf`, and annotation positions
    // depend on it.
    let s = Regex::new(r"(^|[\s(,])Inf\b")
        .unwrap()
        .replace_all(&e.to_string(), "${1}+Inf")
        .into_owned();
    let times: Vec<i64> = if ts == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * ts, 0, ts / 5, ts, 10 * ts]
    };
    Some(times.into_iter().map(|t| (s.clone(), t)).collect())
}

impl Runner {
    fn load(
        &mut self,
        interval: i64,
        series: &[SeriesDesc],
        with_nhcb: bool,
    ) -> Result<(), String> {
        let mut app = self.head.appender();
        let mut series: Vec<SeriesDesc> = series.to_vec();
        if with_nhcb {
            series.extend(nhcb_series(&series));
        }
        for s in &series {
            let mut side_pts: Vec<(i64, SidePoint)> = Vec::new();
            for (i, v) in s.values.iter().enumerate() {
                let t = i as i64 * interval;
                let h = match v {
                    SeqVal::Omitted => continue,
                    SeqVal::Float(f) => {
                        app.append(0, &s.labels, t, *f)
                            .map_err(|e| format!("append {}: {e}", s.labels))?;
                        continue;
                    }
                    SeqVal::Histogram(h, _) => h,
                };
                if self.head_takes_histograms != Some(false) {
                    match app.append_histogram(
                        0,
                        &s.labels,
                        t,
                        HistogramValue::Float((**h).clone()),
                    ) {
                        Ok(_) => {
                            self.head_takes_histograms = Some(true);
                            continue;
                        }
                        Err(e)
                            if self.head_takes_histograms.is_none()
                                && e.to_string().contains("not supported") =>
                        {
                            self.head_takes_histograms = Some(false);
                        }
                        Err(e) => return Err(format!("append histogram {}: {e}", s.labels)),
                    }
                }
                side_pts.push((t, SidePoint::Hist((**h).clone())));
            }
            if !side_pts.is_empty() {
                let side = std::sync::Arc::make_mut(&mut self.side);
                match side.iter_mut().find(|x| x.0 == s.labels) {
                    Some(x) => {
                        x.1.extend(side_pts);
                        x.1.sort_by_key(|p| p.0);
                    }
                    None => side.push((s.labels.clone(), side_pts)),
                }
            }
        }
        app.commit().map_err(|e| e.to_string())
    }

    fn storage(&self) -> Combined<'_> {
        Combined {
            head: &self.head,
            side: self.side.clone(),
        }
    }

    fn run_eval(&self, cmd: &EvalCmd) -> Result<(), String> {
        if cmd.is_range {
            let res =
                self.engine
                    .range_query(&self.storage(), &cmd.expr, cmd.start, cmd.end, cmd.step);
            return self.check(cmd, res);
        }
        self.run_instant(cmd, &cmd.expr, cmd.start)?;
        // As promqltest: re-run with `@ <eval time>` on every selector, at
        // other evaluation times; the result must not change.
        if let Some(cases) = at_modifier_cases(&cmd.expr, cmd.start) {
            for (expr, t) in cases {
                self.run_instant(cmd, &expr, t)
                    .map_err(|e| format!("with @ modifier ({expr} at {t}): {e}"))?;
            }
        }
        Ok(())
    }

    fn run_instant(&self, cmd: &EvalCmd, expr: &str, at: i64) -> Result<(), String> {
        let res = self.engine.instant_query(&self.storage(), expr, at);
        let ok = res.is_ok();
        let r2 = res.as_ref().ok().cloned();
        self.check(cmd, res)?;
        if !ok || cmd.exclude_from_range || cmd.is_fail() {
            return Ok(());
        }
        // Re-run as a range query around the instant and compare the middle
        // step, as promqltest does.
        let re = Regex::new(r"(start|end|range|step)\(\)").unwrap();
        if re.is_match(expr) || cmd.is_ordered() {
            return Ok(());
        }
        let rr = self
            .engine
            .range_query(&self.storage(), expr, at - 60_000, at + 60_000, 60_000)
            .map_err(|e| format!("range mode: {e}"))?;
        let Value::Matrix(m) = &rr.value else {
            return Err("range mode: not a matrix".into());
        };
        let mut vec = Vec::new();
        for s in m {
            if let Some(p) = s.samples.iter().find(|p| p.t == at) {
                vec.push((s.metric.clone(), p.v, None));
            } else if let Some((_, h)) = s.histograms.iter().find(|p| p.0 == at) {
                vec.push((s.metric.clone(), h.sum, Some(h)));
            }
        }
        match r2.map(|r| r.value) {
            Some(Value::Scalar { .. }) => {
                let v = vec.first().map(|x| x.1).unwrap_or(f64::NAN);
                match cmd.expect_scalar {
                    Some(e) if almost_equal(e, v) => Ok(()),
                    e => Err(format!("range mode: expected scalar {e:?}, got {v}")),
                }
            }
            _ => cmd
                .compare_vector(&vec)
                .map_err(|e| format!("range mode: {e}")),
        }
    }

    fn check(&self, cmd: &EvalCmd, res: Result<QueryResult, QueryError>) -> Result<(), String> {
        match res {
            Err(e) => {
                if cmd.is_fail() {
                    cmd.check_failure(&e)
                } else {
                    Err(format!("error evaluating query: {e}"))
                }
            }
            Ok(r) => {
                if cmd.is_fail() {
                    return Err("expected error but got none".into());
                }
                cmd.check_annotations(&r)?;
                cmd.compare(&r)
            }
        }
    }
}

fn script_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PROMQLTEST_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/promqltest")
}

fn load_known_failures() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/known_failures.txt");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (key, reason) = match l.split_once(char::is_whitespace) {
            Some((k, r)) => (k.to_string(), r.trim().to_string()),
            None => (l.to_string(), String::new()),
        };
        out.insert(key, reason);
    }
    out
}

fn run_file(
    path: &Path,
    name: &str,
    experimental: bool,
    failures: &mut Vec<(String, String)>,
) -> FileStats {
    let text = std::fs::read_to_string(path).unwrap();
    let mut stats = FileStats::default();
    let script = match parse_script(&text) {
        Ok(s) => s,
        Err(e) => {
            failures.push((format!("{name}:0"), format!("script parse error: {e}")));
            stats.failed += 1;
            return stats;
        }
    };
    let engine = Engine::new(EngineOptions {
        enable_experimental_functions: experimental,
        timeout: std::time::Duration::from_secs(100),
        max_samples: 50_000_000,
        ..Default::default()
    });
    let mut runner = Runner {
        engine,
        head: new_head(),
        side: Default::default(),
        head_takes_histograms: None,
    };
    for cmd in &script.cmds {
        match cmd {
            Cmd::Clear => {
                runner.head = new_head();
                runner.side = Default::default();
                runner.head_takes_histograms = None;
            }
            Cmd::Load {
                interval,
                series,
                with_nhcb,
                line,
            } => {
                if let Err(e) = runner.load(*interval, series, *with_nhcb) {
                    failures.push((format!("{name}:{line}"), format!("load failed: {e}")));
                    stats.failed += 1;
                }
            }
            Cmd::Eval(ev) => {
                let res =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run_eval(ev)))
                        .unwrap_or_else(|_| Err("engine panicked".into()));
                match res {
                    Ok(()) => stats.passed += 1,
                    Err(e) => {
                        stats.failed += 1;
                        failures.push((format!("{name}:{}", ev.line), format!("{}: {e}", ev.expr)));
                    }
                }
            }
        }
    }
    stats
}

#[test]
fn promqltest_conformance() {
    let dir = script_dir();
    let mut files: Vec<(PathBuf, String, bool)> = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let p = e.path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if name.ends_with(".test") {
                    files.push((p, name, true));
                }
            }
        }
        Err(e) => {
            eprintln!(
                "promqltest directory {} not readable ({e}); only our own scripts run",
                dir.display()
            );
        }
    }
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    if let Ok(rd) = std::fs::read_dir(&own) {
        for e in rd.flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".test") {
                files.push((p, format!("testdata/{name}"), true));
            }
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    if let Ok(only) = std::env::var("PROMQLTEST_ONLY") {
        files.retain(|f| f.1.contains(&only));
    }
    let known = load_known_failures();
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut totals = FileStats::default();
    println!("{:<28} {:>7} {:>7}", "file", "passed", "failed");
    for (path, name, experimental) in &files {
        let s = run_file(path, name, *experimental, &mut failures);
        println!("{:<28} {:>7} {:>7}", name, s.passed, s.failed);
        totals.passed += s.passed;
        totals.failed += s.failed;
    }
    println!("{:<28} {:>7} {:>7}", "TOTAL", totals.passed, totals.failed);
    if std::env::var("PHAROS_WRITE_KNOWN_FAILURES").is_ok() {
        for (k, why) in &failures {
            let reason = known
                .get(k)
                .cloned()
                .unwrap_or_else(|| why.replace('\n', " "));
            println!("KNOWN {k}  {reason}");
        }
    }
    let failed_keys: HashSet<&String> = failures.iter().map(|f| &f.0).collect();
    let unexpected: Vec<&(String, String)> = failures
        .iter()
        .filter(|f| !known.contains_key(&f.0))
        .collect();
    let ran_files: HashSet<&str> = files.iter().map(|f| f.1.as_str()).collect();
    let now_passing: Vec<&String> = known
        .keys()
        .filter(|k| {
            let file = k.rsplit_once(':').map(|x| x.0).unwrap_or("");
            ran_files.contains(file) && !failed_keys.contains(k)
        })
        .collect();
    for (k, e) in &unexpected {
        println!("UNEXPECTED FAILURE {k}: {e}");
    }
    for k in &now_passing {
        println!("LISTED BUT PASSING {k} (remove it from known_failures.txt)");
    }
    assert!(
        unexpected.is_empty() && now_passing.is_empty(),
        "{} unexpected failures, {} listed cases now pass",
        unexpected.len(),
        now_passing.len()
    );
}

#[test]
fn value_notation() {
    let v = parse_values("1+2x3 _ _x2 stale -1-1x1 NaN 5x2").unwrap();
    let f: Vec<String> = v
        .iter()
        .map(|x| match x {
            SeqVal::Float(f) if pharos_model::is_stale_nan(*f) => "stale".into(),
            SeqVal::Float(f) => f.to_string(),
            SeqVal::Omitted => "_".into(),
            SeqVal::Histogram(..) => "h".into(),
        })
        .collect();
    assert_eq!(
        f,
        vec![
            "1", "3", "5", "7", "_", "_", "_", "stale", "-1", "-2", "NaN", "5", "5", "5"
        ]
    );
    let d = parse_series_desc(r#"m{a="b", c='d'} 1 {{schema:1 sum:3}}x2"#).unwrap();
    assert_eq!(d.labels.to_string(), r#"{__name__="m", a="b", c="d"}"#);
    assert_eq!(d.values.len(), 4);
    let d = parse_series_desc(r#"{"a.b", x="y"} 1e-3"#).unwrap();
    assert_eq!(d.labels.metric_name(), Some("a.b"));
    assert!(almost_equal(1.0, 1.0000001));
    assert!(!almost_equal(1.0, 1.001));
}

// ---------------------------------------------------------------------------
// Native histograms in scripts.

/// One `{{...}}` histogram in test notation at the start of `s`, and the
/// rest of `s` after it.
fn parse_hist_literal(s: &str) -> Result<(FloatHistogram, bool, &str), String> {
    let end = s.find("}}").ok_or_else(|| format!("bad histogram {s:?}"))?;
    let (h, hint) = parse_test_histogram_with_hint(&s[..end + 2])
        .map_err(|e| format!("bad histogram {s:?}: {e}"))?;
    Ok((h, hint, &s[end + 2..]))
}

/// A histogram item of a series: `{{A}}`, `{{A}}xN`, `{{A}}+{{B}}xN`,
/// `{{A}}-{{B}}xN`. As Prometheus's series parser, `+`/`-` add or
/// subtract `B` with the histogram arithmetic (no compaction), `B` may not
/// have a lower schema than the running value, and whether `B` gave a
/// counter reset hint decides for every value of the expansion.
fn parse_histogram_item(tok: &str) -> Result<Vec<SeqVal>, String> {
    let (a, hint, rest) = parse_hist_literal(tok)?;
    if rest.is_empty() {
        return Ok(vec![SeqVal::Histogram(Box::new(a), hint)]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n: usize = n.parse().map_err(|_| format!("bad histogram {tok:?}"))?;
        return Ok(vec![SeqVal::Histogram(Box::new(a), hint); n + 1]);
    }
    let subtract = match rest.as_bytes().first() {
        Some(b'+') => false,
        Some(b'-') => true,
        _ => return Err(format!("bad histogram {tok:?}")),
    };
    let (inc, inc_hint, rest) = parse_hist_literal(&rest[1..])?;
    let n: usize = rest
        .strip_prefix('x')
        .ok_or_else(|| format!("bad histogram {tok:?}"))?
        .parse()
        .map_err(|_| format!("bad histogram {tok:?}"))?;
    let mut out = vec![SeqVal::Histogram(Box::new(a.clone()), inc_hint)];
    let mut cur = a;
    for _ in 0..n {
        if cur.schema > inc.schema {
            return Err(format!(
                "error combining histograms: cannot merge from schema {} to {}",
                inc.schema, cur.schema
            ));
        }
        let r = if subtract {
            cur.sub(&inc)
        } else {
            cur.add(&inc)
        };
        r.map_err(|e| format!("error combining histograms: {e}"))?;
        out.push(SeqVal::Histogram(Box::new(cur.clone()), inc_hint));
    }
    Ok(out)
}

/// promqltest's histogram comparison: after dropping empty buckets, same
/// schema, zero threshold and layout, counts and sums almost equal; the
/// counter reset hint only when the expectation gave one.
fn histograms_match(exp: &FloatHistogram, got: &FloatHistogram, hint_set: bool) -> bool {
    let (mut exp, mut got) = (exp.clone(), got.clone());
    exp.compact(0);
    got.compact(0);
    let counts_match = |a: &[f64], b: &[f64]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| almost_equal(*x, *y))
    };
    exp.schema == got.schema
        && almost_equal(exp.count, got.count)
        && almost_equal(exp.sum, got.sum)
        && (exp.schema != CUSTOM_BUCKETS_SCHEMA || exp.custom_values == got.custom_values)
        && exp.zero_threshold == got.zero_threshold
        && almost_equal(exp.zero_count, got.zero_count)
        && exp.positive_spans == got.positive_spans
        && counts_match(&exp.positive_buckets, &got.positive_buckets)
        && exp.negative_spans == got.negative_spans
        && counts_match(&exp.negative_buckets, &got.negative_buckets)
        && (!hint_set || exp.counter_reset_hint == got.counter_reset_hint)
}

/// `load_with_nhcb`: the classic histograms among `series` (`_bucket`
/// with `le`, `_count`, `_sum`) as native histograms with custom buckets,
/// named without the suffix.
fn nhcb_series(series: &[SeriesDesc]) -> Vec<SeriesDesc> {
    struct Group {
        labels: Labels,
        buckets: Vec<(f64, Vec<SeqVal>)>,
        count: Option<Vec<SeqVal>>,
        sum: Option<Vec<SeqVal>>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for s in series {
        let name = s.labels.metric_name().unwrap_or("").to_string();
        let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, 0)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, 1)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, 2)
        } else {
            continue;
        };
        let mut lb = pharos_model::LabelsBuilder::from(&s.labels);
        lb.set("__name__", base);
        lb.del("le");
        let labels = lb.build();
        let gi = match groups.iter().position(|g| g.labels == labels) {
            Some(i) => i,
            None => {
                groups.push(Group {
                    labels,
                    buckets: Vec::new(),
                    count: None,
                    sum: None,
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[gi];
        match kind {
            0 => {
                let Some(le) = s.labels.get("le").and_then(|v| {
                    parse_number_line(v).or(if v == "+Inf" {
                        Some(f64::INFINITY)
                    } else {
                        None
                    })
                }) else {
                    continue;
                };
                g.buckets.push((le, s.values.clone()));
            }
            1 => g.count = Some(s.values.clone()),
            _ => g.sum = Some(s.values.clone()),
        }
    }
    let mut out = Vec::new();
    for mut g in groups {
        if g.buckets.is_empty() {
            continue;
        }
        g.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The same bound written differently: the last one wins.
        let mut dedup: Vec<(f64, Vec<SeqVal>)> = Vec::new();
        for b in std::mem::take(&mut g.buckets) {
            match dedup.last_mut() {
                Some(l) if l.0 == b.0 => *l = b,
                _ => dedup.push(b),
            }
        }
        g.buckets = dedup;
        let n = g.buckets.iter().map(|b| b.1.len()).max().unwrap_or(0);
        let custom: Vec<f64> = g
            .buckets
            .iter()
            .map(|b| b.0)
            .filter(|b| b.is_finite())
            .collect();
        let val = |v: &Option<Vec<SeqVal>>, i: usize| -> Option<f64> {
            match v.as_ref().and_then(|v| v.get(i)) {
                Some(SeqVal::Float(f)) => Some(*f),
                _ => None,
            }
        };
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            let mut cum = Vec::new();
            let mut missing = false;
            for (_, v) in &g.buckets {
                match v.get(i) {
                    Some(SeqVal::Float(f)) => cum.push(*f),
                    _ => missing = true,
                }
            }
            if missing || cum.iter().any(|f| pharos_model::is_stale_nan(*f)) {
                values.push(if cum.iter().any(|f| pharos_model::is_stale_nan(*f)) {
                    SeqVal::Float(stale_nan())
                } else {
                    SeqVal::Omitted
                });
                continue;
            }
            let has_inf = g.buckets.last().is_some_and(|b| b.0.is_infinite());
            let mut counts = Vec::with_capacity(cum.len() + 1);
            let mut prev = 0.0;
            for c in &cum {
                counts.push(c - prev);
                prev = *c;
            }
            if !has_inf {
                counts.push(0.0);
            }
            let total = val(&g.count, i).unwrap_or(prev);
            let mut h = FloatHistogram {
                schema: CUSTOM_BUCKETS_SCHEMA,
                count: total,
                sum: val(&g.sum, i).unwrap_or(0.0),
                positive_spans: vec![Span {
                    offset: 0,
                    length: counts.len() as u32,
                }],
                positive_buckets: counts,
                custom_values: custom.clone(),
                ..Default::default()
            };
            h.compact(0);
            values.push(SeqVal::Histogram(Box::new(h), false));
        }
        out.push(SeriesDesc {
            labels: g.labels,
            values,
        });
    }
    out
}
