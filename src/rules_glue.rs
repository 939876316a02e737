//! Adapters between the rule manager's seams and the concrete engine,
//! storage and notifier (the composition root's job).

use std::sync::Arc;

use pharos_model::{Labels, MatchOp};
use pharos_promql::{Engine, Value};
use pharos_rules::{Alert, NotifyFunc, QueryFunc, QuerySample};
use pharos_storage::Queryable;

/// Runs rule and template queries on the engine over a storage, as
/// Prometheus's `EngineQueryFunc`: a scalar result becomes one sample
/// without labels; strings and matrices are errors.
pub struct EngineQuery {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The storage queried.
    pub queryable: Arc<dyn Queryable>,
}

impl QueryFunc for EngineQuery {
    fn query(&self, q: &str, ts: i64) -> Result<Vec<QuerySample>, String> {
        let r = self
            .engine
            .instant_query(&*self.queryable, q, ts)
            .map_err(|e| e.to_string())?;
        match r.value {
            Value::Vector(v) => Ok(v
                .into_iter()
                .map(|s| QuerySample {
                    labels: s.metric,
                    // A histogram sample's float is 0, as Prometheus's `F`.
                    value: if s.h.is_some() { 0.0 } else { s.v },
                    histogram: s.h,
                })
                .collect()),
            Value::Scalar { v, .. } => Ok(vec![QuerySample {
                labels: Labels::empty(),
                value: v,
                histogram: None,
            }]),
            _ => Err("rule result is not a vector or scalar".to_string()),
        }
    }
}

/// Hands rule alerts to the Alertmanager notifier, as Prometheus's
/// `sendAlerts`: `startsAt` is the firing time, `endsAt` the resolution time
/// or, while firing, the validity limit; the generator URL links the
/// expression in the table view.
pub struct NotifierSink {
    /// The notifier.
    pub notifier: Arc<pharos_notifier::Notifier>,
    /// The external URL (without trailing slash handling: as given).
    pub external_url: String,
}

impl NotifyFunc for NotifierSink {
    fn notify(&self, expr: &str, alerts: Vec<Alert>) {
        let base = self.external_url.trim_end_matches('/');
        let link = format!(
            "{base}/graph?g0.expr={}&g0.tab=1",
            pharos_template::gofmt::query_escape(expr)
        );
        let out = alerts
            .into_iter()
            .map(|a| pharos_notifier::Alert {
                labels: a.labels,
                annotations: a.annotations,
                starts_at: a.fired_at,
                ends_at: if a.resolved_at != 0 {
                    a.resolved_at
                } else {
                    a.valid_until
                },
                generator_url: link.clone(),
            })
            .collect();
        self.notifier.send(out);
    }
}

/// Parses a series in selector notation (`up{job="a"}`, `{__name__="x"}`)
/// into labels; only equality matchers are allowed.
pub fn parse_metric(s: &str) -> Result<Labels, String> {
    let matchers = pharos_promql::parse_selector(s).map_err(|e| e.to_string())?;
    let mut pairs = Vec::new();
    for m in matchers {
        if m.op != MatchOp::Equal {
            return Err(format!("invalid series {s:?}: only = matchers are allowed"));
        }
        pairs.push((m.name.clone(), m.value.clone()));
    }
    Ok(Labels::from_pairs(&pairs))
}
