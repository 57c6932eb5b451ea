//! File-system primitives the store is built on: positional I/O that tolerates short files,
//! allocation queries (SEEK_DATA/SEEK_HOLE), hole punching and durable atomic replacement.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use ironhorn_format::sector_map::Extent;
use rustix::fs::{FallocateFlags, SeekFrom};

/// Reads into `buf` from `offset` until it is full or the file ends; returns bytes read.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Like [`read_full_at`], but only from the page cache (`RWF_NOWAIT`): `None` when some of the
/// bytes would have to come from the disk. Lets an async caller serve cached reads on its own
/// thread and send only the rest to a blocking pool.
pub fn read_cached_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<Option<usize>> {
    use rustix::io::{preadv2, Errno, ReadWriteFlags};
    let mut done = 0;
    while done < buf.len() {
        let mut slice = [io::IoSliceMut::new(&mut buf[done..])];
        match preadv2(
            file,
            &mut slice,
            offset + done as u64,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) | Err(Errno::OPNOTSUPP) | Err(Errno::NOSYS) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(done))
}

/// Allocated byte ranges of `file` within `[start, end)`, found with SEEK_DATA/SEEK_HOLE.
pub fn data_extents(file: &File, start: u64, end: u64) -> io::Result<Vec<Extent>> {
    let mut extents = Vec::new();
    let mut pos = start;
    while pos < end {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if data >= end {
            break;
        }
        let hole = match rustix::fs::seek(file, SeekFrom::Hole(data)) {
            Ok(h) => h,
            Err(rustix::io::Errno::NXIO) => end,
            Err(e) => return Err(e.into()),
        };
        let stop = hole.min(end);
        extents.push(Extent {
            start: data,
            end: stop,
        });
        if hole <= data {
            break;
        }
        pos = stop;
    }
    Ok(extents)
}

/// Deallocates `[offset, offset+len)` keeping the file size.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    rustix::fs::fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    )?;
    Ok(())
}

/// Writes `bytes` to `dir/name` so that a crash leaves either the old or the new content:
/// `name.tmp`, fsync, rename over `name`, fsync the directory.
pub fn atomic_write(dir: &Path, dir_handle: &File, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all_at(bytes, 0)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    dir_handle.sync_all()
}

/// Removes `dir/name` if it exists.
pub fn remove_if_exists(dir: &Path, name: &str) -> io::Result<bool> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copies every allocated range of `src` into `dst` at the same offsets (holes stay holes).
pub fn copy_extents(src: &File, dst: &File, extents: &[Extent]) -> io::Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut copied = 0;
    for extent in extents {
        let mut pos = extent.start;
        while pos < extent.end {
            let n = (extent.end - pos).min(CHUNK) as usize;
            let got = read_full_at(src, &mut buf[..n], pos)?;
            buf[got..n].fill(0);
            dst.write_all_at(&buf[..n], pos)?;
            pos += n as u64;
            copied += n as u64;
        }
    }
    Ok(copied)
}

/// Page-cache writes go in pieces of at most this size (see [`write_in_small_folios`]).
pub const FOLIO_WRITE_MAX: usize = 64 << 10;

/// Writes `data` at `offset` in pieces of at most [`FOLIO_WRITE_MAX`], each ending on a
/// multiple of it. ext4 (Linux 6.16 on) gives a buffered write a page-cache folio as large as
/// the write; every later 4 KiB write into a 1 MiB folio then walks its 256 block buffers,
/// which made 4 KiB random writes after a sequential fill cost twice the CPU (measured:
/// 7.1k against 16k IOPS on 3 replicas). Small folios keep random writes cheap.
pub fn write_in_small_folios(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let at = offset + done as u64;
        let to_boundary = FOLIO_WRITE_MAX - (at % FOLIO_WRITE_MAX as u64) as usize;
        let n = to_boundary.min(data.len() - done);
        file.write_all_at(&data[done..done + n], at)?;
        done += n;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An empty read-write file in a directory removed when the first value is dropped.
    pub(crate) fn scratch_file() -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        (dir, file)
    }

    #[test]
    fn extents_and_holes() {
        let (_dir, file) = scratch_file();
        file.set_len(1 << 20).unwrap();
        assert!(data_extents(&file, 0, 1 << 20).unwrap().is_empty());
        file.write_all_at(&[1u8; 4096], 8192).unwrap();
        file.write_all_at(&[0u8; 4096], 65536).unwrap();
        let ext = data_extents(&file, 0, 1 << 20).unwrap();
        assert_eq!(
            ext,
            [
                Extent {
                    start: 8192,
                    end: 12288
                },
                Extent {
                    start: 65536,
                    end: 69632
                }
            ]
        );
        punch_hole(&file, 8192, 4096).unwrap();
        assert_eq!(
            data_extents(&file, 0, 1 << 20).unwrap(),
            [Extent {
                start: 65536,
                end: 69632
            }]
        );
        let mut buf = [7u8; 100];
        assert_eq!(read_full_at(&file, &mut buf, (1 << 20) - 10).unwrap(), 10);
    }

    #[test]
    fn small_folio_writes_land_whole_at_any_offset() {
        let (_dir, file) = scratch_file();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        write_in_small_folios(&file, &data, 12_288).unwrap();
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, 12_288).unwrap();
        assert!(back == data);
        assert_eq!(file.metadata().unwrap().len(), 12_288 + data.len() as u64);
    }
}
