//! The one error type of the replica store: what failed, on which file, and why.

use std::io;
use std::path::PathBuf;

use ironhorn_format::FormatError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("replica directory {dir}: {source}")]
    Format {
        dir: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("{0} is not a replica directory: it has no volume.meta (pass the directory that holds volume.meta and the volume-*.img files)")]
    NotReplicaDir(PathBuf),
    #[error("{0} already holds a replica (volume.meta exists)")]
    AlreadyExists(PathBuf),
    #[error("the replica is open read-only")]
    ReadOnly,
    #[error("range offset {offset} length {len} is beyond the volume size {size}")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("snapshot {name:?} does not exist; snapshots: {known}")]
    UnknownSnapshot { name: String, known: String },
    #[error("snapshot {0:?} already exists")]
    SnapshotExists(String),
    #[error("too many snapshots: the live chain has {layers} layers and at most {max} are allowed; remove snapshots and purge")]
    TooManySnapshots { layers: usize, max: usize },
    #[error("invalid size {size}: {reason}")]
    InvalidSize { size: u64, reason: &'static str },
    #[error("backing file {path}: {reason}")]
    BackingFile { path: PathBuf, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("fenced: attachment generation {current} of this volume has claimed the replica, so generation {caller} may not use it any more (the volume was attached again elsewhere; this engine must stop)")]
    Fenced { caller: u64, current: u64 },
}

impl ReplicaError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ReplicaError::Io { op, path, source }
    }
}

pub type Result<T, E = ReplicaError> = std::result::Result<T, E>;
