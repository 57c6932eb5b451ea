//! The one error type of the backupstore: what went wrong, with the name of the volume,
//! backup, block or file involved and, where there is one, what to do next.

use crate::driver::DriverError;

pub type Result<T, E = BackupStoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum BackupStoreError {
    #[error("invalid {what} name {name:?}: Longhorn accepts only [a-zA-Z0-9][a-zA-Z0-9_.-]+")]
    InvalidName { what: &'static str, name: String },
    #[error("invalid backup target URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{what} not found in the backup target")]
    NotFound { what: String },
    #[error("{path} in the backup target is damaged: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "block {checksum} (offset {offset}) failed verification: {reason}; nothing was written \
         for it, and the restore stops here"
    )]
    BadBlock {
        checksum: String,
        offset: u64,
        reason: String,
    },
    #[error(
        "volume {volume} is locked in the backup target by {holder} ({what}); retry when it ends"
    )]
    Locked {
        volume: String,
        holder: String,
        what: &'static str,
    },
    /// (Its message is the driver's; no source, so a chain prints it once.)
    #[error("the backup target: {0}")]
    Driver(DriverError),
    #[error("reading the snapshot: {0}")]
    Source(String),
    #[error("writing the restored volume: {0}")]
    Sink(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cancelled")]
    Cancelled,
}

impl From<DriverError> for BackupStoreError {
    fn from(e: DriverError) -> Self {
        BackupStoreError::Driver(e)
    }
}

impl BackupStoreError {
    /// True for errors a retry may cure (the target was unreachable, a lock was held).
    pub fn is_transient(&self) -> bool {
        match self {
            BackupStoreError::Locked { .. } => true,
            BackupStoreError::Driver(e) => e.kind == crate::driver::DriverErrorKind::Unreachable,
            _ => false,
        }
    }
}
