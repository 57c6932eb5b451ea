//! `/dev/ironhorn/<volume>` end to end with real kernel objects (FUSE, loop devices, xfs and
//! ext4, fstrim) on a three-replica volume served by real `ironhorn` processes: filesystems
//! made, filled, trimmed and checked across detach and attach; a replica killed during a
//! large copy; online expansion with xfs_growfs and resize2fs; detach refused while mounted;
//! nothing left behind after detach or after a kill -9 of the server. Each scenario runs on
//! each backend: fuse-loop (root, /dev/fuse and loop devices), nbd (the kernel NBD driver)
//! and ublk (`ublk_drv`); a test whose backend this kernel lacks says it skipped.
//! `scripts/vm-run` runs them in a virtual machine whose kernel has all three.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Cluster;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    run("sha256sum", &[path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `count` MiB of random bytes in a new file.
fn random_file(path: &Path, count: u64) {
    run(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}", path.display()),
            "bs=1M",
            &format!("count={count}"),
            "status=none",
        ],
    );
}

/// The data directory of a node in the cluster.
fn node_dir(cluster: &Cluster, node: &str) -> PathBuf {
    let dir = if node == "node-1" { "server" } else { node };
    cluster.root.path().join(dir)
}

/// Bytes the volume's head files occupy, per node.
fn head_bytes(cluster: &Cluster, volume: &str) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    ["node-1", "node-2", "node-3"]
        .iter()
        .map(|node| {
            let replicas = node_dir(cluster, node).join("replicas");
            let mut bytes = 0;
            for dir in std::fs::read_dir(&replicas).unwrap().filter_map(|e| e.ok()) {
                let name = dir.file_name().into_string().unwrap();
                if !name.starts_with(&format!("{volume}-")) {
                    continue;
                }
                for file in std::fs::read_dir(dir.path())
                    .unwrap()
                    .filter_map(|e| e.ok())
                {
                    let file_name = file.file_name().into_string().unwrap();
                    if file_name.starts_with("volume-head-") && file_name.ends_with(".img") {
                        bytes += file.metadata().unwrap().blocks() * 512;
                    }
                }
            }
            (node.to_string(), bytes)
        })
        .collect()
}

/// Fails the calling test unless this kernel offers `backend`. The nbd and ublk variants are
/// ignored by default (this machine's kernel has neither driver); `scripts/vm-run` runs them
/// with `--ignored` in a VM whose kernel has both.
fn require_backend(backend: &str) {
    ironhorn_testkit::require_fuse_loop();
    let (there, why) = match backend {
        "nbd" => (
            Path::new("/sys/module/nbd").exists(),
            "the kernel NBD driver is not loaded (modprobe nbd)",
        ),
        "ublk" => (
            Path::new("/dev/ublk-control").exists(),
            "the kernel ublk driver is not loaded (modprobe ublk_drv; Linux 6.0+)",
        ),
        _ => (true, ""),
    };
    assert!(
        there,
        "the {backend} backend cannot run here: {why}; scripts/vm-run runs this test in a VM whose kernel has it"
    );
}

/// The kernel block devices a node whose objects live under `dir` made, and the mounts at
/// or below `dir`: loop devices bound to files there, NBD devices whose backend names it,
/// and ublk devices recorded there.
fn kernel_objects_under(dir: &Path) -> (Vec<String>, Vec<String>) {
    let dir_text = dir.to_str().unwrap();
    let mut devices = Vec::new();
    for entry in std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let backing = entry.path().join("loop/backing_file");
        if let Ok(file) = std::fs::read_to_string(&backing) {
            if file.starts_with(dir_text) {
                devices.push(format!("{name}: {}", file.trim()));
            }
        }
        if let Ok(backend) = std::fs::read_to_string(entry.path().join("backend")) {
            if backend.contains(dir_text) {
                devices.push(format!("{name}: {}", backend.trim()));
            }
        }
    }
    let records = std::fs::read_dir(dir.join("fuse"))
        .map(|d| d.filter_map(|e| e.ok()).collect::<Vec<_>>())
        .unwrap_or_default();
    for record in records {
        let name = record.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_prefix("ublk-") {
            devices.push(format!(
                "ublkb{id}: recorded in {}",
                record.path().display()
            ));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir_text))
        .map(str::to_string)
        .collect();
    (devices, mounts)
}

/// What `volume` leaves on the machine while detached: nothing.
fn assert_nothing_left(cluster: &Cluster, volume: &str) {
    let (devices, mounts) = kernel_objects_under(&node_dir(cluster, "node-1").join("run"));
    assert!(devices.is_empty(), "devices left: {devices:?}");
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let link = Path::new("/dev/ironhorn").join(volume);
    assert!(
        link.symlink_metadata().is_err(),
        "{} is left",
        link.display()
    );
}

/// Removes, when a test ends (and above all when it fails), the mounts and loop devices
/// under its directory, so a failure does not leave kernel objects behind.
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let (loops, mounts) = kernel_objects_under(&self.0);
        for line in mounts.iter().rev() {
            if let Some(point) = line.split(' ').nth(4) {
                let _ = Command::new("umount").args(["-l", point]).status();
            }
        }
        for device in loops.iter().filter(|d| d.starts_with("loop")) {
            if let Some((name, _)) = device.split_once(':') {
                let _ = Command::new("losetup")
                    .args(["-d", &format!("/dev/{name}")])
                    .status();
            }
        }
    }
}

fn attach_blockdev(cluster: &Cluster, volume: &str) -> String {
    let attached = cluster.json(&[
        "volume",
        "attach",
        volume,
        "--frontend",
        "blockdev",
        "--wait",
    ]);
    assert_eq!(attached["status"]["state"], "attached");
    let device = attached["status"]["endpoint"].as_str().unwrap().to_string();
    assert_eq!(device, format!("/dev/ironhorn/{volume}"));
    let status = &attached["status"]["blockdev"];
    assert_eq!(status["backend"], cluster.backend);
    let target = std::fs::read_link(&device).unwrap();
    assert_eq!(target.to_str(), status["kernelDevice"].as_str());
    let kernel_name = match cluster.backend {
        "nbd" => "/dev/nbd",
        "ublk" => "/dev/ublkb",
        _ => "/dev/loop",
    };
    assert!(
        target.to_str().unwrap().starts_with(kernel_name),
        "{target:?}"
    );
    device
}

fn detach(cluster: &Cluster, volume: &str) {
    let detached = cluster.json(&["volume", "detach", volume, "--wait"]);
    assert_eq!(detached["status"]["state"], "detached");
    assert_nothing_left(cluster, volume);
}

fn mount(device: &str, at: &Path) {
    std::fs::create_dir_all(at).unwrap();
    run("mount", &[device, at.to_str().unwrap()]);
}

fn umount(at: &Path) {
    run("umount", &[at.to_str().unwrap()]);
}

/// Whether this process has capability number `bit` in its effective set.
fn has_capability(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    effective >> bit & 1 == 1
}

/// A new three-replica volume attached as a block device, formatted with `mkfs` and mounted;
/// its device path and mount point.
fn formatted_volume(
    cluster: &Cluster,
    volume: &str,
    size: &str,
    mkfs: &[&str],
) -> (String, PathBuf) {
    cluster.json(&[
        "volume",
        "create",
        volume,
        "--size",
        size,
        "--replicas",
        "3",
        "--wait",
    ]);
    let device = attach_blockdev(cluster, volume);
    let mnt = cluster.root.path().join("mnt");
    let mut args = mkfs[1..].to_vec();
    args.push(&device);
    run(mkfs[0], &args);
    mount(&device, &mnt);
    (device, mnt)
}

/// `count` files of `mib` MiB of random bytes in `dir`, with their checksums.
fn checksummed_files(dir: &Path, count: usize, mib: u64) -> Vec<(PathBuf, String)> {
    (0..count)
        .map(|i| {
            let file = dir.join(format!("file-{i}"));
            random_file(&file, mib);
            let sum = sha256(&file);
            (file, sum)
        })
        .collect()
}

fn fs_size(at: &Path) -> u64 {
    let st = rustix::fs::statvfs(at).unwrap();
    st.f_blocks * st.f_frsize
}

#[test]
fn xfs_on_fuse_loop() {
    xfs_on_a_three_replica_volume_survives_a_replica_kill_trims_grows_and_cleans_up("fuse-loop");
}

#[test]
#[ignore = "needs the kernel nbd driver, which this machine's kernel lacks: scripts/vm-run runs it with --ignored"]
fn xfs_on_nbd() {
    xfs_on_a_three_replica_volume_survives_a_replica_kill_trims_grows_and_cleans_up("nbd");
}

#[test]
#[ignore = "needs the kernel ublk driver, which this machine's kernel lacks: scripts/vm-run runs it with --ignored"]
fn xfs_on_ublk() {
    xfs_on_a_three_replica_volume_survives_a_replica_kill_trims_grows_and_cleans_up("ublk");
}

fn xfs_on_a_three_replica_volume_survives_a_replica_kill_trims_grows_and_cleans_up(
    backend: &'static str,
) {
    require_backend(backend);
    let (mut cluster, agents) = Cluster::three_nodes_with(backend);
    let _leftovers = Leftovers(cluster.root.path().to_path_buf());
    let [mut node2, _node3]: [_; 2] = agents.try_into().ok().unwrap();
    let volume = "bd-xfs";
    let (_, mnt) = formatted_volume(&cluster, volume, "2Gi", &["mkfs.xfs", "-q", "-f"]);

    // Small files with checksums, then a large copy during which a replica's node is killed.
    let mut sums = checksummed_files(&mnt, 3, 4);
    let source = cluster.root.path().join("big.src");
    random_file(&source, 1024);
    let big = mnt.join("big");
    let mut copy = Command::new("cp").arg(&source).arg(&big).spawn().unwrap();
    cluster.until("the copy is under way", |_| {
        std::fs::metadata(&big).is_ok_and(|m| m.len() >= 64 * MIB)
    });
    assert!(
        copy.try_wait().unwrap().is_none(),
        "the copy finished before a replica could be killed during it"
    );
    node2.kill9();
    assert!(copy.wait().unwrap().success(), "the copy failed");
    run("sync", &[]);
    assert_eq!(sha256(&big), sha256(&source), "the copied file differs");
    sums.push((big.clone(), sha256(&source)));
    std::fs::remove_file(&source).unwrap();
    let degraded = cluster.volume(volume);
    assert_eq!(degraded["status"]["state"], "attached");

    // The killed node comes back: its replica is caught up and the volume is healthy.
    let _node2 = cluster.start_node("node-2");
    cluster.until("the volume is healthy again", |c| {
        let v = c.volume(volume);
        v["status"]["robustness"] == "healthy"
            && v["status"]["replicas"]
                .as_array()
                .is_some_and(|r| r.len() == 3 && r.iter().all(|r| r["mode"] == "RW"))
    });

    // Trim: deleting the 1 GiB file and trimming gives its space back in every replica.
    let before = head_bytes(&cluster, volume);
    std::fs::remove_file(&big).unwrap();
    sums.pop();
    let trimmed = cluster.json(&["volume", "trim", volume]);
    assert_eq!(trimmed["mountPoint"], mnt.to_str().unwrap());
    assert!(trimmed["trimmedBytes"].as_u64().unwrap() >= GIB);
    let discarded = trimmed["discardedBytes"].as_u64().unwrap();
    assert!(discarded * 10 >= GIB * 9, "{discarded} bytes discarded");
    let after = head_bytes(&cluster, volume);
    for ((node, was), (_, now)) in before.iter().zip(&after) {
        let freed = was.saturating_sub(*now);
        assert!(
            freed * 10 >= GIB * 9,
            "{node}: the head files went from {was} to {now} bytes, {freed} freed of the 1 GiB deleted"
        );
    }

    // Detach is refused while mounted, with what to do.
    let (code, _, err) = cluster.cli(&["volume", "detach", volume]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("is mounted at") && err.contains("--force"),
        "{err}"
    );

    // Online expansion while mounted, then xfs_growfs. A ublk driver without UPDATE_SIZE
    // cannot resize a live device: the volume grows, the error says so, and the device
    // takes the size at the next attach.
    let size_before = fs_size(&mnt);
    let (code, _, err) = cluster.cli(&["volume", "expand", volume, "--size", "3Gi"]);
    if code != 0 {
        assert_eq!(backend, "ublk", "{err}");
        assert!(err.contains("cannot resize a live device"), "{err}");
        eprintln!("this kernel's ublk driver cannot resize a live device: detach and attach");
        umount(&mnt);
        detach(&cluster, volume);
        let device = attach_blockdev(&cluster, volume);
        mount(&device, &mnt);
    }
    assert_eq!(cluster.volume(volume)["spec"]["size"], 3 * GIB);
    run("xfs_growfs", &[mnt.to_str().unwrap()]);
    let size_after = fs_size(&mnt);
    assert!(
        size_after >= size_before + GIB - 64 * MIB,
        "the filesystem grew from {size_before} to {size_after} bytes"
    );

    // Unmount, detach, attach again: the files are there, byte for byte.
    umount(&mnt);
    detach(&cluster, volume);
    let device = attach_blockdev(&cluster, volume);
    mount(&device, &mnt);
    for (file, sum) in &sums {
        assert_eq!(&sha256(file), sum, "{} changed", file.display());
    }
    assert!(fs_size(&mnt) >= size_after);

    // kill -9 of the server while the filesystem is mounted: the restarted server cleans
    // up what was left (the dead mount included) and attaches the volume again.
    cluster.server.as_mut().unwrap().kill9();
    cluster.start_server();
    cluster.until("the volume is attached again after the restart", |c| {
        let v = c.volume(volume);
        v["status"]["state"] == "attached" && v["status"]["robustness"] == "healthy"
    });
    assert!(
        cluster.log().contains("cleanup at start"),
        "{}",
        cluster.log()
    );
    let (devices, mounts) = kernel_objects_under(&node_dir(&cluster, "node-1").join("run"));
    assert_eq!(devices.len(), 1, "one device, the new one: {devices:?}");
    assert!(
        !mounts.iter().any(|m| m.contains(mnt.to_str().unwrap())),
        "the dead mount is gone: {mounts:?}"
    );
    mount(&device, &mnt);
    for (file, sum) in &sums {
        assert_eq!(&sha256(file), sum, "{} changed", file.display());
    }
    umount(&mnt);
    detach(&cluster, volume);
    cluster.json(&["volume", "delete", volume, "--wait"]);
}

#[test]
fn ext4_on_fuse_loop() {
    ext4_is_made_filled_trimmed_grown_and_read_back_after_a_forced_detach("fuse-loop");
}

#[test]
#[ignore = "needs the kernel nbd driver, which this machine's kernel lacks: scripts/vm-run runs it with --ignored"]
fn ext4_on_nbd() {
    ext4_is_made_filled_trimmed_grown_and_read_back_after_a_forced_detach("nbd");
}

#[test]
#[ignore = "needs the kernel ublk driver, which this machine's kernel lacks: scripts/vm-run runs it with --ignored"]
fn ext4_on_ublk() {
    ext4_is_made_filled_trimmed_grown_and_read_back_after_a_forced_detach("ublk");
}

fn ext4_is_made_filled_trimmed_grown_and_read_back_after_a_forced_detach(backend: &'static str) {
    require_backend(backend);
    let (cluster, _agents) = Cluster::three_nodes_with(backend);
    let _leftovers = Leftovers(cluster.root.path().to_path_buf());
    let volume = "bd-ext4";
    let (device, mnt) = formatted_volume(&cluster, volume, "512Mi", &["mkfs.ext4", "-q", "-F"]);
    let sums = checksummed_files(&mnt, 4, 16);
    run("sync", &[]);
    let trimmed = cluster.json(&["volume", "trim", volume]);
    assert!(trimmed["trimmedBytes"].as_u64().unwrap() > 0);

    // Online expansion, then resize2fs on the mounted filesystem. ext4 grows online only
    // with CAP_SYS_RESOURCE (some containers drop it): without it, it grows unmounted.
    let size_before = fs_size(&mnt);
    let (code, _, err) = cluster.cli(&["volume", "expand", volume, "--size", "1Gi"]);
    let live = code == 0;
    if !live {
        assert_eq!(backend, "ublk", "{err}");
        assert!(err.contains("cannot resize a live device"), "{err}");
        eprintln!("this kernel's ublk driver cannot resize a live device: detach and attach");
        umount(&mnt);
        detach(&cluster, volume);
        attach_blockdev(&cluster, volume);
    }
    if live && has_capability(24) {
        run("resize2fs", &[&device]);
    } else {
        eprintln!("resize2fs runs with the filesystem unmounted (no CAP_SYS_RESOURCE here, or the device was re-attached)");
        if live {
            umount(&mnt);
        }
        run("e2fsck", &["-f", "-y", &device]);
        run("resize2fs", &[&device]);
        mount(&device, &mnt);
    }
    assert!(fs_size(&mnt) >= size_before + 400 * MIB);

    // A forced detach while mounted: written data is synced before the device goes, and
    // nothing is left behind.
    let last = mnt.join("written-last");
    std::fs::write(&last, b"synced by the forced detach").unwrap();
    let detached = cluster.json(&["volume", "detach", volume, "--force", "--wait"]);
    assert_eq!(detached["status"]["state"], "detached");
    assert_nothing_left(&cluster, volume);
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(mnt.to_str().unwrap()),
        "the filesystem was unmounted"
    );

    let device = attach_blockdev(&cluster, volume);
    mount(&device, &mnt);
    for (file, sum) in &sums {
        assert_eq!(&sha256(file), sum, "{} changed", file.display());
    }
    assert_eq!(
        std::fs::read(&last).unwrap(),
        b"synced by the forced detach"
    );
    cluster.until("the volume's status shows where it is mounted", |c| {
        let listed: Value = c.volume(volume);
        listed["status"]["blockdev"]["mountPoints"][0] == mnt.to_str().unwrap()
    });
    umount(&mnt);
    detach(&cluster, volume);
}
