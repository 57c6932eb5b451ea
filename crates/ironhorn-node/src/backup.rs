//! Backup and restore jobs on a node. A backup reads a snapshot straight from a replica
//! directory on this node (opened read-only at that snapshot: snapshot layers never change
//! while they are live), so the volume keeps serving I/O through its engine. A restore
//! writes through the volume's engine, so every replica receives it. Jobs run in the
//! background with their progress readable; at most [`BACKUP_SLOTS`] backups run at once
//! on a node, the others wait as `Pending`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ironhorn_api::backup::{BackupState, JobStatus, StartBackup, StartClone, StartRestore};
use ironhorn_backupstore::restore::RestoreMode;
use ironhorn_backupstore::{
    create_backup, restore_backup, BackupRequest, BackupTarget, BlockSink, BlockSource,
    Compression, Credentials, Progress,
};
use ironhorn_engine::{BlockDevice, Engine};
use ironhorn_format::names;
use ironhorn_replica::{Replica, ReplicaOptions};
use tokio::sync::Semaphore;

use crate::agent::{AgentError, AgentErrorKind};

/// Backups running at once on one node (Longhorn's `backup-concurrent-limit` default).
pub const BACKUP_SLOTS: usize = 2;

/// A snapshot of a replica directory, as the backupstore reads it.
#[derive(Debug)]
pub struct ReplicaSnapshot {
    replica: Replica,
}

impl ReplicaSnapshot {
    /// Opens `dir` read-only at `snapshot` (blocking).
    pub fn open(dir: &std::path::Path, snapshot: &str) -> Result<ReplicaSnapshot, AgentError> {
        let replica =
            Replica::open(dir, &ReplicaOptions::snapshot(snapshot)).map_err(AgentError::by(
                AgentErrorKind::Invalid,
                format!("opening snapshot {snapshot} of {}", dir.display()),
            ))?;
        Ok(ReplicaSnapshot { replica })
    }
}

impl BlockSource for ReplicaSnapshot {
    fn size(&self) -> u64 {
        self.replica.size()
    }

    fn changed_blocks(
        &self,
        base: Option<&str>,
        block_size: u64,
    ) -> Result<Option<Vec<u64>>, String> {
        let chain = self.replica.chain();
        let above = match base {
            None => 0,
            Some(b) => {
                let file = names::snapshot_file(b);
                match chain.iter().position(|l| *l == file) {
                    Some(i) => i + 1,
                    None => return Ok(None),
                }
            }
        };
        let index: HashMap<&str, usize> = chain.iter().enumerate().map(|(i, l)| (*l, i)).collect();
        let mut blocks: Vec<u64> = Vec::new();
        for (start, len, owner) in self.replica.allocation_runs(0, self.replica.size()) {
            let Some(layer) = owner else { continue };
            if index.get(layer).is_none_or(|&i| i < above) || len == 0 {
                continue;
            }
            let first = start / block_size;
            let last = (start + len - 1) / block_size;
            for b in first..=last {
                if blocks.last() != Some(&(b * block_size)) {
                    blocks.push(b * block_size);
                }
            }
        }
        blocks.sort_unstable();
        blocks.dedup();
        Ok(Some(blocks))
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.replica.read_at(buf, offset).map_err(|e| e.to_string())
    }
}

/// The volume's engine as the restore's destination.
struct EngineSink {
    engine: Arc<Engine>,
    runtime: tokio::runtime::Handle,
}

impl BlockSink for EngineSink {
    fn size(&self) -> u64 {
        self.engine.size()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.runtime
            .block_on(self.engine.write(data.to_vec(), offset, false))
            .map_err(|e| e.to_string())
    }

    fn zero(&self, offset: u64, len: u64) -> Result<(), String> {
        self.runtime
            .block_on(self.engine.write_zeroes(offset, len))
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
struct Job {
    progress: Arc<Progress>,
    state: Arc<Mutex<(BackupState, String)>>,
    backup: String,
}

impl Job {
    fn new(backup: &str) -> Job {
        Job {
            progress: Progress::new(),
            state: Arc::new(Mutex::new((BackupState::Pending, String::new()))),
            backup: backup.to_string(),
        }
    }

    fn status(&self, name: &str) -> JobStatus {
        let (state, error) = self
            .state
            .lock()
            .map(|s| s.clone())
            .unwrap_or((BackupState::Unknown, String::new()));
        let view = self.progress.view();
        JobStatus {
            name: name.to_string(),
            state,
            progress: if state == BackupState::Completed {
                100
            } else {
                view.percent
            },
            bytes_processed: view.bytes_processed,
            bytes_transferred: view.bytes_transferred,
            error,
            backup: self.backup.clone(),
        }
    }

    fn running(&self) -> bool {
        self.state
            .lock()
            .map(|s| matches!(s.0, BackupState::Pending | BackupState::InProgress))
            .unwrap_or(false)
    }
}

fn set_state(state: &Mutex<(BackupState, String)>, to: BackupState, error: String) {
    if let Ok(mut s) = state.lock() {
        *s = (to, error);
    }
}

async fn open_target(
    url: &str,
    credentials: &BTreeMap<String, String>,
) -> Result<BackupTarget, String> {
    BackupTarget::open(url, &Credentials::from_map(credentials))
        .await
        .map_err(|e| format!("opening the backup target: {e}"))
}

/// The node's backup and restore jobs.
#[derive(Debug)]
pub struct Jobs {
    backups: Mutex<BTreeMap<String, Job>>,
    restores: Mutex<BTreeMap<String, Job>>,
    slots: Arc<Semaphore>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            backups: Mutex::new(BTreeMap::new()),
            restores: Mutex::new(BTreeMap::new()),
            slots: Arc::new(Semaphore::new(BACKUP_SLOTS)),
        }
    }
}

impl Jobs {
    /// Starts backup `request.name` (or reports the one already running under that name).
    pub fn start_backup(&self, request: StartBackup) -> Result<JobStatus, AgentError> {
        let compression = if request.compression.is_empty() {
            Compression::Lz4
        } else {
            Compression::parse(&request.compression)
                .map_err(|e| AgentError::new(AgentErrorKind::Invalid, e.to_string()))?
        };
        let mut jobs = self.backups.lock().map_err(|_| poisoned())?;
        if let Some(job) = jobs.get(&request.name).filter(|j| j.running()) {
            return Ok(job.status(&request.name));
        }
        let job = Job::new(&request.name);
        let (progress, state, slots) =
            (job.progress.clone(), job.state.clone(), self.slots.clone());
        let name = request.name.clone();
        let status = job.status(&request.name);
        jobs.insert(request.name.clone(), job);
        tokio::spawn(async move {
            let result = async {
                let _slot = slots.acquire_owned().await.map_err(|e| e.to_string())?;
                set_state(&state, BackupState::InProgress, String::new());
                let target = open_target(&request.target.url, &request.target.credentials).await?;
                let dir = PathBuf::from(&request.replica_dir);
                let snapshot = request.snapshot.clone();
                let source =
                    tokio::task::spawn_blocking(move || ReplicaSnapshot::open(&dir, &snapshot))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                let backup_request = BackupRequest {
                    volume: request.volume.clone(),
                    snapshot: request.snapshot.clone(),
                    backup_name: Some(request.name.clone()),
                    labels: request.labels.clone(),
                    compression,
                    force_full: false,
                    storage_class: request.storage_class.clone(),
                };
                create_backup(&target, &backup_request, Arc::new(source), progress)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match result {
                Ok(_) => set_state(&state, BackupState::Completed, String::new()),
                Err(e) => {
                    tracing::warn!(backup = %name, volume = %request.volume, error = %e, "backup failed");
                    set_state(&state, BackupState::Error, e);
                }
            }
        });
        Ok(status)
    }

    pub fn backup_status(&self, name: &str) -> Result<JobStatus, AgentError> {
        self.backups
            .lock()
            .map_err(|_| poisoned())?
            .get(name)
            .map(|j| j.status(name))
            .ok_or_else(|| {
                AgentError::new(
                    AgentErrorKind::NotFound,
                    format!("no backup job {name} on this node"),
                )
            })
    }

    /// Starts restoring into `engine` (or reports the restore already running for it).
    pub fn start_restore(
        &self,
        volume: &str,
        engine: Arc<Engine>,
        request: StartRestore,
    ) -> Result<JobStatus, AgentError> {
        let source = request.backup.clone();
        self.start_fill(volume, &source, |progress, state| {
            let volume_name = volume.to_string();
            tokio::spawn(async move {
                set_state(&state, BackupState::InProgress, String::new());
                let result = async {
                    let target = open_target(&request.target.url, &request.target.credentials).await?;
                    let sink = Arc::new(EngineSink {
                        engine: engine.clone(),
                        runtime: tokio::runtime::Handle::current(),
                    });
                    let mode = match request.last_restored.clone() {
                        Some(last) => RestoreMode::Since { last },
                        None => RestoreMode::Fresh,
                    };
                    let report = restore_backup(
                        &target,
                        &request.backup_volume,
                        &request.backup,
                        &mode,
                        sink,
                        progress,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    engine
                        .flush()
                        .await
                        .map_err(|e| format!("flushing the restored volume: {e}"))?;
                    Ok::<_, String>(report)
                }
                .await;
                match result {
                    Ok(report) => {
                        tracing::info!(volume = %volume_name, backup = %report.backup, incremental = report.incremental,
                            blocks = report.blocks_written, "restore completed");
                        set_state(&state, BackupState::Completed, String::new());
                    }
                    Err(e) => {
                        tracing::warn!(volume = %volume_name, backup = %request.backup, error = %e, "restore failed");
                        set_state(&state, BackupState::Error, e);
                    }
                }
            });
        })
    }

    /// Starts copying `request.snapshot` of a replica directory on this node into `engine`
    /// (or reports the copy already running for the volume). Only the snapshot's allocated
    /// blocks are read, and blocks of zeros are not written: the new volume is sparse.
    pub fn start_clone(
        &self,
        volume: &str,
        engine: Arc<Engine>,
        request: StartClone,
    ) -> Result<JobStatus, AgentError> {
        let source = request.source.clone();
        self.start_fill(volume, &source, |progress, state| {
            let volume_name = volume.to_string();
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                set_state(&state, BackupState::InProgress, String::new());
                let result = copy_snapshot(&request, &engine, &runtime, &progress);
                match result {
                    Ok(blocks) => {
                        tracing::info!(volume = %volume_name, source = %request.source, blocks, "clone completed");
                        set_state(&state, BackupState::Completed, String::new());
                    }
                    Err(e) => {
                        tracing::warn!(volume = %volume_name, source = %request.source, error = %e, "clone failed");
                        set_state(&state, BackupState::Error, e);
                    }
                }
            });
        })
    }

    /// Starts the job that fills `volume` from `source` (a backup or a snapshot) with `run`,
    /// which spawns the work; while a job runs for the volume, the same source reports its
    /// status and another source is refused.
    fn start_fill(
        &self,
        volume: &str,
        source: &str,
        run: impl FnOnce(Arc<Progress>, Arc<Mutex<(BackupState, String)>>),
    ) -> Result<JobStatus, AgentError> {
        let mut jobs = self.restores.lock().map_err(|_| poisoned())?;
        if let Some(job) = jobs.get(volume).filter(|j| j.running()) {
            if job.backup != source {
                return Err(AgentError::new(
                    AgentErrorKind::Refused,
                    format!(
                        "volume {volume} is being filled from {} already",
                        job.backup
                    ),
                ));
            }
            return Ok(job.status(volume));
        }
        let job = Job::new(source);
        run(job.progress.clone(), job.state.clone());
        let status = job.status(volume);
        jobs.insert(volume.to_string(), job);
        Ok(status)
    }

    pub fn restore_status(&self, volume: &str) -> Result<JobStatus, AgentError> {
        self.restores
            .lock()
            .map_err(|_| poisoned())?
            .get(volume)
            .map(|j| j.status(volume))
            .ok_or_else(|| {
                AgentError::new(
                    AgentErrorKind::NotFound,
                    format!("no restore job for volume {volume} on this node"),
                )
            })
    }
}

/// The unit a clone reads and writes in.
const CLONE_BLOCK: u64 = 2 << 20;

/// Copies the snapshot's data into the engine (blocking); returns the blocks written.
fn copy_snapshot(
    request: &StartClone,
    engine: &Engine,
    runtime: &tokio::runtime::Handle,
    progress: &Progress,
) -> Result<u64, String> {
    let source = ReplicaSnapshot::open(
        std::path::Path::new(&request.replica_dir),
        &request.snapshot,
    )
    .map_err(|e| e.to_string())?;
    if source.size() > engine.size() {
        return Err(format!(
            "the snapshot is {} bytes, more than the volume's {}",
            source.size(),
            engine.size()
        ));
    }
    let blocks = source
        .changed_blocks(None, CLONE_BLOCK)?
        .unwrap_or_default();
    progress.start(blocks.len() as u64);
    let mut buf = vec![0u8; CLONE_BLOCK as usize];
    let mut written = 0;
    for offset in blocks {
        let len = CLONE_BLOCK.min(source.size() - offset) as usize;
        source.read(offset, &mut buf[..len])?;
        if buf[..len].iter().any(|b| *b != 0) {
            runtime
                .block_on(engine.write(buf[..len].to_vec(), offset, false))
                .map_err(|e| format!("writing the clone at {offset}: {e}"))?;
            written += 1;
        }
        progress.block_done(len as u64, 0);
    }
    runtime
        .block_on(engine.flush())
        .map_err(|e| format!("flushing the clone: {e}"))?;
    Ok(written)
}

fn poisoned() -> AgentError {
    AgentError::new(AgentErrorKind::Failed, "job registry poisoned")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironhorn_replica::SnapshotSpec;

    #[test]
    fn the_delta_is_what_was_written_above_the_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bs = 2u64 << 20;
        let mut r = Replica::create(dir.path(), 8 * bs).expect("create");
        r.write_at(&[1u8; 4096], 0).expect("write");
        r.write_at(&[2u8; 4096], 3 * bs + 4096).expect("write");
        r.snapshot(&SnapshotSpec::user("s1")).expect("snap");
        r.write_at(&[0u8; 8192], 5 * bs - 4096)
            .expect("zeros are data"); // spans blocks 4 and 5
        r.snapshot(&SnapshotSpec::user("s2")).expect("snap");
        r.write_at(&[3u8; 4096], 7 * bs).expect("write after s2");
        r.close().expect("close");

        let s2 = ReplicaSnapshot::open(dir.path(), "s2").expect("open");
        assert_eq!(
            s2.changed_blocks(None, bs),
            Ok(Some(vec![0, 3 * bs, 4 * bs, 5 * bs]))
        );
        assert_eq!(
            s2.changed_blocks(Some("s1"), bs),
            Ok(Some(vec![4 * bs, 5 * bs]))
        );
        assert_eq!(s2.changed_blocks(Some("nope"), bs), Ok(None));
        let mut buf = vec![9u8; 4096];
        s2.read(7 * bs, &mut buf).expect("read");
        assert!(
            buf.iter().all(|b| *b == 0),
            "the snapshot does not see later writes"
        );
    }
}
