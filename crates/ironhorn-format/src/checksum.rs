//! Snapshot checksums as Longhorn 1.4+ records them: CRC-64/GO-ISO over the whole snapshot
//! file, and the Go `time.Time.String()` rendering of the file's ctime that tells whether a
//! recorded checksum still describes the file.

use crc::{Crc, Digest, CRC_64_GO_ISO};

static CRC64_ISO: Crc<u64> = Crc::<u64>::new(&CRC_64_GO_ISO);

/// Incremental CRC-64 (ISO polynomial, as Go's `hash/crc64` with the ISO table).
pub struct SnapshotHasher(Digest<'static, u64>);

impl std::fmt::Debug for SnapshotHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotHasher")
    }
}

impl Default for SnapshotHasher {
    fn default() -> Self {
        SnapshotHasher(CRC64_ISO.digest())
    }
}

impl SnapshotHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// 16 lowercase hex digits, as in the `.checksum` file.
    pub fn finish_hex(self) -> String {
        format!("{:016x}", self.0.finalize())
    }
}

/// Go's `time.Time.String()` of a UTC instant: `2026-11-27 12:29:56.696771597 +0000 UTC`
/// (fraction without trailing zeros, omitted when zero).
pub fn go_time_string_utc(unix_secs: i64, nanos: u32) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let mut fraction = String::new();
    if nanos > 0 {
        fraction = format!(".{nanos:09}");
        while fraction.ends_with('0') {
            fraction.pop();
        }
    }
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}{fraction} +0000 UTC")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_string_matches_fixture() {
        // 2026-11-27T12:29:56.696771597Z
        assert_eq!(
            go_time_string_utc(1_795_782_596, 696_771_597),
            "2026-11-27 12:29:56.696771597 +0000 UTC"
        );
        assert_eq!(go_time_string_utc(0, 0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time_string_utc(0, 500_000_000),
            "1970-01-01 00:00:00.5 +0000 UTC"
        );
    }

    #[test]
    fn crc64_iso_known_value() {
        // Go: crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ISO)) = 0xb90956c775a41001
        let mut h = SnapshotHasher::default();
        h.update(b"123456789");
        assert_eq!(h.finish_hex(), "b90956c775a41001");
    }
}
