//! Measures the head's heap bytes per series for 100 k node_exporter-like
//! series with a counting global allocator, after 1, 120 and 240 scrapes.
//!
//! Run: `cargo run --release -p pharos-tsdb --example heap_per_series [DIR]`.
//! With DIR the head is opened with `open_head` on that data directory: the
//! WAL is written and closed chunks move to memory-mapped `chunks_head/`
//! files (written out before each measurement), so the heap holds only the
//! open chunks.
//!
//! Counted: every byte requested from the allocator after the baseline, which
//! is taken before any label set exists, so the label buffers (shared between
//! the caller and the head) count as the head's. Not counted: the two
//! preallocated vectors of the driver (label handles and references) and
//! malloc's own per-allocation overhead; the resident set size is printed
//! alongside for that.

// A global allocator can only be written with `unsafe impl GlobalAlloc`; the
// unsafe here forwards to the system allocator and counts.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use common::{INTERVAL, SERIES_PER_TARGET, TARGETS, target_series, value};
use pharos_model::Labels;
use pharos_storage::Appendable;
use pharos_tsdb::{Head, HeadOptions, WalOptions, open_head};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from this allocator with layout `l`.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: `p` came from this allocator with layout `l`.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(new, Relaxed);
            LIVE.fetch_sub(l.size(), Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_bytes() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let n = TARGETS * SERIES_PER_TARGET;
    let mut labels: Vec<Labels> = Vec::with_capacity(n);
    let mut refs: Vec<u64> = vec![0; n];
    let base = LIVE.load(Relaxed);
    let rss_base = rss_bytes().unwrap_or(0);

    for t in 0..TARGETS {
        labels.extend(target_series(t));
    }
    let label_bytes = LIVE.load(Relaxed) - base;
    let avg_encoded: f64 = labels.iter().map(|l| l.encoded_len()).sum::<usize>() as f64 / n as f64;

    let dir = std::env::args().nth(1);
    let (head, _wal) = match &dir {
        Some(d) => {
            let (h, w) = open_head(
                std::path::Path::new(d),
                HeadOptions::default(),
                WalOptions::default(),
            )
            .unwrap();
            (h, Some(w))
        }
        None => (Head::new(HeadOptions::default()), None),
    };
    let scrape = |k: i64, refs: &mut [u64]| {
        for t in 0..TARGETS {
            let mut app = head.appender();
            for i in t * SERIES_PER_TARGET..(t + 1) * SERIES_PER_TARGET {
                refs[i] = app
                    .append(
                        refs[i],
                        &labels[i],
                        k * INTERVAL,
                        value(i % SERIES_PER_TARGET, k),
                    )
                    .unwrap();
            }
            app.commit().unwrap();
        }
    };

    println!(
        "series: {n}, labels per series: {:.1}, encoded label bytes per series: {avg_encoded:.1}",
        labels.iter().map(|l| l.len()).sum::<usize>() as f64 / n as f64
    );
    println!(
        "label buffers alone (Arc + bytes): {:.1} B/series",
        label_bytes as f64 / n as f64
    );
    println!(
        "{:>8} {:>14} {:>16} {:>16} {:>16} {:>12}",
        "scrapes",
        "heap B/series",
        "without chunks",
        "chunk B/series",
        "chunk B/sample",
        "RSS B/series"
    );
    let mut k = 0;
    let steps: &[i64] = if dir.is_some() {
        &[1, 120, 240, 480]
    } else {
        &[1, 120, 240]
    };
    for &target in steps {
        while k < target {
            scrape(k, &mut refs);
            k += 1;
        }
        head.write_closed_chunks();
        let heap = LIVE.load(Relaxed) - base;
        let chunk = head.chunk_bytes();
        let rss = rss_bytes().unwrap_or(0).saturating_sub(rss_base);
        println!(
            "{:>8} {:>14.1} {:>16.1} {:>16.1} {:>16.2} {:>12.1}",
            k,
            heap as f64 / n as f64,
            (heap - chunk) as f64 / n as f64,
            chunk as f64 / n as f64,
            chunk as f64 / (n as f64 * k as f64),
            rss as f64 / n as f64,
        );
    }
    let s = head.stats();
    assert_eq!(s.num_series, n as u64);
    assert_eq!(s.samples_appended, n as u64 * k as u64);
}
