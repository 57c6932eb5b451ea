//! The node agent's view of its own machine (issue #4, in progress): the disks it offers
//! (identity and capacity, see [`disk`]) and the replica directories on them, including the
//! ones no volume owns (orphans).

pub mod disk;
