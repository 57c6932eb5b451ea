//! The record of every recurring-job run: the last runs of each job on each volume (stored
//! under `recurringruns/<job>/<volume>`), the last run of each job in the volume's status
//! with the `RecurringJobFailed` condition, and the run counter the metrics show.

use ironhorn_api::recurring::{RecurringRun, FAILED_CONDITION};
use ironhorn_api::resource::{set_condition, Condition, Volume, VolumeStatus};
use ironhorn_store::Expect;

use crate::error::ApiError;
use crate::state::{self, RECURRING_RUNS, VOLUMES};
use crate::Manager;

/// Runs kept per job and volume.
pub const HISTORY: usize = 20;

/// Run times carry milliseconds: runs a second apart still list in order.
pub(crate) use crate::clock::now_rfc3339_millis as now_rfc3339;

fn key(job: &str, volume: &str) -> String {
    format!("{RECURRING_RUNS}{job}/{volume}")
}

/// Records `run` everywhere it shows; a store failure is logged (the run happened).
pub async fn record(m: &Manager, run: &RecurringRun) {
    m.recurring.count(&run.job, run.result);
    let history = state::update::<Vec<RecurringRun>, ApiError, _>(
        m.store.as_ref(),
        &key(&run.job, &run.volume),
        || ApiError::not_found("no history yet"),
        |runs| {
            runs.push(run.clone());
            let excess = runs.len().saturating_sub(HISTORY);
            runs.drain(..excess);
            Ok(())
        },
    )
    .await;
    let history = match history {
        Err(e) if e.code == ironhorn_api::ErrorCode::NotFound => state::put(
            m.store.as_ref(),
            &key(&run.job, &run.volume),
            &vec![run.clone()],
            Expect::Absent,
        )
        .await
        .map(|_| ())
        .map_err(ApiError::from),
        other => other.map(|_| ()),
    };
    if let Err(e) = history {
        tracing::warn!(job = %run.job, volume = %run.volume, error = %e, "recurring run not recorded");
    }
    let status = state::update::<Volume, ApiError, _>(
        m.store.as_ref(),
        &format!("{VOLUMES}{}", run.volume),
        || ApiError::not_found("the volume is gone"),
        |v| {
            v.status.recurring_jobs.insert(run.job.clone(), run.clone());
            let condition = volume_condition(&v.status);
            set_condition(
                &mut v.status.conditions,
                condition,
                &crate::clock::now_rfc3339(),
            );
            Ok(())
        },
    )
    .await;
    if let Err(e) = status {
        tracing::debug!(volume = %run.volume, error = %e, "volume's recurring-job status not written");
    }
}

/// `RecurringJobFailed` on a volume: true while the last run of one of its jobs failed or
/// was missed, naming them.
pub fn volume_condition(status: &VolumeStatus) -> Condition {
    let failing: Vec<&RecurringRun> = status
        .recurring_jobs
        .values()
        .filter(|r| r.result.is_failure())
        .collect();
    if failing.is_empty() {
        return Condition::new(FAILED_CONDITION, false, "", "");
    }
    let reason = if failing
        .iter()
        .all(|r| r.result == ironhorn_api::recurring::RunResult::Missed)
    {
        "Missed"
    } else {
        "Failed"
    };
    let message: Vec<String> = failing
        .iter()
        .map(|r| {
            format!(
                "job {} {} at {}: {}",
                r.job,
                r.result.name(),
                r.finished,
                r.message
            )
        })
        .collect();
    Condition::new(FAILED_CONDITION, true, reason, &message.join("; "))
}

/// The recorded runs of `job` (every volume), newest first.
pub async fn runs_of_job(m: &Manager, job: &str) -> Result<Vec<RecurringRun>, ApiError> {
    let lists =
        state::list::<Vec<RecurringRun>>(m.store.as_ref(), &format!("{RECURRING_RUNS}{job}/"))
            .await?;
    Ok(newest_first(lists.into_iter().flat_map(|(runs, _)| runs)))
}

/// The recorded runs on `volume` (every job), newest first.
pub async fn runs_of_volume(m: &Manager, volume: &str) -> Result<Vec<RecurringRun>, ApiError> {
    let lists = state::list::<Vec<RecurringRun>>(m.store.as_ref(), RECURRING_RUNS).await?;
    Ok(newest_first(
        lists
            .into_iter()
            .flat_map(|(runs, _)| runs)
            .filter(|r| r.volume == volume),
    ))
}

fn newest_first(runs: impl Iterator<Item = RecurringRun>) -> Vec<RecurringRun> {
    let mut runs: Vec<RecurringRun> = runs.collect();
    // Each history is oldest first: reversed, a stable sort keeps ties newest first.
    runs.reverse();
    runs.sort_by(|a, b| {
        b.started
            .cmp(&a.started)
            .then_with(|| b.finished.cmp(&a.finished))
    });
    runs
}

/// Forgets the runs of a deleted job.
pub async fn forget_job(m: &Manager, job: &str) -> Result<(), ApiError> {
    let prefix = format!("{RECURRING_RUNS}{job}/");
    for entry in m.store.list(&prefix).await? {
        m.store.delete(&entry.key, Expect::Any).await?;
    }
    Ok(())
}

/// Forgets the runs on a deleted volume.
pub async fn forget_volume(m: &Manager, volume: &str) -> Result<(), ApiError> {
    let suffix = format!("/{volume}");
    for entry in m.store.list(RECURRING_RUNS).await? {
        if entry.key.ends_with(&suffix) {
            m.store.delete(&entry.key, Expect::Any).await?;
        }
    }
    Ok(())
}
