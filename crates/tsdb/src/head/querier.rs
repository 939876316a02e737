//! Reading the head: querier, series set and sample iterator.

use std::collections::BTreeSet;
use std::sync::Arc;

use pharos_model::{FloatHistogram, Matcher, Sample, Timestamp};
use pharos_storage::{
    Querier, SampleIter, SelectHints, Series, SeriesSet, StorageError, VecSeriesSet,
};

use super::HeadInner;
use super::series::MemSeries;
use crate::chunk_samples::ChunkSamples;
use crate::head_chunks::ChunkBytes;

/// A querier over `[mint, maxt]` of the head.
pub(crate) struct HeadQuerier {
    pub(crate) head: Arc<HeadInner>,
    pub(crate) mint: Timestamp,
    pub(crate) maxt: Timestamp,
}

impl HeadQuerier {
    /// True when the head holds data that may fall in `[mint, maxt]`.
    fn overlaps(&self, mint: Timestamp, maxt: Timestamp) -> bool {
        match self.head.time_range() {
            Some((lo, hi)) => mint <= maxt && lo <= maxt && mint <= hi,
            None => false,
        }
    }

    fn matching_series(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let refs = self.head.postings.read().postings_for_matchers(matchers);
        refs.into_iter()
            .filter_map(|r| self.head.series.get_by_ref(r))
            .collect()
    }

    /// Series matching `matchers` that hold a sample in the querier's range.
    fn matching_series_in_range(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let mut v = self.matching_series(matchers);
        v.retain(|s| {
            s.state
                .lock()
                .time_range()
                .is_some_and(|(lo, hi)| lo <= self.maxt && self.mint <= hi)
        });
        v
    }
}

impl Querier for HeadQuerier {
    fn select(
        &self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet> {
        let (mut mint, mut maxt) = (self.mint, self.maxt);
        // Hints narrow the range; all-zero hints (the Default) carry no range.
        if let Some(h) = hints
            && h.start <= h.end
            && (h.start, h.end) != (0, 0)
        {
            mint = mint.max(h.start);
            maxt = maxt.min(h.end);
        }
        if !self.overlaps(mint, maxt) {
            return Box::new(VecSeriesSet::new(Vec::new()));
        }
        let mut series = self.matching_series(matchers);
        if sorted {
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Box::new(HeadSeriesSet {
            series: series.into_iter(),
            mint,
            maxt,
        })
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if !self.overlaps(self.mint, self.maxt) {
            return Ok(Vec::new());
        }
        if matchers.is_empty() {
            return Ok(self.head.postings.read().label_values(name));
        }
        let set: BTreeSet<String> = self
            .matching_series_in_range(matchers)
            .iter()
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        Ok(set.into_iter().collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if !self.overlaps(self.mint, self.maxt) {
            return Ok(Vec::new());
        }
        if matchers.is_empty() {
            return Ok(self.head.postings.read().label_names());
        }
        let mut set: BTreeSet<&str> = BTreeSet::new();
        let series = self.matching_series_in_range(matchers);
        for s in &series {
            set.extend(s.labels.iter().map(|l| l.name));
        }
        Ok(set.into_iter().map(str::to_string).collect())
    }
}

/// Series of a select; each series' chunks are snapshotted when it is
/// reached, so memory stays proportional to one series at a time.
struct HeadSeriesSet {
    series: std::vec::IntoIter<Arc<MemSeries>>,
    mint: Timestamp,
    maxt: Timestamp,
}

/// A chunk as a reader sees it.
struct ChunkView {
    min_t: Timestamp,
    max_t: Timestamp,
    data: ChunkBytes,
}

impl SeriesSet for HeadSeriesSet {
    fn next(&mut self) -> Option<Series> {
        for s in self.series.by_ref() {
            let chunks = snapshot(&s, self.mint, self.maxt);
            if chunks.is_empty() {
                continue;
            }
            let mut it = HeadSampleIter {
                chunks,
                next_chunk: 0,
                cur_max_t: i64::MIN,
                it: None,
                cur: None,
                primed: false,
                mint: self.mint,
                maxt: self.maxt,
                done: false,
                err: None,
            };
            // Chunks can overlap the range without a sample in it: decode up
            // to the first sample so such series are skipped.
            if it.advance(self.mint).is_some() {
                it.primed = true;
            } else if it.err.is_none() {
                continue;
            }
            return Some(Series {
                labels: s.labels.clone(),
                samples: Box::new(it),
            });
        }
        None
    }
}

/// The chunks of `s` overlapping `[mint, maxt]`: closed chunks are shared,
/// the open one is copied (it keeps changing).
fn snapshot(s: &MemSeries, mint: Timestamp, maxt: Timestamp) -> Vec<ChunkView> {
    let st = s.state.lock();
    let first = st.closed.partition_point(|c| c.max_t < mint);
    let mut out: Vec<ChunkView> = st.closed[first..]
        .iter()
        .take_while(|c| c.min_t <= maxt)
        .map(|c| ChunkView {
            min_t: c.min_t,
            max_t: c.max_t,
            data: c.data.clone(),
        })
        .collect();
    if let Some(h) = &st.head
        && h.min_t <= maxt
        && h.max_t() >= mint
    {
        out.push(ChunkView {
            min_t: h.min_t,
            max_t: h.max_t(),
            data: ChunkBytes::Heap(h.app.to_bytes(), h.app.encoding()),
        });
    }
    out
}

/// Decodes a series' chunks lazily, restricted to `[mint, maxt]`.
struct HeadSampleIter {
    chunks: Vec<ChunkView>,
    next_chunk: usize,
    /// Newest timestamp of the chunk `it` decodes.
    cur_max_t: Timestamp,
    it: Option<ChunkSamples<ChunkBytes>>,
    cur: Option<Sample>,
    /// `cur` was decoded ahead and not handed out yet.
    primed: bool,
    mint: Timestamp,
    maxt: Timestamp,
    done: bool,
    err: Option<StorageError>,
}

impl HeadSampleIter {
    fn finish(&mut self) -> Option<Sample> {
        self.done = true;
        self.it = None;
        self.cur = None;
        None
    }

    /// The next decoded sample at or after `ts`, regardless of `cur`.
    fn advance(&mut self, ts: Timestamp) -> Option<Sample> {
        let ts = ts.max(self.mint);
        loop {
            if self.it.is_none() {
                // Skip chunks that end before `ts` without decoding them.
                while self
                    .chunks
                    .get(self.next_chunk)
                    .is_some_and(|c| c.max_t < ts)
                {
                    self.next_chunk += 1;
                }
                let Some(c) = self.chunks.get(self.next_chunk) else {
                    return self.finish();
                };
                if c.min_t > self.maxt {
                    return self.finish();
                }
                self.cur_max_t = c.max_t;
                match ChunkSamples::open(c.data.encoding(), c.data.clone()) {
                    Ok(it) => self.it = Some(it),
                    Err(e) => {
                        self.err = Some(StorageError::Corruption(e.to_string()));
                        return self.finish();
                    }
                }
                self.next_chunk += 1;
            }
            let Some(it) = self.it.as_mut() else {
                continue;
            };
            let got = if self.cur_max_t < ts {
                None
            } else {
                it.seek(ts)
            };
            match got {
                Some(s) if s.t > self.maxt => return self.finish(),
                Some(s) => {
                    // Position the chunk iterator past `s` for the next call.
                    self.cur = Some(s);
                    return Some(s);
                }
                None => {
                    if let Some(e) = it.err() {
                        self.err = Some(StorageError::Corruption(e.to_string()));
                        return self.finish();
                    }
                    self.it = None;
                }
            }
        }
    }
}

impl SampleIter for HeadSampleIter {
    fn next(&mut self) -> Option<Sample> {
        if self.done {
            return None;
        }
        if std::mem::take(&mut self.primed) {
            return self.cur;
        }
        let ts = match self.cur {
            Some(c) if c.t == Timestamp::MAX => return self.finish(),
            Some(c) => c.t + 1,
            None => self.mint,
        };
        self.advance(ts)
    }

    fn seek(&mut self, ts: Timestamp) -> Option<Sample> {
        if self.done {
            return None;
        }
        self.primed = false;
        if let Some(c) = self.cur
            && c.t >= ts
        {
            return Some(c);
        }
        self.advance(ts)
    }

    fn histogram(&self) -> Option<&FloatHistogram> {
        if self.done {
            return None;
        }
        self.it.as_ref()?.histogram()
    }

    fn err(&self) -> Option<StorageError> {
        self.err.clone()
    }
}
