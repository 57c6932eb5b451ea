//! Layer `*.img.meta` decoding never panics, and what decodes re-encodes to the same value.
#![no_main]
use ironhorn_format::meta::DiskMeta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = DiskMeta::decode("volume-head-000.img.meta", data) {
        let again = DiskMeta::decode("m", &meta.encode()).expect("re-decode");
        assert_eq!(again.encode(), meta.encode());
    }
});
