//! How fast logins may be tried: per client address and per user name, the first few
//! failures cost nothing, then each makes the key wait twice as long as the one before (from
//! 5 s up to 15 min). A success clears the key. Pure: the caller passes the time, so tests
//! use a fake clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures before waits start.
pub const FREE_FAILURES: u32 = 5;
/// The first wait.
pub const FIRST_WAIT: Duration = Duration::from_secs(5);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// A key with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Keys remembered at most (an attacker cycling addresses cannot grow the map forever).
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Failed logins by key (`addr:<ip>`, `user:<name>`).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    keys: HashMap<String, Failures>,
}

impl LoginLimiter {
    /// How long `key` must still wait at `now`; None when it may try.
    pub fn wait(&self, key: &str, now: Instant) -> Option<Duration> {
        let until = self.keys.get(key)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failed login of `key` at `now`.
    pub fn failed(&mut self, key: &str, now: Instant) {
        if self.keys.len() >= MAX_KEYS && !self.keys.contains_key(key) {
            self.forget_old(now);
            if self.keys.len() >= MAX_KEYS {
                // Still full of recent failures: drop the oldest.
                if let Some(oldest) = self
                    .keys
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
                {
                    self.keys.remove(&oldest);
                }
            }
        }
        let entry = self.keys.entry(key.to_string()).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(entry.last) > FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        if entry.count > FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES - 1).min(20);
            let wait = FIRST_WAIT.saturating_mul(1u32 << doublings).min(MAX_WAIT);
            entry.blocked_until = Some(now + wait);
        }
    }

    /// A successful login of `key`: its failures are forgotten.
    pub fn succeeded(&mut self, key: &str) {
        self.keys.remove(key);
    }

    fn forget_old(&mut self, now: Instant) {
        self.keys
            .retain(|_, f| now.duration_since(f.last) <= FORGET_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_after_the_free_failures_and_double() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            l.failed("user:alice", t0);
            assert_eq!(l.wait("user:alice", t0), None);
        }
        l.failed("user:alice", t0);
        assert_eq!(l.wait("user:alice", t0), Some(FIRST_WAIT));
        l.failed("user:alice", t0);
        assert_eq!(l.wait("user:alice", t0), Some(FIRST_WAIT * 2));
        for _ in 0..30 {
            l.failed("user:alice", t0);
        }
        assert_eq!(l.wait("user:alice", t0), Some(MAX_WAIT));
        // Waiting it out lets the next attempt through; other keys never waited.
        assert_eq!(l.wait("user:alice", t0 + MAX_WAIT), None);
        assert_eq!(l.wait("user:bob", t0), None);
        l.succeeded("user:alice");
        assert_eq!(l.wait("user:alice", t0), None);
    }

    #[test]
    fn an_old_streak_is_forgotten_and_the_map_stays_bounded() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES + 3 {
            l.failed("addr:10.0.0.9", t0);
        }
        assert!(l.wait("addr:10.0.0.9", t0).is_some());
        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        l.failed("addr:10.0.0.9", later);
        assert_eq!(l.wait("addr:10.0.0.9", later), None, "counting starts over");
        for i in 0..MAX_KEYS + 10 {
            l.failed(&format!("addr:{i}"), later);
        }
        assert!(l.keys.len() <= MAX_KEYS);
    }
}
