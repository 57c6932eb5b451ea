//! Frontends: what exposes a volume's block device to its users: the NBD server (fixed
//! newstyle, TCP and unix sockets) and `/dev/ironhorn/<volume>` ([`blockdev`]).

pub mod blockdev;
pub mod nbd;
