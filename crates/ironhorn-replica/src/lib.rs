//! The replica store: a Longhorn v1 replica directory on sparse files, opened read-write or
//! read-only, with the data path (read through the chain, write/unmap/flush into the head)
//! and the metadata operations (snapshot, remove, purge, revert, expand), all crash-safe.

pub mod error;
pub mod fsio;
mod ops;
mod replica;
pub mod scan;
mod stream;

pub use error::{ReplicaError, Result};
pub use ops::{PurgeReport, SnapshotSpec, EXPANSION_LABEL};
pub use replica::{now_rfc3339, Replica, ReplicaOptions};
pub use stream::{Chunk, StreamError, StreamOptions};
