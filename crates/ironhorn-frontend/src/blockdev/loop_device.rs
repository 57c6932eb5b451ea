//! Loop devices: binding a file to `/dev/loopN` (util-linux `losetup`, with direct I/O so no
//! page cache sits between the block device and the volume), re-reading its size, unbinding,
//! and what `/sys/block/loopN/loop/` says each device is bound to.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{BlockdevError, BlockdevErrorKind};

/// Runs `losetup` with `args`; its trimmed stdout, or an error with what it printed.
fn losetup(args: &[&str]) -> Result<String, BlockdevError> {
    let output = Command::new("losetup")
        .args(args)
        .output()
        .map_err(BlockdevError::by(
            BlockdevErrorKind::Unavailable,
            "running losetup (install util-linux; `ironhorn check` lists what a node needs)",
        ))?;
    if !output.status.success() {
        return Err(BlockdevError::new(
            BlockdevErrorKind::Failed,
            format!(
                "losetup {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Binds `file` to a free loop device with direct I/O; returns the device path.
pub fn bind(file: &Path) -> Result<PathBuf, BlockdevError> {
    let file = file.to_str().ok_or_else(|| {
        BlockdevError::new(
            BlockdevErrorKind::Failed,
            format!("{} is not a UTF-8 path", file.display()),
        )
    })?;
    let device = losetup(&["--find", "--show", "--direct-io=on", file])?;
    if !device.starts_with("/dev/loop") {
        return Err(BlockdevError::new(
            BlockdevErrorKind::Failed,
            format!("losetup answered {device:?}, not a loop device"),
        ));
    }
    Ok(PathBuf::from(device))
}

/// Makes the loop device take its backing file's current size.
pub fn refresh_size(device: &Path) -> Result<(), BlockdevError> {
    losetup(&["--set-capacity", &device.display().to_string()]).map(|_| ())
}

/// Unbinds the device (deferred by the kernel until its last user closes it).
pub fn unbind(device: &Path) -> Result<(), BlockdevError> {
    losetup(&["--detach", &device.display().to_string()]).map(|_| ())
}

/// `loop3` from `/dev/loop3`.
fn kernel_name(device: &Path) -> Option<&str> {
    device
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| is_loop_name(n))
}

/// `loop` followed by digits only.
pub fn is_loop_name(name: &str) -> bool {
    name.strip_prefix("loop")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The file `device` is bound to now, from sysfs; `None` when it is bound to nothing.
pub fn backing_file(device: &Path) -> Option<PathBuf> {
    let name = kernel_name(device)?;
    let text = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    let text = text.trim_end_matches('\n');
    // The kernel appends " (deleted)" when the file was unlinked.
    Some(PathBuf::from(
        text.strip_suffix(" (deleted)").unwrap_or(text),
    ))
}

/// The size in bytes the kernel gives the block device now.
pub fn size_bytes(device: &Path) -> Option<u64> {
    let name = kernel_name(device)?;
    let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    sectors.checked_mul(512)
}

/// Every bound loop device with its backing file.
pub fn bound() -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, PathBuf)> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_loop_name(n))
        .filter_map(|n| {
            let device = PathBuf::from(format!("/dev/{n}"));
            backing_file(&device).map(|file| (device, file))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loop_device_names_are_taken() {
        assert!(is_loop_name("loop0"));
        assert!(is_loop_name("loop127"));
        assert!(!is_loop_name("loop"));
        assert!(!is_loop_name("loop-control"));
        assert!(!is_loop_name("loop1p1"));
        assert!(!is_loop_name("nbd0"));
        assert_eq!(kernel_name(Path::new("/dev/loop7")), Some("loop7"));
        assert_eq!(kernel_name(Path::new("/dev/loop-control")), None);
        assert_eq!(backing_file(Path::new("/dev/sda")), None);
    }
}
