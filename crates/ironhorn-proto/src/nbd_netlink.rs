//! The kernel NBD driver's generic-netlink messages (`include/uapi/linux/nbd-netlink.h`):
//! resolving the `nbd` family, CONNECT with the sockets the driver will use (the reply names
//! the `/dev/nbdN` it got), and DISCONNECT. Pure encoding and decoding; the socket calls live in
//! [`super::kernel_nbd`]. Every decoder takes bytes from the kernel and never panics.

/// Netlink message types and flags (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
const NLA_HDRLEN: usize = 4;
const NLA_F_NESTED: u16 = 1 << 15;

/// The generic netlink controller (linux/genetlink.h).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// The nbd family's commands and attributes.
pub const FAMILY_NAME: &str = "nbd";
const NBD_VERSION: u8 = 1;
const NBD_CMD_CONNECT: u8 = 1;
const NBD_CMD_DISCONNECT: u8 = 2;
const NBD_CMD_RECONFIGURE: u8 = 3;
const NBD_ATTR_INDEX: u16 = 1;
const NBD_ATTR_SIZE_BYTES: u16 = 2;
const NBD_ATTR_BLOCK_SIZE_BYTES: u16 = 3;
const NBD_ATTR_TIMEOUT: u16 = 4;
const NBD_ATTR_SERVER_FLAGS: u16 = 5;
const NBD_ATTR_CLIENT_FLAGS: u16 = 6;
const NBD_ATTR_SOCKETS: u16 = 7;
const NBD_ATTR_DEAD_CONN_TIMEOUT: u16 = 8;
const NBD_ATTR_BACKEND_IDENTIFIER: u16 = 10;
const NBD_SOCK_ITEM: u16 = 1;
const NBD_SOCK_FD: u16 = 1;
/// The device goes away when the connection is disconnected.
pub const NBD_CFLAG_DESTROY_ON_DISCONNECT: u64 = 1;

/// What the kernel's answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An acknowledgement: 0 is success, otherwise a (positive) errno.
    Ack(i32),
    /// A message with attributes (`type`, attributes after the genetlink header).
    Message {
        kind: u16,
        attributes: Vec<(u16, Vec<u8>)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable netlink answer: {0}")]
pub struct DecodeError(&'static str);

/// What a CONNECT asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub size_bytes: u64,
    pub block_size: u64,
    /// NBD transmission flags, as a server would send them.
    pub server_flags: u64,
    pub client_flags: u64,
    /// Seconds a request may take before the driver gives up on the connection.
    pub timeout_secs: u64,
    /// Seconds the device waits for a reconnect after the last connection died.
    pub dead_connection_timeout_secs: u64,
    /// The sockets (file descriptors in the calling process) the driver takes over.
    pub socket_fds: Vec<u32>,
    /// Shown in `/sys/block/nbdN/backend`: which volume this device serves.
    pub backend: String,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn attribute(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = NLA_HDRLEN + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(pad4(out.len()), 0);
}

fn nested(out: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    attribute(out, kind | NLA_F_NESTED, inner);
}

fn message(family: u16, seq: u32, cmd: u8, version: u8, attributes: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + GENL_HDRLEN + attributes.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&family.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[cmd, version, 0, 0]);
    out.extend_from_slice(attributes);
    out
}

/// Asks the controller for the id of the `nbd` family.
pub fn get_family(seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    attribute(
        &mut attrs,
        CTRL_ATTR_FAMILY_NAME,
        format!("{FAMILY_NAME}\0").as_bytes(),
    );
    message(GENL_ID_CTRL, seq, CTRL_CMD_GETFAMILY, 1, &attrs)
}

/// Connects a new device (the kernel picks its index) to the given sockets.
pub fn connect(family: u16, seq: u32, request: &Connect) -> Vec<u8> {
    let mut attrs = Vec::new();
    attribute(
        &mut attrs,
        NBD_ATTR_SIZE_BYTES,
        &request.size_bytes.to_ne_bytes(),
    );
    attribute(
        &mut attrs,
        NBD_ATTR_BLOCK_SIZE_BYTES,
        &request.block_size.to_ne_bytes(),
    );
    attribute(
        &mut attrs,
        NBD_ATTR_SERVER_FLAGS,
        &request.server_flags.to_ne_bytes(),
    );
    attribute(
        &mut attrs,
        NBD_ATTR_CLIENT_FLAGS,
        &request.client_flags.to_ne_bytes(),
    );
    attribute(
        &mut attrs,
        NBD_ATTR_TIMEOUT,
        &request.timeout_secs.to_ne_bytes(),
    );
    attribute(
        &mut attrs,
        NBD_ATTR_DEAD_CONN_TIMEOUT,
        &request.dead_connection_timeout_secs.to_ne_bytes(),
    );
    attribute(
        &mut attrs,
        NBD_ATTR_BACKEND_IDENTIFIER,
        format!("{}\0", request.backend).as_bytes(),
    );
    let mut sockets = Vec::new();
    for fd in &request.socket_fds {
        let mut item = Vec::new();
        attribute(&mut item, NBD_SOCK_FD, &fd.to_ne_bytes());
        nested(&mut sockets, NBD_SOCK_ITEM, &item);
    }
    nested(&mut attrs, NBD_ATTR_SOCKETS, &sockets);
    message(family, seq, NBD_CMD_CONNECT, NBD_VERSION, &attrs)
}

/// Disconnects `/dev/nbd<index>`.
pub fn disconnect(family: u16, seq: u32, index: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    attribute(&mut attrs, NBD_ATTR_INDEX, &index.to_ne_bytes());
    message(family, seq, NBD_CMD_DISCONNECT, NBD_VERSION, &attrs)
}

/// RECONFIGURE of `/dev/nbd<index>` to a new size (Linux 5.3 and later); a device connected
/// with a backend identifier must be named by it again.
pub fn resize(family: u16, seq: u32, index: u32, size_bytes: u64, backend: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    attribute(&mut attrs, NBD_ATTR_INDEX, &index.to_ne_bytes());
    attribute(&mut attrs, NBD_ATTR_SIZE_BYTES, &size_bytes.to_ne_bytes());
    attribute(
        &mut attrs,
        NBD_ATTR_BACKEND_IDENTIFIER,
        format!("{backend}\0").as_bytes(),
    );
    message(family, seq, NBD_CMD_RECONFIGURE, NBD_VERSION, &attrs)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Splits attributes (nested flag cleared from the types).
pub fn attributes(mut b: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, DecodeError> {
    let mut out = Vec::new();
    while b.len() >= NLA_HDRLEN {
        let len = u16_at(b, 0).ok_or(DecodeError("attribute header"))? as usize;
        let kind = u16_at(b, 2).ok_or(DecodeError("attribute header"))? & !NLA_F_NESTED;
        if len < NLA_HDRLEN || len > b.len() {
            return Err(DecodeError("attribute length"));
        }
        out.push((kind, b[NLA_HDRLEN..len].to_vec()));
        b = b.get(pad4(len)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Decodes every message in one datagram from the kernel.
pub fn decode(mut b: &[u8]) -> Result<Vec<Answer>, DecodeError> {
    let mut out = Vec::new();
    while b.len() >= NLMSG_HDRLEN {
        let len = u32_at(b, 0).ok_or(DecodeError("header"))? as usize;
        let kind = u16_at(b, 4).ok_or(DecodeError("header"))?;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(DecodeError("message length"));
        }
        let body = &b[NLMSG_HDRLEN..len];
        if kind == NLMSG_ERROR {
            let errno = u32_at(body, 0).ok_or(DecodeError("error message"))? as i32;
            out.push(Answer::Ack(errno.saturating_neg()));
        } else {
            let attrs = body
                .get(GENL_HDRLEN..)
                .ok_or(DecodeError("genetlink header"))?;
            out.push(Answer::Message {
                kind,
                attributes: attributes(attrs)?,
            });
        }
        b = b.get(pad4(len)..).unwrap_or(&[]);
    }
    Ok(out)
}

fn find(attrs: &[(u16, Vec<u8>)], kind: u16) -> Option<&[u8]> {
    attrs
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v.as_slice())
}

/// Attribute `kind` of the first message among `answers` that has it.
fn first_attribute(answers: &[Answer], kind: u16) -> Option<&[u8]> {
    answers.iter().find_map(|a| match a {
        Answer::Message { attributes, .. } => find(attributes, kind),
        Answer::Ack(_) => None,
    })
}

/// The family id in the controller's answer.
pub fn family_id(answers: &[Answer]) -> Option<u16> {
    first_attribute(answers, CTRL_ATTR_FAMILY_ID).and_then(|v| u16_at(v, 0))
}

/// The device index in a CONNECT answer.
pub fn connected_index(answers: &[Answer]) -> Option<u32> {
    first_attribute(answers, NBD_ATTR_INDEX).and_then(|v| u32_at(v, 0))
}

/// The first error the kernel reported, if any (a positive errno).
pub fn error(answers: &[Answer]) -> Option<i32> {
    answers.iter().find_map(|a| match a {
        Answer::Ack(e) if *e != 0 => Some(*e),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_connect_carries_every_attribute_with_the_sockets_nested() {
        let request = Connect {
            size_bytes: 1 << 30,
            block_size: 4096,
            server_flags: 0x16d,
            client_flags: NBD_CFLAG_DESTROY_ON_DISCONNECT,
            timeout_secs: 30,
            dead_connection_timeout_secs: 0,
            socket_fds: vec![7, 9],
            backend: "ironhorn:vol-a".into(),
        };
        let bytes = connect(0x1c, 5, &request);
        assert_eq!(u32_at(&bytes, 0), Some(bytes.len() as u32));
        assert_eq!(u16_at(&bytes, 4), Some(0x1c));
        assert_eq!(u16_at(&bytes, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(bytes[16], NBD_CMD_CONNECT);
        let attrs = attributes(&bytes[20..]).unwrap();
        assert_eq!(
            find(&attrs, NBD_ATTR_SIZE_BYTES),
            Some(&(1u64 << 30).to_ne_bytes()[..])
        );
        assert_eq!(
            find(&attrs, NBD_ATTR_SERVER_FLAGS),
            Some(&0x16du64.to_ne_bytes()[..])
        );
        assert_eq!(
            find(&attrs, NBD_ATTR_BACKEND_IDENTIFIER),
            Some(&b"ironhorn:vol-a\0"[..])
        );
        let sockets = attributes(find(&attrs, NBD_ATTR_SOCKETS).unwrap()).unwrap();
        let fds: Vec<u32> = sockets
            .iter()
            .map(|(kind, item)| {
                assert_eq!(*kind, NBD_SOCK_ITEM);
                let inner = attributes(item).unwrap();
                u32_at(find(&inner, NBD_SOCK_FD).unwrap(), 0).unwrap()
            })
            .collect();
        assert_eq!(fds, [7, 9]);
    }

    #[test]
    fn answers_are_read_the_way_the_kernel_writes_them() {
        // The controller's answer to GETFAMILY: a message with the id, then an ack.
        let mut attrs = Vec::new();
        attribute(&mut attrs, CTRL_ATTR_FAMILY_NAME, b"nbd\0");
        attribute(&mut attrs, CTRL_ATTR_FAMILY_ID, &0x1cu16.to_ne_bytes());
        let mut datagram = message(GENL_ID_CTRL, 1, 1, 2, &attrs);
        let mut ack = Vec::new();
        ack.extend_from_slice(&36u32.to_ne_bytes());
        ack.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack.extend_from_slice(&[0; 10]);
        ack.extend_from_slice(&(-19i32).to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        datagram.extend_from_slice(&ack);
        let answers = decode(&datagram).unwrap();
        assert_eq!(family_id(&answers), Some(0x1c));
        assert_eq!(error(&answers), Some(19));
        let mut attrs = Vec::new();
        attribute(&mut attrs, NBD_ATTR_INDEX, &3u32.to_ne_bytes());
        let answers = decode(&message(0x1c, 2, NBD_CMD_CONNECT, 1, &attrs)).unwrap();
        assert_eq!(connected_index(&answers), Some(3));
        assert_eq!(error(&answers), None);
        let bytes = disconnect(0x1c, 3, 3);
        assert_eq!(bytes[16], NBD_CMD_DISCONNECT);
        assert_eq!(
            find(&attributes(&bytes[20..]).unwrap(), NBD_ATTR_INDEX),
            Some(&3u32.to_ne_bytes()[..])
        );
        assert_eq!(get_family(1)[16], CTRL_CMD_GETFAMILY);
        let bytes = resize(0x1c, 4, 3, 5 << 30, "ironhorn:vol-a");
        assert_eq!(bytes[16], NBD_CMD_RECONFIGURE);
        let attrs = attributes(&bytes[20..]).unwrap();
        assert_eq!(find(&attrs, NBD_ATTR_INDEX), Some(&3u32.to_ne_bytes()[..]));
        assert_eq!(
            find(&attrs, NBD_ATTR_SIZE_BYTES),
            Some(&(5u64 << 30).to_ne_bytes()[..])
        );
        assert_eq!(
            find(&attrs, NBD_ATTR_BACKEND_IDENTIFIER),
            Some(&b"ironhorn:vol-a\0"[..])
        );
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes: Vec<u8>) {
            let _ = decode(&bytes);
            let _ = attributes(&bytes);
        }
    }
}
