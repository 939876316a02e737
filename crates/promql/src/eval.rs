//! The evaluator: every node is evaluated once over all steps of the query
//! (Prometheus's `rangeEval` model) and yields a matrix with one point per
//! step and series.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use pharos_model::{Labels, Sample, is_stale_nan, stale_nan};
use pharos_storage::{Querier, SelectHints};

use crate::QueryError;
use crate::plan::{AggOp, BinOp, Card, Node, Selector, VType, VectorMatching, position_string};
use crate::value::{
    Elem, FastMap, FastSet, H, HPoint, Series, Val, del_labels, drop_metadata, format_g,
    keep_labels, set_label,
};

pub(crate) type R<T> = Result<T, QueryError>;

/// Deduplicated annotations, rendered as the API shows them.
#[derive(Default)]
pub(crate) struct Annotations {
    seen: HashSet<String>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    fn add(&mut self, warn: bool, msg: String) {
        if self.seen.insert(msg.clone()) {
            if warn {
                self.warnings.push(msg);
            } else {
                self.infos.push(msg);
            }
        }
    }
}

/// One series as read from storage.
pub(crate) struct RawSeries {
    pub labels: Labels,
    /// Float samples (stale markers of histogram series included as
    /// stale floats).
    pub samples: Vec<Sample>,
    /// Native-histogram samples.
    pub hists: Vec<HPoint>,
    /// The series comes from a subquery whose result drops its name.
    pub drop_name: bool,
}

/// State shared by the evaluator and its sub-evaluators (subqueries).
pub(crate) struct Shared<'a> {
    pub querier: &'a dyn Querier,
    pub query: &'a str,
    pub lookback: i64,
    pub max_samples: usize,
    pub deadline: Instant,
    pub cache: RefCell<HashMap<usize, Rc<Vec<RawSeries>>>>,
    pub annos: RefCell<Annotations>,
    /// The top-level query is a range query.
    pub is_range: bool,
    /// Query start, end and step (ms; step 0 for instant queries), for
    /// `start()`, `end()`, `range()` and `step()`.
    pub q_start: i64,
    pub q_end: i64,
    pub q_step: i64,
    /// Samples read from storage and held for the query's lifetime. Unlike
    /// Prometheus, which streams each series, selectors load their samples
    /// up front, so these count against `max_samples` too.
    pub loaded: std::cell::Cell<usize>,
    /// Samples ever read from storage (for stats; never decreases).
    pub total_loaded: std::cell::Cell<u64>,
    /// The most samples held at once (`loaded` plus an evaluator's `cur`).
    pub peak: std::cell::Cell<usize>,
    /// Estimated bytes of the series read from storage (labels, samples
    /// and per-series overhead), held for the query's lifetime.
    pub loaded_bytes: std::cell::Cell<usize>,
    /// The per-query memory budget in bytes (0: unlimited).
    pub max_memory: usize,
    /// Set by another thread to stop the query (client gone, API timeout).
    pub cancel: Option<&'a AtomicBool>,
}

/// Estimated bytes of one sample held in a series (`t` and `v`).
pub(crate) const SAMPLE_BYTES: usize = 16;
/// Estimated fixed bytes of one series held in memory (labels handle,
/// sample vector header, flags, allocator slack).
pub(crate) const SERIES_OVERHEAD_BYTES: usize = 64;

impl Shared<'_> {
    /// Fails when the estimated memory of the query (series read from
    /// storage plus `cur` intermediate samples) exceeds the budget.
    pub(crate) fn check_memory(&self, cur: usize) -> R<()> {
        let held = self.loaded.get() + cur;
        if held > self.peak.get() {
            self.peak.set(held);
        }
        if self.max_memory == 0 {
            return Ok(());
        }
        let bytes = self.loaded_bytes.get() + cur * SAMPLE_BYTES;
        if bytes > self.max_memory {
            return Err(QueryError::MemoryLimit {
                limit: self.max_memory,
            });
        }
        Ok(())
    }
}

/// An annotation to report: warning or info, and its message (without
/// the `PromQL warning: ` prefix and position).
#[derive(Debug, Clone)]
pub(crate) enum Anno {
    Warn(String),
    Info(String),
}

impl Shared<'_> {
    /// Reports `a` at text position `pos`.
    pub(crate) fn annotate(&self, a: Anno, pos: usize) {
        match a {
            Anno::Warn(m) => self.warn(&m, pos),
            Anno::Info(m) => self.info(&m, pos),
        }
    }

    pub(crate) fn warn(&self, msg: &str, pos: usize) {
        let m = format!(
            "PromQL warning: {msg} ({})",
            position_string(self.query, pos)
        );
        self.annos.borrow_mut().add(true, m);
    }
    pub(crate) fn info(&self, msg: &str, pos: usize) {
        let m = format!("PromQL info: {msg} ({})", position_string(self.query, pos));
        self.annos.borrow_mut().add(false, m);
    }
}

/// Evaluates expressions over the steps `start..=end` every `interval`.
pub(crate) struct Evaluator<'s, 'a> {
    pub sh: &'s Shared<'a>,
    pub start: i64,
    pub end: i64,
    pub interval: i64,
    /// Samples currently held in memory (Prometheus's `currentSamples`).
    pub cur: usize,
}

const TOO_MANY: QueryError = QueryError::TooManySamples;

pub(crate) fn dup_labelset_error() -> QueryError {
    QueryError::Execution("vector cannot contain metrics with the same labelset".into())
}

impl<'s, 'a> Evaluator<'s, 'a> {
    pub(crate) fn steps(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        ((self.end - self.start) / self.interval) as usize + 1
    }

    pub(crate) fn ts_at(&self, i: usize) -> i64 {
        self.start + i as i64 * self.interval
    }

    pub(crate) fn check_time(&self) -> R<()> {
        if let Some(c) = self.sh.cancel
            && c.load(Ordering::Relaxed)
        {
            return Err(QueryError::Canceled);
        }
        if Instant::now() > self.sh.deadline {
            return Err(QueryError::Timeout(
                "query timed out in expression evaluation".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn add_samples(&mut self, n: usize) -> R<()> {
        self.cur += n;
        if self.cur > self.sh.max_samples {
            return Err(TOO_MANY);
        }
        self.sh.check_memory(self.cur)
    }

    /// Evaluates `node` to a matrix (errors on strings, which the parser's
    /// type checks rule out where a matrix is needed).
    pub(crate) fn eval_matrix(&mut self, node: &Node) -> R<Vec<Series>> {
        match self.eval(node)? {
            Val::Matrix(m) => Ok(m),
            Val::Str(_) => Err(QueryError::Execution(
                "unexpected string where a vector or scalar was expected".into(),
            )),
        }
    }

    /// Evaluates a scalar-typed node to one value per step.
    pub(crate) fn eval_scalar_steps(&mut self, node: &Node) -> R<Vec<f64>> {
        let n = self.steps();
        if let Node::Number(v) = node {
            return Ok(vec![*v; n]);
        }
        let m = self.eval_matrix(node)?;
        let mut out = vec![f64::NAN; n];
        if let Some(s) = m.first() {
            for p in &s.points {
                let i = ((p.t - self.start) / self.interval) as usize;
                if let Some(slot) = out.get_mut(i) {
                    *slot = p.v;
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn eval(&mut self, node: &Node) -> R<Val> {
        self.check_time()?;
        if self.end < self.start {
            return Ok(Val::Matrix(Vec::new()));
        }
        match node {
            Node::Number(v) => {
                let n = self.steps();
                let pts: Vec<Sample> = (0..n)
                    .map(|i| Sample {
                        t: self.ts_at(i),
                        v: *v,
                    })
                    .collect();
                self.add_samples(pts.len())?;
                Ok(Val::Matrix(vec![Series::floats(
                    Labels::empty(),
                    pts,
                    false,
                )]))
            }
            Node::Str(s) => Ok(Val::Str(s.clone())),
            Node::VectorSel(sel) => Ok(Val::Matrix(self.eval_vector_selector(sel)?)),
            Node::MatrixSel { sel, range } => {
                // Only reachable at the top of an instant query.
                Ok(Val::Matrix(self.eval_matrix_selector(sel, *range)?))
            }
            Node::Subquery {
                expr,
                range,
                step,
                offset,
                at,
                ..
            } => Ok(Val::Matrix(
                self.eval_subquery(expr, *range, *step, *offset, *at)?,
            )),
            Node::Neg(e) => {
                let mut m = self.eval_matrix(e)?;
                for s in &mut m {
                    s.drop_name = true;
                    for p in &mut s.points {
                        p.v = -p.v;
                    }
                    for p in &mut s.hists {
                        let mut h = (*p.h).clone();
                        h.mul(-1.0);
                        p.h = H::new(h);
                    }
                }
                Ok(Val::Matrix(m))
            }
            Node::Binary {
                op,
                lhs,
                rhs,
                matching,
                return_bool,
                pos,
            } => Ok(Val::Matrix(self.eval_binary(
                *op,
                lhs,
                rhs,
                matching,
                *return_bool,
                *pos,
            )?)),
            Node::Aggregate {
                op,
                expr,
                param,
                grouping,
                without,
                param_pos,
                pos,
            } => Ok(Val::Matrix(self.eval_aggregate(
                *op,
                expr,
                param.as_deref(),
                grouping,
                *without,
                (*param_pos, *pos),
            )?)),
            Node::Call {
                func,
                args,
                pos,
                arg_pos,
            } => Ok(Val::Matrix(self.eval_call(func, args, *pos, arg_pos)?)),
        }
    }

    // ---------------------------------------------------------------
    // Selectors.

    /// Reads (once per query) the series of a selector.
    pub(crate) fn fetch(&self, sel: &Selector, for_range: bool) -> R<Rc<Vec<RawSeries>>> {
        if let Some(c) = self.sh.cache.borrow().get(&sel.id) {
            return Ok(c.clone());
        }
        let hints = SelectHints {
            start: sel.fetch_start,
            end: sel.fetch_end,
            step: self.interval,
            func: None,
            range: 0,
        };
        let mut out: Vec<RawSeries> = Vec::new();
        for set in &sel.matcher_sets {
            let mut ss = self.sh.querier.select(true, Some(&hints), set);
            let mut n = 0usize;
            while let Some(s) = ss.next() {
                n += 1;
                if n.is_multiple_of(256) {
                    self.check_time()?;
                }
                let mut it = s.samples;
                let mut samples = Vec::new();
                let mut hists = Vec::new();
                let mut cur = it.seek(sel.fetch_start);
                while let Some(smp) = cur {
                    if smp.t > sel.fetch_end {
                        break;
                    }
                    if !(for_range && is_stale_nan(smp.v)) {
                        match it.histogram() {
                            Some(h) if !is_stale_nan(h.sum) => hists.push(HPoint {
                                t: smp.t,
                                h: H::new(h.clone()),
                            }),
                            Some(_) => samples.push(Sample {
                                t: smp.t,
                                v: stale_nan(),
                            }),
                            None => samples.push(smp),
                        }
                    }
                    cur = it.next();
                }
                if sel.stats_only && !hists.is_empty() {
                    stats_only_histograms(&mut hists);
                }
                let nsamples = samples.len() + hists.len();
                if let Some(e) = it.err() {
                    return Err(QueryError::Storage(e));
                }
                let loaded = self.sh.loaded.get() + nsamples;
                self.sh.loaded.set(loaded);
                self.sh
                    .total_loaded
                    .set(self.sh.total_loaded.get() + nsamples as u64);
                if loaded > self.sh.max_samples {
                    return Err(TOO_MANY);
                }
                if nsamples > 0 {
                    self.sh.loaded_bytes.set(
                        self.sh.loaded_bytes.get()
                            + s.labels.encoded_len()
                            + samples.capacity() * SAMPLE_BYTES
                            + hists.iter().map(|p| hist_bytes(&p.h)).sum::<usize>()
                            + SERIES_OVERHEAD_BYTES,
                    );
                    self.sh.check_memory(self.cur)?;
                    out.push(RawSeries {
                        labels: s.labels,
                        samples,
                        hists,
                        drop_name: false,
                    });
                }
            }
            if let Some(e) = ss.err() {
                return Err(QueryError::Storage(e));
            }
        }
        if sel.matcher_sets.len() > 1 {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            out.dedup_by(|a, b| a.labels == b.labels);
        }
        let rc = Rc::new(out);
        self.sh.cache.borrow_mut().insert(sel.id, rc.clone());
        Ok(rc)
    }

    fn eval_vector_selector(&mut self, sel: &Selector) -> R<Vec<Series>> {
        if sel.mode == crate::plan::SelMode::Smoothed {
            return self.eval_smoothed_selector(sel);
        }
        let raw = self.fetch(sel, false)?;
        let n = self.steps();
        let lookback = self.sh.lookback;
        let mut out = Vec::with_capacity(raw.len());
        for (k, rs) in raw.iter().enumerate() {
            if k % 256 == 0 {
                self.check_time()?;
            }
            let samples = &rs.samples;
            let hs = &rs.hists;
            let mut pts = Vec::new();
            let mut hpts = Vec::new();
            let first_rt = sel.at.unwrap_or(self.start) - sel.offset;
            // Index of the first sample after the reference time.
            let mut idx = samples.partition_point(|s| s.t <= first_rt);
            let mut hidx = hs.partition_point(|s| s.t <= first_rt);
            for i in 0..n {
                let ts = self.ts_at(i);
                let rt = sel.at.unwrap_or(ts) - sel.offset;
                while idx < samples.len() && samples[idx].t <= rt {
                    idx += 1;
                }
                while hidx < hs.len() && hs[hidx].t <= rt {
                    hidx += 1;
                }
                let ft = if idx == 0 {
                    i64::MIN
                } else {
                    samples[idx - 1].t
                };
                let ht = if hidx == 0 { i64::MIN } else { hs[hidx - 1].t };
                if ht > ft {
                    if ht > rt - lookback {
                        hpts.push(HPoint {
                            t: ts,
                            h: hs[hidx - 1].h.clone(),
                        });
                    }
                    continue;
                }
                if idx == 0 {
                    continue;
                }
                let s = samples[idx - 1];
                if s.t <= rt - lookback || is_stale_nan(s.v) {
                    continue;
                }
                pts.push(Sample { t: ts, v: s.v });
            }
            self.add_samples(pts.len() + hpts.len())?;
            if !pts.is_empty() || !hpts.is_empty() {
                out.push(Series {
                    metric: rs.labels.clone(),
                    points: pts,
                    hists: hpts,
                    drop_name: false,
                });
            }
        }
        Ok(out)
    }

    /// The sample a vector selector sees at reference time `rt`.
    pub(crate) fn lookup(samples: &[Sample], rt: i64, lookback: i64) -> Option<Sample> {
        let idx = samples.partition_point(|s| s.t <= rt);
        if idx == 0 {
            return None;
        }
        let s = samples[idx - 1];
        if s.t <= rt - lookback || is_stale_nan(s.v) {
            return None;
        }
        Some(s)
    }

    fn eval_matrix_selector(&mut self, sel: &Selector, range: i64) -> R<Vec<Series>> {
        if sel.mode != crate::plan::SelMode::Plain {
            return self.eval_extended_matrix(sel, range);
        }
        let raw = self.fetch(sel, true)?;
        let rt = sel.at.unwrap_or(self.start) - sel.offset;
        let mut out = Vec::new();
        for rs in raw.iter() {
            let lo = rs.samples.partition_point(|s| s.t <= rt - range);
            let hi = rs.samples.partition_point(|s| s.t <= rt);
            let hlo = rs.hists.partition_point(|s| s.t <= rt - range);
            let hhi = rs.hists.partition_point(|s| s.t <= rt);
            if lo < hi || hlo < hhi {
                let pts = rs.samples[lo..hi].to_vec();
                let hpts = rs.hists[hlo..hhi].to_vec();
                self.add_samples(pts.len() + hpts.len())?;
                out.push(Series {
                    metric: rs.labels.clone(),
                    points: pts,
                    hists: hpts,
                    drop_name: false,
                });
            }
        }
        Ok(out)
    }

    fn eval_subquery(
        &mut self,
        expr: &Node,
        range: i64,
        step: i64,
        offset: i64,
        at: Option<i64>,
    ) -> R<Vec<Series>> {
        let (base_start, base_end) = match at {
            Some(t) => (t, t),
            None => (self.start, self.end),
        };
        let lower = base_start - offset - range;
        let mut start = step * lower.div_euclid(step);
        if start <= lower {
            start += step;
        }
        let mut sub = Evaluator {
            sh: self.sh,
            start,
            end: base_end - offset,
            interval: step,
            cur: self.cur,
        };
        let m = sub.eval_matrix(expr)?;
        self.cur = sub.cur;
        Ok(m)
    }

    // ---------------------------------------------------------------
    // The step loop.

    /// Runs `f` once per step over the instant vectors of `inputs` at that
    /// step and assembles the outputs into series. `sigs[k][i]` is the match
    /// signature ordinal of series `i` of input `k` (for binary operators);
    /// the per-step signatures are passed to `f` alongside the vectors.
    pub(crate) fn range_eval<F>(
        &mut self,
        inputs: &[Vec<Series>],
        sigs: Option<&[Vec<usize>]>,
        mut f: F,
    ) -> R<Vec<Series>>
    where
        F: FnMut(i64, &[Vec<Elem>], &[Vec<usize>]) -> R<Vec<Elem>>,
    {
        let n = self.steps();
        let mut cursors: Vec<Vec<usize>> = inputs.iter().map(|m| vec![0; m.len()]).collect();
        let mut hcursors: Vec<Vec<usize>> = inputs.iter().map(|m| vec![0; m.len()]).collect();
        let mut vecs: Vec<Vec<Elem>> = inputs.iter().map(|m| Vec::with_capacity(m.len())).collect();
        let mut vsigs: Vec<Vec<usize>> = vec![Vec::new(); inputs.len()];
        let mut out: Vec<Series> = Vec::new();
        let mut index: FastMap<Labels, (usize, i64)> = FastMap::default();
        let orig = self.cur;
        let mut temp = self.cur;
        let instant = self.start == self.end;
        for step in 0..n {
            self.check_time()?;
            let ts = self.ts_at(step);
            self.cur = temp;
            for (k, m) in inputs.iter().enumerate() {
                vecs[k].clear();
                vsigs[k].clear();
                for (si, s) in m.iter().enumerate() {
                    let c = &mut cursors[k][si];
                    while *c < s.points.len() && s.points[*c].t < ts {
                        *c += 1;
                    }
                    if *c < s.points.len() && s.points[*c].t == ts {
                        vecs[k].push(Elem {
                            metric: s.metric.clone(),
                            t: ts,
                            v: s.points[*c].v,
                            h: None,
                            drop_name: s.drop_name,
                        });
                        if let Some(sg) = sigs {
                            vsigs[k].push(sg[k][si]);
                        }
                        *c += 1;
                    } else if !s.hists.is_empty() {
                        let c = &mut hcursors[k][si];
                        while *c < s.hists.len() && s.hists[*c].t < ts {
                            *c += 1;
                        }
                        if *c < s.hists.len() && s.hists[*c].t == ts {
                            let h = &s.hists[*c].h;
                            vecs[k].push(Elem {
                                metric: s.metric.clone(),
                                t: ts,
                                v: h.sum,
                                h: Some(h.clone()),
                                drop_name: s.drop_name,
                            });
                            if let Some(sg) = sigs {
                                vsigs[k].push(sg[k][si]);
                            }
                            *c += 1;
                        }
                    }
                }
                self.add_samples(vecs[k].len())?;
            }
            let res = f(ts, &vecs, &vsigs)?;
            self.add_samples(res.len())?;
            temp += res.len();
            if instant {
                let mut mat = Vec::with_capacity(res.len());
                for e in res {
                    let (points, hists) = match e.h {
                        None => (vec![Sample { t: ts, v: e.v }], Vec::new()),
                        Some(h) => (Vec::new(), vec![HPoint { t: ts, h }]),
                    };
                    mat.push(Series {
                        metric: e.metric,
                        points,
                        hists,
                        drop_name: e.drop_name,
                    });
                }
                self.cur = orig + mat.len();
                return Ok(mat);
            }
            for e in res {
                match index.get_mut(&e.metric) {
                    Some((i, last)) => {
                        if *last == ts {
                            return Err(dup_labelset_error());
                        }
                        *last = ts;
                        match e.h {
                            None => out[*i].points.push(Sample { t: ts, v: e.v }),
                            Some(h) => out[*i].hists.push(HPoint { t: ts, h }),
                        }
                        if e.drop_name {
                            out[*i].drop_name = true;
                        }
                    }
                    None => {
                        index.insert(e.metric.clone(), (out.len(), ts));
                        let (points, hists) = match e.h {
                            None => (vec![Sample { t: ts, v: e.v }], Vec::new()),
                            Some(h) => (Vec::new(), vec![HPoint { t: ts, h }]),
                        };
                        out.push(Series {
                            metric: e.metric,
                            points,
                            hists,
                            drop_name: e.drop_name,
                        });
                    }
                }
            }
        }
        let total: usize = out.iter().map(|s| s.len()).sum();
        self.cur = orig + total;
        Ok(out)
    }

    // ---------------------------------------------------------------
    // Binary operators.

    fn eval_binary(
        &mut self,
        op: BinOp,
        lhs: &Node,
        rhs: &Node,
        matching: &VectorMatching,
        return_bool: bool,
        pos: usize,
    ) -> R<Vec<Series>> {
        let sh = self.sh;
        let lt = lhs.vtype();
        let rt = rhs.vtype();
        let l = self.eval_matrix(lhs)?;
        let r = self.eval_matrix(rhs)?;
        match (lt, rt) {
            (VType::Scalar, VType::Scalar) => self.range_eval(&[l, r], None, |_, v, _| {
                let a = v[0].first().map(|e| e.v).unwrap_or(f64::NAN);
                let b = v[1].first().map(|e| e.v).unwrap_or(f64::NAN);
                Ok(vec![Elem::float(
                    Labels::empty(),
                    0,
                    scalar_binop(op, a, b),
                    false,
                )])
            }),
            (VType::Vector, VType::Scalar) => self.range_eval(&[l, r], None, |_, v, _| {
                let s = v[1].first().map(|e| e.v).unwrap_or(f64::NAN);
                Ok(vector_scalar_binop(
                    op,
                    &v[0],
                    s,
                    false,
                    return_bool,
                    &|a| sh.annotate(a, pos),
                ))
            }),
            (VType::Scalar, VType::Vector) => self.range_eval(&[l, r], None, |_, v, _| {
                let s = v[0].first().map(|e| e.v).unwrap_or(f64::NAN);
                Ok(vector_scalar_binop(op, &v[1], s, true, return_bool, &|a| {
                    sh.annotate(a, pos)
                }))
            }),
            _ => {
                // Vector/vector: assign signature ordinals once.
                let mut ordinals: FastMap<Labels, usize> = FastMap::default();
                let mut sigs: Vec<Vec<usize>> = Vec::with_capacity(2);
                let mut sig_labels: Vec<Labels> = Vec::new();
                for side in [&l, &r] {
                    let mut v = Vec::with_capacity(side.len());
                    for s in side.iter() {
                        let sig = signature(&s.metric, matching);
                        let next = ordinals.len();
                        let o = *ordinals.entry(sig.clone()).or_insert_with(|| {
                            sig_labels.push(sig);
                            next
                        });
                        v.push(o);
                    }
                    sigs.push(v);
                }
                let nsigs = ordinals.len();
                let inputs = [l, r];
                match op {
                    BinOp::And => self.range_eval(&inputs, Some(&sigs), |_, v, sg| {
                        if v[0].is_empty() || v[1].is_empty() {
                            return Ok(Vec::new());
                        }
                        let mut present = vec![false; nsigs];
                        for &o in &sg[1] {
                            present[o] = true;
                        }
                        Ok(v[0]
                            .iter()
                            .zip(&sg[0])
                            .filter(|(_, o)| present[**o])
                            .map(|(e, _)| e.clone())
                            .collect())
                    }),
                    BinOp::Or => self.range_eval(&inputs, Some(&sigs), |_, v, sg| {
                        if v[0].is_empty() {
                            return Ok(v[1].clone());
                        }
                        if v[1].is_empty() {
                            return Ok(v[0].clone());
                        }
                        let mut present = vec![false; nsigs];
                        let mut out = Vec::with_capacity(v[0].len() + v[1].len());
                        for (e, &o) in v[0].iter().zip(&sg[0]) {
                            present[o] = true;
                            out.push(e.clone());
                        }
                        for (e, &o) in v[1].iter().zip(&sg[1]) {
                            if !present[o] {
                                out.push(e.clone());
                            }
                        }
                        Ok(out)
                    }),
                    BinOp::Unless => self.range_eval(&inputs, Some(&sigs), |_, v, sg| {
                        if v[0].is_empty() || v[1].is_empty() {
                            return Ok(v[0].clone());
                        }
                        let mut present = vec![false; nsigs];
                        for &o in &sg[1] {
                            present[o] = true;
                        }
                        Ok(v[0]
                            .iter()
                            .zip(&sg[0])
                            .filter(|(_, o)| !present[**o])
                            .map(|(e, _)| e.clone())
                            .collect())
                    }),
                    _ => self.range_eval(&inputs, Some(&sigs), |_, v, sg| {
                        vector_binop(
                            op,
                            &v[0],
                            &v[1],
                            &sg[0],
                            &sg[1],
                            matching,
                            return_bool,
                            &|a| sh.annotate(a, pos),
                        )
                    }),
                }
            }
        }
    }

    // ---------------------------------------------------------------
    // Aggregations.

    fn eval_aggregate(
        &mut self,
        op: AggOp,
        expr: &Node,
        param: Option<&Node>,
        grouping: &[String],
        without: bool,
        (param_pos, agg_pos): (usize, usize),
    ) -> R<Vec<Series>> {
        let mut grouping: Vec<String> = grouping.to_vec();
        grouping.sort();
        if op == AggOp::CountValues {
            let label = match param {
                Some(Node::Str(s)) => s.clone(),
                _ => {
                    return Err(QueryError::Execution(
                        "count_values needs a string parameter".into(),
                    ));
                }
            };
            let mut g = grouping.clone();
            if !without {
                g.push(label.clone());
                g.sort();
            }
            let input = self.eval_matrix(expr)?;
            return self.range_eval(&[input], None, |_, v, _| {
                Ok(count_values(&v[0], &label, &g, without))
            });
        }
        let params: Option<Vec<f64>> = match param {
            Some(p) if p.vtype() == VType::Scalar => Some(self.eval_scalar_steps(p)?),
            _ => None,
        };
        let orig = self.cur;
        let input = self.eval_matrix(expr)?;
        let pnan = params
            .as_ref()
            .is_some_and(|p| p.iter().any(|x| x.is_nan()));
        // Like Go's math.Max/Min, a NaN parameter makes both NaN.
        let (pmax, pmin) = if pnan {
            (f64::NAN, f64::NAN)
        } else {
            (
                params
                    .as_ref()
                    .map(|p| p.iter().copied().fold(f64::NEG_INFINITY, f64::max))
                    .unwrap_or(0.0),
                params
                    .as_ref()
                    .map(|p| p.iter().copied().fold(f64::INFINITY, f64::min))
                    .unwrap_or(0.0),
            )
        };
        match op {
            AggOp::Topk | AggOp::Bottomk | AggOp::Limitk => {
                if pmax < 1.0 {
                    return Ok(Vec::new());
                }
                if pnan {
                    return Err(QueryError::Execution("Parameter value is NaN".into()));
                }
                if pmin <= -9223372036854775808.0 {
                    return Err(QueryError::Execution(format!(
                        "Scalar value {} underflows int64",
                        format_g(pmin)
                    )));
                }
                if pmax >= 9223372036854774784.0 {
                    return Err(QueryError::Execution(format!(
                        "Scalar value {} overflows int64",
                        format_g(pmax)
                    )));
                }
            }
            AggOp::LimitRatio => {
                if pmax == 0.0 && pmin == 0.0 {
                    return Ok(Vec::new());
                }
                if pnan {
                    return Err(QueryError::Execution("Ratio value is NaN".into()));
                }
                if pmax > 1.0 {
                    self.sh.warn(
                        &format!(
                            "ratio value should be between -1 and 1, got {}, capping to 1",
                            format_g(pmax)
                        ),
                        param_pos,
                    );
                }
                if pmin < -1.0 {
                    self.sh.warn(
                        &format!(
                            "ratio value should be between -1 and 1, got {}, capping to -1",
                            format_g(pmin)
                        ),
                        param_pos,
                    );
                }
            }
            AggOp::Quantile => {
                if pnan {
                    self.sh.warn(
                        "quantile value should be between 0 and 1, got NaN",
                        param_pos,
                    );
                }
                if pmax > 1.0 {
                    self.sh.warn(
                        &format!(
                            "quantile value should be between 0 and 1, got {}",
                            format_g(pmax)
                        ),
                        param_pos,
                    );
                }
                if pmin < 0.0 {
                    self.sh.warn(
                        &format!(
                            "quantile value should be between 0 and 1, got {}",
                            format_g(pmin)
                        ),
                        param_pos,
                    );
                }
            }
            _ => {}
        }
        let res = crate::aggregate::aggregate(
            self,
            op,
            &input,
            &grouping,
            without,
            params.as_deref(),
            (expr.pos(), agg_pos),
        )?;
        let total: usize = res.iter().map(|s| s.len()).sum();
        self.cur = orig + total;
        Ok(res)
    }
}

/// The label set two series are matched on.
pub(crate) fn signature(metric: &Labels, m: &VectorMatching) -> Labels {
    if m.on {
        keep_labels(metric, &m.labels)
    } else {
        let l = Labels::from_sorted(metric.iter().filter(|x| x.name != "__name__"));
        del_labels(&l, &m.labels)
    }
}

/// Group key and output labels of an aggregation.
pub(crate) fn grouping_labels(metric: &Labels, grouping: &[String], without: bool) -> Labels {
    if without {
        let l = Labels::from_sorted(metric.iter().filter(|x| x.name != "__name__"));
        del_labels(&l, grouping)
    } else if grouping.is_empty() {
        Labels::empty()
    } else {
        keep_labels(metric, grouping)
    }
}

fn count_values(v: &[Elem], label: &str, grouping: &[String], without: bool) -> Vec<Elem> {
    let mut order: Vec<Labels> = Vec::new();
    let mut counts: FastMap<Labels, usize> = FastMap::default();
    for e in v {
        let value = match &e.h {
            Some(h) => h.to_string(),
            None => pharos_model::format_float(e.v),
        };
        let m = set_label(&e.metric, label, &value);
        let key = grouping_labels(&m, grouping, without);
        match counts.get_mut(&key) {
            Some(c) => *c += 1,
            None => {
                counts.insert(key.clone(), 1);
                order.push(key);
            }
        }
    }
    order
        .into_iter()
        .map(|k| {
            let c = counts.get(&k).copied().unwrap_or(0);
            Elem::float(k, 0, c as f64, false)
        })
        .collect()
}

fn btos(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Go's `math.Mod` semantics (sign of the dividend), which Rust's `%`
/// shares for floats.
fn fmod(a: f64, b: f64) -> f64 {
    a % b
}

fn go_pow(a: f64, b: f64) -> f64 {
    a.powf(b)
}

pub(crate) fn scalar_binop(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Pow => go_pow(a, b),
        BinOp::Mod => fmod(a, b),
        BinOp::Atan2 => a.atan2(b),
        BinOp::Eql => btos(a == b),
        BinOp::Neq => btos(a != b),
        BinOp::Gtr => btos(a > b),
        BinOp::Lss => btos(a < b),
        BinOp::Gte => btos(a >= b),
        BinOp::Lte => btos(a <= b),
        BinOp::And | BinOp::Or | BinOp::Unless | BinOp::TrimUpper | BinOp::TrimLower => f64::NAN,
    }
}

/// Value and keep flag of `a op b` between two vector elements.
fn elem_binop(op: BinOp, a: f64, b: f64) -> (f64, bool) {
    match op {
        BinOp::Eql => (a, a == b),
        BinOp::Neq => (a, a != b),
        BinOp::Gtr => (a, a > b),
        BinOp::Lss => (a, a < b),
        BinOp::Gte => (a, a >= b),
        BinOp::Lte => (a, a <= b),
        _ => (scalar_binop(op, a, b), true),
    }
}

fn vector_scalar_binop(
    op: BinOp,
    v: &[Elem],
    s: f64,
    swap: bool,
    return_bool: bool,
    anno: &dyn Fn(Anno),
) -> Vec<Elem> {
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        let (lf, rf) = if swap { (s, e.v) } else { (e.v, s) };
        let (mut val, mut hval, mut keep) = match &e.h {
            None if !op.is_trim() => {
                let (v, k) = elem_binop(op, lf, rf);
                (v, None, k)
            }
            h => {
                let (lh, rh) = if swap {
                    (None, h.as_ref())
                } else {
                    (h.as_ref(), None)
                };
                match hist_elem_binop(op, lf, rf, lh, rh) {
                    Ok((v, h, k, note)) => {
                        if let Some(n) = note {
                            anno(n);
                        }
                        (v, h, k)
                    }
                    Err(a) => {
                        anno(a);
                        continue;
                    }
                }
            }
        };
        if op.is_comparison() && swap {
            val = rf;
            hval = if swap { e.h.clone() } else { None };
        }
        if return_bool {
            val = btos(keep);
            hval = None;
            keep = true;
        }
        if keep {
            let mut e = e.clone();
            e.v = val;
            e.h = hval;
            if op.changes_metric_schema() || return_bool {
                e.drop_name = true;
            }
            out.push(e);
        }
    }
    out
}

/// Labels matched on, as Prometheus's `Labels.MatchLabels`.
fn match_labels(metric: &Labels, m: &VectorMatching) -> Labels {
    if m.on {
        keep_labels(metric, &m.labels)
    } else {
        let l = Labels::from_sorted(metric.iter().filter(|x| x.name != "__name__"));
        del_labels(&l, &m.labels)
    }
}

fn result_metric(lhs: &Labels, rhs: &Labels, op: BinOp, m: &VectorMatching) -> Labels {
    let mut l = lhs.clone();
    if op.changes_metric_schema() {
        l = drop_metadata(&l);
    }
    if m.card == Card::OneToOne {
        if m.on {
            l = keep_labels(&l, &m.labels);
        } else {
            l = del_labels(&l, &m.labels);
        }
    }
    if !m.include.is_empty() {
        let mut b = pharos_model::LabelsBuilder::from(&l);
        for ln in &m.include {
            match rhs.get(ln) {
                Some(v) if !v.is_empty() => {
                    b.set(ln, v);
                }
                _ => {
                    b.del(ln);
                }
            }
        }
        l = b.build();
    }
    l
}

#[allow(clippy::too_many_arguments)]
fn vector_binop(
    op: BinOp,
    lhs: &[Elem],
    rhs: &[Elem],
    lsig: &[usize],
    rsig: &[usize],
    m: &VectorMatching,
    return_bool: bool,
    anno: &dyn Fn(Anno),
) -> R<Vec<Elem>> {
    if (lhs.is_empty() && rhs.is_empty())
        || ((lhs.is_empty() || rhs.is_empty()) && m.fill_lhs.is_none() && m.fill_rhs.is_none())
    {
        return Ok(Vec::new());
    }
    let one_to_many = m.card == Card::OneToMany;
    let (lhs, rhs, lsig, rsig) = if one_to_many {
        (rhs, lhs, rsig, lsig)
    } else {
        (lhs, rhs, lsig, rsig)
    };
    // As upstream, the fill values are not swapped with the sides.
    let (fill_l, fill_r) = (m.fill_lhs, m.fill_rhs);
    let mut right: FastMap<usize, usize> =
        FastMap::with_capacity_and_hasher(rhs.len(), Default::default());
    for (i, rs) in rhs.iter().enumerate() {
        if let Some(&j) = right.get(&rsig[i]) {
            let one_side = if one_to_many { "left" } else { "right" };
            let matched = match_labels(&rs.metric, m);
            let mut pair = [rs.metric.to_string(), rhs[j].metric.to_string()];
            pair.sort();
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {matched} on the {one_side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                pair[0], pair[1]
            )));
        }
        right.insert(rsig[i], i);
    }
    let mut matched: FastMap<usize, Option<FastSet<Labels>>> = FastMap::default();
    let mut out = Vec::new();
    let do_op = |ls: &Elem,
                 rs: &Elem,
                 sig: usize,
                 out: &mut Vec<Elem>,
                 matched: &mut FastMap<usize, Option<FastSet<Labels>>>|
     -> R<()> {
        let (fl, fr, hl, hr) = if one_to_many {
            (rs.v, ls.v, rs.h.as_ref(), ls.h.as_ref())
        } else {
            (ls.v, rs.v, ls.h.as_ref(), rs.h.as_ref())
        };
        let (mut val, mut hval, keep) = if hl.is_none() && hr.is_none() && !op.is_trim() {
            let (v, k) = elem_binop(op, fl, fr);
            (v, None, k)
        } else {
            match hist_elem_binop(op, fl, fr, hl, hr) {
                Ok((v, h, k, note)) => {
                    if let Some(n) = note {
                        anno(n);
                    }
                    (v, h, k)
                }
                Err(a) => {
                    anno(a);
                    return Ok(());
                }
            }
        };
        if return_bool {
            val = btos(keep);
            hval = None;
        }
        let metric = result_metric(&ls.metric, &rs.metric, op, m);
        if m.card == Card::OneToOne {
            if matched.contains_key(&sig) {
                return Err(QueryError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            matched.insert(sig, None);
        } else {
            let set = matched
                .entry(sig)
                .or_insert_with(|| Some(FastSet::default()));
            if let Some(set) = set
                && !set.insert(metric.clone())
            {
                return Err(QueryError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                        .into(),
                ));
            }
        }
        if !keep && !return_bool {
            return Ok(());
        }
        out.push(Elem {
            metric,
            t: ls.t,
            v: val,
            h: hval,
            drop_name: return_bool,
        });
        Ok(())
    };
    for (i, ls) in lhs.iter().enumerate() {
        let sig = lsig[i];
        match right.get(&sig) {
            Some(&j) => do_op(ls, &rhs[j], sig, &mut out, &mut matched)?,
            None => {
                if let Some(fill) = fill_r {
                    let rs = Elem::float(match_labels(&ls.metric, m), ls.t, fill, false);
                    do_op(ls, &rs, sig, &mut out, &mut matched)?;
                }
            }
        }
    }
    if let Some(fill) = fill_l {
        let mut unmatched: Vec<(usize, usize)> = right
            .iter()
            .filter(|(s, _)| !matched.contains_key(s))
            .map(|(s, j)| (*s, *j))
            .collect();
        unmatched.sort_by_key(|(_, j)| *j);
        for (sig, j) in unmatched {
            let rs = &rhs[j];
            let ls = Elem::float(match_labels(&rs.metric, m), rs.t, fill, false);
            do_op(&ls, rs, sig, &mut out, &mut matched)?;
        }
    }
    Ok(out)
}

/// Estimated bytes of a histogram held in memory.
pub(crate) fn hist_bytes(h: &pharos_model::histogram::FloatHistogram) -> usize {
    96 + 8 * (h.positive_buckets.len() + h.negative_buckets.len() + h.custom_values.len())
        + 8 * (h.positive_spans.len() + h.negative_spans.len())
}

/// The operator as Prometheus prints it in annotations.
pub(crate) fn op_str(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Mod => "%",
        BinOp::Pow => "^",
        BinOp::Atan2 => "atan2",
        BinOp::Eql => "==",
        BinOp::Neq => "!=",
        BinOp::Gtr => ">",
        BinOp::Lss => "<",
        BinOp::Gte => ">=",
        BinOp::Lte => "<=",
        BinOp::And => "and",
        BinOp::Or => "or",
        BinOp::Unless => "unless",
        BinOp::TrimUpper => "</",
        BinOp::TrimLower => ">/",
    }
}

/// Whether two histograms are equal after compaction (Prometheus's
/// `Equals`, which compares float bit patterns; compacting first makes
/// layouts that differ only in empty buckets compare equal).
pub(crate) fn hist_equals(
    a: &pharos_model::histogram::FloatHistogram,
    b: &pharos_model::histogram::FloatHistogram,
) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.compact(0);
    b.compact(0);
    a.equals(&b)
}

/// `lhs op rhs` where at least one side is a histogram (Prometheus's
/// `vectorElemBinop`): float value, histogram value and keep flag, or the
/// annotation explaining why there is no result.
pub(crate) fn hist_elem_binop(
    op: BinOp,
    lf: f64,
    rf: f64,
    lh: Option<&H>,
    rh: Option<&H>,
) -> Result<(f64, Option<H>, bool, Option<Anno>), Anno> {
    let incompatible = |l: &str, r: &str| {
        Anno::Info(format!(
            "incompatible sample types encountered for binary operator {:?}: {l} {} {r}",
            op_str(op),
            op_str(op)
        ))
    };
    match (lh, rh) {
        (None, None) if op.is_trim() => Err(incompatible("float", "float")),
        (None, None) => {
            let (v, k) = elem_binop(op, lf, rf);
            Ok((v, None, k, None))
        }
        (None, Some(h)) => match op {
            BinOp::Mul => {
                let mut r = (**h).clone();
                r.mul(lf);
                r.compact(0);
                Ok((0.0, Some(H::new(r)), true, None))
            }
            _ => Err(incompatible("float", "histogram")),
        },
        (Some(h), None) => match op {
            BinOp::Mul | BinOp::Div => {
                let mut r = (**h).clone();
                if op == BinOp::Mul {
                    r.mul(rf);
                } else {
                    r.div(rf);
                }
                r.compact(0);
                Ok((0.0, Some(H::new(r)), true, None))
            }
            BinOp::TrimUpper | BinOp::TrimLower => {
                let mut r = (**h).clone();
                r.trim_buckets(rf, op == BinOp::TrimUpper);
                Ok((0.0, Some(H::new(r)), true, None))
            }
            _ => Err(incompatible("histogram", "float")),
        },
        (Some(a), Some(b)) => match op {
            BinOp::Add | BinOp::Sub => {
                let mut r = (**a).clone();
                let what = if op == BinOp::Add {
                    "addition"
                } else {
                    "subtraction"
                };
                let info = if op == BinOp::Add {
                    r.add_with_info(b)
                } else {
                    r.sub_with_info(b)
                };
                let info = info.map_err(|_| {
                    Anno::Warn(format!(
                        "incompatible bucket layout encountered for binary operator {}",
                        op_str(op)
                    ))
                })?;
                if op == BinOp::Sub {
                    r.counter_reset_hint = pharos_model::histogram::CounterResetHint::Gauge;
                }
                if info.counter_reset_collision {
                    return Err(Anno::Warn(format!(
                        "conflicting counter resets during histogram {what}"
                    )));
                }
                r.compact(0);
                let note = info.nhcb_bounds_reconciled.then(|| {
                    Anno::Info(format!(
                        "mismatched custom buckets were reconciled during {what}"
                    ))
                });
                Ok((0.0, Some(H::new(r)), true, note))
            }
            BinOp::Eql => Ok((0.0, Some(a.clone()), hist_equals(a, b), None)),
            BinOp::Neq => Ok((0.0, Some(a.clone()), !hist_equals(a, b), None)),
            _ => Err(incompatible("histogram", "histogram")),
        },
    }
}

/// Turns a series' histograms into what Prometheus's
/// `HistogramStatsIterator` returns: schema, count, sum and counter-reset
/// hint only, an unknown hint replaced by the result of reset detection
/// against the previous histogram read.
fn stats_only_histograms(hists: &mut [HPoint]) {
    use pharos_model::histogram::{CounterResetHint, FloatHistogram};
    let mut last: Option<H> = None;
    for p in hists.iter_mut() {
        let full = p.h.clone();
        let hint = match (full.counter_reset_hint, &last) {
            (CounterResetHint::Unknown, Some(prev)) => {
                if full.detect_reset(prev) {
                    CounterResetHint::CounterReset
                } else {
                    CounterResetHint::NotCounterReset
                }
            }
            (h, _) => h,
        };
        p.h = H::new(FloatHistogram {
            counter_reset_hint: hint,
            schema: full.schema,
            count: full.count,
            sum: full.sum,
            ..Default::default()
        });
        last = Some(full);
    }
}
