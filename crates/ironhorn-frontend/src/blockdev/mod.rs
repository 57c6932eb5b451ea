//! `/dev/ironhorn/<volume>`: a volume as a kernel block device on the node it is attached to.
//!
//! The backend here is fuse-loop ([`fuse_loop`]): the volume is one file in a FUSE filesystem
//! this process serves ([`fuse_file`]), bound to a loop device with direct I/O
//! ([`loop_device`]); it needs only `/dev/fuse` and loop, which every kernel has. The stable
//! name is a symlink ([`links`]). [`mounts`] tells where a device is mounted, so a detach
//! can refuse while a filesystem is in use; [`kernel_device`] holds what every backend's
//! device shares. The nbd backend ([`kernel_nbd`], messages in [`nbd_netlink`]) connects the
//! kernel NBD driver to this process's NBD server; it is chosen only on request until it has
//! been verified against a kernel with the driver.

pub mod fuse_file;
pub mod fuse_loop;
pub mod kernel_device;
pub mod kernel_nbd;
pub mod links;
pub mod loop_device;
pub mod mounts;
pub mod nbd_netlink;

use std::path::PathBuf;

use thiserror::Error;

pub use fuse_loop::{cleanup_stale, FuseLoop};
pub use kernel_device::KernelDevice;
pub use kernel_nbd::KernelNbd;

use std::time::Duration;

/// Where this node keeps its blockdev objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockdevPaths {
    /// FUSE mount points, one directory per volume (under the node's data directory, so
    /// cleanup at start touches only this node's devices).
    pub run_dir: PathBuf,
    /// Where the `<volume>` symlinks go (`/dev/ironhorn`).
    pub dev_dir: PathBuf,
}

#[derive(Debug, Error)]
pub enum BlockdevError {
    /// The device is in use (mounted); the message says where and what to do.
    #[error("{0}")]
    Busy(String),
    /// A tool or kernel feature the backend needs is missing.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

/// A volume's block device, whichever backend serves it.
#[derive(Debug)]
pub enum Attached {
    FuseLoop(FuseLoop),
    Nbd(KernelNbd),
}

impl Attached {
    /// The backend's name, as `ironhorn check` and the volume status give it.
    pub fn backend(&self) -> &'static str {
        match self {
            Attached::FuseLoop(_) => "fuse-loop",
            Attached::Nbd(_) => "nbd",
        }
    }

    pub fn device(&self) -> &KernelDevice {
        match self {
            Attached::FuseLoop(d) => d.device(),
            Attached::Nbd(d) => d.device(),
        }
    }

    /// Makes the device take the volume's new size.
    pub fn refresh_size(&self, size: u64) -> Result<(), BlockdevError> {
        match self {
            Attached::FuseLoop(d) => d.refresh_size(size),
            Attached::Nbd(_) => Err(BlockdevError::Unavailable(format!(
                "the volume grew to {size} bytes, but the nbd backend cannot resize {} while attached yet: detach and attach again",
                self.device().link.display()
            ))),
        }
    }

    /// Bytes discarded (zeroed) through the device since it was attached, where counted.
    pub fn zeroed_bytes(&self) -> Option<u64> {
        match self {
            Attached::FuseLoop(d) => Some(d.zeroed_bytes()),
            Attached::Nbd(_) => None,
        }
    }

    /// Waits until discards stop arriving (see [`FuseLoop::wait_discards_settled`]).
    pub fn wait_discards_settled(&self, quiet: Duration, limit: Duration) -> bool {
        match self {
            Attached::FuseLoop(d) => d.wait_discards_settled(quiet, limit),
            Attached::Nbd(d) => d.device().wait_idle(quiet, limit),
        }
    }

    /// Detaches (see each backend's `teardown`).
    pub fn teardown(self) -> Vec<String> {
        match self {
            Attached::FuseLoop(d) => d.teardown(),
            Attached::Nbd(d) => d.teardown(),
        }
    }
}
