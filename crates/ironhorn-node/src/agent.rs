//! The node agent: runs, in this process, the replica servers and engines the manager asks
//! for, and reports what runs and what its disks hold. It keeps no state of its own: after a
//! restart nothing runs until the manager asks again (the manager's controllers are
//! level-triggered, so they do).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ironhorn_engine::{Engine, EngineError, ReplicaSpec};
use ironhorn_frontend::nbd::{nbd_uri, serve as serve_nbd, Export};
use ironhorn_replica::net::{Addr, Listener};
use ironhorn_replica::{Replica, ReplicaOptions, SharedReplica};
use thiserror::Error;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::disk;
use crate::wire::{
    DiskReport, EngineInstance, EngineReplica, NodeReport, ObserveRequest, ReplicaInstance,
    StartEngine, StartReplica,
};

/// How often an engine pings its replicas (Longhorn: 2 s), so a replica that died while the
/// volume is idle is noticed.
const KEEPALIVE: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

impl From<EngineError> for AgentError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Refused(m) => AgentError::Refused(m),
            other => AgentError::Failed(other.to_string()),
        }
    }
}

struct RunningReplica {
    dir: PathBuf,
    address: String,
    shared: Arc<SharedReplica>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct RunningEngine {
    engine: Arc<Engine>,
    export: Option<Arc<Export>>,
    endpoint: String,
    stop: CancellationToken,
    frontend: Option<JoinHandle<()>>,
}

/// One node's replica servers and engines.
pub struct Agent {
    name: String,
    /// The address data-path listeners bind to and advertise (replica servers, NBD).
    data_host: String,
    replicas: Mutex<BTreeMap<String, RunningReplica>>,
    engines: Mutex<BTreeMap<String, RunningEngine>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("name", &self.name).finish()
    }
}

/// Bytes the files directly in `dir` occupy.
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// Probes a disk and lists its replica directories.
pub fn probe_disk(path: &str) -> DiskReport {
    let mut report = DiskReport {
        path: path.to_string(),
        ..DiskReport::default()
    };
    match disk::probe(Path::new(path)) {
        Ok(p) => {
            report.disk_uuid = p.uuid;
            report.storage_maximum = p.storage_maximum;
            report.storage_available = p.storage_available;
            if let Ok(entries) = std::fs::read_dir(Path::new(path).join(disk::REPLICAS_DIR)) {
                // Only what holds a replica counts: anything else there is left alone.
                report.replica_directories = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("volume.meta").is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect();
                report.replica_directories.sort();
            }
        }
        Err(e) => report.error = e.to_string(),
    }
    report
}

/// A replica directory the agent may delete: `<disk>/replicas/<name>` holding a replica (or
/// nothing). Anything else is refused, so a wrong path can never remove other data.
fn check_deletable(dir: &Path) -> Result<(), AgentError> {
    let under_replicas = dir
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == disk::REPLICAS_DIR);
    if !dir.is_absolute() || !under_replicas {
        return Err(AgentError::Invalid(format!(
            "{} is not a replica directory (<disk>/replicas/<name>)",
            dir.display()
        )));
    }
    let empty = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    if !empty && !dir.join("volume.meta").exists() {
        return Err(AgentError::Refused(format!(
            "{} holds files but no volume.meta: not removing what is not a replica",
            dir.display()
        )));
    }
    Ok(())
}

impl Agent {
    pub fn new(name: &str, data_host: &str) -> Agent {
        Agent {
            name: name.to_string(),
            data_host: data_host.to_string(),
            replicas: Mutex::new(BTreeMap::new()),
            engines: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What runs here, and the configured disks as they are now.
    pub async fn observe(&self, request: ObserveRequest) -> NodeReport {
        let replicas: Vec<(String, PathBuf, String)> = self
            .replicas
            .lock()
            .await
            .iter()
            .map(|(name, r)| (name.clone(), r.dir.clone(), r.address.clone()))
            .collect();
        let engines: Vec<EngineInstance> = self
            .engines
            .lock()
            .await
            .iter()
            .map(|(volume, e)| engine_instance(volume, e))
            .collect();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || NodeReport {
            name,
            disks: request
                .disks
                .iter()
                .map(|(name, path)| (name.clone(), probe_disk(path)))
                .collect(),
            replicas: replicas
                .into_iter()
                .map(|(name, dir, address)| ReplicaInstance {
                    name,
                    actual_size: allocated_bytes(&dir),
                    dir: dir.display().to_string(),
                    address,
                })
                .collect(),
            engines,
        })
        .await
        .unwrap_or_default()
    }

    /// Starts a replica server for `start.dir` unless one runs already.
    pub async fn start_replica(
        &self,
        name: &str,
        start: StartReplica,
    ) -> Result<ReplicaInstance, AgentError> {
        let dir = PathBuf::from(&start.dir);
        let mut replicas = self.replicas.lock().await;
        if let Some(running) = replicas.get(name) {
            if running.dir != dir {
                return Err(AgentError::Refused(format!(
                    "replica {name} runs from {} already, not {}",
                    running.dir.display(),
                    dir.display()
                )));
            }
            return Ok(ReplicaInstance {
                name: name.to_string(),
                dir: start.dir,
                address: running.address.clone(),
                actual_size: 0,
            });
        }
        if !dir.is_absolute() {
            return Err(AgentError::Invalid(format!(
                "replica directory {} is not an absolute path",
                dir.display()
            )));
        }
        let open_dir = dir.clone();
        let size = start.size;
        let replica = tokio::task::spawn_blocking(move || {
            if open_dir.join("volume.meta").exists() {
                let r = Replica::open(&open_dir, &ReplicaOptions::default())?;
                if r.size() != size {
                    tracing::warn!(dir = %open_dir.display(), found = r.size(), wanted = size, "replica size differs from the volume's; the engine decides");
                }
                Ok(r)
            } else {
                std::fs::create_dir_all(&open_dir).map_err(|e| {
                    ironhorn_replica::ReplicaError::Io {
                        op: "creating the replica directory",
                        path: open_dir.clone(),
                        source: e,
                    }
                })?;
                Replica::create(&open_dir, size)
            }
        })
        .await
        .map_err(|e| AgentError::Failed(e.to_string()))?
        .map_err(|e| AgentError::Failed(format!("opening replica {}: {e}", dir.display())))?;
        let listener = Listener::bind(&Addr::Tcp(format!("{}:0", self.data_host)))
            .await
            .map_err(|e| {
                AgentError::Failed(format!(
                    "listening on {} for a replica: {e}",
                    self.data_host
                ))
            })?;
        let address = listener.local_addr().to_string();
        let shared = Arc::new(SharedReplica::new(replica));
        let stop = CancellationToken::new();
        let task = tokio::spawn(ironhorn_replica::server::serve(
            listener,
            shared.clone(),
            stop.clone(),
        ));
        tracing::info!(replica = name, dir = %dir.display(), %address, "replica server started");
        replicas.insert(
            name.to_string(),
            RunningReplica {
                dir,
                address: address.clone(),
                shared,
                stop,
                task,
            },
        );
        Ok(ReplicaInstance {
            name: name.to_string(),
            dir: start.dir,
            address,
            actual_size: 0,
        })
    }

    /// Stops a replica server and closes its replica cleanly. Stopping one that does not run
    /// is not an error.
    pub async fn stop_replica(&self, name: &str) -> Result<(), AgentError> {
        let Some(running) = self.replicas.lock().await.remove(name) else {
            return Ok(());
        };
        running.stop.cancel();
        let _ = running.task.await;
        let shared = running.shared;
        tokio::task::spawn_blocking(move || match Arc::try_unwrap(shared) {
            Ok(shared) => shared.into_inner().close(),
            Err(shared) => shared.flush(),
        })
        .await
        .map_err(|e| AgentError::Failed(e.to_string()))?
        .map_err(|e| AgentError::Failed(format!("closing replica {name}: {e}")))?;
        tracing::info!(replica = name, "replica server stopped");
        Ok(())
    }

    /// Stops a replica server and removes its directory.
    pub async fn delete_replica(&self, name: &str, dir: &str) -> Result<(), AgentError> {
        let dir = PathBuf::from(dir);
        check_deletable(&dir)?;
        self.stop_replica(name).await?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AgentError::Failed(format!(
                    "removing {}: {e}",
                    dir.display()
                )))
            }
        }
        tracing::info!(replica = name, dir = %dir.display(), "replica removed");
        Ok(())
    }

    /// Starts the volume's engine and frontend unless it runs already.
    pub async fn start_engine(
        &self,
        volume: &str,
        start: StartEngine,
    ) -> Result<EngineInstance, AgentError> {
        let mut engines = self.engines.lock().await;
        if let Some(running) = engines.get(volume) {
            return Ok(engine_instance(volume, running));
        }
        if !start.maintenance && start.frontend != "nbd" {
            return Err(AgentError::Refused(format!(
                "frontend {:?} is not available on this node yet: attach with frontend nbd, or in maintenance mode",
                start.frontend
            )));
        }
        let specs: Vec<ReplicaSpec> = start
            .replicas
            .iter()
            .map(|a| a.parse::<ReplicaSpec>().map_err(AgentError::Invalid))
            .collect::<Result<_, _>>()?;
        if specs.is_empty() {
            return Err(AgentError::Invalid(format!(
                "volume {volume}: an engine needs at least one replica"
            )));
        }
        let engine = Engine::start(
            volume,
            start.size,
            &specs,
            Duration::from_secs(start.replica_timeout.max(1)),
        )
        .await?;
        let engine = Arc::new(engine);
        engine.spawn_keepalive(KEEPALIVE);
        let stop = CancellationToken::new();
        let (export, endpoint, frontend) = if start.maintenance {
            (None, String::new(), None)
        } else {
            let export = Arc::new(Export::new(
                volume,
                &format!("volume {volume}"),
                engine.clone(),
            ));
            let listener = Listener::bind(&Addr::Tcp(format!("{}:0", self.data_host)))
                .await
                .map_err(|e| AgentError::Failed(format!("listening for NBD: {e}")))?;
            let endpoint = nbd_uri(&listener.local_addr(), volume);
            let task = tokio::spawn(serve_nbd(listener, export.clone(), stop.clone()));
            (Some(export), endpoint, Some(task))
        };
        tracing::info!(volume, %endpoint, maintenance = start.maintenance, "engine started");
        let running = RunningEngine {
            engine,
            export,
            endpoint,
            stop,
            frontend,
        };
        let instance = engine_instance(volume, &running);
        engines.insert(volume.to_string(), running);
        Ok(instance)
    }

    /// Stops the volume's frontend (clients are disconnected after their in-flight requests)
    /// and its engine (every replica flushed). Stopping one that does not run is not an error.
    pub async fn stop_engine(&self, volume: &str) {
        let Some(running) = self.engines.lock().await.remove(volume) else {
            return;
        };
        running.stop.cancel();
        if let Some(task) = running.frontend {
            let _ = task.await;
        }
        running.engine.shutdown().await;
        tracing::info!(volume, "engine stopped");
    }

    /// The running engine of `volume`, for snapshot, rebuild and expand requests.
    pub async fn engine(&self, volume: &str) -> Result<(Arc<Engine>, usize), AgentError> {
        let engines = self.engines.lock().await;
        let running = engines.get(volume).ok_or_else(|| {
            AgentError::NotFound(format!(
                "volume {volume} has no engine on node {}: attach it first",
                self.name
            ))
        })?;
        let clients = running
            .export
            .as_ref()
            .map_or(0, |e| e.connections.load(Ordering::SeqCst));
        Ok((running.engine.clone(), clients))
    }

    /// Stops every engine, then every replica server.
    pub async fn shutdown(&self) {
        let volumes: Vec<String> = self.engines.lock().await.keys().cloned().collect();
        for volume in volumes {
            self.stop_engine(&volume).await;
        }
        let names: Vec<String> = self.replicas.lock().await.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.stop_replica(&name).await {
                tracing::warn!(replica = name, error = %e, "closing a replica at shutdown");
            }
        }
    }
}

fn engine_instance(volume: &str, running: &RunningEngine) -> EngineInstance {
    let (rebuild_copied, rebuild_total) = running.engine.rebuild_progress();
    EngineInstance {
        volume: volume.to_string(),
        size: ironhorn_engine::BlockDevice::size(running.engine.as_ref()),
        endpoint: running.endpoint.clone(),
        maintenance: running.export.is_none(),
        rebuilding: running.engine.rebuild_running(),
        rebuild_copied,
        rebuild_total,
        connections: running
            .export
            .as_ref()
            .map_or(0, |e| e.connections.load(Ordering::SeqCst)),
        replicas: running
            .engine
            .status()
            .into_iter()
            .map(|s| EngineReplica {
                address: s.address,
                mode: format!("{:?}", s.mode),
                reason: s.reason,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_replica_directories_may_be_deleted() {
        let disk = tempfile::tempdir().expect("tempdir");
        let replicas = disk.path().join("replicas");
        std::fs::create_dir_all(replicas.join("vol-0a1b2c3d")).expect("mkdir");
        assert!(check_deletable(&replicas.join("vol-0a1b2c3d")).is_ok());
        assert!(check_deletable(&replicas.join("missing-0a1b2c3d")).is_ok());
        assert!(matches!(
            check_deletable(disk.path()),
            Err(AgentError::Invalid(_))
        ));
        assert!(matches!(
            check_deletable(Path::new("replicas/x")),
            Err(AgentError::Invalid(_))
        ));
        let other = replicas.join("notes");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::fs::write(other.join("todo.txt"), b"keep me").expect("write");
        assert!(matches!(
            check_deletable(&other),
            Err(AgentError::Refused(_))
        ));
    }
}
