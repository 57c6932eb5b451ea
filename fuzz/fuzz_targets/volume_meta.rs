//! `volume.meta` decoding never panics, and what decodes re-encodes to the same value.
#![no_main]
use ironhorn_format::meta::VolumeMeta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = VolumeMeta::decode("volume.meta", data) {
        let again = VolumeMeta::decode("volume.meta", &meta.encode()).expect("re-decode");
        assert_eq!(again.encode(), meta.encode());
    }
});
