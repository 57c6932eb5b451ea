//! The fencing generation kept in a replica directory (`ironhorn.generation`, decimal): the
//! newest attachment that claimed the replica. Written atomically (temporary file, fsync,
//! rename, fsync of the directory); absent means no attachment has claimed it.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use ironhorn_format::names::GENERATION;

use crate::error::{ReplicaError, Result};
use crate::fsio;

/// The stored generation; 0 when none is stored.
pub fn read(dir: &Path) -> Result<u64> {
    let path = dir.join(GENERATION);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            ReplicaError::Refused(format!(
                "{} holds {:?}, not a generation number",
                path.display(),
                text.chars().take(40).collect::<String>()
            ))
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(ReplicaError::io("reading", path)(e)),
    }
}

/// Stores `generation`, durably, before returning.
pub fn write(dir: &Path, dir_handle: &File, generation: u64) -> Result<()> {
    fsio::atomic_write(
        dir,
        dir_handle,
        GENERATION,
        format!("{generation}\n").as_bytes(),
    )
    .map_err(ReplicaError::io("storing the fencing generation in", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Replica, SharedReplica};

    #[test]
    fn a_claim_fences_older_generations_and_outlives_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let replica = Replica::create(tmp.path(), 1 << 20).unwrap();
        let shared = SharedReplica::new(replica);
        // Nobody has claimed it: a caller without a generation is served.
        shared
            .as_generation(0, || Ok::<_, ReplicaError>(()))
            .unwrap();
        shared.claim(3).unwrap();
        assert!(matches!(
            shared.as_generation(2, || Ok::<_, ReplicaError>(())),
            Err(ReplicaError::Fenced {
                caller: 2,
                current: 3
            })
        ));
        assert!(matches!(shared.claim(2), Err(ReplicaError::Fenced { .. })));
        shared
            .as_generation(3, || Ok::<_, ReplicaError>(()))
            .unwrap();
        // The same generation claims again (another connection of the same engine).
        shared.claim(3).unwrap();
        drop(shared);
        assert_eq!(read(tmp.path()).unwrap(), 3);
        let reopened = SharedReplica::new(Replica::open(tmp.path(), &Default::default()).unwrap());
        assert_eq!(reopened.generation(), 3);
        assert!(reopened
            .as_generation(0, || Ok::<_, ReplicaError>(()))
            .is_err());
    }

    #[test]
    fn an_unreadable_generation_lets_nobody_in_and_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let replica = Replica::create(tmp.path(), 1 << 20).unwrap();
        std::fs::write(tmp.path().join(GENERATION), "garbage").unwrap();
        let shared = SharedReplica::new(replica);
        assert!(shared
            .as_generation(7, || Ok::<_, ReplicaError>(()))
            .is_err());
        let e = shared.claim(7).unwrap_err().to_string();
        assert!(e.contains("delete ironhorn.generation"), "{e}");
    }
}
