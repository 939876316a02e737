//! The storage seams of pharos.
//!
//! This crate holds traits only (plus tiny helpers), so that the producers of
//! samples (scrape, rules, remote write) and their consumers (PromQL, the
//! API, federation) never name a concrete database. The TSDB implements
//! them; tests implement them; a fanout can combine several.
//!
//! The shape follows Prometheus's `storage/interface.go`: a *factory* paired
//! with a *session* object. [`Appendable`] hands out an [`Appender`], a
//! transaction that ends in [`Appender::commit`] or [`Appender::rollback`]
//! (taking `self`, so a finished appender cannot be reused; dropping one
//! uncommitted must roll it back). [`Queryable`] hands out a [`Querier`] over
//! a time range, whose [`Querier::select`] yields a pull-style [`SeriesSet`]
//! of [`Series`], each with its own [`SampleIter`].
//!
//! All storage calls are synchronous and CPU-bound. Async callers reach them
//! through `spawn_blocking` or a dedicated pool, never inline on a runtime.
//! Everything handed out is owned (`'static`), so it can cross those
//! boundaries freely: implementations hold `Arc`s to what they read.

use pharos_model::{FloatHistogram, HistogramValue, Labels, Matcher, Sample, Timestamp};

/// An opaque reference to a series inside one storage, returned by
/// [`Appender::append`] so that callers can skip the label lookup next time.
/// `0` means "unknown".
pub type SeriesRef = u64;

/// Why a single sample was not appended. These are expected outcomes that
/// callers count (the scrape loop reports each kind), not failures of the
/// storage itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    /// The sample is older than the newest sample of its series.
    #[error("out of order sample")]
    OutOfOrder,
    /// The sample is outside the time range the storage accepts.
    #[error("out of bounds")]
    OutOfBounds,
    /// Same timestamp as the newest sample of the series, different value.
    #[error("duplicate sample for timestamp")]
    Duplicate,
    /// The label set is not acceptable (empty, or names not unique).
    #[error("invalid labels: {0}")]
    InvalidLabels(String),
    /// A configured limit (series count, memory) refused the sample.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The storage failed (I/O, closed).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The exemplar equals the newest one stored for its series (scrapes
    /// repeat exemplars; callers ignore this one silently).
    #[error("duplicate exemplar")]
    DuplicateExemplar,
    /// The exemplar is not newer than the newest one of its series.
    #[error("out of order exemplar")]
    OutOfOrderExemplar,
    /// The exemplar's labels are longer than [`EXEMPLAR_MAX_LABEL_SET_LENGTH`].
    #[error("label length for exemplar exceeds maximum of 128 UTF-8 characters")]
    ExemplarLabelLength,
    /// Exemplar storage is switched off (size 0).
    #[error("exemplar storage is disabled or max exemplars is less than or equal to 0")]
    ExemplarsDisabled,
}

/// The longest exemplar label set accepted, in UTF-8 characters of all
/// names and values together (OpenMetrics' limit, enforced as Prometheus does).
pub const EXEMPLAR_MAX_LABEL_SET_LENGTH: usize = 128;

/// An exemplar: a sample of a trace or event attached to a series sample
/// (OpenMetrics `# {trace_id="..."} value [timestamp]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The exemplar's own labels (e.g. `trace_id`).
    pub labels: Labels,
    /// Its value.
    pub value: f64,
    /// Its timestamp in ms (the scrape time when the exposition gave none).
    pub ts: Timestamp,
    /// Whether the exposition gave the timestamp.
    pub has_ts: bool,
}

impl Exemplar {
    /// Prometheus's equality of exemplars: same labels and value (`==`, so
    /// a NaN value is never equal), and the same timestamp when either has
    /// one (two without a timestamp are equal whatever the scrape time was).
    pub fn same_as(&self, o: &Exemplar) -> bool {
        if self.labels != o.labels {
            return false;
        }
        if (self.has_ts || o.has_ts) && self.ts != o.ts {
            return false;
        }
        self.value == o.value
    }
}

/// Exemplars of one series, as [`ExemplarQueryable::select_exemplars`]
/// returns them: the series' labels and its exemplars oldest first.
pub type SeriesExemplars = (Labels, Vec<Exemplar>);

/// A store of exemplars that can be searched (the exemplar storage of the
/// TSDB, behind Prometheus's `--enable-feature=exemplar-storage`).
pub trait ExemplarQueryable: Send + Sync {
    /// Exemplars with `start <= ts <= end` of the series matching at least
    /// one of `matcher_sets` (each set is ANDed), sorted by series labels.
    fn select_exemplars(
        &self,
        start: Timestamp,
        end: Timestamp,
        matcher_sets: &[Vec<Matcher>],
    ) -> Result<Vec<SeriesExemplars>, StorageError>;
}

/// A failure of the storage itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StorageError {
    /// An I/O error, described.
    #[error("i/o error: {0}")]
    Io(String),
    /// Data read back was not what was written.
    #[error("corruption: {0}")]
    Corruption(String),
    /// The storage is closed or shutting down.
    #[error("storage closed")]
    Closed,
    /// The operation is not supported by this storage.
    #[error("unsupported operation: {0}")]
    Unsupported(String),
    /// The caller ran out of a budget (samples, memory, time) while reading.
    #[error("{0}")]
    Limit(String),
}

/// A source of appenders. Thread-safe: many appenders may be open at once.
pub trait Appendable: Send + Sync {
    /// Starts a new append transaction.
    fn appender(&self) -> Box<dyn Appender + Send + '_>;
}

/// One append transaction. Not thread-safe; one owner.
///
/// Samples appended are invisible to queries until [`Appender::commit`].
/// Dropping an appender without committing rolls it back.
pub trait Appender {
    /// Adds a float sample. `series_ref` is a reference returned earlier by
    /// this storage for the same `labels`, or `0`; when it is valid the
    /// storage may skip looking the labels up. Returns the series' reference.
    ///
    /// `labels` must be sorted with unique names (a [`Labels`] always is) and
    /// include `__name__`. A rejected sample does not spoil the transaction:
    /// the caller may count the error and go on.
    fn append(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError>;

    /// Adds a native histogram sample (integer or float counts), with the
    /// same contract as [`Appender::append`]. Storages without histogram
    /// support answer [`StorageError::Unsupported`].
    fn append_histogram(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        t: Timestamp,
        h: HistogramValue,
    ) -> Result<SeriesRef, AppendError> {
        let _ = (series_ref, labels, t, h);
        Err(AppendError::Storage(StorageError::Unsupported(
            "native histograms are not supported by this storage".into(),
        )))
    }

    /// Attaches an exemplar to the series of `series_ref` (or `labels`),
    /// normally right after appending the sample it came with. It becomes
    /// visible on [`Appender::commit`]. Storages without exemplar support
    /// drop exemplars and answer `Ok` (the series reference given), as
    /// Prometheus does when exemplar storage is off.
    fn append_exemplar(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        e: Exemplar,
    ) -> Result<SeriesRef, AppendError> {
        let _ = (labels, e);
        Ok(series_ref)
    }

    /// Makes every accepted sample durable (as far as the storage offers) and
    /// visible. On error nothing of this transaction is kept.
    fn commit(self: Box<Self>) -> Result<(), StorageError>;

    /// Discards every sample of this transaction.
    fn rollback(self: Box<Self>);
}

/// Hints a query engine gives [`Querier::select`] so a storage can read less.
/// Storages may ignore them.
#[derive(Debug, Clone, Default)]
pub struct SelectHints {
    /// Earliest timestamp the caller needs (inclusive, ms).
    pub start: Timestamp,
    /// Latest timestamp the caller needs (inclusive, ms).
    pub end: Timestamp,
    /// Query step in ms, 0 for instant queries.
    pub step: i64,
    /// The function wrapping the selector, if any (`rate`, `series` for
    /// metadata-only calls...).
    pub func: Option<String>,
    /// The range of a range selector, in ms.
    pub range: i64,
}

/// A source of queriers over a time range.
pub trait Queryable: Send + Sync {
    /// A querier seeing samples with `mint <= t <= maxt`.
    fn querier(&self, mint: Timestamp, maxt: Timestamp) -> Result<Box<dyn Querier>, StorageError>;
}

/// Read access to a consistent view of the storage over a time range.
pub trait Querier: Send {
    /// Series whose labels satisfy every matcher (a matcher that accepts the
    /// empty string also accepts series without that label). With `sorted`,
    /// series come in [`Labels`] order. At least one matcher must not match
    /// the empty string, or the storage may return an error.
    fn select(
        &self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet>;

    /// Sorted distinct values of label `name` among series matching
    /// `matchers` (all series when empty).
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError>;

    /// Sorted distinct label names among series matching `matchers` (all
    /// series when empty).
    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError>;
}

/// A pull iterator over series.
pub trait SeriesSet: Send {
    /// The next series, or `None` at the end or on error (see [`SeriesSet::err`]).
    fn next(&mut self) -> Option<Series>;

    /// The error that ended iteration early, if any.
    fn err(&self) -> Option<StorageError> {
        None
    }
}

/// One series: its labels and an iterator over its samples in time order.
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// Its samples within the querier's range.
    pub samples: Box<dyn SampleIter>,
}

/// An iterator over one series' samples in ascending time order. Iterating
/// must not allocate per sample.
pub trait SampleIter: Send {
    /// The next sample.
    fn next(&mut self) -> Option<Sample>;

    /// Advances to the first sample with `t >= ts` and returns it. May be
    /// called repeatedly with growing `ts`; never moves backwards (if the
    /// current sample already satisfies `t >= ts` it is returned again).
    fn seek(&mut self, ts: Timestamp) -> Option<Sample>;

    /// The native histogram of the sample last returned by
    /// [`SampleIter::next`] or [`SampleIter::seek`], when that sample is a
    /// histogram sample; `None` for float samples. Integer histograms are
    /// handed out converted to float counts.
    ///
    /// For a histogram sample the returned [`Sample`]'s `v` is the
    /// histogram's `sum`, so a stale histogram (sum = the stale marker) is
    /// recognised by [`pharos_model::is_stale_nan`] like a stale float.
    /// Float-only consumers must check this method and skip such samples.
    fn histogram(&self) -> Option<&FloatHistogram> {
        None
    }

    /// The error that ended iteration early, if any.
    fn err(&self) -> Option<StorageError> {
        None
    }
}

/// A [`SeriesSet`] over a vector of already-materialised series. Useful for
/// tests and for storages that collect before returning.
pub struct VecSeriesSet {
    items: std::vec::IntoIter<Series>,
    err: Option<StorageError>,
}

impl VecSeriesSet {
    /// Wraps `series`, yielded in the given order.
    pub fn new(series: Vec<Series>) -> Self {
        VecSeriesSet {
            items: series.into_iter(),
            err: None,
        }
    }

    /// A set that yields nothing and reports `err`.
    pub fn failed(err: StorageError) -> Self {
        VecSeriesSet {
            items: Vec::new().into_iter(),
            err: Some(err),
        }
    }
}

impl SeriesSet for VecSeriesSet {
    fn next(&mut self) -> Option<Series> {
        self.items.next()
    }
    fn err(&self) -> Option<StorageError> {
        self.err.clone()
    }
}

/// A [`SampleIter`] over an owned vector of samples.
pub struct VecSampleIter {
    samples: Vec<Sample>,
    pos: usize,
    started: bool,
}

impl VecSampleIter {
    /// Iterates `samples`, which must be in ascending time order.
    pub fn new(samples: Vec<Sample>) -> Self {
        VecSampleIter {
            samples,
            pos: 0,
            started: false,
        }
    }
}

impl SampleIter for VecSampleIter {
    fn next(&mut self) -> Option<Sample> {
        if self.started {
            self.pos += 1;
        }
        self.started = true;
        self.samples.get(self.pos).copied()
    }

    fn seek(&mut self, ts: Timestamp) -> Option<Sample> {
        if !self.started {
            self.started = true;
        }
        let rest = self.samples.get(self.pos..).unwrap_or(&[]);
        self.pos += rest.partition_point(|s| s.t < ts);
        self.samples.get(self.pos).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_sample_iter_seek_and_next() {
        let s: Vec<Sample> = (0..5)
            .map(|i| Sample {
                t: i * 10,
                v: i as f64,
            })
            .collect();
        let mut it = VecSampleIter::new(s.clone());
        assert_eq!(it.seek(15).map(|s| s.t), Some(20));
        assert_eq!(it.seek(15).map(|s| s.t), Some(20));
        assert_eq!(it.next().map(|s| s.t), Some(30));
        assert_eq!(it.seek(100), None);
        let mut it = VecSampleIter::new(s);
        assert_eq!(it.next().map(|s| s.t), Some(0));
        assert_eq!(it.next().map(|s| s.t), Some(10));
    }
}
