//! The engine: one volume served from N replicas. A write goes to every replica that is not
//! failed, in parallel, and succeeds when every RW replica has it; a replica that fails or
//! does not answer in time is marked ERR and dropped, and I/O goes on while one RW replica
//! remains. Reads go round-robin to RW replicas. FLUSH and FUA reach every replica.
//!
//! At start the engine asks every replica for its revision counter (one increment per write
//! request, so equal for replicas that saw the same writes) and serves only from those with
//! the highest; the others are marked ERR, with the reason logged.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use ironhorn_proto::replica::{self as wire, Control, ControlReply, Kind, ReplicaInfo};
use ironhorn_replica::net::Addr;
use ironhorn_replica::server::{replica_info, run_control};
use ironhorn_replica::{Replica, ReplicaOptions, SharedReplica};
use serde::Serialize;

use crate::device::{check_range, BlockDevice, DeviceError, DeviceResult};
use crate::remote::RemoteReplica;

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
            Backend::Local(replica) => {
                let replica = replica.clone();
                tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
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
                        Kind::Flush => replica.flush().map(|()| Vec::new()).map_err(e),
                        _ => Ok(Vec::new()),
                    }
                })
                .await
                .map_err(|e| format!("local replica task failed: {e}"))?
            }
        }
    }

    async fn control(&self, control: Control, timeout: Duration) -> Result<ControlReply, String> {
        match &self.backend {
            Backend::Remote(r) => {
                let payload = Arc::new(wire::encode_json(&control));
                let reply = r
                    .call(Kind::Control, 0, 0, 0, Some(payload), timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                wire::decode_control_reply(&reply).map_err(|e| e.to_string())
            }
            Backend::Local(replica) => {
                let replica = replica.clone();
                tokio::task::spawn_blocking(move || {
                    run_control(&replica, control).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            }
        }
    }

    async fn info(&self, timeout: Duration) -> Result<ReplicaInfo, String> {
        match self.control(Control::Info, timeout).await? {
            ControlReply::Info(info) => Ok(info),
            ControlReply::Done => Err("replica answered info without info".into()),
        }
    }
}

/// Why the engine could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no replica can serve the volume: {0}")]
    NoReplica(String),
    #[error("{0}")]
    Replica(String),
}

/// A volume served from its replicas.
#[derive(Debug)]
pub struct Engine {
    volume: String,
    size: u64,
    slots: Mutex<Vec<Arc<Slot>>>,
    timeout: Duration,
    next_read: AtomicUsize,
    runtime: tokio::runtime::Handle,
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
            let backend = match spec {
                ReplicaSpec::Local(dir) => {
                    let replica = if dir.join("volume.meta").exists() {
                        Replica::open(dir, &ReplicaOptions::default())
                    } else {
                        Replica::create(dir, size)
                    };
                    match replica {
                        Ok(r) => Backend::Local(Arc::new(SharedReplica::new(r))),
                        Err(e) => {
                            problems.push(format!("{spec}: {e}"));
                            continue;
                        }
                    }
                }
                ReplicaSpec::Remote(addr) => match RemoteReplica::connect(addr, timeout).await {
                    Ok(r) => Backend::Remote(r),
                    Err(e) => {
                        problems.push(format!("{spec}: {e}"));
                        continue;
                    }
                },
            };
            slots.push(Arc::new(Slot {
                spec: spec.clone(),
                backend,
                mode: Mutex::new(Mode::RW),
                reason: Mutex::new(String::new()),
            }));
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
                if slot.mode() == Mode::RW && info.revision < best {
                    slot.fail(&format!(
                        "revision counter {} is behind the newest {best}: it missed writes",
                        info.revision
                    ));
                } else if slot.mode() == Mode::RW {
                    tracing::info!(replica = %slot.spec, revision = info.revision, "replica chosen: it holds the newest acknowledged writes");
                }
            }
        }
        for p in &problems {
            tracing::error!(problem = %p, "replica unavailable at start");
        }
        Ok(Engine {
            volume: volume.to_string(),
            size,
            slots: Mutex::new(slots),
            timeout,
            next_read: AtomicUsize::new(0),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub fn volume(&self) -> &str {
        &self.volume
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
        check_range(offset, len, self.size)
    }

    /// Replicas that receive writes (RW and WO).
    fn live(&self) -> Vec<Arc<Slot>> {
        self.slots()
            .into_iter()
            .filter(|s| s.mode() != Mode::ERR)
            .collect()
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
        if rw_ok == 0 {
            return Err(DeviceError::Io(format!(
                "no healthy replica left for volume {}",
                self.volume
            )));
        }
        Ok(())
    }

    async fn read_async(&self, buf: &mut [u8], offset: u64) -> DeviceResult<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let n = (buf.len() - done).min(MAX_CALL as usize);
            let pos = offset + done as u64;
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
                let slot =
                    &readable[self.next_read.fetch_add(1, Ordering::Relaxed) % readable.len()];
                match slot
                    .call(Kind::Read, pos, n as u32, 0, None, self.timeout)
                    .await
                {
                    Ok(data) if data.len() == n => {
                        buf[done..done + n].copy_from_slice(&data);
                        break;
                    }
                    Ok(data) => slot.fail(&format!("short read: {} of {n} bytes", data.len())),
                    Err(e) => slot.fail(&e),
                }
            }
            done += n;
        }
        Ok(())
    }

    async fn write_async(&self, data: &[u8], offset: u64, fua: bool) -> DeviceResult<()> {
        let mut done = 0usize;
        while done < data.len() {
            let n = (data.len() - done).min(MAX_CALL as usize);
            let chunk = Arc::new(data[done..done + n].to_vec());
            let flags = if fua { wire::FLAG_FUA } else { 0 };
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

    /// Runs `f` on every replica that is not failed (snapshot and friends); failures mark ERR.
    pub async fn control_all(&self, control: Control) -> DeviceResult<()> {
        let targets = self.live();
        let results = join_all(
            targets
                .iter()
                .map(|s| s.control(control.clone(), self.timeout)),
        )
        .await;
        let mut ok = 0;
        for (slot, r) in targets.iter().zip(results) {
            match r {
                Ok(_) => ok += 1,
                Err(e) => slot.fail(&e),
            }
        }
        if ok == 0 {
            return Err(DeviceError::Io(
                "no replica carried out the operation".into(),
            ));
        }
        Ok(())
    }

    /// Flushes and cleanly closes in-process replicas (remote ones close on their own).
    pub async fn shutdown(&self) {
        let _ = self.fan_out(Kind::Flush, 0, 0, 0, None).await;
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

    pub fn local_info(&self) -> Vec<ReplicaInfo> {
        self.slots()
            .iter()
            .filter_map(|s| match &s.backend {
                Backend::Local(r) => Some(replica_info(r)),
                Backend::Remote(_) => None,
            })
            .collect()
    }
}

impl BlockDevice for Engine {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        false
    }
    fn flush_covers_all_connections(&self) -> bool {
        true
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> DeviceResult<()> {
        self.check(offset, buf.len() as u64)?;
        self.runtime.block_on(self.read_async(buf, offset))
    }
    fn write_at(&self, data: &[u8], offset: u64) -> DeviceResult<()> {
        self.check(offset, data.len() as u64)?;
        self.runtime.block_on(self.write_async(data, offset, false))
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> DeviceResult<()> {
        self.check(offset, len)?;
        let zeros = vec![0u8; len.min(MAX_CALL) as usize];
        let mut pos = offset;
        while pos < offset + len {
            let n = (offset + len - pos).min(MAX_CALL) as usize;
            self.runtime
                .block_on(self.write_async(&zeros[..n], pos, false))?;
            pos += n as u64;
        }
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> DeviceResult<()> {
        self.check(offset, len)?;
        let mut pos = offset;
        while pos < offset + len {
            let n = (offset + len - pos).min(1 << 30);
            self.runtime
                .block_on(self.fan_out(Kind::Unmap, pos, n as u32, 0, None))?;
            pos += n;
        }
        Ok(())
    }
    fn flush(&self) -> DeviceResult<()> {
        self.runtime
            .block_on(self.fan_out(Kind::Flush, 0, 0, 0, None))
    }
}
