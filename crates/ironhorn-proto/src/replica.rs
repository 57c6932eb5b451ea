//! The replica protocol: how an engine talks to a replica server. Binary frames, little
//! endian, pipelined: every request carries an id, responses carry the same id and may come
//! back in any order; several connections per replica are fine.
//!
//! Frame = 32-byte header + payload:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `0x4948` ("IH") |
//! | 2 | 1 | protocol version (1) |
//! | 3 | 1 | kind: a request op, or `RESPONSE_OK` / `RESPONSE_ERR` |
//! | 4 | 8 | request id |
//! | 12 | 8 | offset (data ops) |
//! | 20 | 4 | length (READ, UNMAP: bytes; otherwise 0) |
//! | 24 | 4 | flags (WRITE: `FLAG_FUA`) |
//! | 28 | 4 | payload length |
//!
//! Data ops carry raw bytes (WRITE payload, READ response). Control ops carry JSON (see
//! [`Control`] and [`ControlReply`]); errors carry a JSON [`WireError`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const MAGIC: u16 = 0x4948;
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 32;
/// Largest payload either side accepts; a larger frame ends the connection.
pub const MAX_PAYLOAD: u32 = 64 << 20;
pub const FLAG_FUA: u32 = 1;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Unmap,
    Flush,
    /// A control operation: JSON [`Control`] payload.
    Control,
    Ping,
    /// Read a range of one layer file: payload = u16 LE name length + file name.
    ReadLayer,
    /// Write into one layer file (rebuild target): payload = u16 LE name length + name + data.
    WriteLayer,
    /// Make `[offset, offset+len)` read as zeros (no payload), allocating as little as it can.
    WriteZeroes,
    ResponseOk,
    ResponseErr,
}

impl Kind {
    pub fn to_wire(self) -> u8 {
        match self {
            Kind::Read => 1,
            Kind::Write => 2,
            Kind::Unmap => 3,
            Kind::Flush => 4,
            Kind::Control => 5,
            Kind::Ping => 6,
            Kind::ReadLayer => 7,
            Kind::WriteLayer => 8,
            Kind::WriteZeroes => 9,
            Kind::ResponseOk => 128,
            Kind::ResponseErr => 129,
        }
    }

    fn from_wire(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Read,
            2 => Kind::Write,
            3 => Kind::Unmap,
            4 => Kind::Flush,
            5 => Kind::Control,
            6 => Kind::Ping,
            7 => Kind::ReadLayer,
            8 => Kind::WriteLayer,
            9 => Kind::WriteZeroes,
            128 => Kind::ResponseOk,
            129 => Kind::ResponseErr,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub id: u64,
    pub offset: u64,
    pub len: u32,
    pub flags: u32,
    pub payload_len: u32,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("bad magic {0:#06x}: not an ironhorn replica protocol peer")]
    BadMagic(u16),
    #[error("protocol version {0} is not supported (this side speaks version 1)")]
    BadVersion(u8),
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    #[error("payload of {0} bytes is larger than the limit of 64 MiB")]
    TooLarge(u32),
    #[error("bad control message: {0}")]
    BadControl(String),
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        b[2] = VERSION;
        b[3] = self.kind.to_wire();
        b[4..12].copy_from_slice(&self.id.to_le_bytes());
        b[12..20].copy_from_slice(&self.offset.to_le_bytes());
        b[20..24].copy_from_slice(&self.len.to_le_bytes());
        b[24..28].copy_from_slice(&self.flags.to_le_bytes());
        b[28..32].copy_from_slice(&self.payload_len.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let magic = u16::from_le_bytes([b[0], b[1]]);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if b[2] != VERSION {
            return Err(FrameError::BadVersion(b[2]));
        }
        let kind = Kind::from_wire(b[3]).ok_or(FrameError::BadKind(b[3]))?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let payload_len = u32_at(28);
        if payload_len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(payload_len));
        }
        Ok(Header {
            kind,
            id: u64_at(4),
            offset: u64_at(12),
            len: u32_at(20),
            flags: u32_at(24),
            payload_len,
        })
    }
}

/// Control operations (JSON payload of a `Control` frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    Info,
    Snapshot {
        name: String,
        user_created: bool,
        created: String,
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
    },
    Remove {
        name: String,
    },
    Purge,
    Revert {
        name: String,
    },
    Expand {
        size: u64,
    },
    SetRevision {
        revision: u64,
    },
    SetRebuilding {
        rebuilding: bool,
    },
    /// Every layer of the tree (snapshots and head).
    ListLayers,
    /// Allocated ranges of one layer file.
    LayerExtents {
        file: String,
    },
    /// CRC-64 of one snapshot file (Longhorn's `.checksum` definition; cached there).
    LayerChecksum {
        file: String,
    },
    /// Rebuild target: lay out these snapshot files (empty unless `keep`) and start a new
    /// head on `head_parent`; the replica is marked rebuilding.
    PrepareRebuild {
        head_parent: String,
        layers: Vec<LayerInfo>,
    },
    /// Rebuild target: the layers are complete; take this revision and clear rebuilding.
    FinishRebuild {
        revision: u64,
    },
    /// The recent-writes ring: the ranges of the replica's last writes and unmaps.
    RecentWrites,
    /// The engine stopped cleanly: clear the recent-writes ring (see `RecentWrites`).
    ForgetRecentWrites,
    /// The engine opening the replica holds attachment `generation`: from now on the
    /// replica refuses every request from a connection of an older generation (the engine
    /// of an attachment that has been superseded), and so does it after a restart. Refused
    /// with `fenced` when a newer generation has claimed it already. A connection that never
    /// claims is served only while no generation has.
    Claim {
        generation: u64,
    },
}

/// One layer of a replica's tree, as rebuild transfers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LayerInfo {
    /// Image file name (`volume-snap-x.img`, `volume-head-003.img`).
    pub file: String,
    /// Parent image file name, empty for the oldest.
    pub parent: String,
    pub removed: bool,
    pub user_created: bool,
    pub created: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Apparent file length.
    pub len: u64,
    /// Allocated bytes.
    pub allocated: u64,
    pub is_head: bool,
    /// PrepareRebuild: the target already holds this file with the same checksum.
    #[serde(default)]
    pub keep: bool,
}

/// Encodes a layer-addressed payload: u16 LE name length, name, then `data`.
pub fn encode_layer_payload(file: &str, data: &[u8]) -> Vec<u8> {
    let mut out = layer_payload_prefix(file);
    out.extend_from_slice(data);
    out
}

/// The part of a layer-addressed payload before its data: a sender can write it and the
/// data from separate buffers.
pub fn layer_payload_prefix(file: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + file.len());
    out.extend_from_slice(&(file.len() as u16).to_le_bytes());
    out.extend_from_slice(file.as_bytes());
    out
}

/// Splits a layer-addressed payload into the file name and the data after it.
pub fn decode_layer_payload(payload: &[u8]) -> Result<(&str, &[u8]), FrameError> {
    let len = payload
        .get(..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| FrameError::BadControl("layer payload without a name".into()))?;
    let name = payload
        .get(2..2 + len)
        .ok_or_else(|| FrameError::BadControl("layer name longer than the payload".into()))?;
    let name = std::str::from_utf8(name)
        .map_err(|_| FrameError::BadControl("layer name is not UTF-8".into()))?;
    Ok((name, &payload[2 + len..]))
}

/// What a replica reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReplicaInfo {
    pub size: u64,
    pub revision: u64,
    pub dirty: bool,
    pub rebuilding: bool,
    pub head: String,
    /// Live chain, oldest first, display names (`volume-head` last).
    pub chain: Vec<String>,
}

/// The JSON payload of a successful control response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControlReply {
    Done,
    Info(ReplicaInfo),
    Layers {
        layers: Vec<LayerInfo>,
    },
    Extents {
        extents: Vec<(u64, u64)>,
    },
    Checksum {
        checksum: String,
    },
    /// (revision, offset, length) of recent writes and unmaps, newest first.
    RecentWrites {
        writes: Vec<(u64, u64, u64)>,
    },
}

/// An error as it travels: a machine-readable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    OutOfRange,
    ReadOnly,
    NoSpace,
    Io,
    Invalid,
    NotFound,
    Conflict,
    /// A newer attachment of the volume has claimed the replica: this engine must stop.
    Fenced,
}

pub fn decode_control(payload: &[u8]) -> Result<Control, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::BadControl(e.to_string()))
}

pub fn decode_control_reply(payload: &[u8]) -> Result<ControlReply, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::BadControl(e.to_string()))
}

pub fn decode_error(payload: &[u8]) -> WireError {
    serde_json::from_slice(payload).unwrap_or_else(|_| WireError {
        code: ErrorCode::Io,
        message: String::from_utf8_lossy(payload).into_owned(),
    })
}

pub fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_round_trip() {
        let c = Control::Snapshot {
            name: "s1".into(),
            user_created: true,
            created: "2026-11-27T00:00:00Z".into(),
            labels: Default::default(),
        };
        assert_eq!(decode_control(&encode_json(&c)).unwrap(), c);
        assert!(decode_control(b"\xff").is_err());
    }

    proptest! {
        #[test]
        fn header_round_trip(kind in 0usize..11, id: u64, offset: u64, len: u32, flags: u32, payload_len in 0u32..=MAX_PAYLOAD) {
            let kinds = [Kind::Read, Kind::Write, Kind::Unmap, Kind::Flush, Kind::Control, Kind::Ping, Kind::ResponseOk, Kind::ResponseErr, Kind::ReadLayer, Kind::WriteLayer, Kind::WriteZeroes];
            let h = Header { kind: kinds[kind], id, offset, len, flags, payload_len };
            prop_assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        }

        #[test]
        fn decoders_never_panic(bytes: Vec<u8>) {
            let mut h = [0u8; HEADER_LEN];
            let n = bytes.len().min(HEADER_LEN);
            h[..n].copy_from_slice(&bytes[..n]);
            let _ = Header::decode(&h);
            let _ = decode_control(&bytes);
            let _ = decode_control_reply(&bytes);
            let _ = decode_error(&bytes);
            let _ = decode_layer_payload(&bytes);
        }
    }
}
