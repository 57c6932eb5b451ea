//! The recent-writes ring (`ironhorn.recent-writes`, Ironhorn's own file beside Longhorn's;
//! Longhorn ignores it): the byte ranges of a replica's last [`RING_SLOTS`] writes and
//! unmaps, each recorded *before* its data, in slot `revision % RING_SLOTS`.
//!
//! It exists for one case: the engine dies with writes in flight. Its replicas may then
//! differ a little: one has writes another lacks, so their revision counters differ by up to
//! the writes in flight. The engine bounds those (see `ironhorn_engine::window`), so every
//! range that may differ is in the union of the replicas' rings: at start it copies just
//! those ranges from a replica with the newest revision to the others, and they serve again
//! without a rebuild.
//!
//! Layout: [`RING_SLOTS`] entries of 32 bytes, little-endian: revision u64, offset u64,
//! length u64, and a check word (the three XORed with a constant) that tells a written entry
//! from zeros or a torn one.

/// Entries in the ring.
pub const RING_SLOTS: u64 = 4096;
/// Bytes per entry.
pub const ENTRY_LEN: usize = 32;
/// Size of the ring file.
pub const RING_LEN: u64 = RING_SLOTS * ENTRY_LEN as u64;
const CHECK_SALT: u64 = 0x4952_4e47_5752_4954; // "IRNGWRIT"

/// One recorded write or unmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentWrite {
    pub revision: u64,
    pub offset: u64,
    pub len: u64,
}

impl RecentWrite {
    /// Where the entry goes in the ring file.
    pub fn slot_offset(&self) -> u64 {
        (self.revision % RING_SLOTS) * ENTRY_LEN as u64
    }

    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        let check = self.revision ^ self.offset ^ self.len ^ CHECK_SALT;
        for (i, word) in [self.revision, self.offset, self.len, check]
            .into_iter()
            .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

/// The valid entries of a ring file's bytes (any length; a short or damaged file yields
/// fewer entries, never an error), newest revision first.
pub fn decode_ring(bytes: &[u8]) -> Vec<RecentWrite> {
    let mut entries: Vec<RecentWrite> = bytes
        .chunks_exact(ENTRY_LEN)
        .take(RING_SLOTS as usize)
        .enumerate()
        .filter_map(|(slot, raw)| {
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
                u64::from_le_bytes(b)
            };
            let entry = RecentWrite {
                revision: word(0),
                offset: word(1),
                len: word(2),
            };
            let valid = word(3) == entry.revision ^ entry.offset ^ entry.len ^ CHECK_SALT
                && entry.revision % RING_SLOTS == slot as u64
                && entry.offset.checked_add(entry.len).is_some();
            valid.then_some(entry)
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.revision));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zeros_and_torn_entries_are_not_entries() {
        assert!(decode_ring(&[0u8; RING_LEN as usize]).is_empty());
        let mut ring = vec![0u8; RING_LEN as usize];
        let w = RecentWrite {
            revision: 300,
            offset: 4096,
            len: 8192,
        };
        let at = w.slot_offset() as usize;
        ring[at..at + ENTRY_LEN].copy_from_slice(&w.encode());
        assert_eq!(decode_ring(&ring), vec![w]);
        ring[at + 9] ^= 1; // a torn offset
        assert!(decode_ring(&ring).is_empty());
    }

    #[test]
    fn an_entry_in_the_wrong_slot_is_ignored() {
        let w = RecentWrite {
            revision: 1,
            offset: 0,
            len: 1,
        };
        // Slot 0 holds an entry for revision 1: not written by us.
        assert!(decode_ring(&w.encode()).is_empty());
    }

    proptest! {
        #[test]
        fn the_last_writes_come_back_newest_first(
            writes in proptest::collection::vec((0u64..1 << 40, 1u64..1 << 24), 1..5000)
        ) {
            let mut ring = vec![0u8; RING_LEN as usize];
            for (i, (offset, len)) in writes.iter().enumerate() {
                let w = RecentWrite { revision: i as u64 + 1, offset: *offset, len: *len };
                let at = w.slot_offset() as usize;
                ring[at..at + ENTRY_LEN].copy_from_slice(&w.encode());
            }
            let decoded = decode_ring(&ring);
            let expect: Vec<RecentWrite> = writes
                .iter()
                .enumerate()
                .rev()
                .take(RING_SLOTS as usize)
                .map(|(i, (offset, len))| RecentWrite { revision: i as u64 + 1, offset: *offset, len: *len })
                .collect();
            prop_assert_eq!(decoded, expect);
        }

        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..140_000)) {
            let _ = decode_ring(&bytes);
        }
    }
}
