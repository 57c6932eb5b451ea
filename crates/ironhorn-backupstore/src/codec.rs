//! Block file contents: gzip (Longhorn's default), an LZ4 frame, or raw bytes; and the
//! checked decode that restores rely on (bounded output, checksum of the result).

use std::io::{Read, Write};

use crate::error::{BackupStoreError, Result};
use crate::layout::block_checksum;

/// How the blocks of a backup volume are compressed (one method per backup volume).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    None,
    #[default]
    Gzip,
    Lz4,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
        }
    }

    pub fn parse(s: &str) -> Result<Compression> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "lz4" => Ok(Compression::Lz4),
            other => Err(BackupStoreError::Invalid(format!(
                "compression method {other:?}: use gzip, lz4 or none"
            ))),
        }
    }

    /// The method a cfg names; absent or empty means gzip (before Longhorn 1.5).
    pub fn from_cfg(value: Option<&str>) -> Result<Compression> {
        match value {
            None | Some("") => Ok(Compression::Gzip),
            Some(s) => Compression::parse(s),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = BackupStoreError;
    fn from_str(s: &str) -> Result<Self> {
        Compression::parse(s)
    }
}

/// gzip level: 1 keeps a full backup compressor-bound on the fast side; any level reads
/// back the same, in Longhorn too.
const GZIP_LEVEL: u32 = 1;

/// The bytes of a block file for `data`.
pub fn compress(method: Compression, data: &[u8]) -> Vec<u8> {
    match method {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::new(GZIP_LEVEL),
            );
            // Writing into a Vec cannot fail.
            let _ = enc.write_all(data);
            enc.finish().unwrap_or_default()
        }
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(data.len() / 2));
            let _ = enc.write_all(data);
            enc.finish().unwrap_or_default()
        }
    }
}

/// Decodes a block file into `block_size` bytes and checks it against its name.
/// Refuses output longer than a block (a decompression bomb) or a checksum that differs.
pub fn decode_block(
    method: Compression,
    stored: &[u8],
    block_size: u64,
    checksum: &str,
    offset: u64,
) -> Result<Vec<u8>> {
    let bad = |reason: String| BackupStoreError::BadBlock {
        checksum: checksum.to_string(),
        offset,
        reason,
    };
    let limit = block_size + 1;
    let mut out = Vec::with_capacity(usize::try_from(block_size).unwrap_or(0));
    let read = match method {
        Compression::None => {
            out.extend_from_slice(stored);
            Ok(stored.len())
        }
        Compression::Gzip => flate2::read::MultiGzDecoder::new(stored)
            .take(limit)
            .read_to_end(&mut out),
        Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(stored)
            .take(limit)
            .read_to_end(&mut out),
    };
    read.map_err(|e| bad(format!("{} data does not decode: {e}", method.as_str())))?;
    if out.len() as u64 != block_size {
        return Err(bad(format!(
            "decodes to {} bytes, not the block size {block_size}",
            out.len()
        )));
    }
    let actual = block_checksum(&out);
    if actual != checksum {
        return Err(bad(format!("its content has checksum {actual}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BS: u64 = 64 << 10;

    fn sample() -> Vec<u8> {
        (0..BS)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn every_method_round_trips_and_checks() {
        let data = sample();
        let sum = block_checksum(&data);
        for m in [Compression::None, Compression::Gzip, Compression::Lz4] {
            let stored = compress(m, &data);
            let back = decode_block(m, &stored, BS, &sum, 0).expect("decodes");
            assert_eq!(back, data, "{m:?}");
            let wrong = block_checksum(b"other");
            let err = decode_block(m, &stored, BS, &wrong, 4096).expect_err("mismatch");
            assert!(err.to_string().contains(&wrong) && err.to_string().contains("4096"));
        }
        assert_eq!(
            &compress(Compression::Lz4, &data)[..4],
            &[0x04, 0x22, 0x4d, 0x18]
        );
    }

    #[test]
    fn oversized_or_short_output_is_refused() {
        let big = vec![0u8; (BS * 2) as usize];
        let sum = block_checksum(&big);
        let stored = compress(Compression::Gzip, &big);
        assert!(decode_block(Compression::Gzip, &stored, BS, &sum, 0).is_err());
        assert!(decode_block(Compression::None, &big[..10], BS, &sum, 0).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            for m in [Compression::None, Compression::Gzip, Compression::Lz4] {
                let _ = decode_block(m, &bytes, 4096, &"0".repeat(64), 0);
            }
        }
    }
}
