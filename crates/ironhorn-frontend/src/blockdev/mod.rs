//! `/dev/ironhorn/<volume>`: a volume as a kernel block device on the node it is attached to.
//!
//! Three backends, best first: ublk ([`kernel_ublk`], messages in [`ironhorn_proto::ublk`]): the kernel's
//! ublk driver, served through io_uring; nbd ([`kernel_nbd`], messages in
//! [`ironhorn_proto::nbd_netlink`]):
//! the kernel NBD driver connected over netlink to this process's NBD server; fuse-loop
//! ([`fuse_loop`]): the volume is one file in a FUSE filesystem this process serves
//! ([`fuse_file`]), bound to a loop device with direct I/O ([`loop_device`]), which needs only
//! `/dev/fuse` and loop. The stable name is a symlink ([`links`]). [`mounts`] tells where a
//! device is mounted, so a detach can refuse while a filesystem is in use; [`kernel_device`]
//! holds what every backend's device shares; [`zeroing`] counts the discards that reach the
//! volume.

pub mod fuse_file;
pub mod fuse_loop;
pub mod kernel_device;
pub mod kernel_nbd;
pub mod kernel_ublk;
pub mod links;
pub mod loop_device;
pub mod mounts;
pub mod zeroing;

use std::path::PathBuf;

pub use fuse_loop::{cleanup_stale, FuseLoop};
pub use kernel_device::KernelDevice;
pub use kernel_nbd::KernelNbd;
pub use kernel_ublk::KernelUblk;
pub use zeroing::ZeroingActivity;

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

/// What a [`BlockdevError`] means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockdevErrorKind {
    /// The device is in use (mounted); the message says where and what to do.
    Busy,
    /// A tool or kernel feature the backend needs is missing.
    Unavailable,
    /// The kernel or a tool failed.
    Failed,
}

/// Why a block device could not be attached, resized or detached: the kind of problem, what
/// was being done, and the error underneath (an I/O error, an errno, a decoder's error).
pub type BlockdevError = ironhorn_runtime::error::KindError<BlockdevErrorKind>;

/// A volume's block device, whichever backend serves it.
#[derive(Debug)]
pub enum Attached {
    FuseLoop(FuseLoop),
    Nbd(KernelNbd),
    Ublk(Box<KernelUblk>),
}

impl Attached {
    /// The backend's name, as `ironhorn check` and the volume status give it.
    pub fn backend(&self) -> &'static str {
        match self {
            Attached::FuseLoop(_) => "fuse-loop",
            Attached::Nbd(_) => "nbd",
            Attached::Ublk(_) => "ublk",
        }
    }

    pub fn device(&self) -> &KernelDevice {
        match self {
            Attached::FuseLoop(d) => d.device(),
            Attached::Nbd(d) => d.device(),
            Attached::Ublk(d) => d.device(),
        }
    }

    /// Makes the device take the volume's new size.
    pub fn refresh_size(&self, size: u64) -> Result<(), BlockdevError> {
        match self {
            Attached::FuseLoop(d) => d.refresh_size(size),
            Attached::Nbd(d) => d.refresh_size(size),
            Attached::Ublk(d) => d.refresh_size(size),
        }
    }

    /// The discards and zeroing the kernel has sent through the device.
    pub fn zeroing(&self) -> &ZeroingActivity {
        match self {
            Attached::FuseLoop(d) => d.zeroing(),
            Attached::Nbd(d) => d.zeroing(),
            Attached::Ublk(d) => d.zeroing(),
        }
    }

    /// Bytes discarded or zeroed through the device since it was attached.
    pub fn zeroed_bytes(&self) -> u64 {
        self.zeroing().snapshot().1
    }

    /// Waits (up to `limit`) until discards stop arriving: none running, none in the block
    /// layer, and none started or ended for `quiet`. A filesystem may return from FITRIM
    /// while its discards are still being sent. Whether it settled.
    pub fn wait_discards_settled(&self, quiet: Duration, limit: Duration) -> bool {
        self.zeroing()
            .wait_settled(|| self.device().in_flight(), quiet, limit)
    }

    /// Detaches (see each backend's `teardown`).
    pub fn teardown(self) -> Vec<String> {
        match self {
            Attached::FuseLoop(d) => d.teardown(),
            Attached::Nbd(d) => d.teardown(),
            Attached::Ublk(d) => d.teardown(),
        }
    }
}
