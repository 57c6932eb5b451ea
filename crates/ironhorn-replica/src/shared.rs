//! A replica shared by many concurrent callers: reads run in parallel, writes and metadata
//! operations take the replica exclusively.
//!
//! Fencing: an engine claims the replica with its attachment generation ([`SharedReplica::claim`]);
//! from then on a caller of an older generation is refused ([`SharedReplica::as_generation`]).
//! A claim waits for every operation under way, so nothing an older engine asked for
//! happens after a newer one has claimed the replica. The generation is kept in the replica
//! directory ([`crate::fence`]), so a restarted replica still refuses the older engine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{ReplicaError, Result};
use crate::ops::SnapshotSpec;
use crate::replica::Replica;

#[derive(Debug)]
pub struct SharedReplica {
    inner: RwLock<Replica>,
    /// Its server stopped: users in the same process must stop using it too.
    retired: AtomicBool,
    /// The newest attachment generation that claimed the replica (0: none has).
    generation: AtomicU64,
    /// Held shared by every operation made for a generation, exclusively by a claim.
    fence: RwLock<()>,
    /// Why the stored generation could not be read, if so: every claim fails saying it.
    generation_unreadable: Option<String>,
}

impl SharedReplica {
    pub fn new(replica: Replica) -> Self {
        let (generation, generation_unreadable) = match crate::fence::read(replica.dir()) {
            Ok(g) => (g, None),
            // Nobody may use it until an operator looks: the old engine might be alive.
            Err(e) => (u64::MAX, Some(e.to_string())),
        };
        SharedReplica {
            inner: RwLock::new(replica),
            retired: AtomicBool::new(false),
            generation: AtomicU64::new(generation),
            fence: RwLock::new(()),
            generation_unreadable,
        }
    }

    /// The newest attachment generation that claimed the replica.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// An engine of attachment `generation` opens the replica: refused when a newer one has;
    /// otherwise callers of older generations are refused from now on (kept on disk before
    /// this returns).
    pub fn claim(&self, generation: u64) -> Result<()> {
        let _fence = self.fence.write().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &self.generation_unreadable {
            return Err(ReplicaError::Refused(format!(
                "the replica's fencing generation cannot be read ({why}): make sure no other engine uses this replica, then delete {} in its directory",
                ironhorn_format::names::GENERATION
            )));
        }
        let current = self.generation();
        if generation < current {
            return Err(ReplicaError::Fenced {
                caller: generation,
                current,
            });
        }
        if generation > current {
            let replica = self.read();
            crate::fence::write(&replica.dir, &replica.dir_handle, generation)?;
            self.generation.store(generation, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Refuses a caller of a generation older than the newest claim.
    pub fn admits(&self, generation: u64) -> Result<()> {
        let current = self.generation();
        if generation < current {
            return Err(ReplicaError::Fenced {
                caller: generation,
                current,
            });
        }
        Ok(())
    }

    /// Runs `op` for a caller of `generation`, unless a newer generation has claimed the
    /// replica; no claim completes while it runs. (`op` must not call this again.)
    pub fn as_generation<T, E: From<ReplicaError>>(
        &self,
        generation: u64,
        op: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let _fence = self.fence.read().unwrap_or_else(|e| e.into_inner());
        self.admits(generation)?;
        op()
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
