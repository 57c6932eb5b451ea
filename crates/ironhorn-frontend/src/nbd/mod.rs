//! The NBD frontend: the tokio server that serves one export to many clients. The wire
//! format itself is `ironhorn_proto::nbd` (pure, fuzzed).

pub mod server;

pub use server::{nbd_uri, serve, serve_connected, Export};
