//! CSI names to Ironhorn names. A CO names volumes and snapshots freely (up to 128 characters
//! of any text, `pvc-<uuid>` from Kubernetes); Ironhorn names are DNS labels (lowercase
//! letters, digits, `-` and `.`, at most 40 characters for a volume, 63 for a snapshot). A name
//! that is already valid is kept as it is, so `kubectl` and `ironhorn volume ls` show the same
//! name; any other is made valid and given a hash of the original, so the mapping is stable
//! (the same CSI name always finds the same volume) and two names do not meet.

use sha2::{Digest, Sha256};

/// Longest volume name Ironhorn takes.
pub const MAX_VOLUME_NAME: usize = 40;
/// Longest snapshot name Ironhorn takes.
pub const MAX_SNAPSHOT_NAME: usize = 63;
/// Hex digits of the hash appended to a name that had to change.
const HASH_DIGITS: usize = 10;

fn valid(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !name.is_empty()
        && name.len() <= max
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-' || *b == b'.')
}

/// The Ironhorn name for CSI name `name` (which must not be empty), at most `max` long.
pub fn ironhorn_name(name: &str, max: usize) -> String {
    if valid(name, max) {
        return name.to_string();
    }
    let hash = Sha256::digest(name.as_bytes());
    let hex: String = hash
        .iter()
        .flat_map(|b| [b >> 4, b & 15])
        .take(HASH_DIGITS)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect();
    let mut stem = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
            c
        } else {
            '-'
        };
        if c == '-' && stem.ends_with('-') {
            continue;
        }
        stem.push(c);
    }
    let keep = max - HASH_DIGITS - 1;
    let stem: String = stem.chars().take(keep).collect();
    let stem = stem.trim_matches(|c: char| c == '-' || c == '.');
    if stem.is_empty() {
        format!("v-{hex}")
    } else {
        format!("{stem}-{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kubernetes_names_are_kept() {
        let pvc = "pvc-3f2a9c1e-8d7b-4e6f-a5c4-1b2d3e4f5a6b";
        assert_eq!(pvc.len(), 40);
        assert_eq!(ironhorn_name(pvc, MAX_VOLUME_NAME), pvc);
        assert_eq!(ironhorn_name("snapshot-1", MAX_SNAPSHOT_NAME), "snapshot-1");
    }

    #[test]
    fn other_names_are_made_valid_and_distinct() {
        let a = ironhorn_name("My Volume", MAX_VOLUME_NAME);
        let b = ironhorn_name("my-volume", MAX_VOLUME_NAME);
        assert!(a.starts_with("my-volume-"), "{a}");
        assert_eq!(b, "my-volume");
        assert_ne!(a, b);
        assert_eq!(ironhorn_name("___", MAX_VOLUME_NAME).len(), 12);
    }

    proptest! {
        #[test]
        fn every_name_maps_to_a_valid_stable_name(name in "\\PC{1,128}") {
            let mapped = ironhorn_name(&name, MAX_VOLUME_NAME);
            prop_assert!(valid(&mapped, MAX_VOLUME_NAME), "{:?} -> {:?}", name, mapped);
            prop_assert_eq!(ironhorn_name(&name, MAX_VOLUME_NAME), mapped);
        }

        #[test]
        fn long_names_differing_at_the_end_do_not_meet(stem in "[a-z]{60}", x in "[a-z]", y in "[a-z]") {
            prop_assume!(x != y);
            prop_assert_ne!(
                ironhorn_name(&format!("{stem}{x}"), MAX_VOLUME_NAME),
                ironhorn_name(&format!("{stem}{y}"), MAX_VOLUME_NAME)
            );
        }
    }
}
