//! Listening and connecting on `HOST:PORT` or `unix:PATH`, for every server of the project.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An address: `HOST:PORT` (TCP) or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/vol.sock".into());
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        let s = s.strip_prefix("tcp://").unwrap_or(s);
        if s.rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        {
            Ok(Addr::Tcp(s.to_string()))
        } else {
            Err(format!("{s:?} is neither HOST:PORT nor unix:PATH"))
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// An accepted or connected stream.
pub trait Stream: AsyncRead + AsyncWrite + std::os::fd::AsFd + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + std::os::fd::AsFd + Send + Unpin + 'static> Stream for T {}

impl Listener {
    pub async fn bind(addr: &Addr) -> io::Result<Listener> {
        match addr {
            Addr::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a).await?)),
            Addr::Unix(path) => {
                // A socket file left by a previous run would make bind fail.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    std::fs::remove_file(path)?;
                }
                Ok(Listener::Unix(UnixListener::bind(path)?, path.clone()))
            }
        }
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> Addr {
        match self {
            Listener::Tcp(l) => Addr::Tcp(
                l.local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "?".into()),
            ),
            Listener::Unix(_, path) => Addr::Unix(path.clone()),
        }
    }

    pub async fn accept(&self) -> io::Result<Box<dyn Stream>> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Box::new(s))
            }
            Listener::Unix(l, _) => Ok(Box::new(l.accept().await?.0)),
        }
    }

    /// Removes a unix socket file (call when done serving).
    pub fn cleanup(&self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub async fn connect(addr: &Addr) -> io::Result<Box<dyn Stream>> {
    match addr {
        Addr::Tcp(a) => {
            let s = TcpStream::connect(a).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        Addr::Unix(p) => Ok(Box::new(UnixStream::connect(p).await?)),
    }
}

/// Accepts connections until `shutdown`, running `on_connection` as a task for each; then
/// waits for those tasks to end and removes a unix socket file.
pub async fn accept_loop<F, Fut>(
    listener: Listener,
    shutdown: CancellationToken,
    mut on_connection: F,
) where
    F: FnMut(Box<dyn Stream>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    tracker.spawn(on_connection(stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    listener.cleanup();
}
