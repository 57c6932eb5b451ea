//! [`BlockDevice`]: byte-addressed reads, writes, zeroing, trim and flush; and
//! [`ReplicaDevice`], a replica store behind it.
//!
//! Calls block the calling thread (frontends run them on a blocking pool). Reads may run
//! concurrently with each other; writes to a replica are serialised by its lock.

use std::io;

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

/// A byte-addressed block device.
pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    /// Whether a flush on one connection covers writes completed on every other
    /// (NBD `CAN_MULTI_CONN`).
    fn flush_covers_all_connections(&self) -> bool;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> DeviceResult<()>;
    fn write_at(&self, data: &[u8], offset: u64) -> DeviceResult<()>;
    /// Makes `[offset, offset+len)` read as zeros.
    fn write_zeroes(&self, offset: u64, len: u64) -> DeviceResult<()>;
    /// Says the range is no longer needed; its content afterwards is unspecified.
    fn trim(&self, offset: u64, len: u64) -> DeviceResult<()>;
    /// Makes every completed write durable.
    fn flush(&self) -> DeviceResult<()>;
}

/// A replica store opened in this process.
#[derive(Debug)]
pub struct ReplicaDevice {
    replica: SharedReplica,
    size: u64,
    read_only: bool,
}

impl ReplicaDevice {
    pub fn new(replica: Replica) -> Self {
        ReplicaDevice {
            size: replica.size(),
            read_only: !replica.is_writable(),
            replica: SharedReplica::new(replica),
        }
    }

    /// Takes the replica back (to close it cleanly).
    pub fn into_inner(self) -> Replica {
        self.replica.into_inner()
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
    fn read_at(&self, buf: &mut [u8], offset: u64) -> DeviceResult<()> {
        Ok(self.replica.read_at(buf, offset)?)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> DeviceResult<()> {
        self.writable()?;
        Ok(self.replica.write_at(data, offset)?)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> DeviceResult<()> {
        self.writable()?;
        self.check(offset, len)?;
        // Zeros are written, not punched: a hole in the head would show older layers.
        let zeros = vec![0u8; ZERO_CHUNK.min(len as usize)];
        let mut pos = offset;
        while pos < offset + len {
            let n = (offset + len - pos).min(ZERO_CHUNK as u64) as usize;
            self.write_at(&zeros[..n], pos)?;
            pos += n as u64;
        }
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> DeviceResult<()> {
        self.writable()?;
        self.replica.unmap(offset, len)?;
        Ok(())
    }
    fn flush(&self) -> DeviceResult<()> {
        Ok(self.replica.flush()?)
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

    #[test]
    fn zeroes_hide_older_data_and_bounds_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let mut replica = Replica::create(&tmp.path().join("v-00000000"), 1 << 20).unwrap();
        replica.write_at(&[7u8; 8192], 0).unwrap();
        replica
            .snapshot(&ironhorn_replica::SnapshotSpec::user("s"))
            .unwrap();
        let dev = ReplicaDevice::new(replica);
        dev.write_zeroes(100, 5000).unwrap();
        let mut buf = vec![1u8; 8192];
        dev.read_at(&mut buf, 0).unwrap();
        assert!(buf[..100].iter().all(|b| *b == 7));
        assert!(buf[100..5100].iter().all(|b| *b == 0));
        assert!(buf[5100..].iter().all(|b| *b == 7));
        assert!(matches!(
            dev.write_zeroes((1 << 20) - 10, 20),
            Err(DeviceError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.read_at(&mut buf, u64::MAX - 5),
            Err(DeviceError::OutOfRange { .. })
        ));
    }
}
