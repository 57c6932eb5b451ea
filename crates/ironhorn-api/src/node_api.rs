//! The node API (`/node/v1/...`) as typed requests: what the manager asks a node agent, and
//! what `ironhorn engine` asks a standalone engine (which serves the engine routes below for
//! its one volume). Send them with [`crate::client::ApiClient::call`].

use crate::backup::{JobStatus, StartBackup, StartClone, StartRestore};
use crate::node::{
    AddReplica, CreateSnapshot, DeleteReplica, DiskReport, EngineInstance, Expand, NodeReport,
    ObserveRequest, ProbeRequest, RebuildResult, RemoveReplica, ReplicaInstance, ReplicaSnapshots,
    SnapshotInfo, StartEngine, StartReplica, StopEngine, TrimResult,
};
use crate::path::path_segment;
use crate::request::{Request, Timeout};

fn replica_path(name: &str, rest: &str) -> String {
    format!("/node/v1/replicas/{}{rest}", path_segment(name))
}

fn engine_path(volume: &str, rest: &str) -> String {
    format!("/node/v1/engines/{}{rest}", path_segment(volume))
}

/// What the agent sees on its machine now, for the disks the manager configured.
pub fn observe(request: &ObserveRequest) -> Request<NodeReport> {
    Request::post("/node/v1/observe".into())
        .json(request)
        .timeout(Timeout::Short)
}

/// Checks a path before it becomes a disk.
pub fn probe(path: &str) -> Request<DiskReport> {
    Request::post("/node/v1/probe".into()).json(&ProbeRequest {
        path: path.to_string(),
    })
}

/// Runs a replica server for `name` (its directory is created empty when new).
pub fn start_replica(name: &str, request: &StartReplica) -> Request<ReplicaInstance> {
    Request::put(replica_path(name, "")).json(request)
}

pub fn stop_replica(name: &str) -> Request<()> {
    Request::post(replica_path(name, "/stop"))
}

/// Stops the replica server and removes its directory.
pub fn delete_replica(name: &str, dir: &str) -> Request<()> {
    Request::post(replica_path(name, "/delete")).json(&DeleteReplica {
        dir: dir.to_string(),
    })
}

/// The snapshots in a replica directory there, read from its metadata.
pub fn replica_snapshots(dir: &str) -> Request<Vec<SnapshotInfo>> {
    Request::post("/node/v1/replica-snapshots".into()).json(&ReplicaSnapshots {
        dir: dir.to_string(),
    })
}

/// The engines running there.
pub fn engines() -> Request<Vec<EngineInstance>> {
    Request::get("/node/v1/engines".into())
}

/// Runs the volume's engine (and its frontend) from the given replicas.
pub fn start_engine(volume: &str, request: &StartEngine) -> Request<EngineInstance> {
    Request::put(engine_path(volume, "")).json(request)
}

/// Stops the engine; without `force` the node refuses while its block device is mounted.
pub fn stop_engine(volume: &str, force: bool) -> Request<()> {
    Request::post(engine_path(volume, "/stop")).json(&StopEngine { force })
}

/// The engine as it runs now (with its block device's current mount points).
pub fn engine(volume: &str) -> Request<EngineInstance> {
    Request::get(engine_path(volume, ""))
}

/// Trims the filesystem mounted from the volume's block device.
pub fn trim(volume: &str) -> Request<TrimResult> {
    Request::post(engine_path(volume, "/trim")).timeout(Timeout::Long)
}

/// Adds a replica to the engine and rebuilds it (a returning one, named by `previous`, is
/// caught up with what it missed).
pub fn add_replica(volume: &str, request: &AddReplica) -> Request<RebuildResult> {
    Request::post(engine_path(volume, "/replicas"))
        .json(request)
        .timeout(Timeout::Long)
}

pub fn remove_replica(volume: &str, address: &str) -> Request<()> {
    Request::post(engine_path(volume, "/replicas/remove")).json(&RemoveReplica {
        address: address.to_string(),
    })
}

/// The volume's snapshots and its head.
pub fn snapshots(volume: &str) -> Request<Vec<SnapshotInfo>> {
    Request::get(engine_path(volume, "/snapshots"))
}

pub fn create_snapshot(volume: &str, request: &CreateSnapshot) -> Request<()> {
    Request::post(engine_path(volume, "/snapshots")).json(request)
}

/// Marks the snapshot removed (purge frees its data).
pub fn remove_snapshot(volume: &str, name: &str) -> Request<()> {
    Request::delete(engine_path(
        volume,
        &format!("/snapshots/{}", path_segment(name)),
    ))
}

pub fn revert(volume: &str, name: &str) -> Request<()> {
    Request::post(engine_path(
        volume,
        &format!("/snapshots/{}/revert", path_segment(name)),
    ))
    .timeout(Timeout::Long)
}

/// Frees the data of removed snapshots.
pub fn purge(volume: &str) -> Request<()> {
    Request::post(engine_path(volume, "/purge")).timeout(Timeout::Long)
}

pub fn expand(volume: &str, size: u64) -> Request<()> {
    Request::post(engine_path(volume, "/expand")).json(&Expand { size })
}

/// Starts backing up a snapshot of a replica on that node (answers at once; poll
/// [`backup_job`]).
pub fn start_backup(request: &StartBackup) -> Request<JobStatus> {
    Request::post("/node/v1/backups".into()).json(request)
}

pub fn backup_job(name: &str) -> Request<JobStatus> {
    Request::get(format!("/node/v1/backups/{}", path_segment(name)))
}

/// Starts restoring a backup into the volume through its engine there (poll
/// [`restore_job`]).
pub fn start_restore(volume: &str, request: &StartRestore) -> Request<JobStatus> {
    Request::post(engine_path(volume, "/restore")).json(request)
}

/// Starts copying another volume's snapshot into the volume (its progress: [`restore_job`]).
pub fn start_clone(volume: &str, request: &StartClone) -> Request<JobStatus> {
    Request::post(engine_path(volume, "/clone")).json(request)
}

pub fn restore_job(volume: &str) -> Request<JobStatus> {
    Request::get(engine_path(volume, "/restore"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Method;

    #[test]
    fn names_are_escaped_in_paths() {
        let request = remove_snapshot("vol 1", "a/b");
        assert_eq!(request.method, Method::Delete);
        assert_eq!(request.path, "/node/v1/engines/vol%201/snapshots/a%2Fb");
        assert_eq!(request.body, None);
    }

    #[test]
    fn long_work_gets_the_long_timeout() {
        assert_eq!(trim("v").timeout, Timeout::Long);
        assert_eq!(purge("v").timeout, Timeout::Long);
        assert_eq!(observe(&ObserveRequest::default()).timeout, Timeout::Short);
        assert_eq!(snapshots("v").timeout, Timeout::Normal);
    }
}
