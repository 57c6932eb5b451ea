//! The REST API under `/v1`: volumes (with snapshots), nodes (with disks), settings, and
//! the registration of node agents. Changes are written to the store and the controllers are
//! woken; requests that need a running engine (snapshots, expand) are passed to its node.
//! Every error has the one shape (`error::ApiError`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::Router;
use ironhorn_api::node::{CreateSnapshot, SnapshotInfo, TrimResult};
use ironhorn_api::node_api;
use ironhorn_api::resource::{
    wire_name, DataLocality, DiskSpec, Node, NodeSpec, Replica, Volume, VolumeSpec, VolumeState,
    VolumeStatus,
};
use ironhorn_api::rest::{
    AddDisk, AttachRequest, CreateVolume, DetachRequest, DiskUpdate, ExpandRequest, List,
    NodeUpdate, Orphan, RegisterNode, SettingValue, SettingView, SizeInput,
};
use ironhorn_api::ErrorBody;
use ironhorn_control::settings::{self, DEFINITIONS};
use ironhorn_control::units::parse_size;
use ironhorn_control::validate::{check_name, MAX_NAME, MAX_VOLUME_NAME};
use ironhorn_store::{Expect, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::plan::engine_of;
use crate::state::{self, StateError, NODES, REPLICAS, SETTINGS, VOLUMES};
use crate::Manager;

type Result<T> = std::result::Result<T, ApiError>;
type Shared = State<Arc<Manager>>;

/// A JSON object body; anything else (an array, a string, bad JSON, a wrong field) is
/// refused in the API's error shape.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::invalid(rejection.body_text())
    }
}

/// Reads a request body that must be one JSON object of the shape `T`.
fn parse_body<T: DeserializeOwned>(value: Value) -> Result<T> {
    if !value.is_object() {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::invalid(format!("request body: {}", e.inner()))
        } else {
            ApiError::invalid(format!("request body: {path}: {}", e.inner()))
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self> {
        let axum::Json(value) = axum::Json::<Value>::from_request(req, state).await?;
        parse_body(value).map(Json)
    }
}

/// The API's OpenAPI document (kept in the repository as `api/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Ironhorn API",
        version = "1",
        description = "Volumes, snapshots, nodes with their disks, and settings, with Longhorn's names. Every error is {code, message} with an HTTP status."
    ),
    paths(
        list_volumes, create_volume, get_volume, delete_volume, attach, detach, expand, trim,
        list_snapshots, create_snapshot, delete_snapshot, revert_snapshot, purge_snapshots,
        list_nodes, register_node, get_node, update_node, delete_node, add_disk, update_disk, remove_disk,
        list_orphans, get_orphan, delete_orphan,
        list_settings, get_setting, set_setting
    ),
    tags(
        (name = "volumes", description = "Replicated block volumes"),
        (name = "snapshots", description = "Snapshots of an attached volume"),
        (name = "nodes", description = "Nodes and their disks"),
        (name = "orphans", description = "Replica directories no volume owns"),
        (name = "settings", description = "Settings with Longhorn's keys")
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as served at `/v1/openapi.json`.
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

async fn openapi() -> impl IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(openapi_json).clone(),
    )
}

async fn metrics(State(m): Shared) -> Result<impl IntoResponse> {
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&m).await?,
    ))
}

pub fn router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/volumes", get(list_volumes).post(create_volume))
        .route("/v1/volumes/{name}", get(get_volume).delete(delete_volume))
        .route("/v1/volumes/{name}/attach", post(attach))
        .route("/v1/volumes/{name}/detach", post(detach))
        .route("/v1/volumes/{name}/expand", post(expand))
        .route("/v1/volumes/{name}/trim", post(trim))
        .route(
            "/v1/volumes/{name}/snapshots",
            get(list_snapshots).post(create_snapshot),
        )
        .route(
            "/v1/volumes/{name}/snapshots/{snapshot}",
            axum::routing::delete(delete_snapshot),
        )
        .route(
            "/v1/volumes/{name}/snapshots/{snapshot}/revert",
            post(revert_snapshot),
        )
        .route("/v1/volumes/{name}/purge", post(purge_snapshots))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/register", post(register_node))
        .route(
            "/v1/nodes/{name}",
            get(get_node).patch(update_node).delete(delete_node),
        )
        .route("/v1/nodes/{name}/disks", post(add_disk))
        .route(
            "/v1/nodes/{name}/disks/{disk}",
            axum::routing::patch(update_disk).delete(remove_disk),
        )
        .route("/v1/orphans", get(list_orphans))
        .route("/v1/orphans/{name}", get(get_orphan).delete(delete_orphan))
        .route("/v1/settings", get(list_settings))
        .route("/v1/settings/{name}", put(set_setting).get(get_setting))
        .fallback(not_found)
        .with_state(manager)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API path; the API is described at /v1/openapi.json")
}

// ---- volumes ----

/// The bytes a size stands for.
fn size_bytes(input: &SizeInput) -> Result<u64> {
    let bytes = match input {
        SizeInput::Bytes(b) => *b,
        SizeInput::Text(t) => parse_size(t).map_err(ApiError::invalid)?,
    };
    // Sizes travel as signed 64-bit integers in other clients (Longhorn's among them).
    if bytes > i64::MAX as u64 {
        return Err(ApiError::invalid(format!(
            "{bytes} bytes is too large a size"
        )));
    }
    Ok(bytes)
}

/// Volumes are sized in whole 2 MiB (Longhorn rounds up the same way).
const SIZE_ALIGNMENT: u64 = 2 << 20;
/// Ext4's limit is 16 TiB; no volume is bigger than its largest filesystem can use... but
/// xfs goes further: the cap is what the format's sector arithmetic safely holds.
const MAX_SIZE: u64 = 1 << 50;

fn volume_size(input: &SizeInput) -> Result<u64> {
    let size = size_bytes(input)?;
    if size == 0 {
        return Err(ApiError::invalid("size must be greater than 0, e.g. 10Gi"));
    }
    if size > MAX_SIZE {
        return Err(ApiError::invalid(format!(
            "size {size} is above the largest volume ({MAX_SIZE} bytes, 1 PiB)"
        )));
    }
    Ok(size.div_ceil(SIZE_ALIGNMENT) * SIZE_ALIGNMENT)
}

/// Longhorn's StorageClass default: 48 hours.
const DEFAULT_STALE_REPLICA_TIMEOUT: u64 = 2880;

fn check_tags(what: &'static str, tags: &[String]) -> Result<()> {
    for tag in tags {
        check_name(what, tag, MAX_NAME).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/volumes", tag = "volumes", responses((status = 200, description = "Every volume", body = List<Volume>), (status = 500, description = "Failed", body = ErrorBody)))]
async fn list_volumes(State(m): Shared) -> Result<Json<List<Volume>>> {
    let volumes =
        state::list_cached::<Volume>(m.store.as_ref(), VOLUMES, &m.parsed_volumes).await?;
    Ok(Json(List {
        data: volumes.into_iter().map(|(v, _)| v).collect(),
    }))
}

async fn load_volume(m: &Manager, name: &str) -> Result<Volume> {
    state::get::<Volume>(m.store.as_ref(), &format!("{VOLUMES}{name}"))
        .await?
        .map(|(v, _)| v)
        .ok_or_else(|| volume_missing(name))
}

fn volume_missing(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no volume {name:?}; `ironhorn volume ls` lists them"
    ))
}

#[utoipa::path(get, path = "/v1/volumes/{name}", tag = "volumes", params(("name" = String, Path, description = "Volume name")), responses((status = 200, description = "The volume", body = Volume), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn get_volume(State(m): Shared, Path(name): Path<String>) -> Result<Json<Volume>> {
    Ok(Json(load_volume(&m, &name).await?))
}

#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", request_body = CreateVolume, responses((status = 201, description = "Created; the controllers place its replicas", body = Volume), (status = 400, description = "Invalid request", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn create_volume(
    State(m): Shared,
    Json(req): Json<CreateVolume>,
) -> Result<(StatusCode, Json<Volume>)> {
    check_name("volume", &req.name, MAX_VOLUME_NAME)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let size = volume_size(&req.size)?;
    let settings = state::settings(m.store.as_ref()).await?;
    let replicas = req
        .number_of_replicas
        .unwrap_or(settings.int(settings::DEFAULT_REPLICA_COUNT).max(1) as u32);
    if !(1..=20).contains(&replicas) {
        return Err(ApiError::invalid(format!(
            "numberOfReplicas must be between 1 and 20, not {replicas}"
        )));
    }
    check_tags("node selector tag", &req.node_selector)?;
    check_tags("disk selector tag", &req.disk_selector)?;
    let data_locality = match req.data_locality {
        Some(d) => d,
        None => match settings.get(settings::DEFAULT_DATA_LOCALITY) {
            "best-effort" => DataLocality::BestEffort,
            _ => DataLocality::Disabled,
        },
    };
    let volume = Volume {
        name: req.name.clone(),
        spec: VolumeSpec {
            size,
            number_of_replicas: replicas,
            stale_replica_timeout: req
                .stale_replica_timeout
                .unwrap_or(DEFAULT_STALE_REPLICA_TIMEOUT),
            frontend: req.frontend.unwrap_or_default(),
            data_locality,
            node_selector: req.node_selector,
            disk_selector: req.disk_selector,
            labels: req.labels,
            node_id: String::new(),
            maintenance: false,
        },
        status: VolumeStatus::default(),
    };
    match state::put(
        m.store.as_ref(),
        &format!("{VOLUMES}{}", req.name),
        &volume,
        Expect::Absent,
    )
    .await
    {
        Ok(_) => {}
        Err(StateError::Store(StoreError::Conflict { .. })) => {
            return Err(ApiError::exists(format!(
                "volume {:?} exists already",
                req.name
            )))
        }
        Err(e) => return Err(e.into()),
    }
    m.wake.notify_one();
    Ok((StatusCode::CREATED, Json(volume)))
}

async fn update_volume(
    m: &Manager,
    name: &str,
    change: impl FnMut(&mut Volume) -> Result<()>,
) -> Result<Volume> {
    let volume = state::update(
        m.store.as_ref(),
        &format!("{VOLUMES}{name}"),
        || volume_missing(name),
        change,
    )
    .await?;
    m.wake.notify_one();
    Ok(volume)
}

#[utoipa::path(delete, path = "/v1/volumes/{name}", tag = "volumes", params(("name" = String, Path, description = "Volume name")), responses((status = 202, description = "Being deleted (detached first; its data removed)", body = Volume), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn delete_volume(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Volume>)> {
    let volume = update_volume(&m, &name, |v| {
        v.status.state = VolumeState::Deleting;
        v.spec.node_id.clear();
        Ok(())
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(volume)))
}

/// A request body that may be left out (then every option takes its default); when given,
/// one JSON object of the shape `T`.
fn optional_body<T: Default + DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("{what}: {e}")))?;
    parse_body(value)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/attach", tag = "volumes", params(("name" = String, Path, description = "Volume name")), request_body(content = Option<AttachRequest>, description = "Where to attach; no body attaches to the server's own node"), responses((status = 202, description = "Attaching", body = Volume), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn attach(
    State(m): Shared,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Volume>)> {
    // The body is optional: no body attaches to the server's own node.
    let req: AttachRequest = optional_body(&body, "attach request")?;
    let node = match req.node.or_else(|| m.local_node.clone()) {
        Some(node) => node,
        None => {
            return Err(ApiError::invalid(
                "say which node to attach to (--node): this manager runs no node of its own",
            ))
        }
    };
    if state::get::<Node>(m.store.as_ref(), &format!("{NODES}{node}"))
        .await?
        .is_none()
    {
        return Err(ApiError::invalid(format!(
            "no node {node:?}; `ironhorn node ls` lists them"
        )));
    }
    let volume = update_volume(&m, &name, |v| {
        if v.status.state == VolumeState::Deleting {
            return Err(ApiError::conflict(format!(
                "volume {name} is being deleted"
            )));
        }
        let frontend = req.frontend.unwrap_or(v.spec.frontend);
        if !v.spec.node_id.is_empty()
            && (v.spec.node_id != node
                || v.spec.maintenance != req.maintenance
                || v.spec.frontend != frontend)
        {
            return Err(ApiError::conflict(format!(
                "volume {name} is attached to {}{}; detach it first",
                v.spec.node_id,
                if v.spec.maintenance {
                    " in maintenance mode".to_string()
                } else {
                    format!(" with frontend {}", wire_name(v.spec.frontend))
                }
            )));
        }
        v.spec.node_id = node.clone();
        v.spec.maintenance = req.maintenance;
        v.spec.frontend = frontend;
        Ok(())
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(volume)))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/detach", tag = "volumes", params(("name" = String, Path, description = "Volume name")), request_body(content = Option<DetachRequest>, description = "Options; no body detaches without force"), responses((status = 202, description = "Detaching", body = Volume), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state (the block device is mounted)", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody)))]
async fn detach(
    State(m): Shared,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Volume>)> {
    let req: DetachRequest = optional_body(&body, "detach request")?;
    let volume = load_volume(&m, &name).await?;
    // Asked of the node now, not taken from the last observation: a mount may be seconds old.
    let engine_node = engine_address(&m, &volume).await.ok();
    if let (false, Some(address)) = (req.force, &engine_node) {
        if let Ok(engine) = m.client.call(address, node_api::engine(&name)).await {
            if let Some(device) = engine.blockdev.filter(|b| !b.mount_points.is_empty()) {
                return Err(ApiError::conflict(format!(
                    "volume {name} is mounted at {} on node {}: unmount it first (`umount {}`), or detach with --force",
                    device.mount_points.join(", "),
                    volume.status.current_node_id,
                    device.mount_points[0]
                )));
            }
        }
    }
    let volume = update_volume(&m, &name, |v| {
        v.spec.node_id.clear();
        v.spec.maintenance = false;
        Ok(())
    })
    .await?;
    if let (true, Some(address)) = (req.force, &engine_node) {
        m.client
            .call(address, node_api::stop_engine(&name, true))
            .await?;
        m.wake.notify_one();
    }
    Ok((StatusCode::ACCEPTED, Json(volume)))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/trim", tag = "volumes", params(("name" = String, Path, description = "Volume name")), responses((status = 200, description = "The filesystem on the volume's block device was trimmed; its freed blocks are deallocated in every replica", body = TrimResult), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Not attached with the blockdev frontend, or not mounted", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody)))]
async fn trim(State(m): Shared, Path(name): Path<String>) -> Result<Json<TrimResult>> {
    let volume = load_volume(&m, &name).await?;
    let address = engine_address(&m, &volume).await?;
    Ok(Json(m.client.call(&address, node_api::trim(&name)).await?))
}

/// The node address of the volume's running engine, or why there is none.
async fn engine_address(m: &Manager, volume: &Volume) -> Result<String> {
    let reports = m.reports();
    let Some((node, _)) = engine_of(&reports, &volume.name) else {
        return Err(ApiError::conflict(format!(
            "volume {} is not attached (state {:?}): attach it first{}",
            volume.name,
            volume.status.state,
            " (`ironhorn volume attach NAME`, with --maintenance for a revert)"
        )));
    };
    let (node, _) = state::get::<Node>(m.store.as_ref(), &format!("{NODES}{node}"))
        .await?
        .ok_or_else(|| ApiError::internal(format!("node {node} has no resource")))?;
    Ok(node.spec.address)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/expand", tag = "volumes", params(("name" = String, Path, description = "Volume name")), request_body = ExpandRequest, responses((status = 200, description = "Expanded", body = Volume), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn expand(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<ExpandRequest>,
) -> Result<Json<Volume>> {
    let volume = load_volume(&m, &name).await?;
    let size = volume_size(&req.size)?;
    if size < volume.spec.size {
        return Err(ApiError::invalid(format!(
            "volume {name} is {} bytes: shrinking is not supported",
            volume.spec.size
        )));
    }
    if size == volume.spec.size {
        return Ok(Json(volume));
    }
    let address = engine_address(&m, &volume).await?;
    if let Err(failed) = m.client.call(&address, node_api::expand(&name, size)).await {
        // The replicas may have grown before a later step failed (a block device that could
        // not take the new size): the volume is then that size, and must be recorded so,
        // or its replicas no longer match it at the next start.
        if let Ok(engine) = m.client.call(&address, node_api::engine(&name)).await {
            if engine.size > volume.spec.size {
                update_volume(&m, &name, |v| {
                    v.spec.size = engine.size;
                    Ok(())
                })
                .await?;
            }
        }
        return Err(failed.into());
    }
    let volume = update_volume(&m, &name, |v| {
        v.spec.size = size;
        Ok(())
    })
    .await?;
    Ok(Json(volume))
}

#[utoipa::path(get, path = "/v1/volumes/{name}/snapshots", tag = "snapshots", params(("name" = String, Path, description = "Volume name")), responses((status = 200, description = "Snapshots and the head, newest first", body = List<SnapshotInfo>), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn list_snapshots(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<Json<List<SnapshotInfo>>> {
    let volume = load_volume(&m, &name).await?;
    let address = engine_address(&m, &volume).await?;
    let mut data = m.client.call(&address, node_api::snapshots(&name)).await?;
    data.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
    Ok(Json(List { data }))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/snapshots", tag = "snapshots", params(("name" = String, Path, description = "Volume name")), request_body = CreateSnapshot, responses((status = 201, description = "Taken on every replica at one point", body = SnapshotInfo), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn create_snapshot(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<CreateSnapshot>,
) -> Result<(StatusCode, Json<SnapshotInfo>)> {
    check_name("snapshot", &req.name, MAX_NAME).map_err(|e| ApiError::invalid(e.to_string()))?;
    let volume = load_volume(&m, &name).await?;
    let address = engine_address(&m, &volume).await?;
    m.client
        .call(&address, node_api::create_snapshot(&name, &req))
        .await?;
    let created = m
        .client
        .call(&address, node_api::snapshots(&name))
        .await?
        .into_iter()
        .find(|s| s.name == req.name)
        .ok_or_else(|| ApiError::internal("the snapshot was taken but is not listed"))?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(delete, path = "/v1/volumes/{name}/snapshots/{snapshot}", tag = "snapshots", params(("name" = String, Path, description = "Volume name"), ("snapshot" = String, Path, description = "Snapshot name")), responses((status = 204, description = "Marked removed; purge frees its data"), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn delete_snapshot(
    State(m): Shared,
    Path((name, snapshot)): Path<(String, String)>,
) -> Result<StatusCode> {
    let volume = load_volume(&m, &name).await?;
    let address = engine_address(&m, &volume).await?;
    m.client
        .call(&address, node_api::remove_snapshot(&name, &snapshot))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/snapshots/{snapshot}/revert", tag = "snapshots", params(("name" = String, Path, description = "Volume name"), ("snapshot" = String, Path, description = "Snapshot name")), responses((status = 204, description = "Reverted"), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn revert_snapshot(
    State(m): Shared,
    Path((name, snapshot)): Path<(String, String)>,
) -> Result<StatusCode> {
    let volume = load_volume(&m, &name).await?;
    if !volume.spec.maintenance {
        return Err(ApiError::conflict(format!(
            "reverting needs volume {name} attached in maintenance mode (no frontend): detach it, then `ironhorn volume attach {name} --maintenance`"
        )));
    }
    let address = engine_address(&m, &volume).await?;
    m.client
        .call(&address, node_api::revert(&name, &snapshot))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/purge", tag = "snapshots", params(("name" = String, Path, description = "Volume name")), responses((status = 204, description = "Removed snapshots' data freed"), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn purge_snapshots(State(m): Shared, Path(name): Path<String>) -> Result<StatusCode> {
    let volume = load_volume(&m, &name).await?;
    let address = engine_address(&m, &volume).await?;
    m.client.call(&address, node_api::purge(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- nodes ----

#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", responses((status = 200, description = "Every node", body = List<Node>), (status = 500, description = "Failed", body = ErrorBody)))]
async fn list_nodes(State(m): Shared) -> Result<Json<List<Node>>> {
    let nodes = state::list::<Node>(m.store.as_ref(), NODES).await?;
    Ok(Json(List {
        data: nodes.into_iter().map(|(n, _)| n).collect(),
    }))
}

fn node_missing(name: &str) -> ApiError {
    ApiError::not_found(format!("no node {name:?}; `ironhorn node ls` lists them"))
}

#[utoipa::path(get, path = "/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path, description = "Node name")), responses((status = 200, description = "The node", body = Node), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn get_node(State(m): Shared, Path(name): Path<String>) -> Result<Json<Node>> {
    state::get::<Node>(m.store.as_ref(), &format!("{NODES}{name}"))
        .await?
        .map(|(n, _)| Json(n))
        .ok_or_else(|| node_missing(&name))
}

/// Registers a node (first time: with its default disk) or updates its address.
pub async fn register(m: &Manager, req: &RegisterNode) -> Result<Node> {
    check_name("node", &req.name, MAX_NAME).map_err(|e| ApiError::invalid(e.to_string()))?;
    if req
        .address
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
    {
        return Err(ApiError::invalid(format!(
            "node address {:?} is not HOST:PORT",
            req.address
        )));
    }
    let key = format!("{NODES}{}", req.name);
    loop {
        match state::get::<Node>(m.store.as_ref(), &key).await? {
            Some((mut node, revision)) => {
                if node.spec.address == req.address {
                    return Ok(node);
                }
                node.spec.address = req.address.clone();
                match state::put(m.store.as_ref(), &key, &node, Expect::Revision(revision)).await {
                    Ok(_) => {
                        m.wake.notify_one();
                        return Ok(node);
                    }
                    Err(StateError::Store(StoreError::Conflict { .. })) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                let mut disks = BTreeMap::new();
                if let Some(path) = &req.default_disk_path {
                    disks.insert(
                        "default".to_string(),
                        DiskSpec {
                            path: path.clone(),
                            allow_scheduling: true,
                            storage_reserved: 0,
                            tags: Vec::new(),
                        },
                    );
                }
                let node = Node {
                    name: req.name.clone(),
                    spec: NodeSpec {
                        address: req.address.clone(),
                        allow_scheduling: true,
                        tags: Vec::new(),
                        zone: String::new(),
                        disks,
                    },
                    status: Default::default(),
                };
                match state::put(m.store.as_ref(), &key, &node, Expect::Absent).await {
                    Ok(_) => {
                        tracing::info!(node = req.name, address = req.address, "node registered");
                        m.wake.notify_one();
                        return Ok(node);
                    }
                    Err(StateError::Store(StoreError::Conflict { .. })) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

#[utoipa::path(post, path = "/v1/nodes/register", tag = "nodes", request_body = RegisterNode, responses((status = 200, description = "Registered (first time with its default disk) or updated", body = Node), (status = 400, description = "Invalid request", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn register_node(State(m): Shared, Json(req): Json<RegisterNode>) -> Result<Json<Node>> {
    Ok(Json(register(&m, &req).await?))
}

async fn update_node_with(
    m: &Manager,
    name: &str,
    change: impl FnMut(&mut Node) -> Result<()>,
) -> Result<Node> {
    let node = state::update(
        m.store.as_ref(),
        &format!("{NODES}{name}"),
        || node_missing(name),
        change,
    )
    .await?;
    m.wake.notify_one();
    Ok(node)
}

#[utoipa::path(patch, path = "/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path, description = "Node name")), request_body = NodeUpdate, responses((status = 200, description = "Updated", body = Node), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn update_node(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<NodeUpdate>,
) -> Result<Json<Node>> {
    if let Some(tags) = &req.tags {
        check_tags("node tag", tags)?;
    }
    let node = update_node_with(&m, &name, |n| {
        if let Some(allow) = req.allow_scheduling {
            n.spec.allow_scheduling = allow;
        }
        if let Some(tags) = &req.tags {
            n.spec.tags = tags.clone();
        }
        if let Some(zone) = &req.zone {
            n.spec.zone = zone.clone();
        }
        Ok(())
    })
    .await?;
    Ok(Json(node))
}

#[utoipa::path(delete, path = "/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path, description = "Node name")), responses((status = 204, description = "Removed; its replicas are failed and rebuilt elsewhere"), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn delete_node(State(m): Shared, Path(name): Path<String>) -> Result<StatusCode> {
    let key = format!("{NODES}{name}");
    let (node, revision) = state::get::<Node>(m.store.as_ref(), &key)
        .await?
        .ok_or_else(|| node_missing(&name))?;
    if node.status.ready || m.local_node.as_deref() == Some(name.as_str()) {
        return Err(ApiError::conflict(format!(
            "node {name} is up: stop its agent first (a node is removed when its machine is gone for good)"
        )));
    }
    match m.store.delete(&key, Expect::Revision(revision)).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::conflict(format!(
                "node {name} changed meanwhile; try again"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(node = name, "node removed");
    m.wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/nodes/{name}/disks", tag = "nodes", params(("name" = String, Path, description = "Node name")), request_body = AddDisk, responses((status = 201, description = "Added", body = Node), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn add_disk(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<AddDisk>,
) -> Result<(StatusCode, Json<Node>)> {
    check_name("disk", &req.name, MAX_NAME).map_err(|e| ApiError::invalid(e.to_string()))?;
    check_tags("disk tag", &req.tags)?;
    if !req.path.starts_with('/') {
        return Err(ApiError::invalid(format!(
            "disk path {:?} must be absolute",
            req.path
        )));
    }
    let reserved = match &req.storage_reserved {
        Some(s) => size_bytes(s)?,
        None => 0,
    };
    let (node, _) = state::get::<Node>(m.store.as_ref(), &format!("{NODES}{name}"))
        .await?
        .ok_or_else(|| node_missing(&name))?;
    if node.spec.disks.contains_key(&req.name) {
        return Err(ApiError::exists(format!(
            "node {name} has a disk {:?} already",
            req.name
        )));
    }
    let path = req.path.trim_end_matches('/').to_string();
    if let Some((other, _)) = node
        .spec
        .disks
        .iter()
        .find(|(_, d)| d.path.trim_end_matches('/') == path)
    {
        return Err(ApiError::exists(format!(
            "path {path} is disk {other} of node {name} already"
        )));
    }
    // The path must exist on that node: its agent checks.
    let probe = m
        .client
        .call(&node.spec.address, node_api::probe(&path))
        .await?;
    let uuid = probe.disk_uuid;
    if node
        .status
        .disks
        .values()
        .any(|d| !uuid.is_empty() && d.disk_uuid == uuid)
    {
        return Err(ApiError::exists(format!(
            "{path} is a disk of node {name} already (same disk identity {uuid})"
        )));
    }
    let node = update_node_with(&m, &name, |n| {
        n.spec.disks.insert(
            req.name.clone(),
            DiskSpec {
                path: path.clone(),
                allow_scheduling: req.allow_scheduling,
                storage_reserved: reserved,
                tags: req.tags.clone(),
            },
        );
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(node)))
}

#[utoipa::path(patch, path = "/v1/nodes/{name}/disks/{disk}", tag = "nodes", params(("name" = String, Path, description = "Node name"), ("disk" = String, Path, description = "Disk name")), request_body = DiskUpdate, responses((status = 200, description = "Updated", body = Node), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn update_disk(
    State(m): Shared,
    Path((name, disk)): Path<(String, String)>,
    Json(req): Json<DiskUpdate>,
) -> Result<Json<Node>> {
    if let Some(tags) = &req.tags {
        check_tags("disk tag", tags)?;
    }
    let reserved = match &req.storage_reserved {
        Some(s) => Some(size_bytes(s)?),
        None => None,
    };
    let node = update_node_with(&m, &name, |n| {
        let d = n
            .spec
            .disks
            .get_mut(&disk)
            .ok_or_else(|| ApiError::not_found(format!("node {name} has no disk {disk:?}")))?;
        if let Some(allow) = req.allow_scheduling {
            d.allow_scheduling = allow;
        }
        if let Some(reserved) = reserved {
            d.storage_reserved = reserved;
        }
        if let Some(tags) = &req.tags {
            d.tags = tags.clone();
        }
        Ok(())
    })
    .await?;
    Ok(Json(node))
}

#[utoipa::path(delete, path = "/v1/nodes/{name}/disks/{disk}", tag = "nodes", params(("name" = String, Path, description = "Node name"), ("disk" = String, Path, description = "Disk name")), responses((status = 200, description = "Removed", body = Node), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn remove_disk(
    State(m): Shared,
    Path((name, disk)): Path<(String, String)>,
) -> Result<Json<Node>> {
    let holding: Vec<String> = state::list::<Replica>(m.store.as_ref(), REPLICAS)
        .await?
        .into_iter()
        .filter(|(r, _)| r.node == name && r.disk == disk)
        .map(|(r, _)| format!("{} (volume {})", r.name, r.volume))
        .collect();
    if !holding.is_empty() {
        return Err(ApiError::conflict(format!(
            "disk {disk} of node {name} holds replicas: {}; disable scheduling on it and move or delete those volumes' replicas first",
            holding.join(", ")
        )));
    }
    let node = update_node_with(&m, &name, |n| {
        n.spec
            .disks
            .remove(&disk)
            .ok_or_else(|| ApiError::not_found(format!("node {name} has no disk {disk:?}")))?;
        Ok(())
    })
    .await?;
    Ok(Json(node))
}

// ---- orphans ----

fn orphan_missing(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no orphan {name:?}; `ironhorn orphan ls` lists them"
    ))
}

#[utoipa::path(get, path = "/v1/orphans", tag = "orphans", responses((status = 200, description = "Replica directories on the disks of ready nodes that no volume owns", body = List<Orphan>), (status = 500, description = "Failed", body = ErrorBody)))]
async fn list_orphans(State(m): Shared) -> Result<Json<List<Orphan>>> {
    Ok(Json(List {
        data: crate::orphans::find(&m).await?,
    }))
}

#[utoipa::path(get, path = "/v1/orphans/{name}", tag = "orphans", params(("name" = String, Path, description = "Orphan name")), responses((status = 200, description = "The orphan", body = Orphan), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn get_orphan(State(m): Shared, Path(name): Path<String>) -> Result<Json<Orphan>> {
    crate::orphans::find(&m)
        .await?
        .into_iter()
        .find(|o| o.name == name)
        .map(Json)
        .ok_or_else(|| orphan_missing(&name))
}

#[utoipa::path(delete, path = "/v1/orphans/{name}", tag = "orphans", params(("name" = String, Path, description = "Orphan name")), responses((status = 204, description = "Its directory is removed"), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn delete_orphan(State(m): Shared, Path(name): Path<String>) -> Result<StatusCode> {
    let orphan = crate::orphans::find(&m)
        .await?
        .into_iter()
        .find(|o| o.name == name)
        .ok_or_else(|| orphan_missing(&name))?;
    crate::orphans::remove(&m, &orphan).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- settings ----

#[utoipa::path(get, path = "/v1/settings", tag = "settings", responses((status = 200, description = "Every setting with its value and definition", body = List<SettingView>), (status = 500, description = "Failed", body = ErrorBody)))]
async fn list_settings(State(m): Shared) -> Result<Json<List<SettingView>>> {
    let current = state::settings(m.store.as_ref()).await?;
    Ok(Json(List {
        data: DEFINITIONS
            .iter()
            .map(|d| SettingView {
                name: d.key.to_string(),
                value: current.get(d.key).to_string(),
                definition: d.to_api(),
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/settings/{name}", tag = "settings", params(("name" = String, Path, description = "Setting name (Longhorn's key)")), responses((status = 200, description = "The setting", body = SettingView), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn get_setting(State(m): Shared, Path(name): Path<String>) -> Result<Json<SettingView>> {
    let definition = settings::definition(&name).map_err(|e| ApiError::not_found(e.to_string()))?;
    let current = state::settings(m.store.as_ref()).await?;
    Ok(Json(SettingView {
        name: definition.key.to_string(),
        value: current.get(definition.key).to_string(),
        definition: definition.to_api(),
    }))
}

#[utoipa::path(put, path = "/v1/settings/{name}", tag = "settings", params(("name" = String, Path, description = "Setting name (Longhorn's key)")), request_body = SettingValue, responses((status = 200, description = "Changed", body = SettingView), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
async fn set_setting(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<SettingValue>,
) -> Result<Json<SettingView>> {
    let definition = settings::definition(&name).map_err(|e| ApiError::not_found(e.to_string()))?;
    let (key, value) =
        settings::validate(&name, &req.value).map_err(|e| ApiError::invalid(e.to_string()))?;
    m.store
        .put(&format!("{SETTINGS}{key}"), value.as_bytes(), Expect::Any)
        .await?;
    m.wake.notify_one();
    Ok(Json(SettingView {
        name: key.to_string(),
        value,
        definition: definition.to_api(),
    }))
}

#[cfg(test)]
mod tests {
    /// The document in the repository is the one the server serves: regenerate it with
    /// `IRONHORN_WRITE_OPENAPI=1 cargo test -p ironhorn-manager openapi`.
    #[test]
    fn the_openapi_document_in_the_repository_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../api/openapi.json");
        let generated = super::openapi_json() + "\n";
        if std::env::var_os("IRONHORN_WRITE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("writing api/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "api/openapi.json is out of date: regenerate it with IRONHORN_WRITE_OPENAPI=1 cargo test -p ironhorn-manager openapi"
        );
    }

    /// Every request of the client catalogue names an operation the server documents (and
    /// so serves: the schema test checks that).
    #[test]
    fn the_client_catalogue_matches_the_served_paths() {
        use ironhorn_api::manager_api as api;
        use ironhorn_api::node::CreateSnapshot;
        use ironhorn_api::rest::*;
        use ironhorn_api::Method;

        let doc: serde_json::Value = serde_json::from_str(&super::openapi_json()).unwrap();
        let size = || SizeInput::Bytes(1);
        let requests: Vec<(Method, String)> = vec![
            m(api::list_volumes()),
            m(api::get_volume("v")),
            m(api::create_volume(&CreateVolume {
                name: "v".into(),
                size: size(),
                number_of_replicas: None,
                stale_replica_timeout: None,
                frontend: None,
                data_locality: None,
                node_selector: vec![],
                disk_selector: vec![],
                labels: Default::default(),
            })),
            m(api::delete_volume("v")),
            m(api::attach("v", &AttachRequest::default())),
            m(api::detach("v", &DetachRequest::default())),
            m(api::trim("v")),
            m(api::expand("v", &ExpandRequest { size: size() })),
            m(api::snapshots("v")),
            m(api::create_snapshot(
                "v",
                &CreateSnapshot {
                    name: "s".into(),
                    labels: Default::default(),
                },
            )),
            m(api::delete_snapshot("v", "s")),
            m(api::revert_snapshot("v", "s")),
            m(api::purge("v")),
            m(api::list_nodes()),
            m(api::get_node("n")),
            m(api::register_node(&RegisterNode {
                name: "n".into(),
                address: "a:1".into(),
                default_disk_path: None,
            })),
            m(api::update_node("n", &NodeUpdate::default())),
            m(api::delete_node("n")),
            m(api::add_disk(
                "n",
                &AddDisk {
                    name: "d".into(),
                    path: "/d".into(),
                    allow_scheduling: true,
                    storage_reserved: None,
                    tags: vec![],
                },
            )),
            m(api::update_disk("n", "d", &DiskUpdate::default())),
            m(api::remove_disk("n", "d")),
            m(api::list_orphans()),
            m(api::get_orphan("o")),
            m(api::delete_orphan("o")),
            m(api::list_settings()),
            m(api::get_setting("k")),
            m(api::set_setting("k", "v")),
        ];
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = 0;
        for (_, operations) in paths {
            documented += operations.as_object().unwrap().len();
        }
        assert_eq!(
            requests.len(),
            documented,
            "one request per documented operation"
        );
        for (method, path) in requests {
            let found = paths.iter().any(|(template, operations)| {
                matches_template(template, &path)
                    && operations.get(method.as_str().to_lowercase()).is_some()
            });
            assert!(
                found,
                "{} {path} is not in the OpenAPI document",
                method.as_str()
            );
        }

        fn m<R: serde::de::DeserializeOwned>(r: ironhorn_api::Request<R>) -> (Method, String) {
            (r.method, r.path)
        }
        fn matches_template(template: &str, path: &str) -> bool {
            let (t, p): (Vec<&str>, Vec<&str>) =
                (template.split('/').collect(), path.split('/').collect());
            t.len() == p.len()
                && t.iter()
                    .zip(&p)
                    .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
        }
    }
}
