//! `ironhorn engine serve`: a volume served over NBD from N replicas.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ironhorn_engine::{Engine, ReplicaSpec};
use ironhorn_frontend::nbd::{nbd_uri, serve as serve_nbd, Export};
use ironhorn_replica::net::{Addr, Listener};

use crate::units::{human_size, parse_size};

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Serve a volume from its replicas over NBD.
    Serve(ServeArgs),
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
    /// How long a replica may take to answer before it is marked ERR, e.g. 8s.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub engine_replica_timeout: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))
}

pub fn run(cmd: EngineCommand) -> Result<()> {
    match cmd {
        EngineCommand::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    crate::runtime::run_until_signal(|shutdown| async move {
        let engine = Engine::start(
            &args.volume,
            args.size,
            &args.replicas,
            args.engine_replica_timeout,
        )
        .await
        .context("starting the engine")?;
        for status in engine.status() {
            eprintln!(
                "replica {} {:?} {}",
                status.address, status.mode, status.reason
            );
        }
        let engine = Arc::new(engine);
        let export = Arc::new(Export {
            name: args.volume.clone(),
            description: format!("volume {}", args.volume),
            device: engine.clone(),
        });
        let listener = Listener::bind(&args.nbd)
            .await
            .with_context(|| format!("listening on {}", args.nbd))?;
        eprintln!(
            "volume {} ({}) served at {}",
            args.volume,
            human_size(args.size),
            nbd_uri(&listener.local_addr(), &args.volume)
        );
        serve_nbd(listener, export, shutdown).await;
        engine.shutdown().await;
        Ok(())
    })
}
