//! Pure logic of Longhorn's v1 replica directory format: metadata codecs, file names, the
//! snapshot tree and live chain, the 4 KiB sector-to-layer map and purge plans.
//!
//! Nothing here touches files: callers hand in bytes and facts (file names, inode numbers,
//! extents) and get values back. `ironhorn-replica` applies the results to real files.
//! The facts come from `shared/spec/longhorn-v1-format.md`.

pub mod chain;
pub mod checksum;
pub mod error;
pub mod meta;
pub mod names;
pub mod purge;
pub mod recent;
pub mod revision;
pub mod sector_map;

pub use error::FormatError;

/// Granularity of the location map and of every write into a head (Longhorn `VolumeSectorSize`).
pub const SECTOR_SIZE: u64 = 4096;
/// Block size recorded in `volume.meta` and advertised to frontends (`ReplicaSectorSize`).
pub const REPLICA_SECTOR_SIZE: u64 = 512;
/// Longest chain of layers (snapshots plus head) a replica may hold (`maximumChainLength`).
pub const MAX_CHAIN_LENGTH: usize = 250;
