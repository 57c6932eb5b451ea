//! Backups made by Ironhorn into a directory target: full, then incremental after 1% of
//! blocks changed (only those uploaded), both restored and compared, deletion of the first
//! keeps the second restorable, dedup across offsets, an interrupted backup never listed
//! as complete and a retry that completes.

mod common;

use std::sync::Arc;

use common::{file_target, labels, pattern, History, MemSink, BLOCK, MIB};
use ironhorn_backupstore::delete::delete_backup;
use ironhorn_backupstore::list::{backup_names, load_backups};
use ironhorn_backupstore::restore::RestoreMode;
use ironhorn_backupstore::{
    create_backup, restore_backup, BackupRequest, BackupStoreError, Compression, Progress,
};

const SIZE: u64 = 100 * BLOCK;

fn request(snapshot: &str, compression: Compression) -> BackupRequest {
    BackupRequest {
        volume: "vol-a".into(),
        snapshot: snapshot.into(),
        labels: labels(),
        compression,
        ..Default::default()
    }
}

async fn restored(target: &ironhorn_backupstore::BackupTarget, backup: &str) -> Vec<u8> {
    let sink = MemSink::new(SIZE);
    restore_backup(
        target,
        "vol-a",
        backup,
        &RestoreMode::Fresh,
        sink.clone(),
        Progress::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("restore {backup}: {e}"));
    sink.bytes()
}

#[tokio::test]
async fn full_then_incremental_round_trip_for_every_compression() {
    for compression in [Compression::Gzip, Compression::Lz4, Compression::None] {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = file_target(dir.path());
        let mut history = History::default();
        // 75 of 100 blocks hold data, 25 stay holes.
        let mut image = pattern(SIZE, 1);
        image[(75 * BLOCK) as usize..].fill(0);
        history.take("s1", &image, (0..75).map(|b| b * BLOCK).collect());

        let first = create_backup(
            &target,
            &request("s1", compression),
            history.source("s1"),
            Progress::new(),
        )
        .await
        .expect("full backup");
        assert!(!first.is_incremental);
        assert_eq!(first.blocks.len(), 75);

        // Change 1% of the blocks (1 of 100).
        let changed = [7 * BLOCK];
        for &off in &changed {
            image[off as usize..(off + 4096) as usize].copy_from_slice(&pattern(4096, off));
        }
        history.take("s2", &image, changed.to_vec());
        let progress = Progress::new();
        let second = create_backup(
            &target,
            &request("s2", compression),
            history.source("s2"),
            progress.clone(),
        )
        .await
        .expect("incremental backup");
        assert!(second.is_incremental, "{compression:?}");
        assert_eq!(progress.view().total_blocks, 1);
        assert_eq!(second.blocks.len(), 75, "the map is complete, not a delta");
        let uploaded = second.newly_uploaded_data_size.unwrap_or(0);
        let changed_stored: u64 = changed.len() as u64 * BLOCK;
        assert!(
            uploaded <= changed_stored + changed_stored / 20,
            "{uploaded} bytes uploaded"
        );
        assert_eq!(progress.view().percent, 100);

        assert_eq!(
            restored(&target, &second.name).await,
            image,
            "{compression:?}"
        );
        let vol = target
            .volume_config("vol-a")
            .await
            .expect("cfg")
            .expect("exists");
        assert_eq!(vol.last_backup_name, second.name);
        assert_eq!(vol.compression().ok(), Some(compression));

        let report = delete_backup(&target, "vol-a", &first.name)
            .await
            .expect("delete");
        assert_eq!(
            report.blocks_removed, 1,
            "only the first backup's version of the changed block"
        );
        assert_eq!(
            restored(&target, &second.name).await,
            image,
            "{compression:?} after delete"
        );
    }
}

#[tokio::test]
async fn identical_blocks_are_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = file_target(dir.path());
    let block = pattern(BLOCK, 9);
    let image: Vec<u8> = (0..8).flat_map(|_| block.clone()).collect();
    let mut history = History::default();
    history.take("s1", &image, (0..8).map(|b| b * BLOCK).collect());
    let cfg = create_backup(
        &target,
        &request("s1", Compression::Lz4),
        history.source("s1"),
        Progress::new(),
    )
    .await
    .expect("backup");
    assert_eq!(cfg.blocks.len(), 8);
    let vol = target
        .volume_config("vol-a")
        .await
        .expect("cfg")
        .expect("exists");
    assert_eq!(vol.block_count, 1);
    // Backing up the same snapshot again is a full backup that uploads nothing.
    let again = create_backup(
        &target,
        &request("s1", Compression::Lz4),
        history.source("s1"),
        Progress::new(),
    )
    .await
    .expect("backup again");
    assert!(!again.is_incremental);
    assert_eq!(again.newly_uploaded_data_size, Some(0));
}

#[tokio::test]
async fn an_interrupted_backup_is_never_complete_and_a_retry_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut target = file_target(dir.path());
    target.concurrency = 1;
    let image = pattern(64 * MIB, 3);
    let mut history = History::default();
    history.take("s1", &image, (0..32).map(|b| b * BLOCK).collect());
    let progress = Progress::new();
    progress.cancel();
    let mut req = request("s1", Compression::Gzip);
    req.backup_name = Some("backup-0000000000000001".into());
    let err = create_backup(&target, &req, history.source("s1"), progress)
        .await
        .expect_err("cancelled");
    assert!(matches!(err, BackupStoreError::Cancelled));
    let names = backup_names(&target, "vol-a").await.expect("names");
    let cfgs = load_backups(&target, "vol-a", names).await;
    assert!(cfgs
        .iter()
        .all(|(_, c)| c.as_ref().is_ok_and(|c| !c.is_complete())));
    let vol = target
        .volume_config("vol-a")
        .await
        .expect("cfg")
        .expect("exists");
    assert_eq!(
        vol.last_backup_name, "",
        "volume.cfg does not name a half backup"
    );

    let done = create_backup(&target, &req, history.source("s1"), Progress::new())
        .await
        .expect("retry");
    assert!(done.is_complete());
    let sink = MemSink::new(64 * MIB);
    restore_backup(
        &target,
        "vol-a",
        &done.name,
        &RestoreMode::Fresh,
        sink.clone(),
        Progress::new(),
    )
    .await
    .expect("restore");
    assert_eq!(sink.bytes(), image);
}

#[tokio::test]
async fn a_dr_volume_follows_successive_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = file_target(dir.path());
    let mut image = pattern(SIZE, 5);
    let mut history = History::default();
    history.take("s1", &image, (0..100).map(|b| b * BLOCK).collect());
    let mut backups = vec![create_backup(
        &target,
        &request("s1", Compression::Lz4),
        history.source("s1"),
        Progress::new(),
    )
    .await
    .expect("b1")];
    for (i, name) in ["s2", "s3"].iter().enumerate() {
        let off = (10 + i as u64 * 40) * BLOCK;
        image[off as usize..(off + BLOCK) as usize].fill(0); // zeros written are data
        image[(off + BLOCK) as usize..(off + 2 * BLOCK) as usize]
            .copy_from_slice(&pattern(BLOCK, off));
        history.take(name, &image, vec![off, off + BLOCK]);
        backups.push(
            create_backup(
                &target,
                &request(name, Compression::Lz4),
                history.source(name),
                Progress::new(),
            )
            .await
            .expect("next backup"),
        );
    }
    let standby = MemSink::new(SIZE);
    let mut last: Option<String> = None;
    for b in &backups {
        let mode = last
            .clone()
            .map_or(RestoreMode::Fresh, |last| RestoreMode::Since { last });
        let report = restore_backup(
            &target,
            "vol-a",
            &b.name,
            &mode,
            standby.clone(),
            Progress::new(),
        )
        .await
        .expect("restore");
        assert_eq!(report.incremental, last.is_some());
        if last.is_some() {
            assert_eq!(report.blocks_written, 2);
        }
        last = Some(b.name.clone());
    }
    assert_eq!(standby.bytes(), image);
    let _ = Arc::strong_count(&standby);
}
