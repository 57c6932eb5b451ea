//! Starting and stopping an engine. At start the engine asks every replica for its revision
//! counter (one increment per write request, so equal for replicas that saw the same writes)
//! and its snapshot chain. Replicas more than `window::MAX_RECONCILE_LAG` writes behind the
//! newest, or with another chain, are marked ERR, with the reason logged. The rest differ at
//! most in writes that were in flight when the engine last stopped: those ranges (from the
//! replicas' recent-writes rings) are copied from a replica with the newest revision to the
//! others, so all of them serve identical data without a rebuild. A clean stop flushes every
//! replica and clears those rings, so the next start copies nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use ironhorn_proto::replica::ReplicaInfo;

use super::io::DataOp;
use super::{Engine, Fencing, Mode, ReconcileReport, ReplicaSpec, Slot};
use crate::backend::Unopened;
use crate::error::EngineError;
use crate::local::LocalReplicas;
use crate::window::{WriteWindow, MAX_RECONCILE_LAG};
use crate::BlockDevice;

/// Largest copy while reconciling replicas at start.
const RECONCILE_CHUNK: u64 = 4 << 20;

/// `ranges` rounded out to whole 4 KiB sectors, clipped to `size`, sorted and merged.
fn sector_runs(ranges: Vec<(u64, u64)>, size: u64) -> Vec<(u64, u64)> {
    const SECTOR: u64 = 4096;
    let mut spans: Vec<(u64, u64)> = ranges
        .into_iter()
        .filter(|&(_, len)| len > 0)
        .map(|(offset, len)| {
            let start = offset / SECTOR * SECTOR;
            let end = offset
                .saturating_add(len)
                .div_ceil(SECTOR)
                .saturating_mul(SECTOR)
                .min(size);
            (start, end)
        })
        .filter(|&(start, end)| start < end)
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
        .into_iter()
        .map(|(start, end)| (start, end - start))
        .collect()
}

impl Engine {
    /// Opens or connects every replica and decides which may serve (see the module docs).
    /// Unfenced: for the standalone `ironhorn engine`; the node agent uses
    /// [`Engine::start_fenced`].
    pub async fn start(
        volume: &str,
        size: u64,
        specs: &[ReplicaSpec],
        timeout: Duration,
        locals: &LocalReplicas,
    ) -> Result<Engine, EngineError> {
        Engine::start_fenced(volume, size, specs, timeout, locals, Fencing::default()).await
    }

    /// [`Engine::start`] for attachment `fencing.generation`: every replica is claimed with
    /// it before it serves, so engines of older attachments are refused from then on. A
    /// replica a newer attachment has claimed already stops the start: this one is stale.
    /// Writes are acknowledged once `fencing.quorum` replicas have them.
    pub async fn start_fenced(
        volume: &str,
        size: u64,
        specs: &[ReplicaSpec],
        timeout: Duration,
        locals: &LocalReplicas,
        fencing: Fencing,
    ) -> Result<Engine, EngineError> {
        let generation = fencing.generation;
        let mut slots = Vec::new();
        let mut problems = Vec::new();
        let mut unopened = Vec::new();
        for spec in specs {
            match Slot::open(volume, spec, size, timeout, locals, generation).await {
                Ok(slot) => slots.push(Arc::new(slot)),
                Err(e) if e.is_fenced() => {
                    return Err(EngineError::replica(
                        format!("claiming for attachment generation {generation}"),
                        spec,
                    )(e))
                }
                Err(e) => {
                    problems.push(format!("{spec}: {e}"));
                    unopened.push((spec, e));
                }
            }
        }
        if slots.len() < fencing.min_claimed {
            return Err(EngineError::TooFewClaimed {
                volume: volume.to_string(),
                generation,
                claimed: slots.len(),
                needed: fencing.min_claimed,
                problems,
            });
        }
        // Those that could not be opened hold their place, ERR: a majority quorum counts
        // them, and adding one later rebuilds it there.
        for (spec, e) in unopened {
            let slot = Slot::new(volume, spec.clone(), Box::new(Unopened), timeout);
            slot.fail(format!("could not be opened when the engine started: {e}"));
            slot.missed().whole = true;
            slots.push(Arc::new(slot));
        }
        // Each placeholder's reason says why it could not be opened.
        Engine::with_slots(volume, size, slots, Vec::new(), timeout, locals, fencing).await
    }

    /// [`Engine::start`] on replicas already opened; `problems` are those of replicas that
    /// could not be opened.
    pub(crate) async fn with_slots(
        volume: &str,
        size: u64,
        slots: Vec<Arc<Slot>>,
        problems: Vec<String>,
        timeout: Duration,
        locals: &LocalReplicas,
        fencing: Fencing,
    ) -> Result<Engine, EngineError> {
        let infos = join_all(slots.iter().map(|s| s.info())).await;
        let mut best = None;
        for (slot, info) in slots.iter().zip(&infos) {
            match info {
                Err(e) => slot.fail(format!("info failed: {e}")),
                Ok(info) if info.rebuilding => slot.fail("its last rebuild did not finish"),
                Ok(info) if info.size != size => slot.fail(format!(
                    "its size is {} but the volume is {size} bytes",
                    info.size
                )),
                Ok(info) => best = best.max(Some(info.revision)),
            }
        }
        let best = best.ok_or_else(|| {
            let mut all = problems.clone();
            all.extend(slots.iter().map(|s| format!("{}: {}", s.spec, s.reason())));
            EngineError::NoReplica {
                volume: volume.to_string(),
                problems: all,
            }
        })?;
        for (slot, info) in slots.iter().zip(&infos) {
            if let Ok(info) = info {
                // A replica a little behind differs only in writes that were in flight when
                // the engine stopped: reconciled below. Further behind, it missed writes.
                if slot.mode() == Mode::RW && info.revision + MAX_RECONCILE_LAG < best {
                    slot.fail(format!(
                        "revision counter {} is behind the newest {best}: it missed writes",
                        info.revision
                    ));
                }
            }
        }
        // Replicas that agree on the revision must also agree on their snapshots: those whose
        // chain differs from the preferred one's (an interrupted snapshot) are left out.
        let newest: Vec<(&Arc<Slot>, &ReplicaInfo)> = slots
            .iter()
            .zip(&infos)
            .filter_map(|(s, info)| Some((s, info.as_ref().ok()?)))
            .filter(|(s, info)| s.mode() == Mode::RW && info.revision == best)
            .collect();
        let preferred = newest
            .iter()
            .min_by_key(|(s, _)| !s.is_local())
            .map(|(s, info)| (s.spec.clone(), info.chain.clone()));
        for (slot, info) in slots.iter().zip(&infos) {
            let (Ok(info), Some((preferred, chain))) = (info, &preferred) else {
                continue;
            };
            if slot.mode() != Mode::RW {
                continue;
            }
            if &info.chain != chain {
                slot.fail(format!(
                    "its snapshots {:?} differ from those of {preferred} {:?} (an interrupted snapshot operation)",
                    info.chain, chain
                ));
            } else {
                tracing::info!(replica = %slot.spec, revision = info.revision, "replica chosen: it holds the newest acknowledged writes");
            }
        }
        for p in &problems {
            tracing::error!(problem = %p, "replica unavailable at start");
        }
        let newest_slots: Vec<Arc<Slot>> = newest.iter().map(|(s, _)| (*s).clone()).collect();
        let engine = Engine {
            volume: volume.to_string(),
            size: AtomicU64::new(size),
            slots: Mutex::new(slots),
            gate: tokio::sync::RwLock::new(()),
            rebuilding: AtomicBool::new(false),
            rebuild_done: AtomicU64::new(0),
            rebuild_total: AtomicU64::new(0),
            timeout,
            next_read: AtomicUsize::new(0),
            window: WriteWindow::default(),
            reconciled: None,
            locals: locals.clone(),
            generation: fencing.generation,
            quorum: fencing.quorum,
            fenced: Mutex::new(None),
        };
        let mut engine = engine;
        engine.reconciled = engine.reconcile(best, &newest_slots).await;
        if engine.first_rw("start").is_err() {
            return Err(EngineError::NoReplica {
                volume: volume.to_string(),
                problems: engine
                    .status()
                    .iter()
                    .map(|s| format!("{}: {}", s.address, s.reason))
                    .collect(),
            });
        }
        Ok(engine)
    }

    /// Makes the RW replicas identical where writes may have been in flight when the engine
    /// last stopped: the ranges in their recent-writes rings (see `window`) are copied from
    /// one of them (the in-process one when there is one) to the others, which then take the
    /// source's revision again. A replica that fails meanwhile is marked ERR.
    async fn reconcile(&self, revision: u64, newest: &[Arc<Slot>]) -> Option<ReconcileReport> {
        loop {
            let rw = self.rw();
            let is_newest = |s: &Arc<Slot>| newest.iter().any(|n| Arc::ptr_eq(n, s));
            if !rw.iter().any(is_newest) {
                // Only replicas a little behind are left: nothing proves they hold every
                // acknowledged write.
                for slot in &rw {
                    slot.fail("behind the newest revision, and no replica with it is left to reconcile from");
                }
                return None;
            }
            if rw.len() < 2 {
                return None;
            }
            let mut ranges = Vec::new();
            for slot in &rw {
                match slot.timed(slot.backend().recent_writes()).await {
                    Ok(writes) => {
                        ranges.extend(writes.iter().map(|&(_, offset, len)| (offset, len)))
                    }
                    Err(e) => slot.fail(format!("reading its recent writes failed: {e}")),
                }
            }
            let rw: Vec<Arc<Slot>> = rw.into_iter().filter(|s| s.mode() == Mode::RW).collect();
            let newest_rw: Vec<&Arc<Slot>> = rw.iter().filter(|s| is_newest(s)).collect();
            let Some(source) = newest_rw
                .iter()
                .min_by_key(|s| !s.is_local())
                .map(|s| (*s).clone())
            else {
                continue;
            };
            let targets: Vec<Arc<Slot>> = rw
                .into_iter()
                .filter(|s| !Arc::ptr_eq(s, &source))
                .collect();
            let runs = sector_runs(ranges, self.size());
            let mut copied = 0u64;
            let mut source_failed = false;
            'copy: for &(start, len) in &runs {
                let mut pos = start;
                while pos < start + len {
                    let n = (start + len - pos).min(RECONCILE_CHUNK);
                    let data = match source.read(pos, n as usize).await {
                        Ok(data) => Arc::new(data),
                        Err(e) => {
                            source.fail(format!("read failed while reconciling replicas: {e}"));
                            source_failed = true;
                            break 'copy;
                        }
                    };
                    // Zeros go as write-zeroes, which keeps the targets' holes (a trimmed range
                    // is mostly zeros).
                    let zeros = data.iter().all(|b| *b == 0);
                    let writes = targets.iter().filter(|t| t.mode() == Mode::RW).map(|t| {
                        t.timed(if zeros {
                            t.backend().write_zeroes(pos, n as u32)
                        } else {
                            t.backend().write(pos, data.clone(), false)
                        })
                    });
                    let live: Vec<&Arc<Slot>> =
                        targets.iter().filter(|t| t.mode() == Mode::RW).collect();
                    for (target, result) in live.into_iter().zip(join_all(writes).await) {
                        if let Err(e) = result {
                            target.fail(format!("write failed while reconciling replicas: {e}"));
                        }
                    }
                    copied += n;
                    pos += n;
                }
            }
            if source_failed {
                continue;
            }
            for target in targets.iter().filter(|t| t.mode() == Mode::RW) {
                if let Err(e) = target.timed(target.backend().set_revision(revision)).await {
                    target.fail(format!("setting its revision failed: {e}"));
                }
            }
            tracing::info!(
                source = %source.spec,
                ranges = runs.len(),
                bytes = copied,
                "replicas made identical where writes were last in flight"
            );
            return Some(ReconcileReport {
                source: source.spec.to_string(),
                ranges: runs.len(),
                bytes: copied,
            });
        }
    }

    /// Flushes and cleanly closes in-process replicas (remote ones close on their own).
    pub async fn shutdown(&self) {
        // After a flush every RW replica acknowledged, they hold the same data: none needs
        // the ranges of its last writes reconciled at the next start (a copy that, after a
        // large discard, would take long and write zeros over the holes).
        if self.fan_out(0, DataOp::Flush).await.is_ok() {
            for slot in self.slots().into_iter().filter(|s| s.mode() == Mode::RW) {
                if let Err(e) = slot.timed(slot.backend().forget_recent_writes()).await {
                    tracing::warn!(replica = %slot.spec, error = %e, "clearing the recent-writes ring at a clean stop");
                }
            }
        }
        let slots: Vec<Arc<Slot>> =
            std::mem::take(&mut *self.slots.lock().unwrap_or_else(|e| e.into_inner()));
        for slot in slots {
            if let Ok(slot) = Arc::try_unwrap(slot) {
                if let Some(replica) = slot.into_in_process() {
                    if let Ok(replica) = Arc::try_unwrap(replica) {
                        let _ =
                            tokio::task::spawn_blocking(move || replica.into_inner().close()).await;
                    }
                }
            }
        }
    }
}
