//! The FUSE side of the fuse-loop backend: a filesystem with one file, `device`, whose bytes
//! are the volume. Requests are handed to the async runtime, so many are in flight at once;
//! the file is opened with direct I/O (no page cache: the loop device above it has none
//! either).
//!
//! fallocate is how the loop driver passes discards and write-zeroes down: both arrive as
//! `PUNCH_HOLE | KEEP_SIZE` (and write-zeroes without unmap as `ZERO_RANGE`). A punched range
//! must read back as zeros, so both become the engine's write-zeroes, which deallocates the
//! range in every replica (writing zeros only where an older snapshot would show through).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request, WriteFlags,
};
use ironhorn_engine::{BlockDevice, DeviceError};

/// The one file's name.
pub const FILE_NAME: &str = "device";
const FILE_INODE: INodeNo = INodeNo(2);
/// Attributes are not cached: the size changes when the volume is expanded.
const NO_CACHE: Duration = Duration::ZERO;
/// Largest read or write the kernel sends in one request.
const MAX_IO: u32 = 1 << 20;

/// `fallocate` modes (linux/falloc.h).
const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

/// What an fallocate call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallocate {
    /// The range must read as zeros afterwards (punch hole, zero range).
    Zero,
    /// Plain preallocation: nothing to do for a volume whose size is fixed.
    Allocate,
    Unsupported,
}

/// Classifies an fallocate `mode`.
pub fn classify_fallocate(mode: i32) -> Fallocate {
    match mode {
        m if m == FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE => Fallocate::Zero,
        m if m & !FALLOC_FL_KEEP_SIZE == FALLOC_FL_ZERO_RANGE => Fallocate::Zero,
        0 | FALLOC_FL_KEEP_SIZE => Fallocate::Allocate,
        _ => Fallocate::Unsupported,
    }
}

/// The errno a device error becomes.
fn errno(e: &DeviceError) -> Errno {
    match e {
        DeviceError::OutOfRange { .. } => Errno::EINVAL,
        DeviceError::ReadOnly => Errno::EROFS,
        DeviceError::NoSpace(_) => Errno::ENOSPC,
        DeviceError::Io(_) => Errno::EIO,
    }
}

/// The filesystem: `/device` backed by a block device.
pub struct VolumeFile {
    device: Arc<dyn BlockDevice>,
    runtime: tokio::runtime::Handle,
    volume: String,
}

impl std::fmt::Debug for VolumeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeFile")
            .field("volume", &self.volume)
            .finish()
    }
}

impl VolumeFile {
    pub fn new(
        volume: &str,
        device: Arc<dyn BlockDevice>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        VolumeFile {
            device,
            runtime,
            volume: volume.to_string(),
        }
    }

    fn attr(&self, inode: INodeNo) -> FileAttr {
        let now = SystemTime::now();
        let (kind, perm, size, nlink) = if inode == FILE_INODE {
            (FileType::RegularFile, 0o600, self.device.size(), 1)
        } else {
            (FileType::Directory, 0o700, 0, 2)
        };
        FileAttr {
            ino: inode,
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Runs `work` on the runtime; it replies when done.
    fn spawn<F>(&self, work: impl FnOnce(Arc<dyn BlockDevice>) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn(work(self.device.clone()));
    }

    /// Flushes the volume, then answers.
    fn flush_then(&self, reply: ReplyEmpty) {
        self.spawn(|device| async move {
            match device.flush().await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }
}

impl Filesystem for VolumeFile {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each is an optimisation the kernel may lack; none is needed for correctness.
        let _ = config.set_max_write(MAX_IO);
        let _ = config.set_max_readahead(MAX_IO);
        let _ = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO);
        let _ = config.set_max_background(128);
        let _ = config.set_congestion_threshold(96);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == FILE_NAME {
            reply.entry(&NO_CACHE, &self.attr(FILE_INODE), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT || ino == FILE_INODE {
            reply.attr(&NO_CACHE, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // The size is the volume's: it changes with `ironhorn volume expand`, not truncate.
        if size.is_some_and(|s| s != self.device.size()) {
            reply.error(Errno::EPERM);
        } else {
            reply.attr(&NO_CACHE, &self.attr(ino));
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino != FILE_INODE {
            reply.error(Errno::EISDIR);
            return;
        }
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let len = self
            .device
            .size()
            .saturating_sub(offset)
            .min(u64::from(size)) as usize;
        if len == 0 {
            reply.data(&[]);
            return;
        }
        self.spawn(|device| async move {
            match device.read(offset, len).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let fits = offset
            .checked_add(data.len() as u64)
            .is_some_and(|end| end <= self.device.size());
        if !fits {
            reply.error(Errno::ENOSPC);
            return;
        }
        let data = data.to_vec();
        let written = data.len() as u32;
        self.spawn(|device| async move {
            match device.write(data, offset, false).await {
                Ok(()) => reply.written(written),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Called at each close; durability is fsync's job, but a close should not lose it.
        self.flush_then(reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.flush_then(reply);
    }

    #[allow(clippy::too_many_arguments)]
    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let in_range = offset
            .checked_add(length)
            .is_some_and(|end| end <= self.device.size());
        tracing::debug!(volume = self.volume, offset, length, mode, "fallocate");
        match classify_fallocate(mode) {
            Fallocate::Unsupported => reply.error(Errno::EOPNOTSUPP),
            _ if !in_range => reply.error(Errno::EINVAL),
            Fallocate::Allocate => reply.ok(),
            Fallocate::Zero => self.spawn(|device| async move {
                match device.write_zeroes(offset, length).await {
                    Ok(()) => reply.ok(),
                    Err(e) => {
                        reply.error(errno(&e));
                    }
                }
            }),
        }
    }

    /// No extended attributes (the kernel asks for security labels at each write).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (FILE_INODE, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (inode, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*inode, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallocate_modes_are_classified_as_the_loop_driver_sends_them() {
        assert_eq!(classify_fallocate(0x02 | 0x01), Fallocate::Zero);
        assert_eq!(classify_fallocate(0x10), Fallocate::Zero);
        assert_eq!(classify_fallocate(0x10 | 0x01), Fallocate::Zero);
        assert_eq!(classify_fallocate(0), Fallocate::Allocate);
        assert_eq!(classify_fallocate(0x01), Fallocate::Allocate);
        // A punch without KEEP_SIZE is invalid for fallocate(2); collapse and insert change
        // the size.
        assert_eq!(classify_fallocate(0x02), Fallocate::Unsupported);
        assert_eq!(classify_fallocate(0x08), Fallocate::Unsupported);
        assert_eq!(classify_fallocate(0x20), Fallocate::Unsupported);
    }
}
