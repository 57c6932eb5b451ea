//! `ironhorn user ...` and `ironhorn token ...`: users with roles (admins only) and API
//! tokens (everyone's own; an admin's for anyone).

use std::io::BufRead as _;

use clap::{Args, Subcommand};
use ironhorn_api::auth::{CreateToken, CreateUser, Role};
use ironhorn_api::manager_api;

use super::{exit, nothing, print, Client, ClientOpts, Failure, Result};

#[derive(Debug, Args)]
pub struct UserCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (admins only).
    Create {
        name: String,
        /// viewer, operator or admin.
        #[arg(long, value_parser = Role::parse)]
        role: Role,
        /// Read a password (at least 10 characters) from standard input, for the web UI;
        /// without it the user signs in with API tokens only.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    Ls,
    /// Delete a user with its tokens and sessions.
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct TokenCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token (shown once): for yourself, or with --user (admins) for another.
    Create {
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// How long it is valid, e.g. 30d (forever when left out).
        #[arg(long, value_parser = crate::runtime::parse_duration)]
        expires: Option<std::time::Duration>,
    },
    /// List your tokens (an admin: everyone's).
    Ls,
    /// Revoke a token by its id.
    Revoke { id: String },
    /// Who the token you are using stands for.
    Whoami,
}

pub fn user(cmd: UserCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    match cmd {
        UserCommand::Create {
            name,
            role,
            password_stdin,
        } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                    Failure::new(exit::INVALID, format!("reading the password: {e}"))
                })?;
                Some(line.trim_end_matches(['\n', '\r']).to_string())
            } else {
                None
            };
            let u = client.call(manager_api::create_user(&CreateUser {
                name,
                role,
                password,
            }))?;
            print(opts.output, &u, || {
                outln!("user {} created ({})", u.name, u.role.name())
            })
        }
        UserCommand::Ls => {
            let list = client.call(manager_api::list_users())?;
            print(opts.output, &list, || {
                outln!("{:<24} {:<9} {:<9} CREATED", "NAME", "ROLE", "PASSWORD");
                for u in &list.data {
                    outln!(
                        "{:<24} {:<9} {:<9} {}",
                        u.name,
                        u.role.name(),
                        if u.has_password { "yes" } else { "no" },
                        u.created
                    );
                }
            })
        }
        UserCommand::Rm { name } => {
            client.call(manager_api::delete_user(&name))?;
            print(opts.output, &nothing(), || outln!("user {name} deleted"))
        }
    }
}

pub fn token(cmd: TokenCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    match cmd {
        TokenCommand::Create {
            user,
            description,
            expires,
        } => {
            let t = client.call(manager_api::create_token(&CreateToken {
                description,
                user,
                expires_in_seconds: expires.map(|d| d.as_secs()),
            }))?;
            print(opts.output, &t, || {
                outln!("{}", t.token);
                eprintln!(
                    "token {} of {}: shown this once; send it as `Authorization: Bearer ...` or set IRONHORN_TOKEN",
                    t.view.id, t.view.user
                );
            })
        }
        TokenCommand::Ls => {
            let list = client.call(manager_api::list_tokens())?;
            print(opts.output, &list, || {
                outln!(
                    "{:<14} {:<20} {:<21} {:<21} DESCRIPTION",
                    "ID",
                    "USER",
                    "CREATED",
                    "EXPIRES"
                );
                for t in &list.data {
                    outln!(
                        "{:<14} {:<20} {:<21} {:<21} {}",
                        t.id,
                        t.user,
                        t.created,
                        if t.expires.is_empty() {
                            "never"
                        } else {
                            &t.expires
                        },
                        t.description
                    );
                }
            })
        }
        TokenCommand::Revoke { id } => {
            client.call(manager_api::revoke_token(&id))?;
            print(opts.output, &nothing(), || outln!("token {id} revoked"))
        }
        TokenCommand::Whoami => {
            let me = client.call(manager_api::me())?;
            print(opts.output, &me, || {
                outln!(
                    "{} ({}) via {}",
                    me.principal.user,
                    me.principal.role.name(),
                    me.principal.via
                )
            })
        }
    }
}

#[derive(Debug, Args)]
pub struct AuditCli {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest entries of the audit log, newest first (admins only).
    Ls {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

pub fn audit(cmd: AuditCommand, opts: &ClientOpts) -> Result<()> {
    let client = Client::new(opts)?;
    match cmd {
        AuditCommand::Ls { limit } => {
            let list = client.call(manager_api::audit(Some(limit)))?;
            print(opts.output, &list, || {
                outln!(
                    "{:<24} {:<16} {:<19} {:<15} {:<6} {:<7} PATH",
                    "AT",
                    "USER",
                    "VIA",
                    "FROM",
                    "STATUS",
                    "RESULT"
                );
                for e in &list.data {
                    outln!(
                        "{:<24} {:<16} {:<19} {:<15} {:<6} {:<7} {} {}",
                        e.at,
                        e.user,
                        e.via,
                        e.from,
                        e.status,
                        e.result,
                        e.method,
                        e.path
                    );
                }
            })
        }
    }
}
