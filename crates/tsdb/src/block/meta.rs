//! `meta.json`: a block's identity, time range, statistics and compaction
//! lineage, in Prometheus's JSON shape. See `docs/format/meta.md`.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TsdbError;

/// Sample, series and chunk counts of a block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    /// Samples in the block.
    #[serde(default)]
    pub num_samples: u64,
    /// Series in the block.
    #[serde(default)]
    pub num_series: u64,
    /// Chunks in the block.
    #[serde(default)]
    pub num_chunks: u64,
    /// Tombstone intervals (written by Prometheus; kept when present).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A parent block of a compacted block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDesc {
    /// The parent's ULID.
    pub ulid: String,
    /// The parent's first time.
    pub min_time: i64,
    /// The parent's end time (exclusive).
    pub max_time: i64,
}

/// Compaction lineage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCompaction {
    /// 1 for a block cut from the head, parents' maximum + 1 after merging.
    pub level: u32,
    /// ULIDs of the level-1 blocks this block's data came from.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Blocks merged into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    /// Set by Prometheus when compaction of this block failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    /// Deletable marker written by Prometheus.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deletable: bool,
}

/// The contents of `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    /// Block identifier (a ULID string, also the directory name).
    pub ulid: String,
    /// First timestamp (inclusive).
    pub min_time: i64,
    /// End timestamp (exclusive).
    pub max_time: i64,
    /// Counts.
    #[serde(default)]
    pub stats: BlockStats,
    /// Lineage.
    #[serde(default)]
    pub compaction: BlockCompaction,
    /// Format version: 1.
    pub version: u32,
}

impl BlockMeta {
    /// Reads `dir/meta.json`.
    pub fn read(dir: &Path) -> Result<BlockMeta, TsdbError> {
        let p = dir.join("meta.json");
        let b =
            std::fs::read(&p).map_err(|e| TsdbError::BlockIo(format!("{}: {e}", p.display())))?;
        let m: BlockMeta = serde_json::from_slice(&b)
            .map_err(|e| TsdbError::CorruptBlock(format!("{}: {e}", p.display())))?;
        if m.version != 1 {
            return Err(TsdbError::CorruptBlock(format!(
                "{}: unsupported meta version {}",
                p.display(),
                m.version
            )));
        }
        Ok(m)
    }

    /// Writes `dir/meta.json` atomically (temporary file, fsync, rename).
    pub fn write(&self, dir: &Path) -> Result<(), TsdbError> {
        let p = dir.join("meta.json");
        let tmp = dir.join("meta.json.tmp");
        let io = |e: std::io::Error| TsdbError::BlockIo(format!("{}: {e}", p.display()));
        let b = serde_json::to_vec_pretty(self)
            .map_err(|e| TsdbError::BlockIo(format!("encoding meta.json: {e}")))?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&b).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &p).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_prometheus_meta() {
        let j = r#"{
	"ulid": "01BKGV7JC0RY8A6MACW02A2PJD",
	"minTime": 1602237600000,
	"maxTime": 1602244800000,
	"stats": {"numSamples": 553673232, "numSeries": 1346066, "numChunks": 4440437},
	"compaction": {"level": 1, "sources": ["01BKGV7JC0RY8A6MACW02A2PJD"]},
	"version": 1
}"#;
        let m: BlockMeta = serde_json::from_str(j).unwrap();
        assert_eq!(m.stats.num_series, 1346066);
        let dir = tempfile::tempdir().unwrap();
        m.write(dir.path()).unwrap();
        assert_eq!(BlockMeta::read(dir.path()).unwrap(), m);
    }
}
