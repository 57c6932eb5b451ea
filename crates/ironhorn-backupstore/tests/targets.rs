//! Every target kind against a real server: the driver contract (atomic whole-object
//! writes, listing, modification times, deletion), then a backup round trip (full, 1% of
//! blocks changed, incremental, both restored and compared, the first deleted and the
//! second still restored). NFS is NFS-Ganesha spoken to over NFSv3 from user space; S3 is
//! moto and SeaweedFS (which checks signatures, so wrong keys are refused).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{labels, pattern, History, MemSink, BLOCK, MIB};
use ironhorn_backupstore::delete::delete_backup;
use ironhorn_backupstore::driver::DriverErrorKind;
use ironhorn_backupstore::restore::RestoreMode;
use ironhorn_backupstore::{
    create_backup, restore_backup, BackupRequest, BackupStoreError, BackupTarget, Compression,
    Credentials, Progress,
};
use ironhorn_testkit::servers::{NfsServer, S3Kind, S3Server};
use ironhorn_testkit::{extract_fixture, sha256_hex};

async fn open(url: &str, credentials: &Credentials) -> BackupTarget {
    let mut t = BackupTarget::open(url, credentials)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    t.lock_settle = Duration::from_millis(20);
    t.lock_wait = Duration::ZERO;
    t
}

async fn driver_contract(target: &BackupTarget) {
    let d = &target.driver;
    let big = pattern(3 * MIB + 123, 77);
    d.write("t/a/b.bin", big.clone()).await.expect("write");
    assert_eq!(d.read("t/a/b.bin").await.expect("read"), big);
    d.write("t/a/b.bin", b"second".to_vec())
        .await
        .expect("overwrite");
    assert_eq!(d.read("t/a/b.bin").await.expect("read"), b"second");
    let names: Vec<String> = d
        .list("t/a")
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        vec!["b.bin".to_string()],
        "no temporary files are left"
    );
    let top = d.list("t").await.expect("list");
    assert!(top.iter().any(|e| e.name == "a" && e.is_dir), "{top:?}");
    assert!(d.modified("t/a/b.bin").await.expect("modified").is_some());
    assert_eq!(d.modified("t/a/none").await.expect("modified"), None);
    assert!(d
        .read("t/a/none")
        .await
        .is_err_and(|e| e.kind == DriverErrorKind::NotFound));
    assert!(d.list("t/missing").await.expect("list missing").is_empty());
    assert_eq!(
        d.list_recursive("t").await.expect("walk"),
        vec!["a/b.bin".to_string()]
    );
    d.delete("t/a/b.bin").await.expect("delete");
    d.delete("t/a/b.bin").await.expect("delete again");
    assert!(!d.exists("t/a/b.bin").await.expect("exists"));
    d.write("t/x/y/z", vec![1]).await.expect("write");
    d.delete_tree("t").await.expect("delete tree");
    assert!(d.list_recursive("t").await.expect("walk").is_empty());
}

async fn round_trip(target: &BackupTarget) {
    let size = 100 * BLOCK;
    let mut image = pattern(size, 11);
    image[(80 * BLOCK) as usize..].fill(0);
    let mut history = History::default();
    history.take("s1", &image, (0..80).map(|b| b * BLOCK).collect());
    let req = |snap: &str| BackupRequest {
        volume: "pvc-round-trip".into(),
        snapshot: snap.into(),
        labels: labels(),
        compression: Compression::Lz4,
        ..Default::default()
    };
    let first = create_backup(target, &req("s1"), history.source("s1"), Progress::new())
        .await
        .expect("full backup");
    let changed = 42 * BLOCK;
    image[changed as usize..(changed + 8192) as usize].copy_from_slice(&pattern(8192, 99));
    history.take("s2", &image, vec![changed]);
    let second = create_backup(target, &req("s2"), history.source("s2"), Progress::new())
        .await
        .expect("incremental backup");
    assert!(second.is_incremental);
    assert!(second.newly_uploaded_data_size.unwrap_or(u64::MAX) <= BLOCK + BLOCK / 20);

    let restore = |name: String| async move {
        let sink = MemSink::new(size);
        restore_backup(
            target,
            "pvc-round-trip",
            &name,
            &RestoreMode::Fresh,
            sink.clone(),
            Progress::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("restore {name}: {e}"));
        sink.bytes()
    };
    let mut first_image = image.clone();
    first_image[changed as usize..(changed + 8192) as usize]
        .copy_from_slice(&pattern(size, 11)[changed as usize..(changed + 8192) as usize]);
    assert!(
        restore(first.name.clone()).await == first_image,
        "first backup restores"
    );
    assert!(
        restore(second.name.clone()).await == image,
        "second backup restores"
    );
    delete_backup(target, "pvc-round-trip", &first.name)
        .await
        .expect("delete");
    assert!(
        restore(second.name.clone()).await == image,
        "second backup restores after the first is deleted"
    );
}

/// Copies the Longhorn-written gzip target into `target` through its driver.
async fn upload_fixture(target: &BackupTarget, root: &Path) {
    let base = root.join("backup-target-gzip");
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(&base)
                    .expect("relative")
                    .to_string_lossy()
                    .into_owned();
                target
                    .driver
                    .write(&rel, std::fs::read(&path).expect("read"))
                    .await
                    .expect("upload");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfs_target_through_ganesha() {
    let server = NfsServer::start();
    let target = open(&server.url(), &Credentials::default()).await;
    assert_eq!(target.url.kind(), "nfs");
    driver_contract(&target).await;
    round_trip(&target).await;
    // What the NFS server stored is the same layout a directory target reads.
    let local = common::file_target(server.export.path());
    let sink = MemSink::new(100 * BLOCK);
    let names = ironhorn_backupstore::list::backup_names(&local, "pvc-round-trip")
        .await
        .expect("names");
    assert_eq!(names.len(), 1);
    restore_backup(
        &local,
        "pvc-round-trip",
        &names[0],
        &RestoreMode::Fresh,
        sink,
        Progress::new(),
    )
    .await
    .expect("the export read as a directory restores");
    // A target below the export's root.
    let sub = open(&server.url_of("cluster-b"), &Credentials::default()).await;
    sub.driver
        .write("backupstore/x", b"1".to_vec())
        .await
        .expect("write below the export");
    assert!(server
        .export
        .path()
        .join("cluster-b/backupstore/x")
        .exists());
}

#[tokio::test]
async fn an_unreachable_nfs_server_is_a_clear_error() {
    let port = ironhorn_testkit::free_port();
    let url = format!("nfs://127.0.0.1:/export?nfsOptions=port%3D{port}%2Cmountport%3D{port}");
    let err = BackupTarget::open(&url, &Credentials::default())
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(&err, BackupStoreError::Driver(e) if e.kind == DriverErrorKind::Unreachable),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_target_through_moto() {
    let server = S3Server::start(S3Kind::Moto);
    let credentials = Credentials::from_map(&server.credentials());
    let target = open(&server.url("cluster-a"), &credentials).await;
    driver_contract(&target).await;
    round_trip(&target).await;
    // Longhorn's own backup target, copied into S3, restores byte-identically.
    let (_tmp, root) = extract_fixture();
    let fixture = open(&server.url("longhorn"), &credentials).await;
    upload_fixture(&fixture, &root).await;
    let sink = MemSink::new(8 * MIB);
    restore_backup(
        &fixture,
        "pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e",
        "backup-0f7e6d5c4b3a2918",
        &RestoreMode::Fresh,
        sink.clone(),
        Progress::new(),
    )
    .await
    .expect("restore from S3");
    assert_eq!(
        sha256_hex(&sink.bytes()),
        "6e497ffb702955c6ca75e0a8de1a88f45fcd202551af967c6d36fde6fa0e9990"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_target_through_seaweedfs_checks_credentials() {
    let server = S3Server::start(S3Kind::Seaweed);
    let credentials = Credentials::from_map(&server.credentials());
    let target = open(&server.url("cluster-a"), &credentials).await;
    driver_contract(&target).await;
    round_trip(&target).await;

    let mut wrong = credentials.clone();
    wrong.secret_access_key = Some("not-the-secret".into());
    let bad = open(&server.url("cluster-a"), &wrong).await;
    let err = bad.check().await.expect_err("wrong secret");
    assert!(
        matches!(&err, BackupStoreError::Driver(e) if e.kind == DriverErrorKind::Denied),
        "{err}"
    );
    assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    let none = BackupTarget::open(&server.url("x"), &Credentials::default())
        .await
        .expect_err("no keys");
    assert!(none.to_string().contains("AWS_ACCESS_KEY_ID"), "{none}");
}

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted when dropped.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount(mib: u64) -> SmallFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs as a full backup target and needs root (run the tests as root, as .ci/run does)"
        );
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_target_is_a_clear_error_and_nothing_is_listed_complete() {
    let fs = SmallFs::mount(8);
    let target = common::file_target(fs.0.path());
    let mut history = History::default();
    let image = pattern(16 * MIB, 5);
    history.take("s1", &image, (0..8).map(|b| b * BLOCK).collect());
    let request = BackupRequest {
        volume: "pvc-full".into(),
        snapshot: "s1".into(),
        compression: Compression::None,
        ..Default::default()
    };
    let err = create_backup(&target, &request, history.source("s1"), Progress::new())
        .await
        .expect_err("the target is full");
    assert!(
        matches!(&err, BackupStoreError::Driver(e) if e.kind == DriverErrorKind::NoSpace),
        "{err}"
    );
    assert!(err.to_string().contains("free space"), "{err}");
    let names = ironhorn_backupstore::list::backup_names(&target, "pvc-full")
        .await
        .expect("names");
    for (_, cfg) in ironhorn_backupstore::list::load_backups(&target, "pvc-full", names).await {
        assert!(cfg.is_ok_and(|c| !c.is_complete()));
    }
}
