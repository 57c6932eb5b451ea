//! Model-based property test: random sequences of write, unmap, write-zeroes, snapshot, remove, purge,
//! revert, expand and reopen against a plain in-memory model of layered sectors. After
//! every step the head and every non-removed snapshot must read exactly as the model says.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::model::{Model, HEAD, SECTOR};
use ironhorn_replica::{Replica, ReplicaOptions, SnapshotSpec};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, len: u64, seed: u8 },
    Unmap { offset: u64, len: u64 },
    WriteZeroes { offset: u64, len: u64 },
    Read { offset: u64, len: u64 },
    Snapshot { user: bool },
    Remove { pick: usize },
    Purge,
    Revert { pick: usize },
    Expand { sectors: u64 },
    Reopen { clean: bool },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..40_000, 1u64..12_000, any::<u8>())
            .prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
        2 => (0u64..40_000, 0u64..20_000).prop_map(|(offset, len)| Op::Unmap { offset, len }),
        2 => (0u64..40_000, 0u64..20_000)
            .prop_map(|(offset, len)| Op::WriteZeroes { offset, len }),
        2 => (0u64..40_000, 1u64..12_000).prop_map(|(offset, len)| Op::Read { offset, len }),
        3 => any::<bool>().prop_map(|user| Op::Snapshot { user }),
        2 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        2 => Just(Op::Purge),
        1 => any::<usize>().prop_map(|pick| Op::Revert { pick }),
        1 => (1u64..4).prop_map(|sectors| Op::Expand { sectors }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

fn pattern(len: u64, seed: u8, offset: u64) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add(((offset + i) % 251) as u8) | 1)
        .collect()
}

fn real_view(dir: &Path, snapshot: Option<&str>, size: u64) -> Vec<u8> {
    let r = Replica::open(
        dir,
        &ReplicaOptions {
            read_only: true,
            snapshot: snapshot.map(str::to_string),
        },
    )
    .expect("read-only open");
    assert_eq!(r.size(), size);
    let mut buf = vec![0u8; size as usize];
    r.read_at(&mut buf, 0).expect("read view");
    buf
}

fn check(replica: &Replica, dir: &Path, model: &Model) -> Result<(), TestCaseError> {
    let mut head = vec![0u8; model.size as usize];
    replica.read_at(&mut head, 0).expect("read head");
    prop_assert!(head == model.view(HEAD), "head differs from the model");
    for name in model.snapshots() {
        if model.layers[&name].removed {
            continue;
        }
        let view = real_view(dir, Some(&name), model.size);
        prop_assert!(
            view == model.view(&name),
            "snapshot {} differs from the model",
            name
        );
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-0badcafe");
    let mut model = Model::new(16 * SECTOR);
    let mut replica = Replica::create(&dir, model.size).unwrap();
    let mut counter = 0;
    for op in ops {
        match op {
            Op::Write { offset, len, seed } => {
                let offset = offset % model.size;
                let len = len.min(model.size - offset);
                let data = pattern(len, seed, offset);
                replica.write_at(&data, offset).unwrap();
                model.write(offset, &data);
            }
            Op::Unmap { offset, len } => {
                let offset = offset % model.size;
                let len = len.min(model.size - offset);
                replica.unmap(offset, len).unwrap();
                model.unmap(offset, len);
            }
            Op::WriteZeroes { offset, len } => {
                let offset = offset % model.size;
                let len = len.min(model.size - offset);
                replica.write_zeroes(offset, len).unwrap();
                model.write(offset, &vec![0u8; len as usize]);
            }
            Op::Read { offset, len } => {
                let offset = offset % model.size;
                let len = len.min(model.size - offset);
                let mut buf = vec![0xAAu8; len as usize];
                replica.read_at(&mut buf, offset).unwrap();
                let view = model.view(HEAD);
                prop_assert!(buf[..] == view[offset as usize..(offset + len) as usize]);
            }
            Op::Snapshot { user } => {
                counter += 1;
                let name = format!("{}{counter}", if user { "s" } else { "sys" });
                let spec = SnapshotSpec {
                    name: name.clone(),
                    user_created: user,
                    ..SnapshotSpec::default()
                };
                replica.snapshot(&spec).unwrap();
                model.snapshot(&name, user, model.size);
            }
            Op::Remove { pick } => {
                let snaps = model.snapshots();
                if snaps.is_empty() {
                    continue;
                }
                let name = &snaps[pick % snaps.len()];
                replica.mark_removed(name).unwrap();
                model.layers.get_mut(name).unwrap().removed = true;
            }
            Op::Purge => {
                replica.purge().unwrap();
                model.purge();
                let real: BTreeSet<String> = replica
                    .layout()
                    .layers
                    .keys()
                    .filter_map(|f| ironhorn_format::names::snapshot_name(f).map(str::to_string))
                    .collect();
                let expected: BTreeSet<String> = model.snapshots().into_iter().collect();
                prop_assert_eq!(real, expected, "snapshots left after purge");
            }
            Op::Revert { pick } => {
                let snaps = model.snapshots();
                if snaps.is_empty() {
                    continue;
                }
                let name = snaps[pick % snaps.len()].clone();
                let result = replica.revert(&name);
                if model.layers[&name].removed {
                    prop_assert!(result.is_err(), "revert to a removed snapshot must fail");
                } else {
                    result.unwrap();
                    model.revert(&name);
                }
            }
            Op::Expand { sectors } => {
                let new_size = model.size + sectors * SECTOR;
                replica.expand(new_size).unwrap();
                model.snapshot(&format!("expand-{new_size}"), false, new_size);
            }
            Op::Reopen { clean } => {
                if clean {
                    replica.close().unwrap();
                } else {
                    drop(replica);
                }
                replica = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
                prop_assert!(
                    replica.warnings().is_empty() || !clean,
                    "{:?}",
                    replica.warnings()
                );
            }
        }
        check(&replica, &dir, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn replica_matches_model(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        run(ops)?;
    }
}
