//! A client of one replica server: one connection, many requests in flight, responses
//! matched to requests by id. Any connection error fails every pending request and closes
//! the client for good (the engine then treats the replica as failed). [`RemoteReplica`]
//! is the [`ReplicaBackend`] of a replica behind a server; the engine's slot times its calls.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ironhorn_proto::replica::{self as wire, Control, ControlReply, Header, Kind, WireError};
use ironhorn_runtime::direct_writer::DirectWriter;
use ironhorn_runtime::net::{self, Addr};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::backend::{CallFuture, ReplicaBackend};
use crate::error::CallError;

/// Why a request to a replica failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("connection to replica lost: {0}")]
    Closed(String),
    #[error("replica refused: {0:?}: {1}")]
    Remote(wire::ErrorCode, String),
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Remote(e.code, e.message)
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, ClientError>>>>>;

#[derive(Debug)]
pub struct RemoteReplica {
    writer: Arc<DirectWriter>,
    pending: Pending,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
}

fn fail_all(pending: &Pending, reason: &str) {
    let waiters: Vec<_> = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (_, waiter) in waiters {
        let _ = waiter.send(Err(ClientError::Closed(reason.to_string())));
    }
}

impl Drop for RemoteReplica {
    fn drop(&mut self) {
        // Ends the connection: the server sees it close, and so does the response reader.
        self.writer.close_soon();
    }
}

impl RemoteReplica {
    pub async fn connect(addr: &Addr, timeout: Duration) -> io::Result<RemoteReplica> {
        let stream = tokio::time::timeout(timeout, net::connect(addr))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}"))
            })??;
        let (reader, writer) = tokio::io::split(stream);
        // Responses arrive back to back: one read system call takes many of them.
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, reader);
        let writer = DirectWriter::spawn(writer);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let closed = Arc::new(AtomicBool::new(false));

        let (p, c) = (pending.clone(), closed.clone());
        tokio::spawn(async move {
            let reason = loop {
                let mut raw = [0u8; wire::HEADER_LEN];
                if let Err(e) = reader.read_exact(&mut raw).await {
                    break e.to_string();
                }
                let header = match Header::decode(&raw) {
                    Ok(h) => h,
                    Err(e) => break e.to_string(),
                };
                let mut payload = ironhorn_runtime::buffers::take(header.payload_len as usize);
                if let Err(e) = reader.read_exact(&mut payload).await {
                    break e.to_string();
                }
                let waiter = p
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&header.id);
                if let Some(waiter) = waiter {
                    let result = match header.kind {
                        Kind::ResponseOk => Ok(payload),
                        _ => Err(ClientError::from(wire::decode_error(&payload))),
                    };
                    let _ = waiter.send(result);
                }
            };
            c.store(true, Ordering::SeqCst);
            fail_all(&p, &reason);
        });

        Ok(RemoteReplica {
            writer,
            pending,
            next_id: AtomicU64::new(1),
            closed,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends one request and waits for its response payload.
    pub async fn call(
        &self,
        kind: Kind,
        offset: u64,
        len: u32,
        flags: u32,
        payload: Option<Arc<Vec<u8>>>,
    ) -> Result<Vec<u8>, ClientError> {
        self.call_parts(kind, offset, len, flags, &[], payload)
            .await
    }

    /// Sends one request whose payload is `prefix` followed by `body` (a large body is
    /// written from its own buffer, never copied) and waits for its response payload. The
    /// caller bounds the wait: dropping the future forgets the request.
    pub async fn call_parts(
        &self,
        kind: Kind,
        offset: u64,
        len: u32,
        flags: u32,
        prefix: &[u8],
        body: Option<Arc<Vec<u8>>>,
    ) -> Result<Vec<u8>, ClientError> {
        if self.is_closed() {
            return Err(ClientError::Closed("closed earlier".into()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (waiter, wait) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, waiter);
        // A response that never comes must not keep its waiter forever once the caller
        // gives up (its timeout drops this future).
        let mut forget = Forget {
            pending: &self.pending,
            id,
            armed: true,
        };
        let header = Header {
            kind,
            id,
            offset,
            len,
            flags,
            payload_len: (prefix.len() + body.as_ref().map_or(0, |p| p.len())) as u32,
        };
        let failed = |e: io::Error| {
            self.closed.store(true, Ordering::SeqCst);
            ClientError::Closed(e.to_string())
        };
        self.writer.ready().await.map_err(failed)?;
        let encoded = header.encode();
        if prefix.is_empty() {
            self.writer.send(&encoded, body.as_ref()).map_err(failed)?;
        } else {
            let head = [encoded.as_slice(), prefix].concat();
            self.writer.send(&head, body.as_ref()).map_err(failed)?;
        }
        let answer = wait.await;
        // Answered or failed by the reader: it took the waiter out already.
        forget.armed = false;
        answer.unwrap_or_else(|_| Err(ClientError::Closed("connection dropped".into())))
    }
}

/// Removes a request's waiter when its call ends before the answer (the caller gave up, or
/// the request could not be sent).
struct Forget<'a> {
    pending: &'a Pending,
    id: u64,
    armed: bool,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.id);
        }
    }
}

impl RemoteReplica {
    async fn done(&self, kind: Kind, offset: u64, len: u32, flags: u32) -> Result<(), CallError> {
        self.call(kind, offset, len, flags, None).await?;
        Ok(())
    }
}

impl ReplicaBackend for RemoteReplica {
    fn read(&self, offset: u64, len: u32) -> CallFuture<'_, Vec<u8>> {
        Box::pin(async move { Ok(self.call(Kind::Read, offset, len, 0, None).await?) })
    }

    fn write(&self, offset: u64, data: Arc<Vec<u8>>, fua: bool) -> CallFuture<'_, ()> {
        let flags = if fua { wire::FLAG_FUA } else { 0 };
        Box::pin(async move {
            let len = data.len() as u32;
            self.call(Kind::Write, offset, len, flags, Some(data))
                .await?;
            Ok(())
        })
    }

    fn write_zeroes(&self, offset: u64, len: u32) -> CallFuture<'_, ()> {
        Box::pin(self.done(Kind::WriteZeroes, offset, len, 0))
    }

    fn unmap(&self, offset: u64, len: u32) -> CallFuture<'_, ()> {
        Box::pin(self.done(Kind::Unmap, offset, len, 0))
    }

    fn flush(&self) -> CallFuture<'_, ()> {
        Box::pin(self.done(Kind::Flush, 0, 0, 0))
    }

    fn ping(&self) -> CallFuture<'_, ()> {
        Box::pin(self.done(Kind::Ping, 0, 0, 0))
    }

    fn read_layer(&self, file: &str, offset: u64, len: u32) -> CallFuture<'_, Vec<u8>> {
        let name = Arc::new(wire::layer_payload_prefix(file));
        Box::pin(async move {
            Ok(self
                .call(Kind::ReadLayer, offset, len, 0, Some(name))
                .await?)
        })
    }

    fn write_layer(&self, file: &str, offset: u64, data: Arc<Vec<u8>>) -> CallFuture<'_, ()> {
        let prefix = wire::layer_payload_prefix(file);
        Box::pin(async move {
            self.call_parts(Kind::WriteLayer, offset, 0, 0, &prefix, Some(data))
                .await?;
            Ok(())
        })
    }

    fn control(&self, control: Control) -> CallFuture<'_, ControlReply> {
        let payload = Arc::new(wire::encode_json(&control));
        Box::pin(async move {
            let reply = self.call(Kind::Control, 0, 0, 0, Some(payload)).await?;
            wire::decode_control_reply(&reply).map_err(CallError::Decode)
        })
    }
}
