//! A backup target: its URL, the driver that reaches it, credentials, and the shared
//! progress/cancellation record of a long operation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{BackupConfig, VolumeConfig};
use crate::driver::{file::FileDriver, Driver};
use crate::error::{BackupStoreError, Result};
use crate::layout::{backup_cfg, validate_name, volume_cfg};
use crate::lock::{LockType, VolumeLock, LOCK_MAX_WAIT, LOCK_SETTLE};
use crate::url::TargetUrl;

/// Credentials of an S3 target, with Longhorn's secret keys as names.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`
    pub secret_access_key: Option<String>,
    /// `AWS_ENDPOINTS`: a custom endpoint such as `http://10.0.0.5:9000`.
    pub endpoint: Option<String>,
    /// `VIRTUAL_HOSTED_STYLE`: `true` for bucket-in-host addressing (path style otherwise).
    pub virtual_hosted_style: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("endpoint", &self.endpoint)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

impl Credentials {
    /// From a map of Longhorn's secret keys (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ENDPOINTS`, `VIRTUAL_HOSTED_STYLE`); other keys are ignored.
    pub fn from_map(map: &BTreeMap<String, String>) -> Credentials {
        let get = |k: &str| {
            map.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Credentials {
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
            endpoint: get("AWS_ENDPOINTS"),
            virtual_hosted_style: get("VIRTUAL_HOSTED_STYLE").is_some_and(|v| v == "true"),
        }
    }

    /// From the process environment, under the same names.
    pub fn from_env() -> Credentials {
        let map = [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ENDPOINTS",
            "VIRTUAL_HOSTED_STYLE",
        ]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
        Credentials::from_map(&map)
    }

    /// From a file of `KEY=VALUE` lines (an env file) or a JSON object of strings.
    pub fn from_file(path: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            BackupStoreError::Invalid(format!("reading credentials {}: {e}", path.display()))
        })?;
        let map: BTreeMap<String, String> = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).map_err(|e| {
                BackupStoreError::Invalid(format!(
                    "credentials {} is not a JSON object of strings: {e}",
                    path.display()
                ))
            })?
        } else {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                .collect()
        };
        Ok(Credentials::from_map(&map))
    }
}

/// An open backup target.
#[derive(Debug, Clone)]
pub struct BackupTarget {
    pub url: TargetUrl,
    pub driver: Arc<dyn Driver>,
    /// How long a new lock waits for rivals (see [`LOCK_SETTLE`]).
    pub lock_settle: Duration,
    /// How long to keep trying to lock a volume another kind of operation holds.
    pub lock_wait: Duration,
    /// Blocks in flight at once (read, compress, upload; or fetch, decode, write).
    pub concurrency: usize,
}

impl BackupTarget {
    /// Connects to the target `url` names.
    pub async fn open(url: &str, credentials: &Credentials) -> Result<BackupTarget> {
        let parsed = TargetUrl::parse(url)?;
        let driver: Arc<dyn Driver> = match &parsed {
            TargetUrl::File { path } => Arc::new(FileDriver::open(path)?),
            #[cfg(feature = "nfs")]
            TargetUrl::Nfs {
                server,
                path,
                options,
            } => Arc::new(crate::driver::nfs::NfsDriver::connect(server, path, options).await?),
            #[cfg(feature = "s3")]
            TargetUrl::S3 {
                bucket,
                region,
                prefix,
            } => Arc::new(crate::driver::s3::S3Driver::open(
                bucket,
                region.as_deref(),
                prefix,
                credentials,
            )?),
            #[allow(unreachable_patterns)]
            other => {
                let _ = credentials;
                return Err(BackupStoreError::Invalid(format!(
                    "this build has no {} target support",
                    other.kind()
                )));
            }
        };
        Ok(BackupTarget::with_driver(parsed, driver))
    }

    pub fn with_driver(url: TargetUrl, driver: Arc<dyn Driver>) -> BackupTarget {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        BackupTarget {
            url,
            driver,
            lock_settle: LOCK_SETTLE,
            lock_wait: LOCK_MAX_WAIT,
            concurrency: (cores * 2).clamp(4, 16),
        }
    }

    /// The backup volume's cfg, `None` if the volume has no backups here.
    pub async fn volume_config(&self, volume: &str) -> Result<Option<VolumeConfig>> {
        validate_name("volume", volume)?;
        let path = volume_cfg(volume);
        match self.driver.read(&path).await {
            Ok(bytes) => VolumeConfig::decode(&path, &bytes).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A backup's cfg.
    pub async fn backup_config(&self, volume: &str, backup: &str) -> Result<BackupConfig> {
        validate_name("volume", volume)?;
        validate_name("backup", backup)?;
        let path = backup_cfg(volume, backup);
        match self.driver.read(&path).await {
            Ok(bytes) => BackupConfig::decode(&path, &bytes),
            Err(e) if e.is_not_found() => Err(BackupStoreError::NotFound {
                what: format!("backup {backup} of volume {volume}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Locks `volume` for `ty` (waiting up to [`BackupTarget::lock_wait`] for a rival).
    pub async fn lock(&self, volume: &str, ty: LockType) -> Result<VolumeLock> {
        VolumeLock::acquire_waiting(
            self.driver.clone(),
            volume,
            ty,
            self.lock_settle,
            self.lock_wait,
        )
        .await
    }

    /// Checks that the target answers: lists the volumes directory.
    pub async fn check(&self) -> Result<()> {
        self.driver.list(crate::layout::VOLUMES_DIR).await?;
        Ok(())
    }
}

/// Progress of a backup or restore, readable while it runs, and its cancel switch.
#[derive(Debug, Default)]
pub struct Progress {
    total_blocks: AtomicU64,
    done_blocks: AtomicU64,
    /// Bytes of volume data processed (read and checksummed, or restored).
    bytes_processed: AtomicU64,
    /// Bytes sent to (backup) or fetched from (restore) the target, compressed.
    bytes_transferred: AtomicU64,
    cancelled: AtomicBool,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgressView {
    pub total_blocks: u64,
    pub done_blocks: u64,
    pub bytes_processed: u64,
    pub bytes_transferred: u64,
    pub percent: u8,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    pub fn start(&self, total_blocks: u64) {
        self.total_blocks.store(total_blocks, Ordering::Relaxed);
    }

    pub fn block_done(&self, processed: u64, transferred: u64) {
        self.done_blocks.fetch_add(1, Ordering::Relaxed);
        self.bytes_processed.fetch_add(processed, Ordering::Relaxed);
        self.bytes_transferred
            .fetch_add(transferred, Ordering::Relaxed);
    }

    pub fn view(&self) -> ProgressView {
        let total = self.total_blocks.load(Ordering::Relaxed);
        let done = self.done_blocks.load(Ordering::Relaxed);
        let percent = (done.min(total) * 100)
            .checked_div(total)
            .map_or(0, |p| u8::try_from(p).unwrap_or(100));
        ProgressView {
            total_blocks: total,
            done_blocks: done,
            bytes_processed: self.bytes_processed.load(Ordering::Relaxed),
            bytes_transferred: self.bytes_transferred.load(Ordering::Relaxed),
            percent,
        }
    }

    /// Asks the operation to stop at the next block.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub(crate) fn check_cancelled(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(BackupStoreError::Cancelled)
        } else {
            Ok(())
        }
    }
}
