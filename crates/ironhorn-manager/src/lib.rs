//! The manager: the REST API under `/v1` ([`api`]), the controllers that drive node agents
//! towards what the resources say ([`controller`], deciding in [`plan`]), and typed access
//! to the state store ([`state`]). `ironhorn server` runs it with a node agent in one
//! process; `ironhorn node` agents on other machines register with it.

pub mod api;
pub mod audit;
pub mod backups;
mod clock;
pub mod clones;
pub mod controller;
pub mod error;
pub mod metrics;
pub mod node_client;
pub mod orphans;
pub mod plan;
pub mod recurring;
pub mod state;
mod ui;
pub mod users;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironhorn_api::node::NodeReport;
use ironhorn_store::Store;
use tokio::sync::Notify;

use crate::node_client::NodeClient;

/// Rebuilds the controller started and has not seen finish.
#[derive(Debug, Default)]
pub(crate) struct Rebuilds {
    /// Volume → node of the replica being rebuilt.
    pub running: BTreeMap<String, String>,
    /// Replica → when its last rebuild failed.
    pub failed: BTreeMap<String, Instant>,
}

/// The manager: the store it acts through and what it shares with its other views (see
/// [`Manager::for_term`]).
pub struct Manager {
    /// The API's store. The controllers' is the leader term's, fenced on it.
    pub store: Arc<dyn Store>,
    core: Arc<Core>,
}

/// What every view of one manager shares: a client for node agents, and what the
/// controllers saw.
pub struct Core {
    pub client: NodeClient,
    /// Pokes the controllers (after an API change).
    pub wake: Notify,
    /// The node in this process (`ironhorn server`): where volumes attach by default.
    pub local_node: Option<String>,
    /// Who this manager is, as the other managers see it when it leads (its API URL).
    pub identity: String,
    /// The number of the term this manager leads, 0 when it does not.
    pub leading: AtomicU64,
    reports: Mutex<BTreeMap<String, NodeReport>>,
    /// Directories removed since, and when: a report taken before a removal still shows it.
    removed: Mutex<Vec<(String, String, String, Instant)>>,
    rebuilds: Mutex<Rebuilds>,
    pub(crate) parsed_volumes: state::ParseCache<ironhorn_api::resource::Volume>,
    pub(crate) parsed_replicas: state::ParseCache<ironhorn_api::resource::Replica>,
    /// Backup targets, their listing cache and the backup jobs under way.
    pub backups: backups::Backups,
    /// The recurring-job runner's view: runs under way and counted.
    pub recurring: recurring::Recurring,
    /// Who may call: the cluster secret, failed logins, whether authentication is off.
    pub gate: api::auth::Gate,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("identity", &self.identity)
            .field("leading", &self.leading)
            .finish()
    }
}

impl std::ops::Deref for Manager {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("local_node", &self.local_node)
            .field("identity", &self.identity)
            .finish()
    }
}

/// How a manager is set up beyond its store.
#[derive(Debug, Default)]
pub struct Setup {
    pub local_node: Option<String>,
    pub identity: String,
    pub client: NodeClient,
    pub gate: api::auth::Gate,
}

impl Manager {
    pub fn new(store: Arc<dyn Store>, local_node: Option<String>) -> Manager {
        Manager::with_setup(
            store,
            Setup {
                local_node,
                ..Setup::default()
            },
        )
    }

    pub fn with_setup(store: Arc<dyn Store>, setup: Setup) -> Manager {
        Manager {
            store,
            core: Arc::new(Core {
                client: setup.client,
                wake: Notify::new(),
                local_node: setup.local_node,
                identity: setup.identity,
                leading: AtomicU64::new(0),
                reports: Mutex::new(BTreeMap::new()),
                removed: Mutex::new(Vec::new()),
                rebuilds: Mutex::new(Rebuilds::default()),
                parsed_volumes: Default::default(),
                parsed_replicas: Default::default(),
                backups: Default::default(),
                recurring: Default::default(),
                gate: setup.gate,
            }),
        }
    }

    /// This manager acting through a leader term's store: what its controllers use, so
    /// every write they make fails once the term has ended.
    pub fn for_term(&self, store: Arc<dyn Store>) -> Manager {
        Manager {
            store,
            core: self.core.clone(),
        }
    }

    /// What the nodes reported in the last controller round.
    pub fn reports(&self) -> BTreeMap<String, NodeReport> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the reports of a round whose observation started at `taken`; directories
    /// removed after that are left out of them.
    pub(crate) fn set_reports(&self, mut reports: BTreeMap<String, NodeReport>, taken: Instant) {
        let mut removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        removed.retain(|(.., at)| *at >= taken);
        for (node, disk, dir, _) in removed.iter() {
            if let Some(d) = reports.get_mut(node).and_then(|r| r.disks.get_mut(disk)) {
                d.replica_directories.retain(|x| x != dir);
            }
        }
        *self.reports.lock().unwrap_or_else(|e| e.into_inner()) = reports;
    }

    /// Drops a removed directory from the reports, this round's and the one under way.
    pub(crate) fn forget_directory(&self, node: &str, disk: &str, dir: &str) {
        self.removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((
                node.to_string(),
                disk.to_string(),
                dir.to_string(),
                Instant::now(),
            ));
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(disk) = reports.get_mut(node).and_then(|r| r.disks.get_mut(disk)) {
            disk.replica_directories.retain(|d| d != dir);
        }
    }

    pub(crate) fn rebuilds(&self) -> std::sync::MutexGuard<'_, Rebuilds> {
        self.rebuilds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Locks `m`, also after a thread panicked holding it (what it guards stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The manager's background loops: the controllers, the backup targets' polling and the
/// recurring-job runner, run by the leader only. Every manager campaigns; the one elected
/// runs them through its term's store until the term ends, then campaigns again.
#[derive(Debug)]
pub struct Loops(tokio::task::JoinHandle<()>);

impl Loops {
    /// Starts campaigning; everything stops at `shutdown` (and a leader resigns).
    pub fn start(manager: &Arc<Manager>, shutdown: &tokio_util::sync::CancellationToken) -> Loops {
        Loops(tokio::spawn(lead(manager.clone(), shutdown.clone())))
    }

    /// Waits until they stopped.
    pub async fn join(self) {
        let _ = self.0.await;
    }
}

/// Campaigns, leads while elected, and campaigns again, until `shutdown`.
async fn lead(manager: Arc<Manager>, shutdown: tokio_util::sync::CancellationToken) {
    let mut failed_campaigns: u64 = 0;
    loop {
        let campaign = tokio::select! {
            _ = shutdown.cancelled() => return,
            term = manager.store.campaign(&manager.identity) => term,
        };
        let term = match campaign {
            Ok(term) => {
                failed_campaigns = 0;
                term
            }
            Err(e) => {
                // Said at once, then once a minute while the store stays out of reach.
                if failed_campaigns % 60 == 0 {
                    tracing::warn!(error = %e, "campaigning to lead the controllers; trying again every second");
                }
                failed_campaigns += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        tracing::info!(
            term = term.number,
            "leading: the controllers run in this manager"
        );
        manager.leading.store(term.number, Ordering::Relaxed);
        let acting = Arc::new(manager.for_term(term.store.clone()));
        let stop = shutdown.child_token();
        let handles = [
            tokio::spawn(controller::run(acting.clone(), stop.clone())),
            tokio::spawn(backups::run(acting.clone(), stop.clone())),
            tokio::spawn(recurring::run(acting, stop.clone())),
        ];
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = term.ended.cancelled() => stop.cancel(),
        }
        // Said at once: the controllers may take a moment to stop, but they act no more.
        manager.leading.store(0, Ordering::Relaxed);
        for handle in handles {
            let _ = handle.await;
        }
        if shutdown.is_cancelled() {
            if let Err(e) = term.resign().await {
                tracing::warn!(error = %e, "resigning as leader (the lease expires by itself)");
            }
            return;
        }
        tracing::warn!(
            term = term.number,
            "no longer leading: another manager runs the controllers"
        );
    }
}
