//! Recurring jobs' wire types with Longhorn's names: the job resource, the tasks a job runs,
//! the labels that bind volumes to jobs and groups, and the record of each run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resource::Condition;

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
/// Label on a snapshot or backup naming the job that made it (for retention): Longhorn's
/// `RecurringJob`, so backups Longhorn's jobs made count towards the same job's retention.
pub const CREATED_BY_LABEL: &str = "RecurringJob";
/// The condition a volume and a job carry while a run failed or was missed.
pub const FAILED_CONDITION: &str = "RecurringJobFailed";

fn one() -> u32 {
    1
}

/// What an operator says a job is (Longhorn's RecurringJob spec): the body of create and
/// update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecurringJobSpec {
    #[schema(pattern = "^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")]
    pub name: String,
    pub task: RecurringTask,
    /// Five cron fields (minute hour day-of-month month day-of-week), `?` allowed in a day
    /// field, or a macro such as `@daily`; read in the `recurring-job-time-zone` setting.
    pub cron: String,
    /// How many of the snapshots or backups this job made are kept.
    #[serde(default)]
    pub retain: u32,
    /// How many volumes run the job at once.
    #[serde(default = "one")]
    pub concurrency: u32,
    /// Groups the job belongs to; volumes in a group run its jobs.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Labels put on every snapshot and backup the job makes.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecurringJob {
    #[serde(flatten)]
    pub spec: RecurringJobSpec,
    #[serde(default)]
    pub status: RecurringJobStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecurringJobStatus {
    /// The schedule slot last handled (run, or found missed), seconds since the Unix epoch:
    /// what lets a restarted manager see what it missed.
    #[serde(default)]
    pub last_scheduled: i64,
    /// The next run times (RFC 3339, in the time zone setting), soonest first.
    #[serde(default)]
    pub next_runs: Vec<String>,
    /// Volumes the job applies to now.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Volumes running it now.
    #[serde(default)]
    pub running: u32,
    /// A run of the job (scheduled or asked) is under way.
    #[serde(default)]
    pub active: bool,
    /// `RecurringJobFailed`: true while one of its volumes' last run failed or was missed.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// How a run of a job on one volume ended.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Running,
    Succeeded,
    /// Nothing to do (no new data since the job's last one; a detached volume while the
    /// setting forbids attaching it): the message says why.
    Skipped,
    Failed,
    /// The slot passed without a run (the manager was down; the volume was busy).
    Missed,
}

impl RunResult {
    pub const ALL: [RunResult; 5] = [
        RunResult::Running,
        RunResult::Succeeded,
        RunResult::Skipped,
        RunResult::Failed,
        RunResult::Missed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RunResult::Running => "running",
            RunResult::Succeeded => "succeeded",
            RunResult::Skipped => "skipped",
            RunResult::Failed => "failed",
            RunResult::Missed => "missed",
        }
    }

    /// A result an operator must hear about.
    pub fn is_failure(self) -> bool {
        matches!(self, RunResult::Failed | RunResult::Missed)
    }
}

/// One run of a job on one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecurringRun {
    pub job: String,
    pub volume: String,
    pub task: RecurringTask,
    /// The schedule slot it ran for (RFC 3339); empty for a run asked by run-now.
    #[serde(default)]
    pub scheduled: String,
    pub started: String,
    #[serde(default)]
    pub finished: String,
    pub result: RunResult,
    #[serde(default)]
    pub message: String,
    /// The snapshot or backup it made.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created: String,
}

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
