//! Crash test: a worker process applies a deterministic stream of operations (snapshot,
//! remove, purge, revert, expand, unmap, writes) to a replica and is killed with SIGKILL
//! at random instants, many times. After every kill the directory must open (read-only and
//! read-write) and read exactly as the state before or after the operation that was in
//! flight, according to an in-memory model replaying the same stream.
//!
//! The worker is this same test binary re-executed with `--ignored --exact crash_worker`.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::model::{Model, HEAD, SECTOR};
use ironhorn_replica::{Replica, ReplicaOptions, SnapshotSpec};

const START_SECTORS: u64 = 16;
const MAX_SECTORS: u64 = 40;
const KILLS: usize = 120;

/// A small deterministic generator (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Operation `k` of the stream, decided from `k` and the current snapshot names and size.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Write { sector: u64, seed: u8 },
    Unmap { sector: u64, count: u64 },
    Snapshot { name: String, user: bool },
    Remove(String),
    Purge,
    Revert(String),
    Expand(u64),
    Nothing,
}

fn step(k: u64, snapshots: &[String], size: u64) -> Step {
    let r = mix(k);
    let sectors = size / SECTOR;
    let pick = |n: usize| (mix(r) % n as u64) as usize;
    match r % 16 {
        0..=3 => Step::Write {
            sector: (r >> 8) % sectors,
            seed: (r >> 32) as u8,
        },
        4 => Step::Unmap {
            sector: (r >> 8) % sectors,
            count: 1 + (r >> 20) % 4,
        },
        5..=7 => Step::Snapshot {
            name: format!("{}{k}", if r % 3 == 0 { "sys" } else { "s" }),
            user: r % 3 != 0,
        },
        8 | 9 if !snapshots.is_empty() => Step::Remove(snapshots[pick(snapshots.len())].clone()),
        10 | 11 => Step::Purge,
        12 if !snapshots.is_empty() => Step::Revert(snapshots[pick(snapshots.len())].clone()),
        13 if sectors < MAX_SECTORS => Step::Expand(size + SECTOR),
        _ => Step::Nothing,
    }
}

fn sector_data(sector: u64, seed: u8) -> Vec<u8> {
    (0..SECTOR)
        .map(|i| seed ^ ((sector * 7 + i) % 253) as u8)
        .collect()
}

fn apply_model(model: &mut Model, s: &Step) {
    match s {
        Step::Write { sector, seed } => model.write(sector * SECTOR, &sector_data(*sector, *seed)),
        Step::Unmap { sector, count } => {
            let len = (count * SECTOR).min(model.size - sector * SECTOR);
            model.unmap(sector * SECTOR, len)
        }
        Step::Snapshot { name, user } => model.snapshot(name, *user, model.size),
        Step::Remove(name) => model.layers.get_mut(name).expect("snapshot").removed = true,
        Step::Purge => model.purge(),
        Step::Revert(name) => {
            if !model.layers[name].removed {
                model.revert(name)
            }
        }
        Step::Expand(size) => model.snapshot(&format!("expand-{size}"), false, *size),
        Step::Nothing => {}
    }
}

fn apply_real(replica: &mut Replica, s: &Step) {
    match s {
        Step::Write { sector, seed } => replica
            .write_at(&sector_data(*sector, *seed), sector * SECTOR)
            .expect("write"),
        Step::Unmap { sector, count } => {
            let len = (count * SECTOR).min(replica.size() - sector * SECTOR);
            replica.unmap(sector * SECTOR, len).expect("unmap");
        }
        Step::Snapshot { name, user } => replica
            .snapshot(&SnapshotSpec {
                name: name.clone(),
                user_created: *user,
                ..SnapshotSpec::default()
            })
            .expect("snapshot"),
        Step::Remove(name) => replica.mark_removed(name).expect("remove"),
        Step::Purge => {
            replica.purge().expect("purge");
        }
        Step::Revert(name) => {
            // Reverting to a removed snapshot is refused; the stream expects that.
            let _ = replica.revert(name);
        }
        Step::Expand(size) => replica.expand(*size).expect("expand"),
        Step::Nothing => {}
    }
}

fn real_snapshots(replica: &Replica) -> Vec<String> {
    replica
        .layout()
        .layers
        .keys()
        .filter_map(|f| ironhorn_format::names::snapshot_name(f).map(str::to_string))
        .collect()
}

/// The worker: run the stream from `IRONHORN_CRASH_START` until killed.
#[test]
#[ignore = "run by the crash test as a child process"]
fn crash_worker() {
    let dir = std::env::var("IRONHORN_CRASH_DIR").expect(
        "IRONHORN_CRASH_DIR: this is the crash test's child process; run the crash test, which starts it",
    );
    let log_path = std::env::var("IRONHORN_CRASH_LOG").expect("log path");
    let mut k: u64 = std::env::var("IRONHORN_CRASH_START")
        .expect("start")
        .parse()
        .expect("start number");
    let mut log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(log_path)
        .expect("log");
    let mut replica = Replica::open(Path::new(&dir), &ReplicaOptions::default()).expect("open");
    log.write_all(b"open\n").expect("log");
    loop {
        let s = step(k, &real_snapshots(&replica), replica.size());
        // One write(2) per line, so a kill never leaves a line that parses as another.
        log.write_all(format!("begin {k}\n").as_bytes())
            .expect("log");
        apply_real(&mut replica, &s);
        log.write_all(format!("end {k}\n").as_bytes()).expect("log");
        k += 1;
    }
}

/// Whether `dir` reads as `model`. Snapshots named in `extra` may also still exist (a purge
/// stopped half-way: each of its steps is atomic, the purge as a whole is not).
fn views_match(dir: &Path, model: &Model, read_only: bool, extra: &[String]) -> Result<(), String> {
    let options = |snapshot: Option<String>| ReplicaOptions {
        read_only: read_only || snapshot.is_some(),
        snapshot,
    };
    let replica = Replica::open(dir, &options(None)).map_err(|e| format!("open failed: {e}"))?;
    if replica.size() != model.size {
        return Err(format!("size {} != {}", replica.size(), model.size));
    }
    let mut snaps = real_snapshots(&replica);
    snaps.retain(|s| !extra.contains(s) || model.layers.contains_key(s));
    snaps.sort();
    let mut expected = model.snapshots();
    expected.sort();
    if snaps != expected {
        return Err(format!("snapshots {snaps:?} != {expected:?}"));
    }
    let mut buf = vec![0u8; model.size as usize];
    replica.read_at(&mut buf, 0).map_err(|e| e.to_string())?;
    if buf != model.view(HEAD) {
        return Err("head differs".into());
    }
    for name in expected {
        if model.layers[&name].removed {
            continue;
        }
        let view = Replica::open(dir, &options(Some(name.clone()))).map_err(|e| e.to_string())?;
        view.read_at(&mut buf, 0).map_err(|e| e.to_string())?;
        if buf != model.view(&name) {
            return Err(format!("snapshot {name} differs"));
        }
    }
    if !read_only {
        replica.close().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn read_log(path: &Path) -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut begun = None;
    let mut ended = None;
    for line in text.lines() {
        // A kill can cut the last line short: only whole numbers count.
        if let Some(k) = line.strip_prefix("begin ").and_then(|k| k.parse().ok()) {
            begun = Some(k);
        } else if let Some(k) = line.strip_prefix("end ").and_then(|k| k.parse().ok()) {
            ended = Some(k);
        }
    }
    (begun, ended)
}

#[test]
fn kill_dash_nine_at_random_instants_leaves_an_openable_valid_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("crashvol-12345678");
    Replica::create(&dir, START_SECTORS * SECTOR)
        .expect("create")
        .close()
        .expect("close");
    let mut model = Model::new(START_SECTORS * SECTOR);
    let mut next: u64 = 0;
    let mut in_flight_kills = 0;
    let mut leftovers_seen = 0;
    let exe = std::env::current_exe().expect("current exe");
    for round in 0..KILLS {
        let log = tmp.path().join(format!("log-{round}"));
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_worker",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("IRONHORN_CRASH_DIR", &dir)
            .env("IRONHORN_CRASH_LOG", &log)
            .env("IRONHORN_CRASH_START", next.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn worker");
        // Wait until the worker is inside the stream, then let it run a random while.
        let deadline = Instant::now() + Duration::from_secs(30);
        while read_log(&log).0.is_none() {
            assert!(
                Instant::now() < deadline,
                "worker never started an operation"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("worker exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(mix(round as u64 + 7) % 20_000));
        child.kill().expect("kill -9");
        child.wait().expect("reap");

        let (begun, ended) = read_log(&log);
        let begun = begun.expect("begun");
        let done_until = ended.map_or(next, |e| e + 1);
        for k in next..done_until {
            let s = step(k, &model.snapshots(), model.size);
            apply_model(&mut model, &s);
        }
        let mut after = model.clone();
        let in_flight = begun >= done_until;
        if in_flight {
            let s = step(begun, &after.snapshots(), after.size);
            apply_model(&mut after, &s);
            in_flight_kills += 1;
        }
        // A purge cut short leaves some removed snapshots behind: every view still reads the
        // same; running the purge again (as an operator would) finishes it.
        let purge_in_flight =
            in_flight && step(begun, &model.snapshots(), model.size) == Step::Purge;
        let leftovers: Vec<String> = if purge_in_flight {
            model
                .snapshots()
                .into_iter()
                .filter(|s| !after.layers.contains_key(s))
                .collect()
        } else {
            Vec::new()
        };
        let probe = Replica::open(&dir, &ReplicaOptions::read_only())
            .expect("a crashed directory opens read-only");
        if probe.warnings().iter().any(|w| {
            use ironhorn_format::chain::Warning::*;
            matches!(
                w,
                LeftoverTempFile(_) | StrayHead(_) | InterruptedSnapshot(_) | InterruptedPurge(_)
            )
        }) {
            leftovers_seen += 1;
        }
        drop(probe);
        let ro_before = views_match(&dir, &model, true, &[]);
        let ro_after = views_match(&dir, &after, true, &leftovers);
        assert!(
            ro_before.is_ok() || (in_flight && ro_after.is_ok()),
            "round {round}: read-only open matches neither state (op {begun} in flight: {in_flight}): before: {ro_before:?}, after: {ro_after:?}"
        );
        let rw_before = views_match(&dir, &model, false, &[]);
        let rw_after = if rw_before.is_ok() {
            Ok(())
        } else {
            views_match(&dir, &after, false, &leftovers)
        };
        assert!(
            rw_before.is_ok() || (in_flight && rw_after.is_ok()),
            "round {round}: read-write open matches neither state: before: {rw_before:?}, after: {rw_after:?}"
        );
        if rw_before.is_err() && purge_in_flight {
            let mut replica = Replica::open(&dir, &ReplicaOptions::default()).expect("open");
            replica.purge().expect("finishing the purge");
            replica.close().expect("close");
            views_match(&dir, &after, false, &[]).expect("a finished purge reads as the model");
        }
        if rw_before.is_ok() {
            next = done_until;
        } else {
            model = after;
            next = begun + 1;
        }
    }
    eprintln!(
        "{KILLS} kills, {in_flight_kills} inside an operation, {leftovers_seen} left an interrupted metadata change, {next} operations applied"
    );
    assert!(
        leftovers_seen > 0,
        "no kill ever interrupted a metadata change"
    );
    // The kills must really have landed inside operations, not only between them.
    assert!(
        in_flight_kills > KILLS / 2,
        "only {in_flight_kills} kills hit an operation"
    );
    assert!(
        next > KILLS as u64,
        "the stream barely advanced: {next} operations"
    );
}
