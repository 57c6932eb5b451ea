//! Human-readable sizes (shared with the manager: see `ironhorn_control::units`).

pub use ironhorn_control::units::{human_size, parse_size};
