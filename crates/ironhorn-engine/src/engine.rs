//! The engine: one volume served from N replicas. A write goes to every replica that is not
//! failed, in parallel, and succeeds when every RW replica has it; a replica that fails or
//! does not answer in time is marked ERR and dropped, and I/O goes on while one RW replica
//! remains. Reads go to the in-process replica when there is a healthy one (no network hop),
//! else round-robin to RW replicas. FLUSH and FUA reach every replica.
//!
//! At start the engine asks every replica for its revision counter (one increment per write
//! request, so equal for replicas that saw the same writes) and its snapshot chain. Replicas
//! more than `window::MAX_RECONCILE_LAG` writes behind the newest, or with another chain,
//! are marked ERR, with the reason logged. The rest differ at most in writes that were in
//! flight when the engine last stopped: those ranges (from the replicas' recent-writes
//! rings) are copied from a replica with the newest revision to the others, so all of them
//! serve identical data without a rebuild.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use ironhorn_proto::replica::{
    self as wire, Control, ControlReply, ErrorCode, Kind, LayerInfo, ReplicaInfo,
};
use ironhorn_replica::net::Addr;
use ironhorn_replica::server::{code_of, run_control};
use ironhorn_replica::{Replica, ReplicaOptions, SharedReplica};
use serde::Serialize;

use crate::device::{check_range, BlockDevice, DeviceError, DeviceFuture, DeviceResult};
use crate::layer_send::LayerSender;
use crate::remote::{ClientError, RemoteReplica};
use crate::window::{WriteWindow, MAX_RECONCILE_LAG};

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

/// A replica's mode, as Longhorn names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mode {
    RW,
    WO,
    ERR,
}

#[derive(Debug)]
enum Backend {
    Local(Arc<SharedReplica>),
    Remote(RemoteReplica),
}

/// One replica of the volume.
#[derive(Debug)]
pub struct Slot {
    pub spec: ReplicaSpec,
    backend: Backend,
    mode: Mutex<Mode>,
    reason: Mutex<String>,
    /// While ERR: what it missed, for an incremental catch-up when it comes back.
    missed: Mutex<Missed>,
}

/// Granularity of the regions a failed replica is known to have missed.
const MISSED_REGION: u64 = 64 * 1024;

/// The writes a failed replica did not get. `whole` once something happened that a
/// region copy cannot repair (a snapshot, revert, purge, expand or rebuild): then only a
/// full rebuild brings it back.
#[derive(Debug, Default)]
struct Missed {
    regions: std::collections::BTreeSet<u64>,
    bytes_written: u64,
    whole: bool,
}

/// A replica as `info` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub address: String,
    pub mode: Mode,
    pub reason: String,
}

impl Slot {
    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// In this process (`file:DIR`): no network hop.
    fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    fn missed(&self) -> std::sync::MutexGuard<'_, Missed> {
        self.missed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, why: &str) {
        let mut mode = self.mode.lock().unwrap_or_else(|e| e.into_inner());
        if *mode != Mode::ERR {
            tracing::error!(replica = %self.spec, reason = why, "replica failed: marked ERR");
            *mode = Mode::ERR;
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = why.to_string();
        }
    }

    async fn call(
        &self,
        kind: Kind,
        offset: u64,
        len: u32,
        flags: u32,
        payload: Option<Arc<Vec<u8>>>,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        match &self.backend {
            Backend::Remote(r) => r
                .call(kind, offset, len, flags, payload, timeout)
                .await
                .map_err(|e| e.to_string()),
            Backend::Local(replica) if replica.is_retired() => Err(RETIRED.into()),
            Backend::Local(replica) => {
                // Page-cache I/O takes microseconds: done on this task it saves two thread
                // hops. What may wait for the disk (an uncached read, FUA, flush, unmap,
                // layer copies) runs on the blocking pool.
                let e = |e: ironhorn_replica::ReplicaError| e.to_string();
                match kind {
                    Kind::Write if len <= INLINE_WRITE_MAX => {
                        let fua = flags & wire::FLAG_FUA != 0;
                        local_call(replica, kind, offset, len, 0, payload)?;
                        if fua {
                            replica.flush_async().await.map_err(e)?;
                        }
                        return Ok(Vec::new());
                    }
                    Kind::Flush => {
                        replica.flush_async().await.map_err(e)?;
                        return Ok(Vec::new());
                    }
                    Kind::Read => {
                        let mut buf = vec![0u8; len as usize];
                        match replica.read_cached_at(&mut buf, offset) {
                            Ok(true) => return Ok(buf),
                            Ok(false) => {}
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    Kind::Ping => return Ok(Vec::new()),
                    _ => {}
                }
                let replica = replica.clone();
                tokio::task::spawn_blocking(move || {
                    local_call(&replica, kind, offset, len, flags, payload)
                })
                .await
                .map_err(|e| format!("local replica task failed: {e}"))?
            }
        }
    }

    /// Rebuild: writes `data` into layer `file` of this (rebuilding) replica.
    async fn write_layer(
        &self,
        file: &str,
        offset: u64,
        data: Arc<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(), String> {
        match &self.backend {
            Backend::Remote(r) => {
                let prefix = wire::layer_payload_prefix(file);
                r.call_parts(Kind::WriteLayer, offset, 0, 0, &prefix, Some(data), timeout)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Backend::Local(replica) if replica.is_retired() => Err(RETIRED.into()),
            Backend::Local(replica) => {
                let (replica, file) = (replica.clone(), file.to_string());
                tokio::task::spawn_blocking(move || {
                    replica.read().write_layer(&file, &data, offset)
                })
                .await
                .map_err(|e| format!("local replica task failed: {e}"))?
                .map_err(|e| e.to_string())
            }
        }
    }

    async fn control(
        &self,
        control: Control,
        timeout: Duration,
    ) -> Result<ControlReply, CallError> {
        match &self.backend {
            Backend::Remote(r) => {
                let payload = Arc::new(wire::encode_json(&control));
                let reply = r
                    .call(Kind::Control, 0, 0, 0, Some(payload), timeout)
                    .await
                    .map_err(|e| match e {
                        ClientError::Remote(code, message) if refusal(code) => {
                            CallError::Refused(message)
                        }
                        other => CallError::Failed(other.to_string()),
                    })?;
                wire::decode_control_reply(&reply).map_err(|e| CallError::Failed(e.to_string()))
            }
            Backend::Local(replica) if replica.is_retired() => {
                Err(CallError::Failed(RETIRED.into()))
            }
            Backend::Local(replica) => {
                let replica = replica.clone();
                tokio::task::spawn_blocking(move || {
                    run_control(&replica, control).map_err(|e| {
                        if refusal(code_of(&e)) {
                            CallError::Refused(e.to_string())
                        } else {
                            CallError::Failed(e.to_string())
                        }
                    })
                })
                .await
                .map_err(|e| CallError::Failed(e.to_string()))?
            }
        }
    }

    async fn info(&self, timeout: Duration) -> Result<ReplicaInfo, String> {
        match self
            .control(Control::Info, timeout)
            .await
            .map_err(|e| e.to_string())?
        {
            ControlReply::Info(info) => Ok(info),
            _ => Err("replica answered info without info".into()),
        }
    }

    async fn layers(&self, timeout: Duration) -> Result<Vec<LayerInfo>, CallError> {
        match self.control(Control::ListLayers, timeout).await? {
            ControlReply::Layers { layers } => Ok(layers),
            _ => Err(CallError::Failed("replica answered without layers".into())),
        }
    }
}

/// Why an in-process replica whose server stopped is failed.
const RETIRED: &str = "its replica server in this process stopped";

/// Writes up to this size to an in-process replica are done on the calling task.
const INLINE_WRITE_MAX: u32 = 1 << 20;

/// One data request to an in-process replica.
fn local_call(
    replica: &SharedReplica,
    kind: Kind,
    offset: u64,
    len: u32,
    flags: u32,
    payload: Option<Arc<Vec<u8>>>,
) -> Result<Vec<u8>, String> {
    let e = |e: ironhorn_replica::ReplicaError| e.to_string();
    match kind {
        Kind::Read => {
            let mut buf = vec![0u8; len as usize];
            replica.read_at(&mut buf, offset).map_err(e)?;
            Ok(buf)
        }
        Kind::Write => {
            let data = payload.unwrap_or_default();
            replica.write_at(&data, offset).map_err(e)?;
            if flags & wire::FLAG_FUA != 0 {
                replica.flush().map_err(e)?;
            }
            Ok(Vec::new())
        }
        Kind::Unmap => replica
            .unmap(offset, u64::from(len))
            .map(|_| Vec::new())
            .map_err(e),
        Kind::WriteZeroes => replica
            .write_zeroes(offset, u64::from(len))
            .map(|()| Vec::new())
            .map_err(e),
        Kind::Flush => replica.flush().map(|()| Vec::new()).map_err(e),
        Kind::ReadLayer => {
            let payload = payload.unwrap_or_default();
            let (file, _) = wire::decode_layer_payload(&payload).map_err(|e| e.to_string())?;
            let mut buf = ironhorn_replica::buffers::take(len as usize);
            replica
                .read()
                .read_layer(file, &mut buf, offset)
                .map_err(e)?;
            Ok(buf)
        }
        Kind::Ping => Ok(Vec::new()),
        // Layer writes go through `Slot::write_layer`.
        Kind::WriteLayer | Kind::Control | Kind::ResponseOk | Kind::ResponseErr => {
            Err(format!("{kind:?} is not a data request"))
        }
    }
}

/// How a call to one replica went wrong: the replica refused a bad request (it stays
/// healthy), or it failed (it is marked ERR).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

fn refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Invalid | ErrorCode::NotFound | ErrorCode::Conflict | ErrorCode::OutOfRange
    )
}

/// Why the engine could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no replica can serve the volume: {0}")]
    NoReplica(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
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

async fn open_slot(spec: &ReplicaSpec, size: u64, timeout: Duration) -> Result<Slot, String> {
    let backend = match spec {
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
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            Backend::Local(Arc::new(SharedReplica::new(replica)))
        }
        ReplicaSpec::Remote(addr) => match crate::local::lookup(&addr.to_string()) {
            Some(replica) => Backend::Local(replica),
            None => Backend::Remote(
                RemoteReplica::connect(addr, timeout)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        },
    };
    Ok(Slot {
        spec: spec.clone(),
        backend,
        mode: Mutex::new(Mode::RW),
        reason: Mutex::new(String::new()),
        missed: Mutex::new(Missed::default()),
    })
}

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

/// A pseudo-random UUID for system snapshot names, as Longhorn names them.
fn system_snapshot_name() -> String {
    uuid::Uuid::new_v4().to_string()
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

const MAX_CALL: u64 = 16 << 20;

impl Engine {
    /// Opens or connects every replica and decides which may serve (see the module docs).
    pub async fn start(
        volume: &str,
        size: u64,
        specs: &[ReplicaSpec],
        timeout: Duration,
    ) -> Result<Engine, EngineError> {
        let mut slots = Vec::new();
        let mut problems = Vec::new();
        for spec in specs {
            match open_slot(spec, size, timeout).await {
                Ok(slot) => slots.push(Arc::new(slot)),
                Err(e) => problems.push(format!("{spec}: {e}")),
            }
        }
        let infos = join_all(slots.iter().map(|s| s.info(timeout))).await;
        let mut best = None;
        for (slot, info) in slots.iter().zip(&infos) {
            match info {
                Err(e) => slot.fail(&format!("info failed: {e}")),
                Ok(info) if info.rebuilding => slot.fail("its last rebuild did not finish"),
                Ok(info) if info.size != size => slot.fail(&format!(
                    "its size is {} but the volume is {size} bytes",
                    info.size
                )),
                Ok(info) => best = best.max(Some(info.revision)),
            }
        }
        let best = best.ok_or_else(|| {
            let mut all = problems.clone();
            all.extend(slots.iter().map(|s| {
                format!(
                    "{}: {}",
                    s.spec,
                    s.reason.lock().unwrap_or_else(|e| e.into_inner())
                )
            }));
            EngineError::NoReplica(all.join("; "))
        })?;
        for (slot, info) in slots.iter().zip(&infos) {
            if let Ok(info) = info {
                // A replica a little behind differs only in writes that were in flight when
                // the engine stopped: reconciled below. Further behind, it missed writes.
                if slot.mode() == Mode::RW && info.revision + MAX_RECONCILE_LAG < best {
                    slot.fail(&format!(
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
                slot.fail(&format!(
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
        };
        let mut engine = engine;
        engine.reconciled = engine.reconcile(best, &newest_slots).await;
        if engine.first_rw().is_err() {
            let reasons: Vec<String> = engine
                .status()
                .iter()
                .map(|s| format!("{}: {}", s.address, s.reason))
                .collect();
            return Err(EngineError::NoReplica(reasons.join("; ")));
        }
        Ok(engine)
    }

    /// Makes the RW replicas identical where writes may have been in flight when the engine
    /// last stopped: the ranges in their recent-writes rings (see `window`) are copied from
    /// one of them (the in-process one when there is one) to the others, which then take the
    /// source's revision again. A replica that fails meanwhile is marked ERR.
    async fn reconcile(&self, revision: u64, newest: &[Arc<Slot>]) -> Option<ReconcileReport> {
        loop {
            let rw: Vec<Arc<Slot>> = self
                .slots()
                .into_iter()
                .filter(|s| s.mode() == Mode::RW)
                .collect();
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
                match slot.control(Control::RecentWrites, self.timeout).await {
                    Ok(ControlReply::RecentWrites { writes }) => {
                        ranges.extend(writes.iter().map(|&(_, offset, len)| (offset, len)))
                    }
                    Ok(_) => slot.fail("answered without its recent writes"),
                    Err(e) => slot.fail(&format!("reading its recent writes failed: {e}")),
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
                    let data = match source
                        .call(Kind::Read, pos, n as u32, 0, None, self.timeout)
                        .await
                    {
                        Ok(data) if data.len() as u64 == n => Arc::new(data),
                        Ok(_) => {
                            source.fail("short read while reconciling replicas");
                            source_failed = true;
                            break 'copy;
                        }
                        Err(e) => {
                            source.fail(&format!("read failed while reconciling replicas: {e}"));
                            source_failed = true;
                            break 'copy;
                        }
                    };
                    // Zeros go as write-zeroes, which keeps the targets' holes (a trimmed range
                    // is mostly zeros).
                    let zeros = data.iter().all(|b| *b == 0);
                    let writes = targets.iter().filter(|t| t.mode() == Mode::RW).map(|t| {
                        let (kind, payload) = if zeros {
                            (Kind::WriteZeroes, None)
                        } else {
                            (Kind::Write, Some(data.clone()))
                        };
                        t.call(kind, pos, n as u32, 0, payload, self.timeout)
                    });
                    let live: Vec<&Arc<Slot>> =
                        targets.iter().filter(|t| t.mode() == Mode::RW).collect();
                    for (target, result) in live.into_iter().zip(join_all(writes).await) {
                        if let Err(e) = result {
                            target.fail(&format!("write failed while reconciling replicas: {e}"));
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
                if let Err(e) = target
                    .control(Control::SetRevision { revision }, self.timeout)
                    .await
                {
                    target.fail(&format!("setting its revision failed: {e}"));
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
                    .filter(|s| matches!(s.backend, Backend::Remote(_)))
                    .collect();
                let pings = remotes
                    .iter()
                    .map(|s| s.call(Kind::Ping, 0, 0, 0, None, engine.timeout));
                for (slot, result) in remotes.iter().zip(join_all(pings).await) {
                    if let Err(e) = result {
                        slot.fail(&format!("no answer to keep-alive ping: {e}"));
                    }
                }
            }
        });
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
                reason: s.reason.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            })
            .collect()
    }

    fn check(&self, offset: u64, len: u64) -> DeviceResult<()> {
        check_range(offset, len, self.size())
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

    /// Sends one request to every replica that is not failed; succeeds when every RW replica
    /// that answered succeeded and at least one RW replica remains.
    async fn fan_out(
        &self,
        kind: Kind,
        offset: u64,
        len: u32,
        flags: u32,
        payload: Option<Arc<Vec<u8>>>,
    ) -> DeviceResult<()> {
        // Writes and unmaps keep to the window (see `window`): it bounds what replicas may
        // disagree on if the engine dies now.
        let _in_flight = match kind {
            Kind::Write => Some(
                self.window
                    .enter(offset, payload.as_ref().map_or(0, |p| p.len() as u64))
                    .await,
            ),
            Kind::Unmap | Kind::WriteZeroes => {
                Some(self.window.enter(offset, u64::from(len)).await)
            }
            _ => None,
        };
        let targets = self.live();
        let results = join_all(
            targets
                .iter()
                .map(|s| s.call(kind, offset, len, flags, payload.clone(), self.timeout)),
        )
        .await;
        let mut rw_ok = 0;
        for (slot, result) in targets.iter().zip(results) {
            match result {
                Ok(_) if slot.mode() == Mode::RW => rw_ok += 1,
                Ok(_) => {}
                Err(e) => slot.fail(&e),
            }
        }
        if matches!(kind, Kind::Write | Kind::Unmap | Kind::WriteZeroes) {
            let bytes = if kind == Kind::Write {
                payload.as_ref().map_or(0, |p| p.len() as u64)
            } else {
                u64::from(len)
            };
            self.record_missed(offset, bytes);
        }
        if rw_ok == 0 {
            return Err(DeviceError::Io(format!(
                "no healthy replica left for volume {}",
                self.volume
            )));
        }
        Ok(())
    }

    /// Every failed replica misses `[offset, offset+len)`.
    fn record_missed(&self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        for slot in self.slots().iter().filter(|s| s.mode() == Mode::ERR) {
            let mut missed = slot.missed();
            missed.bytes_written += len;
            if !missed.whole {
                let first = offset / MISSED_REGION;
                let last = (offset + len - 1) / MISSED_REGION;
                missed.regions.extend(first..=last);
            }
        }
    }

    /// Failed replicas can no longer be caught up region by region (the snapshot tree or
    /// the size changed).
    fn invalidate_missed(&self) {
        for slot in self.slots().iter().filter(|s| s.mode() == Mode::ERR) {
            slot.missed().whole = true;
        }
    }

    /// Reads `len` bytes at `offset` from the RW replicas.
    async fn read_async(&self, offset: u64, len: usize) -> DeviceResult<Vec<u8>> {
        if len as u64 <= MAX_CALL {
            return self.read_call(offset, len).await;
        }
        let mut buf = vec![0u8; len];
        let mut done = 0usize;
        while done < len {
            let n = (len - done).min(MAX_CALL as usize);
            let data = self.read_call(offset + done as u64, n).await?;
            buf[done..done + n].copy_from_slice(&data);
            done += n;
        }
        Ok(buf)
    }

    /// One read request of at most `MAX_CALL` bytes, retried on another replica when one fails.
    async fn read_call(&self, offset: u64, len: usize) -> DeviceResult<Vec<u8>> {
        loop {
            let readable: Vec<Arc<Slot>> = self
                .slots()
                .into_iter()
                .filter(|s| s.mode() == Mode::RW)
                .collect();
            if readable.is_empty() {
                return Err(DeviceError::Io(format!(
                    "no healthy replica left for volume {}",
                    self.volume
                )));
            }
            // An in-process replica answers without a network hop: it serves every read
            // while it is healthy; otherwise reads go round-robin.
            let slot = match readable.iter().find(|s| s.is_local()) {
                Some(local) => local,
                None => &readable[self.next_read.fetch_add(1, Ordering::Relaxed) % readable.len()],
            };
            match slot
                .call(Kind::Read, offset, len as u32, 0, None, self.timeout)
                .await
            {
                Ok(data) if data.len() == len => return Ok(data),
                Ok(data) => slot.fail(&format!("short read: {} of {len} bytes", data.len())),
                Err(e) => slot.fail(&e),
            }
        }
    }

    async fn write_async(&self, data: Vec<u8>, offset: u64, fua: bool) -> DeviceResult<()> {
        const SECTOR: u64 = 4096;
        let end = offset + data.len() as u64;
        let unaligned = offset % SECTOR != 0 || end % SECTOR != 0;
        if unaligned && self.slots().iter().any(|s| s.mode() == Mode::WO) {
            // A replica being rebuilt cannot read-modify-write (its older layers are still
            // arriving): send it whole sectors, completed from the healthy replicas.
            let start = offset / SECTOR * SECTOR;
            let stop = end.div_ceil(SECTOR) * SECTOR;
            let mut whole = self.read_async(start, (stop - start) as usize).await?;
            let at = (offset - start) as usize;
            whole[at..at + data.len()].copy_from_slice(&data);
            return self.write_aligned(whole, start, fua).await;
        }
        self.write_aligned(data, offset, fua).await
    }

    async fn write_aligned(&self, data: Vec<u8>, offset: u64, fua: bool) -> DeviceResult<()> {
        let flags = if fua { wire::FLAG_FUA } else { 0 };
        if data.len() as u64 <= MAX_CALL {
            let len = data.len() as u32;
            return self
                .fan_out(Kind::Write, offset, len, flags, Some(Arc::new(data)))
                .await;
        }
        let mut done = 0usize;
        while done < data.len() {
            let n = (data.len() - done).min(MAX_CALL as usize);
            let chunk = Arc::new(data[done..done + n].to_vec());
            self.fan_out(
                Kind::Write,
                offset + done as u64,
                n as u32,
                flags,
                Some(chunk),
            )
            .await?;
            done += n;
        }
        Ok(())
    }

    /// Runs a control operation on every replica that is not failed. A refusal (bad name,
    /// unknown snapshot) is returned as such and marks nobody; a failure marks that replica ERR.
    async fn control_all(&self, control: Control) -> Result<(), EngineError> {
        if !matches!(control, Control::Info | Control::ListLayers) {
            self.invalidate_missed();
        }
        let targets = self.live();
        let results = join_all(
            targets
                .iter()
                .map(|s| s.control(control.clone(), self.timeout)),
        )
        .await;
        let mut ok = 0;
        let mut refused = None;
        for (slot, r) in targets.iter().zip(results) {
            match r {
                Ok(_) => ok += 1,
                Err(CallError::Refused(why)) => refused = Some(why),
                Err(CallError::Failed(why)) => slot.fail(&why),
            }
        }
        if let Some(why) = refused {
            return Err(EngineError::Refused(why));
        }
        if ok == 0 {
            return Err(EngineError::Failed(
                "no replica carried out the operation".into(),
            ));
        }
        Ok(())
    }

    fn first_rw(&self) -> Result<Arc<Slot>, EngineError> {
        self.slots()
            .into_iter()
            .find(|s| s.mode() == Mode::RW)
            .ok_or_else(|| {
                EngineError::Failed(format!(
                    "no healthy replica left for volume {}",
                    self.volume
                ))
            })
    }

    /// Takes a user snapshot on every replica at one crash-consistent point (I/O paused).
    pub async fn snapshot(
        &self,
        name: &str,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let _paused = self.gate.write().await;
        self.control_all(Control::Snapshot {
            name: name.to_string(),
            user_created: true,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            labels,
        })
        .await
    }

    /// The snapshot tree as a healthy replica holds it.
    pub async fn layers(&self) -> Result<Vec<LayerInfo>, EngineError> {
        self.first_rw()?
            .layers(self.timeout)
            .await
            .map_err(|e| EngineError::Failed(e.to_string()))
    }

    pub async fn remove_snapshot(&self, name: &str) -> Result<(), EngineError> {
        if self.rebuilding.load(Ordering::SeqCst) {
            return Err(EngineError::Refused(
                "a replica is being rebuilt; remove snapshots after it finishes".into(),
            ));
        }
        self.control_all(Control::Remove {
            name: name.to_string(),
        })
        .await
    }

    pub async fn purge(&self) -> Result<(), EngineError> {
        if self.rebuilding.load(Ordering::SeqCst) {
            return Err(EngineError::Refused(
                "a replica is being rebuilt; purge after it finishes".into(),
            ));
        }
        let _paused = self.gate.write().await;
        self.control_all(Control::Purge).await
    }

    /// Reverts every replica to snapshot `name`. The caller makes sure no client is
    /// connected (the data under it changes).
    pub async fn revert(&self, name: &str) -> Result<(), EngineError> {
        if self.slots().iter().any(|s| s.mode() == Mode::WO) {
            return Err(EngineError::Refused(
                "a replica is being rebuilt; revert after it finishes".into(),
            ));
        }
        let _paused = self.gate.write().await;
        self.control_all(Control::Revert {
            name: name.to_string(),
        })
        .await
    }

    pub async fn expand(&self, size: u64) -> Result<(), EngineError> {
        if size < self.size() {
            return Err(EngineError::Refused(format!(
                "a volume cannot shrink: it is {} bytes",
                self.size()
            )));
        }
        if self.rebuilding.load(Ordering::SeqCst) {
            return Err(EngineError::Refused(
                "a replica is being rebuilt; expand after it finishes".into(),
            ));
        }
        let _paused = self.gate.write().await;
        self.control_all(Control::Expand { size }).await?;
        self.size.store(size, Ordering::SeqCst);
        Ok(())
    }

    /// Drops a replica from the volume (its data stays where it is).
    pub async fn remove_replica(&self, address: &str) -> Result<(), EngineError> {
        let _paused = self.gate.write().await;
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let before = slots.len();
        let remaining: Vec<Arc<Slot>> = slots
            .iter()
            .filter(|s| s.spec.to_string() != address)
            .cloned()
            .collect();
        if remaining.len() == before {
            return Err(EngineError::Refused(format!(
                "{address} is not a replica of this volume"
            )));
        }
        if !remaining.iter().any(|s| s.mode() == Mode::RW) {
            return Err(EngineError::Refused(format!(
                "{address} is the last healthy replica; add another first"
            )));
        }
        *slots = remaining;
        Ok(())
    }

    /// Adds a replica and rebuilds it while I/O goes on: a system snapshot on every replica,
    /// the target lays out the source's snapshot files and receives every new write (WO),
    /// then the snapshot files' data is copied (allocated extents only; files the target
    /// already holds with the same checksum are skipped), and the target becomes RW.
    pub async fn add_replica(&self, spec: &ReplicaSpec) -> Result<RebuildReport, EngineError> {
        self.add_returning_replica(spec, None).await
    }

    /// [`Engine::add_replica`] for a replica that failed while it was known at `previous` (a
    /// replica server that restarted on another port): it is caught up incrementally as if it
    /// had come back at its old address.
    pub async fn add_returning_replica(
        &self,
        spec: &ReplicaSpec,
        previous: Option<&str>,
    ) -> Result<RebuildReport, EngineError> {
        let returning = self.slots().into_iter().find(|s| {
            s.spec == *spec
                || previous.is_some_and(|p| s.mode() == Mode::ERR && s.spec.to_string() == p)
        });
        if returning.as_ref().is_some_and(|s| s.mode() != Mode::ERR) {
            return Err(EngineError::Refused(format!(
                "{spec} is already a replica of this volume"
            )));
        }
        if self.rebuilding.swap(true, Ordering::SeqCst) {
            return Err(EngineError::Refused("another rebuild is running".into()));
        }
        let result = match returning {
            Some(old) => match self.catch_up(spec, &old).await {
                Ok(report) => Ok(report),
                Err(why) => {
                    tracing::warn!(replica = %spec, reason = %why, "incremental catch-up not possible: full rebuild");
                    self.slots
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|s| !Arc::ptr_eq(s, &old));
                    self.rebuild(spec).await
                }
            },
            None => self.rebuild(spec).await,
        };
        self.rebuilding.store(false, Ordering::SeqCst);
        result
    }

    /// A replica that failed and came back with its data as it was: copy only the regions
    /// written while it was away (Longhorn would copy the whole replica again).
    async fn catch_up(&self, spec: &ReplicaSpec, old: &Arc<Slot>) -> Result<RebuildReport, String> {
        if old.missed().whole {
            return Err("snapshots or the size changed while it was away".into());
        }
        let target = Arc::new(open_slot(spec, self.size(), self.timeout).await?);
        let info = target.info(self.timeout).await?;
        if info.rebuilding {
            return Err("its last rebuild did not finish".into());
        }
        if info.size != self.size() {
            return Err(format!("its size is {} bytes", info.size));
        }
        let source = self.first_rw().map_err(|e| e.to_string())?;
        let tree = |layers: Vec<LayerInfo>| {
            let head_parent = layers.iter().find(|l| l.is_head).map(|l| l.parent.clone());
            let snapshots: std::collections::BTreeSet<String> = layers
                .into_iter()
                .filter(|l| !l.is_head)
                .map(|l| l.file)
                .collect();
            (head_parent, snapshots)
        };
        let theirs = tree(
            target
                .layers(self.timeout)
                .await
                .map_err(|e| e.to_string())?,
        );
        let ours = tree(
            source
                .layers(self.timeout)
                .await
                .map_err(|e| e.to_string())?,
        );
        if theirs != ours {
            return Err("its snapshot tree differs from the volume's".into());
        }
        let mut report = RebuildReport {
            replica: spec.to_string(),
            source: source.spec.to_string(),
            incremental: true,
            ..RebuildReport::default()
        };
        let regions = {
            let _paused = self.gate.write().await;
            target
                .control(Control::SetRebuilding { rebuilding: true }, self.timeout)
                .await
                .map_err(|e| e.to_string())?;
            *target.mode.lock().unwrap_or_else(|e| e.into_inner()) = Mode::WO;
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.retain(|s| !Arc::ptr_eq(s, old));
            slots.push(target.clone());
            let missed = std::mem::take(&mut *old.missed());
            report.bytes_written_while_away = missed.bytes_written;
            missed.regions
        };
        // Runs of missed regions, each copied while I/O is paused so no newer write to the
        // same region can be overtaken by the copy.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for region in regions {
            match runs.last_mut() {
                Some((start, len))
                    if *start + *len == region * MISSED_REGION && *len < (1 << 20) =>
                {
                    *len += MISSED_REGION
                }
                _ => runs.push((region * MISSED_REGION, MISSED_REGION)),
            }
        }
        self.rebuild_done.store(0, Ordering::Relaxed);
        self.rebuild_total
            .store(runs.iter().map(|(_, len)| len).sum(), Ordering::Relaxed);
        for (start, len) in runs {
            let len = len.min(self.size().saturating_sub(start));
            let _paused = self.gate.write().await;
            let data = self
                .read_async(start, len as usize)
                .await
                .map_err(|e| e.to_string())?;
            if let Err(e) = target
                .call(
                    Kind::Write,
                    start,
                    len as u32,
                    0,
                    Some(Arc::new(data)),
                    self.timeout,
                )
                .await
            {
                target.fail(&e);
                return Err(e);
            }
            report.bytes_copied += len;
            self.rebuild_done.fetch_add(len, Ordering::Relaxed);
        }
        let _paused = self.gate.write().await;
        let revision = source.info(self.timeout).await?.revision;
        for control in [
            Control::SetRevision { revision },
            Control::SetRebuilding { rebuilding: false },
        ] {
            if let Err(e) = target.control(control, self.timeout).await {
                target.fail(&e.to_string());
                return Err(e.to_string());
            }
        }
        *target.mode.lock().unwrap_or_else(|e| e.into_inner()) = Mode::RW;
        tracing::info!(replica = %spec, copied = report.bytes_copied, written = report.bytes_written_while_away, "caught up incrementally: replica is RW");
        Ok(report)
    }

    async fn rebuild(&self, spec: &ReplicaSpec) -> Result<RebuildReport, EngineError> {
        let failed = |e: String| EngineError::Failed(format!("rebuilding {spec}: {e}"));
        let target = Arc::new(
            open_slot(spec, self.size(), self.timeout)
                .await
                .map_err(failed)?,
        );
        let info = target.info(self.timeout).await.map_err(failed)?;
        if info.size != self.size() {
            return Err(EngineError::Refused(format!(
                "{spec} holds a replica of {} bytes; the volume is {} bytes",
                info.size,
                self.size()
            )));
        }
        let source = self.first_rw()?;
        let mut report = RebuildReport {
            replica: spec.to_string(),
            source: source.spec.to_string(),
            ..RebuildReport::default()
        };
        // Snapshots are immutable: compare checksums before pausing I/O.
        let source_layers = source
            .layers(self.timeout)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let target_layers = target
            .layers(self.timeout)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut identical = std::collections::BTreeSet::new();
        for layer in source_layers.iter().filter(|l| !l.is_head) {
            if !target_layers
                .iter()
                .any(|t| t.file == layer.file && t.len == layer.len)
            {
                continue;
            }
            let file = layer.file.clone();
            let (a, b) = futures::join!(
                source.control(Control::LayerChecksum { file: file.clone() }, self.timeout),
                target.control(Control::LayerChecksum { file: file.clone() }, self.timeout)
            );
            if let (
                Ok(ControlReply::Checksum { checksum: a }),
                Ok(ControlReply::Checksum { checksum: b }),
            ) = (a, b)
            {
                if a == b {
                    identical.insert(file);
                }
            }
        }

        let layers = {
            let _paused = self.gate.write().await;
            let name = system_snapshot_name();
            self.control_all(Control::Snapshot {
                name: name.clone(),
                user_created: false,
                created: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
                labels: Default::default(),
            })
            .await?;
            let mut layers = source
                .layers(self.timeout)
                .await
                .map_err(|e| failed(e.to_string()))?;
            layers.retain(|l| !l.is_head);
            for l in &mut layers {
                l.keep = identical.contains(&l.file);
            }
            target
                .control(
                    Control::PrepareRebuild {
                        head_parent: format!("volume-snap-{name}.img"),
                        layers: layers.clone(),
                    },
                    self.timeout,
                )
                .await
                .map_err(|e| failed(e.to_string()))?;
            *target.mode.lock().unwrap_or_else(|e| e.into_inner()) = Mode::WO;
            self.slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(target.clone());
            tracing::info!(replica = %spec, source = %source.spec, "rebuild started: the new replica takes writes (WO)");
            layers
        };

        self.rebuild_done.store(0, Ordering::Relaxed);
        self.rebuild_total.store(
            layers.iter().filter(|l| !l.keep).map(|l| l.allocated).sum(),
            Ordering::Relaxed,
        );
        let copied = self
            .copy_layers(&source, &target, &layers, &mut report)
            .await;
        if let Err(e) = copied {
            target.fail(&e);
            return Err(failed(e));
        }
        let _paused = self.gate.write().await;
        let revision = source.info(self.timeout).await.map_err(failed)?.revision;
        if let Err(e) = target
            .control(Control::FinishRebuild { revision }, self.timeout)
            .await
        {
            target.fail(&e.to_string());
            return Err(failed(e.to_string()));
        }
        *target.mode.lock().unwrap_or_else(|e| e.into_inner()) = Mode::RW;
        tracing::info!(replica = %spec, bytes = report.bytes_copied, "rebuild finished: replica is RW");
        Ok(report)
    }

    async fn copy_layers(
        &self,
        source: &Slot,
        target: &Slot,
        layers: &[LayerInfo],
        report: &mut RebuildReport,
    ) -> Result<(), String> {
        const CHUNK: u64 = 4 << 20;
        const COPIES_IN_FLIGHT: usize = 6;
        use futures::StreamExt;
        // From an in-process replica to a replica server, the kernel moves the data
        // (sendfile on a connection of its own); otherwise chunks pass through the engine.
        let mut sender = match (&source.backend, &target.spec) {
            (Backend::Local(_), ReplicaSpec::Remote(addr)) => Some(
                LayerSender::connect(addr, self.timeout)
                    .await
                    .map_err(|e| format!("connecting to the target for the copy: {e}"))?,
            ),
            _ => None,
        };
        for layer in layers {
            if layer.keep {
                report.layers_skipped += 1;
                continue;
            }
            let extents = match source
                .control(
                    Control::LayerExtents {
                        file: layer.file.clone(),
                    },
                    self.timeout,
                )
                .await
            {
                Ok(ControlReply::Extents { extents }) => extents,
                Ok(_) => return Err("source answered without extents".into()),
                Err(e) => return Err(format!("listing extents of {}: {e}", layer.file)),
            };
            let name = Arc::new(wire::layer_payload_prefix(&layer.file));
            let mut chunks = Vec::new();
            for (start, end) in extents {
                let mut pos = start;
                while pos < end {
                    let n = (end - pos).min(CHUNK);
                    chunks.push((pos, n));
                    pos += n;
                }
            }
            if let (Some(sender), Backend::Local(replica)) = (&mut sender, &source.backend) {
                let handle = replica
                    .read()
                    .layer_handle(&layer.file)
                    .map_err(|e| format!("opening {} of the source: {e}", layer.file))?;
                report.bytes_copied += sender
                    .send(
                        &layer.file,
                        &handle,
                        &chunks,
                        COPIES_IN_FLIGHT,
                        &self.rebuild_done,
                    )
                    .await
                    .map_err(|e| format!("copying {}: {e}", layer.file))?;
                report.layers_copied += 1;
                continue;
            }
            // Several chunks in flight: reading the source and writing the target overlap.
            let file = &layer.file;
            let copies = futures::stream::iter(chunks.into_iter().map(|(pos, n)| {
                let name = name.clone();
                async move {
                    let data = source
                        .call(Kind::ReadLayer, pos, n as u32, 0, Some(name), self.timeout)
                        .await
                        .map_err(|e| format!("reading {file} from the source: {e}"))?;
                    let data = Arc::new(data);
                    target
                        .write_layer(file, pos, data.clone(), self.timeout)
                        .await
                        .map_err(|e| format!("writing {file} to the target: {e}"))?;
                    if let Ok(buffer) = Arc::try_unwrap(data) {
                        ironhorn_replica::buffers::give(buffer);
                    }
                    Ok::<u64, String>(n)
                }
            }))
            .buffer_unordered(COPIES_IN_FLIGHT);
            futures::pin_mut!(copies);
            while let Some(copied) = futures::StreamExt::next(&mut copies).await {
                let copied = copied?;
                report.bytes_copied += copied;
                self.rebuild_done.fetch_add(copied, Ordering::Relaxed);
            }
            report.layers_copied += 1;
        }
        Ok(())
    }

    /// Flushes and cleanly closes in-process replicas (remote ones close on their own).
    pub async fn shutdown(&self) {
        // After a flush every RW replica acknowledged, they hold the same data: none needs
        // the ranges of its last writes reconciled at the next start (a copy that, after a
        // large discard, would take long and write zeros over the holes).
        if self.fan_out(Kind::Flush, 0, 0, 0, None).await.is_ok() {
            for slot in self.slots().into_iter().filter(|s| s.mode() == Mode::RW) {
                if let Err(e) = slot
                    .control(Control::ForgetRecentWrites, self.timeout)
                    .await
                {
                    tracing::warn!(replica = %slot.spec, error = %e, "clearing the recent-writes ring at a clean stop");
                }
            }
        }
        let slots: Vec<Arc<Slot>> =
            std::mem::take(&mut *self.slots.lock().unwrap_or_else(|e| e.into_inner()));
        for slot in slots {
            if let Ok(slot) = Arc::try_unwrap(slot) {
                if let Backend::Local(replica) = slot.backend {
                    if let Ok(replica) = Arc::try_unwrap(replica) {
                        let _ =
                            tokio::task::spawn_blocking(move || replica.into_inner().close()).await;
                    }
                }
            }
        }
    }
}

impl BlockDevice for Engine {
    fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }
    fn read_only(&self) -> bool {
        false
    }
    fn flush_covers_all_connections(&self) -> bool {
        true
    }
    fn read(&self, offset: u64, len: usize) -> DeviceFuture<'_, Vec<u8>> {
        Box::pin(async move {
            self.check(offset, len as u64)?;
            let _io = self.gate.read().await;
            self.read_async(offset, len).await
        })
    }
    fn write(&self, data: Vec<u8>, offset: u64, fua: bool) -> DeviceFuture<'_, ()> {
        Box::pin(async move {
            self.check(offset, data.len() as u64)?;
            let _io = self.gate.read().await;
            self.write_async(data, offset, fua).await
        })
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> DeviceFuture<'_, ()> {
        Box::pin(async move {
            self.check(offset, len)?;
            let mut pos = offset;
            while pos < offset + len {
                let _io = self.gate.read().await;
                // Replicas zero a range by deallocating it (writing zeros only where a snapshot
                // shows through). While a replica is rebuilt its older layers are still
                // arriving, so it could not tell what shows through: zeros are sent instead.
                // (A rebuild adds its replica under the write side of the gate held here.)
                if self.rebuilding.load(Ordering::SeqCst) {
                    let n = (offset + len - pos).min(MAX_CALL) as usize;
                    self.write_async(vec![0u8; n], pos, false).await?;
                    pos += n as u64;
                } else {
                    let n = (offset + len - pos).min(1 << 30);
                    self.fan_out(Kind::WriteZeroes, pos, n as u32, 0, None)
                        .await?;
                    pos += n;
                }
            }
            Ok(())
        })
    }
    fn trim(&self, offset: u64, len: u64) -> DeviceFuture<'_, ()> {
        Box::pin(async move {
            self.check(offset, len)?;
            let mut pos = offset;
            while pos < offset + len {
                let n = (offset + len - pos).min(1 << 30);
                let _io = self.gate.read().await;
                // While a replica is rebuilt its older layers are still arriving: a trim is
                // only a hint, so it is skipped rather than made to race the copy.
                if !self.rebuilding.load(Ordering::SeqCst) {
                    self.fan_out(Kind::Unmap, pos, n as u32, 0, None).await?;
                }
                pos += n;
            }
            Ok(())
        })
    }
    fn flush(&self) -> DeviceFuture<'_, ()> {
        Box::pin(async move {
            let _io = self.gate.read().await;
            self.fan_out(Kind::Flush, 0, 0, 0, None).await
        })
    }
}
