//! The runner in-process against a real store, with a stand-in node agent (an HTTP server
//! answering snapshot listings after a delay, counting the calls it serves at once): how
//! many volumes run at once, what is recorded for a failure and for missed slots, and the
//! idle cost with 1,000 volumes (`bench/recurring.sh` runs the ignored benchmark).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use ironhorn_api::node::{EngineInstance, NodeReport, SnapshotInfo};
use ironhorn_api::recurring::{
    RecurringJob, RecurringJobSpec, RecurringJobStatus, RecurringTask, RunResult, FAILED_CONDITION,
};
use ironhorn_api::resource::{Node, NodeSpec, Volume, VolumeSpec, VolumeState, VolumeStatus};
use ironhorn_store::{Expect, RedbStore};

use super::*;
use crate::state::{NODES, RECURRING_JOBS, VOLUMES};

/// Calls the stand-in node is serving now, and the most it served at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
    served: AtomicUsize,
}

const NODE_DELAY: Duration = Duration::from_millis(20);

async fn snapshots(
    State(flight): State<Arc<InFlight>>,
    Path(_volume): Path<String>,
) -> Json<Vec<SnapshotInfo>> {
    let now = flight.now.fetch_add(1, Ordering::SeqCst) + 1;
    flight.peak.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(NODE_DELAY).await;
    flight.now.fetch_sub(1, Ordering::SeqCst);
    flight.served.fetch_add(1, Ordering::SeqCst);
    let snap = |name: &str, parent: &str, size: u64| SnapshotInfo {
        name: name.into(),
        parent: parent.into(),
        children: vec![],
        removed: false,
        user_created: true,
        created: "2026-12-01T00:00:00Z".into(),
        size,
        labels: BTreeMap::new(),
    };
    // Nothing written since snapshot s1: a snapshot job skips.
    Json(vec![snap("s1", "", 4096), snap("volume-head", "s1", 0)])
}

struct Bench {
    m: Arc<Manager>,
    flight: Arc<InFlight>,
    _dir: tempfile::TempDir,
}

/// A manager with `count` attached volumes whose engines run on the stand-in node;
/// `without_engine` more say they are attached but no engine is reported for them.
async fn bench(count: usize, without_engine: usize) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(&dir.path().join("state.redb")).unwrap());
    let m = Arc::new(Manager::new(store, None));
    let flight = Arc::new(InFlight::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = Router::new()
        .route("/node/v1/engines/{volume}/snapshots", get(snapshots))
        .with_state(flight.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let node = Node {
        name: "n1".into(),
        spec: NodeSpec {
            address,
            allow_scheduling: true,
            tags: vec![],
            zone: String::new(),
            disks: BTreeMap::new(),
            eviction_requested: false,
        },
        status: Default::default(),
    };
    state::put(m.store.as_ref(), &format!("{NODES}n1"), &node, Expect::Any)
        .await
        .unwrap();
    let mut engines = Vec::new();
    for i in 0..count + without_engine {
        let name = format!("v{i:04}");
        let volume = Volume {
            name: name.clone(),
            created: String::new(),
            spec: VolumeSpec {
                size: 1 << 30,
                number_of_replicas: 1,
                stale_replica_timeout: 2880,
                frontend: Default::default(),
                data_locality: Default::default(),
                node_selector: vec![],
                disk_selector: vec![],
                labels: BTreeMap::new(),
                node_id: "n1".into(),
                maintenance: false,
                from_backup: String::new(),
                standby: false,
                data_source: String::new(),
            },
            status: VolumeStatus {
                state: VolumeState::Attached,
                ..Default::default()
            },
        };
        state::put(
            m.store.as_ref(),
            &format!("{VOLUMES}{name}"),
            &volume,
            Expect::Any,
        )
        .await
        .unwrap();
        if i < count {
            engines.push(EngineInstance {
                volume: name,
                size: 1 << 30,
                endpoint: String::new(),
                maintenance: false,
                rebuilding: false,
                rebuild_copied: 0,
                rebuild_total: 0,
                connections: 0,
                replicas: vec![],
                frontend: String::new(),
                blockdev: None,
                generation: 1,
                fenced: String::new(),
            });
        }
    }
    m.set_reports(
        BTreeMap::from([(
            "n1".to_string(),
            NodeReport {
                name: "n1".into(),
                disks: BTreeMap::new(),
                replicas: vec![],
                engines,
                fencing: 0,
            },
        )]),
        Instant::now(),
    );
    Bench {
        m,
        flight,
        _dir: dir,
    }
}

fn job(name: &str, cron: &str, concurrency: u32) -> RecurringJobSpec {
    RecurringJobSpec {
        name: name.into(),
        task: RecurringTask::Snapshot,
        cron: cron.into(),
        retain: 5,
        concurrency,
        groups: vec!["default".into()],
        labels: BTreeMap::new(),
    }
}

async fn store_job(m: &Manager, spec: &RecurringJobSpec, last_scheduled: i64) {
    let job = RecurringJob {
        spec: spec.clone(),
        status: RecurringJobStatus {
            last_scheduled,
            ..Default::default()
        },
    };
    state::put(
        m.store.as_ref(),
        &format!("{RECURRING_JOBS}{}", spec.name),
        &job,
        Expect::Any,
    )
    .await
    .unwrap();
}

async fn volume(m: &Manager, name: &str) -> Volume {
    state::get::<Volume>(m.store.as_ref(), &format!("{VOLUMES}{name}"))
        .await
        .unwrap()
        .unwrap()
        .0
}

/// The volume's `RecurringJobFailed` condition.
fn failed_condition(v: &Volume) -> ironhorn_api::resource::Condition {
    v.status
        .conditions
        .iter()
        .find(|c| c.kind == FAILED_CONDITION)
        .cloned()
        .unwrap()
}

/// Runs `spec` now on every bound volume, as run-now does, and returns when it ended.
async fn run_now(m: &Arc<Manager>, spec: &RecurringJobSpec) {
    assert!(m.recurring.activate(&spec.name));
    run_job(m.clone(), spec.clone(), None, 0).await;
    assert!(!m.recurring.is_active(&spec.name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_many_volumes_keeps_to_its_concurrency_and_records_each() {
    let b = bench(200, 0).await;
    let spec = job("snap-3h", "0 0/3 * * ?", 10);
    store_job(&b.m, &spec, now_secs()).await;
    run_now(&b.m, &spec).await;
    assert_eq!(b.flight.served.load(Ordering::SeqCst), 200);
    let peak = b.flight.peak.load(Ordering::SeqCst);
    assert_eq!(peak, 10, "the node served {peak} volumes' calls at once");
    assert_eq!(b.m.recurring.running("snap-3h"), (0, 10));
    let runs = records::runs_of_job(&b.m, "snap-3h").await.unwrap();
    assert_eq!(runs.len(), 200);
    assert!(runs
        .iter()
        .all(|r| r.result == RunResult::Skipped
            && r.message == "nothing was written since snapshot s1"));
    let v = volume(&b.m, "v0007").await;
    assert_eq!(
        v.status.recurring_jobs["snap-3h"].result,
        RunResult::Skipped
    );
    let c = failed_condition(&v);
    assert!(!c.holds(), "{c:?}");
    assert_eq!(
        b.m.recurring.counts()[&("snap-3h".to_string(), RunResult::Skipped)],
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_sets_conditions_and_counts_and_a_success_clears_them() {
    // v0001 says it is attached, but no engine runs for it: its run fails.
    let b = bench(1, 1).await;
    let spec = job("snap", "@hourly", 2);
    store_job(&b.m, &spec, now_secs()).await;
    run_now(&b.m, &spec).await;
    let failed = volume(&b.m, "v0001").await;
    let run = &failed.status.recurring_jobs["snap"];
    assert_eq!(run.result, RunResult::Failed);
    assert!(run.message.contains("not attached"), "{}", run.message);
    let c = failed_condition(&failed);
    assert!(c.holds() && c.reason == "Failed", "{c:?}");
    assert!(c.message.contains("job snap failed"), "{}", c.message);
    let job: RecurringJob = state::get(b.m.store.as_ref(), &format!("{RECURRING_JOBS}snap"))
        .await
        .unwrap()
        .unwrap()
        .0;
    let jc = &job.status.conditions[0];
    assert!(
        jc.holds() && jc.message.starts_with("1 of 2 volumes: v0001:"),
        "{jc:?}"
    );
    let metrics = crate::metrics::render(&b.m).await.unwrap();
    assert!(
        metrics.contains(r#"ironhorn_recurring_job_runs_total{job="snap",result="failed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ironhorn_recurring_job_runs_total{job="snap",result="missed"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ironhorn_volume_last_backup_timestamp_seconds{volume="v0000"} 0"#),
        "{metrics}"
    );

    // The engine comes: the next run succeeds (skips: nothing new) and clears the condition.
    let mut reports = b.m.reports();
    let report = reports.get_mut("n1").unwrap();
    let mut engine = report.engines[0].clone();
    engine.volume = "v0001".into();
    report.engines.push(engine);
    b.m.set_reports(reports, Instant::now());
    run_now(&b.m, &spec).await;
    let healed = volume(&b.m, "v0001").await;
    let c = failed_condition(&healed);
    assert!(!c.holds(), "{c:?}");
    let history = records::runs_of_volume(&b.m, "v0001").await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.result).collect::<Vec<_>>(),
        [RunResult::Skipped, RunResult::Failed]
    );
    // A deleted volume's runs go with it; the others' stay.
    records::forget_volume(&b.m, "v0001").await.unwrap();
    assert!(records::runs_of_volume(&b.m, "v0001")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        records::runs_of_volume(&b.m, "v0000").await.unwrap().len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_missed_while_down_run_once_and_are_recorded() {
    let b = bench(2, 0).await;
    let spec = job("hourly", "0 * * * *", 5);
    // The manager was down for three days.
    let last = now_secs() - 3 * 24 * 3600;
    store_job(&b.m, &spec, last).await;
    let next = round(&b.m).await.unwrap();
    assert!(
        next.is_none(),
        "the only job is running: nothing else is waited for"
    );
    assert!(b.m.recurring.is_active("hourly"));
    tokio::time::timeout(Duration::from_secs(30), b.m.recurring.wake.notified())
        .await
        .unwrap();
    assert!(!b.m.recurring.is_active("hourly"));
    let runs = records::runs_of_job(&b.m, "hourly").await.unwrap();
    let missed: Vec<_> = runs
        .iter()
        .filter(|r| r.result == RunResult::Missed)
        .collect();
    let ran: Vec<_> = runs
        .iter()
        .filter(|r| r.result == RunResult::Skipped)
        .collect();
    assert_eq!((missed.len(), ran.len()), (2, 2), "{runs:?}");
    // 72 or 73 hourly slots passed (depending on the minute): all but the latest missed.
    let count: u32 = missed[0]
        .message
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((71..=72).contains(&count), "{}", missed[0].message);
    assert_eq!(
        b.flight.served.load(Ordering::SeqCst),
        2,
        "one run, not one per slot"
    );
    // The latest slot is handled: nothing is due until the next hour.
    let job: RecurringJob = state::get(b.m.store.as_ref(), &format!("{RECURRING_JOBS}hourly"))
        .await
        .unwrap()
        .unwrap()
        .0;
    assert!(now_secs() - job.status.last_scheduled < 3600);
    let next = round(&b.m).await.unwrap().unwrap();
    assert!(next > now_secs() && next - now_secs() <= 3600);
    assert!(!b.m.recurring.is_active("hourly"));
}

/// Process CPU time (user + system) in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; after the command name, at 11 and 12.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The issue's figures: 1,000 volumes bound to the seed's three jobs cost under 1% of a core
/// while idle, and a run due for all of them with concurrency 10 runs at most 10 at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/recurring.sh runs it (1,000 volumes, 70 s)"]
async fn bench_a_thousand_volumes() {
    let b = bench(1000, 0).await;
    let seed = [
        job("snap-3h", "0 0/3 * * ?", 10),
        RecurringJobSpec {
            task: RecurringTask::Backup,
            retain: 7,
            ..job("daily-backup", "0 2 * * *", 10)
        },
        RecurringJobSpec {
            task: RecurringTask::Backup,
            retain: 4,
            ..job("weekly-backup", "0 3 ? * SAT", 10)
        },
    ];
    for spec in &seed {
        store_job(&b.m, spec, now_secs()).await;
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let runner = tokio::spawn(run(b.m.clone(), shutdown.clone()));
    // Longer than the runner's idle look (60 s): one look at the jobs and settings is in it.
    let window = Duration::from_secs(65);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(window).await;
    let idle = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();
    shutdown.cancel();
    runner.await.unwrap();
    println!(
        "idle: {:.3}% of a core with 1000 volumes and 3 jobs",
        idle * 100.0
    );
    assert!(idle < 0.01, "idle cost {:.3}% of a core", idle * 100.0);

    let started = Instant::now();
    run_now(&b.m, &seed[0]).await;
    let took = started.elapsed();
    let peak = b.flight.peak.load(Ordering::SeqCst);
    println!(
        "run over 1000 volumes with concurrency 10: {:.1} s, at most {peak} at once ({} ms per node call)",
        took.as_secs_f64(),
        NODE_DELAY.as_millis()
    );
    assert_eq!(b.flight.served.load(Ordering::SeqCst), 1000);
    assert!(peak <= 10, "{peak} at once");
}
