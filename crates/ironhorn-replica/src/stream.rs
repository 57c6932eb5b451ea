//! Reading a whole view in order, fast: the volume is cut into chunks along the sector map
//! (holes are never read), several threads read ahead in parallel, and the caller sees every
//! chunk in offset order. Used by export (and later by backup and rebuild sources).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Condvar, Mutex};

use crate::error::{ReplicaError, Result};
use crate::replica::Replica;

/// One piece of the view, in offset order.
#[derive(Debug)]
pub enum Chunk<'a> {
    /// Bytes some layer holds (they may be zeros: allocated zeros are data).
    Data(&'a [u8]),
    /// A range no layer holds: it reads as zeros.
    Hole(u64),
}

/// How to stream a view.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Largest data chunk handed to the callback.
    pub chunk_size: u64,
    /// Reader threads.
    pub readers: usize,
    /// Chunks read ahead of the callback at most (bounds memory: window x chunk_size).
    pub window: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            chunk_size: 4 << 20,
            readers: 4,
            window: 8,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    offset: u64,
    len: u64,
    data: bool,
}

impl Replica {
    /// Hints the kernel that the chain's files are about to be read sequentially.
    pub fn advise_sequential(&self) {
        for layer in &self.chain {
            // Only a hint: failure changes nothing but speed.
            let _ = rustix::fs::fadvise(&layer.file, 0, None, rustix::fs::Advice::Sequential);
        }
    }

    /// Calls `visit(offset, chunk)` for the whole view in offset order, reading ahead in
    /// parallel. Stops at the first error from a read or from `visit`.
    pub fn stream<E>(
        &self,
        options: StreamOptions,
        mut visit: impl FnMut(u64, Chunk<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), StreamError<E>> {
        let pieces = self.pieces(options.chunk_size.max(4096));
        let readers = options.readers.max(1);
        let window = options.window.max(readers);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let consumed = Mutex::new(0usize);
        let progressed = Condvar::new();
        let free_buffers: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
        let (tx, rx) = sync_channel::<(usize, Result<Vec<u8>>)>(window);

        std::thread::scope(|scope| {
            for _ in 0..readers {
                let tx = tx.clone();
                let (next, stop, consumed, progressed, free_buffers, pieces) =
                    (&next, &stop, &consumed, &progressed, &free_buffers, &pieces);
                scope.spawn(move || loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(piece) = pieces.get(index) else {
                        break;
                    };
                    {
                        let mut done = consumed.lock().unwrap_or_else(|e| e.into_inner());
                        while index >= *done + window && !stop.load(Ordering::Relaxed) {
                            done = progressed.wait(done).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = if piece.data {
                        let mut buf = free_buffers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .pop()
                            .unwrap_or_default();
                        buf.resize(piece.len as usize, 0);
                        self.read_at(&mut buf, piece.offset).map(|()| buf)
                    } else {
                        Ok(Vec::new())
                    };
                    if tx.send((index, result)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);

            let mut pending: BTreeMap<usize, Result<Vec<u8>>> = BTreeMap::new();
            let mut expected = 0usize;
            let outcome = (|| {
                while expected < pieces.len() {
                    let result = match pending.remove(&expected) {
                        Some(r) => r,
                        None => match rx.recv() {
                            Ok((index, r)) if index == expected => r,
                            Ok((index, r)) => {
                                pending.insert(index, r);
                                continue;
                            }
                            Err(_) => break,
                        },
                    };
                    let piece = pieces[expected];
                    let buf = result.map_err(StreamError::Read)?;
                    let chunk = if piece.data {
                        Chunk::Data(&buf)
                    } else {
                        Chunk::Hole(piece.len)
                    };
                    visit(piece.offset, chunk).map_err(StreamError::Visit)?;
                    free_buffers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(buf);
                    expected += 1;
                    *consumed.lock().unwrap_or_else(|e| e.into_inner()) = expected;
                    progressed.notify_all();
                }
                Ok(())
            })();
            stop.store(true, Ordering::Relaxed);
            progressed.notify_all();
            drop(rx);
            outcome
        })
    }

    fn pieces(&self, chunk_size: u64) -> Vec<Piece> {
        let mut pieces = Vec::new();
        for (offset, len, layer) in self.allocation_runs(0, self.size) {
            if layer.is_none() {
                pieces.push(Piece {
                    offset,
                    len,
                    data: false,
                });
                continue;
            }
            let mut pos = offset;
            while pos < offset + len {
                let n = (offset + len - pos).min(chunk_size);
                pieces.push(Piece {
                    offset: pos,
                    len: n,
                    data: true,
                });
                pos += n;
            }
        }
        pieces
    }
}

/// Why a stream stopped: a read failed, or the caller's visitor did.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    #[error(transparent)]
    Read(ReplicaError),
    #[error("{0}")]
    Visit(E),
}
