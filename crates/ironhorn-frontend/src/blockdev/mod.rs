//! `/dev/ironhorn/<volume>`: a volume as a kernel block device on the node it is attached to.
//!
//! The backend here is fuse-loop ([`fuse_loop`]): the volume is one file in a FUSE filesystem
//! this process serves ([`fuse_file`]), bound to a loop device with direct I/O
//! ([`loop_device`]); it needs only `/dev/fuse` and loop, which every kernel has. The stable
//! name is a symlink ([`links`]). [`mounts`] tells where a device is mounted, so a detach
//! can refuse while a filesystem is in use. [`nbd_netlink`] speaks the kernel NBD driver's
//! netlink interface, for the nbd backend.

pub mod fuse_file;
pub mod fuse_loop;
pub mod links;
pub mod loop_device;
pub mod mounts;
pub mod nbd_netlink;

use std::path::PathBuf;

use thiserror::Error;

pub use fuse_loop::{cleanup_stale, FuseLoop};

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
