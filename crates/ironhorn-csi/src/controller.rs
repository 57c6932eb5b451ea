//! The CSI controller service: volumes, attachments, snapshots and expansion, each one or a
//! few calls on the manager's REST API. Operations that need a running engine (a snapshot or
//! an expansion of a detached volume) attach the volume without a frontend for their
//! duration, as Longhorn does.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ironhorn_api::backup::{BackupState, CreateBackup};
use ironhorn_api::data_source::SnapshotSource;
use ironhorn_api::manager_api;
use ironhorn_api::node::{CreateSnapshot, SnapshotInfo};
use ironhorn_api::resource::{Frontend, Robustness, Volume, VolumeState};
use ironhorn_api::rest::{AttachRequest, CreateVolume, DetachRequest, ExpandRequest, SizeInput};
use tonic::{Request, Response, Status};

use crate::capabilities::{check_all, unsupported};
use crate::csi::controller_server::Controller;
use crate::csi::controller_service_capability::rpc::Type as Rpc;
use crate::csi::volume_content_source::{self, SnapshotSource as CsiSnapshotSource, VolumeSource};
use crate::csi::*;
use crate::names::{ironhorn_name, MAX_SNAPSHOT_NAME, MAX_VOLUME_NAME};
use crate::params::{snapshot_params, volume_params, SnapshotKind};
use crate::plugin::Plugin;

/// Volumes are sized in whole 2 MiB.
const SIZE_ALIGNMENT: i64 = 2 << 20;
/// The size of a volume created without a capacity range.
const DEFAULT_SIZE: i64 = 1 << 30;
/// The largest volume the manager takes.
const MAX_SIZE: i64 = 1 << 50;
/// Label carrying the name the CO gave a volume or snapshot.
pub const CSI_NAME_LABEL: &str = "csi.ironhorn.io/name";
/// How long CreateVolume waits for a clone or restore to fill the volume before the CO is
/// told to retry.
const FILL_WAIT: Duration = Duration::from_secs(300);

/// The CSI controller service.
#[derive(Debug, Clone)]
pub struct ControllerService {
    pub plugin: Plugin,
}

/// A snapshot's CSI ID: `snap://<volume>/<snapshot>` or `bak://<volume>/<backup>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotId {
    Snapshot(SnapshotSource),
    Backup { volume: String, backup: String },
}

impl SnapshotId {
    pub fn parse(id: &str) -> Option<SnapshotId> {
        if let Some(rest) = id.strip_prefix("bak://") {
            let (volume, backup) = rest.split_once('/')?;
            if volume.is_empty() || backup.is_empty() || backup.contains('/') {
                return None;
            }
            return Some(SnapshotId::Backup {
                volume: volume.into(),
                backup: backup.into(),
            });
        }
        SnapshotSource::parse(id).ok().map(SnapshotId::Snapshot)
    }

    pub fn volume(&self) -> &str {
        match self {
            SnapshotId::Snapshot(s) => &s.volume,
            SnapshotId::Backup { volume, .. } => volume,
        }
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotId::Snapshot(s) => write!(f, "{s}"),
            SnapshotId::Backup { volume, backup } => write!(f, "bak://{volume}/{backup}"),
        }
    }
}

/// The size to create for a capacity range: the required bytes (or the default) rounded up
/// to whole 2 MiB, within the limit.
pub fn size_for(range: Option<&CapacityRange>, at_least: i64) -> Result<i64, Status> {
    let (required, limit) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if required < 0 || limit < 0 {
        return Err(Status::invalid_argument(
            "capacity_range must not be negative",
        ));
    }
    if limit > 0 && required > limit {
        return Err(Status::invalid_argument(format!(
            "capacity_range asks for at least {required} bytes and at most {limit}"
        )));
    }
    let wanted = if required > 0 {
        required
    } else if limit > 0 {
        limit.min(DEFAULT_SIZE)
    } else {
        DEFAULT_SIZE
    }
    .max(at_least);
    if wanted > MAX_SIZE {
        return Err(Status::out_of_range(format!(
            "{wanted} bytes is above the largest volume ({MAX_SIZE} bytes, 1 PiB)"
        )));
    }
    let size = (wanted + SIZE_ALIGNMENT - 1) / SIZE_ALIGNMENT * SIZE_ALIGNMENT;
    if limit > 0 && size > limit {
        return Err(Status::out_of_range(format!(
            "volumes come in whole 2 MiB: no size between {} and {limit} bytes",
            wanted.max(required)
        )));
    }
    Ok(size)
}

fn fits(volume: &Volume, range: Option<&CapacityRange>) -> bool {
    let size = volume.spec.size as i64;
    range.is_none_or(|r| size >= r.required_bytes && (r.limit_bytes == 0 || size <= r.limit_bytes))
}

fn timestamp(rfc3339: &str) -> Option<prost_types::Timestamp> {
    let t = humantime::parse_rfc3339_weak(rfc3339).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    Some(prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

fn now() -> prost_types::Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn csi_snapshot(volume: &str, s: &SnapshotInfo) -> Snapshot {
    Snapshot {
        size_bytes: s.size as i64,
        snapshot_id: SnapshotId::Snapshot(SnapshotSource {
            volume: volume.into(),
            snapshot: s.name.clone(),
        })
        .to_string(),
        source_volume_id: volume.into(),
        creation_time: timestamp(&s.created).or_else(|| Some(now())),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    }
}

fn csi_volume(
    v: &Volume,
    context: HashMap<String, String>,
    source: Option<VolumeContentSource>,
) -> crate::csi::Volume {
    crate::csi::Volume {
        capacity_bytes: v.spec.size as i64,
        volume_id: v.name.clone(),
        volume_context: context,
        content_source: source,
        accessible_topology: Vec::new(),
    }
}

/// Tokens say where the next page starts: after the entry with this key. A key, not an
/// index, so entries added or deleted between pages neither repeat nor skip others.
const TOKEN_PREFIX: &str = "after:";

/// One page of `items` (sorted by `key`) from `token` on: the page and the next token.
fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> &str,
    max_entries: i32,
    token: &str,
) -> Result<(Vec<T>, String), Status> {
    if max_entries < 0 {
        return Err(Status::invalid_argument("max_entries must not be negative"));
    }
    let rest: Vec<T> = if token.is_empty() {
        items
    } else {
        let after = token.strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
            Status::aborted(format!(
                "starting_token {token:?} is not one this plugin gave; list again from the start"
            ))
        })?;
        items.into_iter().filter(|i| key(i) > after).collect()
    };
    let limit = if max_entries == 0 {
        rest.len()
    } else {
        max_entries as usize
    };
    let more = rest.len() > limit;
    let page: Vec<T> = rest.into_iter().take(limit).collect();
    let next = match page.last() {
        Some(last) if more => format!("{TOKEN_PREFIX}{}", key(last)),
        _ => String::new(),
    };
    Ok((page, next))
}

impl ControllerService {
    /// Runs `f` with the volume's engine running: as it is when attached; attached without a
    /// frontend for the duration when detached.
    async fn with_engine<T, F, Fut>(&self, name: &str, f: F) -> Result<T, Status>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let p = &self.plugin;
        let volume = p
            .wait_for(name, "settled (attached or detached)", |v| {
                Ok(matches!(
                    v.status.state,
                    VolumeState::Attached | VolumeState::Detached
                )
                .then(|| v.clone()))
            })
            .await?;
        if volume.status.state == VolumeState::Attached && !volume.spec.node_id.is_empty() {
            return f().await;
        }
        let nodes = p.call(manager_api::list_nodes()).await?.data;
        let node = volume
            .status
            .replicas
            .iter()
            .map(|r| r.node.clone())
            .chain(nodes.iter().map(|n| n.name.clone()))
            .find(|n| nodes.iter().any(|x| &x.name == n && x.status.ready))
            .ok_or_else(|| Status::unavailable("no node is ready to run the volume's engine"))?;
        p.call(manager_api::attach(
            name,
            &AttachRequest {
                node: Some(node),
                maintenance: true,
                frontend: None,
            },
        ))
        .await?;
        let attached = p
            .wait_for(name, "attached for maintenance", |v| {
                Ok((v.status.state == VolumeState::Attached).then_some(()))
            })
            .await;
        let result = match attached {
            Ok(()) => f().await,
            Err(e) => Err(e),
        };
        p.call(manager_api::detach(name, &DetachRequest::default()))
            .await?;
        p.wait_for(name, "detached", |v| {
            Ok((v.status.state == VolumeState::Detached).then_some(()))
        })
        .await?;
        result
    }

    /// The volume's snapshots (the manager reads them from a replica when it is detached).
    async fn snapshots_of(&self, volume: &str) -> Result<Vec<SnapshotInfo>, Status> {
        let list = self.plugin.call(manager_api::snapshots(volume)).await?.data;
        Ok(list
            .into_iter()
            .filter(|s| !s.removed && s.name != "volume-head" && s.user_created)
            .collect())
    }

    /// AlreadyExists when another volume holds a snapshot the CO created under `csi_name`:
    /// snapshot names are unique across the cluster in CSI, per volume in Ironhorn.
    async fn refuse_name_taken_elsewhere(
        &self,
        source: &str,
        name: &str,
        csi_name: &str,
    ) -> Result<(), Status> {
        let volumes = self.plugin.call(manager_api::list_volumes()).await?.data;
        for v in volumes
            .iter()
            .filter(|v| v.name != source && v.status.state != VolumeState::Deleting)
        {
            let Ok(snapshots) = self.snapshots_of(&v.name).await else {
                continue;
            };
            if snapshots.iter().any(|s| {
                s.name == name && s.labels.get(CSI_NAME_LABEL).map(String::as_str) == Some(csi_name)
            }) {
                return Err(Status::already_exists(format!(
                    "snapshot {csi_name:?} exists already, of volume {}",
                    v.name
                )));
            }
        }
        Ok(())
    }

    /// The snapshot of `source` to clone `new_volume` from, taken now (or found, on a retry).
    async fn clone_snapshot(&self, source: &str, new_volume: &str) -> Result<String, Status> {
        let name = ironhorn_name(&format!("clone-{new_volume}"), MAX_SNAPSHOT_NAME);
        let _guard = self.plugin.guard(source)?;
        self.with_engine(source, || async {
            let existing = self.plugin.call(manager_api::snapshots(source)).await?.data;
            if !existing.iter().any(|s| s.name == name && !s.removed) {
                self.plugin
                    .call(manager_api::create_snapshot(
                        source,
                        &CreateSnapshot {
                            name: name.clone(),
                            labels: BTreeMap::from([(
                                "ironhorn.io/clone-of".to_string(),
                                source.to_string(),
                            )]),
                        },
                    ))
                    .await?;
            }
            Ok(())
        })
        .await?;
        Ok(name)
    }

    /// The largest volume a disk can hold now (over-provisioning counted), summed free
    /// space, for the nodes `filter` keeps.
    async fn capacity(
        &self,
        filter: impl Fn(&ironhorn_api::resource::Node) -> bool,
    ) -> Result<(i64, i64), Status> {
        let nodes = self.plugin.call(manager_api::list_nodes()).await?.data;
        let percent = self
            .plugin
            .call(manager_api::get_setting(
                "storage-over-provisioning-percentage",
            ))
            .await
            .ok()
            .and_then(|s| s.value.parse::<i64>().ok())
            .unwrap_or(100)
            .max(0);
        let (mut available, mut largest) = (0i64, 0i64);
        for node in nodes
            .iter()
            .filter(|n| n.status.ready && n.spec.allow_scheduling && filter(n))
        {
            for (disk, spec) in &node.spec.disks {
                let Some(status) = node.status.disks.get(disk) else {
                    continue;
                };
                if !spec.allow_scheduling {
                    continue;
                }
                let usable = status.storage_maximum.saturating_sub(spec.storage_reserved) as i64;
                let free = status
                    .storage_available
                    .saturating_sub(spec.storage_reserved) as i64;
                available += free.max(0);
                let schedulable = (usable.saturating_mul(percent) / 100)
                    .saturating_sub(status.storage_scheduled as i64);
                largest = largest.max(schedulable);
            }
        }
        Ok((available, largest))
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(Status::invalid_argument("name is required"));
        }
        check_all(&req.volume_capabilities)?;
        let params =
            volume_params(&req.parameters).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let name = ironhorn_name(&req.name, MAX_VOLUME_NAME);
        let p = &self.plugin;
        let _guard = p.guard(&name)?;
        let existing = p.find_volume(&name).await?;

        // What the volume is filled from, and the smallest size that holds it.
        let mut from_backup = params.from_backup.clone();
        let mut data_source = None;
        let mut at_least = 0;
        match req
            .volume_content_source
            .as_ref()
            .and_then(|s| s.r#type.as_ref())
        {
            None => {}
            Some(volume_content_source::Type::Snapshot(CsiSnapshotSource { snapshot_id })) => {
                let id = SnapshotId::parse(snapshot_id)
                    .ok_or_else(|| Status::not_found(format!("no snapshot {snapshot_id:?}")))?;
                match &id {
                    SnapshotId::Snapshot(s) => {
                        let source = p.find_volume(&s.volume).await?.ok_or_else(|| {
                            Status::not_found(format!(
                                "no snapshot {snapshot_id}: volume {} is gone",
                                s.volume
                            ))
                        })?;
                        at_least = source.spec.size as i64;
                        if existing.is_none()
                            && !self
                                .snapshots_of(&s.volume)
                                .await?
                                .iter()
                                .any(|x| x.name == s.snapshot)
                        {
                            return Err(Status::not_found(format!("no snapshot {snapshot_id}")));
                        }
                        data_source = Some(s.to_string());
                    }
                    SnapshotId::Backup { volume, backup } => {
                        let b = p
                            .call(manager_api::get_backup(volume, backup, None))
                            .await?;
                        at_least = b.size as i64;
                        from_backup = Some(b.url);
                    }
                }
            }
            Some(volume_content_source::Type::Volume(VolumeSource { volume_id })) => {
                let source = p.find_volume(volume_id).await?.ok_or_else(|| {
                    Status::not_found(format!("no volume {volume_id:?} to clone"))
                })?;
                at_least = source.spec.size as i64;
                let snapshot = match &existing {
                    Some(existing) => SnapshotSource::parse(&existing.spec.data_source)
                        .map(|s| s.snapshot)
                        .unwrap_or_default(),
                    None => self.clone_snapshot(volume_id, &name).await?,
                };
                data_source = Some(
                    SnapshotSource {
                        volume: volume_id.clone(),
                        snapshot,
                    }
                    .to_string(),
                );
            }
        }
        if let Some(r) = &req.capacity_range {
            if r.limit_bytes > 0 && r.limit_bytes < at_least {
                return Err(Status::out_of_range(format!(
                    "the source holds {at_least} bytes, more than limit_bytes {}",
                    r.limit_bytes
                )));
            }
        }
        let size = size_for(req.capacity_range.as_ref(), at_least)?;

        let mut context = HashMap::new();
        if !params.mkfs_params.is_empty() {
            context.insert("mkfsParams".to_string(), params.mkfs_params.clone());
        }
        if let Some(fs) = &params.fs_type {
            context.insert("fsType".to_string(), fs.clone());
        }
        // An existing volume of this name must have been made from the same source. (For a
        // clone of a volume, `data_source` was read back from the existing volume above.)
        let same_source = |v: &Volume| match (&data_source, &from_backup) {
            (Some(d), _) => v.spec.data_source == *d,
            (None, Some(b)) => v.spec.from_backup == *b,
            (None, None) => v.spec.data_source.is_empty() && v.spec.from_backup.is_empty(),
        };
        let volume = match existing {
            Some(v) if v.status.state == VolumeState::Deleting => {
                return Err(Status::aborted(format!(
                    "volume {name} is still being deleted: its name is free once it is gone; retry"
                )))
            }
            Some(v) => {
                if !fits(&v, req.capacity_range.as_ref()) || !same_source(&v) {
                    return Err(Status::already_exists(format!(
                        "volume {name} exists already with {} bytes{}: another size or source cannot be given the same name",
                        v.spec.size,
                        if v.spec.data_source.is_empty() { String::new() } else { format!(" from {}", v.spec.data_source) }
                    )));
                }
                v
            }
            None => {
                if req.volume_content_source.is_none() && from_backup.is_none() {
                    let (_, largest) = self.capacity(|_| true).await?;
                    if size > largest {
                        return Err(Status::resource_exhausted(format!(
                            "no disk can hold a {size}-byte replica now (the largest room is {largest} bytes, over-provisioning counted)"
                        )));
                    }
                }
                let mut labels = params.labels.clone();
                labels.insert(CSI_NAME_LABEL.into(), req.name.chars().take(253).collect());
                let create = CreateVolume {
                    name: name.clone(),
                    size: SizeInput::Bytes(size as u64),
                    number_of_replicas: params.number_of_replicas,
                    stale_replica_timeout: params.stale_replica_timeout,
                    frontend: Some(Frontend::Blockdev),
                    data_locality: params.data_locality,
                    node_selector: params.node_selector.clone(),
                    disk_selector: params.disk_selector.clone(),
                    labels,
                    from_backup: from_backup.clone(),
                    standby: None,
                    data_source: data_source.clone(),
                };
                match p.call(manager_api::create_volume(&create)).await {
                    Ok(v) => v,
                    Err(e) if e.code() == tonic::Code::AlreadyExists => p.volume(&name).await?,
                    Err(e) => return Err(e),
                }
            }
        };
        let volume = if volume.status.restore_required {
            p.wait_within(FILL_WAIT, &name, "filled from its source", |v| {
                if let Some(r) = v.status.restore.as_ref().filter(|r| r.state == "Error" && !r.error.is_empty()) {
                    tracing::warn!(volume = %v.name, error = %r.error, "filling the volume failed; the manager retries");
                }
                Ok((!v.status.restore_required).then(|| v.clone()))
            })
            .await
            .map_err(|e| Status::aborted(format!("{}; CreateVolume may be called again", e.message())))?
        } else {
            volume
        };
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(csi_volume(&volume, context, req.volume_content_source)),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        let p = &self.plugin;
        let _guard = p.guard(&req.volume_id)?;
        if p.find_volume(&req.volume_id).await?.is_some() {
            match p.call(manager_api::delete_volume(&req.volume_id)).await {
                Ok(_) => {}
                Err(e) if e.code() == tonic::Code::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        request: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        if req.node_id.is_empty() {
            return Err(Status::invalid_argument("node_id is required"));
        }
        crate::capabilities::access(req.volume_capability.as_ref())?;
        let p = &self.plugin;
        let _guard = p.guard(&req.volume_id)?;
        let volume = p.volume(&req.volume_id).await?;
        match p.call(manager_api::get_node(&req.node_id)).await {
            Ok(_) => {}
            Err(e) if e.code() == tonic::Code::NotFound => {
                return Err(Status::not_found(format!("no node {:?}", req.node_id)))
            }
            Err(e) => return Err(e),
        }
        if !volume.spec.node_id.is_empty()
            && volume.spec.node_id != req.node_id
            && !volume.spec.maintenance
        {
            return Err(Status::failed_precondition(format!(
                "volume {} is published to node {}: unpublish it there first",
                volume.name, volume.spec.node_id
            )));
        }
        if volume.status.restore_required {
            return Err(Status::unavailable(format!(
                "volume {} is still being filled from its source; retry",
                volume.name
            )));
        }
        if !(volume.spec.node_id == req.node_id
            && !volume.spec.maintenance
            && volume.spec.frontend == Frontend::Blockdev)
        {
            p.call(manager_api::attach(
                &req.volume_id,
                &AttachRequest {
                    node: Some(req.node_id.clone()),
                    maintenance: false,
                    frontend: Some(Frontend::Blockdev),
                },
            ))
            .await?;
        }
        let device = p
            .wait_for(
                &req.volume_id,
                &format!("attached to {}", req.node_id),
                |v| {
                    if v.spec.node_id != req.node_id {
                        return Err(Status::aborted(format!(
                            "volume {} was detached meanwhile",
                            v.name
                        )));
                    }
                    Ok(match (&v.status.state, &v.status.blockdev) {
                        (VolumeState::Attached, Some(b))
                            if v.status.current_node_id == req.node_id =>
                        {
                            Some(b.device.clone())
                        }
                        _ => None,
                    })
                },
            )
            .await?;
        Ok(Response::new(ControllerPublishVolumeResponse {
            publish_context: HashMap::from([("devicePath".to_string(), device)]),
        }))
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        let p = &self.plugin;
        let _guard = p.guard(&req.volume_id)?;
        let Some(volume) = p.find_volume(&req.volume_id).await? else {
            return Ok(Response::new(ControllerUnpublishVolumeResponse {}));
        };
        let here = !volume.spec.node_id.is_empty()
            && !volume.spec.maintenance
            && (req.node_id.is_empty() || volume.spec.node_id == req.node_id);
        if here {
            p.call(manager_api::detach(
                &req.volume_id,
                &DetachRequest::default(),
            ))
            .await?;
        }
        if here || (volume.status.state != VolumeState::Detached && volume.spec.node_id.is_empty())
        {
            p.wait_for(&req.volume_id, "detached", |v| {
                Ok((v.status.state == VolumeState::Detached
                    || !v.spec.node_id.is_empty() && v.spec.node_id != req.node_id)
                    .then_some(()))
            })
            .await?;
        }
        Ok(Response::new(ControllerUnpublishVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        if req.volume_capabilities.is_empty() {
            return Err(Status::invalid_argument("volume_capabilities is required"));
        }
        self.plugin.volume(&req.volume_id).await?;
        if let Err(e) = volume_params(&req.parameters) {
            return Ok(Response::new(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.to_string(),
            }));
        }
        if let Some(why) = req.volume_capabilities.iter().find_map(unsupported) {
            return Ok(Response::new(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: why,
            }));
        }
        Ok(Response::new(ValidateVolumeCapabilitiesResponse {
            confirmed: Some(validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: HashMap::new(),
            }),
            message: String::new(),
        }))
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let req = request.into_inner();
        let mut volumes = self.plugin.call(manager_api::list_volumes()).await?.data;
        volumes.retain(|v| v.status.state != VolumeState::Deleting);
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        let (volumes, next_token) = page(
            volumes,
            |v| v.name.as_str(),
            req.max_entries,
            &req.starting_token,
        )?;
        let entries = volumes
            .into_iter()
            .map(|v| {
                let published = if v.spec.node_id.is_empty() || v.spec.maintenance {
                    Vec::new()
                } else {
                    vec![v.spec.node_id.clone()]
                };
                let condition = volume_condition(&v);
                list_volumes_response::Entry {
                    volume: Some(csi_volume(&v, HashMap::new(), None)),
                    status: Some(list_volumes_response::VolumeStatus {
                        published_node_ids: published,
                        volume_condition: Some(condition),
                    }),
                }
            })
            .collect();
        Ok(Response::new(ListVolumesResponse {
            entries,
            next_token,
        }))
    }

    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        let req = request.into_inner();
        if let Some(why) = req.volume_capabilities.iter().find_map(unsupported) {
            return Err(Status::invalid_argument(why));
        }
        volume_params(&req.parameters).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let segments = req
            .accessible_topology
            .map(|t| t.segments)
            .unwrap_or_default();
        let (available, largest) = self
            .capacity(|n| {
                segments.iter().all(|(k, v)| match k.as_str() {
                    crate::node::TOPOLOGY_NODE_KEY => &n.name == v,
                    crate::node::TOPOLOGY_ZONE_KEY => &n.spec.zone == v,
                    _ => false,
                })
            })
            .await?;
        Ok(Response::new(GetCapacityResponse {
            available_capacity: available,
            maximum_volume_size: Some(largest.min(MAX_SIZE)),
            minimum_volume_size: Some(SIZE_ALIGNMENT),
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let capabilities = [
            Rpc::CreateDeleteVolume,
            Rpc::PublishUnpublishVolume,
            Rpc::ListVolumes,
            Rpc::GetCapacity,
            Rpc::CreateDeleteSnapshot,
            Rpc::ListSnapshots,
            Rpc::CloneVolume,
            Rpc::ExpandVolume,
            Rpc::ListVolumesPublishedNodes,
            Rpc::VolumeCondition,
            Rpc::GetVolume,
        ]
        .into_iter()
        .map(|t| ControllerServiceCapability {
            r#type: Some(controller_service_capability::Type::Rpc(
                controller_service_capability::Rpc { r#type: t as i32 },
            )),
        })
        .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let req = request.into_inner();
        if req.source_volume_id.is_empty() {
            return Err(Status::invalid_argument("source_volume_id is required"));
        }
        if req.name.is_empty() {
            return Err(Status::invalid_argument("name is required"));
        }
        let kind = snapshot_params(&req.parameters)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let p = &self.plugin;
        let volume = req.source_volume_id.clone();
        p.volume(&volume).await?;
        let _guard = p.guard(&volume)?;
        let name = ironhorn_name(&req.name, MAX_SNAPSHOT_NAME);
        // A retry finds the snapshot taken before, without attaching the volume again.
        let taken = self
            .snapshots_of(&volume)
            .await?
            .into_iter()
            .find(|s| s.name == name);
        let snapshot = match taken {
            Some(s) => s,
            None => {
                self.refuse_name_taken_elsewhere(&volume, &name, &req.name)
                    .await?;
                self.with_engine(&volume, || async {
                    p.call(manager_api::create_snapshot(
                        &volume,
                        &CreateSnapshot {
                            name: name.clone(),
                            labels: BTreeMap::from([(
                                CSI_NAME_LABEL.to_string(),
                                req.name.clone(),
                            )]),
                        },
                    ))
                    .await
                })
                .await?
            }
        };
        let csi = match kind {
            SnapshotKind::Snapshot => csi_snapshot(&volume, &snapshot),
            SnapshotKind::Backup => {
                let backup = self
                    .with_engine(&volume, || async {
                        p.call(manager_api::create_backup(
                            &volume,
                            &CreateBackup {
                                snapshot: Some(name.clone()),
                                labels: BTreeMap::from([(
                                    CSI_NAME_LABEL.to_string(),
                                    req.name.clone(),
                                )]),
                                backup_target: None,
                            },
                        ))
                        .await
                    })
                    .await?;
                Snapshot {
                    size_bytes: snapshot.size as i64,
                    snapshot_id: SnapshotId::Backup {
                        volume: volume.clone(),
                        backup: backup.name.clone(),
                    }
                    .to_string(),
                    source_volume_id: volume.clone(),
                    creation_time: timestamp(&snapshot.created).or_else(|| Some(now())),
                    ready_to_use: backup.state == BackupState::Completed,
                    group_snapshot_id: String::new(),
                }
            }
        };
        Ok(Response::new(CreateSnapshotResponse {
            snapshot: Some(csi),
        }))
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let req = request.into_inner();
        if req.snapshot_id.is_empty() {
            return Err(Status::invalid_argument("snapshot_id is required"));
        }
        let p = &self.plugin;
        // An ID this plugin never gave names nothing: deleting nothing succeeds.
        let Some(id) = SnapshotId::parse(&req.snapshot_id) else {
            return Ok(Response::new(DeleteSnapshotResponse {}));
        };
        match &id {
            SnapshotId::Backup { volume, backup } => {
                match p
                    .call(manager_api::delete_backup(volume, backup, None))
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.code() == tonic::Code::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            SnapshotId::Snapshot(s) => {
                if p.find_volume(&s.volume).await?.is_none() {
                    return Ok(Response::new(DeleteSnapshotResponse {}));
                }
                let _guard = p.guard(&s.volume)?;
                self.with_engine(&s.volume, || async {
                    let existing = p.call(manager_api::snapshots(&s.volume)).await?.data;
                    if existing.iter().any(|x| x.name == s.snapshot && !x.removed) {
                        p.call(manager_api::delete_snapshot(&s.volume, &s.snapshot))
                            .await?;
                        p.call(manager_api::purge(&s.volume)).await?;
                    }
                    Ok(())
                })
                .await?;
            }
        }
        Ok(Response::new(DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let req = request.into_inner();
        let p = &self.plugin;
        let mut snapshots: Vec<Snapshot> = Vec::new();
        let listing_all = req.snapshot_id.is_empty() && req.source_volume_id.is_empty();
        let volumes: Vec<String> = if !req.snapshot_id.is_empty() {
            match SnapshotId::parse(&req.snapshot_id) {
                Some(id)
                    if req.source_volume_id.is_empty() || req.source_volume_id == id.volume() =>
                {
                    vec![id.volume().to_string()]
                }
                _ => Vec::new(),
            }
        } else if !req.source_volume_id.is_empty() {
            vec![req.source_volume_id.clone()]
        } else {
            p.call(manager_api::list_volumes())
                .await?
                .data
                .into_iter()
                .filter(|v| v.status.state != VolumeState::Deleting)
                .map(|v| v.name)
                .collect()
        };
        for volume in volumes {
            let list = match self.snapshots_of(&volume).await {
                Ok(list) => list,
                // A source volume that does not exist has no snapshots.
                Err(e) if e.code() == tonic::Code::NotFound => continue,
                // A volume whose snapshots cannot be read now (no healthy replica on a ready
                // node) lists none rather than failing the listing of every other.
                Err(_) if listing_all => continue,
                Err(e) => return Err(e),
            };
            for s in list {
                snapshots.push(csi_snapshot(&volume, &s));
            }
        }
        if !req.snapshot_id.is_empty() {
            snapshots.retain(|s| s.snapshot_id == req.snapshot_id);
            if let Some(SnapshotId::Backup { volume, backup }) = SnapshotId::parse(&req.snapshot_id)
            {
                if let Ok(b) = p
                    .call(manager_api::get_backup(&volume, &backup, None))
                    .await
                {
                    snapshots.push(Snapshot {
                        size_bytes: b.size as i64,
                        snapshot_id: req.snapshot_id.clone(),
                        source_volume_id: volume,
                        creation_time: timestamp(&b.created).or_else(|| Some(now())),
                        ready_to_use: b.state == BackupState::Completed,
                        group_snapshot_id: String::new(),
                    });
                }
            }
        }
        snapshots.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
        let (snapshots, next_token) = page(
            snapshots,
            |s| s.snapshot_id.as_str(),
            req.max_entries,
            &req.starting_token,
        )?;
        Ok(Response::new(ListSnapshotsResponse {
            entries: snapshots
                .into_iter()
                .map(|s| list_snapshots_response::Entry { snapshot: Some(s) })
                .collect(),
            next_token,
        }))
    }

    async fn get_snapshot(
        &self,
        _request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(Status::unimplemented(
            "GetSnapshot is not offered: use ListSnapshots with snapshot_id",
        ))
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        let range = req
            .capacity_range
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("capacity_range is required"))?;
        let p = &self.plugin;
        let _guard = p.guard(&req.volume_id)?;
        let volume = p.volume(&req.volume_id).await?;
        let size = size_for(Some(range), 0)?;
        let block = matches!(
            req.volume_capability
                .as_ref()
                .and_then(|c| c.access_type.as_ref()),
            Some(volume_capability::AccessType::Block(_))
        );
        if volume.spec.size as i64 >= size {
            return Ok(Response::new(ControllerExpandVolumeResponse {
                capacity_bytes: volume.spec.size as i64,
                node_expansion_required: !block,
            }));
        }
        let expanded = self
            .with_engine(&req.volume_id, || async {
                p.call(manager_api::expand(
                    &req.volume_id,
                    &ExpandRequest {
                        size: SizeInput::Bytes(size as u64),
                    },
                ))
                .await
            })
            .await?;
        Ok(Response::new(ControllerExpandVolumeResponse {
            capacity_bytes: expanded.spec.size as i64,
            node_expansion_required: !block,
        }))
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is required"));
        }
        let v = self.plugin.volume(&req.volume_id).await?;
        let published = if v.spec.node_id.is_empty() || v.spec.maintenance {
            Vec::new()
        } else {
            vec![v.spec.node_id.clone()]
        };
        Ok(Response::new(ControllerGetVolumeResponse {
            volume: Some(csi_volume(&v, HashMap::new(), None)),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: published,
                volume_condition: Some(volume_condition(&v)),
            }),
        }))
    }

    async fn controller_modify_volume(
        &self,
        _request: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "ControllerModifyVolume is not offered",
        ))
    }
}

/// A volume's condition as CSI reports it: abnormal when degraded or faulted.
pub fn volume_condition(v: &Volume) -> VolumeCondition {
    match v.status.robustness {
        Robustness::Degraded => VolumeCondition {
            abnormal: true,
            message: format!(
                "volume {} is degraded: fewer healthy replicas than {}",
                v.name, v.spec.number_of_replicas
            ),
        },
        Robustness::Faulted => VolumeCondition {
            abnormal: true,
            message: format!("volume {} is faulted: no healthy replica", v.name),
        },
        _ => VolumeCondition {
            abnormal: false,
            message: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_round_up_within_the_limit() {
        let r = |required, limit| {
            Some(CapacityRange {
                required_bytes: required,
                limit_bytes: limit,
            })
        };
        assert_eq!(size_for(None, 0).unwrap(), DEFAULT_SIZE);
        assert_eq!(size_for(r(1, 0).as_ref(), 0).unwrap(), SIZE_ALIGNMENT);
        assert_eq!(size_for(r(0, 4 << 20).as_ref(), 0).unwrap(), 4 << 20);
        assert_eq!(
            size_for(r(1, 1000).as_ref(), 0).unwrap_err().code(),
            tonic::Code::OutOfRange
        );
        assert_eq!(
            size_for(r(-1, 0).as_ref(), 0).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            size_for(r(10, 5).as_ref(), 0).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            size_for(r(i64::MAX, 0).as_ref(), 0).unwrap_err().code(),
            tonic::Code::OutOfRange
        );
        assert_eq!(size_for(r(1, 0).as_ref(), 8 << 20).unwrap(), 8 << 20);
    }

    #[test]
    fn snapshot_ids_read_back() {
        for id in ["snap://v/s", "bak://v/backup-1"] {
            assert_eq!(SnapshotId::parse(id).unwrap().to_string(), id);
        }
        for bad in ["", "v/s", "bak://v", "bak:///b", "snap://v"] {
            assert!(SnapshotId::parse(bad).is_none(), "{bad}");
        }
    }

    fn str_key<'a>(s: &'a &'static str) -> &'a str {
        s
    }

    #[test]
    fn a_bad_token_is_aborted() {
        let key = str_key;
        assert_eq!(
            page(vec!["a"], key, 0, "x").unwrap_err().code(),
            tonic::Code::Aborted
        );
        assert_eq!(
            page(vec!["a"], key, -1, "").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn a_deleted_entry_does_not_break_the_next_page() {
        let key = str_key;
        let (first, token) = page(vec!["a", "b", "c", "d"], key, 2, "").unwrap();
        assert_eq!(first, vec!["a", "b"]);
        let (second, token) = page(vec!["a", "c", "d", "e"], key, 2, &token).unwrap();
        assert_eq!(second, vec!["c", "d"]);
        let (third, token) = page(vec!["a", "c", "d", "e"], key, 2, &token).unwrap();
        assert_eq!((third, token), (vec!["e"], String::new()));
    }

    proptest! {
        #[test]
        fn pages_cover_the_list_once(len in 0usize..50, max in 1i32..10) {
            let items: Vec<String> = (0..len).map(|i| format!("{i:03}")).collect();
            let (mut seen, mut token) = (Vec::new(), String::new());
            loop {
                let (page_items, next) = page(items.clone(), |s| s.as_str(), max, &token).unwrap();
                prop_assert!(page_items.len() <= max as usize);
                seen.extend(page_items);
                if next.is_empty() { break; }
                token = next;
            }
            prop_assert_eq!(seen, items);
        }
    }
}
