//! Recurring jobs' wire types with Longhorn's names: the tasks a job runs and the labels that
//! bind volumes to jobs and groups.

use serde::{Deserialize, Serialize};

/// What a recurring job does to each volume it applies to (Longhorn's `task`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RecurringTask {
    /// A snapshot, skipped when nothing was written since the job's last one.
    Snapshot,
    /// A snapshot every run.
    SnapshotForceCreate,
    /// Remove system snapshots (and purge).
    SnapshotCleanup,
    /// Remove the job's snapshots beyond `retain`.
    SnapshotDelete,
    /// A backup, skipped when nothing was written since the job's last one.
    Backup,
    /// A backup every run.
    BackupForceCreate,
    /// fstrim the volume's mounted filesystem.
    FilesystemTrim,
}

impl RecurringTask {
    pub const ALL: [RecurringTask; 7] = [
        RecurringTask::Snapshot,
        RecurringTask::SnapshotForceCreate,
        RecurringTask::SnapshotCleanup,
        RecurringTask::SnapshotDelete,
        RecurringTask::Backup,
        RecurringTask::BackupForceCreate,
        RecurringTask::FilesystemTrim,
    ];

    /// Longhorn's name for it.
    pub fn name(self) -> &'static str {
        match self {
            RecurringTask::Snapshot => "snapshot",
            RecurringTask::SnapshotForceCreate => "snapshot-force-create",
            RecurringTask::SnapshotCleanup => "snapshot-cleanup",
            RecurringTask::SnapshotDelete => "snapshot-delete",
            RecurringTask::Backup => "backup",
            RecurringTask::BackupForceCreate => "backup-force-create",
            RecurringTask::FilesystemTrim => "filesystem-trim",
        }
    }

    /// Reads Longhorn's name; the error lists the tasks there are.
    pub fn parse(name: &str) -> Result<RecurringTask, String> {
        RecurringTask::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                format!(
                    "task {name:?} is unknown: use one of {}",
                    RecurringTask::ALL.map(RecurringTask::name).join(", ")
                )
            })
    }

    /// Whether it keeps `retain` of what it makes.
    pub fn retains(self) -> bool {
        !matches!(
            self,
            RecurringTask::SnapshotCleanup | RecurringTask::FilesystemTrim
        )
    }
}

/// Label on a volume running job `NAME` (value `enabled`), as Longhorn names it.
pub const JOB_LABEL_PREFIX: &str = "recurring-job.longhorn.io/";
/// Label on a volume in job group `NAME` (value `enabled`).
pub const GROUP_LABEL_PREFIX: &str = "recurring-job-group.longhorn.io/";
/// The group a volume belongs to when it names no job and no group.
pub const DEFAULT_GROUP: &str = "default";
/// Label on a snapshot or backup naming the job that made it (for retention).
pub const CREATED_BY_LABEL: &str = "recurring-job.longhorn.io";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_are_longhorns_and_read_back() {
        for t in RecurringTask::ALL {
            assert_eq!(RecurringTask::parse(t.name()), Ok(t));
            assert_eq!(
                serde_json::to_value(t).ok(),
                Some(serde_json::Value::String(t.name().into()))
            );
        }
        let e = RecurringTask::parse("snap").unwrap_err();
        assert!(e.contains("snapshot-force-create"), "{e}");
    }
}
