//! Replica protocol frames: header decoding and the JSON control payloads never panic, and a
//! decoded header re-encodes to the bytes it came from.
#![no_main]
use ironhorn_proto::replica::{decode_control, decode_control_reply, decode_error, Header, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = data.get(..HEADER_LEN) {
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(bytes);
        if let Ok(header) = Header::decode(&raw) {
            assert_eq!(header.encode(), raw);
        }
    }
    let _ = decode_control(data);
    let _ = decode_control_reply(data);
    let _ = decode_error(data);
});
