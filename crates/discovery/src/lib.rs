//! Service discovery: where a scrape job's targets come from (static, file,
//! HTTP, DNS and Kubernetes providers).
//!
//! Every provider implements one seam, [`Discoverer`]: a task that sends
//! *target groups* ([`TargetGroup`], Prometheus's `targetgroup.Group`) over a
//! channel whenever what it knows changes. A group is identified by its
//! `source`; a later group with the same source replaces the earlier one, and
//! an empty group removes it. That is all a consumer needs to know, so the
//! scrape manager handles static targets, files, HTTP endpoints and DNS names
//! the same way.
//!
//! [`Discovery::start`] runs every provider of one `scrape_config`, keeps the
//! latest group per (provider, source) and publishes the whole set through a
//! `tokio::sync::watch` channel, at most once per `update_interval`
//! (Prometheus's discovery manager throttles to 5s the same way), so a burst
//! of file writes causes one target sync, not hundreds.
//!
//! Design choices:
//!
//! * **File discovery polls** ([`file::FileDiscoverer`]): it stats the matched
//!   files every `poll_interval` (1s by default) and re-reads when a file
//!   appears, disappears or changes size or mtime, plus every
//!   `refresh_interval`. A stat per file per second costs nothing next to a
//!   scrape, works the same on network and container file systems where
//!   inotify events do not arrive, and needs no extra dependency.
//! * **DNS uses a small resolver of our own** ([`dns`]): one UDP query per
//!   name and record type to the servers of `/etc/resolv.conf`, TCP when the
//!   answer is truncated. Service discovery only needs SRV, A, AAAA, MX and
//!   NS answers, not a caching stub resolver, and the code stays testable
//!   against a hand-written server on 127.0.0.1.
//! * **A failing refresh keeps the last good targets** (HTTP, DNS, a file
//!   that stops parsing), as in Prometheus; the error is logged and counted.

pub mod client;
pub mod dns;
pub mod file;
pub mod http;
pub mod kubernetes;
mod manager;

use std::future::Future;
use std::pin::Pin;

use pharos_model::labels::is_valid_label_name;
use pharos_model::{Labels, LabelsBuilder};
use serde::Deserialize;
use tokio::sync::mpsc;

pub use manager::{Discovery, DiscoveryOptions, static_groups};

/// The label holding a target's `host:port`.
pub const ADDRESS_LABEL: &str = "__address__";

/// A set of targets sharing labels, from one source of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetGroup {
    /// Identifies the group within its provider (a file and index, a URL
    /// and index, a DNS name). A newer group with the same source replaces
    /// the older one.
    pub source: String,
    /// One label set per target; each holds at least `__address__`.
    pub targets: Vec<Labels>,
    /// Labels common to every target of the group (a target's own labels
    /// win over them).
    pub labels: Labels,
}

impl TargetGroup {
    /// An empty group: tells the consumer that `source` has no targets any
    /// more.
    pub fn empty(source: impl Into<String>) -> TargetGroup {
        TargetGroup {
            source: source.into(),
            ..TargetGroup::default()
        }
    }
}

/// A boxed future, as providers return from [`Discoverer::run`].
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A discovery provider.
///
/// Contract: `run` sends the provider's complete current knowledge as soon
/// as it has it (possibly as several messages), then sends groups whenever
/// they change; a group with no targets removes its source. It returns when
/// the receiver is dropped (a failed `send`) or it has nothing more to
/// discover (static targets); the caller may also simply drop the future.
/// It must not block the runtime: file and network I/O are async or short.
pub trait Discoverer: Send + 'static {
    /// Runs the provider, sending updates into `tx`.
    fn run(self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture;
}

/// Why a discovery refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A file could not be read.
    #[error("error reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A target group list did not parse or was invalid.
    #[error("{0}")]
    Invalid(String),
    /// An HTTP request failed or answered badly.
    #[error("{0}")]
    Http(String),
    /// A DNS lookup failed.
    #[error("{0}")]
    Dns(String),
}

/// Static target groups: sent once.
pub struct StaticDiscoverer {
    groups: Vec<TargetGroup>,
}

impl StaticDiscoverer {
    /// A provider sending `groups` once.
    pub fn new(groups: Vec<TargetGroup>) -> StaticDiscoverer {
        StaticDiscoverer { groups }
    }
}

impl Discoverer for StaticDiscoverer {
    fn run(self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture {
        Box::pin(async move {
            let _ = tx.send(self.groups).await;
        })
    }
}

/// The target group format shared by files and HTTP endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

/// Which syntax a group list is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupFormat {
    /// `[{"targets": [...], "labels": {...}}]`.
    Json,
    /// The same structure in YAML.
    Yaml,
}

/// Parses a list of target groups (file_sd and http_sd format). Group `i`
/// gets source `{source_prefix}:{i}`; `extra` labels (`__meta_filepath`,
/// `__meta_url`) are added to every group's labels. Label names must be
/// valid; a target must not be empty.
pub fn parse_groups(
    text: &str,
    format: GroupFormat,
    source_prefix: &str,
    extra: &[(&str, &str)],
) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let raw: Vec<Option<RawGroup>> = match format {
        GroupFormat::Json => serde_json::from_str(text)
            .map_err(|e| DiscoveryError::Invalid(format!("error parsing JSON: {e}")))?,
        GroupFormat::Yaml => {
            let v: Option<Vec<Option<RawGroup>>> = serde_saphyr::from_str(text)
                .map_err(|e| DiscoveryError::Invalid(format!("error parsing YAML: {e}")))?;
            v.unwrap_or_default()
        }
    };
    let mut out = Vec::with_capacity(raw.len());
    for (i, g) in raw.into_iter().enumerate() {
        let Some(g) = g else {
            return Err(DiscoveryError::Invalid(format!("target group {i} is null")));
        };
        let mut b = LabelsBuilder::new();
        for (k, v) in g.labels.iter().flatten() {
            if !is_valid_label_name(k) {
                return Err(DiscoveryError::Invalid(format!(
                    "{k:?} is not a valid label name"
                )));
            }
            b.set(k, v);
        }
        for (k, v) in extra {
            b.set(k, v);
        }
        let mut targets = Vec::new();
        for t in g.targets.iter().flatten() {
            if t.is_empty() {
                return Err(DiscoveryError::Invalid(format!(
                    "target group {i} has an empty target"
                )));
            }
            targets.push(Labels::from_pairs(&[(ADDRESS_LABEL, t.as_str())]));
        }
        out.push(TargetGroup {
            source: format!("{source_prefix}:{i}"),
            targets,
            labels: b.build(),
        });
    }
    Ok(out)
}

/// The providers of a scrape job other than `static_configs`: file, HTTP,
/// Kubernetes and DNS discovery, in that order.
pub fn providers(
    cfg: &pharos_config::ScrapeConfig,
    opts: &DiscoveryOptions,
) -> Vec<Box<dyn Discoverer>> {
    let mut v: Vec<Box<dyn Discoverer>> = Vec::new();
    for f in &cfg.file_sd_configs {
        v.push(Box::new(file::FileDiscoverer::new(
            f,
            opts.file_poll_interval,
        )));
    }
    for h in &cfg.http_sd_configs {
        v.push(Box::new(http::HttpDiscoverer::new(h, &opts.user_agent)));
    }
    for k in &cfg.kubernetes_sd_configs {
        v.push(Box::new(kubernetes::KubernetesDiscoverer::new(
            k,
            &opts.user_agent,
        )));
    }
    for d in &cfg.dns_sd_configs {
        v.push(Box::new(dns::DnsDiscoverer::new(
            d,
            opts.dns_servers.clone(),
        )));
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_in_both_syntaxes() {
        let json = r#"[{"targets":["a:1","b:2"],"labels":{"env":"prod"}},{"targets":[]}]"#;
        let yaml = "- targets: [a:1, b:2]\n  labels:\n    env: prod\n- targets: []\n";
        for (text, f) in [(json, GroupFormat::Json), (yaml, GroupFormat::Yaml)] {
            let g = parse_groups(text, f, "f.json", &[("__meta_filepath", "f.json")]).unwrap();
            assert_eq!(g.len(), 2);
            assert_eq!(g[0].source, "f.json:0");
            assert_eq!(g[1].source, "f.json:1");
            assert_eq!(
                g[0].targets,
                vec![
                    Labels::from_pairs(&[("__address__", "a:1")]),
                    Labels::from_pairs(&[("__address__", "b:2")])
                ]
            );
            assert_eq!(
                g[0].labels,
                Labels::from_pairs(&[("__meta_filepath", "f.json"), ("env", "prod")])
            );
            assert!(g[1].targets.is_empty());
        }
    }

    #[test]
    fn bad_groups_are_errors() {
        for (text, f, needle) in [
            ("{", GroupFormat::Json, "error parsing JSON"),
            (
                r#"[{"targets":["a"],"x":1}]"#,
                GroupFormat::Json,
                "unknown field",
            ),
            (
                r#"[{"labels":{"0a":"b"}}]"#,
                GroupFormat::Json,
                "not a valid label name",
            ),
            (r#"[{"targets":[""]}]"#, GroupFormat::Json, "empty target"),
            ("- [", GroupFormat::Yaml, "error parsing YAML"),
            ("[null]", GroupFormat::Json, "is null"),
        ] {
            let e = parse_groups(text, f, "s", &[]).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
        assert!(
            parse_groups("", GroupFormat::Yaml, "s", &[])
                .unwrap()
                .is_empty()
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,200}") {
            let _ = parse_groups(&s, GroupFormat::Json, "s", &[]);
            let _ = parse_groups(&s, GroupFormat::Yaml, "s", &[]);
        }
    }
}
