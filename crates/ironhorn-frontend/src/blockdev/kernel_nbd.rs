//! The nbd backend: `/dev/nbdN` from the kernel NBD driver, configured through netlink
//! ([`ironhorn_proto::nbd_netlink`]) with sockets whose other ends this process serves with its own NBD
//! server, from the transmission phase on (the driver gets the size and flags in the CONNECT).
//!
//! Verified against Debian's Linux 6.12 in a virtual machine (`scripts/vm-run`): this
//! project's CI machines have no nbd driver.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::netlink::{SocketAddrNetlink, GENERIC};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
use tokio_util::sync::CancellationToken;

use super::kernel_device::{self, wait_for, KernelDevice};
use ironhorn_engine::BlockDevice;

use super::zeroing::{CountingDevice, ZeroingActivity};
use super::{links, BlockdevError, BlockdevErrorKind, BlockdevPaths};
use crate::nbd::{serve_connected, Export};
use ironhorn_proto::nbd_netlink::{self as msg, Answer, Connect};

/// Sockets per device: the driver sends requests on all of them (the export allows it).
const CONNECTIONS: usize = 2;
/// Seconds a request may take before the driver fails it.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// ENOENT: the controller knows no such family (the driver is not loaded).
const ENOENT: i32 = 2;

/// A generic netlink socket with the sequence number of its last request.
struct Netlink {
    socket: OwnedFd,
    seq: u32,
}

impl Netlink {
    fn open() -> Result<Netlink, BlockdevError> {
        let socket =
            rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, Some(GENERIC)).map_err(
                BlockdevError::by(BlockdevErrorKind::Unavailable, "opening a netlink socket"),
            )?;
        rustix::net::bind(&socket, &SocketAddrNetlink::new(0, 0)).map_err(BlockdevError::by(
            BlockdevErrorKind::Unavailable,
            "binding a netlink socket",
        ))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends `message` (built for sequence number `seq`) and reads the answers up to the ack.
    fn transact(
        &mut self,
        build: impl FnOnce(u32) -> Vec<u8>,
    ) -> Result<Vec<Answer>, BlockdevError> {
        self.seq += 1;
        let request = build(self.seq);
        rustix::net::sendto(
            &self.socket,
            &request,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )
        .map_err(BlockdevError::by(
            BlockdevErrorKind::Failed,
            "sending to the kernel",
        ))?;
        let mut answers = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        // The kernel answers with the message (if any), then the ack.
        while !answers.iter().any(|a| matches!(a, Answer::Ack(_))) {
            let (n, _) = rustix::net::recv(&self.socket, &mut buf, RecvFlags::empty()).map_err(
                BlockdevError::by(BlockdevErrorKind::Failed, "reading from the kernel"),
            )?;
            let got = msg::decode(buf.get(..n).unwrap_or_default()).map_err(BlockdevError::by(
                BlockdevErrorKind::Failed,
                "decoding the kernel's answer",
            ))?;
            if got.is_empty() {
                return Err(BlockdevError::new(
                    BlockdevErrorKind::Failed,
                    "the kernel answered nothing",
                ));
            }
            answers.extend(got);
        }
        Ok(answers)
    }

    /// The id of the `nbd` family, or why there is none.
    fn nbd_family(&mut self) -> Result<u16, BlockdevError> {
        let answers = self.transact(msg::get_family)?;
        match (msg::error(&answers), msg::family_id(&answers)) {
            (Some(ENOENT), _) => Err(BlockdevError::new(
                BlockdevErrorKind::Unavailable,
                "the kernel NBD driver is not loaded (modprobe nbd)",
            )),
            (Some(errno), _) => Err(BlockdevError::new(
                BlockdevErrorKind::Failed,
                "looking up the nbd netlink family",
            )
            .because(std::io::Error::from_raw_os_error(errno))),
            (None, Some(id)) => Ok(id),
            (None, None) => Err(BlockdevError::new(
                BlockdevErrorKind::Failed,
                "the kernel's answer named no nbd family",
            )),
        }
    }
}

/// Whether the kernel NBD driver answers on netlink here.
pub fn available() -> Result<(), BlockdevError> {
    Netlink::open()?.nbd_family().map(|_| ())
}

/// What `/sys/block/nbdN/backend` says for a device of `volume` on this node: cleanup at
/// start finds this node's devices by it.
fn backend_identifier(paths: &BlockdevPaths, volume: &str) -> String {
    format!("ironhorn:{}:{volume}", paths.run_dir.display())
}

/// A volume attached as `/dev/nbdN`.
#[derive(Debug)]
pub struct KernelNbd {
    device: KernelDevice,
    index: u32,
    stop: CancellationToken,
    zeroing: Arc<ZeroingActivity>,
    /// What the driver knows the device by (see [`backend_identifier`]).
    backend: String,
}

impl KernelNbd {
    /// Serves `device` (a volume of `size` bytes) as a new NBD device linked from
    /// `<paths.dev_dir>/<volume>`.
    pub fn attach(
        paths: &BlockdevPaths,
        volume: &str,
        device: Arc<dyn BlockDevice>,
        size: u64,
        runtime: tokio::runtime::Handle,
    ) -> Result<KernelNbd, BlockdevError> {
        links::check_volume_name(volume)?;
        let mut netlink = Netlink::open()?;
        let family = netlink.nbd_family()?;
        let stop = CancellationToken::new();
        let zeroing = Arc::new(ZeroingActivity::default());
        let export = Arc::new(Export::new(
            volume,
            &format!("volume {volume}"),
            Arc::new(CountingDevice::new(device, zeroing.clone())),
        ));
        let mut theirs = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (ours, kernels) = UnixStream::pair()
                .and_then(|(a, b)| a.set_nonblocking(true).map(|()| (a, b)))
                .map_err(BlockdevError::by(
                    BlockdevErrorKind::Failed,
                    "making a socket pair",
                ))?;
            theirs.push(kernels);
            let (export, stop) = (export.clone(), stop.clone());
            runtime.spawn(async move {
                match tokio::net::UnixStream::from_std(ours) {
                    Ok(stream) => serve_connected(stream, export, stop).await,
                    Err(e) => tracing::warn!(error = %e, "serving an NBD socket"),
                }
            });
        }
        let request = Connect {
            size_bytes: size,
            block_size: 4096,
            server_flags: u64::from(export.transmission_flags()),
            client_flags: msg::NBD_CFLAG_DESTROY_ON_DISCONNECT,
            timeout_secs: REQUEST_TIMEOUT_SECS,
            dead_connection_timeout_secs: 0,
            socket_fds: theirs.iter().map(|s| s.as_raw_fd() as u32).collect(),
            backend: backend_identifier(paths, volume),
        };
        let backend = request.backend.clone();
        let answers = netlink.transact(|seq| msg::connect(family, seq, &request));
        // The driver holds its own references now (or failed): ours go.
        drop(theirs);
        let answers = answers.inspect_err(|_| stop.cancel())?;
        if let Some(errno) = msg::error(&answers) {
            stop.cancel();
            return Err(BlockdevError::new(
                BlockdevErrorKind::Failed,
                "the kernel NBD driver refused the connection",
            )
            .because(std::io::Error::from_raw_os_error(errno)));
        }
        let Some(index) = msg::connected_index(&answers) else {
            stop.cancel();
            return Err(BlockdevError::new(
                BlockdevErrorKind::Failed,
                "the kernel named no NBD device",
            ));
        };
        let path = PathBuf::from(format!("/dev/nbd{index}"));
        let attached = wait_for(Duration::from_secs(10), || path.exists())
            .then(|| kernel_device::device_number(&path))
            .flatten()
            .ok_or_else(|| {
                BlockdevError::new(
                    BlockdevErrorKind::Failed,
                    format!("{} did not appear", path.display()),
                )
            })
            .and_then(|number| {
                let link = links::publish(&paths.dev_dir, volume, &path)?;
                Ok(KernelNbd {
                    device: KernelDevice {
                        volume: volume.to_string(),
                        path: path.clone(),
                        number,
                        link,
                    },
                    index,
                    stop: stop.clone(),
                    zeroing,
                    backend,
                })
            });
        if attached.is_err() {
            let _ = netlink.transact(|seq| msg::disconnect(family, seq, index));
            stop.cancel();
        }
        attached
    }

    /// The kernel device and its link.
    pub fn device(&self) -> &KernelDevice {
        &self.device
    }

    /// The discards and zeroing the kernel has sent through the device.
    pub fn zeroing(&self) -> &ZeroingActivity {
        &self.zeroing
    }

    /// Makes the device take the volume's new size.
    pub fn refresh_size(&self, size: u64) -> Result<(), BlockdevError> {
        resize(self.index, size, &self.backend)
    }

    /// Detaches: releases the device (see [`KernelDevice::release`]), disconnects it, and ends
    /// the sockets' service. What could not be done is returned, one line each.
    pub fn teardown(self) -> Vec<String> {
        let mut problems = self.device.release();
        if let Err(e) = disconnect(self.index) {
            problems.push(e.to_string());
        }
        self.stop.cancel();
        problems
    }
}

/// Gives `/dev/nbd<index>` a new size (the driver tells the kernel, which tells the
/// filesystems and udev).
pub fn resize(index: u32, size: u64, backend: &str) -> Result<(), BlockdevError> {
    let mut netlink = Netlink::open()?;
    let family = netlink.nbd_family()?;
    let answers = netlink.transact(|seq| msg::resize(family, seq, index, size, backend))?;
    match msg::error(&answers) {
        Some(errno) => Err(BlockdevError::new(
            BlockdevErrorKind::Failed,
            format!("resizing /dev/nbd{index} to {size} bytes"),
        )
        .because(std::io::Error::from_raw_os_error(errno))),
        None => Ok(()),
    }
}

/// `nbdN` devices whose backend names this node's run directory.
pub fn stale_devices(paths: &BlockdevPaths) -> Vec<(u32, String)> {
    let prefix = format!("ironhorn:{}:", paths.run_dir.display());
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let index: u32 = name.strip_prefix("nbd")?.parse().ok()?;
            let backend =
                std::fs::read_to_string(Path::new("/sys/block").join(&name).join("backend"))
                    .ok()?;
            let volume = backend.trim().strip_prefix(&prefix)?.to_string();
            Some((index, volume))
        })
        .collect()
}

/// Disconnects `/dev/nbd<index>` (cleanup at start).
pub fn disconnect(index: u32) -> Result<(), BlockdevError> {
    let mut netlink = Netlink::open()?;
    let family = netlink.nbd_family()?;
    let answers = netlink.transact(|seq| msg::disconnect(family, seq, index))?;
    match msg::error(&answers) {
        Some(errno) => Err(BlockdevError::new(
            BlockdevErrorKind::Failed,
            format!("disconnecting /dev/nbd{index}"),
        )
        .because(std::io::Error::from_raw_os_error(errno))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real netlink exchange with this kernel: the nbd family is there (the driver is
    /// loaded) or the answer says it is not, in words that say what to do.
    #[test]
    fn the_kernel_says_whether_its_nbd_driver_is_there() {
        let loaded = Path::new("/sys/module/nbd").exists();
        match available() {
            Ok(()) => assert!(loaded, "the nbd family answered without the module"),
            Err(e) if e.kind() == BlockdevErrorKind::Unavailable && !loaded => {
                assert!(e.to_string().contains("modprobe nbd"), "{e}")
            }
            Err(e) => panic!("unexpected answer (module loaded: {loaded}): {e}"),
        }
    }

    #[test]
    fn this_nodes_devices_are_named_by_its_run_directory() {
        let paths = BlockdevPaths {
            run_dir: PathBuf::from("/var/lib/ironhorn/run/fuse"),
            dev_dir: PathBuf::from("/dev/ironhorn"),
        };
        assert_eq!(
            backend_identifier(&paths, "pvc-1"),
            "ironhorn:/var/lib/ironhorn/run/fuse:pvc-1"
        );
    }
}
