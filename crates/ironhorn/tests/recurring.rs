//! Recurring jobs end to end with real processes (`ironhorn server` and two node agents),
//! driven through the CLI, data written over NBD with qemu-io: a snapshot job on a one-minute
//! schedule runs on its slot, keeps exactly `retain` snapshots, and after the manager was
//! killed across a slot runs once when it is back; a backup job keeps its retention on an S3
//! server (moto), and once that server is gone its failure shows in the API, the CLI and
//! the metrics.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ironhorn_testkit::servers::{S3Kind, S3Server};
use serde_json::Value;

mod common;

use common::Cluster;

/// 64 KiB of `byte` at `offset`.
fn write(endpoint: &str, offset: u64, byte: u8) {
    common::qemu_write(endpoint, offset, 65536, byte);
}

/// A volume attached to node-2 (so its engine outlives a server restart); its endpoint.
fn attached_volume(cluster: &Cluster, name: &str) -> String {
    cluster.json(&[
        "volume",
        "create",
        name,
        "--size",
        "64Mi",
        "--replicas",
        "2",
        "--wait",
    ]);
    let v = cluster.json(&["volume", "attach", name, "--node", "node-2", "--wait"]);
    v["status"]["endpoint"].as_str().unwrap().to_string()
}

fn runs(cluster: &Cluster, job: &str) -> Vec<Value> {
    cluster.json(&["recurring-job", "runs", job])["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The snapshots of `volume` (not removed, not the head) that `keep` picks, by name.
fn snapshots(cluster: &Cluster, volume: &str, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    let list = cluster.json(&["volume", "snapshot", "ls", volume]);
    let mut names: Vec<String> = list["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s["removed"] == false && s["name"] != "volume-head" && keep(s))
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The snapshots of `volume` job `job` made that are not removed, by name.
fn job_snapshots(cluster: &Cluster, volume: &str, job: &str) -> Vec<String> {
    snapshots(cluster, volume, |s| s["labels"]["RecurringJob"] == job)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn metric(cluster: &Cluster, line_start: &str) -> Option<f64> {
    let text = ureq::get(&format!("{}/metrics", cluster.url))
        .header(
            "Authorization",
            &format!("Bearer {}", cluster.admin_token()),
        )
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn snapshots_on_a_one_minute_schedule_keep_their_retention_across_a_manager_restart() {
    let (mut cluster, _agents) = Cluster::three_nodes();
    let endpoint = attached_volume(&cluster, "vol");
    write(&endpoint, 0, 1);
    // In the default group: the volume selects nothing, so it runs the job.
    cluster.json(&[
        "recurring-job",
        "create",
        "snap-1m",
        "--task",
        "snapshot",
        "--cron",
        "* * * * *",
        "--retain",
        "2",
        "--group",
        "default",
    ]);
    let job = cluster.json(&["recurring-job", "get", "snap-1m"]);
    let next: Vec<&str> = job["status"]["nextRuns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(next.len(), 3, "{job}");
    assert!(next.iter().all(|t| t.ends_with(":00+00:00")), "{next:?}");
    assert_eq!(job["status"]["volumes"], serde_json::json!(["vol"]));

    // The first scheduled run, at the next minute.
    cluster.until("the job ran on its schedule", |c| {
        runs(c, "snap-1m")
            .iter()
            .any(|r| r["result"] == "succeeded" && r["scheduled"] != "")
    });
    // Two more, asked now, each after new data: three made, the newest two kept.
    for byte in [2u8, 3] {
        write(&endpoint, u64::from(byte) * 65536, byte);
        let (code, out, err) = cluster.cli(&["recurring-job", "run-now", "snap-1m", "--wait"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("succeeded"), "{out}");
    }
    let made: Vec<String> = runs(&cluster, "snap-1m")
        .iter()
        .filter(|r| r["result"] == "succeeded")
        .map(|r| r["created"].as_str().unwrap().to_string())
        .collect();
    assert!(made.len() >= 3, "{made:?}");
    let mut newest_two = made[..2].to_vec();
    newest_two.sort();
    assert_eq!(job_snapshots(&cluster, "vol", "snap-1m"), newest_two);

    // The manager is killed, data is written meanwhile (the engine on node-2 serves it),
    // and a slot passes before it is back: that slot runs once, at the restart.
    cluster.server.as_mut().unwrap().kill9();
    write(&endpoint, 4 * 65536, 4);
    let slot_passed = (now() / 60 + 1) * 60 + 2;
    std::thread::sleep(Duration::from_secs(slot_passed.saturating_sub(now())));
    let restarted = now();
    cluster.start_server();
    cluster.until("the slot missed while the manager was down ran", |c| {
        runs(c, "snap-1m").iter().any(|r| {
            r["result"] == "succeeded"
                && r["scheduled"].as_str().is_some_and(|s| {
                    humantime::parse_rfc3339(s)
                        .is_ok_and(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs() < restarted)
                })
                && humantime::parse_rfc3339(r["started"].as_str().unwrap())
                    .is_ok_and(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs() >= restarted)
        })
    });
    let made: Vec<String> = runs(&cluster, "snap-1m")
        .iter()
        .filter(|r| r["result"] == "succeeded")
        .map(|r| r["created"].as_str().unwrap().to_string())
        .collect();
    let mut newest_two = made[..2].to_vec();
    newest_two.sort();
    assert_eq!(
        job_snapshots(&cluster, "vol", "snap-1m"),
        newest_two,
        "retention holds across the restart"
    );
    let v = cluster.volume("vol");
    assert_eq!(
        v["status"]["recurringJobs"]["snap-1m"]["result"], "succeeded",
        "{v}"
    );
}

#[test]
fn a_backup_job_keeps_its_retention_and_fails_loudly_when_the_target_is_gone() {
    let s3 = S3Server::start(S3Kind::Moto);
    let (cluster, _agents) = Cluster::three_nodes();
    let mut args = vec!["secret".to_string(), "set".into(), "s3-creds".into()];
    args.extend(s3.credentials().iter().map(|(k, v)| format!("{k}={v}")));
    cluster.json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cluster.json(&["setting", "set", "backupstore-poll-interval", "1"]);
    cluster.json(&[
        "backup",
        "target",
        "set",
        "default",
        &s3.url("cluster-a"),
        "--credential-secret",
        "s3-creds",
    ]);
    let endpoint = attached_volume(&cluster, "vol");
    write(&endpoint, 0, 1);
    // A job in no group: only volumes that name it run it.
    cluster.json(&[
        "recurring-job",
        "create",
        "daily",
        "--task",
        "backup",
        "--cron",
        "0 2 * * *",
        "--retain",
        "1",
    ]);
    assert_eq!(
        cluster.json(&["recurring-job", "get", "daily"])["status"]["volumes"],
        serde_json::json!([])
    );
    // Naming a job that does not exist is refused, naming the field.
    let (code, _, err) = cluster.cli(&["recurring-job", "add", "vol", "nightly"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("recurringJobSelector"), "{err}");
    cluster.json(&["recurring-job", "add", "vol", "daily"]);

    let mut backups = Vec::new();
    for byte in [1u8, 2] {
        write(&endpoint, u64::from(byte) * 65536, byte);
        let (code, out, err) = cluster.cli(&["recurring-job", "run-now", "daily", "--wait"]);
        assert_eq!(code, 0, "{out}{err}\n{}", cluster.log());
        let run = &runs(&cluster, "daily")[0];
        assert_eq!(run["result"], "succeeded", "{run}");
        backups.push(run["created"].as_str().unwrap().to_string());
    }
    // Retain 1: the second backup replaced the first, once it had completed.
    let listed = cluster.json(&["backup", "ls", "vol"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [backups[1].as_str()]);
    let v = cluster.volume("vol");
    assert_eq!(v["status"]["lastBackup"], backups[1].as_str(), "{v}");
    let last_backup = metric(
        &cluster,
        "ironhorn_volume_last_backup_timestamp_seconds{volume=\"vol\"}",
    )
    .unwrap();
    assert!(last_backup as u64 + 120 > now(), "{last_backup}");

    // The target goes away: the run fails, and says so everywhere.
    drop(s3);
    write(&endpoint, 3 * 65536, 3);
    let (code, out, err) = cluster.cli(&["recurring-job", "run-now", "daily", "--wait"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("failed on 1 of 1 volume"), "{err}");
    assert!(out.contains("failed"), "{out}");
    let (code, table, _) = cluster.cli(&["recurring-job", "runs", "--volume", "vol"]);
    assert_eq!(code, 0);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("failed")),
        "{table}"
    );
    let job = cluster.json(&["recurring-job", "get", "daily"]);
    let condition = &job["status"]["conditions"][0];
    assert_eq!(condition["type"], "RecurringJobFailed");
    assert_eq!(condition["status"], "True", "{job}");
    let v = cluster.volume("vol");
    let c = v["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "RecurringJobFailed")
        .cloned()
        .unwrap();
    assert_eq!(c["status"], "True", "{v}");
    assert_eq!(
        metric(
            &cluster,
            "ironhorn_recurring_job_runs_total{job=\"daily\",result=\"failed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &cluster,
            "ironhorn_recurring_job_runs_total{job=\"daily\",result=\"succeeded\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn bad_jobs_are_refused_naming_the_field() {
    let (cluster, _agents) = Cluster::three_nodes();
    let refused = |args: &[&str], field: &str| {
        let mut all = vec!["recurring-job", "create", "j"];
        all.extend(args);
        let (code, _, err) = cluster.cli(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(field), "{args:?}: {err}");
    };
    refused(&["--task", "snapshot", "--cron", "0 0/3 * *"], "cron");
    refused(&["--task", "snapshot", "--cron", "61 * * * *"], "minute");
    refused(&["--task", "snapshot", "--cron", "@every 1h"], "cron");
    refused(
        &["--task", "snap", "--cron", "@daily"],
        "snapshot-force-create",
    );
    refused(
        &["--task", "snapshot", "--cron", "@daily", "--retain", "0"],
        "retain",
    );
    refused(
        &["--task", "backup", "--cron", "@daily", "--retain", "1000"],
        "retain",
    );
    refused(
        &["--task", "backup", "--cron", "@daily", "--concurrency", "0"],
        "concurrency",
    );
    let (code, _, err) =
        cluster.cli(&["setting", "set", "recurring-job-time-zone", "Mars/Olympus"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Mars/Olympus"), "{err}");
    // In another zone the next runs show in it.
    cluster.json(&["setting", "set", "recurring-job-time-zone", "Asia/Kolkata"]);
    let job = cluster.json(&[
        "recurring-job",
        "create",
        "weekly",
        "--task",
        "backup",
        "--cron",
        "0 3 ? * SAT",
        "--retain",
        "4",
    ]);
    let next = job["status"]["nextRuns"][0].as_str().unwrap();
    assert!(next.ends_with("T03:00:00+05:30"), "{next}");
    // Changes, refused ones too, are in the audit log with who made them.
    let audit = cluster.json(&["audit", "ls", "--limit", "20"]);
    let entries = audit["data"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["method"] == "POST"
            && e["path"] == "/v1/recurringjobs"
            && e["status"] == 201
            && e["user"] == "admin"),
        "{audit}"
    );
    assert!(
        entries.iter().any(|e| e["path"] == "/v1/recurringjobs"
            && e["status"] == 400
            && e["result"] == "failed"),
        "{audit}"
    );
    let (code, _, err) = cluster.cli(&[
        "volume",
        "create",
        "v",
        "--size",
        "16Mi",
        "--label",
        "recurring-job.longhorn.io/nope=enabled",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("recurringJobSelector"), "{err}");
}

#[test]
fn detached_volumes_run_jobs_only_when_the_setting_allows_and_every_task_reports() {
    let (cluster, _agents) = Cluster::three_nodes();
    let endpoint = attached_volume(&cluster, "vol");
    for (i, snapshot) in ["s1", "s2", "s3"].iter().enumerate() {
        write(&endpoint, i as u64 * 65536, 1 + i as u8);
        cluster.json(&["volume", "snapshot", "create", "vol", snapshot]);
    }
    let job = |name: &str, task: &str, retain: &str| {
        cluster.json(&[
            "recurring-job",
            "create",
            name,
            "--task",
            task,
            "--cron",
            "@yearly",
            "--retain",
            retain,
        ]);
        cluster.json(&["recurring-job", "add", "vol", name]);
    };
    let last_run = |name: &str| -> Value {
        let (code, out, err) = cluster.cli(&["recurring-job", "run-now", name, "--wait"]);
        let run = runs(&cluster, name)[0].clone();
        assert_eq!(code == 0, run["result"] != "failed", "{out}{err}");
        run
    };
    // A trim needs a mounted filesystem: over NBD there is none, and it says so.
    job("trim", "filesystem-trim", "0");
    let run = last_run("trim");
    assert_eq!(run["result"], "skipped", "{run}");
    // snapshot-delete keeps the newest N of every snapshot, whoever took it.
    job("prune", "snapshot-delete", "1");
    let run = last_run("prune");
    assert_eq!(run["result"], "succeeded", "{run}");
    assert_eq!(snapshots(&cluster, "vol", |_| true), ["s3"], "{run}");
    job("cleanup", "snapshot-cleanup", "0");
    assert_eq!(last_run("cleanup")["result"], "succeeded");

    // Detached, with the setting off: skipped, saying which setting.
    cluster.json(&["volume", "detach", "vol", "--wait"]);
    job("snap", "snapshot-force-create", "3");
    let run = last_run("snap");
    assert_eq!(run["result"], "skipped", "{run}");
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("allow-recurring-job-while-volume-detached"),
        "{run}"
    );
    // With it on: attached without a frontend for the run, detached after.
    cluster.json(&[
        "setting",
        "set",
        "allow-recurring-job-while-volume-detached",
        "true",
    ]);
    let run = last_run("snap");
    assert_eq!(run["result"], "succeeded", "{run}\n{}", cluster.log());
    let made = run["created"].as_str().unwrap();
    cluster.until("the volume is detached again", |c| {
        let v = c.volume("vol");
        v["status"]["state"] == "detached" && v["spec"]["nodeId"] == ""
    });
    assert_eq!(job_snapshots(&cluster, "vol", "snap"), [made.to_string()]);
}
