//! `file_sd_configs`: target groups from JSON and YAML files matched by
//! globs, re-read when they change (polled, see the crate docs) and every
//! `refresh_interval`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pharos_config::FileSdConfig;
use tokio::sync::mpsc;

use crate::{BoxFuture, Discoverer, DiscoveryError, GroupFormat, TargetGroup, parse_groups};

/// The label naming the file a target came from.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

/// Discovers targets from files.
pub struct FileDiscoverer {
    patterns: Vec<String>,
    refresh: Duration,
    poll: Duration,
}

/// What identifies a file's version between polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
}

impl FileDiscoverer {
    /// A provider for `cfg`, checking files every `poll`.
    pub fn new(cfg: &FileSdConfig, poll: Duration) -> FileDiscoverer {
        FileDiscoverer {
            patterns: cfg.files.clone(),
            refresh: Duration::from_millis(u64::try_from(cfg.refresh_interval.0).unwrap_or(0))
                .max(Duration::from_millis(1)),
            poll: poll.max(Duration::from_millis(1)),
        }
    }

    /// The files the patterns match now, sorted.
    pub fn matched_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.patterns.iter().flat_map(|p| glob(p)).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Reads one file's groups.
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let text = std::fs::read_to_string(path).map_err(|source| DiscoveryError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let name = path.display().to_string();
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("json") => GroupFormat::Json,
        Some(e) if e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml") => {
            GroupFormat::Yaml
        }
        _ => {
            return Err(DiscoveryError::Invalid(format!(
                "{name}: retrieval of target groups failed: unknown file extension"
            )));
        }
    };
    parse_groups(&text, format, &name, &[(FILEPATH_LABEL, &name)])
        .map_err(|e| DiscoveryError::Invalid(format!("{name}: {e}")))
}

impl Discoverer for FileDiscoverer {
    fn run(self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture {
        Box::pin(async move {
            // The sources each file produced last time, to remove groups that
            // disappear (a shorter list, a deleted file).
            let mut sources: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
            let mut stamps: BTreeMap<PathBuf, Stamp> = BTreeMap::new();
            let mut last_full = tokio::time::Instant::now();
            let mut first = true;
            loop {
                let files = self.matched_files();
                let now_stamps: BTreeMap<PathBuf, Stamp> = files
                    .iter()
                    .filter_map(|f| {
                        let m = std::fs::metadata(f).ok()?;
                        Some((
                            f.clone(),
                            Stamp {
                                mtime: m.modified().ok(),
                                len: m.len(),
                            },
                        ))
                    })
                    .collect();
                let full = first || last_full.elapsed() >= self.refresh;
                if full || now_stamps != stamps {
                    if full {
                        last_full = tokio::time::Instant::now();
                    }
                    let mut update = Vec::new();
                    for (path, st) in &now_stamps {
                        if !full && stamps.get(path) == Some(st) {
                            continue;
                        }
                        match read_file(path) {
                            Ok(groups) => {
                                let new: Vec<String> =
                                    groups.iter().map(|g| g.source.clone()).collect();
                                for old in sources.get(path).into_iter().flatten() {
                                    if !new.contains(old) {
                                        update.push(TargetGroup::empty(old.clone()));
                                    }
                                }
                                sources.insert(path.clone(), new);
                                update.extend(groups);
                            }
                            Err(e) => {
                                // Keep the file's last good groups.
                                tracing::error!(err = %e, "Error reading file");
                            }
                        }
                    }
                    let gone: Vec<PathBuf> = sources
                        .keys()
                        .filter(|p| !now_stamps.contains_key(*p))
                        .cloned()
                        .collect();
                    for p in gone {
                        for s in sources.remove(&p).unwrap_or_default() {
                            update.push(TargetGroup::empty(s));
                        }
                    }
                    stamps = now_stamps;
                    if (first || !update.is_empty()) && tx.send(update).await.is_err() {
                        return;
                    }
                    first = false;
                }
                tokio::time::sleep(self.poll).await;
                if tx.is_closed() {
                    return;
                }
            }
        })
    }
}

/// The files matching `pattern`, whose `*` and `?` wildcards may only
/// appear in the last path element (as the config checks). A pattern
/// without wildcards matches the file when it exists.
pub fn glob(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let fname = e.file_name();
        let Some(f) = fname.to_str() else { continue };
        if wildcard_match(name.as_bytes(), f.as_bytes()) && e.path().is_file() {
            out.push(path.with_file_name(f));
        }
    }
    out
}

/// Matches `*` (any run, not `/`) and `?` (one character) like Go's
/// `filepath.Match` for a single path element.
fn wildcard_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) && p[pi] != b'*' {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use pharos_model::Labels;

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*.json", b"a.json"));
        assert!(wildcard_match(b"t*.json", b"t.json"));
        assert!(wildcard_match(b"t?.yml", b"t1.yml"));
        assert!(!wildcard_match(b"t?.yml", b"t12.yml"));
        assert!(!wildcard_match(b"*.json", b"a.yml"));
        assert!(wildcard_match(b"a*b*c", b"aXbYbc"));
    }

    async fn next(rx: &mut mpsc::Receiver<Vec<TargetGroup>>) -> Vec<TargetGroup> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no update within 5s")
            .unwrap()
    }

    #[tokio::test]
    async fn reads_globs_watches_changes_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.yml");
        std::fs::write(&a, r#"[{"targets":["h1:80"],"labels":{"env":"x"}}]"#).unwrap();
        std::fs::write(&b, "- targets: ['h2:80', 'h3:80']\n").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "x").unwrap();
        let cfg = FileSdConfig {
            files: vec![
                dir.path().join("*.json").display().to_string(),
                dir.path().join("b.yml").display().to_string(),
            ],
            refresh_interval: pharos_model::Duration(3_600_000),
        };
        let d = Box::new(FileDiscoverer::new(&cfg, Duration::from_millis(20)));
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(d.run(tx));

        let first = next(&mut rx).await;
        assert_eq!(first.len(), 2);
        let an = a.display().to_string();
        assert_eq!(first[0].source, format!("{an}:0"));
        assert_eq!(
            first[0].labels,
            Labels::from_pairs(&[("__meta_filepath", an.as_str()), ("env", "x")])
        );
        assert_eq!(first[1].targets.len(), 2);

        // A change (different size) is picked up.
        std::fs::write(&a, r#"[{"targets":["h1:81","h4:80"]}]"#).unwrap();
        let u = next(&mut rx).await;
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].targets.len(), 2);

        // A broken file keeps its last groups: no update is sent; the next
        // good version is.
        std::fs::write(&a, "[{").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err());
        std::fs::write(&a, r#"[{"targets":["h9:1"]}]"#).unwrap();
        let u = next(&mut rx).await;
        assert_eq!(
            u[0].targets,
            vec![Labels::from_pairs(&[("__address__", "h9:1")])]
        );

        // A deleted file removes its groups.
        std::fs::remove_file(&b).unwrap();
        let u = next(&mut rx).await;
        assert_eq!(u, vec![TargetGroup::empty(format!("{}:0", b.display()))]);
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn refresh_interval_rereads_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        std::fs::write(&a, r#"[{"targets":["h1:80"]}]"#).unwrap();
        let cfg = FileSdConfig {
            files: vec![a.display().to_string()],
            refresh_interval: pharos_model::Duration(50),
        };
        let d = Box::new(FileDiscoverer::new(&cfg, Duration::from_millis(10)));
        let (tx, mut rx) = mpsc::channel(4);
        let _task = tokio::spawn(d.run(tx));
        let first = next(&mut rx).await;
        let again = next(&mut rx).await;
        assert_eq!(first, again);
    }
}
