//! Creating a backup (Longhorn's `CreateDeltaBlockBackup`): under a backup lock, pick the
//! base (the volume's last backup, if its snapshot is still an ancestor), read only the
//! blocks that changed since it, upload each block not already in the target, then write
//! the backup cfg with the complete block map and, last, `volume.cfg`. An interrupted
//! backup leaves only an in-progress cfg (`CreatedTime: ""`) and unreferenced blocks, which
//! listing hides and deletion's GC reclaims.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};

use crate::codec::{compress, Compression};
use crate::config::{block_size_quantity, BackupConfig, BlockEntry, Labels, VolumeConfig};
use crate::error::{BackupStoreError, Result};
use crate::layout::{
    backup_cfg, block_checksum, block_path, new_backup_name, validate_name, volume_cfg,
    DEFAULT_BLOCK_SIZE,
};
use crate::lock::LockType;
use crate::target::{BackupTarget, Progress};

/// The blocks to read for a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// Every block with data in the snapshot's chain.
    Full(Vec<u64>),
    /// The blocks written since the base snapshot.
    Incremental(Vec<u64>),
}

/// The snapshot being backed up, as the backupstore sees it.
pub trait BlockSource: Send + Sync {
    /// The snapshot's logical size in bytes.
    fn size(&self) -> u64;
    /// Block-aligned offsets of the blocks that hold data written after snapshot `base`
    /// (every block holding data when `base` is `None`); `Ok(None)` when `base` is no
    /// longer an ancestor of the snapshot, so no incremental backup is possible.
    fn changed_blocks(
        &self,
        base: Option<&str>,
        block_size: u64,
    ) -> std::result::Result<Option<Vec<u64>>, String>;
    /// Reads `buf.len()` bytes of the snapshot at `offset` (called on the blocking pool).
    fn read(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), String>;
}

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// The volume name, which is also the backup volume's name.
    pub volume: String,
    /// The snapshot (name without `volume-snap-`/`.img`).
    pub snapshot: String,
    /// The backup's name; a Longhorn-style `backup-<16 hex>` when `None`.
    pub backup_name: Option<String>,
    pub labels: Labels,
    /// Compression of a new backup volume; an existing one keeps its own.
    pub compression: Compression,
    /// Upload every block even if the target has it (Longhorn's `backup-mode=full`).
    pub force_full: bool,
    pub storage_class: String,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn source_err(e: String) -> BackupStoreError {
    BackupStoreError::Source(e)
}

/// Runs a backup; returns the completed backup cfg.
pub async fn create_backup(
    target: &BackupTarget,
    request: &BackupRequest,
    source: Arc<dyn BlockSource>,
    progress: Arc<Progress>,
) -> Result<BackupConfig> {
    validate_name("volume", &request.volume)?;
    validate_name("snapshot", &request.snapshot)?;
    let name = request.backup_name.clone().unwrap_or_else(new_backup_name);
    validate_name("backup", &name)?;
    let block_size = DEFAULT_BLOCK_SIZE;
    let size = source.size();
    if size % block_size != 0 {
        return Err(BackupStoreError::Invalid(format!(
            "volume {} is {size} bytes, not a multiple of the 2 MiB backup block; expand it to a multiple first",
            request.volume
        )));
    }

    let lock = target
        .lock(&request.volume, LockType::BackupOrRestore)
        .await?;
    let result = run(target, request, &name, size, source, progress).await;
    lock.release().await;
    result
}

async fn run(
    target: &BackupTarget,
    request: &BackupRequest,
    name: &str,
    size: u64,
    source: Arc<dyn BlockSource>,
    progress: Arc<Progress>,
) -> Result<BackupConfig> {
    let block_size = DEFAULT_BLOCK_SIZE;
    let started = now_rfc3339();
    let volume = &request.volume;
    let mut volume_config = match target.volume_config(volume).await? {
        Some(cfg) => cfg,
        None => {
            let cfg = VolumeConfig::new(volume, size, request.compression, &started);
            target
                .driver
                .write(&volume_cfg(volume), cfg.encode())
                .await?;
            cfg
        }
    };
    let compression = volume_config.compression()?;

    let base = choose_base(target, &volume_config, request, block_size).await;
    let delta = {
        let source = source.clone();
        let base_snapshot = base.as_ref().map(|b| b.snapshot_name.clone());
        tokio::task::spawn_blocking(move || {
            match source.changed_blocks(base_snapshot.as_deref(), block_size)? {
                Some(blocks) if base_snapshot.is_some() => Ok(Delta::Incremental(blocks)),
                Some(blocks) => Ok(Delta::Full(blocks)),
                None => source
                    .changed_blocks(None, block_size)?
                    .map(Delta::Full)
                    .ok_or_else(|| "the snapshot's block list is unavailable".to_string()),
            }
        })
        .await
        .map_err(|e| source_err(e.to_string()))?
        .map_err(source_err)?
    };
    let (offsets, base) = match delta {
        Delta::Incremental(o) => (o, base),
        Delta::Full(o) => (o, None),
    };
    tracing::info!(
        volume = %volume, backup = %name, snapshot = %request.snapshot,
        base = base.as_ref().map(|b| b.name.as_str()).unwrap_or("none"),
        blocks = offsets.len(), "backup started"
    );

    let cfg_path = backup_cfg(volume, name);
    let mut cfg = BackupConfig::in_progress(name, volume, &request.snapshot, &started);
    target.driver.write(&cfg_path, cfg.encode()).await?;

    progress.start(offsets.len() as u64);
    let uploader = Uploader {
        target: target.clone(),
        volume: volume.clone(),
        compression,
        block_size,
        force: request.force_full,
        source,
        progress,
        claimed: Arc::new(Mutex::new(HashSet::new())),
    };
    let uploaded: Vec<(BlockEntry, Option<Stored>)> = futures::stream::iter(offsets)
        .map(|offset| uploader.clone().block(offset))
        .buffer_unordered(target.concurrency.max(1))
        .try_collect()
        .await?;

    let mut map: BTreeMap<u64, String> = base
        .as_ref()
        .map(|b| {
            b.blocks
                .iter()
                .map(|e| (e.offset, e.checksum.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut new_blocks = 0u64;
    let mut new_bytes = 0u64;
    let mut re_uploaded_bytes = 0u64;
    for (entry, stored) in uploaded {
        match stored {
            Some(Stored { bytes, new: true }) => {
                new_blocks += 1;
                new_bytes += bytes;
            }
            Some(Stored { bytes, new: false }) => re_uploaded_bytes += bytes,
            None => {}
        }
        map.insert(entry.offset, entry.checksum);
    }
    cfg.blocks = map
        .into_iter()
        .filter(|(offset, _)| *offset < size)
        .map(|(offset, checksum)| BlockEntry { offset, checksum })
        .collect();
    cfg.size = cfg.blocks.len() as u64 * block_size;
    cfg.labels = Some(request.labels.clone());
    cfg.is_incremental = base.is_some();
    cfg.compression_method = Some(compression.as_str().to_string());
    cfg.newly_uploaded_data_size = Some(new_bytes);
    cfg.re_uploaded_data_size = Some(re_uploaded_bytes);
    cfg.parameters = Some(BTreeMap::from([
        (
            "backup-block-size".to_string(),
            block_size_quantity(block_size),
        ),
        (
            "backup-mode".to_string(),
            if request.force_full {
                "full"
            } else {
                "incremental"
            }
            .to_string(),
        ),
    ]));
    cfg.created_time = now_rfc3339();
    target.driver.write(&cfg_path, cfg.encode()).await?;

    // volume.cfg last; re-read so a concurrent writer's changes are kept.
    if let Some(latest) = target.volume_config(volume).await? {
        volume_config = latest;
    }
    volume_config.size = size;
    volume_config.labels = Some(request.labels.clone());
    volume_config.last_backup_name = name.to_string();
    volume_config.last_backup_at = started;
    volume_config.block_count += new_blocks;
    if volume_config.compression_method.is_none() {
        volume_config.compression_method = Some(compression.as_str().to_string());
    }
    if !request.storage_class.is_empty() {
        volume_config.storage_class_name = request.storage_class.clone();
    }
    target
        .driver
        .write(&volume_cfg(volume), volume_config.encode())
        .await?;
    tracing::info!(volume = %volume, backup = %name, new_blocks, new_bytes, "backup completed");
    Ok(cfg)
}

/// The last backup, if an incremental backup can build on it.
async fn choose_base(
    target: &BackupTarget,
    volume: &VolumeConfig,
    request: &BackupRequest,
    block_size: u64,
) -> Option<BackupConfig> {
    if request.force_full || volume.last_backup_name.is_empty() {
        return None;
    }
    match target
        .backup_config(&volume.name, &volume.last_backup_name)
        .await
    {
        Ok(base)
            if base.is_complete()
                && base.snapshot_name != request.snapshot
                && base.block_size().ok() == Some(block_size) =>
        {
            Some(base)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(volume = %volume.name, base = %volume.last_backup_name, error = %e,
                "the last backup cannot serve as a base; taking a full backup");
            None
        }
    }
}

/// A block this backup wrote: its stored size, and whether the target lacked it.
#[derive(Debug, Clone, Copy)]
struct Stored {
    bytes: u64,
    new: bool,
}

#[derive(Clone)]
struct Uploader {
    target: BackupTarget,
    volume: String,
    compression: Compression,
    block_size: u64,
    force: bool,
    source: Arc<dyn BlockSource>,
    progress: Arc<Progress>,
    /// Checksums this backup already uploads or found present.
    claimed: Arc<Mutex<HashSet<String>>>,
}

impl Uploader {
    /// Reads, names and (if new) uploads one block; returns its entry and the stored bytes
    /// when it was uploaded.
    async fn block(self, offset: u64) -> Result<(BlockEntry, Option<Stored>)> {
        self.progress.check_cancelled()?;
        let source = self.source.clone();
        let len = usize::try_from(self.block_size).unwrap_or(0);
        let (data, checksum) = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            source.read(offset, &mut buf)?;
            let sum = block_checksum(&buf);
            Ok::<_, String>((buf, sum))
        })
        .await
        .map_err(|e| source_err(e.to_string()))?
        .map_err(source_err)?;

        let first_claim = self
            .claimed
            .lock()
            .map(|mut set| set.insert(checksum.clone()))
            .unwrap_or(true);
        let path = block_path(&self.volume, &checksum);
        let present = first_claim && self.target.driver.exists(&path).await?;
        let mut stored = None;
        if first_claim && (self.force || !present) {
            let method = self.compression;
            let bytes = tokio::task::spawn_blocking(move || compress(method, &data))
                .await
                .map_err(|e| source_err(e.to_string()))?;
            let n = bytes.len() as u64;
            self.target.driver.write(&path, bytes).await?;
            stored = Some(Stored {
                bytes: n,
                new: !present,
            });
        }
        self.progress
            .block_done(self.block_size, stored.map_or(0, |s| s.bytes));
        Ok((BlockEntry { offset, checksum }, stored))
    }
}
