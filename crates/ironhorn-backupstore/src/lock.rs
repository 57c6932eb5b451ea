//! Longhorn's backupstore locks, so that Ironhorn and Longhorn exclude each other: a lock
//! file `locks/lock-<16 hex>.lck` holding `{"Name","Type","Acquired"}`. Type 1 is backup
//! and restore (they share it and coexist), type 2 is deletion. To take one: write it
//! unacquired, wait for others to show up, give way to any live lock of another type with
//! priority (acquired first, then older, then smaller name), else mark it acquired and
//! refresh it every minute. A lock not refreshed for 150 s is dead.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::driver::Driver;
use crate::error::{BackupStoreError, Result};
use crate::layout::{lock_path, locks_dir, new_lock_name};

pub const LOCK_EXPIRY: Duration = Duration::from_secs(150);
pub const LOCK_REFRESH: Duration = Duration::from_secs(60);
/// How long a new lock waits before it looks for rivals. Longhorn waits 2 s, for the
/// attribute caches of its kernel NFS mounts (actimeo=1). Our clients read the server
/// directly, so the wait only has to cover a rival's write in flight: two locks both see
/// each other or the later one sees the earlier one (acquired, or older), and a Longhorn
/// rival waits its own 2 s after writing, by which time ours is marked acquired.
pub const LOCK_SETTLE: Duration = Duration::from_millis(500);
/// How long to keep trying while another kind of operation holds the volume (Longhorn's
/// `LOCK_MAX_WAIT_TIME`), and the pause between tries.
pub const LOCK_MAX_WAIT: Duration = Duration::from_secs(30);
pub const LOCK_RETRY_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockType {
    /// Backups and restores (type 1): they coexist.
    BackupOrRestore,
    /// Deletion and block GC (type 2).
    Deletion,
}

impl LockType {
    fn code(self) -> i64 {
        match self {
            LockType::BackupOrRestore => 1,
            LockType::Deletion => 2,
        }
    }

    fn describe(code: i64) -> &'static str {
        match code {
            1 => "a backup or restore",
            2 => "a deletion",
            _ => "an operation",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LockFile {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    lock_type: i64,
    #[serde(rename = "Acquired")]
    acquired: bool,
}

fn encode(name: &str, ty: LockType, acquired: bool) -> Vec<u8> {
    serde_json::to_vec(&LockFile {
        name: name.to_string(),
        lock_type: ty.code(),
        acquired,
    })
    .unwrap_or_default()
}

/// A held lock; refreshed in the background until [`VolumeLock::release`] (or drop, which
/// stops the refresh and removes the file in the background).
#[derive(Debug)]
pub struct VolumeLock {
    driver: Arc<dyn Driver>,
    path: String,
    refresher: Option<JoinHandle<()>>,
}

impl VolumeLock {
    /// [`VolumeLock::acquire`], tried again every [`LOCK_RETRY_INTERVAL`] for up to
    /// `max_wait` while a rival holds the volume.
    pub async fn acquire_waiting(
        driver: Arc<dyn Driver>,
        volume: &str,
        ty: LockType,
        settle: Duration,
        max_wait: Duration,
    ) -> Result<VolumeLock> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            match VolumeLock::acquire(driver.clone(), volume, ty, settle).await {
                Err(BackupStoreError::Locked { .. })
                    if tokio::time::Instant::now() + LOCK_RETRY_INTERVAL <= deadline =>
                {
                    tokio::time::sleep(LOCK_RETRY_INTERVAL).await;
                }
                other => return other,
            }
        }
    }

    /// One try: fails at once if a rival of another type holds the volume.
    pub async fn acquire(
        driver: Arc<dyn Driver>,
        volume: &str,
        ty: LockType,
        settle: Duration,
    ) -> Result<VolumeLock> {
        let name = new_lock_name();
        let path = lock_path(volume, &name);
        driver.write(&path, encode(&name, ty, false)).await?;
        let mut guard = VolumeLock {
            driver: driver.clone(),
            path: path.clone(),
            refresher: None,
        };
        tokio::time::sleep(settle).await;
        if let Some((holder, code)) = rival(&*driver, volume, &name, ty).await? {
            guard.release().await;
            return Err(BackupStoreError::Locked {
                volume: volume.to_string(),
                holder,
                what: LockType::describe(code),
            });
        }
        driver.write(&path, encode(&name, ty, true)).await?;
        let refresh_driver = driver.clone();
        let refresh_path = path.clone();
        guard.refresher = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_REFRESH).await;
                if let Err(e) = refresh_driver
                    .write(&refresh_path, encode(&name, ty, true))
                    .await
                {
                    tracing::warn!(lock = %refresh_path, error = %e, "refreshing a backupstore lock failed");
                }
            }
        }));
        Ok(guard)
    }

    pub async fn release(mut self) {
        self.stop();
        if let Err(e) = self.driver.delete(&self.path).await {
            tracing::warn!(lock = %self.path, error = %e, "removing a backupstore lock failed; it expires in 150 s");
        }
        self.path.clear();
    }

    fn stop(&mut self) {
        if let Some(task) = self.refresher.take() {
            task.abort();
        }
    }
}

impl Drop for VolumeLock {
    fn drop(&mut self) {
        self.stop();
        if self.path.is_empty() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let driver = self.driver.clone();
            let path = std::mem::take(&mut self.path);
            handle.spawn(async move {
                let _ = driver.delete(&path).await;
            });
        }
    }
}

/// The first live lock of another type that has priority over our (unacquired) lock.
async fn rival(
    driver: &dyn Driver,
    volume: &str,
    ours: &str,
    ty: LockType,
) -> Result<Option<(String, i64)>> {
    let our_path = lock_path(volume, ours);
    let our_time = driver
        .modified(&our_path)
        .await?
        .unwrap_or_else(SystemTime::now);
    let now = SystemTime::now();
    for entry in driver.list(&locks_dir(volume)).await? {
        let Some(name) = entry.name.strip_suffix(".lck") else {
            continue;
        };
        if name == ours {
            continue;
        }
        let path = lock_path(volume, name);
        let (Ok(bytes), Ok(Some(time))) = (driver.read(&path).await, driver.modified(&path).await)
        else {
            continue; // released meanwhile
        };
        let Ok(other) = serde_json::from_slice::<LockFile>(&bytes) else {
            continue;
        };
        let expired = now.duration_since(time).is_ok_and(|age| age > LOCK_EXPIRY);
        if expired || other.lock_type == ty.code() {
            continue;
        }
        let wins = other.acquired || time < our_time || (time == our_time && name < ours);
        if wins {
            return Ok(Some((name.to_string(), other.lock_type)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::file::FileDriver;

    #[tokio::test]
    async fn a_deletion_blocks_a_backup_and_backups_coexist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver: Arc<dyn Driver> = Arc::new(FileDriver::open(dir.path()).expect("open"));
        let settle = Duration::from_millis(20);
        let del = VolumeLock::acquire(driver.clone(), "vol1", LockType::Deletion, settle)
            .await
            .expect("deletion lock");
        let err = VolumeLock::acquire(driver.clone(), "vol1", LockType::BackupOrRestore, settle)
            .await
            .expect_err("blocked");
        assert!(
            matches!(
                err,
                BackupStoreError::Locked {
                    what: "a deletion",
                    ..
                }
            ),
            "{err}"
        );
        // The refused lock left no file behind.
        assert_eq!(
            driver.list(&locks_dir("vol1")).await.map(|l| l.len()).ok(),
            Some(1)
        );
        del.release().await;
        let b1 = VolumeLock::acquire(driver.clone(), "vol1", LockType::BackupOrRestore, settle)
            .await
            .expect("backup");
        let b2 = VolumeLock::acquire(driver.clone(), "vol1", LockType::BackupOrRestore, settle)
            .await
            .expect("a second backup coexists");
        assert!(
            VolumeLock::acquire(driver.clone(), "vol1", LockType::Deletion, settle)
                .await
                .is_err()
        );
        b1.release().await;
        b2.release().await;
        assert!(driver
            .list(&locks_dir("vol1"))
            .await
            .is_ok_and(|l| l.is_empty()));
    }

    #[tokio::test]
    async fn a_longhorn_lock_file_is_honoured_and_an_expired_one_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver: Arc<dyn Driver> = Arc::new(FileDriver::open(dir.path()).expect("open"));
        let path = lock_path("vol1", "lock-0123456789abcdef");
        driver
            .write(
                &path,
                br#"{"Name":"lock-0123456789abcdef","Type":2,"Acquired":true}"#.to_vec(),
            )
            .await
            .expect("write");
        let settle = Duration::from_millis(10);
        assert!(
            VolumeLock::acquire(driver.clone(), "vol1", LockType::BackupOrRestore, settle)
                .await
                .is_err()
        );
        let old = SystemTime::now() - Duration::from_secs(200);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(&path))
            .and_then(|f| f.set_modified(old))
            .expect("age the lock");
        let lock = VolumeLock::acquire(driver.clone(), "vol1", LockType::BackupOrRestore, settle)
            .await
            .expect("expired lock ignored");
        lock.release().await;
    }
}
