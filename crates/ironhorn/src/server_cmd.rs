//! `ironhorn server` (a manager and a node agent in one process, state in an embedded
//! store) and `ironhorn node` (a node agent that registers with a manager elsewhere).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use ironhorn_api::client::{ApiClient, ClientError};
use ironhorn_api::manager_api;
use ironhorn_api::recurring::RecurringJobSpec;
use ironhorn_api::rest::RegisterNode;
use ironhorn_frontend::blockdev::BlockdevPaths;
use ironhorn_manager::api::register;
use ironhorn_manager::Manager;
use ironhorn_node::agent::Agent;
use ironhorn_node::preflight::Backend;
use ironhorn_store::{EtcdConfig, EtcdStore, EtcdTls, RedbStore, Store};
use tokio_util::sync::CancellationToken;

use crate::runtime::PollArgs;

/// The state store's file under the data directory.
const STATE_FILE: &str = "state.redb";

/// What the node's data path needs, for `server` and `node` alike.
#[derive(Debug, Args)]
pub struct DataPathArgs {
    /// Address replica servers and NBD exports listen on (default: the --listen host).
    #[arg(long)]
    pub data_address: Option<String>,
    /// Where block devices of volumes attached with the blockdev frontend appear, one
    /// symlink per volume.
    #[arg(long, env = "IRONHORN_DEVICE_DIR", default_value = "/dev/ironhorn")]
    pub device_dir: PathBuf,
    /// How block devices are made: auto (ublk where its driver can grow a live device,
    /// else the kernel NBD driver, else fuse-loop), ublk, nbd, or fuse-loop.
    #[arg(long, env = "IRONHORN_BLOCKDEV_BACKEND", default_value = "auto", value_parser = parse_backend)]
    pub blockdev_backend: BackendChoice,
    #[command(flatten)]
    pub poll: PollArgs,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Directory for the state store; it is also this node's default disk (replicas under
    /// DIR/replicas). Created if missing.
    #[arg(long, env = "IRONHORN_DATA_DIR", default_value = "/var/lib/ironhorn")]
    pub data_dir: PathBuf,
    /// API address (HOST:PORT). Loopback unless you put it elsewhere on purpose.
    #[arg(long, default_value = "127.0.0.1:9500")]
    pub listen: String,
    /// Where the control plane's state lives: `redb` (DATA_DIR/state.redb, the default) or
    /// etcd, `etcd://HOST:PORT[,HOST:PORT...]` (keys under /ironhorn/).
    #[arg(long, env = "IRONHORN_STORE", default_value = "redb", value_parser = parse_store)]
    pub store: StoreChoice,
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Run the manager only: the API and controllers, with node agents (`ironhorn node`)
    /// on the machines that hold data, as the Kubernetes manifest runs it.
    #[arg(long)]
    pub no_node: bool,
    /// Recurring jobs to create at start when they do not exist (YAML: a list of
    /// {name, task, cron, retain, concurrency, groups, labels}); the install manifest
    /// passes the seed's three. Jobs changed since through the API are left as they are.
    #[arg(long, env = "IRONHORN_RECURRING_JOBS")]
    pub recurring_jobs: Option<PathBuf>,
    /// Turn authentication off: every call is let through. Only with a loopback --listen
    /// (a single-user machine); node agents then need no cluster secret either.
    #[arg(long)]
    pub no_auth: bool,
    /// The cluster secret node agents and the CSI driver prove themselves with (a file
    /// holding it, as Kubernetes mounts a Secret); by default DATA_DIR/cluster.secret, made
    /// on first start.
    #[arg(long, env = "IRONHORN_CLUSTER_SECRET_FILE", conflicts_with = "no_auth")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Serve HTTPS (the API, the web UI and this node's API) with this certificate chain:
    /// a PEM file, leaf first. Clients trust it through the system's authorities or
    /// IRONHORN_CA_CERT.
    #[arg(long, env = "IRONHORN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "IRONHORN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub data_path: DataPathArgs,
}

/// Reads `--recurring-jobs`.
fn read_recurring_jobs(path: Option<&Path>) -> Result<Vec<RecurringJobSpec>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading recurring jobs from {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| {
        format!(
            "{}: expected a list of recurring jobs ({{name, task, cron, retain, concurrency, groups}})",
            path.display()
        )
    })
}

/// Where the server keeps the cluster secret and the first admin's token.
const CLUSTER_SECRET_FILE: &str = "cluster.secret";
const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Refuses turning authentication off anywhere but on loopback.
fn check_no_auth(listen: &str) -> Result<()> {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--no-auth is for a loopback --listen only (127.0.0.1:PORT); {listen} would let anyone who reaches it do anything");
    }
    Ok(())
}

/// The cluster secret in `dir`, made on first start.
fn cluster_secret(dir: &Path) -> Result<String> {
    let path = dir.join(CLUSTER_SECRET_FILE);
    if path.exists() {
        return crate::runtime::read_secret_file(&path);
    }
    let secret = ironhorn_auth::secret::new_secret()
        .map_err(|e| anyhow::anyhow!("no randomness for the cluster secret: {e}"))?;
    crate::runtime::write_secret_file(&path, &secret)?;
    Ok(secret)
}

/// TLS towards etcd members that serve HTTPS.
#[derive(Debug, Clone, Args)]
pub struct EtcdTlsArgs {
    /// CA certificate (PEM) that signed the etcd members' certificates: etcd is reached
    /// over HTTPS, and only members it vouches for are trusted.
    #[arg(long, env = "IRONHORN_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// This manager's client certificate (PEM), for an etcd that asks for one
    /// (--client-cert-auth).
    #[arg(long, env = "IRONHORN_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "IRONHORN_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
}

/// `--store`: the embedded file or an etcd cluster.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    Redb,
    Etcd(EtcdConfig),
}

fn parse_store(text: &str) -> Result<StoreChoice, String> {
    if text == "redb" {
        return Ok(StoreChoice::Redb);
    }
    EtcdConfig::from_url(text)
        .map(StoreChoice::Etcd)
        .map_err(|e| format!("{e} (or redb, the embedded default)"))
}

impl StoreChoice {
    fn is_embedded(&self) -> bool {
        matches!(self, StoreChoice::Redb)
    }

    /// Opens the store (redb's file in `dir`; etcd over TLS as `tls` says), on the runtime
    /// that will use it.
    async fn open(&self, dir: &Path, tls: &EtcdTlsArgs) -> Result<Arc<dyn Store>> {
        match self {
            StoreChoice::Redb => {
                let path = dir.join(STATE_FILE);
                let store = tokio::task::spawn_blocking(move || RedbStore::open(&path))
                    .await?
                    .with_context(|| format!("opening the state store in {}", dir.display()))?;
                Ok(Arc::new(store))
            }
            StoreChoice::Etcd(config) => {
                let mut config = config.clone();
                if let Some(ca) = &tls.etcd_ca {
                    config.tls = Some(EtcdTls {
                        ca: ca.clone(),
                        client_cert: tls.etcd_cert.clone(),
                        client_key: tls.etcd_key.clone(),
                    });
                } else if tls.etcd_cert.is_some() {
                    bail!("--etcd-cert needs --etcd-ca: the CA that signed the etcd members' certificates");
                }
                let store = EtcdStore::connect(config.clone()).await.with_context(|| {
                    format!(
                        "connecting to the state store etcd://{} (is etcd running and reachable?)",
                        config.endpoints.join(",")
                    )
                })?;
                Ok(Arc::new(store))
            }
        }
    }
}

/// A manager over `store`, its gate set: the cluster secret (None with --no-auth). It
/// names itself by `url` when it leads.
fn new_manager(
    store: Arc<dyn Store>,
    local_node: Option<String>,
    url: String,
    secret: Option<&str>,
    tls_cert: Option<&Path>,
) -> Manager {
    let mut client = ironhorn_manager::node_client::NodeClient::with_secret(secret);
    if let Some(cert) = tls_cert {
        client = client.trusting(cert);
    }
    let gate = ironhorn_manager::api::auth::Gate {
        secure_cookies: tls_cert.is_some(),
        open: secret.is_none(),
        cluster_secret: secret.map(str::to_string),
        ..Default::default()
    };
    Manager::with_setup(
        store,
        ironhorn_manager::Setup {
            local_node,
            identity: url,
            client,
            gate,
        },
    )
}

/// What a manager does before it serves: forget what nodes last said (alone on its
/// embedded store; with etcd, the statuses are the leader's, who keeps observing), give a
/// new cluster its first admin (a token in DATA_DIR/admin.token, readable by this user
/// only), create the configured recurring jobs.
async fn prepare_manager(
    manager: &Manager,
    embedded: bool,
    dir: &Path,
    jobs: Vec<RecurringJobSpec>,
) -> Result<()> {
    if embedded {
        ironhorn_manager::controller::forget_observations(manager)
            .await
            .map_err(|e| anyhow::anyhow!("reading the state store: {e}"))?;
    }
    if !manager.gate.open {
        let first = ironhorn_manager::users::bootstrap_admin(manager)
            .await
            .map_err(|e| anyhow::anyhow!("making the first admin: {e}"))?;
        let path = dir.join(ADMIN_TOKEN_FILE);
        if let Some(token) = first {
            crate::runtime::write_secret_file(&path, &token.token)?;
            eprintln!(
                "the first admin's API token is in {} (the CLI on this machine finds it; elsewhere set IRONHORN_TOKEN_FILE)",
                path.display()
            );
        }
    }
    let created = ironhorn_manager::api::recurring::create_missing_jobs(manager, jobs)
        .await
        .map_err(|e| anyhow::anyhow!("--recurring-jobs: {}", e.message))?;
    if !created.is_empty() {
        eprintln!("recurring jobs created: {}", created.join(", "));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The managers' URLs, comma-separated: the node registers with the first that answers
    /// and moves on to the next when it stops answering.
    #[arg(
        long,
        env = "IRONHORN_MANAGER",
        default_value = "http://127.0.0.1:9500"
    )]
    pub manager: String,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// This node's default disk (replicas under DIR/replicas). Created if missing.
    #[arg(long, default_value = "/var/lib/ironhorn")]
    pub data_dir: PathBuf,
    /// Node API address (HOST:PORT) the manager calls.
    #[arg(long, default_value = "127.0.0.1:9502")]
    pub listen: String,
    /// The cluster secret, shared with the manager (`ironhorn server` writes it to
    /// DATA_DIR/cluster.secret): the node proves itself to the manager with it, and answers
    /// only calls that carry it.
    #[arg(long, env = "IRONHORN_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// For a manager started with --no-auth: no cluster secret (loopback --listen only).
    #[arg(long, conflicts_with = "cluster_secret_file")]
    pub no_auth: bool,
    #[command(flatten)]
    pub data_path: DataPathArgs,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node-1".into())
}

/// The host data-path listeners bind to: given, or the API's host; it must be an address
/// other nodes can reach, so "any address" needs an explicit one.
fn data_host(listen: &str, given: Option<&str>) -> Result<String> {
    if let Some(host) = given {
        return Ok(host.to_string());
    }
    let host = listen
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(listen);
    if host == "0.0.0.0" || host == "::" || host.is_empty() {
        bail!("--listen {listen} listens on every address: say which one other nodes reach this node's data on with --data-address");
    }
    Ok(host.to_string())
}

/// `--blockdev-backend`: `auto` or a backend by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendChoice(Option<Backend>);

fn parse_backend(text: &str) -> Result<BackendChoice, String> {
    match text {
        "auto" => Ok(BackendChoice(None)),
        "fuse-loop" => Ok(BackendChoice(Some(Backend::FuseLoop))),
        "nbd" => Ok(BackendChoice(Some(Backend::Nbd))),
        "ublk" => Ok(BackendChoice(Some(Backend::Ublk))),
        other => Err(format!("{other:?}: auto, fuse-loop, nbd or ublk")),
    }
}

/// The node agent, serving block devices from `<data dir>/run/fuse` (cleaned of what an
/// earlier run left) into `device_dir`.
fn start_agent(
    name: &str,
    data_host: &str,
    data_dir: &Path,
    device_dir: &Path,
    backend: BackendChoice,
) -> Result<Agent> {
    let paths = BlockdevPaths {
        run_dir: data_dir.join("run").join("fuse"),
        dev_dir: device_dir.to_path_buf(),
    };
    Agent::with_blockdev(name, data_host, paths, backend.0).map_err(|e| anyhow::anyhow!("{e}"))
}

fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "creating the data directory {} (choose another with --data-dir)",
            dir.display()
        )
    })?;
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// Listens on `listen`; returns the listener and the address it got (the port may be 0).
async fn bind(listen: &str) -> Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?.to_string();
    Ok((listener, address))
}

/// Serves `app` until `shutdown`, then lets requests in flight finish.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: &CancellationToken,
) -> Result<()> {
    let stop = shutdown.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await })
    .await
    .context("serving HTTP")
}

/// The manager's listener: HTTPS when `tls` is given.
async fn serve_maybe_tls(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    shutdown: &CancellationToken,
) -> Result<()> {
    use axum::serve::ListenerExt;
    let Some(config) = tls else {
        return serve(listener, app, shutdown).await;
    };
    let stop = shutdown.clone();
    // tap_io does nothing; it makes the TLS listener's peer address the ConnectInfo.
    axum::serve(
        crate::tls::TlsListener::new(listener, config)?.tap_io(|_| {}),
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await })
    .await
    .context("serving HTTPS")
}

/// `--tls-cert` and `--tls-key` read, when given.
fn tls_config(args: &ServerArgs) -> Result<Option<Arc<rustls::ServerConfig>>> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::server_config(cert, key)?)),
        _ => Ok(None),
    }
}

pub fn server(args: ServerArgs) -> Result<()> {
    let dir = prepare_dir(&args.data_dir)?;
    let jobs = read_recurring_jobs(args.recurring_jobs.as_deref())?;
    let secret = if args.no_auth {
        check_no_auth(&args.listen)?;
        None
    } else if let Some(path) = &args.cluster_secret_file {
        Some(crate::runtime::read_secret_file(path)?)
    } else {
        Some(cluster_secret(&dir)?)
    };
    let tls = tls_config(&args)?;
    if args.no_node {
        return manager_only(&args, secret.as_deref(), &dir, jobs, tls);
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let node_name = args.node_name.clone().unwrap_or_else(host_name);
    let data_host = data_host(&args.listen, args.data_path.data_address.as_deref())?;
    args.data_path.poll.install();
    crate::runtime::run_until_signal(|shutdown| async move {
        let (listener, address) = bind(&args.listen).await?;
        let store = args.store.open(&dir, &args.etcd_tls).await?;
        let manager = Arc::new(new_manager(
            store,
            Some(node_name.clone()),
            format!("{scheme}://{address}"),
            secret.as_deref(),
            args.tls_cert.as_deref(),
        ));
        prepare_manager(&manager, args.store.is_embedded(), &dir, jobs).await?;
        // This node's API shares the listener: over HTTPS too when it is.
        let registration = RegisterNode {
            name: node_name.clone(),
            address: if tls.is_some() {
                format!("https://{address}")
            } else {
                address.clone()
            },
            default_disk_path: Some(dir.display().to_string()),
        };
        register(&manager, &registration)
            .await
            .map_err(|e| anyhow::anyhow!("registering this node: {e}"))?;
        // Keep this node's address right, whatever a client registers under its name.
        let (reregister, stop) = (manager.clone(), shutdown.clone());
        tokio::spawn(async move {
            while tokio::time::timeout(Duration::from_secs(10), stop.cancelled())
                .await
                .is_err()
            {
                if let Err(e) = register(&reregister, &registration).await {
                    eprintln!("registering this node again: {e}");
                }
            }
        });
        let agent = Arc::new(start_agent(
            &node_name,
            &data_host,
            &dir,
            &args.data_path.device_dir,
            args.data_path.blockdev_backend,
        )?);
        let app =
            ironhorn_manager::api::router(manager.clone()).merge(ironhorn_node::api::guarded(
                ironhorn_node::api::router(agent.clone()),
                secret.as_deref().map(Arc::from),
            ));
        let loops = ironhorn_manager::Loops::start(&manager, &shutdown);
        eprintln!(
            "ironhorn server: API at {scheme}://{address}, node {node_name}, data in {}",
            dir.display()
        );
        serve_maybe_tls(listener, tls, app, &shutdown).await?;
        loops.join().await;
        agent.shutdown().await;
        Ok(())
    })
}

/// `ironhorn server --no-node`: the API and the controllers, no data path here.
fn manager_only(
    args: &ServerArgs,
    secret: Option<&str>,
    dir: &Path,
    jobs: Vec<RecurringJobSpec>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<()> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    crate::runtime::run_until_signal(|shutdown| async move {
        let (listener, address) = bind(&args.listen).await?;
        let store = args.store.open(dir, &args.etcd_tls).await?;
        let manager = Arc::new(new_manager(
            store,
            None,
            format!("{scheme}://{address}"),
            secret,
            args.tls_cert.as_deref(),
        ));
        prepare_manager(&manager, args.store.is_embedded(), dir, jobs).await?;
        let app = ironhorn_manager::api::router(manager.clone());
        let loops = ironhorn_manager::Loops::start(&manager, &shutdown);
        eprintln!("ironhorn server: API at {scheme}://{address}, manager only (no node here)");
        serve_maybe_tls(listener, tls, app, &shutdown).await?;
        loops.join().await;
        Ok(())
    })
}

pub fn node(args: NodeArgs) -> Result<()> {
    let secret: Option<Arc<str>> = match (&args.cluster_secret_file, args.no_auth) {
        (Some(path), _) => Some(crate::runtime::read_secret_file(path)?.into()),
        (None, true) => {
            check_no_auth(&args.listen)?;
            None
        }
        (None, false) => bail!(
            "give the cluster secret: --cluster-secret-file (or IRONHORN_CLUSTER_SECRET_FILE) naming a copy of the server's DATA_DIR/cluster.secret"
        ),
    };
    if manager_urls(&args.manager).is_empty() {
        bail!("--manager names no manager: give URL[,URL...]");
    }
    let dir = prepare_dir(&args.data_dir)?;
    let name = args.name.clone().unwrap_or_else(host_name);
    let data_host = data_host(&args.listen, args.data_path.data_address.as_deref())?;
    args.data_path.poll.install();
    crate::runtime::run_until_signal(|shutdown| async move {
        let (listener, address) = bind(&args.listen).await?;
        let agent = Arc::new(start_agent(
            &name,
            &data_host,
            &dir,
            &args.data_path.device_dir,
            args.data_path.blockdev_backend,
        )?);
        let registration = RegisterNode {
            name: name.clone(),
            address: address.clone(),
            default_disk_path: Some(dir.display().to_string()),
        };
        let registering = tokio::spawn(keep_registered(
            manager_urls(&args.manager),
            registration,
            secret.clone(),
            shutdown.clone(),
        ));
        eprintln!(
            "ironhorn node {name}: node API at http://{address}, manager {}, data in {}",
            args.manager,
            dir.display()
        );
        let app = ironhorn_node::api::guarded(ironhorn_node::api::router(agent.clone()), secret);
        serve(listener, app, &shutdown).await?;
        registering.abort();
        agent.shutdown().await;
        Ok(())
    })
}

/// The managers named by `--manager` (`URL[,URL...]`).
fn manager_urls(text: &str) -> Vec<String> {
    text.split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

/// Registers with a manager, and again every few seconds (a manager that lost its state or
/// restarted learns of the node again; an address change is picked up). Any manager will
/// do: all share the state. One that does not answer is left for the next in the list.
async fn keep_registered(
    managers: Vec<String>,
    registration: RegisterNode,
    secret: Option<Arc<str>>,
    shutdown: CancellationToken,
) {
    let client = ApiClient::default().with_bearer(secret.as_deref());
    let mut current = 0;
    let mut registered = false;
    let mut unanswered = 0;
    loop {
        let Some(manager) = managers.get(current % managers.len().max(1)) else {
            return;
        };
        let pause = match client
            .call(manager, manager_api::register_node(&registration))
            .await
        {
            Ok(_) => {
                if !registered {
                    eprintln!("registered with the manager at {manager}");
                }
                registered = true;
                unanswered = 0;
                Duration::from_secs(10)
            }
            Err(e @ ClientError::Api { .. }) => {
                eprintln!("the manager at {manager} refused the registration: {e}");
                Duration::from_secs(10)
            }
            Err(e) => {
                if registered || unanswered == 0 {
                    eprintln!("the manager at {manager} does not answer: {e}");
                }
                registered = false;
                unanswered += 1;
                current += 1;
                // The next manager at once; a pause only once every one was tried.
                if unanswered % managers.len() == 0 {
                    Duration::from_secs(1)
                } else {
                    Duration::ZERO
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_node_is_given_its_managers_as_a_list() {
        assert_eq!(
            manager_urls("http://a:9500/, http://b:9500,,"),
            ["http://a:9500", "http://b:9500"]
        );
        assert!(manager_urls(" , ").is_empty());
    }

    #[test]
    fn authentication_goes_off_on_loopback_only() {
        for ok in [
            "127.0.0.1:9500",
            "localhost:9500",
            "[::1]:9500",
            "127.0.0.2:1",
        ] {
            assert!(check_no_auth(ok).is_ok(), "{ok}");
        }
        for refused in [
            "0.0.0.0:9500",
            "10.0.0.1:9500",
            "[::]:9500",
            "example.org:9500",
        ] {
            let e = check_no_auth(refused).unwrap_err().to_string();
            assert!(e.contains("loopback"), "{refused}: {e}");
        }
    }

    #[test]
    fn the_cluster_secret_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = cluster_secret(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(
            cluster_secret(dir.path()).unwrap(),
            first,
            "read back, not made again"
        );
        let mode = std::fs::metadata(dir.path().join(CLUSTER_SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
