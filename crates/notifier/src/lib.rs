//! The Alertmanager client: alerts from the rule manager go into a bounded
//! queue and are POSTed in batches to `/api/v2/alerts` of every configured
//! Alertmanager, as Prometheus's `notifier` package does.
//!
//! Why it is built this way:
//!
//! - **Never block rule evaluation.** [`Notifier::send`] only relabels and
//!   queues; one background task ([`Notifier::run`]) drains the queue in
//!   batches of [`MAX_BATCH_SIZE`]. A full queue drops the *oldest* alerts
//!   (counted in `prometheus_notifications_dropped_total`): alerts are
//!   re-sent every resend delay by the rules anyway, so the newest state
//!   matters most.
//! - **No retries here.** Like Prometheus, a failed POST is counted and the
//!   batch is not retried; the rule manager re-sends firing alerts every
//!   `--rules.alert.resend-delay` with an `endsAt` four periods ahead, so
//!   Alertmanager keeps them alive through short outages.
//! - **Discovery stays outside.** An Alertmanager set ([`AlertmanagerSet`])
//!   is told its discovered target groups by the caller
//!   ([`Notifier::set_groups`]); this crate applies the set's
//!   `relabel_configs` to turn them into URLs, so static, file, HTTP and DNS
//!   discovery all work the same way.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use pharos_config::{AlertingConfig, AlertmanagerConfig};
use pharos_discovery::client::HttpClient;
use pharos_model::relabel::{RelabelConfig, process, process_builder};
use pharos_model::{Labels, LabelsBuilder};

/// Most alerts in one POST.
pub const MAX_BATCH_SIZE: usize = 64;

/// Prometheus's default queue capacity (`--alertmanager.notification-queue-capacity`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// Errors of one delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// The HTTP request failed (connection, timeout).
    #[error("error sending alerts to {url}: {msg}")]
    Request {
        /// The Alertmanager URL.
        url: String,
        /// What failed.
        msg: String,
    },
    /// Alertmanager answered with a non-2xx status.
    #[error("bad response status {status} from {url}")]
    Status {
        /// The Alertmanager URL.
        url: String,
        /// The status line.
        status: String,
    },
}

/// An alert as Alertmanager receives it. Times are Unix milliseconds; 0 is
/// Go's zero time.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Identifying labels.
    pub labels: Labels,
    /// Annotations, sorted by name.
    pub annotations: Vec<(String, String)>,
    /// When the alert started firing.
    pub starts_at: i64,
    /// When it resolved, or until when it is valid while firing.
    pub ends_at: i64,
    /// Link back to the expression (`<external URL>/graph?g0.expr=...`).
    pub generator_url: String,
}

/// Formats ms as strfmt.DateTime does (`2006-01-02T15:04:05.000Z`).
fn rfc3339_millis(ms: i64) -> String {
    if ms == 0 {
        return "0001-01-01T00:00:00.000Z".to_string();
    }
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "0001-01-01T00:00:00.000Z".to_string(),
    }
}

/// The `/api/v2/alerts` body for `alerts` (a JSON array of PostableAlert).
pub fn v2_payload(alerts: &[Alert]) -> String {
    let list: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let labels: BTreeMap<&str, &str> = a.labels.iter().map(|l| (l.name, l.value)).collect();
            let anns: BTreeMap<&str, &str> = a
                .annotations
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut m = serde_json::Map::new();
            m.insert("annotations".into(), serde_json::json!(anns));
            m.insert("endsAt".into(), rfc3339_millis(a.ends_at).into());
            m.insert("startsAt".into(), rfc3339_millis(a.starts_at).into());
            m.insert("generatorURL".into(), a.generator_url.clone().into());
            m.insert("labels".into(), serde_json::json!(labels));
            serde_json::Value::Object(m)
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// Adds external labels an alert does not have, then applies `relabel`;
/// alerts the rules drop are removed (Prometheus's `relabelAlerts`).
pub fn relabel_alerts(
    relabel: &[RelabelConfig],
    external_labels: &Labels,
    alerts: Vec<Alert>,
) -> Vec<Alert> {
    let mut out = Vec::with_capacity(alerts.len());
    for mut a in alerts {
        let mut b = LabelsBuilder::from(&a.labels);
        for l in external_labels.iter() {
            if a.labels.get(l.name).is_none() {
                b.set(l.name, l.value);
            }
        }
        if !process_builder(&mut b, relabel) {
            continue;
        }
        a.labels = b.build();
        out.push(a);
    }
    out
}

/// One Alertmanager as discovered and relabeled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertmanagerTarget {
    /// The full POST URL (`http://host:9093/prefix/api/v2/alerts`).
    pub url: String,
    /// Its labels after relabeling (or before, for a dropped one).
    pub labels: Labels,
}

/// The POST path for a prefix: `path.Join("/", prefix, "/api/v2/alerts")`.
fn alerts_path(prefix: &str) -> String {
    let mut parts: Vec<&str> = prefix
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    parts.extend(["api", "v2", "alerts"]);
    format!("/{}", parts.join("/"))
}

/// Turns discovered target groups (targets, group labels) into
/// Alertmanager URLs: `__scheme__` and `__alerts_path__` are set from the
/// config, the set's `relabel_configs` applied, and the URL built from
/// `__scheme__://__address____alerts_path__`. Returns (active, dropped).
pub fn alertmanagers_from_groups(
    cfg: &AlertmanagerConfig,
    groups: &[(Vec<Labels>, Labels)],
) -> (Vec<AlertmanagerTarget>, Vec<AlertmanagerTarget>) {
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    for (targets, group_labels) in groups {
        for t in targets {
            let mut b = LabelsBuilder::new();
            for l in group_labels.iter() {
                b.set(l.name, l.value);
            }
            for l in t.iter() {
                b.set(l.name, l.value);
            }
            b.set("__scheme__", &cfg.scheme);
            b.set("__alerts_path__", &alerts_path(&cfg.path_prefix));
            let before = b.build();
            let Some(lset) = process(&before, &cfg.relabel_configs) else {
                dropped.push(AlertmanagerTarget {
                    url: String::new(),
                    labels: before,
                });
                continue;
            };
            let Some(addr) = lset.get("__address__").filter(|a| !a.is_empty()) else {
                dropped.push(AlertmanagerTarget {
                    url: String::new(),
                    labels: before,
                });
                continue;
            };
            let scheme = lset.get("__scheme__").unwrap_or("http");
            let path = lset.get("__alerts_path__").unwrap_or("/api/v2/alerts");
            let url = format!("{scheme}://{addr}{path}");
            if !active.iter().any(|a: &AlertmanagerTarget| a.url == url) {
                active.push(AlertmanagerTarget { url, labels: lset });
            }
        }
    }
    (active, dropped)
}

/// An Alertmanager set: one `alertmanagers` entry and what it discovered.
#[derive(Debug, Clone)]
pub struct AlertmanagerSet {
    /// The entry.
    pub config: AlertmanagerConfig,
    /// Alertmanagers alerts go to.
    pub active: Vec<AlertmanagerTarget>,
    /// Targets the relabel rules dropped.
    pub dropped: Vec<AlertmanagerTarget>,
    client: SetClient,
}

/// The set's HTTP client from its `http_config`, or why it could not be
/// built (a bad CA file, say); sends to the set then fail with that reason.
#[derive(Clone)]
struct SetClient(Result<HttpClient, String>);

impl std::fmt::Debug for SetClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(_) => f.write_str("SetClient(ok)"),
            Err(e) => write!(f, "SetClient(error: {e})"),
        }
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    errors: AtomicU64,
}

/// Queues alerts and delivers them. Share it in an `Arc`; every method is
/// thread-safe.
pub struct Notifier {
    queue: Mutex<VecDeque<Alert>>,
    capacity: usize,
    more: tokio::sync::Notify,
    relabel: RwLock<(Labels, Vec<RelabelConfig>)>,
    sets: RwLock<Vec<AlertmanagerSet>>,
    per_am: Mutex<BTreeMap<String, Arc<Counters>>>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("capacity", &self.capacity)
            .field("queue_length", &self.queue.lock().len())
            .finish_non_exhaustive()
    }
}

/// Figures for `/metrics`, named as Prometheus names them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotifierStats {
    /// `prometheus_notifications_queue_length`.
    pub queue_length: usize,
    /// `prometheus_notifications_queue_capacity`.
    pub queue_capacity: usize,
    /// `prometheus_notifications_dropped_total`.
    pub dropped: u64,
    /// `prometheus_notifications_alertmanagers_discovered`.
    pub alertmanagers_discovered: usize,
    /// Per Alertmanager URL: (`..._sent_total`, `..._errors_total`).
    pub per_alertmanager: Vec<(String, u64, u64)>,
}

impl Notifier {
    /// A notifier holding at most `capacity` queued alerts.
    pub fn new(capacity: usize) -> Notifier {
        // reqwest is built without a default TLS crypto provider; install
        // ring as the process default (a no-op when one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Notifier {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            more: tokio::sync::Notify::new(),
            relabel: RwLock::new((Labels::empty(), Vec::new())),
            sets: RwLock::new(Vec::new()),
            per_am: Mutex::new(BTreeMap::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Applies a (re)loaded configuration: external labels, global alert
    /// relabeling, and the Alertmanager sets. Static targets are active at
    /// once; discovered ones arrive through [`Notifier::set_groups`].
    pub fn apply_config(&self, external_labels: Labels, alerting: &AlertingConfig) {
        *self.relabel.write() = (external_labels, alerting.alert_relabel_configs.clone());
        let sets = alerting
            .alertmanagers
            .iter()
            .map(|c| {
                let groups: Vec<(Vec<Labels>, Labels)> = c
                    .static_configs
                    .iter()
                    .map(|s| {
                        (
                            s.targets
                                .iter()
                                .map(|t| Labels::from_pairs(&[("__address__", t.as_str())]))
                                .collect(),
                            s.labels.clone(),
                        )
                    })
                    .collect();
                let (active, dropped) = alertmanagers_from_groups(c, &groups);
                let client = HttpClient::new(
                    concat!("pharos/", env!("CARGO_PKG_VERSION")),
                    &c.http_client,
                );
                if let Err(e) = &client {
                    tracing::error!(err = %e, "Alertmanager HTTP client configuration is invalid");
                }
                AlertmanagerSet {
                    config: c.clone(),
                    active,
                    dropped,
                    client: SetClient(client),
                }
            })
            .collect();
        *self.sets.write() = sets;
    }

    /// Replaces the targets of set `index` with discovered groups
    /// (static targets included: pass every group of the set).
    pub fn set_groups(&self, index: usize, groups: &[(Vec<Labels>, Labels)]) {
        let mut sets = self.sets.write();
        if let Some(set) = sets.get_mut(index) {
            let (active, dropped) = alertmanagers_from_groups(&set.config, groups);
            set.active = active;
            set.dropped = dropped;
        }
    }

    /// The Alertmanager sets with their active and dropped targets.
    pub fn alertmanagers(&self) -> Vec<AlertmanagerSet> {
        self.sets.read().clone()
    }

    /// Relabels and queues alerts; never blocks on the network.
    pub fn send(&self, alerts: Vec<Alert>) {
        let alerts = {
            let r = self.relabel.read();
            relabel_alerts(&r.1, &r.0, alerts)
        };
        if alerts.is_empty() {
            return;
        }
        let mut alerts: VecDeque<Alert> = alerts.into();
        if alerts.len() > self.capacity {
            let d = alerts.len() - self.capacity;
            alerts.drain(..d);
            self.dropped.fetch_add(d as u64, Ordering::Relaxed);
            tracing::warn!(
                num_dropped = d,
                "Alert batch larger than queue capacity, dropping alerts"
            );
        }
        let mut q = self.queue.lock();
        let over = (q.len() + alerts.len()).saturating_sub(self.capacity);
        if over > 0 {
            q.drain(..over);
            self.dropped.fetch_add(over as u64, Ordering::Relaxed);
            tracing::warn!(
                num_dropped = over,
                "Alert notification queue full, dropping alerts"
            );
        }
        q.extend(alerts);
        drop(q);
        self.more.notify_one();
    }

    /// Takes up to [`MAX_BATCH_SIZE`] alerts off the queue.
    fn next_batch(&self) -> Vec<Alert> {
        let mut q = self.queue.lock();
        let n = q.len().min(MAX_BATCH_SIZE);
        q.drain(..n).collect()
    }

    /// Delivers queued alerts until `stop` turns true. Run it once, on the
    /// Tokio runtime.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if self.queue.lock().is_empty() {
                tokio::select! {
                    _ = self.more.notified() => {}
                    _ = stop.changed() => return,
                }
            }
            if *stop.borrow() {
                return;
            }
            let batch = self.next_batch();
            if batch.is_empty() {
                continue;
            }
            if !self.send_all(&batch).await {
                self.dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Sends one batch to every Alertmanager of every set, concurrently.
    /// True when at least one Alertmanager took it (or none is configured
    /// and so nothing was lost to an error).
    pub async fn send_all(&self, alerts: &[Alert]) -> bool {
        let sets = self.sets.read().clone();
        if sets.iter().all(|s| s.active.is_empty()) {
            return true;
        }
        let mut tasks = Vec::new();
        for set in &sets {
            let alerts = if set.config.alert_relabel_configs.is_empty() {
                alerts.to_vec()
            } else {
                relabel_alerts(
                    &set.config.alert_relabel_configs,
                    &Labels::empty(),
                    alerts.to_vec(),
                )
            };
            if alerts.is_empty() {
                continue;
            }
            let body = v2_payload(&alerts);
            for am in &set.active {
                let counters = self
                    .per_am
                    .lock()
                    .entry(am.url.clone())
                    .or_default()
                    .clone();
                let fut = post(
                    set.client.0.clone(),
                    am.url.clone(),
                    body.clone(),
                    set.config.timeout.to_std(),
                );
                let n = alerts.len() as u64;
                tasks.push(async move {
                    let res = fut.await;
                    counters.sent.fetch_add(n, Ordering::Relaxed);
                    match res {
                        Ok(()) => true,
                        Err(e) => {
                            counters.errors.fetch_add(n, Ordering::Relaxed);
                            tracing::error!(err = %e, "Error sending alerts");
                            false
                        }
                    }
                });
            }
        }
        let mut ok = false;
        for t in tasks {
            ok |= t.await;
        }
        ok
    }

    /// Current figures for `/metrics`.
    pub fn stats(&self) -> NotifierStats {
        let sets = self.sets.read();
        NotifierStats {
            queue_length: self.queue.lock().len(),
            queue_capacity: self.capacity,
            dropped: self.dropped.load(Ordering::Relaxed),
            alertmanagers_discovered: sets.iter().map(|s| s.active.len()).sum(),
            per_alertmanager: self
                .per_am
                .lock()
                .iter()
                .map(|(u, c)| {
                    (
                        u.clone(),
                        c.sent.load(Ordering::Relaxed),
                        c.errors.load(Ordering::Relaxed),
                    )
                })
                .collect(),
        }
    }

    /// Writes the notifier's metrics in the text exposition format.
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let s = self.stats();
        let _ = writeln!(
            out,
            "# HELP prometheus_notifications_queue_length The number of alert notifications in the queue.\n# TYPE prometheus_notifications_queue_length gauge\nprometheus_notifications_queue_length {}",
            s.queue_length
        );
        let _ = writeln!(
            out,
            "# HELP prometheus_notifications_queue_capacity The capacity of the alert notifications queue.\n# TYPE prometheus_notifications_queue_capacity gauge\nprometheus_notifications_queue_capacity {}",
            s.queue_capacity
        );
        let _ = writeln!(
            out,
            "# HELP prometheus_notifications_dropped_total Total number of alerts dropped due to errors when sending to Alertmanager.\n# TYPE prometheus_notifications_dropped_total counter\nprometheus_notifications_dropped_total {}",
            s.dropped
        );
        let _ = writeln!(
            out,
            "# HELP prometheus_notifications_alertmanagers_discovered The number of alertmanagers discovered and active.\n# TYPE prometheus_notifications_alertmanagers_discovered gauge\nprometheus_notifications_alertmanagers_discovered {}",
            s.alertmanagers_discovered
        );
        let esc = |u: &str| u.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "# HELP prometheus_notifications_sent_total Total number of alerts sent.\n# TYPE prometheus_notifications_sent_total counter"
        );
        for (u, sent, _) in &s.per_alertmanager {
            let _ = writeln!(
                out,
                "prometheus_notifications_sent_total{{alertmanager=\"{}\"}} {sent}",
                esc(u)
            );
        }
        let _ = writeln!(
            out,
            "# HELP prometheus_notifications_errors_total Total number of sent alerts affected by errors.\n# TYPE prometheus_notifications_errors_total counter"
        );
        for (u, _, errors) in &s.per_alertmanager {
            let _ = writeln!(
                out,
                "prometheus_notifications_errors_total{{alertmanager=\"{}\"}} {errors}",
                esc(u)
            );
        }
    }
}

async fn post(
    client: Result<HttpClient, String>,
    url: String,
    body: String,
    timeout: std::time::Duration,
) -> Result<(), NotifierError> {
    let failed = |msg: String| NotifierError::Request {
        url: url.clone(),
        msg,
    };
    let client = client.map_err(failed)?;
    let req = client
        .http
        .post(&url)
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .body(body);
    let req = client.decorate(req).map_err(failed)?;
    let resp = req.send().await.map_err(|e| NotifierError::Request {
        url: url.clone(),
        msg: e.to_string(),
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(NotifierError::Status {
            url,
            status: status.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
