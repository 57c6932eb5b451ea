//! Volume capabilities: which a volume of Ironhorn's can satisfy. A volume is one block
//! device attached to one node at a time, used as a raw block device or through a filesystem
//! (ext4 or xfs); several nodes at once is not offered.

use tonic::Status;

use crate::csi::volume_capability::access_mode::Mode;
use crate::csi::volume_capability::AccessType;
use crate::csi::VolumeCapability;
use crate::params::filesystem;

/// How a published volume is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Block,
    Mount {
        fs_type: Option<&'static str>,
        mount_flags: Vec<String>,
    },
}

/// Why a capability cannot be satisfied (None: it can).
pub fn unsupported(capability: &VolumeCapability) -> Option<String> {
    let mode = capability
        .access_mode
        .as_ref()
        .map(|m| Mode::try_from(m.mode).unwrap_or(Mode::Unknown))
        .unwrap_or(Mode::Unknown);
    match mode {
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter => {}
        Mode::Unknown => return Some("the access mode is missing".into()),
        other => {
            return Some(format!(
                "access mode {} is not supported: an Ironhorn volume is used on one node at a time",
                other.as_str_name()
            ))
        }
    }
    match &capability.access_type {
        None => Some("the access type (block or mount) is missing".into()),
        Some(AccessType::Block(_)) => None,
        Some(AccessType::Mount(m)) => filesystem(&m.fs_type).err(),
    }
}

/// Checks a list of capabilities (it must not be empty): InvalidArgument names the first
/// that cannot be satisfied.
pub fn check_all(capabilities: &[VolumeCapability]) -> Result<(), Status> {
    if capabilities.is_empty() {
        return Err(Status::invalid_argument("volume_capabilities is required"));
    }
    for c in capabilities {
        if let Some(why) = unsupported(c) {
            return Err(Status::invalid_argument(why));
        }
    }
    Ok(())
}

/// Reads one capability (which must be given and supported).
pub fn access(capability: Option<&VolumeCapability>) -> Result<Access, Status> {
    let capability =
        capability.ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
    if let Some(why) = unsupported(capability) {
        return Err(Status::invalid_argument(why));
    }
    Ok(match &capability.access_type {
        Some(AccessType::Mount(m)) => Access::Mount {
            fs_type: if m.fs_type.is_empty() {
                None
            } else {
                filesystem(&m.fs_type).ok()
            },
            mount_flags: m.mount_flags.clone(),
        },
        _ => Access::Block,
    })
}

/// Whether the capability asks for read-only use.
pub fn read_only(capability: Option<&VolumeCapability>) -> bool {
    capability
        .and_then(|c| c.access_mode.as_ref())
        .is_some_and(|m| {
            m.mode == Mode::SingleNodeReaderOnly as i32
                || m.mode == Mode::MultiNodeReaderOnly as i32
        })
}
