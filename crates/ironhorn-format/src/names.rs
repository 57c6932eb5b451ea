//! File names inside a replica directory and the names shown to people.
//!
//! A layer is identified by its image file name (`volume-head-004.img`,
//! `volume-snap-s1.img`); its metadata is that name plus `.meta`. People see snapshot names
//! without prefix and suffix and the head as `volume-head`, as Longhorn's CLI does.

use crate::FormatError;

pub const VOLUME_META: &str = "volume.meta";
pub const REVISION_COUNTER: &str = "revision.counter";
/// Ironhorn's recent-writes ring (see `recent`); Longhorn ignores it.
pub const RECENT_WRITES: &str = "ironhorn.recent-writes";
/// Ironhorn's fencing generation: the newest attachment that claimed the replica, in
/// decimal (see the replica protocol's `Claim`); Longhorn ignores it.
pub const GENERATION: &str = "ironhorn.generation";
pub const HEAD_PREFIX: &str = "volume-head-";
pub const SNAP_PREFIX: &str = "volume-snap-";
pub const IMG_SUFFIX: &str = ".img";
pub const META_SUFFIX: &str = ".meta";
pub const CHECKSUM_SUFFIX: &str = ".checksum";
pub const TMP_SUFFIX: &str = ".tmp";
/// What Longhorn's APIs call the head.
pub const HEAD_DISPLAY_NAME: &str = "volume-head";
/// Longest snapshot name accepted (file names are limited to 255 bytes).
pub const MAX_SNAPSHOT_NAME: usize = 200;

/// `volume-head-NNN.img`, three digits at least, as Longhorn's `%03d`.
pub fn head_file(index: u64) -> String {
    format!("{HEAD_PREFIX}{index:03}{IMG_SUFFIX}")
}

/// The number of a head image file name, if it is one.
pub fn head_index(file: &str) -> Option<u64> {
    let digits = file.strip_prefix(HEAD_PREFIX)?.strip_suffix(IMG_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn snapshot_file(name: &str) -> String {
    format!("{SNAP_PREFIX}{name}{IMG_SUFFIX}")
}

/// The snapshot name of a snapshot image file name, if it is one.
pub fn snapshot_name(file: &str) -> Option<&str> {
    file.strip_prefix(SNAP_PREFIX)?
        .strip_suffix(IMG_SUFFIX)
        .filter(|n| !n.is_empty())
}

pub fn meta_file(image: &str) -> String {
    format!("{image}{META_SUFFIX}")
}

pub fn checksum_file(image: &str) -> String {
    format!("{image}{CHECKSUM_SUFFIX}")
}

/// The name shown to people: the snapshot name, `volume-head` for a head, else the file name.
pub fn display_name(image: &str) -> String {
    if head_index(image).is_some() {
        HEAD_DISPLAY_NAME.to_string()
    } else if let Some(name) = snapshot_name(image) {
        name.to_string()
    } else {
        image.to_string()
    }
}

/// Whether a directory entry is a transient file left by an interrupted atomic replace
/// (`*.tmp`, Longhorn's checksum writer's `*..tmp`).
pub fn is_temp_file(file: &str) -> bool {
    file.ends_with(TMP_SUFFIX)
}

/// Snapshot names become file names; refuse what cannot be one or would be ambiguous.
pub fn validate_snapshot_name(name: &str) -> Result<(), FormatError> {
    let bad = |reason: &str| {
        Err(FormatError::BadSnapshotName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_SNAPSHOT_NAME {
        return bad("it is longer than 200 bytes");
    }
    if name == HEAD_DISPLAY_NAME {
        return bad("volume-head is the name of the live head");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("it contains '/' or a NUL byte");
    }
    if name == "." || name == ".." || name.ends_with(TMP_SUFFIX) {
        return bad("it would be mistaken for a temporary or special file");
    }
    if name.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    Ok(())
}

/// The volume name of a replica directory name: `<volume>-<8 lowercase hex>`; a name
/// without that suffix is returned whole.
pub fn volume_name_from_dir(dir_name: &str) -> &str {
    match dir_name.rsplit_once('-') {
        Some((volume, suffix))
            if !volume.is_empty()
                && suffix.len() == 8
                && suffix.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            volume
        }
        _ => dir_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_names() {
        assert_eq!(head_file(4), "volume-head-004.img");
        assert_eq!(head_file(1234), "volume-head-1234.img");
        assert_eq!(head_index("volume-head-004.img"), Some(4));
        assert_eq!(head_index("volume-head-.img"), None);
        assert_eq!(head_index("volume-head-00a.img"), None);
        assert_eq!(head_index("volume-head-004.img.meta"), None);
    }

    #[test]
    fn snapshot_names() {
        assert_eq!(snapshot_file("s1"), "volume-snap-s1.img");
        assert_eq!(
            snapshot_name("volume-snap-expand-8388608.img"),
            Some("expand-8388608")
        );
        assert_eq!(snapshot_name("volume-snap-.img"), None);
        assert_eq!(display_name("volume-head-002.img"), "volume-head");
        assert_eq!(display_name("volume-snap-s2.img"), "s2");
    }

    #[test]
    fn volume_name_strips_the_replica_suffix() {
        assert_eq!(
            volume_name_from_dir("pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e-7e3a91d0"),
            "pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e"
        );
        assert_eq!(volume_name_from_dir("myvol"), "myvol");
        assert_eq!(volume_name_from_dir("myvol-xyz"), "myvol-xyz");
    }

    #[test]
    fn snapshot_name_validation() {
        assert!(validate_snapshot_name("6a1b7c2d-3e4f").is_ok());
        for bad in ["", "a/b", "volume-head", "..", "x.tmp", "a\nb"] {
            assert!(validate_snapshot_name(bad).is_err(), "{bad:?}");
        }
    }
}
