//! StorageClass and VolumeSnapshotClass parameters, with Longhorn's names and meanings, read
//! into what a volume or snapshot is created with. An unknown parameter or a bad value is an
//! error naming the parameter: a typo in a StorageClass must not silently give a volume
//! other than the one asked for.

use std::collections::{BTreeMap, HashMap};

use ironhorn_api::resource::DataLocality;
use serde::Deserialize;

/// A parameter that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {name:?}: {message}")]
pub struct ParamError {
    pub name: String,
    pub message: String,
}

fn bad(name: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Label Longhorn puts on a volume for each recurring job it runs (`enabled`).
pub const RECURRING_JOB_LABEL: &str = "recurring-job.longhorn.io/";
/// Label Longhorn puts on a volume for each recurring-job group it belongs to.
pub const RECURRING_JOB_GROUP_LABEL: &str = "recurring-job-group.longhorn.io/";
/// The volume's replica auto-balance choice, carried as a label.
pub const REPLICA_AUTO_BALANCE_LABEL: &str = "ironhorn.io/replica-auto-balance";
/// Prefix of what the external provisioner adds (`csi.storage.k8s.io/pvc/name`, ...).
const PROVISIONER_PREFIX: &str = "csi.storage.k8s.io/";

/// What a StorageClass asks of a new volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeParams {
    pub number_of_replicas: Option<u32>,
    /// Minutes.
    pub stale_replica_timeout: Option<u64>,
    pub from_backup: Option<String>,
    pub disk_selector: Vec<String>,
    pub node_selector: Vec<String>,
    pub data_locality: Option<DataLocality>,
    pub labels: BTreeMap<String, String>,
    /// Extra `mkfs` arguments, split on whitespace when the filesystem is made.
    pub mkfs_params: String,
    /// Longhorn's `fsType` parameter (the volume capability's `fs_type` wins).
    pub fs_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecurringJobSelector {
    name: String,
    #[serde(default)]
    is_group: bool,
}

fn tags(name: &str, value: &str) -> Result<Vec<String>, ParamError> {
    let tags: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    for t in &tags {
        if !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                name,
                format!("tag {t:?} has a character other than letters, digits, '-', '_' and '.'"),
            ));
        }
    }
    Ok(tags)
}

fn boolean(name: &str, value: &str) -> Result<bool, ParamError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(bad(name, format!("{other:?} is not true or false"))),
    }
}

/// Reads a StorageClass's parameters.
pub fn volume_params(params: &HashMap<String, String>) -> Result<VolumeParams, ParamError> {
    let mut out = VolumeParams::default();
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    for key in keys {
        let value = params[key].trim();
        let name = key.as_str();
        match name {
            "numberOfReplicas" => {
                let n: u32 = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=20).contains(n))
                    .ok_or_else(|| bad(name, format!("{value:?} is not a count from 1 to 20")))?;
                out.number_of_replicas = Some(n);
            }
            "staleReplicaTimeout" => {
                let minutes: u64 = value
                    .parse()
                    .map_err(|_| bad(name, format!("{value:?} is not a number of minutes")))?;
                out.stale_replica_timeout = Some(minutes);
            }
            "fromBackup" => {
                if !value.is_empty() {
                    out.from_backup = Some(value.to_string());
                }
            }
            "diskSelector" => out.disk_selector = tags(name, value)?,
            "nodeSelector" => out.node_selector = tags(name, value)?,
            "dataLocality" => {
                out.data_locality = Some(match value {
                    "disabled" => DataLocality::Disabled,
                    "best-effort" => DataLocality::BestEffort,
                    "strict-local" => {
                        return Err(bad(name, "strict-local is not supported: use best-effort or disabled"))
                    }
                    other => {
                        return Err(bad(name, format!("{other:?} is not disabled or best-effort")))
                    }
                })
            }
            "recurringJobSelector" => {
                if value.is_empty() {
                    continue;
                }
                let selectors: Vec<RecurringJobSelector> = serde_json::from_str(value).map_err(|e| {
                    bad(name, format!("not a JSON list of {{\"name\": ..., \"isGroup\": ...}}: {e}"))
                })?;
                for s in selectors {
                    if s.name.is_empty() {
                        return Err(bad(name, "a selector has an empty name"));
                    }
                    let prefix = if s.is_group {
                        RECURRING_JOB_GROUP_LABEL
                    } else {
                        RECURRING_JOB_LABEL
                    };
                    out.labels.insert(format!("{prefix}{}", s.name), "enabled".into());
                }
            }
            "replicaAutoBalance" => match value {
                "ignored" | "disabled" | "least-effort" | "best-effort" => {
                    out.labels.insert(REPLICA_AUTO_BALANCE_LABEL.into(), value.to_string());
                }
                other => {
                    return Err(bad(name, format!("{other:?} is not ignored, disabled, least-effort or best-effort")))
                }
            },
            "mkfsParams" => out.mkfs_params = value.to_string(),
            "fsType" => {
                if !value.is_empty() {
                    out.fs_type = Some(filesystem(value).map_err(|m| bad(name, m))?.to_string());
                }
            }
            // Longhorn's parameters whose only supported value is the default.
            "migratable" | "encrypted" | "disableRevisionCounter" => {
                if boolean(name, value)? {
                    return Err(bad(name, "only \"false\" is supported"));
                }
            }
            "dataEngine" => {
                if value != "v1" {
                    return Err(bad(name, "only \"v1\" is supported"));
                }
            }
            _ if name.starts_with(PROVISIONER_PREFIX) => {}
            _ => {
                return Err(bad(
                    name,
                    "unknown: Ironhorn takes numberOfReplicas, staleReplicaTimeout, fromBackup, diskSelector, nodeSelector, dataLocality, recurringJobSelector, replicaAutoBalance, mkfsParams and fsType",
                ))
            }
        }
    }
    Ok(out)
}

/// A filesystem Ironhorn makes and mounts.
pub fn filesystem(name: &str) -> Result<&'static str, String> {
    match name {
        "" | "ext4" => Ok("ext4"),
        "xfs" => Ok("xfs"),
        other => Err(format!(
            "filesystem {other:?} is not supported: use xfs or ext4"
        )),
    }
}

/// What a VolumeSnapshotClass's `type` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A snapshot inside the volume (`snap`, the default).
    Snapshot,
    /// A backup to the backup target (`bak`).
    Backup,
}

/// Reads a VolumeSnapshotClass's parameters.
pub fn snapshot_params(params: &HashMap<String, String>) -> Result<SnapshotKind, ParamError> {
    let mut kind = SnapshotKind::Snapshot;
    for (key, value) in params {
        match key.as_str() {
            "type" => {
                kind = match value.trim() {
                    "" | "snap" => SnapshotKind::Snapshot,
                    "bak" => SnapshotKind::Backup,
                    other => {
                        return Err(bad(
                            key,
                            format!("{other:?} is not snap (a snapshot) or bak (a backup)"),
                        ))
                    }
                }
            }
            k if k.starts_with(PROVISIONER_PREFIX) || k.starts_with("csi.storage.k8s.io") => {}
            _ => {
                return Err(bad(
                    key,
                    "unknown: a VolumeSnapshotClass takes `type` (snap or bak)",
                ))
            }
        }
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn any_parameters_read_without_panicking(pairs in proptest::collection::vec(("(numberOfReplicas|staleReplicaTimeout|dataLocality|recurringJobSelector|diskSelector|replicaAutoBalance|fsType|type|\\PC{0,12})", "\\PC{0,40}"), 0..6)) {
            let map: HashMap<String, String> = pairs.into_iter().collect();
            let _ = volume_params(&map);
            let _ = snapshot_params(&map);
        }
    }

    #[test]
    fn the_seed_storage_class_reads() {
        let p = volume_params(&map(&[
            ("numberOfReplicas", "3"),
            ("staleReplicaTimeout", "2880"),
            ("fromBackup", ""),
            ("fsType", "xfs"),
            ("dataLocality", "best-effort"),
            ("diskSelector", "ssd, fast"),
            (
                "recurringJobSelector",
                r#"[{"name":"snap","isGroup":true},{"name":"daily"}]"#,
            ),
            ("csi.storage.k8s.io/pvc/name", "data"),
        ]))
        .unwrap();
        assert_eq!(p.number_of_replicas, Some(3));
        assert_eq!(p.stale_replica_timeout, Some(2880));
        assert_eq!(p.from_backup, None);
        assert_eq!(p.fs_type.as_deref(), Some("xfs"));
        assert_eq!(p.data_locality, Some(DataLocality::BestEffort));
        assert_eq!(p.disk_selector, vec!["ssd", "fast"]);
        assert_eq!(p.labels["recurring-job-group.longhorn.io/snap"], "enabled");
        assert_eq!(p.labels["recurring-job.longhorn.io/daily"], "enabled");
    }

    #[test]
    fn an_unknown_parameter_or_bad_value_names_the_parameter() {
        for (k, v) in [
            ("numberOfReplica", "3"),
            ("numberOfReplicas", "0"),
            ("numberOfReplicas", "three"),
            ("staleReplicaTimeout", "-1"),
            ("dataLocality", "nearby"),
            ("recurringJobSelector", "snap"),
            ("replicaAutoBalance", "always"),
            ("fsType", "btrfs"),
            ("migratable", "true"),
            ("diskSelector", "a b"),
        ] {
            let e = volume_params(&map(&[(k, v)])).unwrap_err();
            assert_eq!(e.name, k, "{e}");
        }
        assert_eq!(
            snapshot_params(&map(&[("type", "bi")])).unwrap_err().name,
            "type"
        );
        assert_eq!(
            snapshot_params(&map(&[("typ", "snap")])).unwrap_err().name,
            "typ"
        );
        assert_eq!(
            snapshot_params(&map(&[("type", "bak")])),
            Ok(SnapshotKind::Backup)
        );
        assert_eq!(snapshot_params(&map(&[])), Ok(SnapshotKind::Snapshot));
    }
}
