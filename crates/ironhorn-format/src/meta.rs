//! Codecs for the JSON metadata files of a replica directory: `volume.meta`, the per-layer
//! `*.img.meta` and the snapshot `*.img.checksum` records.
//!
//! Decoding is as lenient as Go's `encoding/json`: missing keys and `null` take the zero
//! value, unknown keys are kept (and written back) so a newer Longhorn's fields survive a
//! rewrite. Encoding matches Go's `json.Encoder` (field order as Longhorn declares it, then a
//! newline).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::FormatError;

/// Keys Longhorn does not know (or that a newer version added) are kept here verbatim.
pub type ExtraFields = Map<String, Value>;

/// `volume.meta`: replica-level information.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeMeta {
    #[serde(default, deserialize_with = "null_as_default")]
    pub size: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub head: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub dirty: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rebuilding: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub error: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub parent: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sector_size: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub backing_file_path: String,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// A layer's `*.img.meta` ("disk meta"). `name` is unreliable (Longhorn writes the old head
/// name under a snapshot); the layer's name always comes from the file name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DiskMeta {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub parent: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub removed: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_created: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub created: String,
    /// `None` is written as `null`, as Go does for an empty label map.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// A snapshot's `*.img.checksum` record (Longhorn 1.4+ snapshot hashing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChecksumRecord {
    #[serde(default, deserialize_with = "null_as_default")]
    pub method: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub checksum: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub change_time: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_hashed_at: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub silently_corrupted: bool,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn decode_json<T: for<'de> Deserialize<'de>>(file: &str, bytes: &[u8]) -> Result<T, FormatError> {
    let trimmed = trim_ascii_whitespace(bytes);
    if trimmed.is_empty() {
        return Err(FormatError::BadJson {
            file: file.to_string(),
            reason: "the file is empty".to_string(),
        });
    }
    serde_json::from_slice(trimmed).map_err(|e| FormatError::BadJson {
        file: file.to_string(),
        reason: e.to_string(),
    })
}

fn trim_ascii_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: every key is a string, no custom Serialize.
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    out
}

impl VolumeMeta {
    pub fn decode(file: &str, bytes: &[u8]) -> Result<Self, FormatError> {
        decode_json(file, bytes)
    }
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

impl DiskMeta {
    pub fn decode(file: &str, bytes: &[u8]) -> Result<Self, FormatError> {
        decode_json(file, bytes)
    }
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
    /// Labels as a map, `null` read as empty.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.labels.clone().unwrap_or_default()
    }
}

impl ChecksumRecord {
    pub fn decode(file: &str, bytes: &[u8]) -> Result<Self, FormatError> {
        decode_json(file, bytes)
    }
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V126: &str = r#"{"Size":16777216,"Head":"volume-head-004.img","Dirty":false,"Rebuilding":false,"Error":"","Parent":"volume-snap-snap3.img","SectorSize":512,"BackingFilePath":""}"#;

    #[test]
    fn volume_meta_round_trips_byte_for_byte() {
        let meta = VolumeMeta::decode("volume.meta", format!("{V126}\n").as_bytes()).unwrap();
        assert_eq!(meta.size, 16777216);
        assert_eq!(meta.head, "volume-head-004.img");
        assert_eq!(meta.encode(), format!("{V126}\n").into_bytes());
    }

    #[test]
    fn unknown_fields_survive_a_rewrite() {
        let text = r#"{"Size":4096,"Head":"volume-head-000.img","Dirty":true,"Rebuilding":false,"Error":"","Parent":"","SectorSize":512,"BackingFilePath":"","Encrypted":false}"#;
        let meta = VolumeMeta::decode("volume.meta", text.as_bytes()).unwrap();
        assert_eq!(meta.extra.get("Encrypted"), Some(&Value::Bool(false)));
        assert_eq!(meta.encode(), format!("{text}\n").into_bytes());
    }

    #[test]
    fn minimal_restore_meta_decodes_with_zero_values() {
        let meta = DiskMeta::decode("volume-snap-x.img.meta", br#"{"Parent":""}"#).unwrap();
        assert_eq!(meta, DiskMeta::default());
        assert_eq!(meta.labels(), BTreeMap::new());
    }

    #[test]
    fn null_values_read_as_zero() {
        let meta =
            DiskMeta::decode("a.meta", br#"{"Name":null,"Parent":null,"Labels":null}"#).unwrap();
        assert_eq!(meta.name, "");
        assert_eq!(meta.labels, None);
    }

    #[test]
    fn disk_meta_encodes_like_go() {
        let text = r#"{"Name":"volume-head-002.img","Parent":"volume-snap-s2.img","Removed":false,"UserCreated":false,"Created":"2026-11-27T12:30:00Z","Labels":{"replica-expansion":"8388608"}}"#;
        let meta = DiskMeta::decode("m", text.as_bytes()).unwrap();
        assert_eq!(meta.encode(), format!("{text}\n").into_bytes());
    }

    #[test]
    fn corrupt_and_truncated_json_is_a_clear_error() {
        for bad in [
            &b""[..],
            b"   \n",
            b"{\"Size\":1",
            b"\x00\x00",
            b"[1,2]",
            b"{\"Size\":-1}",
        ] {
            let err = VolumeMeta::decode("volume.meta", bad).unwrap_err();
            assert!(err.to_string().starts_with("volume.meta: "), "{err}");
        }
    }

    #[test]
    fn checksum_record_decodes_fixture_text() {
        let text = r#"{"method":"crc64","checksum":"2320223e49aac093","change_time":"2026-11-27 12:29:56.696771597 +0000 UTC","last_hashed_at":"2026-11-27T12:30:03Z","silently_corrupted":false}"#;
        let rec = ChecksumRecord::decode("c", text.as_bytes()).unwrap();
        assert_eq!(rec.checksum, "2320223e49aac093");
        assert_eq!(rec.encode(), format!("{text}\n").into_bytes());
    }
}
