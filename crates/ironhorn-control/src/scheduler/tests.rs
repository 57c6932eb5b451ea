//! One test per rule and per refusal reason, and a property: whatever the cluster, a chosen
//! disk satisfies every hard rule.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use ironhorn_api::resource::{DiskSpec, DiskStatus, NodeSpec, NodeStatus};

const GI: u64 = 1 << 30;

/// A ready node allowing scheduling, with disks (name, maximum, available).
fn node(name: &str, zone: &str, disks: &[(&str, u64, u64)]) -> Node {
    let mut spec_disks = BTreeMap::new();
    let mut status_disks = BTreeMap::new();
    for (disk, max, avail) in disks {
        spec_disks.insert(
            disk.to_string(),
            DiskSpec {
                path: format!("/data/{disk}"),
                allow_scheduling: true,
                storage_reserved: 0,
                tags: Vec::new(),
                eviction_requested: false,
            },
        );
        status_disks.insert(
            disk.to_string(),
            DiskStatus {
                storage_maximum: *max,
                storage_available: *avail,
                ..DiskStatus::default()
            },
        );
    }
    Node {
        name: name.to_string(),
        spec: NodeSpec {
            address: format!("{name}:9500"),
            allow_scheduling: true,
            tags: Vec::new(),
            zone: zone.to_string(),
            disks: spec_disks,
            eviction_requested: false,
        },
        status: NodeStatus {
            ready: true,
            disks: status_disks,
            conditions: Vec::new(),
        },
    }
}

fn three_nodes() -> Vec<Node> {
    vec![
        node("n1", "", &[("d", 100 * GI, 80 * GI)]),
        node("n2", "", &[("d", 100 * GI, 90 * GI)]),
        node("n3", "", &[("d", 100 * GI, 70 * GI)]),
    ]
}

fn at(node: &str, disk: &str) -> Placement {
    Placement {
        node: node.into(),
        disk: disk.into(),
    }
}

fn request(size: u64) -> Request {
    Request {
        size,
        ..Request::default()
    }
}

fn run(req: &Request, existing: &[Placement], nodes: &[Node]) -> Result<Placement, Refusal> {
    schedule(
        req,
        existing,
        nodes,
        &BTreeMap::new(),
        &SchedulingSettings::default(),
    )
}

fn refused(result: Result<Placement, Refusal>) -> Refusal {
    match result {
        Ok(p) => panic!("placed at {p:?}, expected a refusal"),
        Err(r) => r,
    }
}

#[test]
fn capacity_rule_has_longhorns_boundaries() {
    let s = SchedulingSettings::default();
    let disk = DiskSpace {
        maximum: 1000,
        available: 300,
        reserved: 0,
        scheduled: 0,
    };
    // Available minus required must stay strictly above 25% of maximum (250).
    assert!(fits(0, 49, &disk, &s));
    assert!(!fits(0, 50, &disk, &s));
    // Size plus scheduled may reach (maximum - reserved) * 100%.
    assert!(fits(1000, 0, &disk, &s));
    assert!(!fits(1001, 0, &disk, &s));
    let reserved = DiskSpace {
        reserved: 400,
        scheduled: 100,
        ..disk
    };
    assert!(fits(500, 0, &reserved, &s));
    assert!(!fits(501, 0, &reserved, &s));
    // Over-provisioning at 200% doubles the limit.
    let over = SchedulingSettings {
        over_provisioning_percentage: 200,
        ..s
    };
    assert!(fits(1100, 0, &reserved, &over));
    // An unreported or full filesystem takes nothing.
    assert!(!fits(0, 0, &DiskSpace { maximum: 0, ..disk }, &s));
    assert!(!fits(
        0,
        0,
        &DiskSpace {
            available: 0,
            ..disk
        },
        &s
    ));
    // Reserved beyond the maximum never underflows: nothing fits.
    assert!(!fits(
        1,
        0,
        &DiskSpace {
            reserved: 2000,
            ..disk
        },
        &s
    ));
}

#[test]
fn picks_the_disk_with_the_most_usable_space() {
    assert_eq!(run(&request(GI), &[], &three_nodes()), Ok(at("n2", "d")));
}

#[test]
fn reserved_space_counts_against_usable_space() {
    let mut nodes = three_nodes();
    if let Some(d) = nodes[1].spec.disks.get_mut("d") {
        d.storage_reserved = 30 * GI;
    }
    assert_eq!(run(&request(GI), &[], &nodes), Ok(at("n1", "d")));
}

#[test]
fn ties_go_to_the_first_node_by_name() {
    let nodes = vec![
        node("a", "", &[("d", 10 * GI, 9 * GI)]),
        node("b", "", &[("d", 10 * GI, 9 * GI)]),
    ];
    assert_eq!(run(&request(GI), &[], &nodes), Ok(at("a", "d")));
}

#[test]
fn a_node_that_is_not_ready_or_refuses_scheduling_is_skipped() {
    let mut nodes = three_nodes();
    nodes[1].status.ready = false;
    nodes[0].spec.allow_scheduling = false;
    assert_eq!(run(&request(GI), &[], &nodes), Ok(at("n3", "d")));
    nodes[2].status.ready = false;
    let r = refused(run(&request(GI), &[], &nodes));
    assert_eq!(r.reasons_text(), "nodes are unavailable");
    assert!(
        r.details.iter().any(|d| d.contains("n2 is not ready")),
        "{r}"
    );
    assert!(
        r.details.iter().any(|d| d.contains("n1 does not allow")),
        "{r}"
    );
}

#[test]
fn node_tags_must_include_the_selector() {
    let mut nodes = three_nodes();
    nodes[2].spec.tags = vec!["ssd".into(), "fast".into()];
    let req = Request {
        node_selector: vec!["ssd".into()],
        ..request(GI)
    };
    assert_eq!(run(&req, &[], &nodes), Ok(at("n3", "d")));
    nodes[2].spec.tags.clear();
    let r = refused(run(&req, &[], &nodes));
    assert!(r.reasons.contains(&Reason::TagsNotFulfilled), "{r}");
    assert!(r.to_string().contains("lacks tags [\"ssd\"]"), "{r}");
}

#[test]
fn disk_tags_must_include_the_selector() {
    let mut nodes = three_nodes();
    if let Some(d) = nodes[0].spec.disks.get_mut("d") {
        d.tags = vec!["nvme".into()];
    }
    let req = Request {
        disk_selector: vec!["nvme".into()],
        ..request(GI)
    };
    assert_eq!(run(&req, &[], &nodes), Ok(at("n1", "d")));
    let req = Request {
        disk_selector: vec!["optane".into()],
        ..request(GI)
    };
    assert_eq!(
        refused(run(&req, &[], &nodes)).reasons_text(),
        "tags not fulfilled"
    );
}

#[test]
fn a_disk_that_refuses_scheduling_or_was_never_reported_is_unavailable() {
    let mut nodes = vec![node("n1", "", &[("a", 100 * GI, 90 * GI)])];
    if let Some(d) = nodes[0].spec.disks.get_mut("a") {
        d.allow_scheduling = false;
    }
    let r = refused(run(&request(GI), &[], &nodes));
    assert_eq!(r.reasons_text(), "disks are unavailable");
    nodes[0].spec.disks.insert(
        "b".into(),
        DiskSpec {
            path: "/b".into(),
            allow_scheduling: true,
            storage_reserved: 0,
            tags: Vec::new(),
            eviction_requested: false,
        },
    );
    let r = refused(run(&request(GI), &[], &nodes));
    assert!(r.to_string().contains("n1/b has not been reported"), "{r}");
}

#[test]
fn insufficient_storage_names_the_disk_and_the_numbers() {
    let nodes = vec![node("n1", "", &[("d", 10 * GI, 9 * GI)])];
    let r = refused(run(&request(11 * GI), &[], &nodes));
    assert_eq!(r.reasons_text(), "insufficient storage");
    assert!(r.to_string().contains("disk n1/d"), "{r}");
    // What is already scheduled to the disk counts.
    let scheduled = scheduled_bytes([(&at("n1", "d"), 6 * GI), (&at("n1", "d"), 3 * GI)]);
    assert_eq!(scheduled.get(&at("n1", "d")), Some(&(9 * GI)));
    let r = schedule(
        &request(2 * GI),
        &[],
        &nodes,
        &scheduled,
        &SchedulingSettings::default(),
    );
    assert!(refused(r).reasons.contains(&Reason::InsufficientStorage));
    // Data already written must fit above the minimal available percentage.
    let req = Request {
        actual_size: 7 * GI,
        ..request(GI)
    };
    assert!(refused(run(&req, &[], &nodes))
        .reasons
        .contains(&Reason::InsufficientStorage));
}

#[test]
fn hard_node_anti_affinity_keeps_replicas_on_separate_nodes() {
    let nodes = three_nodes();
    let existing = [at("n2", "d"), at("n1", "d")];
    assert_eq!(run(&request(GI), &existing, &nodes), Ok(at("n3", "d")));
    let all = [at("n1", "d"), at("n2", "d"), at("n3", "d")];
    let r = refused(run(&request(GI), &all, &nodes));
    assert_eq!(r.reasons, [Reason::AntiAffinity].into());
    assert!(
        r.to_string().contains("replica-soft-anti-affinity=false"),
        "{r}"
    );
}

#[test]
fn soft_node_anti_affinity_shares_a_node_only_as_a_last_resort() {
    let nodes = vec![
        node(
            "n1",
            "",
            &[("a", 100 * GI, 90 * GI), ("b", 100 * GI, 50 * GI)],
        ),
        node("n2", "", &[("d", 100 * GI, 40 * GI)]),
    ];
    let soft = SchedulingSettings {
        soft_node_anti_affinity: true,
        ..SchedulingSettings::default()
    };
    let place =
        |existing: &[Placement]| schedule(&request(GI), existing, &nodes, &BTreeMap::new(), &soft);
    // A new node first, even with less space.
    assert_eq!(place(&[at("n1", "a")]), Ok(at("n2", "d")));
    // Then a disk of a used node without a replica, even with less space than one with.
    assert_eq!(place(&[at("n1", "a"), at("n2", "d")]), Ok(at("n1", "b")));
    // Then (disk anti-affinity soft) a disk that already has one: the roomiest.
    assert_eq!(
        place(&[at("n1", "a"), at("n1", "b"), at("n2", "d")]),
        Ok(at("n1", "a"))
    );
    let hard_disk = SchedulingSettings {
        soft_disk_anti_affinity: false,
        ..soft
    };
    let r = schedule(
        &request(GI),
        &[at("n1", "a"), at("n1", "b"), at("n2", "d")],
        &nodes,
        &BTreeMap::new(),
        &hard_disk,
    );
    assert!(refused(r)
        .to_string()
        .contains("replica-disk-soft-anti-affinity=false"));
}

#[test]
fn a_new_zone_wins_over_more_space() {
    let nodes = vec![
        node("n1", "z1", &[("d", 100 * GI, 90 * GI)]),
        node("n2", "z1", &[("d", 100 * GI, 95 * GI)]),
        node("n3", "z2", &[("d", 100 * GI, 40 * GI)]),
    ];
    assert_eq!(
        run(&request(GI), &[at("n1", "d")], &nodes),
        Ok(at("n3", "d"))
    );
    // Soft zone anti-affinity (the default): a used zone on a new node next.
    assert_eq!(
        run(&request(GI), &[at("n1", "d"), at("n3", "d")], &nodes),
        Ok(at("n2", "d"))
    );
    let hard_zone = SchedulingSettings {
        soft_zone_anti_affinity: false,
        ..SchedulingSettings::default()
    };
    let r = schedule(
        &request(GI),
        &[at("n1", "d"), at("n3", "d")],
        &nodes,
        &BTreeMap::new(),
        &hard_zone,
    );
    assert!(refused(r)
        .to_string()
        .contains("replica-zone-soft-anti-affinity=false"));
}

#[test]
fn nodes_without_a_zone_share_one_zone() {
    // As in Longhorn: with hard zone anti-affinity and no zones, only one replica fits.
    let hard_zone = SchedulingSettings {
        soft_zone_anti_affinity: false,
        ..SchedulingSettings::default()
    };
    let nodes = three_nodes();
    let first = schedule(&request(GI), &[], &nodes, &BTreeMap::new(), &hard_zone);
    assert_eq!(first, Ok(at("n2", "d")));
    let second = schedule(
        &request(GI),
        &[at("n2", "d")],
        &nodes,
        &BTreeMap::new(),
        &hard_zone,
    );
    assert_eq!(refused(second).reasons, [Reason::AntiAffinity].into());
}

#[test]
fn hard_node_affinity_places_on_that_node_or_refuses() {
    let nodes = three_nodes();
    let pinned = |node: &str| Request {
        hard_node: Some(node.into()),
        ..request(GI)
    };
    assert_eq!(run(&pinned("n3"), &[], &nodes), Ok(at("n3", "d")));
    let r = refused(run(&pinned("n9"), &[], &nodes));
    assert_eq!(r.reasons_text(), "hard affinity cannot be satisfied");
    let mut down = three_nodes();
    down[2].status.ready = false;
    let r = refused(run(&pinned("n3"), &[], &down));
    assert!(r.reasons.contains(&Reason::HardAffinityNotSatisfied), "{r}");
    // Pinned to a node that already holds a replica: node anti-affinity still applies.
    let r = refused(run(&pinned("n3"), &[at("n3", "d")], &nodes));
    assert_eq!(r.reasons, [Reason::AntiAffinity].into());
}

#[test]
fn refusal_text_is_sorted_and_joined_like_longhorns() {
    let mut nodes = three_nodes();
    nodes[0].status.ready = false;
    nodes[1].spec.tags = vec![];
    if let Some(d) = nodes[2].spec.disks.get_mut("d") {
        d.allow_scheduling = false;
    }
    let req = Request {
        node_selector: vec!["x".into()],
        ..request(GI)
    };
    let r = refused(run(&req, &[], &nodes));
    assert_eq!(r.reasons_text(), "nodes are unavailable;tags not fulfilled");
}

proptest! {
    /// Whatever the cluster and the volume's existing replicas, a placement honours every
    /// hard rule: eligible node, fitting and allowed disk, tags, node anti-affinity.
    #[test]
    fn a_placement_honours_every_hard_rule(
        cluster in proptest::collection::vec(
            (any::<bool>(), any::<bool>(), 0u8..3, proptest::collection::vec(
                (any::<bool>(), 0u64..200, 0u64..200, 0u64..50, any::<bool>()), 1..3)),
            1..6),
        existing_idx in proptest::collection::vec((0usize..6, 0usize..3), 0..4),
        size in 1u64..100,
        soft_node in any::<bool>(),
        soft_zone in any::<bool>(),
        want_tag in any::<bool>(),
    ) {
        let nodes: Vec<Node> = cluster.iter().enumerate().map(|(i, (ready, allow, zone, disks))| {
            let mut n = node(&format!("n{i}"), &format!("z{zone}"), &[]);
            n.status.ready = *ready;
            n.spec.allow_scheduling = *allow;
            for (j, (allow_disk, max, avail, reserved, tagged)) in disks.iter().enumerate() {
                let name = format!("d{j}");
                n.spec.disks.insert(name.clone(), DiskSpec {
                    path: format!("/{name}"),
                    allow_scheduling: *allow_disk,
                    storage_reserved: reserved * GI,
                    tags: if *tagged { vec!["t".into()] } else { vec![] },
                    eviction_requested: false,
                });
                n.status.disks.insert(name, DiskStatus {
                    storage_maximum: max * GI,
                    storage_available: avail.min(max) * GI,
                    ..DiskStatus::default()
                });
            }
            n
        }).collect();
        let existing: Vec<Placement> = existing_idx
            .iter()
            .filter(|(n, _)| *n < nodes.len())
            .map(|(n, d)| at(&format!("n{n}"), &format!("d{d}")))
            .collect();
        let settings = SchedulingSettings {
            soft_node_anti_affinity: soft_node,
            soft_zone_anti_affinity: soft_zone,
            ..SchedulingSettings::default()
        };
        let req = Request {
            size: size * GI,
            disk_selector: if want_tag { vec!["t".into()] } else { vec![] },
            ..Request::default()
        };
        if let Ok(p) = schedule(&req, &existing, &nodes, &BTreeMap::new(), &settings) {
            let n = nodes.iter().find(|n| n.name == p.node).unwrap();
            prop_assert!(n.status.ready && n.spec.allow_scheduling);
            let spec = &n.spec.disks[&p.disk];
            let status = &n.status.disks[&p.disk];
            prop_assert!(spec.allow_scheduling);
            let space = DiskSpace {
                maximum: status.storage_maximum,
                available: status.storage_available,
                reserved: spec.storage_reserved,
                scheduled: 0,
            };
            prop_assert!(fits(req.size, 0, &space, &settings));
            prop_assert!(!want_tag || spec.tags.contains(&"t".to_string()));
            if !soft_node {
                prop_assert!(!existing.iter().any(|e| e.node == p.node));
            }
            if !soft_zone {
                let zone = |name: &str| nodes.iter().find(|n| n.name == name).map(|n| n.spec.zone.clone());
                prop_assert!(!existing.iter().any(|e| zone(&e.node) == zone(&p.node)));
            }
        }
    }
}
