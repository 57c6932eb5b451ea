//! The NBD server: fixed newstyle handshake (EXPORT_NAME, GO, INFO, LIST, ABORT), then
//! transmission with many requests in flight per connection, replies in completion order.
//!
//! One tokio task per connection: a bad or broken client only ends its own task. Device
//! calls block, so each request runs on the blocking pool; a writer task sends the replies.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ironhorn_engine::{BlockDevice, DeviceError};
use ironhorn_replica::net::{accept_loop, Addr, Listener};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, Semaphore};
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
    /// Threads that run requests against the device (its calls block).
    workers: std::sync::OnceLock<crossbeam_channel::Sender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Request threads per export: enough for every request of a QD32 client, and then some.
const WORKERS: usize = 48;

impl Export {
    pub fn new(name: &str, description: &str, device: Arc<dyn BlockDevice>) -> Export {
        Export {
            name: name.to_string(),
            description: description.to_string(),
            device,
            connections: AtomicUsize::new(0),
            workers: std::sync::OnceLock::new(),
        }
    }

    /// Runs `job` on one of the export's request threads (started on first use).
    fn run(&self, job: Job) {
        let workers = self.workers.get_or_init(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            for i in 0..WORKERS {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("nbd-io-{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "starting an NBD request thread failed");
                }
            }
            tx
        });
        if let Err(crossbeam_channel::SendError(job)) = workers.send(job) {
            // No request thread could be started: run it here rather than drop it.
            job();
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

    fn transmission_flags(&self) -> u16 {
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
    let (mut reader, writer) = tokio::io::split(stream);
    let mut writer = BufWriter::new(writer);
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
    mut writer: BufWriter<W>,
    export: Arc<Export>,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT);
    let sender = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            writer
                .write_all(&proto::simple_reply(reply.error, reply.cookie))
                .await?;
            if !reply.data.is_empty() {
                writer.write_all(&reply.data).await?;
            }
            // Batch replies that are already waiting into one write.
            if rx.is_empty() {
                writer.flush().await?;
            }
        }
        writer.flush().await?;
        Ok::<(), io::Error>(())
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let result = read_requests(&mut reader, &export, &tx, &in_flight, &shutdown).await;
    drop(tx);
    // Every spawned request holds a sender; the writer ends after the last reply.
    let sent = sender
        .await
        .map_err(|e| io::Error::other(format!("reply writer failed: {e}")))?;
    result.and(sent)
}

async fn read_requests<R: AsyncRead + Unpin>(
    reader: &mut R,
    export: &Arc<Export>,
    tx: &mpsc::Sender<Reply>,
    in_flight: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    loop {
        let mut header = [0u8; proto::REQUEST_HEADER_LEN];
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            read = reader.read_exact(&mut header) => match read {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            },
        }
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
        let tx = tx.clone();
        export.run(Box::new(move || {
            let reply = execute(device.as_ref(), request, payload);
            let _ = tx.blocking_send(reply);
            drop(permit);
        }));
    }
}

fn execute(device: &dyn BlockDevice, request: Request, payload: Vec<u8>) -> Reply {
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
    let then_flush = |result: Result<(), DeviceError>| {
        result.and_then(|()| if fua { device.flush() } else { Ok(()) })
    };
    let outcome = match request.command {
        Command::Read => {
            if request.len > proto::MAX_PAYLOAD {
                return fail(proto::EINVAL);
            }
            if !in_range {
                return fail(proto::EINVAL);
            }
            let mut data = vec![0u8; request.len as usize];
            return match device.read_at(&mut data, request.offset) {
                Ok(()) => Reply {
                    error: 0,
                    cookie,
                    data,
                },
                Err(e) => fail(error_code(&e, proto::EINVAL)),
            };
        }
        Command::Write | Command::WriteZeroes if device.read_only() => Err(DeviceError::ReadOnly),
        Command::Trim if device.read_only() => Err(DeviceError::ReadOnly),
        Command::Write | Command::WriteZeroes if !in_range => return fail(proto::ENOSPC),
        Command::Trim if !in_range => return fail(proto::EINVAL),
        Command::Write => then_flush(device.write_at(&payload, request.offset)),
        Command::WriteZeroes => then_flush(device.write_zeroes(request.offset, len)),
        Command::Trim => then_flush(device.trim(request.offset, len)),
        Command::Flush => device.flush(),
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
