//! `ironhorn recurring-job ...`: scheduled snapshots, backups, cleanups and trims
//! (create, ls, get with the next run times, update, delete, run-now, runs), and which
//! volumes run them (`add`/`remove` a job or a group on a volume, Longhorn's labels).

use std::collections::BTreeMap;
use std::time::Instant;

use clap::{Args, Subcommand};
use ironhorn_api::manager_api;
use ironhorn_api::recurring::{
    RecurringJob, RecurringJobSpec, RecurringRun, RecurringTask, GROUP_LABEL_PREFIX,
    JOB_LABEL_PREFIX,
};
use ironhorn_api::rest::VolumeLabels;

use super::{exit, labels, nothing, print, Client, ClientOpts, Failure, Result, WaitOpts};

#[derive(Debug, Args)]
pub struct RecurringJobCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: RecurringJobCommand,
}

/// A job's definition on the command line.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// snapshot, snapshot-force-create, snapshot-cleanup, snapshot-delete, backup,
    /// backup-force-create or filesystem-trim.
    #[arg(long, value_parser = RecurringTask::parse)]
    task: RecurringTask,
    /// Five cron fields, e.g. "0 0/3 * * ?" (every 3 hours) or "0 3 ? * SAT", or @daily;
    /// read in the recurring-job-time-zone setting.
    #[arg(long)]
    cron: String,
    /// How many of what the job makes are kept.
    #[arg(long, default_value_t = 1)]
    retain: u32,
    /// How many volumes run the job at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// A group the job belongs to (`default`: every volume that selects nothing); repeat
    /// for more.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// A label KEY=VALUE put on what the job makes; repeat for more.
    #[arg(long = "label")]
    labels: Vec<String>,
}

impl JobArgs {
    fn spec(self, name: String) -> Result<RecurringJobSpec> {
        Ok(RecurringJobSpec {
            name,
            task: self.task,
            cron: self.cron,
            retain: self.retain,
            concurrency: self.concurrency,
            groups: self.groups,
            labels: labels(&self.labels)?,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum RecurringJobCommand {
    /// Create a job.
    Create {
        name: String,
        #[command(flatten)]
        job: JobArgs,
    },
    /// List jobs with their next run and what their last runs did.
    Ls,
    /// Show a job: its definition, next run times, volumes and condition.
    Get { name: String },
    /// Replace a job's definition (its schedule counts from now).
    Update {
        name: String,
        #[command(flatten)]
        job: JobArgs,
    },
    /// Delete a job (what it made stays).
    Delete { name: String },
    /// Run a job on its volumes now.
    RunNow {
        name: String,
        #[command(flatten)]
        wait: WaitOpts,
    },
    /// The recorded runs of a job (every volume), or with --volume of every job on a volume.
    Runs {
        /// The job (omit with --volume).
        #[arg(required_unless_present = "volume")]
        name: Option<String>,
        #[arg(long)]
        volume: Option<String>,
    },
    /// Make a volume run a job, or with --group every job of a group.
    Add {
        volume: String,
        name: String,
        #[arg(long)]
        group: bool,
    },
    /// Stop a volume running a job (or with --group a group's jobs).
    Remove {
        volume: String,
        name: String,
        #[arg(long)]
        group: bool,
    },
}

fn groups(job: &RecurringJobSpec) -> String {
    if job.groups.is_empty() {
        "-".into()
    } else {
        job.groups.join(",")
    }
}

fn job_row(j: &RecurringJob) {
    outln!(
        "{:<24} {:<22} {:<16} {:>6} {:>11} {:<16} {:>7} {}",
        j.spec.name,
        j.spec.task.name(),
        j.spec.cron,
        j.spec.retain,
        j.spec.concurrency,
        groups(&j.spec),
        j.status.volumes.len(),
        j.status.next_runs.first().map_or("-", String::as_str)
    );
}

fn job_header() {
    outln!(
        "{:<24} {:<22} {:<16} {:>6} {:>11} {:<16} {:>7} NEXT RUN",
        "NAME",
        "TASK",
        "CRON",
        "RETAIN",
        "CONCURRENCY",
        "GROUPS",
        "VOLUMES"
    );
}

fn runs_table(runs: &[RecurringRun]) {
    outln!(
        "{:<20} {:<20} {:<10} {:<21} {:<21} MESSAGE",
        "JOB",
        "VOLUME",
        "RESULT",
        "STARTED",
        "FINISHED"
    );
    for r in runs {
        outln!(
            "{:<20} {:<20} {:<10} {:<21} {:<21} {}",
            r.job,
            r.volume,
            r.result.name(),
            r.started,
            r.finished,
            r.message
        );
    }
}

fn selector_label(name: &str, group: bool) -> String {
    format!(
        "{}{name}",
        if group {
            GROUP_LABEL_PREFIX
        } else {
            JOB_LABEL_PREFIX
        }
    )
}

pub fn recurring_job(cmd: RecurringJobCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    match cmd {
        RecurringJobCommand::Create { name, job } => {
            let j = client.call(manager_api::create_recurring_job(&job.spec(name)?))?;
            print(opts.output, &j, || {
                outln!(
                    "recurring job {} created; next run {}",
                    j.spec.name,
                    j.status.next_runs.first().map_or("never", String::as_str)
                )
            })
        }
        RecurringJobCommand::Ls => {
            let list = client.call(manager_api::list_recurring_jobs())?;
            print(opts.output, &list, || {
                job_header();
                for j in &list.data {
                    job_row(j);
                }
            })
        }
        RecurringJobCommand::Get { name } => {
            let j = client.call(manager_api::get_recurring_job(&name))?;
            print(opts.output, &j, || {
                job_header();
                job_row(&j);
                outln!("\nnext runs:");
                for t in &j.status.next_runs {
                    outln!("  {t}");
                }
                outln!(
                    "volumes: {}",
                    if j.status.volumes.is_empty() {
                        "none".to_string()
                    } else {
                        j.status.volumes.join(", ")
                    }
                );
                if j.status.active {
                    outln!("running now on {} volume(s)", j.status.running);
                }
                for c in &j.status.conditions {
                    outln!("{}: {} {} {}", c.kind, c.status, c.reason, c.message);
                }
            })
        }
        RecurringJobCommand::Update { name, job } => {
            let j = client.call(manager_api::update_recurring_job(&job.spec(name)?))?;
            print(opts.output, &j, || {
                outln!("recurring job {} updated", j.spec.name)
            })
        }
        RecurringJobCommand::Delete { name } => {
            client.call(manager_api::delete_recurring_job(&name))?;
            print(opts.output, &nothing(), || {
                outln!("recurring job {name} deleted")
            })
        }
        RecurringJobCommand::RunNow { name, wait } => {
            let started = client.call(manager_api::run_recurring_job(&name))?;
            if !wait.wait {
                return print(opts.output, &started, || {
                    outln!(
                        "recurring job {name} runs on {} volume(s); `ironhorn recurring-job runs {name}` shows how it went",
                        started.status.volumes.len()
                    )
                });
            }
            let deadline = Instant::now() + wait.timeout;
            loop {
                let j = client.call(manager_api::get_recurring_job(&name))?;
                if !j.status.active {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Failure::new(
                        exit::TIMEOUT,
                        format!("recurring job {name} still runs after {:?}", wait.timeout),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            let runs = client.call(manager_api::recurring_job_runs(&name))?;
            let count = started.status.volumes.len();
            let latest: Vec<RecurringRun> = runs.data.into_iter().take(count).collect();
            let failed = latest.iter().filter(|r| r.result.is_failure()).count();
            print(opts.output, &latest, || runs_table(&latest))?;
            if failed > 0 {
                return Err(Failure::new(
                    exit::FAILED,
                    format!("recurring job {name} failed on {failed} of {count} volume(s)"),
                ));
            }
            Ok(())
        }
        RecurringJobCommand::Runs { name, volume } => {
            let list = match (&volume, &name) {
                (Some(v), _) => {
                    let mut runs = client.call(manager_api::volume_recurring_runs(v))?;
                    if let Some(job) = &name {
                        runs.data.retain(|r| &r.job == job);
                    }
                    runs
                }
                (None, Some(job)) => client.call(manager_api::recurring_job_runs(job))?,
                (None, None) => {
                    return Err(Failure::new(exit::INVALID, "name a job or a --volume"));
                }
            };
            print(opts.output, &list, || runs_table(&list.data))
        }
        RecurringJobCommand::Add {
            volume,
            name,
            group,
        } => {
            let request = VolumeLabels {
                set: BTreeMap::from([(selector_label(&name, group), "enabled".to_string())]),
                remove: Vec::new(),
            };
            let v = client.call(manager_api::set_volume_labels(&volume, &request))?;
            print(opts.output, &v, || {
                outln!(
                    "volume {volume} runs {} {name}",
                    if group { "group" } else { "job" }
                )
            })
        }
        RecurringJobCommand::Remove {
            volume,
            name,
            group,
        } => {
            let request = VolumeLabels {
                set: BTreeMap::new(),
                remove: vec![selector_label(&name, group)],
            };
            let v = client.call(manager_api::set_volume_labels(&volume, &request))?;
            print(opts.output, &v, || {
                outln!(
                    "volume {volume} no longer runs {} {name}",
                    if group { "group" } else { "job" }
                )
            })
        }
    }
}
