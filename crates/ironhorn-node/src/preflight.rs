//! The node preflight (`ironhorn check`; what Longhorn's `environment_check.sh` did): kernel
//! features for the blockdev backends, filesystem tools, room on the data directory, and
//! which blockdev backend this node will use. [`gather`] looks at the machine;
//! [`evaluate`] turns what it found into verdicts, each with what to do about it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the machine offers, as [`gather`] found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub kernel: String,
    pub is_root: bool,
    /// `/dev/ublk-control` (the ublk driver is loaded).
    pub ublk_control: bool,
    /// The ublk driver can resize a live device (`UBLK_F_UPDATE_SIZE`).
    pub ublk_resizes: bool,
    /// The kernel NBD driver is loaded (`/sys/module/nbd`).
    pub nbd_module: bool,
    pub dev_fuse: bool,
    pub loop_control: bool,
    /// Tools found, by name, with their path.
    pub tools: Vec<(String, Option<PathBuf>)>,
    pub data_dir: PathBuf,
    /// Size and free bytes of the filesystem that holds (or will hold) the data directory.
    pub data_space: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Missing,
}

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub status: Status,
    /// Without it the node cannot serve volumes (`ironhorn check` then exits non-zero).
    pub required: bool,
    pub detail: String,
    /// What to install or do; empty when nothing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

/// The blockdev backends, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Ublk,
    Nbd,
    FuseLoop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub kernel: String,
    /// The backend `/dev/ironhorn/<volume>` will use here; none when no backend works.
    pub blockdev_backend: Option<Backend>,
    pub items: Vec<Item>,
    /// Every required item is there.
    pub ready: bool,
}

/// Tools a node needs, with the Debian/Ubuntu package that has them and whether volumes need
/// them (the default StorageClass formats xfs; ext4 is the other common choice).
pub const TOOLS: &[(&str, &str, bool)] = &[
    ("mkfs.xfs", "xfsprogs", true),
    ("xfs_growfs", "xfsprogs", true),
    ("mkfs.ext4", "e2fsprogs", true),
    ("resize2fs", "e2fsprogs", true),
    ("fstrim", "util-linux", true),
    ("mount", "mount", true),
];

/// Free space below which replicas are not placed by default (Longhorn's
/// storage-minimal-available-percentage).
const MINIMAL_AVAILABLE_PERCENT: u64 = 25;

fn item(name: &str, status: Status, required: bool, detail: String, fix: &str) -> Item {
    Item {
        name: name.to_string(),
        status,
        required,
        detail,
        fix: fix.to_string(),
    }
}

/// The backend this node uses: ublk where its driver can resize a live device (online
/// expansion needs that), then the kernel NBD driver, then FUSE behind a loop device.
pub fn backend(facts: &Facts) -> Option<Backend> {
    [
        (facts.ublk_control && facts.ublk_resizes, Backend::Ublk),
        (facts.nbd_module, Backend::Nbd),
        (facts.dev_fuse && facts.loop_control, Backend::FuseLoop),
    ]
    .into_iter()
    .find_map(|(there, b)| there.then_some(b))
}

fn backend_name(b: Backend) -> String {
    serde_json::to_value(b)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Sizes in GiB with one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Verdicts on `facts`.
pub fn evaluate(facts: &Facts) -> Report {
    use Status::{Missing, Ok as Fine, Warning};
    let mut items = Vec::new();
    let kernel_features = [
        (
            "kernel: ublk",
            facts.ublk_control,
            "/dev/ublk-control is there",
            "no /dev/ublk-control (Linux 6.0+ with CONFIG_BLK_DEV_UBLK)",
            "modprobe ublk_drv",
        ),
        (
            "kernel: nbd",
            facts.nbd_module,
            "the nbd driver is loaded",
            "the nbd driver is not loaded",
            "modprobe nbd",
        ),
        (
            "kernel: fuse",
            facts.dev_fuse,
            "/dev/fuse is there",
            "no /dev/fuse",
            "modprobe fuse",
        ),
        (
            "kernel: loop",
            facts.loop_control,
            "/dev/loop-control is there",
            "no /dev/loop-control",
            "modprobe loop",
        ),
    ];
    // Each is optional on its own: the blockdev backend item below says whether one will do.
    for (name, found, there, absent, fix) in kernel_features {
        items.push(if found {
            item(name, Fine, false, there.into(), "")
        } else {
            item(name, Warning, false, absent.into(), fix)
        });
    }
    if facts.ublk_control && !facts.ublk_resizes {
        if let Some(ublk) = items.iter_mut().find(|i| i.name == "kernel: ublk") {
            ublk.detail.push_str(
                ", but its driver cannot resize a live device (UBLK_F_UPDATE_SIZE): not chosen, as volumes could not grow while attached",
            );
        }
    }
    let chosen = backend(facts);
    items.push(match chosen {
        Some(b) => item(
            "blockdev backend",
            Fine,
            true,
            format!("/dev/ironhorn/<volume> will use {}", backend_name(b)),
            "",
        ),
        None => item(
            "blockdev backend",
            Missing,
            true,
            "no backend: the kernel offers none of ublk, nbd, or fuse with loop".into(),
            "modprobe fuse loop (or nbd, or ublk_drv on Linux 6.0+)",
        ),
    });
    items.push(item(
        "privileges",
        if facts.is_root { Fine } else { Warning },
        false,
        if facts.is_root {
            "running as root".into()
        } else {
            "not root: block devices and mounts need root (or CAP_SYS_ADMIN)".into()
        },
        if facts.is_root {
            ""
        } else {
            "run the node agent as root"
        },
    ));
    for (tool, package, required) in TOOLS {
        let found = facts
            .tools
            .iter()
            .find(|(name, _)| name == tool)
            .and_then(|(_, path)| path.clone());
        items.push(match found {
            Some(path) => item(
                &format!("tool: {tool}"),
                Fine,
                *required,
                path.display().to_string(),
                "",
            ),
            None => item(
                &format!("tool: {tool}"),
                Missing,
                *required,
                "not found on PATH, /sbin or /usr/sbin".into(),
                &format!("apt-get install {package} (Debian/Ubuntu)"),
            ),
        });
    }
    let dir = facts.data_dir.display();
    items.push(match facts.data_space {
        None => item(
            "data directory",
            Missing,
            true,
            format!("{dir}: cannot measure its filesystem"),
            "create it on a mounted disk, or choose another with --data-dir",
        ),
        Some((size, free)) if size == 0 || free * 100 <= size * MINIMAL_AVAILABLE_PERCENT => item(
            "data directory",
            Warning,
            false,
            format!(
                "{dir}: {} free of {}, at most {MINIMAL_AVAILABLE_PERCENT}%: replicas are not placed here by default",
                gib(free),
                gib(size)
            ),
            "free space, use another disk, or lower storage-minimal-available-percentage",
        ),
        Some((size, free)) => item(
            "data directory",
            Fine,
            false,
            format!("{dir}: {} free of {}", gib(free), gib(size)),
            "",
        ),
    });
    let ready = !items
        .iter()
        .any(|i| i.required && i.status == Status::Missing);
    Report {
        kernel: facts.kernel.clone(),
        blockdev_backend: chosen,
        items,
        ready,
    }
}

/// Where a tool is: on `PATH`, or in the sbin directories a non-root `PATH` lacks.
fn find_tool(name: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = match path_var {
        Some(p) => std::env::split_paths(p).collect(),
        None => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
            .collect(),
    };
    dirs.into_iter().map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Looks at this machine. `search_path`: where to look for tools (default: `PATH` plus the
/// sbin directories).
pub fn gather(data_dir: &Path, search_path: Option<&std::ffi::OsStr>) -> Facts {
    let exists = |p: &str| Path::new(p).exists();
    // The data directory may not exist yet: measure the filesystem it will be created on.
    let mut probe = data_dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    let data_space = rustix::fs::statvfs(&probe).ok().map(|s| {
        (
            s.f_blocks.saturating_mul(s.f_frsize),
            s.f_bavail.saturating_mul(s.f_frsize),
        )
    });
    Facts {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        is_root: rustix::process::geteuid().is_root(),
        ublk_control: exists("/dev/ublk-control"),
        ublk_resizes: exists("/dev/ublk-control")
            && ironhorn_frontend::blockdev::kernel_ublk::available()
                .is_ok_and(ironhorn_frontend::blockdev::kernel_ublk::can_resize),
        nbd_module: exists("/sys/module/nbd"),
        dev_fuse: exists("/dev/fuse"),
        loop_control: exists("/dev/loop-control"),
        tools: TOOLS
            .iter()
            .map(|(name, _, _)| (name.to_string(), find_tool(name, search_path)))
            .collect(),
        data_dir: data_dir.to_path_buf(),
        data_space,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> Facts {
        Facts {
            kernel: "6.8.0".into(),
            is_root: true,
            ublk_control: true,
            ublk_resizes: true,
            nbd_module: true,
            dev_fuse: true,
            loop_control: true,
            tools: TOOLS
                .iter()
                .map(|(n, _, _)| (n.to_string(), Some(PathBuf::from(format!("/usr/sbin/{n}")))))
                .collect(),
            data_dir: "/var/lib/ironhorn".into(),
            data_space: Some((100 << 30, 60 << 30)),
        }
    }

    fn find<'a>(report: &'a Report, name: &str) -> &'a Item {
        report.items.iter().find(|i| i.name == name).expect("item")
    }

    #[test]
    fn the_best_backend_the_kernel_offers_is_chosen() {
        let mut f = everything();
        assert_eq!(backend(&f), Some(Backend::Ublk));
        let report = evaluate(&f);
        let said = &find(&report, "blockdev backend").detail;
        assert!(said.contains("will use ublk"), "{said}");
        f.ublk_resizes = false;
        assert_eq!(
            backend(&f),
            Some(Backend::Nbd),
            "ublk cannot grow a live device"
        );
        let report = evaluate(&f);
        let ublk = find(&report, "kernel: ublk");
        assert!(ublk.detail.contains("cannot resize"), "{}", ublk.detail);
        f.ublk_control = false;
        assert_eq!(backend(&f), Some(Backend::Nbd));
        f.nbd_module = false;
        assert_eq!(backend(&f), Some(Backend::FuseLoop));
        f.nbd_module = true;
        f.loop_control = false;
        assert_eq!(backend(&f), Some(Backend::Nbd));
        f.nbd_module = false;
        assert_eq!(backend(&f), None);
        let report = evaluate(&f);
        assert!(!report.ready);
        let item = find(&report, "blockdev backend");
        assert_eq!(item.status, Status::Missing);
        assert!(item.fix.contains("modprobe"), "{}", item.fix);
        assert_eq!(find(&report, "kernel: loop").fix, "modprobe loop");
    }

    #[test]
    fn a_node_with_everything_is_ready() {
        let report = evaluate(&everything());
        assert!(report.ready);
        assert!(
            report.items.iter().all(|i| i.status == Status::Ok),
            "{report:?}"
        );
        assert_eq!(report.blockdev_backend, Some(Backend::Ublk));
    }

    #[test]
    fn a_missing_tool_names_its_package_and_makes_the_node_not_ready() {
        let mut f = everything();
        f.tools.retain(|(n, _)| n != "mkfs.xfs");
        let report = evaluate(&f);
        assert!(!report.ready);
        let item = find(&report, "tool: mkfs.xfs");
        assert_eq!(item.status, Status::Missing);
        assert!(item.fix.contains("xfsprogs"), "{}", item.fix);
    }

    #[test]
    fn a_full_disk_and_no_root_are_warnings() {
        let mut f = everything();
        f.data_space = Some((100 << 30, 20 << 30));
        f.is_root = false;
        let report = evaluate(&f);
        assert!(report.ready, "warnings do not make a node unready");
        assert_eq!(find(&report, "data directory").status, Status::Warning);
        assert!(find(&report, "data directory").detail.contains("25%"));
        assert_eq!(find(&report, "privileges").status, Status::Warning);
        f.data_space = None;
        assert!(!evaluate(&f).ready);
    }

    #[test]
    fn tools_are_found_where_the_search_path_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = dir.path().join("mkfs.xfs");
        std::fs::write(&tool, b"#!/bin/sh\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let facts = gather(
            Path::new("/nonexistent/ironhorn"),
            Some(dir.path().as_os_str()),
        );
        let found: Vec<&str> = facts
            .tools
            .iter()
            .filter(|(_, p)| p.is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(found, ["mkfs.xfs"]);
        assert!(
            facts.data_space.is_some(),
            "measured at the nearest existing parent"
        );
    }
}
