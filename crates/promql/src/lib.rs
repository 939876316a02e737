//! PromQL evaluation over [`pharos_storage::Queryable`].
//!
//! Parsing is our own (module `parser`), into the `promql-parser` crate's
//! AST; this crate owns the semantics, which follow Prometheus 3.x (checked by running Prometheus's
//! own promqltest scripts, see `tests/conformance.rs`).
//!
//! Design, and why:
//!
//! * **Whole-range evaluation per node.** Like Prometheus's `rangeEval`,
//!   every node of the expression is evaluated once for all steps of the
//!   query and yields a matrix with one point per step and series; parents
//!   walk their children's matrices step by step. Re-running the whole
//!   query per step would re-read storage and re-match series at every
//!   step; this way a range query costs little more than an instant one.
//! * **Selectors read once.** Each selector fetches the samples of its
//!   series for the whole time range it needs (computed from offsets, `@`,
//!   subquery ranges and the lookback delta, as Prometheus's
//!   `getTimeRangesForSelector`) and caches them for the query; functions
//!   over range vectors slide a `(t - range, t]` window over these samples
//!   with two cursors.
//! * **Delayed name removal.** Operations that drop `__name__` only mark
//!   the series; names are removed when evaluation ends (Prometheus's
//!   `EnableDelayedNameRemoval`, which promqltest runs with). So
//!   `sum(rate({__name__=~"a_total|b_total"}[5m]))` works, and a result
//!   with two series of one label set fails with "vector cannot contain
//!   metrics with the same labelset".
//! * **Own tree.** The parser's AST is translated into a small internal
//!   tree (module `plan`) with durations in ms, `@` (including `start()`/`end()`)
//!   resolved to timestamps, compiled matchers and text positions for
//!   annotations. `@` is evaluated directly (a fixed evaluation time per
//!   selector or subquery) instead of Prometheus's step-invariant
//!   rewriting; the results are the same.
//! * **Limits.** `max_samples` bounds the samples held at once (loaded from
//!   storage plus intermediate results); `max_memory_bytes` bounds the
//!   estimated bytes of the same (labels, samples and per-series overhead of
//!   what is read from storage, plus 16 bytes per intermediate sample), so a
//!   query over millions of series fails with an `execution` error instead
//!   of exhausting the process. The deadline and a per-query cancel flag
//!   ([`QueryOptions::cancel`]) are checked at every node, every 256 series
//!   read and while walking steps, so a timed-out or abandoned query frees
//!   its thread promptly.
//!
//! Parse errors are Prometheus's: `1:14: parse error: unexpected ...`,
//! with the same wording and position as Prometheus's parser and type
//! checks.
//!
//! * **Native histograms beside floats.** A series of an intermediate
//!   result keeps its float points and its histogram points in two vectors
//!   (Prometheus's `Series{Floats, Histograms}`), and an instant-vector
//!   element carries an optional shared histogram. Float-only queries pay
//!   one empty vector per series and never touch histogram code. The
//!   arithmetic (schema and zero-bucket reconciliation, Kahan sums,
//!   counter-reset detection, trimming, bucket bounds) is
//!   `pharos_model::histogram`'s, the one implementation shared with
//!   storage, so results match Prometheus's to the bit; only what is
//!   PromQL's own (quantiles, fractions, variance, the running mean of
//!   `avg`) lives in the private `hist` module. Histograms reached only
//!   through `histogram_count`/`_sum`/
//!   `_avg` are read as Prometheus's `HistogramStatsIterator` returns them
//!   (no buckets, counter-reset hints detected on the fly), because
//!   annotations depend on those hints.
//! * **Parsing.** Our own parser (module `parser`, after Prometheus's
//!   lexer, grammar and type checks, with `line:col` error positions)
//!   builds promql-parser's AST, which the planner consumes. What that AST
//!   cannot hold travels beside it: the trim operators `</` and `>/`
//!   (appearing in the tree as `<`/`>`, mapped back by their order in the
//!   text) and the `anchored`/`smoothed` modifiers (by text offset).
//!
//! * **Extended range selectors.** The experimental `anchored` and
//!   `smoothed` modifiers are given to the selector they follow; their windows reach one lookback
//!   delta beyond the range, and rate/increase/delta/resets/changes use
//!   Prometheus's `extendedRate` semantics (no extrapolation).
//!
//! * **Duration expressions.** Arithmetic in ranges, subquery steps and
//!   offsets (`[5m+30s]`, `offset -step()`) is evaluated by the parser
//!   into plain durations, since the query's step and range are known by
//!   then (without them, as for `format_query`, `step()` and `range()`
//!   there are errors).
//!
//! * **`info()`.** The experimental function is evaluated as Prometheus's
//!   `evalInfo` (a second select for the info series matching the
//!   identifying labels). Its label selector may consist of matchers that
//!   all accept the empty string (the parser allows that there only).

mod aggregate;
// The earlier text rewriting of duration expressions, kept as the oracle
// of the parser's equivalence test.
#[cfg(test)]
mod durexpr;
mod eval;
mod functions;
mod hist;
mod parser;
mod plan;
mod quantile;
mod value;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use pharos_model::histogram::FloatHistogram;
use pharos_model::{Labels, Matcher, Sample};
use pharos_storage::StorageError;

use crate::eval::{Evaluator, Shared, dup_labelset_error};
use crate::plan::{Node, PlanCtx, VType};
use crate::value::{Series, Val, drop_metadata};

/// Options of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Maximum wall time of one query.
    pub timeout: std::time::Duration,
    /// Maximum number of samples a query may hold in memory at once.
    pub max_samples: usize,
    /// How far back an instant vector selector looks for a sample, in ms.
    pub lookback_delta: i64,
    /// Allow functions Prometheus marks experimental (`sort_by_label`,
    /// `limitk`, `mad_over_time`, ...); they are a parse error otherwise.
    pub enable_experimental_functions: bool,
    /// Step of subqueries written without one (`x[1h:]`), in ms. Prometheus
    /// uses the global evaluation interval.
    pub no_step_subquery_interval: i64,
    /// Per-query memory budget in bytes (estimated, see the crate docs); 0
    /// means unlimited. Exceeding it fails the query with
    /// [`QueryError::MemoryLimit`].
    pub max_memory_bytes: usize,
}

/// Options of one query, overriding the engine's where set.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Lookback delta in ms for this query (the API's `lookback_delta`);
    /// `None` or 0 uses the engine's.
    pub lookback_delta: Option<i64>,
    /// A deadline earlier than the engine's timeout (the API's `timeout`
    /// parameter, counted from when the request arrived).
    pub deadline: Option<Instant>,
    /// Stops the query with [`QueryError::Canceled`] once set to `true` by
    /// another thread (for example when the HTTP client went away). The
    /// engine polls it at every node and every 256 series.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What one query cost, as Prometheus's `stats` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueryStats {
    /// Parsing and planning time, in seconds (`queryPreparationTime`).
    pub prepare_secs: f64,
    /// Evaluation of the expression tree, in seconds (`innerEvalTime`).
    pub inner_eval_secs: f64,
    /// Turning the evaluation's output into the result (name removal,
    /// sorting), in seconds (`resultSortTime`).
    pub result_sort_secs: f64,
    /// The whole engine call, in seconds (`evalTotalTime`).
    pub eval_total_secs: f64,
    /// Samples read from storage (`totalQueryableSamples`).
    pub total_queryable_samples: u64,
    /// The most samples held at once (`peakSamples`).
    pub peak_samples: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            timeout: std::time::Duration::from_secs(120),
            max_samples: 50_000_000,
            lookback_delta: 5 * 60 * 1000,
            enable_experimental_functions: false,
            no_step_subquery_interval: 60_000,
            max_memory_bytes: 0,
        }
    }
}

/// The PromQL engine. Stateless apart from its options; share it freely.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// The outcome of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warnings (annotations of level warning), Prometheus phrasing.
    pub warnings: Vec<String>,
    /// Informational annotations.
    pub infos: Vec<String>,
    /// What the query cost.
    pub stats: QueryStats,
}

/// A PromQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at a time.
    Scalar {
        /// Timestamp (ms).
        t: i64,
        /// Value.
        v: f64,
    },
    /// A string at a time.
    String {
        /// Timestamp (ms).
        t: i64,
        /// Value.
        v: String,
    },
    /// An instant vector.
    Vector(Vec<VectorSample>),
    /// A range vector (range query results, or matrix selectors).
    Matrix(Vec<RangeSeries>),
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// Series labels.
    pub metric: Labels,
    /// Timestamp (ms).
    pub t: i64,
    /// Value (unused when `h` is set).
    pub v: f64,
    /// The native histogram, when the element is a histogram rather than a
    /// float.
    pub h: Option<Box<FloatHistogram>>,
}

/// One series of a range vector. A series may hold floats and native
/// histograms at different times (as Prometheus's `Series{Floats,
/// Histograms}`).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// Series labels.
    pub metric: Labels,
    /// Float samples in time order.
    pub samples: Vec<Sample>,
    /// Native-histogram samples `(t, histogram)` in time order.
    pub histograms: Vec<(i64, FloatHistogram)>,
}

/// One bucket of a native histogram as the query API lists it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramBucket {
    /// Which bounds are inclusive, as Prometheus's JSON encodes it:
    /// 0 = `(lower, upper]`, 1 = `[lower, upper)`, 2 = `(lower, upper)`,
    /// 3 = `[lower, upper]`.
    pub boundaries: u8,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Observations in the bucket.
    pub count: f64,
}

/// The buckets of `h` in ascending order of value (negative buckets, the
/// zero bucket when populated, positive buckets), with bounds clipped to
/// the zero bucket, as Prometheus's `AllBucketIterator`. Empty buckets are
/// included.
pub fn histogram_buckets(h: &FloatHistogram) -> Vec<HistogramBucket> {
    h.all_buckets()
        .map(|b| HistogramBucket {
            boundaries: match (b.lower_inclusive, b.upper_inclusive) {
                (true, true) => 3,
                (true, false) => 1,
                (false, true) => 0,
                (false, false) => 2,
            },
            lower: b.lower,
            upper: b.upper,
            count: b.count,
        })
        .collect()
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query text is not valid PromQL.
    #[error("{0}")]
    Parse(String),
    /// The query ran longer than the timeout.
    #[error("{0}")]
    Timeout(String),
    /// The query was canceled.
    #[error("query was canceled")]
    Canceled,
    /// The query would hold more samples than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query would use more memory than its budget.
    #[error(
        "query processing would use more than the per-query memory budget of {limit} bytes (--query.max-memory-bytes)"
    )]
    MemoryLimit {
        /// The budget in bytes.
        limit: usize,
    },
    /// Evaluation failed.
    #[error("{0}")]
    Execution(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// Prometheus's API `errorType` for this error: `bad_data`, `timeout`,
    /// `canceled`, `execution` or `internal`.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse(_) => "bad_data",
            QueryError::Timeout(_) => "timeout",
            QueryError::Canceled => "canceled",
            QueryError::TooManySamples
            | QueryError::MemoryLimit { .. }
            | QueryError::Execution(_) => "execution",
            QueryError::Storage(_) => "internal",
        }
    }
}

impl Engine {
    /// A new engine.
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at time `ts` (ms). The result is a scalar, string,
    /// instant vector or (for range-vector expressions) a matrix.
    pub fn instant_query(
        &self,
        q: &dyn pharos_storage::Queryable,
        query: &str,
        ts: i64,
    ) -> Result<QueryResult, QueryError> {
        self.exec(q, query, ts, ts, 0, &QueryOptions::default())
    }

    /// [`Engine::instant_query`] with per-query options.
    pub fn instant_query_with(
        &self,
        q: &dyn pharos_storage::Queryable,
        query: &str,
        ts: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        self.exec(q, query, ts, ts, 0, opts)
    }

    /// [`Engine::range_query`] with per-query options.
    pub fn range_query_with(
        &self,
        q: &dyn pharos_storage::Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        if step <= 0 {
            return Err(QueryError::Parse(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(QueryError::Parse(
                "end timestamp must not be before start time".into(),
            ));
        }
        self.exec(q, query, start, end, step, opts)
    }

    /// Evaluates `query` over `[start, end]` every `step` ms. The result is
    /// always a [`Value::Matrix`] sorted by labels; only scalar and
    /// instant-vector expressions are allowed.
    pub fn range_query(
        &self,
        q: &dyn pharos_storage::Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        self.range_query_with(q, query, start, end, step, &QueryOptions::default())
    }

    fn exec(
        &self,
        q: &dyn pharos_storage::Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        qopts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let began = Instant::now();
        let mut deadline = began + self.opts.timeout;
        if let Some(d) = qopts.deadline {
            deadline = deadline.min(d);
        }
        let is_range = step > 0;
        let lookback = match qopts.lookback_delta {
            Some(l) if l > 0 => l,
            _ if self.opts.lookback_delta > 0 => self.opts.lookback_delta,
            _ => 5 * 60 * 1000,
        };
        let dctx = parser::DurCtx {
            step,
            range: end - start,
        };
        let (expr, trims, modes) = parse_expr_rewritten(query, Some(dctx))?;
        let mut ctx = PlanCtx::new(
            query,
            start,
            end,
            lookback,
            self.opts.no_step_subquery_interval.max(1),
            self.opts.enable_experimental_functions,
        );
        ctx.trims = trims;
        ctx.modes = modes;
        let node = plan::convert(&expr, &mut ctx)?;
        let vt = node.vtype();
        if is_range && vt != VType::Scalar && vt != VType::Vector {
            return Err(QueryError::Parse(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                vt.documented()
            )));
        }
        let (mint, maxt) = selector_bounds(&node).unwrap_or((0, 0));
        let querier = q.querier(mint, maxt)?;
        let shared = Shared {
            querier: querier.as_ref(),
            query,
            lookback,
            max_samples: self.opts.max_samples,
            deadline,
            cache: RefCell::new(HashMap::new()),
            annos: RefCell::new(Default::default()),
            is_range,
            q_start: start,
            q_end: end,
            q_step: step,
            loaded: std::cell::Cell::new(0),
            total_loaded: std::cell::Cell::new(0),
            peak: std::cell::Cell::new(0),
            loaded_bytes: std::cell::Cell::new(0),
            max_memory: self.opts.max_memory_bytes,
            cancel: qopts.cancel.as_deref(),
        };
        let prepared = Instant::now();
        let mut ev = Evaluator {
            sh: &shared,
            start,
            end,
            interval: if is_range { step } else { 1 },
            cur: 0,
        };
        let val = ev.eval(&node)?;
        let evaluated = Instant::now();
        let value = finish(val, vt, start, is_range)?;
        let done = Instant::now();
        let stats = QueryStats {
            prepare_secs: (prepared - began).as_secs_f64(),
            inner_eval_secs: (evaluated - prepared).as_secs_f64(),
            result_sort_secs: (done - evaluated).as_secs_f64(),
            eval_total_secs: (done - began).as_secs_f64(),
            total_queryable_samples: shared.total_loaded.get(),
            peak_samples: shared.peak.get(),
        };
        let annos = shared.annos.into_inner();
        Ok(QueryResult {
            value,
            warnings: annos.warnings,
            infos: annos.infos,
            stats,
        })
    }
}

/// Parses `query` into promql-parser's AST (for the API's `format_query`
/// and `parse_query`), with the same fixes and error wording as the engine.
/// The AST has no trim operators and no `anchored`/`smoothed`: `</` and
/// `>/` appear in it as `<` and `>`, and the modifiers are missing (use
/// [`format_query`] to print a query back).
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    parse_expr(query)
}

/// The query reformatted by promql-parser's pretty printer (Prometheus's
/// `Pretty(0)`: one line when short, indented over lines when long).
pub fn format_query(query: &str) -> Result<String, QueryError> {
    let (e, trims, modes) = parse_expr_rewritten(query, None)?;
    if !modes.is_empty() {
        // promql-parser's printer cannot place `anchored`/`smoothed`;
        // the valid query is returned as written.
        return Ok(query.trim().to_string());
    }
    let text = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || e.prettify()))
        .map_err(|_| QueryError::Execution(format!("could not format query {query:?}")))?;
    Ok(restore_trims(&text, &trims))
}

/// Puts the trim operators back into printed text: the printer keeps the
/// operators' order, so the k-th `<`/`>` operator is a trim when the k-th
/// of the original text was.
fn restore_trims(text: &str, trims: &[bool]) -> String {
    if !trims.contains(&true) {
        return text.to_string();
    }
    let chars = code_chars(text);
    let mut at: Vec<usize> = Vec::new();
    let mut k = 0;
    for (n, &(i, c)) in chars.iter().enumerate() {
        if c != '<' && c != '>' {
            continue;
        }
        if matches!(chars.get(n + 1), Some(&(j, '=')) if j == i + 1) {
            continue;
        }
        if trims.get(k) == Some(&true) {
            at.push(i + 1);
        }
        k += 1;
    }
    let mut out = text.to_string();
    for i in at.into_iter().rev() {
        out.insert(i, '/');
    }
    out
}

/// Parses `query` with our parser (module `parser`).
fn parse_expr(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    parse_expr_rewritten(query, None).map(|(e, _, _)| e)
}

/// Parsed expression, trim flags and `anchored`/`smoothed` keywords.
type Rewritten = (
    promql_parser::parser::Expr,
    Vec<bool>,
    Vec<(usize, plan::SelMode)>,
);

/// [`parse_expr`] that also reports the trim operators and the
/// experimental `anchored`/`smoothed` selector modifiers, which
/// promql-parser's tree cannot hold. Duration expressions are evaluated
/// with `dctx`, the query's step and range.
fn parse_expr_rewritten(
    query: &str,
    dctx: Option<parser::DurCtx>,
) -> Result<Rewritten, QueryError> {
    parse_expr_inner(query, dctx)
}

/// The label name of a placeholder matcher the evaluator ignores in
/// `info()`'s label selector (the parser accepts selectors whose matchers
/// all match the empty string there, as Prometheus's does, so none is
/// added any more).
pub(crate) const INFO_PLACEHOLDER: &str = "__pharos_info__";

/// The single switch point to the parser.
fn parse_expr_inner(query: &str, dctx: Option<parser::DurCtx>) -> Result<Rewritten, QueryError> {
    let p = parser::parse_query_for(query, dctx).map_err(QueryError::Parse)?;
    Ok((p.expr, p.trims, p.modes))
}

/// Byte offsets of `s` outside quoted strings and comments, with the char.
fn code_chars(s: &str) -> Vec<(usize, char)> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            '"' | '\'' | '`' => {
                while let Some((_, d)) = it.next() {
                    if d == '\\' && c != '`' {
                        it.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                for (_, d) in it.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            c => out.push((i, c)),
        }
    }
    out
}

/// The time range every selector of the query reads, for the querier.
fn selector_bounds(n: &Node) -> Option<(i64, i64)> {
    fn walk(n: &Node, acc: &mut Option<(i64, i64)>) {
        let mut add = |s: &plan::Selector| {
            let (lo, hi) = acc.unwrap_or((i64::MAX, i64::MIN));
            *acc = Some((lo.min(s.fetch_start), hi.max(s.fetch_end)));
        };
        match n {
            Node::VectorSel(s) | Node::MatrixSel { sel: s, .. } => add(s),
            Node::Subquery { expr, .. } | Node::Neg(expr) => walk(expr, acc),
            Node::Binary { lhs, rhs, .. } => {
                walk(lhs, acc);
                walk(rhs, acc);
            }
            Node::Aggregate { expr, param, .. } => {
                walk(expr, acc);
                if let Some(p) = param {
                    walk(p, acc);
                }
            }
            Node::Call { args, .. } => {
                for a in args {
                    walk(a, acc);
                }
            }
            Node::Number(_) | Node::Str(_) => {}
        }
    }
    let mut acc = None;
    walk(n, &mut acc);
    acc
}

/// Turns the evaluator's output into the API value, removing metric names
/// where the evaluation asked for it (delayed name removal).
fn finish(val: Val, vt: VType, start: i64, is_range: bool) -> Result<Value, QueryError> {
    let mat = match val {
        Val::Str(s) => return Ok(Value::String { t: start, v: s }),
        Val::Matrix(m) => m,
    };
    if !is_range {
        match vt {
            VType::Scalar => {
                let v = mat
                    .first()
                    .and_then(|s| s.points.first())
                    .map(|p| p.v)
                    .unwrap_or(f64::NAN);
                return Ok(Value::Scalar { t: start, v });
            }
            VType::Vector => {
                let mut out = Vec::with_capacity(mat.len());
                let mut seen = std::collections::HashSet::with_capacity(mat.len());
                for s in mat {
                    let metric = if s.drop_name {
                        drop_metadata(&s.metric)
                    } else {
                        s.metric
                    };
                    if !seen.insert(metric.clone()) {
                        return Err(dup_labelset_error());
                    }
                    if let Some(p) = s.points.first() {
                        out.push(VectorSample {
                            metric,
                            t: start,
                            v: p.v,
                            h: None,
                        });
                    } else if let Some(p) = s.hists.first() {
                        out.push(VectorSample {
                            metric,
                            t: start,
                            v: p.h.sum,
                            h: Some(Box::new((*p.h).clone())),
                        });
                    }
                }
                return Ok(Value::Vector(out));
            }
            _ => {}
        }
    }
    let mut mat: Vec<Series> = mat
        .into_iter()
        .map(|mut s| {
            if s.drop_name {
                s.metric = drop_metadata(&s.metric);
            }
            s
        })
        .collect();
    mat = functions::merge_same_labelset(mat)?;
    mat.sort_by(|a, b| a.metric.cmp(&b.metric));
    Ok(Value::Matrix(
        mat.into_iter()
            .map(|s| RangeSeries {
                metric: s.metric,
                samples: s.points,
                histograms: s.hists.into_iter().map(|p| (p.t, (*p.h).clone())).collect(),
            })
            .collect(),
    ))
}

/// Parses a series selector (`up{job="x"}`, as in `/api/v1/series`'s
/// `match[]`) into matchers.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, QueryError> {
    let expr = parse_expr(s)?;
    let vs = match &expr {
        promql_parser::parser::Expr::VectorSelector(vs) => vs,
        _ => {
            return Err(QueryError::Parse(format!(
                "invalid series selector {s:?}: expected a vector selector"
            )));
        }
    };
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(QueryError::Parse(format!(
            "invalid series selector {s:?}: offset and @ are not allowed"
        )));
    }
    let mut ctx = PlanCtx::new(s, 0, 0, 1, 1, true);
    match plan::convert(&expr, &mut ctx)? {
        Node::VectorSel(sel) => {
            let mut sets = sel.matcher_sets;
            if sets.len() != 1 {
                return Err(QueryError::Parse(format!(
                    "invalid series selector {s:?}: 'or' is not supported here"
                )));
            }
            Ok(sets.remove(0))
        }
        _ => Err(QueryError::Parse(format!("invalid series selector {s:?}"))),
    }
}

#[cfg(test)]
mod tests;
