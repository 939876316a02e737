//! `pharos tsdb ...`: promtool's TSDB tools over a data directory —
//! `list` (blocks and their stats), `analyze` (cardinality of a block) and
//! `create-blocks-from openmetrics` (backfilling blocks from a file).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use pharos_exposition::nhcb::{Converted, NhcbConverter};
use pharos_model::{FloatHistogram, Labels, Matcher, Sample};
use pharos_storage::{
    Querier, SampleIter, SelectHints, Series, SeriesSet, StorageError, VecSeriesSet,
};
use pharos_tsdb::block::{self, Block, BlockCompaction};

use crate::cli::TsdbCommand;

/// Runs a `pharos tsdb` subcommand.
pub fn run(cmd: TsdbCommand) -> ExitCode {
    let r = match cmd {
        TsdbCommand::List {
            human_readable,
            db_path,
        } => list(&db_path, human_readable).map(|s| print!("{s}")),
        TsdbCommand::Analyze {
            db_path,
            block_id,
            limit,
        } => analyze(&db_path, block_id.as_deref(), limit).map(|s| print!("{s}")),
        TsdbCommand::CreateBlocksFrom { source } => match source {
            crate::cli::BackfillSource::Openmetrics {
                input,
                output,
                max_block_duration,
                convert_classic_histograms_to_nhcb,
                keep_classic_histograms,
            } => {
                let nhcb = convert_classic_histograms_to_nhcb.then_some(NhcbBackfill {
                    keep_classic: keep_classic_histograms,
                });
                create_blocks_from_openmetrics(&input, &output, &max_block_duration, nhcb, true)
                    .map(|s| print!("{s}"))
            }
        },
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn open_all(dir: &Path) -> anyhow::Result<Vec<Arc<Block>>> {
    let (blocks, bad) =
        pharos_tsdb::db::open_blocks(dir).with_context(|| format!("reading {}", dir.display()))?;
    for (p, e) in bad {
        eprintln!("warning: skipping block {}: {e}", p.display());
    }
    Ok(blocks)
}

fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn fmt_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// `pharos tsdb list`: one line per block, as promtool prints it.
pub fn list(dir: &Path, human: bool) -> anyhow::Result<String> {
    let blocks = open_all(dir)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26}  {:<20}  {:<20}  {:<12}  {:<11}  {:<10}  {:<10}  SIZE",
        "BLOCK ULID", "MIN TIME", "MAX TIME", "DURATION", "NUM SAMPLES", "NUM CHUNKS", "NUM SERIES"
    );
    for b in blocks {
        let m = b.meta();
        let (mint, maxt, size) = if human {
            (
                fmt_time(m.min_time),
                fmt_time(m.max_time),
                fmt_bytes(b.size()),
            )
        } else {
            (
                m.min_time.to_string(),
                m.max_time.to_string(),
                b.size().to_string(),
            )
        };
        let dur = pharos_model::Duration(m.max_time - m.min_time).to_string();
        let _ = writeln!(
            out,
            "{:<26}  {:<20}  {:<20}  {:<12}  {:<11}  {:<10}  {:<10}  {size}",
            m.ulid, mint, maxt, dur, m.stats.num_samples, m.stats.num_chunks, m.stats.num_series
        );
    }
    Ok(out)
}

fn top(out: &mut String, title: &str, mut v: Vec<(u64, String)>, limit: usize) {
    v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let _ = writeln!(out, "\n{title}:");
    for (n, s) in v.into_iter().take(limit) {
        let _ = writeln!(out, "{n} {s}");
    }
}

/// `pharos tsdb analyze`: cardinality and churn report of one block (the
/// newest by default), with promtool's sections. Churn: how much of the
/// block's time range each series does not cover (from its first chunk's
/// start to its last chunk's end), summed per label pair and per label
/// name and divided by the block's duration — roughly, how many series
/// carrying that label were missing at any moment, the signature of
/// short-lived series.
pub fn analyze(dir: &Path, block_id: Option<&str>, limit: usize) -> anyhow::Result<String> {
    let blocks = open_all(dir)?;
    let b = match block_id {
        Some(id) => blocks
            .iter()
            .find(|b| b.meta().ulid == id)
            .with_context(|| format!("block {id} not found"))?,
        None => blocks
            .iter()
            .max_by_key(|b| b.meta().max_time)
            .context("no blocks found")?,
    };
    let idx = b.index();
    let m = b.meta();
    let mut out = String::new();
    let all = idx.all_postings()?;
    let _ = writeln!(out, "Block ID: {}", m.ulid);
    let _ = writeln!(
        out,
        "Duration: {}",
        pharos_model::Duration(m.max_time - m.min_time)
    );
    let _ = writeln!(out, "Series: {}", all.len());
    let names = idx.label_names();
    let _ = writeln!(out, "Label names: {}", names.len());
    let mut pairs: Vec<(u64, String)> = Vec::new();
    let mut name_card: Vec<(u64, String)> = Vec::new();
    let mut name_len: Vec<(u64, String)> = Vec::new();
    let mut metric_card: Vec<(u64, String)> = Vec::new();
    let mut entries = 0u64;
    for n in &names {
        let values = idx.label_values(n);
        name_card.push((values.len() as u64, n.clone()));
        name_len.push((values.iter().map(|v| v.len() as u64).sum(), n.clone()));
        for v in values {
            let c = idx.postings(n, &v)?.len() as u64;
            entries += c;
            if n == "__name__" {
                metric_card.push((c, v.clone()));
            }
            pairs.push((c, format!("{n}={v}")));
        }
    }
    let _ = writeln!(out, "Postings (unique label pairs): {}", pairs.len());
    let _ = writeln!(out, "Postings entries (total label pairs): {entries}");
    let (pair_churn, name_churn) = churn(b, &all)?;
    top(
        &mut out,
        "Label pairs most involved in churning",
        pair_churn,
        limit,
    );
    top(
        &mut out,
        "Label names most involved in churning",
        name_churn,
        limit,
    );
    top(&mut out, "Most common label pairs", pairs, limit);
    top(
        &mut out,
        "Label names with highest cumulative label value length",
        name_len,
        limit,
    );
    top(&mut out, "Highest cardinality labels", name_card, limit);
    top(
        &mut out,
        "Highest cardinality metric names",
        metric_card,
        limit,
    );
    Ok(out)
}

/// Per label pair and per label name: the block time the series carrying
/// it do not cover, summed, in units of the block's duration (rounded
/// down, as promtool).
type Churn = (Vec<(u64, String)>, Vec<(u64, String)>);

fn churn(b: &Block, refs: &[u64]) -> anyhow::Result<Churn> {
    let m = b.meta();
    let duration = m.max_time.saturating_sub(m.min_time).max(0) as u64;
    let mut by_pair: HashMap<String, u64> = HashMap::new();
    let mut by_name: HashMap<String, u64> = HashMap::new();
    for &r in refs {
        let (labels, chunks) = b.index().series(r)?;
        let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
            continue;
        };
        let covered = last.max_t.saturating_sub(first.min_t).max(0) as u64;
        let uncovered = duration.saturating_sub(covered);
        for l in labels.iter() {
            *by_pair
                .entry(format!("{}={}", l.name, l.value))
                .or_default() += uncovered;
            *by_name.entry(l.name.to_string()).or_default() += uncovered;
        }
    }
    let scale = |v: HashMap<String, u64>| -> Vec<(u64, String)> {
        v.into_iter()
            .map(|(k, u)| {
                let n = if duration == 0 {
                    0
                } else {
                    (u as f64 / duration as f64) as u64
                };
                (n, k)
            })
            .collect()
    };
    Ok((scale(by_pair), scale(by_name)))
}

/// An in-memory querier over series already sorted by labels, used to feed
/// the block writer.
struct MemQuerier {
    series: Vec<(Labels, Vec<BackfillSample>)>,
}

/// Iterates backfilled samples, floats and histograms alike.
struct MemSampleIter {
    samples: Vec<BackfillSample>,
    pos: usize,
    started: bool,
}

impl SampleIter for MemSampleIter {
    fn next(&mut self) -> Option<Sample> {
        if self.started {
            self.pos += 1;
        }
        self.started = true;
        self.samples.get(self.pos).map(|s| s.0)
    }

    fn seek(&mut self, ts: i64) -> Option<Sample> {
        self.started = true;
        let rest = self.samples.get(self.pos..).unwrap_or(&[]);
        self.pos += rest.partition_point(|s| s.0.t < ts);
        self.samples.get(self.pos).map(|s| s.0)
    }

    fn histogram(&self) -> Option<&FloatHistogram> {
        if !self.started {
            return None;
        }
        self.samples.get(self.pos)?.1.as_deref()
    }
}

impl Querier for MemQuerier {
    fn select(&self, _: bool, _: Option<&SelectHints>, _: &[Matcher]) -> Box<dyn SeriesSet> {
        Box::new(VecSeriesSet::new(
            self.series
                .iter()
                .map(|(l, s)| Series {
                    labels: l.clone(),
                    samples: Box::new(MemSampleIter {
                        samples: s.clone(),
                        pos: 0,
                        started: false,
                    }),
                })
                .collect(),
        ))
    }
    fn label_values(&self, _: &str, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn label_names(&self, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

/// How `create-blocks-from openmetrics` converts classic histograms to
/// native histograms with custom buckets (pharos extension).
#[derive(Debug, Clone, Copy)]
pub struct NhcbBackfill {
    /// Also write the classic series.
    pub keep_classic: bool,
}

/// A backfilled sample: a float, or a native histogram (whose `v` is its
/// sum, as storage iterators report it). Boxed: a float sample then costs
/// 24 bytes instead of carrying an inline (~200-byte) empty histogram, which
/// tripled the peak memory of a float-only backfill.
type BackfillSample = (Sample, Option<Box<FloatHistogram>>);

/// `pharos tsdb create-blocks-from openmetrics`: parses an OpenMetrics
/// file whose samples all carry timestamps and writes one block per
/// aligned window of `max_block_duration` (default 2h) into `output`.
/// With `nhcb`, classic histograms become native histograms with custom
/// buckets (see `pharos_exposition::nhcb`).
/// The whole file is held in memory while blocks are written.
pub fn create_blocks_from_openmetrics(
    input: &Path,
    output: &Path,
    max_block_duration: &str,
    nhcb: Option<NhcbBackfill>,
    progress: bool,
) -> anyhow::Result<String> {
    let range = pharos_model::Duration::parse(max_block_duration)
        .context("invalid --max-block-duration")?
        .millis();
    if range <= 0 {
        bail!("--max-block-duration must be positive");
    }
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let bar = if progress {
        indicatif::ProgressBar::new(bytes.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("parsing");
    let mut windows: BTreeMap<i64, HashMap<Labels, Vec<BackfillSample>>> = BTreeMap::new();
    let mut add = |labels: Labels, t: Option<i64>, v: f64, h: Option<Box<FloatHistogram>>| {
        let Some(t) = t else {
            bail!(
                "{}: sample without a timestamp: {}",
                input.display(),
                labels
            );
        };
        let w = t.div_euclid(range) * range;
        windows
            .entry(w)
            .or_default()
            .entry(labels)
            .or_default()
            .push((Sample { t, v }, h));
        Ok(())
    };
    let mut parser = pharos_exposition::Parser::new(&bytes, pharos_exposition::Format::OpenMetrics);
    let mut conv = nhcb.map(|o| NhcbConverter::new(o.keep_classic));
    let mut converted = Vec::new();
    let mut n = 0u64;
    while let Some(e) = parser.next_entry() {
        let e = e.map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
        let Some(c) = conv.as_mut() else {
            let pharos_exposition::Entry::Sample(s) = e else {
                continue;
            };
            if s.timestamp.is_none() {
                bail!(
                    "{}: sample without a timestamp: {}",
                    input.display(),
                    String::from_utf8_lossy(s.series)
                );
            }
            add(s.labels(), s.timestamp, s.value, None)?;
            n += 1;
            if n.is_multiple_of(65536) {
                bar.set_position((bytes.len() - parser_remaining(&bytes, s.series)) as u64);
            }
            continue;
        };
        match e {
            pharos_exposition::Entry::Type { metric, kind } => {
                c.on_type(metric, kind, &mut converted);
            }
            pharos_exposition::Entry::Sample(s) => {
                if s.timestamp.is_none() {
                    bail!(
                        "{}: sample without a timestamp: {}",
                        input.display(),
                        String::from_utf8_lossy(s.series)
                    );
                }
                c.push_sample(s.labels(), s.timestamp, s.value, &mut converted);
                n += 1;
                if n.is_multiple_of(65536) {
                    bar.set_position((bytes.len() - parser_remaining(&bytes, s.series)) as u64);
                }
            }
            _ => c.on_other(&mut converted),
        }
        for out in converted.drain(..) {
            add_converted(&mut add, out)?;
        }
    }
    if let Some(c) = conv.as_mut() {
        c.finish(&mut converted);
        for out in converted.drain(..) {
            add_converted(&mut add, out)?;
        }
    }
    bar.finish_and_clear();
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let wbar = if progress {
        indicatif::ProgressBar::new(windows.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    wbar.set_message("blocks");
    let mut report = String::new();
    for (w, series) in windows {
        let mut series: Vec<(Labels, Vec<BackfillSample>)> = series.into_iter().collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, s) in &mut series {
            s.sort_by_key(|x| x.0.t);
            s.dedup_by_key(|x| x.0.t);
        }
        let q = MemQuerier { series };
        let meta = block::write_block(output, &q, w, w + range, BlockCompaction::default())
            .with_context(|| format!("writing block for {}", fmt_time(w)))?;
        if let Some(m) = meta {
            let _ = writeln!(
                report,
                "BLOCK ULID: {}  MIN TIME: {}  MAX TIME: {}  SAMPLES: {}  SERIES: {}",
                m.ulid, m.min_time, m.max_time, m.stats.num_samples, m.stats.num_series
            );
        }
        wbar.inc(1);
    }
    wbar.finish_and_clear();
    Ok(report)
}

/// Files one output of the NHCB converter through `add`.
fn add_converted(
    add: &mut impl FnMut(Labels, Option<i64>, f64, Option<Box<FloatHistogram>>) -> anyhow::Result<()>,
    out: Converted,
) -> anyhow::Result<()> {
    match out {
        Converted::Float { labels, t, v } => add(labels, t, v, None),
        Converted::Histogram { labels, t, h } => {
            let fh = h.to_float();
            add(labels, t, fh.sum, Some(Box::new(fh)))
        }
    }
}

/// Bytes of `input` after the slice `at` (which points into it).
fn parser_remaining(input: &[u8], at: &[u8]) -> usize {
    let off = (at.as_ptr() as usize).saturating_sub(input.as_ptr() as usize);
    input.len().saturating_sub(off)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backfill_list_and_analyze() {
        let dir = tempfile::tempdir().unwrap();
        let mut om = String::from("# TYPE m gauge\n");
        for s in 0..3 {
            for i in 0..1000 {
                om.push_str(&format!("m{{i=\"{s}\"}} {i} {}\n", i * 15));
            }
        }
        om.push_str("# EOF\n");
        let f = dir.path().join("in.om");
        std::fs::write(&f, om).unwrap();
        let out = dir.path().join("data");
        let rep = create_blocks_from_openmetrics(&f, &out, "2h", None, false).unwrap();
        assert_eq!(rep.lines().count(), 3, "{rep}");
        let l = list(&out, false).unwrap();
        assert_eq!(l.lines().count(), 4, "{l}");
        let first: Vec<&str> = l.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&first[1..6], &["0", "7200000", "2h", "1440", "12"], "{l}");
        let a = analyze(&out, None, 10).unwrap();
        assert!(a.contains("Series: 3"), "{a}");
        assert!(a.contains("3 m"), "{a}");
        assert!(
            a.contains("\nLabel pairs most involved in churning:\n"),
            "{a}"
        );
        let bad = dir.path().join("bad.om");
        std::fs::write(&bad, "m 1\n# EOF\n").unwrap();
        assert!(create_blocks_from_openmetrics(&bad, &out, "2h", None, false).is_err());
    }

    #[test]
    fn backfill_nhcb_falls_back_to_classic_series() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.om");
        // job a converts (one native series); job b is not cumulative and
        // keeps its four classic series.
        std::fs::write(
            &f,
            "# TYPE x histogram\n\
             x_bucket{job=\"a\",le=\"1\"} 1 10\nx_bucket{job=\"a\",le=\"+Inf\"} 2 10\n\
             x_count{job=\"a\"} 2 10\nx_sum{job=\"a\"} 3 10\n\
             x_bucket{job=\"b\",le=\"1\"} 2 10\nx_bucket{job=\"b\",le=\"+Inf\"} 1 10\n\
             x_count{job=\"b\"} 1 10\nx_sum{job=\"b\"} 3 10\n# EOF\n",
        )
        .unwrap();
        for (opt, series) in [
            (None, 8),
            (
                Some(NhcbBackfill {
                    keep_classic: false,
                }),
                5,
            ),
            (Some(NhcbBackfill { keep_classic: true }), 9),
        ] {
            let out = dir.path().join(format!("data{series}"));
            create_blocks_from_openmetrics(&f, &out, "2h", opt, false).unwrap();
            let a = analyze(&out, None, 10).unwrap();
            assert!(a.contains(&format!("Series: {series}\n")), "{opt:?}: {a}");
        }
    }

    /// The lines of section `title` in an analyze report.
    fn section<'a>(report: &'a str, title: &str) -> Vec<&'a str> {
        report
            .split(&format!("\n{title}:\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no section {title} in {report}"))
            .lines()
            .take_while(|l| !l.is_empty())
            .collect()
    }

    #[test]
    fn analyze_reports_churn() {
        let dir = tempfile::tempdir().unwrap();
        // One series over the whole 2h block, ten short-lived ones of 10
        // minutes each (40 samples, 585 s covered: 6615 s uncovered).
        let mut series = vec![(
            Labels::from_pairs(&[("__name__", "m"), ("job", "y"), ("pod", "a")]),
            (0..480)
                .map(|i| Sample {
                    t: i * 15_000,
                    v: 1.0,
                })
                .collect::<Vec<_>>(),
        )];
        for p in 0..10i64 {
            series.push((
                Labels::from_pairs(&[("__name__", "m"), ("job", "x"), ("pod", &format!("p{p}"))]),
                (0..40)
                    .map(|i| Sample {
                        t: p * 600_000 + i * 15_000,
                        v: 1.0,
                    })
                    .collect(),
            ));
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let series = series
            .into_iter()
            .map(|(l, s)| (l, s.into_iter().map(|x| (x, None)).collect()))
            .collect();
        let q = MemQuerier { series };
        block::write_block(dir.path(), &q, 0, 7_200_000, BlockCompaction::default())
            .unwrap()
            .unwrap();
        let a = analyze(dir.path(), None, 3).unwrap();
        // 10 * 6615 s + 15 s over 7200 s: 9.19.
        assert_eq!(
            section(&a, "Label pairs most involved in churning"),
            ["9 __name__=m", "9 job=x", "0 job=y"],
            "{a}"
        );
        assert_eq!(
            section(&a, "Label names most involved in churning"),
            ["9 __name__", "9 job", "9 pod"],
            "{a}"
        );
        assert_eq!(
            section(&a, "Most common label pairs"),
            ["11 __name__=m", "10 job=x", "1 job=y"],
            "{a}"
        );
        assert_eq!(section(&a, "Highest cardinality labels")[0], "11 pod");
    }
}
