//! `ironhorn csi`: the CSI plugin. It translates the Container Storage Interface's gRPC calls
//! (from the kubelet and the external provisioner, attacher, resizer and snapshotter) into
//! calls on the manager's REST API, and does the node-side work the kubelet asks of a block
//! storage plugin: make a filesystem when there is none, mount, bind, grow, report usage. It
//! keeps no state of its own: everything it answers is read from the manager or the node.

#![allow(missing_debug_implementations)]

/// The CSI messages and service stubs (package `csi.v1`), generated from `proto/csi.proto`.
pub mod csi {
    #![allow(clippy::all, missing_docs, unreachable_pub)]
    tonic::include_proto!("csi.v1");
}

pub mod capabilities;
pub mod controller;
pub mod identity;
pub mod mount;
pub mod names;
pub mod node;
pub mod params;
pub mod plugin;
pub mod server;

pub use plugin::{PluginConfig, DRIVER_NAME};
pub use server::{connect, serve, socket_path, ServeError};
pub use tonic;
