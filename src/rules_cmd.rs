//! `pharos check rules` and `pharos test rules`, after `promtool check
//! rules` and `promtool test rules`: same inputs, same pass/fail, failures
//! printed in promtool's layout.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use pharos_model::{Duration, Labels, stale_nan};
use pharos_promql::{Engine, EngineOptions};
use pharos_rules::{AlertState, Group, GroupOptions, NoNotify, RuleKind, duplicate_rules};
use pharos_storage::{Appendable, Queryable};
use pharos_tsdb::{Head, HeadOptions};
use serde::Deserialize;

use crate::rules_glue::{EngineQuery, parse_metric};

/// The files `rule_files` patterns match, in order, without duplicates.
pub fn expand_rule_files(patterns: &[String]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in patterns {
        if let Ok(paths) = glob::glob(p) {
            for path in paths.flatten() {
                if !out.contains(&path) {
                    out.push(path);
                }
            }
        }
    }
    out
}

/// `pharos check rules FILE...`.
pub fn check_rules(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        println!("Checking {}", f.display());
        match pharos_rules::load_rule_file(&f.to_string_lossy()) {
            Ok(rf) => {
                let n: usize = rf.groups.iter().map(|g| g.rules.len()).sum();
                let dups = duplicate_rules(&rf);
                if dups.is_empty() {
                    println!("  SUCCESS: {n} rules found");
                } else {
                    // promtool reports duplicates as a lint failure that
                    // does not change the exit code.
                    eprintln!("  FAILED:");
                    eprintln!("lint error {} duplicate rule(s) found.", dups.len());
                    for d in &dups {
                        eprintln!("Metric: {}\nLabel(s):", d.metric);
                        for (k, v) in &d.labels {
                            eprintln!("\t{k}: {v}");
                        }
                    }
                    eprintln!("Might cause inconsistency while recording expressions");
                }
            }
            Err(errs) => {
                failed = true;
                eprintln!("  FAILED:");
                for e in errs {
                    eprintln!("{e}");
                }
            }
        }
        println!();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `pharos test rules FILE...`.
pub fn test_rules(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        println!("Unit Testing:  {}", f.display());
        match run_file(f) {
            Ok(()) => println!("  SUCCESS"),
            Err(errs) => {
                failed = true;
                eprintln!("  FAILED:");
                for e in errs {
                    eprintln!("{e}");
                    println!();
                }
            }
        }
        println!();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitTestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
    #[serde(default)]
    fuzzy_compare: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    #[serde(default)]
    eval_time: Option<String>,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTest {
    expr: String,
    #[serde(default)]
    eval_time: Option<String>,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    #[serde(default)]
    value: f64,
}

fn dur(s: &Option<String>, default: i64) -> Result<i64, String> {
    match s {
        None => Ok(default),
        Some(s) => Duration::parse(s)
            .map(|d| d.millis())
            .map_err(|_| format!("not a valid duration string: {s:?}")),
    }
}

/// Prometheus's `model.Duration.String()` (`1h5m`, `30s`, `0s`).
fn fmt_dur(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

fn run_file(path: &Path) -> Result<(), Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![e.to_string()])?;
    let file: UnitTestFile =
        serde_saphyr::from_str(&text).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rule_files = Vec::new();
    for rf in &file.rule_files {
        let p = if Path::new(rf).is_absolute() {
            rf.clone()
        } else {
            base.join(rf).to_string_lossy().into_owned()
        };
        let matches: Vec<String> = glob::glob(&p)
            .map_err(|e| vec![e.to_string()])?
            .filter_map(Result::ok)
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if matches.is_empty() {
            eprintln!("  WARNING: no file match pattern {p}");
        }
        rule_files.extend(matches);
    }
    let eval_interval = dur(&file.evaluation_interval, 60_000).map_err(|e| vec![e])?;
    if eval_interval <= 0 {
        return Err(vec!["evaluation_interval must be positive".to_string()]);
    }
    let mut order = HashMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g.clone(), i).is_some() {
            return Err(vec![format!(
                "group name repeated in evaluation order: {g}"
            )]);
        }
    }
    let mut errs = Vec::new();
    for tg in &file.tests {
        errs.extend(run_group(
            tg,
            eval_interval,
            &order,
            &rule_files,
            file.fuzzy_compare,
        ));
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// One value of the expanding notation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SeqVal {
    Omitted,
    Value(f64),
}

/// Parses promtool's value notation: `1 2+3x4 _ _x2 stale -1-1x3 NaN Inf`.
fn parse_values(s: &str) -> Result<Vec<SeqVal>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        let bad = || format!("invalid value {tok:?} in series values");
        if tok == "_" {
            out.push(SeqVal::Omitted);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| bad())?;
            out.extend(std::iter::repeat_n(SeqVal::Omitted, n));
            continue;
        }
        if tok == "stale" {
            out.push(SeqVal::Value(stale_nan()));
            continue;
        }
        let (first, used) = number_prefix(tok).ok_or_else(bad)?;
        let rest = &tok[used..];
        if rest.is_empty() {
            out.push(SeqVal::Value(first));
            continue;
        }
        let (inc, times) = if let Some(n) = rest.strip_prefix('x') {
            (0.0, n)
        } else {
            let (inc, used2) = number_prefix(rest).ok_or_else(bad)?;
            if !rest.starts_with(['+', '-']) {
                return Err(bad());
            }
            (inc, rest[used2..].strip_prefix('x').ok_or_else(bad)?)
        };
        let n: usize = times.parse().map_err(|_| bad())?;
        let mut v = first;
        for _ in 0..=n {
            out.push(SeqVal::Value(v));
            v += inc;
        }
    }
    Ok(out)
}

fn number_prefix(s: &str) -> Option<(f64, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let st = i;
    if i < b.len() && b[i].is_ascii_alphabetic() {
        while i < b.len() && b[i].is_ascii_alphabetic() && b[i] != b'x' {
            i += 1;
        }
        let v = match s[st..i].to_ascii_lowercase().as_str() {
            "inf" | "infinity" => f64::INFINITY,
            "nan" => f64::NAN,
            _ => return None,
        };
        return Some((if s.starts_with('-') { -v } else { v }, i));
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || c == b'.' {
            i += 1;
        } else if (c == b'e' || c == b'E')
            && i + 1 < b.len()
            && (b[i + 1].is_ascii_digit()
                || ((b[i + 1] == b'+' || b[i + 1] == b'-')
                    && i + 2 < b.len()
                    && b[i + 2].is_ascii_digit()))
        {
            i += 2;
        } else {
            break;
        }
    }
    if i == st {
        return None;
    }
    s[..i].parse::<f64>().ok().map(|v| (v, i))
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)` (`1E+00`, `2.5E-03`).
fn fmt_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:E}");
    match s.split_once('E') {
        Some((m, e)) => {
            let e: i32 = e.parse().unwrap_or(0);
            format!(
                "{m}E{}{:02}",
                if e < 0 { '-' } else { '+' },
                e.unsigned_abs()
            )
        }
        None => s,
    }
}

/// Prometheus's `util/almost.Equal` with epsilon 1e-6 (promtool's
/// `fuzzy_compare`).
fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 0.000001;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::MIN_POSITIVE;
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < EPS * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < EPS
}

fn floats_equal(a: f64, b: f64, fuzzy: bool) -> bool {
    if fuzzy {
        almost_equal(a, b)
    } else {
        a == b || (a.is_nan() && b.is_nan())
    }
}

fn indent_lines(s: &str, indent: &str) -> String {
    s.split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

type AlertLA = (Labels, Labels);

fn la_string(list: &[AlertLA]) -> String {
    if list.is_empty() {
        return "[]".to_string();
    }
    let one = |(l, a): &AlertLA| format!("Labels:{l}\nAnnotations:{a}");
    let mut s = format!(
        "[\n0:{}",
        indent_lines(&format!("\n{}", one(&list[0])), "  ")
    );
    for (i, x) in list[1..].iter().enumerate() {
        s.push_str(&format!(
            ",\n{}:{}",
            i + 1,
            indent_lines(&format!("\n{}", one(x)), "  ")
        ));
    }
    s.push_str("\n]");
    s
}

fn run_group(
    tg: &TestGroup,
    eval_interval: i64,
    order: &HashMap<String, usize>,
    rule_files: &[String],
    fuzzy: bool,
) -> Vec<String> {
    let interval = match dur(&tg.interval, eval_interval) {
        Ok(i) if i > 0 => i,
        Ok(_) => return vec!["interval must be positive".to_string()],
        Err(e) => return vec![e],
    };
    let head = Arc::new(Head::new(HeadOptions::default()));
    // Input series are loaded lazily, up to each evaluation time, as
    // promtool's lazy loader does: the storage only accepts samples close to
    // its newest one, and rules append at the evaluation time.
    let mut input: Vec<(Labels, Vec<SeqVal>)> = Vec::new();
    for s in &tg.input_series {
        let labels = match parse_metric(&s.series) {
            Ok(l) => l,
            Err(e) => return vec![format!("    series {:?}: {e}", s.series)],
        };
        match parse_values(&s.values) {
            Ok(v) => input.push((labels, v)),
            Err(e) => return vec![format!("    series {:?}: {e}", s.series)],
        }
    }
    let mut loaded_until: i64 = -1;
    let mut load_till = |till: i64| -> Result<(), String> {
        if till <= loaded_until {
            return Ok(());
        }
        let mut app = head.appender();
        for (labels, values) in &input {
            for (i, v) in values.iter().enumerate() {
                let t = i as i64 * interval;
                if t <= loaded_until || t > till {
                    continue;
                }
                if let SeqVal::Value(v) = v {
                    app.append(0, labels, t, *v)
                        .map_err(|e| format!("    series {labels}: {e}"))?;
                }
            }
        }
        app.commit().map_err(|e| e.to_string())?;
        loaded_until = till;
        Ok(())
    };
    let engine = Arc::new(Engine::new(EngineOptions {
        no_step_subquery_interval: eval_interval,
        ..EngineOptions::default()
    }));
    let queryable: Arc<dyn Queryable> = head.clone();
    let appendable: Arc<dyn Appendable> = head.clone();
    let query = Arc::new(EngineQuery {
        engine: engine.clone(),
        queryable: queryable.clone(),
    });
    let ext_pairs: Vec<(&str, &str)> = tg
        .external_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let opts = GroupOptions {
        query: query.clone(),
        notify: Arc::new(NoNotify),
        appendable,
        queryable: queryable.clone(),
        external_labels: Labels::from_pairs(&ext_pairs),
        external_url: tg.external_url.clone(),
        resend_delay: 60_000,
        outage_tolerance: 3_600_000,
        for_grace_period: 600_000,
        default_interval: interval,
        default_query_offset: 0,
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut load_errs = Vec::new();
    for f in rule_files {
        match pharos_rules::load_rule_file(f) {
            Ok(rf) => groups.extend(rf.groups.iter().map(|g| Group::new(g, &opts, false))),
            Err(e) => load_errs.extend(e.into_iter().map(|e| e.to_string())),
        }
    }
    if !load_errs.is_empty() {
        return load_errs;
    }
    groups.sort_by_key(|g| order.get(&g.name).copied().unwrap_or(0));

    let mut errs = Vec::new();
    // Alert tests by eval time.
    let mut alert_tests: BTreeMap<i64, Vec<&AlertTest>> = BTreeMap::new();
    for a in &tg.alert_rule_test {
        if a.alertname.is_empty() {
            let in_group = if tg.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", tg.name)
            };
            return vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                a.eval_time.as_deref().unwrap_or("0s")
            )];
        }
        match dur(&a.eval_time, 0) {
            Ok(t) => alert_tests.entry(t).or_default().push(a),
            Err(e) => return vec![e],
        }
    }
    let mut max_t = alert_tests.keys().next_back().copied().unwrap_or(0);
    for p in &tg.promql_expr_test {
        match dur(&p.eval_time, 0) {
            Ok(t) => max_t = max_t.max(t),
            Err(e) => return vec![e],
        }
    }
    let times: Vec<i64> = alert_tests.keys().copied().collect();
    let mut curr = 0;
    let mut ts = 0;
    while ts <= max_t {
        if let Err(e) = load_till(ts) {
            errs.push(e);
            return errs;
        }
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            g.eval(ts, &opts);
            for r in &g.rules {
                if let Some(e) = &r.last_error {
                    eval_errs.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        r.name(),
                        fmt_dur(ts)
                    ));
                }
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        while curr < times.len() && ts <= times[curr] && times[curr] < ts + eval_interval {
            let t = times[curr];
            let tests = &alert_tests[&t];
            let mut got: HashMap<&str, Vec<AlertLA>> = HashMap::new();
            for g in &groups {
                for r in &g.rules {
                    if !matches!(r.def.kind, RuleKind::Alerting { .. })
                        || !tests.iter().any(|a| a.alertname == r.name())
                    {
                        continue;
                    }
                    let entry = got.entry(r.name()).or_default();
                    for a in r.active.values() {
                        if a.state == AlertState::Firing {
                            entry.push((a.labels.clone(), Labels::from_pairs(&a.annotations)));
                        }
                    }
                }
            }
            for tc in tests {
                let mut got_alerts = got.get(tc.alertname.as_str()).cloned().unwrap_or_default();
                let mut exp: Vec<AlertLA> = tc
                    .exp_alerts
                    .iter()
                    .map(|a| {
                        let mut l: Vec<(&str, &str)> = a
                            .exp_labels
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        l.push(("alertname", tc.alertname.as_str()));
                        let ann: Vec<(&str, &str)> = a
                            .exp_annotations
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        (Labels::from_pairs(&l), Labels::from_pairs(&ann))
                    })
                    .collect();
                got_alerts.sort();
                exp.sort();
                if got_alerts != exp {
                    let name = if tg.name.is_empty() {
                        String::new()
                    } else {
                        format!("    name: {},\n", tg.name)
                    };
                    errs.push(format!(
                        "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        tc.alertname,
                        fmt_dur(t),
                        indent_lines(&la_string(&exp), "            "),
                        indent_lines(&la_string(&got_alerts), "            ")
                    ));
                }
            }
            curr += 1;
        }
        ts += eval_interval;
    }
    'outer: for pt in &tg.promql_expr_test {
        let t = dur(&pt.eval_time, 0).unwrap_or(0);
        let mut got = match pharos_rules::QueryFunc::query(&*query, &pt.expr, t) {
            Ok(g) => g
                .into_iter()
                .map(|s| (s.labels, s.value))
                .collect::<Vec<_>>(),
            Err(e) => {
                errs.push(format!(
                    "    expr: {:?}, time: {}, err: {e}",
                    pt.expr,
                    fmt_dur(t)
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        for s in &pt.exp_samples {
            match parse_metric(&s.labels) {
                Ok(l) => exp.push((l, s.value)),
                Err(e) => {
                    errs.push(format!(
                        "    expr: {:?}, time: {}, err: labels {:?}: {e}",
                        pt.expr,
                        fmt_dur(t),
                        s.labels
                    ));
                    continue 'outer;
                }
            }
        }
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let same = exp.len() == got.len()
            && exp
                .iter()
                .zip(&got)
                .all(|(e, g)| e.0 == g.0 && floats_equal(e.1, g.1, fuzzy));
        if !same {
            let show = |v: &[(Labels, f64)]| {
                if v.is_empty() {
                    "nil".to_string()
                } else {
                    v.iter()
                        .map(|(l, x)| format!("{l} {}", fmt_e(*x)))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            errs.push(format!(
                "    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                pt.expr,
                fmt_dur(t),
                show(&exp),
                show(&got)
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn value_notation() {
        let v = parse_values("1+2x3 _ _x2 stale -1-1x1 NaN 5x2 1e3").unwrap();
        let shown: Vec<String> = v
            .iter()
            .map(|x| match x {
                SeqVal::Omitted => "_".into(),
                SeqVal::Value(f) if pharos_model::is_stale_nan(*f) => "stale".into(),
                SeqVal::Value(f) => f.to_string(),
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                "1", "3", "5", "7", "_", "_", "_", "stale", "-1", "-2", "NaN", "5", "5", "5",
                "1000"
            ]
        );
        assert!(parse_values("1+x").is_err());
        assert!(parse_values("abc").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_dur(0), "0s");
        assert_eq!(fmt_dur(3_900_000), "1h5m");
        assert_eq!(fmt_dur(90_500), "1m30s500ms");
        assert_eq!(fmt_e(1.0), "1E+00");
        assert_eq!(fmt_e(0.0025), "2.5E-03");
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.001));
        assert!(almost_equal(f64::NAN, f64::NAN));
    }
}
