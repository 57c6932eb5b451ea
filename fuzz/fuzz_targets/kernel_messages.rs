//! What the kernel hands the node agent: NBD netlink answers and ublk device info and I/O
//! descriptors. Decoding never panics; a decoded answer reads back the same way; a decoded
//! descriptor's length is whole sectors.
#![no_main]
use ironhorn_proto::nbd_netlink::{attributes, connected_index, decode, error, family_id};
use ironhorn_proto::ublk::{DevInfo, IoDesc, IO_DESC_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(answers) = decode(data) {
        let _ = (family_id(&answers), connected_index(&answers), error(&answers));
        assert_eq!(decode(data).ok(), Some(answers));
    }
    let _ = attributes(data);
    let info = DevInfo::decode(data);
    assert_eq!(DevInfo::decode(&info.encode()), info);
    if let Some(bytes) = data.get(..IO_DESC_LEN) {
        let mut desc = [0u8; IO_DESC_LEN];
        desc.copy_from_slice(bytes);
        assert_eq!(IoDesc::decode(&desc).len % 512, 0);
    }
});
