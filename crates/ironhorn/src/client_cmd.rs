//! The CLI's resource commands (`volume`, `node`, `setting`): clients of the REST API.
//! Output as a table (default), JSON or YAML; sizes in human units; exit codes say what
//! kind of failure it was (see [`Failure::exit_code`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use ironhorn_control::resource::{wire_name, Frontend, Node, Volume, VolumeState};
use ironhorn_node::wire::path_segment;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::units::{human_size, parse_size};

/// `println!` that does not panic when the reader went away (`| head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that does not panic when the reader went away.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// Exit codes of client commands.
pub mod exit {
    /// Something else failed (the message says what).
    pub const FAILED: u8 = 1;
    /// Bad arguments or a request the server found invalid.
    pub const INVALID: u8 = 2;
    /// No such volume, node, disk, snapshot or setting.
    pub const NOT_FOUND: u8 = 3;
    /// The request conflicts with the current state (exists already, attached elsewhere...).
    pub const CONFLICT: u8 = 4;
    /// The server could not be reached.
    pub const UNREACHABLE: u8 = 5;
    /// `--wait` gave up before the state was reached.
    pub const TIMEOUT: u8 = 6;
}

/// A failed client command.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, Failure>;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// The Ironhorn API.
    #[arg(
        long,
        global = true,
        env = "IRONHORN_URL",
        default_value = "http://127.0.0.1:9500"
    )]
    pub server: String,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Clone, Args)]
pub struct WaitOpts {
    /// Wait until the change is done.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = crate::runtime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct VolumeCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Args)]
pub struct SettingCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: SettingCommand,
}

/// `ironhorn node`: client subcommands, or (with none) the node agent.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodeCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
    #[command(flatten)]
    pub agent: Box<crate::server_cmd::NodeArgs>,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create {
        name: String,
        /// Size, e.g. 10Gi.
        #[arg(long)]
        size: String,
        /// Number of replicas (default: the default-replica-count setting).
        #[arg(long)]
        replicas: Option<u32>,
        /// nbd or blockdev.
        #[arg(long)]
        frontend: Option<String>,
        /// Minutes a failed replica is kept for a catch-up before it is removed.
        #[arg(long)]
        stale_replica_timeout: Option<u64>,
        /// disabled or best-effort.
        #[arg(long)]
        data_locality: Option<String>,
        /// A tag nodes must carry to hold a replica; repeat for more.
        #[arg(long = "node-selector")]
        node_selector: Vec<String>,
        /// A tag disks must carry to hold a replica; repeat for more.
        #[arg(long = "disk-selector")]
        disk_selector: Vec<String>,
        /// A label KEY=VALUE; repeat for more.
        #[arg(long = "label")]
        labels: Vec<String>,
        #[command(flatten)]
        wait: WaitOpts,
    },
    /// List volumes.
    Ls,
    /// Show one volume.
    Get { name: String },
    /// Attach a volume to a node (its NBD endpoint, or /dev/ironhorn/NAME with the blockdev
    /// frontend, appears in `volume get`).
    Attach {
        name: String,
        /// The node (default: the server's own).
        #[arg(long)]
        node: Option<String>,
        /// nbd or blockdev (kept as the volume's frontend; default: the volume's).
        #[arg(long)]
        frontend: Option<String>,
        /// Without a frontend, for snapshot revert and other maintenance.
        #[arg(long)]
        maintenance: bool,
        #[command(flatten)]
        wait: WaitOpts,
    },
    /// Detach a volume (refused while its block device is mounted, unless --force).
    Detach {
        name: String,
        /// Detach even while mounted: the filesystems on it are flushed and unmounted.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitOpts,
    },
    /// Trim the filesystem mounted from the volume's block device (fstrim on its node): the
    /// space its deleted files held is given back in every replica.
    Trim { name: String },
    /// Grow an attached volume (a block device grows at once; then grow the filesystem:
    /// xfs_growfs MOUNTPOINT, or resize2fs /dev/ironhorn/NAME).
    Expand {
        name: String,
        /// New size, e.g. 20Gi.
        #[arg(long)]
        size: String,
    },
    /// Delete a volume and its data.
    Delete {
        name: String,
        #[command(flatten)]
        wait: WaitOpts,
    },
    /// Snapshots of a volume.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of an attached volume.
    Create {
        volume: String,
        name: String,
        /// A label KEY=VALUE; repeat for more.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// List snapshots, newest first.
    Ls { volume: String },
    /// Mark a snapshot removed (its data goes at the next purge).
    Rm { volume: String, name: String },
    /// Revert a volume (attached with --maintenance) to a snapshot.
    Revert { volume: String, name: String },
    /// Free the data of removed snapshots.
    Purge { volume: String },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes.
    Ls,
    /// Show one node with its disks.
    Get { name: String },
    /// Change scheduling, tags or zone.
    Update {
        name: String,
        /// on or off.
        #[arg(long)]
        scheduling: Option<OnOff>,
        /// Tags, comma-separated (empty to clear).
        #[arg(long)]
        tags: Option<String>,
        #[arg(long)]
        zone: Option<String>,
    },
    /// Remove a node whose machine is gone for good (its replicas are rebuilt elsewhere).
    Rm { name: String },
    /// Disks of a node.
    #[command(subcommand)]
    Disk(DiskCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        matches!(self, OnOff::On)
    }
}

/// What `node disk add` and `node disk update` may set.
#[derive(Debug, Args)]
pub struct DiskOpts {
    /// Whether replicas may be placed on it: on or off.
    #[arg(long)]
    scheduling: Option<OnOff>,
    /// Space kept free of replicas, e.g. 10Gi.
    #[arg(long)]
    reserved: Option<String>,
    /// Tags, comma-separated (empty to clear).
    #[arg(long)]
    tags: Option<String>,
}

impl DiskOpts {
    /// Adds the options given to a request body.
    fn apply(&self, body: &mut Value) -> Result<()> {
        if let Some(s) = self.scheduling {
            body["allowScheduling"] = json!(s.on());
        }
        if let Some(r) = &self.reserved {
            body["storageReserved"] = json!(size_arg(r)?);
        }
        if let Some(t) = &self.tags {
            body["tags"] = json!(tags(t));
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Add a disk: a path (usually a mount point) on the node.
    Add {
        node: String,
        name: String,
        /// A directory on the node (usually a mount point); it must exist.
        #[arg(long)]
        path: String,
        #[command(flatten)]
        options: DiskOpts,
    },
    /// Change a disk's scheduling, reserved space or tags.
    Update {
        node: String,
        name: String,
        #[command(flatten)]
        options: DiskOpts,
    },
    /// Remove a disk that holds no replicas.
    Rm { node: String, name: String },
}

#[derive(Debug, Args)]
pub struct OrphanCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: OrphanCommand,
}

#[derive(Debug, Subcommand)]
pub enum OrphanCommand {
    /// List replica directories no volume owns.
    Ls,
    /// Remove an orphan's directory.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SettingCommand {
    /// List settings with their values and defaults.
    Ls,
    /// Show one setting.
    Get { name: String },
    /// Change a setting.
    Set { name: String, value: String },
}

struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(opts: &ClientOpts) -> Client {
        Client {
            base: opts.server.trim_end_matches('/').to_string(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(120)))
                .build()
                .into(),
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("PATCH", Some(b)) => self.agent.patch(&url).send_json(b),
            ("PUT", Some(b)) => self.agent.put(&url).send_json(b),
            (_, Some(b)) => self.agent.post(&url).send_json(b),
            (_, None) => self.agent.post(&url).send_empty(),
        }
        .map_err(|e| {
            Failure::new(
                exit::UNREACHABLE,
                format!(
                    "cannot reach the Ironhorn API at {} ({e}); is `ironhorn server` running? (--server or IRONHORN_URL)",
                    self.base
                ),
            )
        })?;
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            let code = match status {
                400 | 422 => exit::INVALID,
                404 => exit::NOT_FOUND,
                409 => exit::CONFLICT,
                _ => exit::FAILED,
            };
            return Err(Failure::new(code, message));
        }
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text).map_err(|e| {
            Failure::new(
                exit::FAILED,
                format!("unreadable answer to {method} {path}: {e}"),
            )
        })
    }
}

fn print(output: Output, value: &Value, table: impl FnOnce()) -> Result<()> {
    match output {
        Output::Table => table(),
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Yaml => out!("{}", serde_yaml_ng::to_string(value).unwrap_or_default()),
    }
    Ok(())
}

fn labels(list: &[String]) -> Result<BTreeMap<String, String>> {
    list.iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Failure::new(exit::INVALID, format!("label {l:?} is not KEY=VALUE")))
        })
        .collect()
}

fn tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn size_arg(text: &str) -> Result<u64> {
    parse_size(text).map_err(|e| Failure::new(exit::INVALID, e))
}

fn as_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn volume_row(v: &Volume) -> String {
    format!(
        "{:<32} {:>10} {:>8} {:<10} {:<10} {:<14} {}",
        v.name,
        human_size(v.spec.size),
        v.spec.number_of_replicas,
        wire_name(v.status.state),
        wire_name(v.status.robustness),
        v.status.current_node_id,
        v.status.endpoint
    )
}

const VOLUME_HEADER: &str = "NAME                                   SIZE REPLICAS STATE      ROBUSTNESS NODE           ENDPOINT";

fn show_volume(v: &Volume) {
    outln!("Name:          {}", v.name);
    outln!(
        "Size:          {} ({} bytes)",
        human_size(v.spec.size),
        v.spec.size
    );
    outln!("Actual size:   {}", human_size(v.status.actual_size));
    outln!("Replicas:      {}", v.spec.number_of_replicas);
    outln!("State:         {}", wire_name(v.status.state));
    outln!("Robustness:    {}", wire_name(v.status.robustness));
    outln!("Frontend:      {}", wire_name(v.spec.frontend));
    if !v.spec.node_id.is_empty() {
        outln!(
            "Attach to:     {}{}",
            v.spec.node_id,
            if v.spec.maintenance {
                " (maintenance)"
            } else {
                ""
            }
        );
    }
    if !v.status.endpoint.is_empty() {
        outln!("Endpoint:      {}", v.status.endpoint);
    }
    if let Some(b) = &v.status.blockdev {
        outln!(
            "Block device:  {} -> {} ({})",
            b.device,
            b.kernel_device,
            b.backend
        );
        if !b.mount_points.is_empty() {
            outln!("Mounted at:    {}", b.mount_points.join(", "));
        }
    }
    outln!(
        "Stale replica timeout: {} min",
        v.spec.stale_replica_timeout
    );
    outln!();
    outln!(
        "{:<40} {:<14} {:<10} {:<5} HEALTHY",
        "REPLICA",
        "NODE",
        "DISK",
        "MODE"
    );
    for r in &v.status.replicas {
        outln!(
            "{:<40} {:<14} {:<10} {:<5} {}",
            r.name,
            r.node,
            r.disk,
            if r.mode.is_empty() { "-" } else { &r.mode },
            r.healthy
        );
    }
    let problems: Vec<_> = v.status.conditions.iter().filter(|c| !c.holds()).collect();
    if !problems.is_empty() {
        outln!();
        for c in problems {
            outln!("{} is False: {} {}", c.kind, c.reason, c.message);
        }
    }
}

/// Why the scheduler cannot place the volume's replicas, if it cannot.
fn unschedulable(v: &Volume) -> Option<String> {
    v.status
        .conditions
        .iter()
        .find(|c| c.kind == "Scheduled" && !c.holds())
        .map(|c| c.message.clone())
}

/// Polls the volume until `done` says so; `Ok(None)` when the volume is gone.
fn wait_for(
    client: &Client,
    name: &str,
    opts: &WaitOpts,
    what: &str,
    done: impl Fn(&Volume) -> bool,
) -> Result<Option<Volume>> {
    let deadline = Instant::now() + opts.timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        let volume = match client.call::<Volume>(
            "GET",
            &format!("/v1/volumes/{}", path_segment(name)),
            None,
        ) {
            Ok(v) => Some(v),
            Err(f) if f.code == exit::NOT_FOUND => None,
            Err(f) => return Err(f),
        };
        match &volume {
            Some(v) if done(v) => return Ok(volume),
            None => return Ok(None),
            Some(_) => {}
        }
        if Instant::now() >= deadline {
            let why = volume
                .map(|v| {
                    v.status
                        .conditions
                        .iter()
                        .filter(|c| !c.holds())
                        .map(|c| format!("{}: {}", c.kind, c.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            return Err(Failure::new(
                exit::TIMEOUT,
                format!(
                    "volume {name} is not {what} after {:?}{}",
                    opts.timeout,
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({why})")
                    }
                ),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

pub fn volume(cmd: VolumeCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts);
    let path = |name: &str| format!("/v1/volumes/{}", path_segment(name));
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            replicas,
            frontend,
            stale_replica_timeout,
            data_locality,
            node_selector,
            disk_selector,
            labels: label_list,
            wait,
        } => {
            let mut body = json!({
                "name": name,
                "size": size_arg(&size)?,
                "nodeSelector": node_selector,
                "diskSelector": disk_selector,
                "labels": labels(&label_list)?,
            });
            if let Some(n) = replicas {
                body["numberOfReplicas"] = json!(n);
            }
            if let Some(f) = frontend {
                body["frontend"] = json!(f);
            }
            if let Some(t) = stale_replica_timeout {
                body["staleReplicaTimeout"] = json!(t);
            }
            if let Some(d) = data_locality {
                body["dataLocality"] = json!(d);
            }
            let mut volume: Volume = client.call("POST", "/v1/volumes", Some(body))?;
            if wait.wait {
                volume = wait_for(&client, &name, &wait, "created", |v| {
                    v.status.state != VolumeState::Creating || unschedulable(v).is_some()
                })?
                .ok_or_else(|| Failure::new(exit::FAILED, format!("volume {name} disappeared")))?;
                if let Some(why) = unschedulable(&volume) {
                    return Err(Failure::new(
                        exit::FAILED,
                        format!("volume {name} was created but its replicas cannot be placed yet (it will be once there is room): {why}"),
                    ));
                }
            }
            print(opts.output, &as_json(&volume), || {
                outln!(
                    "volume {} created ({}, {} replicas)",
                    volume.name,
                    human_size(volume.spec.size),
                    volume.spec.number_of_replicas
                )
            })
        }
        VolumeCommand::Ls => {
            let list: Value = client.call("GET", "/v1/volumes", None)?;
            let volumes: Vec<Volume> =
                serde_json::from_value(list["data"].clone()).unwrap_or_default();
            print(opts.output, &list, || {
                outln!("{VOLUME_HEADER}");
                for v in &volumes {
                    outln!("{}", volume_row(v));
                }
            })
        }
        VolumeCommand::Get { name } => {
            let volume: Volume = client.call("GET", &path(&name), None)?;
            print(opts.output, &as_json(&volume), || show_volume(&volume))
        }
        VolumeCommand::Attach {
            name,
            node,
            frontend,
            maintenance,
            wait,
        } => {
            let mut body = json!({ "maintenance": maintenance });
            if let Some(node) = node {
                body["node"] = json!(node);
            }
            if let Some(frontend) = frontend {
                body["frontend"] = json!(frontend);
            }
            let mut volume: Volume =
                client.call("POST", &format!("{}/attach", path(&name)), Some(body))?;
            if wait.wait {
                volume = wait_for(&client, &name, &wait, "attached", |v| {
                    v.status.state == VolumeState::Attached
                })?
                .ok_or_else(|| Failure::new(exit::FAILED, format!("volume {name} disappeared")))?;
            }
            print(opts.output, &as_json(&volume), || {
                if volume.status.state == VolumeState::Attached {
                    outln!(
                        "volume {name} attached to {}{}",
                        volume.status.current_node_id,
                        if volume.status.endpoint.is_empty() {
                            " (maintenance: no frontend)".to_string()
                        } else {
                            format!(": {}", volume.status.endpoint)
                        }
                    )
                } else {
                    outln!("volume {name} is attaching to {}", volume.spec.node_id)
                }
            })
        }
        VolumeCommand::Detach { name, force, wait } => {
            let mut volume: Volume = client.call(
                "POST",
                &format!("{}/detach", path(&name)),
                Some(json!({ "force": force })),
            )?;
            if wait.wait {
                volume = wait_for(&client, &name, &wait, "detached", |v| {
                    v.status.state == VolumeState::Detached
                })?
                .ok_or_else(|| Failure::new(exit::FAILED, format!("volume {name} disappeared")))?;
            }
            print(opts.output, &as_json(&volume), || {
                outln!("volume {name} is {}", wire_name(volume.status.state))
            })
        }
        VolumeCommand::Expand { name, size } => {
            let volume: Volume = client.call(
                "POST",
                &format!("{}/expand", path(&name)),
                Some(json!({ "size": size_arg(&size)? })),
            )?;
            print(opts.output, &as_json(&volume), || {
                if volume.spec.frontend == Frontend::Blockdev && !volume.status.endpoint.is_empty()
                {
                    outln!(
                        "volume {name} expanded to {}; {} has the new size: grow its filesystem now (xfs_growfs MOUNTPOINT, or resize2fs {})",
                        human_size(volume.spec.size),
                        volume.status.endpoint,
                        volume.status.endpoint
                    )
                } else {
                    outln!(
                        "volume {name} expanded to {}; NBD clients see the new size when they reconnect",
                        human_size(volume.spec.size)
                    )
                }
            })
        }
        VolumeCommand::Trim { name } => {
            let result: Value = client.call("POST", &format!("{}/trim", path(&name)), None)?;
            print(opts.output, &result, || {
                outln!(
                    "trimmed {} on {}: {} discarded, deallocated in every replica",
                    result["mountPoint"].as_str().unwrap_or_default(),
                    name,
                    human_size(result["discardedBytes"].as_u64().unwrap_or(0))
                )
            })
        }
        VolumeCommand::Delete { name, wait } => {
            let volume: Volume = client.call("DELETE", &path(&name), None)?;
            if wait.wait {
                wait_for(&client, &name, &wait, "deleted", |_| false)?;
            }
            print(opts.output, &as_json(&volume), || {
                if wait.wait {
                    outln!("volume {name} deleted")
                } else {
                    outln!("volume {name} is being deleted")
                }
            })
        }
        VolumeCommand::Snapshot(cmd) => snapshot(&client, cmd, opts),
    }
}

fn snapshot(client: &Client, cmd: SnapshotCommand, opts: &ClientOpts) -> Result<()> {
    let base = |v: &str| format!("/v1/volumes/{}/snapshots", path_segment(v));
    match cmd {
        SnapshotCommand::Create {
            volume,
            name,
            labels: label_list,
        } => {
            let snap: Value = client.call(
                "POST",
                &base(&volume),
                Some(json!({ "name": name, "labels": labels(&label_list)? })),
            )?;
            print(opts.output, &snap, || {
                outln!("snapshot {name} of volume {volume} created")
            })
        }
        SnapshotCommand::Ls { volume } => {
            let list: Value = client.call("GET", &base(&volume), None)?;
            print(opts.output, &list, || {
                outln!(
                    "{:<40} {:<22} {:<7} {:<8} {:>12}",
                    "NAME",
                    "CREATED",
                    "TYPE",
                    "REMOVED",
                    "SIZE"
                );
                for s in list["data"].as_array().into_iter().flatten() {
                    let name = s["name"].as_str().unwrap_or("");
                    let kind = if name == "volume-head" {
                        "head"
                    } else if s["userCreated"].as_bool() == Some(true) {
                        "user"
                    } else {
                        "system"
                    };
                    outln!(
                        "{:<40} {:<22} {:<7} {:<8} {:>12}",
                        name,
                        s["created"].as_str().unwrap_or(""),
                        kind,
                        if s["removed"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "no"
                        },
                        human_size(s["size"].as_u64().unwrap_or(0))
                    );
                }
            })
        }
        SnapshotCommand::Rm { volume, name } => {
            client.call::<Value>(
                "DELETE",
                &format!("{}/{}", base(&volume), path_segment(&name)),
                None,
            )?;
            print(opts.output, &json!({}), || {
                outln!("snapshot {name} marked removed; `ironhorn volume snapshot purge {volume}` frees its space")
            })
        }
        SnapshotCommand::Revert { volume, name } => {
            client.call::<Value>(
                "POST",
                &format!("{}/{}/revert", base(&volume), path_segment(&name)),
                None,
            )?;
            print(opts.output, &json!({}), || {
                outln!("volume {volume} reverted to {name}")
            })
        }
        SnapshotCommand::Purge { volume } => {
            client.call::<Value>(
                "POST",
                &format!("/v1/volumes/{}/purge", path_segment(&volume)),
                None,
            )?;
            print(opts.output, &json!({}), || outln!("volume {volume} purged"))
        }
    }
}

fn show_node(n: &Node) {
    outln!("Name:        {}", n.name);
    outln!("Address:     {}", n.spec.address);
    outln!("Ready:       {}", n.status.ready);
    outln!(
        "Scheduling:  {}",
        if n.spec.allow_scheduling { "on" } else { "off" }
    );
    outln!("Tags:        {}", n.spec.tags.join(","));
    if !n.spec.zone.is_empty() {
        outln!("Zone:        {}", n.spec.zone);
    }
    outln!();
    outln!(
        "{:<12} {:<36} {:<5} {:>10} {:>10} {:>10} {:>10} TAGS",
        "DISK",
        "PATH",
        "SCHED",
        "MAXIMUM",
        "AVAILABLE",
        "SCHEDULED",
        "RESERVED"
    );
    for (name, d) in &n.spec.disks {
        let s = n.status.disks.get(name).cloned().unwrap_or_default();
        outln!(
            "{:<12} {:<36} {:<5} {:>10} {:>10} {:>10} {:>10} {}",
            name,
            d.path,
            if d.allow_scheduling { "on" } else { "off" },
            human_size(s.storage_maximum),
            human_size(s.storage_available),
            human_size(s.storage_scheduled),
            human_size(d.storage_reserved),
            d.tags.join(",")
        );
    }
    for c in n.status.conditions.iter().filter(|c| !c.holds()) {
        outln!("{} is False: {} {}", c.kind, c.reason, c.message);
    }
}

pub fn node(cmd: NodeCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts);
    let path = |name: &str| format!("/v1/nodes/{}", path_segment(name));
    match cmd {
        NodeCommand::Ls => {
            let list: Value = client.call("GET", "/v1/nodes", None)?;
            let nodes: Vec<Node> = serde_json::from_value(list["data"].clone()).unwrap_or_default();
            print(opts.output, &list, || {
                outln!(
                    "{:<20} {:<6} {:<10} {:<22} {:>5} {:>10} {:>10}",
                    "NAME",
                    "READY",
                    "SCHEDULING",
                    "ADDRESS",
                    "DISKS",
                    "MAXIMUM",
                    "AVAILABLE"
                );
                for n in &nodes {
                    let max: u64 = n.status.disks.values().map(|d| d.storage_maximum).sum();
                    let avail: u64 = n.status.disks.values().map(|d| d.storage_available).sum();
                    outln!(
                        "{:<20} {:<6} {:<10} {:<22} {:>5} {:>10} {:>10}",
                        n.name,
                        n.status.ready,
                        if n.spec.allow_scheduling { "on" } else { "off" },
                        n.spec.address,
                        n.spec.disks.len(),
                        human_size(max),
                        human_size(avail)
                    );
                }
            })
        }
        NodeCommand::Get { name } => {
            let node: Node = client.call("GET", &path(&name), None)?;
            print(opts.output, &as_json(&node), || show_node(&node))
        }
        NodeCommand::Update {
            name,
            scheduling,
            tags: tag_text,
            zone,
        } => {
            let mut body = json!({});
            if let Some(s) = scheduling {
                body["allowScheduling"] = json!(s.on());
            }
            if let Some(t) = tag_text {
                body["tags"] = json!(tags(&t));
            }
            if let Some(z) = zone {
                body["zone"] = json!(z);
            }
            let node: Node = client.call("PATCH", &path(&name), Some(body))?;
            print(opts.output, &as_json(&node), || show_node(&node))
        }
        NodeCommand::Rm { name } => {
            client.call::<Value>("DELETE", &path(&name), None)?;
            print(opts.output, &json!({}), || {
                outln!("node {name} removed; its replicas are rebuilt elsewhere")
            })
        }
        NodeCommand::Disk(DiskCommand::Add {
            node,
            name,
            path: disk_path,
            options,
        }) => {
            let mut body = json!({ "name": name, "path": disk_path });
            options.apply(&mut body)?;
            let n: Node = client.call("POST", &format!("{}/disks", path(&node)), Some(body))?;
            print(opts.output, &as_json(&n), || show_node(&n))
        }
        NodeCommand::Disk(DiskCommand::Update {
            node,
            name,
            options,
        }) => {
            let mut body = json!({});
            options.apply(&mut body)?;
            let n: Node = client.call(
                "PATCH",
                &format!("{}/disks/{}", path(&node), path_segment(&name)),
                Some(body),
            )?;
            print(opts.output, &as_json(&n), || show_node(&n))
        }
        NodeCommand::Disk(DiskCommand::Rm { node, name }) => {
            let n: Node = client.call(
                "DELETE",
                &format!("{}/disks/{}", path(&node), path_segment(&name)),
                None,
            )?;
            print(opts.output, &as_json(&n), || {
                outln!("disk {name} removed from node {node}")
            })
        }
    }
}

pub fn setting(cmd: SettingCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts);
    let row = |s: &Value| {
        outln!(
            "{:<45} {:<30} {}",
            s["name"].as_str().unwrap_or(""),
            s["value"].as_str().unwrap_or(""),
            s["definition"]["default"].as_str().unwrap_or("")
        )
    };
    let header = || outln!("{:<45} {:<30} DEFAULT", "NAME", "VALUE");
    match cmd {
        SettingCommand::Ls => {
            let list: Value = client.call("GET", "/v1/settings", None)?;
            print(opts.output, &list, || {
                header();
                for s in list["data"].as_array().into_iter().flatten() {
                    row(s);
                }
            })
        }
        SettingCommand::Get { name } => {
            let s: Value = client.call(
                "GET",
                &format!("/v1/settings/{}", path_segment(&name)),
                None,
            )?;
            print(opts.output, &s, || {
                header();
                row(&s);
                outln!(
                    "\n{}",
                    s["definition"]["description"].as_str().unwrap_or("")
                );
            })
        }
        SettingCommand::Set { name, value } => {
            let s: Value = client.call(
                "PUT",
                &format!("/v1/settings/{}", path_segment(&name)),
                Some(json!({ "value": value })),
            )?;
            print(opts.output, &s, || {
                outln!(
                    "{} = {}",
                    s["name"].as_str().unwrap_or(""),
                    s["value"].as_str().unwrap_or("")
                )
            })
        }
    }
}

pub fn orphan(cmd: OrphanCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts);
    match cmd {
        OrphanCommand::Ls => {
            let list: Value = client.call("GET", "/v1/orphans", None)?;
            print(opts.output, &list, || {
                outln!("{:<24} {:<16} {:<10} PATH", "NAME", "NODE", "DISK");
                for o in list["data"].as_array().into_iter().flatten() {
                    outln!(
                        "{:<24} {:<16} {:<10} {}",
                        o["name"].as_str().unwrap_or(""),
                        o["node"].as_str().unwrap_or(""),
                        o["disk"].as_str().unwrap_or(""),
                        o["path"].as_str().unwrap_or("")
                    );
                }
            })
        }
        OrphanCommand::Rm { name } => {
            client.call::<Value>(
                "DELETE",
                &format!("/v1/orphans/{}", path_segment(&name)),
                None,
            )?;
            print(opts.output, &json!({}), || outln!("orphan {name} removed"))
        }
    }
}
