//! Decoding a backup block file (gzip, LZ4 frame or raw) never panics and never returns
//! anything but a block of the right size whose checksum is its name.
#![no_main]
use ironhorn_backupstore::codec::{decode_block, Compression};
use ironhorn_backupstore::layout::block_checksum;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stored)) = data.split_first() else {
        return;
    };
    let method = match selector % 3 {
        0 => Compression::None,
        1 => Compression::Gzip,
        _ => Compression::Lz4,
    };
    let block_size = 4096;
    let name = block_checksum(&[0u8; 4096]);
    if let Ok(block) = decode_block(method, stored, block_size, &name, 0) {
        assert_eq!(block.len() as u64, block_size);
        assert_eq!(block_checksum(&block), name);
    }
});
