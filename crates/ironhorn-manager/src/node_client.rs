//! Calls from the manager to node agents (the node API, `ironhorn_node::api`).

use std::time::Duration;

use ironhorn_node::wire::{
    path_segment, AddReplica, CreateSnapshot, DeleteReplica, DiskReport, EngineInstance, ErrorBody,
    Expand, NodeReport, ObserveRequest, ProbeRequest, RebuildResult, RemoveReplica,
    ReplicaInstance, SnapshotInfo, StartEngine, StartReplica, StopEngine, TrimResult,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Most calls are quick; rebuilds take as long as the data takes.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(5);
const REBUILD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A node call that failed: `status` is set when the agent answered with an error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("node at {address}: {message}")]
pub struct NodeCallError {
    pub address: String,
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct NodeClient {
    http: reqwest::Client,
}

impl NodeClient {
    pub fn new() -> NodeClient {
        NodeClient {
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        address: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        timeout: Duration,
    ) -> Result<T, NodeCallError> {
        let fail = |status: Option<u16>, code: &str, message: String| NodeCallError {
            address: address.to_string(),
            status,
            code: code.to_string(),
            message,
        };
        let mut request = self
            .http
            .request(method, format!("http://{address}{path}"))
            .timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| fail(None, "unreachable", format!("no answer: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| fail(None, "unreachable", format!("reading the answer: {e}")))?;
        if !status.is_success() {
            let body: ErrorBody = serde_json::from_str(&text).unwrap_or(ErrorBody {
                code: "failed".into(),
                message: text,
            });
            return Err(fail(Some(status.as_u16()), &body.code, body.message));
        }
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text)
            .map_err(|e| fail(None, "bad_answer", format!("unreadable answer: {e}")))
    }

    pub async fn observe(
        &self,
        address: &str,
        request: &ObserveRequest,
    ) -> Result<NodeReport, NodeCallError> {
        self.call(
            address,
            reqwest::Method::POST,
            "/node/v1/observe",
            Some(request),
            OBSERVE_TIMEOUT,
        )
        .await
    }

    pub async fn probe(&self, address: &str, path: &str) -> Result<DiskReport, NodeCallError> {
        let body = ProbeRequest {
            path: path.to_string(),
        };
        self.call(
            address,
            reqwest::Method::POST,
            "/node/v1/probe",
            Some(&body),
            CALL_TIMEOUT,
        )
        .await
    }

    pub async fn start_replica(
        &self,
        address: &str,
        name: &str,
        request: &StartReplica,
    ) -> Result<ReplicaInstance, NodeCallError> {
        let path = format!("/node/v1/replicas/{}", path_segment(name));
        self.call(
            address,
            reqwest::Method::PUT,
            &path,
            Some(request),
            CALL_TIMEOUT,
        )
        .await
    }

    pub async fn stop_replica(&self, address: &str, name: &str) -> Result<(), NodeCallError> {
        let path = format!("/node/v1/replicas/{}/stop", path_segment(name));
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            None::<&()>,
            CALL_TIMEOUT,
        )
        .await
    }

    pub async fn delete_replica(
        &self,
        address: &str,
        name: &str,
        dir: &str,
    ) -> Result<(), NodeCallError> {
        let path = format!("/node/v1/replicas/{}/delete", path_segment(name));
        let body = DeleteReplica {
            dir: dir.to_string(),
        };
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            Some(&body),
            CALL_TIMEOUT,
        )
        .await
    }

    pub async fn start_engine(
        &self,
        address: &str,
        volume: &str,
        request: &StartEngine,
    ) -> Result<EngineInstance, NodeCallError> {
        let path = format!("/node/v1/engines/{}", path_segment(volume));
        self.call(
            address,
            reqwest::Method::PUT,
            &path,
            Some(request),
            CALL_TIMEOUT,
        )
        .await
    }

    /// Stops the engine; without `force` the node refuses while its block device is mounted.
    pub async fn stop_engine(
        &self,
        address: &str,
        volume: &str,
        force: bool,
    ) -> Result<(), NodeCallError> {
        let path = format!("/node/v1/engines/{}/stop", path_segment(volume));
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            Some(&StopEngine { force }),
            CALL_TIMEOUT,
        )
        .await
    }

    /// The engine as it runs now (with its block device's current mount points).
    pub async fn engine(
        &self,
        address: &str,
        volume: &str,
    ) -> Result<EngineInstance, NodeCallError> {
        let path = format!("/node/v1/engines/{}", path_segment(volume));
        self.call(
            address,
            reqwest::Method::GET,
            &path,
            None::<&()>,
            CALL_TIMEOUT,
        )
        .await
    }

    /// Trims the filesystem mounted from the volume's block device.
    pub async fn trim(&self, address: &str, volume: &str) -> Result<TrimResult, NodeCallError> {
        let path = format!("/node/v1/engines/{}/trim", path_segment(volume));
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            None::<&()>,
            REBUILD_TIMEOUT,
        )
        .await
    }

    pub async fn add_replica(
        &self,
        address: &str,
        volume: &str,
        request: &AddReplica,
    ) -> Result<RebuildResult, NodeCallError> {
        let path = format!("/node/v1/engines/{}/replicas", path_segment(volume));
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            Some(request),
            REBUILD_TIMEOUT,
        )
        .await
    }

    pub async fn remove_replica(
        &self,
        address: &str,
        volume: &str,
        replica_address: &str,
    ) -> Result<(), NodeCallError> {
        let path = format!("/node/v1/engines/{}/replicas/remove", path_segment(volume));
        let body = RemoveReplica {
            address: replica_address.to_string(),
        };
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            Some(&body),
            CALL_TIMEOUT,
        )
        .await
    }

    pub async fn snapshots(
        &self,
        address: &str,
        volume: &str,
    ) -> Result<Vec<SnapshotInfo>, NodeCallError> {
        let path = format!("/node/v1/engines/{}/snapshots", path_segment(volume));
        self.call(
            address,
            reqwest::Method::GET,
            &path,
            None::<&()>,
            CALL_TIMEOUT,
        )
        .await
    }

    pub async fn create_snapshot(
        &self,
        address: &str,
        volume: &str,
        request: &CreateSnapshot,
    ) -> Result<(), NodeCallError> {
        let path = format!("/node/v1/engines/{}/snapshots", path_segment(volume));
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            Some(request),
            CALL_TIMEOUT,
        )
        .await
    }

    pub async fn remove_snapshot(
        &self,
        address: &str,
        volume: &str,
        name: &str,
    ) -> Result<(), NodeCallError> {
        let path = format!(
            "/node/v1/engines/{}/snapshots/{}",
            path_segment(volume),
            path_segment(name)
        );
        self.call(
            address,
            reqwest::Method::DELETE,
            &path,
            None::<&()>,
            CALL_TIMEOUT,
        )
        .await
    }

    pub async fn revert(
        &self,
        address: &str,
        volume: &str,
        name: &str,
    ) -> Result<(), NodeCallError> {
        let path = format!(
            "/node/v1/engines/{}/snapshots/{}/revert",
            path_segment(volume),
            path_segment(name)
        );
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            None::<&()>,
            REBUILD_TIMEOUT,
        )
        .await
    }

    pub async fn purge(&self, address: &str, volume: &str) -> Result<(), NodeCallError> {
        let path = format!("/node/v1/engines/{}/purge", path_segment(volume));
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            None::<&()>,
            REBUILD_TIMEOUT,
        )
        .await
    }

    pub async fn expand(
        &self,
        address: &str,
        volume: &str,
        size: u64,
    ) -> Result<(), NodeCallError> {
        let path = format!("/node/v1/engines/{}/expand", path_segment(volume));
        self.call(
            address,
            reqwest::Method::POST,
            &path,
            Some(&Expand { size }),
            CALL_TIMEOUT,
        )
        .await
    }
}
