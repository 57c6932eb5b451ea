//! [`BlockDevice`]: byte-addressed reads, writes, zeroing, trim and flush; and
//! [`ReplicaDevice`], a replica store behind it.
//!
//! Calls are async. Reads may run concurrently with each other; writes to a replica are
//! serialised by its lock.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use ironhorn_replica::{Replica, ReplicaError, SharedReplica};
use thiserror::Error;

/// Why a block device refused or failed a request; frontends map these to their own codes.
#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("offset {offset} length {len} is beyond the device size {size}")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("the device is read-only")]
    ReadOnly,
    #[error("no space left: {0}")]
    NoSpace(String),
    #[error("I/O error: {0}")]
    Io(String),
}

impl From<ReplicaError> for DeviceError {
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::OutOfRange { offset, len, size } => {
                DeviceError::OutOfRange { offset, len, size }
            }
            ReplicaError::ReadOnly => DeviceError::ReadOnly,
            ReplicaError::Io { ref source, .. }
                if source.raw_os_error() == Some(28) || source.raw_os_error() == Some(122) =>
            {
                DeviceError::NoSpace(e.to_string())
            }
            other => DeviceError::Io(other.to_string()),
        }
    }
}

pub type DeviceResult<T> = Result<T, DeviceError>;

/// `[offset, offset+len)` must lie within a device of `size` bytes.
pub fn check_range(offset: u64, len: u64, size: u64) -> DeviceResult<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DeviceError::OutOfRange { offset, len, size }),
    }
}

/// What a [`BlockDevice`] call returns: a future, so that frontends drive many requests
/// from a few tasks without a thread per request.
pub type DeviceFuture<'a, T> = Pin<Box<dyn Future<Output = DeviceResult<T>> + Send + 'a>>;

/// A byte-addressed block device. Calls are async; implementations keep blocking work off
/// the async threads (or bound it to page-cache work of microseconds).
pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    /// Whether a flush on one connection covers writes completed on every other
    /// (NBD `CAN_MULTI_CONN`).
    fn flush_covers_all_connections(&self) -> bool;
    /// Reads `len` bytes at `offset`.
    fn read(&self, offset: u64, len: usize) -> DeviceFuture<'_, Vec<u8>>;
    /// Writes `data` at `offset`; with `fua`, durable before it completes.
    fn write(&self, data: Vec<u8>, offset: u64, fua: bool) -> DeviceFuture<'_, ()>;
    /// Makes `[offset, offset+len)` read as zeros.
    fn write_zeroes(&self, offset: u64, len: u64) -> DeviceFuture<'_, ()>;
    /// Says the range is no longer needed; its content afterwards is unspecified.
    fn trim(&self, offset: u64, len: u64) -> DeviceFuture<'_, ()>;
    /// Makes every completed write durable.
    fn flush(&self) -> DeviceFuture<'_, ()>;
}

/// A replica store opened in this process.
#[derive(Debug)]
pub struct ReplicaDevice {
    replica: Arc<SharedReplica>,
    size: u64,
    read_only: bool,
}

impl ReplicaDevice {
    pub fn new(replica: Replica) -> Self {
        ReplicaDevice {
            size: replica.size(),
            read_only: !replica.is_writable(),
            replica: Arc::new(SharedReplica::new(replica)),
        }
    }

    /// Takes the replica back (to close it cleanly); `None` while calls are still running.
    pub fn into_inner(self) -> Option<Replica> {
        Arc::try_unwrap(self.replica)
            .ok()
            .map(SharedReplica::into_inner)
    }

    fn check(&self, offset: u64, len: u64) -> DeviceResult<()> {
        check_range(offset, len, self.size)
    }

    fn writable(&self) -> DeviceResult<()> {
        if self.read_only {
            Err(DeviceError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SharedReplica) -> Result<T, ReplicaError> + Send + 'static,
    ) -> DeviceResult<T> {
        let replica = self.replica.clone();
        tokio::task::spawn_blocking(move || f(&replica))
            .await
            .map_err(|e| DeviceError::Io(format!("replica task failed: {e}")))?
            .map_err(DeviceError::from)
    }
}

const ZERO_CHUNK: usize = 1 << 20;

impl BlockDevice for ReplicaDevice {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn flush_covers_all_connections(&self) -> bool {
        // One head file: its fsync covers every write any connection completed.
        true
    }
    fn read(&self, offset: u64, len: usize) -> DeviceFuture<'_, Vec<u8>> {
        Box::pin(async move {
            self.check(offset, len as u64)?;
            let mut buf = vec![0u8; len];
            if self.replica.read_cached_at(&mut buf, offset)? {
                return Ok(buf);
            }
            self.blocking(move |r| r.read_at(&mut buf, offset).map(|()| buf))
                .await
        })
    }
    fn write(&self, data: Vec<u8>, offset: u64, fua: bool) -> DeviceFuture<'_, ()> {
        Box::pin(async move {
            self.writable()?;
            self.check(offset, data.len() as u64)?;
            self.blocking(move |r| crate::backend::write_through(r, &data, offset, fua))
                .await
        })
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> DeviceFuture<'_, ()> {
        Box::pin(async move {
            self.writable()?;
            self.check(offset, len)?;
            // Zeros are written, not punched: a hole in the head would show older layers.
            self.blocking(move |r| {
                let zeros = vec![0u8; ZERO_CHUNK.min(len as usize)];
                let mut pos = offset;
                while pos < offset + len {
                    let n = (offset + len - pos).min(ZERO_CHUNK as u64) as usize;
                    r.write_at(&zeros[..n], pos)?;
                    pos += n as u64;
                }
                Ok(())
            })
            .await
        })
    }
    fn trim(&self, offset: u64, len: u64) -> DeviceFuture<'_, ()> {
        Box::pin(async move {
            self.writable()?;
            self.check(offset, len)?;
            self.blocking(move |r| r.unmap(offset, len).map(|_| ()))
                .await
        })
    }
    fn flush(&self) -> DeviceFuture<'_, ()> {
        Box::pin(self.blocking(|r| r.flush()))
    }
}

impl From<DeviceError> for io::Error {
    fn from(e: DeviceError) -> Self {
        io::Error::other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn zeroes_hide_older_data_and_bounds_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let mut replica = Replica::create(&tmp.path().join("v-00000000"), 1 << 20).unwrap();
        replica.write_at(&[7u8; 8192], 0).unwrap();
        replica
            .snapshot(&ironhorn_replica::SnapshotSpec::user("s"))
            .unwrap();
        let dev = ReplicaDevice::new(replica);
        dev.write_zeroes(100, 5000).await.unwrap();
        let buf = dev.read(0, 8192).await.unwrap();
        assert!(buf[..100].iter().all(|b| *b == 7));
        assert!(buf[100..5100].iter().all(|b| *b == 0));
        assert!(buf[5100..].iter().all(|b| *b == 7));
        assert!(matches!(
            dev.write_zeroes((1 << 20) - 10, 20).await,
            Err(DeviceError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.read(u64::MAX - 5, 8192).await,
            Err(DeviceError::OutOfRange { .. })
        ));
        dev.write(vec![9u8; 10], 4090, true).await.unwrap();
        assert_eq!(dev.read(4088, 4).await.unwrap(), vec![0, 0, 9, 9]);
        assert!(dev.into_inner().is_some());
    }
}
