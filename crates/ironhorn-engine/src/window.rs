//! [`WriteWindow`]: the writes and unmaps the engine has in flight to its replicas.
//!
//! Two rules, both for what replicas hold after the engine dies mid-I/O:
//! - at most [`WINDOW`] writes are in flight, counted by issue order (a write may start only
//!   when every write issued [`WINDOW`] or more before it has finished everywhere). Replicas
//!   then differ only in writes issued after the oldest one in flight, and a replica whose
//!   revision is at most [`MAX_RECONCILE_LAG`] behind the newest applied all of those among
//!   its last `MAX_RECONCILE_LAG + 2 * WINDOW` writes, which its recent-writes ring holds
//!   (`ironhorn_format::recent`): the engine reconciles such replicas instead of rebuilding;
//! - overlapping writes never run at the same time, so every replica applies them in the
//!   same order and ends with the same bytes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ironhorn_format::recent::RING_SLOTS;
use tokio::sync::Notify;

/// Writes in flight at most.
pub const WINDOW: u64 = 128;

/// How far behind the newest revision a replica may be and still be reconciled from the
/// rings at start (rather than marked ERR and rebuilt).
pub const MAX_RECONCILE_LAG: u64 = 1024;

const _: () = assert!(MAX_RECONCILE_LAG + 2 * WINDOW < RING_SLOTS);

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// In flight: sequence number -> byte range.
    open: BTreeMap<u64, (u64, u64)>,
}

#[derive(Debug, Default)]
pub struct WriteWindow {
    state: Mutex<State>,
    finished: Notify,
}

/// A write's place in the window; leaving it (on drop) lets the next writes in.
#[derive(Debug)]
pub struct Slot<'a> {
    window: &'a WriteWindow,
    seq: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.window
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .remove(&self.seq);
        self.window.finished.notify_waiters();
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

impl WriteWindow {
    /// Waits until a write of `[offset, offset+len)` may start: the window has room and no
    /// overlapping write is in flight.
    pub async fn enter(&self, offset: u64, len: u64) -> Slot<'_> {
        let range = (offset, len.max(1));
        loop {
            let finished = self.finished.notified();
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let oldest = state.open.keys().next().copied().unwrap_or(state.next);
                let room = state.next < oldest + WINDOW;
                if room && !state.open.values().any(|r| overlaps(*r, range)) {
                    let seq = state.next;
                    state.next += 1;
                    state.open.insert(seq, range);
                    return Slot { window: self, seq };
                }
            }
            finished.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn an_overlapping_write_waits_for_the_one_in_flight() {
        let window = Arc::new(WriteWindow::default());
        let first = window.enter(0, 8192).await;
        let _disjoint = window.enter(8192, 4096).await;
        let w = window.clone();
        let second = tokio::spawn(async move {
            let _slot = w.enter(4096, 4096).await;
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "overlapping write started early");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("overlapping write never started")
            .unwrap();
    }

    #[tokio::test]
    async fn the_window_holds_at_most_window_writes_behind_the_oldest() {
        let window = Arc::new(WriteWindow::default());
        let oldest = window.enter(0, 1).await;
        let mut rest = Vec::new();
        for i in 1..WINDOW {
            rest.push(window.enter(i * 4096, 1).await);
        }
        // Finishing newer writes does not make room: the oldest still holds the window.
        rest.clear();
        let w = window.clone();
        let next = tokio::spawn(async move {
            let _slot = w.enter(1 << 30, 1).await;
        });
        tokio::task::yield_now().await;
        assert!(!next.is_finished(), "window overran its oldest write");
        drop(oldest);
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("write never started")
            .unwrap();
    }
}
