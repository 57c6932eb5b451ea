//! Reused large buffers for bulk transfers (rebuild chunks, big writes and reads).
//!
//! A fresh multi-megabyte `Vec` costs more than the copy it is for: the allocator maps new
//! pages, each first touch faults, and `vec![0; n]` zeroes bytes that are overwritten at once.
//! [`take`] hands out a buffer returned earlier by [`give`] when one is large enough, keeping
//! its old (initialized) contents: callers overwrite all of it. Small buffers are not pooled.

use std::sync::Mutex;

/// Buffers smaller than this come from the allocator and are not kept.
pub const POOLED_MIN: usize = 256 * 1024;
/// At most this many idle buffers are kept; more are freed.
const KEPT_MAX: usize = 16;

static IDLE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of exactly `len` bytes with unspecified contents.
pub fn take(len: usize) -> Vec<u8> {
    if len >= POOLED_MIN {
        let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = idle.iter().position(|b| b.capacity() >= len) {
            let mut buf = idle.swap_remove(at);
            drop(idle);
            // Shrinking keeps the old bytes; growing within capacity zeroes only the growth.
            buf.resize(len, 0);
            return buf;
        }
    }
    vec![0u8; len]
}

/// Returns a buffer for reuse (small ones are simply freed).
pub fn give(buf: Vec<u8>) {
    if buf.capacity() < POOLED_MIN {
        return;
    }
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    if idle.len() < KEPT_MAX {
        idle.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_have_the_asked_length_and_large_ones_are_reused() {
        let big = take(POOLED_MIN * 2);
        assert_eq!(big.len(), POOLED_MIN * 2);
        let address = big.as_ptr();
        give(big);
        // A smaller request is served by the returned buffer (same allocation).
        let again = take(POOLED_MIN);
        assert_eq!(again.len(), POOLED_MIN);
        // (nextest runs each test in a process of its own: nobody else uses this pool.)
        assert_eq!(again.as_ptr(), address, "the returned buffer is reused");
        give(again);
        let small = take(100);
        assert_eq!(small, vec![0u8; 100], "small buffers are fresh and zeroed");
    }
}
