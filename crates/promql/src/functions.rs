//! PromQL functions.
//!
//! Functions over range vectors run series by series, sliding the window
//! `(t - range, t]` over the (stale-free) samples with two cursors, so each
//! sample is touched a bounded number of times per query. Functions over
//! instant vectors run step by step through [`Evaluator::range_eval`].

use std::rc::Rc;

use pharos_model::{Labels, MatchOp, Sample, is_stale_nan};

use crate::QueryError;
use crate::aggregate::{go_sort, quantile};
use crate::eval::{Evaluator, R, RawSeries, dup_labelset_error};
use crate::hist;
use crate::plan::{Node, SelMode, Selector};
use crate::quantile::{Bucket, bucket_fraction, bucket_quantile};
use crate::value::{Elem, FastMap, H, HPoint, Series, kahan_inc, set_label};

/// Parameters of one window evaluation.
struct Win<'a> {
    samples: &'a [Sample],
    /// Step time.
    ts: i64,
    range_start: i64,
    range_end: i64,
    range: i64,
    /// Scalar arguments at this step, in argument order (matrix excluded).
    scalars: &'a [f64],
    /// `anchored`/`smoothed`: `samples` reach beyond the range by up to the
    /// lookback delta.
    mode: SelMode,
}

/// Functions over range vectors, resolved once per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeFunc {
    Rate,
    Irate,
    Increase,
    Delta,
    Idelta,
    Deriv,
    PredictLinear,
    Resets,
    Changes,
    AvgOverTime,
    SumOverTime,
    MinOverTime,
    MaxOverTime,
    CountOverTime,
    LastOverTime,
    FirstOverTime,
    PresentOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    MadOverTime,
    TsOfFirstOverTime,
    TsOfLastOverTime,
    TsOfMaxOverTime,
    TsOfMinOverTime,
    AbsentOverTime,
    DoubleExponentialSmoothing,
}

impl RangeFunc {
    fn from_name(name: &str) -> Option<RangeFunc> {
        Some(match name {
            "rate" => RangeFunc::Rate,
            "irate" => RangeFunc::Irate,
            "increase" => RangeFunc::Increase,
            "delta" => RangeFunc::Delta,
            "idelta" => RangeFunc::Idelta,
            "deriv" => RangeFunc::Deriv,
            "predict_linear" => RangeFunc::PredictLinear,
            "resets" => RangeFunc::Resets,
            "changes" => RangeFunc::Changes,
            "avg_over_time" => RangeFunc::AvgOverTime,
            "sum_over_time" => RangeFunc::SumOverTime,
            "min_over_time" => RangeFunc::MinOverTime,
            "max_over_time" => RangeFunc::MaxOverTime,
            "count_over_time" => RangeFunc::CountOverTime,
            "last_over_time" => RangeFunc::LastOverTime,
            "first_over_time" => RangeFunc::FirstOverTime,
            "present_over_time" => RangeFunc::PresentOverTime,
            "stddev_over_time" => RangeFunc::StddevOverTime,
            "stdvar_over_time" => RangeFunc::StdvarOverTime,
            "quantile_over_time" => RangeFunc::QuantileOverTime,
            "mad_over_time" => RangeFunc::MadOverTime,
            "ts_of_first_over_time" => RangeFunc::TsOfFirstOverTime,
            "ts_of_last_over_time" => RangeFunc::TsOfLastOverTime,
            "ts_of_max_over_time" => RangeFunc::TsOfMaxOverTime,
            "ts_of_min_over_time" => RangeFunc::TsOfMinOverTime,
            "absent_over_time" => RangeFunc::AbsentOverTime,
            "double_exponential_smoothing" => RangeFunc::DoubleExponentialSmoothing,
            _ => return None,
        })
    }
}

fn unsupported(name: &str) -> QueryError {
    QueryError::Execution(format!("function {name:?} is not supported by this engine"))
}

impl Evaluator<'_, '_> {
    pub(crate) fn eval_call(
        &mut self,
        func: &str,
        args: &[Node],
        pos: usize,
        arg_pos: &[usize],
    ) -> R<Vec<Series>> {
        match func {
            "label_replace" => return self.label_replace(args),
            "label_join" => return self.label_join(args),
            "info" => return self.eval_info(args),
            "timestamp" => {
                if let Some(Node::VectorSel(sel)) = args.first() {
                    return self.timestamp_of_selector(sel);
                }
            }
            _ => {}
        }
        if RangeFunc::from_name(func).is_some() {
            return self.eval_range_function(func, args, arg_pos);
        }
        if matches!(
            func,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ) && self.sh.is_range
        {
            self.sh.warn(
                "sort is ineffective for range queries since results are always ordered by labels",
                pos,
            );
        }
        // Instant functions: evaluate the non-string arguments and run step
        // by step.
        let mut inputs = Vec::new();
        let mut strings = Vec::new();
        for a in args {
            match a {
                Node::Str(s) => strings.push(s.clone()),
                other => inputs.push(self.eval_matrix(other)?),
            }
        }
        let sh = self.sh;
        let vec_arg_pos = arg_pos.iter().copied().find(|_| true).unwrap_or(pos);
        let f: Box<dyn Fn(f64) -> f64> = match func {
            "abs" => Box::new(f64::abs),
            "ceil" => Box::new(f64::ceil),
            "floor" => Box::new(f64::floor),
            "exp" => Box::new(f64::exp),
            "sqrt" => Box::new(f64::sqrt),
            "ln" => Box::new(f64::ln),
            "log2" => Box::new(f64::log2),
            "log10" => Box::new(f64::log10),
            "sin" => Box::new(f64::sin),
            "cos" => Box::new(f64::cos),
            "tan" => Box::new(f64::tan),
            "asin" => Box::new(f64::asin),
            "acos" => Box::new(f64::acos),
            "atan" => Box::new(f64::atan),
            "sinh" => Box::new(f64::sinh),
            "cosh" => Box::new(f64::cosh),
            "tanh" => Box::new(f64::tanh),
            "asinh" => Box::new(f64::asinh),
            "acosh" => Box::new(f64::acosh),
            "atanh" => Box::new(f64::atanh),
            "rad" => Box::new(|v: f64| v * std::f64::consts::PI / 180.0),
            "deg" => Box::new(|v: f64| v * 180.0 / std::f64::consts::PI),
            "sgn" => Box::new(|v: f64| {
                if v < 0.0 {
                    -1.0
                } else if v > 0.0 {
                    1.0
                } else {
                    v
                }
            }),
            _ => Box::new(|v| v),
        };
        match func {
            "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sin" | "cos"
            | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh" | "acosh"
            | "atanh" | "rad" | "deg" | "sgn" => self.range_eval(&inputs, None, |_, v, _| {
                Ok(v[0]
                    .iter()
                    .filter(|e| e.h.is_none())
                    .map(|e| Elem {
                        metric: e.metric.clone(),
                        t: e.t,
                        v: f(e.v),
                        h: None,
                        drop_name: true,
                    })
                    .collect())
            }),
            "round" => self.range_eval(&inputs, None, |_, v, _| {
                let to = v.get(1).and_then(|s| s.first()).map(|e| e.v).unwrap_or(1.0);
                let inv = 1.0 / to;
                Ok(v[0]
                    .iter()
                    .filter(|e| e.h.is_none())
                    .map(|e| Elem {
                        metric: e.metric.clone(),
                        t: e.t,
                        v: (e.v * inv + 0.5).floor() / inv,
                        h: None,
                        drop_name: true,
                    })
                    .collect())
            }),
            "clamp" | "clamp_min" | "clamp_max" => self.range_eval(&inputs, None, |_, v, _| {
                let s1 = v
                    .get(1)
                    .and_then(|s| s.first())
                    .map(|e| e.v)
                    .unwrap_or(f64::NAN);
                let s2 = v
                    .get(2)
                    .and_then(|s| s.first())
                    .map(|e| e.v)
                    .unwrap_or(f64::NAN);
                let (lo, hi) = match func {
                    "clamp" => (s1, s2),
                    "clamp_min" => (s1, f64::INFINITY),
                    _ => (f64::NEG_INFINITY, s1),
                };
                if hi < lo {
                    return Ok(Vec::new());
                }
                Ok(v[0]
                    .iter()
                    .filter(|e| e.h.is_none())
                    .map(|e| Elem {
                        metric: e.metric.clone(),
                        t: e.t,
                        v: go_max(lo, go_min(hi, e.v)),
                        h: None,
                        drop_name: true,
                    })
                    .collect())
            }),
            "timestamp" => self.range_eval(&inputs, None, |_, v, _| {
                Ok(v[0]
                    .iter()
                    .map(|e| Elem {
                        metric: e.metric.clone(),
                        t: e.t,
                        v: e.t as f64 / 1000.0,
                        h: None,
                        drop_name: true,
                    })
                    .collect())
            }),
            "vector" => self.range_eval(&inputs, None, |_, v, _| {
                let s = v[0].first().map(|e| e.v).unwrap_or(f64::NAN);
                Ok(vec![Elem {
                    metric: Labels::empty(),
                    t: 0,
                    v: s,
                    h: None,
                    drop_name: false,
                }])
            }),
            "scalar" => self.range_eval(&inputs, None, |_, v, _| {
                let mut floats = v[0].iter().filter(|e| e.h.is_none());
                let s = match (floats.next(), floats.next()) {
                    (Some(e), None) => e.v,
                    _ => f64::NAN,
                };
                Ok(vec![Elem {
                    metric: Labels::empty(),
                    t: 0,
                    v: s,
                    h: None,
                    drop_name: false,
                }])
            }),
            "time" => self.range_eval(&[], None, |ts, _, _| {
                Ok(vec![Elem {
                    metric: Labels::empty(),
                    t: ts,
                    v: ts as f64 / 1000.0,
                    h: None,
                    drop_name: false,
                }])
            }),
            "start" | "end" | "range" | "step" => {
                let v = match func {
                    "start" => sh.q_start as f64 / 1000.0,
                    "end" => sh.q_end as f64 / 1000.0,
                    "range" => (sh.q_end - sh.q_start) as f64 / 1000.0,
                    _ => sh.q_step as f64 / 1000.0,
                };
                self.range_eval(&[], None, |_, _, _| {
                    Ok(vec![Elem {
                        metric: Labels::empty(),
                        t: 0,
                        v,
                        h: None,
                        drop_name: false,
                    }])
                })
            }
            "min_of" | "max_of" => {
                let is_min = func == "min_of";
                self.range_eval(&inputs, None, |_, v, _| {
                    let a = v[0].first().map(|e| e.v).unwrap_or(f64::NAN);
                    let b = v[1].first().map(|e| e.v).unwrap_or(f64::NAN);
                    let r = if a.is_nan() || b.is_nan() {
                        f64::NAN
                    } else if is_min {
                        a.min(b)
                    } else {
                        a.max(b)
                    };
                    Ok(vec![Elem {
                        metric: Labels::empty(),
                        t: 0,
                        v: r,
                        h: None,
                        drop_name: false,
                    }])
                })
            }
            "pi" => self.range_eval(&[], None, |_, _, _| {
                Ok(vec![Elem {
                    metric: Labels::empty(),
                    t: 0,
                    v: std::f64::consts::PI,
                    h: None,
                    drop_name: false,
                }])
            }),
            "absent" => {
                let labels = absent_labels(args.first());
                self.range_eval(&inputs, None, |_, v, _| {
                    if !v[0].is_empty() {
                        return Ok(Vec::new());
                    }
                    Ok(vec![Elem {
                        metric: labels.clone(),
                        t: 0,
                        v: 1.0,
                        h: None,
                        drop_name: false,
                    }])
                })
            }
            "sort" | "sort_desc" => {
                let desc = func == "sort_desc";
                self.range_eval(&inputs, None, |_, v, _| {
                    let mut out: Vec<Elem> =
                        v[0].iter().filter(|e| e.h.is_none()).cloned().collect();
                    if desc {
                        go_sort(&mut out, |a, b| b.v.is_nan() || a.v > b.v);
                    } else {
                        go_sort(&mut out, |a, b| b.v.is_nan() || a.v < b.v);
                    }
                    Ok(out)
                })
            }
            "sort_by_label" | "sort_by_label_desc" => {
                let desc = func == "sort_by_label_desc";
                let names = strings.clone();
                self.range_eval(&inputs, None, |_, v, _| {
                    let mut out = v[0].clone();
                    out.sort_by(|a, b| {
                        let o = label_order(&a.metric, &b.metric, &names);
                        if desc { o.reverse() } else { o }
                    });
                    Ok(out)
                })
            }
            "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour"
            | "minute" | "month" | "year" => self.range_eval(&inputs, None, |ts, v, _| {
                if v.is_empty() {
                    return Ok(vec![Elem {
                        metric: Labels::empty(),
                        t: ts,
                        v: date_part(func, ts.div_euclid(1000)),
                        h: None,
                        drop_name: false,
                    }]);
                }
                Ok(v[0]
                    .iter()
                    .filter(|e| e.h.is_none())
                    .map(|e| Elem {
                        metric: e.metric.clone(),
                        t: e.t,
                        v: if e.v.is_finite() {
                            date_part(func, e.v.trunc() as i64)
                        } else {
                            f64::NAN
                        },
                        h: None,
                        drop_name: true,
                    })
                    .collect())
            }),
            "histogram_quantile" => {
                let qpos = arg_pos.first().copied().unwrap_or(pos);
                let vpos = arg_pos.get(1).copied().unwrap_or(pos);
                self.range_eval(&inputs, None, |_, v, _| {
                    let q = v[0].first().map(|e| e.v).unwrap_or(f64::NAN);
                    if q.is_nan() || !(0.0..=1.0).contains(&q) {
                        sh.warn(
                            &format!(
                                "quantile value should be between 0 and 1, got {}",
                                crate::value::format_g(q)
                            ),
                            qpos,
                        );
                    }
                    Ok(classic_histogram_quantiles(sh, &v[1], &[q], None, vpos))
                })
            }
            "histogram_quantiles" => {
                let label = strings.first().cloned().unwrap_or_default();
                self.range_eval(&inputs, None, |_, v, _| {
                    let mut qs = Vec::new();
                    for (i, s) in v.iter().enumerate().skip(1) {
                        let q = s.first().map(|e| e.v).unwrap_or(f64::NAN);
                        if q.is_nan() || !(0.0..=1.0).contains(&q) {
                            sh.warn(
                                &format!(
                                    "quantile value should be between 0 and 1, got {}",
                                    crate::value::format_g(q)
                                ),
                                arg_pos.get(i + 1).copied().unwrap_or(pos),
                            );
                        }
                        qs.push(q);
                    }
                    Ok(classic_histogram_quantiles(
                        sh,
                        &v[0],
                        &qs,
                        Some(&label),
                        vec_arg_pos,
                    ))
                })
            }
            "histogram_fraction" => {
                let vpos = arg_pos.get(2).copied().unwrap_or(pos);
                self.range_eval(&inputs, None, |_, v, _| {
                    let lo = v[0].first().map(|e| e.v).unwrap_or(f64::NAN);
                    let hi = v[1].first().map(|e| e.v).unwrap_or(f64::NAN);
                    Ok(classic_histogram_fraction(sh, &v[2], lo, hi, vpos))
                })
            }
            // Native-histogram functions: float samples are ignored.
            "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
            | "histogram_stdvar" => self.range_eval(&inputs, None, |_, v, _| {
                Ok(v[0]
                    .iter()
                    .filter_map(|e| {
                        let h = e.h.as_ref()?;
                        let val = match func {
                            "histogram_count" => h.count,
                            "histogram_sum" => h.sum,
                            "histogram_avg" => h.sum / h.count,
                            "histogram_stddev" => crate::hist::variance(h).sqrt(),
                            _ => crate::hist::variance(h),
                        };
                        Some(Elem::float(e.metric.clone(), e.t, val, true))
                    })
                    .collect())
            }),
            other => Err(unsupported(other)),
        }
    }

    fn timestamp_of_selector(&mut self, sel: &Selector) -> R<Vec<Series>> {
        let raw = self.fetch(sel, false)?;
        let n = self.steps();
        let lookback = self.sh.lookback;
        let mut out = Vec::new();
        for rs in raw.iter() {
            let mut pts = Vec::new();
            for i in 0..n {
                let ts = self.ts_at(i);
                let rt = sel.at.unwrap_or(ts) - sel.offset;
                let ht = rs
                    .hists
                    .get(rs.hists.partition_point(|p| p.t <= rt).wrapping_sub(1))
                    .map(|p| p.t)
                    .filter(|t| *t > rt - lookback);
                let ft_any = rs
                    .samples
                    .get(rs.samples.partition_point(|p| p.t <= rt).wrapping_sub(1))
                    .map(|p| p.t);
                match ht {
                    Some(t) if ft_any.is_none_or(|f| f < t) => pts.push(Sample {
                        t: ts,
                        v: t as f64 / 1000.0,
                    }),
                    _ => {
                        if let Some(s) = Evaluator::lookup(&rs.samples, rt, lookback) {
                            pts.push(Sample {
                                t: ts,
                                v: s.t as f64 / 1000.0,
                            });
                        }
                    }
                }
            }
            self.add_samples(pts.len())?;
            if !pts.is_empty() {
                out.push(Series {
                    metric: rs.labels.clone(),
                    points: pts,
                    hists: Vec::new(),
                    drop_name: true,
                });
            }
        }
        Ok(out)
    }

    fn label_replace(&mut self, args: &[Node]) -> R<Vec<Series>> {
        let s = |i: usize| -> String {
            match args.get(i) {
                Some(Node::Str(s)) => s.clone(),
                _ => String::new(),
            }
        };
        let (dst, repl, src, re) = (s(1), s(2), s(3), s(4));
        let regex = regex::Regex::new(&format!("^(?s:{re})$")).map_err(|_| {
            QueryError::Execution(format!(
                "invalid regular expression in label_replace(): {re}"
            ))
        })?;
        if !crate::plan::is_valid_label_name(&dst) {
            return Err(QueryError::Execution(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        let arg = args.first().ok_or_else(|| unsupported("label_replace"))?;
        let mut m = self.eval_matrix(arg)?;
        for series in &mut m {
            let val = series.metric.get(&src).unwrap_or("").to_string();
            if let Some(caps) = regex.captures(&val) {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                series.metric = set_label(&series.metric, &dst, &res);
                if dst == "__name__" {
                    series.drop_name = false;
                }
            }
        }
        merge_same_labelset(m)
    }

    fn label_join(&mut self, args: &[Node]) -> R<Vec<Series>> {
        let s = |i: usize| -> String {
            match args.get(i) {
                Some(Node::Str(s)) => s.clone(),
                _ => String::new(),
            }
        };
        let dst = s(1);
        let sep = s(2);
        let srcs: Vec<String> = (3..args.len()).map(s).collect();
        for src in &srcs {
            if !crate::plan::is_valid_label_name(src) {
                return Err(QueryError::Execution(format!(
                    "invalid source label name in label_join(): {src}"
                )));
            }
        }
        if !crate::plan::is_valid_label_name(&dst) {
            return Err(QueryError::Execution(format!(
                "invalid destination label name in label_join(): {dst}"
            )));
        }
        let arg = args.first().ok_or_else(|| unsupported("label_join"))?;
        let mut m = self.eval_matrix(arg)?;
        for series in &mut m {
            let vals: Vec<&str> = srcs
                .iter()
                .map(|n| series.metric.get(n).unwrap_or(""))
                .collect();
            let joined = vals.join(&sep);
            series.metric = set_label(&series.metric, &dst, &joined);
            if dst == "__name__" {
                series.drop_name = false;
            }
        }
        merge_same_labelset(m)
    }

    fn eval_range_function(
        &mut self,
        func: &str,
        args: &[Node],
        arg_pos: &[usize],
    ) -> R<Vec<Series>> {
        let mi = args
            .iter()
            .position(|a| matches!(a, Node::MatrixSel { .. } | Node::Subquery { .. }))
            .ok_or_else(|| {
                QueryError::Execution(format!(
                    "expected a range vector argument in call to {func}"
                ))
            })?;
        // Scalar arguments, one value per step.
        let mut scalar_args: Vec<Vec<f64>> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i != mi {
                scalar_args.push(self.eval_scalar_steps(a)?);
            }
        }
        let (raw, range, offset, at): (Rc<Vec<RawSeries>>, i64, i64, Option<i64>) = match &args[mi]
        {
            Node::MatrixSel { sel, range } => {
                if sel.mode != SelMode::Plain {
                    check_mode_function(sel.mode, func)?;
                }
                (self.fetch(sel, true)?, *range, sel.offset, sel.at)
            }
            Node::Subquery {
                expr,
                range,
                step,
                offset,
                at,
                ..
            } => {
                let m = self.eval_subquery_for_range(expr, *range, *step, *offset, *at)?;
                (Rc::new(m), *range, *offset, *at)
            }
            _ => return Err(unsupported(func)),
        };
        let matrix_pos = arg_pos.get(mi).copied().unwrap_or(0);
        let kind = RangeFunc::from_name(func).ok_or_else(|| unsupported(func))?;
        let mode = match &args[mi] {
            Node::MatrixSel { sel, .. } => sel.mode,
            _ => SelMode::Plain,
        };
        // How far the window reaches beyond (t - range, t].
        let (ext_lo, ext_hi) = match mode {
            SelMode::Plain => (0, 0),
            SelMode::Anchored => (self.sh.lookback, 0),
            SelMode::Smoothed => (self.sh.lookback, self.sh.lookback),
        };
        let n = self.steps();
        let drop_name = !matches!(func, "last_over_time" | "first_over_time");
        let mut out = Vec::with_capacity(raw.len());
        let mut scalars = vec![0.0; scalar_args.len()];
        let mut warned_q: Vec<u64> = Vec::new();
        let mut noted_names: Vec<String> = Vec::new();
        let mut produced_any = vec![false; n];
        for (k, rs) in raw.iter().enumerate() {
            if k % 64 == 0 {
                self.check_time()?;
            }
            let samples = &rs.samples;
            let hs = &rs.hists;
            let mut pts = Vec::new();
            let mut hpts = Vec::new();
            let (mut lo, mut hi) = (0usize, 0usize);
            let (mut hlo, mut hhi) = (0usize, 0usize);
            for (i, produced) in produced_any.iter_mut().enumerate() {
                let ts = self.ts_at(i);
                let rt = at.unwrap_or(ts) - offset;
                let from = rt - range - ext_lo;
                let to = rt + ext_hi;
                while hi < samples.len() && samples[hi].t <= to {
                    hi += 1;
                }
                while lo < hi && samples[lo].t <= from {
                    lo += 1;
                }
                while hhi < hs.len() && hs[hhi].t <= to {
                    hhi += 1;
                }
                while hlo < hhi && hs[hlo].t <= from {
                    hlo += 1;
                }
                if lo >= hi && hlo >= hhi {
                    continue;
                }
                for (j, sa) in scalar_args.iter().enumerate() {
                    scalars[j] = sa.get(i).copied().unwrap_or(f64::NAN);
                }
                if func == "quantile_over_time" {
                    let q = scalars.first().copied().unwrap_or(f64::NAN);
                    if (q.is_nan() || !(0.0..=1.0).contains(&q)) && !warned_q.contains(&q.to_bits())
                    {
                        warned_q.push(q.to_bits());
                        self.sh.warn(
                            &format!(
                                "quantile value should be between 0 and 1, got {}",
                                crate::value::format_g(q)
                            ),
                            arg_pos.first().copied().unwrap_or(matrix_pos),
                        );
                    }
                }
                let w = Win {
                    samples: &samples[lo..hi],
                    ts,
                    range_start: rt - range,
                    range_end: rt,
                    range,
                    scalars: &scalars,
                    mode,
                };
                if hlo < hhi {
                    let ctx = HistCtx {
                        sh: self.sh,
                        metric: &rs.labels,
                        pos: matrix_pos,
                    };
                    match range_func_hist(kind, &w, &hs[hlo..hhi], &ctx)? {
                        Some((_, Some(h))) => {
                            hpts.push(HPoint { t: ts, h });
                            *produced = true;
                        }
                        Some((v, None)) => {
                            pts.push(Sample { t: ts, v });
                            *produced = true;
                        }
                        None => {}
                    }
                } else if let Some(v) = range_func(kind, &w)? {
                    pts.push(Sample { t: ts, v });
                    *produced = true;
                }
            }
            if !hpts.is_empty() {
                self.add_samples(hpts.len())?;
            }
            if !pts.is_empty() || !hpts.is_empty() {
                self.add_samples(pts.len())?;
                if matches!(kind, RangeFunc::Rate | RangeFunc::Increase)
                    && let Some(name) = rs.labels.metric_name()
                    && !noted_names.iter().any(|n| n == name)
                    && !name.ends_with("_total")
                    && !name.ends_with("_sum")
                    && !name.ends_with("_count")
                    && !name.ends_with("_bucket")
                {
                    self.sh.info(
                        &format!(
                            "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
                        ),
                        matrix_pos,
                    );
                    noted_names.push(name.to_string());
                }
                out.push(Series {
                    metric: rs.labels.clone(),
                    points: pts,
                    hists: hpts,
                    drop_name: drop_name || rs.drop_name,
                });
            }
        }
        if func == "absent_over_time" {
            if out.iter().any(|s| s.len() == n) {
                return Ok(Vec::new());
            }
            let pts: Vec<Sample> = (0..n)
                .filter(|&i| !produced_any[i])
                .map(|i| Sample {
                    t: self.ts_at(i),
                    v: 1.0,
                })
                .collect();
            if pts.is_empty() {
                return Ok(Vec::new());
            }
            return Ok(vec![Series {
                metric: absent_labels(args.get(mi)),
                points: pts,
                hists: Vec::new(),
                drop_name: true,
            }]);
        }
        Ok(out)
    }

    /// Evaluates a subquery used as a function argument and returns its
    /// series without staleness markers.
    fn eval_subquery_for_range(
        &mut self,
        expr: &Node,
        range: i64,
        step: i64,
        offset: i64,
        at: Option<i64>,
    ) -> R<Vec<RawSeries>> {
        let node = Node::Subquery {
            expr: Box::new(expr.clone()),
            range,
            step,
            offset,
            at,
            pos: 0,
        };
        let m = self.eval_matrix(&node)?;
        Ok(m.into_iter()
            .map(|s| RawSeries {
                labels: s.metric,
                samples: s
                    .points
                    .into_iter()
                    .filter(|p| !is_stale_nan(p.v))
                    .collect(),
                hists: s
                    .hists
                    .into_iter()
                    .map(|mut p| {
                        use pharos_model::histogram::CounterResetHint as C;
                        if matches!(p.h.counter_reset_hint, C::NotCounterReset | C::CounterReset) {
                            let mut h = (*p.h).clone();
                            h.counter_reset_hint = C::Unknown;
                            p.h = H::new(h);
                        }
                        p
                    })
                    .collect(),
                drop_name: s.drop_name,
            })
            .collect())
    }
}

/// Merges series that ended up with one label set (after relabelling or
/// name removal); overlapping timestamps are an error.
pub(crate) fn merge_same_labelset(m: Vec<Series>) -> R<Vec<Series>> {
    if m.len() <= 1 {
        return Ok(m);
    }
    let mut index: FastMap<Labels, usize> =
        FastMap::with_capacity_and_hasher(m.len(), Default::default());
    let mut out: Vec<Series> = Vec::with_capacity(m.len());
    let mut merged_any = false;
    for s in m {
        match index.get(&s.metric) {
            Some(&i) => {
                merged_any = true;
                let base = &mut out[i];
                base.points.extend(s.points);
                base.hists.extend(s.hists);
            }
            None => {
                index.insert(s.metric.clone(), out.len());
                out.push(s);
            }
        }
    }
    if merged_any {
        for s in &mut out {
            s.points.sort_by_key(|p| p.t);
            s.hists.sort_by_key(|p| p.t);
            if s.points.windows(2).any(|w| w[0].t == w[1].t)
                || s.hists.windows(2).any(|w| w[0].t == w[1].t)
                || (!s.hists.is_empty()
                    && s.points
                        .iter()
                        .any(|p| s.hists.binary_search_by_key(&p.t, |h| h.t).is_ok()))
            {
                return Err(dup_labelset_error());
            }
        }
    }
    Ok(out)
}

/// Labels of the series `absent()`/`absent_over_time()` return.
fn absent_labels(arg: Option<&Node>) -> Labels {
    let sel = match arg {
        Some(Node::VectorSel(s)) => s,
        Some(Node::MatrixSel { sel, .. }) => sel,
        _ => return Labels::empty(),
    };
    let Some(ms) = sel.matcher_sets.first() else {
        return Labels::empty();
    };
    let mut b = pharos_model::LabelsBuilder::new();
    let mut has: Vec<&str> = Vec::new();
    for m in ms {
        if m.name == "__name__" {
            continue;
        }
        if m.op == MatchOp::Equal && !has.contains(&m.name.as_str()) {
            b.set(&m.name, &m.value);
            has.push(&m.name);
        } else {
            b.del(&m.name);
        }
    }
    b.build()
}

/// Natural-order comparison of label values (`facette/natsort`).
fn natsort_less(a: &str, b: &str) -> bool {
    fn chunks(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let bytes = s.as_bytes();
        let mut start = 0;
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                if let Some(c) = s.get(start..i) {
                    out.push(c);
                }
                start = i;
            }
        }
        out
    }
    let ca = chunks(a);
    let cb = chunks(b);
    for i in 0..ca.len() {
        if i >= cb.len() {
            return false;
        }
        let ai = ca[i].parse::<i64>();
        let bi = cb[i].parse::<i64>();
        if let (Ok(x), Ok(y)) = (&ai, &bi) {
            if x == y {
                if i == ca.len() - 1 {
                    return true;
                } else if i == cb.len() - 1 {
                    return false;
                }
                continue;
            }
            return x < y;
        }
        if ca[i] == cb[i] {
            if i == ca.len() - 1 {
                return true;
            } else if i == cb.len() - 1 {
                return false;
            }
            continue;
        }
        return ca[i] < cb[i];
    }
    false
}

fn label_order(a: &Labels, b: &Labels, names: &[String]) -> std::cmp::Ordering {
    for n in names {
        let x = a.get(n).unwrap_or("");
        let y = b.get(n).unwrap_or("");
        if x == y {
            continue;
        }
        return if natsort_less(x, y) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        };
    }
    a.cmp(b)
}

fn date_part(func: &str, secs: i64) -> f64 {
    use chrono::{Datelike, Timelike};
    let Some(dt) = chrono::DateTime::from_timestamp(secs, 0) else {
        return f64::NAN;
    };
    match func {
        "day_of_month" => dt.day() as f64,
        "day_of_week" => dt.weekday().num_days_from_sunday() as f64,
        "day_of_year" => dt.ordinal() as f64,
        "hour" => dt.hour() as f64,
        "minute" => dt.minute() as f64,
        "month" => dt.month() as f64,
        "year" => dt.year() as f64,
        "days_in_month" => {
            let (y, m) = (dt.year(), dt.month());
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            match (
                chrono::NaiveDate::from_ymd_opt(y, m, 1),
                chrono::NaiveDate::from_ymd_opt(ny, nm, 1),
            ) {
                (Some(a), Some(b)) => (b - a).num_days() as f64,
                _ => f64::NAN,
            }
        }
        _ => f64::NAN,
    }
}

/// Classic histograms of one step: output labels and buckets per group, in
/// order of first appearance. Groups are keyed by all labels but `le` (so
/// the name takes part); the output labels lack both name and `le`.
type BucketGroups = Vec<(Labels, Vec<Bucket>)>;

fn group_buckets(sh: &crate::eval::Shared<'_>, v: &[Elem], vpos: usize) -> BucketGroups {
    let mut index: FastMap<Labels, usize> = FastMap::default();
    let mut out: BucketGroups = Vec::new();
    for e in v {
        if e.h.is_some() {
            continue;
        }
        let le = e.metric.get("le").unwrap_or("");
        let upper = match parse_go_float(le) {
            Some(u) => u,
            None => {
                let name = e.metric.metric_name().unwrap_or("");
                let mut msg =
                    format!("bucket label \"le\" is missing or has a malformed value of {le:?}");
                if !name.is_empty() {
                    msg.push_str(&format!(" for metric name {name:?}"));
                }
                sh.warn(&msg, vpos);
                continue;
            }
        };
        let key = Labels::from_sorted(e.metric.iter().filter(|l| l.name != "le"));
        match index.get(&key) {
            Some(&i) => out[i].1.push(Bucket { upper, count: e.v }),
            None => {
                let metric = Labels::from_sorted(
                    e.metric
                        .iter()
                        .filter(|l| l.name != "le" && l.name != "__name__"),
                );
                index.insert(key, out.len());
                out.push((metric, vec![Bucket { upper, count: e.v }]));
            }
        }
    }
    out
}

/// histogram_quantile(s) over classic `le` buckets, for one step.
fn classic_histogram_quantiles(
    sh: &crate::eval::Shared<'_>,
    v: &[Elem],
    qs: &[f64],
    label: Option<&str>,
    vpos: usize,
) -> Vec<Elem> {
    let (natives, groups) = split_histograms(sh, v, vpos);
    let mut out = Vec::new();
    for q in qs {
        for e in &natives {
            let Some(h) = &e.h else { continue };
            let (val, note) = crate::hist::quantile(*q, h);
            note_quantile(sh, note, &e.metric, vpos);
            let metric = match label {
                Some(l) => set_label(&e.metric, l, &format_openmetrics_float(*q)),
                None => e.metric.clone(),
            };
            out.push(Elem::float(metric, 0, val, true));
        }
        for (metric, buckets) in &groups {
            let mut b = buckets.clone();
            let (val, forced) = bucket_quantile(*q, &mut b);
            if forced {
                sh.info(
                    "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)",
                    vpos,
                );
            }
            let metric = match label {
                Some(l) => set_label(metric, l, &format_openmetrics_float(*q)),
                None => metric.clone(),
            };
            out.push(Elem {
                metric,
                t: 0,
                v: val,
                h: None,
                drop_name: true,
            });
        }
    }
    out
}

/// histogram_fraction over classic `le` buckets, for one step.
fn classic_histogram_fraction(
    sh: &crate::eval::Shared<'_>,
    v: &[Elem],
    lower: f64,
    upper: f64,
    vpos: usize,
) -> Vec<Elem> {
    let (natives, groups) = split_histograms(sh, v, vpos);
    let mut out = Vec::new();
    for e in &natives {
        let Some(h) = &e.h else { continue };
        let (val, nans) = crate::hist::fraction(lower, upper, h);
        if nans {
            sh.info(
                &with_metric_name(
                    "input to histogram_fraction has NaN observations, which are excluded from all fractions",
                    &e.metric,
                ),
                vpos,
            );
        }
        out.push(Elem::float(e.metric.clone(), 0, val, true));
    }
    out.extend(groups.into_iter().map(|(metric, mut b)| Elem {
        metric,
        t: 0,
        v: bucket_fraction(lower, upper, &mut b),
        h: None,
        drop_name: true,
    }));
    out
}

/// Appends ` for metric name "x"` when the metric has a name.
fn with_metric_name(msg: &str, metric: &Labels) -> String {
    match metric.metric_name() {
        Some(n) if !n.is_empty() => format!("{msg} for metric name {n:?}"),
        _ => msg.to_string(),
    }
}

fn note_quantile(
    sh: &crate::eval::Shared<'_>,
    note: crate::hist::QuantileNote,
    metric: &Labels,
    vpos: usize,
) {
    let msg = match note {
        crate::hist::QuantileNote::None => return,
        crate::hist::QuantileNote::NanResult => {
            "input to histogram_quantile has NaN observations, result is NaN"
        }
        crate::hist::QuantileNote::NanSkew => {
            "input to histogram_quantile has NaN observations, result is skewed higher"
        }
    };
    sh.info(&with_metric_name(msg, metric), vpos);
}

/// The native histograms of a step and the classic bucket groups, minus
/// both where a native histogram and classic buckets share labels (with a
/// warning), as Prometheus's `resetHistograms`.
fn split_histograms<'v>(
    sh: &crate::eval::Shared<'_>,
    v: &'v [Elem],
    vpos: usize,
) -> (Vec<&'v Elem>, BucketGroups) {
    let mut groups = group_buckets(sh, v, vpos);
    let mut natives = Vec::new();
    for e in v.iter().filter(|e| e.h.is_some()) {
        // Group keys are the labels without `le`; compare through the
        // output labels plus name.
        let clash = groups.iter().position(|(m, _)| {
            m == &Labels::from_sorted(e.metric.iter().filter(|l| l.name != "__name__"))
                && group_name_matches(v, m, e.metric.metric_name())
        });
        if let Some(i) = clash {
            sh.warn(
                &with_metric_name(
                    "vector contains a mix of classic and native histograms",
                    &e.metric,
                ),
                vpos,
            );
            groups.remove(i);
            continue;
        }
        natives.push(e);
    }
    (natives, groups)
}

/// Whether some classic bucket of the step with output labels `m` has the
/// metric name `name`.
fn group_name_matches(v: &[Elem], m: &Labels, name: Option<&str>) -> bool {
    v.iter().any(|b| {
        b.h.is_none()
            && b.metric.metric_name() == name
            && &Labels::from_sorted(
                b.metric
                    .iter()
                    .filter(|l| l.name != "le" && l.name != "__name__"),
            ) == m
    })
}

/// Go's `strconv.ParseFloat` for the values a `le` label holds.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t != s {
        return None;
    }
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    cleaned.parse::<f64>().ok()
}

/// `labels.FormatOpenMetricsFloat`.
fn format_openmetrics_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let s = crate::value::format_g(f);
    if f == f.trunc() && !s.contains('e') && !s.contains('.') {
        return format!("{s}.0");
    }
    s
}

fn range_func(func: RangeFunc, w: &Win<'_>) -> R<Option<f64>> {
    let s = w.samples;
    if w.mode != SelMode::Plain {
        return Ok(match func {
            RangeFunc::Rate => extended_rate(w, true, true),
            RangeFunc::Increase => extended_rate(w, true, false),
            RangeFunc::Delta => extended_rate(w, false, false),
            RangeFunc::Resets | RangeFunc::Changes => {
                // The last sample at or before the range start anchors the
                // count; there must be one after it.
                let first = s.partition_point(|p| p.t <= w.range_start);
                if first >= s.len() {
                    None
                } else {
                    let plain = Win {
                        samples: &s[first.saturating_sub(1)..],
                        mode: SelMode::Plain,
                        ..*w
                    };
                    range_func(func, &plain)?
                }
            }
            _ => None,
        });
    }
    Ok(match func {
        RangeFunc::Rate => extrapolated_rate(w, true, true),
        RangeFunc::Increase => extrapolated_rate(w, true, false),
        RangeFunc::Delta => extrapolated_rate(w, false, false),
        RangeFunc::Irate => instant_value(s, true),
        RangeFunc::Idelta => instant_value(s, false),
        RangeFunc::Deriv => {
            if s.len() < 2 {
                None
            } else {
                Some(linear_regression(s, s[0].t).0)
            }
        }
        RangeFunc::PredictLinear => {
            if s.len() < 2 {
                None
            } else {
                let d = w.scalars.first().copied().unwrap_or(f64::NAN);
                let (slope, intercept) = linear_regression(s, w.ts);
                Some(slope * d + intercept)
            }
        }
        RangeFunc::Resets => {
            let mut n = 0;
            for p in s.windows(2) {
                if p[1].v < p[0].v {
                    n += 1;
                }
            }
            Some(n as f64)
        }
        RangeFunc::Changes => {
            let mut n = 0;
            for p in s.windows(2) {
                if p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()) {
                    n += 1;
                }
            }
            Some(n as f64)
        }
        RangeFunc::AvgOverTime => Some(avg_over_time(s)),
        RangeFunc::SumOverTime => {
            let (mut sum, mut c) = (0.0, 0.0);
            for p in s {
                (sum, c) = kahan_inc(p.v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        RangeFunc::MinOverTime | RangeFunc::MaxOverTime => {
            let max = func == RangeFunc::MaxOverTime;
            let mut v = s[0].v;
            for p in s {
                let better = if max { p.v > v } else { p.v < v };
                if better || v.is_nan() {
                    v = p.v;
                }
            }
            Some(v)
        }
        RangeFunc::TsOfMaxOverTime | RangeFunc::TsOfMinOverTime => {
            let max = func == RangeFunc::TsOfMaxOverTime;
            let mut v = s[0].v;
            let mut t = s[0].t;
            for p in s {
                let better = if max { p.v >= v } else { p.v <= v };
                if better || v.is_nan() {
                    v = p.v;
                    t = p.t;
                }
            }
            Some(t as f64 / 1000.0)
        }
        RangeFunc::TsOfFirstOverTime => Some(s[0].t as f64 / 1000.0),
        RangeFunc::TsOfLastOverTime => Some(s[s.len() - 1].t as f64 / 1000.0),
        RangeFunc::CountOverTime => Some(s.len() as f64),
        RangeFunc::LastOverTime => Some(s[s.len() - 1].v),
        RangeFunc::FirstOverTime => Some(s[0].v),
        RangeFunc::PresentOverTime | RangeFunc::AbsentOverTime => Some(1.0),
        RangeFunc::StddevOverTime | RangeFunc::StdvarOverTime => {
            let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for p in s {
                count += 1.0;
                let delta = p.v - (mean + c_mean);
                (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
                (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
            }
            let var = (aux + c_aux) / count;
            Some(if func == RangeFunc::StddevOverTime {
                var.sqrt()
            } else {
                var
            })
        }
        RangeFunc::QuantileOverTime => {
            let q = w.scalars.first().copied().unwrap_or(f64::NAN);
            let mut vals: Vec<f64> = s.iter().map(|p| p.v).collect();
            Some(quantile(q, &mut vals))
        }
        RangeFunc::MadOverTime => {
            if s.iter().any(|p| p.v.is_nan()) {
                return Ok(Some(f64::NAN));
            }
            let mut vals: Vec<f64> = s.iter().map(|p| p.v).collect();
            let median = quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = s.iter().map(|p| (p.v - median).abs()).collect();
            Some(quantile(0.5, &mut dev))
        }
        RangeFunc::DoubleExponentialSmoothing => {
            let sf = w.scalars.first().copied().unwrap_or(f64::NAN);
            let tf = w.scalars.get(1).copied().unwrap_or(f64::NAN);
            if !(sf > 0.0 && sf < 1.0) {
                return Err(QueryError::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(QueryError::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
            if s.len() < 2 {
                return Ok(None);
            }
            let (mut s0, mut s1) = (0.0, s[0].v);
            let mut b = s[1].v - s[0].v;
            for (i, p) in s.iter().enumerate().skip(1) {
                let x = sf * p.v;
                b = if i - 1 == 0 {
                    b
                } else {
                    tf * (s1 - s0) + (1.0 - tf) * b
                };
                let y = (1.0 - sf) * (s1 + b);
                s0 = s1;
                s1 = x + y;
            }
            Some(s1)
        }
    })
}

fn avg_over_time(s: &[Sample]) -> f64 {
    let (mut sum, mut count) = (s[0].v, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for p in &s[1..] {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(p.v, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(p.v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn extrapolated_rate(w: &Win<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let s = w.samples;
    if s.len() < 2 {
        return None;
    }
    let first = s[0];
    let last = s[s.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        for p in s.windows(2) {
            if p[1].v < p[0].v {
                result += p[0].v;
            }
        }
    }
    let mut duration_to_start = (first.t - w.range_start) as f64 / 1000.0;
    let mut duration_to_end = (w.range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg = sampled / (s.len() - 1) as f64;
    let threshold = avg * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = avg / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < duration_to_start {
            duration_to_start = to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = avg / 2.0;
    }
    let mut factor = (sampled + duration_to_start + duration_to_end) / sampled;
    if is_rate {
        factor /= w.range as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let a = s[s.len() - 2];
    let b = s[s.len() - 1];
    let interval = b.t - a.t;
    if interval == 0 {
        return None;
    }
    let mut v = b.v;
    if !is_rate || b.v >= a.v || b.v.is_nan() || a.v.is_nan() {
        v = b.v - a.v;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares regression; returns (slope, intercept at `intercept_t`).
fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = s[0].v;
    let mut const_y = true;
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// Where a range function over histograms reports annotations.
struct HistCtx<'a, 'b> {
    sh: &'a crate::eval::Shared<'b>,
    metric: &'a Labels,
    pos: usize,
}

impl HistCtx<'_, '_> {
    fn name(&self) -> &str {
        self.metric.metric_name().unwrap_or("")
    }
    fn warn(&self, msg: &str) {
        self.sh.warn(msg, self.pos);
    }
    fn info(&self, msg: &str) {
        self.sh.info(msg, self.pos);
    }
    fn mixed(&self) {
        self.warn(&format!(
            "encountered a mix of histograms and floats for metric name {:?}",
            self.name()
        ));
    }
    fn ignored(&self) {
        self.info(&format!(
            "ignored histograms in a range containing both floats and histograms for metric name {:?}",
            self.name()
        ));
    }
    fn mixed_schemas(&self) {
        self.warn(&format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
            self.name()
        ));
    }
    fn not_counter(&self) {
        self.warn(&format!(
            "this native histogram metric is not a counter: {:?}",
            self.name()
        ));
    }
    fn not_gauge(&self) {
        self.warn(&format!(
            "this native histogram metric is not a gauge: {:?}",
            self.name()
        ));
    }
    fn reconciled(&self, what: &str) {
        self.info(&format!(
            "mismatched custom buckets were reconciled during {what}"
        ));
    }
}

/// A range function over a window that holds histograms (and maybe
/// floats): a float result, a histogram result, or nothing.
fn range_func_hist(
    func: RangeFunc,
    w: &Win<'_>,
    hs: &[HPoint],
    cx: &HistCtx<'_, '_>,
) -> R<Option<(f64, Option<H>)>> {
    let fs = w.samples;
    let float_only = |cx: &HistCtx<'_, '_>, min_floats: usize| -> R<Option<(f64, Option<H>)>> {
        if fs.len() < min_floats.max(1) {
            if min_floats > 1 && fs.len() == 1 {
                cx.ignored();
            }
            return Ok(None);
        }
        let r = range_func(func, w)?;
        if r.is_some() {
            cx.ignored();
        }
        Ok(r.map(|v| (v, None)))
    };
    Ok(match func {
        RangeFunc::Rate | RangeFunc::Increase | RangeFunc::Delta if w.mode != SelMode::Plain => {
            if !fs.is_empty() {
                cx.mixed();
                return Ok(None);
            }
            extended_hist_rate(w, hs, func != RangeFunc::Delta, func == RangeFunc::Rate, cx)
                .map(|h| (0.0, Some(h)))
        }
        RangeFunc::Resets | RangeFunc::Changes if w.mode == SelMode::Anchored => {
            // Anchor at the last sample (of either kind) at or before the
            // range start; there must be one after it.
            let lf = fs.partition_point(|p| p.t <= w.range_start);
            let lh = hs.partition_point(|p| p.t <= w.range_start);
            if lf >= fs.len() && lh >= hs.len() {
                return Ok(None);
            }
            let (ff, fh) = match (lf.checked_sub(1), lh.checked_sub(1)) {
                (None, None) => (0, 0),
                (Some(a), None) => (a, lh),
                (None, Some(b)) => (lf, b),
                (Some(a), Some(b)) => {
                    if fs[a].t >= hs[b].t {
                        (a, lh)
                    } else {
                        (lf, b)
                    }
                }
            };
            let plain = Win {
                samples: &fs[ff..],
                mode: SelMode::Plain,
                ..*w
            };
            if fh >= hs.len() {
                return Ok(range_func(func, &plain)?.map(|v| (v, None)));
            }
            return range_func_hist(func, &plain, &hs[fh..], cx);
        }
        _ if w.mode != SelMode::Plain => None,
        RangeFunc::Rate | RangeFunc::Increase | RangeFunc::Delta => {
            if !fs.is_empty() {
                cx.mixed();
                return Ok(None);
            }
            hist_rate(w, hs, func != RangeFunc::Delta, func == RangeFunc::Rate, cx)
                .map(|h| (0.0, Some(h)))
        }
        RangeFunc::Irate | RangeFunc::Idelta => {
            let is_rate = func == RangeFunc::Irate;
            if fs.len() + hs.len() < 2 {
                return Ok(None);
            }
            // The last two samples of either kind.
            let mut last: Vec<(i64, Option<&H>, f64)> = Vec::new();
            for p in &fs[fs.len().saturating_sub(2)..] {
                last.push((p.t, None, p.v));
            }
            for p in &hs[hs.len().saturating_sub(2)..] {
                last.push((p.t, Some(&p.h), 0.0));
            }
            last.sort_by_key(|x| x.0);
            let (a, b) = (last[last.len() - 2], last[last.len() - 1]);
            let interval = b.0 - a.0;
            if interval == 0 {
                return Ok(None);
            }
            match (a.1, b.1) {
                (Some(ha), Some(hb)) => {
                    if is_rate
                        && (ha.counter_reset_hint
                            == pharos_model::histogram::CounterResetHint::Gauge
                            || hb.counter_reset_hint
                                == pharos_model::histogram::CounterResetHint::Gauge)
                    {
                        cx.not_counter();
                    }
                    if !is_rate
                        && (ha.counter_reset_hint
                            != pharos_model::histogram::CounterResetHint::Gauge
                            || hb.counter_reset_hint
                                != pharos_model::histogram::CounterResetHint::Gauge)
                    {
                        cx.not_gauge();
                    }
                    let mut r = (**hb).clone();
                    if !is_rate || !hb.detect_reset(ha) {
                        match r.sub_with_info(ha) {
                            Err(_) => {
                                cx.mixed_schemas();
                                return Ok(None);
                            }
                            Ok(i) if i.nhcb_bounds_reconciled => cx.reconciled("subtraction"),
                            Ok(_) => {}
                        }
                    }
                    r.counter_reset_hint = pharos_model::histogram::CounterResetHint::Gauge;
                    r.compact(0);
                    if is_rate {
                        r.div(interval as f64 / 1000.0);
                    }
                    Some((0.0, Some(H::new(r))))
                }
                (None, None) => {
                    let mut v = b.2;
                    if !is_rate || b.2 >= a.2 || b.2.is_nan() || a.2.is_nan() {
                        v = b.2 - a.2;
                    }
                    if is_rate {
                        v /= interval as f64 / 1000.0;
                    }
                    Some((v, None))
                }
                _ => {
                    cx.mixed();
                    None
                }
            }
        }
        RangeFunc::Resets | RangeFunc::Changes => {
            let mut merged: Vec<(i64, Option<&H>, f64)> = fs
                .iter()
                .map(|p| (p.t, None, p.v))
                .chain(hs.iter().map(|p| (p.t, Some(&p.h), 0.0)))
                .collect();
            merged.sort_by_key(|x| x.0);
            let mut n = 0;
            for pair in merged.windows(2) {
                let (p, c) = (pair[0], pair[1]);
                let hit = match (p.1, c.1) {
                    (None, None) => {
                        if func == RangeFunc::Resets {
                            c.2 < p.2
                        } else {
                            c.2 != p.2 && !(c.2.is_nan() && p.2.is_nan())
                        }
                    }
                    (Some(ph), Some(ch)) => {
                        if func == RangeFunc::Resets {
                            ch.detect_reset(ph)
                        } else {
                            !crate::eval::hist_equals(ch, ph)
                        }
                    }
                    _ => true,
                };
                if hit {
                    n += 1;
                }
            }
            Some((n as f64, None))
        }
        RangeFunc::SumOverTime | RangeFunc::AvgOverTime => {
            if !fs.is_empty() {
                cx.mixed();
                return Ok(None);
            }
            let mut sum = (*hs[0].h).clone();
            let mut comp = None;
            let (mut reset_seen, mut not_reset_seen, mut reconciled) = (false, false, false);
            let mut track = |h: &pharos_model::histogram::FloatHistogram| match h.counter_reset_hint
            {
                pharos_model::histogram::CounterResetHint::CounterReset => reset_seen = true,
                pharos_model::histogram::CounterResetHint::NotCounterReset => not_reset_seen = true,
                _ => {}
            };
            track(&sum);
            let mut avg = (func == RangeFunc::AvgOverTime).then(|| hist::HistAvg::new(&sum));
            for p in &hs[1..] {
                track(&p.h);
                let r = match avg.as_mut() {
                    Some(a) => a.add(&p.h),
                    None => hist::kahan_add(&mut sum, &mut comp, &p.h),
                };
                match r {
                    Err(_) => {
                        cx.mixed_schemas();
                        return Ok(None);
                    }
                    Ok(i) => reconciled |= i.nhcb_bounds_reconciled,
                }
            }
            match avg {
                Some(a) => sum = a.finish(),
                None => hist::kahan_finish(&mut sum, comp),
            }
            if reset_seen && not_reset_seen {
                cx.warn("conflicting counter resets during histogram aggregation");
            }
            if reconciled {
                cx.reconciled("aggregation");
            }
            sum.compact(0);
            Some((0.0, Some(H::new(sum))))
        }
        RangeFunc::CountOverTime => Some(((fs.len() + hs.len()) as f64, None)),
        RangeFunc::PresentOverTime | RangeFunc::AbsentOverTime => Some((1.0, None)),
        RangeFunc::LastOverTime => {
            let h = &hs[hs.len() - 1];
            match fs.last() {
                Some(f) if f.t > h.t => Some((f.v, None)),
                _ => Some((0.0, Some(h.h.clone()))),
            }
        }
        RangeFunc::FirstOverTime => {
            let h = &hs[0];
            match fs.first() {
                Some(f) if f.t < h.t => Some((f.v, None)),
                _ => Some((0.0, Some(h.h.clone()))),
            }
        }
        RangeFunc::TsOfLastOverTime => {
            let t = hs[hs.len() - 1].t.max(fs.last().map_or(i64::MIN, |f| f.t));
            Some((t as f64 / 1000.0, None))
        }
        RangeFunc::TsOfFirstOverTime => {
            let t = hs[0].t.min(fs.first().map_or(i64::MAX, |f| f.t));
            Some((t as f64 / 1000.0, None))
        }
        RangeFunc::Deriv | RangeFunc::PredictLinear | RangeFunc::DoubleExponentialSmoothing => {
            return float_only(cx, 2);
        }
        RangeFunc::MinOverTime
        | RangeFunc::MaxOverTime
        | RangeFunc::TsOfMaxOverTime
        | RangeFunc::TsOfMinOverTime
        | RangeFunc::StddevOverTime
        | RangeFunc::StdvarOverTime
        | RangeFunc::QuantileOverTime
        | RangeFunc::MadOverTime => return float_only(cx, 1),
    })
}

/// rate/increase/delta over histograms (Prometheus's `histogramRate`
/// plus the extrapolation of `extrapolatedRate`).
fn hist_rate(
    w: &Win<'_>,
    hs: &[HPoint],
    is_counter: bool,
    is_rate: bool,
    cx: &HistCtx<'_, '_>,
) -> Option<H> {
    use pharos_model::histogram::{CounterResetHint, FloatHistogram};
    if hs.len() < 2 {
        return None;
    }
    let first = &hs[0];
    let last = &hs[hs.len() - 1];
    let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
    if is_counter && (gauge(&first.h) || gauge(&last.h)) {
        cx.not_counter();
    }
    let mut prev: FloatHistogram = (*first.h).clone();
    if is_counter && hs[1].h.detect_reset(&first.h) {
        prev = FloatHistogram {
            schema: hs[1].h.schema,
            custom_values: hs[1].h.custom_values.clone(),
            ..Default::default()
        };
    }
    let using_custom = prev.uses_custom_buckets();
    if last.h.uses_custom_buckets() != using_custom {
        cx.mixed_schemas();
        return None;
    }
    let mut min_schema = last.h.schema.min(prev.schema);
    for p in &hs[1..hs.len() - 1] {
        if !is_counter {
            continue;
        }
        if gauge(&p.h) {
            cx.not_counter();
        }
        min_schema = min_schema.min(p.h.schema);
        if p.h.uses_custom_buckets() != using_custom {
            cx.mixed_schemas();
            return None;
        }
    }
    let mut h = (*last.h).clone();
    h.reduce_resolution(min_schema);
    match h.sub_with_info(&prev) {
        Err(_) => {
            cx.mixed_schemas();
            return None;
        }
        Ok(i) if i.nhcb_bounds_reconciled => cx.reconciled("subtraction"),
        Ok(_) => {}
    }
    if is_counter {
        let mut prev_ref: &FloatHistogram = &prev;
        for p in &hs[1..] {
            if p.h.detect_reset(prev_ref) {
                match h.add_with_info(prev_ref) {
                    Err(_) => {
                        cx.mixed_schemas();
                        return None;
                    }
                    Ok(i) if i.nhcb_bounds_reconciled => cx.reconciled("addition"),
                    Ok(_) => {}
                }
            }
            prev_ref = &p.h;
        }
    } else if !gauge(&first.h) || !gauge(&last.h) {
        cx.not_gauge();
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact(0);
    // Extrapolation as for floats.
    let first_t = first.t;
    let last_t = last.t;
    let mut duration_to_start = (first_t - w.range_start) as f64 / 1000.0;
    let mut duration_to_end = (w.range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / (hs.len() - 1) as f64;
    let threshold = avg * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = avg / 2.0;
    }
    if is_counter && h.count > 0.0 && first.h.count >= 0.0 {
        let to_zero = sampled * (first.h.count / h.count);
        if to_zero < duration_to_start {
            duration_to_start = to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = avg / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + duration_to_start + duration_to_end) / sampled
    } else {
        1.0
    };
    if is_rate {
        factor /= w.range as f64 / 1000.0;
    }
    h.mul(factor);
    Some(H::new(h))
}

/// Go's `math.Max` (NaN wins).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min` (NaN wins).
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Checks that `func` may take an `anchored`/`smoothed` range selector.
fn check_mode_function(mode: SelMode, func: &str) -> R<()> {
    let (allowed, list, name): (&[&str], &str, &str) = match mode {
        SelMode::Anchored => (
            &["changes", "delta", "increase", "rate", "resets"],
            "changes, delta, increase, rate, resets",
            "anchored",
        ),
        SelMode::Smoothed => (
            &["delta", "increase", "rate"],
            "delta, increase, rate",
            "smoothed",
        ),
        SelMode::Plain => return Ok(()),
    };
    if allowed.contains(&func) {
        return Ok(());
    }
    Err(QueryError::Execution(format!(
        "{name} modifier can only be used with: {list} - not with {func}"
    )))
}

/// Linear interpolation at `t`; a counter that went down is taken to have
/// restarted from zero.
fn interpolate(p1: Sample, p2: Sample, t: i64, is_counter: bool) -> f64 {
    let mut y1 = p1.v;
    let y2 = p2.v;
    if is_counter && y2 < y1 {
        y1 = 0.0;
    }
    y1 + (y2 - y1) * (t - p1.t) as f64 / (p2.t - p1.t) as f64
}

/// Index of the first sample of `f[..n]` with `pred` true (`n` if none),
/// as Go's `sort.Search(n, ...)`.
fn search(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let m = lo + (hi - lo) / 2;
        if pred(m) {
            hi = m;
        } else {
            lo = m + 1;
        }
    }
    lo
}

/// Boundary indices of an extended window: the last sample at or before
/// the range start (or the first), and for `smoothed` the first sample at
/// or after the range end (or the last); `None` when nothing is in range.
fn extended_bounds(ts: &[i64], start: i64, end: i64, smoothed: bool) -> Option<(usize, usize)> {
    if ts.is_empty() {
        return None;
    }
    let mut last = ts.len() - 1;
    let first = search(last, |i| ts[i] > start).saturating_sub(1);
    if smoothed {
        last = search(last, |i| ts[i] >= end);
    }
    if ts[last] <= start || (smoothed && ts[first] > end) {
        return None;
    }
    Some((first, last))
}

/// rate/increase/delta over an `anchored` or `smoothed` window
/// (Prometheus's `extendedRate`): the difference between the values at the
/// range bounds (the anchoring sample, or interpolated), corrected for
/// counter resets, without extrapolation.
fn extended_rate(w: &Win<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let f = w.samples;
    let smoothed = w.mode == SelMode::Smoothed;
    let ts: Vec<i64> = f.iter().map(|p| p.t).collect();
    let (first, last) = extended_bounds(&ts, w.range_start, w.range_end, smoothed)?;
    let left = if smoothed && f[first].t < w.range_start {
        interpolate(f[first], f[first + 1], w.range_start, is_counter)
    } else {
        f[first].v
    };
    let right = if smoothed && last > 0 && f[last].t > w.range_end {
        interpolate(f[last - 1], f[last], w.range_end, is_counter)
    } else {
        f[last].v
    };
    let mut result = right - left;
    if is_counter {
        // Only samples strictly inside the range; the bounds handle theirs.
        let lo = if f[first].t <= w.range_start {
            first + 1
        } else {
            first
        };
        let hi = if f[last].t >= w.range_end {
            last
        } else {
            last + 1
        };
        let mut correction = 0.0;
        let mut prev = left;
        if lo < hi {
            for p in &f[lo..hi] {
                if p.v < prev {
                    correction += prev;
                }
                prev = p.v;
            }
        }
        if right < prev {
            correction += prev;
        }
        result += correction;
    }
    Some(finish_rate(result, w, is_rate))
}

fn finish_rate(v: f64, w: &Win<'_>, is_rate: bool) -> f64 {
    if is_rate {
        v / (w.range as f64 / 1000.0)
    } else {
        v
    }
}

/// Histogram interpolation at `t` between two samples (Prometheus's
/// `interpolateHistograms`).
fn interpolate_hist(
    a: &HPoint,
    b: &HPoint,
    t: i64,
    is_counter: bool,
    cx: &HistCtx<'_, '_>,
) -> Option<pharos_model::histogram::FloatHistogram> {
    if t == a.t {
        return Some((*a.h).clone());
    }
    if t == b.t {
        return Some((*b.h).clone());
    }
    let fraction = (t - a.t) as f64 / (b.t - a.t) as f64;
    let mut r = (*b.h).clone();
    if is_counter && b.h.detect_reset(&a.h) {
        r.mul(fraction);
        return Some(r);
    }
    match r.sub_with_info(&a.h) {
        Err(_) => {
            cx.mixed_schemas();
            return None;
        }
        Ok(i) if i.nhcb_bounds_reconciled => cx.reconciled("subtraction"),
        Ok(_) => {}
    }
    r.mul(fraction);
    match r.add_with_info(&a.h) {
        Err(_) => {
            cx.mixed_schemas();
            return None;
        }
        Ok(i) if i.nhcb_bounds_reconciled => cx.reconciled("addition"),
        Ok(_) => {}
    }
    Some(r)
}

/// rate/increase/delta of histograms over an `anchored` or `smoothed`
/// window (Prometheus's `extendedHistogramRate`).
fn extended_hist_rate(
    w: &Win<'_>,
    h: &[HPoint],
    is_counter: bool,
    is_rate: bool,
    cx: &HistCtx<'_, '_>,
) -> Option<H> {
    use pharos_model::histogram::CounterResetHint;
    let smoothed = w.mode == SelMode::Smoothed;
    let ts: Vec<i64> = h.iter().map(|p| p.t).collect();
    let (first, last) = extended_bounds(&ts, w.range_start, w.range_end, smoothed)?;
    let custom = h[first].h.uses_custom_buckets();
    for p in &h[first..=last] {
        if p.h.uses_custom_buckets() != custom {
            cx.mixed_schemas();
            return None;
        }
        if is_counter && p.h.counter_reset_hint == CounterResetHint::Gauge {
            cx.not_counter();
        }
    }
    let left = if smoothed && h[first].t < w.range_start {
        interpolate_hist(&h[first], &h[first + 1], w.range_start, is_counter, cx)?
    } else {
        (*h[first].h).clone()
    };
    let right = if smoothed && last > 0 && h[last].t > w.range_end {
        interpolate_hist(&h[last - 1], &h[last], w.range_end, is_counter, cx)?
    } else {
        (*h[last].h).clone()
    };
    let gauge = |x: &pharos_model::histogram::FloatHistogram| {
        x.counter_reset_hint == CounterResetHint::Gauge
    };
    if !is_counter && (!gauge(&left) || !gauge(&right)) {
        cx.not_gauge();
    }
    let mut result = right.clone();
    match result.sub_with_info(&left) {
        Err(_) => {
            cx.mixed_schemas();
            return None;
        }
        Ok(i) if i.nhcb_bounds_reconciled => cx.reconciled("subtraction"),
        Ok(_) => {}
    }
    if is_counter {
        // Resets strictly inside the window (the bounds handle their own).
        let mut from = first + 1;
        let mut prev: &pharos_model::histogram::FloatHistogram = &left;
        if smoothed
            && h[first].t < w.range_start
            && first + 1 < h.len()
            && h[first + 1].h.detect_reset(&h[first].h)
        {
            prev = &h[first + 1].h;
            from += 1;
        }
        let to = last as isize - 1;
        let mut correction: Option<pharos_model::histogram::FloatHistogram> = None;
        let mut add = |c: &pharos_model::histogram::FloatHistogram| -> bool {
            match correction.as_mut() {
                None => {
                    correction = Some(c.clone());
                    true
                }
                Some(acc) => match acc.add_with_info(c) {
                    Err(_) => {
                        cx.mixed_schemas();
                        false
                    }
                    Ok(i) => {
                        if i.nhcb_bounds_reconciled {
                            cx.reconciled("addition");
                        }
                        true
                    }
                },
            }
        };
        if (from as isize) <= to + 1 {
            if (from as isize) <= to {
                for p in &h[from..=(to as usize)] {
                    if p.h.detect_reset(prev) && !add(prev) {
                        return None;
                    }
                    prev = &p.h;
                }
            }
            if right.detect_reset(prev) && !add(prev) {
                return None;
            }
        }
        if let Some(c) = correction {
            match result.add_with_info(&c) {
                Err(_) => {
                    cx.mixed_schemas();
                    return None;
                }
                Ok(i) if i.nhcb_bounds_reconciled => cx.reconciled("addition"),
                Ok(_) => {}
            }
        }
    }
    if is_rate {
        result.div(w.range as f64 / 1000.0);
    }
    result.counter_reset_hint = CounterResetHint::Gauge;
    result.compact(0);
    Some(H::new(result))
}

impl Evaluator<'_, '_> {
    /// A `smoothed` instant-vector selector (Prometheus's `smoothSeries`):
    /// at each step the sample at the step, else the interpolation between
    /// the samples around it (within the lookback delta), else the last
    /// sample before it.
    pub(crate) fn eval_smoothed_selector(&mut self, sel: &Selector) -> R<Vec<Series>> {
        let raw = self.fetch(sel, true)?;
        let lb = self.sh.lookback;
        let n = self.steps();
        let mut out = Vec::new();
        for rs in raw.iter() {
            let cx = HistCtx {
                sh: self.sh,
                metric: &rs.labels,
                pos: sel.pos,
            };
            let mut pts = Vec::new();
            let mut hpts = Vec::new();
            for i in 0..n {
                let ts = self.ts_at(i);
                let data = sel.at.unwrap_or(ts) - sel.offset;
                let (lo, hi) = (data - lb, data + lb);
                let f = &rs.samples[rs.samples.partition_point(|p| p.t <= lo)
                    ..rs.samples.partition_point(|p| p.t <= hi)];
                let h = &rs.hists[rs.hists.partition_point(|p| p.t <= lo)
                    ..rs.hists.partition_point(|p| p.t <= hi)];
                if f.is_empty() && h.is_empty() {
                    continue;
                }
                if !f.is_empty() && !h.is_empty() {
                    cx.mixed();
                    continue;
                }
                if !h.is_empty() {
                    let k = h.partition_point(|p| p.t < data);
                    if k < h.len() && h[k].t == data {
                        hpts.push(HPoint {
                            t: ts,
                            h: h[k].h.clone(),
                        });
                    } else if k > 0 && k < h.len() {
                        let (a, b) = (&h[k - 1], &h[k]);
                        if a.h.uses_custom_buckets() != b.h.uses_custom_buckets() {
                            cx.mixed_schemas();
                            continue;
                        }
                        use pharos_model::histogram::CounterResetHint::Gauge;
                        let is_counter =
                            a.h.counter_reset_hint != Gauge || b.h.counter_reset_hint != Gauge;
                        if let Some(x) = interpolate_hist(a, b, data, is_counter, &cx) {
                            hpts.push(HPoint {
                                t: ts,
                                h: H::new(x),
                            });
                        }
                    } else if k > 0 {
                        let mut x = (*h[k - 1].h).clone();
                        x.counter_reset_hint = pharos_model::histogram::CounterResetHint::Unknown;
                        hpts.push(HPoint {
                            t: ts,
                            h: H::new(x),
                        });
                    }
                    continue;
                }
                let k = f.partition_point(|p| p.t < data);
                if k < f.len() && f[k].t == data {
                    pts.push(Sample { t: ts, v: f[k].v });
                } else if k > 0 && k < f.len() {
                    pts.push(Sample {
                        t: ts,
                        v: interpolate(f[k - 1], f[k], data, false),
                    });
                } else if k > 0 {
                    pts.push(Sample {
                        t: ts,
                        v: f[k - 1].v,
                    });
                }
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

    /// An `anchored`/`smoothed` range selector returned as is (Prometheus's
    /// `extendFloats`): the samples inside the range plus the values at its
    /// two bounds.
    pub(crate) fn eval_extended_matrix(&mut self, sel: &Selector, range: i64) -> R<Vec<Series>> {
        let raw = self.fetch(sel, true)?;
        let lb = self.sh.lookback;
        let smoothed = sel.mode == SelMode::Smoothed;
        let rt = sel.at.unwrap_or(self.start) - sel.offset;
        let (mint, maxt) = (rt - range, rt);
        let (lo, hi) = (mint - lb, if smoothed { maxt + lb } else { maxt });
        let mut out = Vec::new();
        for rs in raw.iter() {
            if rs.hists.iter().any(|p| p.t > lo && p.t <= hi) {
                let name = if smoothed { "smoothed" } else { "anchored" };
                return Err(QueryError::Execution(format!(
                    "{name} modifier is not supported with histograms"
                )));
            }
            let f = &rs.samples[rs.samples.partition_point(|p| p.t <= lo)
                ..rs.samples.partition_point(|p| p.t <= hi)];
            let ts: Vec<i64> = f.iter().map(|p| p.t).collect();
            let Some((first, last)) = extended_bounds(&ts, mint, maxt, smoothed) else {
                continue;
            };
            let left = if smoothed && f[first].t < mint {
                interpolate(f[first], f[first + 1], mint, false)
            } else {
                f[first].v
            };
            let right = if smoothed && last > 0 && f[last].t > maxt {
                interpolate(f[last - 1], f[last], maxt, false)
            } else {
                f[last].v
            };
            let a = if f[first].t <= mint { first + 1 } else { first };
            let b = if f[last].t >= maxt { last } else { last + 1 };
            let mut pts = vec![Sample { t: mint, v: left }];
            if a < b {
                pts.extend_from_slice(&f[a..b]);
            }
            pts.push(Sample { t: maxt, v: right });
            self.add_samples(pts.len())?;
            out.push(Series::floats(rs.labels.clone(), pts, false));
        }
        Ok(out)
    }
}

/// Labels identifying the target an info series describes.
const INFO_ID_LABELS: [&str; 2] = ["instance", "job"];

/// The `@` time and offset of the first selector of an expression
/// (pre-order), taking both from the enclosing subqueries while the
/// selector has no `@` (Prometheus's `infoSelectTimestampAndOffset`).
fn first_selector_times(n: &Node) -> Option<(Option<i64>, i64)> {
    fn walk(n: &Node, subs: &mut Vec<(Option<i64>, i64)>) -> Option<(Option<i64>, i64)> {
        match n {
            Node::VectorSel(s) | Node::MatrixSel { sel: s, .. } => {
                let (mut at, mut offset) = (s.at, s.offset);
                for (sat, soff) in subs.iter().rev() {
                    if at.is_some() {
                        break;
                    }
                    offset += soff;
                    at = *sat;
                }
                Some((at, offset))
            }
            Node::Subquery {
                expr, offset, at, ..
            } => {
                subs.push((*at, *offset));
                let r = walk(expr, subs);
                subs.pop();
                r
            }
            Node::Neg(expr) => walk(expr, subs),
            Node::Binary { lhs, rhs, .. } => walk(lhs, subs).or_else(|| walk(rhs, subs)),
            Node::Aggregate { expr, param, .. } => match param.as_deref() {
                Some(p) => walk(p, subs).or_else(|| walk(expr, subs)),
                None => walk(expr, subs),
            },
            Node::Call { args, .. } => args.iter().find_map(|a| walk(a, subs)),
            Node::Number(_) | Node::Str(_) => None,
        }
    }
    walk(n, &mut Vec::new())
}

/// Prometheus's `effectiveInfoNameMatchers`.
fn effective_info_name_matchers(ms: &[pharos_model::Matcher]) -> Vec<pharos_model::Matcher> {
    use pharos_model::{MatchOp as O, Matcher};
    if ms.iter().any(|m| matches!(m.op, O::Equal | O::Regex)) {
        return ms.to_vec();
    }
    if !ms.is_empty() {
        let mut out = Vec::with_capacity(ms.len() + 1);
        if let Ok(m) = Matcher::new(O::Regex, "__name__", ".+_info") {
            out.push(m);
        }
        out.extend(ms.iter().cloned());
        return out;
    }
    vec![Matcher::equal("__name__", "target_info")]
}

impl Evaluator<'_, '_> {
    /// The experimental `info(v, {selector})`: adds the data labels of the
    /// info series (by default `target_info`) that share `instance` and
    /// `job` with each series of `v` (Prometheus's `evalInfo`).
    fn eval_info(&mut self, args: &[Node]) -> R<Vec<Series>> {
        use pharos_model::Matcher;
        let base_node = args.first().ok_or_else(|| unsupported("info"))?;
        let mat = self.eval_matrix(base_node)?;
        // Data-label matchers by label name, and the info name matchers.
        let mut data: Vec<Matcher> = Vec::new();
        let mut name_ms: Vec<Matcher> = Vec::new();
        match args.get(1) {
            Some(Node::VectorSel(sel)) => {
                for m in sel.matcher_sets.first().into_iter().flatten() {
                    if m.name == crate::INFO_PLACEHOLDER {
                        continue;
                    }
                    if m.name == "__name__" {
                        name_ms.push(m.clone());
                    }
                    data.push(m.clone());
                }
            }
            Some(_) => {
                return Err(QueryError::Execution(
                    "expected label selectors as the second argument to \"info\" function".into(),
                ));
            }
            None => name_ms.push(Matcher::equal("__name__", "target_info")),
        }
        let effective = effective_info_name_matchers(&name_ms);
        let ignored = |l: &Labels| {
            let name = l.metric_name().unwrap_or("");
            effective.iter().all(|m| m.matches(name))
        };
        // Identifying label values of the series to enrich.
        let mut id_vals: Vec<(&str, Vec<String>)> = Vec::new();
        for s in mat.iter().filter(|s| !ignored(&s.metric)) {
            for l in INFO_ID_LABELS {
                let Some(v) = s.metric.get(l).filter(|v| !v.is_empty()) else {
                    continue;
                };
                match id_vals.iter_mut().find(|x| x.0 == l) {
                    Some(x) => {
                        if !x.1.iter().any(|y| y == v) {
                            x.1.push(v.to_string());
                        }
                    }
                    None => id_vals.push((l, vec![v.to_string()])),
                }
            }
        }
        let data_only: Vec<Matcher> = data
            .iter()
            .filter(|m| m.name != "__name__")
            .cloned()
            .collect();
        let mut info_mat: Vec<Series> = Vec::new();
        if !id_vals.is_empty() {
            let mut ms: Vec<Matcher> = Vec::new();
            for (l, vals) in &id_vals {
                let re: Vec<String> = vals.iter().map(|v| regex::escape(v)).collect();
                ms.push(
                    Matcher::new(pharos_model::MatchOp::Regex, l, &re.join("|"))
                        .map_err(|e| QueryError::Execution(e.to_string()))?,
                );
            }
            ms.extend(data_only.iter().cloned());
            ms.extend(effective_info_name_matchers(&name_ms));
            let (at, offset) = first_selector_times(base_node).unwrap_or((None, 0));
            let lookback = self.sh.lookback;
            let (start, end) = match at {
                Some(t) => (t, t),
                None => (self.start, self.end),
            };
            let hints = pharos_storage::SelectHints {
                start: start - lookback + 1 - offset,
                end: end - offset,
                step: self.interval,
                func: Some("info".into()),
                range: 0,
            };
            let mut ss = self.sh.querier.select(false, Some(&hints), &ms);
            let n = self.steps();
            while let Some(series) = ss.next() {
                let mut it = series.samples;
                let mut samples = Vec::new();
                let mut cur = it.seek(hints.start);
                while let Some(smp) = cur {
                    if smp.t > hints.end {
                        break;
                    }
                    if it.histogram().is_some() {
                        return Err(QueryError::Execution("info sample should be float".into()));
                    }
                    samples.push(smp);
                    cur = it.next();
                }
                // One point per step whose value is the sample's own time.
                let mut pts = Vec::new();
                for i in 0..n {
                    let ts = self.ts_at(i);
                    let rt = at.unwrap_or(ts) - offset;
                    if let Some(s) = Evaluator::lookup(&samples, rt, lookback) {
                        pts.push(Sample {
                            t: ts,
                            v: s.t as f64,
                        });
                    }
                }
                if !pts.is_empty() {
                    info_mat.push(Series::floats(series.labels, pts, false));
                }
            }
            if let Some(e) = ss.err() {
                return Err(QueryError::Storage(e));
            }
        }
        let info_names: Vec<String> = {
            let mut v: Vec<String> = info_mat
                .iter()
                .filter_map(|s| s.metric.metric_name().map(str::to_string))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let sig = |name: &str, l: &Labels| -> Labels {
            let mut b = pharos_model::LabelsBuilder::new();
            b.set("__name__", name);
            for id in INFO_ID_LABELS {
                if let Some(v) = l.get(id) {
                    b.set(id, v);
                }
            }
            b.build()
        };
        let info_sigs: Vec<Labels> = info_mat
            .iter()
            .map(|s| sig(s.metric.metric_name().unwrap_or(""), &s.metric))
            .collect();
        let all_match_empty = data_only.iter().all(|m| m.matches(""));
        let ignore_flags: Vec<bool> = mat.iter().map(|s| ignored(&s.metric)).collect();
        let base_sigs: Vec<Vec<Labels>> = mat
            .iter()
            .map(|s| info_names.iter().map(|n| sig(n, &s.metric)).collect())
            .collect();
        // range_eval hands out the base elements with their series index
        // through the signature slot.
        let base_idx: Vec<usize> = (0..mat.len()).collect();
        let info_idx: Vec<usize> = (0..info_mat.len()).collect();
        let sigs = [base_idx, info_idx];
        let inputs = [mat, info_mat];
        let data_names: Vec<String> = data_only.iter().map(|m| m.name.clone()).collect();
        let has_data = !data_only.is_empty();
        self.range_eval(&inputs, Some(&sigs), |_, v, sg| {
            // The newest info series per signature.
            let mut right: FastMap<&Labels, (f64, &Elem)> = FastMap::default();
            for (e, &k) in v[1].iter().zip(&sg[1]) {
                let s = &info_sigs[k];
                match right.get(s) {
                    Some((t, old)) => {
                        if *t < e.v {
                            right.insert(s, (e.v, e));
                        } else if *t == e.v {
                            return Err(QueryError::Execution(format!(
                                "found duplicate series for info metric: existing {} @ {}, new {} @ {}",
                                old.metric, *t as i64, e.metric, e.v as i64
                            )));
                        }
                    }
                    None => {
                        right.insert(s, (e.v, e));
                    }
                }
            }
            let mut out = Vec::with_capacity(v[0].len());
            for (e, &k) in v[0].iter().zip(&sg[0]) {
                if ignore_flags[k] {
                    out.push(e.clone());
                    continue;
                }
                let mut add: Vec<(String, String)> = Vec::new();
                let mut seen = false;
                for s in &base_sigs[k] {
                    let Some((_, is)) = right.get(s) else {
                        continue;
                    };
                    seen = true;
                    for l in is.metric.iter() {
                        if l.name == "__name__" {
                            continue;
                        }
                        if has_data && !data_names.iter().any(|n| n == l.name) {
                            continue;
                        }
                        if let Some((_, v)) = add.iter().find(|(n, _)| n == l.name)
                            && v != l.value
                        {
                            return Err(QueryError::Execution(format!(
                                "conflicting label: {}",
                                l.name
                            )));
                        }
                        if e.metric.get(l.name).is_some() {
                            continue;
                        }
                        if !add.iter().any(|(n, _)| n == l.name) {
                            add.push((l.name.to_string(), l.value.to_string()));
                        }
                    }
                }
                if !seen && !all_match_empty {
                    continue;
                }
                let mut b = pharos_model::LabelsBuilder::from(&e.metric);
                for (n, val) in &add {
                    b.set(n, val);
                }
                let mut o = e.clone();
                o.metric = b.build();
                out.push(o);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natsort() {
        assert!(natsort_less("a2", "a10"));
        assert!(!natsort_less("a10", "a2"));
        assert!(natsort_less("abc", "abd"));
    }

    #[test]
    fn go_floats() {
        assert_eq!(parse_go_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float("0.1"), Some(0.1));
        assert_eq!(parse_go_float("1e3"), Some(1000.0));
        assert_eq!(parse_go_float("x"), None);
        assert_eq!(parse_go_float(""), None);
    }

    #[test]
    fn regression() {
        let s: Vec<Sample> = (0..5)
            .map(|i| Sample {
                t: i * 1000,
                v: 2.0 * i as f64 + 1.0,
            })
            .collect();
        let (slope, intercept) = linear_regression(&s, 0);
        assert!((slope - 2.0).abs() < 1e-12);
        assert!((intercept - 1.0).abs() < 1e-12);
    }

    #[test]
    fn openmetrics_float() {
        assert_eq!(format_openmetrics_float(0.5), "0.5");
        assert_eq!(format_openmetrics_float(1.0), "1.0");
    }
}
