//! The HTTP transport for the request catalogues: one generic [`ApiClient::call`] sends any
//! [`Request`] to a manager or a node agent and parses its answer or its [`ErrorBody`].

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{ErrorBody, ErrorCode};
use crate::request::{Method, Request, Timeout};

/// How a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: refused, reset, timed out.
    #[error("no answer from {url}: {}", causes(source))]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{}", body.message)]
    Api { status: u16, body: ErrorBody },
    /// The server answered something this client cannot read.
    #[error("unreadable answer from {url}: {message}")]
    BadAnswer { url: String, message: String },
}

impl ClientError {
    /// The error's code; `unavailable` when the server did not answer.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Unreachable { .. } => ErrorCode::Unavailable,
            ClientError::Api { body, .. } => body.code,
            ClientError::BadAnswer { .. } => ErrorCode::Internal,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What the server said (or what went wrong on the way), without the URL.
    pub fn message(&self) -> String {
        match self {
            ClientError::Api { body, .. } => body.message.clone(),
            other => other.to_string(),
        }
    }
}

/// An error with what caused it, down the chain ("error sending request: ... invalid peer
/// certificate: UnknownIssuer"), so a TLS or connection problem says which it is.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// The environment variable naming a PEM file of certificate authorities to trust for
/// `https://` servers, besides the system's (a manager with a self-signed certificate).
pub const CA_CERT_ENV: &str = "IRONHORN_CA_CERT";

/// The system's certificate authorities (Debian's bundle).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS settings of every client: the system's authorities, those in
/// `$IRONHORN_CA_CERT` and those in `also` (a server trusting its own certificate for calls
/// to itself). A file that cannot be read leaves its authorities out, said on standard error:
/// calls to servers they signed then fail naming the certificate.
fn tls_config(also: Option<&std::path::Path>) -> Option<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let mut files = vec![std::path::PathBuf::from(SYSTEM_ROOTS)];
    let extra: Vec<std::path::PathBuf> = std::env::var_os(CA_CERT_ENV)
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(also.map(std::path::Path::to_path_buf))
        .collect();
    files.extend(extra.iter().cloned());
    for file in files {
        let certs =
            CertificateDer::pem_file_iter(&file).and_then(|it| it.collect::<Result<Vec<_>, _>>());
        match certs {
            Ok(certs) => {
                roots.add_parsable_certificates(certs);
            }
            Err(e) if extra.contains(&file) => {
                eprintln!("warning: trusted certificates in {}: {e}", file.display());
            }
            Err(_) => {}
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // Fails only for a provider without the default protocol versions, which this is not;
    // the client then speaks plain HTTP only.
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(config)
}

fn http_client(also_trusted: Option<&std::path::Path>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30));
    if let Some(tls) = tls_config(also_trusted) {
        builder = builder.use_preconfigured_tls(tls);
    }
    builder.build().unwrap_or_default()
}

/// The durations behind [`Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub short: Duration,
    pub normal: Duration,
    pub long: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            short: Duration::from_secs(5),
            normal: Duration::from_secs(30),
            long: Duration::from_secs(24 * 3600),
        }
    }
}

/// An HTTP client for the Ironhorn APIs. Cheap to clone; connections are kept alive.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    timeouts: Timeouts,
    /// Sent as `Authorization: Bearer ...` with every call.
    bearer: Option<std::sync::Arc<str>>,
}

impl Default for ApiClient {
    fn default() -> Self {
        ApiClient::new(Timeouts::default())
    }
}

impl ApiClient {
    pub fn new(timeouts: Timeouts) -> ApiClient {
        ApiClient {
            http: http_client(None),
            timeouts,
            bearer: None,
        }
    }

    /// The same client, trusting also the certificates (PEM) in `ca`.
    pub fn trusting(mut self, ca: &std::path::Path) -> ApiClient {
        self.http = http_client(Some(ca));
        self
    }

    /// The same client, sending `token` as its credentials (an API token, or the cluster
    /// secret between the manager and node agents).
    pub fn with_bearer(mut self, token: Option<&str>) -> ApiClient {
        self.bearer = token.map(std::sync::Arc::from);
        self
    }

    /// Sends `request` to the server at `base` (`http://host:port`, or `host:port`).
    pub async fn call<R: DeserializeOwned>(
        &self,
        base: &str,
        mut request: Request<R>,
    ) -> Result<R, ClientError> {
        let base = base.trim_end_matches('/');
        let url = if base.contains("://") {
            format!("{base}{}", request.path)
        } else {
            format!("http://{base}{}", request.path)
        };
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let timeout = match request.timeout {
            Timeout::Short => self.timeouts.short,
            Timeout::Normal => self.timeouts.normal,
            Timeout::Long => self.timeouts.long,
        };
        let mut http = self.http.request(method, &url).timeout(timeout);
        if let Some(token) = &self.bearer {
            http = http.bearer_auth(token);
        }
        if let Some(body) = request.body.take() {
            http = http
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let unreachable = |source| ClientError::Unreachable {
            url: url.clone(),
            source,
        };
        let response = http.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(unreachable)?;
        if !(200..300).contains(&status) {
            let body = serde_json::from_slice::<ErrorBody>(&body).unwrap_or_else(|_| {
                ErrorBody::new(
                    ErrorCode::from_http_status(status),
                    String::from_utf8_lossy(&body).trim().to_string(),
                )
            });
            return Err(ClientError::Api { status, body });
        }
        request
            .parse_answer(&body)
            .map_err(|e| ClientError::BadAnswer {
                url: url.clone(),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::node_api;

    /// A one-shot HTTP server on loopback: answers the first request with `answer` (status
    /// line, headers, body) and hands back what it received.
    async fn serve_once(status: &str, body: &str) -> (String, tokio::task::JoinHandle<String>) {
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            // The whole request: headers, then as many body bytes as Content-Length says.
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                received.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&received).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if received.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&received).to_string()
        });
        (address, task)
    }

    #[tokio::test]
    async fn a_request_goes_out_as_described_and_its_answer_is_parsed() {
        let (address, server) = serve_once("200 OK", "[]").await;
        let client = ApiClient::default();
        let snapshots = client
            .call(&address, node_api::snapshots("vol 1"))
            .await
            .unwrap();
        assert!(snapshots.is_empty());
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /node/v1/engines/vol%201/snapshots HTTP/1.1\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn an_error_answer_keeps_its_code_and_message() {
        let (address, server) = serve_once(
            "409 Conflict",
            r#"{"code":"conflict","message":"it is mounted now"}"#,
        )
        .await;
        let error = ApiClient::default()
            .call(&address, node_api::stop_engine("v", false))
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::Conflict);
        assert_eq!(error.status(), Some(409));
        assert_eq!(error.message(), "it is mounted now");
        let request = server.await.unwrap();
        assert!(request.ends_with("{\"force\":false}"), "{request}");
    }

    #[tokio::test]
    async fn an_answer_that_is_not_the_error_shape_still_says_what_happened() {
        let (address, _server) = serve_once("502 Bad Gateway", "proxy error").await;
        let error = ApiClient::default()
            .call(&address, node_api::engines())
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::Unavailable);
        assert_eq!(error.message(), "proxy error");
    }

    #[tokio::test]
    async fn an_unreadable_answer_and_a_silent_address_are_errors_not_panics() {
        let (address, _server) = serve_once("200 OK", r#"{"a":1"#).await;
        let error = ApiClient::default()
            .call(&address, node_api::engines())
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::BadAnswer { .. }), "{error}");

        // Nothing listens on a port that was just freed.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap().to_string();
        drop(closed);
        let error = ApiClient::default()
            .call(&address, node_api::engines())
            .await
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::Unavailable);
        assert!(error.to_string().contains(&address), "{error}");
    }
}
