//! The runtime pieces every data-path process shares, whatever it serves (replica server,
//! engine, NBD and blockdev frontends): addresses, listeners and the accept loop ([`net`]),
//! a socket writer that sends large payloads from their own buffers ([`direct_writer`]),
//! pooled request buffers ([`buffers`]) and the poll window that keeps the runtime's threads
//! spinning while I/O flows ([`poll_window`]); and [`error::KindError`], the shape of the
//! errors at service boundaries.

pub mod buffers;
pub mod direct_writer;
pub mod error;
pub mod net;
pub mod poll_window;
