//! What rebuild needs from a replica: as a source, its layers, their allocated extents, their
//! bytes and checksums; as a target, laying out the source's snapshot files, receiving their
//! data, and taking the source's revision when done. The target is marked `Rebuilding` from
//! the first step to the last, so a crash in between leaves a replica nobody serves from.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

use ironhorn_format::checksum::{go_time_string_utc, SnapshotHasher};
use ironhorn_format::meta::{ChecksumRecord, DiskMeta};
use ironhorn_format::names;
use ironhorn_proto::replica::LayerInfo;

use crate::error::{ReplicaError, Result};
use crate::fsio;
use crate::replica::{create_sparse, now_rfc3339, write_meta, Replica};

/// How far behind the newest layer write a rebuild drops written data from the page cache.
const WRITE_BEHIND_LAG: u64 = 32 << 20;

impl Replica {
    /// Every layer of the tree, oldest first along each branch (by file name otherwise).
    pub fn layer_infos(&self) -> Vec<LayerInfo> {
        let layout = self.layout();
        // The head takes writes: what it holds now, not what the scan at open saw.
        let head_allocated = self
            .chain
            .last()
            .filter(|l| l.name == layout.head())
            .and_then(|l| l.file.metadata().ok())
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
        let mut infos: Vec<LayerInfo> = layout
            .layers
            .iter()
            .map(|(file, node)| LayerInfo {
                file: file.clone(),
                parent: node.meta.parent.clone(),
                removed: node.meta.removed,
                user_created: node.meta.user_created,
                created: node.meta.created.clone(),
                labels: node.meta.labels(),
                len: node.image.len,
                allocated: match head_allocated {
                    Some(now) if file == layout.head() => now,
                    _ => node.image.allocated,
                },
                is_head: file == layout.head(),
                keep: false,
            })
            .collect();
        // Parents before children: a target can lay them out in this order.
        let depth = |file: &str| layout.chain_from(file).map(|c| c.len()).unwrap_or(0);
        infos.sort_by_key(|i| (depth(&i.file), i.file.clone()));
        infos
    }

    /// A layer file: the chain's open handle when the layer is in the live chain (so the
    /// kernel's read-ahead state carries over from one chunk of a copy to the next), else
    /// opened for the call.
    fn layer_file(&self, file: &str, write: bool) -> Result<Arc<File>> {
        if !self.layout.layers.contains_key(file) {
            return Err(ReplicaError::Refused(format!(
                "{file} is not a layer of this replica"
            )));
        }
        if let Some(layer) = self.chain.iter().find(|l| l.name == file) {
            if !write || self.writable {
                return Ok(layer.file.clone());
            }
        }
        let path = self.dir.join(file);
        let opened = OpenOptions::new()
            .read(true)
            .write(write)
            .open(&path)
            .map_err(ReplicaError::io("opening layer", path))?;
        // Copies read a layer front to back: a larger read-ahead (only a hint).
        let _ = rustix::fs::fadvise(&opened, 0, None, rustix::fs::Advice::Sequential);
        Ok(Arc::new(opened))
    }

    /// An open handle of one layer file, for reading (a rebuild source sends from it).
    pub fn layer_handle(&self, file: &str) -> Result<Arc<File>> {
        self.layer_file(file, false)
    }

    /// Allocated `[start, end)` ranges of one layer file.
    pub fn layer_extents(&self, file: &str) -> Result<Vec<(u64, u64)>> {
        let f = self.layer_file(file, false)?;
        let len = f
            .metadata()
            .map_err(ReplicaError::io("inspecting", self.dir.join(file)))?
            .len();
        Ok(fsio::data_extents(&f, 0, len)
            .map_err(ReplicaError::io("finding data in", self.dir.join(file)))?
            .into_iter()
            .map(|e| (e.start, e.end))
            .collect())
    }

    /// Reads from one layer file; bytes past its end read as zeros.
    pub fn read_layer(&self, file: &str, buf: &mut [u8], offset: u64) -> Result<()> {
        let f = self.layer_file(file, false)?;
        let got = fsio::read_full_at(&f, buf, offset)
            .map_err(ReplicaError::io("reading", self.dir.join(file)))?;
        buf[got..].fill(0);
        Ok(())
    }

    /// CRC-64 of a snapshot file as Longhorn's snapshot hashing defines it. A `.checksum`
    /// record whose `change_time` still matches the file is reused; otherwise the file is
    /// hashed and, on a writable replica, the record is written for next time.
    pub fn layer_checksum(&self, file: &str) -> Result<String> {
        if names::snapshot_name(file).is_none() {
            return Err(ReplicaError::Refused(format!(
                "{file} is not a snapshot: only snapshots have checksums"
            )));
        }
        let f = self.layer_file(file, false)?;
        let md = f
            .metadata()
            .map_err(ReplicaError::io("inspecting", self.dir.join(file)))?;
        let change_time = go_time_string_utc(md.ctime(), md.ctime_nsec() as u32);
        let record_name = names::checksum_file(file);
        if let Ok(bytes) = std::fs::read(self.dir.join(&record_name)) {
            if let Ok(record) = ChecksumRecord::decode(&record_name, &bytes) {
                if record.method == "crc64"
                    && record.change_time == change_time
                    && !record.checksum.is_empty()
                {
                    return Ok(record.checksum);
                }
            }
        }
        let mut hasher = SnapshotHasher::default();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0;
        while pos < md.len() {
            let n = (md.len() - pos).min(buf.len() as u64) as usize;
            let got = fsio::read_full_at(&f, &mut buf[..n], pos)
                .map_err(ReplicaError::io("hashing", self.dir.join(file)))?;
            buf[got..n].fill(0);
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        let checksum = hasher.finish_hex();
        if self.writable {
            let record = ChecksumRecord {
                method: "crc64".into(),
                checksum: checksum.clone(),
                change_time,
                last_hashed_at: now_rfc3339(),
                silently_corrupted: false,
                extra: Default::default(),
            };
            // A cache: failing to write it costs a re-hash next time, nothing else.
            let _ = write_meta(&self.dir, &self.dir_handle, &record_name, &record.encode());
        }
        Ok(checksum)
    }

    /// Rebuild target, step 1: lay out the source's snapshot files (empty, except those
    /// marked `keep`, which are already identical here), drop every other snapshot, and start
    /// a new empty head on `head_parent`. The replica is marked `Rebuilding` first.
    pub fn prepare_rebuild(&mut self, head_parent: &str, layers: &[LayerInfo]) -> Result<()> {
        if !self.writable {
            return Err(ReplicaError::ReadOnly);
        }
        self.set_rebuilding(true)?;
        let incoming: Vec<&LayerInfo> = layers.iter().filter(|l| !l.is_head).collect();
        for l in &incoming {
            if names::snapshot_name(&l.file).is_none() {
                return Err(ReplicaError::Refused(format!(
                    "{} is not a snapshot file name",
                    l.file
                )));
            }
        }
        let keep = |file: &str| incoming.iter().any(|l| l.file == file && l.keep);
        let existing: Vec<String> = self
            .layout
            .layers
            .keys()
            .filter(|f| names::snapshot_name(f).is_some())
            .cloned()
            .collect();
        for file in existing.iter().filter(|f| !keep(f)) {
            for name in [
                file.clone(),
                names::meta_file(file),
                names::checksum_file(file),
            ] {
                fsio::remove_if_exists(&self.dir, &name)
                    .map_err(ReplicaError::io("removing", self.dir.join(&name)))?;
            }
        }
        for l in &incoming {
            if !l.keep {
                create_sparse(&self.dir, &l.file, l.len)?;
            }
            let meta = DiskMeta {
                name: l.file.clone(),
                parent: l.parent.clone(),
                removed: l.removed,
                user_created: l.user_created,
                created: l.created.clone(),
                labels: (!l.labels.is_empty()).then(|| l.labels.clone()),
                extra: Default::default(),
            };
            write_meta(
                &self.dir,
                &self.dir_handle,
                &names::meta_file(&l.file),
                &meta.encode(),
            )?;
        }
        self.start_new_head(head_parent)
    }

    /// Rebuild target, step 2: data for one snapshot file.
    pub fn write_layer(&self, file: &str, data: &[u8], offset: u64) -> Result<()> {
        self.write_layer_with(file, offset, data.len() as u64, |f| {
            f.write_all_at(data, offset)
        })
    }

    /// Like [`Replica::write_layer`] for `[offset, offset+len)`, with the bytes written by
    /// `write` (which may take them from elsewhere than memory, e.g. a socket).
    pub fn write_layer_with(
        &self,
        file: &str,
        offset: u64,
        len: u64,
        write: impl FnOnce(&File) -> std::io::Result<()>,
    ) -> Result<()> {
        if !self.layout.volume_meta.rebuilding {
            return Err(ReplicaError::Refused(
                "layer writes are only taken while rebuilding".into(),
            ));
        }
        if self.layout.head() == file {
            return Err(ReplicaError::Refused(
                "the head is written through the volume, not as a layer".into(),
            ));
        }
        let f = self.layer_file(file, true)?;
        // Buffered writes to one file serialize on its inode lock anyway, and waiters there
        // spin while the holder copies megabytes: one at a time, the others sleep here.
        let _one_at_a_time = self.layer_writes.lock().unwrap_or_else(|e| e.into_inner());
        write(&f).map_err(ReplicaError::io("writing", self.dir.join(file)))?;
        write_behind(&f, offset, len);
        Ok(())
    }

    /// Rebuild target, step 3: every layer is complete. Makes them durable, re-reads the
    /// allocation, takes the source's revision and clears `Rebuilding`.
    pub fn finish_rebuild(&mut self, revision: u64) -> Result<()> {
        for file in self.layout.layers.keys() {
            let f = self.layer_file(file, false)?;
            f.sync_all()
                .map_err(ReplicaError::io("flushing", self.dir.join(file)))?;
        }
        self.rebuild_map()?;
        self.set_revision(revision)?;
        self.set_rebuilding(false)
    }
}

/// After a rebuild wrote `[offset, offset+len)` of a layer file: starts writing it to the
/// disk now, and drops from the page cache what was written [`WRITE_BEHIND_LAG`] earlier (on
/// the disk by then). A rebuild streams whole replicas: left to the kernel it would fill the
/// page cache with dirty data, evict what the node's volumes use, and end in one huge sync.
/// Only hints: errors are ignored.
fn write_behind(file: &File, offset: u64, len: u64) {
    let advise = |start: u64| {
        let _ = rustix::fs::fadvise(
            file,
            start,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::DontNeed,
        );
    };
    // On dirty pages DONTNEED starts their writeback; on clean ones it drops them.
    advise(offset);
    if let Some(earlier) = offset.checked_sub(WRITE_BEHIND_LAG) {
        advise(earlier);
    }
}
