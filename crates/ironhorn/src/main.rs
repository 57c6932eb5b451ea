//! `ironhorn`: one binary, one subcommand per module.

mod engine_cmd;
mod engine_control;
mod recover;
mod replica_cmd;
mod runtime;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Ironhorn: distributed block storage for Kubernetes that speaks Longhorn's formats.
#[derive(Debug, Parser)]
#[command(name = "ironhorn", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline tools for replica directories: no cluster, no Docker, no iSCSI; never writes
    /// into the directory.
    #[command(subcommand)]
    Recover(recover::RecoverCommand),
    /// A replica server: one replica directory served to engines.
    #[command(subcommand)]
    Replica(replica_cmd::ReplicaCommand),
    /// An engine: a volume served over NBD from its replicas.
    #[command(subcommand)]
    Engine(engine_cmd::EngineCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.command {
        Command::Recover(cmd) => recover::run(cmd),
        Command::Replica(cmd) => replica_cmd::run(cmd),
        Command::Engine(cmd) => engine_cmd::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A reader that went away (`| head`) is not an error worth a message.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
