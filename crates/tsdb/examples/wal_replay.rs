//! Measures WAL replay speed: writes a WAL through a head (node-exporter-like
//! series, one commit per scrape), then reopens it and reports samples per
//! second of replay.
//!
//! `cargo run --release -p pharos-tsdb --example wal_replay -- [SERIES] [SCRAPES] [DIR [replay-only]]`
//! (defaults: 100000 series, 60 scrapes, a temporary directory). With DIR
//! the data is kept, so Prometheus can be started on a copy of it; with
//! `replay-only` too, an existing DIR written earlier is only replayed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use pharos_model::Labels;
use pharos_storage::Appendable;
use pharos_tsdb::{HeadOptions, WalOptions, open_head};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let series: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let scrapes: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let dir = args
        .get(3)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let labels: Vec<Labels> = (0..series)
        .map(|i| {
            Labels::from_pairs(&[
                (
                    "__name__",
                    format!("node_metric_{}_total", i % 200).as_str(),
                ),
                ("cpu", &(i % 16).to_string()),
                ("instance", &format!("host-{}:9100", i / 2000)),
                ("job", "node"),
                (
                    "mode",
                    ["idle", "user", "system", "iowait"][(i % 4) as usize],
                ),
                ("series", &i.to_string()),
            ])
        })
        .collect();
    let t0 = 1_700_000_000_000i64;
    let write = Instant::now();
    let replay_only = args.get(4).is_some_and(|a| a == "replay-only");
    if !replay_only {
        let (head, hw) = open_head(&dir, HeadOptions::default(), WalOptions::default()).unwrap();
        let mut refs = vec![0u64; labels.len()];
        for step in 0..scrapes {
            // One commit per target of 2000 series, like a scrape.
            for (chunk_i, chunk) in labels.chunks(2000).enumerate() {
                let mut app = head.appender();
                for (j, l) in chunk.iter().enumerate() {
                    let k = chunk_i * 2000 + j;
                    let v = (k as f64) * 1.5 + (step * (k as i64 % 7)) as f64;
                    refs[k] = app.append(refs[k], l, t0 + step * 15_000, v).unwrap();
                }
                app.commit().unwrap();
            }
        }
        hw.close().unwrap();
    }
    let samples = series * scrapes as u64;
    let wal_bytes: u64 = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    if replay_only {
        println!(
            "WAL of {:.1} MiB ({:.2} bytes/sample)",
            wal_bytes as f64 / (1 << 20) as f64,
            wal_bytes as f64 / samples as f64
        );
    } else {
        println!(
            "wrote {samples} samples of {series} series in {:.2?} ({:.1} MiB of WAL, {:.2} bytes/sample)",
            write.elapsed(),
            wal_bytes as f64 / (1 << 20) as f64,
            wal_bytes as f64 / samples as f64
        );
    }
    let start = Instant::now();
    let (head, hw) = open_head(&dir, HeadOptions::default(), WalOptions::default()).unwrap();
    let took = start.elapsed();
    let rs = hw.replay_stats();
    assert_eq!(rs.samples_applied + rs.samples_in_mmapped_chunks, samples);
    assert_eq!(head.stats().num_series, series);
    println!(
        "replayed {} samples, {} series in {:.3?}: {:.2} M samples/s ({} decode threads, {} chunks from chunks_head/)",
        rs.samples,
        rs.series,
        took,
        rs.samples as f64 / took.as_secs_f64() / 1e6,
        rs.decode_threads,
        rs.mmapped_chunks
    );
}
