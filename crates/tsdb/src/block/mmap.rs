//! Read-only file bytes: memory-mapped files (the only `unsafe` of the
//! block code) or owned buffers.

use std::path::Path;
use std::sync::Arc;

use crate::TsdbError;

/// Immutable bytes of a block file, cheap to clone.
#[derive(Clone)]
pub struct Bytes(Arc<Inner>);

enum Inner {
    Map(memmap2::Mmap),
    Vec(Vec<u8>),
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.as_ref().len())
    }
}

impl Bytes {
    /// Maps the file at `p` read-only (an empty file becomes an empty buffer).
    pub fn open(p: &Path) -> Result<Bytes, TsdbError> {
        let f = std::fs::File::open(p)
            .map_err(|e| TsdbError::BlockIo(format!("{}: {e}", p.display())))?;
        let len = f
            .metadata()
            .map_err(|e| TsdbError::BlockIo(format!("{}: {e}", p.display())))?
            .len();
        if len == 0 {
            return Ok(Bytes::from_vec(Vec::new()));
        }
        #[allow(unsafe_code)]
        // SAFETY: block files are immutable once their directory is renamed
        // into place: pharos never writes to them again, it only deletes
        // whole block directories (unlinking keeps the mapping valid). A
        // foreign process truncating the file under us is outside the
        // contract, as for Prometheus, which maps the same files.
        let m = unsafe { memmap2::Mmap::map(&f) }
            .map_err(|e| TsdbError::BlockIo(format!("mmap {}: {e}", p.display())))?;
        Ok(Bytes(Arc::new(Inner::Map(m))))
    }

    /// Owned bytes.
    pub fn from_vec(v: Vec<u8>) -> Bytes {
        Bytes(Arc::new(Inner::Vec(v)))
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match &*self.0 {
            Inner::Map(m) => m,
            Inner::Vec(v) => v,
        }
    }
}
