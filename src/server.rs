//! The server: loads the configuration, wires storage, scraping, the query
//! engine and the web API together, and runs until SIGINT/SIGTERM.
//!
//! Start-up order follows Prometheus: storage first, then the web listener
//! (so `/-/healthy` answers early), then scraping; `/-/ready` turns 200
//! once everything runs. Shutdown reverses it: scraping stops first so its
//! final staleness markers still reach storage.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use parking_lot::RwLock;
use pharos_config::Config;
use pharos_model::Duration as PromDuration;
use pharos_promql::{Engine, EngineOptions};
use pharos_scrape::{ScrapeManager, ScrapeOptions};
use pharos_storage::{Appendable, Queryable};
use pharos_web::{
    ApiContext, MetadataRetriever, MetricMetadata, RuntimeInfo, TargetInfo, TargetMetadata,
    TargetRetriever,
};

use crate::cli::ServerFlags;

/// Runs the server until a termination signal.
pub fn run(flags: ServerFlags) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pharos")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(flags))
}

fn parse_duration(flag: &str, v: &str) -> anyhow::Result<PromDuration> {
    PromDuration::parse(v).with_context(|| format!("invalid value for --{flag}"))
}

/// The configuration pharos runs with: the file given, or the built-in one.
fn load_config(flags: &ServerFlags, scrape_addr: &str) -> anyhow::Result<Config> {
    match &flags.config_file {
        Some(p) => pharos_config::load_file(p)
            .map(|c| crate::alerting::resolved(c, p))
            .map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(pharos_config::default_self_scrape(scrape_addr)),
    }
}

/// The address the built-in configuration scrapes: the listen address with
/// an unspecified host replaced by localhost.
fn self_scrape_address(listen: &SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        format!("localhost:{}", listen.port())
    } else {
        listen.to_string()
    }
}

/// Whether the last configuration (re)load succeeded, and when one last
/// did, for `/api/v1/status/runtimeinfo`.
#[derive(Debug, Clone, Copy)]
struct ConfigState {
    success: bool,
    last_success: Option<SystemTime>,
}

/// Locks [`CONFIG_STATE`] (a poisoned lock still holds valid data).
fn config_state() -> std::sync::MutexGuard<'static, ConfigState> {
    CONFIG_STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The process's [`ConfigState`], set by the initial load and by reloads.
static CONFIG_STATE: std::sync::Mutex<ConfigState> = std::sync::Mutex::new(ConfigState {
    success: true,
    last_success: None,
});

/// Every flag by its long name with its value as given or defaulted, for
/// `/api/v1/status/flags` (Prometheus lists all of its flags there).
fn flags_map() -> std::collections::BTreeMap<String, String> {
    use clap::CommandFactory;
    let cmd = crate::cli::Cli::command();
    let mut out = std::collections::BTreeMap::new();
    let Ok(m) = cmd.clone().try_get_matches_from(std::env::args_os()) else {
        return out;
    };
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let v = match m.try_get_raw(arg.get_id().as_str()) {
            Ok(Some(vals)) => vals
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        };
        out.insert(long.to_string(), v);
    }
    out
}

/// The per-query memory budget: the flag's value, or when 0 a quarter of
/// the machine's memory (2 GiB when that cannot be read).
fn query_memory_budget(flag: u64) -> usize {
    if flag > 0 {
        return usize::try_from(flag).unwrap_or(usize::MAX);
    }
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    match total_kib {
        Some(k) => usize::try_from(k * 1024 / 4).unwrap_or(usize::MAX),
        None => 2 << 30,
    }
}

async fn run_async(flags: ServerFlags) -> anyhow::Result<()> {
    let start_time = SystemTime::now();
    let query_timeout = parse_duration("query.timeout", &flags.query_timeout)?;
    let lookback = parse_duration("query.lookback-delta", &flags.lookback_delta)?;
    let retention = parse_duration("storage.tsdb.retention.time", &flags.retention_time)?;
    if retention.millis() <= 0 {
        bail!("--storage.tsdb.retention.time must be positive");
    }

    prepare_data_dir(&flags.tsdb_path)?;

    let listener = tokio::net::TcpListener::bind(&flags.listen_address)
        .await
        .with_context(|| format!("listening on {}", flags.listen_address))?;
    let local = listener
        .local_addr()
        .context("reading the listen address")?;

    let cfg = load_config(&flags, &self_scrape_address(&local))?;
    let external_url = flags
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://{}/", self_scrape_address(&local)));

    let db = {
        let flags = flags.clone();
        let storage = cfg.storage.clone();
        let ms = retention.millis();
        tokio::task::spawn_blocking(move || crate::tsdb_glue::open_db(&flags, ms, &storage))
            .await
            .context("opening storage")??
    };
    let head = db.clone();
    let engine = Arc::new(Engine::new(EngineOptions {
        timeout: query_timeout.to_std(),
        max_samples: flags.query_max_samples,
        lookback_delta: lookback.millis(),
        enable_experimental_functions: flags
            .enable_feature
            .iter()
            .any(|f| f == "promql-experimental-functions"),
        max_memory_bytes: query_memory_budget(flags.query_max_memory_bytes),
        ..EngineOptions::default()
    }));
    config_state().last_success = Some(SystemTime::now());

    let appendable: Arc<dyn Appendable> = Arc::new(head.clone());
    let queryable: Arc<dyn Queryable> = Arc::new(head.clone());
    let alerting = Arc::new(crate::alerting::Alerting::new(
        crate::alerting::flags(&flags)?,
        engine.clone(),
        appendable.clone(),
        queryable.clone(),
        external_url.clone(),
    ));
    let scrape = Arc::new(ScrapeManager::new(appendable, ScrapeOptions::default()));
    let config_yaml = Arc::new(RwLock::new(cfg.original.clone()));
    let ready = Arc::new(AtomicBool::new(false));

    let metrics = {
        let head = head.clone();
        let scrape = scrape.clone();
        let alerting = alerting.clone();
        Arc::new(move |out: &mut String| {
            head.write_metrics(out);
            scrape.write_metrics(out);
            crate::lifecycle::write_metrics(out);
            pharos_node::write_process_metrics(out);
            alerting.write_metrics(out);
        })
    };
    let ctx = ApiContext {
        engine,
        queryable,
        targets: Arc::new(ScrapeTargets(scrape.clone())),
        config_yaml: {
            let y = config_yaml.clone();
            Arc::new(move || y.read().clone())
        },
        metrics,
        ready: ready.clone(),
        external_url: external_url.clone(),
        max_concurrency: flags.query_max_concurrency,
        metadata: Arc::new(ScrapeTargets(scrape.clone())),
        flags: Arc::new(flags_map()),
        runtime_info: {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            // The retention in force (the configuration file's, reloads
            // included), as Prometheus shows it.
            let db = db.clone();
            Arc::new(move || {
                let retention = PromDuration(db.retention().0).to_string();
                let s = *config_state();
                RuntimeInfo {
                    start_time,
                    cwd: cwd.clone(),
                    reload_config_success: s.success,
                    last_config_time: s.last_success,
                    corruption_count: 0,
                    storage_retention: retention,
                }
            })
        },
        exemplars: crate::tsdb_glue::exemplar_storage_enabled(&flags).then(|| {
            let db: Arc<dyn pharos_storage::ExemplarQueryable> = Arc::new(db.clone());
            db
        }),
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let web = {
        let mut rx = stop_rx.clone();
        let extra = pharos_web::rules_router(
            Arc::new(crate::alerting::RulesSource(alerting.clone())),
            ready.clone(),
        )
        .merge(pharos_web::tsdb_router(
            Arc::new(crate::tsdb_glue::DbAdmin(db.clone())),
            ready.clone(),
            flags.enable_admin_api,
        ))
        .merge(crate::lifecycle::routes(crate::lifecycle::Routes {
            lifecycle: flags.enable_lifecycle,
            has_config_file: flags.config_file.is_some(),
            node: Arc::new(pharos_node::HostCollector::new()),
        }));
        tokio::spawn(pharos_web::serve_with(listener, ctx, extra, async move {
            let _ = rx.wait_for(|s| *s).await;
        }))
    };
    tracing::info!(address = %local, "Listening on");

    scrape.apply_config(&cfg);
    crate::lifecycle::record_reload(Ok(()));
    let auto_reload = match &flags.config_file {
        Some(p)
            if flags.auto_reload
                || crate::lifecycle::auto_reload_enabled(&flags.enable_feature) =>
        {
            let every = parse_duration("config.auto-reload-interval", &flags.auto_reload_interval)?;
            Some(tokio::spawn(crate::lifecycle::auto_reload(
                p.clone(),
                every.to_std(),
            )))
        }
        _ => None,
    };
    let notifier_task = tokio::spawn(alerting.notifier.clone().run(stop_rx.clone()));
    alerting
        .apply(&cfg)
        .await
        .map_err(|e| anyhow::anyhow!("error loading rules: {e}"))?;
    ready.store(true, Ordering::SeqCst);
    tracing::info!(
        url = %external_url,
        config = %flags.config_file.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in (self-scrape)".into()),
        "pharos is ready; open the URL in a browser"
    );

    let retention_task = tokio::spawn(crate::tsdb_glue::maintenance_loop(db.clone()));
    wait_for_signals(
        &flags,
        &scrape,
        &config_yaml,
        &alerting,
        &db,
        retention.millis(),
    )
    .await;

    tracing::info!("Stopping scrape manager");
    ready.store(false, Ordering::SeqCst);
    scrape.stop().await;
    tracing::info!("Stopping rule manager and notifier");
    alerting.stop().await;
    retention_task.abort();
    if let Some(t) = auto_reload {
        t.abort();
    }
    let _ = stop_tx.send(true);
    let _ = notifier_task.await;
    match tokio::time::timeout(Duration::from_secs(10), web).await {
        Ok(Ok(Err(e))) => tracing::warn!(err = %e, "web server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(err = %e, "web server task failed"),
        Err(_) => tracing::warn!("web server did not stop within 10s"),
        Ok(Ok(Ok(()))) => {}
    }
    if let Err(e) = db.close() {
        tracing::warn!(err = %e, "closing storage");
    }
    tracing::info!("See you next time!");
    Ok(())
}

/// Creates the data directory. The head is in memory for now; durability
/// (WAL, blocks) lands in the TSDB work, which will own this directory.
fn prepare_data_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("creating data directory {}", path.display()))
}

/// Waits for SIGINT/SIGTERM; reloads the configuration on SIGHUP, keeping
/// the running one when the new file is bad.
async fn wait_for_signals(
    flags: &ServerFlags,
    scrape: &ScrapeManager,
    config_yaml: &RwLock<String>,
    alerting: &crate::alerting::Alerting,
    db: &pharos_tsdb::Db,
    retention_flag_ms: i64,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot install signal handlers; stopping on Ctrl-C only");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("Received SIGINT, exiting gracefully..."); return; }
            _ = term.recv() => { tracing::info!("Received SIGTERM, exiting gracefully..."); return; }
            _ = hup.recv() => {
                if let Some(cfg) = reload(flags, scrape, config_yaml) {
                    // Retention from `storage.tsdb.retention` applies
                    // without a restart, as in Prometheus.
                    if let Err(e) = crate::tsdb_glue::apply_storage_config(
                        db,
                        flags,
                        retention_flag_ms,
                        &cfg.storage,
                    ) {
                        tracing::error!(err = %e, "applying the storage retention");
                    }
                    // The reload counts as failed when its rule files do.
                    let r = crate::alerting::reload(alerting, &cfg).await;
                    if r.is_err() {
                        config_state().success = false;
                    }
                    crate::lifecycle::record_reload(r);
                }
            }
        }
    }
}

fn reload(
    flags: &ServerFlags,
    scrape: &ScrapeManager,
    config_yaml: &RwLock<String>,
) -> Option<Config> {
    let Some(path) = &flags.config_file else {
        tracing::info!("SIGHUP ignored: running the built-in configuration");
        return None;
    };
    match pharos_config::load_file(path) {
        Ok(cfg) => {
            scrape.apply_config(&cfg);
            *config_yaml.write() = cfg.original.clone();
            *config_state() = ConfigState {
                success: true,
                last_success: Some(SystemTime::now()),
            };
            tracing::info!(filename = %path.display(), "Completed loading of configuration file");
            Some(crate::alerting::resolved(cfg, path))
        }
        Err(e) => {
            config_state().success = false;
            tracing::error!(err = %e, "Error reloading config; keeping the running configuration");
            crate::lifecycle::record_reload(Err(e.to_string()));
            None
        }
    }
}

/// Adapts the scrape manager to the API's target view.
struct ScrapeTargets(Arc<ScrapeManager>);

fn target_info(t: pharos_scrape::TargetStatus) -> TargetInfo {
    TargetInfo {
        scrape_pool: t.scrape_pool,
        scrape_url: t.scrape_url,
        labels: t.labels,
        discovered_labels: t.discovered_labels,
        health: match t.health {
            pharos_scrape::Health::Up => pharos_web::TargetHealth::Up,
            pharos_scrape::Health::Down => pharos_web::TargetHealth::Down,
            pharos_scrape::Health::Unknown => pharos_web::TargetHealth::Unknown,
        },
        last_error: t.last_error,
        last_scrape: t.last_scrape,
        last_scrape_duration: t.last_scrape_duration,
        scrape_interval: t.scrape_interval,
        scrape_timeout: t.scrape_timeout,
    }
}

impl TargetRetriever for ScrapeTargets {
    fn dropped_counts(&self) -> std::collections::BTreeMap<String, usize> {
        self.0.dropped_target_counts()
    }
    fn scrape_pools(&self) -> Vec<String> {
        self.0.scrape_pools()
    }
    fn active(&self) -> Vec<TargetInfo> {
        self.0.targets().into_iter().map(target_info).collect()
    }
    fn dropped(&self) -> Vec<TargetInfo> {
        self.0
            .dropped_targets()
            .into_iter()
            .map(target_info)
            .collect()
    }
}

impl MetadataRetriever for ScrapeTargets {
    fn targets_metadata(&self) -> Vec<TargetMetadata> {
        let mut ts = self.0.targets();
        ts.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
        ts.into_iter()
            .map(|t| TargetMetadata {
                metadata: t
                    .metadata
                    .iter()
                    .map(|m| MetricMetadata {
                        metric: m.metric.clone(),
                        kind: m.kind.clone(),
                        help: m.help.clone(),
                        unit: m.unit.clone(),
                    })
                    .collect(),
                labels: t.labels,
            })
            .collect()
    }
}
