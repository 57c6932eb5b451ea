//! `ironhorn volume ...`: volumes and their snapshots.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use ironhorn_api::manager_api;
use ironhorn_api::node::{CreateSnapshot, SnapshotInfo};
use ironhorn_api::resource::{wire_name, Frontend, Volume, VolumeState};
use ironhorn_api::rest::{
    AttachRequest, CreateVolume, DetachRequest, ExpandRequest, SalvageRequest, SizeInput,
};

use super::{
    exit, labels, nothing, print, size_arg, wire_arg, Client, ClientOpts, Failure, Result, WaitOpts,
};
use crate::units::human_size;

#[derive(Debug, Args)]
pub struct VolumeCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create {
        name: String,
        /// Size, e.g. 10Gi (with --from-backup: the backup's size when omitted).
        #[arg(long, required_unless_present_any = ["from_backup", "data_source"])]
        size: Option<String>,
        /// Restore from a backup URL (`<target>?backup=B&volume=V`, as `backup ls VOLUME`
        /// shows); the volume attaches once the restore completes.
        #[arg(long)]
        from_backup: Option<String>,
        /// A standby (disaster-recovery) volume following the backup volume of
        /// --from-backup: it restores each new backup until `volume activate`.
        #[arg(long, requires = "from_backup")]
        standby: bool,
        /// Clone a snapshot of another volume (`snap://VOLUME/SNAPSHOT`); the volume
        /// attaches once it holds the snapshot's data (size: the source's when omitted).
        #[arg(long, conflicts_with = "from_backup")]
        data_source: Option<String>,
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
    /// Let failed replicas of a faulted volume serve again (Longhorn's salvage): the engine
    /// starts from the one holding the newest writes. Without --replica, every failed one.
    Salvage {
        name: String,
        /// A failed replica to bring back (repeat for several); `volume get` lists them.
        #[arg(long = "replica")]
        replicas: Vec<String>,
    },
    /// Grow an attached volume (a block device grows at once; then grow the filesystem:
    /// xfs_growfs MOUNTPOINT, or resize2fs /dev/ironhorn/NAME).
    Expand {
        name: String,
        /// New size, e.g. 20Gi.
        #[arg(long)]
        size: String,
    },
    /// Turn a standby volume into a normal one (once it holds the last backup; with --wait,
    /// until then).
    Activate {
        name: String,
        #[command(flatten)]
        wait: WaitOpts,
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
    if !v.created.is_empty() {
        outln!("Created:       {}", v.created);
    }
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
            match r.rebuild_progress {
                Some(percent) => format!("rebuilding {percent}%"),
                None => r.healthy.to_string(),
            }
        );
    }
    let problems: Vec<_> = v.status.conditions.iter().filter(|c| !c.holds()).collect();
    if !problems.is_empty() {
        outln!();
        for c in problems {
            let since = if c.last_transition_time.is_empty() {
                String::new()
            } else {
                format!(" (since {})", c.last_transition_time)
            };
            outln!("{} is False{since}: {} {}", c.kind, c.reason, c.message);
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
        let volume = match client.call(manager_api::get_volume(name)) {
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

fn disappeared(name: &str) -> Failure {
    Failure::new(exit::FAILED, format!("volume {name} disappeared"))
}

pub fn volume(cmd: VolumeCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            from_backup,
            standby,
            data_source,
            replicas,
            frontend,
            stale_replica_timeout,
            data_locality,
            node_selector,
            disk_selector,
            labels: label_list,
            wait,
        } => {
            let request = CreateVolume {
                name: name.clone(),
                size: SizeInput::Bytes(size.as_deref().map(size_arg).transpose()?.unwrap_or(0)),
                number_of_replicas: replicas,
                stale_replica_timeout,
                frontend: frontend.map(|f| wire_arg("frontend", &f)).transpose()?,
                data_locality: data_locality
                    .map(|d| wire_arg("data-locality", &d))
                    .transpose()?,
                node_selector,
                disk_selector,
                labels: labels(&label_list)?,
                from_backup,
                standby: standby.then_some(true),
                data_source,
            };
            let mut volume = client.call(manager_api::create_volume(&request))?;
            if wait.wait {
                volume = wait_for(&client, &name, &wait, "created", |v| {
                    v.status.state != VolumeState::Creating || unschedulable(v).is_some()
                })?
                .ok_or_else(|| disappeared(&name))?;
                if let Some(why) = unschedulable(&volume) {
                    return Err(Failure::new(
                        exit::FAILED,
                        format!("volume {name} was created but its replicas cannot be placed yet (it will be once there is room): {why}"),
                    ));
                }
            }
            print(opts.output, &volume, || {
                outln!(
                    "volume {} created ({}, {} replicas)",
                    volume.name,
                    human_size(volume.spec.size),
                    volume.spec.number_of_replicas
                )
            })
        }
        VolumeCommand::Ls => {
            let list = client.call(manager_api::list_volumes())?;
            print(opts.output, &list, || {
                outln!("{VOLUME_HEADER}");
                for v in &list.data {
                    outln!("{}", volume_row(v));
                }
            })
        }
        VolumeCommand::Get { name } => {
            let volume = client.call(manager_api::get_volume(&name))?;
            print(opts.output, &volume, || show_volume(&volume))
        }
        VolumeCommand::Attach {
            name,
            node,
            frontend,
            maintenance,
            wait,
        } => {
            let request = AttachRequest {
                node,
                maintenance,
                frontend: frontend.map(|f| wire_arg("frontend", &f)).transpose()?,
            };
            let mut volume = client.call(manager_api::attach(&name, &request))?;
            if wait.wait {
                volume = wait_for(&client, &name, &wait, "attached", |v| {
                    v.status.state == VolumeState::Attached
                })?
                .ok_or_else(|| disappeared(&name))?;
            }
            print(opts.output, &volume, || {
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
            let mut volume = client.call(manager_api::detach(&name, &DetachRequest { force }))?;
            if wait.wait {
                volume = wait_for(&client, &name, &wait, "detached", |v| {
                    v.status.state == VolumeState::Detached
                })?
                .ok_or_else(|| disappeared(&name))?;
            }
            print(opts.output, &volume, || {
                outln!("volume {name} is {}", wire_name(volume.status.state))
            })
        }
        VolumeCommand::Expand { name, size } => {
            let request = ExpandRequest {
                size: SizeInput::Bytes(size_arg(&size)?),
            };
            let volume = client.call(manager_api::expand(&name, &request))?;
            print(opts.output, &volume, || {
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
            let result = client.call(manager_api::trim(&name))?;
            print(opts.output, &result, || {
                outln!(
                    "trimmed {} on {}: {} discarded, deallocated in every replica",
                    result.mount_point,
                    name,
                    human_size(result.discarded_bytes)
                )
            })
        }
        VolumeCommand::Salvage { name, replicas } => {
            let volume = client.call(manager_api::salvage(
                &name,
                &SalvageRequest {
                    names: replicas.clone(),
                },
            ))?;
            print(opts.output, &volume, || {
                outln!(
                    "volume {name}: {} may serve again; attach it (its engine starts from the replica with the newest writes)",
                    if replicas.is_empty() {
                        "every failed replica".to_string()
                    } else {
                        replicas.join(", ")
                    }
                )
            })
        }
        VolumeCommand::Activate { name, wait } => {
            let deadline = Instant::now() + wait.timeout;
            let volume = loop {
                match client.call(manager_api::activate(&name)) {
                    Ok(v) => break v,
                    Err(f)
                        if wait.wait && f.code == exit::CONFLICT && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(f) => return Err(f),
                }
            };
            let volume = if wait.wait {
                wait_for(&client, &name, &wait, "detached", |v| {
                    v.status.state == VolumeState::Detached
                })?
                .ok_or_else(|| disappeared(&name))?
            } else {
                volume
            };
            print(opts.output, &volume, || {
                outln!(
                    "volume {name} activated: it holds backup {}; attach it to use it",
                    volume.status.last_restored_backup
                )
            })
        }
        VolumeCommand::Delete { name, wait } => {
            let volume = client.call(manager_api::delete_volume(&name))?;
            if wait.wait {
                wait_for(&client, &name, &wait, "deleted", |_| false)?;
            }
            print(opts.output, &volume, || {
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
    match cmd {
        SnapshotCommand::Create {
            volume,
            name,
            labels: label_list,
        } => {
            let request = CreateSnapshot {
                name: name.clone(),
                labels: labels(&label_list)?,
            };
            let snapshot = client.call(manager_api::create_snapshot(&volume, &request))?;
            print(opts.output, &snapshot, || {
                outln!("snapshot {name} of volume {volume} created")
            })
        }
        SnapshotCommand::Ls { volume } => {
            let list = client.call(manager_api::snapshots(&volume))?;
            print(opts.output, &list, || snapshot_table(&list.data))
        }
        SnapshotCommand::Rm { volume, name } => {
            client.call(manager_api::delete_snapshot(&volume, &name))?;
            print(opts.output, &nothing(), || {
                outln!("snapshot {name} marked removed; `ironhorn volume snapshot purge {volume}` frees its space")
            })
        }
        SnapshotCommand::Revert { volume, name } => {
            client.call(manager_api::revert_snapshot(&volume, &name))?;
            print(opts.output, &nothing(), || {
                outln!("volume {volume} reverted to {name}")
            })
        }
        SnapshotCommand::Purge { volume } => {
            client.call(manager_api::purge(&volume))?;
            print(opts.output, &nothing(), || outln!("volume {volume} purged"))
        }
    }
}

/// Snapshots as a table (`volume snapshot ls`, `engine snapshot ls`).
pub fn snapshot_table(snapshots: &[SnapshotInfo]) {
    outln!(
        "{:<40} {:<22} {:<7} {:<8} {:>12}",
        "NAME",
        "CREATED",
        "TYPE",
        "REMOVED",
        "SIZE"
    );
    for s in snapshots {
        let kind = if s.name == "volume-head" {
            "head"
        } else if s.user_created {
            "user"
        } else {
            "system"
        };
        outln!(
            "{:<40} {:<22} {:<7} {:<8} {:>12}",
            s.name,
            s.created,
            kind,
            if s.removed { "yes" } else { "no" },
            human_size(s.size)
        );
    }
}
