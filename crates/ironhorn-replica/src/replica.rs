//! An open replica: the live chain's files, the sector-to-layer map, the revision counter,
//! and the data path (read through the chain; write, unmap and flush into the head).
//!
//! A replica is opened read-write (repairs what an interrupted operation left, marks itself
//! dirty, writes into the head) or read-only (changes nothing on disk; optionally viewing a
//! snapshot instead of the head, as Longhorn does for backup and export).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ironhorn_format::chain::{analyze, Layout, Repair, Warning};
use ironhorn_format::meta::{DiskMeta, VolumeMeta};
use ironhorn_format::names;
use ironhorn_format::recent::{decode_ring, RecentWrite, RING_LEN};
use ironhorn_format::revision::{decode_revision, encode_revision};
use ironhorn_format::sector_map::{sectors_covering, LayerIndex, Run, SectorMap};
use ironhorn_format::{REPLICA_SECTOR_SIZE, SECTOR_SIZE};

use crate::error::{ReplicaError, Result};
use crate::fsio;
use crate::scan::scan_dir;

/// How to open a replica directory.
#[derive(Debug, Clone, Default)]
pub struct ReplicaOptions {
    /// Change nothing on disk (no repairs, no dirty flag); writes are refused.
    pub read_only: bool,
    /// View this snapshot (its name without prefix/suffix) instead of the head; implies
    /// read-only.
    pub snapshot: Option<String>,
}

impl ReplicaOptions {
    /// Read-only, at the head.
    pub fn read_only() -> Self {
        ReplicaOptions {
            read_only: true,
            snapshot: None,
        }
    }

    /// Read-only, at snapshot `name` (`volume-head` is the head).
    pub fn snapshot(name: &str) -> Self {
        ReplicaOptions {
            read_only: true,
            snapshot: Some(name.to_string()),
        }
    }
}

/// One layer of the live chain, open.
#[derive(Debug)]
pub(crate) struct Layer {
    pub(crate) name: String,
    /// Shared so a flush can sync it without holding the replica's lock.
    pub(crate) file: std::sync::Arc<File>,
    pub(crate) len: u64,
}

/// The files a flush syncs: the head and the revision counter.
#[derive(Debug)]
pub struct FlushHandles {
    head: std::sync::Arc<File>,
    head_path: PathBuf,
    counter: Option<std::sync::Arc<File>>,
    counter_path: PathBuf,
}

impl FlushHandles {
    /// fdatasync of both files; their syncs overlap rather than queue.
    pub fn sync(&self) -> Result<()> {
        if self.counter.is_none() {
            return self.sync_head();
        }
        std::thread::scope(|scope| {
            let counter_synced = scope.spawn(|| self.sync_counter());
            let head_synced = self.sync_head();
            let counter_synced = counter_synced.join().unwrap_or_else(|_| {
                Err(ReplicaError::io("flushing", &self.counter_path)(
                    std::io::Error::other("sync thread failed"),
                ))
            });
            head_synced.and(counter_synced)
        })
    }

    /// fdatasync of the head.
    pub fn sync_head(&self) -> Result<()> {
        self.head
            .sync_data()
            .map_err(ReplicaError::io("flushing", &self.head_path))
    }

    /// fdatasync of the revision counter.
    pub fn sync_counter(&self) -> Result<()> {
        match &self.counter {
            Some(counter) => counter
                .sync_data()
                .map_err(ReplicaError::io("flushing", &self.counter_path)),
            None => Ok(()),
        }
    }
}

/// An open replica directory.
#[derive(Debug)]
pub struct Replica {
    pub(crate) dir: PathBuf,
    pub(crate) dir_handle: File,
    pub(crate) writable: bool,
    pub(crate) layout: Layout,
    /// The chain being read, oldest first: the layer at position `i` has map index `i + 1`.
    pub(crate) chain: Vec<Layer>,
    pub(crate) map: SectorMap,
    pub(crate) size: u64,
    pub(crate) revision: u64,
    pub(crate) revision_file: Option<std::sync::Arc<File>>,
    /// The recent-writes ring (`ironhorn_format::recent`); open while writable.
    pub(crate) recent_file: Option<File>,
    /// Held by a rebuild's layer write: one at a time (see `write_layer`).
    pub(crate) layer_writes: std::sync::Mutex<()>,
    pub(crate) warnings: Vec<Warning>,
}

/// Current time as Longhorn writes it in metadata: RFC 3339, UTC, whole seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

pub(crate) fn check_size(size: u64) -> Result<()> {
    if size == 0 {
        return Err(ReplicaError::InvalidSize {
            size,
            reason: "the size must be larger than zero",
        });
    }
    if size % SECTOR_SIZE != 0 {
        return Err(ReplicaError::InvalidSize {
            size,
            reason: "the size must be a multiple of 4096 bytes",
        });
    }
    Ok(())
}

impl Replica {
    /// Creates a replica of `size` bytes in `dir` (created if missing) and opens it read-write.
    pub fn create(dir: &Path, size: u64) -> Result<Replica> {
        check_size(size)?;
        fs::create_dir_all(dir).map_err(ReplicaError::io("creating", dir))?;
        if dir.join(names::VOLUME_META).exists() {
            return Err(ReplicaError::AlreadyExists(dir.to_path_buf()));
        }
        let dir_handle = File::open(dir).map_err(ReplicaError::io("opening", dir))?;
        let head = names::head_file(0);
        // volume.meta is written last: until it exists the directory is not a replica, and
        // a create can start over.
        create_sparse(dir, &head, size)?;
        let head_meta = DiskMeta {
            name: head.clone(),
            created: now_rfc3339(),
            ..DiskMeta::default()
        };
        write_meta(
            dir,
            &dir_handle,
            &names::meta_file(&head),
            &head_meta.encode(),
        )?;
        write_meta(
            dir,
            &dir_handle,
            names::REVISION_COUNTER,
            &encode_revision(0),
        )?;
        let volume_meta = VolumeMeta {
            size,
            head,
            dirty: true,
            sector_size: REPLICA_SECTOR_SIZE,
            ..VolumeMeta::default()
        };
        write_meta(dir, &dir_handle, names::VOLUME_META, &volume_meta.encode())?;
        Replica::open(dir, &ReplicaOptions::default())
    }

    /// Opens an existing replica directory.
    pub fn open(dir: &Path, options: &ReplicaOptions) -> Result<Replica> {
        let writable = !options.read_only && options.snapshot.is_none();
        let dir_handle =
            File::open(dir).map_err(ReplicaError::io("opening replica directory", dir))?;
        let (mut layout, mut checksum_warnings) = load_layout(dir)?;
        if writable && !layout.repairs.is_empty() {
            apply_repairs(dir, &dir_handle, &layout.repairs)?;
            let warnings = layout.warnings;
            (layout, checksum_warnings) = load_layout(dir)?;
            layout.warnings = warnings;
        }
        let mut warnings = layout.warnings.clone();
        warnings.append(&mut checksum_warnings);

        let top = match &options.snapshot {
            None => layout.head().to_string(),
            Some(name) => resolve_snapshot(&layout, name)?,
        };
        let chain_names = layout
            .chain_from(&top)
            .map_err(|source| ReplicaError::Format {
                dir: dir.to_path_buf(),
                source,
            })?;
        let chain = open_chain(
            dir,
            chain_names,
            &layout.volume_meta.backing_file_path,
            writable,
        )?;
        let size = layout.volume_meta.size;
        let revision_path = dir.join(names::REVISION_COUNTER);
        let (revision, revision_file) = open_revision(&revision_path, writable)?;
        let mut replica = Replica {
            dir: dir.to_path_buf(),
            dir_handle,
            writable,
            layout,
            chain,
            map: SectorMap::default(),
            size,
            revision,
            revision_file: revision_file.map(std::sync::Arc::new),
            recent_file: if writable {
                Some(open_recent(&dir.join(names::RECENT_WRITES))?)
            } else {
                None
            },
            layer_writes: std::sync::Mutex::new(()),
            warnings,
        };
        replica.rebuild_map()?;
        // The counter file is written at flush: after a crash the ring knows better.
        if let Some(newest) = replica.recent_writes()?.iter().map(|w| w.revision).max() {
            replica.revision = replica.revision.max(newest);
        }
        if writable {
            replica.write_volume_meta(|m| m.dirty = true)?;
        }
        Ok(replica)
    }

    /// Rebuilds the sector map from the allocation of every layer of the chain.
    pub(crate) fn rebuild_map(&mut self) -> Result<()> {
        self.map = SectorMap::new(self.size.div_ceil(SECTOR_SIZE));
        self.restamp(0, self.size)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn revision(&self) -> u64 {
        self.revision
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }
    pub fn is_writable(&self) -> bool {
        self.writable
    }
    /// File names of the chain being read, oldest first.
    pub fn chain(&self) -> Vec<&str> {
        self.chain.iter().map(|l| l.name.as_str()).collect()
    }
    /// Bytes of memory the sector map takes.
    pub fn map_memory_bytes(&self) -> usize {
        self.map.memory_bytes()
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<u64> {
        offset
            .checked_add(len)
            .filter(|end| *end <= self.size)
            .ok_or(ReplicaError::OutOfRange {
                offset,
                len,
                size: self.size,
            })
    }

    /// Runs of sectors covering `[offset, offset+len)` with the layer that owns them
    /// (`None` for sectors no layer holds: they read as zeros).
    pub fn allocation_runs(&self, offset: u64, len: u64) -> Vec<(u64, u64, Option<&str>)> {
        let end = offset.saturating_add(len).min(self.size);
        let (first, count) = sectors_covering(offset, end);
        self.map
            .runs(first, count)
            .map(|run| {
                let (start, stop) = run_bytes(&run, offset, end);
                let layer = usize::from(run.owner)
                    .checked_sub(1)
                    .and_then(|i| self.chain.get(i))
                    .map(|l| l.name.as_str());
                (start, stop - start, layer)
            })
            .collect()
    }

    /// Reads `buf.len()` bytes at `offset` through the chain (any alignment).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.read_through_chain(buf, offset, |file, dst, at| {
            fsio::read_full_at(file, dst, at).map(Some)
        })
        .map(|_| ())
    }

    /// [`Replica::read_at`] served from the page cache only: `Ok(false)` (and `buf` in an
    /// unspecified state) when some of it would have to wait for the disk.
    pub fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        self.read_through_chain(buf, offset, fsio::read_cached_at)
    }

    /// Reads through the chain with `read_file` (bytes read, or `None` to give up).
    fn read_through_chain(
        &self,
        buf: &mut [u8],
        offset: u64,
        read_file: impl Fn(&File, &mut [u8], u64) -> std::io::Result<Option<usize>>,
    ) -> Result<bool> {
        let end = self.check_range(offset, buf.len() as u64)?;
        let (first, count) = sectors_covering(offset, end);
        for run in self.map.runs(first, count) {
            let (start, stop) = run_bytes(&run, offset, end);
            let dst = &mut buf[(start - offset) as usize..(stop - offset) as usize];
            match usize::from(run.owner)
                .checked_sub(1)
                .and_then(|i| self.chain.get(i))
            {
                None => dst.fill(0),
                Some(layer) => {
                    let got = read_file(&layer.file, dst, start)
                        .map_err(ReplicaError::io("reading", self.dir.join(&layer.name)))?;
                    let Some(got) = got else {
                        return Ok(false);
                    };
                    dst[got..].fill(0);
                }
            }
        }
        Ok(true)
    }

    fn head_layer(&self) -> Result<&Layer> {
        if !self.writable {
            return Err(ReplicaError::ReadOnly);
        }
        self.chain.last().ok_or(ReplicaError::ReadOnly)
    }

    fn head_index(&self) -> LayerIndex {
        LayerIndex::try_from(self.chain.len()).unwrap_or(LayerIndex::MAX)
    }

    /// Writes `data` at `offset` into the head. Partial 4 KiB sectors are read through the
    /// chain and written whole, so the head only ever holds whole sectors.
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> Result<()> {
        let end = self.check_range(offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        let head = self.head_layer()?;
        self.record_recent(offset, data.len() as u64)?;
        let aligned_start = offset / SECTOR_SIZE * SECTOR_SIZE;
        let aligned_end = end
            .div_ceil(SECTOR_SIZE)
            .saturating_mul(SECTOR_SIZE)
            .min(self.size.max(end));
        let result = if aligned_start == offset && aligned_end == end {
            fsio::write_in_small_folios(&head.file, data, offset)
        } else {
            let mut buf = vec![0u8; (aligned_end - aligned_start) as usize];
            let first_len = SECTOR_SIZE.min(aligned_end - aligned_start) as usize;
            self.read_at(&mut buf[..first_len], aligned_start)?;
            let last_start = (aligned_end - aligned_start).saturating_sub(SECTOR_SIZE) as usize;
            if last_start > 0 {
                let tail = &mut buf[last_start..];
                self.read_at(tail, aligned_start + last_start as u64)?;
            }
            let at = (offset - aligned_start) as usize;
            buf[at..at + data.len()].copy_from_slice(data);
            fsio::write_in_small_folios(&head.file, &buf, aligned_start)
        };
        let result = result.map_err(|e| (e, head.name.clone()));
        // Stamped even when the write failed, as Longhorn does: the head may hold part of it.
        let (first, count) = sectors_covering(aligned_start, aligned_end);
        let index = self.head_index();
        self.map.stamp(first, count, index);
        result.map_err(|(e, name)| ReplicaError::io("writing", self.dir.join(name))(e))?;
        self.bump_revision()
    }

    /// Deallocates the whole 4 KiB sectors inside `[offset, offset+len)` in the head and in
    /// the removed snapshots directly below it that have no other child (their data can no
    /// longer be seen). Older data shows through afterwards, as in Longhorn. Returns the
    /// bytes deallocated per file.
    pub fn unmap(&mut self, offset: u64, len: u64) -> Result<u64> {
        let end = self.check_range(offset, len)?;
        self.head_layer()?;
        self.record_recent(offset, len)?;
        let start = offset.div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
        let stop = end / SECTOR_SIZE * SECTOR_SIZE;
        if stop <= start {
            self.bump_revision()?;
            return Ok(0);
        }
        let mut punched = 0;
        let mut position = self.chain.len();
        while position > 0 {
            position -= 1;
            let layer = &self.chain[position];
            let is_head = position + 1 == self.chain.len();
            if !is_head {
                let node = self.layout.node(&layer.name);
                let child_count = node.map_or(0, |n| n.children.len());
                if !node.is_some_and(|n| n.meta.removed) || child_count != 1 {
                    break;
                }
            }
            let file_stop = stop.min(layer.len);
            if file_stop > start {
                fsio::punch_hole(&layer.file, start, file_stop - start).map_err(
                    ReplicaError::io("punching a hole in", self.dir.join(&layer.name)),
                )?;
                punched += file_stop - start;
            }
        }
        self.restamp(start, stop)?;
        self.bump_revision()?;
        Ok(punched)
    }

    /// Makes `[offset, offset+len)` read as zeros while allocating as little as it can: whole
    /// sectors are deallocated as [`Replica::unmap`] does, then zeros are written only where an
    /// older snapshot still shows through, and in the partial sectors at the edges.
    pub fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<()> {
        let end = self.check_range(offset, len)?;
        let start = offset.div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
        let stop = end / SECTOR_SIZE * SECTOR_SIZE;
        if stop <= start {
            return self.write_zeroed(offset, end);
        }
        self.write_zeroed(offset, start)?;
        self.write_zeroed(stop, end)?;
        self.unmap(start, stop - start)?;
        let showing_through: Vec<(u64, u64)> = self
            .allocation_runs(start, stop - start)
            .into_iter()
            .filter(|(_, _, owner)| owner.is_some())
            .map(|(at, n, _)| (at, at + n))
            .collect();
        for (at, until) in showing_through {
            self.write_zeroed(at, until)?;
        }
        Ok(())
    }

    /// Writes zeros over `[start, end)` in pieces of at most 1 MiB.
    fn write_zeroed(&mut self, start: u64, end: u64) -> Result<()> {
        const PIECE: u64 = 1 << 20;
        let zeros = vec![0u8; end.saturating_sub(start).min(PIECE) as usize];
        let mut at = start;
        while at < end {
            let n = (end - at).min(PIECE) as usize;
            self.write_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Recomputes the owners of `[start, stop)` from the layers' allocation.
    pub(crate) fn restamp(&mut self, start: u64, stop: u64) -> Result<()> {
        let (first, count) = sectors_covering(start, stop);
        self.map.stamp(first, count, 0);
        for (i, layer) in self.chain.iter().enumerate() {
            let extents = fsio::data_extents(&layer.file, start, stop.min(layer.len)).map_err(
                ReplicaError::io("finding data in", self.dir.join(&layer.name)),
            )?;
            let index = LayerIndex::try_from(i + 1).unwrap_or(LayerIndex::MAX);
            for extent in extents {
                let (f, c) = sectors_covering(extent.start, extent.end);
                self.map.stamp(f, c, index);
            }
        }
        Ok(())
    }

    /// Records the range of the write or unmap about to take the next revision, before any
    /// of its data lands (see `ironhorn_format::recent`).
    fn record_recent(&self, offset: u64, len: u64) -> Result<()> {
        let Some(file) = &self.recent_file else {
            return Ok(());
        };
        let entry = RecentWrite {
            revision: self.revision + 1,
            offset,
            len,
        };
        file.write_all_at(&entry.encode(), entry.slot_offset())
            .map_err(ReplicaError::io(
                "writing",
                self.dir.join(names::RECENT_WRITES),
            ))
    }

    /// The ranges of the replica's last writes and unmaps, newest first.
    pub fn recent_writes(&self) -> Result<Vec<RecentWrite>> {
        let path = self.dir.join(names::RECENT_WRITES);
        let bytes = match &self.recent_file {
            Some(file) => {
                let mut buf = vec![0u8; RING_LEN as usize];
                let got = fsio::read_full_at(file, &mut buf, 0)
                    .map_err(ReplicaError::io("reading", &path))?;
                buf.truncate(got);
                buf
            }
            None => match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(ReplicaError::io("reading", &path)(e)),
            },
        };
        Ok(decode_ring(&bytes))
    }

    /// Counts a write or unmap. The counter file is written at flush and close, not per
    /// write: the recent-writes ring, written before each write's data, already holds the
    /// newest revision, and opening takes the larger of the two (see `Replica::open`).
    fn bump_revision(&mut self) -> Result<()> {
        self.revision += 1;
        Ok(())
    }

    fn write_counter(&self, revision: u64) -> Result<()> {
        if let Some(file) = &self.revision_file {
            file.write_all_at(&encode_revision(revision), 0)
                .map_err(ReplicaError::io(
                    "writing",
                    self.dir.join(names::REVISION_COUNTER),
                ))?;
        }
        Ok(())
    }

    /// Makes every acknowledged write durable (head data and the revision counter).
    pub fn flush(&self) -> Result<()> {
        self.flush_handles()?.sync()
    }

    /// What a flush must sync, detached from the replica so the syncs can run without its
    /// lock (writes go on meanwhile; the sync still covers every write completed before it).
    pub fn flush_handles(&self) -> Result<FlushHandles> {
        let head = self.head_layer()?;
        self.write_counter(self.revision)?;
        Ok(FlushHandles {
            head: head.file.clone(),
            head_path: self.dir.join(&head.name),
            counter: self.revision_file.clone(),
            counter_path: self.dir.join(names::REVISION_COUNTER),
        })
    }

    /// Flushes and marks the replica cleanly closed (`Dirty:false`).
    pub fn close(mut self) -> Result<()> {
        if self.writable {
            self.flush()?;
            self.write_volume_meta(|m| m.dirty = false)?;
        }
        Ok(())
    }

    /// Sets the revision counter (a rebuilt replica takes its source's).
    pub fn set_revision(&mut self, revision: u64) -> Result<()> {
        self.head_layer()?;
        // Ring entries newer than the new revision would raise it again at the next open:
        // they go first (a crash in between leaves the replica looking older, never newer).
        let ring_newest = self.recent_writes()?.iter().map(|w| w.revision).max();
        if ring_newest.is_some_and(|newest| newest > revision) {
            self.clear_recent_writes()?;
        }
        self.revision = revision;
        self.write_counter(revision)?;
        if let Some(file) = &self.revision_file {
            file.sync_data().map_err(ReplicaError::io(
                "flushing",
                self.dir.join(names::REVISION_COUNTER),
            ))?;
        }
        Ok(())
    }

    fn clear_recent_writes(&self) -> Result<()> {
        if let Some(ring) = &self.recent_file {
            ring.write_all_at(&vec![0u8; RING_LEN as usize], 0)
                .and_then(|()| ring.sync_data())
                .map_err(ReplicaError::io(
                    "clearing",
                    self.dir.join(names::RECENT_WRITES),
                ))?;
        }
        Ok(())
    }

    /// Forgets where the last writes went, for an engine that stopped cleanly (every
    /// acknowledged write flushed on every replica it kept): the next start then has nothing
    /// to reconcile. The revision is made durable in the counter file first, as the ring no
    /// longer holds it.
    pub fn forget_recent_writes(&mut self) -> Result<()> {
        self.head_layer()?;
        self.set_revision(self.revision)?;
        self.clear_recent_writes()
    }

    /// Sets or clears the `Rebuilding` flag.
    pub fn set_rebuilding(&mut self, rebuilding: bool) -> Result<()> {
        self.head_layer()?;
        self.write_volume_meta(|m| m.rebuilding = rebuilding)
    }

    /// Rewrites `volume.meta` atomically with `change` applied.
    pub(crate) fn write_volume_meta(&mut self, change: impl FnOnce(&mut VolumeMeta)) -> Result<()> {
        let mut meta = self.layout.volume_meta.clone();
        change(&mut meta);
        write_meta(
            &self.dir,
            &self.dir_handle,
            names::VOLUME_META,
            &meta.encode(),
        )?;
        self.layout.volume_meta = meta;
        Ok(())
    }
}

/// Opens the layers `names` under `dir`, bottom first, with the volume's backing file (if it
/// has one) below them.
pub(crate) fn open_chain(
    dir: &Path,
    names: Vec<String>,
    backing_file: &str,
    writable: bool,
) -> Result<Vec<Layer>> {
    let mut chain = Vec::with_capacity(names.len() + 1);
    if let Some(backing) = open_backing(backing_file)? {
        chain.push(backing);
    }
    for name in names {
        let path = dir.join(&name);
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(ReplicaError::io("opening layer", &path))?;
        let len = file
            .metadata()
            .map_err(ReplicaError::io("inspecting", &path))?
            .len();
        chain.push(Layer {
            name,
            file: file.into(),
            len,
        });
    }
    Ok(chain)
}

/// The backing image named in `volume.meta`, opened read-only as the oldest layer (Longhorn's
/// layer index 1). Raw images only.
pub(crate) fn open_backing(path: &str) -> Result<Option<Layer>> {
    if path.is_empty() {
        return Ok(None);
    }
    let fail = |reason: String| ReplicaError::BackingFile {
        path: PathBuf::from(path),
        reason,
    };
    let file = File::open(path).map_err(|e| {
        fail(format!(
            "{e} (the replica's volume.meta names it; copy the backing image to that path)"
        ))
    })?;
    let mut magic = [0u8; 4];
    let got = fsio::read_full_at(&file, &mut magic, 0).map_err(|e| fail(e.to_string()))?;
    if got == 4 && magic == *b"QFI\xfb" {
        return Err(fail(
            "it is a qcow2 image, which is not supported yet: convert it with `qemu-img convert -O raw` and point volume.meta's BackingFilePath at the raw copy".into(),
        ));
    }
    let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
    Ok(Some(Layer {
        name: format!("backing:{path}"),
        file: file.into(),
        len,
    }))
}

/// Byte range of a run clipped to `[offset, end)`.
fn run_bytes(run: &Run, offset: u64, end: u64) -> (u64, u64) {
    let start = (run.first_sector * SECTOR_SIZE).max(offset);
    let stop = ((run.first_sector + run.sectors) * SECTOR_SIZE).min(end);
    (start, stop)
}

pub(crate) fn load_layout(dir: &Path) -> Result<(Layout, Vec<Warning>)> {
    let (facts, checksum_warnings) = scan_dir(dir)?;
    let layout = analyze(&facts).map_err(|source| ReplicaError::Format {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok((layout, checksum_warnings))
}

fn resolve_snapshot(layout: &Layout, name: &str) -> Result<String> {
    if name == names::HEAD_DISPLAY_NAME {
        return Ok(layout.head().to_string());
    }
    let file = names::snapshot_file(name);
    if layout.layers.contains_key(&file) {
        return Ok(file);
    }
    Err(unknown_snapshot(layout, name))
}

/// No snapshot `name`: the error names the ones there are.
pub(crate) fn unknown_snapshot(layout: &Layout, name: &str) -> ReplicaError {
    let known: Vec<String> = layout
        .layers
        .keys()
        .filter(|f| names::snapshot_name(f).is_some())
        .map(|f| names::display_name(f))
        .collect();
    ReplicaError::UnknownSnapshot {
        name: name.to_string(),
        known: if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        },
    }
}

fn apply_repairs(dir: &Path, dir_handle: &File, repairs: &[Repair]) -> Result<()> {
    // Reparent before removing: the removed metas are what made the parent resolvable.
    for repair in repairs {
        if let Repair::Reparent { layer, parent } = repair {
            let meta_name = names::meta_file(layer);
            let path = dir.join(&meta_name);
            let bytes = fs::read(&path).map_err(ReplicaError::io("reading", &path))?;
            let mut meta =
                DiskMeta::decode(&meta_name, &bytes).map_err(|source| ReplicaError::Format {
                    dir: dir.to_path_buf(),
                    source,
                })?;
            meta.parent = parent.clone();
            meta.name = layer.clone();
            write_meta(dir, dir_handle, &meta_name, &meta.encode())?;
        }
    }
    for repair in repairs {
        if let Repair::RemoveFile(file) = repair {
            tracing::info!(dir = %dir.display(), file, "removing what an interrupted operation left");
            fsio::remove_if_exists(dir, file)
                .map_err(ReplicaError::io("removing", dir.join(file)))?;
        }
    }
    dir_handle
        .sync_all()
        .map_err(ReplicaError::io("syncing", dir))
}

/// Opens a replica-level file read-write, creating it (owner-only) when missing.
fn open_or_create(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(ReplicaError::io("opening", path))
}

fn open_recent(path: &Path) -> Result<File> {
    let file = open_or_create(path)?;
    let len = file
        .metadata()
        .map_err(ReplicaError::io("inspecting", path))?
        .len();
    if len < RING_LEN {
        file.set_len(RING_LEN)
            .map_err(ReplicaError::io("sizing", path))?;
    }
    Ok(file)
}

fn open_revision(path: &Path, writable: bool) -> Result<(u64, Option<File>)> {
    if !writable {
        return match fs::read(path) {
            Ok(bytes) => Ok((
                decode_revision(names::REVISION_COUNTER, &bytes).unwrap_or(0),
                None,
            )),
            Err(_) => Ok((0, None)),
        };
    }
    let file = open_or_create(path)?;
    let mut bytes = vec![0u8; 4096];
    let got =
        fsio::read_full_at(&file, &mut bytes, 0).map_err(ReplicaError::io("reading", path))?;
    let value = decode_revision(names::REVISION_COUNTER, &bytes[..got]).map_err(|source| {
        ReplicaError::Format {
            dir: path.parent().unwrap_or(path).to_path_buf(),
            source,
        }
    })?;
    if got < 4096 {
        file.write_all_at(&encode_revision(value), 0)
            .and_then(|()| file.sync_all())
            .map_err(ReplicaError::io("writing", path))?;
    }
    Ok((value, Some(file)))
}

pub(crate) fn write_meta(dir: &Path, dir_handle: &File, name: &str, bytes: &[u8]) -> Result<()> {
    fsio::atomic_write(dir, dir_handle, name, bytes)
        .map_err(ReplicaError::io("writing", dir.join(name)))
}

/// Creates a new fully sparse image file of `size` bytes (fails if it exists).
pub(crate) fn create_sparse(dir: &Path, name: &str, size: u64) -> Result<File> {
    let path = dir.join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .map_err(ReplicaError::io("creating", &path))?;
    file.set_len(size)
        .and_then(|()| file.sync_all())
        .map_err(ReplicaError::io("sizing", &path))?;
    Ok(file)
}
