//! The scrape manager: pools per job, reloads, shutdown, status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use pharos_config::{Config, ScrapeConfig};
use pharos_model::Duration;
use pharos_storage::Appendable;

use crate::ScrapeOptions;
use crate::fetch::build_client;
use crate::metrics::{Metrics, inc};
use crate::pool::{ActiveTarget, ScrapePool, build_targets, settings};
use crate::scrape_loop::{CacheSource, LoopHandle, ScrapeLoop, Signal};
use crate::target::{TargetStatus, fnv64a};

/// Runs one scrape pool per `scrape_config` and one loop per target,
/// appending into a shared storage. See the crate docs.
///
/// All methods take `&self`; the manager is meant to sit in an `Arc`
/// shared by the config reloader, the API and the shutdown path.
pub struct ScrapeManager {
    storage: Arc<dyn Appendable>,
    opts: ScrapeOptions,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pools: BTreeMap<String, ScrapePool>,
    /// Loops told to stop with delayed stale markers, still finishing.
    retiring: Vec<LoopHandle>,
}

/// Whether two configurations of a job shape series the same way
/// (Prometheus's `reusableCache`): equal but for interval, timeout and
/// sample limit. Then a loop's scrape cache stays valid across a reload.
fn cache_reusable(old: &ScrapeConfig, new: &ScrapeConfig) -> bool {
    let zero = |c: &ScrapeConfig| {
        let mut z = c.clone();
        z.scrape_interval = Duration(0);
        z.scrape_timeout = Duration(0);
        z.sample_limit = 0;
        z
    };
    zero(old) == zero(new)
}

impl ScrapeManager {
    /// A manager appending into `storage`. Nothing runs until
    /// [`ScrapeManager::apply_config`].
    pub fn new(storage: Arc<dyn Appendable>, opts: ScrapeOptions) -> ScrapeManager {
        ScrapeManager {
            storage,
            opts,
            metrics: Arc::new(Metrics::default()),
            state: Mutex::new(State::default()),
        }
    }

    /// (Re)starts pools to match `cfg`. Must be called inside a tokio
    /// runtime (loops are spawned on it); outside one it logs an error and
    /// changes nothing.
    ///
    /// A pool whose configuration is unchanged keeps running untouched. A
    /// changed pool restarts its loops: when only interval, timeout or
    /// sample limit changed, a target that stays hands its scrape cache to
    /// its new loop (no stale markers); otherwise, and for targets and pools
    /// that disappear, the old loops write stale markers for their series
    /// about two intervals later (by then a target that stayed has newer
    /// samples, so only the series that are really gone end stale).
    pub fn apply_config(&self, cfg: &Config) {
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("ScrapeManager::apply_config called outside a tokio runtime; ignored");
            return;
        }
        let seed =
            fnv64a(format!("{}{}", self.opts.hostname, cfg.global.external_labels).as_bytes());
        let mut st = self.state.lock();
        let st = &mut *st;
        st.retiring.retain(|h| !h.join.is_finished());

        let wanted: HashMap<&str, &ScrapeConfig> = cfg
            .scrape_configs
            .iter()
            .map(|c| (c.job_name.as_str(), c))
            .collect();
        let gone: Vec<String> = st
            .pools
            .keys()
            .filter(|n| !wanted.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(pool) = st.pools.remove(&name) {
                tracing::info!(scrape_pool = %name, "Stopping scrape pool");
                for a in pool.active {
                    a.handle.signal(Signal::StaleDelayed);
                    st.retiring.push(a.handle);
                }
            }
        }

        for sc in &cfg.scrape_configs {
            if st.pools.get(&sc.job_name).is_some_and(|p| *p.config == *sc) {
                continue;
            }
            let old = st.pools.remove(&sc.job_name);
            if old.is_some() {
                inc(&self.metrics.pool_reloads);
            } else {
                inc(&self.metrics.pools_total);
            }
            let client = match build_client(&self.opts.user_agent) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(scrape_pool = %sc.job_name, err = %e, "Error creating scrape pool");
                    match old {
                        Some(p) => {
                            inc(&self.metrics.pool_reloads_failed);
                            st.pools.insert(sc.job_name.clone(), p);
                        }
                        None => inc(&self.metrics.pools_failed),
                    }
                    continue;
                }
            };
            let sync_start = Instant::now();
            let (targets, dropped) = build_targets(sc, &self.metrics);
            let reusable = old.as_ref().is_some_and(|p| cache_reusable(&p.config, sc));
            let mut old_loops: HashMap<u64, LoopHandle> = HashMap::new();
            if let Some(p) = old {
                for a in p.active {
                    old_loops.insert(a.target.hash, a.handle);
                }
            }
            let settings = Arc::new(settings(sc, self.opts.extra_metrics));
            let mut active = Vec::with_capacity(targets.len());
            for t in targets {
                let target = Arc::new(t);
                let source = match old_loops.remove(&target.hash) {
                    Some(h) if reusable => {
                        h.signal(Signal::HandOver);
                        CacheSource::From(h)
                    }
                    Some(h) => {
                        h.signal(Signal::StaleDelayed);
                        st.retiring.push(h);
                        CacheSource::Fresh
                    }
                    None => CacheSource::Fresh,
                };
                let handle = ScrapeLoop {
                    target: target.clone(),
                    settings: settings.clone(),
                    client: client.clone(),
                    storage: self.storage.clone(),
                    metrics: self.metrics.clone(),
                    offset_seed: seed,
                    skip_offset: self.opts.skip_offset,
                }
                .spawn(source);
                active.push(ActiveTarget { target, handle });
            }
            for (_, h) in old_loops {
                h.signal(Signal::StaleDelayed);
                st.retiring.push(h);
            }
            {
                let mut m = self.metrics.sync_length.lock();
                let e = m.entry(sc.job_name.clone()).or_default();
                e.sum += sync_start.elapsed().as_secs_f64();
                e.count += 1;
            }
            st.pools.insert(
                sc.job_name.clone(),
                ScrapePool {
                    config: Arc::new(sc.clone()),
                    active,
                    dropped,
                },
            );
        }
    }

    /// Stops every loop, writing stale markers for every target's series
    /// (and report series) now, and waits for them. Loops still waiting to
    /// write delayed stale markers write them now too. The manager can be
    /// given a configuration again afterwards.
    pub async fn stop(&self) {
        let handles: Vec<LoopHandle> = {
            let mut st = self.state.lock();
            let mut hs: Vec<LoopHandle> = std::mem::take(&mut st.retiring);
            for (_, p) in std::mem::take(&mut st.pools) {
                hs.extend(p.active.into_iter().map(|a| a.handle));
            }
            hs
        };
        for h in &handles {
            h.signal(Signal::StaleNow);
        }
        for h in handles {
            if let Err(e) = h.join.await {
                tracing::error!(err = %e, "Scrape loop ended abnormally");
            }
        }
    }

    /// The active targets, by pool then URL.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let st = self.state.lock();
        let mut v: Vec<TargetStatus> = st.pools.values().flat_map(|p| p.targets()).collect();
        v.sort_by(|a, b| {
            a.scrape_pool
                .cmp(&b.scrape_pool)
                .then_with(|| a.scrape_url.cmp(&b.scrape_url))
        });
        v
    }

    /// The targets that `relabel_configs` dropped, by pool.
    pub fn dropped_targets(&self) -> Vec<TargetStatus> {
        let st = self.state.lock();
        st.pools
            .values()
            .flat_map(|p| p.dropped_targets())
            .collect()
    }

    /// Appends the `pharos_target_*` metrics in text format 0.0.4.
    pub fn write_metrics(&self, out: &mut String) {
        let targets: BTreeMap<String, usize> = {
            let st = self.state.lock();
            st.pools
                .iter()
                .map(|(n, p)| (n.clone(), p.active.len()))
                .collect()
        };
        self.metrics.write(out, &targets);
    }
}
