//! Recording and alerting rules: one evaluation step each, and the alert
//! state machine (inactive → pending → firing → resolved).

use std::collections::HashMap;
use std::sync::Arc;

use pharos_model::histogram::FloatHistogram;
use pharos_model::{Labels, LabelsBuilder, METRIC_NAME};
use pharos_template::{Expander, QueryFunc, SampleValue};

use crate::file::{RuleDef, RuleKind};

/// How long a resolved alert is kept (and re-sent) after it resolved, as
/// Prometheus does, so Alertmanager sees the resolution even if a send fails.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The metric name of the alert state series.
pub const ALERT_METRIC: &str = "ALERTS";
/// The metric name of the series that remembers when alerts became active.
pub const ALERT_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

/// The state of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Not active (resolved, kept for a while to be re-sent).
    Inactive,
    /// Active, waiting for `for` to elapse.
    Pending,
    /// Active and firing.
    Firing,
}

impl AlertState {
    /// The lower-case name used in the `alertstate` label and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of an alerting rule. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Current state.
    pub state: AlertState,
    /// Identifying labels (expression result labels without `__name__`,
    /// plus the rule's expanded labels and `alertname`).
    pub labels: Labels,
    /// Expanded annotations, sorted by name.
    pub annotations: Vec<(String, String)>,
    /// The expression's value at the last evaluation.
    pub value: f64,
    /// When the alert became active.
    pub active_at: i64,
    /// When it started firing (0 if it has not).
    pub fired_at: i64,
    /// When it resolved (0 if it has not).
    pub resolved_at: i64,
    /// When it was last sent to the notifier (0 if never).
    pub last_sent_at: i64,
    /// The `endsAt` sent while firing: last send plus four send periods.
    pub valid_until: i64,
    /// Since when it keeps firing although the condition is gone (0: not).
    pub keep_firing_since: i64,
}

impl Alert {
    /// Whether this alert must be (re-)sent at `ts` (Prometheus's rules:
    /// never while pending, always after a resolution, otherwise every
    /// `resend_delay`).
    pub fn needs_sending(&self, ts: i64, resend_delay: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        if self.resolved_at > self.last_sent_at {
            return true;
        }
        self.last_sent_at + resend_delay < ts
    }
}

/// Rule health after its last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleHealth {
    /// Not evaluated yet.
    Unknown,
    /// The last evaluation succeeded.
    Good,
    /// The last evaluation failed.
    Bad,
}

impl RuleHealth {
    /// The API's names: `unknown`, `ok`, `err`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleHealth::Unknown => "unknown",
            RuleHealth::Good => "ok",
            RuleHealth::Bad => "err",
        }
    }
}

/// One output sample of a rule evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct OutSample {
    /// Series labels including `__name__`.
    pub labels: Labels,
    /// Timestamp (evaluation time minus the query offset), ms.
    pub t: i64,
    /// Value (unused when `h` is set).
    pub v: f64,
    /// The native histogram, when a recording rule's result is one (it is
    /// written as a float histogram sample, as Prometheus does).
    pub h: Option<Box<FloatHistogram>>,
}

/// What evaluating a rule needs from its surroundings.
pub struct EvalContext<'a> {
    /// Runs the rule's query (and template `query` calls).
    pub query: &'a Arc<dyn QueryFunc>,
    /// Expands templates.
    pub expander: &'a Expander,
    /// External labels for `$externalLabels`.
    pub external_labels: &'a Labels,
    /// The external URL for `$externalURL`.
    pub external_url: &'a str,
    /// The group's query offset, ms.
    pub query_offset: i64,
    /// The group's limit (0: none).
    pub limit: usize,
}

/// A rule with its runtime state.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The definition as loaded (group labels already merged in).
    pub def: RuleDef,
    /// The expression as Prometheus prints it (parsed and re-printed).
    pub expr_string: String,
    /// Health after the last evaluation.
    pub health: RuleHealth,
    /// The last evaluation's error.
    pub last_error: Option<String>,
    /// When it was last evaluated (ms; 0 = never).
    pub last_evaluation: i64,
    /// How long the last evaluation took, in seconds.
    pub evaluation_seconds: f64,
    /// Alerting rules: active alerts by label set.
    pub active: HashMap<Labels, Alert>,
    /// Alerting rules: whether the `for` state was restored (until then no
    /// `ALERTS` series are written).
    pub restored: bool,
}

impl Rule {
    /// Makes a rule from its definition; `restored` says whether to skip
    /// the `for`-state restore (true when nothing needs restoring).
    pub fn new(def: RuleDef, restored: bool) -> Rule {
        let expr_string = match promql_parser::parser::parse(&def.expr) {
            Ok(e) => e.to_string(),
            Err(_) => def.expr.clone(),
        };
        Rule {
            def,
            expr_string,
            health: RuleHealth::Unknown,
            last_error: None,
            last_evaluation: 0,
            evaluation_seconds: 0.0,
            active: HashMap::new(),
            restored,
        }
    }

    /// The record or alert name.
    pub fn name(&self) -> &str {
        self.def.name()
    }

    /// Whether this is an alerting rule.
    pub fn is_alerting(&self) -> bool {
        matches!(self.def.kind, RuleKind::Alerting { .. })
    }

    /// The `for` duration of an alerting rule, ms (0 otherwise).
    pub fn hold_duration(&self) -> i64 {
        match &self.def.kind {
            RuleKind::Alerting { for_, .. } => for_.millis(),
            RuleKind::Recording { .. } => 0,
        }
    }

    /// A key that identifies the rule across reloads: kind, name, labels.
    pub fn identity(&self) -> (bool, String, Vec<(String, String)>) {
        (
            self.is_alerting(),
            self.name().to_string(),
            self.def.labels.clone(),
        )
    }

    /// Evaluates the rule at `ts` (ms) and returns the samples to append.
    pub fn eval(&mut self, ts: i64, cx: &EvalContext<'_>) -> Result<Vec<OutSample>, String> {
        match &self.def.kind {
            RuleKind::Recording { record } => {
                let record = record.clone();
                self.eval_recording(&record, ts, cx)
            }
            RuleKind::Alerting { .. } => self.eval_alerting(ts, cx),
        }
    }

    fn eval_recording(
        &self,
        record: &str,
        ts: i64,
        cx: &EvalContext<'_>,
    ) -> Result<Vec<OutSample>, String> {
        let t = ts - cx.query_offset;
        let res = cx.query.query(&self.expr_string, t)?;
        let mut out = Vec::with_capacity(res.len());
        let mut seen = std::collections::HashSet::with_capacity(res.len());
        for s in res {
            let mut b = LabelsBuilder::from(&s.labels);
            b.set(METRIC_NAME, record);
            for (k, v) in &self.def.labels {
                b.set(k, v);
            }
            let labels = b.build();
            if !seen.insert(labels.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .to_string(),
                );
            }
            out.push(OutSample {
                labels,
                t,
                v: s.value,
                h: s.histogram,
            });
        }
        if cx.limit > 0 && out.len() > cx.limit {
            return Err(format!(
                "exceeded limit of {} with {} series",
                cx.limit,
                out.len()
            ));
        }
        Ok(out)
    }

    fn eval_alerting(&mut self, ts: i64, cx: &EvalContext<'_>) -> Result<Vec<OutSample>, String> {
        let RuleKind::Alerting {
            alert: name,
            for_,
            keep_firing_for,
            annotations,
        } = &self.def.kind
        else {
            panic!("BUG: eval_alerting on a recording rule");
        };
        let (hold, keep_for) = (for_.millis(), keep_firing_for.millis());
        let t = ts - cx.query_offset;
        let res = cx.query.query(&self.expr_string, t)?;
        let mut fresh: HashMap<Labels, Alert> = HashMap::with_capacity(res.len());
        for s in res {
            // As Prometheus: `$value` is the histogram of a histogram
            // sample, while the alert's value is the sample's float (0).
            let (value, tmpl_value) = match &s.histogram {
                Some(h) => (0.0, SampleValue::Histogram(h)),
                None => (s.value, SampleValue::Float(s.value)),
            };
            let expand = |text: &str| {
                cx.expander.expand_alert_sample(
                    name,
                    text,
                    &s.labels,
                    cx.external_labels,
                    tmpl_value,
                    ts,
                )
            };
            let mut b = LabelsBuilder::from(&s.labels);
            b.del(METRIC_NAME);
            for (k, v) in &self.def.labels {
                b.set(k, &expand(v));
            }
            b.set("alertname", name);
            let labels = b.build();
            let anns: Vec<(String, String)> = annotations
                .iter()
                .map(|(k, v)| (k.clone(), expand(v)))
                .collect();
            if fresh.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .to_string(),
                );
            }
            fresh.insert(
                labels.clone(),
                Alert {
                    state: AlertState::Pending,
                    labels,
                    annotations: anns,
                    value,
                    active_at: ts,
                    fired_at: 0,
                    resolved_at: 0,
                    last_sent_at: 0,
                    valid_until: 0,
                    keep_firing_since: 0,
                },
            );
        }
        let current: std::collections::HashSet<Labels> = fresh.keys().cloned().collect();
        for (k, a) in fresh {
            match self.active.get_mut(&k) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(k, a);
                }
            }
        }
        let mut out = Vec::new();
        let mut active_count = 0usize;
        let mut remove = Vec::new();
        for (k, a) in self.active.iter_mut() {
            if !current.contains(k) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_for > 0 {
                    if a.keep_firing_since == 0 {
                        a.keep_firing_since = ts;
                    }
                    if ts - a.keep_firing_since < keep_for {
                        keep_firing = true;
                    }
                }
                if a.state == AlertState::Pending
                    || (a.resolved_at != 0 && ts - a.resolved_at > RESOLVED_RETENTION_MS)
                {
                    remove.push(k.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = ts;
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = 0;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= hold {
                a.state = AlertState::Firing;
                a.fired_at = ts;
            }
            if self.restored {
                out.push(alert_sample(a, t));
                out.push(for_state_sample(a, t));
            }
        }
        for k in remove {
            self.active.remove(&k);
        }
        if cx.limit > 0 && active_count > cx.limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {} with {} alerts",
                cx.limit, active_count
            ));
        }
        Ok(out)
    }

    /// Alerts that must be sent at `ts`, marked as sent. `interval` is the
    /// group's interval; alerts stay valid for four send periods.
    pub fn alerts_to_send(&mut self, ts: i64, resend_delay: i64, interval: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.needs_sending(ts, resend_delay) {
                a.last_sent_at = ts;
                a.valid_until = ts + 4 * resend_delay.max(interval);
                out.push(a.clone());
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

fn alert_sample(a: &Alert, t: i64) -> OutSample {
    let mut b = LabelsBuilder::from(&a.labels);
    b.set(METRIC_NAME, ALERT_METRIC);
    b.set("alertstate", a.state.as_str());
    OutSample {
        labels: b.build(),
        t,
        v: 1.0,
        h: None,
    }
}

fn for_state_sample(a: &Alert, t: i64) -> OutSample {
    let mut b = LabelsBuilder::from(&a.labels);
    b.set(METRIC_NAME, ALERT_FOR_STATE_METRIC);
    OutSample {
        labels: b.build(),
        t,
        // Whole seconds, as Prometheus writes `ActiveAt.Unix()`.
        v: a.active_at.div_euclid(1000) as f64,
        h: None,
    }
}
