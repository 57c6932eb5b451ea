//! The CSI node service: on the machine where a volume is attached, make its filesystem when
//! the device has none and mount it at the staging path, bind it into each pod's target path
//! (read-only when asked; a raw block volume binds the device file itself), unmount and
//! remove on the way back (safe to repeat, safe when the path is gone), report usage and
//! health, grow the filesystem after an expansion, and say which node and zone this is.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ironhorn_api::manager_api;
use ironhorn_api::resource::{Volume, VolumeState};
use tonic::{Request, Response, Status};

use crate::capabilities::{access, Access};
use crate::controller::volume_condition;
use crate::csi::node_server::Node;
use crate::csi::node_service_capability::rpc::Type as Rpc;
use crate::csi::*;
use crate::mount;
use crate::plugin::Plugin;

/// The topology key naming the node.
pub const TOPOLOGY_NODE_KEY: &str = "topology.ironhorn.io/node";
/// The topology key naming the zone (the node's `zone`, Kubernetes' well-known label).
pub const TOPOLOGY_ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// The CSI node service.
#[derive(Debug, Clone)]
pub struct NodeService {
    pub plugin: Plugin,
}

fn required<'a>(value: &'a str, what: &str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{what} is required")))
    } else {
        Ok(value)
    }
}

impl NodeService {
    fn node_id(&self) -> Result<&str, Status> {
        self.plugin.config.node_id.as_deref().ok_or_else(|| {
            Status::failed_precondition(
                "this plugin runs without --node-id: it serves no node calls",
            )
        })
    }

    /// The volume's device on this node once it is attached here: the stable link and the
    /// kernel device it points to.
    async fn device(&self, volume_id: &str) -> Result<(Volume, PathBuf), Status> {
        let node = self.node_id()?.to_string();
        let volume = self.plugin.volume(volume_id).await?;
        if volume.spec.node_id != node {
            return Err(Status::failed_precondition(format!(
                "volume {volume_id} is not published to node {node}{}: ControllerPublishVolume first",
                if volume.spec.node_id.is_empty() { String::new() } else { format!(" (it is on {})", volume.spec.node_id) }
            )));
        }
        let link = self
            .plugin
            .wait_for(
                volume_id,
                &format!("attached to {node} with its device"),
                |v| {
                    Ok(match (&v.status.state, &v.status.blockdev) {
                        (VolumeState::Attached, Some(b))
                            if v.status.current_node_id == node
                                && Path::new(&b.device).exists() =>
                        {
                            Some(PathBuf::from(&b.device))
                        }
                        _ => None,
                    })
                },
            )
            .await?;
        let device = std::fs::canonicalize(&link)
            .map_err(|e| Status::internal(format!("resolving {}: {e}", link.display())))?;
        Ok((volume, device))
    }
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn device_size(path: &Path) -> Result<u64, Status> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| Status::internal(format!("opening {}: {e}", path.display())))?;
    f.seek(SeekFrom::End(0))
        .map_err(|e| Status::internal(format!("sizing {}: {e}", path.display())))
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let req = request.into_inner();
        let volume_id = required(&req.volume_id, "volume_id")?;
        let staging = PathBuf::from(required(&req.staging_target_path, "staging_target_path")?);
        let access = access(req.volume_capability.as_ref())?;
        if !staging.exists() {
            return Err(Status::not_found(format!(
                "staging_target_path {} does not exist",
                staging.display()
            )));
        }
        let _guard = self.plugin.guard(volume_id)?;
        let (_, device) = self.device(volume_id).await?;
        let Access::Mount {
            fs_type,
            mount_flags,
        } = access
        else {
            // A raw block volume is published straight from its device.
            return Ok(Response::new(NodeStageVolumeResponse {}));
        };
        let fs = fs_type
            .or_else(|| {
                req.volume_context
                    .get("fsType")
                    .and_then(|f| crate::params::filesystem(f).ok())
            })
            .unwrap_or("ext4");
        if let Some(entry) = mount::mounted_at(&staging)? {
            if Path::new(&entry.source) == device {
                return Ok(Response::new(NodeStageVolumeResponse {}));
            }
            return Err(Status::already_exists(format!(
                "{} holds {} already, not volume {volume_id}",
                staging.display(),
                entry.source
            )));
        }
        match mount::probe(&device).await? {
            None => {
                let params = req
                    .volume_context
                    .get("mkfsParams")
                    .map(String::as_str)
                    .unwrap_or("");
                tracing::info!(volume = %volume_id, device = %device.display(), fs, params, "making a filesystem");
                mount::make_filesystem(fs, &device, params).await?;
            }
            Some(found) if found == fs => {}
            Some(found) => {
                return Err(Status::failed_precondition(format!(
                "volume {volume_id} holds {found}, not the {fs} asked for: it is not reformatted"
            )))
            }
        }
        mount::mount(&device, &staging, fs, &mount_flags, false).await?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let req = request.into_inner();
        let volume_id = required(&req.volume_id, "volume_id")?;
        let staging = PathBuf::from(required(&req.staging_target_path, "staging_target_path")?);
        let _guard = self.plugin.guard(volume_id)?;
        if exists(&staging) {
            mount::unmount_all(&staging).await?;
        }
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let volume_id = required(&req.volume_id, "volume_id")?;
        let target = PathBuf::from(required(&req.target_path, "target_path")?);
        let staging = PathBuf::from(required(&req.staging_target_path, "staging_target_path")?);
        let access = access(req.volume_capability.as_ref())?;
        let read_only =
            req.readonly || crate::capabilities::read_only(req.volume_capability.as_ref());
        let _guard = self.plugin.guard(volume_id)?;
        match access {
            Access::Block => {
                let (_, device) = self.device(volume_id).await?;
                if let Some(entry) = mount::mounted_at(&target)? {
                    if entry.source == "devtmpfs"
                        || entry.source == "udev"
                        || Path::new(&entry.source) == device
                        || entry
                            .root
                            .ends_with(&*device.file_name().unwrap_or_default().to_string_lossy())
                    {
                        return Ok(Response::new(NodePublishVolumeResponse {}));
                    }
                    return Err(Status::already_exists(format!(
                        "{} holds another mount",
                        target.display()
                    )));
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Status::internal(format!("creating {}: {e}", parent.display()))
                    })?;
                }
                // A CO may have made the target a directory; a device binds onto a file.
                if target.is_dir() {
                    std::fs::remove_dir(&target).map_err(|e| {
                        Status::failed_precondition(format!("target_path {} is a directory that cannot be replaced by the device file: {e}", target.display()))
                    })?;
                }
                if !exists(&target) {
                    std::fs::File::create(&target).map_err(|e| {
                        Status::internal(format!("creating {}: {e}", target.display()))
                    })?;
                }
                mount::bind(&device, &target, read_only, &[]).await?;
            }
            Access::Mount { mount_flags, .. } => {
                let Some(staged) = mount::mounted_at(&staging)? else {
                    return Err(Status::failed_precondition(format!(
                        "volume {volume_id} is not staged at {}: NodeStageVolume first",
                        staging.display()
                    )));
                };
                if let Some(entry) = mount::mounted_at(&target)? {
                    if entry.device_number == staged.device_number {
                        let ro = entry.options.split(',').any(|o| o == "ro");
                        if ro == read_only {
                            return Ok(Response::new(NodePublishVolumeResponse {}));
                        }
                        return Err(Status::already_exists(format!(
                            "{} is published {} already",
                            target.display(),
                            if ro { "read-only" } else { "read-write" }
                        )));
                    }
                    return Err(Status::already_exists(format!(
                        "{} holds another mount",
                        target.display()
                    )));
                }
                std::fs::create_dir_all(&target)
                    .map_err(|e| Status::internal(format!("creating {}: {e}", target.display())))?;
                mount::bind(&staging, &target, read_only, &mount_flags).await?;
            }
        }
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let volume_id = required(&req.volume_id, "volume_id")?;
        let target = PathBuf::from(required(&req.target_path, "target_path")?);
        let _guard = self.plugin.guard(volume_id)?;
        if exists(&target) {
            mount::unmount_all(&target).await?;
            let removed = if target.is_dir() {
                std::fs::remove_dir(&target)
            } else {
                std::fs::remove_file(&target)
            };
            if let Err(e) = removed {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Status::internal(format!(
                        "removing {}: {e}",
                        target.display()
                    )));
                }
            }
        }
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let req = request.into_inner();
        let volume_id = required(&req.volume_id, "volume_id")?;
        let path = PathBuf::from(required(&req.volume_path, "volume_path")?);
        if !exists(&path) {
            return Err(Status::not_found(format!(
                "volume_path {} does not exist",
                path.display()
            )));
        }
        let volume = self.plugin.volume(volume_id).await?;
        let usage = if path.is_dir() {
            if mount::mounted_at(&path)?.is_none() {
                return Err(Status::not_found(format!(
                    "volume {volume_id} is not mounted at {}",
                    path.display()
                )));
            }
            let s = rustix::fs::statvfs(&path)
                .map_err(|e| Status::internal(format!("statvfs {}: {e}", path.display())))?;
            let fragment = s.f_frsize as i64;
            vec![
                VolumeUsage {
                    available: s.f_bavail as i64 * fragment,
                    total: s.f_blocks as i64 * fragment,
                    used: s.f_blocks.saturating_sub(s.f_bfree) as i64 * fragment,
                    unit: volume_usage::Unit::Bytes as i32,
                },
                VolumeUsage {
                    available: s.f_favail as i64,
                    total: s.f_files as i64,
                    used: s.f_files.saturating_sub(s.f_ffree) as i64,
                    unit: volume_usage::Unit::Inodes as i32,
                },
            ]
        } else {
            vec![VolumeUsage {
                available: 0,
                total: device_size(&path)? as i64,
                used: 0,
                unit: volume_usage::Unit::Bytes as i32,
            }]
        };
        Ok(Response::new(NodeGetVolumeStatsResponse {
            usage,
            volume_condition: Some(volume_condition(&volume)),
        }))
    }

    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        let req = request.into_inner();
        let volume_id = required(&req.volume_id, "volume_id")?;
        let path = PathBuf::from(required(&req.volume_path, "volume_path")?);
        if !exists(&path) {
            return Err(Status::not_found(format!(
                "volume_path {} does not exist",
                path.display()
            )));
        }
        let _guard = self.plugin.guard(volume_id)?;
        let (volume, device) = self.device(volume_id).await?;
        let block = matches!(
            req.volume_capability
                .as_ref()
                .and_then(|c| c.access_type.as_ref()),
            Some(volume_capability::AccessType::Block(_))
        ) || !path.is_dir();
        if !block {
            let entry = mount::mounted_at(&path)?
                .or(if req.staging_target_path.is_empty() {
                    None
                } else {
                    mount::mounted_at(Path::new(&req.staging_target_path))?
                })
                .ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "volume {volume_id} is not mounted at {}",
                        path.display()
                    ))
                })?;
            mount::grow(&entry.fs_type, &device, &path).await?;
        }
        Ok(Response::new(NodeExpandVolumeResponse {
            capacity_bytes: device_size(&device).unwrap_or(volume.spec.size) as i64,
        }))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let capabilities = [
            Rpc::StageUnstageVolume,
            Rpc::GetVolumeStats,
            Rpc::ExpandVolume,
            Rpc::VolumeCondition,
        ]
        .into_iter()
        .map(|t| NodeServiceCapability {
            r#type: Some(node_service_capability::Type::Rpc(
                node_service_capability::Rpc { r#type: t as i32 },
            )),
        })
        .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        let node_id = self.node_id()?.to_string();
        let node = self.plugin.call(manager_api::get_node(&node_id)).await?;
        let mut segments = HashMap::from([(TOPOLOGY_NODE_KEY.to_string(), node_id.clone())]);
        if !node.spec.zone.is_empty() {
            segments.insert(TOPOLOGY_ZONE_KEY.to_string(), node.spec.zone.clone());
        }
        Ok(Response::new(NodeGetInfoResponse {
            node_id,
            max_volumes_per_node: 0,
            accessible_topology: Some(Topology { segments }),
        }))
    }
}
