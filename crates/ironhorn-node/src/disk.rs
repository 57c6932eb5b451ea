//! A disk is a directory (usually a mount point) holding replica directories under
//! `replicas/`, as in Longhorn. [`probe`] checks the path, gives the disk a stable identity
//! (a UUID in `ironhorn-disk.cfg`, or the one in Longhorn's `longhorn-disk.cfg` when the
//! disk came from Longhorn) and measures the filesystem. [`orphans`] lists replica
//! directories that no volume owns.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ironhorn_format::meta::VolumeMeta;
use ironhorn_format::names;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Ironhorn's disk identity file.
pub const DISK_CONFIG: &str = "ironhorn-disk.cfg";
/// Longhorn's, read when ours is missing (the same JSON shape).
pub const LONGHORN_DISK_CONFIG: &str = "longhorn-disk.cfg";
/// Where replica directories live on a disk.
pub const REPLICAS_DIR: &str = "replicas";

#[derive(Debug, Error)]
pub enum DiskError {
    #[error("disk path {0} does not exist: create it (and mount the disk there) first")]
    Missing(PathBuf),
    #[error("disk path {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("disk path {0} is a system directory: give a disk a directory of its own (usually a mount point such as /var/lib/ironhorn or /mnt/disk1)")]
    SystemDirectory(PathBuf),
    #[error("disk {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("disk {path}: {file} is damaged ({reason}); remove it only if this directory is not another disk's")]
    BadConfig {
        path: PathBuf,
        file: &'static str,
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DiskConfig {
    #[serde(rename = "diskUUID")]
    disk_uuid: String,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskProbe {
    pub uuid: String,
    /// Filesystem size in bytes.
    pub storage_maximum: u64,
    /// Bytes an unprivileged writer can still use.
    pub storage_available: u64,
}

fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> DiskError + 'a {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

fn read_config(path: &Path, file: &'static str) -> Result<Option<String>, DiskError> {
    match fs::read(path.join(file)) {
        Ok(bytes) => {
            let config: DiskConfig =
                serde_json::from_slice(&bytes).map_err(|e| DiskError::BadConfig {
                    path: path.to_path_buf(),
                    file,
                    reason: e.to_string(),
                })?;
            if config.disk_uuid.trim().is_empty() {
                return Err(DiskError::BadConfig {
                    path: path.to_path_buf(),
                    file,
                    reason: "empty diskUUID".into(),
                });
            }
            Ok(Some(config.disk_uuid))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "reading its identity file")(e)),
    }
}

/// Directories that hold the system, never a disk: a disk gets an identity file and a
/// `replicas/` directory written into it.
const SYSTEM_DIRECTORIES: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root",
    "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/tmp",
];

fn is_system_directory(path: &Path) -> bool {
    let resolved = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    [path, resolved.as_path()]
        .iter()
        .any(|p| SYSTEM_DIRECTORIES.iter().any(|s| Path::new(s) == *p))
}

/// Checks the disk at `path`, prepares it (identity file, `replicas/`) and measures it.
/// The path must exist: a disk is something the operator mounted, never created here.
pub fn probe(path: &Path) -> Result<DiskProbe, DiskError> {
    if is_system_directory(path) {
        return Err(DiskError::SystemDirectory(path.to_path_buf()));
    }
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(DiskError::NotADirectory(path.to_path_buf())),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(DiskError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path, "inspecting")(e)),
    }
    let uuid = match read_config(path, DISK_CONFIG)? {
        Some(uuid) => uuid,
        None => {
            let uuid = read_config(path, LONGHORN_DISK_CONFIG)?
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let bytes = serde_json::to_vec(&DiskConfig {
                disk_uuid: uuid.clone(),
            })
            .map_err(|e| DiskError::BadConfig {
                path: path.to_path_buf(),
                file: DISK_CONFIG,
                reason: e.to_string(),
            })?;
            let dir = File::open(path).map_err(io_err(path, "opening"))?;
            ironhorn_replica::fsio::atomic_write(path, &dir, DISK_CONFIG, &bytes)
                .map_err(io_err(path, "writing its identity file"))?;
            uuid
        }
    };
    fs::create_dir_all(path.join(REPLICAS_DIR)).map_err(io_err(path, "creating replicas/"))?;
    let stat = rustix::fs::statvfs(path).map_err(|e| io_err(path, "measuring")(e.into()))?;
    Ok(DiskProbe {
        uuid,
        storage_maximum: stat.f_blocks.saturating_mul(stat.f_frsize),
        storage_available: stat.f_bavail.saturating_mul(stat.f_frsize),
    })
}

/// A replica directory on a disk that no volume owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Directory name under `replicas/`.
    pub data_directory_name: String,
    /// The volume its name says it belonged to.
    pub volume: String,
    pub size: u64,
}

/// Replica directories under `path/replicas/` whose names are not in `owned`. Only what looks
/// like a replica counts: a `<volume>-<8 hex>` name and a readable `volume.meta`; anything
/// else is left alone.
pub fn orphans(path: &Path, owned: &BTreeSet<String>) -> Result<Vec<Orphan>, DiskError> {
    let dir = path.join(REPLICAS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, "listing replicas/")(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(path, "listing replicas/"))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let volume = names::volume_name_from_dir(&name);
        if volume == name || owned.contains(&name) {
            continue;
        }
        let Ok(bytes) = fs::read(entry.path().join(names::VOLUME_META)) else {
            continue;
        };
        let Ok(meta) = VolumeMeta::decode(names::VOLUME_META, &bytes) else {
            continue;
        };
        found.push(Orphan {
            volume: volume.to_string(),
            data_directory_name: name,
            size: meta.size,
        });
    }
    found.sort_by(|a, b| a.data_directory_name.cmp(&b.data_directory_name));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_path_is_a_clear_error_and_nothing_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("not-mounted");
        let err = probe(&missing).unwrap_err();
        assert!(matches!(err, DiskError::Missing(_)), "{err}");
        assert!(err.to_string().contains("create it"), "{err}");
        assert!(!missing.exists());
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(probe(&file), Err(DiskError::NotADirectory(_))));
    }

    #[test]
    fn system_directories_are_refused_untouched() {
        for dir in ["/", "/etc", "/tmp", "/usr/", "/var/lib"] {
            let err = probe(Path::new(dir)).unwrap_err();
            assert!(matches!(err, DiskError::SystemDirectory(_)), "{dir}: {err}");
        }
        assert!(!Path::new("/etc").join(DISK_CONFIG).exists());
        assert!(!Path::new("/").join(REPLICAS_DIR).exists());
    }

    #[test]
    fn identity_is_stable_and_capacity_is_measured() {
        let tmp = tempfile::tempdir().unwrap();
        let first = probe(tmp.path()).unwrap();
        assert!(tmp.path().join(REPLICAS_DIR).is_dir());
        assert!(first.storage_maximum > 0);
        assert!(first.storage_available <= first.storage_maximum);
        let again = probe(tmp.path()).unwrap();
        assert_eq!(first.uuid, again.uuid);
        // statvfs agrees with df's view of the same filesystem.
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=size"])
            .arg(tmp.path())
            .output()
            .unwrap();
        let df_size: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(df_size, first.storage_maximum);
    }

    #[test]
    fn a_disk_from_longhorn_keeps_its_uuid() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join(LONGHORN_DISK_CONFIG),
            br#"{"diskUUID":"2f1c7a7e-6a43-4f6b-9a61-2d8f0c1b5e77"}"#,
        )
        .unwrap();
        let probe = probe(tmp.path()).unwrap();
        assert_eq!(probe.uuid, "2f1c7a7e-6a43-4f6b-9a61-2d8f0c1b5e77");
        assert!(tmp.path().join(DISK_CONFIG).exists());
    }

    #[test]
    fn a_damaged_identity_file_is_reported_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(DISK_CONFIG), b"{not json").unwrap();
        let err = probe(tmp.path()).unwrap_err();
        assert!(matches!(err, DiskError::BadConfig { .. }), "{err}");
        assert_eq!(
            fs::read(tmp.path().join(DISK_CONFIG)).unwrap(),
            b"{not json"
        );
    }

    #[test]
    fn orphans_are_replica_directories_no_volume_owns() {
        let tmp = tempfile::tempdir().unwrap();
        probe(tmp.path()).unwrap();
        let replicas = tmp.path().join(REPLICAS_DIR);
        for (dir, size) in [("pvc-a-0000aaaa", 1 << 20), ("pvc-b-0000bbbb", 2 << 20)] {
            ironhorn_replica::Replica::create(&replicas.join(dir), size)
                .unwrap()
                .close()
                .unwrap();
        }
        // Not replicas: a bad name, and a good name without volume.meta.
        fs::create_dir(replicas.join("lost+found")).unwrap();
        fs::create_dir(replicas.join("pvc-c-0000cccc")).unwrap();
        let owned: BTreeSet<String> = ["pvc-a-0000aaaa".to_string()].into();
        assert_eq!(
            orphans(tmp.path(), &owned).unwrap(),
            vec![Orphan {
                data_directory_name: "pvc-b-0000bbbb".into(),
                volume: "pvc-b".into(),
                size: 2 << 20,
            }]
        );
    }
}
