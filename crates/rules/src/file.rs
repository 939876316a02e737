//! Rule files: Prometheus's YAML format, parsed strictly and validated the
//! way `promtool check rules` validates, every error with `file:line:col`.

use std::collections::{BTreeMap, HashSet};

use pharos_model::Duration;
use pharos_model::labels::{is_valid_label_name, is_valid_metric_name};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::RuleError;

/// One parsed, validated rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFile {
    /// The path the file was read from (as given).
    pub path: String,
    /// Its groups, in file order.
    pub groups: Vec<GroupDef>,
}

/// A rule group as written.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDef {
    /// The group's name, unique within the file.
    pub name: String,
    /// The file the group came from.
    pub file: String,
    /// `interval`; `None` means the global evaluation interval.
    pub interval: Option<Duration>,
    /// `query_offset`; `None` means the global rule query offset.
    pub query_offset: Option<Duration>,
    /// `limit`: most alerts or series per rule; 0 means no limit.
    pub limit: usize,
    /// `labels` added to every rule of the group (rule labels win).
    pub labels: Vec<(String, String)>,
    /// The rules, in file order.
    pub rules: Vec<RuleDef>,
}

/// What kind of rule, with the fields only that kind has.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// `record: name`.
    Recording {
        /// The metric name written.
        record: String,
    },
    /// `alert: name`.
    Alerting {
        /// The alert name (`alertname` label).
        alert: String,
        /// `for`: how long the condition must hold before firing.
        for_: Duration,
        /// `keep_firing_for`: how long to keep firing after the condition ends.
        keep_firing_for: Duration,
        /// Annotation templates, sorted by name.
        annotations: Vec<(String, String)>,
    },
}

/// One rule as written.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    /// Recording or alerting, with its own fields.
    pub kind: RuleKind,
    /// The PromQL expression as written.
    pub expr: String,
    /// Labels (templates for alerting rules), sorted by name.
    pub labels: Vec<(String, String)>,
    /// Line and column of the rule in its file.
    pub line: u32,
    /// Column of the rule in its file.
    pub column: u32,
}

impl RuleDef {
    /// The record or alert name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Recording { record } => record,
            RuleKind::Alerting { alert, .. } => alert,
        }
    }
}

type Sp<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Option<Vec<Sp<RawGroup>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: Option<Sp<String>>,
    #[serde(default)]
    interval: Option<Sp<String>>,
    #[serde(default)]
    query_offset: Option<Sp<String>>,
    #[serde(default)]
    limit: Option<Sp<i64>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, Sp<String>>>,
    #[serde(default)]
    rules: Option<Vec<Sp<RawRule>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<Sp<String>>,
    #[serde(default)]
    alert: Option<Sp<String>>,
    #[serde(default)]
    expr: Option<Sp<String>>,
    #[serde(default, rename = "for")]
    for_: Option<Sp<String>>,
    #[serde(default)]
    keep_firing_for: Option<Sp<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, Sp<String>>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, Sp<String>>>,
}

struct Cx<'a> {
    file: &'a str,
    errors: Vec<RuleError>,
}

impl Cx<'_> {
    fn err(&mut self, loc: &Location, message: impl Into<String>) {
        self.errors.push(RuleError::at(self.file, loc, message));
    }
}

/// Reads and validates a rule file.
pub fn load_rule_file(path: &str) -> Result<RuleFile, Vec<RuleError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_rule_file(&text, path),
        Err(e) => Err(vec![RuleError::plain(
            path,
            format!("error reading file: {e}"),
        )]),
    }
}

/// Parses and validates rule file text; `file` names it in errors. All
/// problems are reported, not only the first.
pub fn parse_rule_file(text: &str, file: &str) -> Result<RuleFile, Vec<RuleError>> {
    let raw: Option<RawFile> = match serde_saphyr::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let loc = e.location();
            let msg = yaml_message(&e.to_string());
            return Err(vec![match loc {
                Some(l) => RuleError::at(file, &l, msg),
                None => RuleError::plain(file, msg),
            }]);
        }
    };
    let mut cx = Cx {
        file,
        errors: Vec::new(),
    };
    let mut groups = Vec::new();
    let mut names = HashSet::new();
    for g in raw.and_then(|r| r.groups).unwrap_or_default() {
        let gloc = g.referenced;
        let g = g.value;
        let name = match &g.name {
            Some(n) if !n.value.is_empty() => n.value.clone(),
            _ => {
                cx.err(&gloc, "Groupname must not be empty");
                continue;
            }
        };
        if !names.insert(name.clone()) {
            let loc = g.name.as_ref().map_or(gloc, |n| n.referenced);
            cx.err(
                &loc,
                format!("groupname: \"{name}\" is repeated in the same file"),
            );
        }
        let interval = duration(&mut cx, g.interval.as_ref());
        let query_offset = duration(&mut cx, g.query_offset.as_ref());
        let limit = match &g.limit {
            Some(l) if l.value < 0 => {
                cx.err(&l.referenced, "limit must not be negative");
                0
            }
            Some(l) => l.value as usize,
            None => 0,
        };
        let labels = label_map(&mut cx, g.labels.as_ref(), "label", "");
        let mut rules = Vec::new();
        for (i, r) in g.rules.unwrap_or_default().into_iter().enumerate() {
            if let Some(rule) = rule(&mut cx, &name, i + 1, r) {
                rules.push(rule);
            }
        }
        groups.push(GroupDef {
            name,
            file: file.to_string(),
            interval: interval.flatten(),
            query_offset: query_offset.flatten(),
            limit,
            labels,
            rules,
        });
    }
    if cx.errors.is_empty() {
        Ok(RuleFile {
            path: file.to_string(),
            groups,
        })
    } else {
        Err(cx.errors)
    }
}

/// The parser's first line without its `error: line L column C: ` prefix
/// (the position is ours to print).
fn yaml_message(full: &str) -> String {
    let mut m = full.lines().next().unwrap_or("invalid YAML").trim();
    m = m.strip_prefix("error: ").unwrap_or(m);
    if let Some(rest) = m.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
        && rest
            .split(':')
            .next()
            .is_some_and(|p| p.contains(" column "))
    {
        m = after;
    }
    m.to_string()
}

fn duration(cx: &mut Cx<'_>, v: Option<&Sp<String>>) -> Option<Option<Duration>> {
    let v = v?;
    match Duration::parse(&v.value) {
        Ok(d) => Some(Some(d)),
        Err(_) => {
            cx.err(
                &v.referenced,
                format!("not a valid duration string: \"{}\"", v.value),
            );
            Some(None)
        }
    }
}

fn label_map(
    cx: &mut Cx<'_>,
    m: Option<&BTreeMap<String, Sp<String>>>,
    what: &str,
    prefix: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in m.into_iter().flatten() {
        if !is_valid_label_name(k) {
            cx.err(&v.referenced, format!("{prefix}invalid {what} name: {k}"));
        }
        out.push((k.clone(), v.value.clone()));
    }
    out
}

fn rule(cx: &mut Cx<'_>, group: &str, index: usize, r: Sp<RawRule>) -> Option<RuleDef> {
    let loc = r.referenced;
    let r = r.value;
    let rule_name = r
        .record
        .as_ref()
        .or(r.alert.as_ref())
        .map(|s| s.value.clone())
        .unwrap_or_default();
    let err = |cx: &mut Cx<'_>, at: &Location, msg: String| {
        cx.err(
            at,
            format!("group \"{group}\", rule {index}, \"{rule_name}\": {msg}"),
        )
    };
    let before = cx.errors.len();
    match (&r.record, &r.alert) {
        (None, None) => err(cx, &loc, "one of 'record' or 'alert' must be set".into()),
        (Some(_), Some(_)) => err(
            cx,
            &loc,
            "only one of 'record' and 'alert' must be set".into(),
        ),
        _ => {}
    }
    let expr = match &r.expr {
        None => {
            err(cx, &loc, "field 'expr' must be set in rule".into());
            String::new()
        }
        Some(e) if e.value.trim().is_empty() => {
            err(cx, &e.referenced, "field 'expr' must be set in rule".into());
            String::new()
        }
        Some(e) => {
            if let Err(msg) = promql_parser::parser::parse(&e.value) {
                err(
                    cx,
                    &e.referenced,
                    format!("could not parse expression: {msg}"),
                );
            }
            e.value.clone()
        }
    };
    let prefix = format!("group \"{group}\", rule {index}, \"{rule_name}\": ");
    let labels = label_map(cx, r.labels.as_ref(), "label", &prefix);
    if let Some(l) = r.labels.as_ref().and_then(|m| m.get("__name__")) {
        err(cx, &l.referenced, "invalid label name: __name__".into());
    }
    let kind = if let Some(rec) = &r.record {
        if !is_valid_metric_name(&rec.value) {
            err(
                cx,
                &rec.referenced,
                format!("invalid recording rule name: {}", rec.value),
            );
        }
        for (field, present) in [
            ("annotations", r.annotations.as_ref().map(|_| loc)),
            ("for", r.for_.as_ref().map(|s| s.referenced)),
            (
                "keep_firing_for",
                r.keep_firing_for.as_ref().map(|s| s.referenced),
            ),
        ] {
            if let Some(at) = present {
                err(
                    cx,
                    &at,
                    format!("invalid field '{field}' in recording rule"),
                );
            }
        }
        RuleKind::Recording {
            record: rec.value.clone(),
        }
    } else {
        let alert = r
            .alert
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let annotations = label_map(cx, r.annotations.as_ref(), "annotation", &prefix);
        let for_ = duration(cx, r.for_.as_ref())
            .flatten()
            .unwrap_or(Duration(0));
        let keep = duration(cx, r.keep_firing_for.as_ref())
            .flatten()
            .unwrap_or(Duration(0));
        // Templates must parse (promtool's check).
        let exp =
            pharos_template::Expander::new(std::sync::Arc::new(pharos_template::NoQueries), "");
        let header = pharos_template::ALERT_TEMPLATE_HEADER;
        for (what, map) in [
            ("label", r.labels.as_ref()),
            ("annotation", r.annotations.as_ref()),
        ] {
            for (k, v) in map.into_iter().flatten() {
                let text = format!("{header}{}", v.value);
                if let Err(e) = exp.parse_check(&format!("__alert_{alert}"), &text) {
                    let msg = match e {
                        pharos_template::TemplateError::Parse { msg, .. }
                        | pharos_template::TemplateError::Execute { msg, .. } => msg,
                    };
                    err(cx, &v.referenced, format!("{what} \"{k}\": {msg}"));
                }
            }
        }
        RuleKind::Alerting {
            alert,
            for_,
            keep_firing_for: keep,
            annotations,
        }
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(RuleDef {
        kind,
        expr,
        labels,
        line: loc.line() as u32,
        column: loc.column() as u32,
    })
}

/// A rule that appears more than once in a group with the same name and
/// labels (promtool's `duplicate-rules` lint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRule {
    /// The record or alert name.
    pub metric: String,
    /// The rule's labels, sorted.
    pub labels: Vec<(String, String)>,
}

/// Finds rules with equal name and labels within each group, as promtool
/// does (the expression is not compared).
pub fn duplicate_rules(file: &RuleFile) -> Vec<DuplicateRule> {
    let mut out = Vec::new();
    for g in &file.groups {
        let mut keys: Vec<(String, Vec<(String, String)>)> = g
            .rules
            .iter()
            .map(|r| {
                let mut labels = r.labels.clone();
                labels.sort();
                (r.name().to_string(), labels)
            })
            .collect();
        keys.sort();
        for w in keys.windows(2) {
            if w[0] == w[1] {
                out.push(DuplicateRule {
                    metric: w[0].0.clone(),
                    labels: w[0].1.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const GOOD: &str = r#"
groups:
  - name: api
    interval: 30s
    limit: 10
    labels:
      team: web
    rules:
      - record: job:http_requests:rate5m
        expr: sum by (job) (rate(http_requests_total[5m]))
      - alert: HighErrorRate
        expr: job:errors:ratio > 0.05
        for: 10m
        keep_firing_for: 5m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.job }} errors at {{ $value | humanizePercentage }}"
"#;

    #[test]
    fn parses_groups_and_rules() {
        let f = parse_rule_file(GOOD, "r.yml").unwrap();
        assert_eq!(f.groups.len(), 1);
        let g = &f.groups[0];
        assert_eq!(g.name, "api");
        assert_eq!(g.interval, Some(Duration(30_000)));
        assert_eq!(g.limit, 10);
        assert_eq!(g.labels, vec![("team".into(), "web".into())]);
        assert_eq!(g.rules.len(), 2);
        assert_eq!(g.rules[0].name(), "job:http_requests:rate5m");
        assert_eq!(g.rules[1].line, 11);
        match &g.rules[1].kind {
            RuleKind::Alerting {
                for_,
                keep_firing_for,
                annotations,
                ..
            } => {
                assert_eq!(*for_, Duration(600_000));
                assert_eq!(*keep_firing_for, Duration(300_000));
                assert_eq!(annotations.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        parse_rule_file(text, "f.yml")
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn positioned_errors() {
        let e = errors(
            "groups:\n  - name: a\n    rules:\n      - record: 'bad name'\n        expr: up\n",
        );
        assert_eq!(
            e,
            vec![
                "f.yml:4:17: group \"a\", rule 1, \"bad name\": invalid recording rule name: bad name"
            ]
        );
        let e = errors("groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: sum(\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("f.yml:5:15: group \"a\", rule 1, \"A\": could not parse expression"),
            "{e:?}"
        );
        let e = errors("groups:\n  - name: a\n    rules:\n      - expr: up\n");
        assert_eq!(
            e,
            vec!["f.yml:4:9: group \"a\", rule 1, \"\": one of 'record' or 'alert' must be set"]
        );
        let e = errors("groups:\n  - name: a\n    rules: []\n  - name: a\n");
        assert_eq!(
            e,
            vec!["f.yml:4:11: groupname: \"a\" is repeated in the same file"]
        );
        let e = errors(
            "groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up\n        for: 5m\n",
        );
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains("invalid field 'for' in recording rule"),
            "{e:?}"
        );
        let e = errors(
            "groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up\n        annotations:\n          s: '{{ $labels.x'\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("f.yml:7:14: "), "{e:?}");
        let e = errors("groups:\n  - name: a\n    bogus: 1\n");
        assert!(
            e[0].starts_with("f.yml:3:5: unknown field `bogus`"),
            "{e:?}"
        );
        let e = errors(
            "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        labels:\n          bad-name: x\n",
        );
        assert_eq!(
            e,
            vec!["f.yml:7:21: group \"a\", rule 1, \"A\": invalid label name: bad-name"]
        );
        let e = errors("groups:\n  - name: a\n    interval: 5x\n");
        assert_eq!(e, vec!["f.yml:3:15: not a valid duration string: \"5x\""]);
    }

    #[test]
    fn finds_duplicates() {
        let f = parse_rule_file(
            "groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up\n      - record: x\n        expr: up * 2\n      - record: x\n        expr: up\n        labels: {a: b}\n",
            "d.yml",
        )
        .unwrap();
        let d = duplicate_rules(&f);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].metric, "x");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        proptest! {
            #[test]
            fn never_panics(s in "\\PC{0,200}") {
                let _ = parse_rule_file(&s, "p.yml");
            }
            #[test]
            fn yamlish_never_panics(name in "[a-z{}$ ]{0,8}", expr in "[a-z(){}\\[\\]0-9 =>]{0,20}") {
                let text = format!("groups:\n  - name: {name}\n    rules:\n      - alert: {name}\n        expr: {expr}\n        annotations:\n          a: '{name}'\n");
                let _ = parse_rule_file(&text, "p.yml");
            }
        }
    }
}
