//! The node API (`/node/v1/...`): what the manager calls to run replicas and engines on this
//! node and to observe it. JSON in and out (the types and the request catalogue are
//! `ironhorn_api::node` and `ironhorn_api::node_api`); errors in the one shape
//! ([`ErrorBody`]), mapped from [`AgentError`] here only.
//!
//! The engine routes ([`engine_routes`]) are served by anything that runs engines
//! ([`EngineHost`]): the node agent, and a standalone `ironhorn engine serve` for its one
//! volume, so there is one engine control API.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use ironhorn_api::backup::{JobStatus, StartBackup, StartClone, StartRestore};
use ironhorn_api::node::{
    AddReplica, CreateSnapshot, DeleteReplica, DiskReport, EngineInstance, Expand, NodeReport,
    ObserveRequest, ProbeRequest, RebuildResult, RemoveReplica, ReplicaInstance, ReplicaSnapshots,
    SnapshotInfo, StartEngine, StartReplica, StopEngine, TrimResult,
};
use ironhorn_api::{ErrorBody, ErrorCode};
use ironhorn_engine::{Engine, ReplicaSpec};
use ironhorn_format::names;
use ironhorn_proto::replica::LayerInfo;
use ironhorn_replica::{Replica, ReplicaOptions};

use crate::agent::{probe_disk, Agent, AgentError, AgentErrorKind};

impl AgentError {
    /// The API's code for this error: the one place agent errors meet HTTP.
    pub fn code(&self) -> ErrorCode {
        match self.kind() {
            AgentErrorKind::NotFound => ErrorCode::NotFound,
            AgentErrorKind::Refused => ErrorCode::Conflict,
            AgentErrorKind::Invalid => ErrorCode::Invalid,
            AgentErrorKind::Failed => ErrorCode::Internal,
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody::new(code, self.to_string()))).into_response()
    }
}

type Result<T> = std::result::Result<T, AgentError>;

/// What runs engines and serves their routes: the node agent, or a standalone engine.
pub trait EngineHost: Send + Sync + 'static {
    /// Every engine running here.
    fn engines(&self) -> impl Future<Output = Vec<EngineInstance>> + Send;
    /// The volume's engine as it runs now.
    fn engine_report(&self, volume: &str) -> impl Future<Output = Result<EngineInstance>> + Send;
    /// The volume's running engine, and how many clients use it now.
    fn engine(&self, volume: &str) -> impl Future<Output = Result<(Arc<Engine>, usize)>> + Send;
    /// Grows the volume (and what exposes it).
    fn expand(&self, volume: &str, size: u64) -> impl Future<Output = Result<()>> + Send;
}

impl EngineHost for Agent {
    async fn engines(&self) -> Vec<EngineInstance> {
        Agent::engines(self).await
    }

    async fn engine_report(&self, volume: &str) -> Result<EngineInstance> {
        Agent::engine_report(self, volume).await
    }

    async fn engine(&self, volume: &str) -> Result<(Arc<Engine>, usize)> {
        Agent::engine(self, volume).await
    }

    async fn expand(&self, volume: &str, size: u64) -> Result<()> {
        Agent::expand(self, volume, size).await
    }
}

/// The node API's routes.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/node/v1/observe", post(observe))
        .route("/node/v1/probe", post(probe))
        .route("/node/v1/replicas/{name}", put(start_replica))
        .route("/node/v1/replicas/{name}/stop", post(stop_replica))
        .route("/node/v1/replicas/{name}/delete", post(delete_replica))
        .route("/node/v1/replica-snapshots", post(replica_snapshots))
        .route("/node/v1/engines/{volume}", put(start_engine))
        .route("/node/v1/engines/{volume}/trim", post(trim))
        .route("/node/v1/engines/{volume}/stop", post(stop_engine))
        .route("/node/v1/backups", post(start_backup))
        .route("/node/v1/backups/{name}", get(backup_status))
        .route(
            "/node/v1/engines/{volume}/restore",
            post(start_restore).get(restore_status),
        )
        .route("/node/v1/engines/{volume}/clone", post(start_clone))
        .with_state(agent.clone())
        .merge(engine_routes(agent))
}

/// `router` answering only callers that hold the cluster secret (`Authorization: Bearer
/// <secret>`): the manager. Without a secret (authentication turned off on loopback) it
/// answers everyone.
pub fn guarded(router: Router, secret: Option<Arc<str>>) -> Router {
    match secret {
        Some(secret) => router.layer(axum::middleware::from_fn_with_state(secret, node_gate)),
        None => router,
    }
}

async fn node_gate(
    State(secret): State<Arc<str>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(ironhorn_auth::secret::bearer)
        .unwrap_or_default();
    if ironhorn_auth::secret::same(given, &secret) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        Json(ErrorBody::new(
            ErrorCode::Unauthenticated,
            "the node API answers the manager only: give the cluster secret (`Authorization: Bearer ...`)",
        )),
    )
        .into_response()
}

/// The routes that act on a running engine, for any [`EngineHost`].
pub fn engine_routes<H: EngineHost>(host: Arc<H>) -> Router {
    Router::new()
        .route("/node/v1/engines", get(engines::<H>))
        .route("/node/v1/engines/{volume}", get(engine_report::<H>))
        .route("/node/v1/engines/{volume}/replicas", post(add_replica::<H>))
        .route(
            "/node/v1/engines/{volume}/replicas/remove",
            post(remove_replica::<H>),
        )
        .route(
            "/node/v1/engines/{volume}/snapshots",
            get(snapshots::<H>).post(create_snapshot::<H>),
        )
        .route(
            "/node/v1/engines/{volume}/snapshots/{name}",
            delete(remove_snapshot::<H>),
        )
        .route(
            "/node/v1/engines/{volume}/snapshots/{name}/revert",
            post(revert::<H>),
        )
        .route("/node/v1/engines/{volume}/purge", post(purge::<H>))
        .route("/node/v1/engines/{volume}/expand", post(expand::<H>))
        .with_state(host)
}

async fn start_backup(
    State(agent): State<Arc<Agent>>,
    Json(req): Json<StartBackup>,
) -> Result<Json<JobStatus>> {
    Ok(Json(agent.jobs.start_backup(req)?))
}

async fn backup_status(
    State(agent): State<Arc<Agent>>,
    Path(name): Path<String>,
) -> Result<Json<JobStatus>> {
    Ok(Json(agent.jobs.backup_status(&name)?))
}

async fn start_restore(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
    Json(req): Json<StartRestore>,
) -> Result<Json<JobStatus>> {
    let (engine, _) = agent.engine(&volume).await?;
    Ok(Json(agent.jobs.start_restore(&volume, engine, req)?))
}

async fn start_clone(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
    Json(req): Json<StartClone>,
) -> Result<Json<JobStatus>> {
    let (engine, _) = agent.engine(&volume).await?;
    Ok(Json(agent.jobs.start_clone(&volume, engine, req)?))
}

async fn restore_status(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
) -> Result<Json<JobStatus>> {
    Ok(Json(agent.jobs.restore_status(&volume)?))
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

async fn trim(
    State(agent): State<Arc<Agent>>,
    Path(volume): Path<String>,
) -> Result<Json<TrimResult>> {
    Ok(Json(agent.trim(&volume).await?))
}

async fn engines<H: EngineHost>(State(host): State<Arc<H>>) -> Json<Vec<EngineInstance>> {
    Json(host.engines().await)
}

async fn engine_report<H: EngineHost>(
    State(host): State<Arc<H>>,
    Path(volume): Path<String>,
) -> Result<Json<EngineInstance>> {
    Ok(Json(host.engine_report(&volume).await?))
}

async fn add_replica<H: EngineHost>(
    State(host): State<Arc<H>>,
    Path(volume): Path<String>,
    Json(req): Json<AddReplica>,
) -> Result<Json<RebuildResult>> {
    let (engine, _) = host.engine(&volume).await?;
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
        layers_copied: report.layers_copied,
        layers_skipped: report.layers_skipped,
        bytes_written_while_away: report.bytes_written_while_away,
    }))
}

async fn remove_replica<H: EngineHost>(
    State(host): State<Arc<H>>,
    Path(volume): Path<String>,
    Json(req): Json<RemoveReplica>,
) -> Result<StatusCode> {
    let (engine, _) = host.engine(&volume).await?;
    engine.remove_replica(&req.address).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn snapshots<H: EngineHost>(
    State(host): State<Arc<H>>,
    Path(volume): Path<String>,
) -> Result<Json<Vec<SnapshotInfo>>> {
    let (engine, _) = host.engine(&volume).await?;
    let layers = engine.layers().await?;
    Ok(Json(snapshot_infos(&layers)))
}

/// Layers as the API shows snapshots: display names, parents and children.
fn snapshot_infos(layers: &[LayerInfo]) -> Vec<SnapshotInfo> {
    let display = |file: &str| {
        if file.is_empty() {
            String::new()
        } else {
            names::display_name(file)
        }
    };
    let mut children: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for l in layers {
        children
            .entry(l.parent.as_str())
            .or_default()
            .push(display(&l.file));
    }
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
        .collect()
}

async fn replica_snapshots(Json(req): Json<ReplicaSnapshots>) -> Result<Json<Vec<SnapshotInfo>>> {
    let dir = std::path::PathBuf::from(&req.dir);
    if !dir.join(names::VOLUME_META).exists() && dir.parent().is_some_and(|p| p.is_dir()) {
        // A replica made for a volume that never ran: nothing written, no snapshots.
        return Ok(Json(Vec::new()));
    }
    let layers = tokio::task::spawn_blocking(move || {
        Replica::open(&dir, &ReplicaOptions::read_only())
            .map(|r| r.layer_infos())
            .map_err(AgentError::by(
                AgentErrorKind::Invalid,
                format!("reading the snapshots of {}", req.dir),
            ))
    })
    .await
    .map_err(|e| {
        AgentError::new(
            AgentErrorKind::Failed,
            format!("snapshot listing task: {e}"),
        )
    })??;
    Ok(Json(snapshot_infos(&layers)))
}

async fn create_snapshot<H: EngineHost>(
    State(host): State<Arc<H>>,
    Path(volume): Path<String>,
    Json(req): Json<CreateSnapshot>,
) -> Result<StatusCode> {
    let (engine, _) = host.engine(&volume).await?;
    engine.snapshot(&req.name, req.labels).await?;
    Ok(StatusCode::CREATED)
}

async fn remove_snapshot<H: EngineHost>(
    State(host): State<Arc<H>>,
    Path((volume, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (engine, _) = host.engine(&volume).await?;
    engine.remove_snapshot(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revert<H: EngineHost>(
    State(host): State<Arc<H>>,
    Path((volume, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (engine, clients) = host.engine(&volume).await?;
    if clients > 0 {
        return Err(AgentError::new(AgentErrorKind::Refused, format!(
            "{clients} client(s) use volume {volume}: detach it and attach it in maintenance mode before reverting"
        )));
    }
    engine.revert(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn purge<H: EngineHost>(
    State(host): State<Arc<H>>,
    Path(volume): Path<String>,
) -> Result<StatusCode> {
    let (engine, _) = host.engine(&volume).await?;
    engine.purge().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn expand<H: EngineHost>(
    State(host): State<Arc<H>>,
    Path(volume): Path<String>,
    Json(req): Json<Expand>,
) -> Result<StatusCode> {
    host.expand(&volume, req.size).await?;
    Ok(StatusCode::NO_CONTENT)
}
