//! The engine: one volume served from N replicas. A write goes to every replica that is not
//! failed, in parallel, and succeeds when every RW replica has it; a replica that fails or
//! does not answer in time is marked ERR and dropped, and I/O goes on while one RW replica
//! remains. Reads go to the in-process replica when there is a healthy one (no network hop),
//! else round-robin to RW replicas. FLUSH and FUA reach every replica.
//!
//! This module holds the [`Engine`] and what it reports; its parts live beside it: `slot`
//! (one replica and its mode), `start` (opening the replicas and reconciling them), `io` (the
//! fan-out of reads and writes), `snapshots` (control operations on every replica) and
//! `rebuild` (adding, catching up and removing replicas).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use ironhorn_runtime::net::Addr;
use serde::Serialize;

use crate::local::LocalReplicas;
use crate::window::WriteWindow;

mod io;
mod rebuild;
mod slot;
mod snapshots;
mod start;
#[cfg(test)]
mod tests;

pub(crate) use slot::Slot;

/// Where a replica is: in this process (`file:DIR`) or behind a replica server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaSpec {
    Local(PathBuf),
    Remote(Addr),
}

impl std::str::FromStr for ReplicaSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("file:") {
            Some(dir) if !dir.is_empty() => Ok(ReplicaSpec::Local(PathBuf::from(dir))),
            Some(_) => Err("file: needs a replica directory".into()),
            None => s.parse().map(ReplicaSpec::Remote),
        }
    }
}

impl std::fmt::Display for ReplicaSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicaSpec::Local(dir) => write!(f, "file:{}", dir.display()),
            ReplicaSpec::Remote(addr) => write!(f, "{addr}"),
        }
    }
}

/// How an engine keeps a volume to one writer: the attachment generation it claims the
/// replicas with, and how many replicas must have a write before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fencing {
    /// 0: claim nothing (a standalone engine, as before fencing).
    pub generation: u64,
    pub quorum: WriteQuorum,
    /// How many replicas must take the generation for the engine to start (0: any number).
    /// The manager asks for enough when it starts a volume while its previous engine may
    /// still run on a node that does not answer.
    pub min_claimed: usize,
}

/// How many replicas must have a write (or flush) before the engine acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteQuorum {
    /// Any one healthy replica (Longhorn's rule): I/O goes on while one is left.
    #[default]
    One,
    /// A majority of the engine's replicas (those being rebuilt aside): an engine cut off
    /// from most of them (a partitioned node) acknowledges nothing, so an engine started
    /// elsewhere on the others cannot lose a write it acknowledged. A failed replica counts
    /// until it is removed from the engine.
    Majority,
}

/// A replica's mode, as Longhorn names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mode {
    RW,
    WO,
    ERR,
}

/// A replica as `info` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub address: String,
    pub mode: Mode,
    pub reason: String,
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    pub replica: String,
    pub source: String,
    /// Snapshot files copied and skipped (identical on the target, by checksum).
    pub layers_copied: usize,
    pub layers_skipped: usize,
    pub bytes_copied: u64,
    /// An incremental catch-up: only what the replica missed while away was copied.
    pub incremental: bool,
    /// Bytes the volume took while the replica was away (incremental catch-up only).
    pub bytes_written_while_away: u64,
}

/// A volume served from its replicas.
#[derive(Debug)]
pub struct Engine {
    volume: String,
    size: AtomicU64,
    slots: Mutex<Vec<Arc<Slot>>>,
    /// Shared by I/O; taken exclusively to change the replica set or take a snapshot at one
    /// crash-consistent point.
    gate: tokio::sync::RwLock<()>,
    rebuilding: AtomicBool,
    /// Progress of the running rebuild (bytes copied, bytes to copy).
    rebuild_done: AtomicU64,
    rebuild_total: AtomicU64,
    timeout: Duration,
    next_read: AtomicUsize,
    window: WriteWindow,
    reconciled: Option<ReconcileReport>,
    /// Replicas this process serves, reached directly.
    locals: LocalReplicas,
    /// The attachment generation it claims its replicas with (0: none, unfenced).
    generation: u64,
    quorum: WriteQuorum,
    /// Why it stopped serving, once a replica said a newer attachment claimed it.
    fenced: Mutex<Option<String>>,
}

/// Time until the next multiple of `interval` on the wall clock. Keep-alive pings of every
/// engine (in this process and in others) go out at the same instants, so a node with many
/// idle volumes wakes once per interval for all of them rather than once per replica.
fn until_next_tick(interval: Duration) -> Duration {
    let period = interval.as_nanos().max(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let left = period - now % period;
    Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))
}

/// What the start-up reconciliation copied (see `Engine::reconcile`).
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    pub source: String,
    pub ranges: usize,
    pub bytes: u64,
}

/// Largest read or write request sent to a replica.
const MAX_CALL: u64 = 16 << 20;

impl Engine {
    /// What the start-up reconciliation copied, when there were replicas to reconcile.
    pub fn reconciled(&self) -> Option<&ReconcileReport> {
        self.reconciled.as_ref()
    }

    pub fn volume(&self) -> &str {
        &self.volume
    }

    /// Whether a replica is being rebuilt or caught up now.
    pub fn rebuild_running(&self) -> bool {
        self.rebuilding.load(Ordering::SeqCst)
    }

    /// The running rebuild's bytes copied so far and bytes to copy in all; (0, 0) when none
    /// runs.
    pub fn rebuild_progress(&self) -> (u64, u64) {
        if !self.rebuild_running() {
            return (0, 0);
        }
        (
            self.rebuild_done.load(Ordering::Relaxed),
            self.rebuild_total.load(Ordering::Relaxed),
        )
    }

    /// Pings every remote replica every `interval` (Longhorn: 2 s), so a replica that died
    /// while the volume is idle is marked ERR without waiting for the next write. Stops when
    /// the engine is dropped.
    pub fn spawn_keepalive(self: &Arc<Self>, interval: Duration) {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(until_next_tick(interval)).await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                let remotes: Vec<Arc<Slot>> = engine
                    .live()
                    .into_iter()
                    .filter(|s| !s.is_local())
                    .collect();
                let pings = remotes.iter().map(|s| s.timed(s.backend().ping()));
                for (slot, result) in remotes.iter().zip(join_all(pings).await) {
                    match result {
                        Err(e) if e.is_fenced() => engine.fence(&e),
                        Err(e) => slot.fail(format!("no answer to keep-alive ping: {e}")),
                        Ok(()) => {}
                    }
                }
            }
        });
    }

    /// Stops serving for good: a replica said a newer attachment of the volume claimed it,
    /// so another engine serves the volume now and nothing more may be acknowledged here.
    pub(crate) fn fence(&self, why: &dyn std::fmt::Display) {
        let mut fenced = self.fenced.lock().unwrap_or_else(|e| e.into_inner());
        if fenced.is_none() {
            tracing::error!(volume = %self.volume, generation = self.generation, reason = %why, "engine fenced: a newer attachment of the volume claimed its replicas; every request fails from now on");
            *fenced = Some(why.to_string());
        }
    }

    /// Why the engine no longer serves, if it was fenced.
    pub fn fenced(&self) -> Option<String> {
        self.fenced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The attachment generation it claimed its replicas with.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many RW replicas must have a write now for it to be acknowledged.
    pub fn write_quorum(&self) -> usize {
        match self.quorum {
            WriteQuorum::One => 1,
            WriteQuorum::Majority => {
                // Counted under the lock: no copy of the slot list on every write.
                let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                let counted = slots.iter().filter(|s| s.mode() != Mode::WO).count();
                counted / 2 + 1
            }
        }
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn status(&self) -> Vec<SlotStatus> {
        self.slots()
            .iter()
            .map(|s| SlotStatus {
                address: s.spec.to_string(),
                mode: s.mode(),
                reason: s.reason(),
            })
            .collect()
    }

    /// Replicas that receive writes (RW and WO).
    fn live(&self) -> Vec<Arc<Slot>> {
        let mut live: Vec<Arc<Slot>> = self
            .slots()
            .into_iter()
            .filter(|s| s.mode() != Mode::ERR)
            .collect();
        // Remote replicas first: their requests go out before in-process I/O runs inline.
        live.sort_by_key(|s| s.is_local());
        live
    }

    /// Replicas that serve reads and must acknowledge writes.
    fn rw(&self) -> Vec<Arc<Slot>> {
        self.slots()
            .into_iter()
            .filter(|s| s.mode() == Mode::RW)
            .collect()
    }
}
