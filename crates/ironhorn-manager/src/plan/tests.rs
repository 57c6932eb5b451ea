#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use ironhorn_api::node::{EngineInstance, EngineReplica, NodeReport, ReplicaInstance, FENCING};
use ironhorn_api::resource::{
    DataLocality, DiskSpec, DiskStatus, Frontend, Node, NodeSpec, NodeStatus, Replica, Robustness,
    Volume, VolumeSpec, VolumeState, VolumeStatus,
};
use ironhorn_control::settings::{self, Settings};

use super::*;

const GIB: u64 = 1 << 30;
const NOW: u64 = 1_000_000;

fn node(name: &str) -> Node {
    let mut disks = BTreeMap::new();
    disks.insert(
        "default".to_string(),
        DiskSpec {
            path: format!("/data/{name}"),
            allow_scheduling: true,
            storage_reserved: 0,
            tags: vec![],
            eviction_requested: false,
        },
    );
    let mut status_disks = BTreeMap::new();
    status_disks.insert(
        "default".to_string(),
        DiskStatus {
            storage_maximum: 100 * GIB,
            storage_available: 90 * GIB,
            ..DiskStatus::default()
        },
    );
    Node {
        name: name.to_string(),
        spec: NodeSpec {
            address: format!("{name}:9502"),
            allow_scheduling: true,
            tags: vec![],
            zone: String::new(),
            disks,
            eviction_requested: false,
        },
        status: NodeStatus {
            ready: true,
            disks: status_disks,
            conditions: vec![],
        },
    }
}

fn volume(node_id: &str) -> Volume {
    Volume {
        name: "vol".into(),
        created: String::new(),
        spec: VolumeSpec {
            size: GIB,
            number_of_replicas: 3,
            stale_replica_timeout: 30,
            frontend: Default::default(),
            data_locality: Default::default(),
            node_selector: vec![],
            disk_selector: vec![],
            labels: BTreeMap::new(),
            node_id: node_id.into(),
            maintenance: false,
            from_backup: String::new(),
            standby: false,
            data_source: String::new(),
        },
        status: VolumeStatus {
            state: VolumeState::Detached,
            ..VolumeStatus::default()
        },
    }
}

fn replica(n: u8, healthy: bool) -> Replica {
    Replica {
        name: format!("vol-r-0000000{n}"),
        volume: "vol".into(),
        node: format!("n{n}"),
        disk: "default".into(),
        data_directory_name: format!("vol-0000000{n}"),
        failed_at: None,
        healthy,
        address: String::new(),
    }
}

/// The inputs a plan sees, owned, so each test changes what it needs.
struct Fixture {
    nodes: BTreeMap<String, Node>,
    reports: BTreeMap<String, NodeReport>,
    settings: Settings,
    rebuilds_per_node: BTreeMap<String, usize>,
    rebuilding: BTreeSet<String>,
    held_back: BTreeSet<String>,
    now: u64,
}

impl Fixture {
    /// Three ready nodes, n1..n3, nothing running.
    fn new() -> Fixture {
        let mut nodes = BTreeMap::new();
        let mut reports = BTreeMap::new();
        for n in ["n1", "n2", "n3"] {
            nodes.insert(n.to_string(), node(n));
            reports.insert(
                n.to_string(),
                NodeReport {
                    name: n.to_string(),
                    fencing: FENCING,
                    ..NodeReport::default()
                },
            );
        }
        Fixture {
            nodes,
            reports,
            settings: Settings::default(),
            rebuilds_per_node: BTreeMap::new(),
            rebuilding: BTreeSet::new(),
            held_back: BTreeSet::new(),
            now: NOW,
        }
    }

    fn down(&mut self, node: &str) {
        self.reports.remove(node);
        self.nodes.get_mut(node).unwrap().status.ready = false;
    }

    fn running(&mut self, r: &Replica, address: &str) {
        self.reports
            .get_mut(&r.node)
            .unwrap()
            .replicas
            .push(ReplicaInstance {
                name: r.name.clone(),
                dir: format!("/data/{}/replicas/{}", r.node, r.data_directory_name),
                address: address.into(),
                actual_size: 4096,
            });
    }

    fn engine(&mut self, node: &str, slots: &[(&str, &str)]) {
        self.reports
            .get_mut(node)
            .unwrap()
            .engines
            .push(EngineInstance {
                volume: "vol".into(),
                size: GIB,
                endpoint: "nbd://n1:10809/vol".into(),
                maintenance: false,
                rebuilding: false,
                rebuild_copied: 0,
                rebuild_total: 0,
                connections: 1,
                replicas: slots
                    .iter()
                    .map(|(a, m)| EngineReplica {
                        address: a.to_string(),
                        mode: m.to_string(),
                        reason: String::new(),
                    })
                    .collect(),
                frontend: String::new(),
                blockdev: None,
                generation: 1,
                fenced: String::new(),
            });
    }

    fn plan(&self, volume: &Volume, replicas: &[Replica]) -> Plan {
        let sizes: BTreeMap<String, u64> = [("vol".to_string(), volume.spec.size)].into();
        let observed = Observed::new(&self.reports);
        let world = World {
            nodes: &self.nodes,
            observed: &observed,
            all_replicas: replicas,
            volume_sizes: &sizes,
            settings: &self.settings,
            now: self.now,
            rebuilds_per_node: &self.rebuilds_per_node,
            rebuilding_volumes: &self.rebuilding,
            held_back: &self.held_back,
        };
        let mut n = 0;
        plan(volume, replicas, &world, &mut || {
            n += 1;
            format!("{n:08x}")
        })
    }
}

fn attached_three(f: &mut Fixture) -> Vec<Replica> {
    let mut replicas: Vec<Replica> = (1..=3).map(|n| replica(n, true)).collect();
    for r in &mut replicas {
        r.address = format!("{}:100", r.node);
        let address = r.address.clone();
        f.running(r, &address);
    }
    replicas
}

/// A fourth ready node, n4, with nothing on it.
fn add_fourth_node(f: &mut Fixture) {
    f.nodes.insert("n4".into(), node("n4"));
    f.reports.insert(
        "n4".into(),
        NodeReport {
            name: "n4".into(),
            fencing: FENCING,
            ..NodeReport::default()
        },
    );
}

/// `created`, a new replica on n4, rebuilt: it serves on n4:100 next to n1..n3 in the engine
/// on `engine_node`.
fn rebuilt_on_n4(
    f: &mut Fixture,
    replicas: &mut Vec<Replica>,
    created: &Replica,
    engine_node: &str,
) {
    let mut rebuilt = created.clone();
    rebuilt.address = "n4:100".into();
    rebuilt.healthy = true;
    f.running(&rebuilt, "n4:100");
    replicas.push(rebuilt);
    f.reports.get_mut(engine_node).unwrap().engines.clear();
    f.engine(
        engine_node,
        &[
            ("n1:100", "RW"),
            ("n2:100", "RW"),
            ("n3:100", "RW"),
            ("n4:100", "RW"),
        ],
    );
}

#[test]
fn a_new_volume_gets_its_replicas_on_separate_nodes_all_healthy() {
    let f = Fixture::new();
    let mut v = volume("");
    v.status.state = VolumeState::Creating;
    let plan = f.plan(&v, &[]);
    assert_eq!(plan.create.len(), 3);
    let nodes: BTreeSet<&str> = plan.create.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(nodes.len(), 3);
    assert!(plan
        .create
        .iter()
        .all(|r| r.healthy && r.failed_at.is_none()));
    assert!(plan.create[0].data_directory_name.starts_with("vol-"));
    assert_eq!(plan.status.state, VolumeState::Detached);
    assert!(plan.actions.is_empty());
}

#[test]
fn when_replicas_cannot_be_placed_the_volume_says_why() {
    let mut f = Fixture::new();
    f.down("n3");
    let mut v = volume("");
    v.status.state = VolumeState::Creating;
    let plan = f.plan(&v, &[]);
    assert_eq!(plan.create.len(), 2);
    let scheduled = plan
        .status
        .conditions
        .iter()
        .find(|c| c.kind == "Scheduled")
        .unwrap();
    assert!(!scheduled.holds());
    assert_eq!(scheduled.reason, "ReplicaSchedulingFailure");
    assert!(
        scheduled.message.contains("node n3 is not ready")
            && scheduled.message.contains("anti-affinity"),
        "{}",
        scheduled.message
    );
}

#[test]
fn attaching_starts_every_replica_server_before_the_engine() {
    let mut f = Fixture::new();
    let replicas: Vec<Replica> = (1..=3).map(|n| replica(n, true)).collect();
    let plan = f.plan(&volume("n1"), &replicas);
    assert_eq!(plan.status.state, VolumeState::Attaching);
    let starts: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::StartReplica { .. }))
        .collect();
    assert_eq!(starts.len(), 3);
    assert!(starts.contains(&&Action::StartReplica {
        node: "n2".into(),
        name: "vol-r-00000002".into(),
        dir: "/data/n2/replicas/vol-00000002".into(),
        size: GIB,
    }));
    assert!(!plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartEngine { .. })));

    // Two of three running: still waiting.
    f.running(&replicas[0], "n1:100");
    f.running(&replicas[1], "n2:100");
    let plan = f.plan(&volume("n1"), &replicas);
    assert!(!plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartEngine { .. })));

    // All running: the engine starts on n1 from the three, and their addresses are kept.
    f.running(&replicas[2], "n3:100");
    let plan = f.plan(&volume("n1"), &replicas);
    let Some(Action::StartEngine { node, request, .. }) = plan.actions.last() else {
        panic!("{:?}", plan.actions);
    };
    assert_eq!(node, "n1");
    assert_eq!(request.replicas, ["n1:100", "n2:100", "n3:100"]);
    assert_eq!(request.frontend, "nbd");
    assert_eq!(request.replica_timeout, 8);
    assert_eq!(plan.update.len(), 3);
    assert!(plan.update.iter().all(|r| !r.address.is_empty()));
}

#[test]
fn a_healthy_replica_on_a_node_that_is_down_is_failed_and_the_rest_serve() {
    let mut f = Fixture::new();
    let replicas: Vec<Replica> = (1..=3).map(|n| replica(n, true)).collect();
    f.running(&replicas[0], "n1:100");
    f.running(&replicas[1], "n2:100");
    f.down("n3");
    let plan = f.plan(&volume("n1"), &replicas);
    let Some(Action::StartEngine { request, .. }) = plan.actions.last() else {
        panic!("{:?}", plan.actions);
    };
    assert_eq!(request.replicas, ["n1:100", "n2:100"]);
    let failed = plan.update.iter().find(|r| r.node == "n3").unwrap();
    assert_eq!(failed.failed_at, Some(NOW));
}

/// After a partition heals, two nodes may report an engine of the volume: the one of the
/// newest attachment is the volume's, whatever the order of the reports; the other is
/// stopped.
#[test]
fn an_engine_of_an_older_attachment_is_stopped_and_the_newest_kept() {
    for (old_node, new_node) in [("n1", "n2"), ("n2", "n1")] {
        let mut f = Fixture::new();
        let replicas = attached_three(&mut f);
        let slots = [("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "RW")];
        f.engine(old_node, &slots);
        f.engine(new_node, &slots);
        let mut newest = f.reports.get_mut(new_node).unwrap().engines.pop().unwrap();
        newest.generation = 2;
        f.reports.get_mut(new_node).unwrap().engines.push(newest);
        let plan = f.plan(&volume(new_node), &replicas);
        assert_eq!(plan.status.current_node_id, new_node);
        assert_eq!(plan.status.state, VolumeState::Attached);
        let stops: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::StopEngine { .. }))
            .collect();
        assert!(
            matches!(stops.as_slice(), [Action::StopEngine { node }] if node == old_node),
            "{:?}",
            plan.actions
        );
    }
}

#[test]
fn an_engine_running_with_all_replicas_rw_is_attached_and_healthy() {
    let mut f = Fixture::new();
    let replicas = attached_three(&mut f);
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "RW")],
    );
    let plan = f.plan(&volume("n1"), &replicas);
    assert_eq!(plan.status.state, VolumeState::Attached);
    assert_eq!(plan.status.robustness, Robustness::Healthy);
    assert_eq!(plan.status.endpoint, "nbd://n1:10809/vol");
    assert_eq!(plan.status.current_node_id, "n1");
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert!(plan.update.is_empty());
    assert!(plan
        .status
        .replicas
        .iter()
        .all(|r| r.mode == "RW" && r.healthy));
}

#[test]
fn a_failed_replica_holds_its_place_for_the_replenishment_wait_then_is_replaced() {
    let mut f = Fixture::new();
    f.nodes.insert("n4".into(), node("n4"));
    f.reports.insert("n4".into(), NodeReport::default());
    let mut replicas = attached_three(&mut f);
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "ERR"), ("n3:100", "RW")],
    );
    let plan = f.plan(&volume("n1"), &replicas);
    assert_eq!(plan.status.robustness, Robustness::Degraded);
    let failed = plan.update.iter().find(|r| r.node == "n2").unwrap();
    assert_eq!(failed.failed_at, Some(NOW));
    assert!(plan.create.is_empty(), "no new replica within the wait");

    replicas[1] = failed.clone();
    f.now = NOW + 599;
    assert!(f.plan(&volume("n1"), &replicas).create.is_empty());
    f.now = NOW + 600;
    let plan = f.plan(&volume("n1"), &replicas);
    assert_eq!(plan.create.len(), 1);
    let new = &plan.create[0];
    assert_eq!(new.node, "n4", "the only node without a replica");
    assert!(
        !new.healthy,
        "a replacement has no data until it is rebuilt"
    );
}

#[test]
fn a_returning_replica_is_caught_up_under_its_old_address() {
    let mut f = Fixture::new();
    let mut replicas: Vec<Replica> = (1..=3).map(|n| replica(n, true)).collect();
    for r in &mut replicas {
        r.address = format!("{}:100", r.node);
    }
    replicas[1].failed_at = Some(NOW - 10);
    replicas[1].healthy = false;
    f.running(&replicas[0], "n1:100");
    f.running(&replicas[1], "n2:200"); // its server restarted on another port
    f.running(&replicas[2], "n3:100");
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "ERR"), ("n3:100", "RW")],
    );
    let plan = f.plan(&volume("n1"), &replicas);
    assert_eq!(
        plan.actions,
        [Action::AddReplica {
            node: "n1".into(),
            replica: "vol-r-00000002".into(),
            address: "n2:200".into(),
            previous: Some("n2:100".into()),
        }]
    );

    // Not while another rebuild of the volume runs, nor past the node's limit.
    f.rebuilding.insert("vol".into());
    assert!(f.plan(&volume("n1"), &replicas).actions.is_empty());
    f.rebuilding.clear();
    f.rebuilds_per_node.insert("n2".into(), 5);
    assert!(f.plan(&volume("n1"), &replicas).actions.is_empty());
    f.settings
        .set(settings::CONCURRENT_REPLICA_REBUILD_PER_NODE_LIMIT, "6")
        .unwrap();
    assert_eq!(f.plan(&volume("n1"), &replicas).actions.len(), 1);
    f.held_back.insert("vol-r-00000002".into());
    assert!(f.plan(&volume("n1"), &replicas).actions.is_empty());
}

#[test]
fn a_returned_replica_seen_rw_is_healthy_again() {
    let mut f = Fixture::new();
    let mut replicas = attached_three(&mut f);
    replicas[1].failed_at = Some(NOW - 10);
    replicas[1].healthy = false;
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "RW")],
    );
    let plan = f.plan(&volume("n1"), &replicas);
    let back = plan.update.iter().find(|r| r.node == "n2").unwrap();
    assert!(back.healthy && back.failed_at.is_none());
}

#[test]
fn a_stale_failed_replica_is_removed_from_the_engine_and_its_disk() {
    let mut f = Fixture::new();
    let mut replicas = attached_three(&mut f);
    replicas[1].failed_at = Some(NOW - 30 * 60);
    replicas[1].healthy = false;
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "ERR"), ("n3:100", "RW")],
    );
    let plan = f.plan(&volume("n1"), &replicas);
    assert_eq!(
        plan.actions,
        [
            Action::RemoveFromEngine {
                node: "n1".into(),
                address: "n2:100".into()
            },
            Action::DeleteReplica {
                node: "n2".into(),
                name: "vol-r-00000002".into(),
                dir: "/data/n2/replicas/vol-00000002".into()
            }
        ]
    );
    // staleReplicaTimeout 0: kept for good.
    let mut v = volume("n1");
    v.spec.stale_replica_timeout = 0;
    assert!(!f
        .plan(&v, &replicas)
        .actions
        .iter()
        .any(|a| matches!(a, Action::DeleteReplica { .. })));
    // On a node that is down: forgotten (what is on its disk becomes an orphan).
    f.down("n2");
    let plan = f.plan(&volume("n1"), &replicas);
    assert_eq!(plan.forget, ["vol-r-00000002"]);
}

#[test]
fn detaching_stops_the_engine_then_the_replica_servers() {
    let mut f = Fixture::new();
    let replicas = attached_three(&mut f);
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "RW")],
    );
    let plan = f.plan(&volume(""), &replicas);
    assert_eq!(plan.status.state, VolumeState::Detaching);
    assert_eq!(plan.actions, [Action::StopEngine { node: "n1".into() }]);

    f.reports.get_mut("n1").unwrap().engines.clear();
    let plan = f.plan(&volume(""), &replicas);
    assert_eq!(plan.status.state, VolumeState::Detaching);
    assert_eq!(plan.actions.len(), 3);
    assert!(plan
        .actions
        .iter()
        .all(|a| matches!(a, Action::StopReplica { .. })));
    assert_eq!(plan.status.robustness, Robustness::Unknown);

    for n in ["n1", "n2", "n3"] {
        f.reports.get_mut(n).unwrap().replicas.clear();
    }
    let plan = f.plan(&volume(""), &replicas);
    assert_eq!(plan.status.state, VolumeState::Detached);
    assert!(plan.actions.is_empty());
}

#[test]
fn deleting_stops_the_engine_removes_each_replica_then_the_volume() {
    let mut f = Fixture::new();
    let replicas = attached_three(&mut f);
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "RW")],
    );
    let mut v = volume("");
    v.status.state = VolumeState::Deleting;
    assert_eq!(
        f.plan(&v, &replicas).actions,
        [Action::StopEngine { node: "n1".into() }]
    );
    f.reports.get_mut("n1").unwrap().engines.clear();
    f.down("n3");
    let plan = f.plan(&v, &replicas);
    assert_eq!(plan.actions.len(), 2, "n3 is down: its replica waits");
    assert!(!plan.delete_volume);
    let plan = f.plan(&v, &replicas[2..]);
    assert!(plan.actions.is_empty() && !plan.delete_volume);
    // A replica whose node no longer exists is forgotten.
    f.nodes.remove("n3");
    let plan = f.plan(&v, &replicas[2..]);
    assert_eq!(plan.forget, ["vol-r-00000003"]);
    assert!(f.plan(&v, &[]).delete_volume);
}

#[test]
fn when_every_replica_failed_auto_salvage_brings_back_the_reachable_ones() {
    let mut f = Fixture::new();
    let mut replicas = attached_three(&mut f);
    for r in &mut replicas {
        r.failed_at = Some(NOW - 5);
        r.healthy = false;
    }
    f.down("n3");
    let plan = f.plan(&volume("n1"), &replicas);
    let salvaged: BTreeSet<&str> = plan
        .update
        .iter()
        .filter(|r| r.failed_at.is_none() && r.healthy)
        .map(|r| r.node.as_str())
        .collect();
    assert_eq!(salvaged, ["n1", "n2"].into());

    f.settings.set(settings::AUTO_SALVAGE, "false").unwrap();
    let plan = f.plan(&volume("n1"), &replicas);
    assert!(plan.update.is_empty());
    assert_eq!(plan.status.robustness, Robustness::Faulted);
    let attached = plan
        .status
        .conditions
        .iter()
        .find(|c| c.kind == "Attached")
        .unwrap();
    assert_eq!(attached.reason, "NoHealthyReplica");
}

#[test]
fn no_second_engine_while_the_node_of_a_one_replica_quorum_engine_does_not_answer() {
    let mut f = Fixture::new();
    let replicas = attached_three(&mut f);
    f.down("n1");
    let mut v = volume("n2");
    v.status.current_node_id = "n1".into();
    let plan = f.plan(&v, &replicas);
    assert!(!plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartEngine { .. })));
    let attached = plan
        .status
        .conditions
        .iter()
        .find(|c| c.kind == "Attached")
        .unwrap();
    assert_eq!(attached.reason, "EngineElsewhere");
}

fn start_engine_of(plan: &Plan) -> Option<(&str, &StartEngine)> {
    plan.actions.iter().find_map(|a| match a {
        Action::StartEngine { node, request, .. } => Some((node.as_str(), request)),
        _ => None,
    })
}

fn attached_condition(plan: &Plan) -> &Condition {
    plan.status
        .conditions
        .iter()
        .find(|c| c.kind == "Attached")
        .unwrap()
}

#[test]
fn with_a_majority_quorum_the_volume_starts_elsewhere_on_enough_replicas_to_fence_the_old_engine() {
    let mut f = Fixture::new();
    let mut replicas = attached_three(&mut f);
    f.down("n1");
    let mut v = volume("n2");
    v.status.current_node_id = "n1".into();
    v.status.majority_quorum = true;
    let plan = f.plan(&v, &replicas);
    let (node, request) = start_engine_of(&plan).expect("an engine is started on n2");
    assert_eq!(node, "n2");
    assert_eq!(request.replicas, ["n2:100", "n3:100"]);
    // Two of three claimed: the engine on n1 keeps one replica, short of its majority.
    assert_eq!(request.min_claimed, 2);
    assert!(request.majority_quorum);
    let failed: Vec<&str> = plan
        .update
        .iter()
        .filter(|r| r.failed_at.is_some())
        .map(|r| r.node.as_str())
        .collect();
    assert_eq!(
        failed,
        ["n1"],
        "the replica left behind misses writes from now"
    );

    // With one of the two others failed already, the old engine could still reach a
    // majority (its own replica and the failed one, should that come back): no start.
    replicas[2].failed_at = Some(NOW - 5);
    replicas[2].healthy = false;
    let plan = f.plan(&v, &replicas);
    assert!(start_engine_of(&plan).is_none());
    let why = attached_condition(&plan);
    assert_eq!(why.reason, "EngineElsewhere");
    assert!(why.message.contains("only 1 healthy"), "{}", why.message);

    // An agent that predates fencing cannot be asked to claim: no start there.
    replicas[2].failed_at = None;
    replicas[2].healthy = true;
    f.reports.get_mut("n2").unwrap().fencing = 0;
    let plan = f.plan(&v, &replicas);
    assert!(start_engine_of(&plan).is_none());
    assert!(attached_condition(&plan)
        .message
        .contains("predates fencing"));
}

/// A replica whose node was removed while the engine's node does not answer may still be
/// one of that engine's: it is not forgotten, and it counts: with five on record, three
/// claims are needed, not two of the four left.
#[test]
fn replicas_on_removed_nodes_count_while_the_old_engine_is_unseen() {
    let mut f = Fixture::new();
    add_fourth_node(&mut f);
    let mut replicas = attached_three(&mut f);
    let mut fourth = replica(4, true);
    fourth.address = "n4:100".into();
    f.running(&fourth, "n4:100");
    replicas.push(fourth);
    let mut fifth = replica(5, true);
    fifth.node = "n5".into();
    replicas.push(fifth);
    f.down("n1");
    let mut v = volume("n2");
    v.status.current_node_id = "n1".into();
    v.status.majority_quorum = true;
    // n5 was removed: its replica is not forgotten while n1's engine is unseen.
    let plan = f.plan(&v, &replicas);
    assert!(plan.forget.is_empty(), "{:?}", plan.forget);
    let (_, request) = start_engine_of(&plan).expect("three of five can be claimed");
    assert_eq!(request.min_claimed, 3);
    assert_eq!(request.replicas, ["n2:100", "n3:100", "n4:100"]);
    // With n4 down too, two of five are not enough.
    f.down("n4");
    let plan = f.plan(&v, &replicas);
    assert!(start_engine_of(&plan).is_none());
    assert!(attached_condition(&plan)
        .message
        .contains("3 of 5 are needed"));
}

#[test]
fn an_engine_on_another_node_is_stopped_before_attaching_here() {
    let mut f = Fixture::new();
    let replicas = attached_three(&mut f);
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "RW")],
    );
    let plan = f.plan(&volume("n2"), &replicas);
    assert_eq!(plan.actions, [Action::StopEngine { node: "n1".into() }]);
}

#[test]
fn an_engine_serving_another_frontend_is_restarted_and_a_block_device_shows_in_the_status() {
    let mut f = Fixture::new();
    let replicas = attached_three(&mut f);
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "RW")],
    );
    let mut wanted = volume("n1");
    wanted.spec.frontend = Frontend::Blockdev;
    // An agent that predates blockdev reports no frontend: it runs NBD.
    let plan = f.plan(&wanted, &replicas);
    assert_eq!(plan.actions, [Action::StopEngine { node: "n1".into() }]);
    assert_eq!(plan.status.state, VolumeState::Detaching);

    let engine = &mut f.reports.get_mut("n1").unwrap().engines[0];
    engine.frontend = "blockdev".into();
    engine.endpoint = "/dev/ironhorn/vol".into();
    engine.blockdev = Some(ironhorn_api::node::BlockdevInstance {
        backend: "fuse-loop".into(),
        device: "/dev/ironhorn/vol".into(),
        kernel_device: "/dev/loop3".into(),
        mount_points: vec!["/mnt".into()],
    });
    let plan = f.plan(&wanted, &replicas);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.status.endpoint, "/dev/ironhorn/vol");
    let device = plan.status.blockdev.as_ref().unwrap();
    assert_eq!(device.kernel_device, "/dev/loop3");
    assert_eq!(device.mount_points, ["/mnt"]);
    // The same engine is wrong for a volume that wants NBD.
    let plan = f.plan(&volume("n1"), &replicas);
    assert_eq!(plan.actions, [Action::StopEngine { node: "n1".into() }]);
    assert_eq!(plan.status.blockdev, None);
}

#[test]
fn best_effort_locality_adds_a_local_replica_then_removes_one_elsewhere() {
    let mut f = Fixture::new();
    add_fourth_node(&mut f);
    let mut replicas = attached_three(&mut f);
    f.engine(
        "n4",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "RW")],
    );
    let mut v = volume("n4");
    v.spec.data_locality = DataLocality::BestEffort;
    let plan = f.plan(&v, &replicas);
    assert_eq!(plan.create.len(), 1, "{:?}", plan.create);
    assert_eq!(plan.create[0].node, "n4");
    assert!(!plan.create[0].healthy);
    // Disabled locality: nothing to do.
    assert!(f.plan(&volume("n4"), &replicas).create.is_empty());

    // The local replica rebuilt: four RW for three wanted; one goes, not the local one.
    rebuilt_on_n4(&mut f, &mut replicas, &plan.create[0], "n4");
    let plan = f.plan(&v, &replicas);
    assert!(plan.create.is_empty());
    let removed: Vec<&Action> = plan.actions.iter().collect();
    assert_eq!(removed.len(), 2, "{removed:?}");
    let Action::RemoveFromEngine { address, .. } = removed[0] else {
        panic!("{removed:?}");
    };
    assert_ne!(address, "n4:100");
    assert!(matches!(removed[1], Action::DeleteReplica { node, .. } if node != "n4"));
}

#[test]
fn replicas_on_a_removed_node_are_forgotten_and_replaced_at_once() {
    let mut f = Fixture::new();
    f.nodes.insert("n4".into(), node("n4"));
    f.reports.insert("n4".into(), NodeReport::default());
    let mut replicas = attached_three(&mut f);
    replicas[2].failed_at = Some(NOW - 5);
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "ERR")],
    );
    f.nodes.remove("n3");
    f.reports.remove("n3");
    let plan = f.plan(&volume("n1"), &replicas);
    assert_eq!(plan.forget, ["vol-r-00000003"]);
    assert!(plan.actions.contains(&Action::RemoveFromEngine {
        node: "n1".into(),
        address: "n3:100".into()
    }));
    assert_eq!(plan.create.len(), 1, "replaced without waiting");
    assert_eq!(plan.create[0].node, "n4");
}

#[test]
fn an_evicted_disks_replica_is_rebuilt_elsewhere_then_removed() {
    let mut f = Fixture::new();
    add_fourth_node(&mut f);
    let mut replicas = attached_three(&mut f);
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "RW")],
    );
    let disk = f.nodes.get_mut("n2").unwrap().spec.disks.get_mut("default");
    disk.unwrap().eviction_requested = true;
    let v = volume("n1");
    // A replacement on the one node left, not yet serving; the evicted replica stays.
    let plan = f.plan(&v, &replicas);
    assert_eq!(plan.create.len(), 1, "{:?}", plan.create);
    assert_eq!(plan.create[0].node, "n4");
    assert!(!plan.create[0].healthy);
    assert!(
        !plan.actions.iter().any(|a| matches!(
            a,
            Action::DeleteReplica { .. } | Action::RemoveFromEngine { .. }
        )),
        "{:?}",
        plan.actions
    );

    // The replacement rebuilt: the evicted replica goes, the others stay.
    rebuilt_on_n4(&mut f, &mut replicas, &plan.create[0], "n1");
    let plan = f.plan(&v, &replicas);
    assert!(plan.create.is_empty());
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::RemoveFromEngine { address, .. } if address == "n2:100")),
        "{:?}",
        plan.actions
    );
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::DeleteReplica { node, .. } if node == "n2")),
        "{:?}",
        plan.actions
    );
    assert!(!plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::DeleteReplica { node, .. } if node != "n2")));
}

#[test]
fn a_detached_volume_on_an_evicted_node_says_it_waits_for_an_attach() {
    let mut f = Fixture::new();
    f.nodes.insert("n4".into(), node("n4"));
    f.nodes.get_mut("n3").unwrap().spec.eviction_requested = true;
    let replicas: Vec<Replica> = (1..=3).map(|n| replica(n, true)).collect();
    assert!(evicting(&f.nodes, &replicas[2]) && !evicting(&f.nodes, &replicas[0]));
    let plan = f.plan(&volume(""), &replicas);
    assert!(
        plan.create.is_empty() && plan.actions.is_empty(),
        "{plan:?}"
    );
    let scheduled = plan
        .status
        .conditions
        .iter()
        .find(|c| c.kind == "Scheduled")
        .unwrap();
    assert_eq!(scheduled.reason, "EvictionRequested");
    assert!(
        scheduled.message.contains("attached"),
        "{}",
        scheduled.message
    );
    // No new replica goes to an evicted node.
    let mut v = volume("");
    v.status.state = VolumeState::Creating;
    f.nodes.remove("n4");
    let plan = f.plan(&v, &[]);
    assert!(
        plan.create.iter().all(|r| r.node != "n3"),
        "{:?}",
        plan.create
    );
}

#[test]
fn the_replica_being_rebuilt_shows_how_far_it_is() {
    let mut f = Fixture::new();
    let replicas = attached_three(&mut f);
    f.engine(
        "n1",
        &[("n1:100", "RW"), ("n2:100", "RW"), ("n3:100", "WO")],
    );
    let engine = &mut f.reports.get_mut("n1").unwrap().engines[0];
    engine.rebuilding = true;
    engine.rebuild_copied = GIB / 4;
    engine.rebuild_total = GIB;
    let plan = f.plan(&volume("n1"), &replicas);
    let progress: Vec<Option<u8>> = plan
        .status
        .replicas
        .iter()
        .map(|r| r.rebuild_progress)
        .collect();
    assert_eq!(progress, [None, None, Some(25)]);
    assert_eq!(rebuild_percent(5, 0), 0);
    assert_eq!(rebuild_percent(u64::MAX, u64::MAX), 100);
    assert_eq!(rebuild_percent(10, 3), 100);
}
