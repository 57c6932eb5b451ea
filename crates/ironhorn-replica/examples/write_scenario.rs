//! Writes a replica directory with every operation of the store (unaligned writes, zeros that
//! hide older data, snapshots with labels, unmap, expand, remove, purge with coalesce and
//! prune, revert) and prints the SHA-256 of the head and of each remaining snapshot, so the
//! directory can be read back with another implementation (Longhorn's engine) and compared.
//!
//! Usage: cargo run -p ironhorn-replica --example write_scenario -- DIR

use std::path::PathBuf;

use ironhorn_replica::{Replica, ReplicaOptions};
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: write_scenario DIR")?);
    ironhorn_testkit::write_interop_scenario(&dir)?;

    let names: Vec<String> = {
        let view = Replica::open(&dir, &ReplicaOptions::read_only())?;
        view.layout()
            .layers
            .iter()
            .filter(|(f, n)| !n.meta.removed && ironhorn_format::names::snapshot_name(f).is_some())
            .map(|(f, _)| ironhorn_format::names::display_name(f))
            .collect()
    };
    for view in std::iter::once("volume-head".to_string()).chain(names) {
        let r = Replica::open(&dir, &ReplicaOptions::snapshot(&view))?;
        let mut buf = vec![0u8; r.size() as usize];
        r.read_at(&mut buf, 0)?;
        let hex: String = Sha256::digest(&buf)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("{view} sha256:{hex}");
    }
    Ok(())
}
