//! A replica shared by many concurrent callers: reads run in parallel, writes and metadata
//! operations take the replica exclusively.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::Result;
use crate::ops::SnapshotSpec;
use crate::replica::Replica;

#[derive(Debug)]
pub struct SharedReplica {
    inner: RwLock<Replica>,
    /// Its server stopped: users in the same process must stop using it too.
    retired: AtomicBool,
}

impl SharedReplica {
    pub fn new(replica: Replica) -> Self {
        SharedReplica {
            inner: RwLock::new(replica),
            retired: AtomicBool::new(false),
        }
    }

    /// Marks the replica as no longer served (its server stopped).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
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

    /// Reads from the page cache only; `Ok(false)` when the disk would be needed.
    pub fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        self.read().read_cached_at(buf, offset)
    }

    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        self.write().write_at(data, offset)
    }

    pub fn unmap(&self, offset: u64, len: u64) -> Result<u64> {
        self.write().unmap(offset, len)
    }

    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.write().write_zeroes(offset, len)
    }

    /// Makes every completed write durable. The lock is held only to find the files, not
    /// during the syncs: writes are not held up by a flush.
    pub fn flush(&self) -> Result<()> {
        let handles = {
            let replica = self.read();
            if !replica.is_writable() {
                return Ok(());
            }
            replica.flush_handles()?
        };
        handles.sync()
    }

    /// [`SharedReplica::flush`] for async callers: the head and the counter are synced on
    /// two threads of the blocking pool at once, and the caller's thread is not held.
    pub async fn flush_async(&self) -> Result<()> {
        let handles = {
            let replica = self.read();
            if !replica.is_writable() {
                return Ok(());
            }
            std::sync::Arc::new(replica.flush_handles()?)
        };
        let counter = handles.clone();
        let counter = tokio::task::spawn_blocking(move || counter.sync_counter());
        let head = tokio::task::spawn_blocking(move || handles.sync_head());
        let joined = |r: std::result::Result<Result<()>, tokio::task::JoinError>| {
            r.unwrap_or_else(|e| {
                Err(crate::ReplicaError::io("flushing", "the replica")(
                    std::io::Error::other(e.to_string()),
                ))
            })
        };
        let (head, counter) = tokio::join!(head, counter);
        joined(head).and(joined(counter))
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
