//! The stable names: `/dev/ironhorn/<volume>`, a symlink to the kernel device that serves
//! the volume now. Links are replaced atomically and removed only while they still point
//! where this node put them.

use std::path::{Path, PathBuf};

use super::{BlockdevError, BlockdevErrorKind};

/// A volume name that is safe as a file name in the device directory.
pub fn check_volume_name(volume: &str) -> Result<(), BlockdevError> {
    let ok = !volume.is_empty()
        && volume.len() <= 255
        && volume != "."
        && volume != ".."
        && !volume.starts_with('.')
        && volume
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(BlockdevError::new(
            BlockdevErrorKind::Failed,
            format!("{volume:?} cannot name a device: letters, digits, '-', '_' and '.' only"),
        ))
    }
}

/// `dir/volume` now points to `target` (replacing what was there, atomically).
pub fn publish(dir: &Path, volume: &str, target: &Path) -> Result<PathBuf, BlockdevError> {
    check_volume_name(volume)?;
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        BlockdevError::new(
            BlockdevErrorKind::Failed,
            format!("{what} {}", path.display()),
        )
        .because(e)
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("creating", dir, e))?;
    let link = dir.join(volume);
    let temporary = dir.join(format!(".{volume}.new"));
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary)
        .map_err(|e| fail("creating the link", &temporary, e))?;
    std::fs::rename(&temporary, &link).map_err(|e| fail("renaming the link to", &link, e))?;
    Ok(link)
}

/// Where `link` points, if it is a symlink.
pub fn target(link: &Path) -> Option<PathBuf> {
    std::fs::read_link(link).ok()
}

/// Removes `link` if it still points to `expected`; leaves it alone otherwise (another
/// attachment replaced it). Returns whether it was removed.
pub fn withdraw(link: &Path, expected: &Path) -> Result<bool, BlockdevError> {
    if target(link).as_deref() != Some(expected) {
        return Ok(false);
    }
    match std::fs::remove_file(link) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(BlockdevError::new(
            BlockdevErrorKind::Failed,
            format!("removing {}", link.display()),
        )
        .because(e)),
    }
}

/// Every symlink in `dir` with its target.
pub fn all(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            target(&path).map(|t| (path, t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_replaced_and_withdrawn_only_while_ours() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ironhorn");
        let link = publish(&dir, "vol-a", Path::new("/dev/loop3")).expect("publish");
        assert_eq!(target(&link), Some(PathBuf::from("/dev/loop3")));
        publish(&dir, "vol-a", Path::new("/dev/loop4")).expect("replace");
        assert_eq!(target(&link), Some(PathBuf::from("/dev/loop4")));
        assert!(!withdraw(&link, Path::new("/dev/loop3")).expect("withdraw"));
        assert!(
            link.symlink_metadata().is_ok(),
            "another attachment's link stays"
        );
        assert!(withdraw(&link, Path::new("/dev/loop4")).expect("withdraw"));
        assert!(link.symlink_metadata().is_err());
        assert_eq!(all(&dir), []);
    }

    #[test]
    fn names_that_could_escape_the_directory_are_refused() {
        for bad in ["", ".", "..", "../etc", "a/b", ".hidden", "a b"] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_volume_name("pvc-0a1b.v2_x").is_ok());
    }
}
