//! A whole directory's metadata, fuzzed: the input is `volume.meta`, then records
//! `<file name>\t<meta json>` separated by blank lines. Chain analysis and purge planning
//! must never panic, whatever the metadata says (cycles, missing parents, strays, ...).
#![no_main]
use ironhorn_format::chain::{analyze, DirFacts, ImageFacts};
use ironhorn_format::meta::{DiskMeta, VolumeMeta};
use ironhorn_format::purge::plan_purge;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.split("\n\n");
    let Some(first) = parts.next() else { return };
    let Ok(volume_meta) = VolumeMeta::decode("volume.meta", first.as_bytes()) else { return };
    let mut facts = DirFacts { volume_meta, ..DirFacts::default() };
    for (i, part) in parts.enumerate() {
        let Some((name, json)) = part.split_once('\t') else {
            facts.other_files.insert(part.to_string());
            continue;
        };
        if let Some(image) = name.strip_prefix('!') {
            // An image without metadata; the byte after '!' picks a shared inode.
            facts.images.insert(image.to_string(), ImageFacts { inode: json.len() as u64 % 4, len: 4096, allocated: 0 });
            continue;
        }
        if let Ok(meta) = DiskMeta::decode(name, json.as_bytes()) {
            facts.metas.insert(name.to_string(), meta);
            facts.images.insert(name.to_string(), ImageFacts { inode: 100 + i as u64, len: 4096, allocated: 0 });
        }
    }
    if let Ok(layout) = analyze(&facts) {
        assert_eq!(layout.chain.last().map(String::as_str), Some(layout.head()));
        let _ = plan_purge(&layout);
    }
});
