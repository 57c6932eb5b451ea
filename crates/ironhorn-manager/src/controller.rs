//! The controllers' shell: every round it observes each node (one call per node agent),
//! updates node status, then plans each volume ([`crate::plan`]) and carries the plan out.
//! Rounds run every few seconds, at once after a change to the store, and back to back while
//! there is work in progress. A failed step is logged and simply planned again next round.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ironhorn_api::node::{AddReplica, ObserveRequest, StartReplica};
use ironhorn_api::node_api;
use ironhorn_api::resource::{
    set_condition, Condition, DiskStatus, Node, Replica, Robustness, Volume, VolumeState,
};
use ironhorn_store::{Expect, StoreError};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::error::ApiError;
use crate::node_client::NodeCallError;
use crate::plan::{self, Action, Plan, World};
use crate::state::{self, NODES, REPLICAS, VOLUMES};
use crate::Manager;

/// Why a controller action failed (shown in the volume's `Reconciled` condition).
#[derive(Debug, thiserror::Error)]
enum ActionError {
    #[error("node {0} is not known")]
    UnknownNode(String),
    #[error(transparent)]
    Node(#[from] NodeCallError),
    #[error("the state store: {0}")]
    Store(#[from] StoreError),
}

/// Time between rounds when nothing is going on.
const IDLE_ROUND: Duration = Duration::from_secs(5);
/// Time between rounds while work is in progress.
const BUSY_ROUND: Duration = Duration::from_millis(100);
/// How long a replica whose rebuild failed waits before the next try.
const REBUILD_RETRY: Duration = Duration::from_secs(30);

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// At start nothing about running engines is known until the nodes answer: stored statuses
/// say what was true before the restart. Attached volumes show as attaching (no endpoint, no
/// replica modes, robustness unknown) until the first round observes them.
pub async fn forget_observations(manager: &Manager) -> Result<(), ApiError> {
    let store = manager.store.as_ref();
    let unobserved = |v: &mut Volume| {
        if v.status.state == VolumeState::Attached {
            v.status.state = VolumeState::Attaching;
        }
        v.status.endpoint.clear();
        v.status.robustness = Robustness::Unknown;
        for r in &mut v.status.replicas {
            r.mode.clear();
        }
    };
    for (volume, _) in state::list::<Volume>(store, VOLUMES).await? {
        let mut after = volume.clone();
        unobserved(&mut after);
        if after == volume {
            continue; // detached volumes: nothing to write
        }
        let key = format!("{VOLUMES}{}", volume.name);
        state::update::<Volume, ApiError, _>(
            store,
            &key,
            || ApiError::not_found("gone"),
            |v| {
                unobserved(v);
                Ok(())
            },
        )
        .await?;
    }
    Ok(())
}

/// Runs rounds until `shutdown`: another at once when the store changed (an API call on
/// any manager), soon while work is under way, and every few seconds anyway (nodes change
/// without telling the store).
pub async fn run(manager: Arc<Manager>, shutdown: CancellationToken) {
    let mut changes = manager.store.changes();
    loop {
        changes.borrow_and_update();
        let busy = match manager.round().await {
            Ok(busy) => busy,
            Err(e) => {
                tracing::warn!(error = %e, "controller round failed");
                false
            }
        };
        let pause = if busy { BUSY_ROUND } else { IDLE_ROUND };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = manager.wake.notified() => {}
            _ = store_changed(&mut changes) => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Free space moves by a few bytes all the time (logs, the store's own files): a disk's
/// available bytes are kept as stored until they move by 64 MiB or a thousandth of the disk,
/// so an idle node's record is not rewritten, and every manager told, each round.
fn steady_storage(
    before: &ironhorn_api::resource::NodeStatus,
    after: &mut ironhorn_api::resource::NodeStatus,
) {
    for (name, disk) in after.disks.iter_mut() {
        let Some(old) = before.disks.get(name) else {
            continue;
        };
        let slack = (64 << 20).max(old.storage_maximum / 1000);
        if disk.storage_available.abs_diff(old.storage_available) < slack {
            disk.storage_available = old.storage_available;
        }
    }
}

/// Returns when the store has changed; never, when it cannot tell any more.
async fn store_changed(changes: &mut tokio::sync::watch::Receiver<u64>) {
    if changes.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

impl Manager {
    /// One round; returns whether anything was done (so the next round comes soon).
    pub async fn round(self: &Arc<Self>) -> Result<bool, ApiError> {
        let store = self.store.as_ref();
        let observation_started = Instant::now();
        let node_entries: Vec<(Node, u64)> = state::list(store, NODES).await?;
        let observed = futures::future::join_all(node_entries.iter().map(|(node, _)| {
            let request = ObserveRequest {
                disks: node
                    .spec
                    .disks
                    .iter()
                    .map(|(name, d)| (name.clone(), d.path.clone()))
                    .collect(),
            };
            let client = self.client.clone();
            let address = node.spec.address.clone();
            async move { client.call(&address, node_api::observe(&request)).await }
        }))
        .await;
        let replica_entries: Vec<(Replica, u64)> =
            state::list_cached(store, REPLICAS, &self.parsed_replicas).await?;
        let volume_entries: Vec<(Volume, u64)> =
            state::list_cached(store, VOLUMES, &self.parsed_volumes).await?;
        let volume_sizes: BTreeMap<String, u64> = volume_entries
            .iter()
            .map(|(v, _)| (v.name.clone(), v.spec.size))
            .collect();
        let mut scheduled_per_disk: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (r, _) in &replica_entries {
            *scheduled_per_disk
                .entry((r.node.as_str(), r.disk.as_str()))
                .or_default() += volume_sizes.get(&r.volume).copied().unwrap_or(0);
        }
        let mut reports = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        // The transition time of every condition this round changes.
        let now = clock::now_rfc3339();
        for ((mut node, revision), result) in node_entries.into_iter().zip(observed) {
            let before = node.status.clone();
            match result {
                Ok(report) => {
                    node.status.ready = true;
                    set_condition(
                        &mut node.status.conditions,
                        Condition::new("Ready", true, "", ""),
                        &now,
                    );
                    let mut disks = BTreeMap::new();
                    for (name, disk) in &report.disks {
                        let scheduled = scheduled_per_disk
                            .get(&(node.name.as_str(), name.as_str()))
                            .copied()
                            .unwrap_or(0);
                        let ok = disk.error.is_empty();
                        let mut conditions = before
                            .disks
                            .get(name)
                            .map(|d| d.conditions.clone())
                            .unwrap_or_default();
                        set_condition(
                            &mut conditions,
                            Condition::new(
                                "Ready",
                                ok,
                                if ok { "" } else { "NoDiskInfo" },
                                &disk.error,
                            ),
                            &now,
                        );
                        disks.insert(
                            name.clone(),
                            DiskStatus {
                                storage_maximum: disk.storage_maximum,
                                storage_available: disk.storage_available,
                                storage_scheduled: scheduled,
                                disk_uuid: disk.disk_uuid.clone(),
                                conditions,
                            },
                        );
                    }
                    // A disk that failed its probe is unusable: not reported to the scheduler.
                    disks.retain(|_, d| d.conditions.iter().all(|c| c.holds()));
                    node.status.disks = disks;
                    reports.insert(node.name.clone(), report);
                }
                Err(e) => {
                    node.status.ready = false;
                    set_condition(
                        &mut node.status.conditions,
                        Condition::new("Ready", false, "NoResponse", &e.to_string()),
                        &now,
                    );
                }
            }
            steady_storage(&before, &mut node.status);
            if node.status != before {
                if before.ready != node.status.ready {
                    tracing::info!(
                        node = node.name,
                        ready = node.status.ready,
                        "node readiness changed"
                    );
                }
                let _ = state::put(
                    store,
                    &format!("{NODES}{}", node.name),
                    &node,
                    Expect::Revision(revision),
                )
                .await;
            }
            nodes.insert(node.name.clone(), node);
        }
        self.set_reports(reports, observation_started);
        let reports = self.reports();

        let settings = state::settings(store).await?;
        if settings.bool(ironhorn_control::settings::ORPHAN_RESOURCE_AUTO_DELETION) {
            for orphan in crate::orphans::find(self).await? {
                if let Err(e) = crate::orphans::remove(self, &orphan).await {
                    tracing::warn!(path = orphan.path, node = orphan.node, error = %e, "removing an orphaned replica directory");
                }
            }
        }
        let all_replicas: Vec<Replica> = replica_entries.iter().map(|(r, _)| r.clone()).collect();
        let replica_revisions: BTreeMap<String, u64> = replica_entries
            .iter()
            .map(|(r, rev)| (r.name.clone(), *rev))
            .collect();
        let (rebuilds_per_node, rebuilding_volumes, held_back) = {
            let mut rebuilds = self.rebuilds();
            rebuilds.failed.retain(|_, at| at.elapsed() < REBUILD_RETRY);
            let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
            for node in rebuilds.running.values() {
                *per_node.entry(node.clone()).or_default() += 1;
            }
            (
                per_node,
                rebuilds.running.keys().cloned().collect::<BTreeSet<_>>(),
                rebuilds.failed.keys().cloned().collect::<BTreeSet<_>>(),
            )
        };
        let observed = plan::Observed::new(&reports);
        let world = World {
            nodes: &nodes,
            observed: &observed,
            all_replicas: &all_replicas,
            volume_sizes: &volume_sizes,
            settings: &settings,
            now: now_secs(),
            rebuilds_per_node: &rebuilds_per_node,
            rebuilding_volumes: &rebuilding_volumes,
            held_back: &held_back,
        };
        let mut by_volume: BTreeMap<&str, Vec<Replica>> = BTreeMap::new();
        for r in &all_replicas {
            by_volume
                .entry(r.volume.as_str())
                .or_default()
                .push(r.clone());
        }
        let mut work = Vec::new();
        for (volume, revision) in &volume_entries {
            let replicas = by_volume
                .get(volume.name.as_str())
                .map_or(&[][..], Vec::as_slice);
            let plan = plan::plan(volume, replicas, &world, &mut short_id);
            let busy = !plan.actions.is_empty()
                || !plan.create.is_empty()
                || !plan.update.is_empty()
                || !plan.forget.is_empty()
                || plan.delete_volume;
            if busy || plan.status != volume.status {
                work.push(self.execute(
                    volume.clone(),
                    *revision,
                    &replica_revisions,
                    plan,
                    &nodes,
                ));
            }
        }
        let results = futures::future::join_all(work).await;
        Ok(results.into_iter().any(|busy| busy) || !rebuilding_volumes.is_empty())
    }

    /// Carries out one volume's plan; returns whether it did anything beyond a status write.
    #[tracing::instrument(skip_all, fields(volume = %volume.name))]
    async fn execute(
        self: &Arc<Self>,
        volume: Volume,
        revision: u64,
        replica_revisions: &BTreeMap<String, u64>,
        mut plan: Plan,
        nodes: &BTreeMap<String, Node>,
    ) -> bool {
        {
            let store = self.store.as_ref();
            let mut busy = false;
            for r in &plan.create {
                busy = true;
                match state::put(store, &format!("{REPLICAS}{}", r.name), r, Expect::Absent).await {
                    Ok(_) => tracing::info!(
                        replica = r.name,
                        node = r.node,
                        disk = r.disk,
                        "replica scheduled"
                    ),
                    Err(e) => {
                        tracing::warn!(replica = r.name, error = %e, "creating a replica resource failed; next round")
                    }
                }
            }
            for r in &plan.update {
                busy = true;
                let expect = replica_revisions
                    .get(&r.name)
                    .map_or(Expect::Absent, |rev| Expect::Revision(*rev));
                if let Err(e) = state::put(store, &format!("{REPLICAS}{}", r.name), r, expect).await
                {
                    tracing::debug!(replica = r.name, error = %e, "replica changed meanwhile: next round");
                }
            }
            for name in &plan.forget {
                busy = true;
                match store
                    .delete(&format!("{REPLICAS}{name}"), Expect::Any)
                    .await
                {
                    Ok(_) => tracing::info!(replica = name, "replica forgotten (its node is gone)"),
                    Err(e) => {
                        tracing::warn!(replica = name, error = %e, "forgetting a replica failed; next round")
                    }
                }
            }
            let address_of = |node: &str| nodes.get(node).map(|n| n.spec.address.clone());
            let mut failures = Vec::new();
            let acted = !plan.actions.is_empty();
            // A failed action does not make the round busy: it is retried at the idle pace
            // (or when something changes), not in a tight loop against a node that refuses.
            for action in std::mem::take(&mut plan.actions) {
                let action = match action {
                    Action::StartEngine {
                        node,
                        mut request,
                        movable,
                    } => match self.next_generation(&volume.name, movable).await {
                        Ok(generation) => {
                            request.generation = generation;
                            if request.min_claimed > 0 {
                                tracing::warn!(to = %node, previous = %volume.status.current_node_id, claims = request.min_claimed, generation, "starting the volume while the node of its previous engine does not answer: the new engine must claim enough replicas to fence that one out");
                            }
                            Action::StartEngine {
                                node,
                                request,
                                movable,
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "no attachment generation: the engine is not started");
                            failures.push(e.to_string());
                            continue;
                        }
                    },
                    other => other,
                };
                match self.act(&volume.name, action, &address_of).await {
                    Ok(()) => busy = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "controller action failed; retrying next round");
                        failures.push(e.to_string());
                    }
                }
            }
            // What went wrong last, where `volume get` shows it (cleared once a round's
            // actions all succeed).
            if acted {
                set_condition(
                    &mut plan.status.conditions,
                    Condition::new(
                        "Reconciled",
                        failures.is_empty(),
                        if failures.is_empty() {
                            ""
                        } else {
                            "NodeCallFailed"
                        },
                        &failures.join("; "),
                    ),
                    &clock::now_rfc3339(),
                );
            }
            if plan.delete_volume {
                let deleted = store
                    .delete(
                        &format!("{VOLUMES}{}", volume.name),
                        Expect::Revision(revision),
                    )
                    .await;
                match deleted {
                    Ok(Some(_)) => {
                        tracing::info!("volume deleted");
                        if let Err(e) =
                            crate::recurring::records::forget_volume(self, &volume.name).await
                        {
                            tracing::warn!(error = %e, "the deleted volume's recurring-job runs stay listed");
                        }
                    }
                    Ok(None) => tracing::debug!("volume was deleted already"),
                    Err(StoreError::Conflict { .. }) => {
                        tracing::debug!("volume changed while being deleted: next round")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the volume's data is gone but deleting its record failed; it is retried every round")
                    }
                }
                return true;
            }
            if plan.status != volume.status {
                let status = plan.status.clone();
                let key = format!("{VOLUMES}{}", volume.name);
                let result = state::update::<Volume, ApiError, _>(
                    store,
                    &key,
                    || ApiError::not_found("gone"),
                    |v| {
                        // The API may have changed the state (deleting) meanwhile: keep that.
                        let deleting = v.status.state == VolumeState::Deleting;
                        let mut computed = status.clone();
                        computed.keep_job_fields(&v.status);
                        v.status = computed;
                        if deleting {
                            v.status.state = VolumeState::Deleting;
                        }
                        Ok(())
                    },
                )
                .await;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "volume status not written");
                }
            }
            busy
        }
    }

    /// Hands out the volume's next attachment generation, stored before any engine gets it
    /// (through the leader's fenced store), so no two engines ever hold the same one; with
    /// it, whether the volume may start elsewhere while that engine's node does not answer
    /// (`movable`: see `plan::Action::StartEngine`). Stored before the start is tried: an
    /// engine that then fails to start never ran, so what it says is moot.
    async fn next_generation(&self, volume: &str, movable: bool) -> Result<u64, ApiError> {
        let stored = state::update::<Volume, ApiError, _>(
            self.store.as_ref(),
            &format!("{VOLUMES}{volume}"),
            || ApiError::not_found(format!("volume {volume} is gone")),
            |v| {
                v.status.generation += 1;
                v.status.majority_quorum = movable;
                Ok(())
            },
        )
        .await?;
        Ok(stored.status.generation)
    }

    #[tracing::instrument(skip_all, fields(node = tracing::field::Empty))]
    async fn act(
        self: &Arc<Self>,
        volume: &str,
        action: Action,
        address_of: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<(), ActionError> {
        let node_of = |action: &Action| match action {
            Action::StartReplica { node, .. }
            | Action::StopReplica { node, .. }
            | Action::DeleteReplica { node, .. }
            | Action::StartEngine { node, .. }
            | Action::StopEngine { node }
            | Action::AddReplica { node, .. }
            | Action::RemoveFromEngine { node, .. } => node.clone(),
        };
        let node = node_of(&action);
        tracing::Span::current().record("node", node.as_str());
        let address = address_of(&node).ok_or_else(|| ActionError::UnknownNode(node.clone()))?;
        let client = &self.client;
        match action {
            Action::StartReplica {
                name, dir, size, ..
            } => {
                client
                    .call(
                        &address,
                        node_api::start_replica(&name, &StartReplica { dir, size }),
                    )
                    .await?;
            }
            Action::StopReplica { name, .. } => {
                client.call(&address, node_api::stop_replica(&name)).await?;
            }
            Action::DeleteReplica { name, dir, .. } => {
                client
                    .call(&address, node_api::delete_replica(&name, &dir))
                    .await?;
                self.store
                    .delete(&format!("{REPLICAS}{name}"), Expect::Any)
                    .await?;
                tracing::info!(replica = name, "replica deleted");
            }
            Action::StartEngine { request, .. } => {
                let engine = client
                    .call(&address, node_api::start_engine(volume, &request))
                    .await?;
                tracing::info!(node, endpoint = engine.endpoint, "volume attached");
            }
            Action::StopEngine { .. } => {
                client
                    .call(&address, node_api::stop_engine(volume, false))
                    .await?;
                tracing::info!(node, "engine stopped");
            }
            Action::AddReplica {
                replica,
                address: replica_address,
                previous,
                ..
            } => {
                self.spawn_rebuild(volume, address, replica, replica_address, previous)
                    .await
            }
            Action::RemoveFromEngine {
                address: replica_address,
                ..
            } => {
                client
                    .call(&address, node_api::remove_replica(volume, &replica_address))
                    .await?;
            }
        }
        Ok(())
    }

    /// Rebuilds (or catches up) a replica in the background; the next rounds see the result.
    async fn spawn_rebuild(
        self: &Arc<Self>,
        volume: &str,
        engine_address: String,
        replica: String,
        replica_address: String,
        previous: Option<String>,
    ) {
        let key = format!("{REPLICAS}{replica}");
        let target_node = match state::get::<Replica>(self.store.as_ref(), &key).await {
            Ok(Some((r, _))) => r.node,
            _ => return,
        };
        {
            let mut rebuilds = self.rebuilds();
            if rebuilds.running.contains_key(volume) {
                return;
            }
            rebuilds.running.insert(volume.to_string(), target_node);
        }
        let manager = self.clone();
        let volume = volume.to_string();
        tokio::spawn(async move {
            let started = Instant::now();
            tracing::info!(
                volume,
                replica,
                address = replica_address,
                ?previous,
                "rebuilding replica"
            );
            let request = AddReplica {
                address: replica_address.clone(),
                previous,
            };
            let result = manager
                .client
                .call(&engine_address, node_api::add_replica(&volume, &request))
                .await;
            match result {
                Ok(report) => {
                    let recorded = state::update::<Replica, ApiError, _>(
                        manager.store.as_ref(),
                        &key,
                        || ApiError::not_found("gone"),
                        |r| {
                            r.address = replica_address.clone();
                            r.healthy = true;
                            r.failed_at = None;
                            Ok(())
                        },
                    )
                    .await;
                    if let Err(e) = recorded {
                        tracing::warn!(replica, error = %e, "recording a finished rebuild");
                    }
                    tracing::info!(
                        volume,
                        replica,
                        incremental = report.incremental,
                        bytes = report.bytes_copied,
                        seconds = started.elapsed().as_secs_f64(),
                        "replica rebuilt"
                    );
                }
                Err(e) => {
                    tracing::warn!(volume, replica, error = %e, "rebuild failed; retrying later");
                    manager
                        .rebuilds()
                        .failed
                        .insert(replica.clone(), Instant::now());
                }
            }
            manager.rebuilds().running.remove(&volume);
            manager.wake.notify_one();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironhorn_api::resource::NodeStatus;

    fn status(available: u64) -> NodeStatus {
        let mut s = NodeStatus::default();
        s.disks.insert(
            "default".into(),
            DiskStatus {
                storage_maximum: 100 << 30,
                storage_available: available,
                ..Default::default()
            },
        );
        s
    }

    #[test]
    fn free_space_that_barely_moved_is_kept_as_stored() {
        let before = status(50 << 30);
        let mut after = status((50 << 30) - (3 << 20));
        steady_storage(&before, &mut after);
        assert_eq!(after, before, "a 3 MiB wobble rewrites the node");
        let mut after = status(49 << 30);
        steady_storage(&before, &mut after);
        assert_eq!(after.disks["default"].storage_available, 49 << 30);
    }
}
