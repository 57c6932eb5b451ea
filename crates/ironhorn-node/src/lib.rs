//! The node agent: the disks this machine offers (identity and capacity, see [`disk`]), the
//! replica servers and engines the manager asks it to run ([`agent`]), and the node API the
//! manager calls ([`api`], messages in `ironhorn_api::node`), and the node preflight
//! ([`preflight`]).

pub mod agent;
pub mod api;
pub mod backup;
pub mod disk;
pub mod preflight;
