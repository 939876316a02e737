//! Recording and alerting rules, as Prometheus's `rules` package runs them.
//!
//! - [`mod@file`]: rule files in Prometheus's YAML format, validated like
//!   `promtool check rules`, errors positioned `file:line:col`.
//! - [`rule`]: one rule's evaluation; for alerting rules the alert state
//!   machine (pending, firing, `keep_firing_for`, resolved alerts kept
//!   15 minutes) and the `ALERTS` / `ALERTS_FOR_STATE` series.
//! - [`group`]: a group's evaluation (results and stale markers appended
//!   through `storage::Appendable`), Prometheus's slotted evaluation
//!   timestamps, and the `for`-state restore after a restart.
//! - [`manager`]: one task per group, reload with state carried over.
//!
//! Why the seams look like this: rules sit beside the scraper, above the
//! engine and the notifier. They reach the engine through
//! [`pharos_template::QueryFunc`] (the same trait templates use for
//! `query`), and the notifier through [`NotifyFunc`], as Prometheus's rules
//! manager does with its `QueryFunc`/`NotifyFunc`. The binary wires the
//! concrete engine, storage and Alertmanager client in; tests plug in their
//! own. Evaluation is synchronous (the engine and storage are CPU-bound);
//! the manager runs it on Tokio's blocking pool.

pub mod file;
pub mod group;
pub mod manager;
pub mod rule;

use serde_saphyr::Location;

pub use file::{
    DuplicateRule, GroupDef, RuleDef, RuleFile, RuleKind, duplicate_rules, load_rule_file,
    parse_rule_file,
};
pub use group::{Group, GroupOptions, NoNotify, NotifyFunc};
pub use manager::{Manager, load_rule_files};
pub use pharos_template::{QueryFunc, QuerySample};
pub use rule::{Alert, AlertState, OutSample, Rule, RuleHealth};

/// A problem in a rule file, with its position when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}{message}", position.map(|(l, c)| format!("{l}:{c}: ")).unwrap_or_else(|| " ".to_string()))]
pub struct RuleError {
    /// The file.
    pub file: String,
    /// Line and column, from 1.
    pub position: Option<(u32, u32)>,
    /// What is wrong.
    pub message: String,
}

impl RuleError {
    pub(crate) fn at(file: &str, loc: &Location, message: impl Into<String>) -> RuleError {
        RuleError {
            file: file.to_string(),
            position: (loc.line() > 0).then(|| (loc.line() as u32, loc.column() as u32)),
            message: message.into(),
        }
    }

    pub(crate) fn plain(file: &str, message: impl Into<String>) -> RuleError {
        RuleError {
            file: file.to_string(),
            position: None,
            message: message.into(),
        }
    }
}
