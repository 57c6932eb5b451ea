//! `ironhorn manager leader`: which manager runs the controllers.

use clap::{Args, Subcommand};
use ironhorn_api::manager_api;

use super::{print, Client, ClientOpts, Result};

#[derive(Debug, Args)]
pub struct ManagerCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: ManagerCommand,
}

#[derive(Debug, Subcommand)]
pub enum ManagerCommand {
    /// Which manager leads (runs the controllers); every manager serves the API.
    Leader,
}

pub fn manager(cmd: ManagerCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    match cmd {
        ManagerCommand::Leader => {
            let l = client.call(manager_api::leader())?;
            print(opts.output, &l, || {
                let leader = if l.leader.is_empty() {
                    "nobody (an election is under way)"
                } else {
                    &l.leader
                };
                outln!("leader: {leader} (store: {})", l.store);
                outln!(
                    "asked:  {}{}",
                    l.this_manager,
                    if l.leading {
                        format!(", which leads (term {})", l.term)
                    } else {
                        String::new()
                    }
                );
            })
        }
    }
}
