//! `ironhorn setting ...` (Longhorn's settings by their keys) and `ironhorn orphan ...`
//! (replica directories no volume owns).

use clap::{Args, Subcommand};
use ironhorn_api::manager_api;
use ironhorn_api::rest::SettingView;

use super::{nothing, print, Client, ClientOpts, Result};

#[derive(Debug, Args)]
pub struct SettingCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: SettingCommand,
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

pub fn setting(cmd: SettingCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    let row = |s: &SettingView| outln!("{:<45} {:<30} {}", s.name, s.value, s.definition.default);
    let header = || outln!("{:<45} {:<30} DEFAULT", "NAME", "VALUE");
    match cmd {
        SettingCommand::Ls => {
            let list = client.call(manager_api::list_settings())?;
            print(opts.output, &list, || {
                header();
                for s in &list.data {
                    row(s);
                }
            })
        }
        SettingCommand::Get { name } => {
            let s = client.call(manager_api::get_setting(&name))?;
            print(opts.output, &s, || {
                header();
                row(&s);
                outln!("\n{}", s.definition.description);
            })
        }
        SettingCommand::Set { name, value } => {
            let s = client.call(manager_api::set_setting(&name, &value))?;
            print(opts.output, &s, || outln!("{} = {}", s.name, s.value))
        }
    }
}

pub fn orphan(cmd: OrphanCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    match cmd {
        OrphanCommand::Ls => {
            let list = client.call(manager_api::list_orphans())?;
            print(opts.output, &list, || {
                outln!("{:<24} {:<16} {:<10} PATH", "NAME", "NODE", "DISK");
                for o in &list.data {
                    outln!("{:<24} {:<16} {:<10} {}", o.name, o.node, o.disk, o.path);
                }
            })
        }
        OrphanCommand::Rm { name } => {
            client.call(manager_api::delete_orphan(&name))?;
            print(opts.output, &nothing(), || outln!("orphan {name} removed"))
        }
    }
}
