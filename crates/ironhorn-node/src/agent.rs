//! The node agent: runs, in this process, the replica servers and engines the manager asks
//! for, and reports what runs and what its disks hold. It keeps no state of its own: after a
//! restart nothing runs until the manager asks again (the manager's controllers are
//! level-triggered, so they do).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ironhorn_engine::{
    BlockDevice, Engine, EngineError, EngineErrorKind, LocalReplicas, ReplicaSpec,
};
use ironhorn_frontend::blockdev::{
    self, Attached, BlockdevError, BlockdevErrorKind, BlockdevPaths, FuseLoop, KernelNbd,
    KernelUblk,
};
use ironhorn_frontend::nbd::{nbd_uri, serve as serve_nbd, Export};
use ironhorn_replica::{Replica, ReplicaOptions, SharedReplica};
use ironhorn_runtime::error::{BoxError, KindError};
use ironhorn_runtime::net::{Addr, Listener};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::disk;
use crate::preflight::{self, Backend};
use ironhorn_api::node::{
    BlockdevInstance, DiskReport, EngineInstance, EngineReplica, NodeReport, ObserveRequest,
    ReplicaInstance, StartEngine, StartReplica, TrimResult,
};

/// How often an engine pings its replicas (Longhorn: 2 s), so a replica that died while the
/// volume is idle is noticed.
const KEEPALIVE: Duration = Duration::from_secs(2);

/// A trim is over once no discard has arrived for this long after fstrim returned.
const TRIM_QUIET: Duration = Duration::from_secs(1);

/// What an [`AgentError`] means for the caller; the node API maps each to its status and
/// code (`api.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentErrorKind {
    /// No such replica, engine or snapshot on this node.
    NotFound,
    /// Turned down in the state things are in (in use, rebuilding, busy device).
    Refused,
    /// The request itself is wrong.
    Invalid,
    /// The node could not do it.
    Failed,
}

/// Why the node agent could not do what it was asked: the kind, what it was doing, and the
/// error underneath (the engine's, the block device's, an I/O error).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AgentError(KindError<AgentErrorKind>);

impl AgentError {
    pub fn new(kind: AgentErrorKind, context: impl Into<String>) -> Self {
        AgentError(KindError::new(kind, context))
    }

    /// For `map_err`: `context` went wrong because of the error given.
    pub fn by<E: Into<BoxError>>(
        kind: AgentErrorKind,
        context: impl Into<String>,
    ) -> impl FnOnce(E) -> Self {
        let error = KindError::by(kind, context);
        move |source| AgentError(error(source))
    }

    fn of(kind: AgentErrorKind, source: impl Into<BoxError>) -> Self {
        AgentError(KindError::of(kind, source))
    }

    pub fn kind(&self) -> AgentErrorKind {
        self.0.kind()
    }
}

impl From<BlockdevError> for AgentError {
    fn from(e: BlockdevError) -> Self {
        let kind = match e.kind() {
            BlockdevErrorKind::Busy | BlockdevErrorKind::Unavailable => AgentErrorKind::Refused,
            BlockdevErrorKind::Failed => AgentErrorKind::Failed,
        };
        AgentError::of(kind, e)
    }
}

impl From<EngineError> for AgentError {
    fn from(e: EngineError) -> Self {
        let kind = match e.kind() {
            EngineErrorKind::Refused => AgentErrorKind::Refused,
            EngineErrorKind::NoReplica | EngineErrorKind::Failed => AgentErrorKind::Failed,
        };
        AgentError::of(kind, e)
    }
}

/// A blocking task that did not finish (it panicked or the runtime is going down).
impl From<tokio::task::JoinError> for AgentError {
    fn from(e: tokio::task::JoinError) -> Self {
        AgentError::of(AgentErrorKind::Failed, e)
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
    /// `/dev/ironhorn/<volume>` with the blockdev frontend (behind a lock: its teardown
    /// blocks, so it runs on a blocking thread).
    blockdev: Option<SharedBlockdev>,
    frontend_name: String,
    endpoint: String,
    stop: CancellationToken,
    frontend: Option<JoinHandle<()>>,
    /// A stop is under way: the engine stays listed (and its replicas in use) until it ends.
    stopping: bool,
}

/// A volume's block device; `None` once torn down.
type SharedBlockdev = Arc<std::sync::Mutex<Option<Attached>>>;

/// Runs `work` on the block device from a blocking thread (its calls wait for the kernel).
async fn on_blockdev<T: Send + 'static>(
    device: &SharedBlockdev,
    work: impl FnOnce(&mut Option<Attached>) -> T + Send + 'static,
) -> Result<T, AgentError> {
    let device = device.clone();
    tokio::task::spawn_blocking(move || work(&mut device.lock().unwrap_or_else(|e| e.into_inner())))
        .await
        .map_err(AgentError::from)
}

/// How this node serves the blockdev frontend.
#[derive(Debug)]
struct BlockdevSupport {
    paths: BlockdevPaths,
    /// `None` when the kernel offers no backend this build implements.
    backend: Option<Backend>,
    /// Held while this process runs (see [`blockdev::fuse_loop::lock_run_dir`]).
    _lock: std::os::fd::OwnedFd,
}

/// One node's replica servers and engines.
pub struct Agent {
    name: String,
    /// The address data-path listeners bind to and advertise (replica servers, NBD).
    data_host: String,
    replicas: Mutex<BTreeMap<String, RunningReplica>>,
    /// The replica servers above, for this process's engines to reach directly.
    local_replicas: LocalReplicas,
    engines: Mutex<BTreeMap<String, RunningEngine>>,
    blockdev: Option<BlockdevSupport>,
    /// Backup and restore jobs running or finished here.
    pub jobs: crate::backup::Jobs,
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
        return Err(AgentError::new(
            AgentErrorKind::Invalid,
            format!(
                "{} is not a replica directory (<disk>/replicas/<name>)",
                dir.display()
            ),
        ));
    }
    let empty = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    if !empty && !dir.join("volume.meta").exists() {
        return Err(AgentError::new(
            AgentErrorKind::Refused,
            format!(
                "{} holds files but no volume.meta: not removing what is not a replica",
                dir.display()
            ),
        ));
    }
    Ok(())
}

impl Agent {
    /// An agent without the blockdev frontend.
    pub fn new(name: &str, data_host: &str) -> Agent {
        Agent {
            name: name.to_string(),
            data_host: data_host.to_string(),
            replicas: Mutex::new(BTreeMap::new()),
            local_replicas: LocalReplicas::new(),
            engines: Mutex::new(BTreeMap::new()),
            blockdev: None,
            jobs: crate::backup::Jobs::default(),
        }
    }

    /// An agent that serves the blockdev frontend from `paths`. Takes the run directory for
    /// this process and removes what an earlier run left there (blocks: call it before the
    /// runtime serves requests, or from a blocking thread).
    pub fn with_blockdev(
        name: &str,
        data_host: &str,
        paths: BlockdevPaths,
        forced: Option<Backend>,
    ) -> Result<Agent, AgentError> {
        let lock = blockdev::fuse_loop::lock_run_dir(&paths)?;
        for done in blockdev::cleanup_stale(&paths) {
            tracing::warn!(node = name, "cleanup at start: {done}");
        }
        let facts = preflight::gather(&paths.run_dir, None);
        let backend = match forced {
            None => preflight::backend(&facts),
            Some(Backend::FuseLoop) if facts.dev_fuse && facts.loop_control => {
                Some(Backend::FuseLoop)
            }
            Some(Backend::FuseLoop) => {
                return Err(AgentError::new(
                    AgentErrorKind::Invalid,
                    "the fuse-loop backend needs /dev/fuse and /dev/loop-control",
                ))
            }
            Some(Backend::Nbd) => {
                blockdev::kernel_nbd::available()?;
                Some(Backend::Nbd)
            }
            Some(Backend::Ublk) => {
                let features = blockdev::kernel_ublk::available()?;
                if !blockdev::kernel_ublk::can_resize(features) {
                    tracing::warn!(node = name, "block devices use the ublk backend, as asked; this kernel's ublk driver cannot resize a live device, so `volume expand` of an attached volume needs a detach and attach");
                }
                Some(Backend::Ublk)
            }
        };
        if let Some(backend) = backend {
            tracing::info!(node = name, ?backend, "block devices use this backend");
        }
        let mut agent = Agent::new(name, data_host);
        agent.blockdev = Some(BlockdevSupport {
            paths,
            backend,
            _lock: lock,
        });
        Ok(agent)
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
        let engines = self.engines().await;
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
            fencing: ironhorn_api::node::FENCING,
        })
        .await
        .unwrap_or_default()
    }

    /// Starts a replica server for `start.dir` unless one runs already.
    #[tracing::instrument(skip_all, fields(node = %self.name, replica = %name))]
    pub async fn start_replica(
        &self,
        name: &str,
        start: StartReplica,
    ) -> Result<ReplicaInstance, AgentError> {
        let dir = PathBuf::from(&start.dir);
        let mut replicas = self.replicas.lock().await;
        if let Some(running) = replicas.get(name) {
            if running.dir != dir {
                return Err(AgentError::new(
                    AgentErrorKind::Refused,
                    format!(
                        "replica {name} runs from {} already, not {}",
                        running.dir.display(),
                        dir.display()
                    ),
                ));
            }
            return Ok(ReplicaInstance {
                name: name.to_string(),
                dir: start.dir,
                address: running.address.clone(),
                actual_size: 0,
            });
        }
        if !dir.is_absolute() {
            return Err(AgentError::new(
                AgentErrorKind::Invalid,
                format!(
                    "replica directory {} is not an absolute path",
                    dir.display()
                ),
            ));
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
        .await?
        .map_err(AgentError::by(AgentErrorKind::Failed, format!("opening replica {}", dir.display())))?;
        let listener = Listener::bind(&Addr::Tcp(format!("{}:0", self.data_host)))
            .await
            .map_err(AgentError::by(
                AgentErrorKind::Failed,
                format!("listening on {} for a replica", self.data_host),
            ))?;
        let address = listener.local_addr().to_string();
        let shared = Arc::new(SharedReplica::new(replica));
        let stop = CancellationToken::new();
        let task = tokio::spawn(ironhorn_replica::server::serve(
            listener,
            shared.clone(),
            stop.clone(),
        ));
        // An engine of this process reaches it directly.
        self.local_replicas.register(&address, shared.clone());
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
    #[tracing::instrument(skip_all, fields(node = %self.name, replica = %name))]
    pub async fn stop_replica(&self, name: &str) -> Result<(), AgentError> {
        let Some(running) = self.replicas.lock().await.remove(name) else {
            return Ok(());
        };
        // An engine of this process that uses it directly fails it from now on, as one
        // connected over the network sees its connection close.
        self.local_replicas.unregister(&running.address);
        running.stop.cancel();
        let _ = running.task.await;
        let shared = running.shared;
        tokio::task::spawn_blocking(move || match Arc::try_unwrap(shared) {
            Ok(shared) => shared.into_inner().close(),
            Err(shared) => shared.flush(),
        })
        .await?
        .map_err(AgentError::by(
            AgentErrorKind::Failed,
            format!("closing replica {name}"),
        ))?;
        tracing::info!(replica = name, "replica server stopped");
        Ok(())
    }

    /// Stops a replica server and removes its directory.
    #[tracing::instrument(skip_all, fields(node = %self.name, replica = %name))]
    pub async fn delete_replica(&self, name: &str, dir: &str) -> Result<(), AgentError> {
        let dir = PathBuf::from(dir);
        check_deletable(&dir)?;
        self.stop_replica(name).await?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AgentError::new(
                    AgentErrorKind::Failed,
                    format!("removing {}: {e}", dir.display()),
                ))
            }
        }
        tracing::info!(replica = name, dir = %dir.display(), "replica removed");
        Ok(())
    }

    /// Starts the volume's engine and frontend unless it runs already.
    #[tracing::instrument(skip_all, fields(node = %self.name, volume = %volume))]
    pub async fn start_engine(
        &self,
        volume: &str,
        start: StartEngine,
    ) -> Result<EngineInstance, AgentError> {
        let mut engines = self.engines.lock().await;
        if let Some(running) = engines.get(volume) {
            return Ok(engine_instance(volume, running));
        }
        let blockdev_paths = match (start.maintenance, start.frontend.as_str()) {
            (true, _) | (false, "nbd") => None,
            (false, "blockdev") => Some(self.blockdev_paths()?),
            (false, other) => {
                return Err(AgentError::new(
                    AgentErrorKind::Invalid,
                    format!("unknown frontend {other:?}: nbd or blockdev"),
                ))
            }
        };
        let specs: Vec<ReplicaSpec> = start
            .replicas
            .iter()
            .map(|a| {
                a.parse::<ReplicaSpec>()
                    .map_err(|e| AgentError::new(AgentErrorKind::Invalid, e))
            })
            .collect::<Result<_, _>>()?;
        if specs.is_empty() {
            return Err(AgentError::new(
                AgentErrorKind::Invalid,
                format!("volume {volume}: an engine needs at least one replica"),
            ));
        }
        let engine = Engine::start_fenced(
            volume,
            start.size,
            &specs,
            Duration::from_secs(start.replica_timeout.max(1)),
            &self.local_replicas,
            ironhorn_engine::Fencing {
                generation: start.generation,
                quorum: if start.majority_quorum {
                    ironhorn_engine::WriteQuorum::Majority
                } else {
                    ironhorn_engine::WriteQuorum::One
                },
                min_claimed: start.min_claimed,
            },
        )
        .await?;
        let engine = Arc::new(engine);
        engine.spawn_keepalive(KEEPALIVE);
        let stop = CancellationToken::new();
        let mut running = RunningEngine {
            engine: engine.clone(),
            export: None,
            blockdev: None,
            frontend_name: if start.maintenance {
                String::new()
            } else {
                start.frontend.clone()
            },
            endpoint: String::new(),
            stop,
            frontend: None,
            stopping: false,
        };
        if let Some((paths, backend)) = blockdev_paths {
            let device: Arc<dyn BlockDevice> = engine.clone();
            let runtime = tokio::runtime::Handle::current();
            let name = volume.to_string();
            let size = start.size;
            let attached = tokio::task::spawn_blocking(move || match backend {
                Backend::FuseLoop => {
                    FuseLoop::attach(&paths, &name, device, runtime).map(Attached::FuseLoop)
                }
                Backend::Nbd => {
                    KernelNbd::attach(&paths, &name, device, size, runtime).map(Attached::Nbd)
                }
                Backend::Ublk => KernelUblk::attach(&paths, &name, device, size, runtime)
                    .map(|d| Attached::Ublk(Box::new(d))),
            })
            .await
            .map_err(AgentError::from)
            .and_then(|r| r.map_err(AgentError::from));
            match attached {
                Ok(attached) => {
                    running.endpoint = attached.device().link.display().to_string();
                    running.blockdev = Some(Arc::new(std::sync::Mutex::new(Some(attached))));
                }
                Err(e) => {
                    engine.shutdown().await;
                    return Err(e);
                }
            }
        } else if !start.maintenance {
            let export = Arc::new(Export::new(
                volume,
                &format!("volume {volume}"),
                engine.clone(),
            ));
            let listener = Listener::bind(&Addr::Tcp(format!("{}:0", self.data_host)))
                .await
                .map_err(AgentError::by(AgentErrorKind::Failed, "listening for NBD"))?;
            running.endpoint = nbd_uri(&listener.local_addr(), volume);
            running.frontend = Some(tokio::spawn(serve_nbd(
                listener,
                export.clone(),
                running.stop.clone(),
            )));
            running.export = Some(export);
        }
        tracing::info!(
            volume,
            endpoint = running.endpoint,
            maintenance = start.maintenance,
            "engine started"
        );
        let instance = engine_instance(volume, &running);
        engines.insert(volume.to_string(), running);
        Ok(instance)
    }

    /// The paths for the blockdev frontend, or why this node cannot serve it.
    fn blockdev_paths(&self) -> Result<(BlockdevPaths, Backend), AgentError> {
        match &self.blockdev {
            Some(BlockdevSupport {
                paths,
                backend: Some(backend),
                ..
            }) => Ok((paths.clone(), *backend)),
            Some(_) => Err(AgentError::new(AgentErrorKind::Refused, format!(
                "node {} offers no block device backend (it needs /dev/fuse and loop devices): run `ironhorn check` there, or attach with frontend nbd",
                self.name
            ))),
            None => Err(AgentError::new(AgentErrorKind::Refused, format!(
                "node {} runs without the blockdev frontend: attach with frontend nbd",
                self.name
            ))),
        }
    }

    /// Stops the volume's frontend (clients are disconnected after their in-flight requests;
    /// a block device is flushed and removed) and its engine (every replica flushed).
    /// Without `force`, a block device that is mounted is refused, and everything keeps
    /// running. Stopping one that does not run is not an error.
    #[tracing::instrument(skip_all, fields(node = %self.name, volume = %volume, force = force))]
    pub async fn stop_engine(&self, volume: &str, force: bool) -> Result<(), AgentError> {
        let mut engines = self.engines.lock().await;
        let Some(running) = engines.get_mut(volume) else {
            return Ok(());
        };
        if running.stopping {
            return Ok(());
        }
        if let (false, Some(device)) = (force, &running.blockdev) {
            if let Some(why) =
                on_blockdev(device, |d| d.as_ref().and_then(|d| d.device().busy())).await?
            {
                return Err(AgentError::new(AgentErrorKind::Refused, why));
            }
        }
        // The engine stays listed while it stops: until its last write is flushed, its
        // replicas must keep running, and the manager must see it does.
        running.stopping = true;
        running.stop.cancel();
        let frontend = running.frontend.take();
        let blockdev = running.blockdev.clone();
        let engine = running.engine.clone();
        drop(engines);
        if let Some(task) = frontend {
            let _ = task.await;
        }
        if let Some(device) = blockdev {
            let problems = on_blockdev(&device, |d| d.take().map(Attached::teardown))
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            for problem in problems {
                tracing::warn!(volume, "detaching the block device: {problem}");
            }
        }
        engine.shutdown().await;
        self.engines.lock().await.remove(volume);
        tracing::info!(volume, "engine stopped");
        Ok(())
    }

    /// Grows the volume; a block device takes the new size at once.
    #[tracing::instrument(skip_all, fields(node = %self.name, volume = %volume, size = size))]
    pub async fn expand(&self, volume: &str, size: u64) -> Result<(), AgentError> {
        let (engine, device) = {
            let engines = self.engines.lock().await;
            let running = engines
                .get(volume)
                .ok_or_else(|| self.not_attached(volume))?;
            (running.engine.clone(), running.blockdev.clone())
        };
        engine.expand(size).await?;
        if let Some(device) = device {
            on_blockdev(&device, move |d| d.as_ref().map(|d| d.refresh_size(size)))
                .await?
                .transpose()?;
        }
        Ok(())
    }

    /// Runs `fstrim` on the filesystem mounted from the volume's block device.
    #[tracing::instrument(skip_all, fields(node = %self.name, volume = %volume))]
    pub async fn trim(&self, volume: &str) -> Result<TrimResult, AgentError> {
        let device = {
            let engines = self.engines.lock().await;
            let running = engines
                .get(volume)
                .ok_or_else(|| self.not_attached(volume))?;
            running.blockdev.clone().ok_or_else(|| {
                AgentError::new(AgentErrorKind::Refused, format!(
                    "volume {volume} has no block device here (frontend {:?}): trim runs on a filesystem mounted from /dev/ironhorn/{volume}",
                    running.frontend_name
                ))
            })?
        };
        let volume = volume.to_string();
        on_blockdev(&device, move |d| {
            let points = d
                .as_ref()
                .map(|d| d.device().mount_points())
                .unwrap_or_default();
            let Some(point) = points.first() else {
                return Err(AgentError::new(AgentErrorKind::Refused, format!(
                    "volume {volume} is not mounted: mount /dev/ironhorn/{volume} first (trim works on a mounted filesystem)"
                )));
            };
            let zeroed_before = d.as_ref().map_or(0, Attached::zeroed_bytes);
            // Blocks freed by recent deletes stay busy (not trimmable) in xfs until its log
            // is written: sync first, so a trim right after a delete gives the space back.
            if let Err(e) = blockdev::kernel_device::sync_filesystem(point) {
                tracing::warn!(volume, "before trim: {e}");
            }
            let output = std::process::Command::new("fstrim")
                .arg("-v")
                .arg(point)
                .output()
                .map_err(AgentError::by(AgentErrorKind::Failed, "running fstrim (install util-linux)"))?;
            // The filesystem may answer before its discards have reached the volume (xfs
            // sends them on after FITRIM returns): wait until they stop arriving.
            let settled = d.as_ref().is_some_and(|device| {
                device.wait_discards_settled(TRIM_QUIET, Duration::from_secs(300))
            });
            if !settled {
                tracing::warn!(volume, "discards were still arriving 300 s after fstrim");
            }
            let discarded = d
                .as_ref()
                .map_or(0, |d| d.zeroed_bytes().saturating_sub(zeroed_before));
            let text = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                return Err(AgentError::new(AgentErrorKind::Failed, format!(
                    "fstrim {}: {}",
                    point.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            Ok(TrimResult {
                mount_point: point.display().to_string(),
                trimmed_bytes: parse_fstrim(&text).unwrap_or(0),
                discarded_bytes: discarded,
            })
        })
        .await?
    }

    fn not_attached(&self, volume: &str) -> AgentError {
        AgentError::new(
            AgentErrorKind::NotFound,
            format!(
                "volume {volume} has no engine on node {}: attach it first",
                self.name
            ),
        )
    }

    /// Every engine running here.
    pub async fn engines(&self) -> Vec<EngineInstance> {
        let engines = self.engines.lock().await;
        engines
            .iter()
            .map(|(volume, running)| engine_instance(volume, running))
            .collect()
    }

    /// The volume's engine as it runs now, with its block device's current mount points.
    pub async fn engine_report(&self, volume: &str) -> Result<EngineInstance, AgentError> {
        let engines = self.engines.lock().await;
        let running = engines
            .get(volume)
            .ok_or_else(|| self.not_attached(volume))?;
        Ok(engine_instance(volume, running))
    }

    /// The running engine of `volume`, for snapshot, rebuild and expand requests.
    pub async fn engine(&self, volume: &str) -> Result<(Arc<Engine>, usize), AgentError> {
        let engines = self.engines.lock().await;
        let running = engines
            .get(volume)
            .ok_or_else(|| self.not_attached(volume))?;
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
            // The process is going: a mounted block device could not be served anyway.
            if let Err(e) = self.stop_engine(&volume, true).await {
                tracing::warn!(volume, error = %e, "stopping an engine at shutdown");
            }
        }
        let names: Vec<String> = self.replicas.lock().await.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.stop_replica(&name).await {
                tracing::warn!(replica = name, error = %e, "closing a replica at shutdown");
            }
        }
    }
}

/// What any host of an engine reports of it: the volume, its size, rebuild progress and the
/// replicas' modes; the frontend's fields are the host's to fill in.
pub fn engine_view(volume: &str, engine: &Engine, connections: usize) -> EngineInstance {
    let (rebuild_copied, rebuild_total) = engine.rebuild_progress();
    EngineInstance {
        volume: volume.to_string(),
        size: BlockDevice::size(engine),
        endpoint: String::new(),
        maintenance: false,
        rebuilding: engine.rebuild_running(),
        rebuild_copied,
        rebuild_total,
        connections,
        replicas: engine
            .status()
            .into_iter()
            .map(|s| EngineReplica {
                address: s.address,
                mode: format!("{:?}", s.mode),
                reason: s.reason,
            })
            .collect(),
        frontend: String::new(),
        blockdev: None,
        generation: engine.generation(),
        fenced: engine.fenced().unwrap_or_default(),
    }
}

fn engine_instance(volume: &str, running: &RunningEngine) -> EngineInstance {
    let connections = running
        .export
        .as_ref()
        .map_or(0, |e| e.connections.load(Ordering::SeqCst));
    EngineInstance {
        endpoint: running.endpoint.clone(),
        maintenance: running.frontend_name.is_empty(),
        frontend: running.frontend_name.clone(),
        blockdev: running.blockdev.as_ref().and_then(|device| {
            // try_lock: a teardown in progress holds it, and a report must not wait.
            let guard = device.try_lock().ok()?;
            let attached = guard.as_ref()?;
            Some(BlockdevInstance {
                backend: attached.backend().to_string(),
                device: attached.device().link.display().to_string(),
                kernel_device: attached.device().path.display().to_string(),
                mount_points: attached
                    .device()
                    .mount_points()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            })
        }),
        ..engine_view(volume, &running.engine, connections)
    }
}

/// The byte count in `fstrim -v`'s line (`/mnt: 1 GiB (1073741824 bytes) trimmed`).
pub fn parse_fstrim(output: &str) -> Option<u64> {
    let (_, after) = output.rsplit_once('(')?;
    after.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstrims_byte_count_is_read() {
        assert_eq!(
            parse_fstrim("/mnt/x: 1 GiB (1073741824 bytes) trimmed\n"),
            Some(1_073_741_824)
        );
        assert_eq!(parse_fstrim("/mnt/a (b): 0 B (0 bytes) trimmed"), Some(0));
        assert_eq!(parse_fstrim("fstrim: nothing"), None);
    }

    #[test]
    fn only_replica_directories_may_be_deleted() {
        let disk = tempfile::tempdir().expect("tempdir");
        let replicas = disk.path().join("replicas");
        std::fs::create_dir_all(replicas.join("vol-0a1b2c3d")).expect("mkdir");
        assert!(check_deletable(&replicas.join("vol-0a1b2c3d")).is_ok());
        assert!(check_deletable(&replicas.join("missing-0a1b2c3d")).is_ok());
        let kind = |dir: &Path| check_deletable(dir).map_err(|e| e.kind());
        assert_eq!(kind(disk.path()), Err(AgentErrorKind::Invalid));
        assert_eq!(kind(Path::new("replicas/x")), Err(AgentErrorKind::Invalid));
        let other = replicas.join("notes");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::fs::write(other.join("todo.txt"), b"keep me").expect("write");
        assert_eq!(kind(&other), Err(AgentErrorKind::Refused));
    }
}
