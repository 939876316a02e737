//! Serves the web UI and API over an in-memory TSDB head filled with a few
//! synthetic series (the last 3 hours at 15s), for working on the UI
//! without running scrapes: `cargo run -p pharos-web --example ui_demo [ADDR]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use pharos_model::Labels;
use pharos_model::sample::now_millis;
use pharos_promql::{Engine, EngineOptions};
use pharos_storage::Appendable;
use pharos_tsdb::Head;
use pharos_web::{ApiContext, NoTargets};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9099".to_string());
    let head = Head::default();
    let now = now_millis();
    let mut app = head.appender();
    for i in 0..4 {
        let wave = Labels::from_pairs(&[("__name__", "demo_wave"), ("shard", &i.to_string())]);
        let counter = Labels::from_pairs(&[
            ("__name__", "demo_requests_total"),
            ("shard", &i.to_string()),
        ]);
        let mut t = now - 3 * 3600 * 1000;
        let mut total = 0.0;
        while t <= now {
            let x = t as f64 / 600_000.0 + i as f64;
            app.append(0, &wave, t, 100.0 * (i + 1) as f64 + 50.0 * x.sin())
                .unwrap();
            total += 10.0 + 5.0 * (x * 3.0).cos() + i as f64;
            app.append(0, &counter, t, total).unwrap();
            t += 15_000;
        }
    }
    app.commit().unwrap();

    let ctx = ApiContext {
        engine: Arc::new(Engine::new(EngineOptions::default())),
        queryable: Arc::new(head),
        targets: Arc::new(NoTargets),
        config_yaml: Arc::new(|| "# ui_demo: no configuration\n".to_string()),
        metrics: Arc::new(|_: &mut String| {}),
        ready: Arc::new(AtomicBool::new(true)),
        external_url: format!("http://{addr}/"),
        max_concurrency: 4,
        metadata: Arc::new(NoTargets),
        flags: Arc::new(Default::default()),
        runtime_info: Arc::new(|| pharos_web::RuntimeInfo {
            start_time: std::time::SystemTime::now(),
            cwd: String::new(),
            reload_config_success: true,
            last_config_time: None,
            corruption_count: 0,
            storage_retention: String::new(),
        }),
        exemplars: None,
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("serving on http://{}/", listener.local_addr()?);
    pharos_web::serve(listener, ctx, std::future::pending()).await
}
