//! Snapshot control on every replica: take, list, remove, purge, revert, and expand the
//! volume. Operations that must see one crash-consistent point pause I/O (the gate's write
//! side). A replica that refuses (unknown snapshot, bad name) stays healthy and the refusal
//! is returned; a replica that fails is marked ERR.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::join_all;
use ironhorn_proto::replica::LayerInfo;
use ironhorn_replica::SnapshotSpec;

use super::{Engine, Mode, Slot};
use crate::backend::{CallFuture, ReplicaBackend};
use crate::error::{CallError, EngineError, Refusal};
use crate::BlockDevice;

impl Engine {
    /// Runs a control operation on every replica that is not failed. A refusal (bad name,
    /// unknown snapshot) is returned as such and marks nobody; a failure marks that replica ERR.
    pub(super) async fn control_all(
        &self,
        op: &'static str,
        call: impl for<'a> Fn(&'a dyn ReplicaBackend) -> CallFuture<'a, ()>,
    ) -> Result<(), EngineError> {
        // Every operation run here changes the snapshot tree or the size.
        self.invalidate_missed();
        let targets = self.live();
        let results = join_all(targets.iter().map(|s| s.timed(call(s.backend())))).await;
        let mut ok = 0;
        let mut refused: Option<(&Arc<Slot>, CallError)> = None;
        let mut failed = None;
        for (slot, r) in targets.iter().zip(results) {
            match r {
                Ok(_) => ok += 1,
                Err(e) if e.is_refusal() => refused = Some((slot, e)),
                Err(e) => {
                    slot.fail(&e);
                    failed = Some((slot, e));
                }
            }
        }
        if let Some((slot, e)) = refused {
            return Err(EngineError::replica(op, &slot.spec)(e));
        }
        if ok == 0 {
            return Err(match failed {
                Some((slot, e)) => EngineError::replica(op, &slot.spec)(e),
                None => EngineError::NoHealthyReplica {
                    volume: self.volume.clone(),
                    op,
                },
            });
        }
        Ok(())
    }

    /// A healthy replica to carry out or source `op`.
    pub(super) fn first_rw(&self, op: &'static str) -> Result<Arc<Slot>, EngineError> {
        self.slots()
            .into_iter()
            .find(|s| s.mode() == Mode::RW)
            .ok_or_else(|| EngineError::NoHealthyReplica {
                volume: self.volume.clone(),
                op,
            })
    }

    /// Takes a user snapshot on every replica at one crash-consistent point (I/O paused).
    pub async fn snapshot(
        &self,
        name: &str,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let _paused = self.gate.write().await;
        let spec = SnapshotSpec {
            name: name.to_string(),
            user_created: true,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            labels,
        };
        self.control_all("snapshot", |b| b.snapshot(spec.clone()))
            .await
    }

    /// The snapshot tree as a healthy replica holds it.
    pub async fn layers(&self) -> Result<Vec<LayerInfo>, EngineError> {
        let slot = self.first_rw("list snapshots")?;
        slot.layers()
            .await
            .map_err(EngineError::replica("list snapshots", &slot.spec))
    }

    pub async fn remove_snapshot(&self, name: &str) -> Result<(), EngineError> {
        if self.rebuilding.load(Ordering::SeqCst) {
            return Err(Refusal::RebuildRunning("remove snapshots").into());
        }
        self.control_all("remove snapshot", |b| b.remove_snapshot(name.to_string()))
            .await
    }

    pub async fn purge(&self) -> Result<(), EngineError> {
        if self.rebuilding.load(Ordering::SeqCst) {
            return Err(Refusal::RebuildRunning("purge").into());
        }
        let _paused = self.gate.write().await;
        self.control_all("purge", |b| b.purge()).await
    }

    /// Reverts every replica to snapshot `name`. The caller makes sure no client is
    /// connected (the data under it changes).
    pub async fn revert(&self, name: &str) -> Result<(), EngineError> {
        if self.slots().iter().any(|s| s.mode() == Mode::WO) {
            return Err(Refusal::RebuildRunning("revert").into());
        }
        let _paused = self.gate.write().await;
        self.control_all("revert", |b| b.revert(name.to_string()))
            .await
    }

    pub async fn expand(&self, size: u64) -> Result<(), EngineError> {
        if size < self.size() {
            return Err(Refusal::Shrink { size: self.size() }.into());
        }
        if self.rebuilding.load(Ordering::SeqCst) {
            return Err(Refusal::RebuildRunning("expand").into());
        }
        let _paused = self.gate.write().await;
        self.control_all("expand", |b| b.expand(size)).await?;
        self.size.store(size, Ordering::SeqCst);
        Ok(())
    }
}
