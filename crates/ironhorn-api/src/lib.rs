//! Every type that crosses a process boundary, in one pure crate: the REST API's resources
//! and request bodies ([`resource`], [`rest`]), the node agent's wire types ([`node`]), the one
//! error body with its code vocabulary ([`error`]), and the two APIs as catalogues of typed
//! requests ([`manager_api`], [`node_api`]): a [`Request`] names its method, path, body and
//! the type of its answer, so the manager, the node agent, the CLI and the CSI driver build and
//! parse the same structs.
//!
//! With the `client` feature, [`client::ApiClient`] sends any of those requests over HTTP:
//! one generic call for every endpoint. Without it the crate does no I/O.

pub mod auth;
pub mod backup;
#[cfg(feature = "client")]
pub mod client;
pub mod data_source;
pub mod error;
pub mod manager_api;
pub mod node;
pub mod node_api;
pub mod path;
pub mod recurring;
mod request;
pub mod resource;
pub mod rest;

pub use error::{ErrorBody, ErrorCode};
pub use path::path_segment;
pub use request::{Method, Request, Timeout};
