//! Calls from the manager to node agents: any request of `ironhorn_api::node_api`, sent by
//! one generic [`NodeClient::call`]; a failure names the node's address.

use ironhorn_api::client::{ApiClient, ClientError};
use ironhorn_api::{ErrorCode, Request};
use serde::de::DeserializeOwned;

/// A node call that failed: no answer, or the agent's error.
#[derive(Debug, thiserror::Error)]
#[error("node at {address}: {source}")]
pub struct NodeCallError {
    pub address: String,
    #[source]
    pub source: ClientError,
}

impl NodeCallError {
    pub fn code(&self) -> ErrorCode {
        self.source.code()
    }
}

#[derive(Debug, Clone, Default)]
pub struct NodeClient {
    http: ApiClient,
}

impl NodeClient {
    pub fn new() -> NodeClient {
        NodeClient::default()
    }

    /// A client that proves itself to node agents with the cluster secret.
    pub fn with_secret(secret: Option<&str>) -> NodeClient {
        NodeClient {
            http: ApiClient::default().with_bearer(secret),
        }
    }

    /// The same client, trusting also the certificates in `ca` (PEM): `ironhorn server`
    /// with TLS calls its own node's API on its own HTTPS listener.
    pub fn trusting(self, ca: &std::path::Path) -> NodeClient {
        NodeClient {
            http: self.http.trusting(ca),
        }
    }

    /// Sends `request` to the node agent at `address` (`HOST:PORT`).
    pub async fn call<R: DeserializeOwned>(
        &self,
        address: &str,
        request: Request<R>,
    ) -> Result<R, NodeCallError> {
        self.http
            .call(address, request)
            .await
            .map_err(|source| NodeCallError {
                address: address.to_string(),
                source,
            })
    }
}
