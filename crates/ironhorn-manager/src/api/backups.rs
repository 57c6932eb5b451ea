//! `/v1/backuptargets`, `/v1/secrets`, `/v1/backupvolumes` (with their backups, listed from
//! the cache in pages), `POST /v1/volumes/{name}/backups` and `POST /v1/volumes/{name}/activate`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use ironhorn_api::backup::{
    Backup, BackupState, BackupTarget, BackupTargetSpec, BackupVolume, CreateBackup, Page,
    SecretData, SecretView, StartBackup,
};
use ironhorn_api::node::CreateSnapshot;
use ironhorn_api::node_api;
use ironhorn_api::resource::{Node, Replica, Volume, VolumeState};
use ironhorn_api::rest::List;
use ironhorn_api::ErrorBody;
use ironhorn_backupstore as store;
use ironhorn_backupstore::BackupUrl;
use ironhorn_control::settings;
use ironhorn_control::validate::{check_name, MAX_NAME};
use ironhorn_store::Expect;
use serde::Deserialize;

use crate::backups::{target_names, target_spec, BACKUP_TARGETS, DEFAULT_TARGET, SECRETS};
use crate::error::ApiError;
use crate::plan::replica_dir;
use crate::state::{self, NODES, REPLICAS};

use super::volumes::{engine_address, load_volume, update_volume};
use super::{Json, Query, Result, Shared};

/// Which backup target (`default` when omitted).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct TargetQuery {
    /// The backup target's name; `default` when omitted.
    backup_target: Option<String>,
}

impl TargetQuery {
    fn name(&self) -> &str {
        self.backup_target.as_deref().unwrap_or(DEFAULT_TARGET)
    }
}

/// A page of backups.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// The backup target's name; `default` when omitted.
    backup_target: Option<String>,
    /// Backups per page (1 to 10000; 1000 when omitted).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// The `continue` of the previous page.
    #[serde(rename = "continue")]
    #[param(rename = "continue")]
    continue_token: Option<String>,
}

async fn target_view(m: &crate::Manager, name: &str) -> Result<BackupTarget> {
    Ok(BackupTarget {
        name: name.to_string(),
        spec: target_spec(m, name).await?,
        status: m.backups.target_status(name),
    })
}

#[utoipa::path(get, path = "/v1/backuptargets", tag = "backups", responses((status = 200, description = "Every backup target", body = List<BackupTarget>), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_backup_targets(State(m): Shared) -> Result<Json<List<BackupTarget>>> {
    let mut data = Vec::new();
    for name in target_names(&m).await? {
        data.push(target_view(&m, &name).await?);
    }
    Ok(Json(List { data }))
}

#[utoipa::path(get, path = "/v1/backuptargets/{name}", tag = "backups", params(("name" = String, Path, description = "Backup target name")), responses((status = 200, description = "The backup target", body = BackupTarget), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn get_backup_target(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<Json<BackupTarget>> {
    Ok(Json(target_view(&m, &name).await?))
}

#[utoipa::path(put, path = "/v1/backuptargets/{name}", tag = "backups", params(("name" = String, Path, description = "Backup target name (`default` sets the settings backup-target and backup-target-credential-secret)")), request_body = BackupTargetSpec, responses((status = 200, description = "Stored; polled from now on", body = BackupTarget), (status = 400, description = "Invalid request", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "The target did not answer", body = ErrorBody)))]
pub(super) async fn put_backup_target(
    State(m): Shared,
    Path(name): Path<String>,
    Json(spec): Json<BackupTargetSpec>,
) -> Result<Json<BackupTarget>> {
    check_name("backup target", &name, MAX_NAME).map_err(|e| ApiError::invalid(e.to_string()))?;
    if spec.poll_interval > 604_800 {
        return Err(ApiError::invalid(format!(
            "pollInterval {} is more than a week (604800 seconds)",
            spec.poll_interval
        )));
    }
    if !spec.backup_target_url.is_empty() {
        store::TargetUrl::parse(&spec.backup_target_url)?;
    }
    if name == DEFAULT_TARGET {
        for (key, value) in [
            (settings::BACKUP_TARGET, spec.backup_target_url.clone()),
            (
                settings::BACKUP_TARGET_CREDENTIAL_SECRET,
                spec.credential_secret.clone(),
            ),
        ] {
            let (key, value) =
                settings::validate(key, &value).map_err(|e| ApiError::invalid(e.to_string()))?;
            m.store
                .put(
                    &format!("{}{key}", state::SETTINGS),
                    value.as_bytes(),
                    Expect::Any,
                )
                .await?;
        }
        if spec.poll_interval > 0 {
            m.store
                .put(
                    &format!("{}{}", state::SETTINGS, settings::BACKUPSTORE_POLL_INTERVAL),
                    spec.poll_interval.to_string().as_bytes(),
                    Expect::Any,
                )
                .await?;
        }
    } else {
        let mut spec = spec;
        if spec.poll_interval == 0 {
            spec.poll_interval = 300;
        }
        let resource = BackupTarget {
            name: name.clone(),
            spec,
            status: Default::default(),
        };
        state::put(
            m.store.as_ref(),
            &format!("{BACKUP_TARGETS}{name}"),
            &resource,
            Expect::Any,
        )
        .await?;
    }
    m.backups.invalidate(&name).await;
    if !target_spec(&m, &name).await?.backup_target_url.is_empty() {
        // Answer with the target's health, and fill the listing cache.
        let _ = m.backups.poll_target(&m, &name).await;
    }
    Ok(Json(target_view(&m, &name).await?))
}

#[utoipa::path(delete, path = "/v1/backuptargets/{name}", tag = "backups", params(("name" = String, Path, description = "Backup target name")), responses((status = 204, description = "Forgotten (the backups stay in the target)"), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn delete_backup_target(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    if name == DEFAULT_TARGET {
        return Err(ApiError::invalid(
            "the default backup target comes from the setting backup-target: set it to \"\" to remove it",
        ));
    }
    let key = format!("{BACKUP_TARGETS}{name}");
    if state::get::<BackupTarget>(m.store.as_ref(), &key)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("no backup target {name:?}")));
    }
    m.store.delete(&key, Expect::Any).await?;
    m.backups.invalidate(&name).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/secrets", tag = "backups", responses((status = 200, description = "Secrets by name, with their keys (never their values)", body = List<SecretView>), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_secrets(State(m): Shared) -> Result<Json<List<SecretView>>> {
    let data = m
        .store
        .list(SECRETS)
        .await?
        .into_iter()
        .map(|e| {
            let keys = serde_json::from_slice::<SecretData>(&e.value)
                .map(|d| d.data.into_keys().collect())
                .unwrap_or_default();
            SecretView {
                name: e.key.trim_start_matches(SECRETS).to_string(),
                keys,
            }
        })
        .collect();
    Ok(Json(List { data }))
}

#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "backups", params(("name" = String, Path, description = "Secret name")), request_body = SecretData, responses((status = 200, description = "Stored", body = SecretView), (status = 400, description = "Invalid request", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn put_secret(
    State(m): Shared,
    Path(name): Path<String>,
    Json(data): Json<SecretData>,
) -> Result<Json<SecretView>> {
    check_name("secret", &name, MAX_NAME).map_err(|e| ApiError::invalid(e.to_string()))?;
    state::put(
        m.store.as_ref(),
        &format!("{SECRETS}{name}"),
        &data,
        Expect::Any,
    )
    .await?;
    Ok(Json(SecretView {
        name,
        keys: data.data.into_keys().collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "backups", params(("name" = String, Path, description = "Secret name")), responses((status = 204, description = "Removed"), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn delete_secret(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    let key = format!("{SECRETS}{name}");
    if m.store.get(&key).await?.is_none() {
        return Err(ApiError::not_found(format!("no secret {name:?}")));
    }
    m.store.delete(&key, Expect::Any).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/backupvolumes", tag = "backups", params(TargetQuery), responses((status = 200, description = "The backup volumes in the target (from the listing cache)", body = List<BackupVolume>), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "The target did not answer", body = ErrorBody)))]
pub(super) async fn list_backup_volumes(
    State(m): Shared,
    Query(q): Query<TargetQuery>,
) -> Result<Json<List<BackupVolume>>> {
    Ok(Json(List {
        data: m.backups.backup_volumes(&m, q.name()).await?,
    }))
}

#[utoipa::path(get, path = "/v1/backupvolumes/{volume}", tag = "backups", params(("volume" = String, Path, description = "Backup volume name"), TargetQuery), responses((status = 200, description = "The backup volume", body = BackupVolume), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "The target did not answer", body = ErrorBody)))]
pub(super) async fn get_backup_volume(
    State(m): Shared,
    Path(volume): Path<String>,
    Query(q): Query<TargetQuery>,
) -> Result<Json<BackupVolume>> {
    Ok(Json(m.backups.backup_volume(&m, q.name(), &volume).await?))
}

#[utoipa::path(delete, path = "/v1/backupvolumes/{volume}", tag = "backups", params(("volume" = String, Path, description = "Backup volume name"), TargetQuery), responses((status = 204, description = "Every backup, block and lock of it removed"), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Locked by a backup or restore", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "The target did not answer", body = ErrorBody)))]
pub(super) async fn delete_backup_volume(
    State(m): Shared,
    Path(volume): Path<String>,
    Query(q): Query<TargetQuery>,
) -> Result<StatusCode> {
    let (target, _) = m.backups.open(&m, q.name()).await?;
    if target.volume_config(&volume).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "no backup volume {volume:?} in backup target {}",
            q.name()
        )));
    }
    store::delete::delete_volume(&target, &volume).await?;
    m.backups.refresh_one(&m, q.name(), &volume).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/backupvolumes/{volume}/backups", tag = "backups", params(("volume" = String, Path, description = "Backup volume name"), PageQuery), responses((status = 200, description = "A page of the volume's backups, oldest first", body = Page<Backup>), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "The target did not answer", body = ErrorBody)))]
pub(super) async fn list_backups(
    State(m): Shared,
    Path(volume): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<Backup>>> {
    let target = q.backup_target.as_deref().unwrap_or(DEFAULT_TARGET);
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and 10000, not {limit}"
        )));
    }
    let all = m.backups.backups(&m, target, &volume).await?;
    let start = match &q.continue_token {
        None => 0,
        Some(token) => {
            let (at, name) = token.split_once('|').ok_or_else(|| {
                ApiError::invalid("continue must be the token a previous page returned")
            })?;
            all.partition_point(|b| (b.snapshot_created.as_str(), b.name.as_str()) <= (at, name))
        }
    };
    let page: Vec<Backup> = all.iter().skip(start).take(limit).cloned().collect();
    let continue_token = (start + page.len() < all.len())
        .then(|| {
            page.last()
                .map(|b| format!("{}|{}", b.snapshot_created, b.name))
        })
        .flatten();
    Ok(Json(Page {
        data: page,
        continue_token,
    }))
}

#[utoipa::path(get, path = "/v1/backupvolumes/{volume}/backups/{backup}", tag = "backups", params(("volume" = String, Path, description = "Backup volume name"), ("backup" = String, Path, description = "Backup name"), TargetQuery), responses((status = 200, description = "The backup, with its progress while it runs", body = Backup), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "The target did not answer", body = ErrorBody)))]
pub(super) async fn get_backup(
    State(m): Shared,
    Path((volume, backup)): Path<(String, String)>,
    Query(q): Query<TargetQuery>,
) -> Result<Json<Backup>> {
    if let Some(job) = m.backups.job_backup(&m, &backup).await {
        if job.state != BackupState::Completed && job.volume_name == volume {
            return Ok(Json(job));
        }
    }
    m.backups
        .backups(&m, q.name(), &volume)
        .await?
        .iter()
        .find(|b| b.name == backup)
        .cloned()
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no backup {backup:?} of volume {volume:?} in backup target {}",
                q.name()
            ))
        })
}

#[utoipa::path(delete, path = "/v1/backupvolumes/{volume}/backups/{backup}", tag = "backups", params(("volume" = String, Path, description = "Backup volume name"), ("backup" = String, Path, description = "Backup name"), TargetQuery), responses((status = 204, description = "Removed, and the blocks no other backup uses"), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Locked by a backup or restore", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "The target did not answer", body = ErrorBody)))]
pub(super) async fn delete_backup(
    State(m): Shared,
    Path((volume, backup)): Path<(String, String)>,
    Query(q): Query<TargetQuery>,
) -> Result<StatusCode> {
    remove_backup(&m, q.name(), &volume, &backup).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a backup (and the blocks no other backup uses) from target `target_name`.
pub(crate) async fn remove_backup(
    m: &crate::Manager,
    target_name: &str,
    volume: &str,
    backup: &str,
) -> Result<()> {
    let (target, _) = m.backups.open(m, target_name).await?;
    let report = store::delete::delete_backup(&target, volume, backup).await?;
    tracing::info!(volume, backup, removed = report.blocks_removed, kept = report.blocks_kept,
        skipped = ?report.gc_skipped, "backup deleted");
    m.backups.forget_job(backup);
    m.backups.refresh_one(m, target_name, volume).await?;
    Ok(())
}

#[utoipa::path(post, path = "/v1/volumes/{name}/backups", tag = "backups", params(("name" = String, Path, description = "Volume name")), request_body = CreateBackup, responses((status = 202, description = "Started; follow it at /v1/backupvolumes/{name}/backups/{backup}", body = Backup), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state (not attached)", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "A node or the target did not answer", body = ErrorBody)))]
pub(super) async fn create_backup(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<CreateBackup>,
) -> Result<(StatusCode, Json<Backup>)> {
    let view = start_backup(&m, &name, &req).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Starts a backup of volume `name` (of `req.snapshot`, or of a new snapshot): what the API
/// and the recurring jobs call. Returns the job as it is now.
pub(crate) async fn start_backup(
    m: &crate::Manager,
    name: &str,
    req: &CreateBackup,
) -> Result<Backup> {
    let name = name.to_string();
    let volume = load_volume(m, &name).await?;
    store::layout::validate_name("volume", &name).map_err(|e| {
        ApiError::invalid(format!(
            "{e}: the backup target would refuse this volume's name; back up a volume whose name has at least two characters"
        ))
    })?;
    if volume.spec.standby || volume.status.restore_required {
        return Err(ApiError::conflict(format!(
            "volume {name} is {}: it cannot be backed up until then",
            if volume.spec.standby {
                "a standby volume (activate it first)"
            } else {
                "being restored"
            }
        )));
    }
    if volume.status.state != VolumeState::Attached {
        return Err(ApiError::conflict(format!(
            "volume {name} is not attached (state {:?}): a backup reads a snapshot of a running volume; attach it first (`ironhorn volume attach {name}`)",
            volume.status.state
        )));
    }
    let target_name = req
        .backup_target
        .clone()
        .unwrap_or_else(|| DEFAULT_TARGET.to_string());
    let (target, access) = m.backups.open(m, &target_name).await?;
    let engine = engine_address(m, &volume).await?;
    let backup_name = store::layout::new_backup_name();
    let snapshot = match &req.snapshot {
        Some(s) => {
            let snapshots = m.client.call(&engine, node_api::snapshots(&name)).await?;
            if !snapshots.iter().any(|x| &x.name == s && !x.removed) {
                return Err(ApiError::not_found(format!(
                    "volume {name} has no snapshot {s:?}; `ironhorn volume snapshot ls {name}` lists them"
                )));
            }
            s.clone()
        }
        None => {
            let snapshot = CreateSnapshot {
                name: backup_name.clone(),
                labels: BTreeMap::from([("ironhorn.io/backup".to_string(), backup_name.clone())]),
            };
            m.client
                .call(&engine, node_api::create_snapshot(&name, &snapshot))
                .await?;
            backup_name.clone()
        }
    };
    let (replica, node) = source_replica(m, &volume).await?;
    let nodes: BTreeMap<String, Node> = state::list::<Node>(m.store.as_ref(), NODES)
        .await?
        .into_iter()
        .map(|(n, _)| (n.name.clone(), n))
        .collect();
    let dir = replica_dir(&nodes, &replica)
        .ok_or_else(|| ApiError::internal(format!("replica {} has no known disk", replica.name)))?;
    let settings = state::settings(m.store.as_ref()).await?;
    let start = StartBackup {
        name: backup_name.clone(),
        volume: name.clone(),
        replica_dir: dir,
        snapshot: snapshot.clone(),
        target: access,
        labels: req.labels.clone(),
        compression: settings
            .get(settings::BACKUP_COMPRESSION_METHOD)
            .to_string(),
        storage_class: String::new(),
    };
    let status = m
        .client
        .call(&node.spec.address, node_api::start_backup(&start))
        .await?;
    let url = BackupUrl::format(&target.url, &name, Some(&backup_name));
    m.backups.track(
        &backup_name,
        &name,
        &target_name,
        &node.spec.address,
        &snapshot,
        &url,
        status,
    );
    tracing::info!(volume = %name, backup = %backup_name, snapshot = %snapshot, node = %node.name, "backup started");
    m.backups
        .job_backup(m, &backup_name)
        .await
        .ok_or_else(|| ApiError::internal("the backup job vanished"))
}

/// A healthy replica serving the volume read-write, preferably on the engine's node.
async fn source_replica(m: &crate::Manager, volume: &Volume) -> Result<(Replica, Node)> {
    let mut candidates: Vec<_> = volume
        .status
        .replicas
        .iter()
        .filter(|r| r.healthy && r.mode == "RW")
        .collect();
    candidates.sort_by_key(|r| r.node != volume.status.current_node_id);
    for r in candidates {
        let Some((replica, _)) =
            state::get::<Replica>(m.store.as_ref(), &format!("{REPLICAS}{}", r.name)).await?
        else {
            continue;
        };
        if let Some((node, _)) =
            state::get::<Node>(m.store.as_ref(), &format!("{NODES}{}", replica.node)).await?
        {
            if node.status.ready {
                return Ok((replica, node));
            }
        }
    }
    Err(ApiError::conflict(format!(
        "volume {} has no healthy read-write replica on a ready node to read the snapshot from",
        volume.name
    )))
}

#[utoipa::path(post, path = "/v1/volumes/{name}/activate", tag = "backups", params(("name" = String, Path, description = "Volume name")), responses((status = 200, description = "Now a normal volume holding the last backup; attach it", body = Volume), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Not a standby volume, or the last backup is not restored yet", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody), (status = 503, description = "The target did not answer", body = ErrorBody)))]
pub(super) async fn activate(State(m): Shared, Path(name): Path<String>) -> Result<Json<Volume>> {
    let volume = load_volume(&m, &name).await?;
    if !volume.spec.standby {
        return Err(ApiError::conflict(format!(
            "volume {name} is not a standby volume"
        )));
    }
    let url = BackupUrl::parse(&volume.spec.from_backup)?;
    let access = crate::backups::access_for_url(&m, &url).await?;
    let target = m.backups.open_access(&access).await?;
    let last = target
        .volume_config(&url.volume)
        .await?
        .map(|c| c.last_backup_name)
        .unwrap_or_default();
    if last.is_empty() || volume.status.last_restored_backup != last {
        let progress = volume.status.restore.as_ref().map_or(0, |r| r.progress);
        return Err(ApiError::conflict(format!(
            "standby volume {name} does not hold the last backup {last:?} yet (restored: {:?}, {progress}% of the next); retry when it does",
            volume.status.last_restored_backup
        )));
    }
    let volume = update_volume(&m, &name, |v| {
        v.spec.standby = false;
        v.spec.node_id.clear();
        v.spec.maintenance = false;
        v.status.restore_required = false;
        Ok(())
    })
    .await?;
    tracing::info!(volume = %name, backup = %last, "standby volume activated");
    Ok(Json(volume))
}
