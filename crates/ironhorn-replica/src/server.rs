//! The replica server: one replica store served over the replica protocol
//! (`ironhorn_proto::replica`) to any number of connections, many requests in flight on each.
//! A peer that sends a bad frame loses its connection; the others are not affected.

use std::io;
use std::sync::Arc;

use ironhorn_proto::replica::{
    self as wire, Control, ControlReply, ErrorCode, Header, Kind, ReplicaInfo, WireError,
};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use tokio::io::{AsyncBufRead, AsyncReadExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::ReplicaError;
use crate::ops::SnapshotSpec;
use crate::shared::SharedReplica;
use crate::splice::Splicer;
use ironhorn_runtime::direct_writer::DirectWriter;
use ironhorn_runtime::net::{accept_loop, Listener, Stream};

const MAX_IN_FLIGHT: usize = 256;

/// Serves `replica` on `listener` until `shutdown`; then finishes in-flight requests.
pub async fn serve(listener: Listener, replica: Arc<SharedReplica>, shutdown: CancellationToken) {
    let token = shutdown.clone();
    accept_loop(listener, shutdown, |stream| {
        connection(stream, replica.clone(), token.clone())
    })
    .await;
}

struct Response {
    header: Header,
    payload: Vec<u8>,
}

async fn connection(
    stream: Box<dyn Stream>,
    replica: Arc<SharedReplica>,
    shutdown: CancellationToken,
) {
    // Large layer writes (rebuild) are spliced from the socket into their file.
    let splicer = match Splicer::new(stream.as_fd()) {
        Ok(splicer) => Some(Arc::new(splicer)),
        Err(e) => {
            tracing::debug!(error = %e, "layer writes on this connection are copied, not spliced");
            None
        }
    };
    let (reader, writer) = tokio::io::split(stream);
    // Frames arrive back to back: one read system call takes many of them.
    let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, reader);
    let writer = DirectWriter::spawn(writer);
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let result = read_requests(
        &mut reader,
        &replica,
        &writer,
        &limit,
        splicer.as_ref(),
        &shutdown,
    )
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "replica connection ended");
    }
    // Requests still running on the blocking pool hold permits: wait for their replies.
    let _ = limit.acquire_many(MAX_IN_FLIGHT as u32).await;
    writer.close().await;
}

fn send(writer: &DirectWriter, response: Response) -> io::Result<()> {
    let body = (!response.payload.is_empty()).then(|| Arc::new(response.payload));
    writer.send(&response.header.encode(), body.as_ref())
}

/// Adds a small reply to the batch; a large one is sent at once, after the batch, without
/// being copied.
fn batch_reply(writer: &DirectWriter, batch: &mut Vec<u8>, response: Response) -> io::Result<()> {
    if response.payload.len() <= 16 << 10 {
        response.append_to(batch);
        return Ok(());
    }
    if !batch.is_empty() {
        writer.send(batch, None)?;
        batch.clear();
    }
    send(writer, response)
}

impl Response {
    fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.payload);
    }
}

async fn read_requests<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut tokio::io::BufReader<R>,
    replica: &Arc<SharedReplica>,
    writer: &Arc<DirectWriter>,
    limit: &Arc<Semaphore>,
    splicer: Option<&Arc<Splicer>>,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    // Replies to requests answered inline, sent in one write once no more requests are
    // buffered: under load one system call carries many replies; alone, a reply goes at once.
    let mut replies: Vec<u8> = Vec::new();
    // The attachment generation this connection claimed (0: none; see `Control::Claim`).
    let mut generation = 0u64;
    loop {
        if !replies.is_empty()
            && (!whole_frame_buffered(reader.buffer()) || replies.len() >= REPLY_BATCH_MAX)
        {
            writer.send(&replies, None)?;
            replies.clear();
        }
        writer.ready().await?;
        let mut raw = [0u8; wire::HEADER_LEN];
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            read = reader.read_exact(&mut raw) => match read {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            },
        }
        let header =
            Header::decode(&raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if matches!(
            header.kind,
            Kind::Read | Kind::Write | Kind::Unmap | Kind::WriteZeroes | Kind::Flush
        ) {
            // Volume I/O, not the engine's health pings: those must leave an idle replica idle.
            ironhorn_runtime::poll_window::note_activity();
        }
        if let (Kind::WriteLayer, Some(splicer)) = (header.kind, splicer) {
            if header.payload_len as usize >= SPLICE_MIN {
                let (response, usable) =
                    receive_layer_write(reader, replica, generation, splicer, &header).await?;
                batch_reply(writer, &mut replies, response)?;
                if !usable {
                    writer.send(&replies, None)?;
                    return Err(io::Error::other(
                        "a layer write failed part way: the connection is out of step",
                    ));
                }
                continue;
            }
        }
        let mut payload = ironhorn_runtime::buffers::take(header.payload_len as usize);
        reader.read_exact(&mut payload).await?;
        if header.kind == Kind::Control {
            if let Ok(Control::Claim {
                generation: claimed,
            }) = wire::decode_control(&payload)
            {
                let claiming = replica.clone();
                let claim = tokio::task::spawn_blocking(move || claiming.claim(claimed))
                    .await
                    .unwrap_or_else(|_| Err(ReplicaError::Refused("the claim failed".into())));
                let response = match claim {
                    Ok(()) => {
                        generation = claimed;
                        ok_response(header.id, wire::encode_json(&ControlReply::Done))
                    }
                    Err(e) => error_response(header.id, code_of(&e), e.to_string()),
                };
                batch_reply(writer, &mut replies, response)?;
                continue;
            }
        }
        // Page-cache I/O takes microseconds: done right here, it saves two thread hops per
        // request. Anything that may wait on the disk (a read of uncached data, flush, FUA,
        // unmap, control, layer copies) goes to the blocking pool.
        let inline = match header.kind {
            Kind::Write | Kind::Flush
                if header.kind == Kind::Flush || header.flags & wire::FLAG_FUA != 0 =>
            {
                // A FUA write lands here; its flush (and a plain one) waits on the blocking pool.
                let admitted = replica.as_generation(generation, || match header.kind {
                    Kind::Write => replica.write_at(&payload, header.offset),
                    _ => Ok(()),
                });
                match admitted {
                    Ok(()) => spawn_flush(replica, writer, limit, header.id).await?,
                    Err(e) => batch_reply(
                        writer,
                        &mut replies,
                        error_response(header.id, code_of(&e), e.to_string()),
                    )?,
                }
                continue;
            }
            Kind::Write => true,
            Kind::Ping => true,
            Kind::Read if replica.admits(generation).is_err() => true,
            Kind::Read => match read_cached(replica, &header) {
                Some(response) => {
                    batch_reply(writer, &mut replies, response)?;
                    continue;
                }
                None => false,
            },
            _ => false,
        };
        if inline {
            let response = execute(replica, generation, header, payload);
            batch_reply(writer, &mut replies, response)?;
            continue;
        }
        let replica = replica.clone();
        spawn_request(writer, limit, async move {
            let id = header.id;
            tokio::task::spawn_blocking(move || execute(&replica, generation, header, payload))
                .await
                .unwrap_or_else(|_| {
                    error_response(id, ErrorCode::Io, "request handler failed".into())
                })
        })
        .await?;
    }
}

/// Layer writes from this size on are spliced into their file.
const SPLICE_MIN: usize = 256 << 10;

/// A large layer write: the name comes through the reader, the data goes from the socket
/// into the layer file (what the reader already buffered is written from there). Returns the
/// reply and whether the connection is still in step (false when the write failed after
/// taking part of the data from the socket).
async fn receive_layer_write<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut tokio::io::BufReader<R>,
    replica: &Arc<SharedReplica>,
    generation: u64,
    splicer: &Arc<Splicer>,
    header: &Header,
) -> io::Result<(Response, bool)> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let mut name_len = [0u8; 2];
    reader.read_exact(&mut name_len).await?;
    let name_len = usize::from(u16::from_le_bytes(name_len));
    let data_len = (header.payload_len as usize)
        .checked_sub(2 + name_len)
        .ok_or_else(|| invalid("layer name longer than the payload"))?;
    let mut name = vec![0u8; name_len];
    reader.read_exact(&mut name).await?;
    let name = String::from_utf8(name).map_err(|_| invalid("layer name is not UTF-8"))?;
    let buffered = reader.buffer().len().min(data_len);
    let first = reader.buffer()[..buffered].to_vec();
    std::pin::Pin::new(&mut *reader).consume(buffered);
    let rest = (data_len - buffered) as u64;
    let (replica, splicer, offset, id) =
        (replica.clone(), splicer.clone(), header.offset, header.id);
    tokio::task::spawn_blocking(move || {
        let mut took_data = false;
        let written = replica.as_generation(generation, || {
            replica
                .read()
                .write_layer_with(&name, offset, data_len as u64, |f| {
                    took_data = true;
                    f.write_all_at(&first, offset)?;
                    splicer.socket_to_file(f, offset + buffered as u64, rest)
                })
        });
        match written {
            Ok(()) => Ok((ok_response(id, Vec::new()), true)),
            Err(e) if took_data => {
                tracing::warn!(layer = %name, error = %e, "layer write failed: closing the connection");
                Ok((error_response(id, code_of(&e), e.to_string()), false))
            }
            Err(e) => {
                // Refused before any data was taken: drop the data, stay in step.
                splicer.discard(rest)?;
                Ok((error_response(id, code_of(&e), e.to_string()), true))
            }
        }
    })
    .await
    .map_err(|_| io::Error::other("layer write task failed"))?
}

/// Runs a request that may wait for the disk as a task of its own (at most `MAX_IN_FLIGHT`
/// per connection), which sends its reply.
async fn spawn_request(
    writer: &Arc<DirectWriter>,
    limit: &Arc<Semaphore>,
    request: impl std::future::Future<Output = Response> + Send + 'static,
) -> io::Result<()> {
    let permit = limit
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("limiter closed"))?;
    let writer = writer.clone();
    tokio::spawn(async move {
        let _ = send(&writer, request.await);
        drop(permit);
    });
    Ok(())
}

/// Flushes the replica in a task of its own and replies to request `id` when done.
async fn spawn_flush(
    replica: &Arc<SharedReplica>,
    writer: &Arc<DirectWriter>,
    limit: &Arc<Semaphore>,
    id: u64,
) -> io::Result<()> {
    let replica = replica.clone();
    spawn_request(writer, limit, async move {
        match replica.flush_async().await {
            Ok(()) => ok_response(id, Vec::new()),
            Err(e) => error_response(id, code_of(&e), e.to_string()),
        }
    })
    .await
}

/// Inline replies are sent once they add up to this much, even with more requests buffered.
const REPLY_BATCH_MAX: usize = 1 << 20;

/// Whether `buffered` starts with a whole request frame (header and payload).
fn whole_frame_buffered(buffered: &[u8]) -> bool {
    buffered
        .get(..wire::HEADER_LEN)
        .and_then(|raw| <&[u8; wire::HEADER_LEN]>::try_from(raw).ok())
        .and_then(|raw| Header::decode(raw).ok())
        .is_some_and(|h| buffered.len() - wire::HEADER_LEN >= h.payload_len as usize)
}

/// A read answered from the page cache, or `None` when it needs the disk.
fn read_cached(replica: &SharedReplica, header: &Header) -> Option<Response> {
    if header.len > wire::MAX_PAYLOAD {
        return None;
    }
    let mut buf = vec![0u8; header.len as usize];
    match replica.read_cached_at(&mut buf, header.offset) {
        Ok(true) => Some(ok_response(header.id, buf)),
        Ok(false) => None,
        Err(e) => Some(error_response(header.id, code_of(&e), e.to_string())),
    }
}

fn response(kind: Kind, id: u64, payload: Vec<u8>) -> Response {
    Response {
        header: Header {
            kind,
            id,
            offset: 0,
            len: 0,
            flags: 0,
            payload_len: payload.len() as u32,
        },
        payload,
    }
}

fn ok_response(id: u64, payload: Vec<u8>) -> Response {
    response(Kind::ResponseOk, id, payload)
}

fn error_response(id: u64, code: ErrorCode, message: String) -> Response {
    response(
        Kind::ResponseErr,
        id,
        wire::encode_json(&WireError { code, message }),
    )
}

pub fn code_of(e: &ReplicaError) -> ErrorCode {
    match e {
        ReplicaError::OutOfRange { .. } => ErrorCode::OutOfRange,
        ReplicaError::ReadOnly => ErrorCode::ReadOnly,
        ReplicaError::Io { source, .. } if source.raw_os_error() == Some(28) => ErrorCode::NoSpace,
        ReplicaError::UnknownSnapshot { .. } => ErrorCode::NotFound,
        ReplicaError::SnapshotExists(_) | ReplicaError::TooManySnapshots { .. } => {
            ErrorCode::Conflict
        }
        ReplicaError::Fenced { .. } => ErrorCode::Fenced,
        ReplicaError::InvalidSize { .. }
        | ReplicaError::Refused(_)
        | ReplicaError::Format { .. } => ErrorCode::Invalid,
        _ => ErrorCode::Io,
    }
}

/// Info about a replica as the protocol reports it.
pub fn replica_info(replica: &SharedReplica) -> ReplicaInfo {
    let r = replica.read();
    let layout = r.layout();
    ReplicaInfo {
        size: r.size(),
        revision: r.revision(),
        dirty: layout.volume_meta.dirty,
        rebuilding: layout.volume_meta.rebuilding,
        head: layout.head().to_string(),
        chain: r
            .chain()
            .iter()
            .map(|c| ironhorn_format::names::display_name(c))
            .collect(),
    }
}

/// Runs one control operation.
pub fn run_control(
    replica: &SharedReplica,
    control: Control,
) -> Result<ControlReply, ReplicaError> {
    match control {
        Control::Info => return Ok(ControlReply::Info(replica_info(replica))),
        Control::Snapshot {
            name,
            user_created,
            created,
            labels,
        } => replica.snapshot(&SnapshotSpec {
            name,
            user_created,
            created,
            labels,
        })?,
        Control::Remove { name } => replica.write().mark_removed(&name)?,
        Control::Purge => {
            replica.write().purge()?;
        }
        Control::Revert { name } => replica.write().revert(&name)?,
        Control::Expand { size } => replica.write().expand(size)?,
        Control::SetRevision { revision } => replica.write().set_revision(revision)?,
        Control::SetRebuilding { rebuilding } => replica.write().set_rebuilding(rebuilding)?,
        Control::ForgetRecentWrites => replica.write().forget_recent_writes()?,
        Control::Claim { generation } => replica.claim(generation)?,
        Control::ListLayers => {
            return Ok(ControlReply::Layers {
                layers: replica.read().layer_infos(),
            })
        }
        Control::LayerExtents { file } => {
            return Ok(ControlReply::Extents {
                extents: replica.read().layer_extents(&file)?,
            })
        }
        Control::LayerChecksum { file } => {
            return Ok(ControlReply::Checksum {
                checksum: replica.read().layer_checksum(&file)?,
            })
        }
        Control::PrepareRebuild {
            head_parent,
            layers,
        } => replica.write().prepare_rebuild(&head_parent, &layers)?,
        Control::FinishRebuild { revision } => replica.write().finish_rebuild(revision)?,
        Control::RecentWrites => {
            return Ok(ControlReply::RecentWrites {
                writes: replica
                    .read()
                    .recent_writes()?
                    .into_iter()
                    .map(|w| (w.revision, w.offset, w.len))
                    .collect(),
            })
        }
    }
    Ok(ControlReply::Done)
}

/// Runs one request of a connection that claimed `generation`: refused once a newer
/// generation has claimed the replica.
fn execute(replica: &SharedReplica, generation: u64, header: Header, payload: Vec<u8>) -> Response {
    let id = header.id;
    match replica.as_generation(generation, || {
        Ok(execute_admitted(replica, header, payload))
    }) {
        Ok(response) => response,
        Err(e) => error_response(id, code_of(&e), e.to_string()),
    }
}

fn execute_admitted(replica: &SharedReplica, header: Header, payload: Vec<u8>) -> Response {
    let id = header.id;
    let fail = |e: ReplicaError| error_response(id, code_of(&e), e.to_string());
    match header.kind {
        Kind::Read => {
            if header.len > wire::MAX_PAYLOAD {
                return error_response(id, ErrorCode::Invalid, "read larger than 64 MiB".into());
            }
            let mut buf = vec![0u8; header.len as usize];
            match replica.read_at(&mut buf, header.offset) {
                Ok(()) => ok_response(id, buf),
                Err(e) => fail(e),
            }
        }
        // FUA writes never get here: `read_requests` writes them and flushes in a task.
        Kind::Write => {
            let written = replica.write_at(&payload, header.offset);
            ironhorn_runtime::buffers::give(payload);
            match written {
                Ok(()) => ok_response(id, Vec::new()),
                Err(e) => fail(e),
            }
        }
        Kind::Unmap => match replica.unmap(header.offset, u64::from(header.len)) {
            Ok(_) => ok_response(id, Vec::new()),
            Err(e) => fail(e),
        },
        Kind::WriteZeroes => match replica.write_zeroes(header.offset, u64::from(header.len)) {
            Ok(()) => ok_response(id, Vec::new()),
            Err(e) => fail(e),
        },
        Kind::Flush => match replica.flush() {
            Ok(()) => ok_response(id, Vec::new()),
            Err(e) => fail(e),
        },
        Kind::Ping => ok_response(id, Vec::new()),
        Kind::ReadLayer | Kind::WriteLayer => {
            let (file, data) = match wire::decode_layer_payload(&payload) {
                Ok(parts) => parts,
                Err(e) => return error_response(id, ErrorCode::Invalid, e.to_string()),
            };
            if header.kind == Kind::ReadLayer {
                if header.len > wire::MAX_PAYLOAD {
                    return error_response(
                        id,
                        ErrorCode::Invalid,
                        "read larger than 64 MiB".into(),
                    );
                }
                let mut buf = vec![0u8; header.len as usize];
                match replica.read().read_layer(file, &mut buf, header.offset) {
                    Ok(()) => ok_response(id, buf),
                    Err(e) => fail(e),
                }
            } else {
                let written = replica.read().write_layer(file, data, header.offset);
                ironhorn_runtime::buffers::give(payload);
                match written {
                    Ok(()) => ok_response(id, Vec::new()),
                    Err(e) => fail(e),
                }
            }
        }
        Kind::Control => match wire::decode_control(&payload) {
            Err(e) => error_response(id, ErrorCode::Invalid, e.to_string()),
            Ok(control) => match run_control(replica, control) {
                Ok(reply) => ok_response(id, wire::encode_json(&reply)),
                Err(e) => fail(e),
            },
        },
        Kind::ResponseOk | Kind::ResponseErr => {
            error_response(id, ErrorCode::Invalid, "a response is not a request".into())
        }
    }
}
