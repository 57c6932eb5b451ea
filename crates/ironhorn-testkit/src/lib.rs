//! Helpers for tests only: the Longhorn-written fixtures in `shared/fixtures`, hashing,
//! sparse copies. Panics on failure, as test helpers do.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ironhorn_replica::{Replica, ReplicaError, ReplicaOptions, SnapshotSpec};
use sha2::{Digest, Sha256};

pub mod hosts;
pub mod servers;

pub const FIXTURE_VOLUME: &str = "pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e-7e3a91d0";

/// `shared/` beside the project checkout (or `IRONHORN_SHARED`).
pub fn shared_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("IRONHORN_SHARED") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Extracts the v1.5.3 fixture archive (holes kept) into a fresh temporary directory.
pub fn extract_fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = extract_archive(&shared_dir().join("fixtures/longhorn-v1.5.3-engine.tar.gz"));
    let root = tmp.path().join("longhorn-v1.5.3-engine");
    (tmp, root)
}

/// Extracts a `.tar.gz` with `tar -xSzf` (holes stay holes) into a fresh temporary directory.
pub fn extract_archive(archive: &Path) -> tempfile::TempDir {
    assert!(archive.exists(), "archive missing: {}", archive.display());
    let tmp = tempfile::tempdir().expect("tempdir");
    let status = Command::new("tar")
        .arg("-xSzf")
        .arg(archive)
        .arg("-C")
        .arg(tmp.path())
        .status()
        .expect("running tar");
    assert!(status.success(), "tar failed");
    tmp
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The whole logical volume as seen at `snapshot` (None = head), `len` bytes.
pub fn read_view(dir: &Path, snapshot: Option<&str>, len: u64) -> Vec<u8> {
    let replica = Replica::open(
        dir,
        &ReplicaOptions {
            read_only: true,
            snapshot: snapshot.map(str::to_string),
        },
    )
    .expect("open view");
    let mut buf = vec![0u8; len as usize];
    replica.read_at(&mut buf, 0).expect("read view");
    buf
}

pub fn view_hash(dir: &Path, snapshot: Option<&str>, len: u64) -> String {
    sha256_hex(&read_view(dir, snapshot, len))
}

/// Allocated `[start, end)` ranges of a file.
pub fn data_ranges(path: &Path) -> Vec<(u64, u64)> {
    let file = std::fs::File::open(path).expect("open");
    let len = file.metadata().expect("stat").len();
    ironhorn_replica::fsio::data_extents(&file, 0, len)
        .expect("extents")
        .into_iter()
        .map(|e| (e.start, e.end))
        .collect()
}

/// Copies the directory `from` to `to` keeping every file's allocation exactly: holes stay
/// holes and allocated zeros stay allocated (`cp --sparse=always` would turn those into holes
/// and change what the replica reads).
pub fn copy_replica_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let src = std::fs::File::open(entry.path()).unwrap();
        let len = src.metadata().unwrap().len();
        let dst = std::fs::File::create(to.join(entry.file_name())).unwrap();
        dst.set_len(len).unwrap();
        let extents = ironhorn_replica::fsio::data_extents(&src, 0, len).unwrap();
        ironhorn_replica::fsio::copy_extents(&src, &dst, &extents).unwrap();
    }
    assert_eq!(
        std::fs::read_dir(from).unwrap().count(),
        std::fs::read_dir(to).unwrap().count()
    );
}

fn pattern(tag: &str, len: usize) -> Vec<u8> {
    tag.bytes().cycle().take(len).collect()
}

/// Writes a replica with every operation of the store: unaligned writes, zeros that hide
/// older data, labels, unmap, expand, remove, purge (coalesce and prune), revert. Its views
/// were read back with Longhorn v1.5.3's own `pkg/replica` (see `INTEROP_SCENARIO_HASHES`).
pub fn write_interop_scenario(dir: &Path) -> Result<(), ReplicaError> {
    const MIB: u64 = 1 << 20;
    let mut r = Replica::create(dir, 16 * MIB)?;
    r.write_at(&pattern("A1", 3 * 4096), 0)?;
    r.write_at(&pattern("A2", 5000), MIB + 100)?;
    r.write_at(&pattern("A3", 20), 8 * MIB - 10)?;
    r.snapshot(&SnapshotSpec {
        name: "a".into(),
        user_created: true,
        created: String::new(),
        labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
    })?;
    r.write_at(&[0u8; 4096], 0)?; // zeros hide A1's first sector
    r.write_at(&pattern("B1", 2 * MIB as usize), 2 * MIB)?;
    r.snapshot(&SnapshotSpec::user("b"))?;
    r.write_at(&pattern("C1", 4096), 4096)?;
    r.unmap(2 * MIB + 4096, 3 * 4096)?; // punches the head only: b shows through
    r.snapshot(&SnapshotSpec {
        name: "sys1".into(),
        ..SnapshotSpec::default()
    })?;
    r.write_at(&pattern("D1", 7000), 3 * MIB + 1)?;
    r.expand(24 * MIB)?;
    r.write_at(&pattern("E1", 8192), 20 * MIB)?;
    r.snapshot(&SnapshotSpec::user("c"))?;
    r.write_at(&pattern("F1", 4096), 20 * MIB)?;
    r.write_at(&pattern("F2", 4096), 3 * MIB)?;
    r.snapshot(&SnapshotSpec::user("d"))?;
    r.write_at(&pattern("G1", 4096), 3 * MIB)?;
    // b and d go: b folds into its child, d (the head's parent) is pruned.
    r.mark_removed("b")?;
    r.mark_removed("d")?;
    r.purge()?;
    r.write_at(&pattern("H1", 4096), 5 * MIB)?;
    r.snapshot(&SnapshotSpec::user("e"))?;
    r.revert("c")?;
    r.write_at(&pattern("I1", 4096), 6 * MIB)?;
    r.close()?;
    Ok(())
}

/// SHA-256 of each view of `write_interop_scenario`'s directory, as Longhorn v1.5.3's engine
/// (`pkg/replica`, `OpenSnapshot`/`New`, reading the whole volume size) computed them.
pub const INTEROP_SCENARIO_HASHES: [(&str, &str); 4] = [
    (
        "volume-head",
        "dbde38ed2b0407127a4960b9fcb47d1ac995062768bdd0e828db53f80db7575a",
    ),
    (
        "a",
        "0ba3fcb304500d06ec507c746c41af2a67c557a78c8f26b118109f997a96e3e3",
    ),
    (
        "c",
        "67f851da75b0f8f38bc3594152fa5a79b24d8bf286c11df168899e9b498c27a6",
    ),
    (
        "e",
        "8ecf7f06e2ae575a0b9c78a54c190e1ba6979638614ef4315b86069acce1cda6",
    ),
];

/// A child process whose stderr is collected as it runs (servers print their addresses
/// there); stopped when dropped.
#[derive(Debug)]
pub struct Proc {
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Proc {
    /// Starts `program` with `args` and `RUST_LOG=info`.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> Proc {
        use std::io::BufRead;
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Proc { child, stderr }
    }

    /// Waits (up to 30 s) until stderr contains `needle`.
    pub fn wait_for(&self, needle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.text().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "never printed {needle:?}: {}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Everything printed to stderr so far.
    pub fn text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal (`-STOP`, `-CONT`, ...) and returns at once.
    pub fn send_signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Sends a signal (`-TERM`, `-STOP`, ...) and waits for the process to end.
    pub fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }

    /// SIGKILL, and wait for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    /// SIGTERM first, so a server tears down what it made in the kernel (FUSE mounts, loop
    /// devices); SIGKILL if it has not ended within 10 s.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        self.kill9();
    }
}

/// A TCP port on 127.0.0.1 that nobody listens on now (for a server that must come back on
/// the same port after a restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether this process runs as root (its effective user id is 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Fails the calling test, saying what is missing, unless the fuse-loop block device backend
/// can run here (root, `/dev/fuse`, loop devices). A test that cannot run must not pass.
pub fn require_fuse_loop() {
    let root = is_root();
    let missing: Vec<&str> = [
        (!root).then_some("root"),
        (!std::path::Path::new("/dev/fuse").exists()).then_some("/dev/fuse"),
        (!std::path::Path::new("/dev/loop-control").exists()).then_some("/dev/loop-control"),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        missing.is_empty(),
        "this test needs the fuse-loop block device backend, which needs root, /dev/fuse and \
         /dev/loop-control; missing here: {} (run the tests as root, as .ci/run does)",
        missing.join(", ")
    );
}
