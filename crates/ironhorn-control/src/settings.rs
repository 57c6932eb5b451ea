//! Settings with Longhorn's keys, types, defaults and validation (longhorn-manager
//! `types/setting.go`, v1.6/v1.7). Values travel as strings, as in Longhorn; [`Settings`]
//! reads them typed, falling back to the defaults.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ironhorn_api::rest::{SettingDefinition, SettingKind};
use thiserror::Error;

use crate::scheduler::SchedulingSettings;

/// A setting's definition; the API shows it as [`SettingDefinition`].
#[derive(Debug, Clone)]
pub struct Definition {
    pub key: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub category: &'static str,
    pub kind: SettingKind,
    pub default: &'static str,
}

impl Definition {
    /// The definition as the API shows it.
    pub fn to_api(&self) -> SettingDefinition {
        SettingDefinition {
            key: self.key.to_string(),
            display_name: self.display_name.to_string(),
            description: self.description.to_string(),
            category: self.category.to_string(),
            kind: self.kind.clone(),
            default: self.default.to_string(),
        }
    }
}

const fn int(minimum: i64, maximum: Option<i64>) -> SettingKind {
    SettingKind::Int { minimum, maximum }
}

pub const DEFAULT_REPLICA_COUNT: &str = "default-replica-count";
pub const REPLICA_SOFT_ANTI_AFFINITY: &str = "replica-soft-anti-affinity";
pub const REPLICA_ZONE_SOFT_ANTI_AFFINITY: &str = "replica-zone-soft-anti-affinity";
pub const REPLICA_DISK_SOFT_ANTI_AFFINITY: &str = "replica-disk-soft-anti-affinity";
pub const STORAGE_OVER_PROVISIONING_PERCENTAGE: &str = "storage-over-provisioning-percentage";
pub const STORAGE_MINIMAL_AVAILABLE_PERCENTAGE: &str = "storage-minimal-available-percentage";
pub const STORAGE_RESERVED_PERCENTAGE_FOR_DEFAULT_DISK: &str =
    "storage-reserved-percentage-for-default-disk";
pub const DEFAULT_DATA_PATH: &str = "default-data-path";
pub const DEFAULT_DATA_LOCALITY: &str = "default-data-locality";
pub const REPLICA_REPLENISHMENT_WAIT_INTERVAL: &str = "replica-replenishment-wait-interval";
pub const CONCURRENT_REPLICA_REBUILD_PER_NODE_LIMIT: &str =
    "concurrent-replica-rebuild-per-node-limit";
pub const ENGINE_REPLICA_TIMEOUT: &str = "engine-replica-timeout";
pub const AUTO_SALVAGE: &str = "auto-salvage";
pub const ORPHAN_RESOURCE_AUTO_DELETION: &str = "orphan-resource-auto-deletion";
pub const BACKUP_TARGET: &str = "backup-target";
pub const BACKUP_TARGET_CREDENTIAL_SECRET: &str = "backup-target-credential-secret";
pub const BACKUPSTORE_POLL_INTERVAL: &str = "backupstore-poll-interval";
pub const BACKUP_COMPRESSION_METHOD: &str = "backup-compression-method";
pub const ALLOW_RECURRING_JOB_WHILE_VOLUME_DETACHED: &str =
    "allow-recurring-job-while-volume-detached";
pub const RECURRING_JOB_TIME_ZONE: &str = "recurring-job-time-zone";

/// Older keys accepted for the current ones (Longhorn renamed them).
const ALIASES: &[(&str, &str)] = &[("orphan-auto-deletion", ORPHAN_RESOURCE_AUTO_DELETION)];

/// Every setting, in display order.
pub const DEFINITIONS: &[Definition] = &[
    Definition {
        key: DEFAULT_REPLICA_COUNT,
        display_name: "Default Replica Count",
        description: "Replicas of a volume created without numberOfReplicas.",
        category: "general",
        kind: int(1, Some(20)),
        default: "3",
    },
    Definition {
        key: REPLICA_SOFT_ANTI_AFFINITY,
        display_name: "Replica Node Level Soft Anti-Affinity",
        description: "Allow a new replica on a node that already holds a replica of the same volume, when no other node can take it.",
        category: "scheduling",
        kind: SettingKind::Bool,
        default: "false",
    },
    Definition {
        key: REPLICA_ZONE_SOFT_ANTI_AFFINITY,
        display_name: "Replica Zone Level Soft Anti-Affinity",
        description: "Allow a new replica in a zone that already holds a replica of the same volume. Nodes without a zone count as one zone.",
        category: "scheduling",
        kind: SettingKind::Bool,
        default: "true",
    },
    Definition {
        key: REPLICA_DISK_SOFT_ANTI_AFFINITY,
        display_name: "Replica Disk Level Soft Anti-Affinity",
        description: "Allow a new replica on a disk that already holds a replica of the same volume.",
        category: "scheduling",
        kind: SettingKind::Bool,
        default: "true",
    },
    Definition {
        key: STORAGE_OVER_PROVISIONING_PERCENTAGE,
        display_name: "Storage Over Provisioning Percentage",
        description: "Replica sizes a disk may be scheduled, as a percentage of its size minus its reserved space.",
        category: "scheduling",
        kind: int(0, None),
        default: "100",
    },
    Definition {
        key: STORAGE_MINIMAL_AVAILABLE_PERCENTAGE,
        display_name: "Storage Minimal Available Percentage",
        description: "A disk takes no new replica once its free space is at or below this percentage of its size.",
        category: "scheduling",
        kind: int(0, Some(100)),
        default: "25",
    },
    Definition {
        key: STORAGE_RESERVED_PERCENTAGE_FOR_DEFAULT_DISK,
        display_name: "Storage Reserved Percentage For Default Disk",
        description: "Space of the default disk kept free of replicas, as a percentage of its size (applied when the default disk is created).",
        category: "scheduling",
        kind: int(0, Some(100)),
        default: "30",
    },
    Definition {
        key: DEFAULT_DATA_PATH,
        display_name: "Default Data Path",
        description: "Path of the default disk of a node that joins without one.",
        category: "general",
        kind: SettingKind::String { required: true },
        default: "/var/lib/ironhorn/",
    },
    Definition {
        key: DEFAULT_DATA_LOCALITY,
        display_name: "Default Data Locality",
        description: "dataLocality of a volume created without one: disabled, or best-effort (keep a replica on the node the volume is attached to).",
        category: "general",
        kind: SettingKind::Choice {
            options: Cow::Borrowed(&[Cow::Borrowed("disabled"), Cow::Borrowed("best-effort")]),
        },
        default: "disabled",
    },
    Definition {
        key: REPLICA_REPLENISHMENT_WAIT_INTERVAL,
        display_name: "Replica Replenishment Wait Interval",
        description: "Seconds a degraded volume waits for a failed replica to come back (and catch up) before a new one is rebuilt elsewhere.",
        category: "general",
        kind: int(0, None),
        default: "600",
    },
    Definition {
        key: CONCURRENT_REPLICA_REBUILD_PER_NODE_LIMIT,
        display_name: "Concurrent Replica Rebuild Per Node Limit",
        description: "Replicas rebuilding at once on one node; 0 stops rebuilding.",
        category: "danger Zone",
        kind: int(0, None),
        default: "5",
    },
    Definition {
        key: ENGINE_REPLICA_TIMEOUT,
        display_name: "Timeout between Engine and Replica",
        description: "Seconds an engine waits for a replica before marking it failed.",
        category: "general",
        kind: int(8, Some(30)),
        default: "8",
    },
    Definition {
        key: AUTO_SALVAGE,
        display_name: "Automatic salvage",
        description: "When every replica of a volume failed, bring back the ones that failed last and serve from them.",
        category: "general",
        kind: SettingKind::Bool,
        default: "true",
    },
    Definition {
        key: ORPHAN_RESOURCE_AUTO_DELETION,
        display_name: "Orphan Auto-Deletion",
        description: "Delete replica directories no volume owns (orphans) automatically.",
        category: "orphan",
        kind: SettingKind::Bool,
        default: "false",
    },
    Definition {
        key: BACKUP_TARGET,
        display_name: "Backup Target",
        description: "Where backups go: nfs://host:/path, s3://bucket@region/path, or empty for none.",
        category: "backup",
        kind: SettingKind::BackupTarget,
        default: "",
    },
    Definition {
        key: BACKUP_TARGET_CREDENTIAL_SECRET,
        display_name: "Backup Target Credential Secret",
        description: "Name of the secret holding the backup target's credentials.",
        category: "backup",
        kind: SettingKind::String { required: false },
        default: "",
    },
    Definition {
        key: BACKUPSTORE_POLL_INTERVAL,
        display_name: "Backupstore Poll Interval",
        description: "Seconds between reads of the backup target: its health, the backup listing, and new backups for standby (disaster-recovery) volumes. 0 stops polling.",
        category: "backup",
        kind: int(0, None),
        default: "300",
    },
    Definition {
        key: BACKUP_COMPRESSION_METHOD,
        display_name: "Backup Compression Method",
        description: "Compression of the blocks of a new backup volume (an existing one keeps its own).",
        category: "backup",
        kind: SettingKind::Choice {
            options: Cow::Borrowed(&[Cow::Borrowed("lz4"), Cow::Borrowed("gzip"), Cow::Borrowed("none")]),
        },
        default: "lz4",
    },
    Definition {
        key: ALLOW_RECURRING_JOB_WHILE_VOLUME_DETACHED,
        display_name: "Allow Recurring Job While Volume Is Detached",
        description: "A recurring snapshot or backup of a detached volume attaches it (without a frontend) for the run and detaches it after. Off: the run is skipped, and recorded so.",
        category: "general",
        kind: SettingKind::Bool,
        default: "false",
    },
    Definition {
        key: RECURRING_JOB_TIME_ZONE,
        display_name: "Recurring Job Time Zone",
        description: "The IANA time zone recurring jobs' cron schedules are read in (Europe/Berlin, America/New_York); UTC when empty.",
        category: "general",
        kind: SettingKind::String { required: false },
        default: "UTC",
    },
];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingError {
    #[error("no setting {key:?}{hint}; `ironhorn setting ls` lists them")]
    Unknown { key: String, hint: String },
    #[error("setting {key}: {value:?} is not valid: {expected}")]
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
}

/// The definition of `key` (or of the key it is an older name of).
pub fn definition(key: &str) -> Result<&'static Definition, SettingError> {
    let key = ALIASES
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| *new);
    DEFINITIONS.iter().find(|d| d.key == key).ok_or_else(|| {
        let close = DEFINITIONS
            .iter()
            .find(|d| d.key.contains(key) || key.contains(d.key));
        SettingError::Unknown {
            key: key.to_string(),
            hint: close.map_or(String::new(), |d| format!(" (did you mean {}?)", d.key)),
        }
    })
}

/// Checks `value` for `key`; returns the key's current name and the value as stored
/// (trimmed; booleans lowercased).
pub fn validate(key: &str, value: &str) -> Result<(&'static str, String), SettingError> {
    let def = definition(key)?;
    let value = value.trim();
    let invalid = |expected: String| SettingError::Invalid {
        key: def.key.to_string(),
        value: value.to_string(),
        expected,
    };
    let stored = match &def.kind {
        SettingKind::Bool => match value.to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => v.to_string(),
            _ => return Err(invalid("expected true or false".into())),
        },
        &SettingKind::Int { minimum, maximum } => {
            let n: i64 = value
                .parse()
                .map_err(|_| invalid("expected a whole number".into()))?;
            let range = match maximum {
                Some(max) => format!("between {minimum} and {max}"),
                None => format!("at least {minimum}"),
            };
            if n < minimum || maximum.is_some_and(|max| n > max) {
                return Err(invalid(format!("expected a number {range}")));
            }
            n.to_string()
        }
        SettingKind::String { required } => {
            if *required && value.is_empty() {
                return Err(invalid("must not be empty".into()));
            }
            if def.key == RECURRING_JOB_TIME_ZONE {
                crate::schedule::Schedule::new("@daily", value)
                    .map_err(|e| invalid(e.to_string()))?;
            }
            value.to_string()
        }
        SettingKind::Choice { options } => {
            if !options.iter().any(|o| o == value) {
                return Err(invalid(format!("expected one of {}", options.join(", "))));
            }
            value.to_string()
        }
        SettingKind::BackupTarget => {
            check_backup_target(value).map_err(invalid)?;
            value.to_string()
        }
    };
    Ok((def.key, stored))
}

fn check_backup_target(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let expected = "expected nfs://host:/path, s3://bucket@region/path or file:///path";
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(expected.into());
    };
    if value.contains(['$', ',']) {
        return Err("must not contain '$' or ','".into());
    }
    let ok = match scheme {
        "nfs" => rest
            .split_once(":/")
            .is_some_and(|(host, _)| !host.is_empty()),
        "s3" => rest
            .split_once('@')
            .is_some_and(|(bucket, region)| !bucket.is_empty() && !region.is_empty()),
        "file" => rest.starts_with('/'),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(expected.into())
    }
}

/// Setting values as stored, read typed; unset keys read as their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub values: BTreeMap<String, String>,
}

impl Settings {
    /// The value of `key`: stored, else the default. `key` must be a known key.
    pub fn get(&self, key: &str) -> &str {
        match self.values.get(key) {
            Some(v) => v,
            None => DEFINITIONS
                .iter()
                .find(|d| d.key == key)
                .map_or("", |d| d.default),
        }
    }

    pub fn bool(&self, key: &str) -> bool {
        self.get(key) == "true"
    }

    pub fn int(&self, key: &str) -> i64 {
        self.get(key).parse().unwrap_or_else(|_| {
            DEFINITIONS
                .iter()
                .find(|d| d.key == key)
                .and_then(|d| d.default.parse().ok())
                .unwrap_or(0)
        })
    }

    /// Validates and stores a value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let (key, value) = validate(key, value)?;
        self.values.insert(key.to_string(), value);
        Ok(())
    }

    /// What the scheduler follows.
    pub fn scheduling(&self) -> SchedulingSettings {
        SchedulingSettings {
            soft_node_anti_affinity: self.bool(REPLICA_SOFT_ANTI_AFFINITY),
            soft_zone_anti_affinity: self.bool(REPLICA_ZONE_SOFT_ANTI_AFFINITY),
            soft_disk_anti_affinity: self.bool(REPLICA_DISK_SOFT_ANTI_AFFINITY),
            over_provisioning_percentage: self.int(STORAGE_OVER_PROVISIONING_PERCENTAGE).max(0)
                as u64,
            minimal_available_percentage: self.int(STORAGE_MINIMAL_AVAILABLE_PERCENTAGE).max(0)
                as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_valid() {
        for def in DEFINITIONS {
            let default =
                if def.kind == (SettingKind::String { required: true }) && def.default.is_empty() {
                    continue;
                } else {
                    def.default
                };
            assert!(validate(def.key, default).is_ok(), "{}", def.key);
        }
    }

    #[test]
    fn defaults_are_longhorns() {
        let s = Settings::default();
        assert_eq!(s.int(DEFAULT_REPLICA_COUNT), 3);
        assert!(!s.bool(REPLICA_SOFT_ANTI_AFFINITY));
        assert!(s.bool(REPLICA_ZONE_SOFT_ANTI_AFFINITY));
        assert_eq!(s.int(STORAGE_OVER_PROVISIONING_PERCENTAGE), 100);
        assert_eq!(s.int(STORAGE_MINIMAL_AVAILABLE_PERCENTAGE), 25);
        assert_eq!(s.int(REPLICA_REPLENISHMENT_WAIT_INTERVAL), 600);
        assert_eq!(s.int(CONCURRENT_REPLICA_REBUILD_PER_NODE_LIMIT), 5);
        assert_eq!(s.int(ENGINE_REPLICA_TIMEOUT), 8);
        assert!(s.bool(AUTO_SALVAGE));
        assert!(!s.bool(ORPHAN_RESOURCE_AUTO_DELETION));
        assert_eq!(s.get(BACKUP_TARGET), "");
        assert_eq!(s.scheduling(), SchedulingSettings::default());
    }

    #[test]
    fn ranges_and_types_are_enforced() {
        let bad = |k: &str, v: &str| matches!(validate(k, v), Err(SettingError::Invalid { .. }));
        assert!(bad(ENGINE_REPLICA_TIMEOUT, "7"));
        assert!(bad(ENGINE_REPLICA_TIMEOUT, "31"));
        assert_eq!(
            validate(ENGINE_REPLICA_TIMEOUT, " 30 ").unwrap(),
            (ENGINE_REPLICA_TIMEOUT, "30".into())
        );
        assert!(bad(DEFAULT_REPLICA_COUNT, "0"));
        assert!(bad(DEFAULT_REPLICA_COUNT, "21"));
        assert!(bad(STORAGE_MINIMAL_AVAILABLE_PERCENTAGE, "101"));
        assert!(bad(STORAGE_OVER_PROVISIONING_PERCENTAGE, "-1"));
        assert!(validate(STORAGE_OVER_PROVISIONING_PERCENTAGE, "500").is_ok());
        assert!(bad(AUTO_SALVAGE, "yes"));
        assert_eq!(
            validate(AUTO_SALVAGE, "TRUE").unwrap().1,
            "true".to_string()
        );
        assert!(bad(DEFAULT_DATA_PATH, " "));
        assert!(bad(DEFAULT_DATA_LOCALITY, "strict-local"));
        assert!(bad(REPLICA_REPLENISHMENT_WAIT_INTERVAL, "ten"));
    }

    #[test]
    fn backup_targets_are_checked() {
        for good in [
            "",
            "nfs://nfs.example:/exports/backups",
            "s3://backups@us-east-1/cluster-a",
            "file:///srv/backups",
        ] {
            assert!(validate(BACKUP_TARGET, good).is_ok(), "{good}");
        }
        for bad in [
            "nfs://:/path",
            "nfs://host/path",
            "s3://bucket",
            "ftp://host/x",
            "/plain/path",
            "s3://b@r/p$x",
        ] {
            assert!(validate(BACKUP_TARGET, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_a_hint_and_old_names_work() {
        let err = validate("replica-soft-anti", "true").unwrap_err();
        assert!(err.to_string().contains("did you mean"), "{err}");
        let (key, _) = validate("orphan-auto-deletion", "true").unwrap();
        assert_eq!(key, ORPHAN_RESOURCE_AUTO_DELETION);
        let mut s = Settings::default();
        s.set("orphan-auto-deletion", "true").unwrap();
        assert!(s.bool(ORPHAN_RESOURCE_AUTO_DELETION));
        s.set(REPLICA_SOFT_ANTI_AFFINITY, "true").unwrap();
        assert!(s.scheduling().soft_node_anti_affinity);
    }
}
