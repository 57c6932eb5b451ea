//! `ironhorn recover backup` and `recover backups`: a volume out of a backup target alone
//! (the cluster is gone), and what the target holds. Credentials for S3 come from
//! `--credentials FILE` or from the environment, under Longhorn's names.

use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ironhorn_backupstore::list::{backup_names, load_backups, volume_names};
use ironhorn_backupstore::restore::stream_in_order;
use ironhorn_backupstore::{BackupTarget, BackupUrl, Credentials, Progress};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::recover::{byte_progress, open_output, write_zeros, Sink};
use crate::units::human_size;

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The backup target: file:///path, nfs://server:/export/path or s3://bucket@region/path.
    #[arg(long)]
    pub target: String,
    /// S3 credentials: a file of KEY=VALUE lines or a JSON object with AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and AWS_ENDPOINTS (default: those environment variables).
    #[arg(long)]
    pub credentials: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The volume (the backup volume's name in the target).
    #[arg(long)]
    pub volume: String,
    /// The backup's name (backup-…).
    #[arg(long)]
    pub backup: String,
    /// Where to write the raw image: a file (sparse), a block device, or `-` for standard
    /// output.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Print the SHA-256 of the whole image as `sha256:<hex>`.
    #[arg(long)]
    pub sha256: bool,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// List the backups of this volume instead of the volumes.
    #[arg(long)]
    pub volume: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn open_target(args: &TargetArgs) -> Result<BackupTarget> {
    let credentials = match &args.credentials {
        Some(path) => Credentials::from_file(path)?,
        None => Credentials::from_env(),
    };
    BackupTarget::open(&args.target, &credentials)
        .await
        .with_context(|| format!("opening the backup target {}", args.target))
}

pub fn restore(args: &BackupArgs) -> Result<()> {
    runtime()?.block_on(async {
        let target = open_target(&args.target).await?;
        let volume = target
            .volume_config(&args.volume)
            .await?
            .with_context(|| format!("the target holds no backups of volume {}", args.volume))?;
        let chosen = target.backup_config(&args.volume, &args.backup).await?;
        if !chosen.is_complete() {
            bail!(
                "backup {} of volume {} is in progress or was interrupted; list the completed ones with \
                 `ironhorn recover backups --target {} --volume {}`",
                args.backup,
                args.volume,
                args.target.target,
                args.volume
            );
        }
        let created = args.output.as_os_str() != "-" && !args.output.exists();
        let mut sink = open_output(&args.output, args.force, volume.size, None)?;
        let result = write_image(args, &target, volume.size, &mut sink).await;
        if result.is_err() && created {
            let _ = std::fs::remove_file(&args.output);
        }
        result
    })
}

async fn write_image(
    args: &BackupArgs,
    target: &BackupTarget,
    volume_size: u64,
    sink: &mut Sink,
) -> Result<()> {
    let bar = byte_progress(volume_size);
    let mut hasher = args.sha256.then(Sha256::new);
    let mut at = 0u64;
    let progress = Progress::new();
    let (size, cfg) = stream_in_order(
        target,
        &args.volume,
        &args.backup,
        progress,
        |offset, data| {
            let gap = offset.saturating_sub(at);
            write_zeros(sink, &mut hasher, gap).map_err(|e| e.to_string())?;
            if let Some(h) = hasher.as_mut() {
                h.update(&data);
            }
            match &mut *sink {
                Sink::Sparse(file) if data.iter().all(|b| *b == 0) => {
                    let _ = file;
                }
                Sink::Sparse(file) => file
                    .write_all_at(&data, offset)
                    .map_err(|e| e.to_string())?,
                Sink::Stream(w) => w.write_all(&data).map_err(|e| e.to_string())?,
            }
            at = offset + data.len() as u64;
            bar.set_position(at);
            Ok(())
        },
    )
    .await
    .with_context(|| format!("restoring backup {} of volume {}", args.backup, args.volume))?;
    write_zeros(sink, &mut hasher, size.saturating_sub(at))?;
    match sink {
        Sink::Sparse(file) => {
            file.set_len(size)?;
            file.sync_all().context("syncing the output")?;
        }
        Sink::Stream(w) => w.flush().context("flushing the output")?,
    }
    bar.finish_and_clear();
    eprintln!(
        "restored backup {} (snapshot {}, taken {}) of volume {}: {}",
        cfg.name,
        cfg.snapshot_name,
        cfg.snapshot_created_at,
        args.volume,
        human_size(size)
    );
    if let Some(h) = hasher {
        let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        println!("sha256:{digest}");
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct VolumeRow {
    name: String,
    size: u64,
    last_backup: String,
    last_backup_at: String,
    compression: String,
}

#[derive(Debug, Serialize)]
struct BackupRow {
    name: String,
    snapshot: String,
    created: String,
    state: String,
    size: u64,
    url: String,
}

pub fn list(args: &ListArgs) -> Result<()> {
    runtime()?.block_on(async {
        let target = open_target(&args.target).await?;
        let mut out = io::stdout().lock();
        match &args.volume {
            None => {
                let mut rows = Vec::new();
                for name in volume_names(&target).await? {
                    match target.volume_config(&name).await {
                        Ok(Some(cfg)) => rows.push(VolumeRow {
                            compression: cfg
                                .compression()
                                .map(|c| c.as_str().to_string())
                                .unwrap_or_default(),
                            name,
                            size: cfg.size,
                            last_backup: cfg.last_backup_name,
                            last_backup_at: cfg.last_backup_at,
                        }),
                        Ok(None) => {}
                        Err(e) => eprintln!("warning: volume {name}: {e}"),
                    }
                }
                if args.json {
                    serde_json::to_writer_pretty(&mut out, &rows)?;
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "{:<48} {:>10} {:<26} {:<22} COMPRESSION",
                        "VOLUME", "SIZE", "LAST BACKUP", "AT"
                    )?;
                    for r in rows {
                        writeln!(
                            out,
                            "{:<48} {:>10} {:<26} {:<22} {}",
                            r.name,
                            human_size(r.size),
                            r.last_backup,
                            r.last_backup_at,
                            r.compression
                        )?;
                    }
                }
            }
            Some(volume) => {
                let names = backup_names(&target, volume).await?;
                let mut rows: Vec<BackupRow> = load_backups(&target, volume, names)
                    .await
                    .into_iter()
                    .map(|(name, cfg)| match cfg {
                        Ok(cfg) => BackupRow {
                            url: BackupUrl::format(&target.url, volume, Some(&name)),
                            state: if cfg.is_complete() {
                                "Completed"
                            } else {
                                "InProgress"
                            }
                            .into(),
                            name,
                            snapshot: cfg.snapshot_name,
                            created: cfg.snapshot_created_at,
                            size: cfg.size,
                        },
                        Err(e) => BackupRow {
                            url: BackupUrl::format(&target.url, volume, Some(&name)),
                            name,
                            snapshot: String::new(),
                            created: String::new(),
                            state: format!("Error: {e}"),
                            size: 0,
                        },
                    })
                    .collect();
                rows.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
                if args.json {
                    serde_json::to_writer_pretty(&mut out, &rows)?;
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "{:<26} {:<24} {:<22} {:>10} STATE",
                        "BACKUP", "SNAPSHOT", "CREATED", "SIZE"
                    )?;
                    for r in rows {
                        writeln!(
                            out,
                            "{:<26} {:<24} {:<22} {:>10} {}",
                            r.name,
                            r.snapshot,
                            r.created,
                            human_size(r.size),
                            r.state
                        )?;
                    }
                }
            }
        }
        Ok(())
    })
}
