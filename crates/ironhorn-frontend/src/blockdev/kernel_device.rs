//! What every backend's kernel device has in common: the stable link to it, where it is
//! mounted, the busy check a detach makes, the flush, and the release of its filesystems and
//! link when it goes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::mount::{unmount, UnmountFlags};

use super::{links, mounts, BlockdevError, BlockdevErrorKind};

/// A kernel block device serving a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelDevice {
    pub volume: String,
    /// `/dev/loopN`, `/dev/nbdN`, ...
    pub path: PathBuf,
    /// Its `major:minor`.
    pub number: (u32, u32),
    /// `/dev/ironhorn/<volume>`.
    pub link: PathBuf,
}

impl KernelDevice {
    /// Where the device is mounted now.
    pub fn mount_points(&self) -> Vec<PathBuf> {
        mounts::mount_points_of(&mounts::current(), self.number)
    }

    /// Why a detach without force must wait, if it must: the device is mounted.
    pub fn busy(&self) -> Option<String> {
        let points = self.mount_points();
        (!points.is_empty()).then(|| {
            let list: Vec<String> = points.iter().map(|p| p.display().to_string()).collect();
            format!(
                "volume {} is mounted at {} ({}): unmount it first (`umount {}`), or detach with --force",
                self.volume,
                list.join(", "),
                self.link.display(),
                list[0]
            )
        })
    }

    /// Requests the block layer has given the device and not seen completed.
    pub fn in_flight(&self) -> u64 {
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return 0;
        };
        std::fs::read_to_string(format!("/sys/block/{name}/inflight"))
            .ok()
            .and_then(|t| t.split_whitespace().map(|n| n.parse::<u64>().ok()).sum())
            .unwrap_or(0)
    }

    /// Waits (up to `limit`) until nothing has been in flight on the device for `quiet`.
    pub fn wait_idle(&self, quiet: Duration, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.in_flight() == 0 {
                std::thread::sleep(quiet);
                if self.in_flight() == 0 {
                    return true;
                }
            }
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes what the kernel holds for the block device (writes through its page cache by
    /// programs that did not sync) and flushes the volume.
    pub fn flush(&self) -> Result<(), BlockdevError> {
        File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(BlockdevError::by(
                BlockdevErrorKind::Failed,
                format!("flushing {}", self.path.display()),
            ))
    }

    /// The first half of every detach: syncs and unmounts the filesystems still mounted from
    /// the device (only a forced detach gets here with any), flushes the device, and removes
    /// the link. Best effort: what could not be done is returned, one line each.
    pub fn release(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for point in self.mount_points().into_iter().rev() {
            tracing::warn!(volume = self.volume, mount = %point.display(), "unmounting a filesystem on a volume detached with force");
            // What the filesystem holds in memory goes to the volume first; a busy
            // filesystem is then only detached, and writes made after this are lost.
            if let Err(e) = sync_filesystem(&point) {
                problems.push(e);
            }
            if let Err(e) = unmount_path(&point) {
                problems.push(e);
            }
        }
        if let Err(e) = self.flush() {
            problems.push(e.to_string());
        }
        if let Err(e) = links::withdraw(&self.link, &self.path) {
            problems.push(e.to_string());
        }
        problems
    }
}

/// `major:minor` of a block device node.
pub fn device_number(device: &Path) -> Option<(u32, u32)> {
    let st = rustix::fs::stat(device).ok()?;
    Some((rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)))
}

/// Writes out everything the filesystem mounted at `path` holds in memory.
pub fn sync_filesystem(path: &Path) -> Result<(), String> {
    File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|dir| rustix::fs::syncfs(&dir).map_err(|e| e.to_string()))
        .map_err(|e| format!("syncing the filesystem at {}: {e}", path.display()))
}

/// Unmounts `path`; when it is busy, detaches it (it goes once its last user leaves).
pub fn unmount_path(path: &Path) -> Result<(), String> {
    match unmount(path, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(_) => unmount(path, UnmountFlags::DETACH)
            .map_err(|e| format!("unmounting {}: {e}", path.display())),
    }
}

/// Waits until `done` holds or `limit` passes; whether it held. Polls the kernel's view.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
