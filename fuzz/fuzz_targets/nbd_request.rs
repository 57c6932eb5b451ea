//! NBD transmission request headers: decoding never panics, and a decoded header carries
//! exactly the fields that were on the wire.
#![no_main]
use ironhorn_proto::nbd::{decode_request, REQUEST_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = data.get(..REQUEST_HEADER_LEN) else { return };
    let mut header = [0u8; REQUEST_HEADER_LEN];
    header.copy_from_slice(bytes);
    if let Ok(request) = decode_request(&header) {
        assert_eq!(request.cookie.to_be_bytes(), header[8..16]);
        assert_eq!(request.offset.to_be_bytes(), header[16..24]);
    }
});
