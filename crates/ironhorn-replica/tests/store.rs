//! The replica store's files, flags and limits, as the Longhorn format spec lays them out.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use ironhorn_format::meta::{DiskMeta, VolumeMeta};
use ironhorn_replica::{Replica, ReplicaError, ReplicaOptions, SnapshotSpec};

const MIB: u64 = 1 << 20;

fn volume_meta(dir: &Path) -> VolumeMeta {
    VolumeMeta::decode(
        "volume.meta",
        &std::fs::read(dir.join("volume.meta")).unwrap(),
    )
    .unwrap()
}

fn disk_meta(dir: &Path, file: &str) -> DiskMeta {
    DiskMeta::decode(file, &std::fs::read(dir.join(file)).unwrap()).unwrap()
}

fn revision_file(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("revision.counter")).unwrap()
}

#[test]
fn create_lays_out_the_files_longhorn_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-deadbeef");
    let replica = Replica::create(&dir, 4 * MIB).unwrap();
    let vm = volume_meta(&dir);
    assert_eq!(vm.size, 4 * MIB);
    assert_eq!(vm.head, "volume-head-000.img");
    assert!(vm.dirty, "an open replica is dirty");
    assert_eq!(vm.sector_size, 512);
    let head = disk_meta(&dir, "volume-head-000.img.meta");
    assert_eq!(head.parent, "");
    assert!(!head.user_created);
    assert_eq!(head.created.len(), "2026-11-27T12:29:56Z".len());
    assert_eq!(
        std::fs::metadata(dir.join("volume-head-000.img"))
            .unwrap()
            .len(),
        4 * MIB
    );
    let counter = revision_file(&dir);
    assert_eq!(counter.len(), 4096);
    assert_eq!(counter[0], b'0');
    assert!(counter[1..].iter().all(|b| *b == 0));
    assert_eq!(replica.map_memory_bytes(), (4 * MIB / 4096) as usize);
    replica.close().unwrap();
    assert!(!volume_meta(&dir).dirty, "a clean close clears Dirty");
    assert!(matches!(
        Replica::create(&dir, 4 * MIB),
        Err(ReplicaError::AlreadyExists(_))
    ));
}

#[test]
fn revision_counter_counts_write_and_unmap_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-00000001");
    let mut replica = Replica::create(&dir, MIB).unwrap();
    replica.write_at(&[1; 20], 5).unwrap();
    replica.write_at(&[2; 8192], 4096).unwrap();
    replica.unmap(0, 4096).unwrap();
    replica.write_at(&[3; 100], 9000).unwrap();
    assert_eq!(replica.revision(), 4);
    replica.flush().unwrap();
    assert_eq!(&revision_file(&dir)[..2], b"4\0");
    replica.close().unwrap();
    let reopened = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
    assert_eq!(reopened.revision(), 4);
}

/// The counter file is written at flush, not per write; a replica killed between flushes
/// still opens with the revision of its last write (kept by the recent-writes ring), and a
/// revision set lower than the ring's newest entry is what the next open reads.
#[test]
fn the_revision_survives_a_kill_between_flushes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-00000009");
    let mut replica = Replica::create(&dir, MIB).unwrap();
    replica.write_at(&[1; 4096], 0).unwrap();
    replica.flush().unwrap();
    replica.write_at(&[2; 4096], 4096).unwrap();
    replica.unmap(0, 4096).unwrap();
    assert_eq!(&revision_file(&dir)[..2], b"1\0", "written at flush only");
    drop(replica); // no close: as if the process was killed
    let mut reopened = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
    assert_eq!(reopened.revision(), 3);
    let read_only = Replica::open(
        &dir,
        &ReplicaOptions {
            read_only: true,
            ..ReplicaOptions::default()
        },
    )
    .unwrap();
    assert_eq!(read_only.revision(), 3);
    drop(read_only);

    reopened.set_revision(2).unwrap();
    drop(reopened);
    let again = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
    assert_eq!(again.revision(), 2);
}

/// A clean stop forgets the recent writes (nothing to reconcile at the next start) without
/// losing the revision, which the counter file then holds, even after a kill.
#[test]
fn forgetting_the_recent_writes_keeps_the_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-0000000a");
    let mut replica = Replica::create(&dir, MIB).unwrap();
    replica.write_at(&[1; 4096], 0).unwrap();
    replica.unmap(8192, 4096).unwrap();
    assert_eq!(replica.recent_writes().unwrap().len(), 2);
    replica.forget_recent_writes().unwrap();
    assert!(replica.recent_writes().unwrap().is_empty());
    assert_eq!(replica.revision(), 2);
    drop(replica); // no close: as if the process was killed
    let reopened = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
    assert_eq!(reopened.revision(), 2);
    assert!(reopened.recent_writes().unwrap().is_empty());
}

#[test]
fn an_unaligned_write_lands_as_whole_sectors_in_the_head() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-00000002");
    let mut replica = Replica::create(&dir, MIB).unwrap();
    replica.write_at(&[0; 20], 4096 + 100).unwrap();
    let ranges = common::data_ranges(&dir.join("volume-head-000.img"));
    assert_eq!(ranges, [(4096, 8192)]);
    let mut buf = vec![9u8; 5000];
    replica.read_at(&mut buf, 3000).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
}

#[test]
fn snapshot_metadata_matches_longhorn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-00000003");
    let mut replica = Replica::create(&dir, MIB).unwrap();
    replica.write_at(&[7; 4096], 0).unwrap();
    let spec = SnapshotSpec {
        name: "snap1".into(),
        user_created: true,
        created: "2026-11-27T12:29:56Z".into(),
        labels: BTreeMap::from([("app".to_string(), "db".to_string())]),
    };
    replica.snapshot(&spec).unwrap();
    assert!(matches!(
        replica.snapshot(&spec),
        Err(ReplicaError::SnapshotExists(_))
    ));
    let vm = volume_meta(&dir);
    assert_eq!(vm.head, "volume-head-001.img");
    assert_eq!(vm.parent, "volume-snap-snap1.img");
    let snap = disk_meta(&dir, "volume-snap-snap1.img.meta");
    // Longhorn writes the old head's name into the snapshot's meta.
    assert_eq!(snap.name, "volume-head-000.img");
    assert!(snap.user_created);
    assert_eq!(snap.created, "2026-11-27T12:29:56Z");
    assert_eq!(snap.labels().get("app").map(String::as_str), Some("db"));
    let head = disk_meta(&dir, "volume-head-001.img.meta");
    assert_eq!(head.parent, "volume-snap-snap1.img");
    assert_eq!(head.created, "2026-11-27T12:29:56Z");
    assert!(!dir.join("volume-head-000.img").exists());
    assert!(!dir.join("volume-head-000.img.meta").exists());
    assert_eq!(
        common::data_ranges(&dir.join("volume-snap-snap1.img")),
        [(0, 4096)]
    );

    replica
        .snapshot(&SnapshotSpec {
            name: "sys".into(),
            ..SnapshotSpec::default()
        })
        .unwrap();
    let sys = disk_meta(&dir, "volume-snap-sys.img.meta");
    assert!(!sys.user_created);
    assert_eq!(sys.labels, None);
    assert_eq!(volume_meta(&dir).head, "volume-head-002.img");
    for bad in ["", "a/b", "volume-head"] {
        let err = replica.snapshot(&SnapshotSpec::user(bad)).unwrap_err();
        assert!(err.to_string().contains("invalid snapshot name"), "{err}");
    }
}

#[test]
fn expand_refuses_shrinking_and_misaligned_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-00000004");
    let mut replica = Replica::create(&dir, MIB).unwrap();
    assert!(replica.expand(MIB / 2).is_err());
    assert!(replica.expand(MIB + 512).is_err());
    replica.expand(MIB).unwrap();
    assert_eq!(
        volume_meta(&dir).head,
        "volume-head-000.img",
        "equal size is a no-op"
    );
    replica.expand(2 * MIB).unwrap();
    let snap = disk_meta(&dir, "volume-snap-expand-2097152.img.meta");
    assert!(!snap.user_created);
    assert_eq!(
        snap.labels().get("replica-expansion").map(String::as_str),
        Some("2097152")
    );
    assert_eq!(volume_meta(&dir).size, 2 * MIB);
    assert_eq!(
        std::fs::metadata(dir.join("volume-head-001.img"))
            .unwrap()
            .len(),
        2 * MIB
    );
    assert_eq!(
        std::fs::metadata(dir.join("volume-snap-expand-2097152.img"))
            .unwrap()
            .len(),
        MIB
    );
    replica.write_at(&[5; 10], 2 * MIB - 10).unwrap();
    assert!(replica.write_at(&[5; 10], 2 * MIB - 5).is_err());
}

#[test]
fn flags_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-00000005");
    let mut replica = Replica::create(&dir, MIB).unwrap();
    replica.set_rebuilding(true).unwrap();
    assert!(volume_meta(&dir).rebuilding);
    replica.set_rebuilding(false).unwrap();
    assert!(!volume_meta(&dir).rebuilding);
    assert!(matches!(
        replica.mark_removed("nope"),
        Err(ReplicaError::UnknownSnapshot { .. })
    ));
    assert!(matches!(
        replica.revert("nope"),
        Err(ReplicaError::UnknownSnapshot { .. })
    ));
    replica.snapshot(&SnapshotSpec::user("a")).unwrap();
    replica.mark_removed("a").unwrap();
    assert!(replica
        .revert("a")
        .unwrap_err()
        .to_string()
        .contains("marked removed"));
    let mut buf = [0u8; 10];
    assert!(matches!(
        replica.read_at(&mut buf, MIB - 5),
        Err(ReplicaError::OutOfRange { .. })
    ));
    assert!(matches!(
        replica.read_at(&mut buf, u64::MAX - 2),
        Err(ReplicaError::OutOfRange { .. })
    ));
    drop(replica);
    assert!(
        volume_meta(&dir).dirty,
        "dropped without close: still dirty"
    );

    let view = Replica::open(&dir, &ReplicaOptions::read_only()).unwrap();
    assert!(view
        .warnings()
        .iter()
        .any(|w| w.to_string().starts_with("dirty")));
    let mut view = view;
    assert!(matches!(
        view.write_at(&[1], 0),
        Err(ReplicaError::ReadOnly)
    ));
    assert!(matches!(
        view.snapshot(&SnapshotSpec::user("x")),
        Err(ReplicaError::ReadOnly)
    ));
}

#[test]
fn the_chain_stops_at_longhorns_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-00000006");
    let mut replica = Replica::create(&dir, 64 * 1024).unwrap();
    let mut taken = 0;
    let err = loop {
        match replica.snapshot(&SnapshotSpec::user(&format!("s{taken}"))) {
            Ok(()) => taken += 1,
            Err(e) => break e,
        }
        assert!(taken <= 250, "no limit");
    };
    assert!(
        matches!(err, ReplicaError::TooManySnapshots { .. }),
        "{err}"
    );
    // Longhorn: a placeholder slot plus the live chain plus the new layer fit in 250.
    assert_eq!(replica.chain().len(), 249);
    assert_eq!(taken, 248);
    replica.close().unwrap();
    let reopened = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
    assert_eq!(reopened.chain().len(), 249);
}

fn set_backing(dir: &Path, backing: &Path) {
    let mut vm = volume_meta(dir);
    vm.backing_file_path = backing.display().to_string();
    std::fs::write(dir.join("volume.meta"), vm.encode()).unwrap();
}

#[test]
fn a_raw_backing_file_is_the_oldest_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("base.raw");
    std::fs::write(&backing, vec![9u8; 64 * 1024]).unwrap();
    let dir = tmp.path().join("vol-0000000b");
    Replica::create(&dir, MIB).unwrap().close().unwrap();
    set_backing(&dir, &backing);
    let mut replica = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
    replica.write_at(&[1u8; 4096], 4096).unwrap();
    replica.snapshot(&SnapshotSpec::user("s")).unwrap();
    let mut buf = vec![0u8; 3 * 4096];
    replica.read_at(&mut buf, 0).unwrap();
    assert!(buf[..4096].iter().all(|b| *b == 9));
    assert!(buf[4096..8192].iter().all(|b| *b == 1));
    assert!(buf[8192..].iter().all(|b| *b == 9));
    let mut tail = vec![7u8; 4096];
    replica.read_at(&mut tail, 512 * 1024).unwrap();
    assert!(tail.iter().all(|b| *b == 0), "past the backing file: zeros");
    replica.close().unwrap();
    let view = Replica::open(&dir, &ReplicaOptions::snapshot("s")).unwrap();
    let mut first = vec![0u8; 4096];
    view.read_at(&mut first, 0).unwrap();
    assert!(first.iter().all(|b| *b == 9));
}

#[test]
fn a_missing_or_qcow2_backing_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-0000000c");
    Replica::create(&dir, MIB).unwrap().close().unwrap();
    set_backing(&dir, &tmp.path().join("gone.raw"));
    let err = Replica::open(&dir, &ReplicaOptions::read_only())
        .unwrap_err()
        .to_string();
    assert!(err.contains("gone.raw"), "{err}");
    let qcow = tmp.path().join("base.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-f", "qcow2"])
        .arg(&qcow)
        .arg("1M")
        .output()
        .unwrap();
    assert!(made.status.success());
    set_backing(&dir, &qcow);
    let err = Replica::open(&dir, &ReplicaOptions::read_only())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("qcow2") && err.contains("qemu-img convert"),
        "{err}"
    );
}

fn head_allocated(replica: &Replica) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let head = replica.chain().last().unwrap().to_string();
    std::fs::metadata(replica.dir().join(head))
        .unwrap()
        .blocks()
        * 512
}

#[test]
fn write_zeroes_deallocates_and_covers_only_what_snapshots_show_through() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-0badcafe");
    let mut replica = Replica::create(&dir, 16 * MIB).unwrap();
    replica.write_at(&vec![7u8; 8 * MIB as usize], 0).unwrap();
    assert!(head_allocated(&replica) >= 8 * MIB);
    // Nothing below the head: zeroing only deallocates.
    replica.write_zeroes(0, 4 * MIB).unwrap();
    assert!(head_allocated(&replica) <= 4 * MIB + 64 * 1024);
    let mut buf = vec![1u8; 4 * MIB as usize];
    replica.read_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
    // A snapshot holds [4, 8) MiB: zeroing [4, 6) MiB must hide it with zeros in the head,
    // and an unaligned edge reads as zeros too.
    replica
        .snapshot(&SnapshotSpec {
            name: "s1".into(),
            ..SnapshotSpec::default()
        })
        .unwrap();
    replica.write_zeroes(4 * MIB + 100, 2 * MIB - 100).unwrap();
    let mut buf = vec![1u8; 2 * MIB as usize];
    replica.read_at(&mut buf, 4 * MIB).unwrap();
    assert!(buf[..100].iter().all(|b| *b == 7));
    assert!(buf[100..].iter().all(|b| *b == 0));
    replica.read_at(&mut buf, 6 * MIB).unwrap();
    assert!(buf.iter().all(|b| *b == 7));
    assert!(head_allocated(&replica) >= 2 * MIB);
}
