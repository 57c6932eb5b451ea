//! The one error type of this crate: what was wrong with which piece of metadata.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("{file}: not valid JSON for this file: {reason}")]
    BadJson { file: String, reason: String },
    #[error("{file}: {reason}")]
    BadValue { file: String, reason: String },
    #[error("invalid snapshot name {name:?}: {reason}")]
    BadSnapshotName { name: String, reason: String },
    #[error("volume.meta names head {head:?} but {head}.meta is missing")]
    MissingHeadMeta { head: String },
    #[error("{child}.meta names parent {parent:?}, which has no metadata file (missing parent)")]
    MissingParent { child: String, parent: String },
    #[error("the snapshot chain loops back to {layer:?} (a cycle in the Parent fields)")]
    Cycle { layer: String },
    #[error("the chain has {len} layers; at most {max} are supported")]
    ChainTooLong { len: usize, max: usize },
    #[error("layer {layer:?} has metadata but its image file is missing")]
    MissingImage { layer: String },
}
