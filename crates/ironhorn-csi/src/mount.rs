//! The node's filesystem work, with the system's own tools: what is mounted where (from
//! `/proc/self/mountinfo`), whether a device holds a filesystem (`blkid`), making one
//! (`mkfs.xfs -f`, `mkfs.ext4 -F -m0`, the options Kubernetes' mount library and so Longhorn
//! use), mounting (`mount`; xfs with `nouuid`, as Longhorn does, so a clone mounts beside its
//! source), bind mounts, unmounting and growing (`xfs_growfs`, `resize2fs`).

use std::path::{Path, PathBuf};

use tokio::process::Command;
use tonic::Status;

/// One line of mountinfo: what is mounted at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mounted device's `major:minor`.
    pub device_number: String,
    /// The path inside the mounted filesystem (`/` for a whole filesystem).
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub options: String,
}

fn unescape(field: &str) -> String {
    // mountinfo writes space, tab, newline and backslash as octal escapes.
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        if let Some(n) = octal {
            out.push(n);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads mountinfo text; lines it cannot read are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                device_number: left.get(2)?.to_string(),
                root: unescape(left.get(3)?),
                mount_point: PathBuf::from(unescape(left.get(4)?)),
                options: left.get(5)?.to_string(),
                fs_type: right.first()?.to_string(),
                source: unescape(right.get(1)?),
            })
        })
        .collect()
}

/// What is mounted at `path` now (the last mount wins, as the kernel shows it).
pub fn mounted_at(path: &Path) -> Result<Option<MountEntry>, Status> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Status::internal(format!("reading /proc/self/mountinfo: {e}")))?;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rfind(|m| m.mount_point == path))
}

async fn run(program: &str, args: &[&str]) -> Result<String, Status> {
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| Status::internal(format!("running {program}: {e} (is it installed?)")))?;
    if !output.status.success() {
        return Err(Status::internal(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The filesystem (or partition table) on a device, None when it holds neither.
pub async fn probe(device: &Path) -> Result<Option<String>, Status> {
    let device = device.to_string_lossy();
    let output = Command::new("blkid")
        .args(["-p", "-s", "TYPE", "-s", "PTTYPE", "-o", "export", &device])
        .output()
        .await
        .map_err(|e| Status::internal(format!("running blkid: {e} (is util-linux installed?)")))?;
    // blkid exits 2 when it finds nothing to report.
    if output.status.code() == Some(2) {
        return Ok(None);
    }
    if !output.status.success() {
        return Err(Status::internal(format!(
            "blkid {device} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("TYPE=") {
            return Ok(Some(t.to_string()));
        }
        if let Some(t) = line.strip_prefix("PTTYPE=") {
            return Ok(Some(format!("partition table {t}")));
        }
    }
    Ok(None)
}

/// Makes filesystem `fs` on the device with the extra `params`.
pub async fn make_filesystem(fs: &str, device: &Path, params: &str) -> Result<(), Status> {
    let device = device.to_string_lossy();
    let mut args: Vec<&str> = params.split_whitespace().collect();
    match fs {
        "xfs" => args.push("-f"),
        _ => args.extend(["-F", "-m0"]),
    }
    args.push(&device);
    run(&format!("mkfs.{fs}"), &args).await.map(|_| ())
}

/// Mounts the device's filesystem at `target`.
pub async fn mount(
    device: &Path,
    target: &Path,
    fs: &str,
    flags: &[String],
    read_only: bool,
) -> Result<(), Status> {
    let mut options: Vec<String> = flags.to_vec();
    if fs == "xfs" && !options.iter().any(|o| o == "nouuid") {
        options.push("nouuid".into());
    }
    if read_only {
        options.push("ro".into());
    }
    let mut args = vec!["-t".to_string(), fs.to_string()];
    if !options.is_empty() {
        args.extend(["-o".to_string(), options.join(",")]);
    }
    args.push(device.to_string_lossy().into_owned());
    args.push(target.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("mount", &args).await.map(|_| ())
}

/// Bind-mounts `source` on `target` (read-only when asked, with the extra flags).
pub async fn bind(
    source: &Path,
    target: &Path,
    read_only: bool,
    flags: &[String],
) -> Result<(), Status> {
    let (s, t) = (source.to_string_lossy(), target.to_string_lossy());
    run("mount", &["--bind", &s, &t]).await?;
    let mut options = vec!["remount".to_string(), "bind".to_string()];
    if read_only {
        options.push("ro".into());
    }
    options.extend(flags.iter().filter(|f| *f != "bind").cloned());
    if options.len() > 2 {
        if let Err(e) = run("mount", &["-o", &options.join(","), &t]).await {
            let _ = run("umount", &[&t]).await;
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts whatever is mounted at `target` (every layer), if anything.
pub async fn unmount_all(target: &Path) -> Result<(), Status> {
    while mounted_at(target)?.is_some() {
        run("umount", &[&target.to_string_lossy()]).await?;
    }
    Ok(())
}

/// Grows the filesystem mounted at `mount_point` from `device` to the device's size.
pub async fn grow(fs: &str, device: &Path, mount_point: &Path) -> Result<(), Status> {
    match fs {
        "xfs" => run("xfs_growfs", &[&mount_point.to_string_lossy()])
            .await
            .map(|_| ()),
        "ext4" | "ext3" | "ext2" => run("resize2fs", &[&device.to_string_lossy()])
            .await
            .map(|_| ()),
        other => Err(Status::failed_precondition(format!(
            "cannot grow a {other} filesystem"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_reads_without_panicking(text in "\\PC*( - \\PC*)?\n?\\PC*") {
            let _ = parse_mountinfo(&text);
            let _ = unescape(&text);
        }
    }

    #[test]
    fn escapes_out_of_byte_range_are_kept_as_text() {
        assert_eq!(unescape("a\\040b\\777c\\7"), "a b\\777c\\7");
    }

    #[test]
    fn mountinfo_lines_read() {
        let text = "36 35 7:3 / /var/lib/kubelet/staging\\040dir rw,relatime shared:1 - xfs /dev/loop3 rw,nouuid\n\
                    37 36 7:3 /sub /target rw - xfs /dev/loop3 rw\n\
                    garbage\n";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].mount_point,
            PathBuf::from("/var/lib/kubelet/staging dir")
        );
        assert_eq!(entries[0].fs_type, "xfs");
        assert_eq!(entries[0].source, "/dev/loop3");
        assert_eq!(entries[1].root, "/sub");
        assert_eq!(entries[1].device_number, "7:3");
    }
}
