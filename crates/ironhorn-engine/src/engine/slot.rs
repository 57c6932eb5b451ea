//! One replica of the volume as the engine holds it: its backend, its mode (RW, WO, ERR)
//! and why it failed, and, while it is failed, what it missed. Every call to the backend
//! goes through [`Slot::timed`], so a replica that does not answer in time fails like one
//! that errs (see [`ReplicaBackend::bounded`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ironhorn_proto::replica::{Control, LayerInfo, ReplicaInfo};
use ironhorn_replica::{Replica, ReplicaOptions, SharedReplica};

use super::{Mode, ReplicaSpec};
use crate::backend::{CallFuture, InProcess, ReplicaBackend};
use crate::error::CallError;
use crate::local::LocalReplicas;
use crate::remote::RemoteReplica;

/// Granularity of the regions a failed replica is known to have missed.
pub(super) const MISSED_REGION: u64 = 64 * 1024;

/// The writes a failed replica did not get. `whole` once something happened that a
/// region copy cannot repair (a snapshot, revert, purge, expand or rebuild): then only a
/// full rebuild brings it back.
#[derive(Debug, Default)]
pub(super) struct Missed {
    pub(super) regions: std::collections::BTreeSet<u64>,
    pub(super) bytes_written: u64,
    pub(super) whole: bool,
}

/// One replica of the volume.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The volume it belongs to (named in what is logged about it).
    volume: Arc<str>,
    pub(crate) spec: ReplicaSpec,
    backend: Box<dyn ReplicaBackend>,
    timeout: Duration,
    mode: Mutex<Mode>,
    pub(super) reason: Mutex<String>,
    /// While ERR: what it missed, for an incremental catch-up when it comes back.
    missed: Mutex<Missed>,
}

impl Slot {
    pub(crate) fn new(
        volume: &str,
        spec: ReplicaSpec,
        backend: Box<dyn ReplicaBackend>,
        timeout: Duration,
    ) -> Slot {
        Slot {
            volume: volume.into(),
            spec,
            backend,
            timeout,
            mode: Mutex::new(Mode::RW),
            reason: Mutex::new(String::new()),
            missed: Mutex::new(Missed::default()),
        }
    }

    /// Opens the replica of `spec`: a directory opened (or created) in this process, a
    /// replica this process serves (found in `locals`), or a replica server; and claims it
    /// for attachment `generation` (unless 0).
    pub(super) async fn open(
        volume: &str,
        spec: &ReplicaSpec,
        size: u64,
        timeout: Duration,
        locals: &LocalReplicas,
        generation: u64,
    ) -> Result<Slot, CallError> {
        let backend: Box<dyn ReplicaBackend> = match spec {
            ReplicaSpec::Local(dir) => {
                let dir = dir.clone();
                let replica = tokio::task::spawn_blocking(move || {
                    if dir.join("volume.meta").exists() {
                        Replica::open(&dir, &ReplicaOptions::default())
                    } else {
                        Replica::create(&dir, size)
                    }
                })
                .await
                .map_err(CallError::Task)??;
                Box::new(InProcess::new(
                    Arc::new(SharedReplica::new(replica)),
                    generation,
                ))
            }
            ReplicaSpec::Remote(addr) => match locals.lookup(&addr.to_string()) {
                Some(replica) => Box::new(InProcess::new(replica, generation)),
                None => Box::new(
                    RemoteReplica::connect(addr, timeout)
                        .await
                        .map_err(CallError::Connect)?,
                ),
            },
        };
        let slot = Slot::new(volume, spec.clone(), backend, timeout);
        if generation > 0 {
            slot.timed(slot.backend.act(Control::Claim { generation }))
                .await?;
        }
        Ok(slot)
    }

    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    pub(super) fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// In this process: no network hop.
    pub(super) fn is_local(&self) -> bool {
        self.backend.in_process().is_some()
    }

    pub(super) fn backend(&self) -> &dyn ReplicaBackend {
        &*self.backend
    }

    pub(super) fn missed(&self) -> MutexGuard<'_, Missed> {
        self.missed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the replica ERR (once: the first reason is the one kept).
    pub(super) fn fail(&self, why: impl std::fmt::Display) {
        let mut mode = self.mode.lock().unwrap_or_else(|e| e.into_inner());
        if *mode != Mode::ERR {
            let why = why.to_string();
            tracing::error!(volume = %self.volume, replica = %self.spec, reason = %why, "replica failed: marked ERR");
            *mode = Mode::ERR;
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = why;
        }
    }

    /// `call`, bounded by the engine's replica timeout where its backend allows.
    pub(super) async fn timed<T>(&self, call: CallFuture<'_, T>) -> Result<T, CallError> {
        if !self.backend.bounded() {
            return call.await;
        }
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(CallError::Timeout(self.timeout)))
    }

    /// Exactly `len` bytes at `offset`: a shorter answer is an error of this replica.
    pub(super) async fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, CallError> {
        let data = self.timed(self.backend.read(offset, len as u32)).await?;
        if data.len() != len {
            return Err(CallError::ShortRead {
                got: data.len(),
                wanted: len,
            });
        }
        Ok(data)
    }

    pub(super) async fn info(&self) -> Result<ReplicaInfo, CallError> {
        self.timed(self.backend.info()).await
    }

    pub(super) async fn layers(&self) -> Result<Vec<LayerInfo>, CallError> {
        self.timed(self.backend.layers()).await
    }

    /// The replica of this process, to close cleanly once this slot is gone.
    pub(super) fn into_in_process(self) -> Option<Arc<SharedReplica>> {
        self.backend.in_process().cloned()
    }
}
