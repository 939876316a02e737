//! Scrapes a real node_exporter (Debian `prometheus-node-exporter`) started
//! with its own web config: TLS with a self-signed certificate made here with
//! the `openssl` CLI, and basic auth with a bcrypt hash. Checks that the
//! right CA and password scrape, and that a wrong password, a missing CA and
//! a `server_name` the certificate does not cover fail with clear errors.
//!
//! When `prometheus-node-exporter` or `openssl` is not installed the test
//! prints a notice and passes (`.ci/run` installs both).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_scrape::{Health, ScrapeManager, ScrapeOptions, TargetStatus};

/// bcrypt (cost 4) of "s3cret".
const HASH: &str = "$2b$04$aRpTfXbD8L9KpXChVizzkeTI9q8JBK2ak3Ou6RqHoq09WdveXXX8q";

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn make_cert(dir: &Path) {
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=pharos-test",
            "-addext",
            "subjectAltName=DNS:localhost,DNS:node.test,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl failed");
}

fn start_exporter(dir: &Path, port: u16) -> Exporter {
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prom: '{HASH}'\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
    )
    .unwrap();
    let child = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--web.config.file={}", web.display()))
        .args([
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.uname",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let e = Exporter(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "node_exporter did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    e
}

fn job(name: &str, port: u16, body: &str) -> String {
    format!(
        "  - job_name: {name}\n    scheme: https\n    scrape_interval: 200ms\n    scrape_timeout: 150ms\n{body}    static_configs:\n      - targets: ['localhost:{port}']\n"
    )
}

async fn settled(m: &ScrapeManager, n: usize) -> Vec<TargetStatus> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ts = m.targets();
        if ts.len() == n && ts.iter().all(|t| t.health != Health::Unknown) {
            return ts;
        }
        assert!(Instant::now() < deadline, "targets not scraped: {ts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn scrapes_node_exporter_over_tls_with_basic_auth() {
    if !have("prometheus-node-exporter") || !have("openssl") {
        eprintln!("prometheus-node-exporter or openssl not installed; test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path());
    let port = free_port();
    let _exporter = start_exporter(dir.path(), port);
    let ca = dir.path().join("cert.pem").display().to_string();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();

    let yaml = format!(
        "scrape_configs:\n{}{}{}{}{}",
        job(
            "good",
            port,
            &format!(
                "    basic_auth:\n      username: prom\n      password_file: {}\n    tls_config:\n      ca_file: {ca}\n      min_version: TLS12\n",
                pw.display()
            )
        ),
        job(
            "wrong_password",
            port,
            &format!(
                "    basic_auth:\n      username: prom\n      password: nope\n    tls_config:\n      ca_file: {ca}\n"
            )
        ),
        job(
            "no_ca",
            port,
            "    basic_auth:\n      username: prom\n      password: s3cret\n"
        ),
        job(
            "insecure",
            port,
            "    basic_auth:\n      username: prom\n      password: s3cret\n    tls_config:\n      insecure_skip_verify: true\n"
        ),
        job(
            "wrong_server_name",
            port,
            &format!(
                "    basic_auth:\n      username: prom\n      password: s3cret\n    tls_config:\n      ca_file: {ca}\n      server_name: other.test\n"
            )
        ),
    );
    let cfg = pharos_config::load_str(&yaml, "test.yml").unwrap();
    let head = pharos_tsdb::Head::default();
    let m = ScrapeManager::new(
        Arc::new(head.clone()),
        ScrapeOptions {
            skip_offset: true,
            ..ScrapeOptions::default()
        },
    );
    m.apply_config(&cfg);
    let ts = settled(&m, 5).await;
    let by = |job: &str| ts.iter().find(|t| t.scrape_pool == job).unwrap().clone();

    let good = by("good");
    assert_eq!(good.health, Health::Up, "{}", good.last_error);
    assert_eq!(good.scrape_url, format!("https://localhost:{port}/metrics"));
    let insecure = by("insecure");
    assert_eq!(insecure.health, Health::Up, "{}", insecure.last_error);

    let wrong = by("wrong_password");
    assert_eq!(wrong.health, Health::Down);
    assert_eq!(
        wrong.last_error,
        "server returned HTTP status 401 Unauthorized"
    );
    for job in ["no_ca", "wrong_server_name"] {
        let t = by(job);
        assert_eq!(t.health, Health::Down, "{job}");
        assert!(
            t.last_error
                .contains(&format!("https://localhost:{port}/metrics")),
            "{job}: {}",
            t.last_error
        );
    }
    assert!(by("no_ca").last_error.contains("invalid peer certificate"));
    assert!(
        by("wrong_server_name")
            .last_error
            .contains("certificate not valid for name \"other.test\"")
    );
    m.stop().await;

    // The good job's samples reached storage.
    use pharos_storage::Queryable;
    let q = head.querier(i64::MIN, i64::MAX).unwrap();
    let matchers = [
        pharos_model::Matcher::equal("__name__", "node_load1"),
        pharos_model::Matcher::equal("job", "good"),
    ];
    let mut set = q.select(true, None, &matchers);
    assert!(set.next().is_some(), "no node_load1 from the good job");
}
