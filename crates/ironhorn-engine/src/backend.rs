//! [`ReplicaBackend`]: how the engine reaches one replica, with a typed method per request.
//! [`InProcess`] calls a replica of this process directly; the replica server's client is in
//! [`crate::remote`]. The engine's slot puts its timeout around every call of a backend
//! that is [`ReplicaBackend::bounded`], so one that never answers is failed like one that
//! errs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ironhorn_proto::replica::{Control, ControlReply, LayerInfo, ReplicaInfo};
use ironhorn_replica::server::run_control;
use ironhorn_replica::{ReplicaError, SharedReplica, SnapshotSpec};

use crate::error::CallError;

/// What a backend call returns: one boxed future per replica call.
pub type CallFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CallError>> + Send + 'a>>;

/// One replica as the engine uses it.
pub trait ReplicaBackend: Send + Sync + fmt::Debug {
    /// `len` bytes at `offset` of the volume (a shorter answer is the caller's to catch).
    fn read(&self, offset: u64, len: u32) -> CallFuture<'_, Vec<u8>>;
    /// `data` at `offset`; with `fua`, durable before it completes.
    fn write(&self, offset: u64, data: Arc<Vec<u8>>, fua: bool) -> CallFuture<'_, ()>;
    /// Zeros `[offset, offset+len)`, deallocating where no snapshot shows through.
    fn write_zeroes(&self, offset: u64, len: u32) -> CallFuture<'_, ()>;
    /// Deallocates `[offset, offset+len)` (a hint).
    fn unmap(&self, offset: u64, len: u32) -> CallFuture<'_, ()>;
    /// Makes every completed write durable.
    fn flush(&self) -> CallFuture<'_, ()>;
    /// Answers if alive.
    fn ping(&self) -> CallFuture<'_, ()>;
    /// Rebuild source: `len` bytes at `offset` of layer `file`.
    fn read_layer(&self, file: &str, offset: u64, len: u32) -> CallFuture<'_, Vec<u8>>;
    /// Rebuild target: `data` into layer `file` at `offset`.
    fn write_layer(&self, file: &str, offset: u64, data: Arc<Vec<u8>>) -> CallFuture<'_, ()>;
    /// One control operation, as the replica protocol carries it; the typed methods below
    /// go through it.
    fn control(&self, control: Control) -> CallFuture<'_, ControlReply>;
    /// The replica itself when it lives in this process (reads prefer it: no network hop).
    fn in_process(&self) -> Option<&Arc<SharedReplica>> {
        None
    }

    /// Whether the engine's replica timeout bounds its calls.
    fn bounded(&self) -> bool {
        true
    }

    /// A control operation that answers nothing but success.
    fn act(&self, control: Control) -> CallFuture<'_, ()> {
        Box::pin(async move {
            match self.control(control).await? {
                ControlReply::Done => Ok(()),
                _ => Err(CallError::UnexpectedReply { asked: "an action" }),
            }
        })
    }

    /// Takes snapshot `spec.name`: the head so far becomes it.
    fn snapshot(&self, spec: SnapshotSpec) -> CallFuture<'_, ()> {
        self.act(Control::Snapshot {
            name: spec.name,
            user_created: spec.user_created,
            created: spec.created,
            labels: spec.labels,
        })
    }

    /// Marks snapshot `name` removed (its data goes at the next purge).
    fn remove_snapshot(&self, name: String) -> CallFuture<'_, ()> {
        self.act(Control::Remove { name })
    }

    /// Coalesces removed snapshots into their children.
    fn purge(&self) -> CallFuture<'_, ()> {
        self.act(Control::Purge)
    }

    /// Starts a new head on snapshot `name`.
    fn revert(&self, name: String) -> CallFuture<'_, ()> {
        self.act(Control::Revert { name })
    }

    fn expand(&self, size: u64) -> CallFuture<'_, ()> {
        self.act(Control::Expand { size })
    }

    fn set_revision(&self, revision: u64) -> CallFuture<'_, ()> {
        self.act(Control::SetRevision { revision })
    }

    fn set_rebuilding(&self, rebuilding: bool) -> CallFuture<'_, ()> {
        self.act(Control::SetRebuilding { rebuilding })
    }

    /// Clears the recent-writes ring (after a clean stop nothing needs reconciling).
    fn forget_recent_writes(&self) -> CallFuture<'_, ()> {
        self.act(Control::ForgetRecentWrites)
    }

    /// Rebuild target: lays out `layers` and starts a new head on `head_parent`.
    fn prepare_rebuild(&self, head_parent: String, layers: Vec<LayerInfo>) -> CallFuture<'_, ()> {
        self.act(Control::PrepareRebuild {
            head_parent,
            layers,
        })
    }

    /// Rebuild target: done, at `revision`.
    fn finish_rebuild(&self, revision: u64) -> CallFuture<'_, ()> {
        self.act(Control::FinishRebuild { revision })
    }

    fn info(&self) -> CallFuture<'_, ReplicaInfo> {
        Box::pin(async move {
            match self.control(Control::Info).await? {
                ControlReply::Info(info) => Ok(info),
                _ => Err(CallError::UnexpectedReply { asked: "info" }),
            }
        })
    }

    fn layers(&self) -> CallFuture<'_, Vec<LayerInfo>> {
        Box::pin(async move {
            match self.control(Control::ListLayers).await? {
                ControlReply::Layers { layers } => Ok(layers),
                _ => Err(CallError::UnexpectedReply { asked: "layers" }),
            }
        })
    }

    /// (revision, offset, length) of its recent writes.
    fn recent_writes(&self) -> CallFuture<'_, Vec<(u64, u64, u64)>> {
        Box::pin(async move {
            match self.control(Control::RecentWrites).await? {
                ControlReply::RecentWrites { writes } => Ok(writes),
                _ => Err(CallError::UnexpectedReply {
                    asked: "recent writes",
                }),
            }
        })
    }

    /// Allocated ranges of layer `file`.
    fn layer_extents(&self, file: String) -> CallFuture<'_, Vec<(u64, u64)>> {
        Box::pin(async move {
            match self.control(Control::LayerExtents { file }).await? {
                ControlReply::Extents { extents } => Ok(extents),
                _ => Err(CallError::UnexpectedReply { asked: "extents" }),
            }
        })
    }

    fn layer_checksum(&self, file: String) -> CallFuture<'_, String> {
        Box::pin(async move {
            match self.control(Control::LayerChecksum { file }).await? {
                ControlReply::Checksum { checksum } => Ok(checksum),
                _ => Err(CallError::UnexpectedReply { asked: "checksum" }),
            }
        })
    }
}

/// Writes `data` at `offset`; with `fua`, durable before it returns.
pub(crate) fn write_through(
    replica: &SharedReplica,
    data: &[u8],
    offset: u64,
    fua: bool,
) -> Result<(), ReplicaError> {
    replica.write_at(data, offset)?;
    if fua {
        replica.flush()?;
    }
    Ok(())
}

/// Writes up to this size to an in-process replica are done on the calling task.
const INLINE_WRITE_MAX: usize = 1 << 20;

/// A replica served by this process, called directly. Page-cache I/O takes microseconds:
/// done on the caller's task it saves two thread hops. What may wait for the disk (an
/// uncached read, FUA, unmap, layer copies, control) runs on the blocking pool. Every call
/// is made for the engine's attachment generation, as a replica server's connection would.
#[derive(Debug)]
pub struct InProcess {
    replica: Arc<SharedReplica>,
    generation: u64,
}

impl InProcess {
    pub fn new(replica: Arc<SharedReplica>, generation: u64) -> Self {
        InProcess {
            replica,
            generation,
        }
    }

    /// Fails when its server stopped: the engine then treats it as a closed connection.
    fn live(&self) -> Result<Arc<SharedReplica>, CallError> {
        if self.replica.is_retired() {
            return Err(CallError::Retired);
        }
        Ok(self.replica.clone())
    }

    /// Runs `work` on the blocking pool, refused once a newer generation has claimed the
    /// replica.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&SharedReplica) -> Result<T, CallError> + Send + 'static,
    ) -> Result<T, CallError> {
        let replica = self.live()?;
        let generation = self.generation;
        tokio::task::spawn_blocking(move || replica.as_generation(generation, || work(&replica)))
            .await
            .map_err(CallError::Task)?
    }
}

impl ReplicaBackend for InProcess {
    fn read(&self, offset: u64, len: u32) -> CallFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let mut buf = vec![0u8; len as usize];
            let replica = self.live()?;
            replica.admits(self.generation)?;
            if replica.read_cached_at(&mut buf, offset)? {
                return Ok(buf);
            }
            self.blocking(move |r| {
                r.read_at(&mut buf, offset)?;
                Ok(buf)
            })
            .await
        })
    }

    fn write(&self, offset: u64, data: Arc<Vec<u8>>, fua: bool) -> CallFuture<'_, ()> {
        Box::pin(async move {
            if data.len() <= INLINE_WRITE_MAX {
                let replica = self.live()?;
                replica.as_generation(self.generation, || replica.write_at(&data, offset))?;
                if fua {
                    replica.flush_async().await?;
                }
                return Ok(());
            }
            self.blocking(move |r| Ok(write_through(r, &data, offset, fua)?))
                .await
        })
    }

    fn write_zeroes(&self, offset: u64, len: u32) -> CallFuture<'_, ()> {
        Box::pin(self.blocking(move |r| Ok(r.write_zeroes(offset, u64::from(len))?)))
    }

    fn unmap(&self, offset: u64, len: u32) -> CallFuture<'_, ()> {
        Box::pin(self.blocking(move |r| {
            r.unmap(offset, u64::from(len))
                .map(drop)
                .map_err(Into::into)
        }))
    }

    fn flush(&self) -> CallFuture<'_, ()> {
        Box::pin(async move {
            let replica = self.live()?;
            replica.admits(self.generation)?;
            Ok(replica.flush_async().await?)
        })
    }

    fn ping(&self) -> CallFuture<'_, ()> {
        Box::pin(async move { Ok(self.live()?.admits(self.generation)?) })
    }

    fn read_layer(&self, file: &str, offset: u64, len: u32) -> CallFuture<'_, Vec<u8>> {
        let file = file.to_string();
        Box::pin(self.blocking(move |r| {
            let mut buf = ironhorn_runtime::buffers::take(len as usize);
            r.read().read_layer(&file, &mut buf, offset)?;
            Ok(buf)
        }))
    }

    fn write_layer(&self, file: &str, offset: u64, data: Arc<Vec<u8>>) -> CallFuture<'_, ()> {
        let file = file.to_string();
        Box::pin(self.blocking(move |r| Ok(r.read().write_layer(&file, &data, offset)?)))
    }

    fn control(&self, control: Control) -> CallFuture<'_, ControlReply> {
        Box::pin(async move {
            if let Control::Claim { generation } = control {
                // A claim waits for the operations under way: not one of them itself.
                let replica = self.live()?;
                return tokio::task::spawn_blocking(move || {
                    replica.claim(generation)?;
                    Ok(ControlReply::Done)
                })
                .await
                .map_err(CallError::Task)?;
            }
            self.blocking(move |r| Ok(run_control(r, control)?)).await
        })
    }

    fn in_process(&self) -> Option<&Arc<SharedReplica>> {
        Some(&self.replica)
    }

    /// Its work runs on this process's threads and cannot be abandoned: a timeout would mark
    /// it ERR while the operation (a long purge, say) goes on, so it has none.
    fn bounded(&self) -> bool {
        false
    }
}

/// Stands in for a replica that could not be opened when the engine started: its slot is
/// ERR from the start, so a majority quorum still counts it (an engine started on two of
/// three replicas needs both, not one of one), and adding the replica later rebuilds it in
/// its place. Every call fails.
#[derive(Debug)]
pub struct Unopened;

impl Unopened {
    fn fail<T>() -> CallFuture<'static, T> {
        Box::pin(async { Err(CallError::NotOpened) })
    }
}

impl ReplicaBackend for Unopened {
    fn read(&self, _: u64, _: u32) -> CallFuture<'_, Vec<u8>> {
        Unopened::fail()
    }

    fn write(&self, _: u64, _: Arc<Vec<u8>>, _: bool) -> CallFuture<'_, ()> {
        Unopened::fail()
    }

    fn write_zeroes(&self, _: u64, _: u32) -> CallFuture<'_, ()> {
        Unopened::fail()
    }

    fn unmap(&self, _: u64, _: u32) -> CallFuture<'_, ()> {
        Unopened::fail()
    }

    fn flush(&self) -> CallFuture<'_, ()> {
        Unopened::fail()
    }

    fn ping(&self) -> CallFuture<'_, ()> {
        Unopened::fail()
    }

    fn read_layer(&self, _: &str, _: u64, _: u32) -> CallFuture<'_, Vec<u8>> {
        Unopened::fail()
    }

    fn write_layer(&self, _: &str, _: u64, _: Arc<Vec<u8>>) -> CallFuture<'_, ()> {
        Unopened::fail()
    }

    fn control(&self, _: Control) -> CallFuture<'_, ControlReply> {
        Unopened::fail()
    }
}
