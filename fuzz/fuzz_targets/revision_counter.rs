//! `revision.counter` decoding never panics; a decoded value re-encodes to itself.
#![no_main]
use ironhorn_format::revision::{decode_revision, encode_revision};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = decode_revision("revision.counter", data) {
        assert_eq!(decode_revision("r", &encode_revision(value)), Ok(value));
    }
});
