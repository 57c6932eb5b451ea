//! Reads a replica directory into the facts `ironhorn_format::chain::analyze` works on:
//! decoded metadata, image inodes and sizes, other entries, and checksum staleness.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ironhorn_format::chain::{DirFacts, ImageFacts, Warning};
use ironhorn_format::checksum::go_time_string_utc;
use ironhorn_format::meta::{ChecksumRecord, DiskMeta, VolumeMeta};
use ironhorn_format::names;

use crate::error::{ReplicaError, Result};

/// Whether a file name is a layer image: a head or a snapshot.
pub fn is_layer_image(name: &str) -> bool {
    names::head_index(name).is_some() || names::snapshot_name(name).is_some()
}

/// Reads `volume.meta`, every layer meta and the image file facts of `dir`.
pub fn scan_dir(dir: &Path) -> Result<(DirFacts, Vec<Warning>)> {
    let format_err = |source| ReplicaError::Format {
        dir: dir.to_path_buf(),
        source,
    };
    let meta_path = dir.join(names::VOLUME_META);
    let volume_meta = match fs::read(&meta_path) {
        Ok(bytes) => VolumeMeta::decode(names::VOLUME_META, &bytes).map_err(format_err)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(if dir.is_dir() {
                ReplicaError::NotReplicaDir(dir.to_path_buf())
            } else {
                ReplicaError::io("opening replica directory", dir)(e)
            })
        }
        Err(e) => return Err(ReplicaError::io("reading", meta_path)(e)),
    };
    let mut facts = DirFacts {
        volume_meta,
        ..DirFacts::default()
    };
    let entries = fs::read_dir(dir).map_err(ReplicaError::io("listing", dir))?;
    let mut checksum_files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(ReplicaError::io("listing", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            // Not UTF-8: no Longhorn file is named like that.
            facts
                .other_files
                .insert(entry.file_name().to_string_lossy().into_owned());
            continue;
        };
        let path = entry.path();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && is_layer_image(&name) {
            let md = fs::metadata(&path).map_err(ReplicaError::io("inspecting", &path))?;
            facts.images.insert(
                name,
                ImageFacts {
                    inode: md.ino(),
                    len: md.len(),
                    allocated: md.blocks() * 512,
                },
            );
        } else if let Some(image) = name
            .strip_suffix(names::META_SUFFIX)
            .filter(|image| is_file && is_layer_image(image))
        {
            let bytes = fs::read(&path).map_err(ReplicaError::io("reading", &path))?;
            let meta = DiskMeta::decode(&name, &bytes).map_err(format_err)?;
            facts.metas.insert(image.to_string(), meta);
        } else {
            if name.ends_with(names::CHECKSUM_SUFFIX) && is_file {
                checksum_files.push(name.clone());
            }
            facts.other_files.insert(name);
        }
    }
    let warnings = checksum_warnings(dir, &facts, &checksum_files);
    Ok((facts, warnings))
}

/// A `.checksum` is valid only while its `change_time` equals the image file's ctime.
fn checksum_warnings(dir: &Path, facts: &DirFacts, files: &[String]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for file in files {
        let Some(image) = file.strip_suffix(names::CHECKSUM_SUFFIX) else {
            continue;
        };
        if !facts.images.contains_key(image) {
            continue;
        }
        let record = fs::read(dir.join(file))
            .map_err(|e| e.to_string())
            .and_then(|bytes| ChecksumRecord::decode(file, &bytes).map_err(|e| e.to_string()));
        match record {
            Err(reason) => warnings.push(Warning::BadChecksumFile {
                file: file.clone(),
                reason,
            }),
            Ok(record) => {
                let current = fs::metadata(dir.join(image))
                    .map(|md| go_time_string_utc(md.ctime(), md.ctime_nsec() as u32))
                    .unwrap_or_default();
                if record.change_time != current {
                    warnings.push(Warning::StaleChecksum(file.clone()));
                }
            }
        }
    }
    warnings
}
