//! Validation of names operators choose (volumes, nodes, disks, tags, snapshots).

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("{what} name must not be empty")]
    Empty { what: &'static str },
    #[error("{what} name {name:?} is longer than {max} characters")]
    TooLong {
        what: &'static str,
        name: String,
        max: usize,
    },
    #[error("{what} name {name:?} may contain only lowercase letters, digits, '-' and '.', and must start and end with a letter or digit")]
    BadCharacters { what: &'static str, name: String },
}

/// Longest volume name: Longhorn keeps volume names to 40 characters (63 minus room for the
/// suffixes of the replica and engine names derived from it).
pub const MAX_VOLUME_NAME: usize = 40;
/// Longest name of other resources (a DNS label).
pub const MAX_NAME: usize = 63;

/// Checks a resource name: lowercase letters, digits, '-' and '.', starting and ending with
/// a letter or digit (a Kubernetes DNS-1123 name, as Longhorn requires), at most `max` long.
pub fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            what,
            name: name.to_string(),
            max,
        });
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let ok_edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !name.chars().all(ok_char) || !ok_edge(name.chars().next()) || !ok_edge(name.chars().last())
    {
        return Err(NameError::BadCharacters {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_rules() {
        assert!(check_name("volume", "pvc-1.data", MAX_VOLUME_NAME).is_ok());
        assert!(matches!(
            check_name("volume", "", MAX_VOLUME_NAME),
            Err(NameError::Empty { .. })
        ));
        for bad in ["Upper", "-lead", "trail-", "sp ace", "under_score", "ü"] {
            assert!(
                matches!(
                    check_name("volume", bad, MAX_VOLUME_NAME),
                    Err(NameError::BadCharacters { .. })
                ),
                "{bad}"
            );
        }
        let long = "a".repeat(MAX_VOLUME_NAME + 1);
        assert!(matches!(
            check_name("volume", &long, MAX_VOLUME_NAME),
            Err(NameError::TooLong { .. })
        ));
    }
}
