//! The fuse-loop backend: attach (FUSE file, loop device, symlink), size refresh after an
//! expansion, detach (flush, unmount what is still mounted, unbind, end the FUSE session),
//! and the cleanup at start of whatever a killed process left behind.
//!
//! Every call here blocks (it runs `losetup`, mounts and waits for the kernel): call it from a
//! blocking thread.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, Session, SessionACL};
use ironhorn_engine::BlockDevice;
use rustix::mount::{unmount, UnmountFlags};

use super::fuse_file::{VolumeFile, FILE_NAME};
use super::kernel_device::{self, wait_for, KernelDevice};
use super::zeroing::{CountingDevice, ZeroingActivity};
use super::{links, loop_device, mounts, BlockdevError, BlockdevErrorKind, BlockdevPaths};

/// How long a detach waits for the kernel to let go of the file before it aborts the FUSE
/// connection (which fails whatever I/O is still queued).
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// A volume attached as `/dev/ironhorn/<volume>` through FUSE and a loop device.
#[derive(Debug)]
pub struct FuseLoop {
    device: KernelDevice,
    mount_point: PathBuf,
    connection: String,
    session: Option<BackgroundSession>,
    zeroing: Arc<ZeroingActivity>,
    /// The poll window stays shut while a block device is served here (see
    /// `ironhorn_runtime::poll_window::suppress`).
    _no_poll_window: ironhorn_runtime::poll_window::Suppressed,
}

/// `/sys/fs/fuse/connections/<id>` of the FUSE filesystem on device `major:minor`.
fn connection_dir(device: (u32, u32)) -> PathBuf {
    let id = (u64::from(device.0) << 20) | u64::from(device.1);
    PathBuf::from(format!("/sys/fs/fuse/connections/{id}"))
}

/// Ends a FUSE connection: queued and future requests fail at once.
fn abort_connection(dir: &Path) {
    let _ = std::fs::write(dir.join("abort"), "1");
}

impl FuseLoop {
    /// Serves `device` as `<paths.dev_dir>/<volume>`.
    pub fn attach(
        paths: &BlockdevPaths,
        volume: &str,
        device: Arc<dyn BlockDevice>,
        runtime: tokio::runtime::Handle,
    ) -> Result<FuseLoop, BlockdevError> {
        links::check_volume_name(volume)?;
        let mount_point = paths.run_dir.join(volume);
        if mounts::current()
            .iter()
            .any(|m| m.mount_point == mount_point)
        {
            // Left by a run of this node that was killed; the cleanup at start missed it.
            let _ = unmount(&mount_point, UnmountFlags::DETACH);
        }
        std::fs::create_dir_all(&mount_point).map_err(BlockdevError::by(
            BlockdevErrorKind::Failed,
            format!("creating {}", mount_point.display()),
        ))?;
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("ironhorn".into()),
            MountOption::Subtype("ironhorn".into()),
            MountOption::NoAtime,
        ];
        config.acl = SessionACL::Owner;
        config.n_threads = Some(2);
        config.clone_fd = true;
        let zeroing = Arc::new(ZeroingActivity::default());
        let device = Arc::new(CountingDevice::new(device, zeroing.clone()));
        let session = Session::new(
            VolumeFile::new(volume, device, runtime),
            &mount_point,
            &config,
        )
        .map_err(|e| {
            BlockdevError::new(BlockdevErrorKind::Unavailable, format!(
                "mounting the FUSE file for volume {volume} at {} (needs /dev/fuse and root; see `ironhorn check`)",
                mount_point.display()
            ))
            .because(e)
        })?
        .spawn()
        .map_err(BlockdevError::by(BlockdevErrorKind::Failed, "starting the FUSE session"))?;
        let fs_device = rustix::fs::stat(&mount_point)
            .map(|st| (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev)))
            .unwrap_or((0, 0));
        let mut attached = FuseLoop {
            device: KernelDevice {
                volume: volume.to_string(),
                path: PathBuf::new(),
                number: (0, 0),
                link: paths.dev_dir.join(volume),
            },
            mount_point: mount_point.clone(),
            connection: connection_dir(fs_device).display().to_string(),
            session: Some(session),
            zeroing,
            _no_poll_window: ironhorn_runtime::poll_window::suppress(),
        };
        let bound = loop_device::bind(&mount_point.join(FILE_NAME)).and_then(|dev| {
            attached.device.path = dev.clone();
            attached.device.number = kernel_device::device_number(&dev).ok_or_else(|| {
                BlockdevError::new(
                    BlockdevErrorKind::Failed,
                    format!("{} has no device number", dev.display()),
                )
            })?;
            links::publish(&paths.dev_dir, volume, &dev)
        });
        if let Err(e) = bound {
            attached.teardown();
            return Err(e);
        }
        tracing::info!(volume, device = %attached.device.path.display(), link = %attached.device.link.display(), "block device attached (fuse-loop)");
        Ok(attached)
    }

    /// The kernel device and its link.
    pub fn device(&self) -> &KernelDevice {
        &self.device
    }

    /// Makes the block device take the volume's new size (after the engine grew).
    pub fn refresh_size(&self, size: u64) -> Result<(), BlockdevError> {
        // A stat makes FUSE fetch the file's attributes, so the kernel learns the new size
        // before the loop device asks for it.
        let seen = std::fs::metadata(self.mount_point.join(FILE_NAME))
            .map(|m| m.len())
            .map_err(BlockdevError::by(
                BlockdevErrorKind::Failed,
                "reading the FUSE file's size",
            ))?;
        if seen != size {
            return Err(BlockdevError::new(
                BlockdevErrorKind::Failed,
                format!("the FUSE file shows {seen} bytes, not {size}"),
            ));
        }
        loop_device::refresh_size(&self.device.path)?;
        match loop_device::size_bytes(&self.device.path) {
            Some(now) if now == size => Ok(()),
            other => Err(BlockdevError::new(
                BlockdevErrorKind::Failed,
                format!(
                    "{} shows {other:?} bytes after the resize, not {size}",
                    self.device.path.display()
                ),
            )),
        }
    }

    /// The discards and zeroing the kernel has sent through the device.
    pub fn zeroing(&self) -> &ZeroingActivity {
        &self.zeroing
    }

    /// Detaches: flushes, unmounts what is still mounted (a forced detach), removes the
    /// link, unbinds the loop device and ends the FUSE session. Best effort past the flush:
    /// what could not be done is returned, one line each.
    pub fn teardown(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.device.number != (0, 0) {
            problems.extend(self.device.release());
            if let Err(e) = loop_device::unbind(&self.device.path) {
                problems.push(e.to_string());
            }
        }
        let released = wait_for(RELEASE_WAIT, || {
            loop_device::backing_file(&self.device.path).is_none()
        });
        if !released {
            problems.push(format!(
                "{} is still in use: its FUSE connection is aborted, so it fails I/O until its last user closes it",
                self.device.path.display()
            ));
            abort_connection(Path::new(&self.connection));
        }
        if let Err(e) = unmount(&self.mount_point, UnmountFlags::DETACH) {
            problems.push(format!("unmounting {}: {e}", self.mount_point.display()));
        }
        if let Some(session) = self.session.take() {
            if !wait_for(RELEASE_WAIT, || session.guard.is_finished()) {
                abort_connection(Path::new(&self.connection));
            }
            // Dropping the session would try to unmount again; the thread has ended.
            let BackgroundSession { guard, .. } = session;
            let _ = guard.join();
        }
        let _ = std::fs::remove_dir(&self.mount_point);
        tracing::info!(volume = self.device.volume, "block device detached");
        problems
    }
}

/// Holds the node's run directory for this process: a second process on the same data
/// directory would tear down this one's devices at its start.
pub fn lock_run_dir(paths: &BlockdevPaths) -> Result<OwnedFd, BlockdevError> {
    std::fs::create_dir_all(&paths.run_dir).map_err(BlockdevError::by(
        BlockdevErrorKind::Failed,
        format!("creating {}", paths.run_dir.display()),
    ))?;
    let lock = paths.run_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(BlockdevError::by(
            BlockdevErrorKind::Failed,
            format!("opening {}", lock.display()),
        ))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            BlockdevError::new(BlockdevErrorKind::Busy, format!(
                "another ironhorn process serves block devices from {}: one node per data directory",
                paths.run_dir.display()
            ))
        },
    )?;
    Ok(OwnedFd::from(file))
}

/// Detaches the filesystems mounted from `device`, which an earlier run served: they fail
/// every I/O now. Says what it did.
fn detach_dead_mounts(entries: &[mounts::MountEntry], device: &Path) -> Vec<String> {
    let Some(number) = kernel_device::device_number(device) else {
        return Vec::new();
    };
    mounts::mount_points_of(entries, number)
        .into_iter()
        .map(|point| {
            let _ = unmount(&point, UnmountFlags::DETACH);
            format!(
                "unmounted {} (its device {} was left by an earlier run and fails all I/O)",
                point.display(),
                device.display()
            )
        })
        .collect()
}

/// Removes what an earlier run of this node left (it was killed, or the machine rebooted):
/// loop devices bound to files under the run directory (and filesystems still mounted on
/// them, which fail every I/O now), their links, and the FUSE mounts. Returns what it did.
pub fn cleanup_stale(paths: &BlockdevPaths) -> Vec<String> {
    let mut done = Vec::new();
    let entries = mounts::current();
    for (device, file) in loop_device::bound() {
        if !file.starts_with(&paths.run_dir) {
            continue;
        }
        done.extend(detach_dead_mounts(&entries, &device));
        for (link, target) in links::all(&paths.dev_dir) {
            if target == device {
                let _ = std::fs::remove_file(&link);
                done.push(format!("removed the link {}", link.display()));
            }
        }
        match loop_device::unbind(&device) {
            Ok(()) => done.push(format!("unbound {}", device.display())),
            Err(e) => done.push(format!("could not unbind {}: {e}", device.display())),
        }
    }
    for mount in mounts::mounts_under(&entries, &paths.run_dir) {
        if mount.fs_type == "fuse" || mount.fs_type.starts_with("fuse.") {
            abort_connection(&connection_dir(mount.device));
        }
        let _ = unmount(&mount.mount_point, UnmountFlags::DETACH);
        done.push(format!("unmounted {}", mount.mount_point.display()));
    }
    // NBD devices this node made (found by their backend identifier): the process that
    // served them is gone.
    for (index, volume) in super::kernel_nbd::stale_devices(paths) {
        let device = PathBuf::from(format!("/dev/nbd{index}"));
        done.extend(detach_dead_mounts(&entries, &device));
        let _ = links::withdraw(&paths.dev_dir.join(&volume), &device);
        match super::kernel_nbd::disconnect(index) {
            Ok(()) => done.push(format!(
                "disconnected {} (volume {volume})",
                device.display()
            )),
            Err(e) => done.push(format!("could not disconnect {}: {e}", device.display())),
        }
    }
    done.extend(super::kernel_ublk::cleanup_stale(paths, &entries));
    // Links to loop devices that serve nothing (left before a reboot).
    for (link, target) in links::all(&paths.dev_dir) {
        let is_loop = target
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(loop_device::is_loop_name);
        if is_loop && loop_device::backing_file(&target).is_none() {
            let _ = std::fs::remove_file(&link);
            done.push(format!("removed the dangling link {}", link.display()));
        }
    }
    if let Ok(dirs) = std::fs::read_dir(&paths.run_dir) {
        for dir in dirs.filter_map(|d| d.ok()) {
            if dir.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(dir.path());
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_follow_the_kernels_device_numbers() {
        assert_eq!(
            connection_dir((0, 51)),
            PathBuf::from("/sys/fs/fuse/connections/51")
        );
        assert_eq!(
            connection_dir((1, 2)),
            PathBuf::from("/sys/fs/fuse/connections/1048578")
        );
    }
}
