//! Deleting backups and backup volumes under a deletion lock, and the block garbage
//! collection that follows: blocks no remaining backup lists are removed, but only when
//! every backup cfg loaded and none is in progress; otherwise nothing is removed and the
//! next deletion tries again.

use std::collections::HashSet;
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};

use crate::error::{BackupStoreError, Result};
use crate::layout::{
    backup_cfg, block_checksum_of, block_path, blocks_dir, validate_name, volume_cfg, volume_dir,
};
use crate::list::{backup_names, load_backups};
use crate::lock::{LockType, LOCK_EXPIRY};
use crate::target::BackupTarget;

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteReport {
    pub blocks_removed: u64,
    pub blocks_kept: u64,
    /// Abandoned in-progress cfgs (interrupted backups) that were removed.
    pub abandoned_removed: Vec<String>,
    /// Why block GC did not run, if it did not.
    pub gc_skipped: Option<String>,
}

/// Deletes backup `backup` of `volume` and collects the blocks nothing else uses.
pub async fn delete_backup(
    target: &BackupTarget,
    volume: &str,
    backup: &str,
) -> Result<DeleteReport> {
    validate_name("volume", volume)?;
    validate_name("backup", backup)?;
    let lock = target.lock(volume, LockType::Deletion).await?;
    let result = async {
        let path = backup_cfg(volume, backup);
        if !target.driver.exists(&path).await? {
            return Err(BackupStoreError::NotFound {
                what: format!("backup {backup} of volume {volume}"),
            });
        }
        target.driver.delete(&path).await?;
        collect_garbage(target, volume).await
    }
    .await;
    lock.release().await;
    result
}

/// Deletes a whole backup volume: every backup, block and lock.
pub async fn delete_volume(target: &BackupTarget, volume: &str) -> Result<()> {
    validate_name("volume", volume)?;
    let lock = target.lock(volume, LockType::Deletion).await?;
    // The cfg goes first, so a crash part-way leaves no volume that looks whole.
    let result = async {
        target.driver.delete(&volume_cfg(volume)).await?;
        target.driver.delete_tree(&volume_dir(volume)).await?;
        Ok(())
    }
    .await;
    drop(lock);
    result
}

/// Block GC for `volume`; the caller holds the deletion lock (so no backup runs: an
/// in-progress cfg older than a lock's lifetime is an interrupted backup and is removed).
async fn collect_garbage(target: &BackupTarget, volume: &str) -> Result<DeleteReport> {
    let mut report = DeleteReport::default();
    let names = backup_names(target, volume).await?;
    let mut referenced: HashSet<String> = HashSet::new();
    let mut latest: Option<(String, String)> = None;
    for (name, cfg) in load_backups(target, volume, names.clone()).await {
        let cfg = match cfg {
            Ok(cfg) => cfg,
            Err(e) => {
                report.gc_skipped = Some(format!("backup {name} cannot be read ({e})"));
                continue;
            }
        };
        if !cfg.is_complete() {
            let path = backup_cfg(volume, &name);
            let age = target
                .driver
                .modified(&path)
                .await?
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            if age.is_some_and(|a| a > LOCK_EXPIRY) {
                target.driver.delete(&path).await?;
                report.abandoned_removed.push(name);
            } else {
                report.gc_skipped = Some(format!("backup {name} is in progress"));
            }
            continue;
        }
        referenced.extend(cfg.blocks.iter().map(|b| b.checksum.clone()));
        if latest
            .as_ref()
            .is_none_or(|(at, _)| cfg.snapshot_created_at > *at)
        {
            latest = Some((cfg.snapshot_created_at.clone(), name.clone()));
        }
    }

    if let Some(reason) = &report.gc_skipped {
        tracing::warn!(volume, reason = %reason, "backup block GC skipped; the next deletion retries");
        update_volume(target, volume, latest, None).await?;
        return Ok(report);
    }
    let present: Vec<String> = target
        .driver
        .list_recursive(&blocks_dir(volume))
        .await?
        .into_iter()
        .filter_map(|rel| {
            rel.rsplit('/')
                .next()
                .and_then(block_checksum_of)
                .map(str::to_string)
        })
        .collect();
    let now_names = backup_names(target, volume).await?;
    let kept: Vec<String> = names
        .iter()
        .filter(|n| !report.abandoned_removed.contains(n))
        .cloned()
        .collect();
    if now_names != kept {
        report.gc_skipped = Some("the list of backups changed during the deletion".into());
        update_volume(target, volume, latest, None).await?;
        return Ok(report);
    }
    let (keep, remove): (Vec<String>, Vec<String>) = present
        .into_iter()
        .partition(|sum| referenced.contains(sum));
    report.blocks_kept = keep.len() as u64;
    report.blocks_removed = remove.len() as u64;
    futures::stream::iter(remove)
        .map(|sum| async move { target.driver.delete(&block_path(volume, &sum)).await })
        .buffer_unordered(target.concurrency.max(1) * 2)
        .try_collect::<Vec<()>>()
        .await?;
    update_volume(target, volume, latest, Some(report.blocks_kept)).await?;
    Ok(report)
}

/// Points `LastBackupName` at the newest remaining backup; sets `BlockCount` when known.
async fn update_volume(
    target: &BackupTarget,
    volume: &str,
    latest: Option<(String, String)>,
    block_count: Option<u64>,
) -> Result<()> {
    let Some(mut cfg) = target.volume_config(volume).await? else {
        return Ok(());
    };
    let (at, name) = latest.unwrap_or_default();
    cfg.last_backup_name = name;
    cfg.last_backup_at = at;
    if let Some(count) = block_count {
        cfg.block_count = count;
    }
    target
        .driver
        .write(&volume_cfg(volume), cfg.encode())
        .await?;
    Ok(())
}
