//! Rebuild from an in-process replica to a replica server without copying through the engine:
//! on a connection of its own, each chunk of a layer goes out as a `WriteLayer` frame whose
//! data `sendfile(2)` moves from the page cache to the socket. Reading the chunk into the
//! engine and writing it to the socket, two copies of every byte, are saved; on a rebuild
//! that is most of the engine's work.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use ironhorn_proto::replica::{self as wire, Header, Kind};
use ironhorn_runtime::net::Addr;
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Semaphore;

/// Why a layer copy to the target stopped.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("target took no data for {0:?}")]
    Stalled(Duration),
    #[error("sending to the target: {0}")]
    Send(#[source] io::Error),
    #[error("target did not answer within {0:?}")]
    NoAnswer(Duration),
    #[error("reading the target's answer: {0}")]
    Answer(#[source] io::Error),
    #[error("target answered unknown request {0}")]
    UnknownRequest(u64),
    #[error("target refused a layer write: {}", .0.message)]
    Refused(wire::WireError),
}

/// A connected socket, used through its descriptor.
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    /// Runs `op` on the descriptor once the socket is ready for `interest`, again after each
    /// `WouldBlock`.
    async fn async_io<R>(
        &self,
        interest: Interest,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Socket::Tcp(s) => s.async_io(interest, || op(s.as_fd())).await,
            Socket::Unix(s) => s.async_io(interest, || op(s.as_fd())).await,
        }
    }
}

/// A connection to a rebuild target that carries only layer writes.
pub struct LayerSender {
    socket: Socket,
    timeout: Duration,
    next_id: u64,
}

impl LayerSender {
    pub async fn connect(addr: &Addr, timeout: Duration) -> io::Result<LayerSender> {
        let connect = async {
            io::Result::Ok(match addr {
                Addr::Tcp(a) => {
                    let stream = TcpStream::connect(a).await?;
                    stream.set_nodelay(true)?;
                    Socket::Tcp(stream)
                }
                Addr::Unix(p) => Socket::Unix(UnixStream::connect(p).await?),
            })
        };
        let socket = tokio::time::timeout(timeout, connect).await.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}"))
        })??;
        Ok(LayerSender {
            socket,
            timeout,
            next_id: 1,
        })
    }

    /// Claims the target for attachment `generation` on this connection (as every other
    /// connection of the engine does): refused once a newer attachment has claimed it.
    pub async fn claim(&mut self, generation: u64) -> Result<(), SendError> {
        let payload = wire::encode_json(&wire::Control::Claim { generation });
        let id = self.next_id;
        self.next_id += 1;
        let header = Header {
            kind: Kind::Control,
            id,
            offset: 0,
            len: 0,
            flags: 0,
            payload_len: payload.len() as u32,
        };
        let mut frame = header.encode().to_vec();
        frame.extend_from_slice(&payload);
        tokio::time::timeout(self.timeout, write_all(&self.socket, &frame))
            .await
            .map_err(|_| SendError::Stalled(self.timeout))?
            .map_err(SendError::Send)?;
        let (answer, payload) = tokio::time::timeout(self.timeout, read_frame(&self.socket))
            .await
            .map_err(|_| SendError::NoAnswer(self.timeout))?
            .map_err(SendError::Answer)?;
        if answer.id != id {
            return Err(SendError::UnknownRequest(answer.id));
        }
        if answer.kind != Kind::ResponseOk {
            return Err(SendError::Refused(wire::decode_error(&payload)));
        }
        Ok(())
    }

    /// Sends `[offset, offset+len)` ranges of `source` as layer `name` of the target, keeping
    /// up to `in_flight` chunks unanswered; returns when the target has written every one.
    pub async fn send(
        &mut self,
        name: &str,
        source: &File,
        chunks: &[(u64, u64)],
        in_flight: usize,
        progress: &std::sync::atomic::AtomicU64,
    ) -> Result<u64, SendError> {
        let window = Semaphore::new(in_flight);
        let prefix = wire::layer_payload_prefix(name);
        let first_id = self.next_id;
        self.next_id += chunks.len() as u64;
        let socket = &self.socket;
        let timeout = self.timeout;
        let sending = async {
            for (i, &(offset, len)) in chunks.iter().enumerate() {
                // The semaphore is never closed: `acquire` fails only on a closed one.
                if let Ok(permit) = window.acquire().await {
                    permit.forget();
                }
                let header = Header {
                    kind: Kind::WriteLayer,
                    id: first_id + i as u64,
                    offset,
                    len: 0,
                    flags: 0,
                    payload_len: (prefix.len() as u64 + len) as u32,
                };
                let mut head = header.encode().to_vec();
                head.extend_from_slice(&prefix);
                let step = async {
                    write_all(socket, &head).await?;
                    send_file_range(socket, source, offset, len).await
                };
                tokio::time::timeout(timeout, step)
                    .await
                    .map_err(|_| SendError::Stalled(timeout))?
                    .map_err(SendError::Send)?;
            }
            Ok::<(), SendError>(())
        };
        let answers = async {
            let mut copied = 0;
            for _ in chunks {
                let (header, payload) = tokio::time::timeout(timeout, read_frame(socket))
                    .await
                    .map_err(|_| SendError::NoAnswer(timeout))?
                    .map_err(SendError::Answer)?;
                let Some(&(_, len)) = header
                    .id
                    .checked_sub(first_id)
                    .and_then(|i| chunks.get(i as usize))
                else {
                    return Err(SendError::UnknownRequest(header.id));
                };
                if header.kind != Kind::ResponseOk {
                    return Err(SendError::Refused(wire::decode_error(&payload)));
                }
                copied += len;
                progress.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                window.add_permits(1);
            }
            Ok::<u64, SendError>(copied)
        };
        let ((), copied) = tokio::try_join!(sending, answers)?;
        Ok(copied)
    }
}

async fn write_all(socket: &Socket, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = socket
            .async_io(Interest::WRITABLE, |fd| {
                rustix::io::write(fd, bytes).map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Moves `len` bytes of `source` from `offset` to the socket; bytes past the file's end are
/// sent as zeros (as a layer read returns them).
async fn send_file_range(socket: &Socket, source: &File, offset: u64, len: u64) -> io::Result<()> {
    let mut position = offset;
    let end = offset + len;
    while position < end {
        let want = usize::try_from(end - position).unwrap_or(usize::MAX);
        let n = socket
            .async_io(Interest::WRITABLE, |fd| {
                rustix::fs::sendfile(fd, source.as_fd(), Some(&mut position), want)
                    .map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            // The file ends here: the rest reads as zeros.
            let zeros = vec![0u8; (end - position) as usize];
            return write_all(socket, &zeros).await;
        }
    }
    Ok(())
}

async fn read_exact(socket: &Socket, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = socket
            .async_io(Interest::READABLE, |fd| {
                rustix::io::read(fd, &mut buf[done..]).map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        done += n;
    }
    Ok(())
}

async fn read_frame(socket: &Socket) -> io::Result<(Header, Vec<u8>)> {
    let mut raw = [0u8; wire::HEADER_LEN];
    read_exact(socket, &mut raw).await?;
    let header = Header::decode(&raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if header.payload_len > 1 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "answer to a layer write larger than 1 MiB",
        ));
    }
    let mut payload = vec![0u8; header.payload_len as usize];
    read_exact(socket, &mut payload).await?;
    Ok((header, payload))
}
