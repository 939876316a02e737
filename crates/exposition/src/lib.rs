//! The Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text:
//! zero-copy pull parsers, content negotiation and the text encoder.
//!
//! # Why it is built this way
//!
//! Parsing scrape bodies is the hottest loop of ingestion: every target,
//! every interval, every line. Prometheus's answer, which we follow, is a
//! *scrape cache*: the raw series text of a line (`name{a="b"}`) is looked up
//! in a per-target map, and only on a miss are labels materialised, relabeled
//! and interned. So the parser here:
//!
//! - is a **pull parser** over a borrowed `&[u8]` ([`Parser::next_entry`]):
//!   the caller decides what to do with each entry, nothing is collected;
//! - makes **one pass** over the bytes and **allocates nothing per sample**
//!   on the common path: a [`SampleEntry`] hands out the series text as a
//!   slice of the input plus the parsed value and timestamp; label pairs are
//!   decoded (and unescaped into owned strings only when they contain
//!   escapes) only when the caller asks, via [`SampleEntry::labels_into`];
//! - **validates everything** on that single pass (label syntax, UTF-8 in
//!   quoted strings, value and timestamp syntax, exemplars), so a later
//!   label decode cannot fail;
//! - **never panics**, whatever the bytes: every access is bounds-checked
//!   (`get`), and errors carry a 1-based line and column
//!   ([`ParseError`]). After the first error the parser is fused (returns
//!   `None`), like Prometheus, which rejects the whole scrape.
//!
//! Both formats share one tokenizer; the differences (`# EOF`, `# UNIT`,
//! exemplars, float-second timestamps, the set of `# TYPE` names, HELP
//! escapes) are switches on [`Format`]. Compared with Prometheus the parser
//! is deliberately a little more lenient where leniency costs nothing and
//! cannot change the meaning of a valid page: blank lines, extra spaces or
//! tabs between tokens, trailing whitespace and CRLF line ends are accepted
//! in both formats, and OpenMetrics comment lines other than
//! `HELP`/`TYPE`/`UNIT`/`EOF` are skipped rather than rejected.
//!
//! The encoder writes the text format 0.0.4 (what `/metrics` and
//! `/federate` serve); names that are not valid legacy names are written in
//! the quoted Prometheus 3 form, which both parsers read back.
//!
//! [`protobuf`] decodes the delimited protobuf format (the one that carries
//! native histograms) with a small hand-written decoder; see its docs.
//!
//! [`nhcb`] converts classic histograms (`_bucket`/`_count`/`_sum`) into
//! native histograms with custom buckets, for the backfill and the scraper.
//!
//! Gzip decoding is not done here: the scraper owns the HTTP body.

mod encode;
mod float;
pub mod nhcb;
mod parser;
pub mod protobuf;

pub use encode::{TextEncoder, write_help, write_sample, write_type};
pub use parser::{Entry, ExemplarEntry, LabelPairs, Parser, SampleEntry};

use std::fmt;

/// A text exposition format understood by [`Parser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4 (and 1.0.0, which only adds quoted
    /// UTF-8 names): `text/plain`.
    PrometheusText,
    /// OpenMetrics 1.0 text: `application/openmetrics-text`.
    OpenMetrics,
    /// The delimited protobuf format
    /// (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily`),
    /// read by [`protobuf::ProtoParser`], not by the text [`Parser`] (which
    /// treats this value like [`Format::PrometheusText`]).
    Protobuf,
}

/// The `Accept` header Prometheus 3 sends when scraping: OpenMetrics 1.0
/// first, then OpenMetrics 0.0.1, Prometheus text 1.0.0, text 0.0.4, then
/// anything. The `escaping=allow-utf-8` parameter tells targets they may
/// send UTF-8 metric and label names unescaped, in the quoted form, which
/// the parsers accept. Weights follow Prometheus's `acceptHeader` (starting
/// at `q=0.6`, one step down per protocol).
pub const SCRAPE_ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
application/openmetrics-text;version=0.0.1;q=0.5,\
text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
text/plain;version=0.0.4;q=0.3,\
*/*;q=0.2";

/// The `Content-Type` of the text format 0.0.4 as the encoder writes it.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Picks the parser for a response `Content-Type`: the media type
/// `application/openmetrics-text` (any version, any parameters, any case)
/// selects [`Format::OpenMetrics`]; `application/vnd.google.protobuf`
/// selects [`Format::Protobuf`] (like Prometheus, the `proto` and
/// `encoding` parameters are not checked); `text/plain`, a missing header
/// and anything else select [`Format::PrometheusText`].
pub fn format_for_content_type(content_type: Option<&str>) -> Format {
    let Some(ct) = content_type else {
        return Format::PrometheusText;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/openmetrics-text") {
        Format::OpenMetrics
    } else if media.eq_ignore_ascii_case("application/vnd.google.protobuf") {
        Format::Protobuf
    } else {
        Format::PrometheusText
    }
}

/// The type of a metric family, from a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram` (OpenMetrics only).
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info` (OpenMetrics only).
    Info,
    /// `stateset` (OpenMetrics only).
    StateSet,
    /// `untyped` in the text format, `unknown` in OpenMetrics.
    Unknown,
}

impl MetricType {
    /// The OpenMetrics name of the type, which is also what Prometheus's
    /// metadata API reports (`counter`, `gauge`, `unknown`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// The name used in the text format 0.0.4. That format has no
    /// `gaugehistogram`, `info` or `stateset`; those (and `Unknown`) are
    /// written as `untyped`, which every text parser accepts.
    pub fn text_name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::GaugeHistogram
            | MetricType::Info
            | MetricType::StateSet
            | MetricType::Unknown => "untyped",
        }
    }

    /// Parses a `# TYPE` word as the given format allows it: the text format
    /// knows `counter`, `gauge`, `histogram`, `summary` and `untyped`;
    /// OpenMetrics knows its eight type names (with `unknown`, not
    /// `untyped`). Case-sensitive, like Prometheus.
    pub fn parse(word: &str, format: Format) -> Option<MetricType> {
        let t = match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" if format == Format::PrometheusText => MetricType::Unknown,
            "unknown" if format == Format::OpenMetrics => MetricType::Unknown,
            "gaugehistogram" if format == Format::OpenMetrics => MetricType::GaugeHistogram,
            "info" if format == Format::OpenMetrics => MetricType::Info,
            "stateset" if format == Format::OpenMetrics => MetricType::StateSet,
            _ => return None,
        };
        Some(t)
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parse error with its position. `line` and `column` are 1-based; the
/// column counts characters (not bytes) from the start of the line.
/// Displays as `line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, in words.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_negotiation() {
        assert_eq!(format_for_content_type(None), Format::PrometheusText);
        assert_eq!(
            format_for_content_type(Some("text/plain; version=0.0.4; charset=utf-8")),
            Format::PrometheusText
        );
        assert_eq!(
            format_for_content_type(Some(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            format_for_content_type(Some("Application/OpenMetrics-Text")),
            Format::OpenMetrics
        );
        assert_eq!(
            format_for_content_type(Some("  application/openmetrics-text ;version=0.0.1")),
            Format::OpenMetrics
        );
        assert_eq!(
            format_for_content_type(Some("application/json")),
            Format::PrometheusText
        );
        assert_eq!(format_for_content_type(Some("")), Format::PrometheusText);
        assert_eq!(
            format_for_content_type(Some(protobuf::PROTOBUF_CONTENT_TYPE)),
            Format::Protobuf
        );
    }

    #[test]
    fn accept_header_shape() {
        let parts: Vec<&str> = SCRAPE_ACCEPT_HEADER.split(',').collect();
        assert_eq!(parts.len(), 5);
        assert!(parts[0].starts_with("application/openmetrics-text;version=1.0.0"));
        assert!(parts[0].ends_with(";q=0.6"));
        assert_eq!(parts[3], "text/plain;version=0.0.4;q=0.3");
        assert_eq!(parts[4], "*/*;q=0.2");
        assert!(!SCRAPE_ACCEPT_HEADER.contains(' '));
    }

    #[test]
    fn metric_type_names() {
        for t in [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::GaugeHistogram,
            MetricType::Summary,
            MetricType::Info,
            MetricType::StateSet,
            MetricType::Unknown,
        ] {
            assert_eq!(MetricType::parse(t.as_str(), Format::OpenMetrics), Some(t));
            assert!(MetricType::parse(t.text_name(), Format::PrometheusText).is_some());
        }
        assert_eq!(MetricType::parse("untyped", Format::OpenMetrics), None);
        assert_eq!(MetricType::parse("unknown", Format::PrometheusText), None);
        assert_eq!(MetricType::parse("info", Format::PrometheusText), None);
        assert_eq!(MetricType::parse("Counter", Format::PrometheusText), None);
    }

    #[test]
    fn error_display() {
        let e = ParseError {
            line: 3,
            column: 7,
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "3:7: bad");
    }
}
