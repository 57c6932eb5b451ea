//! The ublk backend: `/dev/ublkbN` from the kernel's ublk driver (`ublk_drv`, Linux 6.0+),
//! served by this process through io_uring (messages in [`ironhorn_proto::ublk`]).
//!
//! One queue thread owns the device's only hardware queue: it hands each request the
//! driver fetches to the volume on the async runtime, and commits results as they come back
//! (woken by an eventfd), so many requests are in flight at once. The data moves through
//! one buffer per tag that only the queue thread touches: writes are copied out before the
//! volume sees them, reads copied in before the commit.
//!
//! Each device carries a token of this node's run directory (`ublksrv_flags`), and a record
//! file in that directory names its volume and device number, so cleanup at start removes
//! exactly the devices an earlier run of this node left.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use ironhorn_engine::{BlockDevice, DeviceError};
use ironhorn_proto::ublk::{self as cmd, ControlCmd, DevInfo, IoDesc};

use super::kernel_device::{self, wait_for, KernelDevice};
use super::zeroing::{CountingDevice, ZeroingActivity};
use super::{links, mounts, BlockdevError, BlockdevErrorKind, BlockdevPaths};

pub const CONTROL_DEVICE: &str = "/dev/ublk-control";
/// Requests in flight at once (tags).
const QUEUE_DEPTH: u16 = 64;
/// The largest request, and so each tag's buffer.
const MAX_IO_BYTES: u32 = 512 << 10;
/// `user_data` of the eventfd read (tags are below it).
const WAKE: u64 = u64::MAX;

/// `/dev/ublk-control` and a ring to send it commands.
struct Control {
    file: File,
    ring: Mutex<IoUring<squeue::Entry128, cqueue::Entry>>,
    /// Whether the driver takes ioctl-encoded opcodes.
    encoded: bool,
    features: u64,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("encoded", &self.encoded)
            .field("features", &self.features)
            .finish()
    }
}

fn errno_text(result: i32) -> String {
    std::io::Error::from_raw_os_error(-result).to_string()
}

impl Control {
    fn open() -> Result<Control, BlockdevError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(CONTROL_DEVICE)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    BlockdevError::new(BlockdevErrorKind::Unavailable,
                        "the kernel ublk driver is not loaded (modprobe ublk_drv; Linux 6.0 or later)",
                    )
                } else {
                    BlockdevError::new(BlockdevErrorKind::Unavailable, format!("opening {CONTROL_DEVICE}")).because(e)
                }
            })?;
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .build(4)
            .map_err(BlockdevError::by(
                BlockdevErrorKind::Unavailable,
                "making an io_uring",
            ))?;
        let mut control = Control {
            file,
            ring: Mutex::new(ring),
            encoded: true,
            features: 0,
        };
        // GET_FEATURES (Linux 6.5+) answers only in the encoded form; older drivers take the
        // plain opcodes and have none of the features asked about here.
        let mut features = [0u8; 8];
        if control
            .command(
                cmd::CMD_GET_FEATURES,
                ControlCmd::for_device(0),
                Some(&mut features),
            )
            .is_ok()
        {
            control.features = u64::from_ne_bytes(features);
        }
        control.encoded = control.features & cmd::F_CMD_IOCTL_ENCODE != 0;
        Ok(control)
    }

    /// Sends control command `nr` with `header` (its buffer, if any, is `buffer`) and
    /// waits for the driver's result: the non-negative result, or the negative errno.
    #[allow(unsafe_code)]
    fn command(
        &self,
        nr: u8,
        mut header: ControlCmd,
        buffer: Option<&mut [u8]>,
    ) -> Result<i32, i32> {
        if let Some(buffer) = &buffer {
            header.addr = buffer.as_ptr() as u64;
            header.len = buffer.len() as u16;
        }
        let mut data = [0u8; 80];
        data[..cmd::CTRL_CMD_LEN].copy_from_slice(&header.encode());
        let entry = opcode::UringCmd80::new(
            types::Fd(self.file.as_raw_fd()),
            cmd::control_op(nr, self.encoded),
        )
        .cmd(data)
        .build()
        .user_data(u64::from(nr));
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the command's buffer (`buffer`, borrowed for this whole call) stays valid
        // until its completion is reaped below, before this function returns.
        unsafe { ring.submission().push(&entry) }.map_err(|_| -libc::EBUSY)?;
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(-e.raw_os_error().unwrap_or(libc::EIO)),
            }
            if let Some(cqe) = ring.completion().next() {
                let result = cqe.result();
                return if result < 0 { Err(result) } else { Ok(result) };
            }
        }
    }

    fn failed(&self, what: &str, result: i32) -> BlockdevError {
        BlockdevError::new(BlockdevErrorKind::Failed, format!("ublk {what}"))
            .because(std::io::Error::from_raw_os_error(-result))
    }

    fn device_info(&self, dev_id: u32) -> Result<DevInfo, i32> {
        let mut info = [0u8; cmd::DEV_INFO_LEN];
        self.command(
            cmd::CMD_GET_DEV_INFO,
            ControlCmd::for_device(dev_id),
            Some(&mut info),
        )?;
        Ok(DevInfo::decode(&info))
    }

    fn stop_and_delete(&self, dev_id: u32) -> Result<(), BlockdevError> {
        // STOP fails harmlessly on a device that never started or already stopped.
        let _ = self.command(cmd::CMD_STOP_DEV, ControlCmd::for_device(dev_id), None);
        self.command(cmd::CMD_DEL_DEV, ControlCmd::for_device(dev_id), None)
            .map(|_| ())
            .map_err(|e| self.failed(&format!("deleting device {dev_id}"), e))
    }
}

/// Whether the kernel's ublk driver is there, and its feature flags (0 before Linux 6.5).
pub fn available() -> Result<u64, BlockdevError> {
    Control::open().map(|c| c.features)
}

/// Whether a live device can take a new size (`UBLK_F_UPDATE_SIZE`).
pub fn can_resize(features: u64) -> bool {
    features & cmd::F_UPDATE_SIZE != 0
}

/// This node's token (FNV-1a of its run directory), kept in each device it makes.
fn node_token(paths: &BlockdevPaths) -> u64 {
    let text = paths.run_dir.to_string_lossy();
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn record_path(paths: &BlockdevPaths, dev_id: u32) -> PathBuf {
    paths.run_dir.join(format!("ublk-{dev_id}"))
}

/// What a finished request hands back to the queue thread.
struct Done {
    tag: u16,
    result: i32,
    read: Option<Vec<u8>>,
}

fn errno_of(e: &DeviceError) -> i32 {
    match e {
        DeviceError::OutOfRange { .. } => -libc::EINVAL,
        DeviceError::ReadOnly => -libc::EROFS,
        DeviceError::NoSpace(_) => -libc::ENOSPC,
        DeviceError::Io(_) => -libc::EIO,
    }
}

/// Carries out one request on the volume.
async fn serve(
    device: Arc<dyn BlockDevice>,
    desc: IoDesc,
    write: Option<Vec<u8>>,
) -> (i32, Option<Vec<u8>>) {
    let len = desc.len;
    let outcome = match desc.op {
        cmd::OP_READ => match device.read(desc.offset, len as usize).await {
            Ok(data) => return (i32::try_from(len).unwrap_or(i32::MAX), Some(data)),
            Err(e) => Err(e),
        },
        cmd::OP_WRITE => {
            device
                .write(write.unwrap_or_default(), desc.offset, desc.fua)
                .await
        }
        cmd::OP_FLUSH => device.flush().await,
        cmd::OP_DISCARD => device.trim(desc.offset, len).await,
        cmd::OP_WRITE_ZEROES => device.write_zeroes(desc.offset, len).await,
        _ => return (-libc::EOPNOTSUPP, None),
    };
    // Only a read or write reports its bytes (at most a tag's buffer): a discard may span
    // gigabytes, more than the result's i32 holds, and the driver reads anything
    // non-negative as success for it.
    let done = match desc.op {
        cmd::OP_WRITE => i32::try_from(len).unwrap_or(i32::MAX),
        _ => 0,
    };
    match outcome {
        Ok(()) => (done, None),
        Err(e) => {
            tracing::warn!(error = %e, offset = desc.offset, len, op = desc.op, "a ublk request failed");
            (errno_of(&e), None)
        }
    }
}

/// The queue's descriptors, mapped read-only from `/dev/ublkcN`.
struct Descriptors {
    base: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, read only through `get`.
#[allow(unsafe_code)]
unsafe impl Send for Descriptors {}

impl Descriptors {
    #[allow(unsafe_code)]
    fn map(char_device: &File, depth: u16) -> Result<Descriptors, BlockdevError> {
        let len = cmd::desc_map_len(depth, rustix::param::page_size());
        // SAFETY: a new shared read-only mapping of the driver's descriptor array for queue
        // 0, at an address the kernel chooses; nothing else aliases it mutably from here.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::SHARED | rustix::mm::MapFlags::POPULATE,
                char_device.as_fd(),
                0,
            )
        }
        .map_err(BlockdevError::by(
            BlockdevErrorKind::Failed,
            "mapping the ublk descriptors",
        ))?;
        Ok(Descriptors { base, len })
    }

    #[allow(unsafe_code)]
    fn get(&self, tag: u16) -> IoDesc {
        let at = usize::from(tag) * cmd::IO_DESC_LEN;
        let mut bytes = [0u8; cmd::IO_DESC_LEN];
        if at + cmd::IO_DESC_LEN <= self.len {
            // SAFETY: in bounds of the mapping (checked above); the driver wrote this tag's
            // descriptor before completing its fetch, and does not change it until the
            // commit. A volatile read, as the memory is shared with the kernel.
            bytes = unsafe {
                std::ptr::read_volatile(
                    self.base
                        .cast::<u8>()
                        .add(at)
                        .cast::<[u8; cmd::IO_DESC_LEN]>(),
                )
            };
        }
        IoDesc::decode(&bytes)
    }
}

impl Drop for Descriptors {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once, after the last `get`.
        let _ = unsafe { rustix::mm::munmap(self.base, self.len) };
    }
}

/// What the queue thread needs.
struct Queue {
    char_device: File,
    descriptors: Descriptors,
    encoded: bool,
    volume: Arc<dyn BlockDevice>,
    runtime: tokio::runtime::Handle,
    wake: Arc<OwnedFd>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Queue {
    fn io_entry(&self, nr: u8, tag: u16, result: i32, buffer: &[u8]) -> squeue::Entry128 {
        let mut data = [0u8; 80];
        data[..cmd::IO_CMD_LEN].copy_from_slice(&cmd::io_cmd(
            0,
            tag,
            result,
            buffer.as_ptr() as u64,
        ));
        opcode::UringCmd80::new(
            types::Fd(self.char_device.as_raw_fd()),
            cmd::io_op(nr, self.encoded),
        )
        .cmd(data)
        .build()
        .user_data(u64::from(tag))
    }

    /// Fetches every tag, says so on `ready`, then serves requests until the device stops.
    #[allow(unsafe_code)]
    fn run(self, ready: mpsc::Sender<Result<(), String>>) {
        let depth = usize::from(QUEUE_DEPTH);
        let mut ring = match IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .build(u32::from(QUEUE_DEPTH) * 2)
        {
            Ok(ring) => ring,
            Err(e) => {
                let _ = ready.send(Err(format!("making the queue's io_uring: {e}")));
                return;
            }
        };
        let mut buffers: Vec<Vec<u8>> = (0..depth)
            .map(|_| vec![0u8; MAX_IO_BYTES as usize])
            .collect();
        let mut wake_count = [0u8; 8];
        let wake_count = wake_count.as_mut_ptr();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let wake_read = || {
            opcode::Read::new(types::Fd(self.wake.as_raw_fd()), wake_count, 8)
                .build()
                .user_data(WAKE)
        };
        let mut pending: Vec<squeue::Entry128> = (0..QUEUE_DEPTH)
            .map(|tag| self.io_entry(cmd::IO_FETCH_REQ, tag, 0, &buffers[usize::from(tag)]))
            .collect();
        pending.push(wake_read().into());
        let mut fetched = false;
        let mut aborted = vec![false; depth];
        let mut in_flight = 0usize;
        loop {
            for entry in pending.drain(..) {
                // SAFETY: every buffer an entry names (the tag buffers, the eventfd count)
                // lives until this function returns, after the ring is dropped.
                while unsafe { ring.submission().push(&entry) }.is_err() {
                    if let Err(e) = ring.submit() {
                        tracing::error!(error = %e, "submitting ublk commands");
                        return;
                    }
                }
            }
            let submitted = ring.submit_and_wait(if fetched { 1 } else { 0 });
            if let Err(e) = submitted {
                if e.raw_os_error() != Some(libc::EINTR) {
                    tracing::error!(error = %e, "waiting for ublk requests");
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            }
            if !fetched {
                fetched = true;
                let _ = ready.send(Ok(()));
                continue;
            }
            let completions: Vec<(u64, i32)> = ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (user_data, result) in completions {
                if user_data == WAKE {
                    while let Ok(done) = done_rx.try_recv() {
                        in_flight -= 1;
                        let tag = usize::from(done.tag);
                        if aborted[tag] {
                            continue;
                        }
                        let mut result = done.result;
                        if let Some(data) = done.read {
                            match buffers[tag].get_mut(..data.len()) {
                                Some(into) => into.copy_from_slice(&data),
                                None => result = -libc::EIO,
                            }
                        }
                        pending.push(self.io_entry(
                            cmd::IO_COMMIT_AND_FETCH_REQ,
                            done.tag,
                            result,
                            &buffers[tag],
                        ));
                    }
                    pending.push(wake_read().into());
                    continue;
                }
                let Ok(tag) = u16::try_from(user_data) else {
                    continue;
                };
                let index = usize::from(tag);
                if index >= depth {
                    continue;
                }
                if result != 0 {
                    // ABORT: the device stops (or another failure of the fetch itself).
                    if result != cmd::IO_RES_ABORT {
                        tracing::warn!(tag, "a ublk fetch failed: {}", errno_text(result));
                    }
                    aborted[index] = true;
                    continue;
                }
                let desc = self.descriptors.get(tag);
                // The driver caps reads and writes at the tag buffer's size (max_sectors);
                // anything larger is refused rather than trusted.
                let moves_data = matches!(desc.op, cmd::OP_READ | cmd::OP_WRITE);
                if moves_data && desc.len > u64::from(MAX_IO_BYTES) {
                    pending.push(self.io_entry(
                        cmd::IO_COMMIT_AND_FETCH_REQ,
                        tag,
                        -libc::EINVAL,
                        &buffers[index],
                    ));
                    continue;
                }
                let write = match desc.op {
                    cmd::OP_WRITE => buffers[index].get(..desc.len as usize).map(<[u8]>::to_vec),
                    _ => None,
                };
                in_flight += 1;
                let (volume, done_tx, wake) =
                    (self.volume.clone(), done_tx.clone(), self.wake.clone());
                self.runtime.spawn(async move {
                    let (result, read) = serve(volume, desc, write).await;
                    let _ = done_tx.send(Done { tag, result, read });
                    let _ = rustix::io::write(&*wake, &1u64.to_ne_bytes());
                });
            }
            let all_aborted = aborted.iter().all(|a| *a);
            let stopping = self.stop.load(std::sync::atomic::Ordering::SeqCst);
            if (all_aborted || stopping) && in_flight == 0 {
                break;
            }
        }
        // Dropping the ring cancels what is still queued (the driver's fetches, when the
        // device was stopped without aborting them), before the buffers go.
        drop(ring);
        drop(buffers);
    }
}

/// A volume attached as `/dev/ublkbN`.
#[derive(Debug)]
pub struct KernelUblk {
    device: KernelDevice,
    dev_id: u32,
    control: Control,
    record: PathBuf,
    queue: Option<std::thread::JoinHandle<()>>,
    wake: Arc<OwnedFd>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    zeroing: Arc<ZeroingActivity>,
}

impl KernelUblk {
    /// Serves `volume_device` (`size` bytes) as a new ublk device linked from
    /// `<paths.dev_dir>/<volume>`.
    pub fn attach(
        paths: &BlockdevPaths,
        volume: &str,
        volume_device: Arc<dyn BlockDevice>,
        size: u64,
        runtime: tokio::runtime::Handle,
    ) -> Result<KernelUblk, BlockdevError> {
        links::check_volume_name(volume)?;
        let control = Control::open()?;
        let wake = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
            .map(Arc::new)
            .map_err(BlockdevError::by(
                BlockdevErrorKind::Failed,
                "making an eventfd",
            ))?;
        let mut flags = cmd::F_URING_CMD_COMP_IN_TASK;
        if control.encoded {
            flags |= cmd::F_CMD_IOCTL_ENCODE;
        }
        if can_resize(control.features) {
            flags |= cmd::F_UPDATE_SIZE;
        }
        let mut info = DevInfo {
            nr_hw_queues: 1,
            queue_depth: QUEUE_DEPTH,
            max_io_buf_bytes: MAX_IO_BYTES,
            dev_id: u32::MAX,
            flags,
            ublksrv_flags: node_token(paths),
            ..DevInfo::default()
        }
        .encode();
        control
            .command(
                cmd::CMD_ADD_DEV,
                ControlCmd::for_device(u32::MAX),
                Some(&mut info),
            )
            .map_err(|e| control.failed("adding a device", e))?;
        let info = DevInfo::decode(&info);
        let dev_id = info.dev_id;
        let zeroing = Arc::new(ZeroingActivity::default());
        let volume_device: Arc<dyn BlockDevice> =
            Arc::new(CountingDevice::new(volume_device, zeroing.clone()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut attached = KernelUblk {
            device: KernelDevice {
                volume: volume.to_string(),
                path: PathBuf::from(format!("/dev/ublkb{dev_id}")),
                number: (0, 0),
                link: paths.dev_dir.join(volume),
            },
            dev_id,
            control,
            record: record_path(paths, dev_id),
            queue: None,
            wake,
            stop,
            zeroing,
        };
        // From here on a failure tears down what was made (`teardown` on the error path).
        match attached.start(paths, volume, volume_device, size, info, runtime) {
            Ok(()) => Ok(attached),
            Err(e) => {
                for problem in attached.teardown() {
                    tracing::warn!(volume, "undoing a failed ublk attach: {problem}");
                }
                Err(e)
            }
        }
    }

    fn start(
        &mut self,
        paths: &BlockdevPaths,
        volume: &str,
        volume_device: Arc<dyn BlockDevice>,
        size: u64,
        info: DevInfo,
        runtime: tokio::runtime::Handle,
    ) -> Result<(), BlockdevError> {
        let dev_id = self.dev_id;
        let max_io = info.max_io_buf_bytes.min(MAX_IO_BYTES);
        let mut params = cmd::params(size, max_io);
        self.control
            .command(
                cmd::CMD_SET_PARAMS,
                ControlCmd::for_device(dev_id),
                Some(&mut params),
            )
            .map_err(|e| self.control.failed("setting the device's parameters", e))?;
        let char_path = PathBuf::from(format!("/dev/ublkc{dev_id}"));
        if !wait_for(Duration::from_secs(10), || char_path.exists()) {
            return Err(BlockdevError::new(
                BlockdevErrorKind::Failed,
                format!("{} did not appear", char_path.display()),
            ));
        }
        let char_device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&char_path)
            .map_err(BlockdevError::by(
                BlockdevErrorKind::Failed,
                format!("opening {}", char_path.display()),
            ))?;
        let descriptors = Descriptors::map(&char_device, QUEUE_DEPTH)?;
        let queue = Queue {
            char_device,
            descriptors,
            encoded: self.control.encoded,
            volume: volume_device,
            runtime,
            wake: self.wake.clone(),
            stop: self.stop.clone(),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        self.queue = Some(
            std::thread::Builder::new()
                .name(format!("ublk{dev_id}"))
                .spawn(move || queue.run(ready_tx))
                .map_err(BlockdevError::by(
                    BlockdevErrorKind::Failed,
                    "starting the ublk queue thread",
                ))?,
        );
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(BlockdevError::new(BlockdevErrorKind::Failed, "ublk queue").because(e))
            }
            Err(_) => {
                return Err(BlockdevError::new(
                    BlockdevErrorKind::Failed,
                    "the ublk queue thread ended",
                ))
            }
        }
        let mut start = ControlCmd::for_device(dev_id);
        start.data = u64::from(std::process::id());
        self.control
            .command(cmd::CMD_START_DEV, start, None)
            .map_err(|e| self.control.failed("starting the device", e))?;
        let path = self.device.path.clone();
        let number = wait_for(Duration::from_secs(10), || path.exists())
            .then(|| kernel_device::device_number(&path))
            .flatten()
            .ok_or_else(|| {
                BlockdevError::new(
                    BlockdevErrorKind::Failed,
                    format!("{} did not appear", path.display()),
                )
            })?;
        self.device.number = number;
        write_record(&self.record, volume, number)?;
        self.device.link = links::publish(&paths.dev_dir, volume, &path)?;
        Ok(())
    }

    /// The kernel device and its link.
    pub fn device(&self) -> &KernelDevice {
        &self.device
    }

    /// The discards and zeroing the kernel has sent through the device.
    pub fn zeroing(&self) -> &ZeroingActivity {
        &self.zeroing
    }

    /// Makes the device take the volume's new size, where the driver can (`UPDATE_SIZE`).
    pub fn refresh_size(&self, size: u64) -> Result<(), BlockdevError> {
        if !can_resize(self.control.features) {
            return Err(BlockdevError::new(BlockdevErrorKind::Unavailable, format!(
                "the volume grew to {size} bytes, but this kernel's ublk driver cannot resize a live device (UBLK_F_UPDATE_SIZE, in newer kernels): unmount, detach and attach {} again, or run the node with --blockdev-backend nbd",
                self.device.link.display()
            )));
        }
        let mut update = ControlCmd::for_device(self.dev_id);
        update.data = size >> 9;
        self.control
            .command(cmd::CMD_UPDATE_SIZE, update, None)
            .map(|_| ())
            .map_err(|e| self.control.failed("resizing the device", e))
    }

    /// Detaches: releases the device (see [`KernelDevice::release`]), stops it (the
    /// driver finishes what is in flight first), ends the queue thread and deletes the
    /// device. What could not be done is returned, one line each.
    pub fn teardown(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.device.number != (0, 0) {
            problems.extend(self.device.release());
        }
        let stopped =
            self.control
                .command(cmd::CMD_STOP_DEV, ControlCmd::for_device(self.dev_id), None);
        if let (Err(e), true) = (stopped, self.device.number != (0, 0)) {
            problems.push(self.control.failed("stopping the device", e).to_string());
        }
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        if let Some(queue) = self.queue.take() {
            let _ = queue.join();
        }
        if let Err(e) =
            self.control
                .command(cmd::CMD_DEL_DEV, ControlCmd::for_device(self.dev_id), None)
        {
            problems.push(self.control.failed("deleting the device", e).to_string());
        }
        let _ = std::fs::remove_file(&self.record);
        problems
    }
}

fn write_record(path: &Path, volume: &str, number: (u32, u32)) -> Result<(), BlockdevError> {
    let text = format!("{volume}\n{}:{}\n", number.0, number.1);
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(BlockdevError::by(
            BlockdevErrorKind::Failed,
            format!("writing {}", path.display()),
        ))
}

/// (volume, device number) from a record file.
fn read_record(text: &str) -> Option<(String, (u32, u32))> {
    let mut lines = text.lines();
    let volume = lines.next()?.to_string();
    let (major, minor) = lines.next()?.split_once(':')?;
    Some((volume, (major.parse().ok()?, minor.parse().ok()?)))
}

/// Removes the ublk devices an earlier run of this node left (found by their record files
/// and checked by token): the filesystems still mounted from them, their links, and the
/// devices. Returns what it did.
pub fn cleanup_stale(paths: &BlockdevPaths, entries: &[mounts::MountEntry]) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(dir) = std::fs::read_dir(&paths.run_dir) else {
        return done;
    };
    let records: Vec<(u32, PathBuf)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let id = e
                .file_name()
                .to_str()?
                .strip_prefix("ublk-")?
                .parse()
                .ok()?;
            Some((id, e.path()))
        })
        .collect();
    if records.is_empty() {
        return done;
    }
    let control = Control::open().ok();
    for (dev_id, record) in records {
        let Some((volume, number)) = std::fs::read_to_string(&record)
            .ok()
            .as_deref()
            .and_then(read_record)
        else {
            let _ = std::fs::remove_file(&record);
            continue;
        };
        let ours = control
            .as_ref()
            .and_then(|c| c.device_info(dev_id).ok())
            .is_some_and(|info| info.ublksrv_flags == node_token(paths));
        if ours {
            for point in mounts::mount_points_of(entries, number) {
                let _ = rustix::mount::unmount(&point, rustix::mount::UnmountFlags::DETACH);
                done.push(format!(
                    "unmounted {} (its device /dev/ublkb{dev_id} was left by an earlier run and fails all I/O)",
                    point.display()
                ));
            }
            let device = PathBuf::from(format!("/dev/ublkb{dev_id}"));
            let _ = links::withdraw(&paths.dev_dir.join(&volume), &device);
            if let Some(control) = &control {
                match control.stop_and_delete(dev_id) {
                    Ok(()) => done.push(format!("deleted {} (volume {volume})", device.display())),
                    Err(e) => done.push(format!("could not delete {}: {e}", device.display())),
                }
            }
        }
        let _ = std::fs::remove_file(&record);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_is_there_or_the_answer_says_how_to_load_it() {
        let present = Path::new(CONTROL_DEVICE).exists();
        match available() {
            Ok(_) => assert!(present),
            Err(e) if e.kind() == BlockdevErrorKind::Unavailable && !present => {
                assert!(e.to_string().contains("modprobe ublk_drv"), "{e}")
            }
            Err(e) => panic!("unexpected answer (control device present: {present}): {e}"),
        }
    }

    #[test]
    fn records_name_the_volume_and_device_and_tokens_the_node() {
        assert_eq!(
            read_record("pvc-1\n259:3\n"),
            Some(("pvc-1".to_string(), (259, 3)))
        );
        assert_eq!(read_record("pvc-1\n"), None);
        assert_eq!(read_record("pvc-1\n259\n"), None);
        let a = BlockdevPaths {
            run_dir: PathBuf::from("/var/lib/ironhorn/run/fuse"),
            dev_dir: PathBuf::from("/dev/ironhorn"),
        };
        let b = BlockdevPaths {
            run_dir: PathBuf::from("/var/lib/ironhorn-2/run/fuse"),
            ..a.clone()
        };
        assert_ne!(node_token(&a), node_token(&b));
        assert_eq!(node_token(&a), node_token(&a.clone()));
    }
}
