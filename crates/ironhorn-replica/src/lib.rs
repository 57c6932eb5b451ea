//! The replica store: a Longhorn v1 replica directory on sparse files, opened read-write or
//! read-only, with the data path (read through the chain, write/unmap/flush into the head)
//! and the metadata operations (snapshot, remove, purge, revert, expand), all crash-safe;
//! and the replica server that serves a store over the replica protocol.

pub mod error;
pub mod fence;
pub mod fsio;
mod ops;
mod rebuild;
mod replica;
pub mod scan;
pub mod server;
pub mod shared;
pub mod splice;
mod stream;

pub use error::{ReplicaError, Result};
pub use ops::{PurgeReport, SnapshotSpec, EXPANSION_LABEL};
pub use replica::{now_rfc3339, FlushHandles, Replica, ReplicaOptions};
pub use shared::SharedReplica;
pub use stream::{Chunk, StreamError, StreamOptions};
