//! One target's scrape loop: a tokio task that waits for the target's
//! offset, then scrapes on aligned ticks until told to stop.
//!
//! Stopping has several flavours, because what happens to the target's
//! series depends on why it stops (Prometheus's rules):
//!
//! * [`Signal::HandOver`]: the job was reloaded with a configuration that
//!   keeps the cache valid; the loop returns its cache to its successor and
//!   writes no stale markers;
//! * [`Signal::StaleDelayed`]: the target is gone (or its pool's
//!   configuration changed); the loop waits until when its next scrape would
//!   have been, records that time, waits one more interval and a tenth (a
//!   re-created target has scraped by then, making these markers out of
//!   order and harmless), then writes stale markers at the recorded time;
//! * [`Signal::StaleNow`]: the manager stops; an in-flight request is
//!   abandoned and stale markers are written at once.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pharos_model::Timestamp;
use pharos_storage::Appendable;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};

use crate::ScrapeError;
use crate::append::{AppendCtx, PoolSettings, end_of_run_staleness, process_scrape};
use crate::cache::ScrapeCache;
use crate::fetch::fetch;
use crate::metrics::Metrics;
use crate::target::Target;

/// What the owner wants from a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Keep scraping.
    Run,
    /// Stop and return the cache, no stale markers.
    HandOver,
    /// Stop; write stale markers after the Prometheus delay.
    StaleDelayed,
    /// Stop now and write stale markers now.
    StaleNow,
    /// The owner vanished without a word: stop silently.
    Abandon,
}

impl Signal {
    fn rank(self) -> u8 {
        match self {
            Signal::Run => 0,
            Signal::HandOver | Signal::StaleDelayed => 1,
            Signal::StaleNow | Signal::Abandon => 2,
        }
    }
}

/// The owner's side of a running loop.
pub(crate) struct LoopHandle {
    tx: watch::Sender<Signal>,
    /// Resolves to the cache when the loop handed it over.
    pub join: JoinHandle<Option<ScrapeCache>>,
}

impl LoopHandle {
    /// Asks the loop to stop. A stronger request overrides a weaker one
    /// (`StaleNow` overrides a pending delayed stop); a weaker one is
    /// ignored.
    pub fn signal(&self, s: Signal) {
        self.tx.send_if_modified(|cur| {
            if s.rank() > cur.rank() {
                *cur = s;
                true
            } else {
                false
            }
        });
    }
}

/// Where a new loop's cache comes from.
pub(crate) enum CacheSource {
    /// A new, empty cache.
    Fresh,
    /// The cache of a predecessor that was told to hand over; the new loop
    /// starts when the predecessor has stopped.
    From(LoopHandle),
}

/// Everything a loop needs.
pub(crate) struct ScrapeLoop {
    pub target: Arc<Target>,
    pub settings: Arc<PoolSettings>,
    pub client: pharos_discovery::client::HttpClient,
    pub storage: Arc<dyn Appendable>,
    pub metrics: Arc<Metrics>,
    pub offset_seed: u64,
    pub skip_offset: bool,
}

fn now_millis() -> Timestamp {
    pharos_model::sample::now_millis()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn wait_stop(rx: &mut watch::Receiver<Signal>) -> Signal {
    match rx.wait_for(|s| *s != Signal::Run).await {
        Ok(s) => *s,
        Err(_) => Signal::Abandon,
    }
}

async fn wait_now(rx: &mut watch::Receiver<Signal>) -> Signal {
    match rx.wait_for(|s| s.rank() >= 2).await {
        Ok(s) => *s,
        Err(_) => Signal::Abandon,
    }
}

impl ScrapeLoop {
    /// Starts the loop on the current runtime.
    pub fn spawn(self, source: CacheSource) -> LoopHandle {
        let (tx, mut rx) = watch::channel(Signal::Run);
        let join = tokio::spawn(async move {
            let cache = match source {
                CacheSource::Fresh => ScrapeCache::new(),
                CacheSource::From(mut prev) => {
                    // `prev` (and its sender) stays alive until it is done,
                    // so it does not mistake us for an owner that vanished.
                    // A shutdown while we wait is passed on, so that a
                    // predecessor stuck in a slow request stops at once.
                    let r = tokio::select! {
                        r = &mut prev.join => r,
                        _ = wait_now(&mut rx) => {
                            prev.signal(Signal::StaleNow);
                            (&mut prev.join).await
                        }
                    };
                    match r {
                        Ok(Some(c)) => c,
                        _ => ScrapeCache::new(),
                    }
                }
            };
            self.run(cache, rx).await
        });
        LoopHandle { tx, join }
    }

    async fn run(
        self,
        mut cache: ScrapeCache,
        mut rx: watch::Receiver<Signal>,
    ) -> Option<ScrapeCache> {
        let interval = self
            .target
            .interval
            .to_std()
            .max(std::time::Duration::from_millis(1));
        let interval_ms = self.target.interval.millis().max(1);
        let timeout = self.target.timeout.to_std();
        if !self.skip_offset {
            let off = self.target.offset(interval, self.offset_seed, now_nanos());
            tokio::select! {
                _ = tokio::time::sleep(off) => {}
                s = wait_stop(&mut rx) => return self.finish(cache, s, None, &mut rx).await,
            }
        }
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let tolerance = (interval_ms / 100).min(2);
        let mut aligned = now_millis();
        let mut last_start: Option<Instant> = None;
        let mut size_hint = 0usize;
        let interval_label = self.target.interval.to_string();

        let signal = loop {
            let s = *rx.borrow();
            if s != Signal::Run {
                break s;
            }
            let started = Instant::now();
            if let Some(l) = last_start {
                self.metrics
                    .observe_interval(&interval_label, l.elapsed().as_secs_f64());
            }
            last_start = Some(started);
            // Timestamps on a fixed grid when the tick is within tolerance,
            // which keeps timestamp deltas constant and chunks small.
            let mut app_time = now_millis();
            while app_time - aligned >= interval_ms {
                aligned += interval_ms;
            }
            if app_time - aligned <= tolerance {
                app_time = aligned;
            }

            let fetched = if let Some(e) = self.target.forced_error() {
                Err(e)
            } else {
                tokio::select! {
                r = fetch(
                    &self.client,
                    &self.target.url,
                    &self.settings.accept_header,
                    self.settings.accept_encoding,
                    timeout,
                    self.settings.body_size_limit,
                    size_hint,
                ) => r,
                s = wait_now(&mut rx) => break s,
                }
            };
            // The received size of the last page (0: unknown, after a
            // failure), for the next request's body buffer and keep-alive.
            size_hint = match &fetched {
                Ok(f) => f.body.len(),
                Err(_) => 0,
            };
            cache = self.process(cache, fetched, app_time, started).await;

            tokio::select! {
                _ = ticker.tick() => {}
                s = wait_stop(&mut rx) => break s,
            }
        };
        self.finish(cache, signal, Some(ticker), &mut rx).await
    }

    /// Runs the blocking part of a scrape; returns the cache.
    async fn process(
        &self,
        cache: ScrapeCache,
        fetched: Result<crate::fetch::Fetched, ScrapeError>,
        app_time: Timestamp,
        started: Instant,
    ) -> ScrapeCache {
        let storage = self.storage.clone();
        let target = self.target.clone();
        let settings = self.settings.clone();
        let metrics = self.metrics.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut cache = cache;
            let ctx = AppendCtx {
                settings: &settings,
                target: &target,
                metrics: &metrics,
            };
            process_scrape(&*storage, &mut cache, &ctx, fetched, app_time, started);
            cache
        })
        .await;
        match res {
            Ok(x) => x,
            Err(e) => {
                let err = ScrapeError::Internal(e.to_string());
                tracing::error!(target_url = %self.target.url, err = %err, "Scrape processing failed");
                self.target
                    .report(SystemTime::now(), started.elapsed(), Some(&err));
                ScrapeCache::new()
            }
        }
    }

    async fn write_stale(&self, cache: ScrapeCache, t: Timestamp) {
        let storage = self.storage.clone();
        let target = self.target.clone();
        let settings = self.settings.clone();
        let metrics = self.metrics.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut cache = cache;
            let ctx = AppendCtx {
                settings: &settings,
                target: &target,
                metrics: &metrics,
            };
            end_of_run_staleness(&*storage, &mut cache, &ctx, t);
        })
        .await;
        if let Err(e) = r {
            tracing::error!(target_url = %self.target.url, err = %e, "Writing stale markers failed");
        }
    }

    async fn finish(
        self,
        cache: ScrapeCache,
        signal: Signal,
        ticker: Option<Interval>,
        rx: &mut watch::Receiver<Signal>,
    ) -> Option<ScrapeCache> {
        match signal {
            Signal::HandOver => Some(cache),
            Signal::Run | Signal::Abandon => None,
            Signal::StaleNow => {
                if cache.iterations() > 0 {
                    self.write_stale(cache, now_millis()).await;
                }
                None
            }
            Signal::StaleDelayed => {
                if cache.iterations() == 0 {
                    return None;
                }
                let interval = self
                    .target
                    .interval
                    .to_std()
                    .max(std::time::Duration::from_millis(1));
                let mut ticker = match ticker {
                    Some(t) => t,
                    None => {
                        let mut t = tokio::time::interval_at(
                            tokio::time::Instant::now() + interval,
                            interval,
                        );
                        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
                        t
                    }
                };
                // When the next scrape would have been.
                let stale_time = tokio::select! {
                    _ = ticker.tick() => now_millis(),
                    s = wait_now(rx) => {
                        if s == Signal::StaleNow {
                            self.write_stale(cache, now_millis()).await;
                        }
                        return None;
                    }
                };
                // One more interval and a tenth, for a re-created target to
                // get ahead of these markers.
                let waited = async {
                    ticker.tick().await;
                    tokio::time::sleep(interval / 10).await;
                };
                tokio::select! {
                    _ = waited => {}
                    s = wait_now(rx) => {
                        if s == Signal::Abandon {
                            return None;
                        }
                    }
                }
                self.write_stale(cache, stale_time).await;
                None
            }
        }
    }
}
