//! Series of the head and the striped maps that find them.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use pharos_model::{Labels, Timestamp};

use crate::chunkenc::XorAppender;
use crate::head_chunks::ChunkBytes;

/// Buffer size of a series' first chunk.
const INITIAL_CHUNK_CAPACITY: usize = 32;
/// Room added to the previous chunk's size when sizing the next one.
const CHUNK_SLACK: usize = 16;
/// Largest buffer reserved up front.
const MAX_CHUNK_CAPACITY: usize = 1024;

/// A closed, immutable chunk: shared with queriers without copying.
#[derive(Clone)]
pub(crate) struct ClosedChunk {
    pub(crate) min_t: Timestamp,
    pub(crate) max_t: Timestamp,
    pub(crate) data: ChunkBytes,
}

/// The chunk samples are appended to.
pub(crate) struct HeadChunk {
    pub(crate) min_t: Timestamp,
    /// First timestamp that no longer belongs in this chunk: the end of the
    /// chunk-range window holding `min_t`, so chunks never straddle the
    /// boundaries blocks will later be cut at.
    pub(crate) end: Timestamp,
    pub(crate) app: XorAppender,
}

impl HeadChunk {
    fn new(t: Timestamp, chunk_range: i64, capacity: usize) -> HeadChunk {
        let end = if chunk_range > 0 {
            t.div_euclid(chunk_range)
                .checked_add(1)
                .and_then(|k| k.checked_mul(chunk_range))
                .unwrap_or(i64::MAX)
        } else {
            i64::MAX
        };
        HeadChunk {
            min_t: t,
            end,
            app: XorAppender::with_capacity(capacity),
        }
    }

    pub(crate) fn max_t(&self) -> Timestamp {
        self.app.last_t()
    }

    fn close(self) -> ClosedChunk {
        let max_t = self.app.last_t();
        ClosedChunk {
            min_t: self.min_t,
            max_t,
            data: ChunkBytes::Heap(self.app.bytes().collect()),
        }
    }
}

/// How a sample relates to a series' newest sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Newer: append it.
    Ok,
    /// Same timestamp and identical value bits: nothing to do.
    NoOp,
    /// Older than the newest sample.
    OutOfOrder,
    /// Same timestamp, different value.
    Duplicate,
}

fn check_against(last_t: Timestamp, last_v: u64, t: Timestamp, v: u64) -> Check {
    if t > last_t {
        Check::Ok
    } else if t < last_t {
        Check::OutOfOrder
    } else if v == last_v {
        Check::NoOp
    } else {
        Check::Duplicate
    }
}

/// Mutable part of a series, behind its mutex.
pub(crate) struct SeriesState {
    /// Closed chunks, oldest first; all older than `head`.
    pub(crate) closed: Vec<ClosedChunk>,
    /// The open chunk; `None` until the first sample is committed (and then
    /// never again while the series lives).
    pub(crate) head: Option<HeadChunk>,
    /// Samples buffered by open appenders; a series with pending samples is
    /// never garbage-collected.
    pub(crate) pending_samples: u32,
    /// The appender transaction that last buffered a sample here, and that
    /// sample, so one transaction's samples are validated against each other.
    pub(crate) pending_txn: u64,
    pub(crate) pending_t: Timestamp,
    pub(crate) pending_v: u64,
    /// Set (under the stripe and series locks) when the series has been
    /// taken out of the maps; appenders holding it must look again.
    pub(crate) removed: bool,
    /// Whether the series is in the postings index (set by the first commit
    /// that gives it a sample).
    pub(crate) indexed: bool,
}

impl SeriesState {
    /// Checks a sample against the committed newest sample and, when the
    /// same transaction buffered one, against that too.
    pub(crate) fn check(&self, txn: u64, t: Timestamp, v: u64) -> Check {
        let committed = match &self.head {
            Some(h) => check_against(h.app.last_t(), h.app.last_v().to_bits(), t, v),
            None => Check::Ok,
        };
        let pending = if txn != 0 && self.pending_txn == txn {
            check_against(self.pending_t, self.pending_v, t, v)
        } else {
            Check::Ok
        };
        use Check::*;
        match (committed, pending) {
            (OutOfOrder, _) | (_, OutOfOrder) => OutOfOrder,
            (Duplicate, _) | (_, Duplicate) => Duplicate,
            (NoOp, _) | (_, NoOp) => NoOp,
            (Ok, Ok) => Ok,
        }
    }

    /// Appends a committed sample, cutting a new chunk when the open one is
    /// full or the sample crosses the chunk-range boundary. Returns whether
    /// a chunk was created, or `None` when the sample was not appended.
    pub(crate) fn append(
        &mut self,
        t: Timestamp,
        v: f64,
        max_samples: u16,
        chunk_range: i64,
    ) -> Result<bool, Check> {
        match self.check(0, t, v.to_bits()) {
            Check::Ok => {}
            other => return Err(other),
        }
        let cut = match &self.head {
            None => true,
            Some(h) => h.app.num_samples() >= max_samples.max(1) || t >= h.end,
        };
        if cut {
            if let Some(old) = self.head.take() {
                // Grow by half rather than doubling from 4: a series closes
                // one chunk every half hour or so, and most hold few.
                if self.closed.len() == self.closed.capacity() {
                    self.closed.reserve_exact((self.closed.len() / 2).max(1));
                }
                self.closed.push(old.close());
            }
            // Size the new chunk like the last full one: one allocation
            // instead of a series of reallocations for steady series.
            let capacity = self
                .closed
                .last()
                .map_or(INITIAL_CHUNK_CAPACITY, |c| c.data.len() + CHUNK_SLACK)
                .min(MAX_CHUNK_CAPACITY);
            self.head = Some(HeadChunk::new(t, chunk_range, capacity));
        }
        let Some(h) = self.head.as_mut() else {
            panic!("BUG: head chunk missing right after it was ensured");
        };
        if let Err(e) = h.app.append(t, v) {
            panic!("BUG: head chunk refused a sample below its cut size: {e}");
        }
        Ok(cut)
    }

    /// Time range of the committed samples.
    pub(crate) fn time_range(&self) -> Option<(Timestamp, Timestamp)> {
        let h = self.head.as_ref()?;
        let min = self.closed.first().map_or(h.min_t, |c| c.min_t);
        Some((min, h.max_t()))
    }

    /// Number of chunks held (closed plus open).
    pub(crate) fn num_chunks(&self) -> usize {
        self.closed.len() + usize::from(self.head.is_some())
    }
}

/// One series of the head.
pub(crate) struct MemSeries {
    /// Stable reference, never reused while the process lives.
    pub(crate) sref: u64,
    /// The label set, sharing the caller's buffer.
    pub(crate) labels: Labels,
    pub(crate) state: Mutex<SeriesState>,
}

impl MemSeries {
    fn new(sref: u64, labels: Labels) -> MemSeries {
        MemSeries {
            sref,
            labels,
            state: Mutex::new(SeriesState {
                closed: Vec::new(),
                head: None,
                pending_samples: 0,
                pending_txn: 0,
                pending_t: 0,
                pending_v: 0,
                removed: false,
                indexed: false,
            }),
        }
    }
}

/// Hasher for keys that are already integers: a folded multiply, which mixes
/// both the low bits (hash-table buckets) and the high bits (hashbrown's
/// tags). Keys within one stripe share their low bits, so identity hashing
/// would be a disaster.
#[derive(Default, Clone, Copy)]
pub(crate) struct U64Hash;

/// The hasher built by [`U64Hash`].
#[derive(Default)]
pub(crate) struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
    fn finish(&self) -> u64 {
        let m = u128::from(self.0) * 0x9E37_79B9_7F4A_7C15u128;
        (m as u64) ^ ((m >> 64) as u64)
    }
}

impl BuildHasher for U64Hash {
    type Hasher = U64Hasher;
    fn build_hasher(&self) -> U64Hasher {
        U64Hasher(0)
    }
}

/// Slots per segment of a [`RefIndex`].
const SEGMENT: u64 = 64;

struct Segment {
    live: u32,
    slots: [Option<Arc<MemSeries>>; SEGMENT as usize],
}

/// One stripe's series by reference: a directory of fixed-size segments
/// indexed directly by `ref >> stripe_bits`.
///
/// References are handed out in increasing order and scrape loops append in
/// roughly that order, so lookups walk memory sequentially, where a hash
/// table would take a cache miss per sample (measured: 38% of append time).
/// A segment is freed when its last series goes, and empty segments at
/// either end of the directory are dropped, so churn costs at most one
/// 8-byte directory entry per 64 references of a stripe.
#[derive(Default)]
struct RefIndex {
    /// Segment number of `dir[0]`.
    base: u64,
    dir: VecDeque<Option<Box<Segment>>>,
}

impl RefIndex {
    fn locate(&self, idx: u64) -> Option<(usize, usize)> {
        let seg = idx / SEGMENT;
        let d = seg.checked_sub(self.base)?;
        Some((usize::try_from(d).ok()?, (idx % SEGMENT) as usize))
    }

    fn get(&self, idx: u64) -> Option<&Arc<MemSeries>> {
        let (d, slot) = self.locate(idx)?;
        self.dir.get(d)?.as_ref()?.slots.get(slot)?.as_ref()
    }

    fn insert(&mut self, idx: u64, s: Arc<MemSeries>) {
        let seg = idx / SEGMENT;
        if self.dir.is_empty() {
            self.base = seg;
        }
        while seg < self.base {
            self.dir.push_front(None);
            self.base -= 1;
        }
        let d = (seg - self.base) as usize;
        while self.dir.len() <= d {
            self.dir.push_back(None);
        }
        if let Some(entry) = self.dir.get_mut(d) {
            let segment = entry.get_or_insert_with(|| {
                Box::new(Segment {
                    live: 0,
                    slots: std::array::from_fn(|_| None),
                })
            });
            if let Some(slot) = segment.slots.get_mut((idx % SEGMENT) as usize)
                && slot.replace(s).is_none()
            {
                segment.live += 1;
            }
        }
    }

    fn remove(&mut self, idx: u64) {
        let Some((d, slot)) = self.locate(idx) else {
            return;
        };
        if let Some(entry) = self.dir.get_mut(d)
            && let Some(segment) = entry
            && segment.slots.get_mut(slot).and_then(Option::take).is_some()
        {
            segment.live -= 1;
            if segment.live == 0 {
                *entry = None;
            }
        }
        while matches!(self.dir.front(), Some(None)) {
            self.dir.pop_front();
            self.base += 1;
        }
        while matches!(self.dir.back(), Some(None)) {
            self.dir.pop_back();
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.dir
            .iter()
            .flatten()
            .flat_map(|seg| seg.slots.iter().flatten())
    }
}

#[derive(Default)]
struct HashMaps {
    /// Label hash -> series; the common, collision-free case.
    unique: HashMap<u64, Arc<MemSeries>, U64Hash>,
    /// Further series whose labels hash like the one in `unique`.
    conflicts: HashMap<u64, Vec<Arc<MemSeries>>, U64Hash>,
}

impl HashMaps {
    fn get(&self, hash: u64, labels: &Labels) -> Option<&Arc<MemSeries>> {
        let first = self.unique.get(&hash)?;
        if first.labels == *labels {
            return Some(first);
        }
        self.conflicts
            .get(&hash)?
            .iter()
            .find(|s| s.labels == *labels)
    }

    fn insert(&mut self, hash: u64, s: Arc<MemSeries>) {
        match self.unique.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.conflicts.entry(hash).or_default().push(s);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(s);
            }
        }
    }

    fn remove(&mut self, hash: u64, s: &Arc<MemSeries>) {
        let is_unique = self.unique.get(&hash).is_some_and(|u| Arc::ptr_eq(u, s));
        if is_unique {
            self.unique.remove(&hash);
            if let Some(c) = self.conflicts.get_mut(&hash) {
                if let Some(next) = c.pop() {
                    self.unique.insert(hash, next);
                }
                if c.is_empty() {
                    self.conflicts.remove(&hash);
                }
            }
        } else if let Some(c) = self.conflicts.get_mut(&hash) {
            c.retain(|x| !Arc::ptr_eq(x, s));
            if c.is_empty() {
                self.conflicts.remove(&hash);
            }
        }
    }
}

/// Padding to a cache line so neighbouring stripes' locks do not share one.
#[repr(align(64))]
struct Padded<T>(T);

/// The series maps, striped so appenders on different series rarely meet on
/// a lock: one set of stripes by reference (the append hot path), one by
/// label hash (series creation and lookup by labels). Lock order: hash
/// stripe, then series mutex, then ref stripe.
pub(crate) struct StripeSeries {
    by_ref: Box<[Padded<RwLock<RefIndex>>]>,
    by_hash: Box<[Padded<RwLock<HashMaps>>]>,
    mask: u64,
    /// log2 of the stripe count.
    shift: u32,
}

impl StripeSeries {
    /// `stripes` is rounded up to a power of two.
    pub(crate) fn new(stripes: usize) -> StripeSeries {
        let n = stripes.clamp(1, 1 << 16).next_power_of_two();
        StripeSeries {
            by_ref: (0..n)
                .map(|_| Padded(RwLock::new(RefIndex::default())))
                .collect(),
            by_hash: (0..n)
                .map(|_| Padded(RwLock::new(HashMaps::default())))
                .collect(),
            mask: n as u64 - 1,
            shift: n.trailing_zeros(),
        }
    }

    fn ref_stripe(&self, r: u64) -> &RwLock<RefIndex> {
        &self.by_ref[(r & self.mask) as usize].0
    }

    /// Position of reference `r` inside its stripe's index.
    fn ref_slot(&self, r: u64) -> u64 {
        r >> self.shift
    }

    fn hash_stripe(&self, h: u64) -> &RwLock<HashMaps> {
        &self.by_hash[(h & self.mask) as usize].0
    }

    /// The series with reference `r`.
    pub(crate) fn get_by_ref(&self, r: u64) -> Option<Arc<MemSeries>> {
        self.ref_stripe(r).read().get(self.ref_slot(r)).cloned()
    }

    /// The series with `labels` (whose `hash64()` is `hash`), creating it
    /// with a reference from `new_ref` if absent. The flag tells whether it
    /// was created.
    pub(crate) fn get_or_create(
        &self,
        hash: u64,
        labels: &Labels,
        new_ref: impl FnOnce() -> u64,
    ) -> (Arc<MemSeries>, bool) {
        let stripe = self.hash_stripe(hash);
        if let Some(s) = stripe.read().get(hash, labels) {
            return (s.clone(), false);
        }
        let mut maps = stripe.write();
        if let Some(s) = maps.get(hash, labels) {
            return (s.clone(), false);
        }
        let sref = new_ref();
        let s = Arc::new(MemSeries::new(sref, labels.clone()));
        maps.insert(hash, s.clone());
        self.ref_stripe(sref)
            .write()
            .insert(self.ref_slot(sref), s.clone());
        (s, true)
    }

    /// Removes `s` if it holds no sample and none is pending. Returns
    /// whether it was removed.
    pub(crate) fn remove_if_empty(&self, s: &Arc<MemSeries>) -> bool {
        let hash = s.labels.hash64();
        let mut maps = self.hash_stripe(hash).write();
        {
            let mut st = s.state.lock();
            if st.removed || st.pending_samples > 0 || st.head.is_some() {
                return false;
            }
            st.removed = true;
        }
        maps.remove(hash, s);
        self.ref_stripe(s.sref)
            .write()
            .remove(self.ref_slot(s.sref));
        true
    }

    /// Visits every series with its state locked; those for which `f`
    /// returns true are marked removed and taken out of the maps. Returns
    /// them.
    pub(crate) fn gc(
        &self,
        mut f: impl FnMut(&MemSeries, &mut SeriesState) -> bool,
    ) -> Vec<Arc<MemSeries>> {
        let mut removed = Vec::new();
        for stripe in self.by_hash.iter() {
            let mut maps = stripe.0.write();
            let mut gone = Vec::new();
            for s in maps
                .unique
                .values()
                .chain(maps.conflicts.values().flatten())
            {
                let mut st = s.state.lock();
                if !st.removed && f(s, &mut st) {
                    st.removed = true;
                    gone.push(s.clone());
                }
            }
            for s in &gone {
                maps.remove(s.labels.hash64(), s);
                self.ref_stripe(s.sref)
                    .write()
                    .remove(self.ref_slot(s.sref));
            }
            removed.extend(gone);
        }
        removed
    }

    /// Calls `f` on every series (no lock held on the series).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<MemSeries>)) {
        for stripe in self.by_ref.iter() {
            for s in stripe.0.read().iter() {
                f(s);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_collisions_are_kept_apart() {
        let st = StripeSeries::new(4);
        let a = Labels::from_pairs(&[("a", "1")]);
        let b = Labels::from_pairs(&[("a", "2")]);
        let c = Labels::from_pairs(&[("a", "3")]);
        let mut next = 0;
        // Force one hash for all three.
        let (sa, ca) = st.get_or_create(7, &a, || {
            next += 1;
            next
        });
        let (sb, cb) = st.get_or_create(7, &b, || {
            next += 1;
            next
        });
        let (sc, _) = st.get_or_create(7, &c, || {
            next += 1;
            next
        });
        assert!(ca && cb);
        let (sa2, ca2) = st.get_or_create(7, &a, || 99);
        assert!(!ca2 && Arc::ptr_eq(&sa, &sa2));
        assert_eq!(st.get_by_ref(sb.sref).unwrap().labels, b);
        // Remove the unique entry: a conflict takes its place.
        let mut maps = st.hash_stripe(7).write();
        maps.remove(7, &sa);
        assert!(maps.get(7, &a).is_none());
        assert!(Arc::ptr_eq(maps.get(7, &b).unwrap(), &sb));
        assert!(Arc::ptr_eq(maps.get(7, &c).unwrap(), &sc));
        maps.remove(7, &sc);
        maps.remove(7, &sb);
        assert!(maps.unique.is_empty() && maps.conflicts.is_empty());
    }

    #[test]
    fn cuts_on_count_and_range() {
        let s = MemSeries::new(1, Labels::from_pairs(&[("a", "1")]));
        let mut st = s.state.lock();
        let mut cuts = 0;
        for i in 0..250 {
            if st.append(i * 10, 1.0, 40, 1000).unwrap() {
                cuts += 1;
            }
        }
        // Windows of 1000 ms hold 100, 100 and 50 samples, cut every 40:
        // 3 + 3 + 2 chunks.
        assert_eq!(cuts, 8);
        assert!(st.closed.iter().all(|c| c.min_t / 1000 == c.max_t / 1000));
        assert_eq!(st.append(0, 1.0, 40, 1000), Err(Check::OutOfOrder));
        assert_eq!(st.append(2490, 1.0, 40, 1000), Err(Check::NoOp));
        assert_eq!(st.append(2490, 2.0, 40, 1000), Err(Check::Duplicate));
        drop(st);
        let s = MemSeries::new(2, Labels::from_pairs(&[("a", "1")]));
        let mut st = s.state.lock();
        for i in 0..250 {
            st.append(i, 1.0, 120, 0).unwrap();
        }
        assert_eq!(st.closed.len(), 2);
        assert_eq!(st.num_chunks(), 3);
        assert_eq!(st.time_range(), Some((0, 249)));
    }

    #[test]
    fn ref_index_segments_come_and_go() {
        let mk = |r| Arc::new(MemSeries::new(r, Labels::from_pairs(&[("a", "1")])));
        let mut ix = RefIndex::default();
        ix.insert(200, mk(200));
        ix.insert(5, mk(5)); // below the first segment: directory grows forward
        ix.insert(70, mk(70));
        assert_eq!(ix.get(5).unwrap().sref, 5);
        assert_eq!(ix.get(70).unwrap().sref, 70);
        assert_eq!(ix.get(200).unwrap().sref, 200);
        assert!(ix.get(6).is_none() && ix.get(1 << 40).is_none());
        assert_eq!(ix.iter().count(), 3);
        ix.remove(5);
        assert_eq!((ix.base, ix.dir.len()), (1, 3));
        ix.remove(200);
        assert_eq!((ix.base, ix.dir.len()), (1, 1));
        ix.remove(70);
        ix.remove(70);
        assert!(ix.dir.is_empty());
        assert!(ix.get(70).is_none());
    }

    #[test]
    fn series_stays_small() {
        // Memory per series is a budget (< 1 KiB with labels, maps, postings
        // and samples): keep the struct from creeping.
        assert!(std::mem::size_of::<MemSeries>() <= 176);
        // 40: the bytes are on the heap or in a memory-mapped file.
        assert!(std::mem::size_of::<ClosedChunk>() <= 40);
    }
}
