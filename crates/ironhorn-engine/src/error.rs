//! The engine's errors: [`CallError`], how one call to one replica went wrong, and
//! [`EngineError`], why the engine could not start or act. Both keep their cause as a typed
//! source; what they mean for a caller is [`CallError::kind`] and [`EngineError::kind`].

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use ironhorn_proto::replica::{ErrorCode, FrameError};
use ironhorn_replica::server::code_of;
use ironhorn_replica::ReplicaError;

use crate::remote::ClientError;

/// How one call to a replica went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The replica in this process returned an error.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The replica server returned an error, or its connection is gone.
    #[error(transparent)]
    Remote(#[from] ClientError),
    #[error("connecting: {0}")]
    Connect(#[source] io::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("its replica server in this process stopped")]
    Retired,
    #[error("short read: {got} of {wanted} bytes")]
    ShortRead { got: usize, wanted: usize },
    #[error("answered {asked} with another reply")]
    UnexpectedReply { asked: &'static str },
    #[error("decoding its answer: {0}")]
    Decode(#[source] FrameError),
    #[error(transparent)]
    LayerSend(#[from] crate::layer_send::SendError),
    #[error("in-process replica task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// A placeholder for a replica that could not be opened when the engine started.
    #[error("it could not be opened when the engine started")]
    NotOpened,
}

/// What a [`CallError`] means for the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallErrorKind {
    /// It turned down a bad request (unknown snapshot, bad name, conflict): it stays healthy.
    Refused,
    /// It could not do what a healthy replica does: it is marked ERR.
    Failed,
    /// A newer attachment of the volume has claimed it: this engine must stop serving.
    Fenced,
}

impl CallError {
    pub fn kind(&self) -> CallErrorKind {
        let code = match self {
            CallError::Replica(e) => code_of(e),
            CallError::Remote(ClientError::Remote(code, _)) => *code,
            CallError::LayerSend(crate::layer_send::SendError::Refused(e)) => e.code,
            _ => return CallErrorKind::Failed,
        };
        match code {
            ErrorCode::Invalid
            | ErrorCode::NotFound
            | ErrorCode::Conflict
            | ErrorCode::OutOfRange => CallErrorKind::Refused,
            ErrorCode::ReadOnly | ErrorCode::NoSpace | ErrorCode::Io => CallErrorKind::Failed,
            ErrorCode::Fenced => CallErrorKind::Fenced,
        }
    }

    /// A newer attachment has claimed the replica.
    pub fn is_fenced(&self) -> bool {
        self.kind() == CallErrorKind::Fenced
    }

    pub fn is_refusal(&self) -> bool {
        self.kind() == CallErrorKind::Refused
    }
}

/// Requests the engine turns down itself, before any replica sees them.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("a replica is being rebuilt; {0} after it finishes")]
    RebuildRunning(&'static str),
    #[error("another rebuild is running")]
    AnotherRebuild,
    #[error("a volume cannot shrink: it is {size} bytes")]
    Shrink { size: u64 },
    #[error("{0} is not a replica of this volume")]
    NotAReplica(String),
    #[error("{0} is the last healthy replica; add another first")]
    LastHealthy(String),
    #[error("{0} is already a replica of this volume")]
    AlreadyAReplica(String),
    #[error("{replica} holds a replica of {size} bytes; the volume is {volume_size} bytes")]
    SizeDiffers {
        replica: String,
        size: u64,
        volume_size: u64,
    },
    #[error("{0}: its last rebuild did not finish")]
    UnfinishedRebuild(String),
    #[error("{0}: snapshots or the size changed while it was away")]
    ChangedWhileAway(String),
    #[error("{0}: its snapshot tree differs from the volume's")]
    TreeDiffers(String),
}

/// Why the engine could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// At start, no replica could serve: each one's problem.
    #[error("no replica can serve volume {volume}: {}", problems.join("; "))]
    NoReplica {
        volume: String,
        problems: Vec<String>,
    },
    /// At start, fewer replicas took the attachment's generation than the manager asked for:
    /// an engine of the older attachment (on a node that does not answer) might still find
    /// a majority that acknowledges its writes.
    #[error("volume {volume}: only {claimed} replicas took attachment generation {generation}, {needed} are needed so that an engine left on an unreachable node can acknowledge nothing more: {}", problems.join("; "))]
    TooFewClaimed {
        volume: String,
        generation: u64,
        claimed: usize,
        needed: usize,
        problems: Vec<String>,
    },
    /// Every replica failed: nothing can carry out `op`.
    #[error("{op}: no healthy replica left for volume {volume}")]
    NoHealthyReplica { volume: String, op: &'static str },
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// One replica refused or failed `op`.
    #[error("{op} on {replica}: {source}")]
    Replica {
        op: Cow<'static, str>,
        replica: String,
        #[source]
        source: Box<CallError>,
    },
}

/// What an [`EngineError`] means for a caller (an HTTP status, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineErrorKind {
    /// No replica can serve the volume.
    NoReplica,
    /// The request was turned down; nothing changed and every replica is as healthy as it was.
    Refused,
    /// The operation failed on the replicas.
    Failed,
}

impl EngineError {
    pub fn kind(&self) -> EngineErrorKind {
        match self {
            EngineError::NoReplica { .. } | EngineError::TooFewClaimed { .. } => {
                EngineErrorKind::NoReplica
            }
            EngineError::Refused(_) => EngineErrorKind::Refused,
            EngineError::Replica { source, .. } if source.is_refusal() => EngineErrorKind::Refused,
            EngineError::NoHealthyReplica { .. } | EngineError::Replica { .. } => {
                EngineErrorKind::Failed
            }
        }
    }

    pub(crate) fn replica(
        op: impl Into<Cow<'static, str>>,
        replica: impl ToString,
    ) -> impl FnOnce(CallError) -> EngineError {
        let (op, replica) = (op.into(), replica.to_string());
        move |source| EngineError::Replica {
            op,
            replica,
            source: Box::new(source),
        }
    }
}
