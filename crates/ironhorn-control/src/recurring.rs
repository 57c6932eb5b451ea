//! Recurring jobs' pure rules: which jobs a volume runs (by its labels, Longhorn's binding),
//! what a job definition may hold (each refusal names the field), and which of a job's
//! snapshots or backups its retention removes.

use std::collections::BTreeMap;

use ironhorn_api::recurring::{RecurringTask, DEFAULT_GROUP, GROUP_LABEL_PREFIX, JOB_LABEL_PREFIX};

use crate::schedule::Schedule;
use crate::validate::{check_name, MAX_NAME};

/// The most a job keeps (Longhorn's limit).
pub const MAX_RETAIN: u32 = 100;
/// The most volumes a job runs on at once.
pub const MAX_CONCURRENCY: u32 = 1000;

/// A job as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDefinition {
    pub name: String,
    pub task: RecurringTask,
    pub cron: String,
    pub retain: u32,
    pub concurrency: u32,
    pub groups: Vec<String>,
}

/// A refused job definition: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recurring job {field}: {message}")]
pub struct JobError {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> JobError {
    JobError {
        field,
        message: message.into(),
    }
}

/// Checks a job definition (its cron read in `zone`).
pub fn validate(job: &JobDefinition, zone: &str) -> Result<(), JobError> {
    check_name("recurring job", &job.name, MAX_NAME).map_err(|e| refuse("name", e.to_string()))?;
    Schedule::new(&job.cron, zone).map_err(|e| refuse("cron", e.to_string()))?;
    if job.task.retains() && !(1..=MAX_RETAIN).contains(&job.retain) {
        return Err(refuse(
            "retain",
            format!(
                "{} is not between 1 and {MAX_RETAIN}: a {} job keeps that many of what it makes",
                job.retain,
                job.task.name()
            ),
        ));
    }
    if !(1..=MAX_CONCURRENCY).contains(&job.concurrency) {
        return Err(refuse(
            "concurrency",
            format!("{} is not between 1 and {MAX_CONCURRENCY}", job.concurrency),
        ));
    }
    for g in &job.groups {
        check_name("group", g, MAX_NAME).map_err(|e| refuse("groups", e.to_string()))?;
    }
    Ok(())
}

/// The jobs a volume with `labels` runs: those it names, those of the groups it names, and
/// the `default` group's when it names neither.
pub fn jobs_for_volume<'a>(
    labels: &BTreeMap<String, String>,
    jobs: &'a [JobDefinition],
) -> Vec<&'a JobDefinition> {
    let enabled = |prefix: &str| -> Vec<&str> {
        labels
            .iter()
            .filter(|(_, v)| v.as_str() == "enabled")
            .filter_map(|(k, _)| k.strip_prefix(prefix))
            .collect()
    };
    let (names, mut groups) = (enabled(JOB_LABEL_PREFIX), enabled(GROUP_LABEL_PREFIX));
    if names.is_empty() && groups.is_empty() {
        groups.push(DEFAULT_GROUP);
    }
    jobs.iter()
        .filter(|j| {
            names.contains(&j.name.as_str())
                || j.groups.iter().any(|g| groups.contains(&g.as_str()))
        })
        .collect()
}

/// Which of a job's snapshots or backups to remove so `retain` remain: given what the job
/// made, as (name, creation time) pairs, the oldest beyond the newest `retain`. Called only
/// after a new one succeeded, so a failing job never removes what it still has.
pub fn retention_removals(made: &[(String, String)], retain: u32) -> Vec<String> {
    let mut sorted: Vec<&(String, String)> = made.iter().collect();
    // Newest first; names break ties so the choice is stable.
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    sorted
        .into_iter()
        .skip(retain as usize)
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn job(name: &str, task: RecurringTask, groups: &[&str]) -> JobDefinition {
        JobDefinition {
            name: name.into(),
            task,
            cron: "0 0/3 * * ?".into(),
            retain: 5,
            concurrency: 10,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_seeds_jobs_bind_by_name_group_or_default() {
        let jobs = vec![
            job("snap-3h", RecurringTask::Snapshot, &["default"]),
            job("daily", RecurringTask::Backup, &["nightly"]),
            job("weekly", RecurringTask::Backup, &[]),
        ];
        let names = |l: &BTreeMap<String, String>| -> Vec<String> {
            jobs_for_volume(l, &jobs)
                .into_iter()
                .map(|j| j.name.clone())
                .collect()
        };
        assert_eq!(names(&labels(&[])), vec!["snap-3h"]);
        assert_eq!(
            names(&labels(&[("recurring-job.longhorn.io/weekly", "enabled")])),
            vec!["weekly"]
        );
        assert_eq!(
            names(&labels(&[
                ("recurring-job-group.longhorn.io/nightly", "enabled"),
                ("recurring-job.longhorn.io/weekly", "enabled")
            ])),
            vec!["daily", "weekly"]
        );
        assert_eq!(
            names(&labels(&[("recurring-job.longhorn.io/weekly", "disabled")])),
            vec!["snap-3h"]
        );
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let ok = job("snap-3h", RecurringTask::Snapshot, &["default"]);
        validate(&ok, "UTC").unwrap();
        let field = |j: JobDefinition| validate(&j, "UTC").unwrap_err().field;
        assert_eq!(
            field(JobDefinition {
                name: "Snap!".into(),
                ..ok.clone()
            }),
            "name"
        );
        assert_eq!(
            field(JobDefinition {
                cron: "0 0/3 * *".into(),
                ..ok.clone()
            }),
            "cron"
        );
        assert_eq!(
            field(JobDefinition {
                retain: 0,
                ..ok.clone()
            }),
            "retain"
        );
        assert_eq!(
            field(JobDefinition {
                retain: 101,
                ..ok.clone()
            }),
            "retain"
        );
        assert_eq!(
            field(JobDefinition {
                concurrency: 0,
                ..ok.clone()
            }),
            "concurrency"
        );
        assert_eq!(
            field(JobDefinition {
                groups: vec!["Bad Group".into()],
                ..ok.clone()
            }),
            "groups"
        );
        // A trim keeps nothing: its retain is not checked.
        validate(
            &JobDefinition {
                task: RecurringTask::FilesystemTrim,
                retain: 0,
                ..ok.clone()
            },
            "UTC",
        )
        .unwrap();
        assert_eq!(validate(&ok, "Nowhere/Zone").unwrap_err().field, "cron");
    }

    proptest! {
        #[test]
        fn retention_keeps_exactly_the_newest(count in 0usize..30, retain in 1u32..10) {
            let made: Vec<(String, String)> = (0..count)
                .map(|i| (format!("s{i:02}"), format!("2026-12-{:02}T00:00:00Z", i + 1)))
                .collect();
            let removed = retention_removals(&made, retain);
            prop_assert_eq!(removed.len(), count.saturating_sub(retain as usize));
            let kept: Vec<&String> = made.iter().map(|(n, _)| n).filter(|n| !removed.contains(n)).collect();
            prop_assert_eq!(kept.len(), count.min(retain as usize));
            // Everything kept is newer than everything removed.
            for k in &kept {
                for r in &removed {
                    prop_assert!(*k > r);
                }
            }
        }
    }
}
