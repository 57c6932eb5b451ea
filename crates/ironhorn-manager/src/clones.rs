//! The clone controller: fills a volume created with a `dataSource` (`snap://<volume>/<snapshot>`)
//! with that snapshot's data. The new volume is attached without a frontend on a node that holds
//! a healthy replica of the source, the node copies the snapshot from that replica's directory
//! into the volume's engine (every replica of the new volume receives it), and the volume is
//! detached and released for use. Progress and errors show in the volume's `restore` status.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ironhorn_api::backup::{BackupState, StartClone};
use ironhorn_api::data_source::SnapshotSource;
use ironhorn_api::node_api;
use ironhorn_api::resource::{Node, Replica, RestoreStatus, Volume, VolumeState};
use ironhorn_api::ErrorCode;

use crate::backups::{lock, update_status};
use crate::error::ApiError;
use crate::plan::replica_dir;
use crate::state::{self, NODES, REPLICAS, VOLUMES};
use crate::Manager;

/// A failed copy is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Drives every volume still waiting for its data source; returns whether any is under way.
pub async fn reconcile_clones(m: &Manager) -> Result<bool, ApiError> {
    let volumes = state::list::<Volume>(m.store.as_ref(), VOLUMES).await?;
    let mut busy = false;
    for (volume, _) in volumes {
        if volume.spec.data_source.is_empty()
            || !volume.status.restore_required
            || volume.status.state == VolumeState::Deleting
        {
            continue;
        }
        match clone_step(m, &volume).await {
            Ok(b) => busy |= b,
            Err(e) => {
                tracing::warn!(volume = %volume.name, error = %e, "clone step failed");
                let message = e.message.clone();
                let _ = update_status(m, &volume.name, |v| {
                    let restore = v.status.restore.get_or_insert_with(RestoreStatus::default);
                    restore.state = "Error".into();
                    restore.error = message.clone();
                })
                .await;
            }
        }
    }
    Ok(busy)
}

/// A replica that can be read now: healthy, on a ready node.
#[derive(Debug)]
pub(crate) struct ReadableReplica {
    pub replica: Replica,
    /// Its directory on its node.
    pub dir: String,
    /// Its node's API address.
    pub node_address: String,
}

/// A volume's readable replicas, and whether it has any replica at all (a volume not placed
/// yet has none, and so no data).
pub(crate) async fn readable_replicas(
    m: &Manager,
    volume: &str,
) -> Result<(Vec<ReadableReplica>, bool), ApiError> {
    let nodes: BTreeMap<String, Node> = state::list::<Node>(m.store.as_ref(), NODES)
        .await?
        .into_iter()
        .map(|(n, _)| (n.name.clone(), n))
        .collect();
    let replicas: Vec<Replica> = state::list::<Replica>(m.store.as_ref(), REPLICAS)
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .filter(|r| r.volume == volume)
        .collect();
    let placed = !replicas.is_empty();
    let readable = replicas
        .into_iter()
        .filter(|r| r.healthy && r.failed_at.is_none())
        .filter_map(|r| {
            let node = nodes.get(&r.node).filter(|n| n.status.ready)?;
            let dir = replica_dir(&nodes, &r)?;
            Some(ReadableReplica {
                node_address: node.spec.address.clone(),
                replica: r,
                dir,
            })
        })
        .collect();
    Ok((readable, placed))
}

fn fill_status(source: &str, progress: u8, state: &str, error: String) -> RestoreStatus {
    RestoreStatus {
        backup: source.to_string(),
        state: state.to_string(),
        progress,
        error,
    }
}

async fn clone_step(m: &Manager, volume: &Volume) -> Result<bool, ApiError> {
    let source = SnapshotSource::parse(&volume.spec.data_source).map_err(ApiError::invalid)?;
    if state::get::<Volume>(m.store.as_ref(), &format!("{VOLUMES}{}", source.volume))
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "the source volume {} of {} is gone; delete this volume",
            source.volume, volume.spec.data_source
        )));
    }
    let (replicas, _) = readable_replicas(m, &source.volume).await?;
    if volume.spec.node_id.is_empty() {
        let Some(ReadableReplica { replica, .. }) = replicas.first() else {
            return Err(ApiError::unavailable(format!(
                "volume {} has no healthy replica on a ready node to clone from; waiting",
                source.volume
            )));
        };
        let node = replica.node.clone();
        update_status(m, &volume.name, |v| {
            v.spec.node_id = node.clone();
            v.spec.maintenance = true;
            v.status.restore = Some(fill_status(
                &v.spec.data_source,
                0,
                "InProgress",
                String::new(),
            ));
        })
        .await?;
        return Ok(true);
    }
    if volume.status.state != VolumeState::Attached {
        return Ok(true);
    }
    let Some(ReadableReplica { dir, .. }) = replicas
        .iter()
        .find(|r| r.replica.node == volume.spec.node_id)
    else {
        // The source's replica on this node went away: start over on another node.
        update_status(m, &volume.name, |v| {
            v.spec.node_id.clear();
            v.spec.maintenance = false;
        })
        .await?;
        return Ok(true);
    };
    let address = crate::api::engine_node_address(m, volume).await?;
    let job = match m
        .client
        .call(&address, node_api::restore_job(&volume.name))
        .await
    {
        Ok(job) => Some(job),
        Err(e) if e.code() == ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let wanted = &volume.spec.data_source;
    match job {
        Some(job)
            if &job.backup == wanted
                && matches!(job.state, BackupState::Pending | BackupState::InProgress) =>
        {
            update_status(m, &volume.name, |v| {
                v.status.restore = Some(fill_status(
                    wanted,
                    job.progress,
                    "InProgress",
                    String::new(),
                ));
            })
            .await?;
            Ok(true)
        }
        Some(job) if &job.backup == wanted && job.state == BackupState::Completed => {
            update_status(m, &volume.name, |v| {
                v.status.restore = Some(fill_status(wanted, 100, "Completed", String::new()));
                v.status.restore_required = false;
                v.spec.node_id.clear();
                v.spec.maintenance = false;
            })
            .await?;
            tracing::info!(volume = %volume.name, source = %wanted, "clone completed");
            Ok(true)
        }
        previous => {
            if let Some(failed) =
                previous.filter(|j| &j.backup == wanted && j.state == BackupState::Error)
            {
                let too_soon = {
                    let mut checked = lock(&m.backups.standby_checked);
                    let key = format!("clone/{}", volume.name);
                    let too_soon = checked
                        .get(&key)
                        .is_some_and(|at| at.elapsed() < RETRY_AFTER);
                    if !too_soon {
                        checked.insert(key, Instant::now());
                    }
                    too_soon
                };
                let error = failed.error.clone();
                update_status(m, &volume.name, |v| {
                    v.status.restore =
                        Some(fill_status(wanted, failed.progress, "Error", error.clone()));
                })
                .await?;
                if too_soon {
                    return Ok(false);
                }
                tracing::warn!(volume = %volume.name, source = %wanted, error = %failed.error, "clone failed; retrying");
            }
            let request = StartClone {
                source: wanted.clone(),
                replica_dir: dir.clone(),
                snapshot: source.snapshot.clone(),
            };
            m.client
                .call(&address, node_api::start_clone(&volume.name, &request))
                .await?;
            tracing::info!(volume = %volume.name, source = %wanted, "clone started");
            Ok(true)
        }
    }
}
