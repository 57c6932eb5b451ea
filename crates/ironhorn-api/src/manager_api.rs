//! The manager's REST API (`/v1/...`) as typed requests: what the CLI, the node agents (to
//! register), the CSI driver and tests send. Send them with
//! [`crate::client::ApiClient::call`]; the server parses the same structs.

use crate::auth::{AuditEntry, CreateToken, CreateUser, IssuedToken, Login, Me, TokenView, User};
use crate::backup::{
    Backup, BackupTarget, BackupTargetSpec, BackupVolume, CreateBackup, Page, SecretData,
    SecretView,
};
use crate::node::{CreateSnapshot, SnapshotInfo, TrimResult};
use crate::path::path_segment;
use crate::recurring::{RecurringJob, RecurringJobSpec, RecurringRun};
use crate::request::{Request, Timeout};
use crate::resource::{Node, Volume};
use crate::rest::{
    AddDisk, AttachRequest, CreateVolume, DetachRequest, DiskUpdate, ExpandRequest, Leadership,
    List, NodeUpdate, Orphan, RegisterNode, SalvageRequest, SettingValue, SettingView,
    VolumeLabels,
};

fn volume_path(name: &str, rest: &str) -> String {
    format!("/v1/volumes/{}{rest}", path_segment(name))
}

fn snapshot_path(volume: &str, snapshot: &str, rest: &str) -> String {
    volume_path(
        volume,
        &format!("/snapshots/{}{rest}", path_segment(snapshot)),
    )
}

fn node_path(name: &str, rest: &str) -> String {
    format!("/v1/nodes/{}{rest}", path_segment(name))
}

fn disk_path(node: &str, disk: &str) -> String {
    node_path(node, &format!("/disks/{}", path_segment(disk)))
}

// ---- volumes ----

pub fn list_volumes() -> Request<List<Volume>> {
    Request::get("/v1/volumes".into())
}

pub fn get_volume(name: &str) -> Request<Volume> {
    Request::get(volume_path(name, ""))
}

pub fn create_volume(request: &CreateVolume) -> Request<Volume> {
    Request::post("/v1/volumes".into()).json(request)
}

/// Detaches it first, then removes its data.
pub fn delete_volume(name: &str) -> Request<Volume> {
    Request::delete(volume_path(name, ""))
}

pub fn attach(name: &str, request: &AttachRequest) -> Request<Volume> {
    Request::post(volume_path(name, "/attach")).json(request)
}

pub fn detach(name: &str, request: &DetachRequest) -> Request<Volume> {
    Request::post(volume_path(name, "/detach")).json(request)
}

/// fstrim on the node where the volume's block device is mounted.
pub fn trim(name: &str) -> Request<TrimResult> {
    Request::post(volume_path(name, "/trim")).timeout(Timeout::Long)
}

/// Lets failed replicas of a faulted volume serve again; the engine then starts from the one
/// holding the newest writes.
pub fn salvage(name: &str, request: &SalvageRequest) -> Request<Volume> {
    Request::post(volume_path(name, "/salvage")).json(request)
}

pub fn expand(name: &str, request: &ExpandRequest) -> Request<Volume> {
    Request::post(volume_path(name, "/expand")).json(request)
}

// ---- snapshots ----

pub fn snapshots(volume: &str) -> Request<List<SnapshotInfo>> {
    Request::get(volume_path(volume, "/snapshots"))
}

pub fn create_snapshot(volume: &str, request: &CreateSnapshot) -> Request<SnapshotInfo> {
    Request::post(volume_path(volume, "/snapshots")).json(request)
}

pub fn delete_snapshot(volume: &str, snapshot: &str) -> Request<()> {
    Request::delete(snapshot_path(volume, snapshot, ""))
}

pub fn revert_snapshot(volume: &str, snapshot: &str) -> Request<()> {
    Request::post(snapshot_path(volume, snapshot, "/revert")).timeout(Timeout::Long)
}

/// Frees the data of the volume's removed snapshots.
pub fn purge(volume: &str) -> Request<()> {
    Request::post(volume_path(volume, "/purge")).timeout(Timeout::Long)
}

// ---- nodes and disks ----

pub fn list_nodes() -> Request<List<Node>> {
    Request::get("/v1/nodes".into())
}

pub fn get_node(name: &str) -> Request<Node> {
    Request::get(node_path(name, ""))
}

pub fn register_node(request: &RegisterNode) -> Request<Node> {
    Request::post("/v1/nodes/register".into())
        .json(request)
        .timeout(Timeout::Short)
}

pub fn update_node(name: &str, request: &NodeUpdate) -> Request<Node> {
    Request::patch(node_path(name, "")).json(request)
}

/// Forgets a node whose machine is gone (refused while it answers).
pub fn delete_node(name: &str) -> Request<()> {
    Request::delete(node_path(name, ""))
}

pub fn add_disk(node: &str, request: &AddDisk) -> Request<Node> {
    Request::post(node_path(node, "/disks")).json(request)
}

pub fn update_disk(node: &str, disk: &str, request: &DiskUpdate) -> Request<Node> {
    Request::patch(disk_path(node, disk)).json(request)
}

pub fn remove_disk(node: &str, disk: &str) -> Request<Node> {
    Request::delete(disk_path(node, disk))
}

// ---- orphans ----

pub fn list_orphans() -> Request<List<Orphan>> {
    Request::get("/v1/orphans".into())
}

pub fn get_orphan(name: &str) -> Request<Orphan> {
    Request::get(format!("/v1/orphans/{}", path_segment(name)))
}

pub fn delete_orphan(name: &str) -> Request<()> {
    Request::delete(format!("/v1/orphans/{}", path_segment(name)))
}

/// Sets and removes labels (the recurring-job selector among them).
pub fn set_volume_labels(name: &str, request: &VolumeLabels) -> Request<Volume> {
    Request::post(volume_path(name, "/labels")).json(request)
}

/// The recorded runs of every recurring job on the volume, newest first.
pub fn volume_recurring_runs(name: &str) -> Request<List<RecurringRun>> {
    Request::get(volume_path(name, "/recurringjobruns"))
}

// ---- recurring jobs ----

fn recurring_job_path(name: &str, rest: &str) -> String {
    format!("/v1/recurringjobs/{}{rest}", path_segment(name))
}

pub fn list_recurring_jobs() -> Request<List<RecurringJob>> {
    Request::get("/v1/recurringjobs".into())
}

pub fn get_recurring_job(name: &str) -> Request<RecurringJob> {
    Request::get(recurring_job_path(name, ""))
}

pub fn create_recurring_job(spec: &RecurringJobSpec) -> Request<RecurringJob> {
    Request::post("/v1/recurringjobs".into()).json(spec)
}

pub fn update_recurring_job(spec: &RecurringJobSpec) -> Request<RecurringJob> {
    Request::put(recurring_job_path(&spec.name, "")).json(spec)
}

pub fn delete_recurring_job(name: &str) -> Request<()> {
    Request::delete(recurring_job_path(name, ""))
}

/// Runs the job on its volumes now.
pub fn run_recurring_job(name: &str) -> Request<RecurringJob> {
    Request::post(recurring_job_path(name, "/run"))
}

/// The job's recorded runs on every volume, newest first.
pub fn recurring_job_runs(name: &str) -> Request<List<RecurringRun>> {
    Request::get(recurring_job_path(name, "/runs"))
}

// ---- users, tokens, sessions ----

pub fn login(request: &Login) -> Request<Me> {
    Request::post("/v1/login".into()).json(request)
}

pub fn logout() -> Request<()> {
    Request::post("/v1/logout".into())
}

/// Who the credentials stand for.
/// Which manager leads.
pub fn leader() -> Request<Leadership> {
    Request::get("/v1/leader".into())
}

pub fn me() -> Request<Me> {
    Request::get("/v1/me".into())
}

pub fn list_users() -> Request<List<User>> {
    Request::get("/v1/users".into())
}

pub fn create_user(request: &CreateUser) -> Request<User> {
    Request::post("/v1/users".into()).json(request)
}

pub fn delete_user(name: &str) -> Request<()> {
    Request::delete(format!("/v1/users/{}", path_segment(name)))
}

pub fn list_tokens() -> Request<List<TokenView>> {
    Request::get("/v1/tokens".into())
}

pub fn create_token(request: &CreateToken) -> Request<IssuedToken> {
    Request::post("/v1/tokens".into()).json(request)
}

/// The newest `limit` entries of the audit log, newest first.
pub fn audit(limit: Option<usize>) -> Request<List<AuditEntry>> {
    Request::get(match limit {
        Some(n) => format!("/v1/audit?limit={n}"),
        None => "/v1/audit".into(),
    })
}

pub fn revoke_token(id: &str) -> Request<()> {
    Request::delete(format!("/v1/tokens/{}", path_segment(id)))
}

// ---- settings ----

pub fn list_settings() -> Request<List<SettingView>> {
    Request::get("/v1/settings".into())
}

pub fn get_setting(name: &str) -> Request<SettingView> {
    Request::get(format!("/v1/settings/{}", path_segment(name)))
}

pub fn set_setting(name: &str, value: &str) -> Request<SettingView> {
    Request::put(format!("/v1/settings/{}", path_segment(name))).json(&SettingValue {
        value: value.to_string(),
    })
}

// ---- backups ----

fn with_target(path: String, target: Option<&str>) -> String {
    match target {
        Some(t) => format!("{path}?backupTarget={}", path_segment(t)),
        None => path,
    }
}

fn backup_volume_path(volume: &str) -> String {
    format!("/v1/backupvolumes/{}", path_segment(volume))
}

/// Starts a backup of an attached volume (of a new snapshot unless one is named).
pub fn create_backup(volume: &str, request: &CreateBackup) -> Request<Backup> {
    Request::post(volume_path(volume, "/backups")).json(request)
}

/// Turns a standby volume into a normal one (once it holds the last backup).
pub fn activate(volume: &str) -> Request<Volume> {
    Request::post(volume_path(volume, "/activate"))
}

pub fn get_backup_target(name: &str) -> Request<BackupTarget> {
    Request::get(format!("/v1/backuptargets/{}", path_segment(name)))
}

pub fn get_backup_volume(volume: &str, target: Option<&str>) -> Request<BackupVolume> {
    Request::get(with_target(backup_volume_path(volume), target))
}

pub fn list_backup_targets() -> Request<List<BackupTarget>> {
    Request::get("/v1/backuptargets".into())
}

pub fn put_backup_target(name: &str, spec: &BackupTargetSpec) -> Request<BackupTarget> {
    Request::put(format!("/v1/backuptargets/{}", path_segment(name)))
        .json(spec)
        .timeout(Timeout::Long)
}

pub fn delete_backup_target(name: &str) -> Request<()> {
    Request::delete(format!("/v1/backuptargets/{}", path_segment(name)))
}

pub fn list_secrets() -> Request<List<SecretView>> {
    Request::get("/v1/secrets".into())
}

pub fn put_secret(name: &str, data: &SecretData) -> Request<SecretView> {
    Request::put(format!("/v1/secrets/{}", path_segment(name))).json(data)
}

pub fn delete_secret(name: &str) -> Request<()> {
    Request::delete(format!("/v1/secrets/{}", path_segment(name)))
}

pub fn list_backup_volumes(target: Option<&str>) -> Request<List<BackupVolume>> {
    Request::get(with_target("/v1/backupvolumes".into(), target)).timeout(Timeout::Long)
}

/// Removes every backup of the volume from the target.
pub fn delete_backup_volume(volume: &str, target: Option<&str>) -> Request<()> {
    Request::delete(with_target(backup_volume_path(volume), target)).timeout(Timeout::Long)
}

/// One page of a backup volume's backups, oldest first.
pub fn list_backups(
    volume: &str,
    target: Option<&str>,
    limit: Option<usize>,
    continue_token: Option<&str>,
) -> Request<Page<Backup>> {
    let mut query = Vec::new();
    if let Some(t) = target {
        query.push(format!("backupTarget={}", path_segment(t)));
    }
    if let Some(l) = limit {
        query.push(format!("limit={l}"));
    }
    if let Some(c) = continue_token {
        query.push(format!("continue={}", path_segment(c)));
    }
    let mut path = format!("{}/backups", backup_volume_path(volume));
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    Request::get(path).timeout(Timeout::Long)
}

pub fn get_backup(volume: &str, backup: &str, target: Option<&str>) -> Request<Backup> {
    Request::get(with_target(
        format!(
            "{}/backups/{}",
            backup_volume_path(volume),
            path_segment(backup)
        ),
        target,
    ))
}

/// Deletes a backup and the blocks no other backup uses.
pub fn delete_backup(volume: &str, backup: &str, target: Option<&str>) -> Request<()> {
    Request::delete(with_target(
        format!(
            "{}/backups/{}",
            backup_volume_path(volume),
            path_segment(backup)
        ),
        target,
    ))
    .timeout(Timeout::Long)
}

// ---- live views ----

/// The change stream (server-sent events, `event: change` with `{"revision": N}`): not a
/// JSON answer, so a path to open with an event-stream reader rather than a [`Request`].
pub const EVENTS_PATH: &str = "/v1/events";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Method;

    #[test]
    fn paths_follow_the_openapi_document() {
        assert_eq!(
            snapshot_path("v", "s 1", "/revert"),
            "/v1/volumes/v/snapshots/s%201/revert"
        );
        assert_eq!(disk_path("n", "d"), "/v1/nodes/n/disks/d");
        let request = update_disk("n", "d", &DiskUpdate::default());
        assert_eq!(request.method, Method::Patch);
        assert_eq!(request.body.as_deref(), Some(&b"{}"[..]));
    }
}
