//! Translation of the `promql-parser` AST into the evaluator's own tree.
//!
//! The parser's tree is built for printing and round-tripping; the evaluator
//! wants something smaller and pre-digested: durations in milliseconds, `@`
//! resolved to absolute timestamps (including `start()`/`end()`), label
//! matchers compiled into [`pharos_model::Matcher`], parentheses gone,
//! functions and operators as enums, and every selector numbered so its
//! series can be fetched once and cached. Checks that Prometheus performs at
//! parse time but the parser crate does not (experimental functions, invalid
//! `count_values` labels, ...) happen here too.

use std::time::SystemTime;

use pharos_model::{MatchOp, Matcher};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::token;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    self as pp, AtModifier, LabelModifier, Offset, VectorMatchCardinality,
};

use crate::QueryError;

/// The value type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl VType {
    /// How Prometheus names the type in error messages.
    pub(crate) fn documented(self) -> &'static str {
        match self {
            VType::Scalar => "scalar",
            VType::Vector => "instant vector",
            VType::Matrix => "range vector",
            VType::String => "string",
        }
    }
}

/// A series selector (the part shared by instant and range selectors).
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    /// Index into the query's selector table (series cache key).
    pub id: usize,
    /// Alternatives of matcher sets (`or` inside braces); usually one. The
    /// metric name, when written, is the first matcher of each set.
    pub matcher_sets: Vec<Vec<Matcher>>,
    /// `offset`, ms (negative looks ahead).
    pub offset: i64,
    /// Absolute evaluation time from `@`, ms.
    pub at: Option<i64>,
    /// Start of the data this selector needs (inclusive), ms.
    pub fetch_start: i64,
    /// End of the data this selector needs (inclusive), ms.
    pub fetch_end: i64,
    /// Text position of the selector in the query (byte offset).
    pub pos: usize,
    /// Only histogram statistics are needed (the selector sits below
    /// `histogram_count`/`histogram_sum`/`histogram_avg` with no subquery,
    /// quantile, fraction or trim in between): histograms are read as
    /// Prometheus's `HistogramStatsIterator` hands them out, without buckets
    /// and with counter-reset hints detected on the fly.
    pub stats_only: bool,
    /// The experimental `anchored`/`smoothed` modifier.
    pub mode: SelMode,
}

/// How a selector reads around its range (Prometheus's experimental
/// extended range selectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SelMode {
    /// The usual `(t - range, t]` window.
    #[default]
    Plain,
    /// `anchored`: the window also holds the last sample at or before its
    /// start (within the lookback delta).
    Anchored,
    /// `smoothed`: values at the window bounds are interpolated from the
    /// samples around them (within the lookback delta).
    Smoothed,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
    /// `</`: keep histogram observations below the scalar.
    TrimUpper,
    /// `>/`: keep histogram observations above the scalar.
    TrimLower,
}

impl BinOp {
    /// The trim operators `</` and `>/`.
    pub(crate) fn is_trim(self) -> bool {
        matches!(self, BinOp::TrimUpper | BinOp::TrimLower)
    }
    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eql | BinOp::Neq | BinOp::Gtr | BinOp::Lss | BinOp::Gte | BinOp::Lte
        )
    }
    pub(crate) fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
    /// Arithmetic operators change the meaning of a metric, so the result
    /// loses its name.
    pub(crate) fn changes_metric_schema(self) -> bool {
        matches!(
            self,
            BinOp::Add
                | BinOp::Sub
                | BinOp::Mul
                | BinOp::Div
                | BinOp::Pow
                | BinOp::Mod
                | BinOp::Atan2
        )
    }
}

/// Vector matching cardinality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// How the two sides of a vector/vector operation are matched.
#[derive(Debug, Clone)]
pub(crate) struct VectorMatching {
    pub card: Card,
    /// `on(...)` when true, `ignoring(...)` otherwise.
    pub on: bool,
    pub labels: Vec<String>,
    /// `group_left(...)`/`group_right(...)` extra labels.
    pub include: Vec<String>,
    pub fill_lhs: Option<f64>,
    pub fill_rhs: Option<f64>,
}

/// Aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
    Limitk,
    LimitRatio,
}

impl AggOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Count => "count",
            AggOp::Group => "group",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::Quantile => "quantile",
            AggOp::CountValues => "count_values",
            AggOp::Limitk => "limitk",
            AggOp::LimitRatio => "limit_ratio",
        }
    }
}

/// The evaluator's expression tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Number(f64),
    Str(String),
    VectorSel(Selector),
    MatrixSel {
        sel: Selector,
        range: i64,
    },
    Subquery {
        expr: Box<Node>,
        range: i64,
        step: i64,
        offset: i64,
        at: Option<i64>,
        pos: usize,
    },
    Neg(Box<Node>),
    Binary {
        op: BinOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        matching: VectorMatching,
        return_bool: bool,
        pos: usize,
    },
    Aggregate {
        op: AggOp,
        expr: Box<Node>,
        param: Option<Box<Node>>,
        grouping: Vec<String>,
        without: bool,
        pos: usize,
        param_pos: usize,
    },
    Call {
        func: String,
        args: Vec<Node>,
        pos: usize,
        /// Text positions of the arguments.
        arg_pos: Vec<usize>,
    },
}

impl Node {
    pub(crate) fn vtype(&self) -> VType {
        match self {
            Node::Number(_) => VType::Scalar,
            Node::Str(_) => VType::String,
            Node::VectorSel(_) => VType::Vector,
            Node::MatrixSel { .. } | Node::Subquery { .. } => VType::Matrix,
            Node::Neg(e) => e.vtype(),
            Node::Binary { lhs, rhs, .. } => {
                if lhs.vtype() == VType::Scalar && rhs.vtype() == VType::Scalar {
                    VType::Scalar
                } else {
                    VType::Vector
                }
            }
            Node::Aggregate { .. } => VType::Vector,
            Node::Call { func, .. } => match func.as_str() {
                "time" | "pi" | "scalar" | "start" | "end" | "range" | "step" | "max_of"
                | "min_of" => VType::Scalar,
                _ => VType::Vector,
            },
        }
    }

    /// Text position of the node in the query (byte offset).
    pub(crate) fn pos(&self) -> usize {
        match self {
            Node::VectorSel(s) | Node::MatrixSel { sel: s, .. } => s.pos,
            Node::Subquery { pos, .. }
            | Node::Binary { pos, .. }
            | Node::Aggregate { pos, .. }
            | Node::Call { pos, .. } => *pos,
            Node::Neg(e) => e.pos().saturating_sub(1),
            Node::Number(_) | Node::Str(_) => 0,
        }
    }
}

/// Query-wide facts needed during planning.
pub(crate) struct PlanCtx<'a> {
    pub query: &'a str,
    pub start: i64,
    pub end: i64,
    pub lookback: i64,
    pub default_subquery_step: i64,
    pub experimental: bool,
    /// Cursor for the position finder.
    cursor: usize,
    next_selector: usize,
    /// For each `<`/`>` operator of the text, in order, whether it was
    /// written `</`/`>/` (trim operators, which promql-parser does not
    /// know and so sees as `<`/`>`).
    pub trims: Vec<bool>,
    next_cmp: usize,
    /// Byte offsets of `anchored`/`smoothed` keywords (removed from the
    /// text for promql-parser), each applying to the selector before it.
    pub modes: Vec<(usize, SelMode)>,
}

impl<'a> PlanCtx<'a> {
    pub(crate) fn new(
        query: &'a str,
        start: i64,
        end: i64,
        lookback: i64,
        default_subquery_step: i64,
        experimental: bool,
    ) -> Self {
        PlanCtx {
            query,
            start,
            end,
            lookback,
            default_subquery_step,
            experimental,
            cursor: 0,
            next_selector: 0,
            trims: Vec::new(),
            next_cmp: 0,
            modes: Vec::new(),
        }
    }

    /// Finds `needle` at or after the cursor and moves the cursor there.
    /// Returns the byte offset, or the cursor when not found.
    fn locate(&mut self, needle: &str) -> usize {
        if needle.is_empty() {
            return self.cursor;
        }
        let rest = self.query.get(self.cursor..).unwrap_or("");
        match rest.find(needle) {
            Some(i) => {
                self.cursor += i;
                self.cursor
            }
            None => self.cursor,
        }
    }

    /// Moves the cursor past the current position so that the next search
    /// does not find the same token again.
    fn bump(&mut self, n: usize) {
        self.cursor = (self.cursor + n).min(self.query.len());
        while !self.query.is_char_boundary(self.cursor) {
            self.cursor += 1;
        }
    }
}

/// Accumulated subquery context along the path from the root to a node, as
/// Prometheus's `subqueryTimes`.
#[derive(Debug, Clone, Copy, Default)]
struct PathTimes {
    offset: i64,
    range: i64,
    at: Option<i64>,
}

fn millis(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => millis(d),
        Some(Offset::Neg(d)) => -millis(d),
    }
}

fn at_ms(a: &Option<AtModifier>, ctx: &PlanCtx<'_>) -> Option<i64> {
    match a {
        None => None,
        Some(AtModifier::Start) => Some(ctx.start),
        Some(AtModifier::End) => Some(ctx.end),
        Some(AtModifier::At(t)) => Some(match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => millis(&d),
            Err(e) => -millis(&e.duration()),
        }),
    }
}

fn convert_matchers(
    name: &Option<String>,
    ms: &promql_parser::label::Matchers,
) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let conv = |m: &promql_parser::label::Matcher| -> Result<Matcher, QueryError> {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        Matcher::new(op, &m.name, &m.value).map_err(|e| QueryError::Parse(e.to_string()))
    };
    let mut groups: Vec<Vec<&promql_parser::label::Matcher>> = Vec::new();
    if ms.or_matchers.is_empty() {
        groups.push(ms.matchers.iter().collect());
    } else {
        for g in &ms.or_matchers {
            groups.push(g.iter().collect());
        }
        if !ms.matchers.is_empty() {
            groups.push(ms.matchers.iter().collect());
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut set = Vec::with_capacity(g.len() + 1);
        if let Some(n) = name {
            set.push(Matcher::equal(pharos_model::METRIC_NAME, n));
        }
        for m in g {
            set.push(conv(m)?);
        }
        out.push(set);
    }
    Ok(out)
}

fn labels_of(l: &promql_parser::label::Labels) -> Vec<String> {
    l.labels.clone()
}

fn convert_binop(id: u16) -> Result<BinOp, QueryError> {
    Ok(match id {
        token::T_ADD => BinOp::Add,
        token::T_SUB => BinOp::Sub,
        token::T_MUL => BinOp::Mul,
        token::T_DIV => BinOp::Div,
        token::T_MOD => BinOp::Mod,
        token::T_POW => BinOp::Pow,
        token::T_ATAN2 => BinOp::Atan2,
        token::T_EQLC => BinOp::Eql,
        token::T_NEQ => BinOp::Neq,
        token::T_GTR => BinOp::Gtr,
        token::T_LSS => BinOp::Lss,
        token::T_GTE => BinOp::Gte,
        token::T_LTE => BinOp::Lte,
        token::T_LAND => BinOp::And,
        token::T_LOR => BinOp::Or,
        token::T_LUNLESS => BinOp::Unless,
        other => {
            return Err(QueryError::Parse(format!(
                "unsupported binary operator (token {other})"
            )));
        }
    })
}

fn convert_aggop(id: u16) -> Result<AggOp, QueryError> {
    Ok(match id {
        token::T_SUM => AggOp::Sum,
        token::T_AVG => AggOp::Avg,
        token::T_MIN => AggOp::Min,
        token::T_MAX => AggOp::Max,
        token::T_COUNT => AggOp::Count,
        token::T_GROUP => AggOp::Group,
        token::T_STDDEV => AggOp::Stddev,
        token::T_STDVAR => AggOp::Stdvar,
        token::T_TOPK => AggOp::Topk,
        token::T_BOTTOMK => AggOp::Bottomk,
        token::T_QUANTILE => AggOp::Quantile,
        token::T_COUNT_VALUES => AggOp::CountValues,
        token::T_LIMITK => AggOp::Limitk,
        token::T_LIMIT_RATIO => AggOp::LimitRatio,
        other => {
            return Err(QueryError::Parse(format!(
                "unsupported aggregation operator (token {other})"
            )));
        }
    })
}

/// True for a label name Prometheus 3 accepts (any valid UTF-8, non-empty;
/// string escapes such as `"\xff"` can make invalid UTF-8, which the parser
/// keeps as marked bytes).
pub(crate) fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty() && !crate::parser::has_raw_bytes(s)
}

/// Converts a parsed expression.
pub(crate) fn convert(e: &pp::Expr, ctx: &mut PlanCtx<'_>) -> Result<Node, QueryError> {
    let mut n = conv(e, ctx, PathTimes::default())?;
    mark_stats_only(&mut n, false);
    if !ctx.modes.is_empty() {
        apply_modes(&mut n, ctx)?;
    }
    Ok(n)
}

/// Gives each `anchored`/`smoothed` keyword to the selector it follows (the
/// one starting last before it) and widens that selector's fetch range by
/// the lookback delta as Prometheus's `getTimeRangesForSelector`.
fn apply_modes(n: &mut Node, ctx: &PlanCtx<'_>) -> Result<(), QueryError> {
    fn collect<'n>(n: &'n mut Node, out: &mut Vec<(&'n mut Selector, bool)>) {
        match n {
            Node::VectorSel(s) => out.push((s, false)),
            Node::MatrixSel { sel, .. } => out.push((sel, true)),
            Node::Subquery { expr, .. } | Node::Neg(expr) => collect(expr, out),
            Node::Binary { lhs, rhs, .. } => {
                collect(lhs, out);
                collect(rhs, out);
            }
            Node::Aggregate { expr, param, .. } => {
                if let Some(p) = param {
                    collect(p, out);
                }
                collect(expr, out);
            }
            Node::Call { args, .. } => {
                for a in args {
                    collect(a, out);
                }
            }
            Node::Number(_) | Node::Str(_) => {}
        }
    }
    let mut sels = Vec::new();
    collect(n, &mut sels);
    for &(off, mode) in &ctx.modes {
        let Some(k) = sels
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| s.pos < off)
            .max_by_key(|(_, (s, _))| s.pos)
            .map(|(k, _)| k)
        else {
            return Err(QueryError::Parse(
                "anchored/smoothed modifier must follow a selector".into(),
            ));
        };
        let (sel, is_matrix) = &mut sels[k];
        if sel.mode != SelMode::Plain {
            continue;
        }
        if mode == SelMode::Anchored && !*is_matrix {
            return Err(QueryError::Parse(
                "anchored modifier can only be used with range vector selectors".into(),
            ));
        }
        sel.mode = mode;
        if *is_matrix {
            sel.fetch_start -= ctx.lookback;
        }
        if mode == SelMode::Smoothed {
            sel.fetch_end += ctx.lookback;
        }
    }
    Ok(())
}

/// Sets [`Selector::stats_only`] as Prometheus's
/// `detectHistogramStatsDecoding`: the operator closest above a selector
/// decides (a histogram statistics function enables, a subquery,
/// quantile, fraction or trim disables).
fn mark_stats_only(n: &mut Node, stats: bool) {
    match n {
        Node::VectorSel(s) | Node::MatrixSel { sel: s, .. } => s.stats_only = stats,
        Node::Subquery { expr, .. } => mark_stats_only(expr, false),
        Node::Neg(e) => mark_stats_only(e, stats),
        Node::Binary { op, lhs, rhs, .. } => {
            let st = stats && !op.is_trim();
            mark_stats_only(lhs, st);
            mark_stats_only(rhs, st);
        }
        Node::Aggregate { expr, param, .. } => {
            mark_stats_only(expr, stats);
            if let Some(p) = param {
                mark_stats_only(p, stats);
            }
        }
        Node::Call { func, args, .. } => {
            let st = match func.as_str() {
                "histogram_count" | "histogram_sum" | "histogram_avg" => true,
                "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => false,
                _ => stats,
            };
            for a in args {
                mark_stats_only(a, st);
            }
        }
        Node::Number(_) | Node::Str(_) => {}
    }
}

fn vtype_of(e: &pp::Expr) -> VType {
    match e.value_type() {
        ValueType::Scalar => VType::Scalar,
        ValueType::Vector => VType::Vector,
        ValueType::Matrix => VType::Matrix,
        ValueType::String => VType::String,
    }
}

fn make_selector(
    vs: &pp::VectorSelector,
    range: Option<i64>,
    ctx: &mut PlanCtx<'_>,
    path: PathTimes,
) -> Result<Selector, QueryError> {
    let pos = match &vs.name {
        Some(n) => ctx.locate(n),
        None => ctx.locate("{"),
    };
    ctx.bump(1);
    let offset = offset_ms(&vs.offset);
    let at = at_ms(&vs.at, ctx);
    // Same arithmetic as Prometheus's getTimeRangesForSelector.
    let (mut start, mut end) = (ctx.start, ctx.end);
    if let Some(t) = path.at {
        start = t;
        end = t;
    }
    if let Some(t) = at {
        start = t;
        end = t;
    } else {
        start = start - path.offset - path.range;
        end -= path.offset;
    }
    match range {
        None => start -= ctx.lookback - 1,
        Some(r) => start -= r - 1,
    }
    start -= offset;
    end -= offset;
    let id = ctx.next_selector;
    ctx.next_selector += 1;
    Ok(Selector {
        id,
        matcher_sets: convert_matchers(&vs.name, &vs.matchers)?,
        offset,
        at,
        fetch_start: start,
        fetch_end: end,
        pos,
        stats_only: false,
        mode: SelMode::Plain,
    })
}

fn unparen(e: &pp::Expr) -> &pp::Expr {
    let mut e = e;
    while let pp::Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn conv(e: &pp::Expr, ctx: &mut PlanCtx<'_>, path: PathTimes) -> Result<Node, QueryError> {
    Ok(match e {
        pp::Expr::NumberLiteral(n) => Node::Number(n.val),
        pp::Expr::StringLiteral(s) => Node::Str(s.val.clone()),
        pp::Expr::Paren(p) => {
            ctx.locate("(");
            ctx.bump(1);
            conv(&p.expr, ctx, path)?
        }
        pp::Expr::VectorSelector(vs) => Node::VectorSel(make_selector(vs, None, ctx, path)?),
        pp::Expr::MatrixSelector(ms) => {
            let range = millis(&ms.range);
            Node::MatrixSel {
                sel: make_selector(&ms.vs, Some(range), ctx, path)?,
                range,
            }
        }
        pp::Expr::Subquery(sq) => {
            let pos = ctx.cursor;
            let range = millis(&sq.range);
            let offset = offset_ms(&sq.offset);
            let at = at_ms(&sq.at, ctx);
            let step = match &sq.step {
                Some(s) => millis(s),
                None => ctx.default_subquery_step,
            };
            if step <= 0 {
                return Err(QueryError::Parse(
                    "zero or negative subquery step is not allowed".into(),
                ));
            }
            let mut inner = PathTimes {
                offset: path.offset + offset,
                range: path.range + range,
                at: path.at,
            };
            if let Some(t) = at {
                inner = PathTimes {
                    offset,
                    range,
                    at: Some(t),
                };
            }
            let expr = conv(&sq.expr, ctx, inner)?;
            Node::Subquery {
                expr: Box::new(expr),
                range,
                step,
                offset,
                at,
                pos,
            }
        }
        pp::Expr::Unary(u) => {
            ctx.locate("-");
            ctx.bump(1);
            let inner = conv(&u.expr, ctx, path)?;
            if let Node::Number(v) = inner {
                Node::Number(-v)
            } else {
                Node::Neg(Box::new(inner))
            }
        }
        pp::Expr::Binary(b) => {
            let pos = ctx.cursor;
            let op = convert_binop(b.op.id())?;
            let lt = vtype_of(&b.lhs);
            let rt = vtype_of(&b.rhs);
            let mut matching = VectorMatching {
                card: if op.is_set() {
                    Card::ManyToMany
                } else {
                    Card::OneToOne
                },
                on: false,
                labels: Vec::new(),
                include: Vec::new(),
                fill_lhs: None,
                fill_rhs: None,
            };
            let mut return_bool = false;
            if let Some(m) = &b.modifier {
                return_bool = m.return_bool;
                match &m.card {
                    VectorMatchCardinality::OneToOne => {}
                    VectorMatchCardinality::ManyToMany => matching.card = Card::ManyToMany,
                    VectorMatchCardinality::ManyToOne(l) => {
                        matching.card = Card::ManyToOne;
                        matching.include = labels_of(l);
                    }
                    VectorMatchCardinality::OneToMany(l) => {
                        matching.card = Card::OneToMany;
                        matching.include = labels_of(l);
                    }
                }
                match &m.matching {
                    Some(LabelModifier::Include(l)) => {
                        matching.on = true;
                        matching.labels = labels_of(l);
                    }
                    Some(LabelModifier::Exclude(l)) => {
                        matching.labels = labels_of(l);
                    }
                    None => {}
                }
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    if !ctx.experimental {
                        return Err(QueryError::Parse(
                            "binop fill modifiers are experimental and not enabled".into(),
                        ));
                    }
                    matching.fill_lhs = m.fill_values.lhs;
                    matching.fill_rhs = m.fill_values.rhs;
                }
            }
            if op.is_comparison() && lt == VType::Scalar && rt == VType::Scalar && !return_bool {
                return Err(QueryError::Parse(
                    "comparisons between scalars must use BOOL modifier".into(),
                ));
            }
            let lhs = conv(&b.lhs, ctx, path)?;
            // The operator comes after everything in the left operand.
            let op = match op {
                BinOp::Lss | BinOp::Gtr => {
                    let k = ctx.next_cmp;
                    ctx.next_cmp += 1;
                    match (ctx.trims.get(k), op) {
                        (Some(true), BinOp::Lss) => BinOp::TrimUpper,
                        (Some(true), _) => BinOp::TrimLower,
                        _ => op,
                    }
                }
                other => other,
            };
            let rhs = conv(&b.rhs, ctx, path)?;
            Node::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                matching,
                return_bool,
                pos,
            }
        }
        pp::Expr::Aggregate(a) => {
            let op = convert_aggop(a.op.id())?;
            let pos = ctx.locate(op.name());
            ctx.bump(op.name().len());
            if matches!(op, AggOp::Limitk | AggOp::LimitRatio) && !ctx.experimental {
                return Err(QueryError::Parse(format!(
                    "limitk() and limit_ratio() are experimental and must be enabled with --enable-feature=promql-experimental-functions (got {})",
                    op.name()
                )));
            }
            let (grouping, without) = match &a.modifier {
                Some(LabelModifier::Include(l)) => (labels_of(l), false),
                Some(LabelModifier::Exclude(l)) => (labels_of(l), true),
                None => (Vec::new(), false),
            };
            let param_pos = ctx.cursor + 1;
            let param = match &a.param {
                Some(p) => {
                    let p = unparen(p);
                    Some(Box::new(conv(p, ctx, path)?))
                }
                None => None,
            };
            let param_pos = if param.is_some() {
                skip_ws(ctx.query, param_pos)
            } else {
                param_pos
            };
            if op == AggOp::CountValues
                && let Some(p) = &param
                && let Node::Str(s) = p.as_ref()
                && !is_valid_label_name(s)
            {
                return Err(QueryError::Execution(format!(
                    "invalid label name {}",
                    crate::parser::go_quote(s)
                )));
            }
            let expr = conv(unparen(&a.expr), ctx, path)?;
            Node::Aggregate {
                op,
                expr: Box::new(expr),
                param,
                grouping,
                without,
                pos,
                param_pos,
            }
        }
        pp::Expr::Call(c) => {
            let name = c.func.name;
            let pos = ctx.locate(name);
            ctx.bump(name.len());
            // The parser's function table carries Prometheus's
            // experimental flag.
            if c.func.experimental && !ctx.experimental {
                return Err(QueryError::Parse(format!(
                    "function \"{name}\" is not enabled"
                )));
            }
            let mut args = Vec::with_capacity(c.args.args.len());
            let mut arg_pos = Vec::with_capacity(c.args.args.len());
            for a in &c.args.args {
                let a = unparen(a);
                let before = ctx.cursor + 1;
                let n = conv(a, ctx, path)?;
                let p = match &n {
                    Node::Number(_) | Node::Str(_) => skip_ws(ctx.query, before),
                    other => other.pos(),
                };
                arg_pos.push(p);
                args.push(n);
            }
            Node::Call {
                func: name.to_string(),
                args,
                pos,
                arg_pos,
            }
        }
        pp::Expr::Extension(_) => {
            return Err(QueryError::Parse("unsupported expression extension".into()));
        }
    })
}

fn skip_ws(q: &str, mut i: usize) -> usize {
    let b = q.as_bytes();
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b'\n' || b[i] == b'(') {
        i += 1;
    }
    i
}

/// Renders a byte offset as Prometheus's `line:column` (1-based).
pub(crate) fn position_string(query: &str, pos: usize) -> String {
    let pos = pos.min(query.len());
    let before = query.get(..pos).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = match before.rfind('\n') {
        Some(i) => pos - i,
        None => pos + 1,
    };
    format!("{line}:{col}")
}
