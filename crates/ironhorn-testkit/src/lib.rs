//! Helpers for tests only: the Longhorn-written fixtures in `shared/fixtures`, hashing,
//! sparse copies. Panics on failure, as test helpers do.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ironhorn_replica::{Replica, ReplicaOptions};
use sha2::{Digest, Sha256};

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
    let archive = shared_dir().join("fixtures/longhorn-v1.5.3-engine.tar.gz");
    assert!(
        archive.exists(),
        "fixture archive missing: {}",
        archive.display()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let status = Command::new("tar")
        .arg("-xSzf")
        .arg(&archive)
        .arg("-C")
        .arg(tmp.path())
        .status()
        .expect("running tar");
    assert!(status.success(), "tar failed");
    let root = tmp.path().join("longhorn-v1.5.3-engine");
    (tmp, root)
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

/// Copies a directory keeping holes (`cp -a --sparse=always`).
pub fn copy_sparse(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(from)
        .arg(to)
        .status()
        .expect("running cp");
    assert!(status.success());
}
