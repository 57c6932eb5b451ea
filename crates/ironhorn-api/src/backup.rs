//! Backups on the wire: the manager's backup targets, backup volumes and backups (with
//! Longhorn's names), the requests that make and restore them, and the node agent's backup
//! and restore jobs with their progress.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where backups go, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupTargetSpec {
    /// `file:///path`, `nfs://server:/export/path` or `s3://bucket@region/path`.
    #[serde(rename = "backupTargetURL")]
    pub backup_target_url: String,
    /// A secret (`/v1/secrets/{name}`) holding `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ENDPOINTS`; or `file:/path` of an env file on the nodes.
    #[serde(default)]
    pub credential_secret: String,
    /// Seconds between polls of the target (health, listing, standby volumes); 0 keeps
    /// the current interval.
    #[serde(default)]
    #[schema(maximum = 604800)]
    pub poll_interval: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupTargetStatus {
    pub available: bool,
    /// Why it is unavailable, and what to do.
    #[serde(default)]
    pub message: String,
    /// When it was last read (RFC 3339).
    #[serde(default)]
    pub last_synced_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupTarget {
    pub name: String,
    pub spec: BackupTargetSpec,
    #[serde(default)]
    pub status: BackupTargetStatus,
}

/// A set of credentials, by key (values are never shown back).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretData {
    pub data: BTreeMap<String, String>,
}

/// A secret as listed: its name and keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretView {
    pub name: String,
    pub keys: Vec<String>,
}

/// A backup volume: the backups of one volume in a target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupVolume {
    pub name: String,
    pub backup_target_name: String,
    /// Volume size at the last backup.
    pub size: u64,
    pub labels: BTreeMap<String, String>,
    pub created: String,
    pub last_backup_name: String,
    pub last_backup_at: String,
    /// Bytes of distinct blocks stored (block count × block size, before compression).
    pub data_stored: u64,
    pub compression_method: String,
    pub storage_class_name: String,
}

/// Where a backup is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum BackupState {
    /// Waiting for a free backup slot on the node.
    Pending,
    #[default]
    InProgress,
    Completed,
    Error,
    /// Its cfg in the target cannot be read.
    Unknown,
}

/// A backup, as the target holds it and, while it runs, as its job reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub name: String,
    pub volume_name: String,
    pub snapshot_name: String,
    /// When the backup started (Longhorn's `SnapshotCreatedAt`).
    pub snapshot_created: String,
    /// When it completed; empty until then.
    pub created: String,
    /// Bytes of blocks the backup lists.
    pub size: u64,
    pub labels: BTreeMap<String, String>,
    pub state: BackupState,
    /// 0 to 100.
    pub progress: u8,
    /// Volume bytes read so far, and compressed bytes sent to the target.
    #[serde(default)]
    pub bytes_processed: u64,
    #[serde(default)]
    pub bytes_uploaded: u64,
    /// `<target>?backup=<name>&volume=<volume>`: what `fromBackup` takes.
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub compression_method: String,
    pub is_incremental: bool,
}

/// `POST /v1/volumes/{name}/backups`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBackup {
    /// The snapshot to back up; a new one is taken when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The backup target (by name); `default` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_target: Option<String>,
}

/// One page of a listing; pass `continue` back for the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Where the next page starts; absent on the last page.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// How a target is reached, as a job needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetAccess {
    pub url: String,
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
}

/// `POST /node/v1/backups`: back up a snapshot of a replica on this node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartBackup {
    pub name: String,
    pub volume: String,
    pub replica_dir: String,
    pub snapshot: String,
    pub target: TargetAccess,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Compression of a new backup volume: gzip, lz4 or none.
    #[serde(default)]
    pub compression: String,
    #[serde(default)]
    pub storage_class: String,
}

/// `POST /node/v1/engines/{volume}/clone`: copy a snapshot of another volume, read from its
/// replica directory on this node, into the volume through its engine. Its progress is the
/// volume's restore job ([`crate::node_api::restore_job`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartClone {
    /// The data source, `snap://<volume>/<snapshot>`: the job's name.
    pub source: String,
    pub replica_dir: String,
    pub snapshot: String,
}

/// `POST /node/v1/engines/{volume}/restore`: write a backup into the volume through its
/// engine (only what changed since `lastRestored`, when given).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartRestore {
    pub target: TargetAccess,
    /// The backup volume's name in the target.
    pub backup_volume: String,
    pub backup: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restored: Option<String>,
}

/// A backup or restore job on a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The backup's name (backup jobs) or the volume's (restore jobs).
    pub name: String,
    pub state: BackupState,
    pub progress: u8,
    pub bytes_processed: u64,
    pub bytes_transferred: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// For a restore: the backup written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backup: String,
}
