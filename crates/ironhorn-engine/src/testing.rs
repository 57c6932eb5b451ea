//! A fault-injecting replica backend for the engine's unit tests: an in-memory replica
//! (no files, no blocking threads, so tests run on tokio's paused clock) behind a switch
//! that makes its calls fail, refuse, stall until released, or return short reads.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ironhorn_proto::replica::{Control, ControlReply, ReplicaInfo};
use ironhorn_replica::ReplicaError;
use tokio::sync::Notify;

use crate::backend::{CallFuture, ReplicaBackend};
use crate::error::CallError;

/// What the backend does with each call from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Fault {
    #[default]
    None,
    /// Every call fails as a disk error would.
    Fail,
    /// Every call is refused as a bad request (a replica that stays healthy).
    Refuse,
    /// No call answers until [`Faults::release`].
    Stall,
    /// Reads return half the bytes asked for.
    ShortRead,
}

/// The test's side of a [`Faulty`] backend.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    fault: Mutex<Fault>,
    released: Notify,
    /// Reads it answered.
    pub(crate) reads: AtomicUsize,
}

impl Faults {
    pub(crate) fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    fn get(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends a stall: the calls held answer now.
    pub(crate) fn release(&self) {
        self.set(Fault::None);
        self.released.notify_waiters();
    }

    /// Waits out a stall, then fails or refuses as set.
    async fn enter(&self) -> Result<Fault, CallError> {
        loop {
            // Registered before the check, so a release between the two is not missed.
            let released = self.released.notified();
            match self.get() {
                Fault::Stall => released.await,
                Fault::Fail => {
                    return Err(CallError::Replica(ReplicaError::Io {
                        op: "writing",
                        path: PathBuf::from("volume-head-000.img"),
                        source: io::Error::other("injected failure"),
                    }))
                }
                Fault::Refuse => {
                    return Err(CallError::Replica(ReplicaError::SnapshotExists(
                        "injected".into(),
                    )))
                }
                fault => return Ok(fault),
            }
        }
    }
}

/// An in-memory replica of `size` bytes with faults on demand.
#[derive(Debug)]
pub(crate) struct Faulty {
    data: Mutex<Vec<u8>>,
    revision: AtomicU64,
    faults: Arc<Faults>,
}

impl Faulty {
    pub(crate) fn new(size: usize) -> (Faulty, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let backend = Faulty {
            data: Mutex::new(vec![0; size]),
            revision: AtomicU64::new(0),
            faults: faults.clone(),
        };
        (backend, faults)
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, CallError> {
        let size = self.data().len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(len) {
            Some(end) if end <= size => Ok(start..end),
            _ => Err(CallError::Replica(ReplicaError::OutOfRange {
                offset,
                len: len as u64,
                size: size as u64,
            })),
        }
    }

    async fn zero(&self, offset: u64, len: u32) -> Result<(), CallError> {
        self.faults.enter().await?;
        let range = self.range(offset, len as usize)?;
        self.data()[range].fill(0);
        self.revision.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl ReplicaBackend for Faulty {
    fn read(&self, offset: u64, len: u32) -> CallFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let fault = self.faults.enter().await?;
            let range = self.range(offset, len as usize)?;
            let mut data = self.data()[range].to_vec();
            if fault == Fault::ShortRead {
                data.truncate(data.len() / 2);
            }
            self.faults.reads.fetch_add(1, Ordering::SeqCst);
            Ok(data)
        })
    }

    fn write(&self, offset: u64, data: Arc<Vec<u8>>, _fua: bool) -> CallFuture<'_, ()> {
        Box::pin(async move {
            self.faults.enter().await?;
            let range = self.range(offset, data.len())?;
            self.data()[range].copy_from_slice(&data);
            self.revision.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn write_zeroes(&self, offset: u64, len: u32) -> CallFuture<'_, ()> {
        Box::pin(self.zero(offset, len))
    }

    fn unmap(&self, offset: u64, len: u32) -> CallFuture<'_, ()> {
        Box::pin(self.zero(offset, len))
    }

    fn flush(&self) -> CallFuture<'_, ()> {
        Box::pin(async move { self.faults.enter().await.map(drop) })
    }

    fn ping(&self) -> CallFuture<'_, ()> {
        Box::pin(async move { self.faults.enter().await.map(drop) })
    }

    fn read_layer(&self, _file: &str, _offset: u64, _len: u32) -> CallFuture<'_, Vec<u8>> {
        Box::pin(async { Err(ReplicaError::Refused("no layers in memory".into()).into()) })
    }

    fn write_layer(&self, _file: &str, _offset: u64, _data: Arc<Vec<u8>>) -> CallFuture<'_, ()> {
        Box::pin(async { Err(ReplicaError::Refused("no layers in memory".into()).into()) })
    }

    fn control(&self, control: Control) -> CallFuture<'_, ControlReply> {
        Box::pin(async move {
            self.faults.enter().await?;
            Ok(match control {
                Control::Info => ControlReply::Info(ReplicaInfo {
                    size: self.data().len() as u64,
                    revision: self.revision.load(Ordering::SeqCst),
                    dirty: false,
                    rebuilding: false,
                    head: "volume-head-000.img".into(),
                    chain: vec!["volume-head".into()],
                }),
                Control::RecentWrites => ControlReply::RecentWrites { writes: Vec::new() },
                Control::SetRevision { revision } => {
                    self.revision.store(revision, Ordering::SeqCst);
                    ControlReply::Done
                }
                _ => ControlReply::Done,
            })
        })
    }
}
