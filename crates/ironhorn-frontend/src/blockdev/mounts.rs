//! Where block devices are mounted: a parser for `/proc/self/mountinfo` (pure, fuzzed) and
//! the lookups built on it.

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the filesystem's device.
    pub device: (u32, u32),
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            digits
                .iter()
                .all(|d| (b'0'..=b'7').contains(d))
                .then(|| digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0')))
        });
        match (bytes[i], octal) {
            (b'\\', Some(value)) if value <= 0xff => {
                out.push(value as u8);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one line; `None` for a line that is not a mountinfo entry.
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let (major, minor) = fields.get(2)?.split_once(':')?;
    let device = (major.parse().ok()?, minor.parse().ok()?);
    let mount_point = PathBuf::from(unescape(fields.get(4)?));
    // Optional fields run until a lone "-"; the filesystem type and source follow it.
    let separator = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    Some(MountEntry {
        device,
        mount_point,
        fs_type: unescape(fields.get(separator + 1)?),
        source: unescape(fields.get(separator + 2)?),
    })
}

/// Parses a whole mountinfo text, skipping lines it cannot read.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// This process's mounts now.
pub fn current() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The mount points of the block device `device` (`major:minor`), in mount order.
pub fn mount_points_of(entries: &[MountEntry], device: (u32, u32)) -> Vec<PathBuf> {
    entries
        .iter()
        .filter(|e| e.device == device)
        .map(|e| e.mount_point.clone())
        .collect()
}

/// The mounts at or below `dir`, deepest first (the order to unmount them in).
pub fn mounts_under(entries: &[MountEntry], dir: &Path) -> Vec<MountEntry> {
    let mut found: Vec<MountEntry> = entries
        .iter()
        .filter(|e| e.mount_point.starts_with(dir))
        .cloned()
        .collect();
    found.sort_by_key(|e| std::cmp::Reverse(e.mount_point.components().count()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
97 22 7:3 / /mnt/my\\040data rw,relatime shared:60 - xfs /dev/loop3 rw,attr2,inode64
98 22 0:51 / /var/lib/ironhorn/run/fuse/vol-a rw,nosuid,nodev,relatime - fuse.ironhorn ironhorn rw,user_id=0,group_id=0
99 22 7:3 / /srv/again rw - xfs /dev/loop3 rw
";

    #[test]
    fn the_kernels_lines_are_read_with_escapes_and_optional_fields() {
        let entries = parse(SAMPLE);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[1].device, (7, 3));
        assert_eq!(entries[1].mount_point, PathBuf::from("/mnt/my data"));
        assert_eq!(entries[1].fs_type, "xfs");
        assert_eq!(entries[1].source, "/dev/loop3");
        assert_eq!(entries[2].fs_type, "fuse.ironhorn");
        assert_eq!(entries[3].fs_type, "xfs", "no optional fields");
        assert_eq!(
            mount_points_of(&entries, (7, 3)),
            [PathBuf::from("/mnt/my data"), PathBuf::from("/srv/again")]
        );
        assert!(mount_points_of(&entries, (7, 4)).is_empty());
        let under = mounts_under(&entries, Path::new("/var/lib/ironhorn/run"));
        assert_eq!(under.len(), 1);
        assert_eq!(under[0].device, (0, 51));
    }

    #[test]
    fn broken_lines_are_skipped() {
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("22 1 259 / / rw - ext4 x rw"), None);
        assert_eq!(parse_line("22 1 1:2 / / rw shared:1 ext4 x rw"), None);
        assert_eq!(unescape("a\\0"), "a\\0");
        assert_eq!(unescape("\\777x"), "\\777x");
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(text in "\\PC*") {
            let _ = parse(&text);
        }

        #[test]
        fn escaped_mount_points_come_back(name in "[a-z \\\\]{1,12}") {
            let escaped = name.replace('\\', "\\134").replace(' ', "\\040");
            let line = format!("1 2 7:1 / /m/{escaped} rw - xfs /dev/loop1 rw");
            let entry = parse_line(&line).expect("parses");
            prop_assert_eq!(entry.mount_point, PathBuf::from(format!("/m/{name}")));
        }
    }
}
