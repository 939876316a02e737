//! Our own PromQL parser: lexer ([`lex`]), recursive-descent /
//! precedence-climbing parser ([`parse`]), Prometheus's type checks
//! ([`check`]) and the lowering to promql-parser's AST, which the planner
//! ([`crate::plan`]) consumes.
//!
//! Why our own: promql-parser reports no error positions, turns `"\xff"`
//! into U+00FF, mishandles backtick strings, panics on some input and does
//! not know Prometheus 3 syntax (trim operators, `anchored`/`smoothed`,
//! duration expressions such as `rate(x[5m+step()])`, which are evaluated
//! here with the query's step and range). This parser follows Prometheus's `promql/parser` (lexer states, grammar
//! precedence, `checkAST` order and wording), so errors read
//! `1:14: parse error: unexpected ...` as Prometheus's do.
//!
//! The AST stays promql-parser's so the planner does not change; what it
//! cannot hold travels beside it ([`Parsed::trims`], [`Parsed::modes`]).
//! Bytes that a string escape produces but that are not UTF-8 (`"\xff"`)
//! are kept as characters U+10FF00 + byte ([`raw_byte`]), so label-name
//! checks can reject them and errors can print them as Go does.
//!
//! Unlike Prometheus, trees deeper than [`parse::MAX_DEPTH`] are refused:
//! every pass over the tree recurses, and a deeper query would overflow a
//! thread's stack and abort the process.

pub(crate) mod check;
pub(crate) mod lex;
pub(crate) mod lower;
pub(crate) mod parse;
#[cfg(test)]
mod tests;

pub(crate) use parse::DurCtx;

use crate::plan::SelMode;

/// A value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VT {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl VT {
    /// Prometheus's `DocumentedType`.
    pub(crate) fn documented(self) -> &'static str {
        match self {
            VT::Scalar => "scalar",
            VT::Vector => "instant vector",
            VT::Matrix => "range vector",
            VT::String => "string",
        }
    }

    /// Prometheus's `ValueType` string.
    pub(crate) fn raw(self) -> &'static str {
        match self {
            VT::Scalar => "scalar",
            VT::Vector => "vector",
            VT::Matrix => "matrix",
            VT::String => "string",
        }
    }
}

/// A function signature (Prometheus's `functions.go`).
#[derive(Debug, PartialEq)]
pub(crate) struct FuncDef {
    pub name: &'static str,
    pub args: &'static [VT],
    /// 0: exactly `args`; n > 0: up to n optional trailing arguments;
    /// negative: any number.
    pub variadic: i32,
    pub ret: VT,
    pub experimental: bool,
}

const fn fd(
    name: &'static str,
    args: &'static [VT],
    variadic: i32,
    ret: VT,
    experimental: bool,
) -> FuncDef {
    FuncDef {
        name,
        args,
        variadic,
        ret,
        experimental,
    }
}

static FUNCTIONS: &[FuncDef] = &[
    fd("abs", &[VT::Vector], 0, VT::Vector, false),
    fd("absent", &[VT::Vector], 0, VT::Vector, false),
    fd("absent_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("acos", &[VT::Vector], 0, VT::Vector, false),
    fd("acosh", &[VT::Vector], 0, VT::Vector, false),
    fd("asin", &[VT::Vector], 0, VT::Vector, false),
    fd("asinh", &[VT::Vector], 0, VT::Vector, false),
    fd("atan", &[VT::Vector], 0, VT::Vector, false),
    fd("atanh", &[VT::Vector], 0, VT::Vector, false),
    fd("avg_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("ceil", &[VT::Vector], 0, VT::Vector, false),
    fd("changes", &[VT::Matrix], 0, VT::Vector, false),
    fd(
        "clamp",
        &[VT::Vector, VT::Scalar, VT::Scalar],
        0,
        VT::Vector,
        false,
    ),
    fd("clamp_max", &[VT::Vector, VT::Scalar], 0, VT::Vector, false),
    fd("clamp_min", &[VT::Vector, VT::Scalar], 0, VT::Vector, false),
    fd("cos", &[VT::Vector], 0, VT::Vector, false),
    fd("cosh", &[VT::Vector], 0, VT::Vector, false),
    fd("count_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("days_in_month", &[VT::Vector], 1, VT::Vector, false),
    fd("day_of_month", &[VT::Vector], 1, VT::Vector, false),
    fd("day_of_week", &[VT::Vector], 1, VT::Vector, false),
    fd("day_of_year", &[VT::Vector], 1, VT::Vector, false),
    fd("deg", &[VT::Vector], 0, VT::Vector, false),
    fd("end", &[], 0, VT::Scalar, true),
    fd("delta", &[VT::Matrix], 0, VT::Vector, false),
    fd("deriv", &[VT::Matrix], 0, VT::Vector, false),
    fd("exp", &[VT::Vector], 0, VT::Vector, false),
    fd("first_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("floor", &[VT::Vector], 0, VT::Vector, false),
    fd("histogram_avg", &[VT::Vector], 0, VT::Vector, false),
    fd("histogram_count", &[VT::Vector], 0, VT::Vector, false),
    fd("histogram_sum", &[VT::Vector], 0, VT::Vector, false),
    fd("histogram_stddev", &[VT::Vector], 0, VT::Vector, false),
    fd("histogram_stdvar", &[VT::Vector], 0, VT::Vector, false),
    fd(
        "histogram_fraction",
        &[VT::Scalar, VT::Scalar, VT::Vector],
        0,
        VT::Vector,
        false,
    ),
    fd(
        "histogram_quantile",
        &[VT::Scalar, VT::Vector],
        0,
        VT::Vector,
        false,
    ),
    fd(
        "histogram_quantiles",
        &[VT::Vector, VT::String, VT::Scalar, VT::Scalar],
        9,
        VT::Vector,
        true,
    ),
    fd(
        "double_exponential_smoothing",
        &[VT::Matrix, VT::Scalar, VT::Scalar],
        0,
        VT::Vector,
        true,
    ),
    fd("hour", &[VT::Vector], 1, VT::Vector, false),
    fd("idelta", &[VT::Matrix], 0, VT::Vector, false),
    fd("increase", &[VT::Matrix], 0, VT::Vector, false),
    fd("info", &[VT::Vector, VT::Vector], 1, VT::Vector, true),
    fd("irate", &[VT::Matrix], 0, VT::Vector, false),
    fd(
        "label_replace",
        &[VT::Vector, VT::String, VT::String, VT::String, VT::String],
        0,
        VT::Vector,
        false,
    ),
    fd(
        "label_join",
        &[VT::Vector, VT::String, VT::String, VT::String],
        -1,
        VT::Vector,
        false,
    ),
    fd("max_of", &[VT::Scalar, VT::Scalar], 0, VT::Scalar, true),
    fd("last_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("min_of", &[VT::Scalar, VT::Scalar], 0, VT::Scalar, true),
    fd("ln", &[VT::Vector], 0, VT::Vector, false),
    fd("log10", &[VT::Vector], 0, VT::Vector, false),
    fd("log2", &[VT::Vector], 0, VT::Vector, false),
    fd("mad_over_time", &[VT::Matrix], 0, VT::Vector, true),
    fd("max_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("min_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("ts_of_first_over_time", &[VT::Matrix], 0, VT::Vector, true),
    fd("ts_of_max_over_time", &[VT::Matrix], 0, VT::Vector, true),
    fd("ts_of_min_over_time", &[VT::Matrix], 0, VT::Vector, true),
    fd("ts_of_last_over_time", &[VT::Matrix], 0, VT::Vector, true),
    fd("minute", &[VT::Vector], 1, VT::Vector, false),
    fd("month", &[VT::Vector], 1, VT::Vector, false),
    fd("pi", &[], 0, VT::Scalar, false),
    fd(
        "predict_linear",
        &[VT::Matrix, VT::Scalar],
        0,
        VT::Vector,
        false,
    ),
    fd("present_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd(
        "quantile_over_time",
        &[VT::Scalar, VT::Matrix],
        0,
        VT::Vector,
        false,
    ),
    fd("rad", &[VT::Vector], 0, VT::Vector, false),
    fd("range", &[], 0, VT::Scalar, true),
    fd("rate", &[VT::Matrix], 0, VT::Vector, false),
    fd("resets", &[VT::Matrix], 0, VT::Vector, false),
    fd("round", &[VT::Vector, VT::Scalar], 1, VT::Vector, false),
    fd("scalar", &[VT::Vector], 0, VT::Scalar, false),
    fd("sgn", &[VT::Vector], 0, VT::Vector, false),
    fd("sin", &[VT::Vector], 0, VT::Vector, false),
    fd("sinh", &[VT::Vector], 0, VT::Vector, false),
    fd("sort", &[VT::Vector], 0, VT::Vector, false),
    fd("sort_desc", &[VT::Vector], 0, VT::Vector, false),
    fd(
        "sort_by_label",
        &[VT::Vector, VT::String],
        -1,
        VT::Vector,
        true,
    ),
    fd(
        "sort_by_label_desc",
        &[VT::Vector, VT::String],
        -1,
        VT::Vector,
        true,
    ),
    fd("sqrt", &[VT::Vector], 0, VT::Vector, false),
    fd("start", &[], 0, VT::Scalar, true),
    fd("start_timestamp", &[VT::Vector], 0, VT::Vector, true),
    fd("step", &[], 0, VT::Scalar, true),
    fd("stddev_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("stdvar_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("sum_over_time", &[VT::Matrix], 0, VT::Vector, false),
    fd("tan", &[VT::Vector], 0, VT::Vector, false),
    fd("tanh", &[VT::Vector], 0, VT::Vector, false),
    fd("time", &[], 0, VT::Scalar, false),
    fd("timestamp", &[VT::Vector], 0, VT::Vector, false),
    fd("vector", &[VT::Scalar], 0, VT::Vector, false),
    fd("year", &[VT::Vector], 1, VT::Vector, false),
];

/// The function called `name`.
pub(crate) fn func_def(name: &str) -> Option<&'static FuncDef> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// A parse error at a byte offset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PErr {
    pub pos: usize,
    pub msg: String,
    /// Reported as written, without position (Prometheus's duration
    /// expression evaluation errors, which carry `start:end` offsets).
    pub raw: bool,
}

impl PErr {
    /// An error at `pos`.
    pub(crate) fn new(pos: usize, msg: impl Into<String>) -> PErr {
        PErr {
            pos,
            msg: msg.into(),
            raw: false,
        }
    }

    /// Prometheus's wording: `line:col: parse error: msg`.
    pub(crate) fn render(&self, query: &str) -> String {
        if self.raw {
            return self.msg.clone();
        }
        let at = if query.is_empty() {
            "unknown position".to_string()
        } else if self.pos > query.len() {
            "invalid position".to_string()
        } else {
            crate::plan::position_string(query, self.pos)
        };
        format!("{at}: parse error: {}", self.msg)
    }
}

const RAW_BASE: u32 = 0x10FF00;

/// The byte a character stands for when it marks a non-UTF-8 byte of a
/// string literal.
pub(crate) fn raw_byte(c: char) -> Option<u8> {
    let v = c as u32;
    if v >= RAW_BASE {
        u8::try_from(v - RAW_BASE).ok()
    } else {
        None
    }
}

/// The marker character of a non-UTF-8 byte.
pub(crate) fn raw_char(b: u8) -> char {
    char::from_u32(RAW_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// True when `s` holds bytes that are not UTF-8 in Prometheus's view.
pub(crate) fn has_raw_bytes(s: &str) -> bool {
    s.chars().any(|c| raw_byte(c).is_some())
}

/// Go's `%q` of a string, raw bytes printed as `\xNN`.
pub(crate) fn go_quote(s: &str) -> String {
    lex::go_quote(s)
}

/// A parsed query: promql-parser's tree plus what it cannot hold.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub expr: promql_parser::parser::Expr,
    /// For every `<`/`>` operator in text order, whether it was written
    /// as the trim operator `</`/`>/`.
    pub trims: Vec<bool>,
    /// Byte offsets of `anchored`/`smoothed` keywords.
    pub modes: Vec<(usize, SelMode)>,
}

/// Parses and type-checks `query`; the error is Prometheus's message with
/// its `line:col` position.
#[cfg(test)]
pub(crate) fn parse_query(query: &str) -> Result<Parsed, String> {
    parse_query_for(query, None)
}

/// Parses and type-checks `query`. Duration expressions are evaluated with
/// `ctx` (the query's step and range); without it `step()` and `range()`
/// in durations are errors. The error is Prometheus's message with its
/// `line:col` position.
pub(crate) fn parse_query_for(query: &str, ctx: Option<DurCtx>) -> Result<Parsed, String> {
    let mut p = parse::Parser::new(query, ctx);
    let tree = p.parse_all().map_err(|e| e.render(query))?;
    check::check(&tree).map_err(|e| e.render(query))?;
    let expr = lower::lower(&tree);
    let extras = p.extras;
    Ok(Parsed {
        expr,
        trims: extras.trims,
        modes: extras
            .modes
            .into_iter()
            .map(|(at, anchored)| {
                let mode = if anchored {
                    SelMode::Anchored
                } else {
                    SelMode::Smoothed
                };
                (at, mode)
            })
            .collect(),
    })
}
