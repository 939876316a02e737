//! Go `text/template` expansion with Prometheus's template functions.
//!
//! Alerting rules carry labels and annotations such as
//! `{{ $labels.instance }} is at {{ $value | humanizePercentage }}`. Teams
//! copy these between Prometheus and pharos, so the expansion must be
//! byte-for-byte what Prometheus prints. The template language itself comes
//! from the `gotmpl` crate (a faithful port of Go's `text/template`); this
//! crate adds Prometheus's function map (`humanize*`, `query`, `first`,
//! `label`, `reReplaceAll`, `graphLink`, ...) with the exact number
//! formatting of Go's `fmt` (see [`gofmt`]).
//!
//! Why a trait for `query`: templates may run PromQL (`{{ query "up" }}`),
//! but this crate sits below the engine. The caller hands in a
//! [`QueryFunc`], so the rules crate, the unit-test runner and tests each
//! provide their own.
//!
//! Known difference: Go templates see `$labels` as `map[string]string`, so a
//! missing label prints as the empty string; `gotmpl` values are untyped and
//! would print `<no value>`. [`alert_data`] therefore pre-fills the label names
//! the template text mentions as `$labels.name` / `.Labels.name` (and the same
//! for external labels) with `""`, and `index` on a map of strings yields
//! `""` for a missing key. Left over: ranging over `$labels` also visits
//! such pre-filled names, and `len $labels` counts them.
//!
//! gotmpl also prints floats the Rust way (`1000000`, `inf`); every printing
//! action is routed through Go's `%v` formatting ([`gofmt::fmt_v`]) by a
//! rewrite of the parsed template, and `printf` prints non-finite floats as
//! Go does. Unknown functions and variables are parse errors, as in Go.
//!
//! Native histograms: where Prometheus hands templates a
//! `*FloatHistogram` as `.Value` (`query` results, `$value` of an alert on
//! a histogram), templates here see the text Go would print for it (its
//! `String()`); printing is identical, arithmetic on it fails in both.

pub mod gofmt;

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{MissingKey, Template, TemplateError as GoError, Value};
use pharos_model::Labels;
use pharos_model::histogram::FloatHistogram;

/// Errors from parsing or executing a template. The messages keep Go's
/// wording (`error parsing template X: template: X:1:5: ...`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The text does not parse.
    #[error("error parsing template {name}: {msg}")]
    Parse {
        /// The template's name.
        name: String,
        /// The parser's message (with line and column).
        msg: String,
    },
    /// Execution failed (a function returned an error, a bad pipeline...).
    #[error("error executing template {name}: {msg}")]
    Execute {
        /// The template's name.
        name: String,
        /// The executor's message.
        msg: String,
    },
}

/// One element of a query result as templates see it: `.Labels` and
/// `.Value`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    /// The series labels, including `__name__` when present.
    pub labels: Labels,
    /// The float value (0 for a histogram sample, as Prometheus's `F`).
    pub value: f64,
    /// The native histogram, when the sample is one (then `.Value` in a
    /// template is the histogram, printed as Prometheus prints it).
    pub histogram: Option<Box<FloatHistogram>>,
}

/// The value of a sample as templates see it: a float or a native
/// histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleValue<'a> {
    /// A float sample.
    Float(f64),
    /// A native histogram sample.
    Histogram(&'a FloatHistogram),
}

impl SampleValue<'_> {
    /// The template value: the float, or the histogram's text as Go's
    /// `fmt` prints a `*FloatHistogram` (its `String()`).
    fn to_value(self) -> Value {
        match self {
            SampleValue::Float(v) => Value::Float(v),
            SampleValue::Histogram(h) => Value::from(h.to_string().as_str()),
        }
    }
}

/// Runs an instant PromQL query for the `query` template function.
///
/// Implementations must be callable from any thread; the timestamp is the
/// evaluation time of the template in milliseconds. An error string is
/// reported as the template's execution error.
pub trait QueryFunc: Send + Sync {
    /// Evaluates `query` at `ts` and returns its instant vector (a scalar
    /// result is returned as one sample without labels, as Prometheus does).
    fn query(&self, query: &str, ts: i64) -> Result<Vec<QuerySample>, String>;
}

/// A [`QueryFunc`] that refuses every query (for `check rules` and places
/// without an engine).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQueries;

impl QueryFunc for NoQueries {
    fn query(&self, _query: &str, _ts: i64) -> Result<Vec<QuerySample>, String> {
        Err("queries are not available here".to_string())
    }
}

/// The environment every expansion shares.
#[derive(Clone)]
pub struct Expander {
    query: Arc<dyn QueryFunc>,
    external_url: String,
}

impl std::fmt::Debug for Expander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expander")
            .field("external_url", &self.external_url)
            .finish_non_exhaustive()
    }
}

/// The variable definitions Prometheus prepends to every alert template.
pub const ALERT_TEMPLATE_HEADER: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

impl Expander {
    /// An expander whose `query` uses `query` and whose `externalURL` and
    /// `pathPrefix` come from `external_url` (e.g. `http://host:9090/prom`).
    pub fn new(query: Arc<dyn QueryFunc>, external_url: impl Into<String>) -> Expander {
        Expander {
            query,
            external_url: external_url.into(),
        }
    }

    /// The path part of the external URL (`/prom` for `http://h:9090/prom`).
    pub fn path_prefix(&self) -> String {
        url_path(&self.external_url)
    }

    /// Parses `text` without running it (what `promtool check rules` does).
    pub fn parse_check(&self, name: &str, text: &str) -> Result<(), TemplateError> {
        self.build(name, text, 0).map(|_| ())
    }

    /// Expands `text` against `data` at time `ts` (milliseconds).
    pub fn expand(
        &self,
        name: &str,
        text: &str,
        data: &Value,
        ts: i64,
    ) -> Result<String, TemplateError> {
        let tmpl = self.build(name, text, ts)?;
        let res = if tmpl.lookup(name).is_some() {
            tmpl.execute_template_to_string(name, data)
        } else {
            tmpl.execute_to_string(data)
        };
        res.map_err(|e| TemplateError::Execute {
            name: name.to_string(),
            msg: e.to_string(),
        })
    }

    /// Expands an alert's label or annotation template as Prometheus's
    /// alerting rule does: the `$labels`/`$externalLabels`/`$externalURL`/
    /// `$value` header is prepended, and a failure yields
    /// `<error expanding template: ...>` instead of an error.
    pub fn expand_alert(
        &self,
        rule_name: &str,
        text: &str,
        labels: &Labels,
        external_labels: &Labels,
        value: f64,
        ts: i64,
    ) -> String {
        self.expand_alert_sample(
            rule_name,
            text,
            labels,
            external_labels,
            SampleValue::Float(value),
            ts,
        )
    }

    /// [`Expander::expand_alert`] for an alert whose sample may be a
    /// native histogram (then `$value` is the histogram, as in
    /// Prometheus's `AlertTemplateData`).
    pub fn expand_alert_sample(
        &self,
        rule_name: &str,
        text: &str,
        labels: &Labels,
        external_labels: &Labels,
        value: SampleValue<'_>,
        ts: i64,
    ) -> String {
        let data = alert_data_value(
            text,
            labels,
            external_labels,
            &self.external_url,
            value.to_value(),
        );
        let full = format!("{ALERT_TEMPLATE_HEADER}{text}");
        match self.expand(&format!("__alert_{rule_name}"), &full, &data, ts) {
            Ok(s) => s,
            Err(e) => format!("<error expanding template: {e}>"),
        }
    }

    fn build(&self, name: &str, text: &str, ts: i64) -> Result<Template, TemplateError> {
        let tmpl = Template::new(name)
            .missing_key(MissingKey::ZeroValue)
            .funcs(self.func_map(text, ts))
            .func(PRINT_HOOK, print_hook)
            .parse(text)
            .map_err(|e| TemplateError::Parse {
                name: name.to_string(),
                msg: e.to_string(),
            })?;
        // Go rejects unknown functions and variables when parsing;
        // gotmpl only when executing. `promtool check rules` relies on the
        // former, so check here.
        let known = self.func_names();
        for n in tmpl.templates() {
            if let Some(tree) = tmpl.lookup(n) {
                let mut vars = vec!["$".to_string()];
                check_list(tree, &known, &mut vars).map_err(|msg| TemplateError::Parse {
                    name: name.to_string(),
                    msg: format!("template: {n}:{msg}"),
                })?;
            }
        }
        // Route every printed value through Go's `%v` formatting (gotmpl
        // prints floats the Rust way: `1000000` where Go prints `1e+06`).
        let names: Vec<String> = tmpl.templates().iter().map(|s| s.to_string()).collect();
        let mut tmpl = tmpl;
        for n in names {
            if let Some(tree) = tmpl.lookup(&n) {
                let hooked = hook_list(tree);
                tmpl = tmpl.add_parse_tree(&n, hooked);
            }
        }
        Ok(tmpl)
    }

    fn func_map(&self, text: &str, ts: i64) -> gotmpl::FuncMap {
        let mut m = gotmpl::FuncMap::new();
        // Query results are `map[string]string` label sets in Go: names the
        // text reads as `.Labels.x` print as "" when absent.
        let label_fields: Arc<[String]> = mentioned_fields(text, &[".Labels."]).into();
        let mut add = |name: &str, f: gotmpl::ValueFunc| {
            m.insert(name.to_string(), f);
        };
        let q = self.query.clone();
        let lf = label_fields.clone();
        add(
            "query",
            Arc::new(move |args: &[Value]| {
                let [query] = args else {
                    return Err(arity("query", 1, args.len()));
                };
                let query = as_string("query", query)?;
                let res = q.query(&query, ts).map_err(GoError::Exec)?;
                Ok(Value::from(
                    res.into_iter()
                        .map(|s| {
                            let v = match &s.histogram {
                                Some(h) => SampleValue::Histogram(h),
                                None => SampleValue::Float(s.value),
                            };
                            sample_value(&s.labels, v, &lf)
                        })
                        .collect::<Vec<_>>(),
                ))
            }),
        );
        add(
            "first",
            Arc::new(|args: &[Value]| {
                let [v] = args else {
                    return Err(arity("first", 1, args.len()));
                };
                match v {
                    Value::List(l) if !l.is_empty() => Ok(l[0].clone()),
                    Value::List(_) | Value::Nil => Err(GoError::Exec(
                        "first() called on vector with no elements".to_string(),
                    )),
                    other => Err(wrong_type("first", other)),
                }
            }),
        );
        add(
            "label",
            Arc::new(|args: &[Value]| {
                let [name, s] = args else {
                    return Err(arity("label", 2, args.len()));
                };
                let name = as_string("label", name)?;
                Ok(match s.field("Labels").and_then(|l| l.field(&name)) {
                    Some(v) => v.clone(),
                    None => Value::from(""),
                })
            }),
        );
        add(
            "value",
            Arc::new(|args: &[Value]| {
                let [s] = args else {
                    return Err(arity("value", 1, args.len()));
                };
                Ok(s.field("Value").cloned().unwrap_or(Value::Float(0.0)))
            }),
        );
        add(
            "strvalue",
            Arc::new(|args: &[Value]| {
                let [s] = args else {
                    return Err(arity("strvalue", 1, args.len()));
                };
                Ok(s.field("Labels")
                    .and_then(|l| l.field("__value__"))
                    .cloned()
                    .unwrap_or_else(|| Value::from("")))
            }),
        );
        add(
            "sortByLabel",
            Arc::new(|args: &[Value]| {
                let [name, v] = args else {
                    return Err(arity("sortByLabel", 2, args.len()));
                };
                let name = as_string("sortByLabel", name)?;
                let Value::List(l) = v else {
                    return Err(wrong_type("sortByLabel", v));
                };
                let key = |s: &Value| {
                    s.field("Labels")
                        .and_then(|l| l.field(&name))
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                };
                let mut items: Vec<Value> = l.to_vec();
                items.sort_by_key(key);
                Ok(Value::from(items))
            }),
        );
        add(
            "args",
            Arc::new(|args: &[Value]| {
                let mut out = BTreeMap::new();
                for (i, a) in args.iter().enumerate() {
                    out.insert(format!("arg{i}"), a.clone());
                }
                Ok(Value::from(out))
            }),
        );
        add(
            "reReplaceAll",
            Arc::new(|args: &[Value]| {
                let [pat, repl, text] = args else {
                    return Err(arity("reReplaceAll", 3, args.len()));
                };
                let re = compile("reReplaceAll", &as_string("reReplaceAll", pat)?)?;
                let repl = as_string("reReplaceAll", repl)?;
                let text = as_string("reReplaceAll", text)?;
                Ok(Value::from(
                    re.replace_all(&text, repl.as_str()).into_owned(),
                ))
            }),
        );
        add(
            "match",
            Arc::new(|args: &[Value]| {
                let [pat, text] = args else {
                    return Err(arity("match", 2, args.len()));
                };
                let re = compile("match", &as_string("match", pat)?)?;
                Ok(Value::Bool(re.is_match(&as_string("match", text)?)))
            }),
        );
        let string_fn = |name: &'static str, f: fn(&str) -> String| -> gotmpl::ValueFunc {
            Arc::new(move |args: &[Value]| {
                let [s] = args else {
                    return Err(arity(name, 1, args.len()));
                };
                Ok(Value::from(f(&as_string(name, s)?)))
            })
        };
        add("safeHtml", string_fn("safeHtml", str::to_string));
        add("title", string_fn("title", gofmt::title));
        add("toUpper", string_fn("toUpper", str::to_uppercase));
        add("toLower", string_fn("toLower", str::to_lowercase));
        add(
            "graphLink",
            string_fn("graphLink", |e| {
                format!("/graph?g0.expr={}&g0.tab=0", gofmt::query_escape(e))
            }),
        );
        add(
            "tableLink",
            string_fn("tableLink", |e| {
                format!("/graph?g0.expr={}&g0.tab=1", gofmt::query_escape(e))
            }),
        );
        add("stripPort", string_fn("stripPort", strip_port));
        add("stripDomain", string_fn("stripDomain", strip_domain));
        let num_fn =
            |name: &'static str, f: fn(f64) -> Result<String, String>| -> gotmpl::ValueFunc {
                Arc::new(move |args: &[Value]| {
                    let [v] = args else {
                        return Err(arity(name, 1, args.len()));
                    };
                    let v = to_float(v).map_err(GoError::Exec)?;
                    f(v).map(Value::from).map_err(GoError::Exec)
                })
            };
        add(
            "printf",
            Arc::new(|args: &[Value]| {
                let [f, rest @ ..] = args else {
                    return Err(arity("printf", 1, 0));
                };
                let f = as_string("printf", f)?;
                let (f, rest) = nonfinite_as_strings(&f, rest);
                go_printf(&f, &rest)
            }),
        );
        add(
            "index",
            Arc::new(|args: &[Value]| {
                // Label sets are `map[string]string` in Go: a missing key
                // indexes to "" there (not `<no value>`). Maps whose values
                // are all strings are treated as such.
                if let [Value::Map(m), Value::String(k)] = args
                    && !m.contains_key(k.as_ref())
                    && m.values().all(|v| matches!(v, Value::String(_)))
                {
                    return Ok(Value::from(""));
                }
                go_builtin("index", args)
            }),
        );
        add("humanize", num_fn("humanize", |v| Ok(humanize(v))));
        add(
            "humanize1024",
            num_fn("humanize1024", |v| Ok(humanize1024(v))),
        );
        add(
            "humanizeDuration",
            num_fn("humanizeDuration", |v| Ok(humanize_duration(v))),
        );
        add(
            "humanizePercentage",
            num_fn("humanizePercentage", |v| Ok(humanize_percentage(v))),
        );
        add(
            "humanizeTimestamp",
            num_fn("humanizeTimestamp", humanize_timestamp),
        );
        add(
            "parseDuration",
            Arc::new(|args: &[Value]| {
                let [d] = args else {
                    return Err(arity("parseDuration", 1, args.len()));
                };
                let d = as_string("parseDuration", d)?;
                pharos_model::Duration::parse(&d)
                    .map(|d| Value::Float(d.millis() as f64 / 1000.0))
                    .map_err(|_| {
                        GoError::Exec(format!(
                            "not a valid duration string: {}",
                            gofmt::go_quote(&d)
                        ))
                    })
            }),
        );
        let url = self.external_url.clone();
        add(
            "externalURL",
            Arc::new(move |_: &[Value]| Ok(Value::from(url.clone()))),
        );
        let prefix = self.path_prefix();
        add(
            "pathPrefix",
            Arc::new(move |_: &[Value]| Ok(Value::from(prefix.clone()))),
        );
        m
    }
}

const GO_BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

impl Expander {
    fn func_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.func_map("", 0).into_keys().collect();
        v.extend(GO_BUILTINS.iter().map(|s| s.to_string()));
        v
    }
}

/// Checks function and variable names as Go's parser does. Variables are
/// scoped as in Go: a declaration is visible until the end of the enclosing
/// `if`/`range`/`with` body. Errors read `<line>: <message>`.
fn check_list(
    list: &gotmpl::parse::ListNode,
    known: &[String],
    vars: &mut Vec<String>,
) -> Result<(), String> {
    use gotmpl::parse::Node;
    for n in &list.nodes {
        match n {
            Node::Action(a) => check_pipe(&a.pipe, known, vars)?,
            Node::List(l) => check_list(l, known, vars)?,
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                let depth = vars.len();
                check_pipe(&b.pipe, known, vars)?;
                check_list(&b.body, known, vars)?;
                vars.truncate(depth);
                if let Some(e) = &b.else_body {
                    check_list(e, known, vars)?;
                    vars.truncate(depth);
                }
            }
            Node::Template(t) => {
                if let Some(p) = &t.pipe {
                    check_pipe(p, known, vars)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_pipe(
    pipe: &gotmpl::parse::PipeNode,
    known: &[String],
    vars: &mut Vec<String>,
) -> Result<(), String> {
    for c in &pipe.commands {
        for a in &c.args {
            check_expr(a, known, vars)?;
        }
    }
    for d in &pipe.decl {
        vars.push(d.to_string());
    }
    Ok(())
}

fn check_expr(
    e: &gotmpl::parse::Expr,
    known: &[String],
    vars: &mut Vec<String>,
) -> Result<(), String> {
    use gotmpl::parse::Expr;
    match e {
        Expr::Identifier(p, name) if !known.iter().any(|k| k == name.as_str()) => Err(format!(
            "{}: function {} not defined",
            p.line,
            gofmt::go_quote(name)
        )),
        Expr::Variable(p, name, _) if !vars.iter().any(|v| v == name.as_str()) => Err(format!(
            "{}: undefined variable {}",
            p.line,
            gofmt::go_quote(name)
        )),
        Expr::Pipe(_, pipe) => {
            let depth = vars.len();
            check_pipe(pipe, known, vars)?;
            vars.truncate(depth);
            Ok(())
        }
        Expr::Chain(_, inner, _) => check_expr(inner, known, vars),
        _ => Ok(()),
    }
}

/// The function appended to every printing action; not callable by name
/// from templates because `-` cannot appear in identifiers.
const PRINT_HOOK: &str = "__pharos-print";

fn print_hook(args: &[Value]) -> gotmpl::Result<Value> {
    Ok(match args.last() {
        Some(v) => go_print(v),
        None => Value::Nil,
    })
}

/// A value as Go's `fmt.Sprint` prints it, where that differs from
/// gotmpl's `Display` (floats, also inside lists and maps).
fn go_print(v: &Value) -> Value {
    fn text(v: &Value) -> String {
        match v {
            Value::Float(f) => gofmt::fmt_v(*f),
            Value::Nil => "<nil>".to_string(),
            Value::List(l) => {
                let items: Vec<String> = l.iter().map(text).collect();
                format!("[{}]", items.join(" "))
            }
            Value::Map(m) => {
                let items: Vec<String> =
                    m.iter().map(|(k, v)| format!("{k}:{}", text(v))).collect();
                format!("map[{}]", items.join(" "))
            }
            other => other.to_string(),
        }
    }
    match v {
        Value::Float(_) | Value::List(_) | Value::Map(_) => Value::from(text(v)),
        other => other.clone(),
    }
}

fn hook_list(list: &gotmpl::parse::ListNode) -> gotmpl::parse::ListNode {
    use gotmpl::parse::{CommandNode, Expr, Node};
    let nodes = list
        .nodes
        .iter()
        .map(|n| match n {
            Node::Action(a) if a.pipe.decl.is_empty() && !a.pipe.commands.is_empty() => {
                let mut a = a.clone();
                let pos = a.pos;
                a.pipe.commands.push(CommandNode {
                    pos,
                    args: vec![Expr::Identifier(pos, PRINT_HOOK.into())],
                });
                Node::Action(a)
            }
            Node::List(l) => Node::List(hook_list(l)),
            Node::If(b) => Node::If(hook_branch(b)),
            Node::Range(b) => Node::Range(hook_branch(b)),
            Node::With(b) => Node::With(hook_branch(b)),
            other => other.clone(),
        })
        .collect();
    gotmpl::parse::ListNode {
        pos: list.pos,
        nodes,
    }
}

fn hook_branch(b: &gotmpl::parse::BranchNode) -> gotmpl::parse::BranchNode {
    let mut b = b.clone();
    b.body = hook_list(&b.body);
    b.else_body = b.else_body.as_ref().map(hook_list);
    b
}

/// Rewrites `%f`-style verbs whose argument is an infinite or NaN float to
/// `%s` with the Go spelling (`+Inf`, `-Inf`, `NaN`), keeping flags and
/// width: gotmpl's `printf` prints them the Rust way (`inf`).
fn nonfinite_as_strings(f: &str, args: &[Value]) -> (String, Vec<Value>) {
    let mut out = String::with_capacity(f.len());
    let mut args = args.to_vec();
    let mut i = 0;
    let mut chars = f.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '%' {
            continue;
        }
        let mut spec = String::new();
        let mut verb = None;
        while let Some(&(_, d)) = chars.peek() {
            chars.next();
            if d.is_ascii_alphabetic() || d == '%' {
                verb = Some(d);
                break;
            }
            spec.push(d);
        }
        let Some(verb) = verb else {
            out.push_str(&spec);
            break;
        };
        if verb == '%' {
            out.push_str(&spec);
            out.push('%');
            continue;
        }
        let nonfinite = match args.get(i) {
            Some(Value::Float(x))
                if !x.is_finite() && "eEfFgGv".contains(verb) && !spec.contains('[') =>
            {
                Some(gofmt::fmt_v(*x))
            }
            _ => None,
        };
        match nonfinite {
            Some(text) => {
                let width: String = spec
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| *c != '+' && *c != ' ' && *c != '#' && *c != '0')
                    .collect();
                out.push_str(&width);
                out.push('s');
                args[i] = Value::from(text);
            }
            None => {
                out.push_str(&spec);
                out.push(verb);
            }
        }
        i += 1;
    }
    (out, args)
}

/// gotmpl's built-in `printf` (Go's `fmt.Sprintf`).
fn go_printf(f: &str, args: &[Value]) -> gotmpl::Result<Value> {
    let mut all = vec![Value::from(f)];
    all.extend_from_slice(args);
    go_builtin("printf", &all)
}

/// Calls a gotmpl built-in by name, through a tiny template because the
/// built-ins are not exported; the result keeps its type.
fn go_builtin(name: &str, args: &[Value]) -> gotmpl::Result<Value> {
    let mut call = format!("{{{{ {CAPTURE} ({name}");
    for i in 0..args.len() {
        call.push_str(&format!(" (index .A {i})"));
    }
    call.push_str(") }}");
    let mut data = BTreeMap::new();
    data.insert("A".to_string(), Value::from(args.to_vec()));
    let slot = Arc::new(std::sync::Mutex::new(Value::Nil));
    let s2 = slot.clone();
    Template::new(name)
        .func(CAPTURE, move |a: &[Value]| {
            let mut g = match s2.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *g = a.first().cloned().unwrap_or(Value::Nil);
            Ok(Value::from(""))
        })
        .parse(&call)?
        .execute_to_string(&Value::from(data))?;
    let v = match slot.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    Ok(v)
}

/// The capture function of [`go_builtin`]; it exists only in that private
/// template, so user templates cannot call it.
const CAPTURE: &str = "__pharos_capture";

fn arity(name: &str, want: usize, got: usize) -> GoError {
    GoError::Exec(format!(
        "wrong number of args for {name}: want {want} got {got}"
    ))
}

fn wrong_type(name: &str, v: &Value) -> GoError {
    GoError::Exec(format!(
        "error calling {name}: unexpected {}",
        v.type_name()
    ))
}

fn as_string(name: &str, v: &Value) -> Result<String, GoError> {
    match v {
        Value::String(s) => Ok(s.to_string()),
        other => Err(GoError::Exec(format!(
            "wrong type for value; expected string; got {} (in {name})",
            other.type_name()
        ))),
    }
}

fn compile(name: &str, pat: &str) -> Result<regex::Regex, GoError> {
    regex::Regex::new(pat).map_err(|e| {
        GoError::Exec(format!(
            "error calling {name}: regexp: Compile({}): {e}",
            gofmt::go_quote(pat)
        ))
    })
}

/// Go's `convertToFloat` in Prometheus: numbers as they are, strings through
/// `strconv.ParseFloat`, anything else an error.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Uint(u) => Ok(*u as f64),
        Value::String(s) => gofmt::parse_float(s),
        Value::Nil => Err("can't convert <nil> to float".to_string()),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

/// `humanize`: SI prefixes (k, M, ... and m, u, ...) with 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return gofmt::fmt_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", gofmt::fmt_g(v, 4))
}

/// `humanize1024`: binary prefixes (ki, Mi, ...) with 4 significant digits.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return gofmt::fmt_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", gofmt::fmt_g(v, 4))
}

/// `humanizeDuration`: seconds as `1d 2h 3m 4s`, or `1.5s`, `15ms`.
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return gofmt::fmt_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", gofmt::fmt_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        // Go's int64(v) on amd64 yields i64::MIN for values out of range
        // (Rust saturates); Prometheus then prints negative parts.
        let d = if v < i64::MAX as f64 {
            v as i64
        } else {
            i64::MIN
        };
        let (seconds, minutes, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", gofmt::fmt_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", gofmt::fmt_g(v, 4))
}

/// `humanizePercentage`: a ratio as a percentage with 4 significant digits.
pub fn humanize_percentage(v: f64) -> String {
    format!("{}%", gofmt::fmt_g(v * 100.0, 4))
}

/// `humanizeTimestamp`: Unix seconds as Go prints a UTC `time.Time`,
/// truncated to milliseconds as Prometheus's `model.Time` does.
pub fn humanize_timestamp(v: f64) -> Result<String, String> {
    if v.is_nan() || v.is_infinite() {
        return Ok(gofmt::fmt_g(v, 4));
    }
    let nanos = v * 1e9;
    if nanos > i64::MAX as f64 || nanos < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            go_float_v(v)
        ));
    }
    let ms = (nanos as i64) / 1_000_000;
    Ok(gofmt::go_time_string(ms))
}

/// Go's `%v` for a float64 (shortest repr, `%e` from exponent 21).
fn go_float_v(v: f64) -> String {
    gofmt::fmt_v(v)
}

fn strip_port(s: &str) -> String {
    match gofmt::split_host_port(s) {
        Some((host, _)) => host,
        None => s.to_string(),
    }
}

fn strip_domain(s: &str) -> String {
    let (host, port) = gofmt::split_host_port(s).unwrap_or_else(|| (s.to_string(), String::new()));
    if gofmt::is_ip(&host) {
        return s.to_string();
    }
    let short = host.split('.').next().unwrap_or_default();
    if port.is_empty() {
        short.to_string()
    } else {
        gofmt::join_host_port(short, &port)
    }
}

/// The path of a URL (`/prom` for `http://h:9090/prom?x`), empty if none.
fn url_path(url: &str) -> String {
    let rest = match url.find("://") {
        Some(i) => &url[i + 3..],
        None => return String::new(),
    };
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => return String::new(),
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].to_string()
}

/// A label set as a template map (`map[string]string` in Go).
pub fn labels_value(labels: &Labels) -> Value {
    let mut m = BTreeMap::new();
    for l in labels.iter() {
        m.insert(l.name.to_string(), Value::from(l.value));
    }
    Value::from(m)
}

fn sample_value(labels: &Labels, value: SampleValue<'_>, fields: &[String]) -> Value {
    let mut m = BTreeMap::new();
    m.insert("Labels".to_string(), filled(labels, fields));
    m.insert("Value".to_string(), value.to_value());
    Value::from(m)
}

/// The data alert templates run against: `.Labels`, `.ExternalLabels`,
/// `.ExternalURL`, `.Value`. Label names that `text` reads with field syntax
/// and the set lacks are filled with `""` (see the crate docs).
pub fn alert_data(
    text: &str,
    labels: &Labels,
    external_labels: &Labels,
    external_url: &str,
    value: f64,
) -> Value {
    alert_data_value(
        text,
        labels,
        external_labels,
        external_url,
        Value::Float(value),
    )
}

fn alert_data_value(
    text: &str,
    labels: &Labels,
    external_labels: &Labels,
    external_url: &str,
    value: Value,
) -> Value {
    let mentioned_l = mentioned_fields(text, &["$labels.", ".Labels."]);
    let mentioned_e = mentioned_fields(text, &["$externalLabels.", ".ExternalLabels."]);
    let mut m = BTreeMap::new();
    m.insert("Labels".to_string(), filled(labels, &mentioned_l));
    m.insert(
        "ExternalLabels".to_string(),
        filled(external_labels, &mentioned_e),
    );
    m.insert("ExternalURL".to_string(), Value::from(external_url));
    m.insert("Value".to_string(), value);
    Value::from(m)
}

fn filled(labels: &Labels, names: &[String]) -> Value {
    let mut m = BTreeMap::new();
    for n in names {
        m.insert(n.clone(), Value::from(""));
    }
    for l in labels.iter() {
        m.insert(l.name.to_string(), Value::from(l.value));
    }
    Value::from(m)
}

fn mentioned_fields(text: &str, prefixes: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for p in prefixes {
        let mut rest = text;
        while let Some(i) = rest.find(p) {
            let after = &rest[i + p.len()..];
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end > 0 {
                out.push(after[..end].to_string());
            }
            rest = &after[end..];
        }
    }
    out
}

#[cfg(test)]
mod tests;
