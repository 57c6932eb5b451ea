//! Reconstructs the snapshot tree and the live chain of a replica directory from the facts a
//! directory listing gives, and decides what an interrupted operation left behind.
//!
//! Every Ironhorn metadata change has one commit point (see `ironhorn-replica`'s `ops`
//! module); what a crash leaves before or after it is recognised here and either ignored
//! (read-only open) or cleaned up ([`Repair`], read-write open):
//! - `*.tmp` files: an atomic replace that did not reach its rename;
//! - a `volume-head-*` image or meta other than the live head: a snapshot, revert or expand
//!   whose new head was not committed, or whose old head was not yet deleted;
//! - a snapshot image sharing the live head's inode: a snapshot hard-linked but not committed;
//! - a removed snapshot whose image is gone: a purge step (coalesce or remove) that moved or
//!   deleted the image but did not yet rewrite the child's `Parent` or delete the meta.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::meta::{DiskMeta, VolumeMeta};
use crate::names;
use crate::{FormatError, MAX_CHAIN_LENGTH};

/// What the shell learnt about one image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFacts {
    pub inode: u64,
    /// Apparent size in bytes.
    pub len: u64,
    /// Allocated bytes (`st_blocks` x 512).
    pub allocated: u64,
}

/// Everything the analysis needs to know about a directory.
#[derive(Debug, Clone, Default)]
pub struct DirFacts {
    pub volume_meta: VolumeMeta,
    /// Decoded `<image>.meta` files, keyed by image file name.
    pub metas: BTreeMap<String, DiskMeta>,
    /// Image files (`*.img`) present, keyed by file name.
    pub images: BTreeMap<String, ImageFacts>,
    /// Every other directory entry (temp files, checksum files, unknown files).
    pub other_files: BTreeSet<String>,
}

/// One layer of the snapshot tree.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNode {
    pub meta: DiskMeta,
    pub children: BTreeSet<String>,
    pub image: ImageFacts,
}

/// A file-system step a read-write open performs to reach the state the analysis describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Delete this directory entry.
    RemoveFile(String),
    /// Rewrite `<layer>.meta` with this parent (finishing an interrupted coalesce).
    Reparent { layer: String, parent: String },
}

/// Something a person should know about a directory; none of these stop it from opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    Dirty,
    Rebuilding,
    LeftoverTempFile(String),
    StrayHead(String),
    InterruptedSnapshot(String),
    InterruptedPurge(String),
    UnknownFile(String),
    DanglingBranch {
        layer: String,
        parent: String,
    },
    HeadShorterThanVolume {
        head_len: u64,
        size: u64,
    },
    StaleChecksum(String),
    Encrypted,
    BadChecksumFile {
        file: String,
        reason: String,
    },
    ParentMismatch {
        volume_meta: String,
        head_meta: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Dirty => write!(f, "dirty: the replica was not closed cleanly (normal for a replica that was in use when it stopped; the last writes may not have been flushed)"),
            Warning::Rebuilding => write!(f, "rebuilding: the replica was the target of an unfinished rebuild; its data may be incomplete, prefer another replica"),
            Warning::LeftoverTempFile(file) => write!(f, "leftover temporary file {file} (an interrupted metadata write; ignored)"),
            Warning::StrayHead(file) => write!(f, "stray head file {file} (an interrupted snapshot, revert or expand; ignored)"),
            Warning::InterruptedSnapshot(name) => write!(f, "snapshot {name} was not committed (interrupted snapshot; ignored)"),
            Warning::InterruptedPurge(name) => write!(f, "removed snapshot {name} has no image file (an interrupted purge; its data lives on in its child)"),
            Warning::UnknownFile(file) => write!(f, "unknown file {file} (ignored)"),
            Warning::DanglingBranch { layer, parent } => write!(f, "{layer} is off the live chain and names a missing parent {parent}"),
            Warning::HeadShorterThanVolume { head_len, size } => write!(f, "the head image is {head_len} bytes, shorter than the volume size {size}; the tail reads from older layers or as zeros"),
            Warning::Encrypted => write!(f, "the volume is encrypted (LUKS, Longhorn 1.12+): its data is the encrypted device; open an export with `cryptsetup luksOpen`"),
            Warning::StaleChecksum(file) => write!(f, "stale checksum {file}: the snapshot file changed (or was copied) after it was hashed"),
            Warning::BadChecksumFile { file, reason } => write!(f, "unreadable checksum file {file}: {reason}"),
            Warning::ParentMismatch { volume_meta, head_meta } => write!(f, "volume.meta says the head's parent is {volume_meta:?} but the head's meta says {head_meta:?}; the head's meta wins"),
        }
    }
}

/// The tree of layers, the live chain and the repairs an interrupted operation calls for.
#[derive(Debug, Clone)]
pub struct Layout {
    pub volume_meta: VolumeMeta,
    pub layers: BTreeMap<String, LayerNode>,
    /// Live chain, oldest first; the last entry is the head.
    pub chain: Vec<String>,
    pub repairs: Vec<Repair>,
    pub warnings: Vec<Warning>,
}

impl Layout {
    pub fn head(&self) -> &str {
        &self.volume_meta.head
    }

    pub fn node(&self, layer: &str) -> Option<&LayerNode> {
        self.layers.get(layer)
    }

    /// Live chain from `top` (a layer on or off the live chain) down to the root, oldest first.
    pub fn chain_from(&self, top: &str) -> Result<Vec<String>, FormatError> {
        chain_from(&self.layers, top)
    }
}

fn chain_from(layers: &BTreeMap<String, LayerNode>, top: &str) -> Result<Vec<String>, FormatError> {
    let mut chain = Vec::new();
    let mut seen = BTreeSet::new();
    let mut current = top.to_string();
    loop {
        if !seen.insert(current.clone()) {
            return Err(FormatError::Cycle { layer: current });
        }
        let node = layers
            .get(&current)
            .ok_or_else(|| FormatError::MissingImage {
                layer: current.clone(),
            })?;
        chain.push(current.clone());
        if chain.len() > MAX_CHAIN_LENGTH {
            return Err(FormatError::ChainTooLong {
                len: chain.len(),
                max: MAX_CHAIN_LENGTH,
            });
        }
        let parent = &node.meta.parent;
        if parent.is_empty() {
            break;
        }
        if !layers.contains_key(parent) {
            return Err(FormatError::MissingParent {
                child: current,
                parent: parent.clone(),
            });
        }
        current = parent.clone();
    }
    chain.reverse();
    Ok(chain)
}

/// Builds the layout of a directory from its facts.
pub fn analyze(facts: &DirFacts) -> Result<Layout, FormatError> {
    let vm = &facts.volume_meta;
    let head = vm.head.clone();
    if names::head_index(&head).is_none() {
        return Err(FormatError::BadValue {
            file: names::VOLUME_META.to_string(),
            reason: format!("Head {head:?} is not a volume-head-NNN.img file name"),
        });
    }
    let head_image = *facts
        .images
        .get(&head)
        .ok_or_else(|| FormatError::MissingImage {
            layer: head.clone(),
        })?;
    if !facts.metas.contains_key(&head) {
        return Err(FormatError::MissingHeadMeta { head });
    }

    let mut repairs = Vec::new();
    let mut warnings = Vec::new();
    if vm.dirty {
        warnings.push(Warning::Dirty);
    }
    if vm.rebuilding {
        warnings.push(Warning::Rebuilding);
    }
    if vm.extra.get("Encrypted") == Some(&serde_json::Value::Bool(true)) {
        warnings.push(Warning::Encrypted);
    }
    for file in &facts.other_files {
        if names::is_temp_file(file) {
            warnings.push(Warning::LeftoverTempFile(file.clone()));
            repairs.push(Repair::RemoveFile(file.clone()));
        } else if let Some(image) = file.strip_suffix(names::CHECKSUM_SUFFIX) {
            if !facts.metas.contains_key(image) && !facts.images.contains_key(image) {
                warnings.push(Warning::UnknownFile(file.clone()));
            }
        } else if ![
            names::VOLUME_META,
            names::REVISION_COUNTER,
            names::RECENT_WRITES,
            names::GENERATION,
        ]
        .contains(&file.as_str())
        {
            warnings.push(Warning::UnknownFile(file.clone()));
        }
    }

    // Heads that are not the live head, and snapshots that are the live head under another
    // name, belong to an operation that never committed (or whose cleanup was cut short).
    let mut ignored: BTreeSet<String> = BTreeSet::new();
    let layer_names: BTreeSet<&String> = facts.metas.keys().chain(facts.images.keys()).collect();
    for name in layer_names {
        if *name == head {
            continue;
        }
        let stray_head = names::head_index(name).is_some();
        let uncommitted_snapshot = facts
            .images
            .get(name)
            .is_some_and(|img| img.inode == head_image.inode);
        if !(stray_head || uncommitted_snapshot) {
            continue;
        }
        warnings.push(if stray_head {
            Warning::StrayHead(name.clone())
        } else {
            Warning::InterruptedSnapshot(names::display_name(name))
        });
        if facts.images.contains_key(name) {
            repairs.push(Repair::RemoveFile(name.clone()));
        }
        if facts.metas.contains_key(name) {
            repairs.push(Repair::RemoveFile(names::meta_file(name)));
        }
        ignored.insert(name.clone());
    }

    // Images without metadata are not layers (Longhorn ignores them too).
    for name in facts.images.keys() {
        if !facts.metas.contains_key(name) && !ignored.contains(name) {
            warnings.push(Warning::UnknownFile(name.clone()));
        }
    }

    // A removed snapshot whose image is gone was being purged: its children now hold its data.
    let mut vanished: BTreeMap<String, String> = BTreeMap::new();
    for (name, meta) in &facts.metas {
        if ignored.contains(name) || facts.images.contains_key(name) {
            continue;
        }
        if !meta.removed {
            return Err(FormatError::MissingImage {
                layer: name.clone(),
            });
        }
        vanished.insert(name.clone(), meta.parent.clone());
        warnings.push(Warning::InterruptedPurge(names::display_name(name)));
    }
    let resolve_parent = |mut parent: String| {
        let mut hops = 0;
        while let Some(grand) = vanished.get(&parent) {
            parent = grand.clone();
            hops += 1;
            if hops > vanished.len() {
                break;
            }
        }
        parent
    };

    let mut layers: BTreeMap<String, LayerNode> = BTreeMap::new();
    for (name, meta) in &facts.metas {
        if ignored.contains(name) || vanished.contains_key(name) {
            continue;
        }
        let Some(image) = facts.images.get(name) else {
            continue;
        };
        let mut meta = meta.clone();
        if vanished.contains_key(&meta.parent) {
            meta.parent = resolve_parent(meta.parent.clone());
            repairs.push(Repair::Reparent {
                layer: name.clone(),
                parent: meta.parent.clone(),
            });
        }
        layers.insert(
            name.clone(),
            LayerNode {
                meta,
                children: BTreeSet::new(),
                image: *image,
            },
        );
    }
    for name in vanished.keys() {
        repairs.push(Repair::RemoveFile(names::meta_file(name)));
        let checksum = names::checksum_file(name);
        if facts.other_files.contains(&checksum) {
            repairs.push(Repair::RemoveFile(checksum));
        }
    }

    let parents: Vec<(String, String)> = layers
        .iter()
        .map(|(name, node)| (name.clone(), node.meta.parent.clone()))
        .collect();
    for (name, parent) in parents {
        if parent.is_empty() {
            continue;
        }
        match layers.get_mut(&parent) {
            Some(node) => {
                node.children.insert(name);
            }
            None => warnings.push(Warning::DanglingBranch {
                layer: name,
                parent,
            }),
        }
    }

    let chain = chain_from(&layers, &head)?;
    // Dangling branches off the live chain are warnings; on it they are errors (chain_from).
    let head_parent = layers
        .get(&head)
        .map(|n| n.meta.parent.clone())
        .unwrap_or_default();
    if head_parent != vm.parent {
        warnings.push(Warning::ParentMismatch {
            volume_meta: vm.parent.clone(),
            head_meta: head_parent,
        });
    }
    if head_image.len < vm.size {
        warnings.push(Warning::HeadShorterThanVolume {
            head_len: head_image.len,
            size: vm.size,
        });
    }
    Ok(Layout {
        volume_meta: vm.clone(),
        layers,
        chain,
        repairs,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(parent: &str, removed: bool) -> DiskMeta {
        DiskMeta {
            parent: parent.to_string(),
            removed,
            ..DiskMeta::default()
        }
    }

    fn facts(head: &str, layers: &[(&str, &str, bool, u64)]) -> DirFacts {
        let mut f = DirFacts {
            volume_meta: VolumeMeta {
                size: 8192,
                head: head.to_string(),
                sector_size: 512,
                ..VolumeMeta::default()
            },
            ..DirFacts::default()
        };
        for (name, parent, removed, inode) in layers {
            f.metas.insert(name.to_string(), meta(parent, *removed));
            f.images.insert(
                name.to_string(),
                ImageFacts {
                    inode: *inode,
                    len: 8192,
                    allocated: 0,
                },
            );
        }
        if let Some(m) = f.metas.get(head) {
            f.volume_meta.parent = m.parent.clone();
        }
        f
    }

    #[test]
    fn chain_and_tree() {
        let f = facts(
            "volume-head-002.img",
            &[
                ("volume-snap-a.img", "", false, 1),
                ("volume-snap-b.img", "volume-snap-a.img", false, 2),
                ("volume-snap-c.img", "volume-snap-a.img", false, 3),
                ("volume-head-002.img", "volume-snap-b.img", false, 4),
            ],
        );
        let layout = analyze(&f).unwrap();
        assert_eq!(
            layout.chain,
            [
                "volume-snap-a.img",
                "volume-snap-b.img",
                "volume-head-002.img"
            ]
        );
        assert_eq!(layout.layers["volume-snap-a.img"].children.len(), 2);
        assert!(layout.repairs.is_empty());
        assert!(layout.warnings.is_empty(), "{:?}", layout.warnings);
    }

    #[test]
    fn cycle_is_an_error() {
        let f = facts(
            "volume-head-002.img",
            &[
                ("volume-snap-a.img", "volume-snap-b.img", false, 1),
                ("volume-snap-b.img", "volume-snap-a.img", false, 2),
                ("volume-head-002.img", "volume-snap-b.img", false, 4),
            ],
        );
        assert!(matches!(analyze(&f), Err(FormatError::Cycle { .. })));
    }

    #[test]
    fn missing_parent_on_chain_is_an_error() {
        let f = facts(
            "volume-head-002.img",
            &[("volume-head-002.img", "volume-snap-gone.img", false, 4)],
        );
        assert_eq!(
            analyze(&f).unwrap_err(),
            FormatError::MissingParent {
                child: "volume-head-002.img".into(),
                parent: "volume-snap-gone.img".into()
            }
        );
    }

    #[test]
    fn missing_head_meta_is_an_error() {
        let mut f = facts(
            "volume-head-002.img",
            &[("volume-head-002.img", "", false, 4)],
        );
        f.metas.clear();
        assert!(matches!(
            analyze(&f),
            Err(FormatError::MissingHeadMeta { .. })
        ));
    }

    #[test]
    fn interrupted_snapshot_is_ignored_and_repaired() {
        // Crash after hard-linking the head to the snapshot name, before volume.meta moved.
        let f = facts(
            "volume-head-001.img",
            &[
                ("volume-head-001.img", "", false, 7),
                ("volume-snap-s.img", "", false, 7),
                ("volume-head-002.img", "volume-snap-s.img", false, 8),
            ],
        );
        let layout = analyze(&f).unwrap();
        assert_eq!(layout.chain, ["volume-head-001.img"]);
        assert_eq!(layout.layers.len(), 1);
        for file in [
            "volume-snap-s.img",
            "volume-snap-s.img.meta",
            "volume-head-002.img",
            "volume-head-002.img.meta",
        ] {
            assert!(
                layout.repairs.contains(&Repair::RemoveFile(file.into())),
                "{file}"
            );
        }
    }

    #[test]
    fn interrupted_coalesce_is_finished() {
        // The removed snapshot's image was renamed over its child; the child's parent not yet.
        let mut f = facts(
            "volume-head-003.img",
            &[
                ("volume-snap-a.img", "", false, 1),
                ("volume-snap-c.img", "volume-snap-r.img", false, 3),
                ("volume-head-003.img", "volume-snap-c.img", false, 4),
            ],
        );
        f.metas
            .insert("volume-snap-r.img".into(), meta("volume-snap-a.img", true));
        let layout = analyze(&f).unwrap();
        assert_eq!(
            layout.chain,
            [
                "volume-snap-a.img",
                "volume-snap-c.img",
                "volume-head-003.img"
            ]
        );
        assert!(layout.repairs.contains(&Repair::Reparent {
            layer: "volume-snap-c.img".into(),
            parent: "volume-snap-a.img".into()
        }));
        assert!(layout
            .repairs
            .contains(&Repair::RemoveFile("volume-snap-r.img.meta".into())));
    }

    #[test]
    fn missing_image_of_live_snapshot_is_an_error() {
        let mut f = facts(
            "volume-head-003.img",
            &[("volume-head-003.img", "volume-snap-a.img", false, 4)],
        );
        f.metas.insert("volume-snap-a.img".into(), meta("", false));
        assert!(matches!(analyze(&f), Err(FormatError::MissingImage { .. })));
    }

    #[test]
    fn chain_limit() {
        let mut layers: Vec<(String, String)> = Vec::new();
        for i in 0..MAX_CHAIN_LENGTH {
            let parent = if i == 0 {
                String::new()
            } else {
                format!("volume-snap-{}.img", i - 1)
            };
            layers.push((format!("volume-snap-{i}.img"), parent));
        }
        let last = format!("volume-snap-{}.img", MAX_CHAIN_LENGTH - 1);
        let mut spec: Vec<(&str, &str, bool, u64)> = layers
            .iter()
            .enumerate()
            .map(|(i, (n, p))| (n.as_str(), p.as_str(), false, i as u64))
            .collect();
        spec.push(("volume-head-999.img", last.as_str(), false, 9999));
        assert!(matches!(
            analyze(&facts("volume-head-999.img", &spec)),
            Err(FormatError::ChainTooLong { .. })
        ));
    }
}
