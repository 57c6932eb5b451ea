//! Backup targets written by Longhorn v1.5.3's own engine (gzip, lz4, none) restore
//! byte-identically to the snapshots they were made from; damage is refused by name;
//! Longhorn's locks are honoured; deleting a backup collects exactly its own blocks.

mod common;

use std::path::{Path, PathBuf};

use common::{file_target, MemSink, MIB};
use ironhorn_backupstore::delete::delete_backup;
use ironhorn_backupstore::list::{backup_names, volume_names};
use ironhorn_backupstore::restore::RestoreMode;
use ironhorn_backupstore::{restore_backup, BackupStoreError, Progress};
use ironhorn_testkit::{extract_fixture, sha256_hex};

const VOLUME: &str = "pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e";
const S2_8MIB: &str = "7b327a30a61cff088db358d69ce8332e76de2cc48ac8e5308b3f5117c41e8f2e";
const S3_8MIB: &str = "6e497ffb702955c6ca75e0a8de1a88f45fcd202551af967c6d36fde6fa0e9990";

fn target_dir(root: &Path, kind: &str) -> PathBuf {
    root.join(format!("backup-target-{kind}"))
}

async fn restore_hash(
    dir: &Path,
    backup: &str,
    mode: RestoreMode,
    sink: &std::sync::Arc<MemSink>,
) -> String {
    let target = file_target(dir);
    let report = restore_backup(
        &target,
        VOLUME,
        backup,
        &mode,
        sink.clone(),
        Progress::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("restoring {backup}: {e}"));
    assert_eq!(report.volume_size, 8 * MIB);
    sha256_hex(&sink.bytes())
}

#[tokio::test]
async fn every_longhorn_compression_restores_byte_identically() {
    let (_tmp, root) = extract_fixture();
    let cases = [
        ("lz4", "backup-5a2f0c9e81d7b364", S2_8MIB),
        ("lz4", "backup-e1b97d04c6a8f253", S3_8MIB),
        ("none", "backup-93c0d6e2a7f14b58", S3_8MIB),
        ("gzip", "backup-0f7e6d5c4b3a2918", S3_8MIB),
    ];
    for (kind, backup, expected) in cases {
        let sink = MemSink::new(8 * MIB);
        let hash = restore_hash(&target_dir(&root, kind), backup, RestoreMode::Fresh, &sink).await;
        assert_eq!(hash, expected, "{kind} {backup}");
    }
    // Listing sees what Longhorn wrote.
    let target = file_target(&target_dir(&root, "lz4"));
    assert_eq!(
        volume_names(&target).await.ok(),
        Some(vec![VOLUME.to_string()])
    );
    assert_eq!(
        backup_names(&target, VOLUME).await.ok(),
        Some(vec![
            "backup-5a2f0c9e81d7b364".into(),
            "backup-e1b97d04c6a8f253".into()
        ])
    );
}

#[tokio::test]
async fn an_incremental_restore_writes_only_what_changed() {
    let (_tmp, root) = extract_fixture();
    let dir = target_dir(&root, "lz4");
    let sink = MemSink::new(8 * MIB);
    assert_eq!(
        restore_hash(&dir, "backup-5a2f0c9e81d7b364", RestoreMode::Fresh, &sink).await,
        S2_8MIB
    );
    sink.writes.lock().expect("lock").clear();
    let mode = RestoreMode::Since {
        last: "backup-5a2f0c9e81d7b364".into(),
    };
    assert_eq!(
        restore_hash(&dir, "backup-e1b97d04c6a8f253", mode, &sink).await,
        S3_8MIB
    );
    // Backup 2 changed all three of its blocks relative to backup 1.
    let mut writes = sink.writes.lock().expect("lock").clone();
    writes.sort_unstable();
    assert_eq!(writes, vec![0, 2 * MIB, 6 * MIB]);
}

#[tokio::test]
async fn a_damaged_block_fails_the_restore_by_name_and_is_never_written() {
    let (_tmp, root) = extract_fixture();
    let dir = target_dir(&root, "none");
    let sum = "5b6287b8397cb2dfe413dca0734dfbab3d4049a43b01c7f494496afacaad6178";
    let block = dir.join(format!(
        "backupstore/volumes/8f/e5/{VOLUME}/blocks/5b/62/{sum}.blk"
    ));
    let mut bytes = std::fs::read(&block).expect("block");
    bytes[1000] ^= 0xff;
    std::fs::write(&block, bytes).expect("damage");
    let sink = MemSink::new(8 * MIB);
    let err = restore_backup(
        &file_target(&dir),
        VOLUME,
        "backup-93c0d6e2a7f14b58",
        &RestoreMode::Fresh,
        sink.clone(),
        Progress::new(),
    )
    .await
    .expect_err("damaged block");
    assert!(
        matches!(&err, BackupStoreError::BadBlock { checksum, offset, .. } if checksum == sum && *offset == 6 * MIB),
        "{err}"
    );
    assert!(!sink.writes.lock().expect("lock").contains(&(6 * MIB)));
}

#[tokio::test]
async fn truncated_cfgs_and_small_destinations_get_clear_errors() {
    let (_tmp, root) = extract_fixture();
    let dir = target_dir(&root, "gzip");
    let target = file_target(&dir);
    let small = MemSink::new(4 * MIB);
    let err = restore_backup(
        &target,
        VOLUME,
        "backup-0f7e6d5c4b3a2918",
        &RestoreMode::Fresh,
        small,
        Progress::new(),
    )
    .await
    .expect_err("too small");
    assert!(err.to_string().contains("at least"), "{err}");
    let cfg = dir.join(format!(
        "backupstore/volumes/8f/e5/{VOLUME}/backups/backup_backup-0f7e6d5c4b3a2918.cfg"
    ));
    let text = std::fs::read(&cfg).expect("cfg");
    std::fs::write(&cfg, &text[..text.len() / 2]).expect("truncate");
    let err = restore_backup(
        &target,
        VOLUME,
        "backup-0f7e6d5c4b3a2918",
        &RestoreMode::Fresh,
        MemSink::new(8 * MIB),
        Progress::new(),
    )
    .await
    .expect_err("truncated");
    assert!(
        matches!(err, BackupStoreError::Corrupt { .. }) && err.to_string().contains("truncated"),
        "{err}"
    );
    let err = restore_backup(
        &target,
        VOLUME,
        "backup-nope",
        &RestoreMode::Fresh,
        MemSink::new(8 * MIB),
        Progress::new(),
    )
    .await
    .expect_err("missing");
    assert!(matches!(err, BackupStoreError::NotFound { .. }), "{err}");
    assert!(restore_backup(
        &target,
        "../x",
        "b1",
        &RestoreMode::Fresh,
        MemSink::new(8 * MIB),
        Progress::new()
    )
    .await
    .is_err_and(|e| matches!(e, BackupStoreError::InvalidName { .. })));
}

#[tokio::test]
async fn deleting_longhorns_first_backup_keeps_the_second_whole() {
    let (_tmp, root) = extract_fixture();
    let dir = target_dir(&root, "lz4");
    let target = file_target(&dir);
    let report = delete_backup(&target, VOLUME, "backup-5a2f0c9e81d7b364")
        .await
        .expect("delete");
    assert_eq!(
        (report.blocks_removed, report.blocks_kept),
        (2, 3),
        "{report:?}"
    );
    let vol = target
        .volume_config(VOLUME)
        .await
        .expect("cfg")
        .expect("exists");
    assert_eq!(vol.block_count, 3);
    assert_eq!(vol.last_backup_name, "backup-e1b97d04c6a8f253");
    let sink = MemSink::new(8 * MIB);
    assert_eq!(
        restore_hash(&dir, "backup-e1b97d04c6a8f253", RestoreMode::Fresh, &sink).await,
        S3_8MIB
    );
    // Deleting the last backup empties the block store and clears LastBackupName.
    let report = delete_backup(&target, VOLUME, "backup-e1b97d04c6a8f253")
        .await
        .expect("delete");
    assert_eq!(report.blocks_removed, 3);
    let vol = target
        .volume_config(VOLUME)
        .await
        .expect("cfg")
        .expect("exists");
    assert_eq!((vol.block_count, vol.last_backup_name.as_str()), (0, ""));
}

#[tokio::test]
async fn a_longhorn_deletion_lock_blocks_a_restore() {
    let (_tmp, root) = extract_fixture();
    let dir = target_dir(&root, "lz4");
    let lock = dir.join(format!(
        "backupstore/volumes/8f/e5/{VOLUME}/locks/lock-00000000000000aa.lck"
    ));
    std::fs::create_dir_all(lock.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &lock,
        br#"{"Name":"lock-00000000000000aa","Type":2,"Acquired":true}"#,
    )
    .expect("lock");
    let err = restore_backup(
        &file_target(&dir),
        VOLUME,
        "backup-e1b97d04c6a8f253",
        &RestoreMode::Fresh,
        MemSink::new(8 * MIB),
        Progress::new(),
    )
    .await
    .expect_err("locked");
    assert!(
        matches!(err, BackupStoreError::Locked { .. }) && err.is_transient(),
        "{err}"
    );
}
