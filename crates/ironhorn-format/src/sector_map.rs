//! The location map: for every 4 KiB sector of the volume, the index of the newest layer of
//! the chain that holds it (1 = oldest layer, 0 = no layer: the sector reads as zeros).
//!
//! One byte per sector, as Longhorn's engine keeps it; this is what caps a chain at 255
//! layers. Built from allocation (extents), never from content: an allocated block of zeros
//! hides older data.

use crate::SECTOR_SIZE;

/// Layer index within a chain; 0 means "no layer".
pub type LayerIndex = u8;

/// A run of consecutive sectors with the same owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first_sector: u64,
    pub sectors: u64,
    pub owner: LayerIndex,
}

/// An allocated byte range `[start, end)` of a layer file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SectorMap {
    owners: Vec<LayerIndex>,
}

/// Sectors covering `[start, end)` bytes (any partially covered sector counts).
pub fn sectors_covering(start: u64, end: u64) -> (u64, u64) {
    let first = start / SECTOR_SIZE;
    let last = end.div_ceil(SECTOR_SIZE);
    (first, last.saturating_sub(first))
}

impl SectorMap {
    /// A map of `sectors` sectors, all unowned.
    pub fn new(sectors: u64) -> Self {
        SectorMap {
            owners: vec![0; usize::try_from(sectors).unwrap_or(usize::MAX)],
        }
    }

    pub fn sectors(&self) -> u64 {
        self.owners.len() as u64
    }

    /// Bytes of memory the map uses for its entries.
    pub fn memory_bytes(&self) -> usize {
        self.owners.capacity()
    }

    pub fn owner(&self, sector: u64) -> LayerIndex {
        usize::try_from(sector)
            .ok()
            .and_then(|s| self.owners.get(s).copied())
            .unwrap_or(0)
    }

    /// Sets the owner of `count` sectors from `first`; sectors beyond the map are ignored.
    pub fn stamp(&mut self, first: u64, count: u64, owner: LayerIndex) {
        let len = self.owners.len();
        let start = usize::try_from(first).unwrap_or(len).min(len);
        let end = usize::try_from(first.saturating_add(count))
            .unwrap_or(len)
            .min(len);
        self.owners[start..end].fill(owner);
    }

    /// Grows or shrinks the map; new sectors are unowned.
    pub fn resize(&mut self, sectors: u64) {
        self.owners
            .resize(usize::try_from(sectors).unwrap_or(usize::MAX), 0);
    }

    /// Runs of equal owners covering `count` sectors from `first`, clipped to the map.
    pub fn runs(&self, first: u64, count: u64) -> Runs<'_> {
        let len = self.owners.len() as u64;
        let start = first.min(len);
        Runs {
            map: self,
            next: start,
            end: first.saturating_add(count).min(len),
        }
    }
}

/// Iterator over [`Run`]s; see [`SectorMap::runs`].
#[derive(Debug)]
pub struct Runs<'a> {
    map: &'a SectorMap,
    next: u64,
    end: u64,
}

impl Iterator for Runs<'_> {
    type Item = Run;
    fn next(&mut self) -> Option<Run> {
        if self.next >= self.end {
            return None;
        }
        let start = self.next as usize;
        let end = self.end as usize;
        let owner = self.map.owners[start];
        let len = self.map.owners[start..end]
            .iter()
            .position(|o| *o != owner)
            .unwrap_or(end - start);
        self.next += len as u64;
        Some(Run {
            first_sector: start as u64,
            sectors: len as u64,
            owner,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn newer_layers_win() {
        let mut map = SectorMap::new(4);
        for (layer, start, end) in [(1, 0, 8192), (2, 4096, 4097)] {
            let (first, count) = sectors_covering(start, end);
            map.stamp(first, count, layer);
        }
        let runs: Vec<Run> = map.runs(0, 10).collect();
        assert_eq!(
            runs,
            [
                Run {
                    first_sector: 0,
                    sectors: 1,
                    owner: 1
                },
                Run {
                    first_sector: 1,
                    sectors: 1,
                    owner: 2
                },
                Run {
                    first_sector: 2,
                    sectors: 2,
                    owner: 0
                },
            ]
        );
    }

    proptest! {
        #[test]
        fn runs_cover_exactly_and_agree_with_owner(
            owners in proptest::collection::vec(0u8..4, 0..200),
            first in 0u64..250,
            count in 0u64..250,
        ) {
            let map = SectorMap { owners: owners.clone() };
            let mut expect = first.min(owners.len() as u64);
            for run in map.runs(first, count) {
                prop_assert_eq!(run.first_sector, expect);
                prop_assert!(run.sectors > 0);
                for s in run.first_sector..run.first_sector + run.sectors {
                    prop_assert_eq!(map.owner(s), run.owner);
                }
                expect += run.sectors;
            }
            prop_assert_eq!(expect, first.saturating_add(count).min(owners.len() as u64));
        }
    }
}
