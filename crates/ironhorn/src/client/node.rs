//! `ironhorn node ...`: nodes and their disks (without a subcommand, `ironhorn node` runs a
//! node agent: see `server_cmd`).

use clap::{Args, Subcommand, ValueEnum};
use ironhorn_api::manager_api;
use ironhorn_api::resource::Node;
use ironhorn_api::rest::{AddDisk, DiskUpdate, NodeUpdate, SizeInput};

use super::{exit, nothing, print, size_arg, tags, Client, ClientOpts, Failure, Result};
use crate::units::human_size;

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
        /// Move every replica off the node (on), or stop (off): each is rebuilt elsewhere
        /// while its volume is attached, then removed here.
        #[arg(long)]
        eviction: Option<OnOff>,
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
    /// Move every replica off the disk (on), or stop (off); `disk update` only.
    #[arg(long)]
    eviction: Option<OnOff>,
}

impl DiskOpts {
    /// The options given, as a disk update.
    fn update(&self) -> Result<DiskUpdate> {
        Ok(DiskUpdate {
            allow_scheduling: self.scheduling.map(OnOff::on),
            storage_reserved: self
                .reserved
                .as_deref()
                .map(size_arg)
                .transpose()?
                .map(SizeInput::Bytes),
            tags: self.tags.as_deref().map(tags),
            eviction_requested: self.eviction.map(OnOff::on),
        })
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
    if n.spec.eviction_requested {
        outln!("Eviction:    requested (replicas move off this node)");
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
            match (d.allow_scheduling, d.eviction_requested) {
                (_, true) => "evict",
                (true, false) => "on",
                (false, false) => "off",
            },
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
    let client = Client::new(opts)?;
    match cmd {
        NodeCommand::Ls => {
            let list = client.call(manager_api::list_nodes())?;
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
                for n in &list.data {
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
            let node = client.call(manager_api::get_node(&name))?;
            print(opts.output, &node, || show_node(&node))
        }
        NodeCommand::Update {
            name,
            scheduling,
            tags: tag_text,
            zone,
            eviction,
        } => {
            let request = NodeUpdate {
                allow_scheduling: scheduling.map(OnOff::on),
                tags: tag_text.as_deref().map(tags),
                zone,
                eviction_requested: eviction.map(OnOff::on),
            };
            let node = client.call(manager_api::update_node(&name, &request))?;
            print(opts.output, &node, || show_node(&node))
        }
        NodeCommand::Rm { name } => {
            client.call(manager_api::delete_node(&name))?;
            print(opts.output, &nothing(), || {
                outln!("node {name} removed; its replicas are rebuilt elsewhere")
            })
        }
        NodeCommand::Disk(DiskCommand::Add {
            node,
            name,
            path,
            options,
        }) => {
            let update = options.update()?;
            if update.eviction_requested.is_some() {
                return Err(Failure::new(
                    exit::INVALID,
                    "--eviction is for `node disk update`: a new disk holds no replicas",
                ));
            }
            let request = AddDisk {
                name,
                path,
                allow_scheduling: update.allow_scheduling.unwrap_or(true),
                storage_reserved: update.storage_reserved,
                tags: update.tags.unwrap_or_default(),
            };
            let n = client.call(manager_api::add_disk(&node, &request))?;
            print(opts.output, &n, || show_node(&n))
        }
        NodeCommand::Disk(DiskCommand::Update {
            node,
            name,
            options,
        }) => {
            let n = client.call(manager_api::update_disk(&node, &name, &options.update()?))?;
            print(opts.output, &n, || show_node(&n))
        }
        NodeCommand::Disk(DiskCommand::Rm { node, name }) => {
            let n = client.call(manager_api::remove_disk(&node, &name))?;
            print(opts.output, &n, || {
                outln!("disk {name} removed from node {node}")
            })
        }
    }
}
