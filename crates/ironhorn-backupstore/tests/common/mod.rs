//! Test doubles for the two ends of the backupstore: an in-memory snapshot history as the
//! block source and an in-memory volume as the sink. The target side is always real.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ironhorn_backupstore::driver::file::FileDriver;
use ironhorn_backupstore::{BackupTarget, BlockSink, BlockSource, TargetUrl};

pub const MIB: u64 = 1 << 20;
pub const BLOCK: u64 = 2 * MIB;

/// A volume's snapshots in memory: each snapshot's image and the blocks written since the
/// snapshot before it (for the delta).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub snapshots: Vec<(String, Vec<u8>, Vec<u64>)>,
}

impl History {
    pub fn take(&mut self, name: &str, image: &[u8], written: Vec<u64>) {
        self.snapshots
            .push((name.to_string(), image.to_vec(), written));
    }

    pub fn source(&self, snapshot: &str) -> Arc<dyn BlockSource> {
        let idx = self
            .snapshots
            .iter()
            .position(|s| s.0 == snapshot)
            .expect("snapshot exists");
        Arc::new(HistorySource {
            history: self.snapshots[..=idx].to_vec(),
        })
    }
}

struct HistorySource {
    history: Vec<(String, Vec<u8>, Vec<u64>)>,
}

impl BlockSource for HistorySource {
    fn size(&self) -> u64 {
        self.history.last().map_or(0, |s| s.1.len() as u64)
    }
    fn changed_blocks(
        &self,
        base: Option<&str>,
        block_size: u64,
    ) -> Result<Option<Vec<u64>>, String> {
        let start = match base {
            None => 0,
            Some(b) => match self.history.iter().position(|s| s.0 == b) {
                Some(i) => i + 1,
                None => return Ok(None),
            },
        };
        let mut blocks: Vec<u64> = self.history[start..]
            .iter()
            .flat_map(|s| s.2.iter().map(|o| o / block_size * block_size))
            .collect();
        blocks.sort_unstable();
        blocks.dedup();
        Ok(Some(blocks))
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        let image = &self.history.last().ok_or("empty")?.1;
        let start = usize::try_from(offset).map_err(|e| e.to_string())?;
        let src = image
            .get(start..start + buf.len())
            .ok_or("read out of range")?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A volume in memory that records every write.
#[derive(Debug)]
pub struct MemSink {
    pub data: Mutex<Vec<u8>>,
    pub writes: Mutex<Vec<u64>>,
}

impl MemSink {
    pub fn new(size: u64) -> Arc<MemSink> {
        Arc::new(MemSink {
            data: Mutex::new(vec![0; size as usize]),
            writes: Mutex::new(Vec::new()),
        })
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.data.lock().expect("lock").clone()
    }
}

impl BlockSink for MemSink {
    fn size(&self) -> u64 {
        self.data.lock().map(|d| d.len() as u64).unwrap_or(0)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        let mut d = self.data.lock().map_err(|e| e.to_string())?;
        let start = offset as usize;
        d.get_mut(start..start + data.len())
            .ok_or("write out of range")?
            .copy_from_slice(data);
        self.writes.lock().map_err(|e| e.to_string())?.push(offset);
        Ok(())
    }
    fn zero(&self, offset: u64, len: u64) -> Result<(), String> {
        let mut d = self.data.lock().map_err(|e| e.to_string())?;
        let start = offset as usize;
        d.get_mut(start..start + len as usize)
            .ok_or("zero out of range")?
            .fill(0);
        Ok(())
    }
}

/// A file target at `dir` with a short lock settle time (the protocol is unchanged).
pub fn file_target(dir: &Path) -> BackupTarget {
    let driver = Arc::new(FileDriver::open(dir).expect("open target"));
    let mut t = BackupTarget::with_driver(
        TargetUrl::File {
            path: dir.to_path_buf(),
        },
        driver,
    );
    t.lock_settle = Duration::from_millis(20);
    t.lock_wait = Duration::ZERO;
    t
}

/// Deterministic, partly compressible bytes: text-like and noise pages, every 4 KiB page
/// stamped with `seed` and its index so no two pages (or blocks) are alike.
pub fn pattern(len: u64, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let base: Vec<u8> = (0..MIB)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i / 4096) % 2 == 0 {
                b"the quick brown fox "[(i % 20) as usize]
            } else {
                (x >> 24) as u8
            }
        })
        .collect();
    let mut out: Vec<u8> = base.iter().copied().cycle().take(len as usize).collect();
    for (page, chunk) in out.chunks_mut(4096).enumerate() {
        let stamp = [seed.to_le_bytes(), (page as u64).to_le_bytes()].concat();
        let n = stamp.len().min(chunk.len());
        chunk[..n].copy_from_slice(&stamp[..n]);
    }
    out
}

pub fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), "test".to_string())])
}
