//! `ironhorn replica serve`: one replica store served over the replica protocol.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ironhorn_replica::{Replica, ReplicaOptions, SharedReplica};
use ironhorn_runtime::net::{Addr, Listener};

use crate::units::{human_size, parse_size};

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Serve a replica directory (created when empty) to engines.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Replica directory; created with --size when it holds no replica yet.
    #[arg(long)]
    pub dir: PathBuf,
    /// Volume size (e.g. 10Gi); required to create, checked against an existing replica.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Listen address: HOST:PORT or unix:PATH.
    #[arg(long, default_value = "127.0.0.1:9502")]
    pub listen: Addr,
    #[command(flatten)]
    pub poll: crate::runtime::PollArgs,
}

pub fn run(cmd: ReplicaCommand) -> Result<()> {
    match cmd {
        ReplicaCommand::Serve(args) => serve(&args),
    }
}

fn serve(args: &ServeArgs) -> Result<()> {
    let replica = if args.dir.join("volume.meta").exists() {
        let r = Replica::open(&args.dir, &ReplicaOptions::default())
            .with_context(|| format!("opening replica directory {}", args.dir.display()))?;
        if let Some(size) = args.size {
            if size != r.size() {
                bail!(
                    "{} holds a replica of {} but --size says {}; expand it through the engine instead",
                    args.dir.display(),
                    human_size(r.size()),
                    human_size(size)
                );
            }
        }
        r
    } else {
        let Some(size) = args.size else {
            bail!(
                "{} holds no replica; pass --size to create one",
                args.dir.display()
            );
        };
        Replica::create(&args.dir, size)
            .with_context(|| format!("creating a replica in {}", args.dir.display()))?
    };
    let size = replica.size();
    let shared = Arc::new(SharedReplica::new(replica));
    args.poll.install();
    crate::runtime::run_until_signal(|shutdown| {
        let shared = shared.clone();
        async move {
            let listener = Listener::bind(&args.listen)
                .await
                .with_context(|| format!("listening on {}", args.listen))?;
            eprintln!(
                "replica {} ({}) serving on {}",
                args.dir.display(),
                human_size(size),
                listener.local_addr()
            );
            ironhorn_replica::server::serve(listener, shared, shutdown).await;
            Ok(())
        }
    })?;
    match Arc::try_unwrap(shared) {
        Ok(shared) => shared.into_inner().close().context("closing the replica")?,
        Err(shared) => shared.flush().context("flushing the replica")?,
    }
    Ok(())
}
