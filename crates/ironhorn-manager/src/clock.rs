//! The wall clock as the manager writes it into resources: seconds since the epoch and
//! RFC 3339 text. A time past year 9999 (which RFC 3339 cannot write) comes out empty rather
//! than as a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
const LAST_WRITABLE: i64 = 253_402_300_799;

/// Seconds since the epoch now (0 for a clock before it).
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `secs` since the epoch as RFC 3339 to the second; empty past year 9999, the epoch for a
/// negative time.
pub(crate) fn rfc3339(secs: i64) -> String {
    if secs > LAST_WRITABLE {
        return String::new();
    }
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Now as RFC 3339 to the second.
pub(crate) fn now_rfc3339() -> String {
    rfc3339(now_secs())
}

/// Now as RFC 3339 to the millisecond (records that may follow each other within a second).
pub(crate) fn now_rfc3339_millis() -> String {
    let now = SystemTime::now();
    if now_secs() > LAST_WRITABLE {
        return String::new();
    }
    humantime::format_rfc3339_millis(now).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_rfc3339_and_never_panic() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(LAST_WRITABLE), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(LAST_WRITABLE + 1), "");
        assert_eq!(rfc3339(i64::MAX), "");
        assert!(now_rfc3339().ends_with('Z'));
        assert_eq!(now_rfc3339_millis().len(), "2026-01-01T00:00:00.000Z".len());
    }
}
