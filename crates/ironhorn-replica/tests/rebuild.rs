//! A rebuild target built from a source replica with the rebuild operations reads the same.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ironhorn_replica::{Replica, SnapshotSpec};

#[test]
fn a_target_laid_out_and_filled_from_a_source_reads_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src-00000001");
    let dst_dir = tmp.path().join("dst-00000002");
    let mut src = Replica::create(&src_dir, 1 << 20).unwrap();
    src.write_at(&[1u8; 8192], 0).unwrap();
    src.snapshot(&SnapshotSpec::user("a")).unwrap();
    src.write_at(&[2u8; 4096], 4096).unwrap();
    src.write_at(&[0u8; 4096], 65536).unwrap();
    src.snapshot(&SnapshotSpec {
        name: "sys".into(),
        ..SnapshotSpec::default()
    })
    .unwrap();

    let mut dst = Replica::create(&dst_dir, 1 << 20).unwrap();
    let layers: Vec<_> = src
        .layer_infos()
        .into_iter()
        .filter(|l| !l.is_head)
        .collect();
    dst.prepare_rebuild("volume-snap-sys.img", &layers).unwrap();
    assert!(dst.layout().volume_meta.rebuilding);
    // Writes that arrive while rebuilding land in the new head.
    src.write_at(&[3u8; 4096], 8192).unwrap();
    dst.write_at(&[3u8; 4096], 8192).unwrap();
    for layer in &layers {
        for (start, end) in src.layer_extents(&layer.file).unwrap() {
            let mut buf = vec![0u8; (end - start) as usize];
            src.read_layer(&layer.file, &mut buf, start).unwrap();
            dst.write_layer(&layer.file, &buf, start).unwrap();
        }
    }
    dst.finish_rebuild(src.revision()).unwrap();
    assert!(!dst.layout().volume_meta.rebuilding);
    assert_eq!(dst.revision(), src.revision());
    for layer in &layers {
        assert_eq!(
            data_ranges(&src_dir.join(&layer.file)),
            data_ranges(&dst_dir.join(&layer.file)),
            "{}",
            layer.file
        );
        assert_eq!(
            src.layer_checksum(&layer.file).unwrap(),
            dst.layer_checksum(&layer.file).unwrap()
        );
    }
    src.close().unwrap();
    dst.close().unwrap();
    for view in ["volume-head", "a", "sys"] {
        assert_eq!(
            view_hash(&src_dir, Some(view), 1 << 20),
            view_hash(&dst_dir, Some(view), 1 << 20),
            "{view}"
        );
    }
}
