//! The `for` state of a pending alert survives a restart: the restarted
//! server reads `ALERTS_FOR_STATE` back (within
//! `--rules.alert.for-outage-tolerance`) and moves the alert's `activeAt`
//! forward by the downtime instead of starting the `for` period over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Fixture, http_get};

struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path, cfg: &Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pharos"))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--config.file={}", cfg.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("address=") {
                let a: String = line[i + 8..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let _ = tx.send(a);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("pharos did not start");
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_get(&addr, "/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "pharos never became ready");
        thread::sleep(Duration::from_millis(20));
    }
    Proc { child, addr }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff...]Z` to Unix milliseconds.
fn rfc3339_ms(s: &str) -> i64 {
    let p = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i64>().ok()).unwrap_or(0);
    let (y, mo, d, h, mi, se) = (p(0, 4), p(5, 7), p(8, 10), p(11, 13), p(14, 16), p(17, 19));
    let frac: String = s
        .get(20..)
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let ms = format!("{frac:0<3}")[..3].parse::<i64>().unwrap_or(0);
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms
}

/// `activeAt` (ms) of the `Held` alert and the number of
/// `ALERTS_FOR_STATE` series, if the alert is listed.
fn held(addr: &str) -> Option<(i64, String)> {
    let (code, body) = http_get(addr, "/api/v1/alerts");
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let a = v["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == "Held")?
        .clone();
    Some((
        rfc3339_ms(a["activeAt"].as_str()?),
        a["state"].as_str()?.to_string(),
    ))
}

fn for_state_written(addr: &str) -> bool {
    let (_, body) = http_get(addr, "/api/v1/query?query=ALERTS_FOR_STATE");
    body.contains("\"alertname\":\"Held\"")
}

#[test]
fn for_state_is_restored_after_a_restart() {
    let fixture = Fixture::start("# TYPE held gauge\nheld 1\n");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Held\n        expr: held > 0\n        for: 15m\n",
    )
    .unwrap();
    let cfg = dir.path().join("p.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: h\n    static_configs:\n      - targets: ['{}']\n",
            rules.display(),
            fixture.addr
        ),
    )
    .unwrap();
    let data = dir.path().join("data");

    // First run: pending, and its ALERTS_FOR_STATE written.
    let a = start(&data, &cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !for_state_written(&a.addr) {
        assert!(Instant::now() < deadline, "ALERTS_FOR_STATE never written");
        thread::sleep(Duration::from_millis(200));
    }
    thread::sleep(Duration::from_secs(2));
    let (active_a, state) = held(&a.addr).expect("Held listed");
    assert_eq!(state, "pending");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(a.child.id().to_string())
        .status();
    drop(a);
    thread::sleep(Duration::from_secs(2));

    // Second run on the same data: after the restore, activeAt lies before
    // the restart (shifted by the downtime), not at the first evaluation.
    let restart = now_ms();
    let b = start(&data, &cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    let restored = loop {
        if let Some((t, _)) = held(&b.addr)
            && t < restart
        {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "activeAt was never restored: {:?} (first run {active_a}, restart {restart})",
            held(&b.addr)
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        restored > active_a,
        "activeAt moves forward by the downtime: {restored} vs {active_a}"
    );
    // Time already spent pending (about 3 s or more) is kept.
    assert!(restart - restored >= 1_000, "{restart} - {restored}");
}
