//! `ironhorn engine serve`: a volume served over NBD from N replicas.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ironhorn_engine::{Engine, LocalReplicas, ReplicaSpec};
use ironhorn_frontend::nbd::{nbd_uri, serve as serve_nbd, Export};
use ironhorn_node::wire::path_segment;
use ironhorn_runtime::net::{Addr, Listener};

use crate::engine_control::{
    router, ApiError, ControlState, EngineInfo, ReplicaStatus, SnapshotView,
};
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
    #[command(flatten)]
    pub poll: PollArgs,
}

pub fn run(cmd: EngineCommand) -> Result<()> {
    match cmd {
        EngineCommand::Serve(args) => serve(args),
        EngineCommand::Info(c) => {
            let info: EngineInfo = call(&c, "GET", "/v1/info", None)?;
            if c.json {
                return print_json(&info);
            }
            println!("Volume:       {}", info.volume);
            println!(
                "Size:         {} ({} bytes)",
                human_size(info.size),
                info.size
            );
            println!("NBD clients:  {}", info.connections);
            print_replicas(&info.replicas);
            Ok(())
        }
        EngineCommand::Replica(ReplicaCmd::Ls(c)) => {
            let replicas: Vec<ReplicaStatus> = call(&c, "GET", "/v1/replicas", None)?;
            if c.json {
                return print_json(&replicas);
            }
            print_replicas(&replicas);
            Ok(())
        }
        EngineCommand::Replica(ReplicaCmd::Add { address, client }) => {
            eprintln!("rebuilding {address} ...");
            let report: serde_json::Value = call(
                &client,
                "POST",
                "/v1/replicas",
                Some(serde_json::json!({ "address": address })),
            )?;
            if client.json {
                return print_json(&report);
            }
            if report["incremental"] == serde_json::Value::Bool(true) {
                println!(
                    "{address} caught up incrementally from {}: {} copied for {} written while it was away",
                    report["source"].as_str().unwrap_or("?"),
                    human_size(report["bytes_copied"].as_u64().unwrap_or(0)),
                    human_size(report["bytes_written_while_away"].as_u64().unwrap_or(0)),
                );
                return Ok(());
            }
            println!(
                "{address} rebuilt from {}: {} copied ({} snapshot files), {} skipped as identical",
                report["source"].as_str().unwrap_or("?"),
                human_size(report["bytes_copied"].as_u64().unwrap_or(0)),
                report["layers_copied"],
                report["layers_skipped"]
            );
            Ok(())
        }
        EngineCommand::Replica(ReplicaCmd::Rm { address, client }) => {
            let path = format!("/v1/replicas?address={}", path_segment(&address));
            call::<serde_json::Value>(&client, "DELETE", &path, None)?;
            println!("{address} removed from the volume");
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Create {
            name,
            labels,
            client,
        }) => {
            let mut map = serde_json::Map::new();
            for label in labels {
                let (k, v) = label
                    .split_once('=')
                    .with_context(|| format!("label {label:?} is not KEY=VALUE"))?;
                map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            call::<serde_json::Value>(
                &client,
                "POST",
                "/v1/snapshots",
                Some(serde_json::json!({ "name": name, "labels": map })),
            )?;
            println!("snapshot {name} created");
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Ls(c)) => {
            let mut snaps: Vec<SnapshotView> = call(&c, "GET", "/v1/snapshots", None)?;
            snaps.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
            if c.json {
                return print_json(&snaps);
            }
            println!(
                "{:<40} {:<22} {:<7} {:<8} {:>12}",
                "NAME", "CREATED", "TYPE", "REMOVED", "SIZE"
            );
            for s in snaps {
                let kind = if s.name == "volume-head" {
                    "head"
                } else if s.usercreated {
                    "user"
                } else {
                    "system"
                };
                println!(
                    "{:<40} {:<22} {:<7} {:<8} {:>12}",
                    s.name,
                    s.created,
                    kind,
                    if s.removed { "yes" } else { "no" },
                    human_size(s.size)
                );
            }
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Rm { name, client }) => {
            call::<serde_json::Value>(
                &client,
                "DELETE",
                &format!("/v1/snapshots/{}", path_segment(&name)),
                None,
            )?;
            println!("snapshot {name} marked removed; run `ironhorn engine snapshot purge` to free its space");
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Revert { name, client }) => {
            call::<serde_json::Value>(
                &client,
                "POST",
                &format!("/v1/snapshots/{}/revert", path_segment(&name)),
                None,
            )?;
            println!("volume reverted to {name}");
            Ok(())
        }
        EngineCommand::Snapshot(SnapshotCmd::Purge(c)) => {
            call::<serde_json::Value>(&c, "POST", "/v1/purge", None)?;
            println!("purged");
            Ok(())
        }
        EngineCommand::Expand { size, client } => {
            call::<serde_json::Value>(
                &client,
                "POST",
                "/v1/expand",
                Some(serde_json::json!({ "size": size })),
            )?;
            println!("volume expanded to {}", human_size(size));
            Ok(())
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_replicas(replicas: &[ReplicaStatus]) {
    println!("{:<50} {:<5} REASON", "REPLICA", "MODE");
    for r in replicas {
        println!("{:<50} {:<5} {}", r.address, r.mode, r.reason);
    }
}

/// One request to the control API; an error response becomes an error with its message.
fn call<T: serde::de::DeserializeOwned>(
    client: &ClientArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<T> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{}{}", client.control, path);
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).call(),
        ("DELETE", _) => agent.delete(&url).call(),
        (_, Some(body)) => agent.post(&url).send_json(body),
        (_, None) => agent.post(&url).send_empty(),
    }
    .with_context(|| {
        format!(
            "reaching the engine at {} (is `ironhorn engine serve --control {}` running?)",
            client.control, client.control
        )
    })?;
    let status = response.status();
    let mut body = response.into_body();
    let text = body.read_to_string().unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<ApiError>(&text)
            .map(|e| e.message)
            .unwrap_or(text);
        bail!("{message}");
    }
    let text = if text.trim().is_empty() {
        "null".to_string()
    } else {
        text
    };
    serde_json::from_str(&text)
        .with_context(|| format!("reading the engine's answer to {method} {path}"))
}

fn serve(args: ServeArgs) -> Result<()> {
    args.poll.install();
    crate::runtime::run_until_signal(|shutdown| async move {
        let engine = Engine::start(
            &args.volume,
            args.size,
            &args.replicas,
            args.engine_replica_timeout,
            // This process serves no replica: every one is reached over the network.
            &LocalReplicas::new(),
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
        eprintln!(
            "volume {} ({}) served at {}",
            args.volume,
            human_size(args.size),
            nbd_uri(&listener.local_addr(), &args.volume)
        );
        let control = tokio::net::TcpListener::bind(&args.control)
            .await
            .with_context(|| format!("listening on {} for control", args.control))?;
        eprintln!("control API at http://{}", control.local_addr()?);
        let app = router(ControlState {
            engine: engine.clone(),
            export: export.clone(),
        });
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
