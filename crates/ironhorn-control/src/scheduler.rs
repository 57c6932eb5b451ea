//! The replica scheduler: picks the disk for one new replica of a volume, or says why none
//! will do. Pure: it sees nodes, disks and the volume's existing replicas as data.
//!
//! The rules are Longhorn's (longhorn-manager `scheduler/replica_scheduler.go`, v1.7):
//! - a node is a candidate when it is ready, allows scheduling and carries every tag of the
//!   volume's node selector; a disk when it allows scheduling, carries every tag of the disk
//!   selector and has room (see [`fits`]);
//! - anti-affinity, in tiers: first nodes in zones without a replica of the volume; then, if
//!   zone anti-affinity is soft, nodes without one in any zone; then, if node anti-affinity
//!   is soft, nodes that already hold one. The first tier with a fitting disk wins; within
//!   it disks holding no replica of the volume are preferred (required when disk
//!   anti-affinity is hard);
//! - among the remaining disks, the one with the most usable space (available minus
//!   reserved). Longhorn breaks ties at random; here the first by node, then disk name.
//!
//! Unlike Longhorn, every replica of the volume counts for anti-affinity, including ones on
//! nodes that are down (stricter and predictable), and a refusal names each node and disk
//! with its reason, not only the set of reasons.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ironhorn_api::resource::Node;

/// Longhorn's refusal reasons (`ErrorReplicaSchedule*`), with their exact strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    InsufficientStorage,
    DisksUnavailable,
    TagsNotFulfilled,
    NodesUnavailable,
    HardAffinityNotSatisfied,
    /// Every candidate already holds a replica and anti-affinity is hard.
    AntiAffinity,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InsufficientStorage => "insufficient storage",
            Reason::DisksUnavailable => "disks are unavailable",
            Reason::TagsNotFulfilled => "tags not fulfilled",
            Reason::NodesUnavailable => "nodes are unavailable",
            Reason::HardAffinityNotSatisfied => "hard affinity cannot be satisfied",
            Reason::AntiAffinity => "replica anti-affinity cannot be satisfied",
        }
    }
}

/// The settings the scheduler follows (Longhorn's keys in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulingSettings {
    /// [replica-soft-anti-affinity] Two replicas may share a node (as a last resort).
    pub soft_node_anti_affinity: bool,
    /// [replica-zone-soft-anti-affinity] Two replicas may share a zone.
    pub soft_zone_anti_affinity: bool,
    /// [replica-disk-soft-anti-affinity] Two replicas may share a disk.
    pub soft_disk_anti_affinity: bool,
    /// [storage-over-provisioning-percentage]
    pub over_provisioning_percentage: u64,
    /// [storage-minimal-available-percentage]
    pub minimal_available_percentage: u64,
}

impl Default for SchedulingSettings {
    fn default() -> Self {
        SchedulingSettings {
            soft_node_anti_affinity: false,
            soft_zone_anti_affinity: true,
            soft_disk_anti_affinity: true,
            over_provisioning_percentage: 100,
            minimal_available_percentage: 25,
        }
    }
}

/// Where a replica is (or would be).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Placement {
    pub node: String,
    pub disk: String,
}

/// What is to be placed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The volume's size (what the replica may grow to).
    pub size: u64,
    /// Bytes the volume holds now (what the replica needs right away).
    pub actual_size: u64,
    pub node_selector: Vec<String>,
    pub disk_selector: Vec<String>,
    /// Only this node will do (data locality).
    pub hard_node: Option<String>,
}

/// The space facts of one disk the capacity rule needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskSpace {
    pub maximum: u64,
    pub available: u64,
    pub reserved: u64,
    /// Sum of the sizes of the replicas already placed on the disk.
    pub scheduled: u64,
}

/// Whether a replica of `size` bytes, needing `required` bytes now, fits on a disk
/// (Longhorn's `IsSchedulableToDisk`): the filesystem has space and keeps the minimal
/// available percentage free after `required`, and the sizes scheduled to the disk stay
/// within (maximum − reserved) × over-provisioning percentage.
pub fn fits(size: u64, required: u64, disk: &DiskSpace, settings: &SchedulingSettings) -> bool {
    let (max, avail) = (i128::from(disk.maximum), i128::from(disk.available));
    let min_free = max * i128::from(settings.minimal_available_percentage) / 100;
    let limit =
        (max - i128::from(disk.reserved)) * i128::from(settings.over_provisioning_percentage) / 100;
    max > 0
        && avail > 0
        && avail - i128::from(required) > min_free
        && i128::from(size) + i128::from(disk.scheduled) <= limit
}

/// Bytes scheduled to each disk: the sizes of the replicas placed there.
pub fn scheduled_bytes<'a>(
    replicas: impl IntoIterator<Item = (&'a Placement, u64)>,
) -> BTreeMap<Placement, u64> {
    let mut out = BTreeMap::new();
    for (placement, size) in replicas {
        *out.entry(placement.clone()).or_insert(0) += size;
    }
    out
}

/// Why no disk was chosen: the reasons (Longhorn's strings) and, per node or disk, what
/// ruled it out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refusal {
    pub reasons: BTreeSet<Reason>,
    pub details: Vec<String>,
}

impl Refusal {
    fn add(&mut self, reason: Reason, detail: String) {
        self.reasons.insert(reason);
        self.details.push(detail);
    }

    /// The reasons as Longhorn reports them: sorted, joined with ';'.
    pub fn reasons_text(&self) -> String {
        let mut texts: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
        texts.sort_unstable();
        texts.join(";")
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reasons_text())?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details.join("; "))?;
        }
        Ok(())
    }
}

fn has_all(tags: &[String], selector: &[String]) -> bool {
    selector.iter().all(|s| tags.contains(s))
}

struct Candidate<'a> {
    node: &'a Node,
    disk: &'a str,
    usable: i128,
}

/// Picks the disk for one new replica. `existing`: where the volume's other replicas are
/// (they count for anti-affinity); `scheduled`: bytes already scheduled per disk, from every
/// replica of every volume (see [`scheduled_bytes`]).
pub fn schedule(
    request: &Request,
    existing: &[Placement],
    nodes: &[Node],
    scheduled: &BTreeMap<Placement, u64>,
    settings: &SchedulingSettings,
) -> Result<Placement, Refusal> {
    let mut refusal = Refusal::default();

    // Nodes that may hold a replica at all.
    let mut eligible: Vec<&Node> = Vec::new();
    for node in nodes {
        if let Some(only) = &request.hard_node {
            if &node.name != only {
                continue;
            }
        }
        if !node.status.ready {
            refusal.add(
                Reason::NodesUnavailable,
                format!("node {} is not ready", node.name),
            );
        } else if !node.spec.allow_scheduling {
            refusal.add(
                Reason::NodesUnavailable,
                format!("node {} does not allow scheduling", node.name),
            );
        } else if node.spec.eviction_requested {
            refusal.add(
                Reason::NodesUnavailable,
                format!("node {} is being evicted", node.name),
            );
        } else if !has_all(&node.spec.tags, &request.node_selector) {
            refusal.add(
                Reason::TagsNotFulfilled,
                format!(
                    "node {} lacks tags {:?}",
                    node.name,
                    missing(&node.spec.tags, &request.node_selector)
                ),
            );
        } else {
            eligible.push(node);
        }
    }
    if let Some(only) = &request.hard_node {
        if !nodes.iter().any(|n| &n.name == only) {
            refusal.add(
                Reason::HardAffinityNotSatisfied,
                format!("node {only} does not exist"),
            );
            return Err(refusal);
        }
        if eligible.is_empty() {
            refusal.reasons.insert(Reason::HardAffinityNotSatisfied);
            return Err(refusal);
        }
    }
    if eligible.is_empty() {
        refusal.reasons.insert(Reason::NodesUnavailable);
        return Err(refusal);
    }

    // Disks with room, per eligible node.
    let mut fitting: Vec<Candidate> = Vec::new();
    for node in &eligible {
        let mut node_has_disk = false;
        for (name, spec) in &node.spec.disks {
            let Some(status) = node.status.disks.get(name) else {
                refusal.add(
                    Reason::DisksUnavailable,
                    format!(
                        "disk {}/{name} has not been reported by its node",
                        node.name
                    ),
                );
                continue;
            };
            if !spec.allow_scheduling {
                refusal.add(
                    Reason::DisksUnavailable,
                    format!("disk {}/{name} does not allow scheduling", node.name),
                );
                continue;
            }
            if spec.eviction_requested {
                refusal.add(
                    Reason::DisksUnavailable,
                    format!("disk {}/{name} is being evicted", node.name),
                );
                continue;
            }
            node_has_disk = true;
            let space = DiskSpace {
                maximum: status.storage_maximum,
                available: status.storage_available,
                reserved: spec.storage_reserved,
                scheduled: scheduled
                    .get(&Placement {
                        node: node.name.clone(),
                        disk: name.clone(),
                    })
                    .copied()
                    .unwrap_or(0),
            };
            if !fits(request.size, request.actual_size, &space, settings) {
                refusal.add(
                    Reason::InsufficientStorage,
                    format!(
                        "disk {}/{name}: {} bytes scheduled + {} requested exceed {}% of {} usable, or {} available minus {} needed is not above {}% of {}",
                        node.name,
                        space.scheduled,
                        request.size,
                        settings.over_provisioning_percentage,
                        space.maximum.saturating_sub(space.reserved),
                        space.available,
                        request.actual_size,
                        settings.minimal_available_percentage,
                        space.maximum
                    ),
                );
                continue;
            }
            if !has_all(&spec.tags, &request.disk_selector) {
                refusal.add(
                    Reason::TagsNotFulfilled,
                    format!(
                        "disk {}/{name} lacks tags {:?}",
                        node.name,
                        missing(&spec.tags, &request.disk_selector)
                    ),
                );
                continue;
            }
            fitting.push(Candidate {
                node,
                disk: name,
                usable: i128::from(space.available) - i128::from(space.reserved),
            });
        }
        if !node_has_disk {
            refusal.add(
                Reason::DisksUnavailable,
                format!("node {} has no disk that allows scheduling", node.name),
            );
        }
    }
    if fitting.is_empty() {
        return Err(refusal);
    }

    // Anti-affinity tiers.
    let zone_of = |name: &str| {
        nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.spec.zone.as_str())
    };
    let used_nodes: BTreeSet<&str> = existing.iter().map(|p| p.node.as_str()).collect();
    let used_zones: BTreeSet<&str> = existing.iter().filter_map(|p| zone_of(&p.node)).collect();
    let in_new_zone = |c: &Candidate| !used_zones.contains(c.node.spec.zone.as_str());
    let on_new_node = |c: &Candidate| !used_nodes.contains(c.node.name.as_str());
    let mut tiers: Vec<Vec<&Candidate>> = vec![fitting.iter().filter(|c| in_new_zone(c)).collect()];
    if settings.soft_zone_anti_affinity {
        tiers.push(fitting.iter().filter(|c| on_new_node(c)).collect());
        if settings.soft_node_anti_affinity {
            tiers.push(fitting.iter().collect());
        }
    }
    let replicas_on = |c: &Candidate| {
        existing
            .iter()
            .filter(|p| p.node == c.node.name && p.disk == c.disk)
            .count()
    };
    for tier in tiers {
        let empty: Vec<&Candidate> = tier
            .iter()
            .copied()
            .filter(|c| replicas_on(c) == 0)
            .collect();
        let pool = if !empty.is_empty() || !settings.soft_disk_anti_affinity {
            empty
        } else {
            tier
        };
        // Most usable space; ties to the first by node, then disk name (the input order).
        let best = pool
            .into_iter()
            .fold(None::<&Candidate>, |best, c| match best {
                Some(b) if b.usable >= c.usable => Some(b),
                _ => Some(c),
            });
        if let Some(best) = best {
            return Ok(Placement {
                node: best.node.name.clone(),
                disk: best.disk.to_string(),
            });
        }
    }
    let what = match (
        settings.soft_zone_anti_affinity,
        settings.soft_node_anti_affinity,
    ) {
        (false, _) => "every zone with room already holds a replica and zone anti-affinity is hard (replica-zone-soft-anti-affinity=false)",
        (true, false) => "every node with room already holds a replica and node anti-affinity is hard (replica-soft-anti-affinity=false)",
        (true, true) => "every disk with room already holds a replica and disk anti-affinity is hard (replica-disk-soft-anti-affinity=false)",
    };
    refusal.add(Reason::AntiAffinity, what.to_string());
    Err(refusal)
}

fn missing(tags: &[String], selector: &[String]) -> Vec<String> {
    selector
        .iter()
        .filter(|s| !tags.contains(s))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
