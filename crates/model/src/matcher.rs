//! Label matchers: `=`, `!=`, `=~`, `!~`.
//!
//! Regexes are anchored at both ends and `.` matches newlines, as in
//! Prometheus 3. A matcher keeps its compiled regex so matching a value is a
//! single call; literal-only regexes (`a|b|c`) are answered by set lookup,
//! the common shape in dashboards' `$var` expansions.

use std::fmt;

use crate::labels::escape_label_value;

/// The four matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// Error building a matcher.
#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {source}")]
pub struct MatcherError {
    /// The pattern as given.
    pub pattern: String,
    /// The regex engine's complaint.
    #[source]
    pub source: regex::Error,
}

/// A compiled label matcher.
#[derive(Clone)]
pub struct Matcher {
    /// Label name the matcher applies to.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// The value or pattern as written.
    pub value: String,
    re: Option<Regex>,
}

/// A Prometheus-style anchored regex, with a literal-alternation fast path.
#[derive(Clone, Debug)]
pub struct Regex {
    re: regex::Regex,
    literals: Option<Vec<String>>,
}

impl Regex {
    /// Compiles `pattern` anchored as `^(?s:pattern)$`.
    pub fn new(pattern: &str) -> Result<Regex, MatcherError> {
        let re =
            regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|source| MatcherError {
                pattern: pattern.to_string(),
                source,
            })?;
        let literals = literal_alternatives(pattern);
        Ok(Regex { re, literals })
    }

    /// True when the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        match &self.literals {
            Some(l) => l.iter().any(|x| x == s),
            None => self.re.is_match(s),
        }
    }

    /// The anchored compiled regex, for capture-group replacement.
    pub fn inner(&self) -> &regex::Regex {
        &self.re
    }

    /// The alternatives when the pattern is a plain `a|b|c` of literals.
    pub fn literals(&self) -> Option<&[String]> {
        self.literals.as_deref()
    }
}

fn literal_alternatives(p: &str) -> Option<Vec<String>> {
    const META: &[char] = &[
        '\\', '.', '+', '*', '?', '(', ')', '[', ']', '{', '}', '^', '$',
    ];
    if p.contains(META) {
        return None;
    }
    Some(p.split('|').map(str::to_string).collect())
}

impl Matcher {
    /// Builds a matcher, compiling the regex for `=~` and `!~`.
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Matcher, MatcherError> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(Regex::new(value)?),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Shorthand for an equality matcher (cannot fail).
    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.to_string(),
            op: MatchOp::Equal,
            value: value.to_string(),
            re: None,
        }
    }

    /// True when label value `v` (empty when the label is absent) matches.
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            (MatchOp::Regex | MatchOp::NotRegex, None) => {
                panic!("BUG: regex matcher built without a compiled regex")
            }
        }
    }

    /// True when the matcher accepts the empty string, i.e. also selects
    /// series that lack the label entirely.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// The compiled regex of a `=~`/`!~` matcher.
    pub fn regex(&self) -> Option<&Regex> {
        self.re.as_ref()
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}\"{}\"",
            self.name,
            self.op,
            escape_label_value(&self.value)
        )
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops() {
        let m = Matcher::new(MatchOp::Regex, "a", "fo+").unwrap();
        assert!(m.matches("foo") && !m.matches("xfoo") && !m.matches("foox"));
        let m = Matcher::new(MatchOp::Regex, "a", "a.b").unwrap();
        assert!(m.matches("a\nb"));
        let m = Matcher::new(MatchOp::NotRegex, "a", "x|y").unwrap();
        assert!(!m.matches("x") && m.matches("z") && m.matches(""));
        assert!(Matcher::new(MatchOp::Regex, "a", "(").is_err());
        assert!(
            Matcher::new(MatchOp::Regex, "a", ".*")
                .unwrap()
                .matches_empty()
        );
        assert_eq!(Matcher::equal("a", "b\"").to_string(), "a=\"b\\\"\"");
    }
}
