//! A replica shared by many concurrent callers: reads run in parallel, writes and metadata
//! operations take the replica exclusively.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::Result;
use crate::ops::SnapshotSpec;
use crate::replica::Replica;

#[derive(Debug)]
pub struct SharedReplica {
    inner: RwLock<Replica>,
}

impl SharedReplica {
    pub fn new(replica: Replica) -> Self {
        SharedReplica {
            inner: RwLock::new(replica),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Replica> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Replica> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn into_inner(self) -> Replica {
        self.inner.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.read().read_at(buf, offset)
    }

    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        self.write().write_at(data, offset)
    }

    pub fn unmap(&self, offset: u64, len: u64) -> Result<u64> {
        self.write().unmap(offset, len)
    }

    pub fn flush(&self) -> Result<()> {
        let replica = self.read();
        if replica.is_writable() {
            replica.flush()
        } else {
            Ok(())
        }
    }

    pub fn snapshot(&self, spec: &SnapshotSpec) -> Result<()> {
        self.write().snapshot(spec)
    }

    pub fn size(&self) -> u64 {
        self.read().size()
    }

    pub fn is_writable(&self) -> bool {
        self.read().is_writable()
    }
}
