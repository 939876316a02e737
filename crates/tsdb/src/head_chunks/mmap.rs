//! The one place the crate maps files into memory.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapOptions};

/// Maps `len` bytes of `file` read-only. `len` may exceed the file's
/// current size: the file is being appended to and the mapping covers the
/// room it may grow into.
///
/// Callers must read only bytes that have already been written to the file
/// (touching a page wholly past the end of the file raises SIGBUS).
pub(super) fn map(file: &File, len: usize) -> io::Result<Mmap> {
    // SAFETY: memmap2 requires that the mapped file is not modified or
    // truncated in ways that invalidate the mapping while it lives. Head
    // chunk files are only ever appended to, by this process, at offsets
    // that no reader has been handed yet; bytes are exposed to readers only
    // after the write that produced them has returned, and they are never
    // rewritten. A file is truncated (repair) only at open, after the
    // mapping its scan read through is dropped and before it is mapped for
    // readers, and deleted (unlinked) without truncation, which leaves live
    // mappings valid. The mapping is read-only, so no aliasing `&mut` exists.
    unsafe { MmapOptions::new().len(len).map(file) }
}
