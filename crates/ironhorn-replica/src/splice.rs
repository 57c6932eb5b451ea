//! Receiving a rebuild chunk straight into its layer file: `splice(2)` moves the socket's
//! data into a pipe and from the pipe into the file, so the bytes are copied once (into the
//! page cache) instead of twice (into a buffer here, then into the page cache). When the
//! sender uses `sendfile`, the data crosses from the source's page cache to the target's with
//! that single copy.
//!
//! The calls block (a poll waits for the socket), so they run on the blocking pool; the
//! connection's reader waits for them, as it would have waited for the bytes anyway.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::pipe::SpliceFlags;

/// How long the sender may pause in the middle of a chunk before the connection is dropped.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// The pipe between socket and file: larger pipes take fewer calls.
const PIPE_SIZE: usize = 1 << 20;

/// A duplicate of a connection's socket and a pipe, for splicing payloads into files.
#[derive(Debug)]
pub struct Splicer {
    socket: OwnedFd,
    pipe_read: OwnedFd,
    pipe_write: OwnedFd,
}

impl Splicer {
    /// A splicer for the connection on `socket` (duplicated: the caller keeps its own).
    pub fn new(socket: BorrowedFd<'_>) -> io::Result<Splicer> {
        let socket = socket.try_clone_to_owned()?;
        let (pipe_read, pipe_write) = rustix::pipe::pipe()?;
        // Only a hint: a smaller pipe works too, with more calls.
        let _ = rustix::pipe::fcntl_setpipe_size(&pipe_write, PIPE_SIZE);
        Ok(Splicer {
            socket,
            pipe_read,
            pipe_write,
        })
    }

    /// Moves the next `len` bytes of the socket into `file` at `offset`.
    pub fn socket_to_file(&self, file: &File, mut offset: u64, mut len: u64) -> io::Result<()> {
        while len > 0 {
            let want = usize::try_from(len.min(PIPE_SIZE as u64)).unwrap_or(PIPE_SIZE);
            let mut in_pipe = self.socket_to_pipe(want)?;
            len -= in_pipe as u64;
            while in_pipe > 0 {
                let n = rustix::pipe::splice(
                    &self.pipe_read,
                    None,
                    file,
                    Some(&mut offset),
                    in_pipe,
                    SpliceFlags::MOVE,
                )?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the file took no bytes from the pipe",
                    ));
                }
                in_pipe -= n;
            }
        }
        Ok(())
    }

    /// Reads and drops the next `len` bytes of the socket (a refused chunk's data).
    pub fn discard(&self, mut len: u64) -> io::Result<()> {
        let mut scratch = vec![0u8; 64 << 10];
        while len > 0 {
            self.wait_readable()?;
            let want = len.min(scratch.len() as u64) as usize;
            match rustix::io::read(&self.socket, &mut scratch[..want]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => len -= n as u64,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Splices up to `want` bytes from the socket into the (empty) pipe, waiting for at least
    /// one; returns how many.
    fn socket_to_pipe(&self, want: usize) -> io::Result<usize> {
        loop {
            match rustix::pipe::splice(
                &self.socket,
                None,
                &self.pipe_write,
                None,
                want,
                SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
            ) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => self.wait_readable()?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn wait_readable(&self) -> io::Result<()> {
        let timeout = Timespec {
            tv_sec: STALL_LIMIT.as_secs() as i64,
            tv_nsec: 0,
        };
        let mut fds = [PollFd::new(&self.socket, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("peer sent nothing for {STALL_LIMIT:?} in the middle of a frame"),
            )),
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for Splicer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn socket_bytes_land_in_the_file_at_the_offset() {
        let (mut sender, receiver) = std::os::unix::net::UnixStream::pair().unwrap();
        let data: Vec<u8> = (0..3 << 20)
            .map(|i: u32| (i * 7 + i / 4096) as u8)
            .collect();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || {
                sender.write_all(&data).unwrap();
                sender.write_all(b"tail").unwrap();
                sender
            })
        };
        let (_dir, file) = crate::fsio::tests::scratch_file();
        let splicer = Splicer::new(receiver.as_fd()).unwrap();
        splicer
            .socket_to_file(&file, 8192, data.len() as u64)
            .unwrap();
        // The bytes after the payload stay in the socket for the next frame.
        let mut rest = [0u8; 4];
        let _sender = writer.join().unwrap();
        std::io::Read::read_exact(&mut &receiver, &mut rest).unwrap();
        assert_eq!(&rest, b"tail");
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, 8192).unwrap();
        assert!(back == data, "spliced bytes differ");
        assert_eq!(file.metadata().unwrap().len(), 8192 + data.len() as u64);
    }

    #[test]
    fn a_peer_that_hangs_up_mid_payload_is_an_error() {
        let (mut sender, receiver) = std::os::unix::net::UnixStream::pair().unwrap();
        sender.write_all(&[1u8; 1000]).unwrap();
        drop(sender);
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("layer")).unwrap();
        let splicer = Splicer::new(receiver.as_fd()).unwrap();
        let err = splicer.socket_to_file(&file, 0, 5000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let splicer_discard = Splicer::new(receiver.as_fd()).unwrap();
        assert!(splicer_discard.discard(10).is_err());
    }
}
