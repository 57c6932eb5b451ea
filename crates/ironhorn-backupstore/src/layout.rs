//! Where everything lives under a target's root: `backupstore/volumes/<L1>/<L2>/<volume>/`
//! with `volume.cfg`, `backups/backup_<name>.cfg`, `blocks/<c0c1>/<c2c3>/<sum>.blk` and
//! `locks/lock-<16 hex>.lck`; the name rule Longhorn enforces; block checksums.

use sha2::{Digest, Sha512};

use crate::error::{BackupStoreError, Result};

/// Longhorn's default (and, before 1.6, only) backup block size.
pub const DEFAULT_BLOCK_SIZE: u64 = 2 << 20;
/// The other block size newer Longhorn releases allow.
pub const LARGE_BLOCK_SIZE: u64 = 16 << 20;
pub const VOLUMES_DIR: &str = "backupstore/volumes";
const BACKUP_PREFIX: &str = "backup_";
const CFG_SUFFIX: &str = ".cfg";
const BLOCK_SUFFIX: &str = ".blk";

/// Checks a volume, backup or lock name against Longhorn's rule
/// `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BackupStoreError::InvalidName {
            what,
            name: name.to_string(),
        })
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// A block's name: the first 64 hex digits of SHA-512 of its uncompressed bytes.
pub fn block_checksum(data: &[u8]) -> String {
    let digest = Sha512::digest(data);
    hex(&digest[..32])
}

/// True if `s` looks like a block checksum (64 lowercase hex digits).
pub fn is_checksum(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `backupstore/volumes/<L1>/<L2>/<volume>`: L1L2 are the first four hex digits of
/// SHA-512 of the volume name.
pub fn volume_dir(volume: &str) -> String {
    let sum = hex(&Sha512::digest(volume.as_bytes())[..2]);
    format!("{VOLUMES_DIR}/{}/{}/{volume}", &sum[..2], &sum[2..4])
}

pub fn volume_cfg(volume: &str) -> String {
    format!("{}/volume.cfg", volume_dir(volume))
}

pub fn backups_dir(volume: &str) -> String {
    format!("{}/backups", volume_dir(volume))
}

pub fn backup_cfg(volume: &str, backup: &str) -> String {
    format!(
        "{}/{BACKUP_PREFIX}{backup}{CFG_SUFFIX}",
        backups_dir(volume)
    )
}

/// The backup name in a file name of `backups/`, if it is a backup cfg.
pub fn backup_name_of(file: &str) -> Option<&str> {
    file.strip_prefix(BACKUP_PREFIX)?.strip_suffix(CFG_SUFFIX)
}

pub fn blocks_dir(volume: &str) -> String {
    format!("{}/blocks", volume_dir(volume))
}

pub fn block_path(volume: &str, checksum: &str) -> String {
    let (a, b) = (
        checksum.get(..2).unwrap_or("00"),
        checksum.get(2..4).unwrap_or("00"),
    );
    format!("{}/{a}/{b}/{checksum}{BLOCK_SUFFIX}", blocks_dir(volume))
}

/// The checksum in a file name of `blocks/xx/yy/`, if it is a block file.
pub fn block_checksum_of(file: &str) -> Option<&str> {
    file.strip_suffix(BLOCK_SUFFIX).filter(|s| is_checksum(s))
}

pub fn locks_dir(volume: &str) -> String {
    format!("{}/locks", volume_dir(volume))
}

pub fn lock_path(volume: &str, lock: &str) -> String {
    format!("{}/{lock}.lck", locks_dir(volume))
}

/// A fresh backup name the way Longhorn's engine makes one: `backup-` + 16 hex digits.
pub fn new_backup_name() -> String {
    format!(
        "backup-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// A fresh lock name: `lock-` + 16 hex digits.
pub fn new_lock_name() -> String {
    format!("lock-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_dir_matches_longhorns_fixture() {
        // From the spec and the fixture: pvc-2e8c… lives under 8f/e5.
        assert_eq!(
            volume_dir("pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e"),
            "backupstore/volumes/8f/e5/pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e"
        );
        assert_eq!(
            volume_dir("pvc-6a1b7c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"),
            "backupstore/volumes/32/52/pvc-6a1b7c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
        );
    }

    #[test]
    fn names_follow_longhorns_rule() {
        for good in ["ab", "pvc-1", "a.b_c-d", "0x"] {
            assert!(validate_name("volume", good).is_ok(), "{good}");
        }
        for bad in ["", "a", "-ab", ".ab", "a/b", "a b", "../x", "ä1"] {
            assert!(validate_name("volume", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn block_paths_round_trip() {
        let sum = block_checksum(&[0u8; 4096]);
        assert!(is_checksum(&sum));
        let path = block_path("vol", &sum);
        let file = path.rsplit('/').next().unwrap_or_default();
        assert_eq!(block_checksum_of(file), Some(sum.as_str()));
        assert!(path.contains(&format!("/blocks/{}/{}/", &sum[..2], &sum[2..4])));
        assert_eq!(backup_name_of("backup_backup-1.cfg"), Some("backup-1"));
        assert_eq!(backup_name_of("backup_x.cfg.tmp.1"), None);
        assert!(new_backup_name().starts_with("backup-") && new_backup_name().len() == 23);
    }
}
