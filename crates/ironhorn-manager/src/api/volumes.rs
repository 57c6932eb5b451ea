//! `/v1/volumes`: volumes, attach and detach, trim, expand, salvage, and snapshots (passed to the
//! node where the volume's engine runs).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use ironhorn_api::data_source::SnapshotSource;
use ironhorn_api::node::{CreateSnapshot, SnapshotInfo, TrimResult};
use ironhorn_api::node_api;
use ironhorn_api::resource::{
    wire_name, DataLocality, Node, Replica, Robustness, Volume, VolumeSpec, VolumeState,
    VolumeStatus,
};
use ironhorn_api::rest::{
    AttachRequest, CreateVolume, DetachRequest, ExpandRequest, List, SalvageRequest, SizeInput,
};
use ironhorn_api::ErrorBody;
use ironhorn_control::settings::{self};
use ironhorn_control::units::parse_size;
use ironhorn_control::validate::{check_name, MAX_NAME, MAX_VOLUME_NAME};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::plan::engine_of;
use crate::state::{self, NODES, REPLICAS, VOLUMES};
use crate::Manager;

use super::{parse_body, Json, Result, Shared};

/// The bytes a size stands for.
pub(super) fn size_bytes(input: &SizeInput) -> Result<u64> {
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
pub(super) const SIZE_ALIGNMENT: u64 = 2 << 20;
/// Ext4's limit is 16 TiB; no volume is bigger than its largest filesystem can use... but
/// xfs goes further: the cap is what the format's sector arithmetic safely holds.
pub(super) const MAX_SIZE: u64 = 1 << 50;

pub(super) fn volume_size(input: &SizeInput) -> Result<u64> {
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
pub(super) const DEFAULT_STALE_REPLICA_TIMEOUT: u64 = 2880;

pub(super) fn check_tags(what: &'static str, tags: &[String]) -> Result<()> {
    for tag in tags {
        check_name(what, tag, MAX_NAME).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/volumes", tag = "volumes", responses((status = 200, description = "Every volume", body = List<Volume>), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_volumes(State(m): Shared) -> Result<Json<List<Volume>>> {
    let volumes =
        state::list_cached::<Volume>(m.store.as_ref(), VOLUMES, &m.parsed_volumes).await?;
    Ok(Json(List {
        data: volumes.into_iter().map(|(v, _)| v).collect(),
    }))
}

pub(crate) async fn load_volume(m: &Manager, name: &str) -> Result<Volume> {
    state::get::<Volume>(m.store.as_ref(), &format!("{VOLUMES}{name}"))
        .await?
        .map(|(v, _)| v)
        .ok_or_else(|| volume_missing(name))
}

pub(super) fn volume_missing(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no volume {name:?}; `ironhorn volume ls` lists them"
    ))
}

#[utoipa::path(get, path = "/v1/volumes/{name}", tag = "volumes", params(("name" = String, Path, description = "Volume name")), responses((status = 200, description = "The volume", body = Volume), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn get_volume(State(m): Shared, Path(name): Path<String>) -> Result<Json<Volume>> {
    Ok(Json(load_volume(&m, &name).await?))
}

#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", request_body = CreateVolume, responses((status = 201, description = "Created; the controllers place its replicas", body = Volume), (status = 400, description = "Invalid request", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn create_volume(
    State(m): Shared,
    Json(req): Json<CreateVolume>,
) -> Result<(StatusCode, Json<Volume>)> {
    check_name("volume", &req.name, MAX_VOLUME_NAME)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let (size, from_backup) = match &req.from_backup {
        None if req.standby == Some(true) => return Err(ApiError::invalid(
            "a standby volume follows a backup volume: give fromBackup (`<target>?volume=NAME`)",
        )),
        None => (volume_size(&req.size)?, String::new()),
        Some(url) => restore_source(&m, url, &req.size, req.standby == Some(true)).await?,
    };
    let (size, data_source) = match &req.data_source {
        None => (size, String::new()),
        Some(_) if !from_backup.is_empty() => {
            return Err(ApiError::invalid(
                "give fromBackup or dataSource, not both: a volume has one source",
            ))
        }
        Some(source) => clone_source(&m, source, &req.size).await?,
    };
    let standby = req.standby == Some(true);
    let restore_required = !from_backup.is_empty() || !data_source.is_empty();
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
    super::recurring::check_selector(&m, &req.labels).await?;
    let data_locality = match req.data_locality {
        Some(d) => d,
        None => match settings.get(settings::DEFAULT_DATA_LOCALITY) {
            "best-effort" => DataLocality::BestEffort,
            _ => DataLocality::Disabled,
        },
    };
    let volume = Volume {
        name: req.name.clone(),
        created: crate::clock::now_rfc3339(),
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
            from_backup,
            standby,
            data_source,
        },
        status: VolumeStatus {
            restore_required,
            ..VolumeStatus::default()
        },
    };
    if !state::create(m.store.as_ref(), &format!("{VOLUMES}{}", req.name), &volume).await? {
        return Err(ApiError::exists(format!(
            "volume {:?} exists already",
            req.name
        )));
    }
    m.wake.notify_one();
    Ok((StatusCode::CREATED, Json(volume)))
}

/// Checks a `dataSource` (`snap://<volume>/<snapshot>`): the source volume exists and the
/// size holds it; returns the new volume's size (the source's when `size` is 0) and the
/// source. Whether the snapshot exists is checked where it is read (the clone job), since a
/// detached volume's snapshots are known only to its replicas.
async fn clone_source(m: &Manager, raw: &str, size: &SizeInput) -> Result<(u64, String)> {
    let source = SnapshotSource::parse(raw).map_err(ApiError::invalid)?;
    let (volume, _) =
        state::get::<Volume>(m.store.as_ref(), &format!("{VOLUMES}{}", source.volume))
            .await?
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "data source {raw}: no volume {:?}; `ironhorn volume ls` lists them",
                    source.volume
                ))
            })?;
    let bytes = if size_bytes(size)? == 0 {
        volume.spec.size
    } else {
        volume_size(size)?
    };
    if bytes < volume.spec.size {
        return Err(ApiError::invalid(format!(
            "a {bytes}-byte volume cannot hold a snapshot of volume {} ({} bytes): ask for at least that size (or 0 for the source's size)",
            source.volume, volume.spec.size
        )));
    }
    Ok((bytes, source.to_string()))
}

/// Checks a `fromBackup` URL against its target (the backup volume and backup exist and
/// are complete, the size holds it); returns the volume's size (the backup volume's when
/// `size` is 0) and the URL to restore from.
async fn restore_source(
    m: &Manager,
    raw: &str,
    size: &SizeInput,
    standby: bool,
) -> Result<(u64, String)> {
    use ironhorn_backupstore::BackupUrl;
    let url = BackupUrl::parse(raw)?;
    let access = crate::backups::access_for_url(m, &url).await?;
    let target = m.backups.open_access(&access).await?;
    let source = target.volume_config(&url.volume).await?.ok_or_else(|| {
        ApiError::invalid(format!(
            "the backup target {} has no backup volume {:?}",
            url.target, url.volume
        ))
    })?;
    let backup = match (&url.backup, standby) {
        (_, true) => None,
        (Some(b), false) => Some(b.clone()),
        (None, false) => Some(source.last_backup_name.clone()).filter(|b| !b.is_empty()),
    };
    if !standby {
        let Some(b) = &backup else {
            return Err(ApiError::invalid(format!(
                "backup volume {:?} has no backups to restore",
                url.volume
            )));
        };
        let cfg = target
            .backup_config(&url.volume, b)
            .await
            .map_err(|e| match e {
                ironhorn_backupstore::BackupStoreError::NotFound { .. } => {
                    ApiError::invalid(e.to_string())
                }
                other => other.into(),
            })?;
        if !cfg.is_complete() {
            return Err(ApiError::invalid(format!(
                "backup {b} of volume {} is not complete; restore a completed backup",
                url.volume
            )));
        }
    }
    let bytes = if size_bytes(size)? == 0 {
        source.size.div_ceil(SIZE_ALIGNMENT) * SIZE_ALIGNMENT
    } else {
        volume_size(size)?
    };
    if bytes < source.size {
        return Err(ApiError::invalid(format!(
            "a {bytes}-byte volume cannot hold backup volume {:?} of {} bytes: ask for at least that size (or 0 for the backup's size)",
            url.volume, source.size
        )));
    }
    Ok((
        bytes,
        BackupUrl::format(&url.target, &url.volume, backup.as_deref()),
    ))
}

pub(crate) async fn update_volume(
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
pub(super) async fn delete_volume(
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
pub(super) fn optional_body<T: Default + DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("{what}: {e}")))?;
    parse_body(value)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/attach", tag = "volumes", params(("name" = String, Path, description = "Volume name")), request_body(content = Option<AttachRequest>, description = "Where to attach; no body attaches to the server's own node"), responses((status = 202, description = "Attaching", body = Volume), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn attach(
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
        if v.spec.standby {
            return Err(ApiError::conflict(format!(
                "volume {name} is a standby volume following {}: activate it first (`ironhorn volume activate {name}`)",
                v.spec.from_backup
            )));
        }
        if v.status.restore_required {
            let progress = v.status.restore.as_ref().map_or(0, |r| r.progress);
            let source = if v.spec.data_source.is_empty() {
                &v.spec.from_backup
            } else {
                &v.spec.data_source
            };
            return Err(ApiError::conflict(format!(
                "volume {name} is being restored from {source} ({progress}%): it attaches when the restore completes"
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
pub(super) async fn detach(
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
pub(super) async fn trim(State(m): Shared, Path(name): Path<String>) -> Result<Json<TrimResult>> {
    let volume = load_volume(&m, &name).await?;
    let address = engine_address(&m, &volume).await?;
    Ok(Json(m.client.call(&address, node_api::trim(&name)).await?))
}

/// The node address of the volume's running engine, or why there is none.
pub(crate) async fn engine_address(m: &Manager, volume: &Volume) -> Result<String> {
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
pub(super) async fn expand(
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

#[utoipa::path(post, path = "/v1/volumes/{name}/salvage", tag = "volumes", params(("name" = String, Path, description = "Volume name")), request_body(content = Option<SalvageRequest>, description = "Which failed replicas; no body: all of them"), responses((status = 200, description = "The replicas may serve again: an engine still running is stopped, and the volume's engine starts from the replica holding the newest writes", body = Volume), (status = 400, description = "Invalid request (not a failed replica of the volume)", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "The volume is not faulted, or no failed replica is left", body = ErrorBody), (status = 503, description = "The node running its engine did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn salvage(
    State(m): Shared,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Volume>> {
    let req: SalvageRequest = optional_body(&body, "salvage request")?;
    let volume = load_volume(&m, &name).await?;
    if volume.status.robustness != Robustness::Faulted {
        return Err(ApiError::conflict(format!(
            "volume {name} is {}, not faulted: only a volume with no healthy replica is salvaged",
            wire_name(volume.status.robustness)
        )));
    }
    let failed: Vec<Replica> = state::list::<Replica>(m.store.as_ref(), REPLICAS)
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .filter(|r| r.volume == name && r.failed_at.is_some())
        .collect();
    if failed.is_empty() {
        return Err(ApiError::conflict(format!(
            "volume {name} has no failed replica left to salvage (failed replicas are removed after its staleReplicaTimeout); restore it from a backup"
        )));
    }
    let known: Vec<&str> = failed.iter().map(|r| r.name.as_str()).collect();
    if let Some(unknown) = req.names.iter().find(|n| !known.contains(&n.as_str())) {
        return Err(ApiError::invalid(format!(
            "{unknown} is not a failed replica of volume {name}; its failed replicas: {}",
            known.join(", ")
        )));
    }
    // An engine still running serves nothing (no replica is healthy): it is stopped first,
    // so that it starts again from the salvaged replicas rather than failing them again.
    if let Ok(address) = engine_address(&m, &volume).await {
        m.client
            .call(&address, node_api::stop_engine(&name, true))
            .await?;
    }
    for replica in failed
        .iter()
        .filter(|r| req.names.is_empty() || req.names.contains(&r.name))
    {
        state::update::<Replica, ApiError, _>(
            m.store.as_ref(),
            &format!("{REPLICAS}{}", replica.name),
            || ApiError::conflict(format!("replica {} was removed meanwhile", replica.name)),
            |r| {
                r.failed_at = None;
                r.healthy = true;
                Ok(())
            },
        )
        .await?;
        tracing::info!(volume = %name, replica = %replica.name, "replica salvaged");
    }
    m.wake.notify_one();
    Ok(Json(load_volume(&m, &name).await?))
}

#[utoipa::path(get, path = "/v1/volumes/{name}/snapshots", tag = "snapshots", params(("name" = String, Path, description = "Volume name")), responses((status = 200, description = "Snapshots and the head, newest first", body = List<SnapshotInfo>), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_snapshots(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<Json<List<SnapshotInfo>>> {
    let volume = load_volume(&m, &name).await?;
    let mut data = if engine_of(&m.reports(), &name).is_some() {
        let address = engine_address(&m, &volume).await?;
        m.client.call(&address, node_api::snapshots(&name)).await?
    } else {
        // No engine runs: read a healthy replica's directory on its node.
        detached_snapshots(&m, &volume).await?
    };
    data.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
    Ok(Json(List { data }))
}

/// The snapshots of a volume whose engine is not running, from one of its healthy replicas.
async fn detached_snapshots(m: &Manager, volume: &Volume) -> Result<Vec<SnapshotInfo>> {
    let (replicas, placed) = crate::clones::readable_replicas(m, &volume.name).await?;
    if !placed {
        // Not placed yet: a volume that never held data has no snapshots.
        return Ok(Vec::new());
    }
    let mut last_error = None;
    for r in replicas {
        match m
            .client
            .call(&r.node_address, node_api::replica_snapshots(&r.dir))
            .await
        {
            Ok(list) => return Ok(list),
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => e.into(),
        None => ApiError::conflict(format!(
            "volume {} has no healthy replica on a ready node to read its snapshots from (state {:?})",
            volume.name, volume.status.state
        )),
    })
}

#[utoipa::path(post, path = "/v1/volumes/{name}/snapshots", tag = "snapshots", params(("name" = String, Path, description = "Volume name")), request_body = CreateSnapshot, responses((status = 201, description = "Taken on every replica at one point", body = SnapshotInfo), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn create_snapshot(
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
pub(super) async fn delete_snapshot(
    State(m): Shared,
    Path((name, snapshot)): Path<(String, String)>,
) -> Result<StatusCode> {
    let volume = load_volume(&m, &name).await?;
    refuse_while_backing_up(&m, &name)?;
    let address = engine_address(&m, &volume).await?;
    m.client
        .call(&address, node_api::remove_snapshot(&name, &snapshot))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/volumes/{name}/snapshots/{snapshot}/revert", tag = "snapshots", params(("name" = String, Path, description = "Volume name"), ("snapshot" = String, Path, description = "Snapshot name")), responses((status = 204, description = "Reverted"), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn revert_snapshot(
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
pub(super) async fn purge_snapshots(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    let volume = load_volume(&m, &name).await?;
    refuse_while_backing_up(&m, &name)?;
    let address = engine_address(&m, &volume).await?;
    m.client.call(&address, node_api::purge(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Snapshots must not change under a backup that reads them.
fn refuse_while_backing_up(m: &Manager, volume: &str) -> Result<()> {
    match m.backups.volume_busy(volume) {
        Some(backup) => Err(ApiError::conflict(format!(
            "backup {backup} of volume {volume} is reading its snapshots; retry when it completes"
        ))),
        None => Ok(()),
    }
}
