//! Wire formats, pure: bytes in, values out, never a panic on what a peer sends. Every
//! decoder here has a fuzz target in `fuzz/`. Besides the network protocols, the kernel's:
//! the NBD driver's netlink messages and the ublk driver's commands and descriptors.

pub mod nbd;
pub mod nbd_netlink;
pub mod replica;
pub mod ublk;
