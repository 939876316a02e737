//! Logging set-up: `--log.level` and `--log.format` (logfmt or json), with
//! Prometheus 3's field names (`time`, `level`, `source`, `msg`).
//!
//! logfmt is written by a small formatter here because the tracing ecosystem
//! has no maintained logfmt layer that matches Prometheus's shape; JSON uses
//! tracing-subscriber's own formatter.

use std::fmt::{self, Write as _};

use anyhow::bail;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber.
pub fn init(level: &str, format: &str) -> anyhow::Result<()> {
    let level = match level {
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" => Level::WARN,
        "error" => Level::ERROR,
        other => bail!("invalid --log.level {other:?}: want debug, info, warn or error"),
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    let res = match format {
        "logfmt" => builder.event_format(Logfmt).try_init(),
        "json" => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        other => bail!("invalid --log.format {other:?}: want logfmt or json"),
    };
    res.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// logfmt lines: `time=... level=INFO source=file.rs:12 msg="..." k=v`.
struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        write!(w, "time={now} level={}", meta.level())?;
        if let (Some(file), Some(line)) = (meta.file(), meta.line()) {
            let file = file.rsplit('/').next().unwrap_or(file);
            write!(w, " source={file}:{line}")?;
        }
        let mut v = LogfmtVisitor::default();
        event.record(&mut v);
        write!(w, " msg={}", quote(&v.msg))?;
        w.write_str(&v.rest)?;
        writeln!(w)
    }
}

#[derive(Default)]
struct LogfmtVisitor {
    msg: String,
    rest: String,
}

impl Visit for LogfmtVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let s = format!("{value:?}");
        self.record_str(field, &s);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            let _ = write!(self.rest, " {}={}", field.name(), quote(value));
        }
    }
}

/// Quotes a logfmt value when it needs it.
fn quote(s: &str) -> String {
    if !s.is_empty() && !s.contains(|c: char| c == ' ' || c == '"' || c == '=' || c.is_control()) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("x=\"y\""), "\"x=\\\"y\\\"\"");
    }
}
