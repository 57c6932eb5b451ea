//! Recurring jobs' pure rules: which jobs a volume runs (by its labels, Longhorn's binding),
//! what a job definition may hold (each refusal names the field), when a job is due (and
//! how many slots passed unrun), and which of a job's snapshots or backups its retention
//! removes.

use std::collections::BTreeMap;

use ironhorn_api::recurring::{
    RecurringJobSpec, RecurringTask, DEFAULT_GROUP, GROUP_LABEL_PREFIX, JOB_LABEL_PREFIX,
};

use crate::schedule::Schedule;
use crate::validate::{check_name, MAX_NAME};

/// The most a job keeps (Longhorn's limit).
pub const MAX_RETAIN: u32 = 100;
/// The most volumes a job runs on at once.
pub const MAX_CONCURRENCY: u32 = 1000;

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
pub fn validate(job: &RecurringJobSpec, zone: &str) -> Result<(), JobError> {
    check_name("recurring job", &job.name, MAX_NAME).map_err(|e| refuse("name", e.to_string()))?;
    Schedule::new(&job.cron, zone).map_err(|e| refuse("cron", e.to_string()))?;
    // snapshot-delete may keep none; the tasks that make something keep at least one.
    let least = u32::from(job.task != RecurringTask::SnapshotDelete);
    if job.task.retains() && !(least..=MAX_RETAIN).contains(&job.retain) {
        return Err(refuse(
            "retain",
            format!(
                "{} is not between {least} and {MAX_RETAIN}: a {} job keeps that many {}",
                job.retain,
                job.task.name(),
                if job.task == RecurringTask::SnapshotDelete {
                    "snapshots of each volume"
                } else {
                    "of what it makes"
                }
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
    for (key, value) in &job.labels {
        if key.is_empty() || key.len() > 253 || key.contains(char::is_whitespace) {
            return Err(refuse(
                "labels",
                format!("{key:?} is not a label key (1 to 253 characters, no spaces)"),
            ));
        }
        if value.len() > 63 {
            return Err(refuse(
                "labels",
                format!("the value of {key} is longer than 63 characters"),
            ));
        }
    }
    Ok(())
}

/// What the clock says about a job whose last handled slot is `last_scheduled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing due before `next` (None: the schedule never fires again).
    Waiting { next: Option<i64> },
    /// Run now for `slot`, the latest slot not after now; `missed` earlier slots passed
    /// unrun (the manager was down): they are recorded, not run.
    Run { slot: i64, missed: u32 },
}

/// Whether a job is due at `now`: a job runs once for the latest slot that passed, however
/// many passed while nothing ran (Longhorn's cron jobs run once too, but say nothing of the
/// others).
pub fn due(schedule: &Schedule, last_scheduled: i64, now: i64) -> Due {
    let Some(first) = schedule.next_after(last_scheduled) else {
        return Due::Waiting { next: None };
    };
    if first > now {
        return Due::Waiting { next: Some(first) };
    }
    let mut slot = first;
    let mut missed = 0u32;
    while let Some(next) = schedule.next_after(slot) {
        if next > now {
            break;
        }
        slot = next;
        missed = missed.saturating_add(1);
    }
    Due::Run { slot, missed }
}

/// The jobs a volume with `labels` runs: those it names, those of the groups it names, and
/// the `default` group's when it names neither.
pub fn jobs_for_volume<'a>(
    labels: &BTreeMap<String, String>,
    jobs: &'a [RecurringJobSpec],
) -> Vec<&'a RecurringJobSpec> {
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
/// made, as (name, order key) pairs (a creation time, with a tie-breaker where one is known),
/// the oldest beyond the newest `retain`. `just_made`, the one this run made, is kept
/// whatever its key says (times have whole seconds: two made in one second tie). Called only
/// after a new one succeeded, so a failing job never removes what it still has.
pub fn retention_removals(
    made: &[(String, String)],
    retain: u32,
    just_made: Option<&str>,
) -> Vec<String> {
    let mut sorted: Vec<&(String, String)> = made.iter().collect();
    // Newest first; names break ties so the choice is stable.
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let kept_first = just_made.filter(|n| made.iter().any(|(m, _)| m == n));
    let mut room = retain as usize;
    if kept_first.is_some() {
        room = room.saturating_sub(1);
    }
    sorted
        .into_iter()
        .filter(|(name, _)| Some(name.as_str()) != kept_first)
        .skip(room)
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn job(name: &str, task: RecurringTask, groups: &[&str]) -> RecurringJobSpec {
        RecurringJobSpec {
            name: name.into(),
            task,
            cron: "0 0/3 * * ?".into(),
            retain: 5,
            concurrency: 10,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            labels: BTreeMap::new(),
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
        let field = |j: RecurringJobSpec| validate(&j, "UTC").unwrap_err().field;
        assert_eq!(
            field(RecurringJobSpec {
                name: "Snap!".into(),
                ..ok.clone()
            }),
            "name"
        );
        assert_eq!(
            field(RecurringJobSpec {
                cron: "0 0/3 * *".into(),
                ..ok.clone()
            }),
            "cron"
        );
        assert_eq!(
            field(RecurringJobSpec {
                retain: 0,
                ..ok.clone()
            }),
            "retain"
        );
        assert_eq!(
            field(RecurringJobSpec {
                retain: 101,
                ..ok.clone()
            }),
            "retain"
        );
        assert_eq!(
            field(RecurringJobSpec {
                concurrency: 0,
                ..ok.clone()
            }),
            "concurrency"
        );
        assert_eq!(
            field(RecurringJobSpec {
                groups: vec!["Bad Group".into()],
                ..ok.clone()
            }),
            "groups"
        );
        // A trim keeps nothing: its retain is not checked.
        validate(
            &RecurringJobSpec {
                task: RecurringTask::FilesystemTrim,
                retain: 0,
                ..ok.clone()
            },
            "UTC",
        )
        .unwrap();
        assert_eq!(validate(&ok, "Nowhere/Zone").unwrap_err().field, "cron");
        // snapshot-delete may keep no snapshot at all; a snapshot job must keep one.
        let delete = RecurringJobSpec {
            task: RecurringTask::SnapshotDelete,
            retain: 0,
            ..ok.clone()
        };
        validate(&delete, "UTC").unwrap();
        assert_eq!(
            field(RecurringJobSpec {
                labels: BTreeMap::from([("bad key".into(), "v".into())]),
                ..ok.clone()
            }),
            "labels"
        );
    }

    fn at(zone: &str, civil: &str) -> i64 {
        let dt: jiff::civil::DateTime = civil.parse().unwrap();
        dt.in_tz(zone).unwrap().timestamp().as_second()
    }

    /// Runs a job over a simulated clock ticking each minute from `start` to `end`, as the
    /// runner does: the slots it ran.
    fn simulate(schedule: &Schedule, start: i64, end: i64) -> Vec<i64> {
        let mut last = start;
        let mut ran = Vec::new();
        let mut now = start;
        while now <= end {
            if let Due::Run { slot, missed } = due(schedule, last, now) {
                assert_eq!(missed, 0, "a clock that ticks each minute misses nothing");
                ran.push(slot);
                last = slot;
            }
            now += 60;
        }
        ran
    }

    #[test]
    fn the_seeds_schedules_over_a_month() {
        // December 2026 in UTC: a snapshot every 3 hours, a daily backup, Saturdays at 03:00.
        let start = at("UTC", "2026-12-01T00:00:00") - 1;
        let end = at("UTC", "2026-12-31T23:59:00");
        let every_3h = simulate(&Schedule::new("0 0/3 * * ?", "UTC").unwrap(), start, end);
        assert_eq!(every_3h.len(), 31 * 8);
        assert!(every_3h.windows(2).all(|w| w[1] - w[0] == 3 * 3600));
        let daily = simulate(&Schedule::new("0 2 * * *", "UTC").unwrap(), start, end);
        assert_eq!(daily.len(), 31);
        assert_eq!(daily[0], at("UTC", "2026-12-01T02:00:00"));
        let weekly = simulate(&Schedule::new("0 3 ? * SAT", "UTC").unwrap(), start, end);
        let saturdays: Vec<i64> = [5, 12, 19, 26]
            .iter()
            .map(|d| at("UTC", &format!("2026-12-{d:02}T03:00:00")))
            .collect();
        assert_eq!(weekly, saturdays);
    }

    #[test]
    fn the_seeds_schedules_across_a_daylight_saving_change() {
        // March 2027 in Berlin: clocks go from 02:00 to 03:00 on Sunday the 28th.
        let zone = "Europe/Berlin";
        let start = at(zone, "2027-03-01T00:00:00") - 1;
        let end = at(zone, "2027-03-31T23:59:00");
        let every_3h = simulate(&Schedule::new("0 0/3 * * ?", zone).unwrap(), start, end);
        // 8 a day, every day; on the 28th 00:00, 03:00 (the first hour after the gap), ...
        assert_eq!(every_3h.len(), 31 * 8);
        let daily = simulate(&Schedule::new("30 2 * * *", zone).unwrap(), start, end);
        // 02:30 does not exist on the 28th: that day's run is at 03:30, not skipped.
        assert_eq!(daily.len(), 31);
        assert_eq!(daily[27], at(zone, "2027-03-28T03:00:00") + 30 * 60);
        let weekly = simulate(&Schedule::new("0 3 ? * SAT", zone).unwrap(), start, end);
        assert_eq!(weekly.len(), 4);
        // Saturday 03:00 in Berlin is 02:00 UTC in winter.
        assert_eq!(weekly[0], at("UTC", "2027-03-06T02:00:00"));
    }

    #[test]
    fn a_manager_down_for_a_day_runs_once_and_counts_what_it_missed() {
        let schedule = Schedule::new("0 0/3 * * ?", "UTC").unwrap();
        let last = at("UTC", "2026-12-01T03:00:00");
        let back = at("UTC", "2026-12-02T04:10:00");
        // Slots 06:00 .. 03:00 next day: 8 passed; the latest runs, 7 are missed.
        assert_eq!(
            due(&schedule, last, back),
            Due::Run {
                slot: at("UTC", "2026-12-02T03:00:00"),
                missed: 7
            }
        );
        assert_eq!(
            due(&schedule, last, last + 60),
            Due::Waiting {
                next: Some(at("UTC", "2026-12-01T06:00:00"))
            }
        );
    }

    proptest! {
        #[test]
        fn retention_keeps_exactly_the_newest(count in 0usize..30, retain in 1u32..10) {
            let made: Vec<(String, String)> = (0..count)
                .map(|i| (format!("s{i:02}"), format!("2026-12-{:02}T00:00:00Z", i + 1)))
                .collect();
            let removed = retention_removals(&made, retain, None);
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

        #[test]
        fn what_a_run_just_made_is_kept_even_when_its_time_ties(count in 1usize..20, retain in 1u32..6, pick in 0usize..20) {
            // Every one made in the same second: only the names tell them apart.
            let made: Vec<(String, String)> = (0..count)
                .map(|i| (format!("s{i:02}"), "2026-12-03T10:00:00Z".to_string()))
                .collect();
            let just = made[pick % count].0.clone();
            let removed = retention_removals(&made, retain, Some(&just));
            prop_assert!(!removed.contains(&just));
            prop_assert_eq!(removed.len(), count.saturating_sub(retain as usize));
        }
    }
}
