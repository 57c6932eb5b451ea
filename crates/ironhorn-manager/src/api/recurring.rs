//! `/v1/recurringjobs` (Longhorn's RecurringJob: create, list, get, update, delete, run now,
//! and the runs recorded), `/v1/volumes/{name}/recurringjobruns` and
//! `/v1/volumes/{name}/labels` (how a volume selects jobs and groups).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use ironhorn_api::recurring::{
    RecurringJob, RecurringJobSpec, RecurringJobStatus, RecurringRun, JOB_LABEL_PREFIX,
};
use ironhorn_api::resource::Volume;
use ironhorn_api::rest::{List, VolumeLabels};
use ironhorn_api::ErrorBody;
use ironhorn_control::recurring::validate;
use ironhorn_control::schedule::Schedule;
use ironhorn_store::Expect;

use crate::error::ApiError;
use crate::recurring::{self, bound_volumes, now_secs, records};
use crate::state::{self, RECURRING_JOBS, VOLUMES};
use crate::Manager;

use super::volumes::{load_volume, update_volume};
use super::{Json, Result, Shared};

/// Next run times a job shows.
const NEXT_RUNS: usize = 3;

fn job_missing(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no recurring job {name:?}; `ironhorn recurring-job ls` lists them"
    ))
}

fn key(name: &str) -> String {
    format!("{RECURRING_JOBS}{name}")
}

/// Checks a job against the rules and the time zone setting; the error names the field.
async fn check(m: &Manager, spec: &RecurringJobSpec) -> Result<String> {
    let settings = state::settings(m.store.as_ref()).await?;
    let zone = recurring::zone(&settings);
    validate(spec, &zone).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(zone)
}

/// The job as shown: its stored status with the next runs, the volumes it binds and how
/// many run it now.
fn view(m: &Manager, mut job: RecurringJob, zone: &str, volumes: &[Volume]) -> RecurringJob {
    if let Ok(schedule) = Schedule::new(&job.spec.cron, zone) {
        let after = now_secs().max(job.status.last_scheduled);
        job.status.next_runs = schedule
            .next_runs(after, NEXT_RUNS)
            .into_iter()
            .map(|t| schedule.local_time(t))
            .collect();
    }
    job.status.volumes = bound_volumes(&job.spec, volumes)
        .into_iter()
        .map(|v| v.name.clone())
        .collect();
    job.status.running = m.recurring.running(&job.spec.name).0;
    job.status.active = m.recurring.is_active(&job.spec.name);
    job
}

async fn volumes(m: &Manager) -> Result<Vec<Volume>> {
    Ok(
        state::list_cached(m.store.as_ref(), VOLUMES, &m.parsed_volumes)
            .await?
            .into_iter()
            .map(|(v, _)| v)
            .collect(),
    )
}

async fn zone_now(m: &Manager) -> Result<String> {
    Ok(recurring::zone(&state::settings(m.store.as_ref()).await?))
}

async fn load(m: &Manager, name: &str) -> Result<RecurringJob> {
    state::get::<RecurringJob>(m.store.as_ref(), &key(name))
        .await?
        .map(|(j, _)| j)
        .ok_or_else(|| job_missing(name))
}

#[utoipa::path(get, path = "/v1/recurringjobs", tag = "recurringjobs", responses((status = 200, description = "Every recurring job, with its next runs and the volumes it applies to", body = List<RecurringJob>), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_recurring_jobs(State(m): Shared) -> Result<Json<List<RecurringJob>>> {
    let zone = zone_now(&m).await?;
    let volumes = volumes(&m).await?;
    let data = state::list::<RecurringJob>(m.store.as_ref(), RECURRING_JOBS)
        .await?
        .into_iter()
        .map(|(j, _)| view(&m, j, &zone, &volumes))
        .collect();
    Ok(Json(List { data }))
}

#[utoipa::path(get, path = "/v1/recurringjobs/{name}", tag = "recurringjobs", params(("name" = String, Path, description = "Recurring job name")), responses((status = 200, description = "The job, with its next runs and the volumes it applies to", body = RecurringJob), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn get_recurring_job(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<Json<RecurringJob>> {
    let job = load(&m, &name).await?;
    let zone = zone_now(&m).await?;
    Ok(Json(view(&m, job, &zone, &volumes(&m).await?)))
}

#[utoipa::path(post, path = "/v1/recurringjobs", tag = "recurringjobs", request_body = RecurringJobSpec, responses((status = 201, description = "Created; its first run is the first slot of its schedule from now", body = RecurringJob), (status = 400, description = "Invalid request (the message names the field)", body = ErrorBody), (status = 409, description = "A job of that name exists", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn create_recurring_job(
    State(m): Shared,
    Json(spec): Json<RecurringJobSpec>,
) -> Result<(StatusCode, Json<RecurringJob>)> {
    let (job, zone) = create_job(&m, spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(view(&m, job, &zone, &volumes(&m).await?)),
    ))
}

/// Checks and stores a new job (its first slot is the first from now); returns it and the
/// time zone it was checked in.
pub(crate) async fn create_job(
    m: &Manager,
    spec: RecurringJobSpec,
) -> Result<(RecurringJob, String)> {
    let zone = check(m, &spec).await?;
    let job = RecurringJob {
        spec,
        status: RecurringJobStatus {
            // Slots from now on: a new job does not run for the past.
            last_scheduled: now_secs(),
            ..RecurringJobStatus::default()
        },
    };
    if !state::create(m.store.as_ref(), &key(&job.spec.name), &job).await? {
        return Err(ApiError::exists(format!(
            "recurring job {:?} exists already; `ironhorn recurring-job update` changes it",
            job.spec.name
        )));
    }
    m.recurring.wake.notify_one();
    tracing::info!(job = %job.spec.name, task = job.spec.task.name(), cron = %job.spec.cron, "recurring job created");
    Ok((job, zone))
}

/// Creates the jobs of `specs` that do not exist yet (an operator's later changes stay);
/// returns the names created.
pub async fn create_missing_jobs(
    m: &Manager,
    specs: Vec<RecurringJobSpec>,
) -> std::result::Result<Vec<String>, ApiError> {
    let mut created = Vec::new();
    for spec in specs {
        let name = spec.name.clone();
        match create_job(m, spec).await {
            Ok(_) => created.push(name),
            Err(e) if e.code == ironhorn_api::ErrorCode::AlreadyExists => {}
            Err(e) => {
                return Err(ApiError::invalid(format!(
                    "recurring job {name:?}: {}",
                    e.message
                )))
            }
        }
    }
    Ok(created)
}

#[utoipa::path(put, path = "/v1/recurringjobs/{name}", tag = "recurringjobs", params(("name" = String, Path, description = "Recurring job name")), request_body = RecurringJobSpec, responses((status = 200, description = "Changed; the schedule applies from now", body = RecurringJob), (status = 400, description = "Invalid request (the message names the field)", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn update_recurring_job(
    State(m): Shared,
    Path(name): Path<String>,
    Json(spec): Json<RecurringJobSpec>,
) -> Result<Json<RecurringJob>> {
    if spec.name != name {
        return Err(ApiError::invalid(format!(
            "name: the body names {:?} but the path {name:?}; a job cannot be renamed",
            spec.name
        )));
    }
    let zone = check(&m, &spec).await?;
    let job = state::update::<RecurringJob, ApiError, _>(
        m.store.as_ref(),
        &key(&name),
        || job_missing(&name),
        |j| {
            if j.spec.cron != spec.cron {
                // A new schedule counts from now, not from the old one's last slot.
                j.status.last_scheduled = j.status.last_scheduled.max(now_secs());
            }
            j.spec = spec.clone();
            Ok(())
        },
    )
    .await?;
    m.recurring.wake.notify_one();
    Ok(Json(view(&m, job, &zone, &volumes(&m).await?)))
}

#[utoipa::path(delete, path = "/v1/recurringjobs/{name}", tag = "recurringjobs", params(("name" = String, Path, description = "Recurring job name")), responses((status = 204, description = "Deleted with its run records; what it made stays"), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn delete_recurring_job(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    if m.store.delete(&key(&name), Expect::Any).await?.is_none() {
        return Err(job_missing(&name));
    }
    records::forget_job(&m, &name).await?;
    m.recurring.wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/recurringjobs/{name}/run", tag = "recurringjobs", params(("name" = String, Path, description = "Recurring job name")), responses((status = 202, description = "Running on its volumes now; the runs are recorded as scheduled ones are", body = RecurringJob), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "A run of the job is under way", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn run_recurring_job(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<RecurringJob>)> {
    let job = load(&m, &name).await?;
    if !m.recurring.activate(&name) {
        return Err(ApiError::conflict(format!(
            "a run of recurring job {name} is under way; `ironhorn recurring-job get {name}` shows it"
        )));
    }
    tokio::spawn(recurring::run_job(m.clone(), job.spec.clone(), None, 0));
    let zone = zone_now(&m).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(view(&m, job, &zone, &volumes(&m).await?)),
    ))
}

#[utoipa::path(get, path = "/v1/recurringjobs/{name}/runs", tag = "recurringjobs", params(("name" = String, Path, description = "Recurring job name")), responses((status = 200, description = "The job's recorded runs on every volume, newest first", body = List<RecurringRun>), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_job_runs(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<Json<List<RecurringRun>>> {
    load(&m, &name).await?;
    Ok(Json(List {
        data: records::runs_of_job(&m, &name).await?,
    }))
}

#[utoipa::path(get, path = "/v1/volumes/{name}/recurringjobruns", tag = "recurringjobs", params(("name" = String, Path, description = "Volume name")), responses((status = 200, description = "The recorded runs of every job on the volume, newest first", body = List<RecurringRun>), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_volume_runs(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<Json<List<RecurringRun>>> {
    load_volume(&m, &name).await?;
    Ok(Json(List {
        data: records::runs_of_volume(&m, &name).await?,
    }))
}

/// Refuses a label selecting a job that does not exist (`recurringJobSelector`, Longhorn's
/// name for what the labels express).
pub(crate) async fn check_selector(m: &Manager, labels: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        let Some(job) = k.strip_prefix(JOB_LABEL_PREFIX) else {
            continue;
        };
        if v == "enabled"
            && state::get::<RecurringJob>(m.store.as_ref(), &key(job))
                .await?
                .is_none()
        {
            return Err(ApiError::invalid(format!(
                "recurringJobSelector: no recurring job {job:?}; create it first (`ironhorn recurring-job create`) or select a group"
            )));
        }
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/volumes/{name}/labels", tag = "volumes", params(("name" = String, Path, description = "Volume name")), request_body = VolumeLabels, responses((status = 200, description = "Labels changed (recurring-job.longhorn.io/JOB and recurring-job-group.longhorn.io/GROUP select jobs)", body = Volume), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn set_volume_labels(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<VolumeLabels>,
) -> Result<Json<Volume>> {
    for key in req.set.keys().chain(req.remove.iter()) {
        if key.is_empty() || key.len() > 253 || key.contains(char::is_whitespace) {
            return Err(ApiError::invalid(format!(
                "labels: {key:?} is not a label key (1 to 253 characters, no spaces)"
            )));
        }
    }
    check_selector(&m, &req.set).await?;
    let volume = update_volume(&m, &name, |v| {
        for k in &req.remove {
            v.spec.labels.remove(k);
        }
        v.spec
            .labels
            .extend(req.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    })
    .await?;
    Ok(Json(volume))
}
