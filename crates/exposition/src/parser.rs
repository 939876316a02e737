//! The pull parser shared by both text formats.
//!
//! Layout of the code: small free functions scan one token each over a
//! byte slice and return the position after it (`scan_*`); the [`Parser`]
//! strings them together per line kind and turns failures into positioned
//! [`ParseError`]s. [`LabelPairs`] re-walks an already validated series text
//! with the same scanners to hand out label pairs on demand.
//!
//! Nothing here indexes with `[]`: bytes are read with `get`, so malformed
//! input can only ever produce an error, never a panic.

use std::borrow::Cow;

use pharos_model::{Labels, LabelsBuilder, METRIC_NAME};

use crate::float::{parse_float, parse_int_ms, parse_seconds_to_ms};
use crate::{Format, MetricType, ParseError};

/// One entry of an exposition, borrowed from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP metric text`.
    Help {
        /// The metric family name. For a quoted name it is the text between
        /// the quotes; escapes in it (`\"`, `\\`) are left as written.
        metric: &'a str,
        /// The help text, unescaped (borrowed when it has no escapes).
        text: Cow<'a, str>,
    },
    /// `# TYPE metric kind`.
    Type {
        /// The metric family name (see [`Entry::Help`] for quoted names).
        metric: &'a str,
        /// The declared type.
        kind: MetricType,
    },
    /// `# UNIT metric unit` (OpenMetrics only).
    Unit {
        /// The metric family name (see [`Entry::Help`] for quoted names).
        metric: &'a str,
        /// The unit, possibly empty.
        unit: &'a str,
    },
    /// A sample line.
    Sample(SampleEntry<'a>),
}

/// One sample line. Cheap to produce: the labels stay in the input until
/// asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleEntry<'a> {
    /// The series text exactly as in the input (`name{a="b"}`), the scrape
    /// cache key. Always valid UTF-8.
    pub series: &'a [u8],
    /// The sample value. A `NaN` in the input is Go's NaN bit pattern
    /// (`0x7ff8000000000001`), never the staleness marker.
    pub value: f64,
    /// Milliseconds (OpenMetrics seconds are converted), if given.
    pub timestamp: Option<i64>,
    /// The raw metric name: a slice of `series`, without quotes.
    name: &'a [u8],
    /// The name was quoted and contains backslash escapes.
    name_escaped: bool,
    /// Offset in `series` just after `{`, if there is a label set.
    labels_at: Option<usize>,
    /// The OpenMetrics exemplar of the line, if any.
    pub exemplar: Option<ExemplarEntry<'a>>,
}

/// An OpenMetrics exemplar (` # {trace_id="..."} value [timestamp]`) of a
/// sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarEntry<'a> {
    /// The label set text from just after `{` through `}`.
    labels_text: &'a [u8],
    /// The exemplar value.
    pub value: f64,
    /// Milliseconds (converted from OpenMetrics seconds), if given.
    pub timestamp: Option<i64>,
}

impl<'a> ExemplarEntry<'a> {
    /// The exemplar's label pairs, unescaped, in input order.
    pub fn label_pairs(&self) -> LabelPairs<'a> {
        LabelPairs {
            s: self.labels_text,
            pos: 0,
        }
    }

    /// The exemplar's label set (empty values dropped).
    pub fn labels(&self) -> Labels {
        let mut b = LabelsBuilder::new();
        for (n, v) in self.label_pairs() {
            b.set(&n, &v);
        }
        b.build()
    }
}

impl<'a> SampleEntry<'a> {
    /// The metric name, unescaped (borrowed unless a quoted name has
    /// escapes).
    pub fn metric_name(&self) -> Cow<'a, str> {
        let s = String::from_utf8_lossy(self.name);
        if self.name_escaped {
            Cow::Owned(unescape(&s, true))
        } else {
            s
        }
    }

    /// The label pairs other than the metric name, in input order,
    /// unescaped. Empty values are included (a label builder drops them).
    pub fn label_pairs(&self) -> LabelPairs<'a> {
        match self.labels_at {
            Some(at) => LabelPairs {
                s: self.series,
                pos: at,
            },
            None => LabelPairs { s: &[], pos: 0 },
        }
    }

    /// Writes `__name__` and every label (unescaped) into `b` (a cleared
    /// builder is the caller's job). Labels with empty values are absent,
    /// as in Prometheus. If a name repeats, the last value wins; use
    /// [`SampleEntry::duplicate_label_name`] to reject such samples.
    pub fn labels_into(&self, b: &mut LabelsBuilder) {
        b.set(METRIC_NAME, &self.metric_name());
        for (name, value) in self.label_pairs() {
            b.set(&name, &value);
        }
    }

    /// The label set of the sample, `__name__` included.
    pub fn labels(&self) -> Labels {
        let mut b = LabelsBuilder::new();
        self.labels_into(&mut b);
        b.build()
    }

    /// The first label name that occurs twice (counting the metric name as
    /// `__name__`), if any. Prometheus rejects such samples.
    pub fn duplicate_label_name(&self) -> Option<String> {
        let mut seen: Vec<Cow<'a, str>> = vec![Cow::Borrowed(METRIC_NAME)];
        for (name, _) in self.label_pairs() {
            if seen.contains(&name) {
                return Some(name.into_owned());
            }
            seen.push(name);
        }
        None
    }
}

/// Iterator over the `(name, value)` label pairs of a [`SampleEntry`],
/// unescaped, excluding a quoted metric name inside the braces.
#[derive(Debug, Clone)]
pub struct LabelPairs<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for LabelPairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        // The series text was validated by the parser, so this walk only
        // stops early (returns None) on input it never accepted.
        let s = self.s;
        loop {
            let p = skip_ws(s, self.pos);
            let (name, p) = match s.get(p) {
                Some(b'"') => {
                    let q = scan_quoted(s, p).ok()?;
                    let after = skip_ws(s, q.end);
                    match s.get(after) {
                        Some(b',') => {
                            // A bare quoted string is the metric name.
                            self.pos = after + 1;
                            continue;
                        }
                        Some(b'=') => (q.text(s, true), after),
                        _ => {
                            self.pos = s.len();
                            return None;
                        }
                    }
                }
                Some(&c) if is_lname_start(c) => {
                    let end = scan_lname(s, p);
                    let name = String::from_utf8_lossy(s.get(p..end)?);
                    (name, skip_ws(s, end))
                }
                _ => {
                    self.pos = s.len();
                    return None;
                }
            };
            if s.get(p) != Some(&b'=') {
                self.pos = s.len();
                return None;
            }
            let p = skip_ws(s, p + 1);
            let q = match s.get(p) {
                Some(b'"') => scan_quoted(s, p).ok()?,
                _ => {
                    self.pos = s.len();
                    return None;
                }
            };
            let value = q.text(s, true);
            let after = skip_ws(s, q.end);
            self.pos = if s.get(after) == Some(&b',') {
                after + 1
            } else {
                s.len()
            };
            return Some((name, value));
        }
    }
}

/// A pull parser over one exposition body. Create with [`Parser::new`] and
/// call [`Parser::next_entry`] (or iterate) until `None`. After an error
/// the parser is finished and yields `None`.
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    om: bool,
    done: bool,
}

/// A metric name as written (without quotes) and whether it has escapes.
type RawName<'a> = (&'a [u8], bool);

/// An internal failure: a byte offset and a message.
#[derive(Debug)]
struct Fail {
    pos: usize,
    msg: String,
}

fn fail<T>(pos: usize, msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail {
        pos,
        msg: msg.into(),
    })
}

impl<'a> Parser<'a> {
    /// A parser over `input` in the given format.
    pub fn new(input: &'a [u8], format: Format) -> Parser<'a> {
        Parser {
            input,
            pos: 0,
            om: format == Format::OpenMetrics,
            done: false,
        }
    }

    /// The format this parser reads.
    pub fn format(&self) -> Format {
        if self.om {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }

    /// Next entry; `None` at end of input (or after `# EOF` for
    /// OpenMetrics) and after an error. In OpenMetrics a body without
    /// `# EOF` ends with an error.
    pub fn next_entry(&mut self) -> Option<Result<Entry<'a>, ParseError>> {
        loop {
            if self.done {
                return None;
            }
            let p = skip_ws(self.input, self.pos);
            let res = match self.input.get(p) {
                None => {
                    self.done = true;
                    if self.om {
                        return Some(Err(self.error(Fail {
                            pos: p,
                            msg: "data does not end with # EOF".into(),
                        })));
                    }
                    return None;
                }
                Some(b'\n') => {
                    self.pos = p + 1;
                    continue;
                }
                Some(b'#') => match self.comment(p) {
                    Ok(Some(e)) => Ok(e),
                    Ok(None) => continue,
                    Err(f) => Err(f),
                },
                Some(_) => self.sample(p).map(Entry::Sample),
            };
            return Some(res.map_err(|f| self.error(f)));
        }
    }

    fn error(&mut self, f: Fail) -> ParseError {
        self.done = true;
        let (line, column) = position(self.input, f.pos);
        ParseError {
            line,
            column,
            message: f.msg,
        }
    }

    /// A line starting with `#` at `p`. `Ok(None)` for a skipped comment or
    /// the OpenMetrics `# EOF` (then `done` is set).
    fn comment(&mut self, p: usize) -> Result<Option<Entry<'a>>, Fail> {
        let s = self.input;
        let kw = skip_blank(s, p + 1);
        if kw > p + 1 {
            let word = s.get(kw..).unwrap_or_default();
            let after = |n: usize| s.get(kw + n).copied();
            let keyword_then_blank = |n: usize| matches!(after(n), Some(b' ' | b'\t'));
            if word.starts_with(b"HELP") && keyword_then_blank(4) {
                return self.help(kw + 4).map(Some);
            }
            if word.starts_with(b"TYPE") && keyword_then_blank(4) {
                return self.type_line(kw + 4).map(Some);
            }
            if self.om && word.starts_with(b"UNIT") && keyword_then_blank(4) {
                return self.unit_line(kw + 4).map(Some);
            }
            if self.om && word.starts_with(b"EOF") && !after(3).is_some_and(is_name_cont) {
                let end = skip_ws(s, kw + 3);
                if !matches!(s.get(end), None | Some(b'\n')) {
                    return fail(end, "unexpected data after # EOF");
                }
                let rest = skip_ws_lines(s, end);
                if rest < s.len() {
                    return fail(rest, "unexpected data after # EOF");
                }
                self.pos = s.len();
                self.done = true;
                return Ok(None);
            }
        }
        // Any other comment: skip the line.
        self.pos = next_line(s, p);
        Ok(None)
    }

    /// The metric name of a HELP/TYPE/UNIT line, starting after the
    /// keyword.
    fn meta_name(&self, p: usize, what: &str) -> Result<(&'a str, usize), Fail> {
        let s = self.input;
        let p = skip_blank(s, p);
        match s.get(p) {
            Some(b'"') => {
                let q = scan_quoted(s, p)?;
                if q.start == q.end - 1 {
                    return fail(p, format!("empty metric name in {what}"));
                }
                let raw = s.get(q.start..q.end - 1).unwrap_or_default();
                // scan_quoted validated UTF-8.
                let name = std::str::from_utf8(raw).map_err(|_| Fail {
                    pos: p,
                    msg: "invalid UTF-8 in metric name".into(),
                })?;
                Ok((name, q.end))
            }
            Some(&c) if is_name_start(c) => {
                let end = scan_name(s, p);
                let name = ascii_str(s, p, end);
                Ok((name, end))
            }
            _ => fail(p, format!("expected metric name after {what}")),
        }
    }

    fn help(&mut self, p: usize) -> Result<Entry<'a>, Fail> {
        let s = self.input;
        let (metric, p) = self.meta_name(p, "HELP")?;
        let line_end = find_line_end(s, p);
        let text_start = match s.get(p) {
            None | Some(b'\n') => p,
            Some(b'\r') if p + 1 >= line_end => p,
            Some(b' ' | b'\t') => {
                if self.om {
                    p + 1
                } else {
                    skip_blank(s, p)
                }
            }
            _ => return fail(p, "expected whitespace after metric name in HELP"),
        };
        let mut text_end = line_end.max(text_start);
        if text_end > text_start && s.get(text_end - 1) == Some(&b'\r') {
            text_end -= 1;
        }
        let raw = s.get(text_start..text_end).unwrap_or_default();
        let text = std::str::from_utf8(raw).map_err(|e| Fail {
            pos: text_start + e.valid_up_to(),
            msg: "invalid UTF-8 in HELP text".into(),
        })?;
        let text = if raw.contains(&b'\\') {
            Cow::Owned(unescape(text, self.om))
        } else {
            Cow::Borrowed(text)
        };
        self.pos = line_end + 1;
        Ok(Entry::Help { metric, text })
    }

    fn type_line(&mut self, p: usize) -> Result<Entry<'a>, Fail> {
        let s = self.input;
        let (metric, p) = self.meta_name(p, "TYPE")?;
        if !matches!(s.get(p), Some(b' ' | b'\t')) {
            return fail(p, "expected metric type after metric name in TYPE");
        }
        let start = skip_blank(s, p);
        let line_end = find_line_end(s, start);
        let word = trim_end_ws(s.get(start..line_end).unwrap_or_default());
        let kind = std::str::from_utf8(word)
            .ok()
            .and_then(|w| MetricType::parse(w, self.format()));
        let Some(kind) = kind else {
            return fail(
                start,
                format!("invalid metric type {}", quote_snippet(word)),
            );
        };
        self.pos = line_end + 1;
        Ok(Entry::Type { metric, kind })
    }

    fn unit_line(&mut self, p: usize) -> Result<Entry<'a>, Fail> {
        let s = self.input;
        let (metric, p) = self.meta_name(p, "UNIT")?;
        let line_end = find_line_end(s, p);
        let start = match s.get(p) {
            None | Some(b'\n' | b'\r') => p,
            Some(b' ' | b'\t') => skip_blank(s, p),
            _ => return fail(p, "expected whitespace after metric name in UNIT"),
        };
        let raw = trim_end_ws(s.get(start..line_end.max(start)).unwrap_or_default());
        let unit = std::str::from_utf8(raw).map_err(|_| Fail {
            pos: start,
            msg: "invalid UTF-8 in UNIT".into(),
        })?;
        if !unit.is_empty() {
            let ok = metric
                .strip_suffix(unit)
                .is_some_and(|prefix| prefix.ends_with('_'));
            if !ok {
                return fail(
                    start,
                    format!("unit {unit:?} is not a suffix of metric {metric:?}"),
                );
            }
        }
        self.pos = line_end + 1;
        Ok(Entry::Unit { metric, unit })
    }

    /// A sample line starting at `start` (not blank, not `#`).
    fn sample(&mut self, start: usize) -> Result<SampleEntry<'a>, Fail> {
        let s = self.input;
        let name: Option<RawName<'a>>;
        let mut labels_at = None;
        let series_end;
        match s.get(start) {
            Some(b'{') => {
                let (end, n) = self.label_set(start + 1, None, false)?;
                labels_at = Some(1);
                name = n;
                series_end = end;
            }
            Some(&c) if is_name_start(c) => {
                let end = scan_name(s, start);
                let bare = Some((s.get(start..end).unwrap_or_default(), false));
                let brace = skip_blank(s, end);
                if s.get(brace) == Some(&b'{') {
                    let (e, n) = self.label_set(brace + 1, bare, false)?;
                    labels_at = Some(brace + 1 - start);
                    name = n;
                    series_end = e;
                } else {
                    if brace == end && !matches!(s.get(end), None | Some(b'\n' | b'\r')) {
                        return fail(
                            end,
                            format!(
                                "unexpected character {} after metric name",
                                char_snippet(s, end)
                            ),
                        );
                    }
                    name = bare;
                    series_end = end;
                }
            }
            _ => {
                return fail(
                    start,
                    format!(
                        "expected metric name or '{{' at start of line, got {}",
                        char_snippet(s, start)
                    ),
                );
            }
        }
        let Some((name, name_escaped)) = name else {
            return fail(start, "metric name not set in label set");
        };

        // Value.
        let vstart = skip_ws(s, series_end);
        let vend = scan_token(s, vstart);
        if vend == vstart {
            return fail(vstart, "expected value after metric");
        }
        let vtok = s.get(vstart..vend).unwrap_or_default();
        let value = parse_float(vtok).map_err(|m| Fail {
            pos: vstart,
            msg: format!("{m}: {}", quote_snippet(vtok)),
        })?;

        // Optional timestamp, optional exemplar (OpenMetrics), end of line.
        let mut timestamp = None;
        let mut exemplar = None;
        // scan_token stops only at whitespace or a line end.
        let mut p = skip_ws(s, vend);
        let c = s.get(p).copied();
        let exemplar_next = self.om && c == Some(b'#');
        if !matches!(c, None | Some(b'\n')) && !exemplar_next {
            let tend = scan_token(s, p);
            let ttok = s.get(p..tend).unwrap_or_default();
            let ts = if self.om {
                parse_seconds_to_ms(ttok)
            } else {
                parse_int_ms(ttok)
            };
            timestamp = Some(ts.map_err(|m| Fail {
                pos: p,
                msg: format!("{m}: {}", quote_snippet(ttok)),
            })?);
            p = skip_ws(s, tend);
        }
        match s.get(p) {
            None | Some(b'\n') => {}
            Some(b'#') if self.om => {
                let (q, e) = self.exemplar(p)?;
                p = q;
                exemplar = Some(e);
            }
            Some(_) => {
                return fail(
                    p,
                    format!(
                        "expected end of line after {}, got {}",
                        if timestamp.is_some() {
                            "timestamp"
                        } else {
                            "value"
                        },
                        char_snippet(s, p)
                    ),
                );
            }
        }
        self.pos = p + 1;
        Ok(SampleEntry {
            series: s.get(start..series_end).unwrap_or_default(),
            value,
            timestamp,
            name,
            name_escaped,
            labels_at,
            exemplar,
        })
    }

    /// A label set after `{` at `p`. Returns the position after `}` and the
    /// metric name (the given one or a bare quoted string inside).
    fn label_set(
        &self,
        mut p: usize,
        mut name: Option<RawName<'a>>,
        exemplar: bool,
    ) -> Result<(usize, Option<RawName<'a>>), Fail> {
        let s = self.input;
        loop {
            p = skip_ws(s, p);
            match s.get(p) {
                Some(b'}') => return Ok((p + 1, name)),
                Some(b'"') => {
                    let q = scan_quoted(s, p)?;
                    let after = skip_ws(s, q.end);
                    match s.get(after) {
                        Some(b',' | b'}') if !exemplar => {
                            if name.is_some() {
                                return fail(p, "metric name already set");
                            }
                            let raw = s.get(q.start..q.end - 1).unwrap_or_default();
                            if raw.is_empty() {
                                return fail(p, "empty metric name");
                            }
                            name = Some((raw, q.escaped));
                            if s.get(after) == Some(&b'}') {
                                return Ok((after + 1, name));
                            }
                            p = after + 1;
                            continue;
                        }
                        Some(b'=') => {
                            if q.start == q.end - 1 {
                                return fail(p, "empty label name");
                            }
                            p = after;
                        }
                        _ => {
                            return fail(
                                after,
                                format!(
                                    "expected '=' after label name, got {}",
                                    char_snippet(s, after)
                                ),
                            );
                        }
                    }
                }
                Some(&c) if is_lname_start(c) => {
                    let end = scan_lname(s, p);
                    p = skip_ws(s, end);
                    if s.get(p) != Some(&b'=') {
                        return fail(
                            p,
                            format!("expected '=' after label name, got {}", char_snippet(s, p)),
                        );
                    }
                }
                _ => {
                    return fail(
                        p,
                        format!("expected label name or '}}', got {}", char_snippet(s, p)),
                    );
                }
            }
            // At '='.
            p = skip_ws(s, p + 1);
            if s.get(p) != Some(&b'"') {
                return fail(
                    p,
                    format!("expected quoted label value, got {}", char_snippet(s, p)),
                );
            }
            let q = scan_quoted(s, p)?;
            p = skip_ws(s, q.end);
            match s.get(p) {
                Some(b',') => p += 1,
                Some(b'}') => return Ok((p + 1, name)),
                _ => {
                    return fail(
                        p,
                        format!(
                            "expected ',' or '}}' after label value, got {}",
                            char_snippet(s, p)
                        ),
                    );
                }
            }
        }
    }

    /// An OpenMetrics exemplar ` # {labels} value [timestamp]` at `#`.
    /// Returns the end-of-line position and the exemplar.
    fn exemplar(&self, p: usize) -> Result<(usize, ExemplarEntry<'a>), Fail> {
        let s = self.input;
        let b = skip_ws(s, p + 1);
        if b == p + 1 || s.get(b) != Some(&b'{') {
            return fail(b, "expected exemplar label set after ' # '");
        }
        let (end, _) = self.label_set(b + 1, None, true)?;
        let vstart = skip_ws(s, end);
        let vend = scan_token(s, vstart);
        if vend == vstart {
            return fail(vstart, "expected exemplar value");
        }
        let vtok = s.get(vstart..vend).unwrap_or_default();
        let value = parse_float(vtok).map_err(|m| Fail {
            pos: vstart,
            msg: format!("exemplar value: {m}: {}", quote_snippet(vtok)),
        })?;
        let mut timestamp = None;
        let mut q = skip_ws(s, vend);
        if !matches!(s.get(q), None | Some(b'\n')) {
            let tend = scan_token(s, q);
            let ttok = s.get(q..tend).unwrap_or_default();
            timestamp = Some(parse_seconds_to_ms(ttok).map_err(|m| Fail {
                pos: q,
                msg: format!("exemplar timestamp: {m}: {}", quote_snippet(ttok)),
            })?);
            q = skip_ws(s, tend);
        }
        if !matches!(s.get(q), None | Some(b'\n')) {
            return fail(
                q,
                format!(
                    "expected end of line after exemplar, got {}",
                    char_snippet(s, q)
                ),
            );
        }
        let exemplar = ExemplarEntry {
            labels_text: s.get(b + 1..end).unwrap_or_default(),
            value,
            timestamp,
        };
        Ok((q, exemplar))
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry()
    }
}

// ---------------------------------------------------------------------------
// Byte classes and scanners.

const C_NAME_START: u8 = 1;
const C_NAME: u8 = 2;
const C_LNAME_START: u8 = 4;
const C_LNAME: u8 = 8;
/// Inside a quoted string: everything but `"`, `\` and newline.
const C_PLAIN: u8 = 16;
/// Part of a value/timestamp token: not space, tab, CR, newline.
const C_TOKEN: u8 = 32;
/// Whitespace between tokens: space, tab, CR.
const C_WS: u8 = 64;

static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let digit = c.is_ascii_digit();
        let mut v = 0;
        if alpha || c == b':' {
            v |= C_NAME_START | C_NAME;
        }
        if digit {
            v |= C_NAME | C_LNAME;
        }
        if alpha {
            v |= C_LNAME_START | C_LNAME;
        }
        if c != b'"' && c != b'\\' && c != b'\n' {
            v |= C_PLAIN;
        }
        if c == b' ' || c == b'\t' || c == b'\r' {
            v |= C_WS;
        } else if c != b'\n' {
            v |= C_TOKEN;
        }
        t[i] = v;
        i += 1;
    }
    t
}

#[inline]
fn class(c: u8) -> u8 {
    CLASS[c as usize]
}

#[inline]
fn is_name_start(c: u8) -> bool {
    class(c) & C_NAME_START != 0
}

#[inline]
fn is_name_cont(c: u8) -> bool {
    class(c) & C_NAME != 0
}

#[inline]
fn is_lname_start(c: u8) -> bool {
    class(c) & C_LNAME_START != 0
}

/// Skips spaces, tabs and CRs.
#[inline]
fn skip_ws(s: &[u8], mut p: usize) -> usize {
    while let Some(&c) = s.get(p) {
        if class(c) & C_WS == 0 {
            break;
        }
        p += 1;
    }
    p
}

/// Skips spaces and tabs only.
#[inline]
fn skip_blank(s: &[u8], mut p: usize) -> usize {
    while let Some(b' ' | b'\t') = s.get(p) {
        p += 1;
    }
    p
}

/// Skips whitespace and newlines.
fn skip_ws_lines(s: &[u8], mut p: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\r' | b'\n') = s.get(p) {
        p += 1;
    }
    p
}

/// Position of the `\n` ending the line containing `p`, or `s.len()`.
fn find_line_end(s: &[u8], p: usize) -> usize {
    match s.get(p..) {
        Some(rest) => rest
            .iter()
            .position(|&c| c == b'\n')
            .map_or(s.len(), |i| p + i),
        None => s.len(),
    }
}

/// Position after the `\n` ending the line containing `p`.
fn next_line(s: &[u8], p: usize) -> usize {
    find_line_end(s, p).saturating_add(1)
}

#[inline]
fn scan_name(s: &[u8], mut p: usize) -> usize {
    while let Some(&c) = s.get(p) {
        if class(c) & C_NAME == 0 {
            break;
        }
        p += 1;
    }
    p
}

#[inline]
fn scan_lname(s: &[u8], mut p: usize) -> usize {
    while let Some(&c) = s.get(p) {
        if class(c) & C_LNAME == 0 {
            break;
        }
        p += 1;
    }
    p
}

/// A value or timestamp token: up to whitespace or newline.
#[inline]
fn scan_token(s: &[u8], mut p: usize) -> usize {
    while let Some(&c) = s.get(p) {
        if class(c) & C_TOKEN == 0 {
            break;
        }
        p += 1;
    }
    p
}

/// A scanned quoted string: content is `s[start..end - 1]`.
struct Quoted {
    start: usize,
    end: usize,
    escaped: bool,
}

impl Quoted {
    fn text<'a>(&self, s: &'a [u8], quote_escape: bool) -> Cow<'a, str> {
        let raw = s
            .get(self.start..self.end.saturating_sub(1))
            .unwrap_or_default();
        let text = String::from_utf8_lossy(raw);
        if self.escaped {
            Cow::Owned(unescape(&text, quote_escape))
        } else {
            text
        }
    }
}

/// Scans a quoted string starting at the `"` at `p`. Escapes are a
/// backslash and any character but newline; the content must be UTF-8 and
/// must not contain a raw newline.
#[inline]
fn scan_quoted(s: &[u8], p: usize) -> Result<Quoted, Fail> {
    let start = p + 1;
    let mut i = start;
    let mut acc = 0u8;
    let mut escaped = false;
    loop {
        match s.get(i) {
            Some(&c) if class(c) & C_PLAIN != 0 => {
                acc |= c;
                i += 1;
            }
            Some(b'"') => break,
            Some(b'\\') => {
                escaped = true;
                match s.get(i + 1) {
                    None | Some(b'\n') => return fail(i, "unterminated quoted string"),
                    Some(&c) => {
                        acc |= c;
                        i += 2;
                    }
                }
            }
            _ => return fail(i, "unterminated quoted string"),
        }
    }
    if acc & 0x80 != 0 {
        let content = s.get(start..i).unwrap_or_default();
        if let Err(e) = std::str::from_utf8(content) {
            return fail(start + e.valid_up_to(), "invalid UTF-8 in quoted string");
        }
    }
    Ok(Quoted {
        start,
        end: i + 1,
        escaped,
    })
}

/// Undoes the exposition escapes: `\\` and `\n` always, `\"` when `quote`
/// (label values, quoted names, OpenMetrics HELP); any other escape is kept
/// as written, like Prometheus.
fn unescape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `s[a..b]` as `&str` when it is known to be ASCII name characters.
fn ascii_str(s: &[u8], a: usize, b: usize) -> &str {
    std::str::from_utf8(s.get(a..b).unwrap_or_default()).unwrap_or_default()
}

fn trim_end_ws(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t' | b'\r'] = b {
        b = rest;
    }
    b
}

/// 1-based line and column (in characters) of byte offset `pos`.
fn position(s: &[u8], pos: usize) -> (usize, usize) {
    let before = s.get(..pos.min(s.len())).unwrap_or_default();
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |i| i + 1);
    let col = before
        .get(line_start..)
        .unwrap_or_default()
        .iter()
        .filter(|&&c| c & 0xC0 != 0x80)
        .count()
        + 1;
    (line, col)
}

/// A short quoted rendering of a token for messages.
fn quote_snippet(b: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(b.get(..b.len().min(MAX)).unwrap_or_default());
    if b.len() > MAX {
        format!("{:?}...", text)
    } else {
        format!("{text:?}")
    }
}

/// The character at `p` for messages, or "end of line"/"end of input".
fn char_snippet(s: &[u8], p: usize) -> String {
    match s.get(p) {
        None => "end of input".into(),
        Some(b'\n') => "end of line".into(),
        Some(_) => {
            let rest = s.get(p..(p + 4).min(s.len())).unwrap_or_default();
            let text = String::from_utf8_lossy(rest);
            match text.chars().next() {
                Some(c) => format!("{c:?}"),
                None => "invalid byte".into(),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::float::NORMAL_NAN_BITS;

    const TEXT: Format = Format::PrometheusText;
    const OM: Format = Format::OpenMetrics;

    fn entries(input: &str, f: Format) -> Vec<Entry<'_>> {
        Parser::new(input.as_bytes(), f)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("unexpected error {e} in {input:?}"))
    }

    fn samples(input: &str, f: Format) -> Vec<SampleEntry<'_>> {
        entries(input, f)
            .into_iter()
            .filter_map(|e| match e {
                Entry::Sample(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn one(input: &str, f: Format) -> SampleEntry<'_> {
        let mut v = samples(input, f);
        assert_eq!(v.len(), 1, "{input:?}");
        v.remove(0)
    }

    /// The first error, asserting that everything before it parsed.
    fn error(input: &[u8], f: Format) -> ParseError {
        let mut p = Parser::new(input, f);
        loop {
            match p.next_entry() {
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    assert!(p.next_entry().is_none(), "parser must be fused");
                    return e;
                }
                None => panic!("expected an error for {:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    fn check_err(input: &str, f: Format, line: usize, column: usize, needle: &str) {
        let e = error(input.as_bytes(), f);
        assert_eq!(
            (e.line, e.column),
            (line, column),
            "position of {e} for {input:?}"
        );
        assert!(
            e.message.contains(needle),
            "message {:?} should contain {needle:?}",
            e.message
        );
    }

    fn pairs(s: &SampleEntry<'_>) -> Vec<(String, String)> {
        s.label_pairs()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn text_page() {
        let page = "# HELP http_requests_total The total number of HTTP requests.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
                    \n\
                    # A normal comment\n\
                    metric_without_timestamp_and_labels 12.47\n\
                    rpc_duration_seconds{quantile=\"0.99\"} 76656\n\
                    job:rate5m:sum 3e-2\n";
        let e = entries(page, TEXT);
        assert_eq!(e.len(), 7);
        assert_eq!(
            e[0],
            Entry::Help {
                metric: "http_requests_total",
                text: Cow::Borrowed("The total number of HTTP requests.")
            }
        );
        assert_eq!(
            e[1],
            Entry::Type {
                metric: "http_requests_total",
                kind: MetricType::Counter
            }
        );
        let Entry::Sample(s) = &e[2] else {
            panic!("sample expected")
        };
        assert_eq!(
            s.series,
            b"http_requests_total{method=\"post\",code=\"200\"}"
        );
        assert_eq!(s.value, 1027.0);
        assert_eq!(s.timestamp, Some(1395066363000));
        assert_eq!(s.metric_name(), "http_requests_total");
        assert_eq!(
            pairs(s),
            vec![
                ("method".to_string(), "post".to_string()),
                ("code".to_string(), "200".to_string())
            ]
        );
        let Entry::Sample(s) = &e[3] else {
            panic!("sample expected")
        };
        assert_eq!(s.value, 3.0);
        let Entry::Sample(s) = &e[4] else {
            panic!("sample expected")
        };
        assert_eq!(s.series, b"metric_without_timestamp_and_labels");
        assert_eq!(s.timestamp, None);
        assert_eq!(s.label_pairs().count(), 0);
        let Entry::Sample(s) = &e[6] else {
            panic!("sample expected")
        };
        assert_eq!(s.metric_name(), "job:rate5m:sum");
        assert_eq!(s.value, 0.03);
    }

    #[test]
    fn special_values() {
        let page = "a NaN\nb +Inf\nc -Inf\nd Inf\ne 1e3\nf .5\ng -0\nh 5.\ni -1.5E-2\n";
        let v = samples(page, TEXT);
        assert_eq!(v[0].value.to_bits(), NORMAL_NAN_BITS);
        assert!(!pharos_model::is_stale_nan(v[0].value));
        assert_eq!(v[1].value, f64::INFINITY);
        assert_eq!(v[2].value, f64::NEG_INFINITY);
        assert_eq!(v[3].value, f64::INFINITY);
        assert_eq!(v[4].value, 1000.0);
        assert_eq!(v[5].value, 0.5);
        assert!(v[6].value == 0.0 && v[6].value.is_sign_negative());
        assert_eq!(v[7].value, 5.0);
        assert_eq!(v[8].value, -0.015);
    }

    #[test]
    fn label_escapes_borrow_when_plain() {
        let s = one(r#"m{plain="abc",esc="a\\b\"c\nd",other="x\ty\q"} 1"#, TEXT);
        let v: Vec<_> = s.label_pairs().collect();
        assert!(matches!(v[0].1, Cow::Borrowed("abc")));
        assert!(matches!(v[0].0, Cow::Borrowed("plain")));
        assert_eq!(v[1].1, "a\\b\"c\nd");
        assert!(matches!(v[1].1, Cow::Owned(_)));
        // Unknown escapes are kept as written.
        assert_eq!(v[2].1, r"x\ty\q");
        // Raw tabs and carriage returns inside quotes are content.
        let t = one("m{a=\"x\ty\r\"} 1", TEXT);
        assert_eq!(pairs(&t), vec![("a".into(), "x\ty\r".into())]);
        assert!(matches!(s.metric_name(), Cow::Borrowed("m")));
    }

    #[test]
    fn whitespace_and_line_ends() {
        let page = "  \t\n   m1 1  \t\n\r\nm2{a=\"b\"}\t2 \t 100 \t\r\n\n  m3 { a = \"b\" , } 3\nm4{}4\nlast 5";
        let v = samples(page, TEXT);
        assert_eq!(v.len(), 5);
        assert_eq!((v[0].series, v[0].value), (&b"m1"[..], 1.0));
        assert_eq!(v[1].timestamp, Some(100));
        assert_eq!(v[2].series, b"m3 { a = \"b\" , }");
        assert_eq!(pairs(&v[2]), vec![("a".into(), "b".into())]);
        assert_eq!(v[2].metric_name(), "m3");
        assert_eq!(v[3].value, 4.0);
        assert_eq!((v[4].series, v[4].value), (&b"last"[..], 5.0));
        // CRLF in HELP text is not part of the text.
        let e = entries("# HELP m some help\r\n# TYPE m gauge\r\nm 1\r\n", TEXT);
        assert_eq!(
            e[0],
            Entry::Help {
                metric: "m",
                text: "some help".into()
            }
        );
        assert_eq!(
            e[1],
            Entry::Type {
                metric: "m",
                kind: MetricType::Gauge
            }
        );
    }

    #[test]
    fn comments_are_skipped() {
        let page = "#\n#comment\n# HELPER no\n# HELP\n# TYPE\n# UNIT m seconds\n# EOF\n# random words\nm 1\n";
        let e = entries(page, TEXT);
        assert_eq!(e.len(), 1);
        assert!(matches!(e[0], Entry::Sample(_)));
        // Empty and whitespace-only input.
        assert!(entries("", TEXT).is_empty());
        assert!(entries("\n\n  \n", TEXT).is_empty());
    }

    #[test]
    fn help_escapes() {
        let e = entries("# HELP m a\\\\b\\nc \\\"q\\\" \\t\n", TEXT);
        // Text format: only \\ and \n are escapes in HELP.
        assert_eq!(
            e[0],
            Entry::Help {
                metric: "m",
                text: "a\\b\nc \\\"q\\\" \\t".into()
            }
        );
        let e = entries("# HELP m a\\\\b\\nc \\\"q\\\"\n# EOF\n", OM);
        assert_eq!(
            e[0],
            Entry::Help {
                metric: "m",
                text: "a\\b\nc \"q\"".into()
            }
        );
        let e = entries("# HELP m\n# HELP n  \n", TEXT);
        assert_eq!(
            e,
            vec![
                Entry::Help {
                    metric: "m",
                    text: "".into()
                },
                Entry::Help {
                    metric: "n",
                    text: "".into()
                }
            ]
        );
        let Entry::Help { text, .. } = &entries("# HELP m plain text\n", TEXT)[0] else {
            panic!()
        };
        assert!(matches!(text, Cow::Borrowed(_)));
    }

    #[test]
    fn types() {
        let e = entries(
            "# TYPE a counter\n# TYPE b gauge\n# TYPE c histogram\n# TYPE d summary\n# TYPE e untyped  \n",
            TEXT,
        );
        let kinds: Vec<_> = e
            .iter()
            .map(|e| match e {
                Entry::Type { kind, .. } => *kind,
                _ => panic!(),
            })
            .collect();
        use MetricType::*;
        assert_eq!(kinds, vec![Counter, Gauge, Histogram, Summary, Unknown]);
        let e = entries(
            "# TYPE a gaugehistogram\n# TYPE b info\n# TYPE c stateset\n# TYPE d unknown\n# EOF\n",
            OM,
        );
        let kinds: Vec<_> = e
            .iter()
            .map(|e| match e {
                Entry::Type { kind, .. } => *kind,
                _ => panic!(),
            })
            .collect();
        assert_eq!(kinds, vec![GaugeHistogram, Info, StateSet, Unknown]);
    }

    #[test]
    fn quoted_utf8_names() {
        let s = one(r#"{"my.metric", "a.b"="c", d="e"} 1"#, TEXT);
        assert_eq!(s.metric_name(), "my.metric");
        assert_eq!(
            pairs(&s),
            vec![("a.b".into(), "c".into()), ("d".into(), "e".into())]
        );
        assert_eq!(s.series, br#"{"my.metric", "a.b"="c", d="e"}"#);
        let l = s.labels();
        assert_eq!(l.metric_name(), Some("my.metric"));
        assert_eq!(l.get("a.b"), Some("c"));

        // The name may come anywhere in the braces, and alone.
        let s = one(r#"{a="1", "ünï.cødé"} 2"#, TEXT);
        assert_eq!(s.metric_name(), "ünï.cødé");
        assert_eq!(pairs(&s), vec![("a".into(), "1".into())]);
        let s = one("{\"only\"} 3\n# EOF\n", OM);
        assert_eq!(s.metric_name(), "only");
        assert_eq!(s.label_pairs().count(), 0);

        // Escapes in a quoted name are undone.
        let s = one(r#"{"we\"ird"} 1"#, TEXT);
        assert_eq!(s.metric_name(), "we\"ird");

        // Quoted names in HELP / TYPE.
        let e = entries(
            "# HELP \"my.metric\" help me\n# TYPE \"my.metric\" gauge\n",
            TEXT,
        );
        assert_eq!(
            e[0],
            Entry::Help {
                metric: "my.metric",
                text: "help me".into()
            }
        );
        assert_eq!(
            e[1],
            Entry::Type {
                metric: "my.metric",
                kind: MetricType::Gauge
            }
        );
    }

    #[test]
    fn labels_into_builder() {
        let s = one(r#"m{b="2",a="1",empty=""} 1"#, TEXT);
        let mut b = LabelsBuilder::new();
        s.labels_into(&mut b);
        let l = b.build();
        assert_eq!(
            l,
            Labels::from_pairs(&[("__name__", "m"), ("a", "1"), ("b", "2")])
        );
        assert_eq!(s.labels(), l);
        assert_eq!(s.duplicate_label_name(), None);
        let s = one(r#"m{a="1",b="2",a="3"} 1"#, TEXT);
        assert_eq!(s.duplicate_label_name().as_deref(), Some("a"));
        let s = one(r#"m{__name__="x"} 1"#, TEXT);
        assert_eq!(s.duplicate_label_name().as_deref(), Some("__name__"));
    }

    #[test]
    fn openmetrics_page() {
        let page = "# TYPE foo_seconds counter\n\
                    # UNIT foo_seconds seconds\n\
                    # HELP foo_seconds Time spent.\n\
                    foo_seconds_total{a=\"b\"} 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
                    foo_seconds_created{a=\"b\"} 1520430000.123\n\
                    foo_seconds_total{a=\"c\"} 1 # {} 2 1520879607.7\n\
                    bar 2 123\n\
                    # EOF\n";
        let e = entries(page, OM);
        assert_eq!(e.len(), 7);
        assert_eq!(
            e[1],
            Entry::Unit {
                metric: "foo_seconds",
                unit: "seconds"
            }
        );
        let Entry::Sample(s) = &e[3] else { panic!() };
        assert_eq!(s.series, b"foo_seconds_total{a=\"b\"}");
        assert_eq!(s.value, 17.0);
        assert_eq!(s.timestamp, Some(1_520_879_607_789));
        let Entry::Sample(s) = &e[4] else { panic!() };
        assert_eq!(s.metric_name(), "foo_seconds_created");
        assert_eq!(s.value, 1520430000.123);
        assert_eq!(s.timestamp, None);
        let Entry::Sample(s) = &e[5] else { panic!() };
        assert_eq!(s.timestamp, None);
        let Entry::Sample(s) = &e[6] else { panic!() };
        assert_eq!(s.timestamp, Some(123_000));
        // Without a trailing newline after # EOF, and with an empty unit.
        let e = entries("# UNIT m \nm 1\n# EOF", OM);
        assert_eq!(
            e[0],
            Entry::Unit {
                metric: "m",
                unit: ""
            }
        );
        assert_eq!(e.len(), 2);
        // Nothing after # EOF is read, not even on a second call.
        let mut p = Parser::new(b"# EOF\n", OM);
        assert!(p.next_entry().is_none());
        assert!(p.next_entry().is_none());
    }

    #[test]
    fn exemplar_forms() {
        let ok = [
            "m_bucket{le=\"1\"} 3 # {trace_id=\"abc\"} 0.5\n",
            "m_bucket{le=\"1\"} 3 # {trace_id=\"abc\",span=\"x\"} 0.5 123.456\n",
            "m_bucket{le=\"1\"} 3 1000 # {trace_id=\"abc\"} 0.5\n",
            "m_total 3 # {\"ü.trace\"=\"abc\"} 1e3\n",
            "m_total 3 # {} 1\n",
        ];
        for line in ok {
            let page = format!("{line}# EOF\n");
            let v = samples(&page, OM);
            assert_eq!(v.len(), 1, "{line}");
            assert_eq!(v[0].value, 3.0);
            assert!(v[0].exemplar.is_some(), "{line}");
        }
        let v = samples(
            "m_bucket{le=\"1\"} 3 1000 # {trace_id=\"a\\\"b\",span=\"x\"} 0.5 123.456\n# EOF\n",
            OM,
        );
        let e = v[0].exemplar.as_ref().unwrap();
        assert_eq!(e.value, 0.5);
        assert_eq!(e.timestamp, Some(123_456));
        assert_eq!(
            e.labels(),
            Labels::from_pairs(&[("span", "x"), ("trace_id", "a\"b")])
        );
        let v = samples("m_total 3 # {} 1\n# EOF\n", OM);
        let e = v[0].exemplar.as_ref().unwrap();
        assert!(e.labels().is_empty());
        assert_eq!(e.timestamp, None);
        let v = samples("m_total 3\n# EOF\n", OM);
        assert!(v[0].exemplar.is_none());
    }

    #[test]
    fn text_errors_with_positions() {
        check_err("foo abc\n", TEXT, 1, 5, "invalid float: \"abc\"");
        check_err("m 1\nfoo 1 1.5\n", TEXT, 2, 7, "invalid timestamp");
        check_err("foo 1 99999999999999999999\n", TEXT, 1, 7, "out of range");
        check_err("foo 1e999\n", TEXT, 1, 5, "out of range");
        check_err(
            "foo 1 2 3\n",
            TEXT,
            1,
            9,
            "expected end of line after timestamp",
        );
        check_err("foo 1 # c\n", TEXT, 1, 7, "invalid timestamp: \"#\"");
        check_err("foo{a=\"b} 1\n", TEXT, 1, 12, "unterminated quoted string");
        check_err("foo{a=\"b\\", TEXT, 1, 9, "unterminated quoted string");
        check_err(
            "foo{a\"b\"} 1\n",
            TEXT,
            1,
            6,
            "expected '=' after label name",
        );
        check_err("foo{1=\"b\"} 1\n", TEXT, 1, 5, "expected label name or '}'");
        check_err(
            "foo{a=\"b\" c=\"d\"} 1\n",
            TEXT,
            1,
            11,
            "expected ',' or '}'",
        );
        check_err("foo{a=b} 1\n", TEXT, 1, 7, "expected quoted label value");
        check_err("foo{a=\"b\"\n", TEXT, 1, 10, "expected ',' or '}'");
        check_err("{a=\"b\"} 1\n", TEXT, 1, 1, "metric name not set");
        check_err("foo{\"bar\"} 1\n", TEXT, 1, 5, "metric name already set");
        check_err("{\"\"} 1\n", TEXT, 1, 2, "empty metric name");
        check_err("{\"x\", \"\"=\"a\"} 1\n", TEXT, 1, 7, "empty label name");
        check_err(
            "{\"x\" \"y\"} 1\n",
            TEXT,
            1,
            6,
            "expected '=' after label name",
        );
        check_err("-foo 1\n", TEXT, 1, 1, "expected metric name or '{'");
        check_err(
            "foo\"x\" 1\n",
            TEXT,
            1,
            4,
            "unexpected character '\"' after metric name",
        );
        check_err("foo\n", TEXT, 1, 4, "expected value");
        check_err("foo{} \n", TEXT, 1, 7, "expected value");
        check_err("foo", TEXT, 1, 4, "expected value");
        check_err(
            "# TYPE foo bar\n",
            TEXT,
            1,
            12,
            "invalid metric type \"bar\"",
        );
        check_err("# TYPE foo unknown\n", TEXT, 1, 12, "invalid metric type");
        check_err("# TYPE foo\n", TEXT, 1, 11, "expected metric type");
        check_err(
            "# TYPE 9foo gauge\n",
            TEXT,
            1,
            8,
            "expected metric name after TYPE",
        );
        check_err("# HELP \n", TEXT, 1, 8, "expected metric name after HELP");
        check_err("# HELP foo{ x\n", TEXT, 1, 11, "expected whitespace");
        check_err("# HELP \"\" x\n", TEXT, 1, 8, "empty metric name");
        // Columns count characters, lines count from 1.
        check_err("# HELP m é\n\nm{a=\"é\"} x\n", TEXT, 3, 10, "invalid float");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let e = error(b"m{a=\"\xff\"} 1\n", TEXT);
        assert_eq!((e.line, e.column), (1, 6));
        assert!(e.message.contains("invalid UTF-8"));
        let e = error(b"# HELP m bad \xc3\n", TEXT);
        assert_eq!((e.line, e.column), (1, 14));
        assert!(e.message.contains("invalid UTF-8 in HELP"));
        let e = error(b"m \xff\n", TEXT);
        assert!(e.message.contains("invalid float"));
        let e = error(b"{\"\xe2\x82\"} 1\n", TEXT);
        assert!(e.message.contains("invalid UTF-8"));
    }

    #[test]
    fn openmetrics_errors_with_positions() {
        check_err("m 1\n", OM, 2, 1, "data does not end with # EOF");
        check_err("", OM, 1, 1, "data does not end with # EOF");
        check_err("m 1\n# EOF\nm 2\n", OM, 3, 1, "unexpected data after # EOF");
        check_err("# EOF x\n", OM, 1, 7, "unexpected data after # EOF");
        check_err("m 1\n# EOF\n\n\nx", OM, 5, 1, "unexpected data after # EOF");
        check_err(
            "m 1 NaN\n# EOF\n",
            OM,
            1,
            5,
            "invalid timestamp (NaN or Inf)",
        );
        check_err("m 1 abc\n# EOF\n", OM, 1, 5, "invalid float");
        check_err("m 1 #\n# EOF\n", OM, 1, 6, "expected exemplar label set");
        check_err("m 1 # x\n# EOF\n", OM, 1, 7, "expected exemplar label set");
        check_err(
            "m 1 # {a=\"b\"}\n# EOF\n",
            OM,
            1,
            14,
            "expected exemplar value",
        );
        check_err(
            "m 1 # {a=\"b\"} x\n# EOF\n",
            OM,
            1,
            15,
            "exemplar value: invalid float",
        );
        check_err(
            "m 1 # {a=\"b\"} 1 +Inf\n# EOF\n",
            OM,
            1,
            17,
            "exemplar timestamp",
        );
        check_err(
            "m 1 # {a=\"b\"} 1 2 3\n# EOF\n",
            OM,
            1,
            19,
            "expected end of line after exemplar",
        );
        check_err(
            "m 1 # {\"name\"} 1\n# EOF\n",
            OM,
            1,
            14,
            "expected '=' after label name",
        );
        check_err("m 1 # {a=\"b\"\n# EOF\n", OM, 1, 13, "expected ',' or '}'");
        check_err(
            "m 1 2 x\n# EOF\n",
            OM,
            1,
            7,
            "expected end of line after timestamp",
        );
        check_err("# UNIT m_seconds bytes\n# EOF\n", OM, 1, 18, "not a suffix");
        check_err(
            "# UNIT mseconds seconds\n# EOF\n",
            OM,
            1,
            17,
            "not a suffix",
        );
        check_err(
            "# TYPE m untyped\n# EOF\n",
            OM,
            1,
            10,
            "invalid metric type",
        );
    }

    #[test]
    fn unit_is_a_comment_in_text() {
        assert!(entries("# UNIT m_seconds bytes\n", TEXT).is_empty());
    }

    #[test]
    fn error_message_snippets_are_bounded() {
        let long = format!("m {}\n", "x".repeat(500));
        let e = error(long.as_bytes(), TEXT);
        assert!(e.message.len() < 100, "{}", e.message);
        assert!(e.to_string().starts_with("1:3: "));
    }

    #[test]
    fn iterator_and_format() {
        let p = Parser::new(b"a 1\nb 2\n", TEXT);
        assert_eq!(p.format(), TEXT);
        assert_eq!(p.count(), 2);
        assert_eq!(Parser::new(b"", OM).format(), OM);
    }

    // --- property tests ---------------------------------------------------

    const VALID_TEXT: &str = "# HELP http_requests_total Total \\\\ requests\\n.\n\
        # TYPE http_requests_total counter\n\
        http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
        http_requests_total{method=\"get\",path=\"/a\\\"b\\\\c\\nd\"} +Inf\n\
        {\"my.metric\",\"a.b\"=\"c\"} NaN\n\
        # a comment\n\
        \n\
        hist_bucket{le=\"0.5\"} 1e3 -12\r\n\
        job:x:rate5m  .5  \n";

    const VALID_OM: &str = "# TYPE foo_seconds counter\n\
        # UNIT foo_seconds seconds\n\
        # HELP foo_seconds Time \\\"spent\\\".\n\
        foo_seconds_total{a=\"b\"} 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
        foo_seconds_created{a=\"b\"} 1520430000.123\n\
        {\"utf8.name\",\"ü\"=\"x\"} -Inf 12 # {} 1 2\n\
        # EOF\n";

    fn drive(input: &[u8], f: Format) {
        let mut p = Parser::new(input, f);
        // Every call either returns None or consumes input, so the number
        // of entries is bounded by the input length.
        let mut n = 0usize;
        while let Some(r) = p.next_entry() {
            n += 1;
            assert!(n <= input.len() + 1, "parser does not make progress");
            match r {
                Ok(Entry::Sample(s)) => {
                    assert!(std::str::from_utf8(s.series).is_ok());
                    let _ = s.metric_name();
                    let _ = s.labels();
                    let _ = s.duplicate_label_name();
                    for (name, _) in s.label_pairs() {
                        assert!(!name.is_empty());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    assert!(e.line >= 1 && e.column >= 1, "{e}");
                    assert!(!e.message.is_empty());
                }
            }
        }
        assert!(p.next_entry().is_none());
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Truncate(usize),
        Duplicate(usize, usize),
    }

    fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
        use proptest::prelude::*;
        let interesting = prop_oneof![
            Just(b'"'),
            Just(b'\\'),
            Just(b'{'),
            Just(b'}'),
            Just(b'='),
            Just(b','),
            Just(b'#'),
            Just(b' '),
            Just(b'\n'),
            Just(b'\r'),
            Just(0xff),
            Just(0xc3),
            any::<u8>(),
        ];
        prop_oneof![
            (any::<usize>(), interesting.clone()).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        ]
    }

    fn apply(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
        for m in muts {
            if v.is_empty() {
                break;
            }
            let len = v.len();
            match *m {
                Mutation::Flip(i, b) => v[i % len] = b,
                Mutation::Insert(i, b) => v.insert(i % (len + 1), b),
                Mutation::Delete(i) => {
                    v.remove(i % len);
                }
                Mutation::Truncate(i) => v.truncate(i % len),
                Mutation::Duplicate(i, n) => {
                    let a = i % len;
                    let b = (a + n).min(len);
                    let chunk = v[a..b].to_vec();
                    v.splice(a..a, chunk);
                }
            }
        }
        v
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            drive(&input, TEXT);
            drive(&input, OM);
        }

        #[test]
        fn arbitrary_ascii_lines_never_panic(input in "[a-z_:{}=\",# \\\\\n\r\t.0-9+-]{0,200}") {
            drive(input.as_bytes(), TEXT);
            drive(input.as_bytes(), OM);
        }

        #[test]
        fn mutated_pages_never_panic(muts in proptest::collection::vec(mutation(), 1..8)) {
            let t = apply(VALID_TEXT.as_bytes().to_vec(), &muts);
            drive(&t, TEXT);
            drive(&t, OM);
            let o = apply(VALID_OM.as_bytes().to_vec(), &muts);
            drive(&o, TEXT);
            drive(&o, OM);
        }
    }

    #[test]
    fn valid_pages_parse() {
        assert_eq!(samples(VALID_TEXT, TEXT).len(), 5);
        assert_eq!(samples(VALID_OM, OM).len(), 3);
    }
}
