//! The replica store against real replica directories written by Longhorn v1.5.3's engine:
//! every view hashes as the fixture's MANIFEST.md says, before and after a purge.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ironhorn_format::meta::DiskMeta;
use ironhorn_replica::{Replica, ReplicaOptions};

const MIB: u64 = 1 << 20;

// sha256 over the current volume size (8 MiB), from MANIFEST.md.
const S1_8M: &str = "9d3f9022bd29a7ba50423dc7a9dd4d540cd64ead9dd1276caab832a80a6a3c1b";
const S2_8M: &str = "7b327a30a61cff088db358d69ce8332e76de2cc48ac8e5308b3f5117c41e8f2e";
const EXPAND_8M: &str = "6f5965d4a24e99961b9ab2b4babf79695f464d57c4ad4b6263c97fa0100a2094";
const S3_8M: &str = "6e497ffb702955c6ca75e0a8de1a88f45fcd202551af967c6d36fde6fa0e9990";
const HEAD_8M: &str = "a3101d7d6ef2764a7686371fbe65df980cad5b0f60dfa8fe34ba542c81bda8c1";
const S3_PRUNED_8M: &str = "be356e7dde0e8029a973ff62ea6e8f96d43ce1e2459c273d1015e9ce4e6ff72b";
// sha256 over the size at the time (4 MiB).
const S1_4M: &str = "bbf9471dc2e39e0fa2a62cad81b387b81ecf3c34eb967ac72654703d09fd36fa";
const S2_4M: &str = "02faf7a6c4ffe972be5a7a7158cfba9af93571448d4cb90c2f57fb5787a0cb91";
const EXPAND_4M: &str = "f5d8e896bdea46e094512f81ff05a0eadd45e491106b77728204d2617569a2e1";

fn before_purge(root: &std::path::Path) -> std::path::PathBuf {
    root.join("replica-before-purge").join(FIXTURE_VOLUME)
}

fn after_purge(root: &std::path::Path) -> std::path::PathBuf {
    root.join("replica-after-purge").join(FIXTURE_VOLUME)
}

#[test]
fn every_view_before_purge_hashes_as_the_manifest_says() {
    let (_tmp, root) = extract_fixture();
    let dir = before_purge(&root);
    assert_eq!(view_hash(&dir, Some("s1"), 8 * MIB), S1_8M);
    assert_eq!(view_hash(&dir, Some("s2"), 8 * MIB), S2_8M);
    assert_eq!(view_hash(&dir, Some("expand-8388608"), 8 * MIB), EXPAND_8M);
    assert_eq!(view_hash(&dir, Some("s3"), 8 * MIB), S3_8M);
    assert_eq!(view_hash(&dir, None, 8 * MIB), HEAD_8M);
    assert_eq!(view_hash(&dir, Some("volume-head"), 8 * MIB), HEAD_8M);
    assert_eq!(view_hash(&dir, Some("s1"), 4 * MIB), S1_4M);
    assert_eq!(view_hash(&dir, Some("s2"), 4 * MIB), S2_4M);
    assert_eq!(view_hash(&dir, Some("expand-8388608"), 4 * MIB), EXPAND_4M);
}

#[test]
fn every_view_after_purge_hashes_as_the_manifest_says() {
    let (_tmp, root) = extract_fixture();
    let dir = after_purge(&root);
    assert_eq!(view_hash(&dir, Some("s1"), 8 * MIB), S1_8M);
    assert_eq!(view_hash(&dir, Some("s2"), 8 * MIB), S2_8M);
    assert_eq!(view_hash(&dir, Some("s3"), 8 * MIB), S3_PRUNED_8M);
    assert_eq!(view_hash(&dir, None, 8 * MIB), HEAD_8M);
}

fn sector_map_text(dir: &std::path::Path) -> String {
    let replica = Replica::open(dir, &ReplicaOptions::read_only()).unwrap();
    let mut parts = Vec::new();
    for (offset, len, layer) in replica.allocation_runs(0, replica.size()) {
        let Some(layer) = layer else { continue };
        let first = offset / 4096;
        let last = (offset + len) / 4096 - 1;
        let name = ironhorn_format::names::display_name(layer);
        let name = if name == "volume-head" {
            "head".to_string()
        } else {
            name
        };
        if first == last {
            parts.push(format!("{first}:{name}"));
        } else {
            parts.push(format!("{first}-{last}:{name}"));
        }
    }
    parts.join(" ")
}

#[test]
fn sector_map_matches_the_manifest() {
    let (_tmp, root) = extract_fixture();
    assert_eq!(
        sector_map_text(&before_purge(&root)),
        "0:s3 1:s2 256:s1 512-767:s2 768:expand-8388608 1023:s1 1536:head 1537:s3 1792:head"
    );
    assert_eq!(
        sector_map_text(&after_purge(&root)),
        "0:s3 1:s2 256:s1 512-767:s2 768:s3 1023:s1 1536:head 1537:s3 1792:head"
    );
}

#[test]
fn read_only_open_changes_nothing() {
    let (_tmp, root) = extract_fixture();
    let dir = before_purge(&root);
    let listing = |d: &std::path::Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(&dir);
    let _ = read_view(&dir, None, 8 * MIB);
    let _ = read_view(&dir, Some("s1"), 8 * MIB);
    assert_eq!(listing(&dir), before);
}

#[test]
fn our_purge_reproduces_longhorns_purge() {
    let (tmp, root) = extract_fixture();
    let dir = tmp.path().join("work").join(FIXTURE_VOLUME);
    copy_replica_dir(&before_purge(&root), &dir);

    let mut replica = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
    replica.mark_removed("s3").unwrap();
    replica.purge().unwrap();
    // Still open: the head view reads the same through the new chain.
    let mut head = vec![0u8; 8 * MIB as usize];
    replica.read_at(&mut head, 0).unwrap();
    assert_eq!(sha256_hex(&head), HEAD_8M);
    replica.close().unwrap();

    assert_eq!(view_hash(&dir, Some("s1"), 8 * MIB), S1_8M);
    assert_eq!(view_hash(&dir, Some("s2"), 8 * MIB), S2_8M);
    assert_eq!(view_hash(&dir, Some("s3"), 8 * MIB), S3_PRUNED_8M);
    assert_eq!(view_hash(&dir, None, 8 * MIB), HEAD_8M);
    assert!(!dir.join("volume-snap-expand-8388608.img").exists());
    assert!(!dir.join("volume-snap-expand-8388608.img.meta").exists());

    // Same files, same allocation, same metadata as Longhorn's own purge.
    let theirs = after_purge(&root);
    for image in [
        "volume-snap-s1.img",
        "volume-snap-s2.img",
        "volume-snap-s3.img",
        "volume-head-004.img",
    ] {
        assert_eq!(
            data_ranges(&dir.join(image)),
            data_ranges(&theirs.join(image)),
            "{image}"
        );
        assert_eq!(
            std::fs::metadata(dir.join(image)).unwrap().len(),
            std::fs::metadata(theirs.join(image)).unwrap().len()
        );
    }
    let meta = |d: &std::path::Path, f: &str| {
        DiskMeta::decode(f, &std::fs::read(d.join(f)).unwrap()).unwrap()
    };
    for file in [
        "volume-snap-s3.img.meta",
        "volume-snap-s2.img.meta",
        "volume-head-004.img.meta",
    ] {
        assert_eq!(meta(&dir, file), meta(&theirs, file), "{file}");
    }
    let vm = std::fs::read_to_string(dir.join("volume.meta")).unwrap();
    assert_eq!(
        vm,
        std::fs::read_to_string(theirs.join("volume.meta")).unwrap()
    );
}

#[test]
fn layout_shows_the_fixture_tree_and_warnings() {
    let (_tmp, root) = extract_fixture();
    let replica = Replica::open(&before_purge(&root), &ReplicaOptions::read_only()).unwrap();
    let layout = replica.layout();
    assert_eq!(
        layout.chain,
        [
            "volume-snap-s1.img",
            "volume-snap-s2.img",
            "volume-snap-expand-8388608.img",
            "volume-snap-s3.img",
            "volume-head-004.img"
        ]
    );
    assert_eq!(replica.revision(), 10);
    let s1 = layout.node("volume-snap-s1.img").unwrap();
    assert_eq!(
        s1.meta.labels().get("fixture/phase").map(String::as_str),
        Some("one")
    );
    assert_eq!(s1.image.allocated, 16384);
    // Extracted copies never match the recorded ctime: every checksum reads as stale.
    let stale = replica
        .warnings()
        .iter()
        .filter(|w| matches!(w, ironhorn_format::chain::Warning::StaleChecksum(_)))
        .count();
    assert_eq!(stale, 3);
}
