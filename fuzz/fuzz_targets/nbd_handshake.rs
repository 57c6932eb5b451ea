//! NBD handshake decoders (option header, INFO/GO data, export names) never panic.
#![no_main]
use ironhorn_proto::nbd::{decode_info_request, decode_name, decode_option_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(header) = data.get(..16) {
        let mut h = [0u8; 16];
        h.copy_from_slice(header);
        let _ = decode_option_header(&h);
    }
    if let Ok(request) = decode_info_request(data) {
        assert!(request.name.len() <= data.len());
    }
    let _ = decode_name(data);
});
