//! Frontends: what exposes a volume's block device to its users. Today the NBD server
//! (fixed newstyle, TCP and unix sockets); the `/dev/ironhorn/<volume>` backends come later.

pub mod nbd;
