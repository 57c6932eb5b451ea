//! Interoperability both ways with Longhorn engine v1.5.3:
//! - a directory Longhorn's own code wrote (tests/data, see its README) reads here exactly as
//!   Longhorn read it, and survives our purge;
//! - a directory this store wrote reads here as Longhorn's reader read it (the hashes were
//!   computed by Longhorn's `pkg/replica` on the output of `write_interop_scenario`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ironhorn_replica::{Replica, ReplicaOptions};

const VIEWS: [(&str, &str); 5] = [
    (
        "volume-head",
        "aab06e9ad54bca9de28f9c38389312c79ab8a6d6c775bd82d528858695940cec",
    ),
    (
        "a",
        "b39e9f50771de2c5d968ecaba2c1e9bcb88fba2a83ff0c1ad29d397422b1977e",
    ),
    (
        "b",
        "02c3ec5dc78713e8778dfce672718b3e870a1fc7f86bc906a749d6b19eab32fd",
    ),
    (
        "c",
        "98aec0a0bb8c94e44e955a0bab4b327639fd842e582793361456e76563e29594",
    ),
    (
        "expand-25165824",
        "3d7579398c88301c857088eb18d8c74c09e0391daea112ceaef103535a7b603f",
    ),
];
const SIZE: u64 = 24 << 20;

fn extract() -> (tempfile::TempDir, PathBuf) {
    let tmp = extract_archive(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/longhorn-v1.5.3-scenario.tar.gz"),
    );
    let dir = tmp.path().join("pvc-lhscenario-0a1b2c3d");
    (tmp, dir)
}

#[test]
fn longhorn_written_views_read_as_longhorn_reads_them() {
    let (_tmp, dir) = extract();
    for (view, hash) in VIEWS {
        assert_eq!(view_hash(&dir, Some(view), SIZE), hash, "view {view}");
    }
    let replica = Replica::open(&dir, &ReplicaOptions::read_only()).unwrap();
    assert_eq!(replica.revision(), 22);
    let owners: Vec<String> = replica
        .allocation_runs(0, SIZE)
        .into_iter()
        .filter_map(|(off, len, layer)| {
            let name = ironhorn_format::names::display_name(layer?);
            let name = if name == "volume-head" {
                "head".to_string()
            } else {
                name
            };
            let (first, last) = (off / 4096, (off + len) / 4096 - 1);
            Some(if first == last {
                format!("{first}:{name}")
            } else {
                format!("{first}-{last}:{name}")
            })
        })
        .collect();
    assert_eq!(
        owners.join(" "),
        "0:head 1:a 3:a 256:a 1280-1283:a 2048:head 4095:a 4096:head 6143:head"
    );
}

#[test]
fn our_purge_of_a_longhorn_tree_keeps_every_view() {
    let (tmp, original) = extract();
    let dir = tmp.path().join("copy").join("pvc-lhscenario-0a1b2c3d");
    copy_replica_dir(&original, &dir);
    let mut replica = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
    let report = replica.purge().unwrap();
    assert_eq!(report.steps.len(), 3, "{:?}", report.steps);
    replica.close().unwrap();
    for (view, hash) in VIEWS {
        if view == "b" || view == "expand-25165824" {
            assert!(
                !dir.join(format!("volume-snap-{view}.img")).exists(),
                "{view} not purged"
            );
            continue;
        }
        assert_eq!(view_hash(&dir, Some(view), SIZE), hash, "view {view}");
    }
}

#[test]
fn what_we_write_reads_as_longhorn_read_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pvc-ours-11223344");
    write_interop_scenario(&dir).unwrap();
    for (view, hash) in INTEROP_SCENARIO_HASHES {
        assert_eq!(view_hash(&dir, Some(view), SIZE), hash, "view {view}");
    }
}

#[test]
fn streaming_a_view_in_parallel_yields_it_in_order() {
    use ironhorn_replica::{Chunk, StreamError, StreamOptions};
    let (_tmp, dir) = extract();
    for view in ["volume-head", "c"] {
        let replica = Replica::open(&dir, &ReplicaOptions::snapshot(view)).unwrap();
        let options = StreamOptions {
            chunk_size: 4096,
            readers: 3,
            window: 5,
        };
        let mut streamed = Vec::new();
        let mut data_chunks = 0;
        replica
            .stream(options, |offset, chunk| -> Result<(), String> {
                assert_eq!(offset, streamed.len() as u64, "out of order");
                match chunk {
                    Chunk::Data(bytes) => {
                        data_chunks += 1;
                        streamed.extend_from_slice(bytes)
                    }
                    Chunk::Hole(len) => streamed.resize(streamed.len() + len as usize, 0),
                }
                Ok(())
            })
            .unwrap();
        assert!(data_chunks > 5);
        assert_eq!(
            sha256_hex(&streamed),
            VIEWS.iter().find(|v| v.0 == view).unwrap().1
        );
        // A failing visitor stops the stream and its error comes back.
        let mut calls = 0;
        let err = replica
            .stream(options, |_, _| {
                calls += 1;
                if calls == 3 {
                    Err("disk full")
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(matches!(err, StreamError::Visit("disk full")));
        assert_eq!(calls, 3);
    }
}
