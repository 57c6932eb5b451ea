//! The block device a volume exposes to its frontends. [`BlockDevice`] is the one interface
//! every frontend (NBD, blockdev) uses; [`ReplicaDevice`] serves one replica store opened in
//! this process (the `file:DIR` fast path, and `ironhorn recover serve`).

pub mod device;

pub use device::{BlockDevice, DeviceError, ReplicaDevice};
