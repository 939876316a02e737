//! `http_sd_configs`: target groups fetched as JSON from a URL every
//! `refresh_interval`. A failed fetch keeps the last good targets.

use std::time::Duration;

use pharos_config::HttpSdConfig;
use tokio::sync::mpsc;

use crate::{BoxFuture, Discoverer, DiscoveryError, GroupFormat, TargetGroup, parse_groups};

/// The label naming the URL a target came from.
pub const URL_LABEL: &str = "__meta_url";

/// Discovers targets from an HTTP endpoint.
pub struct HttpDiscoverer {
    url: String,
    refresh: Duration,
    user_agent: String,
    http_client: pharos_config::HttpClientConfig,
}

impl HttpDiscoverer {
    /// A provider for `cfg`.
    pub fn new(cfg: &HttpSdConfig, user_agent: &str) -> HttpDiscoverer {
        HttpDiscoverer {
            url: cfg.url.clone(),
            refresh: Duration::from_millis(u64::try_from(cfg.refresh_interval.0).unwrap_or(0))
                .max(Duration::from_millis(1)),
            user_agent: user_agent.to_string(),
            http_client: cfg.http_client.clone(),
        }
    }

    /// The client for this endpoint's `http_client` settings.
    pub fn client(&self) -> Result<crate::client::HttpClient, DiscoveryError> {
        crate::client::HttpClient::new(&self.user_agent, &self.http_client)
            .map_err(DiscoveryError::Http)
    }

    /// One fetch: the groups the endpoint lists now.
    pub async fn fetch(
        &self,
        client: &crate::client::HttpClient,
    ) -> Result<Vec<TargetGroup>, DiscoveryError> {
        let req = client
            .decorate(client.http.get(&self.url))
            .map_err(DiscoveryError::Http)?;
        let resp = req
            .header("Accept", "application/json")
            .header(
                "X-Prometheus-Refresh-Interval-Seconds",
                self.refresh.as_secs().to_string(),
            )
            .timeout(self.refresh.max(Duration::from_secs(1)))
            .send()
            .await
            .map_err(|e| DiscoveryError::Http(format!("Get {:?}: {e}", self.url)))?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(DiscoveryError::Http(format!(
                "server returned HTTP status {status}"
            )));
        }
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return Err(DiscoveryError::Http(format!(
                "unsupported content type {ct:?}"
            )));
        }
        let body = resp
            .text()
            .await
            .map_err(|e| DiscoveryError::Http(format!("reading {:?}: {e}", self.url)))?;
        parse_groups(
            &body,
            GroupFormat::Json,
            &self.url,
            &[(URL_LABEL, &self.url)],
        )
    }
}

impl Discoverer for HttpDiscoverer {
    fn run(self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture {
        Box::pin(async move {
            let client = match self.client() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(url = %self.url, err = %e, "Cannot create HTTP SD client");
                    return;
                }
            };
            let mut last = 0usize;
            loop {
                match self.fetch(&client).await {
                    Ok(mut groups) => {
                        // Groups past the new end are gone.
                        let n = groups.len();
                        for i in n..last {
                            groups.push(TargetGroup::empty(format!("{}:{i}", self.url)));
                        }
                        last = n;
                        if tx.send(groups).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(url = %self.url, err = %e, "Unable to refresh target groups");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.refresh) => {}
                    _ = tx.closed() => return,
                }
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{HeaderMap, StatusCode, header};
    use axum::routing::get;
    use pharos_model::Labels;

    /// Serves a scripted sequence of responses, the last one repeated.
    async fn serve(responses: Vec<(StatusCode, &'static str, &'static str)>) -> String {
        let n = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/sd",
            get(move |h: HeaderMap| {
                let n = n.clone();
                let responses = responses.clone();
                async move {
                    assert_eq!(h.get("x-prometheus-refresh-interval-seconds").unwrap(), "0");
                    let i = n.fetch_add(1, Ordering::SeqCst).min(responses.len() - 1);
                    let (s, ct, body) = responses[i];
                    (s, [(header::CONTENT_TYPE, ct)], body)
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}/sd")
    }

    async fn next(rx: &mut mpsc::Receiver<Vec<TargetGroup>>) -> Vec<TargetGroup> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no update within 5s")
            .unwrap()
    }

    #[tokio::test]
    async fn refreshes_keeps_last_good_and_removes_groups() {
        let json = "application/json";
        let url = serve(vec![
            (
                StatusCode::OK,
                json,
                r#"[{"targets":["a:1"],"labels":{"x":"1"}},{"targets":["b:1"]}]"#,
            ),
            (StatusCode::INTERNAL_SERVER_ERROR, json, "oops"),
            (StatusCode::OK, "text/plain", "[]"),
            (
                StatusCode::OK,
                "application/json; charset=utf-8",
                r#"[{"targets":["c:1"]}]"#,
            ),
        ])
        .await;
        let cfg = HttpSdConfig {
            url: url.clone(),
            refresh_interval: pharos_model::Duration(30),
            http_client: Default::default(),
        };
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(Box::new(HttpDiscoverer::new(&cfg, "test")).run(tx));
        let first = next(&mut rx).await;
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].source, format!("{url}:0"));
        assert_eq!(
            first[0].labels,
            Labels::from_pairs(&[("__meta_url", url.as_str()), ("x", "1")])
        );
        // The two failures send nothing; the next good answer replaces group
        // 0 and empties group 1.
        let second = next(&mut rx).await;
        assert_eq!(second.len(), 2);
        assert_eq!(
            second[0].targets,
            vec![Labels::from_pairs(&[("__address__", "c:1")])]
        );
        assert_eq!(second[1], TargetGroup::empty(format!("{url}:1")));
    }

    #[tokio::test]
    async fn errors_name_the_problem() {
        let url = serve(vec![(StatusCode::OK, "text/html", "<html>")]).await;
        let d = HttpDiscoverer::new(
            &HttpSdConfig {
                url,
                refresh_interval: pharos_model::Duration(100),
                http_client: Default::default(),
            },
            "t",
        );
        let e = d.fetch(&d.client().unwrap()).await.unwrap_err();
        assert_eq!(e.to_string(), "unsupported content type \"text/html\"");
    }

    #[tokio::test]
    async fn http_client_settings_apply() {
        let app = axum::Router::new().route(
            "/sd",
            get(|h: HeaderMap| async move {
                let auth = h
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                let team = h.get("x-team").map(|v| v.to_str().unwrap().to_string());
                if auth.as_deref() == Some("Basic dTpw") && team.as_deref() == Some("blue") {
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        r#"[{"targets":["x:1"]}]"#,
                    )
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::CONTENT_TYPE, "text/plain")],
                        "no",
                    )
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let cfg = pharos_config::load_str(
            &format!(
                "scrape_configs:\n  - job_name: j\n    http_sd_configs:\n      - url: http://{addr}/sd\n        basic_auth: {{username: u, password: p}}\n        http_headers:\n          X-Team: {{values: [blue]}}\n"
            ),
            "t.yml",
        )
        .unwrap();
        let d = HttpDiscoverer::new(&cfg.scrape_configs[0].http_sd_configs[0], "t");
        let groups = d.fetch(&d.client().unwrap()).await.unwrap();
        assert_eq!(groups[0].targets.len(), 1);
        let plain = HttpDiscoverer::new(
            &HttpSdConfig {
                url: format!("http://{addr}/sd"),
                refresh_interval: pharos_model::Duration(1000),
                http_client: Default::default(),
            },
            "t",
        );
        let e = plain.fetch(&plain.client().unwrap()).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "server returned HTTP status 401 Unauthorized"
        );
    }
}
