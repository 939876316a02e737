//! Rules and alerting in the server: the rule manager, the Alertmanager
//! notifier with its discovery, their (re)configuration, and their view for
//! the API.

use std::sync::Arc;

use parking_lot::Mutex;
use pharos_config::{Config, ScrapeConfig};
use pharos_discovery::{Discovery, DiscoveryOptions};
use pharos_notifier::Notifier;
use pharos_promql::Engine;
use pharos_rules::{GroupOptions, Manager, RuleKind};
use pharos_storage::{Appendable, Queryable};
use pharos_web::{AlertInfo, RuleGroupInfo, RuleInfo, RuleInfoKind, RulesRetriever};

use crate::rules_glue::{EngineQuery, NotifierSink};

/// `cfg` with `rule_files` and Alertmanager file discovery paths made
/// relative to the directory of `path` (the configuration file).
pub fn resolved(mut cfg: Config, path: &std::path::Path) -> Config {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    pharos_config::resolve_rule_and_alerting_paths(&mut cfg, dir);
    cfg
}

/// Reads the alerting flags.
pub fn flags(f: &crate::cli::ServerFlags) -> anyhow::Result<AlertingFlags> {
    let d = |name: &str, v: &str| -> anyhow::Result<i64> {
        pharos_model::Duration::parse(v)
            .map(|d| d.millis())
            .map_err(|_| anyhow::anyhow!("invalid value {v:?} for --{name}"))
    };
    Ok(AlertingFlags {
        outage_tolerance: d(
            "rules.alert.for-outage-tolerance",
            &f.rules_alert_for_outage_tolerance,
        )?,
        for_grace_period: d(
            "rules.alert.for-grace-period",
            &f.rules_alert_for_grace_period,
        )?,
        resend_delay: d("rules.alert.resend-delay", &f.rules_alert_resend_delay)?,
        queue_capacity: f.alertmanager_notification_queue_capacity,
    })
}

/// Applies a reloaded configuration to rules and alerting; a broken rule
/// file keeps the running rules and is reported (logged and returned).
pub async fn reload(a: &Alerting, cfg: &Config) -> Result<(), String> {
    match a.apply(cfg).await {
        Ok(()) => {
            tracing::info!(
                rule_files = cfg.rule_files.len(),
                "Completed loading of rules and alerting configuration"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(err = %e, "Error loading rules, previous rule set restored");
            Err(format!("error loading rules: {e}"))
        }
    }
}

/// The `--rules.alert.*` and notifier settings, in milliseconds.
#[derive(Debug, Clone)]
pub struct AlertingFlags {
    /// `--rules.alert.for-outage-tolerance`.
    pub outage_tolerance: i64,
    /// `--rules.alert.for-grace-period`.
    pub for_grace_period: i64,
    /// `--rules.alert.resend-delay`.
    pub resend_delay: i64,
    /// `--alertmanager.notification-queue-capacity`.
    pub queue_capacity: usize,
}

/// Rule manager plus notifier, as the server runs them.
pub struct Alerting {
    /// The rule manager.
    pub rules: Arc<Manager>,
    /// The Alertmanager client.
    pub notifier: Arc<Notifier>,
    discoveries: Mutex<Vec<(Discovery, tokio::task::JoinHandle<()>)>>,
    flags: AlertingFlags,
    engine: Arc<Engine>,
    appendable: Arc<dyn Appendable>,
    queryable: Arc<dyn Queryable>,
    external_url: String,
}

impl Alerting {
    /// Builds the (idle) rule manager and notifier.
    pub fn new(
        flags: AlertingFlags,
        engine: Arc<Engine>,
        appendable: Arc<dyn Appendable>,
        queryable: Arc<dyn Queryable>,
        external_url: String,
    ) -> Alerting {
        Alerting {
            rules: Arc::new(Manager::new()),
            notifier: Arc::new(Notifier::new(flags.queue_capacity)),
            discoveries: Mutex::new(Vec::new()),
            flags,
            engine,
            appendable,
            queryable,
            external_url: external_url.trim_end_matches('/').to_string(),
        }
    }

    /// Applies a configuration: loads its rule files first (a broken file
    /// fails the whole apply and leaves the running rules and Alertmanagers
    /// alone), then reconfigures the notifier and its discovery and swaps
    /// the rule groups. `cfg.rule_files` must already be resolved against
    /// the config file's directory.
    pub async fn apply(&self, cfg: &Config) -> Result<(), String> {
        let groups = pharos_rules::load_rule_files(&cfg.rule_files).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        self.notifier
            .apply_config(cfg.global.external_labels.clone(), &cfg.alerting);
        let mut discoveries = Vec::new();
        for (i, am) in cfg.alerting.alertmanagers.iter().enumerate() {
            if am.file_sd_configs.is_empty()
                && am.http_sd_configs.is_empty()
                && am.dns_sd_configs.is_empty()
            {
                continue;
            }
            let mut sc = ScrapeConfig::new(&format!("alertmanager/{i}"), &cfg.global);
            sc.static_configs = am.static_configs.clone();
            sc.file_sd_configs = am.file_sd_configs.clone();
            sc.http_sd_configs = am.http_sd_configs.clone();
            sc.dns_sd_configs = am.dns_sd_configs.clone();
            let d = Discovery::start(&sc, &DiscoveryOptions::default());
            let mut rx = d.subscribe();
            let notifier = self.notifier.clone();
            let task = tokio::spawn(async move {
                loop {
                    let groups: Vec<_> = rx
                        .borrow_and_update()
                        .iter()
                        .map(|g| (g.targets.clone(), g.labels.clone()))
                        .collect();
                    notifier.set_groups(i, &groups);
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            });
            discoveries.push((d, task));
        }
        for (_, task) in std::mem::replace(&mut *self.discoveries.lock(), discoveries) {
            task.abort();
        }
        let opts = GroupOptions {
            query: Arc::new(EngineQuery {
                engine: self.engine.clone(),
                queryable: self.queryable.clone(),
            }),
            notify: Arc::new(NotifierSink {
                notifier: self.notifier.clone(),
                external_url: self.external_url.clone(),
            }),
            appendable: self.appendable.clone(),
            queryable: self.queryable.clone(),
            external_labels: cfg.global.external_labels.clone(),
            external_url: self.external_url.clone(),
            resend_delay: self.flags.resend_delay,
            outage_tolerance: self.flags.outage_tolerance,
            for_grace_period: self.flags.for_grace_period,
            default_interval: cfg.global.evaluation_interval.millis(),
            default_query_offset: cfg.global.rule_query_offset.millis(),
        };
        self.rules.update(opts, groups).await;
        Ok(())
    }

    /// Stops rule evaluation and discovery (the notifier task is stopped
    /// by its own stop channel).
    pub async fn stop(&self) {
        self.rules.stop().await;
        for (_, task) in std::mem::take(&mut *self.discoveries.lock()) {
            task.abort();
        }
    }

    /// Appends the notifier's and the rule groups' metrics.
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        self.notifier.write_metrics(out);
        let groups = self.rules.groups();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "# HELP prometheus_rule_group_rules The number of rules.\n# TYPE prometheus_rule_group_rules gauge"
        );
        for g in &groups {
            let _ = writeln!(
                out,
                "prometheus_rule_group_rules{{rule_group=\"{}\"}} {}",
                esc(&format!("{};{}", g.file, g.name)),
                g.rules.len()
            );
        }
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&pharos_rules::Group) -> f64,
        );
        let families: [Family; 5] = [
            (
                "prometheus_rule_group_last_duration_seconds",
                "The duration of the last rule evaluation for the group.",
                "gauge",
                |g| g.evaluation_seconds,
            ),
            (
                "prometheus_rule_group_last_evaluation_timestamp_seconds",
                "The timestamp of the last rule group evaluation in seconds.",
                "gauge",
                |g| g.last_evaluation as f64 / 1000.0,
            ),
            (
                "prometheus_rule_group_interval_seconds",
                "The interval of a rule group.",
                "gauge",
                |g| g.interval as f64 / 1000.0,
            ),
            (
                "prometheus_rule_evaluations_total",
                "The total number of rule evaluations.",
                "counter",
                |g| g.rule_evaluations as f64,
            ),
            (
                "prometheus_rule_evaluation_failures_total",
                "The total number of rule evaluation failures.",
                "counter",
                |g| g.rule_failures as f64,
            ),
        ];
        for (name, help, kind, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for g in &groups {
                let _ = writeln!(
                    out,
                    "{name}{{rule_group=\"{}\"}} {}",
                    esc(&format!("{};{}", g.file, g.name)),
                    pharos_model::format_float(get(g))
                );
            }
        }
    }
}

/// The API's view of rules and Alertmanagers.
pub struct RulesSource(pub Arc<Alerting>);

impl RulesRetriever for RulesSource {
    fn rule_groups(&self) -> Vec<RuleGroupInfo> {
        self.0
            .rules
            .groups()
            .into_iter()
            .map(|g| RuleGroupInfo {
                name: g.name.clone(),
                file: g.file.clone(),
                interval: g.interval as f64 / 1000.0,
                limit: g.limit,
                evaluation_time: g.evaluation_seconds,
                last_evaluation: g.last_evaluation,
                rules: g
                    .rules
                    .iter()
                    .map(|r| RuleInfo {
                        name: r.name().to_string(),
                        query: r.expr_string.clone(),
                        labels: r.def.labels.clone(),
                        health: r.health.as_str().to_string(),
                        last_error: r.last_error.clone().unwrap_or_default(),
                        evaluation_time: r.evaluation_seconds,
                        last_evaluation: r.last_evaluation,
                        kind: match &r.def.kind {
                            RuleKind::Recording { .. } => RuleInfoKind::Recording,
                            RuleKind::Alerting {
                                for_,
                                keep_firing_for,
                                annotations,
                                ..
                            } => {
                                let mut alerts: Vec<AlertInfo> = r
                                    .active
                                    .values()
                                    .filter(|a| a.state != pharos_rules::AlertState::Inactive)
                                    .map(|a| AlertInfo {
                                        labels: a.labels.clone(),
                                        annotations: a.annotations.clone(),
                                        state: a.state.as_str().to_string(),
                                        active_at: a.active_at,
                                        keep_firing_since: a.keep_firing_since,
                                        value: a.value,
                                    })
                                    .collect();
                                alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
                                let state = if alerts.iter().any(|a| a.state == "firing") {
                                    "firing"
                                } else if alerts.is_empty() {
                                    "inactive"
                                } else {
                                    "pending"
                                };
                                RuleInfoKind::Alerting {
                                    duration: for_.millis() as f64 / 1000.0,
                                    keep_firing_for: keep_firing_for.millis() as f64 / 1000.0,
                                    annotations: annotations.clone(),
                                    alerts,
                                    state: state.to_string(),
                                }
                            }
                        },
                    })
                    .collect(),
            })
            .collect()
    }

    fn alertmanagers(&self) -> (Vec<String>, Vec<String>) {
        let mut active = Vec::new();
        let mut dropped = Vec::new();
        for s in self.0.notifier.alertmanagers() {
            active.extend(s.active.into_iter().map(|a| a.url));
            dropped.extend(s.dropped.into_iter().map(|a| {
                let addr = a.labels.get("__address__").unwrap_or_default().to_string();
                let scheme = a.labels.get("__scheme__").unwrap_or("http").to_string();
                let path = a
                    .labels
                    .get("__alerts_path__")
                    .unwrap_or("/api/v2/alerts")
                    .to_string();
                format!("{scheme}://{addr}{path}")
            }));
        }
        (active, dropped)
    }
}
