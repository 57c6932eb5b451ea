//! Backups in the manager: backup targets (`default` from the settings `backup-target` and
//! `backup-target-credential-secret`, more by name), credentials from secrets or files, a
//! listing cache refreshed incrementally (only cfgs not seen before are read), backup jobs
//! on the nodes with their progress, and the restore controller that fills volumes created
//! `fromBackup` and keeps standby (disaster-recovery) volumes following their backup volume.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironhorn_api::backup::{
    Backup, BackupState, BackupTarget as TargetResource, BackupTargetSpec, BackupTargetStatus,
    BackupVolume, JobStatus, SecretData, StartRestore, TargetAccess,
};
use ironhorn_api::node_api;
use ironhorn_api::resource::{Node, RestoreStatus, Volume, VolumeState};
use ironhorn_api::ErrorCode;
use ironhorn_backupstore as store;
use ironhorn_backupstore::{BackupStoreError, BackupUrl, Credentials};
use ironhorn_control::settings;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::state::{self, NODES, VOLUMES};
use crate::Manager;

pub const BACKUP_TARGETS: &str = "backuptargets/";
pub const SECRETS: &str = "secrets/";
pub const DEFAULT_TARGET: &str = "default";

/// Backups as the API shows them: how a backupstore error maps to the API's vocabulary.
impl From<BackupStoreError> for ApiError {
    fn from(e: BackupStoreError) -> Self {
        use store::DriverErrorKind as K;
        match &e {
            BackupStoreError::InvalidName { .. }
            | BackupStoreError::InvalidUrl { .. }
            | BackupStoreError::Invalid(_) => ApiError::invalid(e.to_string()),
            BackupStoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            BackupStoreError::Locked { .. } => ApiError::conflict(e.to_string()),
            BackupStoreError::Driver(d) => match d.kind {
                K::NotFound => ApiError::not_found(e.to_string()),
                K::Unreachable => ApiError::unavailable(e.to_string()),
                K::Denied | K::NoSpace | K::Other => ApiError::internal(e.to_string()),
            },
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// A backup job the manager started, and what its node last said.
#[derive(Debug, Clone)]
struct Job {
    volume: String,
    target: String,
    node_address: String,
    snapshot: String,
    started: String,
    url: String,
    status: JobStatus,
}

#[derive(Debug, Default, Clone)]
struct VolumeEntry {
    config: Option<store::VolumeConfig>,
    backups: BTreeMap<String, Backup>,
    /// `backups` in listing order (oldest first), shared with the requests that page it.
    sorted: Arc<Vec<Backup>>,
}

fn listing_order(list: &mut [Backup]) {
    list.sort_by(|a, b| {
        a.snapshot_created
            .cmp(&b.snapshot_created)
            .then(a.name.cmp(&b.name))
    });
}

#[derive(Debug, Default)]
struct TargetCache {
    url: String,
    refreshed: Option<Instant>,
    volumes: BTreeMap<String, Arc<VolumeEntry>>,
}

/// The manager's backup state (in memory: everything durable is in the targets).
#[derive(Debug, Default)]
pub struct Backups {
    /// Open targets by URL.
    opened: Mutex<HashMap<String, (TargetAccess, store::BackupTarget)>>,
    status: Mutex<BTreeMap<String, BackupTargetStatus>>,
    /// Held only to read or swap entries; refreshes read the target without it.
    cache: Mutex<HashMap<String, TargetCache>>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    jobs: Mutex<BTreeMap<String, Job>>,
    /// When each standby volume last asked its target for new backups.
    pub(crate) standby_checked: Mutex<HashMap<String, Instant>>,
}

use crate::clock::now_rfc3339;
pub(crate) use crate::lock;

/// The credentials a secret reference names: `file:/path` (an env file or JSON on this
/// machine), a secret's name, or nothing.
pub async fn credentials(m: &Manager, secret: &str) -> Result<BTreeMap<String, String>, ApiError> {
    if secret.is_empty() {
        return Ok(BTreeMap::new());
    }
    if let Some(path) = secret.strip_prefix("file:") {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| ApiError::invalid(format!("reading the credential file {path}: {e}")))?;
        if text.trim_start().starts_with('{') {
            return serde_json::from_str(&text).map_err(|e| {
                ApiError::invalid(format!(
                    "credential file {path} is not a JSON object of strings: {e}"
                ))
            });
        }
        return Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect());
    }
    let Some((data, _)) =
        state::get::<SecretData>(m.store.as_ref(), &format!("{SECRETS}{secret}")).await?
    else {
        return Err(ApiError::invalid(format!(
            "no secret {secret:?}: create it with `ironhorn secret set {secret} KEY=VALUE...` (or use file:/path)"
        )));
    };
    Ok(data.data)
}

/// The spec of target `name` (`default` comes from the settings).
pub async fn target_spec(m: &Manager, name: &str) -> Result<BackupTargetSpec, ApiError> {
    if name == DEFAULT_TARGET {
        let s = state::settings(m.store.as_ref()).await?;
        return Ok(BackupTargetSpec {
            backup_target_url: s.get(settings::BACKUP_TARGET).to_string(),
            credential_secret: s.get(settings::BACKUP_TARGET_CREDENTIAL_SECRET).to_string(),
            poll_interval: u64::try_from(s.int(settings::BACKUPSTORE_POLL_INTERVAL)).unwrap_or(300),
        });
    }
    state::get::<TargetResource>(m.store.as_ref(), &format!("{BACKUP_TARGETS}{name}"))
        .await?
        .map(|(t, _)| t.spec)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no backup target {name:?}; `ironhorn backup target ls` lists them"
            ))
        })
}

/// Every target: `default` and the named ones.
pub async fn target_names(m: &Manager) -> Result<Vec<String>, ApiError> {
    let mut names = vec![DEFAULT_TARGET.to_string()];
    for (t, _) in state::list::<TargetResource>(m.store.as_ref(), BACKUP_TARGETS).await? {
        names.push(t.name);
    }
    Ok(names)
}

impl Backups {
    /// How to reach target `name` now.
    pub async fn access(&self, m: &Manager, name: &str) -> Result<TargetAccess, ApiError> {
        let spec = target_spec(m, name).await?;
        if spec.backup_target_url.is_empty() {
            return Err(ApiError::invalid(format!(
                "backup target {name} has no URL: set one with `ironhorn setting set backup-target nfs://server:/export/path` (or s3://bucket@region/path)"
            )));
        }
        Ok(TargetAccess {
            url: spec.backup_target_url,
            credentials: credentials(m, &spec.credential_secret).await?,
        })
    }

    /// The open target `name` (opened again when its URL or credentials changed).
    pub async fn open(
        &self,
        m: &Manager,
        name: &str,
    ) -> Result<(store::BackupTarget, TargetAccess), ApiError> {
        let access = self.access(m, name).await?;
        Ok((self.open_access(&access).await?, access))
    }

    /// The target `access` reaches, opened once and shared (an NFS target keeps its mount
    /// and connections) until its credentials change.
    pub async fn open_access(
        &self,
        access: &TargetAccess,
    ) -> Result<store::BackupTarget, ApiError> {
        if let Some((a, t)) = lock(&self.opened).get(&access.url) {
            if a == access {
                return Ok(t.clone());
            }
        }
        let target =
            store::BackupTarget::open(&access.url, &Credentials::from_map(&access.credentials))
                .await?;
        lock(&self.opened).insert(access.url.clone(), (access.clone(), target.clone()));
        Ok(target)
    }

    pub fn target_status(&self, name: &str) -> BackupTargetStatus {
        lock(&self.status).get(name).cloned().unwrap_or_default()
    }

    /// Reads the target: records whether it answers, refreshes the listing cache.
    pub async fn poll_target(&self, m: &Manager, name: &str) -> Result<(), ApiError> {
        let result = self.refresh(m, name).await;
        let status = match &result {
            Ok(()) => BackupTargetStatus {
                available: true,
                message: String::new(),
                last_synced_at: now_rfc3339(),
            },
            Err(e) => BackupTargetStatus {
                available: false,
                message: e.message.clone(),
                last_synced_at: self.target_status(name).last_synced_at,
            },
        };
        lock(&self.status).insert(name.to_string(), status);
        result
    }

    /// Brings the listing cache of target `name` up to date: volume cfgs are read again,
    /// backup cfgs only when new (or not complete when last read). Listings keep being
    /// served from the previous state meanwhile.
    pub async fn refresh(&self, m: &Manager, name: &str) -> Result<(), ApiError> {
        let _one = self.refreshing.lock().await;
        let (target, access) = self.open(m, name).await?;
        let previous: BTreeMap<String, Arc<VolumeEntry>> = lock(&self.cache)
            .get(name)
            .filter(|c| c.url == access.url)
            .map(|c| c.volumes.clone())
            .unwrap_or_default();
        let names = store::list::volume_names(&target).await?;
        let mut volumes = BTreeMap::new();
        for volume in names {
            let fresh =
                refresh_volume(&target, &volume, previous.get(&volume).map(|e| e.as_ref())).await?;
            volumes.insert(volume, Arc::new(fresh));
        }
        lock(&self.cache).insert(
            name.to_string(),
            TargetCache {
                url: access.url,
                refreshed: Some(Instant::now()),
                volumes,
            },
        );
        Ok(())
    }

    /// Refreshes one backup volume in the cache (after a backup or deletion).
    pub async fn refresh_one(&self, m: &Manager, name: &str, volume: &str) -> Result<(), ApiError> {
        let _one = self.refreshing.lock().await;
        let (target, access) = self.open(m, name).await?;
        let listed = {
            let cache = lock(&self.cache);
            cache
                .get(name)
                .filter(|c| c.url == access.url && c.refreshed.is_some())
                .map(|c| c.volumes.get(volume).cloned())
        };
        let Some(previous) = listed else {
            drop(_one);
            return self.refresh(m, name).await;
        };
        let fresh = refresh_volume(&target, volume, previous.as_deref()).await?;
        let mut cache = lock(&self.cache);
        if let Some(c) = cache.get_mut(name) {
            if fresh.config.is_some() {
                c.volumes.insert(volume.to_string(), Arc::new(fresh));
            } else {
                c.volumes.remove(volume);
            }
        }
        Ok(())
    }

    async fn ensure_listed(&self, m: &Manager, name: &str) -> Result<(), ApiError> {
        let listed = lock(&self.cache)
            .get(name)
            .is_some_and(|c| c.refreshed.is_some());
        if !listed {
            self.poll_target(m, name).await?;
        }
        Ok(())
    }

    pub async fn backup_volumes(
        &self,
        m: &Manager,
        name: &str,
    ) -> Result<Vec<BackupVolume>, ApiError> {
        self.ensure_listed(m, name).await?;
        let cache = lock(&self.cache);
        let Some(entry) = cache.get(name) else {
            return Ok(Vec::new());
        };
        Ok(entry
            .volumes
            .iter()
            .filter_map(|(v, e)| e.config.as_ref().map(|c| volume_view(name, v, c)))
            .collect())
    }

    pub async fn backup_volume(
        &self,
        m: &Manager,
        name: &str,
        volume: &str,
    ) -> Result<BackupVolume, ApiError> {
        self.ensure_listed(m, name).await?;
        let cache = lock(&self.cache);
        cache
            .get(name)
            .and_then(|c| c.volumes.get(volume))
            .and_then(|e| e.config.as_ref())
            .map(|c| volume_view(name, volume, c))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no backup volume {volume:?} in backup target {name}"
                ))
            })
    }

    /// The backups of `volume` in target `name`, oldest first, with running jobs overlaid.
    pub async fn backups(
        &self,
        m: &Manager,
        name: &str,
        volume: &str,
    ) -> Result<Arc<Vec<Backup>>, ApiError> {
        self.ensure_listed(m, name).await?;
        let listed: Arc<Vec<Backup>> = {
            let cache = lock(&self.cache);
            cache
                .get(name)
                .and_then(|c| c.volumes.get(volume))
                .map(|e| e.sorted.clone())
                .unwrap_or_default()
        };
        let jobs: Vec<(String, Job)> = lock(&self.jobs)
            .iter()
            .filter(|(_, j)| j.volume == volume && j.target == name)
            .map(|(n, j)| (n.clone(), j.clone()))
            .collect();
        if jobs.is_empty() {
            return Ok(listed);
        }
        let mut out: BTreeMap<String, Backup> =
            listed.iter().map(|b| (b.name.clone(), b.clone())).collect();
        for (backup, job) in jobs {
            let view = out.entry(backup.clone()).or_insert_with(|| Backup {
                name: backup.clone(),
                volume_name: volume.to_string(),
                snapshot_name: job.snapshot.clone(),
                snapshot_created: job.started.clone(),
                url: job.url.clone(),
                ..Backup::default()
            });
            overlay(view, &job.status);
        }
        let mut list: Vec<Backup> = out.into_values().collect();
        listing_order(&mut list);
        Ok(Arc::new(list))
    }

    /// Records a started job.
    #[allow(clippy::too_many_arguments)]
    pub fn track(
        &self,
        name: &str,
        volume: &str,
        target: &str,
        node_address: &str,
        snapshot: &str,
        url: &str,
        status: JobStatus,
    ) {
        lock(&self.jobs).insert(
            name.to_string(),
            Job {
                volume: volume.to_string(),
                target: target.to_string(),
                node_address: node_address.to_string(),
                snapshot: snapshot.to_string(),
                started: now_rfc3339(),
                url: url.to_string(),
                status,
            },
        );
    }

    /// Whether a backup of `volume` is reading one of its snapshots now.
    pub fn volume_busy(&self, volume: &str) -> Option<String> {
        lock(&self.jobs)
            .iter()
            .find(|(_, j)| {
                j.volume == volume
                    && matches!(
                        j.status.state,
                        BackupState::Pending | BackupState::InProgress
                    )
            })
            .map(|(n, _)| n.clone())
    }

    /// Asks the nodes how their running jobs are; a finished job's volume is listed again.
    pub async fn poll_jobs(&self, m: &Manager) -> bool {
        let running: Vec<(String, Job)> = lock(&self.jobs)
            .iter()
            .filter(|(_, j)| {
                matches!(
                    j.status.state,
                    BackupState::Pending | BackupState::InProgress
                )
            })
            .map(|(n, j)| (n.clone(), j.clone()))
            .collect();
        for (name, job) in &running {
            let status = match m
                .client
                .call(&job.node_address, node_api::backup_job(name))
                .await
            {
                Ok(s) => s,
                Err(e) if e.code() == ErrorCode::NotFound => JobStatus {
                    name: name.clone(),
                    state: BackupState::Error,
                    error: "the node restarted during the backup; take the backup again".into(),
                    ..job.status.clone()
                },
                Err(e) => {
                    tracing::debug!(backup = %name, error = %e, "asking about a backup job");
                    continue;
                }
            };
            let done = matches!(status.state, BackupState::Completed | BackupState::Error);
            if done {
                if status.state == BackupState::Error {
                    tracing::warn!(backup = %name, volume = %job.volume, error = %status.error, "backup failed");
                } else {
                    tracing::info!(backup = %name, volume = %job.volume, "backup completed");
                    let at = now_rfc3339();
                    let recorded = state::update::<Volume, ApiError, _>(
                        m.store.as_ref(),
                        &format!("{VOLUMES}{}", job.volume),
                        || ApiError::not_found("the volume is gone"),
                        |v| {
                            v.status.last_backup.clone_from(name);
                            v.status.last_backup_at.clone_from(&at);
                            Ok(())
                        },
                    )
                    .await;
                    if let Err(e) = recorded {
                        tracing::debug!(volume = %job.volume, error = %e, "last backup not recorded");
                    }
                }
                // The listing first, then the job's end: whoever sees the job done (another
                // poll may run at the same time) finds the backup's record from the target.
                if let Err(e) = self.refresh_one(m, &job.target, &job.volume).await {
                    tracing::warn!(target = %job.target, error = %e, "listing the backup target after a backup");
                }
            }
            if let Some(j) = lock(&self.jobs).get_mut(name) {
                j.status = status;
            }
        }
        !running.is_empty()
    }

    /// The job of backup `name`, freshly asked.
    pub async fn job_backup(&self, m: &Manager, name: &str) -> Option<Backup> {
        let _ = self.poll_jobs(m).await;
        let job = lock(&self.jobs).get(name).cloned()?;
        let mut view = Backup {
            name: name.to_string(),
            volume_name: job.volume.clone(),
            snapshot_name: job.snapshot.clone(),
            snapshot_created: job.started.clone(),
            url: job.url.clone(),
            ..Backup::default()
        };
        overlay(&mut view, &job.status);
        Some(view)
    }

    pub fn forget_job(&self, name: &str) {
        lock(&self.jobs).remove(name);
    }

    pub async fn invalidate(&self, name: &str) {
        lock(&self.cache).remove(name);
    }
}

fn overlay(view: &mut Backup, status: &JobStatus) {
    match status.state {
        BackupState::Completed => {
            view.state = BackupState::Completed;
            view.progress = 100;
        }
        state => {
            view.state = state;
            view.progress = status.progress;
            view.error = status.error.clone();
        }
    }
    view.bytes_processed = status.bytes_processed;
    view.bytes_uploaded = status.bytes_transferred;
}

fn volume_view(target: &str, name: &str, c: &store::VolumeConfig) -> BackupVolume {
    BackupVolume {
        name: name.to_string(),
        backup_target_name: target.to_string(),
        size: c.size,
        labels: c.labels.clone().unwrap_or_default(),
        created: c.created_time.clone(),
        last_backup_name: c.last_backup_name.clone(),
        last_backup_at: c.last_backup_at.clone(),
        data_stored: c
            .block_count
            .saturating_mul(store::layout::DEFAULT_BLOCK_SIZE),
        compression_method: c
            .compression()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        storage_class_name: c.storage_class_name.clone(),
    }
}

pub fn backup_view(
    target_url: &store::TargetUrl,
    volume: &str,
    name: &str,
    cfg: &Result<store::BackupConfig, BackupStoreError>,
) -> Backup {
    let url = BackupUrl::format(target_url, volume, Some(name));
    match cfg {
        Ok(cfg) => Backup {
            name: name.to_string(),
            volume_name: volume.to_string(),
            snapshot_name: cfg.snapshot_name.clone(),
            snapshot_created: cfg.snapshot_created_at.clone(),
            created: cfg.created_time.clone(),
            size: cfg.size,
            labels: cfg.labels.clone().unwrap_or_default(),
            state: if cfg.is_complete() {
                BackupState::Completed
            } else {
                BackupState::InProgress
            },
            progress: if cfg.is_complete() { 100 } else { 0 },
            bytes_processed: 0,
            bytes_uploaded: cfg.newly_uploaded_data_size.unwrap_or(0),
            url,
            error: String::new(),
            compression_method: cfg
                .compression_method
                .clone()
                .unwrap_or_else(|| "gzip".into()),
            is_incremental: cfg.is_incremental,
        },
        Err(e) => Backup {
            name: name.to_string(),
            volume_name: volume.to_string(),
            state: BackupState::Unknown,
            url,
            error: e.to_string(),
            ..Backup::default()
        },
    }
}

async fn refresh_volume(
    target: &store::BackupTarget,
    volume: &str,
    previous: Option<&VolumeEntry>,
) -> Result<VolumeEntry, ApiError> {
    let mut entry = previous.cloned().unwrap_or_default();
    entry.config = target.volume_config(volume).await.unwrap_or_else(|e| {
        tracing::warn!(volume, error = %e, "a backup volume's volume.cfg cannot be read");
        None
    });
    let names = store::list::backup_names(target, volume).await?;
    entry.backups.retain(|n, _| names.binary_search(n).is_ok());
    let stale: Vec<String> = names
        .into_iter()
        .filter(|n| {
            entry
                .backups
                .get(n)
                .is_none_or(|b| b.state != BackupState::Completed)
        })
        .collect();
    for (name, cfg) in store::list::load_backups(target, volume, stale).await {
        let mut view = backup_view(&target.url, volume, &name, &cfg);
        if view.state == BackupState::InProgress {
            // Listed in progress with no job of ours: shown as such until it completes or
            // is found abandoned (a deletion's GC removes those).
            view.error = "in progress, or interrupted (an interrupted backup is removed by the next deletion in this backup volume)".into();
        }
        entry.backups.insert(name, view);
    }
    let mut sorted: Vec<Backup> = entry.backups.values().cloned().collect();
    listing_order(&mut sorted);
    entry.sorted = Arc::new(sorted);
    Ok(entry)
}

/// Finds which known target a URL's target part is, for its credentials.
pub async fn target_of_url(
    m: &Manager,
    url: &store::TargetUrl,
) -> Result<Option<String>, ApiError> {
    for name in target_names(m).await? {
        let spec = match target_spec(m, &name).await {
            Ok(s) => s,
            Err(_) => continue,
        };
        if store::TargetUrl::parse(&spec.backup_target_url).is_ok_and(|t| t == *url) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// How to reach the target of a `fromBackup` URL: a known target's access, or the URL
/// alone (no credentials: fine for file and NFS targets).
pub async fn access_for_url(m: &Manager, url: &BackupUrl) -> Result<TargetAccess, ApiError> {
    match target_of_url(m, &url.target).await? {
        Some(name) => m.backups.access(m, &name).await,
        None => Ok(TargetAccess {
            url: url.target.to_string(),
            credentials: BTreeMap::new(),
        }),
    }
}

/// Runs the backup loops until shutdown: jobs' progress every half second while any runs,
/// the targets every `backupstore-poll-interval`, restores and standby volumes; when idle, a
/// round on any change in the store, else every 10 s.
pub async fn run(manager: Arc<Manager>, shutdown: CancellationToken) {
    let mut last_poll: HashMap<String, Instant> = HashMap::new();
    let mut changes = manager.store.changes();
    loop {
        changes.mark_unchanged();
        let mut busy = manager.backups.poll_jobs(&manager).await;
        match target_names(&manager).await {
            Ok(names) => {
                for name in names {
                    let Ok(spec) = target_spec(&manager, &name).await else {
                        continue;
                    };
                    if spec.backup_target_url.is_empty() || spec.poll_interval == 0 {
                        continue;
                    }
                    let due = last_poll
                        .get(&name)
                        .is_none_or(|at| at.elapsed() >= Duration::from_secs(spec.poll_interval));
                    if due {
                        last_poll.insert(name.clone(), Instant::now());
                        if let Err(e) = manager.backups.poll_target(&manager, &name).await {
                            tracing::warn!(target = %name, error = %e, "backup target unavailable");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing backup targets"),
        }
        match reconcile_restores(&manager).await {
            Ok(b) => busy |= b,
            Err(e) => tracing::warn!(error = %e, "restore controller round failed"),
        }
        match crate::clones::reconcile_clones(&manager).await {
            Ok(b) => busy |= b,
            Err(e) => tracing::warn!(error = %e, "clone controller round failed"),
        }
        if busy {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        // Idle: at most two rounds a second while the store keeps changing.
        let changed = async {
            let _ = changes.changed().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = changed => {}
        }
    }
}

/// Drives every volume that restores from a backup or follows one; returns whether any did.
pub async fn reconcile_restores(m: &Manager) -> Result<bool, ApiError> {
    let volumes = state::list::<Volume>(m.store.as_ref(), VOLUMES).await?;
    let mut busy = false;
    for (volume, _) in volumes {
        if volume.spec.from_backup.is_empty()
            || volume.status.state == VolumeState::Deleting
            || !(volume.status.restore_required || volume.spec.standby)
        {
            continue;
        }
        match restore_step(m, &volume).await {
            Ok(b) => busy |= b,
            Err(e) => {
                tracing::warn!(volume = %volume.name, error = %e, "restore step failed");
                let message = e.message.clone();
                let _ = update_status(m, &volume.name, |v| {
                    let restore = v.status.restore.get_or_insert_with(RestoreStatus::default);
                    restore.error = message.clone();
                })
                .await;
            }
        }
    }
    Ok(busy)
}

pub(crate) async fn update_status(
    m: &Manager,
    name: &str,
    mut change: impl FnMut(&mut Volume),
) -> Result<Volume, ApiError> {
    let v = state::update(
        m.store.as_ref(),
        &format!("{VOLUMES}{name}"),
        || ApiError::not_found(format!("volume {name} is gone")),
        |v: &mut Volume| {
            change(v);
            Ok::<(), ApiError>(())
        },
    )
    .await?;
    m.wake.notify_one();
    Ok(v)
}

/// The backup a restoring or standby volume should hold now.
async fn wanted_backup(
    m: &Manager,
    volume: &Volume,
    url: &BackupUrl,
) -> Result<Option<String>, ApiError> {
    if !volume.spec.standby {
        return Ok(url.backup.clone());
    }
    let interval = state::settings(m.store.as_ref())
        .await?
        .int(settings::BACKUPSTORE_POLL_INTERVAL)
        .max(1) as u64;
    {
        let mut checked = lock(&m.backups.standby_checked);
        let due = checked
            .get(&volume.name)
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(interval));
        if !due && !volume.status.last_restored_backup.is_empty() {
            return Ok(Some(volume.status.last_restored_backup.clone()));
        }
        checked.insert(volume.name.clone(), Instant::now());
    }
    let access = access_for_url(m, url).await?;
    let target = m.backups.open_access(&access).await?;
    let Some(cfg) = target.volume_config(&url.volume).await? else {
        return Ok(None);
    };
    Ok(Some(cfg.last_backup_name).filter(|b| !b.is_empty()))
}

/// One step of one volume's restore; returns whether work is under way.
async fn restore_step(m: &Manager, volume: &Volume) -> Result<bool, ApiError> {
    let url = BackupUrl::parse(&volume.spec.from_backup)?;
    if volume.spec.node_id.is_empty() {
        let node = match &m.local_node {
            Some(n) => n.clone(),
            None => state::list::<Node>(m.store.as_ref(), NODES)
                .await?
                .into_iter()
                .find(|(n, _)| n.status.ready)
                .map(|(n, _)| n.name)
                .ok_or_else(|| ApiError::unavailable("no node is ready to run the restore"))?,
        };
        update_status(m, &volume.name, |v| {
            v.spec.node_id = node.clone();
            v.spec.maintenance = true;
        })
        .await?;
        return Ok(true);
    }
    if volume.status.state != VolumeState::Attached {
        return Ok(true);
    }
    let Some(wanted) = wanted_backup(m, volume, &url).await? else {
        return Ok(false);
    };
    if !volume.status.restore_required && volume.status.last_restored_backup == wanted {
        return Ok(false);
    }
    let address = crate::api::engine_node_address(m, volume).await?;
    let job = match m
        .client
        .call(&address, node_api::restore_job(&volume.name))
        .await
    {
        Ok(job) => Some(job),
        Err(e) if e.code() == ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    match job {
        Some(job)
            if job.backup == wanted
                && matches!(job.state, BackupState::Pending | BackupState::InProgress) =>
        {
            update_status(m, &volume.name, |v| {
                v.status.restore = Some(RestoreStatus {
                    backup: wanted.clone(),
                    state: "InProgress".into(),
                    progress: job.progress,
                    error: String::new(),
                });
            })
            .await?;
            Ok(true)
        }
        Some(job) if job.backup == wanted && job.state == BackupState::Completed => {
            let standby = volume.spec.standby;
            update_status(m, &volume.name, |v| {
                v.status.last_restored_backup = wanted.clone();
                v.status.restore = Some(RestoreStatus {
                    backup: wanted.clone(),
                    state: "Completed".into(),
                    progress: 100,
                    error: String::new(),
                });
                if !standby {
                    v.status.restore_required = false;
                    v.spec.node_id.clear();
                    v.spec.maintenance = false;
                }
            })
            .await?;
            tracing::info!(volume = %volume.name, backup = %wanted, standby, "restore completed");
            Ok(!standby)
        }
        previous => {
            if let Some(failed) =
                previous.filter(|j| j.backup == wanted && j.state == BackupState::Error)
            {
                let retry_after = Duration::from_secs(10);
                let too_soon = {
                    let mut checked = lock(&m.backups.standby_checked);
                    let key = format!("retry/{}", volume.name);
                    let too_soon = checked
                        .get(&key)
                        .is_some_and(|at| at.elapsed() < retry_after);
                    if !too_soon {
                        checked.insert(key, Instant::now());
                    }
                    too_soon
                };
                if too_soon {
                    return Ok(false);
                }
                tracing::warn!(volume = %volume.name, backup = %wanted, error = %failed.error, "restore failed; retrying");
                let error = failed.error.clone();
                update_status(m, &volume.name, |v| {
                    v.status.restore = Some(RestoreStatus {
                        backup: wanted.clone(),
                        state: "Error".into(),
                        progress: failed.progress,
                        error: error.clone(),
                    });
                })
                .await?;
            }
            let access = access_for_url(m, &url).await?;
            let last = Some(volume.status.last_restored_backup.clone()).filter(|l| !l.is_empty());
            let request = StartRestore {
                target: access,
                backup_volume: url.volume.clone(),
                backup: wanted.clone(),
                last_restored: last,
            };
            m.client
                .call(&address, node_api::start_restore(&volume.name, &request))
                .await?;
            tracing::info!(volume = %volume.name, backup = %wanted, "restore started");
            Ok(true)
        }
    }
}
