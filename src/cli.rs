//! Command-line flags, named exactly as Prometheus 3.x names them so that an
//! existing systemd unit or compose command line starts pharos unchanged.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// pharos: Prometheus-compatible monitoring in one binary.
#[derive(Debug, Parser)]
#[command(
    name = "pharos",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Server flags (used when no subcommand is given).
    #[command(flatten)]
    pub flags: ServerFlags,
    /// A tool subcommand instead of running the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags of the server, as Prometheus spells them.
#[derive(Debug, Args, Clone)]
pub struct ServerFlags {
    /// Prometheus configuration file path. Without it, a built-in
    /// configuration scrapes pharos itself.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,

    /// Reload the configuration file whenever it changes (checked every
    /// `--config.auto-reload-interval`); the same as
    /// `--enable-feature=auto-reload-config`.
    #[arg(long = "config.auto-reload")]
    pub auto_reload: bool,

    /// How often the configuration file is checked for changes when
    /// `--config.auto-reload` (or the `auto-reload-config` feature) is on.
    #[arg(long = "config.auto-reload-interval", default_value = "30s")]
    pub auto_reload_interval: String,

    /// Address to listen on for UI, API, and telemetry.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    pub listen_address: String,

    /// The URL under which pharos is externally reachable (for links).
    #[arg(long = "web.external-url")]
    pub external_url: Option<String>,

    /// Enable shutdown and reload via HTTP request.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Enable API endpoints for admin control actions (TSDB snapshot,
    /// delete_series, clean_tombstones).
    #[arg(long = "web.enable-admin-api")]
    pub enable_admin_api: bool,

    /// Base path for metrics storage.
    #[arg(long = "storage.tsdb.path", default_value = "data/")]
    pub tsdb_path: PathBuf,

    /// How long to retain samples in storage (Prometheus duration, e.g. 15d).
    #[arg(long = "storage.tsdb.retention.time", default_value = "15d")]
    pub retention_time: String,

    /// Maximum number of bytes the blocks may take (units B, KB, MB, GB,
    /// TB, PB, EB); the oldest blocks are deleted beyond it. 0 disables.
    #[arg(long = "storage.tsdb.retention.size", default_value = "0")]
    pub retention_size: String,

    /// Minimum duration of a data block before being persisted (for tests).
    #[arg(
        long = "storage.tsdb.min-block-duration",
        default_value = "2h",
        hide = true
    )]
    pub min_block_duration: String,

    /// Maximum duration compacted blocks may span (for tests). Default: 10%
    /// of the retention period, at most 31d.
    #[arg(long = "storage.tsdb.max-block-duration", hide = true)]
    pub max_block_duration: Option<String>,

    /// Maximum time a query may take before being aborted.
    #[arg(long = "query.timeout", default_value = "2m")]
    pub query_timeout: String,

    /// Maximum number of samples a single query can load into memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub query_max_samples: usize,

    /// The maximum lookback duration for retrieving metrics during
    /// expression evaluations and federation.
    #[arg(long = "query.lookback-delta", default_value = "5m")]
    pub lookback_delta: String,

    /// Maximum estimated bytes one query may hold in memory (series read
    /// from storage and intermediate results); beyond it the query fails
    /// with an execution error. 0 means a quarter of the machine's memory.
    #[arg(long = "query.max-memory-bytes", default_value_t = 0)]
    pub query_max_memory_bytes: u64,

    /// Maximum number of queries executed concurrently.
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    pub query_max_concurrency: usize,

    /// Comma-separated feature names to enable (e.g.
    /// promql-experimental-functions).
    #[arg(long = "enable-feature", value_delimiter = ',')]
    pub enable_feature: Vec<String>,

    /// Only log messages with the given severity or above: debug, info,
    /// warn, error.
    #[arg(long = "log.level", default_value = "info")]
    pub log_level: String,

    /// Output format of log messages: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt")]
    pub log_format: String,

    /// Max time to tolerate an outage for restoring the "for" state of
    /// alerts.
    #[arg(long = "rules.alert.for-outage-tolerance", default_value = "1h")]
    pub rules_alert_for_outage_tolerance: String,

    /// Minimum duration between an alert and its restored "for" state;
    /// only applies to alerts whose "for" is longer.
    #[arg(long = "rules.alert.for-grace-period", default_value = "10m")]
    pub rules_alert_for_grace_period: String,

    /// Minimum amount of time to wait before resending an alert to
    /// Alertmanager.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m")]
    pub rules_alert_resend_delay: String,

    /// The capacity of the queue for pending Alertmanager notifications.
    #[arg(
        long = "alertmanager.notification-queue-capacity",
        default_value_t = 10000
    )]
    pub alertmanager_notification_queue_capacity: usize,
}

/// Tool subcommands, after promtool's.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run tsdb commands (list, analyze, create-blocks-from).
    #[command(subcommand)]
    Tsdb(TsdbCommand),
    /// Check the validity of configuration files.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Run queries against a Prometheus-compatible server.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Unit testing.
    #[command(subcommand)]
    Test(TestCommand),
}

/// `pharos check ...`
#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Check if the config files are valid or not.
    Config {
        /// The config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Perform service discovery for the given job name and report the
    /// results, including relabeling.
    #[command(name = "service-discovery")]
    ServiceDiscovery {
        /// The prometheus config file.
        config: PathBuf,
        /// The job to run service discovery for.
        job: String,
        /// The time to wait for discovery results.
        #[arg(long = "timeout", default_value = "30s")]
        timeout: String,
    },
    /// Check if the rule files are valid or not.
    Rules {
        /// The rule files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `pharos test ...`
#[derive(Debug, Subcommand)]
pub enum TestCommand {
    /// Unit tests for rules (promtool's unit-test file format).
    Rules {
        /// The unit test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `pharos query ...`, after `promtool query`.
#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Run an instant query.
    Instant {
        /// Output format of the query.
        #[arg(short = 'o', long = "format", value_enum, default_value = "promql")]
        format: QueryFormat,
        /// Query evaluation time (RFC3339 or Unix timestamp); default now.
        #[arg(long)]
        time: Option<String>,
        /// Prometheus server to query (`http://host:9090`).
        server: String,
        /// PromQL query expression.
        expr: String,
    },
    /// Run a range query.
    Range {
        /// Output format of the query.
        #[arg(short = 'o', long = "format", value_enum, default_value = "promql")]
        format: QueryFormat,
        /// Query range start time (RFC3339 or Unix timestamp); default 5m
        /// before the end.
        #[arg(long)]
        start: Option<String>,
        /// Query range end time (RFC3339 or Unix timestamp); default now.
        #[arg(long)]
        end: Option<String>,
        /// Query step size (duration); default about 250 points.
        #[arg(long)]
        step: Option<String>,
        /// Prometheus server to query.
        server: String,
        /// PromQL query expression.
        expr: String,
    },
    /// Run a series query.
    Series {
        /// Output format of the query.
        #[arg(short = 'o', long = "format", value_enum, default_value = "promql")]
        format: QueryFormat,
        /// Series selector. Can be specified multiple times.
        #[arg(long = "match", required = true)]
        matches: Vec<String>,
        /// Start time (RFC3339 or Unix timestamp).
        #[arg(long)]
        start: Option<String>,
        /// End time (RFC3339 or Unix timestamp).
        #[arg(long)]
        end: Option<String>,
        /// Prometheus server to query.
        server: String,
    },
    /// Run a labels query (the values of one label).
    Labels {
        /// Output format of the query.
        #[arg(short = 'o', long = "format", value_enum, default_value = "promql")]
        format: QueryFormat,
        /// Series selector. Can be specified multiple times.
        #[arg(long = "match")]
        matches: Vec<String>,
        /// Start time (RFC3339 or Unix timestamp).
        #[arg(long)]
        start: Option<String>,
        /// End time (RFC3339 or Unix timestamp).
        #[arg(long)]
        end: Option<String>,
        /// Prometheus server to query.
        server: String,
        /// Label name to provide label values for.
        name: String,
    },
}

/// Output formats of `pharos query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    /// Values as Prometheus's Go client prints them.
    Promql,
    /// The API's result as JSON.
    Json,
}

/// `pharos tsdb ...`
#[derive(Debug, Subcommand)]
pub enum TsdbCommand {
    /// List the blocks of a data directory.
    List {
        /// Print human readable values.
        #[arg(short = 'r', long = "human-readable")]
        human_readable: bool,
        /// Database path.
        #[arg(default_value = "data/")]
        db_path: PathBuf,
    },
    /// Analyze churn, label pair cardinality of a block.
    Analyze {
        /// Database path.
        #[arg(default_value = "data/")]
        db_path: PathBuf,
        /// Block to analyze (default is the last block).
        block_id: Option<String>,
        /// How many items to show in each list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Create blocks of data for new recording rules or from a file.
    #[command(name = "create-blocks-from")]
    CreateBlocksFrom {
        /// The input format.
        #[command(subcommand)]
        source: BackfillSource,
    },
}

/// `pharos tsdb create-blocks-from ...`
#[derive(Debug, Subcommand)]
pub enum BackfillSource {
    /// Import samples from an OpenMetrics input and produce TSDB blocks.
    Openmetrics {
        /// OpenMetrics file to read samples from.
        input: PathBuf,
        /// Output directory for generated blocks.
        #[arg(default_value = "data/")]
        output: PathBuf,
        /// Maximum duration created blocks may span.
        #[arg(long = "max-block-duration", default_value = "2h")]
        max_block_duration: String,
        /// Convert classic histograms (histogram families' `_bucket`,
        /// `_count` and `_sum` series) into native histograms with custom
        /// buckets (NHCB), as Prometheus's scrape option
        /// `convert_classic_histograms_to_nhcb` does. A pharos extension:
        /// promtool has no such flag. A histogram that cannot be converted
        /// (counts not cumulative, `_count` different from the +Inf bucket)
        /// is written as its classic series.
        #[arg(long = "convert-classic-histograms-to-nhcb")]
        convert_classic_histograms_to_nhcb: bool,
        /// With --convert-classic-histograms-to-nhcb, also write the
        /// classic series (pharos extension, like the scrape option
        /// `always_scrape_classic_histograms`).
        #[arg(
            long = "keep-classic-histograms",
            requires = "convert_classic_histograms_to_nhcb"
        )]
        keep_classic_histograms: bool,
    },
}
