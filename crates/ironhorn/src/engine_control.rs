//! The engine's control API: JSON over HTTP on `--control`, what `ironhorn engine info|
//! replica|snapshot|expand` talk to. One error shape: `{"code": ..., "message": ...}`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ironhorn_engine::{
    BlockDevice, Engine, EngineError, EngineErrorKind, RebuildReport, ReplicaSpec, SlotStatus,
};
use ironhorn_format::names;
use ironhorn_frontend::nbd::Export;
use serde::{Deserialize, Serialize};

#[derive(Clone)]
pub struct ControlState {
    pub engine: Arc<Engine>,
    pub export: Arc<Export>,
}

/// The one error shape every Ironhorn API answers with.
pub use ironhorn_node::wire::ErrorBody as ApiError;

struct Failure(StatusCode, ApiError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        match e.kind() {
            EngineErrorKind::Refused => refused(e.to_string()),
            EngineErrorKind::NoReplica | EngineErrorKind::Failed => Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiError {
                    code: "failed".into(),
                    message: e.to_string(),
                },
            ),
        }
    }
}

/// A request turned down: nothing changed.
fn refused(message: String) -> Failure {
    Failure(
        StatusCode::CONFLICT,
        ApiError {
            code: "refused".into(),
            message,
        },
    )
}

fn bad_request(message: String) -> Failure {
    Failure(
        StatusCode::BAD_REQUEST,
        ApiError {
            code: "bad_request".into(),
            message,
        },
    )
}

/// `GET /v1/info`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EngineInfo {
    pub volume: String,
    pub size: u64,
    pub connections: usize,
    pub replicas: Vec<ReplicaStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub address: String,
    pub mode: String,
    pub reason: String,
}

impl From<SlotStatus> for ReplicaStatus {
    fn from(s: SlotStatus) -> Self {
        ReplicaStatus {
            address: s.address,
            mode: format!("{:?}", s.mode),
            reason: s.reason,
        }
    }
}

/// One snapshot in `GET /v1/snapshots`, Longhorn's `snapshot info` fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotView {
    pub name: String,
    pub parent: String,
    pub children: Vec<String>,
    pub removed: bool,
    pub usercreated: bool,
    pub created: String,
    /// Allocated bytes.
    pub size: u64,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReplicaRequest {
    pub address: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExpandRequest {
    pub size: u64,
}

pub fn router(state: ControlState) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route(
            "/v1/replicas",
            get(replicas).post(add_replica).delete(remove_replica),
        )
        .route("/v1/snapshots", get(snapshots).post(create_snapshot))
        .route("/v1/snapshots/{name}", delete(remove_snapshot))
        .route("/v1/snapshots/{name}/revert", post(revert))
        .route("/v1/purge", post(purge))
        .route("/v1/expand", post(expand))
        .with_state(state)
}

async fn info(State(s): State<ControlState>) -> Json<EngineInfo> {
    Json(EngineInfo {
        volume: s.engine.volume().to_string(),
        size: s.engine.size(),
        connections: s.export.connections.load(Ordering::SeqCst),
        replicas: s.engine.status().into_iter().map(Into::into).collect(),
    })
}

async fn replicas(State(s): State<ControlState>) -> Json<Vec<ReplicaStatus>> {
    Json(s.engine.status().into_iter().map(Into::into).collect())
}

async fn add_replica(
    State(s): State<ControlState>,
    Json(req): Json<ReplicaRequest>,
) -> Result<Json<RebuildReport>, Failure> {
    let spec: ReplicaSpec = req.address.parse().map_err(bad_request)?;
    Ok(Json(s.engine.add_replica(&spec).await?))
}

async fn remove_replica(
    State(s): State<ControlState>,
    Query(req): Query<ReplicaRequest>,
) -> Result<StatusCode, Failure> {
    s.engine.remove_replica(&req.address).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn snapshots(State(s): State<ControlState>) -> Result<Json<Vec<SnapshotView>>, Failure> {
    let layers = s.engine.layers().await?;
    let view = layers
        .iter()
        .map(|l| SnapshotView {
            name: names::display_name(&l.file),
            parent: if l.parent.is_empty() {
                String::new()
            } else {
                names::display_name(&l.parent)
            },
            children: layers
                .iter()
                .filter(|c| c.parent == l.file)
                .map(|c| names::display_name(&c.file))
                .collect(),
            removed: l.removed,
            usercreated: l.user_created,
            created: l.created.clone(),
            size: l.allocated,
            labels: l.labels.clone(),
        })
        .collect();
    Ok(Json(view))
}

async fn create_snapshot(
    State(s): State<ControlState>,
    Json(req): Json<SnapshotRequest>,
) -> Result<StatusCode, Failure> {
    s.engine.snapshot(&req.name, req.labels).await?;
    Ok(StatusCode::CREATED)
}

async fn remove_snapshot(
    State(s): State<ControlState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    s.engine.remove_snapshot(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revert(
    State(s): State<ControlState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    let clients = s.export.connections.load(Ordering::SeqCst);
    if clients > 0 {
        return Err(refused(format!(
            "{clients} NBD client(s) are connected: disconnect them (detach the volume) before reverting"
        )));
    }
    s.engine.revert(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(State(s): State<ControlState>) -> Result<StatusCode, Failure> {
    s.engine.purge().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn expand(
    State(s): State<ControlState>,
    Json(req): Json<ExpandRequest>,
) -> Result<StatusCode, Failure> {
    s.engine.expand(req.size).await?;
    Ok(StatusCode::NO_CONTENT)
}
