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
    #[error("no answer from {url}: {source}")]
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
}

impl Default for ApiClient {
    fn default() -> Self {
        ApiClient::new(Timeouts::default())
    }
}

impl ApiClient {
    pub fn new(timeouts: Timeouts) -> ApiClient {
        ApiClient {
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            timeouts,
        }
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
