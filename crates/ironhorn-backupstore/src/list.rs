//! Listing what a target holds: backup volumes (walking `volumes/<L1>/<L2>/`) and the
//! backups of one volume (names from `backups/`, cfgs loaded on demand).

use futures::{StreamExt, TryStreamExt};

use crate::config::BackupConfig;
use crate::error::Result;
use crate::layout::{backup_name_of, backups_dir, validate_name, VOLUMES_DIR};
use crate::target::BackupTarget;

/// Names of every backup volume in the target, sorted.
pub async fn volume_names(target: &BackupTarget) -> Result<Vec<String>> {
    let level1 = subdirs(target, vec![VOLUMES_DIR.to_string()]).await?;
    let level2 = subdirs(target, level1).await?;
    let mut names: Vec<String> = subdirs(target, level2)
        .await?
        .into_iter()
        .filter_map(|path| path.rsplit('/').next().map(str::to_string))
        .filter(|name| validate_name("volume", name).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// The subdirectories (as paths) of every directory in `dirs`, listed concurrently.
async fn subdirs(target: &BackupTarget, dirs: Vec<String>) -> Result<Vec<String>> {
    let driver = &target.driver;
    futures::stream::iter(dirs)
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
        .await
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
