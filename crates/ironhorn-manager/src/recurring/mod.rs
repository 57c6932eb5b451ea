//! The recurring-job runner: wakes when the soonest job is due (or when a job or setting
//! changes), runs a due job once on every volume bound to it, at most `concurrency` volumes
//! at a time, and records every run ([`records`]). What a run does to one volume is in
//! [`tasks`]; when a job is due, and which volumes it binds, are the pure rules of
//! `ironhorn_control::recurring`.
//!
//! A job's `lastScheduled` (the slot last handled) is stored once the run for it ends, so a
//! manager that stops mid-run or while slots pass runs the job once when it is back, and
//! records the slots it missed.

pub mod records;
mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use ironhorn_api::recurring::{
    RecurringJob, RecurringJobSpec, RecurringRun, RunResult, FAILED_CONDITION,
};
use ironhorn_api::resource::{set_condition, Condition, Volume, VolumeState};
use ironhorn_control::recurring::{due, jobs_for_volume, Due};
use ironhorn_control::schedule::Schedule;
use ironhorn_control::settings::{self, Settings};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::state::{self, RECURRING_JOBS, VOLUMES};
use crate::Manager;

/// The longest the runner sleeps without looking (a changed time zone setting is seen
/// within it).
const IDLE_LOOK: Duration = Duration::from_secs(60);

/// What the runner knows between rounds (lost on restart; the store keeps the rest).
#[derive(Debug, Default)]
pub struct Recurring {
    /// Pokes the runner (a job was created, changed or asked to run).
    pub wake: Notify,
    /// Jobs with a run under way, so a slot is not started twice.
    active: Mutex<BTreeSet<String>>,
    /// Volume → the job running on it now.
    busy: Mutex<BTreeMap<String, String>>,
    /// Job → volumes running it now, and the most at once since the manager started.
    running: Mutex<BTreeMap<String, (u32, u32)>>,
    /// Runs by job and result since the manager started (the counter metric).
    counts: Mutex<BTreeMap<(String, RunResult), u64>>,
}

use crate::lock;

impl Recurring {
    /// Whether a run of `job` is under way.
    pub fn is_active(&self, job: &str) -> bool {
        lock(&self.active).contains(job)
    }

    /// Marks a run of `job` under way; false when one already is.
    pub fn activate(&self, job: &str) -> bool {
        lock(&self.active).insert(job.to_string())
    }

    fn deactivate(&self, job: &str) {
        lock(&self.active).remove(job);
    }

    /// Volumes running `job` now, and the most that ever did at once.
    pub fn running(&self, job: &str) -> (u32, u32) {
        lock(&self.running).get(job).copied().unwrap_or_default()
    }

    /// Claims `volume` for `job`; the job already running on it when busy.
    fn claim(&self, volume: &str, job: &str) -> Result<(), String> {
        let mut busy = lock(&self.busy);
        if let Some(other) = busy.get(volume) {
            return Err(other.clone());
        }
        busy.insert(volume.to_string(), job.to_string());
        let mut running = lock(&self.running);
        let entry = running.entry(job.to_string()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
        Ok(())
    }

    fn release(&self, volume: &str, job: &str) {
        lock(&self.busy).remove(volume);
        if let Some(entry) = lock(&self.running).get_mut(job) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }

    pub(crate) fn count(&self, job: &str, result: RunResult) {
        *lock(&self.counts)
            .entry((job.to_string(), result))
            .or_default() += 1;
    }

    /// Runs counted since the manager started, by job and result.
    pub fn counts(&self) -> BTreeMap<(String, RunResult), u64> {
        lock(&self.counts).clone()
    }
}

pub(crate) use crate::clock::{now_secs, rfc3339};

/// The time zone schedules are read in.
pub fn zone(settings: &Settings) -> String {
    settings.get(settings::RECURRING_JOB_TIME_ZONE).to_string()
}

/// Runs jobs as they fall due until `shutdown`.
pub async fn run(m: Arc<Manager>, shutdown: CancellationToken) {
    loop {
        let next = match round(&m).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "recurring jobs: reading the jobs failed; retrying");
                None
            }
        };
        let wait = next.map_or(IDLE_LOOK, |at| {
            Duration::from_secs(u64::try_from(at - now_secs()).unwrap_or(0)).min(IDLE_LOOK)
        });
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = m.recurring.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Starts every job that is due; returns when the next one is.
async fn round(m: &Arc<Manager>) -> Result<Option<i64>, ApiError> {
    let settings = state::settings(m.store.as_ref()).await?;
    let zone = zone(&settings);
    let jobs = state::list::<RecurringJob>(m.store.as_ref(), RECURRING_JOBS).await?;
    let now = now_secs();
    let mut soonest: Option<i64> = None;
    for (job, _) in jobs {
        if m.recurring.is_active(&job.spec.name) {
            continue;
        }
        let schedule = match Schedule::new(&job.spec.cron, &zone) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(job = %job.spec.name, error = %e, "recurring job cannot be scheduled");
                continue;
            }
        };
        match due(&schedule, job.status.last_scheduled, now) {
            Due::Waiting { next } => {
                soonest = match (soonest, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Due::Run { slot, missed } => {
                if m.recurring.activate(&job.spec.name) {
                    tokio::spawn(run_job(m.clone(), job.spec, Some(slot), missed));
                }
            }
        }
    }
    Ok(soonest)
}

/// Runs `job` on its volumes for `slot` (None: asked by run-now), then records the slot as
/// handled and the job's condition. The caller activated the job.
pub(crate) async fn run_job(
    m: Arc<Manager>,
    job: RecurringJobSpec,
    slot: Option<i64>,
    missed: u32,
) {
    let runs = match run_on_volumes(&m, &job, slot, missed).await {
        Ok(runs) => Ok(runs),
        Err(e) => {
            tracing::warn!(job = %job.name, error = %e, "recurring job could not run");
            Err(e)
        }
    };
    let condition = job_condition(&job.name, runs.as_deref());
    let stored = state::update::<RecurringJob, ApiError, _>(
        m.store.as_ref(),
        &format!("{RECURRING_JOBS}{}", job.name),
        || ApiError::not_found("deleted"),
        |j| {
            if let Some(slot) = slot {
                j.status.last_scheduled = j.status.last_scheduled.max(slot);
            }
            set_condition(
                &mut j.status.conditions,
                condition.clone(),
                &crate::clock::now_rfc3339(),
            );
            Ok(())
        },
    )
    .await;
    if let Err(e) = stored {
        tracing::debug!(job = %job.name, error = %e, "recurring job status not written");
    }
    m.recurring.deactivate(&job.name);
    m.recurring.wake.notify_one();
}

/// The job's `RecurringJobFailed` condition after a run over its volumes.
fn job_condition(job: &str, runs: Result<&[RecurringRun], &ApiError>) -> Condition {
    match runs {
        Err(e) => Condition::new(
            FAILED_CONDITION,
            true,
            "Failed",
            &format!("job {job} could not run: {e}"),
        ),
        Ok(runs) => {
            let failed: Vec<&RecurringRun> =
                runs.iter().filter(|r| r.result.is_failure()).collect();
            if failed.is_empty() {
                return Condition::new(FAILED_CONDITION, false, "", "");
            }
            let shown: Vec<String> = failed
                .iter()
                .take(5)
                .map(|r| format!("{}: {}", r.volume, r.message))
                .collect();
            Condition::new(
                FAILED_CONDITION,
                true,
                if failed.iter().all(|r| r.result == RunResult::Missed) {
                    "Missed"
                } else {
                    "Failed"
                },
                &format!(
                    "{} of {} volumes: {}{}",
                    failed.len(),
                    runs.len(),
                    shown.join("; "),
                    if failed.len() > shown.len() {
                        "; …"
                    } else {
                        ""
                    }
                ),
            )
        }
    }
}

/// The volumes bound to `job` now, by name.
pub fn bound_volumes<'a>(job: &RecurringJobSpec, volumes: &'a [Volume]) -> Vec<&'a Volume> {
    volumes
        .iter()
        .filter(|v| v.status.state != VolumeState::Deleting)
        .filter(|v| !jobs_for_volume(&v.spec.labels, std::slice::from_ref(job)).is_empty())
        .collect()
}

async fn run_on_volumes(
    m: &Arc<Manager>,
    job: &RecurringJobSpec,
    slot: Option<i64>,
    missed: u32,
) -> Result<Vec<RecurringRun>, ApiError> {
    let volumes: Vec<Volume> = state::list_cached(m.store.as_ref(), VOLUMES, &m.parsed_volumes)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    let bound: Vec<Volume> = bound_volumes(job, &volumes).into_iter().cloned().collect();
    let scheduled = slot.map(rfc3339).unwrap_or_default();
    tracing::info!(job = %job.name, task = job.task.name(), volumes = bound.len(), slot = %scheduled, missed, "recurring job runs");
    let mut runs = Vec::new();
    if missed > 0 {
        // The slots that passed while nothing ran: said, once per volume, before the run
        // that stands for them.
        for v in &bound {
            let at = records::now_rfc3339();
            let run = RecurringRun {
                job: job.name.clone(),
                volume: v.name.clone(),
                task: job.task,
                scheduled: scheduled.clone(),
                started: at.clone(),
                finished: at,
                result: RunResult::Missed,
                message: format!(
                    "{missed} scheduled run{} before {scheduled} did not happen (the manager was not running, or the job's previous run still was); one run now stands for them",
                    if missed == 1 { "" } else { "s" }
                ),
                created: String::new(),
            };
            records::record(m, &run).await;
            runs.push(run);
        }
    }
    let concurrency = usize::try_from(job.concurrency.max(1)).unwrap_or(1);
    let done: Vec<RecurringRun> = futures::stream::iter(bound)
        .map(|v| run_on_volume(m, job, v, scheduled.clone()))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    runs.extend(done);
    Ok(runs)
}

async fn run_on_volume(
    m: &Arc<Manager>,
    job: &RecurringJobSpec,
    volume: Volume,
    scheduled: String,
) -> RecurringRun {
    let started = records::now_rfc3339();
    let outcome = match m.recurring.claim(&volume.name, &job.name) {
        Err(other) => tasks::Outcome::missed(format!(
            "volume {} was busy with recurring job {other}",
            volume.name
        )),
        Ok(()) => {
            let outcome = tasks::run(m, job, &volume).await;
            m.recurring.release(&volume.name, &job.name);
            outcome
        }
    };
    let run = RecurringRun {
        job: job.name.clone(),
        volume: volume.name.clone(),
        task: job.task,
        scheduled,
        started,
        finished: records::now_rfc3339(),
        result: outcome.result,
        message: outcome.message,
        created: outcome.created,
    };
    match run.result {
        RunResult::Failed | RunResult::Missed => {
            tracing::warn!(job = %run.job, volume = %run.volume, result = run.result.name(), message = %run.message, "recurring job run")
        }
        _ => {
            tracing::info!(job = %run.job, volume = %run.volume, result = run.result.name(), message = %run.message, "recurring job run")
        }
    }
    records::record(m, &run).await;
    run
}

#[cfg(test)]
mod tests;
