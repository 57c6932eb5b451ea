//! The REST API's request bodies and the answers that are not resources ([`crate::resource`]):
//! what the CLI, the CSI driver and the UI send, parsed by the manager from the same structs.
//! Bodies refuse unknown fields, so a typo is an error rather than a silent default.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resource::{DataLocality, Frontend};

/// A list, as `{"data": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
}

/// A size in bytes, or a string with a unit (`10Gi`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SizeInput {
    Bytes(u64),
    Text(String),
}

/// `POST /v1/volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateVolume {
    #[schema(pattern = "^[a-z0-9]([a-z0-9.-]{0,38}[a-z0-9])?$")]
    pub name: String,
    pub size: SizeInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 20)]
    pub number_of_replicas: Option<u32>,
    /// Minutes a failed replica is kept for a catch-up before it is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_replica_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<Frontend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_locality: Option<DataLocality>,
    #[serde(default)]
    pub node_selector: Vec<String>,
    #[serde(default)]
    pub disk_selector: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Restore from this backup URL (`<target>?backup=B&volume=V`; without `backup`, the
    /// volume's last backup): Longhorn's `fromBackup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<String>,
    /// A disaster-recovery volume that follows `fromBackup`'s backup volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<bool>,
    /// Clone another volume's snapshot (`snap://<volume>/<snapshot>`): Longhorn's
    /// `dataSource`. The new volume attaches once it holds the snapshot's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<String>,
}

/// `POST /v1/volumes/{name}/labels`: labels to set and to remove. A volume selects recurring
/// job `J` with `recurring-job.longhorn.io/J: enabled` and group `G` with
/// `recurring-job-group.longhorn.io/G: enabled` (Longhorn's labels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeLabels {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `POST /v1/volumes/{name}/attach` (the body may be left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachRequest {
    /// The node to attach to; the server's own node when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")]
    pub node: Option<String>,
    /// No frontend: for snapshot revert and other maintenance.
    #[serde(default)]
    pub maintenance: bool,
    /// The frontend to attach with (kept as the volume's); the volume's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<Frontend>,
}

/// `POST /v1/volumes/{name}/detach` (the body may be left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetachRequest {
    /// Detach even while the block device is mounted: its filesystems are unmounted (lazily
    /// when busy) after a flush.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/volumes/{name}/salvage` (Longhorn's salvage action; the body may be left out):
/// failed replicas of a faulted volume allowed to serve again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SalvageRequest {
    /// The replicas to bring back; empty or left out: every failed replica still kept.
    #[serde(default)]
    pub names: Vec<String>,
}

/// `POST /v1/volumes/{name}/expand`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpandRequest {
    pub size: SizeInput,
}

/// `POST /v1/nodes/register`: what a node agent says when it starts (and now and then after).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterNode {
    #[schema(pattern = "^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")]
    pub name: String,
    /// Where its node API listens (`HOST:PORT`).
    #[schema(pattern = "^[^:/]+:[0-9]{1,5}$")]
    pub address: String,
    /// The disk it offers on first registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_disk_path: Option<String>,
}

/// `PATCH /v1/nodes/{name}`: only what is given changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_scheduling: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Move every replica off the node (or stop doing so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_requested: Option<bool>,
}

/// `POST /v1/nodes/{name}/disks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddDisk {
    #[schema(pattern = "^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")]
    pub name: String,
    #[schema(pattern = "^/")]
    pub path: String,
    #[serde(default = "yes")]
    pub allow_scheduling: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_reserved: Option<SizeInput>,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `PATCH /v1/nodes/{name}/disks/{disk}`: only what is given changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_scheduling: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_reserved: Option<SizeInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Move every replica off the disk (or stop doing so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_requested: Option<bool>,
}

/// A replica directory on a disk of a ready node that no volume owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    /// `orphan-<16 hex>`, stable for the same node, disk and directory.
    pub name: String,
    pub node: String,
    pub disk: String,
    /// The directory under the disk's `replicas/`.
    pub data_directory_name: String,
    /// Its full path on the node.
    pub path: String,
}

// The settings table is a static, so the choices borrow there and own when read from JSON.
/// What values a setting takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum SettingKind {
    Bool,
    Int {
        minimum: i64,
        maximum: Option<i64>,
    },
    String {
        required: bool,
    },
    Choice {
        #[schema(value_type = Vec<String>)]
        options: Cow<'static, [Cow<'static, str>]>,
    },
    /// A backup target URL: empty, `nfs://host:/path`, `s3://bucket@region/path` or
    /// `file:///path`.
    BackupTarget,
}

/// A setting's definition, with Longhorn's key and meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingDefinition {
    pub key: String,
    pub display_name: String,
    pub description: String,
    pub category: String,
    #[serde(flatten)]
    pub kind: SettingKind,
    pub default: String,
}

/// A setting as the API shows it: Longhorn's `name`, `value` (a string) and `definition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SettingView {
    pub name: String,
    pub value: String,
    pub definition: SettingDefinition,
}

/// `PUT /v1/settings/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingValue {
    pub value: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn what_a_client_sends_the_server_reads_back() {
        let create = CreateVolume {
            name: "v".into(),
            size: SizeInput::Text("1Gi".into()),
            number_of_replicas: Some(3),
            stale_replica_timeout: None,
            frontend: Some(Frontend::Blockdev),
            data_locality: None,
            node_selector: vec!["ssd".into()],
            disk_selector: vec![],
            labels: BTreeMap::from([("app".into(), "db".into())]),
            from_backup: None,
            standby: None,
            data_source: None,
        };
        let json = serde_json::to_string(&create).unwrap();
        assert!(!json.contains("null"), "{json}");
        assert_eq!(serde_json::from_str::<CreateVolume>(&json).unwrap(), create);
        let update = DiskUpdate {
            storage_reserved: Some(SizeInput::Bytes(5)),
            ..DiskUpdate::default()
        };
        assert_eq!(
            serde_json::to_string(&update).unwrap(),
            r#"{"storageReserved":5}"#
        );
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let error = serde_json::from_str::<DetachRequest>(r#"{"forse": true}"#).unwrap_err();
        assert!(error.to_string().contains("forse"), "{error}");
    }

    #[test]
    fn a_setting_definition_reads_back() {
        let view = SettingView {
            name: "k".into(),
            value: "v".into(),
            definition: SettingDefinition {
                key: "k".into(),
                display_name: "K".into(),
                description: "d".into(),
                category: "general".into(),
                kind: SettingKind::Choice {
                    options: vec!["a".into(), "v".into()].into(),
                },
                default: "a".into(),
            },
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["definition"]["type"], "choice");
        assert_eq!(serde_json::from_value::<SettingView>(json).unwrap(), view);
    }
}

/// Which manager runs the controllers (`GET /v1/leader`): every manager serves the API, one
/// at a time leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Leadership {
    /// `embedded` (one manager, on its own file) or `etcd` (several may share it).
    pub store: String,
    /// The leader, as it names itself (its API URL); empty while nobody leads.
    pub leader: String,
    /// The manager that answered.
    pub this_manager: String,
    /// Whether the manager that answered leads.
    pub leading: bool,
    /// The leader's term (grows with each election), when the answering manager leads.
    pub term: u64,
}
