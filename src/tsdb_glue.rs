//! Opening the TSDB from the command-line flags, and its periodic
//! maintenance (head cutting, compaction, retention).

use std::time::Duration;

use anyhow::Context;
use pharos_model::Duration as PromDuration;
use pharos_tsdb::{Db, DbOptions};

use crate::cli::ServerFlags;

/// Parses a Prometheus byte size: a number with an optional unit among
/// B, KB, MB, GB, TB, PB, EB (powers of 1024, as Prometheus's units.Base2Bytes).
pub fn parse_bytes(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid byte size {s:?}"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        "TB" | "TIB" => 1 << 40,
        "PB" | "PIB" => 1 << 50,
        "EB" | "EIB" => 1 << 60,
        _ => anyhow::bail!("invalid byte size {s:?}: unknown unit {unit:?}"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("byte size {s:?} overflows"))
}

fn duration_flag(flag: &str, v: &str) -> anyhow::Result<i64> {
    let d = PromDuration::parse(v).with_context(|| format!("invalid value for --{flag}"))?;
    if d.millis() <= 0 {
        anyhow::bail!("--{flag} must be positive");
    }
    Ok(d.millis())
}

/// The database options the flags ask for.
pub fn db_options(flags: &ServerFlags, retention_ms: i64) -> anyhow::Result<DbOptions> {
    let mut opts = DbOptions::with_retention(retention_ms);
    opts.retention_size = parse_bytes(&flags.retention_size)
        .context("invalid value for --storage.tsdb.retention.size")?;
    opts.min_block_duration =
        duration_flag("storage.tsdb.min-block-duration", &flags.min_block_duration)?;
    opts.max_block_duration = match &flags.max_block_duration {
        Some(v) => duration_flag("storage.tsdb.max-block-duration", v)?,
        None => opts.max_block_duration,
    };
    Ok(opts)
}

/// The retention (time in ms, size in bytes) in force: each of
/// `storage.tsdb.retention`'s settings in the configuration file, when
/// set, takes precedence over its flag.
pub fn retention(
    flags: &ServerFlags,
    retention_ms: i64,
    storage: &pharos_config::StorageConfig,
) -> anyhow::Result<(i64, u64)> {
    let time = storage.retention_time.map_or(retention_ms, |d| d.millis());
    let size = match storage.retention_size {
        Some(size) => size,
        None => parse_bytes(&flags.retention_size)
            .context("invalid value for --storage.tsdb.retention.size")?,
    };
    Ok((time, size))
}

/// Applies a reloaded configuration's retention to the running database
/// (Prometheus's `ApplyConfig`): blocks beyond the new limits go at the
/// next maintenance round; a setting removed from the file falls back to
/// its flag.
pub fn apply_storage_config(
    db: &Db,
    flags: &ServerFlags,
    retention_ms: i64,
    storage: &pharos_config::StorageConfig,
) -> anyhow::Result<()> {
    let (time, size) = retention(flags, retention_ms, storage)?;
    db.set_retention(time, size);
    // Prometheus's exemplar storage `ApplyConfig`: resize, keeping the
    // newest exemplars that fit.
    db.head().exemplars().resize(max_exemplars(flags, storage));
    Ok(())
}

/// Whether `--enable-feature=exemplar-storage` is given.
pub fn exemplar_storage_enabled(flags: &ServerFlags) -> bool {
    flags.enable_feature.iter().any(|f| f == "exemplar-storage")
}

/// The exemplar ring size: 0 (exemplars dropped) without
/// `--enable-feature=exemplar-storage`, else
/// `storage.exemplars.max_exemplars` (Prometheus's default 100000 when
/// unset; 0 or less disables).
pub fn max_exemplars(flags: &ServerFlags, storage: &pharos_config::StorageConfig) -> usize {
    if !exemplar_storage_enabled(flags) {
        return 0;
    }
    match storage.max_exemplars {
        None => pharos_tsdb::exemplar::DEFAULT_MAX_EXEMPLARS,
        Some(n) => usize::try_from(n).unwrap_or(0),
    }
}

/// Opens the data directory. `storage.tsdb.retention` of the
/// configuration file, when set, takes precedence over the flags.
pub fn open_db(
    flags: &ServerFlags,
    retention_ms: i64,
    storage: &pharos_config::StorageConfig,
) -> anyhow::Result<Db> {
    let (retention_ms, retention_size) = retention(flags, retention_ms, storage)?;
    let mut opts = db_options(flags, retention_ms)?;
    opts.retention_size = retention_size;
    opts.head.max_exemplars = max_exemplars(flags, storage);
    Db::open(&flags.tsdb_path, opts)
        .with_context(|| format!("opening storage at {}", flags.tsdb_path.display()))
}

/// Runs compaction and retention periodically (every minute, as
/// Prometheus; more often when blocks are shorter than a few minutes).
pub async fn maintenance_loop(db: Db) {
    let min_block = db.options().min_block_duration;
    let every = if min_block < 4 * 60_000 {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(60)
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let d = db.clone();
        match tokio::task::spawn_blocking(move || d.compact()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(err = %e, "compaction failed"),
            Err(e) => tracing::error!(err = %e, "compaction task failed"),
        }
    }
}

/// The database as the web API's [`pharos_web::TsdbAdmin`].
pub struct DbAdmin(pub Db);

fn name_counts(v: Vec<(String, u64)>) -> Vec<pharos_web::NameCount> {
    v.into_iter()
        .map(|(name, value)| pharos_web::NameCount { name, value })
        .collect()
}

impl pharos_web::TsdbAdmin for DbAdmin {
    fn status(&self, limit: usize) -> Result<pharos_web::TsdbStatus, String> {
        let c = self.0.head_cardinality(limit).map_err(|e| e.to_string())?;
        Ok(pharos_web::TsdbStatus {
            head_stats: pharos_web::HeadStatsInfo {
                num_series: c.num_series,
                num_label_pairs: c.num_label_pairs,
                chunk_count: c.chunk_count,
                min_time: c.min_time,
                max_time: c.max_time,
            },
            series_count_by_metric_name: name_counts(c.series_by_metric_name),
            label_value_count_by_label_name: name_counts(c.label_value_count_by_name),
            memory_in_bytes_by_label_name: name_counts(c.bytes_by_label_name),
            series_count_by_label_value_pair: name_counts(c.series_by_label_pair),
        })
    }

    fn wal_replay(&self) -> pharos_web::WalReplayStatus {
        // Replay finishes inside `Db::open`, before the API is ready, so
        // `current` always equals `max` here.
        let r = self.0.wal().replay_stats();
        pharos_web::WalReplayStatus {
            min: 0,
            max: r.segments_total,
            current: r.segments_read,
        }
    }

    fn snapshot(&self, skip_head: bool) -> Result<String, String> {
        let now = chrono::Utc::now();
        let name = format!(
            "{}-{:016x}",
            now.format("%Y%m%dT%H%M%SZ"),
            std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                now.timestamp_nanos_opt()
            )
        );
        let dir = self.0.dir().join("snapshots").join(&name);
        self.0
            .snapshot(&dir, !skip_head)
            .map_err(|e| format!("create snapshot: {e}"))?;
        Ok(name)
    }

    fn delete_series(
        &self,
        sets: &[Vec<pharos_model::Matcher>],
        start: i64,
        end: i64,
    ) -> Result<(), String> {
        for ms in sets {
            self.0
                .delete_series(start, end, ms)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn clean_tombstones(&self) -> Result<(), String> {
        self.0
            .clean_tombstones()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn config_retention_takes_precedence() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let cli = crate::cli::Cli::parse_from([
            "pharos".to_string(),
            format!("--storage.tsdb.path={}", path.display()),
            "--storage.tsdb.retention.size=1GB".to_string(),
        ]);
        let db = open_db(&cli.flags, 15 * 86_400_000, &Default::default()).unwrap();
        assert_eq!(db.options().retention_size, 1 << 30);
        assert_eq!(db.options().retention_time, 15 * 86_400_000);
        db.close().unwrap();
        drop(db);
        let storage = pharos_config::StorageConfig {
            retention_time: Some(pharos_model::Duration(3_600_000 * 240)),
            retention_size: Some(5),
            max_exemplars: None,
        };
        let db = open_db(&cli.flags, 15 * 86_400_000, &storage).unwrap();
        assert_eq!(db.options().retention_size, 5);
        assert_eq!(db.options().retention_time, 3_600_000 * 240);
        assert_eq!(db.options().max_block_duration, 3_600_000 * 24);
        // A reload changes the retention in force; a setting dropped from
        // the file falls back to its flag.
        let storage = pharos_config::StorageConfig {
            retention_time: Some(pharos_model::Duration(3_600_000)),
            retention_size: None,
            max_exemplars: None,
        };
        apply_storage_config(&db, &cli.flags, 15 * 86_400_000, &storage).unwrap();
        assert_eq!(db.retention(), (3_600_000, 1 << 30));
        apply_storage_config(&db, &cli.flags, 15 * 86_400_000, &Default::default()).unwrap();
        assert_eq!(db.retention(), (15 * 86_400_000, 1 << 30));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert_eq!(parse_bytes("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert!(parse_bytes("1XB").is_err());
        assert!(parse_bytes("GB").is_err());
    }
}
