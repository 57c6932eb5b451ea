//! `ironhorn backup ...` (backups, backup volumes and targets) and `ironhorn secret ...`
//! (credentials for targets).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use ironhorn_api::backup::{Backup, BackupState, BackupTargetSpec, CreateBackup, SecretData};
use ironhorn_api::manager_api;

use super::{exit, labels, nothing, print, Client, ClientOpts, Failure, Result, WaitOpts};
use crate::units::human_size;

#[derive(Debug, Args)]
pub struct BackupCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up an attached volume (a new snapshot of it, or --snapshot).
    Create {
        volume: String,
        /// Back up this snapshot instead of a new one.
        #[arg(long)]
        snapshot: Option<String>,
        /// A label KEY=VALUE; repeat for more.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// The backup target (default: `default`, from the backup-target setting).
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        wait: WaitOpts,
    },
    /// List the backup volumes, or the backups of one volume (oldest first).
    Ls {
        volume: Option<String>,
        #[arg(long)]
        target: Option<String>,
    },
    /// Show one backup (with its progress while it runs).
    Get {
        volume: String,
        backup: String,
        #[arg(long)]
        target: Option<String>,
    },
    /// Delete a backup (and the blocks no other backup uses).
    Rm {
        volume: String,
        backup: String,
        #[arg(long)]
        target: Option<String>,
    },
    /// Delete every backup of a volume from the target.
    RmVolume {
        volume: String,
        #[arg(long)]
        target: Option<String>,
    },
    /// Backup targets.
    #[command(subcommand)]
    Target(TargetCommand),
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// List backup targets and whether they answer.
    Ls,
    /// Create or change a target (`default` sets the backup-target setting).
    Set {
        name: String,
        /// file:///path, nfs://server:/export/path or s3://bucket@region/path.
        url: String,
        /// A secret name (`ironhorn secret set`) or file:/path with AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY and AWS_ENDPOINTS.
        #[arg(long, default_value = "")]
        credential_secret: String,
        /// Seconds between polls of the target.
        #[arg(long, default_value_t = 0)]
        poll_interval: u64,
    },
    /// Forget a target (its backups stay where they are).
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct SecretCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// List secrets (names and keys; values are never shown).
    Ls,
    /// Create or replace a secret: KEY=VALUE pairs (e.g. AWS_ACCESS_KEY_ID=...).
    Set {
        name: String,
        pairs: Vec<String>,
    },
    Rm {
        name: String,
    },
}

const BACKUP_HEADER: &str = "NAME                      SNAPSHOT                  CREATED                   SIZE STATE      PROGRESS";

fn backup_row(b: &Backup) -> String {
    format!(
        "{:<25} {:<25} {:<22} {:>8} {:<10} {:>3}%{}",
        b.name,
        b.snapshot_name,
        b.snapshot_created,
        human_size(b.size),
        format!("{:?}", b.state),
        b.progress,
        if b.error.is_empty() {
            String::new()
        } else {
            format!("  {}", b.error)
        }
    )
}

pub fn backup(cmd: BackupCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    match cmd {
        BackupCommand::Create {
            volume,
            snapshot,
            labels: label_list,
            target,
            wait,
        } => {
            let request = CreateBackup {
                snapshot,
                labels: labels(&label_list)?,
                backup_target: target.clone(),
            };
            let mut b = client.call(manager_api::create_backup(&volume, &request))?;
            if wait.wait {
                b = wait_backup(&client, &volume, &b.name, target.as_deref(), &wait)?;
            }
            print(opts.output, &b, || {
                outln!(
                    "backup {} of volume {}: {:?} ({}%)",
                    b.name,
                    volume,
                    b.state,
                    b.progress
                );
                outln!("URL: {}", b.url);
            })
        }
        BackupCommand::Ls {
            volume: None,
            target,
        } => {
            let list = client.call(manager_api::list_backup_volumes(target.as_deref()))?;
            print(opts.output, &list, || {
                outln!(
                    "{:<45} {:>9} {:<25} {:<22} {:>9} COMPRESSION",
                    "NAME",
                    "SIZE",
                    "LAST BACKUP",
                    "AT",
                    "STORED"
                );
                for v in &list.data {
                    outln!(
                        "{:<45} {:>9} {:<25} {:<22} {:>9} {}",
                        v.name,
                        human_size(v.size),
                        v.last_backup_name,
                        v.last_backup_at,
                        human_size(v.data_stored),
                        v.compression_method
                    );
                }
            })
        }
        BackupCommand::Ls {
            volume: Some(volume),
            target,
        } => {
            let mut all = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = client.call(manager_api::list_backups(
                    &volume,
                    target.as_deref(),
                    None,
                    token.as_deref(),
                ))?;
                all.extend(page.data);
                match page.continue_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            print(opts.output, &all, || {
                outln!("{BACKUP_HEADER}");
                for b in &all {
                    outln!("{}", backup_row(b));
                }
            })
        }
        BackupCommand::Get {
            volume,
            backup,
            target,
        } => {
            let b = client.call(manager_api::get_backup(&volume, &backup, target.as_deref()))?;
            print(opts.output, &b, || {
                outln!("{BACKUP_HEADER}");
                outln!("{}", backup_row(&b));
                outln!("URL: {}", b.url);
            })
        }
        BackupCommand::Rm {
            volume,
            backup,
            target,
        } => {
            client.call(manager_api::delete_backup(
                &volume,
                &backup,
                target.as_deref(),
            ))?;
            print(opts.output, &nothing(), || {
                outln!("backup {backup} of volume {volume} deleted")
            })
        }
        BackupCommand::RmVolume { volume, target } => {
            client.call(manager_api::delete_backup_volume(
                &volume,
                target.as_deref(),
            ))?;
            print(opts.output, &nothing(), || {
                outln!("every backup of volume {volume} deleted")
            })
        }
        BackupCommand::Target(TargetCommand::Ls) => {
            let list = client.call(manager_api::list_backup_targets())?;
            print(opts.output, &list, || {
                outln!("{:<16} {:<50} {:<10} MESSAGE", "NAME", "URL", "AVAILABLE");
                for t in &list.data {
                    outln!(
                        "{:<16} {:<50} {:<10} {}",
                        t.name,
                        t.spec.backup_target_url,
                        t.status.available,
                        t.status.message
                    );
                }
            })
        }
        BackupCommand::Target(TargetCommand::Set {
            name,
            url,
            credential_secret,
            poll_interval,
        }) => {
            let spec = BackupTargetSpec {
                backup_target_url: url,
                credential_secret,
                poll_interval,
            };
            let t = client.call(manager_api::put_backup_target(&name, &spec))?;
            print(opts.output, &t, || {
                outln!(
                    "backup target {} = {} ({})",
                    t.name,
                    t.spec.backup_target_url,
                    if t.status.available {
                        "available".to_string()
                    } else {
                        format!("unavailable: {}", t.status.message)
                    }
                )
            })
        }
        BackupCommand::Target(TargetCommand::Rm { name }) => {
            client.call(manager_api::delete_backup_target(&name))?;
            print(opts.output, &nothing(), || {
                outln!("backup target {name} forgotten")
            })
        }
    }
}

/// Follows a backup until it completes, with a progress bar on a terminal.
fn wait_backup(
    client: &Client,
    volume: &str,
    name: &str,
    target: Option<&str>,
    wait: &WaitOpts,
) -> Result<Backup> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(100);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] [{bar:40}] {pos:>3}% {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let deadline = Instant::now() + wait.timeout;
    loop {
        let b = client.call(manager_api::get_backup(volume, name, target))?;
        bar.set_position(u64::from(b.progress));
        bar.set_message(format!(
            "{} read, {} uploaded",
            human_size(b.bytes_processed),
            human_size(b.bytes_uploaded)
        ));
        match b.state {
            BackupState::Completed => {
                bar.finish_and_clear();
                return Ok(b);
            }
            BackupState::Error | BackupState::Unknown => {
                bar.abandon();
                return Err(Failure::new(
                    exit::FAILED,
                    format!("backup {name} of volume {volume} failed: {}", b.error),
                ));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            bar.abandon();
            return Err(Failure::new(
                exit::TIMEOUT,
                format!(
                    "backup {name} is at {}% after {:?}",
                    b.progress, wait.timeout
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn secret(cmd: SecretCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    match cmd {
        SecretCommand::Ls => {
            let list = client.call(manager_api::list_secrets())?;
            print(opts.output, &list, || {
                outln!("{:<32} KEYS", "NAME");
                for s in &list.data {
                    outln!("{:<32} {}", s.name, s.keys.join(","));
                }
            })
        }
        SecretCommand::Set { name, pairs } => {
            let data = SecretData {
                data: labels(&pairs)?,
            };
            let s = client.call(manager_api::put_secret(&name, &data))?;
            print(opts.output, &s, || {
                outln!("secret {} set ({})", s.name, s.keys.join(", "))
            })
        }
        SecretCommand::Rm { name } => {
            client.call(manager_api::delete_secret(&name))?;
            print(opts.output, &nothing(), || outln!("secret {name} removed"))
        }
    }
}
