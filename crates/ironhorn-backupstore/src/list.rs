//! Listing what a target holds: backup volumes (walking `volumes/<L1>/<L2>/`) and the
//! backups of one volume (names from `backups/`, cfgs loaded on demand).

use futures::{StreamExt, TryStreamExt};

use crate::config::BackupConfig;
use crate::error::Result;
use crate::layout::{backup_name_of, backups_dir, validate_name, VOLUMES_DIR};
use crate::target::BackupTarget;

/// Names of every backup volume in the target, sorted.
pub async fn volume_names(target: &BackupTarget) -> Result<Vec<String>> {
    let driver = &target.driver;
    let level1: Vec<String> = driver
        .list(VOLUMES_DIR)
        .await?
        .into_iter()
        .filter(|e| e.is_dir)
        .map(|e| format!("{VOLUMES_DIR}/{}", e.name))
        .collect();
    let level2: Vec<String> = futures::stream::iter(level1)
        .map(|dir| async move {
            Ok::<_, crate::BackupStoreError>(
                driver
                    .list(&dir)
                    .await?
                    .into_iter()
                    .filter(|e| e.is_dir)
                    .map(|e| format!("{dir}/{}", e.name))
                    .collect::<Vec<_>>(),
            )
        })
        .buffer_unordered(16)
        .try_concat()
        .await?;
    let mut names: Vec<String> = futures::stream::iter(level2)
        .map(|dir| async move {
            Ok::<_, crate::BackupStoreError>(
                driver
                    .list(&dir)
                    .await?
                    .into_iter()
                    .filter(|e| e.is_dir && validate_name("volume", &e.name).is_ok())
                    .map(|e| e.name)
                    .collect::<Vec<_>>(),
            )
        })
        .buffer_unordered(16)
        .try_concat()
        .await?;
    names.sort();
    Ok(names)
}

/// Names of the backups of `volume` (completed or not), sorted.
pub async fn backup_names(target: &BackupTarget, volume: &str) -> Result<Vec<String>> {
    validate_name("volume", volume)?;
    let mut names: Vec<String> = target
        .driver
        .list(&backups_dir(volume))
        .await?
        .into_iter()
        .filter_map(|e| backup_name_of(&e.name).map(str::to_string))
        .filter(|n| validate_name("backup", n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Loads the cfgs of `names`, concurrently; each result stands alone so one damaged cfg
/// does not hide the others.
pub async fn load_backups(
    target: &BackupTarget,
    volume: &str,
    names: Vec<String>,
) -> Vec<(String, Result<BackupConfig>)> {
    futures::stream::iter(names)
        .map(|name| async move {
            let cfg = target.backup_config(volume, &name).await;
            (name, cfg)
        })
        .buffer_unordered(target.concurrency.max(1) * 2)
        .collect()
        .await
}
