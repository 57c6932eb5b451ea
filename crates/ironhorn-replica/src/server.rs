//! The replica server: one replica store served over the replica protocol
//! (`ironhorn_proto::replica`) to any number of connections, many requests in flight on each.
//! A peer that sends a bad frame loses its connection; the others are not affected.

use std::io;
use std::sync::Arc;

use ironhorn_proto::replica::{
    self as wire, Control, ControlReply, ErrorCode, Header, Kind, ReplicaInfo, WireError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::ReplicaError;
use crate::net::{accept_loop, Listener, Stream};
use crate::ops::SnapshotSpec;
use crate::shared::SharedReplica;

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
    let (mut reader, writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Response>(MAX_IN_FLIGHT);
    let sender = tokio::spawn(async move {
        let mut writer = BufWriter::with_capacity(256 * 1024, writer);
        while let Some(r) = rx.recv().await {
            writer.write_all(&r.header.encode()).await?;
            writer.write_all(&r.payload).await?;
            if rx.is_empty() {
                writer.flush().await?;
            }
        }
        writer.flush().await?;
        Ok::<(), io::Error>(())
    });
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    if let Err(e) = read_requests(&mut reader, &replica, &tx, &limit, &shutdown).await {
        tracing::debug!(error = %e, "replica connection ended");
    }
    drop(tx);
    let _ = sender.await;
}

async fn read_requests<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    replica: &Arc<SharedReplica>,
    tx: &mpsc::Sender<Response>,
    limit: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    loop {
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
        let mut payload = vec![0u8; header.payload_len as usize];
        reader.read_exact(&mut payload).await?;
        if matches!(header.kind, Kind::Read | Kind::Write | Kind::Ping)
            && header.flags & wire::FLAG_FUA == 0
        {
            // Page-cache I/O takes microseconds: done right here, it saves two thread hops
            // per request. Anything that may wait on the disk (flush, FUA, unmap, control,
            // layer copies) goes to the blocking pool.
            let response = execute(replica, header, payload);
            tx.send(response)
                .await
                .map_err(|_| io::Error::other("reply writer stopped"))?;
            continue;
        }
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("limiter closed"))?;
        let replica = replica.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let id = header.id;
            let response = tokio::task::spawn_blocking(move || execute(&replica, header, payload))
                .await
                .unwrap_or_else(|_| {
                    error_response(id, ErrorCode::Io, "request handler failed".into())
                });
            let _ = tx.send(response).await;
            drop(permit);
        });
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
    }
    Ok(ControlReply::Done)
}

fn execute(replica: &SharedReplica, header: Header, payload: Vec<u8>) -> Response {
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
        Kind::Write => {
            let result = replica.write_at(&payload, header.offset).and_then(|()| {
                if header.flags & wire::FLAG_FUA != 0 {
                    replica.flush()
                } else {
                    Ok(())
                }
            });
            match result {
                Ok(()) => ok_response(id, Vec::new()),
                Err(e) => fail(e),
            }
        }
        Kind::Unmap => match replica.unmap(header.offset, u64::from(header.len)) {
            Ok(_) => ok_response(id, Vec::new()),
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
                match replica.read().write_layer(file, data, header.offset) {
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
