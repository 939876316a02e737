//! End-to-end: `pharos query instant|range|series|labels` against a running
//! pharos, in both output formats, and its error reporting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Fixture, Pharos};

fn pharos_query(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pharos"))
        .arg("query")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn query_subcommands() {
    let fx = Fixture::start("# TYPE cli_temp gauge\ncli_temp{room=\"a\"} 21.5\n");
    let cfg = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cli\n    static_configs:\n      - targets: ['{}']\n",
        fx.addr
    );
    let p = Pharos::start(Some(&cfg), &[]);
    p.wait_for("cli_temp", Duration::from_secs(30), |r| {
        r.as_array().is_some_and(|a| a.len() == 1)
    });
    let url = format!("http://{}", p.addr);

    let (code, out, err) = pharos_query(&["instant", &url, "cli_temp"]);
    assert_eq!(code, 0, "{err}");
    let want = format!(
        "cli_temp{{instance=\"{}\", job=\"cli\", room=\"a\"}} => 21.5 @[",
        fx.addr
    );
    assert!(out.starts_with(&want), "{out}");
    assert!(out.ends_with("]\n"), "{out}");

    let (code, out, _) = pharos_query(&["instant", "-o", "json", "--time", "1e9", &url, "1+1"]);
    assert_eq!(code, 0);
    assert_eq!(out, "[1000000000,\"2\"]\n");

    let (code, out, err) = pharos_query(&["range", "--step", "1s", &url, "cli_temp"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert!(lines.next().unwrap().ends_with("room=\"a\"} =>"), "{out}");
    assert!(lines.next().unwrap().starts_with("21.5 @["), "{out}");

    let (code, out, _) = pharos_query(&["series", "--match", "cli_temp", &url]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "{{__name__=\"cli_temp\", instance=\"{}\", job=\"cli\", room=\"a\"}}\n",
            fx.addr
        )
    );
    let (code, out, _) = pharos_query(&["labels", "-o", "json", &url, "room"]);
    assert_eq!(code, 0);
    assert_eq!(out, "[\"a\"]\n");
    let (code, out, _) = pharos_query(&["labels", &url, "job"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "cli"), "{out}");

    let (code, _, err) = pharos_query(&["instant", &url, "sum("]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "query error: bad_data: invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"
        ),
        "{err}"
    );
    let (code, _, err) = pharos_query(&["instant", "localhost:1", "up"]);
    assert_eq!(code, 1);
    assert!(err.contains("must start with http://"), "{err}");
}
