//! `ironhorn engine serve`: a volume served over NBD from N replicas, with its control API;
//! `ironhorn engine info|replica|snapshot|expand`: clients of that API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ironhorn_api::client::{ApiClient, ClientError};
use ironhorn_api::node::{AddReplica, CreateSnapshot, EngineReplica};
use ironhorn_api::{node_api, Request};
use ironhorn_engine::{Engine, LocalReplicas, ReplicaSpec};
use ironhorn_frontend::nbd::{nbd_uri, serve as serve_nbd, Export};
use ironhorn_node::api::engine_routes;
use ironhorn_runtime::net::{Addr, Listener};

use crate::client::snapshot_table;
use crate::engine_control::StandaloneEngine;
use crate::runtime::{parse_duration, PollArgs};
use crate::units::{human_size, parse_size};

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Serve a volume from its replicas over NBD.
    Serve(ServeArgs),
    /// Show the volume and its replicas.
    Info(ClientArgs),
    /// Replicas of the volume.
    #[command(subcommand)]
    Replica(ReplicaCmd),
    /// Snapshots of the volume.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Grow the volume (clients see the new size when they reconnect).
    Expand {
        /// New size, e.g. 20Gi.
        #[arg(value_parser = parse_size)]
        size: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How to reach a running engine.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The engine's control address (HOST:PORT).
    #[arg(
        long,
        env = "IRONHORN_ENGINE_CONTROL",
        default_value = "127.0.0.1:9501"
    )]
    pub control: String,
    /// The volume (default: the one the engine serves).
    #[arg(long, env = "IRONHORN_ENGINE_VOLUME")]
    pub volume: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReplicaCmd {
    /// List replicas with their mode (RW, WO, ERR).
    Ls(ClientArgs),
    /// Add a replica (HOST:PORT, unix:PATH or file:DIR) and rebuild it while I/O goes on.
    Add {
        address: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Drop a replica from the volume (its directory is left as it is).
    Rm {
        address: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot on every replica at one crash-consistent point.
    Create {
        name: String,
        /// A label KEY=VALUE; repeat for more.
        #[arg(long = "label")]
        labels: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List snapshots (newest first).
    Ls(ClientArgs),
    /// Mark a snapshot removed (its data goes at the next purge).
    Rm {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revert the volume to a snapshot (no NBD client may be connected).
    Revert {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove the data of removed snapshots.
    Purge(ClientArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Volume name (the NBD export name).
    #[arg(long)]
    pub volume: String,
    /// Volume size, e.g. 10Gi.
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
    /// A replica: HOST:PORT or unix:PATH of a replica server, or file:DIR for a replica
    /// opened in this process (created when empty). Repeat for each replica.
    #[arg(long = "replica", required = true)]
    pub replicas: Vec<ReplicaSpec>,
    /// NBD listen address: HOST:PORT or unix:PATH.
    #[arg(long, default_value = "127.0.0.1:10809")]
    pub nbd: Addr,
    /// Control API address (HOST:PORT) for `ironhorn engine info|replica|snapshot|expand`.
    #[arg(long, default_value = "127.0.0.1:9501")]
    pub control: String,
    /// How long a replica may take to answer before it is marked ERR, e.g. 8s.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub engine_replica_timeout: Duration,
    /// Attachment generation to claim the replicas with: engines of older generations are
    /// refused by them from then on (0: claim nothing, as before fencing).
    #[arg(long, default_value_t = 0)]
    pub generation: u64,
    /// Acknowledge a write once `one` healthy replica has it, or once a `majority` of the
    /// replicas do (an engine cut off from most of them then acknowledges nothing).
    #[arg(long, default_value = "one", value_parser = ["one", "majority"])]
    pub write_quorum: String,
    #[command(flatten)]
    pub poll: PollArgs,
}

pub fn run(cmd: EngineCommand) -> Result<()> {
    match cmd {
        EngineCommand::Serve(args) => serve(args),
        EngineCommand::Info(c) => {
            let control = Control::connect(&c)?;
            let info = control.call(node_api::engine(&control.volume))?;
            if c.json {
                return print_json(&info);
            }
            println!("Volume:       {}", info.volume);
            println!(
                "Size:         {} ({} bytes)",
                human_size(info.size),
                info.size
            );
            println!("Endpoint:     {}", info.endpoint);
            println!("NBD clients:  {}", info.connections);
            print_replicas(&info.replicas);
            Ok(())
        }
        EngineCommand::Replica(ReplicaCmd::Ls(c)) => {
            let control = Control::connect(&c)?;
            let info = control.call(node_api::engine(&control.volume))?;
            if c.json {
                return print_json(&info.replicas);
            }
            print_replicas(&info.replicas);
            Ok(())
        }
        EngineCommand::Replica(ReplicaCmd::Add { address, client }) => {
            let control = Control::connect(&client)?;
            eprintln!("rebuilding {address} ...");
            let request = AddReplica {
                address: address.clone(),
                previous: None,
            };
            let report = control.call(node_api::add_replica(&control.volume, &request))?;
            if client.json {
                return print_json(&report);
            }
            if report.incremental {
                println!(
                    "{address} caught up incrementally from {}: {} copied for {} written while it was away",
                    report.source,
                    human_size(report.bytes_copied),
                    human_size(report.bytes_written_while_away),
                );
                return Ok(());
            }
            println!(
                "{address} rebuilt from {}: {} copied ({} snapshot files), {} skipped as identical",
                report.source,
                human_size(report.bytes_copied),
                report.layers_copied,
                report.layers_skipped
            );
            Ok(())
        }
        EngineCommand::Replica(ReplicaCmd::Rm { address, client }) => {
            let control = Control::connect(&client)?;
            control.call(node_api::remove_replica(&control.volume, &address))?;
            println!("{address} removed from the volume");
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Create {
            name,
            labels,
            client,
        }) => {
            let mut request = CreateSnapshot {
                name: name.clone(),
                labels: BTreeMap::new(),
            };
            for label in labels {
                let (k, v) = label
                    .split_once('=')
                    .with_context(|| format!("label {label:?} is not KEY=VALUE"))?;
                request.labels.insert(k.to_string(), v.to_string());
            }
            let control = Control::connect(&client)?;
            control.call(node_api::create_snapshot(&control.volume, &request))?;
            println!("snapshot {name} created");
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Ls(c)) => {
            let control = Control::connect(&c)?;
            let mut snaps = control.call(node_api::snapshots(&control.volume))?;
            snaps.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
            if c.json {
                return print_json(&snaps);
            }
            snapshot_table(&snaps);
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Rm { name, client }) => {
            let control = Control::connect(&client)?;
            control.call(node_api::remove_snapshot(&control.volume, &name))?;
            println!("snapshot {name} marked removed; run `ironhorn engine snapshot purge` to free its space");
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Revert { name, client }) => {
            let control = Control::connect(&client)?;
            control.call(node_api::revert(&control.volume, &name))?;
            println!("volume reverted to {name}");
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Purge(c)) => {
            let control = Control::connect(&c)?;
            control.call(node_api::purge(&control.volume))?;
            println!("purged");
            Ok(())
        }
        EngineCommand::Expand { size, client } => {
            let control = Control::connect(&client)?;
            control.call(node_api::expand(&control.volume, size))?;
            println!("volume expanded to {}", human_size(size));
            Ok(())
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_replicas(replicas: &[EngineReplica]) {
    println!("{:<50} {:<5} REASON", "REPLICA", "MODE");
    for r in replicas {
        println!("{:<50} {:<5} {}", r.address, r.mode, r.reason);
    }
}

/// A running engine's control API, and the volume it serves.
struct Control {
    address: String,
    volume: String,
    http: ApiClient,
    runtime: tokio::runtime::Runtime,
}

impl Control {
    /// Reaches the engine at `--control`; without `--volume`, asks it which volume it serves.
    fn connect(args: &ClientArgs) -> Result<Control> {
        let mut control = Control {
            address: args.control.clone(),
            volume: args.volume.clone().unwrap_or_default(),
            http: ApiClient::default(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the client")?,
        };
        if control.volume.is_empty() {
            let engines = control.call(node_api::engines())?;
            match engines.as_slice() {
                [only] => control.volume = only.volume.clone(),
                [] => bail!("no engine runs at {}", control.address),
                _ => bail!(
                    "{} engines run at {}: name one with --volume",
                    engines.len(),
                    control.address
                ),
            }
        }
        Ok(control)
    }

    /// One request; an error answer becomes an error with its message.
    fn call<R: serde::de::DeserializeOwned>(&self, request: Request<R>) -> Result<R> {
        self.runtime
            .block_on(self.http.call(&self.address, request))
            .map_err(|e| match e {
                ClientError::Api { body, .. } => anyhow::anyhow!(body.message),
                other => anyhow::Error::new(other).context(format!(
                    "reaching the engine at {} (is `ironhorn engine serve --control {}` running?)",
                    self.address, self.address
                )),
            })
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    args.poll.install();
    crate::runtime::run_until_signal(|shutdown| async move {
        let engine = Engine::start_fenced(
            &args.volume,
            args.size,
            &args.replicas,
            args.engine_replica_timeout,
            // This process serves no replica: every one is reached over the network.
            &LocalReplicas::new(),
            ironhorn_engine::Fencing {
                generation: args.generation,
                quorum: if args.write_quorum == "majority" {
                    ironhorn_engine::WriteQuorum::Majority
                } else {
                    ironhorn_engine::WriteQuorum::One
                },
                min_claimed: 0,
            },
        )
        .await
        .context("starting the engine")?;
        for status in engine.status() {
            eprintln!(
                "replica {} {:?} {}",
                status.address, status.mode, status.reason
            );
        }
        if let Some(r) = engine.reconciled() {
            eprintln!(
                "replicas made identical where writes were in flight when the engine last stopped: {} ranges, {} copied from {}",
                r.ranges,
                human_size(r.bytes),
                r.source
            );
        }
        let engine = Arc::new(engine);
        engine.spawn_keepalive(Duration::from_secs(2));
        let export = Arc::new(Export::new(
            &args.volume,
            &format!("volume {}", args.volume),
            engine.clone(),
        ));
        let listener = Listener::bind(&args.nbd)
            .await
            .with_context(|| format!("listening on {}", args.nbd))?;
        let nbd_address = listener.local_addr();
        eprintln!(
            "volume {} ({}) served at {}",
            args.volume,
            human_size(args.size),
            nbd_uri(&nbd_address, &args.volume)
        );
        let control = tokio::net::TcpListener::bind(&args.control)
            .await
            .with_context(|| format!("listening on {} for control", args.control))?;
        eprintln!("control API at http://{}", control.local_addr()?);
        let app = engine_routes(Arc::new(StandaloneEngine {
            volume: args.volume.clone(),
            engine: engine.clone(),
            export: export.clone(),
            endpoint: nbd_uri(&nbd_address, &args.volume),
        }));
        let control_shutdown = shutdown.clone();
        let control_task = tokio::spawn(async move {
            axum::serve(control, app)
                .with_graceful_shutdown(async move { control_shutdown.cancelled().await })
                .await
        });
        serve_nbd(listener, export, shutdown).await;
        let _ = control_task.await;
        engine.shutdown().await;
        Ok(())
    })
}
