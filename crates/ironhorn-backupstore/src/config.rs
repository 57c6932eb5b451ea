//! `volume.cfg` and `backups/backup_<name>.cfg`, with Longhorn's quirks: numbers as decimal
//! strings, some strings double-encoded (Go's `,string` on a string field), a leaked
//! `ProcessingBlocks` field, `SingleFile` always present, `CreatedTime: ""` for a backup in
//! progress. Fields this version does not know are kept and written back unchanged.
//!
//! Decoding checks what later code relies on (block names are checksums, offsets are
//! block-aligned and in order), so a damaged or hostile cfg is refused here with the path.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::codec::Compression;
use crate::error::{BackupStoreError, Result};
use crate::layout::{is_checksum, DEFAULT_BLOCK_SIZE, LARGE_BLOCK_SIZE};

pub type Labels = BTreeMap<String, String>;

/// `volume.cfg`: the backup volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeConfig {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Size", with = "decimal")]
    pub size: u64,
    #[serde(rename = "Labels", default)]
    pub labels: Option<Labels>,
    #[serde(rename = "CreatedTime", default)]
    pub created_time: String,
    #[serde(rename = "LastBackupName", default)]
    pub last_backup_name: String,
    #[serde(rename = "LastBackupAt", default)]
    pub last_backup_at: String,
    #[serde(rename = "BlockCount", with = "decimal", default)]
    pub block_count: u64,
    #[serde(rename = "BackingImageName", with = "double_encoded", default)]
    pub backing_image_name: String,
    #[serde(rename = "BackingImageChecksum", with = "double_encoded", default)]
    pub backing_image_checksum: String,
    /// Absent in volumes written before Longhorn 1.5: gzip.
    #[serde(rename = "CompressionMethod", with = "double_encoded_opt", default)]
    pub compression_method: Option<String>,
    #[serde(rename = "StorageClassName", with = "double_encoded", default)]
    pub storage_class_name: String,
    #[serde(
        rename = "DataEngine",
        with = "double_encoded_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_engine: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl VolumeConfig {
    pub fn new(name: &str, size: u64, compression: Compression, created: &str) -> Self {
        VolumeConfig {
            name: name.to_string(),
            size,
            labels: None,
            created_time: created.to_string(),
            last_backup_name: String::new(),
            last_backup_at: String::new(),
            block_count: 0,
            backing_image_name: String::new(),
            backing_image_checksum: String::new(),
            compression_method: Some(compression.as_str().to_string()),
            storage_class_name: String::new(),
            data_engine: None,
            extra: Map::new(),
        }
    }

    /// The compression of every block of this volume (gzip when the cfg predates 1.5).
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_cfg(self.compression_method.as_deref())
    }

    pub fn decode(path: &str, bytes: &[u8]) -> Result<VolumeConfig> {
        let cfg: VolumeConfig = decode_json(path, bytes)?;
        cfg.compression()
            .map_err(|e| corrupt(path, e.to_string()))?;
        Ok(cfg)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

/// One entry of a backup's block map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    #[serde(rename = "Offset")]
    pub offset: u64,
    #[serde(rename = "BlockChecksum")]
    pub checksum: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SingleFile {
    #[serde(rename = "FilePath", default)]
    pub file_path: String,
}

/// `backups/backup_<name>.cfg`: one backup, with the complete block map of the volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupConfig {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "VolumeName", default)]
    pub volume_name: String,
    #[serde(rename = "SnapshotName", default)]
    pub snapshot_name: String,
    /// When the backup started (Longhorn passes "now", not the snapshot's time).
    #[serde(rename = "SnapshotCreatedAt", default)]
    pub snapshot_created_at: String,
    /// When it completed; empty while in progress.
    #[serde(rename = "CreatedTime", default)]
    pub created_time: String,
    /// Bytes of blocks listed (`len(Blocks) × block size`).
    #[serde(rename = "Size", with = "decimal", default)]
    pub size: u64,
    #[serde(rename = "Labels", default)]
    pub labels: Option<Labels>,
    #[serde(
        rename = "Parameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub parameters: Option<BTreeMap<String, String>>,
    #[serde(rename = "IsIncremental", default)]
    pub is_incremental: bool,
    #[serde(
        rename = "CompressionMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compression_method: Option<String>,
    #[serde(
        rename = "NewlyUploadedDataSize",
        with = "decimal_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub newly_uploaded_data_size: Option<u64>,
    #[serde(
        rename = "ReUploadedDataSize",
        with = "decimal_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub re_uploaded_data_size: Option<u64>,
    /// Longhorn 1.5's leaked internal field: read and dropped.
    #[serde(rename = "ProcessingBlocks", default, skip_serializing)]
    processing_blocks: Option<Value>,
    #[serde(rename = "Blocks", deserialize_with = "null_as_empty", default)]
    pub blocks: Vec<BlockEntry>,
    #[serde(rename = "SingleFile", default)]
    pub single_file: SingleFile,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BackupConfig {
    /// An in-progress backup cfg (`CreatedTime` empty).
    pub fn in_progress(name: &str, volume: &str, snapshot: &str, started: &str) -> Self {
        BackupConfig {
            name: name.to_string(),
            volume_name: volume.to_string(),
            snapshot_name: snapshot.to_string(),
            snapshot_created_at: started.to_string(),
            created_time: String::new(),
            size: 0,
            labels: None,
            parameters: None,
            is_incremental: false,
            compression_method: None,
            newly_uploaded_data_size: None,
            re_uploaded_data_size: None,
            processing_blocks: None,
            blocks: Vec::new(),
            single_file: SingleFile::default(),
            extra: Map::new(),
        }
    }

    pub fn is_complete(&self) -> bool {
        !self.created_time.is_empty()
    }

    /// The block size (`Parameters.backup-block-size`, 2 MiB when absent).
    pub fn block_size(&self) -> Result<u64> {
        match self
            .parameters
            .as_ref()
            .and_then(|p| p.get("backup-block-size"))
        {
            None => Ok(DEFAULT_BLOCK_SIZE),
            Some(q) => parse_block_size(q),
        }
    }

    pub fn decode(path: &str, bytes: &[u8]) -> Result<BackupConfig> {
        let cfg: BackupConfig = decode_json(path, bytes)?;
        let block_size = cfg.block_size().map_err(|e| corrupt(path, e.to_string()))?;
        let mut previous: Option<u64> = None;
        for block in &cfg.blocks {
            if !is_checksum(&block.checksum) {
                return Err(corrupt(
                    path,
                    format!("block name {:?} is not a SHA-512 checksum", block.checksum),
                ));
            }
            if block.offset % block_size != 0 || previous.is_some_and(|p| p >= block.offset) {
                return Err(corrupt(
                    path,
                    format!("block offset {} is unaligned or out of order", block.offset),
                ));
            }
            previous = Some(block.offset);
        }
        Ok(cfg)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

/// A Kubernetes quantity for a block size: `2Mi`, `16Mi` or plain bytes.
pub fn parse_block_size(q: &str) -> Result<u64> {
    let q = q.trim();
    let (digits, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| BackupStoreError::Invalid(format!("backup block size {q:?} is not a size")))?;
    let bytes = match unit {
        "" => Some(n),
        "Ki" => n.checked_mul(1 << 10),
        "Mi" => n.checked_mul(1 << 20),
        "Gi" => n.checked_mul(1 << 30),
        _ => None,
    };
    match bytes {
        Some(b) if b == DEFAULT_BLOCK_SIZE || b == LARGE_BLOCK_SIZE => Ok(b),
        _ => Err(BackupStoreError::Invalid(format!(
            "backup block size {q:?}: Longhorn allows 2Mi or 16Mi"
        ))),
    }
}

pub fn block_size_quantity(size: u64) -> String {
    format!("{}Mi", size >> 20)
}

fn corrupt(path: &str, reason: String) -> BackupStoreError {
    BackupStoreError::Corrupt {
        path: path.to_string(),
        reason,
    }
}

fn decode_json<T: for<'de> Deserialize<'de>>(path: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let reason = if e.is_eof() {
            format!("truncated ({} bytes): {e}", bytes.len())
        } else {
            format!("not a valid cfg: {e}")
        };
        corrupt(path, reason)
    })
}

fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn null_as_empty<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<BlockEntry>, D::Error> {
    Ok(Option::<Vec<BlockEntry>>::deserialize(d)?.unwrap_or_default())
}

/// A decimal in a JSON string (Go's `,string` on an integer); a bare number is accepted.
mod decimal {
    use super::*;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => s
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a decimal number"))),
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a size"))),
            other => Err(serde::de::Error::custom(format!(
                "expected a decimal string, found {other}"
            ))),
        }
    }
}

mod decimal_opt {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> std::result::Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<u64>, D::Error> {
        super::decimal::deserialize(d).map(Some)
    }
}

/// A string written as a JSON string holding a JSON string literal (`"\"lz4\""`). A value
/// that is not double-encoded is taken as it is.
mod double_encoded {
    use super::*;

    pub fn serialize<S: Serializer>(v: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&serde_json::to_string(v).unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
        let outer = Option::<String>::deserialize(d)?.unwrap_or_default();
        Ok(serde_json::from_str::<String>(&outer).unwrap_or(outer))
    }
}

mod double_encoded_opt {
    use super::*;

    pub fn serialize<S: Serializer>(
        v: &Option<String>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        super::double_encoded::serialize(v.as_deref().unwrap_or(""), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<String>, D::Error> {
        super::double_encoded::deserialize(d).map(|v| Some(v).filter(|v| !v.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VOLUME_CFG: &str = r#"{"Name":"pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e","Size":"8388608","Labels":{"app":"fixture"},"CreatedTime":"2026-11-27T12:30:04Z","LastBackupName":"backup-e1b97d04c6a8f253","LastBackupAt":"2026-11-27T12:30:06Z","BlockCount":"5","BackingImageName":"\"\"","BackingImageChecksum":"\"\"","CompressionMethod":"\"lz4\"","StorageClassName":"\"0\""}"#;
    const BACKUP_CFG: &str = r#"{"Name":"backup-5a2f0c9e81d7b364","VolumeName":"pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e","SnapshotName":"s2","SnapshotCreatedAt":"2026-11-27T12:30:04Z","CreatedTime":"2026-11-27T12:30:06Z","Size":"4194304","Labels":{"app":"fixture"},"IsIncremental":false,"CompressionMethod":"lz4","ProcessingBlocks":{},"Blocks":[{"Offset":0,"BlockChecksum":"09b2fffa8977c6d13004f25c5dd7c1517017fb251466bd72f6154b54e8eae8be"},{"Offset":2097152,"BlockChecksum":"9da522c0eec83ced6227d2ce558d05f265425e86e7f002ebbe5b7b0bf92c819b"}],"SingleFile":{"FilePath":""}}"#;

    #[test]
    fn volume_cfg_round_trips_byte_for_byte() {
        let cfg = VolumeConfig::decode("volume.cfg", VOLUME_CFG.as_bytes()).expect("decodes");
        assert_eq!(cfg.size, 8 << 20);
        assert_eq!(cfg.block_count, 5);
        assert_eq!(cfg.compression().ok(), Some(Compression::Lz4));
        assert_eq!(cfg.storage_class_name, "0");
        assert_eq!(
            String::from_utf8(cfg.encode()).ok().as_deref(),
            Some(VOLUME_CFG)
        );
    }

    #[test]
    fn backup_cfg_drops_processing_blocks_and_keeps_the_rest() {
        let cfg = BackupConfig::decode("b.cfg", BACKUP_CFG.as_bytes()).expect("decodes");
        assert_eq!(cfg.blocks.len(), 2);
        assert_eq!(cfg.size, 4 << 20);
        assert!(cfg.is_complete());
        let expected = BACKUP_CFG.replace(r#""ProcessingBlocks":{},"#, "");
        assert_eq!(String::from_utf8(cfg.encode()).ok(), Some(expected));
    }

    #[test]
    fn old_and_new_fields_are_understood() {
        // v1.2.6: no CompressionMethod ⇒ gzip; newest: Parameters and unknown fields kept.
        let old = r#"{"Name":"v1","Size":"10485760","Labels":null,"CreatedTime":"t","LastBackupName":"","LastBackupAt":"","BlockCount":"0","BackingImageName":"\"\"","BackingImageChecksum":"\"\""}"#;
        let cfg = VolumeConfig::decode("volume.cfg", old.as_bytes()).expect("decodes");
        assert_eq!(cfg.compression().ok(), Some(Compression::Gzip));
        let newest = r#"{"Name":"b","VolumeName":"v","SnapshotName":"s","SnapshotCreatedAt":"t","CreatedTime":"t2","Size":"0","Labels":null,"Parameters":{"backup-block-size":"16Mi","backup-mode":"full"},"IsIncremental":false,"CompressionMethod":"none","NewlyUploadedDataSize":"0","ReUploadedDataSize":"0","Blocks":null,"SingleFile":{"FilePath":""},"VolumeSize":"20971520"}"#;
        let cfg = BackupConfig::decode("b.cfg", newest.as_bytes()).expect("decodes");
        assert_eq!(cfg.block_size().ok(), Some(16 << 20));
        assert_eq!(
            cfg.extra.get("VolumeSize"),
            Some(&Value::String("20971520".into()))
        );
        assert!(cfg.blocks.is_empty());
    }

    #[test]
    fn damaged_cfgs_are_refused_with_the_path() {
        let truncated = &BACKUP_CFG.as_bytes()[..100];
        let err = BackupConfig::decode("x/backup_b.cfg", truncated).expect_err("truncated");
        assert!(
            err.to_string().contains("x/backup_b.cfg") && err.to_string().contains("truncated")
        );
        assert!(BackupConfig::decode("p", b"not json").is_err());
        let traversal = BACKUP_CFG.replace(
            "09b2fffa8977c6d13004f25c5dd7c1517017fb251466bd72f6154b54e8eae8be",
            "../../../../etc/passwd",
        );
        assert!(BackupConfig::decode("p", traversal.as_bytes()).is_err());
        let unaligned = BACKUP_CFG.replace("\"Offset\":2097152", "\"Offset\":4096");
        assert!(BackupConfig::decode("p", unaligned.as_bytes()).is_err());
        let bad_method = VOLUME_CFG.replace("\\\"lz4\\\"", "\\\"zstd\\\"");
        assert!(VolumeConfig::decode("p", bad_method.as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = VolumeConfig::decode("p", &bytes);
            let _ = BackupConfig::decode("p", &bytes);
        }

        #[test]
        fn backup_cfgs_round_trip(offsets in proptest::collection::btree_set(0u64..10_000, 0..50), size in any::<u64>()) {
            let mut cfg = BackupConfig::in_progress("backup-1", "v1", "s1", "t");
            cfg.size = size;
            cfg.blocks = offsets.iter().map(|o| BlockEntry { offset: o * DEFAULT_BLOCK_SIZE, checksum: crate::layout::block_checksum(&o.to_le_bytes()) }).collect();
            let back = BackupConfig::decode("p", &cfg.encode()).expect("decodes");
            prop_assert_eq!(back, cfg);
        }
    }
}
