//! Relabeling: rewriting a label set by a list of rules, as Prometheus does
//! for targets (`relabel_configs`) and scraped series
//! (`metric_relabel_configs`).
//!
//! The semantics follow Prometheus's `model/relabel` package: the values of
//! `source_labels` are joined with `separator`, matched against an anchored
//! `regex`, and the `action` decides what happens. Replacement templates are
//! expanded the way Go's `regexp.Expand` does (`$1`, `${1}`, `$name`,
//! `${name}`, `$$`), which differs in small ways from the `regex` crate's own
//! expansion (Go takes the longest run of letters, digits and `_` as the
//! name, Unicode included, and rejects numbers with leading zeros), so we
//! implement it here rather than call `Captures::expand`.
//!
//! Label names produced at run time (a `replace` target after expansion) are
//! checked with the legacy rule `[a-zA-Z_][a-zA-Z0-9_]*`, the same rule the
//! configuration loader applies.
//!
//! The rules run over a [`LabelsBuilder`] so a chain of rules allocates no
//! intermediate [`Labels`].

use std::fmt;

use crate::labels::{Labels, LabelsBuilder, is_valid_label_name};
use crate::matcher::Regex;

/// What a relabeling rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Action {
    /// Writes the expanded `replacement` to the (expanded) `target_label` when
    /// `regex` matches the joined source values.
    #[default]
    Replace,
    /// Drops the label set unless `regex` matches the joined source values.
    Keep,
    /// Drops the label set when `regex` matches the joined source values.
    Drop,
    /// Sets `target_label` to a hash of the joined source values modulo
    /// `modulus`.
    HashMod,
    /// Copies every label whose name matches `regex` to the name given by
    /// the expanded `replacement`.
    LabelMap,
    /// Removes every label whose name matches `regex`.
    LabelDrop,
    /// Removes every label whose name does not match `regex`.
    LabelKeep,
    /// Sets `target_label` to the joined source values in lower case.
    Lowercase,
    /// Sets `target_label` to the joined source values in upper case.
    Uppercase,
    /// Drops the label set unless `target_label`'s value equals the joined
    /// source values.
    KeepEqual,
    /// Drops the label set when `target_label`'s value equals the joined
    /// source values.
    DropEqual,
}

impl Action {
    /// Every action, in Prometheus's documentation order.
    pub const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
        Action::KeepEqual,
        Action::DropEqual,
    ];

    /// The name used in configuration files (`replace`, `hashmod`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
        }
    }

    /// Parses an action name, ignoring ASCII case as Prometheus does.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error parsing an [`Action`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown relabel action {0:?}")]
pub struct UnknownAction(pub String);

impl std::str::FromStr for Action {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::parse(s).ok_or_else(|| UnknownAction(s.to_string()))
    }
}

/// The regex used when a rule gives none.
pub const DEFAULT_REGEX: &str = "(.*)";
/// The separator used when a rule gives none.
pub const DEFAULT_SEPARATOR: &str = ";";
/// The replacement used when a rule gives none.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// One relabeling rule.
///
/// The fields are public and unchecked: a configuration loader validates
/// them (Prometheus's rules: `hashmod` needs a non-zero modulus, `replace`
/// needs a target label, ...). Applying an unvalidated rule never panics; a
/// `hashmod` with modulus 0 leaves the labels unchanged.
#[derive(Clone, Debug)]
pub struct RelabelConfig {
    /// Labels whose values are joined to form the input.
    pub source_labels: Vec<String>,
    /// Joins the source values. Default `;`.
    pub separator: String,
    /// Anchored regex matched against the input. Default `(.*)`.
    pub regex: Regex,
    /// Modulus for `hashmod`.
    pub modulus: u64,
    /// Label written by `replace`, `hashmod`, `lowercase`, `uppercase`, and
    /// compared by `keepequal`/`dropequal`. May hold `$1`-style references
    /// for `replace`.
    pub target_label: String,
    /// Template written by `replace` and `labelmap`. Default `$1`.
    pub replacement: String,
    /// What the rule does. Default `replace`.
    pub action: Action,
}

impl RelabelConfig {
    /// The regex as written in the configuration (without the anchors we
    /// add when compiling).
    pub fn regex_pattern(&self) -> &str {
        regex_source(&self.regex)
    }
}

fn regex_source(re: &Regex) -> &str {
    let s = re.inner().as_str();
    s.strip_prefix("^(?s:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}

fn default_regex() -> Regex {
    match Regex::new(DEFAULT_REGEX) {
        Ok(r) => r,
        Err(e) => panic!("BUG: the default relabel regex does not compile: {e}"),
    }
}

impl Default for RelabelConfig {
    /// Prometheus's defaults: action `replace`, separator `;`, regex `(.*)`,
    /// replacement `$1`, no source labels, no target label, modulus 0.
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: DEFAULT_SEPARATOR.to_string(),
            regex: default_regex(),
            modulus: 0,
            target_label: String::new(),
            replacement: DEFAULT_REPLACEMENT.to_string(),
            action: Action::Replace,
        }
    }
}

/// Rules are equal when every field is, the regex compared by its pattern.
impl PartialEq for RelabelConfig {
    fn eq(&self, other: &Self) -> bool {
        self.source_labels == other.source_labels
            && self.separator == other.separator
            && self.regex_pattern() == other.regex_pattern()
            && self.modulus == other.modulus
            && self.target_label == other.target_label
            && self.replacement == other.replacement
            && self.action == other.action
    }
}
impl Eq for RelabelConfig {}

/// Applies `cfgs` in order to `labels`. Returns `None` when a rule drops the
/// label set.
pub fn process(labels: &Labels, cfgs: &[RelabelConfig]) -> Option<Labels> {
    if cfgs.is_empty() {
        return Some(labels.clone());
    }
    let mut b = labels.builder();
    if process_builder(&mut b, cfgs) {
        Some(b.build())
    } else {
        None
    }
}

/// Applies `cfgs` in order to the builder. Returns `false` when a rule drops
/// the label set (the builder is then in an unspecified intermediate state).
pub fn process_builder(b: &mut LabelsBuilder, cfgs: &[RelabelConfig]) -> bool {
    let mut scratch = Scratch::default();
    cfgs.iter().all(|cfg| relabel(cfg, b, &mut scratch))
}

/// Buffers reused across the rules of one `process_builder` call.
#[derive(Default)]
struct Scratch {
    val: String,
    target: String,
    res: String,
    names: Vec<(String, String)>,
}

fn relabel(cfg: &RelabelConfig, b: &mut LabelsBuilder, s: &mut Scratch) -> bool {
    s.val.clear();
    for (i, name) in cfg.source_labels.iter().enumerate() {
        if i > 0 {
            s.val.push_str(&cfg.separator);
        }
        s.val.push_str(b.get(name).unwrap_or(""));
    }
    let val = s.val.as_str();
    match cfg.action {
        Action::Drop => {
            if cfg.regex.is_match(val) {
                return false;
            }
        }
        Action::Keep => {
            if !cfg.regex.is_match(val) {
                return false;
            }
        }
        Action::DropEqual => {
            if b.get(&cfg.target_label).unwrap_or("") == val {
                return false;
            }
        }
        Action::KeepEqual => {
            if b.get(&cfg.target_label).unwrap_or("") != val {
                return false;
            }
        }
        Action::Replace => {
            let Some(caps) = cfg.regex.inner().captures(val) else {
                return true;
            };
            s.target.clear();
            expand(cfg.regex.inner(), &caps, &cfg.target_label, &mut s.target);
            if !is_valid_label_name(&s.target) {
                return true;
            }
            s.res.clear();
            expand(cfg.regex.inner(), &caps, &cfg.replacement, &mut s.res);
            if s.res.is_empty() {
                b.del(&s.target);
            } else {
                b.set(&s.target, &s.res);
            }
        }
        Action::Lowercase => {
            let v = go_lowercase(val);
            b.set(&cfg.target_label, &v);
        }
        Action::Uppercase => {
            let v = go_uppercase(val);
            b.set(&cfg.target_label, &v);
        }
        Action::HashMod => {
            if let Some(m) = hashmod(val, cfg.modulus) {
                b.set(&cfg.target_label, &m.to_string());
            }
        }
        Action::LabelMap => {
            // Work on a snapshot: labels added by this rule are not
            // themselves mapped again.
            s.names.clear();
            s.names
                .extend(b.pairs().map(|l| (l.name.to_string(), l.value.to_string())));
            for (name, value) in &s.names {
                if let Some(caps) = cfg.regex.inner().captures(name) {
                    s.res.clear();
                    expand(cfg.regex.inner(), &caps, &cfg.replacement, &mut s.res);
                    // An empty name cannot be stored; Prometheus would
                    // create a broken label here, we skip it.
                    if !s.res.is_empty() {
                        b.set(&s.res, value);
                    }
                }
            }
        }
        Action::LabelDrop => {
            b.retain(|name, _| !cfg.regex.is_match(name));
        }
        Action::LabelKeep => {
            b.retain(|name, _| cfg.regex.is_match(name));
        }
    }
    true
}

/// The `hashmod` value of `val`: the last 8 bytes of its MD5 sum read as a
/// big-endian integer, modulo `modulus`. `None` for modulus 0.
pub fn hashmod(val: &str, modulus: u64) -> Option<u64> {
    use md5::Digest;
    let sum = md5::Md5::digest(val.as_bytes());
    let mut last = [0u8; 8];
    last.copy_from_slice(&sum[8..16]);
    u64::from_be_bytes(last).checked_rem(modulus)
}

/// Lower-cases rune by rune with simple (one-to-one) case mappings, as Go's
/// `strings.ToLower` does. Where Rust's full mapping expands a character
/// into several, the character is kept (Go has no simple mapping there),
/// except U+0130 whose simple lower case is `i`.
fn go_lowercase(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
            continue;
        }
        let mut it = c.to_lowercase();
        match (it.next(), it.next()) {
            (Some(l), None) => out.push(l),
            _ => out.push(c),
        }
    }
    out
}

/// Upper-cases rune by rune with simple case mappings, like Go's
/// `strings.ToUpper` (`ß` stays `ß`, where Rust would give `SS`).
fn go_uppercase(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let mut it = c.to_uppercase();
        match (it.next(), it.next()) {
            (Some(u), None) => out.push(u),
            _ => out.push(c),
        }
    }
    out
}

/// Expands `template` with the groups of `caps` (a match of `re`) into
/// `out`, with Go's `regexp.Expand` rules:
///
/// - `$$` is a literal `$`;
/// - `$name` takes the longest run of letters, digits and `_` as the name,
///   so `$1x` means the group named `1x`, not group 1 then `x`;
/// - `${name}` delimits the name explicitly;
/// - a name made only of digits (without a leading zero) is a group number;
/// - an unknown or unmatched group expands to nothing;
/// - a `$` not followed by a valid reference is copied literally.
pub fn expand(re: &regex::Regex, caps: &regex::Captures<'_>, template: &str, out: &mut String) {
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let Some((name, after)) = extract_reference(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        match group_number(name) {
            Some(n) => {
                if let Some(m) = caps.get(n) {
                    out.push_str(m.as_str());
                }
            }
            None => {
                // The first group with this name, as Go searches in order.
                let idx = re.capture_names().position(|gn| gn == Some(name));
                if let Some(m) = idx.and_then(|i| caps.get(i)) {
                    out.push_str(m.as_str());
                }
            }
        }
    }
    out.push_str(rest);
}

/// Parses the reference after a `$`: `{name}` or `name`. Returns the name
/// and the remaining text.
fn extract_reference(s: &str) -> Option<(&str, &str)> {
    let (body, braced) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphabetic() || c.is_numeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if braced {
        let after = body[end..].strip_prefix('}')?;
        Some((name, after))
    } else {
        Some((name, &body[end..]))
    }
}

/// A group number: ASCII digits only, no leading zero, below 10^8 (Go's
/// bound).
fn group_number(name: &str) -> Option<usize> {
    if !name.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    if name.len() > 8 {
        return None;
    }
    name.parse().ok()
}

/// True when `s` is acceptable as a `replace` target label or a `labelmap`
/// replacement: one or more of a letter or `_`, a `$name`/`${name}`
/// reference, each optionally followed by word characters (Prometheus's
/// `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$`).
pub fn is_valid_target_template(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.is_empty() || b[0].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if word(c) {
            i += 1;
        } else if c == b'$' {
            i += 1;
            if b.get(i) == Some(&b'{') {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && word(b[j]) {
                    j += 1;
                }
                if j == start || b.get(j) != Some(&b'}') {
                    return false;
                }
                i = j + 1;
            } else {
                let start = i;
                while i < b.len() && word(b[i]) {
                    i += 1;
                }
                if i == start {
                    return false;
                }
            }
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    fn rule(f: impl FnOnce(&mut RelabelConfig)) -> RelabelConfig {
        let mut c = RelabelConfig::default();
        f(&mut c);
        c
    }

    fn re(p: &str) -> Regex {
        Regex::new(p).unwrap()
    }

    fn src(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn action_names() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert_eq!(Action::parse(&a.as_str().to_uppercase()), Some(a));
            assert_eq!(a.to_string().parse::<Action>().unwrap(), a);
        }
        assert_eq!(Action::parse("Replace"), Some(Action::Replace));
        assert!(Action::parse("replace_all").is_none());
        assert!("".parse::<Action>().is_err());
    }

    #[test]
    fn defaults() {
        let d = RelabelConfig::default();
        assert_eq!(d.action, Action::Replace);
        assert_eq!(d.separator, ";");
        assert_eq!(d.regex_pattern(), "(.*)");
        assert_eq!(d.replacement, "$1");
        assert_eq!(d.modulus, 0);
        assert!(d.source_labels.is_empty() && d.target_label.is_empty());
        assert_eq!(d, RelabelConfig::default());
        let other = rule(|c| c.regex = re("x"));
        assert_ne!(d, other);
    }

    #[test]
    fn no_rules_keeps_labels() {
        let l = ls(&[("a", "1")]);
        assert_eq!(process(&l, &[]), Some(l));
    }

    #[test]
    fn replace_with_captures_into_new_label() {
        let l = ls(&[("host", "web-3.example"), ("job", "node")]);
        let r = rule(|c| {
            c.source_labels = src(&["host"]);
            c.regex = re(r"([a-z]+)-(\d+)\..*");
            c.target_label = "shard".into();
            c.replacement = "${1}_$2".into();
        });
        let out = process(&l, &[r]).unwrap();
        assert_eq!(out.get("shard"), Some("web_3"));
        assert_eq!(out.get("host"), Some("web-3.example"));
    }

    #[test]
    fn replace_no_match_leaves_labels() {
        let l = ls(&[("a", "xyz")]);
        let r = rule(|c| {
            c.source_labels = src(&["a"]);
            c.regex = re("y");
            c.target_label = "b".into();
        });
        // Anchored: "y" does not match "xyz".
        assert_eq!(process(&l, &[r]), Some(l));
    }

    #[test]
    fn replace_joins_with_separator_and_missing_is_empty() {
        let l = ls(&[("a", "1"), ("c", "3")]);
        let r = rule(|c| {
            c.source_labels = src(&["a", "b", "c"]);
            c.separator = "|".into();
            c.target_label = "joined".into();
        });
        let out = process(&l, &[r]).unwrap();
        assert_eq!(out.get("joined"), Some("1||3"));
    }

    #[test]
    fn replace_with_empty_result_deletes_target() {
        let l = ls(&[("a", "foo"), ("b", "keepme")]);
        let r = rule(|c| {
            c.source_labels = src(&["missing"]);
            c.target_label = "b".into();
        });
        // Source value "" matches (.*), $1 is "" -> b deleted.
        let out = process(&l, &[r]).unwrap();
        assert_eq!(out, ls(&[("a", "foo")]));
    }

    #[test]
    fn replace_static_value_without_sources() {
        let l = ls(&[("a", "foo")]);
        let r = rule(|c| {
            c.target_label = "env".into();
            c.replacement = "prod".into();
        });
        assert_eq!(process(&l, &[r]).unwrap().get("env"), Some("prod"));
    }

    #[test]
    fn replace_expanded_target_label() {
        let l = ls(&[("kind", "cpu"), ("v", "7")]);
        let r = rule(|c| {
            c.source_labels = src(&["kind", "v"]);
            c.regex = re("(.+);(.+)");
            c.target_label = "metric_${1}".into();
            c.replacement = "$2".into();
        });
        assert_eq!(process(&l, &[r]).unwrap().get("metric_cpu"), Some("7"));
    }

    #[test]
    fn replace_invalid_target_name_is_a_no_op() {
        let l = ls(&[("kind", "with-dash")]);
        let r = rule(|c| {
            c.source_labels = src(&["kind"]);
            c.target_label = "${1}".into();
            c.replacement = "x".into();
        });
        assert_eq!(process(&l, &[r]), Some(l.clone()));
        // An expansion to the empty string is not a valid name either.
        let r = rule(|c| {
            c.source_labels = src(&["absent"]);
            c.target_label = "$1".into();
            c.replacement = "x".into();
        });
        assert_eq!(process(&l, &[r]), Some(l));
    }

    #[test]
    fn replace_named_groups_and_literal_dollar() {
        let l = ls(&[("a", "key=val")]);
        let r = rule(|c| {
            c.source_labels = src(&["a"]);
            c.regex = re("(?P<k>[a-z]+)=(?P<v>[a-z]+)");
            c.target_label = "${k}".into();
            c.replacement = "$$${v}$".into();
        });
        assert_eq!(process(&l, &[r]).unwrap().get("key"), Some("$val$"));
    }

    #[test]
    fn regex_dot_matches_newline() {
        let l = ls(&[("a", "line1\nline2")]);
        let r = rule(|c| {
            c.source_labels = src(&["a"]);
            c.regex = re("line1.(.*)");
            c.target_label = "b".into();
        });
        assert_eq!(process(&l, &[r]).unwrap().get("b"), Some("line2"));
    }

    #[test]
    fn keep_and_drop() {
        let l = ls(&[("__name__", "http_requests_total"), ("code", "500")]);
        let keep = |p: &str| {
            rule(|c| {
                c.source_labels = src(&["code"]);
                c.regex = re(p);
                c.action = Action::Keep;
            })
        };
        let drop = |p: &str| {
            rule(|c| {
                c.source_labels = src(&["code"]);
                c.regex = re(p);
                c.action = Action::Drop;
            })
        };
        assert_eq!(process(&l, &[keep("5..")]), Some(l.clone()));
        assert_eq!(process(&l, &[keep("5")]), None);
        assert_eq!(process(&l, &[drop("5..")]), None);
        assert_eq!(process(&l, &[drop("4..")]), Some(l.clone()));
        // A missing source label is the empty string.
        let keep_missing = rule(|c| {
            c.source_labels = src(&["nope"]);
            c.regex = re("");
            c.action = Action::Keep;
        });
        assert_eq!(process(&l, &[keep_missing]), Some(l.clone()));
        // Dropped early: later rules do not run.
        let mut b = l.builder();
        assert!(!process_builder(&mut b, &[drop(".*"), keep("x")]));
    }

    #[test]
    fn keepequal_and_dropequal() {
        let same = ls(&[("a", "v"), ("b", "v")]);
        let diff = ls(&[("a", "v"), ("b", "w")]);
        let mk = |action| {
            rule(|c| {
                c.source_labels = src(&["a"]);
                c.target_label = "b".into();
                c.action = action;
            })
        };
        assert_eq!(process(&same, &[mk(Action::KeepEqual)]), Some(same.clone()));
        assert_eq!(process(&diff, &[mk(Action::KeepEqual)]), None);
        assert_eq!(process(&same, &[mk(Action::DropEqual)]), None);
        assert_eq!(process(&diff, &[mk(Action::DropEqual)]), Some(diff.clone()));
        // Both absent: "" == "".
        let none = ls(&[("c", "1")]);
        assert_eq!(process(&none, &[mk(Action::DropEqual)]), None);
    }

    #[test]
    fn hashmod_matches_prometheus_definition() {
        // md5("foo") = acbd18db4cc2f85c edef654fccc4a4d8 (hex).
        let last8 = u64::from_be_bytes([0xed, 0xef, 0x65, 0x4f, 0xcc, 0xc4, 0xa4, 0xd8]);
        assert_eq!(hashmod("foo", 1000), Some(last8 % 1000));
        assert_eq!(hashmod("foo", 0), None);
        let l = ls(&[("a", "foo"), ("b", "bar")]);
        let r = rule(|c| {
            c.source_labels = src(&["a"]);
            c.target_label = "shard".into();
            c.modulus = 1000;
            c.action = Action::HashMod;
        });
        let want = (last8 % 1000).to_string();
        assert_eq!(process(&l, &[r]).unwrap().get("shard"), Some(want.as_str()));
        // Modulus 0 never panics and changes nothing.
        let r0 = rule(|c| {
            c.source_labels = src(&["a"]);
            c.target_label = "shard".into();
            c.action = Action::HashMod;
        });
        assert_eq!(process(&l, &[r0]), Some(l));
    }

    #[test]
    fn hashmod_agrees_with_prometheus_outputs() {
        // Values Prometheus's own tests expect for modulus 1000.
        assert_eq!(hashmod("baz", 1000), Some(976));
        assert_eq!(hashmod("foo\nbar", 1000), Some(734));
    }

    #[test]
    fn replace_unknown_group_in_target_or_replacement() {
        let l = ls(&[("a", "some-name-value")]);
        let mk = |target: &str, repl: &str| {
            rule(|c| {
                c.source_labels = src(&["a"]);
                c.regex = re("some-([^-]+)-([^,]+)");
                c.target_label = target.into();
                c.replacement = repl.into();
            })
        };
        let out = process(&l, &[mk("${1}", "${2}")]).unwrap();
        assert_eq!(out.get("name"), Some("value"));
        // Replacement expands to "": delete the (absent) target, no change.
        assert_eq!(process(&l, &[mk("${1}", "${3}")]), Some(l.clone()));
        // Target expands to "": invalid name, no change.
        assert_eq!(process(&l, &[mk("${3}", "${1}")]), Some(l.clone()));
    }

    #[test]
    fn replace_extracts_fields_from_a_tag_list() {
        let l = ls(&[("__meta_tags", "path:/x/y,job:batch,label:team=db")]);
        let mk = |regex: &str, target: &str, repl: &str| {
            rule(|c| {
                c.source_labels = src(&["__meta_tags"]);
                c.regex = re(regex);
                c.target_label = target.into();
                c.replacement = repl.into();
            })
        };
        let cfgs = [
            mk("(?:.+,|^)path:(/[^,]+).*", "__metrics_path__", "$1"),
            mk("(?:.+,|^)job:([^,]+).*", "job", "$1"),
            mk("(?:.+,|^)label:([^=]+)=([^,]+).*", "${1}", "${2}"),
        ];
        let out = process(&l, &cfgs).unwrap();
        assert_eq!(out.get("__metrics_path__"), Some("/x/y"));
        assert_eq!(out.get("job"), Some("batch"));
        assert_eq!(out.get("team"), Some("db"));
    }

    #[test]
    fn hashmod_spreads_values() {
        let mut seen = [0usize; 4];
        for i in 0..400 {
            seen[hashmod(&format!("target-{i}"), 4).unwrap() as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn labelmap_copies_matching_names() {
        let l = ls(&[
            ("__meta_kubernetes_label_app", "api"),
            ("__meta_kubernetes_label_tier", "web"),
            ("job", "k8s"),
        ]);
        let r = rule(|c| {
            c.regex = re("__meta_kubernetes_label_(.+)");
            c.action = Action::LabelMap;
        });
        let out = process(&l, &[r]).unwrap();
        assert_eq!(out.get("app"), Some("api"));
        assert_eq!(out.get("tier"), Some("web"));
        assert_eq!(out.get("__meta_kubernetes_label_app"), Some("api"));
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn labelmap_with_replacement_template() {
        let l = ls(&[("foo", "a"), ("bar", "b")]);
        let r = rule(|c| {
            c.regex = re("(f)(o+)");
            c.replacement = "${2}_$1".into();
            c.action = Action::LabelMap;
        });
        assert_eq!(process(&l, &[r]).unwrap().get("oo_f"), Some("a"));
    }

    #[test]
    fn labelmap_overwrites_existing_and_uses_snapshot() {
        let l = ls(&[("a", "1"), ("x_a", "2")]);
        // x_(.*) -> $1: x_a's value is copied over a.
        let r = rule(|c| {
            c.regex = re("x_(.*)");
            c.action = Action::LabelMap;
        });
        assert_eq!(process(&l, &[r]).unwrap(), ls(&[("a", "2"), ("x_a", "2")]));
        // (.*) -> x_$1: only original labels are mapped, so no x_x_a.
        let r = rule(|c| {
            c.replacement = "x_$1".into();
            c.action = Action::LabelMap;
        });
        let out = process(&l, &[r]).unwrap();
        assert_eq!(out, ls(&[("a", "1"), ("x_a", "1"), ("x_x_a", "2")]));
    }

    #[test]
    fn labeldrop_and_labelkeep() {
        let l = ls(&[("__name__", "m"), ("a", "1"), ("ab", "2"), ("b", "3")]);
        let drop = rule(|c| {
            c.regex = re("a.*");
            c.action = Action::LabelDrop;
        });
        assert_eq!(
            process(&l, &[drop]).unwrap(),
            ls(&[("__name__", "m"), ("b", "3")])
        );
        let keep = rule(|c| {
            c.regex = re("__name__|a");
            c.action = Action::LabelKeep;
        });
        assert_eq!(
            process(&l, &[keep]).unwrap(),
            ls(&[("__name__", "m"), ("a", "1")])
        );
        // Dropping every label leaves an empty, kept, set.
        let all = rule(|c| {
            c.regex = re(".*");
            c.action = Action::LabelDrop;
        });
        assert_eq!(process(&l, &[all]), Some(Labels::empty()));
    }

    #[test]
    fn lowercase_and_uppercase() {
        let l = ls(&[("a", "MiXeD"), ("b", "Straße İ ǅ")]);
        let lower = rule(|c| {
            c.source_labels = src(&["a"]);
            c.target_label = "lo".into();
            c.action = Action::Lowercase;
        });
        let upper = rule(|c| {
            c.source_labels = src(&["a", "b"]);
            c.target_label = "up".into();
            c.action = Action::Uppercase;
        });
        let lower_b = rule(|c| {
            c.source_labels = src(&["b"]);
            c.target_label = "lob".into();
            c.action = Action::Lowercase;
        });
        let out = process(&l, &[lower, upper, lower_b]).unwrap();
        assert_eq!(out.get("lo"), Some("mixed"));
        // Simple mappings: ß has no single-rune upper case, ǅ -> Ǆ.
        assert_eq!(out.get("up"), Some("MIXED;STRAßE İ Ǆ"));
        assert_eq!(out.get("lob"), Some("straße i ǆ"));
        // Empty input deletes the target.
        let l2 = ls(&[("t", "x")]);
        let r = rule(|c| {
            c.source_labels = src(&["none"]);
            c.target_label = "t".into();
            c.action = Action::Lowercase;
        });
        assert_eq!(process(&l2, &[r]), Some(Labels::empty()));
    }

    #[test]
    fn rules_chain_in_order() {
        let l = ls(&[("__address__", "10.0.0.1:9100"), ("__meta_env", "prod")]);
        let cfgs = vec![
            rule(|c| {
                c.source_labels = src(&["__address__"]);
                c.regex = re("([^:]+):.*");
                c.target_label = "host".into();
            }),
            rule(|c| {
                c.regex = re("__meta_(.+)");
                c.action = Action::LabelMap;
            }),
            rule(|c| {
                c.regex = re("__meta_.*");
                c.action = Action::LabelDrop;
            }),
            rule(|c| {
                c.source_labels = src(&["env"]);
                c.regex = re("prod");
                c.action = Action::Keep;
            }),
        ];
        let out = process(&l, &cfgs).unwrap();
        assert_eq!(
            out,
            ls(&[
                ("__address__", "10.0.0.1:9100"),
                ("env", "prod"),
                ("host", "10.0.0.1")
            ])
        );
    }

    fn expand_str(pattern: &str, input: &str, template: &str) -> String {
        let r = re(pattern);
        let caps = r.inner().captures(input).unwrap();
        let mut out = String::new();
        expand(r.inner(), &caps, template, &mut out);
        out
    }

    #[test]
    fn expand_follows_go_rules() {
        let p = "(a)(b)(?P<name>c)";
        assert_eq!(expand_str(p, "abc", "$1-$2-$3"), "a-b-c");
        assert_eq!(expand_str(p, "abc", "${1}x"), "ax");
        // $1x is the group named "1x": unknown, so empty.
        assert_eq!(expand_str(p, "abc", "$1x"), "");
        assert_eq!(expand_str(p, "abc", "$name/${name}"), "c/c");
        assert_eq!(expand_str(p, "abc", "$$1"), "$1");
        assert_eq!(expand_str(p, "abc", "$"), "$");
        assert_eq!(expand_str(p, "abc", "a$-b"), "a$-b");
        assert_eq!(expand_str(p, "abc", "${1"), "${1");
        assert_eq!(expand_str(p, "abc", "${}"), "${}");
        // Leading zeros are names, not numbers.
        assert_eq!(expand_str(p, "abc", "$01"), "");
        assert_eq!(expand_str(p, "abc", "$0"), "abc");
        assert_eq!(expand_str(p, "abc", "$9"), "");
        // Unicode letters belong to the name.
        assert_eq!(expand_str(p, "abc", "$1é"), "");
        // Unmatched optional group expands to nothing.
        assert_eq!(expand_str("(x)?(y)", "y", "[$1][$2]"), "[][y]");
    }

    #[test]
    fn target_template_validity() {
        for ok in [
            "a", "_", "abc_1", "$1", "${1}", "a$1", "${1}_x", "$a$b", "l_$1z",
        ] {
            assert!(is_valid_target_template(ok), "{ok}");
        }
        for bad in ["", "1a", "l-$1", "$", "${}", "${1", "a b", "$-", "a$", "é"] {
            assert!(!is_valid_target_template(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn expand_never_panics(t in "\\PC{0,30}", input in "[a-c]{0,5}") {
            let r = re("(a*)(?P<n>b*)(c*)");
            if let Some(caps) = r.inner().captures(&input) {
                let mut out = String::new();
                expand(r.inner(), &caps, &t, &mut out);
                // Text without `$` is copied unchanged.
                if !t.contains('$') {
                    proptest::prop_assert_eq!(out, t);
                }
            }
        }

        #[test]
        fn process_never_panics(
            pairs in proptest::collection::btree_map("[a-z_]{1,5}", "\\PC{1,8}", 0..6),
            tmpl in "[a-z$_{}0-9]{0,8}",
            act in 0usize..11,
            modulus in 0u64..5,
        ) {
            let v: Vec<(String, String)> = pairs.into_iter().collect();
            let l = Labels::from_pairs(&v);
            let names: Vec<String> = v.iter().map(|(n, _)| n.clone()).collect();
            let r = rule(|c| {
                c.source_labels = names;
                c.target_label = tmpl.clone();
                c.replacement = tmpl.clone();
                c.action = Action::ALL[act];
                c.modulus = modulus;
            });
            let _ = process(&l, &[r]);
        }
    }
}
