//! The storage under a backup target, reduced to what the backupstore needs: whole-object
//! read, atomic write, existence and modification time, listing, deletion. One
//! implementation per target kind; paths are `/`-separated and relative to the target root.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

pub mod file;
#[cfg(feature = "nfs")]
pub mod nfs;
#[cfg(feature = "s3")]
pub mod s3;

pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// What kind of failure the storage reported, for callers that react differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverErrorKind {
    NotFound,
    /// Wrong credentials or no permission.
    Denied,
    /// The server could not be reached or timed out: a retry may succeed.
    Unreachable,
    /// The target is full or over quota.
    NoSpace,
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    pub kind: DriverErrorKind,
    pub message: String,
}

impl DriverError {
    pub fn new(kind: DriverErrorKind, message: impl Into<String>) -> Self {
        DriverError {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(path: &str) -> Self {
        DriverError::new(DriverErrorKind::NotFound, format!("{path}: not found"))
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == DriverErrorKind::NotFound
    }

    /// Maps an I/O error on `path`, naming the path and the next step for the common cases.
    pub fn from_io(path: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => DriverErrorKind::NotFound,
            K::PermissionDenied => DriverErrorKind::Denied,
            K::StorageFull | K::QuotaExceeded => DriverErrorKind::NoSpace,
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::TimedOut
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::BrokenPipe
            | K::UnexpectedEof => DriverErrorKind::Unreachable,
            _ => DriverErrorKind::Other,
        };
        let hint = match kind {
            DriverErrorKind::NoSpace => "; free space in the backup target or delete old backups",
            DriverErrorKind::Denied => "; check the target's credentials and permissions",
            _ => "",
        };
        DriverError::new(kind, format!("{path}: {e}{hint}"))
    }
}

/// One name in a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
}

/// Object storage as the backupstore uses it. Every method is safe to call concurrently.
pub trait Driver: Send + Sync + fmt::Debug {
    /// The whole object; `NotFound` if there is none.
    fn read<'a>(&'a self, path: &'a str) -> DriverFuture<'a, Vec<u8>>;
    /// Replaces the object atomically: readers see the old or the new bytes, never a part.
    fn write<'a>(&'a self, path: &'a str, data: Vec<u8>) -> DriverFuture<'a, ()>;
    /// When the object was last written (the server's clock), `None` if it does not exist.
    fn modified<'a>(&'a self, path: &'a str) -> DriverFuture<'a, Option<SystemTime>>;
    /// The immediate children of `dir`; empty if `dir` does not exist.
    fn list<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, Vec<Entry>>;
    /// Every object below `dir` (paths relative to `dir`); empty if `dir` does not exist.
    fn list_recursive<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, Vec<String>>;
    /// Removes the object; succeeds if it was already gone.
    fn delete<'a>(&'a self, path: &'a str) -> DriverFuture<'a, ()>;
    /// Removes `dir` and everything below it.
    fn delete_tree<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, ()>;

    fn exists<'a>(&'a self, path: &'a str) -> DriverFuture<'a, bool> {
        Box::pin(async move { Ok(self.modified(path).await?.is_some()) })
    }
}

/// Refuses paths that could leave the target root (the backupstore builds every path
/// from checked names; this is the last line).
pub(crate) fn check_path(path: &str) -> Result<(), DriverError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(DriverError::new(
            DriverErrorKind::Other,
            format!("refusing the path {path:?}: not a plain relative path"),
        ))
    } else {
        Ok(())
    }
}

/// A name for the temporary file an atomic write goes through: `<name>.tmp.<nanos>`, as
/// Longhorn's file-system drivers do.
pub(crate) fn temp_name(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}.tmp.{nanos}")
}
