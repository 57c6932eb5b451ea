//! Helpers shared by this crate's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod model;

#[allow(unused_imports)]
pub use ironhorn_testkit::*;
