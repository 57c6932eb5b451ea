//! Longhorn's backupstore, read and written exactly: the layout under `backupstore/volumes/`,
//! the cfg files with their quirks, SHA-512-named compressed blocks, locks, incremental
//! backups, full and incremental restores, deletion with block garbage collection.
//!
//! The core is pure (layout, cfg codecs, block codecs, delta and merge logic); the shell
//! is a [`Driver`] per target kind (a directory, NFSv3 spoken from user space, S3) and the
//! async operations in [`backup`], [`restore`] and [`delete`] that drive it. Snapshot
//! content comes in through [`BlockSource`] and restored content leaves through
//! [`BlockSink`], so this crate knows nothing of replicas or engines.

pub mod backup;
pub mod codec;
pub mod config;
pub mod delete;
pub mod driver;
mod error;
pub mod layout;
pub mod list;
pub mod lock;
pub mod restore;
pub mod target;
pub mod url;

pub use backup::{create_backup, BackupRequest, BlockSource, Delta};
pub use codec::Compression;
pub use config::{BackupConfig, BlockEntry, VolumeConfig};
pub use driver::{Driver, DriverError, DriverErrorKind};
pub use error::{BackupStoreError, Result};
pub use restore::{restore_backup, BlockSink, RestoreReport};
pub use target::{BackupTarget, Credentials, Progress};
pub use url::{BackupUrl, TargetUrl};
