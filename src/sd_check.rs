//! `pharos check service-discovery CONFIG JOB`: runs the job's service
//! discovery once and prints every target's discovered labels and its
//! labels after `relabel_configs`, as a JSON array shaped like promtool's
//! (`discoveredLabels`, `labels`, and `error` when the target cannot be
//! scraped; `labels` is `{}` for a dropped target).
//!
//! Unlike promtool, which always listens for the whole `--timeout`, pharos
//! stops as soon as every provider has reported once (each provider's first
//! message is its complete knowledge), so a check of static and file targets
//! returns at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use pharos_discovery::{Discoverer, DiscoveryOptions, StaticDiscoverer, TargetGroup};
use pharos_model::Labels;

/// Runs the check; the exit code is 1 on a configuration problem or an
/// unknown job.
pub fn run(config: &Path, job: &str, timeout: &str) -> ExitCode {
    let timeout = match pharos_model::Duration::parse(timeout) {
        Ok(d) if d.millis() > 0 => d.to_std(),
        _ => {
            eprintln!("invalid --timeout {timeout:?}");
            return ExitCode::from(1);
        }
    };
    let cfg = match pharos_config::load_file(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Cannot load config {e}");
            return ExitCode::from(1);
        }
    };
    let Some(sc) = cfg.scrape_configs.iter().find(|j| j.job_name == job) else {
        eprintln!("Job {job} not found. Select one of:");
        for j in &cfg.scrape_configs {
            eprintln!("\t{}", j.job_name);
        }
        return ExitCode::from(1);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let groups = rt.block_on(discover(sc, timeout));
    let mut results: Vec<String> = Vec::new();
    for g in &groups {
        for t in &g.targets {
            let (discovered, relabeled) = pharos_scrape::relabel_target(sc, t, &g.labels);
            let (labels, error) = match relabeled {
                Ok(Some(l)) => (l, None),
                Ok(None) => (Labels::empty(), None),
                Err(e) => (Labels::empty(), Some(e)),
            };
            let r = result_json(&discovered, &labels, error.as_deref());
            if !results.contains(&r) {
                results.push(r);
            }
        }
    }
    if results.is_empty() {
        println!("[]");
    } else {
        println!("[\n{}\n]", results.join(",\n"));
    }
    ExitCode::SUCCESS
}

/// Collects the groups of every provider of `sc`, until each has reported
/// once or `timeout` passes.
async fn discover(sc: &pharos_config::ScrapeConfig, timeout: Duration) -> Vec<TargetGroup> {
    let opts = DiscoveryOptions::default();
    let mut providers: Vec<Box<dyn Discoverer>> = vec![Box::new(StaticDiscoverer::new(
        pharos_discovery::static_groups(sc),
    ))];
    providers.extend(pharos_discovery::providers(sc, &opts));
    let mut receivers = Vec::new();
    let mut tasks = Vec::new();
    for p in providers {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tasks.push(tokio::spawn(p.run(tx)));
        receivers.push(rx);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut by_source: BTreeMap<(usize, String), TargetGroup> = BTreeMap::new();
    for (i, rx) in receivers.iter_mut().enumerate() {
        if let Ok(Some(groups)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            for g in groups {
                by_source.insert((i, g.source.clone()), g);
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    by_source.into_values().collect()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A labels object indented as Go's `json.MarshalIndent(.., "", "  ")`
/// at depth 2.
fn labels_json(l: &Labels) -> String {
    if l.is_empty() {
        return "{}".to_string();
    }
    let body: Vec<String> = l
        .iter()
        .map(|l| format!("      {}: {}", json_string(l.name), json_string(l.value)))
        .collect();
    format!("{{\n{}\n    }}", body.join(",\n"))
}

fn result_json(discovered: &Labels, labels: &Labels, error: Option<&str>) -> String {
    let mut s = format!(
        "  {{\n    \"discoveredLabels\": {},\n    \"labels\": {}",
        labels_json(discovered),
        labels_json(labels)
    );
    if let Some(e) = error {
        s.push_str(&format!(",\n    \"error\": {}", json_string(e)));
    }
    s.push_str("\n  }");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let d = Labels::from_pairs(&[("__address__", "a:1"), ("job", "j<\"x\">")]);
        assert_eq!(
            result_json(&d, &Labels::empty(), Some("no address")),
            "  {\n    \"discoveredLabels\": {\n      \"__address__\": \"a:1\",\n      \"job\": \"j\\u003c\\\"x\\\"\\u003e\"\n    },\n    \"labels\": {},\n    \"error\": \"no address\"\n  }"
        );
    }
}
