//! Wire formats, pure: bytes in, values out, never a panic on what a peer sends. Every
//! decoder here has a fuzz target in `fuzz/`.

pub mod nbd;
pub mod replica;
