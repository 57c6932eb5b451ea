//! The purge plan: which removed snapshots are deleted, folded into their child or pruned,
//! in Longhorn's order (`pkg/sync/rpc/server.go` snapshot purge, `PrepareRemoveDisk`).
//!
//! 1. Every system snapshot (`UserCreated:false`) not yet removed is marked removed.
//! 2. From every leaf (the head included) walk up the parents; each removed snapshot met is
//!    processed on the spot: no children → delete it; one child that is not the head →
//!    coalesce it into that child (the child takes its data and its parent); more than one
//!    child → kept. A removed snapshot whose children include the head is deferred.
//! 3. The deferred one, if its only child is the head, is pruned: holes are punched where
//!    the head has data. It stays on disk, still removed.
//!
//! Every step leaves every remaining non-removed view reading the same.

use std::collections::{BTreeMap, BTreeSet};

use crate::chain::Layout;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeStep {
    /// Set `Removed:true` on a system snapshot.
    MarkRemoved(String),
    /// Delete a removed snapshot that has no children.
    Remove(String),
    /// Copy `child`'s data into `parent`'s file, move that file over `child`'s name, make
    /// `parent`'s parent the parent of `child`, delete `parent`'s metadata.
    Coalesce { parent: String, child: String },
    /// Punch holes in `parent` wherever `head` has data.
    Prune { parent: String, head: String },
}

#[derive(Debug, Clone)]
struct Node {
    parent: String,
    children: BTreeSet<String>,
    removed: bool,
}

/// The steps of a purge of `layout`'s tree, in order.
pub fn plan_purge(layout: &Layout) -> Vec<PurgeStep> {
    let head = layout.head().to_string();
    let mut steps = Vec::new();
    let mut nodes: BTreeMap<String, Node> = layout
        .layers
        .iter()
        .map(|(name, n)| {
            (
                name.clone(),
                Node {
                    parent: n.meta.parent.clone(),
                    children: n.children.clone(),
                    removed: n.meta.removed,
                },
            )
        })
        .collect();
    for (name, layer) in &layout.layers {
        if *name != head && !layer.meta.user_created && !layer.meta.removed {
            steps.push(PurgeStep::MarkRemoved(name.clone()));
            if let Some(node) = nodes.get_mut(name) {
                node.removed = true;
            }
        }
    }

    let leaves: Vec<String> = nodes
        .iter()
        .filter(|(_, n)| n.children.is_empty())
        .map(|(name, _)| name.clone())
        .collect();
    let mut deferred: Option<String> = None;
    for leaf in leaves {
        let mut current = leaf;
        // Each hop moves to a parent; a tree has no more hops than nodes.
        for _ in 0..=layout.layers.len() {
            let Some(node) = nodes.get(&current) else {
                break;
            };
            let parent = node.parent.clone();
            if current != head && node.removed {
                if node.children.contains(&head) {
                    deferred = Some(current.clone());
                } else {
                    process(&mut nodes, &current, &mut steps);
                }
            }
            if parent.is_empty() {
                break;
            }
            current = parent;
        }
    }
    if let Some(parent) = deferred {
        if let Some(node) = nodes.get(&parent) {
            if node.children.len() == 1 && node.children.contains(&head) {
                steps.push(PurgeStep::Prune {
                    parent,
                    head: head.clone(),
                });
            }
        }
    }
    steps
}

fn process(nodes: &mut BTreeMap<String, Node>, name: &str, steps: &mut Vec<PurgeStep>) {
    let Some(node) = nodes.get(name).cloned() else {
        return;
    };
    match node.children.len() {
        0 => {
            steps.push(PurgeStep::Remove(name.to_string()));
            if let Some(p) = nodes.get_mut(&node.parent) {
                p.children.remove(name);
            }
            nodes.remove(name);
        }
        1 => {
            let Some(child) = node.children.iter().next().cloned() else {
                return;
            };
            steps.push(PurgeStep::Coalesce {
                parent: name.to_string(),
                child: child.clone(),
            });
            if let Some(c) = nodes.get_mut(&child) {
                c.parent = node.parent.clone();
            }
            if let Some(p) = nodes.get_mut(&node.parent) {
                p.children.remove(name);
                p.children.insert(child);
            }
            nodes.remove(name);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{analyze, DirFacts, ImageFacts};
    use crate::meta::{DiskMeta, VolumeMeta};

    fn layout(head: &str, layers: &[(&str, &str, bool, bool)]) -> Layout {
        let mut f = DirFacts {
            volume_meta: VolumeMeta {
                size: 4096,
                head: head.into(),
                ..VolumeMeta::default()
            },
            ..DirFacts::default()
        };
        for (i, (name, parent, removed, user)) in layers.iter().enumerate() {
            f.metas.insert(
                name.to_string(),
                DiskMeta {
                    parent: parent.to_string(),
                    removed: *removed,
                    user_created: *user,
                    ..DiskMeta::default()
                },
            );
            f.images.insert(
                name.to_string(),
                ImageFacts {
                    inode: i as u64,
                    len: 4096,
                    allocated: 0,
                },
            );
        }
        f.volume_meta.parent = f.metas[head].parent.clone();
        analyze(&f).unwrap()
    }

    #[test]
    fn fixture_purge_coalesces_expansion_then_prunes() {
        // s1 <- s2 <- expand(system) <- s3(removed) <- head, as in the v1.5.3 fixture.
        let l = layout(
            "volume-head-004.img",
            &[
                ("volume-snap-s1.img", "", false, true),
                ("volume-snap-s2.img", "volume-snap-s1.img", false, true),
                (
                    "volume-snap-expand-8388608.img",
                    "volume-snap-s2.img",
                    false,
                    false,
                ),
                (
                    "volume-snap-s3.img",
                    "volume-snap-expand-8388608.img",
                    true,
                    true,
                ),
                ("volume-head-004.img", "volume-snap-s3.img", false, false),
            ],
        );
        assert_eq!(
            plan_purge(&l),
            [
                PurgeStep::MarkRemoved("volume-snap-expand-8388608.img".into()),
                PurgeStep::Coalesce {
                    parent: "volume-snap-expand-8388608.img".into(),
                    child: "volume-snap-s3.img".into()
                },
                PurgeStep::Prune {
                    parent: "volume-snap-s3.img".into(),
                    head: "volume-head-004.img".into()
                },
            ]
        );
    }

    #[test]
    fn removed_leaves_and_branches() {
        // a <- b(removed) <- head ; a <- c(removed, leaf of an abandoned branch)
        let l = layout(
            "volume-head-001.img",
            &[
                ("volume-snap-a.img", "", true, true),
                ("volume-snap-b.img", "volume-snap-a.img", true, true),
                ("volume-snap-c.img", "volume-snap-a.img", true, true),
                ("volume-head-001.img", "volume-snap-b.img", false, false),
            ],
        );
        let steps = plan_purge(&l);
        // c goes; then a has one child b (not the head) and folds into it; b is pruned last.
        assert_eq!(
            steps,
            [
                PurgeStep::Remove("volume-snap-c.img".into()),
                PurgeStep::Coalesce {
                    parent: "volume-snap-a.img".into(),
                    child: "volume-snap-b.img".into()
                },
                PurgeStep::Prune {
                    parent: "volume-snap-b.img".into(),
                    head: "volume-head-001.img".into()
                },
            ]
        );
    }

    #[test]
    fn branched_removed_snapshot_is_kept() {
        let l = layout(
            "volume-head-001.img",
            &[
                ("volume-snap-a.img", "", true, true),
                ("volume-snap-b.img", "volume-snap-a.img", false, true),
                ("volume-head-001.img", "volume-snap-a.img", false, false),
            ],
        );
        assert!(plan_purge(&l).is_empty());
    }
}
