//! The ublk driver's user interface (`include/uapi/linux/ublk_cmd.h`) as bytes: control
//! commands to `/dev/ublk-control`, the device info and parameters they carry, the I/O
//! commands to `/dev/ublkcN`, and the I/O descriptors the driver shares with the server.
//! The node agent's ublk backend (`ironhorn_frontend::blockdev::kernel_ublk`) does the
//! io_uring and mmap around it.

/// Control commands.
pub const CMD_GET_DEV_INFO: u8 = 0x02;
pub const CMD_ADD_DEV: u8 = 0x04;
pub const CMD_DEL_DEV: u8 = 0x05;
pub const CMD_START_DEV: u8 = 0x06;
pub const CMD_STOP_DEV: u8 = 0x07;
pub const CMD_SET_PARAMS: u8 = 0x08;
pub const CMD_GET_FEATURES: u8 = 0x13;
pub const CMD_UPDATE_SIZE: u8 = 0x15;
/// I/O commands.
pub const IO_FETCH_REQ: u8 = 0x20;
pub const IO_COMMIT_AND_FETCH_REQ: u8 = 0x21;

/// Device flags (features).
pub const F_URING_CMD_COMP_IN_TASK: u64 = 1 << 1;
pub const F_CMD_IOCTL_ENCODE: u64 = 1 << 6;
pub const F_UPDATE_SIZE: u64 = 1 << 10;

/// The result of a FETCH that the driver cancelled (the device stops).
pub const IO_RES_ABORT: i32 = -19;

/// Request operations, and the FUA flag, in a descriptor's `op_flags`.
pub const OP_READ: u8 = 0;
pub const OP_WRITE: u8 = 1;
pub const OP_FLUSH: u8 = 2;
pub const OP_DISCARD: u8 = 3;
pub const OP_WRITE_ZEROES: u8 = 5;
pub const IO_F_FUA: u32 = 1 << 13;

const PARAM_TYPE_BASIC: u32 = 1 << 0;
const PARAM_TYPE_DISCARD: u32 = 1 << 1;
const ATTR_VOLATILE_CACHE: u32 = 1 << 2;
const ATTR_FUA: u32 = 1 << 3;

pub const CTRL_CMD_LEN: usize = 32;
pub const IO_CMD_LEN: usize = 16;
pub const DEV_INFO_LEN: usize = 64;
pub const IO_DESC_LEN: usize = 24;
/// Where queue `q`'s descriptors are mapped in `/dev/ublkcN`: each queue has room for the
/// driver's largest depth (4096 descriptors), whatever depth the device has.
pub const QUEUE_DESC_STRIDE: u64 = 4096 * IO_DESC_LEN as u64;

/// `_IOC(dir, 'u', nr, size)`.
fn ioctl_encoded(dir: u32, nr: u8, size: usize) -> u32 {
    dir << 30 | (size as u32) << 16 | u32::from(b'u') << 8 | u32::from(nr)
}

/// The `cmd_op` of control command `nr`: ioctl-encoded where the driver says it takes that
/// form (`F_CMD_IOCTL_ENCODE` among its features), the bare number on older drivers.
pub fn control_op(nr: u8, encoded: bool) -> u32 {
    if !encoded {
        return u32::from(nr);
    }
    let reads_only = matches!(nr, CMD_GET_DEV_INFO | CMD_GET_FEATURES);
    ioctl_encoded(if reads_only { 2 } else { 3 }, nr, CTRL_CMD_LEN)
}

/// The `cmd_op` of I/O command `nr` (see [`control_op`]).
pub fn io_op(nr: u8, encoded: bool) -> u32 {
    if encoded {
        ioctl_encoded(3, nr, IO_CMD_LEN)
    } else {
        u32::from(nr)
    }
}

/// `struct ublksrv_ctrl_cmd`: which device, and the buffer or the one number a command
/// carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlCmd {
    pub dev_id: u32,
    /// 0xffff: not about one queue.
    pub queue_id: u16,
    pub len: u16,
    pub addr: u64,
    pub data: u64,
}

impl ControlCmd {
    pub fn for_device(dev_id: u32) -> ControlCmd {
        ControlCmd {
            dev_id,
            queue_id: u16::MAX,
            len: 0,
            addr: 0,
            data: 0,
        }
    }

    pub fn encode(&self) -> [u8; CTRL_CMD_LEN] {
        let mut b = [0u8; CTRL_CMD_LEN];
        b[0..4].copy_from_slice(&self.dev_id.to_ne_bytes());
        b[4..6].copy_from_slice(&self.queue_id.to_ne_bytes());
        b[6..8].copy_from_slice(&self.len.to_ne_bytes());
        b[8..16].copy_from_slice(&self.addr.to_ne_bytes());
        b[16..24].copy_from_slice(&self.data.to_ne_bytes());
        b
    }
}

/// `struct ublksrv_ctrl_dev_info`, the fields this server sets or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DevInfo {
    pub nr_hw_queues: u16,
    pub queue_depth: u16,
    pub state: u16,
    pub max_io_buf_bytes: u32,
    pub dev_id: u32,
    pub ublksrv_pid: i32,
    pub flags: u64,
    /// Free for the server: this one stores which node made the device.
    pub ublksrv_flags: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

impl DevInfo {
    pub fn encode(&self) -> [u8; DEV_INFO_LEN] {
        let mut b = [0u8; DEV_INFO_LEN];
        b[0..2].copy_from_slice(&self.nr_hw_queues.to_ne_bytes());
        b[2..4].copy_from_slice(&self.queue_depth.to_ne_bytes());
        b[4..6].copy_from_slice(&self.state.to_ne_bytes());
        b[8..12].copy_from_slice(&self.max_io_buf_bytes.to_ne_bytes());
        b[12..16].copy_from_slice(&self.dev_id.to_ne_bytes());
        b[16..20].copy_from_slice(&self.ublksrv_pid.to_ne_bytes());
        b[24..32].copy_from_slice(&self.flags.to_ne_bytes());
        b[32..40].copy_from_slice(&self.ublksrv_flags.to_ne_bytes());
        b
    }

    /// Reads what the driver wrote back; missing bytes read as zeros.
    pub fn decode(b: &[u8]) -> DevInfo {
        DevInfo {
            nr_hw_queues: u16_at(b, 0),
            queue_depth: u16_at(b, 2),
            state: u16_at(b, 4),
            max_io_buf_bytes: u32_at(b, 8),
            dev_id: u32_at(b, 12),
            ublksrv_pid: u32_at(b, 16) as i32,
            flags: u64_at(b, 24),
            ublksrv_flags: u64_at(b, 32),
        }
    }
}

/// `struct ublk_params` with its basic and discard parts: a device of `size_bytes` with
/// 512-byte logical and 4 KiB physical sectors, a volatile cache (so the kernel sends
/// flushes) and FUA, requests of up to `max_io_bytes`, and discard and write-zeroes.
pub fn params(size_bytes: u64, max_io_bytes: u32) -> Vec<u8> {
    const LEN: usize = 8 + 32 + 20;
    let mut b = vec![0u8; LEN];
    b[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
    b[4..8].copy_from_slice(&(PARAM_TYPE_BASIC | PARAM_TYPE_DISCARD).to_ne_bytes());
    // basic
    b[8..12].copy_from_slice(&(ATTR_VOLATILE_CACHE | ATTR_FUA).to_ne_bytes());
    b[12] = 9; // logical_bs_shift
    b[13] = 12; // physical_bs_shift
    b[14] = 12; // io_opt_shift
    b[15] = 12; // io_min_shift
    b[16..20].copy_from_slice(&(max_io_bytes >> 9).to_ne_bytes());
    // chunk_sectors (20..24) 0
    b[24..32].copy_from_slice(&(size_bytes >> 9).to_ne_bytes());
    // virt_boundary_mask (32..40) 0
    // discard
    let max_discard_sectors: u32 = 1 << 22; // 2 GiB a request
    b[40..44].copy_from_slice(&0u32.to_ne_bytes()); // discard_alignment
    b[44..48].copy_from_slice(&4096u32.to_ne_bytes()); // discard_granularity
    b[48..52].copy_from_slice(&max_discard_sectors.to_ne_bytes());
    b[52..56].copy_from_slice(&max_discard_sectors.to_ne_bytes()); // max_write_zeroes_sectors
    b[56..58].copy_from_slice(&1u16.to_ne_bytes()); // max_discard_segments
    b
}

/// `struct ublksrv_io_cmd`: for FETCH, the buffer the next request's data goes to; for
/// COMMIT_AND_FETCH also the finished request's result.
pub fn io_cmd(queue: u16, tag: u16, result: i32, buffer: u64) -> [u8; IO_CMD_LEN] {
    let mut b = [0u8; IO_CMD_LEN];
    b[0..2].copy_from_slice(&queue.to_ne_bytes());
    b[2..4].copy_from_slice(&tag.to_ne_bytes());
    b[4..8].copy_from_slice(&result.to_ne_bytes());
    b[8..16].copy_from_slice(&buffer.to_ne_bytes());
    b
}

/// What the kernel asks of one tag (`struct ublksrv_io_desc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoDesc {
    pub op: u8,
    pub fua: bool,
    pub offset: u64,
    pub len: u64,
}

impl IoDesc {
    pub fn decode(b: &[u8; IO_DESC_LEN]) -> IoDesc {
        let op_flags = u32_at(b, 0);
        IoDesc {
            op: (op_flags & 0xff) as u8,
            fua: op_flags & IO_F_FUA != 0,
            offset: u64_at(b, 8).saturating_mul(512),
            len: u64::from(u32_at(b, 4)) * 512,
        }
    }
}

/// Bytes of queue descriptors to map for `depth` tags (whole pages).
pub fn desc_map_len(depth: u16, page: usize) -> usize {
    (usize::from(depth) * IO_DESC_LEN).div_ceil(page) * page
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn opcodes_are_the_ones_the_header_defines() {
        // Values as the C macros evaluate them.
        assert_eq!(control_op(CMD_ADD_DEV, true), 0xC020_7504);
        assert_eq!(control_op(CMD_SET_PARAMS, true), 0xC020_7508);
        assert_eq!(control_op(CMD_GET_DEV_INFO, true), 0x8020_7502);
        assert_eq!(control_op(CMD_GET_FEATURES, true), 0x8020_7513);
        assert_eq!(control_op(CMD_UPDATE_SIZE, true), 0xC020_7515);
        assert_eq!(io_op(IO_FETCH_REQ, true), 0xC010_7520);
        assert_eq!(io_op(IO_COMMIT_AND_FETCH_REQ, true), 0xC010_7521);
        assert_eq!(control_op(CMD_STOP_DEV, false), 0x07);
        assert_eq!(io_op(IO_FETCH_REQ, false), 0x20);
    }

    #[test]
    fn structures_are_laid_out_as_the_driver_reads_them() {
        let cmd = ControlCmd {
            dev_id: 3,
            queue_id: u16::MAX,
            len: 64,
            addr: 0x1122_3344_5566_7788,
            data: 42,
        }
        .encode();
        assert_eq!(u32_at(&cmd, 0), 3);
        assert_eq!(u16_at(&cmd, 4), u16::MAX);
        assert_eq!(u16_at(&cmd, 6), 64);
        assert_eq!(u64_at(&cmd, 8), 0x1122_3344_5566_7788);
        assert_eq!(u64_at(&cmd, 16), 42);

        let info = DevInfo {
            nr_hw_queues: 1,
            queue_depth: 64,
            state: 1,
            max_io_buf_bytes: 512 << 10,
            dev_id: u32::MAX,
            ublksrv_pid: 77,
            flags: F_CMD_IOCTL_ENCODE | F_URING_CMD_COMP_IN_TASK,
            ublksrv_flags: 0xdead_beef,
        };
        assert_eq!(DevInfo::decode(&info.encode()), info);
        assert_eq!(u64_at(&info.encode(), 24), 0x42);

        let p = params(10 << 30, 512 << 10);
        assert_eq!(u32_at(&p, 0) as usize, p.len());
        assert_eq!(u32_at(&p, 4), 3);
        assert_eq!(u32_at(&p, 16), 1024, "max_sectors");
        assert_eq!(u64_at(&p, 24), 20 << 20, "dev_sectors");
        assert_eq!(u32_at(&p, 44), 4096, "discard_granularity");
        assert_eq!(u16_at(&p, 56), 1, "one discard segment");

        let io = io_cmd(0, 5, -5, 0xabc);
        assert_eq!(
            (u16_at(&io, 2), u32_at(&io, 4) as i32, u64_at(&io, 8)),
            (5, -5, 0xabc)
        );

        let mut d = [0u8; IO_DESC_LEN];
        d[0..4].copy_from_slice(&(u32::from(OP_WRITE) | IO_F_FUA).to_ne_bytes());
        d[4..8].copy_from_slice(&8u32.to_ne_bytes());
        d[8..16].copy_from_slice(&16u64.to_ne_bytes());
        assert_eq!(
            IoDesc::decode(&d),
            IoDesc {
                op: OP_WRITE,
                fua: true,
                offset: 8192,
                len: 4096
            }
        );
        assert_eq!(desc_map_len(64, 4096), 4096);
        assert_eq!(desc_map_len(200, 4096), 8192);
    }

    proptest! {
        #[test]
        fn any_descriptor_decodes_without_overflow(bytes: [u8; IO_DESC_LEN]) {
            let d = IoDesc::decode(&bytes);
            prop_assert!(d.len <= u64::from(u32::MAX) * 512);
        }

        #[test]
        fn device_info_round_trips(
            queues: u16, depth: u16, state: u16, max: u32, id: u32, pid: i32, flags: u64, mine: u64
        ) {
            let info = DevInfo {
                nr_hw_queues: queues, queue_depth: depth, state, max_io_buf_bytes: max,
                dev_id: id, ublksrv_pid: pid, flags, ublksrv_flags: mine,
            };
            prop_assert_eq!(DevInfo::decode(&info.encode()), info);
            let _ = DevInfo::decode(&info.encode()[..17]);
        }
    }
}
