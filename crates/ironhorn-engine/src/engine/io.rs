//! The I/O fan-out: reads go to one healthy replica (retried on another when it fails),
//! writes, zeroing, trims and flushes to every replica that is not failed, acknowledged when
//! every RW replica has them. A replica that fails a request is marked ERR and the ranges it
//! misses from then on are recorded for its catch-up.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::join_all;

use super::slot::MISSED_REGION;
use super::{Engine, Mode, Slot, MAX_CALL};
use crate::device::{check_range, BlockDevice, DeviceError, DeviceFuture, DeviceResult};

/// One data request, sent to every replica that is not failed.
#[derive(Debug, Clone)]
pub(super) enum DataOp {
    Write { data: Arc<Vec<u8>>, fua: bool },
    WriteZeroes { len: u32 },
    Unmap { len: u32 },
    Flush,
}

impl DataOp {
    /// Bytes it changes (none for a flush).
    fn len(&self) -> u64 {
        match self {
            DataOp::Write { data, .. } => data.len() as u64,
            DataOp::WriteZeroes { len } | DataOp::Unmap { len } => u64::from(*len),
            DataOp::Flush => 0,
        }
    }

    async fn send(&self, slot: &Slot, offset: u64) -> Result<(), crate::error::CallError> {
        let backend = slot.backend();
        slot.timed(match self {
            DataOp::Write { data, fua } => backend.write(offset, data.clone(), *fua),
            DataOp::WriteZeroes { len } => backend.write_zeroes(offset, *len),
            DataOp::Unmap { len } => backend.unmap(offset, *len),
            DataOp::Flush => backend.flush(),
        })
        .await
    }
}

impl Engine {
    fn check(&self, offset: u64, len: u64) -> DeviceResult<()> {
        check_range(offset, len, self.size())
    }

    /// Fails every request once the engine is fenced (see [`Engine::fence`]).
    fn serving(&self) -> DeviceResult<()> {
        match self.fenced() {
            Some(why) => Err(DeviceError::Io(format!(
                "volume {} is served by a newer attachment elsewhere; this engine stopped: {why}",
                self.volume
            ))),
            None => Ok(()),
        }
    }

    fn no_healthy_replica(&self) -> DeviceError {
        DeviceError::Io(format!(
            "no healthy replica left for volume {}",
            self.volume
        ))
    }

    /// Sends `op` at `offset` to every replica that is not failed; succeeds when every RW
    /// replica that answered succeeded and at least one RW replica remains.
    pub(super) async fn fan_out(&self, offset: u64, op: DataOp) -> DeviceResult<()> {
        // Writes and unmaps keep to the window (see `window`): it bounds what replicas may
        // disagree on if the engine dies now.
        let _in_flight = match op {
            DataOp::Flush => None,
            _ => Some(self.window.enter(offset, op.len()).await),
        };
        self.serving()?;
        let targets = self.live();
        let results = join_all(targets.iter().map(|s| op.send(s, offset))).await;
        let mut rw_ok = 0;
        for (slot, result) in targets.iter().zip(results) {
            match result {
                Ok(()) if slot.mode() == Mode::RW => rw_ok += 1,
                Ok(()) => {}
                Err(e) if e.is_fenced() => self.fence(&e),
                Err(e) => slot.fail(e),
            }
        }
        // Not acknowledged once fenced, even where other replicas took it.
        self.serving()?;
        self.record_missed(offset, op.len());
        if rw_ok == 0 {
            return Err(self.no_healthy_replica());
        }
        let quorum = self.write_quorum();
        if rw_ok < quorum {
            return Err(DeviceError::Io(format!(
                "volume {}: only {rw_ok} replica(s) have it and {quorum} must (a majority): most replicas cannot be reached, so nothing more is acknowledged here until they return or are replaced",
                self.volume
            )));
        }
        Ok(())
    }

    /// Every failed replica misses `[offset, offset+len)`.
    pub(super) fn record_missed(&self, offset: u64, len: u64) {
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
    pub(super) fn invalidate_missed(&self) {
        for slot in self.slots().iter().filter(|s| s.mode() == Mode::ERR) {
            slot.missed().whole = true;
        }
    }

    /// Reads `len` bytes at `offset` from the RW replicas.
    pub(super) async fn read_async(&self, offset: u64, len: usize) -> DeviceResult<Vec<u8>> {
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
            self.serving()?;
            let readable = self.rw();
            if readable.is_empty() {
                return Err(self.no_healthy_replica());
            }
            // An in-process replica answers without a network hop: it serves every read
            // while it is healthy; otherwise reads go round-robin.
            let slot = match readable.iter().find(|s| s.is_local()) {
                Some(local) => local,
                None => &readable[self.next_read.fetch_add(1, Ordering::Relaxed) % readable.len()],
            };
            match slot.read(offset, len).await {
                Ok(data) => return Ok(data),
                Err(e) if e.is_fenced() => self.fence(&e),
                Err(e) => slot.fail(e),
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
        if data.len() as u64 <= MAX_CALL {
            let data = Arc::new(data);
            return self.fan_out(offset, DataOp::Write { data, fua }).await;
        }
        let mut done = 0usize;
        while done < data.len() {
            let n = (data.len() - done).min(MAX_CALL as usize);
            let data = Arc::new(data[done..done + n].to_vec());
            self.fan_out(offset + done as u64, DataOp::Write { data, fua })
                .await?;
            done += n;
        }
        Ok(())
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
                    self.fan_out(pos, DataOp::WriteZeroes { len: n as u32 })
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
                    self.fan_out(pos, DataOp::Unmap { len: n as u32 }).await?;
                }
                pos += n;
            }
            Ok(())
        })
    }
    fn flush(&self) -> DeviceFuture<'_, ()> {
        Box::pin(async move {
            let _io = self.gate.read().await;
            self.fan_out(0, DataOp::Flush).await
        })
    }
}
