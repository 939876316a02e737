//! Turns the checked tree into promql-parser's AST.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{Labels, MatchOp, Matcher, Matchers};
use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinModifier, BinaryExpr, Call, Expr, Function, FunctionArgs,
    LabelModifier, MatrixSelector, NumberLiteral, Offset, ParenExpr, StringLiteral, SubqueryExpr,
    UnaryExpr, VectorMatchCardinality, VectorMatchFillValues, VectorSelector,
};

use super::VT;
use super::lex::Kw;
use super::parse::{At, K, MOp, N, Op, Sel};

fn vt(t: VT) -> ValueType {
    match t {
        VT::Scalar => ValueType::Scalar,
        VT::Vector => ValueType::Vector,
        VT::Matrix => ValueType::Matrix,
        VT::String => ValueType::String,
    }
}

fn dur(ns: i64) -> Duration {
    Duration::from_nanos(ns.unsigned_abs())
}

fn offset(ns: Option<i64>) -> Option<Offset> {
    ns.map(|n| {
        if n < 0 {
            Offset::Neg(dur(n))
        } else {
            Offset::Pos(dur(n))
        }
    })
}

fn at(a: Option<At>) -> Option<AtModifier> {
    a.map(|a| match a {
        At::Start => AtModifier::Start,
        At::End => AtModifier::End,
        At::Ts(ms) => {
            let d = Duration::from_millis(ms.unsigned_abs());
            let t = if ms < 0 {
                UNIX_EPOCH.checked_sub(d)
            } else {
                UNIX_EPOCH.checked_add(d)
            };
            AtModifier::At(t.unwrap_or(SystemTime::UNIX_EPOCH))
        }
    })
}

fn regex_of(v: &str) -> regex::Regex {
    match pharos_model::matcher::Regex::new(v) {
        Ok(r) => r.inner().clone(),
        // Checked while parsing; an empty match is the harmless fallback.
        Err(_) => match regex::Regex::new("^$") {
            Ok(r) => r,
            Err(e) => panic!("BUG: constant regex does not compile: {e}"),
        },
    }
}

fn selector(s: &Sel) -> VectorSelector {
    let ms = s
        .matchers
        .iter()
        .map(|(l, op, v)| {
            let op = match op {
                MOp::Eq => MatchOp::Equal,
                MOp::Ne => MatchOp::NotEqual,
                MOp::Re => MatchOp::Re(regex_of(v)),
                MOp::Nre => MatchOp::NotRe(regex_of(v)),
            };
            Matcher::new(op, l, v)
        })
        .collect();
    VectorSelector {
        name: s.name.clone(),
        matchers: Matchers::new(ms),
        offset: offset(s.offset),
        at: at(s.at),
    }
}

fn op_token(op: Op) -> TokenType {
    TokenType::new(match op {
        Op::Add => token::T_ADD,
        Op::Sub => token::T_SUB,
        Op::Mul => token::T_MUL,
        Op::Div => token::T_DIV,
        Op::Mod => token::T_MOD,
        Op::Pow => token::T_POW,
        Op::Atan2 => token::T_ATAN2,
        Op::Eql => token::T_EQLC,
        Op::Neq => token::T_NEQ,
        // The trim operators travel as `<`/`>` (see `Parsed::trims`).
        Op::Lss | Op::TrimUpper => token::T_LSS,
        Op::Gtr | Op::TrimLower => token::T_GTR,
        Op::Lte => token::T_LTE,
        Op::Gte => token::T_GTE,
        Op::And => token::T_LAND,
        Op::Or => token::T_LOR,
        Op::Unless => token::T_LUNLESS,
    })
}

fn agg_token(k: Kw) -> TokenType {
    TokenType::new(match k {
        Kw::Sum => token::T_SUM,
        Kw::Avg => token::T_AVG,
        Kw::Count => token::T_COUNT,
        Kw::Min => token::T_MIN,
        Kw::Max => token::T_MAX,
        Kw::Group => token::T_GROUP,
        Kw::Stddev => token::T_STDDEV,
        Kw::Stdvar => token::T_STDVAR,
        Kw::Topk => token::T_TOPK,
        Kw::Bottomk => token::T_BOTTOMK,
        Kw::CountValues => token::T_COUNT_VALUES,
        Kw::Quantile => token::T_QUANTILE,
        Kw::Limitk => token::T_LIMITK,
        Kw::LimitRatio => token::T_LIMIT_RATIO,
        other => panic!("BUG: {other:?} is not an aggregation operator"),
    })
}

fn labels(v: &[String]) -> Labels {
    Labels { labels: v.to_vec() }
}

fn bx(n: &N) -> Box<Expr> {
    Box::new(lower(n))
}

/// promql-parser's expression for `n`.
pub(crate) fn lower(n: &N) -> Expr {
    match &n.k {
        K::Num(v) => Expr::NumberLiteral(NumberLiteral { val: *v }),
        K::Str(s) => Expr::StringLiteral(StringLiteral { val: s.clone() }),
        K::Sel(s) => Expr::VectorSelector(selector(s)),
        K::Matrix(vs, range) => {
            let K::Sel(s) = &vs.k else {
                panic!("BUG: range over a non-selector passed the parser");
            };
            Expr::MatrixSelector(MatrixSelector {
                vs: selector(s),
                range: dur(*range),
            })
        }
        K::Sub {
            expr,
            range,
            step,
            offset: o,
            at: a,
        } => Expr::Subquery(SubqueryExpr {
            expr: bx(expr),
            offset: offset(*o),
            at: at(*a),
            range: dur(*range),
            step: step.map(dur),
        }),
        K::Paren(e) => Expr::Paren(ParenExpr { expr: bx(e) }),
        K::Unary(true, e) => Expr::Unary(UnaryExpr { expr: bx(e) }),
        K::Unary(false, e) => lower(e),
        K::Binary {
            op,
            lhs,
            rhs,
            ret_bool,
            m,
            ..
        } => {
            let fill = m.fill_lhs.is_some() || m.fill_rhs.is_some();
            // Set operators always carry their many-to-many matching, as
            // promql-parser builds them.
            let any = *ret_bool || m.has_labels_clause || m.card != 0 || fill || op.is_set();
            let modifier = any.then(|| {
                let card = match m.card {
                    1 => VectorMatchCardinality::ManyToOne(labels(&m.include)),
                    2 => VectorMatchCardinality::OneToMany(labels(&m.include)),
                    _ if op.is_set() => VectorMatchCardinality::ManyToMany,
                    _ => VectorMatchCardinality::OneToOne,
                };
                let matching = m.has_labels_clause.then(|| {
                    if m.on {
                        LabelModifier::Include(labels(&m.labels))
                    } else {
                        LabelModifier::Exclude(labels(&m.labels))
                    }
                });
                BinModifier {
                    card,
                    matching,
                    return_bool: *ret_bool,
                    fill_values: VectorMatchFillValues {
                        lhs: m.fill_lhs,
                        rhs: m.fill_rhs,
                    },
                }
            });
            Expr::Binary(BinaryExpr {
                op: op_token(*op),
                lhs: bx(lhs),
                rhs: bx(rhs),
                modifier,
            })
        }
        K::Agg {
            op,
            expr,
            param,
            grouping,
        } => Expr::Aggregate(AggregateExpr {
            op: agg_token(*op),
            expr: bx(expr),
            param: param.as_deref().map(bx),
            modifier: grouping.as_ref().map(|(without, l)| {
                if *without {
                    LabelModifier::Exclude(labels(l))
                } else {
                    LabelModifier::Include(labels(l))
                }
            }),
        }),
        K::Call(f, args) => Expr::Call(Call {
            func: Function::new(
                f.name,
                f.args.iter().map(|&t| vt(t)).collect(),
                f.variadic,
                vt(f.ret),
                f.experimental,
            ),
            args: FunctionArgs {
                args: args.iter().map(bx).collect(),
            },
        }),
    }
}
