//! An HTTP client from `http_client` settings (a scrape job's, an HTTP or
//! Kubernetes discovery's): TLS (rustls with the
//! ring provider: CA file or the system bundle, client certificate,
//! `server_name`, `insecure_skip_verify`, `min_version`), redirects, HTTP/2,
//! proxy, and the per-request part (basic auth, `Authorization`, extra
//! headers) whose file-backed secrets are read at every scrape, so rotated
//! credentials apply without a reload, as in Prometheus.
//!
//! Differences from Go's client: TLS 1.0 and 1.1 are not offered (rustls
//! implements 1.2 and 1.3 only; `min_version: TLS10`/`TLS11` behave as
//! TLS12); `server_name` is used to verify the certificate while the SNI
//! sent is still the URL's host; certificate files are read when the pool
//! starts (a reload picks up new ones).

use std::sync::Arc;
use std::time::Duration;

use pharos_config::{HttpClientConfig, TlsConfig, TlsVersion};
use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where Go looks for the system's CA bundle on Linux, in order.
const SYSTEM_CA_FILES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A client plus what each request adds.
#[derive(Clone)]
pub struct HttpClient {
    /// The underlying client; send requests through
    /// [`HttpClient::decorate`] so credentials and headers are added.
    pub http: reqwest::Client,
    auth: Arc<HttpClientConfig>,
}

impl HttpClient {
    /// Builds the client for `cfg`. Errors name the file or setting.
    pub fn new(user_agent: &str, cfg: &HttpClientConfig) -> Result<HttpClient, String> {
        let mut b = reqwest::Client::builder()
            .user_agent(user_agent)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(if cfg.follow_redirects {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            })
            .tls_backend_preconfigured(rustls_config(&cfg.tls_config, cfg.enable_http2)?);
        if !cfg.enable_http2 {
            b = b.http1_only();
        }
        if let Some(p) = &cfg.proxy_url {
            b = b.proxy(
                reqwest::Proxy::all(p.as_str())
                    .map_err(|e| format!("invalid proxy URL {p:?}: {e}"))?,
            );
        }
        let http = b
            .build()
            .map_err(|e| format!("error creating HTTP client: {e}"))?;
        Ok(HttpClient {
            http,
            auth: Arc::new(cfg.clone()),
        })
    }

    /// Adds credentials and configured headers to a request.
    pub fn decorate(&self, mut rb: RequestBuilder) -> Result<RequestBuilder, String> {
        let cfg = &*self.auth;
        for (name, v) in &cfg.http_headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
            let mut vals: Vec<String> = v.values.iter().chain(&v.secrets).cloned().collect();
            for f in &v.files {
                vals.push(read_secret(f, "header")?);
            }
            for val in vals {
                let hv = HeaderValue::from_str(&val)
                    .map_err(|e| format!("invalid value for header {name}: {e}"))?;
                rb = rb.header(name.clone(), hv);
            }
        }
        if let Some(ba) = &cfg.basic_auth {
            let user = match &ba.username_file {
                Some(f) => read_secret(f, "basic auth username")?,
                None => ba.username.clone(),
            };
            let pass = match &ba.password_file {
                Some(f) => read_secret(f, "basic auth password")?,
                None => ba.password.clone(),
            };
            rb = rb.basic_auth(user, Some(pass));
        }
        if let Some(a) = &cfg.authorization {
            let cred = match &a.credentials_file {
                Some(f) => read_secret(f, "authorization credentials")?,
                None => a.credentials.clone(),
            };
            let hv = HeaderValue::from_str(&format!("{} {cred}", a.auth_type))
                .map_err(|e| format!("invalid authorization header: {e}"))?;
            rb = rb.header(AUTHORIZATION, hv);
        }
        Ok(rb)
    }
}

/// Reads a secret file, trimming surrounding white space.
fn read_secret(path: &str, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("unable to read {what} file {path}: {e}"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| format!("unable to parse {what}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "unable to use specified {what}: no certificates found"
        ));
    }
    Ok(certs)
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("unable to read {what} file {path}: {e}"))
}

/// The rustls configuration for `tls`, offering HTTP/2 by ALPN when
/// `http2`.
pub fn rustls_config(tls: &TlsConfig, http2: bool) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls.min_version == Some(TlsVersion::Tls13) {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup: {e}"))?;

    let mut roots = RootCertStore::empty();
    let ca_pem = match (&tls.ca_file, tls.ca.is_empty()) {
        (Some(f), _) => Some((read_file(f, "CA")?, format!("CA file {f}"))),
        (None, false) => Some((tls.ca.as_bytes().to_vec(), "CA".to_string())),
        (None, true) => None,
    };
    let mut pinned = Vec::new();
    match ca_pem {
        Some((pem, what)) => {
            for c in load_certs(&pem, &what)? {
                // A self-signed server certificate given as its own CA is
                // trusted as is, as Go does; webpki alone would refuse it.
                pinned.push(c.clone());
                roots
                    .add(c)
                    .map_err(|e| format!("unable to use specified {what}: {e}"))?;
            }
        }
        None => {
            if let Some(pem) = SYSTEM_CA_FILES.iter().find_map(|f| std::fs::read(f).ok()) {
                let (_added, _ignored) = roots.add_parsable_certificates(
                    CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok),
                );
            }
        }
    }

    let algs = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(NoVerify(algs))
    } else {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("TLS setup: {e}"))?;
        let name = match &tls.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| format!("invalid server_name {n:?}: {e}"))?,
            ),
            None => None,
        };
        Arc::new(Verifier {
            inner,
            pinned,
            name,
        })
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);

    let cert_pem = match (&tls.cert_file, tls.cert.is_empty()) {
        (Some(f), _) => Some(read_file(f, "client cert")?),
        (None, false) => Some(tls.cert.as_bytes().to_vec()),
        (None, true) => None,
    };
    let mut config = match cert_pem {
        Some(cert_pem) => {
            let key_pem = match &tls.key_file {
                Some(f) => read_file(f, "client key")?,
                None => tls.key.as_bytes().to_vec(),
            };
            let certs = load_certs(&cert_pem, "client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| format!("unable to parse client key: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("unable to use client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// Verifies the chain with webpki against the configured `server_name`
/// (or the URL's host); a certificate that is itself one of the configured
/// CA certificates is trusted directly, its name still checked.
#[derive(Debug)]
struct Verifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
    name: Option<ServerName<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.name.as_ref().unwrap_or(server_name);
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, name)?;
            return Ok(ServerCertVerified::assertion());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate and name is accepted; the
/// handshake signatures are still checked (as Go does).
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
