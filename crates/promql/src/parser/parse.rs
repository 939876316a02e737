//! Recursive-descent / precedence-climbing parser over the tokens of
//! [`super::lex`], building a positioned tree ([`N`]) that
//! [`super::check`] type-checks and [`super::lower`] turns into
//! promql-parser's AST.

use super::lex::{Kw, Tok, Token};
use super::{FuncDef, PErr, VT, func_def};

/// An `@` modifier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum At {
    /// Milliseconds since the epoch.
    Ts(i64),
    Start,
    End,
}

/// A label matcher operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MOp {
    Eq,
    Ne,
    Re,
    Nre,
}

/// A vector selector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sel {
    pub name: Option<String>,
    pub matchers: Vec<(String, MOp, String)>,
    /// Signed nanoseconds.
    pub offset: Option<i64>,
    pub at: Option<At>,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Lss,
    Gtr,
    Lte,
    Gte,
    TrimUpper,
    TrimLower,
    And,
    Or,
    Unless,
}

impl Op {
    fn of(t: &Tok) -> Option<Op> {
        Some(match t {
            Tok::Add => Op::Add,
            Tok::Sub => Op::Sub,
            Tok::Mul => Op::Mul,
            Tok::Div => Op::Div,
            Tok::Mod => Op::Mod,
            Tok::Pow => Op::Pow,
            Tok::Kw(Kw::Atan2) => Op::Atan2,
            Tok::EqlC => Op::Eql,
            Tok::Neq => Op::Neq,
            Tok::Lss => Op::Lss,
            Tok::Gtr => Op::Gtr,
            Tok::Lte => Op::Lte,
            Tok::Gte => Op::Gte,
            Tok::TrimUpper => Op::TrimUpper,
            Tok::TrimLower => Op::TrimLower,
            Tok::Kw(Kw::And) => Op::And,
            Tok::Kw(Kw::Or) => Op::Or,
            Tok::Kw(Kw::Unless) => Op::Unless,
            _ => return None,
        })
    }

    /// Precedence, higher binds tighter.
    fn prec(self) -> u8 {
        match self {
            Op::Or => 1,
            Op::And | Op::Unless => 2,
            Op::Eql | Op::Neq | Op::Lss | Op::Gtr | Op::Lte | Op::Gte => 3,
            Op::TrimUpper | Op::TrimLower => 3,
            Op::Add | Op::Sub => 4,
            Op::Mul | Op::Div | Op::Mod | Op::Atan2 => 5,
            Op::Pow => 6,
        }
    }

    /// Comparison operators (which take `bool`).
    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            Op::Eql | Op::Neq | Op::Lss | Op::Gtr | Op::Lte | Op::Gte
        )
    }

    /// `and`, `or`, `unless`.
    pub(crate) fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }

    /// As Prometheus prints it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::Pow => "^",
            Op::Atan2 => "atan2",
            Op::Eql => "==",
            Op::Neq => "!=",
            Op::Lss => "<",
            Op::Gtr => ">",
            Op::Lte => "<=",
            Op::Gte => ">=",
            Op::TrimUpper => "</",
            Op::TrimLower => ">/",
            Op::And => "and",
            Op::Or => "or",
            Op::Unless => "unless",
        }
    }
}

/// Vector matching of a binary expression.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Matching {
    pub on: bool,
    /// `on`/`ignoring` written.
    pub has_labels_clause: bool,
    pub labels: Vec<String>,
    /// 0 one-to-one, 1 many-to-one (group_left), 2 one-to-many.
    pub card: u8,
    pub include: Vec<String>,
    pub fill_lhs: Option<f64>,
    pub fill_rhs: Option<f64>,
}

/// Expression kinds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum K {
    Num(f64),
    Str(String),
    Sel(Sel),
    /// Range selector over a [`K::Sel`]; range in nanoseconds.
    Matrix(Box<N>, i64),
    Sub {
        expr: Box<N>,
        range: i64,
        step: Option<i64>,
        offset: Option<i64>,
        at: Option<At>,
    },
    Paren(Box<N>),
    /// `true` for minus.
    Unary(bool, Box<N>),
    Binary {
        op: Op,
        op_pos: usize,
        lhs: Box<N>,
        rhs: Box<N>,
        ret_bool: bool,
        m: Matching,
    },
    Agg {
        op: Kw,
        expr: Box<N>,
        param: Option<Box<N>>,
        /// (without, labels)
        grouping: Option<(bool, Vec<String>)>,
    },
    Call(&'static FuncDef, Vec<N>),
}

/// A positioned node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct N {
    pub k: K,
    pub start: usize,
    /// Height of the tree below (1 for a leaf), bounded by
    /// [`MAX_DEPTH`] so that the recursive passes over it cannot exhaust
    /// the stack.
    pub depth: usize,
}

impl N {
    /// A node; its depth is one more than its deepest child's.
    pub(crate) fn new(k: K, start: usize) -> N {
        let child = match &k {
            K::Num(_) | K::Str(_) | K::Sel(_) => 0,
            K::Matrix(e, _) | K::Paren(e) | K::Unary(_, e) => e.depth,
            K::Sub { expr, .. } => expr.depth,
            K::Binary { lhs, rhs, .. } => lhs.depth.max(rhs.depth),
            K::Agg { expr, param, .. } => expr.depth.max(param.as_ref().map_or(0, |p| p.depth)),
            K::Call(_, args) => args.iter().map(|a| a.depth).max().unwrap_or(0),
        };
        N {
            k,
            start,
            depth: child + 1,
        }
    }

    /// The value type.
    pub(crate) fn vt(&self) -> VT {
        match &self.k {
            K::Num(_) => VT::Scalar,
            K::Str(_) => VT::String,
            K::Sel(_) => VT::Vector,
            K::Matrix(..) | K::Sub { .. } => VT::Matrix,
            K::Paren(e) | K::Unary(_, e) => e.vt(),
            K::Binary { lhs, rhs, .. } => {
                if lhs.vt() == VT::Scalar && rhs.vt() == VT::Scalar {
                    VT::Scalar
                } else {
                    VT::Vector
                }
            }
            K::Agg { .. } => VT::Vector,
            K::Call(f, _) => f.ret,
        }
    }
}

/// Parser output besides the tree: the trim flags of every `<`/`>`
/// operator in text order, and the `anchored`/`smoothed` keywords.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    pub trims: Vec<bool>,
    /// (byte offset of the keyword, true for anchored)
    pub modes: Vec<(usize, bool)>,
}

/// The deepest expression tree accepted (nesting and operator chains).
/// Parsing, checking, planning and evaluation all recurse over the tree;
/// at this depth the whole engine runs within a 2 MiB thread stack in a
/// debug build (measured: 300 levels overflow it), where a deeper query
/// would abort the process. Prometheus has no such limit.
pub(crate) const MAX_DEPTH: usize = 200;

fn too_deep() -> String {
    format!("expression nested too deeply (more than {MAX_DEPTH} levels)")
}

pub(crate) struct Parser<'a> {
    input: &'a str,
    toks: Vec<Token>,
    i: usize,
    nest: usize,
    ctx: Option<DurCtx>,
    /// `step()`/`range()` met without a context.
    no_ctx: Option<PErr>,
    pub extras: Extras,
}

type R<T> = Result<T, PErr>;

fn err<T>(pos: usize, msg: impl Into<String>) -> R<T> {
    Err(PErr::new(pos, msg))
}

/// The query parameters duration expressions read (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DurCtx {
    /// The query step (0 for instant queries).
    pub step: i64,
    /// `end - start`.
    pub range: i64,
}

/// A duration expression's value (seconds) while parsing; `lit` for a
/// plain, possibly signed, literal, which Prometheus checks at parse time
/// (other expressions are checked when evaluated, with `start:end` byte
/// offsets in the message).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DVal {
    v: f64,
    lit: bool,
    start: usize,
    end: usize,
}

impl DVal {
    /// Prometheus's `calculateDuration` of an expression: checks, then
    /// whole milliseconds, in ns.
    fn finish(self, allow_negative: bool) -> R<i64> {
        let (s, e) = (self.start, self.end);
        if !self.v.is_finite() {
            return raw_err(format!("{s}:{e}: duration is NaN or infinite"));
        }
        if self.v <= 0.0 && !allow_negative {
            return raw_err(format!("{s}:{e}: duration must be greater than 0"));
        }
        if duration_out_of_range(self.v) {
            return raw_err(format!("{s}:{e}: duration is out of range"));
        }
        Ok(((self.v * 1000.0) as i64).saturating_mul(1_000_000))
    }
}

/// An error reported as written, without position prefix.
fn raw_err<T>(msg: String) -> R<T> {
    Err(PErr {
        pos: 0,
        msg,
        raw: true,
    })
}

/// What a primary expression starts with.
enum Primary {
    Paren,
    Agg(Kw),
    Call,
    Leaf,
}

/// A binary operator and its modifiers.
pub(crate) struct BinOp {
    op: Op,
    op_pos: usize,
    ret_bool: bool,
    m: Matching,
}

// Boxed so the recursive parsing frames that carry it stay small.
#[allow(clippy::boxed_local)]
#[inline(never)]
fn binary(lhs: N, rhs: N, b: Box<BinOp>) -> R<N> {
    if lhs.depth >= MAX_DEPTH || rhs.depth >= MAX_DEPTH {
        return err(lhs.start, too_deep());
    }
    let start = lhs.start;
    let b = *b;
    Ok(N::new(
        K::Binary {
            op: b.op,
            op_pos: b.op_pos,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            ret_bool: b.ret_bool,
            m: b.m,
        },
        start,
    ))
}

#[inline(never)]
fn unary(neg: bool, start: usize, inner: N) -> N {
    if let K::Num(v) = inner.k {
        return N::new(K::Num(if neg { -v } else { v }), start);
    }
    N::new(K::Unary(neg, Box::new(inner)), start)
}

/// Nanoseconds of a seconds value, as Go's `time.Duration(math.Round(s*1e9))`.
fn secs_to_ns(s: f64) -> i64 {
    let v = (s * 1e9).round();
    if v >= i64::MAX as f64 {
        i64::MAX
    } else if v <= i64::MIN as f64 {
        i64::MIN
    } else {
        v as i64
    }
}

fn duration_out_of_range(v: f64) -> bool {
    !(-9_223_372_036.854_776..=9_223_372_036.854_776).contains(&v)
}

impl<'a> Parser<'a> {
    pub(crate) fn new(input: &'a str, ctx: Option<DurCtx>) -> Self {
        let toks = super::lex::lex(input);
        Parser {
            input,
            toks,
            i: 0,
            nest: 0,
            ctx,
            no_ctx: None,
            extras: Extras::default(),
        }
    }

    fn peek(&self) -> &Token {
        let last = self.toks.len().saturating_sub(1);
        match self.toks.get(self.i.min(last)) {
            Some(t) => t,
            None => panic!("BUG: lexer produced no tokens"),
        }
    }

    fn peek_at(&self, k: usize) -> &Tok {
        let last = self.toks.len().saturating_sub(1);
        match self.toks.get((self.i + k).min(last)) {
            Some(t) => &t.tok,
            None => panic!("BUG: lexer produced no tokens"),
        }
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if !matches!(t.tok, Tok::Eof | Tok::Error(_)) {
            self.i += 1;
        }
        t
    }

    /// The "unexpected ..." error at the current token (a lexer error is
    /// reported as itself).
    fn unexpected<T>(&self, context: &str, expected: &str) -> R<T> {
        let t = self.peek();
        if let Tok::Error(m) = &t.tok {
            return err(t.start, m.clone());
        }
        let mut msg = format!("unexpected {}", t.describe(self.input));
        if !context.is_empty() {
            msg.push_str(" in ");
            msg.push_str(context);
        }
        if !expected.is_empty() {
            msg.push_str(", expected ");
            msg.push_str(expected);
        }
        err(t.start, msg)
    }

    /// Parses the whole input.
    pub(crate) fn parse_all(&mut self) -> R<N> {
        if matches!(self.peek().tok, Tok::Eof) {
            return err(0, "no expression found in input");
        }
        let e = self.expr(0)?;
        if !matches!(self.peek().tok, Tok::Eof) {
            return self.unexpected("", "");
        }
        if let Some(e) = self.no_ctx.take() {
            return Err(e);
        }
        Ok(e)
    }

    /// Binary expressions with operators of at least `min` precedence,
    /// within the nesting limit.
    fn expr(&mut self, min: u8) -> R<N> {
        self.nest += 1;
        if self.nest > MAX_DEPTH {
            return err(self.peek().start, too_deep());
        }
        let r = self.expr_inner(min);
        self.nest -= 1;
        let n = r?;
        if n.depth > MAX_DEPTH {
            return err(n.start, too_deep());
        }
        Ok(n)
    }

    fn expr_inner(&mut self, min: u8) -> R<N> {
        let mut lhs = self.unary()?;
        while let Some(b) = self.binary_op(min)? {
            let next = if b.op == Op::Pow {
                b.op.prec()
            } else {
                b.op.prec() + 1
            };
            let rhs = self.expr(next)?;
            lhs = binary(lhs, rhs, b)?;
        }
        Ok(lhs)
    }

    /// The binary operator at the current token with its modifiers, when it
    /// binds at least as tight as `min`.
    #[inline(never)]
    fn binary_op(&mut self, min: u8) -> R<Option<Box<BinOp>>> {
        let t = self.peek();
        let op_pos = t.start;
        let Some(op) = Op::of(&t.tok) else {
            return Ok(None);
        };
        if op.prec() < min {
            return Ok(None);
        }
        self.bump();
        match op {
            Op::Lss | Op::Gtr => self.extras.trims.push(false),
            Op::TrimUpper | Op::TrimLower => self.extras.trims.push(true),
            _ => {}
        }
        let (ret_bool, m) = self.bin_modifiers()?;
        Ok(Some(Box::new(BinOp {
            op,
            op_pos,
            ret_bool,
            m,
        })))
    }

    fn unary(&mut self) -> R<N> {
        let start = self.peek().start;
        let neg = match self.peek().tok {
            Tok::Sub => true,
            Tok::Add => false,
            _ => return self.postfix(),
        };
        self.bump();
        // The operand binds everything tighter than `*` (only `^`).
        let inner = self.expr(Op::Pow.prec())?;
        Ok(unary(neg, start, inner))
    }

    /// A primary expression followed by `[...]`, `offset`, `@`,
    /// `anchored`, `smoothed` in any number.
    fn postfix(&mut self) -> R<N> {
        let e = self.primary()?;
        self.postfix_ops(e)
    }

    #[inline(never)]
    fn postfix_ops(&mut self, mut e: N) -> R<N> {
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::LBracket if e.depth >= MAX_DEPTH => return err(e.start, too_deep()),
                Tok::LBracket => e = self.range_or_subquery(e)?,
                Tok::Kw(Kw::Offset) => {
                    self.bump();
                    let ns = self.offset_value()?;
                    e = self.add_offset(e, ns)?;
                }
                Tok::At => {
                    self.bump();
                    e = self.at_modifier(e)?;
                }
                Tok::Kw(k @ (Kw::Anchored | Kw::Smoothed)) => {
                    self.bump();
                    let word = if k == Kw::Anchored {
                        "anchored"
                    } else {
                        "smoothed"
                    };
                    match &e.k {
                        K::Sel(_) | K::Matrix(..) => {}
                        K::Sub { .. } => {
                            return err(
                                e.start,
                                format!("{word} modifier is not supported for subqueries"),
                            );
                        }
                        _ => return err(e.start, format!("{word} modifier not implemented")),
                    }
                    if self.extras.modes.iter().any(|&(p, _)| p > e.start) {
                        return err(
                            e.start,
                            "anchored and smoothed modifiers cannot be used together",
                        );
                    }
                    self.extras.modes.push((t.start, k == Kw::Anchored));
                }
                _ => return Ok(e),
            }
        }
    }

    fn primary(&mut self) -> R<N> {
        let start = self.peek().start;
        match self.primary_kind() {
            Primary::Paren => {
                self.bump();
                let inner = self.expr(0)?;
                self.close_paren(inner, start)
            }
            Primary::Agg(k) => self.aggregate(k, start),
            Primary::Call => self.call(),
            Primary::Leaf => self.leaf(),
        }
    }

    /// What the current token starts.
    #[inline(never)]
    fn primary_kind(&self) -> Primary {
        match &self.peek().tok {
            Tok::LParen => Primary::Paren,
            Tok::Kw(k)
                if k.is_aggregator()
                    && matches!(
                        self.peek_at(1),
                        Tok::LParen | Tok::Kw(Kw::By) | Tok::Kw(Kw::Without)
                    ) =>
            {
                Primary::Agg(*k)
            }
            Tok::Ident
            | Tok::Kw(Kw::Start | Kw::End | Kw::Step | Kw::Range | Kw::MaxOf | Kw::MinOf)
                if matches!(self.peek_at(1), Tok::LParen) =>
            {
                Primary::Call
            }
            _ => Primary::Leaf,
        }
    }

    #[inline(never)]
    fn close_paren(&mut self, inner: N, start: usize) -> R<N> {
        if !matches!(self.peek().tok, Tok::RParen) {
            return self.unexpected("", "");
        }
        self.bump();
        Ok(N::new(K::Paren(Box::new(inner)), start))
    }

    /// Literals and selectors (nothing recursive).
    #[inline(never)]
    fn leaf(&mut self) -> R<N> {
        let t = self.peek().clone();
        let text = t.text(self.input).to_string();
        match &t.tok {
            Tok::Number => {
                self.bump();
                let v = parse_number(&text).map_err(|m| PErr::new(t.start, m))?;
                Ok(N::new(K::Num(v), t.start))
            }
            Tok::Duration => {
                self.bump();
                Ok(N::new(
                    K::Num(parse_duration_secs(&text, t.start)?),
                    t.start,
                ))
            }
            Tok::Str => {
                self.bump();
                Ok(N::new(K::Str(unquote(&text, t.start)?), t.start))
            }
            Tok::LBrace => {
                let matchers = self.label_matchers()?;
                self.selector(None, matchers, t.start)
            }
            Tok::Ident
            | Tok::MetricIdent
            | Tok::Kw(
                Kw::Sum
                | Kw::Avg
                | Kw::Count
                | Kw::Min
                | Kw::Max
                | Kw::Group
                | Kw::Stddev
                | Kw::Stdvar
                | Kw::Topk
                | Kw::Bottomk
                | Kw::CountValues
                | Kw::Quantile
                | Kw::Limitk
                | Kw::LimitRatio
                | Kw::By
                | Kw::Without
                | Kw::Fill
                | Kw::FillLeft
                | Kw::FillRight
                | Kw::And
                | Kw::Or
                | Kw::Unless
                | Kw::Offset
                | Kw::Start
                | Kw::End
                | Kw::Step
                | Kw::Range
                | Kw::Anchored
                | Kw::Smoothed
                | Kw::MaxOf
                | Kw::MinOf,
            ) => self.name_selector(),
            _ => self.unexpected("", ""),
        }
    }

    fn name_selector(&mut self) -> R<N> {
        let t = self.bump();
        let name = t.text(self.input).to_string();
        let matchers = if matches!(self.peek().tok, Tok::LBrace) {
            self.label_matchers()?
        } else {
            Vec::new()
        };
        self.selector(Some(name), matchers, t.start)
    }

    fn selector(
        &mut self,
        name: Option<String>,
        matchers: Vec<(String, MOp, String)>,
        start: usize,
    ) -> R<N> {
        Ok(N::new(
            K::Sel(Sel {
                name,
                matchers,
                offset: None,
                at: None,
            }),
            start,
        ))
    }

    /// `{ ... }` at the current token.
    fn label_matchers(&mut self) -> R<Vec<(String, MOp, String)>> {
        self.bump(); // {
        let mut out = Vec::new();
        loop {
            let t = self.peek().clone();
            match &t.tok {
                Tok::RBrace => {
                    self.bump();
                    return Ok(out);
                }
                Tok::Ident | Tok::Str => {
                    self.bump();
                    let is_str = t.tok == Tok::Str;
                    let name = if is_str {
                        unquote(t.text(self.input), t.start)?
                    } else {
                        t.text(self.input).to_string()
                    };
                    let op = match self.peek().tok {
                        Tok::Eql => Some(MOp::Eq),
                        Tok::Neq => Some(MOp::Ne),
                        Tok::EqlRegex => Some(MOp::Re),
                        Tok::NeqRegex => Some(MOp::Nre),
                        _ => None,
                    };
                    match op {
                        Some(op) => {
                            self.bump();
                            let v = self.peek().clone();
                            if v.tok != Tok::Str {
                                return self.unexpected("label matching", "string");
                            }
                            self.bump();
                            let val = unquote(v.text(self.input), v.start)?;
                            if matches!(op, MOp::Re | MOp::Nre)
                                && let Err(e) = pharos_model::matcher::Regex::new(&val)
                            {
                                return err(t.start, e.to_string());
                            }
                            out.push((name, op, val));
                        }
                        None if is_str => {
                            out.push((pharos_model::METRIC_NAME.to_string(), MOp::Eq, name));
                        }
                        None => {
                            return self.unexpected("label matching", "label matching operator");
                        }
                    }
                    match self.peek().tok {
                        Tok::Comma => {
                            self.bump();
                        }
                        Tok::RBrace => {}
                        _ => return self.unexpected("label matching", "\",\" or \"}\""),
                    }
                }
                _ => return self.unexpected("label matching", "identifier or \"}\""),
            }
        }
    }

    /// `( args )` of a call or aggregation, the current token being `(`.
    fn call_args(&mut self) -> R<Vec<N>> {
        self.bump(); // (
        let mut args = Vec::new();
        if matches!(self.peek().tok, Tok::RParen) {
            self.bump();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            match self.peek().tok.clone() {
                Tok::Comma => {
                    let c = self.bump();
                    if matches!(self.peek().tok, Tok::RParen) {
                        return err(c.start, "trailing commas not allowed in function call args");
                    }
                }
                Tok::RParen => {
                    self.bump();
                    return Ok(args);
                }
                _ => return self.unexpected("", ""),
            }
        }
    }

    fn call(&mut self) -> R<N> {
        let t = self.bump();
        let name = t.text(self.input).to_string();
        let args = self.call_args()?;
        let Some(f) = func_def(&name) else {
            return err(
                t.start,
                format!("unknown function with name {}", super::lex::go_quote(&name)),
            );
        };
        Ok(N::new(K::Call(f, args), t.start))
    }

    fn aggregate(&mut self, op: Kw, start: usize) -> R<N> {
        self.bump();
        let mut grouping = None;
        if let Tok::Kw(k @ (Kw::By | Kw::Without)) = self.peek().tok {
            self.bump();
            grouping = Some((k == Kw::Without, self.grouping_labels()?));
        }
        if !matches!(self.peek().tok, Tok::LParen) {
            return self.unexpected("aggregation", "");
        }
        let mut args = self.call_args()?;
        if grouping.is_none()
            && let Tok::Kw(k @ (Kw::By | Kw::Without)) = self.peek().tok
        {
            self.bump();
            grouping = Some((k == Kw::Without, self.grouping_labels()?));
        }
        if args.is_empty() {
            return err(start, "no arguments for aggregate expression provided");
        }
        let with_param = matches!(
            op,
            Kw::Topk | Kw::Bottomk | Kw::CountValues | Kw::Quantile | Kw::Limitk | Kw::LimitRatio
        );
        let want = if with_param { 2 } else { 1 };
        if args.len() != want {
            return err(
                start,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {want}, got {}",
                    args.len()
                ),
            );
        }
        let expr = args.pop().map(Box::new);
        let param = args.pop().map(Box::new);
        let Some(expr) = expr else {
            panic!("BUG: aggregation without expression after the count check");
        };
        Ok(N::new(
            K::Agg {
                op,
                expr,
                param,
                grouping,
            },
            start,
        ))
    }

    /// `( label, ... )`.
    fn grouping_labels(&mut self) -> R<Vec<String>> {
        if !matches!(self.peek().tok, Tok::LParen) {
            return self.unexpected("grouping opts", "\"(\"");
        }
        self.bump();
        let mut out = Vec::new();
        loop {
            let t = self.peek().clone();
            match &t.tok {
                Tok::RParen => {
                    self.bump();
                    return Ok(out);
                }
                Tok::Str => {
                    self.bump();
                    let v = unquote(t.text(self.input), t.start)?;
                    if v.is_empty() || v.chars().any(|c| super::raw_byte(c).is_some()) {
                        return err(
                            t.start,
                            format!(
                                "invalid label name for grouping: {}",
                                super::lex::go_quote(&v)
                            ),
                        );
                    }
                    out.push(v);
                }
                Tok::Ident | Tok::MetricIdent => {
                    self.bump();
                    out.push(t.text(self.input).to_string());
                }
                Tok::Kw(k) if *k != Kw::Without => {
                    // Every keyword but `without` can be a label name here.
                    self.bump();
                    out.push(t.text(self.input).to_string());
                }
                _ => return self.unexpected("grouping opts", "label"),
            }
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {}
                _ => return self.unexpected("grouping opts", "\",\" or \")\""),
            }
        }
    }

    /// `bool`, `on`/`ignoring`, `group_left`/`group_right`, fill modifiers.
    fn bin_modifiers(&mut self) -> R<(bool, Matching)> {
        let mut m = Matching::default();
        let mut ret_bool = false;
        if matches!(self.peek().tok, Tok::Kw(Kw::Bool)) {
            self.bump();
            ret_bool = true;
        }
        if let Tok::Kw(k @ (Kw::On | Kw::Ignoring)) = self.peek().tok {
            self.bump();
            m.on = k == Kw::On;
            m.has_labels_clause = true;
            m.labels = self.grouping_labels()?;
            if let Tok::Kw(k @ (Kw::GroupLeft | Kw::GroupRight)) = self.peek().tok {
                self.bump();
                m.card = if k == Kw::GroupLeft { 1 } else { 2 };
                if matches!(self.peek().tok, Tok::LParen) {
                    m.include = self.grouping_labels()?;
                }
            }
        }
        let mut seen_left = false;
        let mut seen_right = false;
        loop {
            match self.peek().tok {
                Tok::Kw(Kw::Fill) if !seen_left && !seen_right => {
                    self.bump();
                    let v = self.fill_value()?;
                    m.fill_lhs = Some(v);
                    m.fill_rhs = Some(v);
                    return Ok((ret_bool, m));
                }
                Tok::Kw(Kw::FillLeft) if !seen_left => {
                    self.bump();
                    m.fill_lhs = Some(self.fill_value()?);
                    seen_left = true;
                }
                Tok::Kw(Kw::FillRight) if !seen_right => {
                    self.bump();
                    m.fill_rhs = Some(self.fill_value()?);
                    seen_right = true;
                }
                _ => return Ok((ret_bool, m)),
            }
        }
    }

    fn fill_value(&mut self) -> R<f64> {
        if !matches!(self.peek().tok, Tok::LParen) {
            return self.unexpected("", "");
        }
        self.bump();
        let mut neg = false;
        match self.peek().tok {
            Tok::Sub => {
                self.bump();
                neg = true;
            }
            Tok::Add => {
                self.bump();
            }
            _ => {}
        }
        let t = self.peek().clone();
        let v = match t.tok {
            Tok::Number => parse_number(t.text(self.input)).map_err(|m| PErr::new(t.start, m))?,
            Tok::Duration => parse_duration_secs(t.text(self.input), t.start)?,
            _ => return self.unexpected("", ""),
        };
        self.bump();
        if !matches!(self.peek().tok, Tok::RParen) {
            return self.unexpected("", "");
        }
        self.bump();
        Ok(if neg { -v } else { v })
    }

    fn add_offset(&mut self, mut e: N, ns: i64) -> R<N> {
        let slot = match &mut e.k {
            K::Sel(s) => &mut s.offset,
            K::Matrix(vs, _) => match &mut vs.k {
                K::Sel(s) => &mut s.offset,
                _ => return err(e.start, "ranges only allowed for vector selectors"),
            },
            K::Sub { offset, .. } => offset,
            _ => {
                return err(
                    e.start,
                    "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                );
            }
        };
        if slot.is_some_and(|o| o != 0) {
            return err(e.start, "offset may not be set multiple times");
        }
        *slot = Some(ns);
        Ok(e)
    }

    fn at_modifier(&mut self, mut e: N) -> R<N> {
        let t = self.peek().clone();
        let at = match t.tok {
            Tok::Kw(k @ (Kw::Start | Kw::End)) => {
                self.bump();
                if !matches!(self.peek().tok, Tok::LParen) {
                    return self.unexpected("@", "timestamp");
                }
                self.bump();
                if !matches!(self.peek().tok, Tok::RParen) {
                    return self.unexpected("@", "timestamp");
                }
                self.bump();
                if k == Kw::Start { At::Start } else { At::End }
            }
            _ => {
                let mut neg = false;
                match self.peek().tok {
                    Tok::Sub => {
                        self.bump();
                        neg = true;
                    }
                    Tok::Add => {
                        self.bump();
                    }
                    _ => {}
                }
                let n = self.peek().clone();
                let v = match n.tok {
                    Tok::Number => {
                        parse_number(n.text(self.input)).map_err(|m| PErr::new(n.start, m))?
                    }
                    Tok::Duration => parse_duration_secs(n.text(self.input), n.start)?,
                    _ => return self.unexpected("@", "timestamp"),
                };
                self.bump();
                let v = if neg { -v } else { v };
                if !v.is_finite() || v >= i64::MAX as f64 || v <= i64::MIN as f64 {
                    return err(
                        e.start,
                        format!("timestamp out of bounds for @ modifier: {}", go_f(v)),
                    );
                }
                At::Ts((v * 1000.0).round() as i64)
            }
        };
        let slot = match &mut e.k {
            K::Sel(s) => &mut s.at,
            K::Matrix(vs, _) => match &mut vs.k {
                K::Sel(s) => &mut s.at,
                _ => return err(e.start, "ranges only allowed for vector selectors"),
            },
            K::Sub { at, .. } => at,
            _ => {
                return err(
                    e.start,
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                );
            }
        };
        if slot.is_some() {
            return err(e.start, "@ <timestamp> may not be set multiple times");
        }
        *slot = Some(at);
        Ok(e)
    }

    /// A positive duration inside brackets (a duration expression), in ns.
    fn bracket_duration(&mut self, context: &str, expected: &str) -> R<i64> {
        let d = self.dur_expr(0, context, expected)?;
        if d.lit {
            if d.v <= 0.0 {
                return err(d.start, "duration must be greater than 0");
            }
            return Ok(secs_to_ns(d.v));
        }
        if self.no_ctx.is_some() {
            // The value is a placeholder; the missing context is the error.
            return Ok(1_000_000_000);
        }
        d.finish(false)
    }

    /// The value after `offset`, in ns: one signed operand (a literal,
    /// `step()`, `range()`, `min_of`/`max_of(...)` or a parenthesised
    /// duration expression), so `foo offset 2 ^ 2` is `(foo offset 2) ^ 2`.
    fn offset_value(&mut self) -> R<i64> {
        const CTX: &str = "offset";
        const EXPECTED: &str = "number, duration, step(), or range()";
        let sign = self.peek().clone();
        let neg = match sign.tok {
            Tok::Sub => true,
            Tok::Add => false,
            _ => {
                let d = self.dur_atom(CTX, EXPECTED)?;
                return if d.lit || self.no_ctx.is_some() {
                    Ok(secs_to_ns(d.v))
                } else {
                    d.finish(true)
                };
            }
        };
        self.bump();
        let d = self.dur_atom(CTX, EXPECTED)?;
        let v = if neg { -d.v } else { d.v };
        if d.lit {
            if duration_out_of_range(v) {
                return err(sign.start, "duration out of range");
            }
            return Ok(secs_to_ns(v));
        }
        if self.no_ctx.is_some() {
            return Ok(1_000_000_000);
        }
        DVal {
            v,
            lit: false,
            start: sign.start,
            end: d.end,
        }
        .finish(true)
    }

    /// A duration expression: `+ - * / % ^` over literals (seconds),
    /// `step()`, `range()`, `min_of(a, b)`, `max_of(a, b)` and parentheses,
    /// evaluated with the query's step and range.
    fn dur_expr(&mut self, min: u8, context: &str, expected: &str) -> R<DVal> {
        self.nest += 1;
        if self.nest > MAX_DEPTH {
            return err(self.peek().start, too_deep());
        }
        let r = self.dur_expr_inner(min, context, expected);
        self.nest -= 1;
        r
    }

    fn dur_expr_inner(&mut self, min: u8, context: &str, expected: &str) -> R<DVal> {
        let mut lhs = self.dur_unary(context, expected)?;
        loop {
            let t = self.peek().clone();
            let op = match t.tok {
                Tok::Add => Op::Add,
                Tok::Sub => Op::Sub,
                Tok::Mul => Op::Mul,
                Tok::Div => Op::Div,
                Tok::Mod => Op::Mod,
                Tok::Pow => Op::Pow,
                _ => return Ok(lhs),
            };
            if op.prec() < min {
                return Ok(lhs);
            }
            self.bump();
            let next = if op == Op::Pow {
                op.prec()
            } else {
                op.prec() + 1
            };
            let rhs = self.dur_expr(next, "", "")?;
            let (start, end) = (lhs.start, rhs.end);
            let zero_msg = match op {
                Op::Div => Some("division by zero"),
                Op::Mod => Some("modulo by zero"),
                _ => None,
            };
            if let Some(m) = zero_msg
                && rhs.v == 0.0
            {
                if rhs.lit {
                    return err(t.start, m);
                }
                if self.no_ctx.is_none() {
                    return raw_err(format!("{start}:{end}: {m}"));
                }
            }
            let v = match op {
                Op::Add => lhs.v + rhs.v,
                Op::Sub => lhs.v - rhs.v,
                Op::Mul => lhs.v * rhs.v,
                Op::Div => lhs.v / rhs.v,
                Op::Mod => lhs.v % rhs.v,
                _ => lhs.v.powf(rhs.v),
            };
            lhs = DVal {
                v,
                lit: false,
                start,
                end,
            };
        }
    }

    fn dur_unary(&mut self, context: &str, expected: &str) -> R<DVal> {
        let t = self.peek().clone();
        let neg = match t.tok {
            Tok::Sub => true,
            Tok::Add => false,
            _ => return self.dur_atom(context, expected),
        };
        self.bump();
        let d = self.dur_expr(Op::Pow.prec(), "", "")?;
        let v = if neg { -d.v } else { d.v };
        if d.lit && duration_out_of_range(v) {
            return err(t.start, "duration out of range");
        }
        Ok(DVal {
            v,
            lit: d.lit,
            start: t.start,
            end: d.end,
        })
    }

    fn dur_atom(&mut self, context: &str, expected: &str) -> R<DVal> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Number | Tok::Duration => {
                let v = if t.tok == Tok::Number {
                    parse_number(t.text(self.input)).map_err(|m| PErr::new(t.start, m))?
                } else {
                    parse_duration_secs(t.text(self.input), t.start)?
                };
                self.bump();
                if duration_out_of_range(v) {
                    return err(t.start, "duration out of range");
                }
                Ok(DVal {
                    v,
                    lit: true,
                    start: t.start,
                    end: t.end,
                })
            }
            Tok::Kw(k @ (Kw::Step | Kw::Range)) => {
                self.bump();
                self.expect_tok(&Tok::LParen, context, expected)?;
                let close = self.expect_tok(&Tok::RParen, context, expected)?;
                let ms = match self.ctx {
                    Some(ctx) if k == Kw::Step => ctx.step,
                    Some(ctx) => ctx.range,
                    None => {
                        // Reported once the rest parsed: a later syntax
                        // error comes first, as in Prometheus.
                        self.no_ctx.get_or_insert(PErr::new(
                            t.start,
                            format!(
                                "{}() in a duration needs the query's step and range",
                                if k == Kw::Step { "step" } else { "range" }
                            ),
                        ));
                        1000
                    }
                };
                Ok(DVal {
                    v: ms as f64 / 1000.0,
                    lit: false,
                    start: t.start,
                    end: close,
                })
            }
            Tok::Kw(k @ (Kw::MinOf | Kw::MaxOf)) => {
                self.bump();
                self.expect_tok(&Tok::LParen, context, expected)?;
                let a = self.dur_expr(0, "", "")?;
                self.expect_tok(&Tok::Comma, "", "")?;
                let b = self.dur_expr(0, "", "")?;
                let close = self.expect_tok(&Tok::RParen, "", "")?;
                let v = if a.v.is_nan() || b.v.is_nan() {
                    f64::NAN
                } else if k == Kw::MinOf {
                    a.v.min(b.v)
                } else {
                    a.v.max(b.v)
                };
                Ok(DVal {
                    v,
                    lit: false,
                    start: t.start,
                    end: close,
                })
            }
            Tok::LParen => {
                self.bump();
                let d = self.dur_expr(0, "", "")?;
                let close = self.expect_tok(&Tok::RParen, "", "")?;
                // A parenthesised literal is an expression, no longer a
                // literal (Prometheus wraps it).
                Ok(if d.lit {
                    DVal {
                        v: d.v,
                        lit: false,
                        start: t.start,
                        end: close,
                    }
                } else {
                    DVal { lit: false, ..d }
                })
            }
            _ => self.unexpected(context, expected),
        }
    }

    /// Consumes a token of kind `want`, returning its end offset.
    fn expect_tok(&mut self, want: &Tok, context: &str, expected: &str) -> R<usize> {
        if &self.peek().tok != want {
            return self.unexpected(context, expected);
        }
        Ok(self.bump().end)
    }

    fn range_or_subquery(&mut self, e: N) -> R<N> {
        let open = self.bump();
        let range = self.bracket_duration(
            "subquery or range selector",
            "number, duration, step(), or range()",
        )?;
        match self.peek().tok {
            Tok::RBracket => {
                self.bump();
                let msg = match &e.k {
                    K::Sel(s) if s.offset.is_some_and(|o| o != 0) => {
                        Some("no offset modifiers allowed before range")
                    }
                    K::Sel(s) if s.at.is_some() => Some("no @ modifiers allowed before range"),
                    K::Sel(_) => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(m) = msg {
                    return err(open.start, m);
                }
                let start = e.start;
                Ok(N::new(K::Matrix(Box::new(e), range), start))
            }
            Tok::Colon => {
                self.bump();
                let step = if matches!(self.peek().tok, Tok::RBracket) {
                    None
                } else {
                    Some(self.bracket_duration(
                        "subquery selector",
                        "number, duration, step(), range(), or \"]\"",
                    )?)
                };
                if !matches!(self.peek().tok, Tok::RBracket) {
                    return self.unexpected("subquery selector", "\"]\"");
                }
                self.bump();
                let start = e.start;
                Ok(N::new(
                    K::Sub {
                        expr: Box::new(e),
                        range,
                        step,
                        offset: None,
                        at: None,
                    },
                    start,
                ))
            }
            _ => self.unexpected("subquery or range", "\":\" or \"]\""),
        }
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` then `ParseFloat`, as Prometheus's
/// number literals.
pub(crate) fn parse_number(s: &str) -> Result<f64, String> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" => return Ok(f64::INFINITY),
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    if let Some(hex) = clean
        .strip_prefix("0x")
        .or_else(|| clean.strip_prefix("0X"))
    {
        // Beyond int64 Go's ParseFloat does not take hex without an
        // exponent either.
        if let Ok(v) = i64::from_str_radix(hex, 16) {
            return Ok(v as f64);
        }
        return Err(format!(
            "error parsing number: strconv.ParseFloat: parsing {}: invalid syntax",
            super::lex::go_quote(s)
        ));
    }
    if clean.len() > 1
        && clean.starts_with('0')
        && clean.bytes().all(|b| b.is_ascii_digit())
        && let Ok(v) = i64::from_str_radix(&clean[1..], 8)
    {
        return Ok(v as f64);
    }
    if let Ok(v) = clean.parse::<i64>() {
        return Ok(v as f64);
    }
    match clean.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err(format!(
            "error parsing number: strconv.ParseFloat: parsing {}: value out of range",
            super::lex::go_quote(s)
        )),
        Ok(v) => Ok(v),
        Err(_) => Err(format!(
            "error parsing number: strconv.ParseFloat: parsing {}: invalid syntax",
            super::lex::go_quote(s)
        )),
    }
}

/// Go's `%f`.
fn go_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:.6}")
    }
}

/// A duration literal in seconds, as Prometheus's `model.ParseDuration`
/// (units from the largest down, each at most once).
fn parse_duration_secs(s: &str, pos: usize) -> R<f64> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3_600_000_000_000),
        ("w", 7 * 24 * 3_600_000_000_000),
        ("d", 24 * 3_600_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    let invalid = || {
        PErr::new(
            pos,
            format!("not a valid duration string: {}", super::lex::go_quote(s)),
        )
    };
    let out_of_range = || PErr::new(pos, "duration out of range");
    match s {
        "0" => return Ok(0.0),
        "" => return err(pos, "empty duration string"),
        _ => {}
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    let mut last_unit = 0usize;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(invalid());
        }
        let v: u64 = s[start..i].parse().map_err(|_| invalid())?;
        let ustart = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        if i == ustart {
            return Err(invalid());
        }
        let u = &s[ustart..i];
        let Some(k) = UNITS.iter().position(|(n, _)| *n == u) else {
            return err(
                pos,
                format!(
                    "unknown unit {} in duration {}",
                    super::lex::go_quote(u),
                    super::lex::go_quote(s)
                ),
            );
        };
        if k < last_unit {
            return Err(invalid());
        }
        last_unit = k + 1;
        let mult = UNITS[k].1;
        if v > (1u64 << 63) / mult {
            return Err(out_of_range());
        }
        total = total.checked_add(v * mult).ok_or_else(out_of_range)?;
        if total > i64::MAX as u64 {
            return Err(out_of_range());
        }
    }
    // Prometheus keeps milliseconds (model.Duration) before seconds.
    Ok((total / 1_000_000) as f64 / 1000.0)
}

/// Go's unquoting of a PromQL string literal (quotes included). Bytes that
/// do not form UTF-8 are kept as [`super::raw_byte`] characters.
pub(crate) fn unquote(s: &str, pos: usize) -> R<String> {
    let bad = || {
        PErr::new(
            pos,
            format!(
                "error unquoting string {}: invalid syntax",
                super::lex::go_quote(s)
            ),
        )
    };
    let mut chars = s.chars();
    let q = chars.next().ok_or_else(bad)?;
    if s.len() < 2 || !s.ends_with(q) {
        return Err(bad());
    }
    let body = &s[q.len_utf8()..s.len() - q.len_utf8()];
    if q == '`' {
        return Ok(body.to_string());
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(body.len());
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = it.next().ok_or_else(bad)?;
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '\'' | '"' => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            bytes.push(b);
            continue;
        }
        let (n, base) = match e {
            '0'..='7' => (2, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => return Err(bad()),
        };
        let mut v: u32 = if base == 8 {
            e.to_digit(8).ok_or_else(bad)?
        } else {
            0
        };
        for _ in 0..n {
            let d = it.next().and_then(|c| c.to_digit(base)).ok_or_else(bad)?;
            v = v
                .checked_mul(base)
                .and_then(|x| x.checked_add(d))
                .ok_or_else(bad)?;
        }
        match e {
            'x' | '0'..='7' => {
                let b = u8::try_from(v).map_err(|_| bad())?;
                bytes.push(b);
            }
            _ => {
                let c = char::from_u32(v).ok_or_else(bad)?;
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.push(super::raw_char(b));
        }
    }
    Ok(out)
}
