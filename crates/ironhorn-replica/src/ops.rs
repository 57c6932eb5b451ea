//! Metadata operations on an open replica: snapshot, mark removed, purge, revert, expand.
//!
//! Each has a single commit point and a defined order, so a crash at any instant leaves a
//! directory that opens to the state before or after the operation (the leftovers are
//! recognised by `ironhorn_format::chain::analyze`):
//! - snapshot / expand: new head + meta, hard link old head → snapshot, snapshot meta,
//!   **volume.meta (commit)**, delete the old head;
//! - revert: new head + meta, **volume.meta (commit)**, delete the old head;
//! - mark removed: one atomic meta rewrite;
//! - purge, per step: remove = delete the image, then the meta; coalesce = copy the child's
//!   data into the parent's file (only the removed parent's own view changes), **rename it
//!   over the child (commit)**, rewrite the child's parent, delete the parent's meta;
//!   prune = punch holes in the removed parent (only its own view changes).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};

use ironhorn_format::meta::{DiskMeta, VolumeMeta};
use ironhorn_format::names;
use ironhorn_format::purge::{plan_purge, PurgeStep};
use ironhorn_format::{MAX_CHAIN_LENGTH, SECTOR_SIZE};

use crate::error::{ReplicaError, Result};
use crate::fsio;
use crate::replica::{
    check_size, create_sparse, load_layout, now_rfc3339, open_chain, unknown_snapshot, write_meta,
    Layer, Replica,
};

/// What to record for a new snapshot.
#[derive(Debug, Clone, Default)]
pub struct SnapshotSpec {
    pub name: String,
    pub user_created: bool,
    /// RFC 3339 creation time; empty means now.
    pub created: String,
    pub labels: BTreeMap<String, String>,
}

impl SnapshotSpec {
    pub fn user(name: &str) -> Self {
        SnapshotSpec {
            name: name.to_string(),
            user_created: true,
            ..SnapshotSpec::default()
        }
    }
}

/// What a purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub steps: Vec<PurgeStep>,
    pub bytes_copied: u64,
}

/// Label Longhorn puts on expansion snapshots.
pub const EXPANSION_LABEL: &str = "replica-expansion";

impl Replica {
    fn require_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(ReplicaError::ReadOnly)
        }
    }

    fn next_head_name(&self) -> String {
        let mut index = names::head_index(self.layout.head()).unwrap_or(0) + 1;
        while self.dir.join(names::head_file(index)).exists()
            || self
                .dir
                .join(names::meta_file(&names::head_file(index)))
                .exists()
        {
            index += 1;
        }
        names::head_file(index)
    }

    fn sync_dir(&self) -> Result<()> {
        self.dir_handle
            .sync_all()
            .map_err(ReplicaError::io("syncing", &self.dir))
    }

    fn remove_files(&self, files: &[String]) -> Result<()> {
        for file in files {
            fsio::remove_if_exists(&self.dir, file)
                .map_err(ReplicaError::io("removing", self.dir.join(file)))?;
        }
        self.sync_dir()
    }

    fn reload_layout(&mut self) -> Result<()> {
        let warnings = std::mem::take(&mut self.layout.warnings);
        self.layout = load_layout(&self.dir)?.0;
        self.layout.warnings = warnings;
        Ok(())
    }

    /// The commit point of every head change (snapshot, revert, a rebuild target's new head):
    /// volume.meta names the new head (`update`), then the old head's files are removed and
    /// the layout is read again.
    fn switch_head(&mut self, old_head: &str, update: impl FnOnce(&mut VolumeMeta)) -> Result<()> {
        self.write_volume_meta(update)?;
        self.remove_files(&[
            old_head.to_string(),
            names::meta_file(old_head),
            names::checksum_file(old_head),
        ])?;
        self.reload_layout()
    }

    /// Reopens the live chain's files and rebuilds the sector map (after revert, purge).
    fn reopen_chain(&mut self) -> Result<()> {
        let head = self.layout.head().to_string();
        let names = self
            .layout
            .chain_from(&head)
            .map_err(|source| ReplicaError::Format {
                dir: self.dir.clone(),
                source,
            })?;
        let chain = open_chain(
            &self.dir,
            names,
            &self.layout.volume_meta.backing_file_path,
            true,
        )?;
        self.chain = chain;
        self.rebuild_map()
    }

    /// Takes a snapshot: the head becomes snapshot `spec.name` and a new empty head starts.
    pub fn snapshot(&mut self, spec: &SnapshotSpec) -> Result<()> {
        self.snapshot_with_size(spec, self.size)
    }

    fn snapshot_with_size(&mut self, spec: &SnapshotSpec, new_size: u64) -> Result<()> {
        self.require_writable()?;
        names::validate_snapshot_name(&spec.name).map_err(|source| ReplicaError::Format {
            dir: self.dir.clone(),
            source,
        })?;
        let snap = names::snapshot_file(&spec.name);
        if self.layout.layers.contains_key(&snap) {
            return Err(ReplicaError::SnapshotExists(spec.name.clone()));
        }
        // Longhorn: the placeholder slot + the chain + the new layer must fit in 250.
        if self.chain.len() + 2 > MAX_CHAIN_LENGTH {
            return Err(ReplicaError::TooManySnapshots {
                layers: self.chain.len(),
                max: MAX_CHAIN_LENGTH,
            });
        }
        let old_head = self.layout.head().to_string();
        let new_head = self.next_head_name();
        let created = if spec.created.is_empty() {
            now_rfc3339()
        } else {
            spec.created.clone()
        };

        let new_file = create_sparse(&self.dir, &new_head, new_size)?;
        let head_meta = DiskMeta {
            name: new_head.clone(),
            parent: snap.clone(),
            created: created.clone(),
            ..DiskMeta::default()
        };
        write_meta(
            &self.dir,
            &self.dir_handle,
            &names::meta_file(&new_head),
            &head_meta.encode(),
        )?;

        self.remove_files(&[
            snap.clone(),
            names::meta_file(&snap),
            names::checksum_file(&snap),
        ])?;
        fs::hard_link(self.dir.join(&old_head), self.dir.join(&snap))
            .map_err(ReplicaError::io("linking", self.dir.join(&snap)))?;
        let mut snap_meta = self
            .layout
            .node(&old_head)
            .map(|n| n.meta.clone())
            .unwrap_or_default();
        // Name keeps the old head's name, as Longhorn writes it.
        snap_meta.user_created = spec.user_created;
        snap_meta.created = created;
        snap_meta.labels = (!spec.labels.is_empty()).then(|| spec.labels.clone());
        write_meta(
            &self.dir,
            &self.dir_handle,
            &names::meta_file(&snap),
            &snap_meta.encode(),
        )?;

        self.switch_head(&old_head, |m| {
            m.head = new_head.clone();
            m.parent = snap.clone();
            m.dirty = true;
            m.size = new_size;
        })?;
        if let Some(last) = self.chain.last_mut() {
            last.name = snap;
        }
        self.chain.push(Layer {
            name: new_head,
            file: new_file.into(),
            len: new_size,
        });
        self.size = new_size;
        self.map.resize(new_size.div_ceil(SECTOR_SIZE));
        Ok(())
    }

    /// Grows the volume to `new_size` (Longhorn: a system snapshot `expand-<size>` and a
    /// bigger head). Equal size is a no-op; smaller is refused.
    pub fn expand(&mut self, new_size: u64) -> Result<()> {
        self.require_writable()?;
        check_size(new_size)?;
        if new_size < self.size {
            return Err(ReplicaError::InvalidSize {
                size: new_size,
                reason: "a volume cannot shrink",
            });
        }
        if new_size == self.size {
            return Ok(());
        }
        let spec = SnapshotSpec {
            name: format!("expand-{new_size}"),
            user_created: false,
            created: String::new(),
            labels: BTreeMap::from([(EXPANSION_LABEL.to_string(), new_size.to_string())]),
        };
        self.snapshot_with_size(&spec, new_size)
    }

    fn snapshot_file_of(&self, name: &str) -> Result<String> {
        let file = names::snapshot_file(name);
        if self.layout.layers.contains_key(&file) {
            Ok(file)
        } else {
            Err(unknown_snapshot(&self.layout, name))
        }
    }

    /// Marks a snapshot removed; its data stays until a purge.
    pub fn mark_removed(&mut self, name: &str) -> Result<()> {
        self.require_writable()?;
        let file = self.snapshot_file_of(name)?;
        self.set_removed(&file)
    }

    fn set_removed(&mut self, file: &str) -> Result<()> {
        let Some(node) = self.layout.node(file) else {
            return Ok(());
        };
        let mut meta = node.meta.clone();
        meta.removed = true;
        // Longhorn rewrites the record with the layer's true name at this point.
        meta.name = file.to_string();
        write_meta(
            &self.dir,
            &self.dir_handle,
            &names::meta_file(file),
            &meta.encode(),
        )?;
        self.reload_layout()
    }

    /// Reverts the volume to snapshot `name`: a new empty head on top of it; the old head's
    /// data is dropped. Newer snapshots stay as another branch.
    pub fn revert(&mut self, name: &str) -> Result<()> {
        self.require_writable()?;
        let snap = self.snapshot_file_of(name)?;
        if self.layout.node(&snap).is_some_and(|n| n.meta.removed) {
            return Err(ReplicaError::Refused(format!(
                "cannot revert to snapshot {name:?}: it is marked removed"
            )));
        }
        self.start_new_head(&snap)
    }

    /// A new empty head on `parent` (commit: volume.meta), the old head deleted, the chain
    /// reopened. Used by revert and by a rebuild target.
    pub(crate) fn start_new_head(&mut self, parent: &str) -> Result<()> {
        let old_head = self.layout.head().to_string();
        let new_head = self.next_head_name();
        create_sparse(&self.dir, &new_head, self.size)?;
        let head_meta = DiskMeta {
            name: new_head.clone(),
            parent: parent.to_string(),
            created: now_rfc3339(),
            ..DiskMeta::default()
        };
        write_meta(
            &self.dir,
            &self.dir_handle,
            &names::meta_file(&new_head),
            &head_meta.encode(),
        )?;
        self.switch_head(&old_head, |m| {
            m.head = new_head.clone();
            m.parent = parent.to_string();
            m.dirty = true;
        })?;
        self.reopen_chain()
    }

    /// Physically removes removed snapshots (and system snapshots) as Longhorn's purge does.
    pub fn purge(&mut self) -> Result<PurgeReport> {
        self.require_writable()?;
        let steps = plan_purge(&self.layout);
        let mut report = PurgeReport::default();
        for step in &steps {
            match step {
                PurgeStep::MarkRemoved(file) => self.set_removed(file)?,
                PurgeStep::Remove(file) => {
                    self.remove_files(std::slice::from_ref(file))?;
                    self.remove_files(&[names::meta_file(file), names::checksum_file(file)])?;
                }
                PurgeStep::Coalesce { parent, child } => {
                    report.bytes_copied += self.coalesce(parent, child)?;
                }
                PurgeStep::Prune { parent, head } => self.prune(parent, head)?,
            }
            self.reload_layout()?;
        }
        self.reopen_chain()?;
        report.steps = steps;
        Ok(report)
    }

    fn open_rw(&self, file: &str) -> Result<File> {
        let path = self.dir.join(file);
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(ReplicaError::io("opening", path))
    }

    /// Opens `parent` for writing (grown to `child`'s length when shorter) and `child` for
    /// reading, and finds where `child` holds data: what coalesce copies and prune punches.
    fn open_pair(&self, parent: &str, child: &str) -> Result<LayerPair> {
        let parent_path = self.dir.join(parent);
        let child_path = self.dir.join(child);
        let parent_file = self.open_rw(parent)?;
        let child_file =
            File::open(&child_path).map_err(ReplicaError::io("opening", &child_path))?;
        let child_len = child_file
            .metadata()
            .map_err(ReplicaError::io("inspecting", &child_path))?
            .len();
        let parent_len = parent_file
            .metadata()
            .map_err(ReplicaError::io("inspecting", &parent_path))?
            .len();
        if parent_len < child_len {
            parent_file
                .set_len(child_len)
                .map_err(ReplicaError::io("growing", &parent_path))?;
        }
        let extents = fsio::data_extents(&child_file, 0, child_len)
            .map_err(ReplicaError::io("finding data in", &child_path))?;
        Ok(LayerPair {
            parent_path,
            child_path,
            parent_file,
            child_file,
            parent_len,
            child_len,
            extents,
        })
    }

    fn coalesce(&mut self, parent: &str, child: &str) -> Result<u64> {
        let LayerPair {
            parent_path,
            child_path,
            parent_file,
            child_file,
            extents,
            ..
        } = self.open_pair(parent, child)?;
        let copied = fsio::copy_extents(&child_file, &parent_file, &extents)
            .map_err(ReplicaError::io("coalescing into", &parent_path))?;
        parent_file
            .sync_all()
            .map_err(ReplicaError::io("flushing", &parent_path))?;
        fs::rename(&parent_path, &child_path)
            .map_err(ReplicaError::io("renaming", &parent_path))?;
        self.sync_dir()?;
        let grandparent = self
            .layout
            .node(parent)
            .map(|n| n.meta.parent.clone())
            .unwrap_or_default();
        let mut child_meta = self
            .layout
            .node(child)
            .map(|n| n.meta.clone())
            .unwrap_or_default();
        child_meta.parent = grandparent;
        child_meta.name = child.to_string();
        write_meta(
            &self.dir,
            &self.dir_handle,
            &names::meta_file(child),
            &child_meta.encode(),
        )?;
        if self.layout.head() == child {
            let grand = child_meta.parent.clone();
            self.write_volume_meta(|m| m.parent = grand)?;
        }
        self.remove_files(&[names::meta_file(parent), names::checksum_file(parent)])?;
        Ok(copied)
    }

    fn prune(&mut self, parent: &str, head: &str) -> Result<()> {
        let LayerPair {
            parent_path,
            parent_file,
            parent_len,
            child_len: head_len,
            extents,
            ..
        } = self.open_pair(parent, head)?;
        let limit = parent_len.max(head_len);
        for extent in extents {
            let end = extent.end.min(limit);
            if end > extent.start {
                fsio::punch_hole(&parent_file, extent.start, end - extent.start)
                    .map_err(ReplicaError::io("pruning", &parent_path))?;
            }
        }
        parent_file
            .sync_all()
            .map_err(ReplicaError::io("flushing", &parent_path))
    }
}

/// A layer and the one above it, opened for coalescing or pruning.
struct LayerPair {
    parent_path: std::path::PathBuf,
    child_path: std::path::PathBuf,
    parent_file: File,
    child_file: File,
    /// Before it was grown to the child's length.
    parent_len: u64,
    child_len: u64,
    /// Where the child holds data.
    extents: Vec<ironhorn_format::sector_map::Extent>,
}
