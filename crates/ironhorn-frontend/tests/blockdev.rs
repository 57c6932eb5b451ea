//! The fuse-loop backend against the real kernel: a replica served as `/dev/loopN` through
//! FUSE, read and written with dd, discards and write-zeroes passed down, resize, detach
//! while mounted. Needs root, /dev/fuse and loop devices (skips with a message otherwise).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ironhorn_engine::{BlockDevice, ReplicaDevice};
use ironhorn_frontend::blockdev::{BlockdevPaths, FuseLoop};
use ironhorn_replica::Replica;

const MIB: u64 = 1 << 20;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Setup {
    _tmp: tempfile::TempDir,
    paths: BlockdevPaths,
    device: Arc<ReplicaDevice>,
    runtime: tokio::runtime::Runtime,
}

fn setup(size: u64) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let replica = Replica::create(&tmp.path().join("replicas/vol-0a0b0c0d"), size).unwrap();
    let paths = BlockdevPaths {
        run_dir: tmp.path().join("run/fuse"),
        dev_dir: tmp.path().join("dev"),
    };
    Setup {
        device: Arc::new(ReplicaDevice::new(replica)),
        paths,
        _tmp: tmp,
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    }
}

fn attach(s: &Setup, volume: &str) -> FuseLoop {
    let device: Arc<dyn BlockDevice> = s.device.clone();
    FuseLoop::attach(&s.paths, volume, device, s.runtime.handle().clone()).unwrap()
}

#[test]
fn data_written_through_the_block_device_reaches_the_volume() {
    ironhorn_testkit::require_fuse_loop();
    let s = setup(64 * MIB);
    let attached = attach(&s, "vol-data");
    let link = s.paths.dev_dir.join("vol-data");
    assert_eq!(std::fs::read_link(&link).unwrap(), attached.device().path);
    let dev = link.display().to_string();
    let src = s._tmp.path().join("pattern");
    let pattern: Vec<u8> = (0..4 * MIB).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &pattern).unwrap();
    run(
        "dd",
        &[
            &format!("if={}", src.display()),
            &format!("of={dev}"),
            "bs=1M",
            "seek=3",
            "oflag=direct",
            "conv=fsync",
            "status=none",
        ],
    );
    let mut back = vec![0u8; pattern.len()];
    let device = s.device.clone();
    let read = s
        .runtime
        .block_on(async move { device.read(3 * MIB, 4 * MIB as usize).await })
        .unwrap();
    back.copy_from_slice(&read);
    assert!(back == pattern, "the volume holds what dd wrote");
    let problems = attached.teardown();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(link.symlink_metadata().is_err(), "the link is gone");
    assert!(!s.paths.run_dir.join("vol-data").exists());
}

fn loop_devices_backed_under(dir: &Path) -> Vec<PathBuf> {
    ironhorn_frontend::blockdev::loop_device::bound()
        .into_iter()
        .filter(|(_, f)| f.starts_with(dir))
        .map(|(d, _)| d)
        .collect()
}

#[test]
fn a_mounted_device_is_busy_and_a_forced_teardown_unmounts_it() {
    ironhorn_testkit::require_fuse_loop();
    let s = setup(300 * MIB);
    let attached = attach(&s, "vol-fs");
    let dev = attached.device().link.display().to_string();
    run("mkfs.xfs", &["-q", "-f", &dev]);
    let mnt = s._tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run("mount", &[&dev, &mnt.display().to_string()]);
    std::fs::write(mnt.join("file"), b"kept").unwrap();
    let why = attached.device().busy().expect("busy while mounted");
    assert!(why.contains(&mnt.display().to_string()), "{why}");
    assert!(why.contains("--force"), "{why}");
    let problems = attached.teardown();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(ironhorn_frontend::blockdev::mounts::current()
        .iter()
        .all(|m| m.mount_point != mnt));
    assert!(loop_devices_backed_under(&s.paths.run_dir).is_empty());
    // The file written before the forced detach is on the volume: attach again and look.
    let attached = attach(&s, "vol-fs");
    let dev = attached.device().link.display().to_string();
    run("mount", &[&dev, &mnt.display().to_string()]);
    assert_eq!(std::fs::read(mnt.join("file")).unwrap(), b"kept");
    run("umount", &[&mnt.display().to_string()]);
    assert!(attached.device().busy().is_none());
    assert!(attached.teardown().is_empty());
}
