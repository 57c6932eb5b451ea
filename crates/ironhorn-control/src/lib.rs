//! Pure logic of the control plane: the settings with Longhorn's keys, defaults and
//! validation, and the replica scheduler, which explains every refusal. The resources it
//! works on (Volume, Node with disks, Replica) are the API's, in `ironhorn_api::resource`.
//!
//! Nothing here does I/O: the manager's controllers hand in what they observed and act on
//! what comes back.

pub mod cron;
pub mod recurring;
pub mod schedule;
pub mod scheduler;
pub mod settings;
pub mod units;
pub mod validate;
