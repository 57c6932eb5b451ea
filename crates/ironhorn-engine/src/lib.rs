//! The block device a volume exposes to its frontends. [`BlockDevice`] is the one interface
//! every frontend (NBD, blockdev) uses; [`ReplicaDevice`] serves one replica store opened in
//! this process (`ironhorn recover serve`); [`Engine`] serves a volume from N replicas, each
//! reached through a [`ReplicaBackend`]: in-process (`file:DIR`, or a replica server's
//! replica in this process: [`LocalReplicas`]) or behind a replica server ([`remote`]).

pub mod backend;
pub mod device;
pub mod engine;
pub mod error;
pub(crate) mod layer_send;
pub mod local;
pub mod remote;
#[cfg(test)]
mod testing;
pub mod window;

pub use backend::{CallFuture, InProcess, ReplicaBackend};
pub use device::{BlockDevice, DeviceError, DeviceFuture, DeviceResult, ReplicaDevice};
pub use engine::{
    Engine, Fencing, Mode, RebuildReport, ReconcileReport, ReplicaSpec, SlotStatus, WriteQuorum,
};
pub use error::{CallError, CallErrorKind, EngineError, EngineErrorKind, Refusal};
pub use layer_send::SendError;
pub use local::LocalReplicas;
