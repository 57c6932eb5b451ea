//! The NBD server: fixed newstyle handshake (EXPORT_NAME, GO, INFO, LIST, ABORT), then
//! transmission with many requests in flight per connection, replies in completion order.
//!
//! One tokio task per connection: a bad or broken client only ends its own task. Each request
//! runs as a task of its own (device calls are async) and sends its reply itself.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ironhorn_engine::{BlockDevice, DeviceError};
use ironhorn_runtime::direct_writer::DirectWriter;
use ironhorn_runtime::net::{accept_loop, Addr, Listener};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use ironhorn_proto::nbd::{self as proto, Command, Request};

/// Requests one connection may have in flight.
const MAX_IN_FLIGHT: usize = 128;

/// A URI NBD clients can use for `export` served on `addr`.
pub fn nbd_uri(addr: &Addr, export: &str) -> String {
    match addr {
        Addr::Tcp(a) => format!("nbd://{a}/{export}"),
        Addr::Unix(path) => format!("nbd+unix:///{export}?socket={}", path.display()),
    }
}

/// What is served: one named device.
pub struct Export {
    pub name: String,
    pub description: String,
    pub device: Arc<dyn BlockDevice>,
    /// Clients in transmission right now.
    pub connections: AtomicUsize,
}

impl Export {
    pub fn new(name: &str, description: &str, device: Arc<dyn BlockDevice>) -> Export {
        Export {
            name: name.to_string(),
            description: description.to_string(),
            device,
            connections: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export").field("name", &self.name).finish()
    }
}

impl Export {
    fn matches(&self, name: &str) -> bool {
        // The empty name is the default export (what `nbd://host:port` asks for).
        name.is_empty() || name == self.name
    }

    /// The NBD transmission flags this export offers (also what the kernel NBD driver is
    /// given when it connects without a handshake).
    pub fn transmission_flags(&self) -> u16 {
        let mut flags = proto::TFLAG_HAS_FLAGS
            | proto::TFLAG_SEND_FLUSH
            | proto::TFLAG_SEND_FUA
            | proto::TFLAG_SEND_TRIM
            | proto::TFLAG_SEND_WRITE_ZEROES;
        if self.device.read_only() {
            flags |= proto::TFLAG_READ_ONLY;
        }
        if self.device.flush_covers_all_connections() {
            flags |= proto::TFLAG_CAN_MULTI_CONN;
        }
        flags
    }
}

/// Serves `export` until `shutdown` is cancelled, then waits for open connections to finish
/// their in-flight requests.
pub async fn serve(listener: Listener, export: Arc<Export>, shutdown: CancellationToken) {
    let token = shutdown.clone();
    accept_loop(listener, shutdown, |stream| {
        client(stream, export.clone(), token.clone())
    })
    .await;
}

async fn client<S>(stream: S, export: Arc<Export>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    // Requests arrive back to back: one read system call takes many of them.
    let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, reader);
    let mut writer = BufWriter::with_capacity(256 * 1024, writer);
    match handshake(&mut reader, &mut writer, &export).await {
        Ok(true) => {
            export.connections.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = transmission(reader, writer, export.clone(), shutdown).await {
                tracing::debug!(error = %e, "NBD client dropped");
            }
            export.connections.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(false) => {}
        Err(e) => tracing::debug!(error = %e, "NBD handshake ended"),
    }
}

/// Serves one connection whose handshake happened elsewhere: the kernel NBD driver, given the
/// size and flags through netlink, starts with the transmission phase.
pub async fn serve_connected<S>(stream: S, export: Arc<Export>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let reader = tokio::io::BufReader::with_capacity(256 * 1024, reader);
    let writer = BufWriter::with_capacity(256 * 1024, writer);
    export.connections.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = transmission(reader, writer, export.clone(), shutdown).await {
        tracing::debug!(error = %e, "NBD connection dropped");
    }
    export.connections.fetch_sub(1, Ordering::SeqCst);
}

fn protocol_error(e: proto::ProtoError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Returns whether to go on to transmission.
async fn handshake<R, W>(reader: &mut R, writer: &mut W, export: &Export) -> io::Result<bool>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer.write_all(&proto::server_greeting()).await?;
    writer.flush().await?;
    let client_flags = reader.read_u32().await?;
    let known = proto::CLIENT_FLAG_FIXED_NEWSTYLE | proto::CLIENT_FLAG_NO_ZEROES;
    if client_flags & !known != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unknown client flags",
        ));
    }
    let no_zeroes = client_flags & proto::CLIENT_FLAG_NO_ZEROES != 0;
    let size = export.device.size();
    let flags = export.transmission_flags();
    loop {
        let mut header = [0u8; 16];
        reader.read_exact(&mut header).await?;
        let header = proto::decode_option_header(&header).map_err(protocol_error)?;
        if header.len > proto::MAX_OPTION_LEN {
            writer
                .write_all(&proto::option_reply(
                    header.option,
                    proto::REP_ERR_TOO_BIG,
                    b"option too long",
                ))
                .await?;
            writer.flush().await?;
            return Ok(false);
        }
        let mut data = vec![0u8; header.len as usize];
        reader.read_exact(&mut data).await?;
        let reply = |kind: u32, payload: &[u8]| proto::option_reply(header.option, kind, payload);
        match header.option {
            proto::OPT_EXPORT_NAME => {
                let name = proto::decode_name(&data).map_err(protocol_error)?;
                if !export.matches(&name) {
                    return Ok(false);
                }
                writer
                    .write_all(&proto::export_name_reply(size, flags, !no_zeroes))
                    .await?;
                writer.flush().await?;
                return Ok(true);
            }
            proto::OPT_ABORT => {
                writer.write_all(&reply(proto::REP_ACK, &[])).await?;
                writer.flush().await?;
                return Ok(false);
            }
            proto::OPT_LIST => {
                if data.is_empty() {
                    writer
                        .write_all(&reply(
                            proto::REP_SERVER,
                            &proto::server_entry(&export.name),
                        ))
                        .await?;
                    writer.write_all(&reply(proto::REP_ACK, &[])).await?;
                } else {
                    writer
                        .write_all(&reply(proto::REP_ERR_INVALID, b"LIST takes no data"))
                        .await?;
                }
            }
            proto::OPT_INFO | proto::OPT_GO => match proto::decode_info_request(&data) {
                Err(e) => {
                    writer
                        .write_all(&reply(proto::REP_ERR_INVALID, e.to_string().as_bytes()))
                        .await?
                }
                Ok(request) if !export.matches(&request.name) => {
                    let msg = format!(
                        "no export {:?}; this server has {:?}",
                        request.name, export.name
                    );
                    writer
                        .write_all(&reply(proto::REP_ERR_UNKNOWN, msg.as_bytes()))
                        .await?
                }
                Ok(request) => {
                    writer
                        .write_all(&reply(proto::REP_INFO, &proto::info_export(size, flags)))
                        .await?;
                    writer
                        .write_all(&reply(
                            proto::REP_INFO,
                            &proto::info_block_size(1, 4096, proto::MAX_PAYLOAD),
                        ))
                        .await?;
                    if request.requests.contains(&proto::INFO_NAME) {
                        writer
                            .write_all(&reply(
                                proto::REP_INFO,
                                &proto::info_text(proto::INFO_NAME, &export.name),
                            ))
                            .await?;
                    }
                    if request.requests.contains(&proto::INFO_DESCRIPTION) {
                        writer
                            .write_all(&reply(
                                proto::REP_INFO,
                                &proto::info_text(proto::INFO_DESCRIPTION, &export.description),
                            ))
                            .await?;
                    }
                    writer.write_all(&reply(proto::REP_ACK, &[])).await?;
                    if header.option == proto::OPT_GO {
                        writer.flush().await?;
                        return Ok(true);
                    }
                }
            },
            proto::OPT_STARTTLS => {
                writer
                    .write_all(&reply(proto::REP_ERR_POLICY, b"TLS is not offered"))
                    .await?
            }
            _ => writer.write_all(&reply(proto::REP_ERR_UNSUP, &[])).await?,
        }
        writer.flush().await?;
    }
}

/// A finished request: the reply header and, for a successful READ, its data.
struct Reply {
    error: u32,
    cookie: u64,
    data: Vec<u8>,
}

async fn transmission<R, W>(
    mut reader: R,
    writer: BufWriter<W>,
    export: Arc<Export>,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // The handshake flushed its last reply: nothing is left in the buffer.
    let writer = DirectWriter::spawn(writer.into_inner());
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let result = read_requests(&mut reader, &export, &writer, &in_flight, &shutdown).await;
    // Every running request holds a permit: the last reply is queued once they are all back.
    let _ = in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
    writer.close().await;
    result
}

async fn read_requests<R: AsyncRead + Unpin>(
    reader: &mut R,
    export: &Arc<Export>,
    writer: &Arc<DirectWriter>,
    in_flight: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    loop {
        writer.ready().await?;
        let mut header = [0u8; proto::REQUEST_HEADER_LEN];
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            read = reader.read_exact(&mut header) => match read {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            },
        }
        ironhorn_runtime::poll_window::note_activity();
        let request = proto::decode_request(&header).map_err(protocol_error)?;
        let mut payload = Vec::new();
        match request.command {
            Command::Disconnect => return Ok(()),
            Command::Write => {
                if request.len > proto::MAX_PAYLOAD {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("WRITE of {} bytes exceeds the maximum payload", request.len),
                    ));
                }
                payload = vec![0u8; request.len as usize];
                reader.read_exact(&mut payload).await?;
            }
            _ => {}
        }
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("request limiter closed"))?;
        let device = export.device.clone();
        let writer = writer.clone();
        tokio::spawn(async move {
            let reply = execute(device.as_ref(), request, payload).await;
            let header = proto::simple_reply(reply.error, reply.cookie);
            // A failed send means the client is gone; the reader sees that too.
            let body = (!reply.data.is_empty()).then(|| Arc::new(reply.data));
            let _ = writer.send(&header, body.as_ref());
            drop(permit);
        });
    }
}

/// Writes zeros over `[offset, offset+len)` as data, in pieces of at most 1 MiB.
async fn write_allocated_zeros(
    device: &dyn BlockDevice,
    offset: u64,
    len: u64,
    fua: bool,
) -> Result<(), DeviceError> {
    const PIECE: u64 = 1 << 20;
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(PIECE);
        device.write(vec![0u8; n as usize], at, fua).await?;
        at += n;
    }
    Ok(())
}

async fn execute(device: &dyn BlockDevice, request: Request, payload: Vec<u8>) -> Reply {
    let cookie = request.cookie;
    let len = u64::from(request.len);
    let fua = request.flags & proto::CMD_FLAG_FUA != 0;
    let fail = |error: u32| Reply {
        error,
        cookie,
        data: Vec::new(),
    };
    let in_range = request
        .offset
        .checked_add(len)
        .is_some_and(|end| end <= device.size());
    let writable = !device.read_only();
    let outcome = match request.command {
        Command::Read => {
            if request.len > proto::MAX_PAYLOAD || !in_range {
                return fail(proto::EINVAL);
            }
            return match device.read(request.offset, request.len as usize).await {
                Ok(data) => Reply {
                    error: 0,
                    cookie,
                    data,
                },
                Err(e) => fail(error_code(&e, proto::EINVAL)),
            };
        }
        Command::Write | Command::WriteZeroes | Command::Trim if !writable => {
            Err(DeviceError::ReadOnly)
        }
        Command::Write | Command::WriteZeroes if !in_range => return fail(proto::ENOSPC),
        Command::Trim if !in_range => return fail(proto::EINVAL),
        Command::Write => device.write(payload, request.offset, fua).await,
        // NO_HOLE asks for the range to stay allocated: zeros are written, not punched.
        Command::WriteZeroes if request.flags & proto::CMD_FLAG_NO_HOLE != 0 => {
            write_allocated_zeros(device, request.offset, len, fua).await
        }
        Command::WriteZeroes => match device.write_zeroes(request.offset, len).await {
            Ok(()) if fua => device.flush().await,
            other => other,
        },
        Command::Trim => match device.trim(request.offset, len).await {
            Ok(()) if fua => device.flush().await,
            other => other,
        },
        Command::Flush => device.flush().await,
        Command::Cache => Ok(()),
        Command::Disconnect | Command::Other(_) => return fail(proto::EINVAL),
    };
    match outcome {
        Ok(()) => Reply {
            error: 0,
            cookie,
            data: Vec::new(),
        },
        Err(e) => fail(error_code(&e, proto::ENOSPC)),
    }
}

fn error_code(e: &DeviceError, out_of_range: u32) -> u32 {
    match e {
        DeviceError::OutOfRange { .. } => out_of_range,
        DeviceError::ReadOnly => proto::EPERM,
        DeviceError::NoSpace(_) => proto::ENOSPC,
        DeviceError::Io(_) => proto::EIO,
    }
}
