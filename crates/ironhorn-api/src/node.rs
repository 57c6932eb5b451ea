//! The node API's messages: what the manager sends a node agent and what the agent reports
//! (the routes are in [`crate::node_api`]). JSON, camelCase like the rest of the API. The
//! agent keeps no state of its own between restarts: the manager says what should run, the
//! agent says what runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /node/v1/observe`: the disks the manager has configured for this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObserveRequest {
    /// Disk name to path.
    #[serde(default)]
    pub disks: BTreeMap<String, String>,
}

/// What the agent sees on its machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub name: String,
    pub disks: BTreeMap<String, DiskReport>,
    pub replicas: Vec<ReplicaInstance>,
    pub engines: Vec<EngineInstance>,
    /// How far the agent's engines fence (see [`FENCING`]); 0 from agents that predate it.
    #[serde(default)]
    pub fencing: u32,
}

/// What this version's engines do to keep one writer per volume: 1 = they claim replicas
/// with the attachment generation, refuse to start with fewer than `minClaimed` of them, and
/// keep replicas they could not open as ERR slots that a majority quorum counts. Only an
/// engine of this level may be the one left behind, or the one started, when a volume moves
/// off a node that does not answer.
pub const FENCING: u32 = 1;

/// One disk as probed just now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskReport {
    pub path: String,
    pub disk_uuid: String,
    pub storage_maximum: u64,
    pub storage_available: u64,
    /// Why the disk cannot be used; empty when it can.
    #[serde(default)]
    pub error: String,
    /// Names of the directories under the disk's `replicas/` that hold a replica.
    #[serde(default)]
    pub replica_directories: Vec<String>,
}

/// `POST /node/v1/probe`: checks a path before it becomes a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest {
    pub path: String,
}

/// `PUT /node/v1/replicas/{name}`: run a replica server for this directory (created empty
/// when it holds no replica yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartReplica {
    pub dir: String,
    pub size: u64,
}

/// `POST /node/v1/replicas/{name}/delete`: stop it and remove its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteReplica {
    pub dir: String,
}

/// `POST /node/v1/replica-snapshots`: the snapshots of a replica directory on the node, read
/// from its metadata (for a volume whose engine is not running).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSnapshots {
    pub dir: String,
}

/// A running replica server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaInstance {
    pub name: String,
    pub dir: String,
    /// Where engines reach it (`HOST:PORT`).
    pub address: String,
    /// Bytes its files occupy.
    pub actual_size: u64,
}

/// `PUT /node/v1/engines/{volume}`: run the volume's engine from these replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartEngine {
    pub size: u64,
    /// Replica server addresses.
    pub replicas: Vec<String>,
    /// `nbd` or `blockdev`.
    pub frontend: String,
    /// No frontend: for snapshot revert and other maintenance.
    #[serde(default)]
    pub maintenance: bool,
    /// Seconds a replica may take to answer before it is failed.
    pub replica_timeout: u64,
    /// The attachment's generation: the engine claims every replica with it, and engines of
    /// older attachments are refused from then on. 0: unfenced.
    #[serde(default)]
    pub generation: u64,
    /// Acknowledge a write only once a majority of the replicas have it (else one is
    /// enough): an engine cut off from most of them then acknowledges nothing.
    #[serde(default)]
    pub majority_quorum: bool,
    /// How many replicas must take the generation for the engine to start (0: any number):
    /// set when the volume's previous engine may still run on a node that does not answer.
    #[serde(default)]
    pub min_claimed: usize,
}

/// A running engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineInstance {
    pub volume: String,
    pub size: u64,
    /// The NBD URI; empty in maintenance.
    pub endpoint: String,
    pub maintenance: bool,
    pub rebuilding: bool,
    /// Bytes the running rebuild has copied, and has to copy in all.
    #[serde(default)]
    pub rebuild_copied: u64,
    #[serde(default)]
    pub rebuild_total: u64,
    /// NBD clients connected now.
    pub connections: usize,
    pub replicas: Vec<EngineReplica>,
    /// `nbd` or `blockdev` (empty from agents that predate blockdev: nbd).
    #[serde(default)]
    pub frontend: String,
    /// The block device, with the blockdev frontend.
    #[serde(default)]
    pub blockdev: Option<BlockdevInstance>,
    /// The attachment generation it claimed its replicas with.
    #[serde(default)]
    pub generation: u64,
    /// Why it stopped serving, when a newer attachment claimed its replicas.
    #[serde(default)]
    pub fenced: String,
}

/// A volume's block device on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockdevInstance {
    /// `fuse-loop`, `nbd` or `ublk`.
    pub backend: String,
    /// `/dev/ironhorn/<volume>`.
    pub device: String,
    /// What the link points to (`/dev/loop3`).
    pub kernel_device: String,
    /// Where it is mounted now.
    pub mount_points: Vec<String>,
}

/// `POST /node/v1/engines/{volume}/stop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopEngine {
    /// Tear the block device down even while it is mounted (its filesystems are unmounted).
    #[serde(default)]
    pub force: bool,
}

/// What `POST /node/v1/engines/{volume}/trim` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrimResult {
    /// The filesystem that was trimmed.
    pub mount_point: String,
    /// Bytes of free space the filesystem reported trimming (fstrim's figure: every free
    /// range it went over, sent to the volume or not).
    pub trimmed_bytes: u64,
    /// Bytes of discards that reached the volume: deallocated in every replica.
    pub discarded_bytes: u64,
}

/// One replica as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineReplica {
    pub address: String,
    /// RW, WO or ERR.
    pub mode: String,
    #[serde(default)]
    pub reason: String,
}

/// `POST /node/v1/engines/{volume}/replicas`: add (rebuild) a replica; `previous` is the
/// address a failed replica had, so a returning one is caught up incrementally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddReplica {
    pub address: String,
    #[serde(default)]
    pub previous: Option<String>,
}

/// `POST /node/v1/engines/{volume}/replicas/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveReplica {
    pub address: String,
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildResult {
    pub replica: String,
    pub source: String,
    /// An incremental catch-up: only what the replica missed while away was copied.
    pub incremental: bool,
    pub bytes_copied: u64,
    /// Snapshot files copied, and skipped because the target held them already (same
    /// checksum).
    #[serde(default)]
    pub layers_copied: usize,
    #[serde(default)]
    pub layers_skipped: usize,
    /// Bytes the volume took while the replica was away (incremental catch-up only).
    #[serde(default)]
    pub bytes_written_while_away: u64,
}

/// One snapshot (or the head) of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    pub name: String,
    pub parent: String,
    pub children: Vec<String>,
    pub removed: bool,
    pub user_created: bool,
    pub created: String,
    /// Allocated bytes.
    pub size: u64,
    pub labels: BTreeMap<String, String>,
}

/// `POST /node/v1/engines/{volume}/snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateSnapshot {
    #[schema(pattern = "^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `POST /node/v1/engines/{volume}/expand`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expand {
    pub size: u64,
}
