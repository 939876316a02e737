use super::*;
use crate::head::{Head, HeadOptions, SampleRecord, SeriesRecord};
use crate::record::{self, Record};
use pharos_model::Labels;
use pharos_storage::{Appendable, Queryable};
use proptest::prelude::*;

fn read_all(path: &Path) -> (Vec<Vec<u8>>, Option<Corruption>) {
    let data = fs::read(path).unwrap();
    let mut r = SegmentReader::new(&data);
    let mut out = Vec::new();
    while let Some(rec) = r.next() {
        out.push(rec.to_vec());
    }
    (out, r.corruption().cloned())
}

fn read_dir_records(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (_, p) in list_segments(dir).unwrap() {
        let (recs, c) = read_all(&p);
        assert!(c.is_none(), "{c:?}");
        out.extend(recs);
    }
    out
}

fn small_opts(compress: bool) -> WalOptions {
    WalOptions {
        segment_size: 4 * PAGE_SIZE,
        compress,
    }
}

/// Pseudo-random, poorly compressible bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn fragments_across_pages_and_segments_round_trip() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), small_opts(compress), 0).unwrap();
        let mut want = Vec::new();
        // Sizes around the page size force first/middle/last fragments, and
        // four-page segments force segment cuts.
        for (i, n) in [
            10,
            PAGE_SIZE - 7,
            PAGE_SIZE,
            3 * PAGE_SIZE,
            1,
            0,
            40_000,
            5,
            2 * PAGE_SIZE,
        ]
        .into_iter()
        .enumerate()
        {
            let rec = if i % 2 == 0 {
                noise(n, i as u64)
            } else {
                vec![b'a'; n]
            };
            wal.log(&[&rec]).unwrap();
            want.push(rec);
        }
        // A batch of several records in one write.
        let batch: Vec<Vec<u8>> = (0..50).map(|i| noise(1000 + i, i as u64)).collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        wal.log(&refs).unwrap();
        want.extend(batch);
        wal.close().unwrap();
        let segs = list_segments(dir.path()).unwrap();
        assert!(segs.len() > 2 || compress, "{} segments", segs.len());
        for (_, p) in &segs {
            let len = fs::metadata(p).unwrap().len() as usize;
            assert!(
                len <= 4 * PAGE_SIZE && len.is_multiple_of(PAGE_SIZE),
                "segment size {len}"
            );
        }
        let got = read_dir_records(dir.path());
        assert_eq!(got.len(), want.len());
        assert!(got == want, "records differ (compress={compress})");
    }
}

#[test]
fn fragment_layout_is_prometheus_s() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), small_opts(false), 0).unwrap();
    wal.log(&[b"hello"]).unwrap();
    let big = vec![7u8; PAGE_SIZE];
    wal.log(&[&big]).unwrap();
    let data = fs::read(dir.path().join("00000000")).unwrap();
    // Full record: type 1, length 5, CRC32C (Castagnoli) of the data.
    assert_eq!(data[0], FULL);
    assert_eq!(&data[1..3], &[0, 5]);
    assert_eq!(&data[3..7], &crc32c::crc32c(b"hello").to_be_bytes());
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(&data[7..12], b"hello");
    // The big record starts right after, as a first fragment filling the page.
    assert_eq!(data[12], FIRST);
    let n = u16::from_be_bytes([data[13], data[14]]) as usize;
    assert_eq!(12 + 7 + n, PAGE_SIZE);
    assert_eq!(data[PAGE_SIZE], LAST);
}

#[test]
fn torn_tail_and_flipped_byte_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), small_opts(false), 0).unwrap();
    for i in 0..20u8 {
        wal.log(&[&vec![i; 3000]]).unwrap();
    }
    drop(wal);
    let p = dir.path().join("00000000");
    let data = fs::read(&p).unwrap();
    // Torn: cut in the middle of the last record.
    let torn = &data[..data.len() - 100];
    let mut r = SegmentReader::new(torn);
    let mut n = 0;
    while r.next().is_some() {
        n += 1;
    }
    assert_eq!(n, 19);
    let c = r.corruption().unwrap();
    assert_eq!(c.good_until, data.len() - 3007);
    // Flipped byte inside record 5: records 0..5 survive.
    let mut bad = data.clone();
    bad[5 * 3007 + 100] ^= 0x40;
    let mut r = SegmentReader::new(&bad);
    let mut n = 0;
    while r.next().is_some() {
        n += 1;
    }
    assert_eq!(n, 5);
    assert_eq!(r.corruption().unwrap().good_until, 5 * 3007);
    assert!(r.corruption().unwrap().msg.contains("checksum"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn reader_never_panics(data in prop::collection::vec(any::<u8>(), 0..2000), flags in any::<u8>()) {
        let mut data = data;
        if let Some(b) = data.first_mut() { *b = flags; }
        let mut r = SegmentReader::new(&data);
        let mut n = 0;
        while let Some(rec) = r.next() {
            let _ = record::decode(rec);
            n += 1;
            prop_assert!(n < 10_000);
        }
    }

    #[test]
    fn valid_wal_with_one_mutation_never_panics(pos in any::<prop::sample::Index>(), bit in 0u8..8, compress in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), small_opts(compress), 0).unwrap();
        for i in 0..10u64 {
            let mut rec = Vec::new();
            record::encode_samples(&[SampleRecord { series_ref: i, t: i as i64 * 1000, v: i as f64 }; 50], &mut rec);
            wal.log(&[&rec]).unwrap();
        }
        drop(wal);
        let mut data = fs::read(dir.path().join("00000000")).unwrap();
        let i = pos.index(data.len());
        data[i] ^= 1 << bit;
        let mut r = SegmentReader::new(&data);
        while let Some(rec) = r.next() {
            let _ = record::decode(rec);
        }
    }
}

fn lbl(i: u64) -> Labels {
    Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string()), ("job", "node")])
}

fn ingest(head: &Head, series: u64, t0: i64, steps: i64) {
    for step in 0..steps {
        let mut app = head.appender();
        for i in 0..series {
            app.append(0, &lbl(i), t0 + step * 1000, (i as f64) + step as f64)
                .unwrap();
        }
        app.commit().unwrap();
    }
}

fn dump(head: &Head) -> Vec<(String, Vec<(i64, u64)>)> {
    let q = head.querier(i64::MIN, i64::MAX).unwrap();
    let m = pharos_model::Matcher::new(pharos_model::MatchOp::Equal, "__name__", "m").unwrap();
    let mut set = q.select(true, None, &[m]);
    let mut out = Vec::new();
    while let Some(mut s) = set.next() {
        let mut v = Vec::new();
        while let Some(x) = s.samples.next() {
            v.push((x.t, x.v.to_bits()));
        }
        out.push((format!("{:?}", s.labels), v));
    }
    out.sort();
    out
}

#[test]
fn open_head_replays_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    for compress in [false, true] {
        let sub = dir.path().join(format!("c{compress}"));
        let opts = WalOptions {
            segment_size: 8 * PAGE_SIZE,
            compress,
        };
        let (head, hw) = open_head(&sub, HeadOptions::default(), opts).unwrap();
        ingest(&head, 100, 0, 300);
        let want = dump(&head);
        assert_eq!(want.len(), 100);
        hw.close().unwrap();
        drop(head);
        let (head2, hw2) = open_head(&sub, HeadOptions::default(), opts).unwrap();
        assert_eq!(dump(&head2), want);
        let rs = hw2.replay_stats();
        assert_eq!(rs.samples, 30_000);
        // Closed chunks come back from chunks_head/, the rest from the WAL.
        assert_eq!(rs.samples_applied + rs.samples_in_mmapped_chunks, 30_000);
        assert!(rs.mmapped_chunks > 0);
        assert_eq!(rs.series, 100);
        assert!(rs.done && rs.corruptions == 0);
        // New series continue after the replayed references, and new
        // commits land in a new segment and replay too.
        ingest(&head2, 101, 300_000, 2);
        let want2 = dump(&head2);
        assert_eq!(want2.len(), 101);
        drop(head2);
        drop(hw2);
        let (head3, _hw3) = open_head(&sub, HeadOptions::default(), opts).unwrap();
        assert_eq!(dump(&head3), want2);
    }
}

#[test]
fn repair_truncates_at_last_good_record_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: PAGE_SIZE,
        compress: false,
    };
    let (head, hw) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    ingest(&head, 50, 0, 200);
    drop(head);
    drop(hw);
    let wal_dir = dir.path().join("wal");
    let segs = list_segments(&wal_dir).unwrap();
    assert!(segs.len() >= 3, "{segs:?}");
    // Flip a byte in the middle of the second segment.
    let (bad_idx, bad_path) = segs[1].clone();
    let mut data = fs::read(&bad_path).unwrap();
    let (good_recs, _) = read_all(&bad_path);
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&bad_path, &data).unwrap();
    // What a reader keeps before the damage.
    let mut r = SegmentReader::new(&data);
    let mut kept = 0;
    while r.next().is_some() {
        kept += 1;
    }
    let good_until = r.corruption().unwrap().good_until;
    assert!(kept < good_recs.len());

    let (head2, hw2) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    let rs = hw2.replay_stats();
    assert_eq!(rs.corruptions, 1);
    assert!(rs.bytes_dropped > 0);
    let mut m = String::new();
    hw2.write_metrics(&mut m);
    assert!(m.contains("pharos_tsdb_wal_corruptions_total 1"), "{m}");
    // The damaged segment is cut at the last good record, later ones gone,
    // and the writer continues right after it.
    assert_eq!(fs::metadata(&bad_path).unwrap().len() as usize, good_until);
    let after: Vec<u32> = list_segments(&wal_dir)
        .unwrap()
        .iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(after, vec![segs[0].0, bad_idx, bad_idx + 1]);
    // Everything before the damage is there: a prefix of each series, in
    // full for the earliest steps.
    let got = dump(&head2);
    assert!(!got.is_empty());
    let n = got[0].1.len();
    assert!(n > 0 && n < 200);
    for (_, s) in &got {
        assert!(s.len().abs_diff(n) <= 1);
        for (k, (t, _)) in s.iter().enumerate() {
            assert_eq!(*t, k as i64 * 1000);
        }
    }
    drop(head2);
    drop(hw2);
    // Opening again finds nothing more to repair.
    let (_h, hw3) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    assert_eq!(hw3.replay_stats().corruptions, 0);
}

#[test]
fn torn_last_record_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 16 * PAGE_SIZE,
        compress: true,
    };
    let (head, hw) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    ingest(&head, 20, 0, 10);
    let want = dump(&head);
    ingest(&head, 20, 10_000, 1);
    drop(head);
    drop(hw);
    let seg = list_segments(&dir.path().join("wal")).unwrap()[0].1.clone();
    let len = fs::metadata(&seg).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    let (head2, hw2) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    assert_eq!(hw2.replay_stats().corruptions, 1);
    assert_eq!(dump(&head2), want);
}

#[test]
fn checkpoint_deletes_segments_and_replays_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: PAGE_SIZE,
        compress: false,
    };
    let (head, hw) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    // Series 0..50 stop at step 100; 50..100 go on.
    for step in 0..300i64 {
        let mut app = head.appender();
        let hi = if step < 100 { 100 } else { 50 };
        for i in (100 - hi)..100u64 {
            app.append(0, &lbl(i), step * 1000, step as f64).unwrap();
        }
        app.commit().unwrap();
    }
    let wal_dir = dir.path().join("wal");
    let before = list_segments(&wal_dir).unwrap();
    assert!(before.len() > 4, "{before:?}");
    let mint = 150_000;
    head.truncate(mint);
    let want = dump(&head);
    assert_eq!(want.len(), 50);
    let st = hw.checkpoint_stats(&head, mint).unwrap();
    assert!(st.segments_deleted > 0);
    assert!(st.series_dropped == 0 || st.series_kept > 0);
    let cp = last_checkpoint(&wal_dir).unwrap().unwrap();
    let after = list_segments(&wal_dir).unwrap();
    assert!(after.first().unwrap().0 > cp.0);
    assert!(after.len() < before.len());
    // Only live series are in the checkpoint.
    let mut series = 0;
    for rec in read_dir_records(&cp.1) {
        match record::decode(&rec).unwrap() {
            Record::Series(v) => {
                for s in v {
                    series += 1;
                    assert!(head.has_series(s.series_ref));
                }
            }
            Record::Samples(v) => assert!(v.iter().all(|s| s.t >= mint)),
            _ => {}
        }
    }
    assert_eq!(series, 50);
    // A second checkpoint replaces the first.
    ingest_tail(&head, 300, 400);
    head.truncate(250_000);
    let want = dump_from(&head, 250_000);
    hw.checkpoint(&head, 250_000).unwrap();
    let cps: Vec<_> = fs::read_dir(&wal_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoint."))
        .collect();
    assert_eq!(cps.len(), 1);
    drop(head);
    hw.close().unwrap();
    let (head2, hw2) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    assert!(hw2.replay_stats().checkpoint.is_some());
    assert!(dump_from(&head2, 250_000) == want);
}

/// The dump restricted to samples at or after `mint`: the head keeps whole
/// chunks reaching `mint`, a checkpoint only the samples.
fn dump_from(head: &Head, mint: i64) -> Vec<(String, Vec<(i64, u64)>)> {
    let mut d = dump(head);
    for (_, s) in &mut d {
        s.retain(|x| x.0 >= mint);
    }
    d
}

fn ingest_tail(head: &Head, from: i64, to: i64) {
    for step in from..to {
        let mut app = head.appender();
        for i in 50..100u64 {
            app.append(0, &lbl(i), step * 1000, step as f64).unwrap();
        }
        app.commit().unwrap();
    }
}

#[test]
fn series_logged_once_and_commit_fails_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (head, hw) = open_head(dir.path(), HeadOptions::default(), WalOptions::default()).unwrap();
    ingest(&head, 3, 0, 5);
    let recs = read_dir_records(&dir.path().join("wal"));
    let mut series = Vec::<SeriesRecord>::new();
    let mut samples = 0;
    for r in &recs {
        match record::decode(r).unwrap() {
            Record::Series(v) => series.extend(v),
            Record::Samples(v) => samples += v.len(),
            _ => {}
        }
    }
    assert_eq!(series.len(), 3);
    assert_eq!(samples, 15);
    hw.close().unwrap();
    let mut app = head.appender();
    app.append(0, &lbl(0), 100_000, 1.0).unwrap();
    assert!(app.commit().is_err());
    // Nothing of the refused commit is visible.
    assert_eq!(dump(&head)[0].1.len(), 5);
}

#[test]
fn closed_chunks_are_mmapped_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 16 * PAGE_SIZE,
        compress: true,
    };
    let (head, hw) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    // 500 samples per series: four closed chunks and an open one each.
    ingest(&head, 40, 0, 500);
    head.write_closed_chunks();
    let plain = Head::new(HeadOptions::default());
    ingest(&plain, 40, 0, 500);
    let (heap_plain, heap_mapped) = (plain.chunk_bytes(), head.chunk_bytes());
    assert!(
        heap_mapped * 3 < heap_plain,
        "heap chunk bytes {heap_plain} without chunks_head, {heap_mapped} with"
    );
    let files: Vec<_> = fs::read_dir(dir.path().join("chunks_head"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 1);
    let want = dump(&head);
    assert_eq!(want[0].1.len(), 500);
    hw.close().unwrap();
    drop(head);
    let (head2, hw2) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    let rs = hw2.replay_stats();
    assert_eq!(rs.mmapped_chunks, 160);
    assert_eq!(rs.samples_in_mmapped_chunks, 40 * 480);
    assert_eq!(rs.samples_applied, 40 * 20);
    assert!(dump(&head2) == want);
    drop(head2);
    drop(hw2);

    // A damaged chunk file loses nothing: the WAL still has the samples.
    let f = dir.path().join("chunks_head").join("000001");
    let mut data = fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    fs::write(&f, &data).unwrap();
    let (head3, hw3) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    let rs = hw3.replay_stats();
    assert_eq!(rs.corruptions, 1);
    assert!(rs.mmapped_chunks < 160);
    assert!(dump(&head3) == want);
}

#[test]
fn tombstones_are_logged_replayed_and_checkpointed() {
    use crate::record::TombstoneRecord;
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: PAGE_SIZE,
        compress: false,
    };
    let (head, hw) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    ingest(&head, 10, 0, 100);
    let m = pharos_model::Matcher::new(pharos_model::MatchOp::Equal, "i", "3").unwrap();
    let refs = head.series_refs(&[m]);
    assert_eq!(refs.len(), 1);
    assert_eq!(head.series_labels(refs[0]).unwrap(), lbl(3));
    let t = TombstoneRecord {
        series_ref: refs[0],
        mint: 10_000,
        maxt: 20_000,
    };
    hw.log_tombstones(&[t]).unwrap();
    ingest(&head, 10, 100_000, 100);
    drop(head);
    drop(hw);
    let (head2, hw2) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    assert_eq!(hw2.replayed_tombstones(), vec![t]);
    // A checkpoint keeps the tombstone of a live series.
    ingest(&head2, 10, 200_000, 1000);
    hw2.checkpoint(&head2, 15_000).unwrap();
    drop(head2);
    drop(hw2);
    let (_h, hw3) = open_head(dir.path(), HeadOptions::default(), opts).unwrap();
    assert!(hw3.replay_stats().checkpoint.is_some());
    assert_eq!(hw3.replayed_tombstones(), vec![t]);
}

#[test]
fn zstd_records_are_skipped_not_corruptions() {
    let payload = b"zstd bytes we cannot read";
    let mut seg = vec![FULL | ZSTD_FLAG];
    seg.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    seg.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    seg.extend_from_slice(payload);
    let mut rec = Vec::new();
    record::encode_samples(
        &[SampleRecord {
            series_ref: 1,
            t: 5,
            v: 1.0,
        }],
        &mut rec,
    );
    seg.push(FULL);
    seg.extend_from_slice(&(rec.len() as u16).to_be_bytes());
    seg.extend_from_slice(&crc32c::crc32c(&rec).to_be_bytes());
    seg.extend_from_slice(&rec);
    let mut r = SegmentReader::new(&seg);
    assert!(record::decode(r.next().unwrap()).is_err());
    assert_eq!(r.next().unwrap(), rec.as_slice());
    assert!(r.next().is_none());
    assert!(r.corruption().is_none());
}

#[test]
fn replayed_series_without_samples_are_not_indexed() {
    use crate::head::CommitLog;
    let dir = tempfile::tempdir().unwrap();
    {
        let (head, hw) =
            open_head(dir.path(), HeadOptions::default(), WalOptions::default()).unwrap();
        ingest(&head, 3, 1_000, 5);
        // A series record whose samples never made it to the log.
        let lonely = Labels::from_pairs(&[("__name__", "lonely")]);
        hw.log(
            &[SeriesRecord {
                series_ref: 1_000,
                labels: lonely,
            }],
            &[],
        )
        .unwrap();
        hw.close().unwrap();
    }
    let (head, hw) = open_head(dir.path(), HeadOptions::default(), WalOptions::default()).unwrap();
    assert_eq!(hw.replay_stats().series, 4);
    assert_eq!(head.num_indexed_series(), 3);
    assert_eq!(head.stats().num_series, 3);
    let q = head.querier(i64::MIN, i64::MAX).unwrap();
    assert_eq!(
        q.label_values("__name__", &[]).unwrap(),
        vec!["m".to_string()]
    );
    assert_eq!(dump(&head).len(), 3);
}
