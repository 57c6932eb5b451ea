//! The node API (`/node/v1/...`): what the manager calls to run replicas and engines on this
//! node and to observe it. JSON in and out; errors in the one shape ([`ErrorBody`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use ironhorn_engine::ReplicaSpec;
use ironhorn_format::names;

use crate::agent::{probe_disk, Agent, AgentError, AgentErrorKind};
use crate::wire::{
    AddReplica, CreateSnapshot, DeleteReplica, DiskReport, EngineInstance, ErrorBody, Expand,
    NodeReport, ObserveRequest, ProbeRequest, RebuildResult, RemoveReplica, ReplicaInstance,
    SnapshotInfo, StartEngine, StartReplica, StopEngine, TrimResult,
};

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        // The codes the manager matches on: keep them.
        let (status, code) = match self.kind() {
            AgentErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            AgentErrorKind::Refused => (StatusCode::CONFLICT, "refused"),
            AgentErrorKind::Invalid => (StatusCode::BAD_REQUEST, "invalid"),
            AgentErrorKind::Failed => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
        };
        let body = ErrorBody {
            code: code.to_string(),
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

type Result<T> = std::result::Result<T, AgentError>;

/// The node API's routes.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/node/v1/observe", post(observe))
        .route("/node/v1/probe", post(probe))
        .route("/node/v1/replicas/{name}", put(start_replica))
        .route("/node/v1/replicas/{name}/stop", post(stop_replica))
        .route("/node/v1/replicas/{name}/delete", post(delete_replica))
        .route(
            "/node/v1/engines/{volume}",
            put(start_engine).get(engine_report),
        )
        .route("/node/v1/engines/{volume}/trim", post(trim))
        .route("/node/v1/engines/{volume}/stop", post(stop_engine))
        .route("/node/v1/engines/{volume}/replicas", post(add_replica))
        .route(
            "/node/v1/engines/{volume}/replicas/remove",
            post(remove_replica),
        )
        .route(
            "/node/v1/engines/{volume}/snapshots",
            get(snapshots).post(create_snapshot),
        )
        .route(
            "/node/v1/engines/{volume}/snapshots/{name}",
            delete(remove_snapshot),
        )
        .route(
            "/node/v1/engines/{volume}/snapshots/{name}/revert",
            post(revert),
        )
        .route("/node/v1/engines/{volume}/purge", post(purge))
        .route("/node/v1/engines/{volume}/expand", post(expand))
        .with_state(agent)
}

async fn observe(
    State(agent): State<Arc<Agent>>,
    Json(req): Json<ObserveRequest>,
) -> Json<NodeReport> {
    Json(agent.observe(req).await)
}

async fn probe(Json(req): Json<ProbeRequest>) -> Result<Json<DiskReport>> {
    let report = tokio::task::spawn_blocking(move || probe_disk(&req.path)).await?;
    if !report.error.is_empty() {
        return Err(AgentError::new(AgentErrorKind::Invalid, report.error));
    }
    Ok(Json(report))
}

async fn start_replica(
    State(agent): State<Arc<Agent>>,
    Path(name): Path<String>,
    Json(req): Json<StartReplica>,
) -> Result<Json<ReplicaInstance>> {
    Ok(Json(agent.start_replica(&name, req).await?))
}

async fn stop_replica(
    State(agent): State<Arc<Agent>>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    agent.stop_replica(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_replica(
    State(agent): State<Arc<Agent>>,
    Path(name): Path<String>,
    Json(req): Json<DeleteReplica>,
) -> Result<StatusCode> {
    agent.delete_replica(&name, &req.dir).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn start_engine(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
    Json(req): Json<StartEngine>,
) -> Result<Json<EngineInstance>> {
    Ok(Json(agent.start_engine(&volume, req).await?))
}

async fn stop_engine(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode> {
    // The body is optional: none stops without force.
    let req: StopEngine = if body.iter().all(u8::is_ascii_whitespace) {
        StopEngine::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AgentError::new(AgentErrorKind::Invalid, e.to_string()))?
    };
    agent.stop_engine(&volume, req.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn engine_report(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
) -> Result<Json<EngineInstance>> {
    Ok(Json(agent.engine_report(&volume).await?))
}

async fn trim(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
) -> Result<Json<TrimResult>> {
    Ok(Json(agent.trim(&volume).await?))
}

async fn add_replica(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
    Json(req): Json<AddReplica>,
) -> Result<Json<RebuildResult>> {
    let (engine, _) = agent.engine(&volume).await?;
    let spec: ReplicaSpec = req
        .address
        .parse()
        .map_err(|e| AgentError::new(AgentErrorKind::Invalid, e))?;
    let report = engine
        .add_returning_replica(&spec, req.previous.as_deref())
        .await?;
    Ok(Json(RebuildResult {
        replica: report.replica,
        source: report.source,
        incremental: report.incremental,
        bytes_copied: report.bytes_copied,
    }))
}

async fn remove_replica(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
    Json(req): Json<RemoveReplica>,
) -> Result<StatusCode> {
    let (engine, _) = agent.engine(&volume).await?;
    engine.remove_replica(&req.address).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn snapshots(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
) -> Result<Json<Vec<SnapshotInfo>>> {
    let (engine, _) = agent.engine(&volume).await?;
    let layers = engine.layers().await?;
    let display = |file: &str| {
        if file.is_empty() {
            String::new()
        } else {
            names::display_name(file)
        }
    };
    let mut children: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for l in &layers {
        children
            .entry(l.parent.as_str())
            .or_default()
            .push(display(&l.file));
    }
    Ok(Json(
        layers
            .iter()
            .map(|l| SnapshotInfo {
                name: display(&l.file),
                parent: display(&l.parent),
                children: children.get(l.file.as_str()).cloned().unwrap_or_default(),
                removed: l.removed,
                user_created: l.user_created,
                created: l.created.clone(),
                size: l.allocated,
                labels: l.labels.clone(),
            })
            .collect(),
    ))
}

async fn create_snapshot(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
    Json(req): Json<CreateSnapshot>,
) -> Result<StatusCode> {
    let (engine, _) = agent.engine(&volume).await?;
    engine.snapshot(&req.name, req.labels).await?;
    Ok(StatusCode::CREATED)
}

async fn remove_snapshot(
    State(agent): State<Arc<Agent>>,
    Path((volume, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (engine, _) = agent.engine(&volume).await?;
    engine.remove_snapshot(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revert(
    State(agent): State<Arc<Agent>>,
    Path((volume, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (engine, clients) = agent.engine(&volume).await?;
    if clients > 0 {
        return Err(AgentError::new(AgentErrorKind::Refused, format!(
            "{clients} client(s) use volume {volume}: detach it and attach it in maintenance mode before reverting"
        )));
    }
    engine.revert(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(State(agent): State<Arc<Agent>>, Path(volume): Path<String>) -> Result<StatusCode> {
    let (engine, _) = agent.engine(&volume).await?;
    engine.purge().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn expand(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
    Json(req): Json<Expand>,
) -> Result<StatusCode> {
    agent.expand(&volume, req.size).await?;
    Ok(StatusCode::NO_CONTENT)
}
