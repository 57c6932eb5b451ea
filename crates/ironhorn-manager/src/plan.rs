//! The volume controller's decisions, pure: given a volume, its replicas, the nodes and what
//! each node agent reported this round, [`plan`] says what the volume's status is and what to
//! do next (create replicas, start or stop replica servers and engines, rebuild, remove).
//! Level-triggered: the same inputs give the same plan, and running a plan twice does no harm
//! (every node call is idempotent), so the shell simply plans again every round.

use std::collections::{BTreeMap, BTreeSet};

use ironhorn_api::node::{EngineInstance, NodeReport, ReplicaInstance, StartEngine, FENCING};
use ironhorn_api::resource::{
    set_condition, wire_name, BlockdevStatus, Condition, DataLocality, Node, Replica, Robustness,
    Volume, VolumeReplicaStatus, VolumeState, VolumeStatus,
};
use ironhorn_control::scheduler::{self, Placement, Request};
use ironhorn_control::settings::{self, Settings};

/// Everything outside the volume that its plan depends on.
#[derive(Debug)]
pub struct World<'a> {
    pub nodes: &'a BTreeMap<String, Node>,
    /// Reports of the nodes that answered this round (the ready ones), indexed.
    pub observed: &'a Observed<'a>,
    /// Every replica of every volume, and every volume's size (for the bytes scheduled to
    /// each disk).
    pub all_replicas: &'a [Replica],
    pub volume_sizes: &'a BTreeMap<String, u64>,
    pub settings: &'a Settings,
    /// Seconds since the Unix epoch.
    pub now: u64,
    /// Rebuilds running now, by the node of their target replica.
    pub rebuilds_per_node: &'a BTreeMap<String, usize>,
    /// Volumes with a rebuild running now.
    pub rebuilding_volumes: &'a BTreeSet<String>,
    /// Replicas whose last rebuild failed recently: not retried yet.
    pub held_back: &'a BTreeSet<String>,
}

/// A call to a node agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    StartReplica {
        node: String,
        name: String,
        dir: String,
        size: u64,
    },
    StopReplica {
        node: String,
        name: String,
    },
    /// Stop it, remove its directory, then forget the resource.
    DeleteReplica {
        node: String,
        name: String,
        dir: String,
    },
    StartEngine {
        node: String,
        request: StartEngine,
        /// Whether the volume may later be started elsewhere while this engine's node does
        /// not answer: it acknowledges writes with a majority of its replicas, counting any
        /// it could not open (its agent's fencing level says so). Stored with the generation.
        movable: bool,
    },
    StopEngine {
        node: String,
    },
    /// Rebuild (or catch up) `replica` at `address` into the engine on `node`.
    AddReplica {
        node: String,
        replica: String,
        address: String,
        previous: Option<String>,
    },
    RemoveFromEngine {
        node: String,
        address: String,
    },
}

/// What to do for one volume this round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub status: VolumeStatus,
    /// Replica resources to create.
    pub create: Vec<Replica>,
    /// Replica resources whose fields changed.
    pub update: Vec<Replica>,
    /// Replica resources to forget without a node call (their node is gone; what is left on
    /// its disk becomes an orphan).
    pub forget: Vec<String>,
    pub actions: Vec<Action>,
    /// Every part of a deleted volume is gone: remove the volume itself.
    pub delete_volume: bool,
}

/// The directory of `replica` on its node, when its disk is known.
pub fn replica_dir(nodes: &BTreeMap<String, Node>, replica: &Replica) -> Option<String> {
    let disk = nodes.get(&replica.node)?.spec.disks.get(&replica.disk)?;
    Some(format!(
        "{}/replicas/{}",
        disk.path.trim_end_matches('/'),
        replica.data_directory_name
    ))
}

/// The engine of `volume`, wherever a node reports one.
pub fn engine_of<'a>(
    reports: &'a BTreeMap<String, NodeReport>,
    volume: &str,
) -> Option<(&'a str, &'a EngineInstance)> {
    reports.iter().find_map(|(node, report)| {
        report
            .engines
            .iter()
            .find(|e| e.volume == volume)
            .map(|e| (node.as_str(), e))
    })
}

/// The nodes' reports, indexed by volume (engines) and by node and name (replica servers).
#[derive(Debug)]
pub struct Observed<'a> {
    pub reports: &'a BTreeMap<String, NodeReport>,
    engines: BTreeMap<&'a str, (&'a str, &'a EngineInstance)>,
    /// Nodes running an engine of an older attachment of the volume than another node's
    /// (one cut off while the volume was attached again elsewhere): to be stopped.
    stale: BTreeMap<&'a str, Vec<&'a str>>,
    instances: BTreeMap<(&'a str, &'a str), &'a ReplicaInstance>,
}

impl<'a> Observed<'a> {
    pub fn new(reports: &'a BTreeMap<String, NodeReport>) -> Observed<'a> {
        let mut engines: BTreeMap<&str, (&str, &EngineInstance)> = BTreeMap::new();
        let mut stale: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut instances = BTreeMap::new();
        for (node, report) in reports {
            for e in &report.engines {
                // The newest attachment's engine is the volume's; any other is stale.
                let older = match engines.get(e.volume.as_str()) {
                    Some((_, kept)) if kept.generation >= e.generation => node.as_str(),
                    Some(_) | None => {
                        let replaced = engines.insert(e.volume.as_str(), (node.as_str(), e));
                        match replaced {
                            Some((older, _)) => older,
                            None => continue,
                        }
                    }
                };
                stale.entry(e.volume.as_str()).or_default().push(older);
            }
            for r in &report.replicas {
                instances.insert((node.as_str(), r.name.as_str()), r);
            }
        }
        Observed {
            reports,
            engines,
            stale,
            instances,
        }
    }

    /// Nodes running a stale engine of the volume (see `stale`).
    pub fn stale_engines(&self, volume: &str) -> &[&'a str] {
        self.stale.get(volume).map_or(&[], Vec::as_slice)
    }

    /// Whether the node answered this round.
    pub fn ready(&self, node: &str) -> bool {
        self.reports.contains_key(node)
    }

    /// The fencing level of the node's agent (0 if it did not answer, or predates fencing).
    pub fn fencing(&self, node: &str) -> u32 {
        self.reports.get(node).map_or(0, |r| r.fencing)
    }

    /// The volume's engine and the node it runs on.
    pub fn engine(&self, volume: &str) -> Option<(&'a str, &'a EngineInstance)> {
        self.engines.get(volume).copied()
    }

    /// The replica's running server.
    pub fn instance(&self, replica: &Replica) -> Option<&'a ReplicaInstance> {
        self.instances
            .get(&(replica.node.as_str(), replica.name.as_str()))
            .copied()
    }
}

/// Whether `replica` is on a node or disk whose replicas are being moved off (Longhorn's
/// `evictionRequested`).
pub fn evicting(nodes: &BTreeMap<String, Node>, replica: &Replica) -> bool {
    nodes.get(&replica.node).is_some_and(|n| {
        n.spec.eviction_requested
            || n.spec
                .disks
                .get(&replica.disk)
                .is_some_and(|d| d.eviction_requested)
    })
}

/// Sets a condition of the volume; `now` is seconds since the epoch (its transition time).
fn condition(
    status: &mut VolumeStatus,
    now: u64,
    kind: &str,
    holds: bool,
    reason: &str,
    message: &str,
) {
    set_condition(
        &mut status.conditions,
        Condition::new(kind, holds, reason, message),
        &crate::clock::rfc3339(i64::try_from(now).unwrap_or(i64::MAX)),
    );
}

/// Names of new replicas: `<volume>-r-<8 hex>`, directory `<volume>-<8 hex>` as Longhorn.
pub fn new_replica(volume: &str, placement: &Placement, id: &str, healthy: bool) -> Replica {
    Replica {
        name: format!("{volume}-r-{id}"),
        volume: volume.to_string(),
        node: placement.node.clone(),
        disk: placement.disk.clone(),
        data_directory_name: format!("{volume}-{id}"),
        failed_at: None,
        healthy,
        address: String::new(),
    }
}

/// Bytes scheduled to each disk by `replicas` (this volume's at its size, others' at theirs).
fn scheduled_sizes(
    world: &World<'_>,
    volume: &Volume,
    replicas: &[Replica],
) -> BTreeMap<Placement, u64> {
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in world.all_replicas.iter().chain(replicas) {
        if !seen.insert(r.name.as_str()) {
            continue;
        }
        let size = if r.volume == volume.name {
            volume.spec.size
        } else {
            world.volume_sizes.get(&r.volume).copied().unwrap_or(0)
        };
        *out.entry(Placement {
            node: r.node.clone(),
            disk: r.disk.clone(),
        })
        .or_insert(0) += size;
    }
    out
}

/// Plans one round for `volume`. `new_id` gives fresh 8-hex-digit ids for new replicas.
pub fn plan(
    volume: &Volume,
    replicas: &[Replica],
    world: &World<'_>,
    new_id: &mut dyn FnMut() -> String,
) -> Plan {
    let mut plan = Plan {
        status: volume.status.clone(),
        ..Plan::default()
    };
    let spec = &volume.spec;
    let ready = |node: &str| world.observed.ready(node);
    let engine = world.observed.engine(&volume.name);
    let mut changed: BTreeSet<String> = BTreeSet::new();
    // Engines of older attachments (fenced by the replicas already) are stopped.
    for node in world.observed.stale_engines(&volume.name) {
        plan.actions.push(Action::StopEngine {
            node: node.to_string(),
        });
    }
    // Replicas on nodes that were removed are gone with their machine. While the engine may
    // still run on a node that does not answer, they may still be among its replicas: they
    // stay on record (and count when the volume is to start elsewhere) until it is seen.
    let (mut replicas, gone): (Vec<Replica>, Vec<Replica>) = replicas
        .iter()
        .cloned()
        .partition(|r| world.nodes.contains_key(&r.node));
    let current = volume.status.current_node_id.as_str();
    let engine_unseen = engine.is_none()
        && !current.is_empty()
        && world.nodes.contains_key(current)
        && !ready(current);
    let mut held = 0;
    for r in gone {
        if engine_unseen {
            held += 1;
            continue;
        }
        if let Some((node, e)) = engine {
            if !r.address.is_empty() && e.replicas.iter().any(|s| s.address == r.address) {
                plan.actions.push(Action::RemoveFromEngine {
                    node: node.to_string(),
                    address: r.address.clone(),
                });
            }
        }
        plan.forget.push(r.name);
    }

    // The engine is known to run only where a node reports it; a node that did not answer
    // may still run one, so the volume is not attached elsewhere until it answers (see
    // `claims_to_move` for the exception).
    if let Some((node, _)) = engine {
        plan.status.current_node_id = node.to_string();
    } else if !engine_unseen {
        // It answered without an engine, or it was removed with its machine.
        plan.status.current_node_id.clear();
    }

    if plan.status.state == VolumeState::Deleting {
        if let Some((node, _)) = engine {
            plan.actions.push(Action::StopEngine {
                node: node.to_string(),
            });
            return finish(plan, &replicas, world, volume);
        }
        for r in &replicas {
            match (ready(&r.node), replica_dir(world.nodes, r)) {
                (true, Some(dir)) => plan.actions.push(Action::DeleteReplica {
                    node: r.node.clone(),
                    name: r.name.clone(),
                    dir,
                }),
                _ if world.nodes.contains_key(&r.node) && !ready(&r.node) => {
                    // Its node is down: once it answers again the data is removed.
                }
                _ => plan.forget.push(r.name.clone()),
            }
        }
        plan.delete_volume = replicas.is_empty();
        return finish(plan, &replicas, world, volume);
    }

    // Replicas: create what is missing. A failed replica may still come back within
    // replica-replenishment-wait-interval; until then it holds its place. One being evicted
    // holds none: its replacement is built first, then it is removed (`attached`).
    let wait = world
        .settings
        .int(settings::REPLICA_REPLENISHMENT_WAIT_INTERVAL)
        .max(0) as u64;
    let staying = |r: &&Replica| !evicting(world.nodes, r);
    let active = replicas
        .iter()
        .filter(staying)
        .filter(|r| r.failed_at.is_none())
        .count();
    let waiting = replicas
        .iter()
        .filter(staying)
        .filter(|r| r.failed_at.is_some_and(|t| t + wait > world.now))
        .count();
    let first_placement = replicas.is_empty();
    let may_add = first_placement || engine.is_some();
    let missing = (spec.number_of_replicas as usize).saturating_sub(active + waiting);
    if missing > 0 && may_add {
        let mut placed: Vec<Placement> = replicas
            .iter()
            .map(|r| Placement {
                node: r.node.clone(),
                disk: r.disk.clone(),
            })
            .collect();
        for _ in 0..missing {
            let scheduled = scheduled_sizes(world, volume, &replicas);
            let nodes: Vec<Node> = world.nodes.values().cloned().collect();
            let request = Request {
                size: spec.size,
                actual_size: plan.status.actual_size,
                node_selector: spec.node_selector.clone(),
                disk_selector: spec.disk_selector.clone(),
                hard_node: None,
            };
            match scheduler::schedule(
                &request,
                &placed,
                &nodes,
                &scheduled,
                &world.settings.scheduling(),
            ) {
                Ok(placement) => {
                    let replica = new_replica(&volume.name, &placement, &new_id(), first_placement);
                    placed.push(placement);
                    replicas.push(replica.clone());
                    plan.create.push(replica);
                    condition(&mut plan.status, world.now, "Scheduled", true, "", "");
                }
                Err(refusal) => {
                    condition(
                        &mut plan.status,
                        world.now,
                        "Scheduled",
                        false,
                        "ReplicaSchedulingFailure",
                        &format!("cannot place a replica: {refusal}"),
                    );
                    break;
                }
            }
        }
    } else if missing == 0 {
        condition(&mut plan.status, world.now, "Scheduled", true, "", "");
    } else if let Some(r) = replicas.iter().find(|r| evicting(world.nodes, r)) {
        let why = format!(
            "replica {} is on node {} disk {}, which is being evicted: it moves once the volume is attached (in maintenance mode if it is not in use)",
            r.name, r.node, r.disk
        );
        condition(
            &mut plan.status,
            world.now,
            "Scheduled",
            false,
            "EvictionRequested",
            &why,
        );
    }
    // Best-effort data locality: a replica on the node the volume is attached to (Longhorn
    // adds one there, then removes one elsewhere once it is rebuilt).
    if let (DataLocality::BestEffort, Some((engine_node, _)), 0) =
        (spec.data_locality, engine, missing)
    {
        let local = replicas
            .iter()
            .any(|r| r.node == engine_node && r.failed_at.is_none());
        if !local && !world.rebuilding_volumes.contains(&volume.name) {
            let placed: Vec<Placement> = replicas
                .iter()
                .map(|r| Placement {
                    node: r.node.clone(),
                    disk: r.disk.clone(),
                })
                .collect();
            let request = Request {
                size: spec.size,
                actual_size: plan.status.actual_size,
                node_selector: spec.node_selector.clone(),
                disk_selector: spec.disk_selector.clone(),
                hard_node: Some(engine_node.to_string()),
            };
            let nodes: Vec<Node> = world.nodes.values().cloned().collect();
            let scheduled = scheduled_sizes(world, volume, &replicas);
            if let Ok(placement) = scheduler::schedule(
                &request,
                &placed,
                &nodes,
                &scheduled,
                &world.settings.scheduling(),
            ) {
                let replica = new_replica(&volume.name, &placement, &new_id(), false);
                replicas.push(replica.clone());
                plan.create.push(replica);
            }
        }
    }
    if plan.status.state == VolumeState::Creating && !replicas.is_empty() {
        plan.status.state = VolumeState::Detached;
    }

    let want_node = spec.node_id.as_str();
    if want_node.is_empty() {
        detach(&mut plan, engine, &replicas, world);
        return finish_with(plan, replicas, changed, world, volume);
    }

    // Attached or attaching: every replica whose node answers runs its server (a failed one
    // too, so that it can come back).
    for r in &replicas {
        if ready(&r.node) && world.observed.instance(r).is_none() {
            if let Some(dir) = replica_dir(world.nodes, r) {
                plan.actions.push(Action::StartReplica {
                    node: r.node.clone(),
                    name: r.name.clone(),
                    dir,
                    size: spec.size,
                });
            }
        }
    }

    match engine {
        Some((node, engine)) if node != want_node || !same_frontend(engine, volume) => {
            plan.status.state = VolumeState::Detaching;
            plan.actions.push(Action::StopEngine {
                node: node.to_string(),
            });
        }
        Some((node, engine)) => {
            attached(
                &mut plan,
                node,
                engine,
                &mut replicas,
                &mut changed,
                world,
                volume,
            );
        }
        None => {
            start_engine(&mut plan, &mut replicas, held, &mut changed, world, volume);
        }
    }
    finish_with(plan, replicas, changed, world, volume)
}

fn detach(
    plan: &mut Plan,
    engine: Option<(&str, &EngineInstance)>,
    replicas: &[Replica],
    world: &World<'_>,
) {
    if let Some((node, _)) = engine {
        plan.status.state = VolumeState::Detaching;
        plan.actions.push(Action::StopEngine {
            node: node.to_string(),
        });
        return;
    }
    let mut stopping = false;
    for r in replicas {
        if world.observed.instance(r).is_some() {
            stopping = true;
            plan.actions.push(Action::StopReplica {
                node: r.node.clone(),
                name: r.name.clone(),
            });
        }
    }
    if plan.status.state != VolumeState::Creating {
        plan.status.state = if stopping {
            VolumeState::Detaching
        } else {
            VolumeState::Detached
        };
    }
    plan.status.endpoint.clear();
}

/// Whether the running engine serves the frontend the volume asks for (an engine started for
/// another one is restarted).
fn same_frontend(engine: &EngineInstance, volume: &Volume) -> bool {
    let wanted = if volume.spec.maintenance {
        String::new()
    } else {
        wire_name(volume.spec.frontend)
    };
    let running = match (engine.maintenance, engine.frontend.as_str()) {
        (true, _) => "",
        // Agents that predate the blockdev frontend report none: they run NBD.
        (false, "") => "nbd",
        (false, name) => name,
    };
    wanted == running
}

/// `held`: replicas on removed nodes that the previous engine, on a node that does not
/// answer, may still count among its own.
fn start_engine(
    plan: &mut Plan,
    replicas: &mut [Replica],
    held: usize,
    changed: &mut BTreeSet<String>,
    world: &World<'_>,
    volume: &Volume,
) {
    let want_node = volume.spec.node_id.as_str();
    plan.status.state = VolumeState::Attaching;
    plan.status.endpoint.clear();
    plan.status.blockdev = None;
    if !world.observed.ready(want_node) {
        let why = if world.nodes.contains_key(want_node) {
            format!("node {want_node} is not ready")
        } else {
            format!("node {want_node} does not exist")
        };
        condition(
            &mut plan.status,
            world.now,
            "Attached",
            false,
            "NodeUnavailable",
            &why,
        );
        return;
    }
    // The previous engine may still run on a node that does not answer (cut off, say). The
    // volume starts here only if enough replicas take the new generation that the old
    // engine can no longer reach a majority: then it acknowledges nothing more, and every
    // write it acknowledged is on one of them.
    let current = plan.status.current_node_id.clone();
    let mut min_claimed = 0;
    if !current.is_empty() && current != want_node {
        match claims_to_move(volume, replicas, held, world) {
            Ok(needed) => min_claimed = needed,
            Err(why) => {
                let why = format!(
                    "the engine may still run on node {current}, which does not answer: {why}"
                );
                condition(
                    &mut plan.status,
                    world.now,
                    "Attached",
                    false,
                    "EngineElsewhere",
                    &why,
                );
                return;
            }
        }
    }
    // Healthy replicas serve; ones on nodes that do not answer miss what is written from now.
    let mut addresses = Vec::new();
    let mut starting = false;
    for r in replicas.iter_mut() {
        if !r.healthy || r.failed_at.is_some() {
            continue;
        }
        if !world.observed.ready(&r.node) {
            continue;
        }
        match world.observed.instance(r) {
            Some(i) => addresses.push((r.name.clone(), i.address.clone())),
            None => starting = true,
        }
    }
    if starting {
        return;
    }
    if addresses.is_empty() {
        let salvageable: Vec<usize> = replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.healthy || r.failed_at.is_some())
            .filter(|(_, r)| world.observed.instance(r).is_some())
            .map(|(i, _)| i)
            .collect();
        let all_failed = !replicas.is_empty() && replicas.iter().all(|r| r.failed_at.is_some());
        if all_failed && world.settings.bool(settings::AUTO_SALVAGE) && !salvageable.is_empty() {
            // Every replica failed: the engine starts from those that are reachable and
            // reconciles them (the newest revision wins), as Longhorn's auto-salvage does.
            for i in salvageable {
                let r = &mut replicas[i];
                r.failed_at = None;
                r.healthy = true;
                changed.insert(r.name.clone());
            }
            condition(
                &mut plan.status,
                world.now,
                "Attached",
                false,
                "AutoSalvaged",
                "every replica had failed: starting from the reachable ones",
            );
            return;
        }
        plan.status.robustness = Robustness::Faulted;
        condition(
            &mut plan.status,
            world.now,
            "Attached",
            false,
            "NoHealthyReplica",
            "no healthy replica is reachable; bring their nodes back, or enable auto-salvage",
        );
        return;
    }
    // Healthy replicas whose node does not answer will miss writes: failed from now.
    for r in replicas.iter_mut() {
        if r.healthy && r.failed_at.is_none() && !world.observed.ready(&r.node) {
            r.failed_at = Some(world.now);
            changed.insert(r.name.clone());
        }
    }
    for r in replicas.iter_mut() {
        if let Some((_, address)) = addresses.iter().find(|(n, _)| *n == r.name) {
            if r.address != *address {
                r.address = address.clone();
                changed.insert(r.name.clone());
            }
        }
    }
    // With three replicas or more, an engine cut off from most of them (its node
    // partitioned) must not go on acknowledging writes on the rest.
    let majority_quorum = volume.spec.number_of_replicas >= 3;
    plan.actions.push(Action::StartEngine {
        node: want_node.to_string(),
        request: StartEngine {
            size: volume.spec.size,
            replicas: addresses.into_iter().map(|(_, a)| a).collect(),
            frontend: wire_name(volume.spec.frontend),
            maintenance: volume.spec.maintenance,
            replica_timeout: world.settings.int(settings::ENGINE_REPLICA_TIMEOUT).max(1) as u64,
            // Handed out, and stored, by the controller just before it asks for the engine.
            generation: 0,
            majority_quorum,
            min_claimed,
        },
        movable: majority_quorum && world.observed.fencing(want_node) >= FENCING,
    });
}

/// How many replicas a new engine must claim to start while the previous one may still run
/// on a node that does not answer, or why it may not start at all.
///
/// That engine acknowledges a write only once a majority of its replicas (those being
/// rebuilt aside) have it (when `status.majority_quorum`), counting failed ones and ones it
/// could not open; its replicas are some of the volume's replicas on record (every one it
/// was given or later added: none is forgotten while it is unseen; `held` of them are on
/// removed nodes). A new engine that claims at least half of them, from those known
/// healthy, leaves it short of a majority, and holds every write it acknowledged.
fn claims_to_move(
    volume: &Volume,
    replicas: &[Replica],
    held: usize,
    world: &World<'_>,
) -> Result<usize, String> {
    if !volume.status.majority_quorum {
        return Err("it acknowledges writes with one replica (or its agent predates fencing), so it could go on writing there: waiting for the node to answer, or to be removed".into());
    }
    let want_node = volume.spec.node_id.as_str();
    if world.observed.fencing(want_node) < FENCING {
        return Err(format!(
            "the agent on node {want_node} predates fencing and cannot be asked to claim enough replicas: upgrade it, or wait for the node to answer"
        ));
    }
    let total = replicas.len() + held;
    let needed = total.div_ceil(2).max(1);
    let claimable = replicas
        .iter()
        .filter(|r| r.healthy && r.failed_at.is_none() && world.observed.ready(&r.node))
        .count();
    if claimable < needed {
        return Err(format!(
            "only {claimable} healthy replicas are reachable and {needed} of {total} are needed to fence it: waiting"
        ));
    }
    Ok(needed)
}

fn attached(
    plan: &mut Plan,
    node: &str,
    engine: &EngineInstance,
    replicas: &mut [Replica],
    changed: &mut BTreeSet<String>,
    world: &World<'_>,
    volume: &Volume,
) {
    plan.status.state = VolumeState::Attached;
    plan.status.endpoint = engine.endpoint.clone();
    plan.status.blockdev = engine.blockdev.as_ref().map(|b| BlockdevStatus {
        backend: b.backend.clone(),
        device: b.device.clone(),
        kernel_device: b.kernel_device.clone(),
        mount_points: b.mount_points.clone(),
    });
    condition(&mut plan.status, world.now, "Attached", true, "", "");
    let stale_after = volume.spec.stale_replica_timeout.saturating_mul(60);
    let limit = world
        .settings
        .int(settings::CONCURRENT_REPLICA_REBUILD_PER_NODE_LIMIT)
        .max(0) as usize;
    let mut may_rebuild = !engine.rebuilding && !world.rebuilding_volumes.contains(&volume.name);
    for r in replicas.iter_mut() {
        let slot = engine
            .replicas
            .iter()
            .find(|s| !r.address.is_empty() && s.address == r.address);
        match slot.map(|s| s.mode.as_str()) {
            Some("RW") => {
                if !r.healthy || r.failed_at.is_some() {
                    r.healthy = true;
                    r.failed_at = None;
                    changed.insert(r.name.clone());
                }
                continue;
            }
            Some("WO") => continue,
            Some(_) => {
                if r.failed_at.is_none() {
                    r.failed_at = Some(world.now);
                    r.healthy = false;
                    changed.insert(r.name.clone());
                }
            }
            None => {
                if r.healthy && r.failed_at.is_none() {
                    // Not in the engine (it started without it): it misses writes.
                    r.failed_at = Some(world.now);
                    r.healthy = false;
                    changed.insert(r.name.clone());
                }
            }
        }
        // Failed, or new: remove it when stale, else bring it (back) in.
        if let Some(failed_at) = r.failed_at {
            if stale_after > 0 && failed_at + stale_after <= world.now {
                if slot.is_some() {
                    plan.actions.push(Action::RemoveFromEngine {
                        node: node.to_string(),
                        address: r.address.clone(),
                    });
                }
                match replica_dir(world.nodes, r) {
                    Some(dir) if world.observed.ready(&r.node) => {
                        plan.actions.push(Action::DeleteReplica {
                            node: r.node.clone(),
                            name: r.name.clone(),
                            dir,
                        })
                    }
                    _ => plan.forget.push(r.name.clone()),
                }
                continue;
            }
        }
        // One being evicted is not brought back: a replacement is built elsewhere.
        if evicting(world.nodes, r) {
            continue;
        }
        let Some(inst) = world.observed.instance(r) else {
            continue;
        };
        let busy = world.rebuilds_per_node.get(&r.node).copied().unwrap_or(0);
        if !may_rebuild || world.held_back.contains(&r.name) || busy >= limit {
            continue;
        }
        may_rebuild = false;
        let previous = slot
            .filter(|s| s.address != inst.address)
            .map(|s| s.address.clone());
        plan.actions.push(Action::AddReplica {
            node: node.to_string(),
            replica: r.name.clone(),
            address: inst.address.clone(),
            previous,
        });
    }

    // A replica being evicted goes once enough others serve read-write; and when there are
    // more RW replicas than wanted (a local one was added, or numberOfReplicas lowered), one
    // goes, never the local one under best-effort locality.
    let rw: Vec<&Replica> = replicas
        .iter()
        .filter(|r| {
            r.failed_at.is_none()
                && engine
                    .replicas
                    .iter()
                    .any(|s| s.address == r.address && s.mode == "RW")
        })
        .collect();
    if !may_rebuild {
        return;
    }
    let wanted = volume.spec.number_of_replicas as usize;
    let settled = rw.iter().filter(|r| !evicting(world.nodes, r)).count() >= wanted;
    let keep_local = volume.spec.data_locality == DataLocality::BestEffort;
    let extra = replicas
        .iter()
        .find(|r| settled && evicting(world.nodes, r))
        .or_else(|| {
            (rw.len() > wanted)
                .then(|| rw.iter().rev().find(|r| !(keep_local && r.node == node)))
                .flatten()
                .copied()
        });
    if let Some(extra) = extra {
        if !extra.address.is_empty() && engine.replicas.iter().any(|s| s.address == extra.address) {
            plan.actions.push(Action::RemoveFromEngine {
                node: node.to_string(),
                address: extra.address.clone(),
            });
        }
        match replica_dir(world.nodes, extra) {
            Some(dir) if world.observed.ready(&extra.node) => {
                plan.actions.push(Action::DeleteReplica {
                    node: extra.node.clone(),
                    name: extra.name.clone(),
                    dir,
                })
            }
            _ => plan.forget.push(extra.name.clone()),
        }
    }
}

/// Status that follows from the replicas and the engine.
fn finish_with(
    mut plan: Plan,
    replicas: Vec<Replica>,
    changed: BTreeSet<String>,
    world: &World<'_>,
    volume: &Volume,
) -> Plan {
    for r in &replicas {
        if changed.contains(&r.name) {
            match plan.create.iter_mut().find(|c| c.name == r.name) {
                Some(created) => *created = r.clone(),
                None => plan.update.push(r.clone()),
            }
        }
    }
    finish(plan, &replicas, world, volume)
}

/// Percent of a rebuild done, 0 to 100 (0 before its size is known).
fn rebuild_percent(copied: u64, total: u64) -> u8 {
    if total == 0 {
        return 0;
    }
    u8::try_from(u128::from(copied.min(total)) * 100 / u128::from(total)).unwrap_or(100)
}

fn finish(mut plan: Plan, replicas: &[Replica], world: &World<'_>, volume: &Volume) -> Plan {
    let engine = world.observed.engine(&volume.name).map(|(_, e)| e);
    plan.status.replicas = replicas
        .iter()
        .filter(|r| !plan.forget.contains(&r.name))
        .map(|r| {
            let mode = engine
                .and_then(|e| {
                    e.replicas
                        .iter()
                        .find(|s| !r.address.is_empty() && s.address == r.address)
                })
                .map(|s| s.mode.clone())
                .unwrap_or_default();
            // The engine rebuilds one replica at a time: the one it writes only (WO).
            let rebuild_progress = engine
                .filter(|e| e.rebuilding && mode == "WO")
                .map(|e| rebuild_percent(e.rebuild_copied, e.rebuild_total));
            VolumeReplicaStatus {
                name: r.name.clone(),
                node: r.node.clone(),
                disk: r.disk.clone(),
                mode,
                healthy: r.healthy && r.failed_at.is_none(),
                rebuild_progress,
            }
        })
        .collect();
    let sizes: Vec<u64> = replicas
        .iter()
        .filter_map(|r| world.observed.instance(r))
        .map(|i| i.actual_size)
        .collect();
    if let Some(max) = sizes.into_iter().max() {
        plan.status.actual_size = max;
    }
    plan.status.robustness = match engine {
        // Not observed while no engine runs, unless every replica is known to have failed.
        None if !replicas.is_empty() && replicas.iter().all(|r| r.failed_at.is_some()) => {
            Robustness::Faulted
        }
        None => Robustness::Unknown,
        Some(e) => {
            let rw = e.replicas.iter().filter(|s| s.mode == "RW").count();
            if rw == 0 {
                Robustness::Faulted
            } else if rw >= volume.spec.number_of_replicas as usize {
                Robustness::Healthy
            } else {
                Robustness::Degraded
            }
        }
    };
    plan
}

#[cfg(test)]
mod tests;
