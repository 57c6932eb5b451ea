//! `ironhorn`: one binary, one subcommand per module.

mod check_cmd;
mod client;
mod cluster_secret_cmd;
mod csi_cmd;
mod engine_cmd;
mod engine_control;
mod recover;
mod recover_backup;
mod replica_cmd;
mod runtime;
mod server_cmd;
mod tls;
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
    /// Run Ironhorn: the manager (API, controllers) and a node agent for this machine, state
    /// in an embedded store under --data-dir.
    Server(server_cmd::ServerArgs),
    /// Nodes and their disks (`node ls|get|update|disk`); without a subcommand, run a node
    /// agent that registers with a manager and runs the replicas and engines it asks for.
    Node(client::NodeCli),
    /// Volumes: create, list, attach, detach, expand, delete, snapshots.
    Volume(client::VolumeCli),
    /// Settings, with Longhorn's names.
    Setting(client::SettingCli),
    /// Backups, backup volumes and backup targets.
    Backup(client::BackupCli),
    /// Credentials for backup targets.
    Secret(client::SecretCli),
    /// Scheduled snapshots, backups, cleanups and trims, with retention; every run recorded.
    RecurringJob(client::RecurringJobCli),
    /// Users and their roles (viewer, operator, admin).
    User(client::UserCli),
    /// API tokens: make, list, revoke; and who the current one stands for.
    Token(client::TokenCli),
    /// The audit log: every change asked of the API, and every sign-in (admins only).
    Audit(client::AuditCli),
    /// Replica directories no volume owns.
    Orphan(client::OrphanCli),
    /// The managers: which one leads (runs the controllers).
    Manager(client::ManagerCli),
    /// The CSI plugin for Kubernetes: identity, controller and node services on a Unix
    /// socket, translating to the manager's REST API.
    Csi(csi_cmd::CsiArgs),
    /// Make the Kubernetes Secret with the cluster secret unless it exists (the install
    /// manifest's Job runs this with its service account).
    ClusterSecret(cluster_secret_cmd::ClusterSecretArgs),
    /// Check this node: kernel features for block devices, filesystem tools, room on the
    /// data directory, the blockdev backend it will use. Exits non-zero when something
    /// required is missing.
    Check(check_cmd::CheckArgs),
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
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
                // fuser tries to unmount a FUSE session's mount again when the session ends
                // after the block device detached it; the failed retry is not a problem.
                .add_directive(
                    "fuser::mnt=error"
                        .parse()
                        .unwrap_or_else(|_| tracing_subscriber::filter::LevelFilter::ERROR.into()),
                ),
        )
        .init();
    let result = match cli.command {
        Command::Server(args) => server_cmd::server(args),
        Command::Node(client::NodeCli {
            command: None,
            agent,
            ..
        }) => server_cmd::node(*agent),
        Command::Node(client::NodeCli {
            command: Some(cmd),
            opts,
            ..
        }) => return client_exit(client::node(cmd, &opts)),
        Command::Volume(cli) => return client_exit(client::volume(cli.command, &cli.opts)),
        Command::Setting(cli) => return client_exit(client::setting(cli.command, &cli.opts)),
        Command::Backup(cli) => return client_exit(client::backup(cli.command, &cli.opts)),
        Command::Secret(cli) => return client_exit(client::secret(cli.command, &cli.opts)),
        Command::User(cli) => return client_exit(client::user(cli.command, &cli.opts)),
        Command::Token(cli) => return client_exit(client::token(cli.command, &cli.opts)),
        Command::Audit(cli) => return client_exit(client::audit(cli.command, &cli.opts)),
        Command::Manager(cli) => return client_exit(client::manager(cli.command, &cli.opts)),
        Command::RecurringJob(cli) => {
            return client_exit(client::recurring_job(cli.command, &cli.opts))
        }
        Command::Orphan(cli) => return client_exit(client::orphan(cli.command, &cli.opts)),
        Command::Check(args) => return check_cmd::run(&args),
        Command::Csi(args) => csi_cmd::run(args),
        Command::ClusterSecret(args) => cluster_secret_cmd::run(args),
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

/// A client command's outcome as an exit code (see `client::exit`).
fn client_exit(result: Result<(), client::Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
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
