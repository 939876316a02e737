//! PromQL evaluation over [`pharos_storage::Queryable`].
//!
//! Parsing is delegated to the `promql-parser` crate; this crate owns the
//! semantics, which follow Prometheus 3.x. The evaluator works like
//! Prometheus's `rangeEval`: every node of the expression tree is evaluated
//! once for the whole time range of a query (all steps at once), producing a
//! matrix of per-step values, instead of re-running the whole query for each
//! step. Series are read from storage once per selector and reused by every
//! step, which is what makes range queries cheap.

use pharos_model::{Labels, Matcher, Sample};
use pharos_storage::StorageError;

/// Options of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Maximum wall time of one query.
    pub timeout: std::time::Duration,
    /// Maximum number of samples a query may hold in memory at once.
    pub max_samples: usize,
    /// How far back an instant vector selector looks for a sample, in ms.
    pub lookback_delta: i64,
    /// Allow functions Prometheus marks experimental.
    pub enable_experimental_functions: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            timeout: std::time::Duration::from_secs(120),
            max_samples: 50_000_000,
            lookback_delta: 5 * 60 * 1000,
            enable_experimental_functions: false,
        }
    }
}

/// The PromQL engine. Stateless apart from its options; share it freely.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// The outcome of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warnings (annotations of level warning), Prometheus phrasing.
    pub warnings: Vec<String>,
    /// Informational annotations.
    pub infos: Vec<String>,
}

/// A PromQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at a time.
    Scalar {
        /// Timestamp (ms).
        t: i64,
        /// Value.
        v: f64,
    },
    /// A string at a time.
    String {
        /// Timestamp (ms).
        t: i64,
        /// Value.
        v: String,
    },
    /// An instant vector.
    Vector(Vec<VectorSample>),
    /// A range vector (range query results, or matrix selectors).
    Matrix(Vec<RangeSeries>),
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// Series labels.
    pub metric: Labels,
    /// Timestamp (ms).
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// One series of a range vector.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// Series labels.
    pub metric: Labels,
    /// Samples in time order.
    pub samples: Vec<Sample>,
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query text is not valid PromQL.
    #[error("{0}")]
    Parse(String),
    /// The query ran longer than the timeout.
    #[error("{0}")]
    Timeout(String),
    /// The query was canceled.
    #[error("query was canceled")]
    Canceled,
    /// The query would hold more samples than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// Evaluation failed.
    #[error("{0}")]
    Execution(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// Prometheus's API `errorType` for this error: `bad_data`, `timeout`,
    /// `canceled`, `execution` or `internal`.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse(_) => "bad_data",
            QueryError::Timeout(_) => "timeout",
            QueryError::Canceled => "canceled",
            QueryError::TooManySamples | QueryError::Execution(_) => "execution",
            QueryError::Storage(_) => "internal",
        }
    }
}

impl Engine {
    /// A new engine.
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at time `ts` (ms).
    pub fn instant_query(
        &self,
        _q: &dyn pharos_storage::Queryable,
        _query: &str,
        _ts: i64,
    ) -> Result<QueryResult, QueryError> {
        Err(QueryError::Execution("not implemented".into()))
    }

    /// Evaluates `query` over `[start, end]` every `step` ms. The result is
    /// a [`Value::Matrix`] (or an error for string-typed queries).
    pub fn range_query(
        &self,
        _q: &dyn pharos_storage::Queryable,
        _query: &str,
        _start: i64,
        _end: i64,
        _step: i64,
    ) -> Result<QueryResult, QueryError> {
        Err(QueryError::Execution("not implemented".into()))
    }
}

/// Parses a series selector (`up{job="x"}`, as in `/api/v1/series`'s
/// `match[]`) into matchers.
pub fn parse_selector(_s: &str) -> Result<Vec<Matcher>, QueryError> {
    Err(QueryError::Execution("not implemented".into()))
}
