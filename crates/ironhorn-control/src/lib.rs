//! Pure logic of the control plane: the resources (Volume, Node with disks, Replica) with
//! Longhorn's names, the settings with Longhorn's keys, defaults and validation, and the
//! replica scheduler, which explains every refusal.
//!
//! Nothing here does I/O: the manager's controllers hand in what they observed and act on
//! what comes back.

pub mod resource;
pub mod scheduler;
pub mod settings;
pub mod units;
pub mod validate;
