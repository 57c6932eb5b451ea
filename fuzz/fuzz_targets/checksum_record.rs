//! Snapshot `.checksum` decoding never panics.
#![no_main]
use ironhorn_format::meta::ChecksumRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = ChecksumRecord::decode("x.img.checksum", data) {
        let again = ChecksumRecord::decode("c", &record.encode()).expect("re-decode");
        assert_eq!(again.encode(), record.encode());
    }
});
