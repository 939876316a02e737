//! Prometheus's `checkAST`: type checks after a successful parse, in the
//! same order so the first error reported is the same.

use super::lex::go_quote;
use super::parse::{K, MOp, N};
use super::{PErr, VT};

type R<T> = Result<T, PErr>;

fn err<T>(pos: usize, msg: impl Into<String>) -> R<T> {
    Err(PErr::new(pos, msg))
}

fn expect(n: &N, want: VT, context: &str) -> R<()> {
    let t = check(n)?;
    if t != want {
        return err(
            n.start,
            format!(
                "expected type {} in {context}, got {}",
                want.documented(),
                t.documented()
            ),
        );
    }
    Ok(())
}

/// Checks `n` and its children; returns its type.
pub(crate) fn check(n: &N) -> R<VT> {
    let typ = n.vt();
    match &n.k {
        K::Agg {
            op, expr, param, ..
        } => {
            use super::lex::Kw;
            expect(expr, VT::Vector, "aggregation expression")?;
            if let Some(p) = param {
                match op {
                    Kw::Topk | Kw::Bottomk | Kw::Quantile | Kw::Limitk | Kw::LimitRatio => {
                        expect(p, VT::Scalar, "aggregation parameter")?
                    }
                    Kw::CountValues => expect(p, VT::String, "aggregation parameter")?,
                    _ => {}
                }
            }
        }
        K::Binary {
            op,
            op_pos,
            lhs,
            rhs,
            ret_bool,
            m,
        } => {
            let lt = check(lhs)?;
            let rt = check(rhs)?;
            if *ret_bool && !op.is_comparison() {
                return err(
                    *op_pos,
                    "bool modifier can only be used on comparison operators",
                );
            }
            if op.is_comparison() && !ret_bool && lt == VT::Scalar && rt == VT::Scalar {
                return err(
                    *op_pos,
                    "comparisons between scalars must use BOOL modifier",
                );
            }
            if m.on {
                for l1 in &m.labels {
                    if m.include.contains(l1) {
                        return err(
                            *op_pos,
                            format!(
                                "label {} must not occur in ON and GROUP clause at once",
                                go_quote(l1)
                            ),
                        );
                    }
                }
            }
            if lt != VT::Scalar && lt != VT::Vector {
                return err(
                    lhs.start,
                    "binary expression must contain only scalar and instant vector types",
                );
            }
            if rt != VT::Scalar && rt != VT::Vector {
                return err(
                    rhs.start,
                    "binary expression must contain only scalar and instant vector types",
                );
            }
            let fill = m.fill_lhs.is_some() || m.fill_rhs.is_some();
            if lt != VT::Vector || rt != VT::Vector {
                if !m.labels.is_empty() {
                    return err(
                        n.start,
                        "vector matching only allowed between instant vectors",
                    );
                }
                if fill {
                    return err(
                        n.start,
                        "filling in missing series only allowed between instant vectors",
                    );
                }
            } else if op.is_set() {
                if m.card != 0 {
                    return err(
                        n.start,
                        format!("no grouping allowed for {} operation", go_quote(op.name())),
                    );
                }
                if fill {
                    return err(
                        n.start,
                        "filling in missing series not allowed for set operators",
                    );
                }
            }
            if (lt == VT::Scalar || rt == VT::Scalar) && op.is_set() {
                return err(
                    n.start,
                    format!(
                        "set operator {} not allowed in binary scalar expression",
                        go_quote(op.name())
                    ),
                );
            }
        }
        K::Call(f, args) => {
            let nargs = f.args.len();
            if f.variadic == 0 {
                if nargs != args.len() {
                    return err(
                        n.start,
                        format!(
                            "expected {nargs} argument(s) in call to {}, got {}",
                            go_quote(f.name),
                            args.len()
                        ),
                    );
                }
            } else {
                let na = nargs.saturating_sub(1);
                if na > args.len() {
                    return err(
                        n.start,
                        format!(
                            "expected at least {na} argument(s) in call to {}, got {}",
                            go_quote(f.name),
                            args.len()
                        ),
                    );
                }
                let max = na as i64 + i64::from(f.variadic);
                if f.variadic > 0 && max < args.len() as i64 {
                    return err(
                        n.start,
                        format!(
                            "expected at most {max} argument(s) in call to {}, got {}",
                            go_quote(f.name),
                            args.len()
                        ),
                    );
                }
            }
            if f.name == "info"
                && let Some(sel) = args.get(1)
            {
                let t = sel.vt();
                if t != VT::Vector {
                    return err(
                        n.start,
                        format!(
                            "expected type instant vector in call to function \"info\", got {}",
                            t.documented()
                        ),
                    );
                }
                match &sel.k {
                    K::Sel(s) if s.name.is_some() => {
                        return err(
                            sel.start,
                            "expected label selectors only, got vector selector instead",
                        );
                    }
                    K::Sel(_) => {}
                    _ => return err(sel.start, "expected label selectors only"),
                }
            }
            for (i, a) in args.iter().enumerate() {
                if f.name == "info" && i == 1 {
                    // A label selector: may match the empty string.
                    continue;
                }
                let i = if i >= nargs {
                    if f.variadic == 0 {
                        break;
                    }
                    nargs.saturating_sub(1)
                } else {
                    i
                };
                let t = check(a)?;
                if let Some(&want) = f.args.get(i)
                    && t != want
                {
                    return err(
                        a.start,
                        format!(
                            "expected type {} in call to function {}, got {}",
                            want.documented(),
                            go_quote(f.name),
                            t.documented()
                        ),
                    );
                }
            }
        }
        K::Paren(e) => {
            check(e)?;
        }
        K::Unary(_, e) => {
            let t = check(e)?;
            if t != VT::Scalar && t != VT::Vector {
                return err(
                    n.start,
                    format!(
                        "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                        go_quote(t.documented())
                    ),
                );
            }
        }
        K::Sub { expr, .. } => {
            let t = check(expr)?;
            if t != VT::Vector {
                return err(
                    n.start,
                    format!(
                        "subquery is only allowed on instant vector, got {} instead",
                        t.raw()
                    ),
                );
            }
        }
        K::Matrix(vs, _) => {
            check(vs)?;
        }
        K::Sel(s) => {
            if let Some(name) = &s.name {
                for (l, _, v) in &s.matchers {
                    if l == pharos_model::METRIC_NAME {
                        return err(
                            n.start,
                            format!(
                                "metric name must not be set twice: {} or {}",
                                go_quote(name),
                                go_quote(v)
                            ),
                        );
                    }
                }
            } else {
                let not_empty = s.matchers.iter().any(|(l, op, v)| {
                    let op = match op {
                        MOp::Eq => pharos_model::MatchOp::Equal,
                        MOp::Ne => pharos_model::MatchOp::NotEqual,
                        MOp::Re => pharos_model::MatchOp::Regex,
                        MOp::Nre => pharos_model::MatchOp::NotRegex,
                    };
                    pharos_model::Matcher::new(op, l, v).is_ok_and(|m| !m.matches_empty())
                });
                if !not_empty {
                    return err(
                        n.start,
                        "vector selector must contain at least one non-empty matcher",
                    );
                }
            }
        }
        K::Num(_) | K::Str(_) => {}
    }
    Ok(typ)
}
