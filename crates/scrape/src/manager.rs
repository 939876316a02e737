//! The scrape manager: pools per job, reloads, shutdown, status.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use pharos_config::{Config, ScrapeConfig};
use pharos_discovery::TargetGroup;
use pharos_model::Duration;
use pharos_storage::Appendable;

use crate::ScrapeOptions;
use crate::append::PoolSettings;
use crate::metrics::{Metrics, inc};
use crate::pool::{ActiveTarget, ScrapePool, build_targets, settings};
use crate::scrape_loop::{CacheSource, LoopHandle, ScrapeLoop, Signal};
use crate::target::{Target, TargetStatus, fnv64a};
use pharos_discovery::client::HttpClient as ScrapeClient;

/// Runs one scrape pool per `scrape_config` and one loop per target,
/// appending into a shared storage. See the crate docs.
///
/// All methods take `&self`; the manager is meant to sit in an `Arc`
/// shared by the config reloader, the API and the shutdown path.
pub struct ScrapeManager {
    shared: Arc<Shared>,
}

/// What the manager and its discovery sync tasks share.
struct Shared {
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
    /// The offset seed of the current configuration.
    seed: u64,
    /// Source of [`ScrapePool::generation`].
    next_generation: u64,
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

/// Whether a job has providers beyond its `static_configs`.
fn has_dynamic_discovery(sc: &ScrapeConfig) -> bool {
    !(sc.file_sd_configs.is_empty()
        && sc.http_sd_configs.is_empty()
        && sc.dns_sd_configs.is_empty()
        && sc.kubernetes_sd_configs.is_empty())
}

impl ScrapeManager {
    /// A manager appending into `storage`. Nothing runs until
    /// [`ScrapeManager::apply_config`].
    pub fn new(storage: Arc<dyn Appendable>, opts: ScrapeOptions) -> ScrapeManager {
        ScrapeManager {
            shared: Arc::new(Shared {
                storage,
                opts,
                metrics: Arc::new(Metrics::default()),
                state: Mutex::new(State::default()),
            }),
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
    ///
    /// A pool starts with its `static_configs` targets at once; a job with
    /// file, HTTP or DNS discovery also starts those providers, and each
    /// update they publish re-syncs the pool's targets: loops of targets
    /// that stay keep running, new targets get new loops, and loops of
    /// targets that are gone write stale markers as above.
    pub fn apply_config(&self, cfg: &Config) {
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("ScrapeManager::apply_config called outside a tokio runtime; ignored");
            return;
        }
        let sh = &self.shared;
        let seed = fnv64a(format!("{}{}", sh.opts.hostname, cfg.global.external_labels).as_bytes());
        let mut st = sh.state.lock();
        let st = &mut *st;
        st.seed = seed;
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
            if let Some(mut pool) = st.pools.remove(&name) {
                tracing::info!(scrape_pool = %name, "Stopping scrape pool");
                for a in std::mem::take(&mut pool.active) {
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
                inc(&sh.metrics.pool_reloads);
            } else {
                inc(&sh.metrics.pools_total);
            }
            let client = match ScrapeClient::new(&sh.opts.user_agent, &sc.http_client) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(scrape_pool = %sc.job_name, err = %e, "Error creating scrape pool");
                    match old {
                        Some(p) => {
                            inc(&sh.metrics.pool_reloads_failed);
                            st.pools.insert(sc.job_name.clone(), p);
                        }
                        None => inc(&sh.metrics.pools_failed),
                    }
                    continue;
                }
            };
            let sync_start = Instant::now();
            // A job with discovery starts from the groups its previous
            // pool knew, so a reload does not drop discovered targets while
            // the new providers start.
            let discovery = has_dynamic_discovery(sc).then(|| {
                let previous = old
                    .as_ref()
                    .and_then(|p| p.discovery.as_ref())
                    .map(|d| d.subscribe().borrow().clone())
                    .unwrap_or_default();
                pharos_discovery::Discovery::start_carrying(sc, &sh.opts.discovery, previous)
            });
            let groups = match &discovery {
                Some(d) => d.subscribe().borrow().clone(),
                None => pharos_discovery::static_groups(sc),
            };
            let (targets, dropped) = build_targets(sc, &groups, &sh.metrics);
            let reusable = old.as_ref().is_some_and(|p| cache_reusable(&p.config, sc));
            let mut old_loops: HashMap<u64, LoopHandle> = HashMap::new();
            if let Some(mut p) = old {
                for a in std::mem::take(&mut p.active) {
                    old_loops.insert(a.target.hash, a.handle);
                }
            }
            let settings = Arc::new(settings(sc, sh.opts.extra_metrics));
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
                let handle = sh.spawn_loop(&target, &settings, &client, seed, source);
                active.push(ActiveTarget { target, handle });
            }
            for (_, h) in old_loops {
                h.signal(Signal::StaleDelayed);
                st.retiring.push(h);
            }
            st.next_generation += 1;
            let generation = st.next_generation;
            let mut pool = ScrapePool {
                config: Arc::new(sc.clone()),
                active,
                dropped_count: dropped.len(),
                dropped,
                client,
                settings,
                generation,
                discovery: None,
                sync_task: None,
            };
            pool.apply_limits();
            if let Some(discovery) = discovery {
                let mut rx = discovery.subscribe();
                rx.borrow_and_update();
                let weak: Weak<Shared> = Arc::downgrade(&self.shared);
                let job = sc.job_name.clone();
                pool.sync_task = Some(tokio::spawn(async move {
                    while rx.changed().await.is_ok() {
                        let groups = rx.borrow_and_update().clone();
                        let Some(sh) = weak.upgrade() else { return };
                        sh.sync(&job, generation, &groups);
                    }
                }));
                pool.discovery = Some(discovery);
            }
            {
                let mut m = sh.metrics.sync_length.lock();
                let e = m.entry(sc.job_name.clone()).or_default();
                e.sum += sync_start.elapsed().as_secs_f64();
                e.count += 1;
            }
            st.pools.insert(sc.job_name.clone(), pool);
        }
    }

    /// Stops every loop, writing stale markers for every target's series
    /// (and report series) now, and waits for them. Loops still waiting to
    /// write delayed stale markers write them now too. The manager can be
    /// given a configuration again afterwards.
    pub async fn stop(&self) {
        let handles: Vec<LoopHandle> = {
            let mut st = self.shared.state.lock();
            let mut hs: Vec<LoopHandle> = std::mem::take(&mut st.retiring);
            for (_, mut p) in std::mem::take(&mut st.pools) {
                hs.extend(std::mem::take(&mut p.active).into_iter().map(|a| a.handle));
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
        let st = self.shared.state.lock();
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
        let st = self.shared.state.lock();
        st.pools
            .values()
            .flat_map(|p| p.dropped_targets())
            .collect()
    }

    /// The number of targets `relabel_configs` dropped per pool, also those
    /// not kept because of `keep_dropped_targets`.
    pub fn dropped_target_counts(&self) -> BTreeMap<String, usize> {
        let st = self.shared.state.lock();
        st.pools
            .iter()
            .map(|(n, p)| (n.clone(), p.dropped_count))
            .collect()
    }

    /// The names of the scrape pools, sorted (`/api/v1/scrape_pools`).
    pub fn scrape_pools(&self) -> Vec<String> {
        self.shared.state.lock().pools.keys().cloned().collect()
    }

    /// Appends the `pharos_target_*` metrics in text format 0.0.4.
    pub fn write_metrics(&self, out: &mut String) {
        let targets: BTreeMap<String, usize> = {
            let st = self.shared.state.lock();
            st.pools
                .iter()
                .map(|(n, p)| (n.clone(), p.active.len()))
                .collect()
        };
        self.shared.metrics.write(out, &targets);
    }
}

impl Shared {
    fn spawn_loop(
        &self,
        target: &Arc<Target>,
        settings: &Arc<PoolSettings>,
        client: &ScrapeClient,
        seed: u64,
        source: CacheSource,
    ) -> LoopHandle {
        ScrapeLoop {
            target: target.clone(),
            settings: settings.clone(),
            client: client.clone(),
            storage: self.storage.clone(),
            metrics: self.metrics.clone(),
            offset_seed: seed,
            skip_offset: self.opts.skip_offset,
        }
        .spawn(source)
    }

    /// Applies a discovery update to pool `job` if it is still generation
    /// `generation`: targets that stay keep their loops, new ones start,
    /// gone ones write stale markers after the usual delay.
    fn sync(&self, job: &str, generation: u64, groups: &[TargetGroup]) {
        let started = Instant::now();
        let mut st = self.state.lock();
        let st = &mut *st;
        let seed = st.seed;
        let Some(pool) = st.pools.get_mut(job).filter(|p| p.generation == generation) else {
            return;
        };
        let (targets, dropped) = build_targets(&pool.config, groups, &self.metrics);
        let mut old: HashMap<u64, ActiveTarget> = std::mem::take(&mut pool.active)
            .into_iter()
            .map(|a| (a.target.hash, a))
            .collect();
        let mut active = Vec::with_capacity(targets.len());
        for t in targets {
            match old.remove(&t.hash) {
                Some(a) => active.push(a),
                None => {
                    let target = Arc::new(t);
                    let handle = self.spawn_loop(
                        &target,
                        &pool.settings,
                        &pool.client,
                        seed,
                        CacheSource::Fresh,
                    );
                    active.push(ActiveTarget { target, handle });
                }
            }
        }
        for (_, a) in old {
            a.handle.signal(Signal::StaleDelayed);
            st.retiring.push(a.handle);
        }
        pool.active = active;
        pool.dropped_count = dropped.len();
        pool.dropped = dropped;
        pool.apply_limits();
        let mut m = self.metrics.sync_length.lock();
        let e = m.entry(job.to_string()).or_default();
        e.sum += started.elapsed().as_secs_f64();
        e.count += 1;
    }
}
