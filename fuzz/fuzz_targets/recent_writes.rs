//! The recent-writes ring decodes any bytes without panicking; every entry it returns is
//! in its own slot, and re-encoding it gives the bytes it came from.
#![no_main]
use ironhorn_format::recent::{decode_ring, ENTRY_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for entry in decode_ring(data) {
        let at = entry.slot_offset() as usize;
        assert_eq!(&data[at..at + ENTRY_LEN], &entry.encode());
    }
});
