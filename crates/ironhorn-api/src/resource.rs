//! The control plane's resources, with Longhorn's names and meanings: Volume, Node (with its
//! disks) and Replica. Each has a `spec` (what the operator or a controller wants) and a
//! `status` (what was observed). JSON field names are Longhorn's (camelCase), so a runbook's
//! vocabulary carries over; sizes are bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A condition as Longhorn reports them: a type, whether it holds, why, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// "True" or "False", as Longhorn writes it.
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed (RFC 3339); a change of reason or message alone keeps it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_transition_time: String,
}

impl Condition {
    pub fn new(kind: &str, holds: bool, reason: &str, message: &str) -> Condition {
        Condition {
            kind: kind.to_string(),
            status: if holds { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: String::new(),
        }
    }

    pub fn holds(&self) -> bool {
        self.status == "True"
    }
}

/// Sets (replaces) the condition of `condition.kind` in `conditions`; its transition time is
/// `now` (RFC 3339) when it is new or its status changed, else the one it had.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition, now: &str) {
    match conditions.iter_mut().find(|c| c.kind == condition.kind) {
        Some(existing) => {
            condition.last_transition_time = if existing.status == condition.status
                && !existing.last_transition_time.is_empty()
            {
                std::mem::take(&mut existing.last_transition_time)
            } else {
                now.to_string()
            };
            *existing = condition;
        }
        None => {
            condition.last_transition_time = now.to_string();
            conditions.push(condition);
        }
    }
}

/// The name a value of one of these enums has in JSON (`attached`, `best-effort`, `nbd`):
/// what tables, metric labels and node requests show.
pub fn wire_name<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// How a volume is exposed on the node it is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Frontend {
    /// An NBD export (TCP or unix socket).
    #[default]
    Nbd,
    /// `/dev/ironhorn/<volume>`.
    Blockdev,
}

/// Whether a replica should live on the node the volume is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DataLocality {
    #[default]
    Disabled,
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    #[default]
    Creating,
    Detached,
    Attaching,
    Attached,
    Detaching,
    Deleting,
}

/// Longhorn's robustness: healthy (every wanted replica healthy), degraded (fewer, but at
/// least one), faulted (none), unknown (detached: not observed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Robustness {
    Healthy,
    Degraded,
    Faulted,
    #[default]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    pub size: u64,
    pub number_of_replicas: u32,
    /// Minutes a failed replica is kept (for a catch-up) before it is removed.
    pub stale_replica_timeout: u64,
    #[serde(default)]
    pub frontend: Frontend,
    #[serde(default)]
    pub data_locality: DataLocality,
    /// Tags a node must all carry to hold a replica.
    #[serde(default)]
    pub node_selector: Vec<String>,
    /// Tags a disk must all carry to hold a replica.
    #[serde(default)]
    pub disk_selector: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The node to attach to; empty when detached.
    #[serde(default)]
    pub node_id: String,
    /// Attach without a frontend (for snapshot revert and other maintenance).
    #[serde(default)]
    pub maintenance: bool,
    /// A backup URL (`<target>?backup=B&volume=V`) to restore from, or, for a standby
    /// volume, a backup volume URL (`<target>?volume=V`) to follow.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from_backup: String,
    /// A disaster-recovery volume: restores each new backup of its backup volume and cannot
    /// be attached until activated.
    #[serde(default)]
    pub standby: bool,
    /// The snapshot the volume is cloned from (`snap://<volume>/<snapshot>`), Longhorn's
    /// `dataSource`; empty for a volume that starts empty or from a backup.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_source: String,
}

/// A restore into a volume, as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The backup being (or last) restored.
    pub backup: String,
    /// `InProgress`, `Completed` or `Error`.
    pub state: String,
    /// 0 to 100.
    pub progress: u8,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeReplicaStatus {
    pub name: String,
    pub node: String,
    pub disk: String,
    /// RW, WO or ERR while attached; empty while detached.
    pub mode: String,
    pub healthy: bool,
    /// Percent copied (0 to 100) while this replica is being rebuilt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_progress: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    pub state: VolumeState,
    pub robustness: Robustness,
    /// Bytes the replicas' files occupy (one replica's worth).
    pub actual_size: u64,
    /// The node the volume is attached to now.
    pub current_node_id: String,
    pub replicas: Vec<VolumeReplicaStatus>,
    /// The NBD URI, or the device path for blockdev; empty while detached.
    pub endpoint: String,
    /// The block device, while attached with the blockdev frontend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blockdev: Option<BlockdevStatus>,
    pub conditions: Vec<Condition>,
    /// True until the volume holds the backup or snapshot it was created from; it cannot
    /// attach before.
    #[serde(default)]
    pub restore_required: bool,
    /// The last backup fully restored into the volume.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_restored_backup: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
    /// The last backup of the volume that completed, and when (Longhorn's `lastBackup`,
    /// `lastBackupAt`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_backup: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_backup_at: String,
    /// The last run of each recurring job on the volume, by job name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recurring_jobs: BTreeMap<String, crate::recurring::RecurringRun>,
    /// The generation of the volume's latest attachment: its engine claimed the replicas
    /// with it, and replicas refuse engines of older ones (split-brain fencing). Grows by
    /// one each time an engine is started.
    #[serde(default)]
    pub generation: u64,
    /// Whether the latest attachment's engine acknowledges a write only once a majority of
    /// its replicas have it, counting those it could not open (its agent fences at level 1
    /// or later). Only then may the volume be started on another node while that engine's
    /// node does not answer.
    #[serde(default)]
    pub majority_quorum: bool,
}

impl VolumeStatus {
    /// Carries over what the recurring-job runner and the backup jobs own (their fields and
    /// the `RecurringJobFailed` condition) from `fresh`, the status as stored now: for a
    /// writer that replaces the status with one computed from an older read.
    pub fn keep_job_fields(&mut self, fresh: &VolumeStatus) {
        // Attachment generations only grow: one handed out since is kept.
        self.generation = self.generation.max(fresh.generation);
        self.majority_quorum = fresh.majority_quorum;
        self.last_backup.clone_from(&fresh.last_backup);
        self.last_backup_at.clone_from(&fresh.last_backup_at);
        self.recurring_jobs.clone_from(&fresh.recurring_jobs);
        let kind = crate::recurring::FAILED_CONDITION;
        self.conditions.retain(|c| c.kind != kind);
        if let Some(c) = fresh.conditions.iter().find(|c| c.kind == kind) {
            self.conditions.push(c.clone());
        }
    }
}

/// A volume's block device on the node it is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockdevStatus {
    /// How the kernel device is made: `ublk`, `nbd` or `fuse-loop`.
    pub backend: String,
    /// `/dev/ironhorn/<volume>`.
    pub device: String,
    /// The kernel device the link points to (`/dev/loop3`).
    pub kernel_device: String,
    /// Where it is mounted on that node, as last observed.
    pub mount_points: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    /// When the volume was created (RFC 3339), as Longhorn's API says it; empty for volumes
    /// stored before the field existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created: String,
    pub spec: VolumeSpec,
    #[serde(default)]
    pub status: VolumeStatus,
}

/// One disk of a node, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskSpec {
    pub path: String,
    pub allow_scheduling: bool,
    /// Bytes kept free of replicas (for other users of the filesystem).
    pub storage_reserved: u64,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Move every replica off this disk (Longhorn's name): no new replica is placed here, and
    /// each one here is rebuilt elsewhere while its volume is attached, then removed.
    #[serde(default)]
    pub eviction_requested: bool,
}

/// One disk of a node, as observed by its agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskStatus {
    /// Size of the filesystem holding the disk path.
    pub storage_maximum: u64,
    /// Free bytes on that filesystem.
    pub storage_available: u64,
    /// Sum of the sizes of the replicas scheduled to this disk.
    pub storage_scheduled: u64,
    /// Filesystem identity, so two paths on one filesystem are not counted twice.
    pub disk_uuid: String,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// Where the node agent's API and replica servers are reached.
    pub address: String,
    pub allow_scheduling: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Failure domain for zone anti-affinity; empty means no zone.
    #[serde(default)]
    pub zone: String,
    /// Move every replica off this node (Longhorn's name), as for each of its disks.
    #[serde(default)]
    pub eviction_requested: bool,
    /// Disks by name.
    pub disks: BTreeMap<String, DiskSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub ready: bool,
    pub disks: BTreeMap<String, DiskStatus>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    pub spec: NodeSpec,
    #[serde(default)]
    pub status: NodeStatus,
}

/// One replica of a volume: a directory on one disk of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    pub name: String,
    pub volume: String,
    pub node: String,
    pub disk: String,
    /// Directory name under the disk's `replicas/` (Longhorn: `<volume>-<8 hex>`).
    pub data_directory_name: String,
    /// When the replica failed (seconds since the Unix epoch); it is removed after the
    /// volume's staleReplicaTimeout unless it returns first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<u64>,
    /// Holds the volume's data as of the last time it ran: may serve when the engine starts.
    /// False for a new replica of a volume with data until its rebuild finishes.
    #[serde(default)]
    pub healthy: bool,
    /// The address the volume's engine knows it by (`HOST:PORT`); empty before it first
    /// joined an engine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_the_json_names() {
        assert_eq!(wire_name(VolumeState::Attached), "attached");
        assert_eq!(wire_name(Robustness::Degraded), "degraded");
        assert_eq!(wire_name(Frontend::Blockdev), "blockdev");
        assert_eq!(wire_name(DataLocality::BestEffort), "best-effort");
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, Condition::new("Ready", true, "", ""), "t1");
        assert_eq!(conditions[0].last_transition_time, "t1");
        // Another message, same status: still since t1.
        set_condition(
            &mut conditions,
            Condition::new("Ready", true, "", "fine"),
            "t2",
        );
        assert_eq!(conditions[0].last_transition_time, "t1");
        assert_eq!(conditions[0].message, "fine");
        // The status flips: since t3.
        set_condition(
            &mut conditions,
            Condition::new("Ready", false, "Gone", ""),
            "t3",
        );
        assert_eq!(conditions[0].last_transition_time, "t3");
        assert!(!conditions[0].holds());
        // Another kind is its own.
        set_condition(
            &mut conditions,
            Condition::new("Attached", true, "", ""),
            "t4",
        );
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0].last_transition_time, "t3");
        // Stored before times were kept: the next update stamps it.
        conditions[1].last_transition_time.clear();
        set_condition(
            &mut conditions,
            Condition::new("Attached", true, "", ""),
            "t5",
        );
        assert_eq!(conditions[1].last_transition_time, "t5");
    }
}
