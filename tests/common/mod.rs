//! Shared harness for the end-to-end tests: starts the real `pharos` binary
//! on a free port, serves fixture targets, and speaks plain HTTP/1.1 with
//! std only (no async runtime needed in tests).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// A running pharos process; killed on drop.
pub struct Pharos {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
}

impl Pharos {
    /// Starts pharos listening on 127.0.0.1:0 with `args`, and waits for it
    /// to log its address.
    pub fn start(config: Option<&str>, extra: &[&str]) -> Pharos {
        Pharos::start_at(None, config, extra)
    }

    /// [`Pharos::start`] on the data directory `data` (for restarts);
    /// `None` is a fresh one under the temporary directory.
    pub fn start_at(data: Option<&Path>, config: Option<&str>, extra: &[&str]) -> Pharos {
        let dir = tempfile::tempdir().unwrap();
        let data = data.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pharos"));
        cmd.arg("--web.listen-address=127.0.0.1:0")
            .arg(format!("--storage.tsdb.path={}", data.display()));
        if let Some(c) = config {
            let p = dir.path().join("prometheus.yml");
            std::fs::write(&p, c).unwrap();
            cmd.arg(format!("--config.file={}", p.display()));
        }
        cmd.args(extra).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start pharos");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(i) = line.find("address=") {
                        let a: String = line[i + 8..]
                            .chars()
                            .take_while(|c| !c.is_whitespace())
                            .collect();
                        let _ = tx.send(a);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "pharos did not log its address; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        // The API answers 503 until the server is ready (as Prometheus's
        // does), so wait for /-/ready before handing the server out.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while http_get(&addr, "/-/ready").0 != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "pharos never became ready; log:\n{}",
                log.lock().unwrap().join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
        Pharos {
            child,
            addr,
            log,
            dir,
            data,
        }
    }

    /// GET `path`, returning status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path)
    }

    /// GET an API path and parse the JSON envelope.
    pub fn api(&self, path: &str) -> (u16, serde_json::Value) {
        let (s, b) = self.get(path);
        let v =
            serde_json::from_str(&b).unwrap_or_else(|e| panic!("bad JSON from {path} ({e}): {b}"));
        (s, v)
    }

    /// Runs an instant query and returns `data.result`.
    pub fn query(&self, q: &str) -> serde_json::Value {
        let (s, v) = self.api(&format!("/api/v1/query?query={}", urlencode(q)));
        assert_eq!(s, 200, "query {q} failed: {v}");
        v["data"]["result"].clone()
    }

    /// Polls `q` until `pred` holds on its result, or panics after `timeout`.
    pub fn wait_for(
        &self,
        q: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let r = self.query(q);
            if pred(&r) {
                return r;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out waiting on {q}; last result {r}; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends SIGTERM and waits for exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }
}

impl Drop for Pharos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Minimal HTTP/1.1 GET (Connection: close).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, None, "")
}

/// Minimal HTTP/1.1 request with an optional content type and body.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = ctype {
        req.push_str(&format!("Content-Type: {c}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = b.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        b = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A scrape target serving whatever page it currently holds.
pub struct Fixture {
    pub addr: String,
    pub page: Arc<Mutex<String>>,
    pub status: Arc<Mutex<u16>>,
    stop: Arc<Mutex<bool>>,
}

impl Fixture {
    pub fn start(page: &str) -> Fixture {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let page = Arc::new(Mutex::new(page.to_string()));
        let status = Arc::new(Mutex::new(200u16));
        let stop = Arc::new(Mutex::new(false));
        let (p, st, sp) = (page.clone(), status.clone(), stop.clone());
        thread::spawn(move || {
            for conn in l.incoming() {
                if *sp.lock().unwrap() {
                    return;
                }
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = p.lock().unwrap().clone();
                let code = *st.lock().unwrap();
                let resp = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(resp.as_bytes());
            }
        });
        Fixture {
            addr,
            page,
            status,
            stop,
        }
    }

    pub fn set_page(&self, page: &str) {
        *self.page.lock().unwrap() = page.to_string();
    }

    /// Stops accepting: later connections are refused.
    pub fn shutdown(&self) {
        *self.stop.lock().unwrap() = true;
        let _ = TcpStream::connect(&self.addr); // wake the accept loop
    }
}

/// Path of the shared reference folder (`../shared` beside the checkout).
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// True when running under CI, where every peer must be present.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Whether `bin` is on PATH.
pub fn have(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
