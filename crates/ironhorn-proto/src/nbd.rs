//! The NBD wire format (upstream NBD `doc/proto.md`): handshake constants, option requests and
//! replies, transmission requests and simple replies. Pure: bytes in, values out; every
//! decoder returns an error for bad input and never panics.

use thiserror::Error;

pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

pub const FLAG_FIXED_NEWSTYLE: u16 = 1;
pub const FLAG_NO_ZEROES: u16 = 2;
pub const CLIENT_FLAG_FIXED_NEWSTYLE: u32 = 1;
pub const CLIENT_FLAG_NO_ZEROES: u32 = 2;

pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;

pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
pub const REP_ERR_POLICY: u32 = 0x8000_0002;
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;
pub const REP_ERR_TOO_BIG: u32 = 0x8000_0009;

pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

pub const TFLAG_HAS_FLAGS: u16 = 1;
pub const TFLAG_READ_ONLY: u16 = 2;
pub const TFLAG_SEND_FLUSH: u16 = 4;
pub const TFLAG_SEND_FUA: u16 = 8;
pub const TFLAG_SEND_TRIM: u16 = 32;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 64;
pub const TFLAG_CAN_MULTI_CONN: u16 = 256;

pub const CMD_FLAG_FUA: u16 = 1;
pub const CMD_FLAG_NO_HOLE: u16 = 2;

pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ESHUTDOWN: u32 = 108;

/// Largest option payload accepted; longer options are refused and the connection closed.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// Largest READ/WRITE payload (advertised as the maximum block size).
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Longest export name (proto.md: strings MUST be no longer than 4096 bytes).
pub const MAX_STRING: usize = 4096;
pub const REQUEST_HEADER_LEN: usize = 28;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("bad magic {0:#x}")]
    BadMagic(u64),
    #[error("option data is malformed: {0}")]
    BadOption(&'static str),
    #[error("{what} of {len} bytes is longer than the limit {max}")]
    TooLong {
        what: &'static str,
        len: u64,
        max: u64,
    },
}

/// The server's first message.
pub fn server_greeting() -> [u8; 18] {
    let mut out = [0u8; 18];
    out[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    out[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    out[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    out
}

/// An option header: `IHAVEOPT`, option, data length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub len: u32,
}

pub fn decode_option_header(bytes: &[u8; 16]) -> Result<OptionHeader, ProtoError> {
    let magic = be_u64(&bytes[..8]);
    if magic != IHAVEOPT {
        return Err(ProtoError::BadMagic(magic));
    }
    Ok(OptionHeader {
        option: be_u32(&bytes[8..12]),
        len: be_u32(&bytes[12..16]),
    })
}

/// The data of `NBD_OPT_INFO` / `NBD_OPT_GO`: an export name and the info types asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    pub requests: Vec<u16>,
}

pub fn decode_info_request(data: &[u8]) -> Result<InfoRequest, ProtoError> {
    let name_len = data
        .get(..4)
        .map(be_u32)
        .ok_or(ProtoError::BadOption("shorter than the name length"))? as usize;
    let name_end = 4usize
        .checked_add(name_len)
        .filter(|end| *end <= data.len())
        .ok_or(ProtoError::BadOption("name longer than the option"))?;
    let name = decode_name(&data[4..name_end])?;
    let count_end = name_end + 2;
    let count = data
        .get(name_end..count_end)
        .map(be_u16)
        .ok_or(ProtoError::BadOption("no information request count"))? as usize;
    let rest = &data[count_end..];
    if rest.len() != count * 2 {
        return Err(ProtoError::BadOption(
            "information request count does not match",
        ));
    }
    let requests = rest.chunks_exact(2).map(be_u16).collect();
    Ok(InfoRequest { name, requests })
}

/// An export name as sent with `NBD_OPT_EXPORT_NAME` (the whole option data).
pub fn decode_name(data: &[u8]) -> Result<String, ProtoError> {
    if data.len() > MAX_STRING {
        return Err(ProtoError::TooLong {
            what: "export name",
            len: data.len() as u64,
            max: MAX_STRING as u64,
        });
    }
    let name = std::str::from_utf8(data).map_err(|_| ProtoError::BadOption("name is not UTF-8"))?;
    if name.contains('\0') {
        return Err(ProtoError::BadOption("name contains NUL"));
    }
    Ok(name.to_string())
}

/// An option reply: magic, option, reply type, data.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// `NBD_REP_SERVER` data for `NBD_OPT_LIST`.
pub fn server_entry(name: &str) -> Vec<u8> {
    let mut out = (name.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(name.as_bytes());
    out
}

pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    let mut out = INFO_EXPORT.to_be_bytes().to_vec();
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out
}

pub fn info_block_size(minimum: u32, preferred: u32, maximum: u32) -> Vec<u8> {
    let mut out = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    for v in [minimum, preferred, maximum] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

pub fn info_text(kind: u16, text: &str) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// The reply to `NBD_OPT_EXPORT_NAME`: size and flags (no zero padding: NO_ZEROES is
/// always offered, and sent only when the client did not take it).
pub fn export_name_reply(size: u64, flags: u16, zero_pad: bool) -> Vec<u8> {
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(&flags.to_be_bytes());
    if zero_pad {
        out.extend_from_slice(&[0u8; 124]);
    }
    out
}

/// Transmission commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Disconnect,
    Flush,
    Trim,
    Cache,
    WriteZeroes,
    Other(u16),
}

impl Command {
    fn from_wire(value: u16) -> Command {
        match value {
            0 => Command::Read,
            1 => Command::Write,
            2 => Command::Disconnect,
            3 => Command::Flush,
            4 => Command::Trim,
            5 => Command::Cache,
            6 => Command::WriteZeroes,
            other => Command::Other(other),
        }
    }
}

/// A transmission request header (the WRITE payload follows it on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub command: Command,
    pub cookie: u64,
    pub offset: u64,
    pub len: u32,
}

pub fn decode_request(bytes: &[u8; REQUEST_HEADER_LEN]) -> Result<Request, ProtoError> {
    let magic = be_u32(&bytes[..4]);
    if magic != REQUEST_MAGIC {
        return Err(ProtoError::BadMagic(u64::from(magic)));
    }
    Ok(Request {
        flags: be_u16(&bytes[4..6]),
        command: Command::from_wire(be_u16(&bytes[6..8])),
        cookie: be_u64(&bytes[8..16]),
        offset: be_u64(&bytes[16..24]),
        len: be_u32(&bytes[24..28]),
    })
}

/// A simple reply header (READ data follows it).
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&cookie.to_be_bytes());
    out
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn info_request_round_trip() {
        let mut data = 3u32.to_be_bytes().to_vec();
        data.extend_from_slice(b"vol");
        data.extend_from_slice(&2u16.to_be_bytes());
        data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        data.extend_from_slice(&INFO_NAME.to_be_bytes());
        assert_eq!(
            decode_info_request(&data).unwrap(),
            InfoRequest {
                name: "vol".into(),
                requests: vec![INFO_BLOCK_SIZE, INFO_NAME]
            }
        );
        assert!(decode_info_request(&data[..data.len() - 1]).is_err());
        assert!(decode_info_request(&[0, 0, 0, 9, b'a']).is_err());
    }

    #[test]
    fn request_header() {
        let mut b = [0u8; 28];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&CMD_FLAG_FUA.to_be_bytes());
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        b[8..16].copy_from_slice(&7u64.to_be_bytes());
        b[16..24].copy_from_slice(&4096u64.to_be_bytes());
        b[24..].copy_from_slice(&512u32.to_be_bytes());
        let r = decode_request(&b).unwrap();
        assert_eq!(r.command, Command::Write);
        assert_eq!((r.flags, r.cookie, r.offset, r.len), (1, 7, 4096, 512));
        b[0] = 0;
        assert!(matches!(decode_request(&b), Err(ProtoError::BadMagic(_))));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes: Vec<u8>) {
            let _ = decode_info_request(&bytes);
            let _ = decode_name(&bytes);
            let mut header = [0u8; 28];
            let n = bytes.len().min(28);
            header[..n].copy_from_slice(&bytes[..n]);
            let _ = decode_request(&header);
            let mut opt = [0u8; 16];
            opt[..n.min(16)].copy_from_slice(&bytes[..n.min(16)]);
            let _ = decode_option_header(&opt);
        }
    }
}
