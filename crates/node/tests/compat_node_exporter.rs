//! Compares the host collector with the real node_exporter (Debian package
//! `prometheus-node-exporter`) on this machine: every family pharos renders
//! must exist in node_exporter's output with the same type, help text and
//! label names. Skipped with a notice when node_exporter is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// family name -> (type, help, label-name sets seen)
type Families = BTreeMap<String, (String, String, BTreeSet<Vec<String>>)>;

fn families(text: &str) -> Families {
    let mut out: Families = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().1 = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap();
            out.entry(name.to_string()).or_default().0 = t.to_string();
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            let mut labels = Vec::new();
            if line[name_end..].starts_with('{') {
                let inner = &line[name_end + 1..line.rfind('}').unwrap()];
                for pair in inner.split("\",") {
                    if let Some((k, _)) = pair.split_once('=') {
                        labels.push(k.to_string());
                    }
                }
            }
            out.entry(name.to_string()).or_default().2.insert(labels);
        }
    }
    out
}

/// A minimal HTTP/1.0 GET of `/metrics`; the body, if the answer is 200.
fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

#[test]
fn families_match_node_exporter() {
    let have = Command::new("sh")
        .args(["-c", "command -v prometheus-node-exporter"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have || !std::path::Path::new("/proc/stat").exists() {
        eprintln!("prometheus-node-exporter not installed (or no /proc); test skipped");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args([
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.stat",
            "--collector.meminfo",
            "--collector.loadavg",
            "--collector.diskstats",
            "--collector.netdev",
            "--no-collector.netdev.netlink",
            "--collector.filesystem",
            "--collector.time",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let theirs = loop {
        if let Some(body) = http_get(port) {
            break body;
        }
        assert!(Instant::now() < deadline, "node_exporter did not answer");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let theirs = families(&theirs);

    let mut ours = String::new();
    pharos_node::HostCollector::new().write(&mut ours);
    let ours = families(&ours);
    assert!(ours.len() > 30, "too few families: {}", ours.len());
    let mut checked = 0;
    for (name, (t, help, label_sets)) in &ours {
        let Some((tt, th, their_sets)) = theirs.get(name) else {
            panic!("{name} is not produced by node_exporter");
        };
        assert_eq!(t, tt, "type of {name}");
        if name != "node_scrape_collector_success" {
            assert_eq!(help, th, "help of {name}");
        }
        for ls in label_sets {
            assert!(
                their_sets.contains(ls),
                "{name}: labels {ls:?} not in node_exporter's {their_sets:?}"
            );
        }
        checked += 1;
    }
    eprintln!("{checked} families agree with node_exporter");
}
