//! A rule group: its rules, one evaluation of them all, the slotted
//! evaluation timestamps, stale markers, and the `for`-state restore.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use pharos_model::histogram::HistogramValue;
use pharos_model::{Labels, LabelsBuilder, METRIC_NAME, Matcher, stale_nan};
use pharos_storage::{AppendError, Appendable, Queryable};
use pharos_template::{Expander, QueryFunc};

use crate::file::GroupDef;
use crate::rule::{ALERT_FOR_STATE_METRIC, Alert, EvalContext, Rule};

/// Receives the alerts a rule wants sent (Prometheus's `NotifyFunc`).
///
/// Called from the evaluation thread after each alerting rule's
/// evaluation, with the rule's expression as Prometheus prints it (for the
/// generator URL) and the alerts due for (re-)sending. Must not block for
/// long: queue and return.
pub trait NotifyFunc: Send + Sync {
    /// Hands `alerts` of the rule with expression `expr` to the notifier.
    fn notify(&self, expr: &str, alerts: Vec<Alert>);
}

/// A [`NotifyFunc`] that drops everything (no Alertmanager configured).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotify;

impl NotifyFunc for NoNotify {
    fn notify(&self, _expr: &str, _alerts: Vec<Alert>) {}
}

/// What every group shares: the seams to the engine, storage and notifier,
/// and the flags that shape evaluation. Durations in milliseconds.
#[derive(Clone)]
pub struct GroupOptions {
    /// Runs instant queries for rules and templates.
    pub query: Arc<dyn QueryFunc>,
    /// Receives alerts to send.
    pub notify: Arc<dyn NotifyFunc>,
    /// Where rule results, `ALERTS` and `ALERTS_FOR_STATE` are written.
    pub appendable: Arc<dyn Appendable>,
    /// Where `ALERTS_FOR_STATE` is read back for the restore.
    pub queryable: Arc<dyn Queryable>,
    /// External labels (for `$externalLabels`).
    pub external_labels: Labels,
    /// External URL (for `$externalURL` and template functions).
    pub external_url: String,
    /// `--rules.alert.resend-delay` (default 1m).
    pub resend_delay: i64,
    /// `--rules.alert.for-outage-tolerance` (default 1h).
    pub outage_tolerance: i64,
    /// `--rules.alert.for-grace-period` (default 10m).
    pub for_grace_period: i64,
    /// The global `evaluation_interval`, for groups without `interval`.
    pub default_interval: i64,
    /// The global `rule_query_offset`, for groups without `query_offset`.
    pub default_query_offset: i64,
}

impl std::fmt::Debug for GroupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupOptions")
            .field("external_labels", &self.external_labels)
            .field("external_url", &self.external_url)
            .field("resend_delay", &self.resend_delay)
            .finish_non_exhaustive()
    }
}

/// A group of rules evaluated together, in order, on one interval.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// The file it was loaded from.
    pub file: String,
    /// Evaluation interval, ms.
    pub interval: i64,
    /// Query offset, ms.
    pub query_offset: i64,
    /// Most series/alerts per rule (0: none).
    pub limit: usize,
    /// The rules in file order.
    pub rules: Vec<Rule>,
    /// When the group was last evaluated (ms, 0: never).
    pub last_evaluation: i64,
    /// How long the last evaluation took, in seconds.
    pub evaluation_seconds: f64,
    /// Whether the `for` state still has to be restored.
    pub should_restore: bool,
    /// Rule evaluations so far (`prometheus_rule_evaluations_total`).
    pub rule_evaluations: u64,
    /// Failed rule evaluations (`prometheus_rule_evaluation_failures_total`).
    pub rule_failures: u64,
    prev_series: Vec<HashSet<Labels>>,
}

impl Group {
    /// Builds a group from its definition. Group labels are merged into
    /// every rule (rule labels win).
    pub fn new(def: &GroupDef, opts: &GroupOptions, should_restore: bool) -> Group {
        let rules: Vec<Rule> = def
            .rules
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if !def.labels.is_empty() {
                    let mut merged = def.labels.clone();
                    merged.retain(|(k, _)| !r.labels.iter().any(|(rk, _)| rk == k));
                    merged.extend(r.labels);
                    merged.sort();
                    r.labels = merged;
                }
                Rule::new(r, !should_restore)
            })
            .collect();
        Group {
            name: def.name.clone(),
            file: def.file.clone(),
            interval: def
                .interval
                .map(|d| d.millis())
                .filter(|&d| d > 0)
                .unwrap_or(opts.default_interval)
                .max(1),
            query_offset: def
                .query_offset
                .map(|d| d.millis())
                .unwrap_or(opts.default_query_offset),
            limit: def.limit,
            prev_series: vec![HashSet::new(); rules.len()],
            rules,
            last_evaluation: 0,
            evaluation_seconds: 0.0,
            should_restore,
            rule_evaluations: 0,
            rule_failures: 0,
        }
    }

    /// The group's identity in a manager: file and name.
    pub fn key(&self) -> (String, String) {
        (self.file.clone(), self.name.clone())
    }

    /// Prometheus's hash of the group (labels `file` and `name`, hashed as
    /// `labels.Labels.Hash` does: xxHash64 over `name\xffvalue\xff` pairs).
    pub fn hash(&self) -> u64 {
        let mut b = Vec::new();
        for (n, v) in [("file", self.file.as_str()), ("name", self.name.as_str())] {
            b.extend_from_slice(n.as_bytes());
            b.push(0xff);
            b.extend_from_slice(v.as_bytes());
            b.push(0xff);
        }
        xxhash_rust::xxh64::xxh64(&b, 0)
    }

    /// The evaluation slot at or before `now_ms`: groups are spread over
    /// their interval by their hash, so their evaluation times are the same
    /// after every restart (Prometheus's `EvalTimestamp`, in ms).
    pub fn eval_timestamp(&self, now_ms: i64) -> i64 {
        // Prometheus works in nanoseconds and truncates to ms; with the
        // base a whole number of ms, truncating the offset alone is the same.
        let interval_ns = self.interval as u64 * 1_000_000;
        let offset = ((self.hash() % interval_ns) / 1_000_000) as i64;
        let adj = now_ms - offset;
        adj - adj.rem_euclid(self.interval) + offset
    }

    /// Takes over runtime state from the same group before a reload: active
    /// alerts and the series written last time, for rules with the same
    /// kind, name and labels.
    pub fn copy_state(&mut self, old: &Group) {
        self.last_evaluation = old.last_evaluation;
        self.evaluation_seconds = old.evaluation_seconds;
        self.rule_evaluations = old.rule_evaluations;
        self.rule_failures = old.rule_failures;
        let mut by_id: HashMap<_, Vec<usize>> = HashMap::new();
        for (i, r) in old.rules.iter().enumerate() {
            by_id.entry(r.identity()).or_default().push(i);
        }
        for (i, r) in self.rules.iter_mut().enumerate() {
            let Some(list) = by_id.get_mut(&r.identity()) else {
                continue;
            };
            if list.is_empty() {
                continue;
            }
            let oi = list.remove(0);
            let o = &old.rules[oi];
            r.active = o.active.clone();
            r.restored = o.restored;
            r.health = o.health;
            r.last_error = o.last_error.clone();
            r.last_evaluation = o.last_evaluation;
            r.evaluation_seconds = o.evaluation_seconds;
            if let Some(p) = old.prev_series.get(oi) {
                self.prev_series[i] = p.clone();
            }
        }
        if !old.should_restore {
            self.should_restore = false;
        }
    }

    /// Evaluates every rule at `ts` (ms): writes results, stale markers for
    /// series that disappeared, and hands alerts to the notifier.
    pub fn eval(&mut self, ts: i64, opts: &GroupOptions) {
        let started = std::time::Instant::now();
        let expander = Expander::new(opts.query.clone(), opts.external_url.clone());
        for i in 0..self.rules.len() {
            let rule_started = std::time::Instant::now();
            let cx = EvalContext {
                query: &opts.query,
                expander: &expander,
                external_labels: &opts.external_labels,
                external_url: &opts.external_url,
                query_offset: self.query_offset,
                limit: self.limit,
            };
            let rule = &mut self.rules[i];
            rule.last_evaluation = ts;
            self.rule_evaluations += 1;
            let res = rule.eval(ts, &cx);
            rule.evaluation_seconds = rule_started.elapsed().as_secs_f64();
            let samples = match res {
                Ok(s) => {
                    rule.health = crate::rule::RuleHealth::Good;
                    rule.last_error = None;
                    s
                }
                Err(e) => {
                    tracing::warn!(group = %self.name, rule = %rule.name(), err = %e, "Evaluating rule failed");
                    rule.health = crate::rule::RuleHealth::Bad;
                    rule.last_error = Some(e);
                    self.rule_failures += 1;
                    continue;
                }
            };
            if rule.is_alerting() {
                let alerts = rule.alerts_to_send(ts, opts.resend_delay, self.interval);
                if !alerts.is_empty() {
                    opts.notify.notify(&rule.expr_string, alerts);
                }
            }
            let mut app = opts.appendable.appender();
            let mut returned = HashSet::with_capacity(samples.len());
            for s in &samples {
                let res = match &s.h {
                    Some(h) => app.append_histogram(
                        0,
                        &s.labels,
                        s.t,
                        HistogramValue::Float((**h).clone()),
                    ),
                    None => app.append(0, &s.labels, s.t, s.v),
                };
                match res {
                    Ok(_) => {
                        returned.insert(s.labels.clone());
                    }
                    Err(e) => {
                        rule.health = crate::rule::RuleHealth::Bad;
                        rule.last_error = Some(e.to_string());
                    }
                }
            }
            let stale_t = ts - self.query_offset;
            for lset in &self.prev_series[i] {
                if !returned.contains(lset) {
                    match app.append(0, lset, stale_t, stale_nan()) {
                        Ok(_) | Err(AppendError::OutOfOrder) | Err(AppendError::Duplicate) => {}
                        Err(e) => {
                            tracing::warn!(series = %lset, err = %e, "Adding stale sample failed")
                        }
                    }
                }
            }
            if let Err(e) = app.commit() {
                tracing::warn!(group = %self.name, err = %e, "Rule sample appending failed");
            }
            self.prev_series[i] = returned;
        }
        self.last_evaluation = ts;
        self.evaluation_seconds = started.elapsed().as_secs_f64();
    }

    /// Writes stale markers at `ts` for every series the group wrote last
    /// time (the group is going away).
    pub fn mark_all_stale(&mut self, ts: i64, opts: &GroupOptions) {
        let mut app = opts.appendable.appender();
        for set in &mut self.prev_series {
            for lset in set.drain() {
                let _ = app.append(0, &lset, ts, stale_nan());
            }
        }
        if let Err(e) = app.commit() {
            tracing::warn!(group = %self.name, err = %e, "Writing stale markers failed");
        }
    }

    /// Restores the active time of pending/firing alerts from the
    /// `ALERTS_FOR_STATE` series written before a restart, as Prometheus
    /// does (`--rules.alert.for-outage-tolerance`, `--rules.alert.for-grace-period`).
    pub fn restore_for_state(&mut self, ts: i64, opts: &GroupOptions) {
        let mint = ts - opts.outage_tolerance;
        let querier = match opts.queryable.querier(mint, ts) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(group = %self.name, err = %e, "Failed to get querier for restoring alert state");
                return;
            }
        };
        for rule in self.rules.iter_mut().filter(|r| r.is_alerting()) {
            let hold = rule.hold_duration();
            if hold < opts.for_grace_period {
                rule.restored = true;
                continue;
            }
            let mut matchers = vec![
                Matcher::equal(METRIC_NAME, ALERT_FOR_STATE_METRIC),
                Matcher::equal("alertname", rule.name()),
            ];
            for (k, v) in &rule.def.labels {
                // Templated labels cannot be matched before expansion.
                if !v.contains("{{") {
                    matchers.push(Matcher::equal(k, v));
                }
            }
            let mut last: HashMap<Labels, (i64, f64)> = HashMap::new();
            let mut set = querier.select(false, None, &matchers);
            while let Some(mut s) = set.next() {
                let mut lb = LabelsBuilder::from(&s.labels);
                lb.del(METRIC_NAME);
                let key = lb.build();
                let mut lastv = None;
                while let Some(smp) = s.samples.next() {
                    lastv = Some((smp.t, smp.v));
                }
                if let Some(v) = lastv {
                    last.insert(key, v);
                }
            }
            for a in rule.active.values_mut() {
                let Some(&(t, v)) = last.get(&a.labels) else {
                    continue;
                };
                if pharos_model::is_stale_nan(v) {
                    continue;
                }
                let down_at = t.div_euclid(1000) * 1000;
                let mut restored_active_at = (v as i64) * 1000;
                let remaining = hold - (down_at - restored_active_at);
                if remaining <= 0 {
                    // It was firing when we went down; the next evaluation
                    // sets it firing again.
                } else if remaining < opts.for_grace_period {
                    restored_active_at = ts + opts.for_grace_period - hold;
                } else {
                    restored_active_at += ts - down_at;
                }
                a.active_at = restored_active_at;
            }
            rule.restored = true;
        }
    }
}

#[cfg(test)]
mod tests;
