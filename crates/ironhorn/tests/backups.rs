//! Backups end to end with real processes (`ironhorn server` and node agents), driven through
//! the CLI, data written and read back over NBD with nbdcopy and qemu-io: a backup, 1% of the
//! volume changed, an incremental backup, both restored into new volumes (`--from-backup`)
//! and compared, the first deleted and the second restored again, on a directory, an NFS
//! server (ganesha) and an S3 server (moto); a standby volume following three backups and
//! activated; a server killed in the middle of a backup and of a restore.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use ironhorn_testkit::servers::{NfsServer, S3Kind, S3Server};
use serde_json::Value;

mod common;

use common::{qemu_write, Cluster};

const MIB: u64 = 1 << 20;

/// Deterministic bytes: noise and text-like runs, each 4 KiB page stamped with its index.
fn pattern(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len as usize);
    for i in 0..len / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = if (i / 512) % 3 == 0 {
            0x2020_6f6c_6c65_6820
        } else {
            x
        };
        out.extend_from_slice(&word.to_le_bytes());
    }
    out
}

fn nbdcopy(from: &str, to: &str) {
    let out = Command::new("nbdcopy").args([from, to]).output().unwrap();
    assert!(
        out.status.success(),
        "nbdcopy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_volume(endpoint: &str, image: &[u8], dir: &std::path::Path) {
    let file = dir.join("image.in");
    std::fs::write(&file, image).unwrap();
    nbdcopy(file.to_str().unwrap(), endpoint);
}

fn read_volume(endpoint: &str, dir: &std::path::Path) -> Vec<u8> {
    let file = dir.join("image.out");
    let _ = std::fs::remove_file(&file);
    nbdcopy(endpoint, file.to_str().unwrap());
    std::fs::read(&file).unwrap()
}

fn attach(cluster: &Cluster, name: &str) -> String {
    let v = cluster.json(&["volume", "attach", name, "--wait"]);
    v["status"]["endpoint"].as_str().unwrap().to_string()
}

fn backup(cluster: &Cluster, volume: &str) -> Value {
    let b = cluster.json(&["backup", "create", volume, "--wait"]);
    assert_eq!(b["state"], "Completed", "{b}");
    b
}

/// Creates `name` from `url` and waits until its restore completed.
fn restore(cluster: &Cluster, name: &str, url: &str) {
    cluster.json(&[
        "volume",
        "create",
        name,
        "--from-backup",
        url,
        "--replicas",
        "2",
        "--wait",
    ]);
    cluster.until(&format!("{name} is restored"), |c| {
        let v = c.volume(name);
        v["status"]["restoreRequired"] == false && v["status"]["state"] == "detached"
    });
}

fn restored_image(cluster: &Cluster, name: &str, url: &str, dir: &std::path::Path) -> Vec<u8> {
    restore(cluster, name, url);
    let endpoint = attach(cluster, name);
    let image = read_volume(&endpoint, dir);
    cluster.json(&["volume", "detach", name, "--wait"]);
    image
}

fn set_target(cluster: &Cluster, url: &str, secret: Option<&str>) {
    cluster.json(&["setting", "set", "backupstore-poll-interval", "1"]);
    let mut args = vec!["backup", "target", "set", "default", url];
    if let Some(s) = secret {
        args.extend(["--credential-secret", s]);
    }
    let t = cluster.json(&args);
    assert_eq!(t["status"]["available"], true, "{t}");
}

fn round_trip(cluster: &Cluster) {
    let work = tempfile::tempdir().unwrap();
    let size = 64 * MIB;
    cluster.json(&[
        "volume",
        "create",
        "src",
        "--size",
        "64Mi",
        "--replicas",
        "2",
        "--wait",
    ]);
    let endpoint = attach(cluster, "src");
    let mut image = pattern(size, 1);
    image[(48 * MIB) as usize..].fill(0);
    write_volume(&endpoint, &image, work.path());

    let first = backup(cluster, "src");
    assert_eq!(first["isIncremental"], false);
    // Change 1% of the volume's blocks: 64 KiB inside one of its 32 blocks.
    qemu_write(&endpoint, 10 * MIB, 64 * 1024, 0x5a);
    let mut changed = image.clone();
    changed[(10 * MIB) as usize..(10 * MIB + 64 * 1024) as usize].fill(0x5a);
    let second = backup(cluster, "src");
    assert_eq!(second["isIncremental"], true, "{second}");
    let uploaded = second["bytesUploaded"].as_u64().unwrap();
    assert!(
        uploaded <= 2 * MIB + MIB / 10,
        "an incremental backup of one changed block uploaded {uploaded} bytes"
    );

    let url1 = first["url"].as_str().unwrap();
    let url2 = second["url"].as_str().unwrap();
    assert!(
        restored_image(cluster, "r1", url1, work.path()) == image,
        "the first backup restores"
    );
    assert!(
        restored_image(cluster, "r2", url2, work.path()) == changed,
        "the second backup restores"
    );

    let (code, _, err) = cluster.cli(&["backup", "rm", "src", first["name"].as_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let listed = cluster.json(&["backup", "ls", "src"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert!(
        restored_image(cluster, "r3", url2, work.path()) == changed,
        "the second backup restores after the first is deleted"
    );
}

#[test]
fn round_trip_through_a_directory_target() {
    let (cluster, _agents) = Cluster::three_nodes();
    let target = tempfile::tempdir().unwrap();
    set_target(
        &cluster,
        &format!("file://{}", target.path().display()),
        None,
    );
    round_trip(&cluster);
    // What is in the directory is Longhorn's layout.
    let volumes = std::fs::read_dir(target.path().join("backupstore/volumes"))
        .unwrap()
        .count();
    assert_eq!(volumes, 1);
}

#[test]
fn round_trip_through_nfs() {
    let server = NfsServer::start();
    let (cluster, _agents) = Cluster::three_nodes();
    set_target(&cluster, &server.url(), None);
    round_trip(&cluster);
}

#[test]
fn round_trip_through_s3() {
    let server = S3Server::start(S3Kind::Moto);
    let (cluster, _agents) = Cluster::three_nodes();
    let mut args = vec!["secret".to_string(), "set".into(), "s3-creds".into()];
    args.extend(server.credentials().iter().map(|(k, v)| format!("{k}={v}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.json(&args);
    set_target(&cluster, &server.url("cluster-a"), Some("s3-creds"));
    round_trip(&cluster);
}

#[test]
fn a_standby_volume_follows_three_backups_and_activates() {
    let (cluster, _agents) = Cluster::three_nodes();
    let target = tempfile::tempdir().unwrap();
    let target_url = format!("file://{}", target.path().display());
    set_target(&cluster, &target_url, None);
    let work = tempfile::tempdir().unwrap();
    cluster.json(&[
        "volume",
        "create",
        "prod",
        "--size",
        "32Mi",
        "--replicas",
        "2",
        "--wait",
    ]);
    let endpoint = attach(&cluster, "prod");
    let mut image = pattern(32 * MIB, 7);
    write_volume(&endpoint, &image, work.path());
    let first = backup(&cluster, "prod");

    let source = format!("{target_url}?volume=prod");
    cluster.json(&[
        "volume",
        "create",
        "dr",
        "--from-backup",
        &source,
        "--standby",
        "--replicas",
        "2",
        "--wait",
    ]);
    let mut last = first["name"].as_str().unwrap().to_string();
    cluster.until("the standby volume holds backup 1", |c| {
        c.volume("dr")["status"]["lastRestoredBackup"] == last.as_str()
    });
    let (code, _, err) = cluster.cli(&["volume", "attach", "dr"]);
    assert_eq!(code, 4, "a standby volume does not attach: {err}");
    assert!(err.contains("activate"), "{err}");
    let (code, _, _) = cluster.cli(&["volume", "activate", "prod"]);
    assert_eq!(code, 4, "only standby volumes activate");

    for (i, byte) in [0x21u8, 0x42].into_iter().enumerate() {
        let offset = (3 + 9 * i as u64) * MIB;
        qemu_write(&endpoint, offset, 3 * MIB, byte);
        image[offset as usize..(offset + 3 * MIB) as usize].fill(byte);
        // A trim of a whole block in the second round: zeros, not the old data.
        if i == 1 {
            qemu_write(&endpoint, 24 * MIB, 2 * MIB, 0);
            image[(24 * MIB) as usize..(26 * MIB) as usize].fill(0);
        }
        last = backup(&cluster, "prod")["name"]
            .as_str()
            .unwrap()
            .to_string();
        cluster.until(&format!("the standby volume holds backup {}", i + 2), |c| {
            c.volume("dr")["status"]["lastRestoredBackup"] == last.as_str()
        });
    }
    let activated = cluster.json(&["volume", "activate", "dr", "--wait"]);
    assert_eq!(activated["spec"]["standby"], false);
    let dr_endpoint = attach(&cluster, "dr");
    assert!(
        read_volume(&dr_endpoint, work.path()) == image,
        "the activated volume holds the last backup"
    );
}

#[test]
fn clear_errors_for_what_cannot_be_done() {
    let (cluster, _agents) = Cluster::three_nodes();
    cluster.json(&[
        "volume",
        "create",
        "v",
        "--size",
        "16Mi",
        "--replicas",
        "1",
        "--wait",
    ]);
    let (code, _, err) = cluster.cli(&["backup", "create", "v"]);
    assert_eq!(code, 2, "a name Longhorn would refuse: {err}");
    assert!(err.contains("[a-zA-Z0-9]"), "{err}");
    cluster.json(&[
        "volume",
        "create",
        "vol",
        "--size",
        "16Mi",
        "--replicas",
        "1",
        "--wait",
    ]);
    let (code, _, err) = cluster.cli(&["backup", "create", "vol"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not attached"), "{err}");
    let target = tempfile::tempdir().unwrap();
    let target_url = format!("file://{}", target.path().display());
    set_target(&cluster, &target_url, None);
    attach(&cluster, "vol");
    let b = backup(&cluster, "vol");
    let (code, _, err) = cluster.cli(&[
        "volume",
        "create",
        "small",
        "--size",
        "8Mi",
        "--from-backup",
        b["url"].as_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least"), "{err}");
    let (code, _, err) = cluster.cli(&[
        "volume",
        "create",
        "x",
        "--from-backup",
        &format!("{target_url}?backup=backup-nope&volume=vol"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("backup-nope"), "{err}");
    let (code, _, err) = cluster.cli(&[
        "volume",
        "create",
        "y",
        "--from-backup",
        "ftp://x/y?volume=vol",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nfs://"), "{err}");
    // A target that cannot be used is stored, and says why.
    let (code, out, err) = cluster.cli(&[
        "backup",
        "target",
        "set",
        "default",
        "s3://bucket@us-east-1/x",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unavailable"), "{out}");
    let t = cluster.json(&["backup", "target", "ls"]);
    assert_eq!(t["data"][0]["status"]["available"], false, "{t}");
    assert!(
        t["data"][0]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("AWS_ACCESS_KEY_ID"),
        "{t}"
    );
}

#[test]
fn a_server_killed_mid_backup_and_mid_restore_leaves_the_target_consistent() {
    let (mut cluster, _agents) = Cluster::three_nodes();
    let target = tempfile::tempdir().unwrap();
    set_target(
        &cluster,
        &format!("file://{}", target.path().display()),
        None,
    );
    cluster.json(&["setting", "set", "backup-compression-method", "gzip"]);
    let work = tempfile::tempdir().unwrap();
    let size = 384 * MIB;
    cluster.json(&[
        "volume",
        "create",
        "big",
        "--size",
        "384Mi",
        "--replicas",
        "3",
        "--wait",
    ]);
    let endpoint = attach(&cluster, "big");
    let image = pattern(size, 3);
    write_volume(&endpoint, &image, work.path());

    // Kill -9 the server (which hosts the engine and the replica the backup reads) while
    // the backup runs.
    let started = cluster.json(&["backup", "create", "big"]);
    let name = started["name"].as_str().unwrap().to_string();
    cluster.until("the backup is under way", |c| {
        let b = c.json(&["backup", "get", "big", &name]);
        b["progress"].as_u64().unwrap_or(0) >= 1 || b["state"] == "Completed"
    });
    let b = cluster.json(&["backup", "get", "big", &name]);
    assert_ne!(
        b["state"], "Completed",
        "the backup finished before the kill; make the volume bigger"
    );
    cluster.server.as_mut().unwrap().kill9();
    cluster.start_server();
    cluster.until("the volume is attached again", |c| {
        c.volume("big")["status"]["state"] == "attached"
    });
    let listed = cluster.json(&["backup", "ls", "big"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] != "Completed"),
        "no half backup is listed as complete: {listed}"
    );
    let done = backup(&cluster, "big");
    let url = done["url"].as_str().unwrap().to_string();

    // Kill -9 the server while a restore writes into a new volume; it resumes and completes.
    cluster.json(&[
        "volume",
        "create",
        "copy",
        "--from-backup",
        &url,
        "--replicas",
        "2",
        "--wait",
    ]);
    cluster.until("the restore is under way", |c| {
        let v = c.volume("copy");
        v["status"]["restore"]["progress"].as_u64().unwrap_or(0) >= 1
            || v["status"]["restoreRequired"] == false
    });
    cluster.server.as_mut().unwrap().kill9();
    cluster.start_server();
    cluster.until("the restore completes after the restart", |c| {
        let v = c.volume("copy");
        v["status"]["restoreRequired"] == false && v["status"]["state"] == "detached"
    });
    let copy_endpoint = attach(&cluster, "copy");
    assert!(
        read_volume(&copy_endpoint, work.path()) == image,
        "the restored volume holds the backup"
    );
}

/// Bytes allocated in a replica directory's head file (where fio's writes land).
fn head_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("volume-head-") && name.ends_with(".img")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

#[test]
fn a_backup_taken_while_fio_writes_restores_exactly_the_snapshot() {
    let (cluster, _agents) = Cluster::three_nodes();
    let target = tempfile::tempdir().unwrap();
    set_target(
        &cluster,
        &format!("file://{}", target.path().display()),
        None,
    );
    let work = tempfile::tempdir().unwrap();
    cluster.json(&[
        "volume",
        "create",
        "busy",
        "--size",
        "64Mi",
        "--replicas",
        "3",
        "--wait",
    ]);
    let endpoint = attach(&cluster, "busy");
    // Data in the first half; fio writes into the second, so the head file grows as it goes.
    let mut initial = pattern(64 * MIB, 9);
    initial[(32 * MIB) as usize..].fill(0);
    write_volume(&endpoint, &initial, work.path());
    let replicas = cluster.root.path().join("server/replicas");
    let dir = std::fs::read_dir(&replicas)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("busy-"))
        .unwrap()
        .path();

    let mut fio = Command::new("fio")
        .args([
            "--name=busy",
            "--ioengine=nbd",
            &format!("--uri={endpoint}"),
            "--rw=randwrite",
            "--bs=4k",
            "--offset=32M",
            "--size=32M",
            "--iodepth=8",
            "--rate=8m",
            "--time_based",
            "--runtime=300",
            "--randrepeat=0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let before = head_bytes(&dir);
    cluster.until("fio is writing", |_| head_bytes(&dir) > before + MIB);
    let b = backup(&cluster, "busy");
    assert!(
        fio.try_wait().unwrap().is_none(),
        "fio ran through the whole backup"
    );
    cluster.until(
        "fio keeps writing into the new head after the snapshot",
        |_| head_bytes(&dir) > MIB,
    );
    fio.kill().unwrap();
    fio.wait().unwrap();

    // The snapshot's content, read from a replica directory by `recover export`.
    let snapshot = b["snapshotName"].as_str().unwrap();
    let export = work.path().join("snapshot.img");
    let (code, out, err) = cluster.cli(&[
        "recover",
        "export",
        dir.to_str().unwrap(),
        "--snapshot",
        snapshot,
        "--output",
        export.to_str().unwrap(),
        "--sha256",
    ]);
    assert_eq!(code, 0, "{err}");
    let expected = std::fs::read(&export).unwrap();
    assert!(out.contains("sha256:"), "{out}");
    let restored = restored_image(
        &cluster,
        "busy-copy",
        b["url"].as_str().unwrap(),
        work.path(),
    );
    assert!(
        restored == expected,
        "the restored volume is the snapshot, not what fio wrote after it"
    );
}
