//! What one run of a job does to one volume, task by task (Longhorn's meanings):
//! - `snapshot`, `snapshot-force-create`: a snapshot labelled with the job's name (the first
//!   skips when nothing was written since the last snapshot), then the job's snapshots
//!   beyond `retain` are removed and purged;
//! - `backup`, `backup-force-create`: a snapshot, a backup of it to the default target
//!   (the first skips when the newest snapshot is already backed up by this job and nothing
//!   was written since), then, once the backup completed, the job's backups beyond
//!   `retain`, and its snapshots but the newest (the next backup's incremental base), are
//!   removed;
//! - `snapshot-delete`: every snapshot of the volume beyond the newest `retain`, whoever
//!   took it, removed and purged;
//! - `snapshot-cleanup`: system snapshots (not user-created) removed, then a purge;
//! - `filesystem-trim`: fstrim of the volume's mounted filesystem.
//!
//! Nothing is removed before what replaces it succeeded. A detached volume is attached
//! without a frontend for the run when `allow-recurring-job-while-volume-detached` is on,
//! and skipped, saying so, when it is off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironhorn_api::backup::{BackupState, CreateBackup};
use ironhorn_api::node::{CreateSnapshot, SnapshotInfo};
use ironhorn_api::node_api;
use ironhorn_api::recurring::{RecurringJobSpec, RecurringTask, RunResult, CREATED_BY_LABEL};
use ironhorn_api::resource::{Volume, VolumeState};
use ironhorn_api::ErrorCode;
use ironhorn_control::recurring::retention_removals;
use ironhorn_control::settings;

use crate::api::backups::{remove_backup, start_backup};
use crate::api::volumes::{engine_address, load_volume, update_volume};
use crate::backups::DEFAULT_TARGET;
use crate::error::ApiError;
use crate::state;
use crate::Manager;

/// The head's name in snapshot listings.
const HEAD: &str = "volume-head";
/// How long a volume attached for a job may take to attach.
const ATTACH_WAIT: Duration = Duration::from_secs(120);
/// How often a job looks at what it waits for (an attach, a backup).
const POLL: Duration = Duration::from_millis(500);
/// How long a job waits for a volume attaching or detaching to settle.
const SETTLE_WAIT: Duration = Duration::from_secs(120);
/// A backup that reads nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(600);

/// How a run on one volume ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: RunResult,
    pub message: String,
    /// The snapshot or backup made.
    pub created: String,
}

impl Outcome {
    fn succeeded(message: impl Into<String>, created: impl Into<String>) -> Outcome {
        Outcome {
            result: RunResult::Succeeded,
            message: message.into(),
            created: created.into(),
        }
    }

    fn skipped(message: impl Into<String>) -> Outcome {
        Outcome {
            result: RunResult::Skipped,
            message: message.into(),
            created: String::new(),
        }
    }

    fn failed(message: impl Into<String>) -> Outcome {
        Outcome {
            result: RunResult::Failed,
            message: message.into(),
            created: String::new(),
        }
    }

    pub fn missed(message: impl Into<String>) -> Outcome {
        Outcome {
            result: RunResult::Missed,
            message: message.into(),
            created: String::new(),
        }
    }
}

/// Runs `job` on `volume` (as listed when the run began).
pub async fn run(m: &Arc<Manager>, job: &RecurringJobSpec, volume: &Volume) -> Outcome {
    let volume = match settled(m, &volume.name).await {
        Ok(v) => v,
        Err(e) => return Outcome::skipped(format!("the volume is gone: {}", e.message)),
    };
    if volume.spec.standby || volume.status.restore_required {
        return Outcome::skipped(format!(
            "volume {} is {}: recurring jobs run once it is",
            volume.name,
            if volume.spec.standby {
                "a standby volume (it follows its backups until activated)"
            } else {
                "being restored"
            }
        ));
    }
    let attached_here = match volume.status.state {
        VolumeState::Attached => None,
        VolumeState::Detached if volume.spec.node_id.is_empty() => {
            if job.task == RecurringTask::FilesystemTrim {
                return Outcome::skipped(format!(
                    "volume {} is detached: a filesystem trim needs its filesystem mounted",
                    volume.name
                ));
            }
            match attach_for_job(m, &volume).await {
                Ok(Some(node)) => Some(node),
                Ok(None) => {
                    return Outcome::skipped(format!(
                        "volume {} is detached and the setting {} is false; set it to true to run recurring jobs on detached volumes",
                        volume.name,
                        settings::ALLOW_RECURRING_JOB_WHILE_VOLUME_DETACHED
                    ))
                }
                Err(e) => return Outcome::failed(e),
            }
        }
        state => {
            return Outcome::missed(format!(
                "volume {} was still {} {SETTLE_WAIT:?} after the job was due",
                volume.name,
                ironhorn_api::resource::wire_name(state)
            ))
        }
    };
    let outcome = match run_task(m, job, &volume).await {
        Ok(o) => o,
        Err(e) => Outcome::failed(e.message),
    };
    if let Some(node) = attached_here {
        if let Err(e) = detach_after_job(m, &volume.name, &node).await {
            tracing::warn!(volume = %volume.name, error = %e, "detaching after a recurring job failed");
        }
    }
    outcome
}

/// The volume as it is now (the listing may be minutes old in a long run), once it is
/// attached or detached: a volume attaching (as every attached volume shows for a moment
/// after a manager restart) or detaching is waited for, up to [`SETTLE_WAIT`].
async fn settled(m: &Manager, name: &str) -> Result<Volume, ApiError> {
    let deadline = Instant::now() + SETTLE_WAIT;
    loop {
        let volume = load_volume(m, name).await?;
        let settled = match volume.status.state {
            VolumeState::Attached => true,
            VolumeState::Detached => volume.spec.node_id.is_empty(),
            _ => false,
        };
        if settled || Instant::now() >= deadline {
            return Ok(volume);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn run_task(
    m: &Arc<Manager>,
    job: &RecurringJobSpec,
    volume: &Volume,
) -> Result<Outcome, ApiError> {
    let address = engine_address(m, volume).await?;
    let name = volume.name.as_str();
    match job.task {
        RecurringTask::Snapshot | RecurringTask::SnapshotForceCreate => {
            let force = job.task == RecurringTask::SnapshotForceCreate;
            let snapshots = m.client.call(&address, node_api::snapshots(name)).await?;
            if !force {
                if let Some(parent) = unchanged_since(&snapshots) {
                    return Ok(Outcome::skipped(format!(
                        "nothing was written since snapshot {parent}"
                    )));
                }
            }
            let snapshot = take_snapshot(m, &address, job, name).await?;
            let removed = retain_snapshots(m, &address, job, name, job.retain, &snapshot).await?;
            Ok(Outcome::succeeded(
                format!("snapshot {snapshot} taken{}", removed_note(&removed)),
                snapshot,
            ))
        }
        RecurringTask::Backup | RecurringTask::BackupForceCreate => {
            backup(m, &address, job, volume).await
        }
        RecurringTask::SnapshotDelete => {
            let snapshots = m.client.call(&address, node_api::snapshots(name)).await?;
            let all = ordered(&snapshots, |s| s.name != HEAD && !s.removed);
            let removed = remove_snapshots(
                m,
                &address,
                name,
                &retention_removals(&all, job.retain, None),
            )
            .await?;
            Ok(Outcome::succeeded(
                format!(
                    "{} of {} snapshots kept{}",
                    all.len() - removed.len(),
                    all.len(),
                    removed_note(&removed)
                ),
                "",
            ))
        }
        RecurringTask::SnapshotCleanup => {
            let snapshots = m.client.call(&address, node_api::snapshots(name)).await?;
            let system: Vec<String> = snapshots
                .iter()
                .filter(|s| s.name != HEAD && !s.removed && !s.user_created)
                .map(|s| s.name.clone())
                .collect();
            let marked = snapshots.iter().any(|s| s.removed);
            let removed = remove_snapshots(m, &address, name, &system).await?;
            if removed.is_empty() && marked {
                purge(m, &address, name).await?;
            }
            Ok(Outcome::succeeded(
                format!("system snapshots cleaned up{}", removed_note(&removed)),
                "",
            ))
        }
        RecurringTask::FilesystemTrim => {
            match m.client.call(&address, node_api::trim(name)).await {
                Ok(r) => Ok(Outcome::succeeded(
                    format!(
                        "{} trimmed on {}, {} deallocated in the replicas",
                        ironhorn_control::units::human_size(r.trimmed_bytes),
                        r.mount_point,
                        ironhorn_control::units::human_size(r.discarded_bytes)
                    ),
                    "",
                )),
                // No filesystem mounted (a raw block volume, or one the workload has not
                // mounted yet): nothing to trim.
                Err(e) if e.code() == ErrorCode::Conflict => Ok(Outcome::skipped(e.to_string())),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The snapshot the head sits on when nothing was written since it was taken.
fn unchanged_since(snapshots: &[SnapshotInfo]) -> Option<String> {
    let head = snapshots.iter().find(|s| s.name == HEAD)?;
    (head.size == 0 && !head.parent.is_empty()).then(|| head.parent.clone())
}

fn job_labels(job: &RecurringJobSpec) -> BTreeMap<String, String> {
    let mut labels = job.labels.clone();
    labels.insert(CREATED_BY_LABEL.to_string(), job.name.clone());
    labels
}

/// `<job>-<8 hex>`, within the 63 characters a name may have.
fn snapshot_name(job: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let stem: String = job.chars().take(54).collect();
    format!("{}-{}", stem.trim_end_matches(['-', '.']), &id[..8])
}

async fn take_snapshot(
    m: &Manager,
    address: &str,
    job: &RecurringJobSpec,
    volume: &str,
) -> Result<String, ApiError> {
    let snapshot = CreateSnapshot {
        name: snapshot_name(&job.name),
        labels: job_labels(job),
    };
    m.client
        .call(address, node_api::create_snapshot(volume, &snapshot))
        .await?;
    Ok(snapshot.name)
}

/// (name, order key) of the snapshots `wanted` picks: the creation time (whole seconds),
/// then the depth in the snapshot tree (a child is newer than its parent), so snapshots
/// taken in one second still order.
fn ordered(
    snapshots: &[SnapshotInfo],
    wanted: impl Fn(&SnapshotInfo) -> bool,
) -> Vec<(String, String)> {
    let parents: BTreeMap<&str, &str> = snapshots
        .iter()
        .map(|s| (s.name.as_str(), s.parent.as_str()))
        .collect();
    let depth = |name: &str| {
        let mut depth = 0usize;
        let mut at = name;
        while let Some(parent) = parents.get(at).filter(|p| !p.is_empty()) {
            depth += 1;
            at = parent;
            if depth > parents.len() {
                break; // a loop in a damaged listing
            }
        }
        depth
    };
    snapshots
        .iter()
        .filter(|s| wanted(s))
        .map(|s| {
            (
                s.name.clone(),
                format!("{} {:08}", s.created, depth(&s.name)),
            )
        })
        .collect()
}

/// Removes the job's snapshots beyond the newest `keep` (and purges them); `just_made` is
/// kept.
async fn retain_snapshots(
    m: &Manager,
    address: &str,
    job: &RecurringJobSpec,
    volume: &str,
    keep: u32,
    just_made: &str,
) -> Result<Vec<String>, ApiError> {
    let snapshots = m.client.call(address, node_api::snapshots(volume)).await?;
    let made = ordered(&snapshots, |s| {
        !s.removed && s.labels.get(CREATED_BY_LABEL) == Some(&job.name)
    });
    let removals = retention_removals(&made, keep, Some(just_made));
    remove_snapshots(m, address, volume, &removals).await
}

/// Removes `names` and purges their data; a backup reading the volume's snapshots makes
/// this wait for the next run (the snapshots stay meanwhile).
async fn remove_snapshots(
    m: &Manager,
    address: &str,
    volume: &str,
    names: &[String],
) -> Result<Vec<String>, ApiError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(backup) = m.backups.volume_busy(volume) {
        return Err(ApiError::conflict(format!(
            "backup {backup} is reading the volume's snapshots; {} snapshot(s) beyond retention are removed by the next run",
            names.len()
        )));
    }
    for name in names {
        m.client
            .call(address, node_api::remove_snapshot(volume, name))
            .await?;
    }
    purge(m, address, volume).await?;
    Ok(names.to_vec())
}

async fn purge(m: &Manager, address: &str, volume: &str) -> Result<(), ApiError> {
    m.client.call(address, node_api::purge(volume)).await?;
    Ok(())
}

fn removed_note(removed: &[String]) -> String {
    if removed.is_empty() {
        String::new()
    } else {
        format!("; removed {}", removed.join(", "))
    }
}

async fn backup(
    m: &Arc<Manager>,
    address: &str,
    job: &RecurringJobSpec,
    volume: &Volume,
) -> Result<Outcome, ApiError> {
    let name = volume.name.as_str();
    if job.task == RecurringTask::Backup {
        let snapshots = m.client.call(address, node_api::snapshots(name)).await?;
        if let Some(parent) = unchanged_since(&snapshots) {
            let backups = m.backups.backups(m, DEFAULT_TARGET, name).await?;
            if let Some(b) = backups.iter().find(|b| {
                b.snapshot_name == parent
                    && b.state == BackupState::Completed
                    && b.labels.get(CREATED_BY_LABEL) == Some(&job.name)
            }) {
                return Ok(Outcome::skipped(format!(
                    "nothing was written since backup {} (snapshot {parent})",
                    b.name
                )));
            }
        }
    }
    let snapshot = take_snapshot(m, address, job, name).await?;
    let started = start_backup(
        m,
        name,
        &CreateBackup {
            snapshot: Some(snapshot.clone()),
            labels: job_labels(job),
            backup_target: None,
        },
    )
    .await?;
    let backup = started.name.clone();
    let done = wait_for_backup(m, &backup).await?;
    if done.state != BackupState::Completed {
        return Ok(Outcome::failed(format!(
            "backup {backup} of snapshot {snapshot} failed: {}",
            done.error
        )));
    }
    // Retention only now that the new backup is complete.
    let backups = m.backups.backups(m, DEFAULT_TARGET, name).await?;
    let made: Vec<(String, String)> = backups
        .iter()
        .filter(|b| {
            b.state == BackupState::Completed && b.labels.get(CREATED_BY_LABEL) == Some(&job.name)
        })
        .map(|b| (b.name.clone(), b.created.clone()))
        .collect();
    let expired = retention_removals(&made, job.retain, Some(&backup));
    for old in &expired {
        remove_backup(m, DEFAULT_TARGET, name, old).await?;
    }
    // The newest snapshot is the next backup's incremental base; older ones of this job
    // only take space on the replicas.
    let snapshots_removed = retain_snapshots(m, address, job, name, 1, &snapshot).await?;
    Ok(Outcome::succeeded(
        format!(
            "backup {backup} of snapshot {snapshot} completed ({} uploaded){}{}",
            ironhorn_control::units::human_size(done.bytes_uploaded),
            if expired.is_empty() {
                String::new()
            } else {
                format!("; removed backups {}", expired.join(", "))
            },
            removed_note(&snapshots_removed)
        ),
        backup,
    ))
}

/// Waits for a backup to end; one that makes no progress for [`STALL`] (its node stopped
/// answering) is a failure, not a run that never ends.
async fn wait_for_backup(
    m: &Arc<Manager>,
    backup: &str,
) -> Result<ironhorn_api::backup::Backup, ApiError> {
    let mut last = (0u64, Instant::now());
    loop {
        let Some(view) = m.backups.job_backup(m, backup).await else {
            return Err(ApiError::internal(format!(
                "backup {backup} is no longer tracked"
            )));
        };
        if matches!(view.state, BackupState::Completed | BackupState::Error) {
            return Ok(view);
        }
        if view.bytes_processed != last.0 {
            last = (view.bytes_processed, Instant::now());
        } else if last.1.elapsed() >= STALL {
            return Err(ApiError::unavailable(format!(
                "backup {backup} made no progress for {STALL:?} (at {}%): its node does not answer",
                view.progress
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Attaches a detached volume without a frontend for a job, when the setting allows;
/// returns the node (None: the setting is off).
async fn attach_for_job(m: &Arc<Manager>, volume: &Volume) -> Result<Option<String>, String> {
    let settings = state::settings(m.store.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if !settings.bool(settings::ALLOW_RECURRING_JOB_WHILE_VOLUME_DETACHED) {
        return Ok(None);
    }
    let node = m
        .local_node
        .clone()
        .or_else(|| {
            volume
                .status
                .replicas
                .iter()
                .find(|r| r.healthy)
                .map(|r| r.node.clone())
        })
        .ok_or_else(|| {
            format!(
                "volume {} is detached and no node is known to attach it to",
                volume.name
            )
        })?;
    update_volume(m, &volume.name, |v| {
        if !v.spec.node_id.is_empty() {
            return Err(ApiError::conflict(format!(
                "volume {} was attached to {} meanwhile",
                v.name, v.spec.node_id
            )));
        }
        v.spec.node_id.clone_from(&node);
        v.spec.maintenance = true;
        Ok(())
    })
    .await
    .map_err(|e| e.message)?;
    let deadline = Instant::now() + ATTACH_WAIT;
    loop {
        let v = load_volume(m, &volume.name).await.map_err(|e| e.message)?;
        if v.status.state == VolumeState::Attached && engine_address(m, &v).await.is_ok() {
            return Ok(Some(node));
        }
        if Instant::now() >= deadline {
            let _ = detach_after_job(m, &volume.name, &node).await;
            return Err(format!(
                "volume {} did not attach to {node} within {ATTACH_WAIT:?} for the job (state {})",
                volume.name,
                ironhorn_api::resource::wire_name(v.status.state)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Detaches a volume the job attached, unless someone attached it otherwise meanwhile.
async fn detach_after_job(m: &Manager, volume: &str, node: &str) -> Result<(), ApiError> {
    update_volume(m, volume, |v| {
        if v.spec.node_id == node && v.spec.maintenance {
            v.spec.node_id.clear();
            v.spec.maintenance = false;
        }
        Ok(())
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, parent: &str, size: u64) -> SnapshotInfo {
        SnapshotInfo {
            name: name.into(),
            parent: parent.into(),
            children: vec![],
            removed: false,
            user_created: true,
            created: String::new(),
            size,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn a_head_with_nothing_written_sits_on_its_parent() {
        assert_eq!(
            unchanged_since(&[snap("s1", "", 4096), snap(HEAD, "s1", 0)]),
            Some("s1".into())
        );
        assert_eq!(
            unchanged_since(&[snap("s1", "", 4096), snap(HEAD, "s1", 512)]),
            None
        );
        // No snapshot yet: the first run takes one.
        assert_eq!(unchanged_since(&[snap(HEAD, "", 0)]), None);
    }

    #[test]
    fn snapshots_taken_in_one_second_order_by_their_place_in_the_chain() {
        // Three snapshots in one second, listed in no particular order.
        let mut list = vec![snap("c", "b", 1), snap("a", "", 1), snap("b", "a", 1)];
        for s in &mut list {
            s.created = "2026-12-03T10:00:00Z".into();
        }
        list.push(snap(HEAD, "c", 0));
        let keys = ordered(&list, |s| s.name != HEAD);
        // Keep 2: the oldest (a), whatever the names say, is the one removed.
        assert_eq!(retention_removals(&keys, 2, None), ["a"]);
        let keys = ordered(&list, |s| s.name != "volume-head" && s.name != "b");
        assert_eq!(retention_removals(&keys, 1, None), ["a"]);
    }

    #[test]
    fn snapshot_names_fit_and_carry_the_job() {
        let long = "a".repeat(63);
        let name = snapshot_name(&long);
        assert!(name.len() <= 63, "{name}");
        ironhorn_control::validate::check_name("snapshot", &name, 63).unwrap();
        assert!(snapshot_name("snap-3h").starts_with("snap-3h-"));
    }
}
