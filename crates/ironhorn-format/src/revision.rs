//! The `revision.counter` file: 4096 bytes, the count in ASCII decimal at offset 0, NUL padded.

use crate::FormatError;

/// Size of the revision counter file and of every write to it.
pub const REVISION_FILE_SIZE: usize = 4096;

pub fn decode_revision(file: &str, bytes: &[u8]) -> Result<u64, FormatError> {
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| *b != 0)
        .collect::<Vec<u8>>();
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<u64>().map_err(|_| FormatError::BadValue {
        file: file.to_string(),
        reason: format!("revision counter {text:?} is not a decimal number"),
    })
}

pub fn encode_revision(value: u64) -> [u8; REVISION_FILE_SIZE] {
    let mut block = [0u8; REVISION_FILE_SIZE];
    let text = value.to_string();
    block[..text.len()].copy_from_slice(text.as_bytes());
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixture_value_decodes() {
        let mut block = [0u8; 4096];
        block[..2].copy_from_slice(b"14");
        assert_eq!(decode_revision("r", &block).unwrap(), 14);
        assert_eq!(decode_revision("r", &[]).unwrap(), 0);
        assert!(decode_revision("r", b"12x").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(value: u64) {
            prop_assert_eq!(decode_revision("r", &encode_revision(value)).unwrap(), value);
        }
        #[test]
        fn never_panics(bytes: Vec<u8>) {
            let _ = decode_revision("r", &bytes);
        }
    }
}
