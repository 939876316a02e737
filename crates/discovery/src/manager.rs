//! Runs the providers of one scrape job and publishes their merged groups.

use std::collections::BTreeMap;
use std::time::Duration;

use pharos_config::ScrapeConfig;
use pharos_model::Labels;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{ADDRESS_LABEL, StaticDiscoverer, TargetGroup, providers};

/// Whether a group source is a `static_configs` index.
fn is_static_source(source: &str) -> bool {
    !source.is_empty() && source.bytes().all(|b| b.is_ascii_digit())
}

/// Process-wide discovery settings.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// Least time between two published updates of a job. Default 5s.
    pub update_interval: Duration,
    /// How often file discovery checks its files for changes. Default 1s.
    pub file_poll_interval: Duration,
    /// DNS servers to ask (`ip:port`); empty means those of
    /// `/etc/resolv.conf`.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// `User-Agent` of HTTP discovery requests.
    pub user_agent: String,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            update_interval: Duration::from_secs(5),
            file_poll_interval: Duration::from_secs(1),
            dns_servers: Vec::new(),
            user_agent: format!("pharos/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The groups of a job's `static_configs`, with sources `"0"`, `"1"`, ...
pub fn static_groups(cfg: &ScrapeConfig) -> Vec<TargetGroup> {
    cfg.static_configs
        .iter()
        .enumerate()
        .map(|(i, sc)| TargetGroup {
            source: i.to_string(),
            targets: sc
                .targets
                .iter()
                .map(|t| Labels::from_pairs(&[(ADDRESS_LABEL, t.as_str())]))
                .collect(),
            labels: sc.labels.clone(),
        })
        .collect()
}

/// The running discovery of one scrape job. Dropping it stops every
/// provider.
pub struct Discovery {
    rx: watch::Receiver<Vec<TargetGroup>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Discovery {
    /// Starts every provider of `cfg` (static targets included). Must be
    /// called inside a tokio runtime.
    ///
    /// The receiver starts with the static groups; each later value is the
    /// complete current list of non-empty groups (static first, then by
    /// provider order and source), published at most once per
    /// `opts.update_interval`.
    pub fn start(cfg: &ScrapeConfig, opts: &DiscoveryOptions) -> Discovery {
        Discovery::start_carrying(cfg, opts, Vec::new())
    }

    /// [`Discovery::start`] for a job whose previous configuration already
    /// discovered `previous` (the last value of its old [`Discovery`]):
    /// those groups, except the old static ones, stay in the published list
    /// until every provider has reported once (or 30 seconds, at least six
    /// update intervals, have passed), so a reload does not drop targets
    /// while the new providers start.
    pub fn start_carrying(
        cfg: &ScrapeConfig,
        opts: &DiscoveryOptions,
        previous: Vec<TargetGroup>,
    ) -> Discovery {
        let statics = static_groups(cfg);
        let mut all: Vec<Box<dyn crate::Discoverer>> =
            vec![Box::new(StaticDiscoverer::new(statics.clone()))];
        all.extend(providers(cfg, opts));
        let carried: Vec<TargetGroup> = previous
            .into_iter()
            .filter(|g| !is_static_source(&g.source))
            .collect();
        Discovery::with_providers(all, statics, carried, opts.update_interval)
    }

    /// Starts the given providers; the receiver's first value is `initial`
    /// followed by `carried`, groups kept (unless a provider sends their
    /// source) until every provider has reported once.
    pub fn with_providers(
        providers: Vec<Box<dyn crate::Discoverer>>,
        initial: Vec<TargetGroup>,
        carried: Vec<TargetGroup>,
        update_interval: Duration,
    ) -> Discovery {
        let n_providers = providers.len();
        let initial: Vec<TargetGroup> = initial
            .into_iter()
            .chain(carried.iter().filter(|g| !g.targets.is_empty()).cloned())
            .collect();
        let (out_tx, rx) = watch::channel(initial);
        let (tx, mut in_rx) = mpsc::channel::<(usize, Vec<TargetGroup>)>(16);
        let mut tasks = Vec::with_capacity(providers.len() + 1);
        for (i, p) in providers.into_iter().enumerate() {
            let (ptx, mut prx) = mpsc::channel(4);
            let fwd = tx.clone();
            tasks.push(tokio::spawn(async move {
                let run = p.run(ptx);
                let forward = async move {
                    while let Some(g) = prx.recv().await {
                        if fwd.send((i, g)).await.is_err() {
                            return;
                        }
                    }
                };
                // The provider may end (static) while its last message is
                // still being forwarded; run both to completion.
                tokio::join!(run, forward);
            }));
        }
        drop(tx);
        tasks.push(tokio::spawn(async move {
            let mut state: BTreeMap<(usize, String), TargetGroup> = BTreeMap::new();
            let mut carried: BTreeMap<String, TargetGroup> =
                carried.into_iter().map(|g| (g.source.clone(), g)).collect();
            let carry_until =
                tokio::time::Instant::now() + (update_interval * 6).max(Duration::from_secs(30));
            let mut reported = std::collections::HashSet::new();
            let publish = |state: &BTreeMap<(usize, String), TargetGroup>,
                           carried: &BTreeMap<String, TargetGroup>| {
                let mut groups: Vec<TargetGroup> = state.values().cloned().collect();
                for (src, g) in carried {
                    if !state.keys().any(|(_, s)| s == src) {
                        groups.push(g.clone());
                    }
                }
                groups
            };
            let mut dirty = false;
            let mut ticker = tokio::time::interval(update_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    msg = in_rx.recv() => match msg {
                        Some((i, groups)) => {
                            reported.insert(i);
                            if reported.len() == n_providers {
                                carried.clear();
                            }
                            for g in groups {
                                if g.targets.is_empty() {
                                    state.remove(&(i, g.source));
                                } else {
                                    state.insert((i, g.source.clone()), g);
                                }
                            }
                            dirty = true;
                        }
                        None => {
                            if dirty {
                                carried.clear();
                                let _ = out_tx.send(publish(&state, &carried));
                            }
                            // Every provider ended: nothing will change.
                            out_tx.closed().await;
                            return;
                        }
                    },
                    _ = ticker.tick() => {
                        if !carried.is_empty() && tokio::time::Instant::now() >= carry_until {
                            carried.clear();
                            dirty = true;
                        }
                        if dirty {
                            dirty = false;
                            let groups = publish(&state, &carried);
                            out_tx.send_if_modified(|cur| {
                                if *cur == groups {
                                    false
                                } else {
                                    *cur = groups;
                                    true
                                }
                            });
                        }
                        if out_tx.is_closed() {
                            return;
                        }
                    }
                }
            }
        }));
        Discovery { rx, tasks }
    }

    /// A receiver of the job's groups; `changed()` fires on each update.
    pub fn subscribe(&self) -> watch::Receiver<Vec<TargetGroup>> {
        self.rx.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{BoxFuture, Discoverer};

    /// Sends a scripted sequence of updates, 20ms apart.
    struct Scripted(Vec<Vec<TargetGroup>>);

    impl Discoverer for Scripted {
        fn run(self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture {
            Box::pin(async move {
                for u in self.0 {
                    if tx.send(u).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                std::future::pending::<()>().await;
            })
        }
    }

    fn group(source: &str, addrs: &[&str]) -> TargetGroup {
        TargetGroup {
            source: source.to_string(),
            targets: addrs
                .iter()
                .map(|a| Labels::from_pairs(&[(ADDRESS_LABEL, *a)]))
                .collect(),
            labels: Labels::empty(),
        }
    }

    #[tokio::test]
    async fn merges_replaces_and_removes_by_source() {
        let d = Discovery::with_providers(
            vec![
                Box::new(Scripted(vec![
                    vec![group("a", &["x:1"]), group("b", &["y:1"])],
                    vec![group("a", &["x:2"])],
                    vec![TargetGroup::empty("b")],
                ])),
                Box::new(StaticDiscoverer::new(vec![group("s", &["z:1"])])),
            ],
            Vec::new(),
            Vec::new(),
            Duration::from_millis(10),
        );
        let mut rx = d.subscribe();
        let want = vec![group("a", &["x:2"]), group("s", &["z:1"])];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if *rx.borrow_and_update() == want {
                break;
            }
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .expect("timed out waiting for the merged groups")
                .unwrap();
        }
    }

    #[test]
    fn static_groups_from_config() {
        let g = pharos_config::load_str(
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [h:1, h:2]\n        labels: {x: y}\n",
            "p.yml",
        )
        .unwrap();
        let groups = static_groups(&g.scrape_configs[0]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].source, "0");
        assert_eq!(groups[0].targets.len(), 2);
        assert_eq!(groups[0].labels, Labels::from_pairs(&[("x", "y")]));
    }

    /// Never reports.
    struct Silent;

    impl Discoverer for Silent {
        fn run(self: Box<Self>, _tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn carried_groups_stay_until_every_provider_reported() {
        let carried = vec![group("old-file:0", &["k:1"]), group("a", &["x:0"])];
        // One provider never reports: the carried group the other did not
        // replace stays.
        let d = Discovery::with_providers(
            vec![
                Box::new(Scripted(vec![vec![group("a", &["x:1"])]])),
                Box::new(Silent),
            ],
            Vec::new(),
            carried.clone(),
            Duration::from_millis(10),
        );
        let mut rx = d.subscribe();
        assert_eq!(*rx.borrow_and_update(), carried);
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            *rx.borrow_and_update(),
            vec![group("a", &["x:1"]), group("old-file:0", &["k:1"])]
        );
        // Once every provider reported, carried groups go.
        let d = Discovery::with_providers(
            vec![Box::new(Scripted(vec![vec![group("a", &["x:1"])]]))],
            Vec::new(),
            carried,
            Duration::from_millis(10),
        );
        let mut rx = d.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while *rx.borrow_and_update() != vec![group("a", &["x:1"])] {
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .unwrap()
                .unwrap();
        }
        assert!(is_static_source("12") && !is_static_source("f.json:0") && !is_static_source(""));
    }
}
