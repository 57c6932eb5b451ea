//! A volume's data source, Longhorn's `dataSource`: `snap://<volume>/<snapshot>` clones a
//! snapshot of another volume.

/// A snapshot to clone a new volume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSource {
    pub volume: String,
    pub snapshot: String,
}

const SCHEME: &str = "snap://";

impl SnapshotSource {
    /// Reads `snap://<volume>/<snapshot>`; the message says what is wrong.
    pub fn parse(text: &str) -> Result<SnapshotSource, String> {
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("data source {text:?} is not `snap://<volume>/<snapshot>`"))?;
        match rest.split_once('/') {
            Some((volume, snapshot))
                if !volume.is_empty() && !snapshot.is_empty() && !snapshot.contains('/') =>
            {
                Ok(SnapshotSource {
                    volume: volume.to_string(),
                    snapshot: snapshot.to_string(),
                })
            }
            _ => Err(format!(
                "data source {text:?} names no volume and snapshot: write `snap://<volume>/<snapshot>`"
            )),
        }
    }
}

impl std::fmt::Display for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.volume, self.snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn malformed_sources_are_refused() {
        for bad in [
            "",
            "vol://a",
            "snap://",
            "snap://a",
            "snap://a/",
            "snap:///s",
            "snap://a/b/c",
        ] {
            assert!(SnapshotSource::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn a_source_reads_back(volume in "[a-z0-9][a-z0-9.-]{0,20}", snapshot in "[A-Za-z0-9_.-]{1,30}") {
            let source = SnapshotSource { volume, snapshot };
            prop_assert_eq!(SnapshotSource::parse(&source.to_string()), Ok(source));
        }
    }
}
