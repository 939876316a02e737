//! Reading one chunk of any encoding as samples: the piece the head's and
//! the blocks' sample iterators share.
//!
//! XOR chunks are decoded lazily, sample by sample, straight from the
//! (shared or memory-mapped) bytes. Histogram chunks are decoded whole when
//! the iterator enters them, into float histograms (integer counts are
//! converted on read, as the storage API promises): the chunk iterators
//! borrow their bytes, a histogram chunk holds few samples (Prometheus cuts
//! them at about 1 KiB), and decoding them in one go keeps the iterator
//! free of self-references.

use pharos_model::{FloatHistogram, Sample, Timestamp};

use crate::TsdbError;
use crate::chunkenc::{
    ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, ENCODING_XOR, FloatHistogramIterator,
    HistogramIterator, XorIterator,
};

/// The samples of one chunk, positioned by [`ChunkSamples::seek`].
pub(crate) enum ChunkSamples<B> {
    /// A float chunk, decoded lazily.
    Xor(XorIterator<B>),
    /// A histogram chunk, decoded up front.
    Hist(HistSamples),
}

/// The decoded samples of a histogram chunk and the position in them.
pub(crate) struct HistSamples {
    samples: Vec<(Timestamp, FloatHistogram)>,
    /// Index of the current sample plus one (0: before the first).
    pos: usize,
    err: Option<TsdbError>,
}

/// Decodes every sample of a histogram chunk (either encoding) as float
/// histograms. On a decoding error the samples before it are kept and the
/// error is returned alongside.
pub(crate) fn decode_histograms(
    encoding: u8,
    data: &[u8],
) -> (Vec<(Timestamp, FloatHistogram)>, Option<TsdbError>) {
    let mut out = Vec::new();
    let mut fh = FloatHistogram::default();
    match encoding {
        ENCODING_HISTOGRAM => {
            let mut it = HistogramIterator::new(data);
            out.reserve(usize::from(it.num_samples()));
            while let Some(t) = it.next_float_into(&mut fh) {
                out.push((t, fh.clone()));
            }
            (out, it.err().cloned())
        }
        ENCODING_FLOAT_HISTOGRAM => {
            let mut it = FloatHistogramIterator::new(data);
            out.reserve(usize::from(it.num_samples()));
            while let Some(t) = it.next_into(&mut fh) {
                out.push((t, fh.clone()));
            }
            (out, it.err().cloned())
        }
        other => (
            out,
            Some(TsdbError::CorruptChunk(format!(
                "chunk encoding {other} is not a histogram encoding"
            ))),
        ),
    }
}

impl<B: AsRef<[u8]>> ChunkSamples<B> {
    /// Starts reading a chunk of encoding `encoding`.
    pub(crate) fn open(encoding: u8, data: B) -> Result<ChunkSamples<B>, TsdbError> {
        match encoding {
            ENCODING_XOR => Ok(ChunkSamples::Xor(XorIterator::new(data))),
            ENCODING_HISTOGRAM | ENCODING_FLOAT_HISTOGRAM => {
                let (samples, err) = decode_histograms(encoding, data.as_ref());
                Ok(ChunkSamples::Hist(HistSamples {
                    samples,
                    pos: 0,
                    err,
                }))
            }
            other => Err(TsdbError::CorruptChunk(format!(
                "chunk encoding {other} is not supported"
            ))),
        }
    }

    /// Like [`ChunkSamples::open`] over borrowed bytes: `own` makes the
    /// XOR iterator's copy; histogram chunks are decoded from `data` and
    /// need none.
    pub(crate) fn open_with(
        encoding: u8,
        data: &[u8],
        own: impl FnOnce(&[u8]) -> B,
    ) -> Result<ChunkSamples<B>, TsdbError> {
        match encoding {
            ENCODING_XOR => Ok(ChunkSamples::Xor(XorIterator::new(own(data)))),
            ENCODING_HISTOGRAM | ENCODING_FLOAT_HISTOGRAM => {
                let (samples, err) = decode_histograms(encoding, data);
                Ok(ChunkSamples::Hist(HistSamples {
                    samples,
                    pos: 0,
                    err,
                }))
            }
            other => Err(TsdbError::CorruptChunk(format!(
                "chunk encoding {other} is not supported"
            ))),
        }
    }

    /// Advances to the first sample with `t >= ts` and returns it (a
    /// histogram sample as `v` = its sum); returns the current sample again
    /// if it already qualifies. Never moves back.
    pub(crate) fn seek(&mut self, ts: Timestamp) -> Option<Sample> {
        match self {
            ChunkSamples::Xor(it) => it.seek(ts),
            ChunkSamples::Hist(h) => {
                if h.pos == 0 {
                    h.pos = 1;
                }
                while h.samples.get(h.pos - 1).is_some_and(|s| s.0 < ts) {
                    h.pos += 1;
                }
                let (t, fh) = h.samples.get(h.pos - 1)?;
                Some(Sample { t: *t, v: fh.sum })
            }
        }
    }

    /// The histogram of the current sample (None in float chunks).
    pub(crate) fn histogram(&self) -> Option<&FloatHistogram> {
        match self {
            ChunkSamples::Xor(_) => None,
            ChunkSamples::Hist(h) => h
                .pos
                .checked_sub(1)
                .and_then(|i| h.samples.get(i))
                .map(|s| &s.1),
        }
    }

    /// The error that ended the chunk early, once [`ChunkSamples::seek`]
    /// has returned `None`.
    pub(crate) fn err(&self) -> Option<&TsdbError> {
        match self {
            ChunkSamples::Xor(it) => it.err(),
            ChunkSamples::Hist(h) => {
                if h.pos > h.samples.len() {
                    h.err.as_ref()
                } else {
                    None
                }
            }
        }
    }
}
