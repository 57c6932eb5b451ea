//! [`DirectWriter`]: the sending side of a connection shared by many tasks.
//!
//! A sender that finds the connection idle writes its frame itself, on its own thread, with
//! one system call (no task hop, no wake-up of another thread: what matters at queue depth 1).
//! Senders that arrive while a write is under way only queue their frames, which the writing
//! sender sends next in one call (batching: what matters under load). Whatever the socket
//! cannot take at once goes to a background task that writes it as the socket drains. Large
//! payloads are queued by reference, never copied. The system calls run outside the lock;
//! frames are never interleaved.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

type Sink = Pin<Box<dyn AsyncWrite + Send>>;

/// A frame's payload, shared rather than copied.
pub type Body = Arc<Vec<u8>>;

/// Bytes queued beyond which [`DirectWriter::ready`] makes senders wait.
const QUEUE_LIMIT: usize = 8 << 20;
/// Payloads up to this size are copied into the queue; larger ones are queued by reference.
const COPY_MAX: usize = 16 << 10;
/// Buffers handed to one vectored write at most.
const MAX_IOVECS: usize = 64;

/// Queued bytes: `data[start..]`.
struct Chunk {
    data: ChunkData,
    start: usize,
}

enum ChunkData {
    Copied(Vec<u8>),
    Shared(Body),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        let all = match &self.data {
            ChunkData::Copied(v) => v.as_slice(),
            ChunkData::Shared(b) => b.as_slice(),
        };
        &all[self.start.min(all.len())..]
    }
}

/// Appends a frame to `queue`, small parts copied into the last chunk.
fn enqueue(queue: &mut VecDeque<Chunk>, header: &[u8], body: Option<&Body>) {
    let copy = |bytes: &[u8], queue: &mut VecDeque<Chunk>| {
        if bytes.is_empty() {
            return;
        }
        if let Some(Chunk {
            data: ChunkData::Copied(last),
            ..
        }) = queue.back_mut()
        {
            if last.len() < 256 << 10 {
                last.extend_from_slice(bytes);
                return;
            }
        }
        queue.push_back(Chunk {
            data: ChunkData::Copied(bytes.to_vec()),
            start: 0,
        });
    };
    copy(header, queue);
    match body {
        Some(body) if body.len() > COPY_MAX => queue.push_back(Chunk {
            data: ChunkData::Shared(body.clone()),
            start: 0,
        }),
        Some(body) => copy(body, queue),
        None => {}
    }
}

fn queued_len(queue: &VecDeque<Chunk>) -> usize {
    queue.iter().map(|c| c.bytes().len()).sum()
}

/// Drops the first `n` bytes of `queue`.
fn advance(queue: &mut VecDeque<Chunk>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        let left = front.bytes().len();
        if n < left {
            front.start += n;
            return;
        }
        n -= left;
        queue.pop_front();
    }
}

fn slices(queue: &VecDeque<Chunk>) -> Vec<io::IoSlice<'_>> {
    queue
        .iter()
        .take(MAX_IOVECS)
        .map(|c| io::IoSlice::new(c.bytes()))
        .collect()
}

/// Writes as much of `queue` as the socket takes now, removing what was written. `Ok(true)`:
/// all of it; `Ok(false)`: the socket is full.
fn write_now(sink: &mut Sink, queue: &mut VecDeque<Chunk>) -> io::Result<bool> {
    let mut cx = Context::from_waker(Waker::noop());
    while !queue.is_empty() {
        // One system call for a whole frame: a peer woken by half a frame would only have
        // to wait again.
        let written = sink.as_mut().poll_write_vectored(&mut cx, &slices(queue));
        match written {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => advance(queue, n),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(false),
        }
    }
    Ok(true)
}

/// Writes one frame as far as the socket takes it now, straight from the caller's buffers
/// (no queue, no copy). `Ok(true)`: all of it; `Ok(false)`: the socket is full and `rest`
/// holds what is left.
fn write_frame_now(
    sink: &mut Sink,
    header: &[u8],
    body: Option<&Body>,
    rest: &mut VecDeque<Chunk>,
) -> io::Result<bool> {
    let body_bytes: &[u8] = body.map_or(&[], |b| b.as_slice());
    let total = header.len() + body_bytes.len();
    let mut cx = Context::from_waker(Waker::noop());
    let mut done = 0;
    while done < total {
        let slices = [
            io::IoSlice::new(&header[done.min(header.len())..]),
            io::IoSlice::new(&body_bytes[done.saturating_sub(header.len())..]),
        ];
        match sink.as_mut().poll_write_vectored(&mut cx, &slices) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => done += n,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    if done == total {
        return Ok(true);
    }
    if done < header.len() {
        rest.push_back(Chunk {
            data: ChunkData::Copied(header[done..].to_vec()),
            start: 0,
        });
    }
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        rest.push_back(Chunk {
            data: ChunkData::Shared(body.clone()),
            start: done.saturating_sub(header.len()),
        });
    }
    Ok(false)
}

/// Writes all of `queue`, waiting for the socket as needed.
async fn write_all_chunks(sink: &mut Sink, queue: &mut VecDeque<Chunk>) -> io::Result<()> {
    while !queue.is_empty() {
        let n = sink.write_vectored(&slices(queue)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        advance(queue, n);
    }
    sink.flush().await
}

/// Who is writing to the socket right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    Nobody,
    /// A sender, on its own thread, without waiting.
    Sender,
    /// The background task, waiting for the socket to drain.
    Task,
}

struct State {
    queue: VecDeque<Chunk>,
    writing: Writing,
    failed: Option<String>,
    closing: bool,
}

/// See the module docs.
pub struct DirectWriter {
    state: Mutex<State>,
    /// Only ever locked by whoever `State::writing` names, so never contended; `None` while
    /// the background task has it.
    sink: Mutex<Option<Sink>>,
    /// Wakes the background task: it is to write the queue, or the writer is closing.
    work: Notify,
    /// Wakes senders waiting for the queue to shrink.
    drained: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter").finish_non_exhaustive()
    }
}

fn closed_error(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, reason.to_string())
}

impl DirectWriter {
    /// Takes `sink` and starts its background task on the current runtime.
    pub fn spawn(sink: impl AsyncWrite + Send + 'static) -> Arc<DirectWriter> {
        let writer = Arc::new(DirectWriter {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                writing: Writing::Nobody,
                failed: None,
                closing: false,
            }),
            sink: Mutex::new(Some(Box::pin(sink))),
            work: Notify::new(),
            drained: Notify::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(writer.clone().background());
        *writer.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        writer
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one frame: `header`, then `body`. May return before the bytes are on the wire
    /// (they are then sent by another sender or the background task); fails once the
    /// connection has failed or is closing.
    pub fn send(&self, header: &[u8], body: Option<&Body>) -> io::Result<()> {
        {
            let mut state = self.state();
            if let Some(reason) = &state.failed {
                return Err(closed_error(reason));
            }
            if state.closing {
                return Err(closed_error("the connection is closing"));
            }
            if state.writing != Writing::Nobody {
                enqueue(&mut state.queue, header, body);
                return Ok(());
            }
            state.writing = Writing::Sender;
        }
        let mut sink_slot = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sink) = sink_slot.as_mut() else {
            // Not reachable: only the background task takes the sink, while it is the writer.
            return Err(closed_error("the connection's writer is gone"));
        };
        let mut mine = VecDeque::new();
        let mut written = write_frame_now(sink, header, body, &mut mine);
        loop {
            let mut state = self.state();
            match written {
                Err(e) => {
                    state.failed = Some(e.to_string());
                    state.writing = Writing::Nobody;
                    drop(state);
                    self.drained.notify_waiters();
                    self.work.notify_one();
                    return Err(e);
                }
                Ok(false) => {
                    // The socket is full: the background task takes over, our rest first.
                    mine.append(&mut state.queue);
                    state.queue = mine;
                    state.writing = Writing::Task;
                    drop(state);
                    self.work.notify_one();
                    return Ok(());
                }
                Ok(true) if state.queue.is_empty() => {
                    state.writing = Writing::Nobody;
                    let closing = state.closing;
                    drop(state);
                    self.drained.notify_waiters();
                    if closing {
                        self.work.notify_one();
                    }
                    return Ok(());
                }
                Ok(true) => {
                    mine = std::mem::take(&mut state.queue);
                    drop(state);
                    written = write_now(sink, &mut mine);
                }
            }
        }
    }

    /// Waits while more than the limit is queued (a peer that does not read what it is sent
    /// must not make this process buffer without bound).
    pub async fn ready(&self) -> io::Result<()> {
        loop {
            let drained = self.drained.notified();
            {
                let state = self.state();
                if let Some(reason) = &state.failed {
                    return Err(closed_error(reason));
                }
                if queued_len(&state.queue) < QUEUE_LIMIT {
                    return Ok(());
                }
            }
            drained.await;
        }
    }

    /// Starts closing: what is queued is written, then the sending side is shut down; later
    /// sends fail. Does not wait (see [`DirectWriter::close`]).
    pub fn close_soon(&self) {
        self.state().closing = true;
        self.work.notify_one();
    }

    /// Writes what is queued, then shuts the sending side down.
    pub async fn close(&self) {
        self.close_soon();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The background task: writes the queue when a sender found the socket full, and shuts
    /// the socket down when closing.
    async fn background(self: Arc<Self>) {
        loop {
            let work = self.work.notified();
            let job = {
                let mut state = self.state();
                if state.failed.is_some() {
                    return;
                }
                match state.writing {
                    Writing::Task => Some(std::mem::take(&mut state.queue)),
                    Writing::Nobody if state.closing => {
                        state.writing = Writing::Task;
                        Some(VecDeque::new())
                    }
                    _ => None,
                }
            };
            let Some(mut batch) = job else {
                work.await;
                continue;
            };
            let taken = self.sink.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(mut sink) = taken else {
                return;
            };
            self.drained.notify_waiters();
            let result = write_all_chunks(&mut sink, &mut batch).await;
            let mut sink = Some(sink);
            let shut_down = {
                let mut state = self.state();
                if let Err(e) = result {
                    state.failed = Some(e.to_string());
                    drop(state);
                    self.drained.notify_waiters();
                    return;
                }
                if state.queue.is_empty() && state.closing {
                    state.failed = Some("the connection was closed".into());
                    true
                } else {
                    // Put the sink back before handing the writing role back (when nothing
                    // more arrived meanwhile; else it is still ours to write).
                    *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = sink.take();
                    if state.queue.is_empty() {
                        state.writing = Writing::Nobody;
                    }
                    false
                }
            };
            if let (true, Some(mut sink)) = (shut_down, sink) {
                let _ = sink.shutdown().await;
                self.drained.notify_waiters();
                return;
            }
            self.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_when_the_peer_is_slow() {
        // A small socket buffer: most frames go through the backlog.
        let (a, mut b) = tokio::io::duplex(1024);
        let writer = DirectWriter::spawn(a);
        let mut tasks = Vec::new();
        for t in 0..4u8 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..200u16 {
                    // Sizes on both sides of the copy limit.
                    let body = vec![t; 1 + usize::from(i) * 7919 % 40000];
                    let header = [
                        t,
                        (body.len() >> 16) as u8,
                        (body.len() >> 8) as u8,
                        body.len() as u8,
                    ];
                    writer.ready().await.unwrap();
                    writer.send(&header, Some(&Arc::new(body))).unwrap();
                }
            }));
        }
        let reader = tokio::spawn(async move {
            let mut counts = [0u32; 4];
            for _ in 0..800 {
                let mut header = [0u8; 4];
                b.read_exact(&mut header).await.unwrap();
                let len = usize::from(header[1]) << 16
                    | usize::from(header[2]) << 8
                    | usize::from(header[3]);
                let mut body = vec![0u8; len];
                b.read_exact(&mut body).await.unwrap();
                assert!(body.iter().all(|x| *x == header[0]), "frames interleaved");
                counts[usize::from(header[0])] += 1;
            }
            counts
        });
        for t in tasks {
            t.await.unwrap();
        }
        writer.close().await;
        assert_eq!(reader.await.unwrap(), [200; 4]);
        assert!(writer.send(b"late", None).is_err());
    }

    #[tokio::test]
    async fn a_dead_peer_fails_later_sends() {
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let writer = DirectWriter::spawn(a);
        let first = writer.send(&[1u8; 16], None);
        assert!(first.is_err(), "the peer is gone: {first:?}");
        assert!(writer.send(&[1u8; 16], None).is_err());
        assert!(writer.ready().await.is_err());
        writer.close().await;
    }
}
