//! The block device a volume exposes to its frontends. [`BlockDevice`] is the one interface
//! every frontend (NBD, blockdev) uses; [`ReplicaDevice`] serves one replica store opened in
//! this process (`ironhorn recover serve`); [`Engine`] serves a volume from N replicas,
//! in-process (`file:DIR`, or a replica server's replica in this process: [`local`]) or
//! behind replica servers.

pub mod device;
pub mod engine;
mod layer_send;
pub mod local;
pub mod remote;
pub mod window;

pub use device::{BlockDevice, DeviceError, DeviceFuture, DeviceResult, ReplicaDevice};
pub use engine::{
    Engine, EngineError, Mode, RebuildReport, ReconcileReport, ReplicaSpec, SlotStatus,
};
