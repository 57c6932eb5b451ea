//! A plain in-memory model of a replica: layers of sparse 4 KiB sectors with Longhorn's
//! semantics written the simplest way (no files, no sector map, purge as a fixpoint).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

pub const SECTOR: u64 = 4096;
pub const HEAD: &str = "@head";

#[derive(Debug, Clone, Default)]
pub struct MLayer {
    pub parent: Option<String>,
    pub removed: bool,
    pub user: bool,
    pub data: BTreeMap<u64, Vec<u8>>,
}

/// The plain model: layers of sparse 4 KiB sectors; the head is the layer named `@head`.
#[derive(Debug, Clone)]
pub struct Model {
    pub size: u64,
    pub layers: BTreeMap<String, MLayer>,
}

impl Model {
    pub fn new(size: u64) -> Self {
        Model {
            size,
            layers: BTreeMap::from([(HEAD.to_string(), MLayer::default())]),
        }
    }

    pub fn chain(&self, top: &str) -> Vec<String> {
        let mut out = vec![top.to_string()];
        let mut cur = self.layers[top].parent.clone();
        while let Some(p) = cur {
            cur = self.layers[&p].parent.clone();
            out.push(p);
        }
        out
    }

    pub fn sector(&self, top: &str, sector: u64) -> Vec<u8> {
        for layer in self.chain(top) {
            if let Some(d) = self.layers[&layer].data.get(&sector) {
                return d.clone();
            }
        }
        vec![0; SECTOR as usize]
    }

    pub fn view(&self, top: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size as usize);
        for s in 0..self.size / SECTOR {
            out.extend(self.sector(top, s));
        }
        out
    }

    pub fn children(&self, name: &str) -> usize {
        self.layers
            .values()
            .filter(|l| l.parent.as_deref() == Some(name))
            .count()
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        for s in offset / SECTOR..end.div_ceil(SECTOR) {
            let mut content = self.sector(HEAD, s);
            let s_start = s * SECTOR;
            for (i, byte) in content.iter_mut().enumerate() {
                let pos = s_start + i as u64;
                if pos >= offset && pos < end {
                    *byte = data[(pos - offset) as usize];
                }
            }
            self.layers.get_mut(HEAD).unwrap().data.insert(s, content);
        }
    }

    pub fn unmap(&mut self, offset: u64, len: u64) {
        let first = offset.div_ceil(SECTOR);
        let last = (offset + len) / SECTOR;
        let mut victims = vec![HEAD.to_string()];
        let mut cur = self.layers[HEAD].parent.clone();
        while let Some(p) = cur {
            if !self.layers[&p].removed || self.children(&p) != 1 {
                break;
            }
            cur = self.layers[&p].parent.clone();
            victims.push(p);
        }
        for v in victims {
            let layer = self.layers.get_mut(&v).unwrap();
            for s in first..last {
                layer.data.remove(&s);
            }
        }
    }

    pub fn snapshot(&mut self, name: &str, user: bool, new_size: u64) {
        let mut old = self.layers.remove(HEAD).unwrap();
        old.user = user;
        for l in self.layers.values_mut() {
            if l.parent.as_deref() == Some(HEAD) {
                l.parent = Some(name.to_string());
            }
        }
        self.layers.insert(name.to_string(), old);
        self.layers.insert(
            HEAD.to_string(),
            MLayer {
                parent: Some(name.to_string()),
                ..MLayer::default()
            },
        );
        self.size = new_size;
    }

    pub fn revert(&mut self, name: &str) {
        self.layers.insert(
            HEAD.to_string(),
            MLayer {
                parent: Some(name.to_string()),
                ..MLayer::default()
            },
        );
    }

    /// Longhorn's purge as a fixpoint: removed leaves vanish, a removed snapshot with one
    /// child (not the head) is folded into it, and the head's removed parent loses what
    /// the head covers.
    pub fn purge(&mut self) {
        for (name, l) in self.layers.iter_mut() {
            if name != HEAD && !l.user {
                l.removed = true;
            }
        }
        loop {
            let candidate = self.layers.iter().find_map(|(name, l)| {
                if name == HEAD || !l.removed {
                    return None;
                }
                let kids: Vec<String> = self
                    .layers
                    .iter()
                    .filter(|(_, c)| c.parent.as_deref() == Some(name.as_str()))
                    .map(|(n, _)| n.clone())
                    .collect();
                match kids.len() {
                    0 => Some((name.clone(), None)),
                    1 if kids[0] != HEAD => Some((name.clone(), Some(kids[0].clone()))),
                    _ => None,
                }
            });
            let Some((name, child)) = candidate else {
                break;
            };
            let gone = self.layers.remove(&name).unwrap();
            if let Some(child) = child {
                let c = self.layers.get_mut(&child).unwrap();
                for (s, d) in gone.data {
                    c.data.entry(s).or_insert(d);
                }
                c.parent = gone.parent;
            }
        }
        if let Some(p) = self.layers[HEAD].parent.clone() {
            if self.layers[&p].removed && self.children(&p) == 1 {
                let covered: BTreeSet<u64> = self.layers[HEAD].data.keys().copied().collect();
                self.layers
                    .get_mut(&p)
                    .unwrap()
                    .data
                    .retain(|s, _| !covered.contains(s));
            }
        }
    }

    pub fn snapshots(&self) -> Vec<String> {
        self.layers.keys().filter(|n| *n != HEAD).cloned().collect()
    }
}
