//! Orphans: replica directories on a disk of a ready node that no replica resource owns
//! (left by a volume deleted while its node was down, or copied in by hand). Listed from
//! what the nodes reported; removed on request, or by the controllers when the
//! `orphan-resource-auto-deletion` setting is on. Directories on nodes that do not answer
//! are never touched.

use std::collections::BTreeSet;

use ironhorn_api::node_api;
use ironhorn_api::resource::{Node, Replica};
use ironhorn_api::rest::Orphan;

use crate::error::ApiError;
use crate::state::{self, NODES, REPLICAS};
use crate::Manager;

/// FNV-1a: a name that stays the same for the same place, across restarts and versions.
fn orphan_name(node: &str, disk: &str, dir: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [node, disk, dir].join("/").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("orphan-{hash:016x}")
}

/// The orphans on the disks of the nodes that answered in the last round.
pub async fn find(manager: &Manager) -> Result<Vec<Orphan>, ApiError> {
    let store = manager.store.as_ref();
    let reports = manager.reports();
    let owned: BTreeSet<(String, String, String)> = state::list::<Replica>(store, REPLICAS)
        .await?
        .into_iter()
        .map(|(r, _)| (r.node, r.disk, r.data_directory_name))
        .collect();
    let mut orphans = Vec::new();
    for (node, _) in state::list::<Node>(store, NODES).await? {
        let Some(report) = reports.get(&node.name) else {
            continue;
        };
        for (disk, spec) in &node.spec.disks {
            let Some(seen) = report.disks.get(disk) else {
                continue;
            };
            for dir in &seen.replica_directories {
                if owned.contains(&(node.name.clone(), disk.clone(), dir.clone())) {
                    continue;
                }
                orphans.push(Orphan {
                    name: orphan_name(&node.name, disk, dir),
                    node: node.name.clone(),
                    disk: disk.clone(),
                    data_directory_name: dir.clone(),
                    path: format!("{}/replicas/{dir}", spec.path.trim_end_matches('/')),
                });
            }
        }
    }
    Ok(orphans)
}

/// Removes an orphan's directory on its node (the agent refuses anything that is not a
/// replica directory).
pub async fn remove(manager: &Manager, orphan: &Orphan) -> Result<(), ApiError> {
    // Owned meanwhile? Then it is no orphan.
    let owned = state::list::<Replica>(manager.store.as_ref(), REPLICAS)
        .await?
        .into_iter()
        .any(|(r, _)| {
            r.node == orphan.node
                && r.disk == orphan.disk
                && r.data_directory_name == orphan.data_directory_name
        });
    if owned {
        return Err(ApiError::conflict(format!(
            "{} belongs to a volume now",
            orphan.path
        )));
    }
    let (node, _) = state::get::<Node>(manager.store.as_ref(), &format!("{NODES}{}", orphan.node))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("node {} is gone", orphan.node)))?;
    manager
        .client
        .call(
            &node.spec.address,
            node_api::delete_replica(&orphan.name, &orphan.path),
        )
        .await?;
    manager.forget_directory(&orphan.node, &orphan.disk, &orphan.data_directory_name);
    tracing::info!(
        node = orphan.node,
        path = orphan.path,
        "orphaned replica directory removed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphan_names_are_stable_and_distinct() {
        let a = orphan_name("n1", "default", "vol-0000aaaa");
        assert_eq!(a, orphan_name("n1", "default", "vol-0000aaaa"));
        assert_ne!(a, orphan_name("n2", "default", "vol-0000aaaa"));
        assert_ne!(a, orphan_name("n1", "d2", "vol-0000aaaa"));
        assert!(a.starts_with("orphan-") && a.len() == 23);
    }
}
