//! Restoring a backup into a volume: full (every listed block) or incremental from the
//! backup restored last (only blocks whose checksum changed, zeros where a block
//! disappeared), which is what a disaster-recovery volume does on each new backup. Every
//! block is decompressed and checked against its name before a byte of it is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use crate::codec::{decode_block, Compression};
use crate::config::BackupConfig;
use crate::error::{BackupStoreError, Result};
use crate::layout::block_path;
use crate::lock::LockType;
use crate::target::{BackupTarget, Progress};

/// Where restored data goes.
pub trait BlockSink: Send + Sync {
    /// Bytes the destination holds.
    fn size(&self) -> u64;
    /// Writes `data` at `offset` (called on the blocking pool).
    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), String>;
    /// Makes `[offset, offset+len)` read as zeros (called on the blocking pool).
    fn zero(&self, offset: u64, len: u64) -> std::result::Result<(), String>;
}

/// How to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreMode {
    /// Into a fresh, all-zero destination.
    Fresh,
    /// Over a destination that holds backup `last` (restored earlier): only what differs
    /// is written; if `last` is gone or incompatible, everything is (zeros included).
    Since { last: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    pub backup: String,
    /// The backup volume's size, which the destination holds at least.
    pub volume_size: u64,
    pub incremental: bool,
    pub blocks_written: u64,
    pub bytes_fetched: u64,
}

enum Step {
    Block { offset: u64, checksum: String },
    Zero { offset: u64, len: u64 },
}

/// What a restore reads: a completed backup, its block size and compression, and the size
/// of the volume it restores.
struct Source {
    cfg: BackupConfig,
    block_size: u64,
    compression: Compression,
    size: u64,
}

impl Source {
    async fn load(target: &BackupTarget, volume: &str, backup: &str) -> Result<Source> {
        let volume_config =
            target
                .volume_config(volume)
                .await?
                .ok_or_else(|| BackupStoreError::NotFound {
                    what: format!("backup volume {volume}"),
                })?;
        let cfg = target.backup_config(volume, backup).await?;
        if !cfg.is_complete() {
            return Err(BackupStoreError::Invalid(format!(
                "backup {backup} of volume {volume} is in progress or was interrupted; restore a completed backup"
            )));
        }
        let block_size = cfg.block_size()?;
        let compression = Compression::from_cfg(cfg.compression_method.as_deref())
            .or_else(|_| volume_config.compression())?;
        let size = volume_config
            .size
            .max(cfg.blocks.last().map_or(0, |b| b.offset + block_size));
        Ok(Source {
            cfg,
            block_size,
            compression,
            size,
        })
    }
}

/// Fetches and decodes one block, checked against its name; returns it and the bytes read.
async fn fetch_block(
    target: &BackupTarget,
    volume: &str,
    compression: Compression,
    block_size: u64,
    checksum: String,
    offset: u64,
) -> Result<(Vec<u8>, u64)> {
    let stored = target
        .driver
        .read(&block_path(volume, &checksum))
        .await
        .map_err(|e| {
            if e.is_not_found() {
                BackupStoreError::BadBlock {
                    checksum: checksum.clone(),
                    offset,
                    reason: "its block file is missing from the backup target".into(),
                }
            } else {
                e.into()
            }
        })?;
    let fetched = stored.len() as u64;
    let data = tokio::task::spawn_blocking(move || {
        decode_block(compression, &stored, block_size, &checksum, offset)
    })
    .await
    .map_err(|e| BackupStoreError::Sink(e.to_string()))??;
    Ok((data, fetched))
}

/// Restores `backup` of `volume` into `sink`.
pub async fn restore_backup(
    target: &BackupTarget,
    volume: &str,
    backup: &str,
    mode: &RestoreMode,
    sink: Arc<dyn BlockSink>,
    progress: Arc<Progress>,
) -> Result<RestoreReport> {
    let Source {
        cfg,
        block_size,
        compression,
        size,
    } = Source::load(target, volume, backup).await?;
    if sink.size() < size {
        return Err(BackupStoreError::Invalid(format!(
            "the destination holds {} bytes but backup {backup} is of a {size}-byte volume; create or expand it to at least that size",
            sink.size()
        )));
    }

    let lock = target.lock(volume, LockType::BackupOrRestore).await?;
    let last = match mode {
        RestoreMode::Fresh => None,
        RestoreMode::Since { last } => match target.backup_config(volume, last).await {
            Ok(l) if l.is_complete() && l.block_size().ok() == Some(block_size) => Some(l),
            Ok(_) | Err(_) => {
                tracing::info!(volume, backup, last = %last, "the last restored backup is gone or incompatible: restoring in full");
                None
            }
        },
    };
    let incremental = last.is_some();
    let steps = plan(&cfg, last.as_ref(), mode, block_size, size);
    progress.start(steps.len() as u64);
    let result = futures::stream::iter(steps)
        .map(|step| {
            apply(
                target,
                volume,
                compression,
                block_size,
                &sink,
                &progress,
                step,
            )
        })
        .buffer_unordered(target.concurrency.max(1))
        .try_fold((0u64, 0u64), |(blocks, bytes), fetched| async move {
            Ok((
                blocks + u64::from(fetched.is_some()),
                bytes + fetched.unwrap_or(0),
            ))
        })
        .await;
    lock.release().await;
    let (blocks_written, bytes_fetched) = result?;
    Ok(RestoreReport {
        backup: backup.to_string(),
        volume_size: size,
        incremental,
        blocks_written,
        bytes_fetched,
    })
}

/// The writes that turn the destination into `backup`.
fn plan(
    backup: &BackupConfig,
    last: Option<&BackupConfig>,
    mode: &RestoreMode,
    block_size: u64,
    size: u64,
) -> Vec<Step> {
    let wanted: BTreeMap<u64, &str> = backup
        .blocks
        .iter()
        .map(|b| (b.offset, b.checksum.as_str()))
        .collect();
    let mut steps = Vec::new();
    match (last, mode) {
        (Some(last), _) => {
            let had: BTreeMap<u64, &str> = last
                .blocks
                .iter()
                .map(|b| (b.offset, b.checksum.as_str()))
                .collect();
            for (&offset, &sum) in &wanted {
                if had.get(&offset) != Some(&sum) {
                    steps.push(Step::Block {
                        offset,
                        checksum: sum.to_string(),
                    });
                }
            }
            for &offset in had.keys().filter(|o| !wanted.contains_key(o)) {
                steps.push(Step::Zero {
                    offset,
                    len: block_size.min(size.saturating_sub(offset)),
                });
            }
        }
        (None, RestoreMode::Fresh) => {
            steps.extend(wanted.iter().map(|(&offset, &sum)| Step::Block {
                offset,
                checksum: sum.to_string(),
            }));
        }
        (None, RestoreMode::Since { .. }) => {
            // Unknown content underneath: write every block and zero every gap.
            let mut at = 0;
            for (&offset, &sum) in &wanted {
                if offset > at {
                    steps.push(Step::Zero {
                        offset: at,
                        len: offset - at,
                    });
                }
                steps.push(Step::Block {
                    offset,
                    checksum: sum.to_string(),
                });
                at = offset + block_size;
            }
            if at < size {
                steps.push(Step::Zero {
                    offset: at,
                    len: size - at,
                });
            }
        }
    }
    steps
}

/// Applies one step; returns the bytes fetched for a block.
async fn apply(
    target: &BackupTarget,
    volume: &str,
    compression: Compression,
    block_size: u64,
    sink: &Arc<dyn BlockSink>,
    progress: &Progress,
    step: Step,
) -> Result<Option<u64>> {
    progress.check_cancelled()?;
    let sink = sink.clone();
    match step {
        Step::Zero { offset, len } => {
            tokio::task::spawn_blocking(move || sink.zero(offset, len))
                .await
                .map_err(|e| BackupStoreError::Sink(e.to_string()))?
                .map_err(BackupStoreError::Sink)?;
            progress.block_done(len, 0);
            Ok(None)
        }
        Step::Block { offset, checksum } => {
            let (data, fetched) =
                fetch_block(target, volume, compression, block_size, checksum, offset).await?;
            tokio::task::spawn_blocking(move || sink.write(offset, &data))
                .await
                .map_err(|e| BackupStoreError::Sink(e.to_string()))?
                .map_err(BackupStoreError::Sink)?;
            progress.block_done(block_size, fetched);
            Ok(Some(fetched))
        }
    }
}

/// Reads backup `backup` of `volume` block by block in offset order, checked like a
/// restore, and hands each block to `emit(offset, data)`; offsets the backup does not list
/// are zeros, for the caller to fill. Returns the volume size. Needs no lock-free target:
/// it takes a restore lock like any restore.
pub async fn stream_in_order<F>(
    target: &BackupTarget,
    volume: &str,
    backup: &str,
    progress: Arc<Progress>,
    mut emit: F,
) -> Result<(u64, BackupConfig)>
where
    F: FnMut(u64, Vec<u8>) -> std::result::Result<(), String>,
{
    let Source {
        cfg,
        block_size,
        compression,
        size,
    } = Source::load(target, volume, backup).await?;
    let lock = target.lock(volume, LockType::BackupOrRestore).await?;
    progress.start(cfg.blocks.len() as u64);
    let result = async {
        let mut blocks = futures::stream::iter(cfg.blocks.clone())
            .map(|entry| {
                let progress = progress.clone();
                async move {
                    progress.check_cancelled()?;
                    let (data, fetched) = fetch_block(
                        target,
                        volume,
                        compression,
                        block_size,
                        entry.checksum,
                        entry.offset,
                    )
                    .await?;
                    progress.block_done(block_size, fetched);
                    Ok::<_, BackupStoreError>((entry.offset, data))
                }
            })
            .buffered(target.concurrency.max(1));
        while let Some((offset, data)) = blocks.try_next().await? {
            emit(offset, data).map_err(BackupStoreError::Sink)?;
        }
        Ok(())
    }
    .await;
    lock.release().await;
    result.map(|()| (size, cfg))
}
